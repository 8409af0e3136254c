//! The restorer interface, defined once: the argument block the restarter
//! hands to the restorer blob ([`RestorerArgs`] and the tables it points
//! to), the restarted library's [`RestartMailbox`] and the one word of a
//! thread slot a restarter writes ([`SLOT_PENDING_OFFSET`]), with the
//! layout version of the latter two ([`MAILBOX_LAYOUT`]).
//!
//! The Rust side fills and reads these by field name. The assembly
//! (`arch/<arch>/restorer.S`) and `tests/aarch64/harness.c` never use a
//! literal offset: `build.rs` includes this file (`#[path]`), walks
//! [`EXPORTED`] and writes `$OUT_DIR/restorer_abi.inc` (`.equ` lines, both
//! arches) and `$OUT_DIR/restorer_abi.h`; the `selfckpt` binary asserts
//! at compile time that the target's `offset_of!` agree with what the
//! build script computed on the host (`src/bin/selfckpt/blob.rs`).
//!
//! Changing the restorer's arguments: add or change the field here (and
//! in [`EXPORTED`]'s list), fill it by name in `restore::args`, use its
//! `ARGS_*` name in both `restorer.S` files (and in the harness if it
//! takes part). Changing the mailbox or the slot's pending word: the same,
//! and bump [`MAILBOX_LAYOUT`] (images record it; a restarter refuses an
//! image whose library has another one).
//!
//! Must depend on nothing but `core` (the build script compiles it on its
//! own): layouts, constants and trivial accessors only, nothing that
//! allocates (the mailbox is read in the restarted threads before they
//! are released).

use core::mem::{offset_of, size_of};
use core::sync::atomic::AtomicU64;

/// Stack bytes the restorer sets aside for its [`CloneArgs`]: its size,
/// rounded up to keep the stack 16-byte aligned.
pub const CLONE_ARGS_ROOM: u64 = (size_of::<CloneArgs>() as u64).next_multiple_of(16);

/// `RestorerArgs::magic`: "SCKPTARG" little-endian.
pub const ARGS_MAGIC: u64 = u64::from_le_bytes(*b"SCKPTARG");

/// The argument block, at the start of the restorer's argument mapping;
/// the tables it points to follow it in the same mapping. Every table is
/// a count and the address of its first entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RestorerArgs {
    /// [`ARGS_MAGIC`].
    pub magic: u64,
    /// The restarter's rseq area to unregister (0: none), its length and
    /// signature (step 1).
    pub rseq_ptr: u64,
    pub rseq_len: u64,
    pub rseq_sig: u64,
    /// The restarter's mappings to unmap (step 2): [`Unmap`] entries.
    pub n_unmap: u64,
    pub unmap: u64,
    /// Staged regions to move into place (step 3): [`Move`] entries.
    pub n_moves: u64,
    pub moves: u64,
    /// `struct prctl_mm_map` ([`PrctlMmMap`]) for PR_SET_MM_MAP and its
    /// size (step 4; 0: skipped).
    pub mm_map: u64,
    pub mm_map_size: u64,
    /// Signal dispositions to set (step 5): [`SigactionEntry`] entries.
    pub n_sigactions: u64,
    pub sigactions: u64,
    /// The threads to bring back (steps 7, 8): [`ThreadEntry`] entries,
    /// the first one continues as the restarter's thread.
    pub n_threads: u64,
    pub threads: u64,
    /// The restored library's restart entry, called with a slot address.
    pub entry: u64,
    /// The program's executable opened for PR_SET_MM_MAP (-1: none);
    /// closed once the map is set.
    pub exe_fd: i64,
    /// Written by the restorer: 1 when PR_SET_MM_MAP had to be retried
    /// without exe_fd (`/proc/self/exe` still names selfckpt).
    pub exe_not_set: u64,
    /// Words to write once the image is in place (step 6): [`Poke`]
    /// entries (the mailbox and the threads' pending signals).
    pub n_pokes: u64,
    pub pokes: u64,
}

/// One mapping of the restarter's to unmap.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Unmap {
    pub addr: u64,
    pub len: u64,
}

/// One staged region: `mremap(src, len, len, MAYMOVE|FIXED, dst)`, then
/// `mprotect(dst, len, prot)` unless `prot` is [`Move::KEEP_PROT`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Move {
    pub src: u64,
    pub dst: u64,
    pub len: u64,
    pub prot: u64,
}

