//! System V semaphore sets (object kind 0x0103) and message queues
//! (0x0104) the process uses: the set's id, key, mode and every
//! semaphore's value; the queue's id, key, mode, byte limit and every
//! queued message (type and bytes, in queue order).
//!
//! Nothing in `/proc/self` shows which sets and queues a process uses:
//! the interposed `semget`/`msgget` (and `semop`, `semtimedop`, `msgsnd`,
//! `msgrcv`: ids inherited through `fork` or passed in some other way)
//! note each id in a fixed table of atomics ([`note`]; a forked child has
//! a copy with its memory). More than [`MAX_IDS`] ids: the later ones are
//! not noted, and the capture names that (NotRestorable `sysv_ipc`).
//!
//! Capture ([`capture`]) runs while the program's threads are suspended:
//! `semctl(IPC_STAT, GETALL)`, `msgctl(IPC_STAT)`, each message read
//! without removing it (`msgrcv` with `MSG_COPY`, Linux), written straight
//! into the image's buffer; never an allocation. A noted id that no
//! longer names an object is left out (the program's id dangles in an
//! uninterrupted run too). A message larger than the capture's budget, or
//! a kernel without `MSG_COPY`, is a NotRestorable entry naming the queue.
//!
//! Restore ([`restore_all`], the restarter, ordinary Rust, before the
//! program runs): a set or queue with the image's id, key and shape that
//! is still there and this user's (the killed program's) is reused: its
//! semaphores are set to the image's values (SETALL), the queue drained
//! and refilled in order. Otherwise it is made again with its key and,
//! through `/proc/sys/kernel/sem_next_id` / `msg_next_id`, its id. An id
//! or key held by another object is refused in words, never touched. In a
//! tree the restart of the tree makes them before the members fork, each
//! id once (`restore::tree`).
//!
//! Lost, and documented: SEM_UNDO adjustments (the kernel shows none):
//! the restarted process has none pending, so values it changed with
//! SEM_UNDO stay as they were at the checkpoint when it exits.

use super::objects::{self, Kind, NotRestorable};
use super::unrestorable::Words;
use super::{CaptureBuffers, KstateError};
use crate::image::codec::{CodecError, Decoder, Encoder};
use core::sync::atomic::{AtomicI32, AtomicU64, Ordering};

/// Most ids the table notes.
pub const MAX_IDS: usize = 64;
/// Each slot: `kind << 32 | id` (0: free).
static IDS: [AtomicU64; MAX_IDS] = [const { AtomicU64::new(0) }; MAX_IDS];
static KEYS: [AtomicI32; MAX_IDS] = [const { AtomicI32::new(0) }; MAX_IDS];
/// Whether an id did not fit in the table.
static OVERFLOW: AtomicI32 = AtomicI32::new(0);

/// Which kind of object an id names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpcKind {
    Sem = 1,
    Msg = 2,
}

/// Notes that the process uses `id` (of kind `kind`, made with `key`
/// when known). Async-signal-safe: atomics only, no allocation.
pub fn note(kind: IpcKind, id: i32, key: Option<i32>) {
    if id < 0 {
        return;
    }
    let packed = ((kind as u64) << 32) | id as u32 as u64;
    for (i, slot) in IDS.iter().enumerate() {
        let cur = slot.load(Ordering::Acquire);
        let claimed = cur == packed
            || (cur == 0
                && match slot.compare_exchange(0, packed, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => true,
                    Err(now) => now == packed,
                });
        if claimed {
            if let Some(k) = key {
                KEYS[i].store(k, Ordering::Release);
            }
            return;
        }
    }
    OVERFLOW.store(1, Ordering::Release);
}

/// The ids noted of kind `kind`, in the order they were first noted.
fn noted(kind: IpcKind) -> impl Iterator<Item = i32> {
    IDS.iter().filter_map(move |s| {
        let v = s.load(Ordering::Acquire);
        (v != 0 && (v >> 32) == kind as u64).then_some(v as u32 as i32)
    })
}

