//! The items an image holds, with their encoding.
//!
//! Every type borrows its strings (`&[u8]`), so the checkpoint side can
//! encode straight from scratch buffers while other threads are suspended
//! (no allocation), and the reader can decode without copying.
//! The one owned field is END's list of bytes present per region: the
//! reader collects it, the writer hands its figures to
//! `EndRecord::encode_with_present` from its own table instead.
//! The layout of each item is specified in docs/IMAGE_FORMAT.md; the order
//! of `encode` and `decode` below is that layout.

use super::codec::{CodecError, Decoder, Encoder};

/// File identity used to detect that a file changed since the checkpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileStamp {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i64,
    pub mode: u32,
}

impl FileStamp {
    pub const ENCODED_LEN: usize = 8 * 4 + 4;

    pub fn from_stat(st: &libc::stat) -> Self {
        FileStamp {
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size as u64,
            mtime_ns: st.st_mtime.saturating_mul(1_000_000_000) + st.st_mtime_nsec,
            mode: st.st_mode,
        }
    }

    /// Same file, unchanged content by size and mtime. The device number is
    /// not compared: it can change across reboots for the same filesystem.
    pub fn same_content(&self, other: &FileStamp) -> bool {
        self.ino == other.ino && self.size == other.size && self.mtime_ns == other.mtime_ns
    }

    fn encode(&self, e: &mut Encoder) -> Result<(), CodecError> {
        e.u64(self.dev)?;
        e.u64(self.ino)?;
        e.u64(self.size)?;
        e.u64(self.mtime_ns as u64)?;
        e.u32(self.mode)
    }

    fn decode(d: &mut Decoder) -> Result<Self, CodecError> {
        Ok(FileStamp {
            dev: d.u64()?,
            ino: d.u64()?,
            size: d.u64()?,
            mtime_ns: d.u64()? as i64,
            mode: d.u32()?,
        })
    }
}

/// Record META: what was checkpointed, where and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta<'a> {
    pub created_unix_ns: u64,
    pub pid: u32,
    pub sequence: u64,
    pub kernel_release: &'a [u8],
    pub hostname: &'a [u8],
    pub selfckpt_version: &'a [u8],
    pub exe_path: &'a [u8],
    pub exe_build_id: &'a [u8],
    pub exe_stamp: FileStamp,
    /// XCR0 (enabled XSAVE features) on x86_64; 0 elsewhere.
    pub cpu_xfeatures: u64,
    /// Address of the restart entry function inside the image.
    pub restart_entry: u64,
    /// Address of the library's restart mailbox inside the image.
    pub restart_mailbox: u64,
    /// How many times the process had been restarted when the image was taken.
    pub restarts: u64,
    /// How its latest restart kept process and thread ids
    /// (`capture::park::Identity`: 0 never restarted, 1 exact, 2 new ids).
    pub identity: u32,
    /// Layout version of the library's restart mailbox
    /// (`restorer_abi::MAILBOX_LAYOUT`; format 1.5). `None` in an older
    /// image, which stands for `format::MAILBOX_LAYOUT_UNRECORDED`.
    pub mailbox_layout: Option<u32>,
    /// The process's place in its session and process group at the
    /// checkpoint (format 1.7; `None` in an older image): [`SESSION_MEMBER`],
    /// [`GROUP_LEADER`] or [`SESSION_LEADER`].
    pub session_role: Option<u8>,
    /// The parent reference (format 1.9; `None` in an older image): an
    /// empty name in a full image. [`Meta::parent_image`] gives the parent
    /// of an incremental one.
    pub parent: Option<ParentRef<'a>>,
}

/// What an incremental image's META says of its parent: the parent's file
/// name (in the same directory) and the checksum of its END record's
/// framing, which names exactly one image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParentRef<'a> {
    pub name: &'a [u8],
    pub end_checksum: u64,
}

/// `Meta::session_role`: in another process's group.
pub const SESSION_MEMBER: u8 = 0;
/// `Meta::session_role`: the leader of its process group, not of its
/// session.
pub const GROUP_LEADER: u8 = 1;
/// `Meta::session_role`: the leader of its session (and so of its group).
pub const SESSION_LEADER: u8 = 2;

impl<'a> Meta<'a> {
    pub fn encode(&self, e: &mut Encoder) -> Result<(), CodecError> {
        e.u64(self.created_unix_ns)?;
        e.u32(self.pid)?;
        e.u64(self.sequence)?;
        e.bytes(self.kernel_release)?;
        e.bytes(self.hostname)?;
        e.bytes(self.selfckpt_version)?;
        e.bytes(self.exe_path)?;
        e.bytes(self.exe_build_id)?;
        self.exe_stamp.encode(e)?;
        e.u64(self.cpu_xfeatures)?;
        e.u64(self.restart_entry)?;
        e.u64(self.restart_mailbox)?;
        e.u64(self.restarts)?;
        e.u32(self.identity)?;
        if let Some(layout) = self.mailbox_layout {
            e.u32(layout)?;
        }
        if let Some(role) = self.session_role {
            e.u8(role)?;
        }
        if let Some(p) = self.parent {
            e.bytes(p.name)?;
            e.u64(p.end_checksum)?;
        }
        Ok(())
    }

