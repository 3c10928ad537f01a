//! The storage interface `apply` runs against, an in-memory implementation (model for tests), and
//! the staging layer that makes each command all-or-nothing inside a shared batch transaction.

use std::collections::{BTreeMap, BTreeSet};

use super::coding::FileCode;
use super::error::FsError;
use super::object::{Inode, FIRST_COOKIE, ROOT_INO};
use super::reduce_index::{ChunkId, ChunkSlot, Referrer, Segment, SegmentId};
use super::reducing::FileReduce;
use super::shard::{Key, ShardId, MAX_LOCAL};
use super::snap::{
    EntryVersions, Images, PreKey, Registry, ShardSnaps, SnapId, SnapRecord, Versions,
};
use super::tiering::FileTier;
use super::txn::{TxnEntry, TxnId};
use super::xattr::Xattrs;

/// Keys of the meta table that `apply` maintains.
pub mod meta {
    /// Lowest inode number never handed out.
    pub const NEXT_INO: &str = "next_ino";
    pub const FS_ID: &str = "fs_id";
    /// Inodes in use (orphans included).
    pub const FILES: &str = "files";
    /// Bytes of regular files (orphans included).
    pub const BYTES: &str = "bytes";
    /// Lowest epoch never handed out (encodes, uploads and reduces share it).
    pub const NEXT_EPOCH: &str = "next_epoch";
    /// The file system's incarnation in the object store (absent: 0). `cfs repair --from-s3`
    /// sets it one above the one it rebuilt from, so the rebuilt shards' metadata objects
    /// (whose log indexes start again from 1) order after the lost ones' (`mds::tiering::ship`).
    pub const TIER_INCARNATION: &str = "tier_incarnation";
    /// Lowest snapshot id never handed out (shard 0's; absent: 1), `Command::SnapBegin`.
    pub const NEXT_SNAP: &str = "next_snap";
    /// Every key above: what a checkpoint holds and `open` loads back.
    pub const ALL: [&str; 7] = [
        NEXT_INO,
        FS_ID,
        FILES,
        BYTES,
        NEXT_EPOCH,
        TIER_INCARNATION,
        NEXT_SNAP,
    ];
}

