//! `cfs admin snapshot create | list | delete`: the operator's side of snapshots
//! (`docs/plans/snapshots.md`). The namespace does the work (`Namespace::create_snapshot`, a
//! cut of every shard at one instant; `delete_snapshot`, a merge in the background); this
//! module turns a path into the directory a snapshot is shown under and checks what a user
//! would get wrong before anything is proposed.

use std::collections::HashSet;

use meta::namespace::FsError;
use meta_core::snap::{SnapId, SnapRecord, SnapState};
use thiserror::Error;

use super::Admin;

/// How long a snapshot is kept when neither its create nor `[snapshots] retain_days` names a
/// retention: the design's default (seed decision D9). Past it, `snapshot_policy` deletes it
/// (without a tier; with one, its unique bytes move to the object store: `tiering::snap_archive`).
pub const DEFAULT_RETAIN_SECS: u64 = 7 * 24 * 3600;

/// The name under which a snapshot root shows its snapshots; a real entry of that name would
/// hide them, so a root holding one is refused.
pub const SNAPSHOT_DIR: &str = ".snapshot";

/// Why a snapshot command was refused.
#[derive(Debug, Error)]
pub enum SnapshotError {
    #[error("{0:?} is not a snapshot name: 1 to 255 bytes, no '/', no NUL, not '.' or '..'")]
    BadName(String),
    #[error("{0}: no such directory (give the path inside the file system, e.g. /projects)")]
    NotFound(String),
    #[error("{0} is not a directory: a snapshot is shown under a directory's .snapshot")]
    NotDir(String),
    #[error("{0} holds an entry named .snapshot, which would hide its snapshots: rename it first")]
    HidesSnapshots(String),
    #[error("a snapshot named {0:?} exists already")]
    Exists(String),
    #[error("no snapshot is named {0:?}")]
    NoSuchSnapshot(String),
    #[error("another snapshot is being made or deleted; try again")]
    Busy,
    #[error("data writes could not be held still for the cut ({0}); try again")]
    Quiesce(crate::state::quiesce::QuiesceError),
    #[error("the namespace: {0}; try again")]
    Namespace(FsError),
    #[error(
        "{0} is not a place to restore to: give an absolute path whose last part is a plain name"
    )]
    BadTarget(String),
    #[error("{0} exists: restore to a path that does not exist yet (or remove it first)")]
    TargetExists(String),
    #[error("restore found {0:?} in its way, not what the snapshot has there: move it aside and run the same restore again")]
    RestoreConflict(String),
    #[error("this restore is running already on this node")]
    RestoreRunning,
    #[error("the snapshot's data could not be read or shared ({0:?}): run the same restore again to go on where it stopped")]
    Data(crate::error::NfsError),
}

/// One snapshot as `cfs admin snapshot list` shows it.
#[derive(Debug, Clone)]
pub struct SnapshotInfo {
    pub id: SnapId,
    pub name: String,
    /// The directory it is shown under (`PATH/.snapshot/NAME`), as found by a bounded walk
    /// from the root (`Admin::paths`); `None` if the directory was removed or not found.
    pub path: Option<String>,
    pub root: u64,
    /// Seconds since the epoch when its create began.
    pub created: i64,
    pub retain_secs: u64,
    /// `pending`, `decided`, `ready`, `aborted` or `deleting`.
    pub state: &'static str,
    /// Where its unique bytes (data images) live: `flash`, or, past its retention on a
    /// server with a tier, `object store` (moved there by `tiering::snap_archive` within
    /// its pass, seconds).
    pub location: &'static str,
}

fn check_name(name: &str) -> Result<(), SnapshotError> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && !name.contains(['/', '\0'])
        && name != "."
        && name != "..";
    if ok {
        Ok(())
    } else {
        Err(SnapshotError::BadName(name.to_string()))
    }
}

fn state_name(s: &SnapState) -> &'static str {
    match s {
        SnapState::Pending { .. } => "pending",
        SnapState::Decided { .. } => "decided",
        SnapState::Ready { .. } => "ready",
        SnapState::Aborted { .. } => "aborted",
        SnapState::Deleting { .. } => "deleting",
    }
}

