//! Which data servers hold a chunk.
//!
//! Rendezvous (highest-random-weight) hashing rather than a ring with virtual nodes:
//! - Each (chunk, DS) pair gets an independent pseudo-random score; a chunk lives on the k
//!   best-scoring DSs. Adding a DS moves exactly the chunks for which it now scores in the top k
//!   (≈ k/(n+1) of them) and every moved chunk moves *to* it; removing one moves only the chunks
//!   it held. A ring only approaches this as the virtual node count grows.
//! - The ranking is a full order over DSs, so "k distinct DSs in distinct failure domains" is a
//!   greedy walk down one list, and the fallbacks (shared domains, fewer mirrors) are the same
//!   walk with a looser rule. A ring needs a clockwise walk with skips that skews load toward
//!   the successors of crowded domains.
//! - Balance comes from the hash alone: no virtual node count to tune, no ring to rebuild or
//!   keep consistent between MDS replicas.
//! - The cost, O(n) hashes per chunk, is a few microseconds for the tens-to-hundreds of DSs
//!   this system targets, paid once per new chunk (locations are then recorded by the MDS).
//!
//! Weights follow capacity (whole GiB, at least 1; equal until every Up DS has reported one)
//! using the logarithmic method (score = w / −ln u), which keeps the minimal-movement property
//! and reduces to plain HRW when all weights are equal. `tests::balance_and_movement` prints the measured numbers.

use thiserror::Error;

use crate::dsmap::{DsId, DsInfo, DsMap, DsState};
use crate::geometry::Segment;
use crate::FileId;

/// Where one chunk goes, best first (mirror 0 is the preferred copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub targets: Vec<DsId>,
    /// Set when the ideal (k DSs in k distinct failure domains) could not be met.
    pub shortfall: Option<Shortfall>,
}

/// Why a placement is weaker than asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shortfall {
    /// k distinct DSs, but only `domains` distinct failure domains among them.
    SharedFailureDomain { domains: usize },
    /// Fewer Up DSs than mirrors wanted.
    FewerMirrors { wanted: usize, got: usize },
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PlacementError {
    #[error("no data server is up")]
    NoDataServers,
    #[error("asked for zero mirrors")]
    ZeroMirrors,
}

/// Domain separation, so these scores never coincide with any other blake3 use of the same ids.
const PLACEMENT_CONTEXT: &[u8] = b"cfs placement v1";

fn unit_hash(file: FileId, chunk: u64, ds: DsId) -> f64 {
    let mut h = blake3::Hasher::new();
    h.update(PLACEMENT_CONTEXT);
    h.update(&file.0.to_le_bytes());
    h.update(&chunk.to_le_bytes());
    h.update(&ds.0.to_le_bytes());
    let out = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&out.as_bytes()[..8]);
    // 53 bits fill an f64 mantissa exactly; the half offset keeps u strictly inside (0, 1) so
    // ln(u) is finite and negative.
    ((u64::from_le_bytes(b) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

fn weight(ds: &DsInfo, weighted: bool) -> f64 {
    if weighted {
        (ds.capacity_bytes >> 30).max(1) as f64
    } else {
        1.0
    }
}

fn score(file: FileId, chunk: u64, ds: &DsInfo, weighted: bool) -> f64 {
    weight(ds, weighted) / -unit_hash(file, chunk, ds.id).ln()
}

/// Every Up DS ordered by preference for this chunk. Repair uses the tail of this list to pick
/// a replacement that moves nothing else.
pub fn rank(map: &DsMap, file: FileId, chunk: u64) -> Vec<DsId> {
    rank_infos(map, file, chunk)
        .into_iter()
        .map(|d| d.id)
        .collect()
}

fn rank_infos(map: &DsMap, file: FileId, chunk: u64) -> Vec<&DsInfo> {
    // A DS that has not reported its capacity yet (0) would otherwise weigh next to nothing and
    // get almost no chunks; until every Up DS has reported, all weigh the same.
    let weighted = map.up().all(|d| d.capacity_bytes > 0);
    let mut scored: Vec<(f64, &DsInfo)> = map
        .up()
        .map(|d| (score(file, chunk, d, weighted), d))
        .collect();
    // Ties (astronomically unlikely) fall back to the id so the order is still total.
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.id.cmp(&b.1.id)));
    scored.into_iter().map(|(_, d)| d).collect()
}

