//! A program with interval timers, for tests/e2e_itimers.rs. Its signal
//! handlers only count; the main thread prints `ready` once its timers
//! run, waits to be checkpointed (and killed), and, when it finds itself
//! restarted from an image, measures how its timers go on and prints one
//! line `restarted MODE: KEY VALUE ...` ending with `identity exact` or
//! `identity new-ids`:
//!
//! - `real`: ITIMER_REAL every 50 ms; `ready` after three SIGALRMs. After
//!   a restart: `interval_us` (the period getitimer reports), `alarms` (the
//!   SIGALRMs counted in the next second) and `in_ms` (that second, as
//!   measured).
//! - `alarm`: alarm(3), then `ready`. After a restart: `left_us` (the time
//!   ITIMER_REAL had left when the program noticed the restart) and
//!   `fired_after_ms` (from then until the SIGALRM came).
//! - `cpu`: ITIMER_PROF every 10 ms of CPU time and ITIMER_VIRTUAL once,
//!   after 1.5 s of user CPU time, while it spins; `ready` after 20
//!   SIGPROFs. After a restart: `prof_interval_us`, `virtual_left_us`,
//!   `fired_after_cpu_ms` (the process's CPU time from noticing the
//!   restart until SIGVTALRM came) and `profs` (SIGPROFs in that time).
//!
//! A one-shot timer that fired before the restart is an error (exit 3), one
//! that does not fire within 30 s after it too (exit 1); a program never
//! restarted gives up after 120 s (exit 2).
//!
//! usage: itimers DIR real|alarm|cpu
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

static ALRM: AtomicU64 = AtomicU64::new(0);
static VTALRM: AtomicU64 = AtomicU64::new(0);
static PROF: AtomicU64 = AtomicU64::new(0);

extern "C" fn count(sig: libc::c_int) {
    match sig {
        libc::SIGALRM => &ALRM,
        libc::SIGVTALRM => &VTALRM,
        _ => &PROF,
    }
    .fetch_add(1, Relaxed);
}

fn count_signal(sig: libc::c_int) {
    // SAFETY: installing a handler that only bumps an atomic counter.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = count as *const () as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(sig, &sa, std::ptr::null_mut());
    }
}

fn timeval(d: Duration) -> libc::timeval {
    libc::timeval {
        tv_sec: d.as_secs() as libc::time_t,
        tv_usec: d.subsec_micros() as libc::suseconds_t,
    }
}

fn set_timer(which: libc::c_int, interval: Duration, value: Duration) {
    let v = libc::itimerval {
        it_interval: timeval(interval),
        it_value: timeval(value),
    };
    // SAFETY: setitimer with a valid itimerval.
    let r = unsafe { libc::setitimer(which, &v, std::ptr::null_mut()) };
    assert_eq!(r, 0, "setitimer: {}", std::io::Error::last_os_error());
}

/// (time left, period) of a timer, in microseconds.
fn timer_us(which: libc::c_int) -> (u64, u64) {
    // SAFETY: itimerval is plain old data; getitimer fills it.
    let mut v: libc::itimerval = unsafe { std::mem::zeroed() };
    // SAFETY: a valid out-pointer.
    unsafe { libc::getitimer(which, &mut v) };
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    (us(v.it_value), us(v.it_interval))
}

/// CPU time of the whole process.
fn cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Burns a little CPU time in user space.
fn spin() {
    let mut x = 0u64;
    for i in 0..100_000u64 {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
    }
}

/// Waits (sleeping, or spinning with `busy`) until `done`; exits with
/// `code` after `limit`.
fn wait_until(busy: bool, limit: Duration, code: i32, what: &str, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > limit {
            eprintln!("itimers: {what} did not happen within {limit:?}");
            std::process::exit(code);
        }
        if busy {
            spin();
        } else {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn restarted() -> bool {
    selfckpt::restart_count() > 0
}

fn identity() -> &'static str {
    match selfckpt::restart_identity() {
        selfckpt::capture::park::Identity::Exact => "exact",
        selfckpt::capture::park::Identity::NewIds => "new-ids",
        selfckpt::capture::park::Identity::Original => "original",
    }
}

/// Exits 3 if the one-shot timer counted by `fired` expired before the
/// checkpoint.
fn not_fired_yet(fired: &AtomicU64, what: &str) {
    if fired.load(Relaxed) > 0 {
        eprintln!("itimers: {what} fired before the checkpoint");
        std::process::exit(3);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, mode] = &args[..] else {
        return Err("usage: itimers DIR real|alarm|cpu".into());
    };
    let _ckpt = selfckpt::Checkpointer::builder().dir(dir).install()?;
    for sig in [libc::SIGALRM, libc::SIGVTALRM, libc::SIGPROF] {
        count_signal(sig);
    }
    let never = Duration::from_secs(120);
    let soon = Duration::from_secs(30);
    match mode.as_str() {
        "real" => {
            set_timer(
                libc::ITIMER_REAL,
                Duration::from_millis(50),
                Duration::from_millis(50),
            );
            wait_until(false, soon, 1, "three SIGALRMs", || ALRM.load(Relaxed) >= 3);
            println!("ready");
            wait_until(false, never, 2, "a restart", restarted);
            let (t0, n0) = (Instant::now(), ALRM.load(Relaxed));
            std::thread::sleep(Duration::from_secs(1));
            let (n, ms) = (ALRM.load(Relaxed) - n0, t0.elapsed().as_millis());
            let (_, interval) = timer_us(libc::ITIMER_REAL);
            println!(
                "restarted real: interval_us {interval} alarms {n} in_ms {ms} identity {}",
                identity()
            );
        }
        "alarm" => {
            // SAFETY: alarm has no preconditions.
            unsafe { libc::alarm(3) };
            println!("ready");
            wait_until(false, never, 2, "a restart", restarted);
            let (left, _) = timer_us(libc::ITIMER_REAL);
            let t0 = Instant::now();
            not_fired_yet(&ALRM, "alarm(3)");
            wait_until(false, soon, 1, "SIGALRM", || ALRM.load(Relaxed) > 0);
            println!(
                "restarted alarm: left_us {left} fired_after_ms {} identity {}",
                t0.elapsed().as_millis(),
                identity()
            );
        }
        "cpu" => {
            set_timer(
                libc::ITIMER_PROF,
                Duration::from_millis(10),
                Duration::from_millis(10),
            );
            set_timer(
                libc::ITIMER_VIRTUAL,
                Duration::ZERO,
                Duration::from_millis(1500),
            );
            wait_until(true, soon, 1, "20 SIGPROFs", || PROF.load(Relaxed) >= 20);
            println!("ready");
            wait_until(true, never, 2, "a restart", restarted);
            let (left, _) = timer_us(libc::ITIMER_VIRTUAL);
            let (_, prof_interval) = timer_us(libc::ITIMER_PROF);
            let (c0, p0) = (cpu_time(), PROF.load(Relaxed));
            not_fired_yet(&VTALRM, "ITIMER_VIRTUAL");
            wait_until(true, soon, 1, "SIGVTALRM", || VTALRM.load(Relaxed) > 0);
            let (cpu, profs) = (cpu_time() - c0, PROF.load(Relaxed) - p0);
            println!(
                "restarted cpu: prof_interval_us {prof_interval} virtual_left_us {left} \
                 fired_after_cpu_ms {} profs {profs} identity {}",
                cpu.as_millis(),
                identity()
            );
        }
        other => return Err(format!("unknown mode {other}: real, alarm or cpu").into()),
    }
    Ok(())
}
