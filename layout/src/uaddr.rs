//! RFC 5665 universal addresses: the host in its usual text form followed by the port as two
//! decimal octets, "h1.h2.h3.h4.p1.p2" for IPv4 and e.g. "fe80::1.8.1" for IPv6.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UaddrError {
    #[error("universal address {0:?} lacks the two port octets")]
    NoPort(String),
    #[error("universal address {0:?} has a bad port octet")]
    BadPort(String),
    #[error("universal address {0:?} has a bad host part")]
    BadHost(String),
}

/// The netid that goes with an address family ("tcp" / "tcp6", RFC 5665 §5.1).
pub fn netid_for(addr: &SocketAddr) -> &'static str {
    match addr {
        SocketAddr::V4(_) => "tcp",
        SocketAddr::V6(_) => "tcp6",
    }
}

/// Formats a socket address as a universal address. IPv6 scope ids and flow labels have no
/// place in the format and are dropped.
pub fn to_uaddr(addr: &SocketAddr) -> String {
    let p = addr.port();
    // Rust's Ipv6Addr display is the RFC 5952 canonical form RFC 5665 asks for.
    format!("{}.{}.{}", addr.ip(), p >> 8, p & 0xff)
}

fn port_octet(s: &str, whole: &str) -> Result<u16, UaddrError> {
    // Strict decimal: u8::from_str would also take "+7".
    if s.is_empty() || s.len() > 3 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UaddrError::BadPort(whole.to_owned()));
    }
    s.parse::<u8>()
        .map(u16::from)
        .map_err(|_| UaddrError::BadPort(whole.to_owned()))
}

/// Parses a universal address (IPv4, IPv6, or IPv4-mapped IPv6 such as "::ffff:1.2.3.4.8.1").
pub fn from_uaddr(s: &str) -> Result<SocketAddr, UaddrError> {
    let mut parts = s.rsplitn(3, '.');
    let (lo, hi, host) = match (parts.next(), parts.next(), parts.next()) {
        (Some(lo), Some(hi), Some(host)) => (lo, hi, host),
        _ => return Err(UaddrError::NoPort(s.to_owned())),
    };
    let port = (port_octet(hi, s)? << 8) | port_octet(lo, s)?;
    // A host with ':' is IPv6 even when it ends in dotted IPv4 (mapped addresses).
    let ip = if host.contains(':') {
        host.parse::<Ipv6Addr>().map(IpAddr::V6)
    } else {
        host.parse::<Ipv4Addr>().map(IpAddr::V4)
    }
    .map_err(|_| UaddrError::BadHost(s.to_owned()))?;
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ipv4() {
        let a: SocketAddr = "10.0.2.2:2049".parse().unwrap();
        assert_eq!(to_uaddr(&a), "10.0.2.2.8.1");
        assert_eq!(from_uaddr("10.0.2.2.8.1"), Ok(a));
        assert_eq!(netid_for(&a), "tcp");
        assert_eq!(
            to_uaddr(&"127.0.0.1:65535".parse().unwrap()),
            "127.0.0.1.255.255"
        );
        assert_eq!(to_uaddr(&"0.0.0.0:0".parse().unwrap()), "0.0.0.0.0.0");
    }

    #[test]
    fn ipv6() {
        let a: SocketAddr = "[fe80::1]:2049".parse().unwrap();
        assert_eq!(to_uaddr(&a), "fe80::1.8.1");
        assert_eq!(from_uaddr("fe80::1.8.1"), Ok(a));
        assert_eq!(netid_for(&a), "tcp6");
        let any: SocketAddr = "[::]:20048".parse().unwrap();
        assert_eq!(to_uaddr(&any), "::.78.80");
        assert_eq!(from_uaddr("::.78.80"), Ok(any));
        let mapped: SocketAddr = "[::ffff:10.0.2.2]:2049".parse().unwrap();
        assert_eq!(to_uaddr(&mapped), "::ffff:10.0.2.2.8.1");
        assert_eq!(from_uaddr("::ffff:10.0.2.2.8.1"), Ok(mapped));
        let full: SocketAddr = "[2001:db8:0:1:2:3:4:5]:1".parse().unwrap();
        assert_eq!(from_uaddr(&to_uaddr(&full)), Ok(full));
    }

    #[test]
    fn rejects_garbage() {
        for s in [
            "",
            ".",
            "..",
            "1.2.3.4",
            "1.2.3.4.8",
            "1.2.3.4.256.1",
            "1.2.3.4.+8.1",
            "1.2.3.4.8.-1",
            "1.2.3.4.0008.1",
            "1.2.3.8.1",
            "1.2.3.4.5.8.1",
            "fe80::g.8.1",
            "[::1].8.1",
            "host.example.8.1",
            "1.2.3.4. 8.1",
        ] {
            assert!(from_uaddr(s).is_err(), "{s:?}");
        }
    }

    proptest! {
        #[test]
        fn round_trips_v4(ip in any::<[u8; 4]>(), port in any::<u16>()) {
            let a = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port);
            prop_assert_eq!(from_uaddr(&to_uaddr(&a)), Ok(a));
        }

        #[test]
        fn round_trips_v6(ip in any::<[u16; 8]>(), port in any::<u16>()) {
            let a = SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port);
            prop_assert_eq!(from_uaddr(&to_uaddr(&a)), Ok(a));
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,60}") {
            let _ = from_uaddr(&s);
        }
    }
}
