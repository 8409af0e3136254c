//! The KERNEL record's object list (format 1.8): every kind of kernel
//! object added from 1.8 on is one tagged entry here, so that a new kind
//! is a new tag in its own file instead of a new minor version and a new
//! field at the end of KERNEL.
//!
//! An entry is `u16 kind, u16 flags, u32 length, payload`; the list ends
//! with kind 0 (`END`). A reader that meets a kind it does not know
//! refuses the image, naming the kind, unless the entry's flags say it
//! may be skipped ([`SKIPPABLE`]: facts shown by `inspect` that a restart
//! does not act on). Kinds are numbered by topic (see [`Kind`] and
//! docs/IMAGE_FORMAT.md), never reused.
//!
//! The writing half ([`entry`], [`end`]) runs while the program's threads
//! are suspended: fixed buffers only, never an allocation. Decoding,
//! checking and restoring are ordinary Rust.

use crate::image::codec::{CodecError, Decoder, Encoder};

/// Entry flag: a reader that does not know the kind may skip the entry.
pub const SKIPPABLE: u16 = 1;

/// The kinds of entries. Ranges by topic, so that kinds added in
/// parallel never collide: 0x0001-0x00ff general, 0x0100 memory objects,
/// 0x0200 files and pipes, 0x0300 sockets, 0x0400 timers and process
/// state, 0x0500 process trees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Kind {
    /// Ends the list.
    End = 0,
    /// Something the checkpoint saw and cannot bring back, in words
    /// ([`NotRestorable`]).
    NotRestorable = 1,
    /// A memfd descriptor ([`super::memfd::Memfd`]; kmem).
    Memfd = 0x0100,
    /// An attached System V segment ([`super::sysvshm::SysvShm`]; kmem).
    SysvShm = 0x0101,
    /// Mapping flags and madvise state ([`super::vmflags::MappingFlags`]; kmem).
    MappingFlags = 0x0102,
}

impl Kind {
    pub fn from_u16(v: u16) -> Option<Kind> {
        [
            Kind::End,
            Kind::NotRestorable,
            Kind::Memfd,
            Kind::SysvShm,
            Kind::MappingFlags,
        ]
        .into_iter()
        .find(|k| *k as u16 == v)
    }
}

/// Writes one entry whose payload `f` encodes. No allocation.
pub fn entry<E: From<CodecError>>(
    e: &mut Encoder,
    kind: Kind,
    flags: u16,
    f: impl FnOnce(&mut Encoder) -> Result<(), E>,
) -> Result<(), E> {
    e.u16(kind as u16)?;
    e.u16(flags)?;
    let at = e.reserve_u32()?;
    let start = e.len();
    f(e)?;
    e.patch_u32(at, (e.len() - start) as u32);
    Ok(())
}

/// Ends the list. No allocation.
pub fn end(e: &mut Encoder) -> Result<(), CodecError> {
    e.u16(Kind::End as u16)?;
    e.u16(0)?;
    e.u32(0)
}

/// Something the checkpoint saw and cannot bring back: the descriptor it
/// concerns (-1 for none), a short name of its kind (`socket`, `pipe`...:
/// what `--unrestorable` names) and a sentence for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotRestorable {
    pub fd: i32,
    pub kind: String,
    pub text: String,
}

impl NotRestorable {
    /// Writes one entry straight from the capture, and notes it for the
    /// checkpoint's log line (`unrestorable`). No allocation.
    pub fn capture(e: &mut Encoder, fd: i32, kind: &str, text: &[u8]) -> Result<(), CodecError> {
        super::unrestorable::note_text(fd, text);
        entry(e, Kind::NotRestorable, 0, |e| {
            e.i32(fd)?;
            e.bytes(kind.as_bytes())?;
            e.bytes(text)
        })
    }

    fn encode(&self, e: &mut Encoder) -> Result<(), CodecError> {
        e.i32(self.fd)?;
        e.bytes(self.kind.as_bytes())?;
        e.bytes(self.text.as_bytes())
    }

