//! The KERNEL record's object list (format 1.8): every kind of kernel
//! object added from 1.8 on is one tagged entry here, so that a new kind
//! is a new tag in its own file instead of a new minor version and a new
//! field at the end of KERNEL.
//!
//! An entry is `u16 kind, u16 flags, u32 length, payload`; the list ends
//! with kind 0 (`END`). A reader that meets a kind it does not know
//! refuses the image, naming the kind, unless the entry's flags say it
//! may be skipped ([`SKIPPABLE`]: facts shown by `inspect` that a restart
//! does not act on). Kinds are numbered by topic (see [`Kind`] and
//! docs/IMAGE_FORMAT.md), never reused.
//!
//! The writing half ([`entry`], [`end`]) runs while the program's threads
//! are suspended: fixed buffers only, never an allocation. Decoding,
//! checking and restoring are ordinary Rust.

use crate::image::codec::{CodecError, Decoder, Encoder};

/// Entry flag: a reader that does not know the kind may skip the entry.
pub const SKIPPABLE: u16 = 1;

/// The kinds of entries. Ranges by topic, so that kinds added in
/// parallel never collide: 0x0001-0x00ff general, 0x0100 memory objects,
/// 0x0200 files and pipes, 0x0300 sockets, 0x0400 timers and process
/// state, 0x0500 process trees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Kind {
    /// Ends the list.
    End = 0,
    /// Something the checkpoint saw and cannot bring back, in words
    /// ([`NotRestorable`]).
    NotRestorable = 1,
    // Files and pipes (0x0200-0x02ff).
    /// A pipe or FIFO with its descriptors and queued bytes
    /// (`kstate::pipes`).
    Pipe = 0x0200,
    /// A deleted-but-open regular file with its contents
    /// (`kstate::deleted`).
    DeletedFile = 0x0201,
    /// A socket ([`super::sockets::Socket`]).
    Socket = 0x0300,
    /// The sequence numbers and send queue of a TCP socket whose peer
    /// may be in another process of the tree
    /// ([`super::sockets::inflight::TcpInFlight`]).
    TcpInFlight = 0x0301,
    /// A memfd descriptor ([`super::memfd::Memfd`]; kmem).
    Memfd = 0x0100,
    /// An attached System V segment ([`super::sysvshm::SysvShm`]; kmem).
    SysvShm = 0x0101,
    /// A System V semaphore set the process uses
    /// ([`super::sysvipc::SysvSem`]; the restarter, before the program).
    SysvSem = 0x0103,
    /// A System V message queue the process uses, with its messages
    /// ([`super::sysvipc::SysvMsg`]; the restarter, before the program).
    SysvMsg = 0x0104,
    /// A POSIX timer (`kstate::posix_timers`): made again in the restarted
    /// process itself, once its threads exist.
    PosixTimer = 0x0400,
    /// The resource limits (`kstate::rlimits`): early in the restarter,
    /// the rest in the restarted process.
    Rlimits = 0x0401,
    /// prctl and /proc attributes of the process (`kstate::process_attrs`):
    /// early, `DUMPABLE` late.
    ProcessAttrs = 0x0402,
    /// An inotify descriptor and its watches (`kstate::inotify`): with
    /// the descriptors.
    Inotify = 0x0403,
    /// The groups and each thread's ids and capabilities
    /// (`kstate::credentials`): groups late in the restarter, the rest by
    /// each restarted thread.
    Credentials = 0x0404,
    /// Each thread's scheduling (`kstate::sched`): by each restarted
    /// thread.
    Scheduling = 0x0405,
    /// A file lock held through a descriptor (`kstate::locks`).
    Lock = 0x0202,
    /// An open file description shared by several descriptors of files
    /// reopened by path, or with status `open` cannot set
    /// (`kstate::descriptions`).
    Description = 0x0203,
    /// A POSIX message queue with its messages and descriptors
    /// (`kstate::mqueue`).
    Mqueue = 0x0204,
    /// A pseudo-terminal and the process's descriptors of it
    /// (`kstate::pty`).
    Pty = 0x0205,
    /// A pidfd descriptor and the process it refers to (`kstate::pidfd`).
    Pidfd = 0x0206,
    /// Mapping flags and madvise state ([`super::vmflags::MappingFlags`]; kmem).
    MappingFlags = 0x0102,
}

