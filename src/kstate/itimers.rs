//! The process's interval timers (setitimer(2)): ITIMER_REAL (the one
//! alarm(2) sets), ITIMER_VIRTUAL and ITIMER_PROF. They belong to the
//! process, not to a thread, and die with it: nothing of them is in memory.
//!
//! Capture ([`capture`]) runs while the program's threads are suspended,
//! inside the dump's signal handler (every signal blocked): raw getitimer
//! and rt_sigpending, no allocation. Each timer's period and the time left
//! at that moment are saved.
//!
//! Restore ([`arm`]) runs in the restarter, in the process that becomes the
//! program (in both restart paths), as the last step before the jump to the
//! restorer. Every signal is blocked then, so a timer that expires before
//! the program's threads are back leaves its signal pending for them.
//!
//! A periodic ITIMER_REAL is re-armed by the kernel only when its SIGALRM
//! is taken (`dequeue_signal`), not when it expires: between the two,
//! getitimer says "no time left, period P". A checkpoint often falls there
//! (its threads block every signal while they are parked). When SIGALRM is
//! pending, the capture saves such a timer as due in one microsecond (what
//! getitimer itself says of a timer that is due now): after a restart the
//! SIGALRM comes at once and the period goes on, as it would have in the
//! checkpointed process. (The CPU timers are re-armed when they expire;
//! one of them with a period but no time left is disarmed, and saved so.)

use super::KstateError;
use crate::capture::sys::Errno;
use crate::image::model::{IntervalTimer, IntervalTimers, TimeVal, TimerKind};

/// The time left that marks a timer as due now.
const DUE_NOW: TimeVal = TimeVal { sec: 0, usec: 1 };

fn from_kernel(tv: &libc::timeval) -> TimeVal {
    // The kernel reports non-negative seconds and microseconds below 10^6.
    TimeVal {
        sec: tv.tv_sec as u64,
        usec: tv.tv_usec as u32,
    }
}

fn to_kernel(tv: &TimeVal) -> libc::timeval {
    // The reader bounds `sec` far below i64::MAX and `usec` below 10^6.
    libc::timeval {
        tv_sec: tv.sec as libc::time_t,
        tv_usec: tv.usec as libc::suseconds_t,
    }
}

/// One timer, read with raw getitimer(2).
fn read(kind: TimerKind) -> Result<IntervalTimer, KstateError> {
    // SAFETY: itimerval is plain old data.
    let mut v: libc::itimerval = unsafe { core::mem::zeroed() };
    // SAFETY: raw getitimer with a valid out-pointer to a kernel-layout
    // struct itimerval (two struct timeval of two longs, on every 64-bit
    // architecture).
    let r = unsafe {
        libc::syscall(
            libc::SYS_getitimer,
            kind as libc::c_long,
            &mut v as *mut libc::itimerval,
        )
    };
    if r != 0 {
        return Err(KstateError::Read {
            what: "the interval timers (getitimer)",
            errno: Errno::last(),
        });
    }
    Ok(IntervalTimer {
        interval: from_kernel(&v.it_interval),
        value: from_kernel(&v.it_value),
    })
}

/// Whether a SIGALRM is pending for the process (or the calling thread)
/// and blocked by the calling thread: rt_sigpending(2) reports exactly
/// those. In the dump's handler every signal is blocked.
fn sigalrm_pending() -> bool {
    let mut set: u64 = 0;
    // SAFETY: raw rt_sigpending with an out-pointer to the kernel's 8-byte
    // signal set.
    let r = unsafe {
        libc::syscall(
            libc::SYS_rt_sigpending,
            &mut set as *mut u64,
            core::mem::size_of::<u64>(),
        )
    };
    r == 0 && set & (1 << (libc::SIGALRM - 1)) != 0
}

/// Reads the three timers (see the module header for a periodic
/// ITIMER_REAL whose SIGALRM is pending). No allocation.
pub fn capture() -> Result<IntervalTimers, KstateError> {
    let mut timers = IntervalTimers::default();
    for kind in TimerKind::ALL {
        timers.0[kind as usize] = read(kind)?;
    }
    let real = &mut timers.0[TimerKind::Real as usize];
    if real.value.is_zero() && !real.interval.is_zero() && sigalrm_pending() {
        real.value = DUE_NOW;
    }
    Ok(timers)
}

