//! Open file descriptions of files reopened by path (object kind 0x0203,
//! format 1.8): descriptors that share one description (`dup`, `dup2`,
//! `F_DUPFD`: one offset, one set of status flags), and status a reopening
//! `open(2)` cannot give back (`O_ASYNC`, the `F_SETOWN` owner, the
//! `F_SETSIG` signal). One entry per description that has either, listing
//! its descriptors (the lowest first).
//!
//! Capture ([`capture`]) runs while the program's threads are suspended:
//! the regular files (with a name), directories and character devices are
//! listed into the capture's text buffer as a fixed table (dev, ino, fd),
//! sharing told with `kcmp(KCMP_FILE)` among those of one inode; never an
//! allocation. Past the table's room (3276 descriptors) sharing is not
//! looked for: each is reopened apart.
//!
//! Restore ([`restore`], stage Descriptors, after `fds::reopen` reopened
//! each descriptor from its path): the first descriptor gets the status
//! back, the others become copies of it. Descriptors 0-2 keep the stdio
//! policy (a copy is made of them, never onto them).

use super::pipes::{end_of, same_description, End};
use super::{CaptureBuffers, KstateError};
use crate::capture::sys;
use crate::image::codec::{CodecError, Decoder, Encoder};

/// Most descriptors of one description recorded.
const MAX_ENDS: usize = 64;
/// Bytes of one table row: dev u64, ino u64, fd i32.
const ROW: usize = 20;

/// Status flags `F_SETFL` can set on a file.
const SETTABLE: i32 =
    libc::O_APPEND | libc::O_NONBLOCK | libc::O_DIRECT | libc::O_ASYNC | libc::O_NOATIME;

/// One open file description and its descriptors.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Description {
    pub ends: Vec<End>,
}

impl Description {
    pub fn encode(&self, e: &mut Encoder) -> Result<(), CodecError> {
        e.u32(self.ends.len() as u32)?;
        self.ends.iter().try_for_each(|x| x.encode(e))
    }

    pub fn decode(d: &mut Decoder) -> Result<Self, CodecError> {
        let n = d.count(End::ENCODED_LEN)?;
        let ends = (0..n).map(|_| End::decode(d)).collect::<Result<_, _>>()?;
        Ok(Description { ends })
    }

    /// Hostile values: refused before a restart acts on them.
    pub fn check(&self) -> Result<(), String> {
        if self.ends.is_empty() || self.ends.len() > MAX_ENDS {
            return Err(format!(
                "a shared description of {} descriptors",
                self.ends.len()
            ));
        }
        for x in &self.ends {
            if x.fd < 0
                || x.desc != 0
                || x.owner < 0
                || !(0..=2).contains(&x.owner_type)
                || !(0..=64).contains(&x.sig)
            {
                return Err(format!("fd {} has impossible values", x.fd));
            }
        }
        Ok(())
    }

    pub fn fds(&self) -> impl Iterator<Item = i32> + '_ {
        self.ends.iter().map(|x| x.fd)
    }

    /// One line of `inspect`.
    pub fn describe(&self) -> String {
        let fds: Vec<String> = self.fds().map(|fd| fd.to_string()).collect();
        format!(
            "fds {} share one description: {}",
            fds.join(","),
            self.ends[0].words()
        )
    }

    /// `inspect --json`.
    pub fn json(&self) -> serde_json::Value {
        let x = &self.ends[0];
        serde_json::json!({
            "kind": "description",
            "fds": self.fds().collect::<Vec<_>>(),
            "flags": x.flags, "owner_type": x.owner_type, "owner": x.owner,
            "owner_self": x.owner_self != 0, "sig": x.sig,
        })
    }
}

// ---- Capture (suspended world: no allocation) ----

fn row(table: &[u8], i: usize) -> (u64, u64, i32) {
    let r = &table[i * ROW..(i + 1) * ROW];
    let u = |b: &[u8]| u64::from_ne_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
    (
        u(&r[0..8]),
        u(&r[8..16]),
        i32::from_ne_bytes([r[16], r[17], r[18], r[19]]),
    )
}

/// Whether a descriptor of this type is reopened by path (and not made by
/// another object): a regular file with a name, a directory, a character
/// device.
fn reopened(st: &libc::stat) -> bool {
    match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => st.st_nlink > 0,
        libc::S_IFDIR | libc::S_IFCHR => true,
        _ => false,
    }
}

