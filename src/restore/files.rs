//! Whether each file the image's descriptors name is still the file the
//! program had open, decided before anything is done: the restarted
//! program writes at its old offsets, so a file replaced meanwhile (log
//! rotation, a path that is now a symlink, a file re-created by another
//! user, a FIFO or device now at a regular file's path) would receive
//! someone else's data.
//!
//! Looks only through `kstate::fds::probe` (an `O_PATH | O_NOFOLLOW`
//! descriptor and its fstat): never opens a file for reading or writing,
//! never follows a symlink, never blocks.

use crate::image::model::{FdEntry, FdKind, FileStamp};
use crate::image::show::shown;

/// What to do with descriptors whose file is not the one that was open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ChangedFds {
    /// Refuse the restart, naming each descriptor and path.
    #[default]
    Refuse,
    /// Reopen the file at the path anyway (a warning each): still never
    /// through a symlink, never a file of another type.
    Accept,
}

/// Why the file at a descriptor's path is not the one the program had.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    /// Never acceptable: a symlink, or another type of file.
    Unsafe(String),
    /// Acceptable with `--changed-fds=accept`.
    Changed(String),
}

impl Change {
    pub fn why(&self) -> &str {
        match self {
            Change::Unsafe(s) | Change::Changed(s) => s,
        }
    }
}

/// The descriptors this module judges: files, directories and character
/// devices reopened from their path (the caller leaves out the stdio the
/// program gets from the restarter, see `restore::stdio`).
pub fn judged(f: &FdEntry) -> bool {
    matches!(
        FdKind::from_u32(f.kind),
        Some(FdKind::Regular | FdKind::Directory | FdKind::CharDevice)
    ) && f.path.starts_with(b"/")
        && !f.path.ends_with(b" (deleted)")
}

fn type_name(mode: u32) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFREG => "a regular file",
        libc::S_IFDIR => "a directory",
        libc::S_IFCHR => "a character device",
        libc::S_IFBLK => "a block device",
        libc::S_IFIFO => "a FIFO",
        libc::S_IFSOCK => "a socket",
        libc::S_IFLNK => "a symbolic link",
        _ => "a file of unknown type",
    }
}

/// Judges the file now at `ent`'s path (`now`, from lstat semantics: a
/// symlink is seen as one) against what the image recorded. `me` is the
/// restarting user's effective uid.
///
/// The same file is: the same type; for a regular file or directory the
/// same device and inode; a regular file no smaller and no older than at
/// the checkpoint (the program itself may have gone on writing it); and,
/// unless it is exactly as it was, owned by `me` (an inode number freed
/// and taken again by another user's new file is not the program's file).
pub fn judge(ent: &FdEntry, now: &libc::stat, me: u32) -> Result<(), Change> {
    let was = ent.stamp;
    let now_stamp = FileStamp::from_stat(now);
    let want = match FdKind::from_u32(ent.kind) {
        Some(FdKind::Regular) => libc::S_IFREG,
        Some(FdKind::Directory) => libc::S_IFDIR,
        Some(FdKind::CharDevice) => libc::S_IFCHR,
        _ => return Ok(()),
    };
    let have = now.st_mode & libc::S_IFMT;
    if have == libc::S_IFLNK {
        return Err(Change::Unsafe(
            "is now a symbolic link (it was not one at the checkpoint)".into(),
        ));
    }
    if have != want {
        return Err(Change::Unsafe(format!(
            "is now {}, it was {} at the checkpoint",
            type_name(have),
            type_name(want)
        )));
    }
    // Another process's /proc directory: in the restart's namespace (its
    // own /proc) only a process of the tree has that pid; never another.
    if let Some(pid) = crate::kstate::procfs::pid_of(ent.path) {
        let member = TREE_PIDS.get().is_some_and(|t| t.contains(&pid));
        if !member && !is_own_proc(ent.path) {
            return Err(Change::Unsafe(format!(
                "is a file of process {pid}, which does not come back with the program"
            )));
        }
    }
    // A pty slave of an outside terminal lives in one devpts instance; the
    // same number in another (the restart's own, mounted for the
    // program's own pairs) is another terminal.
    let pts_number = ent
        .path
        .strip_prefix(b"/dev/pts/")
        .and_then(|n| std::str::from_utf8(n).ok()?.parse::<u32>().ok());
    let ours_again = pts_number.is_some_and(|n| crate::kstate::pty::made_again(n, was.dev));
    if want == libc::S_IFCHR
        && ent.path.starts_with(b"/dev/pts/")
        && was.dev != now_stamp.dev
        && !ours_again
    {
        return Err(Change::Changed(format!(
            "is a terminal of another devpts instance now (device {:#x} at the checkpoint, {:#x} now)",
            was.dev, now_stamp.dev
        )));
    }
    if want == libc::S_IFCHR || is_own_proc(ent.path) || other_proc(ent.path, 0) == Some(true) {
        // Device inodes live on devtmpfs and are made anew at each boot,
        // the files of a process's /proc directory for each process: the
        // type is what can be compared.
        return Ok(());
    }
    if (was.dev, was.ino) != (now_stamp.dev, now_stamp.ino) {
        return Err(Change::Changed(format!(
            "is another file now (device {:#x} inode {} at the checkpoint, device {:#x} inode {} now)",
            was.dev, was.ino, now_stamp.dev, now_stamp.ino
        )));
    }
    if want == libc::S_IFDIR {
        return Ok(());
    }
    let unchanged = was.size == now_stamp.size && was.mtime_ns == now_stamp.mtime_ns;
    if now_stamp.size < was.size {
        return Err(Change::Changed(format!(
            "is smaller than at the checkpoint ({} bytes, {} then): truncated or replaced",
            now_stamp.size, was.size
        )));
    }
    if now_stamp.mtime_ns < was.mtime_ns {
        return Err(Change::Changed(
            "was last modified before the checkpoint's version of it: replaced".into(),
        ));
    }
    if !unchanged && now.st_uid != me {
        return Err(Change::Changed(format!(
            "changed since the checkpoint and belongs to uid {}, not to you (uid {me})",
            now.st_uid
        )));
    }
    Ok(())
}

