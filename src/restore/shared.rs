//! Shared memory objects at restart: every region of the image that maps a
//! shared object (shared anonymous memory, a memfd, an unlinked tmpfs file;
//! `capture::maps::is_shared_object`) names it by its stamp (device,
//! inode). One object is made per name — a fresh shared anonymous mapping,
//! a memfd with the same name, an unlinked file in /dev/shm with the same
//! name — and mapped whole once in the restarter (the master); each region
//! is staged as an alias of the master at its object offset (`mremap`
//! with old size 0), so that every address the object had maps the same
//! pages again and writes through one show through all. The restorer
//! moves the aliases into place like any staging mapping.
//!
//! The memfd entries of the object list (`kstate::memfd`) give an
//! object's exact size, seals and data outside its mappings, and their
//! descriptors are put at their numbers with their flags and offsets.
//!
//! Ordinary Rust in the restarter; nothing here is irreversible before the
//! hand-over (the masters and descriptors are the restarter's).

use super::RestoreError;
use crate::capture::maps::RegionKind;
use crate::kstate::memfd::Memfd;
use crate::kstate::sysvshm::{SysvShm, SHM_DEST};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Where an object comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// `MAP_SHARED | MAP_ANONYMOUS` memory (`/dev/zero (deleted)`).
    Anon,
    /// A memfd of this name.
    Memfd(Vec<u8>),
    /// An unlinked file of this name in /dev/shm.
    DevShm(Vec<u8>),
    /// A System V segment (its entry; None: the image has none).
    Sysv(Option<SysvShm>),
}

struct Obj {
    dev: u64,
    ino: u64,
    source: Source,
    size: u64,
    /// The size its memfd entry gives (the object is cut back to it once
    /// filled: a mapping may reach past the end of its file).
    exact: Option<u64>,
    seals: u32,
    /// The permission bits its memfd entry gives.
    mode: Option<u32>,
    fd: Option<OwnedFd>,
    /// The System V segment made again.
    shmid: Option<i32>,
    master: Option<(u64, u64)>,
}

/// A shared memory object that several processes of a tree map, made
/// once by the tree restart before its processes fork (`restore::tree`):
/// every process inherits its master mapping at `at` (and its descriptor
/// `fd`, -1 for shared anonymous memory) and maps its regions from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeObject {
    pub dev: u64,
    pub ino: u64,
    pub at: u64,
    pub size: u64,
    pub fd: i32,
    /// The System V segment made (attached at `at`), if it is one.
    pub shmid: Option<i32>,
}

/// Makes once each object that more than one of `images` (each image's
/// shared objects) maps: shared anonymous memory, a memfd, an unlinked
/// /dev/shm file, a System V segment (with its id and key:
/// `make_segment`; not sealed memfds, whose size a process gives back),
/// of the largest size any image needs, with the data outside its
/// mappings a memfd entry holds. Each is mapped (attached) whole at an
/// address the kernel chooses; the members inherit it.
pub fn make_tree_objects(images: &[SharedObjects]) -> std::io::Result<Vec<TreeObject>> {
    let mut out: Vec<TreeObject> = Vec::new();
    for (i, img) in images.iter().enumerate() {
        for o in &img.objs {
            let wanted = o.dev != u64::MAX
                && o.source != Source::Sysv(None)
                && o.seals & !(libc::F_SEAL_SEAL as u32) == 0
                && !out.iter().any(|t| t.dev == o.dev && t.ino == o.ino)
                && images[i + 1..]
                    .iter()
                    .any(|other| other.objs.iter().any(|p| p.dev == o.dev && p.ino == o.ino));
            if !wanted {
                continue;
            }
            let same = || {
                images
                    .iter()
                    .flat_map(|m| m.objs.iter())
                    .filter(|p| p.dev == o.dev && p.ino == o.ino)
            };
            let size = same().map(|p| p.size).max().unwrap_or(o.size);
            let page = crate::capture::sys::page_size() as u64;
            let size = size.max(page).div_ceil(page) * page;
            if let Source::Sysv(Some(seg)) = &o.source {
                let shown = |e: std::io::Error| {
                    std::io::Error::other(format!(
                        "System V segment {} (key {:#x}): {e}",
                        seg.shmid, seg.key
                    ))
                };
                let made = make_segment(seg).map_err(shown)?;
                let at = attach_made(made, size, None).map_err(shown)?;
                out.push(TreeObject {
                    dev: o.dev,
                    ino: o.ino,
                    at,
                    size,
                    fd: -1,
                    shmid: Some(made.id),
                });
                continue;
            }
            let mut made = Obj {
                size,
                fd: None,
                master: None,
                exact: None,
                seals: 0,
                mode: None,
                shmid: None,
                source: o.source.clone(),
                dev: o.dev,
                ino: o.ino,
            };
            if made.source != Source::Anon {
                made.fd = Some(make_object(&made.source, size)?);
                for m in images.iter() {
                    write_data(&made, &m.memfds)?;
                }
            }
            let fd = made.fd.as_ref().map_or(-1, |f| f.as_raw_fd());
            // Accounted as a program's MAP_SHARED memory is (the
            // members' aliases inherit the master's accounting).
            let flags = if fd < 0 {
                libc::MAP_SHARED | libc::MAP_ANONYMOUS
            } else {
                libc::MAP_SHARED
            };
            // SAFETY: a new shared mapping wherever the kernel finds room.
            let at = unsafe {
                libc::mmap(
                    core::ptr::null_mut(),
                    size as usize,
                    libc::PROT_READ | libc::PROT_WRITE,
                    flags,
                    fd,
                    0,
                )
            };
            if at == libc::MAP_FAILED {
                return Err(std::io::Error::other(format!(
                    "{}: {}",
                    describe(&made),
                    std::io::Error::last_os_error()
                )));
            }
            out.push(TreeObject {
                dev: o.dev,
                ino: o.ino,
                at: at as u64,
                size,
                // The processes inherit it; each restore closes it.
                fd: made
                    .fd
                    .take()
                    .map_or(-1, std::os::fd::IntoRawFd::into_raw_fd),
                shmid: None,
            });
        }
    }
    Ok(out)
}

