//! NFSv4.2 operations: SEEK, ALLOCATE, DEALLOCATE, READ_PLUS, COPY (within the server),
//! CLONE, IO_ADVISE.
use super::io::io_target;
use crate::error::{NfsError, NfsResult};
use crate::nfs::ctx::Ctx;
use chunkstore::{SeekWhat, Segment};
use meta::namespace::{Command, Time};
use proto::nfs4::basic::{StableHow4, Stateid4};
use proto::nfs4::v42::*;
use proto::xdr::Opaque;

pub async fn seek(ctx: &mut Ctx<'_>, a: &SeekArgs) -> SeekRes {
    let r = async {
        let (i, _) = io_target(ctx, &a.sa_stateid, false).await?;
        let what = match a.sa_what {
            0 => SeekWhat::Data,
            1 => SeekWhat::Hole,
            _ => return Err(NfsError::Inval),
        };
        if a.sa_offset >= i.size {
            return Err(NfsError::Nxio);
        }
        match ctx
            .mds
            .data
            .seek_data(i.ino, a.sa_offset, what, i.size)
            .await?
        {
            Some(off) => Ok(SeekResOk {
                sr_eof: false,
                sr_offset: off,
            }),
            // No data after the offset: SEEK_DATA fails with NXIO like lseek(2).
            None if what == SeekWhat::Data => Err(NfsError::Nxio),
            None => Ok(SeekResOk {
                sr_eof: true,
                sr_offset: i.size,
            }),
        }
    }
    .await;
    match r {
        Ok(r) => SeekRes::Ok(r),
        Err(e) => SeekRes::error(e.code()),
    }
}

/// Records a change of `ino`'s data ending at `end` (0: the size stays) as the caller, which
/// also clears set-id bits as Linux's `file_modified` does for fallocate, copy and clone.
async fn grow_to(ctx: &Ctx<'_>, ino: u64, end: u64) -> NfsResult<()> {
    ctx.execute_as(Command::Write {
        ino,
        end_offset: end,
        time: Time::now(),
        writes: 1,
    })
    .await?;
    Ok(())
}

pub async fn allocate(ctx: &mut Ctx<'_>, a: &AllocateArgs) -> NfsResult<()> {
    let (i, _) = io_target(ctx, &a.aa_stateid, true).await?;
    // The evictor keeps off the file until the change is recorded (`evicted`).
    let _hold = ctx.mds.data.hold(i.ino).await;
    let end = a
        .aa_offset
        .checked_add(a.aa_length)
        .ok_or(NfsError::Inval)?;
    ctx.mds
        .data
        .allocate_data(i.ino, a.aa_offset, a.aa_length)
        .await?;
    ctx.mds.data.commit_data(i.ino).await?;
    grow_to(ctx, i.ino, end).await
}

pub async fn deallocate(ctx: &mut Ctx<'_>, a: &DeallocateArgs) -> NfsResult<()> {
    let (i, _) = io_target(ctx, &a.da_stateid, true).await?;
    // The evictor keeps off the file until the change is recorded (`evicted`).
    let _hold = ctx.mds.data.hold(i.ino).await;
    a.da_offset
        .checked_add(a.da_length)
        .ok_or(NfsError::Inval)?;
    ctx.mds
        .data
        .deallocate_data(i.ino, a.da_offset, a.da_length, i.size)
        .await?;
    ctx.mds.data.commit_data(i.ino).await?;
    // Punching a hole changes data: mtime and change move, the size does not.
    grow_to(ctx, i.ino, 0).await
}

pub async fn read_plus(ctx: &mut Ctx<'_>, a: &ReadPlusArgs) -> ReadPlusRes {
    let r = async {
        let (i, sid) = io_target(ctx, &a.rpa_stateid, false).await?;
        let count = a.rpa_count.min(crate::limits::MAX_IO);
        ctx.mds.nfs.state.check_lock_conflict(
            &sid,
            i.ino,
            a.rpa_offset,
            u64::from(count),
            false,
        )?;
        let (segs, eof) = ctx
            .mds
            .data
            .data_segments(i.ino, a.rpa_offset, u64::from(count), i.size)
            .await?;
        let contents = segs
            .into_iter()
            .map(|s| match s {
                Segment::Data { offset, data } => ReadPlusContent::Data(Data4 {
                    d_offset: offset,
                    d_data: Opaque(data),
                }),
                Segment::Hole { offset, len } => ReadPlusContent::Hole(DataInfo4 {
                    di_offset: offset,
                    di_length: len,
                }),
            })
            .collect();
        Ok::<_, NfsError>(ReadPlusResOk {
            rpr_eof: eof,
            rpr_contents: contents,
        })
    }
    .await;
    match r {
        Ok(r) => ReadPlusRes::Ok(r),
        Err(e) => ReadPlusRes::error(e.code()),
    }
}

