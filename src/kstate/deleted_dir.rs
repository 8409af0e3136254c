//! Deleted directories the program holds: its working directory or a
//! descriptor of a directory whose name was removed (`rmdir`: it was
//! empty). Nothing of them needs keeping but the name; a restart makes
//! an empty directory, at its own path where nothing has that name now,
//! else under a random name of ours beside it (or in the temporary
//! directory where its parent is gone too), lets the caller enter or open
//! it, and removes it at once: the program then holds a deleted directory
//! again (`getcwd` and creating files there fail with ENOENT, as they
//! did). Runs in the restarter; never removes anything it did not make.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Makes the deleted directory `path` (as `/proc/self/fd` shows it,
/// ending in " (deleted)") again for `take`, which enters or opens it;
/// then removes it. `take`'s error, else the removal's.
pub fn made_again<T>(
    path: &[u8],
    take: impl FnOnce(&Path) -> std::io::Result<T>,
) -> std::io::Result<T> {
    let gone = Path::new(std::ffi::OsStr::from_bytes(
        path.strip_suffix(b" (deleted)").unwrap_or(path),
    ));
    let parent = gone
        .parent()
        .filter(|p| p.is_dir())
        .map_or_else(std::env::temp_dir, Path::to_path_buf);
    // Its own name first (so that /proc/self/cwd and the descriptor's
    // link read as the program's did), where its parent is still there.
    let own = gone.file_name().is_some() && gone.parent() == Some(parent.as_path());
    let mut last = std::io::Error::other("no name free");
    for i in 0..9 {
        let dir = match i {
            0 if own => gone.to_path_buf(),
            0 => continue,
            _ => parent.join(format!(".selfckpt-dir-{:016x}", super::deleted::random())),
        };
        if let Err(e) = std::fs::create_dir(&dir) {
            last = e;
            continue;
        }
        let taken = take(&dir);
        // Removed once taken: the program's directory is deleted again.
        let removed = std::fs::remove_dir(&dir);
        return taken.and_then(|t| removed.map(|()| t));
    }
    Err(last)
}
