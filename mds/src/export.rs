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
    #[error("export path {0:?} must be absolute, without \".\", \"..\" or empty components")]
    BadPath(String),
    #[error("exports {0:?} and {1:?} nest (one contains the other); export disjoint trees")]
    Nested(String, String),
    #[error("export {0:?} is listed twice")]
    Duplicate(String),
    #[error("exports {0:?} and {1:?} have the same export id; rename one")]
    IdClash(String, String),
    #[error("unknown ec_reads {0:?} (expected auto, striped or assembled)")]
    BadEcReads(String),
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

/// How clients read erasure-coded files of an export (`ec_reads` in `[[export]]`; docs/EC.md
/// "Reads"): which READ layout LAYOUTGET hands out for an encoded file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EcReads {
    /// Striped (the k data-shard servers) for clients whose EXCHANGE_ID implementation id says
    /// Linux 6.18 or later, one assembling data server per mirror for everyone else.
    #[default]
    Auto,
    /// Striped for every client: for a client known to stripe that does not send an
    /// implementation id (Linux with `send_implementation_id=0`). Linux before 6.18 cannot
    /// decode a striped layout (docs/EC.md, how the Linux client reads one, item 4).
    Striped,
    /// One assembling data server per mirror for every client (e.g. to compare, or to keep
    /// a client's reads on one server).
    Assembled,
}

impl FromStr for EcReads {
    type Err = ExportError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(EcReads::Auto),
            "striped" => Ok(EcReads::Striped),
            "assembled" => Ok(EcReads::Assembled),
            other => Err(ExportError::BadEcReads(other.to_string())),
        }
    }
}

/// The export id of the pseudo file system (RFC 8881 §7) in file handles.
pub const PSEUDO_ID: u32 = 0;

#[derive(Debug, Clone)]
pub struct Export {
    /// Path inside the file system, "/" for the whole namespace; normalised (no trailing '/').
    pub path: String,
    /// Names the export in file handles: derived from the path, so it stays the same across
    /// restarts and reorderings of the configuration (a handle stays valid while its export
    /// is configured). Never [`PSEUDO_ID`].
    pub id: u32,
    pub clients: Vec<AddrRange>,
    pub read_only: bool,
    pub root_squash: bool,
    pub sec: Vec<SecFlavor>,
    /// NFSv3 gateways' addresses: their AUTH_SYS calls are accepted whatever `sec` lists. A
    /// gateway checks its own clients' flavors (krb5p between client and gateway) and
    /// forwards each call with the caller's mapped ids, which only AUTH_SYS can carry (see
    /// the README's gateway section). Empty by default.
    pub gateways: Vec<AddrRange>,
    /// uid/gid root is mapped to when squashed (nobody).
    pub anon_uid: u32,
    pub anon_gid: u32,
    /// READ layouts of erasure-coded files (`ec_reads`; default auto).
    pub ec_reads: EcReads,
}

impl Export {
    pub fn new(path: &str) -> Result<Export, ExportError> {
        let path = normalise(path)?;
        Ok(Export {
            id: export_id(&path),
            path,
            clients: AddrRange::any(),
            read_only: false,
            root_squash: false,
            sec: vec![SecFlavor::Sys],
            gateways: Vec::new(),
            anon_uid: 65534,
            anon_gid: 65534,
            ec_reads: EcReads::Auto,
        })
    }

    /// The pseudo file system's directories: read-only, and nobody is root there.
    pub fn pseudo() -> Export {
        Export {
            path: "/".to_string(),
            id: PSEUDO_ID,
            clients: AddrRange::any(),
            read_only: true,
            root_squash: true,
            sec: vec![SecFlavor::Sys],
            gateways: Vec::new(),
            anon_uid: 65534,
            anon_gid: 65534,
            ec_reads: EcReads::Auto,
        }
    }

    pub fn admits(&self, ip: IpAddr) -> bool {
        self.clients.iter().any(|r| r.contains(ip))
    }

