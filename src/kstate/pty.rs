//! Pseudo-terminals (object kind 0x0205): one entry per pty the process
//! holds a descriptor of, master (`/dev/ptmx`, its number from
//! `TIOCGPTN`) or slave (`/dev/pts/N`, its number from `st_rdev`), with
//! the pair's line settings (`TCGETS`), window size (`TIOCGWINSZ`),
//! packet mode (`TIOCGPKT`), lock state (`TIOCGPTLCK`), whether the slave
//! is the process's controlling terminal (and the terminal's foreground
//! group), the slave node's mode and owner, and every descriptor with
//! its open file description.
//!
//! ```text
//!  u32 index   u64 devpts device   termios (4 x u32, u8 line, 32 cc)
//!  4 x u16 winsize   u8 packet   u8 locked (2: unknown)
//!  u32 bytes queued toward the master   u32 toward the slave
//!  u8 ctty   u8 session leader   i32 foreground group
//!  u32 n, n x (i32 fd, u8 master, u32 description, u32 flags)
//! ```
//!
//! A pty whose master the process (or, in a tree, a member: `tree::files`)
//! holds is *ours*: a restart makes a new pair (`make_pair`: `/dev/ptmx`,
//! unlock, the slave opened through `TIOCGPTPEER`), gives it the settings
//! and puts each end at its numbers. In a restart's own namespaces the
//! pair is made in a devpts instance of the restart's own, mounted over
//! `/dev/pts`, where the same number is free: a program that stored the
//! slave's name (`ptsname`) opens its own terminal again. Without them
//! (`--tids new`) the lowest free number is taken on the way to the old
//! one; if another terminal has it, the pair gets another number and the
//! restart says so (a name the program stored is then another terminal's).
//! A slave whose master is outside (the user's terminal, another program's
//! pty) is not ours: it is the restarter's stdio (`restore::stdio`) or
//! reopened by path, as before.
//!
//! A terminal's queue has no peek. The bytes queued toward the master
//! (what the slave side wrote, not read yet) are taken by one process
//! holding the master (an abstract socket named after the pty is the
//! claim: a tree's members capture at once) and given back at once
//! through a new slave descriptor with output processing off, the
//! capture waiting until the master's queue holds them all again; the
//! image holds them and a restart writes them into the new pair the same
//! way. Where that would change the pty (a packet-mode status byte
//! waiting, `EXTPROC`, no `TIOCGPTPEER`), and for bytes queued toward the
//! slave (giving them back would run them through the line discipline
//! again: echo, editing, signals), the checkpoint names them with a
//! `NotRestorable` entry of kind `pty` (bytes the kernel shows: in
//! canonical mode only complete lines are counted; a partial line typed
//! toward the slave is not seen, and is lost).
//!
//! Capture runs while the program's threads are suspended: fixed tables
//! on the stack, raw ioctls, never an allocation. Restore runs in the
//! restarter.

use super::objects::{entry, Kind, NotRestorable};
use super::pipes::same_description;
use super::unrestorable::Words;
use super::{CaptureBuffers, KstateError};
use crate::capture::sys;
use crate::image::codec::{CodecError, Decoder, Encoder};
use std::os::fd::FromRawFd;

/// The kind `--unrestorable` names.
pub const KIND: &str = "pty";
/// Most pty descriptors one capture records.
const MAX_ENDS: usize = 64;
/// First major number of Unix98 pty slaves (136-143).
const SLAVE_MAJOR: u32 = 136;
const TIOCGPKT: libc::c_ulong = 0x8004_5438;
const TIOCGPTLCK: libc::c_ulong = 0x8004_5439;
const TIOCGPTPEER: libc::c_ulong = 0x5441;

/// The line settings, as `TCGETS` gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Termios {
    pub iflag: u32,
    pub oflag: u32,
    pub cflag: u32,
    pub lflag: u32,
    pub line: u8,
    pub cc: [u8; 32],
}

/// One descriptor of a pty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PtyEnd {
    pub fd: i32,
    pub master: bool,
    /// The index (in the entry's list) of the first descriptor sharing
    /// this one's open file description.
    pub desc: u32,
    /// `F_GETFL`, with `O_CLOEXEC` for `FD_CLOEXEC`.
    pub flags: u32,
}

/// One pseudo-terminal and the process's descriptors of it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pty {
    /// N of /dev/pts/N.
    pub index: u32,
    /// The devpts instance's device (of a slave's node; 0 if none held).
    pub dev: u64,
    pub termios: Termios,
    /// rows, cols, xpixel, ypixel.
    pub winsize: [u16; 4],
    pub packet: bool,
    /// 0 unlocked, 1 locked, 2 not known (no master held).
    pub locked: u8,
    pub to_master: u32,
    pub to_slave: u32,
    /// The slave is the process's controlling terminal.
    pub ctty: bool,
    pub session_leader: bool,
    /// The terminal's foreground process group (0: not known).
    pub foreground: i32,
    pub ends: Vec<PtyEnd>,
    /// The bytes queued toward the master, taken at the checkpoint and
    /// given back to the running program (empty: none, or another
    /// process of the tree took them).
    pub to_master_data: Vec<u8>,
    /// The slave's node in devpts: its permission bits, owner and group
    /// (`grantpt` gives the caller's; a login daemon gives the user's,
    /// `mesg n` takes the group's write bit). None: an image of before.
    pub node: Option<(u32, u32, u32)>,
}

