//! The admin API: what an operator's tools read of a running server and ask of it (`cfs`'s
//! admin listener, `/metrics` and console, and `cfs server` around the start and the stop).
//! Answers are plain data, so those tools know nothing of the server's modules; each method
//! reads the state it names and takes no lock for longer than its own call.
//!
//! Architecture Invariant: `cfs` reaches the running server only through `Admin` (and
//! `Server`), and the server's setup only through `config`.
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

pub mod snapshot_policy;
mod snapshot_restore;
mod snapshots;
pub use crate::data::snap_usage::{SnapBytes, SnapUsage};
pub use snapshot_policy::{Schedule, SnapshotPolicy};
pub use snapshot_restore::RestoreReport;
pub use snapshots::{SnapshotError, SnapshotInfo, DEFAULT_RETAIN_SECS, SNAPSHOT_DIR};

use crate::dataservers::MdsIoStats;
use crate::node::Mds;
use meta::namespace::ROOT_INO;
use meta::raft::members;

pub use crate::dataservers::drain::DrainError;
/// `cfs repair --from-s3`: a lost site's namespace rebuilt from the bucket (`meta_store.rs`).
pub use crate::meta_store::{repair_from as repair_from_s3, MetaStoreError, RepairReport};
pub use crate::rmtree::RmtreeError;
pub use crate::state::{ClientSummary, StateCounts};
pub use crate::usage::{ExportUsage, Usage, UsageReport};
pub use layout::DsId;
pub use meta::namespace::{Redundancy, ShardStatus, StatFs, StatsSnapshot};
pub use meta::raft::members::{JoinReply, MembershipError};
pub use meta_core::TierUsage;
pub use proto::cluster::{DsStatus, MetadataLag, StatusResOk};

/// Why `Admin::tier_pin` refused.
#[derive(Debug, Error)]
pub enum TierPinError {
    #[error("this server has no object-store tier ([tier] in its config): nothing to pin to")]
    NoTier,
    #[error("{0:?} is not a pin: flash, s3 or auto")]
    BadPin(String),
    #[error(
        "{0}: no such file or directory (give the path inside the file system, e.g. /projects)"
    )]
    NotFound(String),
    #[error("the namespace: {0}; try again")]
    Namespace(meta::namespace::FsError),
}

/// A running server as its operator sees it. Cheap to clone: one `Arc`.
#[derive(Clone)]
pub struct Admin {
    mds: Arc<Mds>,
}

/// The counters of file I/O the MDS did itself against data servers and of the layouts it
/// handed out, as earlier runs left them (`Admin::add_counters`; this run's are in
/// `DataServers::status`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterCounters {
    pub read_ops: u64,
    pub read_bytes: u64,
    pub write_ops: u64,
    pub write_bytes: u64,
    pub layouts_granted: u64,
    pub layouts_recalled: u64,
}

/// The data servers as this MDS knows them (`Admin::data_servers`).
#[derive(Debug, Clone)]
pub struct DataServers {
    /// The MDS's own I/O and layout counters, and every registered data server with what its
    /// heartbeats report: what the cluster program's STATUS answers.
    pub status: StatusResOk,
    /// Data servers being drained, with the files still placed on each (`None`: not counted
    /// yet), by id.
    pub draining: Vec<(DsId, Option<usize>)>,
    /// Files with fewer mirrors than they should have, waiting for repair.
    pub degraded_files: usize,
}

/// Trees `rmtree` detached whose contents are still going.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RemovingTrees {
    pub directories: usize,
    /// The entries they hold (a subdirectory not reached yet counts once).
    pub entries: u64,
}

/// The metadata service as this node sees it.
#[derive(Debug, Clone)]
pub struct MetadataStatus {
    /// This node's id (0: the one-node service).
    pub node: u64,
    pub shard_count: u16,
    /// Every node of a multi-node service; `None` for one MDS.
    pub nodes: Option<Vec<MetadataNode>>,
    /// Each shard's Raft group, shard 0 first.
    pub shards: Vec<ShardView>,
}

/// One MDS node of a multi-node service, from the shards' memberships.
#[derive(Debug, Clone)]
pub struct MetadataNode {
    pub id: u64,
    /// Its membership entry, as the shards hold it.
    pub address: String,
    pub domain: Option<String>,
    /// "member", "joining", "draining", "starting" or "drained".
    pub state: &'static str,
    /// Shards it is a voter of.
    pub voter_of: usize,
    /// It answered this node's last call (or is this node).
    pub up: bool,
    /// How long it has not answered.
    pub down_for: Option<Duration>,
    /// Its client address as the memberships announce it (a configured one is the caller's).
    pub client_address: Option<SocketAddr>,
    /// Who answers on its client address, if it has one: itself while up, else the live node
    /// with the lowest id (the takeover rule of `addresses`).
    pub held_by: Option<u64>,
}