/// The shared objects of one image and, per region, its object's index.
#[derive(Default)]
pub struct SharedObjects {
    objs: Vec<Obj>,
    of_region: Vec<Option<usize>>,
    memfds: Vec<Memfd>,
}

impl std::fmt::Debug for SharedObjects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedObjects({})", self.objs.len())
    }
}

/// What a region's path says its object is.
fn source_of(kind: RegionKind, path: &[u8]) -> Source {
    let base = path.strip_suffix(b" (deleted)").unwrap_or(path);
    if kind == RegionKind::SharedFile {
        let name = base.rsplit(|&c| c == b'/').next().unwrap_or(b"shared");
        return if base.starts_with(b"/dev/shm/") {
            Source::DevShm(name.to_vec())
        } else {
            Source::Memfd(name.to_vec())
        };
    }
    match base.strip_prefix(b"/memfd:") {
        Some(name) => Source::Memfd(name.to_vec()),
        None => Source::Anon,
    }
}

impl SharedObjects {
    /// Groups the regions (kind, start, end, offset, path, stamp) by the
    /// object they map; `memfds` add objects with descriptors.
    pub fn new(
        regions: &[crate::image::model::Region],
        memfds: &[Memfd],
        segments: &[SysvShm],
        page: u64,
    ) -> SharedObjects {
        let mut s = SharedObjects {
            memfds: memfds.to_vec(),
            ..SharedObjects::default()
        };
        for (i, r) in regions.iter().enumerate() {
            let kind = RegionKind::from_u32(r.kind).unwrap_or(RegionKind::Anon);
            if !crate::capture::maps::is_shared_object(kind, r.path) {
                s.of_region.push(None);
                continue;
            }
            // Images before 1.8 name no object: each region is one. (An
            // inode 0 with a device is a name: System V segment 0.)
            let (dev, ino) = if r.stamp.ino == 0 && r.stamp.dev == 0 {
                (u64::MAX, i as u64)
            } else {
                (r.stamp.dev, r.stamp.ino)
            };
            // A hostile offset makes a size no address range fits
            // (refused when staged), never an overflow.
            let extent = r
                .offset
                .saturating_add(r.end - r.start)
                .div_ceil(page)
                .saturating_mul(page);
            let source = if kind == RegionKind::SysvShm {
                Source::Sysv(segments.iter().find(|g| g.shmid as u64 == ino).copied())
            } else {
                source_of(kind, r.path)
            };
            let at = s.object(dev, ino, source);
            if let Source::Sysv(Some(g)) = &s.objs[at].source {
                let size = g.size.div_ceil(page).saturating_mul(page);
                s.objs[at].size = s.objs[at].size.max(size);
            }
            s.objs[at].size = s.objs[at].size.max(extent);
            s.of_region.push(Some(at));
        }
        for m in memfds {
            let at = s.object(m.dev, m.ino, Source::Memfd(m.name.clone()));
            let o = &mut s.objs[at];
            o.size = o.size.max(m.size);
            o.exact = Some(m.size);
            o.seals |= m.seals;
            o.mode = o.mode.or(m.mode);
        }
        s
    }

