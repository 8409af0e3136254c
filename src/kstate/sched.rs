//! Each thread's scheduling (object kind 0x0405): policy (`SCHED_OTHER`,
//! `BATCH`, `IDLE`, `FIFO`, `RR`, `DEADLINE`) with its flags
//! (`SCHED_FLAG_RESET_ON_FORK`, ...), nice value, real-time priority and
//! deadline parameters, all per thread in the kernel (`sched_getattr(2)`).
//!
//! Capture: each thread, as it parks ([`note_thread`], from
//! `capture::park`), reads its own with `sched_getattr` into its slot of a
//! static table; the dump writes the table ([`capture`]). No allocation.
//!
//! Restore: the restarter checks, in a forked child holding the image's
//! `RLIMIT_NICE` and `RLIMIT_RTPRIO`, that each value can be set by this
//! user ([`problems_here`]: a lower nice value or a real-time policy needs
//! `CAP_SYS_NICE` or those limits; refused as kind `sched`); each restarted
//! thread sets its own before it runs the program again
//! ([`restore_thread`], before it gives back its credentials, which may
//! drop the capability it needs).

use super::KstateError;
use crate::capture::park::MAX_THREADS;
use crate::capture::slots::SlotTable;
use crate::image::codec::{CodecError, Decoder, Encoder};

/// The flags a thread's scheduling keeps (others are the utilization
/// clamps and `KEEP_*` request bits, not part of its state here).
const KEPT_FLAGS: u64 = 0x7;

/// One thread's scheduling.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ThreadSched {
    /// The program's id of the thread (in the table: unused).
    pub tid: u32,
    pub policy: u32,
    pub flags: u64,
    pub nice: i32,
    pub priority: u32,
    pub runtime: u64,
    pub deadline: u64,
    pub period: u64,
}

/// Every thread's scheduling, in image order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scheduling(pub Vec<ThreadSched>);

/// `struct sched_attr`, its first version (48 bytes).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
}

/// Each thread's scheduling as it parked (`capture::slots`).
const ZERO: ThreadSched = ThreadSched {
    tid: 0,
    policy: 0,
    flags: 0,
    nice: 0,
    priority: 0,
    runtime: 0,
    deadline: 0,
    period: 0,
};

/// Each thread's scheduling as it parked (`capture::slots`).
static TABLE: SlotTable<ThreadSched> = SlotTable::new(ZERO);

/// The calling thread's scheduling. No allocation.
fn read_self() -> Option<ThreadSched> {
    let mut a = SchedAttr::default();
    // SAFETY: sched_getattr writes at most `size` bytes of `a`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_sched_getattr,
            0,
            &mut a as *mut SchedAttr,
            core::mem::size_of::<SchedAttr>() as u32,
            0u32,
        )
    };
    (r == 0).then_some(ThreadSched {
        tid: 0,
        policy: a.policy,
        flags: a.flags & KEPT_FLAGS,
        nice: a.nice,
        priority: a.priority,
        runtime: a.runtime,
        deadline: a.deadline,
        period: a.period,
    })
}

/// Sets the calling thread's scheduling. No allocation.
fn set_self(s: &ThreadSched) -> bool {
    let a = SchedAttr {
        size: core::mem::size_of::<SchedAttr>() as u32,
        policy: s.policy,
        flags: s.flags & KEPT_FLAGS,
        nice: s.nice,
        priority: s.priority,
        runtime: s.runtime,
        deadline: s.deadline,
        period: s.period,
    };
    // SAFETY: sched_setattr reads `a.size` bytes of `a`.
    unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &a as *const SchedAttr, 0u32) == 0 }
}

/// Called by each thread as it parks, in park slot `i`. No allocation.
pub fn note_thread(i: usize) {
    TABLE.note(i, read_self());
}

impl ThreadSched {
    fn encode(&self, e: &mut Encoder) -> Result<(), CodecError> {
        e.u32(self.tid)?;
        e.u32(self.policy)?;
        e.u64(self.flags)?;
        e.i32(self.nice)?;
        e.u32(self.priority)?;
        e.u64(self.runtime)?;
        e.u64(self.deadline)?;
        e.u64(self.period)
    }