impl Kind {
    pub fn from_u16(v: u16) -> Option<Kind> {
        Self::ALL.iter().copied().find(|k| *k as u16 == v)
    }

    /// Every kind, one per line (merges of kinds added in parallel stay
    /// trivial).
    const ALL: &'static [Kind] = &[
        Kind::End,
        Kind::NotRestorable,
        Kind::Memfd,
        Kind::SysvShm,
        Kind::SysvSem,
        Kind::SysvMsg,
        Kind::Pipe,
        Kind::DeletedFile,
        Kind::Lock,
        Kind::Description,
        Kind::Mqueue,
        Kind::Pty,
        Kind::Pidfd,
        Kind::MappingFlags,
        Kind::Socket,
        Kind::TcpInFlight,
        Kind::PosixTimer,
        Kind::Rlimits,
        Kind::ProcessAttrs,
        Kind::Inotify,
        Kind::Credentials,
        Kind::Scheduling,
    ];
}

/// Writes one entry whose payload `f` encodes. No allocation.
pub fn entry<E: From<CodecError>>(
    e: &mut Encoder,
    kind: Kind,
    flags: u16,
    f: impl FnOnce(&mut Encoder) -> Result<(), E>,
) -> Result<(), E> {
    e.u16(kind as u16)?;
    e.u16(flags)?;
    let at = e.reserve_u32()?;
    let start = e.len();
    f(e)?;
    e.patch_u32(at, (e.len() - start) as u32);
    Ok(())
}

/// Ends the list. No allocation.
pub fn end(e: &mut Encoder) -> Result<(), CodecError> {
    e.u16(Kind::End as u16)?;
    e.u16(0)?;
    e.u32(0)
}

/// Something the checkpoint saw and cannot bring back: the descriptor it
/// concerns (-1 for none), a short name of its kind (`socket`, `pipe`...:
/// what `--unrestorable` names) and a sentence for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotRestorable {
    pub fd: i32,
    pub kind: String,
    pub text: String,
}

impl NotRestorable {
    /// Writes one entry straight from the capture, and notes it for the
    /// checkpoint's log line (`unrestorable`). No allocation.
    pub fn capture(e: &mut Encoder, fd: i32, kind: &str, text: &[u8]) -> Result<(), CodecError> {
        super::unrestorable::note_text(fd, text);
        entry(e, Kind::NotRestorable, 0, |e| {
            e.i32(fd)?;
            e.bytes(kind.as_bytes())?;
            e.bytes(text)
        })
    }

    fn encode(&self, e: &mut Encoder) -> Result<(), CodecError> {
        e.i32(self.fd)?;
        e.bytes(self.kind.as_bytes())?;
        e.bytes(self.text.as_bytes())
    }

    fn decode(d: &mut Decoder) -> Result<Self, CodecError> {
        Ok(NotRestorable {
            fd: d.i32()?,
            kind: String::from_utf8_lossy(d.bytes()?).into_owned(),
            text: String::from_utf8_lossy(d.bytes()?).into_owned(),
        })
    }
}

/// One decoded entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    NotRestorable(NotRestorable),
    // Files and pipes.
    Pipe(super::pipes::Pipe),
    DeletedFile(super::deleted::Deleted),
    Socket(super::sockets::Socket),
    TcpInFlight(super::sockets::inflight::TcpInFlight),
    Memfd(super::memfd::Memfd),
    SysvShm(super::sysvshm::SysvShm),
    SysvSem(super::sysvipc::SysvSem),
    SysvMsg(super::sysvipc::SysvMsg),
    PosixTimer(super::posix_timers::PosixTimer),
    Rlimits(super::rlimits::Rlimits),
    ProcessAttrs(super::process_attrs::ProcessAttrs),
    Inotify(super::inotify::Inotify),
    Credentials(super::credentials::Credentials),
    Scheduling(super::sched::Scheduling),
    Lock(super::locks::Lock),
    Description(super::descriptions::Description),
    Mqueue(super::mqueue::Mqueue),
    Pty(super::pty::Pty),
    Pidfd(super::pidfd::Pidfd),
    MappingFlags(super::vmflags::MappingFlags),
    /// A skippable entry of a kind this build does not know.
    Unknown {
        kind: u16,
        len: usize,
    },
}

/// When in the restart an object is made again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Before any descriptor is reopened (limits, process attributes).
    Early,
    /// With the descriptors: the object takes its number.
    Descriptors,
    /// Once every descriptor is back (registrations, locks, owners).
    Late,
}

