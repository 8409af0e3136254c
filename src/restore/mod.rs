//! The restarter: validates an image completely, stages its memory at
//! addresses free in both address spaces, reopens its files, then hands
//! over to the restorer blob (`handover`), which puts everything in place
//! and jumps back into the program.
//!
//! Everything before `handover::jump` is ordinary Rust and can fail with a
//! clear error without harming anything: staging mappings are private to
//! this process, and files are only reopened (never created or truncated).

pub mod args;
pub mod files;
pub mod handover;
pub mod huge;
pub mod layout;
pub mod pidns;
pub mod shared;
pub mod stdio;
pub mod tree;

use crate::capture::maps::RegionKind;
use crate::image::format::{arch_name, ARCH_HOST};
use crate::image::model::FileStamp;
use crate::image::read::{ImageFile, ReadError};
pub use files::ChangedFds;
use std::path::{Path, PathBuf};

/// Why a restart was refused.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// A System V semaphore set or message queue cannot come back.
    #[error("{0}; restart refused")]
    Sysv(String),
    #[error(transparent)]
    Setting(#[from] crate::settings::SettingError),
    #[error("{path}: {source}")]
    Image { path: PathBuf, source: ReadError },
    #[error("{0}; restart refused")]
    Chain(crate::image::chain::ChainError),
    #[error("{path}: the image is for {image}, this machine is {host}")]
    Arch {
        path: PathBuf,
        image: &'static str,
        host: &'static str,
    },
    #[error("{path}: the image uses {image}-byte pages, this machine {host}-byte pages")]
    PageSize {
        path: PathBuf,
        image: u32,
        host: usize,
    },
    #[error("the executable {exe} {why}; restart refused (the image needs the exact program it was taken from)")]
    Executable { exe: String, why: String },
    #[error("the file {file}, mapped by the program, {why}; restart refused")]
    MappedFile { file: String, why: String },
    #[error("the image needs CPU features this machine lacks (XCR0 {image:#x} vs {host:#x}: missing {missing:#x}); restart refused")]
    CpuFeatures { image: u64, host: u64, missing: u64 },
    #[error(
        "the vdso layout differs from the image's ({0}); restart on a machine with the same kernel"
    )]
    Vdso(String),
    #[error("cannot stage region {start:#x}-{end:#x} ({what}): {source}")]
    Stage {
        start: u64,
        end: u64,
        what: String,
        source: std::io::Error,
    },
    #[error("no free address range of {0} bytes for staging")]
    NoAddressSpace(u64),
    #[error("exact process and thread ids are not possible here: {0}; restart refused (--tids auto or new accepts new ids)")]
    ExactIds(String),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("{path}: {why}; restart refused (an image is code: run only images you wrote and nobody else can change)")]
    Unsafe { path: PathBuf, why: String },
    #[error("files the program had open are gone: {0}; restart refused (use --missing-fds=devnull to restart with /dev/null in their place)")]
    MissingFiles(String),
    #[error("restart refused: not restorable: {text} (use --unrestorable={kinds} to restart with their stand-ins, or --unrestorable=fresh for every kind)")]
    NotRestorable { text: String, kinds: String },
    #[error("{path}: the program's selfckpt library has restart mailbox layout {image}{how}, this restarter writes layout {host}; restart refused (restart it with the selfckpt release the program ran with)")]
    MailboxLayout {
        path: PathBuf,
        image: u32,
        /// How the image's layout is known, when not from META.
        how: &'static str,
        host: u32,
    },
    #[error("{path}: the restart mailbox at {at:#x} {why}; restart refused (the image does not match the library that took it)")]
    Mailbox { path: PathBuf, at: u64, why: String },
    #[error("files the program had open are not the ones at their paths now: {0}; restart refused (the program would write into them at its old offsets; --changed-fds=accept reopens them anyway)")]
    ChangedFiles(String),
    #[error("files the program held locks on are locked by another process now: {0}; restart refused (the program would find its locks gone)")]
    Locked(String),
    #[error("files the program had open cannot be reopened safely: {0}; restart refused")]
    UnsafeFiles(String),
}

