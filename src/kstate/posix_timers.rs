//! POSIX timers (timer_create(2)): each timer's id, clock, how it notifies
//! (a signal to the process, to one thread, nothing, or a thread started
//! by selfckpt's `SIGEV_THREAD` helper, `interpose::timers`), its signal and
//! value, the time left, the period and the overrun of the last expiry.
//! They belong to the process and die with it: nothing of them is in
//! memory.
//!
//! Capture ([`capture`]) runs in the dump's signal handler while every
//! thread is parked: it reads /proc/self/timers (ID, signal/value,
//! notify/target, ClockID) into the caller's fixed buffer and asks the
//! kernel with raw timer_gettime and timer_getoverrun; no allocation. Each
//! timer is written as an object entry (for `inspect`, the checks and the
//! restarter's refusal) and into [`RESTORE`], a table in the library's own
//! memory that the image carries with the rest of it: the restarted
//! process makes its timers from there.
//!
//! Restore ([`after_restart`]) runs in the restarted process, in
//! `capture::park::restart_entry` on the manager thread, once every
//! thread exists again (a timer may signal one of them, with its new id
//! after a restart that could not keep ids) and before any is released
//! (every signal blocked, no allocation, no locks). The ids stay the same:
//! with `PR_TIMER_CREATE_RESTORE_IDS` (Linux 6.15+) timer_create takes the
//! id it is given; on older kernels, whose ids go up one by one from 0 in
//! a new process, timers are made in id order and the ids between are
//! taken by filler timers deleted at once. Where neither can give an id
//! (an id beyond [`FILLER_LIMIT`] on an old kernel) the restart refuses
//! before anything is in place ([`problems_here`]).
//!
//! Time: a relative timer gets the time it had left (the time the program
//! was not running does not count, as for the interval timers and
//! timerfds); one set with `TIMER_ABSTIME` (known from `timer_settime`,
//! which selfckpt wraps) keeps its absolute expiry: the clock's time at
//! capture plus the time left. The overrun count cannot be given back to
//! a kernel: after a restart `timer_getoverrun` says 0 until the next
//! expiry is delivered. A timer signal still pending at the checkpoint is
//! given back by the timer itself, due at once (with its value and
//! `SI_TIMER`; the plain signal `kstate::pending` raised for it is taken
//! away), where it can only be that timer's: a process-directed signal no
//! other timer sends, or the helper's `SIGTIMER` with one `SIGEV_THREAD`
//! timer. Otherwise it comes back as a plain pending signal.

use super::timerfd::{self, TimeSpec};
use super::KstateError;
use crate::capture::sys;
use crate::image::codec::{CodecError, Decoder, Encoder};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicUsize, Ordering::*};

/// Timers a checkpoint can hold (more are named as not restorable).
pub const MAX_TIMERS: usize = 256;

/// Highest id a kernel without `PR_TIMER_CREATE_RESTORE_IDS` is walked up
/// to with filler timers.
pub const FILLER_LIMIT: i32 = 1 << 16;

/// `prctl(PR_TIMER_CREATE_RESTORE_IDS, ...)` (include/uapi/linux/prctl.h).
const PR_TIMER_CREATE_RESTORE_IDS: libc::c_int = 77;
const RESTORE_IDS_OFF: libc::c_ulong = 0;
const RESTORE_IDS_ON: libc::c_ulong = 1;
const RESTORE_IDS_GET: libc::c_ulong = 2;

/// Flags of a [`PosixTimer`].
pub const ABSTIME: u32 = 1;
/// Its `SIGEV_THREAD` expiry was not yet dispatched: fires at once.
pub const DUE: u32 = 2;

/// How a timer notifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Notify {
    /// `SIGEV_SIGNAL`: a signal to the process.
    Signal = 0,
    /// `SIGEV_NONE`.
    None = 1,
    /// `SIGEV_THREAD`: selfckpt's helper thread starts a thread per expiry.
    Thread = 2,
    /// `SIGEV_THREAD_ID`: a signal to one thread.
    ThreadId = 4,
}

impl Notify {
    fn from_u32(v: u32) -> Option<Notify> {
        [
            Notify::Signal,
            Notify::None,
            Notify::Thread,
            Notify::ThreadId,
        ]
        .into_iter()
        .find(|n| *n as u32 == v)
    }

