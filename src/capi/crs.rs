//! The C ABI of the CRS module (`include/selfckpt_crs.h`): the snapshot
//! descriptor (allocated and freed here), `selfckpt_crs_query` and the
//! module's functions, each a thin shell over [`crate::crs`].
//!
//! A snapshot the caller holds is a `struct selfckpt_snapshot` whose
//! strings point into a Rust-owned [`Owned`] behind `internal`; every
//! snapshot this library made is listed in `LIVE`, so a pointer that is
//! not one of them (another component's, a freed one) is refused without
//! being followed further than its `component` field.
//!
//! C programs have no Rust logger: the query and the snapshot
//! constructors install selfckpt's (warnings on stderr, `SELFCKPT_LOG`).
//!
//! Must never: unwind across the boundary, follow `internal` of a
//! snapshot that is not in `LIVE`, or leave the caller's string pointers
//! dangling except where the header says (refilled or freed snapshot).

use super::{guard, set_error};
use crate::crs::{CrsComponent, CrsState, SelfckptCrs, Snapshot, COMPONENT};
use core::ffi::{c_char, c_int, c_void};
use std::ffi::{CStr, CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

/// `struct selfckpt_snapshot` (version 1).
#[repr(C)]
pub struct SelfckptSnapshot {
    pub struct_size: u32,
    pub version: u32,
    pub component: *const c_char,
    pub reference: *const c_char,
    pub local_location: *const c_char,
    pub remote_location: *const c_char,
    pub cold_start: c_int,
    pub reserved: c_int,
    pub internal: *mut c_void,
}

/// Version of `struct selfckpt_snapshot` this library fills.
pub const SELFCKPT_SNAPSHOT_VERSION: u32 = 1;
/// Version of `struct selfckpt_crs_module`.
pub const SELFCKPT_CRS_MODULE_VERSION: u32 = 1;

static COMPONENT_C: &CStr = c"selfckpt";

/// What a snapshot owns: the Rust snapshot and the strings handed out.
struct Owned {
    snap: Snapshot,
    strings: [Option<CString>; 3],
}

/// Addresses of the snapshots this library made and did not free yet.
static LIVE: Mutex<Vec<usize>> = Mutex::new(Vec::new());

fn cstring(p: &Path) -> Option<CString> {
    CString::new(p.as_os_str().as_bytes()).ok()
}

fn path_arg<'a>(p: *const c_char, what: &str) -> Result<&'a Path, String> {
    if p.is_null() {
        return Err(format!("{what} is NULL"));
    }
    // SAFETY: the header asks for a NUL-terminated string.
    let s = unsafe { CStr::from_ptr(p) };
    if s.to_bytes().is_empty() {
        return Err(format!("{what} is empty"));
    }
    Ok(Path::new(OsStr::from_bytes(s.to_bytes())))
}

/// Makes a C snapshot around `snap`.
fn publish_new(snap: Snapshot) -> *mut SelfckptSnapshot {
    let owned = Box::into_raw(Box::new(Owned {
        snap,
        strings: [None, None, None],
    }));
    let c = Box::into_raw(Box::new(SelfckptSnapshot {
        struct_size: core::mem::size_of::<SelfckptSnapshot>() as u32,
        version: SELFCKPT_SNAPSHOT_VERSION,
        component: COMPONENT_C.as_ptr(),
        reference: core::ptr::null(),
        local_location: core::ptr::null(),
        remote_location: core::ptr::null(),
        cold_start: 0,
        reserved: 0,
        internal: owned.cast(),
    }));
    if let Ok(mut live) = LIVE.lock() {
        live.push(c as usize);
    }
    // SAFETY: both were just allocated here.
    unsafe { publish(&mut *c, &mut *owned) };
    c
}

/// Copies the Rust snapshot's fields into the C struct.
fn publish(c: &mut SelfckptSnapshot, o: &mut Owned) {
    o.strings = [
        o.snap.reference().and_then(|r| CString::new(r).ok()),
        o.snap.local_location().and_then(cstring),
        o.snap.remote_location().as_deref().and_then(cstring),
    ];
    let ptr = |s: &Option<CString>| s.as_ref().map_or(core::ptr::null(), |s| s.as_ptr());
    c.component = COMPONENT_C.as_ptr();
    c.reference = ptr(&o.strings[0]);
    c.local_location = ptr(&o.strings[1]);
    c.remote_location = ptr(&o.strings[2]);
    c.cold_start = o.snap.cold_start() as c_int;
}

/// The snapshot behind `p`, checked to be one of ours.
fn resolve<'a>(
    p: *mut SelfckptSnapshot,
    what: &str,
) -> Result<(&'a mut SelfckptSnapshot, &'a mut Owned), String> {
    if p.is_null() {
        return Err(format!("{what}: the snapshot is NULL"));
    }
    let ours = LIVE.lock().is_ok_and(|l| l.contains(&(p as usize)));
    // SAFETY: the header asks for a pointer to a struct selfckpt_snapshot;
    // for one that is not ours only `component` is read.
    let c = unsafe { &mut *p };
    if !c.component.is_null() {
        // SAFETY: as above, a NUL-terminated component name.
        let name = unsafe { CStr::from_ptr(c.component) };
        if name.to_bytes() != COMPONENT.as_bytes() {
            return Err(format!(
                "{what}: the snapshot belongs to component '{}', not '{COMPONENT}'",
                name.to_string_lossy()
            ));
        }
    }
    if !ours || c.internal.is_null() {
        return Err(format!(
            "{what}: not a snapshot made by selfckpt_snapshot_new or \
             selfckpt_snapshot_from_location (or it was freed)"
        ));
    }
    // SAFETY: `internal` of a live snapshot of ours is its Owned.
    let o = unsafe { &mut *c.internal.cast::<Owned>() };
    Ok((c, o))
}

