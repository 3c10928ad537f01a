//! Layout segments held for one open file: what LAYOUTGET granted, looked up by offset and
//! iomode, replaced when the server grants again, dropped when returned.
//!
//! Architecture Invariant: an I/O through a segment holds an [`InUse`] from the lookup that
//! found it (under the file's state mutex) until the data server answered. A recall moves
//! the segment out of the cache under the same mutex, so once it has, no new I/O starts
//! through it, and the ones already started are exactly those counted in `users`.
use super::PnfsError;
use proto::nfs4::{Deviceid4, FfLayout4, Layoutiomode4};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Where one mirror's I/O for an offset goes: the data server, the NFSv3 handle it knows the
/// chunk by, and the AUTH_SYS identity the layout told us to use there.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DsTarget {
    pub device: Deviceid4,
    pub fh: Vec<u8>,
    pub uid: u32,
    pub gid: u32,
}

/// One `layout4` of type flexfiles, decoded.
#[derive(Debug)]
pub struct Segment {
    /// Unique within the driver: a write remembered for a later COMMIT names the segment it
    /// went through, and is rewritten if that segment is gone by then.
    pub id: u64,
    pub offset: u64,
    /// NFS4_UINT64_MAX means "to the end of the file" (RFC 8881 §12.2.9).
    pub length: u64,
    pub iomode: Layoutiomode4,
    pub ff: FfLayout4,
    /// I/Os through this segment now (live [`InUse`] guards).
    users: AtomicUsize,
    /// Woken when `users` falls to zero: a recall waits for that before returning it.
    idle: tokio::sync::Notify,
}

impl Segment {
    pub fn new(id: u64, offset: u64, length: u64, iomode: Layoutiomode4, ff: FfLayout4) -> Self {
        Segment {
            id,
            offset,
            length,
            iomode,
            ff,
            users: AtomicUsize::new(0),
            idle: tokio::sync::Notify::new(),
        }
    }

    /// Counts an I/O through this segment until the guard drops. Taken under the file's
    /// state mutex, with the lookup (module comment).
    pub fn begin_use(self: &Arc<Self>) -> InUse {
        self.users.fetch_add(1, Ordering::AcqRel);
        InUse(self.clone())
    }

    /// Waits until no I/O runs through this segment, or `deadline`; whether it drained.
    pub async fn drained(&self, deadline: Instant) -> bool {
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            // Registered before the count is read, so a drop in between still wakes us.
            idle.as_mut().enable();
            if self.users.load(Ordering::Acquire) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline.into(), idle)
                .await
                .is_err()
            {
                return self.users.load(Ordering::Acquire) == 0;
            }
        }
    }

    /// Whether a recall (or return) of `iomode` over [offset, offset + length) takes this
    /// segment: ANY takes every iomode, else only the same one (RFC 8881 §12.5.5, as Linux's
    /// `pnfs_should_free_range`), and any overlap of the ranges.
    pub fn recalled_by(&self, iomode: Layoutiomode4, offset: u64, length: u64) -> bool {
        let end = offset.saturating_add(length);
        (iomode == Layoutiomode4::Any || iomode == self.iomode)
            && self.offset < end
            && offset < self.end()
    }

    pub fn end(&self) -> u64 {
        self.offset.saturating_add(self.length)
    }

    pub fn covers(&self, offset: u64) -> bool {
        offset >= self.offset && offset < self.end()
    }

    /// An RW layout serves reads too (RFC 8881 §12.2.9); a READ layout never serves writes.
    pub fn serves(&self, iomode: Layoutiomode4) -> bool {
        self.iomode == iomode || self.iomode == Layoutiomode4::Rw
    }

    /// The data server of every mirror for I/O at `offset`, in the layout's mirror order
    /// (mirror 0 is the preferred copy for reads).
    pub fn targets(&self, offset: u64) -> Result<Vec<DsTarget>, PnfsError> {
        let mut out = Vec::new();
        for ds in layout::flexfiles::data_servers_for(&self.ff, offset) {
            // The first handle is the one for the version we use (we take only v3 devices).
            let fh = ds
                .ffds_fh_vers
                .first()
                .ok_or_else(|| PnfsError::BadLayout("data server without a file handle".into()))?;
            out.push(DsTarget {
                device: ds.ffds_deviceid,
                fh: fh.0 .0.clone(),
                uid: numeric_id(ds.ffds_user.as_bytes(), "ffds_user")?,
                gid: numeric_id(ds.ffds_group.as_bytes(), "ffds_group")?,
            });
        }
        if out.is_empty() {
            return Err(PnfsError::BadLayout("layout without mirrors".into()));
        }
        Ok(out)
    }
}

