//! The C ABI behind `include/selfckpt.h` (also usable from C++ and from
//! Fortran through `bind(C)`); the CRS module of `include/selfckpt_crs.h`
//! is in [`crs`].
//!
//! Every function catches panics at the boundary and reports failure as a
//! return value; the text of the last failure on the calling thread is kept
//! for `selfckpt_last_error`. Must never: unwind across the boundary, keep a
//! pointer the caller passed beyond the call (strings are copied), or call a
//! C hook while the program's threads are suspended.

use crate::hooks::{HookError, State, When};
use crate::{Builder, Error, Level, Outcome};
use core::ffi::{c_char, c_int, c_void};
use std::cell::RefCell;
use std::ffi::{CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

pub mod crs;

/// `selfckpt_checkpoint` result: the checkpoint was written, going on.
pub const SELFCKPT_CONTINUE: c_int = State::Continue as c_int;
/// `selfckpt_checkpoint` result: this process was restarted.
pub const SELFCKPT_RESTART: c_int = State::Restart as c_int;
/// `selfckpt_checkpoint` result: asked inside a critical section; it runs
/// when the section ends.
pub const SELFCKPT_DEFERRED: c_int = 4;
/// Failure (see `selfckpt_last_error`).
pub const SELFCKPT_ERROR: c_int = State::Error as c_int;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

pub(crate) fn set_error(msg: String) {
    let c = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// Runs `f`, mapping errors and panics to `fail` and recording the message.
pub(crate) fn guard<T>(fail: T, f: impl FnOnce() -> Result<T, String>) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => v,
        Ok(Err(msg)) => {
            set_error(msg);
            fail
        }
        Err(_) => {
            set_error("internal error (panic) in selfckpt".into());
            fail
        }
    }
}

/// Explicit configuration, see `include/selfckpt.h`.
#[repr(C)]
pub struct SelfckptConfig {
    pub struct_size: u32,
    pub keep: u32,
    pub dir: *const c_char,
    pub signal: c_int,
    pub term_signal: c_int,
    pub level: c_int,
    pub workers: u32,
    pub interval_seconds: f64,
    /// Added in version 2 of the struct: 1 forked, 0 not, -1 unset.
    pub forked: c_int,
    /// Added in version 3: 1 incremental, 0 not, -1 unset.
    pub incremental: c_int,
    /// Added in version 3: incremental, a full image every this many
    /// checkpoints (0: unset).
    pub full_every: u32,
}

/// `struct_size` of the first version (before `forked`): still accepted.
const CONFIG_V1_SIZE: usize = core::mem::offset_of!(SelfckptConfig, forked);
/// `struct_size` of the second version (up to `forked`, padded as the C
/// compiler pads it).
const CONFIG_V2_SIZE: usize = 48;
const _: () = assert!(core::mem::offset_of!(SelfckptConfig, forked) + 4 <= CONFIG_V2_SIZE);
const _: () = assert!(core::mem::offset_of!(SelfckptConfig, incremental) + 4 <= CONFIG_V2_SIZE);

/// The defaults (every field "unset"), `struct_size` the full size.
fn defaults() -> SelfckptConfig {
    SelfckptConfig {
        struct_size: core::mem::size_of::<SelfckptConfig>() as u32,
        keep: 0,
        dir: core::ptr::null(),
        signal: 0,
        term_signal: 0,
        level: -100,
        workers: 0,
        interval_seconds: 0.0,
        forked: -1,
        incremental: -1,
        full_every: 0,
    }
}

/// Fills the first `size` bytes of `cfg` (a program's `sizeof` its
/// struct: an older, shorter one gets only the fields it has) with the
/// defaults; `struct_size` says how many. The header's
/// `selfckpt_config_init(cfg)` calls this with `sizeof *(cfg)`.
///
/// # Safety
/// `cfg` must point to `size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn selfckpt_config_init_size(cfg: *mut SelfckptConfig, size: usize) {
    if cfg.is_null() || size < CONFIG_V1_SIZE {
        return;
    }
    let size = size.min(core::mem::size_of::<SelfckptConfig>());
    let mut d = defaults();
    d.struct_size = size as u32;
    // SAFETY: the caller gives `size` writable bytes; `d` is a whole
    // struct of at least `size` bytes.
    unsafe {
        core::ptr::copy_nonoverlapping(
            (&d as *const SelfckptConfig).cast::<u8>(),
            cfg.cast::<u8>(),
            size,
        )
    };
}

