//! Asking another process that runs selfckpt to checkpoint, and waiting
//! until its new image is durable: what `selfckpt checkpoint PID --wait`
//! and the CRS module's `checkpoint(pid, ...)` both do.
//!
//! How it knows: every checkpoint appends one JSON line to
//! `DIR/stats.jsonl` after the image was renamed into place and the
//! directory fsynced. [`ask`] notes the file's length, sends the trigger
//! signal, and reads new lines until one from PID (or, for a program
//! restarted in a PID namespace below PID, its pid there) says
//! `continue`/`term` (the image's path) or `error`. DIR is the one asked
//! for, else the program's `SELFCKPT_DIR` (from /proc/PID/environ, as set
//! by `selfckpt run`), else `ckpt` in the program's working directory.
//!
//! Ordinary Rust, run in the asking process. Must never: signal a process
//! that is not running selfckpt's handler unless forced (SIGUSR1's default
//! action kills), or signal a process of another user when asked to keep
//! to the caller's own.

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What to ask of which process.
#[derive(Clone, Debug)]
pub struct Ask {
    /// The process to checkpoint.
    pub pid: i32,
    /// Its image directory (None: found from the process).
    pub dir: Option<PathBuf>,
    /// The trigger signal's name (None: the program's setting, else USR1
    /// or, with `exit`, USR2).
    pub signal: Option<String>,
    /// Checkpoint and then exit (the term signal).
    pub exit: bool,
    /// Wait until the image is durable.
    pub wait: bool,
    /// Give up waiting after this long.
    pub timeout: Duration,
    /// Signal even if the process does not look like it runs selfckpt.
    pub force: bool,
    /// Refuse a process whose real user is not the caller's.
    pub same_user: bool,
}

impl Ask {
    /// Waits for a checkpoint of `pid`, with every other setting at its
    /// default (found directory and signal, 120 s, same user only).
    pub fn wait_for(pid: i32) -> Ask {
        Ask {
            pid,
            dir: None,
            signal: None,
            exit: false,
            wait: true,
            timeout: Duration::from_secs(120),
            force: false,
            same_user: true,
        }
    }
}

/// Why the checkpoint of another process failed.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    #[error("no process {0}")]
    NoProcess(i32),
    #[error(
        "process {0} does not run selfckpt's checkpointer ({1}), and a signal would likely kill it"
    )]
    NotSelfckpt(i32, &'static str),
    #[error("process {pid} belongs to user {owner}, not to the caller (user {me}): refused")]
    OtherUser { pid: i32, owner: u32, me: u32 },
    #[error("{0}: not a signal name")]
    BadSignal(String),
    #[error("cannot signal {0}: {1}")]
    Signal(i32, nix::errno::Errno),
    #[error("cannot tell the image directory: pass --dir")]
    NoDir,
    #[error("checkpoint of {0} failed: {1}")]
    Failed(i32, String),
    #[error("process {0} ended before reporting a checkpoint")]
    Ended(i32),
    #[error("no checkpoint reported in {stats} within {secs}s")]
    Timeout { stats: String, secs: f64 },
}

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

/// The ids under which PID's program may report in `stats.jsonl`: each
/// pid (`NSpid`) of PID and of every descendant. A program restarted with
/// exact ids runs in a PID namespace below `selfckpt restart` and reports
/// its checkpoint-time pid, whether the user names `selfckpt restart` or
/// the program's own process. Also returns the descendants (host pids),
/// whose environment may name the image directory when PID's own does
/// not. `own`: PID's own pids ([`own_pids`]).
fn report_pids(pid: i32, own: &[i64]) -> (Vec<i64>, Vec<i32>) {
    let mut out = own.to_vec();
    let mut descendants = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let kids =
            std::fs::read_to_string(format!("/proc/{p}/task/{p}/children")).unwrap_or_default();
        for k in kids
            .split_whitespace()
            .filter_map(|k| k.parse::<i32>().ok())
        {
            out.extend(own_pids(k));
            todo.push(k);
            descendants.push(k);
        }
    }
    (out, descendants)
}

/// PID and its pids in the PID namespaces below (`NSpid`).
fn own_pids(pid: i32) -> Vec<i64> {
    let mut out = vec![pid as i64];
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    if let Some(ns) = status.lines().find_map(|l| l.strip_prefix("NSpid:")) {
        out.extend(
            ns.split_whitespace()
                .filter_map(|v| v.parse::<i64>().ok())
                .filter(|&p| p != pid as i64),
        );
    }
    out
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

/// The checkpoint thread of `pid`: a thread other than the main one named
/// `selfckpt`.
fn checkpoint_thread(pid: i32) -> Option<i32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
        .filter_map(|t| t.file_name().to_str()?.parse::<i32>().ok())
        .find(|&tid| {
            tid != pid
                && std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
                    .is_ok_and(|c| c.trim() == "selfckpt")
        })
}