/// Linux's `MSG_COPY`: `msgrcv` copies the message at an index, leaves it.
const MSG_COPY: i32 = 0o40000;
/// Most bytes of one message the capture reads (the kernel's `msgmax`
/// is 8192 by default).
pub const MSG_BUDGET: usize = 65536;
/// Mode bits kept: permissions.
const PERM: u32 = 0o777;

/// A semaphore set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysvSem {
    pub semid: i32,
    pub key: i32,
    pub mode: u32,
    pub values: Vec<u16>,
}

impl SysvSem {
    pub fn encode(&self, e: &mut Encoder) -> Result<(), CodecError> {
        e.i32(self.semid)?;
        e.i32(self.key)?;
        e.u32(self.mode)?;
        e.u32(self.values.len() as u32)?;
        self.values.iter().try_for_each(|v| e.u16(*v))
    }

    pub fn decode(d: &mut Decoder) -> Result<Self, CodecError> {
        let semid = d.i32()?;
        let key = d.i32()?;
        let mode = d.u32()?;
        let n = d.count(2)?;
        let values = (0..n).map(|_| d.u16()).collect::<Result<_, _>>()?;
        Ok(SysvSem {
            semid,
            key,
            mode,
            values,
        })
    }

    pub fn check(&self) -> Result<(), String> {
        if self.semid < 0 {
            return Err(format!(
                "System V semaphore set {}: a negative id",
                self.semid
            ));
        }
        if self.values.is_empty() {
            return Err(format!(
                "System V semaphore set {}: no semaphores",
                self.semid
            ));
        }
        if self.mode & !PERM != 0 {
            return Err(format!(
                "System V semaphore set {}: unknown mode bits {:#o}",
                self.semid, self.mode
            ));
        }
        Ok(())
    }

    pub fn describe(&self) -> String {
        format!(
            "System V semaphore set {} key {:#x} mode {:o}: values {:?} (SEM_UNDO adjustments \
             are not seen: none is pending after a restart)",
            self.semid, self.key, self.mode, self.values
        )
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": "sysv_sem", "semid": self.semid, "key": self.key, "mode": self.mode,
            "values": self.values,
        })
    }
}

/// One queued message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub mtype: i64,
    pub text: Vec<u8>,
}

/// A message queue and its messages, in queue order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysvMsg {
    pub msqid: i32,
    pub key: i32,
    pub mode: u32,
    pub qbytes: u64,
    pub messages: Vec<Message>,
}

impl SysvMsg {
    /// Each message is one byte string: its type (i64, little-endian),
    /// then its text: the shape `msgrcv` writes, so the capture reads
    /// straight into the image.
    pub fn encode(&self, e: &mut Encoder) -> Result<(), CodecError> {
        e.i32(self.msqid)?;
        e.i32(self.key)?;
        e.u32(self.mode)?;
        e.u64(self.qbytes)?;
        e.u32(self.messages.len() as u32)?;
        for m in &self.messages {
            let mut b = m.mtype.to_le_bytes().to_vec();
            b.extend_from_slice(&m.text);
            e.bytes(&b)?;
        }
        Ok(())
    }

    pub fn decode(d: &mut Decoder) -> Result<Self, CodecError> {
        let msqid = d.i32()?;
        let key = d.i32()?;
        let mode = d.u32()?;
        let qbytes = d.u64()?;
        let n = d.count(12)?;
        let mut messages = Vec::with_capacity(n);
        for _ in 0..n {
            let b = d.bytes()?;
            if b.len() < 8 {
                return Err(CodecError::BadValue {
                    field: "length of a System V message",
                    value: b.len() as u64,
                });
            }
            let mut t = [0u8; 8];
            t.copy_from_slice(&b[..8]);
            messages.push(Message {
                mtype: i64::from_le_bytes(t),
                text: b[8..].to_vec(),
            });
        }
        Ok(SysvMsg {
            msqid,
            key,
            mode,
            qbytes,
            messages,
        })
    }

    pub fn check(&self) -> Result<(), String> {
        let what = format!("System V message queue {}", self.msqid);
        if self.msqid < 0 {
            return Err(format!("{what}: a negative id"));
        }
        if self.mode & !PERM != 0 {
            return Err(format!("{what}: unknown mode bits {:#o}", self.mode));
        }
        if let Some(m) = self.messages.iter().find(|m| m.mtype <= 0) {
            return Err(format!("{what}: a message of type {}", m.mtype));
        }
        Ok(())
    }

