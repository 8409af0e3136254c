//! pidfd descriptors (`pidfd_open`, `clone3(CLONE_PIDFD)`; object kind
//! 0x0206): a descriptor that refers to a process and reads as ended once
//! it exits (`poll` readable, `waitid(P_PIDFD)`).
//!
//! What it refers to decides what comes back:
//! * this process: a pidfd of the restarted process;
//! * a process of the checkpointed tree (parent, child, sibling; also one
//!   that ended and waits to be reaped): a pidfd of that process, which a
//!   tree restart brings back under the same pid;
//! * a process that ended and was reaped before the checkpoint (fdinfo
//!   `Pid: -1`): a pidfd of a process that has ended and been reaped, as
//!   before (made by starting a child that ends at once, without
//!   `SIGCHLD`, and reaping it);
//! * a process outside the tree, or one thread (`PIDFD_THREAD`): named at
//!   checkpoint (kind `pidfd`), and the restart refuses; asked to go on
//!   (`--unrestorable=pidfd`), it gets a pidfd of an ended process (what
//!   a program sees when that process goes away), never `/dev/null`.
//!
//! Capture ([`capture`]) runs while the program's threads are suspended:
//! fdinfo into fixed buffers, never an allocation. Restore ([`restore`])
//! runs in the restarter with the descriptors.

use super::objects::{self, Kind, NotRestorable};
use super::unrestorable::Words;
use super::{fds, CaptureBuffers, KstateError};
use crate::capture::sys;
use crate::image::codec::{CodecError, Decoder, Encoder};

/// The /proc/self/fd link of a pidfd.
pub const LINK: &[u8] = b"anon_inode:[pidfd]";
/// The kind `--unrestorable` names.
pub const KIND: &str = "pidfd";
/// `PIDFD_THREAD` (Linux 6.9): the pidfd refers to one thread.
const PIDFD_THREAD: u32 = libc::O_EXCL as u32;

/// What a pidfd refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// This process.
    Own,
    /// Another process of the tree, by its pid.
    Member(u32),
    /// A process that ended and was reaped.
    Reaped,
    /// A process outside the tree (its pid; 0: not in our PID namespace),
    /// or a thread: named at checkpoint.
    Outside(u32),
}

/// One pidfd descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pidfd {
    pub fd: i32,
    /// Status flags (`O_NONBLOCK`, `PIDFD_THREAD`) and `O_CLOEXEC`.
    pub flags: u32,
    pub target: Target,
}

impl Pidfd {
    pub fn encode(&self, e: &mut Encoder) -> Result<(), CodecError> {
        e.i32(self.fd)?;
        e.u32(self.flags)?;
        let (tag, pid) = match self.target {
            Target::Own => (0, 0),
            Target::Member(p) => (1, p),
            Target::Reaped => (2, 0),
            Target::Outside(p) => (3, p),
        };
        e.u8(tag)?;
        e.u32(pid)
    }

    pub fn decode(d: &mut Decoder) -> Result<Self, CodecError> {
        let fd = d.i32()?;
        let flags = d.u32()?;
        let tag = d.u8()?;
        let pid = d.u32()?;
        let target = match tag {
            0 => Target::Own,
            1 => Target::Member(pid),
            2 => Target::Reaped,
            3 => Target::Outside(pid),
            v => {
                return Err(CodecError::BadValue {
                    field: "target of a pidfd",
                    value: v as u64,
                })
            }
        };
        Ok(Pidfd { fd, flags, target })
    }

    pub fn check(&self) -> Result<(), String> {
        if self.fd < 0 {
            return Err(format!("a pidfd at fd {}", self.fd));
        }
        if let Target::Member(0 | 1) = self.target {
            return Err(format!("fd {}: a pidfd of process 0 or 1", self.fd));
        }
        Ok(())
    }

    fn what(&self) -> String {
        match self.target {
            Target::Own => "this process".into(),
            Target::Member(p) => format!("process {p} of the tree"),
            Target::Reaped => "a process that ended and was reaped".into(),
            Target::Outside(0) => "a process outside this PID namespace".into(),
            Target::Outside(p) => format!("process {p}, outside the checkpoint"),
        }
    }

    /// One line of `inspect`.
    pub fn describe(&self) -> String {
        format!(
            "fd {} pidfd of {}{}",
            self.fd,
            self.what(),
            super::eventfd::flag_words(self.flags)
        )
    }

