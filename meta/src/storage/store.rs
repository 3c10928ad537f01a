//! The redb tables that hold checkpoints of the local shards' state machines, and the
//! write-side `StateStore` over them (`crate::storage::checkpoint` writes them).
//!
//! Every key carries an inode number (an inode, a directory's entries, a file's chunks), and an
//! inode number carries its shard (`shard`), so a shard's rows are one range of each table: a
//! snapshot replacing a shard deletes those ranges and writes them again. What is per shard
//! beyond that (its counters, the log id it applied, the data-reduction index's records, whose
//! keys are content ids) is keyed by the shard first, so it is one range too.

use std::collections::HashMap;

use redb::{AccessGuard, ReadTransaction, ReadableTable, Table, TableDefinition, WriteTransaction};

use meta_core::coding::FileCode;
use meta_core::error::FsError;
use meta_core::object::{Inode, FIRST_COOKIE};
use meta_core::reduce_index::{Referrer, Segment, SegmentId};
use meta_core::reducing::FileReduce;
use meta_core::shard::{Key, ShardId};
use meta_core::snap::{Images, PreKey, Registry, ShardSnaps, SnapId, SnapRecord, Versions};
use meta_core::state::{meta, MemState, StateStore};
use meta_core::txn::{TxnEntry, TxnId};
use meta_core::{FileTier, Xattrs};

/// ino → encoded `Inode`.
pub(crate) const INODES: TableDefinition<u64, &[u8]> = TableDefinition::new("inodes");
/// (dir, name) → (ino, cookie).
pub(crate) const DIRENTS: TableDefinition<(u64, &[u8]), (u64, u64)> =
    TableDefinition::new("dirents");
/// (dir, cookie) → name: READDIR walks this so that a listing resumes after a cookie whose entry
/// may be gone, and entries added later (higher cookies) show up at the end.
pub(crate) const DIRINDEX: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("dirindex");
/// dir → next cookie.
pub(crate) const COOKIES: TableDefinition<u64, u64> = TableDefinition::new("cookies");
/// Regular files with nlink 0 waiting for `Forget`.
pub(crate) const ORPHANS: TableDefinition<u64, ()> = TableDefinition::new("orphans");
/// (ino, chunk) → the DS ids holding that chunk's mirrors (postcard `Vec<u64>`).
pub(crate) const CHUNKS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("chunks");
/// ino → the file's erasure-coded groups (postcard `coding::FileCode`).
pub(crate) const STRIPES: TableDefinition<u64, &[u8]> = TableDefinition::new("stripes");
/// (MDS node, NFS client owner): the client records (`Command::ClientRecords`), shard 0's.
pub(crate) const CLIENTS: TableDefinition<(u64, &[u8]), ()> = TableDefinition::new("clients");
/// (shard, key) → the shard's counters (`state::meta`).
pub(crate) const SHARD_META: TableDefinition<(u16, &str), u64> = TableDefinition::new("shard_meta");
/// shard → the log id and membership its checkpoint holds (postcard, `raft::machine::Applied`).
pub(crate) const SHARD_APPLIED: TableDefinition<u16, &[u8]> = TableDefinition::new("shard_applied");
/// shard → its table of recent results by proposer (postcard, `sessions::Sessions`).
pub(crate) const SHARD_SESSIONS: TableDefinition<u16, &[u8]> =
    TableDefinition::new("shard_sessions");
/// (shard, transaction) → that shard's record of a cross-shard transaction (postcard
/// `txn::TxnEntry`).
pub(crate) const TXNS: TableDefinition<(u16, u128), &[u8]> = TableDefinition::new("txns");
/// ino → its extended attributes (postcard `xattr::Xattrs`), for files that have any.
pub(crate) const XATTRS: TableDefinition<u64, &[u8]> = TableDefinition::new("xattrs");
/// ino → the file's record in the object-store tier (postcard `tiering::FileTier`).
pub(crate) const TIER: TableDefinition<u64, &[u8]> = TableDefinition::new("tier");
/// (shard, segment id) → the segment's record in the data-reduction index (postcard
/// `reduce_index::Segment`).
pub(crate) const SEGMENTS: TableDefinition<(u16, &[u8]), &[u8]> = TableDefinition::new("segments");
/// (shard, segment id, referrer's ino, referrer's epoch): the segment's referrers, one row each
/// (`reduce_index`: an add or drop writes one row, never the whole set).
pub(crate) const SEGMENT_REFS: TableDefinition<(u16, &[u8], u64, u64), ()> =
    TableDefinition::new("segment_refs");
/// ino → the file's reduce record (postcard `reducing::FileReduce`); it may outlive the file.
pub(crate) const REDUCES: TableDefinition<u64, &[u8]> = TableDefinition::new("reduces");
/// shard → its snapshot state, its freeze and cuts (postcard `snap::ShardSnaps`); no row: none.
pub(crate) const SNAP_SHARD: TableDefinition<u16, &[u8]> = TableDefinition::new("snap_shard");
/// ino → the inode's pre-images, whole (postcard `snap::Versions<Inode>`); no row: none.
pub(crate) const PRE_INODES: TableDefinition<u64, &[u8]> = TableDefinition::new("pre_inodes");
/// (dir, name) → the entry's pre-images, whole (postcard `snap::Versions<(ino, cookie)>`).
pub(crate) const PRE_DIRENTS: TableDefinition<(u64, &[u8]), &[u8]> =
    TableDefinition::new("pre_dirents");
/// ino → the pre-images of its extended attributes, whole (postcard `snap::Versions<Xattrs>`).
pub(crate) const PRE_XATTRS: TableDefinition<u64, &[u8]> = TableDefinition::new("pre_xattrs");
/// ino → the file's data images, whole (postcard `snap::Images`); no row: none.
pub(crate) const IMAGES: TableDefinition<u64, &[u8]> = TableDefinition::new("images");
/// Shard 0's registry: snapshot id → its record (postcard `snap::SnapRecord`).
pub(crate) const SNAPSHOTS: TableDefinition<u64, &[u8]> = TableDefinition::new("snapshots");
/// Values of this node, not of any state machine: never replicated, never in a snapshot.
pub(crate) const NODE: TableDefinition<&str, u64> = TableDefinition::new("node");
/// Builds before shards kept the counters here, with the applied index and the boot count.
const LEGACY_META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Builds before Raft kept the last commands here.
const LEGACY_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");

