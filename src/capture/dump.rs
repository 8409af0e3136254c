//! Writes the image: metadata records, then every page that carries data,
//! in chunks compressed in parallel, then the END record.
//!
//! ```text
//! manager: scan pages -> copy non-zero pages into a FREE slot -> POSTED
//! workers (and the manager when it would wait): POSTED -> TAKEN -> DONE
//! manager: DONE slots written strictly in fill order -> FREE
//! ```
//! `2 x (workers + 1)` slots of 1 MiB in and `compressBound(1 MiB)` out: the
//! pipeline's memory does not depend on the process's size. A chunk that
//! zstd cannot shrink by 1/32 is written raw from its input buffer (writev
//! of header + data, no copy).
//!
//! Runs inside the manager's suspend-signal handler while every other
//! thread is parked (workers help from inside theirs): must not allocate,
//! print or lock. All buffers come from the checkpoint's scratch arena,
//! opened files were opened beforehand, and errors carry no heap data.

use crate::capture::compress::{Level, StaticCompressor};
use crate::capture::forked::{self, Child, ForkPlan, Shadow, Shadowed};
use crate::capture::incremental::{self as incr, PageHash};
use crate::capture::maps::{MapsParser, RegionKind};
use crate::capture::pages::{is_zero_page, PageRun, PageScanner, PagesError, Want};
use crate::capture::park;
use crate::capture::scratch::{FixedVec, Scratch, ScratchFull};
use crate::capture::sys::{self, futex_wait, futex_wake, PathBuf, RawFd};
use crate::image::codec::{CodecError, Encoder};
use crate::image::format::{
    self, build_record, seal_record_split, RecordChain, RecordKind, FRAME_LEN,
};
use crate::image::model::{ChunkHeader, ChunkRun, EndRecord, FileStamp, Meta, Region};
use crate::kstate;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering::*};

/// Uncompressed bytes per chunk.
pub const CHUNK_BYTES: usize = 1 << 20;
/// Most pipeline slots.
pub const MAX_SLOTS: usize = 32;
/// Page runs asked of the page scanner per call.
const SCAN_RUNS: usize = 4096;

/// Why a dump failed. No heap data: built while threads are suspended.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DumpError {
    #[error("cannot read /proc/self/maps: {0}")]
    Maps(sys::Errno),
    #[error("/proc/self/maps line {0} could not be parsed")]
    MapsLine(usize),
    #[error("the address space grew too much during the checkpoint; try again")]
    TooManyRegions,
    #[error("checkpoint refused: mapping {start:#x}-{end:#x} is a {what}, which cannot be saved")]
    Unsupported {
        start: u64,
        end: u64,
        what: &'static str,
    },
    #[error("writing the image failed: {0}")]
    Write(sys::Errno),
    #[error("scanning pages of {start:#x}-{end:#x} failed: {err}")]
    Pages {
        start: u64,
        end: u64,
        err: PagesError,
    },
    #[error("reading memory at {addr:#x} failed: {errno}")]
    ReadMemory { addr: u64, errno: sys::Errno },
    #[error("kernel state: {0}")]
    Kstate(&'static str),
    #[error("a record did not fit its buffer: {0}")]
    Encode(CodecError),
    #[error("{0}")]
    Scratch(ScratchFull),
    #[error("could not set up zstd level {0}")]
    Compressor(i32),
    #[error("cannot fork the dumping child: {0}")]
    Fork(sys::Errno),
    #[error("mapping {start:#x}-{end:#x} is not in the forked child (MADV_DONTFORK?); take this checkpoint without SELFCKPT_FORKED")]
    NotInChild { start: u64, end: u64 },
    #[error("the flags of mapping {start:#x}-{end:#x} changed just before the checkpoint (madvise); take this checkpoint again")]
    FlagsChanged { start: u64, end: u64 },
    #[error("mapping {start:#x}-{end:#x} is empty in the forked child (made MADV_WIPEONFORK during the checkpoint?); take this checkpoint again")]
    WipedInChild { start: u64, end: u64 },
    #[error("copy-on-write reached {reached} bytes, over the limit of {limit} (SELFCKPT_COW_LIMIT_MB): checkpoint abandoned")]
    CowLimit { limit: u64, reached: u64 },
    #[error(
        "the dumping child was still writing after {secs} s (SELFCKPT_FORK_TIMEOUT) and was killed"
    )]
    ChildTimeout { secs: u64 },
    #[error("the dumping child was killed by signal {signal}")]
    ChildKilled { signal: i32 },
    #[error("the dumping child exited with code {code} before finishing the image")]
    ChildExited { code: i32 },
}

impl From<CodecError> for DumpError {
    fn from(e: CodecError) -> Self {
        DumpError::Encode(e)
    }
}
impl From<ScratchFull> for DumpError {
    fn from(e: ScratchFull) -> Self {
        DumpError::Scratch(e)
    }
}

/// Identity of the program, gathered at init.
pub struct ProgramInfo {
    pub exe_path: Vec<u8>,
    pub build_id: Vec<u8>,
    pub stamp: FileStamp,
}

/// A capture failure inside a record's encoder: the codec error that ends
/// the encoding, with what could not be read kept in `what` (no
/// allocation).
fn kstate_failure(err: kstate::KstateError, what: &mut Option<&'static str>) -> CodecError {
    match err {
        kstate::KstateError::Encode(c) => c,
        kstate::KstateError::Read { what: w, .. }
        | kstate::KstateError::Parse(w)
        | kstate::KstateError::Pipe(w)
        | kstate::KstateError::Files(w) => {
            *what = Some(w);
            CodecError::BadValue {
                field: "kernel state",
                value: 0,
            }
        }
    }
}

/// Everything a dump needs, prepared before the threads are suspended.
pub struct DumpPlan {
    pub image: RawFd,
    pub mem: RawFd,
    pub scratch: Scratch,
    pub scanner: PageScanner,
    pub level: Level,
    pub workers: usize,
    pub maps_cap: usize,
    /// Bytes of the buffer records are built in: at least
    /// [`RECORD_CAP_BASE`] (a record that does not fit fails the dump with
    /// `DumpError::Encode`; it never overflows).
    pub record_cap: usize,
    pub sequence: u64,
    pub created_unix_ns: u64,
    pub program: &'static ProgramInfo,
    pub restart_entry: u64,
    pub restart_mailbox: u64,
    /// Forked mode: a child writes the pages (`capture::forked`).
    pub fork: Option<ForkPlan>,
    /// Forked mode: the mapping flags surveyed before the suspend
    /// (`kstate::vmflags`), checked by the child.
    pub surveyed: Option<std::sync::Arc<kstate::vmflags::Surveyed>>,
    /// Forked mode: the `MADV_DONTFORK` mappings the survey saw, whose
    /// pages the pause copies into the shadow (the child has none).
    pub dontfork: Vec<(u64, u64)>,
    /// Incremental: the parent and its page table (`capture::incremental`);
    /// None for a full image. Incremental dumps run in the pause.
    pub incr: Option<IncrPlan>,
    /// Room (in pages) of the page table this dump fills for the next
    /// incremental checkpoint; 0: none is kept.
    pub table_cap: usize,
}