    fn object(&mut self, dev: u64, ino: u64, source: Source) -> usize {
        if let Some(i) = self.objs.iter().position(|o| o.dev == dev && o.ino == ino) {
            return i;
        }
        self.objs.push(Obj {
            dev,
            ino,
            source,
            size: 0,
            exact: None,
            seals: 0,
            mode: None,
            fd: None,
            shmid: None,
            master: None,
        });
        self.objs.len() - 1
    }

    /// In a process of a restarted tree: the objects the tree made take
    /// the place of this image's own (their masters are the inherited
    /// mappings; their descriptors copies of the tree's); the tree's
    /// masters this image does not map are unmapped here.
    pub fn adopt(&mut self, made: &[TreeObject]) -> std::io::Result<()> {
        for t in made {
            let Some(o) = self
                .objs
                .iter_mut()
                .find(|o| o.dev == t.dev && o.ino == t.ino && o.master.is_none())
            else {
                // SAFETY: the tree's master, inherited, used by nobody here.
                unsafe { libc::munmap(t.at as *mut libc::c_void, t.size as usize) };
                continue;
            };
            if t.fd >= 0 {
                // SAFETY: F_DUPFD_CLOEXEC of the inherited descriptor.
                let n = unsafe { libc::fcntl(t.fd, libc::F_DUPFD_CLOEXEC, 3) };
                if n < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // SAFETY: `n` was just made and nothing else owns it.
                o.fd = Some(unsafe { OwnedFd::from_raw_fd(n) });
            }
            o.shmid = o.shmid.or(t.shmid);
            o.size = o.size.max(t.size);
            // Its size is the tree's (every process maps it whole).
            o.exact = None;
            o.master = Some((t.at, t.size));
        }
        Ok(())
    }

    /// Whether region `i` is staged as an alias of a shared object.
    pub fn is_shared(&self, i: usize) -> bool {
        self.of_region.get(i).copied().flatten().is_some()
    }

    /// The size of region `i`'s object's master mapping, if it has none yet.
    pub fn master_needed(&self, i: usize) -> Option<u64> {
        let o = &self.objs[self.of_region.get(i).copied().flatten()?];
        o.master.is_none().then_some(o.size)
    }

    /// Makes region `i`'s object and maps it whole at `at` (free, taken);
    /// shared anonymous memory without reserve (`MAP_NORESERVE`) where
    /// `noreserve` (its aliases inherit it).
    pub fn make_master(&mut self, i: usize, at: u64, noreserve: bool) -> std::io::Result<()> {
        let Some(oi) = self.of_region.get(i).copied().flatten() else {
            return Ok(());
        };
        let o = &mut self.objs[oi];
        if let Source::Sysv(seg) = &o.source {
            let seg = seg.ok_or_else(|| {
                std::io::Error::other("the image has no entry for this System V segment")
            })?;
            o.shmid = Some(attach_segment(&seg, o.size, at)?);
            o.master = Some((at, o.size));
            return Ok(());
        }
        if o.fd.is_none() && o.source != Source::Anon {
            o.fd = Some(make_object(&o.source, o.size)?);
            write_data(o, &self.memfds)?;
        }
        let fd = o.fd.as_ref().map_or(-1, |f| f.as_raw_fd());
        let flags = if fd < 0 {
            libc::MAP_SHARED | libc::MAP_ANONYMOUS | if noreserve { libc::MAP_NORESERVE } else { 0 }
        } else {
            libc::MAP_SHARED
        };
        map_fixed(at, o.size, libc::PROT_READ | libc::PROT_WRITE, flags, fd, 0)?;
        o.master = Some((at, o.size));
        Ok(())
    }

