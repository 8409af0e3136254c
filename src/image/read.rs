//! Opens an image, checks everything a restart relies on, and streams its
//! chunks. Ordinary Rust (the restarter, `inspect`, `verify`).
//!
//! Every check happens before the caller acts: a damaged image yields a
//! [`ReadError`] naming the record and byte offset, never a panic or a huge
//! allocation (record lengths are bounded by the file size).

use super::codec::Decoder;
use super::format::{
    pread_exact, FileHeader, FormatError, ImageReader, RecordKind, PENDING_SIGNALS_SINCE_MINOR,
};
use super::mac::MacKey;
use super::model::{
    ChunkHeader, ChunkRun, EndRecord, IntervalTimers, Meta, Region, SignalSet, ThreadState,
    ENCODING_RAW, ENCODING_ZSTD,
};
use crate::kstate::KernelState;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

/// Highest user-space address any image may use.
pub const USER_ADDRESS_LIMIT: u64 = 1 << 56;
/// Largest decoded size of one chunk a reader accepts (writers produce at
/// most a few MiB): bounds the buffer `verify` and the restarter allocate.
pub const MAX_CHUNK_RAW: u64 = 64 << 20;
/// Largest auxv the kernel keeps (`saved_auxv`) is a few hundred bytes.
pub const MAX_AUXV_LEN: usize = 4096;
/// Signals are numbered 1..=64 on Linux.
const MAX_SIGNAL: u32 = 64;
/// Longest interval timer setting: the kernel keeps timers in signed
/// 64-bit nanoseconds (2^63 - 1 ns is 9 223 372 036.85 s) and clamps
/// longer ones, so getitimer never reports more.
pub const MAX_TIMER_SECS: u64 = i64::MAX as u64 / 1_000_000_000;

/// The source an image is read from.
type Source = Box<dyn Read + Send>;

pub type ReadError = FormatError;

/// An image whose metadata records have been read and checked; its chunks
/// have not been read yet.
pub struct ImageFile {
    pub path: PathBuf,
    pub file_len: u64,
    pub header: FileHeader,
    /// Owner and mode of the image file (None for in-memory images).
    pub owner_mode: Option<(u32, u32)>,
    reader: ImageReader<Source>,
    /// The image file, for positioned reads (None for in-memory images).
    file: Option<std::fs::File>,
    meta: Vec<u8>,
    regions: Vec<u8>,
    kernel: Vec<u8>,
    threads: Vec<u8>,
    /// The checksum of the END record's framing, once read (what a child
    /// incremental image names this one by).
    pub end_checksum: Option<u64>,
}

/// The decoded metadata of an image.
pub struct ImageView<'a> {
    pub meta: Meta<'a>,
    pub regions: Vec<Region<'a>>,
    pub kernel: KernelState<'a>,
    pub threads: Vec<ThreadState>,
    /// Each thread's own pending signals, in `threads` order (format 1.4;
    /// all empty in older images).
    pub thread_pending: Vec<SignalSet>,
}

/// One chunk: its header and runs checked against the regions. Its data
/// is either read and checksum-verified already, or (skimming) still in
/// the file, read and verified by [`Chunk::place`].
pub struct Chunk {
    pub offset: u64,
    pub header: ChunkHeader,
    pub runs: Vec<ChunkRun>,
    body: Body,
}

enum Body {
    /// The record's payload, checksum verified; the stored bytes
    /// (compressed or raw) are `payload[data_at..]`.
    Read { payload: Vec<u8>, data_at: usize },
    /// Not read yet.
    InFile(InFile),
}

/// Where a skimmed chunk's stored bytes are, and what verifies them.
struct InFile {
    file: std::sync::Arc<std::fs::File>,
    /// Framing bytes 0..16 and the payload's head (chunk header and runs),
    /// as read: the checksum covers them, then the data.
    frame: [u8; 16],
    head: Vec<u8>,
    sum: u64,
    /// File offset and length of the stored bytes.
    at: u64,
    len: usize,
}

fn malformed(offset: u64, kind: &'static str) -> impl Fn(super::codec::CodecError) -> FormatError {
    move |source| FormatError::Malformed {
        offset,
        kind,
        source,
    }
}

fn invalid(msg: String) -> FormatError {
    FormatError::Invalid(msg)
}

/// Opens `path` for reading without blocking (a FIFO must not hang) and
/// without becoming its terminal, `extra` flags added; refuses anything
/// but a regular file.
fn open_regular(path: &Path, extra: i32) -> Result<(std::fs::File, std::fs::Metadata), ReadError> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | extra)
        .open(path)?;
    let md = f.metadata()?;
    if !md.file_type().is_file() {
        return Err(FormatError::NotRegular(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    Ok((f, md))
}

/// Reads and checks only the file header of `path` (magic, checksum,
/// version), so a restarter can refuse another arch or page size with that
/// reason before validating the rest against it.
pub fn peek_header(path: &Path) -> Result<FileHeader, ReadError> {
    let (mut f, _) = open_regular(path, 0)?;
    let mut b = [0u8; super::format::FILE_HEADER_LEN];
    f.read_exact(&mut b).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => FormatError::Truncated { offset: 0 },
        _ => FormatError::Io(e),
    })?;
    FileHeader::parse(&b)
}

/// The first record of an image, decoded: header checked, META's frame
/// and checksum checked and its fields decoded. What the image directory
/// needs to tell whose an image is, its order and its parent, without
/// reading the rest (a directory of hundreds of images is sorted on every
/// checkpoint). Owned copies of the few fields it needs.
pub struct MetaSummary {
    pub exe: Vec<u8>,
    pub sequence: u64,
    pub created_unix_ns: u64,
    /// The parent image's file name, for an incremental image.
    pub parent: Option<Vec<u8>>,
}

