//! An unmodified program for the Slurm tests: it never calls selfckpt
//! (`selfckpt run` preloads the library into it), evolves a few MiB of
//! pseudo-random pages for STEPS steps, sleeping MS between steps, prints
//! `step N sum X` after each step and `done STEPS checksum X` at the end.
//! Every line depends only on the arguments, so a run that was
//! checkpointed, killed and resumed any number of times must print what an
//! uninterrupted run prints.
//!
//! usage: simulate STEPS [--sleep-ms MS] [--mib N] [--seed S]
use std::io::Write;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: simulate STEPS [--sleep-ms MS] [--mib N] [--seed S]";
    let steps: u64 = args.get(1).ok_or(usage)?.parse()?;
    let (mut sleep_ms, mut mib, mut seed) = (100u64, 4usize, 0u64);
    for pair in args[2..].chunks(2) {
        let v = pair.get(1).ok_or(usage)?;
        match pair[0].as_str() {
            "--sleep-ms" => sleep_ms = v.parse()?,
            "--mib" => mib = v.parse()?,
            "--seed" => seed = v.parse()?,
            other => return Err(format!("unknown option {other}; {usage}").into()),
        }
    }
    let mut pages = vec![0u8; mib << 20];
    let mut x: u64 = 0x2545_F491_4F6C_DD1D ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for w in pages.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        w.copy_from_slice(&x.to_le_bytes()[..w.len()]);
    }
    let mut sum: u64 = seed;
    let mut out = std::io::stdout().lock();
    for step in 0..steps {
        for (k, p) in pages
            .chunks_mut(4096)
            .enumerate()
            .skip(step as usize % 5)
            .step_by(5)
        {
            p[(step as usize * 8) % 4096] ^= (k as u8).wrapping_add(step as u8);
            sum = sum.rotate_left(7) ^ u64::from(p[100]) ^ (k as u64);
        }
        writeln!(out, "step {step} sum {sum:016x}")?;
        out.flush()?;
        std::thread::sleep(std::time::Duration::from_millis(sleep_ms));
    }
    let total = pages.chunks(4096).fold(sum, |a, p| {
        a.wrapping_mul(31).wrapping_add(u64::from(p[100]))
    });
    writeln!(out, "done {steps} checksum {total:016x}")?;
    out.flush()?;
    Ok(())
}
