//! Cross-shard operations: two-phase commit with the intents in the shards' Raft logs.
//!
//! A command whose objects live on several shards (`Command::shards`), or whose `apply` reached
//! an object of another shard (`FsError::Elsewhere`: a directory rename's loop check walking up
//! through other shards), runs as a transaction. The node that proposed it coordinates:
//!
//! 1. **Lock.** `TxnLock` on every shard involved records the transaction there (`Prepared`)
//!    with the keys it locks (and, for a new object, an inode number reserved in that shard's
//!    counter). A key locked by another transaction refuses (`FsError::Busy`): the coordinator
//!    releases what it took and tries again later, so two transactions never wait for each
//!    other. Every other command that reads or changes a locked key fails `Busy` on every
//!    replica alike (`Guarded`), and its proposer tries again shortly.
//! 2. **Compute.** With its keys locked, the coordinator runs the ordinary `apply` over
//!    `TxnStore`, which reads the locked objects from this node's replicas (they cannot change
//!    while locked) and collects the writes per shard. A read of a key not locked yet answers
//!    `NeedLock`: the coordinator locks it too and runs `apply` again. So every POSIX rule lives
//!    in `apply` once, for one shard and for several.
//! 3. **Decide.** `TxnDecide` on the coordinating shard (the shard of the command's
//!    `Command::home` directory, else the lowest shard involved) records the decision with
//!    every shard's writes: the commit point, and for a client request its answer
//!    (`Command::Request`). It is refused once a recovery has recorded an abort there.
//! 4. **Commit.** `TxnCommit` on each shard installs that shard's writes and releases its locks
//!    (a no-op where already done), then `TxnForget` drops the decision.
//!
//! Recovery (`Namespace::recover_txns`, on each shard's leader): a prepared record older than
//! `STALE` asks the coordinating shard to decide (`TxnResolve`: abort unless decided) and
//! then commits or releases its part; a commit decision older than `STALE` is driven to the
//! end. An abort decision stays for `ABORT_KEEP` so that a coordinator that was only slow can
//! never commit after a participant released its locks. So a kill -9 of the coordinator or of
//! any participant at any step ends with the operation done everywhere or nowhere.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::coding::FileCode;
use super::error::FsError;
use super::shard::{Key, ShardId};
use super::state::{MemState, StateStore};
use super::types::{Effect, Inode, Outcome, Time};

/// A transaction's id: the proposing node in the top 16 bits, its boot count in the next 48,
/// its sequence number below, so ids of two nodes or two lives never meet.
pub type TxnId = u128;

/// A prepared transaction older than this is asked about by its participants' leaders
/// (`Options::txn_stale` sets it): a coordinator takes milliseconds, or seconds when it waits
/// out an election; asking aborts one that is only slow, which then tries again.
pub const STALE: std::time::Duration = std::time::Duration::from_secs(5);
/// How long an abort decision is kept: longer than any coordinator keeps trying.
pub const ABORT_KEEP: std::time::Duration = std::time::Duration::from_secs(600);
/// A coordinator may record its commit only this long after its first lock: a recovery may
/// have started after `STALE`, but it records an abort before it releases anything.
pub const MAX_AGE: std::time::Duration = std::time::Duration::from_secs(60);

/// One shard's record of a transaction.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnEntry {
    /// This shard's part is locked for the transaction.
    pub prepared: Option<Prepared>,
    /// On the coordinating shard: what was decided.
    pub decision: Option<Decision>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prepared {
    pub coord: ShardId,
    /// The keys locked here.
    pub keys: Vec<Key>,
    /// The inode number reserved in this shard's counter for a new object.
    pub reserved: Option<u64>,
    /// When the first lock was taken (the proposer's clock).
    pub since: Time,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    Commit { parts: Vec<TxnPart>, at: Time },
    Abort { at: Time },
}

/// A directory entry a transaction writes: (dir, name, (inode, cookie) or deleted).
pub type EntryWrite = (u64, Vec<u8>, Option<(u64, u64)>);