    /// Stages region `i` (object offset `offset`, `len` bytes) at `at` as
    /// an alias of its object's master.
    pub fn alias(&self, i: usize, offset: u64, len: u64, at: u64) -> std::io::Result<()> {
        let Some(oi) = self.of_region.get(i).copied().flatten() else {
            return Err(std::io::Error::other("not a shared object"));
        };
        let Some((m, size)) = self.objs[oi].master else {
            return Err(std::io::Error::other("its object is not made"));
        };
        if offset.checked_add(len).is_none_or(|e| e > size) {
            return Err(std::io::Error::other("it lies beyond its object"));
        }
        // SAFETY: duplicates part of our own shared master mapping onto
        // `at`, a range reserved as free (MREMAP_FIXED replaces nothing of
        // anyone's).
        let p = unsafe {
            libc::mremap(
                (m + offset) as *mut libc::c_void,
                0,
                len as usize,
                libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                at as *mut libc::c_void,
            )
        };
        if p == libc::MAP_FAILED || p as u64 != at {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Makes the objects no region maps (memfd descriptors only).
    pub fn make_unmapped(&mut self) -> Result<(), RestoreError> {
        for o in &mut self.objs {
            if o.fd.is_none()
                && o.master.is_none()
                && matches!(o.source, Source::Memfd(_) | Source::DevShm(_))
            {
                let fd =
                    make_object(&o.source, o.size).map_err(|e| RestoreError::Io(describe(o), e))?;
                o.fd = Some(fd);
                write_data(o, &self.memfds).map_err(|e| RestoreError::Io(describe(o), e))?;
            }
        }
        Ok(())
    }

    /// Once every region is staged and filled: unmaps the masters; maps
    /// again read-only the regions that could not be written (no `mw`: a
    /// read-only open, a `SHM_RDONLY` attachment) and every region of an
    /// object sealed against writing (the kernel requires it); gives the
    /// seals back. `staged` lists each region's (staging address, length,
    /// object offset, whether it could be written).
    pub fn finish(&mut self, staged: &[Option<(u64, u64, u64, bool)>]) -> Result<(), RestoreError> {
        for o in &mut self.objs {
            if let Some((at, len)) = o.master.take() {
                // SAFETY: our own master mapping, made by `make_master`.
                unsafe { libc::munmap(at as *mut libc::c_void, len as usize) };
            }
        }
        for (oi, o) in self.objs.iter().enumerate() {
            let sealed = o.seals & (libc::F_SEAL_WRITE as u32) != 0;
            let read_only: Vec<(u64, u64, u64)> = staged
                .iter()
                .enumerate()
                .filter(|(i, _)| self.of_region.get(*i).copied().flatten() == Some(oi))
                .filter_map(|(_, s)| *s)
                .filter(|s| sealed || !s.3)
                .map(|s| (s.0, s.1, s.2))
                .collect();
            if let (Some(id), false) = (o.shmid, read_only.is_empty()) {
                remap_segment_read_only(id, &read_only)
                    .map_err(|e| RestoreError::Io(describe(o), e))?;
            }
            let Some(fd) = &o.fd else { continue };
            if let Some(size) = o.exact.filter(|&s| s < o.size) {
                // SAFETY: ftruncate on our own memfd, before its seals.
                if unsafe { libc::ftruncate(fd.as_raw_fd(), size as i64) } != 0 {
                    return Err(RestoreError::Io(
                        format!("{}: cannot give it its size {size} again", describe(o)),
                        std::io::Error::last_os_error(),
                    ));
                }
            }
            if !read_only.is_empty() {
                let ro =
                    reopen(fd, libc::O_RDONLY).map_err(|e| RestoreError::Io(describe(o), e))?;
                for &(at, len, off) in &read_only {
                    map_fixed_replace(at, len, ro.as_raw_fd(), off)
                        .map_err(|e| RestoreError::Io(describe(o), e))?;
                }
            }
            if let Some(mode) = o.mode {
                // SAFETY: fchmod on our own memfd.
                if unsafe { libc::fchmod(fd.as_raw_fd(), mode as libc::mode_t) } != 0 {
                    return Err(RestoreError::Io(
                        format!("{}: cannot give it its mode {mode:o} again", describe(o)),
                        std::io::Error::last_os_error(),
                    ));
                }
            }
            // Only those it lacks: a tree's object another process of
            // the tree sealed already has them.
            // SAFETY: F_GET_SEALS on our own memfd.
            let now = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) }.max(0) as u32;
            let missing = o.seals & !now;
            if missing == 0 {
                continue;
            }
            // SAFETY: F_ADD_SEALS on our own memfd.
            if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, missing as i32) } != 0 {
                return Err(RestoreError::Io(
                    format!("{}: cannot seal it again", describe(o)),
                    std::io::Error::last_os_error(),
                ));
            }
        }
        Ok(())
    }

    /// Moves the objects' descriptors to numbers at or above `min` (above
    /// every number the program's descriptors take), returning them.
    pub fn lift_fds(&mut self, min: i32) -> Vec<i32> {
        let mut out = Vec::new();
        for o in &mut self.objs {
            let Some(fd) = o.fd.take() else { continue };
            // SAFETY: F_DUPFD_CLOEXEC on our own descriptor.
            let n = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) };
            if n >= 0 {
                // SAFETY: `n` was just made and nothing else owns it.
                o.fd = Some(unsafe { OwnedFd::from_raw_fd(n) });
                out.push(n);
            } else {
                o.fd = Some(fd);
            }
        }
        out
    }

    /// Puts every memfd descriptor at its number, with its access mode,
    /// status flags and offset. Returns what failed, one line each.
    pub fn install_fds(&mut self) -> Vec<String> {
        let mut bad = Vec::new();
        // The objects whose own description (memfd_create's) a
        // descriptor has been given.
        let mut given: Vec<(u64, u64)> = Vec::new();
        for m in &self.memfds {
            let Some(o) = self.objs.iter().find(|o| o.dev == m.dev && o.ino == m.ino) else {
                continue;
            };
            let Some(fd) = &o.fd else {
                bad.push(format!("fd {} (memfd): its object was not made", m.fd));
                continue;
            };
            let keep = libc::O_ACCMODE | libc::O_APPEND | libc::O_NONBLOCK | libc::O_NOATIME;
            // A read-write descriptor gets memfd_create's own description
            // (the first one: others are opens of it): an open of
            // /proc/self/fd/N for writing counts as a writer of the file,
            // and the program's execveat of its memfd (runc's, a
            // fexecve'd script) would fail with ETXTBSY.
            let own = m.flags as i32 & libc::O_ACCMODE == libc::O_RDWR
                && o.source == Source::Memfd(m.name.clone())
                && !given.contains(&(m.dev, m.ino));
            let made = if own {
                given.push((m.dev, m.ino));
                fd.try_clone().and_then(|f| {
                    let status = m.flags as i32 & (keep & !libc::O_ACCMODE);
                    // SAFETY: F_SETFL on the descriptor just duplicated.
                    if unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETFL, status) } < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(f)
                })
            } else {
                reopen(fd, m.flags as i32 & keep)
            };
            let r = made.and_then(|f| {
                // SAFETY: lseek on the descriptor just opened.
                if unsafe { libc::lseek(f.as_raw_fd(), m.offset as i64, libc::SEEK_SET) } < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                crate::kstate::fds::install_at(
                    std::os::fd::IntoRawFd::into_raw_fd(f),
                    m.fd,
                    m.flags,
                )
            });
            if let Err(e) = r {
                bad.push(format!("fd {} (memfd): {e}", m.fd));
            }
        }
        bad
    }

    /// The restarter's descriptor of the object made for `dev`, `ino`
    /// (until [`Self::close_fds`]).
    pub fn fd_of(&self, dev: u64, ino: u64) -> Option<i32> {
        self.objs
            .iter()
            .find(|o| o.dev == dev && o.ino == ino)
            .and_then(|o| o.fd.as_ref())
            .map(AsRawFd::as_raw_fd)
    }

    /// Closes the restarter's own descriptors of the objects (once every
    /// descriptor of the program that refers to one is in place).
    pub fn close_fds(&mut self) {
        for o in &mut self.objs {
            o.fd = None;
        }
    }
}