/// Opens of this store so far (in `NODE`).
pub(crate) const BOOT_COUNT: &str = "boot_count";
/// How many shards the file system was created with (in `NODE`).
pub(crate) const SHARDS: &str = "shards";

/// A redb error as the namespace reports it: corruption as `FsError::Corrupt` (never papered
/// over), anything else as `FsError::Io`.
pub(crate) fn db_error(e: impl Into<redb::Error>) -> FsError {
    match e.into() {
        redb::Error::Corrupted(s) => FsError::Corrupt(s),
        other => FsError::Io(other.to_string()),
    }
}

/// `.db()?` on what redb returns: its error as `db_error` says.
pub(crate) trait Db<T> {
    fn db(self) -> Result<T, FsError>;
}

impl<T, E: Into<redb::Error>> Db<T> for Result<T, E> {
    fn db(self) -> Result<T, FsError> {
        self.map_err(db_error)
    }
}

fn decode_mirrors(bytes: &[u8]) -> Result<Vec<u64>, FsError> {
    postcard::from_bytes(bytes).map_err(|e| FsError::Corrupt(format!("chunk mirrors: {e}")))
}

pub(crate) fn decode_inode(bytes: &[u8]) -> Result<Inode, FsError> {
    postcard::from_bytes(bytes).map_err(|e| FsError::Corrupt(format!("inode: {e}")))
}

fn encode_inode(i: &Inode) -> Result<Vec<u8>, FsError> {
    postcard::to_stdvec(i).map_err(|e| FsError::Io(format!("encode inode: {e}")))
}

/// Creates every table so that read transactions never meet a missing one.
pub(crate) fn create_tables(txn: &WriteTransaction) -> Result<(), FsError> {
    txn.open_table(INODES).db()?;
    txn.open_table(DIRENTS).db()?;
    txn.open_table(DIRINDEX).db()?;
    txn.open_table(COOKIES).db()?;
    txn.open_table(ORPHANS).db()?;
    txn.open_table(CHUNKS).db()?;
    txn.open_table(STRIPES).db()?;
    txn.open_table(CLIENTS).db()?;
    txn.open_table(TXNS).db()?;
    txn.open_table(XATTRS).db()?;
    txn.open_table(TIER).db()?;
    txn.open_table(SEGMENTS).db()?;
    txn.open_table(SEGMENT_REFS).db()?;
    txn.open_table(REDUCES).db()?;
    txn.open_table(SNAP_SHARD).db()?;
    txn.open_table(PRE_INODES).db()?;
    txn.open_table(PRE_DIRENTS).db()?;
    txn.open_table(PRE_XATTRS).db()?;
    txn.open_table(SNAPSHOTS).db()?;
    txn.open_table(IMAGES).db()?;
    txn.open_table(SHARD_META).db()?;
    txn.open_table(SHARD_APPLIED).db()?;
    txn.open_table(SHARD_SESSIONS).db()?;
    txn.open_table(NODE).db()?;
    Ok(())
}

/// Moves a store made before shards into shard 0: its counters, and its boot count into
/// `NODE`. The command log of those builds (`namespace.wal.*` beside the database) is
/// checkpointed at every clean stop; one that still holds commands cannot be read by this
/// build (their format changed), and the caller refuses to start.
pub(crate) fn migrate_legacy(txn: &WriteTransaction) -> Result<bool, FsError> {
    let legacy: Vec<(String, u64)> = {
        let t = txn.open_table(LEGACY_META).db()?;
        let mut v = Vec::new();
        for item in t.iter().db()? {
            let (k, val) = item.db()?;
            v.push((k.value().to_string(), val.value()));
        }
        v
    };
    if legacy.is_empty() {
        txn.delete_table(LEGACY_META).db()?;
        txn.delete_table(LEGACY_LOG).db()?;
        return Ok(false);
    }
    {
        let mut sm = txn.open_table(SHARD_META).db()?;
        let mut node = txn.open_table(NODE).db()?;
        for (k, v) in &legacy {
            if let Some(known) = meta::ALL.into_iter().find(|n| n == k) {
                sm.insert((0u16, known), *v).db()?;
            } else if k == BOOT_COUNT {
                node.insert(BOOT_COUNT, *v).db()?;
            }
        }
        node.insert(SHARDS, 1).db()?;
    }
    txn.delete_table(LEGACY_META).db()?;
    txn.delete_table(LEGACY_LOG).db()?;
    Ok(true)
}

/// The tables of one write transaction, as a shard's `StateStore`.
pub(crate) struct RedbState<'t> {
    shard: u16,
    inodes: Table<'t, u64, &'static [u8]>,
    dirents: Table<'t, (u64, &'static [u8]), (u64, u64)>,
    dirindex: Table<'t, (u64, u64), &'static [u8]>,
    cookies: Table<'t, u64, u64>,
    meta: Table<'t, (u16, &'static str), u64>,
    orphans: Table<'t, u64, ()>,
    chunks: Table<'t, (u64, u64), &'static [u8]>,
    stripes: Table<'t, u64, &'static [u8]>,
    clients: Table<'t, (u64, &'static [u8]), ()>,
    txns: Table<'t, (u16, u128), &'static [u8]>,
    xattrs: Table<'t, u64, &'static [u8]>,
    tier: Table<'t, u64, &'static [u8]>,
    segments: Table<'t, (u16, &'static [u8]), &'static [u8]>,
    segment_refs: Table<'t, (u16, &'static [u8], u64, u64), ()>,
    reduces: Table<'t, u64, &'static [u8]>,
    snaps: Table<'t, u16, &'static [u8]>,
    pre_inodes: Table<'t, u64, &'static [u8]>,
    pre_dirents: Table<'t, (u64, &'static [u8]), &'static [u8]>,
    pre_xattrs: Table<'t, u64, &'static [u8]>,
    snapshots: Table<'t, u64, &'static [u8]>,
    images: Table<'t, u64, &'static [u8]>,
}