/// What a transaction writes on one shard: whole values or deletions, counters as deltas.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnPart {
    pub shard: ShardId,
    pub inodes: Vec<(u64, Option<Inode>)>,
    pub dirents: Vec<EntryWrite>,
    pub cookies: Vec<(u64, Option<u64>)>,
    pub meta: Vec<(String, i64)>,
    pub orphans: Vec<(u64, bool)>,
    pub chunks: Vec<(u64, u64, Option<Vec<u64>>)>,
    pub stripes: Vec<(u64, Option<FileCode>)>,
}

impl TxnPart {
    /// Whether this part makes an object that did not exist (committed first, so no name ever
    /// points at a missing object), adds a name (second), or only removes and changes.
    fn rank(&self, existed: &BTreeSet<u64>) -> u8 {
        if self
            .inodes
            .iter()
            .any(|(ino, v)| v.is_some() && !existed.contains(ino))
        {
            0
        } else if self.dirents.iter().any(|(_, _, v)| v.is_some()) {
            1
        } else if self.inodes.iter().any(|(_, v)| v.is_none()) {
            3
        } else {
            2
        }
    }

    /// The keys this part writes: each must be locked by the transaction.
    fn keys(&self) -> BTreeSet<Key> {
        let mut k = BTreeSet::new();
        for (ino, _) in &self.inodes {
            k.insert(Key::Inode(*ino));
        }
        for (dir, _, _) in &self.dirents {
            k.insert(Key::Entries(*dir));
        }
        for (dir, _) in &self.cookies {
            k.insert(Key::Entries(*dir));
        }
        for (ino, _) in &self.orphans {
            k.insert(Key::Inode(*ino));
        }
        for (ino, _, _) in &self.chunks {
            k.insert(Key::Inode(*ino));
        }
        for (ino, _) in &self.stripes {
            k.insert(Key::Inode(*ino));
        }
        k
    }
}

fn time_diff_ok(from: Time, to: Time, limit: std::time::Duration) -> bool {
    let secs = to.secs.saturating_sub(from.secs);
    secs <= i64::try_from(limit.as_secs()).unwrap_or(i64::MAX)
}

/// Whether `at` lies more than `age` before `now`.
pub fn older_than(at: Time, now: Time, age: std::time::Duration) -> bool {
    !time_diff_ok(at, now, age)
}

/// `TxnLock`: locks `keys` (all of one shard) for `txn`.
pub(crate) fn lock<S: StateStore + ?Sized>(
    s: &mut S,
    txn: TxnId,
    coord: ShardId,
    keys: &[Key],
    time: Time,
) -> Result<Outcome, FsError> {
    let mut entry = s.txn(txn)?.unwrap_or_default();
    if matches!(entry.decision, Some(Decision::Abort { .. })) {
        return Err(FsError::Aborted);
    }
    let mut p = entry.prepared.take().unwrap_or(Prepared {
        coord,
        keys: Vec::new(),
        reserved: None,
        since: time,
    });
    for &k in keys {
        if let Key::NewInode(shard) = k {
            // A number of the shard's counter, not a lock: creates never wait for each other
            // here.
            if p.reserved.is_none() {
                let ino = s.alloc_ino(shard)?;
                p.reserved = Some(ino);
                p.keys.push(Key::Inode(ino));
            }
            continue;
        }
        if let Some(other) = s.locked(k)? {
            if other != txn {
                return Err(FsError::Busy);
            }
        }
        if !p.keys.contains(&k) {
            p.keys.push(k);
        }
    }
    entry.prepared = Some(p);
    s.put_txn(txn, Some(&entry))?;
    Ok(Outcome::default())
}

