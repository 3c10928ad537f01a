//! The segments of data reduction (issue 46) on the data servers: each segment is stored as
//! one Reed-Solomon stripe (k+m shards, one per data server of its placement) through the
//! shard program, the way the encode job stores a file's shards, and read back through an
//! assembling data server of its placement, which rebuilds a missing shard.
//!
//! Names. A segment's shards are those of a shard set `(file, epoch)` of the shard program,
//! `file` a hash of the segment id and the referrer that stored it (`origin`), top bit set so
//! it is never an inode number, and `epoch` the origin's epoch. The origin is in the name
//! because a segment id is a content hash: the same segment may be stored again (its record
//! `Dying`, a chunk of it found nowhere else) while the deleting pass removes the dying copy,
//! and two copies under one name would let that pass delete the new copy's bytes.
//!
//! Geometry. (k, m) follows the placement's width, as for files (`jobs::geometry_for`: 2+1
//! on three data servers, 4+2 from six), and the unit is the smallest power of two (at least
//! 4 KiB) with which the segment fits one stripe: a 2 MiB segment at 4+2 has 512 KiB units,
//! so it costs 1.5 times its size, where a 1 MiB unit would cost twice (parity of a stripe
//! half empty). Both follow from what the index records (placement, stored length), so the
//! record needs no geometry of its own.
use std::time::Duration;

use layout::{DsId, FileId, ShardCap, ShardKind};
use meta::namespace::reduce_index::{Referrer, SegmentId};
use proto::shard::{GetArgs, PutArgs, SealArgs, ShardRef, MAX_SHARD_IO};

use super::Cluster;
use crate::error::{NfsError, NfsResult};

/// A PUT or SEAL of one shard of at most a few MiB.
const SHARD_CALL: Duration = Duration::from_secs(30);

/// Where a stored segment's shards are: the shard program's `(file, epoch)` and placement,
/// and the segment's stored length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SegmentPlace {
    pub file: u64,
    pub epoch: u64,
    pub placement: Vec<u64>,
    pub stored_len: u64,
}

impl SegmentPlace {
    pub(crate) fn new(id: &SegmentId, origin: Referrer, placement: Vec<u64>, len: u64) -> Self {
        SegmentPlace {
            file: segment_file(id, origin),
            epoch: origin.epoch,
            placement,
            stored_len: len,
        }
    }

    /// The stripe geometry: (k, m, unit shift); `None` for a width no encoding uses or a
    /// segment too large for one stripe.
    fn geometry(&self) -> Option<(u8, u8, u8)> {
        let (k, m) = super::jobs::geometry_for(self.placement.len())
            .filter(|(k, m)| usize::from(k + m) == self.placement.len())?;
        let per_shard = self.stored_len.div_ceil(u64::from(k)).max(1 << 12);
        let shift = per_shard.next_power_of_two().trailing_zeros();
        (shift <= 26).then_some((k, m, shift as u8))
    }

    /// The stripe's k + m shards of `bytes` (this segment's stored bytes), each cut to what
    /// its data server holds.
    fn shards(&self, bytes: &[u8]) -> NfsResult<Vec<Vec<u8>>> {
        let (g, _) = self.ec()?;
        if bytes.len() as u64 != self.stored_len {
            return Err(NfsError::ServerFault);
        }
        let mut enc = ec::Encoder::new(g).map_err(|_| NfsError::ServerFault)?;
        let stripe = enc.encode(bytes).map_err(|_| NfsError::ServerFault)?;
        Ok(stripe
            .shards
            .into_iter()
            .enumerate()
            .map(|(i, mut shard)| {
                shard.truncate(shard_len(&g, self.stored_len, i as u32) as usize);
                shard
            })
            .collect())
    }

    /// The blake3 of each shard of `bytes` as its data server seals it: what a shard
    /// rebuilt from the others must hash to (`segment_repair`).
    pub(crate) fn shard_sums(&self, bytes: &[u8]) -> NfsResult<Vec<[u8; 32]>> {
        Ok(self
            .shards(bytes)?
            .iter()
            .map(|s| *blake3::hash(s).as_bytes())
            .collect())
    }

    /// Shard `index`'s name and geometry in the shard program.
    pub(crate) fn shard_ref(&self, index: u32) -> NfsResult<ShardRef> {
        Ok(ShardRef {
            index,
            ..self.ec()?.1
        })
    }

