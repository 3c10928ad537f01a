//! The restorer: evicted files someone read or wants to change (`TierWant`) are copied back
//! from the bucket to flash by their shard's leader, then recorded on flash (`TierRestored`),
//! after which reads go to flash and changes proceed.
//!
//! The bytes are written to flash and made durable (COMMIT) before the record says so: a
//! crash before leaves the file evicted, read from the bucket, and wanted again. Every block is
//! checked against its blake3 on the way (`Store::read_payload`). Writers wait meanwhile
//! (NFS4ERR_DELAY), so nothing races the copy on this node. Not yet: a leader deposed while it
//! copies could, on a multi-node cluster, write a block after the new leader restored the file
//! and a client wrote it; a restore claim recorded in the state machine would close that.
use meta::namespace::{Command, FsError};

use crate::evicted::store_error;
use crate::node::Mds;
use crate::tier_set::Tier;

/// Files restored per pass, of the wanted files looked at (those a writer waits for first),
/// and bytes fetched per GET while restoring.
const FILES_PER_PASS: usize = 16;
const WANTED_SCAN: usize = 1024;
const STEP: u64 = 8 << 20;

pub(super) async fn pass(mds: &Mds, tier: &Tier) {
    let mut wanted = match mds.ns.tier_wanted(WANTED_SCAN) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!("cannot scan for files to restore: {e}");
            return;
        }
    };
    if wanted.len() < WANTED_SCAN {
        tier.to_change_only(&wanted.iter().map(|(i, _)| *i).collect());
    }
    wanted.retain(|(i, _)| mds.ns.leads_file(*i));
    // Files a writer waits for first (a stable sort: in inode order otherwise).
    let urgent = tier.to_change_now();
    wanted.sort_by_key(|(i, _)| !urgent.contains(i));
    for (ino, gen) in wanted.into_iter().take(FILES_PER_PASS) {
        if !tier.running().insert(ino) {
            continue;
        }
        let r = restore_file(mds, tier, ino, gen).await;
        tier.running().remove(&ino);
        match r {
            Ok(bytes) => {
                tier.restored(ino);
                metrics::tier::RESTORED_FILES.inc();
                metrics::tier::RESTORED_BYTES.add(bytes);
                tracing::debug!(ino, gen, bytes, "evicted file back on flash");
            }
            Err(RestoreError::NoRoom | RestoreError::Nfs(crate::error::NfsError::Delay)) => {
                // The first in line gets the room eviction makes next: files behind it,
                // smaller, would take it piece by piece, and a big file (or the one a writer
                // waits for) would never come back while they keep coming.
                tracing::debug!(ino, "an evicted file waits for room on flash to come back");
                break;
            }
            Err(e) => tracing::warn!(ino, "restoring an evicted file failed, retried later: {e}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum RestoreError {
    #[error("metadata: {0}")]
    Meta(FsError),
    #[error("{0:?}")]
    Nfs(crate::error::NfsError),
    #[error("flash has no room for it")]
    NoRoom,
}

async fn restore_file(mds: &Mds, tier: &Tier, ino: u64, gen: u64) -> Result<u64, RestoreError> {
    let rec = mds.ns.tier(ino).map_err(RestoreError::Meta)?;
    let Some(copy) = rec.filter(|t| t.evicted).and_then(|t| t.copy) else {
        return Ok(0);
    };
    if copy.gen != gen {
        return Ok(0);
    }
    if copy.pieces.is_empty() {
        // A reduced file's copy is its segments: those only the bucket holds come back to
        // flash (each once, whatever number of files share it), then the file is on flash.
        let back = match mds.data.cluster() {
            Some(c) => c
                .warm_segments(&mds.ns, ino)
                .await
                .map_err(RestoreError::Nfs)?
                .ok_or(RestoreError::NoRoom)?,
            None => 0,
        };
        return match mds.ns.execute(Command::TierRestored { ino, gen }).await {
            Ok(_) | Err(FsError::Changed) => Ok(back),
            Err(e) => Err(RestoreError::Meta(e)),
        };
    }
    // Only while flash has room; else the file stays evicted and wanted, read from the
    // bucket, and is tried again next pass.
    let size: u64 = copy.pieces.iter().map(|p| p.len).sum();
    let Some(_room) = tier.flash.admit_restore(mds.data.flash_charge(0, size)) else {
        return Err(RestoreError::NoRoom);
    };
    let seal = tier
        .seal()
        .map_err(|_| RestoreError::Nfs(crate::error::NfsError::Delay))?;
    let mut at = 0u64;
    for (i, p) in copy.pieces.iter().enumerate() {
        let h = tier
            .header(ino, i as u64, gen, &p.sum, seal)
            .await
            .map_err(|e| RestoreError::Nfs(store_error(ino, &e)))?;
        let key = tier.key(ino, i as u64, gen);
        let mut off = 0;
        while off < p.len {
            let end = (off + STEP).min(p.len);
            let bytes = tier
                .store()
                .read_payload(&key, &h.0, h.1, off, end, seal)
                .await
                .map_err(|e| RestoreError::Nfs(store_error(ino, &e)))?;
            // A write to a data server carries at most MAX_IO (the record it reads): an 8 MiB
            // write left multi-MiB files evicted for good on a cluster.
            let mut put = at + off;
            for piece in bytes.chunks(crate::limits::MAX_IO as usize) {
                mds.data
                    .write_flash(
                        ino,
                        put,
                        piece.to_vec(),
                        false,
                        crate::dataservers::snap_data::Changing::preserving(ino),
                    )
                    .await
                    .map_err(RestoreError::Nfs)?;
                put += piece.len() as u64;
            }
            off = end;
        }
        at += p.len;
    }
    mds.data.commit_data(ino).await.map_err(RestoreError::Nfs)?;
    match mds.ns.execute(Command::TierRestored { ino, gen }).await {
        Ok(_) | Err(FsError::Changed) => Ok(at),
        Err(e) => Err(RestoreError::Meta(e)),
    }
}
