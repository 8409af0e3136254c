//! Process attributes a program sets with prctl(2) or /proc:
//! `oom_score_adj`, the main thread's parent-death signal
//! (`PR_SET_PDEATHSIG`), `PR_SET_DUMPABLE`, `PR_SET_NO_NEW_PRIVS`,
//! `PR_SET_CHILD_SUBREAPER`, `PR_SET_THP_DISABLE`, the `membarrier(2)`
//! registrations (object kind 0x0402); and
//! seccomp, which cannot come back: a process cannot read its own filters
//! (`PTRACE_SECCOMP_GET_FILTER` needs a tracer with `CAP_SYS_ADMIN`), so a
//! process that installed seccomp filters (beyond those it started with,
//! from its environment: a container's, which a restart in the same
//! environment has again) is named as not restorable (kind `seccomp`;
//! with `--unrestorable=seccomp` it comes back without its own filters).
//! Thread names come back with each thread (`capture::park`).
//!
//! Capture ([`capture`]) runs in the dump's signal handler while every
//! thread is parked: prctl reads, /proc/self/status and
//! /proc/self/oom_score_adj into the caller's fixed buffer; the main
//! thread's parent-death signal was noted by the main thread itself when
//! it parked ([`note_main_thread`]: the value is per thread). No
//! allocation.
//!
//! Restore ([`restore_early`], [`restore_late`]) runs in the restarter, which
//! becomes the program: everything before the descriptors are reopened
//! but `PR_SET_DUMPABLE`, set once they are back (a process that is not
//! dumpable has a root-owned /proc/self). `NO_NEW_PRIVS` cannot be unset:
//! set, it is set again. A `DUMPABLE` of 2 (`suid_dumpable`) cannot be set
//! by prctl and is left as it is. An `oom_score_adj` below the lowest this
//! process may set needs `CAP_SYS_RESOURCE`: without it the restart
//! refuses, naming it ([`problems_here`]).

use super::{CaptureBuffers, KstateError};
use crate::capture::sys;
use crate::image::codec::{CodecError, Decoder, Encoder};
use core::sync::atomic::{AtomicU32, Ordering::*};

/// The seccomp filters the process had when selfckpt started (inherited
/// from its environment: a container's, a sandbox's), which a restart in
/// the same environment has again.
static INHERITED_FILTERS: AtomicU32 = AtomicU32::new(0);

/// Notes the seccomp filters the process starts with (at install).
pub fn note_start() {
    let n = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let l = s.lines().find(|l| l.starts_with("Seccomp_filters:"))?;
            l["Seccomp_filters:".len()..].trim().parse().ok()
        })
        .unwrap_or(0);
    INHERITED_FILTERS.store(n, Relaxed);
}

/// `PR_GET_DUMPABLE` at the checkpoint, for [`after_credentials`].
static DUMPABLE: AtomicU32 = AtomicU32::new(u32::MAX);

/// In the restarted process (manager thread, after every thread took its
/// credentials back, no allocation): a change of ids or capabilities
/// resets the process's dumpable flag; it is set again.
pub fn after_credentials() {
    let want = DUMPABLE.load(Relaxed);
    if want <= 1 && prctl_get(libc::PR_GET_DUMPABLE) != want {
        // SAFETY: PR_SET_DUMPABLE with 0 or 1.
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, want as libc::c_ulong, 0, 0, 0) };
    }
}

/// The main thread's parent-death signal, noted when it parked.
static MAIN_PDEATHSIG: AtomicU32 = AtomicU32::new(0);

/// In the restarted main thread, once it took its credentials back (no
/// allocation): a change of ids clears the parent-death signal; it is
/// set again.
pub fn after_main_credentials() {
    let want = MAIN_PDEATHSIG.load(Relaxed);
    let mut now: libc::c_int = 0;
    // SAFETY: PR_GET_PDEATHSIG writes one int; PR_SET_PDEATHSIG takes a
    // signal number.
    unsafe {
        libc::prctl(libc::PR_GET_PDEATHSIG, &mut now as *mut libc::c_int);
        if now.max(0) as u32 != want {
            libc::prctl(libc::PR_SET_PDEATHSIG, want as libc::c_ulong);
        }
    }
}