    fn ec(&self) -> NfsResult<(ec::Geometry, ShardRef)> {
        let (k, m, shift) = self.geometry().ok_or(NfsError::ServerFault)?;
        let g = ec::Geometry::new(u32::from(k), u32::from(m), 1u64 << shift)
            .map_err(|_| NfsError::ServerFault)?;
        let r = ShardRef {
            file: self.file,
            epoch: self.epoch,
            index: 0,
            k: u32::from(k),
            m: u32::from(m),
            unit_shift: u32::from(shift),
        };
        Ok((g, r))
    }
}

/// The shard-set file of segment `id` stored by `origin` (see the module comment).
pub(crate) fn segment_file(id: &SegmentId, origin: Referrer) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(b"cfs reduce segment shards v1");
    h.update(&id.0);
    h.update(&origin.ino.to_be_bytes());
    h.update(&origin.epoch.to_be_bytes());
    let b = h.finalize();
    let mut a = [0u8; 8];
    a.copy_from_slice(&b.as_bytes()[..8]);
    u64::from_be_bytes(a) | (1 << 63)
}

/// Whether a shard set's `file` names a segment's shards (`segment_file`) rather than an
/// encoded file's (an inode number, below 2^63).
pub(crate) fn is_segment_file(file: u64) -> bool {
    file >> 63 == 1
}

/// Dense bytes shard `j` holds of a one-stripe segment of `len` bytes (`ds`'s
/// `stripe_shard_len` for stripe 0): data shards their part, parity one unit or the segment.
fn shard_len(g: &ec::Geometry, len: u64, j: u32) -> u64 {
    let n = len.min(g.stripe_data());
    if j < g.k() {
        n.saturating_sub(u64::from(j) * g.unit()).min(g.unit())
    } else {
        n.min(g.unit())
    }
}

/// Bytes the data servers hold for a segment of `stored_len` bytes placed on `width` of them:
/// its k data shards (the segment's bytes) and m parity shards of one unit each (or of the
/// whole segment, when shorter), as `SegmentPlace::shards` cuts them; `None` for a width no
/// encoding uses. What usage accounting (`crate::usage`) counts as a segment's raw bytes.
pub(crate) fn raw_bytes(width: usize, stored_len: u64) -> Option<u64> {
    let at = SegmentPlace {
        file: 1 << 63,
        epoch: 0,
        placement: vec![0; width],
        stored_len,
    };
    let (g, _) = at.ec().ok()?;
    Some(
        (0..g.k() + g.m())
            .map(|j| shard_len(&g, stored_len, j))
            .sum(),
    )
}

impl Cluster {
    /// Places a new segment's k+m shards on distinct data servers that are up and have room.
    pub(crate) fn place_segment(&self, file: u64, len: u64) -> Option<Vec<u64>> {
        let map = self.registry.placement_map();
        let (k, m) = super::jobs::geometry_for(map.up().count())?;
        let width = usize::from(k + m);
        let placed = layout::place(&map, FileId(file), 0, width).ok()?;
        let placement: Vec<u64> = placed.targets.iter().map(|d| d.0).collect();
        let fits = self.flash_fits(&placement, len.div_ceil(u64::from(k)));
        (placement.len() == width && fits).then_some(placement)
    }

    /// Stores `bytes` as segment shards at `at`: encodes the one stripe here, PUTs each shard
    /// to its data server and SEALs it there (the receiver re-reads it and checks its blake3).
    /// Durable on every data server of the placement when it returns `Ok`.
    pub(crate) async fn store_segment(&self, at: &SegmentPlace, bytes: &[u8]) -> NfsResult<()> {
        let base = at.shard_ref(0)?;
        let servers = self.shard_servers(&at.placement)?;
        let shards = at.shards(bytes)?;
        let calls = shards.into_iter().enumerate().map(|(i, shard)| {
            let servers = servers.clone();
            async move {
                let index = i as u32;
                let len = shard.len() as u64;
                let ds = at.placement[i];
                let c = self.shard_client(DsId(ds), SHARD_CALL).await?;
                let r = ShardRef { index, ..base };
                let fail = |e: proto::shard::ShardCallError| {
                    tracing::warn!(ds, file = at.file, shard = i, "segment shard: {e}");
                    NfsError::Io
                };
                let mut off = 0;
                while off < shard.len() {
                    let end = (off + MAX_SHARD_IO).min(shard.len());
                    let args = self.cfg.secret.sign_shard(PutArgs {
                        to: ds,
                        shard: r,
                        offset: off as u64,
                        data: proto::xdr::Opaque(shard[off..end].to_vec()),
                        mac: [0; 32],
                    });
                    c.put(&args).await.map_err(fail)?;
                    off = end;
                }
                let sealed = c
                    .seal(&self.cfg.secret.sign_shard(SealArgs {
                        to: ds,
                        shard: r,
                        file_len: at.stored_len,
                        offset: 0,
                        len,
                        sum: *blake3::hash(&shard).as_bytes(),
                        placement: servers,
                        mac: [0; 32],
                    }))
                    .await
                    .map_err(fail);
                c.close();
                sealed
            }
        });
        for r in futures::future::join_all(calls).await {
            r?;
        }
        Ok(())
    }