impl Move {
    /// `prot` that leaves the protection as the mapping has it.
    pub const KEEP_PROT: u64 = u64::MAX;
}

/// The kernel's `struct prctl_mm_map` (include/uapi/linux/prctl.h).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PrctlMmMap {
    pub start_code: u64,
    pub end_code: u64,
    pub start_data: u64,
    pub end_data: u64,
    pub start_brk: u64,
    pub brk: u64,
    pub start_stack: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
    pub auxv: u64,
    pub auxv_size: u32,
    /// The restorer sets it to -1 for its retry without the privilege to
    /// change `/proc/self/exe`.
    pub exe_fd: i32,
}

/// The kernel's `struct sigaction` as `rt_sigaction` takes it on x86_64
/// and aarch64.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelSigaction {
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

/// One signal disposition: `rt_sigaction(signo, &action, NULL, 8)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SigactionEntry {
    pub signo: u64,
    pub action: KernelSigaction,
}

/// One thread to bring back.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ThreadEntry {
    /// Its slot in the library's table: the restart entry's argument.
    pub slot: u64,
    /// Thread pointer.
    pub tls: u64,
    /// clear_child_tid address.
    pub tid_address: u64,
    /// Stack pointer the restart entry starts with.
    pub entry_sp: u64,
    /// The exact thread id to ask clone3 for (0: any; in a PID namespace
    /// of our own). The kernel reads the low 4 bytes (a `pid_t`).
    pub want_tid: u64,
}

/// One word to write: `*addr = value`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Poke {
    pub addr: u64,
    pub value: u64,
}

/// The kernel's `struct clone_args` (include/uapi/linux/sched.h, the 88
/// bytes of CLONE_ARGS_SIZE_VER2), which the restorer builds on its stack.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CloneArgs {
    pub flags: u64,
    pub pidfd: u64,
    pub child_tid: u64,
    pub parent_tid: u64,
    pub exit_signal: u64,
    pub stack: u64,
    pub stack_size: u64,
    pub tls: u64,
    pub set_tid: u64,
    pub set_tid_size: u64,
    pub cgroup: u64,
}

/// The layout version of [`RestartMailbox`] and of the slot's pending
/// word: what a restarter writes into the restored library. Recorded in
/// every image (META, format 1.5); a restarter refuses an image whose
/// library has another one. Bump it with any change to either.
///
/// Version 1: the mailbox below (`layout` last, never written by a
/// restarter) and the slot's pending word at 120. Libraries that wrote
/// images before format 1.5 have the words a restarter writes at these
/// offsets, as far as their format has them (the pending words came with
/// 1.4 and are written only when a 1.4 image has pending signals; the
/// identity word came with 1.1, where 1.0 libraries had an unused word);
/// the version word itself came last, at the end.
pub const MAILBOX_LAYOUT: u32 = 1;

/// A mapping the restorer used, for the restarted library to unmap.
#[repr(C)]
pub struct Span {
    pub addr: AtomicU64,
    pub len: AtomicU64,
}

impl Span {
    pub const fn empty() -> Span {
        Span {
            addr: AtomicU64::new(0),
            len: AtomicU64::new(0),
        }
    }
}

/// Where the restarted library finds the restorer's leftovers and learns
/// that it was restarted. One static of the library (its address is in
/// META); the restorer writes it ("pokes") after mapping the image.
#[repr(C)]
pub struct RestartMailbox {
    /// Non-zero once a restorer wrote this mailbox.
    pub restarted: AtomicU64,
    /// The restorer's blob, argument block and stack, to unmap.
    pub blob: Span,
    pub args: Span,
    pub stack: Span,
    /// How the restart kept process and thread ids ([`Identity`]).
    pub identity: AtomicU64,
    /// The signals pending for the whole process at the checkpoint (a
    /// `SignalSet`; format 1.4), raised again by the restarted manager.
    pub pending: AtomicU64,
    /// [`MAILBOX_LAYOUT`] of the library build that holds this mailbox.
    /// Read only (a restarter never writes it).
    pub layout: AtomicU64,
}

impl Default for RestartMailbox {
    fn default() -> Self {
        Self::new()
    }
}

