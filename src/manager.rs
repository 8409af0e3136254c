//! The checkpoint thread: waits for requests (signal or API), and runs one
//! checkpoint at a time: prepare (allocations, files), suspend the other
//! threads, dump inside its own handler, resume, then commit the image
//! and prune old generations (both in `imagedir`, which also names the
//! image and creates its locked temporary file).
//!
//! `lifecycle::run` wraps each checkpoint in the critical-section gate,
//! the hooks and the stats line. `prepare` and `commit` are ordinary Rust. Between `suspend_others` and
//! `release` nothing here allocates: the dump runs from `manager_hook` on
//! buffers the plan carved out beforehand.

use crate::capture::compress::Level;
use crate::capture::dump::{self, DumpError, DumpOutcome, DumpPlan, DumpStats, ProgramInfo};
use crate::capture::forked::ForkPlan;
use crate::capture::pages::PageScanner;
use crate::capture::park::{self, MAILBOX};
use crate::capture::scratch::Scratch;
use crate::capture::sys::{self, RawFd};
use crate::image::model::ThreadRole;
use crate::threads::SuspendFailure;
use crate::{Error, Outcome};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU64, Ordering::*};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Settings fixed at install.
#[derive(Clone, Debug)]
pub struct Config {
    pub dir: PathBuf,
    pub trigger: i32,
    pub suspend_signal: i32,
    pub keep: usize,
    pub level: Level,
    pub workers: usize,
    pub suspend_timeout_ms: u64,
    /// The PAGEMAP_SCAN ioctl may be used (`SELFCKPT_PAGEMAP_SCAN`).
    pub pagemap_scan: bool,
    /// Forked checkpoints (`SELFCKPT_FORKED`).
    pub forked: bool,
    /// Forked: most copy-on-write bytes (0: no limit).
    pub cow_limit: u64,
    /// Forked: how long the dumping child may write (0: no limit).
    pub fork_timeout_ms: u64,
    /// Incremental checkpoints (`SELFCKPT_INCREMENTAL`).
    pub incremental: bool,
    /// Incremental: a full image every this many (`SELFCKPT_FULL_EVERY`).
    pub full_every: u32,
}

static RESTARTS: AtomicU64 = AtomicU64::new(0);
/// The image of the checkpoint in progress, or of the latest one (set
/// before the threads are suspended, so that a restarted process finds
/// the image it came back from).
static TAKING: Mutex<Option<PathBuf>> = Mutex::new(None);

/// The image the latest checkpoint writes or wrote; in a restarted
/// process, the image it was restarted from.
pub fn image_being_taken() -> Option<PathBuf> {
    TAKING.lock().ok()?.clone()
}

pub struct Runtime {
    pub config: Config,
    pub program: &'static ProgramInfo,
    pub prog_name: String,
    pub last_stats: Mutex<Option<CheckpointStats>>,
    /// Token in this process's image names (see `imagedir`); kept across
    /// restarts, as all memory is.
    pub instance: String,
    sequence: AtomicU64,
    /// A forked checkpoint's child that reported and is exiting.
    exiting_child: Mutex<Option<crate::capture::forked::Child>>,
    /// Incremental: the chain the next image continues. Taken out for
    /// each checkpoint and put back only when its image is committed, so
    /// a failed checkpoint, or a restart from an image, starts over with
    /// a full image.
    chain: Mutex<Chain>,
}

/// The newest image of the current incremental chain.
#[derive(Default)]
struct Chain {
    /// Its path, the checksum of its END record's framing and its page
    /// table (`capture::incremental`).
    newest: Option<(PathBuf, u64, Vec<crate::capture::incremental::PageHash>)>,
    /// Images in the chain (the full one included).
    length: u32,
}

