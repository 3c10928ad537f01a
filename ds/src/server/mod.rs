//! The data-server role: serves NFSv3 READ/WRITE/COMMIT/GETATTR/SETATTR on capability file
//! handles to flexfiles clients, stores the bytes in the chunk store, and heartbeats to the MDS,
//! which tells it the chunk size, the generation floor and the fences.
//!
//! - [`config`]: `DsConfig` and the persistent DS identity.
//! - [`nfs3`]: the NFSv3 program, one function per procedure.
//! - [`objects`]: per-file objects and their high-water marks.
//! - [`heartbeat`]: registration and renewal with the MDS.
//! - [`mds_nodes`]: which MDS nodes to heartbeat to (the config's, and those they list).
//! - [`fences`], [`counters`]: what the heartbeat carries each way.
//! - [`badchunks`]: chunks that failed verification here, recorded and reported for repair.
//! - [`fabric`]: the same data path over a libfabric endpoint, with RMA for the bytes.
//! - [`shards`]: erasure-coded shards: shard objects, the shard program (encode and repair
//!   jobs, DS-to-DS shard transfer), READs of direct, rebuild and assembled shard handles.
//! - [`images`]: the shard program's LINK and OBJSTAT, a snapshot's data image of a file.

mod badchunks;
mod config;
mod counters;
mod fabric;
mod fences;
mod flash;
mod heartbeat;
mod images;
mod mds_nodes;
pub mod nfs3;
mod objects;
mod reduced;
mod scrub;
mod shards;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use layout::{CapKey, ChunkGeometry, DsId};
use proto::cluster::DsCounters;
use proto::rpc::{ConnTable, ConnectionLimits};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::DsConfig;
pub use scrub::{ScrubConfig, ScrubConfigError};
pub use shards::shard_object_id;

use counters::Counters;
use fences::Fences;
use objects::Objects;

/// Largest RPC record accepted: a 1 MiB WRITE plus headers.
pub const MAX_RECORD: usize = (1 << 20) + (64 << 10);
/// Calls served at once per connection; the reader stops past this (TCP backpressure).
pub const MAX_IN_FLIGHT: usize = 32;

#[derive(Debug, Error)]
pub enum DsServerError {
    #[error("no MDS to heartbeat to: name at least one")]
    NoMds,
    #[error("data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("DS identity in {path}: {why}")]
    Identity { path: PathBuf, why: String },
    #[error("chunk store in {path}: {source}")]
    Store {
        path: PathBuf,
        source: crate::DsError,
    },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("fabric endpoint: {0}")]
    Fabric(String),
}

/// What the MDS nodes have told us; `None` geometry until the first heartbeat reply.
struct Cluster {
    geometry: Option<ChunkGeometry>,
    /// One fence state per MDS node that has answered a heartbeat, keyed by the node id every
    /// generation it mints carries (`layout::generation_node`): each node fences its own
    /// handles, and a restart of one raises only its own floor.
    fences: HashMap<u8, Fences>,
}

/// State shared by the connections and the heartbeat task.
pub(crate) struct Shared {
    id: DsId,
    instance: u64,
    verifier: [u8; 8],
    cap_key: CapKey,
    cfg: DsConfig,
    /// The MDS nodes to heartbeat to: `cfg.mds` and those the nodes list.
    mds: mds_nodes::MdsNodes,
    local: SocketAddr,
    objects: Objects,
    shards: shards::ShardStore,
    peers: shards::Peers,
    /// Reads of data-reduced files assembled here: recipes, segments, turns.
    reduced: reduced::ReducedReads,
    bad: badchunks::BadChunks,
    counters: Counters,
    cluster: RwLock<Cluster>,
    /// The fabric endpoint, once open: (netid, address), advertised after the TCP ones.
    fabric: RwLock<Option<(String, SocketAddr)>>,
    /// Room on flash, when the object-store tier manages it.
    flash: flash::Flash,
}

impl Shared {
    fn cluster(&self) -> std::sync::RwLockReadGuard<'_, Cluster> {
        self.cluster.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The chunk geometry handles are expressed in, once the MDS has told us.
    pub(crate) fn geometry(&self) -> Option<ChunkGeometry> {
        self.cluster().geometry
    }

    /// The fence of `file` for handles minted at `generation`, by the MDS node that minted
    /// them; `None` while that node has not answered a heartbeat (its floor and fences are
    /// unknown, so the client must wait and retry).
    pub(crate) fn fence_for(&self, file: u64, generation: u64) -> Option<u64> {
        self.cluster()
            .fences
            .get(&layout::generation_node(generation))
            .map(|f| f.fence_for(file))
    }

    /// See `Fences::learn`. Only for a node already heard from (a verified handle was minted
    /// by it, and its heartbeat made the entry).
    pub(crate) fn learn_generation(&self, file: u64, generation: u64) {
        let mut c = self.cluster.write().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = c.fences.get_mut(&layout::generation_node(generation)) {
            f.learn(file, generation);
        }
    }

    pub(crate) fn set_fabric(&self, netid: String, at: SocketAddr) {
        *self.fabric.write().unwrap_or_else(|p| p.into_inner()) = Some((netid, at));
    }

