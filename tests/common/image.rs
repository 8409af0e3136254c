//! Helpers of the reliability tests (mutate, e2e_failures, e2e_security):
//! taking a real image, walking an image's records, re-sealing checksums
//! after a deliberate change, and running the CLI with a time limit.

use super::{example, images, selfckpt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use xxhash_rust::xxh3::{xxh3_64, Xxh3};

pub const HEADER_LEN: usize = 64;
pub const FRAME_LEN: usize = 24;
pub const KIND_NAMES: [&str; 8] = [
    "?", "META", "REGIONS", "KERNEL", "THREADS", "CHUNK", "END", "MAC",
];

/// Runs `cmd` to completion with a deadline; returns its output.
pub fn run(cmd: &mut Command, limit: Duration) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = spawn_retrying(cmd);
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{cmd:?} hangs; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Spawns `cmd`, retrying while the program is "text file busy": a copy
/// of an executable written by one test thread can be held open for
/// writing by a child that another test thread forked at that moment.
pub fn spawn_retrying(cmd: &mut Command) -> std::process::Child {
    for _ in 0..100 {
        match cmd.spawn() {
            Ok(c) => return c,
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("cannot start {cmd:?}: {e}"),
        }
    }
    panic!("cannot start {cmd:?}: text file busy")
}

pub fn cli(args: &[&std::ffi::OsStr]) -> Output {
    run(Command::new(selfckpt()).args(args), Duration::from_secs(60))
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A real image: a copy of the smoke program in `tmp` runs 6 steps and
/// checkpoints itself at step 2. Returns (image, exe copy, program's OUTFILE).
pub fn smoke_image(tmp: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let exe = tmp.join("smoke-copy");
    std::fs::copy(example("smoke"), &exe).unwrap();
    let dir = tmp.join("ck");
    let of = tmp.join("prog.out");
    let out = run(
        Command::new(&exe).arg(&dir).arg(&of).args([
            "6",
            "--checkpoint-at",
            "2",
            "--sleep-ms",
            "1",
        ]),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "smoke failed: {}", stderr(&out));
    let img = images(&dir).pop().expect("the program wrote an image");
    (img, exe, of)
}

/// One record of an image: where it starts, its kind and payload length.
#[derive(Clone, Copy, Debug)]
pub struct Rec {
    pub offset: usize,
    pub kind: u32,
    pub len: usize,
}

impl Rec {
    pub fn payload(&self) -> std::ops::Range<usize> {
        self.offset + FRAME_LEN..self.offset + FRAME_LEN + self.len
    }
    pub fn end(&self) -> usize {
        self.offset + FRAME_LEN + self.len
    }
    pub fn name(&self) -> &'static str {
        KIND_NAMES.get(self.kind as usize).copied().unwrap_or("?")
    }
}

/// Walks the framing of a well-formed image.
pub fn records(img: &[u8]) -> Vec<Rec> {
    let mut at = HEADER_LEN;
    let mut v = Vec::new();
    while at < img.len() {
        let kind = u32::from_le_bytes(img[at..at + 4].try_into().unwrap());
        let len = u64::from_le_bytes(img[at + 8..at + 16].try_into().unwrap()) as usize;
        v.push(Rec {
            offset: at,
            kind,
            len,
        });
        at += FRAME_LEN + len;
    }
    assert_eq!(at, img.len(), "records tile the file");
    v
}

/// Recomputes the header checksum, every record checksum, the END chain
/// and END's checksum, so a deliberate change is judged on its meaning.
pub fn reseal(img: &mut [u8]) {
    let sum = xxh3_64(&img[..56]);
    img[56..64].copy_from_slice(&sum.to_le_bytes());
    let mut chain = Xxh3::new();
    for r in records(img) {
        if r.kind == 6 {
            let p = r.payload();
            let digest = chain.digest();
            img[p.start + 16..p.start + 24].copy_from_slice(&digest.to_le_bytes());
        }
        let mut h = Xxh3::new();
        h.update(&img[r.offset..r.offset + 16]);
        h.update(&img[r.payload()]);
        let s = h.digest();
        img[r.offset + 16..r.offset + 24].copy_from_slice(&s.to_le_bytes());
        if r.kind != 6 && r.kind != 7 {
            chain.update(&s.to_le_bytes());
        }
    }
}

/// A smaller valid image: `img` with only the chunks whose index (0-based,
/// among chunks) is in `keep`; END's counts and chain are recomputed.
pub fn keep_chunks(img: &[u8], keep: &[usize]) -> Vec<u8> {
    let n = records(img).iter().filter(|r| r.kind == 5).count();
    let order: Vec<usize> = (0..n).filter(|i| keep.contains(i)).collect();
    with_chunks(img, &order)
}

/// `img` with its chunks replaced by the chunks at indices `order` (any
/// order, repeats allowed); END's counts and chain are recomputed.
pub fn with_chunks(img: &[u8], order: &[usize]) -> Vec<u8> {
    let recs = records(img);
    let chunks: Vec<Rec> = recs.iter().copied().filter(|r| r.kind == 5).collect();
    let mut out = img[..HEADER_LEN].to_vec();
    let mut n_records = 0u64;
    for r in recs.iter().filter(|r| r.kind < 5) {
        out.extend_from_slice(&img[r.offset..r.end()]);
        n_records += 1;
    }
    for &i in order {
        out.extend_from_slice(&img[chunks[i].offset..chunks[i].end()]);
        n_records += 1;
    }
    let end = recs.iter().find(|r| r.kind == 6).expect("END");
    let at = out.len() + FRAME_LEN;
    out.extend_from_slice(&img[end.offset..end.end()]);
    out[at..at + 8].copy_from_slice(&n_records.to_le_bytes());
    out[at + 8..at + 16].copy_from_slice(&(order.len() as u64).to_le_bytes());
    reseal(&mut out);
    out
}

/// Length of END's eleven u64 totals; in format 1.2 the list of bytes
/// present per region (u32 count, then u64s) follows them.
pub const END_TOTALS_LEN: usize = 88;
/// Offset of bytes_present in END's payload.
pub const END_BYTES_PRESENT: usize = 32;
/// Length of the interval timers at the end of KERNEL (format 1.3): real,
/// virtual, prof, each interval sec u64, interval usec u32, value sec u64,
/// value usec u32.
pub const KERNEL_ITIMERS_LEN: usize = 72;

/// `img` with the payload of its first record of `kind` replaced by what
/// `edit` makes of it (its length may change); every checksum and the
/// chain are recomputed.
pub fn with_record(img: &[u8], kind: u32, edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let rec = *records(img)
        .iter()
        .find(|r| r.kind == kind)
        .unwrap_or_else(|| panic!("no record of kind {kind}"));
    let mut payload = img[rec.payload()].to_vec();
    edit(&mut payload);
    let mut out = img[..rec.offset + 8].to_vec();
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&payload);
    out.extend_from_slice(&img[rec.end()..]);
    reseal(&mut out);
    out
}

