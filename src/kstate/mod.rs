//! Kernel-side state of the process that is not in its memory: signal
//! dispositions, open files, cwd and umask, the mm layout (brk, stack,
//! arguments, auxv), the interval timers, the signals pending for the
//! process, the event and timer descriptors (eventfd, timerfd, signalfd,
//! epoll: one file each), and the object list's kinds (pipes and FIFOs,
//! deleted-but-open files, message queues, file locks, pseudo-terminals,
//! other processes' /proc files: one file each).
//!
//! Capture (`encode_kernel_record`) runs while the program's threads are
//! suspended: it reads /proc and issues raw system calls into fixed buffers
//! and must never allocate. Restore helpers run in the restarter, before the
//! hand-over, and are ordinary Rust.

pub mod credentials;
pub mod deleted;
pub mod deleted_dir;
pub mod descriptions;
pub mod epoll;
pub mod eventfd;
pub mod fds;
pub mod fown;
pub mod inotify;
pub mod itimers;
pub mod locks;
pub mod memfd;
pub mod mm;
pub mod mqueue;
pub mod objects;
pub mod pending;
pub mod pidfd;
pub mod pipes;
pub mod posix_timers;
pub mod process_attrs;
pub mod procfs;
pub mod pty;
pub mod rlimits;
pub mod sched;
pub mod sigactions;
pub mod siginfo;
pub mod signalfd;
pub mod sockdiag;
pub mod sockets;
pub mod sysvipc;
pub mod sysvshm;
pub mod timerfd;
pub mod unknown_fds;
pub mod unrestorable;
pub mod vmflags;

