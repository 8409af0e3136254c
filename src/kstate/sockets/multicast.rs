//! The multicast groups an IP datagram or raw socket has joined
//! (`IP_ADD_MEMBERSHIP`, `MCAST_JOIN_GROUP`, their source filters), kept
//! in the socket's entry and joined again at restart. Without them a
//! restarted receiver of a group waits for datagrams that no longer
//! reach it, silently.
//!
//! The kernel lists no socket's groups, but it lists every group joined
//! on each interface of the network namespace (`/proc/net/igmp`,
//! `/proc/net/igmp6`), and `getsockopt(MCAST_MSFILTER)` of one (interface,
//! group) answers for one socket: `EADDRNOTAVAIL` if it is no member, else
//! its filter mode and sources. Capture asks that of every group listed:
//! the kernel's own view, whoever joined (a program's `setsockopt`, a Go
//! runtime's raw system call).
//!
//! Capture ([`Candidates::read`], [`capture`]) runs while the program's
//! threads are suspended: fixed arrays on the stack, never allocating.
//! Restore ([`join`]) runs in the restarter on the new socket: joins each
//! group on its interface and sets its filter; a group it cannot join
//! again fails the socket's restore with its name.

use crate::capture::sys;
use crate::image::codec::{CodecError, Decoder, Encoder};

/// The most groups one socket keeps (the kernel's default
/// `igmp_max_memberships` is 20); more are named at checkpoint.
pub const MAX_GROUPS: usize = 32;
/// The most sources one group's filter keeps (the default
/// `igmp_max_msf` is 10); more are named at checkpoint.
pub const MAX_SOURCES: usize = 16;
/// The most groups the namespace's interfaces may list for a capture to
/// be sure of every socket's.
const MAX_CANDIDATES: usize = 256;

/// `MCAST_INCLUDE`: only the sources listed; `MCAST_EXCLUDE` (0): all but.
const MCAST_INCLUDE: u32 = 1;
/// `getsockopt`/`setsockopt` of a group's source filter (`<netinet/in.h>`).
const MCAST_MSFILTER: i32 = 48;
/// `setsockopt` joining a group on an interface by index.
const MCAST_JOIN_GROUP: i32 = 42;

/// One group a socket has joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Membership {
    /// The group's family: `AF_INET` or `AF_INET6`.
    pub family: u16,
    /// The interface it was joined on (the kernel's choice when the
    /// program named none).
    pub ifindex: u32,
    /// The group's address (an IPv4 one in the first four bytes).
    pub group: [u8; 16],
    /// Source filter: only `sources` (true), or all but `sources`.
    pub include: bool,
    pub nsrc: u8,
    pub sources: [[u8; 16]; MAX_SOURCES],
}

/// A slot before it is read.
pub const EMPTY: Membership = Membership {
    family: 0,
    ifindex: 0,
    group: [0; 16],
    include: false,
    nsrc: 0,
    sources: [[0; 16]; MAX_SOURCES],
};

impl Membership {
    fn sources(&self) -> &[[u8; 16]] {
        &self.sources[..self.nsrc as usize]
    }
}

/// The groups joined on the namespace's interfaces: what each socket is
/// asked about.
pub struct Candidates {
    list: [(u16, u32, [u8; 16]); MAX_CANDIDATES],
    n: usize,
    /// More were listed than [`MAX_CANDIDATES`], or a list could not be
    /// read whole: no socket's groups are certain.
    pub incomplete: bool,
}

impl Candidates {
    /// None (a process without IP datagram or raw sockets asks nothing).
    pub fn none() -> Candidates {
        Candidates {
            list: [(0, 0, [0; 16]); MAX_CANDIDATES],
            n: 0,
            incomplete: false,
        }
    }

    /// Reads `/proc/net/igmp` and `/proc/net/igmp6` through `buf`. No
    /// allocation. A namespace without IPv6 (no igmp6) is no error.
    pub fn read(buf: &mut [u8]) -> Candidates {
        let mut c = Candidates::none();
        match sys::read_file(b"/proc/net/igmp\0", buf) {
            Ok(n) => parse_igmp(&buf[..n], &mut c),
            Err(e) if e.0 == libc::ENOENT => {}
            Err(_) => c.incomplete = true,
        }
        match sys::read_file(b"/proc/net/igmp6\0", buf) {
            Ok(n) => parse_igmp6(&buf[..n], &mut c),
            Err(e) if e.0 == libc::ENOENT => {}
            Err(_) => c.incomplete = true,
        }
        c
    }

