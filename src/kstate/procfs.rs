//! Descriptors of files under `/proc/<pid>/` of another process: one of
//! the checkpointed tree (its parent, a child, a sibling) is reopened at
//! restart under the same pid, which the restarted tree has again in its
//! PID namespace (whose own /proc shows only the tree's processes); one of
//! a process outside the tree cannot come back (its pid means nothing
//! after a restart, or another process's files): it is named here with a
//! `NotRestorable` entry of kind `procfs`.
//!
//! A process is in the tree if it is this one, or its line of parents
//! (`/proc/<pid>/stat`) reaches the tree's root: this process in the
//! root, the root's end of the member's tree connection (`SO_PEERCRED`)
//! in a member. A process checkpointed alone has only itself.
//!
//! Capture runs while the program's threads are suspended: readlink and
//! /proc reads into the capture's buffers, a sentence in a stack buffer,
//! never an allocation. There is no record and no restore of its own
//! (the descriptors are reopened by path: `restore::files`).

use super::objects::NotRestorable;
use super::unrestorable::Words;
use super::{CaptureBuffers, KstateError};
use crate::capture::sys::{self, PathBuf};
use crate::image::codec::Encoder;

/// The kind `--unrestorable` names.
pub const KIND: &str = "procfs";

/// The pid of a `/proc/<pid>` or `/proc/<pid>/...` path.
pub fn pid_of(path: &[u8]) -> Option<u32> {
    let rest = path.strip_prefix(b"/proc/")?;
    let (pid, tail) = sys::parse_u64(rest)?;
    (tail.is_empty() || tail.starts_with(b"/")).then_some(pid as u32)
}

/// The tree's root as this process sees it (None: checkpointed alone).
pub(super) fn tree_root() -> Option<u32> {
    if crate::tree::is_root() {
        return crate::tree::covers_forks().then(sys::getpid);
    }
    let fd = crate::tree::member::conn()?;
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = core::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: SO_PEERCRED writes one ucred of the size given.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (r == 0 && cred.pid > 0).then_some(cred.pid as u32)
}

/// The parent of `pid` (`/proc/<pid>/stat`), or the process it is a
/// thread of (`Tgid` is not needed: a thread's stat names its process's
/// parent, and its pid directory is its process's).
fn parent_of(pid: u32, text: &mut [u8]) -> Option<u32> {
    let mut p = PathBuf::<48>::new();
    p.push(b"/proc/").push_u64(pid as u64).push(b"/stat");
    let n = sys::read_file(p.as_cstr_bytes(), text).ok()?;
    let t = &text[..n];
    let close = t.iter().rposition(|&c| c == b')')?;
    let mut fields = t[close + 1..]
        .split(|&c| c == b' ')
        .filter(|f| !f.is_empty());
    fields
        .nth(1)
        .and_then(|f| sys::parse_u64(f))
        .map(|(v, _)| v as u32)
}

/// Whether `pid` is this process (a thread of it) or in its tree.
pub(super) fn in_tree(pid: u32, root: Option<u32>, text: &mut [u8]) -> bool {
    let me = sys::getpid();
    let mut tgid = PathBuf::<48>::new();
    tgid.push(b"/proc/self/task/").push_u64(pid as u64);
    if pid == me || sys::stat_path(tgid.as_cstr_bytes()).is_ok() {
        return true;
    }
    let Some(root) = root else { return false };
    let mut p = pid;
    for _ in 0..256 {
        if p == root {
            return true;
        }
        match parent_of(p, text) {
            Some(q) if q > 1 && q != p => p = q,
            _ => return false,
        }
    }
    false
}

/// Names every descriptor of a file under another process's /proc
/// directory that is not in the tree. No allocation.
pub fn capture(
    e: &mut Encoder,
    bufs: &mut CaptureBuffers,
    skip_fd: &dyn Fn(i32) -> bool,
) -> Result<(), KstateError> {
    let root = tree_root();
    super::fds::for_each_fd(skip_fd, |fd| {
        let mut p = PathBuf::<48>::new();
        p.push(b"/proc/thread-self/fd/").push_u64(fd as u64);
        let Ok(n) = sys::readlink(p.as_cstr_bytes(), bufs.path) else {
            return Ok(());
        };
        let Some(pid) = pid_of(&bufs.path[..n]) else {
            return Ok(());
        };
        if in_tree(pid, root, bufs.text) {
            return Ok(());
        }
        let mut words = [0u8; 240];
        let mut w = Words::new(&mut words);
        w.push(&bufs.path[..n]);
        w.push(b": a file of process ");
        w.push_u64(pid as u64);
        w.push(b", which is not checkpointed with this one (after a restart its pid is nobody's, or another process's)");
        let len = w.len();
        NotRestorable::capture(e, fd, KIND, &words[..len])?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kstate::objects::{Object, Objects};

    #[test]
    fn pids_of_proc_paths() {
        assert_eq!(pid_of(b"/proc/123/maps"), Some(123));
        assert_eq!(pid_of(b"/proc/123"), Some(123));
        assert_eq!(pid_of(b"/proc/123x/maps"), None);
        assert_eq!(pid_of(b"/proc/self/maps"), None);
        assert_eq!(pid_of(b"/proc/cpuinfo"), None);
        assert_eq!(pid_of(b"/tmp/123"), None);
    }

    #[test]
    fn another_processs_file_is_named_ours_is_not() {
        let me = std::process::id();
        let own = std::fs::File::open(format!("/proc/{me}/status")).unwrap();
        // Our parent (cargo's test runner or a shell) is outside: this
        // process is checkpointed alone here.
        let parent = std::os::unix::process::parent_id();
        let other = std::fs::File::open(format!("/proc/{parent}/status")).unwrap();
        let (a, b) = (
            std::os::fd::AsRawFd::as_raw_fd(&own),
            std::os::fd::AsRawFd::as_raw_fd(&other),
        );
        let out = crate::kstate::captured(|e, bufs| {
            capture(e, bufs, &|fd| fd != a && fd != b)?;
            crate::kstate::objects::end(e)?;
            Ok(())
        });
        let o = Objects::decode(&mut crate::image::codec::Decoder::new(&out)).unwrap();
        let [Object::NotRestorable(x)] = &o.items[..] else {
            panic!("{o:?}")
        };
        assert_eq!((x.fd, x.kind.as_str()), (b, KIND));
        assert!(x.text.contains(&parent.to_string()), "{}", x.text);
    }
}