/// Reads the header and the META record of `path` only (see
/// [`MetaSummary`]); a regular file only, opened without following a
/// symlink at its last component.
pub fn peek_meta(path: &Path) -> Result<MetaSummary, ReadError> {
    let (f, md) = open_regular(path, libc::O_NOFOLLOW)?;
    let mut reader = ImageReader::new(BufReader::with_capacity(8 << 10, f), Some(md.len()))?;
    let minor = reader.header.minor;
    let payload = match reader.next_record()? {
        Some(r) if r.kind == RecordKind::Meta => r.payload,
        Some(r) => {
            return Err(FormatError::Order {
                offset: r.offset,
                found: r.kind.name(),
                expected: RecordKind::Meta.name(),
            })
        }
        None => return Err(FormatError::Truncated { offset: md.len() }),
    };
    let mut d = Decoder::new(&payload);
    let meta = Meta::decode(&mut d, minor).map_err(malformed(0, "META"))?;
    d.finish().map_err(malformed(0, "META"))?;
    Ok(MetaSummary {
        exe: meta.exe_path.to_vec(),
        sequence: meta.sequence,
        created_unix_ns: meta.created_unix_ns,
        parent: meta.parent_image().map(|p| p.name.to_vec()),
    })
}

impl ImageFile {
    /// Opens `path`, checks the header and reads and validates the META,
    /// REGIONS, KERNEL and THREADS records. When `SELFCKPT_KEY` is set the
    /// image must carry a MAC made with that key (checked at END).
    pub fn open(path: &Path) -> Result<ImageFile, ReadError> {
        Self::open_with_key(path, MacKey::from_env().as_ref())
    }

    /// Like [`ImageFile::open`] with an explicit key (None: MAC not checked).
    pub fn open_with_key(path: &Path, key: Option<&MacKey>) -> Result<ImageFile, ReadError> {
        use std::os::unix::fs::MetadataExt;
        let (f, md) = open_regular(path, 0)?;
        // A small buffer: payloads of about a chunk (up to 1 MiB) are then
        // read straight into their Vec instead of through the buffer.
        let positioned = f.try_clone().ok();
        let src: Source = Box::new(BufReader::with_capacity(64 << 10, f));
        let mut img = Self::from_source(path, src, md.len(), key)?;
        img.owner_mode = Some((md.uid(), md.mode()));
        img.file = positioned;
        Ok(img)
    }

    /// Reads an image held in memory (tests, fuzzing). `label` names it in
    /// errors.
    pub fn from_bytes(
        label: &Path,
        bytes: Vec<u8>,
        key: Option<&MacKey>,
    ) -> Result<ImageFile, ReadError> {
        let len = bytes.len() as u64;
        Self::from_source(label, Box::new(std::io::Cursor::new(bytes)), len, key)
    }

    fn from_source(
        path: &Path,
        src: Source,
        file_len: u64,
        key: Option<&MacKey>,
    ) -> Result<ImageFile, ReadError> {
        let mut reader = ImageReader::with_key(src, Some(file_len), key)?;
        let header = reader.header;
        let mut next = |want: RecordKind| -> Result<Vec<u8>, ReadError> {
            match reader.next_record()? {
                Some(r) if r.kind == want => Ok(r.payload),
                Some(r) => Err(FormatError::Order {
                    offset: r.offset,
                    found: r.kind.name(),
                    expected: want.name(),
                }),
                None => Err(FormatError::Truncated { offset: file_len }),
            }
        };
        let meta = next(RecordKind::Meta)?;
        let regions = next(RecordKind::Regions)?;
        let kernel = next(RecordKind::Kernel)?;
        let threads = next(RecordKind::Threads)?;
        let img = ImageFile {
            path: path.to_path_buf(),
            file_len,
            header,
            owner_mode: None,
            reader,
            file: None,
            end_checksum: None,
            meta,
            regions,
            kernel,
            threads,
        };
        img.view()?;
        Ok(img)
    }

    /// Authenticates the whole file under `key` now (see
    /// [`super::mac::authenticate_file`]); an in-memory image is read
    /// whole by the reader, which checks its MAC at END.
    pub fn authenticate(&self, key: &MacKey) -> Result<(), ReadError> {
        match &self.file {
            Some(f) => super::mac::authenticate_file(f, key),
            None => Ok(()),
        }
    }

    /// After [`ImageFile::read_to_end`]: whether a MAC record followed END
    /// (checked against the key when one was given).
    pub fn mac_present(&self) -> bool {
        self.reader.mac_present()
    }

    /// Decodes and validates the metadata.
    pub fn view(&self) -> Result<ImageView<'_>, ReadError> {
        let page = self.header.page_size as u64;
        let mut d = Decoder::new(&self.meta);
        let meta = Meta::decode(&mut d, self.header.minor).map_err(malformed(0, "META"))?;
        d.finish().map_err(malformed(0, "META"))?;
        if let Some(role) = meta
            .session_role
            .filter(|&r| r > super::model::SESSION_LEADER)
        {
            return Err(invalid(format!(
                "META session role {role} is not 0, 1 or 2"
            )));
        }

