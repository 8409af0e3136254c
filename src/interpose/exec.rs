//! `execve` and its relatives, and `posix_spawn`: a process of a
//! `selfckpt run` tree that starts a program with an environment of its
//! own (a shell's `env -i`, a program that builds its child's `envp` from
//! scratch, `clearenv()` before `execvp`) still hands it what makes it a
//! member of the tree: `LD_PRELOAD` naming this library, and the
//! `SELFCKPT_*` variables `run` set. Without this the new program would run
//! uncovered, and the tree's checkpoint would silently miss it.
//!
//! Only what is missing is added: a variable the environment has keeps its
//! value (a program may mean it), and `LD_PRELOAD` gets this library in
//! front of what it names (the loader reports names it cannot load, as it
//! would have without selfckpt). Nothing is added outside a tree (`run
//! --no-tree`, or a program that links the library itself): [`arm`] is
//! called only by the LD_PRELOAD constructor of a tree member.
//!
//! `execl`, `execlp` and `execle` are variadic and glibc does not route
//! them through `execve`'s symbol; `system` and `popen` spawn through
//! glibc's internal `posix_spawn`: those pass the environment unchanged
//! (the README says so).
//!
//! Must never: allocate or take a lock on the way to the exec (it may run
//! in a `vfork` child, which shares the parent's heap): the new
//! environment is built in a fresh anonymous mapping, unmapped again if
//! the exec fails, with errno kept.

use super::next;
use libc::{c_char, c_int, pid_t};
use std::ffi::CString;
use std::sync::OnceLock;

/// What a new program of the tree must find in its environment.
struct Carry {
    /// `LD_PRELOAD=<this library>` and its value part.
    preload: CString,
    lib: CString,
    /// `NAME=value` of every `SELFCKPT_*` variable set at install.
    vars: Vec<CString>,
}

static CARRY: OnceLock<Carry> = OnceLock::new();

/// Turns the wrappers on: `lib` is this library's path as the loader
/// found it; `vars` the run's settings (`settings::passed_on`).
pub fn arm(lib: &[u8], vars: Vec<(String, std::ffi::OsString)>) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(libc_path) = CString::new(lib) else {
        return;
    };
    let mut preload = b"LD_PRELOAD=".to_vec();
    preload.extend_from_slice(lib);
    let vars = vars
        .into_iter()
        .filter_map(|(name, value)| {
            let mut kv = name.into_bytes();
            kv.push(b'=');
            kv.extend_from_slice(value.as_bytes());
            CString::new(kv).ok()
        })
        .collect();
    let _ = CARRY.set(Carry {
        preload: CString::new(preload).unwrap_or_default(),
        lib: libc_path,
        vars,
    });
}

extern "C" {
    static mut environ: *const *const c_char;
}

/// The bytes of a NUL-terminated string (without the NUL).
///
/// # Safety
/// `s` points to a NUL-terminated string that outlives the result.
unsafe fn bytes<'a>(s: *const c_char) -> &'a [u8] {
    core::slice::from_raw_parts(s.cast(), libc::strlen(s))
}

/// Whether `list` (an `LD_PRELOAD` value: names split by `:` or spaces)
/// names `lib`.
fn names(list: &[u8], lib: &[u8]) -> bool {
    list.split(|&b| b == b':' || b == b' ').any(|n| n == lib)
}

/// A new environment in its own mapping, unmapped on drop (errno kept).
struct Built {
    at: *mut libc::c_void,
    len: usize,
}

impl Drop for Built {
    fn drop(&mut self) {
        // SAFETY: errno is thread-local; the mapping is ours, unused now.
        unsafe {
            let e = *libc::__errno_location();
            libc::munmap(self.at, self.len);
            *libc::__errno_location() = e;
        }
    }
}

/// `envp` with what the tree needs added, or None when it has it all
/// (or the wrappers are off, or there is no room).
///
/// # Safety
/// `envp` is null or a null-terminated array of NUL-terminated strings.
unsafe fn completed(envp: *const *const c_char) -> Option<Built> {
    completed_for(CARRY.get()?, envp)
}

