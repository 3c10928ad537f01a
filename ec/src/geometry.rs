//! Stripe geometry: k data shards and m parity shards of one shard unit each, and the map
//! between a file offset and (stripe, shard, offset in shard).
//!
//! The map is the one the Linux flexfiles client uses for a striped layout (6.18 and later,
//! `nfs4_ff_layout_calc_dss_id` in fs/nfs/flexfilelayout/flexfilelayout.h; see docs/EC.md):
//! the shard unit is `ffl_stripe_unit`, the k data shards are a mirror's `ffm_data_servers`
//! in order, and file offset `o` is read from data server `(o / unit) % k`. So data shard `i`
//! of stripe `s` holds file bytes `[s·k·unit + i·unit, s·k·unit + (i+1)·unit)`.
//!
//! The kernel sends the data server the *file* offset (it does not rewrite
//! `hdr->args.offset`): the data server's view of a shard is sparse. The shard as stored is
//! dense (`offset_in_shard = s·unit + o % unit`); [`Geometry::dense_offset`] and
//! [`Geometry::sparse_offset`] translate between the two.
use thiserror::Error;

/// A shard unit must be a whole number of these: the chunk store's checksum block (4 KiB) and
/// the page the kernel's page cache reads, which is also a multiple of reed-solomon-simd's
/// 64-byte SIMD block (its README: sizes that are multiples of 64 are compatible across all
/// of its versions).
pub const UNIT_ALIGN: u64 = 4096;

/// The largest shard unit. The kernel keeps `ffl_stripe_unit` as a u64 but
/// `ff_layout_pg_test` narrows it to a u32, so anything of 4 GiB or more would be cut; 64 MiB
/// is far above any unit we would choose (docs/EC.md) and bounds a stripe's memory.
pub const MAX_UNIT: u64 = 64 << 20;

/// The most data or parity shards in one stripe. reed-solomon-simd takes up to 32768 of
/// each; we bound far lower because every shard is a data server in one layout mirror.
pub const MAX_SHARDS: u32 = 32;

/// Why a geometry cannot be built.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum GeometryError {
    #[error("a stripe needs at least one data shard")]
    NoData,
    #[error("a stripe needs at least one parity shard")]
    NoParity,
    #[error("{k}+{m} shards is more than {MAX_SHARDS} data or parity shards")]
    TooWide { k: u32, m: u32 },
    #[error(
        "shard unit {0} is not a multiple of {UNIT_ALIGN} between {UNIT_ALIGN} and {MAX_UNIT}"
    )]
    Unit(u64),
    #[error("{0} data servers cannot hold an erasure-coded stripe (at least 3 are needed)")]
    TooFewServers(usize),
}

/// Why an offset does not map.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum MapError {
    #[error("shard {shard} is not a data shard of a {k}+{m} stripe")]
    NotData { shard: u32, k: u32, m: u32 },
    #[error("file offset {offset} is stored on data shard {actual}, not {asked}")]
    OtherShard {
        offset: u64,
        asked: u32,
        actual: u32,
    },
    #[error("offset {0} is beyond what a file can address")]
    Overflow(u64),
}

/// k data shards + m parity shards, each `unit` bytes per stripe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Geometry {
    k: u32,
    m: u32,
    unit: u64,
}

/// Where one file byte lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Location {
    /// Stripe number from the start of the file.
    pub stripe: u64,
    /// Data shard index, `0..k`: also the index into the mirror's `ffm_data_servers`.
    pub shard: u32,
    /// Offset in the dense shard: `stripe · unit + offset within the unit`.
    pub offset_in_shard: u64,
}

impl Geometry {
    /// A k+m geometry with shard unit `unit`.
    pub fn new(k: u32, m: u32, unit: u64) -> Result<Self, GeometryError> {
        if k == 0 {
            return Err(GeometryError::NoData);
        }
        if m == 0 {
            return Err(GeometryError::NoParity);
        }
        if k > MAX_SHARDS || m > MAX_SHARDS {
            return Err(GeometryError::TooWide { k, m });
        }
        if unit == 0 || !unit.is_multiple_of(UNIT_ALIGN) || unit > MAX_UNIT {
            return Err(GeometryError::Unit(unit));
        }
        Ok(Self { k, m, unit })
    }

