//! A database server, end to end: PostgreSQL (a postmaster and its
//! forked helpers: checkpointer, WAL writer, autovacuum, ...; System V and
//! POSIX shared memory, a pipe every child watches for the postmaster's
//! death, signalfd and epoll latches, a listening UNIX socket) is run
//! under `selfckpt run`, fed rows, checkpointed as a process tree, killed
//! and resumed by rerunning the same command, twice. After each resume it
//! must answer with every row committed before the checkpoint and take
//! new ones.
//!
//! A checkpoint taken while a client (outside the tree) is connected must
//! say, when it is taken, that the client's connection cannot come back,
//! and the resume must refuse it.
//!
//! PostgreSQL does not run as root: the test runs it as the `postgres`
//! user (or `nobody`), and prints `skipped: <reason>` when PostgreSQL is
//! not installed or no such user can run it.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Where PostgreSQL's programs are: on PATH, or Debian's versioned dir.
fn pg_bin(tool: &str) -> Option<PathBuf> {
    if have(tool) {
        return Some(PathBuf::from(tool));
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .collect();
    dirs.sort();
    dirs.into_iter()
        .rev()
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// A user to run PostgreSQL as (uid, gid).
fn pg_user() -> Option<(u32, u32)> {
    ["postgres", "nobody"].iter().find_map(|name| {
        let c = std::ffi::CString::new(*name).ok()?;
        // SAFETY: getpwnam with a NUL-terminated name; the record is read
        // at once, before any other call could reuse it.
        let pw = unsafe { libc::getpwnam(c.as_ptr()) };
        // SAFETY: a non-null result points to a valid passwd record.
        (!pw.is_null()).then(|| unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
    })
}

struct Pg {
    dir: PathBuf,
    user: (u32, u32),
    postgres: PathBuf,
    psql: PathBuf,
}

impl Pg {
    fn cmd(&self, prog: &Path) -> Command {
        let mut c = Command::new(prog);
        c.uid(self.user.0)
            .gid(self.user.1)
            .current_dir(&self.dir)
            .env("HOME", &self.dir)
            .env("LC_ALL", "C")
            .stdin(Stdio::null());
        c
    }

    /// `selfckpt run` of the server: starts it, or resumes it from its
    /// newest image set.
    fn run(&self, log: &str) -> Child {
        let mut c = self.cmd(&selfckpt());
        c.arg("run")
            .arg("--dir")
            .arg(self.dir.join("ck"))
            .arg("--")
            .arg(&self.postgres)
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-k")
            .arg(self.dir.join("sock"))
            .args(["-c", "listen_addresses=", "-c", "fsync=off"]);
        // Its log and selfckpt's words in one file (a pipe nobody reads
        // would stop a server that logs).
        let f = std::fs::File::create(self.dir.join(log)).unwrap();
        c.stdout(f.try_clone().unwrap()).stderr(f);
        c.spawn().unwrap()
    }

    fn log(&self, log: &str) -> String {
        std::fs::read_to_string(self.dir.join(log)).unwrap_or_default()
    }

    /// Every log of the server's runs, each under its name.
    fn logs(&self) -> String {
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".log"))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
            .iter()
            .map(|n| format!("--- {n}\n{}", self.log(n)))
            .collect()
    }

    /// Runs one statement; its rows, unaligned.
    fn sql(&self, q: &str) -> Result<String, String> {
        let o = self
            .cmd(&self.psql)
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(self.dir.join("sock"))
            .args(["-d", "postgres", "-c", q])
            .output()
            .map_err(|e| e.to_string())?;
        if o.status.success() {
            Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&o.stderr).into_owned())
        }
    }

    fn wait_ready(&self, server: &mut Child, log: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if self.sql("select 1").is_ok() {
                return;
            }
            let log = self.log(log);
            if let Ok(Some(st)) = server.try_wait() {
                panic!("the server ended ({st}) before it answered: {log}");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the server did not answer within a minute: {log}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// Checkpoints the server's tree; the set and what the command said.
    fn checkpoint(&self, server: &Child) -> (PathBuf, String) {
        let o = Command::new(selfckpt())
            .args(["checkpoint", &server.id().to_string(), "--wait"])
            .args(["--timeout", "60"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(
            o.status.success(),
            "checkpoint: {err}\nthe server's logs:\n{}\nstats.jsonl:\n{}",
            self.logs(),
            self.log("ck/stats.jsonl")
        );
        let set = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
        assert!(set.join("tree.json").is_file(), "not a set: {set:?}");
        (set, err)
    }
}

/// A PostgreSQL ready to start, or why not.
fn setup(tmp: &Path) -> Result<Pg, String> {
    let (Some(initdb), Some(postgres), Some(psql)) =
        (pg_bin("initdb"), pg_bin("postgres"), pg_bin("psql"))
    else {
        return Err("PostgreSQL (initdb, postgres, psql) is not installed".into());
    };
    let user = pg_user().ok_or("no postgres or nobody user to run PostgreSQL as")?;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("running PostgreSQL as another user needs root".into());
    }
    let dir = tmp.join("pg");
    std::fs::create_dir(&dir).unwrap();
    std::fs::create_dir(dir.join("sock")).unwrap();
    std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    for d in [dir.clone(), dir.join("sock")] {
        std::os::unix::fs::chown(&d, Some(user.0), Some(user.1)).unwrap();
    }
    let pg = Pg {
        dir,
        user,
        postgres,
        psql,
    };
    // The checkpointer must be reachable by that user.
    let o = pg
        .cmd(&selfckpt())
        .arg("--version")
        .output()
        .map_err(|e| format!("the PostgreSQL user cannot run selfckpt: {e}"))?;
    if !o.status.success() {
        return Err("the PostgreSQL user cannot run selfckpt".into());
    }
    let o = pg
        .cmd(&initdb)
        .args(["-A", "trust", "-N", "-D"])
        .arg(pg.dir.join("data"))
        .output()
        .unwrap();
    if !o.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    Ok(pg)
}

/// A PostgreSQL started under `selfckpt run` and answering, or None
/// (said: skipped) where it cannot run.
fn started(tmp: &Path) -> Option<(Pg, Child)> {
    let pg = match setup(tmp) {
        Ok(pg) => pg,
        Err(why) => {
            eprintln!("skipped: {why}");
            return None;
        }
    };
    lib("libselfckpt.so");
    let mut server = pg.run("server.log");
    pg.wait_ready(&mut server, "server.log");
    Some((pg, server))
}

#[test]
fn postgres_comes_back_with_every_committed_row_through_two_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((pg, mut server)) = started(tmp.path()) else {
        return;
    };
    pg.sql("create table t(a int primary key, b text)").unwrap();
    pg.sql("insert into t select g, md5(g::text) from generate_series(1, 5000) g")
        .unwrap();
    let mut want = pg.sql("select count(*), sum(a), max(b) from t").unwrap();
    assert_eq!(
        want.split('|').take(2).collect::<Vec<_>>(),
        ["5000", "12502500"]
    );
    for round in 1..=2 {
        let (set, said) = pg.checkpoint(&server);
        assert!(!said.contains("refuses"), "round {round}: {said}");
        let rec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(set.join("tree.json")).unwrap()).unwrap();
        let members = rec["members"].as_array().unwrap().len();
        assert!(
            members >= 4,
            "round {round}: the postmaster and its helpers: {rec}"
        );
        kill_tree(&mut server, libc::SIGKILL);
        let log = format!("resumed{round}.log");
        server = pg.run(&log);
        pg.wait_ready(&mut server, &log);
        let said = pg.log(&log);
        assert!(said.contains("resuming"), "round {round}: {said}");
        assert_eq!(
            pg.sql("select count(*), sum(a), max(b) from t").unwrap(),
            want,
            "round {round}: {said}"
        );
        let lo = 5000 * round + 1;
        pg.sql(&format!(
            "insert into t select g, md5(g::text) from generate_series({lo}, {}) g",
            lo + 4999
        ))
        .unwrap();
        want = pg.sql("select count(*), sum(a), max(b) from t").unwrap();
        let n: u64 = want.split('|').next().unwrap().parse().unwrap();
        assert_eq!(n, 5000 * (round as u64 + 1), "round {round}");
    }
    kill_tree(&mut server, libc::SIGKILL);
}

