//! A workload for benchmarks: holds N MiB (default 1024) of memory filled
//! with one pattern, takes one checkpoint, and prints the checkpoint's
//! figures (every phase) as one JSON line. After a restart it verifies the
//! memory and prints `restarted ok`.
//!
//! Patterns (mapped memory, all of it counted in GB/s):
//!   random       xorshift bytes (incompressible)
//!   text         pseudo-English words (zstd -1 ratio about 3)
//!   zerotouched  written with zeros (present pages, all zero)
//!   untouched    mapped, never touched (no page present)
//!   mixed        thirds: random, text, zerotouched (the default)
//!   sparse       page by page: text, zero-touched, untouched (chunks of
//!                many one-page runs; for tests)
//!
//! usage: bigmem DIR [MIB] [LEVEL] [PATTERN]
//!        bigmem --write-pattern FILE MIB PATTERN   (the same bytes, to a
//!                                                   file, for zstd/dd)
//!        bigmem --memcpy MIB                       (memory bandwidth)
use std::io::Write;

const WORDS: [&str; 24] = [
    "checkpoint ",
    "restart ",
    "memory ",
    "the ",
    "of ",
    "process ",
    "page ",
    "image ",
    "and ",
    "thread ",
    "signal ",
    "kernel ",
    "a ",
    "to ",
    "is ",
    "in ",
    "that ",
    "with ",
    "for ",
    "when ",
    "file ",
    "written ",
    "zero ",
    "again ",
];

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn fill_random(buf: &mut [u8], rng: &mut Rng) {
    let mut chunks = buf.chunks_exact_mut(8);
    for c in &mut chunks {
        c.copy_from_slice(&rng.next().to_le_bytes());
    }
    let rest = chunks.into_remainder();
    let last = rng.next().to_le_bytes();
    rest.copy_from_slice(&last[..rest.len()]);
}

fn fill_text(buf: &mut [u8], rng: &mut Rng) {
    let mut at = 0;
    while at < buf.len() {
        let w = WORDS[(rng.next() % WORDS.len() as u64) as usize].as_bytes();
        let k = w.len().min(buf.len() - at);
        buf[at..at + k].copy_from_slice(&w[..k]);
        at += k;
    }
}

/// Fills `buf` (fresh, untouched anonymous memory) with `pattern`.
fn fill(buf: &mut [u8], pattern: &str) -> Result<(), String> {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let n = buf.len();
    match pattern {
        "random" => fill_random(buf, &mut rng),
        "text" => fill_text(buf, &mut rng),
        "zerotouched" => buf.iter_mut().for_each(|b| *b = 0),
        "untouched" => {}
        "sparse" => {
            for (i, page) in buf.chunks_mut(4096).enumerate() {
                match i % 3 {
                    0 => fill_text(page, &mut rng),
                    1 => page.iter_mut().for_each(|b| *b = 0),
                    _ => {}
                }
            }
        }
        "mixed" => {
            let third = n / 3 / 4096 * 4096;
            fill_random(&mut buf[..third], &mut rng);
            fill_text(&mut buf[third..2 * third], &mut rng);
            buf[2 * third..].iter_mut().for_each(|b| *b = 0);
        }
        p => return Err(format!("unknown pattern {p}")),
    }
    Ok(())
}

/// Fresh anonymous memory (not from malloc: `untouched` must stay untouched).
fn map(n: usize) -> Result<&'static mut [u8], String> {
    // SAFETY: a private anonymous mapping, never unmapped (lives as long as
    // the program).
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            n,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(format!("cannot map {n} bytes"));
    }
    // SAFETY: the mapping is n bytes, readable and writable, and only ever
    // used through this slice.
    Ok(unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), n) })
}

fn digest(buf: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(buf)
}

/// A figure of /proc/self/status, in KiB.
fn status_kib(key: &str) -> u64 {
    proc_kib("/proc/self/status", key)
}

/// A total of /proc/self/smaps_rollup, in KiB.
fn smaps_kib(key: &str) -> u64 {
    proc_kib("/proc/self/smaps_rollup", key)
}

