//! The evictor (issue 45, item 4): when flash is fuller than `evict_high` percent, the files
//! least worth keeping leave it, down to `evict_low` percent: a place past `evict_high` once is
//! emptied until measured at `evict_low` (`FlashState::draining_places`), over as many passes
//! as that takes.
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
//! **On data servers** each one's fullness counts (`dataservers::flash`): files are taken
//! while a data server holding some of their bytes is past the high watermark, and each node
//! frees its share (the shards it leads, of all). Before the record the file is claimed on
//! every MDS node (`dataservers::holds`: their writers wait, their layouts of it are recalled
//! and their handles fenced); after it, the file must still be open nowhere, or the record is
//! taken back (`TierRestored`: the bytes never left). From the record on, LAYOUTGET answers
//! LAYOUTUNAVAILABLE, so clients read through the MDS, from the bucket.
use std::collections::BTreeMap;

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
    let mark = tier.flash.walk_starts();
    let usage = mds.data.flash_usage(&mds.data_path, s.flash_capacity).await;
    if usage.is_empty() {
        return;
    }
    match tier
        .flash
        .measured(&usage, s, mds.data.counts_writes(), mark)
    {
        Some(true) => tracing::warn!(
            ?usage,
            "flash full: write-through (writes are acknowledged once in the bucket)"
        ),
        Some(false) => tracing::info!(?usage, "flash under the high watermark: write-through ends"),
        None => {}
    }
    let (led, shards) = share(mds);
    // Bytes to free where flash went past the high watermark and is not yet under the low
    // one (`FlashState::draining_places`), this node's share of them.
    let draining = tier.flash.draining_places();
    let mut to_free: BTreeMap<u64, u64> = usage
        .iter()
        .filter(|(at, _, _)| draining.contains(at))
        .map(|(at, used, cap)| {
            let low = (u128::from(*cap) * u128::from(s.evict_low) / 100) as u64;
            let over = u128::from(used.saturating_sub(low));
            (*at, (over * led as u128).div_ceil(shards as u128) as u64)
        })
        .collect();
    let over = !to_free.is_empty();
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
    // Pinned to the bucket first, then what was acknowledged through the bucket (written
    // past the write-through mark: its writer is waiting for room), then the most idle bytes.
    let now = Time::now().secs;
    files.sort_by_cached_key(|f| {
        (
            f.pin != Pin::S3,
            !tier.was_through(f.ino, false),
            std::cmp::Reverse(score(f, now)),
        )
    });
    files.truncate(FILES_PER_PASS);
    // Another node's clients may have them open.
    let inos: Vec<u64> = files.iter().map(|f| f.ino).collect();
    let Some(elsewhere) = crate::state::remote::in_use::elsewhere(&mds.ns, &inos).await else {
        tracing::debug!("eviction waits: an MDS node did not say which files are open there");
        return;
    };
    let (mut n, mut bytes) = (0u64, 0u64);
    for (f, used_elsewhere) in files.into_iter().zip(elsewhere) {
        if used_elsewhere {
            continue;
        }
        let Ok(holders) = mds.data.flash_holders(f.ino, f.size) else {
            continue;
        };
        // Unless pinned to the bucket, only a file that frees room where it is short.
        let helps = holders
            .iter()
            .any(|(at, _)| to_free.get(at).is_some_and(|b| *b > 0));
        if !helps && f.pin != Pin::S3 {
            continue;
        }
        let started = std::time::Instant::now();
        let evicted = evict_file(mds, f).await;
        metrics::tier::EVICTING_MICROS.add(started.elapsed().as_micros() as u64);
        match evicted {
            Ok(true) => {
                tier.was_through(f.ino, true);
                n += 1;
                bytes += f.size;
                for (at, b) in holders {
                    if let Some(left) = to_free.get_mut(&at) {
                        *left = left.saturating_sub(b);
                    }
                }
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(ino = f.ino, "eviction failed: {e}"),
        }
        if !to_free.is_empty() && to_free.values().all(|b| *b == 0) && f.pin != Pin::S3 {
            break;
        }
    }
    if n > 0 {
        metrics::tier::EVICTION_PASSES.inc();
        metrics::tier::EVICTED_FILES.add(n);
        metrics::tier::EVICTED_BYTES.add(bytes);
        tracing::info!(
            files = n,
            bytes,
            ?usage,
            "evicted files from flash (their bytes are in the object store)"
        );
    }
}

/// The shards this node leads, of all: its part of the bytes to free (each node evicts only
/// the files of the shards it leads).
fn share(mds: &Mds) -> (usize, usize) {
    if mds.ns.peers().is_none() {
        return (1, 1);
    }
    let leaders = mds.ns.leaders();
    let me = mds.ns.node_id();
    let led = leaders.values().filter(|l| **l == Some(me)).count();
    (led, leaders.len().max(1))
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
    // On data servers: every MDS node's writers of the file wait, its layouts of it are
    // recalled and its handles fenced, until the copies are emptied.
    let claim = match mds.data.cluster() {
        Some(c) => match c.claim(&mds.ns, f.ino).await {
            Some(claim) if !claim.in_use_elsewhere() && claim.check().is_ok() => Some(claim),
            _ => return Ok(false),
        },
        None => None,
    };
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
    // Opened meanwhile, here or through another node, before the record stopped its layouts:
    // the bytes stay (they never left), and so does the file.
    if mds.ns.peers().is_some() || claim.is_some() {
        let elsewhere = crate::state::remote::in_use::elsewhere(&mds.ns, &[f.ino]).await;
        let used = elsewhere.is_none_or(|u| u.iter().any(|b| *b));
        if used || mds.nfs.state.file_has_state(f.ino) {
            let back = Command::TierRestored {
                ino: f.ino,
                gen: f.gen,
            };
            mds.ns.execute(back).await?;
            return Ok(false);
        }
    }
    mds.data.drop_flash(f.ino).await.map_err(EvictError::Drop)?;
    drop(claim);
    tracing::debug!(
        ino = f.ino,
        gen = f.gen,
        bytes = f.size,
        "evicted from flash"
    );
    Ok(true)
}
