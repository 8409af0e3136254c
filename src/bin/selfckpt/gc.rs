//! `selfckpt gc DIR --keep N`: keeps the newest N valid images of each
//! program in DIR and removes the rest: older images, damaged images, and
//! temporary files left by checkpoints whose process is gone.
//!
//! Must never: remove the newest valid image of a program, or the
//! temporary file of a checkpoint that may still be running (its PID is
//! alive).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// `.NAME-MS-PID.ckpt.tmp` files whose process no longer exists.
pub fn leftovers(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let Some(stem) = name
                .strip_prefix('.')
                .and_then(|n| n.strip_suffix(".ckpt.tmp"))
            else {
                return false;
            };
            let pid = stem.rsplit('-').next().and_then(|p| p.parse::<u32>().ok());
            pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
        })
        .collect()
}

pub fn gc(dir: &Path, keep: usize, dry_run: bool) -> Result<(), String> {
    if keep == 0 {
        return Err("--keep must be at least 1".into());
    }
    let entries = crate::ls::entries(dir)?;
    let mut doomed: Vec<(PathBuf, &str)> = Vec::new();
    let mut by_program: HashMap<&str, Vec<&crate::ls::Entry>> = HashMap::new();
    for e in &entries {
        if e.problem.is_some() {
            doomed.push((e.path.clone(), "damaged"));
        } else {
            by_program.entry(&e.program).or_default().push(e);
        }
    }
    for list in by_program.values() {
        // `entries` is oldest first.
        for e in list.iter().take(list.len().saturating_sub(keep)) {
            doomed.push((e.path.clone(), "old"));
        }
    }
    for t in leftovers(dir) {
        doomed.push((t, "incomplete"));
    }
    let mut freed = 0u64;
    for (p, why) in &doomed {
        let size = std::fs::metadata(p).map_or(0, |m| m.len());
        if dry_run {
            println!("would remove ({why}) {}", p.display());
        } else {
            std::fs::remove_file(p).map_err(|e| format!("cannot remove {}: {e}", p.display()))?;
            println!("removed ({why}) {}", p.display());
        }
        freed += size;
    }
    println!(
        "{} {} file(s), {}",
        if dry_run { "would free" } else { "freed" },
        doomed.len(),
        crate::human(freed)
    );
    Ok(())
}
