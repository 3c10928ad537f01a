//! Where file bytes live: in the MDS's own chunk store (the single-node default), or on data
//! servers (a cluster), where the MDS's own reads and writes go through `cluster::remote`; and,
//! with an object-store tier, in the bucket alone for a file evicted from flash (`evicted`):
//! reads of it are served from there, and a change to its bytes waits (NFS4ERR_DELAY) until
//! it is back on flash.
use std::sync::Arc;

use chunkstore::{SeekWhat, Segment};

use meta::namespace::{Command, Namespace};
use meta_core::{Pin, TierCopy};

use crate::dataservers::snap_data::{self, Changing, Store};
use crate::dataservers::Cluster;
use crate::error::{NfsError, NfsResult};
use crate::evicted::{DataHold, Holds};
use crate::space::Space;
use crate::tier_set::Tier;

pub(crate) mod snap_usage;

pub enum DataPath {
    Local(chunkstore::ChunkStore),
    Cluster(Arc<Cluster>),
}

/// The server's file bytes: where they live, the namespace whose files they are (a data
/// server is told a file's layout from it), and the space kept for metadata, which writes
/// stop short of.
pub struct Data {
    pub path: DataPath,
    ns: Namespace,
    space: Arc<Space>,
    tier: Option<Arc<Tier>>,
    pub(crate) holds: Arc<Holds>,
    /// The last walk of the snapshots' bytes (`snap_usage`), shown for a minute.
    snap_usage: tokio::sync::Mutex<Option<snap_usage::SnapUsage>>,
}

impl Data {
    pub fn new(path: DataPath, ns: Namespace, space: Arc<Space>, tier: Option<Arc<Tier>>) -> Data {
        Data {
            path,
            ns,
            space,
            tier,
            holds: Arc::default(),
            snap_usage: tokio::sync::Mutex::default(),
        }
    }

    /// Holds `ino`'s bytes on flash for a request that changes them and then records the
    /// change (`evicted`): the evictor waits. Nothing without a tier.
    pub async fn hold(&self, ino: u64) -> Option<DataHold> {
        match self.tier {
            Some(_) => Some(self.holds.hold(ino).await),
            None => None,
        }
    }

    /// The copy in the bucket that holds `ino`'s bytes if they are not on flash; asks for the
    /// file back (once) when they are not, unless it is only read and pinned to the bucket.
    pub fn evicted(&self, ino: u64) -> NfsResult<Option<TierCopy>> {
        self.evicted_for(ino, true)
    }

    pub(crate) fn evicted_for(&self, ino: u64, to_change: bool) -> NfsResult<Option<TierCopy>> {
        if self.tier.is_none() {
            return Ok(None);
        }
        let Some(t) = self.ns.tier(ino)? else {
            return Ok(None);
        };
        if !t.evicted {
            return Ok(None);
        }
        if to_change {
            if let Some(tier) = &self.tier {
                tier.writer_waits(ino);
            }
        }
        let stays = !to_change && Pin::of(self.ns.xattrs(ino).ok().as_ref()) == Pin::S3;
        if !t.wanted && !stays {
            let ns = self.ns.clone();
            tokio::spawn(async move {
                if let Err(e) = ns.execute(Command::TierWant { ino }).await {
                    tracing::debug!(ino, "cannot ask for an evicted file back: {e}");
                }
            });
        }
        Ok(t.copy)
    }

    /// The gate before a change to `ino`'s bytes: it waits while they are not on flash, and
    /// makes the image a snapshot needs of them first (`dataservers::snap_data`). Every call
    /// that changes bytes takes the `Changing` it returns.
    pub(crate) async fn before_change(&self, ino: u64) -> NfsResult<Changing> {
        if self.evicted(ino)?.is_some() {
            return Err(NfsError::Delay);
        }
        match &self.path {
            DataPath::Local(s) => snap_data::before_change(&self.ns, &Store::Local(s), ino).await,
            DataPath::Cluster(c) => c.before_change(&self.ns, ino).await,
        }
    }

