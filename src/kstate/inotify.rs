//! inotify descriptors (inotify_init1(2)): their file status flags and
//! every watch: its watch descriptor, event mask and the file it watches.
//!
//! Capture ([`capture`]) runs while the program's threads are suspended:
//! it reads each inotify descriptor's /proc/self/fdinfo (`inotify wd:
//! ino: sdev: mask: ... f_handle:`) into the caller's fixed buffer and
//! writes one object entry (kind 0x0403) per descriptor; no allocation.
//! The kernel knows the inode a watch is on, not its path: the path is
//! the one `inotify_add_watch` was given (`interpose::inotify` notes it,
//! made absolute, with the inode it named), and the file handle the kernel
//! shows is kept too. A watch with neither is named as not restorable.
//!
//! Restore ([`restore`], stage Descriptors) runs in the restarter: a fresh
//! inotify descriptor at the same number with the same flags, each watch
//! re-added on its path (the noted one while it still names the inode,
//! otherwise the path of the file handle, which open_by_handle_at gives
//! with `CAP_DAC_READ_SEARCH`) with its mask, in watch-descriptor order.
//! The kernel gives watch descriptors one after the other from 1: where
//! one must be skipped, the watch is added and removed until its number
//! comes, and the `IN_IGNORED` events that makes are read away. Where a
//! watch cannot come back (no path, or a number beyond [`WD_LIMIT`]) the
//! restart refuses before anything is in place ([`problems_here`]).
//! Events queued at the checkpoint cannot come back (the kernel has no
//! way to queue them again, and reading them would take them from the
//! program): the checkpoint names them (`FIONREAD`), and the restart
//! refuses unless told that the program may see only the events of what
//! happens after it.

use super::{fds, CaptureBuffers, KstateError};
use crate::capture::sys;
use crate::image::codec::{CodecError, Decoder, Encoder};
use std::os::unix::ffi::OsStrExt;

/// The /proc/self/fd link of an inotify descriptor.
pub const LINK: &[u8] = b"anon_inode:inotify";

/// Highest watch descriptor reached by adding and removing watches.
pub const WD_LIMIT: i32 = 1 << 20;

/// The largest file handle (`MAX_HANDLE_SZ`).
const MAX_HANDLE: usize = 128;

/// One watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    pub wd: i32,
    pub mask: u32,
    pub ino: u64,
    /// The device, as stat(2) gives it.
    pub dev: u64,
    pub handle_type: i32,
    pub handle: Vec<u8>,
    /// The absolute path `inotify_add_watch` was given; empty: unknown.
    pub path: Vec<u8>,
}

/// One inotify descriptor (object kind 0x0403).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inotify {
    pub fd: i32,
    /// fdinfo `flags`: `O_NONBLOCK`, `O_CLOEXEC`.
    pub flags: u32,
    pub watches: Vec<Watch>,
}

impl Inotify {
    pub fn encode(&self, e: &mut Encoder) -> Result<(), CodecError> {
        e.i32(self.fd)?;
        e.u32(self.flags)?;
        e.u32(self.watches.len() as u32)?;
        for w in &self.watches {
            encode_watch(
                e,
                w.wd,
                w.mask,
                w.ino,
                w.dev,
                w.handle_type,
                &w.handle,
                &w.path,
            )?;
        }
        Ok(())
    }

    pub fn decode(d: &mut Decoder) -> Result<Self, CodecError> {
        let fd = d.i32()?;
        let flags = d.u32()?;
        let n = d.count(36)?;
        let watches = (0..n)
            .map(|_| {
                Ok(Watch {
                    wd: d.i32()?,
                    mask: d.u32()?,
                    ino: d.u64()?,
                    dev: d.u64()?,
                    handle_type: d.i32()?,
                    handle: d.bytes()?.to_vec(),
                    path: d.bytes()?.to_vec(),
                })
            })
            .collect::<Result<_, CodecError>>()?;
        Ok(Inotify { fd, flags, watches })
    }

    pub fn check(&self) -> Result<(), String> {
        if self.fd < 0 {
            return Err(format!("an inotify descriptor at fd {}", self.fd));
        }
        for (i, w) in self.watches.iter().enumerate() {
            if w.wd <= 0 || w.handle.len() > MAX_HANDLE || w.path.contains(&0) {
                return Err(format!("fd {} inotify: watch {} is damaged", self.fd, w.wd));
            }
            if self.watches[..i].iter().any(|v| v.wd == w.wd) {
                return Err(format!(
                    "fd {} inotify: watch {} is there twice",
                    self.fd, w.wd
                ));
            }
        }
        Ok(())
    }

