//! The metadata server: NFSv4.1/4.2 over the namespace state machine. File data lives in an
//! in-process chunk store (the single-node default) or on data servers, which clients reach
//! through pNFS flexfiles layouts (`cluster`, `ops::pnfs`).
//!
//! Off the request path, per node: the laundromat (`laundromat`) expires clients whose lease ran
//! out when no courtesy keeps them (`state::courtesy`), fences the files they held RW layouts on
//! and hands the unlinked files only they had open to the reaper; the reaper removes the data of
//! unlinked files nobody has open, then forgets them (those found at start only after the grace
//! period: OPEN promises `OPEN4_RESULT_PRESERVE_UNLINKED`), and a removal that fails (a DS down)
//! leaves the orphan, retried with backoff (`reap_later`). Side effects of applied commands
//! (`namespace::Effect`) reach this crate through the `EffectSink` (`carry_out_effects`), never
//! through the operation that proposed the command. Orphans are gathered for `ORPHAN_GATHER` (50
//! ms) into one `forget_orphans`: one task's unlink took 450-510 µs before, 370-380 µs after (one
//! node).
//!
//! The MDS's write verifier is its boot count, and client ids and stateids carry the node (top
//! byte) and its boot count, so a restarted or another node's instance recognises what it did not
//! mint (BAD_STATEID, as knfsd answers through a session).
// Public: what `cfs` uses (`admin`, `config`, and `Server` below), what the fuzz targets in
// mds/fuzz decode (`fh`, `peer_bodies`), and `state` until its unused `pub` items go.
mod addresses;
pub mod admin;
mod attrs;
mod caller;
mod cluster;
mod compound;
pub mod config;
mod ctx;
mod data;
mod error;
mod export;
pub mod fh;
mod in_use;
mod isolation;
mod limits;
mod locking;
mod metered;
mod ops;
mod peer_answers;
pub mod peer_bodies;
mod recall;
mod remote_delegations;
mod remote_holds;
mod remote_nodes;
mod remote_shares;
mod rmtree;
mod sec;
mod server;
mod space;
pub mod state;

use meta::{namespace, raft};

use export::Export;
use meta::namespace::{FsError, Namespace};
use state::{ClientDb, StateManager};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

pub use config::ServerConfig;

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
    Cluster(#[from] cluster::ClusterError),
}

/// Everything the operation handlers share.
pub struct Mds {
    pub ns: Namespace,
    pub data: data::DataPath,
    pub state: StateManager,
    pub exports: Vec<Export>,
    /// The rules of the pseudo file system's directories (read-only).
    pub pseudo: Export,
    pub fs_id: u64,
    /// Authenticates the file handles this server hands out (`fh`).
    pub fh_key: fh::FhKey,
    /// The export each recently opened file was opened in (callbacks carry its handle).
    pub recent_exports: fh::RecentExports,
    /// Where chunk data lives (for file-system space attributes).
    pub data_path: PathBuf,
    /// Space kept for metadata: data writes stop short of it (`space`).
    pub space: Arc<space::Space>,
    /// Changes on every restart, so clients know to resend UNSTABLE writes not yet committed.
    pub write_verf: [u8; 8],
    pub boot: u64,
    pub lease_seconds: u32,
    /// How long clients may reclaim after a restart or a takeover.
    pub grace: Duration,
    /// This node's id in a metadata cluster (0: the one-node service): whose client records
    /// it keeps (`Command::ClientRecords`).
    pub node: u8,
    /// The client addresses this node answers on now (its own, and those it took over;
    /// `addresses`), for `cfs admin status`.
    pub serving: std::sync::Mutex<Vec<SocketAddr>>,
    /// Byte-range locks across MDS nodes: requests in flight, and the arbiter's views of the
    /// files of the shards this node leads.
    pub locks: locking::ClusterLocks,
    /// Where other MDS nodes may have delegated files, and this node's operations that
    /// conflict with a new delegation.
    pub remote_delegs: remote_delegations::RemoteDelegations,
    /// Other MDS nodes' deny bits on files, and this node's opens in flight.
    pub remote_shares: remote_shares::RemoteShares,
    /// Serialises callbacks (each back channel has one slot).
    pub callback_lock: tokio::sync::Mutex<()>,
    /// Unlinked files whose data is to go, for the reaper task (started on first use).
    reaper: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<u64>>,
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
        Ok(n) if n >= 1 => n,
        _ => {
            tracing::warn!(value = %v, "CFS_SHARDS is not a shard count 1..=65535; using the default");
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
                data::DataPath::Cluster(Arc::new(cluster::Cluster::new(c.clone(), node, boot)?))
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
        Ok(Mds {
            fs_id: match &cfg.members {
                Some(m) => m.secret.fs_id(),
                None => ns.fs_id(),
            },
            data_path: data_dir,
            space,
            ns,
            data,
            state,
            exports: cfg.exports.clone(),
            pseudo: Export::pseudo(),
            fh_key,
            recent_exports: fh::RecentExports::default(),
            write_verf,
            boot,
            lease_seconds: cfg.lease_seconds.max(5),
            grace,
            node,
            serving: Default::default(),
            locks: locking::ClusterLocks::default(),
            remote_delegs: remote_delegations::RemoteDelegations::new(boot),
            remote_shares: remote_shares::RemoteShares::new(boot),
            callback_lock: tokio::sync::Mutex::new(()),
            reaper: std::sync::OnceLock::new(),
        })
    }

