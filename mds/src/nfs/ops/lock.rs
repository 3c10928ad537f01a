//! Byte-range locks and stateid housekeeping: LOCK, LOCKT, LOCKU, TEST_STATEID, FREE_STATEID.
use crate::error::{NfsError, NfsResult};
use crate::nfs::ctx::Ctx;
use crate::state::locks::{LockKind, Range};
use crate::state::remote::locking::{self, LockAnswer, LockOp};
use crate::state::StateId;
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

/// LOCK. With other MDS nodes, the file's lock arbiter (`crate::state::remote::locking`) is asked first,
/// with the request registered as in flight until it is applied here.
pub async fn lock(ctx: &mut Ctx<'_>, a: &LockArgs) -> LockRes {
    match lock_inner(ctx, a).await {
        Ok(Ok(sid)) => {
            ctx.cur_sid = Some(sid);
            LockRes::Ok(LockResOk { lock_stateid: sid })
        }
        Ok(Err(d)) => LockRes::Denied(denied(d)),
        Err(e) => LockRes::Err(e.code()),
    }
}

async fn lock_inner(ctx: &mut Ctx<'_>, a: &LockArgs) -> NfsResult<Result<StateId, Range>> {
    let ino = ctx.fh()?;
    let i = ctx.inode(ino)?;
    if i.kind.is_dir() {
        return Err(NfsError::IsDir);
    }
    check_range(a.offset, a.length)?;
    if a.reclaim {
        ctx.mds.nfs.state.check_reclaim(ctx.clientid()?)?;
    } else if ctx.mds.nfs.state.in_grace() {
        return Err(NfsError::Grace);
    }
    let k = kind(a.locktype);
    let mds = ctx.mds;
    let _in_flight = if locking::across_nodes(&mds.nfs) {
        let owner = match &a.locker {
            Locker4::NewLockOwner(n) => (ctx.clientid()?, n.lock_owner.owner.as_bytes().to_vec()),
            Locker4::ExistingLockOwner(e) => mds
                .nfs
                .state
                .lock_owner_of(&ctx.stateid(&e.lock_stateid)?, ino)?,
        };
        let want = locking::range(owner, k, a.offset, a.length);
        let guard = mds.nfs.locks.in_flight.register(ino, want.clone());
        match locking::ask(&mds.nfs, ino, &want, LockOp::Lock, a.reclaim).await? {
            LockAnswer::Granted => {}
            LockAnswer::Denied(r) => return Ok(Err(r.into())),
            LockAnswer::Grace => return Err(NfsError::Grace),
            LockAnswer::NotLeader(_) => return Err(NfsError::Delay),
        }
        Some(guard)
    } else {
        None
    };
    let r = match &a.locker {
        Locker4::NewLockOwner(n) => {
            let open = ctx.stateid(&n.open_stateid)?;
            mds.nfs.state.lock_new_owner(
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
            mds.nfs
                .state
                .lock_existing(&sid, ino, k, a.offset, a.length)
        }
    }?;
    Ok(r.map_err(|d| d.range))
}

/// LOCKT: across nodes, the arbiter answers for every node's locks.
pub async fn lockt(ctx: &mut Ctx<'_>, a: &LocktArgs) -> LocktRes {
    let r = async {
        let ino = ctx.fh()?;
        if ctx.inode(ino)?.kind.is_dir() {
            return Err(NfsError::IsDir);
        }
        check_range(a.offset, a.length)?;
        let clientid = ctx.clientid()?;
        let k = kind(a.locktype);
        if locking::across_nodes(&ctx.mds.nfs) {
            let want = locking::range(
                (clientid, a.owner.owner.as_bytes().to_vec()),
                k,
                a.offset,
                a.length,
            );
            return match locking::ask(&ctx.mds.nfs, ino, &want, LockOp::Test, false).await? {
                LockAnswer::Granted => Ok(None),
                LockAnswer::Denied(r) => Ok(Some(r.into())),
                LockAnswer::Grace => Err(NfsError::Grace),
                LockAnswer::NotLeader(_) => Err(NfsError::Delay),
            };
        }
        Ok(ctx.mds.nfs.state.test_lock(
            clientid,
            a.owner.owner.as_bytes(),
            ino,
            k,
            a.offset,
            a.length,
        ))
    }
    .await;
    match r {
        Ok(None) => LocktRes::Ok,
        Ok(Some(range)) => LocktRes::Denied(denied(range)),
        Err(e) => LocktRes::Err(e.code()),
    }
}

/// LOCKU: released here first; across nodes the arbiter is then told (a release it does not
/// hear of costs only a confirmation when someone wants the range).
pub async fn locku(ctx: &mut Ctx<'_>, a: &LockuArgs) -> LockuRes {
    let r = async {
        let ino = ctx.fh()?;
        check_range(a.offset, a.length)?;
        let sid = ctx.stateid(&a.lock_stateid)?;
        let owner = locking::across_nodes(&ctx.mds.nfs)
            .then(|| ctx.mds.nfs.state.lock_owner_of(&sid, ino))
            .transpose()?;
        let s = ctx.mds.nfs.state.unlock(&sid, ino, a.offset, a.length)?;
        if let Some(owner) = owner {
            // The kind does not matter to a release.
            let r = locking::range(owner, LockKind::Write, a.offset, a.length);
            let _ = locking::ask(&ctx.mds.nfs, ino, &r, LockOp::Unlock, false).await;
        }
        Ok::<_, NfsError>(s)
    }
    .await;
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
        .map(|s| match ctx.mds.nfs.state.test_stateid(s) {
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
    ctx.mds.nfs.state.free_stateid(ctx.clientid()?, &sid)
}