    pub fn describe(&self) -> Vec<String> {
        let mut v = vec![format!(
            "fd {} inotify, {} watches{}",
            self.fd,
            self.watches.len(),
            if self.flags as i32 & libc::O_NONBLOCK != 0 {
                " nonblock"
            } else {
                ""
            }
        )];
        v.extend(self.watches.iter().map(|w| {
            format!(
                "  watch {} mask {:#x} on {}",
                w.wd,
                w.mask,
                if w.path.is_empty() {
                    format!("inode {} (path unknown)", w.ino)
                } else {
                    crate::image::show::shown(&w.path)
                }
            )
        }));
        v
    }

    pub fn json(&self) -> serde_json::Value {
        let watches: Vec<_> = self
            .watches
            .iter()
            .map(|w| {
                serde_json::json!({
                    "wd": w.wd, "mask": w.mask, "ino": w.ino, "dev": w.dev,
                    "path": String::from_utf8_lossy(&w.path),
                })
            })
            .collect();
        serde_json::json!({
            "kind": "inotify", "fd": self.fd, "flags": format!("{:#o}", self.flags),
            "watches": watches,
        })
    }
}

#[allow(clippy::too_many_arguments)]
fn encode_watch(
    e: &mut Encoder,
    wd: i32,
    mask: u32,
    ino: u64,
    dev: u64,
    handle_type: i32,
    handle: &[u8],
    path: &[u8],
) -> Result<(), CodecError> {
    e.i32(wd)?;
    e.u32(mask)?;
    e.u64(ino)?;
    e.u64(dev)?;
    e.i32(handle_type)?;
    e.bytes(handle)?;
    e.bytes(path)
}

/// `key:` followed by a hexadecimal number in one fdinfo line.
fn hex_field(line: &[u8], key: &[u8]) -> Option<u64> {
    let at = line.windows(key.len()).position(|w| w == key)?;
    sys::parse_hex(&line[at + key.len()..]).map(|(v, _)| v)
}

/// A kernel device number (`s_dev`, as fdinfo shows it) as stat gives it.
fn user_dev(sdev: u64) -> u64 {
    libc::makedev((sdev >> 20) as u32, (sdev & 0xf_ffff) as u32)
}

/// Writes one entry per inotify descriptor (a not-restorable entry for a
/// watch with neither path nor handle). No allocation.
pub fn capture(
    e: &mut Encoder,
    bufs: &mut CaptureBuffers,
    skip_fd: &dyn Fn(i32) -> bool,
) -> Result<(), KstateError> {
    fds::for_each_linked(bufs, skip_fd, LINK, &|_| {}, |fd, info| {
        let info = info.map_err(|errno| KstateError::Read {
            what: "an inotify descriptor's fdinfo",
            errno,
        })?;
        let lines = || {
            info.split(|&c| c == b'\n')
                .filter(|l| l.starts_with(b"inotify wd:"))
        };
        let mut unknown = false;
        super::objects::entry(e, super::objects::Kind::Inotify, 0, |e| {
            e.i32(fd)?;
            e.u32(fds::info_flags(fd, info))?;
            e.u32(lines().count() as u32)?;
            for line in lines() {
                let num = |key: &[u8]| hex_field(line, key);
                // The kernel prints the number in hex (`inotify wd:%x`).
                let wd = sys::parse_hex(&line[b"inotify wd:".len()..]).map_or(0, |(v, _)| v) as i32;
                let (ino, dev) = (
                    num(b" ino:").unwrap_or(0),
                    user_dev(num(b"sdev:").unwrap_or(0)),
                );
                let mut handle = [0u8; MAX_HANDLE];
                let n = (num(b"fhandle-bytes:").unwrap_or(0) as usize).min(MAX_HANDLE);
                let hex = line
                    .windows(9)
                    .position(|w| w == b"f_handle:")
                    .map_or(&[][..], |at| &line[at + 9..]);
                let mut got = 0;
                for (i, pair) in hex.chunks(2).take(n).enumerate() {
                    let Some((v, rest)) = sys::parse_hex(pair) else {
                        break;
                    };
                    if !rest.is_empty() {
                        break;
                    }
                    handle[i] = v as u8;
                    got = i + 1;
                }
                let path = crate::interpose::inotify::path_of(fd, wd, dev, ino).unwrap_or(&[]);
                unknown |= path.is_empty() && got == 0;
                encode_watch(
                    e,
                    wd,
                    num(b"mask:").unwrap_or(0) as u32,
                    ino,
                    dev,
                    num(b"fhandle-type:").unwrap_or(0) as i32,
                    &handle[..got],
                    path,
                )?;
            }
            Ok::<(), KstateError>(())
        })?;
        if unknown {
            super::objects::NotRestorable::capture(
                e,
                fd,
                "inotify",
                b"inotify: a watch whose path is unknown (added by a raw system call, and the kernel shows no file handle)",
            )?;
        }
        // Events waiting to be read: reading them would take them from
        // the program, and the kernel has no way to queue them again.
        let mut queued: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int.
        if unsafe { libc::ioctl(fd, libc::FIONREAD, &mut queued) } == 0 && queued > 0 {
            let mut t = sys::PathBuf::<200>::new();
            t.push(b"inotify: ")
                .push_u64(queued as u64)
                .push(b" bytes of events queued, not read yet: the kernel cannot queue them again (a restart loses them)");
            super::objects::NotRestorable::capture(e, fd, "inotify", t.as_bytes())?;
        }
        Ok(())
    })
}