/// `TxnDecide`: the commit point, on the coordinating shard.
pub(crate) fn decide<S: StateStore + ?Sized>(
    s: &mut S,
    txn: TxnId,
    parts: &[TxnPart],
    time: Time,
) -> Result<Outcome, FsError> {
    let mut entry = s.txn(txn)?.unwrap_or_default();
    match &entry.decision {
        Some(Decision::Commit { .. }) => return Ok(Outcome::default()),
        Some(Decision::Abort { .. }) => return Err(FsError::Aborted),
        None => {}
    }
    // The coordinating shard's own locks are held until the decision, so their absence means
    // a recovery released them.
    let Some(p) = &entry.prepared else {
        return Err(FsError::Aborted);
    };
    if older_than(p.since, time, MAX_AGE) {
        return Err(FsError::Aborted);
    }
    entry.decision = Some(Decision::Commit {
        parts: parts.to_vec(),
        at: time,
    });
    s.put_txn(txn, Some(&entry))?;
    Ok(Outcome::default())
}

/// `TxnResolve`: abort unless decided (a participant's recovery asks). An abort also
/// releases the coordinating shard's own locks.
pub(crate) fn resolve<S: StateStore + ?Sized>(
    s: &mut S,
    txn: TxnId,
    time: Time,
) -> Result<Outcome, FsError> {
    let mut entry = s.txn(txn)?.unwrap_or_default();
    if entry.decision.is_some() {
        return Ok(Outcome::default());
    }
    entry.prepared = None;
    entry.decision = Some(Decision::Abort { at: time });
    s.put_txn(txn, Some(&entry))?;
    Ok(Outcome::default())
}

/// `TxnCommit`: installs this shard's writes and releases its locks; done already is a no-op.
pub(crate) fn commit<S: StateStore + ?Sized>(
    s: &mut S,
    txn: TxnId,
    part: &TxnPart,
) -> Result<Outcome, FsError> {
    let Some(mut entry) = s.txn(txn)? else {
        return Ok(Outcome::default());
    };
    let Some(p) = entry.prepared.take() else {
        return Ok(Outcome::default());
    };
    if matches!(entry.decision, Some(Decision::Abort { .. })) {
        return Err(FsError::Aborted);
    }
    let held: BTreeSet<Key> = p.keys.iter().copied().collect();
    if let Some(k) = part.keys().into_iter().find(|k| !held.contains(k)) {
        return Err(FsError::Corrupt(format!(
            "transaction {txn:#x} writes {k:?}, which it did not lock"
        )));
    }
    let mut out = Outcome::default();
    for (dir, name, v) in &part.dirents {
        if v.is_none() {
            s.del_dirent(*dir, name)?;
        }
    }
    for (dir, name, v) in &part.dirents {
        if let Some((ino, cookie)) = v {
            s.put_dirent(*dir, name, *ino, *cookie)?;
        }
    }
    let orphaned: BTreeSet<u64> = part
        .orphans
        .iter()
        .filter(|(_, o)| *o)
        .map(|(i, _)| *i)
        .collect();
    for (ino, v) in &part.inodes {
        match v {
            Some(i) => s.put_inode(i)?,
            None => {
                s.del_inode(*ino)?;
                out.effects.push(Effect::Freed(*ino));
            }
        }
    }
    for (dir, next) in &part.cookies {
        s.set_next_cookie(*dir, *next)?;
    }
    for (key, delta) in &part.meta {
        let key = super::state::meta::ALL
            .into_iter()
            .find(|k| k == key)
            .ok_or_else(|| FsError::Corrupt(format!("counter {key}")))?;
        s.add_meta(part.shard, key, i128::from(*delta))?;
    }
    for (ino, o) in &part.orphans {
        s.set_orphan(*ino, *o)?;
    }
    for ino in orphaned {
        // A directory becomes an orphan only by `Detach`: its contents go to the reclaimer.
        let dir = s.inode(ino)?.is_some_and(|i| i.kind.is_dir());
        out.effects.push(if dir {
            Effect::Detached(ino)
        } else {
            Effect::Orphaned(ino)
        });
    }
    for (ino, chunk, m) in &part.chunks {
        s.put_chunk(*ino, *chunk, m.as_deref())?;
    }
    for (ino, c) in &part.stripes {
        s.put_stripes(*ino, c.as_ref())?;
    }
    store_or_drop(s, txn, entry)?;
    Ok(out)
}

