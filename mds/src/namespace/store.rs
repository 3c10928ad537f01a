//! The redb tables that hold checkpoints of the local shards' state machines, and the
//! write-side `StateStore` over them (`crate::raft::checkpoint` writes them).
//!
//! Every key carries an inode number (an inode, a directory's entries, a file's chunks), and an
//! inode number carries its shard (`shard`), so a shard's rows are one range of each table: a
//! snapshot replacing a shard deletes those ranges and writes them again. What is per shard
//! beyond that (its counters, the log id it applied) is keyed by the shard.

use std::collections::HashMap;

use redb::{ReadTransaction, ReadableTable, Table, TableDefinition, WriteTransaction};

use super::coding::FileCode;
use super::error::FsError;
use super::shard::{Key, ShardId};
use super::state::{meta, MemState, StateStore};
use super::txn::{TxnEntry, TxnId};
use super::types::{Inode, FIRST_COOKIE};

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
/// shard → its table of recent results by proposer (postcard, `raft::Sessions`).
pub(crate) const SHARD_SESSIONS: TableDefinition<u16, &[u8]> =
    TableDefinition::new("shard_sessions");
/// (shard, transaction) → that shard's record of a cross-shard transaction (postcard
/// `txn::TxnEntry`).
pub(crate) const TXNS: TableDefinition<(u16, u128), &[u8]> = TableDefinition::new("txns");
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
    txn.open_table(INODES)?;
    txn.open_table(DIRENTS)?;
    txn.open_table(DIRINDEX)?;
    txn.open_table(COOKIES)?;
    txn.open_table(ORPHANS)?;
    txn.open_table(CHUNKS)?;
    txn.open_table(STRIPES)?;
    txn.open_table(CLIENTS)?;
    txn.open_table(TXNS)?;
    txn.open_table(SHARD_META)?;
    txn.open_table(SHARD_APPLIED)?;
    txn.open_table(SHARD_SESSIONS)?;
    txn.open_table(NODE)?;
    Ok(())
}

/// Moves a store made before shards into shard 0: its counters, and its boot count into
/// `NODE`. The command log of those builds (`namespace.wal.*` beside the database) is
/// checkpointed at every clean stop; one that still holds commands cannot be read by this
/// build (their format changed), and the caller refuses to start.
pub(crate) fn migrate_legacy(txn: &WriteTransaction) -> Result<bool, FsError> {
    let legacy: Vec<(String, u64)> = {
        let t = txn.open_table(LEGACY_META)?;
        let mut v = Vec::new();
        for item in t.iter()? {
            let (k, val) = item?;
            v.push((k.value().to_string(), val.value()));
        }
        v
    };
    if legacy.is_empty() {
        txn.delete_table(LEGACY_META)?;
        txn.delete_table(LEGACY_LOG)?;
        return Ok(false);
    }
    {
        let mut sm = txn.open_table(SHARD_META)?;
        let mut node = txn.open_table(NODE)?;
        for (k, v) in &legacy {
            if let Some(known) = meta::ALL.into_iter().find(|n| n == k) {
                sm.insert((0u16, known), *v)?;
            } else if k == BOOT_COUNT {
                node.insert(BOOT_COUNT, *v)?;
            }
        }
        node.insert(SHARDS, 1)?;
    }
    txn.delete_table(LEGACY_META)?;
    txn.delete_table(LEGACY_LOG)?;
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
}

impl<'t> RedbState<'t> {
    pub(crate) fn open(txn: &'t WriteTransaction, shard: ShardId) -> Result<Self, FsError> {
        Ok(RedbState {
            shard: shard.0,
            inodes: txn.open_table(INODES)?,
            dirents: txn.open_table(DIRENTS)?,
            dirindex: txn.open_table(DIRINDEX)?,
            cookies: txn.open_table(COOKIES)?,
            meta: txn.open_table(SHARD_META)?,
            orphans: txn.open_table(ORPHANS)?,
            chunks: txn.open_table(CHUNKS)?,
            stripes: txn.open_table(STRIPES)?,
            clients: txn.open_table(CLIENTS)?,
            txns: txn.open_table(TXNS)?,
        })
    }
}