    /// The parent of an incremental image; None for a full one.
    pub fn parent_image(&self) -> Option<ParentRef<'a>> {
        self.parent.filter(|p| !p.name.is_empty())
    }

    /// Decodes the record of an image of format minor `minor`: the mailbox
    /// layout is there from 1.5 on (and only then).
    pub fn decode(d: &mut Decoder<'a>, minor: u16) -> Result<Self, CodecError> {
        Ok(Meta {
            created_unix_ns: d.u64()?,
            pid: d.u32()?,
            sequence: d.u64()?,
            kernel_release: d.bytes()?,
            hostname: d.bytes()?,
            selfckpt_version: d.bytes()?,
            exe_path: d.bytes()?,
            exe_build_id: d.bytes()?,
            exe_stamp: FileStamp::decode(d)?,
            cpu_xfeatures: d.u64()?,
            restart_entry: d.u64()?,
            restart_mailbox: d.u64()?,
            // Added in format 1.1: absent from 1.0 records.
            restarts: if d.remaining() > 0 { d.u64()? } else { 0 },
            identity: if d.remaining() > 0 { d.u32()? } else { 0 },
            mailbox_layout: if minor >= super::format::MAILBOX_LAYOUT_SINCE_MINOR {
                Some(d.u32()?)
            } else {
                None
            },
            session_role: if minor >= super::format::SESSION_ROLE_SINCE_MINOR {
                Some(d.u8()?)
            } else {
                None
            },
            parent: if minor >= super::format::PARENT_SINCE_MINOR {
                Some(ParentRef {
                    name: d.bytes()?,
                    end_checksum: d.u64()?,
                })
            } else {
                None
            },
        })
    }
}

/// One entry of record REGIONS: a mapping of the address space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region<'a> {
    pub start: u64,
    pub end: u64,
    /// PROT_* bits.
    pub prot: u32,
    /// `RegionKind` as u32 (see `maps::RegionKind`).
    pub kind: u32,
    /// File offset of `start` for file mappings.
    pub offset: u64,
    /// Path (file mappings) or name (`[heap]`, `[stack]`, ...); may be empty.
    pub path: &'a [u8],
    /// Identity of the mapped file (all zero when there is none).
    pub stamp: FileStamp,
}

impl<'a> Region<'a> {
    pub const MIN_ENCODED_LEN: usize = 8 * 3 + 4 * 3 + FileStamp::ENCODED_LEN;

    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    pub fn encode(&self, e: &mut Encoder) -> Result<(), CodecError> {
        e.u64(self.start)?;
        e.u64(self.end)?;
        e.u32(self.prot)?;
        e.u32(self.kind)?;
        e.u64(self.offset)?;
        e.bytes(self.path)?;
        self.stamp.encode(e)
    }

    pub fn decode(d: &mut Decoder<'a>) -> Result<Self, CodecError> {
        Ok(Region {
            start: d.u64()?,
            end: d.u64()?,
            prot: d.u32()?,
            kind: d.u32()?,
            offset: d.u64()?,
            path: d.bytes()?,
            stamp: FileStamp::decode(d)?,
        })
    }
}

/// A signal disposition as the kernel's `rt_sigaction` sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SigAction {
    pub signo: u32,
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

impl SigAction {
    pub const ENCODED_LEN: usize = 4 + 8 * 4;
    pub fn encode(&self, e: &mut Encoder) -> Result<(), CodecError> {
        e.u32(self.signo)?;
        e.u64(self.handler)?;
        e.u64(self.flags)?;
        e.u64(self.restorer)?;
        e.u64(self.mask)
    }
    pub fn decode(d: &mut Decoder) -> Result<Self, CodecError> {
        Ok(SigAction {
            signo: d.u32()?,
            handler: d.u64()?,
            flags: d.u64()?,
            restorer: d.u64()?,
            mask: d.u64()?,
        })
    }
}

/// What kind of object an open file descriptor refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum FdKind {
    Regular = 1,
    Directory = 2,
    CharDevice = 3,
    Pipe = 4,
    Socket = 5,
    Other = 6,
}

