//! Room on a store used as a cache of limited capacity: an upper bound on the bytes it uses
//! now, which writes are admitted against. Shared by the MDS's own store (one node) and by
//! each data server, whose capacity the MDS sets.
//!
//! **Why an upper bound, and how.** A walk of the store (`ChunkStoreSync::usage`) takes time
//! and is made seconds apart, while a writer can fill a small cache in less; and a walk does
//! not see a write that has not landed yet. So each admitted write is charged the most disk it
//! may add (`ChunkStoreSync::most_added_by_write`, not its length: blocks and chunk header
//! pages are what the walk counts) until a walk begun after it landed; a measure adds every
//! write that had not landed when its walk began (`walk_starts`). Before, a write in flight
//! during a walk was forgotten, and the flash filled past its capacity.
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Room {
    /// What may be used; 0 while unknown or not counted.
    cap: AtomicU64,
    /// The last walk's bytes less `landed` when it began, wrapping: plus `admitted`, an upper
    /// bound on the bytes used now.
    base: AtomicU64,
    /// Bytes of disk admitted for writes, ever.
    admitted: AtomicU64,
    /// Of those, the bytes whose writes have ended, landed or failed.
    landed: AtomicU64,
}

/// When the walk that a measure is made from began (`Room::walk_starts`).
#[derive(Debug, Clone, Copy)]
pub struct WalkMark(u64);

/// Room a write took; counted as used until a walk begun after it was dropped (once the
/// write has ended) can see it.
#[must_use]
#[derive(Debug)]
pub struct Taken<'a> {
    room: &'a Room,
    charged: u64,
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        self.room.landed.fetch_add(self.charged, Ordering::AcqRel);
    }
}

impl Room {
    /// Called before the walk that `measured` is given: what had landed then.
    pub fn walk_starts(&self) -> WalkMark {
        WalkMark(self.landed.load(Ordering::Acquire))
    }

    /// A walk begun at `mark` found `used` bytes.
    pub fn measured(&self, used: u64, mark: WalkMark) {
        // Every write admitted and not landed when the walk began is counted on top of what
        // the walk saw (those that landed during it, maybe twice: an upper bound).
        self.base
            .store(used.wrapping_sub(mark.0), Ordering::Release);
    }

    /// Sets what may be used (0: not counted, every write fits).
    pub fn set_capacity(&self, cap: u64) {
        self.cap.store(cap, Ordering::Release);
    }

    /// What may be used (0: not counted).
    pub fn capacity(&self) -> u64 {
        self.cap.load(Ordering::Acquire)
    }

    /// Bytes used now at most.
    pub fn used(&self) -> u64 {
        self.base
            .load(Ordering::Acquire)
            .wrapping_add(self.admitted.load(Ordering::Acquire))
    }

    /// Charges a write that may add `charge` bytes if the store stays within its capacity
    /// (always when no capacity is counted); held until the returned value is dropped.
    pub fn take(&self, charge: u64) -> Option<Taken<'_>> {
        let cap = self.capacity();
        if cap == 0 {
            return Some(Taken {
                room: self,
                charged: 0,
            });
        }
        let mut admitted = self.admitted.load(Ordering::Acquire);
        loop {
            let used = self.base.load(Ordering::Acquire).wrapping_add(admitted);
            if used.saturating_add(charge) > cap {
                return None;
            }
            match self.admitted.compare_exchange_weak(
                admitted,
                admitted.wrapping_add(charge),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    return Some(Taken {
                        room: self,
                        charged: charge,
                    })
                }
                Err(now) => admitted = now,
            }
        }
    }
}

/// Since when no write has found room. A write refused is asked to retry while room may still
/// come, and refused for good (NOSPC) once none has for `after`, or at once when none is
/// coming (the object-store tier's store failing).
#[derive(Debug, Default)]
pub struct FullSince(AtomicU64);

impl FullSince {
    /// A write found room: the clock stops.
    pub fn fit(&self) {
        self.0.store(0, Ordering::Relaxed);
    }

    /// A write found no room: whether to refuse it for good. `after`: how long room may take
    /// to come; `None` when none is coming, and then the clock starts again once some may
    /// (the uploads a returning store takes make room).
    pub fn refuse(&self, after: Option<u64>) -> bool {
        let Some(after) = after else {
            self.fit();
            return true;
        };
        let now = unix_now();
        let since = match self
            .0
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => now,
            Err(t) => t,
        };
        now.saturating_sub(since) > after
    }

    /// Sets the clock `secs` back (tests).
    pub fn started_secs_ago(&self, secs: u64) {
        self.0
            .store(unix_now().saturating_sub(secs), Ordering::Relaxed);
    }

    /// Whether the clock runs.
    pub fn running(&self) -> bool {
        self.0.load(Ordering::Relaxed) != 0
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_secs().max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_in_flight_while_the_store_is_walked_stays_counted() {
        let r = Room::default();
        let mib = 1 << 20;
        r.set_capacity(10 * mib);
        r.measured(0, r.walk_starts());
        let a = r.take(4 * mib).expect("room");
        // A walk that began before the write landed does not see it: still counted.
        let mark = r.walk_starts();
        r.measured(0, mark);
        let b = r.take(4 * mib).expect("room");
        assert!(r.take(4 * mib).is_none(), "8 MiB in flight");
        drop((a, b));
        // Landed, but the walk began before: an upper bound still.
        assert!(r.take(4 * mib).is_none());
        assert_eq!(r.used(), 8 * mib);
        // A walk that began after sees them, once.
        let mark = r.walk_starts();
        r.measured(8 * mib, mark);
        assert_eq!(r.used(), 8 * mib);
        let c = r.take(2 * mib).expect("exactly full fits");
        assert!(r.take(1).is_none());
        drop(c);
        // No capacity: everything fits, nothing is charged.
        r.set_capacity(0);
        assert!(r.take(u64::MAX).is_some());
        assert_eq!(r.used(), 10 * mib);
    }

    #[test]
    fn a_refused_write_is_refused_for_good_once_no_room_came_for_long_enough() {
        let f = FullSince::default();
        assert!(!f.refuse(Some(100)), "room may come");
        assert!(f.running());
        f.started_secs_ago(101);
        assert!(f.refuse(Some(100)));
        // None coming: refused, and the clock starts again once some may come.
        assert!(f.refuse(None));
        assert!(!f.running());
        assert!(!f.refuse(Some(100)));
        f.fit();
        assert!(!f.running());
    }
}