    /// 4+2: 1.5× the raw size, survives any two losses; for six or more data servers.
    pub fn four_two(unit: u64) -> Result<Self, GeometryError> {
        Self::new(4, 2, unit)
    }

    /// 2+1: 1.5× the raw size, survives any one loss; for three to five data servers.
    pub fn two_one(unit: u64) -> Result<Self, GeometryError> {
        Self::new(2, 1, unit)
    }

    /// The design's choice for a cluster of `servers` data servers (seed decision D3):
    /// 4+2 with six or more, 2+1 with three to five; fewer cannot place k+m distinct shards.
    pub fn for_servers(servers: usize, unit: u64) -> Result<Self, GeometryError> {
        match servers {
            0..=2 => Err(GeometryError::TooFewServers(servers)),
            3..=5 => Self::two_one(unit),
            _ => Self::four_two(unit),
        }
    }

    /// Data shards per stripe.
    pub fn k(&self) -> u32 {
        self.k
    }

    /// Parity shards per stripe: the number of losses a stripe survives.
    pub fn m(&self) -> u32 {
        self.m
    }

    /// Shards per stripe, k + m: the data servers one stripe spans.
    pub fn width(&self) -> u32 {
        self.k + self.m
    }

    /// Bytes of one shard in one stripe (`ffl_stripe_unit`).
    pub fn unit(&self) -> u64 {
        self.unit
    }

    /// File bytes one stripe holds: k · unit.
    pub fn stripe_data(&self) -> u64 {
        u64::from(self.k) * self.unit
    }

    /// Raw bytes stored per logical byte when stripes are full: (k + m) / k.
    pub fn overhead(&self) -> f64 {
        f64::from(self.width()) / f64::from(self.k)
    }

    /// Where file offset `offset` lives. Agrees with the kernel's
    /// `nfs4_ff_layout_calc_dss_id(unit, k, offset)` on the shard (see [`crate::kernel`]).
    pub fn locate(&self, offset: u64) -> Location {
        let unit_no = offset / self.unit;
        let k = u64::from(self.k);
        let stripe = unit_no / k;
        Location {
            stripe,
            // < k <= MAX_SHARDS, so it fits
            shard: (unit_no % k) as u32,
            offset_in_shard: stripe * self.unit + offset % self.unit,
        }
    }

    /// The file offset of a location: the inverse of [`Geometry::locate`].
    pub fn file_offset(&self, at: Location) -> Result<u64, MapError> {
        self.check_data(at.shard)?;
        let within = at.offset_in_shard % self.unit;
        at.stripe
            .checked_mul(self.stripe_data())
            .and_then(|o| o.checked_add(u64::from(at.shard) * self.unit))
            .and_then(|o| o.checked_add(within))
            .ok_or(MapError::Overflow(at.offset_in_shard))
    }

    /// The dense shard offset a data server serves for a READ at `ds_offset` on data shard
    /// `shard`'s handle. The kernel sends the file offset (sparse view); a READ at an offset
    /// that belongs to another shard is a client or layout error.
    pub fn dense_offset(&self, shard: u32, ds_offset: u64) -> Result<u64, MapError> {
        self.check_data(shard)?;
        let at = self.locate(ds_offset);
        if at.shard != shard {
            return Err(MapError::OtherShard {
                offset: ds_offset,
                asked: shard,
                actual: at.shard,
            });
        }
        Ok(at.offset_in_shard)
    }

    /// The file (sparse) offset of dense offset `offset_in_shard` of data shard `shard`.
    pub fn sparse_offset(&self, shard: u32, offset_in_shard: u64) -> Result<u64, MapError> {
        self.file_offset(Location {
            stripe: offset_in_shard / self.unit,
            shard,
            offset_in_shard,
        })
    }

    /// Stripes a file of `len` bytes occupies (the last one may be partial).
    pub fn stripes(&self, len: u64) -> u64 {
        len.div_ceil(self.stripe_data())
    }

    /// Bytes of file data dense shard `shard` holds for a file of `len` bytes (data shards
    /// only; a parity shard is as long as data shard 0, the longest).
    pub fn data_shard_len(&self, len: u64, shard: u32) -> Result<u64, MapError> {
        self.check_data(shard)?;
        let full = len / self.stripe_data();
        let tail = len % self.stripe_data();
        let before = u64::from(shard) * self.unit;
        Ok(full * self.unit + tail.saturating_sub(before).min(self.unit))
    }

