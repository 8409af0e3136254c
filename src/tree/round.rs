//! One checkpoint round of a tree, as each process's checkpoint thread
//! walks it (`manager::checkpoint_once` calls these at its phases):
//!
//! ```text
//!  root                                    member
//!  begin: Freeze ───────────────────────>  hold forks, exits
//!         <──────────────────────── Frozen
//!         (wait for descendants still to join; name those left out;
//!          zombies with their status)
//!         Suspend ──────────────────────>  begin (checkpoint thread)
//!  suspended: <──────────────── Suspended   threads parked
//!         Dump(all ok) ─────────────────>
//!  dumped:  <──────────────────── Dumped    image written
//!         Resume(all ok) ───────────────>  threads released
//!  end:   <────────────────── Committed    image durable in the set
//!         tree.json, rename the set
//!         Done(set path) ───────────────>  hold released
//! ```
//!
//! Every member answers each phase once; a member gone (end of file) or
//! failing makes the root send `Resume(false)` (or `Dump(false)`,
//! `Done(false)`): everybody resumes, the temporary set is removed.
//! [`Round::suspended`] and [`Round::dumped`] run while this process's
//! threads are parked: no allocation there (the members' descriptors were
//! gathered by [`Round::begin`]).
//!
//! Must never: leave a member waiting (every path of the root answers
//! every member), or keep the hold raised after the round.

use super::record::{self, LeftOut, Proc, Shared, TreeRecord, Zombie};
use super::root::{self, Member};
use super::set::Pending;
use super::wire::{self, Kind, Msg, WireError};
use crate::capture::sys;
use crate::Error;
use core::sync::atomic::{AtomicU32, Ordering::*};
use std::path::{Path, PathBuf};

/// How long the root waits for members to join the round (descendants
/// between fork and exec, exec'd programs starting).
const JOIN_MS: u64 = 3000;
const FREEZE_MS: u64 = 5000;
const SUSPEND_MS: u64 = 15_000;
const DUMP_MS: u64 = 600_000;
const COMMIT_MS: u64 = 120_000;

/// The live children the latest committed set leaves out (JSON list, for
/// the stats line).
static LEFT_OUT: std::sync::Mutex<Option<serde_json::Value>> = std::sync::Mutex::new(None);

/// What the latest set left out, if it left out any process.
pub fn last_left_out() -> Option<serde_json::Value> {
    LEFT_OUT.lock().ok()?.clone()
}

/// What a restart of the latest committed set refuses, one sentence per
/// object, each naming its process (for the root's log and stats line).
static REFUSED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// What a restart of the latest set this root committed refuses.
pub fn last_refused() -> Vec<String> {
    REFUSED.lock().map(|r| r.clone()).unwrap_or_default()
}

/// What a restart of the set in `set` (recorded as `rec`) refuses: each
/// member's refusals but those of what the tree makes itself (the same
/// rule the restart applies, `TreeRecord::made_by_tree`).
fn refused(set: &Path, rec: &TreeRecord) -> Vec<String> {
    let key = crate::image::mac::MacKey::from_env();
    let mut out = Vec::new();
    for m in &rec.members {
        let img = crate::image::read::ImageFile::open_with_key(&set.join(&m.image), key.as_ref());
        let Some(view) = img.as_ref().ok().and_then(|i| i.view().ok()) else {
            out.push(format!(
                "process {} ({}): its image cannot be read back",
                m.pid, m.program
            ));
            continue;
        };
        let (shared, ptys) = rec.made_by_tree(m.pid);
        out.extend(
            view.kernel
                .refused_here(&shared, &ptys)
                .into_iter()
                .map(|p| format!("process {} ({}): {}", m.pid, m.program, p.text)),
        );
    }
    // A process left out does not come back: a restart refuses.
    out.extend(rec.left_out.iter().map(LeftOut::sentence));
    out.extend(super::files::shared_deleted(set, rec));
    out
}

/// Why a live descendant did not join the round, as far as can be seen
/// from outside it.
fn not_joined_why(pid: u32, state: char) -> String {
    if state == 'T' || state == 't' {
        return "it is stopped (SIGSTOP or a tracer) and cannot take part".into();
    }
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    if maps.contains("libselfckpt") {
        "it has selfckpt loaded but is not connected to the tree (it could not reach the \
         tree's root: its log says why; or a raw clone() made it, which runs no fork handlers)"
            .into()
    } else if !maps.is_empty() && !maps.contains("/ld-linux") && !maps.contains("/ld-musl") {
        let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "?".into());
        format!(
            "it does not run selfckpt: {exe} is statically linked, and LD_PRELOAD reaches only \
             programs the dynamic loader starts"
        )
    } else {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let preloads = environ
            .split(|&b| b == 0)
            .any(|v| v.starts_with(b"LD_PRELOAD=") && v.windows(10).any(|w| w == b"libselfckpt"));
        if preloads {
            "it does not run selfckpt though its environment preloads it (a set-user-ID \
             program, whose loader ignores LD_PRELOAD)"
                .into()
        } else {
            "it does not run selfckpt: it was started without selfckpt's LD_PRELOAD (its \
             parent cleared the environment)"
                .into()
        }
    }
}

