//! The object-store tier, cache mode (issue 45; the records are `meta_core::tiering`): every
//! file's bytes are copied to an S3-compatible bucket once they are durable and the file is
//! quiet, so flash holds a cache of the bucket.
//!
//! - `upload.rs`: the uploader. A file whose bucket copy is missing or older than its last
//!   change, unchanged for `upload_after` and open for writing by no client of this node, is
//!   read (through `Data`: the local chunk store, its mirrors or its shards) and sent in pieces
//!   of `object_size` bytes, one self-describing object each (`tier::object`), under a new
//!   generation named in the record before the first PUT.
//! - `clean.rs`: the deleter. Objects doomed (superseded, abandoned, or of a removed file) are
//!   deleted after `delete_grace`; an upload left under way by a node that died is given up.
//!
//! **Why upload quiet files, not each write.** A write reaches flash through a layout, straight
//! to the data servers; the MDS learns of it at LAYOUTCOMMIT. The change attribute it bumps is
//! what marks the bucket copy stale, so the uploader needs no hook in the data path and no
//! hold on writers: it never delays a client (an S3 outage costs upload lag, never a client
//! error). The acknowledged-data loss window on total site loss is the upload lag, measured
//! and shown (`TierUsage::oldest_pending_secs`, `cfs_tier_upload_lag_seconds`).
//!
//! **Who uploads.** The leader of the file's shard, as for encoding, so one node per file; the
//! record's upload under way keeps a second one from starting (`TierBegin` refuses), and a
//! generation is never reused, so two uploads never write one key.
//!
//! Not yet (issue 45): tiered mode, eviction and reads from the bucket, pins, write-through
//! when flash is full, metadata in the bucket and `cfs repair --from-s3`.
use std::sync::{Arc, Weak};

use crate::node::Mds;
use crate::tier_set::{Tier, PASS_EVERY};

mod clean;
mod upload;

/// Starts the uploader and the deleter; they stop when the node does.
pub fn start(mds: &Arc<Mds>, tier: Arc<Tier>) -> Vec<tokio::task::JoinHandle<()>> {
    let up: Weak<Mds> = Arc::downgrade(mds);
    let t = tier.clone();
    let uploader = tokio::spawn(async move {
        let mut tick = tokio::time::interval(PASS_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(m) = up.upgrade() else { return };
            upload::pass(&m, &t).await;
        }
    });
    let down: Weak<Mds> = Arc::downgrade(mds);
    let deleter = tokio::spawn(async move {
        let mut tick = tokio::time::interval(PASS_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(m) = down.upgrade() else { return };
            clean::pass(&m, &tier).await;
        }
    });
    vec![uploader, deleter]
}
