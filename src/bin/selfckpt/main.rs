//! The `selfckpt` command: run, checkpoint, restart, inspect, verify, ls,
//! gc (one file per larger subcommand).
//!
//! Exit codes: 0 success; 1 failure (damaged image, refused restart, failed
//! checkpoint: the message says why); 2 bad usage; 3 `checkpoint --wait`
//! timed out. `run` and `restart` become the program, so their exit code is
//! the program's own.

mod blob;
mod checkpoint;
mod gc;
mod ls;
mod run;
mod stdio_record;
mod tree;

use clap::{Parser, Subcommand};
use selfckpt::capture::maps::RegionKind;
use selfckpt::capture::park::Identity;
use selfckpt::image::format::arch_name;
use selfckpt::image::model::{FdKind, ThreadRole};
use selfckpt::image::read::ImageFile;
use selfckpt::image::show::shown;
use selfckpt::kstate::{epoll, eventfd, signalfd, timerfd};
use selfckpt::restore::{ChangedFds, MissingFds};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "selfckpt",
    version,
    about = "In-process checkpoint/restart for Linux programs",
    after_help = "Exit codes: 0 success; 1 failure (the message says why); 2 bad usage; \
                  3 `checkpoint --wait` timed out. `run` and `restart` become the program \
                  and exit with its code."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run an unmodified program with checkpointing injected (LD_PRELOAD),
    /// or resume it from the newest image of it in --dir.
    #[command(after_help = "Examples:\n  \
        selfckpt run --dir ck -- python3 sim.py &   # the program gets this PID\n  \
        kill -USR1 $!                               # checkpoint, go on\n  \
        kill -USR2 $!                               # checkpoint, exit 0\n  \
        selfckpt run --dir ck -- python3 sim.py     # resumes from the newest image\n\n\
        Exit code: the program's own; 1 if it cannot be started or resumed.")]
    Run(run::RunArgs),
    /// Ask a running program to checkpoint; with --wait, print the image.
    Checkpoint(checkpoint::CheckpointArgs),
    /// List the images in a directory (time, size, program, valid or not).
    Ls { dir: PathBuf },
    /// Keep the newest N valid images of each program; remove the rest.
    Gc {
        dir: PathBuf,
        /// How many images of each program to keep.
        #[arg(long)]
        keep: usize,
        /// Only say what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// Restart a program from an image (this process becomes the program).
    Restart {
        /// The image to restart from.
        #[arg(required_unless_present = "dir", conflicts_with = "dir")]
        image: Option<PathBuf>,
        /// Restart from the newest valid image in this directory.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Say what is being done on stderr.
        #[arg(short, long)]
        verbose: bool,
        /// Process and thread ids: `exact` (in a PID namespace of its own;
        /// without root, inside a user namespace), `new` (new ids; the library
        /// translates thread ids), `auto` (exact where possible). Also
        /// SELFCKPT_TIDS.
        #[arg(long, value_parser = ["auto", "exact", "new"])]
        tids: Option<String>,
        /// What to do when files the program had open are gone: refuse
        /// the restart, or put /dev/null at their descriptor numbers.
        #[arg(long, default_value = "refuse", value_parser = ["refuse", "devnull"])]
        missing_fds: String,
        /// What to do when a path the program had open now names another
        /// file (replaced, re-created, grown by someone else): refuse the
        /// restart, or reopen the file there anyway. Symlinks and files of
        /// another type (a FIFO, a device) are refused either way.
        #[arg(long, default_value = "refuse", value_parser = ["refuse", "accept"])]
        changed_fds: String,
        /// What to do with event and timer descriptors that cannot come
        /// back as they were (`inspect` lists them under "not
        /// restorable"): refuse the restart, or make a fresh one of the
        /// same kind (an epoll without the registrations that cannot come
        /// back, an eventfd of unknown mode as a plain one, a timerfd
        /// without the expirations it cannot be given), with a warning.
        /// Also a comma-separated list of the kinds whose stand-ins are
        /// accepted (`--unrestorable=epoll,socket`; `inspect` names each
        /// object's kind).
        #[arg(long, default_value = "refuse")]
        unrestorable: String,
    },
    /// Show what an image holds.
    Inspect {
        image: PathBuf,
        /// Machine-readable output. Interval timers are under "timers"
        /// ("real", "virtual", "prof"), each with "value" (time left) and
        /// "interval" (period) in seconds, 0 when not set. Signals pending
        /// for the process are under "pending", each thread's under its
        /// "pending" (names: "SIGUSR2", "SIGRTMIN+1"). Event and timer
        /// descriptors are under "eventfds", "timerfds", "signalfds" and
        /// "epolls" (with their "registrations"); what a restart cannot
        /// bring back under "not_restorable" (sentences).
        #[arg(long)]
        json: bool,
    },
    /// Check every checksum of an image; exit 0 if it is intact, 1 if not.
    Verify { image: PathBuf },
}

