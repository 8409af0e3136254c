//! The image directory: what may be in it, and every file operation on it.
//!
//! ```text
//!  DIR/                         0700, owned by the user (or sticky)
//!    PROG-MS-INST-PID.ckpt      an image: MS = creation time (ms), INST =
//!                               the writer's instance token, PID = its pid
//!    .PROG-MS-INST-PID.ckpt.tmp an image being written; its writer holds
//!                               an exclusive flock on it until the rename
//!    stats.jsonl                one JSON line per checkpoint (appended)
//!    run.json                   what `selfckpt run` started (RunRecord)
//!    children/PROG-PID/         images of forked children (older versions)
//!    tree-MS-INST-PID.tree/     a process tree's image set (`tree::set`)
//! ```
//!
//! Rules: every file is opened `O_NOFOLLOW`; new files are created
//! `O_EXCL` (and whole-file rewrites go through an `O_EXCL` temporary and a
//! rename); a directory writable by others without the sticky bit, or owned
//! by another user, is refused. A file counts as ours only when the user
//! owns it; an image counts as the program's own only when its name has the
//! exact grammar above with this instance's token and its META names this
//! executable. Images are ordered by what they say (sequence, then META
//! time), never by their names or the clock.
//!
//! Must never: follow a symlink, write into a file it did not create,
//! remove a file the user does not own, remove an image it has not read
//! and found to be the program's own, or remove a temporary file whose
//! writer still holds its lock.

use crate::capture::sys::RawFd;
use crate::image::read::peek_meta;
use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// What can go wrong with the image directory.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    #[error(
        "image directory {0} is writable by others and not sticky: anyone could plant files \
         there (chmod 700 it, or choose another --dir)"
    )]
    SharedWritable(String),
    #[error(
        "image directory {path} belongs to uid {owner}, not to you (uid {me}): choose a \
         directory of your own"
    )]
    Foreign { path: String, owner: u32, me: u32 },
    #[error("{0} is not a directory")]
    NotDirectory(String),
    #[error(
        "{0} is not a regular file of yours (a symlink, a device or another user's file); refused"
    )]
    NotOurs(String),
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
}

impl From<DirError> for crate::Error {
    fn from(e: DirError) -> crate::Error {
        match e {
            DirError::Io { what, path, source } => {
                crate::Error::Io(format!("cannot {what} {path}"), source)
            }
            other => crate::Error::Config(other.to_string()),
        }
    }
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DirError {
    let path = path.display().to_string();
    move |source| DirError::Io { what, path, source }
}

/// The effective user id.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Refuses a directory that others could plant files in or that belongs to
/// someone else.
pub fn check_safe(dir: &Path) -> Result<(), DirError> {
    let md = std::fs::metadata(dir).map_err(io_err("stat", dir))?;
    if !md.is_dir() {
        return Err(DirError::NotDirectory(dir.display().to_string()));
    }
    let me = euid();
    if md.uid() != me {
        return Err(DirError::Foreign {
            path: dir.display().to_string(),
            owner: md.uid(),
            me,
        });
    }
    if md.mode() & 0o022 != 0 && md.mode() & libc::S_ISVTX == 0 {
        return Err(DirError::SharedWritable(dir.display().to_string()));
    }
    Ok(())
}

/// The directory [`prepare`] deferred (made by [`ready`] when missing).
static DEFERRED: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Before each image: `dir` must exist and be safe. Only a deferred
/// directory is made here; one removed behind the program's back is an
/// error (the user removed it on purpose, or another is in its place).
pub fn ready(dir: &Path) -> Result<(), DirError> {
    if DEFERRED.get().is_some_and(|d| d == dir) && !dir.exists() {
        return ensure(dir).map(|_| ());
    }
    check_safe(dir)
}

/// Creates `dir` (0700, with its parents) if needed, checks it is safe and
/// returns its canonical path.
pub fn ensure(dir: &Path) -> Result<PathBuf, DirError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err("create", dir))?;
    let dir = std::fs::canonicalize(dir).map_err(io_err("resolve", dir))?;
    check_safe(&dir)?;
    Ok(dir)
}

