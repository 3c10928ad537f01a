//! Write-through when flash is nearly full (issue 45 item 6, seed decision D6).
//!
//! **What it is for.** Back-pressure. Flash is a cache of the bucket only for what the
//! uploader has sent; a writer faster than the bucket fills flash with bytes nothing may evict
//! (the evictor never drops what the bucket has not confirmed). Past `write_through` percent
//! (`[tier] write_through_percent`, default 95, above `evict_high`) this node's flash is in
//! write-through: the acknowledgement a client depends on, a COMMIT or a stable WRITE, is sent
//! only once the file's bytes as they are after that write are in the bucket. The writer then
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
//! **Why the whole file, at COMMIT.** Uploads are whole-file by the shard's leader
//! (`upload.rs`), and a file's copy counts only at one change attribute, so "in the bucket" is
//! "the file's copy is at a change at least the one this write left": the same record the
//! evictor and `cfs repair --from-s3` trust. A file committed k times in write-through is
//! uploaded k times; Linux commits at close, fsync and when writeback has gathered enough, so k
//! is small for the files that fill flash. Uploading the changed pieces alone is the way past
//! that (not built: it needs a copy made of several generations).
//!
//! **Where.** On one node the MDS stores the bytes, and WRITE and COMMIT come to it. On a
//! cluster the state is measured per data server from its heartbeats (the alert and the
//! evictor's order see it), but clients write through layouts straight to the data servers,
//! and the MDS hears of it at LAYOUTCOMMIT. Holding that is the natural next step (Linux sends
//! it at close and fsync, write delegations over layouts having a space limit of 0, and retries
//! it on DELAY), with the upload asked of the file's shard leader; not built yet. Nor is an
//! acknowledgement on a node that does not lead the file's shard held (its leader uploads).
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{NfsError, NfsResult};
use crate::node::Mds;

/// Longest an acknowledgement waits for its upload before NFS4ERR_DELAY: a 64 MiB object at
/// 10 MiB/s, well inside the Linux client's 60 s before it reports the server not responding.
const ACK_WAIT: Duration = Duration::from_secs(10);
/// How often a waiter looks again while another task uploads its file.
const POLL: Duration = Duration::from_millis(50);

/// Holds the acknowledgement of `ino`'s writes (a COMMIT, or a stable WRITE, already durable on
/// flash and recorded) until the bucket holds the file as they left it, when this node is in
/// write-through. NFS4ERR_DELAY after `ACK_WAIT`.
pub(crate) async fn acknowledge(mds: &Arc<Mds>, ino: u64) -> NfsResult<()> {
    let Some(tier) = mds.tier.clone() else {
        return Ok(());
    };
    if !tier.flash.write_through() || !mds.ns.leads_file(ino) {
        return Ok(());
    }
    let deadline = Instant::now() + ACK_WAIT;
    // The change this acknowledgement covers: the copy must be at least at it.
    let mut at = None;
    loop {
        if metrics::tier::failing_for().is_some() {
            // The store is down: acknowledged from flash, where the bytes stay until it is back.
            return Ok(());
        }
        let due = mds.ns.tier_behind(ino).map_err(NfsError::from)?;
        let covered = match (due, at) {
            (None, _) => true,
            (Some(d), None) => {
                at = Some(d.change);
                false
            }
            (Some(_), Some(c)) => mds
                .ns
                .tier(ino)
                .map_err(NfsError::from)?
                .and_then(|t| t.copy)
                .is_some_and(|copy| copy.change >= c),
        };
        if covered {
            tier.note_through(ino);
            tier.evict_now.notify_one();
            metrics::tier::WRITE_THROUGH_ACKS.inc();
            return Ok(());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            metrics::tier::WRITE_THROUGH_DELAYS.inc();
            tracing::debug!(ino, "write-through: the upload takes long; DELAY");
            return Err(NfsError::Delay);
        }
        let Some(d) = due.filter(|_| !tier.is_running(ino)) else {
            // Another task is sending it (perhaps an older change): look again soon.
            tokio::time::sleep(POLL.min(left)).await;
            continue;
        };
        // Its own task: a DELAY leaves it running, for the retry to find.
        let (m, t) = (mds.clone(), tier.clone());
        let upload = tokio::spawn(async move { super::upload::upload_file(&m, &t, d).await });
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
