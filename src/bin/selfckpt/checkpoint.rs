//! `selfckpt checkpoint PID [--wait] [--timeout S]`: asks a running
//! program to checkpoint (sends its trigger signal) and, with `--wait`,
//! waits until the new image is durable and prints its path. The work is
//! the library's (`selfckpt::ask`, shared with the CRS module); this file
//! only maps the command line onto it.
//!
//! The checkpointer also sends that line to the abstract socket
//! `selfckpt-wait-PID` (see `selfckpt::notify`), which `--wait` binds
//! before signalling: a failure that could not be written to the image
//! directory still reaches the waiter at once.
//!
//! Must never: signal a process that does not really run selfckpt's
//! checkpointer (it catches the signal, per `SigCgt` in /proc/PID/status,
//! and runs the checkpoint thread; or it is `selfckpt restart` forwarding
//! to such a descendant) without `--force`: the signal's default action
//! kills.

use selfckpt::ask::{ask, Ask, AskError};
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args)]
pub struct CheckpointArgs {
    /// The process to checkpoint.
    pid: i32,
    /// The program's image directory (default: found from the process).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The trigger signal (default: the program's SELFCKPT_SIGNAL, else USR1).
    #[arg(long)]
    signal: Option<String>,
    /// Checkpoint and then exit (sends the term signal, USR2 by default).
    #[arg(long)]
    exit: bool,
    /// Wait until the image is durable and print its path.
    #[arg(long)]
    wait: bool,
    /// Give up waiting after this many seconds (exit code 3).
    #[arg(long, default_value_t = 120.0)]
    timeout: f64,
    /// Send the signal even if the process does not look like it runs selfckpt.
    #[arg(long)]
    force: bool,
}

/// Failure of this command, with its exit code.
pub struct Failed(pub u8, pub String);

pub fn checkpoint(a: CheckpointArgs) -> Result<(), Failed> {
    let req = Ask {
        pid: a.pid,
        dir: a.dir,
        signal: a.signal,
        exit: a.exit,
        wait: a.wait,
        timeout: Duration::try_from_secs_f64(a.timeout.max(0.0)).unwrap_or(Duration::MAX),
        force: a.force,
        // As before: whoever may signal the process (root) may ask.
        same_user: false,
    };
    match ask(&req) {
        Ok(Some(taken)) => {
            println!("{}", taken.path.display());
            // Said where the user asked: what a restart will refuse.
            for r in &taken.refused {
                eprintln!("selfckpt: warning: a restart of this checkpoint refuses: {r}");
            }
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(e @ AskError::Timeout { .. }) => Err(Failed(3, e.to_string())),
        Err(e @ AskError::NotSelfckpt(..)) => {
            Err(Failed(1, format!("{e}; --force sends the signal anyway")))
        }
        Err(e) => Err(Failed(1, e.to_string())),
    }
}
