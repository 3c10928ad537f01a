//! A shard's state machine: the namespace's `apply` over the shard's in-memory state, which
//! reads see, with the changes gathered for the next checkpoint (`checkpoint`).
//!
//! Entries reach `apply` once committed: on a one-replica shard once the node's log has
//! made them durable, on three once two have. A command that fails (a name that exists, a
//! permission refused) fails on every replica alike and leaves nothing behind (`Staged`); its
//! error is the answer the proposer gets.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, StoredMembership};
use serde::{Deserialize, Serialize};

use crate::storage::checkpoint::Checkpoints;
use crate::storage::entry::Tagged;
use crate::storage::entry::{
    machine_err, Cfg, Entry, LogId, Membership, Reply, ShardDump, StorageError,
};
use crate::storage::shard::{Applied, EffectSlot, Pending, ShardCore, Stats};
use meta_core::reduce_index::{
    Referrer, Segment, SegmentId, SegmentTierRow, SegmentV1, SegmentV1Ref,
};
use meta_core::sessions::{Seen, Sessions};
use meta_core::snap::{Images, ShardSnaps, SnapId, SnapRecord, Versions};
use meta_core::state::{meta, Changes, MemState, Staged};
use meta_core::{apply_on_shard, Command, Effect, FsError, Inode, ShardId};

impl ShardCore {
    pub fn new(
        id: ShardId,
        live: MemState,
        applied: Applied,
        effects: Arc<EffectSlot>,
        stats: Arc<Stats>,
    ) -> Arc<ShardCore> {
        Arc::new(ShardCore {
            id,
            live: RwLock::new(live),
            pending: Mutex::new(Pending {
                applied,
                ..Pending::default()
            }),
            leader: AtomicBool::new(false),
            effects,
            stats,
        })
    }

    pub fn applied(&self) -> Applied {
        self.pending
            .lock()
            .map(|p| p.applied.clone())
            .unwrap_or_default()
    }

    /// Applies committed entries in order; one reply per entry.
    fn apply_entries(&self, entries: Vec<Entry>) -> Result<Vec<Reply>, FsError> {
        let mut replies = Vec::with_capacity(entries.len());
        let mut effects: Vec<Effect> = Vec::new();
        let mut changes = Changes::default();
        let mut last_id = None;
        let mut membership = None;
        {
            let mut live = self
                .live
                .write()
                .map_err(|_| FsError::Io("shard state lock poisoned".into()))?;
            for e in entries {
                let reply = match e.payload {
                    EntryPayload::Blank => Reply::default(),
                    EntryPayload::Membership(m) => {
                        membership = Some(StoredMembership::new(Some(e.log_id), m));
                        Reply::default()
                    }
                    EntryPayload::Normal(p) => {
                        // Decoded here, once per replica (the log and the network carried the
                        // proposer's bytes), and whole before any of it is applied: an entry
                        // that does not decode was damaged after its checksum was checked, and
                        // no replica applies any of it.
                        let cmds = p.decode()?;
                        let mut results = Vec::with_capacity(cmds.len());
                        for Tagged { tag, cmd } in &cmds {
                            let seen = live.sessions.check(tag);
                            let result = match seen {
                                Seen::Again(r) => *r,
                                Seen::Stale => Err(FsError::Unavailable(
                                    "a command sent again after its proposer gave it up".into(),
                                )),
                                Seen::New | Seen::Untracked => {
                                    self.stats.commands.fetch_add(1, Ordering::Relaxed);
                                    let (req, cmd, answer) = match cmd {
                                        Command::Request {
                                            req,
                                            at,
                                            cmd,
                                            answer,
                                        } => (Some((req, *at)), &**cmd, answer.as_deref()),
                                        other => (None, other, None),
                                    };
                                    let before = req.and_then(|(r, _)| {
                                        live.sessions.answers.answered(r).cloned()
                                    });
                                    let r = if let Some(first) = before {
                                        // The client sent the request again: its first
                                        // answer, nothing applied.
                                        if cmd.is_txn_step() {
                                            Err(FsError::Answered(Box::new(first)))
                                        } else {
                                            Ok(first)
                                        }
                                    } else {
                                        let mut staged = Staged::new(&*live);
                                        match apply_on_shard(self.id, &mut staged, cmd) {
                                            Ok(out) => {
                                                let ch = staged.into_changes();
                                                ch.flush_into(&mut *live)?;
                                                changes.merge(ch);
                                                effects.extend(out.effects.iter().copied());
                                                // A transaction's lock step only asks.
                                                if let Some((req, at)) = req.filter(|_| {
                                                    !matches!(cmd, Command::TxnLock { .. })
                                                }) {
                                                    let a = answer.unwrap_or(&out);
                                                    live.sessions.answers.record(req, at, a);
                                                }
                                                Ok(out)
                                            }
                                            Err(e) => Err(e),
                                        }
                                    };
                                    if seen == Seen::New {
                                        live.sessions.record(tag, &r);
                                    }
                                    if self.leader.load(Ordering::Relaxed) {
                                        // A participant's leader dying at these steps is
                                        // what the cross-shard crash test needs.
                                        match cmd {
                                            Command::TxnLock { .. } => {
                                                crate::failpoint::hit("txn-lock-applied")
                                            }
                                            Command::TxnCommit { .. } => {
                                                crate::failpoint::hit("txn-commit-applied")
                                            }
                                            _ => {}
                                        }
                                    }
                                    r
                                }
                            };
                            results.push(result);
                        }
                        Reply(results)
                    }
                };
                replies.push(reply);
                last_id = Some(e.log_id);
            }
            // Still under the state's write lock: see `Pending`.
            let mut p = self
                .pending
                .lock()
                .map_err(|_| FsError::Io("shard pending lock poisoned".into()))?;
            if last_id.is_some() {
                p.applied.log_id = last_id;
            }
            if let Some(m) = membership {
                p.applied.membership = m;
            }
            p.changes.merge(changes);
            p.dirty = true;
        }
        if !effects.is_empty() && self.leader.load(Ordering::Acquire) {
            self.effects.deliver(&effects);
        }
        Ok(replies)
    }

