//! `mq_notify` as the program calls it.
//!
//! * `SIGEV_THREAD`: glibc delivers these through a netlink socket read
//!   by a helper thread of its own that blocks every signal, so the
//!   suspend signal could never park it (a checkpoint would fail after
//!   5 s). selfckpt does what glibc does with a helper of its own
//!   (`sigev_thread`, shared with the timers): one netlink socket per
//!   process ([`owns_fd`]: selfckpt's, left out of images), registered
//!   with the kernel as the queue's notification channel with a 32-byte
//!   cookie naming the request's record and its generation; for each
//!   message the kernel sends on it (`NOTIFY_WOKENUP`: a message arrived
//!   in the empty queue) the helper starts a thread with the program's
//!   attributes that calls its function with its value. A `NOTIFY_REMOVED`
//!   (the registration was taken back, or the queue closed) frees the
//!   record. After a restart the socket is made again at its number
//!   ([`after_restart`]) before the helper runs again.
//! * every kind: the request is noted per queue (device and inode), since
//!   the kernel shows only the signal and the owner (the queue's status
//!   text): what `kstate::mqueue` needs to register it again, after the
//!   drain of a checkpoint and after a restart ([`register_again`]).
//!
//! Must never: change what mq_notify returns or does; allocate or lock in
//! [`registration`], [`register_again`], [`bump`], [`owns_fd`] and
//! [`after_restart`] (called while threads are parked or before they run).

use super::next;
use super::sigev_thread::{helper_mask, start_helper, ThreadCall};
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering::*};
use libc::{c_int, c_void, sigevent};

/// Queues whose registration is noted (one registration per queue).
const MAX: usize = 64;
/// The kernel's cookie length for `SIGEV_THREAD` (`NOTIFY_COOKIE_LEN`).
const COOKIE_LEN: usize = 32;
/// The last byte of a cookie the kernel sends (`NOTIFY_WOKENUP`,
/// `NOTIFY_REMOVED`).
const WOKENUP: u8 = 1;
const REMOVED: u8 = 2;

/// One queue's noted registration: `how` 0 free, else `SIGEV_* + 1`.
struct Slot {
    dev: AtomicU64,
    ino: AtomicU64,
    how: AtomicU32,
    signo: AtomicU32,
    /// `sigev_value`, or for `SIGEV_THREAD` the record's address.
    value: AtomicU64,
}

static SLOTS: [Slot; MAX] = [const {
    Slot {
        dev: AtomicU64::new(0),
        ino: AtomicU64::new(0),
        how: AtomicU32::new(0),
        signo: AtomicU32::new(0),
        value: AtomicU64::new(0),
    }
}; MAX];

/// A `SIGEV_THREAD` request: what to run, and the generation its cookie
/// carries (a registration taken back and made again by a checkpoint
/// gets a new one, so the kernel's `NOTIFY_REMOVED` for the old one is
/// not mistaken for the queue's end).
struct Record {
    call: ThreadCall,
    seq: AtomicU32,
}

/// Live records (addresses; 0: free).
static LIVE: [AtomicUsize; MAX] = [const { AtomicUsize::new(0) }; MAX];
/// Held while records and slots change.
static LOCK: AtomicBool = AtomicBool::new(false);

/// The netlink socket the kernel notifies on (-1: none yet).
static NL: AtomicI32 = AtomicI32::new(-1);
/// Whether the helper runs; set while it is being started.
static HELPER: AtomicBool = AtomicBool::new(false);
static STARTING: AtomicBool = AtomicBool::new(false);

/// A noted registration, as [`registration`] gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Registration {
    /// `SIGEV_SIGNAL`, `SIGEV_NONE` or `SIGEV_THREAD`.
    pub how: u32,
    pub signo: u32,
    /// `sigev_value` (for `SIGEV_THREAD`: selfckpt's record).
    pub value: u64,
}