impl<'t> RedbState<'t> {
    pub(crate) fn open(txn: &'t WriteTransaction, shard: ShardId) -> Result<Self, FsError> {
        Ok(RedbState {
            shard: shard.0,
            inodes: txn.open_table(INODES).db()?,
            dirents: txn.open_table(DIRENTS).db()?,
            dirindex: txn.open_table(DIRINDEX).db()?,
            cookies: txn.open_table(COOKIES).db()?,
            meta: txn.open_table(SHARD_META).db()?,
            orphans: txn.open_table(ORPHANS).db()?,
            chunks: txn.open_table(CHUNKS).db()?,
            stripes: txn.open_table(STRIPES).db()?,
            clients: txn.open_table(CLIENTS).db()?,
            txns: txn.open_table(TXNS).db()?,
            xattrs: txn.open_table(XATTRS).db()?,
            tier: txn.open_table(TIER).db()?,
            segments: txn.open_table(SEGMENTS).db()?,
            segment_refs: txn.open_table(SEGMENT_REFS).db()?,
            reduces: txn.open_table(REDUCES).db()?,
            snaps: txn.open_table(SNAP_SHARD).db()?,
            pre_inodes: txn.open_table(PRE_INODES).db()?,
            pre_dirents: txn.open_table(PRE_DIRENTS).db()?,
            pre_xattrs: txn.open_table(PRE_XATTRS).db()?,
            snapshots: txn.open_table(SNAPSHOTS).db()?,
            images: txn.open_table(IMAGES).db()?,
        })
    }
}