impl FdKind {
    pub fn from_u32(v: u32) -> Option<FdKind> {
        Some(match v {
            1 => FdKind::Regular,
            2 => FdKind::Directory,
            3 => FdKind::CharDevice,
            4 => FdKind::Pipe,
            5 => FdKind::Socket,
            6 => FdKind::Other,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            FdKind::Regular => "file",
            FdKind::Directory => "dir",
            FdKind::CharDevice => "chardev",
            FdKind::Pipe => "pipe",
            FdKind::Socket => "socket",
            FdKind::Other => "other",
        }
    }
    /// The kind with its article, for messages ("a pipe").
    pub fn noun(self) -> &'static str {
        match self {
            FdKind::Regular => "a regular file",
            FdKind::Directory => "a directory",
            FdKind::CharDevice => "a character device",
            FdKind::Pipe => "a pipe",
            FdKind::Socket => "a socket",
            FdKind::Other => "a kernel object of another kind (anon_inode)",
        }
    }
}

/// One open file descriptor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FdEntry<'a> {
    pub fd: i32,
    pub kind: u32,
    /// open(2) flags as /proc/self/fdinfo reports them (includes O_CLOEXEC).
    pub flags: u32,
    pub offset: u64,
    /// What /proc/self/fd/N links to.
    pub path: &'a [u8],
    pub stamp: FileStamp,
}

impl<'a> FdEntry<'a> {
    pub const MIN_ENCODED_LEN: usize = 4 * 3 + 8 + 4 + FileStamp::ENCODED_LEN;
    pub fn encode(&self, e: &mut Encoder) -> Result<(), CodecError> {
        e.i32(self.fd)?;
        e.u32(self.kind)?;
        e.u32(self.flags)?;
        e.u64(self.offset)?;
        e.bytes(self.path)?;
        self.stamp.encode(e)
    }
    pub fn decode(d: &mut Decoder<'a>) -> Result<Self, CodecError> {
        Ok(FdEntry {
            fd: d.i32()?,
            kind: d.u32()?,
            flags: d.u32()?,
            offset: d.u64()?,
            path: d.bytes()?,
            stamp: FileStamp::decode(d)?,
        })
    }
}

/// The fields of `struct prctl_mm_map` that describe the process layout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MmLayout {
    pub start_code: u64,
    pub end_code: u64,
    pub start_data: u64,
    pub end_data: u64,
    pub start_brk: u64,
    pub brk: u64,
    pub start_stack: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
}

impl MmLayout {
    fn fields(&self) -> [u64; 11] {
        [
            self.start_code,
            self.end_code,
            self.start_data,
            self.end_data,
            self.start_brk,
            self.brk,
            self.start_stack,
            self.arg_start,
            self.arg_end,
            self.env_start,
            self.env_end,
        ]
    }
    pub fn encode(&self, e: &mut Encoder) -> Result<(), CodecError> {
        self.fields().iter().try_for_each(|v| e.u64(*v))
    }
    pub fn decode(d: &mut Decoder) -> Result<Self, CodecError> {
        Ok(MmLayout {
            start_code: d.u64()?,
            end_code: d.u64()?,
            start_data: d.u64()?,
            end_data: d.u64()?,
            start_brk: d.u64()?,
            brk: d.u64()?,
            start_stack: d.u64()?,
            arg_start: d.u64()?,
            arg_end: d.u64()?,
            env_start: d.u64()?,
            env_end: d.u64()?,
        })
    }
}

/// Process-wide kernel state that is not in memory (record KERNEL header;
/// sigactions and fds follow it as lists).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessState<'a> {
    pub cwd: &'a [u8],
    pub umask: u32,
    pub mm: MmLayout,
    /// Raw /proc/self/auxv bytes.
    pub auxv: &'a [u8],
}

impl<'a> ProcessState<'a> {
    pub fn encode(&self, e: &mut Encoder) -> Result<(), CodecError> {
        e.bytes(self.cwd)?;
        e.u32(self.umask)?;
        self.mm.encode(e)?;
        e.bytes(self.auxv)
    }
    pub fn decode(d: &mut Decoder<'a>) -> Result<Self, CodecError> {
        Ok(ProcessState {
            cwd: d.bytes()?,
            umask: d.u32()?,
            mm: MmLayout::decode(d)?,
            auxv: d.bytes()?,
        })
    }
}

/// The three interval timers of setitimer(2), numbered as the kernel
/// numbers them (`ITIMER_REAL` 0, `ITIMER_VIRTUAL` 1, `ITIMER_PROF` 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum TimerKind {
    /// Wall-clock time; raises SIGALRM (alarm(2) sets this one).
    Real = 0,
    /// User CPU time of the process; raises SIGVTALRM.
    Virtual = 1,
    /// User and system CPU time of the process; raises SIGPROF.
    Prof = 2,
}

