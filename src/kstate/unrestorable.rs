//! What the last capture found that cannot come back at restart (an
//! eventfd whose semaphore mode the kernel does not show, an epoll
//! registration whose descriptor number no longer names the registered
//! file, an epoll too large to capture), noted while the program's threads
//! are suspended and logged once they run again ([`log`]).
//!
//! The noting half ([`note`], [`clear`]) runs in the suspended world:
//! atomics in a fixed table, never an allocation. The image holds the same
//! facts (`inspect` shows them, restart refuses them): this table is only
//! for the checkpoint's log line.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

/// What is noted of one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// An eventfd whose semaphore mode is unknown.
    SemaphoreUnknown,
    /// An epoll whose fdinfo did not fit the capture's buffer.
    EpollTruncated,
    /// An epoll registration whose number was closed (`tfd` in the note).
    TfdClosed,
    /// An epoll registration whose number names another file.
    TfdOther,
}

const WHYS: [Why; 4] = [
    Why::SemaphoreUnknown,
    Why::EpollTruncated,
    Why::TfdClosed,
    Why::TfdOther,
];

/// Most notes kept (the image holds them all).
const MAX: usize = 32;
static COUNT: AtomicU32 = AtomicU32::new(0);
static NOTES: [AtomicU64; MAX] = [const { AtomicU64::new(0) }; MAX];

/// Forgets the notes of an earlier capture. No allocation.
pub fn clear() {
    COUNT.store(0, Ordering::Relaxed);
}

/// Notes one object (`tfd` for a registration, else 0). No allocation.
pub fn note(fd: i32, tfd: i32, why: Why) {
    let i = COUNT.fetch_add(1, Ordering::Relaxed) as usize;
    if i < MAX {
        let packed = ((fd as u32 as u64) << 32)
            | ((tfd as u32 as u64 & 0xff_ffff) << 8)
            | WHYS.iter().position(|w| *w == why).unwrap_or(0) as u64;
        NOTES[i].store(packed, Ordering::Relaxed);
    }
}

/// Longest sentence kept of a [`note_text`] (the image holds it whole).
const TEXT_MAX: usize = 240;
/// Marks a note whose words are in [`TEXTS`] (its low byte).
const TEXT_NOTE: u64 = 0xff;
static TEXTS: [[AtomicU8; TEXT_MAX]; MAX] = [const { [const { AtomicU8::new(0) }; TEXT_MAX] }; MAX];
static TEXT_LENS: [AtomicU32; MAX] = [const { AtomicU32::new(0) }; MAX];

/// Notes one object in words (`fd` -1 for none): what the kernel-object
/// capture halves write as a `NotRestorable` entry. No allocation.
pub fn note_text(fd: i32, text: &[u8]) {
    let i = COUNT.fetch_add(1, Ordering::Relaxed) as usize;
    if i < MAX {
        let n = text.len().min(TEXT_MAX);
        for (slot, b) in TEXTS[i].iter().zip(&text[..n]) {
            slot.store(*b, Ordering::Relaxed);
        }
        TEXT_LENS[i].store(n as u32, Ordering::Relaxed);
        NOTES[i].store(((fd as u32 as u64) << 32) | TEXT_NOTE, Ordering::Relaxed);
    }
}

/// A sentence built in a fixed buffer (the capture halves' texts of
/// `NotRestorable` entries): what does not fit is cut. No allocation.
pub struct Words<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> Words<'a> {
    pub fn new(buf: &'a mut [u8]) -> Self {
        Words { buf, len: 0 }
    }

    pub fn push(&mut self, s: &[u8]) {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s[..n]);
        self.len += n;
    }

    /// Appends `v` in decimal.
    pub fn push_u64(&mut self, mut v: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.push(&digits[i..]);
    }

    /// Appends `v` in hexadecimal, with `0x`.
    pub fn push_hex(&mut self, v: u64) {
        let mut digits = [0u8; 16];
        let mut i = digits.len();
        let mut v = v;
        loop {
            i -= 1;
            digits[i] = b"0123456789abcdef"[(v & 0xf) as usize];
            v >>= 4;
            if v == 0 {
                break;
            }
        }
        self.push(b"0x");
        self.push(&digits[i..]);
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The notes of the last capture, as sentences.
pub fn last() -> Vec<String> {
    let n = COUNT.load(Ordering::Relaxed) as usize;
    let mut out: Vec<String> = NOTES[..n.min(MAX)]
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let v = a.load(Ordering::Relaxed);
            let (fd, tfd) = ((v >> 32) as i32, ((v >> 8) & 0xff_ffff) as i32);
            if v & 0xff == TEXT_NOTE {
                let len = TEXT_LENS[i].load(Ordering::Relaxed) as usize;
                let words: Vec<u8> = TEXTS[i][..len]
                    .iter()
                    .map(|b| b.load(Ordering::Relaxed))
                    .collect();
                let words = String::from_utf8_lossy(&words);
                return if fd >= 0 {
                    format!("fd {fd} {words}")
                } else {
                    words.into_owned()
                };
            }
            sentence(fd, tfd, WHYS[(v & 0xff) as usize % WHYS.len()])
        })
        .collect();
    if n > MAX {
        out.push(format!("and {} more (see `selfckpt inspect`)", n - MAX));
    }
    out
}

/// The sentence naming one object (`inspect`, the log, restart's refusal).
pub fn sentence(fd: i32, tfd: i32, why: Why) -> String {
    match why {
        Why::SemaphoreUnknown => {
            format!("fd {fd} eventfd: the kernel does not say whether it is a semaphore")
        }
        Why::EpollTruncated => format!("fd {fd} epoll: too many registrations to capture"),
        Why::TfdClosed => format!(
            "fd {fd} epoll: the watched descriptor {tfd} was closed after it was registered"
        ),
        Why::TfdOther => format!(
            "fd {fd} epoll: the watched descriptor {tfd} names another file than the one registered (closed or dup'ed after it was registered)"
        ),
    }
}

/// Logs (a warning) what a restart of the checkpoint just taken refuses
/// (`notes`: [`last`], or a tree's). Call once the program's threads run
/// again.
pub fn log(notes: &[String]) {
    if !notes.is_empty() {
        log::warn!(
            "the checkpoint holds what a restart cannot bring back (restart will refuse it): {}",
            notes.join("; ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_come_back_as_sentences() {
        clear();
        note(12, 5, Why::TfdClosed);
        note(3, 0, Why::SemaphoreUnknown);
        let l = last();
        assert_eq!(l.len(), 2);
        assert!(
            l[0].contains("fd 12 epoll: the watched descriptor 5 was closed"),
            "{l:?}"
        );
        assert!(l[1].contains("fd 3 eventfd"), "{l:?}");
        note_text(9, b"socket TCP 10.0.0.2:5432 (peer outside the process)");
        note_text(-1, b"a POSIX timer");
        let l = last();
        assert_eq!(
            l[2],
            "fd 9 socket TCP 10.0.0.2:5432 (peer outside the process)"
        );
        assert_eq!(l[3], "a POSIX timer");
        clear();
        assert!(last().is_empty());
    }
}
