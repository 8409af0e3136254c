//! Kernel-side state of the process that is not in its memory: signal
//! dispositions, open files (and what is queued in the pipes the process
//! reads), cwd and umask, the mm layout (brk, stack, arguments, auxv).
//!
//! Capture (`encode_kernel_record`) runs while the program's threads are
//! suspended: it reads /proc and issues raw system calls into fixed buffers
//! and must never allocate. Restore helpers run in the restarter, before the
//! hand-over, and are ordinary Rust.

pub mod fds;
pub mod mm;
pub mod sigactions;

use crate::image::codec::{CodecError, Decoder, Encoder};
use crate::image::model::{FdEntry, ProcessState, SigAction};
use crate::sys;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum KstateError {
    #[error("cannot read {what}: {errno}")]
    Read {
        what: &'static str,
        errno: sys::Errno,
    },
    #[error("cannot parse {0}")]
    Parse(&'static str),
    #[error("cannot capture a pipe's contents: {0}")]
    Pipe(&'static str),
    #[error("kernel state does not fit the record buffer: {0}")]
    Encode(#[from] CodecError),
}

/// Fixed buffers the capture reads /proc files into.
pub struct CaptureBuffers<'a> {
    pub text: &'a mut [u8],
    pub path: &'a mut [u8],
    pub auxv: &'a mut [u8],
    pub cwd: &'a mut [u8],
}

/// Encodes the KERNEL record payload: process state, sigactions, fds.
/// `skip_fd` tells which descriptors are selfckpt's own (left out).
pub fn encode_kernel_record(
    e: &mut Encoder,
    bufs: &mut CaptureBuffers,
    skip_fd: &dyn Fn(i32) -> bool,
) -> Result<(), KstateError> {
    let cwd_len =
        sys::readlink(b"/proc/self/cwd\0", bufs.cwd).map_err(|errno| KstateError::Read {
            what: "/proc/self/cwd",
            errno,
        })?;
    let auxv_len =
        sys::read_file(b"/proc/self/auxv\0", bufs.auxv).map_err(|errno| KstateError::Read {
            what: "/proc/self/auxv",
            errno,
        })?;
    let umask = mm::read_umask(bufs.text)?;
    let layout = mm::read_layout(bufs.text)?;
    ProcessState {
        cwd: &bufs.cwd[..cwd_len],
        umask,
        mm: layout,
        auxv: &bufs.auxv[..auxv_len],
    }
    .encode(e)?;
    sigactions::encode_all(e)?;
    fds::encode_all(e, bufs, skip_fd)?;
    fds::encode_pipe_contents(e, skip_fd)
}

/// What was queued in a pipe the process reads from (KERNEL record,
/// format 1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipeContents<'a> {
    /// The pipe's inode (the `FileStamp::ino` of its descriptors).
    pub ino: u64,
    pub data: &'a [u8],
}

/// The KERNEL record, decoded.
#[derive(Debug, Clone)]
pub struct KernelState<'a> {
    pub process: ProcessState<'a>,
    pub sigactions: Vec<SigAction>,
    pub fds: Vec<FdEntry<'a>>,
    pub pipes: Vec<PipeContents<'a>>,
}

impl<'a> KernelState<'a> {
    pub fn decode(d: &mut Decoder<'a>) -> Result<Self, CodecError> {
        let process = ProcessState::decode(d)?;
        let n = d.count(SigAction::ENCODED_LEN)?;
        let sigactions = (0..n)
            .map(|_| SigAction::decode(d))
            .collect::<Result<Vec<_>, _>>()?;
        let n = d.count(FdEntry::MIN_ENCODED_LEN)?;
        let fds = (0..n)
            .map(|_| FdEntry::decode(d))
            .collect::<Result<Vec<_>, _>>()?;
        // Format 1.1 appends the contents of pipes.
        let mut pipes = Vec::new();
        if d.remaining() > 0 {
            let n = d.count(12)?;
            for _ in 0..n {
                pipes.push(PipeContents {
                    ino: d.u64()?,
                    data: d.bytes()?,
                });
            }
        }
        d.finish()?;
        Ok(KernelState {
            process,
            sigactions,
            fds,
            pipes,
        })
    }
}