/// The state `apply` reads and writes. Implemented by the redb tables of a write transaction, by
/// `MemState`, and by `Staged` (a buffer over either).
pub trait StateStore {
    fn inode(&self, ino: u64) -> Result<Option<Inode>, FsError>;
    fn put_inode(&mut self, inode: &Inode) -> Result<(), FsError>;
    fn del_inode(&mut self, ino: u64) -> Result<(), FsError>;
    /// `(ino, cookie)` of `dir/name`.
    fn dirent(&self, dir: u64, name: &[u8]) -> Result<Option<(u64, u64)>, FsError>;
    /// Inserts or replaces `dir/name`; a replaced entry's cookie is retired.
    fn put_dirent(&mut self, dir: u64, name: &[u8], ino: u64, cookie: u64) -> Result<(), FsError>;
    fn del_dirent(&mut self, dir: u64, name: &[u8]) -> Result<(), FsError>;
    /// Whether `dir` has an entry whose name `skip` does not reject.
    fn dir_has_entry(&self, dir: u64, skip: &dyn Fn(&[u8]) -> bool) -> Result<bool, FsError>;
    /// The cookie the next entry of `dir` gets.
    fn next_cookie(&self, dir: u64) -> Result<u64, FsError>;
    /// `None` deletes the counter (directory removed).
    fn set_next_cookie(&mut self, dir: u64, next: Option<u64>) -> Result<(), FsError>;
    fn meta(&self, key: &'static str) -> Result<u64, FsError>;
    fn set_meta(&mut self, key: &'static str, value: u64) -> Result<(), FsError>;
    fn set_orphan(&mut self, ino: u64, orphan: bool) -> Result<(), FsError>;
    /// The recorded mirrors (DS ids) of each chunk of `ino` that has any, by chunk index.
    fn chunks(&self, ino: u64) -> Result<Vec<(u64, Vec<u64>)>, FsError>;
    /// Records (or, with `None`, forgets) where chunk `chunk` of `ino` lives.
    fn put_chunk(&mut self, ino: u64, chunk: u64, mirrors: Option<&[u64]>) -> Result<(), FsError>;
    /// The file's erasure-coded groups, if any (`coding`).
    fn stripes(&self, ino: u64) -> Result<Option<FileCode>, FsError>;
    fn put_stripes(&mut self, ino: u64, code: Option<&FileCode>) -> Result<(), FsError>;
    /// The NFS client owners MDS node `node` recorded (shard 0's; `Command::ClientRecords`).
    fn clients_of(&self, node: u64) -> Result<Vec<Vec<u8>>, FsError>;
    fn put_client(&mut self, node: u64, owner: &[u8], present: bool) -> Result<(), FsError>;
    /// This shard's record of cross-shard transaction `id` (`txn`).
    fn txn(&self, id: TxnId) -> Result<Option<TxnEntry>, FsError>;
    fn put_txn(&mut self, id: TxnId, entry: Option<&TxnEntry>) -> Result<(), FsError>;
    /// The transaction holding `key` locked, if any.
    fn locked(&self, key: Key) -> Result<Option<TxnId>, FsError>;
    /// The extended attributes of `ino` (`None`: it has none).
    fn xattrs(&self, ino: u64) -> Result<Option<Xattrs>, FsError>;
    /// Replaces them whole (`None` or empty: it has none).
    fn put_xattrs(&mut self, ino: u64, x: Option<&Xattrs>) -> Result<(), FsError>;
    /// The file's record in the object-store tier (`tiering`); it may outlive the file.
    fn tier(&self, ino: u64) -> Result<Option<FileTier>, FsError>;
    fn put_tier(&mut self, ino: u64, t: Option<&FileTier>) -> Result<(), FsError>;
    /// Segment `id`'s record in the data-reduction index (`reduce_index`), on `shard`.
    fn segment(&self, shard: ShardId, id: &SegmentId) -> Result<Option<Segment>, FsError>;
    fn put_segment(
        &mut self,
        shard: ShardId,
        id: &SegmentId,
        seg: Option<&Segment>,
    ) -> Result<(), FsError>;
    /// The first `max` referrers of segment `id`, in order (`max` 1: whether it has any).
    fn referrers(
        &self,
        shard: ShardId,
        id: &SegmentId,
        max: usize,
    ) -> Result<Vec<Referrer>, FsError>;
    fn has_referrer(&self, shard: ShardId, id: &SegmentId, r: Referrer) -> Result<bool, FsError>;
    fn put_referrer(
        &mut self,
        shard: ShardId,
        id: &SegmentId,
        r: Referrer,
        present: bool,
    ) -> Result<(), FsError>;
    /// The file's reduce record (`reducing`); it may outlive the file.
    fn reduce(&self, ino: u64) -> Result<Option<FileReduce>, FsError>;
    fn put_reduce(&mut self, ino: u64, r: Option<&FileReduce>) -> Result<(), FsError>;

    // Snapshots (`snap`). The defaults are a store that keeps no snapshot state: it has no
    // cut, so `apply` never asks it to keep a pre-image, and a snapshot command on it is
    // refused (`Invalid`) rather than lost. A store that keeps them overrides all of these.

    /// This shard's freeze and cuts.
    fn shard_snaps(&self) -> Result<ShardSnaps, FsError> {
        Ok(ShardSnaps::default())
    }
    fn put_shard_snaps(&mut self, snaps: &ShardSnaps) -> Result<(), FsError> {
        let _ = snaps;
        Err(FsError::Invalid)
    }
    /// The pre-images of inode `ino` (empty: none).
    fn pre_inode(&self, ino: u64) -> Result<Versions<Inode>, FsError> {
        let _ = ino;
        Ok(Versions::new())
    }
    /// Replaces them whole (empty: none).
    fn put_pre_inode(&mut self, ino: u64, v: &Versions<Inode>) -> Result<(), FsError> {
        let _ = (ino, v);
        Err(FsError::Invalid)
    }
    /// The pre-images of entry `dir/name`: `(ino, cookie)` as `dirent` gives it.
    fn pre_dirent(&self, dir: u64, name: &[u8]) -> Result<Versions<(u64, u64)>, FsError> {
        let _ = (dir, name);
        Ok(Versions::new())
    }
    fn put_pre_dirent(
        &mut self,
        dir: u64,
        name: &[u8],
        v: &Versions<(u64, u64)>,
    ) -> Result<(), FsError> {
        let _ = (dir, name, v);
        Err(FsError::Invalid)
    }
    /// The pre-images of `ino`'s extended attributes.
    fn pre_xattrs(&self, ino: u64) -> Result<Versions<Xattrs>, FsError> {
        let _ = ino;
        Ok(Versions::new())
    }
    fn put_pre_xattrs(&mut self, ino: u64, v: &Versions<Xattrs>) -> Result<(), FsError> {
        let _ = (ino, v);
        Err(FsError::Invalid)
    }
    /// The first `max` keys, in order, that have a pre-image at `snap`.
    fn pre_keys_at(&self, snap: SnapId, max: usize) -> Result<Vec<PreKey>, FsError> {
        let _ = (snap, max);
        Ok(Vec::new())
    }
    /// Shard 0's registry: every snapshot record (at most `registry::MAX_SNAPSHOTS`).
    fn snap_records(&self) -> Result<Registry, FsError> {
        Ok(Registry::new())
    }
    /// Records snapshot `snap` (`None`: forgets it).
    fn put_snap_record(&mut self, snap: SnapId, r: Option<&SnapRecord>) -> Result<(), FsError> {
        let _ = (snap, r);
        Err(FsError::Invalid)
    }
    /// The data images of file `ino`, by cut (`snap::image`; empty: none).
    fn images(&self, ino: u64) -> Result<Images, FsError> {
        let _ = ino;
        Ok(Images::new())
    }
    /// Replaces them whole (empty: none).
    fn put_images(&mut self, ino: u64, v: &Images) -> Result<(), FsError> {
        let _ = (ino, v);
        Err(FsError::Invalid)
    }

    /// Adds `delta` to counter `key` of `shard` (a shard's store holds only its own; a
    /// transaction's collects deltas per shard).
    fn add_meta(&mut self, shard: ShardId, key: &'static str, delta: i128) -> Result<(), FsError> {
        let _ = shard;
        let v = i128::from(self.meta(key)?) + delta;
        let v =
            u64::try_from(v).map_err(|_| FsError::Corrupt(format!("meta {key} out of range")))?;
        self.set_meta(key, v)
    }

    /// The next inode number of `shard`'s counter (`meta::NEXT_INO` holds the per-shard part),
    /// which `apply` of a create advances: allocation is part of the replicated state, so every
    /// replica and every later leader agrees on it.
    fn alloc_ino(&mut self, shard: ShardId) -> Result<u64, FsError> {
        let local = self.meta(meta::NEXT_INO)?.max(ROOT_INO + 1);
        if local > MAX_LOCAL {
            return Err(FsError::NoSpace);
        }
        let ino = shard.ino(local);
        if self.inode(ino)?.is_some() {
            return Err(FsError::Corrupt(format!(
                "inode counter of {shard} at {local}, but inode {ino} exists"
            )));
        }
        self.set_meta(meta::NEXT_INO, local + 1)?;
        Ok(ino)
    }
}

/// A full copy of the state, to compare two implementations in tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dump {
    pub inodes: BTreeMap<u64, Inode>,
    pub dirents: BTreeMap<(u64, Vec<u8>), (u64, u64)>,
    pub cookies: BTreeMap<u64, u64>,
    pub meta: BTreeMap<String, u64>,
    pub orphans: Vec<u64>,
    pub chunks: BTreeMap<(u64, u64), Vec<u64>>,
    pub stripes: BTreeMap<u64, FileCode>,
    pub clients: std::collections::BTreeSet<(u64, Vec<u8>)>,
    pub txns: BTreeMap<TxnId, TxnEntry>,
    pub xattrs: BTreeMap<u64, Xattrs>,
    pub tier: BTreeMap<u64, FileTier>,
    pub segments: BTreeMap<SegmentId, Segment>,
    pub referrers: BTreeSet<(SegmentId, Referrer)>,
    pub reduces: BTreeMap<u64, FileReduce>,
    pub snaps: ShardSnaps,
    pub pre_inodes: BTreeMap<u64, Versions<Inode>>,
    pub pre_dirents: EntryVersions,
    pub pre_xattrs: BTreeMap<u64, Versions<Xattrs>>,
    pub registry: Registry,
    pub images: BTreeMap<u64, Images>,
}

/// The state in memory: what the server reads (see `writer`), and the reference model in tests.
#[derive(Clone, Debug, Default)]
pub struct MemState {
    pub inodes: BTreeMap<u64, Inode>,
    pub dirents: BTreeMap<(u64, Vec<u8>), (u64, u64)>,
    /// (dir, cookie) → name: READDIR walks this so that a listing resumes after a cookie whose
    /// entry may be gone, and entries added later (higher cookies) show up at the end.
    pub dirindex: BTreeMap<(u64, u64), Vec<u8>>,
    pub cookies: BTreeMap<u64, u64>,
    pub meta: BTreeMap<&'static str, u64>,
    pub orphans: BTreeMap<u64, ()>,
    /// The orphans that are directories (`Command::Detach`): derived from `orphans` and
    /// `inodes` (kept by `set_orphan`, rebuilt by `index_orphan_dirs` after a load), so the
    /// reclaimer finds its work without walking a million orphaned files awaiting the reaper.
    pub orphan_dirs: std::collections::BTreeSet<u64>,
    pub chunks: BTreeMap<(u64, u64), Vec<u64>>,
    /// Erasure-coded files' records, by inode (`coding`).
    pub stripes: BTreeMap<u64, FileCode>,
    /// (MDS node, NFS client owner): shard 0's client records.
    pub clients: std::collections::BTreeSet<(u64, Vec<u8>)>,
    /// Cross-shard transactions this shard takes part in (`txn`).
    pub txns: BTreeMap<TxnId, TxnEntry>,
    /// Which transaction holds each locked key: derived from `txns` (kept by `put_txn`).
    pub locks: BTreeMap<Key, TxnId>,
    /// Recent results by proposer, so a resent command is applied once (`sessions`).
    /// Changed by the state machine around `apply`, never by `apply` itself.
    pub sessions: super::sessions::Sessions,
    /// Extended attributes, by inode (`xattr`); only files that have any.
    pub xattrs: BTreeMap<u64, Xattrs>,
    /// The object-store tier's records, by inode (`tiering`).
    pub tier: BTreeMap<u64, FileTier>,
    /// The data-reduction index's segment records routed to this shard (`reduce_index`).
    pub segments: BTreeMap<SegmentId, Segment>,
    /// Each segment's referrers, a row per (segment, referrer).
    pub referrers: BTreeSet<(SegmentId, Referrer)>,
    /// chunk → the `Live` segments here holding it: derived from `segments` (kept by
    /// `put_segment`, rebuilt by `index_chunks` after a load), the dedup lookups' map.
    pub chunk_index: BTreeSet<(ChunkId, SegmentId)>,
    /// Data-reduced files' records, by inode (`reducing`).
    pub reduces: BTreeMap<u64, FileReduce>,
    /// This shard's freeze and cuts (`snap`).
    pub snaps: ShardSnaps,
    /// Pre-images of inodes, entries and extended attributes, by key (`snap`).
    pub pre_inodes: BTreeMap<u64, Versions<Inode>>,
    pub pre_dirents: EntryVersions,
    pub pre_xattrs: BTreeMap<u64, Versions<Xattrs>>,
    /// (dir, cookie, snap) → name of every entry a pre-image holds: derived from
    /// `pre_dirents` (kept by `put_pre_dirent`, rebuilt by `index_pre_images` after a load),
    /// so a listing at a cut walks the entries gone since in cookie order, as `dirindex`
    /// walks the live ones.
    pub pre_dirindex: BTreeMap<(u64, u64, SnapId), Vec<u8>>,
    /// (snap, key) of every pre-image: derived likewise, so the merge of a deleted snapshot
    /// finds its pre-images without walking everyone's.
    pub pre_by_snap: BTreeSet<(SnapId, PreKey)>,
    /// Shard 0's registry of snapshots (`snap::registry`).
    pub registry: Registry,
    /// Files' data images, by inode (`snap::image`); only files that have any.
    pub images: BTreeMap<u64, Images>,
}

impl MemState {
    pub fn dump(&self) -> Dump {
        Dump {
            inodes: self.inodes.clone(),
            dirents: self.dirents.clone(),
            cookies: self.cookies.clone(),
            meta: self.meta.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            orphans: self.orphans.keys().copied().collect(),
            chunks: self.chunks.clone(),
            stripes: self.stripes.clone(),
            clients: self.clients.clone(),
            txns: self.txns.clone(),
            xattrs: self.xattrs.clone(),
            tier: self.tier.clone(),
            segments: self.segments.clone(),
            referrers: self.referrers.clone(),
            reduces: self.reduces.clone(),
            snaps: self.snaps.clone(),
            pre_inodes: self.pre_inodes.clone(),
            pre_dirents: self.pre_dirents.clone(),
            pre_xattrs: self.pre_xattrs.clone(),
            registry: self.registry.clone(),
            images: self.images.clone(),
        }
    }