/// The member that made the round fail while threads were parked.
static FAILED_PID: AtomicU32 = AtomicU32::new(0);
/// What that member said of its failure (its checkpoint's error).
static FAILED_WHY: std::sync::Mutex<([u8; wire::TEXT_MAX], usize)> =
    std::sync::Mutex::new(([0; wire::TEXT_MAX], 0));
/// In a member: the failure it owes the root (descriptor << 32 | kind),
/// sent with its checkpoint's error by [`send_failure`].
static OWED: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// In a member whose round failed: tells the root, with `why` (the
/// checkpoint's error), and ends the round. Called once the checkpoint
/// returned, whatever it returned (nothing to do when nothing is owed).
pub fn send_failure(why: &str) {
    let mut owed = OWED.swap(0, AcqRel);
    if owed == 0 {
        // Failed before its round began (its image directory, say): the
        // root waits for its first answer.
        match super::member::conn() {
            Some(fd) if !why.is_empty() && super::is_member() && super::member::in_round() => {
                owed = (fd as u64) << 32 | Kind::Suspended as u64;
            }
            _ => return,
        }
    }
    let fd = (owed >> 32) as i32;
    if let Some(kind) = Kind::from_u32(owed as u32) {
        let _ = wire::send(fd, &Msg::new(kind).with_ok(false).with_text(why.as_bytes()));
    }
    super::member::round_over();
}

enum Side {
    /// Not in a tree, or a root without members: a plain checkpoint.
    Solo,
    Root(Box<RootRound>),
    Member {
        fd: i32,
        dir: PathBuf,
    },
}

struct RootRound {
    pending: Pending,
    members: Vec<Member>,
    fds: Vec<i32>,
    record: TreeRecord,
    term: bool,
    /// A frozen member ended before it was told to suspend.
    member_ended: bool,
}

/// One round, from `begin` to `end` (or drop: the round failed).
pub struct Round {
    side: Side,
    /// The round failed and every party knows it: nothing more to send.
    aborted: bool,
    /// Messages this process sent or awaited: 1 suspended, 2 dumped.
    phase: u8,
    ended: bool,
}

/// Answers `Ask`s that come in between (a member asking for a round
/// while one is being taken) by ignoring them.
fn expect(fd: i32, want: Kind, ms: u64) -> Result<Msg, WireError> {
    let deadline = sys::now_ns() + ms * 1_000_000;
    loop {
        let left = deadline.saturating_sub(sys::now_ns()) / 1_000_000;
        let m = wire::recv(fd, Some(left.max(1)))?;
        match m.kind() {
            Some(Kind::Ask) => continue,
            Some(k) if k == want => return Ok(m),
            Some(Kind::Resume) if !m.ok() => return Ok(m.with_ok(false)),
            _ => return Err(WireError::Unexpected),
        }
    }
}

fn program_of(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim_end().to_string())
        .unwrap_or_else(|_| "?".into())
}

impl Round {
    fn solo() -> Round {
        Round {
            side: Side::Solo,
            aborted: false,
            phase: 0,
            ended: false,
        }
    }

    /// Starts the round of this process. `Ok(solo)` outside a tree.
    pub fn begin(
        dir: &Path,
        instance: &str,
        sequence: u64,
        created_ns: u64,
        term: bool,
    ) -> Result<Round, Error> {
        if super::is_member() {
            return match (super::member::in_round(), super::member::conn()) {
                (true, Some(fd)) => Ok(Round {
                    side: Side::Member {
                        fd,
                        dir: super::member::set_dir()
                            .ok_or_else(|| Error::Tree("the round has no set directory".into()))?,
                    },
                    aborted: false,
                    phase: 0,
                    ended: false,
                }),
                // Its own request, the round over since `lifecycle` looked
                // (or never connected): asked of the root as there.
                _ => Err(super::member::ask_root()
                    .err()
                    .unwrap_or(Error::AskedRoot(sys::getpid()))),
            };
        }
        crate::kstate::sysvshm::set_tree_peers(&[]);
        if !super::is_root() {
            return Ok(Round::solo());
        }
        super::gone::set_left(&[]);
        if root::snapshot().is_empty() && record::children(sys::getpid()).is_empty() {
            return Ok(Round::solo());
        }
        // A member may end just as it froze (it was past its exit hold, or
        // a signal ended it): that round is given up, everyone resumes,
        // and the tree is frozen again without it, a few times.
        let mut tries = 0;
        loop {
            tries += 1;
            match Self::try_begin(dir, instance, sequence, created_ns, term) {
                Err((e, true)) if tries < 4 => {
                    log::debug!("tree checkpoint: {e}; freezing the tree again");
                    std::thread::sleep(std::time::Duration::from_millis(10 * tries));
                }
                r => return r.map_err(|(e, _)| e),
            }
        }
    }