/// A new, empty snapshot (NULL only if memory runs out).
#[no_mangle]
pub extern "C" fn selfckpt_snapshot_new() -> *mut SelfckptSnapshot {
    guard(core::ptr::null_mut(), || {
        crate::logger::init();
        Ok(publish_new(Snapshot::new()))
    })
}

/// A snapshot rebuilt from the files (cold start), or NULL.
///
/// # Safety
/// `local` and `remote` (may be NULL) must be NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn selfckpt_snapshot_from_location(
    local: *const c_char,
    remote: *const c_char,
) -> *mut SelfckptSnapshot {
    guard(core::ptr::null_mut(), || {
        crate::logger::init();
        let l = path_arg(local, "selfckpt_snapshot_from_location: local location")?;
        let r = if remote.is_null() {
            None
        } else {
            Some(path_arg(
                remote,
                "selfckpt_snapshot_from_location: remote location",
            )?)
        };
        let s = Snapshot::from_location(l, r).map_err(|e| e.to_string())?;
        Ok(publish_new(s))
    })
}

/// Frees a snapshot (NULL: nothing).
///
/// # Safety
/// `s` must be NULL or a snapshot of this library not freed yet.
#[no_mangle]
pub unsafe extern "C" fn selfckpt_snapshot_free(s: *mut SelfckptSnapshot) {
    guard((), || {
        if s.is_null() {
            return Ok(());
        }
        resolve(s, "selfckpt_snapshot_free")?;
        if let Ok(mut live) = LIVE.lock() {
            live.retain(|&p| p != s as usize);
        }
        // SAFETY: a live snapshot of ours: both boxes were made by
        // publish_new and are dropped once (it left LIVE above).
        unsafe {
            let c = Box::from_raw(s);
            drop(Box::from_raw(c.internal.cast::<Owned>()));
        }
        Ok(())
    })
}

/// Sets (or, with NULL, clears) the directory each image is also copied to.
///
/// # Safety
/// `s`: a snapshot of this library; `dir`: NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn selfckpt_snapshot_set_remote(
    s: *mut SelfckptSnapshot,
    dir: *const c_char,
) -> c_int {
    guard(-1, || {
        let (c, o) = resolve(s, "selfckpt_snapshot_set_remote")?;
        let d = if dir.is_null() {
            None
        } else {
            Some(path_arg(dir, "selfckpt_snapshot_set_remote: directory")?)
        };
        o.snap.set_remote_dir(d);
        publish(c, o);
        Ok(0)
    })
}

/// Waits for the remote copy: 0 once durable, -1 failed / none / timeout.
///
/// # Safety
/// `s`: a snapshot of this library.
#[no_mangle]
pub unsafe extern "C" fn selfckpt_snapshot_wait_remote(
    s: *mut SelfckptSnapshot,
    timeout_ms: c_int,
) -> c_int {
    guard(-1, || {
        let (_, o) = resolve(s, "selfckpt_snapshot_wait_remote")?;
        let t = if timeout_ms < 0 {
            Duration::MAX
        } else {
            Duration::from_millis(timeout_ms as u64)
        };
        o.snap.wait_remote(t).map_err(|e| e.to_string())?;
        Ok(0)
    })
}

