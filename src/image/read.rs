//! Opens an image, checks everything a restart relies on, and streams its
//! chunks. Ordinary Rust (the restarter, `inspect`, `verify`).
//!
//! Every check happens before the caller acts: a damaged image yields a
//! [`ReadError`] naming the record and byte offset, never a panic or a huge
//! allocation (record lengths are bounded by the file size).

use super::codec::Decoder;
use super::format::{FileHeader, FormatError, ImageReader, RecordKind};
use super::model::{
    ChunkHeader, ChunkRun, EndRecord, Meta, Region, ThreadState, ENCODING_RAW, ENCODING_ZSTD,
};
use crate::kstate::KernelState;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

/// Highest user-space address any image may use.
pub const USER_ADDRESS_LIMIT: u64 = 1 << 56;

pub type ReadError = FormatError;

/// An image whose metadata records have been read and checked; its chunks
/// have not been read yet.
pub struct ImageFile {
    pub path: PathBuf,
    pub file_len: u64,
    pub header: FileHeader,
    reader: ImageReader<BufReader<File>>,
    meta: Vec<u8>,
    regions: Vec<u8>,
    kernel: Vec<u8>,
    threads: Vec<u8>,
}

/// The decoded metadata of an image.
pub struct ImageView<'a> {
    pub meta: Meta<'a>,
    pub regions: Vec<Region<'a>>,
    pub kernel: KernelState<'a>,
    pub threads: Vec<ThreadState>,
}

/// One chunk as read from the file (checksum verified).
pub struct Chunk {
    pub offset: u64,
    pub header: ChunkHeader,
    pub runs: Vec<ChunkRun>,
    /// The record's payload; the stored bytes (compressed or raw) are
    /// `payload[data_at..]` (kept in place: never copied out).
    payload: Vec<u8>,
    data_at: usize,
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

impl ImageFile {
    /// Opens `path`, checks the header and reads and validates the META,
    /// REGIONS, KERNEL and THREADS records.
    pub fn open(path: &Path) -> Result<ImageFile, ReadError> {
        let f = File::open(path)?;
        let file_len = f.metadata()?.len();
        // A small buffer: payloads of about a chunk (up to 1 MiB) are then
        // read straight into their Vec instead of through the buffer.
        let mut reader = ImageReader::new(BufReader::with_capacity(64 << 10, f), Some(file_len))?;
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
            reader,
            meta,
            regions,
            kernel,
            threads,
        };
        img.view()?;
        Ok(img)
    }

    /// Decodes and validates the metadata.
    pub fn view(&self) -> Result<ImageView<'_>, ReadError> {
        let page = self.header.page_size as u64;
        let mut d = Decoder::new(&self.meta);
        let meta = Meta::decode(&mut d).map_err(malformed(0, "META"))?;
        d.finish().map_err(malformed(0, "META"))?;

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
            if crate::maps::RegionKind::from_u32(r.kind).is_none() {
                return Err(invalid(format!(
                    "region {:#x}-{:#x} has unknown kind {}",
                    r.start, r.end, r.kind
                )));
            }
            prev_end = r.end;
        }

        let mut d = Decoder::new(&self.kernel);
        let kernel = KernelState::decode(&mut d).map_err(malformed(0, "KERNEL"))?;

        let mut d = Decoder::new(&self.threads);
        let n = d
            .count(ThreadState::ENCODED_LEN)
            .map_err(malformed(0, "THREADS"))?;
        let threads = (0..n)
            .map(|_| ThreadState::decode(&mut d))
            .collect::<Result<Vec<_>, _>>()
            .map_err(malformed(0, "THREADS"))?;
        d.finish().map_err(malformed(0, "THREADS"))?;
        if threads.is_empty() {
            return Err(invalid("the image holds no thread".into()));
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
        })
    }

    /// Reads every remaining record: hands `f` each chunk (checksum
    /// verified, runs checked against the regions), then checks END.
    pub fn for_each_chunk(
        mut self,
        mut f: impl FnMut(Chunk) -> Result<(), ReadError>,
    ) -> Result<EndRecord, ReadError> {
        let page = self.header.page_size as u64;
        let bounds: Vec<(u64, u64)> = self
            .view()?
            .regions
            .iter()
            .map(|r| (r.start, r.end))
            .collect();
        loop {
            let rec = self.reader.next_record()?.ok_or(FormatError::Truncated {
                offset: self.file_len,
            })?;
            match rec.kind {
                RecordKind::End => {
                    let mut d = Decoder::new(&rec.payload);
                    return EndRecord::decode(&mut d).map_err(malformed(rec.offset, "END"));
                }
                RecordKind::Chunk => {
                    let chunk = parse_chunk(rec.offset, rec.payload, &bounds, page)?;
                    f(chunk)?;
                }
                other => {
                    return Err(FormatError::Order {
                        offset: rec.offset,
                        found: other.name(),
                        expected: "CHUNK",
                    })
                }
            }
        }
    }
}

fn parse_chunk(
    offset: u64,
    payload: Vec<u8>,
    bounds: &[(u64, u64)],
    page: u64,
) -> Result<Chunk, ReadError> {
    let bad = malformed(offset, "CHUNK");
    let mut d = Decoder::new(&payload);
    let header = ChunkHeader::decode(&mut d).map_err(&bad)?;
    let n = header.n_runs as usize;
    if n.saturating_mul(ChunkHeader::RUN_LEN) > d.remaining() {
        return Err(invalid(format!(
            "chunk at byte {offset}: {n} runs do not fit the record"
        )));
    }
    let runs = (0..n)
        .map(|_| ChunkRun::decode(&mut d))
        .collect::<Result<Vec<_>, _>>()
        .map_err(&bad)?;
    let data_at = d.position();
    let data = d.take(d.remaining()).map_err(&bad)?;
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
        total += r.pages as u64 * page;
    }
    if total != header.raw_len as u64 {
        return Err(invalid(format!(
            "chunk at byte {offset}: runs hold {total} bytes, header says {}",
            header.raw_len
        )));
    }
    match header.encoding {
        ENCODING_RAW if data.len() as u64 != total => {
            return Err(invalid(format!(
                "chunk at byte {offset}: raw data is {} bytes, expected {total}",
                data.len()
            )))
        }
        ENCODING_RAW | ENCODING_ZSTD => {}
        e => {
            return Err(invalid(format!(
                "chunk at byte {offset}: unknown encoding {e}"
            )))
        }
    }
    Ok(Chunk {
        offset,
        header,
        runs,
        payload,
        data_at,
    })
}

impl Chunk {
    /// The stored bytes (compressed or raw).
    pub fn data(&self) -> &[u8] {
        &self.payload[self.data_at..]
    }

    /// Decodes the chunk's pages into `out` (exactly `raw_len` bytes).
    pub fn decode_into(&self, out: &mut [u8]) -> Result<(), ReadError> {
        match self.header.encoding {
            ENCODING_RAW => {
                out.copy_from_slice(self.data());
                Ok(())
            }
            _ => crate::compress::decompress_exact(self.data(), out).map_err(|e| {
                invalid(format!(
                    "chunk at byte {}: cannot decompress: {e}",
                    self.offset
                ))
            }),
        }
    }
}
