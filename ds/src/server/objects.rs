//! Per-file objects on this DS: the chunk store holds the bytes (at file offsets), this module
//! keeps each object's high-water mark (hwm: its size as far as this DS knows).
//!
//! The store writes whole 4 KiB blocks, so what survives a crash (chunk file lengths,
//! `ChunkStore::data_end`) only bounds the hwm to a block. The exact value is therefore written
//! to a small size record (`sizes/<id>`, fsynced) whenever the block bound alone would give the
//! wrong answer: when the hwm ends inside a block, or SETATTR moved it. Sequential aligned writes
//! (the common case) need no record at all, so they cost no extra fsync.
//!
//! Recovery: with `end` from the chunk files and record `r`, the hwm is `r` when
//! `r > end - block` (the record describes the last block, or an extension past the data) and
//! `end` otherwise (later data went past the record, making it obsolete).

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use crate::{ChunkStore, DsError};

/// Objects whose state is cached; past this the cache starts over (reloading is two stats).
const MAX_CACHED: usize = 64 * 1024;
const STRIPES: usize = 64;
/// Check word for size records, so a zero-filled or foreign file is not taken for one.
const RECORD_MAGIC: u64 = 0x6366_735f_7369_7a65; // "cfs_size"

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ObjState {
    /// Highest byte written + 1, or the size SETATTR set.
    pub hwm: u64,
    /// `ChunkStore::data_end`: block-granular end of the stored data.
    pub disk_end: u64,
    /// The size record on disk, if any.
    record: Option<u64>,
    pub mtime: SystemTime,
    /// Writes in flight. A pinned entry is never evicted: reloading it from disk while a write
    /// is between its data and its size update would see that write's block without its exact
    /// end, and overstate the hwm.
    pins: u32,
}

