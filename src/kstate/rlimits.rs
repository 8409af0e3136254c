//! The process's resource limits (getrlimit(2), all `RLIMIT_*`): soft and
//! hard value of each. They belong to the process and die with it.
//!
//! Capture ([`capture`]) runs in the dump's signal handler while every
//! thread is parked: raw prlimit64 on each limit, one object entry (kind
//! 0x0401), and a copy in a table of the library's memory ([`LATE`]); no
//! allocation.
//!
//! Restore happens twice, each limit once. [`restore_early`] runs in the
//! restarter before any descriptor is reopened (`RLIMIT_NOFILE` first of
//! all) and sets the limits that cannot hurt the restart itself;
//! [`after_restart`] runs in the restarted process (manager thread, every
//! other thread waiting, no allocation) and sets the ones that could stop
//! the restart half-way if set before it ends: address space, data, locked
//! memory, processes (the restorer still makes threads), pending signals
//! (the timers are made again before), CPU time (the restart's own work
//! would count).
//!
//! A limit the restarting user cannot have (a hard limit above this
//! process's, without `CAP_SYS_RESOURCE`) is refused before anything is in
//! place, naming it ([`problems_here`]); `--unrestorable=rlimit` goes on
//! with the highest value allowed instead.

use super::KstateError;
use crate::image::codec::{CodecError, Decoder, Encoder};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering::*};

/// The limits Linux has (`RLIM_NLIMITS`).
pub const COUNT: usize = 16;

const NAMES: [&str; COUNT] = [
    "RLIMIT_CPU",
    "RLIMIT_FSIZE",
    "RLIMIT_DATA",
    "RLIMIT_STACK",
    "RLIMIT_CORE",
    "RLIMIT_RSS",
    "RLIMIT_NPROC",
    "RLIMIT_NOFILE",
    "RLIMIT_MEMLOCK",
    "RLIMIT_AS",
    "RLIMIT_LOCKS",
    "RLIMIT_SIGPENDING",
    "RLIMIT_MSGQUEUE",
    "RLIMIT_NICE",
    "RLIMIT_RTPRIO",
    "RLIMIT_RTTIME",
];

/// Set by the restarted process itself ([`after_restart`]).
fn late(resource: usize) -> bool {
    matches!(
        resource as u32,
        libc::RLIMIT_CPU
            | libc::RLIMIT_DATA
            | libc::RLIMIT_NPROC
            | libc::RLIMIT_MEMLOCK
            | libc::RLIMIT_AS
            | libc::RLIMIT_SIGPENDING
            | libc::RLIMIT_RTTIME
    )
}

/// One limit: soft (`cur`) and hard (`max`); `u64::MAX` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limit {
    pub cur: u64,
    pub max: u64,
}

/// Every limit, indexed by `RLIMIT_*` (object kind 0x0401).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rlimits(pub Vec<Limit>);

impl Rlimits {
    pub fn encode(&self, e: &mut Encoder) -> Result<(), CodecError> {
        encode_all(e, &self.0)
    }

    pub fn decode(d: &mut Decoder) -> Result<Self, CodecError> {
        let n = d.count(16)?;
        let v = (0..n)
            .map(|_| {
                Ok(Limit {
                    cur: d.u64()?,
                    max: d.u64()?,
                })
            })
            .collect::<Result<Vec<_>, CodecError>>()?;
        Ok(Rlimits(v))
    }

    pub fn check(&self) -> Result<(), String> {
        if self.0.len() > COUNT {
            return Err(format!(
                "{} resource limits (Linux has {COUNT})",
                self.0.len()
            ));
        }
        for (i, l) in self.0.iter().enumerate() {
            if l.cur > l.max {
                return Err(format!(
                    "{}: soft limit {} above hard limit {}",
                    NAMES[i], l.cur, l.max
                ));
            }
        }
        Ok(())
    }

    /// One line of `inspect`: the limits that are not unlimited.
    pub fn describe(&self) -> String {
        let shown: Vec<String> = self
            .0
            .iter()
            .enumerate()
            .filter(|(_, l)| l.cur != u64::MAX || l.max != u64::MAX)
            .map(|(i, l)| format!("{} {}/{}", NAMES[i], value(l.cur), value(l.max)))
            .collect();
        format!("resource limits (soft/hard): {}", shown.join(", "))
    }

    pub fn json(&self) -> serde_json::Value {
        let m: serde_json::Map<String, serde_json::Value> = self
            .0
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let v = |x: u64| {
                    if x == u64::MAX {
                        serde_json::Value::from("unlimited")
                    } else {
                        serde_json::Value::from(x)
                    }
                };
                (
                    NAMES[i].to_string(),
                    serde_json::json!({"soft": v(l.cur), "hard": v(l.max)}),
                )
            })
            .collect();
        serde_json::json!({"kind": "rlimits", "limits": m})
    }
}

fn value(v: u64) -> String {
    if v == u64::MAX {
        "unlimited".into()
    } else {
        v.to_string()
    }
}

fn encode_all(e: &mut Encoder, limits: &[Limit]) -> Result<(), CodecError> {
    e.u32(limits.len() as u32)?;
    for l in limits {
        e.u64(l.cur)?;
        e.u64(l.max)?;
    }
    Ok(())
}

/// Raw prlimit64 on this process: reads `resource` (and sets it to `new`
/// when given).
fn prlimit(resource: usize, new: Option<&Limit>) -> Option<Limit> {
    let mut old = [0u64; 2];
    let set = new.map(|l| [l.cur, l.max]);
    // SAFETY: raw prlimit64 on this process with kernel-layout
    // `struct rlimit64` values (two u64).
    let r = unsafe {
        libc::syscall(
            libc::SYS_prlimit64,
            0,
            resource as libc::c_long,
            set.as_ref().map_or(core::ptr::null(), |s| s.as_ptr()),
            old.as_mut_ptr(),
        )
    };
    (r == 0).then_some(Limit {
        cur: old[0],
        max: old[1],
    })
}

