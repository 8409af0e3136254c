//! The process's mm layout (code/data/brk/stack/args/env bounds) and umask,
//! read from /proc/self/stat and /proc/self/status into a caller buffer.
//! Runs while threads are suspended: must not allocate.

use super::KstateError;
use crate::capture::sys;
use crate::image::model::MmLayout;

/// Reads the umask from /proc/self/status ("Umask:" line).
pub fn read_umask(buf: &mut [u8]) -> Result<u32, KstateError> {
    let n =
        sys::read_file(b"/proc/thread-self/status\0", buf).map_err(|errno| KstateError::Read {
            what: "/proc/self/status",
            errno,
        })?;
    sys::field(&buf[..n], b"Umask:")
        .and_then(sys::parse_octal)
        .map(|v| v as u32)
        .ok_or(KstateError::Parse("Umask in /proc/self/status"))
}

/// Reads the mm layout from /proc/self/stat and the current brk.
pub fn read_layout(buf: &mut [u8]) -> Result<MmLayout, KstateError> {
    let n =
        sys::read_file(b"/proc/thread-self/stat\0", buf).map_err(|errno| KstateError::Read {
            what: "/proc/self/stat",
            errno,
        })?;
    let mut layout = parse_stat(&buf[..n]).ok_or(KstateError::Parse("/proc/self/stat"))?;
    // SAFETY: brk(0) only queries the current break.
    layout.brk = unsafe { libc::syscall(libc::SYS_brk, 0) } as u64;
    Ok(layout)
}

/// Parses the fields of /proc/<pid>/stat that make up the mm layout
/// (brk is not in the file: it is left 0).
pub fn parse_stat(text: &[u8]) -> Option<MmLayout> {
    // The command name may contain spaces and parentheses: fields start
    // after the last ')'.
    let close = text.iter().rposition(|&c| c == b')')?;
    let mut fields = [0u64; 52];
    let mut i = 3; // field 3 is the state letter, right after ") "
    for tok in text[close + 1..].split(|&c| c == b' ' || c == b'\n') {
        if tok.is_empty() {
            continue;
        }
        if i < fields.len() {
            fields[i] = sys::parse_u64(tok).map_or(0, |(v, _)| v);
        }
        i += 1;
    }
    if i < 52 {
        return None;
    }
    Some(MmLayout {
        start_code: fields[26],
        end_code: fields[27],
        start_stack: fields[28],
        start_data: fields[45],
        end_data: fields[46],
        start_brk: fields[47],
        brk: 0,
        arg_start: fields[48],
        arg_end: fields[49],
        env_start: fields[50],
        env_end: fields[51],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_of_this_process_is_ordered() {
        let mut buf = [0u8; 4096];
        let l = read_layout(&mut buf).unwrap();
        assert!(l.start_code < l.end_code, "{l:?}");
        assert!(l.start_brk <= l.brk, "{l:?}");
        assert!(l.arg_start < l.arg_end && l.env_start < l.env_end, "{l:?}");
        assert!(l.start_stack > l.end_code, "{l:?}");
    }

    #[test]
    fn stat_with_parenthesis_in_name_parses() {
        let mut line = b"42 (a) b) S".to_vec();
        for i in 4..=52 {
            line.extend_from_slice(format!(" {i}").as_bytes());
        }
        let l = parse_stat(&line).unwrap();
        assert_eq!((l.start_code, l.end_code, l.start_stack), (26, 27, 28));
        assert_eq!((l.start_data, l.env_end), (45, 51));
        assert!(parse_stat(b"1 (x) S 1 2").is_none());
    }

    #[test]
    fn umask_matches_the_syscall() {
        // SAFETY: umask read-and-restore in a test.
        let m = unsafe {
            let m = libc::umask(0o027);
            libc::umask(0o027);
            m
        };
        let mut buf = [0u8; 8192];
        assert_eq!(read_umask(&mut buf).unwrap(), 0o027);
        // SAFETY: restore the previous umask.
        unsafe { libc::umask(m) };
    }
}
