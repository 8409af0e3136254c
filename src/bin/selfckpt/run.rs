//! `selfckpt run [OPTIONS] -- PROG ARGS...`: runs an unmodified program
//! with libselfckpt.so preloaded (LD_PRELOAD mode), or, when `--dir`
//! already holds a valid image of that program, restarts the newest one.
//!
//! The program is started with `exec`, so it keeps this command's PID:
//! `selfckpt run -- prog & kill -USR1 $!` reaches the program. A restart
//! also happens in this process (`restart` becomes the program).
//!
//! Which images belong to "that program": `run.json` (see
//! `selfckpt::imagedir::RunRecord`) records the job `run` started: the
//! executable (resolved, with its device, inode, size and mtime), the
//! command line, the working directory, and an instance token that the
//! started program (and whatever it execs: wrapper scripts such as pyenv
//! shims) writes into its image names. A later `run` resumes only when
//! all of these match and the job did not end, and then only from images
//! carrying that token. When the program exits (not when it is killed or
//! takes its checkpoint-then-exit), the library marks the record ended:
//! the next `run` starts fresh and says so. A resume always says, on one
//! stderr line, what it resumes from.
//!
//! Must never: restart an image of another program, another job or
//! another directory's command, resume a job that ended, or start fresh
//! over images it could not read without saying so (use `--fresh` to
//! start over).

use selfckpt::imagedir::{self, RunRecord};
use selfckpt::settings;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct RunArgs {
    /// Directory for the images (created 0700).
    #[arg(long, default_value = "ckpt")]
    dir: PathBuf,
    /// Signal that takes a checkpoint.
    #[arg(long, default_value = "USR1")]
    signal: String,
    /// Signal that takes a checkpoint and then exits with code 0 ("none" to
    /// disable).
    #[arg(long, default_value = "USR2")]
    term_signal: String,
    /// Also checkpoint every SECS seconds.
    #[arg(long, value_name = "SECS")]
    interval: Option<f64>,
    /// Number of images to keep.
    #[arg(long, default_value_t = 3)]
    keep: usize,
    /// Compression: store, fast1..fast7, or a zstd level 1..19.
    #[arg(long, default_value = "1")]
    level: selfckpt::Level,
    /// Forked checkpoints: the program pauses only to fork; a
    /// copy-on-write child writes the image (SELFCKPT_FORKED=1).
    #[arg(long)]
    forked: bool,
    /// Incremental checkpoints: an image holds only the pages changed
    /// since its parent image (SELFCKPT_INCREMENTAL=1).
    #[arg(long)]
    incremental: bool,
    /// Checkpoint the program alone, not the processes it starts (a
    /// checkpoint names the live children it leaves out).
    #[arg(long)]
    no_tree: bool,
    /// Kept for older scripts: children are members of the run's process
    /// tree by default (this option changes nothing).
    #[arg(long, hide = true)]
    children: bool,
    /// Start the program from the beginning even if DIR holds an image.
    #[arg(long)]
    fresh: bool,
    /// When resuming, what to do when files the program had open are
    /// gone: refuse, or put /dev/null at their descriptor numbers.
    #[arg(long, default_value = "refuse", value_parser = ["refuse", "devnull"])]
    missing_fds: String,
    /// Say what is being done on stderr.
    #[arg(short, long)]
    verbose: bool,
    /// The program and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<OsString>,
}

/// The record of the job this command would start.
fn record_of(cmd: &[OsString], prog: &Path, instance: String) -> Result<RunRecord, String> {
    let st = std::fs::metadata(prog).map_err(|e| format!("{}: {e}", prog.display()))?;
    let cwd = std::env::current_dir()
        .and_then(std::fs::canonicalize)
        .map_err(|e| format!("cannot tell the working directory: {e}"))?;
    Ok(RunRecord {
        instance,
        exe: prog.display().to_string(),
        exe_id: (
            st.dev(),
            st.ino(),
            st.size(),
            st.mtime() * 1_000_000_000 + st.mtime_nsec(),
        ),
        command: cmd
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
        cwd: cwd.display().to_string(),
        ended_unix_ms: None,
    })
}

/// PROG as the kernel will run it: PATH lookup, then symlinks resolved.
fn resolve(prog: &Path) -> Result<PathBuf, String> {
    let found = if prog.as_os_str().as_bytes().contains(&b'/') {
        Some(prog.to_path_buf())
    } else {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join(prog))
                .find(|p| p.metadata().is_ok_and(|m| m.is_file()))
        })
    };
    let found = found.ok_or_else(|| format!("{}: command not found", prog.display()))?;
    std::fs::canonicalize(&found).map_err(|e| format!("{}: {e}", found.display()))
}

