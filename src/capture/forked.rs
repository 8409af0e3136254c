//! Forked checkpoints: the dumping child.
//!
//! ```text
//!  pause (threads parked)            child (copy-on-write snapshot)     parent
//!  ─────────────────────             ──────────────────────────────     ──────
//!  META REGIONS KERNEL THREADS
//!  shadow: copy the pages the
//!   child cannot see by itself
//!  clone3(CLONE_PIDFD, exit 0) ──┬─> PDEATHSIG, name, own pagemap
//!                                │   and mem, maps check, workers
//!  release ──────────────────────┼─────────────────────────────────>  program runs
//!                                │   pages + END into NAME.tmp        manager waits
//!                                │   (cow meter: smaps_rollup)         on the pidfd
//!                                └─> report in shared scratch, _exit ─> commit
//! ```
//!
//! * The child is a clone with exit signal 0: no SIGCHLD reaches the
//!   program, and `wait`/`waitpid` without `__WALL`/`__WCLONE` never
//!   report it. It dies with the checkpoint thread (`PR_SET_PDEATHSIG`),
//!   asks the OOM killer to take it first, leaves by `_exit` only, and the
//!   parent kills it after the configured timeout.
//! * Kernel state (descriptors and their offsets, signals, threads) is
//!   captured in the pause by the parent: the child reads no descriptor of
//!   the program and moves no offset; it opens its own `/proc/self/mem`
//!   and `/proc/self/pagemap` (the parent's are bound to the parent's
//!   memory, which changes).
//! * Regions the child does not see as they were (shared anonymous memory,
//!   whose page tables fork does not copy and which the program keeps
//!   writing; private mappings of deleted files) are copied in the pause
//!   into the shadow, in the (shared) scratch arena, and stored from there.
//! * Compression: the parent's workers do not exist in the child. The
//!   child starts as many raw threads (`clone(CLONE_THREAD|CLONE_VM..)`,
//!   stacks carved from scratch, a guard page each) as there are workers;
//!   they share the child's thread pointer, so they run nothing that uses
//!   thread-local storage but `errno` (whose value they may garble for
//!   the child's main thread: only error messages can suffer).
//! * Copy-on-write is measured in the child (`CowMeter`, every 100 ms or
//!   more, and at the end): growth of its
//!   `Private_Clean + Private_Dirty` in `/proc/self/smaps_rollup` since the
//!   fork, less the scratch arena's pages only the child maps (its
//!   chunks, stacks and compressor workspaces: pagemap's "exclusively
//!   mapped" bit), i.e. pages that stopped being shared with the parent
//!   (the parent wrote them, or unmapped them, or the child wrote its own
//!   stack and statics: a few pages). Over the limit the child stops and
//!   the checkpoint fails cleanly.
//!
//! Runs in the pause and in the child, where parked threads of the parent
//! may have held malloc's lock when the child was made: must never
//! allocate, print or lock. [`Child::wait`] runs in the parent after
//! release (ordinary context, but allocates nothing either).

use crate::capture::dump::{DumpError, DumpStats};
use crate::capture::pages::{PageRun, PageScanner, PagesError, ScanMethod};
use crate::capture::scratch::{FixedVec, Scratch};
use crate::capture::sys::{self, RawFd};
use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering::*};

/// Stack of each compression thread of the child (the parent's workers
/// compress on 256 KiB too).
pub const CHILD_STACK: usize = 256 << 10;
/// Most runs the shadow can hold.
pub const MAX_SHADOW_RUNS: usize = 65_536;
/// Bytes of pagemap entries the meter reads at a time.
const PAGEMAP_BUF: usize = 64 << 10;
/// Least time between two copy-on-write measurements; also at least 20
/// times what the last one took (reading smaps_rollup walks every page
/// table: its cost is bounded to 5% of the dump).
const COW_EVERY_NS: u64 = 100_000_000;
/// The child's exit code when it found itself orphaned at birth.
const EXIT_ORPHANED: i32 = 3;

/// What a forked dump needs, decided before the threads are suspended.
#[derive(Clone, Copy, Debug)]
pub struct ForkPlan {
    /// Bytes of the shadow (pages copied in the pause).
    pub shadow_cap: usize,
    /// Most copy-on-write bytes before the child gives up (0: no limit).
    pub cow_limit: u64,
    /// Compression threads the child starts.
    pub workers: usize,
    /// Bytes of the buffer the child reads its /proc/self/maps into.
    pub maps_cap: usize,
}

