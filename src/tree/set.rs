//! Tree image sets on disk: one directory per checkpoint of a tree.
//!
//! ```text
//!  DIR/tree-MS-INST-ROOTPID.tree/        a committed set
//!        tree.json                       the tree record (`record`)
//!        PROG-MS-INST-PID.ckpt           one image per member
//!  DIR/.tree-MS-INST-ROOTPID.tree.tmp/   a set being written
//! ```
//!
//! Every member writes its image into the temporary directory (and makes
//! it durable there); the root then writes `tree.json`, fsyncs the
//! directory and renames it into place, and fsyncs DIR: until that rename
//! the previous set is the newest complete one. A set is one unit: `ls`,
//! `gc` and the run's pruning keep or remove it whole.
//!
//! Must never: follow a symlink, remove a file it did not find named in a
//! set it read completely (or in a temporary set of this run), or remove a
//! set whose record it cannot read.

use super::record::{TreeRecord, FILE};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The name of a set's directory.
pub fn set_name(created_ms: u64, instance: &str, root: u32) -> String {
    format!("tree-{created_ms}-{instance}-{root}.tree")
}

/// (created ms, instance, root pid) of a set's directory name.
pub fn parse_set_name(name: &str) -> Option<(u64, &str, u32)> {
    let stem = name.strip_prefix("tree-")?.strip_suffix(".tree")?;
    let mut it = stem.splitn(3, '-');
    let ms = it.next()?.parse().ok()?;
    let inst = it.next()?;
    let pid = it.next()?.parse().ok()?;
    (!inst.is_empty() && inst.bytes().all(|b| b.is_ascii_hexdigit())).then_some((ms, inst, pid))
}

fn ours_dir(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir() && m.uid() == crate::imagedir::euid())
}

fn io(what: &str, p: &Path) -> impl FnOnce(std::io::Error) -> crate::Error {
    let what = format!("cannot {what} {}", p.display());
    move |e| crate::Error::Io(what, e)
}

fn fsync_dir(p: &Path) -> Result<(), crate::Error> {
    std::fs::File::open(p)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync directory", p))
}

/// A set being written.
pub struct Pending {
    pub dir: PathBuf,
    pub tmp: PathBuf,
    pub fin: PathBuf,
}

impl Pending {
    /// Makes the temporary directory (0700; it must not exist).
    pub fn create(
        dir: &Path,
        created_ms: u64,
        instance: &str,
        root: u32,
    ) -> Result<Pending, crate::Error> {
        let name = set_name(created_ms, instance, root);
        let tmp = dir.join(format!(".{name}.tmp"));
        let fin = dir.join(&name);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&tmp)
            .map_err(io("create", &tmp))?;
        Ok(Pending {
            dir: dir.to_path_buf(),
            tmp,
            fin,
        })
    }

    /// Writes the record, makes the set durable and renames it into place.
    pub fn commit(&self, rec: &TreeRecord) -> Result<PathBuf, crate::Error> {
        let p = self.tmp.join(FILE);
        let json = serde_json::to_vec_pretty(rec)
            .map_err(|e| crate::Error::Config(format!("cannot encode the tree record: {e}")))?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&p)
            .map_err(io("create", &p))?;
        f.write_all(&json).map_err(io("write", &p))?;
        f.sync_all().map_err(io("fsync", &p))?;
        fsync_dir(&self.tmp)?;
        std::fs::rename(&self.tmp, &self.fin).map_err(io("rename to", &self.fin))?;
        fsync_dir(&self.dir)?;
        Ok(self.fin.clone())
    }

    /// Removes the temporary directory and what the members wrote in it.
    pub fn abort(&self) {
        remove_set_dir(&self.tmp, None);
    }
}

/// Removes the regular files of ours in `set` (only those named in `rec`
/// and the record, or with `rec` None — a temporary set — images and
/// temporaries), then the directory if it is empty.
fn remove_set_dir(set: &Path, rec: Option<&TreeRecord>) {
    if !ours_dir(set) {
        return;
    }
    let Ok(rd) = std::fs::read_dir(set) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let named = match rec {
            Some(r) => name == FILE || r.members.iter().any(|m| m.image == name),
            None => name == FILE || name.ends_with(".ckpt") || name.ends_with(".ckpt.tmp"),
        };
        let p = e.path();
        let mine = std::fs::symlink_metadata(&p)
            .is_ok_and(|m| m.is_file() && m.uid() == crate::imagedir::euid());
        if named && mine {
            let _ = std::fs::remove_file(&p);
        }
    }
    let _ = std::fs::remove_dir(set);
}

/// A committed set whose record reads.
#[derive(Clone, Debug)]
pub struct SetInfo {
    pub path: PathBuf,
    pub record: TreeRecord,
}

/// True if `p` looks like a set (a directory of ours holding `tree.json`).
pub fn is_set(p: &Path) -> bool {
    ours_dir(p) && p.join(FILE).is_file()
}

/// The committed sets in `dir` (of `instance` only, if given), oldest
/// first. Sets whose record does not read are reported by `bad`.
pub fn list(
    dir: &Path,
    instance: Option<&str>,
    bad: &mut dyn FnMut(&Path, String),
) -> Vec<SetInfo> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<SetInfo> = rd
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .and_then(parse_set_name)
                .is_some_and(|(_, i, _)| instance.is_none_or(|want| want == i))
        })
        .map(|e| e.path())
        .filter(|p| ours_dir(p))
        .filter_map(|p| match TreeRecord::load(&p) {
            Ok(record) => Some(SetInfo { path: p, record }),
            Err(e) => {
                bad(&p, e.to_string());
                None
            }
        })
        .collect();
    out.sort_by_key(|s| (s.record.sequence, s.record.created_unix_ns));
    out
}

/// Keeps the newest `keep` (at least 1) sets of `instance`; removes the
/// older ones whole, and temporary sets of `instance` other than `current`.
pub fn prune(dir: &Path, instance: &str, keep: usize, current: Option<&Path>) {
    let sets = list(dir, Some(instance), &mut |_, _| {});
    let n = sets.len();
    for old in sets.into_iter().take(n.saturating_sub(keep.max(1))) {
        log::debug!("pruning the set {}", old.path.display());
        remove_set(&old);
    }
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) else {
            continue;
        };
        let p = e.path();
        if parse_set_name(stem).is_some_and(|(_, i, _)| i == instance)
            && Some(p.as_path()) != current
        {
            log::warn!(
                "removing {}, left by a tree checkpoint that did not finish",
                p.display()
            );
            remove_set_dir(&p, None);
        }
    }
}

/// Removes a committed set whole.
pub fn remove_set(set: &SetInfo) {
    remove_set_dir(&set.path, Some(&set.record));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_names_parse() {
        let n = set_name(1700, "00ff", 42);
        assert_eq!(parse_set_name(&n), Some((1700, "00ff", 42)));
        assert_eq!(parse_set_name("tree-1700-zz-42.tree"), None);
        assert_eq!(parse_set_name("tree-1700-00ff.tree"), None);
    }
}