    /// `[offset, offset + len)` of a mirrored image's object (`ImageForm::Mirrored`) of
    /// `size` bytes: on `mirrors`, or, with none, in the single server's own store (the gate's
    /// `SnapKeepLocal`), read as a file of its own.
    pub(crate) async fn read_image(
        &self,
        object: u64,
        mirrors: &[u64],
        offset: u64,
        len: u64,
        size: u64,
    ) -> NfsResult<(Vec<u8>, bool)> {
        match &self.path {
            DataPath::Cluster(c) => c.read_object(object, mirrors, offset, len, size).await,
            DataPath::Local(_) if mirrors.is_empty() => {
                self.read_flash(object, offset, len, size).await
            }
            DataPath::Local(_) => Err(NfsError::Io),
        }
    }

    /// Restore's data step: new file `new` gets the bytes `old` had at `snap` by sharing
    /// them, where their form allows (`snap_data::share`).
    pub(crate) async fn share_snapshot_bytes(
        &self,
        snap: meta_core::snap::SnapId,
        old: u64,
        new: u64,
    ) -> NfsResult<snap_data::Shared> {
        match &self.path {
            DataPath::Local(s) => {
                snap_data::share(&self.ns, &Store::Local(s), snap, old, new).await
            }
            DataPath::Cluster(c) => {
                snap_data::share(&self.ns, &Store::Cluster(c), snap, old, new).await
            }
        }
    }

    /// Before the reaper deletes orphan `ino`'s bytes: whether a snapshot keeps them
    /// (`snap_data::before_reaping`).
    pub(crate) async fn before_reaping(&self, ino: u64) -> NfsResult<snap_data::Reaping> {
        let local = matches!(self.path, DataPath::Local(_));
        snap_data::before_reaping(&self.ns, local, ino).await
    }

    /// A source's bytes are read in place by a copy (local `clone_range`): they must be on
    /// flash, and do not change.
    fn on_flash(&self, ino: u64) -> NfsResult<()> {
        match self.evicted(ino)? {
            Some(_) => Err(NfsError::Delay),
            None => Ok(()),
        }
    }

    /// The snapshot passes: delete images no snapshot reads any more (`sweep`: what else to
    /// delete with a mirrored one's object, `snap_data::reclaim`); in the single node's own
    /// store, also finish images a gate left `linking` (a crash between its link and
    /// `SnapKept`), which on data servers the cluster's loops do (`dataservers::loops`, with
    /// the claims).
    pub(crate) async fn snapshot_passes<F, Fut>(&self, sweep: &F)
    where
        F: Fn(u64) -> Fut,
        Fut: std::future::Future<Output = NfsResult<()>>,
    {
        match &self.path {
            DataPath::Local(s) => {
                snap_data::relink_local(&self.ns, s).await;
                snap_data::reclaim(&self.ns, &Store::Local(s), sweep).await;
            }
            DataPath::Cluster(c) => snap_data::reclaim(&self.ns, &Store::Cluster(c), sweep).await,
        }
    }

    /// Whether this node writes its flash itself (its own store), so the tier counts each
    /// write against it (`tier_set::FlashState::admit`); data servers refuse what does not
    /// fit themselves.
    pub(crate) fn counts_writes(&self) -> bool {
        matches!(self.path, DataPath::Local(_))
    }

