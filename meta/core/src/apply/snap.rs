//! A shard's steps of the snapshot protocol (`SnapFreeze`, `SnapCut`, `SnapThaw`,
//! `SnapAbort`, `SnapRetire`, `SnapMerge`, `SnapForget`), and the guard that makes a frozen
//! shard refuse changes (`guard`). The protocol across shards is the plan's §2.3
//! (`docs/plans/snapshots.md`); the copy-on-write and the reads are `crate::snap`.

use crate::command::Command;
use crate::error::FsError;
use crate::object::{Outcome, Time, ROOT_INO};
use crate::snap::{Cut, Freeze, PreKey, ShardSnaps, SnapId, Versions};
use crate::state::{meta, StateStore};
use crate::txn::Decision;

/// What a shard in `snaps`' phase refuses of `cmd`, before anything is applied:
///
/// - frozen: every change (`Busy`: the proposer retries, the freeze lasts about four Raft
///   commits) and a transaction's lock (`Busy`): nothing may move before the cut;
/// - frozen, or cut and not yet thawed: a transaction's decision (`Aborted`: the coordinator
///   releases its locks and tries again at once). A decision now could commit one shard's
///   part before that shard's cut and another's after theirs: half a rename in the snapshot.
///
/// A transaction's commit, abort, resolve and forget steps, snapshot steps and `Noop` always
/// pass: the drain of decided transactions before the cut needs the commits. A decision made
/// already (`TxnDecide` sent again) passes too, and answers as before.
///
/// The refused decision is not recorded as an abort: a command that fails leaves nothing
/// behind (`state::Staged`). It needs no record: the coordinator answered `Aborted` releases
/// the locks of every shard it touched, the coordinating one too (so a later `TxnDecide`
/// finds no lock and aborts), a copy of the command gets the same answer (`sessions`), and
/// a coordinator that dies first leaves a prepared record that recovery resolves.
pub(super) fn guard<S: StateStore + ?Sized>(
    s: &S,
    snaps: &ShardSnaps,
    cmd: &Command,
) -> Result<(), FsError> {
    let frozen = snaps.freeze.is_some();
    if !frozen && !snaps.unthawed() {
        return Ok(());
    }
    let cmd = match cmd {
        Command::Request { cmd, .. } => cmd,
        other => other,
    };
    match cmd {
        _ if cmd.snap_step().is_some() => Ok(()),
        Command::Noop
        | Command::TxnCommit { .. }
        | Command::TxnAbort { .. }
        | Command::TxnResolve { .. }
        | Command::TxnForget { .. } => Ok(()),
        Command::TxnDecide { txn, .. } => {
            let decided = s.txn(*txn)?.and_then(|e| e.decision);
            match decided {
                Some(Decision::Commit { .. }) => Ok(()),
                _ => Err(FsError::Aborted),
            }
        }
        _ if frozen => Err(FsError::Busy),
        _ => Ok(()),
    }
}

/// `SnapFreeze`.
pub(super) fn freeze<S: StateStore + ?Sized>(
    s: &mut S,
    snap: SnapId,
    time: Time,
) -> Result<Outcome, FsError> {
    let mut st = s.shard_snaps()?;
    if st.cuts.contains_key(&snap) {
        return Ok(Outcome::default());
    }
    match st.freeze {
        Some(f) if f.snap == snap => return Ok(Outcome::default()),
        Some(_) => return Err(FsError::Busy),
        None => {}
    }
    // Ids only grow: a freeze for one older than a cut here is a stale copy, and a cut for it
    // would not be the newest, which the copy-on-write rule counts on.
    if snap == 0 || st.cuts.keys().next_back().is_some_and(|last| *last > snap) {
        return Err(FsError::Invalid);
    }
    st.freeze = Some(Freeze { snap, since: time });
    s.put_shard_snaps(&st)?;
    Ok(Outcome::default())
}

/// `SnapCut`.
pub(super) fn cut<S: StateStore + ?Sized>(
    s: &mut S,
    snap: SnapId,
    time: Time,
) -> Result<Outcome, FsError> {
    let mut st = s.shard_snaps()?;
    if st.cuts.contains_key(&snap) {
        return Ok(Outcome::default());
    }
    if st.freeze.map(|f| f.snap) != Some(snap) {
        return Err(FsError::Invalid);
    }
    // What `alloc_ino` hands out next: every number below it may be in use.
    let next_ino = s.meta(meta::NEXT_INO)?.max(ROOT_INO + 1);
    st.cuts.insert(
        snap,
        Cut {
            next_ino,
            at: time,
            thawed: false,
            retired: false,
        },
    );
    st.freeze = None;
    s.put_shard_snaps(&st)?;
    Ok(Outcome::default())
}

