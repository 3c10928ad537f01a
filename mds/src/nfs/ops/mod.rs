//! One handler per NFSv4 operation, grouped by area. `dispatch` routes a decoded operation to
//! its handler; operations the server does not implement answer NFS4ERR_NOTSUPP. What else is
//! known about each operation (owner, flags, reply bound) is in `table`.
pub mod attr;
pub mod dir;
pub mod fh;
pub mod io;
pub mod lock;
pub mod open;
pub mod pnfs;
pub mod pseudo;
pub mod session;
pub mod snap;
pub mod table;
pub mod v42;
pub mod xattr;

use crate::error::NfsError;
use crate::nfs::ctx::Ctx;
use proto::nfs4::compound::{NfsArgop4 as A, NfsResop4 as R};
use proto::nfs4::fileops::StatusRes;

/// The error form of any operation's result.
pub fn error_result(op: &A, e: NfsError) -> R {
    R::from_status(op.opnum(), e.code())
}

pub fn bad_xdr_result(opnum: u32) -> R {
    R::from_status(opnum, NfsError::BadXdr.code())
}

fn status(r: Result<(), NfsError>) -> StatusRes {
    match r {
        Ok(()) => StatusRes::ok(),
        Err(e) => StatusRes::err(e.code()),
    }
}

/// Runs one operation. What concerns exports is decided here, before the handler: a pseudo
/// directory's READDIR and OPEN are the pseudo file system's; RENAME and LINK between two
/// exports (or an export and the pseudo file system) get XDEV; and handles the operation
/// hands out carry the current file handle's export.
pub async fn dispatch(ctx: &mut Ctx<'_>, op: &A) -> R {
    if ctx.in_pseudo() {
        match op {
            A::Readdir(a) => return R::Readdir(pseudo::readdir(ctx, a)),
            A::Open(a) => return R::Open(pseudo::open(a)),
            _ => {}
        }
    }
    // Inside a snapshot (or its `.snapshot` directory): read-only, read at the snapshot's
    // cut. A change answers ROFS before any handler (`table::CHANGES_FS`); whatever reads
    // goes to `snap`, which also refuses what it cannot serve, so no live handler ever sees
    // a snapshot's handle as the live inode it names.
    if ctx.in_snapshot() || ctx.saved_in_snapshot() {
        if let Some(e) = snap::refusal(ctx, op) {
            return error_result(op, e);
        }
        if let Some(r) = snap::dispatch(ctx, op).await {
            return r;
        }
    } else if let Some(e) = snap::shadowing(ctx, op) {
        return error_result(op, e);
    }
    if matches!(op, A::Rename(_) | A::Link(_))
        && ctx.cfh.is_some()
        && ctx.sfh.is_some()
        && ctx.cexp != ctx.sexp
    {
        return error_result(op, NfsError::Xdev);
    }
    // NFSv4.0-only operations are not part of a 4.1 compound (RFC 8881 §15.2).
    if table::info(op.opnum()).has(table::V40_ONLY) {
        return error_result(op, NfsError::NotSupp);
    }
    let exp = ctx.cexp;
    let r = crate::fh::encoding_in(exp, dispatch_op(ctx, op)).await;
    // Tiered mode keeps files in use off the bucket: the uses the MDS sees of a file's data.
    if let (Some(t), Some(ino), 0) = (&ctx.mds.tier, ctx.cfh, r.status()) {
        if matches!(
            op,
            A::Open(_)
                | A::Read(_)
                | A::ReadPlus(_)
                | A::Write(_)
                | A::Commit(_)
                | A::Close(_)
                | A::Layoutget(_)
                | A::Layoutcommit(_)
        ) {
            t.touch(ino);
        }
    }
    // Callbacks about an opened file carry its handle as the client knows it: remember the
    // export (only ambiguous with several).
    if ctx.mds.exports.len() > 1 && r.status() == 0 {
        if let (A::Open(_) | A::Layoutget(_) | A::GetDirDelegation(_), Some(ino)) = (op, ctx.cfh) {
            ctx.mds.handles.recent.note(ino, ctx.cexp);
        }
    }
    r
}