impl ForkPlan {
    /// Scratch bytes the fork needs on top of the dump's.
    pub fn scratch_needed(&self) -> usize {
        let page = sys::page_size();
        self.shadow_cap
            + MAX_SHADOW_RUNS * core::mem::size_of::<ShadowRun>()
            + self.workers * (CHILD_STACK + page) * 2
            + self.maps_cap
            + 3 * page
            + PAGEMAP_BUF
            + core::mem::size_of::<Report>()
            + 4 * 64
    }
}

// ---------------------------------------------------------------------------
// The shadow: pages copied in the pause.

/// Pages of one region stored in the shadow, from `at` (bytes into it).
#[derive(Clone, Copy, Default, Debug)]
pub struct ShadowRun {
    pub region: u32,
    pub addr: u64,
    pub pages: u64,
    pub at: usize,
}

/// The pages copied in the pause, in region order.
pub struct Shadow<'a> {
    runs: &'a [ShadowRun],
    data: &'a [u8],
}

impl<'a> Shadow<'a> {
    /// The runs of region `ri`.
    pub fn runs_of(&self, ri: u32) -> impl Iterator<Item = &'a ShadowRun> + 'a {
        let runs: &'a [ShadowRun] = self.runs;
        runs.iter().filter(move |r| r.region == ri)
    }

    /// Page `p` of `run`.
    pub fn page(&self, run: &ShadowRun, p: u64, page: usize) -> &'a [u8] {
        let at = run.at + p as usize * page;
        let data: &'a [u8] = self.data;
        &data[at..at + page]
    }
}

/// A region to copy into the shadow: index, bounds, whether readable,
/// and whether it is private memory the child does not have
/// (`MADV_DONTFORK`: its present pages are copied) rather than a shared
/// object (its resident pages).
#[derive(Clone, Copy)]
pub struct Shadowed {
    pub region: u32,
    pub start: u64,
    pub end: u64,
    pub readable: bool,
    pub dontfork: bool,
}

/// Copies every resident page of `regions` (shared objects: found as
/// `pages::resident_shared` finds them; `MADV_DONTFORK` memory: its
/// present pages; read directly or through the parent's /proc/self/mem)
/// into the shadow. `Err(reason)`: they do not fit (the dump then runs in the
/// pause, not forked).
pub fn copy_shadow<'a>(
    s: &'a Scratch,
    plan: &ForkPlan,
    mem: &RawFd,
    scanner: &PageScanner,
    regions: impl Iterator<Item = Shadowed>,
    runs_buf: &mut [PageRun],
    tmp: &mut [u8],
) -> Result<Shadow<'a>, &'static str> {
    const TOO_BIG: &str = "the shared memory grew beyond what was set aside for it";
    let page = sys::page_size();
    let mut runs = FixedVec::new(
        s.room::<ShadowRun>(MAX_SHADOW_RUNS)
            .map_err(|_| "no room for the shadow's runs")?,
    );
    let data = s.bytes(plan.shadow_cap).map_err(|_| TOO_BIG)?;
    let mut used = 0usize;
    // Shared objects: their pages are found as the dump finds them (pages
    // written through another mapping of the object count too).
    let every = crate::capture::pages::swap_in_use(tmp);
    for r in regions {
        let mut at = r.start;
        while at < r.end {
            let scanned = if r.dontfork {
                scanner.scan(
                    at,
                    r.end,
                    crate::capture::pages::Want::AnonData,
                    runs_buf,
                    tmp,
                )
            } else {
                crate::capture::pages::resident_shared(at, r.end, every, runs_buf, tmp)
            };
            let (n, next) = match scanned {
                Ok(n) => (n, r.end),
                Err(PagesError::OutOfRuns { resume_at }) => (runs_buf.len(), resume_at),
                Err(_) => return Err("the pages of a shared mapping could not be scanned"),
            };
            for run in &runs_buf[..n] {
                let bytes = run.pages as usize * page;
                if used + bytes > data.len() {
                    return Err(TOO_BIG);
                }
                let dst = &mut data[used..used + bytes];
                if r.readable {
                    // SAFETY: the run lies in a readable mapping that
                    // nobody unmaps while the program is suspended.
                    let src = unsafe { core::slice::from_raw_parts(run.addr as *const u8, bytes) };
                    dst.copy_from_slice(src);
                } else if !matches!(mem.pread(dst, run.addr), Ok(n) if n == bytes) {
                    return Err("an unreadable shared mapping could not be read");
                }
                runs.push(ShadowRun {
                    region: r.region,
                    addr: run.addr,
                    pages: run.pages,
                    at: used,
                })
                .map_err(|_| "the shared memory is in too many pieces")?;
                used += bytes;
            }
            at = next;
        }
    }
    Ok(Shadow {
        runs: runs.into_mut_slice(),
        data: &data[..used],
    })
}

