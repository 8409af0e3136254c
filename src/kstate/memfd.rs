//! memfd descriptors (`memfd_create(2)`), object kind 0x0100: the
//! descriptor's number, status flags and offset, the object's identity
//! (device, inode: what its mappings' region stamps name), size, name and
//! seals (`F_GET_SEALS`), and, for objects of at most [`INLINE_MAX`]
//! bytes, their data (the parts that hold data, by `SEEK_DATA`). Pages
//! the program maps come with the REGIONS' chunks too; a larger object
//! whose data is not all inside its mappings cannot come back and is
//! named as not restorable.
//!
//! Capture ([`capture`]) runs while the program's threads are suspended:
//! raw system calls into fixed buffers, never an allocation. The object
//! is made again by `restore::shared` (with the memory, before the
//! hand-over); the descriptor is put at its number there too.

use super::objects::{self, Kind, NotRestorable};
use super::{fds, CaptureBuffers, KstateError};
use crate::capture::sys::{self, PathBuf};
use crate::image::codec::{CodecError, Decoder, Encoder};

/// Objects up to this size carry their data in the entry.
pub const INLINE_MAX: u64 = 1 << 20;
/// Data of all memfd entries of one image together, at most.
const INLINE_TOTAL: u64 = 2 << 20;
/// Data runs of one entry, at most (more: the object is not restorable).
const MAX_RUNS: usize = 4096;
/// The seals a kernel knows (F_SEAL_SEAL..F_SEAL_EXEC).
pub const KNOWN_SEALS: u32 = 0x3f;

/// One memfd descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Memfd {
    pub fd: i32,
    /// fdinfo `flags`: access mode, `O_NONBLOCK`, `O_APPEND`, `O_CLOEXEC`.
    pub flags: u32,
    pub offset: u64,
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub seals: u32,
    /// The name given to `memfd_create` (without `memfd:`).
    pub name: Vec<u8>,
    /// (offset, bytes) of the object's data; empty when its mappings
    /// carry it or another entry of the same object does.
    pub data: Vec<(u64, Vec<u8>)>,
    /// Its permission bits (`fchmod` on a memfd is kept); None in images
    /// of before they were.
    pub mode: Option<u32>,
}

impl Memfd {
    pub fn encode(&self, e: &mut Encoder) -> Result<(), CodecError> {
        e.i32(self.fd)?;
        e.u32(self.flags)?;
        e.u64(self.offset)?;
        e.u64(self.dev)?;
        e.u64(self.ino)?;
        e.u64(self.size)?;
        e.u32(self.seals)?;
        e.bytes(&self.name)?;
        e.u32(self.data.len() as u32)?;
        for (off, b) in &self.data {
            e.u64(*off)?;
            e.bytes(b)?;
        }
        if let Some(mode) = self.mode {
            e.u32(mode)?;
        }
        Ok(())
    }

    pub fn decode(d: &mut Decoder) -> Result<Self, CodecError> {
        let mut m = Memfd {
            fd: d.i32()?,
            flags: d.u32()?,
            offset: d.u64()?,
            dev: d.u64()?,
            ino: d.u64()?,
            size: d.u64()?,
            seals: d.u32()?,
            name: d.bytes()?.to_vec(),
            data: Vec::new(),
            mode: None,
        };
        let n = d.count(12)?;
        for _ in 0..n {
            let off = d.u64()?;
            m.data.push((off, d.bytes()?.to_vec()));
        }
        // Trailing, optional: older images end before it.
        if d.remaining() >= 4 {
            m.mode = Some(d.u32()? & 0o7777);
        }
        Ok(m)
    }

    /// Values no kernel gives, refused before a restart acts on them.
    pub fn check(&self) -> Result<(), String> {
        let what = format!("memfd entry for fd {}", self.fd);
        if self.fd < 0 {
            return Err(format!("{what}: a negative descriptor"));
        }
        if self.seals & !KNOWN_SEALS != 0 {
            return Err(format!("{what}: unknown seals {:#x}", self.seals));
        }
        if self.size > i64::MAX as u64 {
            return Err(format!("{what}: size {} out of range", self.size));
        }
        if self.name.len() > 249 || self.name.contains(&0) || self.name.contains(&b'/') {
            return Err(format!("{what}: a name memfd_create would refuse"));
        }
        let mut end = 0u64;
        for (off, b) in &self.data {
            let e = off.checked_add(b.len() as u64);
            if *off < end || e.is_none_or(|e| e > self.size) {
                return Err(format!(
                    "{what}: data at {off} ({} bytes) out of order or beyond its size {}",
                    b.len(),
                    self.size
                ));
            }
            end = e.unwrap_or(u64::MAX);
        }
        Ok(())
    }

