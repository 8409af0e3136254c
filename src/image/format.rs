//! On-disk framing of an image: the file header and checksummed records.
//!
//! ```text
//! offset  size  file header (64 bytes)
//!      0     8  magic "SELFCKPT"
//!      8     2  format major        10  2  format minor
//!     12     2  arch (1 x86_64, 2 aarch64)   14  2  reserved (0)
//!     16     4  page size           20  4  header length (64)
//!     24    32  reserved (0)
//!     56     8  xxh3-64 of bytes 0..56
//!
//! then records, each:
//!      0     4  kind   4  4  flags (0)   8  8  payload length
//!     16     8  xxh3-64 of (bytes 0..16 of this framing ++ payload)
//!     24     …  payload
//! order: META, REGIONS, KERNEL, THREADS, CHUNK*, END, then (format 1.1)
//! an optional MAC record (see `mac.rs`); nothing else after END.
//! A minor version only adds fields at the end of records (1.1: META,
//! KERNEL; 1.2: END's bytes present per region; 1.3: KERNEL's interval
//! timers; 1.4: pending signals at the end of KERNEL and THREADS; 1.5:
//! the restart mailbox's layout version at the end of META).
//! ```
//!
//! The writer half works on a raw fd and never allocates (it runs while the
//! program's threads are suspended). The reader half is ordinary Rust; it
//! reads sequentially, or (for a restart without a MAC key) skims: it then
//! reads with positioned reads and leaves each CHUNK's payload, and its
//! checksum, to the caller ([`Skipped`]).

use super::codec::{CodecError, Encoder};
use super::mac::{MacKey, MacTee, MAC_PAYLOAD_LEN};
use super::model::EndRecord;
use std::io::Read;
use thiserror::Error;
use xxhash_rust::xxh3::{xxh3_64, Xxh3};

pub const MAGIC: [u8; 8] = *b"SELFCKPT";
pub const FORMAT_MAJOR: u16 = 1;
pub const FORMAT_MINOR: u16 = 9;
/// The first minor version that may carry a MAC record after END.
pub const MAC_SINCE_MINOR: u16 = 1;
/// The first minor version whose END ends with the bytes present per region.
pub const REGION_PRESENT_SINCE_MINOR: u16 = 2;
/// The first minor version whose KERNEL ends with the interval timers.
pub const ITIMERS_SINCE_MINOR: u16 = 3;
/// The first minor version whose KERNEL ends with the process's pending
/// signals and whose THREADS ends with each thread's.
pub const PENDING_SIGNALS_SINCE_MINOR: u16 = 4;
/// The first minor version whose META ends with the layout version of the
/// library's restart mailbox.
pub const MAILBOX_LAYOUT_SINCE_MINOR: u16 = 5;
/// The first minor version whose KERNEL ends with the event and timer
/// descriptors (eventfd, timerfd, signalfd, epoll).
pub const EVENT_FDS_SINCE_MINOR: u16 = 6;
/// The first minor version whose META ends with the process's place in its
/// session (`Meta::session_role`).
pub const SESSION_ROLE_SINCE_MINOR: u16 = 7;
/// The first minor version whose KERNEL ends with the tagged object list
/// (`kstate::objects`).
pub const OBJECTS_SINCE_MINOR: u16 = 8;
/// The first minor version whose META ends with the parent reference of
/// an incremental image (`Meta::parent`).
pub const PARENT_SINCE_MINOR: u16 = 9;
/// The mailbox layout an image older than [`MAILBOX_LAYOUT_SINCE_MINOR`]
/// stands for: the one every library that wrote 1.0 to 1.4 images has
/// (`restorer_abi::MAILBOX_LAYOUT` 1).
pub const MAILBOX_LAYOUT_UNRECORDED: u32 = 1;
pub const FILE_HEADER_LEN: usize = 64;
pub const FRAME_LEN: usize = 24;
/// No record may be larger than this; a reader refuses larger lengths
/// before allocating.
pub const MAX_RECORD_LEN: u64 = 256 << 20;

