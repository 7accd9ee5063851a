//! Socket addresses as nctls reads and shows them.
//!
//! - IPv6 zones by interface name: `[fe80::1%eth0]:6513` (or by index,
//!   `%2`), shown by name again wherever an address is printed.
//! - One form per client: an IPv4 client reaching a dual-stack `[::]`
//!   listener arrives as `::ffff:a.b.c.d`; [`canonical`] turns it back into
//!   IPv4 once, at accept, so headers, logs and per-address limits agree.

use std::ffi::{CStr, CString};
use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6};

/// Parses a literal `IP:PORT`, IPv6 in brackets with an optional zone
/// (`[fe80::1%lo]:7000`, `[fe80::1%1]:7000`). No name lookup.
pub fn parse_ip_port(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let (host, port) = s
        .strip_prefix('[')
        .and_then(|rest| rest.split_once("]:"))
        .ok_or_else(|| format!("{s:?} is not IP:PORT"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{s:?}: {port:?} is not a port number"))?;
    let (ip, zone) = host
        .split_once('%')
        .ok_or_else(|| format!("{s:?} is not IP:PORT"))?;
    let ip: Ipv6Addr = ip
        .parse()
        .map_err(|_| format!("{s:?}: {ip:?} is not an IPv6 address"))?;
    let scope = zone_index(zone).map_err(|why| format!("{s:?}: {why}"))?;
    Ok(SocketAddr::V6(SocketAddrV6::new(ip, port, 0, scope)))
}

/// A zone as written after `%`: an interface name or index.
fn zone_index(zone: &str) -> Result<u32, String> {
    if zone.is_empty() {
        return Err("empty zone after %".into());
    }
    if zone.bytes().all(|b| b.is_ascii_digit()) {
        return zone
            .parse()
            .map_err(|_| format!("zone {zone:?} is out of range"));
    }
    interface_index(zone).ok_or_else(|| format!("no network interface named {zone:?}"))
}

/// The one form nctls uses for a peer: IPv4-mapped IPv6 as IPv4.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

/// Shows an address as `IP:PORT`, `[IPv6]:PORT` or `[IPv6%zone]:PORT`,
/// the zone by interface name when the interface still exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Show(pub SocketAddr);

impl fmt::Display for Show {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            SocketAddr::V4(v4) => write!(f, "{v4}"),
            SocketAddr::V6(_) => write!(f, "[{}]:{}", ShowIp(self.0), self.0.port()),
        }
    }
}

/// Shows only the IP of an address, with its zone: `192.0.2.1`, `::1`,
/// `fe80::1%eth0` (the session headers' source field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShowIp(pub SocketAddr);

impl fmt::Display for ShowIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            SocketAddr::V4(v4) => write!(f, "{}", v4.ip()),
            SocketAddr::V6(v6) if v6.scope_id() == 0 => write!(f, "{}", v6.ip()),
            SocketAddr::V6(v6) => match interface_name(v6.scope_id()) {
                Some(name) => write!(f, "{}%{name}", v6.ip()),
                None => write!(f, "{}%{}", v6.ip(), v6.scope_id()),
            },
        }
    }
}

/// The index of the network interface called `name` (`if_nametoindex`).
pub fn interface_index(name: &str) -> Option<u32> {
    let name = CString::new(name).ok()?;
    // SAFETY: a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

/// The name of the network interface with `index` (`if_indextoname`).
pub fn interface_name(index: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: the buffer holds IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: on success the buffer holds a NUL-terminated name.
    let name = unsafe { CStr::from_ptr(buf.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_interface_by_name_and_index() {
        assert_eq!(interface_index("lo"), Some(1));
        assert_eq!(interface_name(1).as_deref(), Some("lo"));
        assert_eq!(interface_index("no-such-if0"), None);
        assert_eq!(interface_index("l\0o"), None);
    }

    #[test]
    fn literals_with_and_without_zones() {
        assert_eq!(
            parse_ip_port("192.0.2.1:6513").unwrap(),
            "192.0.2.1:6513".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            parse_ip_port("[::]:6513").unwrap(),
            "[::]:6513".parse::<SocketAddr>().unwrap()
        );
        // The loopback interface is index 1 on Linux and always exists.
        let lo = parse_ip_port("[fe80::1%lo]:7000").unwrap();
        let by_index = parse_ip_port("[fe80::1%1]:7000").unwrap();
        assert_eq!(lo, by_index);
        match lo {
            SocketAddr::V6(v6) => assert_eq!((v6.scope_id(), v6.port()), (1, 7000)),
            SocketAddr::V4(_) => panic!("{lo}"),
        }
        assert_eq!(Show(lo).to_string(), "[fe80::1%lo]:7000");
        assert_eq!(ShowIp(lo).to_string(), "fe80::1%lo");
    }

    #[test]
    fn bad_literals_say_why() {
        for (input, why) in [
            ("localhost", "is not IP:PORT"),
            ("localhost:80", "is not IP:PORT"),
            ("[fe80::1%no-such-if0]:7000", "no network interface named"),
            ("[fe80::1%]:7000", "empty zone"),
            ("[fe80::1%lo]:x", "is not a port number"),
            ("[fe80::1%lo]", "is not IP:PORT"),
            ("[nonsense%lo]:1", "is not an IPv6 address"),
        ] {
            let err = parse_ip_port(input).unwrap_err();
            assert!(err.contains(why), "{input}: {err}");
        }
    }

    #[test]
    fn mapped_ipv4_becomes_ipv4() {
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:47776".parse().unwrap();
        assert_eq!(canonical(mapped).to_string(), "127.0.0.1:47776");
        let v6: SocketAddr = "[::1]:5".parse().unwrap();
        assert_eq!(canonical(v6), v6);
        assert_eq!(Show(canonical(mapped)).to_string(), "127.0.0.1:47776");
        assert_eq!(Show(v6).to_string(), "[::1]:5");
    }
}
