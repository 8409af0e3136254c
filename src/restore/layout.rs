//! Where things go during a restart: staging mappings at addresses free in
//! both the restarter's map and the image's, filled from the image's chunks.
//! Ordinary Rust; nothing here is irreversible (staging mappings belong to
//! the restarter until the hand-over). Chunks are decompressed in parallel,
//! straight into the staging mappings.

use super::{huge, RestoreError};
use crate::capture::maps::{MapsParser, RegionKind};
use crate::image::chain::{self, Ancestor};
use crate::image::format::FormatError;
use crate::image::model::{FdEntry, IntervalTimers, MmLayout, SigAction, SignalSet, ThreadState};
use crate::image::read::{Chunk, ImageFile, ImageView};
use crate::kstate::vmflags;
use core::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Lowest and highest addresses used for staging and the restorer.
const PICK_LOW: u64 = 1 << 32;
const PICK_HIGH: u64 = 0x7f00_0000_0000;

/// One region of the image and where it is staged.
#[derive(Clone, Debug)]
pub struct StagedRegion {
    pub start: u64,
    pub end: u64,
    pub prot: u32,
    pub kind: RegionKind,
    /// Staging address; None for regions the kernel provides (vdso/vvar).
    pub staging: Option<u64>,
}

/// An owned copy of an fd entry.
#[derive(Clone, Debug)]
pub struct OwnedFd {
    pub fd: i32,
    pub kind: u32,
    pub flags: u32,
    pub offset: u64,
    pub path: Vec<u8>,
    /// Identity of what it was open on (a pipe's inode pairs its ends).
    pub stamp: crate::image::model::FileStamp,
}

/// Everything the hand-over needs, owned, plus the staging state.
pub struct Plan {
    pub path: PathBuf,
    pub page: u64,
    pub regions: Vec<StagedRegion>,
    /// Sorted, merged ranges that are taken (image + restarter + staging).
    busy: Vec<(u64, u64)>,
    pub sigactions: Vec<SigAction>,
    pub mm: MmLayout,
    pub auxv: Vec<u8>,
    pub fds: Vec<OwnedFd>,
    /// What was queued in the pipes the process reads: (inode, bytes).
    pub pipes: Vec<(u64, Vec<u8>)>,
    /// The event and timer descriptors, made anew after the files.
    pub events: crate::kstate::EventObjects,
    /// The tagged kernel objects (format 1.8).
    pub objects: crate::kstate::objects::Objects,
    pub cwd: Vec<u8>,
    pub umask: u32,
    /// The interval timers, armed right before the jump.
    pub itimers: IntervalTimers,
    pub threads: Vec<ThreadState>,
    /// Each thread's own pending signals (`threads` order) and the
    /// process's: poked into the program's memory for `restart_entry` to
    /// raise (format 1.4).
    pub thread_pending: Vec<SignalSet>,
    pub pending: SignalSet,
    /// Give every thread its checkpoint-time id (in a PID namespace of our own).
    pub exact_ids: bool,
    /// The process id at checkpoint time.
    pub pid: u32,
    pub restart_entry: u64,
    pub restart_mailbox: u64,
    /// The process's place in its session at the checkpoint (META, 1.7).
    pub session_role: Option<u8>,
    pub exe_path: Vec<u8>,
    /// The shared memory objects the regions map, one per object.
    pub shared: super::shared::SharedObjects,
    /// Per region, its recorded mapping flags (`kstate::vmflags`; None:
    /// the image has none).
    vmflags: Option<Vec<u32>>,
    /// Per region: file offset and path (or name).
    offsets: Vec<u64>,
    names: Vec<Vec<u8>>,
}

/// Totals of staging.
pub struct StageStats {
    pub chunks: u64,
    pub bytes: u64,
}