pub const ARCH_X86_64: u16 = 1;
pub const ARCH_AARCH64: u16 = 2;

#[cfg(target_arch = "x86_64")]
pub const ARCH_HOST: u16 = ARCH_X86_64;
#[cfg(target_arch = "aarch64")]
pub const ARCH_HOST: u16 = ARCH_AARCH64;

pub fn arch_name(a: u16) -> &'static str {
    match a {
        ARCH_X86_64 => "x86_64",
        ARCH_AARCH64 => "aarch64",
        _ => "unknown",
    }
}

/// Record kinds, in the order they appear.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u32)]
pub enum RecordKind {
    Meta = 1,
    Regions = 2,
    Kernel = 3,
    Threads = 4,
    Chunk = 5,
    End = 6,
    /// Optional, after END (format 1.1): HMAC of every byte before it.
    Mac = 7,
}

impl RecordKind {
    pub fn from_u32(v: u32) -> Option<RecordKind> {
        Some(match v {
            1 => RecordKind::Meta,
            2 => RecordKind::Regions,
            3 => RecordKind::Kernel,
            4 => RecordKind::Threads,
            5 => RecordKind::Chunk,
            6 => RecordKind::End,
            7 => RecordKind::Mac,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            RecordKind::Meta => "META",
            RecordKind::Regions => "REGIONS",
            RecordKind::Kernel => "KERNEL",
            RecordKind::Threads => "THREADS",
            RecordKind::Chunk => "CHUNK",
            RecordKind::End => "END",
            RecordKind::Mac => "MAC",
        }
    }
}

#[derive(Debug, Error)]
pub enum FormatError {
    #[error("cannot read the image: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a selfckpt image (bad magic)")]
    BadMagic,
    #[error("the file header is damaged (checksum mismatch)")]
    HeaderChecksum,
    #[error("image format {major}.{minor} is not supported (this build reads {FORMAT_MAJOR}.0 to {FORMAT_MAJOR}.{FORMAT_MINOR})")]
    Version { major: u16, minor: u16 },
    #[error("bad header field {field}: {value}")]
    HeaderField { field: &'static str, value: u64 },
    #[error("the image is truncated at byte {offset}")]
    Truncated { offset: u64 },
    #[error("record at byte {offset} has an unknown kind {kind}")]
    UnknownKind { offset: u64, kind: u32 },
    #[error("record at byte {offset} claims {len} bytes (limit {MAX_RECORD_LEN})")]
    RecordTooLarge { offset: u64, len: u64 },
    #[error("record {kind} at byte {offset} is damaged (checksum mismatch)")]
    RecordChecksum { offset: u64, kind: &'static str },
    #[error("record {kind} at byte {offset} is malformed: {source}")]
    Malformed {
        offset: u64,
        kind: &'static str,
        source: CodecError,
    },
    #[error("record {found} at byte {offset} is out of order (expected {expected})")]
    Order {
        offset: u64,
        found: &'static str,
        expected: &'static str,
    },
    #[error("the END record does not match the records read ({0})")]
    EndMismatch(&'static str),
    #[error("{0} bytes follow the END record")]
    TrailingData(u64),
    #[error("invalid content: {0}")]
    Invalid(String),
    #[error("{0}")]
    NotRegular(String),
    #[error(
        "the image's MAC does not match: it was altered or made with another key (SELFCKPT_KEY)"
    )]
    MacMismatch,
    #[error("SELFCKPT_KEY is set but the image carries no MAC; refused")]
    MacMissing,
}

/// The fixed file header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileHeader {
    pub major: u16,
    pub minor: u16,
    pub arch: u16,
    pub page_size: u32,
}

impl FileHeader {
    pub fn host() -> FileHeader {
        FileHeader {
            major: FORMAT_MAJOR,
            minor: FORMAT_MINOR,
            arch: ARCH_HOST,
            page_size: crate::capture::sys::page_size() as u32,
        }
    }