    fn decode(d: &mut Decoder) -> Result<Self, CodecError> {
        Ok(ThreadSched {
            tid: d.u32()?,
            policy: d.u32()?,
            flags: d.u64()?,
            nice: d.i32()?,
            priority: d.u32()?,
            runtime: d.u64()?,
            deadline: d.u64()?,
            period: d.u64()?,
        })
    }

    fn same_as(&self, o: &ThreadSched) -> bool {
        ThreadSched { tid: 0, ..*self } == ThreadSched { tid: 0, ..*o }
    }

    fn policy_name(&self) -> &'static str {
        match self.policy {
            0 => "SCHED_OTHER",
            1 => "SCHED_FIFO",
            2 => "SCHED_RR",
            3 => "SCHED_BATCH",
            5 => "SCHED_IDLE",
            6 => "SCHED_DEADLINE",
            _ => "an unknown policy",
        }
    }

    fn describe(&self) -> String {
        let mut s = format!("{} nice {}", self.policy_name(), self.nice);
        if self.priority != 0 {
            s += &format!(" priority {}", self.priority);
        }
        if self.policy == 6 {
            s += &format!(
                " runtime {} deadline {} period {} ns",
                self.runtime, self.deadline, self.period
            );
        }
        if self.flags & 1 != 0 {
            s += " reset-on-fork";
        }
        s
    }
}

impl Scheduling {
    pub fn encode(&self, e: &mut Encoder) -> Result<(), CodecError> {
        e.u32(self.0.len() as u32)?;
        for t in &self.0 {
            t.encode(e)?;
        }
        Ok(())
    }

    pub fn decode(d: &mut Decoder) -> Result<Self, CodecError> {
        let n = d.count(48)?;
        Ok(Scheduling(
            (0..n)
                .map(|_| ThreadSched::decode(d))
                .collect::<Result<_, _>>()?,
        ))
    }

    pub fn check(&self) -> Result<(), String> {
        if self.0.len() > MAX_THREADS {
            return Err(format!("scheduling of {} threads", self.0.len()));
        }
        for t in &self.0 {
            if !matches!(t.policy, 0 | 1 | 2 | 3 | 5 | 6) {
                return Err(format!("thread {}: scheduling policy {}", t.tid, t.policy));
            }
            if !(-20..=19).contains(&t.nice) || t.priority > 99 || t.flags & !KEPT_FLAGS != 0 {
                return Err(format!("thread {}: scheduling {}", t.tid, t.describe()));
            }
        }
        Ok(())
    }

    pub fn describe(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|t| format!("scheduling of thread {}: {}", t.tid, t.describe()))
            .collect()
    }

    pub fn json(&self) -> serde_json::Value {
        let threads: Vec<serde_json::Value> = self
            .0
            .iter()
            .map(|t| {
                serde_json::json!({
                    "tid": t.tid, "policy": t.policy_name(), "flags": t.flags,
                    "nice": t.nice, "priority": t.priority, "runtime": t.runtime,
                    "deadline": t.deadline, "period": t.period,
                })
            })
            .collect();
        serde_json::json!({"kind": "scheduling", "threads": threads})
    }
}

/// Writes the entry: each parked thread's scheduling, in image order. No
/// allocation.
pub fn capture(e: &mut Encoder) -> Result<(), KstateError> {
    let threads = TABLE.parked();
    super::objects::entry(e, super::objects::Kind::Scheduling, 0, |e| {
        e.u32(threads.clone().count() as u32)?;
        for (tid, s) in threads {
            ThreadSched { tid, ..s }.encode(e)?;
        }
        Ok::<(), CodecError>(())
    })?;
    Ok(())
}

