//! The socket options kept by value: a table of the options a program
//! sets with `setsockopt` that are plain values (an int, a `timeval`, a
//! `linger`, an interface name), read back at checkpoint with
//! `getsockopt` and set again at restart where the new socket's value
//! differs. The few options with their own rules (buffer sizes, the
//! address reuse flags a bind needs, `IPV6_V6ONLY`) stay in `Options`.
//!
//! Capture ([`capture`]) runs while the program's threads are suspended:
//! getsockopt into a fixed array on the stack, never allocating. Restore
//! ([`apply`]) runs in the restarter, on a socket before it is bound
//! (`SO_BINDTODEVICE`, `IP_FREEBIND` and `TCP_FASTOPEN` must be): an
//! option the restarter may not set (`SO_MARK`, `SO_PRIORITY` above 6 and
//! `IP_TRANSPARENT` need `CAP_NET_ADMIN`) fails the socket's restore with
//! its name, never silently.

use crate::image::codec::{CodecError, Decoder, Encoder};

/// The longest value kept (`SO_BINDTODEVICE`'s interface name, `IFNAMSIZ`).
pub const MAX_LEN: usize = 16;

/// Which sockets an option applies to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Applies {
    Any,
    Unix,
    Inet,
    Tcp,
    Ip4,
    Ip6,
    /// Datagram and raw sockets (the multicast options: a TCP socket
    /// reads them but refuses to set them).
    Ip4Dgram,
    Ip6Dgram,
}

/// One option of the table.
struct Kept {
    level: i32,
    name: i32,
    applies: Applies,
    what: &'static str,
}

/// A row of the table: the option's level, its `libc` constant (whose
/// name is the option's name in messages) and the sockets it applies to.
macro_rules! k {
    ($level:expr, $name:ident, $applies:expr) => {
        Kept {
            level: $level,
            name: libc::$name,
            applies: $applies,
            what: stringify!($name),
        }
    };
}

use libc::{IPPROTO_IP as IP, IPPROTO_IPV6 as IP6, IPPROTO_TCP as TCP, SOL_SOCKET as SOL};
use Applies::*;

