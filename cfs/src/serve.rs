//! `cfs server`: resolve the configuration (file, then flags), validate all of it before
//! anything is created or bound (`--check-config` stops there), then run the roles, the admin
//! listener and the counters carried across clean restarts.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use crate::config::{self, ConfigError, FileConfig, Roles};
use crate::ClusterFlags;

/// `[cluster] mds_replace_after_seconds` by default: long enough for a restart or an
/// upgrade, short against the time a second failure takes.
const DEFAULT_MDS_REPLACE_AFTER: u64 = 60;

/// Everything `cfs server` will do, decided before it does any of it.
pub struct Settings {
    pub roles: Roles,
    pub secret: Option<layout::ClusterSecret>,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub lease_seconds: u32,
    pub grace_seconds: Option<u32>,
    pub write_delegations: bool,
    pub exports: Vec<mds::config::Export>,
    pub chunk_size: Option<u64>,
    pub encode_after_seconds: Option<u64>,
    pub lost_after_seconds: Option<u64>,
    pub reduce: mds::config::ReducePolicy,
    /// Bytes one part of a reduce covers at most.
    pub reduce_part: Option<u64>,
    /// ds role: scrub pass interval and rate (`ds::ScrubConfig`).
    pub scrub: ds::ScrubConfig,
    /// ds role: the MDS node(s) to start heartbeating to, the rest learnt from their replies
    /// (empty: the MDS beside it in this process).
    pub mds_addrs: Vec<SocketAddr>,
    pub ds_listen: Option<SocketAddr>,
    pub advertise: Vec<SocketAddr>,
    pub failure_domain: String,
    /// ds role: the libfabric provider and where its endpoint listens.
    pub fabric: Option<(String, SocketAddr)>,
    pub connections: proto::rpc::ServeLimits,
    pub admin: Option<SocketAddr>,
    /// The config file as read (its `[kerberos]` section is read at start).
    pub file: FileConfig,
    /// mds role, multi-node metadata: the MDS nodes.
    pub members: Option<mds::config::Members>,
    /// `[cluster] mds_replace_after_seconds`: `None` for never.
    pub mds_replace_after: Option<std::time::Duration>,
    /// `[cluster] client_addresses`, by node id.
    pub client_addresses: std::collections::BTreeMap<u64, SocketAddr>,
    /// `cfs server join`: the seed to ask, unless the data directory already joined.
    pub join: Option<SocketAddr>,
    /// `[cluster] client_address`: a joining or joined node's own client address.
    pub client_address: Option<SocketAddr>,
    /// `[tier]`, checked.
    pub tier: Option<mds::config::TierSettings>,
    /// mds role: `[encryption]`, its key files read and checked.
    pub encryption: Option<mds::config::KeyFiles>,
    /// `[snapshots]`, checked.
    pub snapshots: mds::admin::SnapshotPolicy,
}

pub struct ServerArgs {
    pub config: Option<PathBuf>,
    pub data: Option<PathBuf>,
    pub listen: Option<String>,
    pub admin_listen: Option<String>,
    pub flags: ClusterFlags,
    /// `cfs server join`.
    pub join: Option<JoinArgs>,
}

/// `cfs server join --token TOKEN --seed HOST:PORT`.
pub struct JoinArgs {
    /// The cluster secret itself: a joined node needs it anyway, and used as the token it never
    /// crosses the wire (meta's `raft::members` says more).
    pub token: Option<String>,
    /// A file holding it (keeps it out of the process list and the shell's history).
    pub token_file: Option<PathBuf>,
    pub seed: String,
    /// `--client-address` (over `[cluster] client_address`).
    pub client_address: Option<String>,
}

