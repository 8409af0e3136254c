//! A member's side of the tree: its connection to the root, and a thread
//! that answers the root's freeze (hold forks and exits) and hands the
//! round to the checkpoint thread (`request::ask`), which then talks to
//! the root itself (`round`) until the round ends.
//!
//! A member takes no checkpoint of its own: its interval is off, and a
//! request made in it (a signal, the API) is passed to the root (`Ask`).
//!
//! When the root exits while members live on (a launcher that returns
//! after starting its workers, a program that daemonizes), the first
//! member to find the root's process gone and the tree's address free
//! listens there and is the tree's root from then on (`take_over`); the
//! others connect to it as they did to the first.
//!
//! Must never: read the connection while the checkpoint thread serves a
//! round, or close a descriptor that is no longer the tree's.

use super::wire::{self, Kind, Msg};
use crate::capture::sys::{self, futex_wait, futex_wake};
use core::sync::atomic::{AtomicI32, AtomicU32, Ordering::*};
use std::path::PathBuf;
use std::sync::Mutex;

static CONN: AtomicI32 = AtomicI32::new(-1);
/// The root's pid as last seen (the peer of the connection; before the
/// first, the process `selfckpt run` started).
static ROOT_PID: AtomicU32 = AtomicU32::new(0);

/// 1 while a round the root asked for is being served (futex word).
static ROUND: AtomicU32 = AtomicU32::new(0);
/// The set directory of that round.
static SET_DIR: Mutex<Option<PathBuf>> = Mutex::new(None);

/// The connection to the root, if any.
pub fn conn() -> Option<i32> {
    let fd = CONN.load(Acquire);
    (fd >= 0).then_some(fd)
}

/// In a forked child: nothing of the parent's connection or round.
pub fn reset() {
    CONN.store(-1, Release);
    ROUND.store(0, Release);
    if let Ok(mut d) = SET_DIR.try_lock() {
        *d = None;
    }
}

