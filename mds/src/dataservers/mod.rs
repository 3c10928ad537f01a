//! The MDS's side of a cluster with data servers: who the DSs are and whether they are alive
//! (`registry`), the control program they heartbeat to (`service`), where each chunk's
//! mirrors live (`placement`), and I/O the MDS itself sends to DSs when a client does not use a
//! layout (`remote`).
//!
//! Beside those: `fences` (layout generations), `ranges` (DEALLOCATE, COPY, CLONE over the data
//! path), `repair` (re-mirroring), `drain` (moving a drained or lost DS's copies), `rebuild` (shard
//! repair), `encode` (erasure coding at rest), `reduce` and `segments` (data reduction at
//! rest: dedup, compression, segments stored erasure-coded; `segment_tier`: segments in the
//! S3 tier), `holds` (one maintenance job per file, on every MDS
//! node), `flash` (the tier's evictor: fullness per DS, emptying an evicted file's copies).
//! Their passes take only files of the shards this node leads (`Namespace::leads_file`).
pub mod data_key;
pub mod drain;
pub mod encode;
pub mod fences;
mod flash;
pub mod holds;
mod jobs;
pub mod loops;
pub mod placement;
pub mod ranges;
pub mod rebuild;
pub mod reduce;
mod reduce_clean;
mod reduced_io;
mod reduced_reads;
pub mod registry;
pub mod remote;
pub mod repair;
mod segment_repair;
mod segment_tier;
mod segments;
pub mod service;
pub mod snap_data;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use layout::{CapKey, ChunkGeometry, ClusterSecret, DsId};
use proto::nfs3_client::Nfs3Client;

use crate::error::{NfsError, NfsResult};
pub use registry::Registry;
pub(crate) use segments::raw_bytes as segment_raw_bytes;

/// How long a file stays mirrored after its last change before it is erasure-coded: long
/// enough that files being written (or rewritten by a job that runs every few minutes) are not
/// encoded and brought back to mirrors over and over; a write to an encoded file copies it
/// back to mirrors first (`encode::unencode`).
pub const DEFAULT_ENCODE_AFTER: Duration = Duration::from_secs(3600);

/// How long a data server may be down before it is declared lost and its data rebuilt
/// elsewhere: longer than a reboot or a kernel upgrade (a repair storm for a server that comes
/// back costs every disk of the cluster), as Ceph's `mon_osd_down_out_interval` (also 600 s).
pub const DEFAULT_LOST_AFTER: Duration = Duration::from_secs(600);

/// Cluster settings of an MDS.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub secret: ClusterSecret,
    /// Bytes per chunk: the unit of placement and of a layout segment.
    pub chunk_size: u64,
    /// How often DSs heartbeat.
    pub heartbeat: Duration,
    /// Silence after which a DS counts as down.
    pub dead_after: Duration,
    /// A file unchanged this long (and not open for writing) is erasure-coded; `None`: never.
    pub encode_after: Option<Duration>,
    /// Down this long, a DS is declared lost: it is drained (`drain`), so its mirror copies
    /// and shards are rebuilt on other DSs; `None`: never (an operator drains it).
    pub lost_after: Option<Duration>,
    /// Whether files due for encoding are data-reduced first (`reduce::ReducePolicy`).
    pub reduce: reduce::ReducePolicy,
    /// File bytes one part of a reduce covers at most (`reduce::DEFAULT_REDUCE_PART`): a file
    /// larger is reduced in parts, each recorded on its own.
    pub reduce_part: u64,
    /// `[encryption]`: segments (and tier objects) are sealed under the cluster's data key,
    /// which this KEK unwraps (`data_key`).
    pub encryption: Option<data_key::KeyFiles>,
}

impl ClusterConfig {
    pub fn new(secret: ClusterSecret) -> Self {
        ClusterConfig {
            secret,
            chunk_size: 16 << 20,
            heartbeat: Duration::from_secs(1),
            dead_after: Duration::from_secs(4),
            encode_after: Some(DEFAULT_ENCODE_AFTER),
            lost_after: Some(DEFAULT_LOST_AFTER),
            reduce: reduce::ReducePolicy::Off,
            reduce_part: reduce::DEFAULT_REDUCE_PART,
            encryption: None,
        }
    }
}

/// Reads and writes the MDS served itself, and layout traffic.
#[derive(Default)]
pub struct MdsIoStats {
    pub read_ops: AtomicU64,
    pub read_bytes: AtomicU64,
    pub write_ops: AtomicU64,
    pub write_bytes: AtomicU64,
    pub layouts_granted: AtomicU64,
    pub layouts_recalled: AtomicU64,
}

impl MdsIoStats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

