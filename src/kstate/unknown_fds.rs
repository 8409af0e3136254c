//! Descriptors of kinds no other module brings back (`io_uring`,
//! `perf_event`, `userfaultfd`, `fanotify`, BPF objects, ...,
//! and devices whose open descriptor holds state a reopening of the path
//! does not give back: `/dev/net/tun`, `/dev/kvm`, a GPU):
//! each is named at checkpoint time with a `NotRestorable` entry of kind
//! `other`, so that a restart refuses the image instead of putting
//! `/dev/null` in its place silently; `--unrestorable=other` accepts
//! `/dev/null` as the stand-in.
//!
//! Capture runs while the program's threads are suspended: a readlink
//! into the capture's path buffer and a sentence built in a stack buffer,
//! never an allocation. There is no record and no restore of its own.

use super::objects::NotRestorable;
use super::unrestorable::Words;
use super::{CaptureBuffers, KstateError};
use crate::capture::sys::{self, PathBuf};
use crate::image::codec::Encoder;

/// The kind `--unrestorable` names.
pub const KIND: &str = "other";

/// Links of descriptors some module of `kstate` brings back: files by path
/// (`/...`, memfds and deleted files included), pipes, sockets, the event
/// and timer descriptors, inotify.
fn handled(link: &[u8]) -> bool {
    const KNOWN: [&[u8]; 8] = [
        b"pipe:[",
        b"socket:[",
        b"anon_inode:[eventfd]",
        b"anon_inode:[timerfd]",
        b"anon_inode:[signalfd]",
        b"anon_inode:[eventpoll]",
        b"anon_inode:inotify",
        super::pidfd::LINK,
    ];
    (link.starts_with(b"/") && !stateful_device(link)) || KNOWN.iter().any(|k| link.starts_with(k))
}

/// Devices whose open descriptor holds state of its own that reopening
/// the path does not give back: an attached network interface (`tun`),
/// a virtual machine (`kvm`, `vhost`), a FUSE mount's channel, an input
/// device being made (`uinput`), a passed-through device (`vfio`), a GPU
/// context (`nvidia`, DRM render and card nodes), a sound stream.
fn stateful_device(link: &[u8]) -> bool {
    const STATEFUL: [&[u8]; 13] = [
        b"/dev/net/tun",
        b"/dev/kvm",
        b"/dev/vhost-",
        b"/dev/fuse",
        b"/dev/cuse",
        b"/dev/uinput",
        b"/dev/vfio/",
        b"/dev/nvidia",
        b"/dev/dri/",
        b"/dev/snd/",
        b"/dev/ppp",
        b"/dev/userfaultfd",
        b"/dev/bus/usb/",
    ];
    STATEFUL.iter().any(|d| link.starts_with(d))
}

/// Names every descriptor of a kind nothing brings back. No allocation.
pub fn capture(
    e: &mut Encoder,
    bufs: &mut CaptureBuffers,
    skip_fd: &dyn Fn(i32) -> bool,
) -> Result<(), KstateError> {
    super::fds::for_each_fd(skip_fd, |fd| {
        let mut p = PathBuf::<48>::new();
        p.push(b"/proc/thread-self/fd/").push_u64(fd as u64);
        let Ok(n) = sys::readlink(p.as_cstr_bytes(), bufs.path) else {
            return Ok(());
        };
        let link = &bufs.path[..n];
        if handled(link) {
            return Ok(());
        }
        let mut words = [0u8; 240];
        let mut w = Words::new(&mut words);
        w.push(link);
        w.push(if stateful_device(link) {
            b": a device whose open descriptor holds state selfckpt cannot bring back \
(an attached interface, a virtual machine, a mount, a GPU context)"
                .as_slice()
        } else {
            b": a kind of descriptor selfckpt cannot bring back".as_slice()
        });
        let len = w.len();
        NotRestorable::capture(e, fd, KIND, &words[..len])?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kstate::objects::{Object, Objects};

    #[test]
    fn known_kinds_are_left_to_their_modules() {
        for l in [
            &b"/tmp/x"[..],
            b"pipe:[123]",
            b"socket:[9]",
            b"anon_inode:[eventfd]",
            b"anon_inode:inotify",
            b"anon_inode:[pidfd]",
            b"/memfd:x (deleted)",
            b"/dev/null",
            b"/dev/urandom",
        ] {
            assert!(handled(l), "{}", String::from_utf8_lossy(l));
        }
        for l in [
            &b"anon_inode:[io_uring]"[..],
            b"anon_inode:[userfaultfd]",
            b"anon_inode:[perf_event]",
            b"anon_inode:bpf-map",
            b"/dev/net/tun",
            b"/dev/kvm",
            b"/dev/nvidia0",
            b"/dev/dri/renderD128",
        ] {
            assert!(!handled(l), "{}", String::from_utf8_lossy(l));
        }
    }

    #[test]
    fn an_unknown_descriptor_is_named() {
        // SAFETY: a userfaultfd (user-mode faults only: no privilege
        // needed), closed below.
        let fd = unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | 1) } as i32;
        if fd < 0 {
            eprintln!("skipped: no userfaultfd here");
            return;
        }
        let b = crate::kstate::captured(|e, bufs| {
            capture(e, bufs, &|other| other != fd)?;
            crate::kstate::objects::end(e)?;
            Ok(())
        });
        // SAFETY: closing the userfaultfd opened above.
        unsafe { libc::close(fd) };
        let o = Objects::decode(&mut crate::image::codec::Decoder::new(&b)).unwrap();
        let [Object::NotRestorable(x)] = &o.items[..] else {
            panic!("{o:?}")
        };
        assert_eq!((x.fd, x.kind.as_str()), (fd, KIND));
        assert!(x.text.contains("userfaultfd"), "{}", x.text);
    }
}
