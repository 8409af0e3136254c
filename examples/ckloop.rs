//! A deterministic worker for the failure and soak tests: it evolves a
//! state (a few MiB of pseudo-random pages plus a running checksum) for
//! STEPS steps and prints `done STEPS checksum X` at the end. The final
//! line depends only on STEPS and MIB, so a run restarted from any image
//! must print the same line as an uninterrupted run.
//!
//! Unlike `smoke`, a failed checkpoint is not fatal: it prints
//! `checkpoint K: error: ...` on stderr and goes on (what a real program
//! should do). Checkpoints are taken by API at the steps given with
//! `--checkpoint-at`, every `--every` steps, or by signal (SIGUSR1).
//!
//! With `--fast-after-restart 1`, a restarted run no longer sleeps between
//! steps (the soak test restarts many images and wants each to finish fast).
//!
//! usage: ckloop DIR STEPS [--mib N] [--sleep-ms MS] [--every N]
//!        [--checkpoint-at K]... [--keep N] [--fast-after-restart 1]
use std::io::Write;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        return Err("usage: ckloop DIR STEPS [--mib N] [--sleep-ms MS] [--every N] [--checkpoint-at K]... [--keep N]".into());
    }
    let (dir, steps): (&str, u64) = (&args[1], args[2].parse()?);
    let (mut mib, mut sleep_ms, mut every, mut keep) = (4usize, 10u64, 0u64, 10usize);
    let mut fast_after_restart = false;
    let mut at = Vec::new();
    let mut i = 3;
    while i + 1 < args.len() {
        let v = &args[i + 1];
        match args[i].as_str() {
            "--mib" => mib = v.parse()?,
            "--sleep-ms" => sleep_ms = v.parse()?,
            "--every" => every = v.parse()?,
            "--keep" => keep = v.parse()?,
            "--fast-after-restart" => fast_after_restart = v == "1",
            "--checkpoint-at" => at.push(v.parse::<u64>()?),
            other => return Err(format!("unknown option {other}").into()),
        }
        i += 2;
    }
    let _c = selfckpt::Checkpointer::builder()
        .dir(dir)
        .keep(keep)
        .install()?;
    let mut pages = vec![0u8; mib << 20];
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for w in pages.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        w.copy_from_slice(&x.to_le_bytes()[..w.len()]);
    }
    let mut sum: u64 = 0;
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
        println!("step {step} sum {sum:016x}");
        std::io::stdout().flush()?;
        if at.contains(&step) || (every > 0 && step % every == every - 1) {
            match selfckpt::checkpoint() {
                Ok(o) => eprintln!("checkpoint {step}: {o:?}"),
                Err(e) => eprintln!("checkpoint {step}: error: {e}"),
            }
        }
        if !(fast_after_restart && selfckpt::restart_count() > 0) {
            std::thread::sleep(std::time::Duration::from_millis(sleep_ms));
        }
    }
    let total = pages
        .chunks(4096)
        .fold(sum, |a, p| a.wrapping_mul(31).wrapping_add(p[100] as u64));
    println!("done {steps} checksum {total:016x}");
    Ok(())
}