/// True for a regular file the program had open for reading and writing
/// whose size or modification time differs from the checkpoint's (a data
/// file written after it: the restart goes on from the checkpoint's view
/// of it, which the user is told).
pub fn rewritten_since(ent: &FdEntry, now: &libc::stat) -> bool {
    let now_stamp = FileStamp::from_stat(now);
    FdKind::from_u32(ent.kind) == Some(FdKind::Regular)
        && ent.flags as i32 & libc::O_ACCMODE == libc::O_RDWR
        && (ent.stamp.size, ent.stamp.mtime_ns) != (now_stamp.size, now_stamp.mtime_ns)
}

/// This process's number as its /proc shows it (in a PID namespace of the
/// restart's own, with its fresh /proc, the program's old pid).
fn proc_self() -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    std::fs::read_link("/proc/self")
        .ok()
        .map(|p| p.as_os_str().as_bytes().to_vec())
        .filter(|p| !p.is_empty() && p.iter().all(u8::is_ascii_digit))
}

/// A path under `/proc/<old>/` (the program's own process: `old` is its
/// pid at the checkpoint; `/proc/self/...` paths read back so), or under
/// its main thread's `/proc/<old>/task/<old>/`, rewritten to this
/// process's, which becomes the program. None for any other path (another
/// process's, another thread's: their ids mean nothing after a restart).
pub fn own_proc_path(path: &[u8], old: u32) -> Option<Vec<u8>> {
    let old = old.to_string();
    let rest = path.strip_prefix(b"/proc/")?.strip_prefix(old.as_bytes())?;
    if !(rest.is_empty() || rest.starts_with(b"/")) {
        return None;
    }
    let me = proc_self()?;
    let mut out = b"/proc/".to_vec();
    out.extend(&me);
    let task = format!("/task/{old}");
    match rest.strip_prefix(task.as_bytes()) {
        Some(r) if r.is_empty() || r.starts_with(b"/") => {
            out.extend(b"/task/");
            out.extend(&me);
            out.extend(r);
        }
        _ if rest.starts_with(b"/task/") => return None,
        _ => out.extend(rest),
    }
    Some(out)
}

/// The pids of the processes a tree restart brings back (set once, by
/// `restore::tree`, before any image is checked): their /proc
/// directories are reopened under the same pids in its namespace.
static TREE_PIDS: std::sync::OnceLock<Vec<u32>> = std::sync::OnceLock::new();

/// Sets the pids of the tree being restarted.
pub fn set_tree_pids(pids: &[u32]) {
    let _ = TREE_PIDS.set(pids.to_vec());
}

/// Whether this is a tree restart that brings `pid` back (with that pid).
pub fn in_tree_restart(pid: u32) -> bool {
    TREE_PIDS.get().is_some_and(|t| t.contains(&pid))
}

/// Whose /proc directory `path` is under, if another process's (`me`:
/// the program's pid at the checkpoint): `Some(true)` for a process the
/// tree restart brings back with that pid, `Some(false)` for any other.
pub fn other_proc(path: &[u8], me: u32) -> Option<bool> {
    let pid = crate::kstate::procfs::pid_of(path)?;
    if pid == me {
        return None;
    }
    Some(TREE_PIDS.get().is_some_and(|t| t.contains(&pid)))
}