    fn push(&mut self, family: i32, ifindex: u32, group: [u8; 16]) {
        if self.n == MAX_CANDIDATES {
            self.incomplete = true;
            return;
        }
        self.list[self.n] = (family as u16, ifindex, group);
        self.n += 1;
    }
}

/// `/proc/net/igmp`: a line per interface ("1\tlo        :     2      V3")
/// followed by a line per group ("\t\t\t\t030201EF     1 0:00000000\t\t0"),
/// the address as the host reads the network-order word.
fn parse_igmp(text: &[u8], c: &mut Candidates) {
    let mut ifindex = None;
    for line in text.split(|&b| b == b'\n').skip(1) {
        match line.first() {
            Some(b) if b.is_ascii_digit() => ifindex = sys::parse_u64(line).map(|(v, _)| v as u32),
            Some(b'\t') => {
                let word = line.split(|&b| b == b'\t').find(|w| !w.is_empty());
                let hex = word.and_then(|w| w.split(|&b| b == b' ').next());
                match (ifindex, hex.and_then(sys::parse_hex)) {
                    (Some(i), Some((v, _))) => {
                        let mut g = [0u8; 16];
                        g[..4].copy_from_slice(&(v as u32).to_ne_bytes());
                        c.push(libc::AF_INET, i, g);
                    }
                    _ => c.incomplete = true,
                }
            }
            _ => {}
        }
    }
}

/// `/proc/net/igmp6`: "1    lo   ff020000000000000000000000000001  1 0000000C 0".
fn parse_igmp6(text: &[u8], c: &mut Candidates) {
    for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let mut words = line.split(|&b| b == b' ').filter(|w| !w.is_empty());
        let ifindex = words.next().and_then(sys::parse_u64).map(|(v, _)| v as u32);
        let hex = words.nth(1).filter(|w| w.len() == 32);
        match (ifindex, hex) {
            (Some(i), Some(h)) => {
                let mut g = [0u8; 16];
                let nib = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
                let mut ok = true;
                for (k, pair) in h.chunks(2).enumerate() {
                    match (nib(pair[0]), nib(pair[1])) {
                        (Some(a), Some(b)) => g[k] = a << 4 | b,
                        _ => ok = false,
                    }
                }
                if ok {
                    c.push(libc::AF_INET6, i, g);
                } else {
                    c.incomplete = true;
                }
            }
            _ => c.incomplete = true,
        }
    }
}

/// `struct group_filter` with room for [`MAX_SOURCES`] sources.
#[repr(C)]
struct GroupFilter {
    interface: u32,
    group: libc::sockaddr_storage,
    fmode: u32,
    numsrc: u32,
    slist: [libc::sockaddr_storage; MAX_SOURCES],
}

/// `struct group_req`.
#[repr(C)]
struct GroupReq {
    interface: u32,
    group: libc::sockaddr_storage,
}

