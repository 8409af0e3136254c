//! Optional image authentication: HMAC-SHA256 under a key from the
//! `SELFCKPT_KEY` environment variable.
//!
//! ```text
//! file header | META | REGIONS | KERNEL | THREADS | CHUNK* | END | MAC
//! \_____________________ tag covers these bytes ________________/
//!
//! record MAC (kind 7), payload 36 bytes:
//!      0  4  algorithm (1 = HMAC-SHA256)
//!      4 32  tag = HMAC-SHA256(key, every byte of the file before this record)
//! ```
//!
//! The writer seals a finished temporary image at commit time
//! ([`seal_file`]): it re-reads the file (still in the page cache) and
//! appends the MAC record. That runs after the program's threads were
//! resumed, so it adds nothing to the pause and keeps the no-allocation
//! dump writer untouched, at the price of one extra sequential read of the
//! image. The reader feeds every byte it reads into [`MacTee`] and compares
//! tags in constant time.
//!
//! This module never prints or logs the key, and never accepts an empty key.

use super::format::{build_record, FileHeader, FormatError, RecordKind, FILE_HEADER_LEN};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::io::{Read, Seek, SeekFrom, Write};

pub type HmacSha256 = Hmac<Sha256>;

pub const ALG_HMAC_SHA256: u32 = 1;
pub const TAG_LEN: usize = 32;
/// Payload length of the MAC record.
pub const MAC_PAYLOAD_LEN: usize = 4 + TAG_LEN;

/// A secret key. Its `Debug` form hides the bytes.
#[derive(Clone)]
pub struct MacKey(Vec<u8>);

impl std::fmt::Debug for MacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MacKey(<{} bytes>)", self.0.len())
    }
}

impl MacKey {
    /// A key from raw bytes; `None` when empty.
    pub fn new(bytes: &[u8]) -> Option<MacKey> {
        (!bytes.is_empty()).then(|| MacKey(bytes.to_vec()))
    }

    /// The key in `SELFCKPT_KEY` (its bytes, taken literally), if set and
    /// not empty.
    pub fn from_env() -> Option<MacKey> {
        crate::settings::key().and_then(|k| MacKey::new(&k))
    }

    pub fn hmac(&self) -> HmacSha256 {
        // HMAC takes keys of any length; this cannot fail.
        match HmacSha256::new_from_slice(&self.0) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC accepts every key length"),
        }
    }
}

/// A `Read` adapter that feeds every byte read through it into an HMAC
/// (when a key is given).
pub struct MacTee<R> {
    inner: R,
    mac: Option<HmacSha256>,
}

impl<R: Read> MacTee<R> {
    pub fn new(inner: R, key: Option<&MacKey>) -> Self {
        MacTee {
            inner,
            mac: key.map(MacKey::hmac),
        }
    }

    /// The HMAC state over every byte read so far.
    pub fn snapshot(&self) -> Option<HmacSha256> {
        self.mac.clone()
    }

    pub fn keyed(&self) -> bool {
        self.mac.is_some()
    }
}

impl<R: Read> Read for MacTee<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(m) = &mut self.mac {
            m.update(&buf[..n]);
        }
        Ok(n)
    }
}

/// Decodes a MAC record payload into (algorithm, tag).
pub fn parse_payload(p: &[u8]) -> Option<[u8; TAG_LEN]> {
    if p.len() != MAC_PAYLOAD_LEN || p[0..4] != ALG_HMAC_SHA256.to_le_bytes() {
        return None;
    }
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&p[4..]);
    Some(tag)
}

/// Checks `tag` against the HMAC of the bytes before the MAC record, in
/// constant time.
pub fn check(state: HmacSha256, tag: &[u8; TAG_LEN]) -> Result<(), FormatError> {
    state
        .verify_slice(tag)
        .map_err(|_| FormatError::MacMismatch)
}

