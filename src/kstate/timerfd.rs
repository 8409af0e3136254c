//! timerfd descriptors (timerfd_create(2)): clock, time left and period,
//! the `settime` flags, expirations not yet read, file status flags.
//!
//! Capture ([`encode_all`]) runs while the program's threads are
//! suspended: it reads /proc/self/fdinfo (`clockid`, `ticks`, `settime
//! flags`, `it_value` as the time left, `it_interval`) into fixed buffers
//! and must never allocate. A timer set with `TFD_TIMER_ABSTIME` is saved
//! with its absolute expiry (the clock's time at capture plus the time
//! left), so that it expires at that very time after a restart (at once if
//! that time has passed meanwhile); a relative one is saved with the time
//! left, which starts again at restart (the time the program was not
//! running does not count, as for the interval timers).
//!
//! Restore ([`restore`]) runs in the restarter, before the hand-over: a
//! fresh timerfd on the same clock, armed with the same flags, its unread
//! expirations given back with `TFD_IOC_SET_TICKS` (a kernel without
//! `CONFIG_CHECKPOINT_RESTORE` lacks it: [`ticks_settable`] tells, and the
//! restart refuses a timer with expirations it cannot give back), put at
//! its number.

use super::{fds, CaptureBuffers, KstateError};
use crate::capture::sys;
use crate::image::codec::{CodecError, Decoder, Encoder};

/// The /proc/self/fd link of a timerfd.
pub const LINK: &[u8] = b"anon_inode:[timerfd]";

/// `TFD_IOC_SET_TICKS`: `_IOW('T', 0, u64)`.
const TFD_IOC_SET_TICKS: libc::c_ulong = 0x4008_5400;

/// Clocks a timerfd can be on.
pub const CLOCKS: [u32; 5] = [
    libc::CLOCK_REALTIME as u32,
    libc::CLOCK_MONOTONIC as u32,
    libc::CLOCK_BOOTTIME as u32,
    libc::CLOCK_REALTIME_ALARM as u32,
    libc::CLOCK_BOOTTIME_ALARM as u32,
];

/// `settime` flags a timerfd can have.
pub const SETTIME_FLAGS: u32 = (libc::TFD_TIMER_ABSTIME | libc::TFD_TIMER_CANCEL_ON_SET) as u32;

/// One time: seconds and nanoseconds (below 10^9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimeSpec {
    pub sec: u64,
    pub nsec: u32,
}

impl TimeSpec {
    pub fn is_zero(&self) -> bool {
        self.sec == 0 && self.nsec == 0
    }
    fn kernel(&self) -> libc::timespec {
        // The reader bounds `sec` and `nsec`.
        libc::timespec {
            tv_sec: self.sec as libc::time_t,
            tv_nsec: self.nsec as libc::c_long,
        }
    }
    pub(crate) fn encode(&self, e: &mut Encoder) -> Result<(), CodecError> {
        e.u64(self.sec)?;
        e.u32(self.nsec)
    }
    pub(crate) fn decode(d: &mut Decoder) -> Result<Self, CodecError> {
        Ok(TimeSpec {
            sec: d.u64()?,
            nsec: d.u32()?,
        })
    }
}

impl std::fmt::Display for TimeSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{}.{:09}s", self.sec, self.nsec)
    }
}

/// One timerfd (KERNEL record, format 1.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerFd {
    pub fd: i32,
    /// fdinfo `flags`: access mode, `O_NONBLOCK`, `O_CLOEXEC`.
    pub flags: u32,
    /// One of [`CLOCKS`].
    pub clock: u32,
    /// `TFD_TIMER_ABSTIME` (1), `TFD_TIMER_CANCEL_ON_SET` (2).
    pub settime_flags: u32,
    /// Expirations not yet read.
    pub ticks: u64,
    /// Time left, or with `TFD_TIMER_ABSTIME` the absolute expiry on the
    /// timer's clock; zero: disarmed.
    pub value: TimeSpec,
    pub interval: TimeSpec,
}