/// The restarter's current mappings as (start, end, kind).
pub fn own_maps() -> Result<Vec<(u64, u64, RegionKind)>, RestoreError> {
    let text = std::fs::read("/proc/self/maps")
        .map_err(|e| RestoreError::Io("cannot read /proc/self/maps".into(), e))?;
    MapsParser::new(&text)
        .map(|e| {
            e.map(|e| (e.start, e.end, e.kind)).map_err(|e| {
                RestoreError::Io(
                    "cannot parse /proc/self/maps".into(),
                    std::io::Error::other(e.to_string()),
                )
            })
        })
        .collect()
}

impl Plan {
    pub fn new(view: &ImageView, path: &Path) -> Result<Plan, RestoreError> {
        let page = crate::capture::sys::page_size() as u64;
        let regions: Vec<StagedRegion> = view
            .regions
            .iter()
            .map(|r| {
                let kind = RegionKind::from_u32(r.kind).unwrap_or(RegionKind::Anon);
                StagedRegion {
                    start: r.start,
                    end: r.end,
                    prot: r.prot,
                    kind,
                    staging: None,
                }
            })
            .collect();
        let mut busy: Vec<(u64, u64)> = regions.iter().map(|r| (r.start, r.end)).collect();
        busy.extend(own_maps()?.iter().map(|m| (m.0, m.1)));
        let mut plan = Plan {
            path: path.to_path_buf(),
            page,
            regions,
            busy: Vec::new(),
            sigactions: view.kernel.sigactions.clone(),
            mm: view.kernel.process.mm,
            auxv: view.kernel.process.auxv.to_vec(),
            fds: view
                .kernel
                .fds
                .iter()
                .map(|f: &FdEntry| OwnedFd {
                    fd: f.fd,
                    kind: f.kind,
                    flags: f.flags,
                    offset: f.offset,
                    // The program's own /proc files: this process's now.
                    path: super::files::own_proc_path(f.path, view.meta.pid)
                        .unwrap_or_else(|| f.path.to_vec()),
                    stamp: f.stamp,
                })
                .collect(),
            pipes: view
                .kernel
                .pipes
                .iter()
                .map(|p| (p.ino, p.data.to_vec()))
                .collect(),
            events: view.kernel.events.clone(),
            objects: view.kernel.objects.clone(),
            cwd: view.kernel.process.cwd.to_vec(),
            umask: view.kernel.process.umask,
            itimers: view.kernel.itimers,
            threads: view.threads.clone(),
            thread_pending: view.thread_pending.clone(),
            pending: view.kernel.pending,
            exact_ids: false,
            pid: view.meta.pid,
            restart_entry: view.meta.restart_entry,
            restart_mailbox: view.meta.restart_mailbox,
            session_role: view.meta.session_role,
            exe_path: view.meta.exe_path.to_vec(),
            shared: super::shared::SharedObjects::new(
                &view.regions,
                &view.kernel.objects.memfds().cloned().collect::<Vec<_>>(),
                &view
                    .kernel
                    .objects
                    .sysv_segments()
                    .copied()
                    .collect::<Vec<_>>(),
                page,
            ),
            vmflags: view
                .kernel
                .objects
                .mapping_flags()
                .map(|m| view.regions.iter().map(|r| m.of(r.start, r.end)).collect()),
            offsets: view.regions.iter().map(|r| r.offset).collect(),
            names: view.regions.iter().map(|r| r.path.to_vec()).collect(),
        };
        plan.set_busy(busy);
        plan.check_vdso()?;
        Ok(plan)
    }