use crate::capture::sys;
use crate::image::codec::{CodecError, Decoder, Encoder};
use crate::image::format::{
    EVENT_FDS_SINCE_MINOR, ITIMERS_SINCE_MINOR, OBJECTS_SINCE_MINOR, PENDING_SIGNALS_SINCE_MINOR,
};
use crate::image::model::{FdEntry, IntervalTimers, ProcessState, SigAction, SignalSet};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum KstateError {
    #[error("cannot read {what}: {errno}")]
    Read {
        what: &'static str,
        errno: sys::Errno,
    },
    #[error("cannot parse {0}")]
    Parse(&'static str),
    #[error("cannot capture a pipe's contents: {0}")]
    Pipe(&'static str),
    #[error("cannot capture the process's deleted files: {0}")]
    Files(&'static str),
    #[error("kernel state does not fit the record buffer: {0}")]
    Encode(#[from] CodecError),
}

/// Fixed buffers the capture reads /proc files into.
pub struct CaptureBuffers<'a> {
    pub text: &'a mut [u8],
    pub path: &'a mut [u8],
    pub auxv: &'a mut [u8],
    pub cwd: &'a mut [u8],
    /// A forked checkpoint's survey of the mapping flags (`vmflags`).
    pub surveyed: Option<vmflags::SurveyInPause<'a>>,
    /// Set by the capture when it took the mapping flags from `surveyed`
    /// (the forked child then checks them).
    pub flags_from_survey: bool,
}

/// Encodes the KERNEL record payload: process state, sigactions, fds,
/// pipe contents, interval timers, the process's pending signals.
/// `skip_fd` tells which descriptors are
/// selfckpt's own (left out).
pub fn encode_kernel_record(
    e: &mut Encoder,
    bufs: &mut CaptureBuffers,
    skip_fd: &dyn Fn(i32) -> bool,
) -> Result<(), KstateError> {
    let cwd_len =
        sys::readlink(b"/proc/thread-self/cwd\0", bufs.cwd).map_err(|errno| KstateError::Read {
            what: "/proc/self/cwd",
            errno,
        })?;
    let auxv_len = sys::read_file(b"/proc/thread-self/auxv\0", bufs.auxv).map_err(|errno| {
        KstateError::Read {
            what: "/proc/self/auxv",
            errno,
        }
    })?;
    let umask = mm::read_umask(bufs.text)?;
    let layout = mm::read_layout(bufs.text)?;
    ProcessState {
        cwd: &bufs.cwd[..cwd_len],
        umask,
        mm: layout,
        auxv: &bufs.auxv[..auxv_len],
    }
    .encode(e)?;
    sigactions::encode_all(e)?;
    fds::encode_all(e, bufs, skip_fd)?;
    fds::encode_pipe_contents(e, skip_fd)?;
    itimers::capture()?.encode(e)?;
    siginfo::take_late(pending::machinery());
    pending::shared(bufs.text)?.encode(e)?;
    EventObjects::capture(e, bufs, skip_fd)?;
    capture_objects(e, bufs, skip_fd)
}

/// The tagged object list (format 1.8): each kind's capture half writes
/// its entries, then the list's end. No allocation.
fn capture_objects(
    e: &mut Encoder,
    bufs: &mut CaptureBuffers,
    skip_fd: &dyn Fn(i32) -> bool,
) -> Result<(), KstateError> {
    pipes::capture(e, bufs, skip_fd)?;
    mqueue::capture(e, bufs, skip_fd)?;
    deleted::capture(e, bufs, skip_fd)?;
    sockets::capture(e, bufs, skip_fd)?;
    memfd::capture(e, bufs, skip_fd)?;
    sysvshm::capture(e, bufs)?;
    sysvipc::capture(e, bufs)?;
    posix_timers::capture(e, bufs)?;
    rlimits::capture(e)?;
    process_attrs::capture(e, bufs)?;
    credentials::capture(e, bufs)?;
    sched::capture(e)?;
    siginfo::capture(e)?;
    inotify::capture(e, bufs, skip_fd)?;
    locks::capture(e, bufs, skip_fd)?;
    pty::capture(e, bufs, skip_fd)?;
    fown::capture(e, skip_fd)?;
    descriptions::capture(e, bufs, skip_fd)?;
    vmflags::capture(e, bufs)?;
    procfs::capture(e, bufs, skip_fd)?;
    pidfd::capture(e, bufs, skip_fd)?;
    // Last: what no module above brings back is named.
    unknown_fds::capture(e, bufs, skip_fd)?;
    objects::end(e)?;
    Ok(())
}

/// The event and timer descriptors (KERNEL record, format 1.6): made anew
/// at restart at their numbers, each by its own module.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventObjects {
    pub eventfds: Vec<eventfd::EventFd>,
    pub timerfds: Vec<timerfd::TimerFd>,
    pub signalfds: Vec<signalfd::SignalFd>,
    pub epolls: Vec<epoll::Epoll>,
}

impl EventObjects {
    /// Encodes the four lists straight from the kernel. No allocation.
    fn capture(
        e: &mut Encoder,
        bufs: &mut CaptureBuffers,
        skip_fd: &dyn Fn(i32) -> bool,
    ) -> Result<(), KstateError> {
        unrestorable::clear();
        eventfd::encode_all(e, bufs, skip_fd)?;
        timerfd::encode_all(e, bufs, skip_fd)?;
        signalfd::encode_all(e, bufs, skip_fd)?;
        epoll::encode_all(e, bufs, skip_fd)
    }

    pub fn encode(&self, e: &mut Encoder) -> Result<(), CodecError> {
        e.u32(self.eventfds.len() as u32)?;
        self.eventfds.iter().try_for_each(|x| x.encode(e))?;
        e.u32(self.timerfds.len() as u32)?;
        self.timerfds.iter().try_for_each(|x| x.encode(e))?;
        e.u32(self.signalfds.len() as u32)?;
        self.signalfds.iter().try_for_each(|x| x.encode(e))?;
        e.u32(self.epolls.len() as u32)?;
        self.epolls.iter().try_for_each(|x| x.encode(e))
    }

    pub fn decode(d: &mut Decoder) -> Result<Self, CodecError> {
        let n = d.count(eventfd::EventFd::ENCODED_LEN)?;
        let eventfds = (0..n)
            .map(|_| eventfd::EventFd::decode(d))
            .collect::<Result<_, _>>()?;
        let n = d.count(timerfd::TimerFd::ENCODED_LEN)?;
        let timerfds = (0..n)
            .map(|_| timerfd::TimerFd::decode(d))
            .collect::<Result<_, _>>()?;
        let n = d.count(signalfd::SignalFd::ENCODED_LEN)?;
        let signalfds = (0..n)
            .map(|_| signalfd::SignalFd::decode(d))
            .collect::<Result<_, _>>()?;
        let n = d.count(epoll::Epoll::MIN_ENCODED_LEN)?;
        let epolls = (0..n)
            .map(|_| epoll::Epoll::decode(d))
            .collect::<Result<_, _>>()?;
        Ok(EventObjects {
            eventfds,
            timerfds,
            signalfds,
            epolls,
        })
    }

    /// Every descriptor number these objects hold.
    pub fn fds(&self) -> Vec<i32> {
        let mut v: Vec<i32> = self.eventfds.iter().map(|x| x.fd).collect();
        v.extend(self.timerfds.iter().map(|x| x.fd));
        v.extend(self.signalfds.iter().map(|x| x.fd));
        v.extend(self.epolls.iter().map(|x| x.fd));
        v
    }

    /// What cannot come back as it was, one per object or registration,
    /// as the image says (the checkpoint saw it so).
    pub fn problems(&self) -> Vec<Problem> {
        let mut v: Vec<Problem> = self
            .eventfds
            .iter()
            .filter_map(|x| x.problem())
            .map(|t| Problem::new("eventfd", t))
            .collect();
        v.extend(
            self.epolls
                .iter()
                .flat_map(|x| x.problems())
                .map(|t| Problem::new("epoll", t)),
        );
        v
    }

    /// What cannot come back on this machine: [`Self::problems`] and the
    /// timerfds with unread expirations this kernel cannot give back.
    pub fn problems_here(&self) -> Vec<Problem> {
        let mut v = self.problems();
        if self.timerfds.iter().any(|t| t.ticks > 0) && !timerfd::ticks_settable() {
            v.extend(self.timerfds.iter().filter(|t| t.ticks > 0).map(|t| {
                Problem::new("timerfd", format!(
                    "fd {} timerfd: {} unread expirations, which this kernel cannot give back (no TFD_IOC_SET_TICKS)",
                    t.fd, t.ticks
                ))
            }));
        }
        v
    }

    /// Lines of `inspect`, one per object (and registration).
    pub fn describe(&self) -> Vec<String> {
        let mut v: Vec<String> = self.eventfds.iter().map(|x| x.describe()).collect();
        v.extend(self.timerfds.iter().map(|x| x.describe()));
        v.extend(self.signalfds.iter().map(|x| x.describe()));
        v.extend(self.epolls.iter().flat_map(|x| x.describe()));
        v
    }

    /// Makes every object anew at its number, then adds the epoll
    /// registrations (call once every other descriptor is back). Returns
    /// what failed, one line each (a timerfd whose expirations cannot be
    /// given back stays, without them; anything else that fails leaves its
    /// number free). What the image marks as not restorable (a stale
    /// registration) is left out: `restore` refused it unless told to
    /// restart with fresh stand-ins.
    pub fn restore(&self) -> Vec<String> {
        let mut failed = Vec::new();
        let mut note = |what: &str, fd: i32, r: std::io::Result<()>| {
            if let Err(e) = r {
                // SAFETY: F_GETFD only asks whether the number is open.
                let there = unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0;
                let how = if there { "" } else { "cannot be made anew: " };
                failed.push(format!("fd {fd} {what}: {how}{e}"));
            }
        };
        for x in &self.eventfds {
            note("eventfd", x.fd, eventfd::restore(x));
        }
        for x in &self.timerfds {
            note("timerfd", x.fd, timerfd::restore(x));
        }
        for x in &self.signalfds {
            note("signalfd", x.fd, signalfd::restore(x));
        }
        for x in &self.epolls {
            note("epoll", x.fd, epoll::restore(x));
        }
        for x in &self.epolls {
            failed.extend(epoll::register(x));
        }
        failed
    }
}

/// Something an image holds that a restart cannot bring back as it was:
/// the kind `restart --unrestorable=KIND` names to accept its stand-in,
/// and a sentence naming the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub kind: String,
    pub text: String,
    /// The descriptor it is about, where it is about one.
    pub fd: Option<i32>,
}

impl Problem {
    pub fn new(kind: &str, text: String) -> Self {
        Problem {
            kind: kind.to_string(),
            text,
            fd: None,
        }
    }

    /// The same, about descriptor `fd`.
    pub fn of_fd(self, fd: i32) -> Self {
        Problem {
            fd: (fd >= 0).then_some(fd),
            ..self
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// What `f` encodes with fresh capture buffers (unit tests of the capture
/// halves).
#[cfg(test)]
pub(crate) fn captured(
    f: impl FnOnce(&mut Encoder, &mut CaptureBuffers) -> Result<(), KstateError>,
) -> Vec<u8> {
    captured_surveyed(None, f).0
}

/// [`captured`] with a forked checkpoint's survey of the mapping flags.
#[cfg(test)]
pub(crate) fn captured_surveyed(
    surveyed: Option<vmflags::SurveyInPause>,
    f: impl FnOnce(&mut Encoder, &mut CaptureBuffers) -> Result<(), KstateError>,
) -> (Vec<u8>, bool) {
    let mut out = vec![0u8; 1 << 16];
    let (mut t, mut p) = (vec![0u8; 65536], vec![0u8; 4096]);
    let (mut a, mut c) = ([0u8; 16], [0u8; 16]);
    let mut bufs = CaptureBuffers {
        text: &mut t,
        path: &mut p,
        auxv: &mut a,
        cwd: &mut c,
        surveyed,
        flags_from_survey: false,
    };
    let mut e = Encoder::new(&mut out);
    f(&mut e, &mut bufs).unwrap();
    let from_survey = bufs.flags_from_survey;
    let n = e.len();
    out.truncate(n);
    (out, from_survey)
}

/// What was queued in a pipe the process reads from (KERNEL record,
/// format 1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipeContents<'a> {
    /// The pipe's inode (the `FileStamp::ino` of its descriptors).
    pub ino: u64,
    pub data: &'a [u8],
}

/// The KERNEL record, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelState<'a> {
    pub process: ProcessState<'a>,
    pub sigactions: Vec<SigAction>,
    pub fds: Vec<FdEntry<'a>>,
    /// Format 1.1; empty in a 1.0 image.
    pub pipes: Vec<PipeContents<'a>>,
    /// Format 1.3; all disarmed in older images.
    pub itimers: IntervalTimers,
    /// Format 1.4: signals pending for the whole process; empty in older
    /// images.
    pub pending: SignalSet,
    /// Format 1.6: the event and timer descriptors; none in older images.
    pub events: EventObjects,
    /// Format 1.8: the tagged object list; empty in older images.
    pub objects: objects::Objects,
}

impl<'a> KernelState<'a> {
    /// What a restart here refuses (before `--unrestorable` accepts any):
    /// [`Self::problems_here`] but those about descriptors in `shared`
    /// (a tree restart makes them again: pipes, sockets, files the members
    /// share) and those about a terminal from outside (a restart gives the
    /// restarter's; `tree_ptys`: the descriptors of ptys a tree restart
    /// makes, whose queued bytes are refused like a process's own).
    pub fn refused_here(&self, shared: &[i32], tree_ptys: &[i32]) -> Vec<Problem> {
        let outside_tty = |fd: i32| {
            !tree_ptys.contains(&fd)
                && self
                    .objects
                    .ptys()
                    .any(|x| !x.ours() && x.ends.iter().any(|e| e.fd == fd))
        };
        self.problems_here()
            .into_iter()
            // (The tree makes those again, but without their owner.)
            .filter(|p| p.kind == fown::KIND || !p.fd.is_some_and(|fd| shared.contains(&fd)))
            .filter(|p| p.kind != pty::KIND || !p.fd.is_some_and(outside_tty))
            .collect()
    }

    /// What the checkpoint saw cannot come back: the event descriptors'
    /// and the object list's.
    pub fn problems(&self) -> Vec<Problem> {
        let mut v = self.events.problems();
        v.extend(self.objects.problems());
        v
    }

    /// What cannot come back on this machine.
    pub fn problems_here(&self) -> Vec<Problem> {
        let mut v = self.events.problems_here();
        v.extend(self.objects.problems_here());
        v
    }

    /// Encodes the record as this build writes it (the checkpoint itself
    /// encodes straight from the kernel: `encode_kernel_record`).
    pub fn encode(&self, e: &mut Encoder) -> Result<(), CodecError> {
        self.process.encode(e)?;
        e.u32(self.sigactions.len() as u32)?;
        self.sigactions.iter().try_for_each(|s| s.encode(e))?;
        e.u32(self.fds.len() as u32)?;
        self.fds.iter().try_for_each(|f| f.encode(e))?;
        e.u32(self.pipes.len() as u32)?;
        self.pipes.iter().try_for_each(|p| {
            e.u64(p.ino)?;
            e.bytes(p.data)
        })?;
        self.itimers.encode(e)?;
        self.pending.encode(e)?;
        self.events.encode(e)?;
        self.objects.encode(e)
    }

    /// Decodes the record of an image of format minor `minor`: pipe
    /// contents may be there from 1.1 on (they are optional before 1.3,
    /// required from then on, like the interval timers that follow them);
    /// from 1.4 on the process's pending signals follow, from 1.6 on the
    /// event and timer descriptors, from 1.8 on the tagged object list ends
    /// the record.
    pub fn decode(d: &mut Decoder<'a>, minor: u16) -> Result<Self, CodecError> {
        let process = ProcessState::decode(d)?;
        let n = d.count(SigAction::ENCODED_LEN)?;
        let sigactions = (0..n)
            .map(|_| SigAction::decode(d))
            .collect::<Result<Vec<_>, _>>()?;
        let n = d.count(FdEntry::MIN_ENCODED_LEN)?;
        let fds = (0..n)
            .map(|_| FdEntry::decode(d))
            .collect::<Result<Vec<_>, _>>()?;
        let with_itimers = minor >= ITIMERS_SINCE_MINOR;
        let mut pipes = Vec::new();
        if with_itimers || d.remaining() > 0 {
            let n = d.count(12)?;
            for _ in 0..n {
                pipes.push(PipeContents {
                    ino: d.u64()?,
                    data: d.bytes()?,
                });
            }
        }
        let itimers = if with_itimers {
            IntervalTimers::decode(d)?
        } else {
            IntervalTimers::default()
        };
        let pending = if minor >= PENDING_SIGNALS_SINCE_MINOR {
            SignalSet::decode(d)?
        } else {
            SignalSet::EMPTY
        };
        let events = if minor >= EVENT_FDS_SINCE_MINOR {
            EventObjects::decode(d)?
        } else {
            EventObjects::default()
        };
        let objects = if minor >= OBJECTS_SINCE_MINOR {
            objects::Objects::decode(d)?
        } else {
            objects::Objects::default()
        };
        d.finish()?;
        Ok(KernelState {
            process,
            sigactions,
            fds,
            pipes,
            itimers,
            pending,
            events,
            objects,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::model::{FileStamp, IntervalTimer, MmLayout, TimeVal, TimerKind};

    /// A KERNEL record with one of everything, the real timer periodic.
    fn kernel() -> KernelState<'static> {
        let mut itimers = IntervalTimers::default();
        itimers.0[TimerKind::Real as usize] = IntervalTimer {
            interval: TimeVal {
                sec: 0,
                usec: 200_000,
            },
            value: TimeVal {
                sec: 0,
                usec: 150_000,
            },
        };
        itimers.0[TimerKind::Prof as usize].value = TimeVal { sec: 3, usec: 7 };
        KernelState {
            process: ProcessState {
                cwd: b"/tmp",
                umask: 0o22,
                mm: MmLayout::default(),
                auxv: &[0; 16],
            },
            sigactions: vec![SigAction {
                signo: 14,
                handler: 0x1000,
                ..SigAction::default()
            }],
            fds: vec![FdEntry {
                fd: 3,
                kind: 1,
                flags: 0,
                offset: 5,
                path: b"/tmp/x",
                stamp: FileStamp::default(),
            }],
            pipes: vec![PipeContents {
                ino: 9,
                data: b"queued",
            }],
            itimers,
            pending: SignalSet::EMPTY.with(libc::SIGUSR2).with(34),
            events: EventObjects::default(),
            objects: objects::Objects::default(),
        }
    }

    /// The record as a 1.6 or 1.7 image has it: without the (empty)
    /// object list's END entry.
    fn encoded_v16(k: &KernelState) -> Vec<u8> {
        let mut b = encoded(k);
        b.truncate(b.len() - 8);
        b
    }

    fn encoded(k: &KernelState) -> Vec<u8> {
        let mut buf = vec![0u8; 4096];
        let mut e = Encoder::new(&mut buf);
        k.encode(&mut e).unwrap();
        let n = e.len();
        buf.truncate(n);
        buf
    }

    #[test]
    fn kernel_round_trips_with_interval_timers_and_pending_signals() {
        let k = kernel();
        let buf = encoded(&k);
        let mut d = Decoder::new(&buf);
        assert_eq!(KernelState::decode(&mut d, 8).unwrap(), k);
        assert_eq!(d.remaining(), 0);
        let v16 = encoded_v16(&k);
        assert_eq!(KernelState::decode(&mut Decoder::new(&v16), 7).unwrap(), k);
    }

    #[test]
    fn kernel_from_1_8_ends_with_the_object_list() {
        let k = KernelState {
            objects: objects::Objects {
                items: vec![objects::Object::NotRestorable(objects::NotRestorable {
                    fd: 4,
                    kind: "socket".into(),
                    text: "socket".into(),
                })],
            },
            ..kernel()
        };
        let buf = encoded(&k);
        assert_eq!(KernelState::decode(&mut Decoder::new(&buf), 8).unwrap(), k);
        // A 1.8 record without the list, and a 1.7 one with it.
        let v17 = encoded_v16(&kernel());
        assert!(KernelState::decode(&mut Decoder::new(&v17), 8).is_err());
        assert!(matches!(
            KernelState::decode(&mut Decoder::new(&buf), 7),
            Err(CodecError::Trailing { .. })
        ));
    }

    #[test]
    fn kernel_before_1_3_has_timers_disarmed_and_a_1_3_kernel_needs_them() {
        let v16 = encoded_v16(&kernel());
        // Up to the pending signals (1.4 and 1.5): without the (empty)
        // event descriptors' four counts.
        let full = &v16[..v16.len() - 16];
        let with = &full[..full.len() - SignalSet::ENCODED_LEN];
        let without = &with[..with.len() - IntervalTimers::ENCODED_LEN];
        let old = KernelState {
            itimers: IntervalTimers::default(),
            pending: SignalSet::EMPTY,
            ..kernel()
        };
        for minor in [1, 2] {
            let got = KernelState::decode(&mut Decoder::new(without), minor).unwrap();
            assert_eq!(got, old, "1.{minor}");
            // A 1.2 KERNEL with the timers is one with trailing bytes.
            assert!(matches!(
                KernelState::decode(&mut Decoder::new(with), minor),
                Err(CodecError::Trailing { .. })
            ));
        }
        // 1.0: no pipe list either.
        let bare = &without[..without.len() - (4 + 8 + 4 + 6)];
        let got = KernelState::decode(&mut Decoder::new(bare), 0).unwrap();
        assert_eq!(
            got,
            KernelState {
                pipes: Vec::new(),
                ..old
            }
        );
        // 1.3: the pipe list and the timers are required.
        for (name, short) in [
            ("no timers", without),
            ("half the timers", &with[..with.len() - 36]),
            ("no pipe list", bare),
        ] {
            assert!(
                matches!(
                    KernelState::decode(&mut Decoder::new(short), 3),
                    Err(CodecError::Truncated { .. })
                ),
                "{name}"
            );
        }
    }

    #[test]
    fn kernel_before_1_4_has_no_pending_signals_and_a_1_4_kernel_needs_them() {
        let v16 = encoded_v16(&kernel());
        // Up to the pending signals (1.4 and 1.5): without the (empty)
        // event descriptors' four counts.
        let full = &v16[..v16.len() - 16];
        let v13 = &full[..full.len() - SignalSet::ENCODED_LEN];
        let got = KernelState::decode(&mut Decoder::new(v13), 3).unwrap();
        assert_eq!(
            got,
            KernelState {
                pending: SignalSet::EMPTY,
                ..kernel()
            }
        );
        // A 1.3 KERNEL with the set is one with trailing bytes.
        assert!(matches!(
            KernelState::decode(&mut Decoder::new(full), 3),
            Err(CodecError::Trailing { .. })
        ));
        for short in [v13, &full[..full.len() - 4]] {
            assert!(matches!(
                KernelState::decode(&mut Decoder::new(short), 4),
                Err(CodecError::Truncated { .. })
            ));
        }
    }
}