static LAZY: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

pub(crate) fn take_lazy() -> bool {
    LAZY.swap(false, core::sync::atomic::Ordering::AcqRel)
}

/// The canonical path `dir` will have, made now unless `lazy` (then only
/// its parent must exist; [`ensure`] makes it before the first image).
pub fn prepare(dir: &Path, lazy: bool) -> Result<PathBuf, DirError> {
    if !lazy || dir.exists() {
        return ensure(dir);
    }
    let (Some(parent), Some(leaf)) = (dir.parent(), dir.file_name()) else {
        return ensure(dir);
    };
    // The parent (DIR/children) may not exist yet either: resolve the
    // nearest existing ancestor.
    let full = resolve_missing(parent)?.join(leaf);
    let _ = DEFERRED.set(full.clone());
    Ok(full)
}

/// The canonical path of `dir`, which may not exist yet (its nearest
/// existing ancestor is resolved).
fn resolve_missing(dir: &Path) -> Result<PathBuf, DirError> {
    if let Ok(p) = std::fs::canonicalize(dir) {
        return Ok(p);
    }
    match (dir.parent(), dir.file_name()) {
        (Some(parent), Some(leaf)) => Ok(resolve_missing(parent)?.join(leaf)),
        _ => std::fs::canonicalize(dir).map_err(io_err("resolve", dir)),
    }
}

fn open_flags(o: &mut std::fs::OpenOptions) -> &mut std::fs::OpenOptions {
    o.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
}

/// Refuses an opened file that is not a regular file owned by the user.
fn must_be_ours(f: &File, path: &Path) -> Result<(), DirError> {
    let md = f.metadata().map_err(io_err("stat", path))?;
    if !md.is_file() || md.uid() != euid() {
        return Err(DirError::NotOurs(path.display().to_string()));
    }
    Ok(())
}

/// Appends `line` to `dir/name`, creating it (0600, `O_EXCL`) if missing.
pub fn append_line(dir: &Path, name: &str, line: &[u8]) -> Result<(), DirError> {
    let path = dir.join(name);
    let mut last = None;
    for _ in 0..2 {
        let existing = open_flags(&mut std::fs::OpenOptions::new())
            .append(true)
            .open(&path);
        let f = match existing {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                match open_flags(&mut std::fs::OpenOptions::new())
                    .append(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        last = Some(e);
                        continue;
                    }
                    Err(e) => return Err(io_err("create", &path)(e)),
                }
            }
            Err(e) => return Err(io_err("open", &path)(e)),
        };
        must_be_ours(&f, &path)?;
        return (&f).write_all(line).map_err(io_err("append to", &path));
    }
    Err(io_err("create", &path)(
        last.unwrap_or_else(|| std::io::Error::other("raced")),
    ))
}

/// Replaces `dir/name` with `bytes`: written to an `O_EXCL` temporary,
/// fsynced, renamed over the old file (a symlink there is replaced, never
/// followed).
pub fn replace_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), DirError> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.{}.new", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let res = open_flags(&mut std::fs::OpenOptions::new())
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err("create", &tmp))
        .and_then(|mut f| {
            f.write_all(bytes)
                .and_then(|()| f.sync_all())
                .map_err(io_err("write", &tmp))
        })
        .and_then(|()| std::fs::rename(&tmp, &path).map_err(io_err("rename to", &path)));
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// Reads `dir/name` if it exists and is a regular file of ours (at most
/// `max` bytes).
pub fn read_small(dir: &Path, name: &str, max: u64) -> Result<Option<Vec<u8>>, DirError> {
    let path = dir.join(name);
    let f = match open_flags(&mut std::fs::OpenOptions::new())
        .read(true)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("open", &path)(e)),
    };
    must_be_ours(&f, &path)?;
    let mut v = Vec::new();
    f.take(max)
        .read_to_end(&mut v)
        .map_err(io_err("read", &path))?;
    Ok(Some(v))
}

