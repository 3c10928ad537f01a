//! The metadata in the object store (issue 45, item 7): what the shipper
//! (`tiering/ship.rs`) puts in the bucket, and the rebuild of a lost site from it
//! (`cfs repair --from-s3`, [`repair`]): a single node's, or every MDS node's of a cluster.
//!
//! Per shard, two kinds of object (`tier::object`, self-describing and checksummed, of kind
//! metadata, `ino` = the shard):
//! - a **checkpoint**: the shard's whole state at one applied log index
//!   (`meta::storage::restore::ShardImage`, what a Raft snapshot carries), segment = that
//!   index, generation = incarnation << 32 | term. (incarnation, term, index) names one state
//!   of one life of the file system, so a key is never written with two contents;
//! - its **root**, at a well-known key (segment `u64::MAX`, generation 0): which checkpoint is
//!   current ([`MetaRoot`]), the shard count, and the checkpoints it superseded, to delete
//!   after the grace delay. Shard 0's root is where a recovery starts.
//!
//! So recovery is GETs only, no LIST: shard 0's root gives the shard count, each shard's root
//! its checkpoint's key; every object is verified (header, payload blake3, the id its key
//! names) before it is used.
//!
//! **A cluster.** Each shard is shipped by its leader, whichever MDS node that is, so the
//! bucket holds the whole namespace whatever the number of nodes. It holds nothing of a node:
//! Raft memberships, votes and logs, the data servers' registry (a data server's id is in its
//! own directory), nor where flash held the bytes (chunk mirrors and stripes name data servers
//! that went with the site). A repair writes one state into every MDS node's directory with no
//! log and no membership, so each node starts each shard's group afresh on it, as a new
//! cluster does (membership from its config at index 0, then an election): no vote or member
//! of the lost site survives to disagree. Every file is evicted; the data servers start empty.
//! The shards' checkpoints are of different moments: [`rebuild`] makes them one namespace
//! (`meta::storage::mend`: transactions settled, dangling names removed, orphans into
//! `/lost+found`) and reports what it did.
//!
//! **Two leaders.** Only a shard's leader ships it, and only a state it applied, which Raft
//! committed: any checkpoint in the bucket is a true state of the shard, never a fork. A root
//! is replaced only by one naming a later (incarnation, index): the shipper reads the root
//! again just before its PUT, so a deposed leader that wakes up late finds a newer root and
//! stops. The window left (both read, then both write, within milliseconds) can only put an
//! older true state back as current; the live leader's next ship (a second later at most, as
//! it finds the root behind its own) corrects it.
use std::path::PathBuf;

use futures::stream::{self, StreamExt, TryStreamExt};
use meta::storage::mend::{self, Mended};
use meta::storage::restore::{self, Rebuilt, ShardImage};
use meta_core::state::MemState;
use meta_core::{FileKind, FsError, Time, ROOT_INO};
use serde::{Deserialize, Serialize};
use tier::{KeySpace, ObjectId, Store, TierError};

/// The root's segment: no log index reaches it.
const ROOT_SEGMENT: u64 = u64::MAX;
/// The format of [`MetaRoot`] this code writes.
const ROOT_VERSION: u32 = 1;
/// No checkpoint larger is shipped or read back (a GET holds it whole in memory).
pub const MAX_CHECKPOINT: usize = 2 << 30;
/// Superseded checkpoints a root remembers at most; older ones are forgotten undeleted (a
/// grace delay's worth at one ship a second is far fewer).
pub const MAX_DOOMED: usize = 4096;
/// Roots and checkpoints fetched at once by a recovery.
const GETS_AT_ONCE: usize = 8;

/// A superseded checkpoint, to delete once `since` is older than the grace delay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Doomed {
    pub index: u64,
    pub generation: u64,
    pub since: i64,
}

/// A shard's root object: its current checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaRoot {
    pub version: u32,
    pub shard: u16,
    pub shard_count: u16,
    pub incarnation: u64,
    pub term: u64,
    pub index: u64,
    /// When the checkpoint's state was taken (Unix seconds, nanoseconds).
    pub taken_at: (i64, u32),
    /// How long the shard had applied changes the bucket did not hold when it was taken:
    /// the metadata lag this ship ended.
    pub lag_ms: u64,
    pub doomed: Vec<Doomed>,
}