/// The path the watch is on at restart, and whether it is a symbolic link
/// (watched itself: `IN_DONT_FOLLOW`).
fn path_for(w: &Watch) -> Result<(std::path::PathBuf, bool), String> {
    use std::os::unix::fs::MetadataExt;
    let same = |m: &std::fs::Metadata| m.ino() == w.ino && m.dev() == w.dev;
    if !w.path.is_empty() {
        let p = std::path::PathBuf::from(std::ffi::OsStr::from_bytes(&w.path));
        if let Ok(m) = std::fs::symlink_metadata(&p) {
            if same(&m) {
                return Ok((p, m.file_type().is_symlink()));
            }
        }
        if let Ok(m) = std::fs::metadata(&p) {
            if same(&m) {
                return Ok((p, false));
            }
        }
    }
    if let Some(p) = by_handle(w) {
        return Ok((p, false));
    }
    Err(format!(
        "watch {} on inode {}{}: {}",
        w.wd,
        w.ino,
        if w.path.is_empty() {
            String::new()
        } else {
            format!(" ({})", crate::image::show::shown(&w.path))
        },
        if w.handle.is_empty() {
            "its path is unknown"
        } else {
            "its path now names another file, and this user cannot open it by its file handle (CAP_DAC_READ_SEARCH)"
        }
    ))
}

/// The path of the watch's file found by its file handle, on a mount of
/// its device (open_by_handle_at: `CAP_DAC_READ_SEARCH`).
fn by_handle(w: &Watch) -> Option<std::path::PathBuf> {
    if w.handle.is_empty() {
        return None;
    }
    let (major, minor) = (libc::major(w.dev), libc::minor(w.dev));
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let dev = format!("{major}:{minor}");
    let point = mounts.lines().find_map(|l| {
        let mut f = l.split(' ');
        (f.nth(2)? == dev).then(|| f.nth(1).map(str::to_string))?
    })?;
    let mount = std::fs::File::open(&point).ok()?;
    #[repr(C)]
    struct Handle {
        bytes: u32,
        kind: i32,
        data: [u8; MAX_HANDLE],
    }
    let mut h = Handle {
        bytes: w.handle.len() as u32,
        kind: w.handle_type,
        data: [0; MAX_HANDLE],
    };
    h.data[..w.handle.len()].copy_from_slice(&w.handle);
    use std::os::fd::AsRawFd;
    // SAFETY: open_by_handle_at with a kernel-layout struct file_handle.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            mount.as_raw_fd(),
            &mut h as *mut Handle,
            libc::O_PATH | libc::O_CLOEXEC,
        )
    } as i32;
    if fd < 0 {
        return None;
    }
    let p = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok();
    // SAFETY: closing our descriptor.
    unsafe { libc::close(fd) };
    p.filter(|p| p.is_absolute() && p.exists())
}

/// What a restart on this machine cannot give back.
pub fn problems_here(x: &Inotify) -> Vec<super::Problem> {
    x.watches
        .iter()
        .filter_map(|w| {
            let why = if w.wd > WD_LIMIT {
                Some(format!(
                    "watch {}: numbers above {WD_LIMIT} are not reached",
                    w.wd
                ))
            } else {
                path_for(w).err()
            };
            why.map(|t| super::Problem::new("inotify", format!("fd {} inotify: {t}", x.fd)))
        })
        .collect()
}

