//! The process's credentials (object kind 0x0404): each thread's user and
//! group ids (real, effective, saved, filesystem), capability sets
//! (effective, permitted, inheritable, bounding, ambient) and securebits,
//! and the supplementary groups. All of them are per thread in the kernel
//! (glibc makes `setuid` and `setgroups` process-wide; `capset` and the
//! capability prctls stay per thread), so each thread notes its own.
//!
//! Why it matters: a program that dropped privileges (a root daemon that
//! gave up capabilities, a service started with a reduced bounding set or
//! ambient capabilities) must not get them back because root restarted
//! it, and a restart that cannot give a program its credentials refuses,
//! naming them (kind `credentials`).
//!
//! Capture: each thread, as it parks ([`note_thread`], from
//! `capture::park`), reads its own credentials with system calls into its
//! slot of a static table; the dump writes the table with the groups
//! ([`capture`]). No allocation; the table is in the library's memory, so
//! the restarted process has it.
//!
//! Restore: the restarter checks that it can give them
//! ([`problems_here`]: it must hold every capability the program held,
//! and `CAP_SETUID`/`CAP_SETGID`/`CAP_SETPCAP` where ids, groups, bounding
//! set or securebits differ) and sets the groups ([`restore_groups`]);
//! each restarted thread then takes its own ids and capabilities back from
//! the table before it runs the program again ([`restore_thread`], from
//! `capture::park::restart_entry`: after the restorer's privileged work,
//! exact thread ids and the exe link, is done). A thread left with more
//! privilege than it had ends the process, saying why: never a silent gain.

use super::KstateError;
use crate::capture::park::MAX_THREADS;
use crate::capture::slots::SlotTable;
use crate::image::codec::{CodecError, Decoder, Encoder};
use core::sync::atomic::{AtomicU32, Ordering::*};

/// Most supplementary groups an image holds (the kernel allows 65536; a
/// process with more is named as not restorable).
pub const MAX_GROUPS: usize = 4096;

/// One thread's credentials.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ThreadCreds {
    /// The program's id of the thread (in the table: unused).
    pub tid: u32,
    /// Real, effective, saved and filesystem user id.
    pub uids: [u32; 4],
    /// Real, effective, saved and filesystem group id.
    pub gids: [u32; 4],
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub bounding: u64,
    pub ambient: u64,
    pub securebits: u32,
}

/// The credentials of the process: its groups and each thread's.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Credentials {
    pub groups: Vec<u32>,
    pub threads: Vec<ThreadCreds>,
}

/// Bits of the capability sets this kernel knows (`cap_last_cap`).
static LAST_CAP: AtomicU32 = AtomicU32::new(40);

/// Notes the highest capability this kernel knows (at install).
pub fn note_start() {
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(40)
        .min(63);
    LAST_CAP.store(last, Relaxed);
}

/// Each thread's credentials as it parked (`capture::slots`).
static TABLE: SlotTable<ThreadCreds> = SlotTable::new(ThreadCreds {
    tid: 0,
    uids: [0; 4],
    gids: [0; 4],
    effective: 0,
    permitted: 0,
    inheritable: 0,
    bounding: 0,
    ambient: 0,
    securebits: 0,
});

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_V3: u32 = 0x2008_0522;

/// The calling thread's capability sets (effective, permitted,
/// inheritable). No allocation.
fn capget() -> Option<(u64, u64, u64)> {
    let mut h = CapHeader {
        version: CAP_V3,
        pid: 0,
    };
    let mut d = [CapData::default(); 2];
    // SAFETY: capget writes two CapData for version 3.
    let r = unsafe { libc::syscall(libc::SYS_capget, &mut h, d.as_mut_ptr()) };
    if r != 0 {
        return None;
    }
    let join = |f: fn(&CapData) -> u32| f(&d[0]) as u64 | (f(&d[1]) as u64) << 32;
    Some((
        join(|d| d.effective),
        join(|d| d.permitted),
        join(|d| d.inheritable),
    ))
}

