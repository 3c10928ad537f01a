//! The redb tables behind the state machine, the write-side `StateStore` over them, and read
//! snapshots.

use std::sync::RwLockReadGuard;

use redb::{ReadTransaction, ReadableTable, Table, TableDefinition, WriteTransaction};

use super::error::FsError;
use super::state::{meta, Dump, MemState, StateStore};
use super::types::{DirEntry, Inode, StatFs, FIRST_COOKIE, ROOT_INO};
use super::unstable::Unstable;

/// Log index → encoded `Command`.
pub(crate) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
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
/// Counters of the state machine (see `state::meta`) and the applied index.
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Values of this node, not of the state machine: never replicated, never in a snapshot.
pub(crate) const NODE: TableDefinition<&str, u64> = TableDefinition::new("node");
/// Regular files with nlink 0 waiting for `Forget`.
pub(crate) const ORPHANS: TableDefinition<u64, ()> = TableDefinition::new("orphans");
/// (ino, chunk) → the DS ids holding that chunk's mirrors (postcard `Vec<u64>`).
pub(crate) const CHUNKS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("chunks");

/// Index of the last applied log entry.
pub(crate) const APPLIED: &str = "applied";
/// Opens of this store so far (in `NODE`; builds before it kept it in `META`).
pub(crate) const BOOT_COUNT: &str = "boot_count";

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
    txn.open_table(LOG)?;
    txn.open_table(INODES)?;
    txn.open_table(DIRENTS)?;
    txn.open_table(DIRINDEX)?;
    txn.open_table(COOKIES)?;
    txn.open_table(META)?;
    txn.open_table(NODE)?;
    txn.open_table(ORPHANS)?;
    txn.open_table(CHUNKS)?;
    Ok(())
}

/// The tables of one write transaction, as a `StateStore`.
pub(crate) struct RedbState<'t> {
    inodes: Table<'t, u64, &'static [u8]>,
    dirents: Table<'t, (u64, &'static [u8]), (u64, u64)>,
    dirindex: Table<'t, (u64, u64), &'static [u8]>,
    cookies: Table<'t, u64, u64>,
    meta: Table<'t, &'static str, u64>,
    orphans: Table<'t, u64, ()>,
    chunks: Table<'t, (u64, u64), &'static [u8]>,
}

