//! Per-COMPOUND state (`Ctx`) the operation handlers share: the current and saved file
//! handles and stateids, the session, who the caller is (`WireCred`, `User`), and the reads of
//! namespace state that must see replicas known to be current (`Ctx::read`).
//!
//! Fresh reads (`compound::read_barrier`, `Ctx::read`): before an operation that reads namespace
//! state (`table::READS_STATE`) the runner passes the read barrier (`raft::fresh`) of the current (and,
//! for RENAME and LINK, the saved) file handle's shard once per COMPOUND. A read that reaches
//! another shard through a name or an entry (a LOOKUP, READDIR's attributes, OPEN by name, SECINFO)
//! passes that shard's barrier before its answer counts and runs again once every shard it touched
//! is current; a PUTFH whose file is missing passes its shard's barrier before it answers STALE
//! (issue 50: a node catching up answered STALE for names that existed). Each shard is current as
//! of its own barrier, not one instant: an entry may name an inode a removal already took from the
//! child's shard, so both barriers are passed again (`DANGLING_AGAIN`); an entry naming an inode
//! that stays missing is corruption: logged, NFS4ERR_IO.

use crate::error::NfsError;
use crate::export::{Export, SecFlavor};
use crate::node::Mds;
use crate::state::{InSlot, SessionId, StateId};
use meta::namespace::{FsError, ShardId, Snapshot};
use proto::rpc::Connection;
use std::sync::Arc;

/// How many times `Ctx::read` passes the barriers of an entry's directory and child again
/// when the entry names an inode the child's shard lacks, before it calls that corruption.
const DANGLING_AGAIN: u32 = 3;

/// Who the request runs as, after the export's squashing: the namespace's own credential, so
/// the checks in `namespace::perm` see exactly what the operation saw.
pub type User = meta::namespace::perm::Cred;

/// The caller's credential as sent, before any export's squashing.
#[derive(Debug, Clone)]
pub enum WireCred {
    Sys {
        uid: u32,
        gid: u32,
        gids: Vec<u32>,
    },
    /// AUTH_NONE: the export's anonymous identity.
    None,
    /// RPCSEC_GSS, verified by the `krb` layer: the principal's local identity, and the
    /// service (krb5, krb5i, krb5p) the call was protected with.
    Gss {
        uid: u32,
        gid: u32,
        gids: Vec<u32>,
        service: proto::rpc::gss::GssService,
    },
}

impl WireCred {
    /// The export flavor this credential is (AUTH_NONE counts as sys).
    pub fn flavor(&self) -> SecFlavor {
        use proto::rpc::gss::GssService;
        match self {
            WireCred::Sys { .. } | WireCred::None => SecFlavor::Sys,
            WireCred::Gss { service, .. } => match service {
                GssService::None => SecFlavor::Krb5,
                GssService::Integrity => SecFlavor::Krb5i,
                GssService::Privacy => SecFlavor::Krb5p,
            },
        }
    }

    /// Who the caller runs as under `export`'s rules.
    pub fn user(&self, export: &Export) -> User {
        match self {
            WireCred::Sys { uid, gid, gids } | WireCred::Gss { uid, gid, gids, .. } => {
                let (u, g) = export.map_ids(*uid, *gid);
                User {
                    uid: u,
                    gid: g,
                    groups: if u == *uid { gids.clone() } else { Vec::new() },
                }
            }
            WireCred::None => User {
                uid: export.anon_uid,
                gid: export.anon_gid,
                groups: Vec::new(),
            },
        }
    }
}

/// Where a file handle stands relative to snapshots (issue 48, `docs/plans/snapshots.md`
/// §4.2): the handle's snapshot field (`fh::FileHandle::snap`) as the handlers read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapPos {
    /// The `.snapshot` directory of the handle's inode, a snapshot root (live fsid).
    Dir,
    /// Inside snapshot `S`: the inode as it was at the snapshot's cut, read-only.
    In(u64),
}

