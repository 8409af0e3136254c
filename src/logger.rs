//! A tiny `log` backend: one line per record on stderr, prefixed
//! `selfckpt[PID]`. Quiet by default (warnings and errors only);
//! `SELFCKPT_LOG=error|warn|info|debug|trace|off` sets the level.
//!
//! Who installs it: the C ABI and LD_PRELOAD mode always (those programs
//! have no Rust logger); a Rust program only when `SELFCKPT_LOG` is set, so
//! that its own `env_logger::init()` (which panics if a logger exists) still
//! works and selfckpt's records go to the program's logger.
//!
//! Must never: replace a logger the program installed itself (`init` does
//! nothing then), or log while the program's threads are suspended (stderr
//! has a lock).

use std::io::Write;

struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::max_level() && m.target().starts_with("selfckpt")
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            let line = format!(
                "selfckpt[{}]: {}: {}\n",
                crate::capture::sys::getpid(),
                r.level().as_str().to_ascii_lowercase(),
                r.args()
            );
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }
    fn flush(&self) {}
}

static LOGGER: StderrLogger = StderrLogger;

/// Parses a `SELFCKPT_LOG` value.
pub fn parse_level(s: &str) -> Option<log::LevelFilter> {
    s.trim().parse().ok()
}

/// Installs the logger for a Rust program: only if `SELFCKPT_LOG` is set.
pub fn init_if_asked() {
    if !matches!(crate::settings::log_level(), Ok(None)) {
        init();
    }
}

/// Installs the logger unless the program has one.
pub fn init() {
    let level = match crate::settings::log_level() {
        Ok(l) => l.unwrap_or(log::LevelFilter::Warn),
        Err(e) => {
            eprintln!("selfckpt: {e}; logging warnings and errors");
            log::LevelFilter::Warn
        }
    };
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}