    /// An unlinked file kept only for those who have it open.
    pub fn is_orphan(&self, ino: u64) -> bool {
        self.ns.getattr(ino).is_ok_and(|i| i.nlink == 0)
    }

    /// Deletes the data of unlinked files nobody has open any more.
    ///
    /// Neither step needs to be durable before the reply that unlinked the file, so both run
    /// in the background (the reaper): first the data, then one FORGET_ORPHANS for the batch. A
    /// crash in between leaves an orphan whose data is already gone, which the next start
    /// forgets; the other order could leave data nothing refers to.
    pub async fn forget_orphan(self: &Arc<Self>, ino: u64) {
        self.forget_orphans(vec![ino]).await;
    }

    /// `forget_orphan` for many files at once: the other MDS nodes are asked about all of them
    /// in one call each. Asked once per file, a run of unlinks cost two peer calls per unlink,
    /// one at a time, on the connections that also carry the Raft traffic
    /// (docs/METADATA-BENCH.md, "Unlinks").
    pub async fn forget_orphans(self: &Arc<Self>, mut inos: Vec<u64>) {
        inos.retain(|&ino| {
            let open = self.state.file_in_use(ino);
            if open {
                tracing::debug!(ino, "unlinked file still open: kept until its last close");
            }
            !open
        });
        if inos.is_empty() {
            return;
        }
        // Open through another MDS node (or reclaimable there): that node's last close reaps
        // it. A node that did not answer may have it open: asked again later.
        if self.ns.peers().is_some() {
            let (free, elsewhere): (Vec<u64>, Vec<u64>) =
                match in_use::elsewhere(&self.ns, &inos).await {
                    Some(used) => {
                        let mut used = used.into_iter();
                        inos.into_iter().partition(|_| !used.next().unwrap_or(true))
                    }
                    None => (Vec::new(), inos),
                };
            if !elsewhere.is_empty() {
                tracing::debug!(
                    files = elsewhere.len(),
                    "unlinked files open (or reclaimable) through another node"
                );
                tokio::spawn(reap_later(Arc::downgrade(self), elsewhere));
            }
            inos = free;
        }
        let tx = self.reaper.get_or_init(|| {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            tokio::spawn(reap(Arc::downgrade(self), rx));
            tx
        });
        for ino in inos {
            tracing::debug!(ino, "unlinked file goes to the reaper");
            self.state.forget_file(ino);
            if tx.send(ino).is_err() {
                tracing::warn!(ino, "orphan reaper gone; the next start forgets the file");
            }
        }
    }
}