/// Pages resident in this process (`/proc/self/statm`), for sizing the
/// page table of an incremental checkpoint.
fn resident_pages() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// Figures of one checkpoint. Times in nanoseconds; the dump's own phases
/// (kernel state, page scan, compress+write) are in `dump`.
#[derive(Clone, Debug)]
pub struct CheckpointStats {
    pub path: PathBuf,
    pub dump: DumpStats,
    /// How long the program's threads were stopped (suspend + dump + resume).
    pub pause_ns: u64,
    /// Preparing: scratch memory, opening the image and /proc files.
    pub prepare_ns: u64,
    /// Signalling the other threads until all were parked.
    pub suspend_ns: u64,
    /// The dump, from the last thread parked to the image written.
    pub dump_ns: u64,
    /// Releasing the threads.
    pub resume_ns: u64,
    /// Making the image durable: fsync, rename, fsync of the directory.
    pub fsync_ns: u64,
    /// From the request being taken up to the image committed and pruned.
    pub total_ns: u64,
    /// Whether a forked child wrote the pages (the pause ended at the fork).
    pub forked: bool,
    /// Forked: bytes copied on write while the child held the snapshot.
    pub cow_bytes: u64,
    /// Forked mode was asked for, but this checkpoint dumped in the pause:
    /// why.
    pub fork_fallback: Option<String>,
    /// Incremental: the file name of the parent image (None: a full one).
    pub parent: Option<String>,
    /// In a process tree: the committed set, and whether the tree exits
    /// now (checkpoint-then-exit).
    pub tree: Option<(PathBuf, bool)>,
}

struct PlanCell(
    UnsafeCell<Option<DumpPlan>>,
    UnsafeCell<Option<Result<DumpOutcome, DumpError>>>,
);
// SAFETY: only the manager thread touches the cell (in its loop and in its
// own signal handler, which interrupts nothing that holds a reference).
unsafe impl Sync for PlanCell {}
static PLAN: PlanCell = PlanCell(UnsafeCell::new(None), UnsafeCell::new(None));

/// Runs in the manager's suspend handler: the dump.
fn manager_hook() {
    // SAFETY: see PlanCell.
    let (plan, out) = unsafe { (&*PLAN.0.get(), &mut *PLAN.1.get()) };
    if let Some(plan) = plan {
        *out = Some(dump::run(plan));
    }
}

/// What the manager does in a restarted process before releasing the
/// others: the dump pipeline is reset, the POSIX timers made again, the
/// resource limits that could have stopped the restart set.
fn after_restart() {
    dump::reset_pipeline();
    crate::kstate::posix_timers::after_restart();
    crate::kstate::mqueue::after_restart();
    crate::kstate::rlimits::after_restart();
}

/// Installs the suspend handler with the manager's and workers' hooks.
pub fn install_handlers(suspend_signal: i32) -> Result<(), sys::Errno> {
    park::set_after_restart_hook(after_restart);
    crate::threads::install(
        suspend_signal,
        park::RoundHooks {
            manager: manager_hook,
            worker: dump::worker_hook,
        },
    )
}

/// Number of times this process was restarted.
pub fn restart_count() -> u64 {
    RESTARTS.load(Acquire)
}

impl Runtime {
    pub fn new(config: Config, program: &'static ProgramInfo, prog_name: String) -> Runtime {
        // At install, before the program can use up its descriptors.
        crate::fdreserve::fill();
        Runtime {
            config,
            program,
            prog_name,
            last_stats: Mutex::new(None),
            instance: crate::imagedir::instance_from_env(),
            sequence: AtomicU64::new(0),
            exiting_child: Mutex::new(None),
            chain: Mutex::new(Chain::default()),
        }
    }

    /// The manager thread's body.
    pub fn serve(&'static self) -> ! {
        park::set_role(ThreadRole::Manager);
        loop {
            let Some(req) = crate::request::take(crate::trigger::idle_timeout_ns()) else {
                continue;
            };
            let result = crate::lifecycle::run(self).map_err(Arc::new);
            match &result {
                Ok(Outcome::Continued) => log::info!("checkpoint written"),
                Ok(Outcome::Restarted) => log::info!("restarted from a checkpoint"),
                Err(e) if matches!(**e, Error::AskedRoot(_)) => log::info!("{e}"),
                Err(e) => log::error!("checkpoint failed: {e}"),
            }
            crate::request::served(req, result);
            self.reap_child();
        }
    }

    /// One checkpoint, taken again at once if a forked child found a
    /// mapping it could not see (made `MADV_DONTFORK` or `MADV_WIPEONFORK`
    /// since the last survey) or whose flags changed since the survey: the
    /// second one surveys again, names the mapping and dumps in the pause,
    /// or forks with the flags read in the pause.
    pub(crate) fn checkpoint(&self, term: bool) -> Result<Outcome, Error> {
        match self.checkpoint_told(term) {
            Err(Error::Dump(
                e @ (DumpError::NotInChild { .. }
                | DumpError::WipedInChild { .. }
                | DumpError::FlagsChanged { .. }),
            )) => {
                log::info!("{e}: taking the checkpoint again");
                self.checkpoint_told(term)
            }
            r => r,
        }
    }

