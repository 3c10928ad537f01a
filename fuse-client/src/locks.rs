//! fcntl and flock locks as NFSv4 byte-range locks, one NFS lock owner per FUSE lock owner
//! (the kernel's files_struct for fcntl locks, the open file for flock, so the two conflict
//! as they do through the kernel NFS client, which emulates flock with whole-file locks).
//! Lock stateids are kept per (node, owner); a lock is derived from the open it was taken
//! through, and released before that open is closed.
use client::proto::nfs4::*;
use client::proto::xdr::Opaque;
use client::{Client, CompoundBuilder, OpenFile, Result};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// FUSE's "to the end of the file" (OFFSET_MAX).
const FUSE_EOF: u64 = i64::MAX as u64;
/// A blocked lock asks again after this, doubling up to [`MAX_POLL`] (the kernel client polls
/// the same way: NFS4_LOCK_MINTIMEOUT, without CB_NOTIFY_LOCK).
const FIRST_POLL: Duration = Duration::from_millis(50);
const MAX_POLL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Read,
    Write,
    Unlock,
}

impl Kind {
    pub fn from_fcntl(typ: i32) -> Option<Kind> {
        match typ {
            libc::F_RDLCK => Some(Kind::Read),
            libc::F_WRLCK => Some(Kind::Write),
            libc::F_UNLCK => Some(Kind::Unlock),
            _ => None,
        }
    }
    fn wire(self, blocking: bool) -> NfsLockType4 {
        match (self, blocking) {
            (Kind::Read, false) => NfsLockType4::ReadLt,
            (Kind::Read, true) => NfsLockType4::ReadwLt,
            (_, false) => NfsLockType4::WriteLt,
            (_, true) => NfsLockType4::WritewLt,
        }
    }
}

/// FUSE's inclusive [start, end] as NFS offset and length.
pub fn range(start: u64, end: u64) -> (u64, u64) {
    if end >= FUSE_EOF {
        (start, u64::MAX)
    } else {
        (start, end.saturating_sub(start).saturating_add(1))
    }
}

/// A conflicting lock as F_GETLK reports it: FUSE's inclusive range and the fcntl type. The
/// holder's pid is not known (it may be another client's), so it is reported as 0, as the
/// Linux NFS client does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conflict {
    pub start: u64,
    pub end: u64,
    pub typ: i32,
}

impl Conflict {
    /// LOCK4denied's offset and length as FUSE's [start, end]; the kernel rejects (EIO) a
    /// reply past OFFSET_MAX, so "to the end" and anything beyond it become OFFSET_MAX.
    pub fn from_denied(d: &LockDenied) -> Conflict {
        let start = d.offset.min(FUSE_EOF);
        let end = match d.length {
            0 | u64::MAX => FUSE_EOF,
            n => d.offset.saturating_add(n - 1).min(FUSE_EOF),
        };
        let typ = match d.locktype {
            NfsLockType4::ReadLt | NfsLockType4::ReadwLt => libc::F_RDLCK,
            _ => libc::F_WRLCK,
        };
        Conflict { start, end, typ }
    }
}

#[derive(Debug, Clone, Copy)]
struct Held {
    stateid: Stateid4,
    /// The FUSE file handle of the open the lock was derived from.
    from: u64,
}

#[derive(Default)]
pub struct Locks {
    held: Mutex<HashMap<(u64, u64), Held>>,
}

fn owner_bytes(owner: u64) -> Vec<u8> {
    // 9 bytes: Linux (6.13 and later) fails a lock with EIO when the conflicting holder's
    // owner is longer than its own owners' 20 bytes (see `client::locks`).
    [b"F".as_slice(), &owner.to_be_bytes()].concat()
}

