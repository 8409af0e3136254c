//! Lifecycle hooks: callbacks the program registers to run around each
//! checkpoint, with the checkpoint's [`State`] (after Open MPI's
//! checkpoint/restart states).
//!
//! * `on_checkpoint` hooks run in registration order on the manager thread,
//!   after the critical sections have ended and before the program's threads
//!   are suspended (state `Checkpoint`, or `Term` when the process exits
//!   after the checkpoint). An error aborts that checkpoint: no image is
//!   committed, and the `on_continue` hooks run with state `Error` so that
//!   whatever the checkpoint hooks closed can be reopened.
//! * `on_continue` (state `Continue` or `Error`) and `on_restart` (state
//!   `Restart`) run in reverse registration order after the threads were
//!   resumed, before new critical sections may begin.
//!
//! Hooks are ordinary Rust: they may allocate, lock and do I/O. Must never:
//! run while the program's threads are suspended, or hold the registry lock
//! while a hook runs (a hook may register another hook).

use std::sync::{Arc, Mutex};

/// Where a checkpoint stands, as passed to hooks (and returned by the C
/// ABI's `selfckpt_checkpoint`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum State {
    /// A checkpoint is about to be taken; the program goes on afterwards.
    Checkpoint = 0,
    /// The checkpoint was written and this process goes on.
    Continue = 1,
    /// This process was restarted from the image.
    Restart = 2,
    /// A checkpoint is about to be taken and the process then exits (0).
    Term = 3,
    /// The checkpoint failed or was aborted; previous images are intact.
    Error = -1,
}

impl State {
    /// Lower-case name, as in `stats.jsonl`.
    pub fn name(self) -> &'static str {
        match self {
            State::Checkpoint => "checkpoint",
            State::Continue => "continue",
            State::Restart => "restart",
            State::Term => "term",
            State::Error => "error",
        }
    }
}

/// Why a hook refused a checkpoint.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HookError(pub String);

impl HookError {
    /// A refusal with a message.
    pub fn new(msg: impl Into<String>) -> HookError {
        HookError(msg.into())
    }
}

/// The result a hook returns.
pub type HookResult = Result<(), HookError>;

/// When a hook runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    /// Before the checkpoint (state `Checkpoint` or `Term`).
    Checkpoint,
    /// After the checkpoint in the running process (`Continue` or `Error`).
    Continue,
    /// After a restart (`Restart`).
    Restart,
}

type Hook = Arc<dyn Fn(State) -> HookResult + Send + Sync>;

static HOOKS: Mutex<Vec<(When, Hook)>> = Mutex::new(Vec::new());

/// Registers `f` to run at `when`. Hooks may be registered at any time,
/// before or after installing the checkpointer.
pub fn register(when: When, f: impl Fn(State) -> HookResult + Send + Sync + 'static) {
    if let Ok(mut h) = HOOKS.lock() {
        h.push((when, Arc::new(f)));
    }
}

/// The hooks of one kind, in registration order (copied out of the lock).
fn of(when: When) -> Vec<Hook> {
    HOOKS
        .lock()
        .map(|h| {
            h.iter()
                .filter(|(w, _)| *w == when)
                .map(|(_, f)| f.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// Runs the checkpoint hooks in order; stops at the first error.
pub(crate) fn run_before(state: State) -> Result<(), HookError> {
    for (i, f) in of(When::Checkpoint).iter().enumerate() {
        f(state).map_err(|e| HookError(format!("checkpoint hook #{} refused: {e}", i + 1)))?;
    }
    Ok(())
}

/// Runs the continue or restart hooks in reverse order. Errors are logged:
/// the checkpoint is over and cannot be undone.
pub(crate) fn run_after(state: State) {
    let when = if state == State::Restart {
        When::Restart
    } else {
        When::Continue
    };
    for (i, f) in of(when).iter().enumerate().rev() {
        if let Err(e) = f(state) {
            log::warn!("{} hook #{} failed: {e}", state.name(), i + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_abort() {
        let log = Arc::new(Mutex::new(Vec::<String>::new()));
        for i in 1..=3 {
            let l = log.clone();
            register(When::Checkpoint, move |s| {
                l.lock().unwrap().push(format!("c{i}:{}", s.name()));
                if i == 2 && s == State::Term {
                    return Err(HookError::new("no"));
                }
                Ok(())
            });
            let l = log.clone();
            register(When::Continue, move |s| {
                l.lock().unwrap().push(format!("k{i}:{}", s.name()));
                Ok(())
            });
        }
        run_before(State::Checkpoint).unwrap();
        run_after(State::Continue);
        let err = run_before(State::Term).unwrap_err();
        assert!(err.to_string().contains("#2"), "{err}");
        let got = log.lock().unwrap().join(" ");
        assert_eq!(
            got,
            "c1:checkpoint c2:checkpoint c3:checkpoint k3:continue k2:continue k1:continue c1:term c2:term"
        );
    }
}
