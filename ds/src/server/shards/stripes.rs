//! Reading dense shard ranges, here or from the data server that holds them, and rebuilding a
//! unit of one shard from k others: what rebuild and assembled reads and the repair job share.
//!
//! Peers are read with the shard program's GET (dense offsets, data and parity alike), not
//! NFSv3 READ on direct handles: parity shards have no file offsets, and GET checks the same
//! cluster-secret MAC without minting a handle per peer.

use std::net::SocketAddr;
use std::sync::Arc;

use proto::shard::{GetArgs, ShardRef, ShardServer, MAX_SHARD_IO};
use thiserror::Error;

use super::store::{object_id, ShardHeader};
use crate::server::Shared;
use crate::DsError;

#[derive(Debug, Error)]
pub(crate) enum StripeError {
    #[error("storage: {0}")]
    Store(#[from] DsError),
    #[error("shard header: {0}")]
    Header(#[from] std::io::Error),
    #[error("data server {0}: {1}")]
    Peer(String, String),
    #[error("shard {0} came back short")]
    Short(u32),
    #[error("codec: {0}")]
    Codec(#[from] ec::CodecError),
    #[error("only {got} of the {k} shards a rebuild needs are readable")]
    Lost { got: u32, k: u32 },
    #[error("the placement does not name shard {0} or its address is unusable")]
    Placement(u32),
}

/// Dense bytes shard `j` holds in stripe `stripe` of a file of `file_len` bytes (0 where the
/// file ends before it: those bytes are zeros for the codec and never stored).
pub(crate) fn stripe_shard_len(g: &ec::Geometry, file_len: u64, stripe: u64, j: u32) -> u64 {
    let start = stripe.saturating_mul(g.stripe_data());
    let n = file_len.saturating_sub(start).min(g.stripe_data());
    if j < g.k() {
        n.saturating_sub(u64::from(j) * g.unit()).min(g.unit())
    } else {
        n.min(g.unit())
    }
}

/// Dense `[offset, offset + len)` of a shard held here, short past what is servable. The
/// chunk store checks every 4 KiB block it returns against its blake3.
pub(crate) async fn read_local(
    s: &Shared,
    h: &ShardHeader,
    g: &ec::Geometry,
    offset: u64,
    len: u64,
) -> Result<Vec<u8>, StripeError> {
    let id = object_id(h.shard.file, h.shard.epoch, h.shard.index);
    let (data, _) = s
        .objects
        .store()
        .read(id, offset, len, h.servable_len(g))
        .await?;
    Ok(data)
}

fn peer_addr(placement: &[ShardServer], index: u32) -> Result<(u64, SocketAddr), StripeError> {
    let srv = placement
        .get(index as usize)
        .ok_or(StripeError::Placement(index))?;
    let addr = srv
        .addr
        .parse()
        .map_err(|_| StripeError::Placement(index))?;
    Ok((srv.ds_id, addr))
}

/// Dense `[offset, offset + len)` of shard `r`: from here if held, else from the data server
/// the placement names for it. Exactly `len` bytes or an error.
pub(crate) async fn read_any(
    s: &Arc<Shared>,
    r: &ShardRef,
    placement: &[ShardServer],
    g: &ec::Geometry,
    offset: u64,
    len: u64,
) -> Result<Vec<u8>, StripeError> {
    let data = if let Some(h) = s.shards.held(r).await? {
        read_local(s, &h, g, offset, len).await?
    } else {
        let (ds_id, addr) = peer_addr(placement, r.index)?;
        if ds_id == s.id.0 {
            // the placement says we hold it, and we do not (wiped, or not yet repaired)
            return Err(StripeError::Placement(r.index));
        }
        let peer = |e: String| StripeError::Peer(addr.to_string(), e);
        let c = s.peers.get(addr).await.map_err(|e| peer(e.to_string()))?;
        let mut out = Vec::with_capacity(len as usize);
        while (out.len() as u64) < len {
            let want = (len - out.len() as u64).min(MAX_SHARD_IO as u64) as u32;
            let args = s.cfg.secret.sign_shard(GetArgs {
                to: ds_id,
                shard: *r,
                offset: offset + out.len() as u64,
                count: want,
                mac: [0; 32],
            });
            match c.get(&args).await {
                Ok(d) if d.is_empty() => break,
                Ok(d) => out.extend_from_slice(&d[..d.len().min(want as usize)]),
                Err(e) => {
                    if e.code().is_none() {
                        s.peers.forget(addr);
                    }
                    return Err(peer(e.to_string()));
                }
            }
        }
        out
    };
    if (data.len() as u64) < len {
        return Err(StripeError::Short(r.index));
    }
    Ok(data)
}

/// Rebuilds unit `stripe` of shard `want` (data or parity) from k other shards of the file,
/// read here or from their servers; returns the whole unit, zero padded. Shards the file does
/// not reach in this stripe are zeros and cost no read; the others are read k at a time, a
/// failed one replaced by the next (data shards first: they are the cheapest to decode from).
pub(crate) async fn rebuild_unit(
    s: &Arc<Shared>,
    base: &ShardRef,
    placement: &[ShardServer],
    g: &ec::Geometry,
    file_len: u64,
    stripe: u64,
    want: u32,
) -> Result<Vec<u8>, StripeError> {
    let (k, width, unit) = (g.k(), g.width(), g.unit() as usize);
    let mut have: Vec<Option<Vec<u8>>> = vec![None; width as usize];
    let mut present = 0u32;
    let mut candidates = Vec::new();
    for j in (0..width).filter(|&j| j != want) {
        if stripe_shard_len(g, file_len, stripe, j) == 0 {
            have[j as usize] = Some(vec![0; unit]);
            present += 1;
        } else {
            candidates.push(j);
        }
    }
    let mut next = 0;
    while present < k {
        let need = (k - present) as usize;
        if next >= candidates.len() {
            return Err(StripeError::Lost { got: present, k });
        }
        let batch: Vec<u32> = candidates[next..(next + need).min(candidates.len())].to_vec();
        next += batch.len();
        let mut set = tokio::task::JoinSet::new();
        for j in batch {
            let (s, placement, g) = (s.clone(), placement.to_vec(), *g);
            let r = ShardRef { index: j, ..*base };
            let len = stripe_shard_len(&g, file_len, stripe, j);
            set.spawn(async move {
                let off = stripe * g.unit();
                (j, read_any(&s, &r, &placement, &g, off, len).await)
            });
        }
        while let Some(done) = set.join_next().await {
            let Ok((j, res)) = done else { continue };
            match res {
                Ok(mut d) => {
                    d.resize(unit, 0);
                    have[j as usize] = Some(d);
                    present += 1;
                }
                Err(e) => tracing::debug!(file = base.file, shard = j, "shard unreadable: {e}"),
            }
        }
    }
    let lost: Vec<usize> = (0..width as usize).filter(|&j| have[j].is_none()).collect();
    let mut full: Vec<Vec<u8>> = have
        .into_iter()
        .map(|x| x.unwrap_or_else(|| vec![0; unit]))
        .collect();
    let g = *g;
    tokio::task::spawn_blocking(move || -> Result<Vec<u8>, StripeError> {
        let mut d = ec::Decoder::new(g)?;
        d.reconstruct_lost(&mut full, &lost)?;
        Ok(full.swap_remove(want as usize))
    })
    .await
    .map_err(|e| StripeError::Header(std::io::Error::other(e)))?
}
