//! Three nodes, each shard a Raft group with all three as voters, talking the peer program
//! over loopback TCP: commands proposed at any node are replicated to all, a node's loss
//! leaves the others serving after an election, and a node that comes back catches up.

use std::time::{Duration, Instant};

use proto::rpc::{Call, CallHandler, ConnTable, Connection, ConnectionLimits};
use proto::xdr::Writer;
use tokio::net::TcpListener;

use super::*;
use crate::raft::network::Members;

/// Serves the peer program for one node; with no namespace (the node is down) every call is
/// dropped unanswered, as a dead process would leave it.
#[derive(Default)]
struct PeerOnly {
    ns: Mutex<Option<Namespace>>,
    /// Answers as a build before `PEERPROC_APPEND2` did: PROC_UNAVAIL (its range check).
    old: std::sync::atomic::AtomicBool,
    /// Calls received, by procedure.
    calls: Mutex<BTreeMap<u32, u64>>,
}

impl CallHandler for PeerOnly {
    async fn handle(&self, _conn: Connection, call: Call) -> Option<Writer> {
        let ns = self.ns.lock().ok()?.clone()?;
        *self.calls.lock().ok()?.entry(call.proc_).or_default() += 1;
        if call.proc_ == proto::peer::PEERPROC_APPEND2
            && self.old.load(std::sync::atomic::Ordering::Relaxed)
        {
            return Some(proto::rpc::accepted_reply(
                call.xid,
                &proto::rpc::Auth::None,
                proto::rpc::AcceptStat::ProcUnavail,
            ));
        }
        Some(crate::raft::service::handle(ns.groups(), &call).await)
    }
}

impl PeerOnly {
    fn calls_of(&self, proc_: u32) -> u64 {
        self.calls.lock().unwrap().get(&proc_).copied().unwrap_or(0)
    }
}

pub(super) struct Node {
    pub(super) id: u64,
    pub(super) dir: tempfile::TempDir,
    handler: Arc<PeerOnly>,
    pub(super) ns: Option<Namespace>,
}

impl Node {
    pub(super) fn up(&mut self, ns: Namespace) {
        *self.handler.ns.lock().unwrap() = Some(ns.clone());
        self.ns = Some(ns);
    }

    pub(super) async fn down(&mut self) {
        *self.handler.ns.lock().unwrap() = None;
        if let Some(ns) = self.ns.take() {
            ns.close().await;
        }
    }
}

async fn listen(addr: &str) -> TcpListener {
    TcpListener::bind(addr).await.expect("bind")
}

fn serve(listener: TcpListener, handler: Arc<PeerOnly>) {
    let limits = ConnectionLimits {
        max_record: proto::peer::MAX_PEER_BODY + (64 << 10),
        max_in_flight: 256,
    };
    tokio::spawn(proto::rpc::serve(
        listener,
        handler,
        limits,
        ConnTable::new(Default::default()),
        std::future::pending(),
    ));
}

pub(super) async fn open_node(dir: &std::path::Path, members: Members) -> Namespace {
    let opts = Options {
        shards: 6,
        members: Some(members),
        ..Options::default()
    };
    Namespace::open_with(dir, opts).await.expect("open node")
}

/// Waits (bounded) until `check` holds.
pub(super) async fn until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every name in `dir`, read page by page: a busy writer can put more entries in a directory
/// than one page holds (CI once wrote 10,271 where a single 10,000-entry page was read).
fn names(ns: &Namespace, dir: u64) -> Vec<Vec<u8>> {
    let mut n = Vec::new();
    let mut cookie = 0;
    while let Ok((entries, eof)) = ns.readdir(dir, cookie, 1_000) {
        cookie = entries.last().map_or(cookie, |e| e.cookie);
        let empty = entries.is_empty();
        n.extend(entries.into_iter().map(|e| e.name));
        if eof || empty {
            break;
        }
    }
    n.sort();
    n
}

