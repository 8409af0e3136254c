//! Exact process and thread ids for a restart: a PID namespace of our own.
//!
//! A fresh PID namespace has every id free, so the restarted process can
//! take the pid it had (`clone3` with `set_tid`) and the restorer can give
//! each thread its old tid. Three processes take part:
//!
//! ```text
//!   selfckpt restart (outer, the pid the user knows)
//!     └─ init (pid 1 in the new namespace; fresh /proc in a mount namespace)
//!          └─ the program (its checkpoint-time pid; restores the image)
//! ```
//!
//! The namespace is made by `clone3(CLONE_NEWPID)` for the init, so the
//! outer process's own namespaces never change. Without the privilege for
//! that (not root), the init also gets a user namespace of its own in which
//! the caller's uid and gid map to themselves; there it may mount /proc and
//! use `set_tid`. (The program then sees files of other users as owned by
//! the overflow id, as in any user namespace.)
//!
//! The outer process and the init forward every signal a user sends
//! (`kill`, `sigqueue`) to the program, so `kill -USR1 <outer pid>` reaches
//! it; signals the kernel sends a whole process group (Ctrl-C on the
//! terminal) reach the program directly and are not forwarded twice. When
//! the program ends, the outer process ends the same way (same exit code,
//! or same signal). If the outer process dies, the init dies with it
//! (`PR_SET_PDEATHSIG`), and with the init the whole namespace.
//!
//! Signals are blocked from the start of the restart (see
//! `restore::restart`): one sent before the forwarding is in place waits,
//! pending, and is forwarded (or, in the program, delivered once its own
//! handlers are back).
//!
//! Everything here happens before the restart's point of no return: when
//! the system allows no namespace (no privilege and no unprivileged user
//! namespaces, `set_tid` refused), [`enter`] says why and the restart goes
//! on in this process with new ids.
//!
//! Must never: return in the outer process or the init once the program
//! has started (they only supervise it), or forward a signal the kernel
//! already delivered to the whole group.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering::*};

/// How the restarted process gets its ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// In a PID namespace of our own: the checkpoint-time pid and tids.
    Exact,
    /// In this process: new pid and tids; the library translates thread ids
    /// (see `crate::capture::tids`). The string says why.
    New(String),
}

/// Where forwarded signals go (the init for the outer process, the program
/// for the init).
static FORWARD_TO: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let code = unsafe { (*info).si_code };
    // Kernel-generated signals (the terminal's Ctrl-C, hangup, window size)
    // went to the whole process group, the program included.
    if code > 0 {
        return;
    }
    let to = FORWARD_TO.load(Acquire);
    if to > 0 {
        // A sigqueue'd signal keeps its value (selfckpt's request channel
        // tells a checkpoint from a checkpoint-then-exit by it).
        // SAFETY: kill and rt_sigqueueinfo are async-signal-safe; the
        // siginfo is the kernel's, with our pid and uid as the sender.
        unsafe {
            if code == libc::SI_QUEUE {
                let mut fwd = *info;
                let p = &mut fwd as *mut libc::siginfo_t as *mut u8;
                // siginfo's union: pid at 16, uid at 20.
                *(p.add(16) as *mut i32) = libc::getpid();
                *(p.add(20) as *mut u32) = libc::getuid();
                libc::syscall(
                    libc::SYS_rt_sigqueueinfo,
                    to,
                    sig,
                    &fwd as *const libc::siginfo_t,
                );
            } else {
                libc::kill(to, sig);
            }
        }
    }
}

