//! Byte-range locks with POSIX semantics per lock owner: a new lock replaces the owner's own
//! overlapping ranges (upgrade, downgrade, merge), unlock splits ranges, and two owners
//! conflict when their ranges overlap and either is a write lock.

/// Identifies a lock owner across the server: (client id, opaque owner from the client).
pub type OwnerKey = (u64, Vec<u8>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    Read,
    Write,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub owner: OwnerKey,
    pub start: u64,
    /// Exclusive end; u64::MAX means "to the end of the file".
    pub end: u64,
    pub kind: LockKind,
}

/// NFSv4 length → exclusive end (length u64::MAX means "to EOF").
pub fn end_of(offset: u64, length: u64) -> u64 {
    if length == u64::MAX {
        u64::MAX
    } else {
        offset.saturating_add(length)
    }
}

#[derive(Debug, Default, Clone)]
pub struct FileLocks {
    ranges: Vec<Range>,
}

impl FileLocks {
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Every range held, in no particular order.
    pub fn ranges(&self) -> &[Range] {
        &self.ranges
    }

    /// Records a range as held without checking it (what another node reports).
    pub fn insert(&mut self, r: Range) {
        self.ranges.push(r);
    }

    /// The first lock of another owner that conflicts with the request, if any.
    pub fn conflict(
        &self,
        owner: &OwnerKey,
        start: u64,
        end: u64,
        kind: LockKind,
    ) -> Option<&Range> {
        self.ranges.iter().find(|r| {
            &r.owner != owner
                && r.start < end
                && start < r.end
                && (kind == LockKind::Write || r.kind == LockKind::Write)
        })
    }

    /// Takes the lock if nothing conflicts; returns the conflicting range otherwise.
    pub fn lock(
        &mut self,
        owner: &OwnerKey,
        start: u64,
        end: u64,
        kind: LockKind,
    ) -> Result<(), Range> {
        if let Some(c) = self.conflict(owner, start, end, kind) {
            return Err(c.clone());
        }
        self.unlock(owner, start, end);
        self.ranges.push(Range {
            owner: owner.clone(),
            start,
            end,
            kind,
        });
        self.merge(owner);
        Ok(())
    }

    pub fn unlock(&mut self, owner: &OwnerKey, start: u64, end: u64) {
        let mut out = Vec::with_capacity(self.ranges.len() + 1);
        for r in self.ranges.drain(..) {
            if &r.owner != owner || r.end <= start || end <= r.start {
                out.push(r);
                continue;
            }
            if r.start < start {
                out.push(Range {
                    end: start,
                    ..r.clone()
                });
            }
            if end < r.end {
                out.push(Range { start: end, ..r });
            }
        }
        self.ranges = out;
    }

    pub fn release_owner(&mut self, owner: &OwnerKey) {
        self.ranges.retain(|r| &r.owner != owner);
    }

    pub fn release_client(&mut self, clientid: u64) {
        self.ranges.retain(|r| r.owner.0 != clientid);
    }

    pub fn owner_holds_any(&self, owner: &OwnerKey) -> bool {
        self.ranges.iter().any(|r| &r.owner == owner)
    }

    fn merge(&mut self, owner: &OwnerKey) {
        let (mut mine, others): (Vec<Range>, Vec<Range>) =
            self.ranges.drain(..).partition(|r| &r.owner == owner);
        mine.sort_by_key(|r| r.start);
        let mut merged: Vec<Range> = Vec::with_capacity(mine.len());
        for r in mine {
            if let Some(last) = merged.last_mut() {
                if last.kind == r.kind && last.end >= r.start {
                    last.end = last.end.max(r.end);
                    continue;
                }
            }
            merged.push(r);
        }
        self.ranges = others;
        self.ranges.extend(merged);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(n: u8) -> OwnerKey {
        (1, vec![n])
    }

    #[test]
    fn conflicts_and_sharing() {
        let mut f = FileLocks::default();
        f.lock(&o(1), 0, 10, LockKind::Read).unwrap();
        f.lock(&o(2), 5, 15, LockKind::Read).unwrap();
        assert!(f.lock(&o(3), 0, 1, LockKind::Write).is_err());
        assert!(f.lock(&o(3), 15, 20, LockKind::Write).is_ok());
        // The same owner upgrading over another owner's read lock must fail.
        assert!(f.lock(&o(1), 0, 10, LockKind::Write).is_err());
    }

    #[test]
    fn unlock_splits_and_relock_merges() {
        let mut f = FileLocks::default();
        f.lock(&o(1), 0, 100, LockKind::Write).unwrap();
        f.unlock(&o(1), 40, 60);
        assert!(f.lock(&o(2), 45, 55, LockKind::Write).is_ok());
        assert!(f.lock(&o(2), 30, 45, LockKind::Write).is_err());
        f.release_owner(&o(2));
        f.lock(&o(1), 40, 60, LockKind::Write).unwrap();
        assert_eq!(f.ranges.len(), 1);
        assert_eq!((f.ranges[0].start, f.ranges[0].end), (0, 100));
    }

    #[test]
    fn downgrade_in_the_middle() {
        let mut f = FileLocks::default();
        f.lock(&o(1), 0, u64::MAX, LockKind::Write).unwrap();
        f.lock(&o(1), 10, 20, LockKind::Read).unwrap();
        assert!(f.lock(&o(2), 12, 13, LockKind::Read).is_ok());
        assert!(f.lock(&o(2), 25, 26, LockKind::Read).is_err());
        assert_eq!(end_of(5, u64::MAX), u64::MAX);
        assert_eq!(end_of(u64::MAX - 1, 10), u64::MAX);
    }
}