/// Appends a MAC record to the complete image in `f` (opened read-write),
/// after setting the header's minor version to one that knows MAC records.
/// Call before the image is fsynced and renamed.
pub fn seal_file(f: &mut std::fs::File, key: &MacKey) -> Result<(), FormatError> {
    let mut hb = [0u8; FILE_HEADER_LEN];
    f.seek(SeekFrom::Start(0))?;
    f.read_exact(&mut hb)?;
    let mut header = FileHeader::parse(&hb)?;
    if header.minor < super::format::MAC_SINCE_MINOR {
        header.minor = super::format::MAC_SINCE_MINOR;
        f.seek(SeekFrom::Start(0))?;
        f.write_all(&header.to_bytes())?;
    }
    f.seek(SeekFrom::Start(0))?;
    let mut mac = key.hmac();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        mac.update(&buf[..n]);
    }
    let tag = mac.finalize().into_bytes();
    let mut rec = [0u8; super::format::FRAME_LEN + MAC_PAYLOAD_LEN];
    let n = build_record(&mut rec, RecordKind::Mac, |e| {
        e.u32(ALG_HMAC_SHA256)?;
        e.bytes_raw(&tag)
    })
    .map_err(|source| FormatError::Malformed {
        offset: 0,
        kind: "MAC",
        source,
    })?;
    f.seek(SeekFrom::End(0))?;
    f.write_all(&rec[..n])?;
    Ok(())
}

/// [`seal_file`] for the suspended world: appends the MAC record to the
/// complete image behind descriptor `fd` (opened read-write, header
/// already at a minor that knows MAC records: every image this build
/// writes) with positioned reads into `buf` and one positioned write.
/// Allocates nothing (the HMAC state lives on the stack). `Err(errno)`:
/// nothing usable was appended.
pub fn seal_fd(fd: i32, key: &MacKey, buf: &mut [u8]) -> Result<(), i32> {
    // Borrowed: the caller keeps (and closes) the descriptor.
    let raw = core::mem::ManuallyDrop::new(crate::capture::sys::RawFd(fd));
    let mut mac = key.hmac();
    let mut at = 0u64;
    loop {
        let n = raw.pread(buf, at).map_err(|e| e.0)?;
        if n == 0 {
            break;
        }
        mac.update(&buf[..n]);
        at += n as u64;
    }
    let tag = mac.finalize().into_bytes();
    let mut rec = [0u8; super::format::FRAME_LEN + MAC_PAYLOAD_LEN];
    let n = build_record(&mut rec, RecordKind::Mac, |e| {
        e.u32(ALG_HMAC_SHA256)?;
        e.bytes_raw(&tag)
    })
    .map_err(|_| libc::EINVAL)?;
    let mut done = 0;
    while done < n {
        let w = raw
            .pwrite(&rec[done..n], at + done as u64)
            .map_err(|e| e.0)?;
        if w == 0 {
            return Err(libc::EIO);
        }
        done += w;
    }
    Ok(())
}