/// Sets the calling thread's capability sets. No allocation.
fn capset(effective: u64, permitted: u64, inheritable: u64) -> bool {
    let mut h = CapHeader {
        version: CAP_V3,
        pid: 0,
    };
    let half = |v: u64, i: u32| (v >> (32 * i)) as u32;
    let d = [0, 1].map(|i| CapData {
        effective: half(effective, i),
        permitted: half(permitted, i),
        inheritable: half(inheritable, i),
    });
    // SAFETY: capset reads two CapData for version 3.
    unsafe { libc::syscall(libc::SYS_capset, &mut h, d.as_ptr()) == 0 }
}

fn prctl(option: libc::c_int, arg: u64) -> libc::c_long {
    // SAFETY: a prctl on the calling thread's credentials with integer
    // arguments only.
    unsafe { libc::syscall(libc::SYS_prctl, option, arg, 0u64, 0u64, 0u64) }
}

/// The calling thread's credentials, by system calls. No allocation.
fn read_self() -> Option<ThreadCreds> {
    let (effective, permitted, inheritable) = capget()?;
    let (mut u, mut g) = ([0u32; 3], [0u32; 3]);
    // SAFETY: getresuid/getresgid write three ids each; setfsuid(-1) and
    // setfsgid(-1) change nothing and return the current value.
    let (fsuid, fsgid) = unsafe {
        let (pu, pg) = (u.as_mut_ptr(), g.as_mut_ptr());
        libc::syscall(libc::SYS_getresuid, pu, pu.add(1), pu.add(2));
        libc::syscall(libc::SYS_getresgid, pg, pg.add(1), pg.add(2));
        (
            libc::syscall(libc::SYS_setfsuid, u32::MAX) as u32,
            libc::syscall(libc::SYS_setfsgid, u32::MAX) as u32,
        )
    };
    let (mut bounding, mut ambient) = (0u64, 0u64);
    // The kernel keeps the ambient set inside the permitted and the
    // inheritable sets: where they share nothing (almost always) it is
    // empty, and the 41 questions are not asked.
    let ambient_possible = permitted & inheritable;
    for c in 0..=LAST_CAP.load(Relaxed) as u64 {
        if prctl(libc::PR_CAPBSET_READ, c) == 1 {
            bounding |= 1 << c;
        }
        if ambient_possible & (1 << c) == 0 {
            continue;
        }
        // SAFETY: as `prctl`.
        let amb = unsafe {
            libc::syscall(
                libc::SYS_prctl,
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_IS_SET as u64,
                c,
                0u64,
                0u64,
            )
        };
        if amb == 1 {
            ambient |= 1 << c;
        }
    }
    let securebits = prctl(libc::PR_GET_SECUREBITS, 0).max(0) as u32;
    Some(ThreadCreds {
        tid: 0,
        uids: [u[0], u[1], u[2], fsuid],
        gids: [g[0], g[1], g[2], fsgid],
        effective,
        permitted,
        inheritable,
        bounding,
        ambient,
        securebits,
    })
}

/// Called by each thread as it parks, in park slot `i`. No allocation.
pub fn note_thread(i: usize) {
    TABLE.note(i, read_self());
}

impl ThreadCreds {
    fn encode(&self, e: &mut Encoder) -> Result<(), CodecError> {
        e.u32(self.tid)?;
        for v in self.uids.iter().chain(&self.gids) {
            e.u32(*v)?;
        }
        for v in [
            self.effective,
            self.permitted,
            self.inheritable,
            self.bounding,
            self.ambient,
        ] {
            e.u64(v)?;
        }
        e.u32(self.securebits)
    }

