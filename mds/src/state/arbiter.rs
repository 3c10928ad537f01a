//! What the leader of a file's shard knows of the byte-range locks other MDS nodes' clients
//! hold on it: the lock arbiter's table (`crate::state::remote::locking` runs it).
//!
//! Each node stays the authority for its own clients' locks (their stateids and seqids live in
//! its `StateManager`); the arbiter only decides conflicts between nodes. Its view of another
//! node may hold too much (that node released a lock without telling, or a grant it asked for
//! failed there), never too little: a node's every new lock is asked of the arbiter first, and
//! a new arbiter (a new term) gathers every node's locks on a file before its first decision
//! there. So a conflict found in the view is confirmed with its node before a lock is denied
//! (`Verdict::Confirm`), and a node that cannot be asked leaves the file unsure for a grace
//! period, in which only reclaims are granted: that node's clients reclaim at the node that
//! took its address over.
//!
//! Pure: no I/O, time passed in; the async half is `crate::state::remote::locking`.
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;

use super::locks::{FileLocks, Range};

/// Most files whose view one arbiter keeps. Dropping a view is always safe: the next decision
/// about the file gathers it again.
pub const MAX_FILES: usize = 65_536;

/// One file's view on the arbiter.
#[derive(Debug, Default)]
pub struct FileView {
    /// The leader term the view was gathered in: a later term starts over.
    pub term: u64,
    pub gathered: bool,
    /// Other nodes' locks as last reported or granted, by node id.
    pub by_node: HashMap<u64, FileLocks>,
    /// Nodes that could not be asked, and until when the file stays unsure because of them.
    pub missing: HashSet<u64>,
    pub unsure_until: Option<Instant>,
}

/// What the view says about a request, given this node's own locks on the file.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing in the way (for a lock: record it with `FileView::granted`).
    Free,
    /// This node's own client holds the range: deny.
    Held(Range),
    /// Another node's lock is in the way as far as the view knows: ask that node again
    /// (`FileView::replace`) and decide once more, or deny if it was just asked.
    Confirm(u64, Range),
    /// A node could not be asked and its clients may still reclaim: only reclaims go on.
    Unsure,
}

impl FileView {
    /// Starts the view over when the term moved on (another node led the shard meanwhile and
    /// may have granted locks this one never saw).
    pub fn for_term(&mut self, term: u64) {
        if self.term != term {
            *self = FileView {
                term,
                ..FileView::default()
            };
        }
    }

    /// A node's answer: its locks on the file now, in flight ones included.
    pub fn replace(&mut self, node: u64, ranges: Vec<Range>) {
        let mut fl = FileLocks::default();
        for r in ranges {
            fl.insert(r);
        }
        self.missing.remove(&node);
        if self.missing.is_empty() {
            self.unsure_until = None;
        }
        self.by_node.insert(node, fl);
    }

    /// A node that could not be asked: what the view held of it is dropped, and the file is
    /// unsure for `grace` from the first such miss (its clients reclaim elsewhere meanwhile).
    pub fn missed(&mut self, node: u64, now: Instant, grace: std::time::Duration) {
        self.by_node.remove(&node);
        if self.missing.insert(node) && self.unsure_until.is_none() {
            self.unsure_until = Some(now + grace);
        }
    }

    /// Whether a node missed is still to be waited for.
    pub fn unsure(&mut self, now: Instant) -> bool {
        match self.unsure_until {
            Some(t) if now < t => true,
            Some(_) => {
                // The grace is over: the missing nodes' clients had their chance to reclaim.
                self.unsure_until = None;
                self.missing.clear();
                false
            }
            None => false,
        }
    }

    /// The verdict on `want` (owner, range, kind), with this node's own locks `own`.
    pub fn judge(&mut self, own: &[Range], want: &Range, reclaim: bool, now: Instant) -> Verdict {
        if let Some(r) = own.iter().find(|r| conflicts(r, want)) {
            return Verdict::Held(r.clone());
        }
        let mut nodes: Vec<&u64> = self.by_node.keys().collect();
        nodes.sort();
        for n in nodes {
            if let Some(r) = self.by_node[n].conflict(&want.owner, want.start, want.end, want.kind)
            {
                return Verdict::Confirm(*n, r.clone());
            }
        }
        if !reclaim && self.unsure(now) {
            return Verdict::Unsure;
        }
        Verdict::Free
    }

    /// A lock granted to `node`'s client.
    pub fn granted(&mut self, node: u64, r: &Range) {
        let fl = self.by_node.entry(node).or_default();
        // The view checked the combined locks, so this cannot conflict; should it anyway,
        // the range is recorded all the same: the view may hold too much, never too little.
        if fl.lock(&r.owner, r.start, r.end, r.kind).is_err() {
            fl.insert(r.clone());
        }
    }