/// Fills `cfg` with the defaults, as a program built with the second
/// version of the header (whose `selfckpt_config_init` was this symbol)
/// knows them: the fields up to `forked`. Programs built with the current
/// header call [`selfckpt_config_init_size`] instead.
///
/// # Safety
/// `cfg` must point to a writable struct of the second version or later.
#[no_mangle]
pub unsafe extern "C" fn selfckpt_config_init(cfg: *mut SelfckptConfig) {
    // SAFETY: as the caller promises.
    unsafe { selfckpt_config_init_size(cfg, CONFIG_V2_SIZE) }
}

fn install(b: Result<Builder, Error>) -> Result<c_int, String> {
    crate::logger::init();
    b.and_then(|b| b.install()).map_err(|e| e.to_string())?;
    Ok(0)
}

/// Installs the checkpointer configured from `SELFCKPT_*` variables.
/// Returns 0, or -1 (see `selfckpt_last_error`).
#[no_mangle]
pub extern "C" fn selfckpt_init() -> c_int {
    guard(-1, || install(Builder::from_env()))
}

fn signal_of(n: c_int) -> Result<crate::Signal, String> {
    crate::Signal::try_from(n).map_err(|_| format!("{n} is not a signal number"))
}

/// Installs the checkpointer with `cfg` (fields left at their
/// `selfckpt_config_init` value take the `SELFCKPT_*` variables or the
/// defaults). Returns 0, or -1.
///
/// # Safety
/// `cfg` must point to a config filled by `selfckpt_config_init`; `dir`, if
/// set, to a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn selfckpt_init_config(cfg: *const SelfckptConfig) -> c_int {
    guard(-1, || {
        if cfg.is_null() {
            return Err("selfckpt_init_config: NULL config".into());
        }
        // SAFETY: the caller passes a valid config.
        let c = unsafe { &*cfg };
        let size = c.struct_size as usize;
        if size < CONFIG_V1_SIZE || size > core::mem::size_of::<SelfckptConfig>() {
            return Err("selfckpt_init_config: call selfckpt_config_init first".into());
        }
        // A program built against an older header has not the later
        // fields: they are not read.
        let has = |end: usize| size >= end;
        let forked = has(CONFIG_V2_SIZE).then_some(c.forked);
        let incremental = has(core::mem::size_of::<SelfckptConfig>()).then_some(c.incremental);
        let full_every = has(core::mem::size_of::<SelfckptConfig>()).then_some(c.full_every);
        let mut b = Builder::from_env().map_err(|e| e.to_string())?;
        if !c.dir.is_null() {
            // SAFETY: the caller passes a NUL-terminated string.
            let d = unsafe { CStr::from_ptr(c.dir) };
            b = b.dir(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(d.to_bytes()));
        }
        if c.signal > 0 {
            b = b.signal(signal_of(c.signal)?);
        }
        if c.term_signal > 0 {
            b = b.term_signal(Some(signal_of(c.term_signal)?));
        } else if c.term_signal < 0 {
            b = b.term_signal(None);
        }
        if c.keep > 0 {
            b = b.keep(c.keep as usize);
        }
        if c.level != -100 {
            b = b.level(Level::from_c(c.level).map_err(|e| e.to_string())?);
        }
        if c.workers > 0 {
            b = b.workers(c.workers as usize);
        }
        match forked {
            Some(1) => b = b.forked(true),
            Some(0) => b = b.forked(false),
            Some(-1) | None => {}
            Some(v) => return Err(format!("selfckpt_config.forked = {v}: expected 0, 1 or -1")),
        }
        match incremental {
            Some(1) => b = b.incremental(true),
            Some(0) => b = b.incremental(false),
            Some(-1) | None => {}
            Some(v) => {
                return Err(format!(
                    "selfckpt_config.incremental = {v}: expected 0, 1 or -1"
                ))
            }
        }
        if let Some(n) = full_every.filter(|&n| n > 0) {
            b = b.full_every(n);
        }
        if c.interval_seconds > 0.0 && c.interval_seconds.is_finite() {
            b = b.interval(std::time::Duration::from_secs_f64(c.interval_seconds));
        }
        install(Ok(b))
    })
}