impl RestartMailbox {
    /// The mailbox of a process that was never restarted.
    pub const fn new() -> RestartMailbox {
        RestartMailbox {
            restarted: AtomicU64::new(0),
            blob: Span::empty(),
            args: Span::empty(),
            stack: Span::empty(),
            identity: AtomicU64::new(Identity::Original as u64),
            pending: AtomicU64::new(0),
            layout: AtomicU64::new(MAILBOX_LAYOUT as u64),
        }
    }

    /// The restorer's mappings, in the order of the fields.
    pub fn leftovers(&self) -> [&Span; 3] {
        [&self.blob, &self.args, &self.stack]
    }
}

/// Offsets of the words a restarter writes, from the mailbox's address.
pub mod mailbox {
    use super::*;
    pub const RESTARTED: u64 = offset_of!(RestartMailbox, restarted) as u64;
    pub const BLOB_ADDR: u64 = offset_of!(RestartMailbox, blob.addr) as u64;
    pub const BLOB_LEN: u64 = offset_of!(RestartMailbox, blob.len) as u64;
    pub const ARGS_ADDR: u64 = offset_of!(RestartMailbox, args.addr) as u64;
    pub const ARGS_LEN: u64 = offset_of!(RestartMailbox, args.len) as u64;
    pub const STACK_ADDR: u64 = offset_of!(RestartMailbox, stack.addr) as u64;
    pub const STACK_LEN: u64 = offset_of!(RestartMailbox, stack.len) as u64;
    pub const IDENTITY: u64 = offset_of!(RestartMailbox, identity) as u64;
    pub const PENDING: u64 = offset_of!(RestartMailbox, pending) as u64;
    /// The word that holds the library's [`MAILBOX_LAYOUT`].
    pub const LAYOUT: u64 = offset_of!(RestartMailbox, layout) as u64;
}

/// Where a thread slot's pending signals lie, from the slot's address (the
/// image's `ThreadState::slot`). The rest of a slot is the library's own;
/// `capture::park` asserts its `ThreadSlot` puts the word here.
pub const SLOT_PENDING_OFFSET: u64 = 120;

/// How a restart kept the process's and threads' ids (mailbox and image
/// value).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Identity {
    /// Never restarted.
    Original = 0,
    /// In a PID namespace of its own: the checkpoint-time pid and tids.
    Exact = 1,
    /// New pid and tids; the library translates thread ids.
    NewIds = 2,
}

impl Identity {
    pub fn from_u64(v: u64) -> Identity {
        match v {
            1 => Identity::Exact,
            2 => Identity::NewIds,
            _ => Identity::Original,
        }
    }
    pub fn describe(self) -> &'static str {
        match self {
            Identity::Original => "never restarted",
            Identity::Exact => "exact pid and tids (PID namespace)",
            Identity::NewIds => "new pid and tids (thread ids translated)",
        }
    }
}

/// One constant the assembly and the harness see: `PREFIX_FIELD` (the
/// build script upper-cases the field path, dots becoming `_`) = value.
pub struct Exported {
    pub prefix: &'static str,
    pub field: &'static str,
    pub value: u64,
}

/// Offsets of the listed fields of `$ty`, then its size as `SIZE`.
macro_rules! layout_of {
    ($ty:ty, $prefix:literal: $($($f:ident).+),+) => {
        [
            $(Exported {
                prefix: $prefix,
                field: stringify!($($f).+),
                value: offset_of!($ty, $($f).+) as u64,
            },)+
            Exported { prefix: $prefix, field: "size", value: size_of::<$ty>() as u64 },
        ]
    };
}

const ARGS: [Exported; 20] = layout_of!(RestorerArgs, "ARGS":
    magic, rseq_ptr, rseq_len, rseq_sig, n_unmap, unmap, n_moves, moves, mm_map,
    mm_map_size, n_sigactions, sigactions, n_threads, threads, entry, exe_fd,
    exe_not_set, n_pokes, pokes);
const UNMAP: [Exported; 3] = layout_of!(Unmap, "UNMAP": addr, len);
const MOVE: [Exported; 5] = layout_of!(Move, "MOVE": src, dst, len, prot);
const MM_MAP: [Exported; 2] = layout_of!(PrctlMmMap, "MM_MAP": exe_fd);
const SIGACTION: [Exported; 7] = layout_of!(SigactionEntry, "SIGACTION":
    signo, action, action.handler, action.flags, action.restorer, action.mask);
