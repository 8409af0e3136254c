//! Dirty tracking of incremental checkpoints, by page hash: the dump of an
//! incremental image hashes every page it would store and leaves out the
//! pages whose hash is the one the previous image of the chain recorded for
//! the same address.
//!
//! The table of a checkpoint lists, sorted by address, every page of a
//! private region (anonymous, heap, stack, written pages of a private file
//! mapping) whose content is in the chain: stored by this image, or by an
//! ancestor and unchanged since. A page of the previous table that the
//! scan no longer reports (given back with `MADV_DONTNEED`, its mapping
//! replaced) is read again and stored, zero or not, so that no ancestor's
//! copy of it shows through at restart; one outside every private region
//! is dropped (a restart never takes an ancestor's page there).
//!
//! Runs while the other threads are parked: must not allocate. The new
//! table is carved from the checkpoint's scratch arena; the previous one is
//! only read.

use crate::capture::scratch::FixedVec;

/// One page of a table: its address and the hash of its content.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PageHash {
    pub addr: u64,
    pub hash: u64,
}

/// The hash of one page's content.
///
/// Four lanes of multiply-rotate over the page's 64-bit words: each step is
/// a bijection of the lane for a given word and of the word for a given
/// lane, so a change of one word always changes the hash. (Not xxh3: its
/// long-input loop trips a debug-build precondition check when it runs in
/// the suspend handler.)
pub fn hash_page(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut lanes = [1u64, 2, 3, 4];
    for quad in bytes.chunks_exact(32) {
        for (i, w) in quad.chunks_exact(8).enumerate() {
            let w = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
            lanes[i] = ((lanes[i] ^ w).wrapping_mul(K)).rotate_left(29);
        }
    }
    let mut h = bytes.len() as u64;
    for l in lanes {
        h = ((h ^ l).wrapping_mul(K)).rotate_left(31);
    }
    h
}

/// Walks the previous table in address order while the dump fills the
/// next one.
pub struct Cursor<'a> {
    prev: &'a [PageHash],
    at: usize,
    /// The next table, in room that is only touched as it fills.
    next: FixedVec<'a, PageHash>,
    /// The next table did not fit its room: it is not kept (the next
    /// checkpoint is a full one), this image is still complete.
    pub overflowed: bool,
    /// Pages left out because they were unchanged.
    pub unchanged: u64,
}

impl<'a> Cursor<'a> {
    pub fn new(prev: &'a [PageHash], next: FixedVec<'a, PageHash>) -> Self {
        Cursor {
            prev,
            at: 0,
            next,
            overflowed: false,
            unchanged: 0,
        }
    }

    /// Forgets the previous table's pages below `addr`.
    pub fn skip_below(&mut self, addr: u64) {
        while self.prev.get(self.at).is_some_and(|e| e.addr < addr) {
            self.at += 1;
        }
    }

    /// The next previous page below `addr`, taken off the table.
    pub fn take_below(&mut self, addr: u64) -> Option<u64> {
        let e = self.prev.get(self.at).filter(|e| e.addr < addr)?;
        self.at += 1;
        Some(e.addr)
    }

    /// The previous hash of the page at `addr` (pages are asked for in
    /// increasing order; those skipped over must have been taken).
    pub fn previous(&mut self, addr: u64) -> Option<u64> {
        let e = self.prev.get(self.at).filter(|e| e.addr == addr)?;
        self.at += 1;
        Some(e.hash)
    }

    /// Records that the chain holds the page at `addr` with this hash.
    pub fn keep(&mut self, addr: u64, hash: u64) {
        if self.next.push(PageHash { addr, hash }).is_err() {
            self.overflowed = true;
        }
    }

    /// The next table, or None if it overflowed.
    pub fn finish(self) -> (Option<&'a [PageHash]>, u64) {
        let Cursor {
            next,
            overflowed,
            unchanged,
            ..
        } = self;
        let table: &'a [PageHash] = next.into_mut_slice();
        ((!overflowed).then_some(table), unchanged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_of_any_one_word_changes_the_hash() {
        let mut page = vec![0u8; 4096];
        let h0 = hash_page(&page);
        for at in (0..4096).step_by(8) {
            page[at] = 1;
            assert_ne!(hash_page(&page), h0, "word at {at}");
            page[at] = 0;
        }
    }

    #[test]
    fn the_cursor_walks_the_previous_table_in_order() {
        let e = |addr, hash| PageHash { addr, hash };
        let prev = [e(0x1000, 1), e(0x2000, 2), e(0x5000, 5), e(0x9000, 9)];
        let mut room = [core::mem::MaybeUninit::<PageHash>::uninit(); 3];
        let mut c = Cursor::new(&prev, FixedVec::new(&mut room));
        c.skip_below(0x2000);
        assert_eq!(c.take_below(0x2000), None);
        assert_eq!(c.previous(0x2000), Some(2));
        c.keep(0x2000, 2);
        assert_eq!(c.take_below(0x6000), Some(0x5000));
        c.keep(0x5000, 7);
        assert_eq!(c.previous(0x6000), None);
        c.keep(0x6000, 6);
        c.keep(0x7000, 6);
        assert!(c.overflowed);
        assert_eq!(c.finish().0, None);
        let mut room = [core::mem::MaybeUninit::<PageHash>::uninit(); 3];
        let mut c = Cursor::new(&prev, FixedVec::new(&mut room));
        c.keep(0x1000, 1);
        assert_eq!(c.finish().0, Some(&[e(0x1000, 1)][..]));
    }
}
