//! Fills the restorer's argument block: `restorer_abi::RestorerArgs` at
//! the start of its mapping, its tables after it, every value set by field
//! name (the layout and its offsets for the assembly live in
//! `crate::restorer_abi`, nowhere else). Also the pokes: the words of the
//! restored library's mailbox and threads' slots the restorer writes once
//! the image is in place.
//!
//! Runs in the restarter before the jump: may allocate and fail with an
//! error; must not write outside the argument mapping it is given.

use super::layout::Plan;
use super::RestoreError;
use crate::capture::park::Identity;
use crate::image::model::ThreadState;
use crate::restorer_abi::{
    mailbox, KernelSigaction, Move, Poke, PrctlMmMap, RestorerArgs, SigactionEntry, ThreadEntry,
    Unmap, ARGS_MAGIC, SLOT_PENDING_OFFSET,
};
use core::mem::{align_of, size_of};

/// Most words of auxv handed to PR_SET_MM_MAP (the kernel's limit).
const AUXV_WORDS: usize = 2 * 64;
/// Pokes into the mailbox: its eight words a restarter writes and the
/// process's pending set.
const MAILBOX_POKES: usize = 9;
/// Room for this many of the restarter's own mappings to unmap: they are
/// only known once the argument mapping is placed (a restarter has a few
/// dozen).
const MAX_UNMAP: usize = 20 * 1024;

/// A mapping of the restorer's own: where and how long.
#[derive(Clone, Copy, Debug)]
pub struct Span {
    pub at: u64,
    pub len: u64,
}

/// The restorer's three mappings, which the restarted library unmaps.
pub struct Own {
    pub blob: Span,
    pub args: Span,
    pub stack: Span,
}

/// Bytes to map for the argument block of `plan`.
pub fn room(plan: &Plan) -> u64 {
    (size_of::<RestorerArgs>()
        + MAX_UNMAP * size_of::<Unmap>()
        + 2 * plan.regions.len() * size_of::<Move>()
        + size_of::<PrctlMmMap>()
        + AUXV_WORDS * 8
        + plan.sigactions.len() * size_of::<SigactionEntry>()
        + plan.threads.len() * (size_of::<ThreadEntry>() + size_of::<Poke>())
        + MAILBOX_POKES * size_of::<Poke>()
        // alignment of each table
        + 8 * 8) as u64
}

/// Tables placed one after the other behind the block, in its mapping.
struct Tables {
    next: u64,
    end: u64,
}

impl Tables {
    /// Copies `items` behind the previous table: (count, address).
    fn put<T: Copy>(&mut self, items: &[T]) -> Result<(u64, u64), RestoreError> {
        let at = self.next.next_multiple_of(align_of::<T>() as u64);
        let len = core::mem::size_of_val(items) as u64;
        if at + len > self.end {
            return Err(RestoreError::Io(
                "restorer arguments".into(),
                std::io::Error::other(format!(
                    "{} bytes of tables do not fit the {}-byte mapping",
                    at + len - self.next,
                    self.end - self.next
                )),
            ));
        }
        // SAFETY: [at, at + len) lies inside the argument mapping (checked
        // above), which the caller mapped writable; `at` is aligned for T.
        unsafe { core::ptr::copy_nonoverlapping(items.as_ptr(), at as *mut T, items.len()) };
        self.next = at + len;
        Ok((items.len() as u64, at))
    }
}

