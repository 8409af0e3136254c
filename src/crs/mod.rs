//! selfckpt as a Checkpoint/Restart Service component, after Open MPI's
//! OPAL CRS interface: an upper layer (an MPI library, a job manager)
//! [`query`]s the component, learns how well it can serve here (its
//! priority), and then only calls the component's functions:
//!
//! ```text
//!   query(&priority) ─> module { init, finalize, checkpoint(pid, snapshot, &state),
//!                               restart(snapshot, spawn_child, &child),
//!                               disable_checkpoint, enable_checkpoint }
//!   checkpoint(0)     this process: CONTINUE here, RESTART in a restarted copy
//!   checkpoint(pid)   another process of the same user that runs selfckpt
//!                     (as `selfckpt checkpoint PID --wait`): RUNNING
//!   restart(child)    `selfckpt restart IMAGE` as a new child of the caller
//!   restart(replace)  the same in place of the caller (exec)
//! ```
//!
//! The snapshot ([`Snapshot`]) names the image and its copies; with a
//! remote location set, each new image is also copied there in the
//! background once the local copy is durable ([`remote`]). The C ABI over
//! this is in `capi/crs.rs` and `include/selfckpt_crs.h`.
//!
//! Ordinary Rust, run on the caller's threads. Must never: report success
//! for a checkpoint whose image is not durable, or restart from a copy
//! whose checksums it did not read.

pub mod remote;
pub mod restarter;
pub mod snapshot;

pub use snapshot::{Snapshot, COMPONENT};

use crate::{Error, Outcome};
use core::sync::atomic::{AtomicBool, Ordering};

/// States the component reports (after OPAL CRS's states; the values are
/// those of the C header and of [`crate::State`] for the hooks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum CrsState {
    /// A checkpoint is about to be taken (hooks).
    Checkpoint = 0,
    /// The image was written and this process goes on.
    Continue = 1,
    /// This process was restarted from the image.
    Restart = 2,
    /// A checkpoint is taken and the process then exits (hooks).
    Term = 3,
    /// Asked inside this thread's own critical section: it runs when the
    /// section ends.
    Deferred = 4,
    /// The process checkpointed by pid took its image and runs on.
    Running = 5,
    /// The checkpoint failed; older images are intact.
    Error = -1,
}

impl From<crate::State> for CrsState {
    fn from(s: crate::State) -> CrsState {
        match s {
            crate::State::Checkpoint => CrsState::Checkpoint,
            crate::State::Continue => CrsState::Continue,
            crate::State::Restart => CrsState::Restart,
            crate::State::Term => CrsState::Term,
            crate::State::Error => CrsState::Error,
        }
    }
}

/// Why a CRS call failed.
#[derive(Debug, thiserror::Error)]
pub enum CrsError {
    #[error("selfckpt cannot run here: {0}")]
    Unavailable(String),
    #[error("the selfckpt CRS module is not initialised: call init first")]
    NotInitialized,
    #[error("cannot install the checkpointer: {0}")]
    Install(String),
    #[error("{0}")]
    Ask(#[from] crate::ask::AskError),
    #[error("{0}")]
    Checkpoint(String),
    #[error("the snapshot names no image: fill it by a checkpoint or build it from a location")]
    NotFilled,
    #[error("no valid image in {what}: {why}")]
    NoValidImage { what: String, why: String },
    #[error("{0}")]
    Restarter(String),
    #[error("remote copy: {0}")]
    Remote(String),
    #[error("enable_checkpoint without a matching disable_checkpoint")]
    NotDisabled,
}

/// What [`query`] found: how well selfckpt can serve on this machine.
#[derive(Clone, Debug)]
pub struct Priority {
    /// 0..=100; higher is better.
    pub value: i32,
    /// Why it is below 100, one reason each.
    pub reasons: Vec<String>,
}

/// True when a restart can have exact ids (a PID namespace: root, or
/// unprivileged user namespaces allowed).
fn namespaces_possible() -> bool {
    let num = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
    };
    crate::capture::sys::geteuid() == 0
        || (num("/proc/sys/user/max_user_namespaces").unwrap_or(1) > 0
            && num("/proc/sys/kernel/unprivileged_userns_clone").unwrap_or(1) != 0)
}

/// Asks whether selfckpt can serve here, and how well.
///
/// ```
/// match selfckpt::crs::query() {
///     Ok(p) => assert!((0..=100).contains(&p.value)),
///     Err(e) => eprintln!("{e}"),
/// }
/// ```
pub fn query() -> Result<Priority, CrsError> {
    if crate::capture::sys::at_secure() {
        return Err(CrsError::Unavailable(
            "the program runs setuid or setgid: its memory is never written to an image".into(),
        ));
    }
    std::fs::read("/proc/self/maps").map_err(|e| {
        CrsError::Unavailable(format!(
            "cannot read /proc/self/maps ({e}): is /proc mounted?"
        ))
    })?;
    let mut p = Priority {
        value: 100,
        reasons: Vec::new(),
    };
    let mut lower = |by: i32, why: String| {
        p.value -= by;
        p.reasons.push(why);
    };
    match crate::capture::pages::PageScanner::open(true) {
        Ok(s) if s.method() == crate::capture::pages::ScanMethod::Ioctl => {}
        Ok(_) => lower(
            20,
            "no PAGEMAP_SCAN: page scans read /proc/self/pagemap".into(),
        ),
        Err(e) => lower(20, format!("cannot open /proc/self/pagemap: {e}")),
    }
    if !namespaces_possible() {
        lower(
            20,
            "no user namespaces: restarted processes get new ids".into(),
        );
    }
    if let Err(e) = restarter::find() {
        lower(40, format!("restart is not possible: {e}"));
    }
    Ok(p)
}

