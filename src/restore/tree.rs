//! Restart of a process tree from a tree image set (`crate::tree::set`).
//!
//! ```text
//!  selfckpt restart SET
//!    check the record and every member's image (as a single restart does)
//!    PID namespace of our own (pidns): the root gets its pid
//!    root: its process group; the pipes shared between members, refilled;
//!      one socketpair per UNIX connection between members, refilled
//!      └─ fork each child with its exact pid (clone3 set_tid), which
//!         makes its group or session, forks its own children, ...
//!         zombies: a child that ends at once with the recorded status
//!    root: the shared memory several members map, made once (inherited;
//!      a System V segment with its id and key)
//!    each process: its shared descriptors at their numbers, then the
//!    restore of its own image (`restart` with `TreePlace`), mapping the
//!    tree's memory objects; with shared memory, none runs before all are
//!    filled (`Barrier`)
//! ```
//!
//! Nothing irreversible happens before every image passed its checks; a
//! failure after the processes exist ends the whole namespace (the root's
//! failure ends the init, which takes every process with it), never a
//! half tree running.
//!
//! Must never: start a member whose parent did not come back, or restart a
//! tree with ids other than its own (the relations would be wrong).

use super::{handover::Blob, RestartOptions, RestoreError, TreePlace};
use crate::tree::record::{Shared, TreeRecord};
use std::path::{Path, PathBuf};

/// Each end of member `pid` the tree places is close-on-exec as the
/// member's own image (`view`) says (the record's flags were read from
/// outside the member, where fdinfo shows `O_CLOEXEC` for every
/// descriptor of a description opened with it: a pty slave a shell has
/// as its stdio came back close-on-exec, and the shell's next command
/// ran without it).
fn close_on_exec_from_image(rec: &mut TreeRecord, pid: u32, view: &crate::image::read::ImageView) {
    let cloexec = libc::O_CLOEXEC as u32;
    for s in rec.shared.iter_mut() {
        for e in s.ends.iter_mut().filter(|e| e.pid == pid) {
            if let Some(f) = view.kernel.fds.iter().find(|f| f.fd == e.fd) {
                e.flags = (e.flags & !cloexec) | (f.flags & cloexec);
            }
        }
    }
}

fn tree_err(set: &Path, why: impl std::fmt::Display) -> RestoreError {
    RestoreError::Io(
        format!("{}", set.display()),
        std::io::Error::other(why.to_string()),
    )
}

/// One pipe made anew for the members that share it (read and write
/// ends), or one file opened again (`rd` and `wr` the same descriptor).
struct Pipe {
    kind: &'static str,
    ino: u64,
    /// Which description of the object (a pty's slave descriptions).
    peer: u64,
    rd: i32,
    wr: i32,
}

