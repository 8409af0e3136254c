//! Spare file descriptors, reserved at install so that a checkpoint never
//! fails because the program used every descriptor its limit allows.
//!
//! [`RESERVE`] descriptors (duplicates of one small memfd, placed at the
//! top of the first 1024 numbers, below the soft limit) are held while the
//! program runs. [`release`] closes them just before a checkpoint opens its
//! files (`/proc/self/maps`, the image, `/proc/self/mem`, the page map, the
//! `/proc/self/fd` walk, the directory fsync, the stats line), and [`fill`]
//! takes them again afterwards. They are closed during the dump, so no
//! image ever lists them. The program can open `RESERVE` fewer descriptors
//! than its limit; that is the whole cost.
//!
//! Must never: close a descriptor that is not one of ours (each is checked
//! against the memfd's inode first: the program may have `dup2`ed over it,
//! and a restarted process has none of them), or fail a checkpoint.

use core::sync::atomic::{AtomicI32, AtomicU64, Ordering::*};

/// The memfd's name, as `memfd_create` takes it.
const NAME: &core::ffi::CStr = c"selfckpt-reserve";

/// True if `link` (what `/proc/PID/fd/N` reads) is a reserved descriptor
/// of a checkpointer: another member's are seen that way by a tree's root,
/// which must not take them for a file the members share.
pub fn is_reserve_link(link: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let l = link.as_os_str().as_bytes();
    let name = NAME.to_bytes();
    l.strip_prefix(b"/memfd:")
        .and_then(|r| r.strip_prefix(name))
        .is_some_and(|r| r.is_empty() || r == b" (deleted)")
}

/// How many descriptors a checkpoint may need at once.
pub const RESERVE: usize = 6;

static SLOTS: [AtomicI32; RESERVE] = [const { AtomicI32::new(-1) }; RESERVE];
/// (dev << 32) ^ inode of the memfd the slots duplicate.
static IDENTITY: AtomicU64 = AtomicU64::new(0);

fn identity_of(fd: i32) -> Option<u64> {
    crate::capture::sys::fstat(fd)
        .ok()
        .map(|st| (st.st_dev << 32) ^ st.st_ino)
}

fn ours(fd: i32) -> bool {
    fd >= 0 && identity_of(fd).is_some_and(|id| id == IDENTITY.load(Acquire) && id != 0)
}

/// The lowest number reserved descriptors are placed at.
fn floor() -> i32 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    let cur = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_cur.min(1024) as i32
    } else {
        1024
    };
    (cur - RESERVE as i32).max(3)
}

/// Takes the reserved descriptors (again); keeps those still ours.
pub fn fill() {
    let missing = SLOTS.iter().filter(|s| !ours(s.load(Acquire))).count();
    if missing == 0 {
        return;
    }
    // SAFETY: memfd_create with a static NUL-terminated name.
    let base = unsafe { libc::memfd_create(NAME.as_ptr(), libc::MFD_CLOEXEC) };
    if base < 0 {
        log::warn!(
            "cannot reserve descriptors for checkpoints: {}",
            std::io::Error::last_os_error()
        );
        return;
    }
    // A new memfd: every slot that is not ours any more is replaced.
    let old = IDENTITY.load(Acquire);
    let keep_old = SLOTS.iter().any(|s| ours(s.load(Acquire)));
    let id = if keep_old {
        old
    } else {
        identity_of(base).unwrap_or(0)
    };
    let source = if keep_old {
        SLOTS
            .iter()
            .map(|s| s.load(Acquire))
            .find(|&fd| ours(fd))
            .unwrap_or(base)
    } else {
        base
    };
    IDENTITY.store(id, Release);
    let lo = floor();
    for s in &SLOTS {
        if ours(s.load(Acquire)) {
            continue;
        }
        // SAFETY: duplicating a descriptor we own to the lowest free number
        // at or above `lo`.
        let fd = unsafe { libc::fcntl(source, libc::F_DUPFD_CLOEXEC, lo) };
        s.store(if fd >= 0 { fd } else { -1 }, Release);
    }
    // SAFETY: closing the memfd we created (the slots hold duplicates).
    unsafe { libc::close(base) };
}

/// Gives the reserved descriptors back to the kernel for a checkpoint.
pub fn release() {
    for s in &SLOTS {
        let fd = s.swap(-1, AcqRel);
        if ours(fd) {
            // SAFETY: `fd` is one of our duplicates (checked just above).
            unsafe { libc::close(fd) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn reserve_links_are_told_from_other_memfds() {
        assert!(is_reserve_link(Path::new(
            "/memfd:selfckpt-reserve (deleted)"
        )));
        assert!(is_reserve_link(Path::new("/memfd:selfckpt-reserve")));
        assert!(!is_reserve_link(Path::new("/memfd:selfckpt-reserved")));
        assert!(!is_reserve_link(Path::new("/memfd:app (deleted)")));
        assert!(!is_reserve_link(Path::new("/tmp/selfckpt-reserve")));
    }
}
