//! A shared file mapping whose path is gone may still be linked under
//! another name in the same directory: glibc's `sem_open` maps a
//! temporary file in /dev/shm, links it as `sem.NAME` and unlinks the
//! temporary name, so the mapping reads `/dev/shm/sem.XXXXXX (deleted)`
//! while the semaphore's file is there for every other process. The dump
//! then records the mapping under the linked name (a shared file mapping,
//! shared with the others at restart) instead of as a copy.
//!
//! Runs while the program's threads are suspended: getdents and fstatat
//! into fixed buffers, never an allocation.

use crate::capture::sys::{self, RawFd};

/// Directories searched for another link: tmpfs ones, where POSIX shared
/// memory and semaphores live.
const DIRS: &[&[u8]] = &[b"/dev/shm/"];

/// For a deleted shared mapping's `path` (`DIR/NAME (deleted)`), a name in
/// the same directory linked to inode `ino` of device `dev`: written into
/// `out` as `DIR/OTHER`, its length returned.
pub fn linked_name(path: &[u8], dev: u64, ino: u64, out: &mut [u8]) -> Option<usize> {
    let base = path.strip_suffix(b" (deleted)")?;
    let dir = DIRS.iter().find(|d| base.starts_with(d))?;
    if base[dir.len()..].contains(&b'/') {
        return None;
    }
    let mut p = sys::PathBuf::<64>::new();
    p.push(dir);
    let fd = RawFd::open(p.as_cstr_bytes(), libc::O_RDONLY | libc::O_DIRECTORY, 0).ok()?;
    let mut dents = [0u8; 4096];
    loop {
        let n = fd.getdents(&mut dents).ok()?;
        if n == 0 {
            return None;
        }
        let mut off = 0;
        while off + 19 <= n {
            let reclen = u16::from_ne_bytes([dents[off + 16], dents[off + 17]]) as usize;
            if reclen == 0 || off + reclen > n {
                break;
            }
            let d_ino = u64::from_ne_bytes(dents[off..off + 8].try_into().ok()?);
            let name = &dents[off + 19..off + reclen];
            let name = &name[..name.iter().position(|&c| c == 0).unwrap_or(name.len())];
            off += reclen;
            if d_ino != ino || name == b"." || name == b".." {
                continue;
            }
            let mut c = sys::PathBuf::<320>::new();
            c.push(name);
            // SAFETY: stat is plain old data; zeroed is a valid value.
            let mut st: libc::stat = unsafe { core::mem::zeroed() };
            // SAFETY: a NUL-terminated name relative to our directory fd,
            // a valid out-pointer; no symlink followed.
            let r = unsafe {
                libc::fstatat(
                    fd.raw(),
                    c.as_cstr_bytes().as_ptr().cast(),
                    &mut st,
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            };
            let len = dir.len() + name.len();
            if r == 0 && st.st_ino == ino && st.st_dev == dev && len <= out.len() {
                out[..dir.len()].copy_from_slice(dir);
                out[dir.len()..len].copy_from_slice(name);
                return Some(len);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_file_linked_under_another_name_is_found() {
        let pid = std::process::id();
        let a = format!("/dev/shm/selfckpt-relink-a-{pid}");
        let b = format!("/dev/shm/selfckpt-relink-b-{pid}");
        if std::fs::write(&a, b"x").is_err() {
            eprintln!("skipped: no writable /dev/shm");
            return;
        }
        std::fs::hard_link(&a, &b).unwrap();
        std::fs::remove_file(&a).unwrap();
        let st = std::fs::metadata(&b).unwrap();
        use std::os::unix::fs::MetadataExt;
        let mut out = [0u8; 256];
        let n = super::linked_name(
            format!("{a} (deleted)").as_bytes(),
            st.dev(),
            st.ino(),
            &mut out,
        );
        std::fs::remove_file(&b).unwrap();
        assert_eq!(&out[..n.unwrap()], b.as_bytes());
        assert_eq!(
            super::linked_name(b"/tmp/x (deleted)", 1, 2, &mut out),
            None
        );
    }
}
