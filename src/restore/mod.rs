//! The restarter: validates an image completely, stages its memory at
//! addresses free in both address spaces, reopens its files, then hands
//! over to the restorer blob (`handover`), which puts everything in place
//! and jumps back into the program.
//!
//! Everything before `handover::jump` is ordinary Rust and can fail with a
//! clear error without harming anything: staging mappings are private to
//! this process, and files are only reopened (never created or truncated).

pub mod handover;
pub mod layout;

use crate::image::format::{arch_name, ARCH_HOST};
use crate::image::model::FileStamp;
use crate::image::read::{ImageFile, ReadError};
use crate::maps::RegionKind;
use std::path::{Path, PathBuf};

/// Why a restart was refused.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("{path}: {source}")]
    Image { path: PathBuf, source: ReadError },
    #[error("{path}: the image is for {image}, this machine is {host}")]
    Arch {
        path: PathBuf,
        image: &'static str,
        host: &'static str,
    },
    #[error("{path}: the image uses {image}-byte pages, this machine {host}-byte pages")]
    PageSize {
        path: PathBuf,
        image: u32,
        host: usize,
    },
    #[error("the executable {exe} {why}; restart refused (the image needs the exact program it was taken from)")]
    Executable { exe: String, why: String },
    #[error("the file {file}, mapped by the program, {why}; restart refused")]
    MappedFile { file: String, why: String },
    #[error("the image needs CPU features this machine lacks (XCR0 {image:#x} vs {host:#x}: missing {missing:#x}); restart refused")]
    CpuFeatures { image: u64, host: u64, missing: u64 },
    #[error(
        "the vdso layout differs from the image's ({0}); restart on a machine with the same kernel"
    )]
    Vdso(String),
    #[error("cannot stage region {start:#x}-{end:#x} ({what}): {source}")]
    Stage {
        start: u64,
        end: u64,
        what: String,
        source: std::io::Error,
    },
    #[error("no free address range of {0} bytes for staging")]
    NoAddressSpace(u64),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

/// Options of `selfckpt restart`.
#[derive(Clone, Debug, Default)]
pub struct RestartOptions {
    /// Print what is being done on stderr.
    pub verbose: bool,
}

/// Validates `path` and restarts the program in this process. Returns only
/// on failure, before anything irreversible happened.
pub fn restart(
    path: &Path,
    blob: &handover::Blob,
    opts: &RestartOptions,
) -> Result<std::convert::Infallible, RestoreError> {
    let img_err = |source| RestoreError::Image {
        path: path.to_path_buf(),
        source,
    };
    // A signal meant for the program (its checkpoint trigger, say) that
    // arrives while we are still staging must wait for the program, not
    // kill the restarter: block them all now (decoder threads inherit the
    // mask); each restored thread gets its own mask back from its frame.
    // SAFETY: sigfillset/sigprocmask on a local set; no handler involved.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
    }
    let img = ImageFile::open(path).map_err(img_err)?;
    check_machine(path, &img)?;
    let view = img.view().map_err(img_err)?;
    check_files(&view)?;
    let mut plan = layout::Plan::new(&view, path)?;
    drop(view);
    let t0 = std::time::Instant::now();
    let staged = plan.stage_all(img)?;
    if opts.verbose {
        eprintln!(
            "selfckpt: staged {} regions, {} chunks, in {:.3}s",
            plan.staged_count(),
            staged.chunks,
            t0.elapsed().as_secs_f64()
        );
    }
    handover::handover(&mut plan, blob, opts)
}

fn check_machine(path: &Path, img: &ImageFile) -> Result<(), RestoreError> {
    if img.header.arch != ARCH_HOST {
        return Err(RestoreError::Arch {
            path: path.to_path_buf(),
            image: arch_name(img.header.arch),
            host: arch_name(ARCH_HOST),
        });
    }
    let host_page = crate::sys::page_size();
    if img.header.page_size as usize != host_page {
        return Err(RestoreError::PageSize {
            path: path.to_path_buf(),
            image: img.header.page_size,
            host: host_page,
        });
    }
    Ok(())
}

fn describe_change(old: &FileStamp, new: &FileStamp) -> String {
    if old.ino != new.ino {
        format!("was replaced (inode {} -> {})", old.ino, new.ino)
    } else if old.size != new.size {
        format!("changed size ({} -> {} bytes)", old.size, new.size)
    } else {
        "was modified (mtime differs)".to_string()
    }
}

/// The executable, every mapped file and the CPU must be what the image
/// was taken with.
fn check_files(view: &crate::image::read::ImageView) -> Result<(), RestoreError> {
    use std::os::unix::ffi::OsStrExt;
    let meta = &view.meta;
    let exe = Path::new(std::ffi::OsStr::from_bytes(meta.exe_path));
    let exe_s = exe.display().to_string();
    let now = crate::elfid::stamp(exe).map_err(|e| RestoreError::Executable {
        exe: exe_s.clone(),
        why: format!("cannot be read ({e})"),
    })?;
    if now.mode & (libc::S_ISUID | libc::S_ISGID) != 0 {
        return Err(RestoreError::Executable {
            exe: exe_s,
            why: "is setuid or setgid".into(),
        });
    }
    let id = crate::elfid::build_id(exe).map_err(|e| RestoreError::Executable {
        exe: exe_s.clone(),
        why: format!("cannot be read ({e})"),
    })?;
    if id != meta.exe_build_id {
        return Err(RestoreError::Executable {
            exe: exe_s,
            why: format!(
                "changed since the checkpoint (build-id {} -> {})",
                crate::elfid::hex(meta.exe_build_id),
                crate::elfid::hex(&id)
            ),
        });
    }
    if !meta.exe_stamp.same_content(&now) {
        return Err(RestoreError::Executable {
            why: describe_change(&meta.exe_stamp, &now),
            exe: exe_s,
        });
    }
    for r in &view.regions {
        let kind = RegionKind::from_u32(r.kind);
        if !matches!(kind, Some(RegionKind::PrivateFile | RegionKind::SharedFile))
            || r.path.ends_with(b" (deleted)")
        {
            continue;
        }
        let p = Path::new(std::ffi::OsStr::from_bytes(r.path));
        let file = p.display().to_string();
        let now = crate::elfid::stamp(p).map_err(|e| RestoreError::MappedFile {
            file: file.clone(),
            why: format!("cannot be read ({e})"),
        })?;
        if !r.stamp.same_content(&now) {
            return Err(RestoreError::MappedFile {
                why: describe_change(&r.stamp, &now),
                file,
            });
        }
    }
    let host = crate::arch::cpu_xfeatures();
    let missing = meta.cpu_xfeatures & !host;
    if missing != 0 {
        return Err(RestoreError::CpuFeatures {
            image: meta.cpu_xfeatures,
            host,
            missing,
        });
    }
    Ok(())
}
