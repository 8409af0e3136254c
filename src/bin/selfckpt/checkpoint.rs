//! `selfckpt checkpoint PID [--wait] [--timeout S]`: asks a running
//! program to checkpoint (sends its trigger signal) and, with `--wait`,
//! waits until the new image is durable and prints its path.
//!
//! How it knows: every checkpoint appends one JSON line to
//! `DIR/stats.jsonl` after the image was renamed into place and the
//! directory fsynced. `--wait` notes the file's length, sends the signal,
//! and reads new lines until one from PID (or, for a program restarted in
//! a PID namespace below PID, its pid there) says `continue`/`term` (path
//! printed, exit 0) or `error` (exit 1). DIR is `--dir`, else the
//! program's `SELFCKPT_DIR` (from /proc/PID/environ, as set by `selfckpt
//! run`), else `ckpt` in the program's working directory.
//!
//! The checkpointer also sends that line to the abstract socket
//! `selfckpt-wait-PID` (see `selfckpt::notify`), which `--wait` binds
//! before signalling: a failure that could not be written to the image
//! directory still reaches the waiter at once.
//!
//! Must never: signal a process that does not really run selfckpt's
//! checkpointer (it catches the signal, per `SigCgt` in /proc/PID/status,
//! and runs the checkpoint thread; or it is `selfckpt restart` forwarding
//! to such a descendant) without `--force`: the signal's default action
//! kills.

use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct CheckpointArgs {
    /// The process to checkpoint.
    pid: i32,
    /// The program's image directory (default: found from the process).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The trigger signal (default: the program's SELFCKPT_SIGNAL, else USR1).
    #[arg(long)]
    signal: Option<String>,
    /// Checkpoint and then exit (sends the term signal, USR2 by default).
    #[arg(long)]
    exit: bool,
    /// Wait until the image is durable and print its path.
    #[arg(long)]
    wait: bool,
    /// Give up waiting after this many seconds (exit code 3).
    #[arg(long, default_value_t = 120.0)]
    timeout: f64,
    /// Send the signal even if the process does not look like it runs selfckpt.
    #[arg(long)]
    force: bool,
}

/// Failure of this command, with its exit code.
pub struct Failed(pub u8, pub String);

fn environ_of(pid: i32) -> Vec<(String, String)> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|b| {
            b.split(|&c| c == 0)
                .filter_map(|kv| {
                    let s = String::from_utf8_lossy(kv);
                    s.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The ids under which PID's program may report in `stats.jsonl`: PID
/// itself and, for every descendant, each of its pids (`NSpid`). A program
/// restarted with exact ids runs in a PID namespace below `selfckpt
/// restart` (the PID the user knows) and reports its checkpoint-time pid.
/// Also returns the descendants (host pids), whose environment may name
/// the image directory when PID's own does not.
fn report_pids(pid: i32) -> (Vec<i64>, Vec<i32>) {
    let mut out = vec![pid as i64];
    let mut descendants = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let kids =
            std::fs::read_to_string(format!("/proc/{p}/task/{p}/children")).unwrap_or_default();
        for k in kids
            .split_whitespace()
            .filter_map(|k| k.parse::<i32>().ok())
        {
            let status = std::fs::read_to_string(format!("/proc/{k}/status")).unwrap_or_default();
            if let Some(ns) = status.lines().find_map(|l| l.strip_prefix("NSpid:")) {
                out.extend(ns.split_whitespace().filter_map(|v| v.parse::<i64>().ok()));
            }
            todo.push(k);
            descendants.push(k);
        }
    }
    (out, descendants)
}

/// True if signal `sig` is in the mask `field` (`SigCgt`, `SigBlk`) of
/// /proc/PID/status.
fn in_mask(pid: i32, field: &str, sig: i32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|mask| (1..=64).contains(&sig) && mask & (1u64 << (sig - 1)) != 0)
}

/// True if `pid` catches `sig`.
fn catches(pid: i32, sig: i32) -> bool {
    in_mask(pid, "SigCgt:", sig)
}

/// True if `pid` runs the checkpoint thread: a thread other than the main
/// one named `selfckpt`.
fn has_checkpoint_thread(pid: i32) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|rd| {
            rd.flatten().any(|t| {
                t.file_name().to_str() != Some(&pid.to_string())
                    && std::fs::read_to_string(t.path().join("comm"))
                        .is_ok_and(|c| c.trim() == "selfckpt")
            })
        })
        .unwrap_or(false)
}

/// True if `pid` really runs the checkpointer for `sig`: it catches the
/// signal and runs the checkpoint thread, or it catches the signal (to
/// forward it, as `selfckpt restart` does) and a descendant does both.
fn runs_selfckpt(pid: i32, sig: i32, descendants: &[i32]) -> bool {
    // `selfckpt run` blocks the trigger signals until the library's
    // handlers are in place: one sent meanwhile waits, harmless.
    let starting = in_mask(pid, "SigBlk:", sig)
        && std::fs::read_to_string(format!("/proc/{pid}/environ"))
            .is_ok_and(|e| e.contains("SELFCKPT_PRELOAD=1"));
    starting
        || catches(pid, sig)
            && (has_checkpoint_thread(pid)
                || descendants
                    .iter()
                    .any(|&d| catches(d, sig) && has_checkpoint_thread(d)))
}