    pub fn to_bytes(&self) -> [u8; FILE_HEADER_LEN] {
        let mut b = [0u8; FILE_HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..10].copy_from_slice(&self.major.to_le_bytes());
        b[10..12].copy_from_slice(&self.minor.to_le_bytes());
        b[12..14].copy_from_slice(&self.arch.to_le_bytes());
        b[16..20].copy_from_slice(&self.page_size.to_le_bytes());
        b[20..24].copy_from_slice(&(FILE_HEADER_LEN as u32).to_le_bytes());
        let sum = xxh3_64(&b[..56]);
        b[56..64].copy_from_slice(&sum.to_le_bytes());
        b
    }

    /// Parses and checks a header: magic, checksum, version, sizes. The
    /// arch and page size are returned for the caller to compare with the host.
    pub fn parse(b: &[u8; FILE_HEADER_LEN]) -> Result<FileHeader, FormatError> {
        if b[0..8] != MAGIC {
            return Err(FormatError::BadMagic);
        }
        let le16 = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        let le32 = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut sum = [0u8; 8];
        sum.copy_from_slice(&b[56..64]);
        if xxh3_64(&b[..56]) != u64::from_le_bytes(sum) {
            return Err(FormatError::HeaderChecksum);
        }
        let h = FileHeader {
            major: le16(8),
            minor: le16(10),
            arch: le16(12),
            page_size: le32(16),
        };
        if h.major != FORMAT_MAJOR || h.minor > FORMAT_MINOR {
            return Err(FormatError::Version {
                major: h.major,
                minor: h.minor,
            });
        }
        if le32(20) as usize != FILE_HEADER_LEN {
            return Err(FormatError::HeaderField {
                field: "header length",
                value: le32(20) as u64,
            });
        }
        if !h.page_size.is_power_of_two() || !(4096..=65536).contains(&h.page_size) {
            return Err(FormatError::HeaderField {
                field: "page size",
                value: h.page_size as u64,
            });
        }
        if b[14..16] != [0, 0] || b[24..56].iter().any(|&x| x != 0) {
            return Err(FormatError::HeaderField {
                field: "reserved",
                value: 1,
            });
        }
        Ok(h)
    }
}

/// Fills in the framing of a record whose payload already sits at
/// `buf[FRAME_LEN..]`, and returns the record checksum. Never allocates.
pub fn seal_record(buf: &mut [u8], kind: RecordKind) -> u64 {
    seal_record_split(buf, &[], kind)
}

/// Like [`seal_record`] for a record whose payload is split in two:
/// `head[FRAME_LEN..]` then `tail` (written together with writev, so a
/// large tail is never copied next to its head). Never allocates.
pub fn seal_record_split(head: &mut [u8], tail: &[u8], kind: RecordKind) -> u64 {
    let buf = head;
    let len = (buf.len() - FRAME_LEN + tail.len()) as u64;
    buf[0..4].copy_from_slice(&(kind as u32).to_le_bytes());
    buf[4..8].copy_from_slice(&0u32.to_le_bytes());
    buf[8..16].copy_from_slice(&len.to_le_bytes());
    let mut h = Xxh3::new();
    h.update(&buf[0..16]);
    h.update(&buf[FRAME_LEN..]);
    h.update(tail);
    let sum = h.digest();
    buf[16..24].copy_from_slice(&sum.to_le_bytes());
    sum
}

/// Encodes a record's payload with `f` into `buf` (after room for the
/// framing), seals it and returns the whole record's length.
/// The checksum a record of `kind` with this payload carries in its
/// framing (flags 0).
pub fn record_checksum(kind: RecordKind, payload: &[u8]) -> u64 {
    let mut h = Xxh3::new();
    h.update(&(kind as u32).to_le_bytes());
    h.update(&0u32.to_le_bytes());
    h.update(&(payload.len() as u64).to_le_bytes());
    h.update(payload);
    h.digest()
}

pub fn build_record(
    buf: &mut [u8],
    kind: RecordKind,
    f: impl FnOnce(&mut Encoder) -> Result<(), CodecError>,
) -> Result<usize, CodecError> {
    if buf.len() < FRAME_LEN {
        return Err(CodecError::Full {
            needed: FRAME_LEN,
            left: buf.len(),
        });
    }
    let n = {
        let mut e = Encoder::new(&mut buf[FRAME_LEN..]);
        f(&mut e)?;
        e.len()
    };
    seal_record(&mut buf[..FRAME_LEN + n], kind);
    Ok(FRAME_LEN + n)
}

/// Keeps the running totals the END record needs. Never allocates.
#[derive(Default, Clone)]
pub struct RecordChain {
    pub records: u64,
    pub chunks: u64,
    hasher: ChainHasher,
}

#[derive(Clone)]
struct ChainHasher(Xxh3);

impl Default for ChainHasher {
    fn default() -> Self {
        ChainHasher(Xxh3::new())
    }
}

impl RecordChain {
    /// Accounts for a sealed record (framing at the start of `record`).
    pub fn add(&mut self, record: &[u8]) {
        let kind = u32::from_le_bytes([record[0], record[1], record[2], record[3]]);
        self.add_checksum(kind, &record[16..24]);
    }

