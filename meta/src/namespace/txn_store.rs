//! The store a transaction's coordinator runs `apply` over (`txn` steps 2 and 3): the locked
//! objects as this node's replicas have them, and the writes collected per shard.

use std::collections::{BTreeMap, BTreeSet};

use super::coding::FileCode;
use super::error::FsError;
use super::object::Inode;
use super::read::Held;
use super::shard::{Key, ShardId};
use super::state::{Changes, MemState, StateStore};
use super::txn::{TxnEntry, TxnId, TxnPart};
use crate::storage::shard::ShardCore;
use meta_core::reduce_index::{Referrer, Segment, SegmentId};
use meta_core::Xattrs;

/// The store a coordinator runs `apply` over: reads of locked keys from this node's replicas
/// (`NeedLock` for any other key), writes collected per shard.
pub(crate) struct TxnStore<'a> {
    held: Held<'a>,
    /// The keys this transaction holds, and each shard's reserved inode number.
    locked: &'a BTreeSet<Key>,
    reserved: &'a BTreeMap<ShardId, u64>,
    changes: Changes,
    deltas: BTreeMap<(ShardId, &'static str), i128>,
    /// Inodes that existed when first read (to order the commits).
    existed: std::cell::RefCell<BTreeSet<u64>>,
}

impl<'a> TxnStore<'a> {
    pub(crate) fn new(
        shards: &'a BTreeMap<u16, std::sync::Arc<ShardCore>>,
        locked: &'a BTreeSet<Key>,
        reserved: &'a BTreeMap<ShardId, u64>,
    ) -> Self {
        TxnStore {
            held: Held::new(shards),
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
            return Ok(v.unwrap_or(crate::namespace::object::FIRST_COOKIE));
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
    fn xattrs(&self, ino: u64) -> Result<Option<Xattrs>, FsError> {
        self.need(Key::Inode(ino))?;
        self.with(ShardId::of_ino(ino), |st| st.xattrs.get(&ino).cloned())
    }
    /// A transaction only ever removes a file's attributes with the file, and its part's
    /// commit does that (`apply::txn::commit`), so there is nothing to carry; no transaction
    /// sets any (the xattr commands name one inode, never two shards).
    fn put_xattrs(&mut self, ino: u64, x: Option<&Xattrs>) -> Result<(), FsError> {
        self.need(Key::Inode(ino))?;
        match x {
            Some(x) if !x.is_empty() => Err(FsError::Invalid),
            _ => Ok(()),
        }
    }
    fn tier(&self, ino: u64) -> Result<Option<meta_core::FileTier>, FsError> {
        self.need(Key::Inode(ino))?;
        self.with(ShardId::of_ino(ino), |st| st.tier.get(&ino).cloned())
    }
    /// The tier's commands name one inode, never two shards: no transaction changes a record
    /// (and a file's removal leaves its record, which outlives it: `meta_core::tiering`).
    fn put_tier(&mut self, ino: u64, _t: Option<&meta_core::FileTier>) -> Result<(), FsError> {
        self.need(Key::Inode(ino))?;
        Err(FsError::Invalid)
    }
    // The data-reduction index's commands each name one segment of one shard, and no other
    // command reads the index: no transaction touches it (`meta_core::reduce_index`).
    fn segment(&self, _shard: ShardId, _id: &SegmentId) -> Result<Option<Segment>, FsError> {
        Err(FsError::Invalid)
    }
    fn put_segment(
        &mut self,
        _shard: ShardId,
        _id: &SegmentId,
        _seg: Option<&Segment>,
    ) -> Result<(), FsError> {
        Err(FsError::Invalid)
    }
    fn referrers(
        &self,
        _shard: ShardId,
        _id: &SegmentId,
        _max: usize,
    ) -> Result<Vec<Referrer>, FsError> {
        Err(FsError::Invalid)
    }
    fn has_referrer(
        &self,
        _shard: ShardId,
        _id: &SegmentId,
        _r: Referrer,
    ) -> Result<bool, FsError> {
        Err(FsError::Invalid)
    }
    fn put_referrer(
        &mut self,
        _shard: ShardId,
        _id: &SegmentId,
        _r: Referrer,
        _present: bool,
    ) -> Result<(), FsError> {
        Err(FsError::Invalid)
    }
    fn reduce(&self, ino: u64) -> Result<Option<meta_core::FileReduce>, FsError> {
        self.need(Key::Inode(ino))?;
        self.with(ShardId::of_ino(ino), |st| st.reduces.get(&ino).cloned())
    }
    /// The reduce commands name one inode, never two shards, and a removal only makes the file
    /// an orphan (its `Forget`, on its own shard, retires the record): no transaction changes
    /// a record.
    fn put_reduce(&mut self, ino: u64, _r: Option<&meta_core::FileReduce>) -> Result<(), FsError> {
        self.need(Key::Inode(ino))?;
        Err(FsError::Invalid)
    }
}
