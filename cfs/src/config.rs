//! Server configuration: a TOML file, overridden by command-line flags. With neither, the
//! embedded default: one node, data in ./cfs-data, NFS on 127.0.0.1:2049, "/" exported
//! read-write to loopback and qemu user-mode guests.
use mds::config::{AddrRange, Export, ExportError, SecFlavor};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("bad config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("bad export: {0}")]
    Export(#[from] ExportError),
    #[error("bad listen address {0:?} (expected HOST:PORT, e.g. 127.0.0.1:2049)")]
    Listen(String),
    #[error("unknown role {0:?} (roles are \"mds\", \"ds\" and \"gateway-v3\")")]
    Role(String),
    #[error("the ds role needs [cluster] mds = \"HOST:PORT\" (or --mds; several MDS nodes: \"HOST:PORT,HOST:PORT,...\")")]
    NoMds,
    #[error("the gateway-v3 role needs [gateway] mds = \"HOST:PORT\" (or --mds) when no mds role runs beside it")]
    NoMdsForGateway,
    #[error("[cluster] metadata_nodes: {0}")]
    MetadataNodes(String),
    #[error("a cluster needs a secret: [cluster] secret_file (or --cluster-secret-file)")]
    NoSecret,
    #[error("cluster secret in {path}: {message}")]
    Secret { path: PathBuf, message: String },
    #[error("chunk_size {0} must be a power of two between 4096 and 1073741824")]
    ChunkSize(u64),
    #[error("[cluster] {0}")]
    Scrub(String),
    #[error("[cluster] {0}")]
    Reduce(String),
    #[error("[connections] {0} must be at least 1")]
    Connections(&'static str),
    #[error("lease_seconds = {0} is too short: clients renew at half the lease, so use at least {min} (30 is usual)", min = MIN_LEASE_SECONDS)]
    Lease(u32),
    #[error("--data {0}: it is a file, not a directory. Point --data (or `data =`) at a directory; it is created if missing")]
    DataNotDir(PathBuf),
    #[error("--data {path}: cannot create it under {parent}: {why}. Choose a directory you can write, or create it first")]
    DataParent {
        path: PathBuf,
        parent: PathBuf,
        why: String,
    },
    #[error("{what} {addr} is busy ({why}): another server (cfs, knfsd, ganesha?) listens there; `ss -ltnp 'sport = :{port}'` shows which. Stop it or choose another address", port = addr.port())]
    Busy {
        what: &'static str,
        addr: SocketAddr,
        why: String,
    },
    #[error("[tier] {0}")]
    Tier(#[from] crate::tier_config::TierConfigError),
    #[error("[snapshots] {0}")]
    Snapshots(#[from] crate::snapshot_config::SnapshotConfigError),
    #[error("{0}")]
    Encryption(#[from] crate::encryption_config::EncryptionConfigError),
    #[error("export {path:?} does not exist in the file system in {data}. Create it first (export \"/\" and run `cfs mkdir -p {path}`), or remove that [[export]]")]
    ExportMissing { path: String, data: PathBuf },
}

/// Shortest lease accepted: the laundromat runs every half lease, and Linux renews at 2/3.
pub const MIN_LEASE_SECONDS: u32 = 5;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data: Option<PathBuf>,
    pub listen: Option<String>,
    pub lease_seconds: Option<u32>,
    pub grace_seconds: Option<u32>,
    /// `write_delegations = false`: grant read delegations only (default: write ones too).
    pub write_delegations: Option<bool>,
    #[serde(default, rename = "export")]
    pub exports: Vec<ExportConfig>,
    /// Which roles this process runs: "mds", "ds" or both; default ["mds"].
    pub roles: Option<Vec<String>>,
    pub cluster: Option<ClusterFileConfig>,
    /// `[connections]`: bounds on each listener's connections (the NFS port and the DS port).
    pub connections: Option<ConnectionsConfig>,
    /// `[admin]`: the HTTP listener for `/metrics`, the console and `cfs admin`.
    pub admin: Option<AdminConfig>,
    /// `[kerberos]`: keytab and principal mapping (see `kerberos.rs`).
    pub kerberos: Option<crate::kerberos::KerberosConfig>,
    /// `[gateway]`: the NFSv3 gateway (role "gateway-v3").
    pub gateway: Option<GatewayFileConfig>,
    /// `[tier]`: an S3-compatible bucket behind flash (see `tier_config.rs`).
    pub tier: Option<crate::tier_config::TierFileConfig>,
    /// `[encryption]`: the key file that opens the cluster's data key (see
    /// `encryption_config.rs`).
    pub encryption: Option<crate::encryption_config::EncryptionFileConfig>,
    /// `[snapshots]`: retention and schedules (see `snapshot_config.rs`).
    pub snapshots: Option<crate::snapshot_config::SnapshotsFileConfig>,
}

/// `[gateway]`: where the NFSv3 gateway listens, which MDS it is a client of, and the
/// rpcbind it registers with.
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct GatewayFileConfig {
    /// NFSv3, MOUNT, NLM and NSM on one port; default: the NFS listen address's host, port
    /// 20048 (mountd's).
    pub listen: Option<String>,
    /// The MDS; default: the MDS of this process.
    pub mds: Option<String>,
    /// The rpcbind to register with: "HOST:PORT", or "off"; default "127.0.0.1:111".
    pub rpcbind: Option<String>,
    /// NFSv4 opens held for v3 I/O at once (default 1024).
    pub open_files: Option<usize>,
    /// NLM locks held at once, all clients together (default 65536).
    pub max_locks: Option<usize>,
}

/// `[admin]`. Without the section there is no admin listener.
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Where to serve HTTP; default `DEFAULT_ADMIN_LISTEN` (loopback only).
    pub listen: Option<String>,
}

pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:3049";

/// `[connections]`; each key defaults to `proto::rpc::ServeLimits::default()`.
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct ConnectionsConfig {
    /// Connections per listener (also lowered to fit the open-file limit).
    pub max: Option<usize>,
    /// Connections per listener from one source address.
    pub per_address: Option<usize>,
    /// Close a connection idle this long in both directions (not a session's back channel).
    pub idle_timeout_seconds: Option<u64>,
    /// Close a connection whose record is not whole this long after its first byte.
    pub record_timeout_seconds: Option<u64>,
    /// MiB of incomplete records (over 16 KiB each) held at once per listener.
    pub record_memory_mib: Option<usize>,
}

impl ConnectionsConfig {
    pub fn limits(&self) -> Result<proto::rpc::ServeLimits, ConfigError> {
        let d = proto::rpc::ServeLimits::default();
        let positive = |name: &'static str, v: Option<u64>, default: u64| match v {
            Some(0) => Err(ConfigError::Connections(name)),
            Some(v) => Ok(v),
            None => Ok(default),
        };
        let secs = std::time::Duration::from_secs;
        Ok(proto::rpc::ServeLimits {
            max_connections: positive("max", self.max.map(|v| v as u64), d.max_connections as u64)?
                as usize,
            max_per_address: positive(
                "per_address",
                self.per_address.map(|v| v as u64),
                d.max_per_address as u64,
            )? as usize,
            idle_timeout: secs(positive(
                "idle_timeout_seconds",
                self.idle_timeout_seconds,
                d.idle_timeout.as_secs(),
            )?),
            record_timeout: secs(positive(
                "record_timeout_seconds",
                self.record_timeout_seconds,
                d.record_timeout.as_secs(),
            )?),
            record_memory: match self.record_memory_mib {
                Some(0) => return Err(ConfigError::Connections("record_memory_mib")),
                Some(m) => m.saturating_mul(1 << 20),
                None => d.record_memory,
            },
        })
    }
}

/// `[cluster]`: how this node finds and trusts the others.
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct ClusterFileConfig {
    /// A file holding the cluster secret (16+ characters), the same on every node.
    pub secret_file: Option<PathBuf>,
    /// ds role: the MDS node(s) to register with, comma-separated ("HOST:PORT,HOST:PORT"):
    /// seeds, always heartbeated. With a multi-node metadata service one is enough: every
    /// heartbeat reply lists the service's nodes, and the DS heartbeats to each (each hands out
    /// layouts), joined ones included.
    pub mds: Option<String>,
    /// ds role: where to serve the data path (when mds and ds share a process, they need
    /// different ports).
    pub ds_listen: Option<String>,
    /// ds role: addresses clients are told, in preference order (a qemu guest reaches host
    /// 127.0.0.1:P as 10.0.2.2:P). Default: the listening address.
    pub advertise: Option<Vec<String>>,
    /// ds role: where this data server fails together with others (host, rack): a file's
    /// mirrors go to different domains. A node that joins a metadata service (`cfs server
    /// join`): its domain, carried in its membership entry, so a shard's voters go to
    /// different domains.
    pub failure_domain: Option<String>,
    /// ds role: also serve the data path on a libfabric endpoint of this provider ("tcp",
    /// "sockets", "verbs", ...), advertised to clients beside the TCP addresses.
    pub fabric: Option<String>,
    /// ds role: where the fabric endpoint listens (default: the data path's IP, any port).
    pub fabric_listen: Option<String>,
    /// mds role: bytes per chunk (placement and layout unit).
    pub chunk_size: Option<u64>,
    /// mds role: seconds a file stays unchanged (and not open for writing) before it is
    /// erasure-coded; 0: never. Default 3600.
    pub encode_after_seconds: Option<u64>,
    /// mds role: seconds a data server may be down before it is declared lost (drained: its
    /// mirror copies and shards are rebuilt on other data servers); 0: never. Default 600.
    pub lost_after_seconds: Option<u64>,
    /// mds role: whether files due for erasure coding are data-reduced first (deduplicated,
    /// compressed, stored as shared segments): "off" (default), "on", or "auto" (kept only
    /// where it stores the file in at most 90% of its bytes).
    pub reduce: Option<String>,
    /// mds role: MiB of file one part of a reduce covers at most (a file larger is reduced
    /// in parts, each one log record, up to 64 parts); at least 1. Default 320.
    pub reduce_part_mib: Option<u64>,
    /// ds role: seconds between the starts of two scrub passes (every block of every object
    /// this data server holds re-read and checked against its blake3; what fails is reported
    /// and rewritten from a good copy or from parity); 0: never. Default 604800 (a week).
    pub scrub_every_seconds: Option<u64>,
    /// ds role: how fast a scrub pass reads, MiB/s, so foreground I/O keeps the disk. Default 32.
    pub scrub_mib_per_second: Option<u64>,
    /// ds role: how fast a shard repair here may read from the other shards' servers, MiB/s
    /// (k MiB per MiB rebuilt). Default 128.
    pub repair_mib_per_second: Option<u64>,
    /// mds role, multi-node metadata: this node's id among `metadata_nodes`.
    pub node_id: Option<u64>,
    /// mds role, multi-node metadata: every MDS node as "ID=HOST:PORT" (its NFS address), the
    /// same list on every node; three or more. Every shard is a Raft group over all of them.
    pub metadata_nodes: Option<Vec<String>>,
    /// mds role, multi-node metadata: seconds a metadata node may be down before its voter
    /// roles go to live nodes that hold the same shards as learners (each shard has three
    /// voters; the others follow as learners); 0: never. Default 60.
    pub mds_replace_after_seconds: Option<u64>,
    /// mds role, multi-node metadata: the client address of each node as "ID=HOST:PORT", the
    /// same list on every node. A node serves its own; when a node dies, the live node with
    /// the lowest id takes its address over, so its clients reconnect to the same address and
    /// reclaim their state there. Optional: without it clients mount the nodes' own addresses.
    pub client_addresses: Option<Vec<String>>,
    /// mds role, a node that joins a running metadata service (`cfs server join`): its own
    /// client address, "HOST:PORT". The join puts it in the node's membership entry, so every
    /// node knows it and the live node with the lowest id takes it over when this one dies.
    /// Fixed at the join.
    pub client_address: Option<String>,
    /// mds role, multi-node metadata: the failure domain (rack, zone) of each node as
    /// "ID=DOMAIN", the same list on every node. A shard's three voters go to three domains
    /// when there are three (`raft::placement`); a node left out is a domain of its own.
    pub metadata_domains: Option<Vec<String>>,
}

/// The roles a server process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Roles {
    pub mds: bool,
    pub ds: bool,
    /// The NFSv3 gateway ("gateway-v3").
    pub gateway: bool,
    /// No roles were named: the embedded default (mds and gateway-v3). Its gateway steps
    /// aside, with a warning, if its port is taken.
    pub default: bool,
}

pub fn parse_roles(list: &[String]) -> Result<Roles, ConfigError> {
    let mut r = Roles::default();
    for s in list {
        for part in s.split(',') {
            match part.trim() {
                "mds" => r.mds = true,
                "ds" => r.ds = true,
                "gateway-v3" => r.gateway = true,
                other => return Err(ConfigError::Role(other.to_string())),
            }
        }
    }
    if !r.mds && !r.ds && !r.gateway {
        r.mds = true;
        r.gateway = true;
        r.default = true;
    }
    Ok(r)
}

pub fn load_secret(path: &Path) -> Result<layout::ClusterSecret, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Secret {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    layout::ClusterSecret::from_passphrase(&text).map_err(|e| ConfigError::Secret {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportConfig {
    pub path: String,
    /// Address ranges allowed to mount, e.g. ["127.0.0.0/8", "10.0.2.0/24"]; default: any.
    pub clients: Option<Vec<String>>,
    /// "rw" (default) or "ro".
    pub access: Option<String>,
    pub root_squash: Option<bool>,
    /// Any of "sys", "krb5", "krb5i", "krb5p"; default ["sys"].
    pub sec: Option<Vec<String>>,
    /// Address ranges of NFSv3 gateways whose AUTH_SYS calls (their clients' mapped ids)
    /// this export accepts whatever `sec` lists, e.g. ["127.0.0.1/32"].
    pub gateways: Option<Vec<String>>,
    /// READ layouts of erasure-coded files: "auto" (default: striped for Linux 6.18+ by its
    /// EXCHANGE_ID implementation id, one assembling data server otherwise), "striped" or
    /// "assembled" for every client.
    pub ec_reads: Option<String>,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:2049";
pub const DEFAULT_DATA: &str = "./cfs-data";

pub fn load(path: Option<&Path>) -> Result<FileConfig, ConfigError> {
    let Some(path) = path else {
        return Ok(FileConfig::default());
    };
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.message().to_string(),
    })
}

pub fn parse_listen(s: &str) -> Result<SocketAddr, ConfigError> {
    use std::net::ToSocketAddrs;
    s.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| ConfigError::Listen(s.to_string()))
}

/// "HOST:PORT[,HOST:PORT...]": the MDS node(s) a data server starts heartbeating to.
pub fn parse_mds_list(s: &str) -> Result<Vec<SocketAddr>, ConfigError> {
    let v = s
        .split(',')
        .map(|a| parse_listen(a.trim()))
        .collect::<Result<Vec<_>, _>>()?;
    if v.is_empty() || v.len() > layout::capability::MAX_METADATA_NODE as usize {
        return Err(ConfigError::Listen(s.to_string()));
    }
    Ok(v)
}

pub fn build_exports(cfgs: &[ExportConfig]) -> Result<Vec<Export>, ConfigError> {
    if cfgs.is_empty() {
        return Ok(vec![Export::new("/")?]);
    }
    let exports = cfgs
        .iter()
        .map(|c| {
            let mut e = Export::new(&c.path)?;
            if let Some(cl) = &c.clients {
                e.clients = cl
                    .iter()
                    .map(|s| s.parse::<AddrRange>())
                    .collect::<Result<_, _>>()?;
            }
            e.read_only = match c.access.as_deref() {
                None | Some("rw") => false,
                Some("ro") => true,
                Some(other) => {
                    return Err(ConfigError::Parse {
                        path: PathBuf::from("<export>"),
                        message: format!("access must be \"rw\" or \"ro\", not {other:?}"),
                    })
                }
            };
            e.root_squash = c.root_squash.unwrap_or(false);
            if let Some(g) = &c.gateways {
                e.gateways = g
                    .iter()
                    .map(|s| s.parse::<AddrRange>())
                    .collect::<Result<_, _>>()?;
            }
            if let Some(r) = &c.ec_reads {
                e.ec_reads = r.parse()?;
            }
            if let Some(sec) = &c.sec {
                e.sec = sec
                    .iter()
                    .map(|s| s.parse::<SecFlavor>())
                    .collect::<Result<_, _>>()?;
            }
            Ok(e)
        })
        .collect::<Result<Vec<_>, ConfigError>>()?;
    mds::config::check_exports(&exports)?;
    Ok(exports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_config_parses() {
        let c: FileConfig = toml::from_str(
            r#"
            data = "/srv/cfs"
            listen = "127.0.0.1:2050"
            [[export]]
            path = "/"
            clients = ["127.0.0.0/8"]
            access = "ro"
            root_squash = true
            sec = ["sys", "krb5p"]
            "#,
        )
        .unwrap();
        let e = build_exports(&c.exports).unwrap();
        assert!(e[0].read_only && e[0].root_squash);
        assert_eq!(e[0].sec, vec![SecFlavor::Sys, SecFlavor::Krb5p]);
        assert_eq!(e[0].ec_reads, mds::config::EcReads::Auto);
        for (v, want) in [
            ("auto", mds::config::EcReads::Auto),
            ("striped", mds::config::EcReads::Striped),
            ("assembled", mds::config::EcReads::Assembled),
        ] {
            let c: FileConfig =
                toml::from_str(&format!("[[export]]\npath = \"/\"\nec_reads = \"{v}\"")).unwrap();
            assert_eq!(build_exports(&c.exports).unwrap()[0].ec_reads, want);
        }
        assert!(!e[0].admits("10.1.1.1".parse().unwrap()));
    }

    #[test]
    fn roles_default_to_mds_with_the_gateway() {
        let d = parse_roles(&[]).unwrap();
        assert!(d.mds && d.gateway && d.default && !d.ds);
        let m = parse_roles(&["mds".into()]).unwrap();
        assert!(m.mds && !m.gateway && !m.default);
        let g = parse_roles(&["gateway-v3".into()]).unwrap();
        assert!(g.gateway && !g.mds && !g.default);
        let both = parse_roles(&["mds,gateway-v3".into(), "ds".into()]).unwrap();
        assert!(both.mds && both.ds && both.gateway && !both.default);
        assert!(parse_roles(&["gateway".into()]).is_err());
        let c: FileConfig = toml::from_str(
            "roles = [\"gateway-v3\"]\n[gateway]\nlisten = \"127.0.0.1:20048\"\nmds = \"127.0.0.1:2049\"\nrpcbind = \"off\"",
        )
        .unwrap();
        assert_eq!(c.gateway.unwrap().rpcbind.as_deref(), Some("off"));
    }

    #[test]
    fn bad_configs_say_why() {
        assert!(toml::from_str::<FileConfig>("bogus = 1").is_err());
        let c: FileConfig = toml::from_str("[[export]]\npath = \"/\"\naccess = \"rwx\"").unwrap();
        assert!(build_exports(&c.exports)
            .unwrap_err()
            .to_string()
            .contains("rwx"));
        assert!(parse_listen("nope").is_err());
        let c: FileConfig =
            toml::from_str("[[export]]\npath = \"/\"\nec_reads = \"stripy\"").unwrap();
        assert!(build_exports(&c.exports)
            .unwrap_err()
            .to_string()
            .contains("stripy"));
        let c: FileConfig =
            toml::from_str("[[export]]\npath = \"/a\"\n[[export]]\npath = \"/a/b\"").unwrap();
        assert!(build_exports(&c.exports)
            .unwrap_err()
            .to_string()
            .contains("nest"));
    }
}