/// Expires clients (`StateManager::sweep`: courtesy clients are kept until a conflict or a
/// bound) every half lease, and at once when a conflict has expired one; then fences the
/// files the expired clients held RW layouts on and reaps the unlinked files only they had
/// open.
async fn laundromat(mds: Arc<Mds>) {
    let mut tick = tokio::time::interval(Duration::from_secs(u64::from(mds.lease_seconds) / 2));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = mds.state.laundromat.notified() => {}
        }
        let orphans = mds
            .state
            .lapsed_open_files()
            .into_iter()
            .filter(|&ino| mds.is_orphan(ino))
            .collect();
        mds.state.sweep(&orphans);
        forget_client_records(&mds).await;
        let expired = mds.state.take_expired();
        if expired.clients == 0 {
            continue;
        }
        tracing::info!(
            clients = expired.clients,
            "expired clients whose lease ran out"
        );
        if let Some(c) = mds.cluster() {
            for &ino in &expired.fenced {
                c.fence(ino);
            }
        }
        let orphans = expired
            .released
            .into_iter()
            .filter(|&ino| mds.is_orphan(ino))
            .collect();
        mds.forget_orphans(orphans).await;
    }
}

/// Commits the removal of the records of clients that are gone (`state::ClientDb`). One that
/// fails stays recorded, which costs at most a wait in a later grace period.
pub(crate) async fn forget_client_records(mds: &Mds) {
    let gone = mds.state.take_forgotten();
    if gone.is_empty() {
        return;
    }
    let n = gone.len();
    let cmd = namespace::Command::ClientRecords {
        node: u64::from(mds.node),
        add: Vec::new(),
        remove: gone,
    };
    if let Err(e) = mds.ns.execute(cmd).await {
        tracing::warn!(clients = n, "cannot forget client records: {e}");
    }
}

/// Most orphans handled in one round.
const REAP_BATCH: usize = 256;
/// First wait before removing an orphan's data again (a data server was down); it doubles up
/// to `REAP_RETRY_MAX`.
const REAP_RETRY: Duration = Duration::from_secs(2);
const REAP_RETRY_MAX: Duration = Duration::from_secs(300);

/// Removes the data of orphans, a batch at a time, then forgets them. Ends with the server.
///
/// The orphan in the namespace is the durable record that its data must go: it is forgotten
/// only once every data server holding some confirmed the removal. What failed is tried again
/// later (and, after a crash, at the next start), so a data server that was down loses its
/// copy when it is back.
async fn reap(mds: std::sync::Weak<Mds>, mut rx: tokio::sync::mpsc::UnboundedReceiver<u64>) {
    let mut batch = Vec::with_capacity(REAP_BATCH);
    while rx.recv_many(&mut batch, REAP_BATCH).await > 0 {
        let Some(mds) = mds.upgrade() else { break };
        let todo = std::mem::replace(&mut batch, Vec::with_capacity(REAP_BATCH));
        let (inos, failed) = reap_once(&mds, todo, true).await;
        if !failed.is_empty() {
            tokio::spawn(reap_later(Arc::downgrade(&mds), failed));
        }
        forget(&mds, inos).await;
    }
}

/// Removes the data of `todo`; returns the orphans done and those to try again.
async fn reap_once(mds: &Mds, todo: Vec<u64>, loud: bool) -> (Vec<u64>, Vec<u64>) {
    let mut done = Vec::new();
    let mut failed = Vec::new();
    for (ino, r) in mds.remove_data_many(todo).await {
        match r {
            Ok(()) => done.push(ino),
            Err(e) => {
                if loud {
                    tracing::warn!(ino, "cannot remove data of orphan yet, will retry: {e}");
                }
                failed.push(ino);
            }
        }
    }
    (done, failed)
}

/// Retries removals that failed, backing off, until they succeed or the server ends.
async fn reap_later(mds: std::sync::Weak<Mds>, mut todo: Vec<u64>) {
    let mut wait = REAP_RETRY;
    while !todo.is_empty() {
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(REAP_RETRY_MAX);
        let Some(m) = mds.upgrade() else { return };
        // Still orphans? A file reopened by handle in the meantime is someone else's again.
        if let Ok(orphans) = m.ns.orphans() {
            let orphans: std::collections::HashSet<u64> = orphans.into_iter().collect();
            todo.retain(|i| orphans.contains(i));
        }
        // Open here or through another node: that holder's last close reaps it. Unknown (a
        // node did not answer): asked again next round.
        todo.retain(|i| !m.state.file_in_use(*i));
        let (free, unknown) = match in_use::elsewhere(&m.ns, &todo).await {
            Some(used) => (
                todo.iter()
                    .zip(used)
                    .filter(|(_, u)| !u)
                    .map(|(i, _)| *i)
                    .collect(),
                Vec::new(),
            ),
            None => (Vec::new(), std::mem::take(&mut todo)),
        };
        let (done, failed) = reap_once(&m, free, false).await;
        if !failed.is_empty() {
            tracing::warn!(
                orphans = failed.len(),
                "orphan data still not removed, will retry"
            );
        }
        todo = failed;
        todo.extend(unknown);
        forget(&m, done).await;
    }
}