    pub fn json(&self) -> serde_json::Value {
        let (target, pid) = match self.target {
            Target::Own => ("own", 0),
            Target::Member(p) => ("member", p),
            Target::Reaped => ("reaped", 0),
            Target::Outside(p) => ("outside", p),
        };
        serde_json::json!({
            "kind": "pidfd", "fd": self.fd, "flags": self.flags,
            "target": target, "pid": pid,
        })
    }
}

/// Writes an entry for every pidfd not skipped, and a NotRestorable one
/// for each that refers to a process outside the tree or to a thread. No
/// allocation.
pub fn capture(
    e: &mut Encoder,
    bufs: &mut CaptureBuffers,
    skip_fd: &dyn Fn(i32) -> bool,
) -> Result<(), KstateError> {
    let root = super::procfs::tree_root();
    let me = sys::getpid();
    let mut found = [(0i32, 0u32, 0i64); 64];
    let mut n = 0usize;
    let mut more = false;
    fds::for_each_linked(bufs, skip_fd, LINK, &|_| {}, |fd, info| {
        let info = info.map_err(|errno| KstateError::Read {
            what: "a pidfd's fdinfo",
            errno,
        })?;
        let pid = match sys::field(info, b"Pid:") {
            Some(v) if v.first() == Some(&b'-') => -1,
            Some(v) => sys::parse_u64(v).map_or(-2, |(p, _)| p as i64),
            None => -2,
        };
        if n == found.len() {
            more = true;
            return Ok(());
        }
        found[n] = (fd, fds::info_flags(fd, info), pid);
        n += 1;
        Ok(())
    })?;
    for &(fd, flags, pid) in &found[..n] {
        let target = match pid {
            _ if flags & PIDFD_THREAD != 0 => Target::Outside(pid.max(0) as u32),
            -1 => Target::Reaped,
            p if p == me as i64 => Target::Own,
            p if p > 1 && super::procfs::in_tree(p as u32, root, bufs.text) => {
                Target::Member(p as u32)
            }
            p => Target::Outside(p.max(0) as u32),
        };
        let x = Pidfd { fd, flags, target };
        objects::entry(e, Kind::Pidfd, 0, |e| x.encode(e))?;
        if let Target::Outside(p) = target {
            let mut words = [0u8; 200];
            let mut w = Words::new(&mut words);
            if flags & PIDFD_THREAD != 0 {
                w.push(b"pidfd of one thread (PIDFD_THREAD)");
            } else {
                w.push(b"pidfd of process ");
                w.push_u64(p as u64);
                w.push(b", which is not checkpointed with this one");
            }
            let len = w.len();
            NotRestorable::capture(e, fd, KIND, &words[..len])?;
        }
    }
    if more {
        NotRestorable::capture(
            e,
            -1,
            KIND,
            b"more than 64 pidfds: the others cannot come back",
        )?;
    }
    Ok(())
}

/// Makes the pidfd again at its number.
pub fn restore(x: &Pidfd) -> Result<(), String> {
    let nonblock = x.flags & libc::O_NONBLOCK as u32;
    let made = match x.target {
        // SAFETY: pidfd_open of this process.
        Target::Own => {
            cvt(unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), nonblock) })
        }
        Target::Member(pid) => of_member(pid, nonblock),
        Target::Reaped | Target::Outside(_) => of_ended(nonblock),
    };
    let tmp = made.map_err(|e| format!("fd {} (pidfd of {}): {e}", x.fd, x.what()))?;
    fds::install_at(tmp, x.fd, x.flags)
        .map_err(|e| format!("fd {} (pidfd of {}): {e}", x.fd, x.what()))
}

fn cvt(r: libc::c_long) -> std::io::Result<i32> {
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r as i32)
    }
}

/// A pidfd of tree member `pid`: the tree restart makes every member with
/// its pid, a sibling possibly just after this one (waits for it 10 s).
fn of_member(pid: u32, flags: u32) -> std::io::Result<i32> {
    if !crate::restore::files::in_tree_restart(pid) {
        return Err(std::io::Error::other(
            "that process comes back only with a restart of its whole tree",
        ));
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        // SAFETY: pidfd_open with plain integer arguments.
        match cvt(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, flags) }) {
            Err(e)
                if e.raw_os_error() == Some(libc::ESRCH)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            r => return r,
        }
    }
}