/// Makes every catchable signal but SIGCHLD go to `to`, then unblocks them
/// (signals that arrived while they were blocked are forwarded now).
fn forward_signals(to: i32) {
    FORWARD_TO.store(to, Release);
    for sig in 1..=crate::interpose::masks::KERNEL_SIGRTMAX {
        if matches!(sig, libc::SIGKILL | libc::SIGSTOP | libc::SIGCHLD) || (32..34).contains(&sig) {
            continue;
        }
        // SAFETY: installing a handler that only calls kill().
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = forward as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            crate::interpose::next::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
    // SAFETY: unblocking every signal of this single-threaded process.
    unsafe {
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        crate::interpose::next::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    }
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into fds.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned here.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn errno() -> std::io::Error {
    std::io::Error::last_os_error()
}

/// Tries to move the restart into a PID namespace of its own where the
/// program gets `pid`. Returns `Exact` in the program's process, `New`
/// (with the reason) in the calling process when that is not possible;
/// the supervising processes never return. This process's own namespaces
/// are never changed: the namespaces are made by `clone3` for the init.
/// Without the privilege for a PID namespace (not root), the init gets a
/// user namespace of its own too, where the caller's uid and gid map to
/// themselves (unprivileged user namespaces must be allowed).
pub fn enter(pid: u32, verbose: bool, linger: bool) -> Identity {
    if pid <= 1 || pid > i32::MAX as u32 {
        return Identity::New(format!("the image's pid is {pid}"));
    }
    let (report_rd, report_wr) = match pipe() {
        Ok(p) => p,
        Err(e) => return Identity::New(format!("pipe: {e}")),
    };
    let (life_rd, life_wr) = match pipe() {
        Ok(p) => p,
        Err(e) => return Identity::New(format!("pipe: {e}")),
    };
    let pidns = libc::CLONE_NEWPID as u64;
    let (init, userns) = match fork3(pidns, None) {
        Ok(init) => (init, false),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            match fork3(pidns | libc::CLONE_NEWUSER as u64, None) {
                Ok(init) => (init, true),
                Err(e2) => {
                    return Identity::New(format!(
                        "cannot create a PID namespace ({e}), nor one in a user namespace ({e2})"
                    ))
                }
            }
        }
        Err(e) => return Identity::New(format!("cannot create a PID namespace: {e}")),
    };
    if init == 0 {
        drop((report_rd, life_wr));
        return init_side(pid, report_wr, life_rd, linger);
    }
    drop((report_wr, life_rd));
    let mut life = std::fs::File::from(life_wr);
    let mapped = if userns { map_ids(init) } else { Ok(()) };
    if let Err(e) = mapped.and_then(|()| life.write_all(b"g")) {
        // SAFETY: ending and reaping our own child.
        unsafe {
            libc::kill(init, libc::SIGKILL);
            libc::waitpid(init, std::ptr::null_mut(), 0);
        }
        return Identity::New(format!("cannot set up the user namespace: {e}"));
    }
    outer_side(init, report_rd, life.into(), verbose)
}

/// Maps our uid and gid to themselves in the init's new user namespace.
fn map_ids(init: i32) -> std::io::Result<()> {
    // SAFETY: geteuid/getegid have no preconditions.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    match std::fs::write(format!("/proc/{init}/setgroups"), "deny") {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    std::fs::write(format!("/proc/{init}/uid_map"), format!("{uid} {uid} 1\n"))?;
    std::fs::write(format!("/proc/{init}/gid_map"), format!("{gid} {gid} 1\n"))
}

/// The outer process: learns whether the program started; if so forwards
/// signals and ends as the program ends.
fn outer_side(init: i32, report: OwnedFd, lifeline: OwnedFd, verbose: bool) -> Identity {
    let mut report = std::fs::File::from(report);
    let mut first = [0u8; 256];
    let n = read_message(&mut report, &mut first);
    if first[..n].first() != Some(&b'+') {
        let mut status = 0;
        // SAFETY: reaping our own child.
        unsafe { libc::waitpid(init, &mut status, 0) };
        let why = String::from_utf8_lossy(first.get(1..n).unwrap_or_default()).into_owned();
        return Identity::New(if why.is_empty() {
            "the namespace's init failed".into()
        } else {
            why
        });
    }
    if verbose {
        eprintln!("selfckpt: restarting in a PID namespace of its own (exact pid and tids)");
    }
    forward_signals(init);
    let _keep = lifeline;
    // The program's wait status, which the init sends when the program
    // ends (it may stay for the processes the program leaves running).
    let mut word = [0u8; 4];
    if report.read_exact(&mut word).is_ok() {
        end_like(i32::from_ne_bytes(word))
    }
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child.
        let r = unsafe { libc::waitpid(init, &mut status, 0) };
        if r == init || (r < 0 && errno().raw_os_error() != Some(libc::EINTR)) {
            break;
        }
    }
    end_like(status)
}

/// Ends this process the way a child with wait status `status` ended.
fn end_like(status: i32) -> ! {
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        crate::capture::sys::change_signal_mask(libc::SIG_UNBLOCK, &[sig]);
        // SAFETY: restoring the default action and raising the signal on
        // ourselves, then a fallback exit.
        unsafe {
            crate::interpose::next::signal(sig, libc::SIG_DFL);
            libc::raise(sig);
        }
        std::process::exit(128 + sig);
    }
    std::process::exit(libc::WEXITSTATUS(status))
}

