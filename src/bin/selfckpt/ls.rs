//! `selfckpt ls DIR`: the images in DIR, oldest first, with the time they
//! were taken (UTC), their size, program and PID, and whether every
//! checksum verifies: `valid`, `DAMAGED` (proven: a checksum or structure
//! failure) or `unknown` (could not be read, authenticated or understood).
//! Temporary files whose writer is gone (lock free) are listed as
//! `incomplete`. A process tree's set is one line (its root's pid and
//! program, how many processes; valid only if every image verifies).
//!
//! Must never: modify DIR.

use selfckpt::image::read::ImageFile;
use selfckpt::image::show::shown;
use std::path::{Path, PathBuf};

/// One entry of an image directory.
pub struct Entry {
    pub path: PathBuf,
    pub size: u64,
    pub created_unix_ns: u64,
    pub sequence: u64,
    pub program: String,
    pub pid: u32,
    /// Owner of the file (its own, not a symlink's target).
    pub owner: u32,
    /// A regular file (not a symlink, FIFO or device).
    pub regular: bool,
    /// None if valid, else why not.
    pub problem: Option<String>,
    /// The problem is proven damage (a checksum or structure failure), not
    /// "cannot read" or "cannot authenticate".
    pub damaged: bool,
}

/// Reads every `.ckpt` in `dir` (checksums verified), oldest first.
pub fn entries(dir: &Path) -> Result<Vec<Entry>, String> {
    let rd = std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut v: Vec<Entry> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "ckpt"))
        .map(|path| entry(&path))
        .collect();
    v.sort_by(|a, b| {
        (a.created_unix_ns, a.sequence, &a.path).cmp(&(b.created_unix_ns, b.sequence, &b.path))
    });
    Ok(v)
}

fn entry(path: &Path) -> Entry {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::symlink_metadata(path).ok();
    let mut e = Entry {
        path: path.to_path_buf(),
        size: md.as_ref().map_or(0, |m| m.len()),
        created_unix_ns: 0,
        sequence: 0,
        program: String::new(),
        pid: 0,
        owner: md.as_ref().map_or(u32::MAX, |m| m.uid()),
        regular: md.as_ref().is_some_and(|m| m.is_file()),
        problem: None,
        damaged: false,
    };
    if !e.regular {
        e.problem = Some("not a regular file (left alone)".into());
        return e;
    }
    let checked = ImageFile::open(path).and_then(|img| {
        let v = img.view()?;
        e.created_unix_ns = v.meta.created_unix_ns;
        e.sequence = v.meta.sequence;
        e.program = shown(v.meta.exe_path);
        e.pid = v.meta.pid;
        selfckpt::image::verify::scan(ImageFile::open(path)?).map(|_| ())
    });
    if let Err(x) = checked {
        e.damaged = selfckpt::imagedir::is_proven_damage(&x);
        e.problem = Some(x.to_string());
    }
    e
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of a Unix time in ns.
pub fn utc(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Every name and path is shown escaped (`image::show`): a file name or an
/// image's executable path cannot fake a line or drive the terminal.
pub fn ls(dir: &Path) -> Result<(), String> {
    let v = entries(dir)?;
    println!(
        "{:19}  {:>10}  {:>7}  {:7}  {:28}  program",
        "taken (UTC)", "size", "pid", "state", "image"
    );
    for e in &v {
        let name = e
            .path
            .file_name()
            .map(|n| shown(n.as_encoded_bytes()))
            .unwrap_or_default();
        println!(
            "{:19}  {:>10}  {:>7}  {:7}  {:28}  {}",
            if e.created_unix_ns > 0 {
                utc(e.created_unix_ns)
            } else {
                "?".into()
            },
            crate::human(e.size),
            e.pid,
            match (&e.problem, e.damaged) {
                (None, _) => "valid",
                (Some(_), true) => "DAMAGED",
                (Some(_), false) => "unknown",
            },
            name,
            e.program
        );
        if let Some(p) = &e.problem {
            println!("    {}", shown(p.as_bytes()));
        }
    }
    for set in crate::tree::sets(dir) {
        let size: u64 = std::fs::read_dir(&set.path)
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        let problem = crate::tree::verify_set(&set.path).err();
        let root = set.record.members.first();
        println!(
            "{:19}  {:>10}  {:>7}  {:7}  {:28}  {} (process tree of {})",
            utc(set.record.created_unix_ns),
            crate::human(size),
            set.record.root,
            if problem.is_none() {
                "valid"
            } else {
                "DAMAGED"
            },
            set.path
                .file_name()
                .map(|n| shown(n.as_encoded_bytes()))
                .unwrap_or_default(),
            root.map_or("?", |m| m.program.as_str()),
            set.record.members.len()
        );
        if let Some(p) = problem {
            println!("    {}", shown(p.as_bytes()));
        }
    }
    for t in selfckpt::imagedir::stale_temps(dir, None) {
        println!(
            "{:19}  {:>10}  {:>7}  {:7}  {}",
            "-",
            "-",
            "-",
            "incomplete",
            shown(t.as_os_str().as_encoded_bytes())
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        for (ns, want) in [
            (0, "1970-01-01 00:00:00"),
            (951_782_400_000_000_000, "2000-02-29 00:00:00"),
            (1_700_000_000_000_000_000, "2023-11-14 22:13:20"),
        ] {
            assert_eq!(super::utc(ns), want);
        }
    }
}
