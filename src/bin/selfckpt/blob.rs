//! The restorer blob as linked into this binary: the code between the
//! `__restorer_start`/`__restorer_end` symbols that linker/restorer.ld
//! defines around the `.restorer` section of arch/<arch>/restorer.S,
//! assembled after the offsets build.rs generates from
//! `selfckpt::restorer_abi` (`$OUT_DIR/restorer_abi.inc`).

#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    include_str!(concat!(env!("OUT_DIR"), "/restorer_abi.inc")),
    include_str!("../../../arch/x86_64/restorer.S")
);
#[cfg(target_arch = "aarch64")]
core::arch::global_asm!(
    include_str!(concat!(env!("OUT_DIR"), "/restorer_abi.inc")),
    include_str!("../../../arch/aarch64/restorer.S")
);

// The values build.rs computed on the build host, in the order of
// `restorer_abi::EXPORTED`: the assembly above uses them.
include!(concat!(env!("OUT_DIR"), "/restorer_abi_host.rs"));

// The offsets the assembly was given are the target's own.
const _: () = {
    use selfckpt::restorer_abi::EXPORTED;
    let mut k = 0;
    let mut i = 0;
    while i < EXPORTED.len() {
        let mut j = 0;
        while j < EXPORTED[i].len() {
            assert!(
                k < N_HOST && EXPORTED[i][j].value == HOST[k],
                "restorer_abi.inc disagrees with this target's layout"
            );
            k += 1;
            j += 1;
        }
        i += 1;
    }
    assert!(
        k == N_HOST,
        "restorer_abi.inc disagrees with this target's layout"
    );
};

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