/// The selfckpt component (see the module header).
///
/// ```no_run
/// use selfckpt::crs::{self, CrsComponent, CrsState, SelfckptCrs, Snapshot};
/// let prio = crs::query()?;
/// eprintln!("selfckpt priority {} {:?}", prio.value, prio.reasons);
/// let c = SelfckptCrs;
/// c.init()?;
/// let mut snap = Snapshot::new();
/// snap.set_remote_dir(Some(std::path::Path::new("/shared/ckpt")));
/// match c.checkpoint(0, &mut snap)? {
///     CrsState::Restart => println!("restarted from {:?}", snap.reference()),
///     _ => {
///         let child = c.restart_child(&snap)?; // a new process from the image
///         println!("restarted copy runs as {child}");
///     }
/// }
/// # Ok::<(), crs::CrsError>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct SelfckptCrs;

/// A CRS component as a framework sees it.
pub trait CrsComponent {
    /// The component's name.
    fn name(&self) -> &'static str;
    /// Prepares checkpoints of this process.
    fn init(&self) -> Result<(), CrsError>;
    /// Waits for background work (remote copies).
    fn finalize(&self) -> Result<(), CrsError>;
    /// Checkpoints `pid` (0: this process) into `snapshot`.
    fn checkpoint(&self, pid: i32, snapshot: &mut Snapshot) -> Result<CrsState, CrsError>;
    /// Restarts `snapshot` as a new child of the caller; its pid.
    fn restart_child(&self, snapshot: &Snapshot) -> Result<i32, CrsError>;
    /// Restarts `snapshot` in place of the caller; returns only on failure.
    fn restart_replace(&self, snapshot: &Snapshot) -> CrsError;
    /// Begins a critical section.
    fn disable_checkpoint(&self) -> Result<(), CrsError>;
    /// Ends a critical section.
    fn enable_checkpoint(&self) -> Result<(), CrsError>;
}

static INITIALISED: AtomicBool = AtomicBool::new(false);

impl CrsComponent for SelfckptCrs {
    fn name(&self) -> &'static str {
        COMPONENT
    }

    /// Installs the checkpointer from the `SELFCKPT_*` variables unless the
    /// program (or LD_PRELOAD mode) already did.
    fn init(&self) -> Result<(), CrsError> {
        if !crate::is_installed() {
            crate::logger::init();
            match crate::Builder::from_env().and_then(|b| b.install()) {
                Ok(_) | Err(Error::AlreadyInstalled) => {}
                Err(e) => return Err(CrsError::Install(e.to_string())),
            }
        }
        remote::join_before_checkpoints();
        INITIALISED.store(true, Ordering::Release);
        Ok(())
    }

    fn finalize(&self) -> Result<(), CrsError> {
        remote::join_all();
        Ok(())
    }

    fn checkpoint(&self, pid: i32, snapshot: &mut Snapshot) -> Result<CrsState, CrsError> {
        if pid != 0 && pid != crate::capture::sys::getpid() as i32 {
            let image = crate::ask::ask(&crate::ask::Ask::wait_for(pid))?
                .ok_or_else(|| CrsError::Checkpoint(format!("process {pid} named no image")))?;
            for r in &image.refused {
                log::warn!(
                    "process {pid}: a restart of {} refuses: {r}",
                    image.path.display()
                );
            }
            snapshot.fill(image.path, true);
            return Ok(CrsState::Running);
        }
        if !crate::is_installed() || !INITIALISED.load(Ordering::Acquire) {
            return Err(CrsError::NotInitialized);
        }
        let outcome = match crate::checkpoint() {
            Ok(o) => o,
            Err(Error::Deferred) => return Ok(CrsState::Deferred),
            Err(e) => return Err(CrsError::Checkpoint(e.to_string())),
        };
        // Continued: the newest durable image (ours, or one taken right
        // after it). Restarted: the image this process came back from.
        let image = match outcome {
            Outcome::Continued => crate::last_image(),
            Outcome::Restarted => crate::manager::image_being_taken(),
        }
        .ok_or_else(|| {
            CrsError::Checkpoint("the checkpoint named no image (internal error)".into())
        })?;
        Ok(match outcome {
            Outcome::Continued => {
                snapshot.fill(image, true);
                CrsState::Continue
            }
            Outcome::Restarted => {
                // The copy, if any, was made by the process that took it.
                snapshot.fill(image, false);
                CrsState::Restart
            }
        })
    }

    fn restart_child(&self, snapshot: &Snapshot) -> Result<i32, CrsError> {
        let image = snapshot.image_to_restart()?;
        restarter::spawn(&image).map_err(CrsError::Restarter)
    }

    fn restart_replace(&self, snapshot: &Snapshot) -> CrsError {
        match snapshot.image_to_restart() {
            Ok(image) => CrsError::Restarter(restarter::replace(&image)),
            Err(e) => e,
        }
    }

    fn disable_checkpoint(&self) -> Result<(), CrsError> {
        crate::gate::enter();
        Ok(())
    }

    fn enable_checkpoint(&self) -> Result<(), CrsError> {
        if crate::gate::leave() {
            Ok(())
        } else {
            Err(CrsError::NotDisabled)
        }
    }
}
