//! `semget` and `msgget`: glibc's, and the id each returns noted in
//! `kstate::sysvipc`'s table, which the capture reads (nothing in
//! `/proc/self` shows which sets and queues a process uses).
//!
//! Must never: change what the call returns, or allocate (atomics only).

use super::next;
use crate::kstate::sysvipc::{note, IpcKind};
use libc::c_int;

/// `semget(2)`.
///
/// # Safety
/// As for glibc's.
#[no_mangle]
pub unsafe extern "C" fn semget(key: libc::key_t, nsems: c_int, flags: c_int) -> c_int {
    let id = next::semget(key, nsems, flags);
    note(IpcKind::Sem, id, Some(key));
    id
}

/// `msgget(2)`.
///
/// # Safety
/// As for glibc's.
#[no_mangle]
pub unsafe extern "C" fn msgget(key: libc::key_t, flags: c_int) -> c_int {
    let id = next::msgget(key, flags);
    note(IpcKind::Msg, id, Some(key));
    id
}