/// A pidfd of a process that has ended and been reaped: a child started
/// for it (`clone3` with `CLONE_PIDFD` and no exit signal: nothing
/// reaches the program) that ends at once, reaped through the pidfd.
fn of_ended(flags: u32) -> std::io::Result<i32> {
    let (pid, pidfd) =
        sys::fork_with_pidfd().map_err(|e| std::io::Error::from_raw_os_error(e.0))?;
    if pid == 0 {
        // SAFETY: the child ends at once.
        unsafe { libc::_exit(0) };
    }
    let mut info: libc::siginfo_t = unsafe { core::mem::zeroed() };
    // SAFETY: waitid on the pidfd just made, into a local siginfo.
    let w = unsafe {
        libc::waitid(
            libc::P_PIDFD,
            pidfd as libc::id_t,
            &mut info,
            libc::WEXITED | libc::__WALL,
        )
    };
    if w != 0 {
        let e = std::io::Error::last_os_error();
        // SAFETY: closing the pidfd we made.
        unsafe { libc::close(pidfd) };
        return Err(e);
    }
    if flags != 0 {
        // SAFETY: F_SETFL on our pidfd.
        unsafe { libc::fcntl(pidfd, libc::F_SETFL, flags as i32) };
    }
    Ok(pidfd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kstate::objects::{Object, Objects};

    fn pidfd_open(pid: i32, flags: u32) -> i32 {
        // SAFETY: pidfd_open with plain integer arguments.
        unsafe { libc::syscall(libc::SYS_pidfd_open, pid, flags) as i32 }
    }

    fn ended(fd: i32) -> bool {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll of one local pollfd, no wait.
        unsafe { libc::poll(&mut p, 1, 0) == 1 && p.revents & libc::POLLIN != 0 }
    }

    #[test]
    fn own_reaped_and_outside_pidfds_are_captured_and_come_back() {
        let own = pidfd_open(std::process::id() as i32, libc::O_NONBLOCK as u32);
        if own < 0 {
            eprintln!("skipped: no pidfd_open here");
            return;
        }
        // A child that ends and is reaped; our parent is outside.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let reaped = pidfd_open(child.id() as i32, 0);
        child.wait().unwrap();
        let outside = pidfd_open(std::os::unix::process::parent_id() as i32, 0);
        assert!(reaped >= 0 && outside >= 0);
        let mine = [own, reaped, outside];
        let out = crate::kstate::captured(|e, bufs| {
            capture(e, bufs, &|fd| !mine.contains(&fd))?;
            objects::end(e)?;
            Ok(())
        });
        let o = Objects::decode(&mut Decoder::new(&out)).unwrap();
        let got: Vec<Pidfd> = o
            .items
            .iter()
            .filter_map(|x| match x {
                Object::Pidfd(p) => Some(*p),
                _ => None,
            })
            .collect();
        let of = |fd| got.iter().find(|p| p.fd == fd).copied().unwrap();
        assert_eq!(of(own).target, Target::Own);
        assert_ne!(of(own).flags & libc::O_NONBLOCK as u32, 0);
        assert_eq!(of(reaped).target, Target::Reaped);
        assert!(matches!(of(outside).target, Target::Outside(_)));
        let probs = o.problems();
        assert_eq!(probs.len(), 1, "{probs:?}");
        assert_eq!(probs[0].kind, KIND);
        assert!(probs[0]
            .text
            .starts_with(&format!("fd {outside} pidfd of process")));
        // Back at other numbers: ours is not ended, the others are.
        for (p, at, want_ended) in [
            (of(own), 971, false),
            (of(reaped), 972, true),
            (of(outside), 973, true),
        ] {
            restore(&Pidfd { fd: at, ..p }).unwrap();
            assert_eq!(ended(at), want_ended, "{p:?}");
        }
        // SAFETY: waitid on the restored pidfd of a reaped process.
        let mut info: libc::siginfo_t = unsafe { core::mem::zeroed() };
        let w =
            unsafe { libc::waitid(libc::P_PIDFD, 972, &mut info, libc::WEXITED | libc::WNOHANG) };
        assert_eq!(w, -1, "the reaped process's pidfd has nothing to wait for");
        // A member pid outside a tree restart is refused.
        let err = restore(&Pidfd {
            fd: 974,
            flags: 0,
            target: Target::Member(12345),
        })
        .unwrap_err();
        assert!(err.contains("whole tree"), "{err}");
        let mut buf = vec![0u8; 256];
        for p in &got {
            let mut e = Encoder::new(&mut buf);
            p.encode(&mut e).unwrap();
            let n = e.len();
            assert_eq!(Pidfd::decode(&mut Decoder::new(&buf[..n])).unwrap(), *p);
        }
        // SAFETY: closing the test's descriptors.
        unsafe {
            for fd in [own, reaped, outside, 971, 972, 973] {
                libc::close(fd);
            }
        }
    }
}
