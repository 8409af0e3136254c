//! The data in flight on a TCP connection whose other end may be in
//! another process of the tree (object list kind 0x0301, `TcpInFlight`):
//! the sequence number just past the bytes of its receive queue the
//! socket entry holds, and its send queue (what it wrote that its peer
//! has not acknowledged), read in `TCP_REPAIR` mode. A tree checkpoint
//! pairs the two ends by their addresses (`tree::round`) and [`join`]s
//! their records: each end's new socket is given its own receive queue,
//! then the part of its peer's send queue that had not reached it. No
//! byte is lost or given twice; where that cannot be known the join says
//! why and the tree checkpoint fails naming the connection.
//!
//! ```text
//!  i32 fd | u64 ino | u8 repaired | u32 rcv_end | u32 snd_una
//!  u32 unacked | bytes send queue
//! ```
//!
//! [`capture`] runs while the program's threads are suspended: raw
//! socket options into the stack and the send queue peeked straight into
//! the record buffer. It must never allocate. The socket leaves repair
//! mode before it returns (its `SO_REUSEADDR`, which leaving resets, put
//! back).

use super::capture::setopt;
use crate::image::codec::{CodecError, Decoder, Encoder};

pub(super) const TCP_REPAIR: i32 = 19;
const TCP_REPAIR_QUEUE: i32 = 20;
const TCP_QUEUE_SEQ: i32 = 21;
const TCP_NO_QUEUE: i32 = 0;
const TCP_RECV_QUEUE: i32 = 1;
const TCP_SEND_QUEUE: i32 = 2;
/// Leave repair mode without sending a window probe.
const TCP_REPAIR_OFF_NO_WP: i32 = -1;
/// The kernel's `TCP_CLOSE_WAIT`: the peer's FIN is in `rcv_nxt`.
const STATE_CLOSE_WAIT: u8 = 8;

/// One TCP end's sequence numbers and send queue.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TcpInFlight {
    pub fd: i32,
    pub ino: u64,
    /// Whether repair mode could be entered (CAP_NET_ADMIN): without it
    /// the sequence numbers are 0 and the send queue is not read.
    pub repaired: bool,
    /// The sequence number just past the last byte of the receive queue
    /// the socket entry holds.
    pub rcv_end: u32,
    /// The sequence number of the send queue's first byte.
    pub snd_una: u32,
    /// Bytes written and not acknowledged (`SIOCOUTQ`).
    pub unacked: u32,
    /// The send queue (repaired only).
    pub sendq: Vec<u8>,
}

impl TcpInFlight {
    pub fn encode(&self, e: &mut Encoder) -> Result<(), CodecError> {
        Head {
            fd: self.fd,
            ino: self.ino,
            repaired: self.repaired,
            rcv_end: self.rcv_end,
            snd_una: self.snd_una,
            unacked: self.unacked,
        }
        .encode(e)?;
        e.bytes(&self.sendq)
    }

    pub fn decode(d: &mut Decoder) -> Result<Self, CodecError> {
        Ok(TcpInFlight {
            fd: d.i32()?,
            ino: d.u64()?,
            repaired: d.u8()? != 0,
            rcv_end: d.u32()?,
            snd_una: d.u32()?,
            unacked: d.u32()?,
            sendq: d.bytes()?.to_vec(),
        })
    }

    pub fn check(&self) -> Result<(), String> {
        if self.fd <= 2 {
            return Err(format!("TCP data in flight of fd {}", self.fd));
        }
        if !self.repaired && !self.sendq.is_empty() {
            return Err(format!(
                "fd {}: a send queue read without repair mode",
                self.fd
            ));
        }
        Ok(())
    }

    pub fn describe(&self) -> String {
        if self.repaired {
            format!(
                "fd {} TCP in flight: {} bytes sent not acknowledged (seq {}), receive queue ends at seq {}",
                self.fd,
                self.sendq.len(),
                self.snd_una,
                self.rcv_end
            )
        } else {
            format!(
                "fd {} TCP in flight: {} bytes not acknowledged, not read (no TCP_REPAIR)",
                self.fd, self.unacked
            )
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": "tcp_in_flight", "fd": self.fd, "ino": self.ino,
            "repaired": self.repaired, "rcv_end": self.rcv_end,
            "snd_una": self.snd_una, "unacked": self.unacked,
            "send_queue": self.sendq.len(),
        })
    }
}

/// The record without its send queue (the capture writes that straight).
struct Head {
    fd: i32,
    ino: u64,
    repaired: bool,
    rcv_end: u32,
    snd_una: u32,
    unacked: u32,
}

impl Head {
    fn encode(&self, e: &mut Encoder) -> Result<(), CodecError> {
        e.i32(self.fd)?;
        e.u64(self.ino)?;
        e.u8(self.repaired as u8)?;
        e.u32(self.rcv_end)?;
        e.u32(self.snd_una)?;
        e.u32(self.unacked)
    }
}

