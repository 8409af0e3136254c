//! Mapping flags that `/proc/self/maps` does not show (object kind
//! 0x0102): per mapping, the VmFlags of `/proc/self/smaps` a restart must
//! give back — grows down (`gd`, a `MAP_GROWSDOWN` mapping other than the
//! stack), no reserve (`nr`), may write (`mw`, for shared mappings: a
//! shared file mapping made from a read-write open), and the `madvise`
//! state: `dc` DONTFORK, `wf` WIPEONFORK, `hg` HUGEPAGE, `nh` NOHUGEPAGE,
//! `mg` MERGEABLE, `dd` DONTDUMP, `lo` locked (`mlock`), `sr`
//! SEQUENTIAL, `rr` RANDOM (read-ahead advice), `dp` droppable
//! (`MAP_DROPPABLE`: glibc's getrandom state) — and whether
//! the process has
//! `PR_SET_THP_DISABLE`. One entry per image (its presence says the flags
//! were recorded: a mapping it does not list had none of them).
//!
//! Capture ([`capture`]) runs while the program's threads are suspended:
//! /proc/self/smaps read in pieces into a fixed buffer, never an
//! allocation. The restart applies the flags to the staging mappings
//! (`restore::layout`), which keep them when the restorer moves them; the
//! THP setting in the Early stage.

use super::objects::{self, Kind};
use super::{CaptureBuffers, KstateError};
use crate::image::codec::{CodecError, Decoder, Encoder};

pub const GROWSDOWN: u32 = 1;
pub const NORESERVE: u32 = 2;
pub const MAYWRITE: u32 = 4;
pub const DONTFORK: u32 = 8;
pub const WIPEONFORK: u32 = 16;
pub const HUGEPAGE: u32 = 32;
pub const NOHUGEPAGE: u32 = 64;
pub const MERGEABLE: u32 = 128;
pub const DONTDUMP: u32 = 256;
pub const LOCKED: u32 = 512;
pub const SEQUENTIAL: u32 = 1024;
pub const RANDOM: u32 = 2048;
pub const DROPPABLE: u32 = 4096;
const KNOWN: u32 = 8191;

/// The VmFlags mnemonic of each flag.
const WORDS: [(&[u8; 2], u32); 13] = [
    (b"gd", GROWSDOWN),
    (b"nr", NORESERVE),
    (b"mw", MAYWRITE),
    (b"dc", DONTFORK),
    (b"wf", WIPEONFORK),
    (b"hg", HUGEPAGE),
    (b"nh", NOHUGEPAGE),
    (b"mg", MERGEABLE),
    (b"dd", DONTDUMP),
    (b"lo", LOCKED),
    (b"sr", SEQUENTIAL),
    (b"rr", RANDOM),
    (b"dp", DROPPABLE),
];

/// The recorded flags of the process's mappings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MappingFlags {
    pub thp_disable: bool,
    /// (start, end, flags) of each mapping that had any.
    pub ranges: Vec<(u64, u64, u32)>,
}

impl MappingFlags {
    pub fn encode(&self, e: &mut Encoder) -> Result<(), CodecError> {
        e.u8(u8::from(self.thp_disable))?;
        e.u32(self.ranges.len() as u32)?;
        for &(s, end, f) in &self.ranges {
            e.u64(s)?;
            e.u64(end)?;
            e.u32(f)?;
        }
        Ok(())
    }

    pub fn decode(d: &mut Decoder) -> Result<Self, CodecError> {
        let thp = d.u8()?;
        if thp > 1 {
            return Err(CodecError::BadValue {
                field: "THP-disable of the mapping flags",
                value: thp as u64,
            });
        }
        let n = d.count(20)?;
        let mut ranges = Vec::with_capacity(n);
        for _ in 0..n {
            ranges.push((d.u64()?, d.u64()?, d.u32()?));
        }
        Ok(MappingFlags {
            thp_disable: thp == 1,
            ranges,
        })
    }

