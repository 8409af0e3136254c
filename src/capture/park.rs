//! Suspend, park and bring back threads.
//!
//! To suspend, the manager sends every other thread the suspend signal
//! (`tgkill`). Each thread's handler records what a restart needs in its
//! [`ThreadSlot`] (thread pointer, tid address, rseq area, robust list, the
//! address of its signal frame) and parks on a futex until released. The
//! signal frame the kernel pushed holds the thread's complete interrupted
//! state, so a restarted thread only has to return through it
//! (`rt_sigreturn`): see [`restart_entry`].
//!
//! The manager then signals itself: it runs the dump inside its own handler,
//! so it has a signal frame like everyone else, and worker threads compress
//! chunks from inside theirs.
//!
//! Everything in this file runs while other threads are suspended, or in a
//! restarted thread before release: it must not allocate, print, or take a
//! lock (parked threads may hold malloc's).

use crate::arch;
use crate::capture::sys::{self, futex_wait, futex_wake, RawFd};
use crate::image::model::{SignalSet, ThreadRole, ThreadState};
use core::cell::{Cell, UnsafeCell};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::*};
use thiserror::Error;

/// Most threads a checkpoint can hold.
pub const MAX_THREADS: usize = 1024;

/// Why threads could not be suspended.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum SuspendError {
    /// Holds no name: it is built while threads are parked (the name is
    /// looked up after release, see `crate::threads::SuspendFailure`).
    #[error("thread {tid} did not stop within {ms} ms: it may block the suspend signal {signal}")]
    Timeout { tid: u32, ms: u64, signal: i32 },
    #[error("more than {MAX_THREADS} threads")]
    TooManyThreads,
    #[error("cannot list the process's threads: {0}")]
    ListTasks(sys::Errno),
}

/// One parked thread's record. Written by the thread itself in its handler,
/// read by the manager after `PARKED` says the thread is done with it.
/// `pending` is written only by a restart (the restorer pokes the thread's
/// pending signals there, `restorer_abi::SLOT_PENDING_OFFSET`) and emptied
/// by the thread in [`restart_entry`].
#[repr(C)]
pub struct ThreadSlot {
    state: UnsafeCell<ThreadState>,
    pending: AtomicU64,
}

// The one word of a slot a restarter writes lies where the restorer
// interface says (part of its MAILBOX_LAYOUT).
const _: () = assert!(
    core::mem::offset_of!(ThreadSlot, pending) as u64 == crate::restorer_abi::SLOT_PENDING_OFFSET
);

// SAFETY: a slot is written only by the thread that claimed it (claiming is
// an atomic fetch_add), and read by others only after that thread published
// it with a Release increment of PARKED (or ARRIVED after a restart).
unsafe impl Sync for ThreadSlot {}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY_SLOT: ThreadSlot = ThreadSlot {
    state: UnsafeCell::new(ThreadState {
        tid: 0,
        role: 0,
        slot: 0,
        tls: 0,
        tid_address: 0,
        frame: 0,
        entry_sp: 0,
        ip: 0,
        sp: 0,
        sigmask: 0,
        rseq_addr: 0,
        rseq_len: 0,
        rseq_sig: 0,
        robust_head: 0,
        robust_len: 0,
        comm: [0; 16],
    }),
    pending: AtomicU64::new(0),
};