    fn name(self) -> &'static str {
        match self {
            Notify::Signal => "SIGEV_SIGNAL",
            Notify::None => "SIGEV_NONE",
            Notify::Thread => "SIGEV_THREAD",
            Notify::ThreadId => "SIGEV_THREAD_ID",
        }
    }

    /// The kernel's `sigev_notify` for it (a `SIGEV_THREAD` timer is a
    /// signal to the helper thread).
    fn kernel(self) -> libc::c_int {
        match self {
            Notify::Signal => libc::SIGEV_SIGNAL,
            Notify::None => libc::SIGEV_NONE,
            Notify::Thread | Notify::ThreadId => libc::SIGEV_THREAD_ID,
        }
    }

    fn targets_thread(self) -> bool {
        matches!(self, Notify::Thread | Notify::ThreadId)
    }
}

/// One POSIX timer (object kind 0x0400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PosixTimer {
    /// The kernel's timer id (what glibc's `timer_t` holds).
    pub id: i32,
    /// The clock (a process CPU clock as the `pid 0` form, -6 -7 -8).
    pub clock: i32,
    pub notify: Notify,
    pub signo: u32,
    /// `sigev_value` (the pointer or integer the signal carries).
    pub value_word: u64,
    /// The target thread as the program knows it (`ThreadId`, `Thread`).
    pub tid: u32,
    /// [`ABSTIME`], [`DUE`].
    pub flags: u32,
    /// Time left, or with [`ABSTIME`] the absolute expiry; zero: disarmed.
    pub value: TimeSpec,
    pub interval: TimeSpec,
    /// `timer_getoverrun` at the checkpoint.
    pub overrun: i32,
}

impl PosixTimer {
    const EMPTY: PosixTimer = PosixTimer {
        id: 0,
        clock: 0,
        notify: Notify::None,
        signo: 0,
        value_word: 0,
        tid: 0,
        flags: 0,
        value: TimeSpec { sec: 0, nsec: 0 },
        interval: TimeSpec { sec: 0, nsec: 0 },
        overrun: 0,
    };

    pub fn encode(&self, e: &mut Encoder) -> Result<(), CodecError> {
        e.i32(self.id)?;
        e.i32(self.clock)?;
        e.u32(self.notify as u32)?;
        e.u32(self.signo)?;
        e.u64(self.value_word)?;
        e.u32(self.tid)?;
        e.u32(self.flags)?;
        self.value.encode(e)?;
        self.interval.encode(e)?;
        e.i32(self.overrun)
    }

    pub fn decode(d: &mut Decoder) -> Result<Self, CodecError> {
        let id = d.i32()?;
        let clock = d.i32()?;
        let n = d.u32()?;
        let notify = Notify::from_u32(n).ok_or(CodecError::BadValue {
            field: "notification of a POSIX timer",
            value: n as u64,
        })?;
        Ok(PosixTimer {
            id,
            clock,
            notify,
            signo: d.u32()?,
            value_word: d.u64()?,
            tid: d.u32()?,
            flags: d.u32()?,
            value: TimeSpec::decode(d)?,
            interval: TimeSpec::decode(d)?,
            overrun: d.i32()?,
        })
    }

    /// What a kernel can have; checked before a restart acts on it.
    pub fn check(&self) -> Result<(), String> {
        let bad = |what: &str| Err(format!("POSIX timer {}: {what}", self.id));
        if self.id < 0 {
            return bad("a negative id");
        }
        if clock_name(self.clock).is_none() {
            return bad(&format!(
                "clock {} is not one a timer can be on",
                self.clock
            ));
        }
        if self.notify != Notify::None && !(1..=64).contains(&self.signo) {
            return bad(&format!("signal {} does not exist", self.signo));
        }
        if self.notify.targets_thread() && (self.tid == 0 || self.tid > i32::MAX as u32) {
            return bad(&format!("thread {} cannot be a target", self.tid));
        }
        if self.flags & !(ABSTIME | DUE) != 0 {
            return bad(&format!("flags {:#x}", self.flags));
        }
        for t in [self.value, self.interval] {
            if t.nsec >= 1_000_000_000 || t.sec > 1 << 40 {
                return bad(&format!("time {t} out of range"));
            }
        }
        Ok(())
    }