/// What this restart cannot give: scheduling this user may not set (tried
/// in a forked child with the image's `RLIMIT_NICE` and `RLIMIT_RTPRIO`).
pub fn problems_here(
    s: &Scheduling,
    limits: Option<&super::rlimits::Rlimits>,
) -> Vec<super::Problem> {
    let Some(me) = read_self() else {
        return Vec::new();
    };
    let mut wanted: Vec<ThreadSched> = Vec::new();
    for t in s.0.iter().filter(|t| !t.same_as(&me)) {
        if !wanted.iter().any(|w| w.same_as(t)) {
            wanted.push(*t);
        }
    }
    if wanted.is_empty() {
        return Vec::new();
    }
    let limit = |r: libc::__rlimit_resource_t| {
        limits
            .and_then(|l| l.0.get(r as usize).copied())
            .map(|l| libc::rlimit {
                rlim_cur: l.cur,
                rlim_max: l.max,
            })
    };
    let (nice, rtprio) = (limit(libc::RLIMIT_NICE), limit(libc::RLIMIT_RTPRIO));
    let refused: Vec<ThreadSched> = wanted
        .into_iter()
        .filter(|t| !allowed(t, nice, rtprio))
        .collect();
    if refused.is_empty() {
        return Vec::new();
    }
    let which: Vec<String> =
        s.0.iter()
            .filter(|t| refused.iter().any(|r| r.same_as(t)))
            .map(|t| format!("thread {}: {}", t.tid, t.describe()))
            .collect();
    vec![super::Problem::new(
        "sched",
        format!(
            "scheduling this user may not set ({}; a lower nice value or a real-time policy needs CAP_SYS_NICE or RLIMIT_NICE/RLIMIT_RTPRIO)",
            which.join("; ")
        ),
    )]
}

/// Whether a forked child of this process, with the given limits, may
/// take scheduling `t`.
fn allowed(t: &ThreadSched, nice: Option<libc::rlimit>, rtprio: Option<libc::rlimit>) -> bool {
    // Raw fork and exit: a tree checkpoint names refusals while it holds
    // forks and exits.
    crate::capture::sys::succeeds_in_child(|| {
        for (r, l) in [(libc::RLIMIT_NICE, nice), (libc::RLIMIT_RTPRIO, rtprio)] {
            if let Some(l) = l {
                // SAFETY: setrlimit reads one rlimit, in the probe child.
                unsafe { libc::setrlimit(r, &l) };
            }
        }
        set_self(t)
    })
}

/// In restarted thread `i` (park slot), before it runs the program again
/// and before its credentials: its own scheduling. False when it could
/// not be set. No allocation.
pub fn restore_thread(i: usize) -> bool {
    let Some(want) = TABLE.get(i) else {
        return true;
    };
    match read_self() {
        Some(now) if now.same_as(&want) => true,
        _ => set_self(&want),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduling_round_trips_and_is_checked() {
        let s = Scheduling(vec![
            ThreadSched {
                tid: 5,
                policy: 3,
                nice: 7,
                ..ZERO
            },
            ThreadSched {
                tid: 6,
                policy: 6,
                runtime: 10_000_000,
                deadline: 30_000_000,
                period: 30_000_000,
                flags: 1,
                ..ZERO
            },
        ]);
        let mut buf = vec![0u8; 256];
        let mut e = Encoder::new(&mut buf);
        s.encode(&mut e).unwrap();
        let n = e.len();
        let mut d = Decoder::new(&buf[..n]);
        assert_eq!(Scheduling::decode(&mut d).unwrap(), s);
        d.finish().unwrap();
        assert!(s.check().is_ok());
        for bad in [
            ThreadSched { policy: 4, ..ZERO },
            ThreadSched { nice: 20, ..ZERO },
            ThreadSched {
                priority: 100,
                ..ZERO
            },
        ] {
            assert!(Scheduling(vec![bad]).check().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn this_threads_own_scheduling_needs_nothing_and_a_higher_nice_is_allowed() {
        let me = read_self().unwrap();
        assert!(problems_here(&Scheduling(vec![me]), None).is_empty());
        let nicer = ThreadSched {
            nice: (me.nice + 1).min(19),
            ..me
        };
        assert!(allowed(&nicer, None, None));
    }
}