/// What to do with descriptors whose file is gone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MissingFds {
    /// Refuse the restart, naming the files.
    #[default]
    Refuse,
    /// Restart with /dev/null at their numbers (and a warning).
    DevNull,
}

/// What to do with kernel objects that cannot come back as they were
/// (`kstate::KernelState::problems_here`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Unrestorable {
    /// Refuse the restart, naming them.
    #[default]
    Refuse,
    /// Restart with each object's stand-in (and a warning naming what it
    /// lacks): an epoll without the registrations that cannot come back,
    /// an eventfd of unknown mode as a plain one, a timerfd without the
    /// expirations it cannot be given...
    Fresh,
    /// Stand-ins for these kinds only (`--unrestorable=epoll,socket`).
    Kinds(Vec<String>),
}

impl Unrestorable {
    /// `refuse`, `fresh`, or a comma-separated list of kinds.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "refuse" => Ok(Unrestorable::Refuse),
            "fresh" => Ok(Unrestorable::Fresh),
            list => {
                let kinds: Vec<String> = list.split(',').map(str::to_string).collect();
                match kinds.iter().find(|k| {
                    k.is_empty() || !k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                }) {
                    Some(bad) => Err(format!(
                        "--unrestorable: {bad:?} is not a kind (refuse, fresh, or kinds such as epoll,socket: `selfckpt inspect` names them)"
                    )),
                    None => Ok(Unrestorable::Kinds(kinds)),
                }
            }
        }
    }

    /// Whether a problem of `kind` may be restarted with its stand-in.
    pub fn accepts(&self, kind: &str) -> bool {
        match self {
            Unrestorable::Refuse => false,
            Unrestorable::Fresh => true,
            Unrestorable::Kinds(k) => k.iter().any(|x| x == kind),
        }
    }
}

