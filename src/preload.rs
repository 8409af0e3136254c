//! LD_PRELOAD mode: a constructor (`.init_array`) that installs the
//! checkpointer in an unmodified program started by `selfckpt run`.
//!
//! `selfckpt run` sets `LD_PRELOAD=libselfckpt.so`, `SELFCKPT_PRELOAD=1`,
//! `SELFCKPT_PID=<its own pid, 10 digits>` and the `SELFCKPT_*` settings,
//! then execs the program (same PID). The constructor installs only when
//! all of these hold:
//!
//! * `SELFCKPT_PRELOAD=1` (a program that merely links the library, or
//!   links it statically, is left alone);
//! * this copy of the code lives in a shared object, not in the main
//!   program (a Rust program that links the crate installs itself);
//! * the process is the one `run` started (`SELFCKPT_PID`), which also
//!   holds after it execs another program (wrapper scripts); with
//!   `SELFCKPT_CHILDREN=1` (what `run` sets unless `--no-tree`) every
//!   other process that inherits the environment installs too, as a
//!   member of the run's process tree (`crate::tree`: its images go into
//!   the tree's image sets); forked children (fork without exec) become
//!   members through the tree's fork handler.
//!
//! The process `run` started marks the run ended in `DIR/run.json`
//! (`imagedir::mark_ended`) when it exits by itself, so that the next
//! `selfckpt run` starts fresh: through an `atexit` handler (`exit`) and
//! through this library's `_exit`, which interposes libc's (shells such as
//! dash end with `_exit`) and then makes the `exit_group` system call. A
//! signal, a crash or the checkpoint-then-exit (which calls `exit_group`
//! itself) leave the run resumable; a forked child is not the run (its pid
//! differs), and for it `_exit` does nothing else (no allocation: it may
//! run in a `vfork` child).
//!
//! Must never: panic or unwind out of the constructor (it runs before
//! `main` of a foreign program), or install twice.

use crate::capture::sys;

#[used]
#[link_section = ".init_array"]
static PRELOAD_INIT: extern "C" fn() = preload_init;

extern "C" fn preload_init() {
    // Before anything can call a wrapper from a signal handler.
    crate::interpose::next::resolve_all();
    if in_shared_object() {
        close_alignment_gap();
    }
    let _ = std::panic::catch_unwind(|| {
        if let Err(e) = install_if_asked() {
            eprintln!("selfckpt[{}]: not installed: {e}", sys::getpid());
        }
    });
}

/// The kernel places a file mapping of 2 MiB or more (this library, in a
/// debug build) at a 2 MiB-aligned address, which leaves a gap of free
/// address space just above it, among the loaded libraries. A program's
/// next fresh mapping would land in that gap instead of below its lowest
/// mapping, as it does without this library: a `MAP_GROWSDOWN` mapping
/// placed there could not grow (an accessible mapping lies within the
/// stack guard gap below it), and the program would die of SIGSEGV. The
/// gap is filled with an inaccessible reservation (no memory, and the
/// guard gap does not count it), so that the program's address space
/// looks as it would without us.
fn close_alignment_gap() {
    let Some((_, end)) = our_extent() else {
        return;
    };
    let Ok(maps) = std::fs::read("/proc/self/maps") else {
        return;
    };
    let next = crate::capture::maps::MapsParser::new(&maps)
        .flatten()
        .map(|m| m.start as usize)
        .filter(|&lo| lo >= end)
        .min();
    let Some(next) = next else {
        return;
    };
    const PMD: usize = 2 << 20;
    let gap = next - end;
    if gap == 0 || gap >= PMD {
        return;
    }
    // SAFETY: maps fresh inaccessible memory at an address range that
    // /proc/self/maps shows free; MAP_FIXED_NOREPLACE fails rather than
    // replace anything mapped there meanwhile.
    unsafe {
        libc::mmap(
            end as *mut libc::c_void,
            gap,
            libc::PROT_NONE,
            libc::MAP_PRIVATE
                | libc::MAP_ANONYMOUS
                | libc::MAP_NORESERVE
                | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        );
    }
}