    fn add_checksum(&mut self, kind: u32, sum: &[u8]) {
        self.records += 1;
        if kind == RecordKind::Chunk as u32 {
            self.chunks += 1;
        }
        self.hasher.0.update(sum);
    }

    pub fn digest(&self) -> u64 {
        self.hasher.0.digest()
    }
}

/// One record as read back.
pub struct RawRecord {
    pub offset: u64,
    pub kind: RecordKind,
    /// Empty for a skipped CHUNK.
    pub payload: Vec<u8>,
    /// A CHUNK whose payload was not read (skimming): its checksum is the
    /// caller's to verify.
    pub skipped: Option<Skipped>,
}

/// What a caller needs to read and verify a skipped payload itself.
#[derive(Clone, Debug)]
pub struct Skipped {
    /// The image file, for positioned reads.
    pub file: std::sync::Arc<std::fs::File>,
    /// Payload length.
    pub len: u64,
    /// Bytes 0..16 of the record's framing (covered by the checksum).
    pub frame: [u8; 16],
    /// The record's checksum: xxh3-64 of `frame` ++ payload.
    pub sum: u64,
}

/// Sequential reads over a file by positioned reads (for the checks after
/// END while skimming).
struct At<'a> {
    file: &'a std::fs::File,
    pos: u64,
}