/// `run.json`: what `selfckpt run` started with this directory.
#[derive(serde::Serialize, serde::Deserialize, PartialEq, Eq, Clone, Debug, Default)]
pub struct RunRecord {
    /// The instance token the started program writes into image names.
    pub instance: String,
    /// The executable, resolved (PATH lookup, symlinks).
    pub exe: String,
    /// Its identity when the run started: device, inode, size, mtime (ns).
    pub exe_id: (u64, u64, u64, i64),
    /// The command line (argv[0] as given, then the arguments).
    pub command: Vec<String>,
    /// The working directory, resolved.
    pub cwd: String,
    /// Set when the program ended by exiting (Unix time in ms).
    #[serde(default)]
    pub ended_unix_ms: Option<u64>,
}

/// File name of the run record.
pub const RUN_RECORD: &str = "run.json";

impl RunRecord {
    pub fn load(dir: &Path) -> Result<Option<RunRecord>, DirError> {
        Ok(read_small(dir, RUN_RECORD, 1 << 20)?
            .and_then(|b| serde_json::from_slice::<RunRecord>(&b).ok()))
    }

    pub fn store(&self, dir: &Path) -> Result<(), DirError> {
        let json = serde_json::to_vec_pretty(self).unwrap_or_default();
        replace_file(dir, RUN_RECORD, &json)
    }

    /// True if `other` describes the same job (all but the instance and
    /// the end).
    pub fn same_job(&self, other: &RunRecord) -> bool {
        (&self.exe, self.exe_id, &self.command, &self.cwd)
            == (&other.exe, other.exe_id, &other.command, &other.cwd)
    }
}

/// Records in `dir/run.json` that the run of `instance` ended (the program
/// exited), so that the next `selfckpt run` starts fresh.
pub fn mark_ended(dir: &Path, instance: &str) {
    let Ok(Some(mut rec)) = RunRecord::load(dir) else {
        return;
    };
    if rec.instance != instance || rec.ended_unix_ms.is_some() {
        return;
    }
    rec.ended_unix_ms = Some(crate::capture::sys::realtime_ns() / 1_000_000);
    if let Err(e) = rec.store(dir) {
        log::warn!("cannot record the end of the run: {e}");
    }
}

/// Takes back the end [`mark_ended`] recorded for `instance`: a member of
/// its tree lives on as the run's new root. False if no end was recorded
/// (the root did not exit: it was killed) or it cannot be taken back.
pub fn unmark_ended(dir: &Path, instance: &str) -> bool {
    let Ok(Some(mut rec)) = RunRecord::load(dir) else {
        return false;
    };
    if rec.instance != instance || rec.ended_unix_ms.is_none() {
        return false;
    }
    rec.ended_unix_ms = None;
    match rec.store(dir) {
        Ok(()) => true,
        Err(e) => {
            log::warn!("cannot record that the run goes on: {e}");
            false
        }
    }
}

/// A fresh instance token: 16 hex digits.
pub fn new_instance() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(crate::capture::sys::realtime_ns());
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

/// The instance token of this process: `SELFCKPT_INSTANCE` (set by
/// `selfckpt run`) when it is a valid token, else a fresh one.
pub fn instance_from_env() -> String {
    crate::settings::instance()
        .filter(|v| valid_token(v))
        .unwrap_or_else(new_instance)
}

