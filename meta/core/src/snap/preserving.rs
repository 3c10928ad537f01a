//! The copy-on-write layer `apply_on_shard` puts under every command that may change an
//! inode, an entry or extended attributes: before the first change of such a key after the
//! shard's latest live cut, it keeps the key's value from before the change as the key's
//! version at that cut. Over `Staged` (as the state machine applies every command), "before
//! the change" is before the command, or the command's own earlier write, which has already
//! kept the version; and a failed command's versions go with the rest of its changes.
//!
//! Nothing else is versioned: cookies, orphans, counters, placement, codes, tier and reduce
//! records, segments, client records and transactions are the live system's to keep.

use crate::coding::FileCode;
use crate::error::FsError;
use crate::object::Inode;
use crate::reduce_index::{Referrer, Segment, SegmentId};
use crate::reducing::FileReduce;
use crate::shard::{Key, ShardId};
use crate::state::StateStore;
use crate::tiering::FileTier;
use crate::txn::{TxnEntry, TxnId};
use crate::xattr::Xattrs;

use super::{Cut, Pre, ShardSnaps, SnapId, Versions};

/// A store that keeps pre-images for the cut `latest` (none: it only forwards).
pub struct Preserving<'a, S: ?Sized> {
    pub inner: &'a mut S,
    pub latest: Option<(SnapId, Cut)>,
}

impl<'a, S: StateStore + ?Sized> Preserving<'a, S> {
    /// Preserves for `snaps`' latest live cut.
    pub fn new(inner: &'a mut S, snaps: &ShardSnaps) -> Self {
        let latest = snaps.latest().map(|(s, c)| (s, *c));
        Preserving { inner, latest }
    }

    /// The cut a change of `ino` (or of its entries) is preserved for, if it is one.
    fn cut_for(&self, ino: u64) -> Option<SnapId> {
        self.latest
            .filter(|(_, c)| c.born_before(ino))
            .map(|(s, _)| s)
    }

    fn keep_inode(&mut self, ino: u64) -> Result<(), FsError> {
        let Some(snap) = self.cut_for(ino) else {
            return Ok(());
        };
        let v = self.inner.pre_inode(ino)?;
        if let Some(v) = with_pre_image(v, snap, || self.inner.inode(ino))? {
            self.inner.put_pre_inode(ino, &v)?;
        }
        Ok(())
    }

    fn keep_dirent(&mut self, dir: u64, name: &[u8]) -> Result<(), FsError> {
        let Some(snap) = self.cut_for(dir) else {
            return Ok(());
        };
        let v = self.inner.pre_dirent(dir, name)?;
        if let Some(v) = with_pre_image(v, snap, || self.inner.dirent(dir, name))? {
            self.inner.put_pre_dirent(dir, name, &v)?;
        }
        Ok(())
    }

    fn keep_xattrs(&mut self, ino: u64) -> Result<(), FsError> {
        let Some(snap) = self.cut_for(ino) else {
            return Ok(());
        };
        let v = self.inner.pre_xattrs(ino)?;
        if let Some(v) = with_pre_image(v, snap, || self.inner.xattrs(ino))? {
            self.inner.put_pre_xattrs(ino, &v)?;
        }
        Ok(())
    }
}

/// `v` with the value `now` gives as its version at `snap`, if the key needs one: it has no
/// version at `snap` or above. One above (at a retired cut whose versions have not merged
/// yet) already holds the value at `snap`, since a change between the two cuts would have
/// left a version below it; replacing it would show `snap` a later value.
fn with_pre_image<T>(
    mut v: Versions<T>,
    snap: SnapId,
    now: impl FnOnce() -> Result<Option<T>, FsError>,
) -> Result<Option<Versions<T>>, FsError> {
    if v.range(snap..).next().is_some() {
        return Ok(None);
    }
    v.insert(snap, Pre::of(now()?));
    Ok(Some(v))
}