    fn decode(d: &mut Decoder) -> Result<Self, CodecError> {
        Ok(NotRestorable {
            fd: d.i32()?,
            kind: String::from_utf8_lossy(d.bytes()?).into_owned(),
            text: String::from_utf8_lossy(d.bytes()?).into_owned(),
        })
    }
}

/// One decoded entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    NotRestorable(NotRestorable),
    Memfd(super::memfd::Memfd),
    SysvShm(super::sysvshm::SysvShm),
    MappingFlags(super::vmflags::MappingFlags),
    /// A skippable entry of a kind this build does not know.
    Unknown {
        kind: u16,
        len: usize,
    },
}

/// When in the restart an object is made again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Before any descriptor is reopened (limits, process attributes).
    Early,
    /// With the descriptors: the object takes its number.
    Descriptors,
    /// Once every descriptor is back (registrations, locks, owners).
    Late,
}

/// The object list of a KERNEL record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Objects {
    pub items: Vec<Object>,
}

impl Objects {
    pub fn encode(&self, e: &mut Encoder) -> Result<(), CodecError> {
        for o in &self.items {
            match o {
                Object::NotRestorable(x) => entry(e, Kind::NotRestorable, 0, |e| x.encode(e))?,
                Object::Memfd(x) => entry(e, Kind::Memfd, 0, |e| x.encode(e))?,
                Object::SysvShm(x) => entry(e, Kind::SysvShm, 0, |e| x.encode(e))?,
                Object::MappingFlags(x) => entry(e, Kind::MappingFlags, 0, |e| x.encode(e))?,
                // Nothing to write: this build never knew what it held.
                Object::Unknown { .. } => {}
            }
        }
        end(e)
    }

    /// Decodes entries up to and including the END entry. Each payload
    /// must be consumed exactly by its kind's decoder.
    pub fn decode(d: &mut Decoder) -> Result<Self, CodecError> {
        let mut items = Vec::new();
        loop {
            let kind = d.u16()?;
            let flags = d.u16()?;
            let len = d.u32()? as usize;
            if kind == Kind::End as u16 {
                if len != 0 {
                    return Err(CodecError::BadValue {
                        field: "length of the END entry of the object list",
                        value: len as u64,
                    });
                }
                return Ok(Objects { items });
            }
            if flags & !SKIPPABLE != 0 {
                return Err(CodecError::BadValue {
                    field: "flags of a kernel object",
                    value: flags as u64,
                });
            }
            if len > d.remaining() {
                return Err(CodecError::BadCount {
                    at: d.position(),
                    count: len as u64,
                    left: d.remaining(),
                });
            }
            let mut p = Decoder::new(d.take(len)?);
            let item = match Kind::from_u16(kind) {
                Some(Kind::NotRestorable) => Object::NotRestorable(NotRestorable::decode(&mut p)?),
                Some(Kind::Memfd) => Object::Memfd(super::memfd::Memfd::decode(&mut p)?),
                Some(Kind::SysvShm) => Object::SysvShm(super::sysvshm::SysvShm::decode(&mut p)?),
                Some(Kind::MappingFlags) => {
                    Object::MappingFlags(super::vmflags::MappingFlags::decode(&mut p)?)
                }
                Some(Kind::End) | None if flags & SKIPPABLE != 0 => {
                    p.take(len)?;
                    Object::Unknown { kind, len }
                }
                _ => {
                    return Err(CodecError::BadValue {
                        field: "kind of a kernel object (written by a newer selfckpt? restart it with the selfckpt that wrote it)",
                        value: kind as u64,
                    })
                }
            };
            p.finish()?;
            items.push(item);
        }
    }

    /// The descriptors the objects make anew at restart (not reopened by
    /// path).
    pub fn fds(&self) -> Vec<i32> {
        self.items
            .iter()
            .filter_map(|o| match o {
                // Put at their numbers by `restore::shared`.
                Object::Memfd(x) => Some(x.fd),
                _ => None,
            })
            .collect()
    }