/// The object list of a KERNEL record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Objects {
    pub items: Vec<Object>,
}

impl Objects {
    pub fn encode(&self, e: &mut Encoder) -> Result<(), CodecError> {
        for o in &self.items {
            match o {
                Object::NotRestorable(x) => entry(e, Kind::NotRestorable, 0, |e| x.encode(e))?,
                Object::Pipe(x) => entry(e, Kind::Pipe, 0, |e| x.encode(e))?,
                Object::DeletedFile(x) => entry(e, Kind::DeletedFile, 0, |e| x.encode(e))?,
                Object::Socket(x) => entry(e, Kind::Socket, 0, |e| x.encode(e))?,
                Object::TcpInFlight(x) => entry(e, Kind::TcpInFlight, 0, |e| x.encode(e))?,
                Object::Memfd(x) => entry(e, Kind::Memfd, 0, |e| x.encode(e))?,
                Object::SysvShm(x) => entry(e, Kind::SysvShm, 0, |e| x.encode(e))?,
                Object::SysvSem(x) => entry(e, Kind::SysvSem, 0, |e| x.encode(e))?,
                Object::SysvMsg(x) => entry(e, Kind::SysvMsg, 0, |e| x.encode(e))?,
                Object::PosixTimer(x) => entry(e, Kind::PosixTimer, 0, |e| x.encode(e))?,
                Object::Rlimits(x) => entry(e, Kind::Rlimits, 0, |e| x.encode(e))?,
                Object::ProcessAttrs(x) => entry(e, Kind::ProcessAttrs, 0, |e| x.encode(e))?,
                Object::Inotify(x) => entry(e, Kind::Inotify, 0, |e| x.encode(e))?,
                Object::Credentials(x) => entry(e, Kind::Credentials, 0, |e| x.encode(e))?,
                Object::Scheduling(x) => entry(e, Kind::Scheduling, 0, |e| x.encode(e))?,
                Object::Lock(x) => entry(e, Kind::Lock, 0, |e| x.encode(e))?,
                Object::Description(x) => entry(e, Kind::Description, 0, |e| x.encode(e))?,
                Object::Mqueue(x) => entry(e, Kind::Mqueue, 0, |e| x.encode(e))?,
                Object::Pty(x) => entry(e, Kind::Pty, 0, |e| x.encode(e))?,
                Object::Pidfd(x) => entry(e, Kind::Pidfd, 0, |e| x.encode(e))?,
                Object::MappingFlags(x) => entry(e, Kind::MappingFlags, 0, |e| x.encode(e))?,
                // Nothing to write: this build never knew what it held.
                Object::Unknown { .. } => {}
            }
        }
        end(e)
    }

