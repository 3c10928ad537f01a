//! Byte-range locks and stateid housekeeping: LOCK, LOCKT, LOCKU, TEST_STATEID, FREE_STATEID.
use crate::compound::Ctx;
use crate::error::{NfsError, NfsResult};
use crate::state::locks::{LockKind, Range};
use proto::nfs4::basic::{NfsLockType4, StateOwner4};
use proto::nfs4::state::*;
use proto::xdr::Opaque;

fn kind(t: NfsLockType4) -> LockKind {
    match t {
        NfsLockType4::ReadLt | NfsLockType4::ReadwLt => LockKind::Read,
        NfsLockType4::WriteLt | NfsLockType4::WritewLt => LockKind::Write,
    }
}

/// RFC 8881 §18.10.4: zero length is invalid, and so is a range that runs past 2^64 - 1.
fn check_range(offset: u64, length: u64) -> NfsResult<()> {
    if length == 0 || (length != u64::MAX && offset.checked_add(length).is_none()) {
        return Err(NfsError::Inval);
    }
    Ok(())
}

fn denied(r: Range) -> LockDenied {
    LockDenied {
        offset: r.start,
        length: if r.end == u64::MAX {
            u64::MAX
        } else {
            r.end - r.start
        },
        locktype: match r.kind {
            LockKind::Read => NfsLockType4::ReadLt,
            LockKind::Write => NfsLockType4::WriteLt,
        },
        owner: StateOwner4 {
            clientid: r.owner.0,
            owner: Opaque(r.owner.1),
        },
    }
}

pub fn lock(ctx: &mut Ctx<'_>, a: &LockArgs) -> LockRes {
    let r = (|| {
        let ino = ctx.fh()?;
        let i = ctx.inode(ino)?;
        if i.kind.is_dir() {
            return Err(NfsError::IsDir);
        }
        check_range(a.offset, a.length)?;
        if a.reclaim {
            ctx.mds.state.check_reclaim(ctx.clientid()?)?;
        } else if ctx.mds.state.in_grace() {
            return Err(NfsError::Grace);
        }
        let k = kind(a.locktype);
        match &a.locker {
            Locker4::NewLockOwner(n) => {
                let open = ctx.stateid(&n.open_stateid)?;
                ctx.mds.state.lock_new_owner(
                    ctx.clientid()?,
                    &open,
                    n.lock_owner.owner.as_bytes(),
                    ino,
                    k,
                    a.offset,
                    a.length,
                )
            }
            Locker4::ExistingLockOwner(e) => {
                let sid = ctx.stateid(&e.lock_stateid)?;
                ctx.mds
                    .state
                    .lock_existing(&sid, ino, k, a.offset, a.length)
            }
        }
    })();
    match r {
        Ok(Ok(sid)) => {
            ctx.cur_sid = Some(sid);
            LockRes::Ok(LockResOk { lock_stateid: sid })
        }
        Ok(Err(d)) => LockRes::Denied(denied(d.range)),
        Err(e) => LockRes::Err(e.code()),
    }
}

pub fn lockt(ctx: &mut Ctx<'_>, a: &LocktArgs) -> LocktRes {
    let r = (|| {
        let ino = ctx.fh()?;
        if ctx.inode(ino)?.kind.is_dir() {
            return Err(NfsError::IsDir);
        }
        check_range(a.offset, a.length)?;
        Ok(ctx.mds.state.test_lock(
            ctx.clientid()?,
            a.owner.owner.as_bytes(),
            ino,
            kind(a.locktype),
            a.offset,
            a.length,
        ))
    })();
    match r {
        Ok(None) => LocktRes::Ok,
        Ok(Some(range)) => LocktRes::Denied(denied(range)),
        Err(e) => LocktRes::Err(e.code()),
    }
}

pub fn locku(ctx: &mut Ctx<'_>, a: &LockuArgs) -> LockuRes {
    let r = (|| {
        let ino = ctx.fh()?;
        check_range(a.offset, a.length)?;
        let sid = ctx.stateid(&a.lock_stateid)?;
        ctx.mds.state.unlock(&sid, ino, a.offset, a.length)
    })();
    match r {
        Ok(s) => {
            ctx.cur_sid = Some(s);
            LockuRes::Ok(s)
        }
        Err(e) => LockuRes::error(e.code()),
    }
}

pub fn test_stateid(ctx: &mut Ctx<'_>, a: &TestStateidArgs) -> TestStateidRes {
    let codes = a
        .ts_stateids
        .iter()
        .map(|s| match ctx.mds.state.test_stateid(s) {
            Ok(()) => 0,
            Err(e) => e.code(),
        })
        .collect();
    TestStateidRes::Ok(TestStateidResOk {
        tsr_status_codes: codes,
    })
}

pub fn free_stateid(ctx: &mut Ctx<'_>, a: &FreeStateidArgs) -> NfsResult<()> {
    let sid = ctx.stateid(&a.fsa_stateid)?;
    ctx.mds.state.free_stateid(ctx.clientid()?, &sid)
}