/// `img` with END's payload replaced by what `edit` makes of it.
pub fn with_end(img: &[u8], edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    with_record(img, 6, edit)
}

/// Length of the process's pending signals at the end of KERNEL (format
/// 1.4, after the interval timers): one u64 mask.
pub const KERNEL_PENDING_LEN: usize = 8;

/// The image's format minor (header bytes 10-11).
pub fn minor_of(img: &[u8]) -> u16 {
    u16::from_le_bytes([img[10], img[11]])
}

/// Lengths of the event and timer descriptors (1.6 on; 0 before) and of
/// the object list (1.8 on; 0 before) that end a KERNEL payload of format
/// 1.`minor`: the payload is decoded with the crate's own decoder and the
/// lists encoded again.
pub fn kernel_tail_lens(payload: &[u8], minor: u16) -> (usize, usize) {
    if minor < 6 {
        return (0, 0);
    }
    let mut d = selfckpt::image::codec::Decoder::new(payload);
    let k = selfckpt::kstate::KernelState::decode(&mut d, minor).expect("KERNEL decodes");
    let mut buf = vec![0u8; payload.len()];
    let mut e = selfckpt::image::codec::Encoder::new(&mut buf);
    k.events.encode(&mut e).unwrap();
    let events = e.len();
    if minor < 8 {
        return (events, 0);
    }
    k.objects.encode(&mut e).unwrap();
    (events, e.len() - events)
}

/// Where the event and timer descriptors start in `img`'s KERNEL payload
/// `p` (where the record ends before 1.6).
fn events_at(img: &[u8], p: &[u8]) -> usize {
    let (events, objects) = kernel_tail_lens(p, minor_of(img));
    p.len() - events - objects
}

/// `img` with the interval timers of KERNEL (before the pending signals)
/// replaced by what `edit` makes of them (72 bytes, see
/// [`KERNEL_ITIMERS_LEN`]).
pub fn with_itimers(img: &[u8], edit: impl FnOnce(&mut [u8])) -> Vec<u8> {
    with_record(img, 3, |p| {
        let at = events_at(img, p) - KERNEL_PENDING_LEN - KERNEL_ITIMERS_LEN;
        edit(&mut p[at..at + KERNEL_ITIMERS_LEN]);
    })
}

/// `img` with the process's pending signals (before the event
/// descriptors, at the end of KERNEL before 1.6) set to `mask`.
pub fn with_kernel_pending(img: &[u8], mask: u64) -> Vec<u8> {
    with_record(img, 3, |p| {
        let at = events_at(img, p) - KERNEL_PENDING_LEN;
        p[at..at + KERNEL_PENDING_LEN].copy_from_slice(&mask.to_le_bytes());
    })
}