impl StateStore for RedbState<'_> {
    fn inode(&self, ino: u64) -> Result<Option<Inode>, FsError> {
        match self.inodes.get(ino).db()? {
            Some(v) => Ok(Some(decode_inode(v.value())?)),
            None => Ok(None),
        }
    }
    fn put_inode(&mut self, inode: &Inode) -> Result<(), FsError> {
        let bytes = encode_inode(inode)?;
        self.inodes.insert(inode.ino, bytes.as_slice()).db()?;
        Ok(())
    }
    fn del_inode(&mut self, ino: u64) -> Result<(), FsError> {
        self.inodes.remove(ino).db()?;
        Ok(())
    }
    fn dirent(&self, dir: u64, name: &[u8]) -> Result<Option<(u64, u64)>, FsError> {
        Ok(self.dirents.get((dir, name)).db()?.map(|v| v.value()))
    }
    fn put_dirent(&mut self, dir: u64, name: &[u8], ino: u64, cookie: u64) -> Result<(), FsError> {
        let old = self
            .dirents
            .insert((dir, name), (ino, cookie))
            .db()?
            .map(|v| v.value());
        if let Some((_, old_cookie)) = old {
            if old_cookie != cookie {
                self.dirindex.remove((dir, old_cookie)).db()?;
            }
        }
        self.dirindex.insert((dir, cookie), name).db()?;
        Ok(())
    }
    fn del_dirent(&mut self, dir: u64, name: &[u8]) -> Result<(), FsError> {
        let old = self.dirents.remove((dir, name)).db()?.map(|v| v.value());
        if let Some((_, cookie)) = old {
            self.dirindex.remove((dir, cookie)).db()?;
        }
        Ok(())
    }
    fn dir_has_entry(&self, dir: u64, skip: &dyn Fn(&[u8]) -> bool) -> Result<bool, FsError> {
        for item in self.dirindex.range((dir, 0)..=(dir, u64::MAX)).db()? {
            let (_, name) = item.db()?;
            if !skip(name.value()) {
                return Ok(true);
            }
        }
        Ok(false)
    }
    fn next_cookie(&self, dir: u64) -> Result<u64, FsError> {
        Ok(self
            .cookies
            .get(dir)
            .db()?
            .map(|v| v.value())
            .unwrap_or(FIRST_COOKIE))
    }
    fn set_next_cookie(&mut self, dir: u64, next: Option<u64>) -> Result<(), FsError> {
        match next {
            Some(n) => self.cookies.insert(dir, n).db()?,
            None => self.cookies.remove(dir).db()?,
        };
        Ok(())
    }
    fn meta(&self, key: &'static str) -> Result<u64, FsError> {
        Ok(self
            .meta
            .get((self.shard, key))
            .db()?
            .map(|v| v.value())
            .unwrap_or(0))
    }
    fn set_meta(&mut self, key: &'static str, value: u64) -> Result<(), FsError> {
        self.meta.insert((self.shard, key), value).db()?;
        Ok(())
    }
    fn set_orphan(&mut self, ino: u64, orphan: bool) -> Result<(), FsError> {
        if orphan {
            self.orphans.insert(ino, ()).db()?;
        } else {
            self.orphans.remove(ino).db()?;
        }
        Ok(())
    }
    fn chunks(&self, ino: u64) -> Result<Vec<(u64, Vec<u64>)>, FsError> {
        read_chunks(&self.chunks, ino)
    }
    fn put_chunk(&mut self, ino: u64, chunk: u64, mirrors: Option<&[u64]>) -> Result<(), FsError> {
        match mirrors {
            Some(m) => {
                let bytes = postcard::to_stdvec(m)
                    .map_err(|e| FsError::Io(format!("encode chunk mirrors: {e}")))?;
                self.chunks.insert((ino, chunk), bytes.as_slice()).db()?;
            }
            None => {
                self.chunks.remove((ino, chunk)).db()?;
            }
        }
        Ok(())
    }
    fn stripes(&self, ino: u64) -> Result<Option<FileCode>, FsError> {
        match self.stripes.get(ino).db()? {
            Some(v) => Ok(Some(decode_stripes(v.value())?)),
            None => Ok(None),
        }
    }
    fn put_stripes(&mut self, ino: u64, code: Option<&FileCode>) -> Result<(), FsError> {
        match code {
            Some(c) => {
                let bytes = postcard::to_stdvec(c)
                    .map_err(|e| FsError::Io(format!("encode file code: {e}")))?;
                self.stripes.insert(ino, bytes.as_slice()).db()?;
            }
            None => {
                self.stripes.remove(ino).db()?;
            }
        }
        Ok(())
    }
    fn clients_of(&self, node: u64) -> Result<Vec<Vec<u8>>, FsError> {
        self.check_clients_shard()?;
        let mut out = Vec::new();
        for item in self.clients.range((node, &[][..])..).db()? {
            let (k, _) = item.db()?;
            let (n, owner) = k.value();
            if n != node {
                break;
            }
            out.push(owner.to_vec());
        }
        Ok(out)
    }
    fn put_client(&mut self, node: u64, owner: &[u8], present: bool) -> Result<(), FsError> {
        self.check_clients_shard()?;
        if present {
            self.clients.insert((node, owner), ()).db()?;
        } else {
            self.clients.remove((node, owner)).db()?;
        }
        Ok(())
    }
    fn txn(&self, id: TxnId) -> Result<Option<TxnEntry>, FsError> {
        match self.txns.get((self.shard, id)).db()? {
            Some(v) => Ok(Some(decode_txn(v.value())?)),
            None => Ok(None),
        }
    }
    fn put_txn(&mut self, id: TxnId, entry: Option<&TxnEntry>) -> Result<(), FsError> {
        match entry {
            Some(e) => {
                let bytes = postcard::to_stdvec(e)
                    .map_err(|e| FsError::Io(format!("encode transaction: {e}")))?;
                self.txns.insert((self.shard, id), bytes.as_slice()).db()?;
            }
            None => {
                self.txns.remove((self.shard, id)).db()?;
            }
        }
        Ok(())
    }
    fn locked(&self, key: Key) -> Result<Option<TxnId>, FsError> {
        // Only checkpoints write here; `apply` runs on the in-memory state and its index.
        for item in self
            .txns
            .range((self.shard, 0)..=(self.shard, u128::MAX))
            .db()?
        {
            let (k, v) = item.db()?;
            let e = decode_txn(v.value())?;
            if e.prepared.is_some_and(|p| p.keys.contains(&key)) {
                return Ok(Some(k.value().1));
            }
        }
        Ok(None)
    }
    fn xattrs(&self, ino: u64) -> Result<Option<Xattrs>, FsError> {
        match self.xattrs.get(ino).db()? {
            Some(v) => Ok(Some(decode_xattrs(v.value())?)),
            None => Ok(None),
        }
    }
    fn put_xattrs(&mut self, ino: u64, x: Option<&Xattrs>) -> Result<(), FsError> {
        match x {
            Some(x) if !x.is_empty() => {
                let bytes = postcard::to_stdvec(x)
                    .map_err(|e| FsError::Io(format!("encode xattrs: {e}")))?;
                self.xattrs.insert(ino, bytes.as_slice()).db()?;
            }
            _ => {
                self.xattrs.remove(ino).db()?;
            }
        }
        Ok(())
    }
    fn tier(&self, ino: u64) -> Result<Option<FileTier>, FsError> {
        match self.tier.get(ino).db()? {
            Some(v) => Ok(Some(decode_tier(v.value())?)),
            None => Ok(None),
        }
    }
    fn put_tier(&mut self, ino: u64, t: Option<&FileTier>) -> Result<(), FsError> {
        match t {
            Some(t) => {
                let bytes = postcard::to_stdvec(t)
                    .map_err(|e| FsError::Io(format!("encode tier record: {e}")))?;
                self.tier.insert(ino, bytes.as_slice()).db()?;
            }
            None => {
                self.tier.remove(ino).db()?;
            }
        }
        Ok(())
    }
    fn segment(&self, shard: ShardId, id: &SegmentId) -> Result<Option<Segment>, FsError> {
        self.check_own_shard(shard)?;
        match self.segments.get((shard.0, &id.0[..])).db()? {
            Some(v) => Ok(Some(decode_segment(v.value())?)),
            None => Ok(None),
        }
    }
    fn put_segment(
        &mut self,
        shard: ShardId,
        id: &SegmentId,
        seg: Option<&Segment>,
    ) -> Result<(), FsError> {
        self.check_own_shard(shard)?;
        match seg {
            Some(g) => {
                let bytes = postcard::to_stdvec(g)
                    .map_err(|e| FsError::Io(format!("encode segment record: {e}")))?;
                self.segments
                    .insert((shard.0, &id.0[..]), bytes.as_slice())
                    .db()?;
            }
            None => {
                self.segments.remove((shard.0, &id.0[..])).db()?;
            }
        }
        Ok(())
    }
    fn referrers(
        &self,
        shard: ShardId,
        id: &SegmentId,
        max: usize,
    ) -> Result<Vec<Referrer>, FsError> {
        self.check_own_shard(shard)?;
        let lo = (shard.0, &id.0[..], 0u64, 0u64);
        let hi = (shard.0, &id.0[..], u64::MAX, u64::MAX);
        let mut out = Vec::new();
        for item in self.segment_refs.range(lo..=hi).db()?.take(max) {
            let (k, _) = item.db()?;
            let (_, _, ino, epoch) = k.value();
            out.push(Referrer { ino, epoch });
        }
        Ok(out)
    }
    fn has_referrer(&self, shard: ShardId, id: &SegmentId, r: Referrer) -> Result<bool, FsError> {
        self.check_own_shard(shard)?;
        Ok(self
            .segment_refs
            .get((shard.0, &id.0[..], r.ino, r.epoch))
            .db()?
            .is_some())
    }
    fn put_referrer(
        &mut self,
        shard: ShardId,
        id: &SegmentId,
        r: Referrer,
        present: bool,
    ) -> Result<(), FsError> {
        self.check_own_shard(shard)?;
        let key = (shard.0, &id.0[..], r.ino, r.epoch);
        if present {
            self.segment_refs.insert(key, ()).db()?;
        } else {
            self.segment_refs.remove(key).db()?;
        }
        Ok(())
    }
    fn reduce(&self, ino: u64) -> Result<Option<FileReduce>, FsError> {
        match self.reduces.get(ino).db()? {
            Some(v) => Ok(Some(decode_reduce(v.value())?)),
            None => Ok(None),
        }
    }
    fn put_reduce(&mut self, ino: u64, r: Option<&FileReduce>) -> Result<(), FsError> {
        match r {
            Some(r) => {
                let bytes = postcard::to_stdvec(r)
                    .map_err(|e| FsError::Io(format!("encode reduce record: {e}")))?;
                self.reduces.insert(ino, bytes.as_slice()).db()?;
            }
            None => {
                self.reduces.remove(ino).db()?;
            }
        }
        Ok(())
    }
    fn shard_snaps(&self) -> Result<ShardSnaps, FsError> {
        match self.snaps.get(self.shard).db()? {
            Some(v) => decode_snaps(v.value()),
            None => Ok(ShardSnaps::default()),
        }
    }
    /// A shard with no freeze and no cut keeps no row, as one that never had a snapshot.
    fn put_shard_snaps(&mut self, snaps: &ShardSnaps) -> Result<(), FsError> {
        if *snaps == ShardSnaps::default() {
            self.snaps.remove(self.shard).db()?;
        } else {
            let bytes = postcard::to_stdvec(snaps)
                .map_err(|e| FsError::Io(format!("encode snapshot state: {e}")))?;
            self.snaps.insert(self.shard, bytes.as_slice()).db()?;
        }
        Ok(())
    }
    fn pre_inode(&self, ino: u64) -> Result<Versions<Inode>, FsError> {
        versions(self.pre_inodes.get(ino).db()?, "inode pre-images")
    }
    fn put_pre_inode(&mut self, ino: u64, v: &Versions<Inode>) -> Result<(), FsError> {
        put_versions(&mut self.pre_inodes, ino, v, "inode pre-images")
    }
    fn pre_dirent(&self, dir: u64, name: &[u8]) -> Result<Versions<(u64, u64)>, FsError> {
        versions(self.pre_dirents.get((dir, name)).db()?, "entry pre-images")
    }
    fn put_pre_dirent(
        &mut self,
        dir: u64,
        name: &[u8],
        v: &Versions<(u64, u64)>,
    ) -> Result<(), FsError> {
        put_versions(&mut self.pre_dirents, (dir, name), v, "entry pre-images")
    }
    fn pre_xattrs(&self, ino: u64) -> Result<Versions<Xattrs>, FsError> {
        versions(self.pre_xattrs.get(ino).db()?, "xattr pre-images")
    }
    fn put_pre_xattrs(&mut self, ino: u64, v: &Versions<Xattrs>) -> Result<(), FsError> {
        put_versions(&mut self.pre_xattrs, ino, v, "xattr pre-images")
    }
    /// A walk of the shard's pre-images, in `PreKey` order: `apply` runs over the state in
    /// memory (whose `pre_by_snap` answers this at once), never over these tables, so this is
    /// here to make the store whole, not fast.
    fn pre_keys_at(&self, snap: SnapId, max: usize) -> Result<Vec<PreKey>, FsError> {
        let r = ShardId(self.shard).inos();
        let (lo, hi) = (*r.start(), *r.end());
        let mut out = Vec::new();
        for item in self.pre_inodes.range(lo..=hi).db()? {
            let (k, v) = item.db()?;
            let v: Versions<Inode> = decode_versions(v.value(), "inode pre-images")?;
            if v.contains_key(&snap) {
                out.push(PreKey::Inode(k.value()));
            }
        }
        for item in self.pre_dirents.range((lo, &[][..])..).db()? {
            let (k, v) = item.db()?;
            let (dir, name) = k.value();
            if dir > hi {
                break;
            }
            let v: Versions<(u64, u64)> = decode_versions(v.value(), "entry pre-images")?;
            if v.contains_key(&snap) {
                out.push(PreKey::Entry(dir, name.to_vec()));
            }
        }
        for item in self.pre_xattrs.range(lo..=hi).db()? {
            let (k, v) = item.db()?;
            let v: Versions<Xattrs> = decode_versions(v.value(), "xattr pre-images")?;
            if v.contains_key(&snap) {
                out.push(PreKey::Xattrs(k.value()));
            }
        }
        out.truncate(max);
        Ok(out)
    }
    /// Shard 0's; another shard has none.
    fn snap_records(&self) -> Result<Registry, FsError> {
        let mut out = Registry::new();
        if self.shard != 0 {
            return Ok(out);
        }
        for item in self.snapshots.iter().db()? {
            let (k, v) = item.db()?;
            out.insert(k.value(), decode_snap_record(v.value())?);
        }
        Ok(out)
    }
    fn put_snap_record(&mut self, snap: SnapId, r: Option<&SnapRecord>) -> Result<(), FsError> {
        if self.shard != 0 {
            return Err(FsError::Invalid);
        }
        match r {
            Some(r) => {
                let bytes = postcard::to_stdvec(r)
                    .map_err(|e| FsError::Io(format!("encode snapshot record: {e}")))?;
                self.snapshots.insert(snap, bytes.as_slice()).db()?;
            }
            None => {
                self.snapshots.remove(snap).db()?;
            }
        }
        Ok(())
    }
    fn images(&self, ino: u64) -> Result<Images, FsError> {
        match self.images.get(ino).db()? {
            Some(v) => decode_images(v.value()),
            None => Ok(Images::new()),
        }
    }
    /// Whole, as pre-images are; none leaves no row.
    fn put_images(&mut self, ino: u64, v: &Images) -> Result<(), FsError> {
        if v.is_empty() {
            self.images.remove(ino).db()?;
        } else {
            let bytes = postcard::to_stdvec(v)
                .map_err(|e| FsError::Io(format!("encode data images: {e}")))?;
            self.images.insert(ino, bytes.as_slice()).db()?;
        }
        Ok(())
    }
}

