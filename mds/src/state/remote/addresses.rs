//! Client addresses that move between the MDS nodes of a metadata cluster (CTDB's public
//! addresses; issue 12 item 5).
//!
//! Each node may have a client address besides the one its peers reach it at. Every node
//! watches the others' peer addresses; once a node has refused connections for
//! `TAKEOVER_AFTER`, the live node with the lowest id binds the dead node's client address,
//! takes its client records over (`Command::TakeOverClients`) and opens a grace period for
//! those clients only (`StateManager::begin_takeover`). A stock client reconnects to the same
//! address and sends what got no answer again on its session, which the taker adopts
//! (`state::adopt`), so a change the dead node made is answered as the first time; it then
//! makes a new session and reclaims its opens and locks as after a server restart, while the
//! taker's own clients go on.
//!
//! The bind is the arbiter: on one host (loopback, or a network namespace's addresses) one
//! socket listens on an address, so a node alive keeps its own and two nodes that both think
//! they should take over cannot both do it. A node that comes back does not take its address
//! from the taker (no failback: its clients would pay a second recovery for nothing); it
//! binds the address again whenever it is free, so the address returns to it if the taker
//! dies in turn.
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::state::NfsState;
use meta::namespace::Command;

/// How long a node must refuse connections before its address is taken over. Short: a live
/// node keeps its address anyway (the bind fails), so a false alarm costs nothing.
pub const TAKEOVER_AFTER: Duration = Duration::from_secs(1);
/// How often the peers are probed and free addresses tried.
const TICK: Duration = Duration::from_millis(250);
/// Longest wait for this node's replica of shard 0 before a takeover reads the records.
const BARRIER_WAIT: Duration = Duration::from_secs(10);
/// Pause between two attempts of the shard 0 barrier.
const BARRIER_RETRY: Duration = Duration::from_millis(100);
/// A probe that gets no answer in this time counts as refused.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// Which node should take over `dead`'s address, as this node sees the cluster: the lowest id
/// among the nodes that answer (this one included), never `dead` itself.
pub fn taker(
    me: u64,
    nodes: impl IntoIterator<Item = u64>,
    down: &BTreeSet<u64>,
    dead: u64,
) -> bool {
    nodes
        .into_iter()
        .filter(|n| *n != dead && (*n == me || !down.contains(n)))
        .min()
        == Some(me)
}

/// Keeps this node's client address and takes over dead nodes' ones, for as long as the
/// server runs. `peers`: every node's peer address (this one's included) and `public` the
/// client addresses, both as the config names them; the nodes and client addresses the
/// shards' memberships name (a node that joined later: `raft::node_addr`) are added as this
/// node learns them, and kept once seen, so a node drained and stopped has its address taken
/// over like any other; `serve` starts answering on a bound listener.
pub async fn keep(
    nfs: Arc<NfsState>,
    me: u64,
    mut peers: BTreeMap<u64, SocketAddr>,
    mut public: BTreeMap<u64, SocketAddr>,
    serve: impl Fn(TcpListener) -> JoinHandle<()>,
) {
    let mut held: BTreeMap<u64, JoinHandle<()>> = BTreeMap::new();
    let mut down_since: BTreeMap<u64, Instant> = BTreeMap::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Some(p) = nfs.ns.peers() {
            peers.extend(p.nodes());
            public.extend(p.client_addresses());
        }
        if public.is_empty() {
            // No node has a client address: nothing to keep or take over.
            continue;
        }
        for (&id, &addr) in peers.iter().filter(|(id, _)| **id != me) {
            if answers(addr).await {
                if down_since.remove(&id).is_some() {
                    tracing::info!(node = id, "MDS node answers again");
                }
            } else {
                down_since.entry(id).or_insert_with(|| {
                    tracing::info!(node = id, "MDS node does not answer");
                    Instant::now()
                });
            }
        }
        let down: BTreeSet<u64> = down_since
            .iter()
            .filter(|(_, t)| t.elapsed() >= TAKEOVER_AFTER)
            .map(|(id, _)| *id)
            .collect();
        for (&id, &addr) in &public {
            if held.get(&id).is_some_and(|h| !h.is_finished()) {
                continue;
            }
            let ours = id == me;
            let dead_and_mine = down.contains(&id) && taker(me, peers.keys().copied(), &down, id);
            if !ours && !dead_and_mine {
                continue;
            }
            // Bound first (the bind decides who takes it); connections wait in the backlog
            // until it is served, below.
            let listener = match TcpListener::bind(addr).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::debug!(node = id, %addr, "client address not free: {e}");
                    continue;
                }
            };
            if !ours {
                // This replica must have every record the dead node committed before it
                // reads them: a command through shard 0 returns here only once this node
                // applied everything before it (it waits out an election if the dead node
                // led shard 0, which the clients would wait for anyway).
                let why = shard0_barrier(&nfs, id, BARRIER_WAIT).await.err();
                if let Some(why) = why {
                    tracing::warn!(
                        node = id,
                        "shard 0 not caught up ({why}): taking over with the records this replica has"
                    );
                }
            }
            if ours {
                tracing::info!(%addr, "serving clients on this node's client address");
            } else {
                take_over(&nfs, id, addr);
            }
            held.insert(id, serve(listener));
            if let Ok(mut s) = nfs.serving.lock() {
                s.push(addr);
                s.sort();
            }
        }
    }
}