impl TimerKind {
    /// Every timer, in the order KERNEL stores them.
    pub const ALL: [TimerKind; 3] = [TimerKind::Real, TimerKind::Virtual, TimerKind::Prof];

    pub fn name(self) -> &'static str {
        match self {
            TimerKind::Real => "real",
            TimerKind::Virtual => "virtual",
            TimerKind::Prof => "prof",
        }
    }
}

/// A span of time as `struct timeval` holds it: seconds and microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeVal {
    pub sec: u64,
    /// Below 1 000 000 in a valid image (the reader checks).
    pub usec: u32,
}

impl TimeVal {
    pub const ENCODED_LEN: usize = 8 + 4;

    pub fn is_zero(&self) -> bool {
        self.sec == 0 && self.usec == 0
    }

    /// The span in seconds (what `inspect` shows).
    pub fn as_secs_f64(&self) -> f64 {
        self.sec as f64 + self.usec as f64 / 1e6
    }

    fn encode(&self, e: &mut Encoder) -> Result<(), CodecError> {
        e.u64(self.sec)?;
        e.u32(self.usec)
    }

    fn decode(d: &mut Decoder) -> Result<Self, CodecError> {
        Ok(TimeVal {
            sec: d.u64()?,
            usec: d.u32()?,
        })
    }
}

/// One interval timer as getitimer(2) reports it (`struct itimerval`):
/// the time left until it next expires (`value`; zero: disarmed) and the
/// period it is re-armed with after that (`interval`; zero: once).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IntervalTimer {
    pub interval: TimeVal,
    pub value: TimeVal,
}

impl IntervalTimer {
    pub const ENCODED_LEN: usize = 2 * TimeVal::ENCODED_LEN;

    /// Whether the timer will expire (`value` is set). A periodic timer
    /// with no `value` keeps its interval but is disarmed.
    pub fn is_armed(&self) -> bool {
        !self.value.is_zero()
    }

    fn encode(&self, e: &mut Encoder) -> Result<(), CodecError> {
        self.interval.encode(e)?;
        self.value.encode(e)
    }

    fn decode(d: &mut Decoder) -> Result<Self, CodecError> {
        Ok(IntervalTimer {
            interval: TimeVal::decode(d)?,
            value: TimeVal::decode(d)?,
        })
    }
}

/// The process's interval timers (end of record KERNEL, format 1.3), in
/// [`TimerKind::ALL`] order. All disarmed when read from an older image.
///
/// ```
/// use selfckpt::image::codec::{Decoder, Encoder};
/// use selfckpt::image::model::{IntervalTimer, IntervalTimers, TimeVal, TimerKind};
/// let mut timers = IntervalTimers::default();
/// timers.0[TimerKind::Real as usize] = IntervalTimer {
///     interval: TimeVal { sec: 0, usec: 200_000 },
///     value: TimeVal { sec: 0, usec: 150_000 },
/// };
/// let mut buf = [0u8; IntervalTimers::ENCODED_LEN];
/// timers.encode(&mut Encoder::new(&mut buf)).unwrap();
/// assert_eq!(IntervalTimers::decode(&mut Decoder::new(&buf)).unwrap(), timers);
/// assert_eq!(timers.armed().count(), 1);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IntervalTimers(pub [IntervalTimer; 3]);

impl IntervalTimers {
    pub const ENCODED_LEN: usize = 3 * IntervalTimer::ENCODED_LEN;

    pub fn get(&self, kind: TimerKind) -> &IntervalTimer {
        &self.0[kind as usize]
    }

    /// Every timer with its kind.
    pub fn iter(&self) -> impl Iterator<Item = (TimerKind, &IntervalTimer)> {
        TimerKind::ALL.into_iter().zip(&self.0)
    }

    /// The timers that will expire.
    pub fn armed(&self) -> impl Iterator<Item = (TimerKind, &IntervalTimer)> {
        self.iter().filter(|(_, t)| t.is_armed())
    }

    pub fn encode(&self, e: &mut Encoder) -> Result<(), CodecError> {
        self.0.iter().try_for_each(|t| t.encode(e))
    }

    pub fn decode(d: &mut Decoder) -> Result<Self, CodecError> {
        Ok(IntervalTimers([
            IntervalTimer::decode(d)?,
            IntervalTimer::decode(d)?,
            IntervalTimer::decode(d)?,
        ]))
    }
}