// ---------------------------------------------------------------------------
// The report the child leaves in shared scratch.

#[repr(C)]
struct Report {
    done: AtomicU32,
    cow_bytes: AtomicU64,
    result: UnsafeCell<MaybeUninit<Result<DumpStats, DumpError>>>,
}

// ---------------------------------------------------------------------------
// Fork.

/// The dumping child, as its parent holds it.
#[derive(Debug)]
pub struct Child {
    pid: i32,
    pidfd: i32,
    report: *const Report,
}

// SAFETY: the report pointer is only read by the checkpoint thread, while
// the plan that owns its scratch is alive (`wait_done`); `reap` does not
// touch it.
unsafe impl Send for Child {}

/// What the child did.
#[derive(Clone, Copy, Debug)]
pub struct ChildDone {
    pub stats: DumpStats,
    /// Copy-on-write bytes (see the module header).
    pub cow_bytes: u64,
}

/// The child's side: everything carved before the fork.
pub struct ChildSide<'a> {
    report: &'a Report,
    maps: &'a mut [u8],
    rollup: &'a mut [u8],
    stacks: *mut u8,
    workers: usize,
    pub cow: CowMeter,
}

/// Either side of the fork.
pub enum Fork<'a> {
    Parent(Child),
    Child(ChildSide<'a>),
}

/// The child's buffers, carved before the shadow.
pub struct Carved<'a> {
    range: (u64, u64),
    report: &'a Report,
    maps: &'a mut [u8],
    rollup: &'a mut [u8],
    stacks: usize,
}

/// Carves the child's buffers out of the arena.
pub fn carve<'a>(s: &'a Scratch, plan: &ForkPlan) -> Result<Carved<'a>, DumpError> {
    let page = sys::page_size();
    const _: () = assert!(core::mem::align_of::<Report>() <= 64);
    let report = s
        .bytes(core::mem::size_of::<Report>())?
        .as_mut_ptr()
        .cast::<Report>();
    // SAFETY: scratch bytes are 64-aligned, as large as a Report and ours
    // alone; written before any use.
    let report: &'a Report = unsafe {
        report.write(Report {
            done: AtomicU32::new(0),
            cow_bytes: AtomicU64::new(0),
            result: UnsafeCell::new(MaybeUninit::uninit()),
        });
        &*report
    };
    let maps = s.bytes(plan.maps_cap)?;
    let rollup = s.bytes(2 * page + PAGEMAP_BUF)?;
    let stacks = s.bytes(plan.workers * (CHILD_STACK + page) + page)?;
    // Page-aligned start for the guard pages.
    let base = stacks.as_mut_ptr() as usize;
    let stacks = base.div_ceil(page) * page;
    Ok(Carved {
        range: s.range(),
        report,
        maps,
        rollup,
        stacks,
    })
}