    fn decode(d: &mut Decoder) -> Result<Self, CodecError> {
        let tid = d.u32()?;
        let mut ids = [0u32; 8];
        for v in &mut ids {
            *v = d.u32()?;
        }
        Ok(ThreadCreds {
            tid,
            uids: [ids[0], ids[1], ids[2], ids[3]],
            gids: [ids[4], ids[5], ids[6], ids[7]],
            effective: d.u64()?,
            permitted: d.u64()?,
            inheritable: d.u64()?,
            bounding: d.u64()?,
            ambient: d.u64()?,
            securebits: d.u32()?,
        })
    }

    /// Everything but the thread id.
    fn same_as(&self, o: &ThreadCreds) -> bool {
        ThreadCreds { tid: 0, ..*self } == ThreadCreds { tid: 0, ..*o }
    }

    /// Whether this holds a capability, id or bit `want` does not have.
    fn holds_more_than(&self, want: &ThreadCreds) -> bool {
        let extra = |now: u64, w: u64| now & !w != 0;
        extra(self.effective, want.effective)
            || extra(self.permitted, want.permitted)
            || extra(self.inheritable, want.inheritable)
            || extra(self.bounding, want.bounding)
            || extra(self.ambient, want.ambient)
            || self.uids != want.uids
            || self.gids != want.gids
    }

    fn describe(&self) -> String {
        format!(
            "uid {}/{}/{}/{} gid {}/{}/{}/{} capabilities eff {:#x} prm {:#x} inh {:#x} bnd {:#x} amb {:#x} securebits {:#x}",
            self.uids[0],
            self.uids[1],
            self.uids[2],
            self.uids[3],
            self.gids[0],
            self.gids[1],
            self.gids[2],
            self.gids[3],
            self.effective,
            self.permitted,
            self.inheritable,
            self.bounding,
            self.ambient,
            self.securebits
        )
    }
}

impl Credentials {
    pub fn encode(&self, e: &mut Encoder) -> Result<(), CodecError> {
        e.u32(self.groups.len() as u32)?;
        for g in &self.groups {
            e.u32(*g)?;
        }
        e.u32(self.threads.len() as u32)?;
        for t in &self.threads {
            t.encode(e)?;
        }
        Ok(())
    }

    pub fn decode(d: &mut Decoder) -> Result<Self, CodecError> {
        let n = d.count(4)?;
        let groups = (0..n).map(|_| d.u32()).collect::<Result<_, _>>()?;
        let n = d.count(72)?;
        let threads = (0..n)
            .map(|_| ThreadCreds::decode(d))
            .collect::<Result<_, _>>()?;
        Ok(Credentials { groups, threads })
    }

    pub fn check(&self) -> Result<(), String> {
        if self.groups.len() > MAX_GROUPS {
            return Err(format!("{} supplementary groups", self.groups.len()));
        }
        if self.threads.len() > MAX_THREADS {
            return Err(format!("credentials of {} threads", self.threads.len()));
        }
        for t in &self.threads {
            if t.effective & !t.permitted != 0 || t.ambient & !(t.permitted & t.inheritable) != 0 {
                return Err(format!(
                    "thread {}: capability sets that cannot be ({})",
                    t.tid,
                    t.describe()
                ));
            }
        }
        Ok(())
    }

    pub fn describe(&self) -> Vec<String> {
        let mut v = vec![format!("credentials: groups {:?}", self.groups)];
        v.extend(
            self.threads
                .iter()
                .map(|t| format!("credentials of thread {}: {}", t.tid, t.describe())),
        );
        v
    }

    pub fn json(&self) -> serde_json::Value {
        let threads: Vec<serde_json::Value> = self
            .threads
            .iter()
            .map(|t| {
                serde_json::json!({
                    "tid": t.tid, "uids": t.uids, "gids": t.gids,
                    "effective": t.effective, "permitted": t.permitted,
                    "inheritable": t.inheritable, "bounding": t.bounding,
                    "ambient": t.ambient, "securebits": t.securebits,
                })
            })
            .collect();
        serde_json::json!({"kind": "credentials", "groups": self.groups, "threads": threads})
    }
}

