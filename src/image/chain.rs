//! The chain of an incremental image: its parent (named in its META), the
//! parent's parent, and so on to a full image. Opens each ancestor, reads
//! every record of it (checksums verified) and checks it is the very image
//! its child names (the checksum of its END record's framing).
//!
//! Must never: follow a parent name out of the image's directory, follow a
//! loop, or accept an ancestor whose END checksum is not the one its child
//! recorded. Ordinary Rust (runs in the restarter and the CLI).

use super::format::FormatError;
use super::mac::MacKey;
use super::model::Region;
use super::read::{Chunk, ImageFile, ImageView, ReadError};
use crate::capture::maps::RegionKind;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Most ancestors a chain may have (a full image at least every
/// `SELFCKPT_FULL_EVERY` checkpoints keeps chains far shorter).
pub const MAX_ANCESTORS: usize = 10_000;

/// Why a chain cannot be used. Each names the ancestor at fault.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("{parent}, the parent image of {child}, cannot be read: {source}")]
    Unreadable {
        parent: PathBuf,
        child: PathBuf,
        source: ReadError,
    },
    #[error("{parent}, an ancestor of {child}, is damaged: {source}")]
    Damaged {
        parent: PathBuf,
        child: PathBuf,
        source: ReadError,
    },
    #[error("{parent} is not the parent image {child} was taken after (its END checksum differs): the chain is broken")]
    NotTheParent { parent: PathBuf, child: PathBuf },
    #[error("{child} names a parent image {name:?} that is not a file name in its directory")]
    BadName { child: PathBuf, name: String },
    #[error("{parent}, the parent image of {child}, {why}")]
    Mismatch {
        parent: PathBuf,
        child: PathBuf,
        why: String,
    },
    #[error("the chain of {0} loops or is longer than {MAX_ANCESTORS} images")]
    TooLong(PathBuf),
}

/// One ancestor, opened (metadata records checked), its chunks not read.
pub struct Ancestor {
    pub img: ImageFile,
    /// The image that names it as parent.
    pub child: PathBuf,
    /// The END checksum the child recorded for it.
    pub expect_end: u64,
    /// Start and end of each of its regions (chunks name regions by index).
    pub regions: Vec<(u64, u64)>,
    /// Where its pages may be used: the address ranges that are private
    /// regions in it and in every image after it in the chain.
    pub usable: Vec<(u64, u64)>,
}

/// Whether a region takes part in incremental checkpoints.
fn tracked(r: &Region) -> bool {
    RegionKind::from_u32(r.kind).is_some_and(|k| {
        crate::capture::dump::incremental_region(k, r.path.ends_with(b" (deleted)"))
    })
}

/// The private regions of an image, sorted.
fn tracked_ranges(view: &ImageView) -> Vec<(u64, u64)> {
    view.regions
        .iter()
        .filter(|r| tracked(r))
        .map(|r| (r.start, r.end))
        .collect()
}

/// The intersection of two sorted lists of disjoint ranges.
fn intersect(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        let (lo, hi) = (a[i].0.max(b[j].0), a[i].1.min(b[j].1));
        if lo < hi {
            out.push((lo, hi));
        }
        if a[i].1 < b[j].1 {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// Whether `addr` lies in one of the sorted ranges.
pub fn contains(ranges: &[(u64, u64)], addr: u64) -> bool {
    let i = ranges.partition_point(|r| r.1 <= addr);
    ranges.get(i).is_some_and(|r| r.0 <= addr)
}

/// Opens the ancestors of the image at `path` (whose metadata is `view`,
/// with pages of `page` bytes), its parent first; none for a full image.
pub fn open_ancestors(
    path: &Path,
    view: &ImageView,
    page: u32,
    key: Option<&MacKey>,
) -> Result<Vec<Ancestor>, ChainError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let exe = view.meta.exe_path.to_vec();
    let mut usable = tracked_ranges(view);
    let mut next = view
        .meta
        .parent_image()
        .map(|p| (p.name.to_vec(), p.end_checksum));
    let mut child = path.to_path_buf();
    let mut out: Vec<Ancestor> = Vec::new();
    while let Some((name, expect_end)) = next.take() {
        let shown = String::from_utf8_lossy(&name).into_owned();
        if name.is_empty() || name.contains(&b'/') || name == b"." || name == b".." {
            return Err(ChainError::BadName { child, name: shown });
        }
        let parent = dir.join(std::ffi::OsStr::from_bytes(&name));
        if out.len() >= MAX_ANCESTORS || parent == path || out.iter().any(|a| a.img.path == parent)
        {
            return Err(ChainError::TooLong(path.to_path_buf()));
        }
        let unreadable = |source| ChainError::Unreadable {
            parent: parent.clone(),
            child: child.clone(),
            source,
        };
        let img = ImageFile::open_with_key(&parent, key).map_err(unreadable)?;
        if let Some(key) = key {
            img.authenticate(key).map_err(unreadable)?;
        }
        let v = img.view().map_err(unreadable)?;
        let their_page = img.header.page_size;
        let mismatch = |why: String| ChainError::Mismatch {
            parent: parent.clone(),
            child: child.clone(),
            why,
        };
        if their_page != page {
            return Err(mismatch(format!("has {their_page}-byte pages, not {page}")));
        }
        if v.meta.exe_path != exe.as_slice() {
            return Err(mismatch(format!(
                "is of another program ({})",
                String::from_utf8_lossy(v.meta.exe_path)
            )));
        }
        usable = intersect(&usable, &tracked_ranges(&v));
        let regions = v.regions.iter().map(|r| (r.start, r.end)).collect();
        next = v
            .meta
            .parent_image()
            .map(|p| (p.name.to_vec(), p.end_checksum));
        drop(v);
        out.push(Ancestor {
            img,
            child: child.clone(),
            expect_end,
            regions,
            usable: usable.clone(),
        });
        child = parent;
    }
    Ok(out)
}

impl Ancestor {
    /// Reads every remaining record (each checksum verified), handing `f`
    /// each chunk, then checks the ancestor is the image its child names.
    pub fn read(
        mut self,
        mut f: impl FnMut(&Chunk, (u64, u64)) -> Result<(), ReadError>,
    ) -> Result<(), ChainError> {
        let path = self.img.path.clone();
        let damaged = |source| ChainError::Damaged {
            parent: path.clone(),
            child: self.child.clone(),
            source,
        };
        let regions = std::mem::take(&mut self.regions);
        self.img
            .read_to_end(|c| {
                let r = regions
                    .get(c.header.region as usize)
                    .copied()
                    .ok_or_else(|| FormatError::Invalid("chunk of no region".into()))?;
                f(&c, r)
            })
            .map_err(damaged)?;
        if self.img.end_checksum != Some(self.expect_end) {
            return Err(ChainError::NotTheParent {
                parent: path,
                child: self.child,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{contains, intersect};

    #[test]
    fn ranges_intersect_and_contain() {
        let a = [(0x1000, 0x5000), (0x8000, 0x9000)];
        let b = [(0x2000, 0x3000), (0x4000, 0x8800)];
        let i = intersect(&a, &b);
        assert_eq!(i, [(0x2000, 0x3000), (0x4000, 0x5000), (0x8000, 0x8800)]);
        assert!(contains(&i, 0x2000));
        assert!(!contains(&i, 0x3000));
        assert!(contains(&i, 0x87ff));
        assert!(!contains(&i, 0x8800));
        assert!(!contains(&i, 0));
    }
}
