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
//! allocation. Reading smaps walks every page table (about 20 ms per GiB
//! here), so a forked checkpoint, whose pause must not grow with memory,
//! takes the flags from the [`Surveyed`] read just before the suspend
//! (`forking::survey`) when the mappings are still those it saw, no
//! mapping is locked (`mlock` is the one flag a forked child does not
//! inherit) — and its dumping child, which sees the flags of the instant
//! of the fork, checks them ([`check_in_child`]): a flag set in between
//! fails that dump, which is then taken again reading smaps in the pause. The restart applies the flags to the staging mappings
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
/// A survey's mark of hugetlbfs memory (`ht`): never recorded.
const HUGETLB_SEEN: u32 = 1 << 31;

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

/// The flags of one mapping's `VmFlags:` words as a survey keeps them:
/// [`parse_flags`], `gd` dropped for `[stack]`, [`HUGETLB_SEEN`] for `ht`.
pub fn survey_flags(words_line: &[u8], is_stack: bool) -> u32 {
    let mut f = parse_flags(words_line);
    if is_stack {
        f &= !GROWSDOWN;
    }
    if is_hugetlb(words_line) {
        f |= HUGETLB_SEEN;
    }
    f
}

/// The mappings and flags `/proc/self/smaps` showed just before a
/// forked checkpoint's suspend (made by `forking::survey`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Surveyed {
    /// Each mapping's maps line without its address range, one per line
    /// (`forking::mappings_key`).
    pub key: Vec<u8>,
    /// [`survey_flags`] of each mapping, in the same order.
    pub flags: Vec<u32>,
}

impl Surveyed {
    /// Each mapping's key line and flags, in order. No allocation.
    fn mappings(&self) -> impl Iterator<Item = (&[u8], u32)> + '_ {
        self.key
            .split(|&c| c == b'\n')
            .zip(self.flags.iter().copied())
    }

    /// The survey of an smaps text; None for a text without flags (maps).
    /// Allocates: made before the suspend.
    pub fn from_smaps(text: &[u8]) -> Option<Surveyed> {
        let mut heads = Vec::new();
        let mut flags = Vec::new();
        let mut stack = false;
        for line in text.split(|&c| c == b'\n') {
            if let Some(words_line) = line.strip_prefix(b"VmFlags:") {
                flags.push(survey_flags(words_line, stack));
            } else if let Some(Ok(e)) = crate::capture::maps::MapsParser::new(line).next() {
                stack = e.path == b"[stack]";
                heads.push(line);
            }
        }
        (!flags.is_empty() && flags.len() == heads.len()).then(|| Surveyed {
            key: mappings_key(heads.into_iter()),
            flags,
        })
    }
}

/// The maps lines without their address ranges, one per line (empty
/// lines left out). Allocates.
pub fn mappings_key<'a>(lines: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut key = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        key.extend_from_slice(without_range(line));
        key.push(b'\n');
    }
    key
}

/// A survey as the pause uses it: with the checkpoint's scratch arena,
/// mapped after the survey (its own lines are not the program's).
#[derive(Clone, Copy, Debug)]
pub struct SurveyInPause<'a> {
    pub survey: &'a Surveyed,
    pub scratch: (u64, u64),
}

impl SurveyInPause<'_> {
    /// Whether a mapping lies wholly in the scratch arena.
    fn is_scratch(&self, start: u64, end: u64) -> bool {
        start >= self.scratch.0 && end <= self.scratch.1
    }
}

/// A maps line without its address range (what [`Surveyed::key`] holds).
fn without_range(line: &[u8]) -> &[u8] {
    let after = line.iter().position(|&c| c == b' ').unwrap_or(line.len());
    &line[after..]
}

/// Whether a `VmFlags:` line's words say hugetlbfs (`ht`).
fn is_hugetlb(words_line: &[u8]) -> bool {
    words_line.split(|&c| c == b' ').any(|w| w == b"ht")
}