/// Problems, one sentence each, joined.
fn joined(p: &[crate::kstate::Problem]) -> String {
    p.iter()
        .map(|p| p.text.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Options of `selfckpt restart`.
#[derive(Clone, Debug, Default)]
pub struct RestartOptions {
    /// Print what is being done on stderr.
    pub verbose: bool,
    /// Whether to restart in a PID namespace with the exact ids.
    pub tids: TidPolicy,
    /// Descriptors whose file is gone.
    pub missing_fds: MissingFds,
    /// Descriptors whose path now names another file.
    pub changed_fds: ChangedFds,
    /// Event and timer descriptors that cannot come back as they were.
    pub unrestorable: Unrestorable,
    /// The identities of the stdio of the run that made the image
    /// (`selfckpt run` records them), if known: see [`stdio`].
    pub original_stdio: Option<[Option<stdio::Identity>; 3]>,
    /// Set by a tree restart (`tree`) in each of its processes.
    pub tree: Option<TreePlace>,
}

/// What a tree restart did in a process before its own restore: it has
/// its exact pid already, its process group and session, and the
/// descriptors shared with other members at these numbers.
#[derive(Clone, Debug, Default)]
pub struct TreePlace {
    pub placed: Vec<i32>,
    /// The shared memory objects the tree made for all its processes.
    pub objects: Vec<shared::TreeObject>,
    /// With shared memory: the tree's barrier, which every process
    /// passes once its memory is filled (none may run and write the
    /// shared pages while another still fills them).
    pub barrier: Option<tree::Barrier>,
}

/// How a restart treats process and thread ids.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TidPolicy {
    /// Exact ids in a PID namespace where the system allows it, new ids
    /// (translated by the library) otherwise.
    #[default]
    Auto,
    /// Exact ids or refuse.
    Exact,
    /// New ids, no namespace.
    New,
}

impl TidPolicy {
    pub fn parse(s: &str) -> Option<TidPolicy> {
        match s {
            "auto" => Some(TidPolicy::Auto),
            "exact" => Some(TidPolicy::Exact),
            "new" => Some(TidPolicy::New),
            _ => None,
        }
    }
}

/// Validates `path` and restarts the program in this process. Returns only
/// on failure, before anything irreversible happened.
pub fn restart(
    path: &Path,
    blob: &handover::Blob,
    opts: &RestartOptions,
) -> Result<std::convert::Infallible, RestoreError> {
    let img_err = |source| RestoreError::Image {
        path: path.to_path_buf(),
        source,
    };
    block_signals();
    let placed = opts.tree.as_ref().map_or(&[][..], |t| &t.placed[..]);
    let img = open_checked(path, opts, placed, placed)?;
    let view = img.view().map_err(img_err)?;
    // System V sets and queues: made before the program runs (in a tree
    // the tree's restart made them, each once, before the members forked).
    if opts.tree.is_none() {
        crate::kstate::sysvipc::restore_all([&view.kernel.objects]).map_err(RestoreError::Sysv)?;
    }
    let identity = match (&opts.tree, opts.tids) {
        (Some(_), _) => pidns::Identity::Exact,
        (None, TidPolicy::New) => pidns::Identity::New("--tids new".into()),
        (None, policy) => {
            let identity = match exact_ids_blocker(&view) {
                Some(why) => pidns::Identity::New(why),
                None => pidns::enter(view.meta.pid, opts.verbose, false),
            };
            match identity {
                pidns::Identity::New(why) if policy == TidPolicy::Exact => {
                    return Err(RestoreError::ExactIds(why))
                }
                pidns::Identity::New(why) if opts.verbose => {
                    eprintln!("selfckpt: restarting with new pid and tids: {why}");
                    pidns::Identity::New(why)
                }
                other => other,
            }
        }
    };
    crate::kstate::pty::set_private_mounts(identity == pidns::Identity::Exact);
    let key = crate::image::mac::MacKey::from_env();
    let ancestors =
        crate::image::chain::open_ancestors(path, &view, img.header.page_size, key.as_ref())
            .map_err(RestoreError::Chain)?;
    // An ancestor's pages become the program's memory: each must be the
    // user's own and not writable by others, as the image itself.
    for a in &ancestors {
        check_ownership(&a.img.path, &a.img)?;
    }
    let mut plan = layout::Plan::new(&view, path)?;
    plan.exact_ids = identity == pidns::Identity::Exact;
    if let Some(t) = &opts.tree {
        plan.shared
            .adopt(&t.objects)
            .map_err(|e| RestoreError::Io("the tree's shared memory objects".to_string(), e))?;
    }
    let recorded_layout = view.meta.mailbox_layout;
    drop(view);
    let t0 = std::time::Instant::now();
    let staged = plan.stage_all_chain(img, ancestors)?;
    if opts.verbose {
        eprintln!(
            "selfckpt: staged {} regions, {} chunks, in {:.3}s",
            plan.staged_count(),
            staged.chunks,
            t0.elapsed().as_secs_f64()
        );
    }
    check_staged_mailbox(path, &plan, recorded_layout)?;
    if let Some(b) = opts.tree.as_ref().and_then(|t| t.barrier.as_ref()) {
        b.pass()
            .map_err(|why| RestoreError::Io("the process tree".to_string(), why))?;
    }
    handover::session_leader_warning(plan.session_role);
    handover::handover(&mut plan, blob, opts)
}

/// Every check a restart of `path` makes before it acts: the machine, the
/// image (and its MAC), its owner, the restorer interface, the executable
/// and mapped files, the descriptors, what cannot come back (but for the
/// descriptors in `shared`, which a tree restart makes itself: those it
/// shares with other processes of the tree). `tree_ptys`: the
/// descriptors of ptys a tree restart makes (a pty whose master is
/// neither in the image nor among them is an outside terminal: what is
/// queued in it is not the program's to lose). Returns the opened image.
pub fn open_checked(
    path: &Path,
    opts: &RestartOptions,
    shared: &[i32],
    tree_ptys: &[i32],
) -> Result<ImageFile, RestoreError> {
    let img_err = |source| RestoreError::Image {
        path: path.to_path_buf(),
        source,
    };
    let header = crate::image::read::peek_header(path).map_err(img_err)?;
    check_machine(path, &header)?;
    let key = crate::image::mac::MacKey::from_env();
    let img = ImageFile::open_with_key(path, key.as_ref()).map_err(img_err)?;
    check_ownership(path, &img)?;
    if let Some(key) = &key {
        // Every record restart acts on is authenticated before it acts:
        // before the executable's path is opened, a file stat-ed or a
        // namespace entered.
        img.authenticate(key).map_err(img_err)?;
    }
    let view = img.view().map_err(img_err)?;
    check_mailbox_layout(path, &view.meta)?;
    check_files(&view)?;
    // The ptys the tree makes (in a restarted member: everything it
    // placed) are not reopened by path.
    check_fds(&view, opts, tree_ptys)?;
    check_locks(&view)?;
    let (accepted, refused): (Vec<_>, Vec<_>) = view
        .kernel
        .refused_here(shared, tree_ptys)
        .into_iter()
        .partition(|p| opts.unrestorable.accepts(&p.kind));
    if !refused.is_empty() {
        let mut kinds: Vec<&str> = refused.iter().map(|p| p.kind.as_str()).collect();
        kinds.dedup();
        return Err(RestoreError::NotRestorable {
            text: joined(&refused),
            kinds: kinds.join(","),
        });
    }
    if !accepted.is_empty() {
        eprintln!(
            "selfckpt: warning: restarting with stand-ins (--unrestorable) for what cannot come back: {}",
            joined(&accepted)
        );
    }
    drop(view);
    Ok(img)
}

/// Blocks every asynchronous signal for the rest of the restart: a signal
/// sent to the restarter (a checkpoint request, a termination) stays
/// pending and reaches the restarted program, not the restarter's default
/// action. Faults stay unblocked so a bug still ends the restarter.
pub fn block_signals() {
    // SAFETY: plain signal-mask manipulation of this single-threaded process.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        for s in [
            libc::SIGSEGV,
            libc::SIGBUS,
            libc::SIGFPE,
            libc::SIGILL,
            libc::SIGTRAP,
            libc::SIGSYS,
        ] {
            libc::sigdelset(&mut set, s);
        }
        crate::interpose::next::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Why the image's ids cannot all be taken again, if they cannot.
fn exact_ids_blocker(view: &crate::image::read::ImageView) -> Option<String> {
    let pid = view.meta.pid;
    if !view.threads.iter().any(|t| t.tid == pid) {
        return Some(format!(
            "no thread has the process id {pid} (its main thread had ended)"
        ));
    }
    let mut tids: Vec<u32> = view.threads.iter().map(|t| t.tid).collect();
    tids.sort_unstable();
    if tids.windows(2).any(|w| w[0] == w[1]) || tids.first() == Some(&0) {
        return Some("the image's thread ids are not distinct".into());
    }
    None
}

/// The image must belong to the invoking user and be writable by nobody
/// else: restarting it runs whatever it holds.
fn check_ownership(path: &Path, img: &ImageFile) -> Result<(), RestoreError> {
    let Some((uid, mode)) = img.owner_mode else {
        return Ok(());
    };
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let why = if uid != me {
        format!("the image belongs to uid {uid}, not to you (uid {me})")
    } else if mode & 0o022 != 0 {
        format!(
            "the image is writable by {} (mode {:03o}); chmod go-w it if you trust it",
            if mode & 0o002 != 0 {
                "others"
            } else {
                "its group"
            },
            mode & 0o777
        )
    } else {
        return Ok(());
    };
    Err(RestoreError::Unsafe {
        path: path.to_path_buf(),
        why,
    })
}

/// Every file, directory or device the program had open must still be
/// there (unless `opts.missing_fds` says to put /dev/null in its place)
/// and be the one it had open (`files::judge`; unless `opts.changed_fds`
/// accepts another). Looks through `fds::probe` only: opens nothing for
/// reading or writing, follows no symlink, never blocks. `made_by_tree`:
/// descriptors a tree restart makes itself.
fn check_fds(
    view: &crate::image::read::ImageView,
    opts: &RestartOptions,
    made_by_tree: &[i32],
) -> Result<(), RestoreError> {
    use crate::image::model::FdKind;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let mut missing = Vec::new();
    let mut changed = Vec::new();
    let mut refused = Vec::new();
    let mut rewritten = Vec::new();
    let fates = stdio_fates(view, opts);
    // Made anew by their objects (deleted files), not reopened by path.
    let made = view.kernel.objects.fds();
    // Descriptors the checkpoint named as not restorable (refused, or
    // accepted with their stand-ins, by the caller).
    let named: Vec<i32> = view.kernel.problems().iter().filter_map(|p| p.fd).collect();
    for f in &view.kernel.fds {
        if made.contains(&f.fd) || made_by_tree.contains(&f.fd) {
            continue;
        }
        // The program's own /proc files are looked at where they are now.
        let own = files::own_proc_path(f.path, view.meta.pid);
        let moved;
        let f = match &own {
            Some(path) => {
                moved = crate::image::model::FdEntry { path, ..*f };
                &moved
            }
            None => f,
        };
        // Another process's /proc files: one of the tree's is looked at in
        // the namespace, as it is reopened (its pid here, now, is not it);
        // one outside was named at the checkpoint (or is refused here).
        if own.is_none() {
            match files::other_proc(f.path, view.meta.pid) {
                Some(true) => continue,
                Some(false) if named.contains(&f.fd) => continue,
                Some(false) => {
                    let pid = crate::kstate::procfs::pid_of(f.path).unwrap_or(0);
                    refused.push(files::describe(
                        f,
                        &format!(
                            "is a file of process {pid}, which does not come back with the program"
                        ),
                    ));
                    continue;
                }
                None => {}
            }
        }
        let kind = FdKind::from_u32(f.kind);
        let inherited = (0..=2).contains(&f.fd) && fates[f.fd as usize] != stdio::Fate::Reopen;
        if inherited
            || !matches!(
                kind,
                Some(FdKind::Regular | FdKind::Directory | FdKind::CharDevice)
            )
        {
            continue;
        }
        if !files::judged(f) {
            // A deleted directory (empty, as rmdir wants) is made again
            // deleted (`kstate::deleted_dir`).
            let deleted_dir = kind == Some(FdKind::Directory) && f.path.starts_with(b"/");
            if kind != Some(FdKind::CharDevice) && !deleted_dir {
                missing.push(files::describe(f, "is gone (deleted at the checkpoint)"));
            }
            continue;
        }
        match crate::kstate::fds::probe(f.path) {
            // A device gone is left to the reopening (a placeholder).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if kind != Some(FdKind::CharDevice) {
                    missing.push(files::describe(f, "is gone"))
                }
            }
            Err(e) => refused.push(files::describe(f, &format!("cannot be looked at ({e})"))),
            Ok((_, st)) => match files::judge(f, &st, me) {
                Ok(()) => {
                    if files::rewritten_since(f, &st) {
                        rewritten.push(String::from_utf8_lossy(f.path).into_owned());
                    }
                }
                Err(files::Change::Unsafe(why)) => refused.push(files::describe(f, &why)),
                Err(files::Change::Changed(why)) => changed.push(files::describe(f, &why)),
            },
        }
    }
    if !refused.is_empty() {
        return Err(RestoreError::UnsafeFiles(refused.join("; ")));
    }
    if !rewritten.is_empty() {
        let n = rewritten.len();
        rewritten.truncate(8);
        eprintln!(
            "selfckpt: note: {n} file(s) the program reads and writes changed after the checkpoint \
             (written by it, or by others, before it was stopped); it goes on from its view at the \
             checkpoint, what was written since is not undone: {}{}",
            rewritten.join(", "),
            if n > 8 { ", ..." } else { "" }
        );
    }
    if !changed.is_empty() {
        match opts.changed_fds {
            ChangedFds::Refuse => return Err(RestoreError::ChangedFiles(changed.join("; "))),
            ChangedFds::Accept => eprintln!(
                "selfckpt: warning: reopening files that are not the ones the program had open (--changed-fds=accept): {}",
                changed.join("; ")
            ),
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    match opts.missing_fds {
        MissingFds::Refuse => Err(RestoreError::MissingFiles(missing.join("; "))),
        MissingFds::DevNull => {
            eprintln!(
                "selfckpt: warning: restarting with /dev/null in place of {}",
                missing.join("; ")
            );
            Ok(())
        }
    }
}

/// No other process may hold a lock now that conflicts with one the
/// program held on a file reopened by path (`kstate::locks::conflict`).
fn check_locks(view: &crate::image::read::ImageView) -> Result<(), RestoreError> {
    use crate::kstate::objects::Object;
    let made = view.kernel.objects.fds();
    let found: Vec<String> = view
        .kernel
        .objects
        .items
        .iter()
        .filter_map(|o| match o {
            Object::Lock(l) if !made.contains(&l.fd) => {
                let f = view.kernel.fds.iter().find(|f| f.fd == l.fd)?;
                files::judged(f)
                    .then(|| crate::kstate::locks::conflict(l, f.path))
                    .flatten()
            }
            _ => None,
        })
        .collect();
    if found.is_empty() {
        Ok(())
    } else {
        Err(RestoreError::Locked(found.join("; ")))
    }
}

/// What descriptors 0-2 of the restarted program will be.
fn stdio_fates(view: &crate::image::read::ImageView, opts: &RestartOptions) -> [stdio::Fate; 3] {
    let image: Vec<_> = view.kernel.fds.iter().map(|f| (f.fd, f.stamp)).collect();
    stdio::fates(&image, opts.original_stdio)
}

/// The check `fds::reopen` applies to each file as it opens it: the same
/// judgement as [`check_fds`] (a file that changed in between is not
/// opened; /dev/null holds its number, with a warning).
pub fn reopen_check(
    policy: ChangedFds,
) -> impl Fn(&crate::image::model::FdEntry, &libc::stat) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    move |ent, st| match files::judge(ent, st, me) {
        Ok(()) => Ok(()),
        Err(files::Change::Changed(_)) if policy == ChangedFds::Accept => Ok(()),
        Err(c) => Err(c.why().to_string()),
    }
}