fn valid_token(v: &str) -> bool {
    v.len() == 16 && v.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `PROG-MS-INST-PID.ckpt`.
pub fn image_name(prog: &str, created_ms: u64, instance: &str, pid: u32) -> String {
    format!("{prog}-{created_ms:013}-{instance}-{pid}.ckpt")
}

/// The parts of an image name with the exact grammar of [`image_name`]:
/// program, creation ms, instance token, pid.
pub fn parse_name(name: &str) -> Option<(&str, u64, &str, u32)> {
    let rest = name.strip_suffix(".ckpt")?;
    let mut it = rest.rsplitn(4, '-');
    let (pid, inst, ms, prog) = (it.next()?, it.next()?, it.next()?, it.next()?);
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if prog.is_empty() || ms.len() != 13 || !digits(ms) || !valid_token(inst) || !digits(pid) {
        return None;
    }
    Some((prog, ms.parse().ok()?, inst, pid.parse().ok()?))
}

/// The instance token of an image name of `prog`, if the name has the
/// exact grammar of [`image_name`].
pub fn instance_of<'a>(name: &'a str, prog: &str) -> Option<&'a str> {
    parse_name(name).and_then(|(p, _, inst, _)| (p == prog).then_some(inst))
}

/// Name of the temporary file an image is written to.
pub fn temp_name(name: &str) -> String {
    format!(".{name}.tmp")
}

fn cpath(p: &Path) -> Result<CString, DirError> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| DirError::Io {
        what: "use",
        path: p.display().to_string(),
        source: std::io::Error::other("the path contains a NUL byte"),
    })
}