        let mut d = Decoder::new(&self.regions);
        let n = d
            .count(Region::MIN_ENCODED_LEN)
            .map_err(malformed(0, "REGIONS"))?;
        let regions = (0..n)
            .map(|_| Region::decode(&mut d))
            .collect::<Result<Vec<_>, _>>()
            .map_err(malformed(0, "REGIONS"))?;
        d.finish().map_err(malformed(0, "REGIONS"))?;
        let mut prev_end = 0u64;
        for r in &regions {
            if r.start % page != 0
                || r.end % page != 0
                || r.start >= r.end
                || r.end > USER_ADDRESS_LIMIT
            {
                return Err(invalid(format!(
                    "region {:#x}-{:#x} is not a valid page range",
                    r.start, r.end
                )));
            }
            if r.start < prev_end {
                return Err(invalid(format!(
                    "region {:#x}-{:#x} overlaps the one before it",
                    r.start, r.end
                )));
            }
            let Some(kind) = crate::capture::maps::RegionKind::from_u32(r.kind) else {
                return Err(invalid(format!(
                    "region {:#x}-{:#x} has unknown kind {}",
                    r.start, r.end, r.kind
                )));
            };
            if r.prot & !7 != 0 {
                return Err(invalid(format!(
                    "region {:#x}-{:#x} has unknown protection bits {:#x}",
                    r.start, r.end, r.prot
                )));
            }
            let file_backed = matches!(
                kind,
                crate::capture::maps::RegionKind::PrivateFile
                    | crate::capture::maps::RegionKind::SharedFile
            );
            if file_backed && (!r.path.starts_with(b"/") || r.path.contains(&0)) {
                return Err(invalid(format!(
                    "region {:#x}-{:#x} maps a file without an absolute path",
                    r.start, r.end
                )));
            }
            if file_backed && r.offset % page != 0 {
                return Err(invalid(format!(
                    "region {:#x}-{:#x} has an unaligned file offset {:#x}",
                    r.start, r.end, r.offset
                )));
            }
            prev_end = r.end;
        }

        let mut d = Decoder::new(&self.kernel);
        let kernel =
            KernelState::decode(&mut d, self.header.minor).map_err(malformed(0, "KERNEL"))?;
        check_kernel(&kernel)?;

        let mut d = Decoder::new(&self.threads);
        let n = d
            .count(ThreadState::ENCODED_LEN)
            .map_err(malformed(0, "THREADS"))?;
        let threads = (0..n)
            .map(|_| ThreadState::decode(&mut d))
            .collect::<Result<Vec<_>, _>>()
            .map_err(malformed(0, "THREADS"))?;
        let thread_pending = if self.header.minor >= PENDING_SIGNALS_SINCE_MINOR {
            let listed = d
                .count(SignalSet::ENCODED_LEN)
                .map_err(malformed(0, "THREADS"))?;
            if listed != threads.len() {
                return Err(invalid(format!(
                    "THREADS lists pending signals for {listed} threads but holds {} threads",
                    threads.len()
                )));
            }
            (0..listed)
                .map(|_| SignalSet::decode(&mut d))
                .collect::<Result<Vec<_>, _>>()
                .map_err(malformed(0, "THREADS"))?
        } else {
            vec![SignalSet::EMPTY; threads.len()]
        };
        d.finish().map_err(malformed(0, "THREADS"))?;
        for (t, set) in threads.iter().zip(&thread_pending) {
            check_pending(*set, &format!("thread {}", t.tid))?;
        }
        if threads.is_empty() {
            return Err(invalid("the image holds no thread".into()));
        }
        if threads.len() > crate::capture::park::MAX_THREADS {
            return Err(invalid(format!(
                "the image holds {} threads (at most {})",
                threads.len(),
                crate::capture::park::MAX_THREADS
            )));
        }
        let inside = |a: u64| regions.iter().any(|r| r.start <= a && a < r.end);
        for t in &threads {
            if !inside(t.frame) || !inside(t.entry_sp.wrapping_sub(8)) || !inside(t.slot) {
                return Err(invalid(format!(
                    "thread {}: its signal frame or slot lies outside the image",
                    t.tid
                )));
            }
        }
        if let Some(t) = threads
            .iter()
            .find(|t| crate::image::model::ThreadRole::from_u32(t.role).is_none())
        {
            return Err(invalid(format!(
                "thread {} has unknown role {}",
                t.tid, t.role
            )));
        }
        if !meta.exe_path.starts_with(b"/") || meta.exe_path.contains(&0) {
            return Err(invalid(
                "the executable's path is not an absolute path".into(),
            ));
        }
        if !inside(meta.restart_entry) || !inside(meta.restart_mailbox) {
            return Err(invalid(
                "the restart entry point lies outside the image".into(),
            ));
        }
        Ok(ImageView {
            meta,
            regions,
            kernel,
            threads,
            thread_pending,
        })
    }

    /// Reads every remaining record: hands `f` each chunk (checksum
    /// verified, runs checked against the regions), then checks END.
    pub fn for_each_chunk(
        mut self,
        f: impl FnMut(Chunk) -> Result<(), ReadError>,
    ) -> Result<EndRecord, ReadError> {
        self.read_to_end(f)
    }

    /// As [`ImageFile::for_each_chunk`], but the chunks' data is not read
    /// here: each chunk's [`Chunk::place`] reads it with positioned reads
    /// straight into its destination and verifies its checksum, so several
    /// threads can read, check and decode chunks at once while this one
    /// only walks the framing. Everything else is checked here as in
    /// `for_each_chunk`. With a MAC key, or for an image in memory, it is
    /// `for_each_chunk` (the MAC needs every byte in order).
    pub fn for_each_chunk_deferred(
        mut self,
        f: impl FnMut(Chunk) -> Result<(), ReadError>,
    ) -> Result<EndRecord, ReadError> {
        if let Some(file) = self.file.take() {
            // Refused under a MAC key: the records are then read whole.
            self.reader.skim(std::sync::Arc::new(file));
        }
        self.read_to_end(f)
    }

    /// As [`ImageFile::for_each_chunk`], keeping the image for
    /// [`ImageFile::mac_present`].
    pub fn read_to_end(
        &mut self,
        mut f: impl FnMut(Chunk) -> Result<(), ReadError>,
    ) -> Result<EndRecord, ReadError> {
        let page = self.header.page_size as u64;
        let view = self.view()?;
        let bounds: Vec<(u64, u64)> = view.regions.iter().map(|r| (r.start, r.end)).collect();
        let stores: Vec<bool> = view.regions.iter().map(stores_pages).collect();
        drop(view);
        let mut stored = StoredPages::default();
        loop {
            // Skips chunk payloads only if `for_each_chunk_deferred` set
            // the reader skimming.
            let rec = self
                .reader
                .next_record_skipping_chunks()?
                .ok_or(FormatError::Truncated {
                    offset: self.file_len,
                })?;
            let skipped = rec.skipped.clone();
            let chunk = match (rec.kind, rec.skipped) {
                (RecordKind::End, _) => {
                    let mut d = Decoder::new(&rec.payload);
                    let end = EndRecord::decode(&mut d, self.header.minor)
                        .map_err(malformed(rec.offset, "END"))?;
                    check_region_present(&end, &bounds, page)?;
                    self.end_checksum = Some(super::format::record_checksum(
                        RecordKind::End,
                        &rec.payload,
                    ));
                    return Ok(end);
                }
                (RecordKind::Chunk, Some(sk)) => skimmed_chunk(rec.offset, sk, &bounds, page),
                (RecordKind::Chunk, None) => parse_chunk(rec.offset, rec.payload, &bounds, page),
                (other, _) => {
                    return Err(FormatError::Order {
                        offset: rec.offset,
                        found: other.name(),
                        expected: "CHUNK",
                    })
                }
            };
            let checked = chunk.and_then(|chunk| {
                if !stores[chunk.header.region as usize] {
                    let (start, end) = bounds[chunk.header.region as usize];
                    return Err(invalid(format!(
                        "chunk at byte {}: region {start:#x}-{end:#x} is of a kind that stores no pages",
                        chunk.offset
                    )));
                }
                stored.add(&chunk)?;
                Ok(chunk)
            });
            match (checked, skipped) {
                (Ok(chunk), _) => f(chunk)?,
                // A skimmed chunk's head is checked before its checksum:
                // a damaged record is called damaged, as when read whole.
                (Err(e), Some(sk)) => return Err(record_damage(rec.offset, &sk).unwrap_or(e)),
                (Err(e), None) => return Err(e),
            }
        }
    }
}

