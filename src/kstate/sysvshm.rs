//! System V shared memory segments the process has attached (`shmat`),
//! object kind 0x0101: the segment's id (the inode its mappings show), key,
//! size, mode (with `SHM_DEST`: marked for removal) and how many
//! attachments it had: all processes', the process's own, and those of
//! the other processes of the tree being checkpointed with it. Its pages
//! come with the REGIONS' chunks (a shared object: `restore::shared`
//! makes the segment again, with its id and key, and attaches it at every
//! address; in a tree every member's image holds the pages it maps, all
//! taken while every member was parked, so they agree).
//!
//! A segment whose attachments are all this process's, or this process's
//! and other members' of its tree (`set_tree_peers`: the members that map
//! System V segments, read from `/proc/PID/maps` while they are parked),
//! comes back: in a tree it is made once by the tree restart and every
//! member attaches it. One a process outside the tree is attached to too
//! cannot come back shared with that process (a restart does not
//! coordinate with other processes): it is written as a NotRestorable
//! entry (kind `sysv_shm`, naming the segment) as well; the stand-in
//! `--unrestorable=sysv_shm` accepts is a private segment (`IPC_PRIVATE`)
//! with the contents it had.
//!
//! Capture ([`capture`]) runs while the program's threads are suspended:
//! the maps read in pieces into a fixed buffer, `shmctl`, the peers in a
//! fixed table of atomics; never an allocation.

use super::objects::{self, Kind, NotRestorable};
use super::unrestorable::Words;
use super::{CaptureBuffers, KstateError};
use crate::capture::maps::{for_each_map, for_each_self_map, RegionKind};
use crate::image::codec::{CodecError, Decoder, Encoder};
use core::sync::atomic::{AtomicU32, Ordering};

/// Most tree members a capture looks at (those that map a segment).
pub const MAX_PEERS: usize = 112;
static PEERS: [AtomicU32; MAX_PEERS] = [const { AtomicU32::new(0) }; MAX_PEERS];

/// The other processes of the tree being checkpointed that have System V
/// segments attached (set before the suspend, ordinary Rust; `&[]`
/// outside a tree round). Their attachments do not make a segment
/// "shared with others". More than [`MAX_PEERS`] are cut (their
/// attachments then count as outside ones: refused, never silent).
pub fn set_tree_peers(pids: &[u32]) {
    for (i, slot) in PEERS.iter().enumerate() {
        slot.store(pids.get(i).copied().unwrap_or(0), Ordering::Release);
    }
}

/// Whether the round being taken has tree peers with segments.
pub fn has_tree_peers() -> bool {
    PEERS[0].load(Ordering::Acquire) != 0
}

/// Whether `/proc/PID/maps` (`maps` its text) shows a System V segment.
pub fn maps_show_segments(maps: &[u8]) -> bool {
    maps.split(|&c| c == b'\n')
        .any(|l| crate::capture::maps::parse(l).is_some_and(|e| e.kind == RegionKind::SysvShm))
}

/// `SHM_DEST` in `shm_perm.mode`: removed once the last attachment goes.
pub const SHM_DEST: u32 = 0o1000;
/// Mode bits a segment can have: permissions, `SHM_DEST`, `SHM_LOCKED`.
const KNOWN_MODE: u32 = 0o3777;

/// One attached segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SysvShm {
    pub shmid: i32,
    pub key: i32,
    pub size: u64,
    pub mode: u32,
    /// Attachments of all processes (`shm_nattch`) and the process's own
    /// (its mappings of the segment).
    pub nattch: u64,
    pub own: u32,
    /// Attachments of the other members of the tree checkpointed with
    /// the process (0 outside a tree; absent in images before it).
    pub tree: u32,
}

impl SysvShm {
    pub fn encode(&self, e: &mut Encoder) -> Result<(), CodecError> {
        e.i32(self.shmid)?;
        e.i32(self.key)?;
        e.u64(self.size)?;
        e.u32(self.mode)?;
        e.u64(self.nattch)?;
        e.u32(self.own)?;
        e.u32(self.tree)
    }