    fn set_busy(&mut self, mut busy: Vec<(u64, u64)>) {
        busy.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(busy.len());
        for (s, e) in busy {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        self.busy = merged;
    }

    /// Marks a range as taken.
    pub fn take(&mut self, start: u64, end: u64) {
        let mut b = std::mem::take(&mut self.busy);
        b.push((start, end));
        self.set_busy(b);
    }

    /// Also treats every current mapping of the restarter as taken.
    pub fn refresh_own(&mut self) -> Result<(), RestoreError> {
        let mut b = std::mem::take(&mut self.busy);
        b.extend(own_maps()?.iter().map(|m| (m.0, m.1)));
        self.set_busy(b);
        Ok(())
    }

    /// A free, page-aligned range of `len` bytes with a guard page on each
    /// side, free in both address spaces; marked taken.
    pub fn pick(&mut self, len: u64) -> Result<u64, RestoreError> {
        self.pick_congruent(len, None)
    }

    /// As [`Plan::pick`]; with `phase`, the start is congruent to it modulo
    /// [`huge::BLOCK`], so that huge pages of the staging mapping stay whole
    /// when the restorer moves it to its final address.
    fn pick_congruent(&mut self, len: u64, phase: Option<u64>) -> Result<u64, RestoreError> {
        let guard = self.page;
        let place = |from: u64| {
            let s = from + guard;
            match phase {
                None => s,
                Some(ph) => {
                    let at = s - s % huge::BLOCK + ph % huge::BLOCK;
                    if at >= s {
                        at
                    } else {
                        at + huge::BLOCK
                    }
                }
            }
        };
        let mut from = PICK_LOW;
        for &(s, e) in &self.busy {
            if e <= from {
                continue;
            }
            if place(from) + len + guard <= s {
                break;
            }
            from = from.max(e.div_ceil(self.page) * self.page);
        }
        let start = place(from);
        if start + len + guard > PICK_HIGH {
            return Err(RestoreError::NoAddressSpace(len));
        }
        self.take(start - guard, start + len + guard);
        Ok(start)
    }

    /// The image's vdso/vvar mappings must match the restarter's in kind,
    /// size and relative layout.
    fn check_vdso(&self) -> Result<(), RestoreError> {
        let special = |k: RegionKind| {
            matches!(
                k,
                RegionKind::Vdso | RegionKind::Vvar | RegionKind::VvarVclock
            )
        };
        let img: Vec<_> = self
            .regions
            .iter()
            .filter(|r| special(r.kind))
            .map(|r| (r.kind, r.end - r.start))
            .collect();
        let own: Vec<_> = own_maps()?
            .into_iter()
            .filter(|m| special(m.2))
            .map(|m| (m.2, m.1 - m.0))
            .collect();
        if img != own {
            return Err(RestoreError::Vdso(format!("image {img:?}, here {own:?}")));
        }
        Ok(())
    }

    /// The word at `addr` of the image's memory as staged, if its 8 bytes
    /// lie in a region staged readable (every kind but shared files is
    /// staged read-write).
    pub fn staged_u64(&self, addr: u64) -> Option<u64> {
        let r = self.regions.iter().find(|r| {
            r.start <= addr && addr.checked_add(8).is_some_and(|e| e <= r.end) && addr % 8 == 0
        })?;
        let at = r.staging? + (addr - r.start);
        if r.kind == RegionKind::SharedFile && r.prot & libc::PROT_READ as u32 == 0 {
            return None;
        }
        // SAFETY: `at` is 8-aligned and its 8 bytes lie inside the
        // region's staging mapping, which is ours and readable.
        Some(unsafe { core::ptr::read_volatile(at as *const u64) })
    }

    pub fn staged_count(&self) -> usize {
        self.regions.iter().filter(|r| r.staging.is_some()).count()
    }

    /// Maps a staging area for every region, then fills it from the
    /// image's chunks (every checksum verified on the way).
    ///
    /// This thread reads and checks the records in file order; decoder
    /// threads decompress chunks straight into the staging mappings. At most
    /// `2 x threads` chunks wait in between, so memory stays bounded
    /// whatever the image's size.
    pub fn stage_all(&mut self, img: ImageFile) -> Result<StageStats, RestoreError> {
        self.stage_all_chain(img, Vec::new())
    }

    /// As [`Plan::stage_all`] for an incremental image: once the staging
    /// mappings are made, the pages of its ancestors (parent first in
    /// `ancestors`) are laid in, the oldest first, where the chain says
    /// they are still the program's; the image's own chunks go last, so
    /// each page comes from the newest image that has it.
    pub fn stage_all_chain(
        &mut self,
        img: ImageFile,
        ancestors: Vec<Ancestor>,
    ) -> Result<StageStats, RestoreError> {
        let huge_plans = if huge::wanted(self.page, crate::settings::restart_thp()?) {
            let file = std::fs::File::open(&self.path)
                .map_err(|e| RestoreError::Io(format!("cannot open {}", self.path.display()), e))?;
            huge::plan(&self.regions, self.page, |f| {
                crate::image::peek::chunk_runs(&file, |r, run| {
                    f(r, run.first_page, run.pages as u64)
                });
            })
        } else {
            self.regions.iter().map(|_| None).collect()
        };
        // Huge-page staging leaves NOHUGEPAGE advice behind: only where the
        // program had asked for huge pages (which `apply_advice` gives back),
        // unless forced or the image does not say.
        let forced = crate::settings::restart_thp()? == Some(true);
        let huge_plans: Vec<_> = huge_plans
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                let asked = self.flags_of(i).is_none_or(|f| f & vmflags::HUGEPAGE != 0);
                p.filter(|_| forced || asked)
            })
            .collect();
        for (i, hp) in huge_plans.iter().enumerate() {
            let name = self.names[i].clone();
            self.stage_region(i, &name)?;
            if let (Some(hp), Some(at)) = (hp, self.regions[i].staging) {
                let r = &self.regions[i];
                huge::prepare(at, r.end - r.start, self.page, hp);
            }
        }
        self.shared.make_unmapped()?;
        let page = self.page;
        for anc in ancestors.into_iter().rev() {
            place_ancestor(anc, &self.regions, page)?;
        }
        let threads = decode_threads();
        let mut stats = StageStats {
            chunks: 0,
            bytes: 0,
        };
        let regions = &self.regions;
        let failed: Mutex<Option<FormatError>> = Mutex::new(None);
        let abort = AtomicBool::new(false);
        let read = crossbeam::thread::scope(|sc| {
            let (tx, rx) = crossbeam::channel::bounded::<(u64, Chunk)>(2 * threads);
            for _ in 0..threads {
                let rx = rx.clone();
                let (failed, abort) = (&failed, &abort);
                sc.spawn(move |_| {
                    let mut buf = Vec::new();
                    for (base, c) in rx.iter() {
                        if abort.load(Relaxed) {
                            continue;
                        }
                        if let Err(e) = place_chunk(base, page, &c, &mut buf) {
                            abort.store(true, Relaxed);
                            if let Ok(mut f) = failed.lock() {
                                f.get_or_insert(e);
                            }
                        }
                    }
                });
            }
            drop(rx);
            // The reader checked that chunks come in increasing (region,
            // page) order, so no two touch the same page and the decoder
            // threads never write the same memory.
            img.for_each_chunk_deferred(|c| {
                if abort.load(Relaxed) {
                    return Err(FormatError::Invalid("a chunk could not be decoded".into()));
                }
                let r = &regions[c.header.region as usize];
                let base = r.staging.ok_or_else(|| {
                    FormatError::Invalid(format!(
                        "chunk at byte {} holds data for region {:#x}-{:#x}, which has none",
                        c.offset, r.start, r.end
                    ))
                })?;
                stats.chunks += 1;
                stats.bytes += c.header.raw_len as u64;
                tx.send((base, c))
                    .map_err(|_| FormatError::Invalid("the decoder threads stopped".into()))
            })
        })
        .map_err(|_| {
            RestoreError::Io(
                "a decoder thread panicked".into(),
                std::io::Error::other("panic"),
            )
        })?;
        for (r, _) in self
            .regions
            .iter()
            .zip(&huge_plans)
            .filter(|(_, p)| p.is_some())
        {
            if let Some(at) = r.staging {
                huge::advise(at, r.end - r.start, libc::MADV_NOHUGEPAGE);
            }
        }
        let source = match failed.into_inner().ok().flatten() {
            Some(e) => e,
            None => match read {
                Ok(_) => {
                    self.apply_advice();
                    self.finish_shared()?;
                    return Ok(stats);
                }
                Err(e) => e,
            },
        };
        Err(RestoreError::Image {
            path: self.path.clone(),
            source,
        })
    }

    /// Unmaps every staging mapping (benchmarks and tests that stage
    /// without handing over).
    pub fn unstage(&mut self) {
        for r in &mut self.regions {
            if let Some(at) = r.staging.take() {
                // SAFETY: the staging mapping was made by `stage_region`
                // with exactly this address and length and nothing else
                // refers to it.
                unsafe { libc::munmap(at as *mut libc::c_void, (r.end - r.start) as usize) };
            }
        }
    }

    /// Stages region `i` as an alias of its shared object (made, and
    /// mapped whole, with its first region).
    fn stage_shared(&mut self, i: usize, name: &[u8]) -> Result<(), RestoreError> {
        let r = self.regions[i].clone();
        if let Some(size) = self.shared.master_needed(i) {
            let at = self.pick(size)?;
            let noreserve = self
                .flags_of(i)
                .is_some_and(|f| f & vmflags::NORESERVE != 0);
            self.shared
                .make_master(i, at, noreserve)
                .map_err(|e| stage_err(&r, name, e))?;
        }
        let len = r.end - r.start;
        let at = self.pick(len)?;
        self.shared
            .alias(i, self.offset_of(i), len, at)
            .map_err(|e| stage_err(&r, name, e))?;
        self.regions[i].staging = Some(at);
        Ok(())
    }

    /// The recorded flags of region `i` (None: the image has none).
    fn flags_of(&self, i: usize) -> Option<u32> {
        self.vmflags
            .as_ref()
            .map(|v| v.get(i).copied().unwrap_or(0))
    }

    /// After filling: gives each staging mapping the program's `madvise`
    /// state (the restorer's mremap keeps it). A kernel that refuses one
    /// (KSM not built in, say) is said, not hidden.
    fn apply_advice(&self) {
        let advice = [
            (vmflags::DONTFORK, libc::MADV_DONTFORK, "MADV_DONTFORK"),
            (
                vmflags::WIPEONFORK,
                libc::MADV_WIPEONFORK,
                "MADV_WIPEONFORK",
            ),
            (vmflags::HUGEPAGE, libc::MADV_HUGEPAGE, "MADV_HUGEPAGE"),
            (
                vmflags::NOHUGEPAGE,
                libc::MADV_NOHUGEPAGE,
                "MADV_NOHUGEPAGE",
            ),
            (vmflags::MERGEABLE, libc::MADV_MERGEABLE, "MADV_MERGEABLE"),
            (vmflags::DONTDUMP, libc::MADV_DONTDUMP, "MADV_DONTDUMP"),
            (
                vmflags::SEQUENTIAL,
                libc::MADV_SEQUENTIAL,
                "MADV_SEQUENTIAL",
            ),
            (vmflags::RANDOM, libc::MADV_RANDOM, "MADV_RANDOM"),
        ];
        for (i, r) in self.regions.iter().enumerate() {
            let (Some(at), Some(f)) = (r.staging, self.flags_of(i)) else {
                continue;
            };
            if f & vmflags::LOCKED != 0 {
                // SAFETY: locks a whole staging mapping of ours in memory.
                let rc =
                    unsafe { libc::mlock(at as *const libc::c_void, (r.end - r.start) as usize) };
                if rc != 0 {
                    eprintln!(
                        "selfckpt: warning: region {:#x}-{:#x}: cannot be locked in memory again (mlock): {}",
                        r.start,
                        r.end,
                        std::io::Error::last_os_error()
                    );
                }
            }
            for &(bit, adv, name) in &advice {
                if f & bit == 0 {
                    continue;
                }
                // SAFETY: advice on a whole staging mapping of ours.
                let rc = unsafe {
                    libc::madvise(at as *mut libc::c_void, (r.end - r.start) as usize, adv)
                };
                if rc != 0 {
                    eprintln!(
                        "selfckpt: warning: region {:#x}-{:#x}: {name} cannot be given again: {}",
                        r.start,
                        r.end,
                        std::io::Error::last_os_error()
                    );
                }
            }
        }
    }

    /// After filling: the shared objects' masters go, seals come back.
    fn finish_shared(&mut self) -> Result<(), RestoreError> {
        let staged: Vec<Option<(u64, u64, u64, bool)>> = self
            .regions
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let may_write = self.flags_of(i).is_none_or(|f| f & vmflags::MAYWRITE != 0);
                r.staging
                    .map(|s| (s, r.end - r.start, self.offset_of(i), may_write))
            })
            .collect();
        self.shared.finish(&staged)
    }

    fn stage_region(&mut self, i: usize, name: &[u8]) -> Result<(), RestoreError> {
        /// Linux 6.11's mapping type (not in the libc crate yet).
        const MAP_DROPPABLE: i32 = 0x08;
        if self.shared.is_shared(i) {
            return self.stage_shared(i, name);
        }
        let r = self.regions[i].clone();
        let deleted = name.ends_with(b" (deleted)");
        let len = r.end - r.start;
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        // The program's flags where the image has them: no reserve only
        // where it had none, growing down where it did.
        let f = self.flags_of(i);
        let has = |bit: u32| f.is_some_and(|f| f & bit != 0);
        let noreserve = if f.is_none() || has(vmflags::NORESERVE) {
            libc::MAP_NORESERVE
        } else {
            0
        };
        let grows = if has(vmflags::GROWSDOWN) {
            libc::MAP_GROWSDOWN
        } else {
            0
        };
        let anon = libc::MAP_ANONYMOUS | noreserve;
        let (prot, flags, file): (i32, i32, Option<(std::fs::File, u64)>) = match r.kind {
            RegionKind::Vdso | RegionKind::Vvar | RegionKind::VvarVclock | RegionKind::Vsyscall => {
                return Ok(())
            }
            // Memory the kernel may drop under pressure (`MAP_DROPPABLE`,
            // a mapping type of its own: glibc keeps getrandom's state so).
            RegionKind::Anon if has(vmflags::DROPPABLE) => {
                (rw, MAP_DROPPABLE | libc::MAP_ANONYMOUS, None)
            }
            RegionKind::Anon | RegionKind::Heap => (rw, libc::MAP_PRIVATE | anon | grows, None),
            RegionKind::Stack => (rw, libc::MAP_PRIVATE | anon | libc::MAP_GROWSDOWN, None),
            RegionKind::SharedAnon => (rw, libc::MAP_SHARED | anon, None),
            RegionKind::PrivateFile if deleted => (rw, libc::MAP_PRIVATE | anon, None),
            RegionKind::PrivateFile => {
                let f = open_file(name, false).map_err(|e| stage_err(&r, name, e))?;
                (rw, libc::MAP_PRIVATE, Some((f, self.offset_of(i))))
            }
            RegionKind::SharedFile if !deleted => {
                // Read-write where any part was, or could be made so
                // (`mw`): mprotect(PROT_WRITE) works after the restart.
                let writable = r.prot & libc::PROT_WRITE as u32 != 0 || has(vmflags::MAYWRITE);
                let f = open_file(name, writable).map_err(|e| stage_err(&r, name, e))?;
                (
                    r.prot as i32,
                    libc::MAP_SHARED,
                    Some((f, self.offset_of(i))),
                )
            }
            _ => {
                return Err(stage_err(
                    &r,
                    name,
                    std::io::Error::other("this kind of mapping cannot be restored"),
                ))
            }
        };
        let phase = huge::eligible(r.kind, len).then_some(r.start);
        let at = self.pick_congruent(len, phase)?;
        let (fd, off) = file
            .as_ref()
            .map_or((-1, 0), |(f, o)| (std::os::fd::AsRawFd::as_raw_fd(f), *o));
        // SAFETY: a new mapping at an address we reserved as free
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
            return Err(stage_err(&r, name, std::io::Error::last_os_error()));
        }
        self.regions[i].staging = Some(at);
        Ok(())
    }

    fn offset_of(&self, i: usize) -> u64 {
        self.offsets.get(i).copied().unwrap_or(0)
    }
}

