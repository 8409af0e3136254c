//! The tree record (`tree.json` in a tree image set, its own format,
//! `selfckpt-tree` version 1: docs/IMAGE_FORMAT.md): who the processes
//! were, how they were related, which image is whose, the zombies with
//! their wait status, the live children left out, and the descriptors
//! shared between members.
//!
//! Also reads what the record needs from `/proc` (ids, zombies, the
//! processes below the root). Ordinary Rust: never runs while threads are
//! parked. The reader bounds every count and checks every relation before
//! anything uses it.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// The record's format name and version.
pub const FORMAT: &str = "selfckpt-tree";
pub const VERSION: u32 = 1;
/// Most processes one record may name.
pub const MAX_PROCS: usize = 4096;
/// The record's file name in a set.
pub const FILE: &str = "tree.json";

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Proc {
    pub pid: u32,
    pub ppid: u32,
    pub pgid: u32,
    pub sid: u32,
    pub program: String,
    /// The member's image, a file name in the set.
    pub image: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Zombie {
    pub pid: u32,
    pub ppid: u32,
    pub pgid: u32,
    pub sid: u32,
    pub program: String,
    /// The wait status its parent's `waitpid` gets.
    pub status: i32,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct LeftOut {
    pub pid: u32,
    pub ppid: u32,
    pub program: String,
    pub why: String,
}

impl LeftOut {
    /// What a restart says of it.
    pub fn sentence(&self) -> String {
        format!(
            "process {} ({}), a child of {}, was left out of the checkpoint: {}",
            self.pid, self.program, self.ppid, self.why
        )
    }
}

/// One end of a descriptor shared between members.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct End {
    pub pid: u32,
    pub fd: i32,
    /// The open file description's flags (`O_ACCMODE`, `O_NONBLOCK`, ...).
    pub flags: u32,
}

/// A kernel object that several members hold: a pipe, an open file
/// description, or one end of a UNIX connection between members
/// (`socket`: `peer` the other end's inode, recorded as an entry of its
/// own; its holders may all be one process, the peer's others).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Shared {
    pub kind: String,
    pub ino: u64,
    pub ends: Vec<End>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub peer: u64,
    /// A shared memory object's device (`memory`: the object is
    /// (`dev`, `ino`), its ends the members that map it, fd -1).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dev: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct TreeRecord {
    pub format: String,
    pub version: u32,
    pub instance: String,
    pub root: u32,
    pub sequence: u64,
    pub created_unix_ns: u64,
    pub members: Vec<Proc>,
    #[serde(default)]
    pub zombies: Vec<Zombie>,
    #[serde(default)]
    pub left_out: Vec<LeftOut>,
    #[serde(default)]
    pub shared: Vec<Shared>,
    /// What a restart of the set refuses, as the checkpoint found it (one
    /// sentence per object, naming its process): said, never acted on (a
    /// restart decides from the images).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<String>,
    /// Members whose parent is outside the tree (a double-forked daemon,
    /// reparented to init or a subreaper): a restart makes them children
    /// of its namespace's init, whose pid is 1.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adopted: Vec<u32>,
}

/// Why a tree record cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{0}: cannot read the tree record: {1}")]
    Read(String, std::io::Error),
    #[error("{0}: not a tree record: {1}")]
    Parse(String, String),
    #[error("{path}: {why}")]
    Bad { path: String, why: String },
}

/// Whether the tree makes a pipe a member reads (rather than the member
/// itself, from its image): one that more than one member holds, or that
/// a member holds at 0-2 (a pipeline's stage whose writers have ended: a
/// process of its own gives those numbers the restarter's stdio).
pub fn tree_makes_pipe(ends: &[End]) -> bool {
    ends.iter().any(|e| e.pid != ends[0].pid || e.fd <= 2)
}

