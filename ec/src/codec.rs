//! Encoding a stripe into k data + m parity shards and rebuilding lost shards, with
//! reed-solomon-simd (systematic: the data shards are the file's bytes unchanged, which is what
//! lets a striped-layout client read them directly).
//!
//! [`Encoder`] and [`Decoder`] keep the library's working memory between stripes (reset, not
//! reallocated), so a background encoder or a repair worker holds one of each per thread.
use crate::geometry::Geometry;
use crate::sums::{shard_sum, ShardSum};
use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};
use thiserror::Error;

/// Why a stripe cannot be encoded or rebuilt.
#[derive(Debug, Error, PartialEq)]
pub enum CodecError {
    #[error("{len} bytes do not fit one stripe of {max}")]
    DataTooLong { len: usize, max: u64 },
    #[error("{got} shards given, the stripe has {want}")]
    ShardCount { got: usize, want: usize },
    #[error("shard {index} is {got} bytes, the shard unit is {want}")]
    ShardLen { index: usize, got: usize, want: u64 },
    #[error("{lost} shards of the stripe are lost; a {k}+{m} stripe survives at most {m}")]
    TooManyLost { lost: usize, k: u32, m: u32 },
    #[error("shard {index} does not exist in a stripe of {width}")]
    NoSuchShard { index: usize, width: usize },
    #[error("the decoder did not restore shard {0}")]
    NotRestored(usize),
    #[error("shard unit {0} does not fit in memory on this machine")]
    UnitTooLarge(u64),
    #[error("reed-solomon-simd: {0}")]
    Library(#[from] reed_solomon_simd::Error),
}

/// One encoded stripe: `k` data shards (the file bytes, the last stripe padded with zeros)
/// then `m` parity shards, each one unit long, with each shard's blake3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stripe {
    pub shards: Vec<Vec<u8>>,
    pub sums: Vec<ShardSum>,
    /// File bytes in the stripe (less than k · unit only for the last stripe of a file).
    pub data_len: usize,
}

impl Stripe {
    /// The file bytes the stripe holds, without the padding.
    pub fn data(&self, k: u32) -> Vec<u8> {
        let mut out: Vec<u8> = self.shards[..k as usize].concat();
        out.truncate(self.data_len);
        out
    }
}

fn unit_len(geometry: &Geometry) -> Result<usize, CodecError> {
    usize::try_from(geometry.unit()).map_err(|_| CodecError::UnitTooLarge(geometry.unit()))
}

/// Computes parity shards.
pub struct Encoder {
    geometry: Geometry,
    unit: usize,
    rs: ReedSolomonEncoder,
}

impl Encoder {
    pub fn new(geometry: Geometry) -> Result<Self, CodecError> {
        let unit = unit_len(&geometry)?;
        let rs = ReedSolomonEncoder::new(geometry.k() as usize, geometry.m() as usize, unit)?;
        Ok(Self { geometry, unit, rs })
    }

    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// Encodes up to one stripe of file bytes: cuts `data` into k shards of one unit (padding
    /// the tail with zeros), computes the m parity shards and every shard's blake3.
    pub fn encode(&mut self, data: &[u8]) -> Result<Stripe, CodecError> {
        let max = self.geometry.stripe_data();
        if data.len() as u64 > max {
            return Err(CodecError::DataTooLong {
                len: data.len(),
                max,
            });
        }
        let k = self.geometry.k() as usize;
        let width = self.geometry.width() as usize;
        let mut shards: Vec<Vec<u8>> = Vec::with_capacity(width);
        for i in 0..k {
            let start = (i * self.unit).min(data.len());
            let end = ((i + 1) * self.unit).min(data.len());
            let mut shard = Vec::with_capacity(self.unit);
            shard.extend_from_slice(&data[start..end]);
            shard.resize(self.unit, 0);
            shards.push(shard);
        }
        let mut parity = vec![vec![0u8; self.unit]; self.geometry.m() as usize];
        self.parity_into(&shards, &mut parity)?;
        shards.extend(parity);
        let sums = shards.iter().map(|s| shard_sum(s)).collect();
        Ok(Stripe {
            shards,
            sums,
            data_len: data.len(),
        })
    }