pub fn resolve(a: &ServerArgs) -> Result<Settings, ConfigError> {
    let file: FileConfig = config::load(a.config.as_deref())?;
    let f = &a.flags;
    let roles = if f.roles.is_empty() {
        config::parse_roles(file.roles.as_deref().unwrap_or(&[]))?
    } else {
        config::parse_roles(&f.roles)?
    };
    let mut fc = file.cluster.clone().unwrap_or_default();
    if let Some(c) = a.join.as_ref().and_then(|j| j.client_address.clone()) {
        fc.client_address = Some(c);
    }
    let mut secret = match f.cluster_secret_file.as_ref().or(fc.secret_file.as_ref()) {
        Some(p) => Some(config::load_secret(p)?),
        None => None,
    };
    let mut join = None;
    if let Some(j) = &a.join {
        if !roles.mds {
            return Err(ConfigError::MetadataNodes(
                "join makes an MDS node: the mds role is needed".into(),
            ));
        }
        if fc.node_id.is_some() || fc.metadata_nodes.is_some() {
            return Err(ConfigError::MetadataNodes(
                "a joining node gets its id and the nodes from the seed: remove node_id and \
                 metadata_nodes"
                    .into(),
            ));
        }
        let token = match (&j.token, &j.token_file) {
            (Some(t), _) => Some(layout::ClusterSecret::from_passphrase(t.trim()).map_err(
                |e| ConfigError::Secret {
                    path: PathBuf::from("--token"),
                    message: e.to_string(),
                },
            )?),
            (None, Some(p)) => Some(config::load_secret(p)?),
            (None, None) => None,
        };
        secret = token.or(secret);
        if secret.is_none() {
            return Err(ConfigError::NoSecret);
        }
        join = Some(config::parse_listen(&j.seed)?);
    }
    if secret.is_none() && (roles.ds || (roles.mds && fc.chunk_size.is_some())) {
        return Err(ConfigError::NoSecret);
    }
    if let Some(cs) = fc.chunk_size {
        if !cs.is_power_of_two() || !(4096..=1 << 30).contains(&cs) {
            return Err(ConfigError::ChunkSize(cs));
        }
    }
    let listen = config::parse_listen(
        &a.listen
            .clone()
            .or(file.listen.clone())
            .unwrap_or_else(|| config::DEFAULT_LISTEN.to_string()),
    )?;
    let lease_seconds = file
        .lease_seconds
        .unwrap_or(mds::config::DEFAULT_LEASE_SECONDS);
    if lease_seconds < config::MIN_LEASE_SECONDS {
        return Err(ConfigError::Lease(lease_seconds));
    }
    let mut mds_addrs = Vec::new();
    let mut ds_listen = None;
    let mut advertise = Vec::new();
    let mut fabric = None;
    if roles.ds {
        mds_addrs = match f.mds.as_ref().or(fc.mds.as_ref()) {
            Some(m) => config::parse_mds_list(m)?,
            None if roles.mds => Vec::new(),
            None => return Err(ConfigError::NoMds),
        };
        ds_listen = Some(match f.ds_listen.as_ref().or(fc.ds_listen.as_ref()) {
            Some(l) => config::parse_listen(l)?,
            None if roles.mds => SocketAddr::new(listen.ip(), 0),
            None => listen,
        });
        let adv = if f.advertise.is_empty() {
            fc.advertise.clone().unwrap_or_default()
        } else {
            f.advertise.clone()
        };
        advertise = adv
            .iter()
            .map(|s| config::parse_listen(s))
            .collect::<Result<_, _>>()?;
        if let Some(p) = f.fabric.as_ref().or(fc.fabric.as_ref()) {
            let at = match &fc.fabric_listen {
                Some(l) => config::parse_listen(l)?,
                None => SocketAddr::new(ds_listen.unwrap_or(listen).ip(), 0),
            };
            fabric = Some((p.clone(), at));
        }
    }
    if roles.gateway && !roles.mds {
        // A gateway alone must be told its MDS; say so before anything starts.
        crate::gateway::mds_addr(f, &file)?;
    }
    let mut members = metadata_members(&fc, &secret, &roles, listen)?;
    let failure_domain = f
        .failure_domain
        .clone()
        .or(fc.failure_domain.clone())
        .unwrap_or_default();
    let domains = metadata_domains(&fc, members.as_ref(), &failure_domain)?;
    if let Some(m) = &mut members {
        m.domains = domains;
    }
    if join.is_some() && !failure_domain.is_empty() {
        // It goes into the node's membership entry.
        check_domain("failure_domain of a joining node", &failure_domain)?;
    }
    let client_addresses = client_addresses(&fc, members.as_ref())?;
    let client_address = own_client_address(&fc, &roles, listen)?;
    let admin = match (&a.admin_listen, &file.admin) {
        (Some(l), _) => Some(config::parse_listen(l)?),
        (None, Some(ad)) => Some(config::parse_listen(
            ad.listen.as_deref().unwrap_or(config::DEFAULT_ADMIN_LISTEN),
        )?),
        (None, None) => None,
    };
    let reduce = match &fc.reduce {
        Some(r) => r.parse().map_err(ConfigError::Reduce)?,
        None => mds::config::ReducePolicy::Off,
    };
    let encryption = match (&file.encryption, roles.mds) {
        (Some(_), true) if secret.is_none() => {
            return Err(cfs::encryption_config::EncryptionConfigError::NoCluster.into())
        }
        (Some(e), true) => Some(cfs::encryption_config::key_files(e, reduce)?),
        _ => None,
    };
    Ok(Settings {
        roles,
        secret,
        listen,
        data_dir: a
            .data
            .clone()
            .or(file.data.clone())
            .unwrap_or_else(|| PathBuf::from(config::DEFAULT_DATA)),
        lease_seconds,
        grace_seconds: file.grace_seconds,
        write_delegations: file.write_delegations.unwrap_or(true),
        exports: config::build_exports(&file.exports)?,
        chunk_size: fc.chunk_size,
        encode_after_seconds: fc.encode_after_seconds,
        lost_after_seconds: fc.lost_after_seconds,
        reduce,
        reduce_part: fc.reduce_part_mib.map(|m| m.max(1) << 20),
        encryption,
        mds_replace_after: match fc.mds_replace_after_seconds {
            None => Some(std::time::Duration::from_secs(DEFAULT_MDS_REPLACE_AFTER)),
            Some(0) => None,
            Some(s) => Some(std::time::Duration::from_secs(s)),
        },
        scrub: ds::ScrubConfig::from_settings(
            fc.scrub_every_seconds,
            fc.scrub_mib_per_second,
            fc.repair_mib_per_second,
        )
        .map_err(|e| ConfigError::Scrub(e.to_string()))?,
        mds_addrs,
        ds_listen,
        advertise,
        failure_domain,
        fabric,
        connections: file.connections.clone().unwrap_or_default().limits()?,
        admin,
        tier: file
            .tier
            .as_ref()
            .map(cfs::tier_config::settings)
            .transpose()?,
        snapshots: file
            .snapshots
            .as_ref()
            .map(cfs::snapshot_config::policy)
            .transpose()?
            .unwrap_or_default(),
        file,
        members,
        client_addresses,
        join,
        client_address,
    })
}