/// The options kept. An option whose value a kernel sets by itself on a
/// connected socket (`TCP_MAXSEG`, `TCP_WINDOW_CLAMP`) or that is a
/// passing state (`TCP_QUICKACK`) is not here.
const TABLE: &[Kept] = &[
    k!(SOL, SO_PRIORITY, Any),
    k!(SOL, SO_RCVLOWAT, Any),
    k!(SOL, SO_MARK, Any),
    k!(SOL, SO_PASSSEC, Unix),
    k!(SOL, SO_DONTROUTE, Any),
    k!(SOL, SO_NO_CHECK, Any),
    k!(SOL, SO_OOBINLINE, Any),
    k!(SOL, SO_BROADCAST, Any),
    k!(SOL, SO_LINGER, Any),
    k!(SOL, SO_RCVTIMEO, Any),
    k!(SOL, SO_SNDTIMEO, Any),
    k!(SOL, SO_TIMESTAMP, Any),
    k!(SOL, SO_TIMESTAMPNS, Any),
    k!(SOL, SO_RXQ_OVFL, Any),
    k!(SOL, SO_SELECT_ERR_QUEUE, Any),
    k!(SOL, SO_BUSY_POLL, Inet),
    k!(SOL, SO_BINDTODEVICE, Inet),
    k!(SOL, SO_PEEK_OFF, Unix),
    // After the buffer sizes (whose setting locks them too).
    Kept {
        level: SOL,
        name: SO_BUF_LOCK,
        applies: Any,
        what: "SO_BUF_LOCK",
    },
    k!(TCP, TCP_KEEPIDLE, Tcp),
    k!(TCP, TCP_KEEPINTVL, Tcp),
    k!(TCP, TCP_KEEPCNT, Tcp),
    k!(TCP, TCP_USER_TIMEOUT, Tcp),
    k!(TCP, TCP_NOTSENT_LOWAT, Tcp),
    k!(TCP, TCP_LINGER2, Tcp),
    k!(TCP, TCP_SYNCNT, Tcp),
    k!(TCP, TCP_DEFER_ACCEPT, Tcp),
    k!(TCP, TCP_THIN_LINEAR_TIMEOUTS, Tcp),
    k!(TCP, TCP_FASTOPEN, Tcp),
    // Corked until the program uncorks it (its data held back).
    k!(TCP, TCP_CORK, Tcp),
    k!(IP, IP_TOS, Ip4),
    k!(IP, IP_TTL, Ip4),
    // The interface multicast goes out of, by its address (one chosen
    // by index alone, `ip_mreqn`, reads as 0.0.0.0: not kept).
    k!(IP, IP_MULTICAST_IF, Ip4Dgram),
    k!(IP, IP_MULTICAST_TTL, Ip4Dgram),
    k!(IP, IP_MULTICAST_LOOP, Ip4Dgram),
    k!(IP, IP_MULTICAST_ALL, Ip4Dgram),
    k!(IP, IP_RECVTOS, Ip4),
    k!(IP, IP_RECVTTL, Ip4),
    k!(IP, IP_PKTINFO, Ip4),
    k!(IP, IP_RECVERR, Ip4),
    k!(IP, IP_MTU_DISCOVER, Ip4),
    // The two an IPv6 socket has too (set at the IP level, `SOL_IP`).
    k!(IP, IP_FREEBIND, Inet),
    k!(IP, IP_TRANSPARENT, Inet),
    k!(IP, IP_BIND_ADDRESS_NO_PORT, Ip4),
    k!(IP, IP_RECVORIGDSTADDR, Ip4),
    k!(IP6, IPV6_UNICAST_HOPS, Ip6),
    k!(IP6, IPV6_MULTICAST_IF, Ip6Dgram),
    k!(IP6, IPV6_MULTICAST_HOPS, Ip6Dgram),
    k!(IP6, IPV6_MULTICAST_LOOP, Ip6Dgram),
    k!(IP6, IPV6_RECVPKTINFO, Ip6),
    k!(IP6, IPV6_TCLASS, Ip6),
    k!(IP6, IPV6_RECVTCLASS, Ip6),
    k!(IP6, IPV6_RECVERR, Ip6),
    k!(IP6, IPV6_MTU_DISCOVER, Ip6),
    k!(IP6, IPV6_RECVHOPLIMIT, Ip6),
];

/// `SO_BUF_LOCK` (Linux 5.14; the same number on x86_64 and aarch64).
const SO_BUF_LOCK: i32 = 72;

/// The most values one socket keeps.
pub const MAX_KEPT: usize = TABLE.len();

fn applies(a: Applies, family: i32, stype: i32) -> bool {
    let inet = matches!(family, libc::AF_INET | libc::AF_INET6);
    match a {
        Any => true,
        Unix => family == libc::AF_UNIX,
        Inet => inet,
        Tcp => inet && stype == libc::SOCK_STREAM,
        Ip4 => family == libc::AF_INET,
        Ip6 => family == libc::AF_INET6,
        Ip4Dgram => family == libc::AF_INET && stype != libc::SOCK_STREAM,
        Ip6Dgram => family == libc::AF_INET6 && stype != libc::SOCK_STREAM,
    }
}

fn find(level: i32, name: i32) -> Option<&'static Kept> {
    TABLE.iter().find(|o| o.level == level && o.name == name)
}

/// One kept value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Value {
    pub level: i32,
    pub name: i32,
    pub len: u8,
    pub bytes: [u8; MAX_LEN],
}

impl Value {
    fn data(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// The option's name, as `setsockopt(2)` calls it.
    pub fn what(&self) -> &'static str {
        find(self.level, self.name).map_or("an option", |o| o.what)
    }
}

/// A value slot before it is read.
pub const EMPTY: Value = Value {
    level: 0,
    name: 0,
    len: 0,
    bytes: [0; MAX_LEN],
};