impl Admin {
    /// Takes snapshot `name` of the namespace, shown at `path/.snapshot/name`: every change
    /// acknowledged before this call and none begun after it returns
    /// (`Namespace::create_snapshot`), kept `retain_secs` (default `DEFAULT_RETAIN_SECS`).
    /// Returns its id.
    pub async fn snapshot_create(
        &self,
        path: &str,
        name: &str,
        retain_secs: Option<u64>,
    ) -> Result<SnapId, SnapshotError> {
        check_name(name)?;
        let ns = &self.mds.ns;
        if !path.starts_with('/') {
            return Err(SnapshotError::NotFound(path.to_string()));
        }
        let dir = match ns.resolve(path.as_bytes()) {
            Ok(i) => i,
            Err(FsError::NotFound) => return Err(SnapshotError::NotFound(path.to_string())),
            Err(FsError::NotDir) => return Err(SnapshotError::NotDir(path.to_string())),
            Err(e) => return Err(SnapshotError::Namespace(e)),
        };
        if !dir.kind.is_dir() {
            return Err(SnapshotError::NotDir(path.to_string()));
        }
        match ns.lookup(dir.ino, SNAPSHOT_DIR.as_bytes()) {
            Ok(_) => return Err(SnapshotError::HidesSnapshots(path.to_string())),
            Err(FsError::NotFound) => {}
            Err(e) => return Err(SnapshotError::Namespace(e)),
        }
        // P0: no file's bytes change on any node's say-so until the cut is made, and no
        // RW layout from before it is left to write (`state::quiesce`).
        let started = std::time::Instant::now();
        let quiesce = crate::state::quiesce::quiesce_all(&self.mds.nfs)
            .await
            .map_err(|e| match e {
                crate::state::quiesce::QuiesceError::Busy(_) => SnapshotError::Busy,
                e => SnapshotError::Quiesce(e),
            })?;
        let quiesced = started.elapsed();
        let made = ns
            .create_snapshot_while(
                name.as_bytes(),
                dir.ino,
                retain_secs.unwrap_or(DEFAULT_RETAIN_SECS),
                &|| quiesce.trusted(),
            )
            .await;
        drop(quiesce);
        tracing::info!(
            name,
            quiesce_ms = quiesced.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            ok = made.is_ok(),
            "snapshot create"
        );
        match made {
            Ok(id) => Ok(id),
            Err(FsError::Exists) => Err(SnapshotError::Exists(name.to_string())),
            Err(FsError::NotDir | FsError::NotFound) => {
                Err(SnapshotError::NotDir(path.to_string()))
            }
            Err(FsError::Busy | FsError::Aborted) => Err(SnapshotError::Busy),
            Err(e) => Err(SnapshotError::Namespace(e)),
        }
    }

    /// Each snapshot's unique and shared bytes (`Data::snapshot_usage`: the count kept from
    /// the last minute, or, `fresh`, a new one).
    pub async fn snapshot_bytes(&self, fresh: bool) -> crate::admin::SnapUsage {
        self.mds.data.snapshot_usage(fresh).await
    }

    /// Every snapshot that was not aborted, oldest first, with the path it is shown under.
    pub async fn snapshot_list(&self) -> Result<Vec<SnapshotInfo>, SnapshotError> {
        let records: Vec<(SnapId, SnapRecord)> = (self.mds.ns.list_snapshots().await)
            .map_err(SnapshotError::Namespace)?
            .into_iter()
            .filter(|(_, r)| !matches!(r.state, SnapState::Aborted { .. }))
            .collect();
        let roots: HashSet<u64> = records.iter().map(|(_, r)| r.root).collect();
        let paths = self.paths(&roots);
        let now = meta_core::Time::now().secs;
        let tier = self.mds.tier.is_some();
        let location = |r: &SnapRecord| {
            let moved = tier
                && matches!(r.state, SnapState::Ready { .. })
                && meta_core::snap::past_retention(r.created.secs, r.retain_secs, now);
            if moved {
                "object store"
            } else {
                "flash"
            }
        };
        Ok(records
            .into_iter()
            .map(|(id, r)| SnapshotInfo {
                id,
                name: String::from_utf8_lossy(&r.name).into_owned(),
                path: paths.get(&r.root).cloned(),
                root: r.root,
                created: r.created.secs,
                retain_secs: r.retain_secs,
                state: state_name(&r.state),
                location: location(&r),
            })
            .collect())
    }

    /// Deletes snapshot `name`: it is gone from `.snapshot` at once; what only it kept is
    /// reclaimed in the background. Returns its id.
    pub async fn snapshot_delete(&self, name: &str) -> Result<SnapId, SnapshotError> {
        check_name(name)?;
        match self.mds.ns.delete_snapshot(name.as_bytes()).await {
            Ok(id) => Ok(id),
            Err(FsError::NotFound) => Err(SnapshotError::NoSuchSnapshot(name.to_string())),
            Err(FsError::Busy) => Err(SnapshotError::Busy),
            Err(e) => Err(SnapshotError::Namespace(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check_name;

    #[test]
    fn names_that_cannot_be_a_directory_entry_are_refused() {
        for bad in ["", ".", "..", "a/b", "a\0b", &"x".repeat(256)] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["weekly", "2026-12-01", ".hidden", &"x".repeat(255)] {
            assert!(check_name(good).is_ok(), "{good:?} refused");
        }
    }
}
