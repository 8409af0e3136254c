//! signalfd descriptors (signalfd(2)): their signal mask and file status
//! flags. The signals they read are the process's and its threads'
//! pending ones, which come back on their own (`pending`).
//!
//! Capture ([`encode_all`]) runs while the program's threads are
//! suspended: it reads `sigmask` (hex) from /proc/self/fdinfo into fixed
//! buffers and must never allocate.
//!
//! Restore ([`restore`]) runs in the restarter, before the hand-over: a
//! fresh signalfd for the same signals, put at its number. The signals
//! selfckpt reserves for itself (`interpose::masks::SUSPEND` and
//! `REQUEST`, 64 and 63) are never
//! in a restored mask: the program cannot have asked for them (selfckpt
//! keeps them out of every mask it sets), and taking them away from
//! selfckpt would stop its checkpoints.

use super::{fds, CaptureBuffers, KstateError};
use crate::capture::sys;
use crate::image::codec::{CodecError, Decoder, Encoder};
use crate::image::model::SignalSet;

/// The /proc/self/fd link of a signalfd.
pub const LINK: &[u8] = b"anon_inode:[signalfd]";

/// One signalfd (KERNEL record, format 1.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignalFd {
    pub fd: i32,
    /// fdinfo `flags`: access mode, `O_NONBLOCK`, `O_CLOEXEC`.
    pub flags: u32,
    /// Bit `n - 1` for signal `n`.
    pub mask: u64,
}

impl SignalFd {
    pub const ENCODED_LEN: usize = 16;

    pub fn encode(&self, e: &mut Encoder) -> Result<(), CodecError> {
        e.i32(self.fd)?;
        e.u32(self.flags)?;
        e.u64(self.mask)
    }

    pub fn decode(d: &mut Decoder) -> Result<Self, CodecError> {
        Ok(SignalFd {
            fd: d.i32()?,
            flags: d.u32()?,
            mask: d.u64()?,
        })
    }

    /// The mask a restart gives it: the recorded one without selfckpt's
    /// reserved signals.
    pub fn restored_mask(&self) -> u64 {
        [
            crate::interpose::masks::SUSPEND,
            crate::interpose::masks::REQUEST,
        ]
        .iter()
        .fold(self.mask, |m, &s| m & !(1u64 << (s - 1)))
    }

    /// One line of `inspect`.
    pub fn describe(&self) -> String {
        let names = signal_names(self.mask);
        format!(
            "fd {} signalfd mask {}{}",
            self.fd,
            if names.is_empty() {
                "(none)".to_string()
            } else {
                names.join(",")
            },
            super::eventfd::flag_words(self.flags)
        )
    }
}

/// The names of the signals in a mask.
pub fn signal_names(mask: u64) -> Vec<String> {
    (1..=64)
        .filter(|s| mask & (1u64 << (s - 1)) != 0)
        .map(SignalSet::name)
        .collect()
}

/// Encodes the count and every signalfd not skipped. No allocation.
pub fn encode_all(
    e: &mut Encoder,
    bufs: &mut CaptureBuffers,
    skip_fd: &dyn Fn(i32) -> bool,
) -> Result<(), KstateError> {
    let at = e.reserve_u32()?;
    let mut count = 0u32;
    fds::for_each_linked(bufs, skip_fd, LINK, &|_| {}, |fd, info| {
        let info = info.map_err(|errno| KstateError::Read {
            what: "a signalfd's fdinfo",
            errno,
        })?;
        let mask = sys::field(info, b"sigmask:")
            .and_then(sys::parse_hex)
            .ok_or(KstateError::Parse("a signalfd's mask"))?
            .0;
        SignalFd {
            fd,
            flags: fds::info_flags(fd, info),
            mask,
        }
        .encode(e)?;
        count += 1;
        Ok(())
    })?;
    e.patch_u32(at, count);
    Ok(())
}

/// Makes the signalfd anew at its number.
pub fn restore(s: &SignalFd) -> std::io::Result<()> {
    let flags = s.flags as i32 & (libc::O_NONBLOCK | libc::O_CLOEXEC);
    let mask = s.restored_mask();
    // SAFETY: raw signalfd4 reading the kernel's 8-byte signal set.
    let tmp = unsafe {
        libc::syscall(
            libc::SYS_signalfd4,
            -1,
            &mask as *const u64,
            std::mem::size_of::<u64>(),
            flags,
        )
    } as i32;
    fds::install_at(tmp, s.fd, s.flags)
}