/// Restarts every process of the set. Returns only on failure, before
/// any process of the tree exists.
pub fn restart_tree(
    set: &Path,
    blob: &Blob,
    opts: &RestartOptions,
) -> Result<std::convert::Infallible, RestoreError> {
    super::block_signals();
    let mut rec = TreeRecord::load(set).map_err(|e| tree_err(set, e))?;
    let images: Vec<PathBuf> = rec.members.iter().map(|m| set.join(&m.image)).collect();
    let mut pids: Vec<u32> = rec.members.iter().map(|m| m.pid).collect();
    pids.extend(rec.zombies.iter().map(|z| z.pid));
    super::files::set_tree_pids(&pids);
    // What was left out is named first: it is the cause (a member's pipe
    // to a process left out is refused as one to another process), then
    // what the first member refusing refuses.
    let mut left_out = None;
    if !rec.left_out.is_empty() {
        let text = rec.left_out_text();
        if !opts.unrestorable.accepts("left_out") {
            left_out = Some(text);
        } else {
            eprintln!(
                "selfckpt: warning: restarting without the processes left out of the checkpoint \
                 (--unrestorable=left_out): {text}; their parents' waits for them fail"
            );
        }
    }
    for (i, p) in images.iter().enumerate() {
        let pid = rec.members[i].pid;
        let (shared, ptys) = rec.made_by_tree(pid);
        match (super::open_checked(p, opts, &shared, &ptys), &left_out) {
            (Err(RestoreError::NotRestorable { text, kinds }), Some(left)) => {
                return Err(RestoreError::NotRestorable {
                    text: format!("{left}; {text}"),
                    kinds: format!("left_out,{kinds}"),
                });
            }
            (r, _) => {
                if let Ok(view) = r?.view() {
                    close_on_exec_from_image(&mut rec, pid, &view);
                }
            }
        }
    }
    if let Some(text) = left_out {
        return Err(RestoreError::NotRestorable {
            text,
            kinds: "left_out".into(),
        });
    }
    if opts.tids == super::TidPolicy::New {
        return Err(RestoreError::ExactIds(
            "a process tree comes back only with its own pids (--tids new asks for others)".into(),
        ));
    }
    let copied = crate::tree::files::shared_deleted(set, &rec);
    if !copied.is_empty() {
        let text = copied.join("; ");
        if !opts.unrestorable.accepts("shared_deleted") {
            return Err(RestoreError::NotRestorable {
                text,
                kinds: "shared_deleted".into(),
            });
        }
        eprintln!(
            "selfckpt: warning: restarting with a copy for each process (--unrestorable=shared_deleted): {text}"
        );
    }
    let data = pipe_data(&rec, &images);
    let sockets = socket_ends(&rec, &images);
    let memory = shared_memory(&images);
    // The System V sets and queues members use: made once, before the
    // members fork (each restart leaves them to the tree).
    sysv_ipc(&images)?;
    match super::pidns::enter(rec.root, opts.verbose, true) {
        super::pidns::Identity::Exact => {}
        super::pidns::Identity::New(why) => return Err(RestoreError::ExactIds(why)),
    }
    // From here on this is the root's process, pid rec.root in a
    // namespace of its own: a failure must end the tree.
    let above = max_fd(&rec) + 16;
    // The tree's copies go above every shared number; a program that
    // raised its limit can hold numbers past the restarter's. Each member
    // sets its own limits from its image before it reopens anything.
    room_for_fds(above + 4 * rec.shared.len() as i32 + 64);
    let mut pipes = match make_pipes(&rec.shared, &data, above) {
        Ok(p) => p,
        Err(e) => fail(format!("cannot make the shared pipes again: {e}")),
    };
    pipes.extend(open_files(&rec, &images, above, opts));
    match make_mqueues(&rec, &images, above) {
        Ok(p) => pipes.extend(p),
        Err(e) => fail(format!(
            "cannot make the message queues shared between processes again: {e}"
        )),
    }
    pipes.extend(make_ptys(&rec, &images, above));
    match make_sockets(&rec, &sockets, above) {
        Ok(p) => pipes.extend(p),
        Err(e) => fail(format!(
            "cannot make the sockets between processes again: {e}"
        )),
    }
    // The shared memory several members map: made once, inherited.
    let objects = match super::shared::make_tree_objects(&memory) {
        Ok(o) => o,
        Err(e) => fail(format!("cannot make the shared memory again: {e}")),
    };
    let barrier = match objects.is_empty() {
        true => None,
        false => match Barrier::new(rec.members.len() as u32) {
            Ok(b) => Some(b),
            Err(e) => fail(format!("cannot make the tree's barrier: {e}")),
        },
    };
    let root = rec.members[0].clone();
    // The root's group (or session) first: its children are born in it.
    super::handover::own_process_group(session_role(&root));
    let mut me = spawn_children(&rec, rec.root, fail);
    if me == rec.root {
        me = spawn_adopted(&rec, fail);
    }
    let Some(m) = rec.member(me) else {
        fail(format!("process {me} is not in the record"))
    };
    let placed = place_fds(&rec.shared, &pipes, me);
    let path = set.join(&m.image);
    let mut o = opts.clone();
    o.tree = Some(TreePlace {
        placed,
        objects,
        barrier,
    });
    match super::restart(&path, blob, &o) {
        Ok(never) => match never {},
        Err(e) => fail(format!("{}: {e}", path.display())),
    }
}

/// A count of the tree's processes done filling their memory, in a
/// shared page every process inherits.
#[derive(Clone, Debug)]
pub struct Barrier {
    at: u64,
    of: u32,
}

