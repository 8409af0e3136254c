//! End-to-end on a real Slurm (tests/slurm/: munged, slurmctld and two
//! slurmd on loopback): the README's batch script, copied with its program
//! swapped for examples/simulate.rs, survives a time limit, preemption
//! (`scontrol requeue`, `scancel --batch --signal=USR2`), the loss of its
//! node and a requeue of every task of a job array; each time the final
//! output file equals an uninterrupted run's. One more test, without
//! Slurm, sends a resumed program SIGTERM the way Slurm does (to each of
//! its processes) and checks that it checkpoints once and runs on after.
//!
//! Slurm acts on a ~30 s tick (time limits, `--signal` lead times, node
//! timeouts): the tests wait for windows, never instants.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
mod slurm;
use common::*;
use slurm::Cluster;

/// The batch script of README.md's "Slurm" section, exactly.
fn readme_script() -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Slurm"))
        .expect("README.md has a \"## Slurm\" section");
    let body = section
        .split_once("```bash\n")
        .expect("the Slurm section has a ```bash block")
        .1;
    body.split_once("```")
        .expect("the ```bash block is closed")
        .0
        .to_string()
}

/// The README's script with `./simulate input.dat` swapped for the test
/// program (`steps` steps of `sleep_ms`, seeded by the array task id),
/// written into the cluster's directory.
fn job_script(c: &Cluster, steps: u32, sleep_ms: u32) -> PathBuf {
    let text = readme_script();
    let program = "./simulate input.dat";
    assert_eq!(
        text.matches(program).count(),
        1,
        "the README's script runs `{program}` once"
    );
    let ours = format!(
        "{} {steps} --sleep-ms {sleep_ms} --seed \"${{SLURM_ARRAY_TASK_ID:-0}}\"",
        example("simulate").display()
    );
    let path = c.dir().join("job.sh");
    std::fs::write(&path, text.replace(program, &ours)).unwrap();
    path
}