/// Forgets orphans whose data is gone: one command per shard they live in.
async fn forget(mds: &Mds, inos: Vec<u64>) {
    let mut by_shard: std::collections::BTreeMap<namespace::ShardId, Vec<u64>> = Default::default();
    for ino in inos {
        by_shard
            .entry(namespace::ShardId::of_ino(ino))
            .or_default()
            .push(ino);
    }
    for (shard, inos) in by_shard {
        let n = inos.len();
        if let Err(e) = mds
            .ns
            .execute(namespace::Command::ForgetOrphans { inos })
            .await
        {
            tracing::warn!(%shard, orphans = n, "cannot forget orphans: {e}");
        }
    }
}

/// Hands the effects of applied commands from the namespace's writer thread to
/// `carry_out_effects`, without blocking it.
struct QueuedEffects(tokio::sync::mpsc::UnboundedSender<Vec<namespace::Effect>>);

impl namespace::EffectSink for QueuedEffects {
    fn effects(&self, effects: &[namespace::Effect]) {
        // Gone only when the server is: the next start finds the orphans in the state.
        let _ = self.0.send(effects.to_vec());
    }
}

/// Most batches of effects `carry_out_effects` takes at once.
const EFFECT_BATCHES: usize = 256;
/// How long unlinked files are gathered before they go to `forget_orphans` together.
///
/// Each batch costs a `ForgetOrphans` log command on the file's shard (and, with several MDS
/// nodes, one in-use question to each peer). Handed over one unlink at a time, that command
/// took the shard's proposer between a lone client's REMOVEs, so each REMOVE waited for the
/// previous one's forget to be made durable before its own: a sequential `rm` paid two
/// fdatasyncs per file. Gathered, a run of unlinks shares one. An orphan has no name left, so
/// nothing a client sees waits for this.
const ORPHAN_GATHER: Duration = Duration::from_millis(50);
/// Most orphans gathered into one `forget_orphans`.
const ORPHAN_BATCH: usize = 1024;

/// Carries out what applied commands left to do: an unlinked file's data goes once nobody has
/// it open (`forget_orphans`, for the orphans of `ORPHAN_GATHER` at once); an object deleted
/// outright takes its delegations and other state with it at once (a client cannot return a
/// delegation on a directory that no longer exists, and one left in the table would keep its
/// DESTROY_CLIENTID busy).
async fn carry_out_effects(
    mds: std::sync::Weak<Mds>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Vec<namespace::Effect>>,
) {
    let mut batches = Vec::with_capacity(EFFECT_BATCHES);
    while rx.recv_many(&mut batches, EFFECT_BATCHES).await > 0 {
        let Some(mds) = mds.upgrade() else { return };
        let mut orphans = Vec::new();
        sort_effects(&mds, &mut batches, &mut orphans);
        if orphans.is_empty() {
            continue;
        }
        let until = tokio::time::Instant::now() + ORPHAN_GATHER;
        while orphans.len() < ORPHAN_BATCH {
            let more = tokio::time::timeout_at(until, rx.recv_many(&mut batches, EFFECT_BATCHES));
            match more.await {
                Ok(n) if n > 0 => sort_effects(&mds, &mut batches, &mut orphans),
                _ => break,
            }
        }
        mds.forget_orphans(orphans).await;
    }
}

/// Carries out `batches`' effects that need no gathering, and moves its orphans to `orphans`.
fn sort_effects(mds: &Mds, batches: &mut Vec<Vec<namespace::Effect>>, orphans: &mut Vec<u64>) {
    for e in batches.drain(..).flatten() {
        match e {
            namespace::Effect::Orphaned(ino) => orphans.push(ino),
            namespace::Effect::Freed(ino) => mds.state.forget_file(ino),
            // The namespace's own reclaimer empties it (`namespace::rmtree`).
            namespace::Effect::Detached(_) => {}
        }
    }
}