/// Chooses `k` distinct Up DSs for a chunk, in distinct failure domains when there are enough;
/// otherwise distinct DSs sharing domains; otherwise as many DSs as are up.
pub fn place(map: &DsMap, file: FileId, chunk: u64, k: usize) -> Result<Placement, PlacementError> {
    if k == 0 {
        return Err(PlacementError::ZeroMirrors);
    }
    let ranked = rank_infos(map, file, chunk);
    if ranked.is_empty() {
        return Err(PlacementError::NoDataServers);
    }

    let mut chosen: Vec<&DsInfo> = Vec::with_capacity(k);
    let mut domains: Vec<String> = Vec::with_capacity(k);
    for d in &ranked {
        if chosen.len() == k {
            break;
        }
        let dom = d.domain_key();
        if !domains.contains(&dom) {
            domains.push(dom);
            chosen.push(d);
        }
    }
    let distinct_domains = chosen.len();
    // Fill from the same ranking so the extra copies are as stable as the first ones.
    for d in &ranked {
        if chosen.len() == k {
            break;
        }
        if !chosen.iter().any(|c| c.id == d.id) {
            chosen.push(d);
        }
    }

    let shortfall = if chosen.len() < k {
        Some(Shortfall::FewerMirrors {
            wanted: k,
            got: chosen.len(),
        })
    } else if distinct_domains < k {
        Some(Shortfall::SharedFailureDomain {
            domains: distinct_domains,
        })
    } else {
        None
    };
    Ok(Placement {
        targets: chosen.into_iter().map(|d| d.id).collect(),
        shortfall,
    })
}

/// Placements for every chunk of a layout segment, in stripe order: the `targets` argument of
/// [`crate::flexfiles::build_layout`] for chunks that have no recorded location yet.
pub fn place_segment(
    map: &DsMap,
    file: FileId,
    segment: &Segment,
    k: usize,
) -> Result<Vec<Placement>, PlacementError> {
    segment.chunks().map(|c| place(map, file, c, k)).collect()
}

