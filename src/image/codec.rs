//! Little-endian field encoding for image records.
//!
//! `Encoder` writes into a caller-provided, fixed-size byte buffer and never
//! allocates: the checkpoint side uses it while other threads are suspended.
//! `Decoder` reads from a byte slice and bounds-checks every read, so a
//! damaged or hostile image can only produce a [`CodecError`], never a panic
//! or an out-of-bounds access.
//!
//! Encoding rules (see docs/IMAGE_FORMAT.md, "Field encoding"):
//! integers are little-endian and fixed width; a byte string is a `u32`
//! length followed by the bytes; a list is a `u32` count followed by the items.

use thiserror::Error;

/// Errors from encoding into a fixed buffer or decoding a byte slice.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CodecError {
    #[error("record buffer full: needed {needed} more bytes, {left} left")]
    Full { needed: usize, left: usize },
    #[error("record ends early: wanted {wanted} bytes at offset {at}, {left} left")]
    Truncated {
        at: usize,
        wanted: usize,
        left: usize,
    },
    #[error("count {count} at offset {at} is larger than the {left} bytes left")]
    BadCount { at: usize, count: u64, left: usize },
    #[error("{left} unexpected trailing bytes after the last field")]
    Trailing { left: usize },
    #[error("invalid value {value} for field {field}")]
    BadValue { field: &'static str, value: u64 },
}

/// Writes fields into a fixed buffer. Never allocates.
pub struct Encoder<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Encoder<'a> {
    pub fn new(buf: &'a mut [u8]) -> Self {
        Encoder { buf, pos: 0 }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.pos == 0
    }

    /// Room left in the buffer.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Forgets what was written from `at` on (`at` at most [`Self::len`]).
    pub fn truncate(&mut self, at: usize) {
        self.pos = self.pos.min(at);
    }

    /// The bytes written so far.
    pub fn written(&self) -> &[u8] {
        &self.buf[..self.pos]
    }

    pub fn bytes_raw(&mut self, b: &[u8]) -> Result<(), CodecError> {
        let left = self.buf.len() - self.pos;
        if b.len() > left {
            return Err(CodecError::Full {
                needed: b.len(),
                left,
            });
        }
        self.buf[self.pos..self.pos + b.len()].copy_from_slice(b);
        self.pos += b.len();
        Ok(())
    }

    pub fn u8(&mut self, v: u8) -> Result<(), CodecError> {
        self.bytes_raw(&[v])
    }
    pub fn u16(&mut self, v: u16) -> Result<(), CodecError> {
        self.bytes_raw(&v.to_le_bytes())
    }
    pub fn u32(&mut self, v: u32) -> Result<(), CodecError> {
        self.bytes_raw(&v.to_le_bytes())
    }
    pub fn u64(&mut self, v: u64) -> Result<(), CodecError> {
        self.bytes_raw(&v.to_le_bytes())
    }
    pub fn i32(&mut self, v: i32) -> Result<(), CodecError> {
        self.bytes_raw(&v.to_le_bytes())
    }
    /// Reserves a u32 to be filled in later with `patch_u32` (list counts
    /// that are known only after the items are written).
    pub fn reserve_u32(&mut self) -> Result<usize, CodecError> {
        let at = self.pos;
        self.u32(0)?;
        Ok(at)
    }

    pub fn patch_u32(&mut self, at: usize, v: u32) {
        self.buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }

    /// A length-prefixed byte string of at most `max` bytes that `fill`
    /// writes straight into the buffer, returning how many it wrote.
    pub fn bytes_with<E>(
        &mut self,
        max: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<usize, E>,
    ) -> Result<Result<(), E>, CodecError> {
        let at = self.reserve_u32()?;
        let left = self.buf.len() - self.pos;
        if max > left || max > u32::MAX as usize {
            return Err(CodecError::Full { needed: max, left });
        }
        match fill(&mut self.buf[self.pos..self.pos + max]) {
            Ok(n) => {
                let n = n.min(max);
                self.patch_u32(at, n as u32);
                self.pos += n;
                Ok(Ok(()))
            }
            Err(e) => {
                self.pos = at;
                Ok(Err(e))
            }
        }
    }

    /// A length-prefixed byte string.
    pub fn bytes(&mut self, b: &[u8]) -> Result<(), CodecError> {
        let len = u32::try_from(b.len()).map_err(|_| CodecError::BadValue {
            field: "byte string length",
            value: b.len() as u64,
        })?;
        self.u32(len)?;
        self.bytes_raw(b)
    }
}

