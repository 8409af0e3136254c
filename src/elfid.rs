//! Identity of an executable: its path, ELF build-id (goblin) and file stamp.
//! Ordinary Rust: used at init and by the restarter, never while threads are
//! suspended.

use crate::image::model::FileStamp;
use std::path::Path;

/// The GNU build-id of an ELF file, empty if it has none.
pub fn build_id(path: &Path) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    // SAFETY: a read-only private mapping of a file we only read; if the
    // file is changed underneath, goblin sees different bytes, which the
    // caller treats as a different executable.
    let map = unsafe { memmap2::Mmap::map(&file)? };
    let elf = goblin::elf::Elf::parse(&map).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: not an ELF file: {e}", path.display()),
        )
    })?;
    if let Some(notes) = elf.iter_note_headers(&map) {
        for note in notes.flatten() {
            if note.n_type == goblin::elf::note::NT_GNU_BUILD_ID && note.name == "GNU" {
                return Ok(note.desc.to_vec());
            }
        }
    }
    Ok(Vec::new())
}

/// Size, mtime, inode of a file.
pub fn stamp(path: &Path) -> std::io::Result<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    Ok(FileStamp {
        dev: m.dev(),
        ino: m.ino(),
        size: m.size(),
        mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
        mode: m.mode(),
    })
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_test_binary_has_a_build_id() {
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let id = build_id(&exe).unwrap();
        assert!(id.len() >= 8, "build-id {:?}", id);
    }

    #[test]
    fn non_elf_is_an_error() {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), b"#!/bin/sh\n").unwrap();
        assert!(build_id(f.path()).is_err());
    }
}
