//! Running the restart of an image: the installed `selfckpt restart IMAGE`
//! command, either as a new child of the caller or in place of the caller
//! (exec). The restarter's blob lives in the `selfckpt` binary (see
//! DESIGN: the restorer section is linked only there), so the library
//! starts that command rather than restoring in its own address space.
//!
//! Which `selfckpt`: `SELFCKPT_BIN` if set, else the one next to the file
//! this code was loaded from (libselfckpt.so, or the program that links
//! libselfckpt.a), or in `../bin` from there, else the first on `PATH`.
//!
//! Ordinary Rust, run in the caller. Must never: return success from
//! [`replace`] (on success the caller is gone), or reap the child it
//! spawned (the caller waits for it).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The file (library or executable) this code runs from, from
/// /proc/self/maps.
fn own_object() -> Option<PathBuf> {
    let here = own_object as fn() -> Option<PathBuf> as usize as u64;
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let (lo, hi) = f.next()?.split_once('-')?;
        let (lo, hi) = (
            u64::from_str_radix(lo, 16).ok()?,
            u64::from_str_radix(hi, 16).ok()?,
        );
        let path = f.nth(4)?;
        (lo <= here && here < hi && path.starts_with('/')).then(|| PathBuf::from(path))
    })
}

fn executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The `selfckpt` command to run.
pub fn find() -> Result<PathBuf, String> {
    if let Some(p) = crate::settings::bin() {
        return if executable(&p) {
            Ok(p)
        } else {
            Err(format!(
                "{}={}: not an executable file",
                crate::settings::BIN.name,
                p.display()
            ))
        };
    }
    let mut tried = Vec::new();
    if let Some(dir) = own_object().as_deref().and_then(Path::parent) {
        tried.push(dir.join("selfckpt"));
        tried.push(dir.join("../bin/selfckpt"));
    }
    if let Some(path) = std::env::var_os("PATH") {
        tried.extend(std::env::split_paths(&path).map(|d| d.join("selfckpt")));
    }
    tried
        .iter()
        .find(|p| executable(p))
        .cloned()
        .ok_or_else(|| {
            format!(
                "cannot find the selfckpt command (looked next to {}, and on PATH): install it \
             or set SELFCKPT_BIN",
                own_object().map_or("the library".into(), |p| p.display().to_string())
            )
        })
}

fn command(bin: &Path, image: &Path) -> Command {
    let mut c = Command::new(bin);
    c.arg("restart").arg(image);
    // A caller under `selfckpt run` (same pid after exec): the restarter
    // must not install a checkpointer of its own from the preloaded
    // library. The restarted program's environment is the image's. Set to
    // 0, not removed: a tree member's exec completes an environment only
    // with the variables it lacks (`interpose::exec`).
    c.env(crate::settings::PRELOAD.name, "0");
    c
}

/// Starts the restart of `image` as a child of the caller; its pid.
pub fn spawn(image: &Path) -> Result<i32, String> {
    let bin = find()?;
    let child = command(&bin, image)
        .spawn()
        .map_err(|e| format!("cannot start {} restart: {e}", bin.display()))?;
    // Dropping `child` neither waits nor kills: the caller reaps it.
    Ok(child.id() as i32)
}

/// Replaces the caller with the restart of `image`; returns only why it
/// could not.
pub fn replace(image: &Path) -> String {
    match find() {
        Ok(bin) => {
            let e = command(&bin, image).exec();
            format!("cannot execute {} restart: {e}", bin.display())
        }
        Err(e) => e,
    }
}
