//! Write-through when flash is nearly full (issue 45 item 6, seed decision D6).
//!
//! **What it is for.** Back-pressure. Flash is a cache of the bucket only for what the
//! uploader has sent; a writer faster than the bucket fills flash with bytes nothing may evict
//! (the evictor never drops what the bucket has not confirmed). Past `write_through` percent
//! (`[tier] write_through_percent`, default 95, above `evict_high`) a flash (this node's own
//! store, or a data server) is in write-through: the acknowledgement a client depends on, a
//! COMMIT, a stable WRITE or a LAYOUTCOMMIT, of a file with bytes there is sent only once the
//! file's bytes as they are after that write are in the bucket. The writer then
//! goes at the bucket's pace, and what it wrote is evictable the moment it is acknowledged (the
//! evictor takes those files first, and is woken to do so). Below `evict_high` eviction alone
//! keeps up, and write-through ends; between the two marks the state stays as it was.
//!
//! **The states** (`tier_set::FlashState`, measured by the evictor and counted per write):
//! - under the mark: acknowledged from flash, as always in cache mode;
//! - write-through: the acknowledgement waits for the upload, at most `ACK_WAIT`, then
//!   NFS4ERR_DELAY (Linux retries a COMMIT on DELAY, `nfs4_commit_done_cb`; nothing hangs on
//!   a slow bucket, and the upload goes on meanwhile, so the retry finds it done or under
//!   way). A stable WRITE answered DELAY is sent again, which changes the file again and
//!   starts its upload over: Linux sends FILE_SYNC only for a flush of one request, and
//!   UNSTABLE plus COMMIT otherwise, so that case is a small write;
//! - the store failing every request (`metrics::tier::failing_for`): nothing can be
//!   acknowledged through it, so acknowledgements come from flash again (the bytes are durable
//!   there and are never evicted before the bucket confirms them), until flash is full;
//! - full (a write would not fit): NFS4ERR_NOSPC when the store is failing or no write has fit
//!   for the longest a PUT may take, else NFS4ERR_DELAY while the uploader and evictor make
//!   room. So ENOSPC only when flash is full *and* nothing can free it, and nothing
//!   acknowledged is ever dropped.
//!
//! **Why the whole file, at COMMIT.** Uploads are whole-file (`upload.rs`), and a file's copy counts only at one change attribute, so "in the bucket" is
//! "the file's copy is at a change at least the one this write left": the same record the
//! evictor and `cfs repair --from-s3` trust. A file committed k times in write-through is
//! uploaded k times; Linux commits at close, fsync and when writeback has gathered enough, so k
//! is small for the files that fill flash. Uploading the changed pieces alone is the way past
//! that (not built: it needs a copy made of several generations).
//!
//! **Where.** On one node the MDS stores the bytes, and WRITE and COMMIT come to it. On a
//! cluster clients write through layouts straight to the data servers, and the MDS hears of it
//! at LAYOUTCOMMIT, which is held the same way (Linux sends it at close and fsync, write
//! delegations over layouts having a space limit of 0, and retries it on DELAY); a COMMIT or
//! stable WRITE through the MDS is held too. Each data server is a place with its own state,
//! measured from its heartbeats (`tier_set::FlashState`), and a file is held when a place
//! holding its bytes (its mirrors, or its shards) is in write-through: a writer fills only
//! those. The change to cover is the one the acknowledged command recorded (on a node that
//! does not lead the file's shard its replica may not have applied it yet).
//!
//! **Who uploads.** The node holding the acknowledgement, leader of the file's shard or not:
//! `TierBegin` keeps a second upload of a file from starting anywhere, and the deleter gives up
//! another node's upload only once it is stale, so which node sends it is free; this one has the
//! client waiting, while the leader's uploader may pass the file over as in use. When an upload
//! is under way (here or elsewhere), the waiter polls the replicated record instead.
//!
//! **Retries.** A retried LAYOUTCOMMIT or stable WRITE records the writes again, so it changes
//! the file and starts its upload over; a file whose upload outlasts `ACK_WAIT` would never
//! be acknowledged. Past `HOLD_MAX` of DELAYs in a row it is acknowledged from flash, as when
//! the store fails (the writer was held back; its bytes stay on flash until the bucket has
//! them).
//!
//! **A write that does not fit on a data server.** Each data server admits writes against
//! the capacity its heartbeat replies carry (`dataservers::flash`, `ds::server::flash`): past
//! it NFS3ERR_JUKEBOX (which Linux retries) while uploads and eviction can make room, and
//! NFS3ERR_NOSPC when the store is failing or no write has fit for the longest a PUT may take:
//! the same rule as for writes through the MDS.
use std::sync::Arc;
use std::time::{Duration, Instant};

use meta::namespace::{FsError, ShardId};

use crate::error::{NfsError, NfsResult};
use crate::node::Mds;