/// `[cluster] client_address`: only for a node that joins (the nodes of `metadata_nodes` name
/// theirs in `client_addresses`), an address other nodes can bind, not the node's own.
fn own_client_address(
    fc: &config::ClusterFileConfig,
    roles: &Roles,
    listen: SocketAddr,
) -> Result<Option<SocketAddr>, ConfigError> {
    let bad = |m: String| ConfigError::MetadataNodes(m);
    let Some(a) = &fc.client_address else {
        return Ok(None);
    };
    if !roles.mds || fc.metadata_nodes.is_some() || fc.client_addresses.is_some() {
        return Err(bad(
            "client_address is a joining MDS node's own; the nodes of metadata_nodes name theirs \
             in client_addresses"
                .into(),
        ));
    }
    let addr = config::parse_listen(a.trim())?;
    if addr.ip().is_unspecified() || addr.port() == 0 || addr == listen {
        return Err(bad(format!(
            "client_address {a:?}: one address and port, not the node's own listen address"
        )));
    }
    Ok(Some(addr))
}

/// A `[cluster]` list of "ID=VALUE" entries, one per node of `metadata_nodes` at most
/// (`key` names the list, `form` the value in messages): each entry with its node and value.
fn per_node<'a>(
    key: &str,
    form: &str,
    list: &'a [String],
    m: &mds::config::Members,
) -> Result<Vec<(&'a String, u64, &'a str)>, ConfigError> {
    let bad = |m: String| ConfigError::MetadataNodes(m);
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for entry in list {
        let (id, value) = entry
            .split_once('=')
            .ok_or_else(|| bad(format!("{key} {entry:?}: expected \"ID={form}\"")))?;
        let id: u64 = id
            .trim()
            .parse()
            .ok()
            .filter(|i| m.nodes.contains_key(i))
            .ok_or_else(|| bad(format!("{key} {entry:?}: not a node of metadata_nodes")))?;
        if !seen.insert(id) {
            return Err(bad(format!("{key}: node {id} is listed twice")));
        }
        out.push((entry, id, value.trim()));
    }
    Ok(out)
}

/// `[cluster] client_addresses`: one per metadata node, each distinct from every node's own
/// address (a taker binds it while the dead node's peers still know its own).
fn client_addresses(
    fc: &config::ClusterFileConfig,
    members: Option<&mds::config::Members>,
) -> Result<std::collections::BTreeMap<u64, SocketAddr>, ConfigError> {
    let bad = |m: String| ConfigError::MetadataNodes(m);
    let Some(list) = &fc.client_addresses else {
        return Ok(Default::default());
    };
    let Some(m) = members else {
        return Err(bad(
            "client_addresses needs node_id and metadata_nodes (one MDS has no address to move)"
                .into(),
        ));
    };
    let mut out = std::collections::BTreeMap::new();
    for (entry, id, addr) in per_node("client_addresses", "HOST:PORT", list, m)? {
        let addr = config::parse_listen(addr)?;
        if addr.ip().is_unspecified() || addr.port() == 0 {
            return Err(bad(format!(
                "client_addresses {entry:?}: a client address is one address and port"
            )));
        }
        if m.nodes.values().any(|n| *n == addr) || out.values().any(|a| *a == addr) {
            return Err(bad(format!(
                "client_addresses {entry:?}: address used twice"
            )));
        }
        out.insert(id, addr);
    }
    Ok(out)
}