/// Whether pages of this region may appear in chunks (see the table of
/// region kinds in docs/IMAGE_FORMAT.md).
fn stores_pages(r: &Region) -> bool {
    use crate::capture::maps::RegionKind::*;
    match crate::capture::maps::RegionKind::from_u32(r.kind) {
        Some(Anon | Heap | Stack | PrivateFile | SharedAnon | SysvShm) => true,
        // A shared file that was gone at the checkpoint: a shared object
        // whose contents the image holds.
        Some(SharedFile) => r.path.ends_with(b" (deleted)"),
        _ => false,
    }
}

/// Chunks come in increasing (region, page) order (docs/IMAGE_FORMAT.md):
/// each run starts at or after the end of the previous run, in this chunk
/// or an earlier one of the same region, and no chunk goes back to a lower
/// region. So no page is stored twice, which bounds the decoding work of
/// any image by its address space, and a restarter's decoder threads never
/// write the same memory. The restarter relies on this reader's check.
#[derive(Default)]
struct StoredPages {
    /// (region, page) just past the last run seen.
    next: (u32, u64),
}

impl StoredPages {
    fn add(&mut self, c: &Chunk) -> Result<(), ReadError> {
        let region = c.header.region;
        let mut at = match region.cmp(&self.next.0) {
            std::cmp::Ordering::Equal => self.next.1,
            std::cmp::Ordering::Greater => 0,
            std::cmp::Ordering::Less => u64::MAX,
        };
        for run in &c.runs {
            if run.first_page < at {
                return Err(invalid(format!(
                    "chunk at byte {}: page {} of region {region} is stored twice or out of order (chunks come in increasing region and page order)",
                    c.offset, run.first_page
                )));
            }
            at = run.first_page + run.pages as u64;
        }
        self.next = (region, at);
        Ok(())
    }
}

/// END's bytes present per region (format 1.2) against REGIONS: one
/// figure per region, each a whole number of pages no larger than the
/// region, adding up to END's `bytes_present`.
fn check_region_present(
    end: &EndRecord,
    bounds: &[(u64, u64)],
    page: u64,
) -> Result<(), ReadError> {
    let Some(present) = &end.region_present else {
        return Ok(());
    };
    if present.len() != bounds.len() {
        return Err(invalid(format!(
            "END lists bytes present for {} regions, REGIONS holds {}",
            present.len(),
            bounds.len()
        )));
    }
    for (&bytes, &(start, stop)) in present.iter().zip(bounds) {
        let mapped = stop - start;
        if bytes > mapped {
            return Err(invalid(format!(
                "END: region {start:#x}-{stop:#x} has {bytes} bytes present, more than its {mapped} bytes mapped"
            )));
        }
        if bytes % page != 0 {
            return Err(invalid(format!(
                "END: region {start:#x}-{stop:#x} has {bytes} bytes present, not a whole number of {page}-byte pages"
            )));
        }
    }
    // Each figure is at most its region's size and regions do not overlap
    // below 2^56: the sum cannot overflow.
    let sum: u64 = present.iter().sum();
    if sum != end.bytes_present {
        return Err(invalid(format!(
            "END: bytes present per region add up to {sum}, bytes_present says {}",
            end.bytes_present
        )));
    }
    Ok(())
}