fn decode_images(bytes: &[u8]) -> Result<Images, FsError> {
    postcard::from_bytes(bytes).map_err(|e| FsError::Corrupt(format!("data images: {e}")))
}

fn decode_snap_record(bytes: &[u8]) -> Result<SnapRecord, FsError> {
    postcard::from_bytes(bytes).map_err(|e| FsError::Corrupt(format!("snapshot record: {e}")))
}

fn decode_snaps(bytes: &[u8]) -> Result<ShardSnaps, FsError> {
    postcard::from_bytes(bytes).map_err(|e| FsError::Corrupt(format!("snapshot state: {e}")))
}

fn decode_versions<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: &str,
) -> Result<Versions<T>, FsError> {
    postcard::from_bytes(bytes).map_err(|e| FsError::Corrupt(format!("{what}: {e}")))
}

/// A key's pre-images as its row holds them (no row: none).
fn versions<T: serde::de::DeserializeOwned>(
    row: Option<AccessGuard<'_, &'static [u8]>>,
    what: &str,
) -> Result<Versions<T>, FsError> {
    match row {
        Some(v) => decode_versions(v.value(), what),
        None => Ok(Versions::new()),
    }
}

/// Stores a key's pre-images whole; none leaves no row.
fn put_versions<'k, K: redb::Key + 'static, T: serde::Serialize>(
    t: &mut Table<'_, K, &'static [u8]>,
    key: impl std::borrow::Borrow<K::SelfType<'k>>,
    v: &Versions<T>,
    what: &str,
) -> Result<(), FsError> {
    if v.is_empty() {
        t.remove(key).db()?;
    } else {
        let bytes =
            postcard::to_stdvec(v).map_err(|e| FsError::Io(format!("encode {what}: {e}")))?;
        t.insert(key, bytes.as_slice()).db()?;
    }
    Ok(())
}

