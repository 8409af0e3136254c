//! File locks the process holds (object kind 0x0202, format 1.8):
//! `flock(2)` locks, POSIX record locks (`F_SETLK`) and open file
//! description locks (`F_OFD_SETLK`), one entry per lock and descriptor,
//! as `/proc/self/fdinfo/N` shows them (`lock:` lines: the locks set
//! through that open file description and owned by this process or by
//! the description).
//!
//! Capture ([`capture`]) runs while the program's threads are suspended:
//! fdinfo read into the capture's fixed text buffer, parsed in place;
//! never an allocation. A lease (`F_SETLEASE`) or any other kind of lock
//! is named as not restorable (kind `lock`).
//!
//! Before a restart acts ([`conflicts`]), each lock on a file reopened by
//! path is tested from a description of the restarter's own (`F_OFD_GETLK`,
//! or `flock(LOCK_NB)` taken and dropped): a conflicting lock another
//! process holds now refuses the restart, naming it. Restore
//! ([`restore`], stage Late: every descriptor is back, and nothing closes
//! one afterwards, which would drop POSIX locks) takes each lock again
//! through its descriptor, without waiting.

use super::{CaptureBuffers, KstateError};
use crate::capture::sys::{self, PathBuf};
use crate::image::codec::{CodecError, Decoder, Encoder};

/// The kind `--unrestorable` names.
pub const KIND: &str = "lock";

/// Lock classes.
pub const FLOCK: u8 = 1;
pub const POSIX: u8 = 2;
pub const OFD: u8 = 3;

/// `end` of a lock that reaches the end of the file ("EOF").
pub const TO_EOF: u64 = u64::MAX;

/// One lock held through one descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lock {
    pub fd: i32,
    /// [`FLOCK`], [`POSIX`] or [`OFD`].
    pub class: u8,
    /// A write (exclusive) lock; else a read (shared) one.
    pub write: bool,
    /// First and last byte (inclusive; `end` [`TO_EOF`]: to the end).
    pub start: u64,
    pub end: u64,
}

impl Lock {
    pub fn encode(&self, e: &mut Encoder) -> Result<(), CodecError> {
        e.i32(self.fd)?;
        e.u8(self.class)?;
        e.u8(self.write as u8)?;
        e.u64(self.start)?;
        e.u64(self.end)
    }

    pub fn decode(d: &mut Decoder) -> Result<Self, CodecError> {
        let fd = d.i32()?;
        let class = d.u8()?;
        let write = match d.u8()? {
            0 => false,
            1 => true,
            v => {
                return Err(CodecError::BadValue {
                    field: "mode of a file lock",
                    value: v as u64,
                })
            }
        };
        Ok(Lock {
            fd,
            class,
            write,
            start: d.u64()?,
            end: d.u64()?,
        })
    }

    /// Hostile values: refused before a restart acts on them.
    pub fn check(&self) -> Result<(), String> {
        if self.fd < 0
            || !(FLOCK..=OFD).contains(&self.class)
            || self.start > i64::MAX as u64
            || (self.end != TO_EOF && (self.end < self.start || self.end > i64::MAX as u64))
            || (self.class == FLOCK && (self.start, self.end) != (0, TO_EOF))
        {
            return Err(format!(
                "a file lock on fd {} has impossible values",
                self.fd
            ));
        }
        Ok(())
    }

    /// "its POSIX write lock on bytes 10-19".
    pub fn words(&self) -> String {
        let mode = if self.write { "write" } else { "read" };
        let class = match self.class {
            FLOCK => return format!("its flock {mode} lock"),
            POSIX => "POSIX",
            _ => "OFD",
        };
        let range = match self.end {
            TO_EOF => format!("bytes {}-end", self.start),
            end => format!("bytes {}-{end}", self.start),
        };
        format!("its {class} {mode} lock on {range}")
    }

    /// One line of `inspect`.
    pub fn describe(&self) -> String {
        format!(
            "fd {} lock: {}",
            self.fd,
            self.words().trim_start_matches("its ")
        )
    }

