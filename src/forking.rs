//! Before a forked checkpoint (ordinary Rust, on the checkpoint thread,
//! before the threads are suspended): reads `/proc/self/smaps` and says
//! whether this checkpoint can fork, and how much memory the pause must
//! copy for the child (`capture::forked`'s shadow).
//!
//! A region the child would not see as the program does makes this one
//! checkpoint dump in the pause instead, and says why (the log and the
//! stats line's `fork_fallback`): `MADV_WIPEONFORK` (`wf`: zeros in the
//! child), and `MADV_DONTFORK` memory (VmFlags `dc`: not in the child at
//! all) beyond [`DONTFORK_MAX`] bytes. Shared anonymous memory, private
//! mappings of deleted files and `MADV_DONTFORK` memory up to that size
//! (V8, Node's engine, keeps some) are copied in the pause (their size is
//! the shadow).
//!
//! Must never: run while the program's threads are parked (it allocates).

use crate::capture::maps::{MapsParser, RegionKind};
use crate::capture::pages::Want;
use crate::kstate::vmflags::{self, Surveyed};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// What `/proc/self/smaps` says about forking now.
#[derive(Debug, Default)]
pub struct Survey {
    /// Why this checkpoint cannot fork, naming the mapping.
    pub refusal: Option<String>,
    /// Bytes of the regions whose pages the pause copies.
    pub shadow_bytes: u64,
    /// Each mapping's flags, for the pause to record without reading
    /// smaps (`kstate::vmflags`); None right after a [`forget`].
    pub flags: Option<Arc<Surveyed>>,
    /// The `MADV_DONTFORK` mappings, copied in the pause.
    pub dontfork: Vec<(u64, u64)>,
}

/// The mappings (`/proc/self/maps` without the addresses: arenas grow
/// and their reserves shrink; a new mapping adds a line, and mappings of
/// different flags never merge) and their flags of the last survey that
/// found nothing to refuse.
static CLEAN: std::sync::Mutex<Option<Arc<Surveyed>>> = std::sync::Mutex::new(None);

/// Most bytes of `MADV_DONTFORK` memory a forked checkpoint copies in
/// its pause (beyond: it dumps in the pause).
pub const DONTFORK_MAX: u64 = 64 << 20;

/// Set by [`forget`]: the next checkpoint reads the flags in the pause.
static EXACT_NEXT: AtomicBool = AtomicBool::new(false);

/// `maps` without each line's address range.
fn mappings_key(maps: &[u8]) -> Vec<u8> {
    vmflags::mappings_key(maps.split(|&c| c == b'\n'))
}

/// Surveys the process whose `/proc/self/maps` reads `maps` now. Reads
/// `/proc/self/smaps` (which walks every page table: tens of ms per GiB)
/// unless the mappings are those of the last clean survey (some may have
/// grown): then no mapping is new, and a flag set since on an old one is
/// caught by the child, which fails that dump naming the mapping; the
/// manager then [`forget`]s the survey and takes the checkpoint again.
pub fn survey(maps: &[u8]) -> std::io::Result<Survey> {
    let exact = EXACT_NEXT.swap(false, Ordering::Relaxed);
    let key = mappings_key(maps);
    let clean = CLEAN
        .lock()
        .ok()
        .and_then(|c| c.as_ref().filter(|c| c.key == key).cloned());
    let mut sv = match clean {
        Some(flags) => {
            let mut sv = survey_text(maps);
            sv.flags = Some(flags);
            add_dontfork(&mut sv, maps);
            sv
        }
        None => {
            log::debug!("forked checkpoint: new mappings, reading /proc/self/smaps");
            let smaps = std::fs::read("/proc/thread-self/smaps")?;
            let mut sv = survey_text(&smaps);
            add_dontfork(&mut sv, &smaps);
            if let Ok(mut c) = CLEAN.lock() {
                *c = sv.refusal.is_none().then(|| sv.flags.clone()).flatten();
            }
            sv
        }
    };
    if exact {
        sv.flags = None;
    }
    Ok(sv)
}