/// Longest an acknowledgement waits for its upload before NFS4ERR_DELAY: a 64 MiB object at
/// 10 MiB/s, well inside the Linux client's 60 s before it reports the server not responding.
const ACK_WAIT: Duration = Duration::from_secs(10);
/// Longest a file's acknowledgements are refused with DELAY in a row before one is given from
/// flash. A retried LAYOUTCOMMIT or stable WRITE changes the file again, so an upload that
/// takes longer than `ACK_WAIT` is started over by every retry and would never count: past
/// this the writer has been held back long enough, and its bytes wait on flash, which keeps
/// them until the bucket has them (as when the store fails).
const HOLD_MAX: Duration = Duration::from_secs(3 * ACK_WAIT.as_secs());
/// How often a waiter looks again while another task, or another node, uploads its file.
const POLL: Duration = Duration::from_millis(50);

/// Holds the acknowledgement of `ino`'s writes (a COMMIT, a stable WRITE or a LAYOUTCOMMIT,
/// already durable on flash and recorded, at change `at` when the caller knows it) until the
/// bucket holds the file as they left it, when a place holding the file's bytes is in
/// write-through. NFS4ERR_DELAY after `ACK_WAIT`.
pub(crate) async fn acknowledge(mds: &Arc<Mds>, ino: u64, at: Option<u64>) -> NfsResult<()> {
    let Some(tier) = mds.tier.clone() else {
        return Ok(());
    };
    if !tier.flash.write_through() {
        return Ok(());
    }
    let size = match mds.ns.getattr(ino) {
        Ok(i) => i.size,
        Err(FsError::NotFound | FsError::Stale(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    // Where its bytes are unknown (its records unreadable now), it is held: back-pressure
    // errs on the side of the full flash.
    if let Ok(holders) = mds.data.flash_holders(ino, size) {
        if !tier
            .flash
            .write_through_at(holders.iter().map(|(at, _)| *at))
        {
            return Ok(());
        }
    }
    // The change this acknowledgement covers: the copy must be at least at it. Unknown (a
    // COMMIT with nothing left to record), the file's as this node's replica has it once it
    // holds every change acknowledged before (on another node than the shard's leader it may
    // lag the proposal that recorded the writes).
    let at = match at {
        Some(c) => c,
        None => {
            mds.ns
                .barrier(ShardId::of_ino(ino))
                .await
                .map_err(|_| NfsError::Delay)?;
            match mds.ns.getattr(ino) {
                Ok(i) => i.change,
                Err(FsError::NotFound | FsError::Stale(_)) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    };
    let deadline = Instant::now() + ACK_WAIT;
    loop {
        if metrics::tier::failing_for().is_some() {
            // The store is down: acknowledged from flash, where the bytes stay until it is back.
            tier.released(ino);
            return Ok(());
        }
        let copy = mds.ns.tier(ino).map_err(NfsError::from)?;
        if copy
            .as_ref()
            .and_then(|t| t.copy.as_ref())
            .is_some_and(|c| c.change >= at)
        {
            tier.released(ino);
            tier.note_through(ino);
            tier.evict_now.notify_one();
            metrics::tier::WRITE_THROUGH_ACKS.inc();
            return Ok(());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            if tier.delayed(ino) > HOLD_MAX {
                tier.released(ino);
                tracing::warn!(
                    ino,
                    "write-through: the file's upload outlasts every retry; acknowledged from \
                     flash, where it stays until the bucket has it"
                );
                return Ok(());
            }
            metrics::tier::WRITE_THROUGH_DELAYS.inc();
            tracing::debug!(ino, "write-through: the upload takes long; DELAY");
            return Err(NfsError::Delay);
        }
        let due = match mds.ns.tier_behind(ino).map_err(NfsError::from)? {
            // This node's replica holds the change to cover, and no node is sending the file.
            Some(d)
                if d.change >= at
                    && copy.is_none_or(|t| t.upload.is_none())
                    && !tier.is_running(ino) =>
            {
                d
            }
            None if gone(mds, ino) => return Ok(()),
            // Under way here or on another node (perhaps of an older change), or this
            // replica not yet at the change: look again soon.
            _ => {
                tokio::time::sleep(POLL.min(left)).await;
                continue;
            }
        };
        // Sent from this node whether or not it leads the file's shard: the record's upload
        // under way keeps any other node from starting one (`TierBegin`), and this node is the
        // one with a client waiting. Its own task: a DELAY leaves it running, for the retry.
        let (m, t) = (mds.clone(), tier.clone());
        let upload = tokio::spawn(async move { super::upload::upload_file(&m, &t, due).await });
        match tokio::time::timeout(left, upload).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                if matches!(e, super::upload::UploadError::Store(_)) {
                    metrics::tier::UPLOADS_FAILED.inc();
                }
                tracing::debug!(ino, "write-through upload: {e}");
                tokio::time::sleep(POLL.min(left)).await;
            }
            Ok(Err(e)) => {
                tracing::warn!(ino, "write-through upload task: {e}");
                return Err(NfsError::Delay);
            }
            Err(_) => {}
        }
    }
}

/// Whether `ino` was removed: nothing of it is left to keep.
fn gone(mds: &Mds, ino: u64) -> bool {
    match mds.ns.getattr(ino) {
        Ok(i) => i.nlink == 0,
        Err(e) => matches!(e, FsError::NotFound | FsError::Stale(_)),
    }
}