    /// The shard's whole state as of what it applied.
    pub fn dump(&self) -> Result<(Applied, ShardDump), FsError> {
        let live = self
            .live
            .read()
            .map_err(|_| FsError::Io("shard state lock poisoned".into()))?;
        // Under the read lock, the applied id names exactly this state (see `Pending`).
        let applied = self.applied();
        let bytes = Dump::of(&live).encode()?;
        Ok((applied, ShardDump { bytes }))
    }

    /// The shard's whole state as of what it applied, for the object store
    /// (`crate::storage::restore`): the applied log id, the file system's incarnation there
    /// (`meta::TIER_INCARNATION`), and the dump, all taken under one read lock.
    pub fn image(&self) -> Result<(Applied, u64, Vec<u8>), FsError> {
        let live = self
            .live
            .read()
            .map_err(|_| FsError::Io("shard state lock poisoned".into()))?;
        let applied = self.applied();
        let incarnation = live.meta.get(meta::TIER_INCARNATION).copied().unwrap_or(0);
        Ok((applied, incarnation, Dump::of(&live).encode()?))
    }

    /// (incarnation, applied index): where the shard's state is, as its image would name it.
    pub fn position(&self) -> (u64, u64) {
        let incarnation = self
            .live
            .read()
            .map(|l| l.meta.get(meta::TIER_INCARNATION).copied().unwrap_or(0))
            .unwrap_or(0);
        let index = self.applied().log_id.map_or(0, |l| l.index);
        (incarnation, index)
    }

    /// Whether the shard holds nothing of the file system (no inode, tier record, index
    /// record, reduce record, transaction, snapshot state, snapshot record or data image): a
    /// new shard's state, which its membership entries alone do not change. A shard whose
    /// files are all gone but whose snapshots still hold them is not blank: they are read at
    /// their cuts.
    pub fn is_blank(&self) -> bool {
        self.live
            .read()
            .map(|l| {
                l.inodes.is_empty()
                    && l.tier.is_empty()
                    && l.segments.is_empty()
                    && l.reduces.is_empty()
                    && l.txns.is_empty()
                    && l.snaps == ShardSnaps::default()
                    && l.pre_inodes.is_empty()
                    && l.pre_dirents.is_empty()
                    && l.pre_xattrs.is_empty()
                    && l.registry.is_empty()
                    && l.images.is_empty()
            })
            .unwrap_or(false)
    }

    /// Replaces the shard's state with a snapshot's.
    fn install(&self, applied: Applied, dump: &ShardDump) -> Result<(), FsError> {
        let d = Dump::decode(&dump.bytes)
            .map_err(|e| FsError::Corrupt(format!("snapshot of {}: {e}", self.id)))?;
        let state = d.into_state();
        let mut live = self
            .live
            .write()
            .map_err(|_| FsError::Io("shard state lock poisoned".into()))?;
        *live = state;
        let mut p = self
            .pending
            .lock()
            .map_err(|_| FsError::Io("shard pending lock poisoned".into()))?;
        *p = Pending {
            applied,
            changes: Changes::default(),
            replaced: true,
            dirty: true,
        };
        Ok(())
    }
}