/// A set of signals as the kernel keeps it (format 1.4): bit n-1 stands for
/// signal n (1..=64). Used for the signals pending at a checkpoint, for the
/// whole process (end of KERNEL) and for each thread (end of THREADS).
///
/// ```
/// use selfckpt::image::codec::{Decoder, Encoder};
/// use selfckpt::image::model::SignalSet;
/// let set = SignalSet::EMPTY.with(libc::SIGUSR2).with(libc::SIGRTMIN() + 1);
/// assert!(set.contains(libc::SIGUSR2) && !set.contains(libc::SIGUSR1));
/// assert_eq!(set.names(), ["SIGUSR2", "SIGRTMIN+1"]);
/// let mut buf = [0u8; SignalSet::ENCODED_LEN];
/// set.encode(&mut Encoder::new(&mut buf)).unwrap();
/// assert_eq!(SignalSet::decode(&mut Decoder::new(&buf)).unwrap(), set);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SignalSet(pub u64);

impl SignalSet {
    pub const ENCODED_LEN: usize = 8;
    pub const EMPTY: SignalSet = SignalSet(0);

    fn bit(sig: i32) -> u64 {
        if (1..=64).contains(&sig) {
            1 << (sig - 1)
        } else {
            0
        }
    }

    /// The set with `sig` added (a number outside 1..=64 adds nothing).
    pub fn with(self, sig: i32) -> SignalSet {
        SignalSet(self.0 | Self::bit(sig))
    }

    /// The set without `sig`.
    pub fn without(self, sig: i32) -> SignalSet {
        SignalSet(self.0 & !Self::bit(sig))
    }

    pub fn contains(self, sig: i32) -> bool {
        Self::bit(sig) != 0 && self.0 & Self::bit(sig) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The signal numbers in the set, lowest first.
    pub fn iter(self) -> impl Iterator<Item = i32> {
        (1..=64).filter(move |&s| self.contains(s))
    }

    /// A signal's name as `kill -l` spells it: `SIGUSR2`, `SIGRTMIN+1`
    /// (glibc's SIGRTMIN), or `SIG32`/`SIG33` for the two real-time
    /// signals glibc keeps for itself.
    pub fn name(sig: i32) -> String {
        let rtmin = libc::SIGRTMIN();
        if sig >= rtmin && sig <= 64 {
            return if sig == rtmin {
                "SIGRTMIN".to_string()
            } else {
                format!("SIGRTMIN+{}", sig - rtmin)
            };
        }
        match nix::sys::signal::Signal::try_from(sig) {
            Ok(s) if sig < 32 => s.as_str().to_string(),
            _ => format!("SIG{sig}"),
        }
    }

    /// The names of the signals in the set, lowest first.
    pub fn names(self) -> Vec<String> {
        self.iter().map(Self::name).collect()
    }

    pub fn encode(&self, e: &mut Encoder) -> Result<(), CodecError> {
        e.u64(self.0)
    }

    pub fn decode(d: &mut Decoder) -> Result<Self, CodecError> {
        Ok(SignalSet(d.u64()?))
    }
}

/// Who a thread belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ThreadRole {
    /// The program's initial thread (its TID was the PID).
    Main = 1,
    /// Another thread of the program.
    User = 2,
    /// selfckpt's checkpoint thread.
    Manager = 3,
    /// selfckpt's compression worker.
    Worker = 4,
}

impl ThreadRole {
    pub fn from_u32(v: u32) -> Option<ThreadRole> {
        Some(match v {
            1 => ThreadRole::Main,
            2 => ThreadRole::User,
            3 => ThreadRole::Manager,
            4 => ThreadRole::Worker,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            ThreadRole::Main => "main",
            ThreadRole::User => "user",
            ThreadRole::Manager => "selfckpt-manager",
            ThreadRole::Worker => "selfckpt-worker",
        }
    }
}

/// One parked thread (record THREADS). Its full register state is in the
/// signal frame at `frame` inside the image's memory; these fields are what
/// the restorer needs to bring the thread back, plus `ip`/`sp` for display.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadState {
    pub tid: u32,
    pub role: u32,
    /// Address of the thread's slot in the library's thread table.
    pub slot: u64,
    /// Thread pointer (fs base on x86_64, tpidr_el0 on aarch64).
    pub tls: u64,
    /// clear_child_tid address (glibc: &pthread->tid).
    pub tid_address: u64,
    /// Address of the `ucontext` of the signal frame the thread parked in.
    pub frame: u64,
    /// Stack pointer to start the restarted thread with (below the frame).
    pub entry_sp: u64,
    pub ip: u64,
    pub sp: u64,
    pub sigmask: u64,
    pub rseq_addr: u64,
    pub rseq_len: u32,
    pub rseq_sig: u32,
    pub robust_head: u64,
    pub robust_len: u64,
    pub comm: [u8; 16],
}