/// One shard's Raft group with its members (this node alone for one MDS).
#[derive(Debug, Clone)]
pub struct ShardView {
    pub status: ShardStatus,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
}

/// Why a data server's drain was not started or cancelled.
#[derive(Debug, Error)]
pub enum DataDrainError {
    /// No `[cluster]`: the MDS keeps file data itself.
    #[error("this MDS has no data servers: it keeps file data itself")]
    NoDataServers,
    #[error(transparent)]
    Drain(#[from] DrainError),
}

/// Directory entries the path walk of `Admin::paths` reads at most (a few milliseconds of
/// in-memory lookups).
const VISIT_LIMIT: usize = 20_000;
/// Entries per READDIR page of the walk.
const PAGE: usize = 1_000;

/// Asks `seed`, a node of a running metadata service, to take this node (its membership entry
/// `me`) in. A free function: it runs before this node's server exists, and what it answers
/// (id, nodes, shard count) goes into the `config::Members` the server starts with.
pub async fn join(
    secret: &layout::ClusterSecret,
    seed: SocketAddr,
    me: crate::config::NodeAddr,
) -> Result<JoinReply, MembershipError> {
    members::join(secret, seed, me).await
}

impl Admin {
    /// `Server::admin`: the one way in from outside the crate.
    pub(crate) fn new(mds: Arc<Mds>) -> Admin {
        Admin { mds }
    }

    /// How much NFS state the server holds (for `/metrics` and `cfs admin status`).
    pub fn state_counts(&self) -> StateCounts {
        self.mds.nfs.state.counts()
    }

    /// Every client, by client id (`cfs admin clients`).
    pub fn clients(&self) -> Vec<ClientSummary> {
        self.mds.nfs.state.client_summaries()
    }

    /// Expires `clientid` now with all its state, as its lease running out would; false if
    /// there is no such client.
    pub fn evict(&self, clientid: u64) -> bool {
        self.mds.nfs.state.evict(clientid)
    }