    pub fn decode(d: &mut Decoder) -> Result<Self, CodecError> {
        Ok(SysvShm {
            shmid: d.i32()?,
            key: d.i32()?,
            size: d.u64()?,
            mode: d.u32()?,
            nattch: d.u64()?,
            own: d.u32()?,
            tree: if d.remaining() > 0 { d.u32()? } else { 0 },
        })
    }

    /// Whether a process outside the checkpointed tree was attached too.
    pub fn shared_with_others(&self) -> bool {
        self.nattch > self.own as u64 + self.tree as u64
    }

    pub fn check(&self) -> Result<(), String> {
        let what = format!("System V segment {}", self.shmid);
        if self.shmid < 0 {
            return Err(format!("{what}: a negative id"));
        }
        if self.mode & !KNOWN_MODE != 0 {
            return Err(format!("{what}: unknown mode bits {:#o}", self.mode));
        }
        if self.size == 0 || self.size > i64::MAX as u64 {
            return Err(format!("{what}: size {} out of range", self.size));
        }
        if self.own == 0 {
            return Err(format!("{what}: not attached by the process"));
        }
        Ok(())
    }

    pub fn describe(&self) -> String {
        let removed = if self.mode & SHM_DEST != 0 {
            " removed"
        } else {
            ""
        };
        let tree = if self.tree > 0 {
            format!(", {} by the rest of the tree", self.tree)
        } else {
            String::new()
        };
        format!(
            "System V segment {} key {:#x} size {} mode {:o}{removed} attached {} times ({} by \
             the process{tree})",
            self.shmid,
            self.key,
            self.size,
            self.mode & 0o777,
            self.nattch,
            self.own
        )
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": "sysv_shm", "shmid": self.shmid, "key": self.key, "size": self.size,
            "mode": self.mode, "nattch": self.nattch, "own": self.own, "tree": self.tree,
        })
    }
}

/// Writes one entry per segment the process has attached. No allocation.
pub fn capture(e: &mut Encoder, bufs: &mut CaptureBuffers) -> Result<(), KstateError> {
    let mut seen = [0i32; 64];
    let mut own = [0u32; 64];
    let mut n_seen = 0usize;
    let mut more = false;
    // The segments and the process's own attachments (one walk).
    for_each_self_map(bufs.text, |ent| {
        if ent.kind != RegionKind::SysvShm {
            return true;
        }
        let id = ent.inode as i32;
        let at = match seen[..n_seen].iter().position(|&s| s == id) {
            Some(i) => i,
            None if n_seen == seen.len() => {
                more = true;
                return false;
            }
            None => {
                seen[n_seen] = id;
                n_seen += 1;
                n_seen - 1
            }
        };
        own[at] += 1;
        true
    })
    .map_err(|_| KstateError::Parse("/proc/self/maps"))?;
    if more {
        return NotRestorable::capture(
            e,
            -1,
            "sysv_shm",
            b"more than 64 System V shared memory segments attached",
        )
        .map_err(Into::into);
    }
    if n_seen == 0 {
        return Ok(());
    }
    // The tree's other members' attachments (each parked now), one walk
    // of each one's maps. A member whose maps cannot be read counts none.
    let mut tree = [0u32; 64];
    let me = crate::capture::sys::getpid();
    for slot in &PEERS {
        let pid = slot.load(Ordering::Acquire);
        if pid == 0 {
            break;
        }
        if pid == me {
            continue;
        }
        let mut path = crate::capture::sys::PathBuf::<32>::new();
        path.push(b"/proc/").push_u64(pid as u64).push(b"/maps");
        let _ = for_each_map(path.as_cstr_bytes(), bufs.text, |ent| {
            if ent.kind == RegionKind::SysvShm {
                if let Some(i) = seen[..n_seen].iter().position(|&s| s == ent.inode as i32) {
                    tree[i] += 1;
                }
            }
            true
        });
    }
    for i in 0..n_seen {
        let shmid = seen[i];
        // SAFETY: shmid_ds is plain old data; shmctl fills it.
        let mut ds: libc::shmid_ds = unsafe { core::mem::zeroed() };
        // SAFETY: IPC_STAT into a valid out-pointer.
        if unsafe { libc::shmctl(shmid, libc::IPC_STAT, &mut ds) } != 0 {
            let mut words = [0u8; 160];
            let mut w = Words::new(&mut words);
            w.push(b"System V shared memory segment ");
            w.push_u64(shmid as u64);
            w.push(b": its state cannot be read (shmctl IPC_STAT)");
            let len = w.len();
            NotRestorable::capture(e, -1, "sysv_shm", &words[..len])?;
            continue;
        }
        let seg = SysvShm {
            shmid,
            key: ds.shm_perm.__key,
            size: ds.shm_segsz as u64,
            mode: ds.shm_perm.mode as u32 & KNOWN_MODE,
            nattch: ds.shm_nattch as u64,
            own: own[i].max(1),
            tree: tree[i],
        };
        objects::entry(e, Kind::SysvShm, 0, |e| seg.encode(e))?;
        if seg.shared_with_others() {
            let mut words = [0u8; 240];
            let len = seg.outside_sentence(&mut words);
            NotRestorable::capture(e, -1, "sysv_shm", &words[..len])?;
        }
    }
    Ok(())
}