fn describe(o: &Obj) -> String {
    match &o.source {
        Source::Anon => format!("shared memory of {} bytes", o.size),
        Source::Memfd(n) => format!("memfd {}", crate::image::show::shown(n)),
        Source::DevShm(n) => format!("/dev/shm/{} (deleted)", crate::image::show::shown(n)),
        Source::Sysv(g) => format!(
            "System V segment {}",
            g.map_or_else(
                || "?".to_string(),
                |g| format!("{} key {:#x}", g.shmid, g.key)
            )
        ),
    }
}

/// Maps the staged regions (address, length, segment offset) of segment
/// `id` again from a read-only attachment (`SHM_RDONLY`), as aliases of it.
fn remap_segment_read_only(id: i32, regions: &[(u64, u64, u64)]) -> std::io::Result<()> {
    // SAFETY: a read-only attachment wherever the kernel finds room (it
    // replaces nothing), detached below.
    let tmp = unsafe { libc::shmat(id, core::ptr::null(), libc::SHM_RDONLY) };
    if tmp as isize == -1 {
        return Err(std::io::Error::last_os_error());
    }
    let mut result = Ok(());
    for &(at, len, off) in regions {
        // SAFETY: an alias of our read-only attachment replacing our own
        // staging mapping at `at` (same range).
        let p = unsafe {
            libc::mremap(
                (tmp as u64 + off) as *mut libc::c_void,
                0,
                len as usize,
                libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                at as *mut libc::c_void,
            )
        };
        if p == libc::MAP_FAILED || p as u64 != at {
            result = Err(std::io::Error::last_os_error());
            break;
        }
    }
    // SAFETY: detaching the temporary attachment made above.
    unsafe { libc::shmdt(tmp) };
    result
}

/// The segment a restart attaches: found again or made anew.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Segment {
    id: i32,
    /// Marked for removal once attached (`IPC_RMID`): it was (`SHM_DEST`),
    /// or it is the private stand-in for a segment shared with others.
    remove: bool,
    /// The killed program's own segment, found again: its contents are
    /// cleared before the image's are written (pages the image leaves
    /// out are zero).
    reused: bool,
}