/// [`completed`] for what `carry` asks.
///
/// # Safety
/// As [`completed`].
unsafe fn completed_for(carry: &Carry, envp: *const *const c_char) -> Option<Built> {
    const KEY: &[u8] = b"LD_PRELOAD=";
    let lib = carry.lib.as_bytes();
    let mut missing = [true; 64];
    let nvars = carry.vars.len().min(missing.len());
    let mut n = 0usize;
    // The first LD_PRELOAD entry (the one getenv finds).
    let mut old_preload: Option<usize> = None;
    while !envp.is_null() && !(*envp.add(n)).is_null() {
        let e = bytes(*envp.add(n));
        if old_preload.is_none() && e.starts_with(KEY) {
            old_preload = Some(n);
        }
        for (i, kv) in carry.vars[..nvars].iter().enumerate() {
            let kv = kv.as_bytes();
            let name_len = kv
                .iter()
                .position(|&b| b == b'=')
                .map_or(kv.len(), |p| p + 1);
            if e.starts_with(&kv[..name_len]) {
                missing[i] = false;
            }
        }
        n += 1;
    }
    let old_value = old_preload.map_or(&[][..], |i| &bytes(*envp.add(i))[KEY.len()..]);
    let preload_ok = old_preload.is_some() && names(old_value, lib);
    if preload_ok && !missing[..nvars].contains(&true) {
        return None;
    }
    // Room: every pointer (old ones, the variables, LD_PRELOAD, the null)
    // and the new LD_PRELOAD string.
    let ptrs = (n + nvars + 2) * core::mem::size_of::<*const c_char>();
    let text = carry.preload.as_bytes().len() + 1 + old_value.len() + 1;
    let len = ptrs + text;
    // SAFETY: a new private anonymous mapping; no memory of ours involved.
    let at = libc::mmap(
        core::ptr::null_mut(),
        len,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
        -1,
        0,
    );
    if at == libc::MAP_FAILED {
        return None;
    }
    let built = Built { at, len };
    let out = at.cast::<*const c_char>();
    let mut k = 0;
    for i in 0..n {
        if preload_ok || Some(i) != old_preload {
            *out.add(k) = *envp.add(i);
            k += 1;
        }
    }
    for (i, kv) in carry.vars[..nvars].iter().enumerate() {
        if missing[i] {
            *out.add(k) = kv.as_ptr();
            k += 1;
        }
    }
    if !preload_ok {
        // LD_PRELOAD=<lib>[:<what it named>], after the pointers.
        let s = at.cast::<u8>().add(ptrs);
        let p = carry.preload.as_bytes();
        core::ptr::copy_nonoverlapping(p.as_ptr(), s, p.len());
        let mut w = p.len();
        if !old_value.is_empty() {
            *s.add(w) = b':';
            w += 1;
            core::ptr::copy_nonoverlapping(old_value.as_ptr(), s.add(w), old_value.len());
            w += old_value.len();
        }
        *s.add(w) = 0;
        *out.add(k) = s.cast();
        k += 1;
    }
    *out.add(k) = core::ptr::null();
    Some(built)
}

/// Runs `f` with `envp` completed for the tree.
///
/// # Safety
/// As [`completed`].
unsafe fn with_env<R>(envp: *const *const c_char, f: impl FnOnce(*const *const c_char) -> R) -> R {
    match completed(envp) {
        Some(b) => {
            let r = f(b.at.cast());
            drop(b);
            r
        }
        None => f(envp),
    }
}

/// execve(2), with the tree's environment completed.
///
/// # Safety
/// As libc's.
#[no_mangle]
pub unsafe extern "C" fn execve(
    path: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    with_env(envp, |e| next::execve(path, argv, e))
}

/// execvpe(3), with the tree's environment completed.
///
/// # Safety
/// As libc's.
#[no_mangle]
pub unsafe extern "C" fn execvpe(
    file: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    with_env(envp, |e| next::execvpe(file, argv, e))
}

/// execv(3): execve with the process's environment.
///
/// # Safety
/// As libc's.
#[no_mangle]
pub unsafe extern "C" fn execv(path: *const c_char, argv: *const *const c_char) -> c_int {
    execve(path, argv, environ)
}

/// execvp(3): execvpe with the process's environment.
///
/// # Safety
/// As libc's.
#[no_mangle]
pub unsafe extern "C" fn execvp(file: *const c_char, argv: *const *const c_char) -> c_int {
    execvpe(file, argv, environ)
}

/// fexecve(3), with the tree's environment completed.
///
/// # Safety
/// As libc's.
#[no_mangle]
pub unsafe extern "C" fn fexecve(
    fd: c_int,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    with_env(envp, |e| next::fexecve(fd, argv, e))
}