/// Bounds of the process state a restart hands to the kernel.
fn check_kernel(k: &KernelState) -> Result<(), ReadError> {
    let mm = &k.process.mm;
    let pairs = [
        ("code", mm.start_code, mm.end_code),
        ("data", mm.start_data, mm.end_data),
        ("brk", mm.start_brk, mm.brk),
        ("arguments", mm.arg_start, mm.arg_end),
        ("environment", mm.env_start, mm.env_end),
        ("stack", mm.start_stack, mm.start_stack),
    ];
    for (what, lo, hi) in pairs {
        if lo > hi || hi > USER_ADDRESS_LIMIT {
            return Err(invalid(format!(
                "the {what} range {lo:#x}-{hi:#x} of the mm layout is invalid"
            )));
        }
    }
    check_mm_map(mm)?;
    let auxv = k.process.auxv.len();
    if auxv > MAX_AUXV_LEN || auxv % 16 != 0 {
        return Err(invalid(format!("the saved auxv is {auxv} bytes")));
    }
    if k.process.umask & !0o777 != 0 {
        return Err(invalid(format!("umask {:#o} is invalid", k.process.umask)));
    }
    for s in &k.sigactions {
        if s.signo == 0 || s.signo > MAX_SIGNAL {
            return Err(invalid(format!("signal action for signal {}", s.signo)));
        }
        if s.signo == libc::SIGKILL as u32 || s.signo == libc::SIGSTOP as u32 {
            return Err(invalid(format!(
                "signal action for {} ({}): its action cannot be changed, so none is ever recorded",
                SignalSet::name(s.signo as i32),
                s.signo
            )));
        }
    }
    for f in &k.fds {
        if f.fd < 0 {
            return Err(invalid(format!("file descriptor {}", f.fd)));
        }
        if crate::image::model::FdKind::from_u32(f.kind).is_none() {
            return Err(invalid(format!("fd {} has unknown kind {}", f.fd, f.kind)));
        }
    }
    check_itimers(&k.itimers)?;
    check_pending(k.pending, "the process")?;
    check_events(k)?;
    k.objects.check().map_err(invalid)?;
    // A pipe's descriptors are pipes in the descriptor list, a deleted
    // file's regular files, a lock's in the list.
    for o in &k.objects.items {
        use crate::image::model::FdKind;
        use crate::kstate::objects::Object;
        let (fds, kind, what): (Vec<i32>, _, _) = match o {
            Object::Pipe(p) => (p.fds().collect(), Some(FdKind::Pipe), "a pipe"),
            Object::DeletedFile(x) => (x.fds().collect(), Some(FdKind::Regular), "a regular file"),
            Object::Lock(l) => (vec![l.fd], None, "a descriptor"),
            Object::Description(x) => (x.fds().collect(), None, "a descriptor"),
            _ => continue,
        };
        for fd in fds {
            if !k
                .fds
                .iter()
                .any(|f| f.fd == fd && kind.is_none_or(|k| f.kind == k as u32))
            {
                return Err(invalid(format!(
                    "fd {fd} of a kernel object is not {what} in the descriptor list"
                )));
            }
        }
    }
    let events: std::collections::HashSet<i32> = k.events.fds().into_iter().collect();
    let mut seen = std::collections::HashSet::new();
    for fd in k.objects.fds() {
        if events.contains(&fd) || !seen.insert(fd) {
            return Err(invalid(format!(
                "fd {fd} is made anew by two kernel objects"
            )));
        }
    }
    Ok(())
}

/// The event and timer descriptors (format 1.6): each at a number the
/// descriptor list holds as an `other`, once; values the kernel can have.
fn check_events(k: &KernelState) -> Result<(), ReadError> {
    use crate::kstate::{epoll, eventfd, timerfd};
    let ev = &k.events;
    let others: std::collections::HashSet<i32> = k
        .fds
        .iter()
        .filter(|f| f.kind == crate::image::model::FdKind::Other as u32)
        .map(|f| f.fd)
        .collect();
    let mut seen = std::collections::HashSet::new();
    for fd in ev.fds() {
        if !others.contains(&fd) {
            return Err(invalid(format!(
                "event descriptor fd {fd} is not in the descriptor list as an other"
            )));
        }
        if !seen.insert(fd) {
            return Err(invalid(format!("event descriptor fd {fd} is listed twice")));
        }
    }
    let flags_ok =
        |f: u32| f & !((libc::O_ACCMODE | libc::O_NONBLOCK | libc::O_CLOEXEC) as u32) == 0;
    let bad_flags = |what: &str, fd: i32, f: u32| {
        invalid(format!(
            "fd {fd} {what} has flags {f:#o}, which it cannot have"
        ))
    };
    for x in &ev.eventfds {
        if !flags_ok(x.flags) {
            return Err(bad_flags("eventfd", x.fd, x.flags));
        }
        if x.count == u64::MAX {
            return Err(invalid(format!(
                "fd {} eventfd has count {:#x}, above the largest an eventfd holds",
                x.fd, x.count
            )));
        }
        if x.semaphore > eventfd::SEMAPHORE_UNKNOWN {
            return Err(invalid(format!(
                "fd {} eventfd has semaphore mode {}",
                x.fd, x.semaphore
            )));
        }
    }
    for x in &ev.timerfds {
        if !flags_ok(x.flags) {
            return Err(bad_flags("timerfd", x.fd, x.flags));
        }
        if !timerfd::CLOCKS.contains(&x.clock) {
            return Err(invalid(format!(
                "fd {} timerfd has clock {}",
                x.fd, x.clock
            )));
        }
        if x.settime_flags & !timerfd::SETTIME_FLAGS != 0 {
            return Err(invalid(format!(
                "fd {} timerfd has settime flags {:#o}",
                x.fd, x.settime_flags
            )));
        }
        for (name, t) in [("time", x.value), ("interval", x.interval)] {
            if t.nsec >= 1_000_000_000 || t.sec > MAX_TIMER_SECS {
                return Err(invalid(format!(
                    "fd {} timerfd has {name} {}s {}ns, which a timer cannot hold",
                    x.fd, t.sec, t.nsec
                )));
            }
        }
    }
    for x in &ev.signalfds {
        if !flags_ok(x.flags) {
            return Err(bad_flags("signalfd", x.fd, x.flags));
        }
    }
    for x in &ev.epolls {
        if !flags_ok(x.flags) {
            return Err(bad_flags("epoll", x.fd, x.flags));
        }
        if x.truncated > 1 {
            return Err(invalid(format!(
                "fd {} epoll has truncation mark {}",
                x.fd, x.truncated
            )));
        }
        for r in &x.registrations {
            if r.tfd < 0 || r.tfd == x.fd {
                return Err(invalid(format!(
                    "fd {} epoll watches descriptor {}",
                    x.fd, r.tfd
                )));
            }
            if r.state >= epoll::TFD_STATES {
                return Err(invalid(format!(
                    "fd {} epoll registration of fd {} has state {}",
                    x.fd, r.tfd, r.state
                )));
            }
        }
    }
    Ok(())
}

