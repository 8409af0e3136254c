//! Scratch memory for one checkpoint: an anonymous mapping (private, or
//! shared with the dumping child of a forked checkpoint) made
//! before the program's threads are suspended, carved into fixed-size
//! slices while they are. The mapping is left out of the image and unmapped
//! after the threads are resumed.
//!
//! Carving never allocates from the heap: it is safe while other threads
//! (which may hold malloc's lock) are parked.

use core::cell::Cell;
use core::marker::PhantomData;

/// One mmap'ed arena with a bump pointer.
pub struct Scratch {
    base: *mut u8,
    len: usize,
    used: Cell<usize>,
}

// SAFETY: the arena is only carved by the thread that owns the Scratch; the
// slices it hands out are ordinary exclusive borrows.
unsafe impl Send for Scratch {}

/// Not enough scratch space was reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("scratch space exhausted: wanted {wanted} bytes, {left} left")]
pub struct ScratchFull {
    pub wanted: usize,
    pub left: usize,
}

impl Scratch {
    /// Maps `len` bytes (rounded up to whole pages). Allocates: call before
    /// suspending.
    pub fn new(len: usize) -> std::io::Result<Scratch> {
        Self::map(len, libc::MAP_PRIVATE)
    }

    /// Like [`Scratch::new`], but the pages are shared with a forked
    /// child (`MAP_SHARED`): what a dumping child writes into the arena
    /// (its chunks, its report) costs no copy-on-write and reaches the
    /// parent (`capture::forked`).
    pub fn new_shared(len: usize) -> std::io::Result<Scratch> {
        Self::map(len, libc::MAP_SHARED)
    }

    fn map(len: usize, sharing: i32) -> std::io::Result<Scratch> {
        let page = crate::capture::sys::page_size();
        let len = len.div_ceil(page) * page;
        // SAFETY: an anonymous mapping with no address hint.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                sharing | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Scratch {
            base: p.cast(),
            len,
            used: Cell::new(0),
        })
    }

    /// The address range of the arena (left out of images).
    pub fn range(&self) -> (u64, u64) {
        (self.base as u64, self.base as u64 + self.len as u64)
    }

    /// A zeroed slice of `n` values of a plain-data type.
    #[allow(
        clippy::mut_from_ref,
        reason = "a bump allocator: each call hands out a disjoint range"
    )]
    pub fn slice<T: Copy + Default>(&self, n: usize) -> Result<&mut [T], ScratchFull> {
        let room = self.room::<T>(n)?;
        room.iter_mut().for_each(|v| {
            v.write(T::default());
        });
        // SAFETY: every element was just written.
        Ok(unsafe { core::slice::from_raw_parts_mut(room.as_mut_ptr().cast::<T>(), n) })
    }

    /// Room for `n` values, not written: for a [`FixedVec`], which only
    /// reads what it was given, so untouched pages of a large table cost
    /// nothing.
    #[allow(
        clippy::mut_from_ref,
        reason = "a bump allocator: each call hands out a disjoint range"
    )]
    pub fn room<T: Copy>(&self, n: usize) -> Result<&mut [core::mem::MaybeUninit<T>], ScratchFull> {
        let align = core::mem::align_of::<T>().max(64);
        let start = self.used.get().div_ceil(align) * align;
        let bytes = n
            .checked_mul(core::mem::size_of::<T>())
            .ok_or(ScratchFull {
                wanted: usize::MAX,
                left: self.len - self.used.get(),
            })?;
        if start + bytes > self.len {
            return Err(ScratchFull {
                wanted: bytes,
                left: self.len.saturating_sub(start),
            });
        }
        self.used.set(start + bytes);
        // SAFETY: [start, start+bytes) lies inside our mapping, is suitably
        // aligned and is handed out once (bump pointer); MaybeUninit needs
        // no initialisation.
        Ok(unsafe {
            core::slice::from_raw_parts_mut(
                self.base.add(start).cast::<core::mem::MaybeUninit<T>>(),
                n,
            )
        })
    }

    /// A byte buffer of `n` bytes, not cleared (fresh pages read as zero).
    #[allow(
        clippy::mut_from_ref,
        reason = "a bump allocator: each call hands out a disjoint range"
    )]
    pub fn bytes(&self, n: usize) -> Result<&mut [u8], ScratchFull> {
        let start = self.used.get().div_ceil(64) * 64;
        if start + n > self.len {
            return Err(ScratchFull {
                wanted: n,
                left: self.len.saturating_sub(start),
            });
        }
        self.used.set(start + n);
        // SAFETY: as in `slice`; bytes have no invalid bit patterns.
        Ok(unsafe { core::slice::from_raw_parts_mut(self.base.add(start), n) })
    }

    /// Forgets the mapping without unmapping it: after a restart the
    /// arena does not exist any more (it was left out of the image) and its
    /// address may belong to something else.
    pub fn forget(self) {
        core::mem::forget(self);
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // SAFETY: we own this mapping.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// A fixed-capacity vector over scratch room: `push` fails instead of
/// growing.
pub struct FixedVec<'a, T> {
    buf: &'a mut [core::mem::MaybeUninit<T>],
    len: usize,
    _p: PhantomData<T>,
}

impl<'a, T: Copy> FixedVec<'a, T> {
    pub fn new(buf: &'a mut [core::mem::MaybeUninit<T>]) -> Self {
        FixedVec {
            buf,
            len: 0,
            _p: PhantomData,
        }
    }
    pub fn push(&mut self, v: T) -> Result<(), ScratchFull> {
        let Some(slot) = self.buf.get_mut(self.len) else {
            return Err(ScratchFull {
                wanted: core::mem::size_of::<T>(),
                left: 0,
            });
        };
        slot.write(v);
        self.len += 1;
        Ok(())
    }
    pub fn as_slice(&self) -> &[T] {
        // SAFETY: the first `len` slots were written by `push`.
        unsafe { core::slice::from_raw_parts(self.buf.as_ptr().cast::<T>(), self.len) }
    }
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        // SAFETY: the first `len` slots were written by `push`.
        unsafe { core::slice::from_raw_parts_mut(self.buf.as_mut_ptr().cast::<T>(), self.len) }
    }
    /// The pushed values, for as long as the room they live in.
    pub fn into_mut_slice(self) -> &'a mut [T] {
        // SAFETY: the first `len` slots were written by `push`.
        unsafe { core::slice::from_raw_parts_mut(self.buf.as_mut_ptr().cast::<T>(), self.len) }
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn clear(&mut self) {
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_do_not_overlap_and_fail_when_full() {
        let s = Scratch::new(8192).unwrap();
        let a = s.slice::<u64>(100).unwrap();
        let b = s.bytes(1000).unwrap();
        a[99] = 7;
        b[0] = 1;
        assert_eq!(a[99], 7);
        assert!(s.bytes(1 << 20).is_err());
    }

    #[test]
    fn fixed_vec_refuses_to_grow() {
        let s = Scratch::new(4096).unwrap();
        let mut v = FixedVec::new(s.room::<u32>(2).unwrap());
        v.push(1).unwrap();
        v.push(2).unwrap();
        assert!(v.push(3).is_err());
        assert_eq!(v.as_slice(), &[1, 2]);
    }
}