static SLOTS: [ThreadSlot; MAX_THREADS] = [EMPTY_SLOT; MAX_THREADS];
/// Kernel thread id of each slot's thread in the current round (the slot's
/// `tid` is the id the program knows, which differs after a restart with
/// new ids; see `crate::capture::tids`).
static KTID: [AtomicU32; MAX_THREADS] = [const { AtomicU32::new(0) }; MAX_THREADS];
/// Slots claimed in the current round.
static CLAIMED: AtomicU32 = AtomicU32::new(0);
/// Threads parked in the current round (futex word).
static PARKED: AtomicU32 = AtomicU32::new(0);
/// The current suspension round.
static ROUND: AtomicU32 = AtomicU32::new(0);
/// The last round released (futex word): parked threads wait for it.
static RELEASED: AtomicU32 = AtomicU32::new(0);
/// Threads that reached `restart_entry` after a restart (futex word).
static ARRIVED: AtomicU32 = AtomicU32::new(0);
/// Set when more threads tried to park than there are slots.
static OVERFLOW: AtomicBool = AtomicBool::new(false);
/// The suspend signal number, fixed at install.
static SUSPEND_SIGNAL: AtomicU32 = AtomicU32::new(0);
/// glibc's rseq area: offset from the thread pointer and size (0: none).
static RSEQ_OFFSET: AtomicU64 = AtomicU64::new(0);
static RSEQ_SIZE: AtomicU32 = AtomicU32::new(0);

use crate::arch::RSEQ_SIG;

thread_local! {
    static ROLE: Cell<u32> = const { Cell::new(0) };
    /// An rseq area the program registered itself through `syscall(3)`
    /// (address, length, signature; length 0: none).
    static OWN_RSEQ: Cell<(u64, u32, u32)> = const { Cell::new((0, 0, 0)) };
}

/// The calling thread registered (or, with `RSEQ_FLAG_UNREGISTER`,
/// unregistered) an rseq area of its own: a checkpoint keeps it where
/// glibc has none registered. No allocation.
pub fn note_own_rseq(addr: u64, len: u32, flags: u32, sig: u32) {
    let v = if flags & 1 != 0 {
        (0, 0, 0)
    } else {
        (addr, len, sig)
    };
    OWN_RSEQ.with(|r| r.set(v));
}

/// Marks the calling thread as one of selfckpt's own (manager or worker).
pub fn set_role(role: ThreadRole) {
    ROLE.with(|r| r.set(role as u32));
}

fn current_role() -> ThreadRole {
    match ROLE.with(|r| r.get()) {
        x if x == ThreadRole::Manager as u32 => ThreadRole::Manager,
        x if x == ThreadRole::Worker as u32 => ThreadRole::Worker,
        _ if sys::gettid() == sys::getpid() => ThreadRole::Main,
        _ => ThreadRole::User,
    }
}

/// What runs in the manager's own handler (the dump) and in a worker's
/// handler while parked (compression jobs). Set by the manager before a
/// round; plain function pointers, no allocation.
pub struct RoundHooks {
    pub manager: fn(),
    pub worker: fn(round: u32),
}

static MANAGER_HOOK: AtomicU64 = AtomicU64::new(0);
static WORKER_HOOK: AtomicU64 = AtomicU64::new(0);

/// Sets what the handler needs: the suspend signal, the round hooks and
/// glibc's rseq area (offset from the thread pointer, size; 0: none).
/// Called by [`crate::threads::install`] before the handler is installed.
pub(crate) fn configure(signal: i32, hooks: RoundHooks, rseq: (u64, u32)) {
    SUSPEND_SIGNAL.store(signal as u32, Relaxed);
    MANAGER_HOOK.store(hooks.manager as *const () as usize as u64, Relaxed);
    WORKER_HOOK.store(hooks.worker as *const () as usize as u64, Relaxed);
    RSEQ_OFFSET.store(rseq.0, Relaxed);
    RSEQ_SIZE.store(rseq.1, Relaxed);
}

/// The handler [`crate::threads::install`] installs for the suspend signal.
pub(crate) fn handler_address() -> usize {
    on_suspend as *const () as usize
}

fn slot_state(i: usize) -> &'static mut ThreadState {
    // SAFETY: see `unsafe impl Sync for ThreadSlot`: the caller either owns
    // slot i (claimed it) or reads it after publication.
    unsafe { &mut *SLOTS[i].state.get() }
}

/// The records of the threads parked in this round (valid between a
/// successful `suspend_others` + self-park and `release`).
pub fn parked_slots() -> impl Iterator<Item = &'static ThreadState> {
    let n = (CLAIMED.load(Acquire) as usize).min(MAX_THREADS);
    (0..n).map(|i| &*slot_state(i))
}