    pub fn describe(&self) -> String {
        let bytes: usize = self.messages.iter().map(|m| m.text.len()).sum();
        format!(
            "System V message queue {} key {:#x} mode {:o}: {} messages, {bytes} bytes",
            self.msqid,
            self.key,
            self.mode,
            self.messages.len()
        )
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": "sysv_msg", "msqid": self.msqid, "key": self.key, "mode": self.mode,
            "qbytes": self.qbytes, "messages": self.messages.len(),
            "types": self.messages.iter().map(|m| m.mtype).collect::<Vec<_>>(),
        })
    }
}

/// Writes a NotRestorable entry `head` `id` `tail`. No allocation.
fn refuse(e: &mut Encoder, head: &[u8], id: i32, tail: &[u8]) -> Result<(), CodecError> {
    let mut words = [0u8; 200];
    let mut w = Words::new(&mut words);
    w.push(head);
    w.push_u64(id as u32 as u64);
    w.push(tail);
    let len = w.len();
    NotRestorable::capture(e, -1, "sysv_ipc", &words[..len])
}

/// Writes one entry per noted set and queue still there. No allocation.
pub fn capture(e: &mut Encoder, bufs: &mut CaptureBuffers) -> Result<(), KstateError> {
    if OVERFLOW.load(Ordering::Acquire) != 0 {
        NotRestorable::capture(
            e,
            -1,
            "sysv_ipc",
            b"more than 64 System V semaphore sets and message queues used: the later ones are \
              not known",
        )?;
    }
    for semid in noted(IpcKind::Sem) {
        capture_sem(e, bufs, semid)?;
    }
    for msqid in noted(IpcKind::Msg) {
        capture_msg(e, msqid)?;
    }
    Ok(())
}

fn capture_sem(e: &mut Encoder, bufs: &mut CaptureBuffers, semid: i32) -> Result<(), KstateError> {
    // SAFETY: semid_ds is plain old data; semctl fills it.
    let mut ds: libc::semid_ds = unsafe { core::mem::zeroed() };
    // SAFETY: IPC_STAT into a valid out-pointer.
    if unsafe { libc::semctl(semid, 0, libc::IPC_STAT, &mut ds as *mut libc::semid_ds) } != 0 {
        // Removed (or never valid): nothing the program can use.
        return Ok(());
    }
    let n = ds.sem_nsems as usize;
    // SAFETY: u16 has no invalid bit patterns; the slice is the text
    // buffer's aligned middle.
    let (_, vals, _) = unsafe { bufs.text.align_to_mut::<u16>() };
    if n == 0 || n > vals.len() {
        refuse(
            e,
            b"System V semaphore set ",
            semid,
            b": too many semaphores to capture",
        )?;
        return Ok(());
    }
    // SAFETY: GETALL writes nsems values into a buffer that holds them.
    if unsafe { libc::semctl(semid, 0, libc::GETALL, vals.as_mut_ptr()) } != 0 {
        refuse(
            e,
            b"System V semaphore set ",
            semid,
            b": its values cannot be read (GETALL)",
        )?;
        return Ok(());
    }
    objects::entry(e, Kind::SysvSem, 0, |e| -> Result<(), CodecError> {
        e.i32(semid)?;
        e.i32(ds.sem_perm.__key)?;
        e.u32(ds.sem_perm.mode as u32 & PERM)?;
        e.u32(n as u32)?;
        vals[..n].iter().try_for_each(|v| e.u16(*v))
    })?;
    Ok(())
}

/// Why a queue's capture stopped.
enum MsgStop {
    Codec(CodecError),
    TooLarge,
    Unreadable(i32),
}

impl From<CodecError> for MsgStop {
    fn from(c: CodecError) -> Self {
        MsgStop::Codec(c)
    }
}