impl Pty {
    pub fn encode(&self, e: &mut Encoder) -> Result<(), CodecError> {
        e.u32(self.index)?;
        e.u64(self.dev)?;
        let t = &self.termios;
        e.u32(t.iflag)?;
        e.u32(t.oflag)?;
        e.u32(t.cflag)?;
        e.u32(t.lflag)?;
        e.u8(t.line)?;
        e.bytes(&t.cc)?;
        self.winsize.iter().try_for_each(|v| e.u16(*v))?;
        e.u8(self.packet as u8)?;
        e.u8(self.locked)?;
        e.u32(self.to_master)?;
        e.u32(self.to_slave)?;
        e.u8(self.ctty as u8)?;
        e.u8(self.session_leader as u8)?;
        e.i32(self.foreground)?;
        e.u32(self.ends.len() as u32)?;
        self.ends.iter().try_for_each(|x| encode_end(e, x))?;
        e.bytes(&self.to_master_data)?;
        encode_node(e, self.node)
    }

    pub fn decode(d: &mut Decoder) -> Result<Self, CodecError> {
        let index = d.u32()?;
        let dev = d.u64()?;
        let (iflag, oflag, cflag, lflag, line) = (d.u32()?, d.u32()?, d.u32()?, d.u32()?, d.u8()?);
        let raw = d.bytes()?;
        let cc: [u8; 32] = raw.try_into().map_err(|_| CodecError::BadValue {
            field: "length of a pty's control characters",
            value: raw.len() as u64,
        })?;
        let mut winsize = [0u16; 4];
        for w in &mut winsize {
            *w = d.u16()?;
        }
        let packet = d.u8()? != 0;
        let locked = d.u8()?;
        let (to_master, to_slave) = (d.u32()?, d.u32()?);
        let ctty = d.u8()? != 0;
        let session_leader = d.u8()? != 0;
        let foreground = d.i32()?;
        let n = d.count(13)?;
        let ends = (0..n)
            .map(|_| {
                Ok(PtyEnd {
                    fd: d.i32()?,
                    master: d.u8()? != 0,
                    desc: d.u32()?,
                    flags: d.u32()?,
                })
            })
            .collect::<Result<_, CodecError>>()?;
        let to_master_data = d.bytes()?.to_vec();
        // Trailing, optional: older images end before it.
        let node = if d.remaining() >= 12 {
            Some((d.u32()?, d.u32()?, d.u32()?)).filter(|n| n.0 != NO_NODE)
        } else {
            None
        };
        Ok(Pty {
            index,
            dev,
            termios: Termios {
                iflag,
                oflag,
                cflag,
                lflag,
                line,
                cc,
            },
            winsize,
            packet,
            locked,
            to_master,
            to_slave,
            ctty,
            session_leader,
            foreground,
            ends,
            to_master_data,
            node,
        })
    }

    /// Hostile values: refused before a restart acts on them.
    pub fn check(&self) -> Result<(), String> {
        if self.ends.is_empty() || self.ends.len() > MAX_ENDS {
            return Err(format!("a pty with {} descriptors", self.ends.len()));
        }
        if self.locked > 2 || self.index > 1 << 20 || self.node.is_some_and(|n| n.0 & !0o7777 != 0)
        {
            return Err(format!("pty {} has impossible values", self.index));
        }
        for (i, x) in self.ends.iter().enumerate() {
            if x.fd < 0 || x.desc as usize > i || self.ends[x.desc as usize].master != x.master {
                return Err(format!("pty fd {} has impossible values", x.fd));
            }
            if self.ends[..i].iter().any(|y| y.fd == x.fd) {
                return Err(format!("pty fd {} is there twice", x.fd));
            }
        }
        Ok(())
    }

    /// Whether the process holds the master: the pair is its own.
    pub fn ours(&self) -> bool {
        self.ends.iter().any(|x| x.master)
    }

    /// The descriptors a restart makes anew (none if the master is not
    /// held: the slave is then an outside terminal, reopened by path).
    pub fn fds(&self) -> impl Iterator<Item = i32> + '_ {
        let ours = self.ours();
        self.ends.iter().filter(move |_| ours).map(|x| x.fd)
    }

    /// The slave's name at the checkpoint.
    pub fn name(&self) -> String {
        format!("/dev/pts/{}", self.index)
    }

    /// One line of `inspect`.
    pub fn describe(&self) -> String {
        let ends: Vec<String> = self
            .ends
            .iter()
            .map(|x| format!("{}{}", x.fd, if x.master { " (master)" } else { "" }))
            .collect();
        format!(
            "pty {}: fds {}; {}; {}x{}{}{}{}{}",
            self.name(),
            ends.join(","),
            if self.ours() {
                "the pair is the program's"
            } else {
                "its master is outside the process"
            },
            self.winsize[1],
            self.winsize[0],
            if self.termios.lflag & libc::ICANON != 0 {
                " canonical"
            } else {
                " raw"
            },
            if self.packet { " packet mode" } else { "" },
            if self.locked == 1 { " locked" } else { "" },
            if self.ctty {
                " controlling terminal"
            } else {
                ""
            },
        )
    }

    /// `inspect --json`.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": "pty", "index": self.index, "ours": self.ours(),
            "fds": self.ends.iter().map(|x| x.fd).collect::<Vec<_>>(),
            "masters": self.ends.iter().filter(|x| x.master).map(|x| x.fd).collect::<Vec<_>>(),
            "iflag": self.termios.iflag, "oflag": self.termios.oflag,
            "cflag": self.termios.cflag, "lflag": self.termios.lflag,
            "rows": self.winsize[0], "cols": self.winsize[1],
            "packet": self.packet, "locked": self.locked,
            "ctty": self.ctty, "foreground": self.foreground,
            "queued_to_master": self.to_master, "taken_to_master": self.to_master_data.len(),
            "queued_to_slave": self.to_slave,
        })
    }
}

/// The node mode written where the slave's node was not seen.
const NO_NODE: u32 = u32::MAX;

fn encode_node(e: &mut Encoder, node: Option<(u32, u32, u32)>) -> Result<(), CodecError> {
    let (mode, uid, gid) = node.unwrap_or((NO_NODE, 0, 0));
    e.u32(mode)?;
    e.u32(uid)?;
    e.u32(gid)
}

