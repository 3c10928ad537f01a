//! NFSv3 on shard handles (`layout::shardcap`): READ and GETATTR for the three kinds, and
//! NFS3ERR_ROFS for anything that would change data.
//!
//! - direct(i): READ at file offset o is dense offset `dense_offset(i, o)` of shard i, here;
//!   a READ is cut at the end of its unit (the kernel never sends one across, fact 3 of
//!   docs/EC.md), an offset of another shard is NFS3ERR_INVAL, a corrupt block NFS3ERR_IO (the
//!   kernel then re-sends through the layout's next mirror).
//! - rebuild(i): the same range, rebuilt from k other shards (a whole unit per READ).
//! - assembled: file offsets; each piece (`Geometry::pieces`) read from the shard held here,
//!   else from its server, else rebuilt.

use std::sync::Arc;

use layout::{ShardCap, ShardKind};
use proto::nfs3::*;
use proto::shard::ShardRef;
use proto::xdr::Opaque;

use super::store::ShardHeader;
use super::stripes::{read_any, read_local, rebuild_unit, StripeError};
use crate::server::Shared;

/// Largest READ served, as for file handles.
const MAX_READ: u64 = super::super::nfs3::MAX_READ as u64;

fn base(cap: &ShardCap, index: u32) -> ShardRef {
    ShardRef {
        file: cap.file.0,
        epoch: cap.epoch,
        index,
        k: u32::from(cap.k),
        m: u32::from(cap.m),
        unit_shift: u32::from(cap.unit_shift),
    }
}

fn verify(s: &Shared, fh: &NfsFh3) -> Result<ShardCap, Nfsstat3> {
    layout::verify_shard(fh.data.as_bytes(), &s.cap_key, s.id).map_err(|e| {
        s.counters.refused();
        tracing::debug!("shard handle refused: {e}");
        e.nfsstat3()
    })
}

/// The header that tells this DS about the file's shards for `cap`: for direct, shard i's
/// own; for rebuild and assembled, any shard of the file held here whose placement is the
/// one the handle was minted for (a moved shard makes older handles STALE).
async fn header_for(s: &Shared, cap: &ShardCap) -> Result<ShardHeader, Nfsstat3> {
    let found = match cap.kind {
        ShardKind::Direct(i) => s.shards.held(&base(cap, u32::from(i))).await,
        ShardKind::Rebuild(_) | ShardKind::Assembled => {
            s.shards.all_held(&base(cap, 0)).await.map(|all| {
                all.into_iter()
                    .find(|h| layout::placement_id(&h.placement) == cap.placement)
            })
        }
    };
    match found {
        Ok(Some(h)) => Ok(h),
        Ok(None) => Err(Nfsstat3::Stale),
        Err(e) => {
            tracing::warn!(file = cap.file.0, "shard header: {e}");
            Err(Nfsstat3::Io)
        }
    }
}

fn attrs(s: &Shared, cap: &ShardCap, h: &ShardHeader) -> Fattr3 {
    read_only_attrs(s, cap.file.0, h.file_len, h.sealed_end)
}

/// The attributes a read-only view of file `fileid` answers with (shard and reduced-read
/// handles): what the client needs is the size.
pub(crate) fn read_only_attrs(s: &Shared, fileid: u64, size: u64, used: u64) -> Fattr3 {
    Fattr3 {
        ftype: Ftype3::Reg,
        mode: 0o444,
        nlink: 1,
        uid: 0,
        gid: 0,
        size,
        used,
        rdev: Specdata3::default(),
        fsid: s.id.0,
        fileid,
        atime: Nfstime3::default(),
        mtime: Nfstime3::default(),
        ctime: Nfstime3::default(),
    }
}

pub(crate) async fn getattr(s: &Arc<Shared>, a: Getattr3Args) -> Getattr3Res {
    let cap = match verify(s, &a.object) {
        Ok(c) => c,
        Err(e) => return Getattr3Res::Fail(e.code(), ()),
    };
    match header_for(s, &cap).await {
        Ok(h) => Getattr3Res::Ok(Getattr3ResOk {
            obj_attributes: attrs(s, &cap, &h),
        }),
        Err(e) => Getattr3Res::Fail(e.code(), ()),
    }
}

/// What a write-like procedure on a shard handle gets: ROFS if the handle is authentic (no
/// shard handle ever grants writing), the verification error otherwise.
pub(crate) fn refuse_write(s: &Shared, fh: &NfsFh3) -> Nfsstat3 {
    refuse_verified(s, verify(s, fh))
}