/// A shard's state in a form that travels (the `&'static` meta keys become strings).
#[derive(Default, Serialize, Deserialize)]
struct Dump {
    inodes: Vec<Inode>,
    dirents: Vec<(u64, Vec<u8>, u64, u64)>,
    cookies: Vec<(u64, u64)>,
    meta: Vec<(String, u64)>,
    orphans: Vec<u64>,
    chunks: Vec<(u64, u64, Vec<u64>)>,
    stripes: Vec<(u64, meta_core::FileCode)>,
    clients: Vec<(u64, Vec<u8>)>,
    sessions: Sessions,
    txns: Vec<(u128, meta_core::txn::TxnEntry)>,
    /// Travels after the fields above, and only when there are any: a snapshot of a build
    /// before extended attributes (or of a shard without any) ends with `txns`, so each
    /// build reads the other's.
    #[serde(skip)]
    xattrs: Vec<(u64, meta_core::Xattrs)>,
    /// Travels after `xattrs` (written, empty or not, whenever this is), and only when there
    /// are any, for the same reason.
    #[serde(skip)]
    tier: Vec<(u64, meta_core::FileTier)>,
    /// The data-reduction index's records and referrer rows, after `tier` (written, empty or
    /// not, whenever these are), and only when there are any, for the same reason: a
    /// snapshot without them is byte for byte what earlier builds wrote, and theirs load here.
    #[serde(skip)]
    segments: Vec<(SegmentId, Segment)>,
    #[serde(skip)]
    referrers: Vec<(SegmentId, Referrer)>,
    /// Reduced files' records, after the index (written whenever these are), and only when
    /// there are any, for the same reason.
    #[serde(skip)]
    reduces: Vec<(u64, meta_core::FileReduce)>,
    /// The shard's snapshot state, after the reduce records (written whenever this is), and
    /// only when there is any, for the same reason.
    #[serde(skip)]
    snaps: SnapPart,
    /// Shard 0's registry of snapshots, after the snapshot state (written, empty or not,
    /// whenever this is), and only when there are records, for the same reason.
    #[serde(skip)]
    registry: Vec<(SnapId, SnapRecord)>,
    // After the registry, and only when some segment has any: the segments' tier state
    // (`Segment::split`). `segments` travel in their earlier form (`SegmentV1`), so dumps of
    // builds before segments went to the tier load here, and a dump with no segment in the
    // tier loads there.
    /// Files' data images (`snap::image`), after the segments' tier state (written, empty or
    /// not, whenever these are), and only when there are any, for the same reason.
    #[serde(skip)]
    images: Vec<(u64, Images)>,
}

/// A directory entry's pre-images as a dump holds them: (dir, name, versions).
type EntryPre = (u64, Vec<u8>, Versions<(u64, u64)>);

/// A shard's snapshot state in a dump (`snap`): its freeze and cuts and every pre-image, one
/// trailing part. Later snapshot state (the registry, data images) goes in parts after it.
#[derive(Default, Serialize, Deserialize)]
struct SnapPart {
    snaps: ShardSnaps,
    pre_inodes: Vec<(u64, Versions<Inode>)>,
    pre_dirents: Vec<EntryPre>,
    pre_xattrs: Vec<(u64, Versions<meta_core::Xattrs>)>,
}

impl SnapPart {
    fn of(s: &MemState) -> SnapPart {
        SnapPart {
            snaps: s.snaps.clone(),
            pre_inodes: s.pre_inodes.iter().map(|(i, v)| (*i, v.clone())).collect(),
            pre_dirents: (s.pre_dirents.iter())
                .map(|((d, n), v)| (*d, n.clone(), v.clone()))
                .collect(),
            pre_xattrs: s.pre_xattrs.iter().map(|(i, v)| (*i, v.clone())).collect(),
        }
    }

    fn is_empty(&self) -> bool {
        self.snaps == ShardSnaps::default()
            && self.pre_inodes.is_empty()
            && self.pre_dirents.is_empty()
            && self.pre_xattrs.is_empty()
    }

    /// Puts the part into `s`, and rebuilds the indexes of pre-images.
    fn into_state(self, s: &mut MemState) {
        s.snaps = self.snaps;
        s.pre_inodes = self.pre_inodes.into_iter().collect();
        s.pre_dirents = (self.pre_dirents.into_iter())
            .map(|(d, n, v)| ((d, n), v))
            .collect();
        s.pre_xattrs = self.pre_xattrs.into_iter().collect();
        s.index_pre_images();
    }
}