    /// One checkpoint; in a tree member whose round failed, the root is
    /// then told why.
    fn checkpoint_told(&self, term: bool) -> Result<Outcome, Error> {
        let r = self.checkpoint_once(term);
        let why = r.as_ref().err().map(|e| e.to_string()).unwrap_or_default();
        crate::tree::round::send_failure(&why);
        r
    }

    /// Reaps the latest forked checkpoint's child, if still unreaped.
    fn reap_child(&self) {
        if let Some(child) = self.exiting_child.lock().ok().and_then(|mut z| z.take()) {
            child.reap();
        }
    }

    /// One checkpoint. With `term` (checkpoint-then-exit) the image is
    /// committed (and, with SELFCKPT_KEY, sealed) while the program's
    /// threads stay parked, and the process exits there
    /// (`imagedir::TermCommit`).
    pub(crate) fn checkpoint_once(&self, term: bool) -> Result<Outcome, Error> {
        let t_start = sys::now_ns();
        self.reap_child();
        let cfg = &self.config;
        // A setuid/setgid program's memory holds what its caller must not
        // read: never write it to a file.
        // SAFETY: getauxval has no preconditions.
        if unsafe { libc::getauxval(libc::AT_SECURE) } != 0 {
            return Err(Error::Config(
                "checkpoint refused: the program runs setuid or setgid (AT_SECURE)".into(),
            ));
        }
        crate::imagedir::ready(&cfg.dir)?;
        let sequence = self.sequence.fetch_add(1, AcqRel) + 1;
        let created = sys::realtime_ns();
        let name = crate::imagedir::image_name(
            &self.prog_name,
            created / 1_000_000,
            &self.instance,
            sys::getpid(),
        );
        // In a process tree, the image goes into the set being written.
        let mut tree =
            crate::tree::round::Round::begin(&cfg.dir, &self.instance, sequence, created, term)?;
        let img_dir = tree.dir().unwrap_or(&cfg.dir).to_path_buf();
        let final_path = img_dir.join(&name);
        let tmp_path = img_dir.join(crate::imagedir::temp_name(&name));
        if let Ok(mut t) = TAKING.lock() {
            *t = Some(final_path.clone());
        }
        let io = |what: &str, p: &Path| {
            let what = format!("{what} {}", p.display());
            move |e: std::io::Error| Error::Io(what, e)
        };

        // Prepare: everything that allocates or opens happens now.
        let maps_text = std::fs::read("/proc/thread-self/maps")
            .map_err(io("cannot read", Path::new("/proc/self/maps")))?;
        // Pages of deleted files and memfds no restart could read again:
        // all of them present now, so that the dump stores them.
        crate::capture::prefault::prefault_gone_objects(&maps_text);
        let maps_len = maps_text.len();
        let maps_cap = maps_len * 4 + (256 << 10);
        let record_cap = maps_cap * 2 + dump::RECORD_CAP_BASE;
        // Incremental: continue the chain if its newest image is still
        // there (in a process tree every image is a full one, for now).
        let incremental = cfg.incremental && !tree.is_tree();
        let chain = self
            .chain
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default();
        let incr = match chain.newest {
            Some((parent, end, prev))
                if incremental && chain.length < cfg.full_every && parent.exists() =>
            {
                parent.file_name().map(|n| dump::IncrPlan {
                    parent_name: n.as_encoded_bytes().to_vec(),
                    parent_end: end,
                    prev,
                })
            }
            _ => None,
        };
        let chain_length = if incr.is_some() { chain.length } else { 0 };
        let parent = incr
            .as_ref()
            .map(|i| String::from_utf8_lossy(&i.parent_name).into_owned());
        let table_cap = if incremental {
            incr.as_ref().map_or(0, |i| i.prev.len()) + resident_pages() + 65536
        } else {
            0
        };
        let mut surveyed = None;
        let mut dontfork = Vec::new();
        let (fork, mut fork_fallback) = match (cfg.forked, term) {
            (false, _) => (None, None),
            (true, _) if incremental => (
                None,
                Some("incremental checkpoints dump in the pause".to_string()),
            ),
            // The process exits after this image: nothing to fork for.
            (true, true) => (None, None),
            // The dumping child would hold attachments of its own while
            // the other members count theirs.
            (true, false) if tree.is_tree() && crate::kstate::sysvshm::has_tree_peers() => (
                None,
                Some("a process tree sharing System V segments dumps in the pause".to_string()),
            ),
            (true, false) => match crate::forking::survey(&maps_text) {
                Ok(sv) if sv.refusal.is_none() => {
                    surveyed = sv.flags;
                    dontfork = sv.dontfork;
                    (
                        Some(ForkPlan {
                            shadow_cap: crate::forking::shadow_room(sv.shadow_bytes),
                            cow_limit: cfg.cow_limit,
                            workers: cfg.workers,
                            maps_cap,
                        }),
                        None,
                    )
                }
                Ok(sv) => (None, sv.refusal),
                Err(e) => (None, Some(format!("cannot read /proc/self/smaps: {e}"))),
            },
        };
        if let Some(why) = &fork_fallback {
            log::info!("this checkpoint is not forked (it dumps in the pause): {why}");
        }
        let needed = DumpPlan::scratch_needed(
            cfg.level,
            cfg.workers,
            maps_cap,
            record_cap,
            fork.as_ref(),
            table_cap,
        );
        let scratch = if fork.is_some() {
            Scratch::new_shared(needed)
        } else {
            Scratch::new(needed)
        }
        .map_err(io("cannot map scratch memory for", &final_path))?;
        let image = crate::imagedir::create_temp(&tmp_path)?;
        let mem = RawFd::open(b"/proc/thread-self/mem\0", libc::O_RDONLY, 0)
            .map_err(|e| Error::Io("cannot open /proc/self/mem".into(), e.describe()))?;
        let scanner = PageScanner::open(cfg.pagemap_scan).map_err(|e| {
            Error::Io(
                "cannot open /proc/self/pagemap".into(),
                std::io::Error::other(e.to_string()),
            )
        })?;
        let plan = DumpPlan {
            image,
            mem,
            scratch,
            scanner,
            level: cfg.level,
            workers: cfg.workers,
            maps_cap,
            record_cap,
            sequence,
            created_unix_ns: created,
            program: self.program,
            restart_entry: park::restart_entry_address(),
            restart_mailbox: &MAILBOX as *const park::RestartMailbox as u64,
            fork,
            surveyed,
            dontfork,
            incr,
            table_cap,
        };
        MAILBOX.restarted.store(0, Release);
        for span in MAILBOX.leftovers() {
            span.addr.store(0, Relaxed);
            span.len.store(0, Relaxed);
        }
        dump::reset_pipeline();
        // SAFETY: see PlanCell; no handler of ours is running now.
        unsafe {
            *PLAN.0.get() = Some(plan);
            *PLAN.1.get() = None;
        }
        let mut term_commit = (term && !tree.is_tree())
            .then(|| {
                crate::imagedir::TermCommit::prepare(
                    &tmp_path,
                    &final_path,
                    &self.prog_name,
                    created,
                )
            })
            .transpose()?
            .flatten();
        let mut tids = vec![0u32; park::MAX_THREADS];
        let prepare_ns = sys::now_ns() - t_start;

        // Suspend, dump, resume.
        let round = park::begin_round();
        let t_suspend = sys::now_ns();
        let suspended = park::suspend_others(&mut tids, cfg.suspend_timeout_ms);
        let t_parked = sys::now_ns();
        let refused = suspended.err();
        let go = tree.suspended(refused.is_none());
        if go {
            park::park_self();
            if MAILBOX.restarted.load(Acquire) != 0 {
                // We are the restarted process: the plan's files and scratch
                // belong to the process that wrote the image.
                // SAFETY: see PlanCell.
                let plan = unsafe { (*PLAN.0.get()).take() };
                core::mem::forget(plan);
                tree.restarted();
                RESTARTS.fetch_add(1, AcqRel);
                return Ok(Outcome::Restarted);
            }
            // SAFETY: see PlanCell; the handler has finished.
            let (plan, result) = unsafe { (&*PLAN.0.get(), &*PLAN.1.get()) };
            if let (Some(tc), Some(plan), Some(Ok(DumpOutcome::Written(_)))) =
                (term_commit.as_mut(), plan, result)
            {
                // Checkpoint-then-exit: the threads never run again.
                if tc.run(plan.image.raw()).is_ok() {
                    crate::preload::exit_group(0);
                }
            }
        }
        // SAFETY: see PlanCell; the handler has finished.
        let dumped_ok = go && matches!(unsafe { &*PLAN.1.get() }, Some(Ok(_)));
        let tree_ok = tree.dumped(dumped_ok);
        let t_dumped = sys::now_ns();
        park::release(round);
        dump::wake_workers();
        let t_resumed = sys::now_ns();
        // SAFETY: see PlanCell; the handler has finished.
        let (plan, result) = unsafe { ((*PLAN.0.get()).take(), (*PLAN.1.get()).take()) };
        if let Some(err) = refused {
            let _ = std::fs::remove_file(&tmp_path);
            return Err(Error::Suspend(SuspendFailure::after_release(err)));
        }
        // Forked: the program runs again; wait for the child (the plan's
        // scratch holds its report, its image descriptor the writer lock).
        let (forked, mut cow_bytes) = (matches!(result, Some(Ok(DumpOutcome::Forked(..)))), 0);
        let result = match result {
            Some(Ok(DumpOutcome::Forked(child, head))) => {
                log::debug!("forked checkpoint: child {} writes the pages", child.pid());
                let done = child.wait_done(cfg.fork_timeout_ms);
                if let Err(
                    DumpError::NotInChild { .. }
                    | DumpError::WipedInChild { .. }
                    | DumpError::FlagsChanged { .. },
                ) = &done
                {
                    crate::forking::forget();
                }
                if done.is_ok() {
                    // Reaped after the commit (its address space is still
                    // going away), at the latest before the next one.
                    if let Ok(mut z) = self.exiting_child.lock() {
                        *z = Some(child);
                    }
                } else {
                    // Gone before the temporary file is removed: the space
                    // it holds is free for the stats line.
                    child.reap();
                }
                Some(done.map(|done| {
                    cow_bytes = done.cow_bytes;
                    DumpStats {
                        maps_ns: head.maps_ns,
                        kstate_ns: head.kstate_ns,
                        ..done.stats
                    }
                }))
            }
            Some(Ok(DumpOutcome::Written(stats))) => {
                if let Some(why) = stats.fork_fallback {
                    log::info!("this checkpoint dumped in the pause, not forked: {why}");
                    fork_fallback = Some(why.to_string());
                }
                Some(Ok(stats))
            }
            Some(Err(e)) => Some(Err(e)),
            None => None,
        };
        // Incremental: the page table the dump filled, before the plan's
        // scratch goes.
        let table = plan
            .as_ref()
            .filter(|_| incremental && matches!(result, Some(Ok(_))))
            .and_then(dump::filled_table);
        // The image's descriptor holds the writer lock: keep it to commit.
        let image = plan.map(|p| p.image);
        let stats = match result {
            Some(Ok(stats)) => stats,
            Some(Err(e)) => {
                let _ = std::fs::remove_file(&tmp_path);
                return Err(Error::Dump(e));
            }
            None => {
                let _ = std::fs::remove_file(&tmp_path);
                // In a tree: the round said not to dump (a member failed
                // or went away), and says why.
                return Err(tree
                    .failure()
                    .unwrap_or_else(|| Error::Config("the dump did not run".into())));
            }
        };
        if let Some(e) = tree.failure().filter(|_| !tree_ok) {
            let _ = std::fs::remove_file(&tmp_path);
            return Err(e);
        }
        let t_commit = sys::now_ns();
        let image = image.ok_or_else(|| Error::Config("the dump plan vanished".into()))?;
        crate::imagedir::commit(image, &tmp_path, &final_path, &img_dir)?;
        if let Some(table) = table {
            if let Ok(mut c) = self.chain.lock() {
                *c = Chain {
                    newest: Some((final_path.clone(), stats.end_checksum, table)),
                    length: chain_length + 1,
                };
            }
        }
        let set = tree.end(&final_path, cfg.keep)?;
        let fsync_ns = sys::now_ns() - t_commit;
        if set.is_none() {
            crate::imagedir::prune(
                &cfg.dir,
                &self.prog_name,
                &self.instance,
                &self.program.exe_path,
                cfg.keep,
            );
        }
        let st = CheckpointStats {
            path: match &set {
                Some((set, _)) => set.join(final_path.file_name().unwrap_or_default()),
                None => final_path,
            },
            tree: set,
            dump: stats,
            pause_ns: t_resumed - t_suspend,
            prepare_ns,
            suspend_ns: t_parked - t_suspend,
            dump_ns: t_dumped - t_parked,
            resume_ns: t_resumed - t_dumped,
            fsync_ns,
            total_ns: sys::now_ns() - t_start,
            forked,
            cow_bytes,
            fork_fallback,
            parent,
        };
        log::debug!("{st:?}");
        if let Ok(mut l) = self.last_stats.lock() {
            *l = Some(st);
        }
        Ok(Outcome::Continued)
    }
}