/// What an uninterrupted run prints.
fn reference(steps: u32, seed: u32) -> String {
    let out = Command::new(example("simulate"))
        .args([steps.to_string(), "--sleep-ms".into(), "0".into()])
        .args(["--seed", &seed.to_string()])
        .output()
        .expect("run simulate");
    assert!(out.status.success(), "simulate: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Every checkpoint's `state` in DIR/stats.jsonl, in order.
fn states(ckpt: &Path) -> Vec<String> {
    read(&ckpt.join("stats.jsonl"))
        .lines()
        .map(|l| {
            let j: serde_json::Value = serde_json::from_str(l).expect("stats.jsonl is JSON lines");
            j["state"].as_str().unwrap_or("?").to_string()
        })
        .collect()
}

fn lines(path: &Path) -> usize {
    read(path).lines().count()
}

/// Waits until the job runs, then until its output has `more` lines more.
fn wait_progress(c: &Cluster, id: u32, out: &Path, more: usize) {
    c.wait_for(&format!("job {id} to run"), 60, |c| {
        c.job(id).state == "RUNNING"
    });
    let base = lines(out);
    c.wait_for(&format!("job {id} to make progress"), 60, |_| {
        lines(out) >= base + more
    });
}

fn wait_done(c: &Cluster, id: u32, secs: u64) {
    c.wait_for(&format!("job {id} to complete"), secs, |c| {
        let j = c.job(id);
        assert!(
            ![
                "FAILED",
                "TIMEOUT",
                "CANCELLED",
                "NODE_FAIL",
                "OUT_OF_MEMORY"
            ]
            .contains(&j.state.as_str()),
            "job {id} ended {}: {}",
            j.state,
            j.line
        );
        j.state == "COMPLETED"
    });
}

/// Waits until Slurm has put job `id` back in the queue for the
/// `restarts`-th time.
/// Waits until job `id` was requeued `restarts` times: pending again, or
/// (the scheduler was quicker than us) running its next leg already.
fn wait_requeued(c: &Cluster, id: u32, restarts: u32) {
    c.wait_for(&format!("job {id} to be requeued ({restarts})"), 90, |c| {
        let j = c.job(id);
        j.restarts >= restarts && matches!(j.state.as_str(), "PENDING" | "RUNNING")
    });
}

/// The step number of a `step N sum X` line (`done` lines: after all).
fn step_of(line: &str) -> u64 {
    line.strip_prefix("step ")
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX)
}

/// The output equals an uninterrupted run's but for lines written again:
/// a resumed program redoes the steps it took after the image it resumes
/// from was made (while that image was made durable, before a
/// checkpoint-and-exit; until the kill, after a node failure). Each such
/// line must be the very line of that step; dropping them leaves exactly
/// the uninterrupted output. Returns how many there were.
fn assert_output(out: &Path, want: &str, what: &str) -> usize {
    let got = read(out);
    let want_lines: Vec<&str> = want.lines().collect();
    let (mut kept, mut again, mut next) = (Vec::new(), 0, 0u64);
    for line in got.lines() {
        let step = step_of(line);
        if step < next {
            assert_eq!(
                Some(&line),
                want_lines.get(step as usize),
                "{what}: step {step} done again differently"
            );
            again += 1;
        } else {
            kept.push(line);
            next = step.saturating_add(1);
        }
    }
    assert!(
        kept == want_lines,
        "{what}: the output differs from an uninterrupted run's ({} lines kept of {}, want {}); \
         first difference at line {:?}",
        kept.len(),
        got.lines().count(),
        want_lines.len(),
        kept.iter().zip(&want_lines).position(|(a, b)| a != b)
    );
    assert!(
        got.ends_with('\n'),
        "{what}: the output ends with a whole line"
    );
    again
}

#[test]
fn time_limit_checkpoints_requeues_and_resumes() {
    let Some(c) = Cluster::start("time_limit", 1) else {
        return;
    };
    let _ = lib("libselfckpt.so");
    // 70 s of work under a 1 min limit, the signal 10 s (to 40 s) before
    // it: at least two legs, with Slurm's own requeue delay between them.
    let (steps, ms) = (700, 100);
    let script = job_script(&c, steps, ms);
    let t0 = Instant::now();
    let id = c.sbatch(
        &script,
        &["--time=1", "--signal=B:USR2@10", "--error=err-%j.txt"],
        &[],
    );
    let out = c.dir().join(format!("slurm-{id}.out"));
    wait_done(&c, id, 270);
    let ckpt = c.dir().join(format!("ckpt-{id}"));
    let st = states(&ckpt);
    eprintln!(
        "time_limit: {:?} in {:?}, checkpoints {st:?}",
        c.job(id).restarts,
        t0.elapsed()
    );
    assert!(
        c.job(id).restarts >= 1,
        "the job was requeued: {}",
        c.job(id).line
    );
    assert!(
        st.iter().filter(|s| *s == "term").count() >= 1 && st.contains(&"restart".to_string()),
        "a checkpoint before the limit and a resume after it: {st:?}"
    );
    let again = assert_output(&out, &reference(steps, 0), "time limit");
    eprintln!("time_limit: {again} line(s) written again");
}

#[test]
fn preemption_by_requeue_and_by_usr2_several_times() {
    let Some(c) = Cluster::start("preemption", 1) else {
        return;
    };
    let _ = lib("libselfckpt.so");
    let (steps, ms) = (300, 100);
    let script = job_script(&c, steps, ms);
    let id = c.sbatch(&script, &["--error=err-%j.txt"], &[]);
    let out = c.dir().join(format!("slurm-{id}.out"));
    let ckpt = c.dir().join(format!("ckpt-{id}"));
    // An administrator's requeue (SIGTERM to the whole job), the script's
    // own requeue after SIGUSR2 to the batch shell, and a requeue again of
    // the resumed program.
    let how: [&[&str]; 3] = [
        &["scontrol", "requeue"],
        &["scancel", "--batch", "--signal=USR2"],
        &["scontrol", "requeue"],
    ];
    for (round, preempt) in how.iter().enumerate() {
        wait_progress(&c, id, &out, 20);
        let mut args = preempt.to_vec();
        let sid = id.to_string();
        args.push(&sid);
        c.slurm(&args);
        c.wait_for(
            &format!("round {round} ({preempt:?}): a checkpoint before leaving"),
            30,
            |_| states(&ckpt).iter().filter(|s| *s == "term").count() == round + 1,
        );
        wait_requeued(&c, id, round as u32 + 1);
        c.start_now(id);
    }
    wait_done(&c, id, 120);
    let again = assert_output(&out, &reference(steps, 0), "preemption");
    eprintln!("preemption: {again} line(s) written again");
    assert_eq!(states(&ckpt).iter().filter(|s| *s == "restart").count(), 3);
}

#[test]
fn node_failure_resumes_from_the_newest_image_on_the_other_node() {
    let Some(mut c) = Cluster::start("node_failure", 2) else {
        return;
    };
    let _ = lib("libselfckpt.so");
    let (steps, ms) = (400, 100);
    let script = job_script(&c, steps, ms);
    let id = c.sbatch(&script, &["--error=err-%j.txt"], &[("CKPT_INTERVAL", "1")]);
    let out = c.dir().join(format!("slurm-{id}.out"));
    let ckpt = c.dir().join(format!("ckpt-{id}"));
    wait_progress(&c, id, &out, 10);
    c.wait_for("two interval checkpoints", 60, |_| {
        states(&ckpt).iter().filter(|s| *s == "continue").count() >= 2
    });
    std::thread::sleep(Duration::from_millis(random_ms(0, 1000)));
    let node = c.job(id).node;
    c.kill_node(&node);
    // What `selfckpt run` will resume from: the newest image (the others
    // are older; a kill during a write leaves no image behind).
    let newest = images(&ckpt).pop().expect("an interval image");
    let offset = fd_offset(&newest, 1);
    // slurmctld declares the node down after SlurmdTimeout and requeues.
    wait_requeued(&c, id, 1);
    c.start_now(id);
    wait_done(&c, id, 120);
    let j = c.job(id);
    assert_ne!(j.node, node, "resumed on another node: {}", j.line);
    // The output is the first leg's (up to the kill), then the second's
    // from the image's stdout offset: the lines between that checkpoint
    // and the kill appear twice, nothing else differs.
    let (got, want) = (read(&out), reference(steps, 0));
    assert!(offset <= want.len() && got.len() >= want.len() - offset);
    let cut = got.len() - (want.len() - offset);
    assert!(cut >= offset, "the first leg wrote past the checkpoint");
    assert_eq!(&got[..cut], &want[..cut], "the first leg's output");
    assert_eq!(&got[cut..], &want[offset..], "the resumed leg's output");
    assert!(states(&ckpt).contains(&"restart".to_string()));
    eprintln!(
        "node_failure: {node} lost at stdout offset {cut}, resumed on {} from offset {offset}",
        j.node
    );
}

#[test]
fn job_array_tasks_each_resume_from_their_own_directory() {
    let Some(c) = Cluster::start("job_array", 2) else {
        return;
    };
    let _ = lib("libselfckpt.so");
    let (steps, ms) = (200, 100);
    let script = job_script(&c, steps, ms);
    let array = c.sbatch(&script, &["--array=0-3", "--error=err-%j.txt"], &[]);
    let out = |t: u32| c.dir().join(format!("slurm-{array}_{t}.out"));
    c.wait_for("all four tasks to run and print", 90, |c| {
        let js = c.jobs(array);
        js.len() == 4
            && js.iter().all(|j| j.state == "RUNNING")
            && (0..4).all(|t| lines(&out(t)) >= 20)
    });
    // Every task's batch shell gets SIGUSR2: each checkpoints and
    // requeues itself.
    c.slurm(&["scancel", "--batch", "--signal=USR2", &array.to_string()]);
    let tasks = c.jobs(array);
    for j in &tasks {
        wait_requeued(&c, j.id, 1);
        c.start_now(j.id);
    }
    for j in &tasks {
        wait_done(&c, j.id, 120);
        let t = j.array_task.expect("an array task");
        let ckpt = c.dir().join(format!("ckpt-{array}_{t}"));
        assert_eq!(
            states(&ckpt),
            ["term", "restart"],
            "task {t} checkpointed into {}",
            ckpt.display()
        );
        let _ = assert_output(&out(t), &reference(steps, t), &format!("array task {t}"));
    }
}

/// Slurm ends a job with SIGTERM to each of its processes: a resumed
/// program gets it from the kernel and again from `selfckpt restart`'s
/// outer process and init, which forward it. One checkpoint-and-exit must
/// come of it, and the next resume must run on (it once checkpointed and
/// exited at once: the repeated SIGTERM was kept in the image). Without
/// Slurm: the same signals by hand, several legs.
#[test]
fn sigterm_to_every_process_of_a_resumed_program_checkpoints_once() {
    let tmp = tempfile::tempdir().unwrap();
    let _ = lib("libselfckpt.so");
    let (dir, out) = (tmp.path().join("ck"), tmp.path().join("out"));
    let (steps, legs) = (120u32, 5);
    let leg = || {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&out)
            .unwrap();
        Command::new(selfckpt())
            .args(["run", "--term-signal", "TERM", "--dir"])
            .arg(&dir)
            .arg("--")
            .arg(example("simulate"))
            .args([&steps.to_string(), "--sleep-ms", "50"])
            .stdout(f)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    for n in 0..legs {
        let mut child = leg();
        let base = lines(&out);
        wait_for("the program to make progress", 20, || {
            lines(&out) >= base + 5
        });
        // As slurmd does: every process of the job, one after the other.
        kill_tree(&mut child, libc::SIGTERM);
        let err = wait_ok(child, "a leg ended by SIGTERM");
        let st = states(&dir);
        assert_eq!(
            st.iter().filter(|s| *s == "term").count(),
            n + 1,
            "leg {n}: one checkpoint-and-exit per leg: {st:?}; stderr: {err}"
        );
    }
    wait_ok(leg(), "the last leg");
    let _ = assert_output(&out, &reference(steps, 0), "SIGTERM to every process");
}