/// Three nodes listening on loopback (ids 1 to 3, namespaces not open yet) and their
/// addresses.
pub(super) async fn three_listening() -> (Vec<Node>, BTreeMap<u64, std::net::SocketAddr>) {
    let mut listeners = Vec::new();
    let mut nodes_addr = BTreeMap::new();
    for id in 1..=3u64 {
        let l = listen("127.0.0.1:0").await;
        nodes_addr.insert(id, l.local_addr().unwrap());
        listeners.push(l);
    }
    let mut nodes = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        let handler = Arc::new(PeerOnly::default());
        serve(l, handler.clone());
        nodes.push(Node {
            id: i as u64 + 1,
            dir: tempfile::tempdir().unwrap(),
            handler,
            ns: None,
        });
    }
    (nodes, nodes_addr)
}

/// Three nodes up (`open_node`), each with the root, and the members a node reopens with.
pub(super) async fn three_open() -> (Vec<Node>, impl Fn(u64) -> Members) {
    let secret = layout::ClusterSecret::from_passphrase("raft test secret 0123").unwrap();
    let (mut nodes, nodes_addr) = three_listening().await;
    let members = move |me| Members {
        me,
        nodes: nodes_addr.clone(),
        secret: secret.clone(),
        joined: None,
        replace_after: None,
        domains: Default::default(),
    };
    for n in &mut nodes {
        let ns = open_node(n.dir.path(), members(n.id)).await;
        n.up(ns);
    }
    for n in &nodes {
        let ns = n.ns.clone().expect("node up");
        until("root on every node", Duration::from_secs(30), || {
            ns.getattr(ROOT_INO).is_ok()
        })
        .await;
    }
    (nodes, members)
}

/// Purges the logs of `others` to what they applied, so node 3 (down) can catch up only by
/// install, and opens node 3 again.
pub(super) async fn purge_and_reopen_third(
    nodes: &mut [Node],
    others: &[&Namespace],
    members: &impl Fn(u64) -> Members,
) -> Namespace {
    for ns in others {
        // Once more on a timeout: on a loaded machine (CI, 2026-12-02) a follower's purge
        // once never happened within 30 s of its trigger, its snapshot one entry behind what
        // it had applied by then; triggered again it goes. What these tests check is the
        // install, not how soon a purge follows its trigger.
        if let Err(e) = ns.compact(0).await {
            eprintln!("compact again after: {e}");
            ns.compact(0).await.expect("compact");
        }
    }
    let back = open_node(nodes[2].dir.path(), members(3)).await;
    nodes[2].up(back.clone());
    back
}

/// Three nodes up (ids 1 to 3, 6 shards, `balance_leaders` as given), each with the root,
/// and their namespaces by id - 1.
async fn three_up(balance_leaders: bool) -> (Vec<Node>, Vec<Namespace>) {
    let secret = layout::ClusterSecret::from_passphrase("raft test secret 0123").unwrap();
    let (mut nodes, nodes_addr) = three_listening().await;
    for n in &mut nodes {
        let opts = Options {
            shards: 6,
            members: Some(Members {
                me: n.id,
                nodes: nodes_addr.clone(),
                secret: secret.clone(),
                joined: None,
                replace_after: None,
                domains: Default::default(),
            }),
            balance_leaders,
            ..Options::default()
        };
        let ns = Namespace::open_with(n.dir.path(), opts)
            .await
            .expect("open node");
        n.up(ns);
    }
    let all: Vec<Namespace> = nodes
        .iter()
        .map(|n| n.ns.clone().expect("node up"))
        .collect();
    for n in &all {
        until("root on every node", Duration::from_secs(30), || {
            n.getattr(ROOT_INO).is_ok()
        })
        .await;
    }
    (nodes, all)
}

