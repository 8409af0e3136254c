//! `DIR/stdio.json`: the identity (device, inode) of the descriptors 0, 1
//! and 2 the latest `selfckpt run` in DIR was given, so that a resume
//! gives the new run's stdio only to the program's descriptors that were
//! the original run's stdio (`restore::stdio`).
//!
//! Never follows a symlink in DIR: read with `O_NOFOLLOW`, written to a
//! new file (`O_EXCL | O_NOFOLLOW`, mode 0600) renamed into place.

use selfckpt::restore::stdio::Identity;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

type Record = [Option<Identity>; 3];

const NAME: &str = "stdio.json";

/// The record in `dir`, if there is a readable one.
pub fn load(dir: &Path) -> Option<Record> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(dir.join(NAME))
        .ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut text = String::new();
    Read::by_ref(&mut f)
        .take(4096)
        .read_to_string(&mut text)
        .ok()?;
    serde_json::from_str::<Record>(&text).ok()
}

/// Writes `record` (None: this process's own stdio) as the record of `dir`.
pub fn save(dir: &Path, record: Option<Record>) -> Result<(), String> {
    let record = record.unwrap_or_else(selfckpt::restore::stdio::own);
    let json = serde_json::to_string(&record).map_err(|e| e.to_string())?;
    let tmp = dir.join(format!(".{NAME}.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .and_then(|mut f| f.write_all(json.as_bytes()))
        .and_then(|()| std::fs::rename(&tmp, dir.join(NAME)));
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write {}: {e}", dir.join(NAME).display())
    })
}