/// The handlers whose futures run to kilobytes are boxed: every call's task would otherwise be
/// as large as the largest of them, and tokio copies a task's future when it spawns it and
/// again when it drops it (~3% of server CPU on small-file loads, measured).
async fn dispatch_op(ctx: &mut Ctx<'_>, op: &A) -> R {
    match op {
        // session and client
        A::ExchangeId(a) => R::ExchangeId(session::exchange_id(ctx, a)),
        A::CreateSession(a) => R::CreateSession(Box::pin(session::create_session(ctx, a)).await),
        A::DestroySession(a) => R::DestroySession(status(session::destroy_session(ctx, a))),
        A::DestroyClientid(a) => {
            R::DestroyClientid(status(session::destroy_clientid(ctx, a).await))
        }
        A::BindConnToSession(a) => R::BindConnToSession(session::bind_conn_to_session(ctx, a)),
        A::BackchannelCtl(a) => R::BackchannelCtl(status(session::backchannel_ctl(ctx, a))),
        A::ReclaimComplete(a) => R::ReclaimComplete(status(session::reclaim_complete(ctx, a))),
        // file handles and names
        A::Putfh(a) => R::Putfh(status(fh::putfh(ctx, a).await)),
        A::Putrootfh => R::Putrootfh(status(fh::putrootfh(ctx))),
        A::Putpubfh => R::Putpubfh(status(fh::putrootfh(ctx))),
        A::Getfh => R::Getfh(fh::getfh(ctx)),
        A::Savefh => R::Savefh(status(fh::savefh(ctx))),
        A::Restorefh => R::Restorefh(status(fh::restorefh(ctx))),
        A::Lookup(a) => R::Lookup(status(fh::lookup(ctx, a).await)),
        A::Lookupp => R::Lookupp(status(fh::lookupp(ctx))),
        A::Secinfo(a) => R::Secinfo(fh::secinfo(ctx, a).await),
        A::SecinfoNoName(a) => R::SecinfoNoName(fh::secinfo_no_name(ctx, a)),
        // attributes
        A::Getattr(a) => R::Getattr(attr::getattr(ctx, a).await),
        A::Setattr(a) => R::Setattr(Box::pin(attr::setattr(ctx, a)).await),
        A::Verify(a) => R::Verify(status(attr::verify(ctx, &a.obj_attributes, true))),
        A::Nverify(a) => R::Nverify(status(attr::verify(ctx, &a.obj_attributes, false))),
        A::Access(a) => R::Access(attr::access(ctx, a)),
        // directories
        A::Readdir(a) => R::Readdir(dir::readdir(ctx, a).await),
        A::Create(a) => R::Create(Box::pin(dir::create(ctx, a)).await),
        A::Remove(a) => R::Remove(dir::remove(ctx, a).await),
        A::Rename(a) => R::Rename(dir::rename(ctx, a).await),
        A::Link(a) => R::Link(dir::link(ctx, a).await),
        A::Readlink => R::Readlink(dir::readlink(ctx)),
        // opens and delegations
        A::Open(a) => R::Open(Box::pin(open::open(ctx, a)).await),
        A::Close(a) => R::Close(open::close(ctx, a).await),
        A::OpenDowngrade(a) => R::OpenDowngrade(open::open_downgrade(ctx, a)),
        A::Delegreturn(a) => R::Delegreturn(status(open::delegreturn(ctx, a).await)),
        A::GetDirDelegation(a) => R::GetDirDelegation(open::get_dir_delegation(ctx, a).await),
        // data
        A::Read(a) => R::Read(Box::pin(io::read(ctx, a)).await),
        A::Write(a) => R::Write(Box::pin(io::write(ctx, a)).await),
        A::Commit(a) => R::Commit(Box::pin(io::commit(ctx, a)).await),
        // byte-range locks and stateids
        A::Lock(a) => R::Lock(Box::pin(lock::lock(ctx, a)).await),
        A::Lockt(a) => R::Lockt(Box::pin(lock::lockt(ctx, a)).await),
        A::Locku(a) => R::Locku(Box::pin(lock::locku(ctx, a)).await),
        A::TestStateid(a) => R::TestStateid(lock::test_stateid(ctx, a)),
        A::FreeStateid(a) => R::FreeStateid(status(lock::free_stateid(ctx, a))),
        // NFSv4.2
        A::Seek(a) => R::Seek(v42::seek(ctx, a).await),
        A::Allocate(a) => R::Allocate(status(Box::pin(v42::allocate(ctx, a)).await)),
        A::Deallocate(a) => R::Deallocate(status(Box::pin(v42::deallocate(ctx, a)).await)),
        A::ReadPlus(a) => R::ReadPlus(Box::pin(v42::read_plus(ctx, a)).await),
        A::Copy(a) => R::Copy(Box::pin(v42::copy(ctx, a)).await),
        A::Clone(a) => R::Clone(status(Box::pin(v42::clone(ctx, a)).await)),
        A::IoAdvise(a) => R::IoAdvise(v42::io_advise(ctx, a).await),
        A::Getxattr(a) => R::Getxattr(xattr::getxattr(ctx, a).await),
        A::Setxattr(a) => R::Setxattr(Box::pin(xattr::setxattr(ctx, a)).await),
        A::Listxattrs(a) => R::Listxattrs(xattr::listxattrs(ctx, a).await),
        A::Removexattr(a) => R::Removexattr(Box::pin(xattr::removexattr(ctx, a)).await),
        // pNFS
        A::Layoutget(a) => R::Layoutget(pnfs::layoutget(ctx, a).await),
        A::Getdeviceinfo(a) => R::Getdeviceinfo(pnfs::getdeviceinfo(ctx, a)),
        A::Layoutcommit(a) => R::Layoutcommit(pnfs::layoutcommit(ctx, a).await),
        A::Layoutreturn(a) => R::Layoutreturn(pnfs::layoutreturn(ctx, a).await),
        A::Layouterror(a) => R::Layouterror(status(pnfs::layouterror(ctx, a).await)),
        A::Layoutstats(a) => R::Layoutstats(status(pnfs::layoutstats(ctx, a))),
        A::Illegal | A::Unknown(_) => R::Illegal(StatusRes::err(NfsError::OpIllegal.code())),
        // Not implemented (NFSv4.0-only operations never get here, see `dispatch`):
        // GETDEVICELIST (flexfiles clients never send it), named attributes, SSV,
        // server-side copy offload notifications, WANT_DELEGATION, DELEGPURGE.
        other => error_result(other, NfsError::NotSupp),
    }
}