/// A directory `name` made at node 1, its shard, and that shard's leader once every node
/// agrees on it.
async fn dir_led_by_all(all: &[Namespace], name: &str) -> (u64, ShardId, u64) {
    let d = mk(&all[0], ROOT_INO, name, FileKind::Directory).await;
    let shard = ShardId::of_ino(d);
    until(
        "the shard led, seen by all",
        Duration::from_secs(20),
        || {
            let l = all[0].leader_of(shard);
            l.is_some() && all.iter().all(|n| n.leader_of(shard) == l)
        },
    )
    .await;
    let l = all[0].leader_of(shard).expect("a leader");
    (d, shard, l)
}

#[test]
fn three_nodes_replicate_fail_over_and_catch_up() {
    let rt = rt();
    rt.block_on(async {
        let (mut nodes, members) = three_open().await;
        let ns = |n: &Node| n.ns.clone().expect("node up");
        // Leaders spread: each node ends up leading the shards it is preferred for (6 shards,
        // 3 nodes: 2 each), within a few elections.
        let first = ns(&nodes[0]);
        let spread = || {
            let mut per_node = BTreeMap::<u64, usize>::new();
            for l in first.leaders().values() {
                *per_node.entry(l.unwrap_or(0)).or_default() += 1;
            }
            per_node
        };
        let t = Instant::now();
        until("two leaders per node", Duration::from_secs(20), || {
            spread() == BTreeMap::from([(1, 2), (2, 2), (3, 2)])
        })
        .await;
        eprintln!("leaders balanced {:?} after the root", t.elapsed());
        let leaders = first.leaders();
        drop(first);

        // Proposed at every node: forwarded to the shard's leader where it is elsewhere.
        let d = mk(&ns(&nodes[1]), ROOT_INO, "d", FileKind::Directory).await;
        for i in 0..30 {
            let at = ns(&nodes[i % 3]);
            let out = at
                .execute(create(d, &format!("f{i:02}"), FileKind::Regular))
                .await
                .unwrap();
            assert!(out.created);
            // Read your writes on the node that proposed it.
            at.lookup(d, format!("f{i:02}").as_bytes()).unwrap();
        }
        let want: Vec<Vec<u8>> = (0..30).map(|i| format!("f{i:02}").into_bytes()).collect();
        for n in &nodes {
            let ns = ns(n);
            until("every name on every node", Duration::from_secs(10), || {
                names(&ns, d) == want
            })
            .await;
        }

        // The node leading the root's shard dies.
        let victim = leaders[&0].unwrap() as usize - 1;
        nodes[victim].down().await;
        let survivor = ns(&nodes[(victim + 1) % 3]);
        let t = Instant::now();
        let out = survivor
            .execute(create(ROOT_INO, "after", FileKind::Regular))
            .await
            .unwrap();
        assert!(out.created);
        eprintln!(
            "first create after the leader's loss took {:?}",
            t.elapsed()
        );
        for i in 0..10 {
            survivor
                .execute(create(d, &format!("g{i}"), FileKind::Regular))
                .await
                .unwrap();
        }
        let other = ns(&nodes[(victim + 2) % 3]);
        until(
            "the other survivor has them",
            Duration::from_secs(10),
            || other.lookup(d, b"g9").is_ok() && other.lookup(ROOT_INO, b"after").is_ok(),
        )
        .await;

        // The survivors drop the log behind what they applied: the returning node can only
        // catch up from a snapshot (sent in pieces over the peer program).
        survivor.compact(0).await.expect("compact");
        other.compact(0).await.expect("compact");

        // It comes back from its disk and catches up with what it missed.
        let back = open_node(nodes[victim].dir.path(), members(nodes[victim].id)).await;
        nodes[victim].up(back.clone());
        until(
            "the returning node catches up",
            Duration::from_secs(20),
            || back.lookup(d, b"g9").is_ok() && back.lookup(ROOT_INO, b"after").is_ok(),
        )
        .await;
        assert_eq!(names(&back, d).len(), 40);
        // Shard 0 (every object so far) came as a snapshot: this node never made one itself.
        let snap = back.inner.shards[&0].raft.metrics().borrow().snapshot;
        assert!(snap.is_some(), "shard 0 caught up without a snapshot");
        // And it serves again: a command proposed there commits.
        back.execute(create(d, "h", FileKind::Regular))
            .await
            .unwrap();
        for n in &mut nodes {
            n.down().await;
        }
    });
}

