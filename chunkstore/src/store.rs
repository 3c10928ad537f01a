//! The chunk store: object data cut into fixed-size chunk files, each block checksummed.
//!
//! Why chunk files rather than one sparse file per object: chunks are the unit the rest of the
//! system moves (placement, mirroring, erasure coding, tiering), so a chunk file can later be
//! shipped, encoded or dropped on its own. Sizes: see `Config::default`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use tracing::{debug, info};

use crate::chunk;
use crate::cow;
use crate::error::DsError;
use crate::geometry::{Config, Geometry, PREAMBLE_LEN};
use crate::paths;

const OBJ_STRIPES: usize = 64;
const CHUNK_STRIPES: usize = 256;
/// Open chunk files kept; beyond this the cache starts over (cheap: an open is a few µs).
const MAX_HANDLES: usize = 1024;
/// Largest single read, to bound memory per request.
const MAX_READ: u64 = 256 << 20;

/// What SEEK looks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeekWhat {
    Data,
    Hole,
}

/// What one object's chunk files hold on disk (`ChunkStoreSync::object_stat`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ObjectStat {
    /// Chunk files holding anything.
    pub chunks: u64,
    /// Bytes of disk they occupy (allocated blocks, headers included).
    pub bytes: u64,
    /// Of those, the files with more than one link (`link_object`), and their bytes, counted in
    /// full here as in every other object that shares them.
    pub shared_chunks: u64,
    pub shared_bytes: u64,
}

/// A piece of a READ_PLUS reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    Data { offset: u64, data: Vec<u8> },
    Hole { offset: u64, len: u64 },
}

/// Unstable writes not yet made durable, per object.
#[derive(Default)]
struct Dirty {
    chunks: BTreeSet<u64>,
    /// Directories whose new entries (chunk files, object dirs) are not yet fsynced.
    dirs: BTreeSet<PathBuf>,
}

/// An open chunk file, and whether it had more than one link when opened (or last checked): a
/// shared file is copied before any change (`unshare`). "Not shared" cannot go stale: a file
/// with one link belongs to one object, and only `link_object` on that object adds a link,
/// which drops the object's handles. "Shared" can (the other object copied first), which costs
/// one `fstat` at the next change.
#[derive(Clone)]
struct Handle {
    file: Arc<File>,
    shared: bool,
}

/// The chunk store with a blocking API; `ChunkStore` wraps it for async callers.
pub struct ChunkStoreSync {
    root: PathBuf,
    geo: Geometry,
    /// Shared by I/O on an object, exclusive for truncate/remove (which delete chunk files).
    obj_locks: Vec<RwLock<()>>,
    /// Shared by readers of a chunk, exclusive for writers: a reader must never see data and
    /// checksum from different writes.
    chunk_locks: Vec<RwLock<()>>,
    handles: Mutex<HashMap<(u64, u64), Handle>>,
    dirty: Mutex<HashMap<u64, Dirty>>,
}

/// Handle to an open chunk store; cheap to clone, Send + Sync.
#[derive(Clone)]
pub struct ChunkStore {
    inner: Arc<ChunkStoreSync>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these maps cannot leave them inconsistent in a way that matters
    // (they are caches and to-do sets), so a poisoned lock is taken as is.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn mix(a: u64, b: u64) -> usize {
    let h = a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    (h ^ (h >> 29)) as usize
}

