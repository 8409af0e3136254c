//! Security of images: they are created 0600 in 0700 directories; restart
//! refuses images that belong to someone else or that others can write,
//! and executables that are (or were) setuid; with SELFCKPT_KEY set,
//! images carry an HMAC-SHA256 and verify/restart refuse any image whose
//! MAC is missing or wrong.

mod common;

use common::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn restart_refused(image: &Path, key: Option<&str>) -> String {
    let mut cmd = Command::new(selfckpt());
    cmd.arg("restart").arg(image);
    match key {
        Some(k) => cmd.env("SELFCKPT_KEY", k),
        None => cmd.env_remove("SELFCKPT_KEY"),
    };
    let o = run(&mut cmd, Duration::from_secs(60));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("restart refused"), "{err}");
    assert!(o.stdout.is_empty(), "the program ran: {err}");
    err
}

fn verify_with(image: &Path, key: Option<&str>) -> (bool, String) {
    let mut cmd = Command::new(selfckpt());
    cmd.arg("verify").arg(image);
    match key {
        Some(k) => cmd.env("SELFCKPT_KEY", k),
        None => cmd.env_remove("SELFCKPT_KEY"),
    };
    let o = run(&mut cmd, Duration::from_secs(60));
    (
        o.status.success(),
        format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o)),
    )
}

#[test]
fn images_are_private_and_foreign_or_shared_images_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (image, exe, _) = smoke_image(tmp.path());
    let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o7777;
    assert_eq!(mode(&image), 0o600, "image mode");
    assert_eq!(mode(image.parent().unwrap()), 0o700, "directory mode");

    let good = std::fs::read(&image).unwrap();
    for (m, who) in [(0o620, "its group"), (0o602, "others"), (0o666, "others")] {
        std::fs::set_permissions(&image, std::fs::Permissions::from_mode(m)).unwrap();
        let err = restart_refused(&image, None);
        assert!(err.contains(&format!("writable by {who}")), "{m:o}: {err}");
    }
    std::fs::set_permissions(&image, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(&image, Some(65534), None).unwrap();
    let err = restart_refused(&image, None);
    assert!(err.contains("belongs to uid 65534"), "{err}");
    std::os::unix::fs::chown(&image, Some(0), None).unwrap();
    // Reading is still allowed: verify does not run anything.
    assert!(verify_with(&image, None).0);

    // A setuid executable (now, or at the checkpoint) is refused.
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let err = restart_refused(&image, None);
    assert!(err.contains("setuid"), "{err}");
    assert_eq!(std::fs::read(&image).unwrap(), good);
}

#[test]
fn with_a_key_images_carry_a_mac_that_verify_and_restart_check() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("smoke-copy");
    std::fs::copy(example("smoke"), &exe).unwrap();
    let take = |dir: &str, key: Option<&str>| {
        let mut cmd = Command::new(&exe);
        cmd.arg(tmp.path().join(dir))
            .arg(tmp.path().join(format!("{dir}.out")));
        cmd.args(["6", "--checkpoint-at", "2", "--sleep-ms", "1"]);
        match key {
            Some(k) => cmd.env("SELFCKPT_KEY", k),
            None => cmd.env_remove("SELFCKPT_KEY"),
        };
        let o = run(&mut cmd, Duration::from_secs(120));
        assert!(o.status.success(), "{}", stderr(&o));
        images(&tmp.path().join(dir)).pop().expect("an image")
    };
    let sealed = take("sealed", Some("k1 secret"));
    let plain = take("plain", None);

    let (ok, msg) = verify_with(&sealed, Some("k1 secret"));
    assert!(ok && msg.contains("MAC verified"), "{msg}");
    let (ok, msg) = verify_with(&sealed, None);
    assert!(ok && msg.contains("not checked"), "{msg}");
    let (ok, msg) = verify_with(&sealed, Some("k2"));
    assert!(!ok && msg.contains("MAC does not match"), "{msg}");
    let (ok, msg) = verify_with(&plain, Some("k1 secret"));
    assert!(!ok && msg.contains("carries no MAC"), "{msg}");

    assert!(restart_refused(&sealed, Some("k2")).contains("MAC does not match"));
    assert!(restart_refused(&plain, Some("k1 secret")).contains("carries no MAC"));

    // A forged image: META's timestamp changed and every checksum
    // recomputed (what an attacker without the key can do).
    let mut forged = std::fs::read(&sealed).unwrap();
    let meta = records(&forged)[0];
    forged[meta.payload().start] ^= 1;
    reseal(&mut forged);
    selfckpt::image::verify::scan_bytes(&forged, None).expect("well-formed forgery");
    let fp = tmp.path().join("forged.ckpt");
    std::fs::write(&fp, &forged).unwrap();
    std::fs::set_permissions(&fp, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (ok, msg) = verify_with(&fp, Some("k1 secret"));
    assert!(!ok && msg.contains("MAC does not match"), "{msg}");

    // The right key: the program comes back and finishes.
    let o = run(
        Command::new(selfckpt())
            .arg("restart")
            .arg(&sealed)
            .env("SELFCKPT_KEY", "k1 secret"),
        Duration::from_secs(120),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("post-checks ok"));
    // `restart --dir` with a key skips images without a valid MAC.
    let o = run(
        Command::new(selfckpt())
            .arg("restart")
            .arg("--dir")
            .arg(plain.parent().unwrap())
            .env("SELFCKPT_KEY", "k1 secret"),
        Duration::from_secs(60),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("carries no MAC"), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
}

/// A program running setuid (AT_SECURE) never writes an image: its memory
/// may hold what the user who ran it must not read.
#[test]
fn a_setuid_program_refuses_to_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = tmp.path().join("ckloop-suid");
    std::fs::copy(example("ckloop"), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let dir = tmp.path().join("ck");
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&exe)
        .arg(&dir)
        .args(["3", "--mib", "1", "--sleep-ms", "0", "--checkpoint-at", "0"]);
    let o = run(&mut cmd, Duration::from_secs(60));
    if !o.status.success() && stderr(&o).contains("setpriv") {
        println!("skipped: setpriv cannot drop to uid 65534: {}", stderr(&o));
        return;
    }
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("checkpoint 0: error:") && stderr(&o).contains("setuid"),
        "{}",
        stderr(&o)
    );
    assert!(images(&dir).is_empty(), "no image of a setuid program");
}