impl MetaRoot {
    /// Where the state it names is: later is larger.
    pub fn position(&self) -> (u64, u64) {
        (self.incarnation, self.index)
    }

    pub fn checkpoint(&self) -> ObjectId {
        checkpoint_id(self.shard, self.incarnation, self.term, self.index)
    }
}

/// The id of the root of `shard`.
pub fn root_id(shard: u16) -> ObjectId {
    ObjectId {
        kind: tier::Kind::Metadata,
        ino: u64::from(shard),
        segment: ROOT_SEGMENT,
        generation: 0,
    }
}

/// The id of the checkpoint of `shard` at (incarnation, term, index). Terms past 2^32 share
/// bits with the incarnation; a key is still unique by the index, which no two terms share.
pub fn checkpoint_id(shard: u16, incarnation: u64, term: u64, index: u64) -> ObjectId {
    ObjectId {
        kind: tier::Kind::Metadata,
        ino: u64::from(shard),
        segment: index,
        generation: (incarnation << 32) | (term & 0xffff_ffff),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MetaStoreError {
    #[error("object store: {0}")]
    Store(#[from] TierError),
    #[error("{key}: {what}")]
    Bad { key: String, what: String },
    #[error("{0}")]
    Meta(#[from] FsError),
    #[error("no metadata in the bucket under this prefix (no root object at {0})")]
    NoRoot(String),
    #[error("{0} already holds a namespace: repair into an empty data directory")]
    NotEmpty(String),
    #[error("prefix {0:?}: path segments of [A-Za-z0-9._-]")]
    Prefix(String),
}

fn bad(key: &str, what: impl std::fmt::Display) -> MetaStoreError {
    MetaStoreError::Bad {
        key: key.to_string(),
        what: what.to_string(),
    }
}

/// The object `id` under `keys`, verified: its header, its payload's blake3, and that it is
/// the object its key names. `None` if there is none.
async fn get_verified(
    store: &Store,
    keys: &KeySpace,
    id: &ObjectId,
) -> Result<Option<bytes::Bytes>, MetaStoreError> {
    let key = keys.key(id);
    let bytes = match store.get(&key).await {
        Ok(b) => b,
        Err(TierError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if bytes.len() > MAX_CHECKPOINT + tier::object::MAX_HEADER_LEN {
        return Err(bad(&key, "larger than any checkpoint"));
    }
    let obj = tier::object::decode(bytes, None)
        .and_then(|o| o.verify_id(id))
        .map_err(|e| bad(&key, e))?;
    Ok(Some(obj.payload))
}

/// The root of `shard`, if the bucket has one.
pub async fn read_root(
    store: &Store,
    keys: &KeySpace,
    shard: u16,
) -> Result<Option<MetaRoot>, MetaStoreError> {
    let id = root_id(shard);
    let Some(payload) = get_verified(store, keys, &id).await? else {
        return Ok(None);
    };
    let key = keys.key(&id);
    let root: MetaRoot = postcard::from_bytes(&payload).map_err(|e| bad(&key, e))?;
    if root.version != ROOT_VERSION || root.shard != shard {
        return Err(bad(&key, "not a root of this shard in a known format"));
    }
    Ok(Some(root))
}

/// Object bytes of a root or checkpoint: `id` and the encoded `payload`.
pub fn encode(id: &ObjectId, payload: &[u8]) -> bytes::Bytes {
    tier::object::encode(id, 0, payload.len() as u64, payload, None)
}

pub fn encode_root(root: &MetaRoot) -> Result<bytes::Bytes, FsError> {
    let p = postcard::to_stdvec(root).map_err(|e| FsError::Io(format!("encode root: {e}")))?;
    Ok(encode(&root_id(root.shard), &p))
}

/// The checkpoint a root names, verified and checked to be the state the root says.
async fn read_checkpoint(
    store: &Store,
    keys: &KeySpace,
    root: &MetaRoot,
) -> Result<ShardImage, MetaStoreError> {
    let id = root.checkpoint();
    let key = keys.key(&id);
    let payload = get_verified(store, keys, &id)
        .await?
        .ok_or_else(|| bad(&key, "the checkpoint its root names is missing"))?;
    let image: ShardImage = postcard::from_bytes(&payload).map_err(|e| bad(&key, e))?;
    if (image.shard, image.incarnation, image.term, image.index)
        != (root.shard, root.incarnation, root.term, root.index)
    {
        return Err(bad(&key, "not the state its root names"));
    }
    Ok(image)
}

/// What a repair found and did.
#[derive(Debug, Default)]
pub struct RepairReport {
    pub shard_count: u16,
    /// Shards with no root in the bucket (never shipped: they come back empty).
    pub unshipped: Vec<u16>,
    pub incarnation: u64,
    pub inodes: u64,
    pub directories: u64,
    pub rebuilt: Rebuilt,
    /// Paths of `rebuilt.older` and `rebuilt.lost`, in their order.
    pub older_paths: Vec<String>,
    pub lost_paths: Vec<String>,
    /// What the namespace check across the shards' images found and did (`mend`).
    pub mended: Mended,
    /// Paths of `mended.dangling` (the names removed) and `mended.found` (where they are now).
    pub dangling_paths: Vec<String>,
    pub found_paths: Vec<String>,
    /// The oldest and newest time a shipped checkpoint's state was taken (Unix seconds).
    pub taken_from: i64,
    pub taken_to: i64,
    /// The largest metadata lag a last ship ended, milliseconds.
    pub lag_ms: u64,
    pub checkpoint_bytes: u64,
}

/// Every shard's current checkpoint in the bucket: (shard, its root and image), `None` for a
/// shard never shipped; and the shard count.
async fn fetch(
    store: &Store,
    keys: &KeySpace,
) -> Result<(u16, Vec<(u16, Option<(MetaRoot, ShardImage)>)>), MetaStoreError> {
    let first = read_root(store, keys, 0)
        .await?
        .ok_or_else(|| MetaStoreError::NoRoot(keys.key(&root_id(0))))?;
    let count = first.shard_count.max(1);
    let mut found: Vec<(u16, Option<(MetaRoot, ShardImage)>)> = stream::iter(0..count)
        .map(|shard| async move {
            let Some(root) = read_root(store, keys, shard).await? else {
                return Ok::<_, MetaStoreError>((shard, None));
            };
            let image = read_checkpoint(store, keys, &root).await?;
            Ok((shard, Some((root, image))))
        })
        .buffer_unordered(GETS_AT_ONCE)
        .try_collect()
        .await?;
    found.sort_unstable_by_key(|(s, _)| *s);
    Ok((count, found))
}

/// The states of a lost site's shards rebuilt from their checkpoints: every regular file's
/// bytes the bucket's (`restore::from_bucket`), the shards' images of different times made one
/// namespace (`mend`). A function of the checkpoints alone (the time it stamps on what it
/// changes is the newest checkpoint's), so every MDS node rebuilt from the bucket before any
/// of them starts (and ships again) holds the same replicas.
fn rebuild(
    count: u16,
    found: Vec<(u16, Option<(MetaRoot, ShardImage)>)>,
) -> Result<(RepairReport, Vec<(u16, MemState)>), MetaStoreError> {
    let mut report = RepairReport {
        shard_count: count,
        taken_from: i64::MAX,
        taken_to: i64::MIN,
        ..RepairReport::default()
    };
    let incarnation = found
        .iter()
        .filter_map(|(_, f)| f.as_ref().map(|(r, _)| r.incarnation))
        .max()
        .unwrap_or(0);
    report.incarnation = incarnation + 1;
    let at = found
        .iter()
        .filter_map(|(_, f)| {
            f.as_ref()
                .map(|(r, _)| Time::new(r.taken_at.0, r.taken_at.1))
        })
        .max()
        .unwrap_or_default();
    let mut states = Vec::new();
    for (shard, f) in found {
        let Some((root, image)) = f else {
            report.unshipped.push(shard);
            continue;
        };
        report.taken_from = report.taken_from.min(root.taken_at.0);
        report.taken_to = report.taken_to.max(root.taken_at.0);
        report.lag_ms = report.lag_ms.max(root.lag_ms);
        report.checkpoint_bytes += image.dump.len() as u64;
        let mut state = image.state()?;
        let r = restore::from_bucket(&mut state, report.incarnation, at);
        report.rebuilt.evicted_files += r.evicted_files;
        report.rebuilt.evicted_bytes += r.evicted_bytes;
        report.rebuilt.older.extend(r.older);
        report.rebuilt.lost.extend(r.lost);
        report.rebuilt.uploads_given_up += r.uploads_given_up;
        states.push((shard, state));
    }
    let lost = restore::drop_unheld_segments(&mut states, count);
    report.rebuilt.lost.extend(lost);
    report.mended = mend::mend(&mut states, at)?;
    for (_, s) in &states {
        report.inodes += s.inodes.len() as u64;
        report.directories += s
            .inodes
            .values()
            .filter(|i| matches!(i.kind, FileKind::Directory))
            .count() as u64;
    }
    let names = Names::of(&states);
    report.older_paths = report
        .rebuilt
        .older
        .iter()
        .map(|(ino, ..)| names.path(*ino))
        .collect();
    report.lost_paths = report
        .rebuilt
        .lost
        .iter()
        .map(|(ino, _)| names.path(*ino))
        .collect();
    report.dangling_paths = report
        .mended
        .dangling
        .iter()
        .map(|(dir, name, _)| {
            let d = names.path(*dir);
            let sep = if d.ends_with('/') { "" } else { "/" };
            format!("{d}{sep}{}", String::from_utf8_lossy(name))
        })
        .collect();
    report.found_paths = report
        .mended
        .found
        .iter()
        .map(|(ino, _)| names.path(*ino))
        .collect();
    Ok((report, states))
}

/// Rebuilds the namespace of a lost site into `meta_dirs` (the `meta` directory of each MDS
/// node's data directory: one for a single node or a one-MDS cluster, every node's for a
/// metadata service of several) from the bucket: every shard's current checkpoint, each
/// regular file's bytes left in the bucket, the shards made one namespace. Every directory
/// gets the same state; each must be empty, which is checked for all before any is written.
pub async fn repair(
    store: &Store,
    keys: &KeySpace,
    meta_dirs: &[PathBuf],
) -> Result<RepairReport, MetaStoreError> {
    if let Some(d) = meta_dirs
        .iter()
        .find(|d| d.join(meta::namespace::DB_FILE).exists())
    {
        return Err(MetaStoreError::NotEmpty(d.display().to_string()));
    }
    let (count, found) = fetch(store, keys).await?;
    let (report, states) = rebuild(count, found)?;
    for d in meta_dirs {
        restore::write(d, count, &states)?;
    }
    Ok(report)
}

/// [`repair`] from the bucket `config` names, under `prefix`.
pub async fn repair_from(
    config: tier::TierConfig,
    prefix: &str,
    meta_dirs: &[PathBuf],
) -> Result<RepairReport, MetaStoreError> {
    let keys = KeySpace::new(prefix).ok_or_else(|| MetaStoreError::Prefix(prefix.into()))?;
    let store = Store::new(config)?;
    repair(&store, &keys, meta_dirs).await
}

/// One name of each named inode, for the report's paths: (directory, name).
struct Names(std::collections::HashMap<u64, (u64, String)>);

impl Names {
    fn of(states: &[(u16, MemState)]) -> Names {
        let mut m = std::collections::HashMap::new();
        for (_, s) in states {
            for ((dir, name), (ino, _)) in &s.dirents {
                m.entry(*ino)
                    .or_insert_with(|| (*dir, String::from_utf8_lossy(name).into_owned()));
            }
        }
        Names(m)
    }

    /// A path of `ino`: one of its names, under its directory's path.
    fn path(&self, ino: u64) -> String {
        let mut parts = Vec::new();
        let mut at = ino;
        // Bounded: a damaged tree with a loop still ends.
        for _ in 0..256 {
            if at == ROOT_INO {
                break;
            }
            match self.0.get(&at) {
                Some((dir, name)) => {
                    parts.push(name.clone());
                    at = *dir;
                }
                None => {
                    parts.push(format!("<inode {at}>"));
                    break;
                }
            }
        }
        parts.reverse();
        format!("/{}", parts.join("/"))
    }
}