/// The parked threads in the order THREADS stores them (the main thread
/// first: it becomes the restarter's thread), each with its kernel id.
pub fn parked_in_image_order() -> impl Iterator<Item = (&'static ThreadState, u32)> {
    parked_indices_in_image_order().map(|(i, _)| (&*slot_state(i), KTID[i].load(Relaxed)))
}

/// [`parked_in_image_order`] as slot indices, each with the thread's id
/// as the program knows it (for the per-thread tables other modules keep
/// by slot).
pub fn parked_indices_in_image_order() -> impl Iterator<Item = (usize, u32)> + Clone {
    let n = (CLAIMED.load(Acquire) as usize).min(MAX_THREADS);
    let is_main = |i: &usize| slot_state(*i).role == ThreadRole::Main as u32;
    let main = (0..n).filter(is_main);
    let others = (0..n).filter(move |i| !is_main(i));
    main.chain(others).map(|i| (i, slot_state(i).tid))
}

/// The suspend signal (0 before `install`).
pub fn suspend_signal() -> i32 {
    SUSPEND_SIGNAL.load(Relaxed) as i32
}

/// Number of threads parked (including the manager once it parked).
pub fn parked_count() -> u32 {
    PARKED.load(Acquire)
}

/// The value selfckpt's own suspend signals carry (`sys::tgsigqueue`):
/// another sender's signal of that number is the program's business.
const SUSPEND_COOKIE: u64 = 0x5e1f_c4b7_5057_e9d0;

/// True if the signal `info` describes is one selfckpt sent: queued by
/// this process with [`SUSPEND_COOKIE`].
fn sent_by_selfckpt(info: *const libc::siginfo_t) -> bool {
    // SAFETY: the kernel's siginfo for this delivery; SI_QUEUE fills the
    // sender's pid and value.
    unsafe {
        !info.is_null()
            && (*info).si_code == libc::SI_QUEUE
            && (*info).si_pid() as u32 == sys::getpid()
            && (*info).si_value().sival_ptr as u64 == SUSPEND_COOKIE
    }
}

extern "C" fn on_suspend(sig: libc::c_int, info: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    if !sent_by_selfckpt(info) {
        // Another sender's: what the program asked for that signal.
        // SAFETY: the kernel's arguments, passed on unchanged.
        unsafe { crate::interpose::dispositions::foreign_reserved(sig, info, uc) };
        return;
    }
    // SAFETY: errno is this thread's; we restore it before returning.
    let saved_errno = unsafe { *libc::__errno_location() };
    // A system call the signal interrupted runs again (or its wrapper is
    // told), late signal or not.
    // SAFETY: uc is the ucontext the kernel passed to this handler.
    unsafe { super::interrupted::resume_interrupted(uc) };
    let round = ROUND.load(Acquire);
    let role = current_role();
    if RELEASED.load(Acquire) == round && role != ThreadRole::Manager {
        // A late signal from a round that is already over.
        super::interrupted::leave_parked();
        return;
    }
    let i = CLAIMED.fetch_add(1, AcqRel) as usize;
    if i >= MAX_THREADS {
        OVERFLOW.store(true, Release);
        PARKED.fetch_add(1, Release);
        futex_wake(&PARKED, i32::MAX);
        wait_released(round);
        super::interrupted::leave_parked();
        return;
    }
    record_self(i, role, uc as u64);
    PARKED.fetch_add(1, Release);
    futex_wake(&PARKED, i32::MAX);
    match role {
        ThreadRole::Manager => {
            let hook = MANAGER_HOOK.load(Relaxed);
            if hook != 0 {
                // SAFETY: set in `install` from a `fn()`.
                let f: fn() = unsafe { core::mem::transmute(hook as usize) };
                f();
            }
        }
        ThreadRole::Worker => {
            let hook = WORKER_HOOK.load(Relaxed);
            if hook != 0 {
                // SAFETY: set in `install` from a `fn(u32)`.
                let f: fn(u32) = unsafe { core::mem::transmute(hook as usize) };
                f(round);
            }
            wait_released(round);
        }
        _ => wait_released(round),
    }
    super::interrupted::leave_parked();
    // SAFETY: restoring this thread's errno.
    unsafe { *libc::__errno_location() = saved_errno };
}

