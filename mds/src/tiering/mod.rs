//! The object-store tier (issue 45; the records are `meta_core::tiering`). Cache mode: every
//! file's bytes are copied to an S3-compatible bucket once they are durable and the file is
//! quiet, so flash holds a cache of the bucket. Tiered mode (`TierMode::Tiered`): only files
//! unchanged and unused for `tier_after` are (`upload::pass` says what counts as a use).
//!
//! - `upload.rs`: the uploader. A file whose bucket copy is missing or older than its last
//!   change, unchanged for `upload_after` and open for writing by no client of this node, is
//!   read (through `Data`: the local chunk store, its mirrors or its shards) and sent in pieces
//!   of `object_size` bytes, one self-describing object each (`tier::object`), under a new
//!   generation named in the record before the first PUT.
//! - `clean.rs`: the deleter. Objects doomed (superseded, abandoned, or of a removed file) are
//!   deleted after `delete_grace`; an upload left under way by a node that died is given up.
//! - `evict.rs`: the evictor. Above the high watermark, files whose current bytes are in the
//!   bucket leave flash (reads of them: `crate::evicted`).
//! - `restore.rs`: the restorer. Evicted files someone asked for come back to flash.
//! - `through.rs`: write-through. Past `write_through` percent of a flash (this node's, or a
//!   data server's), a COMMIT, stable WRITE or LAYOUTCOMMIT of a file with bytes there is
//!   acknowledged once the file is in the bucket (back-pressure on writers faster than the
//!   bucket); a write that does not fit waits for eviction, or is refused (NOSPC) when the
//!   store is down.
//! - `snap_archive.rs`: snap-to-object. Snapshots past their retention keep their unique
//!   bytes (data images) in the bucket, not on flash.
//! - `ship.rs`: the metadata shipper. Each shard's state goes to the bucket as it changes
//!   (`crate::meta_store`), so `cfs repair --from-s3` can rebuild a lost site.
//!
//! **Why upload quiet files, not each write.** A write reaches flash through a layout, straight
//! to the data servers; the MDS learns of it at LAYOUTCOMMIT. The change attribute it bumps is
//! what marks the bucket copy stale, so the uploader needs no hook in the data path and no
//! hold on writers: it never delays a client (an S3 outage costs upload lag, never a client
//! error), until flash is nearly full (`through.rs`: then holding writers back is the point). The acknowledged-data loss window on total site loss is the upload lag, measured
//! and shown (`TierUsage::oldest_pending_secs`, `cfs_tier_upload_lag_seconds`).
//!
//! **Who uploads.** The leader of the file's shard, as for encoding, so one node per file, but
//! for an acknowledgement held in write-through, which the node holding it uploads itself
//! (`through.rs`); the record's upload under way keeps a second one from starting (`TierBegin`
//! refuses), and a generation is never reused, so two uploads never write one key.
//!
//! Not yet (issue 45): a data server refusing a write past its flash (`through.rs`).
use std::sync::{Arc, Weak};

use crate::node::Mds;
use crate::tier_set::{Tier, PASS_EVERY};

mod clean;
mod evict;
mod restore;
mod ship;
pub(crate) mod snap_archive;
pub(crate) mod through;
mod upload;

/// Starts the uploader, the deleter, the evictor, the restorer and the metadata shipper; they
/// stop when the node does.
pub fn start(mds: &Arc<Mds>, tier: Arc<Tier>) -> Vec<tokio::task::JoinHandle<()>> {
    vec![
        every(mds, &tier, PASS_EVERY, |m, t| {
            Box::pin(async move { upload::pass(&m, &t).await })
        }),
        every(mds, &tier, PASS_EVERY, |m, t| {
            Box::pin(async move { clean::pass(&m, &t).await })
        }),
        evictor(mds, &tier),
        every(mds, &tier, PASS_EVERY, |m, t| {
            Box::pin(async move { restore::pass(&m, &t).await })
        }),
        every(mds, &tier, PASS_EVERY, |m, t| {
            Box::pin(async move { snap_archive::pass(&m, &t).await })
        }),
        ship::start(mds, &tier),
    ]
}

/// How often the evictor measures flash (on one node a walk of the chunk store).
const EVICT_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// The evictor: every `EVICT_EVERY`, and at once when a write-through upload or a full
/// flash asks (`Tier::evict_now`).
fn evictor(mds: &Arc<Mds>, tier: &Arc<Tier>) -> tokio::task::JoinHandle<()> {
    let node: Weak<Mds> = Arc::downgrade(mds);
    let tier = tier.clone();
    tokio::spawn(async move {
        loop {
            let Some(m) = node.upgrade() else { return };
            evict::pass(&m, &tier).await;
            drop(m);
            tokio::select! {
                _ = tokio::time::sleep(EVICT_EVERY) => {}
                _ = tier.evict_now.notified() => {}
            }
        }
    })
}

type Pass = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Runs `pass` every `period` while the node lives.
fn every(
    mds: &Arc<Mds>,
    tier: &Arc<Tier>,
    period: std::time::Duration,
    pass: fn(Arc<Mds>, Arc<Tier>) -> Pass,
) -> tokio::task::JoinHandle<()> {
    let node: Weak<Mds> = Arc::downgrade(mds);
    let tier = tier.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(m) = node.upgrade() else { return };
            pass(m, tier.clone()).await;
        }
    })
}
