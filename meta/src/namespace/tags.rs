//! Numbering this node's proposals (`sessions::Tag`): every command a node proposes carries
//! its origin, its life and a sequence number, and the lowest number the node still waits
//! for, so a shard applies a command sent again once and forgets what nobody waits for.

use super::sessions::Tag;

/// The proposing side: numbers this node's commands and knows which it still waits for.
pub struct Tags {
    origin: u64,
    life: u64,
    waiting: std::sync::Mutex<(u64, std::collections::BTreeSet<u64>)>,
}

/// A command's number while its proposer waits for it; dropping it (answered, given up, or
/// the waiting future cancelled) tells later tags that it will not be sent again.
pub struct Waiting<'a> {
    tags: &'a Tags,
    seq: u64,
}

impl Tags {
    pub fn new(origin: u64, life: u64) -> Tags {
        Tags {
            origin,
            life,
            waiting: std::sync::Mutex::new((0, Default::default())),
        }
    }

    /// A new number for a command about to be proposed.
    pub fn start(&self) -> Waiting<'_> {
        let mut w = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        let seq = w.0;
        w.0 += 1;
        w.1.insert(seq);
        Waiting { tags: self, seq }
    }

    fn waits_from(&self, seq: u64) -> u64 {
        let w = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        w.1.first().copied().unwrap_or(seq).min(seq)
    }
}

impl Waiting<'_> {
    /// The tag to send the command with, now (each resend states a fresh `waits_from`).
    pub fn tag(&self) -> Tag {
        Tag {
            origin: self.tags.origin,
            life: self.tags.life,
            seq: self.seq,
            waits_from: self.tags.waits_from(self.seq),
        }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut w = self.tags.waiting.lock().unwrap_or_else(|p| p.into_inner());
        w.1.remove(&self.seq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proposer_waits_from_its_oldest_unanswered_command() {
        let tags = Tags::new(4, 2);
        let a = tags.start();
        let b = tags.start();
        assert_eq!((b.tag().seq, b.tag().waits_from), (1, 0));
        drop(a);
        assert_eq!(b.tag().waits_from, 1);
        let c = tags.start();
        drop(b);
        assert_eq!(
            c.tag(),
            Tag {
                origin: 4,
                life: 2,
                seq: 2,
                waits_from: 2
            }
        );
    }
}