/// Reads one line (without its newline) into `buf`, a byte at a time so
/// nothing after it (the program's wait status) is consumed.
fn read_message(f: &mut std::fs::File, buf: &mut [u8]) -> usize {
    let mut n = 0;
    let mut b = [0u8; 1];
    while n < buf.len() {
        match f.read(&mut b) {
            Ok(0) => break,
            Ok(_) if b[0] == b'\n' => break,
            Ok(_) => {
                buf[n] = b[0];
                n += 1;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    n
}

/// pid 1 of the new namespace: fresh /proc, then the program's process
/// with the checkpoint-time pid. Returns `Exact` in that process. With
/// `linger` (a process tree), the processes the program leaves running
/// when it ends (a daemon, children it did not wait for) go on as they
/// would have: the init reports the program's end, stops being tied to
/// the outer process and stays, reaping, while any is left.
fn init_side(pid: u32, report: OwnedFd, lifeline: OwnedFd, linger: bool) -> Identity {
    let mut report = std::fs::File::from(report);
    let fail = |report: &mut std::fs::File, why: String| -> ! {
        let _ = report.write_all(format!("-{why}\n").as_bytes());
        // SAFETY: leaving the forked child without running the parent's atexit work.
        unsafe { libc::_exit(1) }
    };
    // SAFETY: prctl, then wait for the outer process's go (its ids are
    // mapped); end of file means it is already gone: stop here.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        let mut b = 0u8;
        if libc::read(lifeline.as_raw_fd(), (&mut b as *mut u8).cast(), 1) != 1 {
            libc::_exit(1);
        }
    }
    if let Err(why) = fresh_proc() {
        fail(&mut report, why);
    }
    let child = match fork3(0, Some(pid)) {
        Ok(c) => c,
        Err(e) => fail(
            &mut report,
            format!("cannot create pid {pid} (clone3 set_tid): {e}"),
        ),
    };
    if child == 0 {
        drop(lifeline);
        drop(report);
        return Identity::Exact;
    }
    if report.write_all(b"+\n").is_err() {
        // SAFETY: as above.
        unsafe { libc::_exit(1) };
    }
    forward_signals(child);
    let mut program = None;
    loop {
        let mut status = 0;
        // SAFETY: reaping any process of the namespace (we are its init).
        let r = unsafe { libc::waitpid(-1, &mut status, 0) };
        if r == child {
            program = Some(status);
            if !linger {
                break;
            }
            // SAFETY: prctl without memory arguments; the outer process
            // may end now without ending the namespace.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0) };
            let _ = report.write_all(&status.to_ne_bytes());
        }
        if r < 0 && errno().raw_os_error() != Some(libc::EINTR) {
            break;
        }
    }
    if !linger {
        let _ = report.write_all(&program.unwrap_or(0).to_ne_bytes());
    }
    // SAFETY: as above.
    unsafe { libc::_exit(0) }
}

/// A mount namespace of our own with a /proc that shows this PID namespace.
fn fresh_proc() -> Result<(), String> {
    // SAFETY: plain syscalls with NUL-terminated literals.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return Err(format!("cannot create a mount namespace: {}", errno()));
        }
        if libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            return Err(format!("cannot make mounts private: {}", errno()));
        }
        if libc::mount(
            c"proc".as_ptr(),
            c"/proc".as_ptr(),
            c"proc".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        ) != 0
        {
            return Err(format!("cannot mount /proc for the namespace: {}", errno()));
        }
    }
    Ok(())
}

/// fork() through clone3: `flags` may ask for new namespaces, `pid` for
/// the child's id in this PID namespace. Returns 0 in the child.
pub(crate) fn fork3(flags: u64, pid: Option<u32>) -> std::io::Result<i32> {
    #[repr(C)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }
    let want = [pid.unwrap_or(0) as libc::pid_t];
    // Like glibc's fork: the child's thread id word gets its new id.
    let mut tid_address: u64 = 0;
    // SAFETY: PR_GET_TID_ADDRESS writes one pointer.
    unsafe { libc::prctl(libc::PR_GET_TID_ADDRESS, &mut tid_address as *mut u64) };
    let settid = if tid_address != 0 {
        (libc::CLONE_CHILD_SETTID | libc::CLONE_CHILD_CLEARTID) as u64
    } else {
        0
    };
    let args = CloneArgs {
        flags: flags | settid,
        pidfd: 0,
        child_tid: tid_address,
        parent_tid: 0,
        // With CLONE_PARENT the child takes its exit signal from this
        // process (clone3 refuses one of its own).
        exit_signal: if flags & libc::CLONE_PARENT as u64 != 0 {
            0
        } else {
            libc::SIGCHLD as u64
        },
        stack: 0,
        stack_size: 0,
        tls: 0,
        set_tid: if pid.is_some() {
            want.as_ptr() as u64
        } else {
            0
        },
        set_tid_size: u64::from(pid.is_some()),
        cgroup: 0,
    };
    // SAFETY: clone3 without CLONE_VM behaves like fork (the child gets a
    // copy of this single-threaded process); args outlives the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if r < 0 {
        return Err(errno());
    }
    Ok(r as i32)
}