impl<'t> RedbState<'t> {
    pub(crate) fn open(txn: &'t WriteTransaction) -> Result<Self, FsError> {
        Ok(RedbState {
            inodes: txn.open_table(INODES)?,
            dirents: txn.open_table(DIRENTS)?,
            dirindex: txn.open_table(DIRINDEX)?,
            cookies: txn.open_table(COOKIES)?,
            meta: txn.open_table(META)?,
            orphans: txn.open_table(ORPHANS)?,
            chunks: txn.open_table(CHUNKS)?,
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
        Ok(self.meta.get(key)?.map(|v| v.value()).unwrap_or(0))
    }
    fn set_meta(&mut self, key: &'static str, value: u64) -> Result<(), FsError> {
        self.meta.insert(key, value)?;
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

/// The whole state as the last checkpoint left it, loaded into memory at open.
pub(crate) fn load_state(txn: &ReadTransaction) -> Result<MemState, FsError> {
    let mut m = MemState::default();
    for item in txn.open_table(INODES)?.iter()? {
        let (k, v) = item?;
        m.inodes.insert(k.value(), decode_inode(v.value())?);
    }
    for item in txn.open_table(DIRENTS)?.iter()? {
        let (k, v) = item?;
        let (dir, name) = k.value();
        m.dirents.insert((dir, name.to_vec()), v.value());
    }
    for item in txn.open_table(DIRINDEX)?.iter()? {
        let (k, name) = item?;
        m.dirindex.insert(k.value(), name.value().to_vec());
    }
    for item in txn.open_table(COOKIES)?.iter()? {
        let (k, v) = item?;
        m.cookies.insert(k.value(), v.value());
    }
    for item in txn.open_table(META)?.iter()? {
        let (k, v) = item?;
        let key = k.value();
        if let Some(known) = meta::ALL.into_iter().chain([APPLIED]).find(|n| *n == key) {
            m.meta.insert(known, v.value());
        }
    }
    for item in txn.open_table(ORPHANS)?.iter()? {
        m.orphans.insert(item?.0.value(), ());
    }
    for item in txn.open_table(CHUNKS)?.iter()? {
        let (k, v) = item?;
        m.chunks.insert(k.value(), decode_mirrors(v.value())?);
    }
    Ok(m)
}

/// The retained log entries `(index, command bytes)` from `from` on, oldest first, as of the
/// last checkpoint.
pub(crate) fn log_entries(
    txn: &ReadTransaction,
    from: u64,
) -> Result<Vec<(u64, Vec<u8>)>, FsError> {
    let t = txn.open_table(LOG)?;
    let mut out = Vec::new();
    for item in t.range(from..)? {
        let (k, v) = item?;
        out.push((k.value(), v.value().to_vec()));
    }
    Ok(out)
}

/// A consistent, read-only view of the namespace as of one moment. Several reads that must agree
/// (READDIR plus the attributes of each entry) should share one snapshot. It holds a read lock
/// on the state (and is not `Send`, so it cannot be kept across an `.await`): keep it short.
pub struct Snapshot<'a> {
    st: RwLockReadGuard<'a, MemState>,
    /// UNSTABLE writes not yet in the log: attributes read through the snapshot include them.
    unstable: &'a Unstable,
    boot_count: u64,
}

impl<'a> Snapshot<'a> {
    pub(crate) fn new(
        st: RwLockReadGuard<'a, MemState>,
        unstable: &'a Unstable,
        boot_count: u64,
    ) -> Self {
        Snapshot {
            st,
            unstable,
            boot_count,
        }
    }

    pub fn getattr(&self, ino: u64) -> Result<Inode, FsError> {
        let i = self
            .st
            .inodes
            .get(&ino)
            .cloned()
            .ok_or(FsError::Stale(ino))?;
        Ok(self.unstable.merge(i))
    }

    fn dir(&self, ino: u64) -> Result<&Inode, FsError> {
        let d = self.st.inodes.get(&ino).ok_or(FsError::Stale(ino))?;
        if !d.kind.is_dir() {
            return Err(FsError::NotDir);
        }
        Ok(d)
    }

    /// The inode named `name` in `dir`.
    pub fn lookup(&self, dir: u64, name: &[u8]) -> Result<Inode, FsError> {
        self.dir(dir)?;
        let (ino, _) = self
            .st
            .dirents
            .get(&(dir, name.to_vec()))
            .ok_or(FsError::NotFound)?;
        self.getattr(*ino)
    }

    /// Up to `max_entries` entries of `dir` with cookies above `after_cookie` (0, 1 and 2 mean
    /// "from the start"), in cookie order, and whether the listing is complete. A cookie never
    /// handed out for this directory is `Invalid` (NFS4ERR_BAD_COOKIE).
    pub fn readdir(
        &self,
        dir: u64,
        after_cookie: u64,
        max_entries: usize,
    ) -> Result<(Vec<DirEntry>, bool), FsError> {
        self.dir(dir)?;
        let next = self.st.cookies.get(&dir).copied().unwrap_or(FIRST_COOKIE);
        if after_cookie >= next && after_cookie >= FIRST_COOKIE {
            return Err(FsError::Invalid);
        }
        let start = after_cookie.max(FIRST_COOKIE - 1) + 1;
        let mut out = Vec::new();
        for ((_, cookie), name) in self.st.dirindex.range((dir, start)..=(dir, u64::MAX)) {
            if out.len() >= max_entries {
                return Ok((out, false));
            }
            let (ino, c) = self
                .st
                .dirents
                .get(&(dir, name.clone()))
                .ok_or_else(|| FsError::Corrupt(format!("dir {dir} index without entry")))?;
            if c != cookie {
                return Err(FsError::Corrupt(format!("dir {dir} cookie mismatch")));
            }
            out.push(DirEntry {
                name: name.clone(),
                ino: *ino,
                cookie: *cookie,
            });
        }
        Ok((out, true))
    }

    /// Walks a slash-separated path from the root ("." and ".." understood, empty parts skipped).
    pub fn resolve(&self, path: &[u8]) -> Result<Inode, FsError> {
        let mut cur = self.getattr(ROOT_INO)?;
        for part in path.split(|b| *b == b'/') {
            match part {
                b"" | b"." => {}
                b".." => cur = self.getattr(cur.parent.max(ROOT_INO))?,
                name => {
                    if !cur.kind.is_dir() {
                        return Err(FsError::NotDir);
                    }
                    cur = self.lookup(cur.ino, name)?;
                }
            }
        }
        Ok(cur)
    }

    fn meta(&self, key: &str) -> u64 {
        self.st.meta.get(key).copied().unwrap_or(0)
    }

    pub fn statfs(&self) -> Result<StatFs, FsError> {
        Ok(StatFs {
            files: self.meta(meta::FILES),
            bytes: self.meta(meta::BYTES),
        })
    }

    pub fn applied_index(&self) -> Result<u64, FsError> {
        Ok(self.meta(APPLIED))
    }

    /// Lowest inode number not yet used by an applied command.
    pub fn next_ino(&self) -> Result<u64, FsError> {
        Ok(self.meta(meta::NEXT_INO))
    }

    pub fn fs_id(&self) -> Result<u64, FsError> {
        Ok(self.meta(meta::FS_ID))
    }

    pub fn boot_count(&self) -> Result<u64, FsError> {
        Ok(self.boot_count)
    }

    /// Regular files with nlink 0 not yet forgotten. After a restart none is open any more, so the
    /// server forgets them all (and drops their data).
    pub fn orphans(&self) -> Result<Vec<u64>, FsError> {
        Ok(self.st.orphans.keys().copied().collect())
    }

    /// Where chunk `chunk` of `ino` lives, if recorded.
    pub fn chunk(&self, ino: u64, chunk: u64) -> Result<Option<Vec<u64>>, FsError> {
        Ok(self.st.chunks.get(&(ino, chunk)).cloned())
    }

    /// Where each recorded chunk of `ino` lives (DS ids, preferred first).
    pub fn chunks(&self, ino: u64) -> Result<Vec<(u64, Vec<u64>)>, FsError> {
        self.st.chunks(ino)
    }

    /// Files with a placement record naming fewer than `mirrors` DSs, in inode order: the
    /// durable side of the repair queue (a mirror is dropped from the record, durably, before
    /// the file is written without it or when its copy is found bad).
    pub fn under_mirrored(&self, mirrors: usize) -> Vec<u64> {
        let mut out: Vec<u64> = self
            .st
            .chunks
            .iter()
            .filter(|(_, m)| m.len() < mirrors)
            .map(|((ino, _), _)| *ino)
            .collect();
        out.dedup();
        out
    }

    /// The whole state machine state, to compare with a model in tests.
    pub fn dump(&self) -> Result<Dump, FsError> {
        let mut d = self.st.dump();
        d.meta.remove(APPLIED);
        // The index must mirror the entries exactly.
        for ((dir, cookie), name) in &self.st.dirindex {
            let e = d.dirents.get(&(*dir, name.clone()));
            if e.map(|(_, c)| *c) != Some(*cookie) {
                return Err(FsError::Corrupt(format!(
                    "dirindex ({dir},{cookie}) dangling"
                )));
            }
        }
        if self.st.dirindex.len() != d.dirents.len() {
            return Err(FsError::Corrupt("dirindex misses entries".into()));
        }
        Ok(d)
    }
}