    pub(crate) fn fabric_addr(&self) -> Option<(String, SocketAddr)> {
        self.fabric
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn advertised(&self) -> Vec<SocketAddr> {
        if self.cfg.advertise.is_empty() {
            vec![self.local]
        } else {
            self.cfg.advertise.clone()
        }
    }
}

/// A running data server.
pub struct DsServer {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    accept: JoinHandle<()>,
    heartbeat: JoinHandle<()>,
    reporter: JoinHandle<()>,
    scrubber: JoinHandle<()>,
    conns: Arc<ConnTable>,
}

impl DsServer {
    /// Opens the data directory (creating identity and store on first start), binds `listen`,
    /// and starts serving and heartbeating. I/O is answered with JUKEBOX until the MDS replies.
    pub async fn start(cfg: DsConfig) -> Result<DsServer, DsServerError> {
        Self::start_with_fabric(cfg, None).await
    }

    /// [`DsServer::start`], with a libfabric endpoint of `fabric.0` on `fabric.1` opened
    /// before the first heartbeat, so the MDS never hands out device information without it
    /// (clients cache what GETDEVICEINFO told them).
    pub async fn start_with_fabric(
        cfg: DsConfig,
        fabric: Option<(&str, SocketAddr)>,
    ) -> Result<DsServer, DsServerError> {
        if cfg.mds.is_empty() {
            return Err(DsServerError::NoMds);
        }
        let dir = cfg.data_dir.clone();
        let dir_err = |source| DsServerError::DataDir {
            path: dir.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(dir_err)?;
        let id = config::load_or_create_id(&dir)?;
        let chunks = dir.join("chunks");
        let store = crate::ChunkStore::open(&chunks).map_err(|source| DsServerError::Store {
            path: chunks.clone(),
            source,
        })?;
        let objects = Objects::open(store, &dir).map_err(dir_err)?;
        let bad = badchunks::BadChunks::open(&dir).map_err(dir_err)?;
        let shard_store = shards::ShardStore::open(&dir).map_err(dir_err)?;
        let rnd = |what: &str| {
            config::random_u64().map_err(|e| DsServerError::Identity {
                path: dir.clone(),
                why: format!("no randomness for the {what}: {e}"),
            })
        };
        let instance = rnd("instance")?;
        let verifier = rnd("write verifier")?.to_be_bytes();
        let listener =
            TcpListener::bind(cfg.listen)
                .await
                .map_err(|source| DsServerError::Listen {
                    addr: cfg.listen,
                    source,
                })?;
        let local = listener
            .local_addr()
            .map_err(|source| DsServerError::Listen {
                addr: cfg.listen,
                source,
            })?;
        tracing::info!(ds_id = format_args!("{:016x}", id.0), %local, data_dir = %dir.display(),
            "data server listening");
        let shared = Arc::new(Shared {
            id,
            instance,
            verifier,
            cap_key: cfg.secret.cap_key(),
            mds: mds_nodes::MdsNodes::kept_in(cfg.mds.clone(), &dir),
            cfg,
            local,
            objects,
            shards: shard_store,
            peers: shards::Peers::default(),
            reduced: reduced::ReducedReads::default(),
            bad,
            counters: Counters::default(),
            cluster: RwLock::new(Cluster {
                geometry: None,
                fences: HashMap::new(),
            }),
            flash: Default::default(),
            fabric: RwLock::new(None),
        });
        let (stop, stop_rx) = watch::channel(false);
        let conns = ConnTable::new(shared.cfg.connections);
        let accept = tokio::spawn(accept_loop(
            listener,
            shared.clone(),
            conns.clone(),
            stop_rx.clone(),
        ));
        if let Some((provider, at)) = fabric {
            fabric::open(&shared, provider, at, stop_rx.clone())?;
        }
        let heartbeat = tokio::spawn(heartbeat::run(shared.clone(), stop_rx.clone()));
        let reporter = tokio::spawn(badchunks::run(shared.clone(), stop_rx.clone()));
        let scrubber = tokio::spawn(scrub::run(shared.clone(), stop_rx));
        Ok(DsServer {
            shared,
            stop,
            accept,
            heartbeat,
            reporter,
            scrubber,
            conns,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local
    }

    pub fn id(&self) -> DsId {
        self.shared.id
    }

    pub fn counters(&self) -> DsCounters {
        self.shared.counters.snapshot()
    }

    /// Adds counter totals saved at the previous clean shutdown, so they do not restart at zero.
    pub fn restore_counters(&self, base: &DsCounters) {
        self.shared.counters.restore(base)
    }

    /// The data directory's file system: (capacity, available) bytes; zeros if unknown.
    pub fn space(&self) -> (u64, u64) {
        heartbeat::fs_space(&self.shared.cfg.data_dir)
    }

    /// Whether the MDS has answered a heartbeat (before that, all I/O gets JUKEBOX).
    pub fn registered(&self) -> bool {
        self.shared.geometry().is_some()
    }

    /// Stops accepting and heartbeating, closes client connections, and makes every
    /// acknowledged-but-uncommitted write durable.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.accept.await;
        let _ = self.heartbeat.await;
        let _ = self.reporter.await;
        let _ = self.scrubber.await;
        self.conns.close_all();
        if let Err(e) = self.shared.objects.commit_all().await {
            tracing::error!("data server shutdown: not everything is durable: {e}");
        }
        tracing::info!(
            ds_id = format_args!("{:016x}", self.shared.id.0),
            "data server stopped"
        );
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    conns: Arc<ConnTable>,
    mut stop: watch::Receiver<bool>,
) {
    let svc = Arc::new(nfs3::Nfs3Service { shared });
    let limits = ConnectionLimits {
        max_record: MAX_RECORD,
        max_in_flight: MAX_IN_FLIGHT,
    };
    let stop = async move {
        let _ = stop.changed().await;
    };
    proto::rpc::serve(listener, svc, limits, conns, stop).await
}