/// Writes the entry: the groups (the capture thread's: glibc's
/// `setgroups` gives every thread the same) and each parked thread's
/// credentials, in image order. No allocation.
pub fn capture(e: &mut Encoder, bufs: &mut super::CaptureBuffers) -> Result<(), KstateError> {
    let room = (bufs.text.len() / 4).saturating_sub(1).min(MAX_GROUPS);
    // SAFETY: getgroups(0, NULL) only counts.
    let n = unsafe { libc::getgroups(0, core::ptr::null_mut()) };
    if n < 0 {
        return Err(KstateError::Read {
            what: "the supplementary groups",
            errno: crate::capture::sys::Errno::last(),
        });
    }
    let n = n as usize;
    if n > room {
        super::objects::NotRestorable::capture(
            e,
            -1,
            "credentials",
            b"more supplementary groups than an image holds (4096)",
        )?;
        return Ok(());
    }
    // The buffer's first aligned word; `room` keeps one word spare.
    let base = bufs.text.as_mut_ptr();
    let words = base.wrapping_add(base.align_offset(4).min(3)).cast::<u32>();
    // SAFETY: the buffer holds `room` >= n aligned u32s, which getgroups
    // fills; nothing else uses it until this entry is written.
    let groups = unsafe {
        let got = libc::getgroups(n as i32, words);
        core::slice::from_raw_parts(words, got.max(0) as usize)
    };
    let threads = TABLE.parked();
    super::objects::entry(e, super::objects::Kind::Credentials, 0, |e| {
        e.u32(groups.len() as u32)?;
        for g in groups {
            e.u32(*g)?;
        }
        e.u32(threads.clone().count() as u32)?;
        for (tid, c) in threads {
            ThreadCreds { tid, ..c }.encode(e)?;
        }
        Ok::<(), CodecError>(())
    })?;
    Ok(())
}

/// The restarter's own groups.
fn own_groups() -> Vec<u32> {
    // SAFETY: getgroups(0, NULL) returns the count; then fills that many.
    unsafe {
        let n = libc::getgroups(0, core::ptr::null_mut());
        let mut v = vec![0u32; n.max(0) as usize];
        let got = libc::getgroups(n.max(0), v.as_mut_ptr());
        v.truncate(got.max(0) as usize);
        v
    }
}

const CAP_SETGID: u64 = 1 << 6;
const CAP_SETUID: u64 = 1 << 7;
const CAP_SETPCAP: u64 = 1 << 8;

fn sorted(v: &[u32]) -> Vec<u32> {
    let mut v = v.to_vec();
    v.sort_unstable();
    v.dedup();
    v
}

/// What this restart cannot give: credentials the restarter cannot take.
pub fn problems_here(c: &Credentials) -> Vec<super::Problem> {
    let Some(me) = read_self() else {
        return vec![super::Problem::new(
            "credentials",
            "credentials: cannot read this process's own".into(),
        )];
    };
    let groups_differ = sorted(&c.groups) != sorted(&own_groups());
    let mut why = Vec::new();
    if groups_differ && me.effective & CAP_SETGID == 0 {
        why.push(format!(
            "supplementary groups {:?} (this restart has {:?} and cannot change them without CAP_SETGID)",
            c.groups,
            own_groups()
        ));
    }
    for t in c.threads.iter().filter(|t| !t.same_as(&me)) {
        let mut need = Vec::new();
        if (t.uids != me.uids) && me.effective & CAP_SETUID == 0 {
            need.push(format!(
                "user ids {:?} (this restart has {:?})",
                t.uids, me.uids
            ));
        }
        if (t.gids != me.gids) && me.effective & CAP_SETGID == 0 {
            need.push(format!(
                "group ids {:?} (this restart has {:?})",
                t.gids, me.gids
            ));
        }
        let missing = (t.permitted | t.ambient | t.effective) & !me.permitted;
        if missing != 0 {
            need.push(format!(
                "capabilities {missing:#x} this restart does not hold"
            ));
        }
        if t.bounding & !me.bounding != 0 {
            need.push(format!(
                "bounding set {:#x} (this restart's is {:#x})",
                t.bounding, me.bounding
            ));
        }
        if (t.bounding != me.bounding || t.securebits != me.securebits)
            && me.effective & CAP_SETPCAP == 0
        {
            need.push("its bounding set or securebits (changing them needs CAP_SETPCAP)".into());
        }
        if !need.is_empty() {
            why.push(format!("thread {}: {}", t.tid, need.join(", ")));
        }
    }
    if why.is_empty() {
        return Vec::new();
    }
    vec![super::Problem::new(
        "credentials",
        format!(
            "credentials this restart cannot give the program: {} (restart it as the user it ran as, or as root)",
            why.join("; ")
        ),
    )]
}