impl ThreadState {
    pub const ENCODED_LEN: usize = 4 * 2 + 8 * 8 + 8 + 4 * 2 + 8 * 2 + 16;
    pub fn encode(&self, e: &mut Encoder) -> Result<(), CodecError> {
        e.u32(self.tid)?;
        e.u32(self.role)?;
        e.u64(self.slot)?;
        e.u64(self.tls)?;
        e.u64(self.tid_address)?;
        e.u64(self.frame)?;
        e.u64(self.entry_sp)?;
        e.u64(self.ip)?;
        e.u64(self.sp)?;
        e.u64(self.sigmask)?;
        e.u64(self.rseq_addr)?;
        e.u32(self.rseq_len)?;
        e.u32(self.rseq_sig)?;
        e.u64(self.robust_head)?;
        e.u64(self.robust_len)?;
        e.bytes_raw(&self.comm)
    }
    pub fn decode(d: &mut Decoder) -> Result<Self, CodecError> {
        let mut t = ThreadState {
            tid: d.u32()?,
            role: d.u32()?,
            slot: d.u64()?,
            tls: d.u64()?,
            tid_address: d.u64()?,
            frame: d.u64()?,
            entry_sp: d.u64()?,
            ip: d.u64()?,
            sp: d.u64()?,
            sigmask: d.u64()?,
            rseq_addr: d.u64()?,
            rseq_len: d.u32()?,
            rseq_sig: d.u32()?,
            robust_head: d.u64()?,
            robust_len: d.u64()?,
            comm: [0; 16],
        };
        t.comm.copy_from_slice(d.take(16)?);
        Ok(t)
    }
    pub fn comm_str(&self) -> String {
        let end = self.comm.iter().position(|&b| b == 0).unwrap_or(16);
        String::from_utf8_lossy(&self.comm[..end]).into_owned()
    }
}

/// Chunk encodings.
pub const ENCODING_RAW: u8 = 0;
pub const ENCODING_ZSTD: u8 = 1;

/// A run of pages stored in a chunk: page index from the region start, count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChunkRun {
    pub first_page: u64,
    pub pages: u32,
}

/// The fixed part of record CHUNK; `runs` and the data follow it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChunkHeader {
    pub region: u32,
    pub encoding: u8,
    /// Bytes after decompression: the sum of the runs' pages times the page size.
    pub raw_len: u32,
    pub n_runs: u32,
}

impl ChunkHeader {
    pub const ENCODED_LEN: usize = 4 + 1 + 4 + 4;
    pub const RUN_LEN: usize = 12;
    pub fn encode(&self, e: &mut Encoder) -> Result<(), CodecError> {
        e.u32(self.region)?;
        e.u8(self.encoding)?;
        e.u32(self.raw_len)?;
        e.u32(self.n_runs)
    }
    pub fn decode(d: &mut Decoder) -> Result<Self, CodecError> {
        Ok(ChunkHeader {
            region: d.u32()?,
            encoding: d.u8()?,
            raw_len: d.u32()?,
            n_runs: d.u32()?,
        })
    }
}

impl ChunkRun {
    pub fn encode(&self, e: &mut Encoder) -> Result<(), CodecError> {
        e.u64(self.first_page)?;
        e.u32(self.pages)
    }
    pub fn decode(d: &mut Decoder) -> Result<Self, CodecError> {
        Ok(ChunkRun {
            first_page: d.u64()?,
            pages: d.u32()?,
        })
    }
}

/// Record END: totals that let a reader detect missing, reordered or extra
/// records, the dump's statistics, and (format 1.2) the bytes present in
/// each region.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndRecord {
    /// Records before this one.
    pub records: u64,
    pub chunks: u64,
    /// xxh3 over the checksums of all records before this one, in order.
    pub chain: u64,
    pub bytes_mapped: u64,
    pub bytes_present: u64,
    pub bytes_raw: u64,
    pub bytes_stored: u64,
    pub zero_pages: u64,
    pub pause_ns: u64,
    pub suspend_ns: u64,
    pub write_ns: u64,
    /// Bytes of pages present or swapped in each region, in REGIONS order
    /// (format 1.2; `None` when read from a 1.0 or 1.1 image).
    pub region_present: Option<Vec<u64>>,
}

impl EndRecord {
    /// The eleven u64 totals: all of END before format 1.2.
    pub const TOTALS_LEN: usize = 8 * 11;

    /// Encoded length of an END record listing `regions` regions.
    ///
    /// ```
    /// use selfckpt::image::model::EndRecord;
    /// assert_eq!(EndRecord::encoded_len(2), 88 + 4 + 2 * 8);
    /// ```
    pub const fn encoded_len(regions: usize) -> usize {
        Self::TOTALS_LEN + 4 + 8 * regions
    }

