//! Snapshots of a three-node metadata cluster, as processes (issue 48, plan step 9): a snapshot
//! taken while clients of every node create files and rename them across shards is one instant
//! of the namespace, and a `kill -9` of the node coordinating a create, at each step of its
//! protocol, leaves the snapshot whole or absent, never half, with writes flowing again. The
//! protocol itself (`meta/src/namespace/snaps.rs`) is tested in the namespace's own tests; these
//! run it through `cfs admin snapshot create` against real `cfs server` processes.
use crate::common;
use crate::metadata_cluster::{connect, start_three, until_ok, Node};
use client::{Client, CreateMode, SetAttrs};
use common::{cfs, rt, Out};
use proto::nfs4::OPEN4_SHARE_ACCESS_BOTH;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `cfs admin snapshot ARGS --config` of `node`: what an operator types on that node.
fn snapshot_cmd(node: &Node, args: &[&str]) -> Out {
    let config = node.dir.join("cfs.toml").to_string_lossy().into_owned();
    let mut all = vec!["admin", "snapshot"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--config", &config]);
    cfs(&node.dir, &all)
}

/// Waits until every node wrote its admin address (the listener is up).
fn admin_listening(nodes: &[Node]) {
    for n in nodes {
        let start = Instant::now();
        while !n.dir.join("data").join("admin.addr").exists() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "node {}: no admin listener",
                n.id
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Creates the empty file `dir/name` and closes it (these clusters have no data servers: their
/// files are names only).
async fn make(c: &Client, dir: &proto::nfs4::NfsFh4, name: &str) -> client::Result<()> {
    let create = CreateMode::Unchecked(SetAttrs::mode(0o644));
    let f = c
        .open(dir, name, OPEN4_SHARE_ACCESS_BOTH, Some(create))
        .await?;
    c.close(&f).await
}

/// The names in the directory at `path`, sorted; `None` if it cannot be looked up.
async fn names_at(c: &Client, path: &str) -> Option<Vec<String>> {
    let fh = c.lookup_path(path).await.ok()?;
    let mut n: Vec<String> = c
        .readdir(&fh)
        .await
        .ok()?
        .into_iter()
        .map(|e| e.name)
        .collect();
    n.sort();
    Some(n)
}

/// One client operation's name and when it was invoked and answered.
#[derive(Clone, Debug)]
struct Done {
    n: u64,
    invoked: Instant,
    answered: Instant,
}

/// The numbers `prefix-N` among `names`, sorted.
fn numbers(names: &[String], prefix: &str) -> Vec<u64> {
    let mut v: Vec<u64> = names
        .iter()
        .filter_map(|s| s.strip_prefix(prefix)?.parse().ok())
        .collect();
    v.sort_unstable();
    v
}

/// Checks that `have` (the numbers a snapshot shows of one client's sequential operations) is
/// `0..k` for some k, holds every operation answered before the create was invoked and none
/// invoked after it returned.
fn check_prefix(what: &str, have: &[u64], ops: &[Done], invoked: Instant, returned: Instant) {
    let k = have.len() as u64;
    assert!(
        have.iter().copied().eq(0..k),
        "{what}: the snapshot is not a prefix of the client's operations: {have:?}"
    );
    for op in ops {
        if op.answered < invoked {
            assert!(
                op.n < k,
                "{what}: {} acknowledged before the create, not in it",
                op.n
            );
        }
        if op.invoked > returned {
            assert!(
                op.n >= k,
                "{what}: {} began after the create returned, yet in it",
                op.n
            );
        }
    }
}

/// Clients of all three nodes create files in their own directory (each directory on a shard
/// its node leads) and a fourth moves files across shards (create in /p1, rename to /p2),
/// while node 1 takes a snapshot. The snapshot shows, for each client, a prefix of its
/// operations holding every one acknowledged before the create was invoked and none begun
/// after it returned; and every moved file under exactly one of its two names (a cross-shard
/// rename is in it wholly or not at all).
#[test]
fn a_snapshot_during_creates_and_cross_shard_renames_is_one_instant() {
    let tmp = tempfile::tempdir().unwrap();
    let nodes = start_three(tmp.path());
    admin_listening(&nodes);
    let rt = rt();
    let (creates, moves, invoked, returned) = rt.block_on(async {
        let limit = Duration::from_secs(60);
        let mut clients = Vec::new();
        for n in &nodes {
            clients.push(Arc::new(connect(n.addr, limit).await));
        }
        // Each node puts a new directory on a shard it leads.
        let mut dirs = Vec::new();
        for (i, c) in clients.iter().enumerate() {
            let root = c.root().clone();
            let name = format!("p{}", i + 1);
            dirs.push(until_ok("mkdir", limit, || c.mkdir(&root, &name, 0o755)).await);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for (i, c) in clients.iter().enumerate() {
            let (c, dir, stop) = (c.clone(), dirs[i].clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut done = Vec::new();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) && n < 100_000 {
                    let invoked = Instant::now();
                    make(&c, &dir, &format!("c{n}")).await.expect("create");
                    done.push(Done {
                        n,
                        invoked,
                        answered: Instant::now(),
                    });
                    n += 1;
                }
                (i, done)
            }));
        }
        let mover = {
            let c = connect(nodes[2].addr, limit).await;
            let (from, to, stop) = (dirs[0].clone(), dirs[1].clone(), stop.clone());
            tokio::spawn(async move {
                let mut done = Vec::new();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) && n < 100_000 {
                    let name = format!("m{n}");
                    let invoked = Instant::now();
                    make(&c, &from, &name).await.expect("create to move");
                    c.rename(&from, &name, &to, &name)
                        .await
                        .expect("rename across shards");
                    done.push(Done {
                        n,
                        invoked,
                        answered: Instant::now(),
                    });
                    n += 1;
                }
                done
            })
        };
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let invoked = Instant::now();
        let o = tokio::task::block_in_place(|| {
            snapshot_cmd(&nodes[0], &["create", "/", "--name", "mid"])
        });
        let returned = Instant::now();
        assert!(o.ok(), "snapshot create: {}", o.stderr);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        stop.store(true, Ordering::Relaxed);
        let mut creates = vec![Vec::new(); 3];
        for t in tasks {
            let (i, done) = t.await.expect("creator");
            creates[i] = done;
        }
        let moves = mover.await.expect("mover");
        (creates, moves, invoked, returned)
    });
    println!(
        "snapshot create took {} ms under {} creates and {} moves",
        returned.duration_since(invoked).as_millis(),
        creates.iter().map(Vec::len).sum::<usize>(),
        moves.len()
    );
    rt.block_on(async {
        let c = connect(nodes[1].addr, Duration::from_secs(30)).await;
        for (i, ops) in creates.iter().enumerate() {
            let path = format!("/.snapshot/mid/p{}", i + 1);
            let names = names_at(&c, &path)
                .await
                .unwrap_or_else(|| panic!("{path} is not there"));
            check_prefix(&path, &numbers(&names, "c"), ops, invoked, returned);
            assert!(
                (ops.len() as u64) > numbers(&names, "c").len() as u64,
                "{path}: the creates after the snapshot should not be in it"
            );
        }
        // Moved files: /p2 holds m0..mk, and /p1 at most mk+1 (created, not yet renamed).
        let p1 = names_at(&c, "/.snapshot/mid/p1").await.expect("p1");
        let p2 = names_at(&c, "/.snapshot/mid/p2").await.expect("p2");
        let (in_from, in_to) = (numbers(&p1, "m"), numbers(&p2, "m"));
        check_prefix("moved files in /p2", &in_to, &moves, invoked, returned);
        let k = in_to.len() as u64;
        assert!(
            in_from.is_empty() || in_from == [k],
            "moved files in /p1 of the snapshot: {in_from:?} beside {k} in /p2 (a rename half in?)"
        );
        let _ = c.shutdown().await;
    });
    drop(nodes);
}

/// A `kill -9` of the node coordinating a snapshot create at each step of the protocol (the
/// `snap-*` crash points): before the decision the snapshot is absent (aborted), after it the
/// survivors finish it, and it holds the tree as it was; either way the frozen shards thaw, so
/// the file system takes changes again. One cluster for all five points.
#[test]
fn kill9_of_the_coordinator_at_each_step_leaves_the_snapshot_whole_or_absent() {
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes = start_three(tmp.path());
    admin_listening(&nodes);
    let rt = rt();
    let cases = [
        ("snap-frozen", false),
        ("snap-drained", false),
        ("snap-decided", true),
        ("snap-cut-one", true),
        ("snap-ready", true),
    ];
    for (i, (point, whole)) in cases.into_iter().enumerate() {
        let dir = format!("/d{i}");
        let name = format!("s{i}");
        rt.block_on(async {
            let limit = Duration::from_secs(60);
            // Through node 1: it serves again (after its restart) before it is asked.
            let c = connect(nodes[0].addr, limit).await;
            let root = c.root().clone();
            let d = until_ok(point, limit, || c.mkdir(&root, &dir[1..], 0o755)).await;
            until_ok(point, limit, || make(&c, &d, "before")).await;
            let _ = c.shutdown().await;
        });
        // Node 1 coordinates the create it is asked for; it dies at the point.
        std::fs::write(nodes[0].dir.join("failpoint"), point).unwrap();
        // A create that meets the election after the previous case's restart answers 503
        // before it reaches the point (a shard without a leader yet): it is asked again.
        let asked = Instant::now();
        let o = loop {
            let o = snapshot_cmd(&nodes[0], &["create", &dir, "--name", &name]);
            let alive = nodes[0]
                .proc_
                .as_mut()
                .is_some_and(|p| p.0.try_wait().ok().flatten().is_none());
            if alive && o.stderr.contains("try again") && asked.elapsed() < Duration::from_secs(30)
            {
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
            break o;
        };
        assert!(
            !o.ok(),
            "{point}: the create answered although its node died: {}",
            o.text()
        );
        let start = Instant::now();
        while nodes[0]
            .proc_
            .as_mut()
            .is_none_or(|p| p.0.try_wait().ok().flatten().is_none())
        {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{point}: node 1 never reached it; the create said: {}",
                o.stderr
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        std::fs::remove_file(nodes[0].dir.join("failpoint")).unwrap();
        nodes[0].kill9();
        let died = Instant::now();
        rt.block_on(async {
            let limit = Duration::from_secs(60);
            let c = connect(nodes[1].addr, limit).await;
            let d = until_ok(point, limit, || c.lookup_path(&dir)).await;
            // Writes flow again: the freeze ended (recovery, within a few seconds plus an
            // election for the shards node 1 led).
            until_ok(point, limit, || make(&c, &d, "after")).await;
            let thawed = died.elapsed();
            let snap = format!("{dir}/.snapshot/{name}");
            let start = Instant::now();
            loop {
                let have = names_at(&c, &snap).await;
                match (&have, whole) {
                    (Some(n), true) if n == &["before".to_string()] => break,
                    (None, false) if start.elapsed() > Duration::from_secs(3) => break,
                    (Some(n), _) => assert!(
                        whole && n.iter().all(|x| x == "before"),
                        "{point}: the snapshot shows {n:?}"
                    ),
                    _ => {}
                }
                assert!(start.elapsed() < limit, "{point}: still {have:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            println!(
                "{point}: writes flowed {} ms after the kill",
                thawed.as_millis()
            );
            let _ = c.shutdown().await;
        });
        // A new admin address is written once the restarted node listens.
        let _ = std::fs::remove_file(nodes[0].dir.join("data").join("admin.addr"));
        nodes[0].start();
        admin_listening(&nodes);
        // What `list` says through a survivor: ready, or aborted (kept for a day) or gone.
        let o = snapshot_cmd(&nodes[1], &["list"]);
        assert!(o.ok(), "{point}: list: {}", o.stderr);
        let line = o
            .text()
            .lines()
            .find(|l| l.split_whitespace().any(|w| w == name))
            .map(str::to_string);
        match (whole, line) {
            (true, Some(l)) => assert!(l.contains("ready"), "{point}: {l}"),
            (false, Some(l)) => assert!(l.contains("aborted"), "{point}: {l}"),
            (false, None) => {}
            (true, None) => panic!("{point}: list does not show {name}: {}", o.text()),
        }
    }
    drop(nodes);
}