/// The slave's node as the process sees it: through its slave
/// descriptor, else by its path (when that is the very node). No
/// allocation.
fn node_of(slave_fd: i32, index: u32, rdev: u64) -> Option<(u32, u32, u32)> {
    let st = if slave_fd >= 0 {
        sys::fstat(slave_fd).ok()?
    } else {
        let mut p = sys::PathBuf::<48>::new();
        p.push(b"/dev/pts/").push_u64(index as u64);
        sys::stat_path(p.as_cstr_bytes())
            .ok()
            .filter(|st| st.st_rdev == rdev)?
    };
    Some((st.st_mode & 0o7777, st.st_uid, st.st_gid))
}

fn encode_end(e: &mut Encoder, x: &PtyEnd) -> Result<(), CodecError> {
    e.i32(x.fd)?;
    e.u8(x.master as u8)?;
    e.u32(x.desc)?;
    e.u32(x.flags)
}

// ---- Capture (suspended world: no allocation) ----

/// The pty a character device is, if it is one: (index, master).
/// `master_index` asks a master its number.
pub fn pty_of(st: &libc::stat, master_index: impl FnOnce() -> Option<u32>) -> Option<(u32, bool)> {
    if st.st_mode & libc::S_IFMT != libc::S_IFCHR {
        return None;
    }
    let (major, minor) = (libc::major(st.st_rdev), libc::minor(st.st_rdev));
    if (major, minor) == (5, 2) {
        return master_index().map(|n| (n, true));
    }
    if (SLAVE_MAJOR..SLAVE_MAJOR + 8).contains(&major) {
        return Some(((major - SLAVE_MAJOR) * 256 + minor, false));
    }
    None
}

/// `TIOCGPTN` of a master descriptor.
fn master_index(fd: i32) -> Option<u32> {
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes one unsigned int.
    (unsafe { libc::ioctl(fd, libc::TIOCGPTN, &mut n) } == 0).then_some(n)
}

fn int_ioctl(fd: i32, req: libc::c_ulong) -> Option<i32> {
    let mut v: libc::c_int = 0;
    // SAFETY: each request used here writes one int.
    (unsafe { libc::ioctl(fd, req as _, &mut v) } == 0).then_some(v)
}

/// The `tty_nr` field of /proc/self/stat (0: none).
fn controlling_tty(text: &mut [u8]) -> u64 {
    let Ok(n) = sys::read_file(b"/proc/thread-self/stat\0", text) else {
        return 0;
    };
    let t = &text[..n];
    // After the command's closing parenthesis: state ppid pgrp session tty_nr.
    let Some(close) = t.iter().rposition(|&c| c == b')') else {
        return 0;
    };
    let mut fields = t[close + 1..]
        .split(|&c| c == b' ')
        .filter(|f| !f.is_empty());
    fields
        .nth(4)
        .and_then(|f| sys::parse_u64(f))
        .map_or(0, |(v, _)| v)
}