/// Fills slot `i` with the calling thread's restart information.
fn record_self(i: usize, role: ThreadRole, uc: u64) {
    let s = slot_state(i);
    KTID[i].store(sys::gettid(), Relaxed);
    if role == ThreadRole::Main {
        crate::kstate::process_attrs::note_main_thread();
    }
    crate::kstate::credentials::note_thread(i);
    crate::kstate::sched::note_thread(i);
    // Its queued signals, taken and put back with their siginfo; the main
    // thread also the process's.
    let skip = crate::kstate::pending::machinery();
    crate::kstate::siginfo::take_own(i, skip);
    if role == ThreadRole::Main {
        crate::kstate::siginfo::take_shared(skip);
    }
    s.tid = crate::capture::tids::program_tid();
    s.role = role as u32;
    s.slot = &SLOTS[i] as *const ThreadSlot as u64;
    s.tls = arch::thread_pointer();
    s.frame = uc;
    s.entry_sp = arch::entry_stack(uc);
    // SAFETY: uc is the ucontext the kernel passed to this handler.
    let (ip, sp) = unsafe { arch::frame_ip_sp(uc as *const libc::c_void) };
    s.ip = ip;
    s.sp = sp;
    // SAFETY: the first 8 bytes of uc_sigmask are the kernel's signal mask.
    s.sigmask = unsafe {
        let ucp = &*(uc as *const libc::ucontext_t);
        *(&ucp.uc_sigmask as *const libc::sigset_t as *const u64)
    };
    let mut tid_address: u64 = 0;
    // SAFETY: PR_GET_TID_ADDRESS writes one pointer-sized value.
    unsafe { libc::prctl(libc::PR_GET_TID_ADDRESS, &mut tid_address as *mut u64) };
    s.tid_address = tid_address;
    let (mut head, mut len): (u64, usize) = (0, 0);
    // SAFETY: get_robust_list(0, ..) writes the calling thread's list head and length.
    unsafe {
        libc::syscall(
            libc::SYS_get_robust_list,
            0,
            &mut head as *mut u64,
            &mut len as *mut usize,
        )
    };
    s.robust_head = head;
    s.robust_len = len as u64;
    s.rseq_addr = 0;
    s.rseq_len = 0;
    s.rseq_sig = 0;
    let rseq_size = RSEQ_SIZE.load(Relaxed);
    if rseq_size != 0 {
        let area = s.tls.wrapping_add(RSEQ_OFFSET.load(Relaxed));
        // SAFETY: glibc's rseq area lies inside this thread's TLS block;
        // cpu_id (offset 4) is a u32 the kernel keeps >= 0 while registered.
        let cpu_id = unsafe { core::ptr::read_volatile((area + 4) as *const i32) };
        if cpu_id >= 0 {
            s.rseq_addr = area;
            s.rseq_len = rseq_size;
            s.rseq_sig = RSEQ_SIG;
        }
    }
    if s.rseq_len == 0 {
        let (addr, len, sig) = OWN_RSEQ.with(|r| r.get());
        if len != 0 {
            s.rseq_addr = addr;
            s.rseq_len = len;
            s.rseq_sig = sig;
        }
    }
    s.comm = [0; 16];
    // SAFETY: PR_GET_NAME writes at most 16 bytes.
    unsafe { libc::prctl(libc::PR_GET_NAME, s.comm.as_mut_ptr()) };
}

fn wait_released(round: u32) {
    loop {
        let r = RELEASED.load(Acquire);
        if r == round {
            return;
        }
        futex_wait(&RELEASED, r, None);
    }
}

