//! Which shards' leaderships move where: a pure plan, computed by shard 0's leader from its
//! view of every shard (`handover::balance_round` carries it out, one hand-over per move).
//!
//! Placement (`placement`) spreads the voter roles; this spreads the leaderships among them.
//! They drift apart by themselves: a node that restarts (or was partitioned off) comes back a
//! follower everywhere, the survivors having won every election while it was away, and
//! openraft never moves a leadership on its own. A leader does the shard's appends, its
//! fdatasyncs and answers its forwarded commands, so an uneven spread is an uneven load.
//!
//! The plan moves as little as it can: one leadership at a time, from the live node leading
//! most to the live node leading least, only while they differ by two or more (so counts end
//! up equal give or take one), only to a live voter of the shard, never shard 0 (whose leader
//! drives placement and this, and whose move restarts that driver's bookkeeping) while another
//! shard does the same, and only shards the caller marks `movable` (a stable leader, no
//! membership change under way, not tried just now). A shard with more than `MAX_VOTERS`
//! voters is left alone: a hand-over wins with the old leader's vote and the new one's only
//! (`handover`), a majority of three but not of more. So is a shard whose leader no longer
//! votes in it (a placement change made it a learner: openraft 0.9 lets a leader demoted to
//! learner go on leading), for the same reason: its vote does not count.
use std::collections::{BTreeMap, BTreeSet};

/// Most voters a shard may have for its leadership to move (see the module's comment).
pub const MAX_VOTERS: usize = 3;

/// One shard as the balancer sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardLead {
    pub shard: u16,
    pub voters: BTreeSet<u64>,
    pub leader: Option<u64>,
    /// Whether its leadership may move now (the caller's call: leader stable for a while, no
    /// membership change in flight, no hand-over failed just now).
    pub movable: bool,
}

/// "Shard `shard`: leader `from` hands over to voter `to`."
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Move {
    pub shard: u16,
    pub from: u64,
    pub to: u64,
}