/// A shard's leadership handed over (`raft::handover::hand_over`) while every node writes
/// into it: every write commits, the new leader leads on every node, a leader too new to hand
/// over and a former leader refuse, and a hand-over to a node that is down fails within its
/// bounds and leaves the shard with its leader. Shard 0's balancer is off (the test moves the
/// leadership itself).
#[test]
fn a_busy_shards_leadership_is_handed_over_and_a_dead_target_leaves_it_in_place() {
    use crate::raft::handover::{hand_over, HandOverError};
    let rt = rt();
    rt.block_on(async {
        let (mut nodes, all) = three_up(false).await;
        let ns = |id: u64| all[id as usize - 1].clone();
        let (d, shard, l) = dir_led_by_all(&all, "busy").await;
        let t = (1..=3).find(|id| *id != l).expect("another node");
        let x = (1..=3)
            .find(|id| *id != l && *id != t)
            .expect("a third node");

        // Every node writes into the shard, without a pause, all along.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut writers = Vec::new();
        for id in 1..=3u64 {
            let (n, stop) = (ns(id), stop.clone());
            writers.push(tokio::spawn(async move {
                let (mut count, mut slowest) = (0u32, Duration::ZERO);
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let t0 = Instant::now();
                    n.execute(create(d, &format!("n{id}-{count}"), FileKind::Regular))
                        .await
                        .map_err(|e| format!("node {id}, file {count}: {e}"))?;
                    slowest = slowest.max(t0.elapsed());
                    count += 1;
                }
                Ok::<_, String>((count, slowest))
            }));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;

        // The leader hands the shard to `t` (once it has led longer than its lease).
        let term = ns(l)
            .raft_of(shard)
            .expect("raft")
            .metrics()
            .borrow()
            .current_term;
        let start = Instant::now();
        let paused = loop {
            match hand_over(ns(l).groups(), shard, t, term).await {
                Ok(ms) => break ms,
                Err(HandOverError::TooNew { .. }) if start.elapsed() < Duration::from_secs(10) => {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                Err(e) => panic!("hand-over of {shard} from {l} to {t}: {e}"),
            }
        };
        let m = ns(t)
            .raft_of(shard)
            .expect("raft")
            .metrics()
            .borrow()
            .clone();
        assert_eq!(m.state, openraft::ServerState::Leader, "{m:?}");
        let new_term = m.current_term;
        assert!(new_term > term);
        until(
            "every node sees the new leader",
            Duration::from_secs(5),
            || (1..=3).all(|id| ns(id).leader_of(shard) == Some(t)),
        )
        .await;
        // Just elected, `t` has not led longer than its lease: it does not hand over yet.
        let r = hand_over(ns(t).groups(), shard, l, new_term).await;
        assert!(matches!(r, Err(HandOverError::TooNew { .. })), "{r:?}");
        // The former leader no longer can.
        let r = hand_over(ns(l).groups(), shard, x, term).await;
        assert!(matches!(r, Err(HandOverError::NotLeader { .. })), "{r:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut written = 0;
        for w in writers {
            let (count, slowest) = w.await.expect("writer").expect("every write commits");
            assert!(count > 0);
            written += count;
            eprintln!("a writer: {count} files, slowest {slowest:?}");
        }
        eprintln!("hand-over with {written} files written meanwhile: writes held {paused} ms");
        until(
            "every file on the new leader",
            Duration::from_secs(10),
            || names(&ns(t), d).len() == written as usize,
        )
        .await;

        // `x` is down: `t`'s hand-over to it fails within its bounds, and `t` goes on leading.
        nodes[x as usize - 1].down().await;
        let start = Instant::now();
        // Bounded: the hand-over gives up by itself. The bound only guards against a hang (it
        // asserted "within 6 s" before: a clock a loaded machine can outlast).
        let (r, took) = loop {
            let t0 = Instant::now();
            let r = tokio::time::timeout(
                Duration::from_secs(60),
                hand_over(ns(t).groups(), shard, x, new_term),
            )
            .await
            .expect("the hand-over to a node that is down gives up by itself");
            match r {
                Err(HandOverError::TooNew { .. }) if start.elapsed() < Duration::from_secs(10) => {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                r => break (r, t0.elapsed()),
            }
        };
        eprintln!("hand-over to a node that is down: {r:?} after {took:?}");
        assert!(
            matches!(
                r,
                Err(HandOverError::Peer(_) | HandOverError::Behind { .. })
            ),
            "{r:?}"
        );
        assert_eq!(ns(t).leader_of(shard), Some(t));
        ns(t)
            .execute(create(d, "after", FileKind::Regular))
            .await
            .expect("a write at the leader");
        ns(l)
            .execute(create(d, "after-forwarded", FileKind::Regular))
            .await
            .expect("a write forwarded to the leader");
        for n in &mut nodes {
            n.down().await;
        }
    });
}

/// Every node places files under its own lock only; the record decides. Two nodes that record
/// a new file's first mirrors at the same moment, each its own choice, must not both succeed:
/// one is refused (`Changed`), and every replica holds the other's.
#[test]
fn two_nodes_placing_a_new_file_at_once_agree_on_one_record() {
    let rt = rt();
    rt.block_on(async {
        let (mut nodes, all) = three_up(true).await;
        let ns = |id: u64| all[id as usize - 1].clone();
        let place = |id: u64, f: u64, expect: Vec<u64>, mirrors: Vec<u64>| {
            let n = ns(id);
            async move {
                let cmd = Command::ReplaceMirrors {
                    ino: f,
                    chunk: 0,
                    expect,
                    mirrors,
                };
                n.execute(cmd).await
            }
        };
        let mut wins = [0; 2];
        for i in 0..16 {
            let f = mk(&ns(1), ROOT_INO, &format!("f{i}"), FileKind::Regular).await;
            let (a, b) = tokio::join!(
                place(2, f, vec![], vec![11, 12]),
                place(3, f, vec![], vec![13, 14])
            );
            let won = match (a, b) {
                (Ok(_), Err(FsError::Changed)) => vec![11, 12],
                (Err(FsError::Changed), Ok(_)) => vec![13, 14],
                other => panic!("file {i}: both or neither recorded: {other:?}"),
            };
            wins[usize::from(won[0] == 13)] += 1;
            until(
                "every replica holds the winner",
                Duration::from_secs(5),
                || (1..=3).all(|id| ns(id).chunk(f, 0).ok().flatten().as_ref() == Some(&won)),
            )
            .await;
            // The refused node reads the record (its replica caught up with the refusal) and
            // decides again from it: one of those mirrors lost.
            let loser = if won[0] == 11 { 3 } else { 2 };
            assert_eq!(ns(loser).chunk(f, 0).unwrap().as_ref(), Some(&won));
            place(loser, f, won.clone(), vec![won[1]])
                .await
                .expect("over the record it read");
        }
        eprintln!(
            "first placements won by node 2: {}, by node 3: {}",
            wins[0], wins[1]
        );
        for n in &mut nodes {
            n.down().await;
        }
    });
}

/// A leader's confirmed leadership serves its reads for a while with no heartbeat round (a
/// lease, `raft::fresh`), and a lease does not outlive the leadership: right after the shard
/// is handed to another node, a read at the former leader sees a write made at the new one.
#[test]
fn a_leaders_reads_go_by_its_lease_which_ends_with_its_leadership() {
    use crate::raft::fresh::Fresh;
    use crate::raft::handover::{hand_over, HandOverError};
    let rt = rt();
    rt.block_on(async {
        let (mut nodes, all) = three_up(false).await;
        let ns = |id: u64| all[id as usize - 1].clone();
        let (d, shard, l) = dir_led_by_all(&all, "leased").await;
        let t = (1..=3).find(|id| *id != l).expect("another node");
        let fresh = Fresh::default();

        // Reads one after another at the leader: a round at most every `LEASE`, the rest
        // answered by the lease.
        let (rounds0, leased0) = ns(l).groups().leases().counts();
        let t0 = Instant::now();
        for _ in 0..200 {
            fresh
                .barrier(ns(l).groups(), shard)
                .await
                .expect("a read at the leader");
        }
        let (rounds, leased) = ns(l).groups().leases().counts();
        let (rounds, leased) = (rounds - rounds0, leased - leased0);
        let most = t0.elapsed().as_millis() as u64 / 1000 + 2;
        eprintln!(
            "200 reads in {:?}: {rounds} rounds, {leased} by the lease",
            t0.elapsed()
        );
        assert!(
            rounds <= most,
            "{rounds} rounds for 200 reads (at most {most})"
        );
        assert!(leased >= 200 - rounds, "{leased} reads by the lease");

        // The leader hands the shard over with its lease live; a write at the new leader; a
        // read at the former leader sees it.
        let term = ns(l)
            .raft_of(shard)
            .expect("raft")
            .metrics()
            .borrow()
            .current_term;
        let start = Instant::now();
        loop {
            fresh
                .barrier(ns(l).groups(), shard)
                .await
                .expect("a read at the leader");
            match hand_over(ns(l).groups(), shard, t, term).await {
                Ok(_) => break,
                Err(HandOverError::TooNew { .. }) if start.elapsed() < Duration::from_secs(10) => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(e) => panic!("hand-over of {shard} from {l} to {t}: {e}"),
            }
        }
        let live = ns(l).groups().leases().live(shard);
        ns(t)
            .execute(create(d, "after", FileKind::Regular))
            .await
            .expect("a write at the new leader");
        let (_, before) = ns(l).groups().leases().counts();
        fresh
            .barrier(ns(l).groups(), shard)
            .await
            .expect("a read at the former leader");
        let (_, after) = ns(l).groups().leases().counts();
        eprintln!("former leader's lease live after the hand-over: {live}");
        assert_eq!(after, before, "the former leader read by its lease");
        ns(l)
            .lookup(d, b"after")
            .expect("the former leader's read sees the new leader's write");
        for n in &mut nodes {
            n.down().await;
        }
    });
}

/// A leader hands a new entry to its followers before its own fdatasync is done, not after
/// (the patched openraft, vendor/README.md), so the followers write while it does. The leader's
/// log syncs are held (a stalled disk): the follower gets the entry and the leader's flush is
/// seen waiting while the change is still unanswered; let go, the change completes. Events
/// decide the order, not a clock: a delayed flush that a slow machine outlasted once made this
/// test fail ("the follower had the entry only after 612 ms, the leader's flush took 600 ms").
#[test]
fn a_leader_sends_entries_before_its_own_flush() {
    use crate::storage::wal::held;
    let rt = rt();
    rt.block_on(async {
        let (mut nodes, all) = three_up(false).await;
        let ns = |id: u64| all[id as usize - 1].clone();
        let (d, shard, l) = dir_led_by_all(&all, "pipelined").await;
        let f = (1..=3).find(|id| *id != l).expect("a follower");
        let leader_dir = nodes[l as usize - 1].dir.path().to_path_buf();
        let before = ns(f).log_entries(shard, 0).expect("follower's log").len();
        held::hold(&leader_dir);
        let leader = ns(l);
        let change =
            tokio::spawn(async move { leader.execute(create(d, "f", FileKind::Regular)).await });
        // The bounds only guard against a hang: both are events that must come while the
        // leader's flush is held.
        until(
            "the follower has the entry",
            Duration::from_secs(60),
            || ns(f).log_entries(shard, 0).map_or(0, |e| e.len()) > before,
        )
        .await;
        until("the leader's flush waits", Duration::from_secs(60), || {
            held::waiting(&leader_dir) > 0
        })
        .await;
        assert!(
            !change.is_finished(),
            "the change was answered before the leader's own flush"
        );
        held::release(&leader_dir);
        change.await.expect("join").expect("the create");
        ns(l).lookup(d, b"f").expect("the new file at the leader");
        for n in &mut nodes {
            n.down().await;
        }
    });
}

/// The data-reduction index reaches a node that was down while part of it was written by
/// snapshots (the others purged their logs), and that node's checkpoint of the snapshots
/// (each shard's rows replaced whole, what it held before gone) holds it across its own
/// restart.
#[test]
fn the_index_reaches_a_node_that_missed_it_by_snapshot_and_survives_its_restart() {
    use super::reduce_index::{commands, index_of, model};
    let rt = rt();
    rt.block_on(async {
        let (mut nodes, members) = three_open().await;
        let ns = |n: &Node| n.ns.clone().expect("node up");
        let (first, second) = (ns(&nodes[0]), ns(&nodes[1]));
        let shards = first.shard_count();
        let (want, answers) = model(shards);
        assert!(want.values().filter(|(s, _)| !s.is_empty()).count() >= 5);
        let mut steps = commands(shards).into_iter().zip(answers);
        // Every node has the segments made (node 3 takes them to its checkpoint as it
        // stops); then, while it is down, two die and one of those is forgotten.
        for (cmd, answer) in steps.by_ref().take(16) {
            assert!(matches!(cmd, Command::AddReferrer { .. }));
            assert_eq!(first.execute(cmd.clone()).await, answer, "{cmd:?}");
        }
        let third = ns(&nodes[2]);
        until("node 3 has the segments", Duration::from_secs(10), || {
            third.index_stats().is_ok_and(|s| s.live_segments == 8)
        })
        .await;
        drop(third);
        nodes[2].down().await;
        for (cmd, answer) in steps {
            assert_eq!(first.execute(cmd.clone()).await, answer, "{cmd:?}");
        }
        until("node 2 has the index", Duration::from_secs(10), || {
            index_of(&second) == want
        })
        .await;
        let back = purge_and_reopen_third(&mut nodes, &[&first, &second], &members).await;
        until(
            "the returning node has the index",
            Duration::from_secs(20),
            || index_of(&back) == want,
        )
        .await;
        let by_snapshot = (0..shards)
            .filter(|s| {
                back.inner.shards[s]
                    .raft
                    .metrics()
                    .borrow()
                    .snapshot
                    .is_some()
            })
            .count();
        assert!(
            by_snapshot >= 2,
            "the shards of segments 3 and 6 came by snapshot"
        );
        drop(back);
        nodes[2].down().await;
        // Right after opening, before anything arrives from the others: its checkpoint.
        let again = open_node(nodes[2].dir.path(), members(3)).await;
        assert_eq!(index_of(&again), want, "the snapshots' checkpoint");
        nodes[2].up(again);
        for n in &mut nodes {
            n.down().await;
        }
    });
}

/// A node of a build before `PEERPROC_APPEND2` (it answers that procedure PROC_UNAVAIL and
/// sends only `PEERPROC_APPEND`, entries' commands decoded) among two of this build, as in a
/// rolling restart: changes made at every node, in shards each of them leads, reach every
/// replica; the new nodes fall back on the old AppendEntries to it alone.
#[test]
fn a_node_that_speaks_only_the_old_append_entries_still_replicates() {
    use proto::peer::{PEERPROC_APPEND, PEERPROC_APPEND2};
    let rt = rt();
    rt.block_on(async {
        let secret = layout::ClusterSecret::from_passphrase("raft test secret 0123").unwrap();
        let (mut nodes, nodes_addr) = three_listening().await;
        nodes[2]
            .handler
            .old
            .store(true, std::sync::atomic::Ordering::Relaxed);
        for n in &mut nodes {
            let members = Members {
                me: n.id,
                nodes: nodes_addr.clone(),
                secret: secret.clone(),
                joined: None,
                replace_after: None,
                domains: Default::default(),
            };
            let ns = open_node(n.dir.path(), members).await;
            if n.id == 3 {
                ns.groups().peers().expect("peers").send_only_old_append();
            }
            n.up(ns);
        }
        let all: Vec<Namespace> = nodes
            .iter()
            .map(|n| n.ns.clone().expect("node up"))
            .collect();
        for n in &all {
            until("root on every node", Duration::from_secs(30), || {
                n.getattr(ROOT_INO).is_ok()
            })
            .await;
        }
        until(
            "the old node leads a shard",
            Duration::from_secs(30),
            || all[0].leaders().values().any(|l| *l == Some(3)),
        )
        .await;
        let mut dirs = Vec::new();
        for (i, at) in all.iter().enumerate() {
            let d = mk(at, ROOT_INO, &format!("d{i}"), FileKind::Directory).await;
            for (j, by) in all.iter().enumerate() {
                let out = by
                    .execute(create(d, &format!("f{j}"), FileKind::Regular))
                    .await
                    .unwrap();
                assert!(out.created);
            }
            dirs.push(d);
        }
        let want: Vec<Vec<u8>> = (0..3).map(|j| format!("f{j}").into_bytes()).collect();
        for d in &dirs {
            for n in &all {
                until(
                    "every file on every replica",
                    Duration::from_secs(20),
                    || names(n, *d) == want,
                )
                .await;
            }
        }
        // Only the old node sent the old procedure, and it was answered; it refused the new
        // one, which the new nodes then stopped sending it, and only it.
        for n in &nodes[..2] {
            assert!(n.handler.calls_of(PEERPROC_APPEND) > 0, "node {}", n.id);
            assert!(n.handler.calls_of(PEERPROC_APPEND2) > 0, "node {}", n.id);
        }
        assert!(nodes[2].handler.calls_of(PEERPROC_APPEND) > 0);
        assert!(nodes[2].handler.calls_of(PEERPROC_APPEND2) > 0);
        for (i, n) in all[..2].iter().enumerate() {
            let peers = n.groups().peers().expect("peers");
            assert!(peers.sends_old_append_to(3));
            assert!(!peers.sends_old_append_to(2 - i as u64));
        }
        for n in &mut nodes {
            n.down().await;
        }
    });
}

/// A snapshot created at a survivor right after the root shard's leader died: the create's
/// read barriers fail while the shard has no reachable leader, and it waits for the election
/// instead of answering "unavailable" (CI, 2026-12-02: `snapshot create` refused with
/// "leader 3 did not answer" right after a cluster started and moved its leaders). Listing
/// the snapshots at once waits the same way.
#[test]
fn a_snapshot_created_while_the_roots_leader_is_dead_waits_for_the_election() {
    let rt = rt();
    rt.block_on(async {
        let (mut nodes, all) = three_up(false).await;
        let shard = ShardId::of_ino(ROOT_INO);
        until(
            "the root's shard led, seen by all",
            Duration::from_secs(20),
            || {
                let l = all[0].leader_of(shard);
                l.is_some() && all.iter().all(|n| n.leader_of(shard) == l)
            },
        )
        .await;
        let l = all[0].leader_of(shard).expect("a leader");
        let survivor = all[(l as usize) % 3].clone();
        mk(&survivor, ROOT_INO, "before", FileKind::Directory).await;
        nodes[l as usize - 1].down().await;

        let t = Instant::now();
        let snap = survivor
            .create_snapshot(b"after-loss", ROOT_INO, 3600)
            .await
            .expect("a create that waits out the election");
        eprintln!("snapshot created {:?} after the leader's loss", t.elapsed());
        let listed = survivor.list_snapshots().await.expect("a listing");
        let (_, r) = listed
            .iter()
            .find(|(id, _)| *id == snap)
            .expect("the snapshot listed");
        assert_eq!(r.name, b"after-loss");
        assert!(r.state.decided(), "{:?}", r.state);
        for n in &mut nodes {
            n.down().await;
        }
    });
}