/// Forks the dumping child. In the child, returns `Fork::Child` (the
/// caller writes the pages and ends with [`ChildSide::exit`], never
/// returning); in the parent `Fork::Parent`. `Err`: no child was made.
pub fn fork<'a>(c: Carved<'a>, plan: &ForkPlan) -> Result<Fork<'a>, DumpError> {
    let Carved {
        range: s_range,
        report,
        maps,
        rollup,
        stacks,
    } = c;
    let parent = sys::getpid();
    // No exit signal to the parent; libc's fork is not used (its handlers
    // lock).
    let (pid, pidfd) = sys::fork_with_pidfd().map_err(DumpError::Fork)?;
    if pid > 0 {
        return Ok(Fork::Parent(Child { pid, pidfd, report }));
    }
    // The child.
    // SAFETY: prctl and getppid have no memory preconditions.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
        if libc::getppid() as u32 != parent {
            libc::_exit(EXIT_ORPHANED);
        }
        libc::prctl(libc::PR_SET_NAME, c"selfckpt-dump".as_ptr());
    }
    // Under memory pressure the dump goes first, not the program.
    if let Ok(fd) = RawFd::open(b"/proc/self/oom_score_adj\0", libc::O_WRONLY, 0) {
        let _ = fd.write_all(b"1000");
    }
    let mut side = ChildSide {
        report,
        maps,
        rollup,
        stacks: stacks as *mut u8,
        workers: plan.workers,
        cow: CowMeter {
            base: 0,
            limit: plan.cow_limit,
            next_ns: 0,
            cost_ns: 0,
            buf: core::ptr::null_mut(),
            buf_len: 0,
            report,
            scratch: s_range,
            pagemap: RawFd::open(b"/proc/self/pagemap\0", libc::O_RDONLY, 0).ok(),
        },
    };
    side.cow.buf = side.rollup.as_mut_ptr();
    side.cow.buf_len = side.rollup.len();
    side.cow.base = side.cow.private_bytes().unwrap_or(0);
    side.cow.next_ns = sys::now_ns() + COW_EVERY_NS;
    Ok(Fork::Child(side))
}

impl ChildSide<'_> {
    /// Opens the child's own page scanner (same method as the parent's)
    /// and /proc/self/mem.
    pub fn open_own(&self, method: ScanMethod) -> Result<(PageScanner, RawFd), DumpError> {
        let scanner = PageScanner::open_with(method).map_err(|err| DumpError::Pages {
            start: 0,
            end: 0,
            err,
        })?;
        let mem = RawFd::open(b"/proc/self/mem\0", libc::O_RDONLY, 0)
            .map_err(|errno| DumpError::ReadMemory { addr: 0, errno })?;
        Ok((scanner, mem))
    }

    /// Checks that every region of the image is mapped in the child (a
    /// `MADV_DONTFORK` region is not: those the pause copied into the
    /// shadow are not given): `Err` names the first that is not.
    pub fn check_maps(
        &mut self,
        regions: impl Iterator<Item = (u64, u64)>,
    ) -> Result<(), DumpError> {
        let n = crate::capture::maps::read_self_maps(self.maps)
            .map_err(|_| DumpError::Maps(sys::Errno(libc::EIO)))?;
        let text: &[u8] = &self.maps[..n];
        let mut entries = crate::capture::maps::MapsParser::new(text).filter_map(|e| e.ok());
        let mut cur = entries.next();
        for (start, end) in regions {
            let mut at = start;
            while at < end {
                match &cur {
                    Some(e) if e.end <= at => cur = entries.next(),
                    Some(e) if e.start <= at => at = e.end.min(end),
                    _ => return Err(DumpError::NotInChild { start, end }),
                }
            }
        }
        Ok(())
    }

    /// Checks the mapping flags the pause took from the survey against the
    /// child's own (`kstate::vmflags::check_in_child`).
    pub fn check_flags(
        &mut self,
        now: crate::kstate::vmflags::SurveyInPause,
    ) -> Result<(), DumpError> {
        crate::kstate::vmflags::check_in_child(now, self.maps)
            .map_err(|(start, end)| DumpError::FlagsChanged { start, end })
    }

    /// Starts the child's compression threads (compressor `i` for thread
    /// `i`; the child's own thread uses the last, as the manager does).
    pub fn start_workers(&mut self) -> Result<(), DumpError> {
        let page = sys::page_size();
        for i in 0..self.workers {
            // SAFETY: each stack is its own CHILD_STACK + page bytes of the
            // scratch arena, carved for this (`fork`).
            let stack = unsafe { self.stacks.add(i * (CHILD_STACK + page)) };
            // SAFETY: the guard page lies inside that range.
            unsafe { libc::mprotect(stack.cast(), page, libc::PROT_NONE) };
            // SAFETY: glibc's clone wrapper runs `child_worker(i)` on the
            // new stack (top: its end) and exits the thread after it; the
            // thread shares this process's memory and descriptors.
            let r = unsafe {
                libc::clone(
                    child_worker,
                    stack.add(CHILD_STACK + page).cast(),
                    libc::CLONE_VM
                        | libc::CLONE_FS
                        | libc::CLONE_FILES
                        | libc::CLONE_SIGHAND
                        | libc::CLONE_THREAD
                        | libc::CLONE_SYSVSEM,
                    i as *mut libc::c_void,
                )
            };
            if r < 0 {
                return Err(DumpError::Fork(sys::Errno::last()));
            }
        }
        Ok(())
    }

    /// Leaves the child: the result goes into the report, then `_exit`.
    pub fn exit(self, result: Result<DumpStats, DumpError>) -> ! {
        let ok = result.is_ok();
        if let Ok(cow) = self.cow.measure() {
            self.report.cow_bytes.fetch_max(cow, AcqRel);
        }
        // SAFETY: only the child writes the result, once, before `done`.
        unsafe { (*self.report.result.get()).write(result) };
        self.report.done.store(1, Release);
        shared_futex(&self.report.done, libc::FUTEX_WAKE, i32::MAX as u32, None);
        // SAFETY: _exit ends the process (every thread of it) at once.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) }
    }
}

