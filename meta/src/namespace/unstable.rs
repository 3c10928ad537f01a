//! UNSTABLE writes' size and times, held in memory until they are made durable with the data.
//!
//! An NFS WRITE with `UNSTABLE4` promises nothing until COMMIT, and neither does its effect on
//! the file's size and times. Logging a command per such WRITE would put one log entry per
//! WRITE through the replicated log; instead the writes of a file are noted here and recorded
//! by one `Command::Write` when the file's data is made durable (COMMIT, a stable WRITE,
//! CLOSE), before any other command about the file (SETATTR, REMOVE, RENAME, LINK: see
//! `Namespace::execute`), and at shutdown. A crash loses what is noted here exactly when it
//! loses the uncommitted data itself, and the changed write verifier makes clients send both
//! again.
//!
//! Reads see the noted writes (`merge`): another client's GETATTR after a WRITE finds the new
//! size and a change attribute that moved, as it would on a local file system.

use std::collections::HashMap;
use std::sync::Mutex;

use super::command::Command;
use super::object::{Inode, Time};
use super::perm::Cred;

/// Files with noted writes beyond which the oldest is recorded to make room.
const MAX_FILES: usize = 65_536;

#[derive(Clone, Debug)]
struct Noted {
    end: u64,
    time: Time,
    writes: u64,
    /// Mode bits the writes clear (set-id bits written by an unprivileged caller).
    kills: u32,
    /// Whose writes: the command that records them runs as this caller, so `apply` clears
    /// the same bits (one whose write clears bits, if any wrote, else the latest writer).
    cred: Option<Cred>,
    /// Order of first note, to record the oldest when full.
    seq: u64,
}

#[derive(Default)]
pub(crate) struct Unstable {
    files: Mutex<(HashMap<u64, Noted>, u64)>,
}

impl Unstable {
    /// Notes a write of `ino` ending at `end` by `cred`, which clears `kills` from its mode.
    /// Returns a command to record first when the table was full (the oldest file's writes).
    pub(crate) fn note(
        &self,
        ino: u64,
        end: u64,
        time: Time,
        cred: Option<Cred>,
        kills: u32,
    ) -> Option<Command> {
        let Ok(mut g) = self.files.lock() else {
            return None;
        };
        let (files, seq) = &mut *g;
        *seq += 1;
        let n = files.entry(ino).or_insert(Noted {
            end,
            time,
            writes: 0,
            kills: 0,
            cred: cred.clone(),
            seq: *seq,
        });
        n.end = n.end.max(end);
        n.time = n.time.max(time);
        n.writes += 1;
        if n.kills == 0 {
            n.cred = cred;
        }
        n.kills |= kills;
        if files.len() <= MAX_FILES {
            return None;
        }
        let oldest = files
            .iter()
            .filter(|(i, _)| **i != ino)
            .min_by_key(|(_, n)| n.seq)
            .map(|(i, _)| *i)?;
        files.remove(&oldest).map(|n| record(oldest, n))
    }

    /// The command recording `ino`'s noted writes, which are forgotten here.
    pub(crate) fn take(&self, ino: u64) -> Option<Command> {
        let mut g = self.files.lock().ok()?;
        g.0.remove(&ino).map(|n| record(ino, n))
    }

    /// Commands recording every file's noted writes (shutdown).
    pub(crate) fn take_all(&self) -> Vec<Command> {
        let Ok(mut g) = self.files.lock() else {
            return Vec::new();
        };
        g.0.drain().map(|(ino, n)| record(ino, n)).collect()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.files.lock().map(|g| g.0.is_empty()).unwrap_or(true)
    }

    /// `i` as its noted writes left it.
    pub(crate) fn merge(&self, mut i: Inode) -> Inode {
        if let Ok(g) = self.files.lock() {
            if let Some(n) = g.0.get(&i.ino) {
                i.size = i.size.max(n.end);
                i.mtime = i.mtime.max(n.time);
                i.ctime = i.ctime.max(n.time);
                i.change = i.change.saturating_add(n.writes);
                i.mode &= !n.kills;
            }
        }
        i
    }
}

fn record(ino: u64, n: Noted) -> Command {
    let cmd = Command::Write {
        ino,
        end_offset: n.end,
        time: n.time,
        writes: n.writes,
    };
    match n.cred {
        Some(cred) => Command::As {
            cred,
            cmd: Box::new(cmd),
        },
        None => cmd,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::namespace::FileKind;

    fn inode(ino: u64) -> Inode {
        Inode {
            ino,
            kind: FileKind::Regular,
            mode: 0o6755,
            nlink: 1,
            uid: 1,
            gid: 1,
            size: 10,
            atime: Time::new(1, 0),
            mtime: Time::new(1, 0),
            ctime: Time::new(1, 0),
            crtime: Time::new(1, 0),
            change: 5,
            parent: 0,
            create_verifier: None,
        }
    }

    #[test]
    fn reads_see_noted_writes_and_one_command_records_them_all() {
        let u = Unstable::default();
        assert!(u.note(7, 100, Time::new(5, 0), None, 0).is_none());
        assert!(u.note(7, 50, Time::new(6, 0), None, 0o6000).is_none());
        let m = u.merge(inode(7));
        assert_eq!((m.size, m.change, m.mode), (100, 7, 0o755));
        assert_eq!(m.mtime, Time::new(6, 0));
        // Another file is untouched.
        assert_eq!(u.merge(inode(8)).size, 10);
        match u.take(7) {
            Some(Command::Write {
                ino: 7,
                end_offset: 100,
                writes: 2,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        assert!(u.take(7).is_none());
        assert_eq!(u.merge(inode(7)).size, 10);
    }
}
