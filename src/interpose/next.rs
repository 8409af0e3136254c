//! glibc's own versions of the functions selfckpt wraps, found with
//! `dlsym(RTLD_NEXT)`. [`resolve_all`] runs in the library's constructor,
//! so that a first call from a signal handler never has to ask the
//! dynamic loader (not async-signal-safe); a function still unresolved is
//! looked up on first use.

use core::sync::atomic::{AtomicUsize, Ordering::*};

/// Looks `name` (NUL-terminated) up once and caches it in `slot`.
pub fn lookup(slot: &AtomicUsize, name: &[u8]) -> usize {
    let f = slot.load(Acquire);
    if f != 0 {
        return f;
    }
    // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name.
    let f = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr().cast()) } as usize;
    slot.store(f, Release);
    f
}

/// Declares `fn NAME(args) -> ret` calling glibc's `NAME`, and adds it to
/// [`resolve_all`]. When glibc has no such function the call fails with
/// `ENOSYS`.
macro_rules! next_fns {
    ($($name:ident($($arg:ident: $t:ty),*) -> $r:ty = $fail:expr;)*) => {
        mod slots {
            $(#[allow(non_upper_case_globals)]
            pub static $name: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);)*
        }
        $(
        /// glibc's function of this name.
        ///
        /// # Safety
        /// As for glibc's.
        pub unsafe fn $name($($arg: $t),*) -> $r {
            let f = lookup(&slots::$name, concat!(stringify!($name), "\0").as_bytes());
            if f == 0 {
                *libc::__errno_location() = libc::ENOSYS;
                return $fail;
            }
            let g: unsafe extern "C" fn($($t),*) -> $r = core::mem::transmute(f);
            g($($arg),*)
        }
        )*
        /// Resolves every wrapped function (library constructor).
        pub fn resolve_all() {
            $(lookup(&slots::$name, concat!(stringify!($name), "\0").as_bytes());)*
        }
    };
}

use libc::{c_int, c_uint, pollfd, siginfo_t, sigset_t, timespec};