    /// `inspect --json`.
    pub fn json(&self) -> serde_json::Value {
        let class = ["?", "flock", "posix", "ofd"]
            .get(self.class as usize)
            .copied()
            .unwrap_or("?");
        serde_json::json!({
            "kind": KIND,
            "fd": self.fd,
            "class": class,
            "write": self.write,
            "start": self.start,
            "end": if self.end == TO_EOF { serde_json::Value::Null } else { self.end.into() },
        })
    }

    /// The `struct flock` of a POSIX or OFD lock.
    fn flock(&self, ty: i32) -> libc::flock {
        // SAFETY: flock is plain old data; zeroed is a valid value.
        let mut l: libc::flock = unsafe { std::mem::zeroed() };
        l.l_type = ty as i16;
        l.l_whence = libc::SEEK_SET as i16;
        l.l_start = self.start as i64;
        l.l_len = match self.end {
            TO_EOF => 0,
            end => (end - self.start + 1) as i64,
        };
        l
    }

    fn lock_type(&self) -> i32 {
        if self.write {
            libc::F_WRLCK
        } else {
            libc::F_RDLCK
        }
    }
}

// ---- Capture (suspended world: no allocation) ----

/// Parses one `lock:` line's text after "lock:": Some(class or 0 for a
/// kind that cannot come back, write, start, end).
fn parse(line: &[u8]) -> Option<(u8, bool, u64, u64)> {
    let mut words = line
        .split(|c| c.is_ascii_whitespace())
        .filter(|w| !w.is_empty());
    let _id = words.next()?;
    let class = match words.next()? {
        b"FLOCK" => FLOCK,
        b"POSIX" => POSIX,
        b"OFDLCK" => OFD,
        _ => return Some((0, false, 0, 0)),
    };
    let _advisory = words.next()?;
    let write = match words.next()? {
        b"WRITE" => true,
        b"READ" => false,
        _ => return Some((0, false, 0, 0)),
    };
    let _pid = words.next()?;
    let _dev_ino = words.next()?;
    let (start, _) = sys::parse_u64(words.next()?)?;
    let end = match words.next()? {
        b"EOF" => TO_EOF,
        w => sys::parse_u64(w)?.0,
    };
    Some((class, write, start, end))
}

/// Writes an entry for every lock held through a descriptor not skipped,
/// and a `NotRestorable` entry for a lease or other lock. No allocation.
pub fn capture(
    e: &mut Encoder,
    bufs: &mut CaptureBuffers,
    skip_fd: &dyn Fn(i32) -> bool,
) -> Result<(), KstateError> {
    super::fds::for_each_fd(skip_fd, |fd| {
        let mut p = PathBuf::<48>::new();
        p.push(b"/proc/self/fdinfo/").push_u64(fd as u64);
        let Ok(n) = sys::read_file(p.as_cstr_bytes(), bufs.text) else {
            return Ok(());
        };
        let text = &bufs.text[..n];
        for line in text.split(|&c| c == b'\n') {
            let Some(rest) = line.strip_prefix(b"lock:") else {
                continue;
            };
            match parse(rest) {
                Some((0, ..)) | None => {
                    super::objects::NotRestorable::capture(
                        e,
                        fd,
                        KIND,
                        b"holds a lease or a lock of a kind that cannot be taken again",
                    )?;
                }
                Some((class, write, start, end)) => {
                    let lock = Lock {
                        fd,
                        class,
                        write,
                        start,
                        end,
                    };
                    super::objects::entry(e, super::objects::Kind::Lock, 0, |e| lock.encode(e))?;
                }
            }
        }
        Ok(())
    })
}

// ---- Before the restart, and its restore (ordinary Rust) ----