/// `SnapThaw`.
pub(super) fn thaw<S: StateStore + ?Sized>(s: &mut S, snap: SnapId) -> Result<Outcome, FsError> {
    let mut st = s.shard_snaps()?;
    let c = st.cuts.get_mut(&snap).ok_or(FsError::Invalid)?;
    if !c.thawed {
        c.thawed = true;
        s.put_shard_snaps(&st)?;
    }
    Ok(Outcome::default())
}

/// `SnapAbort`.
pub(super) fn abort<S: StateStore + ?Sized>(s: &mut S, snap: SnapId) -> Result<Outcome, FsError> {
    let mut st = s.shard_snaps()?;
    if st.cuts.contains_key(&snap) {
        return Err(FsError::Invalid);
    }
    if st.freeze.is_some_and(|f| f.snap == snap) {
        st.freeze = None;
        s.put_shard_snaps(&st)?;
    }
    Ok(Outcome::default())
}

/// `SnapRetire`.
pub(super) fn retire<S: StateStore + ?Sized>(s: &mut S, snap: SnapId) -> Result<Outcome, FsError> {
    let mut st = s.shard_snaps()?;
    if let Some(c) = st.cuts.get_mut(&snap).filter(|c| !c.retired) {
        c.retired = true;
        s.put_shard_snaps(&st)?;
    }
    Ok(Outcome::default())
}

/// `SnapMerge`: each of up to `max` pre-images `(K, snap)` of the retired `snap` moves to
/// `(K, P)`, P the newest live cut below `snap`, or is dropped. A version at `snap` serves
/// the live cuts from the key's next version below it (exclusive) up to `snap`, so:
///
/// - some `(K, d)` with P < d < `snap`: none of those is live, the version serves no one;
/// - else, if K (an entry: its directory) was born before P and has no version at P: no
///   change of K came between P and `snap` (it would have left a version in [P, `snap`)),
///   so the value at `snap` is the value at P: it moves there;
/// - else P reads another version, or K did not exist at P, or there is no P: dropped.
///
/// The result does not depend on the order in which retired snapshots merge, and each step
/// is a bounded batch, so a deletion carries on across restarts.
pub(super) fn merge<S: StateStore + ?Sized>(
    s: &mut S,
    snap: SnapId,
    max: u32,
) -> Result<Outcome, FsError> {
    let st = s.shard_snaps()?;
    if !st.cuts.get(&snap).is_some_and(|c| c.retired) {
        return Err(FsError::Invalid);
    }
    let below = st.live_below(snap).map(|(p, c)| (p, *c));
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    for key in s.pre_keys_at(snap, max)? {
        match key {
            PreKey::Inode(ino) => {
                let v = merged(s.pre_inode(ino)?, snap, below, ino);
                s.put_pre_inode(ino, &v)?;
            }
            PreKey::Entry(dir, name) => {
                let v = merged(s.pre_dirent(dir, &name)?, snap, below, dir);
                s.put_pre_dirent(dir, &name, &v)?;
            }
            PreKey::Xattrs(ino) => {
                let v = merged(s.pre_xattrs(ino)?, snap, below, ino);
                s.put_pre_xattrs(ino, &v)?;
            }
        }
    }
    Ok(Outcome::default())
}

/// A key's versions `v` (of inode `owner`, or of its entries) with the one at `snap` merged
/// into `below` or dropped (`merge`).
fn merged<T>(
    mut v: Versions<T>,
    snap: SnapId,
    below: Option<(SnapId, Cut)>,
    owner: u64,
) -> Versions<T> {
    let Some(pre) = v.remove(&snap) else {
        return v;
    };
    if let Some((p, cut)) = below {
        let serves_no_one = v.range(p + 1..snap).next().is_some();
        if !serves_no_one && cut.born_before(owner) && !v.contains_key(&p) {
            v.insert(p, pre);
        }
    }
    v
}

/// `SnapForget`.
pub(super) fn forget<S: StateStore + ?Sized>(s: &mut S, snap: SnapId) -> Result<Outcome, FsError> {
    let mut st = s.shard_snaps()?;
    match st.cuts.get(&snap) {
        None => return Ok(Outcome::default()),
        Some(c) if !c.retired => return Err(FsError::Invalid),
        Some(_) => {}
    }
    if !s.pre_keys_at(snap, 1)?.is_empty() {
        return Err(FsError::NotEmpty);
    }
    st.cuts.remove(&snap);
    s.put_shard_snaps(&st)?;
    Ok(Outcome::default())
}
