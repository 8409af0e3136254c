//! End-to-end: incremental checkpoints (`selfckpt run --incremental`). A
//! program rewrites part of its memory between four checkpoints (pages
//! rewritten, given back, zeroed; a region added, one removed and mapped
//! again empty at the same address, one shrunk) and checks all of it after
//! each: restarts from the newest image and from a middle link of the
//! chain are exact; the incremental images are smaller than the full one;
//! a damaged, missing or group-writable ancestor is refused by name; prune
//! and gc keep the ancestors a kept image needs.

mod common;

use common::{checkpoint_wait, selfckpt, spawn_to_file, wait_line};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const STEPS: usize = 4;

/// The chain's directory, its images (oldest first) and the original
/// run's output.
struct Chain {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    /// Where the program looks for its go-STEP files.
    go: PathBuf,
    images: Vec<PathBuf>,
    original: String,
}

/// Runs tests/c/incremental.c under `selfckpt run --incremental` and
/// checkpoints it at each of its steps; None (said `skipped:`) without a
/// C compiler.
fn chain() -> Option<Chain> {
    chain_with(&["--incremental"], &[])
}

/// [`chain`] with these options of `run` and environment.
fn chain_with(opts: &[&str], env: &[(&str, &str)]) -> Option<Chain> {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("incremental");
    if !common::build_c("incremental", &exe) {
        return None;
    }
    let dir = tmp.path().join("img");
    let go = tmp.path().join("go");
    std::fs::create_dir_all(&go).unwrap();
    let out = tmp.path().join("original.out");
    let mut cmd = Command::new(selfckpt());
    cmd.arg("run")
        .args(opts)
        .arg("--dir")
        .arg(&dir)
        .envs(env.iter().copied())
        .arg("--")
        .arg(&exe)
        .arg(&go)
        .arg(STEPS.to_string());
    let child = spawn_to_file(&mut cmd, &out);
    let mut images = Vec::new();
    for s in 1..=STEPS {
        wait_line(&out, &format!("ready {s}"));
        images.push(checkpoint_wait(child.id()));
        std::fs::write(go.join(format!("go-{s}")), b"").unwrap();
    }
    common::wait_ok(child, "the original run");
    let original = std::fs::read_to_string(&out).unwrap();
    assert!(original.contains("incremental ok"), "{original}");
    Some(Chain {
        _tmp: tmp,
        dir,
        go,
        images,
        original,
    })
}

/// The parent each image names (its file name), per image.
fn parents(c: &Chain) -> Vec<Option<String>> {
    c.images
        .iter()
        .map(|i| common::inspect(i)["parent"].as_str().map(str::to_string))
        .collect()
}

fn name_of(p: &Path) -> Option<String> {
    p.file_name().and_then(|n| n.to_str()).map(str::to_string)
}

#[test]
fn off_by_default_and_a_full_image_every_n() {
    let Some(c) = chain_with(&["--keep", "10"], &[]) else {
        return;
    };
    assert_eq!(parents(&c), vec![None; STEPS]);
    let Some(c) = chain_with(
        &["--incremental", "--keep", "10"],
        &[("SELFCKPT_FULL_EVERY", "2")],
    ) else {
        return;
    };
    let want: Vec<Option<String>> = vec![None, name_of(&c.images[0]), None, name_of(&c.images[2])];
    assert_eq!(parents(&c), want);
    let (ok, out, err) = restart(&c.images[STEPS - 1]);
    assert!(ok && out == tail_from(&c.original, STEPS), "{out} {err}");
}