/// `inspect --json`: every kept value, by name.
pub fn json(values: &[Value]) -> serde_json::Value {
    values
        .iter()
        .map(|v| (v.what().to_string(), serde_json::Value::String(words(v))))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// getsockopt of one option into a value; None where the kernel refuses.
fn read(fd: i32, level: i32, name: i32) -> Option<Value> {
    let mut v = Value {
        level,
        name,
        ..EMPTY
    };
    let mut len = MAX_LEN as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into the array.
    let r = unsafe { libc::getsockopt(fd, level, name, v.bytes.as_mut_ptr().cast(), &mut len) };
    if r != 0 || len as usize > MAX_LEN {
        return None;
    }
    v.len = len as u8;
    Some(v)
}

/// The values of socket `fd` (of `family` and `stype`) for every option
/// of the table that applies to it, into `out`; their number. No
/// allocation.
pub fn capture(fd: i32, family: i32, stype: i32, out: &mut [Value; MAX_KEPT]) -> usize {
    let mut n = 0;
    for o in TABLE.iter().filter(|o| applies(o.applies, family, stype)) {
        if let Some(v) = read(fd, o.level, o.name) {
            out[n] = v;
            n += 1;
        }
    }
    n
}

/// The entry's trailing field: a count u16, then per value level u16,
/// name u16, length u8 and the bytes.
pub fn encode(e: &mut Encoder, values: &[Value]) -> Result<(), CodecError> {
    e.u16(values.len() as u16)?;
    for v in values {
        e.u16(v.level as u16)?;
        e.u16(v.name as u16)?;
        e.u8(v.len)?;
        e.bytes_raw(v.data())?;
    }
    Ok(())
}

/// Reads the field [`encode`] writes: only options of the table, of at
/// most [`MAX_LEN`] bytes, each once.
pub fn decode(d: &mut Decoder) -> Result<Vec<Value>, CodecError> {
    let n = d.u16()? as usize;
    if n > MAX_KEPT {
        return Err(CodecError::BadValue {
            field: "socket option count",
            value: n as u64,
        });
    }
    let mut out: Vec<Value> = Vec::with_capacity(n);
    for _ in 0..n {
        let level = d.u16()? as i32;
        let name = d.u16()? as i32;
        let len = d.u8()? as usize;
        if len > MAX_LEN {
            return Err(CodecError::BadValue {
                field: "socket option length",
                value: len as u64,
            });
        }
        let data = d.take(len)?;
        if find(level, name).is_none() || out.iter().any(|v| v.level == level && v.name == name) {
            return Err(CodecError::BadValue {
                field: "socket option (not kept, or twice)",
                value: ((level as u64) << 16) | name as u64,
            });
        }
        let mut v = Value {
            level,
            name,
            len: data.len() as u8,
            ..EMPTY
        };
        v.bytes[..data.len()].copy_from_slice(data);
        out.push(v);
    }
    Ok(out)
}

/// Sets on `fd` every kept value its new socket does not have already.
/// The error names the option and the socket (`who`).
pub fn apply(fd: i32, values: &[Value], who: &str) -> Result<(), String> {
    for v in values {
        if read(fd, v.level, v.name).is_some_and(|now| now.data() == v.data()) {
            continue;
        }
        // SAFETY: setsockopt reads `len` bytes of the value.
        let r = unsafe {
            libc::setsockopt(
                fd,
                v.level,
                v.name,
                v.bytes.as_ptr().cast(),
                v.len as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(format!(
                "{who}: cannot set {} again: {}",
                v.what(),
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

/// The values that differ from what a fresh socket of this kind has, in
/// words for `inspect` (" SO_RCVTIMEO=...").
pub fn describe(values: &[Value], family: i32, stype: i32) -> String {
    // SAFETY: socket(2) has no memory preconditions; closed below.
    let fresh = unsafe { libc::socket(family, stype | libc::SOCK_CLOEXEC, 0) };
    let mut s = String::new();
    for v in values {
        if fresh >= 0 && read(fresh, v.level, v.name).is_some_and(|f| f.data() == v.data()) {
            continue;
        }
        s.push(' ');
        s.push_str(v.what());
        s.push('=');
        s.push_str(&words(v));
    }
    if fresh >= 0 {
        // SAFETY: closing the socket made above.
        unsafe { libc::close(fresh) };
    }
    s
}

/// A value in words: an int as a number, a `timeval` as seconds, a
/// `linger` as on/seconds, an interface name as text.
fn words(v: &Value) -> String {
    let d = v.data();
    let int = |b: &[u8]| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
    match (v.level, v.name, d.len()) {
        (SOL, libc::SO_BINDTODEVICE, _) => String::from_utf8_lossy(d)
            .trim_end_matches('\0')
            .to_string(),
        (SOL, libc::SO_LINGER, 8) => format!("{}/{}s", int(&d[..4]), int(&d[4..])),
        (IP, libc::IP_MULTICAST_IF, 4) => {
            std::net::Ipv4Addr::new(d[0], d[1], d[2], d[3]).to_string()
        }
        (_, _, 16) => {
            let sec = i64::from_ne_bytes(d[..8].try_into().unwrap_or([0; 8]));
            let usec = i64::from_ne_bytes(d[8..].try_into().unwrap_or([0; 8]));
            format!("{}.{:06}s", sec, usec)
        }
        (_, _, 4) => int(d).to_string(),
        _ => format!("{d:02x?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_hostile_ones_are_refused() {
        let mut v = Value {
            level: SOL,
            name: libc::SO_RCVTIMEO,
            len: 16,
            bytes: [0; MAX_LEN],
        };
        v.bytes[0] = 3;
        let w = Value {
            level: TCP,
            name: libc::TCP_KEEPIDLE,
            len: 4,
            bytes: [9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        };
        let mut buf = [0u8; 256];
        let mut e = Encoder::new(&mut buf);
        encode(&mut e, &[v, w]).unwrap();
        let n = e.len();
        assert_eq!(decode(&mut Decoder::new(&buf[..n])).unwrap(), vec![v, w]);
        assert_eq!(words(&v), "3.000000s");
        assert_eq!(words(&w), "9");

        let bad = |values: &[Value]| {
            let mut buf = [0u8; 256];
            let mut e = Encoder::new(&mut buf);
            encode(&mut e, values).unwrap();
            let n = e.len();
            decode(&mut Decoder::new(&buf[..n])).is_err()
        };
        // Not in the table (SO_ATTACH_FILTER), and one option twice.
        let filter = Value {
            name: libc::SO_ATTACH_FILTER,
            ..w
        };
        assert!(bad(&[filter]));
        assert!(bad(&[w, w]));
    }

    #[test]
    fn a_value_set_on_a_socket_is_captured_and_applied_to_another() {
        // SAFETY: sockets of this test, closed at the end.
        let (a, b) = unsafe {
            (
                libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0),
                libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0),
            )
        };
        assert!(a >= 0 && b >= 0);
        let tv = libc::timeval {
            tv_sec: 2,
            tv_usec: 500_000,
        };
        // SAFETY: setsockopt reads the timeval of the size given.
        let r = unsafe {
            libc::setsockopt(
                a,
                SOL,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0);
        assert_eq!(
            super::super::capture::setopt(a, TCP, libc::TCP_KEEPCNT, 7),
            0
        );
        let mut out = [EMPTY; MAX_KEPT];
        let n = capture(a, libc::AF_INET, libc::SOCK_STREAM, &mut out);
        let said = describe(&out[..n], libc::AF_INET, libc::SOCK_STREAM);
        assert!(said.contains("SO_RCVTIMEO=2.500000s"), "{said}");
        assert!(said.contains("TCP_KEEPCNT=7"), "{said}");
        assert!(!said.contains("IP_TTL"), "{said}");
        apply(b, &out[..n], "test").unwrap();
        assert_eq!(super::super::capture::getopt(b, TCP, libc::TCP_KEEPCNT), 7);
        let mut m = [EMPTY; MAX_KEPT];
        let nb = capture(b, libc::AF_INET, libc::SOCK_STREAM, &mut m);
        assert_eq!(&m[..nb], &out[..n]);
        // SAFETY: closing the sockets made above.
        unsafe {
            libc::close(a);
            libc::close(b);
        }
    }
}
