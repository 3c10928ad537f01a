//! What the object-store tier's uploader and deleter read (`meta_core::tiering`): the files
//! whose bucket copy is missing or stale, the records with objects to delete or an upload
//! left under way, and the totals `cfs admin status` shows.
//!
//! Each scan walks the local shards' inodes: O(files) per pass, as the encoder's does. Not
//! yet: an index of changed files, for file systems whose millions of files make a pass slow.

use meta_core::object::{FileKind, Time};
use meta_core::{FileTier, Pin, TierUsage};

use super::{FsError, Namespace, Snapshot};

/// A file the uploader is to send: as it is now, at change attribute `change`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TierDue {
    pub ino: u64,
    pub change: u64,
    pub size: u64,
}

/// A file the evictor may take off flash: its copy `gen` holds it as it is (change `change`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TierEvictable {
    pub ino: u64,
    pub gen: u64,
    pub change: u64,
    pub size: u64,
    /// Its last access or change, seconds since the epoch.
    pub used_secs: i64,
    /// Its `user.cfs.tier` pin.
    pub pin: Pin,
}

impl Snapshot<'_> {
    /// Regular files with bytes whose current copy is in the bucket, on flash, with no upload
    /// under way, not pinned to flash, not reduced nor under a reduce: what eviction may
    /// choose from.
    pub fn tier_evictable(&self) -> Vec<TierEvictable> {
        let mut out = Vec::new();
        let _ = self.each(|st| {
            for (ino, t) in &st.tier {
                let (Some(c), None, false) = (&t.copy, &t.upload, t.evicted) else {
                    continue;
                };
                let Some(i) = st.inodes.get(ino) else {
                    continue;
                };
                if i.nlink == 0 || i.size == 0 || c.change != i.change {
                    continue;
                }
                // Under a reduce: `TierEvict` refuses it (`meta_core::reducing`). Reduced: only
                // once its copy is its segments (no pieces).
                let reduced = match st.reduces.get(ino).filter(|r| !r.retired) {
                    Some(r) if r.is_reduced() && r.stale_copies.is_empty() => true,
                    Some(_) => continue,
                    None => false,
                };
                // A copy of no pieces is a reduced file's segments, and only that.
                if reduced != c.pieces.is_empty() {
                    continue;
                }
                let pin = Pin::of(st.xattrs.get(ino));
                if pin == Pin::Flash {
                    continue;
                }
                out.push(TierEvictable {
                    ino: *ino,
                    gen: c.gen,
                    change: i.change,
                    size: i.size,
                    used_secs: i.atime.secs.max(i.mtime.secs),
                    pin,
                });
            }
        });
        out
    }

    /// Evicted files someone asked for (`TierWant`), with their copy's generation; at most
    /// `max`.
    pub fn tier_wanted(&self, max: usize) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let _ = self.each(|st| {
            for (ino, t) in &st.tier {
                if out.len() >= max {
                    return;
                }
                if let (true, true, Some(c)) = (t.evicted, t.wanted, &t.copy) {
                    if st.inodes.contains_key(ino) {
                        out.push((*ino, c.gen));
                    }
                }
            }
        });
        out
    }

    /// Regular files whose bucket copy is missing or older than their last change, with no
    /// upload under way, unchanged since `before`, and not `skip`ped (the caller's reasons to
    /// wait: in use, say); at most `max`, in inode order. Skipped before `max` counts, so
    /// files kept waiting never starve the rest.
    pub fn tier_due(&self, before: Time, max: usize, skip: &dyn Fn(u64) -> bool) -> Vec<TierDue> {
        let mut out = Vec::new();
        let _ = self.each(|st| {
            for i in st.inodes.values() {
                if out.len() >= max {
                    return;
                }
                if !matches!(i.kind, FileKind::Regular) || i.nlink == 0 || i.ctime > before {
                    continue;
                }
                let t = st.tier.get(&i.ino);
                if t.is_some_and(|t| t.upload.is_some()) {
                    continue;
                }
                // A reduced file whose copy is of pieces (uploaded before its reduce) is sent
                // again as its segments, and the pieces are doomed: the bucket then holds the
                // reduced bytes, not the logical ones.
                let reduced_as_pieces =
                    t.is_some_and(|t| {
                        !t.evicted && t.copy.as_ref().is_some_and(|c| !c.pieces.is_empty())
                    }) && st.reduces.get(&i.ino).is_some_and(|r| r.is_reduced());
                if t.is_some_and(|t| t.is_current(i.change)) && !reduced_as_pieces {
                    continue;
                }
                if skip(i.ino) {
                    continue;
                }
                out.push(TierDue {
                    ino: i.ino,
                    change: i.change,
                    size: i.size,
                });
            }
        });
        out
    }

    /// Records with work for the deleter: objects doomed, an upload under way (perhaps left by
    /// a crash), or a file that is gone (its inode forgotten) with objects still counted. With
    /// whether the inode is still there.
    pub fn tier_to_clean(&self) -> Vec<(u64, FileTier, bool)> {
        let mut out = Vec::new();
        let _ = self.each(|st| {
            for (ino, t) in &st.tier {
                let live = st.inodes.contains_key(ino);
                if !t.doomed.is_empty() || t.upload.is_some() || (!live && t.copy.is_some()) {
                    out.push((*ino, t.clone(), live));
                }
            }
        });
        out
    }

    /// `ino` as the uploader would take it now, quiet or not, if the bucket lacks it as it is
    /// (an upload under way counts as lacking): `None` for a file the bucket holds, one that
    /// is gone or removed, or not a regular file (write-through: `mds::tiering::through`).
    pub fn tier_behind(&self, ino: u64) -> Result<Option<TierDue>, FsError> {
        self.with(meta_core::ShardId::of_ino(ino), |st| {
            let i = st.inodes.get(&ino)?;
            if !matches!(i.kind, FileKind::Regular) || i.nlink == 0 {
                return None;
            }
            if st.tier.get(&ino).is_some_and(|t| t.is_current(i.change)) {
                return None;
            }
            Some(TierDue {
                ino,
                change: i.change,
                size: i.size,
            })
        })
    }

    /// The file's record in the tier, if it has one.
    pub fn tier(&self, ino: u64) -> Result<Option<FileTier>, FsError> {
        self.with(meta_core::ShardId::of_ino(ino), |st| {
            st.tier.get(&ino).cloned()
        })
    }

    /// What the bucket holds of the local shards' files, and what it still lacks; a file not
    /// in the bucket for which `held` (ino, ctime) says so is kept on flash (tiered mode),
    /// not queued.
    pub fn tier_usage(&self, held: &dyn Fn(u64, Time) -> bool) -> TierUsage {
        let mut u = TierUsage::default();
        let _ = self.each(|st| {
            for i in st.inodes.values() {
                if !matches!(i.kind, FileKind::Regular) || i.nlink == 0 {
                    continue;
                }
                let t = st.tier.get(&i.ino);
                match t.and_then(|t| t.copy.as_ref().map(|c| (t, c))) {
                    Some((t, c)) if t.is_current(i.change) => {
                        // A copy of no pieces is a reduced file's segments: all its bytes.
                        let bytes = if c.pieces.is_empty() {
                            i.size
                        } else {
                            c.bytes()
                        };
                        u.current_files += 1;
                        u.current_bytes += bytes;
                        if t.evicted {
                            u.evicted_files += 1;
                            u.evicted_bytes += bytes;
                        }
                    }
                    _ if held(i.ino, i.ctime) => {
                        u.flash_only_files += 1;
                        u.flash_only_bytes += i.size;
                    }
                    _ => {
                        u.pending_files += 1;
                        u.pending_bytes += i.size;
                        if u.oldest_pending_secs == 0 || i.ctime.secs < u.oldest_pending_secs {
                            u.oldest_pending_secs = i.ctime.secs.max(1);
                        }
                    }
                }
            }
            for t in st.tier.values() {
                u.uploading += u64::from(t.upload.is_some());
                u.doomed_sets += t.doomed.len() as u64;
            }
        });
        u
    }
}