/// In the restarter, late: the supplementary groups, which every
/// restarted thread inherits. Returns what failed.
pub fn restore_groups(c: &Credentials) -> Vec<String> {
    if sorted(&c.groups) == sorted(&own_groups()) {
        return Vec::new();
    }
    // SAFETY: setgroups reads `len` gids.
    if unsafe { libc::setgroups(c.groups.len(), c.groups.as_ptr()) } != 0 {
        return vec![format!(
            "supplementary groups {:?}: {}",
            c.groups,
            std::io::Error::last_os_error()
        )];
    }
    Vec::new()
}

/// What [`restore_thread`] tells the thread's caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The thread has exactly its credentials (or none were noted).
    Same,
    /// It holds less than it had (a restart told to go on without them).
    Less,
    /// It holds more than it had: the process must not run on.
    More,
}

/// In restarted thread `i` (park slot), before it runs the program again:
/// takes back its own ids and capabilities. Nothing is changed when they
/// are already the restarter's. No allocation.
pub fn restore_thread(i: usize) -> Outcome {
    let Some(want) = TABLE.get(i) else {
        return Outcome::Same;
    };
    let Some(now) = read_self() else {
        return Outcome::More;
    };
    if now.same_as(&want) {
        return Outcome::Same;
    }
    let last = LAST_CAP.load(Relaxed) as u64;
    // The bounding set first, while CAP_SETPCAP is still effective.
    for c in 0..=last {
        if now.bounding & !want.bounding & (1 << c) != 0 {
            prctl(libc::PR_CAPBSET_DROP, c);
        }
    }
    if now.uids != want.uids || now.gids != want.gids {
        // The permitted set survives leaving uid 0.
        prctl(libc::PR_SET_KEEPCAPS, 1);
        let [ru, eu, su, fu] = want.uids;
        let [rg, eg, sg, fg] = want.gids;
        // SAFETY: per-thread id changes with integer arguments (raw system
        // calls: glibc's wrappers would signal every thread).
        unsafe {
            libc::syscall(libc::SYS_setresgid, rg, eg, sg);
            libc::syscall(libc::SYS_setfsgid, fg);
            libc::syscall(libc::SYS_setresuid, ru, eu, su);
            libc::syscall(libc::SYS_setfsuid, fu);
        }
    }
    // Everything permitted made effective for the prctls below, and the
    // inheritable set the ambient one needs.
    if let Some((_, p, _)) = capget() {
        capset(p, p, want.inheritable | (p & want.ambient));
    }
    prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as u64);
    for c in 0..=last {
        if want.ambient & (1 << c) != 0 {
            // SAFETY: as `prctl`.
            unsafe {
                libc::syscall(
                    libc::SYS_prctl,
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE as u64,
                    c,
                    0u64,
                    0u64,
                )
            };
        }
    }
    if prctl(libc::PR_GET_SECUREBITS, 0) != want.securebits as libc::c_long {
        prctl(libc::PR_SET_SECUREBITS, want.securebits as u64);
    }
    if !capset(want.effective, want.permitted, want.inheritable) {
        // A restart told to go on without capabilities it cannot give:
        // what it can of them, never more.
        if let Some((e, p, h)) = capget() {
            capset(e & want.effective, p & want.permitted, h & want.inheritable);
        }
    }
    match read_self() {
        Some(got) if got.same_as(&want) => Outcome::Same,
        Some(got) if !got.holds_more_than(&want) || no_gain(&got, &want) => Outcome::Less,
        _ => Outcome::More,
    }
}