pub struct Server {
    local: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    mds: Arc<Mds>,
}

impl Server {
    pub async fn start(cfg: ServerConfig) -> Result<Server, ServerError> {
        Self::start_with_gss(cfg, None).await
    }

    /// `start`, with RPCSEC_GSS (Kerberos) answered by `gss` in front of the NFS service.
    /// Without it RPCSEC_GSS calls get AUTH_TOOWEAK.
    pub async fn start_with_gss(
        cfg: ServerConfig,
        gss: Option<Arc<krb::Acceptor>>,
    ) -> Result<Server, ServerError> {
        let mds = Arc::new(Mds::open(&cfg).await?);
        let (effects, effects_rx) = tokio::sync::mpsc::unbounded_channel();
        mds.ns.set_effect_sink(Arc::new(QueuedEffects(effects)));
        in_use::answer_here(&mds);
        peer_answers::answer_here(&mds);
        // Files unlinked while open before the restart: OPEN promised their holders
        // (OPEN4_RESULT_PRESERVE_UNLINKED, RFC 8881 §18.16.3) to keep them through the grace
        // period, so they can reclaim the open by file handle. What nobody reclaimed by then
        // goes.
        if let Ok(orphans) = mds.ns.orphans() {
            if !orphans.is_empty() {
                let weak = Arc::downgrade(&mds);
                tokio::spawn(async move {
                    loop {
                        match weak.upgrade() {
                            Some(m) if m.state.in_grace() => {}
                            Some(m) => {
                                m.forget_orphans(orphans).await;
                                return;
                            }
                            None => return,
                        }
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                });
            }
        }
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| ServerError::Listen {
                addr: cfg.listen,
                source,
            })?;
        let local = listener
            .local_addr()
            .map_err(|source| ServerError::Listen {
                addr: cfg.listen,
                source,
            })?;
        let svc = Arc::new(server::NfsService { mds: mds.clone() });
        let limits = proto::rpc::ConnectionLimits {
            max_record: limits::MAX_RECORD,
            max_in_flight: 64,
        };
        let table = proto::rpc::ConnTable::new(cfg.connections);
        if let Some(c) = mds.cluster() {
            // Before the port answers anyone (DS heartbeats, LAYOUTGETs), so no new file lands
            // on a DS being drained.
            if let Err(e) = c.load_drains(&mds.ns) {
                tracing::warn!("cannot read the drain marks: {e:?}");
            }
        }
        let mut tasks = Vec::new();
        // With several nodes, always: a node that joins later may bring a client address
        // (`raft::node_addr`) that this one must take over should it die.
        if let Some(m) = &cfg.members {
            let (svc, gss, table) = (svc.clone(), gss.clone(), table.clone());
            let serve = move |l| {
                tokio::spawn(server::accept_loop(
                    l,
                    svc.clone(),
                    gss.clone(),
                    limits,
                    table.clone(),
                ))
            };
            tasks.push(tokio::spawn(addresses::keep(
                mds.clone(),
                m.me,
                m.nodes.clone(),
                cfg.client_addresses.clone(),
                serve,
            )));
        }
        tasks.extend([
            tokio::spawn(server::accept_loop(listener, svc, gss, limits, table)),
            tokio::spawn(carry_out_effects(Arc::downgrade(&mds), effects_rx)),
        ]);
        tasks.push(tokio::spawn(laundromat(mds.clone())));
        if mds.ns.peers().is_some() {
            tasks.push(tokio::spawn(isolation::watch(mds.clone())));
            tasks.push(tokio::spawn(remote_delegations::sweep(Arc::downgrade(
                &mds,
            ))));
            tasks.push(tokio::spawn(remote_shares::sweep(Arc::downgrade(&mds))));
        }
        if cfg.members.is_some() {
            // The root is made once shard 0 has a leader, which needs the other nodes to hear
            // this one: answered from now on by the accept loop above.
            let waited = tokio::time::timeout(raft::START_WAIT, async {
                while mds.ns.getattr(namespace::ROOT_INO).is_err() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
            .await;
            if waited.is_err() {
                tracing::warn!(
                    "no metadata quorum yet: requests wait until enough MDS nodes are up"
                );
            }
        }
        if cfg.members.is_some() {
            // This node's client records as its replica had them at start may be stale: a
            // node that took over its address while it was down moved them. Read again once
            // the replica caught up (a command through shard 0 returns after that).
            let m = mds.clone();
            tasks.push(tokio::spawn(async move {
                let node = u64::from(m.node);
                if addresses::shard0_barrier(&m, node, m.grace).await.is_ok() {
                    if let Ok(r) = m.ns.client_records(node) {
                        m.state.keep_reclaimers(&r.into_iter().collect());
                    }
                }
            }));
        }
        let keeper = mds.clone();
        tasks.push(tokio::spawn(async move {
            // Gives the reserve back when something else fills the disk, and takes it again
            // once space returns (see `space`); statvfs and a resize are cheap.
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                keeper.space.keep();
            }
        }));
        if let Some(c) = mds.cluster().cloned() {
            // Repair runs on its own so a long copy never delays the health sweep.
            let repairer = mds.clone();
            let rc = c.clone();
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(rc.cfg.heartbeat * 2);
                let recall = {
                    let m = Arc::downgrade(&repairer);
                    move |ino: u64| {
                        if let Some(m) = m.upgrade() {
                            recall::recall_layouts(&m, ino, None);
                        }
                    }
                };
                // The first pass rescans: the queue is derived from the placement records, so
                // files left short of a mirror before a restart are found again.
                for pass in 0u64.. {
                    tick.tick().await;
                    let rescan = pass % cluster::repair::RESCAN_TICKS == 0 || rc.rescan_soon();
                    rc.repair_pass(&repairer.ns, rescan).await;
                    if rescan || rc.take_shard_reports() {
                        rc.bad_shards_pass(&repairer.ns).await;
                    }
                    rc.declare_lost(&repairer.ns).await;
                    rc.drain_pass(&repairer.ns, &recall).await;
                }
            }));
            // Erasure coding (`cluster::encode`), on its own: an encode job takes seconds. With
            // several metadata nodes each encodes the files of the shards it leads, and its
            // claim keeps every node's writers off the file (`cluster::holds`).
            {
                let encoder = mds.clone();
                let ec = c.clone();
                tasks.push(tokio::spawn(async move {
                    let every = ec
                        .cfg
                        .encode_after
                        .map_or(Duration::from_secs(30), |a| a / 4)
                        .clamp(Duration::from_secs(1), Duration::from_secs(30));
                    let mut tick = tokio::time::interval(every);
                    let m = Arc::downgrade(&encoder);
                    let recall = move |ino: u64| {
                        if let Some(m) = m.upgrade() {
                            recall::recall_layouts(&m, ino, None);
                        }
                    };
                    let m = Arc::downgrade(&encoder);
                    let in_use = move |ino: u64| {
                        m.upgrade()
                            .is_none_or(|m| m.state.file_writable_by_someone(ino))
                    };
                    loop {
                        tick.tick().await;
                        ec.encode_pass(&encoder.ns, &in_use, &recall).await;
                    }
                }));
            }
            let health = mds.clone();
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(c.cfg.heartbeat);
                loop {
                    tick.tick().await;
                    c.registry.sweep(c.cfg.dead_after);
                    for ds in c.registry.take_down_events() {
                        c.want_rescan();
                        recall::recall_layouts_on_ds(&health, ds);
                    }
                }
            }));
        }
        Ok(Server { local, tasks, mds })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// What an operator's tools read of this server and ask of it (`cfs`'s admin listener):
    /// the server's state stays behind it.
    pub fn admin(&self) -> admin::Admin {
        admin::Admin::new(self.mds.clone())
    }

    /// The namespace's counters: commands, batches, durable commits (fdatasyncs), checkpoints.
    pub fn namespace_stats(&self) -> namespace::StatsSnapshot {
        self.mds.ns.stats()
    }

    /// Stops accepting, then makes everything applied durable.
    pub async fn shutdown(self) {
        for t in &self.tasks {
            t.abort();
        }
        forget_client_records(&self.mds).await;
        if let Err(e) = self.mds.ns.record_all_and_sync().await {
            tracing::error!("final sync of the namespace failed: {e}");
        }
    }
}