/// execveat(2), with the tree's environment completed.
///
/// # Safety
/// As libc's.
#[no_mangle]
pub unsafe extern "C" fn execveat(
    dirfd: c_int,
    path: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
    flags: c_int,
) -> c_int {
    with_env(envp, |e| next::execveat(dirfd, path, argv, e, flags))
}

/// posix_spawn(3), with the tree's environment completed.
///
/// # Safety
/// As libc's.
#[no_mangle]
pub unsafe extern "C" fn posix_spawn(
    pid: *mut pid_t,
    path: *const c_char,
    actions: *const libc::posix_spawn_file_actions_t,
    attr: *const libc::posix_spawnattr_t,
    argv: *const *mut c_char,
    envp: *const *mut c_char,
) -> c_int {
    with_env(envp.cast(), |e| {
        next::posix_spawn(pid, path, actions, attr, argv, e.cast())
    })
}

/// posix_spawnp(3), with the tree's environment completed.
///
/// # Safety
/// As libc's.
#[no_mangle]
pub unsafe extern "C" fn posix_spawnp(
    pid: *mut pid_t,
    file: *const c_char,
    actions: *const libc::posix_spawn_file_actions_t,
    attr: *const libc::posix_spawnattr_t,
    argv: *const *mut c_char,
    envp: *const *mut c_char,
) -> c_int {
    with_env(envp.cast(), |e| {
        next::posix_spawnp(pid, file, actions, attr, argv, e.cast())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings;

    #[test]
    fn a_preload_list_names_the_library_by_its_whole_path() {
        assert!(names(b"/a/libselfckpt.so", b"/a/libselfckpt.so"));
        assert!(names(b"x.so:/a/libselfckpt.so y.so", b"/a/libselfckpt.so"));
        assert!(!names(b"/a/libselfckpt.so.1", b"/a/libselfckpt.so"));
        assert!(!names(b"", b"/a/libselfckpt.so"));
    }

    /// The environment `completed_for` gives for `env`, as strings.
    fn complete(env: &[&str]) -> Option<Vec<String>> {
        let carry = Carry {
            preload: CString::new("LD_PRELOAD=/l/libselfckpt.so").unwrap(),
            lib: CString::new("/l/libselfckpt.so").unwrap(),
            vars: vec![
                CString::new(format!("{}=1", settings::CHILDREN.name)).unwrap(),
                CString::new(format!("{}=/d", settings::DIR.name)).unwrap(),
            ],
        };
        let owned: Vec<CString> = env.iter().map(|e| CString::new(*e).unwrap()).collect();
        let mut ptrs: Vec<*const c_char> = owned.iter().map(|c| c.as_ptr()).collect();
        ptrs.push(core::ptr::null());
        // SAFETY: a null-terminated array of strings that outlive the call.
        let built = unsafe { completed_for(&carry, ptrs.as_ptr()) }?;
        let mut out = Vec::new();
        // SAFETY: the built array is null-terminated and alive until drop.
        unsafe {
            let a = built.at.cast::<*const c_char>();
            let mut i = 0;
            while !(*a.add(i)).is_null() {
                out.push(String::from_utf8(bytes(*a.add(i)).to_vec()).unwrap());
                i += 1;
            }
        }
        Some(out)
    }

    #[test]
    fn only_what_is_missing_is_added_and_a_value_the_program_set_stays() {
        let (children, dir) = (settings::CHILDREN.name, settings::DIR.name);
        let (c1, d) = (format!("{children}=1"), format!("{dir}=/d"));
        let mine = format!("{dir}=/mine");
        let all = ["A=B", "LD_PRELOAD=x.so:/l/libselfckpt.so", &c1, &mine];
        assert_eq!(complete(&all), None);
        assert_eq!(
            complete(&["A=B", "LD_PRELOAD=taco", &mine]).unwrap(),
            ["A=B", &mine, &c1, "LD_PRELOAD=/l/libselfckpt.so:taco"]
        );
        assert_eq!(
            complete(&[]).unwrap(),
            [&c1, &d, "LD_PRELOAD=/l/libselfckpt.so"]
        );
        let kept = complete(&["LD_PRELOAD=/l/libselfckpt.so", "Q=1"]).unwrap();
        assert_eq!(kept, ["LD_PRELOAD=/l/libselfckpt.so", "Q=1", &c1, &d]);
    }
}