    /// Bytes a parity shard holds for a file of `len` bytes. Parity at a position depends
    /// only on the data at the same position of every data shard, so where every data shard
    /// of the last stripe is past the end of the file the parity is zero and need not be
    /// stored (shown by the codec's tests).
    pub fn parity_shard_len(&self, len: u64) -> u64 {
        let full = len / self.stripe_data();
        let tail = len % self.stripe_data();
        full * self.unit + tail.min(self.unit)
    }

    /// Cuts `[offset, offset + len)` into pieces that each stay inside one shard unit, in
    /// file order: the pieces a striped-layout client sends to the data servers (the kernel's
    /// `ff_layout_pg_test` never lets one READ or WRITE cross a stripe unit).
    pub fn pieces(&self, offset: u64, len: u64) -> Pieces {
        Pieces {
            geometry: *self,
            next: offset,
            end: offset.saturating_add(len),
        }
    }

    fn check_data(&self, shard: u32) -> Result<(), MapError> {
        if shard >= self.k {
            return Err(MapError::NotData {
                shard,
                k: self.k,
                m: self.m,
            });
        }
        Ok(())
    }
}

/// One piece of a byte range: `len` file bytes from `offset`, all in `at.shard`'s unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    pub offset: u64,
    pub len: u64,
    pub at: Location,
}

/// Iterator returned by [`Geometry::pieces`].
#[derive(Debug, Clone)]
pub struct Pieces {
    geometry: Geometry,
    next: u64,
    end: u64,
}

impl Iterator for Pieces {
    type Item = Piece;