impl SnapPos {
    /// The position a handle's snapshot field names.
    pub fn of_field(snap: u64) -> SnapPos {
        if snap == crate::fh::SNAPSHOT_DIR {
            SnapPos::Dir
        } else {
            SnapPos::In(snap)
        }
    }

    /// The handle's snapshot field for this position.
    pub fn field(self) -> u64 {
        match self {
            SnapPos::Dir => crate::fh::SNAPSHOT_DIR,
            SnapPos::In(s) => s,
        }
    }
}

/// Per-COMPOUND state: the current and saved file handles and stateids, and the session.
pub struct Ctx<'a> {
    pub mds: &'a Arc<Mds>,
    pub conn: &'a Connection,
    /// Who the request runs as: `cred` under the rules of the current file handle's export.
    pub user: User,
    pub cred: WireCred,
    /// The export of the current file handle (its rules: read-only, squashing, flavors).
    pub export: &'a Export,
    pub minor: u32,
    pub cfh: Option<u64>,
    pub sfh: Option<u64>,
    /// The export ids of the current and saved file handles (`export::PSEUDO_ID` for a
    /// directory of the pseudo file system).
    pub cexp: u32,
    pub sexp: u32,
    /// Whether the current and saved file handles are inside a snapshot (`SnapPos`): set by
    /// PUTFH, LOOKUP and LOOKUPP (`set_cur_at`), swapped by SAVEFH and RESTOREFH. `ops::dispatch`
    /// sends every operation on such a handle to `ops::snap`, or refuses it.
    pub csnap: Option<SnapPos>,
    pub ssnap: Option<SnapPos>,
    pub cur_sid: Option<StateId>,
    pub saved_sid: Option<StateId>,
    pub session: Option<SessionId>,
    pub clientid: Option<u64>,
    /// The slot this compound runs on and its reply limits, if it began with SEQUENCE.
    pub slot: Option<InSlot>,
    /// Operations in this compound, for "must be the only operation" checks.
    pub nops: usize,
    /// Shards whose read barrier this compound has passed (`raft::fresh`).
    pub fresh: Vec<u16>,
    /// The position of the operation running now in the COMPOUND.
    pub op_index: u16,
    /// The client request the running operation is a retry of (after DELAY, GRACE or BADSESSION;
    /// `state::delayed`): it runs as that request.
    pub retry_of: Option<meta::namespace::ClientRequest>,
}