/// Whether round `round` has been released.
pub fn is_released(round: u32) -> bool {
    RELEASED.load(Acquire) == round
}

/// Starts a new round: returns its number.
pub fn begin_round() -> u32 {
    let round = ROUND.load(Relaxed).wrapping_add(1).max(1);
    CLAIMED.store(0, Relaxed);
    PARKED.store(0, Relaxed);
    OVERFLOW.store(false, Relaxed);
    crate::kstate::siginfo::begin_round();
    super::interrupted::begin_round();
    ROUND.store(round, Release);
    round
}

/// Suspends every thread but the caller. `tids` is caller-provided space
/// for the thread ids seen (no allocation happens here).
pub fn suspend_others(tids: &mut [u32], timeout_ms: u64) -> Result<(), SuspendError> {
    let me = sys::gettid();
    let sig = SUSPEND_SIGNAL.load(Relaxed) as i32;
    let mut signaled = 0usize;
    let deadline = sys::now_ns() + timeout_ms * 1_000_000;
    let mut buf = [0u8; 4096];
    let mut syscall_line = [0u8; 256];
    loop {
        // Signal every thread we have not signaled yet.
        let mut new = 0;
        let mut listed = 0usize;
        for_each_task(&mut buf, |tid| {
            listed += 1;
            if tid == me || tids[..signaled].contains(&tid) {
                return true;
            }
            if signaled == tids.len() {
                return false;
            }
            super::interrupted::note_before_signal(signaled, tid, &mut syscall_line);
            if sys::tgsigqueue(tid, sig, SUSPEND_COOKIE).is_ok() {
                tids[signaled] = tid;
                signaled += 1;
                new += 1;
            }
            true
        })
        .map_err(SuspendError::ListTasks)?;
        if signaled == tids.len() && listed > signaled + 1 {
            return Err(SuspendError::TooManyThreads);
        }
        if new == 0 && all_parked(&tids[..signaled], &mut buf) {
            break;
        }
        // Wait for the ones signaled to park.
        let parked = PARKED.load(Acquire);
        if (parked as usize) < signaled {
            let now = sys::now_ns();
            if now >= deadline {
                let tid = first_unparked(&tids[..signaled], &mut buf).unwrap_or(0);
                return Err(SuspendError::Timeout {
                    tid,
                    ms: timeout_ms,
                    signal: sig,
                });
            }
            futex_wait(&PARKED, parked, Some((deadline - now).min(10_000_000)));
        }
    }
    if OVERFLOW.load(Acquire) {
        return Err(SuspendError::TooManyThreads);
    }
    Ok(())
}

/// Parks the calling thread (the manager): it runs the manager hook inside
/// its own handler and returns once that is done (or, after a restart,
/// when the restarted manager returns through its frame).
pub fn park_self() {
    let _ = sys::tgsigqueue(
        sys::gettid(),
        SUSPEND_SIGNAL.load(Relaxed) as i32,
        SUSPEND_COOKIE,
    );
}

/// Whether a round is active: from [`begin_round`] until its [`release`]
/// (the fence the allocation guard checks).
pub fn round_active() -> bool {
    ROUND.load(Acquire) != RELEASED.load(Acquire)
}

/// Whether the calling thread is one of selfckpt's own (the checkpoint
/// thread or a worker): the threads that run while the others are parked.
pub fn is_own_thread() -> bool {
    let role = ROLE.with(|r| r.get());
    role == ThreadRole::Manager as u32 || role == ThreadRole::Worker as u32
}

/// Lets every parked thread of `round` go.
pub fn release(round: u32) {
    RELEASED.store(round, Release);
    futex_wake(&RELEASED, i32::MAX);
}

/// True if every live thread in `tids` has a slot in this round.
fn all_parked(tids: &[u32], buf: &mut [u8]) -> bool {
    first_unparked(tids, buf).is_none()
}

