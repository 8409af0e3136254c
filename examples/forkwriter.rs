//! A program that rewrites its memory at full speed while it is
//! checkpointed (for forked checkpoints, `tests/e2e_forked.rs`).
//!
//! WRITERS threads each own MIB/WRITERS MiB of pages. A writer's state is
//! (gen, pos): pages below pos hold generation gen, the others gen - 1;
//! the writer checks every page holds what the state says before it
//! overwrites it with the next generation, so any image that is not the
//! memory of one instant (a page older or newer than its writer's state
//! says) is found within one pass after a restart. With no writer the
//! main thread checks all pages itself after a restart.
//!
//! The checkpoint is taken with `selfckpt::checkpoint()` (mode `self`),
//! or from outside (mode `hold`: prints `ready`, then waits). In `self`
//! mode a SIGCHLD handler and a thread calling `waitpid(-1, WNOHANG)`
//! watch for any trace of a child; the original process prints
//! `continued sigchld N reaped N` and exits, the restarted one
//! `restarted ok` once every writer has done two more passes (every page
//! checked).
//!
//! usage: forkwriter MIB WRITERS self|hold   (settings: SELFCKPT_*)
//! FORKWRITER_SHARED=1: the areas are MAP_SHARED anonymous memory;
//! FORKWRITER_DONTFORK=1: the first area is MADV_DONTFORK;
//! FORKWRITER_TOGGLE_WIPE=1: a thread turns MADV_WIPEONFORK on and off on
//! the first area all the time (a checkpoint must never store it wiped).
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};

const PAGE: usize = 4096;
const WORDS: usize = PAGE / 8;

static SIGCHLD_SEEN: AtomicU64 = AtomicU64::new(0);
static REAPED: AtomicU64 = AtomicU64::new(0);
static WAIT_ODD: AtomicU64 = AtomicU64::new(0);
static STOP_WAITER: AtomicBool = AtomicBool::new(false);

/// One writer's area and state.
struct Area {
    base: usize,
    pages: usize,
    gen: AtomicU64,
    pos: AtomicUsize,
    /// Full passes done (for the restarted main thread).
    passes: AtomicU64,
}

