//! selfckpt: in-process checkpoint/restart for Linux programs.
//!
//! Link the crate, install a [`Checkpointer`], and the process can be
//! checkpointed at any moment (by `kill -USR1 <pid>`, or by calling
//! [`checkpoint`]) into a compressed, checksummed image. `selfckpt restart
//! IMAGE` brings the program back where it was; it learns that it was
//! restarted from [`checkpoint`]'s result or [`restart_count`].
//!
//! ```no_run
//! let _ckpt = selfckpt::Checkpointer::builder()
//!     .dir("ckpt")                       // images go here (created 0700)
//!     .signal(selfckpt::Signal::SIGUSR1) // the default trigger
//!     .install()?;
//! // ... long computation ...
//! match selfckpt::checkpoint()? {
//!     selfckpt::Outcome::Continued => { /* image written, we go on */ }
//!     selfckpt::Outcome::Restarted => { /* we are the restarted process */ }
//! }
//! # Ok::<(), selfckpt::Error>(())
//! ```

pub mod arch;
pub mod ask;
pub mod capi;
pub mod capture;
pub mod crs;
pub mod elfid;
pub mod fdreserve;
pub mod forking;
pub mod gate;
pub mod hooks;
pub mod image;
pub mod imagedir;
pub mod interpose;
pub mod kstate;
mod lifecycle;
pub mod logger;
pub mod manager;
pub mod notify;
pub mod preload;
pub mod request;
pub mod restore;
pub mod restorer_abi;
pub mod settings;
pub mod threads;
pub mod tree;
pub mod trigger;

pub use capture::compress::Level;
pub use gate::{disable, CriticalSection};
pub use hooks::{HookError, HookResult, State, When};
pub use nix::sys::signal::Signal;

use capture::{dump, sys, tids};

/// Test and debug builds check the suspended-world rule on every
/// allocation (`capture::alloc_guard`).
#[cfg(feature = "alloc-guard")]
#[global_allocator]
static ALLOC_GUARD: capture::alloc_guard::Guard = capture::alloc_guard::Guard;
use core::sync::atomic::{AtomicU32, Ordering::*};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// Errors the library reports.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("selfckpt is not installed: call Checkpointer::builder().install() first")]
    NotInstalled,
    #[error("selfckpt is already installed in this process")]
    AlreadyInstalled,
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot stop the program's threads: {0}")]
    Suspend(#[from] threads::SuspendFailure),
    #[error("checkpoint failed: {0}")]
    Dump(#[from] dump::DumpError),
    #[error("checkpoint requested inside a critical section: it runs when the section ends")]
    Deferred,
    #[error("checkpoint aborted: {0}")]
    Hook(#[from] hooks::HookError),
    #[error("{0}")]
    Checkpoint(Arc<Error>),
    #[error("process tree checkpoint failed: {0}")]
    Tree(String),
    #[error(
        "process {0} is a member of a process tree, which is checkpointed as a whole by its \
         root: the root was asked to"
    )]
    AskedRoot(u32),
}

/// What a checkpoint call returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The image was written and the program goes on.
    Continued,
    /// This process was restarted from an image taken by this call.
    Restarted,
}

/// Handle of the installed checkpointer (one per process).
pub struct Checkpointer {
    runtime: &'static manager::Runtime,
}

/// Configures and installs the checkpointer.
#[derive(Clone, Debug)]
pub struct Builder {
    dir: PathBuf,
    signal: Signal,
    keep: usize,
    level: Level,
    workers: Option<usize>,
    suspend_timeout_ms: u64,
    term_signal: Option<Signal>,
    interval: Option<std::time::Duration>,
    forked: bool,
    cow_limit: u64,
    fork_timeout_ms: u64,
    incremental: bool,
    full_every: u32,
    /// A malformed tuning variable seen by [`Checkpointer::builder`],
    /// reported by [`Builder::install`].
    setting_error: Option<settings::SettingError>,
}

static RUNTIME: OnceLock<&'static manager::Runtime> = OnceLock::new();

impl Checkpointer {
    /// A builder with the defaults: directory `ckpt`, trigger SIGUSR1,
    /// checkpoint-then-exit on SIGUSR2, keep the 3 newest images, zstd
    /// level 1, no interval; `SELFCKPT_LEVEL`, `SELFCKPT_WORKERS`,
    /// `SELFCKPT_INTERVAL` (seconds) and `SELFCKPT_SUSPEND_TIMEOUT_MS`
    /// override. [`Builder::from_env`] reads every `SELFCKPT_*` setting.
    /// A malformed value of one of those is reported by
    /// [`Builder::install`], naming the variable.
    pub fn builder() -> Builder {
        settings::apply_tuning(Builder::defaults(), &settings::Environment).unwrap_or_else(|e| {
            let mut b = Builder::defaults();
            b.setting_error = Some(e);
            b
        })
    }