    /// Computes the m parity shards of k data shards (each exactly one unit) into `parity`
    /// (m buffers of one unit), without allocating.
    pub fn parity_into<D: AsRef<[u8]>>(
        &mut self,
        data: &[D],
        parity: &mut [Vec<u8>],
    ) -> Result<(), CodecError> {
        let k = self.geometry.k() as usize;
        let m = self.geometry.m() as usize;
        if data.len() != k {
            return Err(CodecError::ShardCount {
                got: data.len(),
                want: k,
            });
        }
        if parity.len() != m {
            return Err(CodecError::ShardCount {
                got: parity.len(),
                want: m,
            });
        }
        for (index, shard) in data.iter().enumerate() {
            self.check_len(index, shard.as_ref().len())?;
        }
        for (i, shard) in parity.iter().enumerate() {
            self.check_len(k + i, shard.len())?;
        }
        self.rs.reset(k, m, self.unit)?;
        for shard in data {
            self.rs.add_original_shard(shard)?;
        }
        let result = self.rs.encode()?;
        for (out, recovery) in parity.iter_mut().zip(result.recovery_iter()) {
            out.copy_from_slice(recovery);
        }
        Ok(())
    }

    fn check_len(&self, index: usize, got: usize) -> Result<(), CodecError> {
        if got != self.unit {
            return Err(CodecError::ShardLen {
                index,
                got,
                want: self.geometry.unit(),
            });
        }
        Ok(())
    }
}

/// Rebuilds lost shards of a stripe from any k that are left.
pub struct Decoder {
    geometry: Geometry,
    unit: usize,
    rs: ReedSolomonDecoder,
    encoder: Encoder,
    /// The single parity shard is the XOR of the data shards (true of reed-solomon-simd's
    /// code for 2+1; checked at construction, never assumed), so one loss is rebuilt by XOR
    /// at memory speed instead of through the decoder (ec-bench: 2+1 at 1 MiB, 1.3 GiB/s
    /// through the decoder; docs/EC.md has the XOR figure).
    xor_parity: bool,
}

/// Whether a k+1 code's parity is the plain XOR of the data, found by encoding one small
/// probe stripe (the code's coefficients do not depend on the shard size).
fn parity_is_xor(k: usize) -> Result<bool, CodecError> {
    const PROBE: usize = 64;
    let data: Vec<Vec<u8>> = (0..k)
        .map(|i| crate::pattern::pattern(PROBE, 0x9E37_79B9_7F4A_7C15 + i as u64))
        .collect();
    let recovery = reed_solomon_simd::encode(k, 1, &data)?;
    let mut xor = vec![0u8; PROBE];
    for d in &data {
        xor_into(&mut xor, d);
    }
    Ok(recovery.first().is_some_and(|p| *p == xor))
}

fn xor_into(acc: &mut [u8], src: &[u8]) {
    // a plain loop: LLVM vectorises it (AVX2 here)
    for (a, b) in acc.iter_mut().zip(src) {
        *a ^= *b;
    }
}

impl Decoder {
    pub fn new(geometry: Geometry) -> Result<Self, CodecError> {
        let unit = unit_len(&geometry)?;
        let rs = ReedSolomonDecoder::new(geometry.k() as usize, geometry.m() as usize, unit)?;
        let xor_parity = geometry.m() == 1 && parity_is_xor(geometry.k() as usize)?;
        Ok(Self {
            geometry,
            unit,
            rs,
            encoder: Encoder::new(geometry)?,
            xor_parity,
        })
    }

    /// Whether single losses are rebuilt by XOR (see the field's comment).
    pub fn xor_fast_path(&self) -> bool {
        self.xor_parity
    }

