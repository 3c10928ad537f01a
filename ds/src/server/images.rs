//! A snapshot's data image of a mirrored file on this data server (docs/plans/snapshots.md
//! §3.2): the shard program's LINK makes object X share every chunk of the file's object by
//! hard links, and OBJSTAT tells how much of an object is shared that way. The chunk store
//! copies a shared chunk before any change, so X keeps the bytes of the moment of the link
//! whatever is done to the file after it.
//!
//! Both are MACed with the cluster secret like the other shard procedures, and checked before
//! anything is read or touched. Only file objects (ids below 2^63) are named: a shard object
//! (top bit set, `shards::shard_object_id`) has its own header and life, and a LINK must never
//! reach one.

use proto::shard::{
    LinkArgs, ObjStat, ObjStatArgs, ObjStatRes, ShardRes, Signed, SHARD_ERR_AUTH, SHARD_ERR_INVAL,
    SHARD_ERR_IO,
};

use super::Shared;

/// Ids at or above this are shard objects, never a file's.
const SHARD_OBJECTS: u64 = 1 << 63;

fn authentic<A: Signed>(s: &Shared, a: &A) -> bool {
    a.to() == s.id.0 && s.cfg.secret.shard_authentic(a)
}

pub(crate) async fn link(s: &Shared, a: LinkArgs) -> ShardRes {
    if !authentic(s, &a) {
        tracing::debug!(from = a.from_file, to = a.to_file, "LINK refused: MAC");
        return ShardRes::Err(SHARD_ERR_AUTH);
    }
    if a.from_file >= SHARD_OBJECTS || a.to_file >= SHARD_OBJECTS || a.from_file == a.to_file {
        return ShardRes::Err(SHARD_ERR_INVAL);
    }
    match s.objects.link(a.from_file, a.to_file).await {
        Ok(st) => {
            tracing::debug!(from = a.from_file, to = a.to_file, size = st.hwm, "linked");
            ShardRes::Ok
        }
        Err(e) => {
            tracing::warn!(from = a.from_file, to = a.to_file, "LINK: {e}");
            ShardRes::Err(SHARD_ERR_IO)
        }
    }
}

pub(crate) async fn obj_stat(s: &Shared, a: ObjStatArgs) -> ObjStatRes {
    if !authentic(s, &a) {
        return ObjStatRes::Err(SHARD_ERR_AUTH);
    }
    if a.file >= SHARD_OBJECTS {
        return ObjStatRes::Err(SHARD_ERR_INVAL);
    }
    let size = match s.objects.state(a.file).await {
        Ok(st) => st.hwm,
        Err(e) => {
            tracing::warn!(file = a.file, "OBJSTAT: {e}");
            return ObjStatRes::Err(SHARD_ERR_IO);
        }
    };
    match s.objects.store().object_stat(a.file).await {
        Ok(st) => ObjStatRes::Ok(ObjStat {
            size,
            chunks: st.chunks,
            bytes: st.bytes,
            shared_chunks: st.shared_chunks,
            shared_bytes: st.shared_bytes,
        }),
        Err(e) => {
            tracing::warn!(file = a.file, "OBJSTAT: {e}");
            ObjStatRes::Err(SHARD_ERR_IO)
        }
    }
}