/// The parent of an incremental image.
pub struct IncrPlan {
    /// Its file name, in the same directory.
    pub parent_name: Vec<u8>,
    /// The checksum of its END record's framing.
    pub parent_end: u64,
    /// Its page table, sorted by address.
    pub prev: Vec<PageHash>,
}

/// Where the page table a dump filled lies in its scratch arena (read by
/// the manager after the release, while the plan still holds the arena).
static TABLE_OUT: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];

/// The page table the last dump filled (`DumpPlan::table_cap`), if it did
/// not overflow. Call after the dump, before the plan's scratch is dropped.
pub fn filled_table(plan: &DumpPlan) -> Option<Vec<PageHash>> {
    let (at, len) = (TABLE_OUT[0].load(Acquire), TABLE_OUT[1].load(Acquire));
    let (lo, hi) = plan.scratch.range();
    let bytes = len * core::mem::size_of::<PageHash>();
    if at == 0 || (at as u64) < lo || at as u64 + bytes as u64 > hi {
        return None;
    }
    // SAFETY: the dump carved this table from the plan's arena, which is
    // still mapped, and filled `len` entries of it.
    Some(unsafe { core::slice::from_raw_parts(at as *const PageHash, len) }.to_vec())
}

/// Whether a region of this kind takes part in incremental checkpoints
/// (its unchanged pages may come from an ancestor at restart): the private
/// regions whose pages are stored by the scan, not the shared objects.
pub fn incremental_region(kind: RegionKind, deleted: bool) -> bool {
    matches!(
        want_for(kind, deleted),
        Some(Want::AnonData | Want::PrivateFileWritten)
    )
}

/// What a dump ended with.
#[derive(Debug)]
pub enum DumpOutcome {
    /// The image was written, in the pause.
    Written(DumpStats),
    /// The metadata was written in the pause; a child writes the pages
    /// (the parent waits for it after release: [`Child::wait`]).
    Forked(Child, DumpStats),
}

impl DumpPlan {
    /// Whether a region lies in a `MADV_DONTFORK` mapping of the survey.
    fn is_dontfork(&self, start: u64, end: u64) -> bool {
        self.fork.is_some() && self.dontfork.iter().any(|&(s, e)| s <= start && end <= e)
    }

    /// The forked checkpoint's survey of the mapping flags, with the
    /// scratch arena mapped since.
    fn survey_in_pause(&self) -> Option<kstate::vmflags::SurveyInPause<'_>> {
        self.surveyed
            .as_deref()
            .map(|survey| kstate::vmflags::SurveyInPause {
                survey,
                scratch: self.scratch.range(),
            })
    }

    /// Scratch bytes a plan with these parameters needs.
    pub fn scratch_needed(
        level: Level,
        workers: usize,
        maps_cap: usize,
        record_cap: usize,
        fork: Option<&ForkPlan>,
        table_cap: usize,
    ) -> usize {
        let slots = slot_count(workers);
        let per_slot = CHUNK_BYTES
            + chunk_record_cap()
            + CHUNK_PAGES * core::mem::size_of::<ChunkRun>()
            + 3 * 64;
        slots * per_slot
            + (workers + 1) * (level.workspace_size() + 64)
            + maps_cap
            + record_cap
            + MAX_REGIONS * core::mem::size_of::<RegionRec>()
            + SCAN_RUNS * core::mem::size_of::<PageRun>()
            + 4 * 65536
            + (1 << 20)
            + fork.map_or(0, ForkPlan::scratch_needed)
            + table_cap * core::mem::size_of::<PageHash>()
            + 64
    }

    /// Whether `fd` is one of the dump's own descriptors.
    pub fn owns_fd(&self, fd: i32) -> bool {
        fd == self.image.raw()
            || fd == self.mem.raw()
            || fd == self.scanner.raw_fd()
            || crate::tree::owns_fd(fd)
            || crate::interpose::mq_notify::owns_fd(fd)
    }
}

/// Most regions an image can list.
pub const MAX_REGIONS: usize = 70_000;
/// Size of the record buffer before what REGIONS needs for the maps text
/// (`DumpPlan::record_cap` is at least this): enough for KERNEL, THREADS
/// and an END that lists MAX_REGIONS regions.
pub const RECORD_CAP_BASE: usize = 4 << 20;
const _: () = assert!(FRAME_LEN + EndRecord::encoded_len(MAX_REGIONS) <= RECORD_CAP_BASE);
const CHUNK_PAGES: usize = CHUNK_BYTES / 4096;

fn slot_count(workers: usize) -> usize {
    (2 * (workers + 1)).clamp(2, MAX_SLOTS)
}

fn chunk_record_cap() -> usize {
    FRAME_LEN
        + ChunkHeader::ENCODED_LEN
        + CHUNK_PAGES * ChunkHeader::RUN_LEN
        + crate::capture::compress::bound(CHUNK_BYTES)
}

/// Totals and phase times of one dump (all times in nanoseconds, taken
/// with the monotonic clock while the program's threads were stopped).
#[derive(Clone, Copy, Debug, Default)]
pub struct DumpStats {
    pub regions: u64,
    /// Bytes of the regions whose pages were looked at.
    pub bytes_mapped: u64,
    /// Of those, bytes of pages the kernel reported present or swapped.
    pub bytes_present: u64,
    /// Present pages left out because they were all zero.
    pub zero_pages: u64,
    /// Bytes of pages put into chunks (before compression).
    pub bytes_raw: u64,
    /// Bytes of CHUNK records written (after compression, with framing).
    pub bytes_stored: u64,
    pub chunks: u64,
    /// Chunks stored raw because zstd did not save enough.
    pub chunks_raw: u64,
    pub file_len: u64,
    /// Reading /proc/self/maps and writing META, REGIONS and THREADS.
    pub maps_ns: u64,
    /// Capturing kernel state (fds, sigactions, mm, auxv) into KERNEL.
    pub kstate_ns: u64,
    /// Asking the kernel which pages are present (PAGEMAP_SCAN or pagemap).
    pub scan_ns: u64,
    /// The whole page phase: scan, zero test, copy, compress, write.
    pub pages_ns: u64,
    /// Of the page phase: time in write(2).
    pub write_call_ns: u64,
    /// Of the page phase: time the writer waited for a chunk still being
    /// compressed by someone else.
    pub wait_ns: u64,
    /// Whether pages were found with the PAGEMAP_SCAN ioctl.
    pub used_pagemap_scan: bool,
    /// Forked mode asked for, but this dump ran in the pause: why.
    pub fork_fallback: Option<&'static str>,
    /// Incremental: pages left out because the parent chain holds them
    /// unchanged.
    pub unchanged_pages: u64,
    /// The checksum of the END record's framing (what a child image
    /// names its parent by).
    pub end_checksum: u64,
}

/// A region as the dump sees it (plain data, lives in scratch).
#[derive(Clone, Copy, Default)]
struct RegionRec {
    start: u64,
    end: u64,
    prot: u32,
    kind: u32,
    offset: u64,
    path_at: usize,
    path_len: usize,
    stamp: FileStamp,
    /// Bytes of the pages the kernel reported present or swapped (filled
    /// in by the page scan; goes into END).
    present: u64,
    /// Forked: the parent saw a page of data here at the fork (a region
    /// the child then finds empty was wiped: `MADV_WIPEONFORK`).
    had_pages: bool,
}