fn lock() {
    while LOCK
        .compare_exchange_weak(false, true, Acquire, Relaxed)
        .is_err()
    {
        core::hint::spin_loop();
    }
}

fn unlock() {
    LOCK.store(false, Release);
}

/// Whether `fd` is the notification socket (selfckpt's own). No
/// allocation.
pub fn owns_fd(fd: i32) -> bool {
    fd >= 0 && NL.load(Acquire) == fd
}

/// The registration noted for the queue (`dev`, `ino`), if any. No
/// allocation.
pub fn registration(dev: u64, ino: u64) -> Option<Registration> {
    SLOTS
        .iter()
        .find(|s| {
            s.how.load(Acquire) != 0 && s.ino.load(Acquire) == ino && s.dev.load(Acquire) == dev
        })
        .map(|s| Registration {
            how: s.how.load(Acquire) - 1,
            signo: s.signo.load(Acquire),
            value: s.value.load(Acquire),
        })
}

/// Notes `reg` for the queue (`dev`, `ino`) (a free slot, or its own).
fn note(dev: u64, ino: u64, reg: Option<Registration>) {
    lock();
    let own = SLOTS.iter().find(|s| {
        s.how.load(Acquire) != 0 && s.ino.load(Acquire) == ino && s.dev.load(Acquire) == dev
    });
    let slot = match (own, &reg) {
        (Some(s), _) => Some(s),
        (None, Some(_)) => SLOTS.iter().find(|s| s.how.load(Acquire) == 0),
        (None, None) => None,
    };
    if let Some(s) = slot {
        match reg {
            Some(r) => {
                s.how.store(0, Release);
                s.dev.store(dev, Release);
                s.ino.store(ino, Release);
                s.signo.store(r.signo, Release);
                s.value.store(r.value, Release);
                s.how.store(r.how + 1, Release);
            }
            None => s.how.store(0, Release),
        }
    }
    unlock();
}

/// The kernel's `struct sigevent` (64 bytes).
#[repr(C)]
struct KernelSigevent {
    value: u64,
    signo: c_int,
    notify: c_int,
    pad: [c_int; 12],
}

/// Raw mq_notify.
fn raw_notify(fd: i32, ev: Option<&KernelSigevent>) -> c_int {
    let p = ev.map_or(core::ptr::null(), |e| e as *const KernelSigevent);
    // SAFETY: raw mq_notify with a kernel-layout sigevent or none.
    unsafe { libc::syscall(libc::SYS_mq_notify, fd as libc::c_long, p) as c_int }
}

/// The cookie of a record: its address and generation.
fn cookie(rec: &Record) -> [u8; COOKIE_LEN] {
    let mut c = [0u8; COOKIE_LEN];
    c[..8].copy_from_slice(&(rec as *const Record as u64).to_ne_bytes());
    c[8..12].copy_from_slice(&rec.seq.load(Acquire).to_ne_bytes());
    c
}

/// Registers `reg` again on queue descriptor `fd` (after a checkpoint's
/// drain, or after a restart). No allocation.
pub fn register_again(fd: i32, reg: &Registration) -> bool {
    if reg.how as c_int != libc::SIGEV_THREAD {
        let ev = KernelSigevent {
            value: reg.value,
            signo: reg.signo as c_int,
            notify: reg.how as c_int,
            pad: [0; 12],
        };
        return raw_notify(fd, Some(&ev)) == 0;
    }
    let nl = NL.load(Acquire);
    if nl < 0 || !LIVE.iter().any(|l| l.load(Acquire) as u64 == reg.value) {
        return false;
    }
    // SAFETY: a live record (freed only by the helper, which is parked or
    // not yet released when this runs).
    let rec = unsafe { &*(reg.value as *const Record) };
    let c = cookie(rec);
    let ev = KernelSigevent {
        value: c.as_ptr() as u64,
        signo: nl,
        notify: libc::SIGEV_THREAD,
        pad: [0; 12],
    };
    raw_notify(fd, Some(&ev)) == 0
}