/// ROFS for a write-like procedure on a read-only handle that verified, else its refusal.
pub(crate) fn refuse_verified<T>(s: &Shared, verified: Result<T, Nfsstat3>) -> Nfsstat3 {
    match verified {
        Ok(_) => {
            s.counters.refused();
            Nfsstat3::Rofs
        }
        Err(e) => e,
    }
}

fn io(cap: &ShardCap, e: StripeError) -> Nfsstat3 {
    tracing::warn!(file = cap.file.0, kind = ?cap.kind, "shard read: {e}");
    Nfsstat3::Io
}

/// File bytes `[offset, offset + len)` (inside one unit of data shard `i`) read directly.
async fn direct_piece(
    s: &Arc<Shared>,
    cap: &ShardCap,
    h: &ShardHeader,
    g: &ec::Geometry,
    i: u32,
    offset: u64,
    len: u64,
) -> Result<Vec<u8>, Nfsstat3> {
    let dense = g.dense_offset(i, offset).map_err(|_| Nfsstat3::Inval)?;
    read_local(s, h, g, dense, len)
        .await
        .map_err(|e| io(cap, e))
}

/// The same bytes rebuilt from k other shards.
async fn rebuilt_piece(
    s: &Arc<Shared>,
    cap: &ShardCap,
    h: &ShardHeader,
    g: &ec::Geometry,
    i: u32,
    offset: u64,
    len: u64,
) -> Result<Vec<u8>, Nfsstat3> {
    let at = g.locate(offset);
    if at.shard != i {
        return Err(Nfsstat3::Inval);
    }
    let unit = rebuild_unit(s, &base(cap, 0), &h.placement, g, h.file_len, at.stripe, i)
        .await
        .map_err(|e| io(cap, e))?;
    let from = (offset % g.unit()) as usize;
    let to = (from + len as usize).min(unit.len());
    Ok(unit[from..to].to_vec())
}

/// A piece for an assembled read: held here, else from its server, else rebuilt.
async fn any_piece(
    s: &Arc<Shared>,
    cap: &ShardCap,
    h: &ShardHeader,
    g: &ec::Geometry,
    i: u32,
    offset: u64,
    len: u64,
) -> Result<Vec<u8>, Nfsstat3> {
    let dense = g.dense_offset(i, offset).map_err(|_| Nfsstat3::Inval)?;
    match read_any(s, &base(cap, i), &h.placement, g, dense, len).await {
        Ok(d) => Ok(d),
        Err(e) => {
            tracing::info!(file = cap.file.0, shard = i, "assembled read rebuilds: {e}");
            rebuilt_piece(s, cap, h, g, i, offset, len).await
        }
    }
}

pub(crate) async fn read(s: &Arc<Shared>, a: Read3Args) -> Read3Res {
    let fail = |e: Nfsstat3| Read3Res::Fail(e.code(), Default::default());
    let cap = match verify(s, &a.file) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let h = match header_for(s, &cap).await {
        Ok(h) => h,
        Err(e) => return fail(e),
    };
    let Ok(g) = ec::Geometry::new(u32::from(cap.k), u32::from(cap.m), cap.unit()) else {
        return fail(Nfsstat3::Inval);
    };
    let file_len = h.file_len;
    let count = u64::from(a.count).min(MAX_READ);
    let end = a.offset.saturating_add(count).min(file_len);
    let res = if a.offset >= file_len {
        Ok(Vec::new())
    } else {
        match cap.kind {
            ShardKind::Direct(i) | ShardKind::Rebuild(i) => {
                // one unit at most: the rest of the READ belongs to other shards
                let len = (end - a.offset).min(g.unit() - a.offset % g.unit());
                if matches!(cap.kind, ShardKind::Direct(_)) {
                    direct_piece(s, &cap, &h, &g, u32::from(i), a.offset, len).await
                } else {
                    rebuilt_piece(s, &cap, &h, &g, u32::from(i), a.offset, len).await
                }
            }
            ShardKind::Assembled => {
                let mut out = Vec::with_capacity((end - a.offset) as usize);
                let mut r = Ok(());
                for p in g.pieces(a.offset, end - a.offset) {
                    match any_piece(s, &cap, &h, &g, p.at.shard, p.offset, p.len).await {
                        Ok(d) => out.extend_from_slice(&d),
                        Err(e) => {
                            r = Err(e);
                            break;
                        }
                    }
                }
                r.map(|()| out)
            }
        }
    };
    match res {
        Ok(data) => {
            s.counters.read(data.len() as u64);
            Read3Res::Ok(Read3ResOk {
                file_attributes: Some(attrs(s, &cap, &h)),
                count: data.len() as u32,
                eof: a.offset.saturating_add(data.len() as u64) >= file_len,
                data: Opaque(data),
            })
        }
        Err(e) => fail(e),
    }
}