/// Source and destination of COPY/CLONE: saved and current file handles.
async fn copy_ends(
    ctx: &mut Ctx<'_>,
    src_sid: &Stateid4,
    dst_sid: &Stateid4,
) -> NfsResult<(meta::namespace::Inode, meta::namespace::Inode)> {
    let dst = io_target(ctx, dst_sid, true).await?.0;
    let saved = ctx.sfh.ok_or(NfsError::NoFileHandle)?;
    let cur = ctx.cfh;
    ctx.cfh = Some(saved);
    let src = io_target(ctx, src_sid, false).await;
    ctx.cfh = cur;
    Ok((src?.0, dst))
}

pub async fn copy(ctx: &mut Ctx<'_>, a: &CopyArgs) -> CopyRes {
    if !a.ca_source_server.is_empty() {
        return CopyRes::Err(NfsError::NotSupp.code());
    }
    let r = async {
        let (src, dst) = copy_ends(ctx, &a.ca_src_stateid, &a.ca_dst_stateid).await?;
        if a.ca_src_offset > src.size {
            return Err(NfsError::Inval);
        }
        // count 0 means "to the end of the source".
        let avail = src.size - a.ca_src_offset;
        let count = if a.ca_count == 0 {
            avail
        } else {
            a.ca_count.min(avail)
        };
        copy_range(ctx, &src, a.ca_src_offset, dst.ino, a.ca_dst_offset, count).await?;
        Ok::<_, NfsError>(count)
    }
    .await;
    match r {
        Ok(count) => CopyRes::Ok(CopyResOk {
            cr_response: WriteResponse4 {
                wr_callback_id: Vec::new(),
                wr_count: count,
                wr_committed: StableHow4::FileSync4,
                wr_writeverf: ctx.mds.write_verf,
            },
            cr_requirements: CopyRequirements4 {
                cr_consecutive: true,
                cr_synchronous: true,
            },
        }),
        Err(e) => CopyRes::Err(e.code()),
    }
}

pub async fn clone(ctx: &mut Ctx<'_>, a: &CloneArgs) -> NfsResult<()> {
    let (src, dst) = copy_ends(ctx, &a.cl_src_stateid, &a.cl_dst_stateid).await?;
    let count = if a.cl_count == 0 {
        src.size.saturating_sub(a.cl_src_offset)
    } else {
        a.cl_count
    };
    if a.cl_src_offset
        .checked_add(count)
        .is_none_or(|e| e > src.size)
    {
        return Err(NfsError::Inval);
    }
    copy_range(ctx, &src, a.cl_src_offset, dst.ino, a.cl_dst_offset, count).await
}

/// The bytes of COPY and CLONE: copied durably, then the destination's size and times.
async fn copy_range(
    ctx: &Ctx<'_>,
    src: &meta::namespace::Inode,
    src_off: u64,
    dst: u64,
    dst_off: u64,
    count: u64,
) -> NfsResult<()> {
    let end = dst_off.checked_add(count).ok_or(NfsError::Inval)?;
    // The evictor keeps off both files until the copy is recorded (`evicted`).
    let _holds = (
        ctx.mds.data.hold(src.ino).await,
        ctx.mds.data.hold(dst).await,
    );
    ctx.mds
        .data
        .clone_data(src.ino, src_off, src.size, dst, dst_off, count)
        .await?;
    ctx.mds.data.commit_data(dst).await?;
    grow_to(ctx, dst, end).await
}

/// Hints are advice; none is acted on, and the reply says so with an empty set.
pub async fn io_advise(ctx: &mut Ctx<'_>, a: &IoAdviseArgs) -> IoAdviseRes {
    match io_target(ctx, &a.iaa_stateid, false).await {
        Ok(_) => IoAdviseRes::Ok(IoAdviseResOk {
            ior_hints: Vec::new(),
        }),
        Err(e) => IoAdviseRes::error(e.code()),
    }
}