    /// The directory images are written to.
    pub fn dir(&self) -> &std::path::Path {
        &self.runtime.config.dir
    }

    /// Figures of the latest successful checkpoint.
    pub fn last_stats(&self) -> Option<manager::CheckpointStats> {
        self.runtime.last_stats.lock().ok()?.clone()
    }
}

impl Builder {
    /// The defaults of [`Checkpointer::builder`], then every `SELFCKPT_*`
    /// variable that is set (see [`settings`]); a malformed value is an error.
    ///
    /// ```no_run
    /// let _ckpt = selfckpt::Builder::from_env()?.install()?;
    /// # Ok::<(), selfckpt::Error>(())
    /// ```
    pub fn from_env() -> Result<Builder, Error> {
        Ok(settings::apply(
            Builder::defaults(),
            &settings::Environment,
        )?)
    }

    /// The defaults alone, no environment.
    pub(crate) fn defaults() -> Builder {
        Builder {
            dir: PathBuf::from("ckpt"),
            signal: Signal::SIGUSR1,
            keep: 3,
            level: Level::Zstd(1),
            workers: None,
            suspend_timeout_ms: 5000,
            term_signal: Some(Signal::SIGUSR2),
            interval: None,
            forked: false,
            cow_limit: 0,
            fork_timeout_ms: 3_600_000,
            incremental: false,
            full_every: 10,
            setting_error: None,
        }
    }

