//! A deterministic multi-threaded program for the end-to-end tests: 8
//! `std::thread` workers fed over channels, results gathered under a mutex
//! and condvar, a rayon pool summing in parallel, a thread blocked on a
//! condvar until the end and one sleeping in a loop. The main thread prints
//! one checksum line per step (and flushes), so output is identical however
//! the threads interleave. At the end every worker checks that its thread
//! id, `pthread_self` and thread-locals survived, and the program prints
//! `threads ok`.
//!
//! `--extra N` adds N threads that nap and compute until the end (for
//! thread-count tests); `--blocker` adds one that blocks every signal with
//! a raw `rt_sigprocmask` system call (the libc functions cannot block
//! selfckpt's signals), so checkpoints must fail cleanly (`--timeout-ms`
//! bounds their wait).
//!
//! usage: threads DIR STEPS [--sleep-ms MS] [--checkpoint-at K]... [--extra N]
//!        [--blocker] [--timeout-ms MS]
use rayon::prelude::*;
use std::cell::Cell;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};

const WORKERS: usize = 8;

thread_local! {
    static JOBS: Cell<u64> = const { Cell::new(0) };
}

/// Results of the current step, one per worker.
struct Board {
    results: Mutex<Vec<Option<u64>>>,
    ready: Condvar,
}

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// Identity of a thread as the program sees it.
fn identity() -> (i64, usize) {
    // SAFETY: gettid and pthread_self have no preconditions.
    unsafe { (libc::gettid() as i64, libc::pthread_self() as usize) }
}