fn word(gen: u64, page: usize, w: usize) -> u64 {
    (gen << 40) ^ ((page as u64) << 12) ^ (w as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

fn page_of(a: &Area, i: usize) -> &'static mut [u64] {
    // SAFETY: page i of the writer's own mapping, used by one thread at a
    // time (its writer, or main when there is none).
    unsafe { std::slice::from_raw_parts_mut((a.base + i * PAGE) as *mut u64, WORDS) }
}

fn check(a: &Area, i: usize, gen: u64, who: usize) {
    let p = page_of(a, i);
    if let Some(w) = (0..WORDS).find(|&w| p[w] != word(gen, i, w)) {
        eprintln!(
            "writer {who}: page {i} word {w} holds {:#x}, expected generation {gen} ({:#x}); state gen {} pos {}",
            p[w],
            word(gen, i, w),
            a.gen.load(Relaxed),
            a.pos.load(Relaxed)
        );
        std::process::exit(3);
    }
}

fn fill(a: &Area, i: usize, gen: u64) {
    let p = page_of(a, i);
    for (w, v) in p.iter_mut().enumerate() {
        *v = word(gen, i, w);
    }
}

fn writer(a: &'static Area, who: usize) {
    loop {
        let gen = a.gen.load(Relaxed);
        let mut i = a.pos.load(Relaxed);
        while i < a.pages {
            check(a, i, gen - 1, who);
            fill(a, i, gen);
            i += 1;
            a.pos.store(i, Release);
        }
        a.gen.store(gen + 1, Release);
        a.pos.store(0, Release);
        a.passes.fetch_add(1, AcqRel);
    }
}

/// Every page as the state says (main, with no writer running).
fn check_all(a: &Area) {
    let (gen, pos) = (a.gen.load(Acquire), a.pos.load(Acquire));
    for i in 0..a.pages {
        check(a, i, if i < pos { gen } else { gen - 1 }, 0);
    }
}

extern "C" fn on_sigchld(_: libc::c_int) {
    SIGCHLD_SEEN.fetch_add(1, Relaxed);
}

fn waiter() {
    while !STOP_WAITER.load(Relaxed) {
        let mut st = 0;
        // SAFETY: plain waitpid on any child, not blocking.
        let r = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
        let errno = std::io::Error::last_os_error().raw_os_error();
        if r > 0 {
            REAPED.fetch_add(1, Relaxed);
        } else if r < 0 && errno != Some(libc::ECHILD) {
            WAIT_ODD.fetch_add(1, Relaxed);
        }
        std::thread::sleep(std::time::Duration::from_micros(500));
    }
}

fn map(n: usize, first: bool) -> usize {
    let on = |v: &str| std::env::var_os(v).is_some_and(|x| x == "1");
    let sharing = if on("FORKWRITER_SHARED") {
        libc::MAP_SHARED
    } else {
        libc::MAP_PRIVATE
    };
    // SAFETY: a fresh anonymous mapping, never unmapped.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            n,
            libc::PROT_READ | libc::PROT_WRITE,
            sharing | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert!(p != libc::MAP_FAILED, "cannot map {n} bytes");
    if first && on("FORKWRITER_DONTFORK") {
        // SAFETY: advice on our own fresh mapping.
        assert_eq!(unsafe { libc::madvise(p, n, libc::MADV_DONTFORK) }, 0);
    }
    p as usize
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (mib, writers, mode) = match &args[1..] {
        [m, w, mode] => (m.parse::<usize>()?, w.parse::<usize>()?, mode.clone()),
        _ => return Err("usage: forkwriter MIB WRITERS self|hold".into()),
    };
    let _ckpt = selfckpt::Builder::from_env()?.install()?;
    let n_areas = writers.max(1);
    let pages = (mib << 20) / PAGE / n_areas;
    let areas: &'static [Area] = Box::leak(
        (0..n_areas)
            .map(|i| Area {
                base: map(pages * PAGE, i == 0),
                pages,
                gen: AtomicU64::new(1),
                pos: AtomicUsize::new(0),
                passes: AtomicU64::new(0),
            })
            .collect(),
    );
    for a in areas {
        (0..a.pages).for_each(|i| fill(a, i, 0));
    }
    if std::env::var_os("FORKWRITER_TOGGLE_WIPE").is_some_and(|x| x == "1") {
        let (base, len) = (areas[0].base, areas[0].pages * PAGE);
        std::thread::spawn(move || loop {
            for advice in [libc::MADV_WIPEONFORK, libc::MADV_KEEPONFORK] {
                // SAFETY: advice on our own mapping; it changes no content here.
                unsafe { libc::madvise(base as *mut libc::c_void, len, advice) };
                std::thread::sleep(std::time::Duration::from_micros(300));
            }
        });
    }
    for (who, a) in areas.iter().enumerate().take(writers) {
        std::thread::spawn(move || writer(a, who));
    }
    // Every writer under way before the checkpoint.
    while areas
        .iter()
        .take(writers)
        .any(|a| a.passes.load(Acquire) == 0)
    {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    if mode == "hold" {
        println!("ready");
        while selfckpt::restart_count() == 0 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        restarted(areas, writers);
        return Ok(());
    }
    // SAFETY: installing a handler that only counts.
    unsafe { libc::signal(libc::SIGCHLD, on_sigchld as *const () as usize) };
    let w = std::thread::spawn(waiter);
    match selfckpt::checkpoint()? {
        selfckpt::Outcome::Continued => {
            STOP_WAITER.store(true, Relaxed);
            let _ = w.join();
            // SAFETY: a blocking wait: with no child of ours, ECHILD at once.
            let r = unsafe { libc::wait(std::ptr::null_mut()) };
            println!(
                "continued sigchld {} reaped {} odd {} wait {} {}",
                SIGCHLD_SEEN.load(Relaxed),
                REAPED.load(Relaxed),
                WAIT_ODD.load(Relaxed),
                r,
                std::io::Error::last_os_error()
            );
        }
        selfckpt::Outcome::Restarted => restarted(areas, writers),
    }
    Ok(())
}

/// In the restarted process: every page checked (by the writers, two
/// passes each, or by main), then `restarted ok`.
fn restarted(areas: &[Area], writers: usize) {
    if writers == 0 {
        check_all(&areas[0]);
    }
    let at: Vec<u64> = areas.iter().map(|a| a.passes.load(Acquire)).collect();
    let t = std::time::Instant::now();
    while areas
        .iter()
        .zip(&at)
        .take(writers)
        .any(|(a, &p)| a.passes.load(Acquire) < p + 2)
    {
        if t.elapsed().as_secs() > 60 {
            eprintln!("writers did not finish two passes after the restart");
            std::process::exit(4);
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    println!("restarted ok");
}