impl Dump {
    fn of(s: &MemState) -> Dump {
        Dump {
            inodes: s.inodes.values().cloned().collect(),
            dirents: s
                .dirents
                .iter()
                .map(|((d, n), (i, c))| (*d, n.clone(), *i, *c))
                .collect(),
            cookies: s.cookies.iter().map(|(d, c)| (*d, *c)).collect(),
            meta: s.meta.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            orphans: s.orphans.keys().copied().collect(),
            chunks: s
                .chunks
                .iter()
                .map(|((i, c), m)| (*i, *c, m.clone()))
                .collect(),
            stripes: s.stripes.iter().map(|(i, c)| (*i, c.clone())).collect(),
            clients: s.clients.iter().cloned().collect(),
            sessions: s.sessions.clone(),
            txns: s.txns.iter().map(|(i, e)| (*i, e.clone())).collect(),
            xattrs: s.xattrs.iter().map(|(i, x)| (*i, x.clone())).collect(),
            tier: s.tier.iter().map(|(i, t)| (*i, t.clone())).collect(),
            segments: s.segments.iter().map(|(i, g)| (*i, g.clone())).collect(),
            referrers: s.referrers.iter().copied().collect(),
            reduces: s.reduces.iter().map(|(i, r)| (*i, r.clone())).collect(),
            snaps: SnapPart::of(s),
            registry: s.registry.iter().map(|(i, r)| (*i, r.clone())).collect(),
            images: s.images.iter().map(|(i, v)| (*i, v.clone())).collect(),
        }
    }