    /// One line of `inspect`.
    pub fn describe(&self) -> String {
        let when = if self.flags & DUE != 0 {
            "due at once (its expiry was not yet dispatched)".to_string()
        } else if self.value.is_zero() {
            "disarmed".to_string()
        } else if self.flags & ABSTIME != 0 {
            format!("at {}", self.value)
        } else {
            format!("left {}", self.value)
        };
        let every = if self.interval.is_zero() {
            String::new()
        } else {
            format!(" every {}", self.interval)
        };
        let to = match self.notify {
            Notify::None => String::new(),
            Notify::Signal => format!(" signal {}", self.signo),
            Notify::ThreadId => format!(" signal {} to thread {}", self.signo, self.tid),
            Notify::Thread => " (selfckpt's helper thread)".to_string(),
        };
        format!(
            "POSIX timer {}: {} {}{to}, {when}{every}, overrun {}",
            self.id,
            clock_name(self.clock).unwrap_or("?"),
            self.notify.name(),
            self.overrun
        )
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": "posix_timer", "id": self.id, "clock": self.clock,
            "notify": self.notify.name(), "signal": self.signo,
            "value": self.value_word, "tid": self.tid,
            "abstime": self.flags & ABSTIME != 0, "due": self.flags & DUE != 0,
            "left": self.value.to_string(), "interval": self.interval.to_string(),
            "overrun": self.overrun,
        })
    }
}

/// The clocks a timer can be on and be made again, by name.
fn clock_name(clock: i32) -> Option<&'static str> {
    Some(match clock {
        libc::CLOCK_REALTIME => "CLOCK_REALTIME",
        libc::CLOCK_MONOTONIC => "CLOCK_MONOTONIC",
        libc::CLOCK_PROCESS_CPUTIME_ID => "CLOCK_PROCESS_CPUTIME_ID",
        libc::CLOCK_BOOTTIME => "CLOCK_BOOTTIME",
        libc::CLOCK_REALTIME_ALARM => "CLOCK_REALTIME_ALARM",
        libc::CLOCK_BOOTTIME_ALARM => "CLOCK_BOOTTIME_ALARM",
        libc::CLOCK_TAI => "CLOCK_TAI",
        // MAKE_PROCESS_CPUCLOCK(0, PROF / VIRT / SCHED).
        -8 => "process CPU clock (prof)",
        -7 => "process CPU clock (virt)",
        -6 => "process CPU clock",
        _ => return None,
    })
}

/// A clock as /proc shows it, made restorable: a process CPU clock named
/// by this process's pid becomes the `pid 0` form; a thread's CPU clock
/// (it follows the thread that made the timer) cannot be made again from
/// another thread: None.
fn portable_clock(clock: i32, pid: u32) -> Option<i32> {
    if clock >= 0 {
        return clock_name(clock).map(|_| clock);
    }
    // CPUCLOCK_PERTHREAD_MASK is 4; the pid is ~(clock >> 3).
    if clock & 4 != 0 || clock & 3 == 3 {
        return None;
    }
    let of = !(clock >> 3);
    (of == 0 || of as u32 == pid).then_some(-8 | (clock & 3))
}

/// The table the restarted process makes its timers from (in the image
/// with the library's memory). Written only by [`capture`] and read only
/// by [`after_restart`], both while every other thread is parked.
struct Table {
    len: AtomicUsize,
    timers: UnsafeCell<[PosixTimer; MAX_TIMERS]>,
}

// SAFETY: see `Table`: one thread at a time, the others parked.
unsafe impl Sync for Table {}

static RESTORE: Table = Table {
    len: AtomicUsize::new(0),
    timers: UnsafeCell::new([PosixTimer::EMPTY; MAX_TIMERS]),
};

/// Raw timer_gettime: (time left, period), or None for an id the kernel
/// does not know (deleted meanwhile).
fn gettime(id: i32) -> Option<(TimeSpec, TimeSpec)> {
    // SAFETY: itimerspec is plain old data.
    let mut cur: libc::itimerspec = unsafe { core::mem::zeroed() };
    // SAFETY: raw timer_gettime with a valid out-pointer.
    let r = unsafe { libc::syscall(libc::SYS_timer_gettime, id as libc::c_long, &mut cur) };
    let ts = |t: &libc::timespec| TimeSpec {
        sec: t.tv_sec.max(0) as u64,
        nsec: t.tv_nsec.clamp(0, 999_999_999) as u32,
    };
    (r == 0).then(|| (ts(&cur.it_value), ts(&cur.it_interval)))
}