    /// Whether a call in `flavor` from `ip` may use this export.
    pub fn allows(&self, flavor: SecFlavor, ip: IpAddr) -> bool {
        self.sec.contains(&flavor)
            || (flavor == SecFlavor::Sys && self.gateways.iter().any(|r| r.contains(ip)))
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

/// "/a//b/" is "/a/b"; relative paths and "." or ".." components are refused (an export
/// path is compared with others as a string, so it must have one spelling).
fn normalise(path: &str) -> Result<String, ExportError> {
    let bad = || ExportError::BadPath(path.to_string());
    let rest = path.strip_prefix('/').ok_or_else(bad)?;
    let mut out = String::new();
    for c in rest.split('/').filter(|c| !c.is_empty()) {
        if c == "." || c == ".." || c.contains('\0') {
            return Err(bad());
        }
        out.push('/');
        out.push_str(c);
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

fn export_id(path: &str) -> u32 {
    let h = blake3::hash(&[b"cfs export id\0".as_slice(), path.as_bytes()].concat());
    let mut b = [0u8; 4];
    b.copy_from_slice(&h.as_bytes()[..4]);
    match u32::from_be_bytes(b) {
        PSEUDO_ID => 1,
        id => id,
    }
}

/// Whether `inner` lies strictly below `outer` (both normalised).
pub fn strictly_below(outer: &str, inner: &str) -> bool {
    if outer == "/" {
        return inner != "/";
    }
    inner.len() > outer.len() && inner.starts_with(outer) && inner.as_bytes()[outer.len()] == b'/'
}

/// Checks a set of exports can be served together: every object belongs to at most one
/// export (no nesting), and ids are unique.
pub fn check_exports(exports: &[Export]) -> Result<(), ExportError> {
    for (i, a) in exports.iter().enumerate() {
        for b in &exports[i + 1..] {
            if a.path == b.path {
                return Err(ExportError::Duplicate(a.path.clone()));
            }
            if strictly_below(&a.path, &b.path) || strictly_below(&b.path, &a.path) {
                return Err(ExportError::Nested(a.path.clone(), b.path.clone()));
            }
            if a.id == b.id {
                return Err(ExportError::IdClash(a.path.clone(), b.path.clone()));
            }
        }
    }
    Ok(())
}

/// The names in pseudo directory `dir` (a normalised path): the next component of every
/// export path below it, each once, in order.
pub fn pseudo_entries<'a>(paths: impl Iterator<Item = &'a str>, dir: &str) -> Vec<String> {
    let mut names: Vec<String> = paths
        .filter(|p| strictly_below(dir, p))
        .filter_map(|p| {
            let rest = if dir == "/" {
                &p[1..]
            } else {
                &p[dir.len() + 1..]
            };
            rest.split('/').next().map(str::to_string)
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// `dir/name` for a normalised directory path.
pub fn join(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// The parent of a normalised path ("/" for "/" itself).
pub fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateways_get_sys_on_a_kerberos_only_export_and_no_one_else_does() {
        let mut e = Export::new("/s").unwrap();
        e.sec = vec![SecFlavor::Krb5p];
        let gw: IpAddr = "10.0.0.7".parse().unwrap();
        let other: IpAddr = "10.0.0.8".parse().unwrap();
        assert!(!e.allows(SecFlavor::Sys, gw));
        e.gateways = vec!["10.0.0.7/32".parse().unwrap()];
        assert!(e.allows(SecFlavor::Sys, gw));
        assert!(!e.allows(SecFlavor::Sys, other));
        // only AUTH_SYS: a gateway's krb5 calls get the export's own rule
        assert!(!e.allows(SecFlavor::Krb5, gw));
        assert!(e.allows(SecFlavor::Krb5p, other));
    }

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

    #[test]
    fn paths_and_sets() {
        assert_eq!(Export::new("/a//b/").unwrap().path, "/a/b");
        assert_eq!(Export::new("/").unwrap().path, "/");
        assert_eq!(Export::new("//").unwrap().path, "/");
        assert!(Export::new("/a/../b").is_err());
        assert_ne!(Export::new("/a").unwrap().id, Export::new("/b").unwrap().id);
        assert_eq!(
            Export::new("/a").unwrap().id,
            Export::new("/a/").unwrap().id
        );
        let set = |ps: &[&str]| {
            ps.iter()
                .map(|p| Export::new(p).unwrap())
                .collect::<Vec<_>>()
        };
        assert!(check_exports(&set(&["/a", "/b/c"])).is_ok());
        assert!(check_exports(&set(&["/a", "/ab"])).is_ok());
        assert_eq!(
            check_exports(&set(&["/a", "/a/b"])),
            Err(ExportError::Nested("/a".into(), "/a/b".into()))
        );
        assert!(check_exports(&set(&["/", "/a"])).is_err());
        assert!(check_exports(&set(&["/a", "/a"])).is_err());
        let paths = ["/a", "/b/c", "/b/d/e"];
        assert_eq!(pseudo_entries(paths.into_iter(), "/"), vec!["a", "b"]);
        assert_eq!(pseudo_entries(paths.into_iter(), "/b"), vec!["c", "d"]);
        assert!(pseudo_entries(paths.into_iter(), "/a").is_empty());
        assert_eq!(parent("/b/c"), "/b");
        assert_eq!(parent("/b"), "/");
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/b", "c"), "/b/c");
    }
}