/// A compression thread of the child.
extern "C" fn child_worker(arg: *mut libc::c_void) -> libc::c_int {
    crate::capture::dump::child_worker_loop(arg as usize);
    0
}

/// Measures copy-on-write in the child (see the module header).
pub struct CowMeter {
    base: u64,
    limit: u64,
    /// When to measure next, and what the last measurement took.
    next_ns: u64,
    cost_ns: u64,
    buf: *mut u8,
    buf_len: usize,
    report: *const Report,
    /// The scratch arena: its pages only the child maps (its chunks,
    /// stacks, compressor workspaces) are the dump's own memory, not
    /// copies, and are left out.
    scratch: (u64, u64),
    pagemap: Option<RawFd>,
}

impl CowMeter {
    /// The child's private bytes, less those of the scratch arena.
    fn private_bytes(&self) -> Option<u64> {
        // SAFETY: buf is the child's meter buffer, carved from scratch.
        let buf = unsafe { core::slice::from_raw_parts_mut(self.buf, self.buf_len) };
        let (text_buf, entries) = buf.split_at_mut(self.buf_len - PAGEMAP_BUF);
        let n = sys::read_file(b"/proc/self/smaps_rollup\0", text_buf).ok()?;
        let text = &text_buf[..n];
        let kib = |key: &[u8]| {
            sys::field(text, key)
                .and_then(sys::parse_u64)
                .map(|(v, _)| v)
        };
        let private = (kib(b"Private_Clean:")? + kib(b"Private_Dirty:")?) * 1024;
        Some(private.saturating_sub(self.scratch_own_bytes(entries)))
    }

    /// Bytes of scratch pages mapped by the child alone (pagemap bit 56,
    /// "exclusively mapped", with bit 63, present).
    fn scratch_own_bytes(&self, entries: &mut [u8]) -> u64 {
        let Some(fd) = &self.pagemap else {
            return 0;
        };
        let page = sys::page_size() as u64;
        let (lo, hi) = self.scratch;
        let (mut at, mut own) = (lo / page, 0u64);
        while at < hi / page {
            let want = (((hi / page - at) * 8) as usize).min(entries.len());
            let Ok(n) = fd.pread(&mut entries[..want], at * 8) else {
                return own * page;
            };
            if n < 8 {
                break;
            }
            own += entries[..n / 8 * 8]
                .chunks_exact(8)
                .filter(|e| {
                    let v = u64::from_ne_bytes([e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7]]);
                    v & (1 << 63) != 0 && v & (1 << 56) != 0
                })
                .count() as u64;
            at += (n / 8) as u64;
        }
        own * page
    }

    fn measure(&self) -> Result<u64, DumpError> {
        let cow = self
            .private_bytes()
            .map_or(0, |now| now.saturating_sub(self.base));
        // SAFETY: the report lives in scratch for the whole dump.
        unsafe { (*self.report).cow_bytes.fetch_max(cow, AcqRel) };
        if self.limit != 0 && cow > self.limit {
            return Err(DumpError::CowLimit {
                limit: self.limit,
                reached: cow,
            });
        }
        Ok(cow)
    }

    /// Called after each chunk: measures now and then.
    pub fn after_chunk(&mut self) -> Result<(), DumpError> {
        let now = sys::now_ns();
        if now < self.next_ns {
            return Ok(());
        }
        self.measure()?;
        let done = sys::now_ns();
        self.cost_ns = done - now;
        self.next_ns = done + COW_EVERY_NS.max(20 * self.cost_ns);
        Ok(())
    }
}