/// One timer's lines of /proc/self/timers, parsed.
struct Seen {
    id: i32,
    signo: u32,
    value_word: u64,
    notify: Option<Notify>,
    target: u32,
    clock: i64,
}

fn parse_one(block: &[u8]) -> Option<Seen> {
    let id = sys::field(block, b"ID:").and_then(sys::parse_u64)?.0;
    let sig = sys::field(block, b"signal:")?;
    let (signo, rest) = sys::parse_u64(sig)?;
    let (value_word, _) = sys::parse_hex(rest.strip_prefix(b"/")?)?;
    let n = sys::field(block, b"notify:")?;
    let slash = n.iter().position(|&c| c == b'/')?;
    let (how, target) = (&n[..slash], &n[slash + 1..]);
    let to_thread = target.starts_with(b"tid.");
    let notify = match (how, to_thread) {
        (b"signal", false) => Some(Notify::Signal),
        (b"none", _) => Some(Notify::None),
        (b"signal", true) => Some(Notify::ThreadId),
        _ => None,
    };
    let target = sys::parse_u64(target.get(4..)?).map_or(0, |(v, _)| v as u32);
    let c = sys::field(block, b"ClockID:")?;
    let clock = match c.strip_prefix(b"-") {
        Some(m) => -(sys::parse_u64(m)?.0 as i64),
        None => sys::parse_u64(c)?.0 as i64,
    };
    Some(Seen {
        id: i32::try_from(id).ok()?,
        signo: signo as u32,
        value_word,
        notify,
        target,
        clock,
    })
}

/// Writes one entry per timer (and one not-restorable entry per timer that
/// cannot come back), and fills [`RESTORE`]. No allocation.
pub fn capture(e: &mut Encoder, bufs: &mut super::CaptureBuffers) -> Result<(), KstateError> {
    RESTORE.len.store(0, Release);
    let helper = crate::interpose::timers::helper_tid();
    // Whether selfckpt's SIGEV_THREAD helper has an expiry not yet taken.
    let helper_due = helper != 0
        && super::pending::of_thread(crate::capture::tids::kernel_tid(helper), bufs.path)
            .is_ok_and(|set| set.contains(crate::interpose::timers::SIGTIMER));
    let shared = super::pending::shared(bufs.path).unwrap_or_default();
    let n = match sys::read_file(b"/proc/self/timers\0", bufs.text) {
        Ok(n) => n,
        // No CONFIG_CHECKPOINT_RESTORE: the kernel shows no timers. Said
        // if the program made some.
        Err(_) if crate::interpose::timers::any_made() => {
            return super::objects::NotRestorable::capture(
                e,
                -1,
                "posix_timer",
                b"POSIX timers (this kernel does not show /proc/self/timers)",
            )
            .map_err(Into::into);
        }
        Err(_) => return Ok(()),
    };
    let pid = sys::getpid();
    // SAFETY: see `Table`.
    let table = unsafe { &mut *RESTORE.timers.get() };
    let mut count = 0;
    let mut thread_timers = 0;
    let text = &bufs.text[..n];
    let mut starts = text
        .windows(3)
        .enumerate()
        .filter(|(i, w)| *w == b"ID:" && (*i == 0 || text[i - 1] == b'\n'))
        .map(|(i, _)| i)
        .peekable();
    while let Some(at) = starts.next() {
        let end = starts.peek().copied().unwrap_or(text.len());
        let Some(seen) = parse_one(&text[at..end]) else {
            return Err(KstateError::Parse("/proc/self/timers"));
        };
        let Some((value, interval)) = gettime(seen.id) else {
            continue;
        };
        let clock = i32::try_from(seen.clock)
            .ok()
            .and_then(|c| portable_clock(c, pid));
        let tid = crate::capture::tids::program_tid_of(seen.target);
        let notify = match seen.notify {
            Some(Notify::ThreadId) if helper != 0 && tid == helper => Some(Notify::Thread),
            other => other,
        };
        let (Some(clock), Some(notify)) = (clock, notify) else {
            let mut why = sys::PathBuf::<96>::new();
            why.push(b"POSIX timer ").push_u64(seen.id as u64).push(
                b" is on a thread's CPU clock or notifies in a way selfckpt cannot make again",
            );
            super::objects::NotRestorable::capture(e, -1, "posix_timer", why.as_bytes())?;
            continue;
        };
        if count == MAX_TIMERS {
            super::objects::NotRestorable::capture(
                e,
                -1,
                "posix_timer",
                b"more POSIX timers than selfckpt keeps (256): the others",
            )?;
            break;
        }
        let mut flags = 0;
        let mut value = value;
        if crate::interpose::timers::abstime(seen.id) && !value.is_zero() {
            flags |= ABSTIME;
            value = timerfd::add(timerfd::now(clock as u32), value);
        }
        // SAFETY: raw timer_getoverrun on an id the kernel just showed.
        let overrun = unsafe { libc::syscall(libc::SYS_timer_getoverrun, seen.id) }.max(0) as i32;
        let t = PosixTimer {
            id: seen.id,
            clock,
            notify,
            signo: seen.signo,
            value_word: seen.value_word,
            tid: if notify.targets_thread() { tid } else { 0 },
            flags,
            value,
            interval,
            overrun,
        };
        if notify == Notify::Thread {
            thread_timers += 1;
        }
        table[count] = t;
        count += 1;
    }
    // A SIGEV_THREAD expiry the helper had not taken yet: given back as a
    // timer due at once when it can only be one timer's.
    if helper_due && thread_timers == 1 {
        if let Some(t) = table[..count]
            .iter_mut()
            .find(|t| t.notify == Notify::Thread)
        {
            t.flags |= DUE;
        }
    }
    // Likewise a process-directed timer signal still pending, when no
    // other timer sends that signal: the restart takes the plain signal
    // the pending set gives back and makes the timer due instead, so the
    // program gets it from the timer, with its value.
    for i in 0..count {
        let t = table[i];
        let alone = table[..count]
            .iter()
            .filter(|u| u.notify == Notify::Signal && u.signo == t.signo)
            .count()
            == 1;
        if t.notify == Notify::Signal && alone && shared.contains(t.signo as i32) {
            table[i].flags |= DUE;
        }
    }
    for t in &table[..count] {
        super::objects::entry(e, super::objects::Kind::PosixTimer, 0, |e| t.encode(e))?;
    }
    RESTORE.len.store(count, Release);
    Ok(())
}