impl Barrier {
    /// A barrier for `of` processes (made before they fork).
    fn new(of: u32) -> std::io::Result<Barrier> {
        // SAFETY: a new shared anonymous page wherever the kernel finds room.
        let at = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if at == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Barrier { at: at as u64, of })
    }

    /// Counts this process in, waits (at most a minute) until every
    /// process is, then unmaps the page.
    pub fn pass(&self) -> std::io::Result<()> {
        use core::sync::atomic::{AtomicU32, Ordering::AcqRel, Ordering::Acquire};
        // SAFETY: the page was mapped by `new` before the fork, shared,
        // and holds only this counter (zero at first).
        let n = unsafe { &*(self.at as *const AtomicU32) };
        n.fetch_add(1, AcqRel);
        let t0 = std::time::Instant::now();
        let all = loop {
            if n.load(Acquire) >= self.of {
                break true;
            }
            if t0.elapsed() > std::time::Duration::from_secs(60) {
                break false;
            }
            std::thread::sleep(std::time::Duration::from_micros(500));
        };
        // SAFETY: unmapping the barrier's page, used by nothing else here.
        unsafe { libc::munmap(self.at as *mut libc::c_void, 4096) };
        if all {
            Ok(())
        } else {
            Err(std::io::Error::other(
                "another process of the tree did not come back within a minute",
            ))
        }
    }
}

/// Ends a process of the tree being made: the init then ends the
/// namespace, and every process made so far with it.
fn fail(why: String) -> ! {
    eprintln!("selfckpt: restart of the process tree failed: {why}");
    // SAFETY: leaving without the restarter's atexit work.
    unsafe { libc::_exit(1) }
}

/// Forks the children of `pid` (this process) with their exact pids,
/// recursively; returns the pid this process is to become (`pid`, or a
/// descendant's in a child process). Zombies end at once.
fn spawn_children(rec: &TreeRecord, pid: u32, fail: fn(String) -> !) -> u32 {
    for c in rec.children_of(pid) {
        match super::pidns::fork3(0, Some(c)) {
            Err(e) => fail(format!("cannot create process {c} (clone3 set_tid): {e}")),
            Ok(0) => {
                if let Some(z) = rec.zombies.iter().find(|z| z.pid == c) {
                    end_like(z.status);
                }
                if let Some(m) = rec.member(c) {
                    join_group(rec, m, fail);
                }
                return spawn_children(rec, c, fail);
            }
            Ok(_) => {}
        }
    }
    pid
}

/// In the root's process: forks the members whose parent is outside the
/// tree (`TreeRecord::adopted`) as children of the namespace's init
/// (`CLONE_PARENT`: their parent is pid 1, as it was init or a subreaper),
/// each with its descendants; returns the pid this process is to become.
fn spawn_adopted(rec: &TreeRecord, fail: fn(String) -> !) -> u32 {
    for &a in &rec.adopted {
        match super::pidns::fork3(libc::CLONE_PARENT as u64, Some(a)) {
            Err(e) => fail(format!(
                "cannot create process {a} (clone3 set_tid, CLONE_PARENT): {e}"
            )),
            Ok(0) => {
                if let Some(m) = rec.member(a) {
                    join_group(rec, m, fail);
                }
                return spawn_children(rec, a, fail);
            }
            Ok(_) => {}
        }
    }
    rec.root
}

/// The session role the handover understands, from the record.
fn session_role(m: &crate::tree::record::Proc) -> Option<u8> {
    use crate::image::model::{GROUP_LEADER, SESSION_LEADER};
    if m.sid == m.pid {
        Some(SESSION_LEADER)
    } else if m.pgid == m.pid {
        Some(GROUP_LEADER)
    } else {
        None
    }
}