fn worker(id: usize, jobs: mpsc::Receiver<u64>, board: Arc<Board>) -> Result<u64, String> {
    let born = identity();
    let mut state: Vec<u64> = (0..50_000).map(|i| mix(i ^ id as u64)).collect();
    for step in jobs {
        for (j, s) in state.iter_mut().enumerate().step_by(7) {
            *s = mix(*s ^ step ^ j as u64);
        }
        let r = state.iter().fold(id as u64, |a, b| a.rotate_left(5) ^ b);
        JOBS.with(|c| c.set(c.get() + 1));
        let mut res = board.results.lock().map_err(|e| e.to_string())?;
        res[id] = Some(r);
        board.ready.notify_all();
    }
    let now = identity();
    if now != born {
        return Err(format!("worker {id}: identity {born:?} became {now:?}"));
    }
    Ok(JOBS.with(|c| c.get()))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        return Err("usage: threads DIR STEPS [--sleep-ms MS] [--checkpoint-at K]...".into());
    }
    let (dir, steps): (&str, u64) = (&args[1], args[2].parse()?);
    let (mut sleep_ms, mut at, mut extra, mut blocker, mut timeout_ms) =
        (20u64, Vec::new(), 0usize, false, 5000u64);
    let mut i = 3;
    while i < args.len() {
        let value = || args.get(i + 1).ok_or(format!("{} needs a value", args[i]));
        match args[i].as_str() {
            "--sleep-ms" => sleep_ms = value()?.parse()?,
            "--checkpoint-at" => at.push(value()?.parse::<u64>()?),
            "--extra" => extra = value()?.parse()?,
            "--timeout-ms" => timeout_ms = value()?.parse()?,
            "--blocker" => {
                blocker = true;
                i -= 1;
            }
            other => return Err(format!("unknown option {other}").into()),
        }
        i += 2;
    }
    let _c = selfckpt::Checkpointer::builder()
        .dir(dir)
        .keep(10)
        .suspend_timeout(std::time::Duration::from_millis(timeout_ms))
        .install()?;
    let pool = rayon::ThreadPoolBuilder::new().num_threads(4).build()?;
    let board = Arc::new(Board {
        results: Mutex::new(vec![None; WORKERS]),
        ready: Condvar::new(),
    });
    let mut senders = Vec::new();
    let mut handles = Vec::new();
    for id in 0..WORKERS {
        let (tx, rx) = mpsc::channel();
        let b = board.clone();
        senders.push(tx);
        handles.push(
            std::thread::Builder::new()
                .name(format!("worker-{id}"))
                .spawn(move || worker(id, rx, b))?,
        );
    }
    // One thread waits on a condvar the whole run, one sleeps in a loop.
    let end = Arc::new((Mutex::new(false), Condvar::new()));
    let e = end.clone();
    let waiter = std::thread::spawn(move || {
        let born = identity();
        let (m, cv) = &*e;
        let mut done = m.lock().unwrap_or_else(|p| p.into_inner());
        while !*done {
            done = cv.wait(done).unwrap_or_else(|p| p.into_inner());
        }
        born == identity()
    });
    let stop = Arc::new(AtomicBool::new(false));
    let naps = Arc::new(AtomicU64::new(0));
    let (s, n) = (stop.clone(), naps.clone());
    let sleeper = std::thread::spawn(move || {
        while !s.load(Ordering::Acquire) {
            std::thread::sleep(std::time::Duration::from_millis(7));
            n.fetch_add(1, Ordering::Relaxed);
        }
    });

    let mut others = Vec::new();
    for k in 0..extra + usize::from(blocker) {
        let (s, n) = (stop.clone(), naps.clone());
        let block = k == extra;
        others.push(
            std::thread::Builder::new()
                .name(if block {
                    "blocker".into()
                } else {
                    format!("extra-{k}")
                })
                .stack_size(128 << 10)
                .spawn(move || {
                    if block {
                        // SAFETY: blocking every signal in this thread only,
                        // past libc (whose wrappers keep selfckpt's
                        // signals deliverable); 8 bytes: the kernel's set.
                        unsafe {
                            let all: u64 = !0;
                            libc::syscall(
                                libc::SYS_rt_sigprocmask,
                                libc::SIG_BLOCK,
                                &all as *const u64,
                                std::ptr::null_mut::<u64>(),
                                8usize,
                            );
                        }
                    }
                    let born = identity();
                    let mut x = k as u64;
                    while !s.load(Ordering::Acquire) {
                        std::thread::sleep(std::time::Duration::from_millis(3));
                        x = (0..1000).fold(x, |a, b| mix(a ^ b));
                        n.fetch_add(x & 1, Ordering::Relaxed);
                    }
                    born == identity()
                })?,
        );
    }

    let main_id = identity();
    let mut out = std::io::stdout().lock();
    for step in 0..steps {
        for tx in &senders {
            tx.send(step)?;
        }
        let par: u64 = pool.install(|| {
            (0..200_000u64)
                .into_par_iter()
                .map(|k| mix(k ^ step))
                .reduce(|| 0, u64::wrapping_add)
        });
        let mut res = board.results.lock().map_err(|e| e.to_string())?;
        while res.iter().any(Option::is_none) {
            res = board.ready.wait(res).map_err(|e| e.to_string())?;
        }
        let combined = res
            .iter_mut()
            .map(|r| r.take().unwrap_or(0))
            .fold(par, |a, b| mix(a ^ b));
        drop(res);
        writeln!(out, "step {step} checksum {combined:016x}")?;
        out.flush()?;
        if at.contains(&step) {
            match selfckpt::checkpoint() {
                Ok(o) => eprintln!(
                    "checkpoint {step}: {o:?} ({})",
                    selfckpt::restart_identity().describe()
                ),
                Err(e) => eprintln!("checkpoint {step}: error: {e}"),
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(sleep_ms));
    }
    drop(senders);
    let mut counts = Vec::new();
    for h in handles {
        counts.push(h.join().map_err(|_| "a worker panicked")??);
    }
    *end.0.lock().unwrap_or_else(|p| p.into_inner()) = true;
    end.1.notify_all();
    let waiter_ok = waiter.join().map_err(|_| "the waiter panicked")?;
    stop.store(true, Ordering::Release);
    sleeper.join().map_err(|_| "the sleeper panicked")?;
    let mut others_ok = true;
    for h in others {
        others_ok &= h.join().map_err(|_| "an extra thread panicked")?;
    }
    writeln!(out, "jobs per worker {counts:?}")?;
    if !waiter_ok || !others_ok || main_id != identity() || naps.load(Ordering::Relaxed) == 0 {
        eprintln!(
            "identity lost: waiter {waiter_ok}, others {others_ok}, main {main_id:?} vs {:?}",
            identity()
        );
        std::process::exit(3);
    }
    writeln!(out, "threads ok")?;
    // Restarted or not, say how ids were kept (the tests read it).
    eprintln!(
        "restarts: {}, identity: {}",
        selfckpt::restart_count(),
        selfckpt::restart_identity().describe()
    );
    Ok(())
}