    /// Rebuilds the indexes of pre-images (after loading them).
    pub fn index_pre_images(&mut self) {
        self.pre_dirindex.clear();
        self.pre_by_snap.clear();
        let inodes = std::mem::take(&mut self.pre_inodes);
        for (ino, v) in &inodes {
            self.index_pre(PreKey::Inode(*ino), &Versions::new(), v);
        }
        self.pre_inodes = inodes;
        let dirents = std::mem::take(&mut self.pre_dirents);
        for ((dir, name), v) in &dirents {
            self.index_pre(PreKey::Entry(*dir, name.clone()), &Versions::new(), v);
            self.index_entries(*dir, name, &Versions::new(), v);
        }
        self.pre_dirents = dirents;
        let xattrs = std::mem::take(&mut self.pre_xattrs);
        for (ino, v) in &xattrs {
            self.index_pre(PreKey::Xattrs(*ino), &Versions::new(), v);
        }
        self.pre_xattrs = xattrs;
    }

    /// Moves `key`'s rows of `pre_by_snap` from the cuts of `old` to those of `new`.
    fn index_pre<T>(&mut self, key: PreKey, old: &Versions<T>, new: &Versions<T>) {
        for s in old.keys().filter(|s| !new.contains_key(s)) {
            self.pre_by_snap.remove(&(*s, key.clone()));
        }
        for s in new.keys().filter(|s| !old.contains_key(s)) {
            self.pre_by_snap.insert((*s, key.clone()));
        }
    }

    /// Moves `dir/name`'s rows of `pre_dirindex` from the entries `old` holds to `new`'s.
    fn index_entries(
        &mut self,
        dir: u64,
        name: &[u8],
        old: &Versions<(u64, u64)>,
        new: &Versions<(u64, u64)>,
    ) {
        for (s, p) in old {
            if let Some((_, cookie)) = p.value() {
                self.pre_dirindex.remove(&(dir, *cookie, *s));
            }
        }
        for (s, p) in new {
            if let Some((_, cookie)) = p.value() {
                self.pre_dirindex.insert((dir, *cookie, *s), name.to_vec());
            }
        }
    }

