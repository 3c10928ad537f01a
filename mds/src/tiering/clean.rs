//! The deleter (see `mod.rs`): each pass finishes what the records of the shards this node
//! leads still ask for, so a restart or a failover forgets nothing:
//! - a file that is gone with objects still counted: they are doomed (`TierDoom`);
//! - an upload under way that is not running here: given up (`TierAbort`) at once if an
//!   earlier boot of this node began it, else once older than the longest an upload may take
//!   (its node died or lost the shard);
//! - doomed objects whose grace delay has passed: deleted, then forgotten (`TierDeleted`).
//!   A DELETE of a key that is not there succeeds (an upload may have stopped before it).
use std::time::Duration;

use meta::namespace::{Command, Time};
use meta_core::FileTier;

use crate::node::Mds;
use crate::tier_set::Tier;

/// An upload under way this much longer than its pieces' longest PUTs is counted dead.
const STALE_MARGIN: Duration = Duration::from_secs(60);

pub(super) async fn pass(mds: &Mds, tier: &Tier) {
    let records = match mds.ns.tier_to_clean() {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("cannot scan the tier's records: {e}");
            return;
        }
    };
    for (ino, rec, live) in records {
        if !mds.ns.leads_file(ino) {
            continue;
        }
        if let Err(e) = clean(mds, tier, ino, &rec, live).await {
            tracing::debug!(ino, "tier clean-up retried next pass: {e}");
        }
    }
}

async fn clean(
    mds: &Mds,
    tier: &Tier,
    ino: u64,
    rec: &FileTier,
    live: bool,
) -> Result<(), meta::namespace::FsError> {
    let now = Time::now();
    if !live && (rec.copy.is_some() || rec.upload.is_some()) {
        mds.ns.execute(Command::TierDoom { ino, time: now }).await?;
        tracing::debug!(ino, "objects of a removed file doomed");
        return Ok(());
    }
    if let Some(u) = rec.upload {
        let longest =
            tier.settings.longest_put() * u32::try_from(u.pieces.max(1)).unwrap_or(u32::MAX);
        let ended = crate::tier_set::earlier_boot(u.by, tier.me)
            || older_than(u.since, now, longest + STALE_MARGIN);
        if !tier.is_running(ino) && ended {
            let gen = u.gen;
            mds.ns
                .execute(Command::TierAbort {
                    ino,
                    gen,
                    time: now,
                })
                .await?;
            tracing::info!(
                ino,
                gen,
                "an upload left under way (by a restart or another node) given up"
            );
            return Ok(());
        }
    }
    for d in rec
        .doomed
        .iter()
        .filter(|d| older_than(d.since, now, tier.settings.delete_grace))
    {
        let mut failed = false;
        for piece in 0..d.pieces {
            let key = tier.key(ino, piece, d.gen);
            match tier.store().delete(&key).await {
                Ok(()) => {
                    metrics::tier::request_ok();
                    metrics::tier::DELETED_OBJECTS.inc();
                }
                Err(e) => {
                    metrics::tier::request_failed();
                    tracing::warn!(
                        ino,
                        gen = d.gen,
                        "object not deleted, retried next pass: {e}"
                    );
                    failed = true;
                    break;
                }
            }
        }
        if !failed {
            mds.ns
                .execute(Command::TierDeleted { ino, gen: d.gen })
                .await?;
            tracing::debug!(
                ino,
                gen = d.gen,
                objects = d.pieces,
                "doomed objects deleted"
            );
        }
    }
    Ok(())
}

/// Whether `since` is more than `age` before `now` (a time in the future is not old).
fn older_than(since: Time, now: Time, age: Duration) -> bool {
    let age = i64::try_from(age.as_secs()).unwrap_or(i64::MAX);
    now.secs.saturating_sub(since.secs) > age
}