impl TreeRecord {
    /// The processes left out of the checkpoint, one sentence each,
    /// joined: what a restart refuses unless told (`left_out`).
    pub fn left_out_text(&self) -> String {
        self.left_out
            .iter()
            .map(LeftOut::sentence)
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub fn member(&self, pid: u32) -> Option<&Proc> {
        self.members.iter().find(|m| m.pid == pid)
    }

    /// What a tree restart makes for member `pid` (its descriptors), so
    /// that its image's refusals of them do not count: the pipes, sockets
    /// and files it shares with other members; and, apart, the ptys the
    /// tree makes (what cannot come back of a pty, its queued bytes, is
    /// refused wherever the pair is made).
    pub fn made_by_tree(&self, pid: u32) -> (Vec<i32>, Vec<i32>) {
        use super::files::{PTMX, PTS};
        let ends_of = |s: &&Shared| {
            s.ends
                .iter()
                .filter(|e| e.pid == pid)
                .map(|e| e.fd)
                .collect::<Vec<_>>()
        };
        let shared = self
            .shared
            .iter()
            .filter(|s| s.kind != "memory" && s.kind != PTMX && s.kind != PTS)
            // A pipe whose other side is outside the tree is refused like
            // in a process of its own.
            .filter(|s| s.kind == "socket" || s.ends.iter().any(|e| e.pid != s.ends[0].pid))
            .flat_map(|s| ends_of(&s))
            .collect();
        let ptys = self
            .shared
            .iter()
            .filter(|s| s.kind == PTMX || s.kind == PTS)
            .flat_map(|s| ends_of(&s))
            .collect();
        (shared, ptys)
    }

    /// Reads and checks `SET/tree.json`.
    pub fn load(set: &Path) -> Result<TreeRecord, RecordError> {
        let p = set.join(FILE);
        let shown = p.display().to_string();
        let bytes = crate::imagedir::read_small(set, FILE, 16 << 20)
            .map_err(|e| RecordError::Read(shown.clone(), std::io::Error::other(e.to_string())))?
            .ok_or_else(|| {
                RecordError::Read(
                    shown.clone(),
                    std::io::Error::from(std::io::ErrorKind::NotFound),
                )
            })?;
        let rec: TreeRecord = serde_json::from_slice(&bytes)
            .map_err(|e| RecordError::Parse(shown.clone(), e.to_string()))?;
        rec.check()
            .map_err(|why| RecordError::Bad { path: shown, why })?;
        Ok(rec)
    }

    /// Every relation a restart relies on.
    pub fn check(&self) -> Result<(), String> {
        if self.format != FORMAT {
            return Err(format!("format {:?}, not {FORMAT:?}", self.format));
        }
        if self.version != VERSION {
            return Err(format!(
                "tree record version {}, this build reads {VERSION}",
                self.version
            ));
        }
        let n = self.members.len() + self.zombies.len();
        if n > MAX_PROCS {
            return Err(format!("{n} processes (at most {MAX_PROCS})"));
        }
        if self.members.first().map(|m| m.pid) != Some(self.root) {
            return Err("the first member is not the root".into());
        }
        let mut pids: Vec<u32> = self.members.iter().map(|m| m.pid).collect();
        pids.extend(self.zombies.iter().map(|z| z.pid));
        let mut sorted = pids.clone();
        sorted.sort_unstable();
        if sorted.windows(2).any(|w| w[0] == w[1]) || sorted.first().is_some_and(|&p| p <= 1) {
            return Err("process ids are not distinct, or not above 1".into());
        }
        let is_member = |p: u32| self.members.iter().any(|m| m.pid == p);
        if self
            .adopted
            .iter()
            .any(|&a| a == self.root || !is_member(a))
        {
            return Err("an adopted process is the root or not a member".into());
        }
        let adopted = |p: u32| self.adopted.contains(&p);
        for m in self.members.iter().skip(1) {
            if !adopted(m.pid) && !is_member(m.ppid) {
                return Err(format!(
                    "member {}'s parent {} is not a member",
                    m.pid, m.ppid
                ));
            }
        }
        for z in &self.zombies {
            if !is_member(z.ppid) {
                return Err(format!(
                    "zombie {}'s parent {} is not a member",
                    z.pid, z.ppid
                ));
            }
        }
        for m in &self.members {
            let name_ok = !m.image.is_empty()
                && !m.image.contains('/')
                && m.image != "."
                && m.image != ".."
                && m.image.ends_with(".ckpt");
            if !name_ok {
                return Err(format!(
                    "member {}'s image name {:?} is not a file name of the set",
                    m.pid, m.image
                ));
            }
        }
        for s in &self.shared {
            let fd_ok = |fd: i32| {
                if s.kind == "memory" {
                    fd == -1
                } else {
                    fd >= 0
                }
            };
            if s.ends.iter().any(|e| !is_member(e.pid) || !fd_ok(e.fd)) {
                return Err(format!(
                    "shared {} {} names a process that is not a member, or a descriptor no \
                     such object has",
                    s.kind, s.ino
                ));
            }
            if !matches!(
                s.kind.as_str(),
                "pipe" | "file" | "socket" | "unconnected" | "memory" | "mqueue" | "ptmx" | "pts"
            ) {
                return Err(format!("shared {} {}: no such kind", s.kind, s.ino));
            }
            // A connection's two ends are both recorded, each naming the
            // other, and no descriptor is two ends.
            let peer = self
                .shared
                .iter()
                .find(|p| p.kind == "socket" && p.ino == s.peer);
            if s.kind == "socket"
                && (s.peer == s.ino || peer.is_none_or(|p| p.peer != s.ino) || s.ends.is_empty())
            {
                return Err(format!(
                    "shared socket {}: its peer {} is not recorded as its peer",
                    s.ino, s.peer
                ));
            }
        }
        let mut held: Vec<(u32, i32)> = self
            .shared
            .iter()
            .filter(|s| s.kind == "socket")
            .flat_map(|s| s.ends.iter().map(|e| (e.pid, e.fd)))
            .collect();
        held.sort_unstable();
        if held.windows(2).any(|w| w[0] == w[1]) {
            return Err("a descriptor is recorded as two shared sockets".into());
        }
        // Every member descends from the root or an adopted member (no
        // cycle).
        for m in &self.members {
            let mut at = m.pid;
            let mut steps = 0;
            while at != self.root && !adopted(at) {
                at = self.member(at).map_or(0, |p| p.ppid);
                steps += 1;
                if at == 0 || steps > self.members.len() {
                    return Err(format!("member {} does not descend from the root", m.pid));
                }
            }
        }
        Ok(())
    }

    /// The members, parents before children (the order a restart makes
    /// them in).
    pub fn children_of(&self, pid: u32) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .members
            .iter()
            .skip(1)
            .filter(|m| m.ppid == pid && !self.adopted.contains(&m.pid))
            .map(|m| m.pid)
            .chain(self.zombies.iter().filter(|z| z.ppid == pid).map(|z| z.pid))
            .collect();
        v.sort_unstable();
        v
    }
}

