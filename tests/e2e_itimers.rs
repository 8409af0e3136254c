//! End-to-end: a program's interval timers (examples/itimers.rs) survive a
//! checkpoint, SIGKILL and restart, with exact ids (PID namespace) and with
//! new ids. A periodic ITIMER_REAL keeps its period, a pending alarm()
//! fires after the time it had left, the CPU timers (ITIMER_PROF periodic,
//! ITIMER_VIRTUAL once) go on counting the program's CPU time. `inspect`
//! shows them. Times are checked with generous bounds only.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Runs `itimers DIR mode`, waits for `ready`, lets it run `settle_ms`
/// more, checkpoints it by signal and kills it. Returns the image.
fn checkpointed(tmp: &Path, mode: &str, settle_ms: u64) -> PathBuf {
    let dir = tmp.join(format!("ck-{mode}"));
    let so = tmp.join(format!("{mode}.stdout"));
    let mut child = spawn_to_file(Command::new(example("itimers")).arg(&dir).arg(mode), &so);
    wait_for(&format!("{mode}: ready"), 60, || {
        std::fs::read_to_string(&so).is_ok_and(|s| s.contains("ready"))
    });
    std::thread::sleep(Duration::from_millis(settle_ms));
    kill(&child, libc::SIGUSR1);
    let image = wait_new_image(&dir, 0);
    kill_tree(&mut child, libc::SIGKILL);
    image
}

/// The program's line after a restart: `restarted MODE: KEY VALUE ...`.
struct Report(String);

impl Report {
    fn word(&self, key: &str) -> &str {
        let mut words = self.0.split_whitespace();
        words
            .find(|w| *w == key)
            .and_then(|_| words.next())
            .unwrap_or_else(|| panic!("no {key} in {:?}", self.0))
    }

    fn num(&self, key: &str) -> f64 {
        let w = self.word(key);
        w.parse()
            .unwrap_or_else(|_| panic!("{key} is {w:?} in {:?}", self.0))
    }
}

/// Restarts `image` both ways (`common::restart_both_ways`); hands
/// `check` the program's report and how long the restart command ran.
fn restart_both_ways(image: &Path, mut check: impl FnMut(&Report, Duration)) {
    common::restart_both_ways(image, "restarted ", |identity, line, took| {
        let report = Report(line.to_string());
        assert_eq!(report.word("identity"), identity, "{}", report.0);
        check(&report, took);
    });
}

/// A timer of the image as `inspect --json` gives it: (time left, period)
/// in seconds.
fn image_timer(image: &Path, kind: &str) -> (f64, f64) {
    let j = inspect(image);
    let t = &j["timers"][kind];
    let secs = |k: &str| {
        t[k].as_f64()
            .unwrap_or_else(|| panic!("no timers.{kind}.{k}: {j}"))
    };
    (secs("value"), secs("interval"))
}

/// The `timers` line of `inspect`'s text, if there is one.
fn timers_line(image: &Path) -> Option<String> {
    inspect_text(image)
        .lines()
        .find(|l| l.starts_with("timers "))
        .map(str::to_string)
}

#[test]
fn a_periodic_real_timer_keeps_its_period_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let image = checkpointed(tmp.path(), "real", 200);
    let (left, period) = image_timer(&image, "real");
    assert_eq!(period, 0.05);
    // Due in at most a period (1 µs if its SIGALRM was pending).
    assert!(left > 0.0 && left <= 0.05, "time left {left}");
    for other in ["virtual", "prof"] {
        assert_eq!(image_timer(&image, other), (0.0, 0.0), "{other}");
    }
    let line = timers_line(&image).expect("inspect shows the timer");
    assert!(
        line.contains("real ") && line.ends_with(" every 0.050s"),
        "{line}"
    );
    restart_both_ways(&image, |r, _| {
        assert_eq!(r.num("interval_us"), 50_000.0, "{}", r.0);
        // At most one SIGALRM a period (the kernel skips the periods it
        // missed) and, even on a busy machine, a good share of them.
        let (n, periods) = (r.num("alarms"), r.num("in_ms") / 50.0);
        assert!(n <= periods + 2.0 && n >= periods / 4.0, "{}", r.0);
    });
}

#[test]
fn a_pending_alarm_fires_after_the_time_it_had_left() {
    let tmp = tempfile::tempdir().unwrap();
    let image = checkpointed(tmp.path(), "alarm", 500);
    // alarm(3), checkpointed half a second or more later.
    let (left, period) = image_timer(&image, "real");
    assert_eq!(period, 0.0);
    assert!(left > 0.0 && left < 2.6, "time left {left}");
    let line = timers_line(&image).expect("inspect shows the alarm");
    assert_eq!(line, format!("timers     real {left:.3}s"));
    restart_both_ways(&image, |r, took| {
        let seen = r.num("left_us") / 1e6;
        let fired = r.num("fired_after_ms") / 1e3;
        // The restart armed the alarm with the image's time left, and the
        // program ends only once it fired.
        assert!(seen <= left && seen > left - 2.0, "{left}: {}", r.0);
        assert!(
            fired >= seen - 0.05 && fired <= seen + 2.0,
            "{left}: {}",
            r.0
        );
        let took = took.as_secs_f64();
        assert!(took >= left - 0.001 && took < left + 30.0, "{took} s");
    });
}

#[test]
fn cpu_timers_go_on_counting_cpu_time_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let image = checkpointed(tmp.path(), "cpu", 300);
    let (left, period) = image_timer(&image, "virtual");
    assert_eq!(period, 0.0);
    assert!(left > 0.0 && left <= 1.5, "virtual time left {left}");
    let (prof_left, prof_period) = image_timer(&image, "prof");
    assert_eq!(prof_period, 0.01);
    // (The kernel adds up to a tick to a CPU timer when it arms it.)
    assert!(prof_left > 0.0 && prof_left <= 0.03, "prof {prof_left}");
    assert_eq!(image_timer(&image, "real"), (0.0, 0.0));
    let line = timers_line(&image).expect("inspect shows the timers");
    assert!(
        line.contains(&format!("virtual {left:.3}s, prof ")) && line.ends_with(" every 0.010s"),
        "{line}"
    );
    restart_both_ways(&image, |r, _| {
        assert_eq!(r.num("prof_interval_us"), 10_000.0, "{}", r.0);
        let seen = r.num("virtual_left_us") / 1e6;
        assert!(seen <= left + 0.02 && seen > left - 1.0, "{left}: {}", r.0);
        // Counted in user CPU time; the process's CPU time also holds its
        // system time.
        let cpu = r.num("fired_after_cpu_ms") / 1e3;
        assert!(cpu >= seen - 0.03 && cpu <= seen + 1.0, "{left}: {}", r.0);
        let (n, periods) = (r.num("profs"), cpu / 0.01);
        assert!(n <= periods + 3.0 && n >= periods / 4.0, "{}", r.0);
    });
}
