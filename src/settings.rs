//! The one configuration door: every `SELFCKPT_*` environment variable is
//! listed in [`VARS`] and read here, by [`read`], with one policy — unset
//! means the default, set but malformed is an error naming the variable
//! and what it expects ([`SettingError`]), never silently ignored.
//!
//! Each variable has one typed accessor below; the library, the restarter
//! and the CLI call those, never `std::env` themselves (a unit test checks
//! the source tree for stray reads). `selfckpt run` passes settings to the
//! program by setting these variables, naming them through [`Var::name`].
//!
//! Must never: be read while the program's threads are parked (reading the
//! environment takes libc's environment lock and allocates).

use crate::capture::compress::Level;
use crate::{Builder, Error};
use std::ffi::OsString;
use std::time::Duration;

/// One setting: its variable, what it expects, what it does.
#[derive(Debug)]
pub struct Var {
    pub name: &'static str,
    pub expected: &'static str,
    pub doc: &'static str,
}

macro_rules! vars {
    ($($id:ident = $name:literal, $expected:literal, $doc:literal;)*) => {
        $(pub const $id: Var = Var { name: $name, expected: $expected, doc: $doc };)*
        /// Every `SELFCKPT_*` variable selfckpt reads.
        pub const VARS: &[Var] = &[$($id),*];
    };
}

vars! {
    DIR = "SELFCKPT_DIR", "a directory", "where images are written (default ckpt)";
    SIGNAL = "SELFCKPT_SIGNAL", "a signal name such as USR1", "the checkpoint signal";
    TERM_SIGNAL = "SELFCKPT_TERM_SIGNAL", "a signal name or none", "the checkpoint-then-exit signal";
    INTERVAL = "SELFCKPT_INTERVAL", "seconds (0: none)", "also checkpoint this often";
    KEEP = "SELFCKPT_KEEP", "a number of images", "how many images to keep";
    LEVEL = "SELFCKPT_LEVEL", "store, fast1..fast7 or 1..19", "compression";
    WORKERS = "SELFCKPT_WORKERS", "a number of threads", "compression threads";
    FORKED = "SELFCKPT_FORKED", "0 or 1", "1: forked checkpoints (the program pauses only to fork; a copy-on-write child writes the image)";
    COW_LIMIT_MB = "SELFCKPT_COW_LIMIT_MB", "megabytes (0: none)", "forked: abandon a checkpoint once this much memory was copied on write";
    INCREMENTAL = "SELFCKPT_INCREMENTAL", "0 or 1", "1: incremental checkpoints (an image holds only the pages changed since its parent image; restart reads the chain)";
    FULL_EVERY = "SELFCKPT_FULL_EVERY", "count (default 10)", "incremental: every this many checkpoints, a full image starts a new chain";
    FORK_TIMEOUT = "SELFCKPT_FORK_TIMEOUT", "seconds (0: none)", "forked: kill a dumping child still writing after this long (default 3600)";
    SUSPEND_TIMEOUT_MS = "SELFCKPT_SUSPEND_TIMEOUT_MS", "milliseconds", "how long a checkpoint waits for every thread to stop";
    LOG = "SELFCKPT_LOG", "off, error, warn, info, debug or trace", "what selfckpt logs on stderr";
    KEY = "SELFCKPT_KEY", "a secret (its bytes)", "authenticate images with HMAC-SHA256";
    PAGEMAP_SCAN = "SELFCKPT_PAGEMAP_SCAN", "0 or 1", "0: find data pages with pagemap reads instead of the PAGEMAP_SCAN ioctl";
    RESTART_THP = "SELFCKPT_RESTART_THP", "0 or 1", "force huge-page staging at restart off or on";
    TIDS = "SELFCKPT_TIDS", "auto, exact or new", "how a restart keeps process and thread ids";
    LIB = "SELFCKPT_LIB", "a path to libselfckpt.so", "the library selfckpt run injects";
    BIN = "SELFCKPT_BIN", "a path to the selfckpt command", "the command a CRS restart runs";
    PRELOAD = "SELFCKPT_PRELOAD", "0 or 1", "set by selfckpt run: install from the environment";
    PID = "SELFCKPT_PID", "a process id", "set by selfckpt run: the process to install in";
    INSTANCE = "SELFCKPT_INSTANCE", "a run token", "set by selfckpt run: the token its images carry";
    CHILDREN = "SELFCKPT_CHILDREN", "0 or 1", "set by selfckpt run (1 unless --no-tree): every descendant joins the run's process tree";
    UNBLOCK = "SELFCKPT_UNBLOCK", "comma-separated signal numbers", "set by selfckpt run: signals to unblock once installed";
    MAX_DELETED_FILE = "SELFCKPT_MAX_DELETED_FILE", "a number of bytes", "largest deleted-but-open file whose contents a checkpoint saves (default 1048576)";
    ALLOC_GUARD_SELFTEST = "SELFCKPT_ALLOC_GUARD_SELFTEST", "0 or 1", "test builds: make the next dump allocate once (proves the guard)";
}

