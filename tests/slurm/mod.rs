//! A real Slurm cluster on loopback for the Slurm tests: one munged, one
//! slurmctld and N slurmd (`NodeName`s n1, n2, ... on 127.0.0.1, each on
//! its own port), all of Debian's `slurm-wlm` 22.05 and `munge`, with their
//! key, sockets, state, spool and logs in a temporary directory. No
//! systemd, no cgroups (`proctrack/linuxproc`, `task/none`), no accounting.
//!
//! Which processes are the cluster's: the daemons started here, and every
//! process whose environment holds this cluster's `SLURM_CONF` (slurmstepd
//! inherits it from slurmd, the jobs from sbatch). Dropping the cluster
//! SIGKILLs exactly those, then removes the directory, or, when the test
//! failed, renames it to `$TMPDIR/selfckpt-slurm-failed-*` for a look at
//! the logs and outputs.
//!
//! Must never: signal a process it did not start (another cluster, the
//! machine's own Slurm), or leave one of its daemons running.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::common::{run, target_dir};

const DAEMONS: [&str; 4] = ["munged", "slurmctld", "slurmd", "sbatch"];

/// Why this machine cannot run a cluster, if it cannot.
fn obstacle() -> Option<String> {
    for d in DAEMONS {
        if !super::common::have(d) && !Path::new("/usr/sbin").join(d).exists() {
            return Some(format!(
                "{d} is not installed (scripts/setup.sh installs slurm-wlm and munge)"
            ));
        }
    }
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        return Some(
            "slurmd must run as root (it starts each job as the submitting user)".to_string(),
        );
    }
    None
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local address").port()
}

/// One `scontrol show job -o` line, the fields the tests look at.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: u32,
    pub state: String,
    pub restarts: u32,
    pub node: String,
    pub array_task: Option<u32>,
    pub line: String,
}

impl Job {
    fn parse(line: &str) -> Job {
        let field = |k: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(k).and_then(|w| w.strip_prefix('=')))
                .unwrap_or("")
                .to_string()
        };
        Job {
            id: field("JobId").parse().unwrap_or(0),
            state: field("JobState"),
            restarts: field("Restarts").parse().unwrap_or(0),
            node: field("BatchHost"),
            array_task: field("ArrayTaskId").parse().ok(),
            line: line.to_string(),
        }
    }
}

pub struct Cluster {
    dir: tempfile::TempDir,
    conf: PathBuf,
    munged: Child,
    slurmctld: Child,
    slurmd: Vec<(String, Child)>,
}

