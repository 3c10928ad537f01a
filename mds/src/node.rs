//! The node's parts: `Mds`, what every operation handler shares (the namespace, the NFS state,
//! the file data, the exports, how handles are made), opened from a `ServerConfig`.
//!
//! The MDS's write verifier is its boot count, and client ids and stateids carry the node (top
//! byte) and its boot count, so a restarted or another node's instance recognises what it did not
//! mint (BAD_STATEID, as knfsd answers through a session).
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use meta::namespace::{self, FsError, Namespace};
use thiserror::Error;

use crate::config::ServerConfig;
use crate::dataservers::{self, Cluster};
use crate::export::{self, Export};
use crate::state::{self, ClientDb, NfsState, StateManager};
use crate::{data, fh, space};

#[derive(Debug, Error)]
pub enum ServerError {
    #[error("data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("namespace in {path}: {source}")]
    Namespace { path: PathBuf, source: FsError },
    #[error("chunk store in {path}: {source}")]
    Store {
        path: PathBuf,
        source: chunkstore::DsError,
    },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("no exports configured")]
    NoExports,
    #[error("exports: {0}")]
    Exports(#[from] export::ExportError),
    #[error("cluster: {0}")]
    Cluster(#[from] dataservers::ClusterError),
    #[error("[tier]: {0}")]
    Tier(#[from] tier::TierError),
}

/// Everything the operation handlers share.
pub struct Mds {
    pub ns: Namespace,
    pub data: data::Data,
    /// The NFS state this node keeps (its clients', and the cross-node half).
    pub nfs: Arc<NfsState>,
    pub exports: Vec<Export>,
    /// The rules of the pseudo file system's directories (read-only).
    pub pseudo: Export,
    /// How this server's file handles are made and checked (`fh`).
    pub handles: Arc<fh::Handles>,
    /// Where chunk data lives (for file-system space attributes).
    pub data_path: PathBuf,
    /// Space kept for metadata: data writes stop short of it (`space`).
    pub space: Arc<space::Space>,
    /// Changes on every restart, so clients know to resend UNSTABLE writes not yet committed.
    pub write_verf: [u8; 8],
    /// Unlinked files whose data is to go, for the reaper task (started on first use).
    pub(crate) reaper: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<u64>>,
    /// The object-store tier, when `[tier]` is configured.
    pub(crate) tier: Option<Arc<crate::tier_set::Tier>>,
    /// What NFS state inside snapshots is keyed by (`nfs::ops::snap::StateKeys`).
    pub(crate) snap_keys: crate::nfs::ops::snap::StateKeys,
    /// What the last usage pass found per export (`usage`; with data servers only).
    pub(crate) usage: Arc<crate::usage::UsageCell>,
}

/// The shard count of a file system this open creates (an existing one keeps its own):
/// `CFS_SHARDS` when set (`cfs cluster up --shards N` sets it for every MDS node, and
/// `conformance metabench` for the start-up and memory measurements with 16 and 256 shards),
/// else `namespace::DEFAULT_SHARDS`. Every node of a metadata cluster must create the same
/// count, so it travels with the nodes' environment rather than a per-node file.
fn new_fs_shards() -> u16 {
    let Ok(v) = std::env::var("CFS_SHARDS") else {
        return namespace::DEFAULT_SHARDS;
    };
    match v.trim().parse::<u16>() {
        Ok(n) if (1..=meta_core::shard::MAX_SHARDS).contains(&n) => n,
        _ => {
            tracing::warn!(
                value = %v,
                max = meta_core::shard::MAX_SHARDS,
                "CFS_SHARDS is not a shard count from 1 to max; using the default"
            );
            namespace::DEFAULT_SHARDS
        }
    }
}

/// Whether new directories spread over the shards (`namespace::Options::spread_directories`):
/// `CFS_SPREAD_DIRECTORIES=1` or `0` when set, else the namespace's default. Like the shard
/// count it must be the same on every node, so it travels with the environment.
fn spread_directories() -> Option<bool> {
    let v = std::env::var("CFS_SPREAD_DIRECTORIES").ok()?;
    match v.trim() {
        "1" | "true" | "on" => Some(true),
        "0" | "false" | "off" => Some(false),
        _ => {
            tracing::warn!(value = %v, "CFS_SPREAD_DIRECTORIES is not 0 or 1; using the default");
            None
        }
    }
}

/// The clients of this node's previous instance: its replicated client records, and those of
/// a `meta/clients` file older builds kept, imported once (the file goes after the import).
async fn previous_clients(
    ns: &Namespace,
    meta_dir: &std::path::Path,
    node: u8,
) -> std::collections::BTreeSet<Vec<u8>> {
    let node = u64::from(node);
    let mut previous: std::collections::BTreeSet<Vec<u8>> = match ns.client_records(node) {
        Ok(r) => r.into_iter().collect(),
        Err(e) => {
            tracing::warn!("cannot read the client records: {e}");
            Default::default()
        }
    };
    match state::read_legacy(meta_dir) {
        Ok(None) => {}
        Ok(Some(legacy)) => {
            let add: Vec<Vec<u8>> = legacy.difference(&previous).cloned().collect();
            let cmd = namespace::Command::ClientRecords {
                node,
                add,
                remove: Vec::new(),
            };
            match ns.execute(cmd).await {
                Ok(_) => {
                    if let Err(e) = std::fs::remove_file(meta_dir.join(state::LEGACY_FILE)) {
                        tracing::warn!("cannot remove the imported client list: {e}");
                    }
                }
                Err(e) => tracing::warn!("cannot import the client list (next start): {e}"),
            }
            previous.extend(legacy);
        }
        Err(e) => tracing::warn!("cannot read the old client list: {e}"),
    }
    previous
}

impl Mds {
    pub async fn open(cfg: &ServerConfig) -> Result<Mds, ServerError> {
        if cfg.exports.is_empty() {
            return Err(ServerError::NoExports);
        }
        export::check_exports(&cfg.exports)?;
        // Checked (and its credentials found) before anything is touched on disk.
        if let Some(t) = &cfg.tier {
            t.validate()?;
            t.store.resolve_credentials(tier::config::process_env)?;
        }
        let dir = &cfg.data_dir;
        let dd = |source| ServerError::DataDir {
            path: dir.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(dd)?;
        let meta_dir = dir.join("meta");
        let data_dir = dir.join("chunks");
        std::fs::create_dir_all(&meta_dir).map_err(dd)?;
        std::fs::create_dir_all(&data_dir).map_err(dd)?;
        let space = Arc::new(space::Space::open(dir, &meta_dir).map_err(dd)?);
        let opts = namespace::Options {
            space: Some(space.clone()),
            members: cfg.members.clone(),
            shards: new_fs_shards(),
            spread_directories: spread_directories(),
            ..Default::default()
        };
        let ns = Namespace::open_with(&meta_dir, opts)
            .await
            .map_err(|source| ServerError::Namespace {
                path: meta_dir.clone(),
                source,
            })?;
        let fh_key = match &cfg.members {
            Some(m) => fh::FhKey::new(m.secret.fh_key()),
            None => fh::FhKey::load_or_create(&meta_dir).map_err(dd)?,
        };
        let boot = ns.boot_count();
        // Checked by the config (ids 1..=255); 0 is the one-node service.
        let node = cfg.members.as_ref().map_or(0, |m| m.me.min(255) as u8);
        let previous = previous_clients(&ns, &meta_dir, node).await;
        let data = match &cfg.cluster {
            Some(c) => {
                data::DataPath::Cluster(Arc::new(dataservers::Cluster::new(c.clone(), node, boot)?))
            }
            None => data::DataPath::Local(chunkstore::ChunkStore::open(&data_dir).map_err(
                |source| ServerError::Store {
                    path: data_dir.clone(),
                    source,
                },
            )?),
        };
        let lease = Duration::from_secs(u64::from(cfg.lease_seconds.max(5)));
        let grace = Duration::from_secs(u64::from(cfg.grace_seconds.unwrap_or(cfg.lease_seconds)));
        if !previous.is_empty() {
            tracing::info!(
                clients = previous.len(),
                ?grace,
                "grace period: clients of the previous instance may reclaim"
            );
        }
        // Client ids and stateids carry the node and its boot count, so one node's never
        // passes for another's (a client that moved to a taker presents its old ones there).
        let instance = (u32::from(node) << 24) | (boot as u32 & 0x00ff_ffff);
        let db = ClientDb::new(previous.clone());
        let state = StateManager::new(instance, lease, grace, db, previous);
        let mut write_verf = [0u8; 8];
        write_verf.copy_from_slice(&boot.to_be_bytes());
        let fs_id = match &cfg.members {
            Some(m) => m.secret.fs_id(),
            None => ns.fs_id(),
        };
        let handles = Arc::new(fh::Handles::new(
            fs_id,
            fh_key,
            cfg.exports.first().map_or(0, |e| e.id),
        ));
        let cluster = match &data {
            data::DataPath::Cluster(c) => Some(c.clone()),
            data::DataPath::Local(_) => None,
        };
        let nfs = Arc::new(NfsState {
            ns: ns.clone(),
            state,
            handles: handles.clone(),
            cluster,
            node,
            lease_seconds: cfg.lease_seconds.max(5),
            write_delegations: cfg.write_delegations,
            grace,
            serving: Default::default(),
            locks: Default::default(),
            remote_delegs: state::remote::delegations::RemoteDelegations::new(boot),
            remote_shares: state::remote::shares::RemoteShares::new(boot),
            callback_lock: tokio::sync::Mutex::new(()),
            commits: Default::default(),
            delayed: Default::default(),
            quiesce: Default::default(),
        });
        let tier = match &cfg.tier {
            Some(t) => Some(Arc::new(crate::tier_set::Tier::new(
                t.clone(),
                crate::tier_set::instance(node, boot),
                cfg.cluster.as_ref().is_some_and(|c| c.encryption.is_some()),
            )?)),
            None => None,
        };
        if let (Some(t), data::DataPath::Cluster(c)) = (&tier, &data) {
            c.set_tier_flash(t.settings.flash_capacity, t.settings.longest_put());
            c.set_segment_bucket(t.store().clone(), t.keys().clone());
        }
        let data = data::Data::new(data, ns.clone(), space.clone(), tier.clone());
        Ok(Mds {
            data_path: data_dir,
            space,
            ns,
            data,
            nfs,
            exports: cfg.exports.clone(),
            pseudo: Export::pseudo(),
            handles,
            write_verf,
            reaper: std::sync::OnceLock::new(),
            tier,
            snap_keys: Default::default(),
            usage: Default::default(),
        })
    }
    /// An unlinked file kept only for those who have it open.
    pub fn is_orphan(&self, ino: u64) -> bool {
        self.ns.getattr(ino).is_ok_and(|i| i.nlink == 0)
    }

    /// The data servers, when file data lives on them.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.data.cluster()
    }
}
