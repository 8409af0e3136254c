//! The root's side of the tree: the listening socket, the members that
//! connected (one connection each), and a thread that accepts new members
//! and notices members that went away (exec closes the connection of the
//! old image; the new image connects again) or that ask for a checkpoint.
//!
//! While a round runs, the checkpoint thread alone reads the members'
//! connections (`round_active`): this thread then only accepts.
//!
//! Must never: read a member's connection during a round, or hold the
//! members' lock across a blocking call.

use super::wire::{self, Kind, Msg};
use core::sync::atomic::{AtomicBool, AtomicI32, Ordering::*};
use std::sync::Mutex;

/// A member as the root knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    pub pid: u32,
    pub fd: i32,
}

static LISTEN: AtomicI32 = AtomicI32::new(-1);
static MEMBERS: Mutex<Vec<Member>> = Mutex::new(Vec::new());
/// Held by the checkpoint thread to start a round, and by the accepting
/// thread around each read of a member's connection.
static WIRE: Mutex<()> = Mutex::new(());
static ROUND: AtomicBool = AtomicBool::new(false);

/// The inodes of the run's stdio as the root was started with it (they
/// come from outside the tree).
static RUN_STDIO: Mutex<Vec<u64>> = Mutex::new(Vec::new());

/// Notes what descriptors 0-2 are now (at start, and after a restart,
/// where they are the restarter's).
pub fn record_stdio() {
    if let Ok(mut v) = RUN_STDIO.lock() {
        *v = (0..3)
            .filter_map(|fd| crate::capture::sys::fstat(fd).ok())
            .map(|st| st.st_ino)
            .collect();
    }
}

pub fn run_stdio() -> Vec<u64> {
    RUN_STDIO.lock().map(|v| v.clone()).unwrap_or_default()
}

/// Binds the listener (again, after a restart) and starts the thread the
/// first time.
pub fn start() {
    record_stdio();
    relisten();
    spawn_serve();
}

/// A member takes the place of a root that exited, with the listener it
/// made at the tree's address.
pub fn take_over(listener: i32) {
    record_stdio();
    LISTEN.store(listener, Release);
    spawn_serve();
}

fn spawn_serve() {
    let mask = crate::capture::sys::SavedSignalMask::block_all_but(&[
        crate::capture::park::suspend_signal(),
    ]);
    let r = std::thread::Builder::new()
        .name("selfckpt-tree".into())
        .stack_size(256 << 10)
        .spawn(serve);
    drop(mask);
    if let Err(e) = r {
        log::warn!("cannot start the tree thread: forked children are not covered: {e}");
    }
}

/// Listens at the tree's address.
pub fn relisten() {
    let Some(addr) = super::address() else { return };
    match wire::listen(&addr) {
        Ok(fd) => LISTEN.store(fd, Release),
        Err(e) => {
            log::warn!("cannot listen for the tree's members: {e}; forked children are not covered")
        }
    }
}

/// Forgets every member (a forked child, a restarted root).
pub fn forget_members() {
    LISTEN.store(-1, Release);
    // try_lock: in a forked child another thread of the parent may have
    // held it at the fork; the child, a member, never reads the list.
    if let Ok(mut m) = MEMBERS.try_lock() {
        m.clear();
    }
}

/// The members now.
pub fn snapshot() -> Vec<Member> {
    MEMBERS.lock().map(|m| m.clone()).unwrap_or_default()
}

/// Forgets one member, closing its connection (only a number that is a
/// member's now: after a restart, an old number is nobody's).
pub fn drop_member(fd: i32) {
    let known = MEMBERS.lock().is_ok_and(|mut m| {
        let had = m.iter().any(|x| x.fd == fd);
        m.retain(|x| x.fd != fd);
        had
    });
    if known {
        super::close_own(fd);
    }
}

/// From now until [`round_ended`], only the checkpoint thread reads the
/// members' connections.
pub fn round_active() {
    let _g = WIRE.lock();
    ROUND.store(true, Release);
}

pub fn round_ended() {
    ROUND.store(false, Release);
}

/// True while this root serves a round of the tree (with members).
pub fn in_round() -> bool {
    ROUND.load(Acquire)
}

fn serve() {
    loop {
        let l = LISTEN.load(Acquire);
        if l < 0 {
            std::thread::sleep(std::time::Duration::from_millis(20));
            continue;
        }
        let members = snapshot();
        let round = ROUND.load(Acquire);
        let mut polls: Vec<libc::pollfd> = std::iter::once(l)
            .chain(members.iter().map(|m| m.fd).filter(|_| !round))
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: poll on pollfds we own.
        let r = unsafe { libc::poll(polls.as_mut_ptr(), polls.len() as libc::nfds_t, 100) };
        if r <= 0 {
            continue;
        }
        if polls[0].revents & libc::POLLNVAL != 0 {
            std::thread::sleep(std::time::Duration::from_millis(20));
            continue;
        }
        if polls[0].revents & libc::POLLIN != 0 {
            accept_one(l);
        }
        // POLLNVAL: a number from before a restart, closed since.
        for p in polls
            .iter()
            .skip(1)
            .filter(|p| p.revents != 0 && p.revents & libc::POLLNVAL == 0)
        {
            let _g = WIRE.lock();
            if ROUND.load(Acquire) {
                break;
            }
            match wire::recv(p.fd, Some(0)) {
                Ok(m) if m.kind() == Some(Kind::Ask) => {
                    crate::request::ask();
                }
                Ok(_) | Err(wire::WireError::Timeout) => {}
                Err(_) => drop_member(p.fd),
            }
        }
    }
}

fn accept_one(l: i32) {
    // The tree's at once (`make_own`): a checkpoint while the hello is
    // awaited must not take this socket for one of the program's, nor a
    // fork meanwhile give it to a child.
    let Ok(fd) = wire::accept(l) else { return };
    let hello = wire::expect(fd, Kind::Hello, Some(2000));
    let pid = wire::peer_pid(fd);
    match (hello, pid) {
        (Ok(h), Some(pid)) if h.pid == pid => {
            if let Ok(mut m) = MEMBERS.lock() {
                m.push(Member { pid, fd });
            }
            log::debug!("member {pid} joined the tree");
        }
        _ => {
            super::close_own(fd);
        }
    }
}

/// Sends `m` to every member in `fds` (allocation-free); returns the
/// first that could not be reached.
pub fn send_all(fds: &[i32], m: &Msg) -> Option<i32> {
    let mut bad = None;
    for &fd in fds {
        if wire::send(fd, m).is_err() && bad.is_none() {
            bad = Some(fd);
        }
    }
    bad
}
