//! Data operations: READ, WRITE, COMMIT. File data lives in the chunk store (or on data
//! servers); the namespace owns the size, so every WRITE notes its end of file, recorded in the
//! log when the data is made durable.
use crate::error::{NfsError, NfsResult};
use crate::nfs::ctx::Ctx;
use meta::namespace::{perm, FileKind, Inode, Time};
use proto::nfs4::basic::{StableHow4, Stateid4};
use proto::nfs4::fileops::*;
use proto::xdr::Opaque;

/// The current file as a regular file that `sid` may read or write.
pub async fn io_target(
    ctx: &Ctx<'_>,
    sid: &Stateid4,
    write: bool,
) -> NfsResult<(Inode, crate::state::StateId)> {
    let i = ctx.cur()?;
    match i.kind {
        FileKind::Regular => {}
        FileKind::Directory => return Err(NfsError::IsDir),
        FileKind::Symlink { .. } => return Err(NfsError::Inval),
        _ => return Err(NfsError::Inval),
    }
    let sid = ctx.stateid(sid)?;
    ctx.mds.nfs.state.check_io(&sid, i.ino, write)?;
    if crate::state::is_special(&sid) {
        ctx.require(&i, if write { 2 } else { 4 })?;
        anonymous_io(ctx.mds, i.ino, write).await?;
        // Outside any open, no OPEN recalled another client's write delegation: a reader
        // recalls it here (a writer does in `write`, as for every delegation).
        if !write {
            crate::state::recall::recall_writers_and_wait(&ctx.mds.nfs, i.ino, ctx.clientid)
                .await?;
        }
    }
    if write {
        ctx.writable()?;
    }
    Ok((i, sid))
}

/// I/O outside any open (a special stateid) meets the deny bits of other MDS nodes' opens too,
/// as `StateManager::check_io` checks this node's: LOCKED, as knfsd answers.
pub async fn anonymous_io(
    mds: &std::sync::Arc<crate::node::Mds>,
    ino: u64,
    write: bool,
) -> NfsResult<()> {
    let access = if write { 2 } else { 1 };
    match crate::state::remote::shares::begin_open(&mds.nfs, ino, access, 0, 0, false).await {
        Ok(_) => Ok(()),
        Err(NfsError::ShareDenied) => Err(NfsError::Locked),
        Err(e) => Err(e),
    }
}

pub async fn read(ctx: &mut Ctx<'_>, a: &ReadArgs) -> ReadRes {
    match read_inner(ctx, a).await {
        Ok(r) => ReadRes::Ok(r),
        Err(e) => ReadRes::error(e.code()),
    }
}

async fn read_inner(ctx: &mut Ctx<'_>, a: &ReadArgs) -> NfsResult<ReadResOk> {
    let (i, sid) = io_target(ctx, &a.stateid, false).await?;
    let count = a.count.min(crate::limits::MAX_IO);
    ctx.mds
        .nfs
        .state
        .check_lock_conflict(&sid, i.ino, a.offset, u64::from(count), false)?;
    let (data, eof) = ctx
        .mds
        .data
        .read_data(i.ino, a.offset, u64::from(count), i.size)
        .await?;
    Ok(ReadResOk {
        eof,
        data: Opaque(data),
    })
}

pub async fn write(ctx: &mut Ctx<'_>, a: &WriteArgs) -> WriteRes {
    write_owned(ctx, a.clone()).await
}

/// WRITE taking the arguments by value, so the payload moves to storage uncopied.
pub async fn write_owned(ctx: &mut Ctx<'_>, a: WriteArgs) -> WriteRes {
    let r = match write_inner(ctx, a).await {
        // A stable write is an acknowledgement: past the write-through mark it waits for the
        // bucket (`tiering::through`), after the file's holds are let go (the upload reads it).
        Ok((r, ino, at)) if r.committed != StableHow4::Unstable4 => {
            crate::tiering::through::acknowledge(ctx.mds, ino, at)
                .await
                .map(|()| r)
        }
        Ok((r, _, _)) => Ok(r),
        Err(e) => Err(e),
    };
    match r {
        Ok(r) => WriteRes::Ok(r),
        Err(e) => WriteRes::error(e.code()),
    }
}

/// The reply, the file, and for a stable write the change attribute it was recorded at.
async fn write_inner(ctx: &mut Ctx<'_>, a: WriteArgs) -> NfsResult<(WriteResOk, u64, Option<u64>)> {
    let (i, sid) = io_target(ctx, &a.stateid, true).await?;
    let _busy = crate::state::recall::recall_and_wait(&ctx.mds.nfs, &[i.ino], ctx.clientid).await?;
    // Until the write's size is noted below, the evictor keeps off the file (`evicted`).
    let _hold = ctx.mds.data.hold(i.ino).await;
    let len = a.data.len() as u64;
    let end = a
        .offset
        .checked_add(len)
        .filter(|e| *e <= i64::MAX as u64)
        .ok_or(NfsError::FBig)?;
    ctx.mds
        .nfs
        .state
        .check_lock_conflict(&sid, i.ino, a.offset, len.max(1), true)?;
    let stable = a.stable != StableHow4::Unstable4;
    ctx.mds
        .data
        .write_data_owned(i.ino, a.offset, a.data.0, stable)
        .await?;
    // Size and times are noted, and recorded in the log with the data's durability: at once
    // for a stable write, at COMMIT for an unstable one (`namespace::unstable`). As the writer:
    // a write by an unprivileged caller clears set-id bits (`perm::write_kills`).
    let kills = perm::write_kills(&ctx.user, &i);
    ctx.mds
        .ns
        .note_write(i.ino, end, Time::now(), Some(ctx.user.clone()), kills);
    let at = if stable {
        changed_to(ctx.mds.ns.record_writes(i.ino).await?)
    } else {
        None
    };
    let ok = WriteResOk {
        count: len as u32,
        committed: if stable {
            StableHow4::FileSync4
        } else {
            StableHow4::Unstable4
        },
        writeverf: ctx.mds.write_verf,
    };
    Ok((ok, i.ino, at))
}

pub async fn commit(ctx: &mut Ctx<'_>, a: &CommitArgs) -> CommitRes {
    let _ = a;
    let r = async {
        let i = ctx.cur()?;
        if i.kind.is_dir() {
            return Err(NfsError::IsDir);
        }
        if !matches!(i.kind, FileKind::Regular) {
            return Err(NfsError::Inval);
        }
        ctx.mds.data.commit_data(i.ino).await?;
        // The size and times of the writes now durable, durable with them.
        let at = changed_to(ctx.mds.ns.record_writes(i.ino).await?);
        // Past the write-through mark, in the bucket too (`tiering::through`).
        crate::tiering::through::acknowledge(ctx.mds, i.ino, at).await?;
        Ok::<_, NfsError>(())
    }
    .await;
    match r {
        Ok(()) => CommitRes::Ok(CommitResOk {
            writeverf: ctx.mds.write_verf,
        }),
        Err(e) => CommitRes::error(e.code()),
    }
}

/// The change attribute a recording of writes left the file at, if it recorded any.
fn changed_to(recorded: Option<meta::namespace::Outcome>) -> Option<u64> {
    recorded.and_then(|o| o.inode).map(|i| i.change)
}