/// Writes one entry per pty held, and a `NotRestorable` entry for bytes
/// queued in a pair of the process's own. No allocation.
pub fn capture(
    e: &mut Encoder,
    bufs: &mut CaptureBuffers,
    skip_fd: &dyn Fn(i32) -> bool,
) -> Result<(), KstateError> {
    // (index, fd, master, rdev-dev of a slave)
    let mut rows = [(0u32, 0i32, false, 0u64); MAX_ENDS];
    let mut n = 0usize;
    super::fds::for_each_fd(skip_fd, |fd| {
        let Ok(st) = sys::fstat(fd) else {
            return Ok(());
        };
        if let Some((index, master)) = pty_of(&st, || master_index(fd)) {
            if n < MAX_ENDS {
                rows[n] = (index, fd, master, if master { 0 } else { st.st_dev });
                n += 1;
            }
        }
        Ok(())
    })?;
    if n == 0 {
        return Ok(());
    }
    let tty_nr = controlling_tty(bufs.text);
    let leader = {
        // SAFETY: getsid(0) asks this process's session.
        let sid = unsafe { libc::getsid(0) };
        sid >= 0 && sid as u32 == sys::getpid()
    };
    let mut ends = [PtyEnd::default(); MAX_ENDS];
    for i in 0..n {
        let index = rows[i].0;
        if rows[..i].iter().any(|r| r.0 == index) {
            continue;
        }
        let mut k = 0usize;
        let mut dev = 0u64;
        let (mut to_master, mut to_slave) = (0u32, 0u32);
        let mut master_fd = -1;
        let mut slave_fd = -1;
        for r in rows[i..n].iter().filter(|r| r.0 == index) {
            let fd = r.1;
            let desc = (0..k)
                .find(|&j| ends[j].master == r.2 && same_description(ends[j].fd, fd))
                .map_or(k, |j| ends[j].desc as usize);
            let flags = super::pipes::end_of(fd, 0).map_or(0, |x| x.flags);
            ends[k] = PtyEnd {
                fd,
                master: r.2,
                desc: desc as u32,
                flags,
            };
            k += 1;
            let queued = int_ioctl(fd, libc::FIONREAD as _).unwrap_or(0).max(0) as u32;
            if r.2 {
                master_fd = fd;
                to_master = to_master.max(queued);
            } else {
                slave_fd = fd;
                dev = r.3;
                to_slave = to_slave.max(queued);
            }
        }
        let any = if master_fd >= 0 { master_fd } else { slave_fd };
        // SAFETY: termios and winsize are plain old data the ioctls fill.
        let mut t: libc::termios = unsafe { core::mem::zeroed() };
        let mut ws: libc::winsize = unsafe { core::mem::zeroed() };
        // SAFETY: TCGETS fills a termios, TIOCGWINSZ a winsize.
        unsafe {
            libc::ioctl(any, libc::TCGETS, &mut t);
            libc::ioctl(any, libc::TIOCGWINSZ, &mut ws);
        }
        let mut cc = [0u8; 32];
        for (d, s) in cc.iter_mut().zip(t.c_cc.iter()) {
            *d = *s;
        }
        let rdev = libc::makedev(SLAVE_MAJOR + index / 256, index % 256);
        let ctty = tty_nr != 0 && tty_nr == rdev;
        let foreground = if ctty {
            int_ioctl(any, libc::TIOCGPGRP as _).unwrap_or(0)
        } else {
            0
        };
        let (packet, locked) = if master_fd >= 0 {
            (
                int_ioctl(master_fd, TIOCGPKT).unwrap_or(0) != 0,
                int_ioctl(master_fd, TIOCGPTLCK).map_or(2, |v| (v != 0) as u8),
            )
        } else {
            (false, 2)
        };
        // The bytes queued toward the master: taken and given back here
        // (by one process of the tree), where that leaves the program's
        // pty as it was.
        let mut taken_len = 0usize;
        let mut to_master_named = to_master;
        if to_master > 0 && master_fd >= 0 {
            match take_to_master(master_fd, index, to_master as usize, packet, bufs.text) {
                Taken::Bytes(n) => {
                    taken_len = n;
                    to_master_named = 0;
                }
                Taken::Elsewhere => to_master_named = 0,
                Taken::No => {}
            }
        }
        entry(e, Kind::Pty, 0, |e| -> Result<(), CodecError> {
            e.u32(index)?;
            e.u64(dev)?;
            e.u32(t.c_iflag)?;
            e.u32(t.c_oflag)?;
            e.u32(t.c_cflag)?;
            e.u32(t.c_lflag)?;
            e.u8(t.c_line)?;
            e.bytes(&cc)?;
            for v in [ws.ws_row, ws.ws_col, ws.ws_xpixel, ws.ws_ypixel] {
                e.u16(v)?;
            }
            e.u8(packet as u8)?;
            e.u8(locked)?;
            e.u32(to_master)?;
            e.u32(to_slave)?;
            e.u8(ctty as u8)?;
            e.u8(leader as u8)?;
            e.i32(foreground)?;
            e.u32(k as u32)?;
            ends[..k].iter().try_for_each(|x| encode_end(e, x))?;
            e.bytes(&bufs.text[..taken_len])?;
            encode_node(e, node_of(slave_fd, index, rdev))
        })?;
        // Queued bytes of a pair whose master is here or in the tree: a
        // slave alone is an outside terminal, whose queue is not ours.
        for (count, toward, fd) in [
            (to_master_named, &b"master"[..], master_fd),
            (to_slave, &b"slave"[..], slave_fd),
        ] {
            if count == 0 || fd < 0 || (master_fd < 0 && !crate::tree::covers_forks()) {
                continue;
            }
            let mut words = [0u8; 240];
            let mut w = Words::new(&mut words);
            w.push(b"pty /dev/pts/");
            w.push_u64(index as u64);
            w.push(b": ");
            w.push_u64(count as u64);
            w.push(b" bytes queued toward the ");
            w.push(toward);
            w.push(b", which cannot be read without taking them from the program: a restart loses them");
            let len = w.len();
            NotRestorable::capture(e, fd, KIND, &words[..len])?;
        }
    }
    Ok(())
}

/// What became of the bytes queued toward a master.
enum Taken {
    /// Taken into the buffer (that many) and given back.
    Bytes(usize),
    /// Another process of the tree is taking them.
    Elsewhere,
    /// Left where they are (named as not restorable).
    No,
}

/// An abstract socket bound to a name of this pty: only one process at a
/// time takes its queue (the tree's members capture at once; a master
/// description shared by fork is in several of them). Dropped: closed.
struct Claim(i32);

