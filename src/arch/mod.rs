//! Architecture-specific pieces: the thread pointer, the signal frame
//! layout, the jump back through `rt_sigreturn`, and the CPU features an
//! image depends on. The restorer blob itself lives in `arch/<arch>/restorer.S`
//! and is linked into the `selfckpt` binary only (`src/bin/selfckpt/blob.rs`);
//! its argument block and the offsets it uses come from `crate::restorer_abi`.
//!
//! Code here runs inside signal handlers and in restarted threads before
//! they are released: it must not allocate or take locks.

#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
pub use self::x86_64::*;

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "aarch64")]
pub use self::aarch64::*;

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("selfckpt supports x86_64 and aarch64 only");

/// Bytes left untouched below a parked thread's signal frame before the
/// restarted thread's entry stack begins (room for the x86_64 red zone).
pub const ENTRY_STACK_GAP: u64 = 256;