/// `TxnAbort`: releases this shard's locks (a no-op where there are none).
pub(crate) fn abort<S: StateStore + ?Sized>(s: &mut S, txn: TxnId) -> Result<Outcome, FsError> {
    let Some(mut entry) = s.txn(txn)? else {
        return Ok(Outcome::default());
    };
    if matches!(entry.decision, Some(Decision::Commit { .. })) {
        // Committed here: its part can only be committed.
        return Err(FsError::Invalid);
    }
    entry.prepared = None;
    store_or_drop(s, txn, entry)?;
    Ok(Outcome::default())
}

/// `TxnForget`: the decision is carried out everywhere (or an abort is old enough).
pub(crate) fn forget<S: StateStore + ?Sized>(s: &mut S, txn: TxnId) -> Result<Outcome, FsError> {
    let Some(mut entry) = s.txn(txn)? else {
        return Ok(Outcome::default());
    };
    entry.decision = None;
    store_or_drop(s, txn, entry)?;
    Ok(Outcome::default())
}

fn store_or_drop<S: StateStore + ?Sized>(
    s: &mut S,
    txn: TxnId,
    entry: TxnEntry,
) -> Result<(), FsError> {
    if entry.prepared.is_none() && entry.decision.is_none() {
        s.put_txn(txn, None)
    } else {
        s.put_txn(txn, Some(&entry))
    }
}

/// The store a coordinator runs `apply` over: reads of locked keys from this node's replicas
/// (`NeedLock` for any other key), writes collected per shard.
pub(crate) struct TxnStore<'a> {
    held: super::read::Held<'a>,
    /// The keys this transaction holds, and each shard's reserved inode number.
    locked: &'a BTreeSet<Key>,
    reserved: &'a BTreeMap<ShardId, u64>,
    changes: super::state::Changes,
    deltas: BTreeMap<(ShardId, &'static str), i128>,
    /// Inodes that existed when first read (to order the commits).
    existed: std::cell::RefCell<BTreeSet<u64>>,
}

impl<'a> TxnStore<'a> {
    pub(crate) fn new(
        shards: &'a BTreeMap<u16, std::sync::Arc<crate::raft::machine::ShardCore>>,
        locked: &'a BTreeSet<Key>,
        reserved: &'a BTreeMap<ShardId, u64>,
    ) -> Self {
        TxnStore {
            held: super::read::Held::new(shards),
            locked,
            reserved,
            changes: Default::default(),
            deltas: BTreeMap::new(),
            existed: Default::default(),
        }
    }

    fn need(&self, key: Key) -> Result<(), FsError> {
        if self.locked.contains(&key) {
            Ok(())
        } else {
            Err(FsError::NeedLock(key))
        }
    }

    fn with<R>(&self, shard: ShardId, f: impl FnOnce(&MemState) -> R) -> Result<R, FsError> {
        self.held.with(shard, f)
    }

    /// The writes, one part per shard, in the order to commit them.
    pub(crate) fn into_parts(self) -> Vec<TxnPart> {
        let mut parts: BTreeMap<ShardId, TxnPart> = BTreeMap::new();
        let ch = self.changes;
        fn part(parts: &mut BTreeMap<ShardId, TxnPart>, s: ShardId) -> &mut TxnPart {
            parts.entry(s).or_insert_with(|| TxnPart {
                shard: s,
                ..TxnPart::default()
            })
        }
        for (ino, v) in ch.inodes {
            part(&mut parts, ShardId::of_ino(ino)).inodes.push((ino, v));
        }
        for ((dir, name), v) in ch.dirents {
            part(&mut parts, ShardId::of_ino(dir))
                .dirents
                .push((dir, name, v));
        }
        for (dir, v) in ch.cookies {
            part(&mut parts, ShardId::of_ino(dir))
                .cookies
                .push((dir, v));
        }
        for (ino, o) in ch.orphans {
            part(&mut parts, ShardId::of_ino(ino))
                .orphans
                .push((ino, o));
        }
        for ((ino, chunk), m) in ch.chunks {
            part(&mut parts, ShardId::of_ino(ino))
                .chunks
                .push((ino, chunk, m));
        }
        for (ino, c) in ch.stripes {
            part(&mut parts, ShardId::of_ino(ino))
                .stripes
                .push((ino, c));
        }
        for ((s, key), d) in self.deltas {
            if d != 0 {
                let d = i64::try_from(d).unwrap_or(if d < 0 { i64::MIN } else { i64::MAX });
                part(&mut parts, s).meta.push((key.to_string(), d));
            }
        }
        let existed = self.existed.into_inner();
        let mut v: Vec<TxnPart> = parts.into_values().collect();
        v.sort_by_key(|p| (p.rank(&existed), p.shard));
        v
    }
}

