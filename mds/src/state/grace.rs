//! Which clients may reclaim after a restart, or after this node took over another's client
//! address. The owners of clients that hold confirmed state are replicated namespace state
//! (`Command::ClientRecords`, kept per MDS node on shard 0): an owner is recorded before the
//! CREATE_SESSION that confirms it is answered (`ops::session`), and forgotten lazily (the
//! laundromat commits the removals this table queues), since a record left a little longer only
//! lets a client that is gone be waited for in a grace period; DESTROY_CLIENTID commits its
//! removal before it answers, so a clean unmount is never waited for. After a restart a node's records
//! are its previous instance's clients; after a takeover the dead node's records become the
//! taker's (`Command::TakeOverClients`). Either way those clients get a grace period to reclaim
//! opens and locks, which ends early once every one of them has sent RECLAIM_COMPLETE.
use std::collections::BTreeSet;
use std::path::Path;

/// This node's view of its client records: what it committed, and what it is to forget.
#[derive(Debug, Default)]
pub struct ClientDb {
    recorded: BTreeSet<Vec<u8>>,
    forget: BTreeSet<Vec<u8>>,
}

impl ClientDb {
    /// The owners the namespace holds for this node.
    pub fn new(recorded: BTreeSet<Vec<u8>>) -> ClientDb {
        ClientDb {
            recorded,
            forget: BTreeSet::new(),
        }
    }

    pub fn is_recorded(&self, owner: &[u8]) -> bool {
        self.recorded.contains(owner)
    }

    /// `owner`'s record is committed.
    pub fn recorded(&mut self, owner: &[u8]) {
        self.forget.remove(owner);
        self.recorded.insert(owner.to_vec());
    }

    pub fn recorded_owners(&self) -> impl Iterator<Item = &Vec<u8>> {
        self.recorded.iter()
    }

    /// Drops `owner` from this view without removing a record (another node holds it now).
    pub fn forget_silently(&mut self, owner: &[u8]) {
        self.recorded.remove(owner);
    }

    /// Queues `owner`'s record for removal.
    pub fn remove(&mut self, owner: &[u8]) {
        if self.recorded.remove(owner) {
            self.forget.insert(owner.to_vec());
        }
    }

    /// `remove` for each of `gone`; returns how many were recorded.
    pub fn remove_all<'a>(&mut self, gone: impl IntoIterator<Item = &'a Vec<u8>>) -> usize {
        let before = self.recorded.len();
        for o in gone {
            self.remove(o);
        }
        before - self.recorded.len()
    }

    /// The removals to commit, except owners `keep` says still have a client (they stay
    /// recorded: a client of that owner may be confirming right now).
    pub fn take_forgotten(&mut self, keep: impl Fn(&[u8]) -> bool) -> Vec<Vec<u8>> {
        let all = std::mem::take(&mut self.forget);
        let mut out = Vec::new();
        for o in all {
            if keep(&o) {
                self.recorded.insert(o);
            } else {
                out.push(o);
            }
        }
        out
    }
}

/// The owners builds before replicated records kept in `meta/clients` (one hex line each),
/// for a one-time import; `None` when there is no such file.
pub fn read_legacy(dir: &Path) -> std::io::Result<Option<BTreeSet<Vec<u8>>>> {
    match std::fs::read_to_string(dir.join(LEGACY_FILE)) {
        Ok(t) => Ok(Some(t.lines().filter_map(unhex).collect())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The file `read_legacy` reads, removed once imported.
pub const LEGACY_FILE: &str = "clients";

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removals_wait_for_their_commit_and_spare_live_owners() {
        let mut db = ClientDb::new([b"a".to_vec(), b"b".to_vec()].into());
        db.recorded(b"c");
        assert_eq!(
            db.remove_all(&[b"a".to_vec(), b"b".to_vec(), b"x".to_vec()]),
            2
        );
        assert!(!db.is_recorded(b"a") && db.is_recorded(b"c"));
        // "b" is back (a new client of that owner): its removal is not committed.
        let gone = db.take_forgotten(|o| o == b"b");
        assert_eq!(gone, vec![b"a".to_vec()]);
        assert!(db.is_recorded(b"b"));
        assert!(db.take_forgotten(|_| false).is_empty());
        // Recorded again before the removal was committed: the removal is dropped.
        db.remove(b"c");
        db.recorded(b"c");
        assert!(db.take_forgotten(|_| false).is_empty());
    }

    #[test]
    fn legacy_list_is_read() {
        let d = tempfile::tempdir().unwrap();
        assert!(read_legacy(d.path()).unwrap().is_none());
        std::fs::write(d.path().join(LEGACY_FILE), "6869\nzz\n00ff07\n").unwrap();
        let got = read_legacy(d.path()).unwrap().unwrap();
        assert_eq!(got, [b"hi".to_vec(), vec![0, 255, 7]].into());
    }
}