const P_PIDFD: libc::idtype_t = 3;

/// A futex call on a word of the shared scratch arena (not private: the
/// parent and the child are two processes).
fn shared_futex(word: &AtomicU32, op: i32, val: u32, timeout_ns: Option<u64>) {
    let ts = timeout_ns.map(|ns| libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    });
    let tsp = ts
        .as_ref()
        .map_or(core::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a valid, aligned u32 of a shared mapping both
    // processes have; `tsp` is null or a live timespec.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), op, val, tsp) };
}

impl Child {
    /// The child's process id.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Waits until the child has reported (at most `timeout_ms`, 0: no
    /// limit; then it is killed) or died, and reads its report. Runs in the
    /// parent after release. The child may still be exiting (its address
    /// space going away): [`Child::reap`] it after the commit.
    pub fn wait_done(&self, timeout_ms: u64) -> Result<ChildDone, DumpError> {
        let deadline = (timeout_ms != 0).then(|| sys::now_ns() + timeout_ms * 1_000_000);
        // SAFETY: the report lives in the parent's scratch until the plan
        // is dropped, after this.
        let report = unsafe { &*self.report };
        let mut timed_out = false;
        while report.done.load(Acquire) == 0 && !self.exited() {
            if deadline.is_some_and(|d| sys::now_ns() >= d) {
                timed_out = true;
                // SAFETY: a signal to our own child, named by its pidfd.
                unsafe {
                    libc::syscall(
                        libc::SYS_pidfd_send_signal,
                        self.pidfd,
                        libc::SIGKILL,
                        core::ptr::null::<libc::siginfo_t>(),
                        0,
                    )
                };
                break;
            }
            shared_futex(&report.done, libc::FUTEX_WAIT, 0, Some(50_000_000));
        }
        if report.done.load(Acquire) == 1 {
            // SAFETY: `done` says the child wrote the result before it.
            let result = unsafe { (*report.result.get()).assume_init_read() };
            let cow_bytes = report.cow_bytes.load(Acquire);
            return result.map(|stats| ChildDone { stats, cow_bytes });
        }
        if timed_out {
            return Err(DumpError::ChildTimeout {
                secs: timeout_ms / 1000,
            });
        }
        let (waited, code, status) = self.reap_status();
        Err(match (waited, code) {
            (true, libc::CLD_KILLED | libc::CLD_DUMPED) => {
                DumpError::ChildKilled { signal: status }
            }
            _ => DumpError::ChildExited { code: status },
        })
    }

    /// Whether the child has exited (its pidfd is readable).
    fn exited(&self) -> bool {
        let mut p = libc::pollfd {
            fd: self.pidfd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd; no waiting.
        unsafe { libc::poll(&mut p, 1, 0) > 0 }
    }

    /// Reaps the child (waits for it to be gone): whether it was reaped,
    /// and its `si_code` and `si_status`.
    fn reap_status(&self) -> (bool, i32, i32) {
        // SAFETY: siginfo_t is plain data; waitid fills it.
        let mut info: libc::siginfo_t = unsafe { core::mem::zeroed() };
        loop {
            // SAFETY: reaps our own child through its pidfd (`__WALL`: a
            // clone child, which the program's own waits never see).
            let r = unsafe {
                libc::waitid(
                    P_PIDFD,
                    self.pidfd as libc::id_t,
                    &mut info,
                    libc::WEXITED | libc::__WALL,
                )
            };
            if r == 0 {
                // SAFETY: waitid filled a CLD_* siginfo.
                return (true, info.si_code, unsafe { info.si_status() });
            }
            if sys::Errno::last().0 != libc::EINTR {
                return (false, 0, 0);
            }
        }
    }

    /// Reaps the child (it has reported or died) and closes its pidfd.
    pub fn reap(self) {
        let _ = self.reap_status();
        drop(RawFd(self.pidfd));
    }
}