    /// A lock `node` reports released.
    pub fn released(&mut self, node: u64, r: &Range) {
        if let Some(fl) = self.by_node.get_mut(&node) {
            fl.unlock(&r.owner, r.start, r.end);
        }
    }
}

fn conflicts(r: &Range, want: &Range) -> bool {
    r.owner != want.owner
        && r.start < want.end
        && want.start < r.end
        && (want.kind == super::locks::LockKind::Write || r.kind == super::locks::LockKind::Write)
}

/// The arbiter's views, bounded (`MAX_FILES`; the least recently created view goes first).
#[derive(Default)]
pub struct Views {
    files: HashMap<u64, std::sync::Arc<tokio::sync::Mutex<FileView>>>,
    order: VecDeque<u64>,
}

impl Views {
    /// The view of `ino`, made if new; one decision per file at a time holds its mutex.
    pub fn file(&mut self, ino: u64) -> std::sync::Arc<tokio::sync::Mutex<FileView>> {
        if let Some(v) = self.files.get(&ino) {
            return v.clone();
        }
        while self.files.len() >= MAX_FILES {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            self.files.remove(&old);
        }
        let v = std::sync::Arc::new(tokio::sync::Mutex::new(FileView::default()));
        self.files.insert(ino, v.clone());
        self.order.push_back(ino);
        v
    }

    /// The view of `ino` if there is one.
    pub fn existing(&self, ino: u64) -> Option<std::sync::Arc<tokio::sync::Mutex<FileView>>> {
        self.files.get(&ino).cloned()
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::super::locks::LockKind;
    use super::*;
    use std::time::Duration;

    fn r(client: u64, start: u64, end: u64, kind: LockKind) -> Range {
        Range {
            owner: (client, b"o".to_vec()),
            start,
            end,
            kind,
        }
    }

    #[test]
    fn another_nodes_lock_is_confirmed_before_it_denies() {
        let now = Instant::now();
        let mut v = FileView::default();
        v.for_term(3);
        v.replace(2, vec![r(0x02 << 56, 0, 100, LockKind::Write)]);
        let want = r(0x03 << 56, 50, 60, LockKind::Read);
        assert_eq!(
            v.judge(&[], &want, false, now),
            Verdict::Confirm(2, r(0x02 << 56, 0, 100, LockKind::Write))
        );
        // Node 2 answers it released the lock meanwhile: now free, and the grant is recorded.
        v.replace(2, vec![]);
        assert_eq!(v.judge(&[], &want, false, now), Verdict::Free);
        v.granted(3, &want);
        let writer = r(0x02 << 56, 55, 56, LockKind::Write);
        assert_eq!(
            v.judge(&[], &writer, false, now),
            Verdict::Confirm(3, want.clone())
        );
        v.released(3, &want);
        assert_eq!(v.judge(&[], &writer, false, now), Verdict::Free);
    }

    #[test]
    fn own_locks_deny_at_once_and_the_same_owner_never_conflicts() {
        let now = Instant::now();
        let mut v = FileView::default();
        let mine = r(1, 0, 10, LockKind::Write);
        assert_eq!(
            v.judge(
                std::slice::from_ref(&mine),
                &r(2, 5, 6, LockKind::Read),
                false,
                now
            ),
            Verdict::Held(mine.clone())
        );
        assert_eq!(
            v.judge(
                std::slice::from_ref(&mine),
                &r(1, 5, 6, LockKind::Read),
                false,
                now
            ),
            Verdict::Free
        );
    }

    #[test]
    fn a_node_that_cannot_be_asked_leaves_the_file_to_reclaims_for_the_grace() {
        let now = Instant::now();
        let mut v = FileView::default();
        v.replace(2, vec![r(2, 0, 10, LockKind::Write)]);
        v.missed(2, now, Duration::from_secs(15));
        let want = r(3, 0, 10, LockKind::Write);
        assert_eq!(v.judge(&[], &want, false, now), Verdict::Unsure);
        assert_eq!(v.judge(&[], &want, true, now), Verdict::Free);
        let later = now + Duration::from_secs(16);
        assert_eq!(v.judge(&[], &want, false, later), Verdict::Free);
        assert!(v.missing.is_empty());
    }

    #[test]
    fn a_new_term_forgets_the_view() {
        let mut v = FileView::default();
        v.for_term(1);
        v.gathered = true;
        v.replace(2, vec![r(2, 0, 10, LockKind::Write)]);
        v.for_term(1);
        assert!(v.gathered);
        v.for_term(2);
        assert!(!v.gathered && v.by_node.is_empty());
    }

    #[test]
    fn views_are_bounded() {
        let mut vs = Views::default();
        for ino in 0..(MAX_FILES as u64 + 10) {
            vs.file(ino);
        }
        assert_eq!(vs.len(), MAX_FILES);
        assert!(vs.existing(0).is_none());
        assert!(vs.existing(MAX_FILES as u64 + 9).is_some());
    }
}
