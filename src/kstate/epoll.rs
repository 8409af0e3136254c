//! epoll descriptors (epoll_create1(2)): every registration (the watched
//! descriptor's number, its events with `EPOLLET`/`EPOLLONESHOT`, its
//! data) and the file status flags.
//!
//! Capture ([`encode_all`]) runs while the program's threads are
//! suspended: it reads the `tfd:` lines of /proc/self/fdinfo into fixed
//! buffers and must never allocate. A registration names a descriptor
//! number, but it watches an open file: if that number was closed, or now
//! names another file (the program closed or dup'ed it after registering),
//! re-adding the number would watch the wrong thing. Each registration is
//! checked with `kcmp(KCMP_EPOLL_TFD)` (where the kernel lacks kcmp, by the
//! inode and device fdinfo gives for it); one that fails is recorded with
//! its state and named as not restorable (restart refuses it). So is an
//! epoll whose fdinfo is larger than the capture's buffer.
//!
//! Restore runs in the restarter, before the hand-over: [`restore`] makes
//! each epoll anew at its number (empty); [`register`], called once every
//! other descriptor is back, adds each registration again at the same
//! numbers. What the kernel does not show is lost: an edge-triggered
//! registration whose file is ready reports that edge once more, and a
//! one-shot registration that already fired is re-armed for `EPOLLERR`
//! and `EPOLLHUP` only (epoll_ctl always adds them).

use super::unrestorable::Why;
use super::{fds, CaptureBuffers, KstateError};
use crate::capture::sys;
use crate::image::codec::{CodecError, Decoder, Encoder};

/// The /proc/self/fd link of an epoll descriptor.
pub const LINK: &[u8] = b"anon_inode:[eventpoll]";

/// A registration's state at capture.
pub const TFD_SAME: u8 = 0;
/// Its descriptor number was closed.
pub const TFD_CLOSED: u8 = 1;
/// Its descriptor number now names another open file.
pub const TFD_OTHER: u8 = 2;
pub const TFD_STATES: u8 = 3;

/// `KCMP_EPOLL_TFD` (linux/kcmp.h).
const KCMP_EPOLL_TFD: libc::c_long = 7;

/// One registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registration {
    pub tfd: i32,
    pub events: u32,
    pub data: u64,
    /// [`TFD_SAME`], [`TFD_CLOSED`] or [`TFD_OTHER`].
    pub state: u8,
}

impl Registration {
    pub const ENCODED_LEN: usize = 17;
}

/// One epoll descriptor (KERNEL record, format 1.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Epoll {
    pub fd: i32,
    /// fdinfo `flags`: access mode, `O_NONBLOCK`, `O_CLOEXEC`.
    pub flags: u32,
    /// 1 if its fdinfo did not fit the capture's buffer (registrations are
    /// missing), 0 if every registration is listed.
    pub truncated: u8,
    pub registrations: Vec<Registration>,
}

impl Epoll {
    pub const MIN_ENCODED_LEN: usize = 13;

    pub fn encode(&self, e: &mut Encoder) -> Result<(), CodecError> {
        e.i32(self.fd)?;
        e.u32(self.flags)?;
        e.u8(self.truncated)?;
        e.u32(self.registrations.len() as u32)?;
        self.registrations.iter().try_for_each(|r| encode_reg(e, r))
    }

    pub fn decode(d: &mut Decoder) -> Result<Self, CodecError> {
        let fd = d.i32()?;
        let flags = d.u32()?;
        let truncated = d.u8()?;
        let n = d.count(Registration::ENCODED_LEN)?;
        let registrations = (0..n)
            .map(|_| {
                Ok(Registration {
                    tfd: d.i32()?,
                    events: d.u32()?,
                    data: d.u64()?,
                    state: d.u8()?,
                })
            })
            .collect::<Result<Vec<_>, CodecError>>()?;
        Ok(Epoll {
            fd,
            flags,
            truncated,
            registrations,
        })
    }

    /// Why it cannot come back as it was, one line per reason.
    pub fn problems(&self) -> Vec<String> {
        use super::unrestorable::sentence;
        let mut out = Vec::new();
        if self.truncated != 0 {
            out.push(sentence(self.fd, 0, Why::EpollTruncated));
        }
        for r in &self.registrations {
            match r.state {
                TFD_SAME => {}
                TFD_CLOSED => out.push(sentence(self.fd, r.tfd, Why::TfdClosed)),
                _ => out.push(sentence(self.fd, r.tfd, Why::TfdOther)),
            }
        }
        out
    }