impl TimerFd {
    pub const ENCODED_LEN: usize = 48;

    pub fn encode(&self, e: &mut Encoder) -> Result<(), CodecError> {
        e.i32(self.fd)?;
        e.u32(self.flags)?;
        e.u32(self.clock)?;
        e.u32(self.settime_flags)?;
        e.u64(self.ticks)?;
        self.value.encode(e)?;
        self.interval.encode(e)
    }

    pub fn decode(d: &mut Decoder) -> Result<Self, CodecError> {
        Ok(TimerFd {
            fd: d.i32()?,
            flags: d.u32()?,
            clock: d.u32()?,
            settime_flags: d.u32()?,
            ticks: d.u64()?,
            value: TimeSpec::decode(d)?,
            interval: TimeSpec::decode(d)?,
        })
    }

    fn abstime(&self) -> bool {
        self.settime_flags & libc::TFD_TIMER_ABSTIME as u32 != 0
    }

    /// One line of `inspect`.
    pub fn describe(&self) -> String {
        let when = if self.value.is_zero() {
            "disarmed".to_string()
        } else if self.abstime() {
            format!("at {}", self.value)
        } else {
            format!("left {}", self.value)
        };
        let every = if self.interval.is_zero() {
            String::new()
        } else {
            format!(" every {}", self.interval)
        };
        let cancel = if self.settime_flags & libc::TFD_TIMER_CANCEL_ON_SET as u32 != 0 {
            " cancel-on-set"
        } else {
            ""
        };
        format!(
            "fd {} timerfd clock {} {when}{every} ticks {}{cancel}{}",
            self.fd,
            clock_name(self.clock),
            self.ticks,
            super::eventfd::flag_words(self.flags)
        )
    }
}

pub fn clock_name(clock: u32) -> &'static str {
    match clock as i32 {
        libc::CLOCK_REALTIME => "realtime",
        libc::CLOCK_MONOTONIC => "monotonic",
        libc::CLOCK_BOOTTIME => "boottime",
        libc::CLOCK_REALTIME_ALARM => "realtime-alarm",
        libc::CLOCK_BOOTTIME_ALARM => "boottime-alarm",
        _ => "unknown",
    }
}

/// Parses "(SEC, NSEC)" as fdinfo writes `it_value` and `it_interval`.
fn parse_pair(s: &[u8]) -> Option<TimeSpec> {
    let s = s.strip_prefix(b"(")?;
    let (sec, rest) = sys::parse_u64(s)?;
    let rest = rest.strip_prefix(b",")?;
    let skip = rest.iter().take_while(|c| **c == b' ').count();
    let (nsec, rest) = sys::parse_u64(&rest[skip..])?;
    (rest.starts_with(b")") && nsec < 1_000_000_000).then_some(TimeSpec {
        sec,
        nsec: nsec as u32,
    })
}

/// The time now on `clock` (the alarm clocks read their base clock).
pub(crate) fn now(clock: u32) -> TimeSpec {
    let base = match clock as i32 {
        libc::CLOCK_REALTIME_ALARM => libc::CLOCK_REALTIME,
        libc::CLOCK_BOOTTIME_ALARM => libc::CLOCK_BOOTTIME,
        c => c,
    };
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec (vDSO, no allocation).
    unsafe { libc::clock_gettime(base, &mut ts) };
    TimeSpec {
        sec: ts.tv_sec.max(0) as u64,
        nsec: ts.tv_nsec.clamp(0, 999_999_999) as u32,
    }
}

pub(crate) fn add(a: TimeSpec, b: TimeSpec) -> TimeSpec {
    let ns = a.nsec + b.nsec;
    TimeSpec {
        sec: a.sec + b.sec + (ns / 1_000_000_000) as u64,
        nsec: ns % 1_000_000_000,
    }
}

