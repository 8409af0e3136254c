//! The restorer blob as linked into this binary: the code between the
//! `__restorer_start`/`__restorer_end` symbols that linker/restorer.ld
//! defines around the `.restorer` section of arch/<arch>/restorer.S.

#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(include_str!("../../../arch/x86_64/restorer.S"));
#[cfg(target_arch = "aarch64")]
core::arch::global_asm!(include_str!("../../../arch/aarch64/restorer.S"));

extern "C" {
    static __restorer_start: u8;
    static __restorer_end: u8;
    fn selfckpt_restorer_main();
}

/// The blob's bytes and entry offset.
pub fn blob() -> selfckpt::restore::handover::Blob<'static> {
    // SAFETY: the linker script defines both symbols around the .restorer
    // section, which is mapped read+exec for the life of the process.
    unsafe {
        let start = &__restorer_start as *const u8;
        let end = &__restorer_end as *const u8;
        let len = end as usize - start as usize;
        selfckpt::restore::handover::Blob {
            code: core::slice::from_raw_parts(start, len),
            entry: selfckpt_restorer_main as *const () as usize - start as usize,
        }
    }
}
