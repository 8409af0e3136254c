//! Fuzz target: any byte string given to the image verifier (the code
//! behind `selfckpt verify`, `inspect` and the checks before a restart)
//! must yield Ok or an error: never a panic, an abort, a huge allocation
//! or a hang. It never restarts anything.
//!
//! Checksums would stop almost every mutation at the first damaged
//! record, so inputs whose first byte is odd are first "re-sealed": every
//! checksum and the END chain are recomputed, which lets the fuzzer reach
//! the semantic checks (bounds, alignment, counts, decompression).
#![no_main]

use libfuzzer_sys::fuzz_target;
use selfckpt::image::mac::MacKey;
use selfckpt::image::verify::scan_bytes;
use xxhash_rust::xxh3::{xxh3_64, Xxh3};

const HEADER: usize = 64;
const FRAME: usize = 24;

/// Recomputes the header checksum, each record checksum and END's chain,
/// as far as the framing can be walked.
fn reseal(img: &mut [u8]) {
    if img.len() < HEADER {
        return;
    }
    let sum = xxh3_64(&img[..56]);
    img[56..64].copy_from_slice(&sum.to_le_bytes());
    let mut chain = Xxh3::new();
    let mut at = HEADER;
    while at + FRAME <= img.len() {
        let kind = u32::from_le_bytes([img[at], img[at + 1], img[at + 2], img[at + 3]]);
        let mut l = [0u8; 8];
        l.copy_from_slice(&img[at + 8..at + 16]);
        let len = u64::from_le_bytes(l);
        let Some(end) = usize::try_from(len)
            .ok()
            .and_then(|n| (at + FRAME).checked_add(n))
            .filter(|&e| e <= img.len())
        else {
            return;
        };
        if kind == 6 && len >= 24 {
            let d = chain.digest().to_le_bytes();
            img[at + FRAME + 16..at + FRAME + 24].copy_from_slice(&d);
        }
        let mut h = Xxh3::new();
        h.update(&img[at..at + 16]);
        h.update(&img[at + FRAME..end]);
        let s = h.digest().to_le_bytes();
        img[at + 16..at + 24].copy_from_slice(&s);
        if kind != 6 && kind != 7 {
            chain.update(&s);
        }
        at = end;
    }
}

fuzz_target!(|data: &[u8]| {
    if data.first().is_some_and(|b| b & 1 == 1) {
        let mut v = data[1..].to_vec();
        reseal(&mut v);
        let _ = scan_bytes(&v, None);
        return;
    }
    let _ = scan_bytes(data, None);
    // The keyed path (MAC record after END) as well.
    if data.len() % 2 == 0 {
        if let Some(key) = MacKey::new(b"fuzz-key") {
            let _ = scan_bytes(data, Some(&key));
        }
    }
});