/// Decoder threads for staging: one per CPU, at most 8.
fn decode_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}

/// Decodes one chunk into its region's staging mapping at `base`, reading
/// its data if it is still in the file (see [`Chunk::place`]); `buf` is this
/// decoder thread's reusable buffer for compressed data.
fn place_chunk(base: u64, page: u64, c: &Chunk, buf: &mut Vec<u8>) -> Result<(), FormatError> {
    let mut dsts: Vec<&mut [u8]> = c
        .runs
        .iter()
        .map(|run| {
            // SAFETY: the reader checked that the run lies inside its region;
            // the staging mapping has the region's size and is writable and
            // private to this process; chunks come in increasing page order
            // (checked in `stage_all`), so no other thread writes these
            // pages.
            unsafe {
                std::slice::from_raw_parts_mut(
                    (base + run.first_page * page) as *mut u8,
                    run.pages as usize * page as usize,
                )
            }
        })
        .collect();
    for d in &dsts {
        // Fault the run in with one call instead of a trap per page; a
        // kernel without MADV_POPULATE_WRITE just faults as we write.
        // SAFETY: advice on a range of our own staging mapping.
        unsafe {
            libc::madvise(
                d.as_ptr() as *mut libc::c_void,
                d.len(),
                libc::MADV_POPULATE_WRITE,
            )
        };
    }
    c.place(&mut dsts, buf)
}