fn getseq(fd: i32, queue: i32) -> Option<u32> {
    if setopt(fd, libc::IPPROTO_TCP, TCP_REPAIR_QUEUE, queue) != 0 {
        return None;
    }
    let mut v: u32 = 0;
    let mut len = 4 as libc::socklen_t;
    // SAFETY: getsockopt writes one u32 into `v`, its size given.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            TCP_QUEUE_SEQ,
            (&mut v as *mut u32).cast(),
            &mut len,
        )
    };
    (r == 0).then_some(v)
}

fn ioctl_int(fd: i32, req: libc::c_ulong) -> Option<u32> {
    let mut n: libc::c_int = 0;
    // SAFETY: the ioctl writes one int.
    (unsafe { libc::ioctl(fd, req, &mut n) } == 0).then_some(n.max(0) as u32)
}

/// Writes the entry of TCP socket `fd` (inode `ino`, in TCP state
/// `state`), whose socket entry holds `rq_len` bytes of its receive
/// queue: in repair mode, the sequence numbers and the send queue (at
/// most `budget` bytes, taken from it). `Err(why)` when the send queue is
/// more than the budget (nothing written then). No allocation.
pub fn capture(
    e: &mut Encoder,
    fd: i32,
    ino: u64,
    state: u8,
    rq_len: usize,
    reuseaddr: bool,
    budget: &mut usize,
) -> Result<Result<(), &'static [u8]>, CodecError> {
    let unacked = ioctl_int(fd, libc::TIOCOUTQ).unwrap_or(u32::MAX);
    let mut h = Head {
        fd,
        ino,
        repaired: false,
        rcv_end: 0,
        snd_una: 0,
        unacked,
    };
    if setopt(fd, libc::IPPROTO_TCP, TCP_REPAIR, 1) != 0 {
        // No CAP_NET_ADMIN: the join accepts it only with nothing in
        // flight either way.
        super::super::objects::entry(e, super::super::objects::Kind::TcpInFlight, 0, |e| {
            h.encode(e)?;
            e.bytes(&[])
        })?;
        return Ok(Ok(()));
    }
    let r = in_repair(e, fd, state, rq_len, &mut h, budget);
    setopt(fd, libc::IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_NO_QUEUE);
    if setopt(fd, libc::IPPROTO_TCP, TCP_REPAIR, TCP_REPAIR_OFF_NO_WP) != 0 {
        // A kernel without the quiet way out: out with a window probe
        // (never left in repair mode).
        setopt(fd, libc::IPPROTO_TCP, TCP_REPAIR, 0);
    }
    setopt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, reuseaddr as i32);
    r
}

fn in_repair(
    e: &mut Encoder,
    fd: i32,
    state: u8,
    rq_len: usize,
    h: &mut Head,
    budget: &mut usize,
) -> Result<Result<(), &'static [u8]>, CodecError> {
    // The first unread byte: rcv_nxt less what is queued (the program,
    // suspended, reads nothing; rcv_nxt read twice around the queue's
    // length so that both are of one instant). A received FIN is in
    // rcv_nxt, not in the queue's length.
    let mut copied = None;
    for _ in 0..100 {
        let (Some(a), Some(n), Some(b)) = (
            getseq(fd, TCP_RECV_QUEUE),
            ioctl_int(fd, libc::FIONREAD),
            getseq(fd, TCP_RECV_QUEUE),
        ) else {
            break;
        };
        if a == b {
            let fin = (state == STATE_CLOSE_WAIT) as u32;
            copied = Some(a.wrapping_sub(n).wrapping_sub(fin));
            break;
        }
    }
    let Some(copied) = copied else {
        return Ok(Err(b" (its sequence numbers cannot be read)"));
    };
    let Some(write_seq) = getseq(fd, TCP_SEND_QUEUE) else {
        return Ok(Err(b" (its sequence numbers cannot be read)"));
    };
    h.repaired = true;
    h.rcv_end = copied.wrapping_add(rq_len as u32);
    h.snd_una = write_seq;
    let at = e.len();
    let mut too_big = false;
    let mut peeked = 0usize;
    super::super::objects::entry(e, super::super::objects::Kind::TcpInFlight, 0, |e| {
        let head_at = e.len();
        h.encode(e)?;
        let want = h.unacked as usize;
        if want == 0 {
            return e.bytes(&[]);
        }
        // The whole queue in one peek (the kernel copies it skb by skb
        // from snd_una, all or nothing).
        let room = (*budget).min(e.remaining().saturating_sub(64 << 10));
        if want > room {
            too_big = true;
            return e.bytes(&[]);
        }
        let r = e.bytes_with(want, |buf| {
            // SAFETY: recv writes at most buf.len() bytes into buf.
            let n = unsafe {
                libc::recv(
                    fd,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_PEEK | libc::MSG_DONTWAIT,
                )
            };
            usize::try_from(n).map_err(|_| ())
        })?;
        match r {
            Ok(()) => {
                peeked = e.len() - head_at - 25 - 4;
                // The queue's first byte, from the queue as peeked.
                let una = write_seq.wrapping_sub(peeked as u32);
                e.patch_u32(head_at + 17, una);
                Ok(())
            }
            Err(()) => {
                too_big = true;
                e.bytes(&[])
            }
        }
    })?;
    if too_big {
        e.truncate(at);
        return Ok(Err(b" (more data in flight than a checkpoint keeps)"));
    }
    *budget -= peeked.min(*budget);
    Ok(Ok(()))
}

