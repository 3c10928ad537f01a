//! A node cut off from the other MDS nodes does not keep its clients' byte-range locks past
//! the others' grace (`mds::state::remote::isolation`): three MDS nodes, each in a network namespace of its
//! own (`common::netns`); client A on node 1 holds a write lock; node 1 is cut off from nodes 2
//! and 3, both ways, while A still reaches it (and its lease task keeps renewing); client B on
//! node 2 asks for the same range until it gets it. The moment it has it, A's session at node
//! 1 must be gone (BADSESSION): never both held. After the cut heals, a new client on node 1
//! sees B's lock.
use crate::common;
use crate::mds_faults::{client_config, configure, mds_addr as addr, retry, wait_listening, Proc};
use client::{Client, ClientConfig, CreateMode, LockKind, SetAttrs};
use common::netns::Netns;
use proto::nfs4::{Nfsstat4, OPEN4_SHARE_ACCESS_BOTH};
use std::path::Path;
use std::time::{Duration, Instant};

const MDS: usize = 3;
/// How long B may take to get the lock once node 1 is cut off: the arbiter's wait and an
/// election, with room to spare.
const TAKE_LIMIT: Duration = Duration::from_secs(120);

/// Nodes 1-3 as `mds_faults` configures them (lease and grace 5 s, so the arbiter waits
/// `mds::state::remote::isolation::lock_grace`, 20 s, for a node it cannot ask); no data servers.
fn start(net: &Netns, dir: &Path) -> Vec<Proc> {
    let (mut mds, _data_servers) = configure(net, dir);
    for p in &mut mds {
        p.start(net);
    }
    for i in 0..MDS {
        wait_listening(addr(net, i), &format!("mds{}", i + 1));
    }
    mds
}

/// A client of node `i` through the MDS (`mds_faults`' settings: GRACE is an answer to look
/// at, not something to wait out).
fn client_of(net: &Netns, i: usize) -> ClientConfig {
    let mut cfg = client_config(addr(net, i), false);
    // A LOCK waits up to 10 s for its shard to have a leader (`locking::ask`), then DELAY.
    cfg.timeout = Duration::from_secs(30);
    cfg
}

/// Runs `f` until it succeeds, for at most `limit` (each try bounded by `mds_faults::retry`).
async fn until_ok<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = client::Result<T>>,
{
    retry(limit, what, || {
        let fut = f();
        async move { fut.await.map_err(|e| e.to_string()) }
    })
    .await
}

#[test]
fn a_node_cut_off_from_the_others_loses_its_clients_locks_before_they_are_granted_elsewhere() {
    let _serial = common::SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = tempfile::tempdir().expect("tempdir");
    // Declared before the processes: dropped after them.
    let net = Netns::new(&format!("cfsi{}", std::process::id()), MDS);
    let _procs = start(&net, tmp.path());
    let rt = common::rt();
    rt.block_on(async {
        let limit = Duration::from_secs(60);
        let a = until_ok("client A on node 1", limit, || {
            Client::connect(client_of(&net, 0))
        })
        .await;
        let b = until_ok("client B on node 2", limit, || {
            Client::connect(client_of(&net, 1))
        })
        .await;
        let create = Some(CreateMode::Unchecked(SetAttrs {
            mode: Some(0o644),
            ..Default::default()
        }));
        let fa = until_ok("create /f through node 1", limit, || {
            a.open_path("/f", OPEN4_SHARE_ACCESS_BOTH, create.clone())
        })
        .await;
        let fb = until_ok("open /f through node 2", limit, || {
            b.open_path("/f", OPEN4_SHARE_ACCESS_BOTH, None)
        })
        .await;
        a.lock(&fa, LockKind::Write, 0, 100, false)
            .await
            .expect("A's write lock through node 1");
        match b.lock(&fb, LockKind::Write, 50, 10, false).await {
            Err(e) if e.is_status(Nfsstat4::Denied) => {}
            r => panic!("B's lock while A holds the range: expected DENIED, got {r:?}"),
        }

        // Node 1 is cut off from nodes 2 and 3; A keeps renewing (its lease task).
        net.cut(0, &[1, 2]);
        let cut = Instant::now();
        let mut answers = Vec::new();
        loop {
            match b.lock(&fb, LockKind::Write, 50, 10, false).await {
                Ok(_) => break,
                Err(e)
                    if e.is_status(Nfsstat4::Denied)
                        || e.is_status(Nfsstat4::Grace)
                        || e.is_status(Nfsstat4::Delay) =>
                {
                    if answers.last() != Some(&e.to_string()) {
                        answers.push(e.to_string());
                    }
                }
                Err(e) => panic!("B's lock through node 2 after the cut: {e}"),
            }
            assert!(
                cut.elapsed() < TAKE_LIMIT,
                "B has no lock {TAKE_LIMIT:?} after the cut; answers: {answers:?}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        eprintln!(
            "isolated_locks: B got the lock {:.1}s after the cut (answers before: {answers:?})",
            cut.elapsed().as_secs_f64()
        );
        // B holds the range now: A must hold nothing at node 1. A renewal answered DELAY
        // (not vouched for, state still there) would retry past the timeout below.
        match tokio::time::timeout(Duration::from_secs(3), a.renew()).await {
            Ok(Err(e)) if e.is_status(Nfsstat4::Badsession) => {}
            Ok(Err(e)) => panic!("A's renewal at node 1 once B holds the lock: {e}"),
            Ok(Ok(())) => panic!("node 1 still renews A's lease while B holds A's lock range"),
            Err(_) => panic!("node 1 still has A's session (DELAY) while B holds A's lock range"),
        }

        // Healed: a new client on node 1 sees B's lock there.
        net.heal(0, &[1, 2]);
        let c = until_ok("client C on node 1 after the heal", limit, || {
            Client::connect(client_of(&net, 0))
        })
        .await;
        let fh = until_ok("look up /f through node 1", limit, || c.lookup_path("/f")).await;
        let held = until_ok("LOCKT through node 1 after the heal", limit, || {
            c.lock_conflicts(&fh, LockKind::Read, 55, 1, b"tester")
        })
        .await;
        assert!(held, "LOCKT through node 1 misses B's lock after the heal");
    });
}