    /// The recorded mapping flags (None: the image has none, written
    /// before they were recorded).
    pub fn mapping_flags(&self) -> Option<&super::vmflags::MappingFlags> {
        self.items.iter().find_map(|o| match o {
            Object::MappingFlags(x) => Some(x),
            _ => None,
        })
    }

    /// The System V segments (made again with the memory by
    /// `restore::shared`).
    pub fn sysv_segments(&self) -> impl Iterator<Item = &super::sysvshm::SysvShm> {
        self.items.iter().filter_map(|o| match o {
            Object::SysvShm(x) => Some(x),
            _ => None,
        })
    }

    /// The memfd descriptors (made again with the memory by
    /// `restore::shared`).
    pub fn memfds(&self) -> impl Iterator<Item = &super::memfd::Memfd> {
        self.items.iter().filter_map(|o| match o {
            Object::Memfd(x) => Some(x),
            _ => None,
        })
    }

    /// What the checkpoint said cannot come back, one sentence each,
    /// with the kind `--unrestorable` names.
    pub fn problems(&self) -> Vec<super::Problem> {
        self.items
            .iter()
            .filter_map(|o| match o {
                Object::NotRestorable(x) => Some(super::Problem::new(&x.kind, Self::sentence(x))),
                _ => None,
            })
            .collect()
    }

    fn sentence(x: &NotRestorable) -> String {
        if x.fd >= 0 {
            format!("fd {} {}", x.fd, x.text)
        } else {
            x.text.clone()
        }
    }

    /// Lines of `inspect`, one per object (problems are listed apart).
    pub fn describe(&self) -> Vec<String> {
        self.items
            .iter()
            .filter_map(|o| match o {
                Object::Unknown { kind, len } => Some(format!(
                    "an object of kind {kind:#06x} ({len} bytes) this selfckpt does not know; a restart leaves it out"
                )),
                Object::NotRestorable(_) => None,
                Object::Memfd(x) => Some(x.describe()),
                Object::SysvShm(x) => Some(x.describe()),
                Object::MappingFlags(x) => Some(x.describe()),
            })
            .collect()
    }

    /// `inspect --json`: every object.
    pub fn json(&self) -> Vec<serde_json::Value> {
        self.items
            .iter()
            .map(|o| match o {
                Object::NotRestorable(x) => serde_json::json!({
                    "kind": "not_restorable", "fd": x.fd, "what": x.kind, "text": x.text,
                }),
                Object::Unknown { kind, len } => serde_json::json!({
                    "kind": format!("{kind:#06x}"), "unknown": true, "bytes": len,
                }),
                Object::Memfd(x) => x.json(),
                Object::SysvShm(x) => x.json(),
                Object::MappingFlags(x) => x.json(),
            })
            .collect()
    }

    /// Values a kernel can have, checked before a restart acts on them.
    pub fn check(&self) -> Result<(), String> {
        for o in &self.items {
            if let Object::NotRestorable(x) = o {
                if x.fd < -1 {
                    return Err(format!("a not-restorable object names fd {}", x.fd));
                }
            }
            if let Object::Memfd(x) = o {
                x.check()?;
                if self.memfds().filter(|m| m.fd == x.fd).count() > 1 {
                    return Err(format!("two memfd entries for fd {}", x.fd));
                }
            }
            if let Object::MappingFlags(x) = o {
                x.check()?;
            }
            if let Object::SysvShm(x) = o {
                x.check()?;
                if self.sysv_segments().filter(|m| m.shmid == x.shmid).count() > 1 {
                    return Err(format!("two entries for System V segment {}", x.shmid));
                }
            }
        }
        Ok(())
    }