    /// One try of a root's `begin`; an error says whether a member ended
    /// as the tree froze (worth another try).
    fn try_begin(
        dir: &Path,
        instance: &str,
        sequence: u64,
        created_ns: u64,
        term: bool,
    ) -> Result<Round, (Error, bool)> {
        let members = root::snapshot();
        root::round_active();
        let pending = match Pending::create(dir, created_ns / 1_000_000, instance, sys::getpid()) {
            Ok(p) => p,
            Err(e) => {
                root::round_ended();
                return Err((e, false));
            }
        };
        let mut rr = Box::new(RootRound {
            pending,
            members: Vec::new(),
            fds: Vec::new(),
            record: TreeRecord {
                format: record::FORMAT.into(),
                version: record::VERSION,
                instance: instance.into(),
                root: sys::getpid(),
                sequence,
                created_unix_ns: created_ns,
                members: Vec::new(),
                zombies: Vec::new(),
                left_out: Vec::new(),
                shared: Vec::new(),
                refused: Vec::new(),
                adopted: Vec::new(),
            },
            term,
            member_ended: false,
        });
        let mut round = Round {
            side: Side::Solo,
            aborted: false,
            phase: 0,
            ended: false,
        };
        super::hold::hold(FREEZE_MS);
        let result = rr.freeze(members);
        let again = rr.member_ended;
        round.side = Side::Root(rr);
        // On an error the round is dropped here: every member resumes.
        result.map_err(|e| (e, again))?;
        Ok(round)
    }

    /// The directory this process's image goes to (a set's temporary
    /// directory), or None: the image directory, as without a tree.
    pub fn dir(&self) -> Option<&Path> {
        match &self.side {
            Side::Solo => None,
            Side::Root(r) => Some(&r.pending.tmp),
            Side::Member { dir, .. } => Some(dir),
        }
    }

    pub fn is_tree(&self) -> bool {
        !matches!(self.side, Side::Solo)
    }

    /// This process's threads are parked (`ok`): waits until every
    /// member's are. Returns whether to dump. Allocation-free.
    pub fn suspended(&mut self, ok: bool) -> bool {
        self.phase = 1;
        match &self.side {
            Side::Solo => ok,
            Side::Member { fd, .. } => {
                if wire::send(*fd, &Msg::new(Kind::Suspended).with_ok(ok)).is_err() {
                    self.aborted = true;
                    return false;
                }
                match expect(*fd, Kind::Dump, SUSPEND_MS + FREEZE_MS) {
                    Ok(m) if m.ok() && m.kind() == Some(Kind::Dump) => true,
                    _ => {
                        self.aborted = true;
                        false
                    }
                }
            }
            Side::Root(r) => {
                let all = gather(&r.members, Kind::Suspended, SUSPEND_MS) && ok;
                root::send_all(&r.fds, &Msg::new(Kind::Dump).with_ok(all));
                self.aborted = !all;
                all
            }
        }
    }

    /// This process's dump ended (`ok`): waits until every member's has.
    /// Returns whether every image was written. Allocation-free.
    pub fn dumped(&mut self, ok: bool) -> bool {
        if self.aborted {
            return false;
        }
        self.phase = 2;
        match &self.side {
            Side::Solo => ok,
            Side::Member { fd, .. } => {
                if wire::send(*fd, &Msg::new(Kind::Dumped).with_ok(ok)).is_err() {
                    self.aborted = true;
                    return false;
                }
                match expect(*fd, Kind::Resume, DUMP_MS) {
                    Ok(m) if m.ok() => true,
                    _ => {
                        self.aborted = true;
                        false
                    }
                }
            }
            Side::Root(r) => {
                let all = gather(&r.members, Kind::Dumped, DUMP_MS) && ok;
                root::send_all(&r.fds, &Msg::new(Kind::Resume).with_ok(all));
                self.aborted = !all;
                all
            }
        }
    }

    /// In a restarted process: the round belongs to the process that took
    /// the image; nothing is sent.
    pub fn restarted(mut self) {
        self.ended = true;
        if let Side::Member { .. } = self.side {
            super::member::round_over();
        }
        if let Side::Root(_) = self.side {
            super::hold::release();
            root::round_ended();
        }
    }

    /// Why the round failed, once threads run again (None: it did not).
    pub fn failure(&self) -> Option<Error> {
        if !self.aborted {
            return None;
        }
        let pid = FAILED_PID.swap(0, AcqRel);
        let why = FAILED_WHY
            .lock()
            .map(|mut w| {
                let t = String::from_utf8_lossy(&w.0[..w.1]).into_owned();
                w.1 = 0;
                t
            })
            .unwrap_or_default();
        Some(Error::Tree(if pid != 0 && !why.is_empty() {
            format!(
                "member {pid} ({}) failed: {why}; every process resumed, the previous image \
                 set stays the newest",
                program_of(pid)
            )
        } else if pid != 0 {
            format!(
                "member {pid} ({}) failed or went away during the checkpoint; every process \
                 resumed, the previous image set stays the newest",
                program_of(pid)
            )
        } else {
            "the tree's root called the checkpoint off (a member failed or went away, or the \
             root's own checkpoint failed: its line in stats.jsonl says why); every process \
             resumed, the previous image set stays the newest"
                .into()
        }))
    }

