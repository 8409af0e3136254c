//! Signal-driven I/O on a descriptor: `O_ASYNC`, with the owner the
//! kernel signals (`F_SETOWN`, `F_SETOWN_EX`) and the signal it sends
//! (`F_SETSIG`), and a socket's owner alone (who gets its `SIGURG`). A
//! file reopened by path keeps them (`kstate::descriptions`), and so does
//! a pipe when its process restarts by itself (`kstate::pipes`); a socket,
//! an anonymous-inode descriptor (eventfd, timerfd, signalfd, inotify,
//! epoll) and a pipe in a tree's checkpoint (the tree may make it again)
//! are made again without them: the program would wait for a signal that
//! never comes. So the capture names each such
//! descriptor, and a restart refuses it (kind `fown`) unless told to go
//! on without.
//!
//! Capture runs while the program's threads are suspended: the fcntl
//! queries of `pipes::end_of` and a fixed buffer. Must never allocate.

use super::pipes::{end_of, OWNER_PGRP};
use super::KstateError;
use crate::capture::sys;
use crate::image::codec::Encoder;

pub const KIND: &str = "fown";

/// Names every descriptor with signal-driven I/O or an owner. No
/// allocation.
pub fn capture(e: &mut Encoder, skip_fd: &dyn Fn(i32) -> bool) -> Result<(), KstateError> {
    super::fds::for_each_fd(skip_fd, |fd| {
        // Flags, owner and signal as a pipe's end records them.
        let Some(end) = end_of(fd, 0) else {
            return Ok(());
        };
        let (flags, owner, sig) = (end.flags as i32, end.owner, end.sig);
        if flags & libc::O_ASYNC == 0 && owner == 0 {
            return Ok(());
        }
        // Files reopened by path keep them (`kstate::descriptions`), and
        // so does a pipe of a process restarted by itself.
        let kind = sys::fstat(fd).map_or(0, |st| st.st_mode & libc::S_IFMT);
        let named = match kind {
            libc::S_IFSOCK | 0 => true,
            libc::S_IFIFO => crate::tree::in_round(),
            _ => false,
        };
        if !named {
            return Ok(());
        }
        let mut text = [0u8; 200];
        let mut t = super::unrestorable::Words::new(&mut text);
        if flags & libc::O_ASYNC != 0 {
            t.push(b"signal-driven I/O (O_ASYNC");
        } else {
            t.push(b"an owner for its signals (F_SETOWN");
        }
        if owner != 0 {
            t.push(b", owner ");
            t.push_u64(owner as u64);
            if end.owner_type == OWNER_PGRP {
                t.push(b" (a process group)");
            }
        }
        if sig > 0 {
            t.push(b", signal ");
            t.push_u64(sig as u64);
        }
        t.push(b"): it would come back without it");
        let len = t.len();
        super::objects::NotRestorable::capture(e, fd, KIND, &text[..len])?;
        Ok(())
    })
}