fn recover(disk_end: u64, record: Option<u64>, block: u64) -> u64 {
    match record {
        Some(r) if r > disk_end.saturating_sub(block) => r,
        _ => disk_end,
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Caches and to-do sets only: a panic elsewhere cannot leave them harmful.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) struct Objects {
    store: ChunkStore,
    sizes: PathBuf,
    block: u64,
    started: SystemTime,
    cache: Mutex<HashMap<u64, ObjState>>,
    /// Shared by writes, exclusive for truncation: a write racing a truncate must not extend
    /// the hwm over data the truncate has just removed.
    data_locks: Vec<tokio::sync::RwLock<()>>,
    /// Serialises changes to one object's size state (and loading it into the cache).
    size_locks: Vec<tokio::sync::Mutex<()>>,
    /// Objects with UNSTABLE writes not yet committed, made durable at shutdown.
    unstable: Mutex<HashSet<u64>>,
}

fn stripe(id: u64) -> usize {
    (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize % STRIPES
}

impl Objects {
    pub(crate) fn open(store: ChunkStore, data_dir: &Path) -> std::io::Result<Objects> {
        let sizes = data_dir.join("sizes");
        fs::create_dir_all(&sizes)?;
        let block = store.blocking().config().block_size;
        Ok(Objects {
            store,
            sizes,
            block,
            started: SystemTime::now(),
            cache: Mutex::new(HashMap::new()),
            data_locks: (0..STRIPES).map(|_| tokio::sync::RwLock::new(())).collect(),
            size_locks: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            unstable: Mutex::new(HashSet::new()),
        })
    }

    pub(crate) fn store(&self) -> &ChunkStore {
        &self.store
    }

    fn record_path(&self, id: u64) -> PathBuf {
        self.sizes.join(format!("{id:016x}"))
    }

    fn cached(&self, id: u64) -> Option<ObjState> {
        lock(&self.cache).get(&id).copied()
    }

    fn put(&self, id: u64, st: ObjState) {
        let mut c = lock(&self.cache);
        if c.len() >= MAX_CACHED && !c.contains_key(&id) {
            c.retain(|_, s| s.pins > 0);
        }
        let pins = c.get(&id).map_or(0, |s| s.pins);
        c.insert(id, ObjState { pins, ..st });
    }

    /// Loads from disk; the caller holds the object's size lock.
    async fn load(&self, id: u64) -> Result<ObjState, DsError> {
        if let Some(st) = self.cached(id) {
            return Ok(st);
        }
        let disk_end = self.store.data_end(id).await?;
        let path = self.record_path(id);
        let record = tokio::task::spawn_blocking(move || read_record(&path))
            .await
            .map_err(|e| DsError::Io(std::io::Error::other(e)))??;
        let st = ObjState {
            hwm: recover(disk_end, record, self.block),
            disk_end,
            record,
            mtime: self.started,
            pins: 0,
        };
        self.put(id, st);
        Ok(st)
    }

    /// The object's current state (an object never written is empty).
    pub(crate) async fn state(&self, id: u64) -> Result<ObjState, DsError> {
        if let Some(st) = self.cached(id) {
            return Ok(st);
        }
        let _s = self.size_locks[stripe(id)].lock().await;
        self.load(id).await
    }

    /// Makes the on-disk record agree with `st.hwm` (if the block bound alone would not), then
    /// caches `st`. The caller holds the size lock.
    async fn settle(&self, id: u64, mut st: ObjState) -> Result<ObjState, DsError> {
        if recover(st.disk_end, st.record, self.block) != st.hwm {
            let path = self.record_path(id);
            let dir = self.sizes.clone();
            let hwm = st.hwm;
            let res = tokio::task::spawn_blocking(move || write_record(&dir, &path, hwm))
                .await
                .map_err(|e| DsError::Io(std::io::Error::other(e)))?;
            // On failure the cached state stays as it was, so the next change retries the record.
            res?;
            st.record = Some(hwm);
        }
        self.put(id, st);
        Ok(st)
    }

    /// WRITE: stores `data` at `offset`, durably when `stable`, then raises the hwm (durably
    /// when a record is needed). Returns the state after, or `None` when `admit`, asked once the
    /// write excludes truncation and removal of the object, refuses it.
    pub(crate) async fn write(
        &self,
        id: u64,
        offset: u64,
        data: bytes::Bytes,
        stable: bool,
        admit: impl FnOnce() -> bool,
    ) -> Result<Option<ObjState>, DsError> {
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or_else(|| DsError::Invalid("write past 2^64".into()))?;
        let _d = self.data_locks[stripe(id)].read().await;
        if !admit() {
            return Ok(None);
        }
        if data.is_empty() {
            return self.state(id).await.map(Some);
        }
        let _pin = self.pin(id).await?;
        if !stable {
            lock(&self.unstable).insert(id);
        }
        self.store.write_owned(id, offset, data, stable).await?;
        let now = SystemTime::now();
        // Fast path: no size change (overwrites, and out-of-order writes below the hwm).
        {
            let mut c = lock(&self.cache);
            if let Some(st) = c.get_mut(&id) {
                if end <= st.hwm {
                    st.mtime = now;
                    return Ok(Some(*st));
                }
            }
        }
        let _s = self.size_locks[stripe(id)].lock().await;
        let mut st = self.load(id).await?;
        st.mtime = now;
        if end > st.hwm {
            st.hwm = end;
        }
        st.disk_end = st.disk_end.max(end.div_ceil(self.block) * self.block);
        self.settle(id, st).await.map(Some)
    }

    /// Loads the object's state and keeps it cached until the returned guard is dropped.
    async fn pin(&self, id: u64) -> Result<Pin<'_>, DsError> {
        loop {
            self.state(id).await?;
            if let Some(st) = lock(&self.cache).get_mut(&id) {
                st.pins += 1;
                return Ok(Pin { objects: self, id });
            }
            // Evicted between loading and pinning (the cache was full): load again.
        }
    }

    /// COMMIT: every earlier unstable write of the object is durable on return.
    pub(crate) async fn commit(&self, id: u64) -> Result<(), DsError> {
        lock(&self.unstable).remove(&id);
        if let Err(e) = self.store.commit(id).await {
            lock(&self.unstable).insert(id);
            return Err(e);
        }
        Ok(())
    }

    /// SETATTR size: truncates or extends; durable on return.
    pub(crate) async fn set_size(&self, id: u64, size: u64) -> Result<ObjState, DsError> {
        let _d = self.data_locks[stripe(id)].write().await;
        let _s = self.size_locks[stripe(id)].lock().await;
        let mut st = self.load(id).await?;
        st.mtime = SystemTime::now();
        if size == 0 {
            self.store.remove(id).await?;
            lock(&self.unstable).remove(&id);
            let path = self.record_path(id);
            let dir = self.sizes.clone();
            let res = tokio::task::spawn_blocking(move || remove_record(&dir, &path))
                .await
                .map_err(|e| DsError::Io(std::io::Error::other(e)))?;
            res?;
            st = ObjState {
                hwm: 0,
                disk_end: 0,
                record: None,
                mtime: st.mtime,
                pins: 0,
            };
            self.put(id, st);
            return Ok(st);
        }
        if size < st.hwm {
            self.store.truncate(id, size).await?;
            st.disk_end = self.store.data_end(id).await?;
        }
        st.hwm = size;
        self.settle(id, st).await
    }

    /// LINK: object `dst` shares every chunk of `src` (`ChunkStore::link_object`) and takes its
    /// size, durably. Both objects' writers and truncates wait meanwhile. A retry after a crash
    /// (some chunks linked, no size yet) completes it; chunks `dst` already has are kept.
    pub(crate) async fn link(&self, src: u64, dst: u64) -> Result<ObjState, DsError> {
        if src == dst {
            return Err(DsError::Invalid("link of an object to itself".into()));
        }
        // Data locks, then size locks, each pair in stripe order (`write` and `set_size` take
        // one object's data lock before its size lock, so this cannot deadlock with them).
        let (a, b) = (stripe(src), stripe(dst));
        let (lo, hi) = (a.min(b), a.max(b));
        let _d1 = self.data_locks[lo].write().await;
        let _d2 = match hi != lo {
            true => Some(self.data_locks[hi].write().await),
            false => None,
        };
        let _s1 = self.size_locks[lo].lock().await;
        let _s2 = match hi != lo {
            true => Some(self.size_locks[hi].lock().await),
            false => None,
        };
        let from = self.load(src).await?;
        self.store.link_object(src, dst).await?;
        // `dst`'s chunks are `src`'s now (those it had are kept, and were `src`'s too: the
        // MDS links an unchanged file), so its data ends where `src`'s does.
        let disk_end = self.store.data_end(dst).await?;
        let path = self.record_path(dst);
        let record = tokio::task::spawn_blocking(move || read_record(&path))
            .await
            .map_err(|e| DsError::Io(std::io::Error::other(e)))??;
        let st = ObjState {
            hwm: from.hwm,
            disk_end,
            record,
            mtime: from.mtime,
            pins: 0,
        };
        self.settle(dst, st).await
    }

    /// Makes every object's unstable writes durable (shutdown).
    pub(crate) async fn commit_all(&self) -> Result<(), DsError> {
        let ids: Vec<u64> = lock(&self.unstable).iter().copied().collect();
        let mut first_err = None;
        for id in ids {
            if let Err(e) = self.commit(id).await {
                tracing::error!(id, "commit at shutdown failed: {e}");
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

struct Pin<'a> {
    objects: &'a Objects,
    id: u64,
}

impl Drop for Pin<'_> {
    fn drop(&mut self) {
        if let Some(st) = lock(&self.objects.cache).get_mut(&self.id) {
            st.pins = st.pins.saturating_sub(1);
        }
    }
}

fn read_record(path: &Path) -> Result<Option<u64>, DsError> {
    let f = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut b = [0u8; 16];
    match f.read_exact_at(&mut b, 0) {
        Ok(()) => {}
        // Created but never completely written: the write it belonged to was not acknowledged.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[..8]);
    let mut m = [0u8; 8];
    m.copy_from_slice(&b[8..]);
    let (v, m) = (u64::from_le_bytes(v), u64::from_le_bytes(m));
    if m != v ^ RECORD_MAGIC {
        tracing::warn!(path = %path.display(), "ignoring a damaged size record");
        return Ok(None);
    }
    Ok(Some(v))
}

/// Writes the record in place (16 bytes, one sector: not torn) and fsyncs it; a new file also
/// needs its directory entry made durable.
fn write_record(dir: &Path, path: &Path, value: u64) -> std::io::Result<()> {
    let existed = path.exists();
    let f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&value.to_le_bytes());
    b[8..].copy_from_slice(&(value ^ RECORD_MAGIC).to_le_bytes());
    f.write_all_at(&b, 0)?;
    f.sync_data()?;
    if !existed {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn remove_record(dir: &Path, path: &Path) -> std::io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => fs::File::open(dir)?.sync_all(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_picks_the_record_only_when_it_describes_the_last_block() {
        let b = 4096;
        assert_eq!(recover(0, None, b), 0);
        assert_eq!(recover(8192, None, b), 8192);
        assert_eq!(recover(8192, Some(5000), b), 5000);
        // Data went two blocks past the record: obsolete.
        assert_eq!(recover(12288, Some(5000), b), 12288);
        // Extension by SETATTR past the data.
        assert_eq!(recover(4096, Some(1 << 30), b), 1 << 30);
        assert_eq!(recover(0, Some(10), b), 10);
    }

    #[tokio::test]
    async fn hwm_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let open = || {
            let store = ChunkStore::open(dir.path().join("chunks")).unwrap();
            Objects::open(store, dir.path()).unwrap()
        };
        let o = open();
        o.write(1, 0, vec![1u8; 8192].into(), true, || true)
            .await
            .unwrap();
        o.write(1, 8192, vec![2u8; 100].into(), true, || true)
            .await
            .unwrap();
        // Aligned overwrite of the record's block must not leave the record claiming 8292.
        o.write(1, 8192, vec![3u8; 4096].into(), true, || true)
            .await
            .unwrap();
        o.write(2, 5 << 20, vec![4u8; 10].into(), false, || true)
            .await
            .unwrap();
        o.commit(2).await.unwrap();
        o.write(3, 0, vec![5u8; 10].into(), true, || true)
            .await
            .unwrap();
        o.set_size(3, 1 << 30).await.unwrap();
        o.write(4, 0, vec![6u8; 10000].into(), true, || true)
            .await
            .unwrap();
        o.set_size(4, 5000).await.unwrap();
        o.write(5, 0, vec![7u8; 10].into(), true, || true)
            .await
            .unwrap();
        o.set_size(5, 0).await.unwrap();
        let want = [
            (1, 12288),
            (2, (5 << 20) + 10),
            (3, 1 << 30),
            (4, 5000),
            (5, 0),
        ];
        for (id, hwm) in want {
            assert_eq!(o.state(id).await.unwrap().hwm, hwm, "object {id} before");
        }
        drop(o);
        let o = open();
        for (id, hwm) in want {
            assert_eq!(o.state(id).await.unwrap().hwm, hwm, "object {id} after");
        }
    }
}