    /// Encodes the record: the totals, then `region_present` when it is
    /// `Some` (it must be, in a format 1.2 image).
    ///
    /// ```
    /// use selfckpt::image::codec::{Decoder, Encoder};
    /// use selfckpt::image::model::EndRecord;
    /// let end = EndRecord {
    ///     bytes_present: 4096,
    ///     region_present: Some(vec![4096, 0]),
    ///     ..EndRecord::default()
    /// };
    /// let mut buf = [0u8; EndRecord::encoded_len(2)];
    /// end.encode(&mut Encoder::new(&mut buf)).unwrap();
    /// assert_eq!(EndRecord::decode(&mut Decoder::new(&buf), 2).unwrap(), end);
    /// ```
    pub fn encode(&self, e: &mut Encoder) -> Result<(), CodecError> {
        match &self.region_present {
            Some(present) => self.encode_with_present(e, present.iter().copied()),
            None => self.encode_totals(e),
        }
    }

    /// Encodes the record with `present` as its per-region list, in place
    /// of `region_present`: the dump passes its figures this way, straight
    /// from its region table, without collecting them (no allocation).
    pub fn encode_with_present(
        &self,
        e: &mut Encoder,
        present: impl ExactSizeIterator<Item = u64>,
    ) -> Result<(), CodecError> {
        self.encode_totals(e)?;
        let count = u32::try_from(present.len()).map_err(|_| CodecError::BadValue {
            field: "END region count",
            value: present.len() as u64,
        })?;
        e.u32(count)?;
        present.into_iter().try_for_each(|v| e.u64(v))
    }

    fn encode_totals(&self, e: &mut Encoder) -> Result<(), CodecError> {
        [
            self.records,
            self.chunks,
            self.chain,
            self.bytes_mapped,
            self.bytes_present,
            self.bytes_raw,
            self.bytes_stored,
            self.zero_pages,
            self.pause_ns,
            self.suspend_ns,
            self.write_ns,
        ]
        .iter()
        .try_for_each(|v| e.u64(*v))
    }

