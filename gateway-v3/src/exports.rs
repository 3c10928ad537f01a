//! Export rules the gateway applies to its v3 clients, as the MDS applies them to its own
//! (client address ranges, read-only, root squash, security flavors). The MDS sees only the
//! gateway's address, so these rules are the gateway's to enforce.
use std::net::IpAddr;
use std::sync::Arc;

/// Whether an address may use an export.
pub type Admits = Arc<dyn Fn(IpAddr) -> bool + Send + Sync>;

#[derive(Clone)]
pub struct ExportRule {
    /// Path in the file system ("/" for all of it), as the MDS's export.
    pub path: String,
    /// The export id the MDS writes into its handles for this export.
    pub id: u32,
    pub admits: Admits,
    /// The address ranges, as configured (for MOUNT's EXPORT list).
    pub clients: Vec<String>,
    pub read_only: bool,
    pub root_squash: bool,
    pub anon_uid: u32,
    pub anon_gid: u32,
    /// The flavors v3 clients may use, in the order MOUNT announces them (Linux takes the
    /// first it supports unless `sec=` says otherwise): `AUTH_SYS` and the Kerberos
    /// pseudo-flavors `krb::PSEUDO_KRB5`, `PSEUDO_KRB5I`, `PSEUDO_KRB5P`. A call in a flavor
    /// not listed gets NFS3ERR_ACCES, as knfsd answers it.
    pub sec: Vec<u32>,
}

impl std::fmt::Debug for ExportRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportRule")
            .field("path", &self.path)
            .field("id", &self.id)
            .field("clients", &self.clients)
            .field("read_only", &self.read_only)
            .field("root_squash", &self.root_squash)
            .field("sec", &self.sec)
            .finish()
    }
}

impl ExportRule {
    /// The whole file system to anyone, read-write, no squashing (the embedded default's).
    pub fn open(path: &str, id: u32) -> ExportRule {
        ExportRule {
            path: path.to_string(),
            id,
            admits: Arc::new(|_| true),
            clients: vec!["*".into()],
            read_only: false,
            root_squash: false,
            anon_uid: 65534,
            anon_gid: 65534,
            sec: vec![proto::rpc::AUTH_SYS],
        }
    }

    /// Whether a call in `flavor` (`creds::Cred::flavor`) may use this export.
    pub fn allows(&self, flavor: u32) -> bool {
        self.sec.contains(&flavor)
    }
}

/// The configured exports.
#[derive(Debug, Clone, Default)]
pub struct Exports(pub Vec<ExportRule>);

impl Exports {
    /// The export a handle was minted in.
    pub fn by_id(&self, id: u32) -> Option<&ExportRule> {
        self.0.iter().find(|e| e.id == id)
    }

    /// The export a MOUNT path lies in, and the components below the export's root (a v3
    /// client may mount a subdirectory of an export, as with knfsd).
    pub fn for_mount<'p>(&self, path: &'p str) -> Option<(&ExportRule, Vec<&'p str>)> {
        let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        self.0
            .iter()
            .filter_map(|e| {
                let ec: Vec<&str> = e.path.split('/').filter(|c| !c.is_empty()).collect();
                (comps.len() >= ec.len() && comps[..ec.len()] == ec[..])
                    .then(|| (e, comps[ec.len()..].to_vec(), ec.len()))
            })
            .max_by_key(|(_, _, depth)| *depth)
            .map(|(e, rest, _)| (e, rest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_paths_find_the_deepest_export() {
        let x = Exports(vec![ExportRule::open("/", 1), ExportRule::open("/a/b", 2)]);
        let (e, rest) = x.for_mount("/a/b/c").unwrap();
        assert_eq!((e.id, rest), (2, vec!["c"]));
        let (e, rest) = x.for_mount("/a").unwrap();
        assert_eq!((e.id, rest), (1, vec!["a"]));
        let only = Exports(vec![ExportRule::open("/p", 3)]);
        assert!(only.for_mount("/q").is_none());
        assert!(only.for_mount("/").is_none());
        assert_eq!(only.for_mount("/p/").unwrap().0.id, 3);
    }
}
