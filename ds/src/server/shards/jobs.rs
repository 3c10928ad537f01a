//! The encode job and the repair job, run by a data server when the MDS asks (shard program
//! ENCODE and REPAIR). Data moves data server to data server, never through the MDS.

use std::sync::Arc;

use proto::shard::*;

use super::store::{geometry, object_id};
use super::stripes::{rebuild_unit, stripe_shard_len, StripeError};
use crate::server::Shared;
use crate::DsError;

/// The largest range one job takes: a group is one chunk (16 MiB by default); this leaves room
/// for larger chunk sizes while bounding a job's run time.
const MAX_JOB_LEN: u64 = 1 << 30;

/// Checks a placement against a geometry: one entry per shard, all on distinct servers.
fn placement_ok(p: &[ShardServer], g: &ec::Geometry) -> bool {
    let mut ids: Vec<u64> = p.iter().map(|s| s.ds_id).collect();
    ids.sort_unstable();
    ids.dedup();
    p.len() == g.width() as usize && ids.len() == p.len()
}

fn job_range_ok(g: &ec::Geometry, offset: u64, len: u64, file_len: u64) -> bool {
    len > 0
        && len <= MAX_JOB_LEN
        && offset.is_multiple_of(g.stripe_data())
        && offset.checked_add(len).is_some_and(|end| end <= file_len)
}

fn code_of(e: &StripeError) -> u32 {
    match e {
        StripeError::Lost { .. } => SHARD_ERR_LOST,
        StripeError::Placement(_) => SHARD_ERR_INVAL,
        StripeError::Peer(..) => SHARD_ERR_PEER,
        _ => SHARD_ERR_IO,
    }
}

/// ENCODE: reads `[offset, offset + len)` of the file's local mirror copy (every block checked
/// by the chunk store), encodes it stripe by stripe, PUTs each shard's bytes to its server
/// (stable), then SEALs each shard with its blake3 (the receiver re-reads and checks it).
/// Returns the shard sums, shard 0 first. Shards are sent k+m at a time, one unit each.
pub(crate) async fn encode(s: &Arc<Shared>, a: &EncodeArgs) -> Result<Vec<[u8; 32]>, u32> {
    let base = ShardRef {
        file: a.file,
        epoch: a.epoch,
        index: 0,
        k: a.k,
        m: a.m,
        unit_shift: a.unit_shift,
    };
    let g = geometry(&base).ok_or(SHARD_ERR_INVAL)?;
    if !placement_ok(&a.placement, &g) || !job_range_ok(&g, a.offset, a.len, a.file_len) {
        return Err(SHARD_ERR_INVAL);
    }
    let hwm = s.objects.state(a.file).await.map_err(|_| SHARD_ERR_IO)?.hwm;
    if hwm < a.offset + a.len {
        return Err(SHARD_ERR_NOENT);
    }
    let width = g.width() as usize;
    let unit = g.unit();
    let first_stripe = a.offset / g.stripe_data();
    let dense_base = first_stripe * unit;
    let mut clients = Vec::with_capacity(width);
    for srv in &a.placement {
        let addr = srv.addr.parse().map_err(|_| SHARD_ERR_INVAL)?;
        clients.push(s.peers.get(addr).await.map_err(|e| {
            tracing::warn!(file = a.file, %addr, "encode: shard server unreachable: {e}");
            SHARD_ERR_PEER
        })?);
    }
    let mut hashers: Vec<blake3::Hasher> = (0..width).map(|_| blake3::Hasher::new()).collect();
    let mut lens = vec![0u64; width];
    let mut encoder = Some(ec::Encoder::new(g).map_err(|_| SHARD_ERR_INVAL)?);
    let mut inflight: Option<Puts> = None;
    for n in 0..g.stripes(a.len) {
        let stripe = first_stripe + n;
        let start = stripe * g.stripe_data();
        let bytes = g.stripe_data().min(a.offset + a.len - start);
        let mut data = Vec::with_capacity(bytes as usize);
        let mut at = start;
        while at < start + bytes {
            let piece = unit.min(start + bytes - at);
            let (d, _) = s
                .objects
                .store()
                .read(a.file, at, piece, hwm)
                .await
                .map_err(|e| {
                    tracing::warn!(file = a.file, "encode: source unreadable: {e}");
                    SHARD_ERR_IO
                })?;
            data.extend_from_slice(&d);
            at += piece;
        }
        let mut enc = encoder.take().ok_or(SHARD_ERR_IO)?;
        let (enc, st) = tokio::task::spawn_blocking(move || {
            let st = enc.encode(&data);
            (enc, st)
        })
        .await
        .map_err(|_| SHARD_ERR_IO)?;
        encoder = Some(enc);
        let st = st.map_err(|_| SHARD_ERR_IO)?;
        let mut set: Puts = tokio::task::JoinSet::new();
        for (i, mut shard) in st.shards.into_iter().enumerate() {
            // what shard i holds of this stripe: parity past the data is zero, not stored
            let len = stripe_shard_len(&g, a.offset + a.len, stripe, i as u32);
            shard.truncate(len as usize);
            hashers[i].update(&shard);
            lens[i] += len;
            if len == 0 {
                continue;
            }
            let (c, s, srv) = (clients[i].clone(), s.clone(), a.placement[i].clone());
            let r = ShardRef {
                index: i as u32,
                ..base
            };
            let dense = stripe * unit;
            set.spawn(async move {
                let mut off = 0usize;
                while off < shard.len() {
                    let end = (off + MAX_SHARD_IO).min(shard.len());
                    let args = s.cfg.secret.sign_shard(PutArgs {
                        to: srv.ds_id,
                        shard: r,
                        offset: dense + off as u64,
                        data: proto::xdr::Opaque(shard[off..end].to_vec()),
                        mac: [0; 32],
                    });
                    c.put(&args).await.map_err(|e| (srv.addr.clone(), e))?;
                    off = end;
                }
                Ok::<_, (String, ShardCallError)>(())
            });
        }
        // One stripe's PUTs in flight while the next is read and encoded.
        if let Some(prev) = inflight.replace(set) {
            wait_puts(a.file, prev).await?;
        }
    }
    if let Some(prev) = inflight.take() {
        wait_puts(a.file, prev).await?;
    }
    let sums: Vec<[u8; 32]> = hashers.iter().map(|h| *h.finalize().as_bytes()).collect();
    for (i, c) in clients.iter().enumerate() {
        let args = s.cfg.secret.sign_shard(SealArgs {
            to: a.placement[i].ds_id,
            shard: ShardRef {
                index: i as u32,
                ..base
            },
            file_len: a.file_len,
            offset: dense_base,
            len: lens[i],
            sum: sums[i],
            placement: a.placement.clone(),
            mac: [0; 32],
        });
        c.seal(&args).await.map_err(|e| {
            tracing::warn!(file = a.file, shard = i, "encode: seal failed: {e}");
            e.code().unwrap_or(SHARD_ERR_PEER)
        })?;
    }
    Ok(sums)
}

