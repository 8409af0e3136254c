//! Deleted-but-open regular files (object kind 0x0201, format 1.8): a
//! file the process holds open after every name of it was removed (a
//! database's temporary file, a log rotated away; not a memfd, which is a
//! memory object). One entry per file:
//! its contents (bounded by `SELFCKPT_MAX_DELETED_FILE`, default 1 MiB, and
//! by the room left in the KERNEL record buffer) with its holes (a sparse
//! file comes back sparse: `SEEK_HOLE`/`SEEK_DATA` say what they said),
//! mode and size, and every
//! descriptor with its own open file description (told apart with
//! `kcmp(KCMP_FILE)`), flags and offset. A file too large is named at
//! checkpoint time (`NotRestorable` kind `deleted_file`): restart refuses
//! it, and `--unrestorable=deleted_file` gives an empty unlinked file in
//! its place.
//!
//! Capture ([`capture`]) runs while the program's threads are suspended:
//! fstat, fcntl, lseek, kcmp and positioned reads straight into the
//! record; never an allocation.
//!
//! Restore ([`restore`], stage Descriptors) runs in the restarter: an
//! unlinked file made with `O_TMPFILE` in the directory the file was in
//! (where that still exists and allows it), else in `$TMPDIR` (or /tmp),
//! else created under a random name there and unlinked at once; the
//! contents written back, each description opened through
//! `/proc/self/fd` with its flags and put at its offset, the mode set
//! last. It never writes into a file that has a name.

use super::fds::{last_err, reopen_via, Temps};
use super::pipes::same_description;
use super::{CaptureBuffers, KstateError};
use crate::capture::sys::{self, PathBuf};
use crate::image::codec::{CodecError, Decoder, Encoder};
use std::sync::atomic::{AtomicU64, Ordering};

/// The kind `--unrestorable` names.
pub const KIND: &str = "deleted_file";

/// The default of `SELFCKPT_MAX_DELETED_FILE`.
pub const DEFAULT_MAX: u64 = 1 << 20;
/// Room kept in the record buffer for what follows in KERNEL (at most
/// half of what is left).
const RESERVE: usize = 256 << 10;
/// Most deleted files and descriptors of one.
const MAX_FILES: usize = 64;
const MAX_ENDS: usize = 64;
/// The suffix the kernel gives an unlinked file's path.
const DELETED: &[u8] = b" (deleted)";

/// Flags `F_SETFL` can set on a regular file.
const SETTABLE: i32 =
    libc::O_APPEND | libc::O_NONBLOCK | libc::O_DIRECT | libc::O_ASYNC | libc::O_NOATIME;

static MAX: AtomicU64 = AtomicU64::new(DEFAULT_MAX);

/// Sets the largest contents a checkpoint saves (at install).
pub fn set_max(bytes: u64) {
    MAX.store(bytes, Ordering::Relaxed);
}

/// One descriptor of a deleted file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct End {
    pub fd: i32,
    /// Index of the first descriptor sharing its open file description.
    pub desc: u32,
    /// `F_GETFL` (no `O_LARGEFILE`), with `O_CLOEXEC` for `FD_CLOEXEC`.
    pub flags: u32,
    pub offset: u64,
}

impl End {
    const ENCODED_LEN: usize = 20;
}

/// One deleted file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Deleted {
    pub dev: u64,
    pub ino: u64,
    /// `st_mode` (permission bits used).
    pub mode: u32,
    pub size: u64,
    /// Whether `data` holds the contents (else: too large, named as not
    /// restorable).
    pub saved: bool,
    /// Its last path, without the kernel's " (deleted)".
    pub path: Vec<u8>,
    pub data: Vec<u8>,
    pub ends: Vec<End>,
    /// Its owner (uid, gid); None in images of before it was kept.
    pub owner: Option<(u32, u32)>,
    /// The holes of the saved contents ([start, end) each, in order);
    /// empty: none, or an image of before they were kept.
    pub holes: Vec<(u64, u64)>,
}