/// The number after `key` in a /proc file of `key value kB` lines.
fn proc_kib(file: &str, key: &str) -> u64 {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--write-pattern") {
        let (file, mib, pattern) = match &args[2..] {
            [f, m, p] => (f, m.parse::<usize>()?, p),
            _ => return Err("usage: bigmem --write-pattern FILE MIB PATTERN".into()),
        };
        let buf = map(mib << 20)?;
        fill(buf, pattern)?;
        std::fs::write(file, &buf[..])?;
        return Ok(());
    }
    if args.get(1).map(String::as_str) == Some("--memcpy") {
        // Memory bandwidth: best of 5 copies of MIB between touched buffers.
        let n = args
            .get(2)
            .and_then(|s| s.parse::<usize>().ok())
            .unwrap_or(1024)
            << 20;
        let (a, b) = (map(n)?, map(n)?);
        fill(a, "random")?;
        b.iter_mut().for_each(|x| *x = 1);
        let best = (0..5)
            .map(|_| {
                let t = std::time::Instant::now();
                b.copy_from_slice(a);
                std::hint::black_box(&b[n / 2]);
                t.elapsed().as_secs_f64()
            })
            .fold(f64::MAX, f64::min);
        println!("{{\"memcpy_gbps\":{:.2}}}", n as f64 / best / 1e9);
        return Ok(());
    }
    let dir = args.get(1).cloned().unwrap_or_else(|| "ckpt".into());
    let mib: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1024);
    let level = match args.get(3) {
        Some(s) => s.parse::<selfckpt::Level>()?,
        None => selfckpt::Level::Zstd(1),
    };
    let pattern = args.get(4).cloned().unwrap_or_else(|| "mixed".into());
    let ckpt = selfckpt::Checkpointer::builder()
        .dir(&dir)
        .keep(1)
        .level(level)
        .install()?;
    let n = mib << 20;
    let buf = map(n)?;
    fill(buf, &pattern)?;
    // Reading `untouched` memory would map the zero page into it: its
    // digest is computed from a copy made the same way.
    let sum = if pattern == "untouched" || pattern == "sparse" {
        let copy = map(n)?;
        fill(copy, &pattern)?;
        let d = digest(copy);
        // SAFETY: unmapping the copy, which nothing refers to any more.
        unsafe { libc::munmap(copy.as_mut_ptr().cast(), n) };
        d
    } else {
        digest(buf)
    };
    let rss_before = status_kib("VmRSS:");
    let t = std::time::Instant::now();
    let outcome = selfckpt::checkpoint()?;
    let wall = t.elapsed();
    match outcome {
        selfckpt::Outcome::Continued => {
            let s = ckpt.last_stats().ok_or("no stats")?;
            let d = &s.dump;
            let size = std::fs::metadata(&s.path)?.len();
            let ms = |ns: u64| ns as f64 / 1e6;
            println!(
                concat!(
                    "{{\"mib\":{},\"level\":\"{}\",\"pattern\":\"{}\",\"image_bytes\":{},",
                    "\"bytes_present\":{},\"bytes_raw\":{},\"bytes_stored\":{},\"chunks\":{},\"chunks_raw\":{},",
                    "\"pagemap_scan\":{},",
                    "\"pause_ms\":{:.1},\"checkpoint_ms\":{:.1},\"prepare_ms\":{:.1},\"suspend_ms\":{:.2},",
                    "\"maps_ms\":{:.2},\"kstate_ms\":{:.2},\"scan_ms\":{:.2},\"pages_ms\":{:.1},",
                    "\"write_call_ms\":{:.1},\"wait_ms\":{:.1},\"resume_ms\":{:.2},\"fsync_ms\":{:.1},",
                    "\"dump_gbps\":{:.2},\"rss_before_kib\":{},\"hwm_kib\":{},\"image\":\"{}\"}}"
                ),
                mib,
                level,
                pattern,
                size,
                d.bytes_present,
                d.bytes_raw,
                d.bytes_stored,
                d.chunks,
                d.chunks_raw,
                d.used_pagemap_scan,
                ms(s.pause_ns),
                wall.as_secs_f64() * 1e3,
                ms(s.prepare_ns),
                ms(s.suspend_ns),
                ms(d.maps_ns),
                ms(d.kstate_ns),
                ms(d.scan_ns),
                ms(d.pages_ns),
                ms(d.write_call_ns),
                ms(d.wait_ns),
                ms(s.resume_ns),
                ms(s.fsync_ns),
                n as f64 / (s.pause_ns as f64),
                rss_before,
                status_kib("VmHWM:"),
                s.path.display()
            );
        }
        selfckpt::Outcome::Restarted => {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
            println!("restarted_at_ns {}", now.as_nanos());
            // Before the check below faults anything in.
            println!(
                "restart_memory rss_kib {} huge_kib {}",
                status_kib("VmRSS:"),
                smaps_kib("AnonHugePages:")
            );
            if digest(buf) != sum {
                eprintln!("memory differs after restart");
                std::process::exit(3);
            }
            println!("restarted ok");
            if std::env::var_os("BIGMEM_AGAIN").is_some() {
                // A checkpoint of the restarted process.
                match selfckpt::checkpoint() {
                    Ok(o) => println!("second checkpoint: {o:?}"),
                    Err(e) => println!("second checkpoint failed: {e}"),
                }
            }
        }
    }
    std::io::stdout().flush()?;
    Ok(())
}