/// Makes the member's session or process group as they were: a session
/// leader leads a new one, a group leader a new group, a member of a
/// group another member leads joins it; one of a group outside the tree
/// stays in the group it was born in (its parent's).
fn join_group(rec: &TreeRecord, m: &crate::tree::record::Proc, fail: fn(String) -> !) {
    // SAFETY: session and group calls on this process only.
    unsafe {
        if m.sid == m.pid {
            if libc::setsid() < 0 {
                fail(format!(
                    "process {}: setsid: {}",
                    m.pid,
                    std::io::Error::last_os_error()
                ));
            }
            return;
        }
        if m.pgid == m.pid {
            libc::setpgid(0, 0);
            return;
        }
        let leader_in_tree = rec.member(m.pgid).is_some() && m.pgid != rec.root;
        if leader_in_tree {
            // The leader may be a sibling made after us: wait for it.
            for _ in 0..500 {
                if libc::setpgid(0, m.pgid as i32) == 0 {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            eprintln!(
                "selfckpt: warning: process {} cannot join process group {} again",
                m.pid, m.pgid
            );
        }
    }
}

/// Ends this (forked) process the way the zombie ended: its parent's
/// wait gets that status.
fn end_like(status: i32) -> ! {
    // SAFETY: ending this forked child; no core file is written.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0);
        if libc::WIFSIGNALED(status) {
            let sig = libc::WTERMSIG(status);
            crate::interpose::next::signal(sig, libc::SIG_DFL);
            crate::capture::sys::change_signal_mask(libc::SIG_UNBLOCK, &[sig]);
            libc::raise(sig);
        }
        libc::_exit(libc::WEXITSTATUS(status))
    }
}

/// Opens once each regular file members shared through one open file
/// description, as the image of one of them recorded it (path judged as
/// any restart judges it, flags, offset), numbered `above` or higher.
/// One that cannot be opened is left to each member (with a warning).
fn open_files(
    rec: &TreeRecord,
    images: &[PathBuf],
    above: i32,
    opts: &RestartOptions,
) -> Vec<Pipe> {
    let key = crate::image::mac::MacKey::from_env();
    let check = super::reopen_check(opts.changed_fds);
    let mut out = Vec::new();
    for s in rec.shared.iter().filter(|s| s.kind == "file") {
        let Some(end) = s.ends.iter().find(|e| e.fd > 2) else {
            continue;
        };
        let Some(i) = rec.members.iter().position(|m| m.pid == end.pid) else {
            continue;
        };
        let Ok(img) = crate::image::read::ImageFile::open_with_key(&images[i], key.as_ref()) else {
            continue;
        };
        let Ok(view) = img.view() else { continue };
        let Some(f) = view
            .kernel
            .fds
            .iter()
            .find(|f| f.fd == end.fd && f.stamp.ino == s.ino)
        else {
            continue;
        };
        // A memfd's read-write description is memfd_create's own, which
        // the object the tree makes once (`shared::make_tree_objects`)
        // gives each member (`SharedObjects::install_fds`).
        if f.path.starts_with(b"/memfd:") && f.flags as i32 & libc::O_ACCMODE == libc::O_RDWR {
            continue;
        }
        // Opened at a free number above every member's (never over one
        // of ours), close-on-exec: it is dup'ed to each member's number.
        let at = above + 64 + out.len() as i32;
        let entry = crate::image::model::FdEntry {
            fd: at,
            kind: f.kind,
            flags: f.flags | libc::O_CLOEXEC as u32,
            offset: f.offset,
            path: f.path,
            stamp: f.stamp,
        };
        let done = crate::kstate::fds::reopen(&[entry], &[], &check);
        if let Some((_, crate::kstate::fds::Reopened::Placeholder(msg))) = done.first() {
            eprintln!("selfckpt: warning: {msg}; each process opens it on its own");
            // SAFETY: closing the placeholder at our own number.
            unsafe { libc::close(at) };
            continue;
        }
        out.push(Pipe {
            kind: "file",
            ino: s.ino,
            // Which description of the file (records of before: 0, one).
            peer: s.peer,
            rd: at,
            wr: at,
        });
    }
    out
}

/// The kinds of a tree's pty entries (`tree::files::shared_ptys`).
const PTMX: &str = crate::tree::files::PTMX;
const PTS: &str = crate::tree::files::PTS;

/// Makes each pty pair the members share (its master in one of them)
/// once, with the settings of the image that holds its master, and opens
/// each recorded slave description of it; numbered `above` or higher.
/// A pair that cannot be made ends the tree's restart (its members'
/// descriptors would be missing).
fn make_ptys(rec: &TreeRecord, images: &[PathBuf], above: i32) -> Vec<Pipe> {
    use crate::kstate::pty;
    let key = crate::image::mac::MacKey::from_env();
    let mut out = Vec::new();
    let at = above + 128;
    // One devpts instance for the whole tree, mounted before any process
    // of it makes a pair (each would hide the others' otherwise).
    let own_pair = images.iter().any(|p| {
        crate::image::read::ImageFile::open_with_key(p, key.as_ref())
            .ok()
            .and_then(|img| Some(img.view().ok()?.kernel.objects.ptys().any(|x| x.ours())))
            .unwrap_or(false)
    });
    if own_pair {
        pty::own_devpts(true);
    }
    for s in rec.shared.iter().filter(|s| s.kind == PTMX) {
        let Some(end) = s.ends.first() else { continue };
        let Some(i) = rec.members.iter().position(|m| m.pid == end.pid) else {
            continue;
        };
        let x = crate::image::read::ImageFile::open_with_key(&images[i], key.as_ref())
            .ok()
            .and_then(|img| {
                let view = img.view().ok()?;
                let found = view
                    .kernel
                    .objects
                    .ptys()
                    .find(|x| x.index as u64 == s.ino && x.ours())
                    .cloned();
                found
            });
        // The queued bytes are in the image of the process that took them.
        let x = x.map(|mut x| {
            if let Some(d) = taken_bytes(rec, images, s.ino) {
                x.to_master_data = d;
            }
            x
        });
        let Some(x) = x else {
            fail(format!(
                "/dev/pts/{}: no image records the pty whose master process {} holds",
                s.ino, end.pid
            ))
        };
        let made = match pty::make_pair(&x, at, true) {
            Ok(m) => m,
            Err(e) => fail(format!("cannot make the pty {} again: {e}", x.name())),
        };
        if let Some(w) = pty::renumbered(&x, &made) {
            eprintln!("selfckpt: warning: {w}");
        }
        if let Err(e) = pty::refill(&made, &x) {
            fail(format!(
                "cannot give {} back the bytes queued toward its master: {e}",
                x.name()
            ));
        }
        for d in rec
            .shared
            .iter()
            .filter(|d| d.kind == PTS && d.ino == s.ino)
        {
            let flags = d.ends.first().map_or(libc::O_RDWR as u32, |e| e.flags);
            match pty::open_slave(&made, flags, at) {
                Ok(fd) => out.push(Pipe {
                    kind: PTS,
                    ino: s.ino,
                    peer: d.peer,
                    rd: fd,
                    wr: fd,
                }),
                Err(e) => fail(format!("cannot open the slave of {} again: {e}", x.name())),
            }
        }
        if let Err(e) = pty::finish(&made, &x) {
            fail(format!("cannot lock {} again: {e}", x.name()));
        }
        let fd = std::os::fd::IntoRawFd::into_raw_fd(made.master);
        out.push(Pipe {
            kind: PTMX,
            ino: s.ino,
            peer: 0,
            rd: fd,
            wr: fd,
        });
    }
    out
}

/// The bytes queued toward the master of pty `index`, from the member
/// image that took them (None: no member did).
fn taken_bytes(rec: &TreeRecord, images: &[PathBuf], index: u64) -> Option<Vec<u8>> {
    let key = crate::image::mac::MacKey::from_env();
    let holders: Vec<u32> = rec
        .shared
        .iter()
        .filter(|s| s.kind == PTMX && s.ino == index)
        .flat_map(|s| s.ends.iter().map(|e| e.pid))
        .collect();
    rec.members
        .iter()
        .zip(images)
        .filter(|(m, _)| holders.contains(&m.pid))
        .find_map(|(_, p)| {
            let img = crate::image::read::ImageFile::open_with_key(p, key.as_ref()).ok()?;
            let view = img.view().ok()?;
            let d = view
                .kernel
                .objects
                .ptys()
                .find(|x| x.index as u64 == index && !x.to_master_data.is_empty())
                .map(|x| x.to_master_data.clone());
            d
        })
}

/// Raises the soft descriptor limit to `need` (at most the hard limit)
/// when it is lower.
fn room_for_fds(need: i32) {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < need as u64 {
            l.rlim_cur = (need as u64).min(l.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

/// The highest descriptor number any member's shared pipes use.
fn max_fd(rec: &TreeRecord) -> i32 {
    rec.shared
        .iter()
        .flat_map(|s| s.ends.iter().map(|e| e.fd))
        .max()
        .unwrap_or(2)
        .max(2)
}

/// What is queued in each shared pipe, from the image of a member that
/// reads it, and its capacity (`F_GETPIPE_SZ`, 0: unknown).
fn pipe_data(rec: &TreeRecord, images: &[PathBuf]) -> Vec<(u64, Vec<u8>, u32)> {
    let key = crate::image::mac::MacKey::from_env();
    let mut out: Vec<(u64, Vec<u8>, u32)> = Vec::new();
    let shared = |ino: u64| rec.shared.iter().any(|s| s.kind == "pipe" && s.ino == ino);
    for p in images {
        let Ok(img) = crate::image::read::ImageFile::open_with_key(p, key.as_ref()) else {
            continue;
        };
        let Ok(view) = img.view() else { continue };
        for pc in &view.kernel.pipes {
            if shared(pc.ino) && !out.iter().any(|(ino, _, _)| *ino == pc.ino) {
                out.push((pc.ino, pc.data.to_vec(), 0));
            }
        }
        for pp in view.kernel.objects.pipes() {
            if let Some(o) = out.iter_mut().find(|(ino, _, _)| *ino == pp.ino) {
                o.2 = o.2.max(pp.size);
            }
        }
    }
    out
}

/// The tree's shared pipes (`record::tree_makes_pipe`; a set written
/// before that rule also lists pipes one member held alone above 2: that
/// member makes them itself).
fn tree_pipes(shared: &[Shared]) -> impl Iterator<Item = &Shared> {
    shared
        .iter()
        .filter(|s| s.kind == "pipe" && crate::tree::record::tree_makes_pipe(&s.ends))
}

/// One pipe per shared pipe, refilled, both ends numbered `above` or
/// higher (close-on-exec: they are dup'ed to their numbers).
fn make_pipes(
    shared: &[Shared],
    data: &[(u64, Vec<u8>, u32)],
    above: i32,
) -> std::io::Result<Vec<Pipe>> {
    let mut out = Vec::new();
    for s in tree_pipes(shared) {
        let mut fds = [0i32; 2];
        // SAFETY: pipe2 writes two descriptors; fcntl/dup on ours.
        unsafe {
            if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let rd = libc::fcntl(fds[0], libc::F_DUPFD_CLOEXEC, above);
            let wr = libc::fcntl(fds[1], libc::F_DUPFD_CLOEXEC, above);
            libc::close(fds[0]);
            libc::close(fds[1]);
            if rd < 0 || wr < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let (bytes, size) = data
                .iter()
                .find(|(ino, _, _)| *ino == s.ino)
                .map_or((&[][..], 0), |(_, d, z)| (d.as_slice(), *z));
            // Its capacity as it was (a failure leaves the default, as
            // for a process of its own: said by `pipes`' own restore).
            let want = (size as usize).max(bytes.len()) as i32;
            if libc::fcntl(wr, libc::F_GETPIPE_SZ) < want {
                libc::fcntl(wr, libc::F_SETPIPE_SZ, want);
            }
            if !bytes.is_empty() {
                let mut off = 0;
                while off < bytes.len() {
                    let n = libc::write(wr, bytes[off..].as_ptr().cast(), bytes.len() - off);
                    if n <= 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    off += n as usize;
                }
            }
            out.push(Pipe {
                kind: "pipe",
                ino: s.ino,
                peer: 0,
                rd,
                wr,
            });
        }
    }
    Ok(out)
}

/// Each member's shared memory objects, as its image names them.
fn shared_memory(images: &[PathBuf]) -> Vec<super::shared::SharedObjects> {
    let key = crate::image::mac::MacKey::from_env();
    let page = crate::capture::sys::page_size() as u64;
    let mut out = Vec::new();
    for p in images {
        let Ok(img) = crate::image::read::ImageFile::open_with_key(p, key.as_ref()) else {
            continue;
        };
        let Ok(view) = img.view() else { continue };
        let memfds: Vec<_> = view.kernel.objects.memfds().cloned().collect();
        let segments: Vec<_> = view.kernel.objects.sysv_segments().copied().collect();
        out.push(super::shared::SharedObjects::new(
            &view.regions,
            &memfds,
            &segments,
            page,
        ));
    }
    out
}

/// Makes every System V semaphore set and message queue the members'
/// images name, each id once (`kstate::sysvipc::restore_all`).
fn sysv_ipc(images: &[PathBuf]) -> Result<(), RestoreError> {
    let key = crate::image::mac::MacKey::from_env();
    let mut all = Vec::new();
    for p in images {
        let img =
            crate::image::read::ImageFile::open_with_key(p, key.as_ref()).map_err(|source| {
                RestoreError::Image {
                    path: p.clone(),
                    source,
                }
            })?;
        let view = img.view().map_err(|source| RestoreError::Image {
            path: p.clone(),
            source,
        })?;
        all.push(view.kernel.objects.clone());
    }
    crate::kstate::sysvipc::restore_all(&all).map_err(RestoreError::Sysv)
}

/// Each message queue several members hold, made once from the entry of
/// an image that kept its messages, numbered `above` or higher.
fn make_mqueues(rec: &TreeRecord, images: &[PathBuf], above: i32) -> Result<Vec<Pipe>, String> {
    let key = crate::image::mac::MacKey::from_env();
    let mut found: Vec<crate::kstate::mqueue::Mqueue> = Vec::new();
    for p in images {
        let Ok(img) = crate::image::read::ImageFile::open_with_key(p, key.as_ref()) else {
            continue;
        };
        let Ok(view) = img.view() else { continue };
        for x in view.kernel.objects.mqueues() {
            let shared = rec
                .shared
                .iter()
                .any(|s| s.kind == "mqueue" && s.ino == x.ino && s.dev == x.dev);
            let have = found.iter().position(|f| (f.dev, f.ino) == (x.dev, x.ino));
            match have {
                _ if !shared => {}
                None => found.push(x.clone()),
                // The image that could read the messages is the one to
                // take them from.
                Some(i) if !found[i].saved && x.saved => found[i] = x.clone(),
                Some(_) => {}
            }
        }
    }
    let mut out = Vec::new();
    for x in &found {
        if !x.saved {
            return Err(format!(
                "message queue {}: no process's image holds its messages",
                crate::image::show::shown(&x.name)
            ));
        }
        let (q, warn) = crate::kstate::mqueue::make(x)?;
        for w in warn {
            eprintln!("selfckpt: warning: {w}");
        }
        // SAFETY: moving our queue descriptor above every member's number.
        let moved = unsafe {
            let m = libc::fcntl(q, libc::F_DUPFD_CLOEXEC, above + 128 + out.len() as i32);
            libc::close(q);
            m
        };
        if moved < 0 {
            return Err(std::io::Error::last_os_error().to_string());
        }
        out.push(Pipe {
            kind: "mqueue",
            ino: x.ino,
            peer: 0,
            rd: moved,
            wr: moved,
        });
    }
    Ok(out)
}

/// The shared sockets as the members' images recorded them.
#[derive(Default)]
struct TreeSockets {
    /// Each shared socket end (with its queue: the first descriptor of a
    /// socket in an image holds it).
    ends: Vec<crate::kstate::sockets::Socket>,
    /// The data in flight of the shared TCP ends.
    flights: Vec<crate::kstate::sockets::inflight::TcpInFlight>,
    /// The addresses the members' TCP listeners listened at.
    listening: Vec<Vec<u8>>,
}

fn socket_ends(rec: &TreeRecord, images: &[PathBuf]) -> TreeSockets {
    let key = crate::image::mac::MacKey::from_env();
    let mut out = TreeSockets::default();
    let kind_of = |ino: u64| {
        rec.shared
            .iter()
            .find(|s| matches!(s.kind.as_str(), "socket" | "unconnected") && s.ino == ino)
            .map(|s| s.kind.as_str())
    };
    let shared = |ino: u64| kind_of(ino).is_some();
    for p in images {
        let Ok(img) = crate::image::read::ImageFile::open_with_key(p, key.as_ref()) else {
            continue;
        };
        let Ok(view) = img.view() else { continue };
        let flights: Vec<_> = view.kernel.objects.tcp_in_flight().collect();
        for x in view.kernel.objects.sockets() {
            if x.role == crate::kstate::sockets::ROLE_LISTEN
                && matches!(x.family as i32, libc::AF_INET | libc::AF_INET6)
            {
                out.listening.push(x.local.clone());
            }
            if !shared(x.ino) || out.ends.iter().any(|o| o.ino == x.ino) {
                continue;
            }
            let flight = flights.iter().find(|f| f.fd == x.fd && f.ino == x.ino);
            let is_tcp = x.family as i32 != libc::AF_UNIX;
            // A TCP end as the descriptor that kept its data in flight
            // has it.
            if is_tcp && flight.is_none() && kind_of(x.ino) == Some("socket") {
                continue;
            }
            out.ends.push(x.clone());
            out.flights.extend(flight.map(|f| (*f).clone()));
        }
    }
    out
}

/// One connection per connection between members (a socketpair for a
/// UNIX one, TCP between its addresses for a TCP one), each end with its
/// queue, options and shutdown state, numbered `above` or higher.
fn make_sockets(rec: &TreeRecord, socks: &TreeSockets, above: i32) -> Result<Vec<Pipe>, String> {
    use crate::kstate::sockets::{inflight, restore};
    let mut out: Vec<Pipe> = Vec::new();
    let find = |ino: u64| {
        socks
            .ends
            .iter()
            .find(|x| x.ino == ino)
            .ok_or_else(|| format!("socket {ino} is in no member's image"))
    };
    // The sockets without a peer several members hold (a server's
    // listener and its forked workers): made once, bound first.
    for s in rec.shared.iter().filter(|s| s.kind == "unconnected") {
        let x = find(s.ino)?;
        let mut warn = Vec::new();
        let made = restore::make_unconnected(x, above, &mut warn);
        for w in warn {
            eprintln!("selfckpt: warning: {w}");
        }
        let fd = made?;
        out.push(Pipe {
            kind: "unconnected",
            ino: s.ino,
            peer: 0,
            rd: fd,
            wr: fd,
        });
    }
    for s in rec.shared.iter().filter(|s| s.kind == "socket") {
        if out.iter().any(|p| p.ino == s.ino) {
            continue;
        }
        let (a, b) = (find(s.ino)?, find(s.peer)?);
        let (a, b) = if a.family as i32 == libc::AF_UNIX {
            restore::make_connection(a, b, above)?
        } else {
            let flight = |x: &crate::kstate::sockets::Socket| {
                socks
                    .flights
                    .iter()
                    .find(|f| f.ino == x.ino)
                    .ok_or_else(|| format!("socket {}: its data in flight is in no image", x.ino))
            };
            let end_a = inflight::End {
                sock: a,
                flight: flight(a)?,
            };
            let end_b = inflight::End {
                sock: b,
                flight: flight(b)?,
            };
            let a_accepts = socks
                .listening
                .iter()
                .any(|l| restore::listens_at(l, &a.local));
            let srv = if a_accepts { a } else { b };
            // A listener several members share, made above: the
            // connection is made through it (another at its port could
            // not listen).
            let through = rec
                .shared
                .iter()
                .filter(|u| u.kind == "unconnected")
                .filter_map(|u| find(u.ino).ok())
                .find(|x| {
                    x.role == crate::kstate::sockets::ROLE_LISTEN
                        && restore::listens_at(&x.local, &srv.local)
                })
                .and_then(|x| out.iter().find(|p| p.ino == x.ino).map(|p| p.rd));
            let mut warn = Vec::new();
            let made =
                restore::make_tcp_connection(end_a, end_b, a_accepts, through, above, &mut warn);
            for w in warn {
                eprintln!("selfckpt: warning: {w}");
            }
            made?
        };
        for (ino, fd) in [(s.ino, a), (s.peer, b)] {
            out.push(Pipe {
                kind: "socket",
                ino,
                peer: 0,
                rd: fd,
                wr: fd,
            });
        }
    }
    Ok(out)
}

/// Puts this member's ends of the shared pipes at their numbers (with
/// their flags) and closes the tree's copies; returns the numbers placed.
fn place_fds(shared: &[Shared], pipes: &[Pipe], pid: u32) -> Vec<i32> {
    let mut placed = Vec::new();
    for s in shared {
        let Some(p) = pipes.iter().find(|p| {
            p.ino == s.ino
                && p.kind == s.kind
                && (!matches!(p.kind, PTS | "file") || p.peer == s.peer)
        }) else {
            continue;
        };
        for e in s.ends.iter().filter(|e| e.pid == pid) {
            let from = if e.flags as i32 & libc::O_ACCMODE == libc::O_RDONLY {
                p.rd
            } else {
                p.wr
            };
            let cloexec = if e.flags as i32 & libc::O_CLOEXEC != 0 {
                libc::O_CLOEXEC
            } else {
                0
            };
            if p.kind == "mqueue" {
                // A description of its own, with its access mode.
                match crate::kstate::mqueue::place(p.rd, e.fd, e.flags) {
                    Ok(()) => placed.push(e.fd),
                    Err(err) => eprintln!(
                        "selfckpt: warning: process {pid}: cannot put its message queue at fd {}: {err}",
                        e.fd
                    ),
                }
                continue;
            }
            // SAFETY: dup3 of our pipe onto the member's number, then its
            // status flags.
            let ok = unsafe {
                libc::dup3(from, e.fd, cloexec) == e.fd
                    && (p.kind == "file"
                        || libc::fcntl(e.fd, libc::F_SETFL, e.flags as i32 & libc::O_NONBLOCK) == 0)
            };
            if ok {
                placed.push(e.fd);
            } else {
                eprintln!(
                    "selfckpt: warning: process {pid}: cannot put its pipe at fd {}: {}",
                    e.fd,
                    std::io::Error::last_os_error()
                );
            }
        }
    }
    for p in pipes {
        // SAFETY: closing the tree's copies (the placed ones stay).
        unsafe {
            libc::close(p.rd);
            if p.wr != p.rd {
                libc::close(p.wr);
            }
        }
    }
    placed
}
