//! One checkpoint as the program sees it, around the manager's
//! `checkpoint_once` (which suspends, dumps, resumes and commits):
//!
//! ```text
//!  close the gate (wait for critical sections)   state CHECKPOINT | TERM
//!  on_checkpoint hooks, in order ──error──┐
//!  checkpoint_once                        │
//!    │  (TERM without a key: committed, stats line, exit_group(0) while
//!    │   the threads stay parked; they never run past the image)
//!    ├─ Continued: stats line; TERM? exit_group(0)
//!    │             on_continue hooks (reverse)      state CONTINUE
//!    ├─ Restarted: on_restart hooks (reverse)       state RESTART
//!    └─ Err ──────────────────────────────┴─> on_continue hooks, state ERROR
//!  open the gate; start the next interval
//! ```
//!
//! Each checkpoint appends one JSON line to `DIR/stats.jsonl` and sends
//! the same line to a waiting `selfckpt checkpoint --wait` (`notify`).
//! The reserved descriptors (`fdreserve`) are given back for the
//! checkpoint and taken again after its line was written.
//!
//! Runs on the manager thread only. Must never: run hooks or write the
//! stats line while the program's threads are suspended (that is all
//! inside `checkpoint_once`), or leave the gate closed on any path.

use crate::hooks::{self, State};
use crate::manager::Runtime;
use crate::{gate, trigger, Error, Outcome};

/// Runs one checkpoint with gate, hooks and stats.
pub(crate) fn run(rt: &Runtime) -> Result<Outcome, Error> {
    if crate::tree::is_member() && !crate::tree::member::in_round() {
        return ask_root(rt);
    }
    let term = trigger::take_term();
    crate::fdreserve::release();
    let state = if term { State::Term } else { State::Checkpoint };
    trigger::serving_term(term);
    if term {
        trigger::take_term(); // one more that came before the line above
    }
    gate::close();
    let result = hooks::run_before(state)
        .map_err(Error::Hook)
        .and_then(|()| rt.checkpoint(term));
    // First thing, also in a restarted process (whose memory says a term
    // checkpoint is under way): from now on a term signal is a new request.
    trigger::serving_term(false);
    match &result {
        Ok(Outcome::Continued) => {
            let st = rt.last_stats.lock().ok().and_then(|s| s.clone());
            // A member exits with the tree's checkpoint-then-exit.
            let term = term
                || st
                    .as_ref()
                    .is_some_and(|s| s.tree.as_ref().is_some_and(|t| t.1));
            let end = if term { State::Term } else { State::Continue };
            append_stats(rt, end, st.as_ref(), None);
            if term {
                log::info!("checkpoint written; exiting as asked (term signal)");
                // The image is durable. exit_group, not exit: buffered
                // output and atexit work belong to the process that will be
                // restarted (and the run is not over: see preload).
                crate::preload::exit_group(0);
            }
            hooks::run_after(State::Continue);
        }
        Ok(Outcome::Restarted) => {
            crate::preload::after_restart();
            crate::tree::after_restart();
            append_stats(rt, State::Restart, None, None);
            hooks::run_after(State::Restart);
        }
        Err(e) => {
            append_stats(rt, State::Error, None, Some(&e.to_string()));
            if term {
                log::error!("checkpoint before exit failed; the program goes on: {e}");
            }
            hooks::run_after(State::Error);
        }
    }
    crate::fdreserve::fill();
    gate::open();
    trigger::rearm();
    result
}

/// A member's own request (its trigger signal, the API, `selfckpt
/// checkpoint MEMBER`): the tree is checkpointed as a whole, by its root,
/// which is asked; this process's image is written in the root's round,
/// whose line in stats.jsonl tells a waiter. Nothing is recorded here
/// unless the root cannot be asked.
fn ask_root(rt: &Runtime) -> Result<Outcome, Error> {
    trigger::take_term();
    let result = crate::tree::member::ask_root();
    if let Err(e) = &result {
        append_stats(rt, State::Error, None, Some(&e.to_string()));
    }
    trigger::rearm();
    result.and(Err(Error::AskedRoot(crate::capture::sys::getpid())))
}

/// Appends the record of one checkpoint to `DIR/stats.jsonl` and tells
/// the waiter, if any.
fn append_stats(
    rt: &Runtime,
    state: State,
    st: Option<&crate::manager::CheckpointStats>,
    error: Option<&str>,
) {
    let page = crate::capture::sys::page_size() as u64;
    let mut rec = serde_json::json!({
        "time_unix_ms": crate::capture::sys::realtime_ns() / 1_000_000,
        "pid": crate::capture::sys::getpid(),
        "program": rt.prog_name,
        "state": state.name(),
    });
    if let Some(st) = st {
        let d = &st.dump;
        rec["path"] = st.path.display().to_string().into();
        rec["bytes_mapped"] = d.bytes_mapped.into();
        rec["bytes_stored"] = d.bytes_stored.into();
        rec["pages_skipped"] = (d.bytes_mapped.saturating_sub(d.bytes_raw) / page).into();
        rec["zero_pages"] = d.zero_pages.into();
        rec["pause_ms"] = (st.pause_ns as f64 / 1e6).into();
        rec["total_ms"] = (st.total_ns as f64 / 1e6).into();
        rec["forked"] = st.forked.into();
        if let Some(parent) = &st.parent {
            rec["parent"] = parent.as_str().into();
            rec["unchanged_pages"] = d.unchanged_pages.into();
        }
        if st.forked {
            rec["cow_bytes"] = st.cow_bytes.into();
        }
        if let Some(why) = &st.fork_fallback {
            rec["fork_fallback"] = why.as_str().into();
        }
        if let Some((set, _)) = &st.tree {
            rec["tree"] = set.display().to_string().into();
            if let Some(left) = crate::tree::round::last_left_out() {
                rec["left_out"] = left;
            }
        }
        // Named at checkpoint time: what a restart of this image refuses;
        // of a tree's set, what the tree's restart refuses (the root names
        // it for all members: what they share, the tree makes again).
        let notes = match &st.tree {
            None => crate::kstate::unrestorable::last(),
            Some(_) if crate::tree::member::conn().is_some() => Vec::new(),
            Some(_) => crate::tree::round::last_refused(),
        };
        if !notes.is_empty() {
            crate::kstate::unrestorable::log(&notes);
            rec["not_restorable"] = notes.into();
        }
    }
    if let Some(e) = error {
        rec["error"] = e.into();
    }
    let line = format!("{rec}\n");
    // The file first, then the waiter: whoever hears of the checkpoint
    // finds its line in stats.jsonl.
    if let Err(e) = crate::imagedir::append_line(&rt.config.dir, "stats.jsonl", line.as_bytes()) {
        log::warn!("{e}");
    }
    crate::notify::send(line.as_bytes());
}