/// `img` with the event and timer descriptors at the end of KERNEL
/// (format 1.6) replaced by what `edit` makes of them.
pub fn with_kernel_events(img: &[u8], edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    with_record(img, 3, |p| {
        let (events, _) = kernel_tail_lens(p, minor_of(img));
        let at = events_at(img, p);
        let mut tail = p.split_off(at);
        let objects = tail.split_off(events);
        edit(&mut tail);
        p.extend_from_slice(&tail);
        p.extend_from_slice(&objects);
    })
}

/// `img` with the object list that ends KERNEL (format 1.8) replaced by
/// what `edit` makes of it.
pub fn with_kernel_objects(img: &[u8], edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    with_record(img, 3, |p| {
        let (_, objects) = kernel_tail_lens(p, minor_of(img));
        let mut tail = p.split_off(p.len() - objects);
        edit(&mut tail);
        p.extend_from_slice(&tail);
    })
}

/// Where the list of each thread's pending signals starts in a THREADS
/// payload of format 1.4 (after the count and the fixed-length items).
pub fn thread_pending_at(threads: &[u8]) -> usize {
    let n = u32::from_le_bytes(threads[..4].try_into().unwrap()) as usize;
    threads.len() - 4 - 8 * n
}

/// `img` with the list at the end of THREADS (u32 count, then a u64 mask
/// per thread) replaced by what `edit` makes of it.
pub fn with_thread_pending(img: &[u8], edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    with_record(img, 4, |p| {
        let at = thread_pending_at(p);
        let mut list = p.split_off(at);
        edit(&mut list);
        p.extend_from_slice(&list);
    })
}

/// Length of the restart mailbox's layout version at the end of META
/// (format 1.5): one u32.
pub const META_MAILBOX_LAYOUT_LEN: usize = 4;
/// META's session role (format 1.7): after the mailbox layout.
pub const META_SESSION_ROLE_LEN: usize = 1;
/// META's parent reference of a full image (format 1.9): an empty name
/// and a zero checksum, after the session role.
pub const META_PARENT_LEN: usize = 4 + 8;

/// Bytes of META after the session role.
fn after_session_role(img: &[u8]) -> usize {
    if minor_of(img) >= 9 {
        META_PARENT_LEN
    } else {
        0
    }
}

/// `img` with META's restart mailbox layout (format 1.5) set to `layout`.
pub fn with_mailbox_layout(img: &[u8], layout: u32) -> Vec<u8> {
    let after = if minor_of(img) >= 7 {
        META_SESSION_ROLE_LEN + after_session_role(img)
    } else {
        0
    };
    with_record(img, 1, |p| {
        let at = p.len() - after - META_MAILBOX_LAYOUT_LEN;
        p[at..at + META_MAILBOX_LAYOUT_LEN].copy_from_slice(&layout.to_le_bytes());
    })
}

/// `img` (format 1.7 or later) with META's session role set to `role`.
pub fn with_session_role(img: &[u8], role: u8) -> Vec<u8> {
    let after = after_session_role(img);
    with_record(img, 1, |p| {
        let at = p.len() - after - META_SESSION_ROLE_LEN;
        p[at] = role;
    })
}

/// `img`, written by this build (format 1.7), as format 1.`minor` wrote
/// it: without what that minor lacks (the session role at the end of META
/// before 1.7, the event descriptors before 1.6, the mailbox layout at the end of
/// META before 1.5, the pending signals at the end of KERNEL and THREADS
/// before 1.4, the interval timers at the end of KERNEL before 1.3, the
/// list at the end of END before 1.2), resealed.
pub fn as_minor(img: &[u8], minor: u16) -> Vec<u8> {
    let mut out = img.to_vec();
    if minor < 9 {
        // A full image's parent reference (empty name, zero checksum).
        out = with_record(&out, 1, |p| p.truncate(p.len() - META_PARENT_LEN));
        out[10..12].copy_from_slice(&8u16.to_le_bytes());
    }
    if minor < 8 {
        out = with_kernel_objects(&out, |t| t.clear());
        // What follows reads the record as the 1.7 it now is.
        out[10..12].copy_from_slice(&7u16.to_le_bytes());
    }
    if minor < 7 {
        out = with_record(&out, 1, |p| p.truncate(p.len() - META_SESSION_ROLE_LEN));
    }
    if minor < 6 {
        out = with_kernel_events(&out, |t| t.clear());
    }
    if minor < 5 {
        out = with_record(&out, 1, |p| p.truncate(p.len() - META_MAILBOX_LAYOUT_LEN));
    }
    if minor < 4 {
        out = with_record(&out, 3, |p| p.truncate(p.len() - KERNEL_PENDING_LEN));
        out = with_thread_pending(&out, |l| l.clear());
    }
    if minor < 3 {
        out = with_record(&out, 3, |p| p.truncate(p.len() - KERNEL_ITIMERS_LEN));
    }
    if minor < 2 {
        out = with_end(&out, |p| p.truncate(END_TOTALS_LEN));
    }
    out[10..12].copy_from_slice(&minor.to_le_bytes());
    reseal(&mut out);
    out
}
