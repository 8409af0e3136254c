//! The remote location of a snapshot: a second copy of each durable image,
//! made by a background thread after the local copy was committed.
//!
//! ```text
//!   checkpoint ── local image durable ──> copy job (thread) ──> store.put
//!                                          │  Running → Done(path) | Failed(why)
//!   next checkpoint's hook, finalize ──────┘  join every job first
//! ```
//!
//! A store is a small interface ([`RemoteStore`]): `put` makes the copy
//! durable, `fetch` gives a local path restart can read. [`DirStore`] is a
//! directory (a shared parallel file system, say): the copy is written to
//! `.NAME.tmp`, fsynced, renamed, and the directory fsynced, as the local
//! image is. Object storage can come later as another store.
//!
//! Ordinary Rust. Must never: run a copy while a checkpoint suspends the
//! program (every job is joined by a checkpoint hook, so no image holds a
//! copier half-way), make a failed copy fail the checkpoint (it is a
//! warning: the local image is good), or leave a `.tmp` behind.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Where second copies of images go.
pub trait RemoteStore: Send + Sync + std::fmt::Debug {
    /// Where the copy of image `name` is (or would be).
    fn location(&self, name: &str) -> PathBuf;
    /// Copies the durable image `local` as `name`; returns the copy's path
    /// once it is durable.
    fn put(&self, local: &Path, name: &str) -> Result<PathBuf, String>;
    /// A path from which restart can read the copy of `name`.
    fn fetch(&self, name: &str) -> Result<PathBuf, String>;
}

/// A directory as remote store.
#[derive(Debug, Clone)]
pub struct DirStore {
    dir: PathBuf,
}

impl DirStore {
    /// A store in `dir` (made absolute; created 0700 on first copy).
    pub fn new(dir: &Path) -> DirStore {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        DirStore { dir }
    }
}

impl RemoteStore for DirStore {
    fn location(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn put(&self, local: &Path, name: &str) -> Result<PathBuf, String> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let fin = self.dir.join(name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let what = |e: std::io::Error| {
            format!(
                "cannot copy {} to the remote location {}: {e}",
                local.display(),
                fin.display()
            )
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(what)?;
        let _ = std::fs::remove_file(&tmp); // ours by name, left by a crash
        let copy = || -> std::io::Result<()> {
            let mut src = std::fs::File::open(local)?;
            let mut dst = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            std::io::copy(&mut src, &mut dst)?;
            dst.sync_all()?;
            std::fs::rename(&tmp, &fin)?;
            std::fs::File::open(&self.dir)?.sync_all()
        };
        copy().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            what(e)
        })?;
        Ok(fin)
    }

    fn fetch(&self, name: &str) -> Result<PathBuf, String> {
        let p = self.dir.join(name);
        if p.is_file() {
            Ok(p)
        } else {
            Err(format!("{}: no such image", p.display()))
        }
    }
}

/// Where one background copy stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CopyState {
    Running,
    Done(PathBuf),
    Failed(String),
}

/// One background copy, shared by the thread and the snapshot.
#[derive(Debug)]
pub struct CopyJob {
    state: Mutex<CopyState>,
    changed: Condvar,
}

impl CopyJob {
    /// Waits at most `timeout` for the copy to end; its state then.
    pub fn wait(&self, timeout: Duration) -> CopyState {
        let deadline = Instant::now().checked_add(timeout);
        let Ok(mut st) = self.state.lock() else {
            return CopyState::Failed("copy state lock poisoned".into());
        };
        while *st == CopyState::Running {
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if left.is_zero() {
                break;
            }
            st = match self.changed.wait_timeout(st, left) {
                Ok((g, _)) => g,
                Err(_) => return CopyState::Failed("copy state lock poisoned".into()),
            };
        }
        st.clone()
    }

    fn set(&self, s: CopyState) {
        if let Ok(mut st) = self.state.lock() {
            *st = s;
        }
        self.changed.notify_all();
    }
}

/// Copier threads not joined yet.
static THREADS: Mutex<Vec<std::thread::JoinHandle<()>>> = Mutex::new(Vec::new());

static HOOK: std::sync::Once = std::sync::Once::new();

/// Registers (once) the checkpoint hook that joins every copy first: no
/// image may hold a copier thread half-way through a copy.
pub fn join_before_checkpoints() {
    HOOK.call_once(|| {
        crate::on_checkpoint(|_| {
            join_all();
            Ok(())
        })
    });
}

/// Starts copying `local` to `store` in the background.
pub fn start(store: Arc<dyn RemoteStore>, local: PathBuf, name: String) -> Arc<CopyJob> {
    // Without a checkpointer no checkpoint can come; installing one
    // through the CRS `init` registers the hook then.
    if crate::is_installed() {
        join_before_checkpoints();
    }
    let job = Arc::new(CopyJob {
        state: Mutex::new(CopyState::Running),
        changed: Condvar::new(),
    });
    let j = job.clone();
    let spawned = std::thread::Builder::new()
        .name("selfckpt-copy".into())
        .spawn(move || {
            let st = match store.put(&local, &name) {
                Ok(p) => {
                    log::debug!("remote copy durable: {}", p.display());
                    CopyState::Done(p)
                }
                Err(e) => {
                    log::warn!("the checkpoint is good locally, but {e}");
                    CopyState::Failed(e)
                }
            };
            j.set(st);
        });
    match spawned {
        Ok(h) => {
            if let Ok(mut t) = THREADS.lock() {
                t.push(h);
            }
        }
        Err(e) => {
            let why = format!("cannot start the remote copier thread: {e}");
            log::warn!("the checkpoint is good locally, but {why}");
            job.set(CopyState::Failed(why));
        }
    }
    job
}

/// Waits for every copy started so far.
pub fn join_all() {
    let handles = THREADS
        .lock()
        .map(|mut t| std::mem::take(&mut *t))
        .unwrap_or_default();
    for h in handles {
        let _ = h.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dir_store_copies_durably_and_leaves_no_temporary() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("img.ckpt");
        std::fs::write(&src, b"image bytes").unwrap();
        let store: Arc<dyn RemoteStore> = Arc::new(DirStore::new(&t.path().join("r/sub")));
        let job = start(store.clone(), src.clone(), "img.ckpt".into());
        let CopyState::Done(p) = job.wait(Duration::from_secs(10)) else {
            panic!("copy failed: {:?}", job.wait(Duration::ZERO));
        };
        join_all();
        assert_eq!(std::fs::read(&p).unwrap(), b"image bytes");
        assert_eq!(store.fetch("img.ckpt").unwrap(), p);
        assert!(store.fetch("other.ckpt").is_err());
        let names: Vec<_> = std::fs::read_dir(t.path().join("r/sub"))
            .unwrap()
            .flatten()
            .collect();
        assert_eq!(names.len(), 1, "only the copy: {names:?}");
    }

    #[test]
    fn a_failed_copy_is_reported_not_raised() {
        let t = tempfile::tempdir().unwrap();
        let store: Arc<dyn RemoteStore> = Arc::new(DirStore::new(t.path()));
        let job = start(store, t.path().join("missing.ckpt"), "missing.ckpt".into());
        match job.wait(Duration::from_secs(10)) {
            CopyState::Failed(why) => assert!(why.contains("missing.ckpt"), "{why}"),
            s => panic!("{s:?}"),
        }
        join_all();
    }
}