impl Claim {
    fn take(master: i32, index: u32) -> Result<Claim, bool> {
        let Ok(st) = sys::fstat(master) else {
            return Err(false);
        };
        // SAFETY: a socket of ours; sockaddr_un is plain old data.
        unsafe {
            let fd = libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
            if fd < 0 {
                return Err(false);
            }
            let mut a: libc::sockaddr_un = core::mem::zeroed();
            a.sun_family = libc::AF_UNIX as libc::sa_family_t;
            let mut name = [0u8; 100];
            let mut w = Words::new(&mut name);
            w.push(b"selfckpt-pty-");
            w.push_u64(st.st_dev);
            w.push(b"-");
            w.push_u64(st.st_ino);
            w.push(b"-");
            w.push_u64(index as u64);
            let n = w.len();
            for (d, s) in a.sun_path[1..].iter_mut().zip(&name[..n]) {
                *d = *s as libc::c_char;
            }
            let len = (core::mem::size_of::<libc::sa_family_t>() + 1 + n) as libc::socklen_t;
            if libc::bind(fd, (&a as *const libc::sockaddr_un).cast(), len) != 0 {
                let busy = *libc::__errno_location() == libc::EADDRINUSE;
                libc::close(fd);
                return Err(busy);
            }
            Ok(Claim(fd))
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        // SAFETY: closing the claim's own socket.
        unsafe { libc::close(self.0) };
    }
}

/// Takes the `count` bytes queued toward the master `m` into `buf` and
/// gives them back through a new descriptor of the slave (`TIOCGPTPEER`,
/// output processing off while writing, the settings as they were
/// after), waiting until the master has them all again. Not done where
/// it would change the pty: a packet-mode status byte waiting (reading
/// would take it), `EXTPROC` (a settings change would queue a status), no
/// peer descriptor, more bytes than `buf` holds. No allocation.
fn take_to_master(m: i32, index: u32, count: usize, packet: bool, buf: &mut [u8]) -> Taken {
    if count > buf.len() {
        return Taken::No;
    }
    let _claim = match Claim::take(m, index) {
        Ok(c) => c,
        Err(true) => return Taken::Elsewhere,
        Err(false) => return Taken::No,
    };
    let mut p = libc::pollfd {
        fd: m,
        events: libc::POLLPRI,
        revents: 0,
    };
    // SAFETY: poll on one pollfd of ours, no wait.
    if packet && unsafe { libc::poll(&mut p, 1, 0) } == 1 && p.revents & libc::POLLPRI != 0 {
        return Taken::No;
    }
    let how = libc::O_RDWR | libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_CLOEXEC;
    // SAFETY: TIOCGPTPEER opens a new descriptor of our master's slave.
    let peer = unsafe { libc::ioctl(m, TIOCGPTPEER as _, how) };
    if peer < 0 {
        return Taken::No;
    }
    let peer = sys::RawFd::from_raw(peer);
    // SAFETY: termios is plain old data TCGETS fills.
    let mut was: libc::termios = unsafe { core::mem::zeroed() };
    // SAFETY: TCGETS writes one termios.
    if unsafe { libc::ioctl(peer.raw(), libc::TCGETS, &mut was) } != 0
        || was.c_lflag & libc::EXTPROC != 0
    {
        return Taken::No;
    }
    // Read: in packet mode each read starts with a TIOCPKT_DATA byte.
    let mut got = 0usize;
    let mut chunk = [0u8; 1025];
    let mut tries = 0;
    while got < count && tries < 1000 {
        let want = (count - got).min(1024) + packet as usize;
        // SAFETY: reading into our stack buffer of at least `want` bytes.
        let n = unsafe { libc::read(m, chunk.as_mut_ptr().cast(), want) };
        if n <= 0 {
            tries += 1;
            sleep_ms(1);
            continue;
        }
        let data = &chunk[packet as usize..n as usize];
        buf[got..got + data.len()].copy_from_slice(data);
        got += data.len();
    }
    // Give back, byte for byte.
    let mut raw = was;
    raw.c_oflag &= !libc::OPOST;
    // SAFETY: TCSETS reads one termios; writes from our buffer.
    unsafe {
        libc::ioctl(peer.raw(), libc::TCSETS, &raw);
        let mut off = 0usize;
        let mut tries = 0;
        while off < got && tries < 1000 {
            let n = libc::write(peer.raw(), buf[off..got].as_ptr().cast(), got - off);
            if n > 0 {
                off += n as usize;
            } else {
                tries += 1;
                sleep_ms(1);
            }
        }
        libc::ioctl(peer.raw(), libc::TCSETS, &was);
    }
    // The slave's writes reach the master's queue through a work item:
    // wait (at most a second) until they are all there again.
    for _ in 0..1000 {
        if int_ioctl(m, libc::FIONREAD as _).unwrap_or(0).max(0) as usize >= got {
            break;
        }
        sleep_ms(1);
    }
    Taken::Bytes(got)
}

fn sleep_ms(ms: i64) {
    let ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: ms * 1_000_000,
    };
    // SAFETY: nanosleep reads one timespec.
    unsafe { libc::nanosleep(&ts, core::ptr::null_mut()) };
}

/// Puts the bytes queued toward the master back into the new pair's
/// master queue: written from a slave descriptor with output processing
/// off, the settings as recorded after.
pub fn refill(made: &Made, x: &Pty) -> std::io::Result<()> {
    if x.to_master_data.is_empty() {
        return Ok(());
    }
    let fd = open_slave(made, libc::O_RDWR as u32, 3)?;
    // SAFETY: our slave descriptor; closed below.
    let peer = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    let mut raw = x.termios;
    raw.oflag &= !libc::OPOST;
    set_termios(fd, &raw)?;
    let mut off = 0usize;
    let mut tries = 0;
    while off < x.to_master_data.len() {
        // SAFETY: writing from our buffer to our descriptor.
        let n = unsafe {
            libc::write(
                fd,
                x.to_master_data[off..].as_ptr().cast(),
                x.to_master_data.len() - off,
            )
        };
        if n > 0 {
            off += n as usize;
        } else if tries < 1000 {
            tries += 1;
            std::thread::sleep(std::time::Duration::from_millis(1));
        } else {
            return Err(std::io::Error::last_os_error());
        }
    }
    set_termios(fd, &x.termios)?;
    drop(peer);
    Ok(())
}

// ---- Restore (the restarter: ordinary Rust) ----

/// Whether this restart has a mount namespace of its own (set by the
/// restart once it knows: `set_private_mounts`).
static PRIVATE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Tells the restore whether this restart runs in namespaces of its own
/// (its own mount namespace: a devpts instance may be mounted there).
pub fn set_private_mounts(private: bool) {
    PRIVATE.store(private, std::sync::atomic::Ordering::Release);
}

/// Whether the restart has a mount namespace of its own.
pub fn private_mounts() -> bool {
    PRIVATE.load(std::sync::atomic::Ordering::Acquire)
}

/// Whether this restart mounted a devpts instance of its own.
static OWN_DEVPTS: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);
const MOUNTED: u8 = 1;
const REFUSED: u8 = 2;

/// In the restart's own mount namespace (`private`): mounts a devpts
/// instance of the restart's own over /dev/pts, once, so that every old
/// number is free. Returns whether the restart's ptys are made there.
pub fn own_devpts(private: bool) -> bool {
    use std::sync::atomic::Ordering::*;
    match OWN_DEVPTS.load(Acquire) {
        MOUNTED => return true,
        REFUSED => return false,
        _ if !private => return false,
        _ => {} // not tried yet
    }
    // SAFETY: mounting a new devpts instance in this process's private
    // mount namespace (pidns made it private); C strings are literals.
    let r = unsafe {
        libc::mount(
            c"devpts".as_ptr(),
            c"/dev/pts".as_ptr(),
            c"devpts".as_ptr(),
            libc::MS_NOSUID | libc::MS_NOEXEC,
            c"newinstance,ptmxmode=0666,mode=0620".as_ptr().cast(),
        )
    };
    let ok = r == 0;
    OWN_DEVPTS.store(if ok { MOUNTED } else { REFUSED }, Release);
    if !ok {
        eprintln!(
            "selfckpt: warning: cannot mount a devpts instance of the restart's own ({}): \
             ptys are made among the system's",
            std::io::Error::last_os_error()
        );
    }
    ok
}