/// The limits the restarted process sets itself (see the module header):
/// written by the capture, read after a restart, the other threads parked
/// both times.
struct Table {
    valid: AtomicBool,
    limits: UnsafeCell<[Limit; COUNT]>,
}

// SAFETY: see `Table`.
unsafe impl Sync for Table {}

static LATE: Table = Table {
    valid: AtomicBool::new(false),
    limits: UnsafeCell::new([Limit { cur: 0, max: 0 }; COUNT]),
};

/// Writes the entry and fills [`LATE`]. No allocation.
pub fn capture(e: &mut Encoder) -> Result<(), KstateError> {
    LATE.valid.store(false, Release);
    // SAFETY: see `Table`.
    let table = unsafe { &mut *LATE.limits.get() };
    for (i, l) in table.iter_mut().enumerate() {
        *l = prlimit(i, None).ok_or(KstateError::Read {
            what: "the resource limits (prlimit64)",
            errno: crate::capture::sys::Errno::last(),
        })?;
    }
    super::objects::entry(e, super::objects::Kind::Rlimits, 0, |e| {
        encode_all(e, table)
    })?;
    LATE.valid.store(true, Release);
    Ok(())
}

/// linux/capability.h
const CAP_SYS_RESOURCE: u32 = 24;

/// Whether this process may raise a hard limit (`CAP_SYS_RESOURCE`).
pub fn may_raise() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("CapEff:"))?;
            u64::from_str_radix(line["CapEff:".len()..].trim(), 16).ok()
        })
        .is_some_and(|caps| caps & (1 << CAP_SYS_RESOURCE) != 0)
}

/// The limits this restart cannot give: hard limits above this
/// process's, without the privilege to raise them.
pub fn problems_here(r: &Rlimits) -> Vec<super::Problem> {
    if may_raise() {
        return Vec::new();
    }
    r.0.iter()
        .enumerate()
        .filter_map(|(i, l)| {
            let now = prlimit(i, None)?;
            (l.max > now.max).then(|| {
                super::Problem::new(
                    "rlimit",
                    format!(
                        "{}: the program's hard limit {} is above this user's {} (raising it needs CAP_SYS_RESOURCE)",
                        NAMES[i],
                        value(l.max),
                        value(now.max)
                    ),
                )
            })
        })
        .collect()
}

/// What is set: the image's limit, or (a stand-in accepted with
/// `--unrestorable=rlimit`) the highest this process may have.
fn allowed(i: usize, l: &Limit) -> Limit {
    match prlimit(i, None) {
        Some(now) if l.max > now.max && !may_raise() => Limit {
            cur: l.cur.min(now.max),
            max: now.max,
        },
        _ => *l,
    }
}

/// In the restarter, before any descriptor is reopened: every limit but
/// the late ones. Returns what failed, one line each.
pub fn restore_early(r: &Rlimits) -> Vec<String> {
    r.0.iter()
        .enumerate()
        .filter(|(i, l)| !late(*i) && prlimit(*i, Some(&allowed(*i, l))).is_none())
        .map(|(i, _)| {
            format!(
                "{}: cannot be set: {}",
                NAMES[i],
                std::io::Error::last_os_error()
            )
        })
        .collect()
}

/// In the restarted process (manager thread, every other thread waiting,
/// no allocation): the late limits. A limit above this process's hard one
/// gets the highest value allowed (the restarter refused it unless told
/// otherwise).
pub fn after_restart() {
    if !LATE.valid.load(Acquire) {
        return;
    }
    // SAFETY: see `Table`.
    let table = unsafe { &*LATE.limits.get() };
    for (i, l) in table.iter().enumerate().filter(|(i, _)| late(*i)) {
        if prlimit(i, Some(l)).is_none() {
            if let Some(now) = prlimit(i, None) {
                let capped = Limit {
                    cur: l.cur.min(now.max),
                    max: l.max.min(now.max),
                };
                prlimit(i, Some(&capped));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_round_trip_and_are_checked() {
        let r = Rlimits(
            (0..COUNT)
                .map(|i| Limit {
                    cur: i as u64,
                    max: if i == 3 { u64::MAX } else { 100 },
                })
                .collect(),
        );
        let mut buf = vec![0u8; 1024];
        let mut e = Encoder::new(&mut buf);
        r.encode(&mut e).unwrap();
        let n = e.len();
        let mut d = Decoder::new(&buf[..n]);
        assert_eq!(Rlimits::decode(&mut d).unwrap(), r);
        d.finish().unwrap();
        assert!(r.check().is_ok());
        assert!(
            r.describe().contains("RLIMIT_STACK 3/unlimited"),
            "{}",
            r.describe()
        );
        let mut bad = r.clone();
        bad.0[7] = Limit { cur: 5, max: 4 };
        assert!(bad.check().unwrap_err().contains("RLIMIT_NOFILE"));
        let mut many = r.clone();
        many.0.push(Limit::default());
        assert!(many.check().is_err());
    }

    #[test]
    fn the_capture_reads_what_getrlimit_says() {
        let out = super::super::captured(|e, _| capture(e));
        // The entry's kind, flags and length, then the limits.
        let r = Rlimits::decode(&mut Decoder::new(&out[8..])).unwrap();
        assert_eq!(r.0.len(), COUNT);
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one struct rlimit.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) };
        assert_eq!(r.0[libc::RLIMIT_NOFILE as usize].cur, l.rlim_cur);
        assert_eq!(r.0[libc::RLIMIT_NOFILE as usize].max, l.rlim_max);
    }
}