/// `[cluster] node_id` and `metadata_nodes`: checked whole before anything starts.
fn metadata_members(
    fc: &config::ClusterFileConfig,
    secret: &Option<layout::ClusterSecret>,
    roles: &Roles,
    listen: SocketAddr,
) -> Result<Option<mds::config::Members>, ConfigError> {
    let bad = |m: String| ConfigError::MetadataNodes(m);
    let (list, me) = match (&fc.metadata_nodes, fc.node_id) {
        (None, None) => return Ok(None),
        (Some(l), Some(id)) => (l, id),
        _ => return Err(bad("needs node_id and metadata_nodes together".into())),
    };
    if !roles.mds {
        return Err(bad("only an mds role has a node id".into()));
    }
    let secret = secret.clone().ok_or(ConfigError::NoSecret)?;
    let mut nodes = std::collections::BTreeMap::new();
    for entry in list {
        let (id, addr) = entry
            .split_once('=')
            .ok_or_else(|| bad(format!("{entry:?}: expected \"ID=HOST:PORT\"")))?;
        let id: u64 = id
            .trim()
            .parse()
            .ok()
            .filter(|i| (1..=layout::capability::MAX_METADATA_NODE).contains(i))
            .ok_or_else(|| {
                bad(format!(
                    "{entry:?}: the id must be a number from 1 to {}",
                    layout::capability::MAX_METADATA_NODE
                ))
            })?;
        let addr = config::parse_listen(addr.trim())?;
        if nodes.insert(id, addr).is_some() {
            return Err(bad(format!("node {id} is listed twice")));
        }
    }
    if nodes.len() < 3 {
        return Err(bad(format!(
            "{} nodes: a metadata cluster has three or more (one MDS needs no list)",
            nodes.len()
        )));
    }
    let Some(own) = nodes.get(&me) else {
        return Err(bad(format!("node_id {me} is not in the list")));
    };
    // Peers reach this node at the listed address: it must be where it listens.
    if own.port() != listen.port() || (!listen.ip().is_unspecified() && own.ip() != listen.ip()) {
        return Err(bad(format!(
            "node {me} is listed at {own} but listens on {listen}"
        )));
    }
    Ok(Some(mds::config::Members {
        me,
        nodes,
        secret,
        joined: None,
        replace_after: None,
        domains: std::collections::BTreeMap::new(),
    }))
}

/// A failure domain that goes into a membership entry (`mds::config::valid_domain`).
fn check_domain(what: &str, d: &str) -> Result<(), ConfigError> {
    if mds::config::valid_domain(d) {
        return Ok(());
    }
    Err(ConfigError::MetadataNodes(format!(
        "{what} {d:?}: a domain is 1 to {} letters, digits, '.', '_' or '-'",
        mds::config::MAX_DOMAIN
    )))
}

/// `[cluster] metadata_domains`: the failure domain of each node of `metadata_nodes` as
/// "ID=DOMAIN", the same list on every node (nodes left out are each a domain of their own).
/// This node's own `failure_domain`, when it names one, must agree with its entry.
fn metadata_domains(
    fc: &config::ClusterFileConfig,
    members: Option<&mds::config::Members>,
    own: &str,
) -> Result<std::collections::BTreeMap<u64, String>, ConfigError> {
    let bad = |m: String| ConfigError::MetadataNodes(m);
    let mut out = std::collections::BTreeMap::new();
    let Some(list) = &fc.metadata_domains else {
        return Ok(out);
    };
    let Some(m) = members else {
        return Err(bad(
            "metadata_domains needs node_id and metadata_nodes".into()
        ));
    };
    for (entry, id, domain) in per_node("metadata_domains", "DOMAIN", list, m)? {
        check_domain(&format!("metadata_domains {entry:?}"), domain)?;
        out.insert(id, domain.to_string());
    }
    if !own.is_empty() && out.get(&m.me).is_some_and(|d| d != own) {
        return Err(bad(format!(
            "failure_domain {own:?} is not node {}'s domain in metadata_domains",
            m.me
        )));
    }
    Ok(out)
}

/// The data directory is a directory, or can be made one; checked without creating it.
fn check_data_dir(dir: &Path) -> Result<(), ConfigError> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => return writable(dir, dir),
        Ok(_) => return Err(ConfigError::DataNotDir(dir.to_path_buf())),
        Err(_) => {}
    }
    let mut parent = dir;
    loop {
        parent = match parent.parent() {
            Some(p) if p.as_os_str().is_empty() => Path::new("."),
            Some(p) => p,
            None => Path::new("/"),
        };
        match std::fs::metadata(parent) {
            Ok(m) if m.is_dir() => return writable(dir, parent),
            Ok(_) => {
                return Err(ConfigError::DataParent {
                    path: dir.to_path_buf(),
                    parent: parent.to_path_buf(),
                    why: "it is a file, not a directory".into(),
                })
            }
            Err(_) if parent == Path::new("/") => {
                return Err(ConfigError::DataParent {
                    path: dir.to_path_buf(),
                    parent: parent.to_path_buf(),
                    why: "no part of the path exists".into(),
                })
            }
            Err(_) => {}
        }
    }
}

fn writable(dir: &Path, at: &Path) -> Result<(), ConfigError> {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(at.as_os_str().as_bytes()) else {
        return Ok(());
    };
    // SAFETY: access(2) only reads the NUL-terminated path we own.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        return Err(ConfigError::DataParent {
            path: dir.to_path_buf(),
            parent: at.to_path_buf(),
            why: std::io::Error::last_os_error().to_string(),
        });
    }
    Ok(())
}

/// Binds and releases `addr` to learn whether it is free (port 0 always is). Bound only, never
/// listening: a listening check let a client (or a test waiting for the port) connect before
/// the server was there, then be refused once the check's socket closed (a CI failure of
/// `crash.rs`, 2026-11-24).
fn check_port(what: &'static str, addr: SocketAddr) -> Result<(), ConfigError> {
    if addr.port() == 0 {
        return Ok(());
    }
    let busy = |e: std::io::Error| ConfigError::Busy {
        what,
        addr,
        why: e.to_string(),
    };
    let s = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(busy)?;
    // As the real listener will (tokio and std set it on Unix): a port in TIME_WAIT is free.
    s.set_reuseaddr(true).map_err(busy)?;
    s.bind(addr).map_err(busy)
}