/// `selfckpt restart IMAGE`: status, stdout, stderr.
fn restart(image: &Path) -> (bool, String, String) {
    let out = common::run(
        Command::new(selfckpt()).arg("restart").arg(image),
        Duration::from_secs(60),
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The lines of the original run's output from "check STEP" on.
fn tail_from(original: &str, step: usize) -> String {
    let at = original
        .find(&format!("check {step} "))
        .unwrap_or_else(|| panic!("no check {step} in {original}"));
    original[at..].to_string()
}

#[test]
fn a_chain_restarts_exactly_from_the_newest_image_and_from_a_middle_link() {
    let Some(c) = chain() else { return };
    // The first image is full, each later one names the one before.
    for (i, img) in c.images.iter().enumerate() {
        let doc = common::inspect(img);
        match i {
            0 => assert!(doc["parent"].is_null(), "{doc}"),
            _ => assert_eq!(
                doc["parent"].as_str(),
                c.images[i - 1].file_name().and_then(|n| n.to_str()),
                "{doc}"
            ),
        }
    }
    assert!(common::inspect_text(&c.images[1]).contains("parent     "));
    // An eighth of the memory rewritten: far less stored than in full.
    let size = |p: &Path| std::fs::metadata(p).unwrap().len();
    assert!(
        size(&c.images[2]) * 2 < size(&c.images[0]),
        "incremental {} vs full {}",
        size(&c.images[2]),
        size(&c.images[0])
    );
    // The stats lines say which images are incremental.
    let stats = std::fs::read_to_string(c.dir.join("stats.jsonl")).unwrap();
    assert_eq!(stats.matches("\"parent\":").count(), STEPS - 1, "{stats}");
    // Keep 3 (the default) left the full image: the others need it.
    assert_eq!(common::images(&c.dir).len(), STEPS);
    let v = Command::new(selfckpt())
        .arg("verify")
        .arg(&c.images[STEPS - 1])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&v.stdout);
    assert!(
        v.status.success() && text.contains("3 ancestor image(s) verified"),
        "{text} {}",
        String::from_utf8_lossy(&v.stderr)
    );
    for step in [STEPS, 2, 1] {
        let (ok, out, err) = restart(&c.images[step - 1]);
        assert!(ok, "restart of image {step}: {out} {err}");
        assert_eq!(
            out,
            tail_from(&c.original, step),
            "restart of image {step}: {err}"
        );
    }
}

/// Flips a byte in the middle of `path` (its chunk data).
fn damage(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x55;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_damaged_or_missing_ancestor_is_refused_by_name() {
    let Some(c) = chain() else { return };
    let newest = &c.images[STEPS - 1];
    damage(&c.images[1]);
    let (ok, out, err) = restart(newest);
    assert!(!ok, "restart over a damaged ancestor: {out}");
    let name = c.images[1].display().to_string();
    assert!(
        err.contains(&name) && err.contains("damaged"),
        "the message names {name}: {err}"
    );
    assert!(!out.contains("check"), "the program ran: {out}");
    let v = Command::new(selfckpt())
        .arg("verify")
        .arg(newest)
        .output()
        .unwrap();
    assert!(!v.status.success());
    assert!(String::from_utf8_lossy(&v.stderr).contains(&name));
    // `restart --dir` passes over the images whose chain is broken and
    // takes the image before the damaged one.
    let out = common::run(
        Command::new(selfckpt())
            .args(["restart", "--dir"])
            .arg(&c.dir),
        Duration::from_secs(60),
    );
    let (text, err) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success() && text == tail_from(&c.original, 1),
        "{text} {err}"
    );
    assert!(err.contains(&name), "says why it skipped: {err}");
    // An ancestor others may write: refused as the image itself would be.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&c.images[2], std::fs::Permissions::from_mode(0o620)).unwrap();
    let (ok, _, err) = restart(newest);
    let name = c.images[2].display().to_string();
    assert!(
        !ok && err.contains(&name) && err.contains("writable by its group"),
        "names {name}: {err}"
    );
    std::fs::set_permissions(&c.images[2], std::fs::Permissions::from_mode(0o600)).unwrap();
    // A missing ancestor: refused, naming it.
    std::fs::remove_file(&c.images[0]).unwrap();
    let (ok, _, err) = restart(&c.images[2]);
    let name = c.images[0].display().to_string();
    assert!(!ok && err.contains(&name), "names {name}: {err}");
}

#[test]
fn gc_keeps_the_ancestors_of_the_images_it_keeps() {
    let Some(c) = chain() else { return };
    let out = Command::new(selfckpt())
        .arg("gc")
        .arg(&c.dir)
        .args(["--keep", "1"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("kept (an ancestor of a kept image)"),
        "{text}"
    );
    for img in &c.images {
        assert!(img.exists(), "gc removed {}: {text}", img.display());
    }
    let (ok, out, err) = restart(&c.images[STEPS - 1]);
    assert!(ok && out == tail_from(&c.original, STEPS), "{out} {err}");
}

#[test]
fn the_first_checkpoint_after_a_restart_is_a_full_image() {
    let Some(c) = chain() else { return };
    // Restarted from image 2, the program waits again at step 3.
    for s in 3..=STEPS {
        std::fs::remove_file(c.go.join(format!("go-{s}"))).unwrap();
    }
    let out = c.dir.with_extension("restarted.out");
    let child = spawn_to_file(
        Command::new(selfckpt()).arg("restart").arg(&c.images[1]),
        &out,
    );
    wait_line(&out, "ready 3");
    let after = checkpoint_wait(child.id());
    for s in 3..=STEPS {
        std::fs::write(c.go.join(format!("go-{s}")), b"").unwrap();
    }
    common::wait_ok(child, "the restarted run");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        tail_from(&c.original, 2)
    );
    assert!(
        common::inspect(&after)["parent"].is_null(),
        "{}",
        after.display()
    );
    // And it restarts exactly.
    let (ok, text, err) = restart(&after);
    assert!(ok && text == tail_from(&c.original, 3), "{text} {err}");
}