    /// One line of `inspect`.
    pub fn describe(&self) -> String {
        let bytes: usize = self.data.iter().map(|(_, b)| b.len()).sum();
        format!(
            "fd {} memfd {} size {} offset {} seals {}{}{}",
            self.fd,
            crate::image::show::shown(&self.name),
            self.size,
            self.offset,
            seal_words(self.seals),
            if self.data.is_empty() {
                String::new()
            } else {
                format!(" ({bytes} bytes of data held)")
            },
            super::eventfd::flag_words(self.flags)
        )
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": "memfd", "fd": self.fd, "flags": self.flags, "offset": self.offset,
            "dev": self.dev, "ino": self.ino, "size": self.size, "seals": self.seals,
            "name": String::from_utf8_lossy(&self.name),
            "data_bytes": self.data.iter().map(|(_, b)| b.len()).sum::<usize>(),
        })
    }
}

/// The seals as words ("seal,shrink,grow,write"), "none" for none.
pub fn seal_words(seals: u32) -> String {
    let names = [
        (libc::F_SEAL_SEAL, "seal"),
        (libc::F_SEAL_SHRINK, "shrink"),
        (libc::F_SEAL_GROW, "grow"),
        (libc::F_SEAL_WRITE, "write"),
        (libc::F_SEAL_FUTURE_WRITE, "future-write"),
        (0x20, "exec"),
    ];
    let v: Vec<&str> = names
        .iter()
        .filter(|(bit, _)| seals & *bit as u32 != 0)
        .map(|(_, n)| *n)
        .collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(",")
    }
}

/// The link of a memfd descriptor: `/memfd:NAME (deleted)`; its name.
fn memfd_name(link: &[u8]) -> Option<&[u8]> {
    link.strip_prefix(b"/memfd:")?.strip_suffix(b" (deleted)")
}

/// Writes one entry per memfd descriptor not skipped. No allocation.
/// `seen` remembers the objects whose data an earlier entry holds.
pub fn capture(
    e: &mut Encoder,
    bufs: &mut CaptureBuffers,
    skip_fd: &dyn Fn(i32) -> bool,
) -> Result<(), KstateError> {
    let mut seen = [(0u64, 0u64); 64];
    let mut n_seen = 0usize;
    let mut budget = INLINE_TOTAL;
    fds::for_each_fd(skip_fd, |fd| {
        let mut p = PathBuf::<48>::new();
        p.push(b"/proc/self/fd/").push_u64(fd as u64);
        let Ok(n) = sys::readlink(p.as_cstr_bytes(), bufs.path) else {
            return Ok(());
        };
        let Some(name) = memfd_name(&bufs.path[..n]) else {
            return Ok(());
        };
        let Ok(st) = sys::fstat(fd) else {
            return Ok(());
        };
        let mut p = PathBuf::<48>::new();
        p.push(b"/proc/self/fdinfo/").push_u64(fd as u64);
        let info = match sys::read_file(p.as_cstr_bytes(), bufs.text) {
            Ok(k) => &bufs.text[..k],
            Err(_) => return Ok(()),
        };
        let flags = fds::info_flags(fd, info);
        let offset = sys::field(info, b"pos:")
            .and_then(sys::parse_u64)
            .map_or(0, |v| v.0);
        let key = (st.st_dev, st.st_ino);
        let size = st.st_size as u64;
        // SAFETY: F_GET_SEALS on a descriptor of ours.
        let seals = unsafe { libc::fcntl(fd, libc::F_GET_SEALS) };
        let seals = if seals < 0 { 0 } else { seals as u32 };
        let first = !seen[..n_seen].contains(&key);
        if first && n_seen < seen.len() {
            seen[n_seen] = key;
            n_seen += 1;
        }
        let inline = first && size <= INLINE_MAX && size <= budget;
        if first && !inline && !covered_by_mappings(bufs.text, key, size) {
            return NotRestorable::capture(
                e,
                fd,
                "memfd",
                b"memfd: larger than the data an image entry holds, and not all of it is mapped",
            )
            .map_err(Into::into);
        }
        let mut err: Option<KstateError> = None;
        let written = objects::entry(e, Kind::Memfd, 0, |e| -> Result<(), CodecError> {
            e.i32(fd)?;
            e.u32(flags)?;
            e.u64(offset)?;
            e.u64(st.st_dev)?;
            e.u64(st.st_ino)?;
            e.u64(size)?;
            e.u32(seals)?;
            e.bytes(name)?;
            let at = e.reserve_u32()?;
            let mut runs = 0u32;
            if inline {
                // An open of its own for reading: the program's may be
                // write-only, and its offset must not move.
                let mut p = PathBuf::<48>::new();
                p.push(b"/proc/self/fd/").push_u64(fd as u64);
                let own = sys::RawFd::open(p.as_cstr_bytes(), libc::O_RDONLY, 0);
                let rd = own.as_ref().map_or(fd, |f| f.raw());
                let mut pos = 0u64;
                while pos < size && (runs as usize) < MAX_RUNS {
                    let (data, hole) = match data_run(rd, pos) {
                        Some(r) => r,
                        None => break,
                    };
                    let hole = hole.min(size);
                    if data >= hole {
                        break;
                    }
                    e.u64(data)?;
                    let len = (hole - data) as usize;
                    let read = e.bytes_with(len, |buf| {
                        let mut got = 0;
                        while got < len {
                            // SAFETY: pread into the unfilled tail of `buf`
                            // from the program's descriptor (positioned:
                            // its offset does not move).
                            let k = unsafe {
                                libc::pread(
                                    rd,
                                    buf[got..].as_mut_ptr().cast(),
                                    len - got,
                                    (data + got as u64) as i64,
                                )
                            };
                            if k < 0 {
                                return Err(());
                            }
                            if k == 0 {
                                break;
                            }
                            got += k as usize;
                        }
                        Ok::<usize, ()>(got)
                    })?;
                    if read.is_err() {
                        err = Some(KstateError::Parse("a memfd's data"));
                    }
                    budget -= len as u64;
                    runs += 1;
                    pos = hole;
                }
            }
            e.patch_u32(at, runs);
            e.u32(st.st_mode & 0o7777)?;
            Ok(())
        });
        // SEEK_DATA moved the descriptor's offset: put it back, whatever
        // became of the entry (the program goes on with it).
        // SAFETY: lseek on a descriptor of ours.
        unsafe { libc::lseek(fd, offset as i64, libc::SEEK_SET) };
        written?;
        match err {
            Some(x) => Err(x),
            None => Ok(()),
        }
    })
}