/// Whether `path` is under this process's own /proc directory (files
/// there are made anew for each process: their inode numbers say
/// nothing).
fn is_own_proc(path: &[u8]) -> bool {
    proc_self().is_some_and(|me| {
        path.strip_prefix(b"/proc/")
            .and_then(|r| r.strip_prefix(&me[..]))
            .is_some_and(|r| r.is_empty() || r.starts_with(b"/"))
    })
}

/// One line naming the descriptor, its path (escaped) and the change.
pub fn describe(ent: &FdEntry, why: &str) -> String {
    format!("fd {} ({}) {why}", ent.fd, shown(ent.path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat_of(mode: u32, dev: u64, ino: u64, size: i64, mtime: i64, uid: u32) -> libc::stat {
        // SAFETY: stat is plain old data; zeroed is a valid value.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        st.st_mode = mode;
        st.st_dev = dev;
        st.st_ino = ino;
        st.st_size = size;
        st.st_mtime = mtime;
        st.st_uid = uid;
        st
    }

    fn entry(kind: FdKind, st: &libc::stat) -> FdEntry<'static> {
        FdEntry {
            fd: 5,
            kind: kind as u32,
            flags: libc::O_RDWR as u32,
            offset: 0,
            path: b"/tmp/log",
            stamp: FileStamp::from_stat(st),
        }
    }

    #[test]
    fn paths_of_the_programs_own_proc_directory_become_this_processs() {
        let me = std::process::id();
        let got =
            |p: &str| own_proc_path(p.as_bytes(), 4242).map(|v| String::from_utf8(v).unwrap());
        assert_eq!(got("/proc/4242/status"), Some(format!("/proc/{me}/status")));
        assert_eq!(got("/proc/4242"), Some(format!("/proc/{me}")));
        assert_eq!(
            got("/proc/4242/task/4242/stat"),
            Some(format!("/proc/{me}/task/{me}/stat"))
        );
        assert_eq!(got("/proc/4242/task/4243/stat"), None, "another thread");
        assert_eq!(got("/proc/42421/status"), None, "another process");
        assert_eq!(got("/proc/cpuinfo"), None);
        assert_eq!(got("/tmp/4242/status"), None);
        assert!(is_own_proc(format!("/proc/{me}/status").as_bytes()));
        assert!(!is_own_proc(b"/proc/1/status"));
    }

    #[test]
    fn the_same_file_grown_is_accepted_anything_else_is_not() {
        let reg = libc::S_IFREG | 0o644;
        let then = stat_of(reg, 1, 10, 100, 1000, 7);
        let ent = entry(FdKind::Regular, &then);
        assert_eq!(judge(&ent, &then, 0), Ok(()), "unchanged, anyone's");
        assert_eq!(judge(&ent, &stat_of(reg, 1, 10, 150, 1001, 7), 7), Ok(()));
        let changed = |st: libc::stat, me| matches!(judge(&ent, &st, me), Err(Change::Changed(_)));
        assert!(changed(stat_of(reg, 1, 11, 150, 1001, 7), 7), "new inode");
        assert!(
            changed(stat_of(reg, 2, 10, 150, 1001, 7), 7),
            "other device"
        );
        assert!(changed(stat_of(reg, 1, 10, 50, 1001, 7), 7), "smaller");
        assert!(changed(stat_of(reg, 1, 10, 150, 999, 7), 7), "older");
        assert!(
            changed(stat_of(reg, 1, 10, 150, 1001, 8), 7),
            "another owner"
        );
        let unsafe_ = |mode| {
            matches!(
                judge(&ent, &stat_of(mode, 1, 10, 100, 1000, 7), 7),
                Err(Change::Unsafe(_))
            )
        };
        assert!(unsafe_(libc::S_IFLNK | 0o777), "symlink");
        assert!(unsafe_(libc::S_IFIFO | 0o644), "fifo");
        assert!(unsafe_(libc::S_IFCHR | 0o644), "device");
        let mut pts = entry(FdKind::CharDevice, &stat_of(libc::S_IFCHR, 26, 3, 0, 0, 0));
        pts.path = b"/dev/pts/3";
        assert_eq!(
            judge(&pts, &stat_of(libc::S_IFCHR, 26, 9, 0, 7, 0), 7),
            Ok(())
        );
        assert!(matches!(
            judge(&pts, &stat_of(libc::S_IFCHR, 27, 3, 0, 0, 0), 7),
            Err(Change::Changed(_))
        ));
        let dev = entry(FdKind::CharDevice, &stat_of(libc::S_IFCHR, 5, 3, 0, 0, 0));
        assert_eq!(
            judge(&dev, &stat_of(libc::S_IFCHR, 5, 99, 0, 7, 0), 7),
            Ok(())
        );
    }
}