const THREAD: [Exported; 6] = layout_of!(ThreadEntry, "THREAD":
    slot, tls, tid_address, entry_sp, want_tid);
const POKE: [Exported; 3] = layout_of!(Poke, "POKE": addr, value);
const CLONE_ARGS: [Exported; 12] = layout_of!(CloneArgs, "CLONE_ARGS":
    flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls,
    set_tid, set_tid_size, cgroup);
const VALUES: [Exported; 3] = [
    Exported {
        prefix: "ARGS",
        field: "magic_value",
        value: ARGS_MAGIC,
    },
    Exported {
        prefix: "MOVE",
        field: "keep_prot",
        value: Move::KEEP_PROT,
    },
    Exported {
        prefix: "CLONE_ARGS",
        field: "room",
        value: CLONE_ARGS_ROOM,
    },
];

/// Every constant `build.rs` writes for the assembly and the harness.
pub const EXPORTED: [&[Exported]; 9] = [
    &ARGS,
    &UNMAP,
    &MOVE,
    &MM_MAP,
    &SIGACTION,
    &THREAD,
    &POKE,
    &CLONE_ARGS,
    &VALUES,
];

// Every table entry is whole u64 words (no padding, the same on both
// arches): the restarter copies them as plain bytes.
const _: () = {
    assert!(size_of::<RestorerArgs>() == 19 * 8);
    assert!(size_of::<PrctlMmMap>() == 104);
    assert!(offset_of!(PrctlMmMap, exe_fd) == 100);
    assert!(size_of::<CloneArgs>() == 88);
    assert!(size_of::<SigactionEntry>() == 40);
    assert!(size_of::<ThreadEntry>() == 40);
};

// Layout 1 (see MAILBOX_LAYOUT). A change here is a new layout: bump
// MAILBOX_LAYOUT, then update these.
const _: () = {
    assert!(MAILBOX_LAYOUT == 1);
    assert!(mailbox::RESTARTED == 0);
    assert!(mailbox::BLOB_ADDR == 8 && mailbox::BLOB_LEN == 16);
    assert!(mailbox::ARGS_ADDR == 24 && mailbox::ARGS_LEN == 32);
    assert!(mailbox::STACK_ADDR == 40 && mailbox::STACK_LEN == 48);
    assert!(mailbox::IDENTITY == 56 && mailbox::PENDING == 64);
    assert!(mailbox::LAYOUT == 72);
    assert!(SLOT_PENDING_OFFSET == 120);
};

#[cfg(test)]
mod tests {
    /// Lines of `src` before its failure path (`.Lfail:`, which builds
    /// its message on the stack and is no part of the interface) that
    /// address memory with a literal number instead of a generated name.
    fn literal_offsets(src: &str) -> Vec<&str> {
        let body = src.split("\n.Lfail:").next().unwrap_or(src);
        body.lines()
            .map(|l| l.split("/*").next().unwrap_or(l))
            .filter(|l| {
                let (Some(open), Some(close)) = (l.find('['), l.find(']')) else {
                    return false;
                };
                // [reg + 8], [reg, #8], and aarch64's post-index [reg], #8
                let inside = l[open..close]
                    .split(|c: char| "[+-,# \t".contains(c))
                    .any(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_digit()));
                let post = l[close..]
                    .strip_prefix("], #")
                    .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()));
                inside || post
            })
            .collect()
    }

    #[test]
    fn the_assembly_uses_generated_names_for_every_offset() {
        for (arch, src) in [
            ("x86_64", include_str!("../arch/x86_64/restorer.S")),
            ("aarch64", include_str!("../arch/aarch64/restorer.S")),
        ] {
            let bad = literal_offsets(src);
            assert!(bad.is_empty(), "{arch}: literal offsets: {bad:#?}");
        }
        // The check itself sees one.
        assert_eq!(
            literal_offsets(
                "    mov rdi, [r15 + 8]\n    ldr x0, [x19, #8]\n    ldp x0, x1, [x21], #16\n"
            ),
            [
                "    mov rdi, [r15 + 8]",
                "    ldr x0, [x19, #8]",
                "    ldp x0, x1, [x21], #16"
            ]
        );
    }
}