/// Lowest address the kernel lets a process use (`vm.mmap_min_addr`;
/// 65536 when it cannot be read) and the end of the user address space
/// (47-bit on x86_64, 48-bit on aarch64; 56-bit if this machine has
/// 5-level page tables): the bounds PR_SET_MM_MAP checks each address of
/// the mm layout against.
fn mm_limits() -> (u64, u64) {
    static LIMITS: std::sync::OnceLock<(u64, u64)> = std::sync::OnceLock::new();
    *LIMITS.get_or_init(|| {
        let min = std::fs::read_to_string("/proc/sys/vm/mmap_min_addr")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(65536u64);
        let page = crate::capture::sys::page_size() as u64;
        let la57 = cfg!(target_arch = "x86_64")
            && std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|c| c.contains(" la57"));
        let bits = if la57 {
            56
        } else if cfg!(target_arch = "aarch64") {
            48
        } else {
            47
        };
        (min, (1u64 << bits) - page)
    })
}

/// What the restorer's PR_SET_MM_MAP will be given, checked as the kernel
/// checks it (`validate_prctl_map_addr`): every address at or above
/// `vm.mmap_min_addr` and below the end of the user address space, the
/// code range not empty, the data and brk ranges within RLIMIT_DATA. A
/// failure there comes after the point of no return, so verify and
/// restart refuse it here.
fn check_mm_map(mm: &super::model::MmLayout) -> Result<(), ReadError> {
    let (min, max) = mm_limits();
    let fields = [
        ("start_code", mm.start_code),
        ("end_code", mm.end_code),
        ("start_data", mm.start_data),
        ("end_data", mm.end_data),
        ("start_brk", mm.start_brk),
        ("brk", mm.brk),
        ("start_stack", mm.start_stack),
        ("arg_start", mm.arg_start),
        ("arg_end", mm.arg_end),
        ("env_start", mm.env_start),
        ("env_end", mm.env_end),
    ];
    for (name, v) in fields {
        if v < min || v >= max {
            return Err(invalid(format!(
                "the mm layout's {name} {v:#x} lies outside the user address space ({min:#x}-{max:#x})"
            )));
        }
    }
    if mm.start_code >= mm.end_code {
        return Err(invalid(format!(
            "the mm layout's code range {:#x}-{:#x} is empty",
            mm.start_code, mm.end_code
        )));
    }
    let mut lim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: getrlimit writes one struct rlimit.
    unsafe { libc::getrlimit(libc::RLIMIT_DATA, &mut lim) };
    let data = (mm.brk - mm.start_brk).saturating_add(mm.end_data - mm.start_data);
    if lim.rlim_cur != libc::RLIM_INFINITY && data > lim.rlim_cur {
        return Err(invalid(format!(
            "the program's data and heap ({data} bytes) exceed this process's RLIMIT_DATA ({} bytes)",
            lim.rlim_cur
        )));
    }
    Ok(())
}

/// A pending set may hold any signal 1..=64 (every bit of the set names
/// one) but SIGKILL and SIGSTOP: no thread can block them, so they are
/// never pending at a checkpoint, and raising them would end or stop the
/// restarted program.
fn check_pending(set: SignalSet, whose: &str) -> Result<(), ReadError> {
    match [libc::SIGKILL, libc::SIGSTOP]
        .into_iter()
        .find(|&s| set.contains(s))
    {
        Some(sig) => Err(invalid(format!(
            "{whose} has {} ({sig}) pending: it cannot be blocked, so it is never pending at a checkpoint",
            SignalSet::name(sig)
        ))),
        None => Ok(()),
    }
}

/// Every interval timer's time left and period must be a valid `struct
/// timeval` the kernel can hold: microseconds below a second, seconds at
/// most [`MAX_TIMER_SECS`].
fn check_itimers(timers: &IntervalTimers) -> Result<(), ReadError> {
    for (kind, t) in timers.iter() {
        for (field, v) in [("interval", t.interval), ("value", t.value)] {
            if v.usec >= 1_000_000 {
                return Err(invalid(format!(
                    "the {} interval timer's {field} has {} microseconds (at most 999999)",
                    kind.name(),
                    v.usec
                )));
            }
            if v.sec > MAX_TIMER_SECS {
                return Err(invalid(format!(
                    "the {} interval timer's {field} is {} seconds (at most {MAX_TIMER_SECS})",
                    kind.name(),
                    v.sec
                )));
            }
        }
    }
    Ok(())
}

fn parse_chunk(
    offset: u64,
    payload: Vec<u8>,
    bounds: &[(u64, u64)],
    page: u64,
) -> Result<Chunk, ReadError> {
    let (header, runs, data_at) =
        parse_chunk_head(offset, &payload, payload.len() as u64, bounds, page)?;
    Ok(Chunk {
        offset,
        header,
        runs,
        body: Body::Read { payload, data_at },
    })
}

