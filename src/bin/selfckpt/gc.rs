//! `selfckpt gc DIR --keep N`: keeps the newest N valid images of each
//! program in DIR and removes the rest: older valid images, images proven
//! damaged (a checksum or structure failure), temporary files whose writer
//! is gone (its lock on the file is free), and empty `children/*`
//! directories. A process tree's sets go whole: the newest N valid sets of
//! each run stay.
//!
//! Must never: remove the newest valid image of a program; count as
//! damaged an image it merely could not read (permissions), authenticate
//! (SELFCKPT_KEY set, no MAC or another key's) or understand (a newer
//! format); remove a file or directory the user does not own, or a symlink
//! or other non-regular file; or remove the temporary file of a checkpoint
//! still being written (its writer holds the lock, whatever its pid says);
//! or remove an ancestor of a kept incremental image.

use selfckpt::imagedir::{self, euid};
use std::collections::HashMap;
use std::path::PathBuf;

pub fn gc(dir: &std::path::Path, keep: usize, dry_run: bool) -> Result<(), String> {
    if keep == 0 {
        return Err("--keep must be at least 1".into());
    }
    let me = euid();
    let entries = crate::ls::entries(dir)?;
    let mut doomed: Vec<(PathBuf, &str)> = Vec::new();
    let mut by_program: HashMap<&str, Vec<&crate::ls::Entry>> = HashMap::new();
    for e in entries.iter().filter(|e| e.regular && e.owner == me) {
        match (&e.problem, e.damaged) {
            (None, _) => by_program.entry(&e.program).or_default().push(e),
            (Some(_), true) => doomed.push((e.path.clone(), "damaged")),
            (Some(why), false) => println!("kept (cannot tell: {why}) {}", e.path.display()),
        }
    }
    for list in by_program.values() {
        // `entries` is oldest first (META time, then sequence).
        for e in list.iter().take(list.len().saturating_sub(keep)) {
            doomed.push((e.path.clone(), "old"));
        }
    }
    // An incremental image's ancestors stay as long as it does.
    let needed: Vec<PathBuf> = by_program
        .values()
        .flat_map(|list| list.iter().skip(list.len().saturating_sub(keep)))
        .flat_map(|e| imagedir::ancestors_of(&e.path))
        .collect();
    doomed.retain(|(p, _)| {
        let keep_it = needed.contains(p);
        if keep_it {
            println!("kept (an ancestor of a kept image) {}", p.display());
        }
        !keep_it
    });
    for t in imagedir::stale_temps(dir, None) {
        doomed.push((t, "incomplete"));
    }
    // Process trees' sets, whole: the newest `keep` valid sets of each run
    // stay; a set that does not verify is kept and named.
    let mut sets_by_run: HashMap<String, Vec<selfckpt::tree::set::SetInfo>> = HashMap::new();
    for set in crate::tree::sets(dir) {
        match crate::tree::verify_set(&set.path) {
            Ok(_) => sets_by_run
                .entry(set.record.instance.clone())
                .or_default()
                .push(set),
            Err(why) => println!("kept (does not verify: {why}) {}", set.path.display()),
        }
    }
    let mut old_sets = Vec::new();
    for list in sets_by_run.values() {
        // Oldest first (sequence, then time).
        old_sets.extend(list.iter().take(list.len().saturating_sub(keep)).cloned());
    }
    for set in &old_sets {
        if dry_run {
            println!("would remove (old set) {}", set.path.display());
        } else {
            selfckpt::tree::set::remove_set(set);
            println!("removed (old set) {}", set.path.display());
        }
    }
    let mut freed = 0u64;
    let mut count = 0usize;
    for (p, why) in &doomed {
        let size = std::fs::symlink_metadata(p).map_or(0, |m| m.len());
        if dry_run {
            println!("would remove ({why}) {}", p.display());
        } else {
            std::fs::remove_file(p).map_err(|e| format!("cannot remove {}: {e}", p.display()))?;
            println!("removed ({why}) {}", p.display());
        }
        freed += size;
        count += 1;
    }
    let empty = imagedir::empty_child_dirs(dir);
    for d in &empty {
        if dry_run {
            println!("would remove (empty) {}", d.display());
        } else if std::fs::remove_dir(d).is_ok() {
            println!("removed (empty) {}", d.display());
        }
    }
    if !dry_run && !empty.is_empty() {
        // Only succeeds when nothing is left in it.
        let _ = std::fs::remove_dir(dir.join("children"));
    }
    println!(
        "{} {count} file(s), {} empty director{}, {}",
        if dry_run { "would free" } else { "freed" },
        empty.len(),
        if empty.len() == 1 { "y" } else { "ies" },
        crate::human(freed)
    );
    Ok(())
}