/// Lays the pages of one ancestor into the staging mappings of the image
/// being restarted, where its `usable` ranges say they still hold.
fn place_ancestor(anc: Ancestor, regions: &[StagedRegion], page: u64) -> Result<(), RestoreError> {
    let usable = anc.usable.clone();
    let mut buf = Vec::new();
    let page_len = page as usize;
    anc.read(|c, (region_start, _)| {
        buf.resize(c.header.raw_len as usize, 0);
        c.decode_into(&mut buf)?;
        let mut pages = buf.chunks_exact(page_len);
        for run in &c.runs {
            for p in 0..run.pages as u64 {
                let Some(src) = pages.next() else {
                    return Err(FormatError::Invalid("chunk shorter than its runs".into()));
                };
                let addr = region_start + (run.first_page + p) * page;
                if !chain::contains(&usable, addr) {
                    continue;
                }
                let i = regions.partition_point(|r| r.end <= addr);
                let Some((r, base)) = regions
                    .get(i)
                    .filter(|r| r.start <= addr)
                    .and_then(|r| Some((r, r.staging?)))
                else {
                    continue;
                };
                // SAFETY: `addr` lies in region `r`, whose staging mapping
                // at `base` has the region's size and is writable and
                // private to this process; no other thread writes it now.
                unsafe {
                    core::ptr::copy_nonoverlapping(
                        src.as_ptr(),
                        (base + (addr - r.start)) as *mut u8,
                        page_len,
                    )
                };
            }
        }
        Ok(())
    })
    .map_err(RestoreError::Chain)
}

fn open_file(name: &[u8], write: bool) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(write)
        .open(Path::new(std::ffi::OsStr::from_bytes(name)))
}

fn stage_err(r: &StagedRegion, name: &[u8], source: std::io::Error) -> RestoreError {
    RestoreError::Stage {
        start: r.start,
        end: r.end,
        what: format!("{} {}", r.kind.name(), crate::image::show::shown(name)),
        source,
    }
}