/// Called by the main thread as it parks: its parent-death signal (a
/// per-thread value the capture thread cannot read). No allocation.
pub fn note_main_thread() {
    let mut sig: libc::c_int = 0;
    // SAFETY: PR_GET_PDEATHSIG writes one int.
    unsafe { libc::prctl(libc::PR_GET_PDEATHSIG, &mut sig as *mut libc::c_int) };
    MAIN_PDEATHSIG.store(sig.max(0) as u32, Relaxed);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProcessAttrs {
    pub oom_score_adj: i32,
    pub pdeathsig: u32,
    /// 0, 1, or 2 (`suid_dumpable`).
    pub dumpable: u32,
    pub no_new_privs: u32,
    pub child_subreaper: u32,
    pub thp_disable: u32,
    /// The `membarrier(2)` registrations of the process
    /// (`MEMBARRIER_CMD_GET_REGISTRATIONS`: the `REGISTER_*` commands it
    /// made; 0 on a kernel before 6.3, which cannot tell). Trailing,
    /// optional: older images end before it.
    pub membarrier: u32,
}

/// `MEMBARRIER_CMD_GET_REGISTRATIONS`.
const MEMBARRIER_GET_REGISTRATIONS: libc::c_int = 1 << 9;
/// The `MEMBARRIER_CMD_REGISTER_*` commands: global expedited, private
/// expedited, private expedited sync-core, private expedited rseq.
const MEMBARRIER_REGISTER: [u32; 4] = [1 << 2, 1 << 4, 1 << 6, 1 << 8];

fn membarrier(cmd: libc::c_int) -> libc::c_long {
    // SAFETY: membarrier with a command and no pointers.
    unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0u32, 0i32) }
}

/// This process's membarrier registrations (0 where the kernel cannot
/// tell). No allocation.
fn membarrier_registrations() -> u32 {
    let r = membarrier(MEMBARRIER_GET_REGISTRATIONS);
    if r < 0 {
        0
    } else {
        r as u32 & MEMBARRIER_REGISTER.iter().fold(0, |a, b| a | b)
    }
}

impl ProcessAttrs {
    pub fn encode(&self, e: &mut Encoder) -> Result<(), CodecError> {
        e.i32(self.oom_score_adj)?;
        e.u32(self.pdeathsig)?;
        e.u32(self.dumpable)?;
        e.u32(self.no_new_privs)?;
        e.u32(self.child_subreaper)?;
        e.u32(self.thp_disable)?;
        e.u32(self.membarrier)
    }

    pub fn decode(d: &mut Decoder) -> Result<Self, CodecError> {
        Ok(ProcessAttrs {
            oom_score_adj: d.i32()?,
            pdeathsig: d.u32()?,
            dumpable: d.u32()?,
            no_new_privs: d.u32()?,
            child_subreaper: d.u32()?,
            thp_disable: d.u32()?,
            membarrier: if d.remaining() >= 4 { d.u32()? } else { 0 },
        })
    }

    pub fn check(&self) -> Result<(), String> {
        if !(-1000..=1000).contains(&self.oom_score_adj) {
            return Err(format!("oom_score_adj {}", self.oom_score_adj));
        }
        if self.pdeathsig > 64 {
            return Err(format!("parent-death signal {}", self.pdeathsig));
        }
        if self.dumpable > 2 {
            return Err(format!("dumpable {}", self.dumpable));
        }
        if self.membarrier & !MEMBARRIER_REGISTER.iter().fold(0, |a, b| a | b) != 0 {
            return Err(format!("membarrier registrations {:#x}", self.membarrier));
        }
        for (what, v) in [
            ("no_new_privs", self.no_new_privs),
            ("child_subreaper", self.child_subreaper),
            ("thp_disable", self.thp_disable),
        ] {
            if v > 1 {
                return Err(format!("{what} {v}"));
            }
        }
        Ok(())
    }

    pub fn describe(&self) -> String {
        format!(
            "process: oom_score_adj {}, parent-death signal {}, dumpable {}, no_new_privs {}, child_subreaper {}, thp_disable {}, membarrier registrations {:#x}",
            self.oom_score_adj,
            self.pdeathsig,
            self.dumpable,
            self.no_new_privs,
            self.child_subreaper,
            self.thp_disable,
            self.membarrier
        )
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": "process_attrs", "oom_score_adj": self.oom_score_adj,
            "pdeathsig": self.pdeathsig, "dumpable": self.dumpable,
            "no_new_privs": self.no_new_privs, "child_subreaper": self.child_subreaper,
            "thp_disable": self.thp_disable, "membarrier": self.membarrier,
        })
    }
}