type Puts = tokio::task::JoinSet<Result<(), (String, ShardCallError)>>;

async fn wait_puts(file: u64, mut set: Puts) -> Result<(), u32> {
    while let Some(done) = set.join_next().await {
        match done {
            Ok(Ok(())) => {}
            Ok(Err((addr, e))) => {
                tracing::warn!(file, %addr, "encode: shard write failed: {e}");
                return Err(SHARD_ERR_PEER);
            }
            Err(_) => return Err(SHARD_ERR_IO),
        }
    }
    Ok(())
}

/// REPAIR: rebuilds shard `a.shard.index` for file bytes `[offset, offset + len)` here, unit
/// by unit from k other shards, checks the rebuilt bytes' blake3 against `expected` (the sum
/// the MDS recorded at encode time: an end-to-end proof), and only then writes and seals it.
pub(crate) async fn repair(s: &Arc<Shared>, a: &RepairArgs) -> Result<[u8; 32], u32> {
    let g = geometry(&a.shard).ok_or(SHARD_ERR_INVAL)?;
    let i = a.shard.index;
    if !placement_ok(&a.placement, &g)
        || !job_range_ok(&g, a.offset, a.len, a.file_len)
        || a.placement[i as usize].ds_id != s.id.0
    {
        return Err(SHARD_ERR_INVAL);
    }
    let first_stripe = a.offset / g.stripe_data();
    let end = a.offset + a.len;
    let mut rebuilt = Vec::new();
    let mut hasher = blake3::Hasher::new();
    let mut pace = crate::server::scrub::Pace::new(s.cfg.scrub.repair_bytes_per_second);
    for stripe in first_stripe..first_stripe + g.stripes(a.len) {
        let mut unit = rebuild_unit(s, &a.shard, &a.placement, &g, a.file_len, stripe, i)
            .await
            .map_err(|e| {
                tracing::warn!(file = a.shard.file, shard = i, "repair: {e}");
                code_of(&e)
            })?;
        unit.truncate(stripe_shard_len(&g, end, stripe, i) as usize);
        hasher.update(&unit);
        pace.done(u64::from(g.k()) * unit.len() as u64).await;
        rebuilt.push(unit);
    }
    let sum = *hasher.finalize().as_bytes();
    if blake3::Hash::from_bytes(sum) != blake3::Hash::from_bytes(a.expected) {
        tracing::warn!(
            file = a.shard.file,
            shard = i,
            "repair: the rebuilt shard does not match the recorded sum"
        );
        return Err(SHARD_ERR_SUM);
    }
    let id = object_id(a.shard.file, a.shard.epoch, i);
    let dense_base = first_stripe * g.unit();
    let mut at = dense_base;
    let total: u64 = rebuilt.iter().map(|u| u.len() as u64).sum();
    for unit in rebuilt {
        let n = unit.len() as u64;
        s.objects
            .store()
            .write_owned(id, at, unit.into(), false)
            .await
            .map_err(|e: DsError| {
                tracing::warn!(file = a.shard.file, shard = i, "repair: write: {e}");
                SHARD_ERR_IO
            })?;
        at += n;
    }
    s.objects.store().commit(id).await.map_err(|e| {
        tracing::warn!(file = a.shard.file, shard = i, "repair: commit: {e}");
        SHARD_ERR_IO
    })?;
    let sealed = s
        .shards
        .seal(&a.shard, a.file_len, dense_base, total, a.placement.clone())
        .await
        .map_err(|_| SHARD_ERR_IO)?;
    if !sealed {
        return Err(SHARD_ERR_INVAL);
    }
    // The range is rewritten and checked: a bad block recorded in it is gone. (A repair covers
    // a whole encode group, and the MDS repairs every group it marked bad.)
    if let Err(e) = s.bad.forget(id, 0).await {
        tracing::warn!(
            file = a.shard.file,
            shard = i,
            "repair: cannot drop the bad-block record: {e}"
        );
    }
    Ok(sum)
}