    /// This process's image is durable at `image`: the set is committed.
    /// Returns the set's path (None outside a tree), and whether the tree
    /// is to exit now (checkpoint-then-exit).
    pub fn end(mut self, image: &Path, keep: usize) -> Result<Option<(PathBuf, bool)>, Error> {
        let name = image
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match &mut self.side {
            Side::Solo => {
                self.ended = true;
                Ok(None)
            }
            Side::Member { fd, .. } => {
                let fd = *fd;
                self.ended = true;
                let sent = wire::send(fd, &Msg::new(Kind::Committed).with_text(name.as_bytes()));
                let done = sent.and_then(|()| expect(fd, Kind::Done, COMMIT_MS + DUMP_MS));
                super::member::round_over();
                match done {
                    Ok(m) if m.ok() && m.kind() == Some(Kind::Done) => {
                        use std::os::unix::ffi::OsStrExt;
                        let set = PathBuf::from(std::ffi::OsStr::from_bytes(m.text()));
                        Ok(Some((set, m.ppid == 1)))
                    }
                    _ => Err(Error::Tree(
                        "the tree's image set was not committed; the previous one stays the newest"
                            .into(),
                    )),
                }
            }
            Side::Root(r) => {
                let res = r.commit(&name, keep);
                self.ended = true;
                let done = match &res {
                    Ok(p) => Msg::new(Kind::Done)
                        .with_text(p.as_os_str().as_encoded_bytes())
                        .with_ppid(u32::from(r.term)),
                    Err(_) => Msg::new(Kind::Done).with_ok(false),
                };
                root::send_all(&r.fds, &done);
                if res.is_err() {
                    r.pending.abort();
                }
                super::hold::release();
                root::round_ended();
                res.map(|p| Some((p, r.term)))
            }
        }
    }
}

impl Drop for Round {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        match &self.side {
            Side::Solo => {}
            Side::Member { fd, .. } => {
                if !self.aborted {
                    let kind = match self.phase {
                        0 => Kind::Suspended,
                        1 => Kind::Dumped,
                        _ => Kind::Committed,
                    };
                    // Sent once the error is known (`send_failure`).
                    OWED.store((*fd as u64) << 32 | kind as u64, Release);
                    return;
                }
                super::member::round_over();
            }
            Side::Root(r) => {
                if !self.aborted {
                    root::send_all(&r.fds, &Msg::new(Kind::Resume).with_ok(false));
                }
                r.pending.abort();
                super::hold::release();
                root::round_ended();
            }
        }
    }
}

/// Collects one `want` from every member; false if one failed or is
/// gone (its pid kept in FAILED_PID). Allocation-free.
fn gather(members: &[Member], want: Kind, ms: u64) -> bool {
    let mut all = true;
    for m in members {
        match expect(m.fd, want, ms) {
            Ok(r) if r.ok() && r.kind() == Some(want) => {}
            r => {
                all = false;
                let first = FAILED_PID
                    .compare_exchange(0, m.pid, AcqRel, Acquire)
                    .is_ok();
                if let (true, Ok(r), Ok(mut why)) = (first, r, FAILED_WHY.lock()) {
                    let t = r.text();
                    why.0[..t.len()].copy_from_slice(t);
                    why.1 = t.len();
                }
            }
        }
    }
    all
}

