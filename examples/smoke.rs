//! Smallest end-to-end check: checkpoints itself at step 3, then keeps
//! counting. Restarting the image continues from step 3.
fn main() -> Result<(), selfckpt::Error> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "ckpt".into());
    let _c = selfckpt::Checkpointer::builder().dir(dir).install()?;
    let mut v: Vec<u64> = (0..1000).collect();
    for step in 0..6u64 {
        v.iter_mut()
            .for_each(|x| *x = x.wrapping_mul(31).wrapping_add(step));
        let sum: u64 = v.iter().fold(0, |a, b| a.wrapping_add(*b));
        println!("step {step} sum {sum}");
        if step == 3 {
            let o = selfckpt::checkpoint()?;
            println!("checkpoint: {o:?}");
        }
    }
    Ok(())
}
