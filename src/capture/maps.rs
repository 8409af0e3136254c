//! /proc/self/maps parser and region classification.
//!
//! Parses the text in a caller's buffer without allocating: it runs while
//! the program's threads are suspended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum RegionKind {
    Anon = 1,
    PrivateFile = 2,
    SharedFile = 3,
    SharedAnon = 4,
    Heap = 5,
    Stack = 6,
    Vdso = 7,
    Vvar = 8,
    VvarVclock = 9,
    Vsyscall = 10,
    Device = 11,
    SysvShm = 12,
    Special = 13,
}
impl RegionKind {
    pub fn from_u32(v: u32) -> Option<Self> {
        use RegionKind::*;
        Some(match v {
            1 => Anon,
            2 => PrivateFile,
            3 => SharedFile,
            4 => SharedAnon,
            5 => Heap,
            6 => Stack,
            7 => Vdso,
            8 => Vvar,
            9 => VvarVclock,
            10 => Vsyscall,
            11 => Device,
            12 => SysvShm,
            13 => Special,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        use RegionKind::*;
        match self {
            Anon => "anon",
            PrivateFile => "private-file",
            SharedFile => "shared-file",
            SharedAnon => "shared-anon",
            Heap => "heap",
            Stack => "stack",
            Vdso => "vdso",
            Vvar => "vvar",
            VvarVclock => "vvar_vclock",
            Vsyscall => "vsyscall",
            Device => "device",
            SysvShm => "sysv-shm",
            Special => "special",
        }
    }
}
/// Whether a mapping maps a shared memory object whose contents the image
/// holds: shared anonymous memory, a memfd, a System V segment, a shared
/// file that is gone (an unlinked `/dev/shm` file). Its region's stamp
/// names the object (device and inode), so that a restart makes one object
/// for all its mappings; its pages are stored once per object offset.
pub fn is_shared_object(kind: RegionKind, path: &[u8]) -> bool {
    match kind {
        RegionKind::SharedAnon | RegionKind::SysvShm => true,
        RegionKind::SharedFile => path.ends_with(b" (deleted)"),
        _ => false,
    }
}

#[derive(Debug, Clone, Copy, thiserror::Error)]
pub enum MapsError {
    #[error("malformed line {0}")]
    Malformed(usize),
    #[error("buffer too small")]
    BufferTooSmall(usize),
    #[error("io {0}")]
    Io(i32),
}
pub struct MapEntry<'a> {
    pub start: u64,
    pub end: u64,
    pub prot: u32,
    pub shared: bool,
    pub offset: u64,
    pub dev_major: u32,
    pub dev_minor: u32,
    pub inode: u64,
    pub path: &'a [u8],
    pub kind: RegionKind,
}
pub struct MapsParser<'a> {
    lines: core::slice::Split<'a, u8, fn(&u8) -> bool>,
    n: usize,
}
impl<'a> MapsParser<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        fn nl(c: &u8) -> bool {
            *c == b'\n'
        }
        MapsParser {
            lines: buf.split(nl as fn(&u8) -> bool),
            n: 0,
        }
    }
}
fn hex(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |v, &c| {
        Some(v.checked_mul(16)? + (c as char).to_digit(16)? as u64)
    })
}
impl<'a> Iterator for MapsParser<'a> {
    type Item = Result<MapEntry<'a>, MapsError>;
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let line = self.lines.next()?;
            self.n += 1;
            if line.is_empty() {
                continue;
            }
            return Some(parse(line).ok_or(MapsError::Malformed(self.n)));
        }
    }
}
/// One line of a maps file; None if it is malformed. No allocation.
pub fn parse(line: &[u8]) -> Option<MapEntry<'_>> {
    let mut f = line.splitn(6, |&c| c == b' ');
    let range = f.next()?;
    let perms = f.next()?;
    let off = f.next()?;
    let dev = f.next()?;
    let ino = f.next()?;
    let rest = f.next().unwrap_or(b"");
    let skip = rest.iter().take_while(|&&c| c == b' ').count();
    let path = &rest[skip..];
    let dash = range.iter().position(|&c| c == b'-')?;
    let (start, end) = (hex(&range[..dash])?, hex(&range[dash + 1..])?);
    if perms.len() < 4 {
        return None;
    }
    let mut prot = 0;
    if perms[0] == b'r' {
        prot |= 1
    }
    if perms[1] == b'w' {
        prot |= 2
    }
    if perms[2] == b'x' {
        prot |= 4
    }
    let shared = perms[3] == b's';
    let colon = dev.iter().position(|&c| c == b':')?;
    let inode = crate::capture::sys::parse_u64(ino)?.0;
    let kind = classify(path, shared);
    Some(MapEntry {
        start,
        end,
        prot,
        shared,
        offset: hex(off)?,
        dev_major: hex(&dev[..colon])? as u32,
        dev_minor: hex(&dev[colon + 1..])? as u32,
        inode,
        path,
        kind,
    })
}
fn classify(p: &[u8], shared: bool) -> RegionKind {
    use RegionKind::*;
    match p {
        b"[heap]" => return Heap,
        b"[stack]" => return Stack,
        b"[vdso]" => return Vdso,
        b"[vvar]" => return Vvar,
        b"[vvar_vclock]" => return VvarVclock,
        b"[vsyscall]" => return Vsyscall,
        _ => {}
    }
    if p.starts_with(b"/SYSV") && shared {
        return SysvShm;
    }
    if p.is_empty() {
        return if shared { SharedAnon } else { Anon };
    }
    // An AIO context's ring (`io_setup`): kernel state, no file.
    if p.starts_with(b"/[aio]") {
        return Special;
    }
    if p.starts_with(b"/dev/zero") || p.starts_with(b"/memfd:") || p.starts_with(b"[anon_shmem") {
        return if shared { SharedAnon } else { Anon };
    }
    // /dev/shm is a tmpfs: POSIX shared memory and semaphores
    // (`shm_open`, `sem_open`) are files there, not devices.
    if p.starts_with(b"/dev/") && !p.starts_with(b"/dev/shm/") {
        return Device;
    }
    if p.starts_with(b"anon_inode:") {
        return Special;
    }
    if p.starts_with(b"[") {
        return if shared { SharedAnon } else { Anon };
    }
    // Not a path: the memory of a kernel object that is no file
    // (`socket:[N]`, a packet socket's ring; `pipe:[N]`).
    if !p.starts_with(b"/") {
        return Special;
    }
    if shared {
        SharedFile
    } else {
        PrivateFile
    }
}
pub fn read_self_maps(buf: &mut [u8]) -> Result<usize, MapsError> {
    let fd = crate::capture::sys::RawFd::open(b"/proc/thread-self/maps\0", libc::O_RDONLY, 0)
        .map_err(|e| MapsError::Io(e.0))?;
    let n = fd.read_full(buf).map_err(|e| MapsError::Io(e.0))?;
    if n == buf.len() {
        return Err(MapsError::BufferTooSmall(n));
    }
    Ok(n)
}