// ---------------------------------------------------------------------------
// The compression pipeline shared with the workers.

const FREE: u32 = 0;
const POSTED: u32 = 1;
const TAKEN: u32 = 2;
const DONE: u32 = 3;

#[derive(Clone, Copy, Default)]
struct SlotData {
    region: u32,
    n_runs: u32,
    raw_len: u32,
    input: usize,
    runs: usize,
    out: usize,
    out_cap: usize,
    out_len: usize,
    stored_raw: bool,
}

struct Slot {
    state: AtomicU32,
    data: UnsafeCell<SlotData>,
}

// SAFETY: `data` is accessed only by the thread that moved `state` to a value
// it owns (POSTED by the manager, TAKEN by a worker, DONE read by the
// manager), with Acquire/Release on every transition.
unsafe impl Sync for Slot {}

#[allow(clippy::declare_interior_mutable_const)]
const SLOT_INIT: Slot = Slot {
    state: AtomicU32::new(FREE),
    data: UnsafeCell::new(SlotData {
        region: 0,
        n_runs: 0,
        raw_len: 0,
        input: 0,
        runs: 0,
        out: 0,
        out_cap: 0,
        out_len: 0,
        stored_raw: false,
    }),
};

static SLOTS: [Slot; MAX_SLOTS] = [SLOT_INIT; MAX_SLOTS];
static N_SLOTS: AtomicU32 = AtomicU32::new(0);
/// Bumped for each posted job and at the end (futex word for workers).
static POSTED_SEQ: AtomicU32 = AtomicU32::new(0);
/// Bumped for each finished job (futex word for the manager).
static DONE_SEQ: AtomicU32 = AtomicU32::new(0);
static ACTIVE: AtomicBool = AtomicBool::new(false);
static NEXT_WORKER: AtomicU32 = AtomicU32::new(0);

struct Compressors {
    cell: UnsafeCell<[Option<StaticCompressor>; MAX_SLOTS]>,
}
// SAFETY: compressor i is used only by the thread that drew index i from
// NEXT_WORKER (workers) or by the manager (the last index).
unsafe impl Sync for Compressors {}
static COMPRESSORS: Compressors = Compressors {
    cell: UnsafeCell::new([const { None }; MAX_SLOTS]),
};

fn compressor(i: usize) -> &'static mut Option<StaticCompressor> {
    // SAFETY: see `unsafe impl Sync for Compressors`.
    unsafe { &mut (*COMPRESSORS.cell.get())[i.min(MAX_SLOTS - 1)] }
}

fn slot_data(i: usize) -> &'static mut SlotData {
    // SAFETY: see `unsafe impl Sync for Slot`.
    unsafe { &mut *SLOTS[i].data.get() }
}

/// Claims one posted job, if any, and compresses it with compressor `ci`.
fn help_once(ci: usize) -> bool {
    let n = N_SLOTS.load(Acquire) as usize;
    for (i, slot) in SLOTS.iter().enumerate().take(n) {
        if slot
            .state
            .compare_exchange(POSTED, TAKEN, AcqRel, Relaxed)
            .is_ok()
        {
            encode_chunk(slot_data(i), compressor(ci));
            slot.state.store(DONE, Release);
            DONE_SEQ.fetch_add(1, Release);
            futex_wake(&DONE_SEQ, i32::MAX);
            return true;
        }
    }
    false
}

/// What a worker does while parked during round `round`.
/// Wakes workers waiting for jobs, so that those of a round that was just
/// released see it at once and leave their handlers (a worker still in
/// its handler cannot park for the next round).
pub fn wake_workers() {
    POSTED_SEQ.fetch_add(1, Release);
    futex_wake(&POSTED_SEQ, i32::MAX);
}

pub fn worker_hook(round: u32) {
    let ci = NEXT_WORKER.fetch_add(1, AcqRel) as usize;
    loop {
        let seen = POSTED_SEQ.load(Acquire);
        if ACTIVE.load(Acquire) && help_once(ci) {
            continue;
        }
        if park::is_released(round) {
            return;
        }
        futex_wait(&POSTED_SEQ, seen, Some(50_000_000));
    }
}

/// What a compression thread of a forked dump's child does: compress
/// with compressor `ci` until the pipeline stops.
pub(crate) fn child_worker_loop(ci: usize) {
    loop {
        let seen = POSTED_SEQ.load(Acquire);
        if help_once(ci) {
            continue;
        }
        if !ACTIVE.load(Acquire) {
            return;
        }
        futex_wait(&POSTED_SEQ, seen, Some(50_000_000));
    }
}

/// Builds the complete CHUNK record for a filled slot in its output buffer.
fn encode_chunk(d: &mut SlotData, comp: &mut Option<StaticCompressor>) {
    // SAFETY: the slot's buffers were carved from scratch for this slot and
    // the state machine gives us exclusive access to them.
    let (input, runs, out) = unsafe {
        (
            core::slice::from_raw_parts(d.input as *const u8, d.raw_len as usize),
            core::slice::from_raw_parts(d.runs as *const ChunkRun, d.n_runs as usize),
            core::slice::from_raw_parts_mut(d.out as *mut u8, d.out_cap),
        )
    };
    let head = FRAME_LEN + ChunkHeader::ENCODED_LEN + runs.len() * ChunkHeader::RUN_LEN;
    let (encoding, data_len) = match comp
        .as_mut()
        .and_then(|c| c.compress(input, &mut out[head..]))
    {
        // Keep zstd's output only where it saves something worth the
        // decompression at restart.
        Some(n) if n < input.len() - input.len() / 32 => (crate::image::model::ENCODING_ZSTD, n),
        // Raw: the data stays in the input buffer and is written from there
        // (writev), never copied next to its header.
        _ => (crate::image::model::ENCODING_RAW, 0),
    };
    let mut e = Encoder::new(&mut out[FRAME_LEN..head]);
    // The buffer was sized for this header: these writes cannot fail.
    let _ = ChunkHeader {
        region: d.region,
        encoding,
        raw_len: d.raw_len,
        n_runs: d.n_runs,
    }
    .encode(&mut e);
    for r in runs {
        let _ = r.encode(&mut e);
    }
    d.stored_raw = encoding == crate::image::model::ENCODING_RAW;
    let tail: &[u8] = if d.stored_raw { input } else { &[] };
    seal_record_split(&mut out[..head + data_len], tail, RecordKind::Chunk);
    d.out_len = head + data_len;
}

// ---------------------------------------------------------------------------
// The dump proper (manager).

struct Writer<'a> {
    fd: &'a RawFd,
    chain: RecordChain,
    len: u64,
    write_ns: u64,
}

impl Writer<'_> {
    fn record(&mut self, bytes: &[u8]) -> Result<(), DumpError> {
        self.record_split(bytes, &[])
    }

    /// Writes a record whose payload ends with `tail` (kept apart from the
    /// framing and header in `head`).
    fn record_split(&mut self, head: &[u8], tail: &[u8]) -> Result<(), DumpError> {
        let t = sys::now_ns();
        write_all2(self.fd, head, tail).map_err(DumpError::Write)?;
        self.write_ns += sys::now_ns() - t;
        let bytes = head;
        self.chain.add(bytes);
        self.len += (bytes.len() + tail.len()) as u64;
        Ok(())
    }
}