/// A periodic timer that expired is moved on to its next expiry (and its
/// overruns counted in its ticks) only when read or asked: its fdinfo
/// would show it with no time left. timerfd_gettime moves it on and
/// changes nothing the program can see.
fn move_on(fd: i32) {
    // SAFETY: itimerspec is plain old data; zeroed is a valid value.
    let mut cur: libc::itimerspec = unsafe { core::mem::zeroed() };
    // SAFETY: raw timerfd_gettime writing one itimerspec.
    unsafe {
        libc::syscall(
            libc::SYS_timerfd_gettime,
            fd,
            &mut cur as *mut libc::itimerspec,
        )
    };
}

/// Encodes the count and every timerfd not skipped. No allocation.
pub fn encode_all(
    e: &mut Encoder,
    bufs: &mut CaptureBuffers,
    skip_fd: &dyn Fn(i32) -> bool,
) -> Result<(), KstateError> {
    let at = e.reserve_u32()?;
    let mut count = 0u32;
    fds::for_each_linked(bufs, skip_fd, LINK, &move_on, |fd, info| {
        let info = info.map_err(|errno| KstateError::Read {
            what: "a timerfd's fdinfo",
            errno,
        })?;
        let num = |key: &[u8], what: &'static str| {
            sys::field(info, key)
                .and_then(sys::parse_u64)
                .map(|(v, _)| v)
                .ok_or(KstateError::Parse(what))
        };
        let clock = num(b"clockid:", "a timerfd's clock")? as u32;
        let ticks = num(b"ticks:", "a timerfd's ticks")?;
        let settime_flags = sys::field(info, b"settime flags:")
            .and_then(sys::parse_octal)
            .ok_or(KstateError::Parse("a timerfd's settime flags"))?
            as u32;
        let pair = |key: &[u8], what: &'static str| {
            sys::field(info, key)
                .and_then(parse_pair)
                .ok_or(KstateError::Parse(what))
        };
        let mut value = pair(b"it_value:", "a timerfd's it_value")?;
        let interval = pair(b"it_interval:", "a timerfd's it_interval")?;
        if settime_flags & libc::TFD_TIMER_ABSTIME as u32 != 0 && !value.is_zero() {
            value = add(now(clock), value);
        }
        TimerFd {
            fd,
            flags: fds::info_flags(fd, info),
            clock,
            settime_flags,
            ticks,
            value,
            interval,
        }
        .encode(e)?;
        count += 1;
        Ok(())
    })?;
    e.patch_u32(at, count);
    Ok(())
}

/// Whether this kernel lets a restart give a timerfd its unread
/// expirations (`TFD_IOC_SET_TICKS`).
pub fn ticks_settable() -> bool {
    // SAFETY: a throw-away timerfd, an ioctl reading one u64, close.
    unsafe {
        let fd = libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_CLOEXEC);
        if fd < 0 {
            return false;
        }
        let one: u64 = 1;
        let ok = libc::ioctl(fd, TFD_IOC_SET_TICKS as _, &one as *const u64) == 0;
        libc::close(fd);
        ok
    }
}