impl Deleted {
    pub fn encode(&self, e: &mut Encoder) -> Result<(), CodecError> {
        e.u64(self.dev)?;
        e.u64(self.ino)?;
        e.u32(self.mode)?;
        e.u64(self.size)?;
        e.u8(self.saved as u8)?;
        e.bytes(&self.path)?;
        e.bytes(&self.data)?;
        e.u32(self.ends.len() as u32)?;
        for x in &self.ends {
            e.i32(x.fd)?;
            e.u32(x.desc)?;
            e.u32(x.flags)?;
            e.u64(x.offset)?;
        }
        if let Some((uid, gid)) = self.owner {
            e.u32(uid)?;
            e.u32(gid)?;
            e.u32(self.holes.len() as u32)?;
            for &(s, end) in &self.holes {
                e.u64(s)?;
                e.u64(end)?;
            }
        }
        Ok(())
    }

    pub fn decode(d: &mut Decoder) -> Result<Self, CodecError> {
        let (dev, ino, mode, size) = (d.u64()?, d.u64()?, d.u32()?, d.u64()?);
        let saved = match d.u8()? {
            0 => false,
            1 => true,
            v => {
                return Err(CodecError::BadValue {
                    field: "saved flag of a deleted file",
                    value: v as u64,
                })
            }
        };
        let path = d.bytes()?.to_vec();
        let data = d.bytes()?.to_vec();
        let n = d.count(End::ENCODED_LEN)?;
        let ends = (0..n)
            .map(|_| {
                Ok(End {
                    fd: d.i32()?,
                    desc: d.u32()?,
                    flags: d.u32()?,
                    offset: d.u64()?,
                })
            })
            .collect::<Result<_, CodecError>>()?;
        // Trailing, optional: older images end before it.
        let owner = if d.remaining() >= 8 {
            Some((d.u32()?, d.u32()?))
        } else {
            None
        };
        // Trailing, optional (after the owner): the holes.
        let mut holes = Vec::new();
        if owner.is_some() && d.remaining() >= 4 {
            let n = d.count(16)?;
            for _ in 0..n {
                holes.push((d.u64()?, d.u64()?));
            }
        }
        Ok(Deleted {
            dev,
            ino,
            mode,
            size,
            saved,
            path,
            data,
            ends,
            owner,
            holes,
        })
    }

    /// The descriptors the restart makes: those above stdio (0-2 keep
    /// `restore::stdio`'s policy: the restarter's, or refused as gone).
    pub fn fds(&self) -> impl Iterator<Item = i32> + '_ {
        self.ends.iter().map(|x| x.fd).filter(|&fd| fd > 2)
    }

    fn shown(&self) -> String {
        crate::image::show::shown(&self.path)
    }

    /// Hostile values: refused before a restart acts on them.
    pub fn check(&self) -> Result<(), String> {
        let name = || format!("the deleted file {}", self.shown());
        let mut prev = 0u64;
        for &(s, e) in &self.holes {
            if s >= e || s < prev || e > self.size || !self.saved {
                return Err(format!(
                    "{}: a hole {s}-{e} out of order, empty, past its size or without contents",
                    name()
                ));
            }
            prev = e;
        }
        if self.saved && self.data.len() as u64 != self.size {
            return Err(format!(
                "{}: {} bytes saved of {}",
                name(),
                self.data.len(),
                self.size
            ));
        }
        if !self.saved && !self.data.is_empty() {
            return Err(format!("{}: contents of a file not saved", name()));
        }
        if self.ends.is_empty() || self.ends.len() > MAX_ENDS || self.path.contains(&0) {
            return Err(format!("{}: {} descriptors", name(), self.ends.len()));
        }
        for (i, x) in self.ends.iter().enumerate() {
            if x.fd < 0
                || x.desc as usize > i
                || self.ends[x.desc as usize].desc != x.desc
                || x.flags as i32 & libc::O_ACCMODE == libc::O_ACCMODE
                || x.offset > i64::MAX as u64
            {
                return Err(format!("{}: fd {} has impossible values", name(), x.fd));
            }
        }
        Ok(())
    }

    /// One line of `inspect`.
    pub fn describe(&self) -> String {
        let ends: Vec<String> = self
            .ends
            .iter()
            .map(|x| {
                format!(
                    "fd {} {} at {}",
                    x.fd,
                    match x.flags as i32 & libc::O_ACCMODE {
                        libc::O_RDONLY => "read",
                        libc::O_WRONLY => "write",
                        _ => "read-write",
                    },
                    x.offset
                )
            })
            .collect();
        format!(
            "deleted file {} {} bytes{}: {}",
            self.shown(),
            self.size,
            if self.saved { " saved" } else { " not saved" },
            ends.join(", ")
        )
    }

    /// `inspect --json`.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": KIND,
            "path": self.shown(),
            "size": self.size,
            "mode": format!("{:o}", self.mode & 0o7777),
            "saved": self.saved,
            "ends": self.ends.iter().map(|x| serde_json::json!({
                "fd": x.fd, "desc": x.desc, "flags": x.flags, "offset": x.offset,
            })).collect::<Vec<_>>(),
        })
    }
}

