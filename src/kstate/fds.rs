//! Open file descriptors.
//!
//! Capture (`encode_all`) lists /proc/self/fd with getdents and reads each
//! descriptor's link, fstat and fdinfo (offset, flags) into fixed buffers:
//! it runs while threads are suspended and must not allocate.
//!
//! Restore (`reopen`) runs in the restarter: regular files, directories and
//! character devices are reopened at their old numbers, with their flags
//! (never O_CREAT/O_TRUNC/O_EXCL) and offsets. Descriptors 0-2 are the
//! restarter's own (the terminal that ran `restart`). Pipes, sockets and
//! other kinds cannot be reopened from a path: they are replaced by
//! /dev/null so the number stays taken, and reported.

use super::{CaptureBuffers, KstateError};
use crate::image::codec::Encoder;
use crate::image::model::{FdEntry, FdKind, FileStamp};
use crate::sys::{self, PathBuf, RawFd};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;

pub fn kind_of(mode: u32) -> FdKind {
    match mode & libc::S_IFMT {
        libc::S_IFREG => FdKind::Regular,
        libc::S_IFDIR => FdKind::Directory,
        libc::S_IFCHR => FdKind::CharDevice,
        libc::S_IFIFO => FdKind::Pipe,
        libc::S_IFSOCK => FdKind::Socket,
        _ => FdKind::Other,
    }
}

/// Encodes the count and every descriptor not skipped.
pub fn encode_all(
    e: &mut Encoder,
    bufs: &mut CaptureBuffers,
    skip_fd: &dyn Fn(i32) -> bool,
) -> Result<(), KstateError> {
    let dir = RawFd::open(b"/proc/self/fd\0", libc::O_RDONLY | libc::O_DIRECTORY, 0).map_err(
        |errno| KstateError::Read {
            what: "/proc/self/fd",
            errno,
        },
    )?;
    let at = e.reserve_u32()?;
    let mut count = 0u32;
    let mut dents = [0u8; 2048];
    loop {
        let n = dir
            .getdents(&mut dents)
            .map_err(|errno| KstateError::Read {
                what: "/proc/self/fd",
                errno,
            })?;
        if n == 0 {
            break;
        }
        let mut off = 0;
        while off + 19 <= n {
            let reclen = u16::from_ne_bytes([dents[off + 16], dents[off + 17]]) as usize;
            if reclen == 0 || off + reclen > n {
                break;
            }
            let name = &dents[off + 19..off + reclen];
            let name = &name[..name.iter().position(|&c| c == 0).unwrap_or(name.len())];
            off += reclen;
            let Some((fd, rest)) = sys::parse_u64(name) else {
                continue;
            };
            let fd = fd as i32;
            if !rest.is_empty() || fd == dir.raw() || skip_fd(fd) {
                continue;
            }
            if encode_one(e, bufs, fd)? {
                count += 1;
            }
        }
    }
    e.patch_u32(at, count);
    Ok(())
}

/// Encodes one descriptor; false if it vanished meanwhile.
fn encode_one(e: &mut Encoder, bufs: &mut CaptureBuffers, fd: i32) -> Result<bool, KstateError> {
    let mut p = PathBuf::<48>::new();
    p.push(b"/proc/self/fd/").push_u64(fd as u64);
    let Ok(path_len) = sys::readlink(p.as_cstr_bytes(), bufs.path) else {
        return Ok(false);
    };
    let Ok(st) = sys::fstat(fd) else {
        return Ok(false);
    };
    let mut p = PathBuf::<48>::new();
    p.push(b"/proc/self/fdinfo/").push_u64(fd as u64);
    let n = sys::read_file(p.as_cstr_bytes(), bufs.text).map_err(|errno| KstateError::Read {
        what: "/proc/self/fdinfo",
        errno,
    })?;
    let info = &bufs.text[..n];
    let offset = sys::field(info, b"pos:")
        .and_then(sys::parse_u64)
        .map_or(0, |(v, _)| v);
    let flags = sys::field(info, b"flags:")
        .and_then(sys::parse_octal)
        .unwrap_or(0) as u32;
    FdEntry {
        fd,
        kind: kind_of(st.st_mode) as u32,
        flags,
        offset,
        path: &bufs.path[..path_len],
        stamp: FileStamp::from_stat(&st),
    }
    .encode(e)?;
    Ok(true)
}

/// What happened to one descriptor at restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reopened {
    /// Reopened from its path at its offset.
    File,
    /// Left to the restarter (0, 1, 2).
    Inherited,
    /// Could not be reopened: /dev/null holds its number.
    Placeholder(String),
}

/// Flags that must never reach open(2) from an image.
const NEVER: i32 = libc::O_CREAT | libc::O_TRUNC | libc::O_EXCL;

/// Reopens every descriptor of the image at its number. Call after the
/// restarter has moved its own descriptors above every number in the image.
pub fn reopen(entries: &[FdEntry]) -> Vec<(i32, Reopened)> {
    entries
        .iter()
        .map(|ent| (ent.fd, reopen_one(ent)))
        .collect()
}