/// Writes the argument block and its tables into `own.args` (mapped
/// writable, zero-filled): the restarter's mappings to `unmap` (start,
/// end), the regions to `moves`, the executable opened as `exe_fd`.
pub fn write(
    plan: &Plan,
    own: &Own,
    unmap: &[(u64, u64)],
    moves: &[Move],
    exe_fd: i32,
) -> Result<(), RestoreError> {
    let mut t = Tables {
        next: own.args.at + size_of::<RestorerArgs>() as u64,
        end: own.args.at + own.args.len,
    };
    let unmap: Vec<Unmap> = unmap
        .iter()
        .map(|&(s, e)| Unmap {
            addr: s,
            len: e - s,
        })
        .collect();
    let (n_unmap, unmap) = t.put(&unmap)?;
    let (n_moves, moves) = t.put(moves)?;

    // auxv, then struct prctl_mm_map pointing to it.
    let mut auxv: Vec<u64> = plan
        .auxv
        .chunks(8)
        .map(|c| {
            let mut b = [0u8; 8];
            b[..c.len()].copy_from_slice(c);
            u64::from_ne_bytes(b)
        })
        .collect();
    auxv.truncate(AUXV_WORDS);
    let (n_auxv, auxv_at) = t.put(&auxv)?;
    let m = plan.mm;
    let mm_map = PrctlMmMap {
        start_code: m.start_code,
        end_code: m.end_code,
        start_data: m.start_data,
        end_data: m.end_data,
        start_brk: m.start_brk,
        brk: m.brk,
        start_stack: m.start_stack,
        arg_start: m.arg_start,
        arg_end: m.arg_end,
        env_start: m.env_start,
        env_end: m.env_end,
        auxv: auxv_at,
        auxv_size: (n_auxv * 8) as u32,
        exe_fd,
    };
    let (_, mm_map) = t.put(&[mm_map])?;

    let sigactions: Vec<SigactionEntry> = plan
        .sigactions
        .iter()
        .map(|s| SigactionEntry {
            signo: s.signo as u64,
            action: KernelSigaction {
                handler: s.handler,
                flags: s.flags,
                restorer: s.restorer,
                mask: s.mask,
            },
        })
        .collect();
    let (n_sigactions, sigactions) = t.put(&sigactions)?;

    // The first thread continues as this process: the one whose id was the
    // process id. In a namespace of our own every thread asks for its id.
    let first = |t: &&ThreadState| t.tid == plan.pid;
    let in_order =
        (plan.threads.iter().filter(first)).chain(plan.threads.iter().filter(|t| !first(t)));
    let threads: Vec<ThreadEntry> = in_order
        .map(|t| ThreadEntry {
            slot: t.slot,
            tls: t.tls,
            tid_address: t.tid_address,
            entry_sp: t.entry_sp,
            want_tid: if plan.exact_ids { t.tid as u64 } else { 0 },
        })
        .collect();
    let (n_threads, threads) = t.put(&threads)?;

    let pokes = pokes(plan, own);
    let (n_pokes, pokes) = t.put(&pokes)?;

    let (rseq_ptr, rseq_len, rseq_sig) = crate::threads::own_rseq()
        .map_or((0, 0, 0), |(ptr, len, sig)| (ptr, len as u64, sig as u64));
    let args = RestorerArgs {
        magic: ARGS_MAGIC,
        rseq_ptr,
        rseq_len,
        rseq_sig,
        n_unmap,
        unmap,
        n_moves,
        moves,
        mm_map,
        mm_map_size: size_of::<PrctlMmMap>() as u64,
        n_sigactions,
        sigactions,
        n_threads,
        threads,
        entry: plan.restart_entry,
        exe_fd: exe_fd as i64,
        exe_not_set: 0,
        n_pokes,
        pokes,
    };
    // SAFETY: the block's place, the start of the argument mapping, is
    // mapped writable, page-aligned and holds at least the block (the
    // tables were placed behind it, inside the mapping).
    unsafe { (own.args.at as *mut RestorerArgs).write(args) };
    Ok(())
}

/// The words the restorer writes into the restored library: its mailbox
/// (the restorer's leftovers, how ids were kept, then that it was
/// restarted), and (format 1.4) the pending signals of the process
/// (mailbox) and of each thread (its slot), which
/// `capture::park::restart_entry` raises again. An empty set needs no
/// poke: those words are 0 in the image.
fn pokes(plan: &Plan, own: &Own) -> Vec<Poke> {
    let mb = plan.restart_mailbox;
    let at = |offset: u64, value: u64| Poke {
        addr: mb + offset,
        value,
    };
    let identity = if plan.exact_ids {
        Identity::Exact
    } else {
        Identity::NewIds
    };
    let mut pokes = vec![
        at(mailbox::BLOB_ADDR, own.blob.at),
        at(mailbox::BLOB_LEN, own.blob.len),
        at(mailbox::ARGS_ADDR, own.args.at),
        at(mailbox::ARGS_LEN, own.args.len),
        at(mailbox::STACK_ADDR, own.stack.at),
        at(mailbox::STACK_LEN, own.stack.len),
        at(mailbox::IDENTITY, identity as u64),
    ];
    for (t, set) in plan.threads.iter().zip(&plan.thread_pending) {
        if !set.is_empty() {
            pokes.push(Poke {
                addr: t.slot + SLOT_PENDING_OFFSET,
                value: set.0,
            });
        }
    }
    if !plan.pending.is_empty() {
        pokes.push(at(mailbox::PENDING, plan.pending.0));
    }
    pokes.push(at(mailbox::RESTARTED, 1));
    pokes
}