// ---- Capture (suspended world: no allocation) ----

/// Whether `st` is a regular file without a name (a message queue is
/// one too: the caller leaves those to `kstate::mqueue`).
fn is_deleted(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFREG && st.st_nlink == 0
}

/// Whether `fd` is a memfd (`/memfd:NAME (deleted)`): a memory object,
/// with seals, not a file that lost its name; left to the memory objects.
fn is_memfd(bufs: &mut CaptureBuffers, fd: i32) -> bool {
    let mut p = PathBuf::<48>::new();
    p.push(b"/proc/self/fd/").push_u64(fd as u64);
    sys::readlink(p.as_cstr_bytes(), bufs.path)
        .is_ok_and(|n| bufs.path[..n].starts_with(b"/memfd:"))
}

/// Writes the entry of every deleted file the process holds open, and a
/// `NotRestorable` entry for each too large to save. No allocation.
pub fn capture(
    e: &mut Encoder,
    bufs: &mut CaptureBuffers,
    skip_fd: &dyn Fn(i32) -> bool,
) -> Result<(), KstateError> {
    let mut seen = [(0u64, 0u64); MAX_FILES];
    let mut count = 0usize;
    let mut ends = [End::default(); MAX_ENDS];
    super::fds::for_each_fd(skip_fd, |fd| {
        let Ok(st) = sys::fstat(fd) else {
            return Ok(());
        };
        let id = (st.st_dev, st.st_ino);
        if !is_deleted(&st)
            || seen[..count].contains(&id)
            || is_memfd(bufs, fd)
            || super::mqueue::is_mqueue(fd)
        {
            return Ok(());
        }
        if count == MAX_FILES {
            return Err(KstateError::Files(
                "the process holds more than 64 deleted files",
            ));
        }
        seen[count] = id;
        count += 1;
        let mut n = 0usize;
        super::fds::for_each_fd(skip_fd, |fd| {
            match sys::fstat(fd) {
                Ok(s) if (s.st_dev, s.st_ino) == id => {}
                _ => return Ok(()),
            }
            if n == MAX_ENDS {
                return Err(KstateError::Files(
                    "a deleted file has more than 64 descriptors",
                ));
            }
            // SAFETY: an lseek query on a descriptor of ours.
            let off = unsafe { libc::lseek(fd, 0, libc::SEEK_CUR) };
            let Some(flags) = super::fds::fd_flags(fd) else {
                return Ok(());
            };
            let desc = ends[..n]
                .iter()
                .position(|x| same_description(x.fd, fd))
                .map_or(n, |i| ends[i].desc as usize);
            ends[n] = End {
                fd,
                desc: desc as u32,
                flags,
                offset: off.max(0) as u64,
            };
            n += 1;
            Ok(())
        })?;
        if n == 0 {
            return Ok(());
        }
        capture_one(e, bufs, &st, &ends[..n])
    })
}