    fn encode(&self) -> Result<Vec<u8>, FsError> {
        let enc = |e| FsError::Io(format!("encode snapshot: {e}"));
        let mut bytes = postcard::to_stdvec(self).map_err(enc)?;
        // Segments go in their earlier form; their tier state, when any, in the last part.
        let mut v1: Vec<(SegmentId, SegmentV1Ref<'_>)> = Vec::with_capacity(self.segments.len());
        let mut tiers: Vec<SegmentTierRow> = Vec::new();
        for (id, g) in &self.segments {
            let (seg, tier) = g.split_ref(*id);
            v1.push((*id, seg));
            tiers.extend(tier);
        }
        // Each trailing part is written when it or a later one has anything.
        let images = !self.images.is_empty();
        let seg_tiers = images || !tiers.is_empty();
        let registry = seg_tiers || !self.registry.is_empty();
        let snaps = registry || !self.snaps.is_empty();
        let reduces = snaps || !self.reduces.is_empty();
        let index = reduces || !self.segments.is_empty() || !self.referrers.is_empty();
        let tier = index || !self.tier.is_empty();
        if tier || !self.xattrs.is_empty() {
            bytes.extend(postcard::to_stdvec(&self.xattrs).map_err(enc)?);
        }
        if tier {
            bytes.extend(postcard::to_stdvec(&self.tier).map_err(enc)?);
        }
        if index {
            bytes.extend(postcard::to_stdvec(&v1).map_err(enc)?);
            bytes.extend(postcard::to_stdvec(&self.referrers).map_err(enc)?);
        }
        if reduces {
            bytes.extend(postcard::to_stdvec(&self.reduces).map_err(enc)?);
        }
        if snaps {
            bytes.extend(postcard::to_stdvec(&self.snaps).map_err(enc)?);
        }
        if registry {
            bytes.extend(postcard::to_stdvec(&self.registry).map_err(enc)?);
        }
        if seg_tiers {
            bytes.extend(postcard::to_stdvec(&tiers).map_err(enc)?);
        }
        if images {
            bytes.extend(postcard::to_stdvec(&self.images).map_err(enc)?);
        }
        Ok(bytes)
    }

    fn decode(bytes: &[u8]) -> Result<Dump, postcard::Error> {
        let (mut d, rest): (Dump, _) = postcard::take_from_bytes(bytes)?;
        if rest.is_empty() {
            return Ok(d);
        }
        let (xattrs, rest) = postcard::take_from_bytes(rest)?;
        d.xattrs = xattrs;
        if rest.is_empty() {
            return Ok(d);
        }
        let (tier, rest) = postcard::take_from_bytes(rest)?;
        d.tier = tier;
        if rest.is_empty() {
            return Ok(d);
        }
        let (segments, rest): (Vec<(SegmentId, SegmentV1)>, _) = postcard::take_from_bytes(rest)?;
        d.segments = segments
            .into_iter()
            .map(|(i, g)| (i, Segment::from_v1(g)))
            .collect();
        let (referrers, rest) = postcard::take_from_bytes(rest)?;
        d.referrers = referrers;
        if rest.is_empty() {
            return Ok(d);
        }
        let (reduces, rest) = postcard::take_from_bytes(rest)?;
        d.reduces = reduces;
        if rest.is_empty() {
            return Ok(d);
        }
        let (snaps, rest) = postcard::take_from_bytes(rest)?;
        d.snaps = snaps;
        if rest.is_empty() {
            return Ok(d);
        }
        let (registry, rest) = postcard::take_from_bytes(rest)?;
        d.registry = registry;
        if rest.is_empty() {
            return Ok(d);
        }
        let (tiers, rest): (Vec<SegmentTierRow>, _) = postcard::take_from_bytes(rest)?;
        let mut by_id: std::collections::BTreeMap<SegmentId, usize> = Default::default();
        for (n, (i, _)) in d.segments.iter().enumerate() {
            by_id.insert(*i, n);
        }
        for (id, bucket, dropping) in tiers {
            match by_id.get(&id).and_then(|n| d.segments.get_mut(*n)) {
                Some((_, g)) => {
                    g.bucket = bucket;
                    g.dropping = dropping;
                }
                // A tier row for no segment here: not a dump this build wrote.
                None => return Err(postcard::Error::DeserializeBadEncoding),
            }
        }
        if rest.is_empty() {
            return Ok(d);
        }
        // The last part this build knows; parts of later builds after it are ignored, as
        // builds before the images ignore this one.
        let (images, _) = postcard::take_from_bytes(rest)?;
        d.images = images;
        Ok(d)
    }

    fn into_state(self) -> MemState {
        let mut s = MemState::default();
        for i in self.inodes {
            s.inodes.insert(i.ino, i);
        }
        for (d, n, i, c) in self.dirents {
            s.dirindex.insert((d, c), n.clone());
            s.dirents.insert((d, n), (i, c));
        }
        s.cookies = self.cookies.into_iter().collect();
        for (k, v) in self.meta {
            if let Some(known) = meta::ALL.into_iter().find(|n| *n == k) {
                s.meta.insert(known, v);
            }
        }
        s.orphans = self.orphans.into_iter().map(|i| (i, ())).collect();
        s.chunks = self
            .chunks
            .into_iter()
            .map(|(i, c, m)| ((i, c), m))
            .collect();
        s.stripes = self.stripes.into_iter().collect();
        s.clients = self.clients.into_iter().collect();
        s.sessions = self.sessions;
        s.txns = self.txns.into_iter().collect();
        s.xattrs = self.xattrs.into_iter().collect();
        s.tier = self.tier.into_iter().collect();
        s.segments = self.segments.into_iter().collect();
        s.referrers = self.referrers.into_iter().collect();
        s.reduces = self.reduces.into_iter().collect();
        self.snaps.into_state(&mut s);
        s.registry = self.registry.into_iter().collect();
        s.images = self.images.into_iter().collect();
        s.index_locks();
        s.index_orphan_dirs();
        s.index_chunks();
        s
    }
}

/// A shard's state as a dump encodes it (what snapshots and the object store carry).
#[cfg(test)]
pub(crate) fn encode_state(s: &MemState) -> Result<Vec<u8>, FsError> {
    Dump::of(s).encode()
}

/// The state a dump holds (indexes rebuilt).
pub(crate) fn decode_state(bytes: &[u8]) -> Result<MemState, FsError> {
    Dump::decode(bytes)
        .map(Dump::into_state)
        .map_err(|e| FsError::Corrupt(format!("shard dump: {e}")))
}

/// `RaftStateMachine` of one shard.
#[derive(Clone)]
pub(crate) struct ShardMachine {
    pub core: Arc<ShardCore>,
    pub checkpoints: Checkpoints,
}

fn sm_err(e: FsError) -> StorageError {
    machine_err(e)
}

impl RaftSnapshotBuilder<Cfg> for ShardMachine {
    /// A snapshot is what a checkpoint holds: the dump is taken first, then a checkpoint that
    /// covers it is made durable, so the log up to the snapshot may be purged.
    async fn build_snapshot(&mut self) -> Result<Snapshot<Cfg>, StorageError> {
        let (applied, dump) = self.core.dump().map_err(sm_err)?;
        self.checkpoints.now().await.map_err(sm_err)?;
        Ok(Snapshot {
            meta: meta_of(self.core.id, &applied),
            snapshot: Box::new(dump),
        })
    }
}

fn meta_of(shard: ShardId, a: &Applied) -> SnapshotMeta<u64, openraft::BasicNode> {
    let id = match a.log_id {
        Some(l) => format!("{shard}-{}-{}", l.leader_id.term, l.index),
        None => format!("{shard}-empty"),
    };
    SnapshotMeta {
        last_log_id: a.log_id,
        last_membership: a.membership.clone(),
        snapshot_id: id,
    }
}

impl RaftStateMachine<Cfg> for ShardMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, Membership), StorageError> {
        let a = self.core.applied();
        Ok((a.log_id, a.membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Reply>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.core
            .apply_entries(entries.into_iter().collect())
            .map_err(sm_err)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<ShardDump>, StorageError> {
        Ok(Box::default())
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, openraft::BasicNode>,
        snapshot: Box<ShardDump>,
    ) -> Result<(), StorageError> {
        let applied = Applied {
            log_id: meta.last_log_id,
            membership: meta.last_membership.clone(),
        };
        self.core.install(applied, &snapshot).map_err(sm_err)?;
        // Durable before openraft drops the log the snapshot replaces.
        self.checkpoints.now().await.map_err(sm_err)
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<Cfg>>, StorageError> {
        // Made fresh when asked (for a replica that fell behind): the state as applied now is a
        // snapshot at least as new as any built before.
        let (applied, dump) = self.core.dump().map_err(sm_err)?;
        if applied.log_id.is_none() {
            return Ok(None);
        }
        Ok(Some(Snapshot {
            meta: meta_of(self.core.id, &applied),
            snapshot: Box::new(dump),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meta_core::{apply, Command, FileKind, Time, ROOT_INO};

    fn with_root() -> MemState {
        let mut s = MemState::default();
        apply(
            &mut s,
            &Command::InitRoot {
                fs_id: 9,
                time: Time::new(1, 0),
            },
        )
        .unwrap();
        s
    }

    #[test]
    fn a_dump_round_trips_the_whole_state() {
        let mut s = with_root();
        for n in ["a", "b"] {
            regular_file(&mut s, n);
        }
        let t = meta_core::sessions::Tag {
            origin: 2,
            life: 1,
            seq: 7,
            waits_from: 7,
        };
        assert_eq!(s.sessions.check(&t), Seen::New);
        s.sessions.record(&t, &Err(FsError::Exists));
        // A snapshot without extended attributes is byte for byte what builds before them
        // wrote (the pinned `ShardDump/bytes`), and reads back.
        let plain = Dump::of(&s).encode().unwrap();
        assert_eq!(plain, postcard::to_stdvec(&Dump::of(&s)).unwrap());
        let back = Dump::decode(&plain).unwrap().into_state();
        assert_eq!(back.dump(), s.dump());
        assert_eq!(back.dirindex, s.dirindex);
        assert_eq!(back.sessions, s.sessions);
        let a = s.dirents[&(ROOT_INO, b"a".to_vec())].0;
        apply(
            &mut s,
            &Command::SetXattr {
                ino: a,
                name: b"tier.pin".to_vec(),
                value: b"hot".to_vec(),
                how: meta_core::xattr::How::Create,
                time: Time::new(3, 0),
            },
        )
        .unwrap();
        let back = Dump::decode(&Dump::of(&s).encode().unwrap())
            .unwrap()
            .into_state();
        assert_eq!(back.xattrs[&a][&b"tier.pin"[..]], b"hot");
        assert_eq!(back.dump(), s.dump());
        // The tier's records travel after the attributes, with or without any attributes.
        let b = s.dirents[&(ROOT_INO, b"b".to_vec())].0;
        let change = s.inodes[&b].change;
        apply(
            &mut s,
            &Command::TierBegin {
                ino: b,
                change,
                pieces: 2,
                time: Time::new(4, 0),
                by: 9,
            },
        )
        .unwrap();
        let back = Dump::decode(&Dump::of(&s).encode().unwrap())
            .unwrap()
            .into_state();
        assert_eq!(back.tier[&b].upload.map(|u| (u.pieces, u.by)), Some((2, 9)));
        assert_eq!(back.dump(), s.dump());
        s.xattrs.clear();
        let back = Dump::decode(&Dump::of(&s).encode().unwrap())
            .unwrap()
            .into_state();
        assert!(back.xattrs.is_empty());
        assert_eq!(back.dump(), s.dump());
    }

    /// Creates the regular file `name` in the root; its inode number.
    fn regular_file(s: &mut MemState, name: &str) -> u64 {
        let cmd = Command::Create {
            parent: ROOT_INO,
            name: name.as_bytes().to_vec(),
            kind: FileKind::Regular,
            mode: 0o644,
            uid: 1,
            gid: 1,
            time: Time::new(2, 0),
            how: meta_core::CreateHow::Guarded,
        };
        apply(s, &cmd).unwrap().inode.unwrap().ino
    }

    /// The data-reduction index travels in a snapshot after the tier's records, with or
    /// without attributes and tier records before it, and its chunk map is rebuilt; a
    /// snapshot as earlier builds wrote it (no index) is the same bytes as before and loads.
    #[test]
    fn the_index_travels_in_a_snapshot_and_earlier_snapshots_still_load() {
        use meta_core::reduce_index::{ChunkId, SegmentState, StoredSegment};
        let mut s = with_root();
        let a = regular_file(&mut s, "f");
        let (x, y) = (SegmentId([1; 32]), SegmentId([2; 32]));
        let stored = |c: u8| StoredSegment {
            chunks: vec![(ChunkId([c; 32]), 100), (ChunkId([c + 1; 32]), 200)],
            placement: vec![7, 8, 9],
            stored_len: 300,
        };
        let add = |segment, c: Option<u8>, ino| Command::AddReferrer {
            shard: ShardId(0),
            segment,
            stored: c.map(stored),
            referrer: Referrer { ino, epoch: 3 },
        };
        // Earlier builds' layout: the fields, then the attributes and the tier's records.
        let change = s.inodes[&a].change;
        apply(
            &mut s,
            &Command::TierBegin {
                ino: a,
                change,
                pieces: 1,
                time: Time::new(4, 0),
                by: 9,
            },
        )
        .unwrap();
        let d = Dump::of(&s);
        let mut earlier = postcard::to_stdvec(&d).unwrap();
        earlier.extend(postcard::to_stdvec(&d.xattrs).unwrap());
        earlier.extend(postcard::to_stdvec(&d.tier).unwrap());
        assert_eq!(d.encode().unwrap(), earlier, "no index, no new bytes");
        let back = Dump::decode(&earlier).unwrap().into_state();
        assert!(back.segments.is_empty() && back.referrers.is_empty());
        assert_eq!(back.dump(), s.dump());

        for cmd in [
            add(x, Some(10), 5),
            add(x, None, 6),
            add(y, Some(11), 5),
            Command::DropReferrer {
                shard: ShardId(0),
                segment: y,
                referrer: Referrer { ino: 5, epoch: 3 },
            },
        ] {
            apply(&mut s, &cmd).unwrap();
        }
        assert_eq!(s.segments[&y].state, SegmentState::Dying);
        let check = |s: &MemState| {
            let back = Dump::decode(&Dump::of(s).encode().unwrap())
                .unwrap()
                .into_state();
            assert_eq!(back.dump(), s.dump());
            assert_eq!(back.chunk_index, s.chunk_index, "the chunk map is rebuilt");
            assert_eq!(back.referrers.len(), 2);
            // Chunk 11 is in both, but only the live one counts.
            assert_eq!(
                back.locate_chunks(&[ChunkId([11; 32])])[0].1.segment,
                x,
                "found in the live segment"
            );
            assert!(back.locate_chunks(&[ChunkId([12; 32])]).is_empty());
        };
        check(&s);
        // Without the tier's records or attributes before it.
        s.tier.clear();
        s.xattrs.clear();
        check(&s);
    }

    /// Segments travel in their earlier form: a dump with no segment in the tier is the bytes
    /// a build before segments' tier state wrote (segments as `SegmentV1`, nothing after the
    /// registry), and tier state, when there is some, comes back from the last part.
    #[test]
    fn segments_keep_their_earlier_form_and_their_tier_state_travels_last() {
        use meta_core::reduce_index::{ChunkId, SegmentBucket, StoredSegment};
        let mut s = with_root();
        let a = regular_file(&mut s, "f");
        let (x, y) = (SegmentId([1; 32]), SegmentId([2; 32]));
        for (seg, c) in [(x, 10u8), (y, 20)] {
            let add = Command::AddReferrer {
                shard: ShardId(0),
                segment: seg,
                stored: Some(StoredSegment {
                    chunks: vec![(ChunkId([c; 32]), 100)],
                    placement: vec![7, 8, 9],
                    stored_len: 100,
                }),
                referrer: Referrer { ino: a, epoch: 3 },
            };
            apply(&mut s, &add).unwrap();
        }
        let d = Dump::of(&s);
        let v1: Vec<(SegmentId, SegmentV1)> = d
            .segments
            .iter()
            .map(|(i, g)| (*i, g.split(*i).0))
            .collect();
        let mut earlier = postcard::to_stdvec(&d).unwrap();
        earlier.extend(postcard::to_stdvec(&d.xattrs).unwrap());
        earlier.extend(postcard::to_stdvec(&d.tier).unwrap());
        earlier.extend(postcard::to_stdvec(&v1).unwrap());
        earlier.extend(postcard::to_stdvec(&d.referrers).unwrap());
        assert_eq!(
            d.encode().unwrap(),
            earlier,
            "no tier state, the earlier bytes"
        );
        assert_eq!(
            Dump::decode(&earlier).unwrap().into_state().dump(),
            s.dump()
        );

        // One segment in the bucket and leaving flash: its state comes back.
        if let Some(g) = s.segments.get_mut(&y) {
            g.bucket = SegmentBucket::Held;
            g.dropping = vec![8];
            g.placement.clear();
        }
        let bytes = Dump::of(&s).encode().unwrap();
        let back = Dump::decode(&bytes).unwrap().into_state();
        assert_eq!(back.segments[&y].bucket, SegmentBucket::Held);
        assert_eq!(back.segments[&y].dropping, vec![8]);
        assert_eq!(back.segments[&x].bucket, SegmentBucket::No);
        assert_eq!(back.dump(), s.dump());
        // A build before the tier state reads such a dump's segments without it (the part is
        // trailing): the earlier parts decode alone.
        assert!(bytes.len() > earlier.len());
    }

    /// Reduce records travel in a snapshot after the index, with or without anything in the
    /// trailing parts before them; a snapshot without any is the bytes earlier builds wrote.
    #[test]
    fn reduce_records_travel_in_a_snapshot_and_earlier_snapshots_still_load() {
        use meta_core::reduce_index::SegmentId;
        let mut s = with_root();
        let mut file = |name: &str| {
            let f = regular_file(&mut s, name);
            for cmd in [
                Command::Write {
                    ino: f,
                    end_offset: 4096,
                    time: Time::new(3, 0),
                    writes: 1,
                },
                Command::SetMirrors {
                    ino: f,
                    chunk: 0,
                    mirrors: vec![11, 12],
                },
                Command::BeginReduce {
                    ino: f,
                    time: Time::new(4, 0),
                },
            ] {
                apply(&mut s, &cmd).unwrap();
            }
            f
        };
        let (a, b) = (file("a"), file("b"));
        // Earlier builds' layout, and no new bytes while there is no record.
        let mut before = s.clone();
        before.reduces.clear();
        let d = Dump::of(&before);
        assert_eq!(d.encode().unwrap(), postcard::to_stdvec(&d).unwrap());
        let back = Dump::decode(&d.encode().unwrap()).unwrap().into_state();
        assert_eq!(back.dump(), before.dump());

        let epoch = s.reduces[&b].epoch;
        let finish = Command::FinishReduce {
            ino: b,
            epoch,
            len: 4096,
            recipe: b"recipe".to_vec(),
            segments: vec![SegmentId([7; 32])],
        };
        apply(&mut s, &finish).unwrap();
        assert!(s.reduces[&a].reducing_since().is_some() && s.reduces[&b].is_reduced());
        let check = |s: &MemState| {
            let back = Dump::decode(&Dump::of(s).encode().unwrap())
                .unwrap()
                .into_state();
            assert_eq!(back.dump(), s.dump());
            assert_eq!(back.reduces.len(), 2);
        };
        // With nothing else in the trailing parts, then with attributes before them.
        check(&s);
        s.xattrs
            .insert(a, [(b"user.x".to_vec(), b"1".to_vec())].into());
        check(&s);
    }

    fn entry(index: u64, cmds: Vec<Tagged>) -> Entry {
        Entry {
            log_id: openraft::testing::log_id(1, 1, index),
            payload: EntryPayload::Normal(crate::raft::Proposal::encode(&cmds).unwrap()),
        }
    }

    /// The same tagged command in two entries (a leader died after replicating the first; the
    /// proposer sent it again to the next) changes the state once, and both answer alike.
    #[test]
    fn a_command_sent_twice_is_applied_once() {
        let s = with_root();
        let core = ShardCore::new(
            ShardId(0),
            s,
            Applied::default(),
            Arc::default(),
            Arc::default(),
        );
        let mkdir = |seq: u64, waits_from: u64, name: &str| Tagged {
            tag: meta_core::sessions::Tag {
                origin: 2,
                life: 1,
                seq,
                waits_from,
            },
            cmd: Command::Create {
                parent: ROOT_INO,
                name: name.into(),
                kind: FileKind::Directory,
                mode: 0o755,
                uid: 1,
                gid: 1,
                time: Time::new(2, 0),
                how: meta_core::CreateHow::Guarded,
            },
        };
        let first = core
            .apply_entries(vec![entry(1, vec![mkdir(0, 0, "d")])])
            .unwrap();
        let again = core
            .apply_entries(vec![entry(2, vec![mkdir(1, 0, "e"), mkdir(0, 0, "d")])])
            .unwrap();
        let made = first[0].0[0].clone().expect("first mkdir");
        assert_eq!(again[0].0[1], Ok(made), "the copy answers the first result");
        assert!(again[0].0[0].is_ok());
        // Without its tag the copy would fail: a new command of the same name does.
        let other = core
            .apply_entries(vec![entry(3, vec![mkdir(2, 2, "d")])])
            .unwrap();
        assert_eq!(other[0].0[0], Err(FsError::Exists));
        assert_eq!(core.stats.commands.load(Ordering::Relaxed), 3);
        // Once the proposer no longer waits for 0 and 1, their results are gone.
        assert_eq!(core.live.read().unwrap().sessions.kept(), 1);
    }
}
