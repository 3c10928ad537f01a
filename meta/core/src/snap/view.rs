//! Reads of one shard's state as it was at one of its cuts: a key's version with the smallest
//! id at or above the cut, else its live value (`snap`'s module comment says why). They read
//! a `MemState`, as every reader of a replica does, and never look at locks: a cut never
//! falls inside a transaction (the freeze), so what they read at a cut is settled.

use thiserror::Error;

use crate::object::{DirEntry, Inode, FIRST_COOKIE};
use crate::state::MemState;
use crate::xattr::Xattrs;

use super::{Cut, SnapId, Versions};

/// Why a read at a cut has no answer from this replica.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum ViewError {
    /// This shard has no cut `snap`: its replica has not applied it yet, or the snapshot was
    /// never cut here or is forgotten. The registry on shard 0 tells which.
    #[error("snapshot {0} is not cut on this shard")]
    NotCut(SnapId),
    /// Snapshot `snap` is being deleted: no view of it is served any more.
    #[error("snapshot {0} is being deleted")]
    Retired(SnapId),
}

fn cut(s: &MemState, snap: SnapId) -> Result<&Cut, ViewError> {
    match s.snaps.cuts.get(&snap) {
        None => Err(ViewError::NotCut(snap)),
        Some(c) if c.retired => Err(ViewError::Retired(snap)),
        Some(c) => Ok(c),
    }
}

/// The value at `snap` of a key with versions `v` and live value `live`.
fn at<'a, T>(v: Option<&'a Versions<T>>, snap: SnapId, live: Option<&'a T>) -> Option<&'a T> {
    match v.and_then(|v| v.range(snap..).next()) {
        Some((_, pre)) => pre.value(),
        None => live,
    }
}

/// Inode `ino` (of this shard) at `snap`.
pub fn inode_at(s: &MemState, snap: SnapId, ino: u64) -> Result<Option<Inode>, ViewError> {
    if !cut(s, snap)?.born_before(ino) {
        return Ok(None);
    }
    Ok(at(s.pre_inodes.get(&ino), snap, s.inodes.get(&ino)).cloned())
}

/// `(ino, cookie)` of `dir/name` (`dir` of this shard) at `snap`.
pub fn entry_at(
    s: &MemState,
    snap: SnapId,
    dir: u64,
    name: &[u8],
) -> Result<Option<(u64, u64)>, ViewError> {
    if !cut(s, snap)?.born_before(dir) {
        return Ok(None);
    }
    Ok(entry(s, snap, dir, name))
}

fn entry(s: &MemState, snap: SnapId, dir: u64, name: &[u8]) -> Option<(u64, u64)> {
    let key = (dir, name.to_vec());
    at(s.pre_dirents.get(&key), snap, s.dirents.get(&key)).copied()
}

/// The extended attributes of `ino` at `snap` (`None`: it had none).
pub fn xattrs_at(s: &MemState, snap: SnapId, ino: u64) -> Result<Option<Xattrs>, ViewError> {
    if !cut(s, snap)?.born_before(ino) {
        return Ok(None);
    }
    Ok(at(s.pre_xattrs.get(&ino), snap, s.xattrs.get(&ino)).cloned())
}

/// Up to `max` entries of `dir` at `snap` after cookie `after`, in cookie order, and whether
/// that is the end, as the live READDIR pages (without its BAD_COOKIE check: the cookie
/// counter is not versioned).
///
/// A cookie is one entry for ever (a new entry always takes the directory's next cookie), so
/// an entry at `snap` is either live still, under its cookie in `dirindex`, or changed since,
/// and then held by a version at `snap` or above, under its cookie in `pre_dirindex`. Both
/// are walked together in cookie order, and a candidate counts if the entry at `snap` under
/// its name is that cookie: a page costs its candidates, not the directory.
pub fn readdir_at(
    s: &MemState,
    snap: SnapId,
    dir: u64,
    after: u64,
    max: usize,
) -> Result<(Vec<DirEntry>, bool), ViewError> {
    if !cut(s, snap)?.born_before(dir) {
        return Ok((Vec::new(), true));
    }
    let Some(start) = after.max(FIRST_COOKIE - 1).checked_add(1) else {
        return Ok((Vec::new(), true));
    };
    let mut live = (s.dirindex.range((dir, start)..=(dir, u64::MAX)))
        .map(|((_, c), n)| (*c, n))
        .peekable();
    let mut gone = (s
        .pre_dirindex
        .range((dir, start, 0)..=(dir, u64::MAX, u64::MAX)))
    .filter(|((_, _, at), _)| *at >= snap)
    .map(|((_, c, _), n)| (*c, n))
    .peekable();
    let mut out = Vec::new();
    let mut last = None;
    loop {
        let next = match (live.peek(), gone.peek()) {
            (Some(l), Some(g)) if g.0 < l.0 => gone.next(),
            (Some(_), _) => live.next(),
            (None, _) => gone.next(),
        };
        let Some((cookie, name)) = next else {
            return Ok((out, true));
        };
        if last == Some(cookie) {
            continue;
        }
        last = Some(cookie);
        let Some((ino, c)) = entry(s, snap, dir, name) else {
            continue;
        };
        if c != cookie {
            continue;
        }
        if out.len() >= max {
            return Ok((out, false));
        }
        out.push(DirEntry {
            name: name.clone(),
            ino,
            cookie,
        });
    }
}
