//! Process trees: the program `selfckpt run` started (the *root*) and
//! every process it forks (the *members*) are checkpointed together, in
//! one consistent cut, into one tree image set (`set`), and restarted
//! together (`restore::tree`).
//!
//! Coordination needs no daemon: the root's checkpoint thread listens on
//! an abstract Unix socket named after the run's instance token (`wire`);
//! each member's checkpoint thread connects to it when the library starts
//! in the member, after a `fork` (a `pthread_atfork` child handler starts
//! a checkpoint thread of its own there) or after an `exec` (the
//! constructor, LD_PRELOAD being inherited). A round is a barrier per
//! phase (`round`): freeze (no member forks or exits: `hold`), suspend,
//! dump, resume, commit. A member that dies or fails at any phase makes
//! the round fail for everybody: all resume, the set's temporary
//! directory is removed, the previous set stays as it was.
//!
//! This file: who this process is in its tree, starting the role, the
//! fork handlers, and which descriptors are the tree's own (left out of
//! images). Must never: run a round while the program's threads are
//! parked but through the allocation-free barriers of `round`.

pub mod files;
pub mod gone;
pub mod hold;
pub mod member;
pub mod record;
pub mod root;
pub mod round;
pub mod set;
pub mod wire;

use core::sync::atomic::{AtomicI32, AtomicU32, Ordering::*};
use std::sync::OnceLock;

const NONE: u32 = 0;
const ROOT: u32 = 1;
const MEMBER: u32 = 2;
/// The run's process with `--no-tree`: its checkpoints name the children
/// they leave out, nothing more.
const ROOT_ALONE: u32 = 3;

static ROLE: AtomicU32 = AtomicU32::new(NONE);
/// The run's instance token: with the PID namespace, it names the tree's
/// socket (`address`).
static INSTANCE: OnceLock<String> = OnceLock::new();

/// Most descriptors the tree holds in one process (the root: one per
/// member, plus its listener).
pub const MAX_OWN: usize = 520;
static OWN: [AtomicI32; MAX_OWN] = [const { AtomicI32::new(-1) }; MAX_OWN];

/// True if `fd` is one of the tree's sockets (left out of images).
/// Allocation-free.
pub fn owns_fd(fd: i32) -> bool {
    fd >= 0 && OWN.iter().any(|o| o.load(Acquire) == fd)
}

pub(crate) fn own(fd: i32) -> bool {
    for o in &OWN {
        if o.compare_exchange(-1, fd, AcqRel, Acquire).is_ok() {
            return true;
        }
    }
    false
}

/// Tree descriptors being made and not yet registered: a fork waits while
/// one is (a few system calls), so that no forked child inherits a
/// descriptor of the tree it does not know as the tree's (it would keep
/// it as one of its own, and its checkpoint would find a socket to
/// another process). Dekker-style with the fork count of `hold`: each
/// side announces itself, then looks at the other (SeqCst).
static MAKING: AtomicU32 = AtomicU32::new(0);

/// Makes a descriptor of the tree with `make` (which must not block) and
/// registers it, as one step no fork of the program splits.
pub(crate) fn make_own(
    make: impl FnOnce() -> Result<i32, wire::WireError>,
) -> Result<i32, wire::WireError> {
    loop {
        MAKING.fetch_add(1, SeqCst);
        if !hold::forking() {
            break;
        }
        MAKING.fetch_sub(1, SeqCst);
        hold::wait_no_fork();
    }
    let r = make().and_then(|fd| {
        if own(fd) {
            Ok(fd)
        } else {
            wire::close(fd);
            Err(wire::WireError::Sys(libc::EMFILE))
        }
    });
    MAKING.fetch_sub(1, SeqCst);
    r
}

/// In the fork's prepare handler, the fork counted: waits until no tree
/// descriptor is being made.
fn wait_made() {
    core::sync::atomic::fence(SeqCst);
    while MAKING.load(SeqCst) != 0 {
        std::thread::yield_now();
    }
}

/// Forgets and closes a descriptor [`make_own`] made.
pub(crate) fn close_own(fd: i32) {
    disown(fd);
    wire::close(fd);
}