/// Finds or makes the segment `seg` names, with its id and key.
///
/// - The segment with its id still there (the one the killed program
///   left: same key, size and owner, nobody attached) is taken again.
/// - One with its id that is another segment, or another segment with
///   its key, is refused: never someone else's segment.
/// - Else it is made with its key, and with its id where the kernel lets
///   the restarter choose it (`/proc/sys/kernel/shm_next_id`, root of
///   the IPC namespace); where it does not, with a new id (a warning: an
///   id the program holds no longer names it).
///
/// One another process was attached to (the stand-in
/// `--unrestorable=sysv_shm` accepted) is a new private segment.
fn make_segment(seg: &SysvShm) -> std::io::Result<Segment> {
    let perm = (seg.mode & 0o777) as i32;
    let remove = seg.mode & SHM_DEST != 0;
    if seg.shared_with_others() {
        let id = shmget(libc::IPC_PRIVATE, seg.size, libc::IPC_CREAT | perm)?;
        return Ok(Segment {
            id,
            remove: true,
            reused: false,
        });
    }
    if let Some(ds) = shm_stat(seg.shmid) {
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        let ours = ds.shm_perm.__key == seg.key
            && ds.shm_segsz as u64 == seg.size
            && ds.shm_nattch == 0
            && ds.shm_perm.uid == me
            && ds.shm_perm.mode as u32 & SHM_DEST == 0;
        if !ours {
            return Err(std::io::Error::other(format!(
                "its id {} is taken by another segment (key {:#x}, size {}, attached {} times): \
                 not the program's; a restart never attaches someone else's segment",
                seg.shmid, ds.shm_perm.__key, ds.shm_segsz, ds.shm_nattch
            )));
        }
        if ds.shm_perm.mode as i32 & 0o777 != perm {
            let mut set = ds;
            set.shm_perm.mode = perm as _;
            // SAFETY: IPC_SET of our own segment from a valid shmid_ds.
            unsafe { libc::shmctl(seg.shmid, libc::IPC_SET, &mut set) };
        }
        return Ok(Segment {
            id: seg.shmid,
            remove,
            reused: true,
        });
    }
    if seg.key != libc::IPC_PRIVATE {
        // SAFETY: shmget has no memory preconditions.
        let other = unsafe { libc::shmget(seg.key, 0, 0) };
        if other >= 0 {
            return Err(std::io::Error::other(format!(
                "a System V segment with key {:#x} exists already (id {other}, not the \
                 program's id {}): remove it with `ipcrm -M {:#x}` if it is a leftover",
                seg.key, seg.shmid, seg.key
            )));
        }
    }
    let chosen = write_next_id(seg.shmid).is_ok();
    let made = shmget(seg.key, seg.size, libc::IPC_CREAT | libc::IPC_EXCL | perm).map_err(|e| {
        if e.raw_os_error() == Some(libc::EEXIST) {
            std::io::Error::other(format!(
                "a System V segment with key {:#x} exists already, which this user cannot \
                 look at: not the program's",
                seg.key
            ))
        } else {
            e
        }
    });
    if chosen {
        // Spent by the shmget above; -1 again in any case.
        let _ = write_next_id(-1);
    }
    let id = made?;
    if id != seg.shmid {
        if chosen {
            // SAFETY: removes the segment just made, attached by nobody.
            unsafe { libc::shmctl(id, libc::IPC_RMID, core::ptr::null_mut()) };
            return Err(std::io::Error::other(format!(
                "its id {} cannot be given again (the kernel gave {id}: another segment \
                 holds the id's slot)",
                seg.shmid
            )));
        }
        eprintln!(
            "selfckpt: warning: System V segment {} (key {:#x}) comes back with id {id}: the \
             restarter cannot choose ids (/proc/sys/kernel/shm_next_id needs root of the IPC \
             namespace); a segment id the program kept no longer names it",
            seg.shmid, seg.key
        );
    }
    Ok(Segment {
        id,
        remove,
        reused: false,
    })
}