/// Whether this kernel gives timer_create the id it is asked for
/// (`PR_TIMER_CREATE_RESTORE_IDS`, Linux 6.15+).
pub fn explicit_ids() -> bool {
    // SAFETY: a prctl that only reads the process's setting.
    unsafe { libc::prctl(PR_TIMER_CREATE_RESTORE_IDS, RESTORE_IDS_GET, 0, 0, 0) >= 0 }
}

/// What a restart on this machine cannot give back: ids no kernel call
/// can reach.
pub fn problems_here(timers: &[&PosixTimer]) -> Vec<super::Problem> {
    if timers.is_empty() || explicit_ids() {
        return Vec::new();
    }
    timers
        .iter()
        .filter(|t| t.id > FILLER_LIMIT)
        .map(|t| {
            super::Problem::new(
                "posix_timer",
                format!(
                    "POSIX timer {}: this kernel cannot create a timer with a given id \
                     (PR_TIMER_CREATE_RESTORE_IDS, Linux 6.15+), and ids above {FILLER_LIMIT} \
                     are not reached by creating timers one by one",
                    t.id
                ),
            )
        })
        .collect()
}

/// The kernel's `struct sigevent` (64 bytes): value, signal, notify, and
/// the target thread.
#[repr(C)]
struct KernelSigevent {
    value: u64,
    signo: i32,
    notify: i32,
    tid: i32,
    pad: [i32; 11],
}

/// Raw timer_create asking for id `*id` (used where the kernel takes it).
fn create(t: &PosixTimer, id: &mut i32) -> bool {
    let ev = KernelSigevent {
        value: t.value_word,
        signo: t.signo as i32,
        notify: t.notify.kernel(),
        tid: if t.notify.targets_thread() {
            crate::capture::tids::kernel_tid(t.tid) as i32
        } else {
            0
        },
        pad: [0; 11],
    };
    // SAFETY: raw timer_create with a kernel-layout sigevent and an int
    // that the kernel reads (restore-ids mode) and writes.
    unsafe {
        libc::syscall(
            libc::SYS_timer_create,
            t.clock as libc::c_long,
            &ev as *const KernelSigevent,
            id as *mut i32,
        ) == 0
    }
}