/// A variable that is set but not to something it accepts.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{var}={value:?}: expected {expected}")]
pub struct SettingError {
    pub var: &'static str,
    pub value: String,
    pub expected: &'static str,
}

impl From<SettingError> for Error {
    fn from(e: SettingError) -> Error {
        Error::Config(e.to_string())
    }
}

/// Where values come from: the process environment, or a table (tests).
pub trait Source {
    fn get(&self, name: &str) -> Option<OsString>;
}

/// The process environment.
pub struct Environment;

impl Source for Environment {
    fn get(&self, name: &str) -> Option<OsString> {
        std::env::var_os(name)
    }
}

impl<F: Fn(&str) -> Option<String>> Source for F {
    fn get(&self, name: &str) -> Option<OsString> {
        self(name).map(OsString::from)
    }
}

/// Reads `var` from `src` and parses it: `Ok(None)` when unset, an error
/// naming the variable when set but not valid UTF-8 or not accepted.
pub fn read_from<T>(
    src: &dyn Source,
    var: &Var,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Option<T>, SettingError> {
    let Some(raw) = src.get(var.name) else {
        return Ok(None);
    };
    let bad = |value: String| SettingError {
        var: var.name,
        value,
        expected: var.expected,
    };
    let text = raw
        .into_string()
        .map_err(|v| bad(v.to_string_lossy().into_owned()))?;
    parse(text.trim()).map(Some).ok_or_else(|| bad(text))
}

/// [`read_from`] the process environment.
pub fn read<T>(var: &Var, parse: impl Fn(&str) -> Option<T>) -> Result<Option<T>, SettingError> {
    read_from(&Environment, var, parse)
}

/// Parses seconds ("30", "0.5"); 0 means no interval (`Some(None)`).
pub fn parse_seconds(s: &str) -> Option<Option<Duration>> {
    let v: f64 = s.trim().parse().ok()?;
    if !v.is_finite() || v < 0.0 {
        return None;
    }
    Some((v > 0.0).then(|| Duration::from_secs_f64(v)))
}

fn flag(s: &str) -> Option<bool> {
    match s {
        "0" => Some(false),
        "1" => Some(true),
        _ => None,
    }
}

fn term(s: &str) -> Option<Option<crate::Signal>> {
    if s.eq_ignore_ascii_case("none") {
        Some(None)
    } else {
        crate::trigger::parse_signal(s).map(Some)
    }
}

/// The tuning settings [`crate::Checkpointer::builder`] honours: level,
/// workers, interval, suspend timeout, forked mode and its limits.
pub(crate) fn apply_tuning(mut b: Builder, src: &dyn Source) -> Result<Builder, SettingError> {
    if let Some(l) = read_from(src, &LEVEL, |v| v.parse::<Level>().ok())? {
        b.level = l;
    }
    if let Some(n) = read_from(src, &WORKERS, |v| v.parse().ok())? {
        b.workers = Some(n);
    }
    if let Some(i) = read_from(src, &INTERVAL, parse_seconds)? {
        b.interval = i;
    }
    if let Some(on) = read_from(src, &FORKED, flag)? {
        b.forked = on;
    }
    if let Some(on) = read_from(src, &INCREMENTAL, flag)? {
        b.incremental = on;
    }
    if let Some(n) = read_from(src, &FULL_EVERY, |v| {
        v.parse::<u32>().ok().filter(|&n| n > 0)
    })? {
        b.full_every = n;
    }
    if let Some(mb) = read_from(src, &COW_LIMIT_MB, |v| v.parse::<u64>().ok())? {
        b.cow_limit = mb.saturating_mul(1 << 20);
    }
    if let Some(t) = read_from(src, &FORK_TIMEOUT, parse_seconds)? {
        b.fork_timeout_ms = t.map_or(0, |d| (d.as_millis() as u64).max(1));
    }
    if let Some(ms) = read_from(src, &SUSPEND_TIMEOUT_MS, |v| {
        v.parse().ok().filter(|&n| n > 0)
    })? {
        b.suspend_timeout_ms = ms;
    }
    Ok(b)
}

/// Applies every program-side setting that is set to `b` (the C ABI's
/// `selfckpt_init`, LD_PRELOAD mode, [`crate::Builder::from_env`]).
pub fn apply(b: Builder, src: &dyn Source) -> Result<Builder, SettingError> {
    let mut b = apply_tuning(b, src)?;
    if let Some(d) = read_from(src, &DIR, |v| Some(v.to_string()))? {
        if !d.is_empty() {
            b = b.dir(d);
        }
    }
    if let Some(s) = read_from(src, &SIGNAL, crate::trigger::parse_signal)? {
        b = b.signal(s);
    }
    if let Some(s) = read_from(src, &TERM_SIGNAL, term)? {
        b = b.term_signal(s);
    }
    if let Some(n) = read_from(src, &KEEP, |v| v.parse().ok())? {
        b = b.keep(n);
    }
    Ok(b)
}

/// `SELFCKPT_MAX_DELETED_FILE` (`None`: unset).
pub fn max_deleted_file() -> Result<Option<u64>, SettingError> {
    read(&MAX_DELETED_FILE, |v| v.parse().ok())
}

/// `SELFCKPT_LOG` (`None`: unset).
pub fn log_level() -> Result<Option<log::LevelFilter>, SettingError> {
    read(&LOG, |v| v.parse().ok())
}

/// `SELFCKPT_KEY`, its bytes taken literally (`None`: unset or empty).
pub fn key() -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    Environment
        .get(KEY.name)
        .map(|v| v.as_bytes().to_vec())
        .filter(|v| !v.is_empty())
}