/// Makes the timerfd anew at its number, armed, with its unread
/// expirations (an error about those leaves the timer there without them).
pub fn restore(t: &TimerFd) -> std::io::Result<()> {
    let flags = t.flags as i32 & (libc::O_NONBLOCK | libc::O_CLOEXEC);
    // SAFETY: timerfd_create has no memory preconditions.
    let tmp = unsafe { libc::timerfd_create(t.clock as i32, flags) };
    if tmp < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fail = |tmp: i32| {
        let err = std::io::Error::last_os_error();
        // SAFETY: closing our descriptor.
        unsafe { libc::close(tmp) };
        err
    };
    if !t.value.is_zero() {
        let spec = libc::itimerspec {
            it_interval: t.interval.kernel(),
            it_value: t.value.kernel(),
        };
        // SAFETY: timerfd_settime reads one itimerspec; no old value.
        let r = unsafe {
            libc::timerfd_settime(tmp, t.settime_flags as i32, &spec, std::ptr::null_mut())
        };
        if r != 0 {
            return Err(fail(tmp));
        }
    }
    fds::install_at(tmp, t.fd, t.flags)?;
    if t.ticks > 0 {
        // SAFETY: the ioctl reads one u64.
        let r = unsafe { libc::ioctl(t.fd, TFD_IOC_SET_TICKS as _, &t.ticks as *const u64) };
        if r != 0 {
            // The timer stays (a fresh stand-in, as the restart was told).
            return Err(std::io::Error::other(format!(
                "its {} unread expirations are lost: {}",
                t.ticks,
                std::io::Error::last_os_error()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdinfo_pairs_parse() {
        assert_eq!(
            parse_pair(b"(2, 999914303)"),
            Some(TimeSpec {
                sec: 2,
                nsec: 999_914_303
            })
        );
        assert_eq!(parse_pair(b"(2, 1000000000)"), None);
        assert_eq!(parse_pair(b"2, 3"), None);
    }

    fn spec(interval: (i64, i64), value: (i64, i64)) -> libc::itimerspec {
        libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: interval.0,
                tv_nsec: interval.1,
            },
            it_value: libc::timespec {
                tv_sec: value.0,
                tv_nsec: value.1,
            },
        }
    }

    #[test]
    fn timers_come_back_armed_with_their_unread_expirations() {
        // SAFETY: test timers, armed with valid specs.
        let (abs, due) = unsafe {
            let abs = libc::timerfd_create(libc::CLOCK_REALTIME, libc::TFD_CLOEXEC);
            let due = libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK);
            let mut now: libc::timespec = std::mem::zeroed();
            libc::clock_gettime(libc::CLOCK_REALTIME, &mut now);
            let at = spec((0, 0), (now.tv_sec + 60, 0));
            libc::timerfd_settime(abs, libc::TFD_TIMER_ABSTIME, &at, std::ptr::null_mut());
            // Periodic, every 100 s, first after 1 ms.
            let every = spec((100, 0), (0, 1_000_000));
            libc::timerfd_settime(due, 0, &every, std::ptr::null_mut());
            (abs, due)
        };
        std::thread::sleep(std::time::Duration::from_millis(20));
        let out = super::super::captured(|e, bufs| encode_all(e, bufs, &|x| x != abs && x != due));
        let mut d = Decoder::new(&out);
        assert_eq!(d.u32().unwrap(), 2);
        let got: Vec<TimerFd> = (0..2).map(|_| TimerFd::decode(&mut d).unwrap()).collect();
        let a = got.iter().find(|t| t.fd == abs).unwrap();
        let p = got.iter().find(|t| t.fd == due).unwrap();
        assert_eq!(a.settime_flags, libc::TFD_TIMER_ABSTIME as u32);
        assert!(a.value.sec > 1_000_000_000, "absolute: {}", a.value);
        assert_eq!((p.ticks, p.interval.sec), (1, 100));
        // Moved on to its next expiry, not shown as due.
        assert!(p.value.sec >= 99, "{}", p.value);
        if !ticks_settable() {
            eprintln!("skipped: restoring ticks: this kernel has no TFD_IOC_SET_TICKS");
            return;
        }
        for (t, at) in [(a, 975), (p, 976)] {
            restore(&TimerFd { fd: at, ..*t }).unwrap();
        }
        // SAFETY: reading the restored timers.
        unsafe {
            let mut cur: libc::itimerspec = std::mem::zeroed();
            libc::timerfd_gettime(975, &mut cur);
            assert!(
                (50..=60).contains(&cur.it_value.tv_sec),
                "{}",
                cur.it_value.tv_sec
            );
            assert_ne!(libc::fcntl(975, libc::F_GETFD) & libc::FD_CLOEXEC, 0);
            let mut ticks = 0u64;
            assert_eq!(libc::read(976, (&mut ticks as *mut u64).cast(), 8), 8);
            assert_eq!(ticks, 1);
            libc::timerfd_gettime(976, &mut cur);
            assert_eq!(cur.it_interval.tv_sec, 100);
            for fd in [abs, due, 975, 976] {
                libc::close(fd);
            }
        }
    }
}