    /// Up to `max` mirrored data images whose links are not known to be all made, `(ino,
    /// snap)` in order: what a gate that died half way left (`snap::image`), for the pass
    /// that links them again. Walks the files with images, which are few next to the files.
    pub fn linking_images(&self, max: usize) -> Vec<(u64, SnapId)> {
        self.images
            .iter()
            .flat_map(|(ino, v)| {
                v.iter()
                    .filter(|(_, img)| img.is_linking())
                    .map(move |(snap, _)| (*ino, *snap))
            })
            .take(max)
            .collect()
    }

    /// Rebuilds the index of orphan directories (after loading orphans and inodes).
    pub fn index_orphan_dirs(&mut self) {
        self.orphan_dirs = self
            .orphans
            .keys()
            .filter(|i| self.inodes.get(i).is_some_and(|i| i.kind.is_dir()))
            .copied()
            .collect();
    }

    /// Rebuilds the lock index from the transaction records (after loading them).
    pub fn index_locks(&mut self) {
        self.locks.clear();
        for (id, e) in &self.txns {
            if let Some(p) = &e.prepared {
                for k in &p.keys {
                    self.locks.insert(*k, *id);
                }
            }
        }
    }
}

impl StateStore for MemState {
    fn inode(&self, ino: u64) -> Result<Option<Inode>, FsError> {
        Ok(self.inodes.get(&ino).cloned())
    }
    fn put_inode(&mut self, inode: &Inode) -> Result<(), FsError> {
        self.inodes.insert(inode.ino, inode.clone());
        Ok(())
    }
    fn del_inode(&mut self, ino: u64) -> Result<(), FsError> {
        self.inodes.remove(&ino);
        Ok(())
    }
    fn dirent(&self, dir: u64, name: &[u8]) -> Result<Option<(u64, u64)>, FsError> {
        Ok(self.dirents.get(&(dir, name.to_vec())).copied())
    }
    fn put_dirent(&mut self, dir: u64, name: &[u8], ino: u64, cookie: u64) -> Result<(), FsError> {
        if let Some((_, old)) = self.dirents.insert((dir, name.to_vec()), (ino, cookie)) {
            if old != cookie {
                self.dirindex.remove(&(dir, old));
            }
        }
        self.dirindex.insert((dir, cookie), name.to_vec());
        Ok(())
    }
    fn del_dirent(&mut self, dir: u64, name: &[u8]) -> Result<(), FsError> {
        if let Some((_, cookie)) = self.dirents.remove(&(dir, name.to_vec())) {
            self.dirindex.remove(&(dir, cookie));
        }
        Ok(())
    }
    fn dir_has_entry(&self, dir: u64, skip: &dyn Fn(&[u8]) -> bool) -> Result<bool, FsError> {
        Ok(self
            .dirents
            .range((dir, Vec::new())..)
            .take_while(|((d, _), _)| *d == dir)
            .any(|((_, n), _)| !skip(n)))
    }
    fn next_cookie(&self, dir: u64) -> Result<u64, FsError> {
        Ok(self.cookies.get(&dir).copied().unwrap_or(FIRST_COOKIE))
    }
    fn set_next_cookie(&mut self, dir: u64, next: Option<u64>) -> Result<(), FsError> {
        match next {
            Some(n) => self.cookies.insert(dir, n),
            None => self.cookies.remove(&dir),
        };
        Ok(())
    }
    fn meta(&self, key: &'static str) -> Result<u64, FsError> {
        Ok(self.meta.get(key).copied().unwrap_or(0))
    }
    fn set_meta(&mut self, key: &'static str, value: u64) -> Result<(), FsError> {
        self.meta.insert(key, value);
        Ok(())
    }
    fn set_orphan(&mut self, ino: u64, orphan: bool) -> Result<(), FsError> {
        // Staged changes flush inodes before orphans, so the kind is known here.
        if orphan {
            self.orphans.insert(ino, ());
            if self.inodes.get(&ino).is_some_and(|i| i.kind.is_dir()) {
                self.orphan_dirs.insert(ino);
            }
        } else {
            self.orphans.remove(&ino);
            self.orphan_dirs.remove(&ino);
        }
        Ok(())
    }
    fn chunks(&self, ino: u64) -> Result<Vec<(u64, Vec<u64>)>, FsError> {
        Ok(self
            .chunks
            .range((ino, 0)..=(ino, u64::MAX))
            .map(|((_, c), m)| (*c, m.clone()))
            .collect())
    }
    fn put_chunk(&mut self, ino: u64, chunk: u64, mirrors: Option<&[u64]>) -> Result<(), FsError> {
        match mirrors {
            Some(m) => self.chunks.insert((ino, chunk), m.to_vec()),
            None => self.chunks.remove(&(ino, chunk)),
        };
        Ok(())
    }
    fn stripes(&self, ino: u64) -> Result<Option<FileCode>, FsError> {
        Ok(self.stripes.get(&ino).cloned())
    }
    fn put_stripes(&mut self, ino: u64, code: Option<&FileCode>) -> Result<(), FsError> {
        match code {
            Some(c) => self.stripes.insert(ino, c.clone()),
            None => self.stripes.remove(&ino),
        };
        Ok(())
    }
    fn clients_of(&self, node: u64) -> Result<Vec<Vec<u8>>, FsError> {
        Ok(self
            .clients
            .range((node, Vec::new())..)
            .take_while(|(n, _)| *n == node)
            .map(|(_, o)| o.clone())
            .collect())
    }
    fn put_client(&mut self, node: u64, owner: &[u8], present: bool) -> Result<(), FsError> {
        if present {
            self.clients.insert((node, owner.to_vec()));
        } else {
            self.clients.remove(&(node, owner.to_vec()));
        }
        Ok(())
    }
    fn txn(&self, id: TxnId) -> Result<Option<TxnEntry>, FsError> {
        Ok(self.txns.get(&id).cloned())
    }
    fn put_txn(&mut self, id: TxnId, entry: Option<&TxnEntry>) -> Result<(), FsError> {
        if let Some(p) = self.txns.get(&id).and_then(|e| e.prepared.as_ref()) {
            for k in &p.keys {
                if self.locks.get(k) == Some(&id) {
                    self.locks.remove(k);
                }
            }
        }
        match entry {
            Some(e) => {
                if let Some(p) = &e.prepared {
                    for k in &p.keys {
                        self.locks.insert(*k, id);
                    }
                }
                self.txns.insert(id, e.clone());
            }
            None => {
                self.txns.remove(&id);
            }
        }
        Ok(())
    }
    fn locked(&self, key: Key) -> Result<Option<TxnId>, FsError> {
        if self.locks.is_empty() {
            return Ok(None);
        }
        Ok(self.locks.get(&key).copied())
    }
    fn xattrs(&self, ino: u64) -> Result<Option<Xattrs>, FsError> {
        Ok(self.xattrs.get(&ino).cloned())
    }
    fn put_xattrs(&mut self, ino: u64, x: Option<&Xattrs>) -> Result<(), FsError> {
        match x {
            Some(x) if !x.is_empty() => self.xattrs.insert(ino, x.clone()),
            _ => self.xattrs.remove(&ino),
        };
        Ok(())
    }
    fn tier(&self, ino: u64) -> Result<Option<FileTier>, FsError> {
        Ok(self.tier.get(&ino).cloned())
    }
    fn put_tier(&mut self, ino: u64, t: Option<&FileTier>) -> Result<(), FsError> {
        match t {
            Some(t) => self.tier.insert(ino, t.clone()),
            None => self.tier.remove(&ino),
        };
        Ok(())
    }
    fn segment(&self, _shard: ShardId, id: &SegmentId) -> Result<Option<Segment>, FsError> {
        Ok(self.segments.get(id).cloned())
    }
    fn put_segment(
        &mut self,
        _shard: ShardId,
        id: &SegmentId,
        seg: Option<&Segment>,
    ) -> Result<(), FsError> {
        let old = match seg {
            Some(s) => self.segments.insert(*id, s.clone()),
            None => self.segments.remove(id),
        };
        // The map follows the record: only a change of liveness or chunks touches it (a
        // record's chunks never change after it is made, so that is its birth and death).
        fn live(s: Option<&Segment>) -> Option<&BTreeMap<ChunkId, ChunkSlot>> {
            s.filter(|s| s.is_live()).map(|s| &s.chunks)
        }
        if live(old.as_ref()) != live(seg) {
            if let Some(chunks) = live(old.as_ref()) {
                for c in chunks.keys() {
                    self.chunk_index.remove(&(*c, *id));
                }
            }
            if let Some(chunks) = live(seg) {
                self.chunk_index.extend(chunks.keys().map(|c| (*c, *id)));
            }
        }
        Ok(())
    }
    fn referrers(
        &self,
        _shard: ShardId,
        id: &SegmentId,
        max: usize,
    ) -> Result<Vec<Referrer>, FsError> {
        Ok(self.segment_referrers(id, None, max))
    }
    fn has_referrer(&self, _shard: ShardId, id: &SegmentId, r: Referrer) -> Result<bool, FsError> {
        Ok(self.referrers.contains(&(*id, r)))
    }
    fn put_referrer(
        &mut self,
        _shard: ShardId,
        id: &SegmentId,
        r: Referrer,
        present: bool,
    ) -> Result<(), FsError> {
        if present {
            self.referrers.insert((*id, r));
        } else {
            self.referrers.remove(&(*id, r));
        }
        Ok(())
    }
    fn reduce(&self, ino: u64) -> Result<Option<FileReduce>, FsError> {
        Ok(self.reduces.get(&ino).cloned())
    }
    fn put_reduce(&mut self, ino: u64, r: Option<&FileReduce>) -> Result<(), FsError> {
        match r {
            Some(r) => self.reduces.insert(ino, r.clone()),
            None => self.reduces.remove(&ino),
        };
        Ok(())
    }
    fn shard_snaps(&self) -> Result<ShardSnaps, FsError> {
        Ok(self.snaps.clone())
    }
    fn put_shard_snaps(&mut self, snaps: &ShardSnaps) -> Result<(), FsError> {
        self.snaps = snaps.clone();
        Ok(())
    }
    fn pre_inode(&self, ino: u64) -> Result<Versions<Inode>, FsError> {
        Ok(self.pre_inodes.get(&ino).cloned().unwrap_or_default())
    }
    fn put_pre_inode(&mut self, ino: u64, v: &Versions<Inode>) -> Result<(), FsError> {
        let old = put_versions(&mut self.pre_inodes, ino, v);
        self.index_pre(PreKey::Inode(ino), &old, v);
        Ok(())
    }
    fn pre_dirent(&self, dir: u64, name: &[u8]) -> Result<Versions<(u64, u64)>, FsError> {
        let key = (dir, name.to_vec());
        Ok(self.pre_dirents.get(&key).cloned().unwrap_or_default())
    }
    fn put_pre_dirent(
        &mut self,
        dir: u64,
        name: &[u8],
        v: &Versions<(u64, u64)>,
    ) -> Result<(), FsError> {
        let old = put_versions(&mut self.pre_dirents, (dir, name.to_vec()), v);
        self.index_pre(PreKey::Entry(dir, name.to_vec()), &old, v);
        self.index_entries(dir, name, &old, v);
        Ok(())
    }
    fn pre_xattrs(&self, ino: u64) -> Result<Versions<Xattrs>, FsError> {
        Ok(self.pre_xattrs.get(&ino).cloned().unwrap_or_default())
    }
    fn put_pre_xattrs(&mut self, ino: u64, v: &Versions<Xattrs>) -> Result<(), FsError> {
        let old = put_versions(&mut self.pre_xattrs, ino, v);
        self.index_pre(PreKey::Xattrs(ino), &old, v);
        Ok(())
    }
    fn pre_keys_at(&self, snap: SnapId, max: usize) -> Result<Vec<PreKey>, FsError> {
        Ok(self
            .pre_by_snap
            .range((snap, PreKey::Inode(0))..)
            .take_while(|(s, _)| *s == snap)
            .take(max)
            .map(|(_, k)| k.clone())
            .collect())
    }
    fn snap_records(&self) -> Result<Registry, FsError> {
        Ok(self.registry.clone())
    }
    fn put_snap_record(&mut self, snap: SnapId, r: Option<&SnapRecord>) -> Result<(), FsError> {
        match r {
            Some(r) => self.registry.insert(snap, r.clone()),
            None => self.registry.remove(&snap),
        };
        Ok(())
    }
    fn images(&self, ino: u64) -> Result<Images, FsError> {
        Ok(self.images.get(&ino).cloned().unwrap_or_default())
    }
    fn put_images(&mut self, ino: u64, v: &Images) -> Result<(), FsError> {
        if v.is_empty() {
            self.images.remove(&ino);
        } else {
            self.images.insert(ino, v.clone());
        }
        Ok(())
    }
}

/// Stores `key`'s versions (empty: none) and returns what it held.
fn put_versions<K: Ord, T: Clone>(
    map: &mut BTreeMap<K, Versions<T>>,
    key: K,
    v: &Versions<T>,
) -> Versions<T> {
    let old = if v.is_empty() {
        map.remove(&key)
    } else {
        map.insert(key, v.clone())
    };
    old.unwrap_or_default()
}

/// A directory entry key and its staged value (`None`: deleted).
type StagedDirents = BTreeMap<(u64, Vec<u8>), Option<(u64, u64)>>;

/// Buffered changes of one command; written to the base only if `apply` succeeded, which is what
/// lets a failed command leave no trace in a batch shared with others.
#[derive(Default)]
pub struct Changes {
    pub inodes: BTreeMap<u64, Option<Inode>>,
    pub dirents: StagedDirents,
    pub cookies: BTreeMap<u64, Option<u64>>,
    meta: BTreeMap<&'static str, u64>,
    pub orphans: BTreeMap<u64, bool>,
    pub chunks: BTreeMap<(u64, u64), Option<Vec<u64>>>,
    pub stripes: BTreeMap<u64, Option<FileCode>>,
    clients: BTreeMap<(u64, Vec<u8>), bool>,
    txns: BTreeMap<TxnId, Option<TxnEntry>>,
    pub xattrs: BTreeMap<u64, Option<Xattrs>>,
    pub tier: BTreeMap<u64, Option<FileTier>>,
    pub segments: BTreeMap<(ShardId, SegmentId), Option<Segment>>,
    pub referrers: BTreeMap<(ShardId, SegmentId, Referrer), bool>,
    pub reduces: BTreeMap<u64, Option<FileReduce>>,
    pub snaps: Option<ShardSnaps>,
    /// Each key's versions, whole (empty: none).
    pub pre_inodes: BTreeMap<u64, Versions<Inode>>,
    pub pre_dirents: EntryVersions,
    pub pre_xattrs: BTreeMap<u64, Versions<Xattrs>>,
    pub registry: BTreeMap<SnapId, Option<SnapRecord>>,
    /// Each file's data images, whole (empty: none).
    pub images: BTreeMap<u64, Images>,
}

impl Changes {
    /// Whether `dir` has an entry `skip` does not reject, these changes over a base whose
    /// answer `base` gives for a filter (entries changed here are the changes' to say).
    pub fn dir_has_entry(
        &self,
        dir: u64,
        skip: &dyn Fn(&[u8]) -> bool,
        base: impl FnOnce(&dyn Fn(&[u8]) -> bool) -> Result<bool, FsError>,
    ) -> Result<bool, FsError> {
        let staged_live = self
            .dirents
            .range((dir, Vec::new())..)
            .take_while(|((d, _), _)| *d == dir)
            .any(|((_, n), v)| v.is_some() && !skip(n));
        if staged_live {
            return Ok(true);
        }
        base(&|n: &[u8]| skip(n) || self.dirents.contains_key(&(dir, n.to_vec())))
    }