/// A TCP end and its data in flight.
pub struct End<'a> {
    pub sock: &'a super::Socket,
    pub flight: &'a TcpInFlight,
}

/// Whether `b` is the other end of TCP connection `a`: each one's local
/// address is the other's remote one.
pub fn is_peer(a: &super::Socket, b: &super::Socket) -> bool {
    let tcp = |s: &super::Socket| {
        matches!(s.family as i32, libc::AF_INET | libc::AF_INET6)
            && s.stype as i32 == libc::SOCK_STREAM
    };
    tcp(a)
        && tcp(b)
        && a.ino != b.ino
        && super::is_named(&a.local)
        && super::is_named(&a.remote)
        && a.local == b.remote
        && a.remote == b.local
}

/// What each end's new socket receives after its own receive queue: the
/// part of the other's send queue that had not reached it. (`a` gets,
/// `b` gets.) Why not, where that cannot be known.
pub fn join(a: &End, b: &End) -> Result<(Vec<u8>, Vec<u8>), String> {
    Ok((tail(b, a)?, tail(a, b)?))
}

/// What of `from`'s send queue `to` had not received.
fn tail(from: &End, to: &End) -> Result<Vec<u8>, String> {
    let f = from.flight;
    if !f.repaired {
        if f.unacked == 0 {
            return Ok(Vec::new());
        }
        return Err(format!(
            "fd {}: {} bytes in flight cannot be read without TCP_REPAIR (CAP_NET_ADMIN)",
            f.fd, f.unacked
        ));
    }
    if f.sendq.is_empty() {
        return Ok(Vec::new());
    }
    if !to.flight.repaired {
        return Err(format!(
            "fd {}: its peer's sequence numbers are unknown (no TCP_REPAIR)",
            to.flight.fd
        ));
    }
    let skip = to.flight.rcv_end.wrapping_sub(f.snd_una) as i32;
    if skip < 0 || skip as usize > f.sendq.len() {
        return Err(format!(
            "fd {} and fd {}: data moved between the captures of the two ends (sequence {} \
             received, {} the first unacknowledged); a checkpoint again keeps it",
            to.flight.fd, f.fd, to.flight.rcv_end, f.snd_una
        ));
    }
    Ok(f.sendq[skip as usize..].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flight(repaired: bool, rcv_end: u32, snd_una: u32, sendq: &[u8]) -> TcpInFlight {
        TcpInFlight {
            fd: 5,
            ino: 9,
            repaired,
            rcv_end,
            snd_una,
            unacked: sendq.len() as u32,
            sendq: sendq.to_vec(),
        }
    }

    #[test]
    fn a_record_comes_back_as_written() {
        let x = flight(true, 7, u32::MAX - 1, b"abc");
        let mut buf = vec![0u8; 256];
        let mut e = Encoder::new(&mut buf);
        x.encode(&mut e).unwrap();
        let n = e.len();
        let mut d = Decoder::new(&buf[..n]);
        assert_eq!(TcpInFlight::decode(&mut d).unwrap(), x);
        d.finish().unwrap();
        x.check().unwrap();
        assert!(flight(false, 0, 0, b"x").check().is_err());
    }

    #[test]
    fn the_join_gives_each_end_what_had_not_reached_it_once() {
        let sock = dummy();
        // Table: a's send queue from seq `una` (wrapping), b received
        // through `end`: what b gets.
        // (una, end, queue, what b gets; None: refused)
        type Case<'a> = (u32, u32, &'a [u8], Option<&'a [u8]>);
        let cases: [Case; 6] = [
            (100, 100, b"hello", Some(b"hello")),
            (100, 102, b"hello", Some(b"llo")),
            (100, 105, b"hello", Some(b"")),
            (u32::MAX - 1, 1, b"hello", Some(b"lo")),
            (100, 99, b"hello", None),
            (100, 106, b"hello", None),
        ];
        for (una, end, q, want) in cases {
            let fa = flight(true, 0, una, q);
            let fb = flight(true, end, 0, b"");
            let a = End {
                sock: &sock,
                flight: &fa,
            };
            let b = End {
                sock: &sock,
                flight: &fb,
            };
            let got = join(&a, &b).map(|(to_a, to_b)| {
                assert!(to_a.is_empty());
                to_b
            });
            match want {
                Some(w) => assert_eq!(got.unwrap(), w, "{una} {end}"),
                None => assert!(got.is_err(), "{una} {end}"),
            }
        }
        // Without repair mode: only with nothing in flight.
        let none = flight(false, 0, 0, b"");
        let mut busy = flight(false, 0, 0, b"");
        busy.unacked = 3;
        let e = |f| End {
            sock: &sock,
            flight: f,
        };
        assert!(join(&e(&none), &e(&none)).is_ok());
        assert!(join(&e(&busy), &e(&none)).is_err());
    }

    fn setint(fd: i32, level: i32, opt: i32, v: i32) {
        super::super::capture::setopt(fd, level, opt, v);
    }

    /// A sender whose peer's window is full holds unsent data: the
    /// capture reads it in repair mode, and the join gives the receiver
    /// its queue and then the rest, every byte once; the program keeps
    /// all of it.
    #[test]
    fn unsent_data_of_a_full_window_is_read_and_joined_exactly_once() {
        use std::io::{Read, Write};
        use std::os::fd::AsRawFd;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        setint(l.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, 8192);
        let mut c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut a, _) = l.accept().unwrap();
        setint(c.as_raw_fd(), libc::SOL_SOCKET, libc::SO_SNDBUF, 32768);
        c.set_nonblocking(true).unwrap();
        let pattern: Vec<u8> = (0..1u32 << 20).map(|i| (i * 7 % 251) as u8).collect();
        let mut sent = 0;
        while let Ok(n) = c.write(&pattern[sent..sent + 4096]) {
            sent += n;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        let inq = ioctl_int(a.as_raw_fd(), libc::FIONREAD).unwrap() as usize;
        let mut rq = vec![0u8; inq];
        // SAFETY: peeking into our buffer of that size.
        let n = unsafe {
            libc::recv(
                a.as_raw_fd(),
                rq.as_mut_ptr().cast(),
                inq,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        assert_eq!(n as usize, inq);
        let mut buf = vec![0u8; 4 << 20];
        let mut e = Encoder::new(&mut buf);
        let mut budget = 2 << 20;
        capture(&mut e, c.as_raw_fd(), 1, 1, 0, false, &mut budget)
            .unwrap()
            .unwrap();
        capture(&mut e, a.as_raw_fd(), 2, 1, inq, false, &mut budget)
            .unwrap()
            .unwrap();
        let n = e.len();
        let mut d = Decoder::new(&buf[..n]);
        let mut got = Vec::new();
        while d.remaining() > 0 {
            let kind = d.u16().unwrap();
            d.u16().unwrap();
            let len = d.u32().unwrap() as usize;
            assert_eq!(kind, super::super::super::objects::Kind::TcpInFlight as u16);
            let mut p = Decoder::new(d.take(len).unwrap());
            got.push(TcpInFlight::decode(&mut p).unwrap());
            p.finish().unwrap();
        }
        let (fc, fa) = (&got[0], &got[1]);
        if !fc.repaired {
            eprintln!("skipped: no TCP_REPAIR here (CAP_NET_ADMIN)");
            return;
        }
        assert!(!fc.sendq.is_empty(), "nothing unsent: {fc:?}");
        let sock = dummy();
        let (to_c, to_a) = join(
            &End {
                sock: &sock,
                flight: fc,
            },
            &End {
                sock: &sock,
                flight: fa,
            },
        )
        .unwrap();
        assert!(to_c.is_empty());
        let mut all = rq.clone();
        all.extend(&to_a);
        assert_eq!(all.len(), sent);
        assert!(all == pattern[..sent], "the join lost or repeated bytes");
        // The program still has every byte, and its socket option.
        assert_eq!(
            super::super::capture::getopt(c.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR),
            0
        );
        let reader = std::thread::spawn(move || {
            let mut v = vec![0u8; sent];
            a.read_exact(&mut v).unwrap();
            v
        });
        c.set_nonblocking(false).unwrap();
        drop(c);
        assert!(reader.join().unwrap() == pattern[..sent]);
    }

    fn dummy() -> super::super::Socket {
        super::super::Socket {
            fd: 5,
            flags: 0,
            ino: 1,
            family: libc::AF_INET as u16,
            stype: libc::SOCK_STREAM as u16,
            protocol: 0,
            role: super::super::ROLE_OUTSIDE,
            shutdown: 0,
            peer: 0,
            backlog: 0,
            opts: Default::default(),
            vfs: (0, 0),
            file_attrs: None,
            kept: Vec::new(),
            groups: Vec::new(),
            local: vec![],
            remote: vec![],
            queue: vec![],
        }
    }
}