    /// Lines of `inspect`: the epoll, then one per registration.
    pub fn describe(&self) -> Vec<String> {
        let mut out = vec![format!(
            "fd {} epoll {} registrations{}{}",
            self.fd,
            self.registrations.len(),
            if self.truncated == 0 {
                ""
            } else {
                " (incomplete)"
            },
            super::eventfd::flag_words(self.flags)
        )];
        for r in &self.registrations {
            out.push(format!(
                "  watches fd {} events {:#x}{}{} data {:#x}{}",
                r.tfd,
                r.events,
                if r.events & libc::EPOLLET as u32 != 0 {
                    " et"
                } else {
                    ""
                },
                if r.events & libc::EPOLLONESHOT as u32 != 0 {
                    " oneshot"
                } else {
                    ""
                },
                r.data,
                state_word(r.state)
            ));
        }
        out
    }
}

/// " (closed)", " (another file)" or "".
pub fn state_word(state: u8) -> &'static str {
    match state {
        TFD_SAME => "",
        TFD_CLOSED => " (closed)",
        _ => " (another file)",
    }
}

fn encode_reg(e: &mut Encoder, r: &Registration) -> Result<(), CodecError> {
    e.i32(r.tfd)?;
    e.u32(r.events)?;
    e.u64(r.data)?;
    e.u8(r.state)
}

/// Parses one `tfd:` line: (tfd, events, data, ino, sdev).
fn parse_line(line: &[u8]) -> Option<(i32, u32, u64, u64, u64)> {
    let after = |line: &'_ [u8], key: &[u8]| -> Option<usize> {
        line.windows(key.len())
            .position(|w| w == key)
            .map(|i| i + key.len())
    };
    let blanks = |s: &[u8]| s.iter().take_while(|c| **c == b' ' || **c == b'\t').count();
    let at = |key: &[u8]| after(line, key).map(|i| &line[i + blanks(&line[i..])..]);
    let tfd = sys::parse_u64(at(b"tfd:")?)?.0;
    let events = sys::parse_hex(at(b"events:")?)?.0;
    let data = sys::parse_hex(at(b"data:")?)?.0;
    let ino = at(b"ino:").and_then(sys::parse_hex).map_or(0, |v| v.0);
    let sdev = at(b"sdev:").and_then(sys::parse_hex).map_or(0, |v| v.0);
    Some((
        i32::try_from(tfd).ok()?,
        u32::try_from(events).ok()?,
        data,
        ino,
        sdev,
    ))
}

/// The watched number of a `tfd:` line (cheaper than [`parse_line`]).
fn tfd_of(line: &[u8]) -> Option<i32> {
    let rest = line.strip_prefix(b"tfd:")?;
    let skip = rest.iter().take_while(|c| **c == b' ').count();
    sys::parse_u64(&rest[skip..]).and_then(|(v, _)| i32::try_from(v).ok())
}

/// Whether the registration of `tfd` (the `toff`-th of that number) in
/// epoll `epfd` watches the file open at `tfd` now.
fn state_of(epfd: i32, tfd: i32, toff: u32, ino: u64, sdev: u64) -> u8 {
    let Ok(st) = sys::fstat(tfd) else {
        return TFD_CLOSED;
    };
    let slot: [u32; 3] = [epfd as u32, tfd as u32, toff];
    let pid = sys::getpid() as libc::c_long;
    // SAFETY: raw kcmp reading one struct kcmp_epoll_slot (three u32).
    let r = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            pid,
            pid,
            KCMP_EPOLL_TFD,
            tfd as libc::c_long,
            slot.as_ptr(),
        )
    };
    match r {
        0 => TFD_SAME,
        r if r > 0 => TFD_OTHER,
        // No kcmp here: the inode and device the kernel showed.
        _ if st.st_ino == ino && dev_matches(st.st_dev, sdev) => TFD_SAME,
        _ => TFD_OTHER,
    }
}

/// fdinfo's `sdev` is the kernel's dev_t (major << 20 | minor).
fn dev_matches(st_dev: u64, sdev: u64) -> bool {
    let (major, minor) = (libc::major(st_dev) as u64, libc::minor(st_dev) as u64);
    sdev == (major << 20) | minor
}

/// Encodes the count and every epoll descriptor not skipped. No allocation.
pub fn encode_all(
    e: &mut Encoder,
    bufs: &mut CaptureBuffers,
    skip_fd: &dyn Fn(i32) -> bool,
) -> Result<(), KstateError> {
    let at = e.reserve_u32()?;
    let mut count = 0u32;
    fds::for_each_linked(bufs, skip_fd, LINK, &|_| {}, |fd, info| {
        let (info, complete) = match info {
            Ok(info) => (info, true),
            Err(sys::Errno(libc::EFBIG)) => (&[][..], false),
            Err(errno) => {
                return Err(KstateError::Read {
                    what: "an epoll descriptor's fdinfo",
                    errno,
                })
            }
        };
        if !complete {
            super::unrestorable::note(fd, 0, Why::EpollTruncated);
        }
        e.i32(fd)?;
        e.u32(fds::info_flags(fd, info))?;
        e.u8(u8::from(!complete))?;
        let n_at = e.reserve_u32()?;
        let mut n = 0u32;
        let lines = || {
            info.split(|&c| c == b'\n')
                .filter(|l| l.starts_with(b"tfd:"))
        };
        for (i, line) in lines().enumerate() {
            let (tfd, events, data, ino, sdev) =
                parse_line(line).ok_or(KstateError::Parse("an epoll registration"))?;
            let toff = lines().take(i).filter(|l| tfd_of(l) == Some(tfd)).count() as u32;
            let state = state_of(fd, tfd, toff, ino, sdev);
            match state {
                TFD_CLOSED => super::unrestorable::note(fd, tfd, Why::TfdClosed),
                TFD_OTHER => super::unrestorable::note(fd, tfd, Why::TfdOther),
                _ => {}
            }
            encode_reg(
                e,
                &Registration {
                    tfd,
                    events,
                    data,
                    state,
                },
            )?;
            n += 1;
        }
        e.patch_u32(n_at, n);
        count += 1;
        Ok(())
    })?;
    e.patch_u32(at, count);
    Ok(())
}