/// The address range this library's loadable segments occupy (from its
/// program headers), page-rounded.
fn our_extent() -> Option<(usize, usize)> {
    struct Found {
        base: usize,
        end: usize,
    }
    unsafe extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: the loader passes a valid info struct for the duration
        // of the call, with dlpi_phnum headers at dlpi_phdr; data is the
        // Found we passed.
        unsafe {
            let found = &mut *(data as *mut Found);
            let info = &*info;
            if info.dlpi_addr as usize != found.base {
                return 0;
            }
            for i in 0..info.dlpi_phnum as usize {
                let ph = &*info.dlpi_phdr.add(i);
                if ph.p_type == libc::PT_LOAD {
                    let top = found.base + (ph.p_vaddr + ph.p_memsz) as usize;
                    found.end = found.end.max(top);
                }
            }
            1
        }
    }
    let base = loader_info(preload_init as *const libc::c_void)?.dli_fbase as usize;
    let mut found = Found { base, end: 0 };
    // SAFETY: the callback only reads what the loader passes and writes
    // the Found it is given, which outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(each), &mut found as *mut Found as *mut libc::c_void) };
    let page = sys::page_size();
    (found.end > base).then(|| (base, found.end.div_ceil(page) * page))
}

/// Width of `SELFCKPT_PID`'s value, so a restarted process can rewrite it
/// in place.
pub const PID_WIDTH: usize = 10;

fn install_if_asked() -> Result<(), crate::Error> {
    let asked = crate::settings::preload_request()?;
    if !asked.asked || !in_shared_object() {
        return Ok(());
    }
    if crate::is_installed() {
        return Ok(());
    }
    let pid = sys::getpid();
    let ours = asked.pid == Some(pid);
    if !ours && !asked.children {
        return Ok(());
    }
    crate::logger::init();
    let b = crate::Builder::from_env()?;
    let installed = b.install();
    // `selfckpt run` blocked the trigger signals so that none could kill
    // the program before the handlers were in place: let them through now
    // (on failure too: the program then runs as it would without us).
    // This is the main thread, whose mask the program's threads inherit.
    sys::change_signal_mask(libc::SIG_UNBLOCK, &asked.unblock);
    let ckpt = installed?;
    let instance = crate::settings::instance().unwrap_or_default();
    if ours {
        RUN_PID.store(pid, core::sync::atomic::Ordering::Release);
    }
    // A member keeps them too: it may take the root's place (`take_run`).
    if RUN
        .set((ckpt.dir().to_path_buf(), instance.clone()))
        .is_ok()
    {
        // SAFETY: registers a plain extern "C" function.
        unsafe { libc::atexit(run_ends) };
    }
    if asked.children {
        // SAFETY: registers a plain extern "C" function.
        unsafe { libc::atexit(exit_held) };
        // Programs this one starts join the tree whatever environment it
        // gives them.
        if let Some(lib) = our_path() {
            crate::interpose::exec::arm(&lib, crate::settings::passed_on());
        }
    }
    if ours {
        crate::tree::start_root(&instance, asked.children);
    } else {
        crate::tree::start_member(&instance);
    }
    log::debug!("installed by LD_PRELOAD");
    Ok(())
}

/// The run's directory and instance token (for [`run_ends`]).
static RUN: std::sync::OnceLock<(std::path::PathBuf, String)> = std::sync::OnceLock::new();

/// The pid of the process `run` started (0: not in `run` mode).
static RUN_PID: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// libc's `_exit`, interposed: the run ended (see the module header).
///
/// # Safety
/// As libc's `_exit`: ends the process.
#[no_mangle]
pub unsafe extern "C" fn _exit(status: libc::c_int) -> ! {
    crate::tree::hold::before_exit();
    let run = RUN_PID.load(core::sync::atomic::Ordering::Acquire);
    if run != 0 && run == sys::getpid() {
        run_ends();
    }
    exit_group(status)
}

/// In a forked child: it is not the process `run` started (its copy of
/// the parent's memory says so until now).
pub(crate) fn forget_run() {
    RUN_PID.store(0, core::sync::atomic::Ordering::Release);
}

/// Ends the process now (`exit_group`), without marking the run ended.
pub(crate) fn exit_group(status: libc::c_int) -> ! {
    loop {
        // SAFETY: exit_group never returns; no memory is passed.
        unsafe { libc::syscall(libc::SYS_exit_group, status as libc::c_long) };
    }
}