/// A `sockaddr_in`/`sockaddr_in6` of `addr` in a `sockaddr_storage`.
fn storage(family: u16, addr: &[u8; 16]) -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain old data; all zeros is valid.
    let mut ss: libc::sockaddr_storage = unsafe { core::mem::zeroed() };
    ss.ss_family = family;
    // SAFETY: sockaddr_storage is larger than both and aligned for them.
    unsafe {
        if family as i32 == libc::AF_INET {
            let sin = &mut *(&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>();
            sin.sin_addr.s_addr = u32::from_ne_bytes([addr[0], addr[1], addr[2], addr[3]]);
        } else {
            let sin6 = &mut *(&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>();
            sin6.sin6_addr.s6_addr = *addr;
        }
    }
    ss
}

/// The address in a `sockaddr_storage` of `family`.
fn address(family: u16, ss: &libc::sockaddr_storage) -> [u8; 16] {
    let mut a = [0u8; 16];
    // SAFETY: as in `storage`: the storage holds a sockaddr of `family`.
    unsafe {
        if family as i32 == libc::AF_INET {
            let sin = &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>();
            a[..4].copy_from_slice(&sin.sin_addr.s_addr.to_ne_bytes());
        } else {
            let sin6 = &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>();
            a = sin6.sin6_addr.s6_addr;
        }
    }
    a
}

fn level_of(family: u16) -> i32 {
    if family as i32 == libc::AF_INET {
        libc::IPPROTO_IP
    } else {
        libc::IPPROTO_IPV6
    }
}

/// The groups socket `fd` (of `family`, `stype`) has joined, into `out`;
/// their number, or why they cannot be kept (the socket is then named
/// at checkpoint). Only IP sockets that are not streams join groups; an
/// IPv6 one may have joined IPv4 groups too. No allocation.
pub fn capture(
    fd: i32,
    family: i32,
    stype: i32,
    c: &Candidates,
    out: &mut [Membership; MAX_GROUPS],
) -> Result<usize, &'static [u8]> {
    if !matches!(family, libc::AF_INET | libc::AF_INET6) || stype == libc::SOCK_STREAM {
        return Ok(0);
    }
    let mut n = 0;
    for &(gfam, ifindex, group) in &c.list[..c.n] {
        if family == libc::AF_INET && gfam as i32 == libc::AF_INET6 {
            continue;
        }
        // SAFETY: GroupFilter is plain old data; all zeros is valid.
        let mut gf: GroupFilter = unsafe { core::mem::zeroed() };
        gf.interface = ifindex;
        gf.group = storage(gfam, &group);
        gf.numsrc = MAX_SOURCES as u32;
        let mut len = core::mem::size_of::<GroupFilter>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `gf`.
        let r = unsafe {
            libc::getsockopt(
                fd,
                level_of(gfam),
                MCAST_MSFILTER,
                (&mut gf as *mut GroupFilter).cast(),
                &mut len,
            )
        };
        if r != 0 {
            // EADDRNOTAVAIL: not a member; anything else (an IPv6 raw
            // socket asked at the IPv4 level) says no membership either.
            continue;
        }
        if n == MAX_GROUPS {
            return Err(b" (it has joined more multicast groups than selfckpt keeps)");
        }
        if gf.numsrc as usize > MAX_SOURCES {
            return Err(b" (a multicast group's source filter is longer than selfckpt keeps)");
        }
        let m = &mut out[n];
        *m = Membership {
            family: gfam,
            ifindex,
            group,
            include: gf.fmode == MCAST_INCLUDE,
            nsrc: gf.numsrc as u8,
            ..EMPTY
        };
        for k in 0..gf.numsrc as usize {
            m.sources[k] = address(gfam, &gf.slist[k]);
        }
        n += 1;
    }
    if c.incomplete {
        return Err(b" (the host lists more multicast groups than selfckpt can check: its own groups are not certain)");
    }
    Ok(n)
}

