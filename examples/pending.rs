//! A program with signals pending at its checkpoint, for
//! tests/e2e_pending.rs. Every thread blocks SIGUSR2 and SIGRTMIN+1 (from
//! the start, so selfckpt's own threads do too). The main thread starts a
//! thread named `waiter`, sends SIGRTMIN+1 to it alone (`pthread_kill`) and
//! SIGUSR2 and SIGRTMIN+1 to the process (`kill`), checks that the kernel
//! holds them where they were sent and prints `ready`. It then waits to be
//! checkpointed (and killed). When it finds itself restarted:
//!
//! - `waiter` reads its own pending set (/proc/thread-self/status,
//!   `SigPnd`) and takes SIGRTMIN+1 with `sigtimedwait` (a thread's own
//!   signals come before the process's);
//! - then the main thread reads its own set and the process's (`ShdPnd`),
//!   takes SIGUSR2 and SIGRTMIN+1 with `sigtimedwait`, and reads the
//!   process's set again.
//!
//! It prints one line `restarted: waiter_own HEX waiter_got N main_own HEX
//! shared HEX main_got N,N shared_after HEX identity exact|new-ids` (sets
//! as the kernel's hex masks, signals as numbers; a signal not received
//! within 10 s is 0) and exits 0. Exit 3: the signals were not pending as
//! sent before the checkpoint; exit 2: never restarted within 120 s.
//!
//! usage: pending DIR
use std::sync::atomic::{AtomicU64, Ordering::*};
use std::time::{Duration, Instant};

fn rt1() -> libc::c_int {
    libc::SIGRTMIN() + 1
}

fn bit(sig: libc::c_int) -> u64 {
    1 << (sig - 1)
}

/// `key` ("SigPnd:", "ShdPnd:") of the calling thread's status file.
fn mask(key: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/thread-self/status").unwrap();
    let line = text.lines().find(|l| l.starts_with(key)).unwrap();
    u64::from_str_radix(line[key.len()..].trim(), 16).unwrap()
}

/// Takes `sig` if it is or becomes pending within 10 s: its number, or 0.
fn take(sig: libc::c_int) -> libc::c_int {
    // SAFETY: plain signal-set calls and sigtimedwait with valid pointers.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        let ts = libc::timespec {
            tv_sec: 10,
            tv_nsec: 0,
        };
        libc::sigtimedwait(&set, std::ptr::null_mut(), &ts).max(0)
    }
}

fn block_ours() {
    // SAFETY: plain signal-set calls on this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR2);
        libc::sigaddset(&mut set, rt1());
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

fn wait_restart() {
    let start = Instant::now();
    while selfckpt::restart_count() == 0 {
        if start.elapsed() > Duration::from_secs(120) {
            eprintln!("pending: never restarted");
            std::process::exit(2);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn identity() -> &'static str {
    match selfckpt::restart_identity() {
        selfckpt::capture::park::Identity::Exact => "exact",
        selfckpt::capture::park::Identity::NewIds => "new-ids",
        selfckpt::capture::park::Identity::Original => "original",
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir] = &args[..] else {
        return Err("usage: pending DIR".into());
    };
    block_ours();
    let _ckpt = selfckpt::Checkpointer::builder()
        .dir(dir)
        .term_signal(None)
        .install()?;
    // What `waiter` saw after the restart: its own set, the signal it took.
    static WAITER_OWN: AtomicU64 = AtomicU64::new(0);
    static WAITER_GOT: AtomicU64 = AtomicU64::new(0);
    let waiter = std::thread::Builder::new()
        .name("waiter".into())
        .spawn(|| {
            wait_restart();
            WAITER_OWN.store(mask("SigPnd:"), SeqCst);
            WAITER_GOT.store(take(rt1()) as u64, SeqCst);
        })?;
    use std::os::unix::thread::JoinHandleExt;
    // SAFETY: signals to a live thread of ours and to our own process.
    unsafe {
        libc::pthread_kill(waiter.as_pthread_t(), rt1());
        libc::kill(libc::getpid(), libc::SIGUSR2);
        libc::kill(libc::getpid(), rt1());
    }
    let shared = mask("ShdPnd:");
    if shared != bit(libc::SIGUSR2) | bit(rt1()) || mask("SigPnd:") != 0 {
        eprintln!("pending: before the checkpoint: shared {shared:#x}");
        std::process::exit(3);
    }
    println!("ready");
    wait_restart();
    waiter.join().map_err(|_| "waiter panicked")?;
    let main_own = mask("SigPnd:");
    let shared = mask("ShdPnd:");
    let (usr2, rt) = (take(libc::SIGUSR2), take(rt1()));
    println!(
        "restarted: waiter_own {:x} waiter_got {} main_own {main_own:x} shared {shared:x} \
         main_got {usr2},{rt} shared_after {:x} identity {}",
        WAITER_OWN.load(SeqCst),
        WAITER_GOT.load(SeqCst),
        mask("ShdPnd:"),
        identity()
    );
    Ok(())
}