    /// Rebuilds, in place, the shards listed in `lost` (data or parity indexes) of a stripe
    /// whose `shards` are all one unit long; the buffers of lost shards are overwritten, the
    /// others only read. Allocates nothing: a repair worker or a degraded read calls this
    /// once per stripe with the same buffers.
    pub fn reconstruct_lost(
        &mut self,
        shards: &mut [Vec<u8>],
        lost: &[usize],
    ) -> Result<(), CodecError> {
        let k = self.geometry.k() as usize;
        let m = self.geometry.m() as usize;
        let width = k + m;
        if shards.len() != width {
            return Err(CodecError::ShardCount {
                got: shards.len(),
                want: width,
            });
        }
        for (index, shard) in shards.iter().enumerate() {
            if shard.len() != self.unit {
                return Err(CodecError::ShardLen {
                    index,
                    got: shard.len(),
                    want: self.geometry.unit(),
                });
            }
        }
        let mut is_lost = [false; 2 * crate::geometry::MAX_SHARDS as usize];
        for &i in lost {
            if i >= width {
                return Err(CodecError::NoSuchShard { index: i, width });
            }
            is_lost[i] = true;
        }
        let lost_count = is_lost.iter().filter(|&&l| l).count();
        if lost_count > m {
            return Err(CodecError::TooManyLost {
                lost: lost_count,
                k: self.geometry.k(),
                m: self.geometry.m(),
            });
        }
        if self.xor_parity && lost_count == 1 {
            // one loss of a k+1 stripe whose parity is the XOR: the lost shard, data or
            // parity, is the XOR of all the others
            let gone = lost[0];
            let (before, rest) = shards.split_at_mut(gone);
            let (target, after) = rest.split_at_mut(1);
            let target = &mut target[0];
            target.fill(0);
            for s in before.iter().chain(after.iter()) {
                xor_into(target, s);
            }
            return Ok(());
        }
        if (0..k).any(|i| is_lost[i]) {
            self.rs.reset(k, m, self.unit)?;
            for (i, shard) in shards.iter().enumerate().filter(|(i, _)| !is_lost[*i]) {
                if i < k {
                    self.rs.add_original_shard(i, shard)?;
                } else {
                    self.rs.add_recovery_shard(i - k, shard)?;
                }
            }
            let result = self.rs.decode()?;
            for i in (0..k).filter(|&i| is_lost[i]) {
                // the library restores every original it was not given
                let restored = result
                    .restored_original(i)
                    .ok_or(CodecError::NotRestored(i))?;
                shards[i].copy_from_slice(restored);
            }
        }
        if (k..width).any(|i| is_lost[i]) {
            let (data, parity) = shards.split_at_mut(k);
            if (k..width).all(|i| is_lost[i]) {
                self.encoder.parity_into(&*data, parity)?;
            } else {
                let mut fresh = vec![vec![0u8; self.unit]; m];
                self.encoder.parity_into(&*data, &mut fresh)?;
                for i in (k..width).filter(|&i| is_lost[i]) {
                    parity[i - k].copy_from_slice(&fresh[i - k]);
                }
            }
        }
        Ok(())
    }

    /// Rebuilds the lost data shards (`None` entries among the first k) of a stripe's k + m
    /// shards; lost parity shards stay lost. What a degraded read needs.
    pub fn reconstruct_data(&mut self, shards: &mut [Option<Vec<u8>>]) -> Result<(), CodecError> {
        let k = self.geometry.k() as usize;
        self.reconstruct_some(shards, |i| i < k)
    }

    /// Rebuilds every lost shard, data and parity: what repair needs.
    pub fn reconstruct(&mut self, shards: &mut [Option<Vec<u8>>]) -> Result<(), CodecError> {
        self.reconstruct_some(shards, |_| true)
    }