/// Gives a `SIGEV_THREAD` registration a new generation before a
/// checkpoint takes it back (the kernel's `NOTIFY_REMOVED` for the old
/// one is then ignored). No allocation.
pub fn bump(reg: &Registration) {
    if reg.how as c_int == libc::SIGEV_THREAD
        && LIVE.iter().any(|l| l.load(Acquire) as u64 == reg.value)
    {
        // SAFETY: a live record, see `register_again`.
        let rec = unsafe { &*(reg.value as *const Record) };
        rec.seq.fetch_add(1, AcqRel);
    }
}

/// Takes the registration of queue descriptor `fd` back (raw). No
/// allocation.
pub fn unregister(fd: i32) -> bool {
    raw_notify(fd, None) == 0
}

/// The helper: reads the kernel's cookies, starts a thread per
/// notification, frees the records of registrations that ended.
extern "C" fn helper(_: *mut c_void) -> *mut c_void {
    helper_mask();
    HELPER.store(true, Release);
    let mut c = [0u8; COOKIE_LEN];
    loop {
        // The number stays; after a restart a new socket is there.
        let nl = NL.load(Acquire);
        // SAFETY: a receive into our buffer.
        let n = unsafe {
            libc::recv(
                nl,
                c.as_mut_ptr().cast(),
                COOKIE_LEN,
                libc::MSG_NOSIGNAL | libc::MSG_WAITALL,
            )
        };
        if n != COOKIE_LEN as isize {
            continue;
        }
        let mut w = [0u8; 8];
        w.copy_from_slice(&c[..8]);
        let at = u64::from_ne_bytes(w) as usize;
        let mut s = [0u8; 4];
        s.copy_from_slice(&c[8..12]);
        let seq = u32::from_ne_bytes(s);
        let status = c[COOKIE_LEN - 1];
        lock();
        let live = LIVE.iter().find(|l| at != 0 && l.load(Acquire) == at);
        // SAFETY: a live record, freed only here under the lock.
        let current = live.filter(|_| unsafe { &*(at as *const Record) }.seq.load(Acquire) == seq);
        if let (Some(l), true) = (current, status == WOKENUP || status == REMOVED) {
            // The registration is over either way: its slot goes.
            for sl in &SLOTS {
                if sl.how.load(Acquire) == libc::SIGEV_THREAD as u32 + 1
                    && sl.value.load(Acquire) as usize == at
                {
                    sl.how.store(0, Release);
                }
            }
            l.store(0, Release);
            // SAFETY: made by `notify_thread` with Box::into_raw; no longer
            // reachable from LIVE.
            let rec = unsafe { Box::from_raw(at as *mut Record) };
            if status == WOKENUP {
                rec.call.start(0);
            }
        }
        unlock();
    }
}

unsafe extern "C" fn after_fork_child() {
    // Registrations are not inherited: the child starts afresh, without
    // the parent's socket (selfckpt's number, not the program's).
    HELPER.store(false, Release);
    STARTING.store(false, Release);
    LOCK.store(false, Release);
    let nl = NL.swap(-1, AcqRel);
    if nl >= 0 {
        // SAFETY: closing the child's copy of selfckpt's own socket.
        libc::close(nl);
    }
    for l in &LIVE {
        l.store(0, Release);
    }
    for s in &SLOTS {
        s.how.store(0, Release);
    }
}

/// A netlink socket for notifications (close-on-exec).
fn new_socket() -> c_int {
    // SAFETY: socket(2) with constant arguments.
    unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) }
}