fn capture_one(
    e: &mut Encoder,
    bufs: &mut CaptureBuffers,
    st: &libc::stat,
    ends: &[End],
) -> Result<(), KstateError> {
    let mut p = PathBuf::<48>::new();
    p.push(b"/proc/self/fd/").push_u64(ends[0].fd as u64);
    let mut path_len = sys::readlink(p.as_cstr_bytes(), bufs.path).unwrap_or(0);
    if bufs.path[..path_len].ends_with(DELETED) {
        path_len -= DELETED.len();
    }
    let size = st.st_size.max(0) as u64;
    let max = MAX.load(Ordering::Relaxed);
    let left = e.remaining();
    let fits = (size as usize).saturating_add(RESERVE.min(left / 2)) <= left;
    let saved = size <= max && fits;
    // A descriptor to read from: one the program reads through, else the
    // file opened again for reading.
    let readable = ends
        .iter()
        .find(|x| x.flags as i32 & libc::O_ACCMODE != libc::O_WRONLY)
        .map(|x| x.fd);
    let reopened = match (saved, readable) {
        (true, None) => {
            sys::RawFd::open(p.as_cstr_bytes(), libc::O_RDONLY | libc::O_CLOEXEC, 0).ok()
        }
        _ => None,
    };
    let from = readable.or(reopened.as_ref().map(|f| f.raw()));
    let saved = saved && from.is_some();
    super::objects::entry(e, super::objects::Kind::DeletedFile, 0, |e| {
        e.u64(st.st_dev)?;
        e.u64(st.st_ino)?;
        e.u32(st.st_mode)?;
        e.u64(size)?;
        e.u8(saved as u8)?;
        e.bytes(&bufs.path[..path_len])?;
        match from.filter(|_| saved) {
            Some(fd) => e
                .bytes_with(size as usize, |buf| pread_all(fd, buf))?
                .map_err(|_| KstateError::Files("cannot read a deleted file's contents"))?,
            None => e.bytes(b"")?,
        }
        e.u32(ends.len() as u32)?;
        for x in ends {
            e.i32(x.fd)?;
            e.u32(x.desc)?;
            e.u32(x.flags)?;
            e.u64(x.offset)?;
        }
        e.u32(st.st_uid)?;
        e.u32(st.st_gid)?;
        let at = e.reserve_u32()?;
        let mut count = 0u32;
        if saved {
            // A description of our own (the one reopened to read from, or
            // a new one): the program's offsets stay.
            let opened = match &reopened {
                Some(_) => None,
                None => {
                    sys::RawFd::open(p.as_cstr_bytes(), libc::O_RDONLY | libc::O_CLOEXEC, 0).ok()
                }
            };
            if let Some(own) = reopened.as_ref().or(opened.as_ref()) {
                for_each_hole(own.raw(), size, |s, end| {
                    e.u64(s)?;
                    e.u64(end)?;
                    count += 1;
                    Ok::<(), CodecError>(())
                })?;
            }
        }
        e.patch_u32(at, count);
        Ok::<(), KstateError>(())
    })?;
    if !saved {
        let mut text = [0u8; 240];
        let mut t = super::unrestorable::Words::new(&mut text);
        t.push(b"deleted file ");
        t.push(&bufs.path[..path_len.min(120)]);
        t.push(b" (");
        t.push_u64(size);
        t.push(if from.is_none() {
            b" bytes) cannot be read to be saved".as_slice()
        } else if size > max {
            b" bytes) is larger than SELFCKPT_MAX_DELETED_FILE (".as_slice()
        } else {
            b" bytes) does not fit this checkpoint's record buffer".as_slice()
        });
        if from.is_some() && size > max {
            t.push_u64(max);
            t.push(b" bytes)");
        }
        let len = t.len();
        super::objects::NotRestorable::capture(e, ends[0].fd, KIND, &text[..len])?;
    }
    Ok(())
}

