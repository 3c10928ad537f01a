//! `StateStore`'s snapshot methods forwarded as they are, for the wrappers `apply` stacks
//! over a shard's store that leave snapshot state alone (`apply::txn::Guarded`,
//! `Preserving`): one list, so a method added to the trait is forwarded by both or neither.
//! Data images (`images`, `put_images`) are not in it: they hang off a file's inode key, which
//! `Guarded` checks, so each wrapper writes them out.

/// Expands, inside `impl StateStore for W`, to the snapshot methods calling `self.inner`'s.
macro_rules! forward_snap_state {
    () => {
        fn shard_snaps(&self) -> Result<$crate::snap::ShardSnaps, $crate::error::FsError> {
            self.inner.shard_snaps()
        }
        fn put_shard_snaps(
            &mut self,
            snaps: &$crate::snap::ShardSnaps,
        ) -> Result<(), $crate::error::FsError> {
            self.inner.put_shard_snaps(snaps)
        }
        fn pre_inode(
            &self,
            ino: u64,
        ) -> Result<$crate::snap::Versions<$crate::object::Inode>, $crate::error::FsError> {
            self.inner.pre_inode(ino)
        }
        fn put_pre_inode(
            &mut self,
            ino: u64,
            v: &$crate::snap::Versions<$crate::object::Inode>,
        ) -> Result<(), $crate::error::FsError> {
            self.inner.put_pre_inode(ino, v)
        }
        fn pre_dirent(
            &self,
            dir: u64,
            name: &[u8],
        ) -> Result<$crate::snap::Versions<(u64, u64)>, $crate::error::FsError> {
            self.inner.pre_dirent(dir, name)
        }
        fn put_pre_dirent(
            &mut self,
            dir: u64,
            name: &[u8],
            v: &$crate::snap::Versions<(u64, u64)>,
        ) -> Result<(), $crate::error::FsError> {
            self.inner.put_pre_dirent(dir, name, v)
        }
        fn pre_xattrs(
            &self,
            ino: u64,
        ) -> Result<$crate::snap::Versions<$crate::xattr::Xattrs>, $crate::error::FsError> {
            self.inner.pre_xattrs(ino)
        }
        fn put_pre_xattrs(
            &mut self,
            ino: u64,
            v: &$crate::snap::Versions<$crate::xattr::Xattrs>,
        ) -> Result<(), $crate::error::FsError> {
            self.inner.put_pre_xattrs(ino, v)
        }
        fn pre_keys_at(
            &self,
            snap: $crate::snap::SnapId,
            max: usize,
        ) -> Result<Vec<$crate::snap::PreKey>, $crate::error::FsError> {
            self.inner.pre_keys_at(snap, max)
        }
        fn snap_records(&self) -> Result<$crate::snap::Registry, $crate::error::FsError> {
            self.inner.snap_records()
        }
        fn put_snap_record(
            &mut self,
            snap: $crate::snap::SnapId,
            r: Option<&$crate::snap::SnapRecord>,
        ) -> Result<(), $crate::error::FsError> {
            self.inner.put_snap_record(snap, r)
        }
    };
}

pub(crate) use forward_snap_state;