/// A new pair's master, with the number it got.
pub struct Made {
    pub master: std::os::fd::OwnedFd,
    pub index: u32,
}

fn cvt(r: libc::c_int) -> std::io::Result<libc::c_int> {
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// The ptys this restart made again with their old number in its own
/// devpts instance: (number, devpts device at the checkpoint, 0 unknown).
/// Processes of a tree inherit the list (made before they fork).
static KEPT: std::sync::Mutex<Vec<(u32, u64)>> = std::sync::Mutex::new(Vec::new());

/// Whether `/dev/pts/N` of devpts device `dev` at the checkpoint is a pty
/// this restart made again under that number: opened by path in the
/// restart's own instance, it is the program's terminal again.
pub fn made_again(n: u32, dev: u64) -> bool {
    KEPT.lock()
        .is_ok_and(|k| k.iter().any(|&(i, d)| i == n && (d == 0 || d == dev)))
}

/// Makes a new pair like `x` (numbered `above` or higher, close-on-exec):
/// number `x.index` where it is free, settings, window size, packet
/// mode. The slave side is opened with [`open_slave`]; call [`finish`]
/// once it is (the lock is given back last). `private`: the restart has a
/// mount namespace of its own.
pub fn make_pair(x: &Pty, above: i32, private: bool) -> std::io::Result<Made> {
    use std::os::fd::OwnedFd;
    let ptmx = if own_devpts(private) {
        c"/dev/pts/ptmx"
    } else {
        c"/dev/ptmx"
    };
    let mut fillers: Vec<OwnedFd> = Vec::new();
    let made = loop {
        // SAFETY: opening the pty multiplexer; the descriptor is ours.
        let fd = cvt(unsafe {
            libc::open(
                ptmx.as_ptr(),
                libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
            )
        })?;
        // SAFETY: fd was just opened and is owned here.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let n = master_index(std::os::fd::AsRawFd::as_raw_fd(&fd))
            .ok_or_else(|| std::io::Error::other("the new master has no number"))?;
        // Numbers are given lowest first: the ones below the old one are
        // held until it comes (fillers, closed below).
        if n >= x.index || fillers.len() > 4096 {
            break Made {
                master: fd,
                index: n,
            };
        }
        fillers.push(fd);
    };
    drop(fillers);
    let m = std::os::fd::AsRawFd::as_raw_fd(&made.master);
    // SAFETY: a descriptor number above `above` for the master, then
    // ioctls on it with the values they read.
    unsafe {
        let moved = cvt(libc::fcntl(m, libc::F_DUPFD_CLOEXEC, above))?;
        let master = OwnedFd::from_raw_fd(moved);
        let unlock: libc::c_int = 0;
        cvt(libc::ioctl(moved, libc::TIOCSPTLCK, &unlock))?;
        let pkt: libc::c_int = x.packet as libc::c_int;
        if x.packet {
            cvt(libc::ioctl(moved, libc::TIOCPKT, &pkt))?;
        }
        let ws = libc::winsize {
            ws_row: x.winsize[0],
            ws_col: x.winsize[1],
            ws_xpixel: x.winsize[2],
            ws_ypixel: x.winsize[3],
        };
        cvt(libc::ioctl(moved, libc::TIOCSWINSZ, &ws))?;
        set_termios(moved, &x.termios)?;
        give_node(x, made.index);
        if made.index == x.index && own_devpts(private) {
            if let Ok(mut k) = KEPT.lock() {
                k.push((x.index, x.dev));
            }
        }
        Ok(Made {
            master,
            index: made.index,
        })
    }
}

/// The new slave node gets the mode and owner the old one had (said
/// where it cannot: a restart by another user than the owner).
fn give_node(x: &Pty, index: u32) {
    use std::os::unix::fs::PermissionsExt;
    let Some((mode, uid, gid)) = x.node else {
        return;
    };
    let path = format!("/dev/pts/{index}");
    let now = std::fs::metadata(&path).map(|m| {
        use std::os::unix::fs::MetadataExt;
        (m.mode() & 0o7777, m.uid(), m.gid())
    });
    if now.as_ref().is_ok_and(|n| *n == (mode, uid, gid)) {
        return;
    }
    let r = std::os::unix::fs::chown(&path, Some(uid), Some(gid))
        .and_then(|()| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)));
    if let Err(e) = r {
        eprintln!(
            "selfckpt: warning: pty {}: its slave's mode {mode:o} and owner {uid}:{gid} cannot be given back: {e}",
            x.index
        );
    }
}

fn set_termios(fd: i32, t: &Termios) -> std::io::Result<()> {
    // SAFETY: termios is plain old data; TCGETS/TCSETS read and write one.
    unsafe {
        let mut k: libc::termios = core::mem::zeroed();
        cvt(libc::ioctl(fd, libc::TCGETS, &mut k))?;
        k.c_iflag = t.iflag;
        k.c_oflag = t.oflag;
        k.c_cflag = t.cflag;
        k.c_lflag = t.lflag;
        k.c_line = t.line;
        for (d, s) in k.c_cc.iter_mut().zip(t.cc.iter()) {
            *d = *s;
        }
        cvt(libc::ioctl(fd, libc::TCSETS, &k))?;
    }
    Ok(())
}