/// What `/proc/PID/stat` says of a process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    pub pid: u32,
    pub state: char,
    pub ppid: u32,
    pub pgid: u32,
    pub sid: u32,
    pub comm: String,
    /// Field 52: the wait status of a zombie.
    pub exit_code: i32,
}

pub fn stat(pid: u32) -> Option<Stat> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let comm = s.get(open + 1..close)?.to_string();
    let rest: Vec<&str> = s.get(close + 2..)?.split(' ').collect();
    // rest[0] is field 3 (state).
    let num = |i: usize| rest.get(i).and_then(|v| v.trim().parse::<i64>().ok());
    Some(Stat {
        pid,
        state: rest.first()?.chars().next()?,
        ppid: num(1)? as u32,
        pgid: num(2)? as u32,
        sid: num(3)? as u32,
        comm,
        exit_code: num(49).unwrap_or(0) as i32,
    })
}

/// The children of `pid` (every thread's), from `/proc`.
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        let p = t.path().join("children");
        if let Ok(s) = std::fs::read_to_string(p) {
            out.extend(s.split_whitespace().filter_map(|v| v.parse::<u32>().ok()));
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Every process below `root`, parents first.
pub fn descendants(root: u32) -> Vec<Stat> {
    let mut out = Vec::new();
    let mut queue = vec![root];
    while let Some(p) = queue.pop() {
        for c in children(p) {
            if let Some(st) = stat(c) {
                queue.push(c);
                out.push(st);
            }
        }
        if out.len() > MAX_PROCS {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> TreeRecord {
        let p = |pid, ppid| Proc {
            pid,
            ppid,
            pgid: 10,
            sid: 10,
            program: "p".into(),
            image: format!("p-{pid}.ckpt"),
        };
        TreeRecord {
            format: FORMAT.into(),
            version: VERSION,
            instance: "i".into(),
            root: 10,
            sequence: 1,
            created_unix_ns: 1,
            members: vec![p(10, 1), p(11, 10), p(12, 11)],
            zombies: vec![Zombie {
                pid: 13,
                ppid: 10,
                pgid: 10,
                sid: 10,
                program: "z".into(),
                status: 7 << 8,
            }],
            left_out: vec![],
            shared: vec![],
            refused: vec![],
            adopted: vec![],
        }
    }

    #[test]
    fn an_adopted_member_needs_no_parent_in_the_tree_but_must_be_a_member() {
        let mut r = rec();
        // 12, reparented to init (a double-forked daemon), and its child.
        r.members[2].ppid = 1;
        assert!(r.check().unwrap_err().contains("not a member"));
        r.adopted = vec![12];
        let mut child = r.members[1].clone();
        child.pid = 14;
        child.ppid = 12;
        child.image = "p-14.ckpt".into();
        r.members.push(child);
        r.check().unwrap();
        assert_eq!(r.children_of(1), Vec::<u32>::new());
        assert_eq!(r.children_of(12), vec![14]);
        for bad in [vec![10], vec![99]] {
            let mut b = r.clone();
            b.adopted = bad;
            assert!(
                b.check().unwrap_err().contains("adopted"),
                "{:?}",
                b.adopted
            );
        }
    }

    #[test]
    fn a_good_record_passes_and_bad_relations_are_refused() {
        let r = rec();
        r.check().unwrap();
        assert_eq!(r.children_of(10), vec![11, 13]);
        let mut bad = rec();
        bad.members[2].ppid = 99;
        assert!(bad.check().unwrap_err().contains("not a member"));
        let mut bad = rec();
        bad.members[1].image = "../x.ckpt".into();
        assert!(bad.check().unwrap_err().contains("image name"));
        let mut bad = rec();
        bad.zombies[0].pid = 11;
        assert!(bad.check().unwrap_err().contains("distinct"));
        let mut bad = rec();
        bad.members[1].ppid = 12; // 11 <-> 12: a cycle
        assert!(bad.check().unwrap_err().contains("descend"));
        let end = |pid, fd| End { pid, fd, flags: 2 };
        let sock = |ino, peer, ends| Shared {
            kind: "socket".into(),
            ino,
            ends,
            peer,
            dev: 0,
        };
        let mut good = rec();
        good.shared = vec![sock(5, 6, vec![end(10, 3)]), sock(6, 5, vec![end(11, 4)])];
        good.check().unwrap();
        let mut bad = good.clone();
        bad.shared[1].peer = 7;
        assert!(bad.check().unwrap_err().contains("peer"));
        let mut bad = good.clone();
        bad.shared.pop();
        assert!(bad.check().unwrap_err().contains("peer"));
        let mut bad = good.clone();
        bad.shared[1].ends = vec![end(10, 3)];
        assert!(bad.check().unwrap_err().contains("two shared sockets"));
        let mut bad = good.clone();
        bad.shared[0].kind = "device".into();
        assert!(bad.check().unwrap_err().contains("no such kind"));
        let mut mem = rec();
        mem.shared = vec![Shared {
            kind: "memory".into(),
            ino: 9,
            ends: vec![end(10, -1), end(11, -1)],
            peer: 0,
            dev: 5,
        }];
        mem.check().unwrap();
        mem.shared[0].ends[1].fd = 4;
        assert!(mem.check().unwrap_err().contains("not a member"));
        let mut bad = rec();
        bad.version = 2;
        assert!(bad.check().unwrap_err().contains("version 2"));
    }

    #[test]
    fn our_own_stat_reads() {
        let st = stat(std::process::id()).unwrap();
        assert_eq!(st.pid, std::process::id());
        // Compared with what the kernel says through the calls, not with "> 0":
        // in a PID namespace whose session or parent lies outside (a CI
        // container) both read 0.
        use nix::unistd::{getpgrp, getppid, getsid};
        let sid = getsid(None).unwrap();
        assert_eq!(
            (st.ppid as i32, st.pgid as i32, st.sid as i32),
            (getppid().as_raw(), getpgrp().as_raw(), sid.as_raw())
        );
    }
}