    /// Decodes entries up to and including the END entry. Each payload
    /// must be consumed exactly by its kind's decoder.
    pub fn decode(d: &mut Decoder) -> Result<Self, CodecError> {
        let mut items = Vec::new();
        loop {
            let kind = d.u16()?;
            let flags = d.u16()?;
            let len = d.u32()? as usize;
            if kind == Kind::End as u16 {
                if len != 0 {
                    return Err(CodecError::BadValue {
                        field: "length of the END entry of the object list",
                        value: len as u64,
                    });
                }
                return Ok(Objects { items });
            }
            if flags & !SKIPPABLE != 0 {
                return Err(CodecError::BadValue {
                    field: "flags of a kernel object",
                    value: flags as u64,
                });
            }
            if len > d.remaining() {
                return Err(CodecError::BadCount {
                    at: d.position(),
                    count: len as u64,
                    left: d.remaining(),
                });
            }
            let mut p = Decoder::new(d.take(len)?);
            let item = match Kind::from_u16(kind) {
                Some(Kind::NotRestorable) => Object::NotRestorable(NotRestorable::decode(&mut p)?),
                Some(Kind::Pipe) => Object::Pipe(super::pipes::Pipe::decode(&mut p)?),
                Some(Kind::DeletedFile) => {
                    Object::DeletedFile(super::deleted::Deleted::decode(&mut p)?)
                }
                Some(Kind::Socket) => Object::Socket(super::sockets::Socket::decode(&mut p)?),
                Some(Kind::TcpInFlight) => Object::TcpInFlight(
                    super::sockets::inflight::TcpInFlight::decode(&mut p)?,
                ),
                Some(Kind::Memfd) => Object::Memfd(super::memfd::Memfd::decode(&mut p)?),
                Some(Kind::SysvShm) => Object::SysvShm(super::sysvshm::SysvShm::decode(&mut p)?),
                Some(Kind::SysvSem) => Object::SysvSem(super::sysvipc::SysvSem::decode(&mut p)?),
                Some(Kind::SysvMsg) => Object::SysvMsg(super::sysvipc::SysvMsg::decode(&mut p)?),
                Some(Kind::PosixTimer) => {
                    Object::PosixTimer(super::posix_timers::PosixTimer::decode(&mut p)?)
                }
                Some(Kind::Rlimits) => Object::Rlimits(super::rlimits::Rlimits::decode(&mut p)?),
                Some(Kind::ProcessAttrs) => {
                    Object::ProcessAttrs(super::process_attrs::ProcessAttrs::decode(&mut p)?)
                }
                Some(Kind::Inotify) => Object::Inotify(super::inotify::Inotify::decode(&mut p)?),
                Some(Kind::Credentials) => {
                    Object::Credentials(super::credentials::Credentials::decode(&mut p)?)
                }
                Some(Kind::Scheduling) => {
                    Object::Scheduling(super::sched::Scheduling::decode(&mut p)?)
                }
                Some(Kind::Lock) => Object::Lock(super::locks::Lock::decode(&mut p)?),
                Some(Kind::Description) => {
                    Object::Description(super::descriptions::Description::decode(&mut p)?)
                }
                Some(Kind::Mqueue) => Object::Mqueue(super::mqueue::Mqueue::decode(&mut p)?),
                Some(Kind::Pty) => Object::Pty(super::pty::Pty::decode(&mut p)?),
                Some(Kind::Pidfd) => Object::Pidfd(super::pidfd::Pidfd::decode(&mut p)?),
                Some(Kind::MappingFlags) => {
                    Object::MappingFlags(super::vmflags::MappingFlags::decode(&mut p)?)
                }
                Some(Kind::End) | None if flags & SKIPPABLE != 0 => {
                    p.take(len)?;
                    Object::Unknown { kind, len }
                }
                _ => {
                    return Err(CodecError::BadValue {
                        field: "kind of a kernel object (written by a newer selfckpt? restart it with the selfckpt that wrote it)",
                        value: kind as u64,
                    })
                }
            };
            p.finish()?;
            items.push(item);
        }
    }

    /// The descriptors the objects make anew at restart (not reopened by
    /// path).
    pub fn fds(&self) -> Vec<i32> {
        self.items.iter().flat_map(Self::fds_of).collect()
    }

    /// The descriptors `o` makes anew.
    fn fds_of(o: &Object) -> Vec<i32> {
        match o {
            Object::Pipe(x) => x.fds().collect(),
            Object::DeletedFile(x) => x.fds().collect(),
            Object::Mqueue(x) => x.fds().collect(),
            // One at 0-2 is made only by a tree (the stdio rules decide).
            Object::Socket(x) if x.fd > 2 => vec![x.fd],
            Object::Socket(_) => vec![],
            // Put at their numbers by `restore::shared`.
            Object::Memfd(x) => vec![x.fd],
            Object::Inotify(x) => vec![x.fd],
            Object::Pty(x) => x.fds().collect(),
            Object::Pidfd(x) => vec![x.fd],
            _ => Vec::new(),
        }
    }

    /// Leaves out the objects with a descriptor among `placed` (a tree
    /// restart put the descriptors shared with other processes there
    /// already), and what was named not restorable about them.
    pub fn leave_out_fds(&mut self, placed: &[i32]) {
        self.items.retain(|o| match o {
            Object::NotRestorable(x) => !placed.contains(&x.fd),
            o => !Self::fds_of(o).iter().any(|fd| placed.contains(fd)),
        });
    }

    /// The message queues.
    pub fn mqueues(&self) -> impl Iterator<Item = &super::mqueue::Mqueue> {
        self.items.iter().filter_map(|o| match o {
            Object::Mqueue(x) => Some(x),
            _ => None,
        })
    }

    /// The pipes and FIFOs.
    pub fn pipes(&self) -> impl Iterator<Item = &super::pipes::Pipe> {
        self.items.iter().filter_map(|o| match o {
            Object::Pipe(x) => Some(x),
            _ => None,
        })
    }

