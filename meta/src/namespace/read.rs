//! Reads: a consistent view of the local shards' states.
//!
//! A `Snapshot` takes a shard's read lock the first time it reads from that shard and keeps it
//! until it is dropped, so several reads of one shard (READDIR and the attributes of its
//! entries, mostly in one shard since files live with their directory) see one state, and
//! reads cost nothing for shards they never touch. Locks are only ever taken for reading, and a
//! shard's writer (`apply`) takes only its own, so holding several cannot deadlock.
//!
//! A cross-shard transaction (`txn`) commits shard by shard, so between two shards' commits
//! (or, after its coordinator died, until recovery settles it) a plain read could see its
//! shards at different moments: a renamed file under both names. The client's reads
//! (LOOKUP, GETATTR, READDIR, OPEN by name) use the `_settled` reads instead, which answer
//! `Busy` while a transaction holds the key they read (checked under the same read lock as
//! the read itself, so no commit slips in between), and `settle` runs them again until the
//! lock goes, for up to `READ_WAIT`. Reads for the server's own bookkeeping stay plain.
//!
//! `settle` polls (1 ms, doubling to 20 ms) rather than being woken when the lock goes. Cost
//! (txnbench, 2026-11-25, a shared 2-core machine): a stat with nothing locked takes 13–42 ns more
//! in a one-task loop (63–117 ns plain, 89–180 ns settled, four runs), against tens of microseconds
//! for a GETATTR over the wire; a settled lookup in a directory that 16 tasks keep renaming files
//! out of (its entries locked nearly all the time) waited 0.06–14 ms on average over four runs, 190
//! ms at worst, never the full `READ_WAIT`. Not yet: a wake-up instead of polling; SECINFO,
//! LOOKUPP, ACCESS, VERIFY and READLINK, and the server's own reads (the reaper, repair, layouts'
//! placement records), read without waiting.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLockReadGuard};
use std::time::Duration;

use super::error::FsError;
use super::object::{DirEntry, Inode, StatFs, FIRST_COOKIE, ROOT_INO};
use super::shard::{Key, ShardId};
use super::state::{meta, Dump, MemState, StateStore};
use super::unstable::Unstable;
use crate::storage::shard::ShardCore;

/// Read locks of the local shards, each taken on first use and kept until dropped (a
/// `Snapshot`'s, a transaction's `TxnStore`'s).
pub(crate) struct Held<'a> {
    shards: &'a BTreeMap<u16, Arc<ShardCore>>,
    held: RefCell<Locks<'a>>,
}

type ReadGuard<'a> = RwLockReadGuard<'a, MemState>;

/// The locks a `Held` took. Most reads see one shard (a file lives with its directory): its
/// lock is kept inline, so a snapshot of one shard allocates nothing. A map node for it was
/// ~16 allocations per create, stat and unlink (METADATA-BENCH run 17).
struct Locks<'a> {
    first: Option<(u16, ReadGuard<'a>)>,
    more: BTreeMap<u16, ReadGuard<'a>>,
}

impl<'a> Held<'a> {
    pub(crate) fn new(shards: &'a BTreeMap<u16, Arc<ShardCore>>) -> Self {
        Held {
            shards,
            held: RefCell::new(Locks {
                first: None,
                more: BTreeMap::new(),
            }),
        }
    }

    /// Runs `f` on `shard`'s state, read-locking it on first use.
    pub(crate) fn with<R>(
        &self,
        shard: ShardId,
        f: impl FnOnce(&MemState) -> R,
    ) -> Result<R, FsError> {
        let mut held = self.held.borrow_mut();
        let Locks { first, more } = &mut *held;
        if first.is_none() {
            *first = Some((shard.0, self.lock(shard)?));
        }
        let st = match first {
            Some((s, st)) if *s == shard.0 => st,
            _ => match more.entry(shard.0) {
                std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::btree_map::Entry::Vacant(v) => v.insert(self.lock(shard)?),
            },
        };
        Ok(f(st))
    }