fn first_unparked(tids: &[u32], buf: &mut [u8]) -> Option<u32> {
    let parked = PARKED.load(Acquire) as usize;
    let n = (CLAIMED.load(Acquire) as usize).min(MAX_THREADS);
    if parked < n {
        // A slot is claimed but not yet published: its thread is still writing it.
        return Some(0);
    }
    let mut missing = None;
    let _ = for_each_task(buf, |tid| {
        if tids.contains(&tid) && !(0..n).any(|i| KTID[i].load(Relaxed) == tid) {
            missing = Some(tid);
            return false;
        }
        true
    });
    missing
}

/// Whether the thread group leader has exited (pthread_exit in the main
/// thread while others go on): it stays listed, a zombie that never parks.
fn leader_exited() -> bool {
    let mut p = sys::PathBuf::<48>::new();
    p.push(b"/proc/self/task/")
        .push_u64(sys::getpid() as u64)
        .push(b"/stat");
    let mut stat = [0u8; 512];
    let Ok(n) = sys::read_file(p.as_cstr_bytes(), &mut stat) else {
        return false;
    };
    // "PID (COMM) STATE ...": the state follows the last ')'.
    let text = &stat[..n];
    text.iter()
        .rposition(|&c| c == b')')
        .and_then(|at| text.get(at + 2))
        .is_some_and(|s| matches!(s, b'Z' | b'X'))
}