/// Why LD_PRELOAD cannot reach `prog`, if it cannot: the dynamic loader
/// ignores it for set-user/group-ID programs, and a statically linked
/// program has no loader at all.
fn preload_obstacle(prog: &Path) -> Option<&'static str> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(prog).ok()?;
    if meta.permissions().mode() & 0o6000 != 0 {
        return Some("it is set-user-ID or set-group-ID (the loader ignores LD_PRELOAD)");
    }
    let bytes = std::fs::read(prog).ok()?;
    match goblin::elf::Elf::parse(&bytes) {
        Ok(elf) if elf.interpreter.is_none() && needs_nothing(&elf) => Some(
            "it is statically linked (LD_PRELOAD needs the dynamic loader); link it with \
             libselfckpt instead",
        ),
        _ => None, // dynamic ELF, or a script (its interpreter is checked when it runs)
    }
}

/// True if the ELF names no shared library it needs.
fn needs_nothing(elf: &goblin::elf::Elf) -> bool {
    elf.dynamic.as_ref().map_or(0, |d| d.info.needed_count) == 0
}

/// libselfckpt.so: `SELFCKPT_LIB`, or next to this binary.
fn find_lib() -> Result<PathBuf, String> {
    if let Some(p) = settings::lib() {
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!(
                "{}={}: no such file",
                settings::LIB.name,
                p.display()
            ))
        };
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find myself: {e}"))?;
    let dir = exe.parent().unwrap_or(Path::new("/"));
    for cand in [
        dir.join("libselfckpt.so"),
        dir.join("../lib/libselfckpt.so"),
    ] {
        if cand.is_file() {
            return std::fs::canonicalize(&cand).map_err(|e| format!("{}: {e}", cand.display()));
        }
    }
    Err(format!(
        "cannot find libselfckpt.so next to {} (build it with `cargo build`, which makes the \
         cdylib, or set SELFCKPT_LIB)",
        exe.display()
    ))
}

/// The newest valid image in `dir` of the run `instance` (its token in
/// the name, a regular file of ours), by what the images say (META time,
/// then sequence). Damaged images are reported and skipped.
fn newest_image_of(dir: &Path, instance: &str) -> Option<(PathBuf, u64)> {
    let mut images: Vec<_> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .and_then(imagedir::parse_name)
                .is_some_and(|(_, _, inst, _)| inst == instance)
        })
        .filter_map(|e| imagedir::read_own_image(&e.path()))
        .map(|i| ((i.created_unix_ns, i.sequence), i.path))
        .collect();
    images.sort();
    // A process tree's checkpoints are sets: the newest valid one, if it
    // is newer than every single image.
    let set = crate::tree::newest_valid_set(dir, Some(instance));
    for ((created, _), p) in images.into_iter().rev() {
        match crate::usable(&p) {
            Ok(()) => {
                return match set {
                    Some((s, t)) if t > created => Some((s, t)),
                    _ => Some((p, created)),
                }
            }
            Err(e) => eprintln!("selfckpt: skipping damaged image {}: {e}", p.display()),
        }
    }
    set
}

/// What the previous run recorded in `dir` says about resuming `new`: the
/// image to resume from, if any (saying on stderr why it starts fresh
/// when that is not obvious).
fn resumable(dir: &Path, new: &RunRecord) -> Option<(PathBuf, u64)> {
    let old = match RunRecord::load(dir) {
        Ok(Some(old)) => old,
        Ok(None) => return None,
        Err(e) => {
            eprintln!("selfckpt: ignoring the run record: {e}; starting fresh");
            return None;
        }
    };
    let what = new.command.join(" ");
    if !old.same_job(new) {
        eprintln!(
            "selfckpt: {} was used by another job ({} in {}); starting `{what}` fresh",
            dir.display(),
            old.command.join(" "),
            old.cwd
        );
        return None;
    }
    if let Some(ms) = old.ended_unix_ms {
        eprintln!(
            "selfckpt: the previous run of `{what}` ended at {} UTC; starting it fresh",
            crate::ls::utc(ms * 1_000_000)
        );
        return None;
    }
    newest_image_of(dir, &old.instance)
}