/// Everything that can be known wrong before the server starts: the data directory, the
/// ports. The config file's own content was checked by `resolve`. Export paths need the file
/// system, so they are checked when it is open (`check_exports`).
pub fn validate(s: &Settings) -> Result<(), ConfigError> {
    check_data_dir(&s.data_dir)?;
    if s.roles.mds {
        check_port("the NFS address", s.listen)?;
    }
    if let Some(l) = s.ds_listen {
        if !s.roles.mds || l != s.listen {
            check_port("the data-server address", l)?;
        }
    }
    if let Some(a) = s.admin {
        check_port("the admin address", a)?;
    }
    Ok(())
}

/// Every export names a directory that exists in the file system.
fn check_exports(s: &Settings, m: &mds::admin::Admin) -> Result<(), ConfigError> {
    for e in &s.exports {
        if !m.is_directory(&e.path) {
            return Err(ConfigError::ExportMissing {
                path: e.path.clone(),
                data: s.data_dir.clone(),
            });
        }
    }
    Ok(())
}

/// What `--check-config` prints when everything is fine.
pub fn summary(s: &Settings) -> String {
    let mut roles = Vec::new();
    if s.roles.mds {
        roles.push(format!("mds on {}", s.listen));
    }
    if let Some(l) = s.ds_listen {
        roles.push(format!("ds on {l}"));
    }
    if s.roles.gateway {
        roles.push("gateway-v3".to_string());
    }
    format!(
        "config OK: {}; data in {}; lease {} s; {} export(s) ({}); admin {}\n(export paths are checked against the file system when the server starts)",
        roles.join(", "),
        s.data_dir.display(),
        s.lease_seconds,
        s.exports.len(),
        s.exports.iter().map(|e| e.path.as_str()).collect::<Vec<_>>().join(", "),
        s.admin.map_or("off".to_string(), |a| format!("on http://{a}/")),
    )
}

/// The key under which the admin token's secret is kept when there is no cluster secret.
fn admin_secret(s: &Settings) -> Result<layout::ClusterSecret, Box<dyn std::error::Error>> {
    if let Some(sec) = &s.secret {
        return Ok(sec.clone());
    }
    Ok(local_admin_secret(&s.data_dir, true)?)
}

/// A single node has no cluster secret: the admin token is derived from a random one kept in
/// the data directory (`admin.secret`, owner-only), made at the first start with `[admin]`.
pub fn local_admin_secret(data: &Path, create: bool) -> Result<layout::ClusterSecret, ConfigError> {
    let path = data.join("admin.secret");
    if create && !path.exists() {
        let mut b = [0u8; 32];
        let io = |e: std::io::Error| ConfigError::Secret {
            path: path.clone(),
            message: e.to_string(),
        };
        let mut f = std::fs::File::open("/dev/urandom").map_err(io)?;
        std::io::Read::read_exact(&mut f, &mut b).map_err(io)?;
        let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
        use std::os::unix::fs::OpenOptionsExt;
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        std::io::Write::write_all(&mut out, format!("{hex}\n").as_bytes()).map_err(io)?;
        out.sync_all().map_err(io)?;
    }
    config::load_secret(&path)
}

/// The counters file in the data directory (`metrics::persist`).
fn counters_path(s: &Settings) -> PathBuf {
    s.data_dir.join("counters")
}

/// Keys of the counters kept outside `metrics` (per-instance ones).
const DS_KEYS: [&str; 6] = [
    "ds.read_ops",
    "ds.read_bytes",
    "ds.write_ops",
    "ds.write_bytes",
    "ds.commit_ops",
    "ds.refused_ops",
];
const CLUSTER_KEYS: [&str; 6] = [
    "cluster.read_ops",
    "cluster.read_bytes",
    "cluster.write_ops",
    "cluster.write_bytes",
    "cluster.layouts_granted",
    "cluster.layouts_recalled",
];
const NS_KEYS: [&str; 4] = [
    "ns.commands",
    "ns.transactions",
    "ns.durable_commits",
    "ns.checkpoints",
];

/// The cluster counters in `CLUSTER_KEYS`' order.
fn cluster_values(c: &mds::admin::StatusResOk) -> [u64; 6] {
    [
        c.mds_read_ops,
        c.mds_read_bytes,
        c.mds_write_ops,
        c.mds_write_bytes,
        c.layouts_granted,
        c.layouts_recalled,
    ]
}