/// `struct selfckpt_crs_module`.
#[repr(C)]
pub struct SelfckptCrsModule {
    pub struct_size: u32,
    pub version: u32,
    pub component: *const c_char,
    pub init: extern "C" fn() -> c_int,
    pub finalize: extern "C" fn() -> c_int,
    pub checkpoint: unsafe extern "C" fn(libc::pid_t, *mut SelfckptSnapshot, *mut c_int) -> c_int,
    pub restart: unsafe extern "C" fn(*mut SelfckptSnapshot, c_int, *mut libc::pid_t) -> c_int,
    pub disable_checkpoint: extern "C" fn() -> c_int,
    pub enable_checkpoint: extern "C" fn() -> c_int,
}

struct ModuleCell(SelfckptCrsModule);
// SAFETY: immutable; `component` points to a static string.
unsafe impl Sync for ModuleCell {}

static MODULE: ModuleCell = ModuleCell(SelfckptCrsModule {
    struct_size: core::mem::size_of::<SelfckptCrsModule>() as u32,
    version: SELFCKPT_CRS_MODULE_VERSION,
    component: c"selfckpt".as_ptr(),
    init: crs_init,
    finalize: crs_finalize,
    checkpoint: crs_checkpoint,
    restart: crs_restart,
    disable_checkpoint: crs_disable,
    enable_checkpoint: crs_enable,
});

fn status(r: Result<(), crate::crs::CrsError>) -> Result<c_int, String> {
    r.map(|()| 0).map_err(|e| e.to_string())
}

extern "C" fn crs_init() -> c_int {
    guard(-1, || status(SelfckptCrs.init()))
}

extern "C" fn crs_finalize() -> c_int {
    guard(-1, || status(SelfckptCrs.finalize()))
}

extern "C" fn crs_disable() -> c_int {
    guard(-1, || status(SelfckptCrs.disable_checkpoint()))
}

extern "C" fn crs_enable() -> c_int {
    guard(-1, || status(SelfckptCrs.enable_checkpoint()))
}

/// # Safety
/// See the header: `snapshot` one of ours, `state` writable.
unsafe extern "C" fn crs_checkpoint(
    pid: libc::pid_t,
    snapshot: *mut SelfckptSnapshot,
    state: *mut c_int,
) -> c_int {
    guard(-1, || {
        if state.is_null() {
            return Err("checkpoint: the state pointer is NULL".into());
        }
        // SAFETY: checked non-NULL; the header asks for a writable int.
        unsafe { state.write(CrsState::Error as c_int) };
        if pid < 0 {
            return Err(format!("checkpoint: {pid} is not a process id"));
        }
        let (c, o) = resolve(snapshot, "checkpoint")?;
        let r = SelfckptCrs.checkpoint(pid, &mut o.snap);
        publish(c, o);
        let st = r.map_err(|e| e.to_string())?;
        if st == CrsState::Deferred {
            set_error(crate::Error::Deferred.to_string());
        }
        // SAFETY: as above.
        unsafe { state.write(st as c_int) };
        Ok(0)
    })
}

/// # Safety
/// See the header: `snapshot` one of ours, `child_pid` writable when
/// `spawn_child`.
unsafe extern "C" fn crs_restart(
    snapshot: *mut SelfckptSnapshot,
    spawn_child: c_int,
    child_pid: *mut libc::pid_t,
) -> c_int {
    guard(-1, || {
        if spawn_child != 0 && child_pid.is_null() {
            return Err("restart: spawn_child is set but child_pid is NULL".into());
        }
        let (_, o) = resolve(snapshot, "restart")?;
        if spawn_child == 0 {
            return Err(format!("restart: {}", SelfckptCrs.restart_replace(&o.snap)));
        }
        let pid = SelfckptCrs
            .restart_child(&o.snap)
            .map_err(|e| format!("restart: {e}"))?;
        // SAFETY: checked non-NULL; the header asks for a writable pid_t.
        unsafe { child_pid.write(pid) };
        Ok(0)
    })
}

/// The module, or NULL when selfckpt cannot run here; `*priority` 0..100.
///
/// # Safety
/// `priority` must point to a writable int.
#[no_mangle]
pub unsafe extern "C" fn selfckpt_crs_query(priority: *mut c_int) -> *const SelfckptCrsModule {
    guard(core::ptr::null(), || {
        crate::logger::init();
        if priority.is_null() {
            return Err("selfckpt_crs_query: the priority pointer is NULL".into());
        }
        // SAFETY: checked non-NULL; the header asks for a writable int.
        unsafe { priority.write(0) };
        let p = crate::crs::query().map_err(|e| e.to_string())?;
        // SAFETY: as above.
        unsafe { priority.write(p.value) };
        set_error(p.reasons.join("; "));
        Ok(&MODULE.0 as *const SelfckptCrsModule)
    })
}
