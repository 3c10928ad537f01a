//! The MDS nodes a data server heartbeats to. Every node of a multi-node metadata service hands
//! out layouts only for the data servers that heartbeat to it, so a DS must find every node,
//! including those that join a running service after the DS's config was written.
//!
//! The config's `mds` addresses are seeds: always heartbeated, never dropped. Every
//! authenticated heartbeat reply lists the service's nodes as the answering node knows them
//! (its address book follows the shards' memberships), and the DS heartbeats to each of them
//! too. A learned node is dropped once no node that answered lately lists it (it was drained);
//! while no node answers at all nothing is dropped, since the DS cannot tell a drained node from
//! its own isolation.
//!
//! Trust: a list is taken only from a reply whose MAC (cluster secret, bound to the heartbeat
//! it answers) verifies, so only a holder of the secret can point a DS at an address.
//!
//! Restarts: the learned addresses are kept in the data directory (`LEARNED_FILE`, rewritten
//! whole on each change) and heartbeated again from the start, as learned ones: so a DS whose
//! config names one node finds the service after a restart even when that node was drained or
//! is down meanwhile. They go as any learned node goes, once fresh lists leave them out.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// How long a node's list counts after its last reply: several heartbeats (1 s apart by
/// default), so one late reply does not drop a node, and a drained node that stopped answering
/// no longer keeps itself listed after this long.
pub(crate) const LIST_FRESH: Duration = Duration::from_secs(10);

/// Most learned nodes: node ids are 1..=255, one address each.
pub(crate) const MAX_LEARNED: usize = layout::capability::MAX_METADATA_NODE as usize;

/// The learned addresses, one per line, in the data directory.
pub(crate) const LEARNED_FILE: &str = "mds-nodes";

/// What one heartbeat target said last.
struct Heard {
    /// The node id that answered there (`layout::generation_node` of its generations).
    node: u8,
    at: Instant,
    /// The nodes it listed: id and the address to heartbeat to.
    nodes: Vec<(u8, SocketAddr)>,
}

#[derive(Default)]
struct Inner {
    /// Per heartbeat target that answered.
    heard: HashMap<SocketAddr, Heard>,
    /// The learned addresses as of the last time some node's list was fresh; kept while none is.
    learned: BTreeSet<SocketAddr>,
}

pub(crate) struct MdsNodes {
    seeds: Vec<SocketAddr>,
    inner: Mutex<Inner>,
    changed: Notify,
    /// Where the learned addresses are kept (`None`: nowhere, in tests).
    file: Option<PathBuf>,
}

impl MdsNodes {
    /// Remembering nothing across restarts (the tests').
    #[cfg(test)]
    pub(crate) fn new(seeds: Vec<SocketAddr>) -> MdsNodes {
        MdsNodes {
            seeds,
            inner: Mutex::new(Inner::default()),
            changed: Notify::new(),
            file: None,
        }
    }

    /// `new`, keeping the learned addresses in data directory `dir`, and starting from those
    /// the last run kept there. A file that cannot be read costs only what it would have
    /// remembered.
    pub(crate) fn kept_in(seeds: Vec<SocketAddr>, dir: &Path) -> MdsNodes {
        let file = dir.join(LEARNED_FILE);
        let kept: BTreeSet<SocketAddr> = match std::fs::read_to_string(&file) {
            Ok(text) => text
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .filter(|a| !seeds.contains(a))
                .take(MAX_LEARNED)
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
            Err(e) => {
                tracing::warn!(file = %file.display(), "cannot read the MDS nodes learned before: {e}");
                BTreeSet::new()
            }
        };
        if !kept.is_empty() {
            tracing::info!(
                nodes = kept.len(),
                "heartbeating the MDS nodes learned before the restart too"
            );
        }
        MdsNodes {
            seeds,
            inner: Mutex::new(Inner {
                learned: kept,
                ..Inner::default()
            }),
            changed: Notify::new(),
            file: Some(file),
        }
    }

