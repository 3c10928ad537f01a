//! Three `cfs server` processes as one metadata cluster (`[cluster] node_id`,
//! `metadata_nodes`): every shard a Raft group over the three. Names made through any node are
//! seen through every node; `kill -9` of one node leaves the other two serving after a pause;
//! the killed node, restarted on its disk, catches up.
use crate::common;
use client::{Client, ClientConfig, CreateMode, SetAttrs};
use common::*;
use proto::nfs4::{Nfsstat4, OPEN4_SHARE_ACCESS_BOTH};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub(crate) struct Node {
    pub(crate) id: u64,
    pub(crate) addr: SocketAddr,
    pub(crate) dir: std::path::PathBuf,
    pub(crate) proc_: Option<KillOnDrop>,
    starts: u32,
}

impl Node {
    pub(crate) fn start(&mut self) {
        self.starts += 1;
        let log = std::fs::File::create(self.dir.join(format!("server-{}.log", self.starts)))
            .expect("log");
        let child = Command::new(BIN)
            .arg("server")
            .arg("--config")
            .arg(self.dir.join("cfs.toml"))
            // Crash points the cross-shard test arms by writing their names here.
            .env("CFS_FAILPOINT_FILE", self.dir.join("failpoint"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn cfs server");
        self.proc_ = Some(KillOnDrop(child));
    }

    pub(crate) fn kill9(&mut self) {
        // KillOnDrop sends SIGKILL to the PID it started and reaps it.
        self.proc_ = None;
    }
}

fn config(
    dir: &Path,
    secret: &Path,
    id: u64,
    addr: SocketAddr,
    all: &[String],
    clients: &[String],
) -> String {
    // With client addresses a node takes a dead one's over, and its clients reclaim in the
    // takeover's grace period: a long one, so that on a loaded machine the tests' resends
    // still fall inside it (it is the lease, 10 s, otherwise; CI once ran past it).
    let (clients, grace) = if clients.is_empty() {
        (String::new(), "")
    } else {
        (
            format!("client_addresses = {clients:?}\n"),
            "grace_seconds = 60\n",
        )
    };
    format!(
        "data = {data:?}\nlisten = \"{addr}\"\nroles = [\"mds\"]\nlease_seconds = 10\n{grace}\
         [admin]\nlisten = \"127.0.0.1:0\"\n[cluster]\nsecret_file = {secret:?}\nnode_id = {id}\nmetadata_nodes = {all:?}\n{clients}\
         [[export]]\npath = \"/\"\n",
        data = dir.join("data"),
    )
}

pub(crate) async fn connect(addr: SocketAddr, limit: Duration) -> Client {
    let start = Instant::now();
    loop {
        match Client::connect(ClientConfig::new(addr)).await {
            Ok(c) => return c,
            Err(e) => {
                assert!(start.elapsed() < limit, "cannot mount {addr}: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// A client on each node, in node order.
async fn connect_each(nodes: &[Node], limit: Duration) -> Vec<Client> {
    let mut c = Vec::with_capacity(nodes.len());
    for n in nodes {
        c.push(connect(n.addr, limit).await);
    }
    c
}

async fn names(c: &Client, dir: &str) -> Vec<String> {
    let Ok(fh) = c.lookup_path(dir).await else {
        return Vec::new();
    };
    let mut n: Vec<String> = c
        .readdir(&fh)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|e| e.name)
        .collect();
    n.sort();
    n
}

async fn until_names(c: &Client, dir: &str, want: &[String], what: &str) {
    let start = Instant::now();
    loop {
        let have = names(c, dir).await;
        if have == want {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what}: {} of {} names",
            have.len(),
            want.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts three MDS nodes as one cluster, in `tmp`, and waits until each listens.
pub(crate) fn start_three(tmp: &Path) -> Vec<Node> {
    start_three_with(tmp, &[])
}

/// `start_three`, each node with a client address of its own; returns them too, in node order.
fn start_three_with_client_addresses(tmp: &Path) -> (Vec<Node>, Vec<SocketAddr>) {
    let base = free_ports(3);
    let clients: Vec<SocketAddr> = (0..3u16)
        .map(|i| SocketAddr::from(([127, 0, 0, 1], base + i)))
        .collect();
    let list: Vec<String> = clients
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{}={a}", i + 1))
        .collect();
    (start_three_with(tmp, &list), clients)
}

/// `start_three`, each node with its client address from `clients` ("ID=HOST:PORT").
fn start_three_with(tmp: &Path, clients: &[String]) -> Vec<Node> {
    let secret = tmp.join("secret");
    std::fs::write(&secret, "metadata cluster test secret 42\n").unwrap();
    let base = free_ports(3);
    let mut nodes: Vec<Node> = (0..3u16)
        .map(|i| Node {
            id: u64::from(i) + 1,
            addr: format!("127.0.0.1:{}", base + i).parse().unwrap(),
            dir: tmp.join(format!("n{}", i + 1)),
            proc_: None,
            starts: 0,
        })
        .collect();
    let all: Vec<String> = nodes
        .iter()
        .map(|n| format!("{}={}", n.id, n.addr))
        .collect();
    for n in &mut nodes {
        std::fs::create_dir_all(&n.dir).unwrap();
        std::fs::write(
            n.dir.join("cfs.toml"),
            config(&n.dir, &secret, n.id, n.addr, &all, clients),
        )
        .unwrap();
        n.start();
    }
    for n in &nodes {
        let start = Instant::now();
        while TcpStream::connect_timeout(&n.addr, Duration::from_millis(200)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "node {} did not start; see {}",
                n.id,
                n.dir.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    nodes
}

#[test]
fn three_mds_nodes_share_the_namespace_and_survive_a_kill9() {
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes = start_three(tmp.path());
    let rt = rt();
    rt.block_on(async {
        let limit = Duration::from_secs(30);
        let c = connect_each(&nodes, limit).await;
        // Made through every node in turn.
        let root = c[1].root().clone();
        c[1].mkdir(&root, "d", 0o755).await.expect("mkdir d");
        let mut want = Vec::new();
        for i in 0..30 {
            let name = format!("m{i:02}");
            let at = &c[i % 3];
            let d = at.lookup_path("/d").await.expect("lookup /d");
            at.mkdir(&d, &name, 0o755).await.expect("mkdir");
            want.push(name);
        }
        for (i, cl) in c.iter().enumerate() {
            until_names(cl, "/d", &want, &format!("node {}", i + 1)).await;
        }
        for cl in c {
            let _ = cl.shutdown().await;
        }
    });

    // Node 1 leads a third of the shards (among them shard 0, the root's).
    nodes[0].kill9();
    rt.block_on(async {
        let c2 = connect(nodes[1].addr, Duration::from_secs(30)).await;
        let d = c2.lookup_path("/d").await.expect("lookup /d");
        let t = Instant::now();
        let root = c2.root().clone();
        c2.mkdir(&root, "after", 0o755)
            .await
            .expect("mkdir in the root after node 1 died");
        eprintln!("first change after the kill -9 took {:?}", t.elapsed());
        let mut want = names(&c2, "/d").await;
        for i in 0..10 {
            let name = format!("k{i}");
            c2.mkdir(&d, &name, 0o755).await.expect("mkdir after kill");
            want.push(name);
        }
        want.sort();
        let c3 = connect(nodes[2].addr, Duration::from_secs(30)).await;
        until_names(&c3, "/d", &want, "node 3 after the kill").await;
        let _ = c2.shutdown().await;
        let _ = c3.shutdown().await;

        // Node 1 comes back on its disk and catches up.
        nodes[0].start();
        let c1 = connect(nodes[0].addr, Duration::from_secs(60)).await;
        until_names(&c1, "/d", &want, "node 1 after its restart").await;
        c1.lookup_path("/after").await.expect("/after on node 1");
        let _ = c1.shutdown().await;
    });
}

/// Extended attributes (issue 44) are namespace state like any other: set through one node,
/// read through the others, kept through a kill -9 of the node they were set through, changed
/// while it is down, and caught up by it when it comes back.
#[test]
fn xattrs_are_replicated_and_survive_a_kill9_of_the_node_that_set_them() {
    use proto::nfs4::SetxattrOption4 as How;
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes = start_three(tmp.path());
    let rt = rt();
    let status = |e: client::Error| e.status();
    rt.block_on(async {
        let c = connect_each(&nodes, Duration::from_secs(30)).await;
        let root = c[0].root().clone();
        let d = c[0].mkdir(&root, "x", 0o755).await.expect("mkdir x");
        c[0].setxattr(&d, b"pin", b"hot", How::Create)
            .await
            .expect("setxattr through node 1");
        assert_eq!(
            c[0].setxattr(&d, b"pin", b"cold", How::Create)
                .await
                .map_err(status),
            Err(Some(Nfsstat4::Exist))
        );
        for (i, cl) in c.iter().enumerate().skip(1) {
            let d = cl.lookup_path("/x").await.expect("lookup /x");
            assert_eq!(
                cl.getxattr(&d, b"pin").await.expect("getxattr"),
                b"hot",
                "through node {}",
                i + 1
            );
            assert_eq!(cl.listxattrs(&d).await.expect("list"), [b"pin".to_vec()]);
        }
        for cl in c {
            let _ = cl.shutdown().await;
        }
    });
    nodes[0].kill9();
    rt.block_on(async {
        let c2 = connect(nodes[1].addr, Duration::from_secs(30)).await;
        let d = c2.lookup_path("/x").await.expect("lookup /x");
        assert_eq!(c2.getxattr(&d, b"pin").await.expect("getxattr"), b"hot");
        c2.setxattr(&d, b"after", b"1", How::Either)
            .await
            .expect("setxattr after the kill -9");
        c2.removexattr(&d, b"pin").await.expect("removexattr");
        let _ = c2.shutdown().await;
        nodes[0].start();
        let c1 = connect(nodes[0].addr, Duration::from_secs(60)).await;
        let d = c1.lookup_path("/x").await.expect("lookup /x on node 1");
        assert_eq!(c1.listxattrs(&d).await.expect("list"), [b"after".to_vec()]);
        assert_eq!(
            c1.getxattr(&d, b"pin").await.map_err(status),
            Err(Some(Nfsstat4::Noxattr))
        );
        let _ = c1.shutdown().await;
    });
}

/// Commands in flight when their shard's leader is killed are applied once: a mkdir sent
/// through another node, replicated by the dying leader and committed by the next one, is sent
/// again by the forwarding node and must still answer OK (not "exists"), and a remove must not
/// answer "not found". Six writers through two nodes keep making and removing directories in
/// /w (each a cross-shard transaction: /w's entries on its shard, each new directory on
/// another) while the leader of /w's shard, the third node, is killed mid-stream; every
/// operation must succeed, and the names left are exactly those made and not removed.
#[test]
fn commands_in_flight_when_their_leader_dies_are_applied_once() {
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes = start_three(tmp.path());
    let rt = rt();
    // /w lives on a shard of its own; the writers go through the two nodes that do not lead
    // it (a shard's first leader is node `shard % 3 + 1`), and its leader is killed.
    let (setup, leader) = rt.block_on(async {
        let c = connect(nodes[0].addr, Duration::from_secs(30)).await;
        let root = c.root().clone();
        let w = c.mkdir(&root, "w", 0o755).await.expect("mkdir /w");
        let fileid = c.getattr(&w).await.expect("getattr /w").fileid;
        let leader = usize::try_from(shard_of(fileid) % 3).unwrap();
        let _ = c.shutdown().await;
        let c = connect(nodes[(leader + 1) % 3].addr, Duration::from_secs(30)).await;
        (c, leader)
    });
    let (a2, a3) = (nodes[(leader + 1) % 3].addr, nodes[(leader + 2) % 3].addr);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Each writer's operations done so far: the kill and the stop wait on them, not on a clock.
    let progress: std::sync::Arc<Vec<AtomicU32>> =
        std::sync::Arc::new((0..6).map(|_| AtomicU32::new(0)).collect());
    let writers: Vec<_> = (0..6usize)
        .map(|w| {
            let stop = stop.clone();
            let progress = progress.clone();
            let addr = if w % 2 == 0 { a2 } else { a3 };
            rt.spawn(async move {
                let c = connect(addr, Duration::from_secs(30)).await;
                let d = c.lookup_path("/w").await.expect("lookup /w");
                let mut kept = Vec::new();
                let mut slowest = Duration::ZERO;
                let mut ops = 0u32;
                // Bounded: at most 4500 operations, or until told to stop.
                for i in 0..3000u32 {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let name = format!("w{w}-{i}");
                    let t = Instant::now();
                    if let Err(e) = c.mkdir(&d, &name, 0o755).await {
                        panic!("writer {w}: mkdir {name}: {e}");
                    }
                    slowest = slowest.max(t.elapsed());
                    ops += 1;
                    progress[w].store(ops, Ordering::Relaxed);
                    kept.push(name);
                    if i % 2 == 1 {
                        let gone = format!("w{w}-{}", i - 1);
                        let t = Instant::now();
                        if let Err(e) = c.remove(&d, &gone).await {
                            panic!("writer {w}: rmdir {gone}: {e}");
                        }
                        slowest = slowest.max(t.elapsed());
                        ops += 1;
                        progress[w].store(ops, Ordering::Relaxed);
                        kept.retain(|n| *n != gone);
                    }
                }
                let _ = c.shutdown().await;
                (kept, ops, slowest)
            })
        })
        .collect();
    // Waits (bounded, 120 s) until each writer has done more than `past[w]` operations, or
    // has ended (its 3000 rounds done, or failed: its join says).
    let until_past = |past: &[u32], what: &str| {
        let t = Instant::now();
        loop {
            let behind: Vec<usize> = (0..6)
                .filter(|&w| {
                    progress[w].load(Ordering::Relaxed) <= past[w] && !writers[w].is_finished()
                })
                .collect();
            if behind.is_empty() {
                eprintln!("{what}: after {:?}", t.elapsed());
                return;
            }
            assert!(
                t.elapsed() < Duration::from_secs(120),
                "{what}: writers {behind:?} not past {past:?} in 120 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // The kill lands mid-stream: every writer under way.
    until_past(&[0; 6], "every writer under way");
    nodes[leader].kill9();
    // Writers go on across the kill: each has a few operations done after it (the one it had
    // in flight, then new ones the next leader commits) before they stop.
    let at_kill: Vec<u32> = progress
        .iter()
        .map(|p| p.load(Ordering::Relaxed) + 3)
        .collect();
    until_past(
        &at_kill,
        "every writer's operations going on after the kill",
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut want = Vec::new();
    let mut total = 0;
    for w in writers {
        let (kept, ops, slowest) = rt.block_on(w).expect("writer");
        eprintln!("writer: {ops} operations, slowest {slowest:?}");
        assert!(ops > 0);
        total += ops;
        want.extend(kept);
    }
    want.sort();
    eprintln!(
        "{total} operations across the kill; {} names left",
        want.len()
    );
    rt.block_on(async {
        until_names(&setup, "/w", &want, "a survivor after the kill").await;
        let c3 = connect(a3, Duration::from_secs(30)).await;
        until_names(&c3, "/w", &want, "the other survivor after the kill").await;
        let _ = c3.shutdown().await;
        let _ = setup.shutdown().await;
    });
}

/// `cfs cluster up --mds 3 --ds 3`: every data server heartbeats to every MDS node, so a
/// client of any node gets layouts and its bytes go straight to the data servers; files
/// written through one node read back through the others; `cfs admin status` shows the three
/// nodes and a leader for every shard, as many shards as `--shards` asked for.
#[test]
fn cluster_up_with_three_mds_nodes_serves_data_through_every_node() {
    use common::cluster::Cluster;
    let tmp = tempfile::tempdir().unwrap();
    // Not the default 256: every node must have created the file system with the count given.
    const SHARDS: usize = 12;
    let cl = Cluster::start_nodes(tmp.path(), 3, 3, &["--shards", &SHARDS.to_string()]);
    let mds: Vec<SocketAddr> = (0..3u16)
        .map(|j| SocketAddr::new(cl.addr.ip(), cl.addr.port() + j))
        .collect();
    for (j, at) in mds.iter().enumerate() {
        let st = cl.status_of(*at).expect("status of every MDS node");
        assert_eq!(cl.up(&st), 3, "node {}: data servers up", j + 1);
    }
    let ds_written = |cl: &Cluster| -> u64 {
        let st = cl.status().expect("status");
        st.data_servers.iter().map(|d| d.counters.write_bytes).sum()
    };
    let before = ds_written(&cl);
    let files: Vec<(String, Vec<u8>)> = (0..3)
        .map(|j| (format!("/f{j}"), random_bytes(3 << 20, 40 + j as u64)))
        .collect();
    for (j, (path, data)) in files.iter().enumerate() {
        let r = cl
            .rt
            .block_on(crate::cluster_procs::write_file(mds[j], path, data));
        r.unwrap_or_else(|e: client::Error| {
            panic!(
                "write {path} through node {}: {e}\n{}",
                j + 1,
                cl.log_tail()
            )
        });
    }
    // Two mirrors of each byte, written by the clients to the data servers, not by an MDS.
    let mirrored = 2 * files.iter().map(|(_, d)| d.len() as u64).sum::<u64>();
    let deadline = Instant::now() + Duration::from_secs(10);
    while ds_written(&cl) - before < mirrored {
        assert!(
            Instant::now() < deadline,
            "data servers took {} of {mirrored} bytes",
            ds_written(&cl) - before
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for (j, at) in mds.iter().enumerate() {
        let st = cl.status_of(*at).expect("status");
        assert_eq!(
            st.mds_write_bytes,
            0,
            "node {}: wrote file data itself",
            j + 1
        );
        for (path, want) in &files {
            let got = cl.rt.block_on(crate::cluster_procs::read_file(*at, path));
            let got = got.unwrap_or_else(|e: client::Error| {
                panic!("read {path} through node {}: {e}", j + 1)
            });
            assert!(
                got == *want,
                "{path} through node {}: content differs",
                j + 1
            );
        }
    }
    // Every shard has a leader (an election may be under way on a loaded machine: wait for it,
    // bounded).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = cfs(
            tmp.path(),
            &[
                "admin",
                "status",
                "--json",
                "--config",
                &cl.dir.join("cluster").join("mds2.toml").to_string_lossy(),
            ],
        );
        assert!(o.ok(), "{}", o.stderr);
        let v: serde_json::Value = serde_json::from_str(o.text().trim()).expect("status JSON");
        let md = &v["mds"]["metadata"];
        assert_eq!(md["node"], 2, "{md}");
        assert_eq!(md["nodes"].as_array().map(Vec::len), Some(3), "{md}");
        let shards = md["shards"].as_array().expect("shards");
        assert_eq!(shards.len(), SHARDS, "{md}");
        let leaderless: Vec<&serde_json::Value> = shards
            .iter()
            .filter(|s| !(1..=3).contains(&s["leader"].as_u64().unwrap_or(0)))
            .collect();
        if leaderless.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "shards without a leader after 30 s: {leaderless:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let human = cfs(
        tmp.path(),
        &[
            "admin",
            "status",
            "--config",
            &cl.dir.join("cluster").join("mds2.toml").to_string_lossy(),
        ],
    );
    assert!(
        human.text().contains("metadata: 3 nodes"),
        "{}",
        human.text()
    );
}

/// OPEN (create, read and write) of `name` in the root.
async fn open_new(c: &Client, name: &str) -> client::Result<client::OpenFile> {
    let root = c.root().clone();
    let create = CreateMode::Unchecked(SetAttrs::mode(0o644));
    c.open(&root, name, OPEN4_SHARE_ACCESS_BOTH, Some(create))
        .await
}

/// A dead node's client address moves to a live node, and its clients reclaim there (issue 12
/// item 5): a client of node 1's client address holds a file open when node 1 is killed -9;
/// node 2 (the lowest live id) takes the address over; the client, reconnecting to the same
/// address, finds its session and client id gone and reclaims its open (CLAIM_PREVIOUS). Meanwhile a client of node 2's own address opens files as usual: the takeover's
/// grace period holds up only the dead node's clients. The client's record moves to node 2, so
/// node 1, restarted, has no grace period of its own to wait out.
#[test]
fn a_dead_nodes_client_address_moves_and_its_clients_reclaim_there() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut nodes, clients) = start_three_with_client_addresses(tmp.path());
    let rt = rt();
    let limit = Duration::from_secs(30);
    let held = rt.block_on(async {
        let a = connect(clients[0], limit).await;
        let f = open_new(&a, "held")
            .await
            .expect("open through node 1's client address");
        (a, f)
    });
    let (a, f) = held;
    nodes[0].kill9();
    let t = Instant::now();
    while TcpStream::connect_timeout(&clients[0], Duration::from_millis(200)).is_err() {
        assert!(
            t.elapsed() < limit,
            "nobody took node 1's client address over"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "node 1's client address answered again {:?} after the kill",
        t.elapsed()
    );
    rt.block_on(async {
        // A client of node 2's own address is not held up by the takeover's grace period.
        let mut cfg = ClientConfig::new(clients[1]);
        cfg.retry_grace = false;
        cfg.owner = b"a client of node 2".to_vec();
        let b = Client::connect(cfg).await.expect("connect to node 2");
        let g = open_new(&b, "other")
            .await
            .expect("a new open on node 2 during the takeover's grace period");
        b.close(&g).await.expect("close");

        // Node 1's client: same address, its session adopted by the taker (so what it sends
        // again is answered as the first time: the test below), then a new session and its
        // open reclaimed. Under load the probe may also meet the ordinary recovery: DELAY
        // while the taker does not vouch for its clients yet (shard 0's election after the
        // kill, `mds::state::remote::isolation`), BADSESSION if it took over before its replica had the
        // dead node's records.
        let seen = a.recover().await.expect("recover on the moved address");
        assert!(
            matches!(
                seen,
                None | Some(Nfsstat4::Delay)
                    | Some(Nfsstat4::Badsession)
                    | Some(Nfsstat4::StaleClientid)
            ),
            "the old session on the new node: {seen:?}"
        );
        let f2 = a
            .reclaim_open(&f)
            .await
            .expect("reclaim the open on the taker");
        a.reclaim_complete().await.expect("RECLAIM_COMPLETE");
        // The reclaimed stateid is the taker's own: CLOSE takes it.
        a.close(&f2).await.expect("close the reclaimed open");
        // A stateid of the dead node is not (BAD_STATEID, as knfsd answers in v4.1).
        let old = a
            .close(&f)
            .await
            .expect_err("close with the dead node's stateid");
        assert!(old.to_string().contains("BAD_STATEID"), "{old}");
        let _ = a.shutdown().await;
        let _ = b.shutdown().await;
    });

    // Node 1 comes back: its clients are node 2's now, so it has no grace period (a new open
    // through its own address is not refused with GRACE). Its replica as it was at the kill
    // still names its old client, so it may start one; once the replica caught up, the node
    // ends it and says so, well before the 60 s it would last. That report is the event
    // waited for (not a clock): a grace period that ran out would leave it unsaid.
    nodes[0].start();
    let log = nodes[0].dir.join(format!("server-{}.log", nodes[0].starts));
    let said = |what: &str| {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains(what)
    };
    let ended = "the previous instance's clients moved to other nodes: no grace period";
    let began = rt.block_on(async {
        let mut cfg = ClientConfig::new(nodes[0].addr);
        cfg.retry_grace = false;
        let t = Instant::now();
        let c = loop {
            match Client::connect(cfg.clone()).await {
                Ok(c) => break c,
                Err(e) => {
                    assert!(t.elapsed() < Duration::from_secs(60), "node 1 back: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        // Listening, so past startup: a grace period begun there has been logged.
        let began = said("grace period: clients of the previous instance may reclaim");
        // Attempts, not a clock, bound the wait (a generous 300, a minute unloaded): each
        // refusal while the replica catches up is one.
        let mut seen = Vec::new();
        for attempt in 1.. {
            // Read before the call: a GRACE answered before the end was logged is no fault.
            let over = !began || said(ended);
            match open_new(&c, "on-node-1").await {
                Ok(h) => {
                    c.close(&h).await.expect("close");
                    break;
                }
                Err(e) => {
                    assert!(
                        !(over && e.is_status(Nfsstat4::Grace)),
                        "node 1, restarted, answers GRACE with no grace period on \
                         (one begun at startup: {began}): {e}"
                    );
                    seen.push(e.to_string());
                    assert!(
                        attempt < 300,
                        "node 1, restarted, refused 300 opens; awaited: its replica caught \
                         up (and a grace period begun at startup, {began}, ended): {seen:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        eprintln!(
            "node 1 restarted (a grace period begun at startup: {began}): open after {} \
             refusals {seen:?}",
            seen.len()
        );
        let _ = c.shutdown().await;
        began
    });
    // A restart's grace period refuses every new open: the open went through once it ended,
    // which must have been early (the replica caught up), not by running out.
    assert!(
        !began || said(ended),
        "node 1's grace period was not ended early by its replica catching up (it ran out?)"
    );
}

/// Waits (bounded) until `f` answers Ok; the last error otherwise.
pub(crate) async fn until_ok<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = client::Result<T>>,
{
    let start = Instant::now();
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) => {
                assert!(start.elapsed() < limit, "{what}: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// The shard of a file system object, read off its file id (`mds::namespace::shard`).
fn shard_of(fileid: u64) -> u64 {
    fileid >> 48
}

/// A new directory in the root whose shard node `node` led first (`shard % 3 + 1`), named
/// `prefix` and a number, and its file handle. Made through that node, which puts a new
/// directory on a shard it leads: the first try, unless an election moved a leader.
async fn dir_first_led_by(
    nodes: &[Node],
    node: u64,
    prefix: &str,
) -> (String, proto::nfs4::NfsFh4) {
    let by = connect(nodes[node as usize - 1].addr, Duration::from_secs(30)).await;
    let root = by.root().clone();
    for i in 0..20 {
        let name = format!("{prefix}{i}");
        let fh = by.mkdir(&root, &name, 0o755).await.expect("mkdir");
        let fileid = by.getattr(&fh).await.expect("getattr").fileid;
        if shard_of(fileid) % 3 + 1 == node {
            let _ = by.shutdown().await;
            return (name, fh);
        }
    }
    panic!("20 directories made through node {node}, none on a shard it led first");
}

/// A cross-shard rename survives a kill -9 of each participant at each step (issue 12, "a
/// crash test for cross-shard rename that kills each participant at each step"). Three MDS
/// nodes; /a and /b are directories on two shards whose first leaders are nodes 2 and 3 (a
/// shard's first leader is node `shard % 3 + 1`), the client talks to node 1, which
/// coordinates. For each crash point the node at it aborts there (as kill -9 would) during
/// `rename /a/f /b/g`: the coordinator after locking (rolled back by the shards' recovery),
/// after deciding and after the first commit (carried out by the recovery); the leader of /b's
/// shard as it applies its lock and the leader of /a's shard as it applies its commit (the
/// coordinator goes on with the next leaders). The node is restarted, and the rename ends done
/// or not done as the point implies, never half: the file under one of the names, its link
/// count 1, and the directories usable (nothing left locked).
#[test]
fn a_cross_shard_rename_survives_a_kill9_of_each_participant_at_each_step() {
    // (crash point, which node: 0 = the coordinator, 1 = /a's leader, 2 = /b's leader, done)
    let cases = [
        ("txn-locked", 0, false),
        ("txn-decided", 0, true),
        ("txn-committed-one", 0, true),
        // The lock is committed on a quorum before its leader dies: the coordinator sends the
        // step again to the next leader (applied once) and the rename goes through.
        ("txn-lock-applied", 2, true),
        ("txn-commit-applied", 1, true),
    ];
    for (point, who, done) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let mut nodes = start_three(tmp.path());
        let rt = rt();
        let victim = rt.block_on(async {
            let c = connect(nodes[0].addr, Duration::from_secs(30)).await;
            // A directory led (first) by node 2 and one by node 3: made through them, as a
            // new directory goes to a shard its node leads.
            let (an, afh) = dir_first_led_by(&nodes, 2, "a").await;
            let (bn, bfh) = dir_first_led_by(&nodes, 3, "b").await;
            let create = CreateMode::Unchecked(SetAttrs::mode(0o644));
            let f = c
                .open(&afh, "f", OPEN4_SHARE_ACCESS_BOTH, Some(create))
                .await
                .expect("create f");
            c.close(&f).await.expect("close f");
            // Armed only now: setting up made transactions too.
            let victim = [0usize, 1, 2][who];
            std::fs::write(nodes[victim].dir.join("failpoint"), point).unwrap();
            let _ =
                tokio::time::timeout(Duration::from_secs(20), c.rename(&afh, "f", &bfh, "g")).await;
            let _ = c.shutdown().await;
            (victim, an, bn)
        });
        let (victim, an, bn) = victim;
        // The armed node died there (its process ended by itself).
        let start = Instant::now();
        loop {
            let exited = nodes[victim]
                .proc_
                .as_mut()
                .is_some_and(|p| p.0.try_wait().ok().flatten().is_some());
            if exited {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{point}: node {} never reached it",
                victim + 1
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        std::fs::remove_file(nodes[victim].dir.join("failpoint")).unwrap();
        nodes[victim].kill9();
        nodes[victim].start();
        rt.block_on(async {
            let live = if victim == 0 { 1 } else { 0 };
            let c = connect(nodes[live].addr, Duration::from_secs(60)).await;
            let limit = Duration::from_secs(60);
            // Settled: the file under the one name the crash point implies. Until the shards'
            // recovery has run (a few seconds after the crash), reads may show the state
            // before the rename (it was never answered, so either is a right read) or, after
            // the first shard's commit, both names (ARCHITECTURE: reads do not wait for
            // locks); never neither.
            let names =
                |v: Vec<client::DirEntry>| v.into_iter().map(|e| e.name).collect::<Vec<_>>();
            let want = if done {
                (vec![], vec!["g".to_string()])
            } else {
                (vec!["f".to_string()], vec![])
            };
            let start = Instant::now();
            loop {
                let at_a = until_ok(point, limit, || async {
                    let a = c.lookup_path(&format!("/{an}")).await?;
                    c.readdir(&a).await
                })
                .await;
                let at_b = until_ok(point, limit, || async {
                    let b = c.lookup_path(&format!("/{bn}")).await?;
                    c.readdir(&b).await
                })
                .await;
                let have = (names(at_a), names(at_b));
                assert!(
                    have.0.len() + have.1.len() >= 1,
                    "{point}: the file under no name"
                );
                if have == want {
                    break;
                }
                assert!(start.elapsed() < limit, "{point}: still {have:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let path = if done {
                format!("/{bn}/g")
            } else {
                format!("/{an}/f")
            };
            let (fh, st) = c.stat_path(&path).await.expect("stat the file");
            assert_eq!(st.nlink, 1, "{point}");
            // Nothing stays locked: the file moves on, and both directories take new names.
            let (from, name, to) = if done {
                (bn.clone(), "g", an.clone())
            } else {
                (an.clone(), "f", bn.clone())
            };
            let from_fh = c.lookup_path(&format!("/{from}")).await.unwrap();
            let to_fh = c.lookup_path(&format!("/{to}")).await.unwrap();
            until_ok(point, limit, || c.rename(&from_fh, name, &to_fh, "h")).await;
            assert_eq!(
                c.stat_path(&format!("/{to}/h")).await.expect("moved on").0,
                fh
            );
            c.mkdir(&from_fh, "new", 0o755)
                .await
                .expect("mkdir in the source");
            let _ = c.shutdown().await;
        });
        drop(nodes);
    }
}

/// With three MDS nodes, a file unlinked through one node while a client of another node has
/// it open keeps its data until that client closes it there, while the files unlinked beside
/// it lose theirs: the leader hands orphans to the reaper in batches (`Mds::forget_orphans`)
/// and asks the other nodes about a whole batch in one `PEERPROC_IN_USE` call each.
#[test]
fn unlinked_files_keep_their_data_while_open_through_another_node() {
    use client::StableHow4;
    use common::cluster::Cluster;
    let tmp = tempfile::tempdir().unwrap();
    // A short lease: while a node's grace period runs it counts every file as in use.
    let cl = Cluster::start_nodes(tmp.path(), 3, 3, &["--shards", "4", "--lease-seconds", "5"]);
    let connect = |j: u16| {
        let mut cfg = ClientConfig::new(SocketAddr::new(cl.addr.ip(), cl.addr.port() + j));
        cfg.pnfs = true;
        cl.rt
            .block_on(Client::connect(cfg))
            .unwrap_or_else(|e| panic!("connect to node {}: {e}", j + 1))
    };
    let (a, b) = (connect(0), connect(1));
    let write = |c: &Client, path: &str, data: &[u8]| -> client::OpenFile {
        let create = Some(CreateMode::Unchecked(SetAttrs {
            mode: Some(0o644),
            size: Some(0),
            ..Default::default()
        }));
        cl.rt
            .block_on(async {
                let f = c.open_path(path, OPEN4_SHARE_ACCESS_BOTH, create).await?;
                c.write_all(&f, 0, data, StableHow4::FileSync4).await?;
                c.commit_file(&f).await?;
                client::Result::Ok(f)
            })
            .unwrap_or_else(|e: client::Error| panic!("write {path}: {e}\n{}", cl.log_tail()))
    };
    let stored = |ino: u64| cl.chunk_files(ino).iter().map(|(_, n)| n).sum::<usize>();
    let held_data = random_bytes(1 << 20, 7);
    let held = write(&b, "/held", &held_data);
    let mut gone = Vec::new();
    for i in 0..8u64 {
        let f = write(&a, &format!("/gone{i}"), &random_bytes(256 << 10, 100 + i));
        cl.rt.block_on(a.close(&f)).expect("close");
        gone.push((format!("gone{i}"), f.stat.fileid));
    }
    for ino in gone.iter().map(|(_, i)| *i).chain([held.stat.fileid]) {
        assert!(stored(ino) >= 2, "file {ino}: chunk files on both mirrors");
    }
    let root = cl.rt.block_on(a.lookup_path("/")).expect("root");
    for name in gone.iter().map(|(n, _)| n.as_str()).chain(["held"]) {
        cl.rt
            .block_on(a.remove(&root, name))
            .unwrap_or_else(|e| panic!("REMOVE {name}: {e}"));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while gone.iter().any(|(_, ino)| stored(*ino) > 0) {
        assert!(
            Instant::now() < deadline,
            "data of files unlinked 60 s ago left: {:?}\n{}",
            gone.iter()
                .map(|(_, i)| (*i, stored(*i)))
                .collect::<Vec<_>>(),
            cl.log_tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        stored(held.stat.fileid) >= 2,
        "the file open through node 2 lost its data"
    );
    let (got, _) = cl
        .rt
        .block_on(b.read_full(&held, 0, held_data.len() as u32))
        .expect("read the unlinked file through its open");
    assert!(got == held_data, "the unlinked open file's content differs");
    cl.rt.block_on(b.close(&held)).expect("close");
    let deadline = Instant::now() + Duration::from_secs(60);
    while stored(held.stat.fileid) > 0 {
        assert!(
            Instant::now() < deadline,
            "data of the file closed 60 s ago left\n{}",
            cl.log_tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = cl.rt.block_on(a.shutdown());
    let _ = cl.rt.block_on(b.shutdown());
}

/// Byte-range locks taken through different MDS nodes conflict, and go on conflicting when the
/// leader of the file's shard (the lock arbiter, `mds::state::remote::locking`) is killed -9. Three nodes, a
/// client on each; the file lives in a directory whose shard node 3 leads. A write lock taken
/// through node 2 blocks a read lock and LOCKT through nodes 1 and 3 and goes with LOCKU; after
/// node 3 dies, the next arbiter gathers node 2's lock and still refuses node 1's, and grants it
/// once node 2's client unlocks (after the grace period that node 3's clients had to reclaim).
#[test]
fn byte_range_locks_conflict_across_nodes_and_survive_the_arbiters_death() {
    use client::LockKind;
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes = start_three(tmp.path());
    let rt = rt();
    rt.block_on(async {
        let limit = Duration::from_secs(30);
        let c = connect_each(&nodes, limit).await;
        // A directory on a shard whose first leader is node 3 (shard % 3 == 2): made through
        // node 3, as a new directory goes to a shard its node leads.
        let (dir, _) = dir_first_led_by(&nodes, 3, "d").await;
        let path = format!("/{dir}/f");
        let create = Some(CreateMode::Unchecked(SetAttrs {
            mode: Some(0o644),
            ..Default::default()
        }));
        let fa = c[0]
            .open_path(&path, OPEN4_SHARE_ACCESS_BOTH, create)
            .await
            .expect("create through node 1");
        let fb = until_ok("open through node 2", limit, || {
            c[1].open_path(&path, OPEN4_SHARE_ACCESS_BOTH, None)
        })
        .await;
        let fc = until_ok("open through node 3", limit, || {
            c[2].open_path(&path, OPEN4_SHARE_ACCESS_BOTH, None)
        })
        .await;
        let denied = |r: client::Result<_>, what: &str| match r {
            Err(e) if e.is_status(Nfsstat4::Denied) => {}
            Err(e) => panic!("{what}: expected DENIED, got {e}"),
            Ok(_) => panic!("{what}: granted, but another node's client holds the range"),
        };
        c[1].lock(&fb, LockKind::Write, 50, 10, false)
            .await
            .expect("write lock through node 2");
        denied(
            c[0].lock(&fa, LockKind::Read, 0, 100, false).await,
            "read lock through node 1",
        );
        denied(
            c[2].lock(&fc, LockKind::Write, 55, 1, false).await,
            "write lock through node 3",
        );
        assert!(
            c[0].lock_conflicts(&fa.fh, LockKind::Read, 59, 1, b"tester")
                .await
                .expect("LOCKT through node 1"),
            "LOCKT through node 1 sees node 2's lock"
        );
        // Ranges that do not overlap, and read locks, share.
        c[0].lock(&fa, LockKind::Write, 0, 50, false)
            .await
            .expect("an adjacent range through node 1");
        c[0].unlock(&fa, LockKind::Write, 0, 50)
            .await
            .expect("unlock through node 1");
        c[1].unlock(&fb, LockKind::Write, 50, 10)
            .await
            .expect("unlock through node 2");
        c[2].lock(&fc, LockKind::Write, 55, 1, false)
            .await
            .expect("the range is free once node 2's client unlocked");
        c[2].unlock(&fc, LockKind::Write, 55, 1)
            .await
            .expect("unlock through node 3");
        c[1].lock(&fb, LockKind::Write, 50, 10, false)
            .await
            .expect("write lock through node 2 again");

        // The arbiter dies.
        nodes[2].kill9();
        let t = Instant::now();
        loop {
            match c[0].lock(&fa, LockKind::Write, 52, 2, false).await {
                Err(e) if e.is_status(Nfsstat4::Denied) => break,
                Err(e) if e.is_status(Nfsstat4::Delay) || e.is_status(Nfsstat4::Grace) => {
                    assert!(
                        t.elapsed() < Duration::from_secs(60),
                        "no arbiter after 60 s: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("lock through node 1 after the arbiter died: {e}"),
                Ok(_) => panic!(
                    "node 1 granted a lock that node 2's client holds, after the arbiter died"
                ),
            }
        }
        eprintln!(
            "first lock decision after the arbiter's kill -9: {:?}",
            t.elapsed()
        );
        c[1].unlock(&fb, LockKind::Write, 50, 10)
            .await
            .expect("unlock through node 2 after the arbiter died");
        let t = Instant::now();
        loop {
            match c[0].lock(&fa, LockKind::Write, 52, 2, false).await {
                Ok(_) => break,
                Err(e) if e.is_status(Nfsstat4::Grace) || e.is_status(Nfsstat4::Delay) => {
                    assert!(
                        t.elapsed() < Duration::from_secs(60),
                        "still waiting after 60 s: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("lock through node 1 once node 2's client unlocked: {e}"),
            }
        }
        eprintln!("granted {:?} after node 2's unlock", t.elapsed());
        denied(
            c[1].lock(&fb, LockKind::Read, 53, 1, false).await,
            "read lock through node 2 over node 1's new lock",
        );
        for cl in c.into_iter().take(2) {
            let _ = cl.shutdown().await;
        }
    });
}

/// Makes file `name` in the root through `c`.
async fn make_file(c: &Client, name: &str) {
    let create = Some(CreateMode::Unchecked(SetAttrs {
        mode: Some(0o644),
        ..Default::default()
    }));
    let f = c
        .open_path(&format!("/{name}"), OPEN4_SHARE_ACCESS_BOTH, create)
        .await
        .expect("create");
    c.close(&f).await.expect("close");
}

/// The delegation a read-only OPEN that wants one (no WANT flags) of file `name` in the root
/// gets through `c`.
async fn read_delegation(c: &Client, name: &str) -> proto::nfs4::OpenDelegation4 {
    use proto::nfs4::*;
    delegation_of_open(c, name, OPEN4_SHARE_ACCESS_READ, Openflag4::NoCreate).await
}

/// The delegation an OPEN with these share bits (no WANT flags) of file `name` in the root
/// gets through `c`.
pub(crate) async fn delegation_of_open(
    c: &Client,
    name: &str,
    share_access: u32,
    openhow: proto::nfs4::Openflag4,
) -> proto::nfs4::OpenDelegation4 {
    use proto::nfs4::*;
    let res = c
        .compound(
            client::CompoundBuilder::new()
                .putfh(c.root())
                .op(NfsArgop4::Open(OpenArgs {
                    seqid: 0,
                    share_access,
                    share_deny: 0,
                    owner: StateOwner4 {
                        clientid: c.clientid(),
                        owner: proto::xdr::Opaque::from("delegation probe"),
                    },
                    openhow,
                    claim: OpenClaim4::Null(proto::xdr::Opaque::from(name)),
                })),
        )
        .await
        .expect("OPEN");
    match res.last() {
        Some(NfsResop4::Open(OpenRes::Ok(ok))) => ok.delegation.clone(),
        other => panic!("OPEN result: {other:?}"),
    }
}

/// TEST_STATEID of `sid` through `c`: 0 while the server still knows it.
async fn test_stateid(c: &Client, sid: proto::nfs4::Stateid4) -> u32 {
    use proto::nfs4::*;
    let res = c
        .compound(vec![NfsArgop4::TestStateid(TestStateidArgs {
            ts_stateids: vec![sid],
        })])
        .await
        .expect("TEST_STATEID");
    match res.last() {
        Some(NfsResop4::TestStateid(TestStateidRes::Ok(ok))) => ok.tsr_status_codes[0],
        other => panic!("TEST_STATEID result: {other:?}"),
    }
}

/// Read delegations with several MDS nodes: a node hands one out once the others have taken
/// note, and a change through another node recalls it there. Client A (node 1) holds a read
/// delegation; client B's write open through node 2 gets through only after A returned it
/// (A's client returns a recalled delegation by itself). While B has the file open for
/// writing, no node delegates it; once B closed it, node 3 does, and B's SETATTR through
/// node 2 recalls that one too.
#[test]
fn a_change_through_one_node_recalls_a_delegation_another_handed_out() {
    use proto::nfs4::OpenDelegation4;
    let tmp = tempfile::tempdir().unwrap();
    let nodes = start_three(tmp.path());
    let rt = rt();
    rt.block_on(async {
        let c = connect_each(&nodes, Duration::from_secs(30)).await;
        make_file(&c[0], "f").await;
        let OpenDelegation4::Read(d) = read_delegation(&c[0], "f").await else {
            panic!("node 1: a read-only OPEN gets a read delegation with three MDS nodes");
        };
        assert_eq!(test_stateid(&c[0], d.stateid).await, 0, "A holds it");
        let t = Instant::now();
        let w = c[1]
            .open_path("/f", OPEN4_SHARE_ACCESS_BOTH, None)
            .await
            .expect("write open through node 2");
        eprintln!("B's write open through node 2 took {:?}", t.elapsed());
        assert_eq!(
            test_stateid(&c[0], d.stateid).await,
            Nfsstat4::BadStateid.code(),
            "node 2's write open got through while A's delegation from node 1 was still out"
        );
        let d3 = read_delegation(&c[2], "f").await;
        assert!(
            matches!(d3, OpenDelegation4::None),
            "node 3 delegated a file that B has open for writing through node 2: {d3:?}"
        );
        c[1].close(&w).await.expect("close");
        let OpenDelegation4::Read(d3) = read_delegation(&c[2], "f").await else {
            panic!("node 3: a read delegation once nobody writes the file");
        };
        let f = c[1].lookup_path("/f").await.expect("lookup");
        c[1].setattr(&f, &SetAttrs::mode(0o600), None)
            .await
            .expect("SETATTR through node 2");
        assert_eq!(
            test_stateid(&c[2], d3.stateid).await,
            Nfsstat4::BadStateid.code(),
            "node 2's SETATTR got through while C's delegation from node 3 was still out"
        );
        for cl in c {
            let _ = cl.shutdown().await;
        }
    });
}

/// The delegation a read-write OPEN (creating `name` in the root if need be) that wants one
/// gets through `c`.
async fn write_delegation(c: &Client, name: &str) -> proto::nfs4::OpenDelegation4 {
    use proto::nfs4::*;
    let create = Openflag4::Create(Createhow4::Unchecked(Fattr4::default()));
    delegation_of_open(c, name, OPEN4_SHARE_ACCESS_BOTH, create).await
}

/// A sole writer through any node gets a write delegation, and a reader a read delegation
/// (with data servers too: `pnfs_client.rs` has a holder that writes through its layout).
#[test]
fn a_sole_writer_through_any_node_gets_a_write_delegation() {
    use proto::nfs4::OpenDelegation4;
    let tmp = tempfile::tempdir().unwrap();
    let nodes = start_three(tmp.path());
    let rt = rt();
    rt.block_on(async {
        let c = connect_each(&nodes, Duration::from_secs(30)).await;
        for (i, cl) in c.iter().enumerate() {
            let d = write_delegation(cl, &format!("w{i}")).await;
            assert!(
                matches!(d, OpenDelegation4::Write(_)),
                "node {}: no write delegation: {d:?}",
                i + 1
            );
        }
        make_file(&c[0], "r").await;
        let d = read_delegation(&c[1], "r").await;
        assert!(matches!(d, OpenDelegation4::Read(_)), "{d:?}");
        for cl in c {
            let _ = cl.shutdown().await;
        }
    });
}

/// With data servers, a write delegation's holder writes them through its layout and returns
/// the delegation with the file still open and no LAYOUTCOMMIT sent (as Linux answers a
/// recall): what it and a client of another node see next is the size written
/// (`mds/src/state/settle.rs`; this client answers the layout recall that follows by
/// committing and returning its layout, with a LAYOUTCOMMIT of the size it wrote).
#[test]
fn a_write_delegation_returned_without_layoutcommit_leaves_the_size_written() {
    use common::cluster::Cluster;
    use proto::nfs4::*;
    let tmp = tempfile::tempdir().unwrap();
    let cl = Cluster::start_nodes(tmp.path(), 3, 3, &[]);
    let node2 = SocketAddr::new(cl.addr.ip(), cl.addr.port() + 1);
    let a = cl.client(true);
    let b = cl.client_at(node2, true);
    cl.rt.block_on(async {
        let data = vec![7u8; 3 << 20];
        let (d, f) = write_under_delegation(&cl, &a, "/wd", &data).await;
        a.compound(
            client::CompoundBuilder::new()
                .putfh(&f.fh)
                .op(NfsArgop4::Delegreturn(DelegreturnArgs {
                    deleg_stateid: d.stateid,
                })),
        )
        .await
        .expect("DELEGRETURN");
        // The holder itself, its file still open: the size it wrote, not the server's 0
        // from before the settle (Linux took that as a truncation: an append went to 0).
        let own = a.stat_path("/wd").await.expect("the holder's stat").1.size;
        assert_eq!(
            own,
            data.len() as u64,
            "the size the holder reads after returning"
        );
        let size = b.stat_path("/wd").await.expect("stat /wd on node 2").1.size;
        if size != data.len() as u64 {
            for n in ["mds1", "mds2"] {
                let log = tmp.path().join("cluster").join(format!("{n}.log"));
                eprintln!(
                    "== {n}.log\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
        }
        assert_eq!(size, data.len() as u64, "the size node 2 reports");
        let _ = a.shutdown().await;
        let _ = b.shutdown().await;
    });
}

/// `a` creates `path` (in the root) with a write delegation, opens it and writes `data`
/// through its layout, sending no LAYOUTCOMMIT: the delegation and the open file.
async fn write_under_delegation(
    cl: &common::cluster::Cluster,
    a: &Client,
    path: &str,
    data: &[u8],
) -> (proto::nfs4::OpenWriteDelegation4, client::OpenFile) {
    use proto::nfs4::*;
    let OpenDelegation4::Write(d) = write_delegation(a, &path[1..]).await else {
        panic!("no write delegation with data servers\n{}", cl.log_tail());
    };
    let f = a
        .open_path(path, OPEN4_SHARE_ACCESS_WRITE, None)
        .await
        .expect("open");
    a.write_all(&f, 0, data, StableHow4::FileSync4)
        .await
        .expect("write through the layout");
    let stats = a.pnfs_stats().expect("pNFS stats");
    assert!(
        stats.ds_write_bytes >= data.len() as u64 && stats.layoutcommits == 0,
        "not written through the layout alone: {stats:?}"
    );
    (d, f)
}

/// A write delegation's holder writes through its layout and falls silent with the file open
/// (no DELEGRETURN, no LAYOUTCOMMIT, no renewal: a client that died or was cut off). Once its
/// delegation is taken away (its lease ran out and another client's access expired it, or a
/// recall went unanswered a lease long), the size recorded is the one the data servers hold,
/// not 0 (`StateManager::settle_unreturned`).
#[test]
fn a_silent_write_delegation_holder_leaves_the_size_written() {
    use common::cluster::Cluster;
    let tmp = tempfile::tempdir().unwrap();
    let cl = Cluster::start_nodes(tmp.path(), 3, 3, &["--lease-seconds", "5"]);
    let node2 = SocketAddr::new(cl.addr.ip(), cl.addr.port() + 1);
    let a = cl.client(true);
    let b = cl.client_at(node2, true);
    cl.rt.block_on(async {
        let data = vec![5u8; 3 << 20];
        let (_d, f) = write_under_delegation(&cl, &a, "/silent", &data).await;
        // Dropped without a word: its lease is no longer renewed.
        drop(f);
        drop(a);
        let deadline = std::time::Instant::now() + Duration::from_secs(40);
        let size = loop {
            let size = b.stat_path("/silent").await.map(|a| a.1.size).ok();
            if size == Some(data.len() as u64) || std::time::Instant::now() > deadline {
                break size;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        assert_eq!(size, Some(data.len() as u64), "{}", cl.log_tail());
        let _ = b.shutdown().await;
    });
}

/// OPEN of file `name` in the root through `c` by open-owner `owner` with these share bits
/// (no delegation wanted): its stateid and handle, or the status it failed with (DELAY once
/// the client's retries ran out).
async fn open_share(
    c: &Client,
    name: &str,
    access: u32,
    deny: u32,
    owner: &str,
) -> Result<(proto::nfs4::Stateid4, proto::nfs4::NfsFh4), Nfsstat4> {
    open_share_claim(c, None, name, access, deny, owner).await
}

/// As `open_share`, or with `reclaim` the handle of the file to reclaim an open of
/// (CLAIM_PREVIOUS) after a server's restart or a takeover.
async fn open_share_claim(
    c: &Client,
    reclaim: Option<&proto::nfs4::NfsFh4>,
    name: &str,
    access: u32,
    deny: u32,
    owner: &str,
) -> Result<(proto::nfs4::Stateid4, proto::nfs4::NfsFh4), Nfsstat4> {
    use proto::nfs4::*;
    let (fh, claim) = match reclaim {
        Some(fh) => (fh, OpenClaim4::Previous(OpenDelegationType4::None)),
        None => (c.root(), OpenClaim4::Null(proto::xdr::Opaque::from(name))),
    };
    let (status, res) = c
        .compound_keep_failure(
            client::CompoundBuilder::new()
                .putfh(fh)
                .op(NfsArgop4::Open(OpenArgs {
                    seqid: 0,
                    share_access: access | OPEN4_SHARE_ACCESS_WANT_NO_DELEG,
                    share_deny: deny,
                    owner: StateOwner4 {
                        clientid: c.clientid(),
                        owner: proto::xdr::Opaque::from(owner),
                    },
                    openhow: Openflag4::NoCreate,
                    claim,
                }))
                .getfh(),
        )
        .await
        .expect("OPEN compound");
    if status != Nfsstat4::Ok {
        return Err(status);
    }
    let sid = res.iter().find_map(|r| match r {
        NfsResop4::Open(OpenRes::Ok(ok)) => Some(ok.stateid),
        _ => None,
    });
    let fh = res.iter().find_map(|r| match r {
        NfsResop4::Getfh(GetfhRes::Ok(ok)) => Some(ok.object.clone()),
        _ => None,
    });
    Ok((sid.expect("OPEN's stateid"), fh.expect("GETFH")))
}

async fn close_share(c: &Client, (sid, fh): &(proto::nfs4::Stateid4, proto::nfs4::NfsFh4)) {
    use proto::nfs4::*;
    c.compound(
        client::CompoundBuilder::new()
            .putfh(fh)
            .op(NfsArgop4::Close(CloseArgs {
                seqid: 0,
                open_stateid: *sid,
            })),
    )
    .await
    .expect("CLOSE");
}

/// Share reservations (OPEN deny modes) hold across MDS nodes, both ways: an open through one
/// node is refused while another node's open denies its access, a deny open is refused while
/// another node's open has the access it denies, and I/O with the anonymous stateid meets
/// another node's deny bits. A deny whose open closed stands in nobody's way.
#[test]
fn share_reservations_hold_across_nodes() {
    use proto::nfs4::*;
    let tmp = tempfile::tempdir().unwrap();
    let nodes = start_three(tmp.path());
    let rt = rt();
    rt.block_on(async {
        let c = connect_each(&nodes, Duration::from_secs(30)).await;
        make_file(&c[0], "f").await;
        let (read, write, both) = (
            OPEN4_SHARE_ACCESS_READ,
            OPEN4_SHARE_ACCESS_WRITE,
            OPEN4_SHARE_ACCESS_BOTH,
        );
        let (deny_read, deny_write) = (OPEN4_SHARE_DENY_READ, OPEN4_SHARE_DENY_WRITE);
        // A reads through node 1 and denies writers.
        let a = open_share(&c[0], "f", read, deny_write, "A")
            .await
            .expect("A's deny-write open through node 1");
        assert_eq!(
            open_share(&c[1], "f", write, 0, "B").await.err(),
            Some(Nfsstat4::ShareDenied),
            "B's write open through node 2 while A's open through node 1 denies writers"
        );
        assert_eq!(
            open_share(&c[2], "f", read, deny_read, "C").await.err(),
            Some(Nfsstat4::ShareDenied),
            "C's deny-read open through node 3 while A reads through node 1"
        );
        let fh = c[2].lookup_path("/f").await.expect("lookup");
        let (status, _) =
            c[2].compound_keep_failure(client::CompoundBuilder::new().putfh(&fh).op(
                NfsArgop4::Write(WriteArgs {
                    stateid: Stateid4::default(),
                    offset: 0,
                    stable: StableHow4::FileSync4,
                    data: proto::xdr::Opaque(b"anonymous".to_vec()),
                }),
            ))
            .await
            .expect("WRITE compound");
        assert_eq!(
            status,
            Nfsstat4::Locked,
            "a WRITE with the anonymous stateid through node 3 while node 1's open denies writers"
        );
        // Reading is not denied: B reads through node 2.
        let b_read = open_share(&c[1], "f", read, 0, "B")
            .await
            .expect("B's read open through node 2 (A denies only writers)");
        close_share(&c[1], &b_read).await;
        close_share(&c[0], &a).await;
        // A's deny went with its open: B's write open through node 2 gets through now.
        let t = Instant::now();
        let b = open_share(&c[1], "f", both, 0, "B")
            .await
            .expect("B's write open through node 2 once A closed");
        eprintln!("B's write open after A's close took {:?}", t.elapsed());
        // While B writes through node 2, a deny-write open through node 1 is refused.
        assert_eq!(
            open_share(&c[0], "f", read, deny_write, "A").await.err(),
            Some(Nfsstat4::ShareDenied),
            "A's deny-write open through node 1 while B writes through node 2"
        );
        close_share(&c[1], &b).await;
        let a = open_share(&c[0], "f", read, deny_write, "A")
            .await
            .expect("A's deny-write open through node 1 once B closed");
        close_share(&c[0], &a).await;
        for cl in c {
            let _ = cl.shutdown().await;
        }
    });
}

/// Kills node 1 with -9 and returns once another node serves its client address.
fn kill_node_1_until_taken_over(nodes: &mut [Node], clients: &[SocketAddr], limit: Duration) {
    nodes[0].kill9();
    let t = Instant::now();
    while TcpStream::connect_timeout(&clients[0], Duration::from_millis(200)).is_err() {
        assert!(t.elapsed() < limit, "nobody took node 1's address over");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A client of `addr` with owner `owner` that does not wait out grace periods.
fn client_of(
    addr: SocketAddr,
    owner: &[u8],
) -> impl std::future::Future<Output = client::Result<Client>> {
    let mut cfg = ClientConfig::new(addr);
    cfg.retry_grace = false;
    cfg.owner = owner.to_vec();
    Client::connect(cfg)
}

/// Asserts that `f` has not finished after `wait` (a request DELAYed and retried).
async fn still_waiting<T: std::fmt::Debug>(
    wait: Duration,
    f: impl std::future::Future<Output = T>,
    what: &str,
) {
    let r = tokio::time::timeout(wait, f).await;
    assert!(r.is_err(), "{what}: {r:?}");
}

/// A deny open of a node that dies holds up conflicting opens through the other nodes (DELAY:
/// its node cannot be asked) until its client came back to the taker: reclaimed there, the
/// deny stands (SHARE_DENIED, answered by the taker); closed, it is gone.
#[test]
fn a_dead_nodes_deny_open_holds_until_its_client_reclaimed_it_at_the_taker() {
    use proto::nfs4::*;
    let tmp = tempfile::tempdir().unwrap();
    let (mut nodes, clients) = start_three_with_client_addresses(tmp.path());
    let rt = rt();
    let limit = Duration::from_secs(30);
    let (read, write) = (OPEN4_SHARE_ACCESS_READ, OPEN4_SHARE_ACCESS_WRITE);
    let (a, fh) = rt.block_on(async {
        let a = connect(clients[0], limit).await;
        make_file(&a, "f").await;
        let (_, fh) = open_share(&a, "f", read, OPEN4_SHARE_DENY_WRITE, "A")
            .await
            .expect("A's deny-write open through node 1");
        (a, fh)
    });
    kill_node_1_until_taken_over(&mut nodes, &clients, limit);
    rt.block_on(async {
        let through_node_3 = |owner: &[u8]| client_of(clients[2], owner);
        // A client of its own: the wait is cut short, its slot left mid-request. DELAY,
        // retried: still waiting when cut off (SHARE_DENIED or OK would have ended it).
        let probe = through_node_3(b"an early writer through node 3")
            .await
            .expect("connect to node 3");
        still_waiting(
            Duration::from_secs(4),
            open_share(&probe, "f", write, 0, "early"),
            "B's write open through node 3 while A, not yet back, may hold node 1's deny",
        )
        .await;
        let b = through_node_3(b"a writer through node 3")
            .await
            .expect("connect to node 3");
        a.recover().await.expect("A reconnects to the taker");
        let reclaimed = open_share_claim(&a, Some(&fh), "f", read, OPEN4_SHARE_DENY_WRITE, "A")
            .await
            .expect("A reclaims its deny-write open at the taker");
        a.reclaim_complete().await.expect("A's RECLAIM_COMPLETE");
        let t = Instant::now();
        loop {
            match open_share(&b, "f", write, 0, "B").await {
                Err(Nfsstat4::ShareDenied) => break,
                Err(Nfsstat4::Delay) if t.elapsed() < Duration::from_secs(20) => {}
                other => {
                    panic!("B's write open while A's reclaimed open denies writers: {other:?}")
                }
            }
        }
        a.compound(
            client::CompoundBuilder::new()
                .putfh(&fh)
                .op(NfsArgop4::Close(CloseArgs {
                    seqid: 0,
                    open_stateid: reclaimed.0,
                })),
        )
        .await
        .expect("A's CLOSE at the taker");
        let t = Instant::now();
        let w = loop {
            match open_share(&b, "f", write, 0, "B").await {
                Ok(w) => break w,
                Err(Nfsstat4::Delay) if t.elapsed() < Duration::from_secs(20) => {}
                other => panic!("B's write open once A closed at the taker: {other:?}"),
            }
        };
        eprintln!(
            "B's write open got through {:?} after A's CLOSE",
            t.elapsed()
        );
        close_share(&b, &w).await;
        let _ = b.shutdown().await;
    });
}

/// A delegation handed out by a node that dies holds up conflicting changes through the other
/// nodes until its client has come back to the taker and reclaimed (a reclaim gets no
/// delegation back), not a lease and more: the taker then tells the others the dead node's
/// delegations are gone. Client A (node 1's address) holds a read delegation; node 1 is
/// killed -9 and node 2 takes its address over; B's write open through node 3 waits while A
/// has not reclaimed, and gets through once A's RECLAIM_COMPLETE ended the takeover's grace.
#[test]
fn a_dead_nodes_delegation_holds_up_writers_until_its_client_reclaimed() {
    use proto::nfs4::OpenDelegation4;
    let tmp = tempfile::tempdir().unwrap();
    let (mut nodes, clients) = start_three_with_client_addresses(tmp.path());
    let rt = rt();
    let limit = Duration::from_secs(30);
    let a = rt.block_on(async {
        let a = connect(clients[0], limit).await;
        make_file(&a, "f").await;
        let d = read_delegation(&a, "f").await;
        assert!(
            matches!(d, OpenDelegation4::Read(_)),
            "A's read-only open through node 1: {d:?}"
        );
        a
    });
    kill_node_1_until_taken_over(&mut nodes, &clients, limit);
    rt.block_on(async {
        let through_node_3 = |owner: &[u8]| client_of(clients[2], owner);
        // A may still read from its cache under the delegation: a writer waits (DELAY,
        // retried). A client of its own: the wait is cut short, its slot left mid-request.
        let probe = through_node_3(b"an early writer through node 3")
            .await
            .expect("connect to node 3");
        let held = tokio::time::timeout(
            Duration::from_secs(3),
            probe.open_path("/f", OPEN4_SHARE_ACCESS_BOTH, None),
        )
        .await;
        assert!(
            !matches!(held, Ok(Ok(_))),
            "B's write open got through while A, not yet back, held a delegation of node 1's"
        );
        let b = through_node_3(b"a writer through node 3")
            .await
            .expect("connect to node 3");
        // A comes back to the same address and ends its reclaim.
        a.recover().await.expect("A reconnects to the taker");
        a.reclaim_complete().await.expect("A's RECLAIM_COMPLETE");
        let back = Instant::now();
        let w = tokio::time::timeout(
            Duration::from_secs(20),
            b.open_path("/f", OPEN4_SHARE_ACCESS_BOTH, None),
        )
        .await
        .expect("B still held up 20 s after A reclaimed (the lock grace would be 74 s)")
        .expect("B's write open through node 3");
        eprintln!(
            "B's write open got through {:?} after A's RECLAIM_COMPLETE",
            back.elapsed()
        );
        b.close(&w).await.expect("close");
        let _ = b.shutdown().await;
    });
}

/// A write delegation handed out by a node that dies: its holder wrote the data servers
/// through its layout and sent no LAYOUTCOMMIT (as Linux under a write delegation), so a
/// reader through another node waits until the holder came back to the taker and reclaimed,
/// then finds the size the holder wrote. Client A (node 1's address) creates a file with a
/// write delegation and writes 3 MiB through its layout; node 1 is killed -9 and another node
/// takes its address over; B's stat through node 3 is held while A has not reclaimed, and
/// sees A's size and bytes once A's RECLAIM_COMPLETE ended the takeover's grace.
#[test]
fn a_dead_nodes_write_delegation_holds_up_readers_until_its_client_reclaimed() {
    use common::cluster::Cluster;
    let tmp = tempfile::tempdir().unwrap();
    let cl = Cluster::start_nodes(tmp.path(), 3, 3, &[]);
    let clients = cl.client_addresses();
    let a = cl.client_at(clients[0], true);
    let b = cl.client_at(clients[2], true);
    let probe = cl.client_at(clients[2], true);
    let data: Vec<u8> = (0..3u32 << 20).map(|i| (i % 251) as u8).collect();
    cl.rt.block_on(async {
        let _ = write_under_delegation(&cl, &a, "/wd", &data).await;
    });
    cl.kill9("mds1");
    let limit = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect_timeout(&clients[0], Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < limit, "nobody took node 1's address over");
        std::thread::sleep(Duration::from_millis(50));
    }
    cl.rt.block_on(async {
        let held = tokio::time::timeout(Duration::from_secs(3), probe.stat_path("/wd")).await;
        assert!(
            !matches!(held, Ok(Ok(_))),
            "B's stat got through while A, not yet back, held a write delegation of node 1's: {held:?}"
        );
        a.recover().await.expect("A reconnects to the taker");
        a.reclaim_complete().await.expect("A's RECLAIM_COMPLETE");
        let (_, st) = tokio::time::timeout(Duration::from_secs(20), b.stat_path("/wd"))
            .await
            .expect("B still held up 20 s after A reclaimed")
            .expect("B's stat through node 3");
        assert_eq!(st.size, data.len() as u64, "the size A wrote\n{}", cl.log_tail());
        let f = b
            .open_path("/wd", proto::nfs4::OPEN4_SHARE_ACCESS_READ, None)
            .await
            .expect("B opens /wd");
        let (back, _) = b
            .read_full(&f, 0, data.len() as u32)
            .await
            .expect("B reads /wd");
        assert!(back == data, "B read other bytes than A wrote");
        let _ = b.shutdown().await;
    });
}

/// Raw COMPOUNDs on a session the test numbers itself, to send a request again as a client
/// does when its server died before answering: same session, slot and sequence id.
mod raw {
    use proto::nfs4::*;
    use proto::rpc::{Auth, AuthSys, Connection, ConnectionLimits, RejectCalls};
    use proto::xdr::{Opaque, Xdr};
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::Duration;

    /// Long enough to wait out an election of the shards the dead node led.
    const CALL_WAIT: Duration = Duration::from_secs(30);

    pub async fn connect(addr: SocketAddr) -> Connection {
        Connection::connect(addr, Arc::new(RejectCalls), ConnectionLimits::default())
            .await
            .expect("connect")
    }

    pub async fn compound(c: &Connection, ops: Vec<NfsArgop4>) -> Compound4Res {
        let args = Compound4Args {
            tag: Opaque::default(),
            minorversion: 1,
            argarray: ops,
        };
        let root = Auth::Sys(AuthSys {
            stamp: 1,
            machine: b"test".to_vec(),
            uid: 0,
            gid: 0,
            gids: vec![],
        });
        let r = c
            .call(
                NFS4_PROGRAM,
                NFS_V4,
                NFSPROC4_COMPOUND,
                &root,
                &args.to_xdr(),
                CALL_WAIT,
            )
            .await
            .expect("COMPOUND");
        Compound4Res::from_xdr(r.body()).expect("decode COMPOUND reply")
    }

    /// EXCHANGE_ID + CREATE_SESSION; returns (session, client id, CREATE_SESSION's sequence).
    pub async fn session(c: &Connection, owner: &str) -> (Sessionid4, u64, u32) {
        let r = compound(
            c,
            vec![NfsArgop4::ExchangeId(ExchangeIdArgs {
                eia_clientowner: ClientOwner4 {
                    co_verifier: [2; 8],
                    co_ownerid: Opaque::from(owner),
                },
                eia_flags: 0,
                eia_state_protect: StateProtect4A::None,
                eia_client_impl_id: vec![],
            })],
        )
        .await;
        let NfsResop4::ExchangeId(ExchangeIdRes::Ok(x)) = &r.resarray[0] else {
            panic!("{r:?}")
        };
        let (sid, seq) = create_session(c, x.eir_clientid, x.eir_sequenceid).await;
        (sid, x.eir_clientid, seq)
    }

    pub async fn create_session(c: &Connection, clientid: u64, seq: u32) -> (Sessionid4, u32) {
        let attrs = ChannelAttrs4 {
            ca_headerpadsize: 0,
            ca_maxrequestsize: 1 << 20,
            ca_maxresponsesize: 1 << 20,
            ca_maxresponsesize_cached: 4096,
            ca_maxoperations: 16,
            ca_maxrequests: 4,
            ca_rdma_ird: vec![],
        };
        let r = compound(
            c,
            vec![NfsArgop4::CreateSession(CreateSessionArgs {
                csa_clientid: clientid,
                csa_sequence: seq,
                csa_flags: 0,
                csa_fore_chan_attrs: attrs.clone(),
                csa_back_chan_attrs: attrs,
                csa_cb_program: 0x4000_0000,
                csa_sec_parms: vec![CallbackSecParms4::AuthNone],
            })],
        )
        .await;
        let NfsResop4::CreateSession(CreateSessionRes::Ok(s)) = &r.resarray[0] else {
            panic!("{r:?}")
        };
        (s.csr_sessionid, seq)
    }

    pub fn sequence(sid: Sessionid4, slot: u32, seqid: u32) -> NfsArgop4 {
        NfsArgop4::Sequence(SequenceArgs {
            sa_sessionid: sid,
            sa_sequenceid: seqid,
            sa_slotid: slot,
            sa_highest_slotid: 3,
            sa_cachethis: false,
        })
    }

    pub fn mkdir(name: &str) -> Vec<NfsArgop4> {
        vec![
            NfsArgop4::Putrootfh,
            NfsArgop4::Create(CreateArgs {
                objtype: Createtype4::Dir,
                objname: Opaque::from(name),
                createattrs: Fattr4::default(),
            }),
        ]
    }

    pub fn remove(name: &str) -> Vec<NfsArgop4> {
        vec![
            NfsArgop4::Putrootfh,
            NfsArgop4::Remove(RemoveArgs {
                target: Opaque::from(name),
            }),
        ]
    }

    pub fn rename(from: &str, to: &str) -> Vec<NfsArgop4> {
        vec![
            NfsArgop4::Putrootfh,
            NfsArgop4::Savefh,
            NfsArgop4::Rename(RenameArgs {
                oldname: Opaque::from(from),
                newname: Opaque::from(to),
            }),
        ]
    }

    pub fn reclaim_complete() -> Vec<NfsArgop4> {
        vec![NfsArgop4::ReclaimComplete(ReclaimCompleteArgs {
            rca_one_fs: false,
        })]
    }

    /// The SEQUENCE status flags of a reply.
    pub fn flags(r: &Compound4Res) -> u32 {
        match &r.resarray[0] {
            NfsResop4::Sequence(SequenceRes::Ok(s)) => s.sr_status_flags,
            other => panic!("SEQUENCE: {other:?}"),
        }
    }
}

/// A client whose MDS node dies sends what got no answer again, on the same session, slot and
/// sequence id, to the node that took its address over. A MKDIR, REMOVE or RENAME the dead
/// node carried out then gets its first answer there, not "exists" or "not found" (what
/// conformance `mds-fault` saw now and then before sessions outlived their node).
#[test]
fn a_request_the_dead_node_carried_out_gets_its_first_answer_from_the_taker() {
    use proto::nfs4::session::{SEQ4_STATUS_BACKCHANNEL_FAULT, SEQ4_STATUS_RESTART_RECLAIM_NEEDED};
    use proto::nfs4::{NfsArgop4, NfsResop4};
    let tmp = tempfile::tempdir().unwrap();
    let (mut nodes, clients) = start_three_with_client_addresses(tmp.path());
    let rt = rt();
    let with = |sid, slot, seqid, ops: Vec<NfsArgop4>| {
        let mut all = vec![raw::sequence(sid, slot, seqid)];
        all.extend(ops);
        all
    };
    // Through node 1: mkdir d, mkdir g, then rm g and mv d e, each answered.
    let (sid, clientid, cs_seq, first) = rt.block_on(async {
        // Mounted once: the file system's root is made.
        let _ = connect(clients[0], Duration::from_secs(30))
            .await
            .shutdown()
            .await;
        let c = raw::connect(clients[0]).await;
        let (sid, clientid, cs_seq) = raw::session(&c, "a client that sends again").await;
        let mut first = Vec::new();
        for (slot, seqid, ops) in [
            (0, 1, raw::mkdir("d")),
            (1, 1, raw::mkdir("g")),
            (1, 2, raw::remove("g")),
            (2, 1, raw::rename("d", "e")),
        ] {
            let r = raw::compound(&c, with(sid, slot, seqid, ops)).await;
            assert_eq!(r.status, 0, "through node 1: {r:?}");
            first.push(r);
        }
        (sid, clientid, cs_seq, first)
    });
    nodes[0].kill9();
    let t = Instant::now();
    while TcpStream::connect_timeout(&clients[0], Duration::from_millis(200)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "nobody took node 1's address over"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    rt.block_on(async {
        let c = raw::connect(clients[0]).await;
        // The same requests again, as if their answers had been lost with node 1.
        for (i, (slot, seqid, ops)) in [
            (0, 1, raw::mkdir("d")),
            (1, 2, raw::remove("g")),
            (2, 1, raw::rename("d", "e")),
        ]
        .into_iter()
        .enumerate()
        {
            let was = &first[[0, 2, 3][i]];
            let r = raw::compound(&c, with(sid, slot, seqid, ops)).await;
            assert_eq!(r.status, 0, "sent again to the taker: {r:?}");
            // The first answer: the same change of the root directory.
            assert_eq!(r.resarray[2..], was.resarray[2..], "slot {slot}");
            let f = raw::flags(&r);
            assert_ne!(f & SEQ4_STATUS_RESTART_RECLAIM_NEEDED, 0, "{f:#x}");
            assert_ne!(f & SEQ4_STATUS_BACKCHANNEL_FAULT, 0, "{f:#x}");
        }
        // The slot's next request is a new one, carried out here: e exists. It may first
        // be told to wait (DELAY: the root was delegated through node 1, whose clients the
        // taker's grace is still waiting for), and is then sent again, as a client would.
        let delay = proto::nfs4::Nfsstat4::Delay.code();
        let (mut seqid, t) = (2, Instant::now());
        let r = loop {
            let r = raw::compound(&c, with(sid, 0, seqid, raw::mkdir("e"))).await;
            if r.status != delay || t.elapsed() > Duration::from_secs(60) {
                break r;
            }
            seqid += 1;
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        assert_eq!(r.status, proto::nfs4::Nfsstat4::Exist.code(), "{r:?}");
        // The client moves to a session of the taker's, for the same client id, and ends
        // its reclaim.
        let (new, _) = raw::create_session(&c, clientid, cs_seq + 1).await;
        let r = raw::compound(&c, with(new, 0, 1, raw::reclaim_complete())).await;
        assert_eq!(r.status, 0, "{r:?}");
        let r = raw::compound(&c, with(new, 1, 1, vec![NfsArgop4::Putrootfh])).await;
        assert_eq!(
            raw::flags(&r),
            0,
            "reclaim over, a session of the taker's own"
        );
        assert!(matches!(r.resarray[1], NfsResop4::Putrootfh(_)));
        // Each change happened once.
        let other = connect(clients[1], Duration::from_secs(30)).await;
        let mut root = names(&other, "/").await;
        root.retain(|n| ["d", "e", "g"].contains(&n.as_str()));
        assert_eq!(root, ["e"]);
        let _ = other.shutdown().await;
    });
}

/// A client whose server was killed sends what got no answer again. Its session died with the
/// server's life (BADSESSION), so it sends it on a new session, under a new client id; a
/// RENAME the first life carried out then gets its first answer (the shards keep the answers
/// on disk; `mds::state::delayed` knows the retry), not "not found" as knfsd answers after a
/// restart. Once answered, the same change sent as a new request is one: NOENT.
#[test]
fn a_change_sent_again_on_a_new_session_after_a_restart_gets_its_first_answer() {
    use proto::nfs4::{NfsArgop4, NfsResop4};
    let tmp = tempfile::tempdir().unwrap();
    let mut srv = Server::start(tmp.path(), Some("lease_seconds = 10\ngrace_seconds = 2\n"));
    let rt = rt();
    let with = |sid, slot, seqid, ops: Vec<NfsArgop4>| {
        let mut all = vec![raw::sequence(sid, slot, seqid)];
        all.extend(ops);
        all
    };
    let owner = "a client whose server restarted";
    let (sid, first) = rt.block_on(async {
        let c = raw::connect(srv.addr).await;
        let (sid, _, _) = raw::session(&c, owner).await;
        let r = raw::compound(&c, with(sid, 0, 1, raw::mkdir("d"))).await;
        assert_eq!(r.status, 0, "{r:?}");
        let first = raw::compound(&c, with(sid, 1, 1, raw::rename("d", "e"))).await;
        assert_eq!(first.status, 0, "{first:?}");
        (sid, first)
    });
    srv.kill();
    srv.restart();
    rt.block_on(async {
        let c = raw::connect(srv.addr).await;
        // Sent again as it was: the session is gone with the first life.
        let r = raw::compound(&c, with(sid, 1, 1, raw::rename("d", "e"))).await;
        assert_eq!(r.status, Nfsstat4::Badsession.code(), "{r:?}");
        let (new, _, _) = raw::session(&c, owner).await;
        let r = raw::compound(&c, with(new, 0, 1, raw::reclaim_complete())).await;
        assert_eq!(r.status, 0, "{r:?}");
        // On the new session, told to wait (GRACE, DELAY) while the restart's grace lasts,
        // and sent again as a client would.
        let (mut seqid, t) = (2, Instant::now());
        let again = loop {
            let r = raw::compound(&c, with(new, 0, seqid, raw::rename("d", "e"))).await;
            seqid += 1;
            let wait = [Nfsstat4::Grace.code(), Nfsstat4::Delay.code()].contains(&r.status);
            if !wait || t.elapsed() > Duration::from_secs(30) {
                break r;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        assert_eq!(again.status, 0, "sent again on a new session: {again:?}");
        // The first answer: the same change of the root directory.
        assert!(matches!(again.resarray[3], NfsResop4::Rename(_)));
        assert_eq!(again.resarray[3], first.resarray[3]);
        // A new request of the same change: carried out here, and e is no longer d.
        let r = raw::compound(&c, with(new, 0, seqid, raw::rename("d", "e"))).await;
        assert_eq!(r.status, Nfsstat4::Noent.code(), "{r:?}");
    });
}