/// `ffds_user`/`ffds_group` are numeric strings for a loosely coupled DS (RFC 8435 §5.1).
fn numeric_id(s: &[u8], what: &str) -> Result<u32, PnfsError> {
    std::str::from_utf8(s)
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
        .ok_or_else(|| {
            PnfsError::BadLayout(format!(
                "{what} {:?} is not a numeric id",
                String::from_utf8_lossy(s)
            ))
        })
}

/// One I/O through a segment (module comment). Dereferences to the segment.
#[derive(Debug)]
pub struct InUse(Arc<Segment>);

impl InUse {
    /// Ends the use early (before a return of the segment, which a recall would otherwise
    /// wait for) and keeps the segment.
    pub fn release(self) -> Arc<Segment> {
        self.0.clone()
    }
}

impl std::ops::Deref for InUse {
    type Target = Arc<Segment>;
    fn deref(&self) -> &Arc<Segment> {
        &self.0
    }
}

impl Drop for InUse {
    fn drop(&mut self) {
        if self.0.users.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// The segments of one file. Few at a time (one per chunk in use), so a vector scanned from
/// the newest is enough.
#[derive(Debug, Default)]
pub struct SegmentCache {
    segs: Vec<Arc<Segment>>,
}

impl SegmentCache {
    /// The newest segment that covers `offset` and serves `iomode`.
    pub fn lookup(&self, offset: u64, iomode: Layoutiomode4) -> Option<Arc<Segment>> {
        self.segs
            .iter()
            .rev()
            .find(|s| s.covers(offset) && s.serves(iomode))
            .cloned()
    }

    /// Adds a granted segment. Older segments of the same iomode that overlap it are dropped:
    /// the newer grant is what the server now stands behind for that range.
    pub fn insert(&mut self, seg: Arc<Segment>) {
        self.segs
            .retain(|s| !(s.iomode == seg.iomode && s.offset < seg.end() && seg.offset < s.end()));
        self.segs.push(seg);
    }

    /// Takes out every segment a recall of `iomode` over the range takes.
    pub fn take_recalled(
        &mut self,
        iomode: Layoutiomode4,
        offset: u64,
        length: u64,
    ) -> Vec<Arc<Segment>> {
        let (out, keep) = std::mem::take(&mut self.segs)
            .into_iter()
            .partition(|s| s.recalled_by(iomode, offset, length));
        self.segs = keep;
        out
    }

    /// Drops the segment with this id; returns it if it was still held.
    pub fn remove(&mut self, id: u64) -> Option<Arc<Segment>> {
        let i = self.segs.iter().position(|s| s.id == id)?;
        Some(self.segs.remove(i))
    }

    pub fn contains(&self, id: u64) -> bool {
        self.segs.iter().any(|s| s.id == id)
    }

    pub fn clear(&mut self) {
        self.segs.clear();
    }

    pub fn len(&self) -> usize {
        self.segs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::nfs4::{FfDataServer4, FfMirror4, NfsFh4, Stateid4};
    use proto::xdr::Opaque;

    fn ds(dev: u8, uid: &str) -> FfDataServer4 {
        FfDataServer4 {
            ffds_deviceid: [dev; 16],
            ffds_efficiency: 0,
            ffds_stateid: Stateid4::default(),
            ffds_fh_vers: vec![NfsFh4(Opaque(vec![dev; 63]))],
            ffds_user: Opaque::from(uid),
            ffds_group: Opaque::from("100"),
        }
    }

    fn seg(id: u64, offset: u64, length: u64, iomode: Layoutiomode4) -> Arc<Segment> {
        Arc::new(Segment::new(
            id,
            offset,
            length,
            iomode,
            FfLayout4 {
                ffl_stripe_unit: 0,
                ffl_mirrors: vec![
                    FfMirror4 {
                        ffm_data_servers: vec![ds(1, "1000")],
                    },
                    FfMirror4 {
                        ffm_data_servers: vec![ds(2, "1000")],
                    },
                ],
                ffl_flags: 0,
                ffl_stats_collect_hint: 0,
            },
        ))
    }

    const MIB: u64 = 1 << 20;

    #[test]
    fn lookup_by_offset_and_iomode() {
        let mut c = SegmentCache::default();
        c.insert(seg(1, 0, 16 * MIB, Layoutiomode4::Read));
        c.insert(seg(2, 16 * MIB, 16 * MIB, Layoutiomode4::Rw));
        assert_eq!(c.lookup(0, Layoutiomode4::Read).map(|s| s.id), Some(1));
        assert!(
            c.lookup(0, Layoutiomode4::Rw).is_none(),
            "READ does not serve writes"
        );
        assert_eq!(
            c.lookup(16 * MIB, Layoutiomode4::Read).map(|s| s.id),
            Some(2),
            "RW serves reads"
        );
        assert_eq!(
            c.lookup(32 * MIB - 1, Layoutiomode4::Rw).map(|s| s.id),
            Some(2)
        );
        assert!(
            c.lookup(32 * MIB, Layoutiomode4::Rw).is_none(),
            "end is exclusive"
        );
    }

    #[test]
    fn newer_grant_replaces_overlapping_same_iomode() {
        let mut c = SegmentCache::default();
        c.insert(seg(1, 0, 16 * MIB, Layoutiomode4::Rw));
        c.insert(seg(2, 0, 16 * MIB, Layoutiomode4::Read));
        c.insert(seg(3, 8 * MIB, 16 * MIB, Layoutiomode4::Rw));
        assert!(!c.contains(1));
        assert!(c.contains(2), "another iomode stays");
        assert_eq!(c.lookup(MIB, Layoutiomode4::Rw).map(|s| s.id), None);
        assert_eq!(c.lookup(MIB, Layoutiomode4::Read).map(|s| s.id), Some(2));
        assert_eq!(
            c.lookup(9 * MIB, Layoutiomode4::Read).map(|s| s.id),
            Some(3)
        );
        assert_eq!(c.remove(3).map(|s| s.id), Some(3));
        assert!(c.remove(3).is_none());
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn whole_file_length_saturates() {
        let s = seg(1, 4096, u64::MAX, Layoutiomode4::Rw);
        assert_eq!(s.end(), u64::MAX);
        assert!(s.covers(u64::MAX - 1));
        assert!(!s.covers(0));
    }

    #[test]
    fn targets_in_mirror_order_with_numeric_ids() {
        let s = seg(1, 0, 16 * MIB, Layoutiomode4::Rw);
        let t = s.targets(5).expect("targets");
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].device, [1; 16]);
        assert_eq!(t[1].device, [2; 16]);
        assert_eq!((t[0].uid, t[0].gid), (1000, 100));
        assert_eq!(t[0].fh.len(), 63);
    }

    #[test]
    fn non_numeric_owner_is_a_bad_layout() {
        let mut s = Arc::into_inner(seg(1, 0, MIB, Layoutiomode4::Rw)).expect("sole owner");
        s.ff.ffl_mirrors[1].ffm_data_servers[0].ffds_user = Opaque::from("alice@example");
        assert!(matches!(s.targets(0), Err(PnfsError::BadLayout(_))));
        s.ff.ffl_mirrors.clear();
        assert!(matches!(s.targets(0), Err(PnfsError::BadLayout(_))));
    }
}