/// Makes the epoll descriptor anew at its number, with no registration.
pub fn restore(ep: &Epoll) -> std::io::Result<()> {
    // SAFETY: epoll_create1 has no memory preconditions.
    let tmp = unsafe { libc::epoll_create1(ep.flags as i32 & libc::O_CLOEXEC) };
    if tmp >= 0 && ep.flags as i32 & libc::O_NONBLOCK != 0 {
        // SAFETY: F_SETFL on our descriptor.
        unsafe { libc::fcntl(tmp, libc::F_SETFL, libc::O_NONBLOCK) };
    }
    fds::install_at(tmp, ep.fd, ep.flags)
}

/// Adds the registrations again (every descriptor is back at its number);
/// returns what failed, one line each.
pub fn register(ep: &Epoll) -> Vec<String> {
    let mut failed = Vec::new();
    for r in ep.registrations.iter().filter(|r| r.state == TFD_SAME) {
        let mut ev = libc::epoll_event {
            events: r.events,
            u64: r.data,
        };
        // SAFETY: epoll_ctl reads one epoll_event.
        if unsafe { libc::epoll_ctl(ep.fd, libc::EPOLL_CTL_ADD, r.tfd, &mut ev) } != 0 {
            failed.push(format!(
                "fd {} epoll: cannot watch fd {} again: {}",
                ep.fd,
                r.tfd,
                std::io::Error::last_os_error()
            ));
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_lines_parse() {
        let line = b"tfd:        3 events: 80000019 data:             1234  pos:0 ino:40e sdev:10";
        assert_eq!(
            parse_line(line),
            Some((3, 0x8000_0019, 0x1234, 0x40e, 0x10))
        );
        assert_eq!(parse_line(b"tfd: x events: 1 data: 2"), None);
    }

    #[test]
    fn registrations_come_back_and_a_closed_number_is_marked() {
        // SAFETY: test descriptors and registrations with valid events.
        let (ep, ready, gone) = unsafe {
            let ep = libc::epoll_create1(0);
            let ready = libc::eventfd(1, 0);
            let gone = libc::eventfd(0, 0);
            for (fd, events, data) in [
                (ready, libc::EPOLLIN as u32 | libc::EPOLLET as u32, 0xabcd),
                (gone, libc::EPOLLIN as u32, 7),
            ] {
                let mut ev = libc::epoll_event { events, u64: data };
                assert_eq!(libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev), 0);
            }
            // Still registered (a copy keeps the file open), number closed.
            let copy = libc::dup(gone);
            libc::close(gone);
            (ep, ready, copy)
        };
        let out = super::super::captured(|e, bufs| encode_all(e, bufs, &|x| x != ep));
        let mut d = Decoder::new(&out);
        assert_eq!(d.u32().unwrap(), 1);
        let got = Epoll::decode(&mut d).unwrap();
        assert_eq!(got.registrations.len(), 2);
        let r = got.registrations.iter().find(|r| r.data == 0xabcd).unwrap();
        assert_eq!((r.tfd, r.state), (ready, TFD_SAME));
        assert_ne!(r.events & libc::EPOLLET as u32, 0);
        let stale = got.registrations.iter().find(|r| r.data == 7).unwrap();
        // Closed, or already reused by a test running alongside.
        assert_ne!(stale.state, TFD_SAME);
        assert_eq!(got.problems().len(), 1, "{:?}", got.problems());
        let back = Epoll { fd: 974, ..got };
        restore(&back).unwrap();
        assert!(register(&back).is_empty());
        // SAFETY: waiting on the restored epoll; closing the test's fds.
        unsafe {
            let mut ev = libc::epoll_event { events: 0, u64: 0 };
            assert_eq!(libc::epoll_wait(974, &mut ev, 1, 0), 1);
            let data = ev.u64;
            assert_eq!(data, 0xabcd);
            for fd in [ep, ready, gone, 974] {
                libc::close(fd);
            }
        }
    }
}