/// Makes `t` with its own id: asked for (`explicit`), or reached by
/// making it and deleting it again until the kernel's next id is its own.
fn create_with_id(t: &PosixTimer, explicit: bool) -> bool {
    if explicit {
        let mut id = t.id;
        return create(t, &mut id) && id == t.id;
    }
    for _ in 0..=FILLER_LIMIT {
        let mut id = 0;
        if !create(t, &mut id) {
            return false;
        }
        if id == t.id {
            return true;
        }
        // SAFETY: deleting the unarmed timer just made with another id.
        unsafe { libc::syscall(libc::SYS_timer_delete, id as libc::c_long) };
        if id > t.id {
            return false;
        }
    }
    false
}

/// Arms a timer made again as it was.
fn arm(t: &PosixTimer) -> bool {
    let (flags, value) = if t.flags & DUE != 0 {
        (0, TimeSpec { sec: 0, nsec: 1 })
    } else if t.flags & ABSTIME != 0 {
        (libc::TIMER_ABSTIME, t.value)
    } else {
        (0, t.value)
    };
    if value.is_zero() {
        return true;
    }
    let k = |v: TimeSpec| libc::timespec {
        tv_sec: v.sec as libc::time_t,
        tv_nsec: v.nsec as libc::c_long,
    };
    let its = libc::itimerspec {
        it_interval: k(t.interval),
        it_value: k(value),
    };
    // SAFETY: raw timer_settime with a valid itimerspec, no old value.
    unsafe {
        libc::syscall(
            libc::SYS_timer_settime,
            t.id as libc::c_long,
            flags as libc::c_long,
            &its as *const libc::itimerspec,
            core::ptr::null_mut::<libc::itimerspec>(),
        ) == 0
    }
}

/// Takes one pending `sig` with a zero timeout (the plain signal the
/// pending set gave back for a timer made due again).
fn take_pending(sig: i32) {
    let set = 1u64 << (sig - 1);
    let zero = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: raw rt_sigtimedwait with an 8-byte set, no siginfo, a zero
    // timeout; the signal is blocked in this thread.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigtimedwait,
            &set as *const u64,
            core::ptr::null_mut::<libc::siginfo_t>(),
            &zero as *const libc::timespec,
            8,
        )
    };
}