/// `SELFCKPT_PAGEMAP_SCAN`: whether the PAGEMAP_SCAN ioctl may be used.
pub fn pagemap_scan_allowed() -> Result<bool, SettingError> {
    Ok(read(&PAGEMAP_SCAN, flag)?.unwrap_or(true))
}

/// `SELFCKPT_RESTART_THP`: forced on or off (`None`: decide).
pub fn restart_thp() -> Result<Option<bool>, SettingError> {
    read(&RESTART_THP, flag)
}

/// `SELFCKPT_TIDS` (`None`: unset).
pub fn tids() -> Result<Option<String>, SettingError> {
    read(&TIDS, |v| {
        ["auto", "exact", "new"].contains(&v).then(|| v.to_string())
    })
}

/// `SELFCKPT_LIB` (`None`: unset).
pub fn lib() -> Option<std::path::PathBuf> {
    Environment.get(LIB.name).map(std::path::PathBuf::from)
}

/// `SELFCKPT_INSTANCE` (`None`: unset or not UTF-8; the caller checks
/// its shape).
pub fn instance() -> Option<String> {
    Environment.get(INSTANCE.name)?.into_string().ok()
}

/// `SELFCKPT_BIN` (`None`: unset).
pub fn bin() -> Option<std::path::PathBuf> {
    Environment.get(BIN.name).map(std::path::PathBuf::from)
}

/// What `selfckpt run` told the LD_PRELOAD constructor.
pub struct PreloadRequest {
    /// `SELFCKPT_PRELOAD=1`.
    pub asked: bool,
    /// `SELFCKPT_PID`: the process meant.
    pub pid: Option<u32>,
    /// `SELFCKPT_CHILDREN=1`.
    pub children: bool,
    /// `SELFCKPT_UNBLOCK`.
    pub unblock: Vec<i32>,
}

/// Reads the `selfckpt run` hand-off variables.
pub fn preload_request() -> Result<PreloadRequest, SettingError> {
    let list = |v: &str| {
        v.split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.trim().parse().ok())
            .collect::<Option<Vec<i32>>>()
    };
    Ok(PreloadRequest {
        asked: read(&PRELOAD, flag)?.unwrap_or(false),
        pid: read(&PID, |v| v.parse().ok())?,
        children: read(&CHILDREN, flag)?.unwrap_or(false),
        unblock: read(&UNBLOCK, list)?.unwrap_or_default(),
    })
}

/// Every variable of [`VARS`] set in the environment, as it is set: what a
/// tree member passes on to a program it starts (`interpose::exec`).
pub fn passed_on() -> Vec<(String, OsString)> {
    VARS.iter()
        .filter_map(|v| Environment.get(v.name).map(|val| (v.name.to_string(), val)))
        .collect()
}