    pub fn check(&self) -> Result<(), String> {
        let mut prev = 0u64;
        for &(s, e, f) in &self.ranges {
            if s >= e || s < prev {
                return Err(format!(
                    "mapping flags of {s:#x}-{e:#x}: empty, out of order or overlapping"
                ));
            }
            if f & !KNOWN != 0 || f == 0 {
                return Err(format!("mapping flags of {s:#x}-{e:#x}: bad flags {f:#x}"));
            }
            prev = e;
        }
        Ok(())
    }

    /// The flags of the mapping [start, end) (0: none recorded).
    pub fn of(&self, start: u64, end: u64) -> u32 {
        let i = self.ranges.partition_point(|r| r.1 <= start);
        match self.ranges.get(i) {
            Some(&(s, e, f)) if s <= start && end <= e => f,
            _ => 0,
        }
    }

    pub fn describe(&self) -> String {
        let mut s = format!(
            "mapping flags of {} mappings{}",
            self.ranges.len(),
            if self.thp_disable {
                "; transparent huge pages disabled (PR_SET_THP_DISABLE)"
            } else {
                ""
            }
        );
        for &(a, b, f) in &self.ranges {
            s.push_str(&format!("; {a:#x}-{b:#x} {}", words(f)));
        }
        s
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": "mapping_flags", "thp_disable": self.thp_disable,
            "ranges": self.ranges.iter().map(|&(a, b, f)| serde_json::json!({
                "start": a, "end": b, "flags": words(f),
            })).collect::<Vec<_>>(),
        })
    }

    /// Early stage: the process's THP setting.
    pub fn restore(&self) -> Option<String> {
        if !self.thp_disable {
            return None;
        }
        // SAFETY: prctl with plain integer arguments.
        let r = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        (r != 0).then(|| {
            format!(
                "cannot disable transparent huge pages again (PR_SET_THP_DISABLE): {}",
                std::io::Error::last_os_error()
            )
        })
    }
}

/// "gd,dc" for the flags set.
pub fn words(f: u32) -> String {
    WORDS
        .iter()
        .filter(|(_, b)| f & b != 0)
        .map(|(w, _)| String::from_utf8_lossy(&w[..]).into_owned())
        .collect::<Vec<_>>()
        .join(",")
}

/// The flags named by a `VmFlags:` line's words that this kind records;
/// `mw` only for shared mappings (`sh`), `gd` only where `[stack]` is not
/// the mapping (the caller says).
fn parse_flags(words_line: &[u8]) -> u32 {
    let mut f = 0;
    let shared = words_line.split(|&c| c == b' ').any(|w| w == b"sh");
    for w in words_line.split(|&c| c == b' ') {
        for (name, bit) in WORDS {
            if w == &name[..] && (bit != MAYWRITE || shared) {
                f |= bit;
            }
        }
    }
    f
}

/// Whether a `VmFlags:` line's words say hugetlbfs (`ht`).
fn is_hugetlb(words_line: &[u8]) -> bool {
    words_line.split(|&c| c == b' ').any(|w| w == b"ht")
}

/// Writes the entry, and a NotRestorable one (kind `hugetlb`) where a
/// mapping is hugetlbfs memory (`MAP_HUGETLB`, a memfd made with
/// `MFD_HUGETLB`): a restart would bring its contents back in ordinary
/// pages, not from the huge page pool. No allocation.
pub fn capture(e: &mut Encoder, bufs: &mut CaptureBuffers) -> Result<(), KstateError> {
    let mut hugetlb = false;
    capture_flags(e, bufs, &mut hugetlb)?;
    if hugetlb {
        objects::NotRestorable::capture(
            e,
            -1,
            "hugetlb",
            b"hugetlbfs memory (MAP_HUGETLB or MFD_HUGETLB): a restart would give it ordinary pages",
        )?;
    }
    Ok(())
}