impl Locks {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<(u64, u64), Held>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// LOCK (or LOCKU for `Kind::Unlock`) for `owner` on node `ino` through the open `f`
    /// (FUSE handle `fh`). `wait`: poll while another owner holds a conflicting lock.
    #[allow(clippy::too_many_arguments)]
    pub async fn set(
        &self,
        c: &Client,
        ino: u64,
        fh: u64,
        f: &OpenFile,
        owner: u64,
        kind: Kind,
        (offset, length): (u64, u64),
        wait: bool,
    ) -> Result<()> {
        if kind == Kind::Unlock {
            return self.unlock(c, ino, owner, f, offset, length).await;
        }
        let mut pause = FIRST_POLL;
        loop {
            match self
                .lock_once(c, ino, fh, f, owner, kind, offset, length, wait)
                .await
            {
                Err(e) if wait && e.is_status(Nfsstat4::Denied) => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_POLL);
                }
                r => return r,
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn lock_once(
        &self,
        c: &Client,
        ino: u64,
        fh: u64,
        f: &OpenFile,
        owner: u64,
        kind: Kind,
        offset: u64,
        length: u64,
        wait: bool,
    ) -> Result<()> {
        let held = self.map().get(&(ino, owner)).copied();
        let sid = c
            .lock_as(
                f,
                &owner_bytes(owner),
                held.map(|h| h.stateid),
                kind.wire(wait),
                false,
                (offset, length),
            )
            .await?;
        let from = held.map(|h| h.from).unwrap_or(fh);
        self.map().insert((ino, owner), Held { stateid: sid, from });
        Ok(())
    }

    async fn unlock(
        &self,
        c: &Client,
        ino: u64,
        owner: u64,
        f: &OpenFile,
        offset: u64,
        length: u64,
    ) -> Result<()> {
        let Some(h) = self.map().get(&(ino, owner)).copied() else {
            return Ok(());
        };
        let res = c
            .compound(
                CompoundBuilder::new()
                    .putfh(&f.fh)
                    .op(NfsArgop4::Locku(LockuArgs {
                        locktype: NfsLockType4::WriteLt,
                        seqid: 0,
                        lock_stateid: h.stateid,
                        offset,
                        length,
                    })),
            )
            .await?;
        if let Some(sid) = res.into_iter().find_map(|r| match r {
            NfsResop4::Locku(LockuRes::Ok(s)) => Some(s),
            _ => None,
        }) {
            if let Some(e) = self.map().get_mut(&(ino, owner)) {
                e.stateid = sid;
            }
        }
        Ok(())
    }

    /// LOCKT: would `owner` get this lock? `Some` = the conflicting lock as the server
    /// names it in its NFS4ERR_DENIED (the holder's range and type, which F_GETLK reports).
    pub async fn test(
        &self,
        c: &Client,
        fh: &NfsFh4,
        owner: u64,
        kind: Kind,
        (offset, length): (u64, u64),
    ) -> Result<Option<Conflict>> {
        let (status, res) = c
            .compound_keep_failure(CompoundBuilder::new().putfh(fh).op(NfsArgop4::Lockt(
                LocktArgs {
                    locktype: kind.wire(false),
                    offset,
                    length,
                    owner: StateOwner4 {
                        clientid: c.clientid(),
                        owner: Opaque(owner_bytes(owner)),
                    },
                },
            )))
            .await?;
        let denied = res.into_iter().find_map(|r| match r {
            NfsResop4::Lockt(LocktRes::Denied(d)) => Some(d),
            _ => None,
        });
        match (status, denied) {
            (Nfsstat4::Ok, _) => Ok(None),
            (Nfsstat4::Denied, Some(d)) => Ok(Some(Conflict::from_denied(&d))),
            (status, _) => Err(client::Error::Nfs {
                op: OP_LOCKT,
                status,
            }),
        }
    }

    /// Everything `owner` holds on `ino` released and forgotten (a close by the owner).
    pub async fn release_owner(&self, c: &Client, ino: u64, owner: u64, f: &OpenFile) {
        let h = self.map().remove(&(ino, owner));
        if let Some(h) = h {
            free(c, &f.fh, h.stateid).await;
        }
    }

    /// Every lock derived from the open `fh` released (before that open is closed).
    pub async fn release_open(&self, c: &Client, fh: u64, f: &OpenFile) {
        let gone: Vec<Held> = {
            let mut m = self.map();
            let keys: Vec<_> = m
                .iter()
                .filter(|(_, h)| h.from == fh)
                .map(|(k, _)| *k)
                .collect();
            keys.into_iter().filter_map(|k| m.remove(&k)).collect()
        };
        for h in gone {
            free(c, &f.fh, h.stateid).await;
        }
    }
}

/// LOCKU of everything, then FREE_STATEID, so the owner can start afresh.
async fn free(c: &Client, fh: &NfsFh4, sid: Stateid4) {
    let r = c
        .compound(
            CompoundBuilder::new()
                .putfh(fh)
                .op(NfsArgop4::Locku(LockuArgs {
                    locktype: NfsLockType4::WriteLt,
                    seqid: 0,
                    lock_stateid: sid,
                    offset: 0,
                    length: u64::MAX,
                })),
        )
        .await;
    let sid = match r {
        Ok(res) => res
            .into_iter()
            .find_map(|r| match r {
                NfsResop4::Locku(LockuRes::Ok(s)) => Some(s),
                _ => None,
            })
            .unwrap_or(sid),
        Err(e) => {
            tracing::debug!("LOCKU at release: {e}");
            sid
        }
    };
    let r = c
        .compound(vec![NfsArgop4::FreeStateid(FreeStateidArgs {
            fsa_stateid: sid,
        })])
        .await;
    if let Err(e) = r {
        tracing::debug!("FREE_STATEID of a lock: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inclusive_fuse_ranges_become_offset_and_length() {
        assert_eq!(range(0, FUSE_EOF), (0, u64::MAX));
        assert_eq!(range(0, 99), (0, 100));
        assert_eq!(range(100, 199), (100, 100));
        assert_eq!(range(5, 5), (5, 1));
    }

    #[test]
    fn fcntl_types_and_blocking_variants() {
        assert_eq!(Kind::from_fcntl(libc::F_WRLCK), Some(Kind::Write));
        assert_eq!(Kind::from_fcntl(99), None);
        assert_eq!(Kind::Read.wire(true), NfsLockType4::ReadwLt);
        assert_eq!(Kind::Write.wire(false), NfsLockType4::WriteLt);
    }

    fn denied(offset: u64, length: u64, locktype: NfsLockType4) -> LockDenied {
        LockDenied {
            offset,
            length,
            locktype,
            owner: StateOwner4::default(),
        }
    }

    #[test]
    fn a_denial_becomes_the_holders_inclusive_range_and_type() {
        let c = Conflict::from_denied(&denied(10, 20, NfsLockType4::ReadLt));
        assert_eq!((c.start, c.end, c.typ), (10, 29, libc::F_RDLCK));
        let c = Conflict::from_denied(&denied(7, u64::MAX, NfsLockType4::WritewLt));
        assert_eq!((c.start, c.end, c.typ), (7, FUSE_EOF, libc::F_WRLCK));
        // Past OFFSET_MAX the kernel would fail F_GETLK with EIO: clamped.
        let c = Conflict::from_denied(&denied(u64::MAX - 5, 3, NfsLockType4::WriteLt));
        assert_eq!((c.start, c.end), (FUSE_EOF, FUSE_EOF));
    }
}