impl RootRound {
    /// Freezes every member (and those that join meanwhile), then records
    /// who is in the tree, who is left out, and the zombies; then tells
    /// the members to suspend.
    fn freeze(&mut self, first: Vec<Member>) -> Result<(), Error> {
        let me = sys::getpid();
        let freeze =
            Msg::new(Kind::Freeze).with_text(self.pending.tmp.as_os_str().as_encoded_bytes());
        let mut asked: Vec<i32> = Vec::new();
        let deadline = sys::now_ns() + JOIN_MS * 1_000_000;
        let mut batch = first;
        loop {
            for m in &batch {
                asked.push(m.fd);
                if wire::send(m.fd, &freeze).is_err() {
                    root::drop_member(m.fd);
                    continue;
                }
                match expect(m.fd, Kind::Frozen, FREEZE_MS) {
                    Ok(r) if r.ok() => self.members.push(*m),
                    Ok(_) => {
                        self.members.push(*m);
                        return Err(Error::Tree(format!(
                            "member {} ({}) could not hold its forks",
                            m.pid,
                            program_of(m.pid)
                        )));
                    }
                    // Gone: it exec'd (its new image joins again) or exited.
                    Err(_) => root::drop_member(m.fd),
                }
            }
            let joined: Vec<u32> = self.members.iter().map(|m| m.pid).collect();
            let missing: Vec<record::Stat> = record::descendants(me)
                .into_iter()
                .filter(|s| s.state != 'Z' && s.state != 'X' && !joined.contains(&s.pid))
                .collect();
            batch = root::snapshot()
                .into_iter()
                .filter(|m| !asked.contains(&m.fd))
                .collect();
            if !batch.is_empty() {
                continue;
            }
            if missing.is_empty() || sys::now_ns() >= deadline || !super::covers_forks() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        self.describe(me);
        let pids: Vec<u32> = self.record.members.iter().map(|m| m.pid).collect();
        self.record.shared = super::files::shared_files(&pids, &root::run_stdio());
        self.record.shared.extend(super::files::shared_ptys(&pids));
        self.fds = self.members.iter().map(|m| m.fd).collect();
        super::gone::set_left(&self.left_children(me));
        let peers = sysv_peers(&pids);
        crate::kstate::sysvshm::set_tree_peers(&peers);
        for m in self.members.clone() {
            // Each member learns which of its children are left out, and
            // which members have System V segments attached (their
            // attachments are the tree's own).
            let left = self.left_children(m.pid);
            let text: Vec<u8> = left
                .iter()
                .chain(peers.iter().take(wire::TEXT_MAX / 4 - left.len()))
                .flat_map(|p| p.to_le_bytes())
                .collect();
            let mut suspend = Msg::new(Kind::Suspend).with_text(&text);
            suspend.pid = left.len() as u32;
            if wire::send(m.fd, &suspend).is_err() {
                self.member_ended = true;
                self.fds.retain(|&f| f != m.fd);
                root::drop_member(m.fd);
                return Err(Error::Tree(format!(
                    "member {} ({}) went away as the checkpoint began",
                    m.pid,
                    program_of(m.pid)
                )));
            }
        }
        Ok(())
    }

    /// The children of `pid` this set leaves out.
    fn left_children(&self, pid: u32) -> Vec<u32> {
        self.record
            .left_out
            .iter()
            .filter(|l| l.ppid == pid)
            .map(|l| l.pid)
            .take(super::gone::MAX_LEFT)
            .collect()
    }

    /// Fills the record's processes, zombies and left_out children.
    fn describe(&mut self, me: u32) {
        let joined: Vec<u32> = self.members.iter().map(|m| m.pid).collect();
        let mut procs = vec![proc_of(me)];
        let mut desc = record::descendants(me);
        // A member that is no descendant of the root any more: its parent
        // exited and it was reparented outside the tree (a double-forked
        // daemon). It comes back as a child of the restart's init (pid 1,
        // as init or a subreaper is its parent now), with its own
        // descendants.
        let mut adopted = Vec::new();
        for &m in &joined {
            if desc.iter().any(|d| d.pid == m) || m == me {
                continue;
            }
            match record::stat(m) {
                Some(st) if st.state != 'Z' && st.state != 'X' => {
                    adopted.push(m);
                    procs.push(proc_of(m));
                    let below = record::descendants(m);
                    desc.extend(below.into_iter().filter(|d| d.pid != me));
                }
                _ => {}
            }
        }
        // Parents first (descendants lists them so); a member whose parent
        // is left out cannot be placed again: it is left out too.
        for s in &desc {
            let parent_in = procs.iter().any(|p| p.pid == s.ppid);
            if s.state == 'Z' || s.state == 'X' {
                if parent_in {
                    self.record.zombies.push(Zombie {
                        pid: s.pid,
                        ppid: s.ppid,
                        pgid: s.pgid,
                        sid: s.sid,
                        program: s.comm.clone(),
                        status: s.exit_code,
                    });
                }
            } else if joined.contains(&s.pid) && parent_in {
                procs.push(proc_of(s.pid));
            } else {
                let why = if joined.contains(&s.pid) {
                    "its parent is not covered".to_string()
                } else if !super::covers_forks() {
                    "the run was started with --no-tree".to_string()
                } else {
                    not_joined_why(s.pid, s.state)
                };
                self.record.left_out.push(LeftOut {
                    pid: s.pid,
                    ppid: s.ppid,
                    program: s.comm.clone(),
                    why,
                });
            }
        }
        self.record.members = procs;
        self.record.adopted = adopted;
        for l in &self.record.left_out {
            log::warn!(
                "the checkpoint leaves out process {} ({}), a child of {}: {}",
                l.pid,
                l.program,
                l.ppid,
                l.why
            );
        }
    }

    /// Collects the members' image names, writes the record, commits the
    /// set and prunes older ones.
    fn commit(&mut self, own_image: &str, keep: usize) -> Result<PathBuf, Error> {
        if let Some(m) = self.record.members.first_mut() {
            m.image = own_image.to_string();
        }
        let mut failed = None;
        for m in &self.members {
            match expect(m.fd, Kind::Committed, COMMIT_MS) {
                Ok(r) if r.ok() => {
                    let name = String::from_utf8_lossy(r.text()).into_owned();
                    if let Some(p) = self.record.members.iter_mut().find(|p| p.pid == m.pid) {
                        p.image = name;
                    }
                }
                _ => failed = failed.or(Some(m.pid)),
            }
        }
        if let Some(pid) = failed {
            return Err(Error::Tree(format!(
                "member {pid} ({}) could not make its image durable; the previous image set stays \
                 the newest",
                program_of(pid)
            )));
        }
        // Members that are recorded but wrote nothing (left out after they
        // froze) are taken out of the record.
        self.record.members.retain(|p| !p.image.is_empty());
        let members: Vec<u32> = self.record.members.iter().map(|m| m.pid).collect();
        self.record.adopted.retain(|a| members.contains(a));
        self.record
            .shared
            .retain(|s| s.ends.iter().all(|e| members.contains(&e.pid)));
        self.record
            .shared
            .extend(shared_pipes(&self.pending.tmp, &self.record.members));
        let sockets = shared_sockets(&self.pending.tmp, &self.record.members)
            .map_err(|why| Error::Tree(format!("the tree's sockets: {why}")))?;
        self.record.shared.extend(sockets);
        self.record
            .shared
            .extend(shared_memory(&self.pending.tmp, &self.record.members));
        self.record
            .shared
            .extend(shared_mqueues(&self.pending.tmp, &self.record.members));
        self.record
            .check()
            .map_err(|why| Error::Tree(format!("the tree record is not consistent: {why}")))?;
        self.record.refused = refused(&self.pending.tmp, &self.record);
        let path = self.pending.commit(&self.record)?;
        if let Ok(mut r) = REFUSED.lock() {
            r.clone_from(&self.record.refused);
        }
        if let Ok(mut l) = LEFT_OUT.lock() {
            *l = (!self.record.left_out.is_empty())
                .then(|| serde_json::to_value(&self.record.left_out).unwrap_or_default());
        }
        super::set::prune(&self.pending.dir, &self.record.instance, keep, None);
        Ok(path)
    }
}

impl Msg {
    fn with_ppid(mut self, v: u32) -> Msg {
        self.ppid = v;
        self
    }
}

fn proc_of(pid: u32) -> Proc {
    let st = record::stat(pid);
    Proc {
        pid,
        ppid: st.as_ref().map_or(0, |s| s.ppid),
        pgid: st.as_ref().map_or(0, |s| s.pgid),
        sid: st.as_ref().map_or(0, |s| s.sid),
        program: st.map_or_else(|| "?".into(), |s| s.comm),
        image: String::new(),
    }
}

/// The members (of `pids`) whose maps show a System V segment, at most
/// `sysvshm::MAX_PEERS`. Read at the freeze: a member attaching one
/// between now and its suspend is not among them, and its attachments
/// then count as an outside process's (named, never silent).
fn sysv_peers(pids: &[u32]) -> Vec<u32> {
    pids.iter()
        .copied()
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/maps"))
                .is_ok_and(|m| crate::kstate::sysvshm::maps_show_segments(&m))
        })
        .take(crate::kstate::sysvshm::MAX_PEERS)
        .collect()
}

