//! The snapshot descriptor: which image a checkpoint wrote (or a restart
//! should use), where its local and remote copies are, and whether it was
//! rebuilt from the files alone (cold start).
//!
//! Naming: the reference of an image is its file name without `.ckpt`
//! (`PROG-MS-PID`, unique per image); the local location is the image's
//! absolute path; the remote location is the same name in the remote
//! store.
//!
//! Ordinary Rust. Must never: call a copy valid without reading every
//! checksum of it, or pick an image for restart that neither copy holds
//! intact.

use super::remote::{self, CopyJob, CopyState, RemoteStore};
use super::CrsError;
use crate::image::read::ImageFile;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The component name every selfckpt snapshot carries.
pub const COMPONENT: &str = "selfckpt";

/// One checkpoint image, with its copies.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    reference: Option<String>,
    local: Option<PathBuf>,
    remote: Option<Arc<dyn RemoteStore>>,
    copy: Option<Arc<CopyJob>>,
    cold_start: bool,
    /// The copy [`Snapshot::from_location`] read in full, as it was then.
    verified: Option<(PathBuf, FileVersion)>,
}

/// One version of a file (ctime changes with every write and cannot be
/// set back): a copy verified once is not read again while it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
struct FileVersion {
    dev: u64,
    ino: u64,
    len: u64,
    ctime: (i64, i64),
}

fn version_of(p: &Path) -> Option<FileVersion> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p).ok()?;
    Some(FileVersion {
        dev: m.dev(),
        ino: m.ino(),
        len: m.size(),
        ctime: (m.ctime(), m.ctime_nsec()),
    })
}

/// Reads every checksum of the image at `p`.
pub fn verify(p: &Path) -> Result<(), String> {
    let img = ImageFile::open(p).map_err(|e| e.to_string())?;
    crate::image::verify::scan(img)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Sort key of an image name: the milliseconds in `PROG-MS-PID.ckpt`.
fn taken_ms(name: &str) -> u64 {
    name.strip_suffix(".ckpt")
        .and_then(|s| s.rsplit('-').nth(1))
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(0)
}

/// Image names (`*.ckpt`, no temporaries) in `dir`; none if unreadable.
fn image_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".ckpt") && !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

impl Snapshot {
    /// An empty snapshot, to be filled by a checkpoint.
    ///
    /// ```
    /// let s = selfckpt::crs::Snapshot::new();
    /// assert_eq!(s.component(), "selfckpt");
    /// assert!(s.reference().is_none());
    /// ```
    pub fn new() -> Snapshot {
        Snapshot::default()
    }

    /// Copies each image this snapshot is filled with also to `store`.
    pub fn set_remote(&mut self, store: Option<Arc<dyn RemoteStore>>) {
        self.remote = store;
        self.copy = None;
    }

    /// Copies each image also into the directory `dir`.
    pub fn set_remote_dir(&mut self, dir: Option<&Path>) {
        self.set_remote(dir.map(|d| Arc::new(remote::DirStore::new(d)) as Arc<dyn RemoteStore>));
    }

    /// Rebuilds a snapshot from the files alone (cold start). `local` is an
    /// image file, or a directory: then the newest image of which a copy
    /// (local, or in the `remote` directory) is intact.
    pub fn from_location(local: &Path, remote: Option<&Path>) -> Result<Snapshot, CrsError> {
        let mut s = Snapshot::new();
        let remote_dir = remote.map(|r| {
            if r.is_file() {
                r.parent().unwrap_or(Path::new("/")).to_path_buf()
            } else {
                r.to_path_buf()
            }
        });
        s.set_remote_dir(remote_dir.as_deref());
        s.cold_start = true;
        if local.is_file() {
            let name = local
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            s.reference = Some(name.trim_end_matches(".ckpt").to_string());
            s.local = Some(absolute(local));
            return Ok(s);
        }
        if !local.is_dir() && remote_dir.is_none() {
            return Err(CrsError::NoValidImage {
                what: local.display().to_string(),
                why: "no such file or directory".into(),
            });
        }
        let mut names = image_names(local);
        if let Some(r) = &remote_dir {
            names.extend(image_names(r));
        }
        names.sort_by_key(|n| std::cmp::Reverse((taken_ms(n), n.clone())));
        names.dedup();
        let mut skipped = Vec::new();
        for name in names {
            let here = local.join(&name);
            let there = remote_dir.as_ref().map(|r| r.join(&name));
            let mut ok = |p: &Path| match verify(p) {
                Ok(()) => true,
                Err(e) => {
                    if p.exists() {
                        skipped.push(format!("{}: {e}", p.display()));
                    }
                    false
                }
            };
            let good = if ok(&here) {
                Some(here.clone())
            } else {
                there.filter(|t| ok(t))
            };
            if let Some(good) = good {
                s.verified = version_of(&good).map(|v| (absolute(&good), v));
                for why in &skipped {
                    log::warn!("skipping {why}");
                }
                s.reference = Some(name.trim_end_matches(".ckpt").to_string());
                s.local = Some(absolute(&here));
                return Ok(s);
            }
        }
        let mut where_ = local.display().to_string();
        if let Some(r) = &remote_dir {
            where_ = format!("{where_} or {}", r.display());
        }
        Err(CrsError::NoValidImage {
            what: where_,
            why: if skipped.is_empty() {
                "no image there".into()
            } else {
                skipped.join("; ")
            },
        })
    }