/// Writes `a` then `b` with as few writev(2) calls as the kernel allows.
fn write_all2(fd: &RawFd, mut a: &[u8], mut b: &[u8]) -> Result<(), sys::Errno> {
    while !a.is_empty() || !b.is_empty() {
        let iov = [
            libc::iovec {
                iov_base: a.as_ptr() as *mut libc::c_void,
                iov_len: a.len(),
            },
            libc::iovec {
                iov_base: b.as_ptr() as *mut libc::c_void,
                iov_len: b.len(),
            },
        ];
        // SAFETY: both iovecs describe live, readable buffers.
        let r = unsafe { libc::writev(fd.raw(), iov.as_ptr(), 2) };
        if r < 0 {
            let e = sys::Errno::last();
            if e.0 == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        let mut n = r as usize;
        let from_a = n.min(a.len());
        a = &a[from_a..];
        n -= from_a;
        b = &b[n.min(b.len())..];
        if r == 0 {
            return Err(sys::Errno(libc::EIO));
        }
    }
    Ok(())
}

/// Gathers pages into slots, posts them and writes finished ones in order.
struct Gatherer<'a> {
    w: Writer<'a>,
    n_slots: usize,
    fill: usize,
    write: usize,
    cur_region: u32,
    cur_len: usize,
    cur_runs: usize,
    manager_ci: usize,
    stats: DumpStats,
    /// In a forked dump's child: copy-on-write measured as chunks go.
    cow: Option<&'a mut forked::CowMeter>,
}

impl Gatherer<'_> {
    fn cur(&self) -> &'static mut SlotData {
        slot_data(self.fill % self.n_slots)
    }

    /// Makes sure the slot being filled is free.
    fn ready_slot(&mut self) -> Result<(), DumpError> {
        while SLOTS[self.fill % self.n_slots].state.load(Acquire) != FREE {
            self.progress()?;
        }
        Ok(())
    }

    /// Writes the next finished chunk, or helps compress, or waits.
    fn progress(&mut self) -> Result<(), DumpError> {
        let wi = self.write % self.n_slots;
        if self.write < self.fill && SLOTS[wi].state.load(Acquire) == DONE {
            let d = slot_data(wi);
            // SAFETY: DONE hands the slot's buffers back to the manager.
            let (rec, tail) = unsafe {
                (
                    core::slice::from_raw_parts(d.out as *const u8, d.out_len),
                    core::slice::from_raw_parts(
                        d.input as *const u8,
                        if d.stored_raw { d.raw_len as usize } else { 0 },
                    ),
                )
            };
            self.w.record_split(rec, tail)?;
            self.stats.bytes_stored += (rec.len() + tail.len()) as u64;
            self.stats.chunks += 1;
            self.stats.chunks_raw += u64::from(d.stored_raw);
            SLOTS[wi].state.store(FREE, Release);
            self.write += 1;
            return Ok(());
        }
        let seen = DONE_SEQ.load(Acquire);
        if !help_once(self.manager_ci) && SLOTS[wi].state.load(Acquire) != DONE {
            let t = sys::now_ns();
            futex_wait(&DONE_SEQ, seen, Some(10_000_000));
            self.stats.wait_ns += sys::now_ns() - t;
        }
        Ok(())
    }

    fn post(&mut self) -> Result<(), DumpError> {
        if self.cur_len == 0 {
            return Ok(());
        }
        let d = self.cur();
        d.region = self.cur_region;
        d.raw_len = self.cur_len as u32;
        d.n_runs = self.cur_runs as u32;
        SLOTS[self.fill % self.n_slots].state.store(POSTED, Release);
        POSTED_SEQ.fetch_add(1, Release);
        futex_wake(&POSTED_SEQ, i32::MAX);
        self.fill += 1;
        self.cur_len = 0;
        self.cur_runs = 0;
        if let Some(cow) = self.cow.as_deref_mut() {
            cow.after_chunk()?;
        }
        self.ready_slot()
    }

    /// Takes one page of region `ri` (starting at `start`): left out if
    /// `skip_zero` and all zero, else added to the current chunk.
    fn offer(
        &mut self,
        ri: usize,
        start: u64,
        addr: u64,
        bytes: &[u8],
        skip_zero: bool,
    ) -> Result<(), DumpError> {
        if skip_zero && is_zero_page(bytes) {
            self.stats.zero_pages += 1;
            return Ok(());
        }
        self.stats.bytes_raw += bytes.len() as u64;
        self.add_page(ri as u32, (addr - start) / bytes.len() as u64, bytes)
    }

    /// Appends one page (already read) of region `ri` at page index `page`.
    fn add_page(&mut self, ri: u32, page: u64, bytes: &[u8]) -> Result<(), DumpError> {
        if self.cur_len > 0 && (self.cur_region != ri || self.cur_len + bytes.len() > CHUNK_BYTES) {
            self.post()?;
        }
        self.cur_region = ri;
        let d = self.cur();
        // SAFETY: the current slot is FREE (owned by the manager); input and
        // runs were carved with CHUNK_BYTES and CHUNK_PAGES capacity.
        let (input, runs) = unsafe {
            (
                core::slice::from_raw_parts_mut(d.input as *mut u8, CHUNK_BYTES),
                core::slice::from_raw_parts_mut(d.runs as *mut ChunkRun, CHUNK_PAGES),
            )
        };
        input[self.cur_len..self.cur_len + bytes.len()].copy_from_slice(bytes);
        self.cur_len += bytes.len();
        match self.cur_runs.checked_sub(1).map(|i| &mut runs[i]) {
            Some(last) if last.first_page + last.pages as u64 == page => last.pages += 1,
            _ => {
                runs[self.cur_runs] = ChunkRun {
                    first_page: page,
                    pages: 1,
                };
                self.cur_runs += 1;
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), DumpError> {
        self.post()?;
        while self.write < self.fill {
            self.progress()?;
        }
        Ok(())
    }
}

/// What to store of a region of this kind; None: nothing (its content
/// comes from elsewhere at restart) or refused.
pub(crate) fn want_for(kind: RegionKind, deleted: bool) -> Option<Want> {
    match kind {
        RegionKind::Anon | RegionKind::Heap | RegionKind::Stack => Some(Want::AnonData),
        RegionKind::PrivateFile if deleted => Some(Want::AllResident),
        RegionKind::PrivateFile => Some(Want::PrivateFileWritten),
        RegionKind::SharedAnon | RegionKind::SysvShm => Some(Want::AllResident),
        RegionKind::SharedFile if deleted => Some(Want::AllResident),
        _ => None,
    }
}

/// The stamp of a shared object's mapping: its device and inode from the
/// maps line (size, mtime and mode are not looked at for these).
fn shared_object_stamp(ent: &crate::capture::maps::MapEntry) -> FileStamp {
    FileStamp {
        dev: libc::makedev(ent.dev_major, ent.dev_minor),
        ino: ent.inode,
        ..FileStamp::default()
    }
}

/// A deleted shared file mapping whose file is still linked under another
/// name (`capture::relink`): that name, written into `out` (the room after
/// the maps text), and the file's stamp. The region is then an ordinary
/// shared file mapping of that name.
fn linked_elsewhere(
    ent: &crate::capture::maps::MapEntry,
    out: &mut [u8],
) -> Option<(usize, FileStamp)> {
    if ent.kind != RegionKind::SharedFile || !ent.path.ends_with(b" (deleted)") {
        return None;
    }
    let dev = libc::makedev(ent.dev_major, ent.dev_minor);
    let n = crate::capture::relink::linked_name(ent.path, dev, ent.inode, out)?;
    let mut p = PathBuf::<4200>::new();
    p.push(&out[..n]);
    let st = sys::stat_path(p.as_cstr_bytes()).ok()?;
    Some((n, FileStamp::from_stat(&st)))
}

/// Which object pages of region `ri` (a shared object's mapping) were
/// stored already through an earlier mapping of the same object (an
/// alias), so that each object page is stored once. Asked for increasing
/// offsets; remembers the span it last found (covered or not), so a run
/// of pages costs one scan of the earlier regions per change, not one per
/// page.
struct AliasCursor {
    ri: usize,
    /// [from, to) known covered (true) or not (false).
    span: (u64, u64, bool),
}

impl AliasCursor {
    fn new(ri: usize) -> Self {
        AliasCursor {
            ri,
            span: (0, 0, false),
        }
    }

    fn stored(&mut self, regions: &[RegionRec], offset: u64) -> bool {
        let (from, to, covered) = self.span;
        if from <= offset && offset < to {
            return covered;
        }
        let r = &regions[self.ri];
        let mut next = u64::MAX;
        for o in regions[..self.ri]
            .iter()
            .filter(|o| o.stamp == r.stamp && o.kind == r.kind)
        {
            let (a, b) = (o.offset, o.offset.saturating_add(o.end - o.start));
            if a <= offset && offset < b {
                self.span = (a, b, true);
                return true;
            }
            if a > offset {
                next = next.min(a);
            }
        }
        self.span = (offset, next, false);
        false
    }
}

/// Whether an earlier region maps the same shared object as region `ri`.
fn has_earlier_alias(regions: &[RegionRec], ri: usize) -> bool {
    let r = &regions[ri];
    regions[..ri]
        .iter()
        .any(|o| o.stamp == r.stamp && o.kind == r.kind)
}

/// Runs the whole dump. Called in the manager's handler.
pub fn run(plan: &DumpPlan) -> Result<DumpOutcome, DumpError> {
    #[cfg(feature = "alloc-guard")]
    super::alloc_guard::breach_if_asked();
    let s = &plan.scratch;
    let page = sys::page_size();
    let (scratch_lo, scratch_hi) = s.range();

    // Set up the pipeline.
    let n_slots = slot_count(plan.workers);
    for (i, slot) in SLOTS.iter().enumerate().take(n_slots) {
        let d = slot_data(i);
        *d = SlotData {
            input: s.bytes(CHUNK_BYTES)?.as_mut_ptr() as usize,
            runs: s.slice::<ChunkRun>(CHUNK_PAGES)?.as_mut_ptr() as usize,
            out_cap: chunk_record_cap(),
            out: s.bytes(chunk_record_cap())?.as_mut_ptr() as usize,
            ..SlotData::default()
        };
        slot.state.store(FREE, Relaxed);
    }
    for i in 0..=plan.workers.min(MAX_SLOTS - 1) {
        *compressor(i) = match plan.level {
            Level::Store => None,
            Level::Zstd(l) => {
                let ws = s.bytes(plan.level.workspace_size())?;
                Some(StaticCompressor::new(ws, l).ok_or(DumpError::Compressor(l))?)
            }
        };
    }
    N_SLOTS.store(n_slots as u32, Release);
    ACTIVE.store(true, Release);

    let result = dump_all(plan, n_slots, page, scratch_lo, scratch_hi);
    stop_pipeline(n_slots);
    result
}

/// Stops the pipeline: no new jobs, and every job still being compressed
/// finished before its buffers go away.
fn stop_pipeline(n_slots: usize) {
    ACTIVE.store(false, Release);
    wake_workers();
    for slot in SLOTS.iter().take(n_slots) {
        while slot.state.load(Acquire) == TAKEN {
            let seen = DONE_SEQ.load(Acquire);
            futex_wait(&DONE_SEQ, seen, Some(1_000_000));
        }
    }
}

/// The image up to the pages: what must be read while the threads are
/// parked (in forked mode too: descriptors, signals, thread contexts).
struct Head<'a> {
    regions: &'a mut [RegionRec],
    maps_text: &'a [u8],
    w: Writer<'a>,
    rec: &'a mut [u8],
    maps_ns: u64,
    kstate_ns: u64,
    /// The mapping flags were taken from the survey (the child checks).
    flags_from_survey: bool,
}