/// Takes an exclusive flock on `fd` without waiting; true if taken.
fn try_lock(fd: i32) -> bool {
    // SAFETY: flock on a descriptor we own; no memory is passed.
    unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// Creates the temporary file of a new image (`O_EXCL`, `O_NOFOLLOW`) and
/// takes its writer lock, held as long as the descriptor is open. The file
/// is created with mode 0 and made 0600 once locked: a temporary with mode
/// 0 is one whose writer may not have taken its lock yet.
pub fn create_temp(tmp: &Path) -> Result<RawFd, DirError> {
    let c = cpath(tmp)?;
    let fd = RawFd::open(
        c.as_bytes_with_nul(),
        libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
        0,
    )
    .map_err(|e| io_err("create", tmp)(e.describe()))?;
    // SAFETY: fchmod on a descriptor we own.
    if !try_lock(fd.raw()) || unsafe { libc::fchmod(fd.raw(), 0o600) } != 0 {
        let e = std::io::Error::last_os_error();
        let _ = std::fs::remove_file(tmp);
        return Err(io_err("lock", tmp)(e));
    }
    Ok(fd)
}

/// Makes the image durable under its final name: MAC (with SELFCKPT_KEY),
/// fsync, rename, fsync of the directory. `fd` is the temporary's
/// descriptor from [`create_temp`] (its lock is held until the rename is
/// done). On failure the temporary is removed.
pub fn commit(fd: RawFd, tmp: &Path, fin: &Path, dir: &Path) -> Result<(), crate::Error> {
    let raw = fd.0;
    core::mem::forget(fd);
    // SAFETY: `raw` was owned by `fd`, which we forgot: the File is now its
    // only owner.
    let mut f = unsafe { File::from_raw_fd(raw) };
    let res = (|| {
        if let Some(key) = crate::image::mac::MacKey::from_env() {
            crate::image::mac::seal_file(&mut f, &key).map_err(|e| {
                crate::Error::Io(
                    format!("cannot add the MAC to {}", tmp.display()),
                    std::io::Error::other(e.to_string()),
                )
            })?;
        }
        f.sync_all()
            .map_err(|e| crate::Error::Io(format!("cannot fsync {}", tmp.display()), e))?;
        std::fs::rename(tmp, fin)
            .map_err(|e| crate::Error::Io(format!("cannot rename to {}", fin.display()), e))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| crate::Error::Io(format!("cannot fsync directory {}", dir.display()), e))
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    drop(f);
    res
}

/// True if `e` proves an image damaged (a checksum or structure failure),
/// as opposed to "cannot read it" (permissions, I/O), "cannot authenticate
/// it" (MAC missing or made with another key), "not an image at all" (bad
/// magic) or "made by a newer or other build" (version, header fields).
pub fn is_proven_damage(e: &crate::image::read::ReadError) -> bool {
    use crate::image::format::FormatError as F;
    matches!(
        e,
        F::HeaderChecksum
            | F::Truncated { .. }
            | F::UnknownKind { .. }
            | F::RecordTooLarge { .. }
            | F::RecordChecksum { .. }
            | F::Malformed { .. }
            | F::Order { .. }
            | F::EndMismatch(_)
            | F::TrailingData(_)
            | F::Invalid(_)
    )
}

/// The commit of a checkpoint-then-exit, prepared before the threads are
/// suspended so that it runs while they stay parked: no allocation (paths
/// and the stats line are made now), raw system calls only. Without
/// SELFCKPT_KEY only (the MAC is computed by code that allocates).
pub struct TermCommit {
    tmp: CString,
    fin: CString,
    dir: CString,
    stats: CString,
    line: Vec<u8>,
    waiter: Option<std::os::unix::net::SocketAddr>,
    /// With SELFCKPT_KEY: the key and the read buffer the MAC is computed
    /// with (allocated here, before the threads are parked).
    seal: Option<(crate::image::mac::MacKey, Vec<u8>)>,
}

impl TermCommit {
    /// Prepares the commit of `tmp` to `fin` (in the same directory) and
    /// the stats line of `prog`'s image created at `created_ns` (with
    /// SELFCKPT_KEY set, the MAC record is appended first, allocation-free:
    /// `mac::seal_fd`).
    pub fn prepare(
        tmp: &Path,
        fin: &Path,
        prog: &str,
        created_ns: u64,
    ) -> Result<Option<Self>, DirError> {
        let seal = crate::image::mac::MacKey::from_env().map(|k| (k, vec![0u8; 1 << 20]));
        let dir = fin.parent().unwrap_or(Path::new("."));
        let line = serde_json::json!({
            "time_unix_ms": created_ns / 1_000_000,
            "pid": crate::capture::sys::getpid(),
            "program": prog,
            "state": "term",
            "path": fin.display().to_string(),
        });
        Ok(Some(TermCommit {
            tmp: cpath(tmp)?,
            fin: cpath(fin)?,
            dir: cpath(dir)?,
            stats: cpath(&dir.join("stats.jsonl"))?,
            line: format!("{line}\n").into_bytes(),
            waiter: crate::notify::address(),
            seal,
        }))
    }

    /// fsync, rename, fsync of the directory, then the stats line and the
    /// waiter's datagram. Allocates nothing. Err: the image is not durable
    /// (nothing was renamed, or the caller retries the normal commit).
    pub fn run(&mut self, image_fd: i32) -> Result<(), crate::capture::sys::Errno> {
        use crate::capture::sys::Errno;
        let ok = |r: libc::c_int| if r < 0 { Err(Errno::last()) } else { Ok(()) };
        if let Some((key, buf)) = &mut self.seal {
            crate::image::mac::seal_fd(image_fd, key, buf).map_err(Errno)?;
        }
        // SAFETY: plain system calls on our descriptor and on NUL-terminated
        // paths we own; nothing is retained.
        unsafe {
            ok(libc::fsync(image_fd))?;
            ok(libc::rename(self.tmp.as_ptr(), self.fin.as_ptr()))?;
            let d = libc::open(
                self.dir.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            );
            ok(d)?;
            let synced = libc::fsync(d);
            libc::close(d);
            ok(synced)?;
            let flags = libc::O_WRONLY
                | libc::O_APPEND
                | libc::O_NOFOLLOW
                | libc::O_NONBLOCK
                | libc::O_CLOEXEC;
            let mut f = libc::open(self.stats.as_ptr(), flags);
            if f < 0 {
                f = libc::open(
                    self.stats.as_ptr(),
                    flags | libc::O_CREAT | libc::O_EXCL,
                    0o600,
                );
            }
            if f >= 0 {
                let mut st: libc::stat = core::mem::zeroed();
                if libc::fstat(f, &mut st) == 0
                    && st.st_mode & libc::S_IFMT == libc::S_IFREG
                    && st.st_uid == euid()
                {
                    libc::write(f, self.line.as_ptr().cast(), self.line.len());
                }
                libc::close(f);
            }
        }
        if let Some(a) = &self.waiter {
            crate::notify::send_to(a, &self.line);
        }
        Ok(())
    }
}

/// What an image file says about itself, when it is a regular file of ours
/// whose records up to THREADS read well.
pub struct OwnImage {
    pub path: PathBuf,
    pub exe: Vec<u8>,
    pub sequence: u64,
    pub created_unix_ns: u64,
}

/// The images an incremental image at `path` needs (its parent, the
/// parent's parent, ...), as far as they are there and readable: the
/// names its chain of META records gives, in its directory.
pub fn ancestors_of(path: &Path) -> Vec<PathBuf> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut out: Vec<PathBuf> = Vec::new();
    let mut at = path.to_path_buf();
    while let Some(name) = peek_meta(&at).ok().and_then(|m| m.parent) {
        let next = dir.join(std::ffi::OsStr::from_bytes(&name));
        // A chain that loops or leaves the directory is no chain.
        if name.contains(&b'/') || next == path || out.contains(&next) {
            break;
        }
        out.push(next.clone());
        at = next;
    }
    out
}

/// Reads `path` as an image of ours (regular file, owned by the user, not a
/// symlink, whose header and META read well), or None. Only META is read:
/// whose image it is and where it stands is all pruning decides by.
pub fn read_own_image(path: &Path) -> Option<OwnImage> {
    let md = std::fs::symlink_metadata(path).ok()?;
    if !md.is_file() || md.uid() != euid() {
        return None;
    }
    let m = peek_meta(path).ok()?;
    Some(OwnImage {
        path: path.to_path_buf(),
        exe: m.exe,
        sequence: m.sequence,
        created_unix_ns: m.created_unix_ns,
    })
}

/// Keeps the newest `keep` (at least 1) images of this instance of `prog`
/// (executable `exe`) in `dir`, newest by sequence then META time; then
/// removes temporaries of `prog` whose writer is gone.
pub fn prune(dir: &Path, prog: &str, instance: &str, exe: &[u8], keep: usize) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let named: Vec<PathBuf> = rd
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| instance_of(n, prog))
                .is_some_and(|i| i == instance)
        })
        .map(|e| e.path())
        .collect();
    // No more files by this instance's name than are kept: none goes, and
    // none needs reading (a long run keeping every image would otherwise
    // read them all on each checkpoint).
    if named.len() > keep.max(1) {
        prune_images(named, exe, keep);
    }
    for t in stale_temps(dir, Some(prog)) {
        log::warn!(
            "removing {}, left by a checkpoint whose writer is gone",
            t.display()
        );
        let _ = std::fs::remove_file(t);
    }
}