    /// Directory for images (created 0700 if missing).
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = dir.into();
        self
    }
    /// Signal that triggers a checkpoint (default SIGUSR1).
    pub fn signal(mut self, s: Signal) -> Self {
        self.signal = s;
        self
    }
    /// How many images to keep (default 3).
    pub fn keep(mut self, n: usize) -> Self {
        self.keep = n.max(1);
        self
    }
    /// Compression level (default zstd 1).
    pub fn level(mut self, l: Level) -> Self {
        self.level = l;
        self
    }
    /// The signal that checkpoints and then exits with code 0 once the
    /// image is durable (state TERM); default SIGUSR2, `None` for none.
    pub fn term_signal(mut self, s: Option<Signal>) -> Self {
        self.term_signal = s;
        self
    }
    /// Also checkpoint every `every` (measured from the end of the last
    /// checkpoint).
    pub fn interval(mut self, every: std::time::Duration) -> Self {
        self.interval = (!every.is_zero()).then_some(every);
        self
    }
    /// Compression worker threads (default: one per CPU, at most 8).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = Some(n);
        self
    }

    /// How long a checkpoint waits for every thread to stop before it
    /// gives up (default 5 s). A thread that blocks the suspend signal
    /// makes the checkpoint fail after this long, naming the thread.
    pub fn suspend_timeout(mut self, t: std::time::Duration) -> Self {
        self.suspend_timeout_ms = (t.as_millis() as u64).max(1);
        self
    }

    /// Forked checkpoints (default off; `SELFCKPT_FORKED`): the program
    /// is stopped only to capture its kernel state and fork; a
    /// copy-on-write child writes the image while the program runs, and
    /// [`checkpoint`] returns once the image is durable. Costs memory: up
    /// to the program's whole written memory again if it rewrites all of
    /// it during the dump (see [`Builder::cow_limit`]).
    ///
    /// ```no_run
    /// let _ckpt = selfckpt::Checkpointer::builder().forked(true).install()?;
    /// # Ok::<(), selfckpt::Error>(())
    /// ```
    pub fn forked(mut self, on: bool) -> Self {
        self.forked = on;
        self
    }

    /// Incremental checkpoints (`SELFCKPT_INCREMENTAL=1`): an image holds
    /// only the pages whose content changed since the previous image (its
    /// parent, named in its META), and a restart reads the chain. Every
    /// [`Builder::full_every`] checkpoints, and after a restart, the image
    /// is a full one. Incremental checkpoints dump in the pause (not
    /// forked).
    pub fn incremental(mut self, on: bool) -> Self {
        self.incremental = on;
        self
    }

    /// Incremental: a full image every `n` checkpoints (default 10;
    /// `SELFCKPT_FULL_EVERY`), which starts a new chain.
    pub fn full_every(mut self, n: u32) -> Self {
        self.full_every = n.max(1);
        self
    }

    /// Forked mode: abandon a checkpoint once the memory copied on write
    /// while the child dumps passes `bytes` (0, the default: no limit;
    /// `SELFCKPT_COW_LIMIT_MB`). The older images stay.
    pub fn cow_limit(mut self, bytes: u64) -> Self {
        self.cow_limit = bytes;
        self
    }

    /// Forked mode: kill a dumping child still writing after `t` and fail
    /// that checkpoint (default 1 hour, zero: no limit;
    /// `SELFCKPT_FORK_TIMEOUT`).
    pub fn fork_timeout(mut self, t: std::time::Duration) -> Self {
        self.fork_timeout_ms = t.as_millis() as u64;
        self
    }

    /// Starts the checkpoint thread and the workers and installs the signal
    /// handlers.
    pub fn install(self) -> Result<Checkpointer, Error> {
        if RUNTIME.get().is_some() {
            return Err(Error::AlreadyInstalled);
        }
        // glibc's functions behind the wrappers, looked up now: a first
        // call from the suspended world (our own raw `syscall()`s) or a
        // signal handler must never reach the dynamic loader.
        interpose::next::resolve_all();
        if let Some(e) = self.setting_error {
            return Err(e.into());
        }
        logger::init_if_asked();
        if self.term_signal == Some(self.signal) {
            return Err(Error::Config(format!(
                "{} cannot be both the checkpoint and the checkpoint-then-exit signal",
                self.signal
            )));
        }
        // Made and checked (imagedir::check_safe) now, or before the first
        // image for a forked child's directory.
        let dir = imagedir::prepare(&self.dir, imagedir::take_lazy())?;
        let exe = std::fs::read_link("/proc/self/exe")
            .map_err(|e| Error::Io("cannot read /proc/self/exe".into(), e))?;
        let program = dump::ProgramInfo {
            build_id: elfid::build_id(&exe).unwrap_or_default(),
            stamp: elfid::stamp(&exe)
                .map_err(|e| Error::Io(format!("cannot stat {}", exe.display()), e))?,
            exe_path: std::os::unix::ffi::OsStrExt::as_bytes(exe.as_os_str()).to_vec(),
        };
        let prog_name = exe
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "program".into());
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let workers = self.workers.unwrap_or(cpus).clamp(1, 8);
        let suspend_signal = interpose::masks::SUSPEND;
        let config = manager::Config {
            dir,
            trigger: self.signal as i32,
            suspend_signal,
            keep: self.keep,
            level: self.level,
            workers,
            suspend_timeout_ms: self.suspend_timeout_ms,
            pagemap_scan: settings::pagemap_scan_allowed()?,
            forked: self.forked,
            cow_limit: self.cow_limit,
            fork_timeout_ms: self.fork_timeout_ms,
            incremental: self.incremental,
            full_every: self.full_every,
        };
        let runtime: &'static manager::Runtime = Box::leak(Box::new(manager::Runtime::new(
            config,
            Box::leak(Box::new(program)),
            prog_name,
        )));
        if RUNTIME.set(runtime).is_err() {
            return Err(Error::AlreadyInstalled);
        }
        tids::probe();
        if let Some(max) = settings::max_deleted_file()? {
            kstate::deleted::set_max(max);
        }
        kstate::process_attrs::note_start();
        kstate::credentials::note_start();
        #[cfg(feature = "alloc-guard")]
        capture::alloc_guard::set_selftest(settings::alloc_guard_selftest()?);
        manager::install_handlers(suspend_signal).map_err(|e| {
            Error::Io(
                "cannot install the suspend signal handler".into(),
                e.describe(),
            )
        })?;
        // The trigger handlers first: the checkpoint thread is born with the
        // trigger signals unblocked, and one may already be pending (`run`
        // blocks them until now); a request made before the thread runs
        // waits for it.
        trigger::install(
            self.signal as i32,
            self.term_signal.map(|s| s as i32),
            self.interval,
        )
        .map_err(|e| Error::Io(format!("cannot install the {} handler", self.signal), e))?;
        start_threads(runtime)?;
        log::debug!(
            "installed: dir {}, signal {}, interval {:?}",
            runtime.config.dir.display(),
            self.signal,
            self.interval
        );
        Ok(Checkpointer { runtime })
    }
}