    /// Folds `later` (changes made after these) in: each key ends with its latest value, which is
    /// all `flush_into` needs, since every change is a whole value or a deletion.
    pub fn merge(&mut self, later: Changes) {
        self.inodes.extend(later.inodes);
        self.dirents.extend(later.dirents);
        self.cookies.extend(later.cookies);
        self.meta.extend(later.meta);
        self.orphans.extend(later.orphans);
        self.chunks.extend(later.chunks);
        self.stripes.extend(later.stripes);
        self.clients.extend(later.clients);
        self.txns.extend(later.txns);
        self.xattrs.extend(later.xattrs);
        self.tier.extend(later.tier);
        self.segments.extend(later.segments);
        self.referrers.extend(later.referrers);
        self.reduces.extend(later.reduces);
        if later.snaps.is_some() {
            self.snaps = later.snaps;
        }
        self.pre_inodes.extend(later.pre_inodes);
        self.pre_dirents.extend(later.pre_dirents);
        self.pre_xattrs.extend(later.pre_xattrs);
        self.registry.extend(later.registry);
        self.images.extend(later.images);
    }

    pub fn flush_into<S: StateStore + ?Sized>(&self, base: &mut S) -> Result<(), FsError> {
        // Deletions first: a name removed and re-added in one command arrives as a single put.
        for ((dir, name), v) in &self.dirents {
            if v.is_none() {
                base.del_dirent(*dir, name)?;
            }
        }
        for ((dir, name), v) in &self.dirents {
            if let Some((ino, cookie)) = v {
                base.put_dirent(*dir, name, *ino, *cookie)?;
            }
        }
        for (ino, v) in &self.inodes {
            match v {
                Some(i) => base.put_inode(i)?,
                None => base.del_inode(*ino)?,
            }
        }
        for (dir, v) in &self.cookies {
            base.set_next_cookie(*dir, *v)?;
        }
        for (k, v) in &self.meta {
            base.set_meta(k, *v)?;
        }
        for (ino, o) in &self.orphans {
            base.set_orphan(*ino, *o)?;
        }
        for ((ino, chunk), m) in &self.chunks {
            base.put_chunk(*ino, *chunk, m.as_deref())?;
        }
        for (ino, c) in &self.stripes {
            base.put_stripes(*ino, c.as_ref())?;
        }
        for ((node, owner), present) in &self.clients {
            base.put_client(*node, owner, *present)?;
        }
        for (id, e) in &self.txns {
            base.put_txn(*id, e.as_ref())?;
        }
        for (ino, x) in &self.xattrs {
            base.put_xattrs(*ino, x.as_ref())?;
        }
        for (ino, t) in &self.tier {
            base.put_tier(*ino, t.as_ref())?;
        }
        for ((shard, id), seg) in &self.segments {
            base.put_segment(*shard, id, seg.as_ref())?;
        }
        for ((shard, id, r), present) in &self.referrers {
            base.put_referrer(*shard, id, *r, *present)?;
        }
        for (ino, r) in &self.reduces {
            base.put_reduce(*ino, r.as_ref())?;
        }
        if let Some(s) = &self.snaps {
            base.put_shard_snaps(s)?;
        }
        for (ino, v) in &self.pre_inodes {
            base.put_pre_inode(*ino, v)?;
        }
        for ((dir, name), v) in &self.pre_dirents {
            base.put_pre_dirent(*dir, name, v)?;
        }
        for (ino, v) in &self.pre_xattrs {
            base.put_pre_xattrs(*ino, v)?;
        }
        for (snap, r) in &self.registry {
            base.put_snap_record(*snap, r.as_ref())?;
        }
        for (ino, v) in &self.images {
            base.put_images(*ino, v)?;
        }
        Ok(())
    }
}

/// A read-through, write-buffering view of a base store.
pub struct Staged<'a, S: ?Sized> {
    base: &'a S,
    changes: Changes,
}

