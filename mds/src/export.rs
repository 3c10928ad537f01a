//! Export rules: which client addresses may mount, read-write or read-only, root squash and
//! the security flavors allowed.
use std::net::IpAddr;
use std::str::FromStr;
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ExportError {
    #[error("invalid address range {0:?} (expected ADDR/PREFIX, e.g. 127.0.0.0/8)")]
    BadRange(String),
    #[error("unknown security flavor {0:?} (expected sys, krb5, krb5i or krb5p)")]
    BadFlavor(String),
    #[error("export path {0:?} must be absolute")]
    BadPath(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrRange {
    base: IpAddr,
    prefix: u8,
}

impl AddrRange {
    pub fn any() -> Vec<AddrRange> {
        vec![
            AddrRange {
                base: IpAddr::from([0u8; 4]),
                prefix: 0,
            },
            AddrRange {
                base: IpAddr::from([0u16; 8]),
                prefix: 0,
            },
        ]
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 client seen through a dual-stack socket arrives as ::ffff:a.b.c.d.
        let ip = match ip {
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map(IpAddr::V4)
                .unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        match (self.base, ip) {
            (IpAddr::V4(b), IpAddr::V4(a)) => prefix_eq(&b.octets(), &a.octets(), self.prefix),
            (IpAddr::V6(b), IpAddr::V6(a)) => prefix_eq(&b.octets(), &a.octets(), self.prefix),
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = (prefix / 8) as usize;
    let rest = prefix % 8;
    if a[..full] != b[..full] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    (a[full] & mask) == (b[full] & mask)
}

impl FromStr for AddrRange {
    type Err = ExportError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ExportError::BadRange(s.to_string());
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (s, None),
        };
        let base: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if base.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(AddrRange { base, prefix })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecFlavor {
    Sys,
    Krb5,
    Krb5i,
    Krb5p,
}

impl FromStr for SecFlavor {
    type Err = ExportError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sys" => Ok(SecFlavor::Sys),
            "krb5" => Ok(SecFlavor::Krb5),
            "krb5i" => Ok(SecFlavor::Krb5i),
            "krb5p" => Ok(SecFlavor::Krb5p),
            other => Err(ExportError::BadFlavor(other.to_string())),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Export {
    /// Path inside the file system, "/" for the whole namespace.
    pub path: String,
    pub clients: Vec<AddrRange>,
    pub read_only: bool,
    pub root_squash: bool,
    pub sec: Vec<SecFlavor>,
    /// uid/gid root is mapped to when squashed (nobody).
    pub anon_uid: u32,
    pub anon_gid: u32,
}

impl Export {
    pub fn new(path: &str) -> Result<Export, ExportError> {
        if !path.starts_with('/') {
            return Err(ExportError::BadPath(path.to_string()));
        }
        Ok(Export {
            path: path.to_string(),
            clients: AddrRange::any(),
            read_only: false,
            root_squash: false,
            sec: vec![SecFlavor::Sys],
            anon_uid: 65534,
            anon_gid: 65534,
        })
    }

    pub fn admits(&self, ip: IpAddr) -> bool {
        self.clients.iter().any(|r| r.contains(ip))
    }

    /// The identity a request runs as after squashing.
    pub fn map_ids(&self, uid: u32, gid: u32) -> (u32, u32) {
        if self.root_squash && uid == 0 {
            (self.anon_uid, self.anon_gid)
        } else {
            (uid, gid)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let r: AddrRange = "10.0.2.0/24".parse().unwrap();
        assert!(r.contains("10.0.2.15".parse().unwrap()));
        assert!(!r.contains("10.0.3.15".parse().unwrap()));
        assert!(r.contains("::ffff:10.0.2.9".parse().unwrap()));
        let r: AddrRange = "127.0.0.0/9".parse().unwrap();
        assert!(r.contains("127.127.0.1".parse().unwrap()));
        assert!(!r.contains("127.128.0.1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<AddrRange>().is_err());
        assert!("nonsense".parse::<AddrRange>().is_err());
        assert!(AddrRange::any()
            .iter()
            .any(|r| r.contains("::1".parse().unwrap())));
    }

    #[test]
    fn squash() {
        let mut e = Export::new("/").unwrap();
        assert_eq!(e.map_ids(0, 0), (0, 0));
        e.root_squash = true;
        assert_eq!(e.map_ids(0, 0), (65534, 65534));
        assert_eq!(e.map_ids(5, 6), (5, 6));
        assert!(Export::new("rel").is_err());
    }
}