    /// Room for a write of `len` bytes on a flash the tier manages: NFS4ERR_DELAY while the
    /// uploader and evictor can make some, NFS4ERR_NOSPC when they cannot (`FlashState`).
    /// The room is held until the returned value is dropped, once the write has ended.
    fn room_for(
        &self,
        ino: u64,
        offset: u64,
        len: u64,
    ) -> NfsResult<Option<chunkstore::room::Taken<'_>>> {
        match &self.tier {
            Some(t) => {
                // A chunk shared with a snapshot's image is copied by its first change.
                let charge = match &self.path {
                    DataPath::Local(s) => s.most_added_by_write_to(ino, offset, len),
                    DataPath::Cluster(_) => self.flash_charge(offset, len),
                };
                t.flash.admit(charge, &t.settings).map(Some)
            }
            None => Ok(None),
        }
    }

    /// The most disk a write of `len` bytes at `offset` may add to this node's flash, which is
    /// what the tier counts (`tier_set::FlashState`); on data servers not counted here.
    pub(crate) fn flash_charge(&self, offset: u64, len: u64) -> u64 {
        match &self.path {
            DataPath::Local(s) => s.most_added_by_write(offset, len),
            DataPath::Cluster(_) => len,
        }
    }

    /// A write's NOSPC from this node's own file system: with a tier, DELAY while room can
    /// still be made by eviction. (A data server's NOSPC stays one: placement moves new files
    /// off a full data server, `dataservers::placement`.)
    fn full(&self, e: NfsError) -> NfsError {
        match (&self.tier, e) {
            (Some(t), NfsError::NoSpc) if self.counts_writes() => {
                t.evict_now.notify_one();
                t.flash.full(&t.settings)
            }
            _ => e,
        }
    }

    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        match &self.path {
            DataPath::Cluster(c) => Some(c),
            DataPath::Local(_) => None,
        }
    }

    pub async fn read_data(
        &self,
        ino: u64,
        offset: u64,
        len: u64,
        size: u64,
    ) -> NfsResult<(Vec<u8>, bool)> {
        let _hold = self.hold(ino).await;
        if let (Some(t), Some(c)) = (&self.tier, self.evicted_for(ino, false)?) {
            // A copy of no pieces is a reduced file's segments: read through the recipe,
            // which fetches from the bucket what is no longer on flash.
            if !c.pieces.is_empty() {
                return crate::evicted::read(t, ino, &c, offset, len, size).await;
            }
        }
        self.read_flash(ino, offset, len, size).await
    }

    async fn read_flash(
        &self,
        ino: u64,
        offset: u64,
        len: u64,
        size: u64,
    ) -> NfsResult<(Vec<u8>, bool)> {
        match &self.path {
            DataPath::Local(s) => {
                // The reply hands the buffer back to the pool once it is sent.
                let want = len.min(size.saturating_sub(offset)) as usize;
                let buf = proto::bufpool::take(want);
                Ok(s.read_into(ino, offset, len, size, buf).await?)
            }
            DataPath::Cluster(c) => c.read(&self.ns, ino, offset, len, size).await,
        }
    }

    /// Writes a payload the caller is done with: the local store takes it as is.
    pub async fn write_data_owned(
        &self,
        ino: u64,
        offset: u64,
        data: Vec<u8>,
        stable: bool,
    ) -> NfsResult<()> {
        let leave = self.before_change(ino).await?;
        let _room = self.room_for(ino, offset, data.len() as u64)?;
        self.write_flash(ino, offset, data, stable, leave)
            .await
            .map_err(|e| self.full(e))
    }

    /// Writes to flash past the gate (`leave`); the restorer's way back writes what the
    /// tier's record says with `Changing::preserving`.
    pub(crate) async fn write_flash(
        &self,
        ino: u64,
        offset: u64,
        data: Vec<u8>,
        stable: bool,
        leave: Changing,
    ) -> NfsResult<()> {
        leave.check(ino)?;
        match &self.path {
            DataPath::Local(s) => {
                self.space.admit_data(data.len() as u64)?;
                // Back to the buffer pool once written (it came from there: see `bufpool`).
                let data = proto::bufpool::shared(data);
                Ok(s.write_owned(ino, offset, data, stable).await?)
            }
            DataPath::Cluster(c) => c.write(&self.ns, ino, offset, &data, stable, leave).await,
        }
    }

    pub async fn commit_data(&self, ino: u64) -> NfsResult<()> {
        match &self.path {
            DataPath::Local(s) => Ok(s.commit(ino).await?),
            DataPath::Cluster(c) => c.commit(&self.ns, ino).await,
        }
    }

    /// Sets the data's size (on data servers this fences the file: `Cluster::truncate`).
    pub async fn truncate_data(&self, ino: u64, size: u64) -> NfsResult<()> {
        let leave = self.before_change(ino).await?;
        match &self.path {
            DataPath::Local(s) => Ok(s.truncate(ino, size).await?),
            DataPath::Cluster(c) => c.truncate(&self.ns, ino, size, leave).await,
        }
    }

    /// Flash's usage as eviction counts it: (where, bytes used, bytes it may use), where is 0
    /// for this node's own store and a data server's id on a cluster. With `capacity` set, the
    /// data's own bytes against it (on each data server); else the file system under the data,
    /// whatever fills it.
    pub async fn flash_usage(
        &self,
        dir: &std::path::Path,
        capacity: Option<u64>,
    ) -> Vec<(u64, u64, u64)> {
        let s = match &self.path {
            DataPath::Local(s) => s,
            DataPath::Cluster(c) => return c.flash_usage(capacity),
        };
        let usage = match capacity {
            Some(cap) => s.usage().await.ok().map(|u| (u, cap)),
            None => crate::space::statvfs(dir)
                .ok()
                .map(|(avail, total)| (total.saturating_sub(avail), total)),
        };
        usage.map(|(u, c)| (0, u, c)).into_iter().collect()
    }

    /// Where `ino`'s `size` bytes sit on flash, as `flash_usage` names the places, with how
    /// many bytes each holds.
    pub(crate) fn flash_holders(&self, ino: u64, size: u64) -> NfsResult<Vec<(u64, u64)>> {
        match &self.path {
            DataPath::Local(_) => Ok(vec![(0, size)]),
            DataPath::Cluster(c) => c.holders_of(&self.ns, ino, size),
        }
    }

    /// Drops `ino`'s bytes from flash (eviction: the bucket holds them, and `TierEvict` is
    /// recorded, so nothing reads them here again).
    pub(crate) async fn drop_flash(&self, ino: u64) -> NfsResult<()> {
        match &self.path {
            DataPath::Local(s) => match s.remove_many(vec![ino]).await {
                Ok(mut r) => r.pop().map_or(Ok(()), |(_, r)| r.map_err(Into::into)),
                Err(e) => Err(e.into()),
            },
            DataPath::Cluster(c) => c.drop_evicted(&self.ns, ino).await,
        }
    }

    /// Drops the data of unlinked files; the local store does them all in one blocking call.
    pub async fn remove_data_many(&self, inos: Vec<u64>) -> Vec<(u64, NfsResult<()>)> {
        match &self.path {
            DataPath::Local(s) => match s.remove_many(inos.clone()).await {
                Ok(r) => r
                    .into_iter()
                    .map(|(i, r)| (i, r.map_err(Into::into)))
                    .collect(),
                Err(e) => {
                    let e: crate::error::NfsError = e.into();
                    inos.into_iter().map(|i| (i, Err(e))).collect()
                }
            },
            DataPath::Cluster(c) => {
                let mut out = Vec::with_capacity(inos.len());
                for ino in inos {
                    out.push((ino, c.remove(&self.ns, ino).await));
                }
                out
            }
        }
    }

    /// SEEK. On data servers every byte below the size counts as data: finding holes there
    /// would take a round trip per chunk, and reporting data is always correct.
    pub async fn seek_data(
        &self,
        ino: u64,
        offset: u64,
        what: SeekWhat,
        size: u64,
    ) -> NfsResult<Option<u64>> {
        let _hold = self.hold(ino).await;
        let evicted = self.evicted_for(ino, false)?.is_some();
        match &self.path {
            DataPath::Local(s) if !evicted => Ok(s.seek(ino, offset, what, size).await?),
            // Evicted: every byte below the size counts as data, as on data servers.
            _ => Ok(match what {
                SeekWhat::Data if offset < size => Some(offset),
                SeekWhat::Data => None,
                SeekWhat::Hole => None,
            }),
        }
    }

    /// READ_PLUS contents (on data servers: one data segment, see `seek_data`).
    pub async fn data_segments(
        &self,
        ino: u64,
        offset: u64,
        len: u64,
        size: u64,
    ) -> NfsResult<(Vec<Segment>, bool)> {
        // Held before the record is read: the evictor cannot take the bytes in between.
        let _hold = self.hold(ino).await;
        let evicted = self.evicted_for(ino, false)?.is_some();
        match &self.path {
            DataPath::Local(s) if !evicted => Ok(s.segments(ino, offset, len, size).await?),
            _ => {
                let (data, eof) = self.read_data(ino, offset, len, size).await?;
                let segs = if data.is_empty() {
                    Vec::new()
                } else {
                    vec![Segment::Data { offset, data }]
                };
                Ok((segs, eof))
            }
        }
    }

    /// ALLOCATE. On data servers only the size grows (the caller records it): the bytes read
    /// as zeros, as on a single node, but no space is reserved, since NFSv3 has no way to ask.
    pub async fn allocate_data(&self, ino: u64, offset: u64, len: u64) -> NfsResult<()> {
        // Through the gate although only the size grows on data servers: on a single node
        // the store allocates in the file's chunks, which an image may share.
        let _leave = self.before_change(ino).await?;
        match &self.path {
            DataPath::Local(s) => {
                let _room = self.room_for(ino, offset, len)?;
                self.space.admit_data(len).map_err(|e| self.full(e))?;
                Ok(s.allocate(ino, offset, len).await?)
            }
            DataPath::Cluster(_) => Ok(()),
        }
    }

    /// DEALLOCATE of a file of `size` bytes (on data servers: zeros written, `cluster::ranges`).
    pub async fn deallocate_data(
        &self,
        ino: u64,
        offset: u64,
        len: u64,
        size: u64,
    ) -> NfsResult<()> {
        let leave = self.before_change(ino).await?;
        match &self.path {
            DataPath::Local(s) => Ok(s.deallocate(ino, offset, len).await?),
            DataPath::Cluster(c) => c.zero_range(&self.ns, ino, offset, len, size, leave).await,
        }
    }

    /// COPY and CLONE inside the server, from `src` of `src_size` bytes (on data servers: read
    /// and written again by the MDS, `cluster::ranges`).
    pub async fn clone_data(
        &self,
        src: u64,
        src_off: u64,
        src_size: u64,
        dst: u64,
        dst_off: u64,
        count: u64,
    ) -> NfsResult<()> {
        // Both ends on flash: the source's bytes are copied by the store, not read.
        let leave = self.before_change(dst).await?;
        self.on_flash(src)?;
        match &self.path {
            DataPath::Local(s) => {
                let _room = self.room_for(dst, dst_off, count)?;
                self.space.admit_data(count).map_err(|e| self.full(e))?;
                Ok(s.clone_range(src, src_off, dst, dst_off, count).await?)
            }
            DataPath::Cluster(c) => {
                c.copy_range(&self.ns, src, src_off, src_size, dst, dst_off, count, leave)
                    .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The snapshot gate on the single node's own store: every call of `Data` that changes a
    //! file's bytes makes the image a snapshot needs first (the image object holds the bytes
    //! from before the change), a half-linked image is finished by the next change, and a
    //! deleted snapshot's image goes.
    use std::time::Duration;

    use meta::namespace::{CreateHow, FileKind, Options, Time, ROOT_INO};
    use meta_core::snap::ImageForm;

    use super::*;

    const OLD: &[u8] = b"the bytes at the snapshot, which must stay in the image";

    struct Fixture {
        data: Data,
        ns: Namespace,
        _dir: tempfile::TempDir,
    }

    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let (meta_dir, data_dir) = (dir.path().join("meta"), dir.path().join("data"));
        std::fs::create_dir_all(&meta_dir).expect("meta dir");
        std::fs::create_dir_all(&data_dir).expect("data dir");
        let ns = Namespace::open_with(&meta_dir, Options::default())
            .await
            .expect("namespace");
        let store = chunkstore::ChunkStore::open(&data_dir).expect("store");
        let space = Arc::new(Space::open(&data_dir, &meta_dir).expect("space"));
        let data = Data::new(DataPath::Local(store), ns.clone(), space, None);
        Fixture {
            data,
            ns,
            _dir: dir,
        }
    }

    impl Fixture {
        fn store(&self) -> &chunkstore::ChunkStore {
            match &self.data.path {
                DataPath::Local(s) => s,
                DataPath::Cluster(_) => unreachable!("a local fixture"),
            }
        }

        /// A file `name` holding `OLD`, its size recorded as a WRITE's would be.
        async fn file(&self, name: &str) -> u64 {
            let ino = self
                .ns
                .execute(Command::Create {
                    parent: ROOT_INO,
                    name: name.as_bytes().to_vec(),
                    kind: FileKind::Regular,
                    mode: 0o644,
                    uid: 0,
                    gid: 0,
                    time: Time::now(),
                    how: CreateHow::Guarded,
                })
                .await
                .expect("create")
                .inode
                .expect("inode")
                .ino;
            self.data
                .write_data_owned(ino, 0, OLD.to_vec(), true)
                .await
                .expect("write");
            self.ns
                .execute(Command::Write {
                    ino,
                    end_offset: OLD.len() as u64,
                    time: Time::now(),
                    writes: 1,
                })
                .await
                .expect("size");
            assert!(self.ns.images(ino).expect("images").is_empty());
            ino
        }

        async fn read(&self, obj: u64) -> Vec<u8> {
            let n = OLD.len() as u64;
            self.store().read(obj, 0, n, n).await.expect("read").0
        }

        /// The file's one image: its object, linked (not `linking`) in the own store.
        fn image(&self, ino: u64) -> u64 {
            let images = self.ns.images(ino).expect("images");
            assert_eq!(images.len(), 1, "one image: {images:?}");
            match &images.values().next().expect("one").form {
                ImageForm::Mirrored {
                    object,
                    mirrors,
                    linking: false,
                } if mirrors.is_empty() => *object,
                other => panic!("not a linked local image: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn every_change_of_a_files_bytes_makes_its_image_first() {
        let f = fixture().await;
        let names = ["write", "truncate", "allocate", "deallocate", "clone"];
        let mut inos = Vec::new();
        for n in names {
            inos.push(f.file(n).await);
        }
        let src = f.file("source").await;
        f.ns.create_snapshot(b"s1", ROOT_INO, 3600)
            .await
            .expect("snapshot");
        let n = OLD.len() as u64;
        for (name, ino) in names.iter().zip(&inos) {
            let ino = *ino;
            match *name {
                "write" => {
                    f.data
                        .write_data_owned(ino, 4, b"NEW".to_vec(), false)
                        .await
                }
                "truncate" => f.data.truncate_data(ino, 3).await,
                "allocate" => f.data.allocate_data(ino, 0, 1 << 20).await,
                "deallocate" => f.data.deallocate_data(ino, 0, 8, n).await,
                _ => f.data.clone_data(src, 0, n, ino, 2, 8).await,
            }
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
            let x = f.image(ino);
            assert_eq!(
                f.read(x).await,
                OLD,
                "{name}: the image holds the old bytes"
            );
            if *name != "allocate" {
                assert_ne!(f.read(ino).await, OLD, "{name}: the file changed");
            }
            // A second change needs no second image.
            f.data
                .write_data_owned(ino, 0, b"again".to_vec(), false)
                .await
                .expect("again");
            assert_eq!(f.image(ino), x);
        }
        assert!(
            f.ns.images(src).expect("images").is_empty(),
            "a source only read"
        );
    }

    #[tokio::test]
    async fn a_half_linked_image_is_finished_and_a_deleted_snapshots_image_goes() {
        let f = fixture().await;
        let ino = f.file("f").await;
        let idle = f.file("idle").await;
        f.ns.create_snapshot(b"s1", ROOT_INO, 3600)
            .await
            .expect("snapshot");
        // A gate that died after `SnapKeepLocal`: recorded linking, nothing linked.
        let keep = Command::SnapKeepLocal {
            ino,
            time: Time::now(),
        };
        assert!(f.ns.execute(keep).await.expect("keep").created);
        assert!(f
            .ns
            .images(ino)
            .expect("images")
            .values()
            .all(|i| i.is_linking()));
        // The next change finishes it before it writes.
        f.data
            .write_data_owned(ino, 0, b"changed".to_vec(), true)
            .await
            .expect("write");
        let x = f.image(ino);
        assert_eq!(f.read(x).await, OLD);
        // The same by the pass, for a file nobody writes.
        let keep = Command::SnapKeepLocal {
            ino: idle,
            time: Time::now(),
        };
        assert!(f.ns.execute(keep).await.expect("keep").created);
        f.data.snapshot_passes(&|_| async { Ok(()) }).await;
        let y = f.image(idle);
        assert_eq!(f.read(y).await, OLD);

        // While the snapshot lives, the pass leaves both alone.
        f.data.snapshot_passes(&|_| async { Ok(()) }).await;
        assert_eq!(f.image(ino), x);
        f.ns.delete_snapshot(b"s1").await.expect("delete");
        let mut left = usize::MAX;
        for _ in 0..100 {
            f.data.snapshot_passes(&|_| async { Ok(()) }).await;
            left =
                f.ns.images(ino).expect("images").len() + f.ns.images(idle).expect("images").len();
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(left, 0, "the images of a deleted snapshot go");
        for obj in [x, y] {
            let st = f.store().object_stat(obj).await.expect("stat");
            assert_eq!(st.chunks, 0, "object {obj} removed");
        }
        assert_eq!(&f.read(idle).await, OLD, "the file keeps its bytes");
    }
}