/// Opens a new description of the pair's slave (numbered `above` or
/// higher, close-on-exec, never the controlling terminal by itself):
/// through `TIOCGPTPEER`, or its path where the kernel lacks it.
pub fn open_slave(made: &Made, flags: u32, above: i32) -> std::io::Result<i32> {
    let m = std::os::fd::AsRawFd::as_raw_fd(&made.master);
    let how =
        (flags as i32 & libc::O_ACCMODE) | libc::O_NOCTTY | libc::O_CLOEXEC | libc::O_NONBLOCK;
    // SAFETY: TIOCGPTPEER opens the slave of our master; open of its path
    // otherwise (a C string made here).
    let fd = unsafe {
        let fd = libc::ioctl(m, TIOCGPTPEER as _, how);
        if fd >= 0 {
            fd
        } else {
            let p = std::ffi::CString::new(format!("/dev/pts/{}", made.index))
                .map_err(|_| std::io::Error::other("bad path"))?;
            cvt(libc::open(p.as_ptr(), how))?
        }
    };
    // SAFETY: moving our new descriptor above the program's numbers.
    unsafe {
        let moved = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, above);
        libc::close(fd);
        cvt(moved)
    }
}

/// Gives the pair its lock back (after its slaves were opened).
pub fn finish(made: &Made, x: &Pty) -> std::io::Result<()> {
    if x.locked == 1 {
        let lock: libc::c_int = 1;
        // SAFETY: TIOCSPTLCK reads one int.
        cvt(unsafe {
            libc::ioctl(
                std::os::fd::AsRawFd::as_raw_fd(&made.master),
                libc::TIOCSPTLCK,
                &lock,
            )
        })?;
    }
    Ok(())
}

/// Puts `from` at `fd` with the end's flags (status flags and
/// close-on-exec).
pub fn place(from: i32, fd: i32, flags: u32) -> std::io::Result<()> {
    let cloexec = if flags as i32 & libc::O_CLOEXEC != 0 {
        libc::O_CLOEXEC
    } else {
        0
    };
    // SAFETY: dup3 onto a number the restarter freed; F_SETFL on it.
    unsafe {
        if libc::dup3(from, fd, cloexec) != fd {
            return Err(std::io::Error::last_os_error());
        }
        let settable = libc::O_APPEND | libc::O_NONBLOCK | libc::O_ASYNC;
        cvt(libc::fcntl(fd, libc::F_SETFL, flags as i32 & settable))?;
    }
    Ok(())
}

/// The warning a pair given another number earns (None: the same).
pub fn renumbered(x: &Pty, made: &Made) -> Option<String> {
    (made.index != x.index).then(|| {
        format!(
            "pty {} is /dev/pts/{} now (its number is another terminal's here): a name the \
             program stored opens that other terminal",
            x.name(),
            made.index
        )
    })
}

/// Makes a pty of the process's own again (stage Descriptors): the pair,
/// one slave description per recorded one, every end at its numbers.
/// Returns what failed, one line each. Nothing to do for an outside
/// terminal's slave (reopened by path).
pub fn restore(x: &Pty) -> Vec<String> {
    let private = private_mounts();
    if !x.ours() {
        return Vec::new();
    }
    let above = x.ends.iter().map(|e| e.fd).max().unwrap_or(2).max(2) + 1;
    let made = match make_pair(x, above, private) {
        Ok(m) => m,
        Err(e) => {
            return x
                .ends
                .iter()
                .map(|end| format!("fd {} ({}): cannot be made again: {e}", end.fd, x.name()))
                .collect()
        }
    };
    let mut failed: Vec<String> = renumbered(x, &made).into_iter().collect();
    if let Err(e) = refill(&made, x) {
        failed.push(format!(
            "{}: the {} bytes queued toward its master cannot be given back: {e}",
            x.name(),
            x.to_master_data.len()
        ));
    }
    let m = std::os::fd::AsRawFd::as_raw_fd(&made.master);
    // One descriptor per description: the master's, or a new slave's.
    let mut descs: Vec<(u32, i32)> = Vec::new();
    for (i, end) in x.ends.iter().enumerate() {
        if end.desc as usize == i && !end.master {
            match open_slave(&made, end.flags, above) {
                Ok(fd) => descs.push((i as u32, fd)),
                Err(e) => failed.push(format!("fd {} ({}): {e}", end.fd, x.name())),
            }
        }
    }
    for end in &x.ends {
        let from = if end.master {
            Some(m)
        } else {
            descs.iter().find(|d| d.0 == end.desc).map(|d| d.1)
        };
        if let Some(from) = from {
            if let Err(e) = place(from, end.fd, end.flags) {
                failed.push(format!("fd {} ({}): {e}", end.fd, x.name()));
            }
        }
    }
    for (_, fd) in descs {
        // SAFETY: closing our temporary slave descriptors.
        unsafe { libc::close(fd) };
    }
    if let Err(e) = finish(&made, x) {
        failed.push(format!("{}: cannot be locked again: {e}", x.name()));
    }
    failed
}

