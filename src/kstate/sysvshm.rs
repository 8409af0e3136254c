//! System V shared memory segments the process has attached (`shmat`),
//! object kind 0x0101: the segment's id (the inode its mappings show), key,
//! size, mode (with `SHM_DEST`: marked for removal) and how many
//! attachments it had, the process's own among them. Its pages come with
//! the REGIONS' chunks (a shared object: `restore::shared` makes the
//! segment again and attaches it at every address).
//!
//! A segment another process is attached to too cannot come back shared
//! with it (a restart does not coordinate with other processes): it is
//! written as a NotRestorable entry (kind `sysv_shm`) as well; the
//! stand-in `--unrestorable=sysv_shm` accepts is a private segment
//! (`IPC_PRIVATE`) with the contents it had.
//!
//! Capture ([`capture`]) runs while the program's threads are suspended:
//! /proc/self/maps read in pieces into a fixed buffer and `shmctl`, never
//! an allocation.

use super::objects::{self, Kind, NotRestorable};
use super::{CaptureBuffers, KstateError};
use crate::capture::maps::{for_each_self_map, RegionKind};
use crate::image::codec::{CodecError, Decoder, Encoder};

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
}

impl SysvShm {
    pub fn encode(&self, e: &mut Encoder) -> Result<(), CodecError> {
        e.i32(self.shmid)?;
        e.i32(self.key)?;
        e.u64(self.size)?;
        e.u32(self.mode)?;
        e.u64(self.nattch)?;
        e.u32(self.own)
    }

    pub fn decode(d: &mut Decoder) -> Result<Self, CodecError> {
        Ok(SysvShm {
            shmid: d.i32()?,
            key: d.i32()?,
            size: d.u64()?,
            mode: d.u32()?,
            nattch: d.u64()?,
            own: d.u32()?,
        })
    }

    /// Whether another process was attached too.
    pub fn shared_with_others(&self) -> bool {
        self.nattch > self.own as u64
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
        format!(
            "System V segment {} key {:#x} size {} mode {:o}{} attached {} times ({} by the process)",
            self.shmid,
            self.key,
            self.size,
            self.mode & 0o777,
            if self.mode & SHM_DEST != 0 {
                " removed"
            } else {
                ""
            },
            self.nattch,
            self.own
        )
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": "sysv_shm", "shmid": self.shmid, "key": self.key, "size": self.size,
            "mode": self.mode, "nattch": self.nattch, "own": self.own,
        })
    }
}

/// Writes one entry per segment the process has attached. No allocation.
pub fn capture(e: &mut Encoder, bufs: &mut CaptureBuffers) -> Result<(), KstateError> {
    let mut seen = [0i32; 64];
    let mut n_seen = 0usize;
    let mut more = false;
    // The segments first (one walk), then each one's own attachments.
    for_each_self_map(bufs.text, |ent| {
        if ent.kind != RegionKind::SysvShm {
            return true;
        }
        let id = ent.inode as i32;
        if !seen[..n_seen].contains(&id) {
            if n_seen == seen.len() {
                more = true;
                return false;
            }
            seen[n_seen] = id;
            n_seen += 1;
        }
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
    for &shmid in &seen[..n_seen] {
        let mut own = 0u32;
        for_each_self_map(bufs.text, |ent| {
            own += u32::from(ent.kind == RegionKind::SysvShm && ent.inode as i32 == shmid);
            true
        })
        .map_err(|_| KstateError::Parse("/proc/self/maps"))?;
        // SAFETY: shmid_ds is plain old data; shmctl fills it.
        let mut ds: libc::shmid_ds = unsafe { core::mem::zeroed() };
        // SAFETY: IPC_STAT into a valid out-pointer.
        if unsafe { libc::shmctl(shmid, libc::IPC_STAT, &mut ds) } != 0 {
            NotRestorable::capture(
                e,
                -1,
                "sysv_shm",
                b"a System V shared memory segment whose state cannot be read (shmctl IPC_STAT)",
            )?;
            continue;
        }
        let seg = SysvShm {
            shmid,
            key: ds.shm_perm.__key,
            size: ds.shm_segsz as u64,
            mode: ds.shm_perm.mode as u32 & KNOWN_MODE,
            nattch: ds.shm_nattch as u64,
            own: own.max(1),
        };
        objects::entry(e, Kind::SysvShm, 0, |e| seg.encode(e))?;
        if seg.shared_with_others() {
            NotRestorable::capture(
                e,
                -1,
                "sysv_shm",
                b"a System V shared memory segment another process is attached to too: a restart cannot share it with that process",
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
                (s.shmid, s.key, s.size, s.mode & 0o777, s.nattch, s.own),
                (id, 0, 3 * 4096, 0o640, 2, 2)
            );
            assert!(!s.shared_with_others());
            s.check().unwrap();
            assert!(SysvShm { own: 0, ..s }.check().is_err());
            assert!(SysvShm { mode: 0o10000, ..s }.check().is_err());
        }
    }
}