/// Calls `f` with each thread id in /proc/self/task until it returns false
/// (a leader that has exited left out).
fn for_each_task(buf: &mut [u8], mut f: impl FnMut(u32) -> bool) -> Result<(), sys::Errno> {
    let gone = if leader_exited() { sys::getpid() } else { 0 };
    let mut f = |tid: u32| tid == gone || f(tid);
    let dir = RawFd::open(b"/proc/self/task\0", libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
    loop {
        let n = dir.getdents(buf)?;
        if n == 0 {
            return Ok(());
        }
        let mut off = 0;
        while off + 19 <= n {
            let reclen = u16::from_ne_bytes([buf[off + 16], buf[off + 17]]) as usize;
            if reclen == 0 || off + reclen > n {
                break;
            }
            let name = &buf[off + 19..off + reclen];
            let name = &name[..name.iter().position(|&c| c == 0).unwrap_or(name.len())];
            if let Some((tid, rest)) = sys::parse_u64(name) {
                if rest.is_empty() && !f(tid as u32) {
                    return Ok(());
                }
            }
            off += reclen;
        }
    }
}

/// How a restart kept the process's and threads' ids (mailbox and image
/// value); part of the restorer interface.
pub use crate::restorer_abi::{Identity, RestartMailbox};

/// The library's restart mailbox (layout: `crate::restorer_abi`). Its
/// address goes into the image (META); the restorer writes it ("pokes")
/// after mapping the image.
pub static MAILBOX: RestartMailbox = RestartMailbox::new();

/// Function the manager runs after a restart, before releasing the others.
static AFTER_RESTART_HOOK: AtomicU64 = AtomicU64::new(0);

pub fn set_after_restart_hook(f: fn()) {
    AFTER_RESTART_HOOK.store(f as *const () as usize as u64, Release);
}

/// Where every restarted thread begins, called by the restorer on a small
/// stack below the thread's signal frame, with all signals blocked and the
/// thread pointer set. Re-registers per-thread kernel state, makes the
/// signals that were pending for it pending again (the manager: also the
/// process's, once every thread is there), waits until the manager has
/// finished the restart, then returns through the signal frame
/// into exactly the state the thread was suspended in.
///
/// # Safety
/// Only the restorer calls this, with a slot of the restored thread table.
pub unsafe extern "C" fn restart_entry(slot: *const ThreadSlot) -> ! {
    let s = *(*slot).state.get();
    if s.robust_head != 0 {
        libc::syscall(
            libc::SYS_set_robust_list,
            s.robust_head,
            s.robust_len as usize,
        );
    }
    if s.rseq_len != 0 {
        libc::syscall(libc::SYS_rseq, s.rseq_addr, s.rseq_len, 0, s.rseq_sig);
    }
    libc::prctl(libc::PR_SET_NAME, s.comm.as_ptr());
    super::interrupted::leave_parked();
    let index = (slot as usize - SLOTS.as_ptr() as usize) / core::mem::size_of::<ThreadSlot>();
    crate::capture::tids::record(index, s.tid, sys::gettid());
    // This thread's own pending signals, while every signal is blocked.
    let own = (*slot).pending.swap(0, AcqRel);
    let queued = crate::kstate::siginfo::queue_own(index);
    crate::kstate::pending::raise_own(SignalSet(own & !queued.0));
    if s.role == ThreadRole::Main as u32 {
        crate::kstate::siginfo::queue_shared();
    }
    let manager = s.role == ThreadRole::Manager as u32;
    if !manager {
        take_back_identity(index, s.role == ThreadRole::Main as u32);
    }
    let n = CLAIMED.load(Acquire);
    ARRIVED.fetch_add(1, AcqRel);
    futex_wake(&ARRIVED, i32::MAX);
    let round = ROUND.load(Acquire);
    if manager {
        // Everyone must be out of the restorer before its pages go.
        loop {
            let a = ARRIVED.load(Acquire);
            if a >= n {
                break;
            }
            futex_wait(&ARRIVED, a, None);
        }
        for span in MAILBOX.leftovers() {
            let (a, l) = (span.addr.load(Acquire), span.len.load(Acquire));
            if a != 0 && l != 0 {
                libc::munmap(a as *mut libc::c_void, l as usize);
            }
        }
        // Every thread exists and blocks every signal: the process's
        // pending signals wait for the first one to unblock them.
        let shared = MAILBOX.pending.swap(0, AcqRel);
        let queued = crate::kstate::siginfo::queued_shared();
        crate::kstate::pending::raise_shared(SignalSet(shared & !queued.0));
        crate::capture::tids::finish_restart(
            n as usize,
            MAILBOX.identity.load(Acquire) == Identity::NewIds as u64,
        );
        let hook = AFTER_RESTART_HOOK.load(Acquire);
        if hook != 0 {
            let f: fn() = core::mem::transmute(hook as usize);
            f();
        }
        // Last, once the hook's work (limits, timers) is done with the
        // restarter's privileges; then the process's dumpable flag, which a
        // change of ids resets.
        take_back_identity(index, false);
        crate::kstate::process_attrs::after_credentials();
        ARRIVED.store(0, Release);
        release(round);
    } else {
        wait_released(round);
    }
    arch::sigreturn(s.frame)
}

/// A restarted thread takes its own scheduling and credentials back
/// (`kstate::sched`, `kstate::credentials`). One left holding more
/// privilege than it had ends the process: never a silent gain.
fn take_back_identity(index: usize, main: bool) {
    let say = |m: &[u8]| {
        // SAFETY: write(2) of a static message to stderr.
        unsafe { libc::write(2, m.as_ptr().cast(), m.len()) };
    };
    if !crate::kstate::sched::restore_thread(index) {
        say(b"selfckpt: warning: a restarted thread's scheduling (policy, nice value) could not be set again\n");
    }
    use crate::kstate::credentials::Outcome;
    match crate::kstate::credentials::restore_thread(index) {
        Outcome::Same => {}
        Outcome::Less => say(b"selfckpt: warning: a restarted thread runs with fewer credentials than it had (--unrestorable=credentials)\n"),
        Outcome::More => {
            say(b"selfckpt: restart stopped: a restarted thread could not give up privileges it did not have at the checkpoint (user ids or capabilities)\n");
            // SAFETY: ends the process; nothing of the program has run.
            unsafe { libc::syscall(libc::SYS_exit_group, 70) };
        }
    }
    if main {
        // A change of ids clears the thread's parent-death signal.
        crate::kstate::process_attrs::after_main_credentials();
    }
}

/// The address the restorer jumps to for each thread.
pub fn restart_entry_address() -> u64 {
    restart_entry as *const () as usize as u64
}