/// Connects to the root and starts the member's thread.
pub fn start() {
    crate::trigger::set_interval(None);
    let mask = sys::SavedSignalMask::block_all_but(&[crate::capture::park::suspend_signal()]);
    let r = std::thread::Builder::new()
        .name("selfckpt-tree".into())
        .stack_size(256 << 10)
        .spawn(|| {
            if join() == Joined::Member {
                serve()
            }
        });
    drop(mask);
    if let Err(e) = r {
        log::warn!("cannot start the tree thread: {e}; this process is not covered");
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Joined {
    Member,
    /// The root was gone: this process is the root now.
    Root,
    Failed,
}

/// How often a member tries to reach a root that does not listen, 10 ms
/// apart, when the root's process cannot be seen.
const JOIN_TRIES: u32 = 100;
/// How long it keeps trying while the root's process lives: a restarted
/// root listens again only once its own restore is done, and on a busy
/// machine that may be seconds after its members run again.
const JOIN_LIVE_ROOT_MS: u32 = 120_000;

/// Connects to the root; the root may be listening again only a moment
/// later (a restarted tree, a root in `exec`): tries while the root's
/// process lives, for a while else. When the root's process is gone,
/// takes its place.
fn join() -> Joined {
    let mut tries = 0;
    loop {
        match connect() {
            Ok(()) => return Joined::Member,
            Err(wire::WireError::Sys(libc::ECONNREFUSED))
                if tries < JOIN_TRIES || (tries < JOIN_LIVE_ROOT_MS / 10 && root_lives()) =>
            {
                if root_gone() && take_over() {
                    return Joined::Root;
                }
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => {
                log::warn!("cannot join the process tree: {e}; this process is not covered");
                return Joined::Failed;
            }
        }
    }
}

/// Whether process `pid` lives and serves the tree (it has the tree's
/// thread, as the root and every member have).
fn in_tree(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().any(|t| {
        std::fs::read(t.path().join("comm")).is_ok_and(|c| c.starts_with(b"selfckpt-tree"))
    })
}

fn getppid() -> u32 {
    // SAFETY: getppid has no preconditions.
    unsafe { libc::getppid() as u32 }
}

/// True if the root's process exited (or is a zombie) and this member
/// may take its place: its parent is not a live member of the tree (it
/// is the exited root, or init or a subreaper this member was reparented
/// to). A member whose parent lives on in the tree never does: the tree's
/// restart makes the root a child of the restarter, and its parent would
/// lose its child.
fn root_gone() -> bool {
    let pid = root_pid();
    pid > 1
        && pid != sys::getpid()
        && !in_tree(getppid())
        && super::record::stat(pid).is_none_or(|st| matches!(st.state, 'Z' | 'X'))
}

/// The root's pid as last seen, or the process `selfckpt run` started.
fn root_pid() -> u32 {
    match ROOT_PID.load(Acquire) {
        0 => crate::settings::preload_request()
            .ok()
            .and_then(|r| r.pid)
            .unwrap_or(0),
        pid => pid,
    }
}

/// True if the root's process runs (not this one, not a zombie): it will
/// listen again.
fn root_lives() -> bool {
    let pid = root_pid();
    pid > 1
        && pid != sys::getpid()
        && super::record::stat(pid).is_some_and(|st| !matches!(st.state, 'Z' | 'X'))
}

/// Listens at the tree's address, if nobody does: this member is the
/// root now. False if another member was first.
fn take_over() -> bool {
    let Some(addr) = super::address() else {
        return false;
    };
    match wire::listen(&addr) {
        Ok(fd) => {
            log::debug!(
                "the tree's root is gone: process {} takes its place",
                sys::getpid()
            );
            super::become_root(fd);
            true
        }
        Err(_) => false,
    }
}

fn connect() -> Result<(), wire::WireError> {
    let addr = super::address().ok_or(wire::WireError::Gone)?;
    let fd = wire::connect(&addr)?;
    let mut hello = Msg::new(Kind::Hello);
    hello.pid = sys::getpid();
    // SAFETY: getppid has no preconditions.
    hello.ppid = unsafe { libc::getppid() } as u32;
    if let Err(e) = wire::send(fd, &hello) {
        super::close_own(fd);
        return Err(e);
    }
    if let Some(root) = wire::peer_pid(fd) {
        ROOT_PID.store(root, Release);
    }
    CONN.store(fd, Release);
    Ok(())
}

/// After a restart: connects again (the root may come back later than
/// this member: tries for a while).
pub fn reconnect() {
    CONN.store(-1, Release);
    ROUND.store(0, Release);
    let _ = std::thread::Builder::new()
        .name("selfckpt-tree-c".into())
        .spawn(|| {
            join();
        });
}

/// True while the checkpoint thread serves a round of the root's.
pub fn in_round() -> bool {
    ROUND.load(Acquire) == 1
}

/// Asks the root for a checkpoint of the tree (this member's own request).
pub fn ask_root() -> Result<(), crate::Error> {
    let fd = conn().ok_or_else(|| {
        crate::Error::Tree(format!(
            "process {} is a member of a process tree but not connected to its root; no \
             checkpoint taken",
            sys::getpid()
        ))
    })?;
    wire::send(fd, &Msg::new(Kind::Ask))
        .map_err(|e| crate::Error::Tree(format!("cannot ask the tree's root: {e}")))
}

/// The set directory of the round being served.
pub fn set_dir() -> Option<PathBuf> {
    SET_DIR.lock().ok()?.clone()
}

/// The round is over (either way): the member's thread listens again.
pub fn round_over() {
    super::hold::release();
    ROUND.store(0, Release);
    futex_wake(&ROUND, i32::MAX);
}

fn serve() {
    loop {
        let Some(fd) = conn() else {
            std::thread::sleep(std::time::Duration::from_millis(20));
            continue;
        };
        let m = match wire::recv(fd, None) {
            Ok(m) => m,
            Err(wire::WireError::Gone) => {
                if CONN.compare_exchange(fd, -1, AcqRel, Acquire).is_ok() {
                    super::close_own(fd);
                    log::debug!("the tree's root is gone");
                    // Back in a moment (an exec), another root, or this
                    // process as the root.
                    if join() != Joined::Member {
                        return;
                    }
                }
                continue;
            }
            Err(_) => {
                // A restarted process: the old number is no socket now.
                std::thread::sleep(std::time::Duration::from_millis(20));
                continue;
            }
        };
        if m.kind() != Some(Kind::Freeze) {
            continue;
        }
        let held = super::hold::hold(5000);
        if wire::send(fd, &Msg::new(Kind::Frozen).with_ok(held)).is_err() {
            super::hold::release();
            continue;
        }
        match wire::recv(fd, Some(30_000)) {
            Ok(s) if s.kind() == Some(Kind::Suspend) => {
                use std::os::unix::ffi::OsStrExt;
                let dir = PathBuf::from(std::ffi::OsStr::from_bytes(m.text()));
                if let Ok(mut d) = SET_DIR.lock() {
                    *d = Some(dir);
                }
                // The left_out children (`pid` of them), then the
                // members with System V segments attached.
                let pids: Vec<u32> = s
                    .text()
                    .chunks_exact(4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                let (left, peers) = pids.split_at((s.pid as usize).min(pids.len()));
                super::gone::set_left(left);
                crate::kstate::sysvshm::set_tree_peers(peers);
                ROUND.store(1, Release);
                crate::request::ask();
                while ROUND.load(Acquire) == 1 {
                    futex_wait(&ROUND, 1, None);
                }
            }
            _ => super::hold::release(),
        }
    }
}