/// True while PID runs (a zombie has ended, though /proc still lists it).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X'))
    })
}

pub fn checkpoint(a: CheckpointArgs) -> Result<(), Failed> {
    let fail = |m: String| Failed(1, m);
    if !std::path::Path::new(&format!("/proc/{}", a.pid)).exists() {
        return Err(fail(format!("no process {}", a.pid)));
    }
    let (pids, descendants) = report_pids(a.pid);
    // The first of PID and its descendants that has selfckpt settings.
    let env = std::iter::once(a.pid)
        .chain(descendants.iter().copied())
        .map(environ_of)
        .find(|e| e.iter().any(|(k, _)| k.starts_with("SELFCKPT_")))
        .unwrap_or_default();
    let var = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let (sig_text, default) = if a.exit {
        (
            a.signal.clone().or_else(|| var("SELFCKPT_TERM_SIGNAL")),
            "USR2",
        )
    } else {
        (a.signal.clone().or_else(|| var("SELFCKPT_SIGNAL")), "USR1")
    };
    let sig_text = sig_text.unwrap_or_else(|| default.into());
    let sig = selfckpt::trigger::parse_signal(&sig_text)
        .ok_or_else(|| fail(format!("{sig_text}: not a signal name")))?;
    // Looked at a few times over 200 ms: a process still installing gets
    // that long.
    let runs = || runs_selfckpt(a.pid, sig as i32, &descendants);
    let runs = (0..10).any(|i| {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
        runs()
    });
    if !a.force && !runs {
        return Err(fail(format!(
            "process {} does not run the selfckpt checkpointer ({}), and {sig} would likely \
             kill it; --force sends the signal anyway",
            a.pid,
            if catches(a.pid, sig as i32) {
                "it has no selfckpt checkpoint thread"
            } else {
                "it does not catch the signal"
            }
        )));
    }
    let dir = a
        .dir
        .clone()
        .or_else(|| var("SELFCKPT_DIR").map(PathBuf::from))
        .or_else(|| {
            std::fs::read_link(format!("/proc/{}/cwd", a.pid))
                .ok()
                .map(|c| c.join("ckpt"))
        });
    let stats = dir.map(|d| d.join("stats.jsonl"));
    let start = stats
        .as_ref()
        .and_then(|s| std::fs::metadata(s).ok())
        .map_or(0, |m| m.len());
    let listener = a.wait.then(|| selfckpt::notify::Listener::bind(&pids));
    let owner = std::fs::metadata(format!("/proc/{}", a.pid)).map_or(u32::MAX, |m| {
        use std::os::unix::fs::MetadataExt;
        m.uid()
    });
    let senders: Vec<i32> = std::iter::once(a.pid)
        .chain(descendants.iter().copied())
        .collect();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(a.pid), sig)
        .map_err(|e| fail(format!("cannot signal {}: {e}", a.pid)))?;
    if !a.wait {
        return Ok(());
    }
    let stats = stats.ok_or_else(|| fail("cannot tell the image directory: pass --dir".into()))?;
    let deadline = Instant::now() + Duration::from_secs_f64(a.timeout.max(0.0));
    loop {
        let bytes = std::fs::read(&stats).unwrap_or_default();
        let new = bytes.get(start as usize..).unwrap_or(&[]);
        // Datagrams from the program (credentials checked by the kernel),
        // then the new lines of stats.jsonl.
        let told: Vec<Vec<u8>> = listener
            .as_ref()
            .map(|l| l.drain())
            .unwrap_or_default()
            .into_iter()
            .filter(|m| senders.contains(&m.pid) && (m.uid == owner || m.uid == 0))
            .map(|m| m.bytes)
            .collect();
        let lines = told
            .iter()
            .map(|b| b.as_slice())
            .chain(new.split(|&c| c == b'\n'))
            .filter(|l| !l.is_empty());
        for line in lines {
            let Ok(rec) = serde_json::from_slice::<serde_json::Value>(line) else {
                continue;
            };
            if !rec["pid"].as_i64().is_some_and(|p| pids.contains(&p)) {
                continue;
            }
            match rec["state"].as_str() {
                Some("continue") | Some("term") => {
                    println!("{}", rec["path"].as_str().unwrap_or(""));
                    return Ok(());
                }
                Some("error") => {
                    return Err(fail(format!(
                        "checkpoint of {} failed: {}",
                        a.pid,
                        rec["error"].as_str().unwrap_or("?")
                    )))
                }
                _ => {}
            }
        }
        if !alive(a.pid) {
            return Err(fail(format!(
                "process {} ended before reporting a checkpoint",
                a.pid
            )));
        }
        if Instant::now() >= deadline {
            return Err(Failed(
                3,
                format!(
                    "no checkpoint reported in {} within {}s",
                    stats.display(),
                    a.timeout
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
