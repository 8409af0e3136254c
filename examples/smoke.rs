//! A small deterministic program for the end-to-end tests: keeps a few MiB
//! of heap (Vec, HashMap, Strings, a Box tree) and an mmap of its own,
//! writes each step's checksum to stdout and to OUTFILE (a file with a
//! running offset), and sleeps between steps so tests can signal it.
//! With `--checkpoint-at K` it calls `selfckpt::checkpoint()` at step K
//! (outcome on stderr). At the end it checks that malloc, clocks, getpid,
//! sched_getcpu and new files work, and prints `post-checks ok`.
//!
//! `--mib N` adds N MiB of live heap (a Vec<u8> of pseudo-random pages,
//! partly rewritten at every step).
//!
//! usage: smoke DIR OUTFILE STEPS [--checkpoint-at K]... [--sleep-ms MS] [--mib N]
use std::collections::HashMap;
use std::io::Write;

enum Tree {
    Leaf(u64),
    Node(Box<Tree>, Box<Tree>),
}

fn build(depth: u32, seed: u64) -> Tree {
    if depth == 0 {
        Tree::Leaf(seed)
    } else {
        Tree::Node(
            Box::new(build(depth - 1, seed * 2 + 1)),
            Box::new(build(depth - 1, seed * 3 + 7)),
        )
    }
}

fn mutate(t: &mut Tree, k: u64) -> u64 {
    match t {
        Tree::Leaf(v) => {
            *v = v.wrapping_mul(6364136223846793005).wrapping_add(k);
            *v
        }
        Tree::Node(a, b) => mutate(a, k).wrapping_add(mutate(b, k ^ 1)),
    }
}

fn post_checks(dir: &str) -> Result<(), String> {
    let small: Vec<Box<[u8; 16]>> = (0..10_000).map(|i| Box::new([i as u8; 16])).collect();
    let big = vec![7u8; 64 << 20];
    if small[9_999][0] != (9_999 % 256) as u8 || big[(64 << 20) - 1] != 7 {
        return Err("malloc".into());
    }
    drop((small, big));
    let t0 = std::time::Instant::now();
    std::thread::sleep(std::time::Duration::from_millis(2));
    if t0.elapsed() < std::time::Duration::from_millis(2) {
        return Err("clock_gettime".into());
    }
    let stat = std::fs::read_to_string("/proc/self/stat").map_err(|e| e.to_string())?;
    if stat.split(' ').next() != Some(&std::process::id().to_string()) {
        return Err(format!(
            "getpid {} vs /proc/self/stat {stat}",
            std::process::id()
        ));
    }
    // SAFETY: sched_getcpu has no preconditions.
    if unsafe { libc::sched_getcpu() } < 0 {
        return Err("sched_getcpu".into());
    }
    let p = std::path::Path::new(dir).join("post-check.txt");
    std::fs::write(&p, b"fresh file").map_err(|e| e.to_string())?;
    if std::fs::read(&p).map_err(|e| e.to_string())? != b"fresh file" {
        return Err("new file".into());
    }
    std::fs::remove_file(&p).map_err(|e| e.to_string())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        return Err("usage: smoke DIR OUTFILE STEPS [--checkpoint-at K]... [--sleep-ms MS]".into());
    }
    let (dir, outfile, steps): (&str, &str, u64) = (&args[1], &args[2], args[3].parse()?);
    let mut at = Vec::new();
    let mut sleep_ms = 20;
    let mut mib = 0usize;
    let mut i = 4;
    while i + 1 < args.len() {
        match args[i].as_str() {
            "--checkpoint-at" => at.push(args[i + 1].parse::<u64>()?),
            "--sleep-ms" => sleep_ms = args[i + 1].parse()?,
            "--mib" => mib = args[i + 1].parse()?,
            other => return Err(format!("unknown option {other}").into()),
        }
        i += 2;
    }
    let _c = selfckpt::Checkpointer::builder()
        .dir(dir)
        .keep(10)
        .install()?;
    let mut out = std::fs::File::create(outfile)?;
    let mut v: Vec<u64> = (0..200_000).collect();
    let mut names: HashMap<u64, String> = HashMap::new();
    let mut tree = build(12, 1);
    // SAFETY: a private anonymous mapping of our own, used as plain memory.
    let map = unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            4 << 20,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(p, libc::MAP_FAILED);
        std::slice::from_raw_parts_mut(p as *mut u64, (4 << 20) / 8)
    };
    let mut ballast = vec![0u8; mib << 20];
    let mut block = [0u8; 4096];
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for b in block.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b.copy_from_slice(&x.to_le_bytes());
    }
    for (k, page) in ballast.chunks_mut(4096).enumerate() {
        page.copy_from_slice(&block[..page.len()]);
        page[..8].copy_from_slice(&(k as u64).to_le_bytes());
    }
    for step in 0..steps {
        for page in ballast.chunks_mut(4096).skip(step as usize % 7).step_by(7) {
            page[8] = page[8].wrapping_add(step as u8 + 1);
        }
        let ballast_sum = ballast.chunks(4096).fold(0u64, |a, p| {
            a.wrapping_mul(31).wrapping_add(p[8] as u64 ^ p[0] as u64)
        });
        v.iter_mut()
            .for_each(|x| *x = x.wrapping_mul(31).wrapping_add(step));
        names.insert(step, format!("name-{step}-{}", v[step as usize % v.len()]));
        let t = mutate(&mut tree, step);
        for (j, m) in map.iter_mut().enumerate().step_by(509) {
            *m = m.wrapping_add(j as u64 ^ step);
        }
        let sum = v.iter().fold(t, |a, b| a.wrapping_mul(3).wrapping_add(*b))
            ^ names.values().map(|s| s.len() as u64).sum::<u64>()
            ^ map
                .iter()
                .step_by(509)
                .fold(0u64, |a, b| a.wrapping_add(*b));
        let line = format!("step {step} checksum {:016x}\n", sum ^ ballast_sum);
        print!("{line}");
        std::io::stdout().flush()?;
        out.write_all(line.as_bytes())?;
        if at.contains(&step) {
            eprintln!("checkpoint {step}: {:?}", selfckpt::checkpoint()?);
        }
        std::thread::sleep(std::time::Duration::from_millis(sleep_ms));
    }
    match post_checks(dir) {
        Ok(()) => println!("post-checks ok"),
        Err(what) => {
            eprintln!("post-check failed: {what}");
            std::process::exit(3);
        }
    }
    Ok(())
}
