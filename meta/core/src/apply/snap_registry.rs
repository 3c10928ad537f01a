//! Shard 0's steps of the snapshot registry (`SnapBegin`, `SnapDecide`, `SnapResolve`,
//! `SnapReady`, `SnapDelete`, `SnapForgetRecord`; `snap::registry`). Each is idempotent
//! where the protocol may send it twice (a coordinator and a recovery, or a resend), and
//! none reads a clock: times come in the commands.

use crate::command::check_name;
use crate::error::FsError;
use crate::object::{Outcome, Time, DRAIN_INO};
use crate::snap::registry::{later_than, MAX_SNAPSHOTS};
use crate::snap::{SnapId, SnapRecord, SnapState, FREEZE_MAX};
use crate::state::{meta, StateStore};

/// `SnapBegin`.
pub(super) fn begin<S: StateStore + ?Sized>(
    s: &mut S,
    name: &[u8],
    root: u64,
    retain_secs: u64,
    time: Time,
) -> Result<Outcome, FsError> {
    check_name(name)?;
    if root == DRAIN_INO {
        return Err(FsError::Invalid);
    }
    let records = s.snap_records()?;
    let taken = records
        .values()
        .any(|r| r.name == name && !matches!(r.state, SnapState::Aborted { .. }));
    if taken {
        return Err(FsError::Exists);
    }
    if records.len() >= MAX_SNAPSHOTS {
        return Err(FsError::NoSpace);
    }
    // Ids only grow, and 0 is none: the copy-on-write rule counts on a newer cut's id being
    // higher (`apply::snap::freeze`).
    let snap = s.meta(meta::NEXT_SNAP)?.max(1);
    s.set_meta(meta::NEXT_SNAP, snap + 1)?;
    let r = SnapRecord {
        name: name.to_vec(),
        root,
        created: time,
        retain_secs,
        state: SnapState::Pending { since: time },
    };
    s.put_snap_record(snap, Some(&r))?;
    Ok(Outcome::default())
}

/// `SnapDecide`: the commit point.
pub(super) fn decide<S: StateStore + ?Sized>(
    s: &mut S,
    snap: SnapId,
    time: Time,
) -> Result<Outcome, FsError> {
    let Some(mut r) = s.snap_records()?.remove(&snap) else {
        return Err(FsError::Aborted);
    };
    match r.state {
        SnapState::Pending { since } if !later_than(since, time, FREEZE_MAX) => {
            r.state = SnapState::Decided { at: time };
            s.put_snap_record(snap, Some(&r))?;
            Ok(Outcome::default())
        }
        // Too late: the shards stayed frozen too long. The coordinator resolves it.
        SnapState::Pending { .. } | SnapState::Aborted { .. } => Err(FsError::Aborted),
        SnapState::Decided { .. } | SnapState::Ready { .. } | SnapState::Deleting { .. } => {
            Ok(Outcome::default())
        }
    }
}

/// `SnapResolve`: abort unless decided.
pub(super) fn resolve<S: StateStore + ?Sized>(
    s: &mut S,
    snap: SnapId,
    time: Time,
) -> Result<Outcome, FsError> {
    if let Some(mut r) = s.snap_records()?.remove(&snap) {
        if matches!(r.state, SnapState::Pending { .. }) {
            r.state = SnapState::Aborted { at: time };
            s.put_snap_record(snap, Some(&r))?;
        }
    }
    Ok(Outcome::default())
}

/// `SnapReady`.
pub(super) fn ready<S: StateStore + ?Sized>(
    s: &mut S,
    snap: SnapId,
    time: Time,
) -> Result<Outcome, FsError> {
    let mut r = s.snap_records()?.remove(&snap).ok_or(FsError::Invalid)?;
    match r.state {
        SnapState::Decided { .. } => {
            r.state = SnapState::Ready { at: time };
            s.put_snap_record(snap, Some(&r))?;
            Ok(Outcome::default())
        }
        SnapState::Ready { .. } | SnapState::Deleting { .. } => Ok(Outcome::default()),
        SnapState::Pending { .. } | SnapState::Aborted { .. } => Err(FsError::Invalid),
    }
}

/// `SnapDelete`: only marks the record; every shard's leader then merges the pre-images
/// away (`meta`'s `snap_delete` pass).
pub(super) fn delete<S: StateStore + ?Sized>(
    s: &mut S,
    snap: SnapId,
    time: Time,
) -> Result<Outcome, FsError> {
    let mut r = s.snap_records()?.remove(&snap).ok_or(FsError::NotFound)?;
    match r.state {
        SnapState::Ready { .. } => {
            r.state = SnapState::Deleting { at: time };
            s.put_snap_record(snap, Some(&r))?;
            Ok(Outcome::default())
        }
        SnapState::Deleting { .. } => Ok(Outcome::default()),
        // Its shards are being cut: deleting now would leave some of them frozen or cut
        // with no one to finish them.
        SnapState::Pending { .. } | SnapState::Decided { .. } => Err(FsError::Busy),
        SnapState::Aborted { .. } => Err(FsError::Invalid),
    }
}

/// `SnapForgetRecord`.
pub(super) fn forget_record<S: StateStore + ?Sized>(
    s: &mut S,
    snap: SnapId,
) -> Result<Outcome, FsError> {
    let Some(r) = s.snap_records()?.remove(&snap) else {
        return Ok(Outcome::default());
    };
    match r.state {
        SnapState::Aborted { .. } | SnapState::Deleting { .. } => {
            s.put_snap_record(snap, None)?;
            Ok(Outcome::default())
        }
        _ => Err(FsError::Invalid),
    }
}
