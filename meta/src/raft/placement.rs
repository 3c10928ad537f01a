//! Which nodes vote in which shard: a pure plan, computed by shard 0's leader from its view of
//! every shard's membership (`members::drive_placement` carries it out).
//!
//! Every member node holds every shard, as a voter or as a learner: a learner receives the
//! log and applies it, so it serves reads from its own replica (after the read barrier, which
//! asks the leader for the index to wait for) and takes a voter's place without copying
//! anything first. Only `REPLICAS` nodes vote, so a change waits for two of three fdatasyncs
//! whatever the node count, and the shards' leaders (always voters) spread over every node.
//! What a learner does not buy: memory and apply work still grow with the whole namespace on
//! every node (a node holding only its shards would have to forward reads of the others).
//!
//! The plan moves as little as it can: voters that are members stay; a shard short of voters
//! (a drained node's place) takes the members that vote least, live ones first; a shard with
//! too many (a cluster made with more nodes, whose groups start with every node a voter) drops
//! the ones that vote most, never its leader while another will do; then single roles move
//! from the live node voting most to the live node voting least while they differ by two or
//! more, never from a shard's leader. A node that is down keeps its roles for a while (a
//! restart would otherwise move them away and back), and a shard it votes in runs on the other
//! two; once it has been down longer than `[cluster] mds_replace_after_seconds` (`gone`), each
//! of its roles goes to a live member that does not vote there, when there is one, so the next
//! failure finds three live voters again. That costs one membership change per shard and no
//! copying (the member holds the shard as a learner); when the node comes back it is a learner
//! everywhere and the evening-out gives it its share again.
//!
//! Failure domains (`[cluster] metadata_domains`, or a joined node's `failure_domain`): a
//! shard's voters are in as many distinct domains as the live nodes allow, so losing a rack
//! (or a zone) loses at most one voter of each shard while there are three domains. A node
//! with no domain is a domain of its own, which is the plain rule of distinct nodes. Every
//! step above keeps it: a new voter comes from a domain the shard lacks when there is one, a
//! voter too many goes from a domain the shard has twice, a shard with two voters in one
//! domain trades one of them (never its leader) for a live node of a domain it lacks, and the
//! evening-out never moves a role to a node whose domain the shard already has. Evenness
//! gives way to domains: with domains of unequal size, the nodes of a small domain vote in
//! more shards.
use std::collections::{BTreeMap, BTreeSet};

/// Voters per shard (fewer while the service has fewer nodes).
pub const REPLICAS: usize = 3;

/// One shard as the planner sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardView {
    pub shard: u16,
    pub voters: BTreeSet<u64>,
    pub leader: Option<u64>,
}

/// Where nodes fail together: each node's failure domain, by id. A node with none is a
/// domain of its own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Domains(pub BTreeMap<u64, String>);

/// A node's domain as the planner compares them: named, or the node alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Domain<'a> {
    Named(&'a str),
    Alone(u64),
}

impl Domains {
    fn of(&self, node: u64) -> Domain<'_> {
        self.0
            .get(&node)
            .map_or(Domain::Alone(node), |d| Domain::Named(d.as_str()))
    }

    /// Whether `node` shares a domain with a voter of `voters` other than itself.
    fn taken(&self, voters: &BTreeSet<u64>, node: u64) -> bool {
        let d = self.of(node);
        voters.iter().any(|v| *v != node && self.of(*v) == d)
    }

    /// How many distinct domains `voters` span.
    fn spanned(&self, voters: &BTreeSet<u64>) -> usize {
        voters
            .iter()
            .map(|v| self.of(*v))
            .collect::<BTreeSet<_>>()
            .len()
    }
}

