//! Byte-range locks: LOCK (new or existing lock owner, reclaim), LOCKU, LOCKT.
use crate::client::Client;
use crate::compound::{find, CompoundBuilder};
use crate::error::{Error, Result};
use crate::io::OpenFile;
use proto::nfs4::*;
use proto::xdr::Opaque;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    Read,
    Write,
}

impl LockKind {
    fn wire(self) -> NfsLockType4 {
        match self {
            LockKind::Read => NfsLockType4::ReadLt,
            LockKind::Write => NfsLockType4::WriteLt,
        }
    }
}

impl Client {
    /// Locks `[offset, offset+length)` (length u64::MAX: to end of file) for the lock owner
    /// tied to this open. `reclaim`: re-establish a lock held before a server restart.
    /// A conflict is `Error::Nfs { status: Nfsstat4::Denied, .. }`.
    pub async fn lock(
        &self,
        f: &OpenFile,
        kind: LockKind,
        offset: u64,
        length: u64,
        reclaim: bool,
    ) -> Result<Stateid4> {
        let existing = f.lock_stateid();
        let locker = match existing {
            Some(s) => Locker4::ExistingLockOwner(ExistLockOwner4 {
                lock_stateid: s,
                lock_seqid: 0,
            }),
            None => Locker4::NewLockOwner(OpenToLockOwner4 {
                open_seqid: 0,
                // Seqid 0: "the current version" (RFC 8881 §8.2.2), so an OPEN of the same
                // file by this owner that bumped the seqid meanwhile cannot make this stale.
                open_stateid: Stateid4 {
                    seqid: 0,
                    ..f.stateid
                },
                lock_seqid: 0,
                lock_owner: StateOwner4 {
                    clientid: self.clientid(),
                    owner: Opaque([b"lock-".as_slice(), &f.owner].concat()),
                },
            }),
        };
        let res = self
            .compound(
                CompoundBuilder::new()
                    .putfh(&f.fh)
                    .op(NfsArgop4::Lock(LockArgs {
                        locktype: kind.wire(),
                        reclaim,
                        offset,
                        length,
                        locker,
                    })),
            )
            .await?;
        let sid = find(&res, "LOCK", |r| match r {
            NfsResop4::Lock(LockRes::Ok(ok)) => Some(ok.lock_stateid),
            _ => None,
        })?;
        if let Ok(mut g) = f.lock.lock() {
            *g = Some(sid);
        }
        Ok(sid)
    }

    pub async fn unlock(
        &self,
        f: &OpenFile,
        kind: LockKind,
        offset: u64,
        length: u64,
    ) -> Result<()> {
        let Some(sid) = f.lock_stateid() else {
            return Err(Error::Protocol("no lock held through this open".into()));
        };
        let res = self
            .compound(
                CompoundBuilder::new()
                    .putfh(&f.fh)
                    .op(NfsArgop4::Locku(LockuArgs {
                        locktype: kind.wire(),
                        seqid: 0,
                        lock_stateid: sid,
                        offset,
                        length,
                    })),
            )
            .await?;
        let sid = find(&res, "LOCKU", |r| match r {
            NfsResop4::Locku(LockuRes::Ok(s)) => Some(*s),
            _ => None,
        })?;
        if let Ok(mut g) = f.lock.lock() {
            *g = Some(sid);
        }
        Ok(())
    }

    /// LOCKT: whether a lock of `kind` on the range by `owner` would conflict.
    pub async fn lock_conflicts(
        &self,
        fh: &NfsFh4,
        kind: LockKind,
        offset: u64,
        length: u64,
        owner: &[u8],
    ) -> Result<bool> {
        let r = self
            .compound(
                CompoundBuilder::new()
                    .putfh(fh)
                    .op(NfsArgop4::Lockt(LocktArgs {
                        locktype: kind.wire(),
                        offset,
                        length,
                        owner: StateOwner4 {
                            clientid: self.clientid(),
                            owner: Opaque(owner.to_vec()),
                        },
                    })),
            )
            .await;
        match r {
            Ok(_) => Ok(false),
            Err(Error::Nfs {
                status: Nfsstat4::Denied,
                ..
            }) => Ok(true),
            Err(e) => Err(e),
        }
    }
}