impl Cluster {
    /// Starts a cluster of `nodes` nodes with 2 CPUs each and waits until
    /// `sinfo` shows them idle; `None` (after saying `skipped:` with the
    /// reason) where this machine cannot run one.
    pub fn start(test: &str, nodes: usize) -> Option<Cluster> {
        if let Some(why) = obstacle() {
            eprintln!("skipped: {test}: {why}");
            return None;
        }
        let dir = tempfile::tempdir().expect("temporary directory");
        let d = dir.path().to_path_buf();
        // munged insists that every directory above its socket be
        // reachable (x) by all.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        let key = d.join("munge.key");
        let out = run(
            Command::new("mungekey")
                .args(["-c", "-b", "1024", "-k"])
                .arg(&key),
            Duration::from_secs(20),
        );
        assert!(out.status.success(), "mungekey: {out:?}");
        let conf = d.join("slurm.conf");
        let names: Vec<String> = (1..=nodes).map(|i| format!("n{i}")).collect();
        let ctld_port = free_port();
        let mut text = format!(
            "ClusterName=selfckpt\n\
             SlurmctldHost=localhost(127.0.0.1)\n\
             SlurmctldPort={ctld_port}\n\
             SlurmUser=root\n\
             SlurmdUser=root\n\
             AuthType=auth/munge\n\
             CredType=cred/munge\n\
             AuthInfo=socket={sock},cred_expire=10\n\
             StateSaveLocation={d}/state\n\
             SlurmdSpoolDir={d}/spool-%n\n\
             SlurmctldPidFile={d}/slurmctld.pid\n\
             SlurmdPidFile={d}/slurmd-%n.pid\n\
             SlurmctldLogFile={d}/slurmctld.log\n\
             SlurmdLogFile={d}/slurmd-%n.log\n\
             ProctrackType=proctrack/linuxproc\n\
             TaskPlugin=task/none\n\
             JobAcctGatherType=jobacct_gather/none\n\
             AccountingStorageType=accounting_storage/none\n\
             JobCompType=jobcomp/none\n\
             MpiDefault=none\n\
             SwitchType=switch/none\n\
             MailProg=/bin/true\n\
             SchedulerType=sched/backfill\n\
             SchedulerParameters=sched_interval=2,bf_interval=2\n\
             SelectType=select/cons_tres\n\
             SelectTypeParameters=CR_CPU\n\
             ReturnToService=2\n\
             SlurmdTimeout=10\n\
             MinJobAge=600\n\
             KillWait=30\n",
            sock = d.join("munge.sock").display(),
            d = d.display(),
        );
        for n in &names {
            text += &format!(
                "NodeName={n} NodeHostname=localhost NodeAddr=127.0.0.1 Port={} CPUs=2 State=UNKNOWN\n",
                free_port()
            );
        }
        text += &format!(
            "PartitionName=debug Nodes={} Default=YES MaxTime=INFINITE State=UP\n",
            names.join(",")
        );
        std::fs::write(&conf, text).unwrap();
        std::fs::create_dir(d.join("state")).unwrap();
        let spawn = |cmd: &mut Command, log: &str| -> Child {
            let log = std::fs::File::create(d.join(log)).unwrap();
            cmd.env("SLURM_CONF", &conf)
                .current_dir(&d)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"))
        };
        let munged = spawn(
            Command::new("munged")
                .arg("-F")
                .arg(format!("--key-file={}", key.display()))
                .arg(format!("--socket={}", d.join("munge.sock").display()))
                .arg(format!("--pid-file={}", d.join("munged.pid").display()))
                .arg(format!("--log-file={}", d.join("munged.log").display()))
                .arg(format!("--seed-file={}", d.join("munged.seed").display())),
            "munged.out",
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while !d.join("munge.sock").exists() {
            assert!(
                Instant::now() < deadline,
                "munged did not start: {}",
                std::fs::read_to_string(d.join("munged.out")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let slurmctld = spawn(
            Command::new("slurmctld").args(["-D", "-i"]),
            "slurmctld.out",
        );
        let mut c = Cluster {
            dir,
            conf: conf.clone(),
            munged,
            slurmctld,
            slurmd: Vec::new(),
        };
        for n in &names {
            let child = spawn(
                Command::new("slurmd").args(["-D", "-N", n]),
                &format!("slurmd-{n}.out"),
            );
            c.slurmd.push((n.clone(), child));
        }
        c.wait_for("the nodes to be idle", 60, |c| {
            let out = c.slurm(&["sinfo", "-h", "-N", "-o", "%N %T"]);
            out.lines().filter(|l| l.ends_with(" idle")).count() == nodes
        });
        Some(c)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A Slurm client command for this cluster; `selfckpt` on its PATH.
    pub fn command(&self, prog: &str) -> Command {
        let mut cmd = Command::new(prog);
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![target_dir()];
        dirs.extend(std::env::split_paths(&path));
        cmd.env("SLURM_CONF", &self.conf)
            .env("PATH", std::env::join_paths(dirs).unwrap())
            .current_dir(self.dir());
        cmd
    }

    /// Runs a Slurm client (`args[0]`), which must succeed; its stdout.
    pub fn slurm(&self, args: &[&str]) -> String {
        let out = run(
            self.command(args[0]).args(&args[1..]),
            Duration::from_secs(30),
        );
        assert!(
            out.status.success(),
            "{args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `sbatch --parsable ARGS SCRIPT` with `env` added; the job id.
    pub fn sbatch(&self, script: &Path, args: &[&str], env: &[(&str, &str)]) -> u32 {
        let mut cmd = self.command("sbatch");
        cmd.arg("--parsable").args(args).arg(script);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = run(&mut cmd, Duration::from_secs(30));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "sbatch failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text.trim()
            .split(';')
            .next()
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("sbatch printed no job id: {text}"))
    }

    /// The job (every task, for an array's id) as `scontrol` shows it.
    pub fn jobs(&self, id: u32) -> Vec<Job> {
        self.slurm(&["scontrol", "-o", "show", "job", &id.to_string()])
            .lines()
            .filter(|l| l.starts_with("JobId="))
            .map(Job::parse)
            .collect()
    }

    pub fn job(&self, id: u32) -> Job {
        self.jobs(id)
            .into_iter()
            .find(|j| j.id == id)
            .unwrap_or_else(|| panic!("scontrol does not know job {id}"))
    }

    /// Waits (at most `secs`) until `cond` holds; on a timeout, fails with
    /// what the controller said last.
    pub fn wait_for(&self, what: &str, secs: u64, mut cond: impl FnMut(&Cluster) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !cond(self) {
            if Instant::now() > deadline {
                let log =
                    std::fs::read_to_string(self.dir().join("slurmctld.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                panic!(
                    "timed out ({secs} s) waiting for {what}; slurmctld.log ends:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Makes a pending (requeued) job eligible now instead of after the
    /// requeue delay (the time limit test lets Slurm take its own time).
    pub fn start_now(&self, id: u32) {
        // slurmd refuses to launch a job in the very second its last leg
        // was killed ("Job N already killed, do not launch batch job": a
        // revoked credential is compared by the second), and the job then
        // fails: let that second pass.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let out = run(
            self.command("scontrol")
                .arg("update")
                .arg(format!("jobid={id}"))
                .arg("StartTime=now"),
            Duration::from_secs(30),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        // Meanwhile the scheduler may have started it itself.
        assert!(
            out.status.success() || err.contains("no longer pending"),
            "scontrol update jobid={id} StartTime=now failed: {err}"
        );
    }

    /// Pids of the processes this cluster started (see the module header),
    /// with their environment.
    fn processes(&self) -> Vec<(i32, Vec<String>)> {
        let mark = format!("SLURM_CONF={}", self.conf.display());
        let mut v = Vec::new();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let Ok(env) = std::fs::read(e.path().join("environ")) else {
                continue;
            };
            let env: Vec<String> = env
                .split(|&b| b == 0)
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect();
            if env.contains(&mark) {
                v.push((pid, env));
            }
        }
        v
    }

    /// Node `name` fails: its slurmd, and every job process and slurmstepd
    /// of this cluster's on it, SIGKILLed. (slurmstepd carries no node name
    /// of its own: this is for a cluster whose only running job is on
    /// `name`.)
    pub fn kill_node(&mut self, name: &str) {
        let on_node = format!("SLURMD_NODENAME={name}");
        let daemon = [self.munged.id(), self.slurmctld.id()].map(|p| p as i32);
        let slurmd: Vec<i32> = self.slurmd.iter().map(|(_, c)| c.id() as i32).collect();
        for (pid, env) in self.processes() {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let stepd = comm.trim() == "slurmstepd";
            if !daemon.contains(&pid) && !slurmd.contains(&pid) && (stepd || env.contains(&on_node))
            {
                // SAFETY: a process of this cluster's (see above).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        if let Some(i) = self.slurmd.iter().position(|(n, _)| n == name) {
            let (_, mut child) = self.slurmd.remove(i);
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (pid, _) in self.processes() {
            // SAFETY: a process of this cluster's (see the module header).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        for c in self
            .slurmd
            .iter_mut()
            .map(|(_, c)| c)
            .chain([&mut self.slurmctld, &mut self.munged])
        {
            let _ = c.kill();
            let _ = c.wait();
        }
        // The job processes were SIGKILLed above: wait until none is left
        // writing into the directory about to be removed.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.processes().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if std::thread::panicking() {
            let kept = std::env::temp_dir().join(format!(
                "selfckpt-slurm-failed-{}",
                self.dir().file_name().unwrap_or_default().to_string_lossy()
            ));
            if std::fs::rename(self.dir(), &kept).is_ok() {
                eprintln!("the failed cluster's files are in {}", kept.display());
            }
        }
    }
}