    /// The socket descriptors.
    pub fn sockets(&self) -> impl Iterator<Item = &super::sockets::Socket> {
        self.items.iter().filter_map(|o| match o {
            Object::Socket(x) => Some(x),
            _ => None,
        })
    }

    /// The TCP sockets' data in flight.
    pub fn tcp_in_flight(&self) -> impl Iterator<Item = &super::sockets::inflight::TcpInFlight> {
        self.items.iter().filter_map(|o| match o {
            Object::TcpInFlight(x) => Some(x),
            _ => None,
        })
    }

    /// The recorded mapping flags (None: the image has none, written
    /// before they were recorded).
    pub fn mapping_flags(&self) -> Option<&super::vmflags::MappingFlags> {
        self.items.iter().find_map(|o| match o {
            Object::MappingFlags(x) => Some(x),
            _ => None,
        })
    }

    /// The System V segments (made again with the memory by
    /// `restore::shared`).
    pub fn sysv_segments(&self) -> impl Iterator<Item = &super::sysvshm::SysvShm> {
        self.items.iter().filter_map(|o| match o {
            Object::SysvShm(x) => Some(x),
            _ => None,
        })
    }

    /// The System V semaphore sets (`kstate::sysvipc`).
    pub fn sysv_sems(&self) -> impl Iterator<Item = &super::sysvipc::SysvSem> {
        self.items.iter().filter_map(|o| match o {
            Object::SysvSem(x) => Some(x),
            _ => None,
        })
    }

    /// The System V message queues (`kstate::sysvipc`).
    pub fn sysv_msgs(&self) -> impl Iterator<Item = &super::sysvipc::SysvMsg> {
        self.items.iter().filter_map(|o| match o {
            Object::SysvMsg(x) => Some(x),
            _ => None,
        })
    }

    /// The memfd descriptors (made again with the memory by
    /// `restore::shared`).
    pub fn memfds(&self) -> impl Iterator<Item = &super::memfd::Memfd> {
        self.items.iter().filter_map(|o| match o {
            Object::Memfd(x) => Some(x),
            _ => None,
        })
    }

    /// What the checkpoint said cannot come back, one sentence each,
    /// with the kind `--unrestorable` names.
    pub fn problems(&self) -> Vec<super::Problem> {
        self.items
            .iter()
            .filter_map(|o| match o {
                Object::NotRestorable(x) => {
                    Some(super::Problem::new(&x.kind, Self::sentence(x)).of_fd(x.fd))
                }
                _ => None,
            })
            .collect()
    }

    /// What cannot come back on this machine: [`Self::problems`] and what
    /// this kernel lacks for an object.
    pub fn problems_here(&self) -> Vec<super::Problem> {
        let mut v = self.problems();
        let timers: Vec<_> = self.posix_timers().collect();
        v.extend(super::posix_timers::problems_here(&timers));
        for o in &self.items {
            match o {
                Object::Rlimits(x) => v.extend(super::rlimits::problems_here(x)),
                Object::ProcessAttrs(x) => v.extend(super::process_attrs::problems_here(x)),
                Object::Inotify(x) => v.extend(super::inotify::problems_here(x)),
                Object::Credentials(x) => v.extend(super::credentials::problems_here(x)),
                Object::Scheduling(x) => v.extend(super::sched::problems_here(x, self.rlimits())),
                Object::Mqueue(x) => v.extend(super::mqueue::problems_here(x)),
                _ => {}
            }
        }
        v
    }

    /// The resource limits of the list, if the checkpoint wrote them.
    pub fn rlimits(&self) -> Option<&super::rlimits::Rlimits> {
        self.items.iter().find_map(|o| match o {
            Object::Rlimits(x) => Some(x),
            _ => None,
        })
    }

    /// The ptys of the list.
    pub fn ptys(&self) -> impl Iterator<Item = &super::pty::Pty> {
        self.items.iter().filter_map(|o| match o {
            Object::Pty(x) => Some(x),
            _ => None,
        })
    }

    /// The POSIX timers of the list.
    pub fn posix_timers(&self) -> impl Iterator<Item = &super::posix_timers::PosixTimer> {
        self.items.iter().filter_map(|o| match o {
            Object::PosixTimer(x) => Some(x),
            _ => None,
        })
    }