    /// Decodes the record of an image of format minor `minor`: the list of
    /// present bytes per region is there from minor 2 on (and only then).
    pub fn decode(d: &mut Decoder, minor: u16) -> Result<Self, CodecError> {
        let mut end = EndRecord {
            records: d.u64()?,
            chunks: d.u64()?,
            chain: d.u64()?,
            bytes_mapped: d.u64()?,
            bytes_present: d.u64()?,
            bytes_raw: d.u64()?,
            bytes_stored: d.u64()?,
            zero_pages: d.u64()?,
            pause_ns: d.u64()?,
            suspend_ns: d.u64()?,
            write_ns: d.u64()?,
            region_present: None,
        };
        if minor >= super::format::REGION_PRESENT_SINCE_MINOR {
            let n = d.count(8)?;
            end.region_present = Some((0..n).map(|_| d.u64()).collect::<Result<_, _>>()?);
        }
        Ok(end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// END totals with every field distinct, and no region list.
    fn totals() -> EndRecord {
        EndRecord {
            records: 5,
            chunks: 1,
            chain: 0xfeed,
            bytes_mapped: 3 << 12,
            bytes_present: 2 << 12,
            bytes_raw: 1 << 12,
            bytes_stored: 100,
            zero_pages: 1,
            pause_ns: 7,
            suspend_ns: 8,
            write_ns: 9,
            region_present: None,
        }
    }

    fn encoded(end: &EndRecord, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        let mut e = Encoder::new(&mut buf);
        end.encode(&mut e).unwrap();
        assert_eq!(e.len(), len);
        buf
    }

    #[test]
    fn end_round_trips_with_bytes_present_per_region() {
        let end = EndRecord {
            region_present: Some(vec![2 << 12, 0, 0]),
            ..totals()
        };
        let buf = encoded(&end, EndRecord::encoded_len(3));
        let mut d = Decoder::new(&buf);
        assert_eq!(EndRecord::decode(&mut d, 2).unwrap(), end);
        d.finish().unwrap();
        // The dump's way (figures from an iterator) gives the same bytes.
        let mut from_iter = vec![0u8; buf.len()];
        totals()
            .encode_with_present(
                &mut Encoder::new(&mut from_iter),
                [2 << 12, 0, 0].into_iter(),
            )
            .unwrap();
        assert_eq!(from_iter, buf);
    }

    fn meta(mailbox_layout: Option<u32>) -> Meta<'static> {
        Meta {
            created_unix_ns: 1,
            pid: 2,
            sequence: 3,
            kernel_release: b"6.1",
            hostname: b"h",
            selfckpt_version: b"0.1.0",
            exe_path: b"/bin/x",
            exe_build_id: b"\x01\x02",
            exe_stamp: FileStamp::default(),
            cpu_xfeatures: 4,
            restart_entry: 5,
            restart_mailbox: 6,
            restarts: 7,
            identity: 2,
            mailbox_layout,
            session_role: None,
            parent: None,
        }
    }

    fn encoded_meta(m: &Meta) -> Vec<u8> {
        let mut buf = vec![0u8; 4096];
        let mut e = Encoder::new(&mut buf);
        m.encode(&mut e).unwrap();
        let n = e.len();
        buf.truncate(n);
        buf
    }

    #[test]
    fn meta_round_trips_with_the_mailbox_layout_from_1_5_on() {
        let m = meta(Some(9));
        let buf = encoded_meta(&m);
        let mut d = Decoder::new(&buf);
        assert_eq!(Meta::decode(&mut d, 5).unwrap(), m);
        d.finish().unwrap();
        // A 1.4 record has none; a 1.5 one must.
        let old = encoded_meta(&meta(None));
        assert_eq!(old.len() + 4, buf.len());
        let mut d = Decoder::new(&old);
        assert_eq!(Meta::decode(&mut d, 4).unwrap(), meta(None));
        d.finish().unwrap();
        assert!(Meta::decode(&mut Decoder::new(&old), 5).is_err());
        // A 1.4 record with the field left over is not a 1.4 record.
        let mut d = Decoder::new(&buf);
        Meta::decode(&mut d, 4).unwrap();
        assert!(d.finish().is_err());
    }

    #[test]
    fn meta_round_trips_with_the_session_role_from_1_7_on() {
        let m = Meta {
            session_role: Some(SESSION_LEADER),
            ..meta(Some(1))
        };
        let buf = encoded_meta(&m);
        let mut d = Decoder::new(&buf);
        assert_eq!(Meta::decode(&mut d, 7).unwrap(), m);
        d.finish().unwrap();
        // A 1.6 record has none; a 1.7 one must.
        let old = encoded_meta(&meta(Some(1)));
        assert_eq!(old.len() + 1, buf.len());
        let mut d = Decoder::new(&old);
        assert_eq!(Meta::decode(&mut d, 6).unwrap(), meta(Some(1)));
        d.finish().unwrap();
        assert!(Meta::decode(&mut Decoder::new(&old), 7).is_err());
    }

    #[test]
    fn meta_round_trips_with_the_parent_from_1_9_on() {
        let m = Meta {
            session_role: Some(SESSION_LEADER),
            parent: Some(ParentRef {
                name: b"p.ckpt",
                end_checksum: 42,
            }),
            ..meta(Some(1))
        };
        let buf = encoded_meta(&m);
        let mut d = Decoder::new(&buf);
        let back = Meta::decode(&mut d, 9).unwrap();
        d.finish().unwrap();
        assert_eq!(back, m);
        assert_eq!(back.parent_image().map(|p| p.end_checksum), Some(42));
        // A 1.8 record has none; a 1.9 one must.
        let old = Meta { parent: None, ..m };
        let old = encoded_meta(&old);
        assert_eq!(old.len() + 4 + 6 + 8, buf.len());
        assert!(Meta::decode(&mut Decoder::new(&old), 9).is_err());
        // A full 1.9 image records an empty name: no parent.
        let full = Meta {
            parent: Some(ParentRef {
                name: b"",
                end_checksum: 0,
            }),
            ..m
        };
        assert_eq!(full.parent_image(), None);
    }

    #[test]
    fn end_of_a_1_1_image_has_no_list_and_a_1_2_end_needs_one() {
        let buf = encoded(&totals(), EndRecord::TOTALS_LEN);
        for minor in [0, 1] {
            let mut d = Decoder::new(&buf);
            assert_eq!(EndRecord::decode(&mut d, minor).unwrap(), totals());
            d.finish().unwrap();
        }
        assert!(matches!(
            EndRecord::decode(&mut Decoder::new(&buf), 2),
            Err(CodecError::Truncated { .. })
        ));
    }

    #[test]
    fn test_bad_end_region_count() {
        let mut buf = encoded(&totals(), EndRecord::TOTALS_LEN);
        buf.extend_from_slice(&u32::MAX.to_le_bytes());
        buf.extend_from_slice(&[0; 8]);
        assert!(matches!(
            EndRecord::decode(&mut Decoder::new(&buf), 2),
            Err(CodecError::BadCount { .. })
        ));
    }

    #[test]
    fn end_listing_every_region_fails_cleanly_when_its_buffer_is_short() {
        let n = crate::capture::dump::MAX_REGIONS;
        let zeros = || (0..n).map(|_| 0u64);
        let mut buf = vec![0u8; EndRecord::encoded_len(n)];
        totals()
            .encode_with_present(&mut Encoder::new(&mut buf), zeros())
            .unwrap();
        buf.pop();
        assert!(matches!(
            totals().encode_with_present(&mut Encoder::new(&mut buf), zeros()),
            Err(CodecError::Full { .. })
        ));
    }
}