/// Writes the entry, and a NotRestorable one (kind `hugetlb`) where a
/// mapping is hugetlbfs memory (`MAP_HUGETLB`, a memfd made with
/// `MFD_HUGETLB`): a restart would bring its contents back in ordinary
/// pages, not from the huge page pool. The flags come from `bufs.surveyed`
/// where it still holds (see the module header), else from smaps. No
/// allocation.
pub fn capture(e: &mut Encoder, bufs: &mut CaptureBuffers) -> Result<(), KstateError> {
    let mut hugetlb = false;
    let mark = e.len();
    let surveyed = match bufs.surveyed {
        Some(sv) if locked_bytes(bufs.text)? == 0 => {
            capture_surveyed(e, bufs.text, sv, &mut hugetlb)?
        }
        _ => false,
    };
    bufs.flags_from_survey = surveyed;
    if !surveyed {
        e.truncate(mark);
        hugetlb = false;
        capture_flags(e, bufs, &mut hugetlb)?;
    }
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

/// `VmLck` of /proc/self/status, in kB. No allocation.
fn locked_bytes(buf: &mut [u8]) -> Result<u64, KstateError> {
    let n =
        crate::capture::sys::read_file(b"/proc/thread-self/status\0", buf).map_err(|errno| {
            KstateError::Read {
                what: "/proc/self/status",
                errno,
            }
        })?;
    crate::capture::sys::field(&buf[..n], b"VmLck:")
        .and_then(crate::capture::sys::parse_u64)
        .map(|(v, _)| v)
        .ok_or(KstateError::Parse("VmLck in /proc/self/status"))
}

/// The entry from the survey, with each mapping's range as
/// /proc/self/maps shows it now: false (the entry half written: the
/// caller truncates it) when the mappings are no longer the survey's.
fn capture_surveyed(
    e: &mut Encoder,
    buf: &mut [u8],
    now: SurveyInPause,
    hugetlb: &mut bool,
) -> Result<bool, KstateError> {
    let mut same = true;
    write_entry(e, |out| {
        let mut surveyed = now.survey.mappings();
        crate::capture::maps::for_each_line(b"/proc/thread-self/maps\0", buf, |line| {
            if line.is_empty() {
                return true;
            }
            let Some(Ok(ent)) = crate::capture::maps::MapsParser::new(line).next() else {
                same = false;
                return false;
            };
            if now.is_scratch(ent.start, ent.end) {
                return true;
            }
            let f = match surveyed.next() {
                Some((key, f)) if key == without_range(line) => f,
                _ => {
                    same = false;
                    return false;
                }
            };
            *hugetlb |= f & HUGETLB_SEEN != 0;
            // VmLck is 0: nothing is locked whatever the survey saw.
            out.push(ent.start, ent.end, f & !LOCKED)
        })
        .map_err(|_| KstateError::Parse("/proc/self/maps"))?;
        same &= surveyed.next().is_none();
        Ok(())
    })?;
    Ok(same)
}

/// In a forked checkpoint's dumping child, when the pause took the flags
/// from the survey (`CaptureBuffers::flags_from_survey`): checks them
/// against the child's own smaps (the flags at the instant of the fork;
/// `mlock` aside, which no child inherits). `Err` names the first mapping
/// whose flags were changed after the survey (0-0: smaps could not be
/// read). No allocation.
pub fn check_in_child(now: SurveyInPause, buf: &mut [u8]) -> Result<(), (u64, u64)> {
    // The child has no MADV_DONTFORK mapping (the pause copied them).
    let mut surveyed = now.survey.mappings().filter(|&(_, f)| f & DONTFORK == 0);
    let mut cur = (0u64, 0u64, false);
    let mut bad: Option<(u64, u64)> = None;
    let read = crate::capture::maps::for_each_line(b"/proc/self/smaps\0", buf, |line| {
        if let Some(words_line) = line.strip_prefix(b"VmFlags:") {
            if now.is_scratch(cur.0, cur.1) {
                return true;
            }
            let seen = survey_flags(words_line, cur.2) & !LOCKED;
            match surveyed.next() {
                Some((_, f)) if f & !LOCKED == seen => return true,
                _ => {
                    bad = Some((cur.0, cur.1));
                    return false;
                }
            }
        }
        if let Some(Ok(ent)) = crate::capture::maps::MapsParser::new(line).next() {
            cur = (ent.start, ent.end, ent.path == b"[stack]");
        }
        true
    });
    match (read, bad) {
        (Err(_), _) => Err((0, 0)),
        (_, Some(b)) => Err(b),
        _ if surveyed.next().is_some() => Err((cur.1, cur.1)),
        _ => Ok(()),
    }
}

fn capture_flags(
    e: &mut Encoder,
    bufs: &mut CaptureBuffers,
    hugetlb: &mut bool,
) -> Result<(), KstateError> {
    write_entry(e, |out| {
        let mut cur = (0u64, 0u64, false);
        crate::capture::maps::for_each_line(b"/proc/thread-self/smaps\0", bufs.text, |line| {
            if let Some(words_line) = line.strip_prefix(b"VmFlags:") {
                let f = survey_flags(words_line, cur.2);
                *hugetlb |= f & HUGETLB_SEEN != 0;
                return out.push(cur.0, cur.1, f);
            }
            // A mapping's first line: "start-end perms ...".
            if let Some(Ok(ent)) = crate::capture::maps::MapsParser::new(line).next() {
                cur = (ent.start, ent.end, ent.path == b"[stack]");
            }
            true
        })
        .map_err(|_| KstateError::Parse("/proc/self/smaps"))
    })
}

/// The ranges of the entry being written (see [`write_entry`]).
struct Ranges<'a, 'b> {
    e: &'a mut Encoder<'b>,
    count: u32,
    err: Option<CodecError>,
}

impl Ranges<'_, '_> {
    /// Adds the mapping [start, end) with its flags (none recorded: left
    /// out); false once the record is full (the walk stops).
    fn push(&mut self, start: u64, end: u64, flags: u32) -> bool {
        let f = flags & KNOWN;
        if f == 0 || start >= end {
            return true;
        }
        match self
            .e
            .u64(start)
            .and_then(|_| self.e.u64(end))
            .and_then(|_| self.e.u32(f))
        {
            Ok(()) => {
                self.count += 1;
                true
            }
            Err(x) => {
                self.err = Some(x);
                false
            }
        }
    }
}

/// Writes the entry: the THP setting, then the ranges `walk` pushes. No
/// allocation.
fn write_entry(
    e: &mut Encoder,
    walk: impl FnOnce(&mut Ranges) -> Result<(), KstateError>,
) -> Result<(), KstateError> {
    // SAFETY: prctl with plain integer arguments.
    let thp = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) } == 1;
    objects::entry(e, Kind::MappingFlags, 0, |e| -> Result<(), KstateError> {
        e.u8(u8::from(thp))?;
        let at = e.reserve_u32()?;
        let mut out = Ranges {
            e,
            count: 0,
            err: None,
        };
        walk(&mut out)?;
        if let Some(x) = out.err {
            return Err(x.into());
        }
        let count = out.count;
        e.patch_u32(at, count);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_entry(out: &[u8]) -> MappingFlags {
        let mut d = Decoder::new(out);
        assert_eq!(d.u16().unwrap(), Kind::MappingFlags as u16);
        d.u16().unwrap();
        let len = d.u32().unwrap() as usize;
        let m = MappingFlags::decode(&mut Decoder::new(d.take(len).unwrap())).unwrap();
        m.check().unwrap();
        m
    }

    /// A mapping of `pages` between two inaccessible pages (never merged
    /// with a neighbour); unmapped by the caller (`pages + 2` from `-PG`).
    fn fenced(pages: usize) -> u64 {
        let page = crate::capture::sys::page_size();
        // SAFETY: a fresh test mapping of our own.
        unsafe {
            let p = libc::mmap(
                core::ptr::null_mut(),
                (pages + 2) * page,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(p, libc::MAP_FAILED);
            let p = p as *mut u8;
            let rw = libc::PROT_READ | libc::PROT_WRITE;
            assert_eq!(libc::mprotect(p.add(page).cast(), pages * page, rw), 0);
            p.add(page) as u64
        }
    }

    fn advise(at: u64, pages: usize, advice: i32) {
        let page = crate::capture::sys::page_size();
        // SAFETY: advice on a test mapping of our own.
        assert_eq!(
            unsafe { libc::madvise(at as *mut _, pages * page, advice) },
            0
        );
    }

    fn unmap(at: u64, pages: usize) {
        let page = crate::capture::sys::page_size();
        // SAFETY: unmapping a test mapping of our own (with its fences).
        unsafe { libc::munmap((at as usize - page) as *mut _, (pages + 2) * page) };
    }

    /// Other tests of this binary map and unmap concurrently: tries until
    /// a survey and a capture see the same mappings.
    fn surveyed_capture() -> (Surveyed, MappingFlags) {
        for _ in 0..50 {
            let smaps = std::fs::read("/proc/thread-self/smaps").unwrap();
            let sv = Surveyed::from_smaps(&smaps).expect("smaps has flags");
            let now = SurveyInPause {
                survey: &sv,
                scratch: (0, 0),
            };
            let (out, from_survey) = super::super::captured_surveyed(Some(now), capture);
            if from_survey {
                return (sv.clone(), decode_entry(&out));
            }
        }
        panic!("the mappings changed between every survey and its capture");
    }

    #[test]
    fn the_survey_gives_the_flags_smaps_gives_and_the_child_check_sees_a_late_change() {
        let (a, b) = (fenced(4), fenced(2));
        advise(a, 4, libc::MADV_HUGEPAGE);
        advise(b, 2, libc::MADV_DONTDUMP);
        let (sv, m) = surveyed_capture();
        let p = crate::capture::sys::page_size() as u64;
        assert_eq!(m.of(a, a + 4 * p), HUGEPAGE, "{m:?}");
        assert_eq!(m.of(b, b + 2 * p), DONTDUMP, "{m:?}");
        let exact = decode_entry(&super::super::captured(capture));
        assert_eq!(exact.of(a, a + 4 * p), m.of(a, a + 4 * p));
        assert_eq!(exact.of(b, b + 2 * p), m.of(b, b + 2 * p));
        // Still the survey's flags: the check passes (unless another test
        // changed its own mappings meanwhile: then it names one of them).
        let now = SurveyInPause {
            survey: &sv,
            scratch: (0, 0),
        };
        let mut buf = vec![0u8; 65536];
        let late = |buf: &mut [u8]| check_in_child(now, buf);
        if let Err((s, e)) = late(&mut buf) {
            assert!(s != b && s != a, "{s:#x}-{e:#x}");
        }
        // DONTDUMP taken back on the whole mapping: maps does not change,
        // the check names the mapping.
        advise(b, 2, libc::MADV_DODUMP);
        let named = late(&mut buf);
        assert!(named.is_err(), "a late madvise went unseen");
        // A locked mapping: the pause reads smaps (no child inherits it).
        let c = fenced(1);
        // SAFETY: locking a test mapping of our own.
        let locked = unsafe { libc::mlock(c as *const _, p as usize) } == 0;
        if locked {
            let smaps = std::fs::read("/proc/thread-self/smaps").unwrap();
            let sv = Surveyed::from_smaps(&smaps).unwrap();
            let now = SurveyInPause {
                survey: &sv,
                scratch: (0, 0),
            };
            let (out, from_survey) = super::super::captured_surveyed(Some(now), capture);
            let m = decode_entry(&out);
            assert!(
                !from_survey,
                "a locked mapping's flags were taken from a survey"
            );
            assert_eq!(m.of(c, c + p), LOCKED, "{m:?}");
        }
        unmap(a, 4);
        unmap(b, 2);
        unmap(c, 1);
    }

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