impl StateStore for RedbState<'_> {
    fn inode(&self, ino: u64) -> Result<Option<Inode>, FsError> {
        match self.inodes.get(ino)? {
            Some(v) => Ok(Some(decode_inode(v.value())?)),
            None => Ok(None),
        }
    }
    fn put_inode(&mut self, inode: &Inode) -> Result<(), FsError> {
        let bytes = encode_inode(inode)?;
        self.inodes.insert(inode.ino, bytes.as_slice())?;
        Ok(())
    }
    fn del_inode(&mut self, ino: u64) -> Result<(), FsError> {
        self.inodes.remove(ino)?;
        Ok(())
    }
    fn dirent(&self, dir: u64, name: &[u8]) -> Result<Option<(u64, u64)>, FsError> {
        Ok(self.dirents.get((dir, name))?.map(|v| v.value()))
    }
    fn put_dirent(&mut self, dir: u64, name: &[u8], ino: u64, cookie: u64) -> Result<(), FsError> {
        let old = self
            .dirents
            .insert((dir, name), (ino, cookie))?
            .map(|v| v.value());
        if let Some((_, old_cookie)) = old {
            if old_cookie != cookie {
                self.dirindex.remove((dir, old_cookie))?;
            }
        }
        self.dirindex.insert((dir, cookie), name)?;
        Ok(())
    }
    fn del_dirent(&mut self, dir: u64, name: &[u8]) -> Result<(), FsError> {
        let old = self.dirents.remove((dir, name))?.map(|v| v.value());
        if let Some((_, cookie)) = old {
            self.dirindex.remove((dir, cookie))?;
        }
        Ok(())
    }
    fn dir_has_entry(&self, dir: u64, skip: &dyn Fn(&[u8]) -> bool) -> Result<bool, FsError> {
        for item in self.dirindex.range((dir, 0)..=(dir, u64::MAX))? {
            let (_, name) = item?;
            if !skip(name.value()) {
                return Ok(true);
            }
        }
        Ok(false)
    }
    fn next_cookie(&self, dir: u64) -> Result<u64, FsError> {
        Ok(self
            .cookies
            .get(dir)?
            .map(|v| v.value())
            .unwrap_or(FIRST_COOKIE))
    }
    fn set_next_cookie(&mut self, dir: u64, next: Option<u64>) -> Result<(), FsError> {
        match next {
            Some(n) => self.cookies.insert(dir, n)?,
            None => self.cookies.remove(dir)?,
        };
        Ok(())
    }
    fn meta(&self, key: &'static str) -> Result<u64, FsError> {
        Ok(self
            .meta
            .get((self.shard, key))?
            .map(|v| v.value())
            .unwrap_or(0))
    }
    fn set_meta(&mut self, key: &'static str, value: u64) -> Result<(), FsError> {
        self.meta.insert((self.shard, key), value)?;
        Ok(())
    }
    fn set_orphan(&mut self, ino: u64, orphan: bool) -> Result<(), FsError> {
        if orphan {
            self.orphans.insert(ino, ())?;
        } else {
            self.orphans.remove(ino)?;
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
                self.chunks.insert((ino, chunk), bytes.as_slice())?;
            }
            None => {
                self.chunks.remove((ino, chunk))?;
            }
        }
        Ok(())
    }
    fn stripes(&self, ino: u64) -> Result<Option<FileCode>, FsError> {
        match self.stripes.get(ino)? {
            Some(v) => Ok(Some(decode_stripes(v.value())?)),
            None => Ok(None),
        }
    }
    fn put_stripes(&mut self, ino: u64, code: Option<&FileCode>) -> Result<(), FsError> {
        match code {
            Some(c) => {
                let bytes = postcard::to_stdvec(c)
                    .map_err(|e| FsError::Io(format!("encode file code: {e}")))?;
                self.stripes.insert(ino, bytes.as_slice())?;
            }
            None => {
                self.stripes.remove(ino)?;
            }
        }
        Ok(())
    }
    fn clients_of(&self, node: u64) -> Result<Vec<Vec<u8>>, FsError> {
        self.check_clients_shard()?;
        let mut out = Vec::new();
        for item in self.clients.range((node, &[][..])..)? {
            let (k, _) = item?;
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
            self.clients.insert((node, owner), ())?;
        } else {
            self.clients.remove((node, owner))?;
        }
        Ok(())
    }
    fn txn(&self, id: TxnId) -> Result<Option<TxnEntry>, FsError> {
        match self.txns.get((self.shard, id))? {
            Some(v) => Ok(Some(decode_txn(v.value())?)),
            None => Ok(None),
        }
    }
    fn put_txn(&mut self, id: TxnId, entry: Option<&TxnEntry>) -> Result<(), FsError> {
        match entry {
            Some(e) => {
                let bytes = postcard::to_stdvec(e)
                    .map_err(|e| FsError::Io(format!("encode transaction: {e}")))?;
                self.txns.insert((self.shard, id), bytes.as_slice())?;
            }
            None => {
                self.txns.remove((self.shard, id))?;
            }
        }
        Ok(())
    }
    fn locked(&self, key: Key) -> Result<Option<TxnId>, FsError> {
        // Only checkpoints write here; `apply` runs on the in-memory state and its index.
        for item in self.txns.range((self.shard, 0)..=(self.shard, u128::MAX))? {
            let (k, v) = item?;
            let e = decode_txn(v.value())?;
            if e.prepared.is_some_and(|p| p.keys.contains(&key)) {
                return Ok(Some(k.value().1));
            }
        }
        Ok(None)
    }
}