impl Read for At<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = std::os::unix::fs::FileExt::read_at(self.file, buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Reads the header and records of an image sequentially, checking every
/// checksum, the record order, and the END totals.
pub struct ImageReader<R: Read> {
    src: MacTee<R>,
    pub header: FileHeader,
    offset: u64,
    chain: RecordChain,
    last_kind: Option<RecordKind>,
    done: bool,
    /// Total file length when known: record lengths beyond it are refused
    /// before any allocation.
    file_len: Option<u64>,
    /// Whether the image ended with a (checksum-verified) MAC record.
    mac_present: bool,
    /// Skimming: every read from here on is a positioned read of this
    /// file, and CHUNK payloads may be skipped.
    skim: Option<std::sync::Arc<std::fs::File>>,
}

impl<R: Read> ImageReader<R> {
    pub fn new(src: R, file_len: Option<u64>) -> Result<Self, FormatError> {
        Self::with_key(src, file_len, None)
    }

    /// Like `new`, and with a key the image must carry a valid MAC record.
    pub fn with_key(
        src: R,
        file_len: Option<u64>,
        key: Option<&MacKey>,
    ) -> Result<Self, FormatError> {
        let mut src = MacTee::new(src, key);
        let mut b = [0u8; FILE_HEADER_LEN];
        read_exact_at(&mut src, &mut b, 0)?;
        let header = FileHeader::parse(&b)?;
        Ok(ImageReader {
            src,
            header,
            offset: FILE_HEADER_LEN as u64,
            chain: RecordChain::default(),
            last_kind: None,
            done: false,
            file_len,
            mac_present: false,
            skim: None,
        })
    }

    /// Skims from here on: `file` is the image being read (positioned
    /// reads do not move anything the sequential source relies on, and
    /// the source is not read any more). Ignored when a MAC key is set:
    /// the MAC covers every byte, so every byte must be read in order.
    pub fn skim(&mut self, file: std::sync::Arc<std::fs::File>) {
        if !self.src.keyed() && self.file_len.is_some() {
            self.skim = Some(file);
        }
    }

    /// Reads `buf.len()` bytes at file offset `at` (which is where the
    /// sequential source stands when not skimming).
    fn read_at(&mut self, buf: &mut [u8], at: u64) -> Result<(), FormatError> {
        match &self.skim {
            Some(f) => pread_exact(f, buf, at),
            None => read_exact_at(&mut self.src, buf, at),
        }
    }

    /// True once END was read and a MAC record followed it.
    pub fn mac_present(&self) -> bool {
        self.mac_present
    }

    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next record, or `None` after END (once the end of the file has
    /// been checked).
    pub fn next_record(&mut self) -> Result<Option<RawRecord>, FormatError> {
        self.next(false)
    }

    /// As [`ImageReader::next_record`]; while skimming, a CHUNK's payload is
    /// not read and the record comes back with [`RawRecord::skipped`] set:
    /// reading its payload and comparing its checksum is then the
    /// caller's job. Everything else (framing, order, the chain of
    /// checksums, END) is checked here as always.
    pub fn next_record_skipping_chunks(&mut self) -> Result<Option<RawRecord>, FormatError> {
        self.next(true)
    }

    fn next(&mut self, skip_chunks: bool) -> Result<Option<RawRecord>, FormatError> {
        if self.done {
            return Ok(None);
        }
        let at = self.offset;
        let mut frame = [0u8; FRAME_LEN];
        self.read_at(&mut frame, at)?;
        let kind_raw = u32::from_le_bytes(frame[0..4].try_into().unwrap_or_default());
        let flags = u32::from_le_bytes(frame[4..8].try_into().unwrap_or_default());
        let len = u64::from_le_bytes(frame[8..16].try_into().unwrap_or_default());
        let sum = u64::from_le_bytes(frame[16..24].try_into().unwrap_or_default());
        let kind = RecordKind::from_u32(kind_raw).ok_or(FormatError::UnknownKind {
            offset: at,
            kind: kind_raw,
        })?;
        if flags != 0 {
            return Err(FormatError::RecordChecksum {
                offset: at,
                kind: kind.name(),
            });
        }
        let limit = match self.file_len {
            Some(fl) => MAX_RECORD_LEN.min(fl.saturating_sub(at + FRAME_LEN as u64)),
            None => MAX_RECORD_LEN,
        };
        if len > limit {
            return Err(if len <= MAX_RECORD_LEN {
                FormatError::Truncated { offset: at }
            } else {
                FormatError::RecordTooLarge { offset: at, len }
            });
        }
        self.check_order(at, kind)?;
        if let (true, RecordKind::Chunk, Some(file)) = (skip_chunks, kind, &self.skim) {
            let file = file.clone();
            let mut head = [0u8; 16];
            head.copy_from_slice(&frame[0..16]);
            self.offset = at + FRAME_LEN as u64 + len;
            self.chain.add_checksum(kind_raw, &frame[16..24]);
            self.last_kind = Some(kind);
            return Ok(Some(RawRecord {
                offset: at,
                kind,
                payload: Vec::new(),
                skipped: Some(Skipped {
                    file,
                    len,
                    frame: head,
                    sum,
                }),
            }));
        }
        let mut payload = vec![0u8; len as usize];
        self.read_at(&mut payload, at + FRAME_LEN as u64)?;
        let mut h = Xxh3::new();
        h.update(&frame[0..16]);
        h.update(&payload);
        if h.digest() != sum {
            return Err(FormatError::RecordChecksum {
                offset: at,
                kind: kind.name(),
            });
        }
        self.offset = at + FRAME_LEN as u64 + len;
        if kind == RecordKind::End {
            self.check_end(at, &payload)?;
            self.done = true;
        } else {
            self.chain.add_checksum(kind_raw, &frame[16..24]);
        }
        self.last_kind = Some(kind);
        Ok(Some(RawRecord {
            offset: at,
            kind,
            payload,
            skipped: None,
        }))
    }

    fn check_order(&self, at: u64, kind: RecordKind) -> Result<(), FormatError> {
        use RecordKind::*;
        let expected = match self.last_kind {
            None => Meta,
            Some(Meta) => Regions,
            Some(Regions) => Kernel,
            Some(Kernel) => Threads,
            Some(Threads) | Some(Chunk) => {
                if kind == Chunk || kind == End {
                    return Ok(());
                }
                Chunk
            }
            Some(End) | Some(Mac) => End,
        };
        if kind != expected {
            return Err(FormatError::Order {
                offset: at,
                found: kind.name(),
                expected: expected.name(),
            });
        }
        Ok(())
    }

    fn check_end(&mut self, at: u64, payload: &[u8]) -> Result<(), FormatError> {
        let mut d = super::codec::Decoder::new(payload);
        let end = EndRecord::decode(&mut d, self.header.minor)
            .and_then(|e| d.finish().map(|_| e))
            .map_err(|source| FormatError::Malformed {
                offset: at,
                kind: "END",
                source,
            })?;
        if end.records != self.chain.records {
            return Err(FormatError::EndMismatch("record count"));
        }
        if end.chunks != self.chain.chunks {
            return Err(FormatError::EndMismatch("chunk count"));
        }
        if end.chain != self.chain.digest() {
            return Err(FormatError::EndMismatch(
                "record chain checksum: records are missing, extra or reordered",
            ));
        }
        self.check_after_end()
    }

    /// After END: end of file, or (format 1.1) one MAC record and then the
    /// end of file. With a key, the MAC record is required and must match.
    fn check_after_end(&mut self) -> Result<(), FormatError> {
        let (at, minor) = (self.offset, self.header.minor);
        self.mac_present = match &self.skim {
            Some(file) => after_end(&mut MacTee::new(At { file, pos: at }, None), at, minor)?,
            None => after_end(&mut self.src, at, minor)?,
        };
        Ok(())
    }
}

/// The checks after END (see [`ImageReader::check_after_end`]) on `src`
/// standing just after END at file offset `at`; whether a MAC record was
/// there.
fn after_end<S: Read>(src: &mut MacTee<S>, at: u64, minor: u16) -> Result<bool, FormatError> {
    let state = src.snapshot();
    let mut frame = [0u8; FRAME_LEN];
    let got = read_up_to(src, &mut frame)?;
    if got == 0 {
        return if src.keyed() {
            Err(FormatError::MacMissing)
        } else {
            Ok(false)
        };
    }
    let kind = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]);
    if got < FRAME_LEN || kind != RecordKind::Mac as u32 || minor < MAC_SINCE_MINOR {
        let rest = std::io::copy(src, &mut std::io::sink())?;
        return Err(FormatError::TrailingData(got as u64 + rest));
    }
    let len = u64::from_le_bytes(frame[8..16].try_into().unwrap_or_default());
    if frame[4..8] != [0; 4] || len != MAC_PAYLOAD_LEN as u64 {
        return Err(FormatError::RecordChecksum {
            offset: at,
            kind: "MAC",
        });
    }
    let mut payload = [0u8; MAC_PAYLOAD_LEN];
    read_exact_at(src, &mut payload, at + FRAME_LEN as u64)?;
    let mut h = Xxh3::new();
    h.update(&frame[0..16]);
    h.update(&payload);
    if h.digest().to_le_bytes() != frame[16..24] {
        return Err(FormatError::RecordChecksum {
            offset: at,
            kind: "MAC",
        });
    }
    let tag = super::mac::parse_payload(&payload).ok_or(FormatError::Invalid(format!(
        "MAC record at byte {at}: unknown algorithm"
    )))?;
    let mut extra = [0u8; 1];
    if read_up_to(src, &mut extra)? != 0 {
        let rest = std::io::copy(src, &mut std::io::sink())?;
        return Err(FormatError::TrailingData(rest + 1));
    }
    if let Some(state) = state {
        super::mac::check(state, &tag)?;
    }
    Ok(true)
}