fn check_machine(
    path: &Path,
    header: &crate::image::format::FileHeader,
) -> Result<(), RestoreError> {
    if header.arch != ARCH_HOST {
        return Err(RestoreError::Arch {
            path: path.to_path_buf(),
            image: arch_name(header.arch),
            host: arch_name(ARCH_HOST),
        });
    }
    let host_page = crate::capture::sys::page_size();
    if header.page_size as usize != host_page {
        return Err(RestoreError::PageSize {
            path: path.to_path_buf(),
            image: header.page_size,
            host: host_page,
        });
    }
    Ok(())
}

/// The restarter writes the library's mailbox and slots (`restorer_abi`):
/// only one of the same layout.
fn check_mailbox_layout(path: &Path, meta: &crate::image::model::Meta) -> Result<(), RestoreError> {
    let host = crate::restorer_abi::MAILBOX_LAYOUT;
    let (image, how) = match meta.mailbox_layout {
        Some(layout) => (layout, ""),
        None => (
            crate::image::format::MAILBOX_LAYOUT_UNRECORDED,
            " (an image older than format 1.5, which does not record it)",
        ),
    };
    if image == host {
        return Ok(());
    }
    Err(RestoreError::MailboxLayout {
        path: path.to_path_buf(),
        image,
        how,
        host,
    })
}