/// A skimmed chunk: reads its head (chunk header and runs) at the record
/// at `offset`, checks it, and leaves the data in the file.
fn skimmed_chunk(
    offset: u64,
    sk: super::format::Skipped,
    bounds: &[(u64, u64)],
    page: u64,
) -> Result<Chunk, ReadError> {
    let body = offset + super::format::FRAME_LEN as u64;
    let read = |buf: &mut [u8], at: u64| pread_exact(&sk.file, buf, at);
    let fixed = ChunkHeader::ENCODED_LEN;
    if sk.len < fixed as u64 {
        return Err(invalid(format!(
            "chunk at byte {offset}: {} bytes cannot hold a chunk header",
            sk.len
        )));
    }
    let mut head = vec![0u8; fixed];
    read(&mut head, body)?;
    let n_runs = ChunkHeader::decode(&mut Decoder::new(&head))
        .map_err(malformed(offset, "CHUNK"))?
        .n_runs as u64;
    // Every run holds at least a page: more runs than a chunk's largest
    // size in pages is malformed, whatever the record's length.
    let runs_len = n_runs * ChunkHeader::RUN_LEN as u64;
    if n_runs > MAX_CHUNK_RAW / page || fixed as u64 + runs_len > sk.len {
        return Err(invalid(format!(
            "chunk at byte {offset}: {n_runs} runs do not fit the record"
        )));
    }
    head.resize(fixed + runs_len as usize, 0);
    read(&mut head[fixed..], body + fixed as u64)?;
    let (header, runs, data_at) = parse_chunk_head(offset, &head, sk.len, bounds, page)?;
    Ok(Chunk {
        offset,
        header,
        runs,
        body: Body::InFile(InFile {
            file: sk.file,
            frame: sk.frame,
            head,
            sum: sk.sum,
            at: body + data_at as u64,
            len: (sk.len - data_at as u64) as usize,
        }),
    })
}

/// The checksum error of the skipped record at `offset`, if its payload
/// does not match its checksum (or cannot be read whole).
fn record_damage(offset: u64, sk: &super::format::Skipped) -> Option<ReadError> {
    let mut payload = vec![0u8; usize::try_from(sk.len).ok()?];
    let body = offset + super::format::FRAME_LEN as u64;
    let ok = pread_exact(&sk.file, &mut payload, body).is_ok() && {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(&sk.frame);
        h.update(&payload);
        h.digest() == sk.sum
    };
    (!ok).then_some(FormatError::RecordChecksum {
        offset,
        kind: "CHUNK",
    })
}

/// Decodes and checks a chunk's header and runs from the start of its
/// payload (`bytes`: at least the head; `payload_len`: the whole payload's
/// length). Returns them and where the stored data starts.
fn parse_chunk_head(
    offset: u64,
    bytes: &[u8],
    payload_len: u64,
    bounds: &[(u64, u64)],
    page: u64,
) -> Result<(ChunkHeader, Vec<ChunkRun>, usize), ReadError> {
    let bad = malformed(offset, "CHUNK");
    let mut d = Decoder::new(bytes);
    let header = ChunkHeader::decode(&mut d).map_err(&bad)?;
    let n = header.n_runs as usize;
    let left = payload_len.saturating_sub(ChunkHeader::ENCODED_LEN as u64);
    if (n as u64).saturating_mul(ChunkHeader::RUN_LEN as u64) > left {
        return Err(invalid(format!(
            "chunk at byte {offset}: {n} runs do not fit the record"
        )));
    }
    let runs = (0..n)
        .map(|_| ChunkRun::decode(&mut d))
        .collect::<Result<Vec<_>, _>>()
        .map_err(&bad)?;
    let data_at = d.position();
    let data_len = payload_len - data_at as u64;
    let (start, end) = *bounds.get(header.region as usize).ok_or_else(|| {
        invalid(format!(
            "chunk at byte {offset} names region {} of {}",
            header.region,
            bounds.len()
        ))
    })?;
    let pages_in_region = (end - start) / page;
    let mut total = 0u64;
    for r in &runs {
        if r.pages == 0
            || r.first_page
                .checked_add(r.pages as u64)
                .is_none_or(|e| e > pages_in_region)
        {
            return Err(invalid(format!(
                "chunk at byte {offset}: a run lies outside region {:#x}-{:#x}",
                start, end
            )));
        }
        total = total.saturating_add(r.pages as u64 * page);
    }
    if total > MAX_CHUNK_RAW {
        return Err(invalid(format!(
            "chunk at byte {offset} decodes to {total} bytes (limit {MAX_CHUNK_RAW})"
        )));
    }
    if total != header.raw_len as u64 {
        return Err(invalid(format!(
            "chunk at byte {offset}: runs hold {total} bytes, header says {}",
            header.raw_len
        )));
    }
    match header.encoding {
        ENCODING_RAW if data_len != total => {
            return Err(invalid(format!(
                "chunk at byte {offset}: raw data is {data_len} bytes, expected {total}"
            )))
        }
        ENCODING_RAW | ENCODING_ZSTD => {}
        e => {
            return Err(invalid(format!(
                "chunk at byte {offset}: unknown encoding {e}"
            )))
        }
    }
    Ok((header, runs, data_at))
}

impl Chunk {
    /// How many bytes the chunk stores (compressed or raw).
    pub fn stored_len(&self) -> usize {
        match &self.body {
            Body::Read { payload, data_at } => payload.len() - data_at,
            Body::InFile(f) => f.len,
        }
    }

    /// Decodes the chunk's pages into `out` (exactly `raw_len` bytes).
    pub fn decode_into(&self, out: &mut [u8]) -> Result<(), ReadError> {
        self.place(&mut [out], &mut Vec::new())
    }