/// Reads until `buf` is full or the end of the input; returns the count.
fn read_up_to<R: Read>(src: &mut R, buf: &mut [u8]) -> Result<usize, FormatError> {
    let mut got = 0;
    while got < buf.len() {
        match src.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(got)
}

fn read_exact_at<R: Read>(src: &mut R, buf: &mut [u8], offset: u64) -> Result<(), FormatError> {
    src.read_exact(buf).map_err(|e| short_read(e, offset))
}

/// Fills `buf` from `file` at `offset` with positioned reads; the end of
/// the file before `buf` is full is a truncated image.
pub fn pread_exact(file: &std::fs::File, buf: &mut [u8], offset: u64) -> Result<(), FormatError> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset).map_err(|e| short_read(e, offset))
}

fn short_read(e: std::io::Error, offset: u64) -> FormatError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        FormatError::Truncated { offset }
    } else {
        FormatError::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_bytes() -> [u8; FILE_HEADER_LEN] {
        FileHeader::host().to_bytes()
    }

    #[test]
    fn header_round_trips() {
        assert_eq!(
            FileHeader::parse(&header_bytes()).unwrap(),
            FileHeader::host()
        );
    }

    #[test]
    fn test_bad_magic() {
        let mut b = header_bytes();
        b[0] = b'X';
        assert!(matches!(FileHeader::parse(&b), Err(FormatError::BadMagic)));
    }

    #[test]
    fn test_bad_header_checksum_for_every_byte() {
        for i in 8..FILE_HEADER_LEN {
            let mut b = header_bytes();
            b[i] ^= 0x10;
            assert!(
                FileHeader::parse(&b).is_err(),
                "flip at byte {i} not detected"
            );
        }
    }

    #[test]
    fn test_bad_version() {
        let mut h = FileHeader::host();
        h.major = FORMAT_MAJOR + 1;
        assert!(matches!(
            FileHeader::parse(&h.to_bytes()),
            Err(FormatError::Version { .. })
        ));
        let mut h = FileHeader::host();
        h.minor = FORMAT_MINOR + 1;
        assert!(matches!(
            FileHeader::parse(&h.to_bytes()),
            Err(FormatError::Version { .. })
        ));
    }

    #[test]
    fn test_bad_page_size() {
        let mut h = FileHeader::host();
        h.page_size = 5000;
        assert!(matches!(
            FileHeader::parse(&h.to_bytes()),
            Err(FormatError::HeaderField {
                field: "page size",
                ..
            })
        ));
    }

    #[test]
    fn sealed_record_verifies_and_detects_flips() {
        let mut buf = [0u8; 64];
        let n = build_record(&mut buf, RecordKind::Meta, |e| e.bytes(b"hello")).unwrap();
        let mut img = header_bytes().to_vec();
        img.extend_from_slice(&buf[..n]);
        let mut r = ImageReader::new(&img[..], None).unwrap();
        let rec = r.next_record().unwrap().unwrap();
        assert_eq!(rec.kind, RecordKind::Meta);
        for i in FILE_HEADER_LEN..img.len() {
            let mut bad = img.clone();
            bad[i] ^= 1;
            let mut r = ImageReader::new(&bad[..], None).unwrap();
            assert!(r.next_record().is_err(), "flip at byte {i} not detected");
        }
    }
}
