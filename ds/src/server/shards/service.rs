//! The shard program (`proto::shard`) on the data server's port: one function per procedure.
//! Every call is checked for its MAC and its addressee before anything is touched.

use std::sync::Arc;

use proto::rpc::{accepted_reply, AcceptStat, Auth, Call};
use proto::shard::*;
use proto::xdr::{Opaque, Writer, Xdr};

use super::store::{geometry, object_id};
use super::{jobs, stripes};
use crate::server::{images, Shared};

/// Dense offsets beyond this are refused: 2^50 bytes of one shard is past any file we hold.
const MAX_DENSE: u64 = 1 << 50;

fn authentic<A: Signed>(s: &Shared, a: &A) -> bool {
    a.to() == s.id.0 && s.cfg.secret.shard_authentic(a)
}

/// Serves one call of the shard program.
pub(crate) async fn handle(s: &Arc<Shared>, call: Call) -> Option<Writer> {
    let stat = |st| Some(accepted_reply(call.xid, &Auth::None, st));
    if call.vers != CFS_SHARD_V1 {
        return stat(AcceptStat::ProgMismatch {
            low: CFS_SHARD_V1,
            high: CFS_SHARD_V1,
        });
    }
    let args = call.args();
    let reply = match call.proc_ {
        SHARDPROC_NULL => Some(Vec::new()),
        SHARDPROC_PUT => match PutArgs::from_xdr(args) {
            Ok(a) => Some(put(s, a).await.to_xdr()),
            Err(_) => None,
        },
        SHARDPROC_SEAL => match SealArgs::from_xdr(args) {
            Ok(a) => Some(seal(s, a).await.to_xdr()),
            Err(_) => None,
        },
        SHARDPROC_GET => match GetArgs::from_xdr(args) {
            Ok(a) => Some(get(s, a).await.to_xdr()),
            Err(_) => None,
        },
        SHARDPROC_ENCODE => match EncodeArgs::from_xdr(args) {
            Ok(a) if !authentic(s, &a) => Some(EncodeRes::Err(SHARD_ERR_AUTH).to_xdr()),
            Ok(a) => Some(
                match jobs::encode(s, &a).await {
                    Ok(sums) => EncodeRes::Ok(sums),
                    Err(c) => EncodeRes::Err(c),
                }
                .to_xdr(),
            ),
            Err(_) => None,
        },
        SHARDPROC_REPAIR => match RepairArgs::from_xdr(args) {
            Ok(a) if !authentic(s, &a) => Some(RepairRes::Err(SHARD_ERR_AUTH).to_xdr()),
            Ok(a) => Some(
                match jobs::repair(s, &a).await {
                    Ok(sum) => RepairRes::Ok(sum),
                    Err(c) => RepairRes::Err(c),
                }
                .to_xdr(),
            ),
            Err(_) => None,
        },
        SHARDPROC_PLACE => match PlaceArgs::from_xdr(args) {
            Ok(a) => Some(place(s, a).await.to_xdr()),
            Err(_) => None,
        },
        SHARDPROC_DROP => match DropArgs::from_xdr(args) {
            Ok(a) => Some(drop_epoch(s, a).await.to_xdr()),
            Err(_) => None,
        },
        // A file's own object, not shards (a snapshot's data image): `server::images`.
        SHARDPROC_LINK => match LinkArgs::from_xdr(args) {
            Ok(a) => Some(images::link(s, a).await.to_xdr()),
            Err(_) => None,
        },
        SHARDPROC_OBJSTAT => match ObjStatArgs::from_xdr(args) {
            Ok(a) => Some(images::obj_stat(s, a).await.to_xdr()),
            Err(_) => None,
        },
        _ => return stat(AcceptStat::ProcUnavail),
    };
    let Some(body) = reply else {
        tracing::debug!(xid = call.xid, proc_ = call.proc_, "undecodable shard call");
        return stat(AcceptStat::GarbageArgs);
    };
    let mut w = accepted_reply(call.xid, &Auth::None, AcceptStat::Success);
    w.fixed_opaque(&body);
    Some(w)
}

async fn put(s: &Shared, a: PutArgs) -> ShardRes {
    if !authentic(s, &a) {
        return ShardRes::Err(SHARD_ERR_AUTH);
    }
    if geometry(&a.shard).is_none() || a.offset.saturating_add(a.data.0.len() as u64) > MAX_DENSE {
        return ShardRes::Err(SHARD_ERR_INVAL);
    }
    let id = object_id(a.shard.file, a.shard.epoch, a.shard.index);
    // Shard bytes land in the store mirrors use, so they count against the flash the tier lets
    // this data server fill (`server::flash`): an encode or repair that does not fit fails
    // here and is tried again by its next pass, rather than pushing flash past its capacity.
    let len = a.data.0.len() as u64;
    let Some(_room) = s.flash.admit_background(s.objects.store(), a.offset, len) else {
        tracing::debug!(
            file = a.shard.file,
            shard = a.shard.index,
            "shard PUT refused: flash full"
        );
        return ShardRes::Err(SHARD_ERR_IO);
    };
    // Unstable: SEAL commits the shard before it checks and records it, and nothing is
    // acknowledged to the MDS before every SEAL succeeded. A PUT that is lost in a crash reads
    // back as zeros and fails SEAL's sum. (A stable PUT per unit measured 115 MiB/s of file
    // data for the whole encode job, 4+2 at 1 MiB, six fsyncs per stripe.)
    match s
        .objects
        .store()
        .write_owned(id, a.offset, a.data.0.into(), false)
        .await
    {
        Ok(()) => ShardRes::Ok,
        Err(e) => {
            tracing::warn!(file = a.shard.file, shard = a.shard.index, "shard PUT: {e}");
            ShardRes::Err(SHARD_ERR_IO)
        }
    }
}

