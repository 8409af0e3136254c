//! What the program sees of signals and blocking calls: selfckpt's own
//! versions of a few libc functions, which the program's calls reach
//! instead of glibc's (the library is linked into the program, or
//! preloaded: either way its definitions come first), so that
//! checkpointing stays invisible.
//!
//! * [`masks`]: selfckpt reserves the two highest signals (the suspend
//!   signal and the request channel) the way glibc reserves its own two
//!   lowest realtime signals: `SIGRTMAX` reads two lower, masks the program
//!   sets never block them, and no mask, pending set or signalfd the
//!   program reads or makes holds them.
//! * [`dispositions`]: the program's `sigaction` and `signal` never
//!   reach selfckpt's signals, and a program that installs its own handler
//!   for a trigger signal gets it (selfckpt then takes requests through its
//!   reserved channel).
//! * [`exec`]: a tree member's `execve`, `execvp`, `posix_spawn`... hand
//!   the new program `LD_PRELOAD` and the run's settings even when the
//!   program gives it an environment of its own.
//! * [`inotify`]: `inotify_add_watch` notes each watch's path, which the
//!   kernel does not keep.
//! * [`timers`]: `SIGEV_THREAD` timers run from a helper thread of
//!   selfckpt's that a checkpoint can park (glibc's blocks every signal),
//!   and `timer_settime` notes which timers are absolute.
//! * [`mq_notify`]: `SIGEV_THREAD` queue notifications run from a helper
//!   of selfckpt's too (glibc's blocks every signal), and every request is
//!   noted so that a checkpoint and a restart can make it again
//!   (`sigev_thread`: what the two helpers share).
//! * [`sysvipc`]: `semget` and `msgget` note the ids the process uses
//!   (`kstate::sysvipc`; `semop`, `msgsnd`... in [`waits`] too).
//! * [`waits`]: calls with a relative timeout that the suspend signal
//!   interrupts are called again with the time left (the others are run
//!   again from the handler: `capture::interrupted`).
//! * [`syscall`]: the same calls made through libc's raw `syscall()` are
//!   handed to those wrappers.
//!
//! Each wrapper does what glibc's function does when no checkpoint
//! happens (it calls glibc's, found with `dlsym(RTLD_NEXT)`: [`next`]).
//! Must never: change what a call returns or does when selfckpt is not
//! involved, or allocate (several of these are async-signal-safe and may be
//! called from the program's signal handlers).

pub mod dispositions;
pub mod exec;
pub mod inotify;
pub mod masks;
pub mod mq_notify;
pub mod next;
pub mod sigev_thread;
pub mod syscall;
pub mod sysvipc;
pub mod timers;
pub mod waits;
