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
}

impl Decoder {
    pub fn new(geometry: Geometry) -> Result<Self, CodecError> {
        let unit = unit_len(&geometry)?;
        let rs = ReedSolomonDecoder::new(geometry.k() as usize, geometry.m() as usize, unit)?;
        Ok(Self {
            geometry,
            unit,
            rs,
            encoder: Encoder::new(geometry)?,
        })
    }

    /// Rebuilds the lost data shards (`None` entries among the first k) of a stripe's k + m
    /// shards; lost parity shards stay lost. What a degraded read needs.
    pub fn reconstruct_data(&mut self, shards: &mut [Option<Vec<u8>>]) -> Result<(), CodecError> {
        let k = self.geometry.k() as usize;
        let m = self.geometry.m() as usize;
        self.check(shards)?;
        let lost_data: Vec<usize> = (0..k).filter(|&i| shards[i].is_none()).collect();
        if lost_data.is_empty() {
            return Ok(());
        }
        self.rs.reset(k, m, self.unit)?;
        for (i, shard) in shards.iter().enumerate() {
            if let Some(shard) = shard {
                if i < k {
                    self.rs.add_original_shard(i, shard)?;
                } else {
                    self.rs.add_recovery_shard(i - k, shard)?;
                }
            }
        }
        let result = self.rs.decode()?;
        for i in lost_data {
            // the library restores every missing original it was not given
            let restored = result
                .restored_original(i)
                .ok_or(CodecError::NotRestored(i))?;
            shards[i] = Some(restored.to_vec());
        }
        Ok(())
    }

    /// Rebuilds every lost shard, data and parity: what repair needs.
    pub fn reconstruct(&mut self, shards: &mut [Option<Vec<u8>>]) -> Result<(), CodecError> {
        self.reconstruct_data(shards)?;
        let k = self.geometry.k() as usize;
        let lost_parity: Vec<usize> = (k..shards.len()).filter(|&i| shards[i].is_none()).collect();
        if lost_parity.is_empty() {
            return Ok(());
        }
        let data: Vec<&[u8]> = shards[..k].iter().flatten().map(Vec::as_slice).collect();
        let mut parity = vec![vec![0u8; self.unit]; self.geometry.m() as usize];
        self.encoder.parity_into(&data, &mut parity)?;
        for i in lost_parity {
            shards[i] = Some(std::mem::take(&mut parity[i - k]));
        }
        Ok(())
    }

    fn check(&self, shards: &[Option<Vec<u8>>]) -> Result<(), CodecError> {
        let width = self.geometry.width() as usize;
        if shards.len() != width {
            return Err(CodecError::ShardCount {
                got: shards.len(),
                want: width,
            });
        }
        for (index, shard) in shards.iter().enumerate() {
            if let Some(shard) = shard {
                if shard.len() != self.unit {
                    return Err(CodecError::ShardLen {
                        index,
                        got: shard.len(),
                        want: self.geometry.unit(),
                    });
                }
            }
        }
        let lost = shards.iter().filter(|s| s.is_none()).count();
        if lost > self.geometry.m() as usize {
            return Err(CodecError::TooManyLost {
                lost,
                k: self.geometry.k(),
                m: self.geometry.m(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sums::drop_corrupt;
    use proptest::prelude::*;

    /// Small units keep the exhaustive tests fast; the codec does not care about the size.
    const UNIT: u64 = 4096;

    fn bytes(len: usize, seed: u64) -> Vec<u8> {
        // xorshift: deterministic, no zero runs that could hide a padding bug
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

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