    fn lock(&self, shard: ShardId) -> Result<ReadGuard<'a>, FsError> {
        let core = self
            .shards
            .get(&shard.0)
            .ok_or_else(|| FsError::Io(format!("shard {shard} is not on this node")))?;
        core.live
            .read()
            .map_err(|_| FsError::Io("shard state lock poisoned".into()))
    }

    /// The shards read so far, in order.
    pub(crate) fn touched(&self) -> Vec<ShardId> {
        let held = self.held.borrow();
        let mut s: Vec<ShardId> = (held.first.iter().map(|(s, _)| ShardId(*s)))
            .chain(held.more.keys().map(|s| ShardId(*s)))
            .collect();
        s.sort_unstable();
        s
    }
}

/// How long a settled read waits for a transaction's locks before it gives up (the client gets
/// NFS4ERR_DELAY and tries again). A transaction holds them for milliseconds; a coordinator
/// that died holds them until recovery (`txn::STALE`, 5 s), longer than a request should hang.
pub const READ_WAIT: Duration = Duration::from_secs(2);

/// Runs `read` again while it fails `busy`, pausing 1 ms, then twice as long each time up to
/// 20 ms, for up to `READ_WAIT`; then returns what it answered last. `read` takes its own
/// snapshot each time, so no shard's read lock is held while this waits.
pub async fn settle<T, E>(
    mut read: impl FnMut() -> Result<T, E>,
    busy: impl Fn(&E) -> bool,
) -> Result<T, E> {
    // The common case, nothing locked, reads no clock.
    match read() {
        Err(e) if busy(&e) => {}
        other => return other,
    }
    let deadline = tokio::time::Instant::now() + READ_WAIT;
    let mut pause = Duration::from_millis(1);
    loop {
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(20));
        match read() {
            Err(e) if busy(&e) && tokio::time::Instant::now() + pause < deadline => {}
            other => return other,
        }
    }
}

/// A read-only view of the namespace as of one moment per shard. It holds read locks (and is
/// not `Send`, so it cannot be kept across an `.await`): keep it short.
pub struct Snapshot<'a> {
    shards: &'a BTreeMap<u16, Arc<ShardCore>>,
    held: Held<'a>,
    /// UNSTABLE writes not yet in the log: attributes read through the snapshot include them.
    unstable: &'a Unstable,
    boot_count: u64,
}

impl<'a> Snapshot<'a> {
    pub(crate) fn new(
        shards: &'a BTreeMap<u16, Arc<ShardCore>>,
        unstable: &'a Unstable,
        boot_count: u64,
    ) -> Self {
        Snapshot {
            shards,
            held: Held::new(shards),
            unstable,
            boot_count,
        }
    }

    /// The shards this snapshot has read so far: what a reader must know to be current
    /// before it trusts the answer (`compound::Ctx::read` passes their read barriers).
    pub fn touched(&self) -> Vec<ShardId> {
        self.held.touched()
    }

    /// Runs `f` on `shard`'s state, locking it for this snapshot on first use.
    pub(super) fn with<R>(
        &self,
        shard: ShardId,
        f: impl FnOnce(&MemState) -> R,
    ) -> Result<R, FsError> {
        self.held.with(shard, f)
    }

    /// `f` on every local shard's state, in shard order.
    pub(super) fn each(&self, mut f: impl FnMut(&MemState)) -> Result<(), FsError> {
        for s in self.shards.keys() {
            self.with(ShardId(*s), &mut f)?;
        }
        Ok(())
    }

    /// `f` on every local shard's id and state, in shard order.
    pub(super) fn each_shard(&self, mut f: impl FnMut(ShardId, &MemState)) -> Result<(), FsError> {
        for s in self.shards.keys() {
            let id = ShardId(*s);
            self.with(id, |st| f(id, st))?;
        }
        Ok(())
    }

    /// The NFS client owners MDS node `node` has recorded (`Command::ClientRecords`), as this
    /// node's replica of shard 0 has them.
    pub fn client_records(&self, node: u64) -> Result<Vec<Vec<u8>>, FsError> {
        self.with(ShardId(0), |st| st.clients_of(node))?
    }

    pub fn getattr(&self, ino: u64) -> Result<Inode, FsError> {
        self.getattr_as(ino, false)
    }

