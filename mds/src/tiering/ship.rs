//! The metadata shipper (issue 45, item 7; the objects: `crate::meta_store`): the leader of
//! each shard puts the shard's state in the bucket whenever it applied something the bucket
//! does not hold, a checkpoint then the root naming it, and deletes the checkpoints the root
//! superseded after the grace delay (a recovery that read the old root may still fetch them).
//!
//! **Cadence.** Every second each shard this node leads is looked at; one that changed is
//! shipped at most every `max(1 s, 10 × its last ship's time)`, capped at a minute. So the
//! lag of a small shard is about a second, and a large one spends at most a tenth of one
//! stream on its checkpoints. Whole checkpoints only, no log tails between them: a shard is a
//! slice of the namespace (256 by default), its dump is what a Raft snapshot already carries
//! and a restore loads as is, and at a few hundred KB a shard a whole checkpoint a second
//! costs less than the extra code and GETs of tails. Tails are what would keep the lag at a
//! second for shards of millions of files (not yet).
//!
//! The measure (`cfs_tier_metadata_lag_seconds`, and the cluster STATUS call's answer): since
//! when the oldest shard this node leads has had changes the bucket does not hold, and which
//! shard; 0 when it holds all. `cfs admin status` shows the worst over every node, so over
//! every shard: the acknowledged metadata a lost site would lose.
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use futures::stream::{self, StreamExt};
use meta::namespace::FsError;

use crate::meta_store::{self, Doomed, MetaRoot, MetaStoreError, MAX_CHECKPOINT, MAX_DOOMED};
use crate::node::Mds;
use crate::tier_set::Tier;

/// How often the shards are looked at.
const LOOK_EVERY: Duration = Duration::from_secs(1);
/// A shard is shipped again no sooner than this many times its last ship's time after it.
const COST_FACTOR: u32 = 10;
const LONGEST_WAIT: Duration = Duration::from_secs(60);
/// Shards shipped at once.
const SHIPS_AT_ONCE: usize = 4;

/// What this node knows of a shard it leads.
#[derive(Default)]
struct Shard {
    /// The root in the bucket as this node last read or wrote it; `None` inside: none there.
    root: Option<Option<MetaRoot>>,
    last: Option<(Instant, Duration)>,
    /// Since when the shard has applied changes the bucket does not hold.
    behind_since: Option<SystemTime>,
}

/// Runs the shipper while the node lives.
pub(super) fn start(mds: &Arc<Mds>, tier: &Arc<Tier>) -> tokio::task::JoinHandle<()> {
    let node: Weak<Mds> = Arc::downgrade(mds);
    let tier = tier.clone();
    // Until the first pass has looked at every shard, the bucket is behind since the start
    // (shown as shard 0's, the first looked at).
    metrics::tier::set_metadata_behind(Some((
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs()),
        0,
    )));
    tokio::spawn(async move {
        let mut shards: HashMap<u16, Shard> = HashMap::new();
        let mut tick = tokio::time::interval(LOOK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(m) = node.upgrade() else { return };
            pass(&m, &tier, &mut shards).await;
        }
    })
}

async fn pass(mds: &Mds, tier: &Tier, shards: &mut HashMap<u16, Shard>) {
    let me = mds.ns.node_id();
    let led: Vec<u16> = mds
        .ns
        .leaders()
        .into_iter()
        .filter(|(_, l)| *l == Some(me))
        .map(|(s, _)| s)
        .collect();
    // A shard led elsewhere meanwhile: its root is read again when this node leads it again.
    shards.retain(|s, _| led.contains(s));
    let taken: Vec<(u16, Shard)> = led
        .iter()
        .map(|s| (*s, shards.remove(s).unwrap_or_default()))
        .collect();
    let done: Vec<(u16, Shard)> = stream::iter(taken)
        .map(|(shard, mut st)| async move {
            if let Err(e) = ship(mds, tier, shard, &mut st).await {
                tracing::warn!(
                    shard,
                    "metadata not shipped to the object store, retried: {e}"
                );
                // A store that fails before the root was read still leaves the shard behind
                // (unless it holds nothing to lose): the lag shows the outage, not 0.
                if !mds.ns.shard_is_blank(shard) && mds.ns.shard_position(shard).1 > 0 {
                    st.behind_since.get_or_insert_with(SystemTime::now);
                }
            }
            (shard, st)
        })
        .buffer_unordered(SHIPS_AT_ONCE)
        .collect()
        .await;
    shards.extend(done);
    let oldest = shards
        .iter()
        .filter_map(|(shard, s)| s.behind_since.map(|t| (t, *shard)))
        .min();
    metrics::tier::set_metadata_behind(oldest.map(|(t, shard)| {
        (
            t.duration_since(SystemTime::UNIX_EPOCH)
                .map_or(1, |d| d.as_secs()),
            shard,
        )
    }));
}

fn covers(root: &Option<MetaRoot>, position: (u64, u64)) -> bool {
    root.as_ref().is_some_and(|r| r.position() >= position)
}