impl<'a, S: StateStore + ?Sized> Staged<'a, S> {
    pub fn new(base: &'a S) -> Self {
        Staged {
            base,
            changes: Changes::default(),
        }
    }
    pub fn into_changes(self) -> Changes {
        self.changes
    }
}

impl<S: StateStore + ?Sized> StateStore for Staged<'_, S> {
    fn inode(&self, ino: u64) -> Result<Option<Inode>, FsError> {
        match self.changes.inodes.get(&ino) {
            Some(v) => Ok(v.clone()),
            None => self.base.inode(ino),
        }
    }
    fn put_inode(&mut self, inode: &Inode) -> Result<(), FsError> {
        self.changes.inodes.insert(inode.ino, Some(inode.clone()));
        Ok(())
    }
    fn del_inode(&mut self, ino: u64) -> Result<(), FsError> {
        self.changes.inodes.insert(ino, None);
        Ok(())
    }
    fn dirent(&self, dir: u64, name: &[u8]) -> Result<Option<(u64, u64)>, FsError> {
        match self.changes.dirents.get(&(dir, name.to_vec())) {
            Some(v) => Ok(*v),
            None => self.base.dirent(dir, name),
        }
    }
    fn put_dirent(&mut self, dir: u64, name: &[u8], ino: u64, cookie: u64) -> Result<(), FsError> {
        self.changes
            .dirents
            .insert((dir, name.to_vec()), Some((ino, cookie)));
        Ok(())
    }
    fn del_dirent(&mut self, dir: u64, name: &[u8]) -> Result<(), FsError> {
        self.changes.dirents.insert((dir, name.to_vec()), None);
        Ok(())
    }
    fn dir_has_entry(&self, dir: u64, skip: &dyn Fn(&[u8]) -> bool) -> Result<bool, FsError> {
        self.changes
            .dir_has_entry(dir, skip, |skip| self.base.dir_has_entry(dir, skip))
    }
    fn next_cookie(&self, dir: u64) -> Result<u64, FsError> {
        match self.changes.cookies.get(&dir) {
            Some(Some(n)) => Ok(*n),
            Some(None) => Ok(FIRST_COOKIE),
            None => self.base.next_cookie(dir),
        }
    }
    fn set_next_cookie(&mut self, dir: u64, next: Option<u64>) -> Result<(), FsError> {
        self.changes.cookies.insert(dir, next);
        Ok(())
    }
    fn meta(&self, key: &'static str) -> Result<u64, FsError> {
        match self.changes.meta.get(key) {
            Some(v) => Ok(*v),
            None => self.base.meta(key),
        }
    }
    fn set_meta(&mut self, key: &'static str, value: u64) -> Result<(), FsError> {
        self.changes.meta.insert(key, value);
        Ok(())
    }
    fn set_orphan(&mut self, ino: u64, orphan: bool) -> Result<(), FsError> {
        self.changes.orphans.insert(ino, orphan);
        Ok(())
    }
    fn chunks(&self, ino: u64) -> Result<Vec<(u64, Vec<u64>)>, FsError> {
        let mut all: BTreeMap<u64, Vec<u64>> = self.base.chunks(ino)?.into_iter().collect();
        for ((_, c), m) in self.changes.chunks.range((ino, 0)..=(ino, u64::MAX)) {
            match m {
                Some(m) => all.insert(*c, m.clone()),
                None => all.remove(c),
            };
        }
        Ok(all.into_iter().collect())
    }
    fn put_chunk(&mut self, ino: u64, chunk: u64, mirrors: Option<&[u64]>) -> Result<(), FsError> {
        self.changes
            .chunks
            .insert((ino, chunk), mirrors.map(|m| m.to_vec()));
        Ok(())
    }
    fn stripes(&self, ino: u64) -> Result<Option<FileCode>, FsError> {
        match self.changes.stripes.get(&ino) {
            Some(c) => Ok(c.clone()),
            None => self.base.stripes(ino),
        }
    }
    fn put_stripes(&mut self, ino: u64, code: Option<&FileCode>) -> Result<(), FsError> {
        self.changes.stripes.insert(ino, code.cloned());
        Ok(())
    }
    fn clients_of(&self, node: u64) -> Result<Vec<Vec<u8>>, FsError> {
        let mut all: std::collections::BTreeSet<Vec<u8>> =
            self.base.clients_of(node)?.into_iter().collect();
        for ((n, owner), present) in &self.changes.clients {
            if *n != node {
                continue;
            }
            if *present {
                all.insert(owner.clone());
            } else {
                all.remove(owner);
            }
        }
        Ok(all.into_iter().collect())
    }
    fn put_client(&mut self, node: u64, owner: &[u8], present: bool) -> Result<(), FsError> {
        self.changes.clients.insert((node, owner.to_vec()), present);
        Ok(())
    }
    fn txn(&self, id: TxnId) -> Result<Option<TxnEntry>, FsError> {
        match self.changes.txns.get(&id) {
            Some(e) => Ok(e.clone()),
            None => self.base.txn(id),
        }
    }
    fn put_txn(&mut self, id: TxnId, entry: Option<&TxnEntry>) -> Result<(), FsError> {
        self.changes.txns.insert(id, entry.cloned());
        Ok(())
    }
    fn locked(&self, key: Key) -> Result<Option<TxnId>, FsError> {
        // A record staged here decides for its transaction; the base for the others.
        for (id, e) in &self.changes.txns {
            let holds = e
                .as_ref()
                .and_then(|e| e.prepared.as_ref())
                .is_some_and(|p| p.keys.contains(&key));
            if holds {
                return Ok(Some(*id));
            }
        }
        match self.base.locked(key)? {
            Some(id) if self.changes.txns.contains_key(&id) => Ok(None),
            other => Ok(other),
        }
    }
    fn xattrs(&self, ino: u64) -> Result<Option<Xattrs>, FsError> {
        match self.changes.xattrs.get(&ino) {
            Some(x) => Ok(x.clone()),
            None => self.base.xattrs(ino),
        }
    }
    fn put_xattrs(&mut self, ino: u64, x: Option<&Xattrs>) -> Result<(), FsError> {
        let x = x.filter(|x| !x.is_empty()).cloned();
        self.changes.xattrs.insert(ino, x);
        Ok(())
    }
    fn tier(&self, ino: u64) -> Result<Option<FileTier>, FsError> {
        match self.changes.tier.get(&ino) {
            Some(t) => Ok(t.clone()),
            None => self.base.tier(ino),
        }
    }
    fn put_tier(&mut self, ino: u64, t: Option<&FileTier>) -> Result<(), FsError> {
        self.changes.tier.insert(ino, t.cloned());
        Ok(())
    }
    fn segment(&self, shard: ShardId, id: &SegmentId) -> Result<Option<Segment>, FsError> {
        match self.changes.segments.get(&(shard, *id)) {
            Some(s) => Ok(s.clone()),
            None => self.base.segment(shard, id),
        }
    }
    fn put_segment(
        &mut self,
        shard: ShardId,
        id: &SegmentId,
        seg: Option<&Segment>,
    ) -> Result<(), FsError> {
        self.changes.segments.insert((shard, *id), seg.cloned());
        Ok(())
    }
    /// The base's first `max` plus as many as are staged gone (so `max` are left if the
    /// base has them), without those, with the staged ones: the first `max` of the union.
    fn referrers(
        &self,
        shard: ShardId,
        id: &SegmentId,
        max: usize,
    ) -> Result<Vec<Referrer>, FsError> {
        let lo = (shard, *id, Referrer { ino: 0, epoch: 0 });
        let staged: Vec<(Referrer, bool)> = self
            .changes
            .referrers
            .range(lo..)
            .take_while(|((s, i, _), _)| (*s, *i) == (shard, *id))
            .map(|((_, _, r), p)| (*r, *p))
            .collect();
        let gone = staged.iter().filter(|(_, p)| !p).count();
        let mut all: BTreeSet<Referrer> = self
            .base
            .referrers(shard, id, max.saturating_add(gone))?
            .into_iter()
            .collect();
        for (r, present) in staged {
            if present {
                all.insert(r);
            } else {
                all.remove(&r);
            }
        }
        Ok(all.into_iter().take(max).collect())
    }
    fn has_referrer(&self, shard: ShardId, id: &SegmentId, r: Referrer) -> Result<bool, FsError> {
        match self.changes.referrers.get(&(shard, *id, r)) {
            Some(p) => Ok(*p),
            None => self.base.has_referrer(shard, id, r),
        }
    }
    fn put_referrer(
        &mut self,
        shard: ShardId,
        id: &SegmentId,
        r: Referrer,
        present: bool,
    ) -> Result<(), FsError> {
        self.changes.referrers.insert((shard, *id, r), present);
        Ok(())
    }
    fn reduce(&self, ino: u64) -> Result<Option<FileReduce>, FsError> {
        match self.changes.reduces.get(&ino) {
            Some(r) => Ok(r.clone()),
            None => self.base.reduce(ino),
        }
    }
    fn put_reduce(&mut self, ino: u64, r: Option<&FileReduce>) -> Result<(), FsError> {
        self.changes.reduces.insert(ino, r.cloned());
        Ok(())
    }
    fn shard_snaps(&self) -> Result<ShardSnaps, FsError> {
        match &self.changes.snaps {
            Some(s) => Ok(s.clone()),
            None => self.base.shard_snaps(),
        }
    }
    fn put_shard_snaps(&mut self, snaps: &ShardSnaps) -> Result<(), FsError> {
        self.changes.snaps = Some(snaps.clone());
        Ok(())
    }
    fn pre_inode(&self, ino: u64) -> Result<Versions<Inode>, FsError> {
        match self.changes.pre_inodes.get(&ino) {
            Some(v) => Ok(v.clone()),
            None => self.base.pre_inode(ino),
        }
    }
    fn put_pre_inode(&mut self, ino: u64, v: &Versions<Inode>) -> Result<(), FsError> {
        self.changes.pre_inodes.insert(ino, v.clone());
        Ok(())
    }
    fn pre_dirent(&self, dir: u64, name: &[u8]) -> Result<Versions<(u64, u64)>, FsError> {
        match self.changes.pre_dirents.get(&(dir, name.to_vec())) {
            Some(v) => Ok(v.clone()),
            None => self.base.pre_dirent(dir, name),
        }
    }
    fn put_pre_dirent(
        &mut self,
        dir: u64,
        name: &[u8],
        v: &Versions<(u64, u64)>,
    ) -> Result<(), FsError> {
        self.changes
            .pre_dirents
            .insert((dir, name.to_vec()), v.clone());
        Ok(())
    }
    fn pre_xattrs(&self, ino: u64) -> Result<Versions<Xattrs>, FsError> {
        match self.changes.pre_xattrs.get(&ino) {
            Some(v) => Ok(v.clone()),
            None => self.base.pre_xattrs(ino),
        }
    }
    fn put_pre_xattrs(&mut self, ino: u64, v: &Versions<Xattrs>) -> Result<(), FsError> {
        self.changes.pre_xattrs.insert(ino, v.clone());
        Ok(())
    }
    /// As `referrers`: the base's first `max` plus as many as are staged without a version
    /// at `snap`, those taken out, the staged ones with one put in, the first `max` of that.
    fn pre_keys_at(&self, snap: SnapId, max: usize) -> Result<Vec<PreKey>, FsError> {
        let c = &self.changes;
        let staged: Vec<(PreKey, bool)> = (c.pre_inodes.iter())
            .map(|(i, v)| (PreKey::Inode(*i), v.contains_key(&snap)))
            .chain(
                c.pre_dirents
                    .iter()
                    .map(|((d, n), v)| (PreKey::Entry(*d, n.clone()), v.contains_key(&snap))),
            )
            .chain((c.pre_xattrs.iter()).map(|(i, v)| (PreKey::Xattrs(*i), v.contains_key(&snap))))
            .collect();
        let gone = staged.iter().filter(|(_, p)| !p).count();
        let mut all: BTreeSet<PreKey> = self
            .base
            .pre_keys_at(snap, max.saturating_add(gone))?
            .into_iter()
            .collect();
        for (k, present) in staged {
            if present {
                all.insert(k);
            } else {
                all.remove(&k);
            }
        }
        Ok(all.into_iter().take(max).collect())
    }
    fn snap_records(&self) -> Result<Registry, FsError> {
        let mut all = self.base.snap_records()?;
        for (snap, r) in &self.changes.registry {
            match r {
                Some(r) => all.insert(*snap, r.clone()),
                None => all.remove(snap),
            };
        }
        Ok(all)
    }
    fn put_snap_record(&mut self, snap: SnapId, r: Option<&SnapRecord>) -> Result<(), FsError> {
        self.changes.registry.insert(snap, r.cloned());
        Ok(())
    }
    fn images(&self, ino: u64) -> Result<Images, FsError> {
        match self.changes.images.get(&ino) {
            Some(v) => Ok(v.clone()),
            None => self.base.images(ino),
        }
    }
    fn put_images(&mut self, ino: u64, v: &Images) -> Result<(), FsError> {
        self.changes.images.insert(ino, v.clone());
        Ok(())
    }
}