    /// The segment's bytes as stored, read through an assembling data server of its
    /// placement (one that is up; it rebuilds what a lost shard held).
    pub(crate) async fn fetch_segment(&self, at: &SegmentPlace) -> NfsResult<Vec<u8>> {
        let (_, base) = at.ec()?;
        let servers = self.shard_servers(&at.placement)?;
        let placement = layout::placement_id(&servers);
        let mut last = NfsError::Io;
        for ds in at.placement.iter().map(|d| DsId(*d)) {
            if !self.registry.is_up(ds) {
                continue;
            }
            let fh = ShardCap {
                file: FileId(at.file),
                kind: ShardKind::Assembled,
                k: base.k as u8,
                m: base.m as u8,
                unit_shift: base.unit_shift as u8,
                epoch: at.epoch,
                placement,
                key_id: 0,
            }
            .mint(&self.cap_key, ds)
            .ok_or(NfsError::ServerFault)?;
            match self.read_span_with(ds, &fh, 0, at.stored_len).await {
                Ok(d) if d.len() as u64 == at.stored_len => return Ok(d),
                Ok(d) => {
                    tracing::warn!(ds = %ds, file = at.file, got = d.len(), "segment read short");
                    last = NfsError::Io;
                }
                Err(e) => {
                    tracing::warn!(ds = %ds, file = at.file, "segment read failed: {e:?}");
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// The segment's bytes as stored, from k of its shards read one by one (the shard
    /// program's GET) and decoded here. Unlike `fetch_segment` it needs no address of a
    /// server that is down (an assembled handle names the whole placement, addresses and
    /// all, and a server lost before this node started has none here), and no holder's view
    /// of the placement: what repair reads, and what reads fall back to.
    pub(crate) async fn fetch_segment_direct(&self, at: &SegmentPlace) -> NfsResult<Vec<u8>> {
        let (g, _) = at.ec()?;
        let k = g.k() as usize;
        let unit = usize::try_from(g.unit()).map_err(|_| NfsError::ServerFault)?;
        let mut shards: Vec<Option<Vec<u8>>> = vec![None; at.placement.len()];
        let mut have = 0;
        for (i, ds) in at.placement.iter().enumerate() {
            if have == k {
                break;
            }
            let len = shard_len(&g, at.stored_len, i as u32);
            let got = if len == 0 {
                // A data shard past the segment's end: zeros, by construction.
                Ok(Vec::new())
            } else if self.registry.is_up(DsId(*ds)) {
                self.get_shard(DsId(*ds), at.shard_ref(i as u32)?, len)
                    .await
            } else {
                continue;
            };
            match got {
                Ok(mut b) if b.len() as u64 == len => {
                    b.resize(unit, 0);
                    shards[i] = Some(b);
                    have += 1;
                }
                Ok(b) => {
                    tracing::warn!(
                        ds,
                        file = at.file,
                        shard = i,
                        got = b.len(),
                        "segment shard short"
                    )
                }
                Err(e) => {
                    tracing::warn!(ds, file = at.file, shard = i, "segment shard GET: {e:?}")
                }
            }
        }
        if have < k {
            return Err(NfsError::Io);
        }
        let mut dec = ec::Decoder::new(g).map_err(|_| NfsError::ServerFault)?;
        dec.reconstruct_data(&mut shards)
            .map_err(|_| NfsError::Io)?;
        let mut out = Vec::with_capacity(k * unit);
        for s in shards.iter().take(k) {
            out.extend_from_slice(s.as_deref().ok_or(NfsError::Io)?);
        }
        out.truncate(at.stored_len as usize);
        Ok(out)
    }

    /// The first `len` dense bytes of shard `r` on `ds`.
    async fn get_shard(&self, ds: DsId, r: ShardRef, len: u64) -> NfsResult<Vec<u8>> {
        let c = self.shard_client(ds, SHARD_CALL).await?;
        let mut out = Vec::with_capacity(len as usize);
        let result = async {
            while (out.len() as u64) < len {
                let count = (len - out.len() as u64).min(MAX_SHARD_IO as u64) as u32;
                let args = self.cfg.secret.sign_shard(GetArgs {
                    to: ds.0,
                    shard: r,
                    offset: out.len() as u64,
                    count,
                    mac: [0; 32],
                });
                let d = c.get(&args).await.map_err(|e| {
                    tracing::debug!(ds = %ds, file = r.file, "shard GET: {e}");
                    NfsError::Io
                })?;
                if d.is_empty() {
                    break;
                }
                out.extend_from_slice(&d);
            }
            Ok(())
        }
        .await;
        c.close();
        result.map(|()| out)
    }

    /// Deletes the segment's shards on every data server of its placement; fails if one
    /// could not (the others are done anyway).
    pub(crate) async fn drop_segment(&self, at: &SegmentPlace) -> NfsResult<()> {
        self.drop_shard_set(at.file, at.epoch, &at.placement).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(width: usize, len: u64) -> SegmentPlace {
        SegmentPlace {
            file: 1 << 63,
            epoch: 1,
            placement: (1..=width as u64).collect(),
            stored_len: len,
        }
    }

    #[test]
    fn a_segment_is_one_stripe_of_the_smallest_unit_that_holds_it() {
        // 2 MiB at 4+2: 512 KiB units, 1.5 times the bytes; at 2+1: 1 MiB units.
        assert_eq!(place(6, 2 << 20).geometry(), Some((4, 2, 19)));
        assert_eq!(place(3, 2 << 20).geometry(), Some((2, 1, 20)));
        // A byte over: the next unit up.
        assert_eq!(place(3, (2 << 20) + 1).geometry(), Some((2, 1, 21)));
        // Small segments: 4 KiB units at least.
        assert_eq!(place(3, 100).geometry(), Some((2, 1, 12)));
        // A width no encoding uses.
        assert_eq!(place(4, 2 << 20).geometry(), None);
        assert_eq!(place(2, 2 << 20).geometry(), None);
    }

    #[test]
    fn shards_hold_the_segment_and_a_unit_of_parity() {
        let g = ec::Geometry::new(2, 1, 1 << 20).unwrap();
        let len = (1 << 20) + 10;
        assert_eq!(shard_len(&g, len, 0), 1 << 20);
        assert_eq!(shard_len(&g, len, 1), 10);
        assert_eq!(shard_len(&g, len, 2), 1 << 20);
        assert_eq!(shard_len(&g, 100, 1), 0);
        assert_eq!(shard_len(&g, 100, 2), 100);
    }

    #[test]
    fn raw_bytes_are_the_segment_and_its_parity() {
        // 2 MiB at 2+1 (1 MiB units): 1.5 times; at 4+2 (512 KiB units): 1.5 times.
        assert_eq!(raw_bytes(3, 2 << 20), Some(3 << 20));
        assert_eq!(raw_bytes(6, 2 << 20), Some(3 << 20));
        // A segment shorter than a unit: each parity shard as long as the segment.
        assert_eq!(raw_bytes(3, 100), Some(200));
        // A byte over 2 MiB at 2+1: 2 MiB units, parity as long as the first data shard.
        assert_eq!(raw_bytes(3, (2 << 20) + 1), Some((4 << 20) + 1));
        assert_eq!(raw_bytes(4, 2 << 20), None);
    }

    #[test]
    fn copies_by_two_origins_have_two_names() {
        let id = SegmentId([7; 32]);
        let a = segment_file(&id, Referrer { ino: 5, epoch: 1 });
        let b = segment_file(&id, Referrer { ino: 5, epoch: 2 });
        assert_ne!(a, b);
        assert!(a >= 1 << 63 && b >= 1 << 63);
    }
}