fn reopen_one(ent: &FdEntry) -> Reopened {
    if (0..=2).contains(&ent.fd) {
        return Reopened::Inherited;
    }
    let kind = FdKind::from_u32(ent.kind).unwrap_or(FdKind::Other);
    let reopenable = matches!(
        kind,
        FdKind::Regular | FdKind::Directory | FdKind::CharDevice
    ) && ent.path.starts_with(b"/")
        && !ent.path.ends_with(b" (deleted)");
    let flags = (ent.flags as i32) & !NEVER;
    let result = if reopenable {
        open_at_number(ent.path, flags, ent.fd).and_then(|()| {
            if kind == FdKind::Regular {
                // SAFETY: lseek on the descriptor we just installed.
                let r = unsafe { libc::lseek(ent.fd, ent.offset as i64, libc::SEEK_SET) };
                if r < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        })
    } else {
        Err(std::io::Error::other(format!(
            "a {} cannot be reopened from a path",
            kind.name()
        )))
    };
    match result {
        Ok(()) => Reopened::File,
        Err(err) => {
            let _ = open_at_number(
                b"/dev/null",
                libc::O_RDWR | (flags & libc::O_CLOEXEC),
                ent.fd,
            );
            Reopened::Placeholder(format!(
                "fd {} ({}): {}",
                ent.fd,
                String::from_utf8_lossy(ent.path),
                err
            ))
        }
    }
}

fn open_at_number(path: &[u8], flags: i32, fd: i32) -> std::io::Result<()> {
    let c = CString::new(std::ffi::OsStr::from_bytes(path).as_bytes())
        .map_err(|_| std::io::Error::other("path contains a NUL byte"))?;
    // SAFETY: c is a valid C string; flags never include O_CREAT, so no mode.
    let tmp = unsafe { libc::open(c.as_ptr(), flags & !libc::O_CLOEXEC & !NEVER) };
    if tmp < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if tmp != fd {
        let dflags = if flags & libc::O_CLOEXEC != 0 {
            libc::O_CLOEXEC
        } else {
            0
        };
        // SAFETY: dup3 onto a number the restarter has freed; tmp is ours.
        let r = unsafe { libc::dup3(tmp, fd, dflags) };
        let err = std::io::Error::last_os_error();
        // SAFETY: closing our temporary descriptor.
        unsafe { libc::close(tmp) };
        if r < 0 {
            return Err(err);
        }
    } else if flags & libc::O_CLOEXEC != 0 {
        // SAFETY: setting FD_CLOEXEC on our descriptor.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::codec::Decoder;
    use std::io::{Seek, SeekFrom, Write};

    #[test]
    fn captures_offset_and_flags_of_an_open_file() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"0123456789").unwrap();
        f.seek(SeekFrom::Start(4)).unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
        let mut out = vec![0u8; 1 << 16];
        let (mut t, mut p, mut a, mut c) = ([0u8; 4096], [0u8; 4096], [0u8; 16], [0u8; 16]);
        let mut bufs = CaptureBuffers {
            text: &mut t,
            path: &mut p,
            auxv: &mut a,
            cwd: &mut c,
        };
        let mut e = Encoder::new(&mut out);
        encode_all(&mut e, &mut bufs, &|_| false).unwrap();
        let n = e.len();
        let mut d = Decoder::new(&out[..n]);
        let count = d.count(FdEntry::MIN_ENCODED_LEN).unwrap();
        let ents: Vec<_> = (0..count)
            .map(|_| FdEntry::decode(&mut d).unwrap())
            .collect();
        let ent = ents.iter().find(|x| x.fd == fd).expect("our fd is listed");
        assert_eq!(ent.offset, 4);
        assert_eq!(ent.kind, FdKind::Regular as u32);
        assert_eq!(ent.flags as i32 & libc::O_ACCMODE, libc::O_RDWR);
    }

    #[test]
    fn reopen_restores_number_offset_and_never_truncates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        std::fs::write(&path, b"keep me intact").unwrap();
        let pb = path.as_os_str().as_bytes();
        let ent = FdEntry {
            fd: 987,
            kind: FdKind::Regular as u32,
            flags: (libc::O_RDWR | libc::O_TRUNC | libc::O_CREAT) as u32,
            offset: 5,
            path: pb,
            stamp: FileStamp::default(),
        };
        assert_eq!(reopen_one(&ent), Reopened::File);
        // SAFETY: lseek query on the reopened descriptor.
        assert_eq!(unsafe { libc::lseek(987, 0, libc::SEEK_CUR) }, 5);
        assert_eq!(std::fs::read(&path).unwrap(), b"keep me intact");
        // SAFETY: closing the test's descriptor.
        unsafe { libc::close(987) };
        let pipe = FdEntry {
            kind: FdKind::Pipe as u32,
            path: b"pipe:[1234]",
            ..ent
        };
        assert!(matches!(reopen_one(&pipe), Reopened::Placeholder(_)));
        // SAFETY: closing the placeholder.
        unsafe { libc::close(987) };
    }
}