/// Attaches `made` at `at` (None: where the kernel finds room), clears
/// a segment found again, marks it for removal if it is to be.
fn attach_made(made: Segment, size: u64, at: Option<u64>) -> std::io::Result<u64> {
    let want = at.unwrap_or(0) as *const libc::c_void;
    // SAFETY: attaches the segment at `at`, a range reserved as free, or
    // wherever the kernel finds room.
    let p = unsafe { libc::shmat(made.id, want, 0) };
    if p as isize == -1 || at.is_some_and(|a| p as u64 != a) {
        return Err(std::io::Error::last_os_error());
    }
    if made.reused {
        // SAFETY: our own attachment of `size` bytes: its pages are
        // given back (shmem: read as zero after), or zeroed.
        unsafe {
            if libc::madvise(p, size as usize, libc::MADV_REMOVE) != 0 {
                core::ptr::write_bytes(p.cast::<u8>(), 0, size as usize);
            }
        }
    }
    if made.remove {
        // SAFETY: marks the segment for removal once the last attachment
        // goes (as it was, or a private stand-in found by no one else).
        unsafe { libc::shmctl(made.id, libc::IPC_RMID, core::ptr::null_mut()) };
    }
    Ok(p as u64)
}

/// Makes the segment again (`make_segment`) and attaches it at `at`
/// (free, taken). Its id.
fn attach_segment(seg: &SysvShm, size: u64, at: u64) -> std::io::Result<i32> {
    let made = make_segment(seg).map_err(|e| {
        std::io::Error::other(format!(
            "System V segment {} (key {:#x}): {e}",
            seg.shmid, seg.key
        ))
    })?;
    attach_made(made, size, Some(at))?;
    Ok(made.id)
}

fn shmget(key: i32, size: u64, flags: i32) -> std::io::Result<i32> {
    // SAFETY: shmget has no memory preconditions.
    let id = unsafe { libc::shmget(key, size as usize, flags) };
    if id < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(id)
}

/// The segment with id `id`, if there is one.
fn shm_stat(id: i32) -> Option<libc::shmid_ds> {
    // SAFETY: shmid_ds is plain old data; IPC_STAT fills it.
    let mut ds: libc::shmid_ds = unsafe { core::mem::zeroed() };
    // SAFETY: IPC_STAT into a valid out-pointer.
    (unsafe { libc::shmctl(id, libc::IPC_STAT, &mut ds) } == 0).then_some(ds)
}

/// Asks the kernel to give the next System V segment id `id` (-1: any).
fn write_next_id(id: i32) -> std::io::Result<()> {
    std::fs::write("/proc/sys/kernel/shm_next_id", id.to_string())
}

/// A new object of `size` bytes: a memfd (sealable: its seals are given
/// back by `finish`), or an unlinked file in /dev/shm (a memfd where
/// /dev/shm cannot have one).
fn make_object(source: &Source, size: u64) -> std::io::Result<OwnedFd> {
    let fd = match source {
        Source::DevShm(name) => devshm_file(name).or_else(|_| memfd(name))?,
        Source::Memfd(name) => memfd(name)?,
        Source::Anon | Source::Sysv(_) => {
            return Err(std::io::Error::other("this shared memory has no file"))
        }
    };
    // SAFETY: ftruncate on the descriptor just made.
    if unsafe { libc::ftruncate(fd.as_raw_fd(), size as i64) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fd)
}