next_fns! {
    poll(fds: *mut pollfd, n: libc::nfds_t, timeout: c_int) -> c_int = -1;
    ppoll(fds: *mut pollfd, n: libc::nfds_t, t: *const timespec, mask: *const sigset_t) -> c_int = -1;
    pselect(n: c_int, r: *mut libc::fd_set, w: *mut libc::fd_set, e: *mut libc::fd_set, t: *const timespec, mask: *const sigset_t) -> c_int = -1;
    epoll_wait(ep: c_int, ev: *mut libc::epoll_event, max: c_int, timeout: c_int) -> c_int = -1;
    epoll_pwait(ep: c_int, ev: *mut libc::epoll_event, max: c_int, timeout: c_int, mask: *const sigset_t) -> c_int = -1;
    nanosleep(req: *const timespec, rem: *mut timespec) -> c_int = -1;
    waitpid(pid: libc::pid_t, status: *mut c_int, options: c_int) -> libc::pid_t = -1;
    wait4(pid: libc::pid_t, status: *mut c_int, options: c_int, ru: *mut libc::rusage) -> libc::pid_t = -1;
    waitid(idtype: libc::idtype_t, id: libc::id_t, info: *mut siginfo_t, options: c_int) -> c_int = -1;
    clock_nanosleep(clock: libc::clockid_t, flags: c_int, req: *const timespec, rem: *mut timespec) -> c_int = libc::ENOSYS;
    sigtimedwait(set: *const sigset_t, info: *mut siginfo_t, t: *const timespec) -> c_int = -1;
    sigwaitinfo(set: *const sigset_t, info: *mut siginfo_t) -> c_int = -1;
    sigwait(set: *const sigset_t, sig: *mut c_int) -> c_int = libc::ENOSYS;
    sigprocmask(how: c_int, set: *const sigset_t, old: *mut sigset_t) -> c_int = -1;
    pthread_sigmask(how: c_int, set: *const sigset_t, old: *mut sigset_t) -> c_int = libc::ENOSYS;
    sigsuspend(mask: *const sigset_t) -> c_int = -1;
    sigpending(set: *mut sigset_t) -> c_int = -1;
    signalfd(fd: c_int, mask: *const sigset_t, flags: c_int) -> c_int = -1;
    pthread_attr_setsigmask_np(attr: *mut libc::pthread_attr_t, set: *const sigset_t) -> c_int = libc::ENOSYS;
    usleep(us: libc::useconds_t) -> c_int = -1;
    sleep(secs: c_uint) -> c_uint = secs;
    __libc_current_sigrtmax() -> c_int = 64;
    sigaction(sig: c_int, act: *const libc::sigaction, old: *mut libc::sigaction) -> c_int = -1;
    signal(sig: c_int, handler: libc::sighandler_t) -> libc::sighandler_t = libc::SIG_ERR;
    select(n: c_int, r: *mut libc::fd_set, w: *mut libc::fd_set, e: *mut libc::fd_set, t: *mut libc::timeval) -> c_int = -1;
    pause() -> c_int = -1;
    epoll_pwait2(ep: c_int, ev: *mut libc::epoll_event, max: c_int, t: *const timespec, mask: *const sigset_t) -> c_int = -1;
    pthread_kill(thread: libc::pthread_t, sig: c_int) -> c_int = libc::ENOSYS;
    pthread_sigqueue(thread: libc::pthread_t, sig: c_int, value: libc::sigval) -> c_int = libc::ENOSYS;
    msgrcv(id: c_int, msg: *mut libc::c_void, size: libc::size_t, typ: libc::c_long, flags: c_int) -> libc::ssize_t = -1;
    msgsnd(id: c_int, msg: *const libc::c_void, size: libc::size_t, flags: c_int) -> c_int = -1;
    semget(key: libc::key_t, nsems: c_int, flags: c_int) -> c_int = -1;
    msgget(key: libc::key_t, flags: c_int) -> c_int = -1;
    semop(id: c_int, ops: *mut libc::sembuf, n: libc::size_t) -> c_int = -1;
    semtimedop(id: c_int, ops: *mut libc::sembuf, n: libc::size_t, t: *const timespec) -> c_int = -1;
    timer_create(clock: libc::clockid_t, evp: *mut libc::sigevent, out: *mut libc::timer_t) -> c_int = -1;
    timer_settime(t: libc::timer_t, flags: c_int, new: *const libc::itimerspec, old: *mut libc::itimerspec) -> c_int = -1;
    timer_delete(t: libc::timer_t) -> c_int = -1;
    inotify_add_watch(fd: c_int, path: *const libc::c_char, mask: u32) -> c_int = -1;
    syscall(n: libc::c_long, a1: libc::c_long, a2: libc::c_long, a3: libc::c_long, a4: libc::c_long, a5: libc::c_long, a6: libc::c_long) -> libc::c_long = -1;
    execve(path: *const libc::c_char, argv: *const *const libc::c_char, envp: *const *const libc::c_char) -> c_int = -1;
    execvpe(file: *const libc::c_char, argv: *const *const libc::c_char, envp: *const *const libc::c_char) -> c_int = -1;
    fexecve(fd: c_int, argv: *const *const libc::c_char, envp: *const *const libc::c_char) -> c_int = -1;
    execveat(dirfd: c_int, path: *const libc::c_char, argv: *const *const libc::c_char, envp: *const *const libc::c_char, flags: c_int) -> c_int = -1;
    posix_spawn(pid: *mut libc::pid_t, path: *const libc::c_char, actions: *const libc::posix_spawn_file_actions_t, attr: *const libc::posix_spawnattr_t, argv: *const *mut libc::c_char, envp: *const *mut libc::c_char) -> c_int = libc::ENOSYS;
    posix_spawnp(pid: *mut libc::pid_t, file: *const libc::c_char, actions: *const libc::posix_spawn_file_actions_t, attr: *const libc::posix_spawnattr_t, argv: *const *mut libc::c_char, envp: *const *mut libc::c_char) -> c_int = libc::ENOSYS;
    mq_notify(fd: libc::mqd_t, evp: *const libc::sigevent) -> c_int = -1;
}