/// Returns once this node's replica of shard 0 has applied everything committed before the
/// call (a command through shard 0 is answered here only then; `node`'s records, unchanged),
/// or why not within `wait`.
pub(crate) async fn shard0_barrier(
    nfs: &NfsState,
    node: u64,
    wait: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + wait;
    loop {
        let noop = Command::ClientRecords {
            node,
            add: Vec::new(),
            remove: Vec::new(),
        };
        let left = deadline.saturating_duration_since(Instant::now());
        // Tried again until the deadline: right after shard 0's leader died the command fails
        // at once (its leader unreachable, no new one yet), and a takeover that read the
        // records then could miss a client the dead node had recorded (the client then got
        // NO_GRACE for its reclaims: `metadata_cluster.rs`
        // `a_dead_nodes_client_address_moves_and_its_clients_reclaim_there`, 1 run in 4).
        let why = match tokio::time::timeout(left, nfs.ns.execute(noop)).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer in {wait:?}"),
        };
        if Instant::now() + BARRIER_RETRY >= deadline {
            return Err(why);
        }
        tracing::debug!(node, "shard 0 barrier failed ({why}); trying again");
        tokio::time::sleep(BARRIER_RETRY).await;
    }
}

/// Whether something accepts connections at `addr`.
async fn answers(addr: SocketAddr) -> bool {
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

/// Node `from` is dead and this node now has its client address: its clients may reclaim
/// here, and their records become this node's. The grace starts before the first client can
/// connect (the caller starts serving after this); the records move in the background, since
/// the commit may wait out a failover of shard 0's leader (the dead node may have led it).
fn take_over(nfs: &Arc<NfsState>, from: u64, addr: SocketAddr) {
    let owners: BTreeSet<Vec<u8>> = match nfs.ns.client_records(from) {
        Ok(o) => o.into_iter().collect(),
        Err(e) => {
            tracing::warn!(
                node = from,
                "cannot read the dead node's client records: {e}"
            );
            BTreeSet::new()
        }
    };
    tracing::warn!(
        node = from,
        %addr,
        clients = owners.len(),
        grace = ?nfs.grace,
        "took over a dead MDS node's client address; its clients may reclaim here"
    );
    nfs.state.begin_takeover(owners, nfs.grace);
    tokio::spawn(crate::state::remote::delegations::announce_gone(
        nfs.clone(),
        from,
        std::time::Instant::now(),
    ));
    let me = u64::from(nfs.node);
    let m = nfs.clone();
    tokio::spawn(async move {
        let mut wait = Duration::from_millis(500);
        loop {
            match m
                .ns
                .execute(Command::TakeOverClients { from, to: me })
                .await
            {
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(node = from, "cannot take the client records over yet: {e}")
                }
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(30));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lowest_live_node_takes_over() {
        let nodes = [1, 2, 3];
        let down: BTreeSet<u64> = [1].into();
        assert!(taker(2, nodes, &down, 1));
        assert!(!taker(3, nodes, &down, 1));
        // Node 2 down too: node 3 takes both.
        let down: BTreeSet<u64> = [1, 2].into();
        assert!(taker(3, nodes, &down, 1) && taker(3, nodes, &down, 2));
        // Nobody takes a live node's address.
        assert!(!taker(1, nodes, &BTreeSet::new(), 1));
    }
}