/// True if `pid` runs the checkpoint thread.
fn has_checkpoint_thread(pid: i32) -> bool {
    checkpoint_thread(pid).is_some()
}

/// Sends the request channel's signal to the checkpoint thread of `pid` or
/// of the first descendant that runs one (a restart's program), with
/// `value` (1: checkpoint then exit). Thread-directed: no thread of the
/// program is interrupted by it.
fn send_request(pid: i32, descendants: &[i32], value: i32) -> Result<(), nix::errno::Errno> {
    let (tgid, tid) = std::iter::once(pid)
        .chain(descendants.iter().copied())
        .find_map(|p| checkpoint_thread(p).map(|t| (p, t)))
        .ok_or(nix::errno::Errno::ESRCH)?;
    // SAFETY: a zeroed siginfo with the fields rt_tgsigqueueinfo reads
    // (the union at offset 16: pid, uid, value) filled in.
    let r = unsafe {
        let mut info: libc::siginfo_t = core::mem::zeroed();
        info.si_signo = crate::interpose::masks::REQUEST;
        info.si_code = libc::SI_QUEUE;
        let p = &mut info as *mut libc::siginfo_t as *mut u8;
        *(p.add(16) as *mut i32) = libc::getpid();
        *(p.add(20) as *mut u32) = libc::getuid();
        *(p.add(24) as *mut i32) = value;
        libc::syscall(
            libc::SYS_rt_tgsigqueueinfo,
            tgid,
            tid,
            crate::interpose::masks::REQUEST,
            &info as *const libc::siginfo_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(nix::errno::Errno::last())
    }
}

/// True if `pid` really runs the checkpointer for `sig`: it catches the
/// signal and runs the checkpoint thread, or it catches the signal (to
/// forward it, as `selfckpt restart` does) and a descendant does both, or
/// `selfckpt run` started it and still blocks `sig` until the library's
/// handlers are in place (one sent meanwhile waits, harmless).
fn runs_checkpointer(pid: i32, sig: i32, descendants: &[i32]) -> bool {
    let starting = in_mask(pid, "SigBlk:", sig)
        && std::fs::read_to_string(format!("/proc/{pid}/environ"))
            .is_ok_and(|e| e.contains(&format!("{}=1", crate::settings::PRELOAD.name)));
    starting
        || catches(pid, sig)
            && (has_checkpoint_thread(pid)
                || descendants
                    .iter()
                    .any(|&d| catches(d, sig) && has_checkpoint_thread(d)))
}

/// Whether PID has a handler for `sig` (its `SigCgt` mask).
pub fn catches(pid: i32, sig: i32) -> bool {
    in_mask(pid, "SigCgt:", sig)
}

/// The real user id of PID (first field of `Uid:` in its status).
fn owner_of(pid: i32) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// True while PID runs (a zombie has ended, though /proc still lists it).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X'))
    })
}

/// The strings of a JSON list (none if it is not one).
fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// What the record of the image set `set` says its restart refuses. Only
/// read to be said (the set may be another user's, asked about by root):
/// a regular file, not followed if a symlink, at most 16 MiB.
fn set_refusals(set: &std::path::Path) -> Vec<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(f) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(set.join(crate::tree::record::FILE))
    else {
        return Vec::new();
    };
    if !f.metadata().is_ok_and(|m| m.is_file()) {
        return Vec::new();
    }
    let mut bytes = Vec::new();
    if f.take(16 << 20).read_to_end(&mut bytes).is_err() {
        return Vec::new();
    }
    serde_json::from_slice::<serde_json::Value>(&bytes)
        .map(|v| strings(&v["refused"]))
        .unwrap_or_default()
}

/// A checkpoint that was taken, as its stats line tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    /// The durable image (a tree's: its set).
    pub path: PathBuf,
    /// What a restart of it refuses, one sentence per object (empty: all
    /// of it comes back).
    pub refused: Vec<String>,
}