impl Head<'_> {
    fn path_of(&self, r: &RegionRec) -> &[u8] {
        &self.maps_text[r.path_at..r.path_at + r.path_len]
    }

    /// What to store of region `r` (see [`want_for`]).
    fn want(&self, r: &RegionRec) -> Option<Want> {
        let kind = RegionKind::from_u32(r.kind).unwrap_or(RegionKind::Anon);
        want_for(kind, self.path_of(r).ends_with(b" (deleted)"))
    }
}

/// Where the page phase reads pages from.
struct PageSource<'a> {
    scanner: &'a PageScanner,
    mem: &'a RawFd,
    /// Forked: the pages copied in the pause (regions wanting
    /// `AllResident` are stored from here).
    shadow: Option<&'a Shadow<'a>>,
    cow: Option<&'a mut forked::CowMeter>,
}

fn dump_all(
    plan: &DumpPlan,
    n_slots: usize,
    page: usize,
    scratch_lo: u64,
    scratch_hi: u64,
) -> Result<DumpOutcome, DumpError> {
    let head = write_head(plan, scratch_lo, scratch_hi)?;
    let mut fallback = None;
    if let Some(fp) = &plan.fork {
        let s = &plan.scratch;
        let runs = s.slice::<PageRun>(SCAN_RUNS)?;
        let tmp = s.bytes(65536)?;
        // Which anonymous regions hold data now (the scan stops at the
        // first run): the child checks it sees them too.
        for i in 0..head.regions.len() {
            if head.want(&head.regions[i]) == Some(Want::AnonData) {
                let r = &head.regions[i];
                let found = plan
                    .scanner
                    .scan(r.start, r.end, Want::AnonData, &mut runs[..1], tmp);
                head.regions[i].had_pages =
                    matches!(found, Ok(1) | Err(PagesError::OutOfRuns { .. }));
            }
        }
        let shadowed = head.regions.iter().enumerate().filter_map(|(ri, r)| {
            let dontfork = plan.is_dontfork(r.start, r.end) && head.want(r).is_some();
            (head.want(r) == Some(Want::AllResident) || dontfork).then_some(Shadowed {
                region: ri as u32,
                start: r.start,
                end: r.end,
                readable: r.prot & libc::PROT_READ as u32 != 0,
                dontfork,
            })
        });
        let carved = forked::carve(s, fp)?;
        match forked::copy_shadow(s, fp, &plan.mem, &plan.scanner, shadowed, runs, tmp) {
            Err(why) => fallback = Some(why),
            Ok(shadow) => match forked::fork(carved, fp) {
                Err(_) => fallback = Some("the dumping child could not be made (clone3)"),
                Ok(forked::Fork::Parent(child)) => {
                    let stats = DumpStats {
                        maps_ns: head.maps_ns,
                        kstate_ns: head.kstate_ns,
                        ..DumpStats::default()
                    };
                    return Ok(DumpOutcome::Forked(child, stats));
                }
                Ok(forked::Fork::Child(mut side)) => {
                    let result = (|| {
                        side.check_maps(
                            head.regions
                                .iter()
                                .filter(|r| !plan.is_dontfork(r.start, r.end))
                                .map(|r| (r.start, r.end)),
                        )?;
                        if let Some(now) = plan.survey_in_pause().filter(|_| head.flags_from_survey)
                        {
                            side.check_flags(now)?;
                        }
                        let (scanner, mem) = side.open_own(plan.scanner.method())?;
                        side.start_workers()?;
                        let src = PageSource {
                            scanner: &scanner,
                            mem: &mem,
                            shadow: Some(&shadow),
                            cow: Some(&mut side.cow),
                        };
                        write_pages(plan, head, src, n_slots, page)
                    })();
                    stop_pipeline(n_slots);
                    side.exit(result)
                }
            },
        }
    }
    let src = PageSource {
        scanner: &plan.scanner,
        mem: &plan.mem,
        shadow: None,
        cow: None,
    };
    let mut stats = write_pages(plan, head, src, n_slots, page)?;
    stats.fork_fallback = fallback;
    Ok(DumpOutcome::Written(stats))
}

