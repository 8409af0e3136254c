//! How a string taken from an image (a path, a host name, a thread name)
//! is shown on a terminal or in a log: printable UTF-8 as it is, every
//! other byte escaped, so that an image cannot move the cursor, change
//! colours or fake a line of output ("all checks passed") through a path
//! holding escape sequences or newlines.
//!
//! Never prints; never fails.

use std::fmt::Write;

/// `bytes` with every control character (C0, DEL, C1), backslash and
/// invalid UTF-8 byte escaped: `\n`, `\t`, `\\`, `\x1b`, `\u{9b}`.
pub fn shown(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                // C1 controls (U+0080..U+009F: CSI is U+009B) and the
                // bidirectional overrides that reorder what is shown.
                c if (0x80..0xa0).contains(&(c as u32))
                    || matches!(c as u32, 0x202a..=0x202e | 0x2066..=0x2069) =>
                {
                    let _ = write!(out, "\\u{{{:x}}}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::shown;

    #[test]
    fn escapes_what_a_terminal_would_act_on() {
        assert_eq!(shown(b"/tmp/plain file.txt"), "/tmp/plain file.txt");
        assert_eq!(shown("/tmp/caf\u{e9}".as_bytes()), "/tmp/caf\u{e9}");
        assert_eq!(
            shown(b"/x\n/y: OK all checks passed\x1b[2K\r"),
            "/x\\n/y: OK all checks passed\\x1b[2K\\r"
        );
        assert_eq!(shown(b"a\\b\x7f\xff\xc2\x9b"), "a\\\\b\\x7f\\xff\\u{9b}");
        assert_eq!(shown("\u{202e}gpj.exe".as_bytes()), "\\u{202e}gpj.exe");
    }
}
