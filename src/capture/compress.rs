//! Chunk compression with zstd contexts that live in scratch memory
//! (`ZSTD_initStaticCCtx`): zstd never calls malloc through them, so they
//! can run while the program's threads are suspended. The decompression
//! helpers are for the restarter (ordinary Rust, may allocate).

use zstd_sys as zs;

/// How chunks are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Pages stored as they are.
    Store,
    /// zstd at this level (negative levels are zstd's fast modes).
    Zstd(i32),
}

/// A compression level that does not exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?}: expected a compression level: store, fast1..fast7 or 1..19")]
pub struct LevelError(pub String);

impl std::str::FromStr for Level {
    type Err = LevelError;
    /// Parses "store", "fast1".."fast7" (zstd -1..-7) or a number 1..19.
    fn from_str(s: &str) -> Result<Level, LevelError> {
        Level::parse(s).ok_or_else(|| LevelError(s.to_string()))
    }
}

impl Level {
    /// The C ABI's number: 0 store, 1..19 zstd, -1..-7 zstd's fast modes.
    pub fn from_c(n: i32) -> Result<Level, LevelError> {
        match n {
            0 => Ok(Level::Store),
            1..=19 | -7..=-1 => Ok(Level::Zstd(n)),
            _ => Err(LevelError(n.to_string())),
        }
    }

    /// Parses "store", "fast1".."fast7" (zstd -1..-7) or a number 1..19.
    fn parse(s: &str) -> Option<Level> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("store") || s == "0" {
            return Some(Level::Store);
        }
        if let Some(n) = s.strip_prefix("fast") {
            let n: i32 = n.parse().ok()?;
            return (1..=7).contains(&n).then_some(Level::Zstd(-n));
        }
        let n: i32 = s.parse().ok()?;
        ((-7..=19).contains(&n) && n != 0).then_some(Level::Zstd(n))
    }

    /// Scratch bytes one compression context needs at this level.
    pub fn workspace_size(self) -> usize {
        match self {
            Level::Store => 0,
            // SAFETY: a pure size computation.
            Level::Zstd(l) => unsafe { zs::ZSTD_estimateCCtxSize(l) },
        }
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Level::Store => write!(f, "store"),
            Level::Zstd(l) if *l < 0 => write!(f, "fast{}", -l),
            Level::Zstd(l) => write!(f, "{l}"),
        }
    }
}

/// Worst-case compressed size of `n` bytes.
pub fn bound(n: usize) -> usize {
    // SAFETY: a pure size computation.
    unsafe { zs::ZSTD_compressBound(n) }
}

/// A zstd compression context placed in caller-provided memory.
pub struct StaticCompressor {
    cctx: *mut zs::ZSTD_CCtx,
}

// SAFETY: a context is used by one thread at a time (each worker owns one).
unsafe impl Send for StaticCompressor {}

impl StaticCompressor {
    /// Initialises a context inside `workspace` (at least
    /// `level.workspace_size()` bytes, 8-byte aligned). Never allocates.
    pub fn new(workspace: &mut [u8], level: i32) -> Option<StaticCompressor> {
        // SAFETY: workspace is valid and exclusively ours for the context's
        // lifetime (it comes from the checkpoint's scratch arena).
        let cctx =
            unsafe { zs::ZSTD_initStaticCCtx(workspace.as_mut_ptr().cast(), workspace.len()) };
        if cctx.is_null() {
            return None;
        }
        // SAFETY: cctx is a valid context.
        let r = unsafe {
            zs::ZSTD_CCtx_setParameter(cctx, zs::ZSTD_cParameter::ZSTD_c_compressionLevel, level)
        };
        // SAFETY: pure check of a return code.
        if unsafe { zs::ZSTD_isError(r) } != 0 {
            return None;
        }
        Some(StaticCompressor { cctx })
    }

    /// Compresses `src` into `dst`; None if it does not fit or zstd fails.
    pub fn compress(&mut self, src: &[u8], dst: &mut [u8]) -> Option<usize> {
        // SAFETY: pointers and lengths describe valid buffers; the context
        // is ours.
        let r = unsafe {
            zs::ZSTD_compress2(
                self.cctx,
                dst.as_mut_ptr().cast(),
                dst.len(),
                src.as_ptr().cast(),
                src.len(),
            )
        };
        // SAFETY: pure check of a return code.
        (unsafe { zs::ZSTD_isError(r) } == 0).then_some(r)
    }
}

/// Decompresses a whole zstd frame into `dst`, which must be exactly the
/// frame's content size. Used by the restarter (ordinary Rust).
pub fn decompress_exact(src: &[u8], dst: &mut [u8]) -> Result<(), String> {
    thread_local! {
        // One decompression context per thread, reused: making one per
        // chunk showed up in restart profiles.
        static DCTX: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    DCTX.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new().map_err(|e| e.to_string())?);
        }
        let Some(d) = slot.as_mut() else {
            return Err("no decompression context".into());
        };
        match d.decompress_to_buffer(src, dst) {
            Ok(n) if n == dst.len() => Ok(()),
            Ok(n) => Err(format!("decompressed {n} bytes, expected {}", dst.len())),
            Err(e) => Err(e.to_string()),
        }
    })
}