/// The mailbox the restorer will write, as the image's memory has it: in a
/// writable region, and (format 1.5) holding the layout META records.
fn check_staged_mailbox(
    path: &Path,
    plan: &layout::Plan,
    recorded: Option<u32>,
) -> Result<(), RestoreError> {
    use crate::restorer_abi::{mailbox, RestartMailbox};
    let at = plan.restart_mailbox;
    // Before 1.5 the mailbox ended before its layout word.
    let len = match recorded {
        Some(_) => core::mem::size_of::<RestartMailbox>() as u64,
        None => mailbox::LAYOUT,
    };
    let writable = plan.regions.iter().any(|r| {
        r.staging.is_some()
            && r.prot & libc::PROT_WRITE as u32 != 0
            && r.start <= at
            && at.checked_add(len).is_some_and(|e| e <= r.end)
    });
    let why = match (writable, recorded) {
        (false, _) => "does not lie in a writable mapping of the image".to_string(),
        (true, None) => return Ok(()),
        (true, Some(layout)) => match plan.staged_u64(at + mailbox::LAYOUT) {
            Some(word) if word == layout as u64 => return Ok(()),
            Some(word) => format!("holds layout {word}, META says {layout}"),
            None => "cannot be read".to_string(),
        },
    };
    Err(RestoreError::Mailbox {
        path: path.to_path_buf(),
        at,
        why,
    })
}