/// The voters each shard should have, for the shards where that differs from now. `nodes` is
/// the service's node set (shard 0's members), `live` those that answered just now, `gone`
/// those down for long enough to lose their roles, `domains` where they fail together.
pub fn plan(
    shards: &[ShardView],
    nodes: &BTreeSet<u64>,
    live: &BTreeSet<u64>,
    gone: &BTreeSet<u64>,
    domains: &Domains,
    replicas: usize,
) -> BTreeMap<u16, BTreeSet<u64>> {
    let want = replicas.min(nodes.len());
    let mut target: BTreeMap<u16, BTreeSet<u64>> = shards
        .iter()
        .map(|s| (s.shard, s.voters.intersection(nodes).copied().collect()))
        .collect();
    let leader: BTreeMap<u16, Option<u64>> = shards.iter().map(|s| (s.shard, s.leader)).collect();
    let mut load: BTreeMap<u64, usize> = nodes.iter().map(|n| (*n, 0)).collect();
    for t in target.values() {
        for v in t {
            *load.entry(*v).or_default() += 1;
        }
    }
    if want == 0 {
        return BTreeMap::new();
    }
    // A gone voter's place goes to a live member that does not vote there; with none, it
    // keeps it (fewer voters would make the survivors all needed).
    for (shard, t) in target.iter_mut() {
        let out: Vec<u64> = t.intersection(gone).copied().collect();
        for g in out {
            let rest: BTreeSet<u64> = t.iter().copied().filter(|v| *v != g).collect();
            let Some(add) = live
                .iter()
                .copied()
                .filter(|n| nodes.contains(n) && !t.contains(n) && !gone.contains(n))
                .min_by_key(|n| (domains.taken(&rest, *n), load[n], spread(*shard, *n)))
            else {
                break;
            };
            t.remove(&g);
            t.insert(add);
            if let Some(l) = load.get_mut(&g) {
                *l -= 1;
            }
            *load.entry(add).or_default() += 1;
        }
    }
    // The right number of voters in every shard.
    for (shard, t) in target.iter_mut() {
        let lead = leader.get(shard).copied().flatten();
        while t.len() > want {
            // Keep the leader (its removal is an election); drop a down node first, then one
            // whose domain the shard has twice, then the one voting most, the highest id on a
            // tie.
            let Some(out) = t
                .iter()
                .copied()
                .filter(|v| Some(*v) != lead || t.len() == 1)
                .max_by_key(|v| (!live.contains(v), domains.taken(t, *v), load[v], *v))
            else {
                break;
            };
            t.remove(&out);
            if let Some(l) = load.get_mut(&out) {
                *l -= 1;
            }
        }
        while t.len() < want {
            let Some(add) = nodes
                .iter()
                .copied()
                .filter(|n| !t.contains(n))
                .min_by_key(|n| {
                    let taken = domains.taken(t, *n);
                    (!live.contains(n), taken, load[n], spread(*shard, *n))
                })
            else {
                break;
            };
            t.insert(add);
            *load.entry(add).or_default() += 1;
        }
    }
    // Two voters of a shard in one domain while a live member of a domain it lacks is free:
    // one of them (not the leader; a down one first, then the one voting most) makes way.
    for (shard, t) in target.iter_mut() {
        let lead = leader.get(shard).copied().flatten();
        let trade = |t: &BTreeSet<u64>, load: &BTreeMap<u64, usize>| {
            let add = live
                .iter()
                .copied()
                .filter(|n| nodes.contains(n) && !t.contains(n) && !gone.contains(n))
                .filter(|n| !domains.taken(t, *n))
                .min_by_key(|n| (load[n], spread(*shard, *n)))?;
            let out = t
                .iter()
                .copied()
                .filter(|v| Some(*v) != lead && domains.taken(t, *v))
                .max_by_key(|v| (!live.contains(v), load[v], *v))?;
            Some((add, out))
        };
        while let Some((add, out)) = trade(t, &load) {
            t.remove(&out);
            t.insert(add);
            if let Some(l) = load.get_mut(&out) {
                *l -= 1;
            }
            *load.entry(add).or_default() += 1;
        }
    }
    // Even out the live nodes' roles, one role at a time: from the live node voting most that
    // has a role it can give (not one where it leads) to the live node voting least.
    let bound = shards.len() * want + 1;
    let live: Vec<u64> = live.iter().copied().filter(|n| nodes.contains(n)).collect();
    for _ in 0..bound {
        let Some(lo) = live
            .iter()
            .copied()
            .min_by_key(|n| (load[n], std::cmp::Reverse(*n)))
        else {
            break;
        };
        let mut givers = live.clone();
        givers.sort_by_key(|n| std::cmp::Reverse((load[n], *n)));
        let step = givers
            .into_iter()
            .take_while(|hi| load[hi] >= load[&lo] + 2)
            .find_map(|hi| {
                target
                    .iter()
                    .filter(|(shard, t)| {
                        t.contains(&hi)
                            && !t.contains(&lo)
                            && leader.get(*shard).copied().flatten() != Some(hi)
                            && domains.spanned(&swapped(t, hi, lo)) >= domains.spanned(t)
                    })
                    .map(|(shard, _)| *shard)
                    .min_by_key(|shard| spread(*shard, lo))
                    .map(|shard| (hi, shard))
            });
        let Some((hi, shard)) = step else {
            break;
        };
        if let Some(t) = target.get_mut(&shard) {
            t.remove(&hi);
            t.insert(lo);
        }
        if let Some(l) = load.get_mut(&hi) {
            *l -= 1;
        }
        *load.entry(lo).or_default() += 1;
    }
    shards
        .iter()
        .filter_map(|s| {
            let t = target.get(&s.shard)?;
            (*t != s.voters).then(|| (s.shard, t.clone()))
        })
        .collect()
}