    /// `getattr`; when `settled`, `Busy` while a transaction holds the inode, checked in the
    /// same look at the shard.
    fn getattr_as(&self, ino: u64, settled: bool) -> Result<Inode, FsError> {
        let i = self.with(ShardId::of_ino(ino), |st| {
            if settled && st.locks.contains_key(&Key::Inode(ino)) {
                return Err(FsError::Busy);
            }
            st.inodes.get(&ino).cloned().ok_or(FsError::Stale(ino))
        })??;
        Ok(self.unstable.merge(i))
    }

    fn check_dir(&self, ino: u64) -> Result<(), FsError> {
        match self.with(ShardId::of_ino(ino), |st| {
            st.inodes.get(&ino).map(|d| d.kind.is_dir())
        })? {
            None => Err(FsError::Stale(ino)),
            Some(false) => Err(FsError::NotDir),
            Some(true) => Ok(()),
        }
    }

    /// `Busy` while a cross-shard transaction holds `key` (in this node's replica of its shard).
    pub fn settled(&self, key: Key) -> Result<(), FsError> {
        match self.with(key.shard(), |st| st.locks.contains_key(&key))? {
            true => Err(FsError::Busy),
            false => Ok(()),
        }
    }

    /// `getattr`, but `Busy` while a transaction holds the inode.
    pub fn getattr_settled(&self, ino: u64) -> Result<Inode, FsError> {
        self.getattr_as(ino, true)
    }

    /// `lookup`, but `Busy` while a transaction holds the directory's entries: a name it
    /// adds or removes may be committed on one shard and not yet on another.
    pub fn lookup_settled(&self, dir: u64, name: &[u8]) -> Result<Inode, FsError> {
        self.lookup_as(dir, name, true)
    }

    /// The inode named `name` in `dir`.
    pub fn lookup(&self, dir: u64, name: &[u8]) -> Result<Inode, FsError> {
        self.lookup_as(dir, name, false)
    }

    /// The child's inode may live on another shard than the directory (a subdirectory, a file
    /// renamed in from another directory): a replica of that shard that is behind this one's
    /// may not have it yet, which is `Dangling`, not `Stale`: the reader passes that shard's
    /// read barrier and reads again (`compound::Ctx::read`). A settled read waits out a
    /// transaction that has yet to make the child there (a new directory's inode number is
    /// locked on its shard until the transaction's part commits there, which may come after
    /// the entry's).
    fn lookup_as(&self, dir: u64, name: &[u8], settled: bool) -> Result<Inode, FsError> {
        let ino = self
            .entry_as(dir, name, settled)?
            .ok_or(FsError::NotFound)?;
        match self.getattr(ino) {
            Err(FsError::Stale(_)) if settled && self.settled(Key::Inode(ino)).is_err() => {
                Err(FsError::Busy)
            }
            Err(FsError::Stale(_)) => Err(FsError::Dangling { dir, ino }),
            other => other,
        }
    }

    /// The inode number `name` in `dir` names, if any, read from the directory's shard alone
    /// (the child's shard is not read: what a command that names the child needs).
    pub fn entry(&self, dir: u64, name: &[u8]) -> Result<Option<u64>, FsError> {
        self.entry_as(dir, name, false)
    }

