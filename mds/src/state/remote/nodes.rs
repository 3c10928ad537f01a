//! What NFS state across MDS nodes asks about the other nodes, for delegations and share
//! reservations alike: whether a node is given up (down past the lock grace), and a table's
//! files grouped by the node that noted them.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::state::NfsState;

/// Whether node `node` has been unreachable so long that its clients no longer use what it
/// gave them (the same bound the lock arbiter waits for).
pub(crate) fn given_up(nfs: &NfsState, node: u64) -> bool {
    let Some(peers) = nfs.ns.peers() else {
        return true;
    };
    if !peers.knows(node) {
        return true;
    }
    let grace = crate::state::remote::isolation::lock_grace(
        Duration::from_secs(u64::from(nfs.lease_seconds)),
        nfs.grace,
    );
    peers.down_since(node).is_some_and(|t| t.elapsed() > grace)
}

/// Per node, the files (at most `MAX_DELEG_FILES`) `table` has (node, client) entries of, for a
/// sweep to ask that node about.
pub(crate) fn files_by_node<V>(
    table: &HashMap<u64, BTreeMap<(u64, u64), V>>,
) -> BTreeMap<u64, Vec<u64>> {
    let mut m: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for (ino, entries) in table {
        let nodes: std::collections::BTreeSet<u64> = entries.keys().map(|(n, _)| *n).collect();
        for node in nodes {
            let v = m.entry(node).or_default();
            if v.len() < proto::peer::MAX_DELEG_FILES {
                v.push(*ino);
            }
        }
    }
    m
}