pub fn run(a: RunArgs) -> Result<(), String> {
    let _ = a.children; // the default now
    let sig = selfckpt::trigger::parse_signal(&a.signal)
        .ok_or_else(|| format!("--signal {}: not a signal name", a.signal))?;
    if !a.term_signal.eq_ignore_ascii_case("none")
        && selfckpt::trigger::parse_signal(&a.term_signal).is_none()
    {
        return Err(format!(
            "--term-signal {}: not a signal name",
            a.term_signal
        ));
    }
    // The trigger signals wait, blocked, until the library's handlers are
    // in place: a checkpoint request that comes while we look for images,
    // or while the program's loader runs, must not kill it (their default
    // action). A resumed program gets its own masks back; a started one
    // has them unblocked by the library's constructor (SELFCKPT_UNBLOCK).
    let triggers: Vec<i32> = [Some(sig), selfckpt::trigger::parse_signal(&a.term_signal)]
        .into_iter()
        .flatten()
        .map(|s| s as i32)
        .collect();
    selfckpt::capture::sys::change_signal_mask(libc::SIG_BLOCK, &triggers);
    let prog = resolve(Path::new(&a.command[0]))?;
    let dir = imagedir::ensure(&a.dir).map_err(|e| e.to_string())?;
    let missing = if a.missing_fds == "devnull" {
        selfckpt::restore::MissingFds::DevNull
    } else {
        selfckpt::restore::MissingFds::Refuse
    };
    let record = record_of(&a.command, &prog, imagedir::new_instance())?;
    if !a.fresh {
        if let Some((image, created)) = resumable(&dir, &record) {
            eprintln!(
                "selfckpt: resuming {} from {}, taken {} UTC",
                record.command.join(" "),
                image.display(),
                crate::ls::utc(created)
            );
            // The very code path of `selfckpt restart` (ids policy from
            // SELFCKPT_TIDS, as there).
            let tids = settings::tids()
                .map_err(|e| e.to_string())?
                .unwrap_or_else(|| "auto".into());
            // The images' stdio is the previous run's; this run's is
            // recorded for the next resume (put back if this one fails).
            let original = crate::stdio_record::load(&dir);
            let _ = crate::stdio_record::save(&dir, None);
            return crate::restart(
                Some(image.clone()),
                None,
                a.verbose,
                &tids,
                missing,
                selfckpt::restore::ChangedFds::Refuse,
                original,
            )
            .map_err(|e| {
                if let Some(previous) = original {
                    let _ = crate::stdio_record::save(&dir, Some(previous));
                }
                format!(
                    "cannot resume from {}: {e} (run with --fresh to start over)",
                    image.display()
                )
            });
        }
    }
    if let Some(why) = preload_obstacle(&prog) {
        return Err(format!("cannot checkpoint {}: {why}", prog.display()));
    }
    let lib = find_lib()?;
    record.store(&dir).map_err(|e| e.to_string())?;
    crate::stdio_record::save(&dir, None)?;
    let mut preload = lib.as_os_str().to_owned();
    if let Some(old) = std::env::var_os("LD_PRELOAD").filter(|o| !o.is_empty()) {
        preload.push(":");
        preload.push(old);
    }
    if a.verbose {
        eprintln!(
            "selfckpt: starting {} with {}",
            prog.display(),
            lib.display()
        );
    }
    let mut cmd = std::process::Command::new(&a.command[0]);
    cmd.args(&a.command[1..])
        .env("LD_PRELOAD", preload)
        .env(settings::PRELOAD.name, "1")
        .env(
            settings::PID.name,
            format!(
                "{:0w$}",
                std::process::id(),
                w = selfckpt::preload::PID_WIDTH
            ),
        )
        .env(settings::DIR.name, &dir)
        .env(settings::INSTANCE.name, &record.instance)
        .env(settings::SIGNAL.name, sig.as_str())
        .env(settings::TERM_SIGNAL.name, &a.term_signal)
        .env(settings::KEEP.name, a.keep.to_string())
        .env(settings::LEVEL.name, a.level.to_string())
        .env(settings::CHILDREN.name, if a.no_tree { "0" } else { "1" })
        .env(settings::FORKED.name, if a.forked { "1" } else { "0" })
        .env(
            settings::INCREMENTAL.name,
            if a.incremental {
                "1".to_string()
            } else {
                std::env::var(settings::INCREMENTAL.name).unwrap_or_else(|_| "0".into())
            },
        )
        .env(
            settings::UNBLOCK.name,
            triggers
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(","),
        );
    match a.interval {
        Some(s) if s > 0.0 => cmd.env(settings::INTERVAL.name, s.to_string()),
        _ => cmd.env_remove(settings::INTERVAL.name),
    };
    let err = cmd.exec();
    Err(format!("cannot run {}: {err}", prog.display()))
}