impl<S: StateStore + ?Sized> StateStore for Preserving<'_, S> {
    fn inode(&self, ino: u64) -> Result<Option<Inode>, FsError> {
        self.inner.inode(ino)
    }
    fn put_inode(&mut self, inode: &Inode) -> Result<(), FsError> {
        self.keep_inode(inode.ino)?;
        self.inner.put_inode(inode)
    }
    fn del_inode(&mut self, ino: u64) -> Result<(), FsError> {
        self.keep_inode(ino)?;
        self.inner.del_inode(ino)
    }
    fn dirent(&self, dir: u64, name: &[u8]) -> Result<Option<(u64, u64)>, FsError> {
        self.inner.dirent(dir, name)
    }
    fn put_dirent(&mut self, dir: u64, name: &[u8], ino: u64, cookie: u64) -> Result<(), FsError> {
        self.keep_dirent(dir, name)?;
        self.inner.put_dirent(dir, name, ino, cookie)
    }
    fn del_dirent(&mut self, dir: u64, name: &[u8]) -> Result<(), FsError> {
        self.keep_dirent(dir, name)?;
        self.inner.del_dirent(dir, name)
    }
    fn dir_has_entry(&self, dir: u64, skip: &dyn Fn(&[u8]) -> bool) -> Result<bool, FsError> {
        self.inner.dir_has_entry(dir, skip)
    }
    fn next_cookie(&self, dir: u64) -> Result<u64, FsError> {
        self.inner.next_cookie(dir)
    }
    fn set_next_cookie(&mut self, dir: u64, next: Option<u64>) -> Result<(), FsError> {
        self.inner.set_next_cookie(dir, next)
    }
    fn meta(&self, key: &'static str) -> Result<u64, FsError> {
        self.inner.meta(key)
    }
    fn set_meta(&mut self, key: &'static str, value: u64) -> Result<(), FsError> {
        self.inner.set_meta(key, value)
    }
    fn add_meta(&mut self, shard: ShardId, key: &'static str, delta: i128) -> Result<(), FsError> {
        self.inner.add_meta(shard, key, delta)
    }
    fn alloc_ino(&mut self, shard: ShardId) -> Result<u64, FsError> {
        self.inner.alloc_ino(shard)
    }
    fn set_orphan(&mut self, ino: u64, orphan: bool) -> Result<(), FsError> {
        self.inner.set_orphan(ino, orphan)
    }
    fn chunks(&self, ino: u64) -> Result<Vec<(u64, Vec<u64>)>, FsError> {
        self.inner.chunks(ino)
    }
    fn put_chunk(&mut self, ino: u64, chunk: u64, mirrors: Option<&[u64]>) -> Result<(), FsError> {
        self.inner.put_chunk(ino, chunk, mirrors)
    }
    fn stripes(&self, ino: u64) -> Result<Option<FileCode>, FsError> {
        self.inner.stripes(ino)
    }
    fn put_stripes(&mut self, ino: u64, code: Option<&FileCode>) -> Result<(), FsError> {
        self.inner.put_stripes(ino, code)
    }
    fn clients_of(&self, node: u64) -> Result<Vec<Vec<u8>>, FsError> {
        self.inner.clients_of(node)
    }
    fn put_client(&mut self, node: u64, owner: &[u8], present: bool) -> Result<(), FsError> {
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
        self.inner.xattrs(ino)
    }
    fn put_xattrs(&mut self, ino: u64, x: Option<&Xattrs>) -> Result<(), FsError> {
        self.keep_xattrs(ino)?;
        self.inner.put_xattrs(ino, x)
    }
    fn tier(&self, ino: u64) -> Result<Option<FileTier>, FsError> {
        self.inner.tier(ino)
    }
    fn put_tier(&mut self, ino: u64, t: Option<&FileTier>) -> Result<(), FsError> {
        self.inner.put_tier(ino, t)
    }
    fn segment(&self, shard: ShardId, id: &SegmentId) -> Result<Option<Segment>, FsError> {
        self.inner.segment(shard, id)
    }
    fn put_segment(
        &mut self,
        shard: ShardId,
        id: &SegmentId,
        seg: Option<&Segment>,
    ) -> Result<(), FsError> {
        self.inner.put_segment(shard, id, seg)
    }
    fn referrers(
        &self,
        shard: ShardId,
        id: &SegmentId,
        max: usize,
    ) -> Result<Vec<Referrer>, FsError> {
        self.inner.referrers(shard, id, max)
    }
    fn has_referrer(&self, shard: ShardId, id: &SegmentId, r: Referrer) -> Result<bool, FsError> {
        self.inner.has_referrer(shard, id, r)
    }
    fn put_referrer(
        &mut self,
        shard: ShardId,
        id: &SegmentId,
        r: Referrer,
        present: bool,
    ) -> Result<(), FsError> {
        self.inner.put_referrer(shard, id, r, present)
    }
    fn reduce(&self, ino: u64) -> Result<Option<FileReduce>, FsError> {
        self.inner.reduce(ino)
    }
    fn put_reduce(&mut self, ino: u64, r: Option<&FileReduce>) -> Result<(), FsError> {
        self.inner.put_reduce(ino, r)
    }
    crate::snap::forward_snap_state!();
    // Data images change no inode, entry or xattrs: nothing to preserve (and `Guarded`, which
    // checks their key, is why they are not in `forward_snap_state`).
    fn images(&self, ino: u64) -> Result<crate::snap::Images, FsError> {
        self.inner.images(ino)
    }
    fn put_images(&mut self, ino: u64, v: &crate::snap::Images) -> Result<(), FsError> {
        self.inner.put_images(ino, v)
    }
}