impl SysvShm {
    /// The sentence naming a segment a process outside the tree is
    /// attached to, written into `buf`; its length. No allocation.
    pub fn outside_sentence(&self, buf: &mut [u8]) -> usize {
        let mut w = Words::new(buf);
        w.push(b"System V shared memory segment ");
        w.push_u64(self.shmid as u64);
        w.push(b" (key ");
        w.push_hex(self.key as u32 as u64);
        w.push(b"): another process is attached to it too (");
        w.push_u64(self.nattch);
        w.push(b" attachments, ");
        w.push_u64(self.own as u64);
        w.push(b" by this process");
        if self.tree > 0 {
            w.push(b", ");
            w.push_u64(self.tree as u64);
            w.push(b" by the rest of the tree");
        }
        w.push(b"): a restart cannot share it with that process");
        w.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_one_without_tree_attachments_reads_as_none() {
        let s = SysvShm {
            shmid: 98309,
            key: 0x5eed,
            size: 8192,
            mode: 0o1600,
            nattch: 3,
            own: 1,
            tree: 2,
        };
        let mut buf = [0u8; 64];
        let mut e = Encoder::new(&mut buf);
        s.encode(&mut e).unwrap();
        let n = e.len();
        assert_eq!(SysvShm::decode(&mut Decoder::new(&buf[..n])).unwrap(), s);
        // Images before the field: the record ends after `own`.
        let old = SysvShm::decode(&mut Decoder::new(&buf[..n - 4])).unwrap();
        assert_eq!(old, SysvShm { tree: 0, ..s });
        assert!(old.shared_with_others() && !s.shared_with_others());
        assert!(s
            .describe()
            .ends_with("(1 by the process, 2 by the rest of the tree)"));
    }

    #[test]
    fn peers_attachments_are_counted_as_the_trees() {
        // SAFETY: a test segment of our own, attached here and in a
        // forked child (which only sleeps), removed at the end.
        unsafe {
            let id = libc::shmget(libc::IPC_PRIVATE, 4096, libc::IPC_CREAT | 0o600);
            assert!(id >= 0);
            let a = libc::shmat(id, core::ptr::null(), 0);
            let child = libc::fork();
            if child == 0 {
                libc::sleep(5);
                libc::_exit(0);
            }
            // The child holds its inherited attachment.
            let read = |out: &[u8]| {
                let mut d = Decoder::new(out);
                let mut segs = Vec::new();
                let mut texts = Vec::new();
                while d.remaining() > 0 {
                    let kind = d.u16().unwrap();
                    d.u16().unwrap();
                    let len = d.u32().unwrap() as usize;
                    let body = d.take(len).unwrap();
                    if kind == Kind::SysvShm as u16 {
                        segs.push(SysvShm::decode(&mut Decoder::new(body)).unwrap());
                    } else {
                        texts.push(String::from_utf8_lossy(body).into_owned());
                    }
                }
                (segs, texts)
            };
            set_tree_peers(&[]);
            let (alone, named) = read(&super::super::captured(capture));
            set_tree_peers(&[crate::capture::sys::getpid(), child as u32]);
            let (with_tree, none) = read(&super::super::captured(capture));
            set_tree_peers(&[]);
            libc::kill(child, libc::SIGKILL);
            libc::waitpid(child, core::ptr::null_mut(), 0);
            libc::shmdt(a);
            libc::shmctl(id, libc::IPC_RMID, core::ptr::null_mut());
            let alone = alone.iter().find(|s| s.shmid == id).unwrap();
            assert_eq!((alone.nattch, alone.own, alone.tree), (2, 1, 0));
            assert!(named
                .iter()
                .any(|t| t.contains(&format!("segment {id} (key 0x0): another process"))));
            let both = with_tree.iter().find(|s| s.shmid == id).unwrap();
            assert_eq!((both.nattch, both.own, both.tree), (2, 1, 1));
            assert!(!none.iter().any(|t| t.contains(&format!("segment {id} "))));
        }
    }

    #[test]
    fn an_attached_segment_is_captured_with_its_key_size_and_attachments() {
        // SAFETY: a test segment of our own, attached twice, removed at
        // the end.
        unsafe {
            let id = libc::shmget(libc::IPC_PRIVATE, 3 * 4096, libc::IPC_CREAT | 0o640);
            assert!(id >= 0);
            let a = libc::shmat(id, core::ptr::null(), 0);
            let b = libc::shmat(id, core::ptr::null(), libc::SHM_RDONLY);
            let out = super::super::captured(capture);
            libc::shmdt(a);
            libc::shmdt(b);
            libc::shmctl(id, libc::IPC_RMID, core::ptr::null_mut());
            let mut d = Decoder::new(&out);
            assert_eq!(d.u16().unwrap(), Kind::SysvShm as u16);
            d.u16().unwrap();
            let len = d.u32().unwrap() as usize;
            let s = SysvShm::decode(&mut Decoder::new(d.take(len).unwrap())).unwrap();
            assert_eq!(
                (
                    s.shmid,
                    s.key,
                    s.size,
                    s.mode & 0o777,
                    s.nattch,
                    s.own,
                    s.tree
                ),
                (id, 0, 3 * 4096, 0o640, 2, 2, 0)
            );
            assert!(!s.shared_with_others());
            // Attachments the rest of the tree accounts for are not
            // another process's; any more are.
            let two = SysvShm {
                nattch: 4,
                tree: 2,
                ..s
            };
            assert!(!two.shared_with_others());
            assert!(SysvShm { nattch: 5, ..two }.shared_with_others());
            let mut words = [0u8; 240];
            let n = SysvShm { nattch: 5, ..two }.outside_sentence(&mut words);
            let text = String::from_utf8_lossy(&words[..n]).into_owned();
            assert_eq!(
                text,
                format!(
                    "System V shared memory segment {id} (key 0x0): another process is attached \
                     to it too (5 attachments, 2 by this process, 2 by the rest of the tree): a \
                     restart cannot share it with that process"
                )
            );
            s.check().unwrap();
            assert!(SysvShm { own: 0, ..s }.check().is_err());
            assert!(SysvShm { mode: 0o10000, ..s }.check().is_err());
        }
    }
}
