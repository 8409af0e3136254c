//! Which of descriptors 0, 1 and 2 the restarted program gets from whoever
//! runs the restart, and which are restored like any other file.
//!
//! `selfckpt run` records the identity (device, inode) of the stdio it was
//! given; when it resumes, a descriptor 0-2 of the image that was one of
//! that run's stdio (the same terminal, pipe or file) becomes the new run's
//! corresponding descriptor, and one the program itself pointed elsewhere
//! (`sort -o out` moves `out` onto fd 1) is reopened from its path like
//! any file, at its offset, and one the program closed is closed. Without that record (`selfckpt restart`, or a
//! run directory from an older version) every one of 0-2 is the
//! restarter's own, as before.
//!
//! Runs in the restarter before the hand-over; never touches a descriptor
//! above 2 but the copies it makes (close-on-exec, closed before the jump).

use crate::image::model::FileStamp;

/// A file's identity: (device, inode).
pub type Identity = (u64, u64);

/// What descriptor 0, 1 or 2 of the restarted program is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// The restarter's descriptor of this number.
    Inherit(i32),
    /// Reopened from the image like any file.
    Reopen,
    /// Closed, as the program had it (a daemon's closed stdin).
    Close,
}

/// The identities of this process's descriptors 0, 1 and 2 (None: closed).
pub fn own() -> [Option<Identity>; 3] {
    [0, 1, 2].map(|fd| {
        crate::capture::sys::fstat(fd)
            .ok()
            .map(|st| (st.st_dev, st.st_ino))
    })
}

/// The fate of descriptors 0-2, given the image's descriptors (number and
/// identity) and the original run's stdio (`None`: not known).
pub fn fates(image: &[(i32, FileStamp)], original: Option<[Option<Identity>; 3]>) -> [Fate; 3] {
    [0, 1, 2].map(|n| {
        let Some(original) = original else {
            return Fate::Inherit(n);
        };
        let Some((_, stamp)) = image.iter().find(|(fd, _)| *fd == n) else {
            // Closed in the program: closed again (its next open takes
            // the number, as it did).
            return Fate::Close;
        };
        let id = Some((stamp.dev, stamp.ino));
        // The same number first (a terminal is all three at once).
        if original[n as usize] == id {
            return Fate::Inherit(n);
        }
        match (0..3).find(|&k| original[k] == id) {
            Some(k) => Fate::Inherit(k as i32),
            None => Fate::Reopen,
        }
    })
}

/// Copies of the restarter's descriptors 0-2 (numbered `above` or higher),
/// taken before any of them is replaced. Dropped without
/// [`Saved::finish`] (the restart failed before the jump), it puts them
/// back, so the error reaches the restarter's stderr and nothing is
/// written into a file of the program.
pub struct Saved([i32; 3]);

/// Gives each descriptor 0-2 whose fate is `Inherit(k)` with k != its
/// number the restarter's descriptor k. Call before reopening the image's
/// files.
pub fn apply(fates: &[Fate; 3], above: i32) -> Saved {
    // SAFETY: duplicating our own descriptors (a closed one gives -1).
    let saved = [0, 1, 2].map(|fd| unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, above) });
    for (n, fate) in fates.iter().enumerate() {
        match *fate {
            Fate::Inherit(k) if k != n as i32 && saved[k as usize] >= 0 => {
                // SAFETY: dup3 of our copy onto a stdio number.
                unsafe { libc::dup3(saved[k as usize], n as i32, 0) };
            }
            // SAFETY: closing a stdio number of ours (a copy is saved).
            Fate::Close => unsafe {
                libc::close(n as i32);
            },
            _ => {}
        }
    }
    Saved(saved)
}

impl Saved {
    /// Writes a line to the restarter's stderr (fd 2 may be the program's
    /// file by now).
    pub fn say(&self, line: &str) {
        let fd = self.0[2];
        if fd < 0 {
            return;
        }
        let text = format!("{line}\n");
        // SAFETY: writing our own buffer to our copy of stderr.
        unsafe { libc::write(fd, text.as_ptr().cast(), text.len()) };
    }

    /// Keeps descriptors 0-2 as they are now and closes the copies: call
    /// right before the jump.
    pub fn finish(mut self) {
        self.close();
    }

    fn close(&mut self) {
        for fd in self.0.iter_mut().filter(|fd| **fd >= 0) {
            // SAFETY: closing the copies `apply` made.
            unsafe { libc::close(*fd) };
            *fd = -1;
        }
    }
}

impl Drop for Saved {
    fn drop(&mut self) {
        for (n, &fd) in self.0.iter().enumerate() {
            if fd >= 0 {
                // SAFETY: putting our copy back at its stdio number.
                unsafe { libc::dup3(fd, n as i32, 0) };
            }
        }
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(dev: u64, ino: u64) -> FileStamp {
        FileStamp {
            dev,
            ino,
            ..FileStamp::default()
        }
    }

    #[test]
    fn only_the_original_runs_stdio_is_inherited() {
        let tty = Some((5, 3));
        let image = [(0, stamp(5, 3)), (1, stamp(8, 100)), (2, stamp(5, 3))];
        // Unknown original: everything inherited, as before.
        assert_eq!(
            fates(&image, None),
            [Fate::Inherit(0), Fate::Inherit(1), Fate::Inherit(2)]
        );
        // `sort -o out` on a terminal: fd 1 is the program's own file.
        assert_eq!(
            fates(&image, Some([tty, tty, tty])),
            [Fate::Inherit(0), Fate::Reopen, Fate::Inherit(2)]
        );
        // `run > log 2>&1`, then the program dup2(2, 1): both the log;
        // its stdin it closed.
        let image = [(1, stamp(9, 7)), (2, stamp(9, 7))];
        let orig = Some([tty, Some((9, 7)), Some((9, 7))]);
        assert_eq!(
            fates(&image, orig),
            [Fate::Close, Fate::Inherit(1), Fate::Inherit(2)]
        );
        // stdout moved onto what was stderr.
        let image = [(1, stamp(9, 8))];
        let orig = Some([tty, Some((9, 7)), Some((9, 8))]);
        assert_eq!(fates(&image, orig)[1], Fate::Inherit(2));
    }
}
