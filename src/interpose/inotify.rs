//! `inotify_add_watch`: glibc's, then the watch's path is noted (made
//! absolute, the inode it named), so that a checkpoint can say which file
//! each watch descriptor watches (the kernel only tells the inode:
//! `kstate::inotify`).
//!
//! Must never: change what the call returns or does. [`path_of`] runs in
//! the capture (threads parked): no allocation, no locks.

use super::next;
use core::sync::atomic::{AtomicPtr, Ordering::*};
use libc::{c_char, c_int};

/// Watches noted (more are found by their file handle, where the restart
/// may open one).
const MAX: usize = 4096;
static WATCHES: [AtomicPtr<Watch>; MAX] = [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX];

struct Watch {
    fd: c_int,
    wd: c_int,
    ino: u64,
    dev: u64,
    path: Vec<u8>,
}

/// The absolute path `path` names now, and its inode (dev, ino), through
/// an `O_PATH` descriptor (not following a last symlink if `nofollow`).
fn resolve(path: *const c_char, nofollow: bool) -> Option<(Vec<u8>, u64, u64)> {
    let flags = libc::O_PATH | libc::O_CLOEXEC | if nofollow { libc::O_NOFOLLOW } else { 0 };
    // SAFETY: open of the caller's NUL-terminated path.
    let fd = unsafe { libc::open(path, flags) };
    if fd < 0 {
        return None;
    }
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok();
    // SAFETY: stat is plain old data; fstat of our descriptor, then close.
    let st = unsafe {
        let mut st: libc::stat = core::mem::zeroed();
        let ok = libc::fstat(fd, &mut st) == 0;
        libc::close(fd);
        ok.then_some(st)
    }?;
    use std::os::unix::ffi::OsStrExt;
    let link = link?.as_os_str().as_bytes().to_vec();
    link.starts_with(b"/")
        .then_some((link, st.st_dev, st.st_ino))
}

/// inotify_add_watch(2).
///
/// # Safety
/// As glibc's.
#[no_mangle]
pub unsafe extern "C" fn inotify_add_watch(fd: c_int, path: *const c_char, mask: u32) -> c_int {
    let wd = next::inotify_add_watch(fd, path, mask);
    if wd < 0 {
        return wd;
    }
    let errno = *libc::__errno_location();
    if let Some((path, dev, ino)) = resolve(path, mask & libc::IN_DONT_FOLLOW != 0) {
        let new = Box::into_raw(Box::new(Watch {
            fd,
            wd,
            ino,
            dev,
            path,
        }));
        let same = |p: *mut Watch| !p.is_null() && (*p).fd == fd && (*p).wd == wd;
        let slot = WATCHES
            .iter()
            .find(|s| same(s.load(Acquire)))
            .or_else(|| WATCHES.iter().find(|s| s.load(Acquire).is_null()));
        match slot {
            Some(s) => {
                let old = s.swap(new, AcqRel);
                if !old.is_null() {
                    drop(Box::from_raw(old));
                }
            }
            None => drop(Box::from_raw(new)),
        }
    }
    *libc::__errno_location() = errno;
    wd
}

/// The path noted for watch `wd` of inotify descriptor `fd`, if it still
/// names the inode the kernel says the watch is on. No allocation.
pub fn path_of(fd: c_int, wd: c_int, dev: u64, ino: u64) -> Option<&'static [u8]> {
    WATCHES.iter().find_map(|s| {
        let p = s.load(Acquire);
        // SAFETY: a noted watch; freed only when replaced, never while
        // the capture runs (every other thread is parked).
        let w = unsafe { p.as_ref()? };
        (w.fd == fd && w.wd == wd && w.ino == ino && w.dev == dev).then_some(&w.path[..])
    })
}