fn capture_msg(e: &mut Encoder, msqid: i32) -> Result<(), KstateError> {
    // SAFETY: msqid_ds is plain old data; msgctl fills it.
    let mut ds: libc::msqid_ds = unsafe { core::mem::zeroed() };
    // SAFETY: IPC_STAT into a valid out-pointer.
    if unsafe { libc::msgctl(msqid, libc::IPC_STAT, &mut ds) } != 0 {
        return Ok(());
    }
    let start = e.len();
    let qnum = ds.msg_qnum as u64;
    let got = objects::entry(e, Kind::SysvMsg, 0, |e| -> Result<(), MsgStop> {
        e.i32(msqid)?;
        e.i32(ds.msg_perm.__key)?;
        e.u32(ds.msg_perm.mode as u32 & PERM)?;
        e.u64(ds.msg_qbytes as u64)?;
        e.u32(qnum as u32)?;
        for i in 0..qnum {
            let max = (8 + MSG_BUDGET).min(e.remaining().saturating_sub(64));
            if max < 8 {
                return Err(MsgStop::TooLarge);
            }
            e.bytes_with(max, |buf| {
                // SAFETY: copies message `i` (type, then at most max - 8
                // bytes of text) into `buf`, which holds max bytes.
                let n = unsafe {
                    crate::interpose::next::msgrcv(
                        msqid,
                        buf.as_mut_ptr().cast(),
                        max - 8,
                        i as libc::c_long,
                        libc::IPC_NOWAIT | MSG_COPY,
                    )
                };
                if n < 0 {
                    // SAFETY: reading this thread's errno.
                    let errno = unsafe { *libc::__errno_location() };
                    return Err(if errno == libc::E2BIG {
                        MsgStop::TooLarge
                    } else {
                        MsgStop::Unreadable(errno)
                    });
                }
                // The type as the record has it (little-endian).
                let mut t = [0u8; 8];
                t.copy_from_slice(&buf[..8]);
                buf[..8].copy_from_slice(&i64::from_ne_bytes(t).to_le_bytes());
                Ok(8 + n as usize)
            })??;
        }
        Ok(())
    });
    let tail: &[u8] = match got {
        Ok(()) => return Ok(()),
        Err(MsgStop::TooLarge) => {
            b": a queued message is larger than the capture's budget (64 KiB, or the image \
              buffer's room)"
        }
        Err(MsgStop::Unreadable(libc::ENOSYS | libc::EINVAL)) => {
            b": its messages cannot be read without taking them (msgrcv MSG_COPY needs a \
              kernel with CONFIG_CHECKPOINT_RESTORE)"
        }
        Err(MsgStop::Unreadable(_)) => b": its messages cannot be read (msgrcv MSG_COPY)",
        Err(MsgStop::Codec(c)) => {
            e.truncate(start);
            return Err(c.into());
        }
    };
    e.truncate(start);
    refuse(e, b"System V message queue ", msqid, tail)?;
    Ok(())
}

// ---- Restore (the restarter, ordinary Rust) ----