fn describe_change(old: &FileStamp, new: &FileStamp) -> String {
    if old.ino != new.ino {
        format!("was replaced (inode {} -> {})", old.ino, new.ino)
    } else if old.size != new.size {
        format!("changed size ({} -> {} bytes)", old.size, new.size)
    } else {
        "was modified (mtime differs)".to_string()
    }
}

/// The executable, every mapped file and the CPU must be what the image
/// was taken with.
fn check_files(view: &crate::image::read::ImageView) -> Result<(), RestoreError> {
    use std::os::unix::ffi::OsStrExt;
    let meta = &view.meta;
    let exe = Path::new(std::ffi::OsStr::from_bytes(meta.exe_path));
    let exe_s = crate::image::show::shown(meta.exe_path);
    let now = crate::elfid::stamp(exe).map_err(|e| RestoreError::Executable {
        exe: exe_s.clone(),
        why: format!("cannot be read ({e})"),
    })?;
    if (now.mode | meta.exe_stamp.mode) & (libc::S_ISUID | libc::S_ISGID) != 0 {
        return Err(RestoreError::Executable {
            exe: exe_s,
            why: "is (or was, at the checkpoint) setuid or setgid".into(),
        });
    }
    let id = crate::elfid::build_id(exe).map_err(|e| RestoreError::Executable {
        exe: exe_s.clone(),
        why: format!("cannot be read ({e})"),
    })?;
    if id != meta.exe_build_id {
        return Err(RestoreError::Executable {
            exe: exe_s,
            why: format!(
                "changed since the checkpoint (build-id {} -> {})",
                crate::elfid::hex(meta.exe_build_id),
                crate::elfid::hex(&id)
            ),
        });
    }
    if !meta.exe_stamp.same_content(&now) {
        return Err(RestoreError::Executable {
            why: describe_change(&meta.exe_stamp, &now),
            exe: exe_s,
        });
    }
    for r in &view.regions {
        let kind = RegionKind::from_u32(r.kind);
        if !matches!(kind, Some(RegionKind::PrivateFile | RegionKind::SharedFile))
            || r.path.ends_with(b" (deleted)")
        {
            continue;
        }
        let p = Path::new(std::ffi::OsStr::from_bytes(r.path));
        let file = crate::image::show::shown(r.path);
        let now = crate::elfid::stamp(p).map_err(|e| RestoreError::MappedFile {
            file: file.clone(),
            why: format!("cannot be read ({e})"),
        })?;
        if !r.stamp.same_content(&now) {
            return Err(RestoreError::MappedFile {
                why: describe_change(&r.stamp, &now),
                file,
            });
        }
    }
    let host = crate::arch::cpu_xfeatures();
    let missing = meta.cpu_xfeatures & !host;
    if missing != 0 {
        return Err(RestoreError::CpuFeatures {
            image: meta.cpu_xfeatures,
            host,
            missing,
        });
    }
    Ok(())
}
