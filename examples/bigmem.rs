//! Measures one checkpoint of a process holding N MiB (default 1024) of
//! `mixed` memory (thirds: random, text-like words, zero-touched), and
//! prints the checkpoint's figures as one JSON line. After a restart it
//! verifies the memory and prints `restarted ok`.
//!
//! usage: bigmem DIR [MIB] [LEVEL]
use std::io::Write;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).cloned().unwrap_or_else(|| "ckpt".into());
    let mib: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1024);
    let level = args
        .get(3)
        .and_then(|s| selfckpt::Level::parse(s))
        .unwrap_or(selfckpt::Level::Zstd(1));
    let ckpt = selfckpt::Checkpointer::builder()
        .dir(&dir)
        .keep(1)
        .level(level)
        .install()?;
    let n = mib << 20;
    let mut buf = vec![0u8; n];
    let third = n / 3;
    let mut x: u64 = 0x1234_5678_9abc_def1;
    for chunk in buf[..third].chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    const WORDS: [&str; 12] = [
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
    ];
    let mut i = 0;
    let mut at = third;
    while at < 2 * third {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let w = WORDS[(x % WORDS.len() as u64) as usize].as_bytes();
        let k = w.len().min(2 * third - at);
        buf[at..at + k].copy_from_slice(&w[..k]);
        at += k;
        i += 1;
    }
    // The last third stays zero but is touched (written).
    buf[2 * third..].iter_mut().for_each(|b| *b = 0);
    let digest = buf
        .iter()
        .fold(0u64, |a, b| a.wrapping_mul(131).wrapping_add(*b as u64));
    let t = std::time::Instant::now();
    let outcome = selfckpt::checkpoint()?;
    let wall = t.elapsed();
    match outcome {
        selfckpt::Outcome::Continued => {
            let s = ckpt.last_stats().ok_or("no stats")?;
            let size = std::fs::metadata(&s.path)?.len();
            println!(
                "{{\"mib\":{mib},\"level\":\"{level}\",\"words\":{i},\"image_bytes\":{size},\"pause_ms\":{:.1},\"checkpoint_ms\":{:.1},\"dump_gbps\":{:.2},\"image\":\"{}\"}}",
                s.pause_ns as f64 / 1e6,
                wall.as_secs_f64() * 1e3,
                n as f64 / (s.pause_ns as f64),
                s.path.display()
            );
        }
        selfckpt::Outcome::Restarted => {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
            println!("restarted_at_ns {}", now.as_nanos());
            let again = buf
                .iter()
                .fold(0u64, |a, b| a.wrapping_mul(131).wrapping_add(*b as u64));
            if again != digest {
                eprintln!("memory differs after restart");
                std::process::exit(3);
            }
            println!("restarted ok");
        }
    }
    std::io::stdout().flush()?;
    Ok(())
}