fn os_err(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

/// Asks the kernel to give the next object of `file` the id `id` (-1: any).
fn write_next_id(file: &str, id: i32) -> std::io::Result<()> {
    std::fs::write(file, id.to_string())
}

/// Makes an object with `make` (given `IPC_CREAT | IPC_EXCL | perm`) and
/// the id `want`, through `file` (`sem_next_id` / `msg_next_id`).
fn make_with_id(
    what: &str,
    file: &str,
    want: i32,
    make: impl Fn() -> i32,
    remove: impl Fn(i32),
) -> Result<(), String> {
    let chosen = write_next_id(file, want);
    let id = make();
    let made_err = (id < 0).then(|| os_err(&format!("{what}: cannot make it again")));
    if chosen.is_ok() {
        let _ = write_next_id(file, -1);
    }
    if let Some(e) = made_err {
        return Err(e);
    }
    if id != want {
        remove(id);
        return Err(match chosen {
            Err(e) => format!(
                "{what}: its id cannot be given again ({file}: {e}; it needs root of the IPC \
                 namespace), and the program holds the id"
            ),
            Ok(()) => format!(
                "{what}: its id cannot be given again (the kernel gave {id}: another object \
                 holds the id's slot)"
            ),
        });
    }
    Ok(())
}

fn me() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// Brings the set back: reused with its values set, or made again.
pub fn restore_sem(s: &SysvSem) -> Result<(), String> {
    let what = format!("System V semaphore set {} (key {:#x})", s.semid, s.key);
    let n = s.values.len() as i32;
    // SAFETY: semid_ds is plain old data; IPC_STAT fills it.
    let mut ds: libc::semid_ds = unsafe { core::mem::zeroed() };
    // SAFETY: IPC_STAT into a valid out-pointer.
    let there =
        unsafe { libc::semctl(s.semid, 0, libc::IPC_STAT, &mut ds as *mut libc::semid_ds) } == 0;
    if there {
        if ds.sem_perm.__key != s.key || ds.sem_nsems as i32 != n || ds.sem_perm.uid != me() {
            return Err(format!(
                "{what}: its id is taken by another set (key {:#x}, {} semaphores, owner {}): \
                 not the program's; a restart never touches it",
                ds.sem_perm.__key, ds.sem_nsems, ds.sem_perm.uid
            ));
        }
        if ds.sem_perm.mode as u32 & PERM != s.mode {
            ds.sem_perm.mode = s.mode as _;
            // SAFETY: IPC_SET of our own set from a valid semid_ds.
            unsafe { libc::semctl(s.semid, 0, libc::IPC_SET, &mut ds as *mut libc::semid_ds) };
        }
    } else {
        if s.key != libc::IPC_PRIVATE {
            // SAFETY: semget has no memory preconditions.
            let other = unsafe { libc::semget(s.key, 0, 0) };
            if other >= 0 {
                return Err(format!(
                    "{what}: a semaphore set with its key exists already (id {other}, not the \
                     program's): remove it with `ipcrm -S {:#x}` if it is a leftover",
                    s.key
                ));
            }
        }
        let flags = libc::IPC_CREAT | libc::IPC_EXCL | s.mode as i32;
        make_with_id(
            &what,
            "/proc/sys/kernel/sem_next_id",
            s.semid,
            // SAFETY: semget has no memory preconditions.
            || unsafe { libc::semget(s.key, n, flags) },
            // SAFETY: removes the set just made, used by nobody.
            |id| unsafe {
                libc::semctl(id, 0, libc::IPC_RMID);
            },
        )?;
    }
    let mut vals = s.values.clone();
    // SAFETY: SETALL reads nsems values from a buffer that holds them.
    if unsafe { libc::semctl(s.semid, 0, libc::SETALL, vals.as_mut_ptr()) } != 0 {
        return Err(os_err(&format!("{what}: cannot set its values")));
    }
    Ok(())
}

/// Brings the queue back: reused (drained, refilled), or made again.
pub fn restore_msg(m: &SysvMsg) -> Result<(), String> {
    let what = format!("System V message queue {} (key {:#x})", m.msqid, m.key);
    // SAFETY: msqid_ds is plain old data; IPC_STAT fills it.
    let mut ds: libc::msqid_ds = unsafe { core::mem::zeroed() };
    // SAFETY: IPC_STAT into a valid out-pointer.
    if unsafe { libc::msgctl(m.msqid, libc::IPC_STAT, &mut ds) } == 0 {
        if ds.msg_perm.__key != m.key || ds.msg_perm.uid != me() {
            return Err(format!(
                "{what}: its id is taken by another queue (key {:#x}, owner {}): not the \
                 program's; a restart never touches it",
                ds.msg_perm.__key, ds.msg_perm.uid
            ));
        }
        // Drained: what the killed program left is not the image's.
        let mut buf = vec![0u8; 8 + MSG_BUDGET];
        loop {
            // SAFETY: receives into a buffer of 8 + MSG_BUDGET bytes.
            let n = unsafe {
                libc::msgrcv(
                    m.msqid,
                    buf.as_mut_ptr().cast(),
                    MSG_BUDGET,
                    0,
                    libc::IPC_NOWAIT | libc::MSG_NOERROR,
                )
            };
            if n < 0 {
                break;
            }
        }
    } else {
        if m.key != libc::IPC_PRIVATE {
            // SAFETY: msgget has no memory preconditions.
            let other = unsafe { libc::msgget(m.key, 0) };
            if other >= 0 {
                return Err(format!(
                    "{what}: a message queue with its key exists already (id {other}, not the \
                     program's): remove it with `ipcrm -Q {:#x}` if it is a leftover",
                    m.key
                ));
            }
        }
        let flags = libc::IPC_CREAT | libc::IPC_EXCL | m.mode as i32;
        make_with_id(
            &what,
            "/proc/sys/kernel/msg_next_id",
            m.msqid,
            // SAFETY: msgget has no memory preconditions.
            || unsafe { libc::msgget(m.key, flags) },
            // SAFETY: removes the queue just made, used by nobody.
            |id| unsafe {
                libc::msgctl(id, libc::IPC_RMID, core::ptr::null_mut());
            },
        )?;
    }
    // SAFETY: as above.
    if unsafe { libc::msgctl(m.msqid, libc::IPC_STAT, &mut ds) } != 0 {
        return Err(os_err(&format!("{what}: cannot read it")));
    }
    let need: u64 = m.messages.iter().map(|x| x.text.len() as u64).sum();
    let want = m.qbytes.max(need);
    if ds.msg_perm.mode as u32 & PERM != m.mode || ds.msg_qbytes as u64 != want {
        ds.msg_perm.mode = m.mode as _;
        ds.msg_qbytes = want as _;
        // SAFETY: IPC_SET of our own queue from a valid msqid_ds.
        if unsafe { libc::msgctl(m.msqid, libc::IPC_SET, &mut ds) } != 0 {
            return Err(os_err(&format!(
                "{what}: cannot give it its byte limit {want}"
            )));
        }
    }
    for (i, x) in m.messages.iter().enumerate() {
        let mut b = x.mtype.to_ne_bytes().to_vec();
        b.extend_from_slice(&x.text);
        // SAFETY: sends a message of type then text from a valid buffer.
        if unsafe { libc::msgsnd(m.msqid, b.as_ptr().cast(), x.text.len(), libc::IPC_NOWAIT) } != 0
        {
            return Err(os_err(&format!("{what}: cannot queue message {i} again")));
        }
    }
    Ok(())
}

/// Brings back every set and queue the images name, each id once (the
/// first image naming it: in a tree all were taken while every member
/// was parked, so they agree).
pub fn restore_all<'a>(
    objects: impl IntoIterator<Item = &'a objects::Objects>,
) -> Result<(), String> {
    let mut sems: Vec<i32> = Vec::new();
    let mut msgs: Vec<i32> = Vec::new();
    for o in objects {
        for s in o.sysv_sems() {
            if !sems.contains(&s.semid) {
                sems.push(s.semid);
                restore_sem(s)?;
            }
        }
        for m in o.sysv_msgs() {
            if !msgs.contains(&m.msqid) {
                msgs.push(m.msqid);
                restore_msg(m)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let s = SysvSem {
            semid: 32769,
            key: 0x1234,
            mode: 0o600,
            values: vec![0, 7, 32767],
        };
        let m = SysvMsg {
            msqid: 5,
            key: 0,
            mode: 0o640,
            qbytes: 16384,
            messages: vec![
                Message {
                    mtype: 3,
                    text: b"three".to_vec(),
                },
                Message {
                    mtype: 1,
                    text: Vec::new(),
                },
            ],
        };
        let mut buf = [0u8; 256];
        let mut e = Encoder::new(&mut buf);
        s.encode(&mut e).unwrap();
        let n = e.len();
        let mut d = Decoder::new(&buf[..n]);
        assert_eq!(SysvSem::decode(&mut d).unwrap(), s);
        d.finish().unwrap();
        let mut e = Encoder::new(&mut buf);
        m.encode(&mut e).unwrap();
        let n = e.len();
        let mut d = Decoder::new(&buf[..n]);
        assert_eq!(SysvMsg::decode(&mut d).unwrap(), m);
        d.finish().unwrap();
        s.check().unwrap();
        m.check().unwrap();
        assert!(SysvSem {
            values: vec![],
            ..s
        }
        .check()
        .is_err());
        // A message shorter than its type is refused.
        let mut e = Encoder::new(&mut buf);
        for v in [5i32, 0, 0o600] {
            e.i32(v).unwrap();
        }
        e.u64(1).unwrap();
        e.u32(1).unwrap();
        e.bytes(b"abc").unwrap();
        let n = e.len();
        assert!(SysvMsg::decode(&mut Decoder::new(&buf[..n])).is_err());
    }

    #[test]
    fn noted_sets_and_queues_are_captured_with_values_and_messages() {
        // SAFETY: a test set and queue of our own, removed at the end.
        unsafe {
            let sem = libc::semget(libc::IPC_PRIVATE, 2, libc::IPC_CREAT | 0o600);
            let q = libc::msgget(libc::IPC_PRIVATE, libc::IPC_CREAT | 0o600);
            assert!(sem >= 0 && q >= 0);
            let mut v = [4u16, 9];
            assert_eq!(libc::semctl(sem, 0, libc::SETALL, v.as_mut_ptr()), 0);
            for (t, text) in [(2i64, &b"second"[..]), (1, b"first")] {
                let mut b = t.to_ne_bytes().to_vec();
                b.extend_from_slice(text);
                assert_eq!(libc::msgsnd(q, b.as_ptr().cast(), text.len(), 0), 0);
            }
            note(IpcKind::Sem, sem, Some(0));
            note(IpcKind::Msg, q, None);
            note(IpcKind::Msg, q, None);
            let out = super::super::captured(capture);
            libc::semctl(sem, 0, libc::IPC_RMID);
            libc::msgctl(q, libc::IPC_RMID, core::ptr::null_mut());
            let mut d = Decoder::new(&out);
            let (mut sems, mut msgs, mut texts) = (Vec::new(), Vec::new(), Vec::new());
            while d.remaining() > 0 {
                let kind = d.u16().unwrap();
                d.u16().unwrap();
                let len = d.u32().unwrap() as usize;
                let mut body = Decoder::new(d.take(len).unwrap());
                if kind == Kind::SysvSem as u16 {
                    sems.push(SysvSem::decode(&mut body).unwrap());
                } else if kind == Kind::SysvMsg as u16 {
                    msgs.push(SysvMsg::decode(&mut body).unwrap());
                } else {
                    texts.push(kind);
                }
            }
            let s = sems.iter().find(|s| s.semid == sem).unwrap();
            assert_eq!((s.values.clone(), s.mode), (vec![4, 9], 0o600));
            let m = msgs.iter().find(|m| m.msqid == q).unwrap();
            let got: Vec<_> = m
                .messages
                .iter()
                .map(|x| (x.mtype, x.text.clone()))
                .collect();
            if texts.is_empty() {
                assert_eq!(got, vec![(2, b"second".to_vec()), (1, b"first".to_vec())]);
            }
        }
    }

    #[test]
    fn a_message_larger_than_the_room_is_named_not_restorable() {
        // SAFETY: a test queue of our own, removed at the end.
        unsafe {
            let q = libc::msgget(libc::IPC_PRIVATE, libc::IPC_CREAT | 0o600);
            assert!(q >= 0);
            let mut b = 5i64.to_ne_bytes().to_vec();
            b.extend_from_slice(&[7u8; 1000]);
            assert_eq!(libc::msgsnd(q, b.as_ptr().cast(), 1000, 0), 0);
            let mut buf = [0u8; 400];
            let mut e = Encoder::new(&mut buf);
            let got = capture_msg(&mut e, q);
            objects::end(&mut e).unwrap();
            let n = e.len();
            libc::msgctl(q, libc::IPC_RMID, core::ptr::null_mut());
            got.unwrap();
            let list = objects::Objects::decode(&mut Decoder::new(&buf[..n])).unwrap();
            let [objects::Object::NotRestorable(nr)] = &list.items[..] else {
                panic!("{list:?}");
            };
            assert_eq!(nr.kind, "sysv_ipc");
            let want = format!("System V message queue {q}: a queued message is larger");
            assert!(nr.text.starts_with(&want), "{}", nr.text);
        }
    }
}