/// `voters` with `out` replaced by `add`.
fn swapped(voters: &BTreeSet<u64>, out: u64, add: u64) -> BTreeSet<u64> {
    let mut t = voters.clone();
    t.remove(&out);
    t.insert(add);
    t
}

/// A fixed pseudo-random order of nodes per shard, so that ties do not always go to the same
/// node (which would put every new role of a shard range on one node).
fn spread(shard: u16, node: u64) -> u64 {
    let mut x = (u64::from(shard) << 32) ^ node;
    x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^ (x >> 29)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[u64]) -> BTreeSet<u64> {
        v.iter().copied().collect()
    }

    fn none() -> BTreeSet<u64> {
        BTreeSet::new()
    }

    fn shards(n: u16, voters: &[u64], leader: impl Fn(u16) -> u64) -> Vec<ShardView> {
        (0..n)
            .map(|s| ShardView {
                shard: s,
                voters: set(voters),
                leader: Some(leader(s)),
            })
            .collect()
    }

    /// The shards after the plan, and each node's voter count.
    fn after(
        before: &[ShardView],
        p: &BTreeMap<u16, BTreeSet<u64>>,
    ) -> (Vec<ShardView>, BTreeMap<u64, usize>) {
        let mut out = before.to_vec();
        let mut load = BTreeMap::new();
        for s in &mut out {
            if let Some(t) = p.get(&s.shard) {
                s.voters = t.clone();
            }
            for v in &s.voters {
                *load.entry(*v).or_default() += 1;
            }
        }
        (out, load)
    }

    #[test]
    fn three_nodes_stay_as_they_are() {
        let s = shards(8, &[1, 2, 3], |s| u64::from(s % 3) + 1);
        let all = set(&[1, 2, 3]);
        assert!(plan(&s, &all, &all, &none(), &Domains::default(), REPLICAS).is_empty());
        // One down: nothing moves either.
        assert!(plan(
            &s,
            &all,
            &set(&[1, 2]),
            &none(),
            &Domains::default(),
            REPLICAS
        )
        .is_empty());
    }

    #[test]
    fn a_fourth_node_gets_an_even_share_and_no_leader_loses_its_place() {
        let s = shards(8, &[1, 2, 3], |s| u64::from(s % 3) + 1);
        let all = set(&[1, 2, 3, 4]);
        let p = plan(&s, &all, &all, &none(), &Domains::default(), REPLICAS);
        let (s2, load) = after(&s, &p);
        assert_eq!(load.values().sum::<usize>(), 24);
        assert_eq!(load.values().copied().collect::<Vec<_>>(), vec![6, 6, 6, 6]);
        for s in &s2 {
            assert_eq!(s.voters.len(), 3);
            assert!(s.voters.contains(&s.leader.unwrap_or(0)), "{s:?}");
        }
        // Carried out, the plan is stable.
        assert!(plan(&s2, &all, &all, &none(), &Domains::default(), REPLICAS).is_empty());
    }

    #[test]
    fn a_service_made_with_five_voters_everywhere_comes_down_to_three_evenly() {
        let s = shards(16, &[1, 2, 3, 4, 5], |s| u64::from(s % 5) + 1);
        let all = set(&[1, 2, 3, 4, 5]);
        let p = plan(&s, &all, &all, &none(), &Domains::default(), REPLICAS);
        let (s2, load) = after(&s, &p);
        let (min, max) = (
            load.values().min().copied().unwrap_or(0),
            load.values().max().copied().unwrap_or(0),
        );
        assert!(max - min <= 1, "{load:?}");
        for s in &s2 {
            assert_eq!(s.voters.len(), 3);
            assert!(s.voters.contains(&s.leader.unwrap_or(0)));
        }
        assert!(plan(&s2, &all, &all, &none(), &Domains::default(), REPLICAS).is_empty());
    }

    #[test]
    fn a_drained_node_is_replaced_by_the_live_member_voting_least() {
        // Node 3 left the node set (drained); node 1 is down.
        let s = vec![
            ShardView {
                shard: 0,
                voters: set(&[1, 2, 3]),
                leader: Some(2),
            },
            ShardView {
                shard: 1,
                voters: set(&[2, 3, 4]),
                leader: Some(4),
            },
        ];
        let nodes = set(&[1, 2, 4]);
        let p = plan(
            &s,
            &nodes,
            &set(&[2, 4]),
            &none(),
            &Domains::default(),
            REPLICAS,
        );
        assert_eq!(p.get(&0), Some(&set(&[1, 2, 4])));
        // Only node 1 is left to take shard 1's place: down, but a member.
        assert_eq!(p.get(&1), Some(&set(&[1, 2, 4])));
    }

    #[test]
    fn roles_go_to_live_nodes_and_stay_on_down_ones() {
        let s = shards(6, &[1, 2, 3], |_| 1);
        let nodes = set(&[1, 2, 3, 4, 5]);
        // Node 5 is down: it gets nothing, node 4 its share of the live nodes.
        let p = plan(
            &s,
            &nodes,
            &set(&[1, 2, 3, 4]),
            &none(),
            &Domains::default(),
            REPLICAS,
        );
        let (_, load) = after(&s, &p);
        assert_eq!(load.get(&5), None);
        assert!(load.get(&4).copied().unwrap_or(0) >= 3, "{load:?}");
        // Node 1 leads everything: its roles never move.
        assert_eq!(load.get(&1), Some(&6));
    }

    #[test]
    fn one_and_two_nodes_vote_everywhere() {
        let s = shards(4, &[1], |_| 1);
        assert!(plan(
            &s,
            &set(&[1]),
            &set(&[1]),
            &none(),
            &Domains::default(),
            REPLICAS
        )
        .is_empty());
        let p = plan(
            &s,
            &set(&[1, 2]),
            &set(&[1, 2]),
            &none(),
            &Domains::default(),
            REPLICAS,
        );
        let (_, load) = after(&s, &p);
        assert_eq!(load.get(&2), Some(&4));
    }

    #[test]
    fn a_node_down_for_long_hands_its_roles_to_live_learners() {
        // Five nodes, three voters a shard; node 1 votes in shards 0..4 and is gone.
        let s: Vec<ShardView> = (0..6)
            .map(|sh| ShardView {
                shard: sh,
                voters: if sh < 4 {
                    set(&[1, 2, 3])
                } else {
                    set(&[3, 4, 5])
                },
                leader: Some(3),
            })
            .collect();
        let nodes = set(&[1, 2, 3, 4, 5]);
        let live = set(&[2, 3, 4, 5]);
        // Down, not gone: its roles stay.
        let p = plan(&s, &nodes, &live, &none(), &Domains::default(), REPLICAS);
        let (_, load) = after(&s, &p);
        assert_eq!(load.get(&1), Some(&4), "{p:?}");
        // Gone: every shard has three live voters, node 1 none.
        let p = plan(&s, &nodes, &live, &set(&[1]), &Domains::default(), REPLICAS);
        let (s2, load) = after(&s, &p);
        assert_eq!(load.get(&1), None, "{p:?}");
        for sh in &s2 {
            assert_eq!(sh.voters.len(), 3);
            assert!(sh.voters.is_subset(&live), "{sh:?}");
        }
        // Stable while it stays gone; back, it gets its share again.
        assert!(plan(
            &s2,
            &nodes,
            &live,
            &set(&[1]),
            &Domains::default(),
            REPLICAS
        )
        .is_empty());
        let p = plan(&s2, &nodes, &nodes, &none(), &Domains::default(), REPLICAS);
        let (_, load) = after(&s2, &p);
        assert!(load.get(&1).copied().unwrap_or(0) >= 3, "{load:?}");
    }

    #[test]
    fn with_three_nodes_a_gone_node_keeps_its_roles() {
        let s = shards(4, &[1, 2, 3], |_| 2);
        let all = set(&[1, 2, 3]);
        assert!(plan(
            &s,
            &all,
            &set(&[2, 3]),
            &set(&[1]),
            &Domains::default(),
            REPLICAS
        )
        .is_empty());
    }
    fn domains(v: &[(u64, &str)]) -> Domains {
        Domains(v.iter().map(|(n, d)| (*n, d.to_string())).collect())
    }

    /// Every shard's voters span `want` domains; the plan, carried out, is stable.
    fn spans(s: &[ShardView], d: &Domains, want: usize) {
        for sh in s {
            assert_eq!(d.spanned(&sh.voters), want, "{sh:?}");
            assert!(sh.voters.contains(&sh.leader.unwrap_or(0)), "{sh:?}");
        }
    }

    #[test]
    fn six_nodes_in_three_domains_put_each_shard_in_all_three_evenly() {
        let d = domains(&[(1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "c"), (6, "c")]);
        // Made with nodes 1-3 (domains a, a, b): every shard has two voters in domain a.
        let s = shards(16, &[1, 2, 3], |s| u64::from(s % 3) + 1);
        let all = set(&[1, 2, 3, 4, 5, 6]);
        let p = plan(&s, &all, &all, &none(), &d, REPLICAS);
        let (s2, load) = after(&s, &p);
        spans(&s2, &d, 3);
        assert_eq!(load.values().sum::<usize>(), 48);
        let (min, max) = (
            load.values().min().copied().unwrap_or(0),
            load.values().max().copied().unwrap_or(0),
        );
        assert!(max - min <= 1, "{load:?}");
        assert!(plan(&s2, &all, &all, &none(), &d, REPLICAS).is_empty());
    }

    #[test]
    fn a_domain_of_one_node_votes_in_every_shard() {
        // Nodes 1 and 2 share domain a; 3 and 4 are alone in theirs.
        let d = domains(&[(1, "a"), (2, "a"), (3, "b"), (4, "c")]);
        let s = shards(8, &[1, 2, 3], |s| if s % 2 == 0 { 1 } else { 3 });
        let all = set(&[1, 2, 3, 4]);
        let p = plan(&s, &all, &all, &none(), &d, REPLICAS);
        let (s2, load) = after(&s, &p);
        spans(&s2, &d, 3);
        assert_eq!(load.get(&3), Some(&8), "{load:?}");
        assert_eq!(load.get(&4), Some(&8), "{load:?}");
        assert_eq!(load.get(&1), Some(&4), "{load:?}");
        assert_eq!(load.get(&2), Some(&4), "{load:?}");
        assert!(plan(&s2, &all, &all, &none(), &d, REPLICAS).is_empty());
        // Without domains the same nodes share the roles evenly instead.
        let p = plan(&s, &all, &all, &none(), &Domains::default(), REPLICAS);
        let (_, load) = after(&s, &p);
        assert_eq!(load.values().copied().collect::<Vec<_>>(), vec![6, 6, 6, 6]);
    }

    #[test]
    fn two_domains_give_each_shard_both() {
        let d = domains(&[(1, "a"), (2, "a"), (3, "b"), (4, "b")]);
        let s = shards(8, &[1, 2, 3], |_| 3);
        let all = set(&[1, 2, 3, 4]);
        let p = plan(&s, &all, &all, &none(), &d, REPLICAS);
        let (s2, _) = after(&s, &p);
        spans(&s2, &d, 2);
        assert!(plan(&s2, &all, &all, &none(), &d, REPLICAS).is_empty());
    }

    #[test]
    fn a_gone_nodes_role_goes_to_a_node_of_a_domain_the_shard_lacks() {
        let d = domains(&[(1, "a"), (2, "b"), (3, "c"), (4, "c"), (5, "a")]);
        let s = vec![ShardView {
            shard: 0,
            voters: set(&[1, 2, 3]),
            leader: Some(2),
        }];
        let nodes = set(&[1, 2, 3, 4, 5]);
        let live = set(&[2, 3, 4, 5]);
        // Node 4 votes least (nothing), but its domain is node 3's.
        let p = plan(&s, &nodes, &live, &set(&[1]), &d, REPLICAS);
        assert_eq!(p.get(&0), Some(&set(&[2, 3, 5])));
    }

    #[test]
    fn a_shard_in_one_domain_twice_keeps_its_leader_when_it_trades() {
        let d = domains(&[(1, "a"), (2, "a"), (3, "b"), (4, "c")]);
        let s = vec![ShardView {
            shard: 0,
            voters: set(&[1, 2, 3]),
            leader: Some(1),
        }];
        let all = set(&[1, 2, 3, 4]);
        let p = plan(&s, &all, &all, &none(), &d, REPLICAS);
        assert_eq!(p.get(&0), Some(&set(&[1, 3, 4])));
        // With node 4 down there is no domain to trade for: nothing moves.
        assert!(plan(&s, &all, &set(&[1, 2, 3]), &none(), &d, REPLICAS).is_empty());
    }
}