fn decode_txn(bytes: &[u8]) -> Result<TxnEntry, FsError> {
    postcard::from_bytes(bytes).map_err(|e| FsError::Corrupt(format!("transaction: {e}")))
}

impl RedbState<'_> {
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
    for item in t.range((ino, 0)..=(ino, u64::MAX))? {
        let (k, v) = item?;
        out.push((k.value().1, decode_mirrors(v.value())?));
    }
    Ok(out)
}

/// Deletes every row of `shard` (before a snapshot's state is written in its place).
pub(crate) fn delete_shard(txn: &WriteTransaction, shard: ShardId) -> Result<(), FsError> {
    let r = shard.inos();
    let (lo, hi) = (*r.start(), *r.end());
    {
        let mut t = txn.open_table(INODES)?;
        t.retain_in(lo..=hi, |_, _| false)?;
    }
    {
        let mut t = txn.open_table(COOKIES)?;
        t.retain_in(lo..=hi, |_, _| false)?;
    }
    {
        let mut t = txn.open_table(ORPHANS)?;
        t.retain_in(lo..=hi, |_, _| false)?;
    }
    {
        let mut t = txn.open_table(STRIPES)?;
        t.retain_in(lo..=hi, |_, _| false)?;
    }
    {
        let mut t = txn.open_table(DIRINDEX)?;
        t.retain_in((lo, 0)..=(hi, u64::MAX), |_, _| false)?;
    }
    {
        let mut t = txn.open_table(CHUNKS)?;
        t.retain_in((lo, 0)..=(hi, u64::MAX), |_, _| false)?;
    }
    {
        let mut t = txn.open_table(DIRENTS)?;
        t.retain(|(dir, _), _| !(lo..=hi).contains(&dir))?;
    }
    {
        let mut t = txn.open_table(SHARD_META)?;
        t.retain(|(s, _), _| s != shard.0)?;
    }
    {
        let mut t = txn.open_table(TXNS)?;
        t.retain_in((shard.0, 0)..=(shard.0, u128::MAX), |_, _| false)?;
    }
    if shard.0 == 0 {
        let mut t = txn.open_table(CLIENTS)?;
        t.retain(|_, _| false)?;
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
    Ok(())
}

/// Records the log id (and membership) a shard's checkpoint holds.
pub(crate) fn set_applied(
    txn: &WriteTransaction,
    shard: ShardId,
    applied: &[u8],
) -> Result<(), FsError> {
    txn.open_table(SHARD_APPLIED)?.insert(shard.0, applied)?;
    Ok(())
}

pub(crate) fn set_sessions(
    txn: &WriteTransaction,
    shard: ShardId,
    sessions: &[u8],
) -> Result<(), FsError> {
    txn.open_table(SHARD_SESSIONS)?.insert(shard.0, sessions)?;
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
    for item in txn.open_table(INODES)?.iter()? {
        let (k, v) = item?;
        if let Some(s) = of(&mut m, k.value()) {
            s.inodes.insert(k.value(), decode_inode(v.value())?);
        }
    }
    for item in txn.open_table(DIRENTS)?.iter()? {
        let (k, v) = item?;
        let (dir, name) = k.value();
        if let Some(s) = of(&mut m, dir) {
            s.dirents.insert((dir, name.to_vec()), v.value());
        }
    }
    for item in txn.open_table(DIRINDEX)?.iter()? {
        let (k, name) = item?;
        if let Some(s) = of(&mut m, k.value().0) {
            s.dirindex.insert(k.value(), name.value().to_vec());
        }
    }
    for item in txn.open_table(COOKIES)?.iter()? {
        let (k, v) = item?;
        if let Some(s) = of(&mut m, k.value()) {
            s.cookies.insert(k.value(), v.value());
        }
    }
    for item in txn.open_table(ORPHANS)?.iter()? {
        let ino = item?.0.value();
        if let Some(s) = of(&mut m, ino) {
            s.orphans.insert(ino, ());
        }
    }
    for item in txn.open_table(CHUNKS)?.iter()? {
        let (k, v) = item?;
        if let Some(s) = of(&mut m, k.value().0) {
            s.chunks.insert(k.value(), decode_mirrors(v.value())?);
        }
    }
    for item in txn.open_table(STRIPES)?.iter()? {
        let (k, v) = item?;
        if let Some(s) = of(&mut m, k.value()) {
            s.stripes.insert(k.value(), decode_stripes(v.value())?);
        }
    }
    if let Some((s, _)) = m.get_mut(&ShardId(0)) {
        for item in txn.open_table(CLIENTS)?.iter()? {
            let (k, _) = item?;
            let (node, owner) = k.value();
            s.clients.insert((node, owner.to_vec()));
        }
    }
    for item in txn.open_table(SHARD_META)?.iter()? {
        let (k, v) = item?;
        let (shard, key) = k.value();
        if let Some((s, _)) = m.get_mut(&ShardId(shard)) {
            if let Some(known) = meta::ALL.into_iter().find(|n| *n == key) {
                s.meta.insert(known, v.value());
            }
        }
    }
    for item in txn.open_table(TXNS)?.iter()? {
        let (k, v) = item?;
        let (shard, id) = k.value();
        if let Some((s, _)) = m.get_mut(&ShardId(shard)) {
            s.txns.insert(id, decode_txn(v.value())?);
        }
    }
    for (s, _) in m.values_mut() {
        s.index_locks();
        s.index_orphan_dirs();
    }
    for item in txn.open_table(SHARD_APPLIED)?.iter()? {
        let (k, v) = item?;
        if let Some((_, a)) = m.get_mut(&ShardId(k.value())) {
            *a = Some(v.value().to_vec());
        }
    }
    for item in txn.open_table(SHARD_SESSIONS)?.iter()? {
        let (k, v) = item?;
        if let Some((s, _)) = m.get_mut(&ShardId(k.value())) {
            s.sessions = crate::raft::Sessions::decode(v.value())?;
        }
    }
    Ok(m)
}