/// Sends the checkpoint request; with `wait`, returns the durable image
/// and what a restart of it refuses (None without `wait`).
pub fn ask(a: &Ask) -> Result<Option<Taken>, AskError> {
    if a.pid <= 0 || !std::path::Path::new(&format!("/proc/{}", a.pid)).exists() {
        return Err(AskError::NoProcess(a.pid));
    }
    if a.same_user {
        let me = crate::capture::sys::getuid();
        match owner_of(a.pid) {
            Some(owner) if owner != me => {
                return Err(AskError::OtherUser {
                    pid: a.pid,
                    owner,
                    me,
                })
            }
            Some(_) => {}
            None => return Err(AskError::NoProcess(a.pid)),
        }
    }
    let own = own_pids(a.pid);
    let (pids, descendants) = report_pids(a.pid, &own);
    // The first of PID and its descendants that has selfckpt settings.
    let env = std::iter::once(a.pid)
        .chain(descendants.iter().copied())
        .map(environ_of)
        .find(|e| {
            e.iter()
                .any(|(k, _)| crate::settings::VARS.iter().any(|v| v.name == k))
        })
        .unwrap_or_default();
    let var = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let (sig_text, default) = if a.exit {
        (
            a.signal
                .clone()
                .or_else(|| var(crate::settings::TERM_SIGNAL.name)),
            "USR2",
        )
    } else {
        (
            a.signal
                .clone()
                .or_else(|| var(crate::settings::SIGNAL.name)),
            "USR1",
        )
    };
    let sig_text = sig_text.unwrap_or_else(|| default.into());
    let sig = crate::trigger::parse_signal(&sig_text).ok_or(AskError::BadSignal(sig_text))?;
    let request = crate::interpose::masks::REQUEST;
    // Looked at a few times over 200 ms: a process still installing gets
    // that long. The request channel first (it works even when the program
    // took the trigger signals for itself), unless a signal was named.
    let mut channel = false;
    let runs = (0..10).any(|i| {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
        channel = a.signal.is_none() && runs_checkpointer(a.pid, request, &descendants);
        channel || runs_checkpointer(a.pid, sig as i32, &descendants)
    });
    if !a.force && !runs {
        return Err(AskError::NotSelfckpt(
            a.pid,
            if catches(a.pid, sig as i32) {
                "it has no selfckpt checkpoint thread"
            } else {
                "it does not catch the signal"
            },
        ));
    }
    let cwd = std::fs::read_link(format!("/proc/{}/cwd", a.pid)).ok();
    let dir = a
        .dir
        .clone()
        .or_else(|| var(crate::settings::DIR.name).map(PathBuf::from))
        .or_else(|| cwd.as_ref().map(|c| c.join("ckpt")))
        // A relative SELFCKPT_DIR is the program's, not ours.
        .map(|d| match &cwd {
            Some(c) if d.is_relative() && a.dir.is_none() => c.join(d),
            _ => d,
        });
    let stats = dir.map(|d| d.join("stats.jsonl"));
    let start = stats
        .as_ref()
        .and_then(|s| std::fs::metadata(s).ok())
        .map_or(0, |m| m.len());
    // Bound before the signal: the outcome comes as a datagram too, even
    // when it could not be written to the image directory.
    let listener = a.wait.then(|| crate::notify::Listener::bind(&pids));
    let owner = owner_of(a.pid).unwrap_or(u32::MAX);
    let senders: Vec<i32> = std::iter::once(a.pid)
        .chain(descendants.iter().copied())
        .collect();
    if channel {
        send_request(a.pid, &descendants, i32::from(a.exit))
            .map_err(|e| AskError::Signal(a.pid, e))?;
    } else {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(a.pid), sig)
            .map_err(|e| AskError::Signal(a.pid, e))?;
    }
    if !a.wait {
        return Ok(None);
    }
    let stats = stats.ok_or(AskError::NoDir)?;
    // None: a timeout too large to represent, i.e. none.
    let deadline = Instant::now().checked_add(a.timeout);
    let mut member_error: Option<String> = None;
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
                    // A process tree's checkpoint: its set, whose record
                    // says what its restart refuses (any member's line
                    // may come first).
                    let tree = rec["tree"].as_str();
                    let path = tree.or(rec["path"].as_str());
                    let refused = match tree {
                        Some(set) => set_refusals(std::path::Path::new(set)),
                        None => strings(&rec["not_restorable"]),
                    };
                    return Ok(Some(Taken {
                        path: PathBuf::from(path.unwrap_or("")),
                        refused,
                    }));
                }
                Some("error") => {
                    let text = rec["error"].as_str().unwrap_or("?").to_string();
                    // The root's own line says how the tree's checkpoint
                    // ended: a member's error may be of a try the root
                    // called off and makes again (a member ended as the
                    // tree froze). It is told only if the root's line
                    // never comes.
                    if rec["pid"].as_i64().is_some_and(|p| own.contains(&p)) {
                        return Err(AskError::Failed(a.pid, text));
                    }
                    member_error.get_or_insert(text);
                }
                _ => {}
            }
        }
        let timed_out = deadline.is_some_and(|d| Instant::now() >= d);
        if let Some(text) = &member_error {
            if timed_out || !alive(a.pid) {
                return Err(AskError::Failed(a.pid, text.clone()));
            }
        }
        if !alive(a.pid) {
            return Err(AskError::Ended(a.pid));
        }
        if timed_out {
            return Err(AskError::Timeout {
                stats: stats.display().to_string(),
                secs: a.timeout.as_secs_f64(),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
