//! What the DS knows of layout generations: the cluster-wide floor (`min_generation`) and
//! per-file fences pushed by the MDS. A handle minted below its file's effective fence is stale.
//!
//! Only the authenticated MDS feeds this map, but it is capped anyway so that a runaway MDS
//! cannot exhaust the DS's memory: past the cap the oldest fences are dropped, which returns
//! those files to `min_generation` (the MDS raises that on restart, and fences are only needed
//! until the fenced clients have given up their old layouts).

use std::collections::{HashMap, VecDeque};

use proto::cluster::Fence;

/// Most per-file fences kept.
pub(crate) const MAX_FENCES: usize = 1 << 20;

#[derive(Default)]
pub(crate) struct Fences {
    min_generation: u64,
    /// file → (fence generation, insertion number).
    map: HashMap<u64, (u64, u64)>,
    /// Insertion order, for dropping the oldest; may hold superseded entries (skipped).
    order: VecDeque<(u64, u64)>,
    next: u64,
    /// Highest fence sequence number applied (the MDS's numbering).
    seq: u64,
    cap: usize,
}

impl Fences {
    pub(crate) fn new(cap: usize) -> Self {
        Fences {
            cap: cap.max(1),
            ..Default::default()
        }
    }

    /// The generation below which handles of `file` are refused.
    pub(crate) fn fence_for(&self, file: u64) -> u64 {
        let own = self.map.get(&file).map_or(0, |(g, _)| *g);
        own.max(self.min_generation)
    }

    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Applies one heartbeat reply's fence state.
    pub(crate) fn apply(&mut self, min_generation: u64, fences: &[Fence], seq: u64) {
        self.min_generation = min_generation;
        for f in fences {
            self.raise(f.file, f.generation);
        }
        self.seq = seq;
        self.map.retain(|_, (g, _)| *g > min_generation);
        self.trim();
    }

    /// A handle for `file` minted at `generation` verified: the MDS mints handles only at a
    /// file's current generation, which only ever rises, so every handle below it is fenced
    /// already. Learning that here, without waiting for the heartbeat, is what lets a removal
    /// the MDS sends with a freshly fenced handle refuse the old handles from the
    /// moment it is done (`Objects::write` checks again under the object's lock).
    pub(crate) fn learn(&mut self, file: u64, generation: u64) {
        if generation > self.fence_for(file) {
            self.raise(file, generation);
            self.trim();
        }
    }

    fn raise(&mut self, file: u64, generation: u64) {
        // Entries at or below the floor say nothing the floor does not.
        if generation <= self.min_generation {
            return;
        }
        let n = self.next;
        self.next += 1;
        let e = self.map.entry(file).or_insert((0, n));
        e.0 = e.0.max(generation);
        e.1 = n;
        self.order.push_back((file, n));
    }

    fn trim(&mut self) {
        while self.map.len() > self.cap {
            let Some((file, n)) = self.order.pop_front() else {
                break;
            };
            if self.map.get(&file).is_some_and(|(_, m)| *m == n) {
                tracing::warn!(file, "fence table full: dropping the oldest fence");
                self.map.remove(&file);
            }
        }
        // Superseded entries pile up in `order` when files are fenced repeatedly; rebuild it
        // from the map once they dominate.
        if self.order.len() > 2 * self.map.len() + 1024 {
            let mut live: Vec<(u64, u64)> = self.map.iter().map(|(f, (_, n))| (*f, *n)).collect();
            live.sort_unstable_by_key(|(_, n)| *n);
            self.order = live.into();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fence(file: u64, generation: u64) -> Fence {
        Fence { file, generation }
    }

    #[test]
    fn effective_fence_is_the_larger_of_floor_and_entry() {
        let mut f = Fences::new(10);
        f.apply(3, &[fence(1, 7), fence(2, 2)], 5);
        assert_eq!(f.fence_for(1), 7);
        assert_eq!(f.fence_for(2), 3);
        assert_eq!(f.fence_for(9), 3);
        assert_eq!(f.seq(), 5);
        // Fences never go down.
        f.apply(3, &[fence(1, 4)], 6);
        assert_eq!(f.fence_for(1), 7);
        // A higher floor swallows entries below it.
        f.apply(8, &[], 6);
        assert_eq!(f.fence_for(1), 8);
        assert_eq!(f.len(), 0);
    }

    #[test]
    fn a_verified_handle_raises_its_files_fence_and_nothing_lowers_it() {
        let mut f = Fences::new(10);
        f.apply(3, &[fence(1, 7)], 1);
        f.learn(1, 5);
        assert_eq!(f.fence_for(1), 7);
        f.learn(1, 9);
        f.learn(2, 3);
        assert_eq!((f.fence_for(1), f.fence_for(2)), (9, 3));
        assert_eq!(f.len(), 1, "a handle at the floor adds no entry");
        // A heartbeat that has not caught up yet keeps what a handle taught.
        f.apply(3, &[fence(1, 8)], 2);
        assert_eq!(f.fence_for(1), 9);
    }

    #[test]
    fn the_table_is_capped_dropping_the_oldest() {
        let mut f = Fences::new(3);
        for i in 0..10 {
            f.apply(0, &[fence(i, 5), fence(0, 5)], i);
        }
        assert!(f.len() <= 3);
        // File 0 was refreshed every time, so it is the newest, not the oldest.
        assert_eq!(f.fence_for(0), 5);
        assert_eq!(f.fence_for(9), 5);
        assert_eq!(f.fence_for(1), 0);
    }
}