fn main() -> ExitCode {
    // Behave like other command-line tools when the reader of stdout goes
    // away (`selfckpt inspect IMG | head`): end quietly instead of panicking.
    // SAFETY: restoring the default disposition of SIGPIPE at start-up.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Run(a) => run::run(a),
        Cmd::Checkpoint(a) => match checkpoint::checkpoint(a) {
            Ok(()) => Ok(()),
            Err(checkpoint::Failed(code, msg)) => {
                eprintln!("selfckpt: {msg}");
                return ExitCode::from(code);
            }
        },
        Cmd::Ls { dir } => ls::ls(&dir),
        Cmd::Gc { dir, keep, dry_run } => gc::gc(&dir, keep, dry_run),
        Cmd::Restart {
            image,
            dir,
            verbose,
            tids,
            missing_fds,
            changed_fds,
            unrestorable,
        } => {
            match selfckpt::restore::Unrestorable::parse(&unrestorable) {
                Ok(u) => {
                    let _ = STAND_INS.set(u);
                }
                Err(e) => {
                    eprintln!("selfckpt: {e}");
                    return ExitCode::from(2);
                }
            }
            let tids = match tids.map_or_else(selfckpt::settings::tids, |t| Ok(Some(t))) {
                Ok(t) => t.unwrap_or_else(|| "auto".into()),
                Err(e) => {
                    eprintln!("selfckpt: {e}");
                    return ExitCode::from(1);
                }
            };
            let missing = if missing_fds == "devnull" {
                MissingFds::DevNull
            } else {
                MissingFds::Refuse
            };
            let changed = if changed_fds == "accept" {
                ChangedFds::Accept
            } else {
                ChangedFds::Refuse
            };
            restart(image, dir, verbose, &tids, missing, changed, None)
        }
        Cmd::Inspect { image, json } => inspect(&image, json),
        Cmd::Verify { image } => verify(&image),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("selfckpt: {msg}");
            ExitCode::from(1)
        }
    }
}

/// `restart --unrestorable=...` (a resume by `run` always refuses).
static STAND_INS: std::sync::OnceLock<selfckpt::restore::Unrestorable> = std::sync::OnceLock::new();

fn restart(
    image: Option<PathBuf>,
    dir: Option<PathBuf>,
    verbose: bool,
    tids: &str,
    missing_fds: MissingFds,
    changed_fds: ChangedFds,
    original_stdio: Option<[Option<selfckpt::restore::stdio::Identity>; 3]>,
) -> Result<(), String> {
    // From here on a signal sent to us is meant for the program: it waits
    // pending until the program is back.
    selfckpt::restore::block_signals();
    let path = match (image, dir) {
        (Some(p), _) => p,
        (None, Some(d)) => newest_valid(&d)?,
        (None, None) => return Err("name an image or --dir".into()),
    };
    let opts = selfckpt::restore::RestartOptions {
        verbose,
        tids: selfckpt::restore::TidPolicy::parse(tids).ok_or("--tids: auto, exact or new")?,
        missing_fds,
        changed_fds,
        unrestorable: STAND_INS.get().cloned().unwrap_or_default(),
        original_stdio,
        tree: None,
    };
    let restarted = if selfckpt::tree::set::is_set(&path) {
        selfckpt::restore::tree::restart_tree(&path, &blob::blob(), &opts)
    } else {
        selfckpt::restore::restart(&path, &blob::blob(), &opts)
    };
    match restarted {
        Ok(never) => match never {},
        // Said once: most refusals already end with "restart refused".
        Err(e) => Err(match e.to_string() {
            m if m.contains("restart refused") => m,
            m => format!("restart refused: {m}"),
        }),
    }
}