pub struct Cluster {
    pub cfg: ClusterConfig,
    pub geometry: ChunkGeometry,
    pub cap_key: CapKey,
    pub registry: Registry,
    /// Layout generations: every file starts at this instance's base (handles minted by an
    /// earlier instance are stale: the layouts they belonged to died with it), and fencing a
    /// file raises its own.
    pub fences: std::sync::Mutex<fences::Fences>,
    pub stats: MdsIoStats,
    /// When this MDS started: DSs need a heartbeat or two to find it again.
    started: std::time::Instant,
    /// One connection per DS, for the I/O the MDS sends itself.
    conns: tokio::sync::Mutex<HashMap<DsId, Nfs3Client>>,
    /// Serialises changes to chunk placement records, so two grants racing for a new chunk
    /// cannot record different mirrors.
    placing: tokio::sync::Mutex<()>,
    /// Files with fewer mirrors than they should have, for repair: a cache of the placement
    /// records that name too few DSs (see `repair`).
    degraded: std::sync::Mutex<std::collections::BTreeSet<u64>>,
    /// Files whose copy on a DS failed verification: that DS, where repair rewrites the copy.
    rewrite: std::sync::Mutex<HashMap<u64, DsId>>,
    /// Files claimed by a maintenance job of this node's (`holds`): writes to them wait.
    repairing: std::sync::Mutex<std::collections::HashSet<u64>>,
    /// Files this node holds for other MDS nodes' jobs (`holds`).
    holds: std::sync::Mutex<holds::Holds>,
    /// When the records were last scanned for data servers never heard from (`declare_lost`).
    unheard_scan: std::sync::Mutex<Option<std::time::Instant>>,
    /// Until when each repair pass rescans the records (`repair::want_rescan`).
    rescan_until: std::sync::Mutex<Option<std::time::Instant>>,
    /// A data server reported a bad shard since the last pass over the records.
    shard_reports: std::sync::atomic::AtomicBool,
    /// DSs that hold unstable data the MDS wrote, per file.
    dirty: std::sync::Mutex<HashMap<u64, std::collections::HashSet<DsId>>>,
    /// Bytes the evictor freed on each DS since its last reported usage (`flash`).
    freed: std::sync::Mutex<flash::Freed>,
    /// With the object-store tier: each data server's flash capacity (0: its file system)
    /// and the longest an upload may take, for heartbeat replies (`Cluster::flash_limit`).
    tier_flash: std::sync::OnceLock<(u64, std::time::Duration)>,
    /// With the object-store tier: the bucket reduced files' segments go to (`segment_tier`).
    segment_bucket: std::sync::OnceLock<segment_tier::BucketAccess>,
    /// Whether the store was failing at the last heartbeat reply (`Cluster::flash_limit`).
    store_failed: std::sync::atomic::AtomicBool,
    /// The cluster's data key, once known (`data_key`).
    data_key: std::sync::OnceLock<::reduce::DataKey>,
    /// Reduced files' recipes and segments recently read (`reduce`).
    reduced_reads: std::sync::Mutex<reduced_io::ReadCache>,
    /// Files the encoder left mirrored, by the change it left them at (`encode::left_as_is`).
    left_as_is: std::sync::Mutex<HashMap<u64, u64>>,
    /// One fetch of a segment at a time (`reduced_io::FETCH_LOCKS`).
    segment_fetches: [tokio::sync::Mutex<()>; reduced_io::FETCH_LOCKS],
    /// Turns to assemble a read of a reduced file (`reduced_io::ASSEMBLIES`).
    reduced_turns: tokio::sync::Semaphore,
    /// Segment shards reported bad, to rebuild in place (`segment_repair`).
    bad_segments: std::sync::Mutex<segment_repair::BadSegmentShards>,
    /// Where the reclaim pass of leaked referrers goes on from, per shard (`reduce`).
    #[allow(clippy::type_complexity)]
    reclaim_at: std::sync::Mutex<
        HashMap<
            u16,
            (
                meta::namespace::reduce_index::SegmentId,
                meta::namespace::reduce_index::Referrer,
            ),
        >,
    >,
    /// Where the sweep of segments whose flash may go goes on from, per shard
    /// (`segment_tier`).
    cold_at: std::sync::Mutex<HashMap<u16, meta::namespace::reduce_index::SegmentId>>,
    /// Segments this node is writing back to flash (`segment_tier`): the passes that delete
    /// a record's `dropping` shards leave these alone meanwhile.
    warming: std::sync::Mutex<std::collections::HashSet<meta::namespace::reduce_index::SegmentId>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("chunk size {0} is not a power of two between 4 KiB and 1 GiB")]
    ChunkSize(u64),
}