    fn reconstruct_some(
        &mut self,
        shards: &mut [Option<Vec<u8>>],
        wanted: impl Fn(usize) -> bool,
    ) -> Result<(), CodecError> {
        let lost: Vec<usize> = (0..shards.len()).filter(|&i| shards[i].is_none()).collect();
        let mut full: Vec<Vec<u8>> = shards
            .iter_mut()
            .map(|s| s.take().unwrap_or_else(|| vec![0u8; self.unit]))
            .collect();
        let result = self.reconstruct_lost(&mut full, &lost);
        for (i, (slot, shard)) in shards.iter_mut().zip(full).enumerate() {
            let restored = !lost.contains(&i) || (result.is_ok() && wanted(i));
            if restored {
                *slot = Some(shard);
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sums::drop_corrupt;
    use proptest::prelude::*;

    /// Small units keep the exhaustive tests fast; the codec does not care about the size.
    const UNIT: u64 = 4096;

    use crate::pattern::pattern as bytes;

    /// Every subset of shard indexes of size `n` out of `width`.
    fn subsets(width: usize, n: usize) -> Vec<Vec<usize>> {
        (0u32..1 << width)
            .filter(|mask| mask.count_ones() as usize == n)
            .map(|mask| (0..width).filter(|i| mask & (1 << i) != 0).collect())
            .collect()
    }

    fn presets() -> [Geometry; 2] {
        [
            Geometry::four_two(UNIT).unwrap(),
            Geometry::two_one(UNIT).unwrap(),
        ]
    }

    #[test]
    fn data_shards_are_the_file_bytes() {
        for g in presets() {
            let data = bytes(g.stripe_data() as usize, 7);
            let stripe = Encoder::new(g).unwrap().encode(&data).unwrap();
            assert_eq!(stripe.shards.len(), g.width() as usize);
            for (i, chunk) in data.chunks(UNIT as usize).enumerate() {
                assert_eq!(stripe.shards[i], chunk, "{g:?} shard {i}");
            }
            for (s, sum) in stripe.shards.iter().zip(&stripe.sums) {
                assert_eq!(*sum, *blake3::hash(s).as_bytes());
            }
            // parity is not a copy of the data
            assert_ne!(stripe.shards[g.k() as usize], stripe.shards[0]);
        }
    }

    /// Every combination of at most m lost shards, of every preset, rebuilds the exact bytes
    /// of every shard (data and parity).
    #[test]
    fn every_combination_of_up_to_m_losses_reconstructs() {
        for g in presets() {
            let width = g.width() as usize;
            let data = bytes(g.stripe_data() as usize, 11);
            let stripe = Encoder::new(g).unwrap().encode(&data).unwrap();
            let mut decoder = Decoder::new(g).unwrap();
            let mut tried = 0;
            for lost in 0..=g.m() as usize {
                for set in subsets(width, lost) {
                    let mut shards: Vec<Option<Vec<u8>>> =
                        stripe.shards.iter().cloned().map(Some).collect();
                    for &i in &set {
                        shards[i] = None;
                    }
                    decoder.reconstruct(&mut shards).unwrap();
                    let rebuilt: Vec<Vec<u8>> = shards.into_iter().flatten().collect();
                    assert_eq!(rebuilt, stripe.shards, "{g:?} lost {set:?}");
                    tried += 1;
                }
            }
            // 4+2: 1 + 6 + 15; 2+1: 1 + 3
            assert_eq!(tried, if g.k() == 4 { 22 } else { 4 });
        }
    }

    #[test]
    fn reconstruct_data_leaves_parity_alone() {
        let g = Geometry::four_two(UNIT).unwrap();
        let stripe = Encoder::new(g).unwrap().encode(&bytes(10_000, 3)).unwrap();
        let mut shards: Vec<_> = stripe.shards.iter().cloned().map(Some).collect();
        shards[1] = None;
        shards[5] = None;
        Decoder::new(g)
            .unwrap()
            .reconstruct_data(&mut shards)
            .unwrap();
        assert_eq!(shards[1].as_deref(), Some(&stripe.shards[1][..]));
        assert!(shards[5].is_none());
    }

    #[test]
    fn more_than_m_losses_is_a_clear_error() {
        for g in presets() {
            let stripe = Encoder::new(g).unwrap().encode(&bytes(5000, 5)).unwrap();
            let mut decoder = Decoder::new(g).unwrap();
            for set in subsets(g.width() as usize, g.m() as usize + 1) {
                let mut shards: Vec<_> = stripe.shards.iter().cloned().map(Some).collect();
                for &i in &set {
                    shards[i] = None;
                }
                let before = shards.clone();
                let err = decoder.reconstruct(&mut shards).unwrap_err();
                assert_eq!(
                    err,
                    CodecError::TooManyLost {
                        lost: g.m() as usize + 1,
                        k: g.k(),
                        m: g.m()
                    }
                );
                assert_eq!(shards, before, "a failed rebuild changes nothing");
                assert!(err.to_string().contains("survives at most"), "{err}");
            }
        }
    }

    #[test]
    fn bad_shapes_are_refused() {
        let g = Geometry::four_two(UNIT).unwrap();
        let mut enc = Encoder::new(g).unwrap();
        let too_long = vec![0u8; g.stripe_data() as usize + 1];
        assert!(matches!(
            enc.encode(&too_long),
            Err(CodecError::DataTooLong { .. })
        ));
        let short = vec![vec![0u8; UNIT as usize]; 3];
        let mut parity = vec![vec![0u8; UNIT as usize]; 2];
        assert_eq!(
            enc.parity_into(&short, &mut parity),
            Err(CodecError::ShardCount { got: 3, want: 4 })
        );
        let mut uneven = vec![vec![0u8; UNIT as usize]; 4];
        uneven[2].pop();
        assert_eq!(
            enc.parity_into(&uneven, &mut parity),
            Err(CodecError::ShardLen {
                index: 2,
                got: UNIT as usize - 1,
                want: UNIT
            })
        );
        let mut dec = Decoder::new(g).unwrap();
        let mut five: Vec<Option<Vec<u8>>> = vec![Some(vec![0u8; UNIT as usize]); 5];
        assert_eq!(
            dec.reconstruct(&mut five),
            Err(CodecError::ShardCount { got: 5, want: 6 })
        );
    }

    /// The in-place form rebuilds into the caller's buffers, whatever they held.
    #[test]
    fn reconstruct_lost_overwrites_only_the_lost_buffers() {
        let g = Geometry::four_two(UNIT).unwrap();
        let stripe = Encoder::new(g).unwrap().encode(&bytes(12_345, 21)).unwrap();
        let mut dec = Decoder::new(g).unwrap();
        for lost in [vec![0, 3], vec![1, 4], vec![4, 5], vec![2]] {
            let mut shards = stripe.shards.clone();
            for &i in &lost {
                shards[i].fill(0xEE);
            }
            dec.reconstruct_lost(&mut shards, &lost).unwrap();
            assert_eq!(shards, stripe.shards, "lost {lost:?}");
        }
        let mut shards = stripe.shards.clone();
        assert_eq!(
            dec.reconstruct_lost(&mut shards, &[6]),
            Err(CodecError::NoSuchShard { index: 6, width: 6 })
        );
        assert_eq!(
            dec.reconstruct_lost(&mut shards, &[0, 1, 2]),
            Err(CodecError::TooManyLost {
                lost: 3,
                k: 4,
                m: 2
            })
        );
    }

    /// 2+1 takes the XOR path (checked at construction), 4+2 the decoder; both give the
    /// decoder's bytes (the exhaustive test above covers every loss of both).
    #[test]
    fn the_xor_fast_path_is_taken_only_where_it_holds() {
        assert!(Decoder::new(Geometry::two_one(UNIT).unwrap())
            .unwrap()
            .xor_fast_path());
        assert!(!Decoder::new(Geometry::four_two(UNIT).unwrap())
            .unwrap()
            .xor_fast_path());
        // same bytes through the decoder and through XOR, for every single loss
        let g = Geometry::two_one(UNIT).unwrap();
        let stripe = Encoder::new(g).unwrap().encode(&bytes(7000, 17)).unwrap();
        let mut slow = Decoder::new(g).unwrap();
        slow.xor_parity = false;
        let mut fast = Decoder::new(g).unwrap();
        for lost in 0..3 {
            let mut a = stripe.shards.clone();
            let mut b = stripe.shards.clone();
            a[lost].fill(1);
            b[lost].fill(2);
            slow.reconstruct_lost(&mut a, &[lost]).unwrap();
            fast.reconstruct_lost(&mut b, &[lost]).unwrap();
            assert_eq!(a, b, "lost {lost}");
            assert_eq!(a, stripe.shards, "lost {lost}");
        }
    }

    /// A shard whose bytes no longer match its blake3 is treated as lost and rebuilt.
    #[test]
    fn a_corrupt_shard_is_dropped_and_rebuilt() {
        let g = Geometry::four_two(UNIT).unwrap();
        let stripe = Encoder::new(g).unwrap().encode(&bytes(16_000, 9)).unwrap();
        let mut shards: Vec<_> = stripe.shards.iter().cloned().map(Some).collect();
        if let Some(s) = shards[2].as_mut() {
            s[100] ^= 0x40;
        }
        shards[4] = None;
        assert_eq!(drop_corrupt(&mut shards, &stripe.sums), vec![2]);
        Decoder::new(g).unwrap().reconstruct(&mut shards).unwrap();
        let rebuilt: Vec<Vec<u8>> = shards.into_iter().flatten().collect();
        assert_eq!(rebuilt, stripe.shards);
    }

    /// Parity at a position depends only on the data at that position, so the parity of a
    /// partial last stripe is zero past the longest data piece (Geometry::parity_shard_len).
    #[test]
    fn parity_of_a_partial_stripe_is_zero_past_the_data() {
        for g in presets() {
            for len in (1usize..=g.stripe_data() as usize).step_by(37) {
                let stripe = Encoder::new(g).unwrap().encode(&bytes(len, 13)).unwrap();
                let stored = g.parity_shard_len(len as u64) as usize;
                for p in &stripe.shards[g.k() as usize..] {
                    assert!(p[stored..].iter().all(|&b| b == 0), "{g:?} len {len}");
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// A file of any size: cut into stripes, the last padded, any ≤ m shards of every
        /// stripe lost, rebuilt and reassembled, gives back exactly the file.
        #[test]
        fn files_round_trip_with_losses(
            len in 0usize..(3 * 4 * 4096 + 1),
            seed in any::<u64>(),
            preset in 0..2usize,
            lose in proptest::collection::vec(any::<u8>(), 0..2),
        ) {
            let g = presets()[preset];
            let file = bytes(len, seed);
            let mut enc = Encoder::new(g).unwrap();
            let mut dec = Decoder::new(g).unwrap();
            let mut out = Vec::with_capacity(len);
            for (s, chunk) in file.chunks(g.stripe_data() as usize).enumerate() {
                let stripe = enc.encode(chunk).unwrap();
                prop_assert_eq!(stripe.data_len, chunk.len());
                let mut shards: Vec<_> = stripe.shards.iter().cloned().map(Some).collect();
                // lose up to m distinct shards, chosen by the generated bytes
                let mut lost = Vec::new();
                for b in lose.iter().take(g.m() as usize) {
                    let i = (usize::from(*b) + s) % g.width() as usize;
                    if !lost.contains(&i) {
                        lost.push(i);
                        shards[i] = None;
                    }
                }
                dec.reconstruct(&mut shards).unwrap();
                let rebuilt = Stripe {
                    shards: shards.into_iter().flatten().collect(),
                    sums: stripe.sums.clone(),
                    data_len: stripe.data_len,
                };
                prop_assert_eq!(&rebuilt, &stripe);
                out.extend(rebuilt.data(g.k()));
            }
            prop_assert_eq!(out, file);
        }
    }
}