/// The process's place in its session, for `inspect`.
fn session_role_name(role: u8) -> &'static str {
    match role {
        selfckpt::image::model::SESSION_LEADER => "session leader",
        selfckpt::image::model::GROUP_LEADER => "process group leader",
        _ => "member of another process's group",
    }
}

/// Short name of how the latest restart kept ids, for `inspect --json`.
fn identity_name(v: u32) -> &'static str {
    match Identity::from_u64(v as u64) {
        Identity::Original => "original",
        Identity::Exact => "exact",
        Identity::NewIds => "new-ids",
    }
}

/// The newest image in `dir` whose every checksum verifies.
fn newest_valid(dir: &Path) -> Result<PathBuf, String> {
    let rd = std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut images: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "ckpt"))
        .collect();
    images.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    let newest_set = tree::newest_valid_set(dir, None);
    for p in images.iter().rev() {
        match usable(p) {
            Ok(()) => {
                let created = ImageFile::open(p)
                    .ok()
                    .and_then(|i| i.view().ok().map(|v| v.meta.created_unix_ns))
                    .unwrap_or(0);
                return Ok(match newest_set {
                    Some((set, t)) if t > created => set,
                    _ => p.clone(),
                });
            }
            Err(e) => eprintln!("selfckpt: skipping {}: {e}", p.display()),
        }
    }
    newest_set
        .map(|(p, _)| p)
        .ok_or_else(|| format!("no valid image in {}", dir.display()))
}

/// Whether the image at `path` and its whole chain (an incremental
/// image's ancestors) verify.
pub(crate) fn usable(path: &Path) -> Result<(), String> {
    scan(path)?;
    verify_chain(path).map(|_| ())
}

struct Scan {
    per_region: Vec<selfckpt::image::verify::RegionBytes>,
    end: selfckpt::image::model::EndRecord,
    mac_present: bool,
}

/// Reads the whole image, verifying every checksum (and the MAC when
/// SELFCKPT_KEY is set) and decompressing every chunk.
fn scan(path: &Path) -> Result<Scan, String> {
    let img = ImageFile::open(path).map_err(|e| e.to_string())?;
    let s = selfckpt::image::verify::scan(img).map_err(|e| e.to_string())?;
    Ok(Scan {
        per_region: s.per_region,
        end: s.end,
        mac_present: s.mac_present,
    })
}

fn verify(path: &Path) -> Result<(), String> {
    if selfckpt::tree::set::is_set(path) {
        let rec =
            tree::verify_set(path).map_err(|e| format!("{}: DAMAGED: {e}", path.display()))?;
        println!(
            "{}: OK (tree record {} {}, {} processes, every image verified)",
            path.display(),
            rec.format,
            rec.version,
            rec.members.len()
        );
        return Ok(());
    }
    let s = scan(path).map_err(|e| format!("{}: DAMAGED: {e}", path.display()))?;
    let keyed = selfckpt::image::mac::MacKey::from_env().is_some();
    let ancestors = verify_chain(path).map_err(|e| format!("{}: DAMAGED: {e}", path.display()))?;
    println!(
        "{}: OK ({} records, {} chunks{}{})",
        path.display(),
        s.end.records + 1,
        s.end.chunks,
        if ancestors > 0 {
            format!(", incremental: {ancestors} ancestor image(s) verified")
        } else {
            String::new()
        },
        match (s.mac_present, keyed) {
            (true, true) => ", MAC verified",
            (true, false) => ", MAC present but not checked: SELFCKPT_KEY is not set",
            (false, _) => "",
        }
    );
    Ok(())
}

/// Verifies every ancestor of an incremental image (each record's
/// checksum, each chunk decoded, each the very image its child names);
/// how many there were.
fn verify_chain(path: &Path) -> Result<usize, String> {
    let key = selfckpt::image::mac::MacKey::from_env();
    let img = ImageFile::open_with_key(path, key.as_ref()).map_err(|e| e.to_string())?;
    let v = img.view().map_err(|e| e.to_string())?;
    let ancestors =
        selfckpt::image::chain::open_ancestors(path, &v, img.header.page_size, key.as_ref())
            .map_err(|e| e.to_string())?;
    let n = ancestors.len();
    let mut buf = Vec::new();
    for a in ancestors {
        a.read(|c, _| {
            buf.resize(c.header.raw_len as usize, 0);
            c.decode_into(&mut buf)
        })
        .map_err(|e| e.to_string())?;
    }
    Ok(n)
}