fn write_head(plan: &DumpPlan, scratch_lo: u64, scratch_hi: u64) -> Result<Head<'_>, DumpError> {
    let s = &plan.scratch;
    let t_maps = sys::now_ns();
    let maps_buf = s.bytes(plan.maps_cap)?;
    let maps_len = crate::capture::maps::read_self_maps(maps_buf).map_err(|e| match e {
        crate::capture::maps::MapsError::BufferTooSmall(_) => DumpError::TooManyRegions,
        _ => DumpError::Maps(sys::Errno(libc::EIO)),
    })?;
    let (maps_text, spare) = maps_buf.split_at_mut(maps_len);
    let maps_text: &[u8] = maps_text;
    let mut spare_used = 0usize;
    let mut regions = FixedVec::new(s.room::<RegionRec>(MAX_REGIONS)?);
    for ent in MapsParser::new(maps_text) {
        let ent = ent.map_err(|e| match e {
            crate::capture::maps::MapsError::Malformed(line) => DumpError::MapsLine(line),
            _ => DumpError::MapsLine(0),
        })?;
        if ent.kind == RegionKind::Vsyscall || (ent.start >= scratch_lo && ent.end <= scratch_hi) {
            continue;
        }
        // The scratch arena is never part of the image, also when the
        // kernel merged it with a neighbouring mapping of the same kind:
        // only the pieces outside it are.
        let pieces = outside((ent.start, ent.end), (scratch_lo, scratch_hi));
        let what = match ent.kind {
            RegionKind::Device => Some("device mapping"),
            RegionKind::Special => Some("special kernel mapping (the memory of a kernel object that is no file: an anon_inode, an AIO ring, a packet socket's ring)"),
            _ => None,
        };
        if let Some(what) = what {
            return Err(DumpError::Unsupported {
                start: ent.start,
                end: ent.end,
                what,
            });
        }
        let mut path_at = ent.path.as_ptr() as usize - maps_text.as_ptr() as usize;
        let mut path_len = ent.path.len();
        let mut stamp = FileStamp::default();
        if let Some((n, st)) = linked_elsewhere(&ent, &mut spare[spare_used..]) {
            path_at = maps_len + spare_used;
            path_len = n;
            spare_used += n;
            stamp = st;
        } else if crate::capture::maps::is_shared_object(ent.kind, ent.path) {
            stamp = shared_object_stamp(&ent);
        } else if matches!(ent.kind, RegionKind::PrivateFile | RegionKind::SharedFile)
            && !ent.path.ends_with(b" (deleted)")
        {
            let mut statbuf = PathBuf::<4200>::new();
            statbuf.push(ent.path);
            if let Ok(st) = sys::stat_path(statbuf.as_cstr_bytes()) {
                stamp = FileStamp::from_stat(&st);
            }
        }
        for (start, end) in pieces.into_iter().filter(|(a, b)| a < b) {
            regions
                .push(RegionRec {
                    start,
                    end,
                    prot: ent.prot,
                    kind: ent.kind as u32,
                    offset: ent.offset + (start - ent.start),
                    path_at,
                    path_len,
                    stamp,
                    present: 0,
                    had_pages: false,
                })
                .map_err(|_| DumpError::TooManyRegions)?;
        }
    }
    let regions = regions.into_mut_slice();
    // The maps text, and after it the names of shared files found linked
    // elsewhere (`linked_elsewhere`).
    let paths: &[u8] = &maps_buf[..maps_len + spare_used];
    let path_of = |r: &RegionRec| &paths[r.path_at..r.path_at + r.path_len];

    let mut w = Writer {
        fd: &plan.image,
        chain: RecordChain::default(),
        len: 0,
        write_ns: 0,
    };
    w.fd.write_all(&format::FileHeader::host().to_bytes())
        .map_err(DumpError::Write)?;
    w.len += format::FILE_HEADER_LEN as u64;

    let rec = s.bytes(plan.record_cap)?;

    // META
    // SAFETY: utsname is plain old data; uname fills it.
    let mut uts: libc::utsname = unsafe { core::mem::zeroed() };
    // SAFETY: uts is a valid out-pointer.
    unsafe { libc::uname(&mut uts) };
    let cstr = |f: &[libc::c_char]| -> usize { f.iter().position(|&c| c == 0).unwrap_or(f.len()) };
    // SAFETY: c_char and u8 have the same size and layout.
    let release = unsafe {
        core::slice::from_raw_parts(uts.release.as_ptr().cast::<u8>(), cstr(&uts.release))
    };
    // SAFETY: as above.
    let host = unsafe {
        core::slice::from_raw_parts(uts.nodename.as_ptr().cast::<u8>(), cstr(&uts.nodename))
    };
    let n = build_record(rec, RecordKind::Meta, |e| {
        Meta {
            created_unix_ns: plan.created_unix_ns,
            pid: sys::getpid(),
            sequence: plan.sequence,
            kernel_release: release,
            hostname: host,
            selfckpt_version: env!("CARGO_PKG_VERSION").as_bytes(),
            exe_path: &plan.program.exe_path,
            exe_build_id: &plan.program.build_id,
            exe_stamp: plan.program.stamp,
            cpu_xfeatures: crate::arch::cpu_xfeatures(),
            restart_entry: plan.restart_entry,
            restart_mailbox: plan.restart_mailbox,
            restarts: crate::manager::restart_count(),
            identity: crate::capture::park::MAILBOX
                .identity
                .load(core::sync::atomic::Ordering::Acquire) as u32,
            // What the mailbox itself says it is.
            mailbox_layout: Some(
                crate::capture::park::MAILBOX
                    .layout
                    .load(core::sync::atomic::Ordering::Relaxed) as u32,
            ),
            session_role: Some(sys::session_role()),
            parent: Some(crate::image::model::ParentRef {
                name: plan.incr.as_ref().map_or(&[][..], |i| &i.parent_name),
                end_checksum: plan.incr.as_ref().map_or(0, |i| i.parent_end),
            }),
        }
        .encode(e)
    })?;
    w.record(&rec[..n])?;

    // REGIONS
    let n = build_record(rec, RecordKind::Regions, |e| {
        e.u32(regions.len() as u32)?;
        regions.iter().try_for_each(|r| {
            Region {
                start: r.start,
                end: r.end,
                prot: r.prot,
                kind: r.kind,
                offset: r.offset,
                path: path_of(r),
                stamp: r.stamp,
            }
            .encode(e)
        })
    })?;
    w.record(&rec[..n])?;

    // KERNEL
    let t_kstate = sys::now_ns();
    let text = s.bytes(65536)?;
    let path = s.bytes(8192)?;
    let auxv = s.bytes(8192)?;
    let cwd = s.bytes(8192)?;
    let mut bufs = kstate::CaptureBuffers {
        text,
        path,
        auxv,
        cwd,
        surveyed: plan.survey_in_pause(),
        flags_from_survey: false,
    };
    let mut kerr: Option<&'static str> = None;
    let n = build_record(rec, RecordKind::Kernel, |e| {
        kstate::encode_kernel_record(e, &mut bufs, &|fd| plan.owns_fd(fd))
            .map_err(|err| kstate_failure(err, &mut kerr))
    });
    if let Some(what) = kerr {
        return Err(DumpError::Kstate(what));
    }
    let n = n?;
    w.record(&rec[..n])?;
    let kstate_ns = sys::now_ns() - t_kstate;

    // THREADS: the main thread first (it becomes the restarter's thread),
    // then (format 1.4) each thread's pending signals in the same order.
    let mut kerr: Option<&'static str> = None;
    let n = build_record(rec, RecordKind::Threads, |e| {
        let count = park::parked_slots().count() as u32;
        e.u32(count)?;
        park::parked_in_image_order().try_for_each(|(t, _)| t.encode(e))?;
        e.u32(count)?;
        park::parked_in_image_order().try_for_each(|(_, ktid)| {
            kstate::pending::of_thread(ktid, bufs.text)
                .map_err(|err| kstate_failure(err, &mut kerr))?
                .encode(e)
        })
    });
    if let Some(what) = kerr {
        return Err(DumpError::Kstate(what));
    }
    let n = n?;
    w.record(&rec[..n])?;
    let maps_ns = sys::now_ns() - t_maps - kstate_ns;

    Ok(Head {
        regions,
        maps_text: paths,
        w,
        rec,
        maps_ns,
        kstate_ns,
        flags_from_survey: bufs.flags_from_survey,
    })
}