    fn sentence(x: &NotRestorable) -> String {
        if x.fd >= 0 {
            format!("fd {} {}", x.fd, x.text)
        } else {
            x.text.clone()
        }
    }

    /// Lines of `inspect`, one per object (problems are listed apart).
    pub fn describe(&self) -> Vec<String> {
        self.items
            .iter()
            .flat_map(|o| match o {
                Object::Unknown { kind, len } => vec![format!(
                    "an object of kind {kind:#06x} ({len} bytes) this selfckpt does not know; a restart leaves it out"
                )],
                Object::NotRestorable(_) => Vec::new(),
                Object::Pipe(x) => vec![x.describe()],
                Object::DeletedFile(x) => vec![x.describe()],
                Object::Lock(x) => vec![x.describe()],
                Object::Description(x) => vec![x.describe()],
                Object::Mqueue(x) => vec![x.describe()],
                Object::Pty(x) => vec![x.describe()],
                Object::Pidfd(x) => vec![x.describe()],
                Object::Socket(x) => vec![x.describe()],
                Object::TcpInFlight(x) => vec![x.describe()],
                Object::Memfd(x) => vec![x.describe()],
                Object::SysvShm(x) => vec![x.describe()],
                Object::SysvSem(x) => vec![x.describe()],
                Object::SysvMsg(x) => vec![x.describe()],
                Object::PosixTimer(x) => vec![x.describe()],
                Object::Rlimits(x) => vec![x.describe()],
                Object::ProcessAttrs(x) => vec![x.describe()],
                Object::Inotify(x) => x.describe(),
                Object::Credentials(x) => x.describe(),
                Object::Scheduling(x) => x.describe(),
                Object::MappingFlags(x) => vec![x.describe()],
            })
            .collect()
    }

    /// `inspect --json`: every object.
    pub fn json(&self) -> Vec<serde_json::Value> {
        self.items
            .iter()
            .map(|o| match o {
                Object::NotRestorable(x) => serde_json::json!({
                    "kind": "not_restorable", "fd": x.fd, "what": x.kind, "text": x.text,
                }),
                Object::Pipe(x) => x.json(),
                Object::DeletedFile(x) => x.json(),
                Object::Socket(x) => x.json(),
                Object::TcpInFlight(x) => x.json(),
                Object::PosixTimer(x) => x.json(),
                Object::Rlimits(x) => x.json(),
                Object::ProcessAttrs(x) => x.json(),
                Object::Inotify(x) => x.json(),
                Object::Credentials(x) => x.json(),
                Object::Scheduling(x) => x.json(),
                Object::Lock(x) => x.json(),
                Object::Description(x) => x.json(),
                Object::Mqueue(x) => x.json(),
                Object::Pty(x) => x.json(),
                Object::Pidfd(x) => x.json(),
                Object::Unknown { kind, len } => serde_json::json!({
                    "kind": format!("{kind:#06x}"), "unknown": true, "bytes": len,
                }),
                Object::Memfd(x) => x.json(),
                Object::SysvShm(x) => x.json(),
                Object::SysvSem(x) => x.json(),
                Object::SysvMsg(x) => x.json(),
                Object::MappingFlags(x) => x.json(),
            })
            .collect()
    }