/// The `MADV_DONTFORK` mappings of `text` (maps or smaps: its mappings
/// in the order of the survey's flags) into `sv.dontfork` and the shadow,
/// or a refusal when there is more than [`DONTFORK_MAX`].
fn add_dontfork(sv: &mut Survey, text: &[u8]) {
    let Some(flags) = sv.flags.clone() else {
        return;
    };
    let mappings = text
        .split(|&c| c == b'\n')
        .filter_map(|l| MapsParser::new(l).next()?.ok());
    let mut bytes = 0u64;
    for (e, &f) in mappings.zip(flags.flags.iter()) {
        if f & vmflags::DONTFORK != 0 {
            sv.dontfork.push((e.start, e.end));
            bytes += present_bytes(e.start, e.end);
        }
    }
    if bytes > DONTFORK_MAX && sv.refusal.is_none() {
        let (s, e) = sv.dontfork[0];
        sv.refusal = Some(format!(
            "mapping {s:#x}-{e:#x} is MADV_DONTFORK (the forked child would not have it), \
             and {} MiB of such memory is present: more than a pause copies",
            bytes >> 20
        ));
    }
    sv.shadow_bytes += bytes;
}

/// Bytes of [start, end) in memory now (`mincore`; the whole range where
/// it cannot tell). V8 reserves hundreds of MiB `MADV_DONTFORK` and
/// touches little of it.
fn present_bytes(start: u64, end: u64) -> u64 {
    let page = crate::capture::sys::page_size() as u64;
    let pages = ((end - start) / page) as usize;
    let mut vec = vec![0u8; pages];
    // SAFETY: mincore fills one byte per page of a range of our mappings
    // into a vector of that many bytes.
    let r = unsafe {
        libc::mincore(
            start as *mut libc::c_void,
            (end - start) as usize,
            vec.as_mut_ptr(),
        )
    };
    if r != 0 {
        return end - start;
    }
    vec.iter().filter(|&&b| b & 1 != 0).count() as u64 * page
}

/// The next survey reads `/proc/self/smaps` again, and the checkpoint
/// after it reads the mapping flags in the pause.
pub fn forget() {
    if let Ok(mut c) = CLEAN.lock() {
        *c = None;
    }
    EXACT_NEXT.store(true, Ordering::Relaxed);
}

/// The shadow to set aside for `shadow_bytes` found at prepare time: room
/// for some growth before the suspend (beyond it the dump runs in the
/// pause).
pub fn shadow_room(shadow_bytes: u64) -> usize {
    (shadow_bytes + shadow_bytes / 4 + (1 << 20)) as usize
}

/// The survey of an smaps text (or of a maps text: no flags then).
fn survey_text(text: &[u8]) -> Survey {
    let mut out = Survey::default();
    let mut current: Option<(u64, u64, String)> = None;
    for line in text.split(|&c| c == b'\n') {
        if let Some(flags) = line.strip_prefix(b"VmFlags:") {
            let Some((start, end, path)) = &current else {
                continue;
            };
            let has = |f: &[u8]| flags.split(|&c| c == b' ').any(|w| w == f);
            let what = if has(b"wf") {
                Some("MADV_WIPEONFORK (the forked child would see zeros)")
            } else {
                None
            };
            if let (Some(what), None) = (what, &out.refusal) {
                out.refusal = Some(format!("mapping {start:#x}-{end:#x} {path}is {what}"));
            }
            continue;
        }
        // A mapping's first line: "start-end perms offset dev inode path".
        let mut one = line.to_vec();
        one.push(b'\n');
        let Some(Ok(e)) = MapsParser::new(&one).next() else {
            continue;
        };
        let deleted = e.path.ends_with(b" (deleted)");
        if crate::capture::dump::want_for(e.kind, deleted) == Some(Want::AllResident)
            && e.kind != RegionKind::Vsyscall
        {
            out.shadow_bytes += e.end - e.start;
        }
        let path = if e.path.is_empty() {
            String::new()
        } else {
            format!("({}) ", String::from_utf8_lossy(e.path))
        };
        current = Some((e.start, e.end, path));
    }
    out.flags = Surveyed::from_smaps(text).map(Arc::new);
    out
}