/// The recorded copies of a chunk a layout may still point at, in recorded order. A Draining DS
/// still serves what it holds until its chunks have moved; a Down or forgotten one does not.
pub fn serving(map: &DsMap, locations: &[DsId]) -> Vec<DsId> {
    locations
        .iter()
        .copied()
        .filter(|&id| {
            map.get(id)
                .is_some_and(|d| matches!(d.state, DsState::Up | DsState::Draining))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::{ChunkGeometry, SegmentStyle};
    use proptest::prelude::*;
    use std::collections::{HashMap, HashSet};

    fn map_of(n: u64, domains: Option<u64>) -> DsMap {
        let mut m = DsMap::new();
        for i in 0..n {
            let mut d = DsInfo::new(DsId(i), format!("127.0.0.1:{}", 20000 + i).parse().unwrap());
            if let Some(nd) = domains {
                d.failure_domain = format!("rack{}", i % nd);
            }
            m.add(d).unwrap();
        }
        m
    }

    fn domain_of(m: &DsMap, id: DsId) -> String {
        m.get(id).unwrap().domain_key()
    }

    const CHUNKS: u64 = 100_000;

    fn primaries(m: &DsMap, k: usize) -> Vec<Vec<DsId>> {
        (0..CHUNKS)
            .map(|c| place(m, FileId(c / 64), c % 64, k).unwrap().targets)
            .collect()
    }

    #[test]
    fn balance_and_movement() {
        let m10 = map_of(10, None);
        let before = primaries(&m10, 2);

        let mut load: HashMap<DsId, u64> = HashMap::new();
        for t in &before {
            *load.entry(t[0]).or_default() += 1;
        }
        let mean = CHUNKS as f64 / 10.0;
        let worst = load
            .values()
            .map(|&l| (l as f64 - mean).abs() / mean)
            .fold(0.0, f64::max);
        eprintln!(
            "balance: 10 DS, {CHUNKS} chunks, worst primary deviation {:.2}%",
            worst * 100.0
        );
        // Binomial sd is ~0.95% of the mean here; 5% is over 5 sd.
        assert!(worst < 0.05, "worst deviation {worst}");

        let mut m11 = m10.clone();
        m11.add(DsInfo::new(DsId(10), "127.0.0.1:20010".parse().unwrap()))
            .unwrap();
        let after = primaries(&m11, 2);
        let mut primary_moved = 0;
        let mut set_changed = 0;
        for (b, a) in before.iter().zip(&after) {
            if b[0] != a[0] {
                primary_moved += 1;
                assert_eq!(a[0], DsId(10), "a primary only ever moves to the new DS");
            }
            if b != a {
                set_changed += 1;
                assert!(
                    a.contains(&DsId(10)),
                    "only chunks gaining the new DS change"
                );
            }
        }
        let pf = primary_moved as f64 / CHUNKS as f64;
        let sf = set_changed as f64 / CHUNKS as f64;
        eprintln!(
            "movement: 10->11 DS, primary moved {:.2}% (ideal {:.2}%), mirror set changed {:.2}% (ideal {:.2}%)",
            pf * 100.0,
            100.0 / 11.0,
            sf * 100.0,
            200.0 / 11.0
        );
        assert!((pf - 1.0 / 11.0).abs() < 0.01, "primary moved {pf}");
        assert!((sf - 2.0 / 11.0).abs() < 0.01, "set changed {sf}");

        // Taking a DS down moves only what it held.
        let mut down = m10.clone();
        down.set_state(DsId(3), DsState::Down).unwrap();
        let after_down = primaries(&down, 2);
        let mut changed = 0;
        for (b, a) in before.iter().zip(&after_down) {
            if b != a {
                changed += 1;
                assert!(b.contains(&DsId(3)));
                assert!(!a.contains(&DsId(3)));
            }
        }
        eprintln!(
            "movement: 1 of 10 DS down, mirror set changed {:.2}% (ideal {:.2}%)",
            changed as f64 * 100.0 / CHUNKS as f64,
            20.0
        );
    }

    #[test]
    fn movement_with_failure_domains_only_involves_the_new_ds() {
        // 10 DSs in 5 racks; a new DS joins an existing rack, then another joins a new rack.
        let m10 = map_of(10, Some(5));
        let before = primaries(&m10, 2);
        for (id, rack) in [(10, "rack2"), (11, "rack9")] {
            let mut m = m10.clone();
            let mut d = DsInfo::new(DsId(id), "127.0.0.1:1".parse().unwrap());
            d.failure_domain = rack.into();
            m.add(d).unwrap();
            let after = primaries(&m, 2);
            let mut changed = 0;
            for (b, a) in before.iter().zip(&after) {
                if b != a {
                    changed += 1;
                    assert!(a.contains(&DsId(id)));
                    assert_eq!(b.iter().filter(|x| !a.contains(x)).count(), 1);
                }
            }
            eprintln!(
                "movement: 10 DS/5 racks + 1 DS in {rack}: mirror set changed {:.2}%",
                changed as f64 * 100.0 / CHUNKS as f64
            );
        }
    }

    #[test]
    fn segment_placement_and_serving() {
        let mut m = map_of(4, None);
        let g = ChunkGeometry::default();
        let seg = g.segment(0, SegmentStyle::Striped { width: 3 }).unwrap();
        let ps = place_segment(&m, FileId(5), &seg, 2).unwrap();
        assert_eq!(ps.len(), 3);
        for (c, p) in seg.chunks().zip(&ps) {
            assert_eq!(p, &place(&m, FileId(5), c, 2).unwrap());
        }
        m.set_state(DsId(1), DsState::Down).unwrap();
        m.set_state(DsId(2), DsState::Draining).unwrap();
        let locs = [DsId(2), DsId(1), DsId(9), DsId(0)];
        assert_eq!(serving(&m, &locs), vec![DsId(2), DsId(0)]);
    }

    #[test]
    fn weighted_by_capacity() {
        let mut m = map_of(4, None);
        for i in 0..4 {
            m.set_usage(DsId(i), if i == 0 { 200 << 30 } else { 100 << 30 }, 0)
                .unwrap();
        }
        let mut load = [0u64; 4];
        for c in 0..50_000u64 {
            let p = place(&m, FileId(1), c, 1).unwrap();
            load[p.targets[0].0 as usize] += 1;
        }
        let ratio = load[0] as f64 / ((load[1] + load[2] + load[3]) as f64 / 3.0);
        eprintln!("weighting: 2x capacity DS gets {ratio:.2}x the chunks");
        assert!((ratio - 2.0).abs() < 0.1, "ratio {ratio}");

        // One DS yet to report its capacity: everyone weighs the same meanwhile.
        m.set_usage(DsId(3), 0, 0).unwrap();
        let mut load = [0u64; 4];
        for c in 0..20_000u64 {
            load[place(&m, FileId(1), c, 1).unwrap().targets[0].0 as usize] += 1;
        }
        assert!(
            load.iter().all(|&l| (4_500..5_500).contains(&l)),
            "{load:?}"
        );
    }

    #[test]
    fn failure_domains_respected_then_relaxed() {
        // 6 DSs in 3 racks: k=3 gets three racks, k=4 must share one.
        let m = map_of(6, Some(3));
        for c in 0..2000 {
            let p = place(&m, FileId(9), c, 3).unwrap();
            let doms: HashSet<_> = p.targets.iter().map(|&d| domain_of(&m, d)).collect();
            assert_eq!(doms.len(), 3);
            assert_eq!(p.shortfall, None);

            let p = place(&m, FileId(9), c, 4).unwrap();
            let ids: HashSet<_> = p.targets.iter().collect();
            assert_eq!(ids.len(), 4);
            assert_eq!(
                p.shortfall,
                Some(Shortfall::SharedFailureDomain { domains: 3 })
            );
        }
        // 6 DSs, ask for 8: all six, and say so.
        let p = place(&m, FileId(9), 0, 8).unwrap();
        assert_eq!(p.targets.len(), 6);
        assert_eq!(
            p.shortfall,
            Some(Shortfall::FewerMirrors { wanted: 8, got: 6 })
        );
    }

    #[test]
    fn domains_first_even_when_a_rack_scores_high() {
        // Two DSs share rack A, one is alone in B: every two-mirror placement spans both racks.
        let mut m = DsMap::new();
        for (i, r) in [(0, "A"), (1, "A"), (2, "B")] {
            let mut d = DsInfo::new(DsId(i), "127.0.0.1:1".parse().unwrap());
            d.failure_domain = r.into();
            m.add(d).unwrap();
        }
        for c in 0..1000 {
            let p = place(&m, FileId(3), c, 2).unwrap();
            assert!(p.targets.contains(&DsId(2)), "{p:?}");
            assert_eq!(p.shortfall, None);
        }
    }

    #[test]
    fn errors_and_single_ds() {
        let mut m = DsMap::new();
        assert_eq!(
            place(&m, FileId(1), 0, 2),
            Err(PlacementError::NoDataServers)
        );
        m.add(DsInfo::new(DsId(5), "127.0.0.1:1".parse().unwrap()))
            .unwrap();
        assert_eq!(place(&m, FileId(1), 0, 0), Err(PlacementError::ZeroMirrors));
        let p = place(&m, FileId(1), 0, 2).unwrap();
        assert_eq!(p.targets, vec![DsId(5)]);
        assert_eq!(
            p.shortfall,
            Some(Shortfall::FewerMirrors { wanted: 2, got: 1 })
        );
        m.set_state(DsId(5), DsState::Draining).unwrap();
        assert_eq!(
            place(&m, FileId(1), 0, 1),
            Err(PlacementError::NoDataServers)
        );
    }

    proptest! {
        #[test]
        fn placement_invariants(
            n in 1u64..12,
            racks in 1u64..6,
            down in proptest::collection::vec(any::<bool>(), 12),
            k in 1usize..5,
            file in any::<u64>(),
            chunk in any::<u64>(),
        ) {
            let mut m = map_of(n, Some(racks));
            for i in 0..n {
                if down[i as usize] {
                    m.set_state(DsId(i), DsState::Down).unwrap();
                }
            }
            let up: Vec<DsId> = m.up().map(|d| d.id).collect();
            match place(&m, FileId(file), chunk, k) {
                Err(e) => prop_assert!(up.is_empty() && e == PlacementError::NoDataServers),
                Ok(p) => {
                    // Deterministic, distinct, Up only, as many as possible.
                    prop_assert_eq!(&p, &place(&m, FileId(file), chunk, k).unwrap());
                    let ids: HashSet<_> = p.targets.iter().copied().collect();
                    prop_assert_eq!(ids.len(), p.targets.len());
                    prop_assert!(p.targets.iter().all(|t| up.contains(t)));
                    prop_assert_eq!(p.targets.len(), k.min(up.len()));
                    let up_domains: HashSet<_> = up.iter().map(|&d| domain_of(&m, d)).collect();
                    let doms: HashSet<_> = p.targets.iter().map(|&d| domain_of(&m, d)).collect();
                    prop_assert_eq!(doms.len(), p.targets.len().min(up_domains.len()));
                    // The preferred copy is the top of the ranking.
                    prop_assert_eq!(p.targets[0], rank(&m, FileId(file), chunk)[0]);
                }
            }
        }
    }
}
