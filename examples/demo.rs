//! The demo program of README's first command: a computation that prints
//! a running checksum every 100 ms for 60 steps, with selfckpt installed.
//! `kill -USR1 <pid>` checkpoints it at any moment.
use std::collections::HashMap;

fn main() -> Result<(), selfckpt::Error> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "ckpt".into());
    let steps: u64 = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let _ckpt = selfckpt::Checkpointer::builder().dir(dir).install()?;
    let mut data: Vec<u64> = (0..4_000_000).collect();
    let mut names: HashMap<u64, String> = HashMap::new();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for step in 0..steps {
        for v in data.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *v = v.wrapping_add(x);
        }
        names.insert(step, format!("step-{step}-{}", data[step as usize]));
        let sum = data
            .iter()
            .fold(0u64, |a, b| a.wrapping_mul(31).wrapping_add(*b));
        println!("step {step:3} checksum {sum:016x} names {}", names.len());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    if selfckpt::restart_count() > 0 {
        eprintln!(
            "(this run was restarted {} time(s) from a checkpoint)",
            selfckpt::restart_count()
        );
    }
    Ok(())
}
