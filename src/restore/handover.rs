//! The hand-over to the restorer blob: reopen the image's files, build the
//! blob's argument block (one mapping: `restorer_abi::RestorerArgs` and its
//! tables, filled by `super::args`), copy the blob to a free address, block
//! every signal, arm the program's interval timers and jump. From
//! `jump_to_restorer` on there is no way back: every check must have been
//! done before.

use super::args::{self, Own, Span};
use super::layout::{own_maps, Plan};
use super::{RestartOptions, RestoreError};
use crate::capture::maps::RegionKind;
use crate::image::model::FdEntry;
use crate::restorer_abi::Move;
use std::os::unix::ffi::OsStrExt;

/// The restorer code to copy: its bytes and the offset of its entry.
pub struct Blob<'a> {
    pub code: &'a [u8],
    pub entry: usize,
}

const STACK_LEN: u64 = 64 << 10;

/// Subtracts `keep` ranges from `ranges`: what is in `ranges` and in no
/// `keep` range, in increasing order. Both lists may be in any order and
/// overlap; sorting them makes this O((n + m) log (n + m)), one sweep.
fn subtract(ranges: &[(u64, u64)], keep: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let sorted_merged = |list: &[(u64, u64)]| {
        let mut v: Vec<(u64, u64)> = list.iter().copied().filter(|r| r.0 < r.1).collect();
        v.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(v.len());
        for (s, e) in v {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        merged
    };
    let keep = sorted_merged(keep);
    let mut out = Vec::new();
    let mut k = 0;
    for (s, e) in sorted_merged(ranges) {
        let mut at = s;
        // Keep ranges wholly before this one can no longer cut anything.
        while k < keep.len() && keep[k].1 <= at {
            k += 1;
        }
        let mut j = k;
        while at < e && j < keep.len() && keep[j].0 < e {
            let (ks, ke) = keep[j];
            if ks > at {
                out.push((at, ks));
            }
            at = at.max(ke);
            j += 1;
        }
        if at < e {
            out.push((at, e));
        }
    }
    out
}

fn io(what: &str) -> impl Fn(std::io::Error) -> RestoreError + '_ {
    move |e| RestoreError::Io(what.to_string(), e)
}