/// Makes the pty the process's controlling terminal again, if it was and
/// the process leads its session (call once its session is made): through
/// descriptor `fd`, a slave of the new pair. Gives the terminal its
/// foreground group back where that group exists.
pub fn take_controlling(fd: i32, foreground: i32) -> Result<(), String> {
    // SAFETY: TIOCSCTTY with 0 (no stealing), then tcsetpgrp; every signal
    // is blocked, so a background tcsetpgrp does not stop us.
    unsafe {
        if libc::ioctl(fd, libc::TIOCSCTTY, 0) != 0 {
            return Err(format!(
                "fd {fd}: cannot be made the controlling terminal again: {}",
                std::io::Error::last_os_error()
            ));
        }
        if foreground > 0 && libc::tcsetpgrp(fd, foreground) != 0 {
            return Err(format!(
                "fd {fd}: its foreground process group {foreground} cannot be given back: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

/// The slave descriptor through which the process takes its controlling
/// terminal back, and the foreground group: for a pty that was its
/// controlling terminal, of its own (master here) or placed by the tree
/// (`placed`), when it led its session.
pub fn controlling(ptys: &[&Pty], placed: &[i32]) -> Option<(i32, i32)> {
    ptys.iter()
        .filter(|x| x.ctty && x.session_leader)
        .filter(|x| x.ours() || x.ends.iter().any(|e| placed.contains(&e.fd)))
        .find_map(|x| {
            x.ends
                .iter()
                .find(|e| !e.master)
                .map(|e| (e.fd, x.foreground))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kstate::objects::{Object, Objects};

    fn sample() -> Pty {
        Pty {
            index: 3,
            dev: 26,
            termios: Termios {
                iflag: 1,
                oflag: 2,
                cflag: 3,
                lflag: 4,
                line: 0,
                cc: [7; 32],
            },
            winsize: [24, 80, 0, 0],
            packet: true,
            locked: 0,
            to_master: 0,
            to_slave: 5,
            ctty: true,
            session_leader: true,
            foreground: 42,
            ends: vec![
                PtyEnd {
                    fd: 3,
                    master: true,
                    desc: 0,
                    flags: 2,
                },
                PtyEnd {
                    fd: 0,
                    master: false,
                    desc: 1,
                    flags: 2,
                },
                PtyEnd {
                    fd: 1,
                    master: false,
                    desc: 1,
                    flags: 2,
                },
            ],
            to_master_data: b"A\r\n".to_vec(),
            node: Some((0o620, 1000, 5)),
        }
    }

    #[test]
    fn an_entry_round_trips_and_hostile_ones_are_refused() {
        let x = sample();
        let mut buf = vec![0u8; 512];
        let mut e = Encoder::new(&mut buf);
        x.encode(&mut e).unwrap();
        let n = e.len();
        let mut d = Decoder::new(&buf[..n]);
        assert_eq!(Pty::decode(&mut d).unwrap(), x);
        d.finish().unwrap();
        x.check().unwrap();
        let mut bad = x.clone();
        bad.ends[2].desc = 0; // a slave sharing the master's description
        assert!(bad.check().is_err());
        let mut bad = x.clone();
        bad.ends[2].fd = 0;
        assert!(bad.check().is_err());
        let mut bad = x.clone();
        bad.locked = 9;
        assert!(bad.check().is_err());
        let mut bad = x.clone();
        bad.node = Some((0o170620, 0, 0));
        assert!(bad.check().is_err());
        // An entry of before the node was kept reads as not seen.
        let mut old = x.clone();
        old.node = None;
        let mut e = Encoder::new(&mut buf);
        old.encode(&mut e).unwrap();
        let n = e.len() - 12;
        assert_eq!(Pty::decode(&mut Decoder::new(&buf[..n])).unwrap(), old);
        assert!(x.describe().contains("/dev/pts/3"), "{}", x.describe());
    }

    #[test]
    fn only_a_pair_with_its_master_is_made_anew() {
        let x = sample();
        assert_eq!(x.fds().collect::<Vec<_>>(), vec![3, 0, 1]);
        let mut outside = x.clone();
        outside.ends.remove(0);
        assert_eq!(outside.fds().count(), 0);
        assert_eq!(controlling(&[&x], &[]), Some((0, 42)));
        assert_eq!(controlling(&[&outside], &[]), None);
        assert_eq!(controlling(&[&outside], &[1]), Some((0, 42)));
    }

    /// A pair made here: the capture sees both ends, their description,
    /// the settings; the restore half makes a pair with them.
    #[test]
    fn the_capture_sees_a_pair_and_the_restore_makes_one_like_it() {
        // SAFETY: opening a pty pair for the test; closed below.
        let (m, s) = unsafe {
            let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
            if m < 0 {
                eprintln!("skipped: no ptys here");
                return;
            }
            libc::grantpt(m);
            libc::unlockpt(m);
            let name = libc::ptsname(m);
            let s = libc::open(name, libc::O_RDWR | libc::O_NOCTTY);
            let mut t: libc::termios = core::mem::zeroed();
            libc::tcgetattr(s, &mut t);
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(s, libc::TCSANOW, &t);
            let ws = libc::winsize {
                ws_row: 33,
                ws_col: 101,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            libc::ioctl(m, libc::TIOCSWINSZ, &ws);
            (m, s)
        };
        let b = crate::kstate::captured(|e, bufs| {
            capture(e, bufs, &|fd| fd != m && fd != s)?;
            crate::kstate::objects::end(e)?;
            Ok(())
        });
        let o = Objects::decode(&mut Decoder::new(&b)).unwrap();
        let [Object::Pty(x)] = &o.items[..] else {
            panic!("{o:?}")
        };
        assert_eq!(x.ends.len(), 2);
        assert!(x.ours());
        assert_eq!(x.termios.lflag & libc::ICANON, 0);
        assert_eq!(&x.winsize[..2], &[33, 101]);
        let made = make_pair(x, 900, false).unwrap();
        let fd = open_slave(&made, libc::O_RDWR as u32, 900).unwrap();
        // SAFETY: reading the new pair's settings; closing our descriptors.
        unsafe {
            let mut t: libc::termios = core::mem::zeroed();
            libc::tcgetattr(fd, &mut t);
            assert_eq!(t.c_lflag & libc::ICANON, 0);
            let mut ws: libc::winsize = core::mem::zeroed();
            libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws);
            assert_eq!((ws.ws_row, ws.ws_col), (33, 101));
            libc::close(fd);
            libc::close(m);
            libc::close(s);
        }
    }
}