pub async fn run(a: ServerArgs, check_only: bool) -> Result<(), Box<dyn std::error::Error>> {
    let s = resolve(&a)?;
    validate(&s)?;
    if check_only {
        println!("{}", summary(&s));
        return Ok(());
    }
    if std::env::var("CFS_METRICS").is_ok_and(|v| v == "off") {
        metrics::set_enabled(false);
        tracing::info!("metrics are off (CFS_METRICS=off)");
    }
    let nofile = crate::raise_nofile_limit();
    let listeners =
        usize::from(s.roles.mds) + usize::from(s.roles.ds) + usize::from(s.roles.gateway);
    let connections = s.connections.fit_to_fd_limit(nofile, listeners);
    tracing::info!(
        open_files = nofile,
        max_connections = connections.max_connections,
        per_address = connections.max_per_address,
        idle_timeout_s = connections.idle_timeout.as_secs(),
        record_timeout_s = connections.record_timeout.as_secs(),
        record_memory_mib = connections.record_memory >> 20,
        "connection bounds (per listener)"
    );
    std::fs::create_dir_all(&s.data_dir).map_err(|e| ConfigError::DataParent {
        path: s.data_dir.clone(),
        parent: s.data_dir.clone(),
        why: e.to_string(),
    })?;
    // Counters of the previous run, if it ended cleanly (see `metrics::persist`).
    let saved = metrics::persist::take(&counters_path(&s)).unwrap_or_else(|e| {
        tracing::warn!("counters of the previous run unreadable, starting from zero: {e}");
        None
    });
    let started = SystemTime::now();
    let mut since = started;
    let saved = saved.unwrap_or_default();
    if saved.is_empty() {
        tracing::info!(
            "counters start at zero (first start, or the last run did not stop cleanly)"
        );
    } else {
        metrics::persist::restore(&saved);
        if let Some(t) = saved.get("counters_since") {
            since = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(*t);
        }
    }
    let get = |k: &str| saved.get(k).copied().unwrap_or(0);
    let admin_listener = match s.admin {
        Some(addr) => {
            Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| ConfigError::Busy {
                        what: "the admin address",
                        addr,
                        why: e.to_string(),
                    })?,
            )
        }
        None => None,
    };

    let mut s = s;
    if s.roles.mds {
        crate::mds_join::refuse_drained(&s.data_dir)?;
    }
    if let (true, None, Some(secret)) = (s.roles.mds, &s.members, &s.secret) {
        // A node that joined earlier comes back as the same node; a new one asks its seed.
        s.members = match crate::mds_join::resume(&s.data_dir, secret)? {
            Some(m) => Some(m),
            None => match s.join {
                Some(seed) => {
                    // Checked in `settings`: a joining node's domain is a valid one.
                    let domain = (!s.failure_domain.is_empty()).then(|| s.failure_domain.clone());
                    let me =
                        mds::config::NodeAddr::new(s.listen, s.client_address).with_domain(domain);
                    Some(crate::mds_join::join(&s.data_dir, secret, seed, me).await?)
                }
                None => None,
            },
        };
    }
    if let Some(c) = s.client_address {
        // What the join announced; a node that never joined has no service to move it in.
        let Some(m) = &s.members else {
            return Err(ConfigError::MetadataNodes(
                "client_address needs a node that joined a metadata service (cfs server join)"
                    .into(),
            )
            .into());
        };
        s.client_addresses.insert(m.me, c);
    }
    if let Some(m) = s.members.as_mut() {
        m.replace_after = s.mds_replace_after;
    }
    let mut mds_server = None;
    if s.roles.mds {
        let cluster = s.secret.as_ref().map(|sec| {
            let mut c = mds::config::ClusterConfig::new(sec.clone());
            if let Some(cs) = s.chunk_size {
                c.chunk_size = cs;
            }
            if let Some(secs) = s.encode_after_seconds {
                c.encode_after = (secs > 0).then(|| std::time::Duration::from_secs(secs));
            }
            if let Some(secs) = s.lost_after_seconds {
                c.lost_after = (secs > 0).then(|| std::time::Duration::from_secs(secs));
            }
            c.reduce = s.reduce;
            if let Some(p) = s.reduce_part {
                c.reduce_part = p;
            }
            c.encryption = s.encryption.clone();
            c
        });
        let clustered = cluster.is_some();
        let cfg = mds::config::ServerConfig {
            data_dir: s.data_dir.clone(),
            listen: s.listen,
            exports: s.exports.clone(),
            lease_seconds: s.lease_seconds,
            write_delegations: s.write_delegations,
            grace_seconds: s.grace_seconds,
            cluster,
            connections,
            members: s.members.clone(),
            client_addresses: s.client_addresses.clone(),
            tier: s.tier.clone(),
        };
        let gss = crate::kerberos::acceptor(&s.file)?;
        if gss.is_some() {
            tracing::info!("answering RPCSEC_GSS (krb5, krb5i, krb5p)");
        }
        let server = mds::Server::start_with_gss(cfg, gss).await?;
        let admin = server.admin();
        if s.members.as_ref().is_some_and(|m| m.joined.is_some()) {
            // A joined node's file system arrives from the shards' leaders (a snapshot, then
            // the log) once they take it in as a learner, a few seconds after it listens.
            wait_for_root(&admin, JOIN_ROOT_WAIT).await;
        }
        if let Err(e) = check_exports(&s, &admin) {
            server.shutdown().await;
            return Err(e.into());
        }
        let [read_ops, read_bytes, write_ops, write_bytes, layouts_granted, layouts_recalled] =
            CLUSTER_KEYS.map(get);
        admin.add_counters(&mds::admin::ClusterCounters {
            read_ops,
            read_bytes,
            write_ops,
            write_bytes,
            layouts_granted,
            layouts_recalled,
        });
        tracing::info!(
            pnfs = clustered,
            "serving NFSv4.1/4.2 on {}",
            server.local_addr()
        );
        // Scheduled snapshots and retention, on whichever node leads shard 0; ends with the
        // process.
        tokio::spawn(mds::admin::snapshot_policy::run(
            server.admin(),
            s.snapshots.clone(),
        ));
        mds_server = Some(server);
    }
    let mut ds_server = None;
    if s.roles.ds {
        let secret = s.secret.clone().ok_or(ConfigError::NoSecret)?;
        let mds_addrs = match (&s.mds_addrs[..], &mds_server, &s.members) {
            ([_, ..], _, _) => s.mds_addrs.clone(),
            // Beside a node of a multi-node metadata service: every node hands out layouts.
            ([], Some(_), Some(m)) => m.nodes.values().copied().collect(),
            ([], Some(srv), None) => vec![srv.local_addr()],
            ([], None, _) => return Err(ConfigError::NoMds.into()),
        };
        let cfg = ds::DsConfig {
            // Beside an MDS the DS gets a directory of its own.
            data_dir: if s.roles.mds {
                s.data_dir.join("ds")
            } else {
                s.data_dir.clone()
            },
            listen: s.ds_listen.unwrap_or(s.listen),
            advertise: s.advertise.clone(),
            mds: mds_addrs.clone(),
            secret,
            failure_domain: s.failure_domain.clone(),
            connections,
            scrub: s.scrub,
        };
        let fabric = s.fabric.as_ref().map(|(p, at)| (p.as_str(), *at));
        let server = ds::DsServer::start_with_fabric(cfg, fabric).await?;
        server.restore_counters(&proto::cluster::DsCounters {
            read_ops: get(DS_KEYS[0]),
            read_bytes: get(DS_KEYS[1]),
            write_ops: get(DS_KEYS[2]),
            write_bytes: get(DS_KEYS[3]),
            commit_ops: get(DS_KEYS[4]),
            refused_ops: get(DS_KEYS[5]),
        });
        tracing::info!(
            ds = %server.id(),
            mds = ?mds_addrs,
            fabric = ?server.fabric_addr(),
            "serving the flexfiles data path (NFSv3) on {}",
            server.local_addr()
        );
        ds_server = Some(Arc::new(server));
    }
    let gateway_server = if s.roles.gateway {
        let mds_addr = match &mds_server {
            Some(srv) => srv.local_addr(),
            None => crate::gateway::mds_addr(&a.flags, &s.file)?,
        };
        crate::gateway::start(&a.flags, &s.file, s.roles, s.listen, mds_addr, connections).await?
    } else {
        None
    };

    let ns_base = mds::admin::StatsSnapshot {
        commands: get(NS_KEYS[0]),
        transactions: get(NS_KEYS[1]),
        durable_commits: get(NS_KEYS[2]),
        checkpoints: get(NS_KEYS[3]),
    };
    let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let admin_task = match admin_listener {
        Some(l) => {
            let sources = crate::admin_http::Sources {
                mds: mds_server.as_ref().map(|m| m.admin()),
                mds_listen: mds_server.as_ref().map(|m| m.local_addr()),
                ds: ds_server.clone(),
                started,
                counters_since: since,
                ns_base,
                client_addresses: s.client_addresses.clone(),
                cluster_secret: s.secret.clone(),
                snapshot_retain_secs: s.snapshots.retain.as_secs(),
            };
            let token = admin_secret(&s)?.admin_token();
            let local = l.local_addr()?;
            tracing::info!("admin listener (metrics, console, API) on http://{local}/");
            if s.admin.is_some_and(|a| a.port() == 0) {
                // Any free port was asked for: say which, for `cfs admin --config`.
                std::fs::write(s.data_dir.join("admin.addr"), format!("{local}\n"))?;
            }
            let admin = crate::admin_http::Admin::new(sources, token);
            Some(tokio::spawn(crate::admin_http::serve(l, admin, async {
                let _ = admin_stopped.await;
            })))
        }
        None => None,
    };

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut drained = mds_server.as_ref().map(|m| m.admin().drained());
    let drained_wait = async {
        match drained.as_mut() {
            Some(rx) => {
                if rx.wait_for(|d| *d).await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending::<()>().await,
        }
    };
    let mut was_drained = None;
    let mut fatal = None;
    tokio::select! {
        why = async {
            match &mds_server {
                Some(m) => m.fatal().await,
                None => std::future::pending().await,
            }
        } => {
            tracing::error!("this node cannot go on: {why}");
            fatal = Some(why);
        }
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        () = drained_wait => {
            let node = s.members.as_ref().map_or(0, |m| m.me);
            tracing::warn!(
                node,
                "this MDS node was drained from the metadata service: it stops serving"
            );
            if let Err(e) = crate::mds_join::mark_drained(&s.data_dir, node) {
                tracing::error!("drained, but the marker was not written: {e}");
            }
            was_drained = Some(node);
        }
    }
    tracing::info!("shutting down");
    let _ = stop_admin.send(());
    if let Some(t) = admin_task {
        let _ = t.await;
    }
    // The gateway first: closing its opens commits through the MDS and the data servers.
    if let Some(g) = gateway_server {
        g.shutdown().await;
    }
    let mut pairs = metrics::persist::snapshot();
    pairs.push((
        "counters_since".into(),
        since
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    ));
    if let Some(d) = ds_server {
        let c = d.counters();
        let vals = [
            c.read_ops,
            c.read_bytes,
            c.write_ops,
            c.write_bytes,
            c.commit_ops,
            c.refused_ops,
        ];
        pairs.extend(DS_KEYS.iter().zip(vals).map(|(k, v)| (k.to_string(), v)));
        match Arc::try_unwrap(d) {
            Ok(d) => d.shutdown().await,
            Err(_) => tracing::error!("data server still referenced at shutdown; not synced"),
        }
    }
    if let Some(srv) = mds_server {
        if let Some(c) = srv.admin().data_servers() {
            pairs.extend(
                CLUSTER_KEYS
                    .iter()
                    .zip(cluster_values(&c.status))
                    .map(|(k, v)| (k.to_string(), v)),
            );
        }
        // The namespace counters are this run's plus the earlier runs'.
        let ns = srv.namespace_stats();
        let b = ns_base;
        let vals = [
            b.commands + ns.commands,
            b.transactions + ns.transactions,
            b.durable_commits + ns.durable_commits,
            b.checkpoints + ns.checkpoints,
        ];
        pairs.extend(NS_KEYS.iter().zip(vals).map(|(k, v)| (k.to_string(), v)));
        srv.shutdown().await;
    }
    if let Err(e) = metrics::persist::save(&counters_path(&s), &pairs) {
        tracing::warn!("counters not saved (the next start counts from zero): {e}");
    }
    if let Some(node) = was_drained {
        return Err(Box::new(Drained(node)));
    }
    if let Some(why) = fatal {
        return Err(why.into());
    }
    Ok(())
}