fn map_anon(at: u64, len: u64) -> Result<(), RestoreError> {
    // SAFETY: a new private mapping at a reserved free address.
    let p = unsafe {
        libc::mmap(
            at as *mut libc::c_void,
            len as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED || p as u64 != at {
        return Err(RestoreError::Io(
            format!("cannot map restorer memory at {at:#x}"),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Puts the process that becomes the program in a process group of its
/// own, so that its `kill(0, SIG)` or `killpg` reaches itself and its
/// children, never whoever ran the restart (a shell, a test harness). If
/// the restarter's group had the terminal (`stdin`, a tty, in the
/// foreground), the new group gets it, so that the program still reads
/// the terminal and gets its Ctrl-C. A program that was a session leader
/// (META, format 1.7) leads a session of its own again (`setsid`: it then
/// has no controlling terminal, as a daemon that called `setsid` had none
/// of the restarter's); where that is impossible (with `--tids new` the
/// restarter itself may already lead its group) it says so and leads a
/// group of its own. Other failures are harmless and ignored.
pub(crate) fn own_process_group(role: Option<u8>) {
    if role == Some(crate::image::model::SESSION_LEADER) {
        // SAFETY: setsid takes no arguments. Where it fails, the caller
        // has warned already (`session_leader_warning`).
        if unsafe { libc::setsid() } >= 0 {
            return;
        }
    }
    // SAFETY: process-group calls on this process and its terminal; every
    // signal is blocked (SIGTTOU included), so tcsetpgrp from what becomes
    // a background group does not stop us.
    unsafe {
        let was_foreground = libc::isatty(0) == 1 && libc::tcgetpgrp(0) == libc::getpgrp();
        if libc::setpgid(0, 0) == 0 && was_foreground {
            libc::tcsetpgrp(0, libc::getpid());
        }
    }
}

/// Before anything of the program's is in place (its descriptors may be
/// this process's stdio later): says so when the program led its session
/// and this restart cannot make it lead one again (`setsid` fails for a
/// process that already leads its group, as `selfckpt restart --tids new`
/// started from a shell does).
pub fn session_leader_warning(role: Option<u8>) {
    // SAFETY: getpgrp, getsid(0) and getpid take no arguments.
    let (leads_group, leads_session) = unsafe {
        (
            libc::getpgrp() == libc::getpid(),
            libc::getsid(0) == libc::getpid(),
        )
    };
    // A tree restart made the session already (each process once): no
    // warning then.
    if role == Some(crate::image::model::SESSION_LEADER) && leads_group && !leads_session {
        eprintln!(
            "selfckpt: warning: the program led its session; this restart leads its process \
             group and cannot make it lead a session again (`--tids exact` can): it leads a \
             process group of its own"
        );
    }
}

/// Enters the program's working directory; one that was deleted (its
/// path ends with the kernel's " (deleted)") is the deleted directory a
/// descriptor of the program holds under that name (made again already:
/// both are one directory, as they were), else made a deleted directory
/// again (`kstate::deleted_dir`).
fn enter_cwd(cwd: &[u8], fds: &[super::layout::OwnedFd]) -> std::io::Result<()> {
    if !cwd.ends_with(b" (deleted)") {
        return std::env::set_current_dir(std::ffi::OsStr::from_bytes(cwd));
    }
    let dir = crate::image::model::FdKind::Directory as u32;
    if let Some(f) = fds.iter().find(|f| f.kind == dir && f.path == cwd) {
        // SAFETY: fchdir to a descriptor of the program's, in place.
        if unsafe { libc::fchdir(f.fd) } == 0 {
            return Ok(());
        }
    }
    crate::kstate::deleted_dir::made_again(cwd, |dir| std::env::set_current_dir(dir))
}

/// Reopens files, prepares the restorer and jumps. Returns only on failure.
pub fn handover(
    plan: &mut Plan,
    blob: &Blob,
    opts: &RestartOptions,
) -> Result<std::convert::Infallible, RestoreError> {
    let page = plan.page;
    // A tree restart put the descriptors shared with other members in
    // place already (`super::tree`): they stay as they are.
    let placed: Vec<i32> = opts
        .tree
        .as_ref()
        .map_or_else(Vec::new, |t| t.placed.clone());
    // The pty that was the controlling terminal of a session leader: its
    // own pair, or one the tree placed.
    let ptys: Vec<&crate::kstate::pty::Pty> = plan.objects.ptys().collect();
    let ctty = crate::kstate::pty::controlling(&ptys, &placed);
    // ... and their kernel objects are not made again here.
    // ... and their kernel objects are not made again here. A TCP end the
    // tree made has SO_REUSEADDR set until this process's listeners
    // listen again (`kstate::sockets::restore::make_tcp_connection`): the
    // program's value is given back after them.
    let tcp_reuse: Vec<(i32, bool)> = plan
        .objects
        .sockets()
        .filter(|s| placed.contains(&s.fd) && s.family as i32 != libc::AF_UNIX)
        .map(|s| (s.fd, s.opts.reuseaddr))
        .collect();
    plan.objects.leave_out_fds(&placed);

    // Files: close ours (above stdio, but the shared memory objects',
    // moved above the program's numbers), reopen the image's at their
    // numbers.
    let objects_above = plan.fds.iter().map(|f| f.fd).max().unwrap_or(2).max(2) + 1;
    let object_fds = plan.shared.lift_fds(objects_above);
    let ours: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map_err(io("cannot list /proc/self/fd"))?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2 && !object_fds.contains(&fd))
        .filter(|fd| !placed.contains(fd))
        .collect();
    for fd in ours {
        // SAFETY: closing our own descriptors; none is in use any more (the
        // image file was read completely).
        unsafe { libc::close(fd) };
    }
    // Descriptors 0-2: the restarter's where they were the original run's
    // stdio, reopened like any file otherwise.
    let image_fds: Vec<_> = plan.fds.iter().map(|f| (f.fd, f.stamp)).collect();
    let mut fates = super::stdio::fates(&image_fds, opts.original_stdio);
    for fd in placed.iter().filter(|fd| (0..=2).contains(*fd)) {
        fates[*fd as usize] = super::stdio::Fate::Inherit(*fd);
    }
    let above = plan.fds.iter().map(|f| f.fd).max().unwrap_or(2).max(2) + 1;
    {
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
    }
    let saved = super::stdio::apply(&fates, above);
    use crate::kstate::objects::Stage;
    for msg in plan.objects.restore(Stage::Early) {
        saved.say(&format!("selfckpt: warning: {msg}"));
    }
    // The event and timer descriptors and the kernel objects are made
    // anew below, not reopened.
    let made_anew: std::collections::HashSet<i32> = plan
        .events
        .fds()
        .into_iter()
        .chain(plan.objects.fds())
        .collect();
    let entries: Vec<FdEntry> = plan
        .fds
        .iter()
        .filter(|f| !(0..=2).contains(&f.fd) || fates[f.fd as usize] == super::stdio::Fate::Reopen)
        .filter(|f| !made_anew.contains(&f.fd))
        .filter(|f| !placed.contains(&f.fd))
        .map(|f| FdEntry {
            fd: f.fd,
            kind: f.kind,
            flags: f.flags,
            offset: f.offset,
            path: &f.path,
            stamp: f.stamp,
        })
        .collect();
    let pipes: Vec<crate::kstate::PipeContents> = plan
        .pipes
        .iter()
        .map(|(ino, data)| crate::kstate::PipeContents { ino: *ino, data })
        .collect();
    let check = super::reopen_check(opts.changed_fds);
    for (_, what) in crate::kstate::fds::reopen(&entries, &pipes, &check) {
        if let crate::kstate::fds::Reopened::Placeholder(msg) = what {
            saved.say(&format!(
                "selfckpt: warning: {msg}; /dev/null stands in its place"
            ));
        }
    }
    for msg in plan.shared.install_fds() {
        saved.say(&format!("selfckpt: warning: {msg}"));
    }
    // A deleted file the program also maps shared opens on the object its
    // mappings were made from.
    let shared = &plan.shared;
    for msg in plan
        .objects
        .restore_with(Stage::Descriptors, &|dev, ino| shared.fd_of(dev, ino))
    {
        saved.say(&format!("selfckpt: warning: {msg}"));
    }
    for &(fd, reuse) in &tcp_reuse {
        let v = reuse as libc::c_int;
        // SAFETY: setsockopt reads one int; `fd` is the placed socket.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_REUSEADDR,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
    }
    plan.shared.close_fds();
    // Every other descriptor is back: the epoll registrations can point
    // at their numbers.
    for msg in plan.events.restore() {
        saved.say(&format!("selfckpt: warning: {msg}"));
    }
    for msg in plan.objects.restore(Stage::Late) {
        saved.say(&format!("selfckpt: warning: {msg}"));
    }
    enter_cwd(&plan.cwd, &plan.fds).map_err(|e| {
        RestoreError::Io(
            format!(
                "cannot enter the program's directory {}",
                crate::image::show::shown(&plan.cwd)
            ),
            e,
        )
    })?;
    // SAFETY: umask has no memory-safety preconditions.
    unsafe { libc::umask(plan.umask as libc::mode_t) };
    let exe_fd = std::fs::File::open(std::ffi::OsStr::from_bytes(&plan.exe_path))
        .map(std::os::fd::IntoRawFd::into_raw_fd)
        .unwrap_or(-1);

    // The restorer's own memory: blob, stack, arguments.
    plan.refresh_own()?;
    let blob_len = (blob.code.len() as u64).div_ceil(page) * page;
    let blob_at = plan.pick(blob_len)?;
    let stack_at = plan.pick(STACK_LEN)?;
    let args_len = args::room(plan).div_ceil(page) * page;
    let args_at = plan.pick(args_len)?;
    map_anon(blob_at, blob_len)?;
    map_anon(stack_at, STACK_LEN)?;
    map_anon(args_at, args_len)?;

    // What to unmap: everything of ours but the staging areas, the
    // restorer's memory and the kernel's special mappings.
    let mut keep: Vec<(u64, u64)> = plan
        .regions
        .iter()
        .filter_map(|r| r.staging.map(|s| (s, s + (r.end - r.start))))
        .collect();
    keep.push((blob_at, blob_at + blob_len));
    keep.push((stack_at, stack_at + STACK_LEN));
    keep.push((args_at, args_at + args_len));
    let maps = own_maps()?;
    let special = |k: RegionKind| {
        matches!(
            k,
            RegionKind::Vdso | RegionKind::Vvar | RegionKind::VvarVclock | RegionKind::Vsyscall
        )
    };
    let ranges: Vec<(u64, u64)> = maps
        .iter()
        .filter(|m| !special(m.2))
        .map(|m| (m.0, m.1))
        .collect();
    let unmap = subtract(&ranges, &keep);

    // Moves: the vdso group first (through a temporary place if the old
    // and new positions overlap), then every staged region.
    let group =
        |kinds: &mut dyn Iterator<Item = (u64, u64, RegionKind)>| -> Vec<(u64, u64, RegionKind)> {
            kinds
                .filter(|m| special(m.2) && m.2 != RegionKind::Vsyscall)
                .collect()
        };
    let own_vdso = group(&mut maps.iter().copied());
    let img_vdso = group(&mut plan.regions.iter().map(|r| (r.start, r.end, r.kind)));
    let mut moves: Vec<Move> = Vec::new();
    let keep_prot = |src, dst, len| Move {
        src,
        dst,
        len,
        prot: Move::KEEP_PROT,
    };
    if own_vdso != img_vdso && !own_vdso.is_empty() {
        let overlaps = own_vdso
            .iter()
            .any(|o| img_vdso.iter().any(|i| o.0 < i.1 && i.0 < o.1));
        let pairs: Vec<(u64, u64, u64)> = own_vdso
            .iter()
            .zip(&img_vdso)
            .map(|(o, i)| (o.0, i.0, o.1 - o.0))
            .collect();
        if overlaps {
            let span = own_vdso.last().map_or(0, |l| l.1) - own_vdso[0].0;
            let tmp = plan.pick(span)?;
            for &(src, _, len) in &pairs {
                moves.push(keep_prot(src, tmp + (src - own_vdso[0].0), len));
            }
            for &(src, dst, len) in &pairs {
                moves.push(keep_prot(tmp + (src - own_vdso[0].0), dst, len));
            }
        } else {
            for &(src, dst, len) in &pairs {
                moves.push(keep_prot(src, dst, len));
            }
        }
    }
    for r in &plan.regions {
        if let Some(s) = r.staging {
            moves.push(Move {
                src: s,
                dst: r.start,
                len: r.end - r.start,
                prot: r.prot as u64,
            });
        }
    }

    let own = Own {
        blob: Span {
            at: blob_at,
            len: blob_len,
        },
        args: Span {
            at: args_at,
            len: args_len,
        },
        stack: Span {
            at: stack_at,
            len: STACK_LEN,
        },
    };
    args::write(plan, &own, &unmap, &moves, exe_fd)?;
    // SAFETY: the blob's mapping was just created with this size, writable.
    unsafe {
        std::ptr::copy_nonoverlapping(blob.code.as_ptr(), blob_at as *mut u8, blob.code.len());
        if libc::mprotect(
            blob_at as *mut libc::c_void,
            blob_len as usize,
            libc::PROT_READ | libc::PROT_EXEC,
        ) != 0
        {
            return Err(io("cannot make the restorer executable")(
                std::io::Error::last_os_error(),
            ));
        }
    }
    if opts.verbose {
        saved.say(&format!(
            "selfckpt: handing over: {} unmaps, {} moves, {} threads",
            unmap.len(),
            moves.len(),
            plan.threads.len()
        ));
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // Every signal blocked, glibc's own too (its sigprocmask never blocks
    // SIGCANCEL and SIGSETXID: a pthread_cancel pending at the checkpoint
    // would then run glibc's cancellation handler inside the restart entry,
    // whose unwinding finds the restorer's frames and aborts). The restored
    // threads inherit this mask and get their own back from their frames.
    crate::capture::sys::block_every_signal();
    if opts.tree.is_none() {
        // A tree restart made each process's group and session already.
        own_process_group(plan.session_role);
    }
    // Its session made, the leader takes its terminal back.
    if let Some((fd, foreground)) = ctty {
        if let Err(msg) = crate::kstate::pty::take_controlling(fd, foreground) {
            saved.say(&format!("selfckpt: warning: {msg}"));
        }
    }
    // Last, so that no time the restart spends before is counted: the
    // program's timers run from here (this process becomes the program in
    // both restart paths). A signal one raises early waits, blocked, for
    // the program's threads.
    crate::kstate::itimers::arm(&plan.itimers)
        .map_err(io("cannot arm the program's interval timers"))?;
    saved.finish();
    // SAFETY: every check is done; the blob, its stack and its arguments
    // are in place; the restorer takes over the process from here.
    unsafe {
        crate::arch::jump_to_restorer(blob_at + blob.entry as u64, args_at, stack_at + STACK_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtract_cuts_holes() {
        let r = subtract(&[(0, 100), (200, 300)], &[(10, 20), (250, 400)]);
        assert_eq!(r, vec![(0, 10), (20, 100), (200, 250)]);
        // Unsorted, overlapping keeps; a keep spanning two ranges.
        let r = subtract(
            &[(200, 300), (0, 100), (400, 500)],
            &[(90, 210), (15, 30), (20, 40), (450, 460)],
        );
        assert_eq!(
            r,
            vec![(0, 15), (40, 90), (210, 300), (400, 450), (460, 500)]
        );
    }

    /// The naive definition, page by page, against the sweep.
    #[test]
    fn subtract_matches_its_definition() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for _ in 0..200 {
            let mut list = |count: u64| -> Vec<(u64, u64)> {
                (0..rnd(count))
                    .map(|_| {
                        let s = rnd(64);
                        (s, s + rnd(12))
                    })
                    .collect()
            };
            let (ranges, keep) = (list(6), list(8));
            let inside = |l: &[(u64, u64)], p: u64| l.iter().any(|&(s, e)| s <= p && p < e);
            let want: Vec<u64> = (0..80)
                .filter(|&p| inside(&ranges, p) && !inside(&keep, p))
                .collect();
            let got = subtract(&ranges, &keep);
            let got_pages: Vec<u64> = got.iter().flat_map(|&(s, e)| s..e).collect();
            assert_eq!(got_pages, want, "{ranges:?} - {keep:?} = {got:?}");
            assert!(got.windows(2).all(|w| w[0].1 <= w[1].0));
        }
    }
}