fn decode_reduce(bytes: &[u8]) -> Result<FileReduce, FsError> {
    postcard::from_bytes(bytes).map_err(|e| FsError::Corrupt(format!("reduce record: {e}")))
}

/// A segment row of either form (`Segment::decode`: rows written before segments had a tier
/// state load as segments with none).
fn decode_segment(bytes: &[u8]) -> Result<Segment, FsError> {
    Segment::decode(bytes).map_err(|e| FsError::Corrupt(format!("segment record: {e}")))
}

/// A segment id as a key holds it (32 bytes, or the table is corrupt).
fn segment_id(bytes: &[u8]) -> Result<SegmentId, FsError> {
    bytes
        .try_into()
        .map(SegmentId)
        .map_err(|_| FsError::Corrupt(format!("segment id of {} bytes", bytes.len())))
}

fn decode_tier(bytes: &[u8]) -> Result<FileTier, FsError> {
    /// A record as the first release with a tier wrote it (before eviction).
    #[derive(serde::Deserialize)]
    struct FileTierV1 {
        copy: Option<meta_core::TierCopy>,
        upload: Option<meta_core::TierUpload>,
        doomed: Vec<meta_core::TierDoomed>,
    }
    match postcard::from_bytes::<FileTier>(bytes) {
        Ok(t) => Ok(t),
        Err(e) => match postcard::from_bytes::<FileTierV1>(bytes) {
            Ok(v1) => Ok(FileTier {
                copy: v1.copy,
                upload: v1.upload,
                doomed: v1.doomed,
                ..FileTier::default()
            }),
            Err(_) => Err(FsError::Corrupt(format!("tier record: {e}"))),
        },
    }
}

fn decode_xattrs(bytes: &[u8]) -> Result<Xattrs, FsError> {
    postcard::from_bytes(bytes).map_err(|e| FsError::Corrupt(format!("xattrs: {e}")))
}

fn decode_txn(bytes: &[u8]) -> Result<TxnEntry, FsError> {
    postcard::from_bytes(bytes).map_err(|e| FsError::Corrupt(format!("transaction: {e}")))
}

impl RedbState<'_> {
    /// A shard's checkpoint writes its own index records only (each command names its shard:
    /// one that is not this one is a bug, not something to write under another's key).
    fn check_own_shard(&self, shard: ShardId) -> Result<(), FsError> {
        if shard.0 != self.shard {
            return Err(FsError::Corrupt(format!(
                "index record of {shard} written by shard {}",
                self.shard
            )));
        }
        Ok(())
    }

    fn check_clients_shard(&self) -> Result<(), FsError> {
        if self.shard != 0 {
            return Err(FsError::Corrupt(format!(
                "client records belong to shard 0, not {}",
                self.shard
            )));
        }
        Ok(())
    }
}

fn decode_stripes(bytes: &[u8]) -> Result<FileCode, FsError> {
    postcard::from_bytes(bytes).map_err(|e| FsError::Corrupt(format!("file code: {e}")))
}

fn read_chunks<T: ReadableTable<(u64, u64), &'static [u8]>>(
    t: &T,
    ino: u64,
) -> Result<Vec<(u64, Vec<u64>)>, FsError> {
    let mut out = Vec::new();
    for item in t.range((ino, 0)..=(ino, u64::MAX)).db()? {
        let (k, v) = item.db()?;
        out.push((k.value().1, decode_mirrors(v.value())?));
    }
    Ok(out)
}