#[test]
fn a_client_connected_at_the_checkpoint_is_named_then_and_the_resume_refuses() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((pg, mut server)) = started(tmp.path()) else {
        return;
    };
    // A client that stays connected (its backend is a member of the tree;
    // its peer, psql, is not).
    let mut client = pg
        .cmd(&pg.psql)
        .args(["-X", "-h"])
        .arg(pg.dir.join("sock"))
        .args(["-d", "postgres", "-c", "select pg_sleep(60)"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the client's session", 30, || {
        pg.sql("select count(*) from pg_stat_activity where query like 'select pg_sleep%'")
            .is_ok_and(|n| n == "1")
    });
    let (set, said) = pg.checkpoint(&server);
    assert!(
        said.contains("refuses") && said.contains("socket UNIX stream"),
        "the checkpoint did not name the client's connection: {said}"
    );
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(set.join("tree.json")).unwrap()).unwrap();
    let refused = rec["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 1, "only the client's connection: {rec}");
    kill_tree(&mut server, libc::SIGKILL);
    let _ = client.kill();
    let _ = client.wait();
    let mut resumed = pg.run("resumed.log");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let st = loop {
        if let Some(st) = resumed.try_wait().unwrap() {
            break st;
        }
        if std::time::Instant::now() > deadline {
            kill_tree(&mut resumed, libc::SIGKILL);
            panic!("the refused resume did not end: {}", pg.log("resumed.log"));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let err = pg.log("resumed.log");
    assert!(!st.success(), "the resume went ahead: {err}");
    assert!(
        err.contains("not restorable") && err.contains("socket UNIX stream"),
        "the resume did not refuse the connection: {err}"
    );
}
