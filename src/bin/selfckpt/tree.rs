//! Tree image sets for the command line: which set is the newest valid
//! one, verifying every member of a set, and showing the tree
//! (`inspect SET`). The sets themselves are `selfckpt::tree::set`.
//!
//! Must never: take a set whose record or any member's image fails its
//! checks as valid.

use selfckpt::tree::record::TreeRecord;
use selfckpt::tree::set::{self, SetInfo};
use std::path::{Path, PathBuf};

/// Verifies the record and every member's image (every checksum).
pub fn verify_set(path: &Path) -> Result<TreeRecord, String> {
    let rec = TreeRecord::load(path).map_err(|e| e.to_string())?;
    for m in &rec.members {
        let p = path.join(&m.image);
        crate::scan(&p)
            .map_err(|e| format!("member {} ({}): {}: {e}", m.pid, m.program, p.display()))?;
    }
    Ok(rec)
}

/// The newest set in `dir` (of `instance`, if given) that verifies, with
/// its creation time; damaged ones are reported and skipped.
pub fn newest_valid_set(dir: &Path, instance: Option<&str>) -> Option<(PathBuf, u64)> {
    let sets = set::list(dir, instance, &mut |p, why| {
        eprintln!("selfckpt: skipping {}: {why}", p.display())
    });
    for s in sets.into_iter().rev() {
        match verify_set(&s.path) {
            Ok(rec) => return Some((s.path, rec.created_unix_ns)),
            Err(e) => eprintln!("selfckpt: skipping damaged set {}: {e}", s.path.display()),
        }
    }
    None
}

/// The sets in `dir`, oldest first (for ls and gc).
pub fn sets(dir: &Path) -> Vec<SetInfo> {
    set::list(dir, None, &mut |p, why| {
        eprintln!("selfckpt: {}: {why}", p.display())
    })
}

/// `inspect SET`: the tree, then each member's image summary line.
pub fn inspect_set(path: &Path, json: bool) -> Result<(), String> {
    let rec = TreeRecord::load(path).map_err(|e| e.to_string())?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rec).map_err(|e| e.to_string())?
        );
        return Ok(());
    }
    println!("tree image set {}", path.display());
    println!(
        "  record {} {}, sequence {}, taken {} UTC, root pid {}",
        rec.format,
        rec.version,
        rec.sequence,
        crate::ls::utc(rec.created_unix_ns),
        rec.root
    );
    fn show(rec: &TreeRecord, pid: u32, depth: usize) {
        let pad = "  ".repeat(depth + 1);
        if let Some(m) = rec.member(pid) {
            println!(
                "{pad}{} {} (ppid {}, pgid {}, sid {}) image {}",
                m.pid, m.program, m.ppid, m.pgid, m.sid, m.image
            );
        } else if let Some(z) = rec.zombies.iter().find(|z| z.pid == pid) {
            let how = if libc::WIFSIGNALED(z.status) {
                format!("killed by signal {}", libc::WTERMSIG(z.status))
            } else {
                format!("exited {}", libc::WEXITSTATUS(z.status))
            };
            println!(
                "{pad}{} {} zombie ({how}; its parent has not waited for it)",
                z.pid, z.program
            );
        }
        for c in rec.children_of(pid) {
            show(rec, c, depth + 1);
        }
    }
    println!("  processes:");
    show(&rec, rec.root, 1);
    if !rec.adopted.is_empty() {
        println!(
            "  reparented outside the tree (double-forked daemons; a restart makes them children of its init):"
        );
        for &a in &rec.adopted {
            show(&rec, a, 1);
        }
    }
    if !rec.left_out.is_empty() {
        println!(
            "  left out (live children that do not come back; a restart refuses them unless --unrestorable=left_out):"
        );
        for l in &rec.left_out {
            println!(
                "    {} {} (child of {}): {}",
                l.pid, l.program, l.ppid, l.why
            );
        }
    }
    if !rec.shared.is_empty() {
        println!("  shared between members:");
        for s in &rec.shared {
            let ends: Vec<String> = s
                .ends
                .iter()
                .map(|e| {
                    if s.kind == "memory" {
                        return format!("{} (mapped)", e.pid);
                    }
                    if s.kind == "socket" {
                        return format!("{}:fd {}", e.pid, e.fd);
                    }
                    let dir = if e.flags as i32 & libc::O_ACCMODE == libc::O_RDONLY {
                        "read"
                    } else {
                        "write"
                    };
                    format!("{}:fd {} ({dir})", e.pid, e.fd)
                })
                .collect();
            let peer = match s.kind.as_str() {
                "socket" => format!(" (peer inode {})", s.peer),
                _ => String::new(),
            };
            println!("    {} inode {}{peer}: {}", s.kind, s.ino, ends.join(", "));
        }
    }
    Ok(())
}