/// Of `named` (files with this instance's image names), removes all but
/// the newest `keep` that are really this program's images, sparing the
/// ancestors of the kept ones.
fn prune_images(named: Vec<PathBuf>, exe: &[u8], keep: usize) {
    let mut own: Vec<OwnImage> = named
        .iter()
        .filter_map(|p| read_own_image(p))
        .filter(|i| i.exe == exe)
        .collect();
    own.sort_by_key(|i| (i.sequence, i.created_unix_ns));
    let n = own.len();
    let cut = n.saturating_sub(keep.max(1));
    // An incremental image's ancestors stay as long as it does.
    let needed: Vec<PathBuf> = own[cut..]
        .iter()
        .flat_map(|i| ancestors_of(&i.path))
        .collect();
    for old in own
        .into_iter()
        .take(cut)
        .filter(|i| !needed.contains(&i.path))
    {
        log::debug!("pruning {}", old.path.display());
        let _ = std::fs::remove_file(&old.path);
    }
}

/// How long a temporary may still have mode 0 (its writer between `open`
/// and `flock`): younger ones are never taken as abandoned.
const TEMP_GRACE_NS: i128 = 2_000_000_000;

/// Temporary image files in `dir` (of `prog` only, if given) that are
/// regular files of ours whose writer lock is free (and that are not
/// being set up: mode 0 for less than a moment): their writer died. The check takes the lock for an instant; a
/// live writer holds it, so its file is never listed.
pub fn stale_temps(dir: &Path, prog: Option<&str>) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let now = crate::capture::sys::realtime_ns() as i128;
    rd.flatten()
        .filter(|e| {
            let name = e.file_name();
            let Some(stem) = name
                .to_str()
                .and_then(|n| n.strip_prefix('.'))
                .and_then(|n| n.strip_suffix(".tmp"))
            else {
                return false;
            };
            match prog {
                Some(p) => instance_of(stem, p).is_some(),
                None => stem.ends_with(".ckpt"),
            }
        })
        .map(|e| e.path())
        .filter(|p| {
            let Ok(f) = open_flags(&mut std::fs::OpenOptions::new())
                .read(true)
                .open(p)
            else {
                return false;
            };
            let Ok(md) = f.metadata() else {
                return false;
            };
            let mtime = md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128;
            md.is_file()
                && md.uid() == euid()
                && (md.mode() & 0o777 != 0 || now - mtime > TEMP_GRACE_NS)
                && try_lock(f.as_raw_fd())
        })
        .collect()
}