    /// Makes the objects of `stage` again; returns what failed, one line
    /// each. Each kind is made in one stage.
    pub fn restore(&self, stage: Stage) -> Vec<String> {
        self.items
            .iter()
            .filter_map(|o| match o {
                Object::MappingFlags(x) if stage == Stage::Early => x.restore(),
                // The flags of the mappings went with the staging.
                Object::MappingFlags(_) => None,
                // Named at checkpoint time: the restart refused it, or was
                // told to go on with its stand-in.
                Object::NotRestorable(_) => None,
                Object::Unknown { .. } => None,
                // Made with the memory (`restore::shared`).
                Object::Memfd(_) | Object::SysvShm(_) => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(o: &Objects) -> Vec<u8> {
        let mut buf = vec![0u8; 4096];
        let mut e = Encoder::new(&mut buf);
        o.encode(&mut e).unwrap();
        let n = e.len();
        buf.truncate(n);
        buf
    }

    #[test]
    fn a_list_round_trips() {
        let o = Objects {
            items: vec![Object::NotRestorable(NotRestorable {
                fd: 7,
                kind: "socket".into(),
                text: "socket TCP 10.0.0.2:5432 (peer outside the process)".into(),
            })],
        };
        let b = encoded(&o);
        let mut d = Decoder::new(&b);
        assert_eq!(Objects::decode(&mut d).unwrap(), o);
        d.finish().unwrap();
        assert_eq!(
            o.problems(),
            vec![crate::kstate::Problem::new(
                "socket",
                "fd 7 socket TCP 10.0.0.2:5432 (peer outside the process)".to_string()
            )]
        );
    }

    #[test]
    fn the_capture_half_writes_what_the_decoder_reads() {
        let mut buf = vec![0u8; 256];
        let mut e = Encoder::new(&mut buf);
        NotRestorable::capture(&mut e, -1, "timer", b"a timer").unwrap();
        end(&mut e).unwrap();
        let n = e.len();
        let mut d = Decoder::new(&buf[..n]);
        let o = Objects::decode(&mut d).unwrap();
        assert_eq!(
            o.problems(),
            vec![crate::kstate::Problem::new("timer", "a timer".into())]
        );
    }

    /// An entry: kind, flags, payload.
    fn raw(kind: u16, flags: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = kind.to_le_bytes().to_vec();
        v.extend(flags.to_le_bytes());
        v.extend((payload.len() as u32).to_le_bytes());
        v.extend(payload);
        v
    }

    #[test]
    fn an_unknown_kind_is_refused_unless_skippable() {
        let mut b = raw(0x7777, 0, b"abc");
        b.extend(raw(0, 0, b""));
        let err = Objects::decode(&mut Decoder::new(&b)).unwrap_err();
        assert!(err.to_string().contains("newer selfckpt"), "{err}");
        assert!(err.to_string().contains(&0x7777.to_string()), "{err}");

        let mut b = raw(0x7777, SKIPPABLE, b"abc");
        b.extend(raw(0, 0, b""));
        let o = Objects::decode(&mut Decoder::new(&b)).unwrap();
        assert_eq!(
            o.items,
            vec![Object::Unknown {
                kind: 0x7777,
                len: 3
            }]
        );
        assert!(o.problems().is_empty());
        assert!(o.describe()[0].contains("0x7777"));
    }

    #[test]
    fn damaged_lists_are_errors_not_panics() {
        // A length beyond the record, a payload its decoder does not
        // consume, a missing END, a non-empty END.
        let mut long = raw(1, 0, b"");
        long[4..8].copy_from_slice(&1000u32.to_le_bytes());
        let mut extra = Vec::new();
        {
            let mut buf = vec![0u8; 256];
            let mut e = Encoder::new(&mut buf);
            NotRestorable::capture(&mut e, 1, "x", b"y").unwrap();
            let n = e.len();
            extra.extend(&buf[..n]);
        }
        let grown = (extra.len() - 8 + 1) as u32;
        extra[4..8].copy_from_slice(&grown.to_le_bytes());
        extra.push(0);
        extra.extend(raw(0, 0, b""));
        let no_end = raw(0x7777, SKIPPABLE, b"");
        let bad_end = raw(0, 0, b"z");
        let mut bad_flags = raw(0x7777, 2 | SKIPPABLE, b"");
        bad_flags.extend(raw(0, 0, b""));
        for b in [long, extra, no_end, bad_end, bad_flags] {
            assert!(Objects::decode(&mut Decoder::new(&b)).is_err(), "{b:?}");
        }
    }
}