impl StateStore for TxnStore<'_> {
    fn inode(&self, ino: u64) -> Result<Option<Inode>, FsError> {
        if let Some(v) = self.changes.inodes.get(&ino) {
            return Ok(v.clone());
        }
        self.need(Key::Inode(ino))?;
        let i = self.with(ShardId::of_ino(ino), |st| st.inodes.get(&ino).cloned())?;
        if i.is_some() {
            self.existed.borrow_mut().insert(ino);
        }
        Ok(i)
    }
    fn put_inode(&mut self, inode: &Inode) -> Result<(), FsError> {
        self.need(Key::Inode(inode.ino))?;
        self.changes.inodes.insert(inode.ino, Some(inode.clone()));
        Ok(())
    }
    fn del_inode(&mut self, ino: u64) -> Result<(), FsError> {
        self.need(Key::Inode(ino))?;
        self.changes.inodes.insert(ino, None);
        Ok(())
    }
    fn dirent(&self, dir: u64, name: &[u8]) -> Result<Option<(u64, u64)>, FsError> {
        if let Some(v) = self.changes.dirents.get(&(dir, name.to_vec())) {
            return Ok(*v);
        }
        self.need(Key::Entries(dir))?;
        self.with(ShardId::of_ino(dir), |st| st.dirent(dir, name))?
    }
    fn put_dirent(&mut self, dir: u64, name: &[u8], ino: u64, cookie: u64) -> Result<(), FsError> {
        self.need(Key::Entries(dir))?;
        self.changes
            .dirents
            .insert((dir, name.to_vec()), Some((ino, cookie)));
        Ok(())
    }
    fn del_dirent(&mut self, dir: u64, name: &[u8]) -> Result<(), FsError> {
        self.need(Key::Entries(dir))?;
        self.changes.dirents.insert((dir, name.to_vec()), None);
        Ok(())
    }
    fn dir_has_entry(&self, dir: u64, skip: &dyn Fn(&[u8]) -> bool) -> Result<bool, FsError> {
        self.need(Key::Entries(dir))?;
        self.changes.dir_has_entry(dir, skip, |skip| {
            self.with(ShardId::of_ino(dir), |st| st.dir_has_entry(dir, skip))?
        })
    }
    fn next_cookie(&self, dir: u64) -> Result<u64, FsError> {
        if let Some(v) = self.changes.cookies.get(&dir) {
            return Ok(v.unwrap_or(super::types::FIRST_COOKIE));
        }
        self.need(Key::Entries(dir))?;
        self.with(ShardId::of_ino(dir), |st| st.next_cookie(dir))?
    }
    fn set_next_cookie(&mut self, dir: u64, next: Option<u64>) -> Result<(), FsError> {
        self.need(Key::Entries(dir))?;
        self.changes.cookies.insert(dir, next);
        Ok(())
    }
    fn meta(&self, _key: &'static str) -> Result<u64, FsError> {
        // Counters of a transaction are deltas per shard (`add_meta`), never read whole.
        Err(FsError::Invalid)
    }
    fn set_meta(&mut self, _key: &'static str, _value: u64) -> Result<(), FsError> {
        Err(FsError::Invalid)
    }
    fn add_meta(&mut self, shard: ShardId, key: &'static str, delta: i128) -> Result<(), FsError> {
        *self.deltas.entry((shard, key)).or_default() += delta;
        Ok(())
    }
    fn alloc_ino(&mut self, shard: ShardId) -> Result<u64, FsError> {
        self.reserved
            .get(&shard)
            .copied()
            .ok_or(FsError::NeedLock(Key::NewInode(shard)))
    }
    fn set_orphan(&mut self, ino: u64, orphan: bool) -> Result<(), FsError> {
        self.need(Key::Inode(ino))?;
        self.changes.orphans.insert(ino, orphan);
        Ok(())
    }
    fn chunks(&self, ino: u64) -> Result<Vec<(u64, Vec<u64>)>, FsError> {
        self.need(Key::Inode(ino))?;
        let mut all: BTreeMap<u64, Vec<u64>> = self
            .with(ShardId::of_ino(ino), |st| st.chunks(ino))??
            .into_iter()
            .collect();
        for ((_, c), m) in self.changes.chunks.range((ino, 0)..=(ino, u64::MAX)) {
            match m {
                Some(m) => all.insert(*c, m.clone()),
                None => all.remove(c),
            };
        }
        Ok(all.into_iter().collect())
    }
    fn put_chunk(&mut self, ino: u64, chunk: u64, mirrors: Option<&[u64]>) -> Result<(), FsError> {
        self.need(Key::Inode(ino))?;
        self.changes
            .chunks
            .insert((ino, chunk), mirrors.map(|m| m.to_vec()));
        Ok(())
    }
    fn stripes(&self, ino: u64) -> Result<Option<FileCode>, FsError> {
        if let Some(c) = self.changes.stripes.get(&ino) {
            return Ok(c.clone());
        }
        self.need(Key::Inode(ino))?;
        self.with(ShardId::of_ino(ino), |st| st.stripes.get(&ino).cloned())
    }
    fn put_stripes(&mut self, ino: u64, code: Option<&FileCode>) -> Result<(), FsError> {
        self.need(Key::Inode(ino))?;
        self.changes.stripes.insert(ino, code.cloned());
        Ok(())
    }
    fn clients_of(&self, _node: u64) -> Result<Vec<Vec<u8>>, FsError> {
        Err(FsError::Invalid)
    }
    fn put_client(&mut self, _node: u64, _owner: &[u8], _present: bool) -> Result<(), FsError> {
        Err(FsError::Invalid)
    }
    fn txn(&self, _id: TxnId) -> Result<Option<TxnEntry>, FsError> {
        Err(FsError::Invalid)
    }
    fn put_txn(&mut self, _id: TxnId, _entry: Option<&TxnEntry>) -> Result<(), FsError> {
        Err(FsError::Invalid)
    }
    fn locked(&self, _key: Key) -> Result<Option<TxnId>, FsError> {
        Err(FsError::Invalid)
    }
}

