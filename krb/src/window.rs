//! The per-context sequence window (RFC 2203 §5.3.3.1): a call is served once, and only while
//! its sequence number is within `WINDOW` of the highest seen; anything else is dropped
//! without a reply.
//!
//! Why 512: the Linux client keeps every request it sends within the window the server
//! announces (`gss_xmit_need_reencode` re-signs a request that fell behind), so the window
//! bounds how many calls one context has in flight. knfsd announces 128 (512 in recent
//! kernels); nfs-ganesha's ntirpc once announced 32 and Linux clients under parallel load
//! hung on the calls it silently dropped (ntirpc now uses 512). A bitmap of 512 bits is 64
//! bytes per context.
pub const WINDOW: u32 = 512;
const WORDS: usize = (WINDOW / 64) as usize;

#[derive(Debug, Clone, Default)]
pub struct SeqWindow {
    /// Highest sequence number accepted, valid once `started`.
    top: u32,
    started: bool,
    /// Bit `seq % WINDOW` is set iff `seq` (within the window below `top`) was accepted.
    seen: [u64; WORDS],
}

impl SeqWindow {
    pub fn new() -> Self {
        Self::default()
    }

    fn bit(seq: u32) -> (usize, u64) {
        let i = (seq % WINDOW) as usize;
        (i / 64, 1u64 << (i % 64))
    }

    /// Records `seq` and says whether the call may be served: false for a replay or for a
    /// number that fell below the window. Call only after the call's MIC verified, so a
    /// forged call cannot move the window.
    pub fn accept(&mut self, seq: u32) -> bool {
        if !self.started || seq > self.top {
            if !self.started || seq - self.top >= WINDOW {
                self.seen = [0; WORDS];
            } else {
                for s in self.top + 1..seq {
                    let (w, b) = Self::bit(s);
                    self.seen[w] &= !b;
                }
            }
            self.started = true;
            self.top = seq;
            let (w, b) = Self::bit(seq);
            self.seen[w] |= b;
            return true;
        }
        if self.top - seq >= WINDOW {
            return false;
        }
        let (w, b) = Self::bit(seq);
        if self.seen[w] & b != 0 {
            return false;
        }
        self.seen[w] |= b;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn replays_and_stale_numbers_are_refused() {
        let mut w = SeqWindow::new();
        assert!(w.accept(5));
        assert!(!w.accept(5));
        assert!(w.accept(3));
        assert!(!w.accept(3));
        assert!(w.accept(5 + WINDOW - 1));
        // 5 is now at the window's bottom edge: still remembered.
        assert!(!w.accept(5));
        assert!(w.accept(5 + WINDOW + 1));
        // 5 and 6 fell out: refused whatever they were.
        assert!(!w.accept(5));
        assert!(!w.accept(6));
        assert!(w.accept(10 + WINDOW));
    }

    #[test]
    fn a_jump_past_the_window_forgets_everything_below() {
        let mut w = SeqWindow::new();
        assert!(w.accept(1));
        assert!(w.accept(1 + 3 * WINDOW));
        assert!(!w.accept(1 + 3 * WINDOW));
        assert!(w.accept(2 + 2 * WINDOW));
    }

    proptest! {
        /// Against a model that remembers everything: the window accepts exactly the numbers
        /// never seen that are within WINDOW of the highest seen before them.
        #[test]
        fn matches_a_model(seqs in proptest::collection::vec(0u32..4000, 1..600)) {
            let mut w = SeqWindow::new();
            let mut seen = std::collections::HashSet::new();
            let mut top: Option<u32> = None;
            for s in seqs {
                let want = match top {
                    None => true,
                    Some(t) => !seen.contains(&s) && (s > t || t - s < WINDOW),
                };
                prop_assert_eq!(w.accept(s), want, "seq {} top {:?}", s, top);
                if want {
                    seen.insert(s);
                    top = Some(top.map_or(s, |t| t.max(s)));
                }
            }
        }
    }
}