    /// Always `"selfckpt"`.
    pub fn component(&self) -> &'static str {
        COMPONENT
    }
    /// The image's unique name (`PROG-MS-PID`), once filled.
    pub fn reference(&self) -> Option<&str> {
        self.reference.as_deref()
    }
    /// The local image's absolute path, once filled.
    pub fn local_location(&self) -> Option<&Path> {
        self.local.as_deref()
    }
    /// Where the remote copy is (or goes), when a remote is set.
    pub fn remote_location(&self) -> Option<PathBuf> {
        Some(self.remote.as_ref()?.location(&self.file_name()?))
    }
    /// True when rebuilt from the files by [`Snapshot::from_location`].
    pub fn cold_start(&self) -> bool {
        self.cold_start
    }

    fn file_name(&self) -> Option<String> {
        Some(format!("{}.ckpt", self.reference.as_ref()?))
    }

    /// Records that `image` was written; starts the remote copy if asked
    /// (`copy`) and a remote is set.
    pub(crate) fn fill(&mut self, image: PathBuf, copy: bool) {
        let name = image
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.reference = Some(name.trim_end_matches(".ckpt").to_string());
        self.cold_start = false;
        self.verified = None;
        self.copy = match (&self.remote, copy) {
            (Some(store), true) => Some(remote::start(store.clone(), image.clone(), name)),
            _ => None,
        };
        self.local = Some(image);
    }

    /// Waits at most `timeout` for the remote copy of the image; its path
    /// once durable.
    pub fn wait_remote(&self, timeout: Duration) -> Result<PathBuf, CrsError> {
        let (Some(store), Some(name)) = (&self.remote, self.file_name()) else {
            return Err(CrsError::Remote(
                "the snapshot has no remote location or no image yet".into(),
            ));
        };
        match &self.copy {
            Some(job) => match job.wait(timeout) {
                CopyState::Done(p) => Ok(p),
                CopyState::Failed(why) => Err(CrsError::Remote(why)),
                CopyState::Running => Err(CrsError::Remote(format!(
                    "the copy to {} is still running after {} ms",
                    store.location(&name).display(),
                    timeout.as_millis()
                ))),
            },
            None => store.fetch(&name).map_err(CrsError::Remote),
        }
    }

    /// The copy to restart from: the local one when intact, else the
    /// remote one when intact.
    pub fn image_to_restart(&self) -> Result<PathBuf, CrsError> {
        let (Some(reference), Some(name)) = (&self.reference, self.file_name()) else {
            return Err(CrsError::NotFilled);
        };
        let mut why = Vec::new();
        let check = |p: &Path| match &self.verified {
            Some((v, at)) if v == p && version_of(p).as_ref() == Some(at) => Ok(()),
            _ => verify(p),
        };
        if let Some(l) = &self.local {
            match check(l) {
                Ok(()) => return Ok(l.clone()),
                Err(e) => why.push(format!("local copy {}: {e}", l.display())),
            }
        }
        if let Some(store) = &self.remote {
            match store.fetch(&name).and_then(|p| check(&p).map(|()| p)) {
                Ok(p) => {
                    log::warn!(
                        "{}; restarting from the remote copy {}",
                        why.join("; "),
                        p.display()
                    );
                    return Ok(p);
                }
                Err(e) => why.push(format!("remote copy: {e}")),
            }
        }
        Err(CrsError::NoValidImage {
            what: reference.clone(),
            why: why.join("; "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_sort_by_the_time_they_carry() {
        for (name, ms) in [
            ("prog-0001796130927230-28901.ckpt", 1796130927230),
            ("my-prog-0000000000042-7.ckpt", 42),
            ("odd.ckpt", 0),
            ("prog-x-1.ckpt", 0),
        ] {
            assert_eq!(taken_ms(name), ms, "{name}");
        }
    }

    #[test]
    fn locations_without_a_valid_image_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let empty = t.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let bad = t.path().join("bad");
        std::fs::create_dir(&bad).unwrap();
        std::fs::write(bad.join("p-0000000000001-1.ckpt"), b"not an image").unwrap();
        for (local, remote, says) in [
            (empty.clone(), None, "no image there"),
            (t.path().join("missing"), None, "no such file or directory"),
            (bad.clone(), None, "p-0000000000001-1.ckpt: "),
            (empty.clone(), Some(bad.clone()), "p-0000000000001-1.ckpt: "),
        ] {
            let e = Snapshot::from_location(&local, remote.as_deref()).unwrap_err();
            assert!(e.to_string().contains(says), "{local:?}: {e}");
        }
    }

    #[test]
    fn an_empty_snapshot_names_nothing_to_restart() {
        let e = Snapshot::new().image_to_restart().unwrap_err();
        assert!(matches!(e, CrsError::NotFilled), "{e}");
        let e = Snapshot::new().wait_remote(Duration::ZERO).unwrap_err();
        assert!(e.to_string().contains("no remote location"), "{e}");
    }
}