/// At exit of a member of a tree: waits while the tree is being
/// checkpointed (no member exits between the cut and the resume).
extern "C" fn exit_held() {
    crate::tree::hold::before_exit();
}

/// At exit of the run's root (the process `run` started, or the member
/// that took its place): the job ended, unless a member takes the root's
/// place in turn ([`take_run`]).
extern "C" fn run_ends() {
    let _ = std::panic::catch_unwind(|| {
        let ours = RUN_PID.load(core::sync::atomic::Ordering::Acquire) == sys::getpid();
        if let (true, Some((dir, instance))) = (ours, RUN.get()) {
            crate::imagedir::mark_ended(dir, instance);
        }
    });
}

/// A member took the place of the run's root, which is gone. If the root
/// exited (it recorded the run's end), the run goes on: its end is taken
/// back, and it ends when this process exits. If it did not (killed by a
/// signal), the run did not end and this process's exit does not end it
/// either: the next `selfckpt run` resumes the job, as after any kill.
pub(crate) fn take_run() {
    name_run_pid();
    if let Some((dir, instance)) = RUN.get() {
        if crate::imagedir::unmark_ended(dir, instance) {
            RUN_PID.store(sys::getpid(), core::sync::atomic::Ordering::Release);
        }
    }
}

/// True if this function's code is in a shared object rather than in the
/// main program.
fn in_shared_object() -> bool {
    let Some(ours) = loader_info(preload_init as *const libc::c_void) else {
        return false;
    };
    // AT_PHDR points into the main program's image.
    // SAFETY: getauxval has no preconditions.
    let phdr = unsafe { libc::getauxval(libc::AT_PHDR) } as *const libc::c_void;
    loader_info(phdr).is_none_or(|main| ours.dli_fbase != main.dli_fbase)
}

/// What the loader knows of the object holding `addr` (`dladdr`).
fn loader_info(addr: *const libc::c_void) -> Option<libc::Dl_info> {
    // SAFETY: dladdr only reads the loader's tables into a struct we own.
    unsafe {
        let mut info: libc::Dl_info = core::mem::zeroed();
        (libc::dladdr(addr, &mut info) != 0).then_some(info)
    }
}

/// This library's path as the loader found it (what LD_PRELOAD named).
fn our_path() -> Option<Vec<u8>> {
    let ours = loader_info(preload_init as *const libc::c_void)?;
    if ours.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dli_fname, when set, is a NUL-terminated string the loader
    // keeps.
    Some(
        unsafe { core::ffi::CStr::from_ptr(ours.dli_fname) }
            .to_bytes()
            .to_vec(),
    )
}

extern "C" {
    static mut environ: *mut *mut libc::c_char;
}

/// In a restarted process of `selfckpt run`: rewrites `SELFCKPT_PID` in
/// place to the new PID, so that a later exec in this process installs
/// again (no allocation: the string keeps its length).
pub(crate) fn after_restart() {
    if RUN_PID.load(core::sync::atomic::Ordering::Acquire) == 0 {
        // A member of a tree: SELFCKPT_PID names the tree's root.
        return;
    }
    RUN_PID.store(sys::getpid(), core::sync::atomic::Ordering::Release);
    name_run_pid();
}

/// Rewrites `SELFCKPT_PID` in place to this process's pid (the run's
/// process now).
fn name_run_pid() {
    let key = b"SELFCKPT_PID=";
    let mut digits = [b'0'; PID_WIDTH];
    let mut v = sys::getpid();
    for d in digits.iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
    // SAFETY: environ is a NULL-terminated array of NUL-terminated strings;
    // we only overwrite the PID_WIDTH digit bytes of our own variable, whose
    // length we checked first.
    unsafe {
        let mut p = *core::ptr::addr_of!(environ);
        if p.is_null() {
            return;
        }
        while !(*p).is_null() {
            let s = core::ffi::CStr::from_ptr(*p).to_bytes();
            if s.len() == key.len() + PID_WIDTH && s.starts_with(key) {
                let dst = (*p).add(key.len()) as *mut u8;
                core::ptr::copy_nonoverlapping(digits.as_ptr(), dst, PID_WIDTH);
                return;
            }
            p = p.add(1);
        }
    }
}