fn memfd(name: &[u8]) -> std::io::Result<OwnedFd> {
    let c = std::ffi::CString::new(name).map_err(|_| std::io::Error::other("a name with NUL"))?;
    // Always sealable: a memfd made without MFD_ALLOW_SEALING has
    // F_SEAL_SEAL, which `finish` gives back; one made with it and not
    // sealed yet (seals 0) must stay sealable (the program may seal it
    // later: it came back unsealable, F_ADD_SEALS failing with EPERM).
    let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    // SAFETY: memfd_create with a NUL-terminated name.
    let fd = unsafe { libc::memfd_create(c.as_ptr(), flags) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just made and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A new file `/dev/shm/NAME`, unlinked at once (so that the maps show it
/// as it was: `/dev/shm/NAME (deleted)`); never one that exists.
fn devshm_file(name: &[u8]) -> std::io::Result<OwnedFd> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::path::Path::new("/dev/shm").join(std::ffi::OsStr::from_bytes(name));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(f.into())
}

/// Writes the data the memfd entries hold for object `o`.
fn write_data(o: &Obj, memfds: &[Memfd]) -> std::io::Result<()> {
    let Some(fd) = &o.fd else { return Ok(()) };
    for m in memfds.iter().filter(|m| m.dev == o.dev && m.ino == o.ino) {
        for (off, b) in &m.data {
            let mut done = 0usize;
            while done < b.len() {
                // SAFETY: pwrite from our buffer into our new object.
                let n = unsafe {
                    libc::pwrite(
                        fd.as_raw_fd(),
                        b[done..].as_ptr().cast(),
                        b.len() - done,
                        (*off + done as u64) as i64,
                    )
                };
                if n <= 0 {
                    return Err(std::io::Error::last_os_error());
                }
                done += n as usize;
            }
        }
    }
    Ok(())
}

/// Another open of the object with `flags` (access mode and status flags).
fn reopen(fd: &OwnedFd, flags: i32) -> std::io::Result<OwnedFd> {
    let path = format!("/proc/self/fd/{}\0", fd.as_raw_fd());
    // SAFETY: open of a NUL-terminated path; O_CLOEXEC added.
    let n = unsafe { libc::open(path.as_ptr().cast(), flags | libc::O_CLOEXEC) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `n` was just made and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

fn map_fixed(at: u64, len: u64, prot: i32, flags: i32, fd: i32, off: u64) -> std::io::Result<()> {
    // SAFETY: a new mapping at an address reserved as free
    // (MAP_FIXED_NOREPLACE refuses to replace anything).
    let p = unsafe {
        libc::mmap(
            at as *mut libc::c_void,
            len as usize,
            prot,
            flags | libc::MAP_FIXED_NOREPLACE,
            fd,
            off as i64,
        )
    };
    if p == libc::MAP_FAILED || p as u64 != at {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Maps a staged region again, read-only from `fd`, in place of itself.
fn map_fixed_replace(at: u64, len: u64, fd: i32, off: u64) -> std::io::Result<()> {
    // SAFETY: replaces our own staging mapping at `at` (same range) with
    // a read-only mapping of the same object.
    let p = unsafe {
        libc::mmap(
            at as *mut libc::c_void,
            len as usize,
            libc::PROT_READ,
            libc::MAP_SHARED | libc::MAP_FIXED,
            fd,
            off as i64,
        )
    };
    if p == libc::MAP_FAILED || p as u64 != at {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(shmid: i32, key: i32, size: u64) -> SysvShm {
        SysvShm {
            shmid,
            key,
            size,
            mode: 0o600,
            nattch: 1,
            own: 1,
            tree: 0,
        }
    }

    #[test]
    fn two_attachments_of_segment_zero_are_one_object() {
        use crate::image::model::{FileStamp, Region};
        let region = |start: u64, dev: u64| Region {
            start,
            end: start + 8192,
            prot: 3,
            kind: RegionKind::SysvShm as u32,
            offset: 0,
            path: b"/SYSV00000000 (deleted)",
            stamp: FileStamp {
                dev,
                ino: 0,
                ..FileStamp::default()
            },
        };
        let seg = entry(0, libc::IPC_PRIVATE, 8192);
        let named =
            SharedObjects::new(&[region(0x10000, 1), region(0x40000, 1)], &[], &[seg], 4096);
        assert_eq!(named.objs.len(), 1);
        assert_eq!(named.objs[0].source, Source::Sysv(Some(seg)));
        // An image before 1.8 (no stamp): each region is an object.
        let old = SharedObjects::new(&[region(0x10000, 0), region(0x40000, 0)], &[], &[], 4096);
        assert_eq!(old.objs.len(), 2);
    }

    #[test]
    fn a_segment_is_found_again_only_if_it_is_the_programs() {
        // SAFETY: test segments of our own, removed at the end.
        unsafe {
            let id = libc::shmget(libc::IPC_PRIVATE, 8192, libc::IPC_CREAT | 0o600);
            assert!(id >= 0);
            // The killed program's: same id, key, size, nobody attached.
            let again = make_segment(&entry(id, libc::IPC_PRIVATE, 8192)).unwrap();
            assert_eq!((again.id, again.reused, again.remove), (id, true, false));
            // Its id held by another segment (another size, another key).
            for other in [
                entry(id, libc::IPC_PRIVATE, 4096),
                entry(id, 0x5eed_0f0f, 8192),
            ] {
                let e = make_segment(&other).unwrap_err().to_string();
                assert!(
                    e.contains(&format!("its id {id} is taken by another segment")),
                    "{e}"
                );
            }
            // Attached by someone: not a leftover.
            let p = libc::shmat(id, core::ptr::null(), 0);
            assert!(make_segment(&entry(id, libc::IPC_PRIVATE, 8192)).is_err());
            libc::shmdt(p);
            libc::shmctl(id, libc::IPC_RMID, core::ptr::null_mut());
            // Its key taken by a segment with another id.
            let key = 0x5e70_0000 | (std::process::id() as i32 & 0xffff);
            let k = libc::shmget(key, 4096, libc::IPC_CREAT | libc::IPC_EXCL | 0o600);
            assert!(k >= 0);
            let e = make_segment(&entry(id, key, 4096)).unwrap_err().to_string();
            libc::shmctl(k, libc::IPC_RMID, core::ptr::null_mut());
            assert!(
                e.contains(&format!("key {key:#x} exists already (id {k}")),
                "{e}"
            );
        }
    }
}