/// At most `max` moves that bring the live nodes' leadership counts closer to even. `live`:
/// the nodes that answered just now; a node votes for leadership only where it is a voter, so
/// only live nodes voting somewhere count.
pub fn moves(shards: &[ShardLead], live: &BTreeSet<u64>, max: usize) -> Vec<Move> {
    let mut leads: BTreeMap<u64, usize> = shards
        .iter()
        .flat_map(|s| s.voters.iter())
        .filter(|n| live.contains(n))
        .map(|n| (*n, 0))
        .collect();
    for s in shards {
        if let Some(c) = s.leader.and_then(|l| leads.get_mut(&l)) {
            *c += 1;
        }
    }
    let mut out: Vec<Move> = Vec::new();
    let mut moved: BTreeSet<u16> = BTreeSet::new();
    while out.len() < max {
        let mut most: Vec<u64> = leads.keys().copied().collect();
        most.sort_by_key(|n| std::cmp::Reverse((leads[n], *n)));
        let mut least = most.clone();
        least.reverse();
        let step = most.iter().find_map(|&hi| {
            least
                .iter()
                .take_while(|lo| leads[&hi] >= leads[lo] + 2)
                .find_map(|&lo| {
                    shards
                        .iter()
                        .filter(|s| {
                            s.movable
                                && s.leader == Some(hi)
                                && s.voters.contains(&hi)
                                && s.voters.contains(&lo)
                                && s.voters.len() <= MAX_VOTERS
                                && !moved.contains(&s.shard)
                        })
                        // Shard 0 last; otherwise the lowest shard.
                        .min_by_key(|s| (s.shard == 0, s.shard))
                        .map(|s| Move {
                            shard: s.shard,
                            from: hi,
                            to: lo,
                        })
                })
        });
        let Some(m) = step else {
            break;
        };
        moved.insert(m.shard);
        if let Some(c) = leads.get_mut(&m.from) {
            *c -= 1;
        }
        if let Some(c) = leads.get_mut(&m.to) {
            *c += 1;
        }
        out.push(m);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[u64]) -> BTreeSet<u64> {
        v.iter().copied().collect()
    }

    /// `n` shards, all movable, with these voters and `leader(shard)` leading.
    fn shards(
        n: u16,
        voters: impl Fn(u16) -> Vec<u64>,
        leader: impl Fn(u16) -> u64,
    ) -> Vec<ShardLead> {
        (0..n)
            .map(|s| ShardLead {
                shard: s,
                voters: set(&voters(s)),
                leader: Some(leader(s)),
                movable: true,
            })
            .collect()
    }

    /// Leadership counts after the moves, checking each one on the way: it starts at the
    /// shard's leader, goes to a live voter of it, and no shard moves twice.
    fn after(shards: &[ShardLead], live: &BTreeSet<u64>, ms: &[Move]) -> BTreeMap<u64, usize> {
        let mut leader: BTreeMap<u16, Option<u64>> =
            shards.iter().map(|s| (s.shard, s.leader)).collect();
        let mut seen = BTreeSet::new();
        for m in ms {
            let s = shards
                .iter()
                .find(|s| s.shard == m.shard)
                .expect("a known shard");
            assert!(
                seen.insert(m.shard),
                "shard {} moved twice: {ms:?}",
                m.shard
            );
            assert_eq!(leader[&m.shard], Some(m.from), "{m:?}");
            assert!(s.voters.contains(&m.to) && live.contains(&m.to), "{m:?}");
            assert!(s.movable, "{m:?}");
            leader.insert(m.shard, Some(m.to));
        }
        let mut count = BTreeMap::new();
        for l in leader.values().flatten() {
            *count.entry(*l).or_default() += 1;
        }
        count
    }

    fn spread(count: &BTreeMap<u64, usize>, nodes: &[u64]) -> (usize, usize) {
        let c: Vec<usize> = nodes
            .iter()
            .map(|n| count.get(n).copied().unwrap_or(0))
            .collect();
        (
            c.iter().copied().min().unwrap_or(0),
            c.iter().copied().max().unwrap_or(0),
        )
    }

    #[test]
    fn even_leaderships_stay_where_they_are() {
        let s = shards(24, |_| vec![1, 2, 3], |s| u64::from(s % 3) + 1);
        assert!(moves(&s, &set(&[1, 2, 3]), 100).is_empty());
        // Off by one is even enough: 9, 8, 7 would move one, 8, 8, 7 none.
        let s = shards(23, |_| vec![1, 2, 3], |s| u64::from(s % 3) + 1);
        assert!(moves(&s, &set(&[1, 2, 3]), 100).is_empty());
    }

    #[test]
    fn a_restarted_node_gets_its_share_from_the_others() {
        // Node 3 restarted: nodes 1 and 2 lead everything.
        let s = shards(24, |_| vec![1, 2, 3], |s| u64::from(s % 2) + 1);
        let live = set(&[1, 2, 3]);
        let ms = moves(&s, &live, 100);
        assert_eq!(ms.len(), 8, "{ms:?}");
        assert!(ms.iter().all(|m| m.to == 3 && m.shard != 0), "{ms:?}");
        let count = after(&s, &live, &ms);
        assert_eq!(spread(&count, &[1, 2, 3]), (8, 8), "{count:?}");
    }

    #[test]
    fn at_most_max_moves_a_round_each_closer_to_even() {
        let s = shards(24, |_| vec![1, 2, 3], |s| u64::from(s % 2) + 1);
        let live = set(&[1, 2, 3]);
        let ms = moves(&s, &live, 3);
        assert_eq!(ms.len(), 3);
        let count = after(&s, &live, &ms);
        assert_eq!(count.get(&3), Some(&3));
        assert_eq!(count[&1] + count[&2], 21);
        assert!(count[&1].abs_diff(count[&2]) <= 1, "{count:?}");
    }

    #[test]
    fn five_nodes_with_three_voters_a_shard_end_even() {
        // 60 shards over 5 nodes, voters {s, s+1, s+2} mod 5 (each node votes in 36), led
        // by their first two voters only: node 4 restarted and leads nothing, and lopsided
        // leaders elsewhere. Like the 65/51/0/89/51 seen after a kill -9.
        let voters = |s: u16| {
            (0..3)
                .map(|k| u64::from((s + k) % 5) + 1)
                .collect::<Vec<_>>()
        };
        let mut s = shards(60, voters, |s| {
            let v = voters(s);
            if v[0] == 4 {
                v[1]
            } else {
                v[0]
            }
        });
        for x in s.iter_mut().filter(|x| x.shard % 7 == 0) {
            // Some leaders elsewhere among the voters, but never node 4.
            let alt = x
                .voters
                .iter()
                .copied()
                .find(|v| *v != 4 && Some(*v) != x.leader);
            x.leader = alt.or(x.leader);
        }
        let live = set(&[1, 2, 3, 4, 5]);
        let before = after(&s, &live, &[]);
        assert_eq!(before.get(&4), None, "{before:?}");
        let ms = moves(&s, &live, 1000);
        let count = after(&s, &live, &ms);
        let (lo, hi) = spread(&count, &[1, 2, 3, 4, 5]);
        assert!(hi - lo <= 1, "{count:?} after {ms:?}");
        assert_eq!(count.values().sum::<usize>(), 60);
        // Nothing moved for nothing: each move took from a node above the even share to one
        // below it, so no more than the shortfall.
        let short: usize = [1, 2, 3, 4, 5]
            .iter()
            .map(|n| 12usize.saturating_sub(before.get(n).copied().unwrap_or(0)))
            .sum();
        assert_eq!(ms.len(), short, "{before:?} -> {count:?}");
    }

    #[test]
    fn only_to_live_voters_and_only_movable_shards() {
        // Node 3 restarted but does not answer (yet): nothing goes to it.
        let s = shards(24, |_| vec![1, 2, 3], |s| u64::from(s % 2) + 1);
        assert!(moves(&s, &set(&[1, 2]), 100).is_empty());
        // Node 4 answers but votes nowhere: it leads nothing and gets nothing.
        let s = shards(24, |_| vec![1, 2, 3], |s| u64::from(s % 3) + 1);
        assert!(moves(&s, &set(&[1, 2, 3, 4]), 100).is_empty());
        // Shards not movable now (an unsettled leader, a membership change) stay; shard 0
        // goes last, when the others that may move did not do.
        let mut s = shards(24, |_| vec![1, 2, 3], |s| u64::from(s % 2) + 1);
        for x in s.iter_mut().filter(|x| x.shard >= 4) {
            x.movable = false;
        }
        let ms = moves(&s, &set(&[1, 2, 3]), 100);
        assert_eq!(
            ms.iter().map(|m| m.shard).collect::<Vec<_>>(),
            vec![1, 2, 3, 0],
            "{ms:?}"
        );
        // A target that does not vote in the shard is not one: node 3 votes in odd shards only.
        let s = shards(
            24,
            |s| {
                if s % 2 == 1 {
                    vec![1, 2, 3]
                } else {
                    vec![1, 2, 4]
                }
            },
            |s| {
                if s < 12 {
                    1
                } else {
                    2
                }
            },
        );
        let live = set(&[1, 2, 3, 4]);
        let ms = moves(&s, &live, 100);
        let count = after(&s, &live, &ms);
        assert_eq!(spread(&count, &[1, 2, 3, 4]), (6, 6), "{count:?}");
    }

    #[test]
    fn shard_0_moves_only_when_no_other_shard_will_do() {
        // Node 1 leads shards 0..12, node 2 the rest: node 3 gets four of 1..12, never 0.
        let s = shards(24, |_| vec![1, 2, 3], |s| if s < 12 { 1 } else { 2 });
        let ms = moves(&s, &set(&[1, 2, 3]), 100);
        assert!(!ms.is_empty() && ms.iter().all(|m| m.shard != 0), "{ms:?}");
        // Node 1 leads shard 0 and 1, node 2 nothing, shard 1 is not movable: shard 0 goes.
        let mut s = shards(2, |_| vec![1, 2, 3], |_| 1);
        s[1].movable = false;
        let ms = moves(&s, &set(&[1, 2]), 100);
        assert_eq!(ms.len(), 1, "{ms:?}");
        assert_eq!(ms[0].shard, 0);
    }

    #[test]
    fn shards_with_more_voters_or_no_leader_are_left_alone() {
        // Five voters: the old leader and the new one are not a majority.
        let s = shards(10, |_| vec![1, 2, 3, 4, 5], |_| 1);
        assert!(moves(&s, &set(&[1, 2, 3, 4, 5]), 100).is_empty());
        // No leader (an election under way), or one that is down: counted for no one.
        let mut s = shards(6, |_| vec![1, 2, 3], |s| u64::from(s % 2) + 1);
        for x in &mut s {
            x.leader = None;
        }
        assert!(moves(&s, &set(&[1, 2, 3]), 100).is_empty());
        // A leader that is a learner now: its vote would not count, the shard stays.
        let mut s = shards(6, |_| vec![1, 2, 3], |_| 1);
        s[0].voters = set(&[2, 3, 4]);
        let ms = moves(&s, &set(&[1, 2, 3, 4]), 100);
        assert!(!ms.is_empty() && ms.iter().all(|m| m.shard != 0), "{ms:?}");
        // Two voters (a two-node service): the old leader and the new one are both.
        let s = shards(6, |_| vec![1, 2], |_| 1);
        let live = set(&[1, 2]);
        let ms = moves(&s, &live, 100);
        assert_eq!(spread(&after(&s, &live, &ms), &[1, 2]), (3, 3), "{ms:?}");
    }
}