/// A decimal number, maybe negative, at the start of `s`.
fn parse_i64(s: &[u8]) -> Option<i64> {
    match s.strip_prefix(b"-") {
        Some(m) => sys::parse_u64(m).map(|(v, _)| -(v as i64)),
        None => sys::parse_u64(s).map(|(v, _)| v as i64),
    }
}

fn prctl_get(option: libc::c_int) -> u32 {
    // SAFETY: a prctl that only reads (returns the value).
    unsafe { libc::prctl(option, 0, 0, 0, 0) }.max(0) as u32
}

/// Writes the entry (and a not-restorable one for seccomp). No allocation.
pub fn capture(e: &mut Encoder, bufs: &mut CaptureBuffers) -> Result<(), KstateError> {
    let read = |what| KstateError::Read {
        what,
        errno: sys::Errno::last(),
    };
    let n = sys::read_file(b"/proc/thread-self/oom_score_adj\0", bufs.text)
        .map_err(|_| read("/proc/self/oom_score_adj"))?;
    let oom_score_adj = parse_i64(&bufs.text[..n])
        .ok_or(KstateError::Parse("/proc/self/oom_score_adj"))?
        .clamp(-1000, 1000) as i32;
    let mut subreaper: libc::c_int = 0;
    // SAFETY: PR_GET_CHILD_SUBREAPER writes one int.
    unsafe {
        libc::prctl(
            libc::PR_GET_CHILD_SUBREAPER,
            &mut subreaper as *mut libc::c_int,
        )
    };
    let n =
        sys::read_file(b"/proc/self/status\0", bufs.text).map_err(|_| read("/proc/self/status"))?;
    let status = &bufs.text[..n];
    let num = |key: &[u8]| {
        sys::field(status, key)
            .and_then(sys::parse_u64)
            .map_or(0, |(v, _)| v)
    };
    DUMPABLE.store(prctl_get(libc::PR_GET_DUMPABLE), Relaxed);
    let attrs = ProcessAttrs {
        oom_score_adj,
        pdeathsig: MAIN_PDEATHSIG.load(Relaxed),
        dumpable: prctl_get(libc::PR_GET_DUMPABLE),
        no_new_privs: num(b"NoNewPrivs:").min(1) as u32,
        child_subreaper: (subreaper != 0) as u32,
        thp_disable: prctl_get(libc::PR_GET_THP_DISABLE).min(1),
        membarrier: membarrier_registrations(),
    };
    let seccomp = num(b"Seccomp:");
    let filters = num(b"Seccomp_filters:");
    super::objects::entry(e, super::objects::Kind::ProcessAttrs, 0, |e| {
        attrs.encode(e)
    })?;
    // Strict mode, or filters the program added itself.
    if seccomp == 1 || (seccomp == 2 && filters > INHERITED_FILTERS.load(Relaxed) as u64) {
        super::objects::NotRestorable::capture(
            e,
            -1,
            "seccomp",
            b"seccomp filters (a process cannot read its own filters back: it would come back without them)",
        )?;
    }
    Ok(())
}