/// Sets the three timers of this process to `timers` with setitimer(2),
/// disarmed ones included (a process keeps its timers across execve: the
/// restarter may have been started with some).
pub fn arm(timers: &IntervalTimers) -> std::io::Result<()> {
    for (kind, t) in timers.iter() {
        let v = libc::itimerval {
            it_interval: to_kernel(&t.interval),
            it_value: to_kernel(&t.value),
        };
        // SAFETY: setitimer with a valid itimerval and no old value.
        if unsafe { libc::setitimer(kind as libc::c_int, &v, core::ptr::null_mut()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tv(sec: u64, usec: u32) -> TimeVal {
        TimeVal { sec, usec }
    }

    fn timer(interval: TimeVal, value: TimeVal) -> IntervalTimer {
        IntervalTimer { interval, value }
    }

    fn micros(t: &TimeVal) -> u64 {
        t.sec * 1_000_000 + t.usec as u64
    }

    /// Runs `check` in a forked child, whose timers and signal mask are its
    /// own (no thread of the test harness ever sees its signals); fails
    /// with the child's message.
    fn in_child(check: fn() -> Result<(), String>) {
        // SAFETY: the child blocks the timers' signals and runs `check`
        // (glibc's fork leaves malloc usable in it), then leaves with
        // _exit, never returning into the harness.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            crate::capture::sys::change_signal_mask(
                libc::SIG_BLOCK,
                &[libc::SIGALRM, libc::SIGVTALRM, libc::SIGPROF],
            );
            let code = match std::panic::catch_unwind(check) {
                Ok(Ok(())) => 0,
                Ok(Err(msg)) => {
                    eprintln!("{msg}");
                    1
                }
                Err(_) => 2,
            };
            // SAFETY: leaving the forked child.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "the child's checks failed (status {status:#x}; its message is above)"
        );
    }

    fn expect(what: &str, ok: bool, got: &IntervalTimers) -> Result<(), String> {
        ok.then_some(()).ok_or(format!("{what}: {got:?}"))
    }

    #[test]
    fn timers_set_are_read_back_with_their_time_left_and_period() {
        in_child(|| {
            let set = IntervalTimers([
                timer(tv(0, 50_000), tv(30, 0)),
                timer(tv(0, 0), tv(20, 0)),
                timer(tv(0, 10_000), tv(5, 250_000)),
            ]);
            arm(&set).map_err(|e| format!("arm: {e}"))?;
            let got = capture().map_err(|e| e.to_string())?;
            for (kind, t) in got.iter() {
                let want = set.get(kind);
                expect("periods are exact", t.interval == want.interval, &got)?;
                // The kernel adds up to a tick to a CPU timer's value.
                let left = micros(&t.value);
                let ok =
                    left <= micros(&want.value) + 20_000 && left + 1_000_000 > micros(&want.value);
                expect(kind.name(), ok, &got)?;
            }
            // What a restart does with them gives the same timers again.
            arm(&got).map_err(|e| format!("arm: {e}"))?;
            let again = capture().map_err(|e| e.to_string())?;
            let same_periods = again.iter().all(|(k, t)| t.interval == got.get(k).interval);
            expect(
                "re-armed",
                same_periods && again.armed().count() == 3,
                &again,
            )?;
            arm(&IntervalTimers::default()).map_err(|e| format!("arm: {e}"))?;
            let off = capture().map_err(|e| e.to_string())?;
            expect("disarmed", off == IntervalTimers::default(), &off)
        });
    }

    #[test]
    fn a_periodic_real_timer_whose_sigalrm_is_pending_is_saved_as_due_now() {
        in_child(|| {
            // Expires after 1 ms; SIGALRM is blocked, so it stays pending
            // and the kernel does not re-arm the period.
            let period = tv(0, 10_000);
            let mut due = IntervalTimers::default();
            due.0[TimerKind::Real as usize] = timer(period, tv(0, 1_000));
            arm(&due).map_err(|e| format!("arm: {e}"))?;
            std::thread::sleep(std::time::Duration::from_millis(30));
            let got = capture().map_err(|e| e.to_string())?;
            let real = got.get(TimerKind::Real);
            expect("due now", *real == timer(period, DUE_NOW), &got)?;

            // Nothing pending: no timer is due. A CPU timer disarmed with
            // a period left in it keeps it, and is saved so. (The pending
            // SIGALRM is taken with the real timer disarmed first, or the
            // kernel would re-arm it.)
            arm(&IntervalTimers::default()).map_err(|e| format!("arm: {e}"))?;
            // SAFETY: a signal set on the stack; a zero timeout.
            unsafe {
                let mut alrm: libc::sigset_t = core::mem::zeroed();
                libc::sigemptyset(&mut alrm);
                libc::sigaddset(&mut alrm, libc::SIGALRM);
                let zero = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                libc::sigtimedwait(&alrm, core::ptr::null_mut(), &zero);
            }
            let mut set = IntervalTimers::default();
            set.0[TimerKind::Virtual as usize] = timer(period, TimeVal::default());
            arm(&set).map_err(|e| format!("arm: {e}"))?;
            let got = capture().map_err(|e| e.to_string())?;
            expect("disarmed, period kept", got == set, &got)?;
            expect("none armed", got.armed().count() == 0, &got)
        });
    }
}