#[cfg(test)]
mod tests {
    use super::survey_text;

    const SMAPS: &str = "\
5555-6666 rw-p 00000000 00:00 0                                  [heap]
Size:                 68 kB
VmFlags: rd wr mr mw me ac
7000-8000 rw-s 00000000 00:01 1234                               /dev/zero (deleted)
Size:                  4 kB
VmFlags: rd wr sh mr mw me ms
9000-a000 rw-p 00000000 00:00 0 
Size:                  4 kB
VmFlags: rd wr mr mw me ac ";

    #[test]
    fn a_mapping_that_grew_is_the_same_mapping_a_new_one_is_not() {
        let a = b"1000-2000 rw-p 00000000 00:00 0 \n3000-4000 r--p 0 08:01 7 /lib/x\n";
        let grown = b"1000-2800 rw-p 00000000 00:00 0 \n2800-4000 r--p 0 08:01 7 /lib/x\n";
        let new = b"1000-2000 rw-p 00000000 00:00 0 \n2000-2800 rw-p 00000000 00:00 0 \n3000-4000 r--p 0 08:01 7 /lib/x\n";
        assert_eq!(super::mappings_key(a), super::mappings_key(grown));
        assert_ne!(super::mappings_key(a), super::mappings_key(new));
    }

    #[test]
    fn shared_memory_is_counted_and_plain_memory_forks() {
        let s = survey_text(SMAPS.as_bytes());
        assert_eq!(s.refusal, None);
        assert_eq!(s.shadow_bytes, 0x1000);
    }

    #[test]
    fn wipeonfork_regions_are_named_dontfork_ones_copied_up_to_a_size() {
        let text = SMAPS.replace("me ac ", "me ac wf");
        let why = survey_text(text.as_bytes()).refusal.unwrap_or_default();
        assert!(
            why.contains("0x9000-0xa000") && why.contains("MADV_WIPEONFORK"),
            "{why}"
        );
        // A DONTFORK mapping of ours, 160 MiB, one page of it touched,
        // then all of it.
        let page = crate::capture::sys::page_size();
        let n = 160 << 20;
        // SAFETY: a fresh test mapping of our own, advised, unmapped below.
        let p = unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                n,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(p, libc::MAP_FAILED);
            assert_eq!(libc::madvise(p, n, libc::MADV_DONTFORK), 0);
            *(p as *mut u8) = 1;
            p as u64
        };
        let line = format!(
            "{p:x}-{:x} rw-p 00000000 00:00 0 \nSize: 1 kB\nVmFlags: rd wr mr mw me ac dc\n",
            p + n as u64
        );
        let text = SMAPS.to_string() + "\n" + &line;
        let mut s = survey_text(text.as_bytes());
        super::add_dontfork(&mut s, text.as_bytes());
        assert_eq!(s.refusal, None);
        assert_eq!(s.dontfork, vec![(p, p + n as u64)]);
        assert_eq!(s.shadow_bytes, 0x1000 + page as u64);
        // SAFETY: touching every page of our test mapping.
        unsafe { libc::memset(p as *mut libc::c_void, 1, n) };
        let mut s = survey_text(text.as_bytes());
        super::add_dontfork(&mut s, text.as_bytes());
        let why = s.refusal.unwrap_or_default();
        assert!(
            why.contains("MADV_DONTFORK") && why.contains("160 MiB"),
            "{why}"
        );
        // SAFETY: unmapping the test mapping.
        unsafe { libc::munmap(p as *mut libc::c_void, n) };
    }
}