    /// Decodes the chunk's pages into `dsts`, one slice per run in order
    /// (each exactly the run's size). A skimmed chunk is read here: raw
    /// data straight into `dsts`, compressed data into `buf` (reused
    /// between calls, grown as needed); then its checksum is compared, and
    /// compressed data is only decompressed once it matched. On error,
    /// `dsts` may hold anything.
    pub fn place(&self, dsts: &mut [&mut [u8]], buf: &mut Vec<u8>) -> Result<(), ReadError> {
        let data: &[u8] = match &self.body {
            Body::Read { payload, data_at } => &payload[*data_at..],
            Body::InFile(f) => {
                let mut h = xxhash_rust::xxh3::Xxh3::new();
                h.update(&f.frame);
                h.update(&f.head);
                if self.header.encoding == ENCODING_RAW {
                    let mut at = f.at;
                    for d in dsts.iter_mut() {
                        pread_exact(&f.file, d, at)?;
                        h.update(d);
                        at += d.len() as u64;
                    }
                    return self.check_sum(f, h.digest());
                }
                if buf.len() < f.len {
                    buf.resize(f.len, 0);
                }
                let data = &mut buf[..f.len];
                pread_exact(&f.file, data, f.at)?;
                h.update(data);
                self.check_sum(f, h.digest())?;
                data
            }
        };
        let cannot = |e: String| {
            invalid(format!(
                "chunk at byte {}: cannot decompress: {e}",
                self.offset
            ))
        };
        match (self.header.encoding, dsts) {
            (ENCODING_RAW, dsts) => {
                let mut at = 0usize;
                for d in dsts.iter_mut() {
                    let n = d.len();
                    d.copy_from_slice(&data[at..at + n]);
                    at += n;
                }
                Ok(())
            }
            (_, [one]) => crate::capture::compress::decompress_exact(data, one).map_err(cannot),
            (_, many) => crate::capture::compress::decompress_scatter(data, many).map_err(cannot),
        }
    }

    fn check_sum(&self, f: &InFile, got: u64) -> Result<(), ReadError> {
        if got == f.sum {
            Ok(())
        } else {
            Err(FormatError::RecordChecksum {
                offset: self.offset,
                kind: "CHUNK",
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::model::{IntervalTimer, TimeVal, TimerKind};

    #[test]
    fn test_bad_interval_timer() {
        let tv = |sec, usec| TimeVal { sec, usec };
        let timer = |interval, value| IntervalTimer { interval, value };
        let (ok, usec, sec) = (tv(1, 999_999), tv(0, 1_000_000), tv(MAX_TIMER_SECS + 1, 0));
        let longest = tv(MAX_TIMER_SECS, 854_775);
        let cases = [
            ("disarmed", TimerKind::Real, IntervalTimer::default(), None),
            ("longest", TimerKind::Prof, timer(longest, longest), None),
            (
                "value usec",
                TimerKind::Real,
                timer(ok, usec),
                Some("real interval timer's value has 1000000 microseconds"),
            ),
            (
                "interval usec",
                TimerKind::Virtual,
                timer(usec, ok),
                Some("virtual interval timer's interval has 1000000"),
            ),
            (
                "value sec",
                TimerKind::Prof,
                timer(ok, sec),
                Some("prof interval timer's value is 9223372037 seconds"),
            ),
            (
                "interval sec",
                TimerKind::Real,
                timer(sec, ok),
                Some("real interval timer's interval is 9223372037 seconds"),
            ),
        ];
        for (name, kind, t, refused) in cases {
            let mut timers = IntervalTimers::default();
            timers.0[kind as usize] = t;
            match (check_itimers(&timers), refused) {
                (Ok(()), None) => {}
                (Err(e), Some(why)) => assert!(e.to_string().contains(why), "{name}: {e}"),
                (got, _) => panic!("{name}: {got:?}"),
            }
        }
    }

    #[test]
    fn test_bad_pending_signal() {
        let set = |sigs: &[i32]| sigs.iter().fold(SignalSet::EMPTY, |s, &n| s.with(n));
        let cases = [
            ("empty", set(&[]), None),
            ("blockable", set(&[1, 10, 12, 32, 34, 64]), None),
            ("sigkill", set(&[12, 9]), Some("has SIGKILL (9) pending")),
            ("sigstop", set(&[19]), Some("has SIGSTOP (19) pending")),
        ];
        for (name, s, refused) in cases {
            match (check_pending(s, "thread 7"), refused) {
                (Ok(()), None) => {}
                (Err(e), Some(why)) => {
                    let m = e.to_string();
                    assert!(m.contains("thread 7") && m.contains(why), "{name}: {m}");
                }
                (got, _) => panic!("{name}: {got:?}"),
            }
        }
    }

    #[test]
    fn test_bad_end_region_present() {
        // Two regions: four pages, then one.
        let bounds = [(0x10000, 0x14000), (0x20000, 0x21000)];
        let end = |present: Option<Vec<u64>>, total: u64| EndRecord {
            bytes_present: total,
            region_present: present,
            ..EndRecord::default()
        };
        let cases = [
            ("fits", Some(vec![0x4000, 0x1000]), 0x5000, None),
            ("unknown before 1.2", None, 0x5000, None),
            (
                "one short",
                Some(vec![0x1000]),
                0x1000,
                Some("for 1 regions"),
            ),
            ("one extra", Some(vec![0, 0, 0]), 0, Some("REGIONS holds 2")),
            (
                "above mapped",
                Some(vec![0, 0x2000]),
                0x2000,
                Some("more than"),
            ),
            (
                "part of a page",
                Some(vec![0x800, 0]),
                0x800,
                Some("whole number"),
            ),
            (
                "sum",
                Some(vec![0x1000, 0x1000]),
                0x3000,
                Some("add up to 8192"),
            ),
        ];
        for (name, present, total, refused) in cases {
            let got = check_region_present(&end(present, total), &bounds, 4096);
            match (got, refused) {
                (Ok(()), None) => {}
                (Err(e), Some(why)) => assert!(e.to_string().contains(why), "{name}: {e}"),
                (got, _) => panic!("{name}: {got:?}"),
            }
        }
    }
}