/// Authenticates the whole file `f` under `key` before anything in it is
/// believed: its last record must be a MAC record whose tag is the HMAC of
/// every byte before it. One sequential read, nothing decoded, nothing
/// acted on: the restarter calls this before it opens a path the image
/// names, stats a file or enters a namespace (the streaming reader checks
/// the MAC again, at END, over the bytes it actually uses).
pub fn authenticate_file(f: &std::fs::File, key: &MacKey) -> Result<(), FormatError> {
    use std::os::unix::fs::FileExt;
    let len = f.metadata()?.len();
    let rec_len = (super::format::FRAME_LEN + MAC_PAYLOAD_LEN) as u64;
    if len < FILE_HEADER_LEN as u64 + rec_len {
        return Err(FormatError::MacMissing);
    }
    let at = len - rec_len;
    let mut rec = [0u8; super::format::FRAME_LEN + MAC_PAYLOAD_LEN];
    f.read_exact_at(&mut rec, at)?;
    let (frame, payload) = rec.split_at(super::format::FRAME_LEN);
    let kind = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]);
    let plen = u64::from_le_bytes([
        frame[8], frame[9], frame[10], frame[11], frame[12], frame[13], frame[14], frame[15],
    ]);
    let tag = match parse_payload(payload) {
        Some(tag) if kind == RecordKind::Mac as u32 && plen == MAC_PAYLOAD_LEN as u64 => tag,
        _ => return Err(FormatError::MacMissing),
    };
    let mut mac = key.hmac();
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    while pos < at {
        let want = (at - pos).min(buf.len() as u64) as usize;
        f.read_exact_at(&mut buf[..want], pos)?;
        mac.update(&buf[..want]);
        pos += want as u64;
    }
    check(mac, &tag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::format::{FormatError, ImageReader, RecordChain};
    use crate::image::model::EndRecord;

    /// A minimal image the framing reader accepts: four records with
    /// arbitrary payloads, then END.
    fn tiny_image() -> Vec<u8> {
        let mut img = FileHeader::host().to_bytes().to_vec();
        let mut chain = RecordChain::default();
        let mut buf = [0u8; 256];
        for kind in [
            RecordKind::Meta,
            RecordKind::Regions,
            RecordKind::Kernel,
            RecordKind::Threads,
        ] {
            let n = build_record(&mut buf, kind, |e| e.bytes(b"payload")).unwrap();
            chain.add(&buf[..n]);
            img.extend_from_slice(&buf[..n]);
        }
        let end = EndRecord {
            records: chain.records,
            chunks: chain.chunks,
            chain: chain.digest(),
            // No regions to list (the framing reader does not read them).
            region_present: Some(Vec::new()),
            ..EndRecord::default()
        };
        let n = build_record(&mut buf, RecordKind::End, |e| end.encode(e)).unwrap();
        img.extend_from_slice(&buf[..n]);
        img
    }

    fn read_all(img: &[u8], key: Option<&MacKey>) -> Result<bool, FormatError> {
        let mut r = ImageReader::with_key(img, Some(img.len() as u64), key)?;
        while r.next_record()?.is_some() {}
        Ok(r.mac_present())
    }

    fn sealed(key: &MacKey) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("img");
        std::fs::write(&p, tiny_image()).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&p)
            .unwrap();
        seal_file(&mut f, key).unwrap();
        std::fs::read(&p).unwrap()
    }

    #[test]
    fn sealed_image_verifies_with_its_key_only() {
        let key = MacKey::new(b"secret").unwrap();
        let img = sealed(&key);
        assert!(read_all(&img, Some(&key)).unwrap());
        assert!(read_all(&img, None).unwrap(), "readable without key");
        let other = MacKey::new(b"other").unwrap();
        assert!(matches!(
            read_all(&img, Some(&other)),
            Err(FormatError::MacMismatch)
        ));
    }

    #[test]
    fn test_missing_mac_is_refused_when_a_key_is_set() {
        let key = MacKey::new(b"secret").unwrap();
        assert!(!read_all(&tiny_image(), None).unwrap());
        assert!(matches!(
            read_all(&tiny_image(), Some(&key)),
            Err(FormatError::MacMissing)
        ));
    }

    #[test]
    fn test_every_flipped_byte_of_a_sealed_image_is_refused() {
        let key = MacKey::new(b"secret").unwrap();
        let img = sealed(&key);
        for i in 0..img.len() {
            let mut bad = img.clone();
            bad[i] ^= 0x01;
            assert!(
                read_all(&bad, Some(&key)).is_err(),
                "flip at byte {i} accepted"
            );
        }
        // Truncated after END: the MAC record is gone.
        let cut = img.len() - (crate::image::format::FRAME_LEN + MAC_PAYLOAD_LEN);
        assert!(matches!(
            read_all(&img[..cut], Some(&key)),
            Err(FormatError::MacMissing)
        ));
    }

    #[test]
    fn a_whole_file_is_authenticated_before_it_is_parsed() {
        let key = MacKey::new(b"secret").unwrap();
        let img = sealed(&key);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("img");
        let check = |bytes: &[u8], key: &MacKey| {
            std::fs::write(&p, bytes).unwrap();
            authenticate_file(&std::fs::File::open(&p).unwrap(), key)
        };
        assert!(check(&img, &key).is_ok());
        assert!(matches!(
            check(&img, &MacKey::new(b"other").unwrap()),
            Err(FormatError::MacMismatch)
        ));
        assert!(matches!(
            check(&tiny_image(), &key),
            Err(FormatError::MacMissing)
        ));
        let mut bad = img.clone();
        bad[FILE_HEADER_LEN + 30] ^= 1;
        assert!(check(&bad, &key).is_err());
    }

    #[test]
    fn test_empty_key_is_no_key() {
        assert!(MacKey::new(b"").is_none());
        assert_eq!(
            format!("{:?}", MacKey::new(b"abc").unwrap()),
            "MacKey(<3 bytes>)"
        );
    }
}