fn write_pages(
    plan: &DumpPlan,
    head: Head<'_>,
    src: PageSource<'_>,
    n_slots: usize,
    page: usize,
) -> Result<DumpStats, DumpError> {
    let s = &plan.scratch;
    let Head {
        regions,
        maps_text,
        w,
        rec,
        maps_ns,
        kstate_ns,
        ..
    } = head;
    let path_of = |r: &RegionRec| &maps_text[r.path_at..r.path_at + r.path_len];
    // Pages.
    let t_pages = sys::now_ns();
    let mut g = Gatherer {
        w,
        n_slots,
        fill: 0,
        write: 0,
        cur_region: 0,
        cur_len: 0,
        cur_runs: 0,
        manager_ci: plan.workers.min(MAX_SLOTS - 1),
        stats: DumpStats {
            maps_ns,
            kstate_ns,
            used_pagemap_scan: src.scanner.method() == crate::capture::pages::ScanMethod::Ioctl,
            ..DumpStats::default()
        },
        cow: src.cow,
    };
    g.ready_slot()?;
    let runs = s.slice::<PageRun>(SCAN_RUNS)?;
    let tmp = s.bytes(65536)?;
    let pagebuf = s.bytes(page)?;
    let every_shared_page = crate::capture::pages::swap_in_use(tmp);
    TABLE_OUT[0].store(0, Release);
    TABLE_OUT[1].store(0, Release);
    // Room only: pages of it are touched as the table fills.
    let table_room = crate::capture::scratch::FixedVec::new(s.room::<PageHash>(plan.table_cap)?);
    let prev: &[PageHash] = plan.incr.as_ref().map_or(&[][..], |i| &i.prev);
    let mut cursor = incr::Cursor::new(prev, table_room);
    for ri in 0..regions.len() {
        cursor.skip_below(regions[ri].start);
        let shared = crate::capture::maps::is_shared_object(
            RegionKind::from_u32(regions[ri].kind).unwrap_or(RegionKind::Anon),
            path_of(&regions[ri]),
        );
        let aliased = shared && has_earlier_alias(regions, ri);
        let mut alias = AliasCursor::new(ri);
        let r = &regions[ri];
        let kind = RegionKind::from_u32(r.kind).unwrap_or(RegionKind::Anon);
        g.stats.regions += 1;
        let Some(want) = want_for(kind, path_of(r).ends_with(b" (deleted)")) else {
            continue;
        };
        g.stats.bytes_mapped += r.end - r.start;
        let readable = r.prot & libc::PROT_READ as u32 != 0;
        // A zero page may be left out only where the restorer's fresh
        // memory reads as zero; over a file mapping it would show the file.
        let skip_zero = want != Want::PrivateFileWritten;
        // An image with a parent must track every private region (a page
        // it leaves out as zero would show the ancestor's copy).
        let tracked = (plan.table_cap > 0 || plan.incr.is_some())
            && matches!(want, Want::AnonData | Want::PrivateFileWritten);
        let mut present = 0u64;
        let from_shadow = want == Want::AllResident || plan.is_dontfork(r.start, r.end);
        if let Some(shadow) = src.shadow.filter(|_| from_shadow) {
            for run in shadow.runs_of(ri as u32) {
                present += run.pages * page as u64;
                g.stats.bytes_present += run.pages * page as u64;
                for p in 0..run.pages {
                    let addr = run.addr + p * page as u64;
                    if aliased && alias.stored(regions, r.offset + (addr - r.start)) {
                        continue;
                    }
                    g.offer(ri, r.start, addr, shadow.page(run, p, page), skip_zero)?;
                }
            }
            regions[ri].present = present;
            continue;
        }
        let mut at = r.start;
        while at < r.end {
            let t_scan = sys::now_ns();
            let scanned = if shared {
                crate::capture::pages::resident_shared(at, r.end, every_shared_page, runs, tmp)
            } else {
                src.scanner.scan(at, r.end, want, runs, tmp)
            };
            g.stats.scan_ns += sys::now_ns() - t_scan;
            let (n, next) = match scanned {
                Ok(n) => (n, r.end),
                Err(PagesError::OutOfRuns { resume_at }) => (runs.len(), resume_at),
                Err(err) => {
                    return Err(DumpError::Pages {
                        start: r.start,
                        end: r.end,
                        err,
                    })
                }
            };
            for run in &runs[..n] {
                present += run.pages * page as u64;
                g.stats.bytes_present += run.pages * page as u64;
                for p in 0..run.pages {
                    let addr = run.addr + p * page as u64;
                    if aliased && alias.stored(regions, r.offset + (addr - r.start)) {
                        continue;
                    }
                    if tracked {
                        store_vanished(&mut g, &mut cursor, src.mem, pagebuf, ri, r.start, addr)?;
                    }
                    let bytes: &[u8] = if readable {
                        // SAFETY: addr is a present page of a readable mapping
                        // that nobody unmaps while the program is suspended.
                        unsafe { core::slice::from_raw_parts(addr as *const u8, page) }
                    } else {
                        src.mem
                            .pread(pagebuf, addr)
                            .map_err(|errno| DumpError::ReadMemory { addr, errno })?;
                        pagebuf
                    };
                    if tracked {
                        let hash = incr::hash_page(bytes);
                        match cursor.previous(addr) {
                            Some(h) if h == hash => {
                                cursor.keep(addr, hash);
                                cursor.unchanged += 1;
                            }
                            // Changed: stored even if now all zero (the
                            // ancestor's copy must not show through).
                            Some(_) => {
                                cursor.keep(addr, hash);
                                g.offer(ri, r.start, addr, bytes, false)?;
                            }
                            None if skip_zero && is_zero_page(bytes) => {
                                g.stats.zero_pages += 1;
                            }
                            None => {
                                cursor.keep(addr, hash);
                                g.offer(ri, r.start, addr, bytes, false)?;
                            }
                        }
                    } else {
                        g.offer(ri, r.start, addr, bytes, skip_zero)?;
                    }
                }
            }
            at = next;
        }
        if tracked {
            store_vanished(&mut g, &mut cursor, src.mem, pagebuf, ri, r.start, r.end)?;
        }
        let (had_pages, start, end) = (r.had_pages, r.start, r.end);
        regions[ri].present = present;
        if had_pages && present == 0 && src.shadow.is_some() {
            return Err(DumpError::WipedInChild { start, end });
        }
    }
    g.finish()?;
    let (table, unchanged) = cursor.finish();
    g.stats.unchanged_pages = unchanged;
    if let Some(t) = table {
        TABLE_OUT[0].store(t.as_ptr() as usize, Release);
        TABLE_OUT[1].store(t.len(), Release);
    }
    g.stats.pages_ns = sys::now_ns() - t_pages;
    g.stats.write_call_ns = g.w.write_ns;

    // END
    let stats = &mut g.stats;
    let end = EndRecord {
        records: g.w.chain.records,
        chunks: g.w.chain.chunks,
        chain: g.w.chain.digest(),
        bytes_mapped: stats.bytes_mapped,
        bytes_present: stats.bytes_present,
        bytes_raw: stats.bytes_raw,
        bytes_stored: stats.bytes_stored,
        zero_pages: stats.zero_pages,
        ..EndRecord::default()
    };
    let n = build_record(rec, RecordKind::End, |e| {
        end.encode_with_present(e, regions.iter().map(|r| r.present))
    })?;
    g.w.record(&rec[..n])?;
    g.stats.end_checksum = u64::from_le_bytes(rec[16..24].try_into().unwrap_or([0; 8]));
    g.stats.file_len = g.w.len;
    Ok(g.stats)
}