fn prot_str(p: u32) -> String {
    let b = |bit: i32, c: char| if p & bit as u32 != 0 { c } else { '-' };
    [
        b(libc::PROT_READ, 'r'),
        b(libc::PROT_WRITE, 'w'),
        b(libc::PROT_EXEC, 'x'),
    ]
    .iter()
    .collect()
}

fn human(n: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < U.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

/// Writes `doc` (an object) with the lists "regions", "threads", "fds",
/// the event and timer descriptors ("eventfds", "timerfds", "signalfds",
/// "epolls") and "not_restorable" appended, one element at a time: each element's JSON is made, written
/// and dropped, so the output never exists whole in memory (an image of a
/// million regions made `inspect --json` hold 31 times the image's size).
fn write_json(
    doc: serde_json::Value,
    v: &selfckpt::image::read::ImageView,
    per_region: &[selfckpt::image::verify::RegionBytes],
) -> std::io::Result<()> {
    use std::io::Write;
    let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let head = serde_json::to_string_pretty(&doc)?;
    // The object's closing brace is written after the lists.
    let head = head
        .trim_end()
        .strip_suffix('}')
        .unwrap_or(&head)
        .trim_end();
    let mut w = std::io::BufWriter::new(std::io::stdout().lock());
    w.write_all(head.as_bytes())?;
    fn list<T>(
        w: &mut impl Write,
        name: &str,
        items: impl Iterator<Item = T>,
        to_json: impl Fn(T) -> serde_json::Value,
    ) -> std::io::Result<()> {
        write!(w, ",\n  \"{name}\": [")?;
        for (i, item) in items.enumerate() {
            w.write_all(if i == 0 { b"\n    " } else { b",\n    " })?;
            serde_json::to_writer(&mut *w, &to_json(item))?;
        }
        w.write_all(b"\n  ]")
    }
    list(
        &mut w,
        "regions",
        v.regions.iter().zip(per_region),
        |(r, b)| {
            serde_json::json!({
                "start": format!("{:#x}", r.start), "end": format!("{:#x}", r.end),
                "prot": prot_str(r.prot),
                "kind": RegionKind::from_u32(r.kind).map_or("?", |k| k.name()),
                "path": lossy(r.path), "mapped": r.end - r.start,
                "present": b.present, "raw": b.raw, "stored": b.stored,
            })
        },
    )?;
    list(
        &mut w,
        "threads",
        v.threads.iter().zip(&v.thread_pending),
        |(t, pending)| {
            serde_json::json!({
                "tid": t.tid, "role": ThreadRole::from_u32(t.role).map_or("?", |r| r.name()),
                "comm": t.comm_str(), "ip": format!("{:#x}", t.ip), "sp": format!("{:#x}", t.sp),
                "rseq": t.rseq_len != 0, "pending": pending.names(),
            })
        },
    )?;
    list(&mut w, "fds", v.kernel.fds.iter(), |f| {
        serde_json::json!({
            "fd": f.fd, "kind": FdKind::from_u32(f.kind).map_or("?", |k| k.name()),
            "path": lossy(f.path), "flags": format!("{:#o}", f.flags), "offset": f.offset,
        })
    })?;
    let ev = &v.kernel.events;
    list(&mut w, "eventfds", ev.eventfds.iter(), |x| {
        serde_json::json!({
            "fd": x.fd, "flags": format!("{:#o}", x.flags), "count": x.count,
            "semaphore": match x.semaphore {
                eventfd::SEMAPHORE => serde_json::Value::Bool(true),
                eventfd::NOT_SEMAPHORE => serde_json::Value::Bool(false),
                _ => serde_json::Value::Null,
            },
        })
    })?;
    let ts = |t: timerfd::TimeSpec| t.sec as f64 + t.nsec as f64 / 1e9;
    list(&mut w, "timerfds", ev.timerfds.iter(), |x| {
        serde_json::json!({
            "fd": x.fd, "flags": format!("{:#o}", x.flags), "clock": timerfd::clock_name(x.clock),
            "settime_flags": x.settime_flags, "value": ts(x.value), "interval": ts(x.interval),
            "ticks": x.ticks,
        })
    })?;
    list(&mut w, "signalfds", ev.signalfds.iter(), |x| {
        serde_json::json!({
            "fd": x.fd, "flags": format!("{:#o}", x.flags),
            "mask": signalfd::signal_names(x.mask),
        })
    })?;
    list(&mut w, "epolls", ev.epolls.iter(), |x| {
        let regs: Vec<serde_json::Value> = x
            .registrations
            .iter()
            .map(|r| {
                serde_json::json!({
                    "fd": r.tfd, "events": format!("{:#x}", r.events),
                    "data": format!("{:#x}", r.data),
                    "state": match r.state {
                        epoll::TFD_SAME => "same",
                        epoll::TFD_CLOSED => "closed",
                        _ => "another file",
                    },
                })
            })
            .collect();
        serde_json::json!({
            "fd": x.fd, "flags": format!("{:#o}", x.flags), "complete": x.truncated == 0,
            "registrations": regs,
        })
    })?;
    list(
        &mut w,
        "objects",
        v.kernel.objects.json().into_iter(),
        |x| x,
    )?;
    list(
        &mut w,
        "not_restorable",
        v.kernel.problems().into_iter(),
        |p| serde_json::Value::String(p.text),
    )?;
    w.write_all(b"\n}\n")?;
    w.flush()
}

/// Shows what an image holds. In the text form every string from the
/// image (paths, host name, thread names) is escaped (`image::show`); the
/// JSON form escapes control characters as JSON does.
fn inspect(path: &Path, json: bool) -> Result<(), String> {
    if selfckpt::tree::set::is_set(path) {
        return tree::inspect_set(path, json);
    }
    let s = scan(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let img = ImageFile::open(path).map_err(|e| e.to_string())?;
    let v = img.view().map_err(|e| e.to_string())?;
    let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let file_len = img.file_len;
    let timers: serde_json::Map<String, serde_json::Value> = v
        .kernel
        .itimers
        .iter()
        .map(|(kind, t)| {
            let doc = serde_json::json!({
                "value": t.value.as_secs_f64(), "interval": t.interval.as_secs_f64(),
            });
            (kind.name().to_string(), doc)
        })
        .collect();
    let m = &v.meta;
    let e = &s.end;
    let ratio = if e.bytes_stored > 0 {
        e.bytes_raw as f64 / e.bytes_stored as f64
    } else {
        0.0
    };
    if json {
        let doc = serde_json::json!({
            "path": path.display().to_string(),
            "format": format!("{}.{}", img.header.major, img.header.minor),
            "arch": arch_name(img.header.arch), "page_size": img.header.page_size,
            "file_bytes": file_len, "mac": s.mac_present,
            "created_unix_ns": m.created_unix_ns, "pid": m.pid, "sequence": m.sequence,
            "restarts": m.restarts, "identity": identity_name(m.identity),
            "mailbox_layout": m.mailbox_layout,
            "session_role": m.session_role.map(session_role_name),
            "parent": m.parent_image().map(|p| lossy(p.name)),
            "kernel": lossy(m.kernel_release), "hostname": lossy(m.hostname),
            "selfckpt_version": lossy(m.selfckpt_version),
            "exe": lossy(m.exe_path), "build_id": selfckpt::elfid::hex(m.exe_build_id),
            "cwd": lossy(v.kernel.process.cwd), "umask": format!("{:03o}", v.kernel.process.umask),
            "brk": format!("{:#x}", v.kernel.process.mm.brk),
            "sigactions": v.kernel.sigactions.len(), "timers": timers,
            "pending": v.kernel.pending.names(),
            "bytes_mapped": e.bytes_mapped, "bytes_present": e.bytes_present, "bytes_raw": e.bytes_raw,
            "bytes_stored": e.bytes_stored, "zero_pages": e.zero_pages, "chunks": e.chunks,
            "compression_ratio": ratio,
        });
        return write_json(doc, &v, &s.per_region).map_err(|e| format!("cannot write: {e}"));
    }
    println!("image      {}", path.display());
    println!(
        "format     {}.{}  arch {}  page {}  file {}{}",
        img.header.major,
        img.header.minor,
        arch_name(img.header.arch),
        img.header.page_size,
        human(file_len),
        if s.mac_present { "  MAC" } else { "" }
    );
    println!(
        "program    {}  (build-id {})",
        shown(m.exe_path),
        selfckpt::elfid::hex(m.exe_build_id)
    );
    println!(
        "taken      pid {} on {} (kernel {}), sequence {}, selfckpt {}, mailbox layout {}",
        m.pid,
        shown(m.hostname),
        shown(m.kernel_release),
        m.sequence,
        shown(m.selfckpt_version),
        m.mailbox_layout
            .map_or("not recorded".to_string(), |l| l.to_string())
    );
    if let Some(role) = m.session_role {
        println!("session    {}", session_role_name(role));
    }
    if let Some(p) = m.parent_image() {
        println!(
            "parent     {} (incremental: pages not stored here come from it; END checksum {:#018x})",
            shown(p.name),
            p.end_checksum
        );
    }
    if m.restarts > 0 {
        println!(
            "restarted  {} time(s); latest restart: {}",
            m.restarts,
            Identity::from_u64(m.identity as u64).describe()
        );
    }
    println!(
        "memory     mapped {}  present {}  non-zero {}  stored {}  ratio {:.2}  zero pages {}",
        human(e.bytes_mapped),
        human(e.bytes_present),
        human(e.bytes_raw),
        human(e.bytes_stored),
        ratio,
        e.zero_pages
    );
    println!("\nregions ({}):", v.regions.len());
    println!(
        "  {:>14}-{:<14} {:4} {:13} {:>10} {:>10} {:>10} {:>10}  path",
        "start", "end", "prot", "kind", "mapped", "present", "raw", "stored"
    );
    for (r, b) in v.regions.iter().zip(&s.per_region) {
        println!(
            "  {:>14x}-{:<14x} {:4} {:13} {:>10} {:>10} {:>10} {:>10}  {}",
            r.start,
            r.end,
            prot_str(r.prot),
            RegionKind::from_u32(r.kind).map_or("?", |k| k.name()),
            human(r.end - r.start),
            // Unknown in images before format 1.2.
            b.present.map_or("?".into(), human),
            human(b.raw),
            human(b.stored),
            shown(r.path)
        );
    }
    println!("\nthreads ({}):", v.threads.len());
    for (t, pending) in v.threads.iter().zip(&v.thread_pending) {
        let pending = if pending.is_empty() {
            String::new()
        } else {
            format!(" pending {}", pending.names().join(" "))
        };
        println!(
            "  tid {:>7} {:16} {:16} ip {:#x} sp {:#x}{}{pending}",
            t.tid,
            ThreadRole::from_u32(t.role).map_or("?", |r| r.name()),
            shown(t.comm_str().as_bytes()),
            t.ip,
            t.sp,
            if t.rseq_len != 0 { " rseq" } else { "" }
        );
    }
    println!("\nfiles ({}):", v.kernel.fds.len());
    for f in &v.kernel.fds {
        println!(
            "  {:>4} {:8} flags {:#o} offset {} {}",
            f.fd,
            FdKind::from_u32(f.kind).map_or("?", |k| k.name()),
            f.flags,
            f.offset,
            shown(f.path)
        );
    }
    let ev = v.kernel.events.describe();
    if !ev.is_empty() {
        println!("\nevent and timer descriptors:");
        for line in ev {
            println!("  {line}");
        }
    }
    let objects = v.kernel.objects.describe();
    if !objects.is_empty() {
        println!("\nkernel objects:");
        for line in objects {
            println!("  {line}");
        }
    }
    let problems = v.kernel.problems();
    if !problems.is_empty() {
        println!("\nnot restorable ({}):", problems.len());
        for p in problems {
            println!("  {}  [--unrestorable={}]", p.text, p.kind);
        }
    }
    println!(
        "\nprocess    cwd {}  umask {:03o}  brk {:#x}  {} signal handlers",
        shown(v.kernel.process.cwd),
        v.kernel.process.umask,
        v.kernel.process.mm.brk,
        v.kernel.sigactions.len()
    );
    let armed: Vec<String> = v
        .kernel
        .itimers
        .armed()
        .map(|(kind, t)| {
            let every = if t.interval.is_zero() {
                String::new()
            } else {
                format!(" every {:.3}s", t.interval.as_secs_f64())
            };
            format!("{} {:.3}s{every}", kind.name(), t.value.as_secs_f64())
        })
        .collect();
    if !armed.is_empty() {
        println!("timers     {}", armed.join(", "));
    }
    if !v.kernel.pending.is_empty() {
        println!("pending    {}", v.kernel.pending.names().join(" "));
    }
    Ok(())
}