/// Empty directories of children (`dir/children/*`) that are ours, and
/// `dir/children` itself once empty.
pub fn empty_child_dirs(dir: &Path) -> Vec<PathBuf> {
    let kids = dir.join("children");
    let Ok(rd) = std::fs::read_dir(&kids) else {
        return Vec::new();
    };
    rd.flatten()
        .map(|e| e.path())
        .filter(|p| {
            std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir() && m.uid() == euid())
                && std::fs::read_dir(p).is_ok_and(|mut r| r.next().is_none())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_one_instance_only() {
        let inst = "0123456789abcdef";
        let n = image_name("prog", 1_700_000_000_000, inst, 42);
        assert_eq!(instance_of(&n, "prog"), Some(inst));
        for (name, prog) in [
            (image_name("prog-x", 1_700_000_000_000, inst, 42), "prog"),
            ("prog-1700000000000-42.ckpt".to_string(), "prog"),
            (
                "prog-17000000000-0123456789abcdef-42.ckpt".to_string(),
                "prog",
            ),
            (format!("{n}.tmp"), "prog"),
            (
                "prog-1700000000000-0123456789abcdeg-42.ckpt".to_string(),
                "prog",
            ),
        ] {
            assert_eq!(instance_of(&name, prog), None, "{name}");
        }
    }

    #[test]
    fn unsafe_directories_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("d");
        std::fs::create_dir(&d).unwrap();
        let set = |m| std::fs::set_permissions(&d, std::fs::Permissions::from_mode(m)).unwrap();
        set(0o777);
        assert!(matches!(check_safe(&d), Err(DirError::SharedWritable(_))));
        set(0o770);
        assert!(matches!(check_safe(&d), Err(DirError::SharedWritable(_))));
        set(0o1777);
        assert!(check_safe(&d).is_ok());
        set(0o700);
        assert!(check_safe(&d).is_ok());
    }

    #[test]
    fn a_locked_temp_is_live_and_an_unlocked_old_one_is_stale() {
        let t = tempfile::tempdir().unwrap();
        let name = image_name("p", 1, "0123456789abcdef", 7);
        let live = t.path().join(temp_name(&name));
        let fd = create_temp(&live).unwrap();
        let dead = t
            .path()
            .join(temp_name(&image_name("p", 2, "0123456789abcdef", 7)));
        std::fs::write(&dead, b"x").unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(10);
        for p in [&live, &dead] {
            File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        assert_eq!(stale_temps(t.path(), Some("p")), vec![dead.clone()]);
        drop(fd);
        let mut all = stale_temps(t.path(), None);
        all.sort();
        let mut want = vec![live, dead];
        want.sort();
        assert_eq!(all, want);
    }
}