async fn ship(mds: &Mds, tier: &Tier, shard: u16, st: &mut Shard) -> Result<(), MetaStoreError> {
    let store = tier.store();
    let keys = tier.keys();
    let root = match &st.root {
        Some(r) => r.clone(),
        None => {
            let r = meta_store::read_root(store, keys, shard).await;
            note(&r);
            let r = r?;
            st.root = Some(r.clone());
            r
        }
    };
    delete_doomed(tier, st).await;
    let position = mds.ns.shard_position(shard);
    // A shard that never held anything and has no root needs none: a repair finds no root
    // and rebuilds it empty, as it is. (Most of a small file system's 256 shards are such.)
    let blank = root.is_none() && mds.ns.shard_is_blank(shard);
    if position.1 == 0 || blank || covers(&root, position) {
        st.behind_since = None;
        return Ok(());
    }
    let behind = *st.behind_since.get_or_insert_with(SystemTime::now);
    if let Some((at, took)) = st.last {
        let wait = (took * COST_FACTOR).clamp(LOOK_EVERY, LONGEST_WAIT);
        if at.elapsed() < wait {
            return Ok(());
        }
    }
    let started = Instant::now();
    let taken = SystemTime::now();
    let image = mds.ns.shard_image(shard)?;
    let payload = postcard::to_stdvec(&image)
        .map_err(|e| FsError::Io(format!("encode the checkpoint of shard {shard}: {e}")))?;
    if payload.len() > MAX_CHECKPOINT {
        return Err(FsError::Io(format!(
            "shard {shard}'s checkpoint is {} bytes, over the {MAX_CHECKPOINT} a ship may take",
            payload.len()
        ))
        .into());
    }
    let id = meta_store::checkpoint_id(shard, image.incarnation, image.term, image.index);
    let bytes = payload.len() as u64;
    let r = store
        .put(&keys.key(&id), meta_store::encode(&id, &payload))
        .await;
    note(&r);
    r?;
    // A deposed leader must not put an older root back: look again just before.
    let now_root = meta_store::read_root(store, keys, shard).await;
    note(&now_root);
    let now_root = now_root?;
    let mine = (image.incarnation, image.index);
    if covers(&now_root, mine) && now_root.as_ref().map(MetaRoot::checkpoint) != Some(id) {
        tracing::info!(
            shard,
            "a newer root of the shard is in the bucket (another leader's): not replaced"
        );
        // Named by nothing: gone at once.
        let _ = store.delete(&keys.key(&id)).await;
        st.root = Some(now_root);
        return Ok(());
    }
    let now = meta::namespace::Time::now().secs;
    // The superseded checkpoints this node knows were deleted stay off the list.
    let mut doomed = match (&root, &now_root) {
        (Some(a), Some(b)) if a.position() == b.position() => a.doomed.clone(),
        (_, Some(b)) => b.doomed.clone(),
        _ => Vec::new(),
    };
    if let Some(old) = now_root.as_ref().filter(|r| r.checkpoint() != id) {
        doomed.push(Doomed {
            index: old.index,
            generation: old.checkpoint().generation,
            since: now,
        });
    }
    if doomed.len() > MAX_DOOMED {
        doomed.drain(..doomed.len() - MAX_DOOMED);
    }
    let taken_at = taken
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let new = MetaRoot {
        version: 1,
        shard,
        shard_count: mds.ns.shard_count(),
        incarnation: image.incarnation,
        term: image.term,
        index: image.index,
        taken_at: (
            i64::try_from(taken_at.as_secs()).unwrap_or(i64::MAX),
            taken_at.subsec_nanos(),
        ),
        lag_ms: taken
            .duration_since(behind)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        doomed,
    };
    let r = store
        .put(
            &keys.key(&meta_store::root_id(shard)),
            meta_store::encode_root(&new)?,
        )
        .await;
    note(&r);
    r?;
    metrics::tier::METADATA_CHECKPOINTS.inc();
    metrics::tier::METADATA_BYTES.add(bytes);
    st.root = Some(Some(new));
    st.last = Some((started, started.elapsed()));
    // Changes applied while this ship ran are the next one's, behind since it began.
    st.behind_since = (mds.ns.shard_position(shard) > mine).then_some(taken);
    tracing::debug!(
        shard,
        index = image.index,
        bytes,
        took_ms = started.elapsed().as_millis() as u64,
        "shard checkpoint in the object store"
    );
    Ok(())
}

/// Deletes the superseded checkpoints whose grace delay has passed; the next root written
/// leaves them out.
async fn delete_doomed(tier: &Tier, st: &mut Shard) {
    let Some(Some(root)) = st.root.as_mut() else {
        return;
    };
    let now = meta::namespace::Time::now().secs;
    let grace = i64::try_from(tier.settings.delete_grace.as_secs()).unwrap_or(i64::MAX);
    let shard = root.shard;
    let mut kept = Vec::with_capacity(root.doomed.len());
    for d in std::mem::take(&mut root.doomed) {
        if now.saturating_sub(d.since) <= grace {
            kept.push(d);
            continue;
        }
        let id = tier::ObjectId {
            segment: d.index,
            generation: d.generation,
            ..meta_store::root_id(shard)
        };
        let r = tier.store().delete(&tier.keys().key(&id)).await;
        note(&r);
        if r.is_err() {
            kept.push(d);
        }
    }
    root.doomed = kept;
}

/// Counts a request's outcome for the store's health (`metrics::tier::failing_for`).
fn note<T, E>(r: &Result<T, E>) {
    if r.is_ok() {
        metrics::tier::request_ok();
    } else {
        metrics::tier::request_failed();
    }
}
