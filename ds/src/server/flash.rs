//! The data server's flash as the object-store tier manages it (issue 45, flash full). The MDS's
//! heartbeat replies say how much of it cfs's data may use and how a write that does not fit is
//! answered (`proto::cluster::FlashLimit`); each WRITE takes room for the most disk it may add
//! first (`chunkstore::room`: an upper bound that a walk of the store corrects), and one that
//! does not fit touches nothing and is answered:
//! - NFS3ERR_JUKEBOX while the MDS can still make room, uploading files to the bucket and
//!   evicting them. The client retries (Linux every 5 s, `NFS_JUKEBOX_RETRY_TIME`).
//! - NFS3ERR_NOSPC once it cannot: the store failing (nothing more becomes evictable), or no
//!   write fitting for longer than any upload may take (flash full of what cannot leave:
//!   pinned, open, or not uploadable). A client is never held forever.
//!
//! The file system's own ENOSPC is answered the same way under a tier (the flash may be all of
//! the file system), and as NOSPC without one. Shards PUT by encodes and repairs take room too
//! (`admit_background`): one that does not fit fails that job, which its next pass retries.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use chunkstore::room::{FullSince, Room, Taken, WalkMark};
use chunkstore::ChunkStore;
use proto::cluster::FlashLimit;
use proto::nfs3::Nfsstat3;

#[derive(Debug, Default)]
pub(crate) struct Flash {
    room: Room,
    /// The MDS's last word; `None` without a tier (writes not counted).
    limit: Mutex<Option<FlashLimit>>,
    /// Since when no write found room.
    full_since: FullSince,
    /// The store lost bytes other than by a write's failure (a truncation: eviction empties
    /// files so): measure it again at the next heartbeat, not after the usual age, so room made
    /// is room seen.
    shrunk: AtomicBool,
}

impl Flash {
    fn limit(&self) -> Option<FlashLimit> {
        *self.limit.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What a heartbeat reply said.
    pub(crate) fn set(&self, limit: Option<FlashLimit>) {
        self.room.set_capacity(limit.map_or(0, |l| l.capacity));
        *self.limit.lock().unwrap_or_else(|p| p.into_inner()) = limit;
    }

    pub(crate) fn walk_starts(&self) -> WalkMark {
        self.room.walk_starts()
    }

    /// The walk begun at `mark` found the store using `used` bytes.
    pub(crate) fn measured(&self, used: u64, mark: WalkMark) {
        self.room.measured(used, mark);
    }

    /// Room for a WRITE of `len` bytes at `offset` of object `id`, held until the returned
    /// value is dropped (once the write has ended); else the answer to it. A chunk the object
    /// shares with a snapshot's image is copied by its first write, and charged for it.
    pub(crate) fn admit(
        &self,
        store: &ChunkStore,
        id: u64,
        offset: u64,
        len: u64,
    ) -> Result<Taken<'_>, Nfsstat3> {
        match self
            .room
            .take(store.most_added_by_write_to(id, offset, len))
        {
            Some(t) => {
                self.full_since.fit();
                Ok(t)
            }
            None => Err(self.full()),
        }
    }

    /// Room for bytes this data server stores for the cluster's own work (a shard an encode or
    /// a repair sends), if it fits. A refusal is no client's wait, so it starts no NOSPC clock.
    pub(crate) fn admit_background(
        &self,
        store: &ChunkStore,
        offset: u64,
        len: u64,
    ) -> Option<Taken<'_>> {
        self.room.take(store.most_added_by_write(offset, len))
    }

    /// The answer to a write the file system itself had no room for.
    pub(crate) fn fs_full(&self) -> Nfsstat3 {
        match self.limit() {
            Some(_) => self.full(),
            None => Nfsstat3::Nospc,
        }
    }

    fn full(&self) -> Nfsstat3 {
        let coming = self
            .limit()
            .map(|l| u64::from(l.nospc_after_seconds))
            .filter(|after| *after > 0);
        if self.full_since.refuse(coming) {
            tracing::warn!(?coming, "flash full and no room coming: NOSPC");
            Nfsstat3::Nospc
        } else {
            tracing::debug!("flash full: JUKEBOX while the tier makes room");
            Nfsstat3::Jukebox
        }
    }

    /// The store lost bytes: measure it again soon.
    pub(crate) fn shrank(&self) {
        self.shrunk.store(true, Ordering::Relaxed);
    }

    /// Whether the store lost bytes since the last call.
    pub(crate) fn take_shrunk(&self) -> bool {
        self.shrunk.swap(false, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_past_the_limit_waits_until_no_room_is_coming() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ChunkStore::open(dir.path()).expect("store");
        let f = Flash::default();
        // No tier: everything fits, and the file system's ENOSPC is NOSPC.
        assert!(f.admit(&store, 1, 0, 1 << 30).is_ok());
        assert_eq!(f.fs_full(), Nfsstat3::Nospc);
        // 1 MiB of flash, room coming for 100 s.
        f.set(Some(FlashLimit {
            capacity: 1 << 20,
            nospc_after_seconds: 100,
        }));
        f.measured(0, f.walk_starts());
        let held = f.admit(&store, 1, 0, 512 << 10).expect("fits");
        assert_eq!(
            f.admit(&store, 1, 0, 512 << 10).err(),
            Some(Nfsstat3::Jukebox)
        );
        assert_eq!(f.fs_full(), Nfsstat3::Jukebox);
        // The store failing: no room is coming.
        f.set(Some(FlashLimit {
            capacity: 1 << 20,
            nospc_after_seconds: 0,
        }));
        assert_eq!(
            f.admit(&store, 1, 0, 512 << 10).err(),
            Some(Nfsstat3::Nospc)
        );
        // The store back: waits again, however long the outage was.
        f.set(Some(FlashLimit {
            capacity: 1 << 20,
            nospc_after_seconds: 100,
        }));
        assert_eq!(
            f.admit(&store, 1, 0, 512 << 10).err(),
            Some(Nfsstat3::Jukebox)
        );
        // Full for longer than room may take to come.
        f.full_since.started_secs_ago(101);
        assert_eq!(
            f.admit(&store, 1, 0, 512 << 10).err(),
            Some(Nfsstat3::Nospc)
        );
        // Room made (a walk sees the store empty again): writes fit, the clock restarts.
        drop(held);
        f.measured(0, f.walk_starts());
        assert!(f.admit(&store, 1, 0, 512 << 10).is_ok());
        assert!(!f.full_since.running());
    }

    #[test]
    fn a_shard_that_does_not_fit_is_refused_and_starts_no_clients_wait() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ChunkStore::open(dir.path()).expect("store");
        let f = Flash::default();
        assert!(f.admit_background(&store, 0, 1 << 30).is_some(), "no tier");
        f.set(Some(FlashLimit {
            capacity: 1 << 20,
            nospc_after_seconds: 100,
        }));
        f.measured(0, f.walk_starts());
        let held = f.admit_background(&store, 0, 512 << 10).expect("fits");
        assert!(f.admit_background(&store, 0, 512 << 10).is_none());
        assert!(!f.full_since.running());
        // A client's write counts the shard's room too.
        assert_eq!(
            f.admit(&store, 1, 0, 512 << 10).err(),
            Some(Nfsstat3::Jukebox)
        );
        drop(held);
        f.measured(0, f.walk_starts());
        assert!(f.admit_background(&store, 0, 512 << 10).is_some());
    }
}