/// How long a joined node waits for its copy of the file system before checking exports.
const JOIN_ROOT_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

async fn wait_for_root(m: &mds::admin::Admin, limit: std::time::Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while !m.root_exists() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// How `cfs server` ends on a drained MDS node.
#[derive(Debug, thiserror::Error)]
#[error(
    "MDS node {0} was drained from the metadata service and stopped; its data directory is \
     marked drained and will not serve again"
)]
pub struct Drained(u64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_domains_name_listed_nodes_once_and_agree_with_the_nodes_own() {
        let members = mds::config::Members {
            me: 2,
            nodes: (1..=3)
                .map(|i| (i, format!("127.0.0.1:{}", 2048 + i).parse().unwrap()))
                .collect(),
            secret: layout::ClusterSecret::from_passphrase("0123456789abcdef0123").unwrap(),
            joined: None,
            replace_after: None,
            domains: Default::default(),
        };
        let with = |list: &[&str]| config::ClusterFileConfig {
            metadata_domains: Some(list.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        };
        let d = metadata_domains(
            &with(&["1=rack-a", "2 = rack-a", "3=b.2"]),
            Some(&members),
            "",
        )
        .unwrap();
        assert_eq!(d.get(&2).map(String::as_str), Some("rack-a"));
        assert_eq!(d.get(&3).map(String::as_str), Some("b.2"));
        // Its own failure_domain, when set, is its entry's.
        assert!(metadata_domains(&with(&["2=rack-a"]), Some(&members), "rack-a").is_ok());
        assert!(metadata_domains(&with(&["2=rack-a"]), Some(&members), "rack-b").is_err());
        for bad in [
            &["4=rack-a"][..],
            &["1=rack-a", "1=rack-b"],
            &["1="],
            &["1=rack a"],
            &["rack-a"],
            &["x=rack-a"],
        ] {
            assert!(
                metadata_domains(&with(bad), Some(&members), "").is_err(),
                "{bad:?}"
            );
        }
        // Only with a list of nodes.
        assert!(metadata_domains(&with(&["1=a"]), None, "").is_err());
        assert!(metadata_domains(&Default::default(), None, "a").is_ok());
    }

    #[test]
    fn a_client_address_of_its_own_is_for_a_joining_mds_node_only() {
        let listen: SocketAddr = "127.0.0.1:2049".parse().unwrap();
        let mds = Roles {
            mds: true,
            ..Roles::default()
        };
        let with = |extra: config::ClusterFileConfig| config::ClusterFileConfig {
            client_address: Some("127.0.0.2:2049".into()),
            ..extra
        };
        assert_eq!(
            own_client_address(&with(Default::default()), &mds, listen).unwrap(),
            Some("127.0.0.2:2049".parse().unwrap())
        );
        let listed = config::ClusterFileConfig {
            metadata_nodes: Some(vec!["1=127.0.0.1:2049".into()]),
            ..Default::default()
        };
        assert!(own_client_address(&with(listed), &mds, listen).is_err());
        assert!(own_client_address(&with(Default::default()), &Roles::default(), listen).is_err());
        for bad in ["127.0.0.1:2049", "0.0.0.0:2049", "127.0.0.2:0"] {
            let c = config::ClusterFileConfig {
                client_address: Some(bad.into()),
                ..Default::default()
            };
            assert!(own_client_address(&c, &mds, listen).is_err(), "{bad}");
        }
    }
}