pub(crate) fn disown(fd: i32) {
    for o in &OWN {
        let _ = o.compare_exchange(fd, -1, AcqRel, Acquire);
    }
}

/// Closes every tree descriptor (a forked child has its parent's).
fn close_all_own() {
    for o in &OWN {
        let fd = o.swap(-1, AcqRel);
        wire::close(fd);
    }
}

/// True if forked children become members (this process is in a tree).
pub fn covers_forks() -> bool {
    matches!(ROLE.load(Acquire), ROOT | MEMBER)
}

/// The run's process (with or without members).
pub fn is_root() -> bool {
    matches!(ROLE.load(Acquire), ROOT | ROOT_ALONE)
}

/// True while this process takes part in a checkpoint of its tree (as
/// its root or as a member): the tree makes again what members share.
pub fn in_round() -> bool {
    (is_member() && member::in_round()) || (is_root() && root::in_round())
}

pub fn is_member() -> bool {
    ROLE.load(Acquire) == MEMBER
}

/// The tree's abstract socket name, the same for the root and every
/// member: the run's instance token and the inode of the PID namespace,
/// so that a restarted tree (in a namespace of its own) never meets the
/// original, and a process forked just as its parent was restarted finds
/// the new root. Read anew each time.
pub(crate) fn address() -> Option<Vec<u8>> {
    let instance = INSTANCE.get()?;
    let ns = std::fs::metadata("/proc/self/ns/pid")
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .unwrap_or(0);
    let mut buf = [0u8; 108];
    let n = wire::address(&format!("{instance}-{ns:x}"), &mut buf);
    Some(buf[..n].to_vec())
}

fn set_address(instance: &str) {
    let _ = INSTANCE.set(instance.to_string());
}

/// In the process `selfckpt run` started: becomes the tree's root; with
/// `covered` false (`--no-tree`) its children are not members, and its
/// checkpoints name those they leave out.
pub fn start_root(instance: &str, covered: bool) {
    set_address(instance);
    if !covered {
        ROLE.store(ROOT_ALONE, Release);
        return;
    }
    ROLE.store(ROOT, Release);
    install_fork_handlers();
    root::start();
}

/// In a process the library started in that is not the run's (an exec'd
/// descendant): becomes a member.
pub fn start_member(instance: &str) {
    set_address(instance);
    ROLE.store(MEMBER, Release);
    install_fork_handlers();
    member::start();
}

/// A member whose root exited takes its place, listening on `listener`
/// (made at the tree's address): checkpoints of the tree are its now, and
/// so is the end of the run.
pub(crate) fn become_root(listener: i32) {
    ROLE.store(ROOT, Release);
    crate::preload::take_run();
    root::take_over(listener);
}

fn install_fork_handlers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: registers plain extern "C" functions.
        unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
    });
}

extern "C" fn prepare() {
    if covers_forks() {
        hold::before_fork();
        wait_made();
    }
}

extern "C" fn parent() {
    if covers_forks() {
        hold::after_fork_parent();
    }
}

/// In a forked child (fork without exec): a member of its own, with a
/// checkpoint thread of its own.
extern "C" fn child() {
    if !covers_forks() {
        return;
    }
    hold::after_fork_child();
    crate::request::forget_pending();
    crate::preload::forget_run();
    close_all_own();
    root::forget_members();
    ROLE.store(MEMBER, Release);
    member::reset();
    let _ = std::panic::catch_unwind(|| {
        if let Err(e) = crate::restart_threads() {
            eprintln!(
                "selfckpt[{}]: the forked child is not covered: {e}",
                crate::capture::sys::getpid()
            );
            return;
        }
        member::start();
    });
}

/// In a restarted process: the sockets of the image are gone; make them
/// anew (the root listens again, a member connects again).
pub fn after_restart() {
    gone::after_restart();
    match ROLE.load(Acquire) {
        ROOT => {
            close_all_own();
            root::forget_members();
            root::record_stdio();
            root::relisten();
        }
        MEMBER => {
            close_all_own();
            member::reconnect();
        }
        _ => {}
    }
}