/// The store a shard applies an ordinary command against: any object of another shard is
/// `Elsewhere` (the proposer runs the command as a transaction), any key a transaction holds
/// is `Busy`. Checked on every read and write, so a command cannot see a locked object even
/// through a key it did not name (a rename's walk up the tree).
pub(crate) struct Guarded<'a, S: ?Sized> {
    pub shard: ShardId,
    pub inner: &'a mut S,
}

impl<S: StateStore + ?Sized> Guarded<'_, S> {
    fn check(&self, key: Key) -> Result<(), FsError> {
        if key.shard() != self.shard {
            return Err(FsError::Elsewhere);
        }
        if self.inner.locked(key)?.is_some() {
            return Err(FsError::Busy);
        }
        Ok(())
    }
}

impl<S: StateStore + ?Sized> StateStore for Guarded<'_, S> {
    fn inode(&self, ino: u64) -> Result<Option<Inode>, FsError> {
        self.check(Key::Inode(ino))?;
        self.inner.inode(ino)
    }
    fn put_inode(&mut self, inode: &Inode) -> Result<(), FsError> {
        self.check(Key::Inode(inode.ino))?;
        self.inner.put_inode(inode)
    }
    fn del_inode(&mut self, ino: u64) -> Result<(), FsError> {
        self.check(Key::Inode(ino))?;
        self.inner.del_inode(ino)
    }
    fn dirent(&self, dir: u64, name: &[u8]) -> Result<Option<(u64, u64)>, FsError> {
        self.check(Key::Entries(dir))?;
        self.inner.dirent(dir, name)
    }
    fn put_dirent(&mut self, dir: u64, name: &[u8], ino: u64, cookie: u64) -> Result<(), FsError> {
        self.check(Key::Entries(dir))?;
        self.inner.put_dirent(dir, name, ino, cookie)
    }
    fn del_dirent(&mut self, dir: u64, name: &[u8]) -> Result<(), FsError> {
        self.check(Key::Entries(dir))?;
        self.inner.del_dirent(dir, name)
    }
    fn dir_has_entry(&self, dir: u64, skip: &dyn Fn(&[u8]) -> bool) -> Result<bool, FsError> {
        self.check(Key::Entries(dir))?;
        self.inner.dir_has_entry(dir, skip)
    }
    fn next_cookie(&self, dir: u64) -> Result<u64, FsError> {
        self.check(Key::Entries(dir))?;
        self.inner.next_cookie(dir)
    }
    fn set_next_cookie(&mut self, dir: u64, next: Option<u64>) -> Result<(), FsError> {
        self.check(Key::Entries(dir))?;
        self.inner.set_next_cookie(dir, next)
    }
    fn meta(&self, key: &'static str) -> Result<u64, FsError> {
        self.inner.meta(key)
    }
    fn set_meta(&mut self, key: &'static str, value: u64) -> Result<(), FsError> {
        self.inner.set_meta(key, value)
    }
    fn add_meta(&mut self, shard: ShardId, key: &'static str, delta: i128) -> Result<(), FsError> {
        if shard != self.shard {
            return Err(FsError::Elsewhere);
        }
        self.inner.add_meta(shard, key, delta)
    }
    fn alloc_ino(&mut self, shard: ShardId) -> Result<u64, FsError> {
        if shard != self.shard {
            return Err(FsError::Elsewhere);
        }
        self.inner.alloc_ino(shard)
    }
    fn set_orphan(&mut self, ino: u64, orphan: bool) -> Result<(), FsError> {
        self.check(Key::Inode(ino))?;
        self.inner.set_orphan(ino, orphan)
    }
    fn chunks(&self, ino: u64) -> Result<Vec<(u64, Vec<u64>)>, FsError> {
        self.check(Key::Inode(ino))?;
        self.inner.chunks(ino)
    }
    fn put_chunk(&mut self, ino: u64, chunk: u64, mirrors: Option<&[u64]>) -> Result<(), FsError> {
        self.check(Key::Inode(ino))?;
        self.inner.put_chunk(ino, chunk, mirrors)
    }
    fn stripes(&self, ino: u64) -> Result<Option<FileCode>, FsError> {
        self.check(Key::Inode(ino))?;
        self.inner.stripes(ino)
    }
    fn put_stripes(&mut self, ino: u64, code: Option<&FileCode>) -> Result<(), FsError> {
        self.check(Key::Inode(ino))?;
        self.inner.put_stripes(ino, code)
    }
    fn clients_of(&self, node: u64) -> Result<Vec<Vec<u8>>, FsError> {
        self.check(Key::Clients)?;
        self.inner.clients_of(node)
    }
    fn put_client(&mut self, node: u64, owner: &[u8], present: bool) -> Result<(), FsError> {
        self.check(Key::Clients)?;
        self.inner.put_client(node, owner, present)
    }
    fn txn(&self, id: TxnId) -> Result<Option<TxnEntry>, FsError> {
        self.inner.txn(id)
    }
    fn put_txn(&mut self, id: TxnId, entry: Option<&TxnEntry>) -> Result<(), FsError> {
        self.inner.put_txn(id, entry)
    }
    fn locked(&self, key: Key) -> Result<Option<TxnId>, FsError> {
        self.inner.locked(key)
    }
}
