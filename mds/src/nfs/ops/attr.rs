//! Attribute operations: GETATTR, SETATTR, VERIFY, NVERIFY, ACCESS.
use crate::error::{NfsError, NfsResult};
use crate::nfs::attrs;
use crate::nfs::ctx::Ctx;
use meta::namespace::perm;
use meta::namespace::{Command, FileKind, Inode, Time};
use proto::nfs4::attr::Bitmap;
use proto::nfs4::basic::Fattr4;
use proto::nfs4::fileops::*;

/// The attributes as settled: while a cross-shard transaction holds the inode, waits
/// (`Ctx::read`), then DELAY.
pub async fn getattr(ctx: &mut Ctx<'_>, a: &GetattrArgs) -> GetattrRes {
    let want = Bitmap::from_words(&a.attr_request);
    let cur = match ctx.fh() {
        Ok(ino) => match ctx.read(|_, s| s.getattr_settled(ino)).await {
            Ok(i) => as_written(ctx, i, &want).await,
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    match cur {
        Ok(i) => GetattrRes::Ok(GetattrResOk {
            obj_attributes: attrs::encode(ctx.mds, &i, &want),
        }),
        Err(e) => GetattrRes::error(e.code()),
    }
}

/// A file another client holds a write delegation on may have a size and change attribute
/// only its holder knows (RFC 8881 §10.4.3). Asked for either, the holder is asked first
/// (CB_GETATTR): unchanged, the server's attributes stand; changed, or no answer in time,
/// the delegation is recalled, and once it is back (the holder wrote its changes first)
/// the attributes are read again; until then NFS4ERR_DELAY. knfsd instead reports the
/// holder's size and a change attribute it bumps itself; recalling keeps the change
/// attribute what the file's writes made it, and the holder's data where every reader sees it.
async fn as_written(ctx: &mut Ctx<'_>, i: Inode, want: &Bitmap) -> NfsResult<Inode> {
    use crate::state::recall::{ask_writer, recall_writers_and_wait, Written};
    use proto::nfs4::attr::{FATTR4_CHANGE, FATTR4_SIZE};
    let nfs = &ctx.mds.nfs;
    // Where none is ever granted, no GETATTR pays for looking.
    if !nfs.grants_write_delegations()
        || i.kind != FileKind::Regular
        || !(want.get(FATTR4_SIZE) || want.get(FATTR4_CHANGE))
    {
        return Ok(i);
    }
    let me = ctx.clientid.unwrap_or(0);
    if nfs.state.settling(me, i.ino) {
        crate::state::settle::settled(nfs, me, i.ino).await?;
        return reread_after_wait(ctx, i.ino).await;
    }
    let unchanged = match nfs.state.write_delegation(i.ino, me) {
        Some((holder, sid, change)) => {
            let times = nfs.state.delegates_times(&sid);
            ask_writer(nfs, holder, i.ino, change, i.size, times).await == Written::Unchanged
        }
        None => {
            !nfs.state.write_delegated_to_other(i.ino, me)
                && !crate::state::remote::delegations::written_elsewhere(nfs, i.ino, me)
        }
    };
    if unchanged {
        return Ok(i);
    }
    let _busy = recall_writers_and_wait(nfs, i.ino, ctx.clientid).await?;
    reread_after_wait(ctx, i.ino).await
}

/// The holder's size was recorded while this waited, maybe through another node: the
/// barrier this compound passed before is too old for it (seen: a returned write
/// delegation's settled size read as 0 from this node's replica).
async fn reread_after_wait(ctx: &mut Ctx<'_>, ino: u64) -> NfsResult<Inode> {
    let shard = meta::namespace::ShardId::of_ino(ino).0;
    ctx.fresh.retain(|s| *s != shard);
    ctx.read(|_, s| s.getattr_settled(ino)).await
}

/// S_ISUID | S_ISGID: what a write by another user may clear (`perm::write_kills`).
pub(super) const SET_ID_BITS: u32 = 0o6000;

pub async fn setattr(ctx: &mut Ctx<'_>, a: &SetattrArgs) -> SetattrRes {
    match setattr_inner(ctx, a).await {
        Ok(mask) => SetattrRes {
            status: 0,
            attrsset: mask.to_vec(),
        },
        Err(e) => SetattrRes {
            status: e.code(),
            attrsset: Vec::new(),
        },
    }
}

async fn setattr_inner(ctx: &mut Ctx<'_>, a: &SetattrArgs) -> NfsResult<Bitmap> {
    let i = ctx.cur()?;
    ctx.writable()?;
    let (s, held) = attrs::decode_setattr(&a.obj_attributes)?;
    let mask = Bitmap::from_words(&a.obj_attributes.attrmask);
    // Checked before anything is done: the times go with the rest or not at all.
    let times = if held.is_empty() {
        None
    } else {
        let sid = ctx.stateid(&a.stateid)?;
        let state = &ctx.mds.nfs.state;
        let original = state.times_delegation(&sid, i.ino, ctx.clientid()?);
        tracing::debug!(
            ino = i.ino,
            ?held,
            ?original,
            "a delegation's holder reports times"
        );
        let original = original?;
        // A report that changes nothing recalls nobody: a read delegation's holder returning
        // it must not cost the other readers theirs.
        match held_times(original, held, Time::now()) {
            None if s.mask.is_empty() => return Ok(mask),
            t => t.map(|t| (sid, t)),
        }
    };
    // A file made set-id is not write-delegated (`open::write_delegable`), its holder's own
    // delegation included: it is recalled, and this waits for it as another client's change
    // would.
    let setid = i.kind == FileKind::Regular && s.mode.is_some_and(|m| m & SET_ID_BITS != 0);
    let except = if setid { None } else { ctx.clientid };
    let _busy = crate::state::recall::recall_and_wait(&ctx.mds.nfs, &[i.ino], except).await?;
    if s.size.is_some() {
        if !matches!(i.kind, meta::namespace::FileKind::Regular) {
            return Err(if i.kind.is_dir() {
                NfsError::IsDir
            } else {
                NfsError::Inval
            });
        }
        let sid = ctx.stateid(&a.stateid)?;
        ctx.mds.nfs.state.check_io(&sid, i.ino, true)?;
        if crate::state::is_special(&sid) {
            ctx.require(&i, 2)?;
            super::io::anonymous_io(ctx.mds, i.ino, true).await?;
        }
    }
    check_setattr_permission(ctx, &i, &s)?;
    apply_setattr(ctx, &i, &s).await?;
    if let Some((sid, t)) = times {
        apply_held_times(ctx, i.ino, t).await?;
        ctx.mds.nfs.state.times_reported(&sid);
    }
    Ok(mask)
}

/// The times to record from those a delegation's holder reports (RFC 9754 §5.2), each judged
/// against the file's when the delegation was granted (`DelegatedTimes::vet`): the holder's
/// own reads and writes moved them, so they are the file's even where the server's clock
/// said otherwise (its WRITEs arrive after the holder's write(2)). A modify time moves the
/// change time with it, as knfsd's `vet_deleg_attrs` does: (atime, mtime, ctime).
///
/// An access time alone is not recorded: recording times moves the change attribute
/// (`Command::SetAttr`), and every holder of a read delegation would then find its cache
/// stale after returning it, for having read the file. knfsd moves neither for it.
fn held_times(
    original: crate::state::DelegatedTimes,
    held: attrs::HeldTimes,
    now: Time,
) -> Option<(Option<Time>, Time, Time)> {
    use crate::state::DelegatedTimes;
    let mtime = DelegatedTimes::vet(held.mtime?, original.mtime, now)?;
    let atime = held
        .atime
        .and_then(|t| DelegatedTimes::vet(t, original.atime, now));
    let ctime = DelegatedTimes::vet(mtime, original.ctime, now).unwrap_or(now);
    Some((atime, mtime, ctime))
}

/// Records the holder's times (`held_times`) as the server: the delegation, granted after
/// the OPEN's access check, is the authority, not ownership of the file (which setting
/// explicit times otherwise needs).
async fn apply_held_times(
    ctx: &Ctx<'_>,
    ino: u64,
    (atime, mtime, ctime): (Option<Time>, Time, Time),
) -> NfsResult<()> {
    use meta::namespace::SetTime;
    tracing::debug!(
        ino,
        ?mtime,
        ?atime,
        "times reported by a delegation's holder"
    );
    ctx.mds
        .ns
        .execute(Command::SetAttr {
            ino,
            mode: None,
            uid: None,
            gid: None,
            size: None,
            atime: atime.map(SetTime::At),
            mtime: Some(SetTime::At(mtime)),
            time: ctime,
        })
        .await?;
    Ok(())
}

/// Linux's rules (`perm::setattr_prepare`), checked before anything is done: SETATTR cuts
/// the data before it records the new size, so a refusal must come first. `apply` checks the
/// same rules again inside the command. A size change needs write permission from a
/// non-owner even with an open stateid (stricter than ftruncate(2), never looser).
pub fn check_setattr_permission(ctx: &Ctx<'_>, i: &Inode, s: &attrs::SetAttrs) -> NfsResult<()> {
    perm::setattr_prepare(&ctx.user, i, &s.request())?;
    if s.size.is_some() && !perm::owner_or_capable(&ctx.user, i) {
        ctx.require(i, 2)?;
    }
    Ok(())
}

/// Records `s` on `i` as the caller; the data is cut first when the size changes.
pub async fn apply_setattr(ctx: &Ctx<'_>, i: &Inode, s: &attrs::SetAttrs) -> NfsResult<()> {
    if s.mode.is_none()
        && s.uid.is_none()
        && s.gid.is_none()
        && s.size.is_none()
        && s.atime.is_none()
        && s.mtime.is_none()
    {
        return Ok(());
    }
    // The evictor keeps off the file until the new size is recorded (`evicted`).
    let _hold = match s.size {
        Some(_) => ctx.mds.data.hold(i.ino).await,
        None => None,
    };
    if let Some(size) = s.size {
        // Data first: a crash in between leaves zeros past the new end under the old size,
        // never old bytes resurrected by a later grow.
        ctx.mds.data.truncate_data(i.ino, size).await?;
        if size != i.size {
            crate::state::recall::recall_layouts(&ctx.mds.nfs, i.ino, ctx.clientid);
        }
    }
    ctx.execute_as(Command::SetAttr {
        ino: i.ino,
        mode: s.mode,
        uid: s.uid,
        gid: s.gid,
        size: s.size,
        atime: s.atime,
        mtime: s.mtime,
        time: Time::now(),
    })
    .await?;
    Ok(())
}

pub fn verify(ctx: &mut Ctx<'_>, f: &Fattr4, want_same: bool) -> NfsResult<()> {
    let i = ctx.cur()?;
    let same = attrs::matches(ctx.mds, &i, f)?;
    match (same, want_same) {
        (true, true) | (false, false) => Ok(()),
        (false, true) => Err(NfsError::NotSame),
        (true, false) => Err(NfsError::Same),
    }
}

use proto::nfs4::basic::{
    ACCESS4_DELETE, ACCESS4_EXECUTE, ACCESS4_EXTEND, ACCESS4_LOOKUP, ACCESS4_MODIFY, ACCESS4_READ,
    ACCESS4_XALIST, ACCESS4_XAREAD, ACCESS4_XAWRITE,
};

/// The ACCESS bits that mean something for `i` (the rest are answered unsupported).
pub(crate) fn supported_access(i: &Inode) -> u32 {
    // Extended attributes (RFC 8276 §8.4.3) are on regular files and directories only; the
    // Linux client asks for these bits before it sends GETXATTR, SETXATTR or LISTXATTRS.
    let xa = if matches!(
        i.kind,
        meta::namespace::FileKind::Regular | meta::namespace::FileKind::Directory
    ) {
        ACCESS4_XAREAD | ACCESS4_XAWRITE | ACCESS4_XALIST
    } else {
        0
    };
    if i.kind.is_dir() {
        ACCESS4_READ | ACCESS4_LOOKUP | ACCESS4_MODIFY | ACCESS4_EXTEND | ACCESS4_DELETE | xa
    } else {
        ACCESS4_READ | ACCESS4_MODIFY | ACCESS4_EXTEND | ACCESS4_EXECUTE | xa
    }
}

pub fn access(ctx: &mut Ctx<'_>, a: &AccessArgs) -> AccessRes {
    let i = match ctx.cur() {
        Ok(i) => i,
        Err(e) => return AccessRes::error(e.code()),
    };
    let dir = i.kind.is_dir();
    let xattrs = matches!(
        i.kind,
        meta::namespace::FileKind::Regular | meta::namespace::FileKind::Directory
    );
    let supported = supported_access(&i) & a.access;
    let mut granted = 0;
    let user = &ctx.user;
    let xa_may = |want| meta::namespace::xattr::permission(user, &i, want).is_ok();
    if ctx.may(&i, 4) {
        granted |= ACCESS4_READ;
    }
    if xattrs && xa_may(perm::MAY_READ) {
        granted |= ACCESS4_XAREAD | ACCESS4_XALIST;
    }
    if ctx.may(&i, 2) && !ctx.export.read_only {
        granted |= ACCESS4_MODIFY | ACCESS4_EXTEND | if dir { ACCESS4_DELETE } else { 0 };
    }
    if xattrs && xa_may(perm::MAY_WRITE) && !ctx.export.read_only {
        granted |= ACCESS4_XAWRITE;
    }
    if ctx.may(&i, 1) {
        granted |= if dir { ACCESS4_LOOKUP } else { ACCESS4_EXECUTE };
    }
    AccessRes::Ok(AccessResOk {
        supported,
        access: granted & supported,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::DelegatedTimes;

    #[test]
    fn held_times_take_a_later_modify_time_and_its_access_time_never_an_access_time_alone() {
        let t = |s| Time::new(s, 0);
        let original = DelegatedTimes {
            atime: t(10),
            mtime: t(20),
            ctime: t(30),
        };
        let now = t(100);
        let held = |atime, mtime| attrs::HeldTimes { atime, mtime };
        assert_eq!(held_times(original, held(Some(t(50)), None), now), None);
        assert_eq!(held_times(original, held(None, Some(t(20))), now), None);
        assert_eq!(
            held_times(original, held(Some(t(50)), Some(t(40))), now),
            Some((Some(t(50)), t(40), t(40)))
        );
        // A modify time not past the change time at the grant leaves that to now; an access
        // time not past the grant's is left alone; a future one is now.
        assert_eq!(
            held_times(original, held(Some(t(5)), Some(t(25))), now),
            Some((None, t(25), now))
        );
        assert_eq!(
            held_times(original, held(None, Some(t(500))), now),
            Some((None, now, now))
        );
    }
}
