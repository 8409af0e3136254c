//! Whole-image verification: reads every record, checks every checksum and
//! bound, decodes every chunk, and checks END (and the MAC when a key is
//! given). Used by `selfckpt verify` / `inspect`, the mutation tests and
//! the fuzz target.
//!
//! It must never panic, hang or allocate more than the image's size plus
//! one chunk buffer (bounded by `read::MAX_CHUNK_RAW`), whatever the input.

use super::mac::MacKey;
use super::model::EndRecord;
use super::read::{ImageFile, ReadError};
use std::path::Path;

/// Bytes of one region: present at the dump, decoded and stored.
#[derive(Default, Clone, Copy, Debug, serde::Serialize)]
pub struct RegionBytes {
    /// Pages present or swapped when the dump looked, from END (`None`:
    /// unknown, the image predates format 1.2).
    pub present: Option<u64>,
    /// Decoded bytes of the region's chunks.
    pub raw: u64,
    /// Stored (compressed or raw) bytes of the region's chunks.
    pub stored: u64,
}

/// What a complete read of an image found.
#[derive(Debug)]
pub struct Summary {
    pub per_region: Vec<RegionBytes>,
    pub end: EndRecord,
    /// A MAC record followed END (and matched, when a key was given).
    pub mac_present: bool,
}

/// Reads the rest of `img`, decoding every chunk.
pub fn scan(mut img: ImageFile) -> Result<Summary, ReadError> {
    let n = img.view()?.regions.len();
    let mut per_region = vec![RegionBytes::default(); n];
    let mut buf = Vec::new();
    let end = img.read_to_end(|c| {
        buf.resize(c.header.raw_len as usize, 0);
        c.decode_into(&mut buf)?;
        if let Some(r) = per_region.get_mut(c.header.region as usize) {
            r.raw += c.header.raw_len as u64;
            r.stored += c.stored_len() as u64;
        }
        Ok(())
    })?;
    if let Some(present) = &end.region_present {
        // The reader checked that END lists every region, in order.
        for (r, &bytes) in per_region.iter_mut().zip(present) {
            r.present = Some(bytes);
        }
    }
    Ok(Summary {
        per_region,
        end,
        mac_present: img.mac_present(),
    })
}

/// Verifies an image held in memory.
pub fn scan_bytes(bytes: &[u8], key: Option<&MacKey>) -> Result<Summary, ReadError> {
    scan(ImageFile::from_bytes(
        Path::new("<memory>"),
        bytes.to_vec(),
        key,
    )?)
}
