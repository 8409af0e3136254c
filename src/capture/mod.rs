//! The suspended world: everything that runs while the program's other
//! threads are parked (between `park::suspend_others` and `park::release`),
//! or in a restarted thread before it is released.
//!
//! **The one rule:** code here must not allocate, print, take a lock or
//! call into libc functions that may (parked threads may hold malloc's,
//! stdio's or the loader's locks). Buffers come from the scratch arena or
//! fixed arrays, system calls go through `sys`. Code that may allocate
//! (installing handlers, naming threads in errors, the restarter) lives
//! outside this folder.
//!
//! The rule is checked, not only written: with the `alloc-guard` feature
//! (on for every test and example build) a global allocator aborts the
//! process, naming the thread, if the checkpoint thread or a worker
//! allocates while a round is active (`alloc_guard`).
//!
//! The capture halves of `crate::kstate` (one file per kernel object,
//! holding capture, record and restore together) and the image writer
//! (`crate::image::codec`, `crate::image::format`'s writer) keep the same
//! rule and are covered by the same guard.

#[cfg(feature = "alloc-guard")]
pub mod alloc_guard;
pub mod compress;
pub mod dump;
pub mod forked;
pub mod incremental;
pub mod interrupted;
pub mod maps;
pub mod pages;
pub mod park;
pub mod prefault;
pub mod relink;
pub mod scratch;
pub mod slots;
pub mod sys;
pub mod tids;