/// Joins every group of `groups` on `fd` again, with its source filter.
/// The error names the group and the socket (`who`).
pub fn join(fd: i32, groups: &[Membership], who: &str) -> Result<(), String> {
    for m in groups {
        let fail = |what: &str| {
            format!(
                "{who}: cannot {what} multicast group {} on interface {} again: {}",
                group_words(m),
                m.ifindex,
                std::io::Error::last_os_error()
            )
        };
        let req = GroupReq {
            interface: m.ifindex,
            group: storage(m.family, &m.group),
        };
        // SAFETY: setsockopt reads the group_req.
        let r = unsafe {
            libc::setsockopt(
                fd,
                level_of(m.family),
                MCAST_JOIN_GROUP,
                (&req as *const GroupReq).cast(),
                core::mem::size_of::<GroupReq>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(fail("join"));
        }
        if !m.include && m.nsrc == 0 {
            continue;
        }
        // SAFETY: GroupFilter is plain old data; all zeros is valid.
        let mut gf: GroupFilter = unsafe { core::mem::zeroed() };
        gf.interface = m.ifindex;
        gf.group = req.group;
        gf.fmode = m.include as u32;
        gf.numsrc = m.nsrc as u32;
        for (k, s) in m.sources().iter().enumerate() {
            gf.slist[k] = storage(m.family, s);
        }
        // SAFETY: setsockopt reads the group_filter, whose sources fit.
        let r = unsafe {
            libc::setsockopt(
                fd,
                level_of(m.family),
                MCAST_MSFILTER,
                (&gf as *const GroupFilter).cast(),
                core::mem::size_of::<GroupFilter>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(fail("set the source filter of"));
        }
    }
    Ok(())
}

/// The entry's trailing field: a count u16, then per group family u16,
/// interface u32, the group (16 bytes), mode u8 (1 include), a source
/// count u8 and each source (16 bytes).
pub fn encode(e: &mut Encoder, groups: &[Membership]) -> Result<(), CodecError> {
    e.u16(groups.len() as u16)?;
    for m in groups {
        e.u16(m.family)?;
        e.u32(m.ifindex)?;
        e.bytes_raw(&m.group)?;
        e.u8(m.include as u8)?;
        e.u8(m.nsrc)?;
        for s in m.sources() {
            e.bytes_raw(s)?;
        }
    }
    Ok(())
}

fn bad(field: &'static str, value: u64) -> CodecError {
    CodecError::BadValue { field, value }
}

/// Reads the field [`encode`] writes: at most [`MAX_GROUPS`] groups, each
/// an IPv4 or IPv6 multicast address once, at most [`MAX_SOURCES`]
/// sources, an include filter with a source at least.
pub fn decode(d: &mut Decoder) -> Result<Vec<Membership>, CodecError> {
    let n = d.u16()? as usize;
    if n > MAX_GROUPS {
        return Err(bad("multicast group count", n as u64));
    }
    let mut out: Vec<Membership> = Vec::with_capacity(n);
    for _ in 0..n {
        let family = d.u16()?;
        let ifindex = d.u32()?;
        let mut group = [0u8; 16];
        group.copy_from_slice(d.take(16)?);
        let mode = d.u8()?;
        let nsrc = d.u8()?;
        let v4 = family as i32 == libc::AF_INET;
        if !v4 && family as i32 != libc::AF_INET6 {
            return Err(bad("multicast group family", family as u64));
        }
        let multicast = if v4 {
            (224..=239).contains(&group[0]) && group[4..].iter().all(|&b| b == 0)
        } else {
            group[0] == 0xff
        };
        if !multicast {
            return Err(bad("multicast group (not one)", group[0] as u64));
        }
        if mode > 1 {
            return Err(bad("multicast filter mode", mode as u64));
        }
        if nsrc as usize > MAX_SOURCES || mode == 1 && nsrc == 0 {
            return Err(bad("multicast source count", nsrc as u64));
        }
        let mut m = Membership {
            family,
            ifindex,
            group,
            include: mode == 1,
            nsrc,
            ..EMPTY
        };
        for k in 0..nsrc as usize {
            m.sources[k].copy_from_slice(d.take(16)?);
            if v4 && m.sources[k][4..].iter().any(|&b| b != 0) {
                return Err(bad("multicast source (not IPv4)", k as u64));
            }
        }
        if out
            .iter()
            .any(|o| (o.family, o.ifindex, o.group) == (family, ifindex, group))
        {
            return Err(bad("multicast group (twice)", ifindex as u64));
        }
        out.push(m);
    }
    Ok(out)
}

/// "239.1.2.3", "ff02::fb": a group or source address in words.
fn addr_words(family: u16, a: &[u8; 16]) -> String {
    if family as i32 == libc::AF_INET {
        std::net::Ipv4Addr::new(a[0], a[1], a[2], a[3]).to_string()
    } else {
        std::net::Ipv6Addr::from(*a).to_string()
    }
}

fn group_words(m: &Membership) -> String {
    addr_words(m.family, &m.group)
}

/// `inspect`'s words: " multicast 239.1.2.3 on 1 (exclude 10.0.0.9)".
pub fn describe(groups: &[Membership]) -> String {
    groups
        .iter()
        .map(|m| {
            let mut s = format!(" multicast {} on {}", group_words(m), m.ifindex);
            if m.include || m.nsrc > 0 {
                let srcs: Vec<String> = m
                    .sources()
                    .iter()
                    .map(|a| addr_words(m.family, a))
                    .collect();
                s.push_str(&format!(
                    " ({} {})",
                    if m.include { "include" } else { "exclude" },
                    srcs.join(" ")
                ));
            }
            s
        })
        .collect()
}

/// `inspect --json`.
pub fn json(groups: &[Membership]) -> serde_json::Value {
    groups
        .iter()
        .map(|m| {
            serde_json::json!({
                "group": group_words(m), "ifindex": m.ifindex,
                "mode": if m.include { "include" } else { "exclude" },
                "sources": m.sources().iter()
                    .map(|a| addr_words(m.family, a)).collect::<Vec<_>>(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: [u8; 4]) -> [u8; 16] {
        let mut g = [0; 16];
        g[..4].copy_from_slice(&a);
        g
    }

    #[test]
    fn the_proc_lists_parse_into_interface_and_group() {
        let mut c = Candidates::none();
        let igmp = b"Idx\tDevice    : Count Querier\tGroup    Users Timer\tReporter\n\
                     1\tlo        :     2      V3\n\
                     \t\t\t\t030201EF     1 0:00000000\t\t0\n\
                     \t\t\t\t010000E0     1 0:00000000\t\t0\n\
                     4\teth0      :     1      V3\n\
                     \t\t\t\t010000E0     1 0:00000000\t\t0\n";
        parse_igmp(igmp, &mut c);
        let igmp6 = b"1    lo              ff020000000000000000000000000001     1 0000000C 0\n\
                      4    eth0            ff0200000000000000000001ff000002     1 00000004 0\n";
        parse_igmp6(igmp6, &mut c);
        assert!(!c.incomplete);
        let want_first = u32::from_str_radix("030201EF", 16).unwrap().to_ne_bytes();
        assert_eq!(c.n, 5);
        assert_eq!(c.list[0], (libc::AF_INET as u16, 1, v4(want_first)));
        if cfg!(target_endian = "little") {
            assert_eq!(&c.list[0].2[..4], &[239, 1, 2, 3]);
        }
        assert_eq!(c.list[2].1, 4);
        assert_eq!(c.list[3].0, libc::AF_INET6 as u16);
        assert_eq!(c.list[4].2[13..], [0, 0, 2]);
        assert_eq!(c.list[4].2[0], 0xff);
        let mut bad = Candidates { n: 0, ..c };
        parse_igmp6(b"1 lo ff02zz\n", &mut bad);
        assert!(bad.incomplete);
    }

    #[test]
    fn a_membership_round_trips_and_hostile_ones_are_refused() {
        let mut m = Membership {
            family: libc::AF_INET as u16,
            ifindex: 3,
            group: v4([239, 1, 2, 3]),
            include: true,
            nsrc: 2,
            ..EMPTY
        };
        m.sources[0] = v4([10, 0, 0, 9]);
        m.sources[1] = v4([10, 0, 0, 10]);
        let six = Membership {
            family: libc::AF_INET6 as u16,
            ifindex: 1,
            group: [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xfb],
            ..EMPTY
        };
        let mut buf = [0u8; 1024];
        let mut e = Encoder::new(&mut buf);
        encode(&mut e, &[m, six]).unwrap();
        let bytes = e.written().to_vec();
        let mut d = Decoder::new(&bytes);
        let back = decode(&mut d).unwrap();
        assert_eq!(d.remaining(), 0);
        assert_eq!(back, vec![m, six]);
        assert_eq!(
            describe(&back),
            " multicast 239.1.2.3 on 3 (include 10.0.0.9 10.0.0.10) multicast ff02::fb on 1"
        );
        let refused = |g: &[Membership]| {
            let mut buf = [0u8; 1024];
            let mut e = Encoder::new(&mut buf);
            encode(&mut e, g).unwrap();
            decode(&mut Decoder::new(e.written())).is_err()
        };
        assert!(refused(&[Membership {
            group: v4([10, 1, 2, 3]),
            ..m
        }]));
        assert!(refused(&[Membership { family: 7, ..m }]));
        assert!(refused(&[Membership { nsrc: 0, ..m }]));
        assert!(refused(&[m, m]));
        assert!(!refused(&[m, Membership { ifindex: 4, ..m }]));
        let mut wide = m;
        wide.sources[0][8] = 1;
        assert!(refused(&[wide]));
    }

    #[test]
    fn a_joined_group_is_found_and_joined_again() {
        // SAFETY: plain socket calls on descriptors this test owns.
        let (a, b) = unsafe {
            (
                libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0),
                libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0),
            )
        };
        assert!(a >= 0 && b >= 0);
        let m = Membership {
            family: libc::AF_INET as u16,
            ifindex: 1,
            group: v4([239, 7, 7, 7]),
            nsrc: 1,
            sources: {
                let mut s = [[0; 16]; MAX_SOURCES];
                s[0] = v4([10, 9, 9, 9]);
                s
            },
            ..EMPTY
        };
        join(a, &[m], "test").unwrap();
        let mut buf = vec![0u8; 1 << 16];
        let c = Candidates::read(&mut buf);
        let mut out = [EMPTY; MAX_GROUPS];
        let n = capture(a, libc::AF_INET, libc::SOCK_DGRAM, &c, &mut out).unwrap();
        assert_eq!(&out[..n], &[m]);
        let n = capture(b, libc::AF_INET, libc::SOCK_DGRAM, &c, &mut out).unwrap();
        assert_eq!(n, 0, "a socket that joined nothing");
        // SAFETY: closing this test's descriptors.
        unsafe {
            libc::close(a);
            libc::close(b);
        }
    }
}