fn own_oom_score_adj() -> Option<i32> {
    std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Whether this process may set its `oom_score_adj` to `v`: tried in a
/// forked child (which inherits the lowest value allowed without
/// `CAP_SYS_RESOURCE`, a value /proc does not show), leaving this
/// process as it is.
fn oom_score_adj_allowed(v: i32) -> bool {
    let text = format!("{v}\n");
    // Raw fork and exit: a tree checkpoint names refusals while it holds
    // forks and exits.
    crate::capture::sys::succeeds_in_child(|| {
        // SAFETY: open and write of prepared data, in the probe child.
        unsafe {
            let fd = libc::open(c"/proc/self/oom_score_adj".as_ptr(), libc::O_WRONLY);
            fd >= 0 && libc::write(fd, text.as_ptr().cast(), text.len()) == text.len() as isize
        }
    })
}

/// What this restart cannot give: an `oom_score_adj` below the lowest this
/// process may set without `CAP_SYS_RESOURCE`.
pub fn problems_here(a: &ProcessAttrs) -> Vec<super::Problem> {
    match own_oom_score_adj() {
        Some(now) if a.oom_score_adj < now && !oom_score_adj_allowed(a.oom_score_adj) => {
            vec![super::Problem::new(
                "oom_score_adj",
                format!(
                    "oom_score_adj {}: below what this user may set (lowering it needs CAP_SYS_RESOURCE)",
                    a.oom_score_adj
                ),
            )]
        }
        _ => Vec::new(),
    }
}

/// In the restarter, before the descriptors are reopened. Returns what
/// failed, one line each.
pub fn restore_early(a: &ProcessAttrs) -> Vec<String> {
    let mut failed = Vec::new();
    let mut set = |what: &str, ok: bool| {
        if !ok {
            failed.push(format!("{what}: {}", std::io::Error::last_os_error()));
        }
    };
    let prctl = |option: libc::c_int, v: u32| {
        // SAFETY: a prctl setting one integer attribute of this process.
        unsafe { libc::prctl(option, v as libc::c_ulong, 0, 0, 0) == 0 }
    };
    if a.no_new_privs != 0 {
        set("no_new_privs", prctl(libc::PR_SET_NO_NEW_PRIVS, 1));
    }
    set(
        "child_subreaper",
        prctl(libc::PR_SET_CHILD_SUBREAPER, a.child_subreaper),
    );
    if a.thp_disable != prctl_get(libc::PR_GET_THP_DISABLE).min(1) {
        set(
            "thp_disable",
            prctl(libc::PR_SET_THP_DISABLE, a.thp_disable),
        );
    }
    set(
        "parent-death signal",
        prctl(libc::PR_SET_PDEATHSIG, a.pdeathsig),
    );
    // The registrations belong to the address space, which the restarter
    // hands to the program as it is.
    let have = membarrier_registrations();
    for cmd in MEMBARRIER_REGISTER {
        if a.membarrier & cmd != 0 && have & cmd == 0 {
            set(
                "membarrier registration",
                membarrier(cmd as libc::c_int) == 0,
            );
        }
    }
    if own_oom_score_adj() != Some(a.oom_score_adj) {
        let r = std::fs::write("/proc/self/oom_score_adj", a.oom_score_adj.to_string());
        if let Err(e) = r {
            failed.push(format!("oom_score_adj {}: {e}", a.oom_score_adj));
        }
    }
    failed
}

/// In the restarter, once every descriptor is back: `PR_SET_DUMPABLE`.
pub fn restore_late(a: &ProcessAttrs) -> Vec<String> {
    if a.dumpable > 1 || prctl_get(libc::PR_GET_DUMPABLE) == a.dumpable {
        return Vec::new();
    }
    // SAFETY: PR_SET_DUMPABLE with 0 or 1.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, a.dumpable as libc::c_ulong, 0, 0, 0) } != 0 {
        return vec![format!("dumpable: {}", std::io::Error::last_os_error())];
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_round_trip_and_are_checked() {
        let a = ProcessAttrs {
            oom_score_adj: -17,
            pdeathsig: 28,
            dumpable: 1,
            no_new_privs: 1,
            child_subreaper: 1,
            thp_disable: 0,
            membarrier: 1 << 4,
        };
        let mut buf = vec![0u8; 64];
        let mut e = Encoder::new(&mut buf);
        a.encode(&mut e).unwrap();
        let n = e.len();
        let mut d = Decoder::new(&buf[..n]);
        assert_eq!(ProcessAttrs::decode(&mut d).unwrap(), a);
        d.finish().unwrap();
        assert!(a.check().is_ok());
        // An older image ends before the registrations: none.
        let mut d = Decoder::new(&buf[..n - 4]);
        assert_eq!(
            ProcessAttrs::decode(&mut d).unwrap(),
            ProcessAttrs { membarrier: 0, ..a }
        );
        for bad in [
            ProcessAttrs {
                oom_score_adj: 1001,
                ..a
            },
            ProcessAttrs { pdeathsig: 65, ..a },
            ProcessAttrs { dumpable: 3, ..a },
            ProcessAttrs {
                membarrier: 1 << 3,
                ..a
            },
            ProcessAttrs {
                no_new_privs: 2,
                ..a
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
        assert_eq!(parse_i64(b"-17\n"), Some(-17));
    }

    #[test]
    fn the_capture_reads_this_process() {
        let out = super::super::captured(capture);
        let a = ProcessAttrs::decode(&mut Decoder::new(&out[8..])).unwrap();
        assert_eq!(Some(a.oom_score_adj), own_oom_score_adj());
        assert_eq!(a.dumpable, prctl_get(libc::PR_GET_DUMPABLE));
    }
}