/// Most holes kept of one file (a file with more comes back with the
/// first ones only: its contents are whole either way).
const MAX_HOLES: usize = 4096;

/// Calls `f` with each hole of the first `size` bytes of `fd` (moving
/// `fd`'s offset: a description of the caller's own). No allocation.
fn for_each_hole<E>(
    fd: i32,
    size: u64,
    mut f: impl FnMut(u64, u64) -> Result<(), E>,
) -> Result<(), E> {
    let mut at = 0i64;
    for _ in 0..MAX_HOLES {
        // SAFETY: lseek on the caller's descriptor.
        let hole = unsafe { libc::lseek(fd, at, libc::SEEK_HOLE) };
        if hole < 0 || hole as u64 >= size {
            return Ok(());
        }
        // SAFETY: as above.
        let data = unsafe { libc::lseek(fd, hole, libc::SEEK_DATA) };
        let end = if data < 0 {
            size
        } else {
            (data as u64).min(size)
        };
        if end > hole as u64 {
            f(hole as u64, end)?;
        }
        if data < 0 || end >= size {
            return Ok(());
        }
        at = data;
    }
    Ok(())
}

/// Reads the whole of `buf` from offset 0 of `fd` (positioned: the
/// program's offset stays); the count read, or an error if the file is
/// shorter now.
fn pread_all(fd: i32, buf: &mut [u8]) -> Result<usize, ()> {
    let mut off = 0usize;
    while off < buf.len() {
        // SAFETY: a positioned read into the free part of `buf`.
        let n = unsafe {
            libc::pread(
                fd,
                buf[off..].as_mut_ptr().cast(),
                buf.len() - off,
                off as i64,
            )
        };
        if n <= 0 {
            return Err(());
        }
        off += n as usize;
    }
    Ok(off)
}

// ---- Restore (the restarter: ordinary Rust) ----

/// The directory to make the file in: its own if it still is one, else
/// the temporary directory.
fn dirs(x: &Deleted) -> Vec<std::path::PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let mut v = Vec::new();
    let p = std::path::Path::new(std::ffi::OsStr::from_bytes(&x.path));
    if let Some(parent) = p.parent().filter(|d| d.is_dir()) {
        v.push(parent.to_path_buf());
    }
    v.push(std::env::temp_dir());
    v
}

/// A new unlinked file, read-write, owner-only until [`restore`] sets
/// its mode: `O_TMPFILE` where the file system allows it, else a random
/// name created exclusively and unlinked at once.
fn unlinked_file(x: &Deleted) -> std::io::Result<i32> {
    use std::os::unix::ffi::OsStrExt;
    let mut last = std::io::Error::other("no directory to make it in");
    for dir in dirs(x) {
        let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::other("a path with a NUL byte"))?;
        // SAFETY: a valid C string; O_TMPFILE takes a mode.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC,
                0o600,
            )
        };
        if fd >= 0 {
            return Ok(fd);
        }
        last = last_err();
        for _ in 0..8 {
            let name = dir.join(format!(".selfckpt-deleted-{:016x}", random()));
            let c = std::ffi::CString::new(name.as_os_str().as_bytes())
                .map_err(|_| std::io::Error::other("a path with a NUL byte"))?;
            // SAFETY: a valid C string; O_CREAT | O_EXCL with a mode, never
            // an existing file.
            let fd = unsafe {
                libc::open(
                    c.as_ptr(),
                    libc::O_CREAT
                        | libc::O_EXCL
                        | libc::O_RDWR
                        | libc::O_CLOEXEC
                        | libc::O_NOFOLLOW,
                    0o600,
                )
            };
            if fd >= 0 {
                // SAFETY: removing the name we just created.
                unsafe { libc::unlink(c.as_ptr()) };
                return Ok(fd);
            }
            last = last_err();
            if last.raw_os_error() != Some(libc::EEXIST) {
                break;
            }
        }
    }
    Err(last)
}

