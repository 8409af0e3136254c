//! Regular files the members share through one open file description (a
//! file opened before a fork: one offset for all of them), found at the
//! freeze (every member holds its forks and exits) from `/proc/PID/fd`,
//! `/proc/PID/fdinfo` and `kcmp(KCMP_FILE)`. A tree restart opens each
//! such file once and gives every member the same description again.
//!
//! Ordinary Rust, run by the root's checkpoint thread before anything is
//! suspended. Must never: call two descriptors one description without
//! kcmp saying so.

use super::record::{End, Shared};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;

const KCMP_FILE: libc::c_int = 0;

/// True if `fd1` of `pid1` and `fd2` of `pid2` are one open file
/// description.
fn same_description(pid1: u32, fd1: i32, pid2: u32, fd2: i32) -> bool {
    // SAFETY: kcmp compares kernel objects; it reads no memory of ours.
    let r = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            pid1 as libc::c_long,
            pid2 as libc::c_long,
            KCMP_FILE as libc::c_long,
            fd1 as libc::c_long,
            fd2 as libc::c_long,
        )
    };
    r == 0
}

/// The open-file flags of `fd` of `pid` (fdinfo's `flags:`, octal).
fn flags(pid: u32, fd: i32) -> Option<u32> {
    let t = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).ok()?;
    let v = t.lines().find_map(|l| l.strip_prefix("flags:"))?;
    u32::from_str_radix(v.trim(), 8).ok()
}

/// Regular files held by several of `pids` through one description
/// (the run's stdio, `outside` inodes, left out: it comes from outside).
pub fn shared_files(pids: &[u32], outside: &[u64]) -> Vec<Shared> {
    let mut by_file: BTreeMap<(u64, u64), Vec<(u32, i32)>> = BTreeMap::new();
    for &pid in pids {
        let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for e in rd.flatten() {
            let Some(fd) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            let Ok(md) = std::fs::metadata(e.path()) else {
                continue;
            };
            // A message queue is a file too, made again by its own kind;
            // a member's reserved descriptors are its checkpointer's.
            if md.is_file()
                && !std::fs::read_link(e.path())
                    .is_ok_and(|l| crate::fdreserve::is_reserve_link(&l))
                && !outside.contains(&md.ino())
                && !super::owns_fd(fd)
                && !crate::kstate::mqueue::is_mqueue_path(&e.path())
            {
                by_file
                    .entry((md.dev(), md.ino()))
                    .or_default()
                    .push((pid, fd));
            }
        }
    }
    let mut out = Vec::new();
    for ((_, ino), mut holders) in by_file {
        // Several descriptions of one file: each its own entry, told
        // apart by `peer` (its number among the file's, from 1).
        let mut description = 0;
        while let Some((p0, f0)) = holders.pop() {
            let (same, rest): (Vec<_>, Vec<_>) = holders
                .into_iter()
                .partition(|&(p, f)| same_description(p0, f0, p, f));
            holders = rest;
            let mut ends: Vec<(u32, i32)> = same;
            ends.push((p0, f0));
            let mut pids: Vec<u32> = ends.iter().map(|e| e.0).collect();
            pids.sort_unstable();
            pids.dedup();
            if pids.len() < 2 {
                continue;
            }
            ends.sort_unstable();
            description += 1;
            out.push(Shared {
                kind: "file".into(),
                ino,
                peer: description,
                dev: 0,
                ends: ends
                    .into_iter()
                    .filter_map(|(pid, fd)| {
                        Some(End {
                            pid,
                            fd,
                            flags: flags(pid, fd)?,
                        })
                    })
                    .collect(),
            });
        }
    }
    out
}

/// The kind of a tree entry for a pty master: `ino` is the pty's number.
pub const PTMX: &str = "ptmx";
/// The kind of a tree entry for one open description of a pty's slave:
/// `ino` is the pty's number, `peer` the description's (from 1).
pub const PTS: &str = "pts";

/// Open descriptions of deleted files that several members share, one
/// sentence each: a restart gives each member a copy of its own (what one
/// writes, the others would not see), so it refuses them unless told
/// (`shared_deleted`). The rule of both sides: the root names them at the
/// checkpoint (`round::refused`), the restart refuses them
/// (`restore::tree`). `set`: the set's directory, with the members'
/// images.
pub fn shared_deleted(set: &std::path::Path, rec: &super::record::TreeRecord) -> Vec<String> {
    let key = crate::image::mac::MacKey::from_env();
    let mut out = Vec::new();
    // A file the members also map shared is made once by the tree restart
    // (its descriptors open on that object): it stays one.
    let made_once = |ino: u64| {
        rec.shared
            .iter()
            .any(|m| m.kind == "memory" && m.ino == ino)
    };
    for s in rec
        .shared
        .iter()
        .filter(|s| s.kind == "file" && !made_once(s.ino))
    {
        let mut pids: Vec<u32> = s.ends.iter().map(|e| e.pid).collect();
        pids.sort_unstable();
        pids.dedup();
        let (Some(e), true) = (s.ends.first(), pids.len() > 1) else {
            continue;
        };
        let Some(m) = rec.members.iter().find(|m| m.pid == e.pid) else {
            continue;
        };
        let img = crate::image::read::ImageFile::open_with_key(&set.join(&m.image), key.as_ref());
        let Some(view) = img.as_ref().ok().and_then(|i| i.view().ok()) else {
            continue;
        };
        if let Some(f) = view
            .kernel
            .fds
            .iter()
            // memfds are their own kind (`kstate::memfd`), not files here.
            .find(|f| {
                f.fd == e.fd && f.path.ends_with(b" (deleted)") && !f.path.starts_with(b"/memfd:")
            })
        {
            let who: Vec<String> = pids.iter().map(u32::to_string).collect();
            out.push(format!(
                "processes {} share the deleted file {} (one open file description): each would \
                 come back with a copy of its own, and what one writes the others would not see",
                who.join(", "),
                crate::image::show::shown(f.path)
            ));
        }
    }
    out
}