/// `SELFCKPT_ALLOC_GUARD_SELFTEST=1`.
pub fn alloc_guard_selftest() -> Result<bool, SettingError> {
    Ok(read(&ALLOC_GUARD_SELFTEST, flag)?.unwrap_or(false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with(vars: &[(&str, &str)]) -> Result<Builder, SettingError> {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        apply(Builder::defaults(), &|k: &str| m.get(k).cloned())
    }

    #[test]
    fn good_values_are_applied() {
        let b = with(&[
            ("SELFCKPT_DIR", "/tmp/x"),
            ("SELFCKPT_SIGNAL", "USR2"),
            ("SELFCKPT_TERM_SIGNAL", "none"),
            ("SELFCKPT_INTERVAL", "1.5"),
            ("SELFCKPT_KEEP", "2"),
            ("SELFCKPT_LEVEL", "store"),
            ("SELFCKPT_WORKERS", "3"),
            ("SELFCKPT_SUSPEND_TIMEOUT_MS", "700"),
        ])
        .unwrap();
        assert_eq!(b.dir, std::path::PathBuf::from("/tmp/x"));
        assert_eq!(b.signal, nix::sys::signal::Signal::SIGUSR2);
        assert_eq!(b.term_signal, None);
        assert_eq!(b.interval, Some(Duration::from_millis(1500)));
        assert_eq!(b.keep, 2);
        assert_eq!(b.level, Level::Store);
        assert_eq!(b.workers, Some(3));
        assert_eq!(b.suspend_timeout_ms, 700);
        assert_eq!(with(&[("SELFCKPT_INTERVAL", "0")]).unwrap().interval, None);
    }

    #[test]
    fn a_malformed_value_is_an_error_naming_the_variable() {
        for (k, v) in [
            ("SELFCKPT_SIGNAL", "BOGUS"),
            ("SELFCKPT_TERM_SIGNAL", "SIGNOPE"),
            ("SELFCKPT_INTERVAL", "soon"),
            ("SELFCKPT_INTERVAL", "-1"),
            ("SELFCKPT_KEEP", "-1"),
            ("SELFCKPT_LEVEL", "99"),
            ("SELFCKPT_WORKERS", "x"),
            ("SELFCKPT_WORKERS", "-2"),
            ("SELFCKPT_SUSPEND_TIMEOUT_MS", "5s"),
        ] {
            let e = with(&[(k, v)]).expect_err(&format!("{k}={v} accepted"));
            assert_eq!(e.var, k);
            let msg = e.to_string();
            assert!(msg.contains(k) && msg.contains("expected"), "{msg}");
        }
    }

    /// `builder()` follows the same policy as `from_env()`: a bad
    /// `SELFCKPT_LEVEL` is an error at install, not silently the default.
    #[test]
    fn the_builder_keeps_a_tuning_error_for_install() {
        let src = |k: &str| (k == "SELFCKPT_LEVEL").then(|| "99".to_string());
        let e = apply_tuning(Builder::defaults(), &src).expect_err("accepted");
        assert_eq!(e.var, "SELFCKPT_LEVEL");
    }

    #[test]
    fn every_variable_is_named_once_and_documented_in_the_readme() {
        let readme = include_str!("../README.md");
        let mut seen = std::collections::HashSet::new();
        for v in VARS {
            assert!(v.name.starts_with("SELFCKPT_"), "{}", v.name);
            assert!(seen.insert(v.name), "{} listed twice", v.name);
            assert!(
                readme.contains(v.name),
                "README.md does not mention {}",
                v.name
            );
        }
    }

    /// The door is the only one: no other source file reads a `SELFCKPT_*`
    /// variable, or names one by a literal of its own (`.env(...)`,
    /// `var(...)`: they use [`Var::name`]).
    #[test]
    fn no_other_file_reads_a_setting() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut stack = vec![root];
        let mut offenders = Vec::new();
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "rs")
                    && !p.ends_with("src/settings.rs")
                {
                    let text = std::fs::read_to_string(&p).unwrap();
                    for (n, line) in text.lines().enumerate() {
                        let code = line.trim_start();
                        let reads = code.contains("env::var") && code.contains("SELFCKPT");
                        let names = code.contains("(\"SELFCKPT_") && !code.starts_with("#[error");
                        if (reads || names) && !code.starts_with("//") {
                            offenders.push(format!("{}:{}: {code}", p.display(), n + 1));
                        }
                    }
                }
            }
        }
        assert!(offenders.is_empty(), "{offenders:#?}");
    }
}