    /// Values a kernel can have, checked before a restart acts on them.
    pub fn check(&self) -> Result<(), String> {
        for o in &self.items {
            match o {
                Object::NotRestorable(x) if x.fd < -1 => {
                    return Err(format!("a not-restorable object names fd {}", x.fd));
                }
                Object::Pipe(x) => x.check()?,
                Object::DeletedFile(x) => x.check()?,
                Object::Socket(x) => x.check()?,
                Object::TcpInFlight(x) => x.check()?,
                Object::Lock(x) => x.check()?,
                Object::Description(x) => x.check()?,
                Object::Mqueue(x) => x.check()?,
                Object::Pty(x) => x.check()?,
                Object::Pidfd(x) => x.check()?,
                Object::SysvSem(x) => {
                    x.check()?;
                    if self.sysv_sems().filter(|m| m.semid == x.semid).count() > 1 {
                        return Err(format!(
                            "two entries for System V semaphore set {}",
                            x.semid
                        ));
                    }
                }
                Object::SysvMsg(x) => {
                    x.check()?;
                    if self.sysv_msgs().filter(|m| m.msqid == x.msqid).count() > 1 {
                        return Err(format!(
                            "two entries for System V message queue {}",
                            x.msqid
                        ));
                    }
                }
                _ => {}
            }
            if let Object::Memfd(x) = o {
                x.check()?;
                if self.memfds().filter(|m| m.fd == x.fd).count() > 1 {
                    return Err(format!("two memfd entries for fd {}", x.fd));
                }
            }
            if let Object::MappingFlags(x) = o {
                x.check()?;
            }
            if let Object::SysvShm(x) = o {
                x.check()?;
                if self.sysv_segments().filter(|m| m.shmid == x.shmid).count() > 1 {
                    return Err(format!("two entries for System V segment {}", x.shmid));
                }
            }
        }
        for o in &self.items {
            match o {
                Object::Rlimits(x) => x.check()?,
                Object::ProcessAttrs(x) => x.check()?,
                Object::Inotify(x) => x.check()?,
                Object::Credentials(x) => x.check()?,
                Object::Scheduling(x) => x.check()?,
                _ => {}
            }
        }
        let timers: Vec<_> = self.posix_timers().collect();
        if timers.len() > super::posix_timers::MAX_TIMERS {
            return Err(format!("{} POSIX timers", timers.len()));
        }
        for (i, t) in timers.iter().enumerate() {
            t.check()?;
            if timers[..i].iter().any(|u| u.id == t.id) {
                return Err(format!("POSIX timer {} is there twice", t.id));
            }
        }
        Ok(())
    }

    /// Makes the objects of `stage` again; returns what failed, one line
    /// each.
    pub fn restore(&self, stage: Stage) -> Vec<String> {
        self.restore_with(stage, &|_, _| None)
    }