/// The pipes that more than one member holds, from the members' images.
fn shared_pipes(set: &Path, members: &[Proc]) -> Vec<Shared> {
    use crate::image::model::FdKind;
    let key = crate::image::mac::MacKey::from_env();
    let mut by_ino: std::collections::BTreeMap<u64, Vec<record::End>> = Default::default();
    for m in members {
        let Ok(img) =
            crate::image::read::ImageFile::open_with_key(&set.join(&m.image), key.as_ref())
        else {
            continue;
        };
        let Ok(view) = img.view() else { continue };
        for f in &view.kernel.fds {
            if f.kind == FdKind::Pipe as u32 {
                by_ino.entry(f.stamp.ino).or_default().push(record::End {
                    pid: m.pid,
                    fd: f.fd,
                    flags: f.flags,
                });
            }
        }
    }
    by_ino
        .into_iter()
        // The tree's own pipes: those a member reads (its writers are
        // members, or have ended: the reader gets what is queued, then end
        // of file). The run's own stdio comes from outside: a restart
        // gives the restarter's; a pipe only written to here has its
        // reader outside (a placeholder stands in, as for one process).
        // A pipe one member holds alone above 2 is its own (its
        // descriptions, flags, size and owner come back as in a process of
        // its own).
        .filter(|(ino, ends)| {
            let reads = ends
                .iter()
                .any(|e| e.flags as i32 & libc::O_ACCMODE == libc::O_RDONLY);
            reads && record::tree_makes_pipe(ends) && !super::root::run_stdio().contains(ino)
        })
        .map(|(ino, ends)| Shared {
            kind: "pipe".into(),
            ino,
            ends,
            peer: 0,
            dev: 0,
        })
        .collect()
}