fn capture_flags(
    e: &mut Encoder,
    bufs: &mut CaptureBuffers,
    hugetlb: &mut bool,
) -> Result<(), KstateError> {
    // SAFETY: prctl with plain integer arguments.
    let thp = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) } == 1;
    let mut err: Option<CodecError> = None;
    objects::entry(e, Kind::MappingFlags, 0, |e| -> Result<(), KstateError> {
        e.u8(u8::from(thp))?;
        let at = e.reserve_u32()?;
        let mut count = 0u32;
        let mut cur = (0u64, 0u64, false);
        crate::capture::maps::for_each_line(b"/proc/self/smaps\0", bufs.text, |line| {
            if let Some(words_line) = line.strip_prefix(b"VmFlags:") {
                *hugetlb |= is_hugetlb(words_line);
                let mut f = parse_flags(words_line);
                if cur.2 {
                    f &= !GROWSDOWN;
                }
                if f != 0 && cur.0 < cur.1 {
                    let r = e
                        .u64(cur.0)
                        .and_then(|_| e.u64(cur.1))
                        .and_then(|_| e.u32(f));
                    if let Err(x) = r {
                        err = Some(x);
                        return false;
                    }
                    count += 1;
                }
                return true;
            }
            // A mapping's first line: "start-end perms ...".
            if let Some(Ok(ent)) = crate::capture::maps::MapsParser::new(line).next() {
                cur = (ent.start, ent.end, ent.path == b"[stack]");
            }
            true
        })
        .map_err(|_| KstateError::Parse("/proc/self/smaps"))?;
        if let Some(x) = err {
            return Err(x.into());
        }
        e.patch_u32(at, count);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advice_and_growsdown_are_captured_and_round_trip() {
        let page = crate::capture::sys::page_size();
        // SAFETY: two test mappings of our own, advised, then unmapped.
        let (a, b) = unsafe {
            let a = libc::mmap(
                core::ptr::null_mut(),
                4 * page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_GROWSDOWN,
                -1,
                0,
            );
            let b = libc::mmap(
                core::ptr::null_mut(),
                2 * page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_eq!(libc::madvise(b, 2 * page, libc::MADV_DONTFORK), 0);
            assert_eq!(libc::madvise(b, 2 * page, libc::MADV_DONTDUMP), 0);
            (a as u64, b as u64)
        };
        let out = super::super::captured(capture);
        // SAFETY: unmapping the test mappings.
        unsafe {
            libc::munmap(a as *mut libc::c_void, 4 * page);
            libc::munmap(b as *mut libc::c_void, 2 * page);
        }
        let mut d = Decoder::new(&out);
        assert_eq!(d.u16().unwrap(), Kind::MappingFlags as u16);
        d.u16().unwrap();
        let len = d.u32().unwrap() as usize;
        let m = MappingFlags::decode(&mut Decoder::new(d.take(len).unwrap())).unwrap();
        m.check().unwrap();
        let p = page as u64;
        assert_eq!(m.of(a, a + 4 * p) & GROWSDOWN, GROWSDOWN, "{m:?}");
        assert_eq!(m.of(b, b + 2 * p), DONTFORK | DONTDUMP, "{m:?}");
        let mut buf = vec![0u8; 1 << 20];
        let mut e = Encoder::new(&mut buf);
        m.encode(&mut e).unwrap();
        let n = e.len();
        assert_eq!(
            MappingFlags::decode(&mut Decoder::new(&buf[..n])).unwrap(),
            m
        );
        assert_eq!(
            parse_flags(b" rd wr sh mw lo dc"),
            MAYWRITE | LOCKED | DONTFORK
        );
        assert_eq!(parse_flags(b" rd mw gd"), GROWSDOWN);
        assert!(is_hugetlb(b" rd wr sh mr mw me ms de ht"));
        assert!(!is_hugetlb(b" rd wr hg"));
        let bad = MappingFlags {
            thp_disable: false,
            ranges: vec![(0x2000, 0x1000, DONTFORK)],
        };
        assert!(bad.check().is_err());
        let bad = MappingFlags {
            thp_disable: false,
            ranges: vec![(0x1000, 0x2000, 1 << 20)],
        };
        assert!(bad.check().is_err());
    }
}
