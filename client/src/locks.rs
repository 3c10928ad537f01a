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
        let sid = self
            .lock_as(
                f,
                &lock_owner(&f.owner),
                f.lock_stateid(),
                kind.wire(),
                reclaim,
                (offset, length),
            )
            .await?;
        if let Ok(mut g) = f.lock.lock() {
            *g = Some(sid);
        }
        Ok(sid)
    }

    /// LOCK of `[offset, offset+length)` by lock owner `owner` on the open `f`: under the
    /// owner's lock stateid `existing` when it holds one on this file, else as a new lock
    /// owner tied to the open. Returns the new lock stateid. For callers that keep their own
    /// lock owners (the FUSE client: one per kernel lock owner); `lock` is the one-owner-per-
    /// open case. `owner` should be at most 20 bytes (see `lock_owner`).
    pub async fn lock_as(
        &self,
        f: &OpenFile,
        owner: &[u8],
        existing: Option<Stateid4>,
        locktype: NfsLockType4,
        reclaim: bool,
        (offset, length): (u64, u64),
    ) -> Result<Stateid4> {
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
                    owner: Opaque(owner.to_vec()),
                },
            }),
        };
        let res = self
            .compound(
                CompoundBuilder::new()
                    .putfh(&f.fh)
                    .op(NfsArgop4::Lock(LockArgs {
                        locktype,
                        reclaim,
                        offset,
                        length,
                        locker,
                    })),
            )
            .await?;
        find(&res, "LOCK", |r| match r {
            NfsResop4::Lock(LockRes::Ok(ok)) => Some(ok.lock_stateid),
            _ => None,
        })
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

/// The lock owner of an open owner, at most 20 bytes: 'L', a 64-bit hash of the open owner
/// and its last 11 bytes (its counter, different for every owner of this client).
///
/// Why 20: Linux since 6.13 ("NFS: fix open_owner_id_maxsz and related fields") sizes its
/// reply buffer for a LOCK denial to a holder's owner of 20 bytes, its own owners' size, and
/// fails `fcntl` with EIO when the holder's owner is longer: a longer owner of ours would
/// break kernel clients' lock conflicts with us.
pub(crate) fn lock_owner(open_owner: &[u8]) -> Vec<u8> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    open_owner.hash(&mut h);
    let tail = &open_owner[open_owner.len().saturating_sub(11)..];
    let mut o = Vec::with_capacity(20);
    o.push(b'L');
    o.extend_from_slice(&h.finish().to_be_bytes());
    o.extend_from_slice(tail);
    o
}

#[cfg(test)]
mod tests {
    use super::lock_owner;

    #[test]
    fn lock_owners_fit_the_kernels_20_bytes_and_stay_distinct() {
        let a = lock_owner(b"open-18a7c3f2e9b04d11-1");
        let b = lock_owner(b"open-18a7c3f2e9b04d11-2");
        let c = lock_owner(b"open-18a7c3f2e9b04d12-1");
        assert!(a.len() <= 20 && b.len() <= 20 && c.len() <= 20);
        assert!(a != b && a != c && b != c);
        assert_eq!(a, lock_owner(b"open-18a7c3f2e9b04d11-1"));
    }
}