    fn next(&mut self) -> Option<Piece> {
        if self.next >= self.end {
            return None;
        }
        let offset = self.next;
        let unit = self.geometry.unit;
        let len = (unit - offset % unit).min(self.end - offset);
        self.next = offset + len;
        Some(Piece {
            offset,
            len,
            at: self.geometry.locate(offset),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn presets_and_server_counts() {
        let g = Geometry::for_servers(6, MIB).unwrap();
        assert_eq!((g.k(), g.m(), g.width()), (4, 2, 6));
        assert_eq!(Geometry::for_servers(100, MIB).unwrap(), g);
        for n in 3..=5 {
            let g = Geometry::for_servers(n, MIB).unwrap();
            assert_eq!((g.k(), g.m()), (2, 1), "{n} servers");
        }
        for n in 0..=2 {
            assert_eq!(
                Geometry::for_servers(n, MIB),
                Err(GeometryError::TooFewServers(n))
            );
        }
        assert!((Geometry::four_two(MIB).unwrap().overhead() - 1.5).abs() < 1e-9);
        assert!((Geometry::two_one(MIB).unwrap().overhead() - 1.5).abs() < 1e-9);
    }

    #[test]
    fn bad_geometries_are_refused() {
        assert_eq!(Geometry::new(0, 2, MIB), Err(GeometryError::NoData));
        assert_eq!(Geometry::new(4, 0, MIB), Err(GeometryError::NoParity));
        assert_eq!(
            Geometry::new(33, 2, MIB),
            Err(GeometryError::TooWide { k: 33, m: 2 })
        );
        for unit in [0, 100, 4095, 4097, MAX_UNIT + UNIT_ALIGN] {
            assert_eq!(Geometry::new(4, 2, unit), Err(GeometryError::Unit(unit)));
        }
        assert!(Geometry::new(4, 2, UNIT_ALIGN).is_ok());
        assert!(Geometry::new(4, 2, MAX_UNIT).is_ok());
    }

    /// Worked examples: 4+2 at 1 MiB. Stripe 0 holds file bytes [0, 4 MiB): unit 0 on data
    /// server 0, [1 MiB, 2 MiB) on 1, ... ; stripe 1 starts again at server 0 at 4 MiB.
    #[test]
    fn worked_examples_4_2() {
        let g = Geometry::four_two(MIB).unwrap();
        let cases = [
            (0, 0, 0, 0),
            (MIB - 1, 0, 0, MIB - 1),
            (MIB, 0, 1, 0),
            (3 * MIB + 7, 0, 3, 7),
            (4 * MIB, 1, 0, MIB),
            (4 * MIB + 5, 1, 0, MIB + 5),
            (9 * MIB + 123, 2, 1, 2 * MIB + 123),
            (15 * MIB + MIB - 1, 3, 3, 4 * MIB - 1),
        ];
        for (offset, stripe, shard, offset_in_shard) in cases {
            let at = g.locate(offset);
            assert_eq!(
                at,
                Location {
                    stripe,
                    shard,
                    offset_in_shard
                },
                "offset {offset}"
            );
            assert_eq!(g.file_offset(at), Ok(offset));
            assert_eq!(g.dense_offset(shard, offset), Ok(offset_in_shard));
            assert_eq!(g.sparse_offset(shard, offset_in_shard), Ok(offset));
        }
        assert_eq!(
            g.dense_offset(2, 4 * MIB),
            Err(MapError::OtherShard {
                offset: 4 * MIB,
                asked: 2,
                actual: 0
            })
        );
        assert_eq!(
            g.dense_offset(4, 0),
            Err(MapError::NotData {
                shard: 4,
                k: 4,
                m: 2
            })
        );
    }

    #[test]
    fn shard_lengths_of_a_partial_last_stripe() {
        let g = Geometry::four_two(MIB).unwrap();
        // 2.5 stripes: 10 MiB; the tail stripe has 2 MiB: shards 0 and 1 full, 2 and 3 empty.
        let len = 10 * MIB;
        let lens: Vec<_> = (0..4).map(|s| g.data_shard_len(len, s).unwrap()).collect();
        assert_eq!(lens, vec![3 * MIB, 3 * MIB, 2 * MIB, 2 * MIB]);
        assert_eq!(g.parity_shard_len(len), 3 * MIB);
        assert_eq!(g.stripes(len), 3);
        // a tail shorter than one unit
        let len = 4 * MIB + 100;
        assert_eq!(g.data_shard_len(len, 0).unwrap(), MIB + 100);
        assert_eq!(g.data_shard_len(len, 1).unwrap(), MIB);
        assert_eq!(g.parity_shard_len(len), MIB + 100);
        assert_eq!(g.stripes(0), 0);
        assert_eq!(g.parity_shard_len(0), 0);
    }

    proptest! {
        #[test]
        fn locate_and_file_offset_are_inverse(
            offset in 0u64..(1 << 50),
            preset in 0..2usize,
            unit_pages in 1u64..512,
        ) {
            let unit = unit_pages * UNIT_ALIGN;
            let g = [Geometry::four_two(unit), Geometry::two_one(unit)][preset].clone().unwrap();
            let at = g.locate(offset);
            prop_assert!(at.shard < g.k());
            prop_assert_eq!(at.offset_in_shard / unit, at.stripe);
            prop_assert_eq!(g.file_offset(at), Ok(offset));
            prop_assert_eq!(g.dense_offset(at.shard, offset), Ok(at.offset_in_shard));
        }

        #[test]
        fn data_shard_lengths_sum_to_the_file(len in 0u64..(1 << 40), preset in 0..2usize) {
            let g = [Geometry::four_two(MIB), Geometry::two_one(64 << 10)][preset].clone().unwrap();
            let total: u64 = (0..g.k()).map(|s| g.data_shard_len(len, s).unwrap()).sum();
            prop_assert_eq!(total, len);
            prop_assert_eq!(g.parity_shard_len(len), g.data_shard_len(len, 0).unwrap());
        }

        #[test]
        fn pieces_cover_the_range_without_crossing_a_unit(
            offset in 0u64..(1 << 36),
            len in 0u64..(32 << 20),
        ) {
            let g = Geometry::four_two(256 << 10).unwrap();
            let mut next = offset;
            for p in g.pieces(offset, len) {
                prop_assert_eq!(p.offset, next);
                prop_assert!(p.len > 0);
                prop_assert_eq!(g.locate(p.offset + p.len - 1).shard, p.at.shard);
                prop_assert_eq!(g.locate(p.offset + p.len - 1).stripe, p.at.stripe);
                next += p.len;
            }
            prop_assert_eq!(next, offset + len);
        }
    }
}
