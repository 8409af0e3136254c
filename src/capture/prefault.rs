//! Brings in, before a checkpoint suspends anything, every page of the
//! mappings whose backing object no restart can read again: a file whose
//! names were all removed, a memfd. The dump stores the pages of such a
//! mapping that are present (`pages::Want::AllResident`, or `AnonData`
//! for a private mapping of a memfd); a page of the object that this
//! process never touched, or one the kernel reclaimed from its page
//! tables, is not present, and would come back as zeros.
//!
//! Reading a page through `/proc/self/mem` maps it (the kernel faults it
//! in as the program's own access would, without the program's
//! protection getting in the way); past the object's end the read fails,
//! which ends that mapping's walk. A private page the program wrote is
//! its own copy already, and reading it changes nothing.
//!
//! Ordinary Rust, run by the checkpoint thread in the prepare step (it
//! allocates one buffer). Must never: write to the program's memory, or
//! touch a mapping of a device or a shared mapping of shared anonymous
//! memory (`/dev/zero`'s deleted inode: the dump stores its object) or a
//! System V segment (its pages are all there to read already when
//! attached). A private view of shared anonymous memory is read: the
//! pages it did not write are the object's.

use std::os::unix::fs::FileExt;

/// Read in steps of this many bytes.
const STEP: usize = 1 << 20;

/// Whether the mapping's object cannot be read again at restart.
fn gone(path: &[u8], inode: u64) -> bool {
    inode != 0
        && (path.ends_with(b" (deleted)") || path.starts_with(b"/memfd:"))
        && !path.starts_with(b"/dev/")
        && !path.starts_with(b"/SYSV")
}

/// Whether the mapping is a private view of shared anonymous memory (a
/// `MAP_PRIVATE` mapping of `/proc/self/map_files/...` of a shared one):
/// a page it never wrote shows the shared object's, and would come back
/// as zeros if not present (its kind is `Anon`: the dump stores its
/// present pages).
fn private_view_of_shared_anon(kind: crate::capture::maps::RegionKind, path: &[u8]) -> bool {
    kind == crate::capture::maps::RegionKind::Anon && path.starts_with(b"/dev/zero (deleted)")
}

/// Faults in every page of the mappings of `maps_text` (this process's
/// `/proc/self/maps`) whose object is gone; returns the bytes read.
/// Errors end the walk of one mapping; none is returned.
pub fn prefault_gone_objects(maps_text: &[u8]) -> u64 {
    let wanted: Vec<(u64, u64)> = crate::capture::maps::MapsParser::new(maps_text)
        .flatten()
        .filter(|m| {
            m.prot & libc::PROT_READ as u32 != 0
                && (gone(m.path, m.inode) || private_view_of_shared_anon(m.kind, m.path))
        })
        .map(|m| (m.start, m.end))
        .collect();
    if wanted.is_empty() {
        return 0;
    }
    let Ok(mem) = std::fs::File::open("/proc/self/mem") else {
        return 0;
    };
    let mut buf = vec![0u8; STEP];
    let mut total = 0;
    for (start, end) in wanted {
        let mut at = start;
        while at < end {
            let n = ((end - at) as usize).min(STEP);
            match mem.read_at(&mut buf[..n], at) {
                Ok(0) | Err(_) => break,
                Ok(k) => {
                    at += k as u64;
                    total += k as u64;
                }
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_private_views_of_shared_anonymous_memory_are_read() {
        use crate::capture::maps::RegionKind::*;
        assert!(private_view_of_shared_anon(Anon, b"/dev/zero (deleted)"));
        assert!(!private_view_of_shared_anon(
            SharedAnon,
            b"/dev/zero (deleted)"
        ));
        assert!(!private_view_of_shared_anon(Anon, b""));
        assert!(!private_view_of_shared_anon(Anon, b"/dev/zero"));
    }

    #[test]
    fn gone_objects_are_told_apart() {
        assert!(gone(b"/tmp/data (deleted)", 12));
        assert!(gone(b"/memfd:buf (deleted)", 7));
        assert!(gone(b"/memfd:buf", 7));
        assert!(!gone(b"/dev/zero (deleted)", 5));
        assert!(!gone(b"/SYSV00000000 (deleted)", 9));
        assert!(!gone(b"/usr/lib/libc.so.6", 3));
        assert!(!gone(b"[heap]", 0));
    }

    #[test]
    fn pages_of_a_deleted_file_never_touched_are_brought_in() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, vec![7u8; 64 << 10]).unwrap();
        let f = std::fs::File::open(&p).unwrap();
        std::fs::remove_file(&p).unwrap();
        use std::os::fd::AsRawFd;
        // SAFETY: a fresh private read-only mapping of our file.
        let at = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                64 << 10,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                f.as_raw_fd(),
                0,
            )
        };
        assert_ne!(at, libc::MAP_FAILED);
        let page = crate::capture::sys::page_size() as u64;
        let pages = (64 << 10) / page as usize;
        let resident = || {
            let mut v = vec![0u8; pages];
            // SAFETY: mincore on our mapping, one byte per page.
            assert_eq!(unsafe { libc::mincore(at, 64 << 10, v.as_mut_ptr()) }, 0);
            v.iter().filter(|&&b| b & 1 != 0).count()
        };
        let maps = std::fs::read("/proc/self/maps").unwrap();
        let read = prefault_gone_objects(&maps);
        assert!(read >= 64 << 10, "read {read}");
        // In the page cache at least (mincore), and mapped: what the
        // dump's page scan sees as present.
        assert_eq!(resident(), pages);
        let mut pm = [0u8; 8];
        let pagemap = std::fs::File::open("/proc/self/pagemap").unwrap();
        pagemap
            .read_at(&mut pm, (at as u64 / page + pages as u64 - 1) * 8)
            .unwrap();
        assert_ne!(
            u64::from_le_bytes(pm) & (1 << 63),
            0,
            "the last page is not present"
        );
        // SAFETY: unmapping the mapping made above.
        unsafe { libc::munmap(at, 64 << 10) };
    }
}