impl Namespace {
    /// See `Snapshot::tier_due`.
    pub fn tier_due(
        &self,
        before: Time,
        max: usize,
        skip: &dyn Fn(u64) -> bool,
    ) -> Result<Vec<TierDue>, FsError> {
        Ok(self.snapshot()?.tier_due(before, max, skip))
    }

    /// See `Snapshot::tier_to_clean`.
    pub fn tier_to_clean(&self) -> Result<Vec<(u64, FileTier, bool)>, FsError> {
        Ok(self.snapshot()?.tier_to_clean())
    }

    /// See `Snapshot::tier_behind`.
    pub fn tier_behind(&self, ino: u64) -> Result<Option<TierDue>, FsError> {
        self.snapshot()?.tier_behind(ino)
    }

    /// See `Snapshot::tier`.
    pub fn tier(&self, ino: u64) -> Result<Option<FileTier>, FsError> {
        self.snapshot()?.tier(ino)
    }

    /// See `Snapshot::tier_evictable`.
    pub fn tier_evictable(&self) -> Result<Vec<TierEvictable>, FsError> {
        Ok(self.snapshot()?.tier_evictable())
    }

    /// See `Snapshot::tier_wanted`.
    pub fn tier_wanted(&self, max: usize) -> Result<Vec<(u64, u64)>, FsError> {
        Ok(self.snapshot()?.tier_wanted(max))
    }

    /// See `Snapshot::tier_usage`.
    pub fn tier_usage(&self, held: &dyn Fn(u64, Time) -> bool) -> Result<TierUsage, FsError> {
        Ok(self.snapshot()?.tier_usage(held))
    }
}