/// The next run of data at or after `pos`: (start, end), by SEEK_DATA and
/// SEEK_HOLE; None past the last data.
fn data_run(fd: i32, pos: u64) -> Option<(u64, u64)> {
    // SAFETY: lseek on a descriptor of ours (its offset is restored by
    // the caller's record, read before).
    let data = unsafe { libc::lseek(fd, pos as i64, libc::SEEK_DATA) };
    if data < 0 {
        return None;
    }
    // SAFETY: as above.
    let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
    (hole > data).then_some((data as u64, hole as u64))
}

/// Whether the mappings of object `key` in /proc/self/maps cover its
/// bytes [0, size) (then their chunks carry its data). Reads the maps in
/// pieces of `buf`; more than 64 mappings of it: not covered.
fn covered_by_mappings(buf: &mut [u8], key: (u64, u64), size: u64) -> bool {
    let mut spans = [(0u64, 0u64); 64];
    let mut k = 0;
    let mut fits = true;
    let walked = crate::capture::maps::for_each_self_map(buf, |ent| {
        if libc::makedev(ent.dev_major, ent.dev_minor) == key.0 && ent.inode == key.1 {
            if k == spans.len() {
                fits = false;
                return false;
            }
            spans[k] = (ent.offset, ent.offset + (ent.end - ent.start));
            k += 1;
        }
        true
    });
    if walked.is_err() || !fits {
        return false;
    }
    let spans = &mut spans[..k];
    spans.sort_unstable();
    let mut reach = 0u64;
    for &(s, e) in spans.iter() {
        if s > reach {
            return false;
        }
        reach = reach.max(e);
    }
    reach >= size
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_memfd_is_captured_with_its_data_seals_and_offset() {
        // SAFETY: a test memfd of our own.
        let fd = unsafe { libc::memfd_create(c"cap-test".as_ptr(), libc::MFD_ALLOW_SEALING) };
        assert!(fd >= 0);
        // SAFETY: writes and fcntl on our test descriptor.
        unsafe {
            assert_eq!(libc::ftruncate(fd, 3 * 4096), 0);
            assert_eq!(libc::pwrite(fd, b"hello".as_ptr().cast(), 5, 8192), 5);
            libc::lseek(fd, 100, libc::SEEK_SET);
            assert_eq!(libc::fcntl(fd, libc::F_ADD_SEALS, libc::F_SEAL_GROW), 0);
        }
        let out = super::super::captured(|e, bufs| capture(e, bufs, &|x| x != fd));
        let mut d = Decoder::new(&out);
        assert_eq!(d.u16().unwrap(), Kind::Memfd as u16);
        d.u16().unwrap();
        let len = d.u32().unwrap() as usize;
        let m = Memfd::decode(&mut Decoder::new(d.take(len).unwrap())).unwrap();
        assert_eq!(
            (m.fd, m.offset, m.size, m.seals, &m.name[..]),
            (
                fd,
                100,
                3 * 4096,
                libc::F_SEAL_GROW as u32,
                &b"cap-test"[..]
            )
        );
        let bytes: Vec<u8> = m.data.iter().flat_map(|(_, b)| b.clone()).collect();
        assert!(m.data.iter().all(|(o, _)| *o % 4096 == 0));
        assert_eq!(&bytes[bytes.len() - 4096..][..5], b"hello");
        m.check().unwrap();
        let mut buf = vec![0u8; 1 << 16];
        let mut e = Encoder::new(&mut buf);
        m.encode(&mut e).unwrap();
        let n = e.len();
        assert_eq!(Memfd::decode(&mut Decoder::new(&buf[..n])).unwrap(), m);
        let bad = Memfd {
            data: vec![(3 * 4096, vec![1])],
            ..m.clone()
        };
        assert!(bad.check().is_err());
        let bad = Memfd {
            seals: 0x100,
            ..m.clone()
        };
        assert!(bad.check().is_err());
        // SAFETY: closing the test descriptor.
        unsafe { libc::close(fd) };
    }
}