/// Takes a checkpoint now: `SELFCKPT_CONTINUE`, `SELFCKPT_RESTART`,
/// `SELFCKPT_DEFERRED` or `SELFCKPT_ERROR`.
#[no_mangle]
pub extern "C" fn selfckpt_checkpoint() -> c_int {
    guard(SELFCKPT_ERROR, || match crate::checkpoint() {
        Ok(Outcome::Continued) => Ok(SELFCKPT_CONTINUE),
        Ok(Outcome::Restarted) => Ok(SELFCKPT_RESTART),
        Err(Error::Deferred) => {
            set_error(Error::Deferred.to_string());
            Ok(SELFCKPT_DEFERRED)
        }
        Err(e) => Err(e.to_string()),
    })
}

/// Begins a critical section (nests; any thread). Returns 0.
#[no_mangle]
pub extern "C" fn selfckpt_disable() -> c_int {
    guard(-1, || {
        crate::gate::enter();
        Ok(0)
    })
}

/// Ends a critical section. Returns 0, or -1 if none was open.
#[no_mangle]
pub extern "C" fn selfckpt_enable() -> c_int {
    guard(-1, || {
        if crate::gate::leave() {
            Ok(0)
        } else {
            Err("selfckpt_enable without selfckpt_disable".into())
        }
    })
}

/// How many times this process was restarted.
#[no_mangle]
pub extern "C" fn selfckpt_restart_count() -> u64 {
    crate::restart_count()
}

/// A C hook: gets the state and the user pointer; a checkpoint hook that
/// returns non-zero aborts the checkpoint.
pub type SelfckptHookFn = extern "C" fn(state: c_int, user: *mut c_void) -> c_int;

struct CHook {
    f: SelfckptHookFn,
    user: *mut c_void,
}
// SAFETY: the header documents that hooks run on the checkpoint thread and
// that the user pointer must stay valid and usable from there.
unsafe impl Send for CHook {}
// SAFETY: as above; the hook is only called, never mutated.
unsafe impl Sync for CHook {}

/// `when`: 0 before a checkpoint, 1 after it (continue), 2 after a restart.
pub const SELFCKPT_HOOK_CHECKPOINT: c_int = 0;
pub const SELFCKPT_HOOK_CONTINUE: c_int = 1;
pub const SELFCKPT_HOOK_RESTART: c_int = 2;

/// Registers a hook. Returns 0, or -1 for a bad `when` or a NULL function.
#[no_mangle]
pub extern "C" fn selfckpt_register_hook(
    when: c_int,
    f: Option<SelfckptHookFn>,
    user: *mut c_void,
) -> c_int {
    guard(-1, || {
        let f = f.ok_or("selfckpt_register_hook: NULL function")?;
        let when = match when {
            SELFCKPT_HOOK_CHECKPOINT => When::Checkpoint,
            SELFCKPT_HOOK_CONTINUE => When::Continue,
            SELFCKPT_HOOK_RESTART => When::Restart,
            w => return Err(format!("selfckpt_register_hook: bad 'when' {w}")),
        };
        let h = CHook { f, user };
        crate::hooks::register(when, move |state| {
            let h = &h;
            match (h.f)(state as c_int, h.user) {
                0 => Ok(()),
                rc => Err(HookError(format!("C hook returned {rc}"))),
            }
        });
        Ok(0)
    })
}

/// The last failure on this thread, as text ("" if none). The pointer stays
/// valid until the next selfckpt call on this thread.
#[no_mangle]
pub extern "C" fn selfckpt_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}