/// Writes an entry for every description shared by several descriptors
/// or with status `open(2)` cannot give back. No allocation.
pub fn capture(
    e: &mut Encoder,
    bufs: &mut CaptureBuffers,
    skip_fd: &dyn Fn(i32) -> bool,
) -> Result<(), KstateError> {
    let table = &mut *bufs.text;
    let cap = table.len() / ROW;
    let mut rows = 0usize;
    super::fds::for_each_fd(skip_fd, |fd| {
        let Ok(st) = sys::fstat(fd) else {
            return Ok(());
        };
        if rows < cap && reopened(&st) && !super::mqueue::is_mqueue(fd) {
            let r = &mut table[rows * ROW..(rows + 1) * ROW];
            r[0..8].copy_from_slice(&st.st_dev.to_ne_bytes());
            r[8..16].copy_from_slice(&st.st_ino.to_ne_bytes());
            r[16..20].copy_from_slice(&fd.to_ne_bytes());
            rows += 1;
        }
        Ok(())
    })?;
    let mut ends = [End::default(); MAX_ENDS];
    for i in 0..rows {
        let (dev, ino, fd) = row(table, i);
        // A descriptor of an earlier description is in its entry.
        let earlier = (0..i).any(|j| {
            let (d, n, f) = row(table, j);
            (d, n) == (dev, ino) && same_description(f, fd)
        });
        if earlier {
            continue;
        }
        let Some(first) = end_of(fd, 0) else {
            continue;
        };
        ends[0] = first;
        let mut n = 1;
        for k in i + 1..rows {
            let (d, ino2, f) = row(table, k);
            if (d, ino2) == (dev, ino) && n < MAX_ENDS && same_description(fd, f) {
                if let Some(x) = end_of(f, 0) {
                    ends[n] = x;
                    n += 1;
                }
            }
        }
        let status = first.flags as i32 & libc::O_ASYNC != 0 || first.owner != 0 || first.sig != 0;
        if n > 1 || status {
            super::objects::entry(e, super::objects::Kind::Description, 0, |e| {
                e.u32(n as u32)?;
                ends[..n].iter().try_for_each(|x| x.encode(e))
            })?;
        }
    }
    Ok(())
}

// ---- Restore (the restarter: ordinary Rust) ----

/// Gives the first descriptor its status back and makes the others
/// copies of it; returns what failed, one line each.
pub fn restore(x: &Description) -> Vec<String> {
    let mut failed = Vec::new();
    let first = &x.ends[0];
    // SAFETY: F_GETFD only asks whether the number is open.
    if unsafe { libc::fcntl(first.fd, libc::F_GETFD) } < 0 {
        return vec![format!(
            "fd {}: not reopened, so its copies are not shared with it",
            first.fd
        )];
    }
    // The status of a stdio descriptor the restarter gave is its own.
    if first.fd > 2 {
        if let Err(e) = super::pipes::set_status(first.fd, first, SETTABLE) {
            failed.push(format!("fd {}: {e}", first.fd));
        }
    }
    for e in x.ends.iter().skip(1).filter(|e| e.fd > 2) {
        // SAFETY: dup3 onto a number the program had (reopened apart).
        if unsafe { libc::dup3(first.fd, e.fd, e.flags as i32 & libc::O_CLOEXEC) } < 0 {
            failed.push(format!(
                "fd {}: cannot share fd {}'s description again: {}",
                e.fd,
                first.fd,
                std::io::Error::last_os_error()
            ));
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kstate::objects::{Object, Objects};
    use std::os::fd::AsRawFd;

    #[test]
    fn dups_are_found_and_share_again() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let a = f.as_file().as_raw_fd();
        // SAFETY: test descriptors: a dup, and a second open of the file.
        let (b, other) = unsafe {
            (
                libc::fcntl(a, libc::F_DUPFD_CLOEXEC, 0),
                libc::open(
                    format!("/proc/self/fd/{a}\0").as_ptr().cast(),
                    libc::O_RDONLY,
                ),
            )
        };
        let mine = [a, b, other];
        let out = crate::kstate::captured(|e, bufs| {
            capture(e, bufs, &|fd| !mine.contains(&fd))?;
            crate::kstate::objects::end(e)?;
            Ok(())
        });
        let objs = Objects::decode(&mut Decoder::new(&out)).unwrap();
        let [Object::Description(d)] = &objs.items[..] else {
            panic!("{objs:?}");
        };
        assert_eq!(d.fds().collect::<Vec<_>>(), vec![a, b]);
        assert_eq!(d.check(), Ok(()));
        // Reopened apart (as a restart does), then shared again.
        // SAFETY: test descriptors.
        unsafe {
            libc::close(b);
            let apart = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY);
            libc::dup2(apart, b);
            libc::close(apart);
        }
        assert!(restore(d).is_empty());
        // SAFETY: writing through one, reading the shared offset of the other.
        unsafe {
            assert_eq!(libc::write(b, b"xyz".as_ptr().cast(), 3), 3);
            assert_eq!(libc::lseek(a, 0, libc::SEEK_CUR), 3);
            libc::close(b);
            libc::close(other);
        }
    }
}