impl Ctx<'_> {
    pub fn fh(&self) -> Result<u64, NfsError> {
        self.cfh.ok_or(NfsError::NoFileHandle)
    }

    /// Resolves the special "current stateid" (RFC 8881 §16.2.3.1.2).
    pub fn stateid(&self, sid: &proto::nfs4::basic::Stateid4) -> Result<StateId, NfsError> {
        if *sid == StateId::CURRENT {
            return self.cur_sid.ok_or(NfsError::BadStateId);
        }
        Ok(*sid)
    }

    /// The read barriers of `shards` this COMPOUND has not passed yet, at once.
    pub async fn pass_barriers(&mut self, shards: &[ShardId]) -> Result<(), NfsError> {
        let Some(&first) = shards.iter().find(|s| !self.fresh.contains(&s.0)) else {
            return Ok(());
        };
        // Nearly every operation has one shard to pass: awaited alone, without the list and
        // the join's futures (3 allocations per operation; METADATA-BENCH run 17).
        if shards
            .iter()
            .all(|s| *s == first || self.fresh.contains(&s.0))
        {
            if self.mds.ns.barrier(first).await.is_err() {
                return Err(NfsError::Delay);
            }
            self.fresh.push(first.0);
            return Ok(());
        }
        let mut todo: Vec<ShardId> = shards
            .iter()
            .copied()
            .filter(|s| !self.fresh.contains(&s.0))
            .collect();
        todo.sort_unstable();
        todo.dedup();
        if todo.is_empty() {
            return Ok(());
        }
        let mds = self.mds;
        let passed = futures::future::join_all(todo.iter().map(|s| mds.ns.barrier(*s))).await;
        if passed.iter().any(Result::is_err) {
            return Err(NfsError::Delay);
        }
        self.fresh.extend(todo.iter().map(|s| s.0));
        Ok(())
    }

    /// Reads namespace state through `read` (with the settled reads: `Snapshot::*_settled`),
    /// as of replicas known to be current: every shard the read reached has passed its read
    /// barrier before the answer is trusted. A directory's entry may name an object of another
    /// shard (a subdirectory, a file renamed in), and this node's replica of that shard may be
    /// behind the directory's: a node catching up after a restart or a partition found entries
    /// naming inodes it did not have yet, and answered STALE for names that exist (issue 50).
    /// So a read that reached a shard this COMPOUND has not passed the barrier of is thrown
    /// away, the barriers are passed, and it runs again; each round adds a shard, so this ends.
    /// It also runs again while it answers `Busy` (a cross-shard transaction holds what it
    /// read; milliseconds, or until recovery if its coordinator died), for up to
    /// `namespace::READ_WAIT`, then DELAY. `read` must have no side effect.
    ///
    /// An entry naming an inode that a current replica does not have is a removal seen from
    /// two instants (each shard current when its barrier was passed), so both barriers are
    /// passed again; if it stays, it is corruption: logged loudly and answered NFS4ERR_IO,
    /// never STALE.
    pub async fn read<T>(
        &mut self,
        mut read: impl FnMut(&Self, &Snapshot<'_>) -> Result<T, FsError>,
    ) -> Result<T, NfsError> {
        let mds = self.mds;
        let one_node = mds.ns.peers().is_none();
        let mut busy_until = None;
        let mut pause = std::time::Duration::from_millis(1);
        let mut again = DANGLING_AGAIN;
        loop {
            let (r, behind) = {
                let snap = mds.ns.snapshot()?;
                let r = read(self, &snap);
                let behind: Vec<ShardId> = if one_node {
                    Vec::new()
                } else {
                    snap.touched()
                        .into_iter()
                        .filter(|s| !self.fresh.contains(&s.0))
                        .collect()
                };
                (r, behind)
            };
            if !behind.is_empty() {
                self.pass_barriers(&behind).await?;
                continue;
            }
            match r {
                Err(FsError::Busy) => {
                    let now = tokio::time::Instant::now();
                    let until = *busy_until.get_or_insert(now + meta::namespace::READ_WAIT);
                    if now + pause >= until {
                        return Err(NfsError::Delay);
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_millis(20));
                }
                // Each shard was current when its barrier was passed, but not at one instant:
                // the directory's replica may show the entry from before a removal whose part
                // on the child's shard this node has applied already (the child's barrier came
                // later). Both barriers again: a replica current after that shows the
                // transaction's lock or the entry gone.
                Err(FsError::Dangling { dir, ino }) if again > 0 => {
                    again -= 1;
                    let (d, c) = (ShardId::of_ino(dir).0, ShardId::of_ino(ino).0);
                    self.fresh.retain(|s| *s != d && *s != c);
                }
                Err(FsError::Dangling { dir, ino }) => {
                    tracing::error!(
                        dir,
                        ino,
                        "namespace corrupt: an entry names an inode that this node's current \
                         replica of its shard does not have"
                    );
                    return Err(NfsError::Io);
                }
                other => return other.map_err(NfsError::from),
            }
        }
    }

    /// Whether the current file handle is inside a snapshot (or a `.snapshot` directory).
    pub fn in_snapshot(&self) -> bool {
        self.cfh.is_some() && self.csnap.is_some()
    }

    /// Whether the saved file handle is inside a snapshot.
    pub fn saved_in_snapshot(&self) -> bool {
        self.sfh.is_some() && self.ssnap.is_some()
    }

    pub fn clientid(&self) -> Result<u64, NfsError> {
        self.clientid.ok_or(NfsError::OpNotInSession)
    }

    pub fn writable(&self) -> Result<(), NfsError> {
        if self.export.read_only {
            Err(NfsError::Rofs)
        } else {
            Ok(())
        }
    }
}