/// Reads fields from a byte slice with bounds checks on every access.
#[derive(Clone)]
pub struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Decoder { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if n > self.remaining() {
            return Err(CodecError::Truncated {
                at: self.pos,
                wanted: n,
                left: self.remaining(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }
    pub fn u16(&mut self) -> Result<u16, CodecError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    pub fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> Result<u64, CodecError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub fn i32(&mut self) -> Result<i32, CodecError> {
        Ok(i32::from_le_bytes(self.array()?))
    }
    /// A length-prefixed byte string.
    pub fn bytes(&mut self) -> Result<&'a [u8], CodecError> {
        let at = self.pos;
        let n = self.u32()? as usize;
        if n > self.remaining() {
            return Err(CodecError::BadCount {
                at,
                count: n as u64,
                left: self.remaining(),
            });
        }
        self.take(n)
    }
    /// A list count, checked against the bytes left given the smallest
    /// possible encoded size of one item, so a bad count can never cause a
    /// huge allocation.
    pub fn count(&mut self, min_item_size: usize) -> Result<usize, CodecError> {
        let at = self.pos;
        let n = self.u32()? as u64;
        if n.saturating_mul(min_item_size.max(1) as u64) > self.remaining() as u64 {
            return Err(CodecError::BadCount {
                at,
                count: n,
                left: self.remaining(),
            });
        }
        Ok(n as usize)
    }
    /// Fails if bytes are left over.
    pub fn finish(&self) -> Result<(), CodecError> {
        match self.remaining() {
            0 => Ok(()),
            left => Err(CodecError::Trailing { left }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_all_field_types() {
        let mut buf = [0u8; 64];
        let mut e = Encoder::new(&mut buf);
        e.u8(7).unwrap();
        e.u16(0xBEEF).unwrap();
        e.u32(0xDEAD_BEEF).unwrap();
        e.u64(u64::MAX - 1).unwrap();
        e.i32(-5).unwrap();
        e.bytes(b"abc").unwrap();
        let n = e.len();
        let mut d = Decoder::new(&buf[..n]);
        assert_eq!(d.u8().unwrap(), 7);
        assert_eq!(d.u16().unwrap(), 0xBEEF);
        assert_eq!(d.u32().unwrap(), 0xDEAD_BEEF);
        assert_eq!(d.u64().unwrap(), u64::MAX - 1);
        assert_eq!(d.i32().unwrap(), -5);
        assert_eq!(d.bytes().unwrap(), b"abc");
        d.finish().unwrap();
    }

    #[test]
    fn encoder_reports_full_buffer() {
        let mut buf = [0u8; 3];
        let mut e = Encoder::new(&mut buf);
        assert_eq!(e.u32(1), Err(CodecError::Full { needed: 4, left: 3 }));
    }

    #[test]
    fn decoder_rejects_truncation_and_bad_lengths() {
        assert!(matches!(
            Decoder::new(&[1, 2]).u32(),
            Err(CodecError::Truncated { .. })
        ));
        // length prefix claims 1000 bytes, 2 present
        let mut d = Decoder::new(&[0xE8, 0x03, 0, 0, 1, 2]);
        assert!(matches!(d.bytes(), Err(CodecError::BadCount { .. })));
        // a count of 2^32-1 items of 8 bytes cannot fit in 4 bytes
        let mut d = Decoder::new(&[0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0]);
        assert!(matches!(d.count(8), Err(CodecError::BadCount { .. })));
        let d = Decoder::new(&[0]);
        assert_eq!(d.finish(), Err(CodecError::Trailing { left: 1 }));
    }
}