    fn entry_as(&self, dir: u64, name: &[u8], settled: bool) -> Result<Option<u64>, FsError> {
        self.check_dir(dir)?;
        self.with(ShardId::of_ino(dir), |st| {
            if settled && st.locks.contains_key(&Key::Entries(dir)) {
                return Err(FsError::Busy);
            }
            Ok(st.dirents.get(&(dir, name.to_vec())).map(|(i, _)| *i))
        })?
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
        self.check_dir(dir)?;
        self.with(ShardId::of_ino(dir), |st| {
            let next = st.cookies.get(&dir).copied().unwrap_or(FIRST_COOKIE);
            if after_cookie >= next && after_cookie >= FIRST_COOKIE {
                return Err(FsError::Invalid);
            }
            let start = after_cookie.max(FIRST_COOKIE - 1) + 1;
            let mut out = Vec::new();
            for ((_, cookie), name) in st.dirindex.range((dir, start)..=(dir, u64::MAX)) {
                if out.len() >= max_entries {
                    return Ok((out, false));
                }
                let (ino, c) = st
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
        })?
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

    /// Inodes in use and bytes of regular files, over the local shards.
    pub fn statfs(&self) -> Result<StatFs, FsError> {
        let mut s = StatFs::default();
        self.each(|st| {
            s.files += st.meta.get(meta::FILES).copied().unwrap_or(0);
            s.bytes += st.meta.get(meta::BYTES).copied().unwrap_or(0);
        })?;
        Ok(s)
    }

    /// The index of the last entry shard 0 applied (its log's entries count from 1).
    pub fn applied_index(&self) -> Result<u64, FsError> {
        let core = self
            .shards
            .get(&0)
            .ok_or_else(|| FsError::Io("shard s0 is not on this node".into()))?;
        Ok(core.applied().log_id.map(|l| l.index).unwrap_or(0))
    }

    pub fn fs_id(&self) -> Result<u64, FsError> {
        self.with(ShardId(0), |st| {
            st.meta.get(meta::FS_ID).copied().unwrap_or(0)
        })
    }

    pub fn boot_count(&self) -> Result<u64, FsError> {
        Ok(self.boot_count)
    }

    /// Regular files with nlink 0 not yet forgotten, over the local shards. After a restart
    /// none is open any more, so the server forgets them all (and drops their data).
    pub fn orphans(&self) -> Result<Vec<u64>, FsError> {
        let mut out = Vec::new();
        self.each(|st| out.extend(st.orphans.keys().filter(|i| !st.orphan_dirs.contains(i))))?;
        Ok(out)
    }

    /// Orphan directories (`Command::Detach`) over the local shards, with the entries each
    /// still holds: the reclaimer's work (`namespace::rmtree`). An entry that is a directory
    /// not detached yet counts once, whatever it holds.
    pub fn detached(&self) -> Result<Vec<(u64, u64)>, FsError> {
        let mut out = Vec::new();
        self.each(|st| out.extend(detached_in(st)))?;
        Ok(out)
    }

    /// The erasure-coded groups of `ino`, if any.
    pub fn stripes(&self, ino: u64) -> Result<Option<super::FileCode>, FsError> {
        self.with(ShardId::of_ino(ino), |st| st.stripes.get(&ino).cloned())
    }

    /// The extended attributes of `ino` (empty when it has none).
    pub fn xattrs(&self, ino: u64) -> Result<meta_core::Xattrs, FsError> {
        self.with(ShardId::of_ino(ino), |st| {
            st.xattrs.get(&ino).cloned().unwrap_or_default()
        })
    }

    /// Where chunk `chunk` of `ino` lives, if recorded.
    pub fn chunk(&self, ino: u64, chunk: u64) -> Result<Option<Vec<u64>>, FsError> {
        self.with(ShardId::of_ino(ino), |st| {
            st.chunks.get(&(ino, chunk)).cloned()
        })
    }

    /// Where each recorded chunk of `ino` lives (DS ids, preferred first).
    pub fn chunks(&self, ino: u64) -> Result<Vec<(u64, Vec<u64>)>, FsError> {
        self.with(ShardId::of_ino(ino), |st| st.chunks(ino))?
    }

    /// Files with a placement record naming fewer than `mirrors` DSs, in inode order: the
    /// durable side of the repair queue (a mirror is dropped from the record, durably, before
    /// the file is written without it or when its copy is found bad).
    pub fn under_mirrored(&self, mirrors: usize) -> Vec<u64> {
        let mut out: Vec<u64> = Vec::new();
        let _ = self.each(|st| {
            out.extend(
                st.chunks
                    .iter()
                    .filter(|(_, m)| m.len() < mirrors)
                    .map(|((ino, _), _)| *ino),
            )
        });
        out.dedup();
        out
    }

    /// Mirrored files the encoder may take: a placement record, no encoding record (none under
    /// way, none to clean up), no reduce record that counts, at least `min_size` bytes,
    /// unchanged since `before`, and not `skip(ino, change)` (a file the caller left as it
    /// is at that change); at most `max`, in inode order.
    pub fn encodable(
        &self,
        min_size: u64,
        before: super::Time,
        max: usize,
        skip: &dyn Fn(u64, u64) -> bool,
    ) -> Vec<u64> {
        let mut out: Vec<u64> = Vec::new();
        let _ = self.each(|st| {
            for ((ino, _), _) in st.chunks.iter() {
                if out.len() >= max {
                    return;
                }
                // A reduce record that counts: one under way reads the mirrors (`BeginEncode`
                // refuses the file too).
                let reduced = st.reduces.get(ino).is_some_and(|r| !r.retired);
                if *ino == super::DRAIN_INO || st.stripes.contains_key(ino) || reduced {
                    continue;
                }
                // Evicted: its mirrors are empty, the bucket holds its bytes (`BeginEncode`
                // refuses it too).
                if st.tier.get(ino).is_some_and(|t| t.evicted) {
                    continue;
                }
                let due = st.inodes.get(ino).is_some_and(|i| {
                    matches!(i.kind, super::FileKind::Regular)
                        && i.nlink > 0
                        && i.size >= min_size
                        && i.mtime <= before
                        && i.ctime <= before
                        && !skip(*ino, i.change)
                });
                if due && out.last() != Some(ino) {
                    out.push(*ino);
                }
            }
        });
        out
    }

    /// The file system's data by how it is stored; `up`: whether a data server is up.
    pub fn redundancy(&self, up: impl Fn(u64) -> bool) -> super::coding::Redundancy {
        let mut r = super::coding::Redundancy::default();
        let _ = self.each(|st| {
            for ((ino, chunk), mirrors) in st.chunks.iter() {
                if *ino == super::DRAIN_INO || *chunk != 0 {
                    continue;
                }
                if let Some(i) = st.inodes.get(ino) {
                    r.mirrored_files += 1;
                    r.mirrored_bytes += i.size;
                    r.mirrored_raw += i.size * mirrors.len() as u64;
                }
            }
            for c in st.stripes.values().filter(|c| c.is_encoded()) {
                let len = c.file_len();
                r.encoded_files += 1;
                r.encoded_bytes += len;
                r.encoded_raw += c.stored_bytes();
                if c.damaged().next().is_some() || c.placement.iter().any(|d| !up(*d)) {
                    r.degraded_bytes += len;
                }
            }
            for d in st.reduces.values().filter(|f| f.is_reduced()) {
                r.reduced_files += 1;
                r.reduced_bytes += d.reduced().map_or(0, |d| d.len());
            }
            for s in st.segments.values().filter(|s| s.is_live()) {
                r.segment_unique_bytes += s.raw_bytes();
                r.segment_stored_bytes += s.stored_len;
                // One stripe of k+m, a third of the width parity (2+1, 4+2), its unit the
                // smallest power of two of at least 4 KiB that holds the segment in k: each
                // parity shard is a unit, or the segment when shorter (as
                // `mds::dataservers::segments::raw_bytes` counts it).
                let width = s.placement.len().max(1) as u64;
                let (k, m) = ((width - width / 3).max(1), width / 3);
                let unit = s.stored_len.div_ceil(k).max(1 << 12).next_power_of_two();
                r.segment_raw += s.stored_len + m * s.stored_len.min(unit);
            }
        });
        r
    }

    /// Encoding records with something to do: an encode left under way (by a crash), mirror
    /// copies to delete, or shards of a retired encoding to drop.
    pub fn codes_to_clean(&self) -> Vec<(u64, super::FileCode)> {
        let mut out = Vec::new();
        let _ = self.each(|st| {
            out.extend(
                st.stripes
                    .iter()
                    .filter(|(_, c)| {
                        c.retired || c.encoding.is_some() || !c.stale_copies.is_empty()
                    })
                    .map(|(i, c)| (*i, c.clone())),
            )
        });
        out
    }

    /// Every data server a placement record or a live encoding names.
    pub fn servers_named(&self) -> std::collections::BTreeSet<u64> {
        let mut out = std::collections::BTreeSet::new();
        let _ = self.each(|st| {
            for ((ino, _), m) in st.chunks.iter() {
                if *ino != super::DRAIN_INO {
                    out.extend(m.iter().copied());
                }
            }
            for c in st.stripes.values().filter(|c| c.is_encoded()) {
                out.extend(c.placement.iter().copied());
            }
            // Segments' shards, dying ones too: a lost server must be found (and written
            // off) for their deletes to finish.
            for s in st.segments.values() {
                out.extend(s.placement.iter().copied());
            }
        });
        out
    }

    /// Encoded files with a shard recorded bad: the durable side of the queue of shards to
    /// rebuild in place.
    pub fn codes_damaged(&self) -> Vec<u64> {
        let mut out = Vec::new();
        let _ = self.each(|st| {
            out.extend(
                st.stripes
                    .iter()
                    .filter(|(_, c)| c.is_encoded() && c.damaged().next().is_some())
                    .map(|(i, _)| *i),
            )
        });
        out
    }

    /// Files with a placement record naming data server `ds`, in inode order: what a drain of
    /// `ds` still has to move (the drain marks under `DRAIN_INO` are not files).
    pub fn placed_on(&self, ds: u64) -> Vec<u64> {
        let mut out: Vec<u64> = Vec::new();
        let _ = self.each(|st| {
            out.extend(
                st.chunks
                    .iter()
                    .filter(|((ino, _), m)| *ino != super::DRAIN_INO && m.contains(&ds))
                    .map(|((ino, _), _)| *ino),
            );
            // Encoded files with a shard there: a drain rebuilds it on another server.
            out.extend(
                st.stripes
                    .iter()
                    .filter(|(_, c)| c.is_encoded() && c.placement.contains(&ds))
                    .map(|(ino, _)| *ino),
            );
        });
        out.sort_unstable();
        out.dedup();
        out
    }

    /// One shard's whole state (tests compare it with its log replayed).
    pub fn shard_dump(&self, shard: ShardId) -> Result<Dump, FsError> {
        self.with(shard, |st| st.dump())
    }

    /// The whole state of the local shards, to compare with a model in tests. Pre-images are
    /// keyed by inode, so every shard's go in; each shard has its own cuts (their inode
    /// counters differ), and the dump holds shard 0's, all a one-shard model has.
    pub fn dump(&self) -> Result<Dump, FsError> {
        let mut d = Dump::default();
        let mut bad = None;
        let mut first = true;
        self.each(|st| {
            let mine = st.dump();
            // The index must mirror the entries exactly.
            for ((dir, cookie), name) in &st.dirindex {
                let e = mine.dirents.get(&(*dir, name.clone()));
                if e.map(|(_, c)| *c) != Some(*cookie) {
                    bad = Some(format!("dirindex ({dir},{cookie}) dangling"));
                }
            }
            if st.dirindex.len() != mine.dirents.len() {
                bad = Some("dirindex misses entries".into());
            }
            // So must the indexes of pre-images their pre-images.
            let mut pre = MemState {
                pre_inodes: mine.pre_inodes.clone(),
                pre_dirents: mine.pre_dirents.clone(),
                pre_xattrs: mine.pre_xattrs.clone(),
                ..MemState::default()
            };
            pre.index_pre_images();
            if pre.pre_dirindex != st.pre_dirindex || pre.pre_by_snap != st.pre_by_snap {
                bad = Some("the indexes of pre-images differ from the pre-images".into());
            }
            if first {
                d.snaps = mine.snaps;
                d.registry = mine.registry;
                first = false;
            }
            d.inodes.extend(mine.inodes);
            d.dirents.extend(mine.dirents);
            d.cookies.extend(mine.cookies);
            d.meta.extend(mine.meta);
            d.orphans.extend(mine.orphans);
            d.chunks.extend(mine.chunks);
            d.txns.extend(mine.txns);
            d.segments.extend(mine.segments);
            d.referrers.extend(mine.referrers);
            d.pre_inodes.extend(mine.pre_inodes);
            d.pre_dirents.extend(mine.pre_dirents);
            d.pre_xattrs.extend(mine.pre_xattrs);
        })?;
        match bad {
            Some(b) => Err(FsError::Corrupt(b)),
            None => Ok(d),
        }
    }
}

/// One shard's orphan directories and the entries each holds.
pub(crate) fn detached_in(st: &MemState) -> Vec<(u64, u64)> {
    st.orphan_dirs
        .iter()
        .map(|&d| {
            let n = st.dirindex.range((d, 0)..=(d, u64::MAX)).count();
            (d, n as u64)
        })
        .collect()
}