/// Makes the socket and starts the helper once (again in a forked
/// child). False if either cannot be made.
fn ensure_helper() -> bool {
    loop {
        if HELPER.load(Acquire) {
            return true;
        }
        if STARTING
            .compare_exchange(false, true, AcqRel, Acquire)
            .is_ok()
        {
            break;
        }
        // SAFETY: sched_yield has no preconditions.
        unsafe { libc::sched_yield() };
    }
    let nl = new_socket();
    if nl < 0 {
        STARTING.store(false, Release);
        return false;
    }
    NL.store(nl, Release);
    static ATFORK: AtomicBool = AtomicBool::new(false);
    if !start_helper(helper, &ATFORK, after_fork_child) {
        NL.store(-1, Release);
        // SAFETY: closing the socket just made.
        unsafe { libc::close(nl) };
        STARTING.store(false, Release);
        return false;
    }
    while !HELPER.load(Acquire) {
        // SAFETY: sched_yield has no preconditions.
        unsafe { libc::sched_yield() };
    }
    true
}

/// The queue (device, inode) of descriptor `fd`.
fn queue_of(fd: c_int) -> Option<(u64, u64)> {
    crate::capture::sys::fstat(fd)
        .ok()
        .map(|st| (st.st_dev, st.st_ino))
}

/// A `SIGEV_THREAD` request (see the module header).
///
/// # Safety
/// `evp` a valid sigevent with `SIGEV_THREAD`.
unsafe fn notify_thread(fd: c_int, evp: *const sigevent) -> c_int {
    let Some((dev, ino)) = queue_of(fd) else {
        *libc::__errno_location() = libc::EBADF;
        return -1;
    };
    if !ensure_helper() {
        *libc::__errno_location() = libc::ENOMEM;
        return -1;
    }
    let rec = Box::into_raw(Box::new(Record {
        call: ThreadCall::from_sigevent(evp),
        seq: AtomicU32::new(0),
    }));
    lock();
    let placed = LIVE
        .iter()
        .any(|l| l.compare_exchange(0, rec as usize, AcqRel, Acquire).is_ok());
    unlock();
    if !placed {
        drop(Box::from_raw(rec));
        *libc::__errno_location() = libc::ENOMEM;
        return -1;
    }
    let reg = Registration {
        how: libc::SIGEV_THREAD as u32,
        signo: 0,
        value: rec as u64,
    };
    if !register_again(fd, &reg) {
        let errno = *libc::__errno_location();
        lock();
        for l in &LIVE {
            let _ = l.compare_exchange(rec as usize, 0, AcqRel, Acquire);
        }
        unlock();
        drop(Box::from_raw(rec));
        *libc::__errno_location() = errno;
        return -1;
    }
    note(dev, ino, Some(reg));
    0
}

/// mq_notify(3).
///
/// # Safety
/// As glibc's.
#[no_mangle]
pub unsafe extern "C" fn mq_notify(fd: libc::mqd_t, evp: *const sigevent) -> c_int {
    if !evp.is_null() && (*evp).sigev_notify == libc::SIGEV_THREAD {
        return notify_thread(fd, evp);
    }
    let r = next::mq_notify(fd, evp);
    if r == 0 {
        if let Some((dev, ino)) = queue_of(fd) {
            // A SIGEV_THREAD registration taken back: the helper frees its
            // record on the kernel's NOTIFY_REMOVED.
            let reg = (!evp.is_null()).then(|| Registration {
                how: (*evp).sigev_notify as u32,
                signo: (*evp).sigev_signo as u32,
                value: (*evp).sigev_value.sival_ptr as u64,
            });
            note(dev, ino, reg);
        }
    }
    r
}

/// In the restarted process, before its threads run (no allocation):
/// the notification socket made again at its number, so that the
/// helper's receive and the registrations made again use it.
pub fn after_restart() {
    let nl = NL.load(Acquire);
    if nl < 0 {
        return;
    }
    let s = new_socket();
    if s >= 0 && s != nl {
        // SAFETY: dup3 onto selfckpt's own number (free in the restarted
        // process: the image does not list it), then closing the copy.
        unsafe {
            libc::dup3(s, nl, libc::O_CLOEXEC);
            libc::close(s);
        }
    }
}