/// Re-reads the range just written (every block through the chunk store's checksums), compares
/// its blake3 with the sender's, and only then records the shard as servable.
async fn seal(s: &Shared, a: SealArgs) -> ShardRes {
    if !authentic(s, &a) {
        return ShardRes::Err(SHARD_ERR_AUTH);
    }
    let Some(g) = geometry(&a.shard) else {
        return ShardRes::Err(SHARD_ERR_INVAL);
    };
    let me = a.placement.get(a.shard.index as usize).map(|p| p.ds_id);
    if a.placement.len() != g.width() as usize
        || me != Some(s.id.0)
        || a.offset.saturating_add(a.len) > MAX_DENSE
    {
        return ShardRes::Err(SHARD_ERR_INVAL);
    }
    let id = object_id(a.shard.file, a.shard.epoch, a.shard.index);
    if let Err(e) = s.objects.store().commit(id).await {
        tracing::warn!(
            file = a.shard.file,
            shard = a.shard.index,
            "shard SEAL: commit: {e}"
        );
        return ShardRes::Err(SHARD_ERR_IO);
    }
    let end = a.offset + a.len;
    let mut h = blake3::Hasher::new();
    let mut at = a.offset;
    while at < end {
        let n = (end - at).min(16 << 20);
        match s.objects.store().read(id, at, n, end).await {
            Ok((d, _)) if d.len() as u64 == n => {
                h.update(&d);
            }
            Ok(_) => return ShardRes::Err(SHARD_ERR_SUM),
            Err(e) => {
                tracing::warn!(
                    file = a.shard.file,
                    shard = a.shard.index,
                    "shard SEAL: {e}"
                );
                return ShardRes::Err(SHARD_ERR_IO);
            }
        }
        at += n;
    }
    if h.finalize() != blake3::Hash::from_bytes(a.sum) {
        return ShardRes::Err(SHARD_ERR_SUM);
    }
    match s
        .shards
        .seal(&a.shard, a.file_len, a.offset, a.len, a.placement)
        .await
    {
        Ok(true) => ShardRes::Ok,
        Ok(false) => ShardRes::Err(SHARD_ERR_INVAL),
        Err(e) => {
            tracing::warn!(file = a.shard.file, "shard SEAL: header: {e}");
            ShardRes::Err(SHARD_ERR_IO)
        }
    }
}

async fn get(s: &Shared, a: GetArgs) -> GetRes {
    if !authentic(s, &a) {
        return GetRes::Err(SHARD_ERR_AUTH);
    }
    let Some(g) = geometry(&a.shard) else {
        return GetRes::Err(SHARD_ERR_INVAL);
    };
    let h = match s.shards.held(&a.shard).await {
        Ok(Some(h)) => h,
        Ok(None) => return GetRes::Err(SHARD_ERR_NOENT),
        Err(e) => {
            tracing::warn!(file = a.shard.file, "shard GET: header: {e}");
            return GetRes::Err(SHARD_ERR_IO);
        }
    };
    let count = u64::from(a.count).min(MAX_SHARD_IO as u64);
    match stripes::read_local(s, &h, &g, a.offset, count).await {
        Ok(d) => GetRes::Ok(Opaque(d)),
        Err(e) => {
            tracing::warn!(file = a.shard.file, shard = a.shard.index, "shard GET: {e}");
            GetRes::Err(SHARD_ERR_IO)
        }
    }
}

async fn place(s: &Shared, a: PlaceArgs) -> ShardRes {
    if !authentic(s, &a) {
        return ShardRes::Err(SHARD_ERR_AUTH);
    }
    match s.shards.place(a.file, a.epoch, a.placement).await {
        Ok(0) => ShardRes::Err(SHARD_ERR_NOENT),
        Ok(_) => ShardRes::Ok,
        Err(e) => {
            tracing::warn!(file = a.file, "shard PLACE: {e}");
            ShardRes::Err(SHARD_ERR_IO)
        }
    }
}

/// Headers first (nothing is served from then on), then the bytes; both durable on return.
async fn drop_epoch(s: &Shared, a: DropArgs) -> ShardRes {
    if !authentic(s, &a) {
        return ShardRes::Err(SHARD_ERR_AUTH);
    }
    let ids = match s.shards.forget_epoch(a.file, a.epoch).await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::warn!(file = a.file, "shard DROP: {e}");
            return ShardRes::Err(SHARD_ERR_IO);
        }
    };
    for id in ids {
        if let Err(e) = s.objects.store().remove(id).await {
            tracing::warn!(file = a.file, "shard DROP: {e}");
            return ShardRes::Err(SHARD_ERR_IO);
        }
    }
    ShardRes::Ok
}