/// Starts asynchronous writeback of a file's dirty pages (a hint: errors surface at fsync).
fn start_writeback(f: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on a descriptor we own; no memory is passed.
    unsafe {
        libc::sync_file_range(f.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

fn end_of(off: u64, len: u64) -> Result<u64, DsError> {
    off.checked_add(len)
        .ok_or_else(|| DsError::Invalid("range overflows u64".into()))
}

impl ChunkStoreSync {
    fn open_with(dir: &Path, want: Config) -> Result<Self, DsError> {
        want.validate()?;
        fs::create_dir_all(paths::objects_dir(dir))?;
        let cfg = paths::load_or_init_config(dir, want)?;
        info!(dir = %dir.display(), ?cfg, "chunk store open");
        Ok(ChunkStoreSync {
            root: dir.to_path_buf(),
            geo: Geometry::new(cfg),
            obj_locks: (0..OBJ_STRIPES).map(|_| RwLock::new(())).collect(),
            chunk_locks: (0..CHUNK_STRIPES).map(|_| RwLock::new(())).collect(),
            handles: Mutex::new(HashMap::new()),
            dirty: Mutex::new(HashMap::new()),
        })
    }

    /// Most bytes of disk a write of `len` bytes at `offset` adds (its blocks, and the pages of
    /// its chunks' headers it fills): what a cache that counts its writes charges for one.
    pub fn most_added_by_write(&self, offset: u64, len: u64) -> u64 {
        self.geo.most_added(offset, len)
    }

    /// `most_added_by_write` for a write to object `id`: also what copy-on-write adds, since
    /// the first change of a chunk file shared with another object (`link_object`) copies it
    /// whole. Each shared chunk in the range counts with the disk its file occupies; a chunk
    /// this store has open as its object's alone costs no syscall, another one `stat`.
    pub fn most_added_by_write_to(&self, id: u64, offset: u64, len: u64) -> u64 {
        let mut total = self.geo.most_added(offset, len);
        if len == 0 {
            return total;
        }
        let cs = self.geo.chunk_size;
        let (first, last) = (offset / cs, offset.saturating_add(len - 1) / cs);
        // A range of more chunks than this (no NFS write is) counts each beyond as a full copy
        // rather than costing a `stat` each.
        const MAX_LOOKED: u64 = 64;
        for c in first..=last.min(first.saturating_add(MAX_LOOKED - 1)) {
            total = total.saturating_add(self.copy_cost(id, c));
        }
        let unlooked = (last - first + 1).saturating_sub(MAX_LOOKED);
        total.saturating_add(unlooked.saturating_mul(self.geo.data_start.saturating_add(cs)))
    }

    /// The disk a change of chunk `c` of `id` adds by copying it first: its file's blocks if
    /// it is shared, else nothing (a chunk that does not exist yet is `most_added`'s).
    fn copy_cost(&self, id: u64, c: u64) -> u64 {
        use std::os::unix::fs::MetadataExt;
        if lock(&self.handles).get(&(id, c)).is_some_and(|h| !h.shared) {
            return 0;
        }
        match fs::metadata(paths::chunk_path(&self.root, id, c)) {
            Ok(m) if m.nlink() > 1 => m.blocks() * 512,
            // Absent, alone, or unreadable (the write then fails on its own).
            _ => 0,
        }
    }

    pub fn config(&self) -> Config {
        Config {
            chunk_size: self.geo.chunk_size,
            block_size: self.geo.block_size,
        }
    }

    fn obj_lock(&self, id: u64) -> &RwLock<()> {
        &self.obj_locks[mix(id, 0) % OBJ_STRIPES]
    }

    fn chunk_lock(&self, id: u64, chunk: u64) -> &RwLock<()> {
        &self.chunk_locks[mix(id, chunk.wrapping_add(1)) % CHUNK_STRIPES]
    }

    /// Splits `[off, end)` into per-chunk pieces `(chunk, offset in chunk, len, offset in range)`.
    fn pieces(&self, off: u64, end: u64) -> impl Iterator<Item = (u64, u64, u64, u64)> {
        let cs = self.geo.chunk_size;
        let mut pos = off;
        std::iter::from_fn(move || {
            if pos >= end {
                return None;
            }
            let c = pos / cs;
            let in_off = pos % cs;
            let len = (cs - in_off).min(end - pos);
            let item = (c, in_off, len, pos - off);
            pos += len;
            Some(item)
        })
    }

    /// The chunk file, if it exists and holds anything. With `create`, makes it (and its
    /// directories), recording new directory entries as dirty.
    fn chunk_file(&self, id: u64, c: u64, create: bool) -> Result<Option<Arc<File>>, DsError> {
        Ok(self.chunk_handle(id, c, create)?.map(|h| h.file))
    }

    /// `chunk_file` for a change: a chunk file shared with another object (`link_object`) is
    /// first replaced by a private copy (`unshare`), so the other object keeps its bytes. The
    /// caller holds the chunk's write lock or the object's write lock.
    fn chunk_for_change(
        &self,
        id: u64,
        c: u64,
        create: bool,
    ) -> Result<Option<Arc<File>>, DsError> {
        match self.chunk_handle(id, c, create)? {
            Some(h) if h.shared => self.unshare(id, c, h.file).map(Some),
            Some(h) => Ok(Some(h.file)),
            None => Ok(None),
        }
    }

    /// Gives object `id` a private copy of its chunk `c` (open as `shared`) if the file still
    /// has other links: copy (or reflink) to a temporary, sync it, rename it over the chunk,
    /// sync the directory, cache the copy. See `cow`.
    fn unshare(&self, id: u64, c: u64, shared: Arc<File>) -> Result<Arc<File>, DsError> {
        use std::os::unix::fs::MetadataExt;
        let path = paths::chunk_path(&self.root, id, c);
        if shared.metadata()?.nlink() <= 1 {
            // The other links went (the other object copied first, or was removed).
            self.cache_handle(id, c, shared.clone(), false);
            return Ok(shared);
        }
        let tmp = cow::temp_path(&path);
        let (copy, reflinked) = cow::private_copy(&shared, &tmp)?;
        fs::rename(&tmp, &path)?;
        paths::fsync_dir(&paths::object_dir(&self.root, id))?;
        debug!(id, c, reflinked, "unshared chunk");
        let file = Arc::new(copy);
        self.cache_handle(id, c, file.clone(), false);
        Ok(file)
    }

    fn cache_handle(&self, id: u64, c: u64, file: Arc<File>, shared: bool) {
        let mut h = lock(&self.handles);
        if h.len() >= MAX_HANDLES {
            h.clear();
        }
        h.insert((id, c), Handle { file, shared });
    }

    fn chunk_handle(&self, id: u64, c: u64, create: bool) -> Result<Option<Handle>, DsError> {
        use std::os::unix::fs::MetadataExt;
        if let Some(h) = lock(&self.handles).get(&(id, c)) {
            return Ok(Some(h.clone()));
        }
        let path = paths::chunk_path(&self.root, id, c);
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                self.create_object_dirs(id)?;
                let f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&path)?;
                self.mark_dirty_dir(id, paths::object_dir(&self.root, id));
                f
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        // A file that holds nothing has no preamble yet; `link_object` never links one, so
        // the preamble `create` writes never lands in a shared file.
        if !chunk::check_preamble(&file, &self.geo, create).map_err(|e| e.at(id, c))? {
            return Ok(None);
        }
        let shared = file.metadata()?.nlink() > 1;
        let file = Arc::new(file);
        self.cache_handle(id, c, file.clone(), shared);
        Ok(Some(Handle { file, shared }))
    }

    fn create_object_dirs(&self, id: u64) -> Result<(), DsError> {
        let obj = paths::object_dir(&self.root, id);
        if obj.is_dir() {
            return Ok(());
        }
        let fan = paths::fanout_dir(&self.root, id);
        if !fan.is_dir() {
            match fs::create_dir(&fan) {
                Ok(()) => self.mark_dirty_dir(id, paths::objects_dir(&self.root)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e.into()),
            }
        }
        match fs::create_dir(&obj) {
            Ok(()) => self.mark_dirty_dir(id, fan),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    fn mark_dirty_dir(&self, id: u64, dir: PathBuf) {
        lock(&self.dirty).entry(id).or_default().dirs.insert(dir);
    }

    fn forget_handles(&self, id: u64, from_chunk: u64) {
        lock(&self.handles).retain(|(i, c), _| *i != id || *c < from_chunk);
    }

    /// Writes `data` at `offset` of object `id`. `stable`: data, checksums and any new directory
    /// entries are on stable storage when this returns (FILE_SYNC4); otherwise `commit` does that.
    pub fn write(&self, id: u64, offset: u64, data: &[u8], stable: bool) -> Result<(), DsError> {
        let end = end_of(offset, data.len() as u64)?;
        let _o = self.obj_lock(id).read().unwrap_or_else(|p| p.into_inner());
        let mut touched = Vec::new();
        for (c, in_off, len, at) in self.pieces(offset, end) {
            let _c = self
                .chunk_lock(id, c)
                .write()
                .unwrap_or_else(|p| p.into_inner());
            let f = self
                .chunk_for_change(id, c, true)?
                .ok_or_else(|| DsError::Invalid("chunk file vanished while creating".into()))?;
            let piece = &data[at as usize..(at + len) as usize];
            chunk::write(&f, &self.geo, in_off, piece).map_err(|e| e.at(id, c))?;
            if !stable && in_off + len == self.geo.chunk_size {
                // A sequential writer is done with this chunk: start writing it out now, so
                // the disk works while the client sends more instead of all at COMMIT.
                start_writeback(&f);
            }
            touched.push((c, f));
        }
        if stable {
            for (_, f) in &touched {
                f.sync_data()?;
            }
            let dirs = lock(&self.dirty)
                .get_mut(&id)
                .map(|d| std::mem::take(&mut d.dirs));
            self.sync_dirs(id, dirs.unwrap_or_default())?;
        } else {
            let mut d = lock(&self.dirty);
            let e = d.entry(id).or_default();
            e.chunks.extend(touched.iter().map(|(c, _)| *c));
        }
        Ok(())
    }

    fn sync_dirs(&self, id: u64, dirs: BTreeSet<PathBuf>) -> Result<(), DsError> {
        // Deepest first is not needed for correctness (each fsync covers one directory's
        // entries), but parents last keeps a crash from exposing a child dir before its files.
        for d in dirs.iter().rev() {
            if let Err(e) = paths::fsync_dir(d) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    lock(&self.dirty)
                        .entry(id)
                        .or_default()
                        .dirs
                        .extend(dirs.iter().cloned());
                    return Err(e.into());
                }
            }
        }
        Ok(())
    }

    /// Makes every earlier unstable write of `id` durable (NFS COMMIT).
    pub fn commit(&self, id: u64) -> Result<(), DsError> {
        let _o = self.obj_lock(id).read().unwrap_or_else(|p| p.into_inner());
        self.commit_locked(id)
    }

    /// `commit`, under the object's lock (shared or exclusive) that the caller holds.
    fn commit_locked(&self, id: u64) -> Result<(), DsError> {
        let Some(d) = lock(&self.dirty).remove(&id) else {
            return Ok(());
        };
        // Queue every chunk's writeback first, so the disk sees them together rather than one
        // fdatasync's worth at a time.
        if d.chunks.len() > 1 {
            for &c in &d.chunks {
                if let Ok(Some(f)) = self.chunk_file(id, c, false) {
                    start_writeback(&f);
                }
            }
        }
        for (i, &c) in d.chunks.iter().enumerate() {
            let r = match self.chunk_file(id, c, false) {
                Ok(Some(f)) => f.sync_data().map_err(DsError::from),
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            };
            if let Err(e) = r {
                // Put the rest back so that a retried COMMIT does the work again.
                let mut dirty = lock(&self.dirty);
                let back = dirty.entry(id).or_default();
                back.chunks.extend(d.chunks.iter().skip(i));
                back.dirs.extend(d.dirs.iter().cloned());
                return Err(e);
            }
        }
        self.sync_dirs(id, d.dirs)
    }

    /// Reads `[offset, offset+len)` of an object whose size is `file_size`: short at EOF, zeros
    /// wherever nothing was written. Returns the bytes and whether they reach EOF.
    pub fn read(
        &self,
        id: u64,
        offset: u64,
        len: u64,
        file_size: u64,
    ) -> Result<(Vec<u8>, bool), DsError> {
        self.read_into(id, offset, len, file_size, Vec::new())
    }

    /// `read`, appending to `buf` (whose capacity is used if it suffices: callers recycle
    /// buffers through this).
    pub fn read_into(
        &self,
        id: u64,
        offset: u64,
        len: u64,
        file_size: u64,
        mut buf: Vec<u8>,
    ) -> Result<(Vec<u8>, bool), DsError> {
        if len > MAX_READ {
            return Err(DsError::Invalid(format!("read of {len} bytes")));
        }
        if offset >= file_size {
            return Ok((buf, true));
        }
        let end = end_of(offset, len)?.min(file_size);
        // Room for whole blocks at both edges, so unaligned reads need no second buffer.
        let bs = self.geo.block_size;
        let cap = (end.div_ceil(bs) - offset / bs) * bs;
        buf.reserve(cap as usize);
        let _o = self.obj_lock(id).read().unwrap_or_else(|p| p.into_inner());
        for (c, in_off, plen, _) in self.pieces(offset, end) {
            let _c = self
                .chunk_lock(id, c)
                .read()
                .unwrap_or_else(|p| p.into_inner());
            match self.chunk_file(id, c, false)? {
                Some(f) => chunk::read_append(&f, &self.geo, in_off, plen as usize, &mut buf)
                    .map_err(|e| e.at(id, c))?,
                None => buf.resize(buf.len() + plen as usize, 0),
            }
        }
        Ok((buf, end == file_size))
    }

    /// Drops all data at and beyond `new_size`; durable on return. Growing needs no call: what
    /// was never written reads as zeros.
    pub fn truncate(&self, id: u64, new_size: u64) -> Result<(), DsError> {
        let _o = self.obj_lock(id).write().unwrap_or_else(|p| p.into_inner());
        let cs = self.geo.chunk_size;
        let mut removed_any = false;
        for c in paths::list_chunks(&self.root, id)? {
            let start = c * cs;
            if start >= new_size {
                self.forget_handles(id, c);
                match fs::remove_file(paths::chunk_path(&self.root, id, c)) {
                    Ok(()) => removed_any = true,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
                if let Some(d) = lock(&self.dirty).get_mut(&id) {
                    d.chunks.remove(&c);
                }
            } else if new_size < start + cs {
                if let Some(f) = self.chunk_for_change(id, c, false)? {
                    chunk::truncate(&f, &self.geo, new_size - start).map_err(|e| e.at(id, c))?;
                    f.sync_data()?;
                }
            }
        }
        if removed_any {
            paths::fsync_dir(&paths::object_dir(&self.root, id))?;
        }
        debug!(id, new_size, "truncated");
        Ok(())
    }

    /// Deletes an object's data; durable on return.
    pub fn remove(&self, id: u64) -> Result<(), DsError> {
        let _o = self.obj_lock(id).write().unwrap_or_else(|p| p.into_inner());
        self.forget_handles(id, 0);
        lock(&self.dirty).remove(&id);
        match fs::remove_dir_all(paths::object_dir(&self.root, id)) {
            Ok(()) => paths::fsync_dir(&paths::fanout_dir(&self.root, id))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// Per block of `[b0, b1)` of chunk `c`: holds data?
    fn chunk_map(&self, id: u64, c: u64, b0: u64, b1: u64) -> Result<Vec<bool>, DsError> {
        let _c = self
            .chunk_lock(id, c)
            .read()
            .unwrap_or_else(|p| p.into_inner());
        match self.chunk_file(id, c, false)? {
            Some(f) => chunk::block_map(&f, &self.geo, b0, b1).map_err(|e| e.at(id, c)),
            None => Ok(vec![false; (b1 - b0) as usize]),
        }
    }

    /// Data/hole runs over `[offset, end)`, at block granularity, clipped to the range.
    fn runs(&self, id: u64, offset: u64, end: u64) -> Result<Vec<(bool, u64, u64)>, DsError> {
        let bs = self.geo.block_size;
        let present: BTreeSet<u64> = paths::list_chunks(&self.root, id)?.into_iter().collect();
        let mut runs: Vec<(bool, u64, u64)> = Vec::new();
        let mut push = |data: bool, s: u64, e: u64| {
            if s >= e {
                return;
            }
            match runs.last_mut() {
                Some((d, _, re)) if *d == data && *re == s => *re = e,
                _ => runs.push((data, s, e)),
            }
        };
        for (c, in_off, len, _) in self.pieces(offset, end) {
            let base = c * self.geo.chunk_size;
            if !present.contains(&c) {
                push(false, base + in_off, base + in_off + len);
                continue;
            }
            let (b0, b1) = (in_off / bs, (in_off + len).div_ceil(bs));
            let map = self.chunk_map(id, c, b0, b1)?;
            for (i, data) in map.into_iter().enumerate() {
                let s = (base + (b0 + i as u64) * bs).max(base + in_off);
                let e = (base + (b0 + i as u64 + 1) * bs).min(base + in_off + len);
                push(data, s, e);
            }
        }
        Ok(runs)
    }

    /// NFSv4.2 SEEK: the first offset >= `offset` in data (or in a hole; EOF counts as a hole).
    /// `None` when there is none before `file_size` (NFS4ERR_NXIO).
    pub fn seek(
        &self,
        id: u64,
        offset: u64,
        what: SeekWhat,
        file_size: u64,
    ) -> Result<Option<u64>, DsError> {
        if offset >= file_size {
            return Ok(None);
        }
        let _o = self.obj_lock(id).read().unwrap_or_else(|p| p.into_inner());
        // Walk a chunk at a time so a hit early in a huge file costs little.
        let cs = self.geo.chunk_size;
        let mut pos = offset;
        while pos < file_size {
            let end = ((pos / cs + 1) * cs).min(file_size);
            for (data, s, _) in self.runs(id, pos, end)? {
                if data == (what == SeekWhat::Data) {
                    return Ok(Some(s));
                }
            }
            pos = end;
        }
        Ok(match what {
            SeekWhat::Data => None,
            SeekWhat::Hole => Some(file_size),
        })
    }

    /// NFSv4.2 READ_PLUS: `[offset, offset+len)` clipped to `file_size` as data and hole
    /// segments (holes are unwritten blocks), and whether the result reaches EOF.
    pub fn segments(
        &self,
        id: u64,
        offset: u64,
        len: u64,
        file_size: u64,
    ) -> Result<(Vec<Segment>, bool), DsError> {
        if len > MAX_READ {
            return Err(DsError::Invalid(format!("read of {len} bytes")));
        }
        if offset >= file_size {
            return Ok((Vec::new(), true));
        }
        let end = end_of(offset, len)?.min(file_size);
        let runs = {
            let _o = self.obj_lock(id).read().unwrap_or_else(|p| p.into_inner());
            self.runs(id, offset, end)?
        };
        let mut out = Vec::with_capacity(runs.len());
        for (data, s, e) in runs {
            if data {
                let (bytes, _) = self.read(id, s, e - s, file_size)?;
                out.push(Segment::Data {
                    offset: s,
                    data: bytes,
                });
            } else {
                out.push(Segment::Hole {
                    offset: s,
                    len: e - s,
                });
            }
        }
        Ok((out, end == file_size))
    }

    /// NFSv4.2 ALLOCATE: reserves space for the range (contents unchanged; unwritten blocks still
    /// read as zeros and report as holes). Durable on return.
    pub fn allocate(&self, id: u64, offset: u64, len: u64) -> Result<(), DsError> {
        let end = end_of(offset, len)?;
        let _o = self.obj_lock(id).read().unwrap_or_else(|p| p.into_inner());
        for (c, in_off, plen, _) in self.pieces(offset, end) {
            let _c = self
                .chunk_lock(id, c)
                .write()
                .unwrap_or_else(|p| p.into_inner());
            if let Some(f) = self.chunk_for_change(id, c, true)? {
                chunk::allocate(&f, &self.geo, in_off, plen)?;
                f.sync_data()?;
            }
        }
        let dirs = lock(&self.dirty)
            .get_mut(&id)
            .map(|d| std::mem::take(&mut d.dirs));
        self.sync_dirs(id, dirs.unwrap_or_default())
    }

    /// NFSv4.2 DEALLOCATE (punch hole): the range reads as zeros; whole blocks become holes.
    /// Durable on return.
    pub fn deallocate(&self, id: u64, offset: u64, len: u64) -> Result<(), DsError> {
        let end = end_of(offset, len)?;
        let _o = self.obj_lock(id).read().unwrap_or_else(|p| p.into_inner());
        let present: BTreeSet<u64> = paths::list_chunks(&self.root, id)?.into_iter().collect();
        for (c, in_off, plen, _) in self.pieces(offset, end) {
            if !present.contains(&c) {
                continue;
            }
            let _c = self
                .chunk_lock(id, c)
                .write()
                .unwrap_or_else(|p| p.into_inner());
            if let Some(f) = self.chunk_for_change(id, c, false)? {
                chunk::deallocate(&f, &self.geo, in_off, plen).map_err(|e| e.at(id, c))?;
                f.sync_data()?;
            }
        }
        Ok(())
    }

    /// CLONE/COPY: makes `[dst_off, dst_off+len)` of `dst` equal to `[src_off, ..)` of `src`,
    /// keeping holes as holes. A copy, not a reflink; durable on return.
    pub fn clone_range(
        &self,
        src: u64,
        src_off: u64,
        dst: u64,
        dst_off: u64,
        len: u64,
    ) -> Result<(), DsError> {
        let src_end = end_of(src_off, len)?;
        let dst_end = end_of(dst_off, len)?;
        if src == dst && src_off < dst_end && dst_off < src_end {
            return Err(DsError::Invalid(
                "overlapping clone within one object".into(),
            ));
        }
        const STEP: u64 = 8 << 20;
        let mut pos = src_off;
        while pos < src_end {
            let step_end = (pos + STEP).min(src_end);
            let runs = {
                let _o = self.obj_lock(src).read().unwrap_or_else(|p| p.into_inner());
                self.runs(src, pos, step_end)?
            };
            for (data, s, e) in runs {
                let at = dst_off + (s - src_off);
                if data {
                    let (bytes, _) = self.read(src, s, e - s, u64::MAX)?;
                    self.write(dst, at, &bytes, false)?;
                } else {
                    self.deallocate(dst, at, e - s)?;
                }
            }
            pos = step_end;
        }
        self.commit(dst)
    }

    /// Makes object `dst` share every chunk of `src` by hard links: no data is copied, and from
    /// then on each is copied by whichever object changes it first (`unshare`), so `dst` keeps
    /// `src`'s bytes as of this call (a snapshot's data image). Idempotent: names `dst` already
    /// has are kept, so a retried link completes one that died part way. `src`'s unstable
    /// writes are made durable first; the links are durable on return.
    pub fn link_object(&self, src: u64, dst: u64) -> Result<(), DsError> {
        if src == dst {
            return Err(DsError::Invalid("link of an object to itself".into()));
        }
        // Both objects exclusive (no change to `src` mid-link, no write to `dst` racing a
        // link), taken in stripe order so two links crossing each other cannot deadlock.
        let (a, b) = (mix(src, 0) % OBJ_STRIPES, mix(dst, 0) % OBJ_STRIPES);
        let _first = self.obj_locks[a.min(b)]
            .write()
            .unwrap_or_else(|p| p.into_inner());
        let _second = (a != b).then(|| {
            self.obj_locks[a.max(b)]
                .write()
                .unwrap_or_else(|p| p.into_inner())
        });
        self.commit_locked(src)?;
        let chunks = paths::list_chunks(&self.root, src)?;
        self.create_object_dirs(dst)?;
        let mut linked = 0usize;
        for c in chunks {
            let from = paths::chunk_path(&self.root, src, c);
            match fs::metadata(&from) {
                // Holds nothing (created by a write that died before its preamble).
                Ok(m) if m.len() < PREAMBLE_LEN => continue,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            }
            match fs::hard_link(&from, paths::chunk_path(&self.root, dst, c)) {
                Ok(()) => linked += 1,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e.into()),
            }
        }
        // The new names, and the directories `create_object_dirs` made for them.
        let mut dirs = lock(&self.dirty)
            .get_mut(&dst)
            .map(|d| std::mem::take(&mut d.dirs))
            .unwrap_or_default();
        dirs.insert(paths::object_dir(&self.root, dst));
        self.sync_dirs(dst, dirs)?;
        // The files now have another link: reopen them to see it.
        self.forget_handles(src, 0);
        self.forget_handles(dst, 0);
        info!(src, dst, linked, "linked object");
        Ok(())
    }

    /// How many chunk files object `id` has, what they occupy, and how much of that it shares
    /// with other objects (a snapshot's unique and shared bytes). An object that does not exist
    /// has none. O(chunks) `stat`s, under the object's read lock so no truncate or link is
    /// half way.
    pub fn object_stat(&self, id: u64) -> Result<ObjectStat, DsError> {
        use std::os::unix::fs::MetadataExt;
        let _o = self.obj_lock(id).read().unwrap_or_else(|p| p.into_inner());
        let mut st = ObjectStat::default();
        for c in paths::list_chunks(&self.root, id)? {
            let md = match fs::metadata(paths::chunk_path(&self.root, id, c)) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            // Created by a write that died before its preamble: holds nothing, never linked.
            if md.len() < PREAMBLE_LEN {
                continue;
            }
            let bytes = md.blocks() * 512;
            st.chunks += 1;
            st.bytes += bytes;
            if md.nlink() > 1 {
                st.shared_chunks += 1;
                st.shared_bytes += bytes;
            }
        }
        Ok(st)
    }

    /// Where the data of object `id` ends on disk: the end of the last block any write (not
    /// since truncated away) touched, so a block-granular upper bound of its highest byte. Taken
    /// from chunk file lengths, which is what survives a crash; callers that need the exact
    /// byte keep it themselves.
    pub fn data_end(&self, id: u64) -> Result<u64, DsError> {
        let _o = self.obj_lock(id).read().unwrap_or_else(|p| p.into_inner());
        let cs = self.geo.chunk_size;
        for c in paths::list_chunks(&self.root, id)?.into_iter().rev() {
            let len = match fs::metadata(paths::chunk_path(&self.root, id, c)) {
                Ok(m) => m.len(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            // Data blocks are written whole, so the length past the header is block aligned.
            if len > self.geo.data_start {
                return Ok(c * cs + (len - self.geo.data_start).min(cs));
            }
        }
        Ok(0)
    }

    /// Every object the store holds (scrub walks them). Walks the tree's two top levels.
    pub fn objects(&self) -> Result<Vec<u64>, DsError> {
        paths::list_objects(&self.root)
    }

    /// Bytes of disk the store uses (allocated blocks, headers included). Walks the tree.
    pub fn usage(&self) -> Result<u64, DsError> {
        use std::os::unix::fs::MetadataExt;
        // A chunk file linked into several objects (`link_object`) is counted once: `seen`
        // holds only files with more than one link, so it grows with the shared chunks, not
        // with the store.
        fn walk(p: &Path, total: &mut u64, seen: &mut HashSet<(u64, u64)>) -> std::io::Result<()> {
            for ent in fs::read_dir(p)? {
                let ent = ent?;
                let md = ent.metadata()?;
                if md.is_dir() {
                    walk(&ent.path(), total, seen)?;
                } else if md.nlink() <= 1 || seen.insert((md.dev(), md.ino())) {
                    *total += md.blocks() * 512;
                }
            }
            Ok(())
        }
        let mut total = 0;
        walk(
            &paths::objects_dir(&self.root),
            &mut total,
            &mut HashSet::new(),
        )?;
        Ok(total)
    }
}

impl ChunkStore {
    /// Opens (creating if needed) the store in `dir` with the default geometry, or with the one
    /// the store was created with.
    pub fn open(dir: impl AsRef<Path>) -> Result<ChunkStore, DsError> {
        Self::open_with(dir, Config::default())
    }

    /// As `open`, choosing the geometry of a new store.
    pub fn open_with(dir: impl AsRef<Path>, cfg: Config) -> Result<ChunkStore, DsError> {
        Ok(ChunkStore {
            inner: Arc::new(ChunkStoreSync::open_with(dir.as_ref(), cfg)?),
        })
    }

    /// The blocking API, for callers already on a blocking thread.
    pub fn blocking(&self) -> &ChunkStoreSync {
        &self.inner
    }

    async fn run<T, F>(&self, f: F) -> Result<T, DsError>
    where
        T: Send + 'static,
        F: FnOnce(&ChunkStoreSync) -> Result<T, DsError> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| DsError::Io(std::io::Error::other(e)))?
    }

    /// See `ChunkStoreSync::write`. Copies `data`; `write_owned` does not.
    pub async fn write(
        &self,
        id: u64,
        offset: u64,
        data: &[u8],
        stable: bool,
    ) -> Result<(), DsError> {
        self.write_owned(id, offset, bytes::Bytes::copy_from_slice(data), stable)
            .await
    }

    pub async fn write_owned(
        &self,
        id: u64,
        offset: u64,
        data: bytes::Bytes,
        stable: bool,
    ) -> Result<(), DsError> {
        self.run(move |s| s.write(id, offset, &data, stable)).await
    }

    pub async fn read(
        &self,
        id: u64,
        offset: u64,
        len: u64,
        file_size: u64,
    ) -> Result<(Vec<u8>, bool), DsError> {
        self.run(move |s| s.read(id, offset, len, file_size)).await
    }

    pub async fn read_into(
        &self,
        id: u64,
        offset: u64,
        len: u64,
        file_size: u64,
        buf: Vec<u8>,
    ) -> Result<(Vec<u8>, bool), DsError> {
        self.run(move |s| s.read_into(id, offset, len, file_size, buf))
            .await
    }

    pub async fn commit(&self, id: u64) -> Result<(), DsError> {
        self.run(move |s| s.commit(id)).await
    }

    pub async fn truncate(&self, id: u64, new_size: u64) -> Result<(), DsError> {
        self.run(move |s| s.truncate(id, new_size)).await
    }

    pub async fn remove(&self, id: u64) -> Result<(), DsError> {
        self.run(move |s| s.remove(id)).await
    }

    /// `remove` of each object, in one trip to the blocking pool (unlink-heavy loads would
    /// otherwise pay a thread handoff per file, most of them for files that never had data).
    pub async fn remove_many(
        &self,
        ids: Vec<u64>,
    ) -> Result<Vec<(u64, Result<(), DsError>)>, DsError> {
        self.run(move |s| Ok(ids.into_iter().map(|id| (id, s.remove(id))).collect()))
            .await
    }

    pub async fn seek(
        &self,
        id: u64,
        offset: u64,
        what: SeekWhat,
        file_size: u64,
    ) -> Result<Option<u64>, DsError> {
        self.run(move |s| s.seek(id, offset, what, file_size)).await
    }

    pub async fn segments(
        &self,
        id: u64,
        offset: u64,
        len: u64,
        file_size: u64,
    ) -> Result<(Vec<Segment>, bool), DsError> {
        self.run(move |s| s.segments(id, offset, len, file_size))
            .await
    }

    pub async fn allocate(&self, id: u64, offset: u64, len: u64) -> Result<(), DsError> {
        self.run(move |s| s.allocate(id, offset, len)).await
    }

    pub async fn deallocate(&self, id: u64, offset: u64, len: u64) -> Result<(), DsError> {
        self.run(move |s| s.deallocate(id, offset, len)).await
    }

    pub async fn clone_range(
        &self,
        src: u64,
        src_off: u64,
        dst: u64,
        dst_off: u64,
        len: u64,
    ) -> Result<(), DsError> {
        self.run(move |s| s.clone_range(src, src_off, dst, dst_off, len))
            .await
    }

    pub async fn link_object(&self, src: u64, dst: u64) -> Result<(), DsError> {
        self.run(move |s| s.link_object(src, dst)).await
    }

    pub async fn data_end(&self, id: u64) -> Result<u64, DsError> {
        self.run(move |s| s.data_end(id)).await
    }

    pub async fn object_stat(&self, id: u64) -> Result<ObjectStat, DsError> {
        self.run(move |s| s.object_stat(id)).await
    }

    pub async fn objects(&self) -> Result<Vec<u64>, DsError> {
        self.run(|s| s.objects()).await
    }

    pub async fn usage(&self) -> Result<u64, DsError> {
        self.run(|s| s.usage()).await
    }

    pub fn most_added_by_write(&self, offset: u64, len: u64) -> u64 {
        self.inner.most_added_by_write(offset, len)
    }

    /// See `ChunkStoreSync::most_added_by_write_to`; may `stat` a chunk file or two.
    pub fn most_added_by_write_to(&self, id: u64, offset: u64, len: u64) -> u64 {
        self.inner.most_added_by_write_to(id, offset, len)
    }
}