/// Decompresses one zstd frame straight into several destinations, filled
/// in order (the runs of a chunk, in place in the staging mappings): no
/// intermediate buffer. The frame must fill them exactly.
pub fn decompress_scatter(src: &[u8], dsts: &mut [&mut [u8]]) -> Result<(), String> {
    use zstd::stream::raw::{Decoder, InBuffer, Operation, OutBuffer};
    let mut dec = Decoder::new().map_err(|e| e.to_string())?;
    let mut input = InBuffer::around(src);
    let mut hint = 1usize;
    let want: usize = dsts.iter().map(|d| d.len()).sum();
    let mut done = 0usize;
    for dst in dsts.iter_mut() {
        let len = dst.len();
        let mut out = OutBuffer::around(&mut **dst);
        while out.pos() < len {
            let before = (input.pos(), out.pos());
            hint = dec.run(&mut input, &mut out).map_err(|e| e.to_string())?;
            if (input.pos(), out.pos()) == before {
                return Err(format!(
                    "decompressed {} bytes, expected {want}",
                    done + out.pos()
                ));
            }
        }
        done += len;
    }
    // Nothing may be left: the frame must end exactly here.
    if hint != 0 {
        let mut extra = [0u8; 1];
        let mut out = OutBuffer::around(&mut extra[..]);
        hint = dec.run(&mut input, &mut out).map_err(|e| e.to_string())?;
        if out.pos() != 0 {
            return Err(format!(
                "the frame holds more than the expected {want} bytes"
            ));
        }
    }
    if hint != 0 || input.pos() != src.len() {
        return Err("the frame does not end where the chunk does".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_print_and_come_from_c() {
        for (text, level) in [
            ("store", Level::Store),
            ("0", Level::Store),
            ("fast3", Level::Zstd(-3)),
            ("1", Level::Zstd(1)),
            ("19", Level::Zstd(19)),
        ] {
            assert_eq!(text.parse::<Level>(), Ok(level), "{text}");
            assert_eq!(level.to_string().parse::<Level>(), Ok(level));
        }
        for bad in ["", "20", "fast8", "fast0", "-8", "zstd", "1.5"] {
            let e = bad.parse::<Level>().expect_err(bad);
            assert!(
                e.to_string().contains("store, fast1..fast7 or 1..19"),
                "{e}"
            );
        }
        assert_eq!(Level::from_c(0), Ok(Level::Store));
        assert_eq!(Level::from_c(-7), Ok(Level::Zstd(-7)));
        assert_eq!(Level::from_c(19), Ok(Level::Zstd(19)));
        assert!(Level::from_c(20).is_err() && Level::from_c(-8).is_err());
    }

    #[test]
    fn scatter_decompression_fills_each_destination_in_order() {
        let src: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 253) as u8).collect();
        let frame = zstd::bulk::compress(&src, 1).unwrap();
        for cuts in [
            vec![300_000],
            vec![1, 299_999],
            vec![4096, 100_000, 195_904],
        ] {
            let mut bufs: Vec<Vec<u8>> = cuts.iter().map(|&n| vec![0u8; n]).collect();
            let mut dsts: Vec<&mut [u8]> = bufs.iter_mut().map(|b| &mut b[..]).collect();
            decompress_scatter(&frame, &mut dsts).unwrap();
            assert_eq!(bufs.concat(), src, "cuts {cuts:?}");
        }
        // Too little room, too much room, or a damaged frame: refused.
        let mut small = vec![0u8; 299_999];
        assert!(decompress_scatter(&frame, &mut [&mut small[..]]).is_err());
        let mut big = vec![0u8; 300_001];
        assert!(decompress_scatter(&frame, &mut [&mut big[..]]).is_err());
        let mut exact = vec![0u8; 300_000];
        assert!(decompress_scatter(&frame[..frame.len() - 3], &mut [&mut exact[..]]).is_err());
    }

    #[test]
    fn level_parsing() {
        assert_eq!(Level::parse("store"), Some(Level::Store));
        assert_eq!(Level::parse("fast3"), Some(Level::Zstd(-3)));
        assert_eq!(Level::parse("1"), Some(Level::Zstd(1)));
        assert_eq!(Level::parse("25"), None);
        assert_eq!(Level::parse("fast9"), None);
        assert_eq!(Level::parse("x"), None);
        assert_eq!(Level::Zstd(-3).to_string(), "fast3");
    }

    #[test]
    fn static_context_round_trips() {
        for level in [-5, 1, 3] {
            let mut ws = vec![0u64; Level::Zstd(level).workspace_size() / 8 + 1];
            // SAFETY: viewing the u64 buffer as bytes.
            let ws_bytes = unsafe {
                std::slice::from_raw_parts_mut(ws.as_mut_ptr().cast::<u8>(), ws.len() * 8)
            };
            let mut c = StaticCompressor::new(ws_bytes, level).unwrap();
            let src: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
            let mut dst = vec![0u8; bound(src.len())];
            for _ in 0..3 {
                let n = c.compress(&src, &mut dst).unwrap();
                assert!(n < src.len() / 10);
                let mut back = vec![0u8; src.len()];
                decompress_exact(&dst[..n], &mut back).unwrap();
                assert_eq!(back, src);
            }
        }
    }
}