/// Deletes every row of `shard` (before a snapshot's state is written in its place).
pub(crate) fn delete_shard(txn: &WriteTransaction, shard: ShardId) -> Result<(), FsError> {
    let r = shard.inos();
    let (lo, hi) = (*r.start(), *r.end());
    {
        let mut t = txn.open_table(INODES).db()?;
        t.retain_in(lo..=hi, |_, _| false).db()?;
    }
    {
        let mut t = txn.open_table(COOKIES).db()?;
        t.retain_in(lo..=hi, |_, _| false).db()?;
    }
    {
        let mut t = txn.open_table(ORPHANS).db()?;
        t.retain_in(lo..=hi, |_, _| false).db()?;
    }
    {
        let mut t = txn.open_table(STRIPES).db()?;
        t.retain_in(lo..=hi, |_, _| false).db()?;
    }
    {
        let mut t = txn.open_table(XATTRS).db()?;
        t.retain_in(lo..=hi, |_, _| false).db()?;
    }
    {
        let mut t = txn.open_table(TIER).db()?;
        t.retain_in(lo..=hi, |_, _| false).db()?;
    }
    {
        let mut t = txn.open_table(REDUCES).db()?;
        t.retain_in(lo..=hi, |_, _| false).db()?;
    }
    {
        let mut t = txn.open_table(PRE_INODES).db()?;
        t.retain_in(lo..=hi, |_, _| false).db()?;
    }
    {
        let mut t = txn.open_table(PRE_XATTRS).db()?;
        t.retain_in(lo..=hi, |_, _| false).db()?;
    }
    {
        let mut t = txn.open_table(IMAGES).db()?;
        t.retain_in(lo..=hi, |_, _| false).db()?;
    }
    {
        let mut t = txn.open_table(DIRINDEX).db()?;
        t.retain_in((lo, 0)..=(hi, u64::MAX), |_, _| false).db()?;
    }
    {
        let mut t = txn.open_table(CHUNKS).db()?;
        t.retain_in((lo, 0)..=(hi, u64::MAX), |_, _| false).db()?;
    }
    {
        let mut t = txn.open_table(DIRENTS).db()?;
        t.retain(|(dir, _), _| !(lo..=hi).contains(&dir)).db()?;
    }
    {
        // Names have no greatest value to end a range with: as `DIRENTS`.
        let mut t = txn.open_table(PRE_DIRENTS).db()?;
        t.retain(|(dir, _), _| !(lo..=hi).contains(&dir)).db()?;
    }
    txn.open_table(SNAP_SHARD).db()?.remove(shard.0).db()?;
    {
        let mut t = txn.open_table(SHARD_META).db()?;
        t.retain(|(s, _), _| s != shard.0).db()?;
    }
    {
        let mut t = txn.open_table(TXNS).db()?;
        t.retain_in((shard.0, 0)..=(shard.0, u128::MAX), |_, _| false)
            .db()?;
    }
    {
        // Ids are 32 bytes: every one of the shard's sorts at or below 32 × 0xff.
        let top = [0xffu8; 32];
        let mut t = txn.open_table(SEGMENTS).db()?;
        t.retain_in((shard.0, &[][..])..=(shard.0, &top[..]), |_, _| false)
            .db()?;
        let mut t = txn.open_table(SEGMENT_REFS).db()?;
        let (lo, hi) = (
            (shard.0, &[][..], 0, 0),
            (shard.0, &top[..], u64::MAX, u64::MAX),
        );
        t.retain_in(lo..=hi, |_, _| false).db()?;
    }
    if shard.0 == 0 {
        let mut t = txn.open_table(CLIENTS).db()?;
        t.retain(|_, _| false).db()?;
        let mut t = txn.open_table(SNAPSHOTS).db()?;
        t.retain(|_, _| false).db()?;
    }
    Ok(())
}

/// Writes the whole of `s` into a shard's (emptied) rows.
pub(crate) fn write_whole(st: &mut RedbState<'_>, s: &MemState) -> Result<(), FsError> {
    for i in s.inodes.values() {
        st.put_inode(i)?;
    }
    for ((dir, name), (ino, cookie)) in &s.dirents {
        st.put_dirent(*dir, name, *ino, *cookie)?;
    }
    for (dir, next) in &s.cookies {
        st.set_next_cookie(*dir, Some(*next))?;
    }
    for (k, v) in &s.meta {
        st.set_meta(k, *v)?;
    }
    for ino in s.orphans.keys() {
        st.set_orphan(*ino, true)?;
    }
    for ((ino, chunk), m) in &s.chunks {
        st.put_chunk(*ino, *chunk, Some(m))?;
    }
    for (ino, c) in &s.stripes {
        st.put_stripes(*ino, Some(c))?;
    }
    for (node, owner) in &s.clients {
        st.put_client(*node, owner, true)?;
    }
    for (id, e) in &s.txns {
        st.put_txn(*id, Some(e))?;
    }
    for (ino, x) in &s.xattrs {
        st.put_xattrs(*ino, Some(x))?;
    }
    for (ino, t) in &s.tier {
        st.put_tier(*ino, Some(t))?;
    }
    let shard = ShardId(st.shard);
    for (id, g) in &s.segments {
        st.put_segment(shard, id, Some(g))?;
    }
    for (id, r) in &s.referrers {
        st.put_referrer(shard, id, *r, true)?;
    }
    for (ino, r) in &s.reduces {
        st.put_reduce(*ino, Some(r))?;
    }
    st.put_shard_snaps(&s.snaps)?;
    for (ino, v) in &s.pre_inodes {
        st.put_pre_inode(*ino, v)?;
    }
    for ((dir, name), v) in &s.pre_dirents {
        st.put_pre_dirent(*dir, name, v)?;
    }
    for (ino, v) in &s.pre_xattrs {
        st.put_pre_xattrs(*ino, v)?;
    }
    for (snap, r) in &s.registry {
        st.put_snap_record(*snap, Some(r))?;
    }
    for (ino, v) in &s.images {
        st.put_images(*ino, v)?;
    }
    Ok(())
}

/// Records the log id (and membership) a shard's checkpoint holds.
pub(crate) fn set_applied(
    txn: &WriteTransaction,
    shard: ShardId,
    applied: &[u8],
) -> Result<(), FsError> {
    txn.open_table(SHARD_APPLIED)
        .db()?
        .insert(shard.0, applied)
        .db()?;
    Ok(())
}

pub(crate) fn set_sessions(
    txn: &WriteTransaction,
    shard: ShardId,
    sessions: &[u8],
) -> Result<(), FsError> {
    txn.open_table(SHARD_SESSIONS)
        .db()?
        .insert(shard.0, sessions)
        .db()?;
    Ok(())
}

/// A shard's state as loaded, with the encoded log id its checkpoint applied (if any).
pub(crate) type Loaded = HashMap<ShardId, (MemState, Option<Vec<u8>>)>;