/// Starts selfckpt's threads (the compression workers, then the
/// checkpoint thread) for an installed runtime.
fn start_threads(runtime: &'static manager::Runtime) -> Result<(), Error> {
    let suspend_signal = runtime.config.suspend_signal;
    // selfckpt's threads take only the suspend signal (the checkpoint
    // thread also its request signal, sent to it alone): every other
    // signal the program's threads block stays theirs (pending, or for
    // their sigwait/signalfd), exactly as without selfckpt. The trigger
    // signals too: their handler runs in a thread of the program that
    // does not block them; a program that blocks one in every thread
    // waits for it itself, and `selfckpt checkpoint PID` still asks.
    let workers_mask = sys::SavedSignalMask::block_all_but(&[suspend_signal]);
    for i in 0..runtime.config.workers {
        std::thread::Builder::new()
            .name(format!("selfckpt-w{i}"))
            .stack_size(256 << 10)
            .spawn(|| {
                capture::park::set_role(image::model::ThreadRole::Worker);
                let idle = AtomicU32::new(0);
                loop {
                    sys::futex_wait(&idle, 0, None);
                }
            })
            .map_err(|e| Error::Io("cannot start a compression worker".into(), e))?;
    }
    drop(workers_mask);
    let manager_mask =
        sys::SavedSignalMask::block_all_but(&[suspend_signal, interpose::masks::REQUEST]);
    std::thread::Builder::new()
        .name("selfckpt".into())
        .stack_size(2 << 20)
        .spawn(move || runtime.serve())
        .map_err(|e| Error::Io("cannot start the checkpoint thread".into(), e))?;
    drop(manager_mask);
    Ok(())
}

/// In a forked child (fork without exec) of an installed process: the
/// parent's threads are gone; start selfckpt's own again (the runtime,
/// the handlers and the settings are the parent's copy).
pub(crate) fn restart_threads() -> Result<(), Error> {
    let runtime = RUNTIME.get().ok_or(Error::NotInstalled)?;
    start_threads(runtime)
}

/// Registers a hook that runs before each checkpoint (state
/// [`State::Checkpoint`] or [`State::Term`]); returning an error aborts
/// that checkpoint. Hooks run in registration order.
///
/// ```
/// selfckpt::on_checkpoint(|state| {
///     eprintln!("about to checkpoint ({state:?})");
///     Ok(())
/// });
/// ```
pub fn on_checkpoint(f: impl Fn(State) -> HookResult + Send + Sync + 'static) {
    hooks::register(When::Checkpoint, f)
}

/// Registers a hook that runs after a checkpoint in the process that goes
/// on ([`State::Continue`], or [`State::Error`] when the checkpoint failed).
/// These hooks run in reverse registration order.
///
/// ```
/// selfckpt::on_continue(|_| Ok(()));
/// ```
pub fn on_continue(f: impl Fn(State) -> HookResult + Send + Sync + 'static) {
    hooks::register(When::Continue, f)
}

/// Registers a hook that runs in a restarted process ([`State::Restart`]),
/// in reverse registration order.
///
/// ```
/// selfckpt::on_restart(|_| Ok(()));
/// ```
pub fn on_restart(f: impl Fn(State) -> HookResult + Send + Sync + 'static) {
    hooks::register(When::Restart, f)
}

/// True once a checkpointer is installed in this process.
pub fn is_installed() -> bool {
    RUNTIME.get().is_some()
}

/// Takes a checkpoint now and waits for it (called inside a critical
/// section, it only asks for one and returns [`Error::Deferred`]). Returns `Continued` in the
/// running process and `Restarted` when the process is later restarted
/// from this image.
pub fn checkpoint() -> Result<Outcome, Error> {
    RUNTIME.get().ok_or(Error::NotInstalled)?;
    if gate::closed_here() {
        return Err(Error::Config(
            "checkpoint() called from a hook: a checkpoint is already running".into(),
        ));
    }
    if gate::held_here() {
        // Waiting here would deadlock: ask, and let it run when the
        // section ends.
        request::ask();
        return Err(Error::Deferred);
    }
    request::wait(request::ask()).map_err(Error::Checkpoint)
}

/// How the latest restart kept the process's and threads' ids.
pub fn restart_identity() -> capture::park::Identity {
    capture::park::Identity::from_u64(capture::park::MAILBOX.identity.load(Acquire))
}

/// How many times this process has been restarted from an image.
pub fn restart_count() -> u64 {
    manager::restart_count()
}

/// The newest image this process committed (durable), if any.
pub fn last_image() -> Option<PathBuf> {
    Some(
        RUNTIME
            .get()?
            .last_stats
            .lock()
            .ok()?
            .as_ref()?
            .path
            .clone(),
    )
}