impl Cluster {
    /// `node`: this MDS node's id in a multi-node metadata service (0 alone); it goes into every
    /// generation this node mints, so DSs keep each node's fences apart.
    pub fn new(cfg: ClusterConfig, node: u8, boot: u64) -> Result<Cluster, ClusterError> {
        let geometry = ChunkGeometry::new(cfg.chunk_size)
            .map_err(|_| ClusterError::ChunkSize(cfg.chunk_size))?;
        Ok(Cluster {
            cap_key: cfg.secret.cap_key(),
            registry: Registry::new(),
            fences: std::sync::Mutex::new(fences::Fences::new(layout::generation_base(node, boot))),
            stats: MdsIoStats::default(),
            started: std::time::Instant::now(),
            conns: tokio::sync::Mutex::new(HashMap::new()),
            placing: tokio::sync::Mutex::new(()),
            dirty: std::sync::Mutex::new(HashMap::new()),
            freed: Default::default(),
            tier_flash: Default::default(),
            segment_bucket: Default::default(),
            store_failed: Default::default(),
            data_key: Default::default(),
            reduced_reads: Default::default(),
            left_as_is: Default::default(),
            segment_fetches: Default::default(),
            reduced_turns: tokio::sync::Semaphore::new(reduced_io::ASSEMBLIES),
            reclaim_at: Default::default(),
            cold_at: Default::default(),
            warming: Default::default(),
            bad_segments: Default::default(),
            shard_reports: Default::default(),
            unheard_scan: std::sync::Mutex::new(None),
            rescan_until: std::sync::Mutex::new(None),
            degraded: std::sync::Mutex::new(Default::default()),
            rewrite: std::sync::Mutex::new(HashMap::new()),
            repairing: std::sync::Mutex::new(Default::default()),
            holds: std::sync::Mutex::new(Default::default()),
            geometry,
            cfg,
        })
    }

    /// A connection to `ds` (its listening address), made on first use.
    pub async fn conn(&self, ds: DsId) -> NfsResult<Nfs3Client> {
        let mut conns = self.conns.lock().await;
        if let Some(c) = conns.get(&ds) {
            if !c.is_closed() {
                return Ok(c.clone());
            }
        }
        let addr = self
            .registry
            .listen_addr(ds)
            .ok_or(NfsError::LayoutUnavailable)?;
        let mut c = Nfs3Client::connect(&[addr], Duration::from_secs(2), 0, 0)
            .await
            .map_err(|e| {
                tracing::warn!(ds = %ds, %addr, "cannot reach data server: {e}");
                self.registry.mark_down(ds);
                NfsError::Io
            })?;
        c.set_timeout(Duration::from_secs(15));
        conns.insert(ds, c.clone());
        Ok(c)
    }

    /// A DS failed at the transport level: forget the connection and stop using it until its
    /// next heartbeat says it is back.
    pub async fn ds_failed(&self, ds: DsId) {
        if let Some(c) = self.conns.lock().await.remove(&ds) {
            c.close();
        }
        self.registry.mark_down(ds);
    }
}

impl Cluster {
    /// Checks a DS a client complained about: NULL on a fresh connection.
    pub async fn probe(&self, ds: DsId) {
        let Some(addr) = self.registry.listen_addr(ds) else {
            return;
        };
        let alive = match Nfs3Client::connect(&[addr], Duration::from_secs(2), 0, 0).await {
            Ok(mut c) => {
                c.set_timeout(Duration::from_secs(2));
                let ok = c.null().await.is_ok();
                c.close();
                ok
            }
            Err(_) => false,
        };
        if !alive {
            self.ds_failed(ds).await;
        }
    }
}

impl Cluster {
    fn fence_log(&self) -> std::sync::MutexGuard<'_, fences::Fences> {
        self.fences.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Files known to be short of a mirror (waiting for repair), for the admin listener.
    pub fn degraded_files(&self) -> usize {
        self.degraded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// The generation DS handles for `ino` are minted with.
    pub fn generation(&self, ino: u64) -> u64 {
        self.fence_log().generation(ino)
    }

    /// Makes every DS handle of `ino` minted so far stale (the DSs hear of it with their next
    /// heartbeat). For clients that lost their lease while holding RW layouts: they may still
    /// be alive, and must not write behind the MDS's back.
    pub fn fence(&self, ino: u64) {
        let g = self.fence_log().fence(ino);
        tracing::info!(
            ino,
            generation = g,
            "file fenced: its earlier DS handles are stale"
        );
    }

    /// A data server whose data no longer counts: drained, or declared lost, and down. A delete
    /// there counts as done (its bytes went with it; should it come back, what it holds is
    /// named by no record), so one dead server cannot keep a removed file's orphan, or an
    /// encoding's clean-up, pending forever.
    pub(crate) fn written_off(&self, ds: DsId) -> bool {
        self.registry.is_draining(ds) && !self.registry.is_up(ds)
    }

    /// `fence`, as routine: before a removal deletes the file's data.
    fn fence_quietly(&self, ino: u64) {
        let g = self.fence_log().fence(ino);
        tracing::debug!(ino, generation = g, "file fenced before its data is cut");
    }
}