/// Ids that differ without giving anything: a restart by another user,
/// told to go on, runs as that user with no capability beyond the
/// program's.
fn no_gain(got: &ThreadCreds, want: &ThreadCreds) -> bool {
    let extra = |now: u64, w: u64| now & !w != 0;
    !(extra(got.effective, want.effective)
        || extra(got.permitted, want.permitted)
        || extra(got.ambient, want.ambient)
        || extra(got.bounding, want.bounding)
        || got.uids.contains(&0)
        || got.gids.contains(&0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Credentials {
        Credentials {
            groups: vec![1234, 5678],
            threads: vec![ThreadCreds {
                tid: 77,
                uids: [1, 2, 3, 4],
                gids: [5, 6, 7, 8],
                effective: 0x10,
                permitted: 0x30,
                inheritable: 0x20,
                bounding: 0xff,
                ambient: 0x20,
                securebits: 0x10,
            }],
        }
    }

    #[test]
    fn credentials_round_trip_and_are_checked() {
        let c = sample();
        let mut buf = vec![0u8; 256];
        let mut e = Encoder::new(&mut buf);
        c.encode(&mut e).unwrap();
        let n = e.len();
        let mut d = Decoder::new(&buf[..n]);
        assert_eq!(Credentials::decode(&mut d).unwrap(), c);
        d.finish().unwrap();
        assert!(c.check().is_ok(), "{:?}", c.check());
        let mut bad = sample();
        bad.threads[0].effective = 0x40; // not permitted
        assert!(bad.check().is_err());
        let mut bad = sample();
        bad.threads[0].ambient = 0x10; // not inheritable
        assert!(bad.check().is_err());
    }

    #[test]
    fn the_capture_reads_this_thread_and_nothing_differs_here() {
        note_start();
        let me = read_self().unwrap();
        // SAFETY: getuid has no preconditions.
        assert_eq!(me.uids[1], unsafe { libc::geteuid() });
        // Its own credentials: nothing to refuse, nothing to change.
        let c = Credentials {
            groups: own_groups(),
            threads: vec![ThreadCreds { tid: 1, ..me }],
        };
        assert!(problems_here(&c).is_empty(), "{:?}", problems_here(&c));
        assert!(restore_groups(&c).is_empty());
        // More than it holds is refused by name.
        let more = Credentials {
            threads: vec![ThreadCreds {
                tid: 1,
                permitted: u64::MAX,
                effective: u64::MAX,
                ..me
            }],
            ..c
        };
        if me.permitted != (1u64 << (LAST_CAP.load(Relaxed) + 1)) - 1 {
            let p = problems_here(&more);
            assert_eq!(p.len(), 1, "{p:?}");
            assert_eq!(p[0].kind, "credentials");
        }
    }

    #[test]
    fn holding_more_is_told_apart_from_holding_less() {
        let want = sample().threads[0];
        assert!(!want.holds_more_than(&want));
        let more = ThreadCreds {
            permitted: want.permitted | 1,
            ..want
        };
        assert!(more.holds_more_than(&want) && !no_gain(&more, &want));
        let less = ThreadCreds {
            effective: 0,
            ..want
        };
        assert!(!less.holds_more_than(&want));
        let root = ThreadCreds {
            uids: [0; 4],
            effective: 0,
            permitted: 0,
            inheritable: 0,
            ambient: 0,
            ..want
        };
        assert!(!no_gain(&root, &want), "uid 0 is a gain");
    }
}