    /// Writes the learned addresses `now` to the file (a new file renamed over the old one,
    /// so a crash leaves one or the other whole). Not synced: it is a hint, and the config's
    /// seeds still work without it.
    fn keep(&self, now: &BTreeSet<SocketAddr>) {
        let Some(file) = &self.file else { return };
        let text: String = now.iter().map(|a| format!("{a}\n")).collect();
        let tmp = file.with_extension("new");
        if let Err(e) = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, file)) {
            tracing::warn!(file = %file.display(), "cannot keep the learned MDS nodes: {e}");
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An authenticated reply from the target `from`, where node `node` answered, listing
    /// `nodes` (ids 1..=255; an empty list, from a node that runs alone, says nothing).
    pub(crate) fn heard(&self, from: SocketAddr, node: u8, nodes: Vec<(u8, SocketAddr)>) {
        self.heard_at(from, node, nodes, Instant::now());
    }

    fn heard_at(&self, from: SocketAddr, node: u8, nodes: Vec<(u8, SocketAddr)>, now: Instant) {
        let mut i = self.inner();
        let news = i
            .heard
            .get(&from)
            .is_none_or(|h| h.node != node || h.nodes != nodes);
        i.heard.insert(
            from,
            Heard {
                node,
                at: now,
                nodes,
            },
        );
        // Learned now, not only when the targets are next asked for: a list counts even if
        // every node stops answering before then.
        let kept = self.relearn(&mut i, now);
        drop(i);
        if let Some(k) = kept {
            self.keep(&k);
        }
        if news {
            self.changed.notify_one();
        }
    }

    /// The heartbeat loop for `from` ended: what it heard no longer counts. The node id that
    /// answered there, unless another target answers as the same node (its fences are then
    /// still that target's).
    pub(crate) fn forget(&self, from: SocketAddr) -> Option<u8> {
        let mut i = self.inner();
        let gone = i.heard.remove(&from)?;
        (!i.heard.values().any(|h| h.node == gone.node)).then_some(gone.node)
    }

    /// Wakes when a node's list may have changed the targets.
    pub(crate) async fn changed(&self) {
        self.changed.notified().await
    }

    /// Every node to heartbeat to now: the seeds, then the learned ones.
    pub(crate) fn targets(&self) -> Vec<SocketAddr> {
        self.targets_at(Instant::now())
    }

    fn targets_at(&self, now: Instant) -> Vec<SocketAddr> {
        let mut i = self.inner();
        let kept = self.relearn(&mut i, now);
        let mut v = self.seeds.clone();
        v.extend(i.learned.iter().filter(|a| !self.seeds.contains(a)));
        drop(i);
        if let Some(k) = kept {
            self.keep(&k);
        }
        v
    }

    /// The learned nodes from the lists that are fresh at `now`; unchanged when none is.
    /// Returns them when they changed.
    fn relearn(&self, i: &mut Inner, now: Instant) -> Option<BTreeSet<SocketAddr>> {
        let fresh: Vec<&Heard> = i
            .heard
            .values()
            // An empty list (a node that runs alone) says nothing about other nodes.
            .filter(|h| !h.nodes.is_empty() && now.saturating_duration_since(h.at) <= LIST_FRESH)
            .collect();
        if fresh.is_empty() {
            return None;
        }
        // A node a seed answered as is heartbeated at the seed's address: the same node listed
        // under another address of it (a name in the config, an address in the book) is not
        // heartbeated twice.
        let seed_nodes: BTreeSet<u8> = self
            .seeds
            .iter()
            .filter_map(|a| i.heard.get(a).map(|h| h.node))
            .collect();
        let listed: BTreeSet<SocketAddr> = fresh
            .iter()
            .flat_map(|h| h.nodes.iter())
            .filter(|(id, a)| !self.seeds.contains(a) && !seed_nodes.contains(id))
            .map(|(_, a)| *a)
            .collect();
        if listed.len() > MAX_LEARNED {
            tracing::warn!(
                listed = listed.len(),
                "the metadata nodes list more addresses than there can be nodes: \
                 heartbeating the first {MAX_LEARNED}"
            );
        }
        let learned: BTreeSet<SocketAddr> = listed.into_iter().take(MAX_LEARNED).collect();
        if learned == i.learned {
            return None;
        }
        i.learned = learned.clone();
        Some(learned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn a_seed_lists_the_others_and_a_later_joiner() {
        let m = MdsNodes::new(vec![a(1)]);
        let t = Instant::now();
        assert_eq!(m.targets_at(t), vec![a(1)]);
        m.heard_at(a(1), 1, vec![(1, a(1)), (2, a(2)), (3, a(3))], t);
        assert_eq!(m.targets_at(t), vec![a(1), a(2), a(3)]);
        m.heard_at(a(2), 2, vec![(1, a(1)), (2, a(2)), (3, a(3)), (4, a(4))], t);
        assert_eq!(m.targets_at(t), vec![a(1), a(2), a(3), a(4)]);
    }

    #[test]
    fn a_drained_node_goes_once_no_answering_node_lists_it_but_a_seed_never() {
        let m = MdsNodes::new(vec![a(1)]);
        let t = Instant::now();
        m.heard_at(a(1), 1, vec![(1, a(1)), (2, a(2)), (3, a(3))], t);
        m.heard_at(a(3), 3, vec![(1, a(1)), (2, a(2)), (3, a(3))], t);
        // Node 1 no longer lists node 3, but node 3 still answers and lists itself.
        let t1 = t + Duration::from_secs(1);
        m.heard_at(a(1), 1, vec![(1, a(1)), (2, a(2))], t1);
        assert_eq!(m.targets_at(t1), vec![a(1), a(2), a(3)]);
        // Node 3 stopped (drained): its list goes stale, and nobody else lists it.
        let t2 = t + LIST_FRESH + Duration::from_secs(1);
        m.heard_at(a(1), 1, vec![(1, a(1)), (2, a(2))], t2);
        assert_eq!(m.targets_at(t2), vec![a(1), a(2)]);
        // The seed is never dropped, even when every list leaves it out.
        m.heard_at(a(2), 2, vec![(2, a(2))], t2);
        m.heard_at(a(1), 1, vec![(2, a(2))], t2);
        assert_eq!(m.targets_at(t2), vec![a(1), a(2)]);
    }

    #[test]
    fn nothing_is_dropped_while_no_node_answers() {
        let m = MdsNodes::new(vec![a(1)]);
        let t = Instant::now();
        m.heard_at(a(1), 1, vec![(1, a(1)), (2, a(2))], t);
        let later = t + LIST_FRESH * 10;
        assert_eq!(m.targets_at(later), vec![a(1), a(2)]);
    }

    #[test]
    fn a_seed_node_listed_under_another_address_is_not_heartbeated_twice() {
        let m = MdsNodes::new(vec![a(1)]);
        let t = Instant::now();
        m.heard_at(a(1), 1, vec![(1, a(11)), (2, a(2))], t);
        assert_eq!(m.targets_at(t), vec![a(1), a(2)]);
    }

    #[test]
    fn a_lone_node_says_nothing_about_others() {
        let m = MdsNodes::new(vec![a(1), a(2)]);
        let t = Instant::now();
        m.heard_at(a(1), 1, vec![(1, a(1)), (3, a(3))], t);
        m.heard_at(a(2), 0, vec![], t + LIST_FRESH);
        assert_eq!(m.targets_at(t + LIST_FRESH), vec![a(1), a(2), a(3)]);
    }

    #[test]
    fn learned_nodes_are_kept_across_a_restart_until_fresh_lists_leave_them_out() {
        let dir = tempfile::tempdir().unwrap();
        let m = MdsNodes::kept_in(vec![a(1)], dir.path());
        let t = Instant::now();
        m.heard_at(a(1), 1, vec![(1, a(1)), (2, a(2)), (3, a(3))], t);
        drop(m);
        // Restarted while node 1 is gone: nodes 2 and 3 are heartbeated from the start.
        let m = MdsNodes::kept_in(vec![a(1)], dir.path());
        let t = Instant::now();
        assert_eq!(m.targets_at(t), vec![a(1), a(2), a(3)]);
        // Node 2 answers without node 3 (drained meanwhile): it goes, from the file too.
        m.heard_at(a(2), 2, vec![(2, a(2))], t);
        assert_eq!(m.targets_at(t), vec![a(1), a(2)]);
        drop(m);
        let m = MdsNodes::kept_in(vec![a(1)], dir.path());
        assert_eq!(m.targets_at(Instant::now()), vec![a(1), a(2)]);
        // A damaged line costs only itself.
        std::fs::write(dir.path().join(LEARNED_FILE), "garbage\n127.0.0.1:3\n").unwrap();
        let m = MdsNodes::kept_in(vec![a(1)], dir.path());
        assert_eq!(m.targets_at(Instant::now()), vec![a(1), a(3)]);
    }

    #[test]
    fn learned_nodes_are_bounded() {
        let m = MdsNodes::new(vec![a(1)]);
        let t = Instant::now();
        let many: Vec<(u8, SocketAddr)> = (0..600u16).map(|p| (2, a(1000 + p))).collect();
        m.heard_at(a(1), 1, many, t);
        assert_eq!(m.targets_at(t).len(), 1 + MAX_LEARNED);
    }

    #[test]
    fn forgetting_a_target_gives_its_node_unless_another_answers_as_it() {
        let m = MdsNodes::new(vec![a(1)]);
        let t = Instant::now();
        m.heard_at(a(1), 1, vec![(1, a(1)), (2, a(2)), (2, a(22))], t);
        m.heard_at(a(2), 2, vec![(2, a(2))], t);
        m.heard_at(a(22), 2, vec![(2, a(22))], t);
        assert_eq!(m.forget(a(22)), None);
        assert_eq!(m.forget(a(2)), Some(2));
        assert_eq!(m.forget(a(2)), None);
    }
}
