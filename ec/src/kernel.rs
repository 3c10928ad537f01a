//! The Linux flexfiles client's striping arithmetic (6.18 and later), restated so that tests
//! can hold [`crate::Geometry`] to it. Written from reading the kernel source (docs/EC.md has
//! the citations); nothing here is used on a data path.
//!
//! - `nfs4_ff_layout_calc_dss_id(stripe_unit, dss_count, offset)`
//!   (fs/nfs/flexfilelayout/flexfilelayout.h): which entry of a mirror's `ffm_data_servers` a
//!   READ or WRITE at file offset `offset` goes to. Zero when the mirror has one data server or
//!   the unit is zero; otherwise `(offset / stripe_unit) % dss_count`, on the absolute file
//!   offset.
//! - `ff_layout_pg_test` (fs/nfs/flexfilelayout/flexfilelayout.c): how many bytes of a page
//!   request may join the RPC being built. For a striped segment it refuses to coalesce across
//!   stripe-unit boundaries, counted from the layout segment's start, and caps the request at
//!   the bytes left in the current unit. The stripe unit is narrowed to 32 bits there.
//! - `ff_layout_read_pagelist` / `ff_layout_write_pagelist`: the RPC to the data server keeps
//!   the file offset (`hdr->args.offset` is not rewritten), so the data server sees sparse
//!   offsets.

/// `nfs4_ff_layout_calc_dss_id`: the data server index for file offset `offset`.
pub fn calc_dss_id(stripe_unit: u64, dss_count: u32, offset: u64) -> u32 {
    if dss_count == 1 || stripe_unit == 0 {
        return 0;
    }
    // do_div(tmp, stripe_unit) leaves the quotient; do_div(tmp, dss_count) returns the
    // remainder.
    ((offset / stripe_unit) % u64::from(dss_count)) as u32
}

/// The most bytes `ff_layout_pg_test` lets a request at `req_offset` add to an RPC, given the
/// generic limit `size` (the rsize/wsize left), for a striped segment starting at
/// `segment_offset`. `None` when the request may not join the RPC that holds `prev_offset`
/// (a different stripe unit).
pub fn pg_test(
    stripe_unit: u64,
    segment_offset: u64,
    prev_offset: Option<u64>,
    req_offset: u64,
    size: u64,
) -> Option<u64> {
    // the kernel stores the unit into a u32 here
    let unit = u64::from(stripe_unit as u32);
    if let Some(prev) = prev_offset {
        if (prev - segment_offset) / unit != (req_offset - segment_offset) / unit {
            return None;
        }
    }
    let within = (req_offset - segment_offset) % unit;
    Some((unit - within).min(size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Geometry;
    use proptest::prelude::*;

    const KIB: u64 = 1 << 10;
    const MIB: u64 = 1 << 20;

    /// Examples worked by hand from the kernel's arithmetic.
    #[test]
    fn worked_examples() {
        // 4 data servers, 1 MiB unit
        assert_eq!(calc_dss_id(MIB, 4, 0), 0);
        assert_eq!(calc_dss_id(MIB, 4, MIB - 1), 0);
        assert_eq!(calc_dss_id(MIB, 4, MIB), 1);
        assert_eq!(calc_dss_id(MIB, 4, 3 * MIB + 4096), 3);
        assert_eq!(calc_dss_id(MIB, 4, 4 * MIB), 0);
        assert_eq!(calc_dss_id(MIB, 4, 6 * MIB), 2);
        // 2 data servers, 64 KiB unit: 192 KiB is unit 3, odd → server 1
        assert_eq!(calc_dss_id(64 * KIB, 2, 192 * KIB), 1);
        assert_eq!(calc_dss_id(64 * KIB, 2, 256 * KIB), 0);
        // one server or no unit: always 0
        assert_eq!(calc_dss_id(MIB, 1, 7 * MIB), 0);
        assert_eq!(calc_dss_id(0, 4, 7 * MIB), 0);

        // a 1 MiB rsize read at 1.5 MiB with a 1 MiB unit: only 512 KiB fit before the unit
        // ends; the next request starts a new RPC (to the next server)
        assert_eq!(pg_test(MIB, 0, None, MIB + MIB / 2, MIB), Some(MIB / 2));
        assert_eq!(pg_test(MIB, 0, Some(MIB + MIB / 2), 2 * MIB, MIB), None);
        // a 64 KiB unit caps every RPC at 64 KiB whatever the rsize
        assert_eq!(pg_test(64 * KIB, 0, None, 0, MIB), Some(64 * KIB));
    }

    #[test]
    fn geometry_matches_worked_examples() {
        let g = Geometry::four_two(MIB).unwrap();
        for (offset, server) in [(0, 0), (MIB, 1), (3 * MIB + 4096, 3), (6 * MIB, 2)] {
            assert_eq!(g.locate(offset).shard, server, "offset {offset}");
        }
        let g = Geometry::two_one(64 * KIB).unwrap();
        assert_eq!(g.locate(192 * KIB).shard, 1);
        assert_eq!(g.locate(256 * KIB).shard, 0);
    }

    proptest! {
        /// The geometry puts every byte on the data server the kernel reads it from.
        #[test]
        fn geometry_agrees_with_the_kernel(
            offset in 0u64..(1 << 52),
            preset in 0..2usize,
            unit_pages in 1u64..=(crate::geometry::MAX_UNIT / crate::geometry::UNIT_ALIGN),
        ) {
            let unit = unit_pages * crate::geometry::UNIT_ALIGN;
            let g = [Geometry::four_two(unit), Geometry::two_one(unit)][preset].clone().unwrap();
            prop_assert_eq!(g.locate(offset).shard, calc_dss_id(unit, g.k(), offset));
        }

        /// With segments that start on a stripe boundary (what cfs hands out), the kernel's
        /// RPC boundaries are exactly the geometry's pieces.
        #[test]
        fn geometry_pieces_are_the_kernels_rpcs(
            offset in 0u64..(1 << 32),
            len in 1u64..(16 << 20),
            segment_stripes in 0u64..4,
            rsize_pages in 1u64..=256,
        ) {
            let g = Geometry::four_two(256 * KIB).unwrap();
            let segment_offset = segment_stripes * g.stripe_data();
            let offset = offset + segment_offset;
            let rsize = rsize_pages * 4096;
            // the kernel's RPCs: grow while pg_test allows and rsize is not reached
            let mut rpcs = Vec::new();
            let mut at = offset;
            while at < offset + len {
                let start = at;
                let left = (offset + len - at).min(rsize);
                let n = pg_test(g.unit(), segment_offset, None, at, left).unwrap();
                at += n;
                rpcs.push((start, n, calc_dss_id(g.unit(), g.k(), start)));
            }
            // the geometry's pieces, cut again at rsize
            let mut mine = Vec::new();
            for p in g.pieces(offset, len) {
                let mut o = p.offset;
                while o < p.offset + p.len {
                    let n = (p.offset + p.len - o).min(rsize);
                    mine.push((o, n, p.at.shard));
                    o += n;
                }
            }
            prop_assert_eq!(rpcs, mine);
        }
    }
}