    /// [`Self::restore`], with `mapped` giving the restarter's descriptor
    /// of a shared memory object made for the device and inode of a file
    /// (a deleted file the program also maps shared).
    pub fn restore_with(
        &self,
        stage: Stage,
        mapped: &dyn Fn(u64, u64) -> Option<i32>,
    ) -> Vec<String> {
        let mut failed = Vec::new();
        for o in &self.items {
            match (o, stage) {
                (Object::Rlimits(x), Stage::Early) => {
                    failed.extend(super::rlimits::restore_early(x));
                }
                (Object::ProcessAttrs(x), Stage::Early) => {
                    failed.extend(super::process_attrs::restore_early(x));
                }
                // The flags of the mappings went with the staging; what is
                // left is given back early.
                (Object::MappingFlags(x), Stage::Early) => failed.extend(x.restore()),
                (Object::Pipe(x), Stage::Descriptors) => {
                    failed.extend(super::pipes::restore(x).unwrap_or_else(|e| vec![e]));
                }
                (Object::DeletedFile(x), Stage::Descriptors) => {
                    failed.extend(
                        super::deleted::restore(x, mapped(x.dev, x.ino))
                            .unwrap_or_else(|e| vec![e]),
                    );
                }
                (Object::Mqueue(x), Stage::Descriptors) => {
                    failed.extend(super::mqueue::restore(x).unwrap_or_else(|e| vec![e]));
                }
                (Object::Description(x), Stage::Descriptors) => {
                    failed.extend(super::descriptions::restore(x));
                }
                (Object::Pty(x), Stage::Descriptors) => failed.extend(super::pty::restore(x)),
                (Object::Pidfd(x), Stage::Descriptors) => {
                    failed.extend(super::pidfd::restore(x).err());
                }
                (Object::Inotify(x), Stage::Descriptors) => {
                    failed.extend(super::inotify::restore(x));
                }
                (Object::Lock(x), Stage::Late) => {
                    failed.extend(super::locks::restore(x).err());
                }
                (Object::ProcessAttrs(x), Stage::Late) => {
                    failed.extend(super::process_attrs::restore_late(x));
                }
                (Object::Credentials(x), Stage::Late) => {
                    failed.extend(super::credentials::restore_groups(x));
                }
                _ => {}
            }
        }
        // Sockets: with the descriptors, all together.
        if stage == Stage::Descriptors {
            // Not those at 0-2: the stdio rules give those numbers
            // (a tree places the ends it makes there itself).
            let socks: Vec<&super::sockets::Socket> = self
                .items
                .iter()
                .filter_map(|o| match o {
                    Object::Socket(x) if x.fd > 2 => Some(x),
                    _ => None,
                })
                .collect();
            if !socks.is_empty() {
                failed.extend(super::sockets::restore_all(&socks));
            }
        }
        // Not here: a not-restorable object (named at checkpoint time:
        // the restart refused it, or was told to go on with its
        // stand-in; a socket's is made with the sockets above); memfds and
        // System V segments, made with the memory (`restore::shared`); the
        // POSIX timers and the late limits, made by the restarted process
        // itself once its threads exist (`posix_timers::after_restart`,
        // `rlimits::after_restart`).
        failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(o: &Objects) -> Vec<u8> {
        let mut buf = vec![0u8; 4096];
        let mut e = Encoder::new(&mut buf);
        o.encode(&mut e).unwrap();
        let n = e.len();
        buf.truncate(n);
        buf
    }

    #[test]
    fn a_list_round_trips() {
        let o = Objects {
            items: vec![Object::NotRestorable(NotRestorable {
                fd: 7,
                kind: "socket".into(),
                text: "socket TCP 10.0.0.2:5432 (peer outside the process)".into(),
            })],
        };
        let b = encoded(&o);
        let mut d = Decoder::new(&b);
        assert_eq!(Objects::decode(&mut d).unwrap(), o);
        d.finish().unwrap();
        assert_eq!(
            o.problems(),
            vec![crate::kstate::Problem::new(
                "socket",
                "fd 7 socket TCP 10.0.0.2:5432 (peer outside the process)".to_string()
            )
            .of_fd(7)]
        );
    }

    #[test]
    fn the_capture_half_writes_what_the_decoder_reads() {
        let mut buf = vec![0u8; 256];
        let mut e = Encoder::new(&mut buf);
        NotRestorable::capture(&mut e, -1, "timer", b"a timer").unwrap();
        end(&mut e).unwrap();
        let n = e.len();
        let mut d = Decoder::new(&buf[..n]);
        let o = Objects::decode(&mut d).unwrap();
        assert_eq!(
            o.problems(),
            vec![crate::kstate::Problem::new("timer", "a timer".into())]
        );
    }

    /// An entry: kind, flags, payload.
    fn raw(kind: u16, flags: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = kind.to_le_bytes().to_vec();
        v.extend(flags.to_le_bytes());
        v.extend((payload.len() as u32).to_le_bytes());
        v.extend(payload);
        v
    }

    #[test]
    fn an_unknown_kind_is_refused_unless_skippable() {
        let mut b = raw(0x7777, 0, b"abc");
        b.extend(raw(0, 0, b""));
        let err = Objects::decode(&mut Decoder::new(&b)).unwrap_err();
        assert!(err.to_string().contains("newer selfckpt"), "{err}");
        assert!(err.to_string().contains(&0x7777.to_string()), "{err}");

        let mut b = raw(0x7777, SKIPPABLE, b"abc");
        b.extend(raw(0, 0, b""));
        let o = Objects::decode(&mut Decoder::new(&b)).unwrap();
        assert_eq!(
            o.items,
            vec![Object::Unknown {
                kind: 0x7777,
                len: 3
            }]
        );
        assert!(o.problems().is_empty());
        assert!(o.describe()[0].contains("0x7777"));
    }

    #[test]
    fn damaged_lists_are_errors_not_panics() {
        // A length beyond the record, a payload its decoder does not
        // consume, a missing END, a non-empty END.
        let mut long = raw(1, 0, b"");
        long[4..8].copy_from_slice(&1000u32.to_le_bytes());
        let mut extra = Vec::new();
        {
            let mut buf = vec![0u8; 256];
            let mut e = Encoder::new(&mut buf);
            NotRestorable::capture(&mut e, 1, "x", b"y").unwrap();
            let n = e.len();
            extra.extend(&buf[..n]);
        }
        let grown = (extra.len() - 8 + 1) as u32;
        extra[4..8].copy_from_slice(&grown.to_le_bytes());
        extra.push(0);
        extra.extend(raw(0, 0, b""));
        let no_end = raw(0x7777, SKIPPABLE, b"");
        let bad_end = raw(0, 0, b"z");
        let mut bad_flags = raw(0x7777, 2 | SKIPPABLE, b"");
        bad_flags.extend(raw(0, 0, b""));
        for b in [long, extra, no_end, bad_end, bad_flags] {
            assert!(Objects::decode(&mut Decoder::new(&b)).is_err(), "{b:?}");
        }
    }
}