/// The shared memory objects (`capture::maps::is_shared_object`, System
/// V segments too: their inode is the segment's id) that more than one
/// member maps, named by their regions' stamps: a tree restart makes each
/// once for all of them.
fn shared_memory(set: &Path, members: &[Proc]) -> Vec<Shared> {
    use crate::capture::maps::{is_shared_object, RegionKind};
    let key = crate::image::mac::MacKey::from_env();
    let mut by_obj: std::collections::BTreeMap<(u64, u64), Vec<u32>> = Default::default();
    for m in members {
        let Ok(img) =
            crate::image::read::ImageFile::open_with_key(&set.join(&m.image), key.as_ref())
        else {
            continue;
        };
        let Ok(view) = img.view() else { continue };
        for r in &view.regions {
            let kind = RegionKind::from_u32(r.kind).unwrap_or(RegionKind::Anon);
            let named = r.stamp.ino != 0 || r.stamp.dev != 0;
            if named && is_shared_object(kind, r.path) {
                let pids = by_obj.entry((r.stamp.dev, r.stamp.ino)).or_default();
                if !pids.contains(&m.pid) {
                    pids.push(m.pid);
                }
            }
        }
    }
    by_obj
        .into_iter()
        .filter(|(_, pids)| pids.len() > 1)
        .map(|((dev, ino), pids)| Shared {
            kind: "memory".into(),
            ino,
            ends: pids
                .into_iter()
                .map(|pid| record::End {
                    pid,
                    fd: -1,
                    flags: 0,
                })
                .collect(),
            peer: 0,
            dev,
        })
        .collect()
}

/// The message queues more than one member holds descriptors of (one
/// queue: a tree restart makes it once, with the messages of an image
/// that could read them, and puts each member's descriptors on it).
fn shared_mqueues(set: &Path, members: &[Proc]) -> Vec<Shared> {
    let key = crate::image::mac::MacKey::from_env();
    let mut by_queue: std::collections::BTreeMap<(u64, u64), Vec<record::End>> = Default::default();
    for m in members {
        let Ok(img) =
            crate::image::read::ImageFile::open_with_key(&set.join(&m.image), key.as_ref())
        else {
            continue;
        };
        let Ok(view) = img.view() else { continue };
        for x in view.kernel.objects.mqueues() {
            let ends = by_queue.entry((x.dev, x.ino)).or_default();
            ends.extend(x.ends.iter().map(|e| record::End {
                pid: m.pid,
                fd: e.fd,
                flags: e.flags,
            }));
        }
    }
    by_queue
        .into_iter()
        .filter(|(_, ends)| ends.iter().any(|e| e.pid != ends[0].pid))
        .map(|((dev, ino), ends)| Shared {
            kind: "mqueue".into(),
            ino,
            ends,
            peer: 0,
            dev,
        })
        .collect()
}

/// The UNIX connections between members (a socketpair shared by fork, a
/// connection one member accepted from another), both ends recorded:
/// those whose two ends are held by more than one member together. The
/// tree restart makes each again as one socketpair, with each end's
/// queue as the images hold it; so every image holding an end must have
/// seen the same queue there, else the checkpoint fails.
fn shared_sockets(set: &Path, members: &[Proc]) -> Result<Vec<Shared>, String> {
    use crate::kstate::sockets::{ROLE_OUTSIDE, ROLE_PAIR};
    let key = crate::image::mac::MacKey::from_env();
    // inode -> (peer, queue, the ends holding it)
    type Seen = (u64, Vec<Vec<u8>>, Vec<record::End>);
    let mut by_ino: std::collections::BTreeMap<u64, Seen> = Default::default();
    for m in members {
        let Ok(img) =
            crate::image::read::ImageFile::open_with_key(&set.join(&m.image), key.as_ref())
        else {
            continue;
        };
        let Ok(view) = img.view() else { continue };
        let mut queued_here: Vec<u64> = Vec::new();
        for x in view.kernel.objects.sockets() {
            let unix_end = x.family as i32 == libc::AF_UNIX
                && x.peer != 0
                && matches!(x.role, ROLE_PAIR | ROLE_OUTSIDE);
            if !unix_end {
                continue;
            }
            let seen = by_ino
                .entry(x.ino)
                .or_insert_with(|| (x.peer, x.queue.clone(), Vec::new()));
            // The queue is on the first descriptor of a socket in an
            // image; each image's must be the same.
            if !queued_here.contains(&x.ino) {
                queued_here.push(x.ino);
                if !seen.2.is_empty() && seen.1 != x.queue {
                    return Err(format!(
                        "processes {} and {} saw different data queued to the socket {} they \
                         share",
                        seen.2[0].pid, m.pid, x.ino
                    ));
                }
            }
            seen.2.push(record::End {
                pid: m.pid,
                fd: x.fd,
                flags: x.flags,
            });
        }
    }
    let mut out = shared_tcp(set, members)?;
    out.extend(shared_unconnected(set, members));
    for (&ino, (peer, _, ends)) in &by_ino {
        let Some((back, _, peer_ends)) = by_ino.get(peer) else {
            continue;
        };
        let mut pids: Vec<u32> = ends.iter().chain(peer_ends).map(|e| e.pid).collect();
        pids.sort_unstable();
        pids.dedup();
        if *back == ino && pids.len() > 1 {
            out.push(Shared {
                kind: "socket".into(),
                ino,
                ends: ends.clone(),
                peer: *peer,
                dev: 0,
            });
        }
    }
    Ok(out)
}

