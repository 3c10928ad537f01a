//! Fencing: each file has a layout generation, minted into every DS handle for it. Bumping it
//! makes every older handle of the file stale at the DSs, which learn the new generation from
//! the fence list in their next heartbeat reply. A file never fenced is at the instance's base
//! generation (which an MDS restart raises, fencing everything at once).
use std::collections::{HashMap, VecDeque};

use proto::cluster::{Fence, MAX_FENCES};

/// Fences kept for DSs that lag behind (and for a DS that restarts, which learns them all
/// again); past this the base is raised, which makes every outstanding handle stale at once.
/// Removals fence too, so this is sized for bursts of them (`rm -rf`):
/// 64 Ki entries of 24 bytes.
const KEEP: usize = 64 * MAX_FENCES;

pub struct Fences {
    base: u64,
    /// Files fenced at least once → their generation.
    gens: HashMap<u64, u64>,
    /// (sequence number, fence), oldest first.
    log: VecDeque<(u64, Fence)>,
    seq: u64,
}

impl Fences {
    pub fn new(base: u64) -> Self {
        Fences {
            base,
            gens: HashMap::new(),
            log: VecDeque::new(),
            seq: 0,
        }
    }

    /// Every file's generation is at least this.
    pub fn base(&self) -> u64 {
        self.base
    }

    pub fn generation(&self, file: u64) -> u64 {
        self.gens.get(&file).copied().unwrap_or(self.base)
    }

    /// Fences `file`: its handles minted so far go stale.
    pub fn fence(&mut self, file: u64) -> u64 {
        let g = self.generation(file) + 1;
        self.gens.insert(file, g);
        self.seq += 1;
        self.log.push_back((
            self.seq,
            Fence {
                file,
                generation: g,
            },
        ));
        if self.log.len() > KEEP {
            // A DS that has not seen the dropped fences must still refuse those handles:
            // raising the base past every generation handed out does that for all files.
            let top = self.gens.values().copied().max().unwrap_or(self.base);
            self.base = top;
            self.gens.clear();
            self.log.clear();
        }
        g
    }

    /// What a DS that has applied fences up to `applied` must learn next: the fences after it
    /// (at most `MAX_FENCES`) and the sequence number to report back.
    pub fn since(&self, applied: u64) -> (Vec<Fence>, u64) {
        // Sequence numbers in the log are consecutive: skip to the first one after `applied`.
        let first = self.log.front().map_or(0, |(s, _)| *s);
        let skip = applied
            .saturating_add(1)
            .saturating_sub(first)
            .min(self.log.len() as u64) as usize;
        let out: Vec<(u64, Fence)> = self.log.range(skip..).take(MAX_FENCES).copied().collect();
        let last = out.last().map(|(s, _)| *s).unwrap_or(applied.min(self.seq));
        (out.into_iter().map(|(_, f)| f).collect(), last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fencing_raises_one_file_and_reaches_every_ds_in_order() {
        let mut f = Fences::new(100);
        assert_eq!(f.generation(7), 100);
        assert_eq!(f.fence(7), 101);
        assert_eq!(f.fence(7), 102);
        assert_eq!(f.fence(9), 101);
        assert_eq!(
            (f.generation(7), f.generation(9), f.generation(1)),
            (102, 101, 100)
        );
        let (all, seq) = f.since(0);
        assert_eq!(all.len(), 3);
        assert_eq!(seq, 3);
        assert_eq!(
            all[2],
            Fence {
                file: 9,
                generation: 101
            }
        );
        let (rest, seq2) = f.since(2);
        assert_eq!((rest.len(), seq2), (1, 3));
        let (none, seq3) = f.since(3);
        assert!(none.is_empty());
        assert_eq!(seq3, 3);
    }

    #[test]
    fn a_ds_from_a_previous_instance_is_not_told_a_future_sequence() {
        let f = Fences::new(5);
        // The DS applied 40 fences of an earlier MDS; this one has none: it restarts at 0.
        let (none, seq) = f.since(40);
        assert!(none.is_empty());
        assert_eq!(seq, 0);
    }

    #[test]
    fn overflowing_the_log_raises_the_base_past_every_generation() {
        let mut f = Fences::new(10);
        for i in 0..=KEEP as u64 {
            f.fence(i % 3);
        }
        assert!(f.base() > 10);
        assert!(f.generation(0) >= f.base() && f.generation(2) >= f.base());
        assert!(f.since(0).0.is_empty());
    }
}
