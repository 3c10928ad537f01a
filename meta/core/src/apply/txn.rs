//! The steps of a cross-shard transaction as each shard applies them (`TxnLock`, `TxnDecide`,
//! `TxnResolve`, `TxnCommit`, `TxnAbort`, `TxnForget`), and the guard that keeps every other
//! command off locked keys (`Guarded`). The protocol is in `crate::txn`'s module
//! comment; the store the coordinator computes a transaction's writes over is its own
//! (`namespace::txn_store`).

use std::collections::BTreeSet;

use crate::coding::FileCode;
use crate::error::FsError;
use crate::object::{Effect, Inode, Outcome, Time};
use crate::reduce_index::{Referrer, Segment, SegmentId};
use crate::shard::{Key, ShardId};
use crate::state::StateStore;
use crate::txn::{older_than, Decision, Prepared, TxnEntry, TxnId, TxnPart, MAX_AGE};
use crate::xattr::Xattrs;

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
                // Its extended attributes go with it (the part does not carry them: no
                // transaction changes them otherwise).
                s.put_xattrs(*ino, None)?;
                out.effects.push(Effect::Freed(*ino));
            }
        }
    }
    for (dir, next) in &part.cookies {
        s.set_next_cookie(*dir, *next)?;
    }
    for (key, delta) in &part.meta {
        let key = crate::state::meta::ALL
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

/// The store a shard applies an ordinary command against: any object of another shard is
/// `Elsewhere` (the proposer runs the command as a transaction), any key a transaction holds
/// is `Busy`. Checked on every read and write, so a command cannot see a locked object even
/// through a key it did not name (a rename's walk up the tree).
pub struct Guarded<'a, S: ?Sized> {
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
    fn xattrs(&self, ino: u64) -> Result<Option<Xattrs>, FsError> {
        self.check(Key::Inode(ino))?;
        self.inner.xattrs(ino)
    }
    fn put_xattrs(&mut self, ino: u64, x: Option<&Xattrs>) -> Result<(), FsError> {
        self.check(Key::Inode(ino))?;
        self.inner.put_xattrs(ino, x)
    }
    fn tier(&self, ino: u64) -> Result<Option<crate::tiering::FileTier>, FsError> {
        self.check(Key::Inode(ino))?;
        self.inner.tier(ino)
    }
    fn put_tier(&mut self, ino: u64, t: Option<&crate::tiering::FileTier>) -> Result<(), FsError> {
        self.check(Key::Inode(ino))?;
        self.inner.put_tier(ino, t)
    }
    fn segment(&self, shard: ShardId, id: &SegmentId) -> Result<Option<Segment>, FsError> {
        self.check(Key::Segments(shard))?;
        self.inner.segment(shard, id)
    }
    fn put_segment(
        &mut self,
        shard: ShardId,
        id: &SegmentId,
        seg: Option<&Segment>,
    ) -> Result<(), FsError> {
        self.check(Key::Segments(shard))?;
        self.inner.put_segment(shard, id, seg)
    }
    fn referrers(
        &self,
        shard: ShardId,
        id: &SegmentId,
        max: usize,
    ) -> Result<Vec<Referrer>, FsError> {
        self.check(Key::Segments(shard))?;
        self.inner.referrers(shard, id, max)
    }
    fn has_referrer(&self, shard: ShardId, id: &SegmentId, r: Referrer) -> Result<bool, FsError> {
        self.check(Key::Segments(shard))?;
        self.inner.has_referrer(shard, id, r)
    }
    fn put_referrer(
        &mut self,
        shard: ShardId,
        id: &SegmentId,
        r: Referrer,
        present: bool,
    ) -> Result<(), FsError> {
        self.check(Key::Segments(shard))?;
        self.inner.put_referrer(shard, id, r, present)
    }
    fn reduce(&self, ino: u64) -> Result<Option<crate::reducing::FileReduce>, FsError> {
        self.check(Key::Inode(ino))?;
        self.inner.reduce(ino)
    }
    fn put_reduce(
        &mut self,
        ino: u64,
        r: Option<&crate::reducing::FileReduce>,
    ) -> Result<(), FsError> {
        self.check(Key::Inode(ino))?;
        self.inner.put_reduce(ino, r)
    }
    // Snapshot state is the shard's own, reached through keys already checked on their way
    // here (`snap::Preserving` runs under this guard).
    crate::snap::forward_snap_state!();
    // A file's data images are its own: they hang off its inode's key.
    fn images(&self, ino: u64) -> Result<crate::snap::Images, FsError> {
        self.check(Key::Inode(ino))?;
        self.inner.images(ino)
    }
    fn put_images(&mut self, ino: u64, v: &crate::snap::Images) -> Result<(), FsError> {
        self.check(Key::Inode(ino))?;
        self.inner.put_images(ino, v)
    }
}
