//! Configuration from the environment: `SELFCKPT_DIR`, `SELFCKPT_SIGNAL`,
//! `SELFCKPT_TERM_SIGNAL` (a signal name, or `none`), `SELFCKPT_INTERVAL`
//! (seconds, fractions allowed), `SELFCKPT_KEEP`, `SELFCKPT_LEVEL`,
//! `SELFCKPT_WORKERS`. Used by the C ABI's `selfckpt_init`, LD_PRELOAD mode
//! and [`crate::Builder::from_env`].
//!
//! Must never: silently ignore a value that is set but malformed (that is a
//! configuration error naming the variable).

use crate::{Builder, Error, Level};
use std::time::Duration;

/// Parses seconds ("30", "0.5"); 0 or negative means no interval.
pub fn parse_seconds(s: &str) -> Option<Duration> {
    let v: f64 = s.trim().parse().ok()?;
    (v.is_finite() && v > 0.0).then(|| Duration::from_secs_f64(v))
}

fn bad(var: &str, val: &str, what: &str) -> Error {
    Error::Config(format!("{var}={val:?}: expected {what}"))
}

/// Reads `var` with `parse`; set but unparsable is an error naming it.
fn read<T>(
    get: &impl Fn(&str) -> Option<String>,
    var: &str,
    expected: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Option<T>, Error> {
    get(var)
        .map(|v| parse(v.trim()).ok_or_else(|| bad(var, &v, expected)))
        .transpose()
}

/// Applies every `SELFCKPT_*` variable that is set to `b`.
pub fn apply(mut b: Builder, get: impl Fn(&str) -> Option<String>) -> Result<Builder, Error> {
    use crate::trigger::parse_signal;
    if let Some(v) = get("SELFCKPT_DIR").filter(|v| !v.is_empty()) {
        b = b.dir(v);
    }
    let signal = "a signal name such as USR1";
    if let Some(s) = read(&get, "SELFCKPT_SIGNAL", signal, parse_signal)? {
        b = b.signal(s);
    }
    let term = |v: &str| match v.eq_ignore_ascii_case("none") {
        true => Some(None),
        false => parse_signal(v).map(Some),
    };
    if let Some(s) = read(&get, "SELFCKPT_TERM_SIGNAL", "a signal name or none", term)? {
        b = b.term_signal(s);
    }
    let secs = |v: &str| v.parse::<f64>().ok().map(|t| parse_seconds(&t.to_string()));
    if let Some(i) = read(&get, "SELFCKPT_INTERVAL", "seconds", secs)? {
        b.interval = i;
    }
    if let Some(n) = read(&get, "SELFCKPT_KEEP", "a number of images", |v| {
        v.parse().ok()
    })? {
        b = b.keep(n);
    }
    let levels = "store, fast1..fast7 or 1..19";
    if let Some(l) = read(&get, "SELFCKPT_LEVEL", levels, Level::parse)? {
        b = b.level(l);
    }
    if let Some(n) = read(&get, "SELFCKPT_WORKERS", "a number of threads", |v| {
        v.parse().ok()
    })? {
        b = b.workers(n);
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with(vars: &[(&str, &str)]) -> Result<Builder, Error> {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        apply(crate::Checkpointer::builder(), |k| m.get(k).cloned())
    }

    #[test]
    fn good_and_bad_values() {
        let b = with(&[
            ("SELFCKPT_DIR", "/tmp/x"),
            ("SELFCKPT_SIGNAL", "USR2"),
            ("SELFCKPT_TERM_SIGNAL", "none"),
            ("SELFCKPT_INTERVAL", "1.5"),
            ("SELFCKPT_KEEP", "2"),
            ("SELFCKPT_LEVEL", "store"),
        ])
        .unwrap();
        assert_eq!(b.dir, std::path::PathBuf::from("/tmp/x"));
        assert_eq!(b.signal, nix::sys::signal::Signal::SIGUSR2);
        assert_eq!(b.term_signal, None);
        assert_eq!(b.interval, Some(Duration::from_millis(1500)));
        assert_eq!(b.keep, 2);
        assert_eq!(b.level, Level::Store);
        for (k, v) in [
            ("SELFCKPT_SIGNAL", "BOGUS"),
            ("SELFCKPT_INTERVAL", "soon"),
            ("SELFCKPT_KEEP", "-1"),
            ("SELFCKPT_LEVEL", "99"),
            ("SELFCKPT_WORKERS", "x"),
        ] {
            let e = with(&[(k, v)])
                .err()
                .unwrap_or_else(|| panic!("{k}={v} accepted"));
            assert!(e.to_string().contains(k), "{e}");
        }
        assert_eq!(with(&[("SELFCKPT_INTERVAL", "0")]).unwrap().interval, None);
    }
}
