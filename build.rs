//! Passes linker/restorer.ld (an augmenting script: INSERT AFTER .text) to
//! the `selfckpt` binary, so the restorer blob gets its own page-aligned
//! section with start/end symbols. Libraries and programs that link the
//! crate do not get it and do not need it.

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let script = format!("{dir}/linker/restorer.ld");
    println!("cargo:rustc-link-arg-bins=-Wl,-T,{script}");
    println!("cargo:rerun-if-changed=linker/restorer.ld");
    println!("cargo:rerun-if-changed=arch/x86_64/restorer.S");
    println!("cargo:rerun-if-changed=arch/aarch64/restorer.S");
}