/// Whether another process holds a lock now that conflicts with `lock`,
/// tested on `path` (the file the descriptor will be reopened from) from
/// a description of this process's own: a sentence saying who, if so.
pub fn conflict(lock: &Lock, path: &[u8]) -> Option<String> {
    use std::os::fd::AsRawFd;
    let (probe, _) = super::fds::probe(path).ok()?;
    let f = super::fds::reopen_via(probe.as_raw_fd(), libc::O_RDONLY).ok()?;
    // SAFETY: f is ours; the struct flock is ours.
    let found = unsafe {
        if lock.class == FLOCK {
            let ty = if lock.write {
                libc::LOCK_EX
            } else {
                libc::LOCK_SH
            };
            let r = libc::flock(f, ty | libc::LOCK_NB);
            libc::close(f);
            (r != 0).then(|| "another process holds a conflicting flock lock".to_string())
        } else {
            let mut l = lock.flock(lock.lock_type());
            let r = libc::fcntl(f, libc::F_OFD_GETLK, &mut l);
            libc::close(f);
            (r == 0 && l.l_type != libc::F_UNLCK as i16).then(|| {
                let who = if l.l_pid > 0 {
                    format!("process {}", l.l_pid)
                } else {
                    "another process".to_string()
                };
                format!(
                    "{who} holds a conflicting {} lock from byte {}",
                    if l.l_type == libc::F_WRLCK as i16 {
                        "write"
                    } else {
                        "read"
                    },
                    l.l_start
                )
            })
        }
    };
    found.map(|who| {
        format!(
            "fd {} ({}): {}: {who}",
            lock.fd,
            crate::image::show::shown(path),
            lock.words()
        )
    })
}

/// Takes the lock again through its descriptor (back at its number).
pub fn restore(lock: &Lock) -> Result<(), String> {
    // SAFETY: locking calls on the program's descriptor, our struct flock.
    let r = unsafe {
        match lock.class {
            FLOCK => libc::flock(
                lock.fd,
                if lock.write {
                    libc::LOCK_EX
                } else {
                    libc::LOCK_SH
                } | libc::LOCK_NB,
            ),
            POSIX => libc::fcntl(lock.fd, libc::F_SETLK, &lock.flock(lock.lock_type())),
            _ => libc::fcntl(lock.fd, libc::F_OFD_SETLK, &lock.flock(lock.lock_type())),
        }
    };
    if r != 0 {
        return Err(format!(
            "fd {}: {} cannot be taken again: {}",
            lock.fd,
            lock.words(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kstate::objects::{Object, Objects};
    use std::os::fd::AsRawFd;

    #[test]
    fn fdinfo_lock_lines_parse() {
        assert_eq!(
            parse(b"\t1: FLOCK  ADVISORY  WRITE 28086 fe:00:10011160 0 EOF"),
            Some((FLOCK, true, 0, TO_EOF))
        );
        assert_eq!(
            parse(b"\t2: POSIX  ADVISORY  READ 28086 fe:00:10011171 100 199"),
            Some((POSIX, false, 100, 199))
        );
        assert_eq!(
            parse(b"\t1: OFDLCK ADVISORY  WRITE -1 fe:00:10011204 0 EOF"),
            Some((OFD, true, 0, TO_EOF))
        );
        assert_eq!(
            parse(b"\t1: LEASE  ACTIVE    READ 28086 fe:00:1 0 EOF").map(|x| x.0),
            Some(0)
        );
    }

    #[test]
    fn locks_are_captured_conflicts_seen_and_taken_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let f = std::fs::File::create(&path).unwrap();
        let fd = f.as_raw_fd();
        let lock = Lock {
            fd,
            class: OFD,
            write: true,
            start: 10,
            end: 19,
        };
        restore(&lock).unwrap();
        let out = crate::kstate::captured(|e, bufs| {
            capture(e, bufs, &|x| x != fd)?;
            crate::kstate::objects::end(e)?;
            Ok(())
        });
        let objs = Objects::decode(&mut Decoder::new(&out)).unwrap();
        assert_eq!(objs.items, vec![Object::Lock(lock)]);
        let p = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
        // Another description's view: the OFD lock conflicts.
        let c = conflict(&lock, p).expect("a conflict");
        assert!(c.contains("its OFD write lock on bytes 10-19"), "{c}");
        assert!(conflict(
            &Lock {
                start: 20,
                end: 29,
                ..lock
            },
            p
        )
        .is_none());
        drop(f);
        assert!(conflict(&lock, p).is_none(), "closed: released");
        assert!(lock.check().is_ok());
        assert!(Lock { end: 5, ..lock }.check().is_err());
        assert!(Lock { class: 9, ..lock }.check().is_err());
    }
}