/// A random number (names of temporaries).
pub(crate) fn random() -> u64 {
    let mut v = [0u8; 8];
    // SAFETY: getrandom writes at most 8 bytes into `v`.
    unsafe { libc::getrandom(v.as_mut_ptr().cast(), 8, 0) };
    u64::from_ne_bytes(v) ^ std::process::id() as u64
}

/// Makes the file again, unlinked, with its descriptors at their numbers;
/// returns warnings (an error leaves the numbers free). `mapped`: the
/// restarter's descriptor of the object the program's shared mappings of
/// this very file were made from (`restore::shared`): the descriptors are
/// opened on it, so that what is written through them shows in the
/// mappings, as it did.
pub fn restore(x: &Deleted, mapped: Option<i32>) -> Result<Vec<String>, String> {
    let mut warn = Vec::new();
    let name = |fd: i32| format!("fd {fd} (deleted file {})", x.shown());
    let Some(first) = x.fds().next() else {
        return Ok(warn);
    };
    let mut temps = Temps::new(x.fds().max().unwrap_or(2));
    let made = match mapped {
        Some(obj) => reopen_via(obj, libc::O_RDWR),
        None => unlinked_file(x),
    };
    let file = temps
        .keep(made)
        .map_err(|e| format!("{}: cannot make an unlinked file: {e}", name(first)))?;
    if x.saved {
        // The data between the holes; the size last (a hole at the end).
        let mut off = 0usize;
        let mut holes = x.holes.iter().peekable();
        while off < x.data.len() {
            if let Some(&&(s, e)) = holes.peek() {
                if off as u64 >= s {
                    off = (e as usize).max(off);
                    holes.next();
                    continue;
                }
            }
            let upto = holes
                .peek()
                .map_or(x.data.len(), |h| (h.0 as usize).min(x.data.len()));
            // SAFETY: a positioned write from our buffer to our file.
            let n = unsafe {
                libc::pwrite(
                    file,
                    x.data[off..upto].as_ptr().cast(),
                    upto - off,
                    off as i64,
                )
            };
            if n <= 0 {
                return Err(format!(
                    "{}: cannot write its contents back: {}",
                    name(first),
                    last_err()
                ));
            }
            off += n as usize;
        }
        // SAFETY: ftruncate of our new file to its size.
        if unsafe { libc::ftruncate(file, x.size as i64) } != 0 {
            return Err(format!(
                "{}: cannot give it its size back: {}",
                name(first),
                last_err()
            ));
        }
    }
    let mut descs: Vec<(u32, i32)> = Vec::new();
    for e in x.ends.iter().filter(|e| e.fd > 2) {
        if descs.iter().any(|d| d.0 == e.desc) {
            continue;
        }
        let access = e.flags as i32 & libc::O_ACCMODE;
        let fd = temps
            .keep(reopen_via(file, access))
            .map_err(|err| format!("{}: {err}", name(e.fd)))?;
        // SAFETY: fcntl and lseek on our temporary descriptor.
        unsafe {
            if libc::fcntl(fd, libc::F_SETFL, e.flags as i32 & SETTABLE) != 0 {
                warn.push(format!(
                    "{}: its flags {:o} cannot be given back: {}",
                    name(e.fd),
                    e.flags as i32 & SETTABLE,
                    last_err()
                ));
                libc::fcntl(
                    fd,
                    libc::F_SETFL,
                    e.flags as i32 & SETTABLE & !libc::O_DIRECT,
                );
            }
            if libc::lseek(fd, e.offset as i64, libc::SEEK_SET) < 0 {
                return Err(format!("{}: {}", name(e.fd), last_err()));
            }
        }
        descs.push((e.desc, fd));
    }
    // Its owner first (a chown clears set-id bits), then its mode.
    if let Some((uid, gid)) = x.owner {
        // SAFETY: fchown on our file.
        if unsafe { libc::fchown(file, uid, gid) } != 0 {
            warn.push(format!(
                "{}: its owner {uid}:{gid} cannot be given back: {}",
                name(first),
                last_err()
            ));
        }
    }
    // SAFETY: fchmod on our file, now that every description is open.
    if unsafe { libc::fchmod(file, x.mode & 0o7777) } != 0 {
        warn.push(format!(
            "{}: its mode {:o} cannot be given back: {}",
            name(first),
            x.mode & 0o7777,
            last_err()
        ));
    }
    for e in x.ends.iter().filter(|e| e.fd > 2) {
        let Some(&(_, tmp)) = descs.iter().find(|d| d.0 == e.desc) else {
            continue;
        };
        // SAFETY: dup3 onto a number the restarter has freed.
        if unsafe { libc::dup3(tmp, e.fd, e.flags as i32 & libc::O_CLOEXEC) } < 0 {
            return Err(format!("{}: {}", name(e.fd), last_err()));
        }
    }
    Ok(warn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kstate::objects::{Object, Objects};
    use std::io::{Seek, SeekFrom, Write};
    use std::os::fd::AsRawFd;

    #[test]
    fn a_deleted_file_comes_back_unlinked_with_its_contents_offsets_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gone");
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        f.write_all(b"0123456789").unwrap();
        f.seek(SeekFrom::Start(3)).unwrap();
        let g = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        let (a, b) = (f.as_raw_fd(), g.as_raw_fd());
        let out = crate::kstate::captured(|e, bufs| {
            capture(e, bufs, &|fd| fd != a && fd != b)?;
            crate::kstate::objects::end(e)?;
            Ok(())
        });
        let objs = Objects::decode(&mut Decoder::new(&out)).unwrap();
        let Some(Object::DeletedFile(x)) = objs.items.first() else {
            panic!("{objs:?}");
        };
        assert!(x.saved);
        assert_eq!(x.data, b"0123456789");
        assert!(x.path.ends_with(b"/gone"), "{:?}", x.path);
        assert_eq!(x.check(), Ok(()));
        assert!(objs.problems().is_empty());
        let moved = Deleted {
            ends: x
                .ends
                .iter()
                .map(|e| End {
                    fd: e.fd + 900,
                    ..*e
                })
                .collect(),
            ..x.clone()
        };
        drop((f, g));
        assert_eq!(restore(&moved, None), Ok(vec![]));
        let (ra, rb) = (a + 900, b + 900);
        let st = sys::fstat(ra).unwrap();
        assert_eq!(st.st_nlink, 0, "unlinked");
        // SAFETY: using and closing the restored descriptors.
        unsafe {
            assert_eq!(libc::lseek(ra, 0, libc::SEEK_CUR), 3);
            assert_ne!(libc::fcntl(rb, libc::F_GETFL) & libc::O_APPEND, 0);
            assert_eq!(libc::write(rb, b"+".as_ptr().cast(), 1), 1);
            let mut buf = [0u8; 16];
            assert_eq!(libc::read(ra, buf.as_mut_ptr().cast(), 16), 8);
            assert_eq!(&buf[..8], b"3456789+");
            libc::close(ra);
            libc::close(rb);
        }
        let bad = |f: &dyn Fn(&mut Deleted)| {
            let mut q = x.clone();
            f(&mut q);
            q.check().is_err()
        };
        assert!(bad(&|q| q.size = 3), "contents longer than its size");
        assert!(bad(&|q| q.ends[0].desc = 1));
        assert!(bad(&|q| q.ends.clear()));
    }

    /// [start, end) of each hole of `fd`'s first `size` bytes.
    fn holes_of(fd: i32, size: u64) -> Vec<(u64, u64)> {
        let mut v = Vec::new();
        for_each_hole(fd, size, |s, e| {
            v.push((s, e));
            Ok::<(), ()>(())
        })
        .unwrap();
        v
    }

    #[test]
    fn a_sparse_deleted_file_comes_back_with_its_holes() {
        let _max = MAX_LOCK.lock();
        // 4 KiB of data at 0, a hole, 4 KiB at 12 KiB, a hole to 28 KiB
        // (small: the test's record buffer is 64 KiB).
        const SIZE: u64 = 28 << 10;
        let mut f = tempfile::tempfile_in("/var/tmp").unwrap();
        let chunk = vec![0x5au8; 4 << 10];
        f.write_all(&chunk).unwrap();
        f.seek(SeekFrom::Start(12 << 10)).unwrap();
        f.write_all(&chunk).unwrap();
        f.set_len(SIZE).unwrap();
        let a = f.as_raw_fd();
        let want = holes_of(a, SIZE);
        if want.is_empty() {
            eprintln!("skipped: /var/tmp's file system keeps no holes");
            return;
        }
        let out = crate::kstate::captured(|e, bufs| {
            capture(e, bufs, &|fd| fd != a)?;
            crate::kstate::objects::end(e)?;
            Ok(())
        });
        // SAFETY: lseek on our test file: its offset stayed.
        assert_eq!(unsafe { libc::lseek(a, 0, libc::SEEK_CUR) }, 16 << 10);
        let objs = Objects::decode(&mut Decoder::new(&out)).unwrap();
        let Some(Object::DeletedFile(x)) = objs.items.first() else {
            panic!("{objs:?}");
        };
        assert!(x.saved, "{x:?}");
        assert_eq!(x.holes, want);
        assert_eq!(x.check(), Ok(()));
        let moved = Deleted {
            ends: vec![End {
                fd: a + 900,
                ..x.ends[0]
            }],
            path: b"/var/tmp/selfckpt-holes".to_vec(),
            ..x.clone()
        };
        assert_eq!(restore(&moved, None), Ok(vec![]));
        let back = a + 900;
        assert_eq!(sys::fstat(back).unwrap().st_size as u64, SIZE);
        assert_eq!(holes_of(back, SIZE), want, "the holes came back");
        let mut buf = vec![0u8; SIZE as usize];
        assert_eq!(pread_all(back, &mut buf), Ok(SIZE as usize));
        assert_eq!(buf, x.data, "the contents came back");
        // SAFETY: closing the restored descriptor.
        unsafe { libc::close(back) };
        let mut bad = x.clone();
        bad.holes = vec![(0, SIZE + 1)];
        assert!(bad.check().is_err(), "a hole past the size");
    }

    /// `set_max` is the process's: tests that depend on it take turns.
    static MAX_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn a_file_too_large_is_named() {
        let _max = MAX_LOCK.lock();
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&[7u8; 5000]).unwrap();
        let a = f.as_raw_fd();
        set_max(4096);
        let out = crate::kstate::captured(|e, bufs| {
            capture(e, bufs, &|fd| fd != a)?;
            crate::kstate::objects::end(e)?;
            Ok(())
        });
        set_max(DEFAULT_MAX);
        let objs = Objects::decode(&mut Decoder::new(&out)).unwrap();
        let probs = objs.problems();
        assert_eq!(probs.len(), 1, "{objs:?}");
        assert_eq!(probs[0].kind, KIND);
        assert!(
            probs[0]
                .text
                .contains("(5000 bytes) is larger than SELFCKPT_MAX_DELETED_FILE (4096 bytes)"),
            "{}",
            probs[0].text
        );
    }

    #[test]
    fn a_memfd_is_not_a_deleted_file() {
        // SAFETY: creating a test memfd.
        let fd = unsafe { libc::memfd_create(c"kfiles".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(fd >= 0);
        let out = crate::kstate::captured(|e, bufs| {
            capture(e, bufs, &|x| x != fd)?;
            crate::kstate::objects::end(e)?;
            Ok(())
        });
        assert!(Objects::decode(&mut Decoder::new(&out))
            .unwrap()
            .items
            .is_empty());
        // SAFETY: closing the test memfd.
        unsafe { libc::close(fd) };
    }
}
