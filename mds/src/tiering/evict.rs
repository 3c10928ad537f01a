//! The evictor (issue 45, item 4): when flash is fuller than `evict_high` percent, the files
//! least worth keeping leave it, down to `evict_low` percent.
//!
//! **Which.** Only a file whose copy in the bucket holds it exactly as it is (`TierEvict`
//! checks the generation and the change attribute in the state machine, after any write noted
//! here is recorded), that no client of any MDS node has open or holds state on, and that no
//! request on this node is using (`evicted::Holds`). Highest `idle seconds × size` first: a
//! big file nobody touched for a day goes before a small one read a minute ago. Pins
//! (`user.cfs.tier`, `meta_core::Pin`): `flash` is never evicted, `s3` is as soon as the
//! bucket holds it, watermarks or not.
//!
//! **Order.** The record first, then the bytes: from `TierEvict` on, reads are served from the
//! bucket and changes wait, so the flash copy is never needed again when it is dropped; a crash
//! in between leaves bytes on flash that nothing reads (they go with the file, or are
//! overwritten by its restore).
//!
//! Whole files, not ranges: on data servers a file's bytes are mirrors or EC stripes whose
//! records are per file, and evicting a range of an erasure-coded file would mean re-coding
//! its stripes. The unit read back is still a block (`evicted::read`).
//!
//! **Not yet: data servers.** This runs where the MDS holds the bytes (one node). On data
//! servers the drop must fence the file (a layout handed out before must not read the holes;
//! LAYOUTGET already answers LAYOUTTRYLATER for an evicted file) and an erasure-coded file's
//! shards go with their record, so that its restore places fresh mirrors.
use meta::namespace::{Command, FsError, TierEvictable, Time};
use meta_core::Pin;

use crate::node::Mds;
use crate::tier_set::Tier;

/// Files evicted per pass at most (each an RPC round to the data servers).
const FILES_PER_PASS: usize = 256;

/// One evictor pass: files pinned to the bucket (`user.cfs.tier` = `s3`) whenever they are
/// there; others only while flash is past the high watermark.
pub(super) async fn pass(mds: &Mds, tier: &Tier) {
    let s = &tier.settings;
    let Some((used, cap)) = mds.data.flash_usage(&mds.data_path, s.flash_capacity).await else {
        return;
    };
    let over = u128::from(used) * 100 > u128::from(cap) * u128::from(s.evict_high);
    let low = (u128::from(cap) * u128::from(s.evict_low) / 100) as u64;
    let mut to_free = if over { used.saturating_sub(low) } else { 0 };
    let mut files = match mds.ns.tier_evictable() {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!("cannot scan for files to evict: {e}");
            return;
        }
    };
    files.retain(|f| {
        (over || f.pin == Pin::S3)
            && mds.ns.leads_file(f.ino)
            && !mds.nfs.state.file_has_state(f.ino)
    });
    if files.is_empty() {
        return;
    }
    // Pinned to the bucket first, then the most idle bytes.
    let now = Time::now().secs;
    files.sort_by_key(|f| (f.pin != Pin::S3, std::cmp::Reverse(score(f, now))));
    files.truncate(FILES_PER_PASS);
    // Another node's clients may have them open.
    let inos: Vec<u64> = files.iter().map(|f| f.ino).collect();
    let Some(elsewhere) = crate::state::remote::in_use::elsewhere(&mds.ns, &inos).await else {
        tracing::debug!("eviction waits: an MDS node did not say which files are open there");
        return;
    };
    let (mut n, mut bytes) = (0u64, 0u64);
    for (f, used_elsewhere) in files.into_iter().zip(elsewhere) {
        if used_elsewhere || (to_free == 0 && f.pin != Pin::S3) {
            continue;
        }
        match evict_file(mds, f).await {
            Ok(true) => {
                n += 1;
                bytes += f.size;
                to_free = to_free.saturating_sub(f.size);
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(ino = f.ino, "eviction failed: {e}"),
        }
    }
    if n > 0 {
        metrics::tier::EVICTION_PASSES.inc();
        metrics::tier::EVICTED_FILES.add(n);
        metrics::tier::EVICTED_BYTES.add(bytes);
        tracing::info!(
            files = n,
            bytes,
            used,
            capacity = cap,
            "evicted files from flash (their bytes are in the object store)"
        );
    }
}

/// Idle seconds × size, the order of eviction.
fn score(f: &TierEvictable, now: i64) -> u128 {
    u128::from((now - f.used_secs).max(1) as u64) * u128::from(f.size)
}

#[derive(Debug, thiserror::Error)]
enum EvictError {
    #[error("metadata: {0}")]
    Meta(#[from] FsError),
    #[error("dropping the flash copy: {0:?}")]
    Drop(crate::error::NfsError),
}

/// Evicts one file: false if it turned out busy or changed.
async fn evict_file(mds: &Mds, f: TierEvictable) -> Result<bool, EvictError> {
    let Some(_mark) = mds.data.holds.evicting(f.ino) else {
        return Ok(false);
    };
    if mds.nfs.state.file_has_state(f.ino) {
        return Ok(false);
    }
    let evict = Command::TierEvict {
        ino: f.ino,
        gen: f.gen,
        change: f.change,
    };
    match mds.ns.execute(evict).await {
        Ok(_) => {}
        Err(FsError::Changed) => return Ok(false),
        Err(e) => return Err(e.into()),
    }
    mds.data.drop_flash(f.ino).await.map_err(EvictError::Drop)?;
    tracing::debug!(
        ino = f.ino,
        gen = f.gen,
        bytes = f.size,
        "evicted from flash"
    );
    Ok(true)
}