/// The sockets without a peer (listening, bound, fresh, or a TCP
/// connection that is over) that several members hold: a server's listener shared with the workers it forked.
/// Made once by the tree's restart and given to each (two members
/// binding one address each would find it taken).
fn shared_unconnected(set: &Path, members: &[Proc]) -> Vec<Shared> {
    use crate::kstate::sockets::{ROLE_BOUND, ROLE_CLOSED, ROLE_FRESH, ROLE_LISTEN};
    let key = crate::image::mac::MacKey::from_env();
    let mut by_ino: std::collections::BTreeMap<u64, Vec<record::End>> = Default::default();
    for m in members {
        let Ok(img) =
            crate::image::read::ImageFile::open_with_key(&set.join(&m.image), key.as_ref())
        else {
            continue;
        };
        let Ok(view) = img.view() else { continue };
        for x in view.kernel.objects.sockets() {
            if matches!(x.role, ROLE_LISTEN | ROLE_BOUND | ROLE_FRESH | ROLE_CLOSED) {
                by_ino.entry(x.ino).or_default().push(record::End {
                    pid: m.pid,
                    fd: x.fd,
                    flags: x.flags,
                });
            }
        }
    }
    by_ino
        .into_iter()
        .filter(|(_, ends)| ends.iter().any(|e| e.pid != ends[0].pid))
        .map(|(ino, ends)| Shared {
            kind: "unconnected".into(),
            ino,
            ends,
            peer: 0,
            dev: 0,
        })
        .collect()
}

/// The TCP connections between members (a parent's accepted connection
/// and its forked child's connecting end, say): the ends the members'
/// images kept with their data in flight (`kstate::sockets::inflight`),
/// paired by their addresses (each one's local address the other's
/// remote one), held by more than one member together. Both ends are
/// recorded, each naming the other. Where what was in flight cannot be
/// given back exactly once, the checkpoint fails naming the connection.
fn shared_tcp(set: &Path, members: &[Proc]) -> Result<Vec<Shared>, String> {
    use crate::kstate::sockets::inflight::{is_peer, join, End, TcpInFlight};
    use crate::kstate::sockets::{Socket, ROLE_OUTSIDE};
    let key = crate::image::mac::MacKey::from_env();
    // inode -> (the socket as its first descriptor has it, its data in
    // flight, the ends holding it)
    type Seen = (Socket, Option<TcpInFlight>, Vec<record::End>);
    let mut by_ino: std::collections::BTreeMap<u64, Seen> = Default::default();
    for m in members {
        let Ok(img) =
            crate::image::read::ImageFile::open_with_key(&set.join(&m.image), key.as_ref())
        else {
            continue;
        };
        let Ok(view) = img.view() else { continue };
        let flights: Vec<&TcpInFlight> = view.kernel.objects.tcp_in_flight().collect();
        for x in view.kernel.objects.sockets() {
            let tcp = matches!(x.family as i32, libc::AF_INET | libc::AF_INET6)
                && x.stype as i32 == libc::SOCK_STREAM;
            if !tcp || x.role != ROLE_OUTSIDE {
                continue;
            }
            let seen = by_ino
                .entry(x.ino)
                .or_insert_with(|| (x.clone(), None, Vec::new()));
            if let Some(f) = flights.iter().find(|f| f.fd == x.fd && f.ino == x.ino) {
                if seen.1.is_none() {
                    (seen.0, seen.1) = (x.clone(), Some((*f).clone()));
                }
            }
            seen.2.push(record::End {
                pid: m.pid,
                fd: x.fd,
                flags: x.flags,
            });
        }
    }
    let mut out = Vec::new();
    for (&ino, (sock, flight, ends)) in &by_ino {
        let Some(flight) = flight else { continue };
        let mut peers = by_ino
            .iter()
            .filter(|(_, (p, f, _))| f.is_some() && is_peer(sock, p));
        let (Some((&peer, (psock, Some(pflight), pends))), None) = (peers.next(), peers.next())
        else {
            continue;
        };
        let mut pids: Vec<u32> = ends.iter().chain(pends).map(|e| e.pid).collect();
        pids.sort_unstable();
        pids.dedup();
        if pids.len() < 2 {
            continue;
        }
        let a = End { sock, flight };
        let b = End {
            sock: psock,
            flight: pflight,
        };
        join(&a, &b).map_err(|why| {
            format!(
                "the TCP connection between process {} fd {} and process {} fd {}: {why}",
                ends[0].pid, ends[0].fd, pends[0].pid, pends[0].fd
            )
        })?;
        out.push(Shared {
            kind: "socket".into(),
            ino,
            ends: ends.clone(),
            peer,
            dev: 0,
        });
    }
    Ok(out)
}