    /// The client addresses this node answers on now: its own, and those it took over.
    pub fn serving(&self) -> Vec<SocketAddr> {
        self.mds
            .nfs
            .serving
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// The namespace's counters since this start: commands, batches, fdatasyncs, checkpoints.
    pub fn namespace_stats(&self) -> StatsSnapshot {
        self.mds.ns.stats()
    }

    /// Inodes in use and bytes of regular files, orphans included: what a removal gives back
    /// once reclaimed. `None` when the namespace cannot be read.
    pub fn usage(&self) -> Option<StatFs> {
        self.mds.ns.statfs().ok()
    }

    /// What `rmtree` detached and the reclaimer has not emptied yet, on this node's replicas.
    pub fn removing_trees(&self) -> RemovingTrees {
        let detached = self.mds.ns.detached().unwrap_or_default();
        RemovingTrees {
            directories: detached.len(),
            entries: detached.iter().map(|(_, n)| n).sum(),
        }
    }

    /// Whether file data lives on data servers (clients get pNFS layouts).
    pub fn pnfs(&self) -> bool {
        self.mds.cluster().is_some()
    }

    /// The data servers and this MDS's I/O against them; `None` without data servers.
    pub fn data_servers(&self) -> Option<DataServers> {
        let c = self.mds.cluster()?;
        Some(DataServers {
            status: crate::dataservers::service::status(c, &self.mds.ns),
            draining: c.registry.draining(),
            degraded_files: c.degraded_files(),
        })
    }

    /// How the files' data is kept (mirrored, encoded) and how much is degraded, counting the
    /// data servers down now; `None` without data servers or when the namespace cannot be read.
    pub fn redundancy(&self) -> Option<Redundancy> {
        let c = self.mds.cluster()?;
        self.mds.ns.redundancy(|d| c.registry.is_up(DsId(d))).ok()
    }

    /// Each export's files as logical bytes, after dedup, after compression and raw on the
    /// data servers, as the last usage pass found them (`crate::usage`); `None` without data
    /// servers or before the first pass ends (a few seconds after the start).
    pub fn export_usage(&self) -> Option<Arc<UsageReport>> {
        self.mds.cluster()?;
        self.mds.usage.get()
    }

    /// Whether this node seals data at rest (`[encryption]`), and the tag of the cluster's
    /// data key once it is unwrapped (a key identifier, not the key): `None` without data
    /// servers.
    pub fn encryption(&self) -> Option<(bool, Option<String>)> {
        let c = self.mds.cluster()?;
        Some((c.sealing(), c.data_key_tag()))
    }

    /// What the object-store tier holds and still lacks of the files of the shards this node
    /// has (`None` without `[tier]`), with the bucket it uploads to.
    pub fn tier(&self) -> Option<(TierUsage, String, &'static str)> {
        let t = self.mds.tier.as_ref()?;
        let s = &t.settings;
        // Tiered mode: files changed or used within `tier_after` stay on flash, not queued.
        let now = meta::namespace::Time::now().secs;
        let before = now.saturating_sub(i64::try_from(s.quiet_for().as_secs()).unwrap_or(i64::MAX));
        let tiered = s.mode == crate::tier_set::TierMode::Tiered;
        let used = if tiered {
            t.uses_since(before)
        } else {
            Default::default()
        };
        let held = |ino: u64, ctime: meta::namespace::Time| {
            tiered && (ctime.secs > before || used.contains(&ino))
        };
        let usage = self.mds.ns.tier_usage(&held).ok()?;
        Some((
            usage,
            format!("{}/{}/{}", s.store.endpoint, s.store.bucket, s.root),
            s.mode.name(),
        ))
    }

    /// The other nodes of a metadata service of several, with the address each serves the
    /// cluster program on (its NFS address): where `cfs admin status` asks for what only
    /// each node knows, such as the metadata lag of the shards it leads. Empty for one MDS.
    pub fn other_mds_nodes(&self) -> Vec<(u64, SocketAddr)> {
        let Some(p) = self.mds.ns.peers() else {
            return Vec::new();
        };
        let me = p.me();
        p.nodes().into_iter().filter(|(id, _)| *id != me).collect()
    }

    /// Adds counters of earlier runs to this run's (a clean restart carries them on).
    pub fn add_counters(&self, earlier: &ClusterCounters) {
        let Some(c) = self.mds.cluster() else { return };
        let s = &c.stats;
        MdsIoStats::add(&s.read_ops, earlier.read_ops);
        MdsIoStats::add(&s.read_bytes, earlier.read_bytes);
        MdsIoStats::add(&s.write_ops, earlier.write_ops);
        MdsIoStats::add(&s.write_bytes, earlier.write_bytes);
        MdsIoStats::add(&s.layouts_granted, earlier.layouts_granted);
        MdsIoStats::add(&s.layouts_recalled, earlier.layouts_recalled);
    }

    /// Starts draining data server `ds`: new files go elsewhere, its files move off. Returns
    /// the files still placed on it (0: drained, it can be stopped).
    pub async fn drain_data_server(&self, ds: DsId) -> Result<usize, DataDrainError> {
        let c = self.mds.cluster().ok_or(DataDrainError::NoDataServers)?;
        Ok(c.start_drain(&self.mds.ns, ds).await?)
    }

    /// Stops draining data server `ds`; files already moved stay where they are.
    pub async fn cancel_data_server_drain(&self, ds: DsId) -> Result<(), DataDrainError> {
        let c = self.mds.cluster().ok_or(DataDrainError::NoDataServers)?;
        Ok(c.cancel_drain(&self.mds.ns, ds).await?)
    }

    /// Removes MDS node `id` from every shard's membership; it then stops serving.
    pub async fn drain_mds(&self, id: u64) -> Result<(), MembershipError> {
        members::drain(self.mds.ns.groups(), id).await
    }

    /// Detaches the directory tree at `path` (a path inside the file system) before it
    /// answers; the contents go in the background (`removing_trees` shows what is left).
    /// Returns the directory's inode number.
    pub async fn rmtree(&self, path: &str) -> Result<u64, RmtreeError> {
        Ok(crate::rmtree::rmtree(&self.mds, path).await?.ino)
    }

    /// Pins `path` (inside the file system) to flash, to the bucket, or to neither (`auto`),
    /// as `setfattr -n user.cfs.tier` on it does, with root's authority: files and directories
    /// created under it from now on take the pin; what is there already keeps its own.
    pub async fn tier_pin(&self, path: &str, pin: &str) -> Result<u64, TierPinError> {
        if self.mds.tier.is_none() {
            return Err(TierPinError::NoTier);
        }
        let Some(_) = meta_core::Pin::parse(pin.as_bytes()) else {
            return Err(TierPinError::BadPin(pin.to_string()));
        };
        if !path.starts_with('/') {
            return Err(TierPinError::NotFound(path.to_string()));
        }
        let ino = match self.mds.ns.resolve(path.as_bytes()) {
            Ok(i) => i.ino,
            Err(meta::namespace::FsError::NotFound) => {
                return Err(TierPinError::NotFound(path.to_string()))
            }
            Err(e) => return Err(TierPinError::Namespace(e)),
        };
        self.mds
            .ns
            .execute(meta::namespace::Command::SetXattr {
                ino,
                name: meta_core::PIN_XATTR.to_vec(),
                value: pin.as_bytes().to_vec(),
                how: meta_core::xattr::How::Either,
                time: meta::namespace::Time::now(),
            })
            .await
            .map_err(TierPinError::Namespace)?;
        Ok(ino)
    }

    /// Whether the file system's root is there: a node that joined gets its copy of the file
    /// system from the shards' leaders a few seconds after it listens.
    pub fn root_exists(&self) -> bool {
        self.mds.ns.resolve(b"/").is_ok()
    }

    /// Whether `path` (inside the file system, as exports name it) is a directory.
    pub fn is_directory(&self, path: &str) -> bool {
        self.mds
            .ns
            .resolve(path.as_bytes())
            .is_ok_and(|i| i.kind.is_dir())
    }

    /// Turns true once this node was drained from the metadata service: it stops serving.
    pub fn drained(&self) -> tokio::sync::watch::Receiver<bool> {
        self.mds.ns.drained()
    }

    /// A path for each of `want` found by walking the namespace from the root, breadth first
    /// (files keep no parent: hard links give them several), until each is named or
    /// `VISIT_LIMIT` entries were read. Absent: not found within that bound.
    pub fn paths(&self, want: &HashSet<u64>) -> HashMap<u64, String> {
        let others: HashSet<u64> = want.iter().copied().filter(|i| *i != ROOT_INO).collect();
        let mut found = if others.is_empty() {
            HashMap::new()
        } else {
            walk(&self.mds.ns, &others)
        };
        // The root has no entry to be found under; its path is known.
        if want.contains(&ROOT_INO) {
            found.insert(ROOT_INO, "/".to_string());
        }
        found
    }

    /// The metadata service's nodes and each shard's Raft group, as this node sees them.
    pub fn metadata(&self) -> MetadataStatus {
        let ns = &self.mds.ns;
        let view: std::collections::BTreeMap<u16, members::ShardMembers> = match ns.peers() {
            Some(_) => members::membership_view(ns.groups())
                .into_iter()
                .map(|m| (m.shard, m))
                .collect(),
            None => Default::default(),
        };
        let shards = ns
            .shard_status()
            .into_iter()
            .map(|status| {
                let m = view.get(&status.shard);
                ShardView {
                    voters: m.map_or_else(
                        || vec![ns.node_id()],
                        |m| m.voters.iter().copied().collect(),
                    ),
                    learners: m
                        .map(|m| m.learners.iter().copied().collect())
                        .unwrap_or_default(),
                    status,
                }
            })
            .collect();
        MetadataStatus {
            node: ns.node_id(),
            shard_count: ns.shard_count(),
            nodes: self.metadata_nodes(),
            shards,
        }
    }

    /// Each node's state from the shards' memberships; `None` for one MDS.
    fn metadata_nodes(&self) -> Option<Vec<MetadataNode>> {
        let ns = &self.mds.ns;
        let p = ns.peers()?;
        let me = ns.node_id();
        let states = members::node_states(ns.groups());
        let up = |id: u64| id == me || p.down_since(id).is_none();
        let clients = p.client_addresses();
        let nodes = states
            .iter()
            .map(|(&id, n)| MetadataNode {
                id,
                address: n.addr.clone(),
                domain: crate::config::NodeAddr::parse(&n.addr).and_then(|a| a.domain),
                state: n.state,
                voter_of: n.votes,
                up: up(id),
                down_for: p.down_since(id).map(|t| t.elapsed()),
                client_address: clients.get(&id).copied(),
                held_by: if up(id) {
                    Some(id)
                } else {
                    states.keys().copied().filter(|o| up(*o)).min()
                },
            })
            .collect();
        Some(nodes)
    }
}

/// Breadth first from the root: the first name found for each wanted inode.
fn walk(ns: &meta::namespace::Namespace, want: &HashSet<u64>) -> HashMap<u64, String> {
    let mut found = HashMap::new();
    let mut dirs = VecDeque::from([(ROOT_INO, String::new())]);
    let mut seen_dirs = HashSet::from([ROOT_INO]);
    let mut visited = 0usize;
    while let Some((dir, path)) = dirs.pop_front() {
        let mut cookie = 0;
        while let Ok((entries, eof)) = ns.readdir(dir, cookie, PAGE) {
            for e in &entries {
                visited += 1;
                let p = format!("{path}/{}", String::from_utf8_lossy(&e.name));
                if want.contains(&e.ino) && !found.contains_key(&e.ino) {
                    found.insert(e.ino, p.clone());
                    if found.len() == want.len() {
                        return found;
                    }
                }
                let is_dir = ns.getattr(e.ino).is_ok_and(|i| i.kind.is_dir());
                if is_dir && seen_dirs.insert(e.ino) {
                    dirs.push_back((e.ino, p));
                }
                if visited >= VISIT_LIMIT {
                    return found;
                }
            }
            match entries.last() {
                Some(last) if !eof => cookie = last.cookie,
                _ => break,
            }
        }
    }
    found
}