/// Calls `f` with every line of /proc/self/maps, read in pieces of `buf`
/// (a line longer than `buf` ends the walk): for maps too large for one
/// buffer. No allocation.
pub fn for_each_self_map(
    buf: &mut [u8],
    f: impl FnMut(&MapEntry) -> bool,
) -> Result<(), MapsError> {
    for_each_map(b"/proc/self/maps\0", buf, f)
}

/// [`for_each_self_map`] for the maps file at the NUL-terminated `path`
/// (`/proc/PID/maps` of another process). No allocation.
pub fn for_each_map(
    path: &[u8],
    buf: &mut [u8],
    mut f: impl FnMut(&MapEntry) -> bool,
) -> Result<(), MapsError> {
    let mut n = 0usize;
    let mut bad = None;
    for_each_line(path, buf, |line| {
        n += 1;
        if line.is_empty() {
            return true;
        }
        match parse(line) {
            Some(e) => f(&e),
            None => {
                bad = Some(MapsError::Malformed(n));
                false
            }
        }
    })?;
    bad.map_or(Ok(()), Err)
}

/// Calls `f` with every line (without its newline) of the file at the
/// NUL-terminated `path`, read in pieces of `buf`; `f` returns false to
/// stop. A line longer than `buf` is an error. No allocation.
pub fn for_each_line(
    path: &[u8],
    buf: &mut [u8],
    mut f: impl FnMut(&[u8]) -> bool,
) -> Result<(), MapsError> {
    let fd = crate::capture::sys::RawFd::open(path, libc::O_RDONLY, 0)
        .map_err(|e| MapsError::Io(e.0))?;
    let mut kept = 0usize;
    loop {
        let n = fd
            .read_full(&mut buf[kept..])
            .map_err(|e| MapsError::Io(e.0))?;
        let have = kept + n;
        let upto = match buf[..have].iter().rposition(|&c| c == b'\n') {
            Some(i) => i + 1,
            None if n == 0 => have,
            None => return Err(MapsError::BufferTooSmall(have)),
        };
        for line in buf[..upto].split(|&c| c == b'\n') {
            if !f(line) {
                return Ok(());
            }
        }
        if n == 0 {
            return Ok(());
        }
        buf.copy_within(upto..have, 0);
        kept = have - upto;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_every_kind_of_line() {
        let cases: &[(&str, RegionKind, u32)] = &[
            (
                "55d6-55d7 r--p 00000000 fe:00 247030  /usr/bin/cat",
                RegionKind::PrivateFile,
                1,
            ),
            (
                "55d6-55d7 rw-p 00000000 00:00 0  [heap]",
                RegionKind::Heap,
                3,
            ),
            ("7f56-7f57 rw-p 00000000 00:00 0 ", RegionKind::Anon, 3),
            (
                "7f56-7f57 r--p 00000000 00:00 0  [vvar]",
                RegionKind::Vvar,
                1,
            ),
            (
                "7f56-7f57 r--p 00000000 00:00 0  [vvar_vclock]",
                RegionKind::VvarVclock,
                1,
            ),
            (
                "7f56-7f57 r-xp 00000000 00:00 0  [vdso]",
                RegionKind::Vdso,
                5,
            ),
            (
                "7fff-8000 rw-p 00000000 00:00 0  [stack]",
                RegionKind::Stack,
                3,
            ),
            (
                "ffff-10000 --xp 00000000 00:00 0  [vsyscall]",
                RegionKind::Vsyscall,
                4,
            ),
            (
                "7f56-7f57 rw-s 00000000 00:01 9  /dev/zero (deleted)",
                RegionKind::SharedAnon,
                3,
            ),
            (
                "7f56-7f57 rw-s 00000000 00:01 9  /memfd:buf (deleted)",
                RegionKind::SharedAnon,
                3,
            ),
            (
                "7f56-7f57 rw-s 00000000 00:01 9  /SYSV00000000 (deleted)",
                RegionKind::SysvShm,
                3,
            ),
            (
                "7f56-7f57 rw-s 00000000 00:05 9  /dev/dri/card0",
                RegionKind::Device,
                3,
            ),
            (
                "7f56-7f57 rw-s 00000000 00:1a 9  /dev/shm/sem.mp-1x2y",
                RegionKind::SharedFile,
                3,
            ),
            (
                "7f56-7f57 rw-s 00000000 00:0e 9  anon_inode:[io_uring]",
                RegionKind::Special,
                3,
            ),
            (
                "7f56-7f57 rw-s 00000000 00:08 4242  socket:[4242]",
                RegionKind::Special,
                3,
            ),
            (
                "7f56-7f57 r--s 00000000 00:13 5  /[aio] (deleted)",
                RegionKind::Special,
                1,
            ),
            (
                "7f56-7f57 r--s 00000000 fe:00 9  /tmp/a file with spaces",
                RegionKind::SharedFile,
                1,
            ),
        ];
        for (line, kind, prot) in cases {
            let e = MapsParser::new(line.as_bytes()).next().unwrap().unwrap();
            assert_eq!((e.kind, e.prot), (*kind, *prot), "{line}");
        }
        let e = MapsParser::new(b"1000-2000 r--s 00001000 fe:00 9  /tmp/a file with spaces")
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(
            (e.start, e.end, e.offset, e.path),
            (0x1000, 0x2000, 0x1000, &b"/tmp/a file with spaces"[..])
        );
    }

    #[test]
    fn shared_objects_are_shared_anon_sysv_and_deleted_shared_files() {
        use RegionKind::*;
        assert!(is_shared_object(SharedAnon, b"/dev/zero (deleted)"));
        assert!(is_shared_object(SysvShm, b"/SYSV00000000 (deleted)"));
        assert!(is_shared_object(SharedFile, b"/dev/shm/x (deleted)"));
        assert!(!is_shared_object(SharedFile, b"/dev/shm/x"));
        assert!(!is_shared_object(PrivateFile, b"/tmp/x (deleted)"));
        assert!(!is_shared_object(Anon, b""));
    }

    #[test]
    fn malformed_lines_are_errors_with_their_number() {
        let text = b"1000-2000 r--p 00000000 00:00 0\nnot a maps line\n";
        let v: Vec<_> = MapsParser::new(text).collect();
        assert!(v[0].is_ok());
        assert!(matches!(v[1], Err(MapsError::Malformed(2))));
    }

    #[test]
    fn this_process_has_one_stack_and_one_vdso() {
        let mut buf = vec![0u8; 1 << 20];
        let n = read_self_maps(&mut buf).unwrap();
        let kinds: Vec<RegionKind> = MapsParser::new(&buf[..n])
            .map(|e| e.unwrap().kind)
            .collect();
        assert_eq!(kinds.iter().filter(|k| **k == RegionKind::Stack).count(), 1);
        assert_eq!(kinds.iter().filter(|k| **k == RegionKind::Vdso).count(), 1);
        let mut stacks = 0;
        let mut piece = [0u8; 300];
        for_each_self_map(&mut piece, |e| {
            stacks += usize::from(e.kind == RegionKind::Stack);
            true
        })
        .unwrap();
        assert_eq!(stacks, 1);
        let mut small = [0u8; 64];
        assert!(matches!(
            read_self_maps(&mut small),
            Err(MapsError::BufferTooSmall(_))
        ));
    }
}