/// In the restarted process (manager thread, every other thread waiting
/// in `restart_entry`, every signal blocked): makes the timers of
/// [`RESTORE`] again with their ids, in id order, and arms them. A timer
/// that cannot be made is named on stderr. No allocation.
pub fn after_restart() {
    let n = RESTORE.len.load(Acquire).min(MAX_TIMERS);
    if n == 0 {
        return;
    }
    // SAFETY: see `Table`.
    let table = unsafe { &mut *RESTORE.timers.get() };
    table[..n].sort_unstable_by_key(|t| t.id);
    for t in table[..n].iter().filter(|t| t.flags & DUE != 0) {
        if t.notify == Notify::Signal {
            take_pending(t.signo as i32);
        }
    }
    // SAFETY: a prctl on this process's timer_create mode.
    let explicit =
        unsafe { libc::prctl(PR_TIMER_CREATE_RESTORE_IDS, RESTORE_IDS_ON, 0, 0, 0) } == 0;
    for t in &table[..n] {
        if !(create_with_id(t, explicit) && arm(t)) {
            let mut msg = sys::PathBuf::<128>::new();
            msg.push(b"selfckpt: warning: POSIX timer ")
                .push_u64(t.id as u64)
                .push(b" could not be made again after the restart\n");
            // SAFETY: a write of a buffer on the stack to stderr.
            unsafe { libc::write(2, msg.as_bytes().as_ptr().cast(), msg.as_bytes().len()) };
        }
    }
    if explicit {
        // SAFETY: as above.
        unsafe { libc::prctl(PR_TIMER_CREATE_RESTORE_IDS, RESTORE_IDS_OFF, 0, 0, 0) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timer() -> PosixTimer {
        PosixTimer {
            id: 3,
            clock: libc::CLOCK_MONOTONIC,
            notify: Notify::ThreadId,
            signo: 40,
            value_word: 0x1234,
            tid: 77,
            flags: ABSTIME,
            value: TimeSpec { sec: 5, nsec: 7 },
            interval: TimeSpec {
                sec: 0,
                nsec: 100_000_000,
            },
            overrun: 2,
        }
    }

    #[test]
    fn a_timer_round_trips_and_is_checked() {
        let t = timer();
        let mut buf = vec![0u8; 256];
        let mut e = Encoder::new(&mut buf);
        t.encode(&mut e).unwrap();
        let n = e.len();
        let mut d = Decoder::new(&buf[..n]);
        assert_eq!(PosixTimer::decode(&mut d).unwrap(), t);
        d.finish().unwrap();
        assert!(t.check().is_ok());
        assert!(t.describe().contains("SIGEV_THREAD_ID"), "{}", t.describe());
        for bad in [
            PosixTimer { id: -1, ..t },
            PosixTimer { clock: 4, ..t },
            PosixTimer { clock: -2, ..t },
            PosixTimer { signo: 0, ..t },
            PosixTimer { tid: 0, ..t },
            PosixTimer { flags: 8, ..t },
            PosixTimer {
                value: TimeSpec {
                    sec: 0,
                    nsec: 1_000_000_000,
                },
                ..t
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn proc_timers_blocks_parse() {
        let s =
            parse_one(b"ID: 2\nsignal: 37/0000000000001234\nnotify: signal/tid.617\nClockID: 7\n")
                .unwrap();
        assert_eq!(
            (s.id, s.signo, s.value_word, s.notify, s.target, s.clock),
            (2, 37, 0x1234, Some(Notify::ThreadId), 617, 7)
        );
        let s = parse_one(b"ID: 1\nsignal: 14/0000000000000000\nnotify: none/pid.5\nClockID: -6\n")
            .unwrap();
        assert_eq!((s.notify, s.clock), (Some(Notify::None), -6));
        assert!(parse_one(b"ID: x\n").is_none());
    }

    #[test]
    fn cpu_clocks_are_kept_only_for_the_process() {
        assert_eq!(portable_clock(-6, 100), Some(-6));
        // MAKE_PROCESS_CPUCLOCK(100, SCHED) and (101, SCHED).
        assert_eq!(portable_clock((!100 << 3) | 2, 100), Some(-6));
        assert_eq!(portable_clock((!101 << 3) | 2, 100), None);
        // MAKE_THREAD_CPUCLOCK(0, SCHED).
        assert_eq!(portable_clock(-2, 100), None);
        assert_eq!(portable_clock(libc::CLOCK_BOOTTIME, 100), Some(7));
    }

    /// Runs `check` in a forked child (a process of its own, whose timer
    /// ids start at 0); fails with the child's exit code.
    fn in_child(check: fn() -> i32) {
        // SAFETY: the child makes raw system calls only and leaves with
        // _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // SAFETY: leaving the forked child.
            unsafe { libc::_exit(check()) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "status {status:#x}"
        );
    }

    #[test]
    fn ids_are_reached_with_and_without_the_kernel_taking_them() {
        in_child(|| {
            let t = |id| PosixTimer {
                id,
                notify: Notify::None,
                clock: libc::CLOCK_MONOTONIC,
                ..PosixTimer::EMPTY
            };
            // One by one: ids 0-4 are taken and given back on the way.
            if !create_with_id(&t(5), false) || gettime(5).is_none() {
                return 1;
            }
            if (0..5).any(|id| gettime(id).is_some()) {
                return 2;
            }
            // An id below the kernel's next one cannot be had that way.
            if create_with_id(&t(2), false) || gettime(2).is_some() {
                return 3;
            }
            if !explicit_ids() {
                return 0;
            }
            // SAFETY: prctl on this child's timer_create mode.
            unsafe { libc::prctl(PR_TIMER_CREATE_RESTORE_IDS, RESTORE_IDS_ON, 0, 0, 0) };
            let ok = create_with_id(&t(2), true) && create_with_id(&t(900), true);
            // SAFETY: as above.
            unsafe { libc::prctl(PR_TIMER_CREATE_RESTORE_IDS, RESTORE_IDS_OFF, 0, 0, 0) };
            if !ok || gettime(2).is_none() || gettime(900).is_none() {
                return 4;
            }
            0
        });
    }
}