/// Makes the descriptor anew at its number with its watches (see the
/// module header). A watch that cannot come back is said, the others stay.
pub fn restore(x: &Inotify) -> Vec<String> {
    let mut failed = Vec::new();
    // SAFETY: inotify_init1 has no memory preconditions.
    let tmp = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    if tmp < 0 {
        return vec![format!(
            "fd {} inotify: cannot be made anew: {}",
            x.fd,
            std::io::Error::last_os_error()
        )];
    }
    let mut watches: Vec<&Watch> = x.watches.iter().collect();
    watches.sort_by_key(|w| w.wd);
    for w in watches {
        let (path, link) = match path_for(w) {
            Ok(p) => p,
            Err(e) => {
                failed.push(format!("fd {} inotify: {e}", x.fd));
                continue;
            }
        };
        let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
            continue;
        };
        let mask = w.mask | if link { libc::IN_DONT_FOLLOW } else { 0 };
        let mut got = -1;
        for _ in 0..=WD_LIMIT {
            // SAFETY: a NUL-terminated path; the raw call, not the wrapper
            // (its table is the checkpointed program's).
            got =
                unsafe { libc::syscall(libc::SYS_inotify_add_watch, tmp, c.as_ptr(), mask) } as i32;
            if got < 0 || got >= w.wd {
                break;
            }
            // SAFETY: removing the watch just added under another number.
            unsafe { libc::inotify_rm_watch(tmp, got) };
        }
        if got != w.wd {
            failed.push(format!(
                "fd {} inotify: watch {} on {} came back as {got}",
                x.fd,
                w.wd,
                path.display()
            ));
        }
    }
    // The IN_IGNORED events of the watches removed on the way.
    let mut buf = [0u8; 4096];
    // SAFETY: reads into a local buffer from our non-blocking descriptor.
    while unsafe { libc::read(tmp, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
    if x.flags as i32 & libc::O_NONBLOCK == 0 {
        // SAFETY: F_SETFL on our descriptor: back to blocking.
        unsafe { libc::fcntl(tmp, libc::F_SETFL, 0) };
    }
    if let Err(e) = fds::install_at(tmp, x.fd, x.flags) {
        failed.push(format!("fd {} inotify: cannot be made anew: {e}", x.fd));
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inotify_descriptor_is_captured_and_comes_back_with_its_watches() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, b"").unwrap();
        std::fs::write(&b, b"").unwrap();
        let c = |p: &std::path::Path| std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
        // SAFETY: a test inotify descriptor and watches on our files.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
        // SAFETY: as above, through selfckpt's wrapper.
        let (wa, wb) = unsafe {
            let wa =
                crate::interpose::inotify::inotify_add_watch(fd, c(&a).as_ptr(), libc::IN_MODIFY);
            let tmp =
                crate::interpose::inotify::inotify_add_watch(fd, c(&b).as_ptr(), libc::IN_OPEN);
            libc::inotify_rm_watch(fd, tmp);
            let wb = crate::interpose::inotify::inotify_add_watch(
                fd,
                c(&b).as_ptr(),
                libc::IN_CLOSE_WRITE | libc::IN_DELETE_SELF,
            );
            (wa, wb)
        };
        assert_eq!((wa, wb), (1, 3));
        let out = super::super::captured(|e, bufs| capture(e, bufs, &|x| x != fd));
        let got = Inotify::decode(&mut Decoder::new(&out[8..])).unwrap();
        assert_eq!(got.fd, fd);
        let mut wds: Vec<(i32, u32)> = got.watches.iter().map(|w| (w.wd, w.mask)).collect();
        wds.sort();
        assert_eq!(
            wds,
            [
                (1, libc::IN_MODIFY),
                (3, libc::IN_CLOSE_WRITE | libc::IN_DELETE_SELF)
            ]
        );
        assert!(got.watches.iter().all(|w| !w.path.is_empty()), "{got:?}");
        assert!(got.check().is_ok());
        assert!(problems_here(&got).is_empty());
        // Made anew at the same number: the same watch numbers, events.
        assert!(restore(&got).is_empty());
        std::fs::write(&b, b"x").unwrap();
        let mut buf = [0u8; 256];
        // SAFETY: reads from the restored descriptor.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        assert!(n >= 16);
        let wd = i32::from_ne_bytes(buf[..4].try_into().unwrap());
        assert_eq!(wd, 3);
        let mut buf = vec![0u8; 4096];
        let mut e = Encoder::new(&mut buf);
        got.encode(&mut e).unwrap();
        let n = e.len();
        assert_eq!(Inotify::decode(&mut Decoder::new(&buf[..n])).unwrap(), got);
        // SAFETY: closing the test descriptor.
        unsafe { libc::close(fd) };
    }
}
