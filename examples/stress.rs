//! Stress program: THREADS threads hammer `malloc`/`free`, `printf` and
//! `pthread_create`/`pthread_join` (std::thread) while the main thread
//! takes COUNT checkpoints back to back. Every allocation carries a
//! pattern checked before it is freed, so a checkpoint that disturbed the
//! heap is caught. Prints one JSON line of pause statistics on stderr.
//!
//! A process restarted from one of the images stops its threads, checks
//! them and prints `restarted after checkpoint N: ok`.
//!
//! usage: stress DIR COUNT [--threads N] [--idle] [--level L]
//! `--idle`: the threads only sleep (for suspend-latency figures).
//! `STRESS_EACH=1` prints every checkpoint's suspend and pause times.
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

static STOP: AtomicBool = AtomicBool::new(false);

/// A live allocation filled with a pattern derived from its seed.
struct Block {
    ptr: *mut u8,
    len: usize,
    seed: u8,
}

fn fill(b: &Block) {
    // SAFETY: ptr points to len bytes we allocated.
    unsafe { std::ptr::write_bytes(b.ptr, b.seed, b.len) };
}

fn intact(b: &Block) -> bool {
    // SAFETY: as above.
    let s = unsafe { std::slice::from_raw_parts(b.ptr, b.len) };
    s.iter().all(|&x| x == b.seed)
}

/// One hammering thread; returns the number of rounds or what broke.
fn hammer(id: usize, idle: bool, rounds: Arc<AtomicU64>) -> Result<u64, String> {
    let mut live: Vec<Block> = Vec::new();
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ id as u64;
    let mut n = 0u64;
    while !STOP.load(Ordering::Acquire) {
        if idle {
            std::thread::sleep(std::time::Duration::from_millis(2));
            continue;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = 16 + (x % 32768) as usize;
        // SAFETY: malloc with a non-zero size; checked for NULL.
        let ptr = unsafe { libc::malloc(len) } as *mut u8;
        if ptr.is_null() {
            return Err(format!("thread {id}: malloc({len}) failed"));
        }
        let b = Block {
            ptr,
            len,
            seed: (x >> 40) as u8,
        };
        fill(&b);
        live.push(b);
        if live.len() > 48 {
            let b = live.swap_remove((x >> 20) as usize % live.len());
            if !intact(&b) {
                return Err(format!("thread {id}: a block of {} bytes changed", b.len));
            }
            // SAFETY: allocated by malloc above, freed once.
            unsafe { libc::free(b.ptr.cast()) };
        }
        if n % 64 == 0 {
            // SAFETY: a NUL-terminated format with matching arguments.
            unsafe { libc::printf(c"thread %d round %llu\n".as_ptr(), id as i32, n) };
        }
        if n % 256 == 0 {
            let h = std::thread::spawn(move || (0..1000u64).fold(x, |a, b| a ^ (b * a)));
            h.join()
                .map_err(|_| format!("thread {id}: a child panicked"))?;
        }
        n += 1;
        rounds.fetch_add(1, Ordering::Relaxed);
    }
    for b in live.drain(..) {
        if !intact(&b) {
            return Err(format!("thread {id}: a block of {} bytes changed", b.len));
        }
        // SAFETY: as above.
        unsafe { libc::free(b.ptr.cast()) };
    }
    Ok(n)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        return Err("usage: stress DIR COUNT [--threads N] [--idle] [--level L]".into());
    }
    let (dir, count): (&str, u64) = (&args[1], args[2].parse()?);
    let (mut threads, mut idle, mut level) = (16usize, false, None);
    let mut i = 3;
    while i < args.len() {
        match args[i].as_str() {
            "--threads" => {
                threads = args.get(i + 1).ok_or("--threads N")?.parse()?;
                i += 1;
            }
            "--level" => {
                let l = args.get(i + 1).ok_or("--level L")?;
                level = Some(l.parse::<selfckpt::Level>()?);
                i += 1;
            }
            "--idle" => idle = true,
            other => return Err(format!("unknown option {other}").into()),
        }
        i += 1;
    }
    let mut b = selfckpt::Checkpointer::builder()
        .dir(dir)
        .keep(count as usize + 1);
    if let Some(l) = level {
        b = b.level(l);
    }
    let ckpt = b.install()?;
    let rounds = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..threads)
        .map(|id| {
            let r = rounds.clone();
            std::thread::spawn(move || hammer(id, idle, r))
        })
        .collect();
    let finish = |handles: Vec<std::thread::JoinHandle<Result<u64, String>>>| {
        STOP.store(true, Ordering::Release);
        let mut problems = Vec::new();
        for h in handles {
            match h.join() {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => problems.push(e),
                Err(_) => problems.push("a thread panicked".into()),
            }
        }
        // SAFETY: flushing C stdio.
        unsafe { libc::fflush(std::ptr::null_mut()) };
        problems
    };
    let (mut pause, mut suspend) = (Vec::new(), Vec::new());
    for k in 1..=count {
        let before = rounds.load(Ordering::Relaxed);
        while !idle && rounds.load(Ordering::Relaxed) < before + threads as u64 {
            std::thread::yield_now();
        }
        match selfckpt::checkpoint()? {
            selfckpt::Outcome::Restarted => {
                let problems = finish(handles);
                if problems.is_empty() {
                    eprintln!("restarted after checkpoint {k}: ok");
                    return Ok(());
                }
                eprintln!("restarted after checkpoint {k}: {problems:?}");
                std::process::exit(3);
            }
            selfckpt::Outcome::Continued => {
                let st = ckpt.last_stats().ok_or("no stats after a checkpoint")?;
                if std::env::var_os("STRESS_EACH").is_some() {
                    eprintln!(
                        "checkpoint {k}: suspend {} us, pause {} us",
                        st.suspend_ns / 1000,
                        st.pause_ns / 1000
                    );
                }
                pause.push(st.pause_ns);
                suspend.push(st.suspend_ns);
            }
        }
    }
    let problems = finish(handles);
    if !problems.is_empty() {
        eprintln!("{problems:?}");
        std::process::exit(3);
    }
    pause.sort_unstable();
    suspend.sort_unstable();
    let ms = |ns: u64| ns as f64 / 1e6;
    eprintln!(
        "{{\"threads\": {threads}, \"checkpoints\": {count}, \"pause_ms_median\": {:.3}, \"pause_ms_p99\": {:.3}, \"pause_ms_max\": {:.3}, \"suspend_ms_median\": {:.3}, \"suspend_ms_p99\": {:.3}}}",
        ms(percentile(&pause, 0.5)),
        ms(percentile(&pause, 0.99)),
        ms(*pause.last().unwrap_or(&0)),
        ms(percentile(&suspend, 0.5)),
        ms(percentile(&suspend, 0.99)),
    );
    println!("stress ok");
    Ok(())
}