/// Each of `shards`' state as its last checkpoint left it, and what that checkpoint applied
/// (`None` for a shard never checkpointed). Rows of other shards (held by other nodes) are
/// skipped.
pub(crate) fn load_shards(txn: &ReadTransaction, shards: &[ShardId]) -> Result<Loaded, FsError> {
    let mut m: Loaded = shards
        .iter()
        .map(|s| (*s, (MemState::default(), None)))
        .collect();
    fn of(m: &mut Loaded, ino: u64) -> Option<&mut MemState> {
        m.get_mut(&ShardId::of_ino(ino)).map(|(s, _)| s)
    }
    for item in txn.open_table(INODES).db()?.iter().db()? {
        let (k, v) = item.db()?;
        if let Some(s) = of(&mut m, k.value()) {
            s.inodes.insert(k.value(), decode_inode(v.value())?);
        }
    }
    for item in txn.open_table(DIRENTS).db()?.iter().db()? {
        let (k, v) = item.db()?;
        let (dir, name) = k.value();
        if let Some(s) = of(&mut m, dir) {
            s.dirents.insert((dir, name.to_vec()), v.value());
        }
    }
    for item in txn.open_table(DIRINDEX).db()?.iter().db()? {
        let (k, name) = item.db()?;
        if let Some(s) = of(&mut m, k.value().0) {
            s.dirindex.insert(k.value(), name.value().to_vec());
        }
    }
    for item in txn.open_table(COOKIES).db()?.iter().db()? {
        let (k, v) = item.db()?;
        if let Some(s) = of(&mut m, k.value()) {
            s.cookies.insert(k.value(), v.value());
        }
    }
    for item in txn.open_table(ORPHANS).db()?.iter().db()? {
        let ino = item.db()?.0.value();
        if let Some(s) = of(&mut m, ino) {
            s.orphans.insert(ino, ());
        }
    }
    for item in txn.open_table(CHUNKS).db()?.iter().db()? {
        let (k, v) = item.db()?;
        if let Some(s) = of(&mut m, k.value().0) {
            s.chunks.insert(k.value(), decode_mirrors(v.value())?);
        }
    }
    for item in txn.open_table(STRIPES).db()?.iter().db()? {
        let (k, v) = item.db()?;
        if let Some(s) = of(&mut m, k.value()) {
            s.stripes.insert(k.value(), decode_stripes(v.value())?);
        }
    }
    for item in txn.open_table(XATTRS).db()?.iter().db()? {
        let (k, v) = item.db()?;
        if let Some(s) = of(&mut m, k.value()) {
            s.xattrs.insert(k.value(), decode_xattrs(v.value())?);
        }
    }
    for item in txn.open_table(TIER).db()?.iter().db()? {
        let (k, v) = item.db()?;
        if let Some(s) = of(&mut m, k.value()) {
            s.tier.insert(k.value(), decode_tier(v.value())?);
        }
    }
    for item in txn.open_table(REDUCES).db()?.iter().db()? {
        let (k, v) = item.db()?;
        if let Some(s) = of(&mut m, k.value()) {
            s.reduces.insert(k.value(), decode_reduce(v.value())?);
        }
    }
    for item in txn.open_table(PRE_INODES).db()?.iter().db()? {
        let (k, v) = item.db()?;
        if let Some(s) = of(&mut m, k.value()) {
            let v = decode_versions(v.value(), "inode pre-images")?;
            s.pre_inodes.insert(k.value(), v);
        }
    }
    for item in txn.open_table(PRE_DIRENTS).db()?.iter().db()? {
        let (k, v) = item.db()?;
        let (dir, name) = k.value();
        if let Some(s) = of(&mut m, dir) {
            let v = decode_versions(v.value(), "entry pre-images")?;
            s.pre_dirents.insert((dir, name.to_vec()), v);
        }
    }
    for item in txn.open_table(PRE_XATTRS).db()?.iter().db()? {
        let (k, v) = item.db()?;
        if let Some(s) = of(&mut m, k.value()) {
            let v = decode_versions(v.value(), "xattr pre-images")?;
            s.pre_xattrs.insert(k.value(), v);
        }
    }
    for item in txn.open_table(IMAGES).db()?.iter().db()? {
        let (k, v) = item.db()?;
        if let Some(s) = of(&mut m, k.value()) {
            s.images.insert(k.value(), decode_images(v.value())?);
        }
    }
    for item in txn.open_table(SNAP_SHARD).db()?.iter().db()? {
        let (k, v) = item.db()?;
        if let Some((s, _)) = m.get_mut(&ShardId(k.value())) {
            s.snaps = decode_snaps(v.value())?;
        }
    }
    if let Some((s, _)) = m.get_mut(&ShardId(0)) {
        for item in txn.open_table(CLIENTS).db()?.iter().db()? {
            let (k, _) = item.db()?;
            let (node, owner) = k.value();
            s.clients.insert((node, owner.to_vec()));
        }
        for item in txn.open_table(SNAPSHOTS).db()?.iter().db()? {
            let (k, v) = item.db()?;
            s.registry.insert(k.value(), decode_snap_record(v.value())?);
        }
    }
    for item in txn.open_table(SHARD_META).db()?.iter().db()? {
        let (k, v) = item.db()?;
        let (shard, key) = k.value();
        if let Some((s, _)) = m.get_mut(&ShardId(shard)) {
            if let Some(known) = meta::ALL.into_iter().find(|n| *n == key) {
                s.meta.insert(known, v.value());
            }
        }
    }
    for item in txn.open_table(TXNS).db()?.iter().db()? {
        let (k, v) = item.db()?;
        let (shard, id) = k.value();
        if let Some((s, _)) = m.get_mut(&ShardId(shard)) {
            s.txns.insert(id, decode_txn(v.value())?);
        }
    }
    for item in txn.open_table(SEGMENTS).db()?.iter().db()? {
        let (k, v) = item.db()?;
        let (shard, id) = k.value();
        if let Some((s, _)) = m.get_mut(&ShardId(shard)) {
            s.segments
                .insert(segment_id(id)?, decode_segment(v.value())?);
        }
    }
    for item in txn.open_table(SEGMENT_REFS).db()?.iter().db()? {
        let (k, _) = item.db()?;
        let (shard, id, ino, epoch) = k.value();
        if let Some((s, _)) = m.get_mut(&ShardId(shard)) {
            s.referrers
                .insert((segment_id(id)?, Referrer { ino, epoch }));
        }
    }
    for (s, _) in m.values_mut() {
        s.index_locks();
        s.index_orphan_dirs();
        s.index_chunks();
        s.index_pre_images();
    }
    for item in txn.open_table(SHARD_APPLIED).db()?.iter().db()? {
        let (k, v) = item.db()?;
        if let Some((_, a)) = m.get_mut(&ShardId(k.value())) {
            *a = Some(v.value().to_vec());
        }
    }
    for item in txn.open_table(SHARD_SESSIONS).db()?.iter().db()? {
        let (k, v) = item.db()?;
        if let Some((s, _)) = m.get_mut(&ShardId(k.value())) {
            s.sessions = meta_core::sessions::Sessions::decode(v.value())?;
        }
    }
    Ok(m)
}
