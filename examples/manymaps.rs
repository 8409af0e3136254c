//! A workload for the restart-scaling benchmark: makes N separate
//! mappings (one page each, alternating protections so the kernel cannot
//! merge neighbours), writes a mark into each, takes one checkpoint and
//! prints the image path. After a restart it prints `restarted_at_ns T`
//! (wall clock, as soon as it runs again), checks every mark and prints
//! `restarted ok N`.
//!
//! usage: manymaps DIR [N]   (N defaults to 60000; the kernel's
//!                            vm.max_map_count, 65530 by default, bounds it)
use std::io::Write;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).cloned().unwrap_or_else(|| "ckpt".into());
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(60_000);
    let page = 4096usize;
    let ckpt = selfckpt::Checkpointer::builder()
        .dir(&dir)
        .keep(1)
        .install()?;
    // One reservation, then every other page made read-only: n mappings.
    let len = n * page;
    // SAFETY: a fresh private anonymous mapping.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error().into());
    }
    let base = base as usize;
    for i in 0..n {
        // SAFETY: inside the mapping made above, writable at this point.
        unsafe { *((base + i * page) as *mut u64) = i as u64 ^ 0x5eed };
    }
    for i in (1..n).step_by(2) {
        // SAFETY: changing protections of pages of our own mapping.
        if unsafe {
            libc::mprotect(
                (base + i * page) as *mut libc::c_void,
                page,
                libc::PROT_READ,
            )
        } != 0
        {
            return Err(std::io::Error::last_os_error().into());
        }
    }
    match selfckpt::checkpoint()? {
        selfckpt::Outcome::Continued => {
            let s = ckpt.last_stats().ok_or("no stats")?;
            println!("image {}", s.path.display());
        }
        selfckpt::Outcome::Restarted => {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
            println!("restarted_at_ns {}", now.as_nanos());
            let bad = (0..n)
                // SAFETY: reading the restored mapping.
                .filter(|&i| unsafe { *((base + i * page) as *const u64) } != i as u64 ^ 0x5eed)
                .count();
            if bad != 0 {
                eprintln!("{bad} pages differ after restart");
                std::process::exit(3);
            }
            println!("restarted ok {n}");
        }
    }
    std::io::stdout().flush()?;
    Ok(())
}
