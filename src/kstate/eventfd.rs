//! eventfd descriptors (eventfd(2)): their counter, semaphore mode and
//! file status flags.
//!
//! Capture ([`encode_all`]) runs while the program's threads are
//! suspended: it reads /proc/self/fdinfo (`eventfd-count`, in hex,
//! `eventfd-semaphore` on kernels from 6.7 on) into fixed buffers and must
//! never allocate. A kernel that does not say whether the descriptor is a
//! semaphore leaves the mode unknown: the object is then named as not
//! restorable (restart refuses it).
//!
//! Restore ([`restore`]) runs in the restarter, before the hand-over: a
//! fresh eventfd with the same mode and flags, the counter written back,
//! put at its number.

use super::{fds, CaptureBuffers, KstateError};
use crate::capture::sys;
use crate::image::codec::{CodecError, Decoder, Encoder};

/// The /proc/self/fd link of an eventfd.
pub const LINK: &[u8] = b"anon_inode:[eventfd]";

/// Whether an eventfd counts as a semaphore (`EFD_SEMAPHORE`).
pub const NOT_SEMAPHORE: u8 = 0;
pub const SEMAPHORE: u8 = 1;
/// The kernel did not say (no `eventfd-semaphore` line).
pub const SEMAPHORE_UNKNOWN: u8 = 2;

/// One eventfd (KERNEL record, format 1.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventFd {
    pub fd: i32,
    /// fdinfo `flags` (octal there): access mode, `O_NONBLOCK`, `O_CLOEXEC`.
    pub flags: u32,
    pub count: u64,
    /// [`NOT_SEMAPHORE`], [`SEMAPHORE`] or [`SEMAPHORE_UNKNOWN`].
    pub semaphore: u8,
}

impl EventFd {
    pub const ENCODED_LEN: usize = 17;

    pub fn encode(&self, e: &mut Encoder) -> Result<(), CodecError> {
        e.i32(self.fd)?;
        e.u32(self.flags)?;
        e.u64(self.count)?;
        e.u8(self.semaphore)
    }

    pub fn decode(d: &mut Decoder) -> Result<Self, CodecError> {
        Ok(EventFd {
            fd: d.i32()?,
            flags: d.u32()?,
            count: d.u64()?,
            semaphore: d.u8()?,
        })
    }

    /// Why it cannot come back as it was, if it cannot.
    pub fn problem(&self) -> Option<String> {
        (self.semaphore == SEMAPHORE_UNKNOWN).then(|| {
            super::unrestorable::sentence(self.fd, 0, super::unrestorable::Why::SemaphoreUnknown)
        })
    }

    /// One line of `inspect`.
    pub fn describe(&self) -> String {
        format!(
            "fd {} eventfd count {}{}{}",
            self.fd,
            self.count,
            match self.semaphore {
                SEMAPHORE => " semaphore",
                NOT_SEMAPHORE => "",
                _ => " semaphore-unknown",
            },
            flag_words(self.flags)
        )
    }
}

/// " nonblock", " cloexec" for the flags set.
pub fn flag_words(flags: u32) -> String {
    let f = flags as i32;
    let mut s = String::new();
    if f & libc::O_NONBLOCK != 0 {
        s.push_str(" nonblock");
    }
    if f & libc::O_CLOEXEC != 0 {
        s.push_str(" cloexec");
    }
    s
}

/// Encodes the count and every eventfd not skipped. No allocation.
pub fn encode_all(
    e: &mut Encoder,
    bufs: &mut CaptureBuffers,
    skip_fd: &dyn Fn(i32) -> bool,
) -> Result<(), KstateError> {
    let at = e.reserve_u32()?;
    let mut count = 0u32;
    fds::for_each_linked(bufs, skip_fd, LINK, &|_| {}, |fd, info| {
        let info = info.map_err(|errno| KstateError::Read {
            what: "an eventfd's fdinfo",
            errno,
        })?;
        let value = sys::field(info, b"eventfd-count:")
            .and_then(sys::parse_hex)
            .ok_or(KstateError::Parse("an eventfd's count"))?
            .0;
        let semaphore = match sys::field(info, b"eventfd-semaphore:").and_then(sys::parse_u64) {
            Some((0, _)) => NOT_SEMAPHORE,
            Some(_) => SEMAPHORE,
            None => {
                super::unrestorable::note(fd, 0, super::unrestorable::Why::SemaphoreUnknown);
                SEMAPHORE_UNKNOWN
            }
        };
        EventFd {
            fd,
            flags: fds::info_flags(fd, info),
            count: value,
            semaphore,
        }
        .encode(e)?;
        count += 1;
        Ok(())
    })?;
    e.patch_u32(at, count);
    Ok(())
}

/// Makes the eventfd anew at its number.
pub fn restore(ev: &EventFd) -> std::io::Result<()> {
    let mut flags = ev.flags as i32 & (libc::O_NONBLOCK | libc::O_CLOEXEC);
    if ev.semaphore == SEMAPHORE {
        flags |= libc::EFD_SEMAPHORE;
    }
    // SAFETY: eventfd has no memory preconditions.
    let tmp = unsafe { libc::eventfd(0, flags | libc::EFD_NONBLOCK) };
    if tmp >= 0 && ev.count > 0 {
        let bytes = ev.count.to_ne_bytes();
        // SAFETY: writing 8 bytes from a local array to our eventfd.
        let n = unsafe { libc::write(tmp, bytes.as_ptr().cast(), 8) };
        if n != 8 {
            let err = std::io::Error::last_os_error();
            // SAFETY: closing our descriptor.
            unsafe { libc::close(tmp) };
            return Err(err);
        }
    }
    if tmp >= 0 && flags & libc::O_NONBLOCK == 0 {
        // SAFETY: F_SETFL on our descriptor: back to blocking.
        unsafe { libc::fcntl(tmp, libc::F_SETFL, 0) };
    }
    fds::install_at(tmp, ev.fd, ev.flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_eventfd_is_captured_and_comes_back_with_its_counter_and_mode() {
        // SAFETY: creating a test eventfd.
        let fd = unsafe { libc::eventfd(5, libc::EFD_SEMAPHORE | libc::EFD_NONBLOCK) };
        let out = super::super::captured(|e, bufs| encode_all(e, bufs, &|x| x != fd));
        let mut d = Decoder::new(&out);
        assert_eq!(d.u32().unwrap(), 1);
        let got = EventFd::decode(&mut d).unwrap();
        assert_eq!(got.count, 5);
        assert_eq!(
            got.semaphore, SEMAPHORE,
            "this kernel says eventfd-semaphore"
        );
        assert_ne!(got.flags as i32 & libc::O_NONBLOCK, 0);
        let back = EventFd { fd: 977, ..got };
        restore(&back).unwrap();
        let mut v = [0u8; 8];
        // SAFETY: reading the restored semaphore eventfd: one at a time.
        assert_eq!(unsafe { libc::read(977, v.as_mut_ptr().cast(), 8) }, 8);
        assert_eq!(u64::from_ne_bytes(v), 1);
        // SAFETY: closing the test's descriptors.
        unsafe {
            libc::close(977);
            libc::close(fd);
        }
    }
}
