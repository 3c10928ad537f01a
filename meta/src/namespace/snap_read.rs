//! Reads of the namespace as it was at a snapshot (`docs/plans/snapshots.md` §1.5): the
//! `SnapView` of the plan, as methods of `Snapshot` so one read holds each shard's lock once
//! whether it looks at the live tables or at a cut, and the shards it touched (the cut's, and
//! shard 0's registry) are what `Ctx::read` passes the barriers of.
//!
//! Each read is `meta_core::snap::view` over this node's replica of the key's shard, with its
//! `ViewError`s read against shard 0's registry: a shard without the cut of a snapshot the
//! registry has decided is behind (this replica has not applied the cut yet): `Busy`, which a
//! reader retries after the barriers it passes; a snapshot the registry does not show decided,
//! or is deleting, is gone: `Stale`. A cut never falls inside a transaction, so these reads
//! never look at transaction locks.

use meta_core::snap::{self, Registry, SnapId, SnapRecord, SnapState, ViewError};
use meta_core::Xattrs;

use super::{DirEntry, FsError, Inode, ShardId, Snapshot};

impl Snapshot<'_> {
    /// Snapshot `snap`'s record in this replica of shard 0's registry.
    pub fn snap_record(&self, snap: SnapId) -> Result<Option<SnapRecord>, FsError> {
        self.with(ShardId(0), |st| st.registry.get(&snap).cloned())
    }

    /// The snapshots a directory's `.snapshot` shows: every `Ready` one rooted at `root`, by
    /// id (at most `MAX_SNAPSHOTS`).
    pub fn snaps_rooted_at(&self, root: u64) -> Result<Registry, FsError> {
        self.with(ShardId(0), |st| {
            st.registry
                .iter()
                .filter(|(_, r)| r.root == root && matches!(r.state, SnapState::Ready { .. }))
                .map(|(id, r)| (*id, r.clone()))
                .collect()
        })
    }

    /// A view's answer, or why there is none as this node's registry tells it.
    fn at<T>(&self, snap: SnapId, ino: u64, r: Result<T, ViewError>) -> Result<T, FsError> {
        match r {
            Ok(v) => Ok(v),
            Err(ViewError::Retired(_)) => Err(FsError::Stale(ino)),
            Err(ViewError::NotCut(_)) => match self.snap_record(snap)?.map(|r| r.state) {
                Some(SnapState::Decided { .. } | SnapState::Ready { .. }) => Err(FsError::Busy),
                _ => Err(FsError::Stale(ino)),
            },
        }
    }

    /// Inode `ino` as it was at `snap`; `Stale` if it did not exist then (or the snapshot is
    /// gone).
    pub fn inode_at(&self, snap: SnapId, ino: u64) -> Result<Inode, FsError> {
        let r = self.with(ShardId::of_ino(ino), |st| snap::inode_at(st, snap, ino))?;
        self.at(snap, ino, r)?.ok_or(FsError::Stale(ino))
    }

    /// Directory `dir` at `snap`: `NotDir` if it was something else.
    fn dir_at(&self, snap: SnapId, dir: u64) -> Result<(), FsError> {
        match self.inode_at(snap, dir)?.kind.is_dir() {
            true => Ok(()),
            false => Err(FsError::NotDir),
        }
    }

    /// The inode number `name` in `dir` named at `snap`, if any.
    pub fn entry_at(&self, snap: SnapId, dir: u64, name: &[u8]) -> Result<Option<u64>, FsError> {
        self.dir_at(snap, dir)?;
        let r = self.with(ShardId::of_ino(dir), |st| {
            snap::entry_at(st, snap, dir, name)
        })?;
        Ok(self.at(snap, dir, r)?.map(|(ino, _)| ino))
    }

    /// The inode `name` in `dir` named at `snap`. An entry whose inode this replica of the
    /// child's shard lacks at `snap` is `Dangling`, as for a live lookup: the reader passes
    /// the barriers again (a cut is consistent, so on current replicas it is corruption).
    pub fn lookup_at(&self, snap: SnapId, dir: u64, name: &[u8]) -> Result<Inode, FsError> {
        let ino = self.entry_at(snap, dir, name)?.ok_or(FsError::NotFound)?;
        match self.inode_at(snap, ino) {
            Err(FsError::Stale(_)) => Err(FsError::Dangling { dir, ino }),
            other => other,
        }
    }

    /// Up to `max` entries of `dir` at `snap` after cookie `after`, in cookie order, and
    /// whether the listing is complete (`snap::readdir_at`: no BAD_COOKIE check at a cut).
    pub fn readdir_at(
        &self,
        snap: SnapId,
        dir: u64,
        after: u64,
        max: usize,
    ) -> Result<(Vec<DirEntry>, bool), FsError> {
        self.dir_at(snap, dir)?;
        let r = self.with(ShardId::of_ino(dir), |st| {
            snap::readdir_at(st, snap, dir, after, max)
        })?;
        self.at(snap, dir, r)
    }

    /// The extended attributes of `ino` at `snap` (empty: none).
    pub fn xattrs_at(&self, snap: SnapId, ino: u64) -> Result<Xattrs, FsError> {
        let r = self.with(ShardId::of_ino(ino), |st| snap::xattrs_at(st, snap, ino))?;
        Ok(self.at(snap, ino, r)?.unwrap_or_default())
    }
}