/// Stores the pages of the previous table in `[start, upto)` of region
/// `ri` that the scan did not report (read again: zero for anonymous
/// memory, the file's content for a private file mapping), so that no
/// ancestor's copy of them shows through at restart.
#[allow(clippy::too_many_arguments)]
fn store_vanished(
    g: &mut Gatherer<'_>,
    cursor: &mut incr::Cursor<'_>,
    mem: &RawFd,
    pagebuf: &mut [u8],
    ri: usize,
    start: u64,
    upto: u64,
) -> Result<(), DumpError> {
    while let Some(addr) = cursor.take_below(upto) {
        if addr < start {
            continue;
        }
        mem.pread(pagebuf, addr)
            .map_err(|errno| DumpError::ReadMemory { addr, errno })?;
        cursor.keep(addr, incr::hash_page(pagebuf));
        g.offer(ri, start, addr, pagebuf, false)?;
    }
    Ok(())
}

/// The parts of `range` outside `hole` (empty ones as `(x, x)`).
fn outside(range: (u64, u64), hole: (u64, u64)) -> [(u64, u64); 2] {
    let (start, end) = range;
    if end <= hole.0 || start >= hole.1 {
        return [(start, end), (end, end)];
    }
    [
        (start, hole.0.clamp(start, end)),
        (hole.1.clamp(start, end), end),
    ]
}

/// Resets the pipeline before a round. Its state in memory is whatever it
/// was while the image was being written: in a restarted process it says
/// "active" with slots pointing into a scratch arena that no longer exists,
/// so nothing may trust it before this reset.
pub fn reset_pipeline() {
    ACTIVE.store(false, Release);
    N_SLOTS.store(0, Release);
    for slot in &SLOTS {
        slot.state.store(FREE, Release);
    }
    NEXT_WORKER.store(0, Release);
}

#[cfg(test)]
mod tests {
    use super::outside;

    #[test]
    fn an_alias_stores_only_the_object_pages_no_earlier_mapping_stored() {
        use super::{AliasCursor, RegionRec};
        let obj = crate::image::model::FileStamp {
            dev: 5,
            ino: 9,
            ..Default::default()
        };
        let rec = |start: u64, len: u64, offset: u64, stamp| RegionRec {
            start,
            end: start + len,
            offset,
            stamp,
            kind: 4,
            ..RegionRec::default()
        };
        let other = crate::image::model::FileStamp { ino: 10, ..obj };
        let regions = [
            rec(0x10000, 0x2000, 0x1000, obj),
            rec(0x20000, 0x8000, 0, other),
            rec(0x40000, 0x1000, 0x5000, obj),
            rec(0x50000, 0x8000, 0, obj),
        ];
        let mut c = AliasCursor::new(3);
        let stored: Vec<bool> = (0..8).map(|p| c.stored(&regions, p * 0x1000)).collect();
        assert_eq!(
            stored,
            [false, true, true, false, false, true, false, false]
        );
    }

    #[test]
    fn the_scratch_arena_is_cut_out_of_a_merged_mapping() {
        let hole = (0x5000, 0x9000);
        let pieces = |r| {
            outside(r, hole)
                .into_iter()
                .filter(|(a, b)| a < b)
                .collect::<Vec<_>>()
        };
        // Apart from it: whole.
        assert_eq!(pieces((0x1000, 0x5000)), [(0x1000, 0x5000)]);
        assert_eq!(pieces((0x9000, 0xa000)), [(0x9000, 0xa000)]);
        // Merged before, after, on both sides, or exactly it.
        assert_eq!(pieces((0x1000, 0x9000)), [(0x1000, 0x5000)]);
        assert_eq!(pieces((0x5000, 0xc000)), [(0x9000, 0xc000)]);
        assert_eq!(
            pieces((0x1000, 0xc000)),
            [(0x1000, 0x5000), (0x9000, 0xc000)]
        );
        assert_eq!(pieces((0x5000, 0x9000)), []);
    }
}