/// The pty a descriptor of `pid` is: (number, master).
fn pty_end(pid: u32, fd: i32, md: &std::fs::Metadata) -> Option<(u32, bool)> {
    use std::os::unix::fs::FileTypeExt;
    if !md.file_type().is_char_device() {
        return None;
    }
    // SAFETY: stat is plain old data; only its type and rdev are read.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    st.st_mode = libc::S_IFCHR;
    st.st_rdev = md.rdev();
    crate::kstate::pty::pty_of(&st, || {
        let t = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).ok()?;
        let v = t.lines().find_map(|l| l.strip_prefix("tty-index:"))?;
        v.trim().parse().ok()
    })
}

/// The ptys whose master a member holds and whose descriptors are in more
/// than one member: one `ptmx` entry for the master's holders, one `pts`
/// entry per open description of its slave (told apart with kcmp). A
/// tree restart makes each such pair once. A pty all of whose
/// descriptors are in one process is that process's own to restore; one
/// whose master is outside the tree (the user's terminal) is not ours.
pub fn shared_ptys(pids: &[u32]) -> Vec<Shared> {
    // number -> (pid, fd, master)
    let mut by_index: BTreeMap<u32, Vec<(u32, i32, bool)>> = BTreeMap::new();
    for &pid in pids {
        let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for e in rd.flatten() {
            let Some(fd) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            if super::owns_fd(fd) {
                continue;
            }
            let Ok(md) = std::fs::metadata(e.path()) else {
                continue;
            };
            if let Some((index, master)) = pty_end(pid, fd, &md) {
                by_index.entry(index).or_default().push((pid, fd, master));
            }
        }
    }
    let mut out = Vec::new();
    for (index, mut ends) in by_index {
        let mut pids: Vec<u32> = ends.iter().map(|e| e.0).collect();
        pids.sort_unstable();
        pids.dedup();
        if pids.len() < 2 || !ends.iter().any(|e| e.2) {
            continue;
        }
        ends.sort_unstable();
        let end = |&(pid, fd, _): &(u32, i32, bool)| {
            Some(End {
                pid,
                fd,
                flags: flags(pid, fd)?,
            })
        };
        let (masters, mut slaves): (Vec<_>, Vec<_>) = ends.into_iter().partition(|e| e.2);
        out.push(Shared {
            kind: PTMX.into(),
            ino: index as u64,
            peer: 0,
            dev: 0,
            ends: masters.iter().filter_map(end).collect(),
        });
        let mut desc = 0u64;
        while let Some(first) = slaves.first().copied() {
            let (same, rest): (Vec<_>, Vec<_>) = slaves
                .into_iter()
                .partition(|&(p, f, _)| same_description(first.0, first.1, p, f));
            slaves = rest;
            desc += 1;
            out.push(Shared {
                kind: PTS.into(),
                ino: index as u64,
                peer: desc,
                dev: 0,
                ends: same.iter().filter_map(end).collect(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_file_inherited_by_fork_is_one_description_a_reopened_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"x").unwrap();
        let shared = std::fs::File::open(&p).unwrap();
        let again = std::fs::File::open(&p).unwrap();
        // SAFETY: the child only sleeps and exits.
        let child = unsafe { libc::fork() };
        if child == 0 {
            std::thread::sleep(std::time::Duration::from_millis(400));
            // SAFETY: leaving the forked child.
            unsafe { libc::_exit(0) };
        }
        let me = std::process::id();
        let c = child as u32;
        assert!(same_description(
            me,
            shared.as_raw_fd(),
            c,
            shared.as_raw_fd()
        ));
        assert!(!same_description(
            me,
            shared.as_raw_fd(),
            c,
            again.as_raw_fd()
        ));
        let found = shared_files(&[me, c], &[]);
        let ours: Vec<_> = found
            .iter()
            .filter(|s| s.ino == shared.metadata().unwrap().ino())
            .collect();
        // One description shared by both (the fd `shared`), one by both
        // too (`again`, also inherited): two entries, each in 2 processes.
        assert_eq!(ours.len(), 2, "{found:?}");
        assert!(ours.iter().all(|s| s.ends.len() == 2));
        // SAFETY: reaping our child.
        unsafe { libc::waitpid(child, std::ptr::null_mut(), 0) };
    }
}
