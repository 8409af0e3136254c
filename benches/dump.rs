//! `cargo bench --bench dump`: the real checkpoint and restart paths on
//! in-process memory of 256 MiB and 1 GiB in five patterns, in GB/s of
//! mapped memory.
//!
//! * `dump/PATTERN/MIB`: one whole checkpoint of this process (suspend,
//!   kernel state, page scan, compress, write, resume) through
//!   `selfckpt::checkpoint()`; the time measured is the pause, how long the
//!   program's threads were stopped (fsync comes after and is left out).
//! * `stage/PATTERN/MIB`: what a restart does before the hand-over: open and
//!   validate the image, map staging areas, decompress every chunk into
//!   them in parallel (the staging is then unmapped).
//!
//! Only one pattern buffer exists at a time, so each checkpoint holds just
//! that buffer plus the bench's own few MiB. `SELFCKPT_LEVEL` picks the
//! level (default zstd 1); `BENCH_SIZES=256` shortens the run.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;

const PATTERNS: [&str; 5] = ["random", "text", "zerotouched", "untouched", "mixed"];

struct Buffer(*mut u8, usize);

impl Buffer {
    fn new(n: usize, pattern: &str) -> Buffer {
        // SAFETY: a private anonymous mapping owned by this Buffer.
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
        assert_ne!(p, libc::MAP_FAILED, "cannot map {n} bytes");
        // SAFETY: the mapping is n bytes, readable and writable, ours alone.
        let buf = unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), n) };
        let mut x: u64 = 0x1234_5678_9abc_def1;
        let mut rng = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let random = |b: &mut [u8], rng: &mut dyn FnMut() -> u64| {
            b.chunks_mut(8)
                .for_each(|c| c.copy_from_slice(&rng().to_le_bytes()[..c.len()]))
        };
        let text = |b: &mut [u8], rng: &mut dyn FnMut() -> u64| {
            const W: [&[u8]; 12] = [
                b"checkpoint ",
                b"restart ",
                b"memory ",
                b"the ",
                b"of ",
                b"process ",
                b"page ",
                b"image ",
                b"and ",
                b"thread ",
                b"signal ",
                b"kernel ",
            ];
            let mut at = 0;
            while at < b.len() {
                let w = W[(rng() % W.len() as u64) as usize];
                let k = w.len().min(b.len() - at);
                b[at..at + k].copy_from_slice(&w[..k]);
                at += k;
            }
        };
        match pattern {
            "random" => random(buf, &mut rng),
            "text" => text(buf, &mut rng),
            "zerotouched" => buf.iter_mut().for_each(|b| *b = 0),
            "untouched" => {}
            _ => {
                let third = n / 3 / 4096 * 4096;
                random(&mut buf[..third], &mut rng);
                text(&mut buf[third..2 * third], &mut rng);
                buf[2 * third..].iter_mut().for_each(|b| *b = 0);
            }
        }
        Buffer(p.cast(), n)
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping.
        unsafe { libc::munmap(self.0.cast(), self.1) };
    }
}

fn sizes() -> Vec<usize> {
    std::env::var("BENCH_SIZES")
        .unwrap_or_else(|_| "256 1024".into())
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect()
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::Builder::new()
        .prefix("selfckpt-bench")
        .tempdir_in("/var/tmp")
        .expect("temporary directory");
    let ckpt = selfckpt::Checkpointer::builder()
        .dir(dir.path())
        .keep(1)
        .install()
        .expect("install selfckpt");
    for mib in sizes() {
        for pattern in PATTERNS {
            let n = mib << 20;
            let buf = Buffer::new(n, pattern);
            let mut g = c.benchmark_group(format!("dump/{pattern}"));
            g.throughput(Throughput::Bytes(n as u64));
            g.bench_function(format!("{mib}"), |b| {
                b.iter_custom(|iters| {
                    let mut paused = Duration::ZERO;
                    for _ in 0..iters {
                        selfckpt::checkpoint().expect("checkpoint");
                        let s = ckpt.last_stats().expect("stats");
                        paused += Duration::from_nanos(s.pause_ns);
                    }
                    paused
                })
            });
            g.finish();
            // A fresh image of this buffer for the restart side.
            selfckpt::checkpoint().expect("checkpoint");
            let image = ckpt.last_stats().expect("stats").path;
            let mut g = c.benchmark_group(format!("stage/{pattern}"));
            g.throughput(Throughput::Bytes(n as u64));
            g.bench_function(format!("{mib}"), |b| {
                b.iter(|| {
                    let img = selfckpt::image::read::ImageFile::open(&image).expect("open");
                    let view = img.view().expect("view");
                    let mut plan =
                        selfckpt::restore::layout::Plan::new(&view, &image).expect("plan");
                    drop(view);
                    plan.stage_all(img).expect("stage");
                    plan.unstage();
                })
            });
            g.finish();
            drop(buf);
        }
    }
}

criterion_group! {
    name = dump;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(dump);
