//! A data server learns the metadata service's nodes from its heartbeat replies, with real
//! processes: three MDS nodes and a DS whose config names only node 1. The DS becomes up at
//! all three; a 4th node joins (`cfs server join`) and the DS becomes up there too, so a file
//! written through node 4 by the Rust client goes through a layout to the DS; node 3 is
//! drained and the DS stops heartbeating it.
use crate::cluster_procs::*;
use crate::common;
use common::*;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

const SECRET: &str = "ds learns mds test secret 0123";

fn mds_config(p: &Proc, listen: SocketAddr, secret: &Path, membership: &str) {
    std::fs::write(
        p.config(),
        format!(
            "data = {data:?}\nlisten = \"{listen}\"\nroles = [\"mds\"]\nlease_seconds = 5\n\
             grace_seconds = 5\n[admin]\nlisten = \"127.0.0.1:0\"\n[cluster]\n\
             secret_file = {secret:?}\n{membership}[[export]]\npath = \"/\"\n",
            data = p.dir.join("data"),
        ),
    )
    .unwrap();
}

fn ds_up(v: &serde_json::Value) -> bool {
    v["data_servers"]
        .as_array()
        .is_some_and(|d| d.len() == 1 && d[0]["state"] == "up")
}

/// Node `id` is a member of every shard, as a voter or a learner (each shard has three
/// voters; `mds_membership.rs` checks how they spread).
fn member_everywhere(v: &serde_json::Value, id: u64) -> bool {
    let md = &v["mds"]["metadata"];
    let shards = md["shards"].as_array().cloned().unwrap_or_default();
    let has = |s: &serde_json::Value, k: &str| {
        s[k].as_array()
            .is_some_and(|a| a.iter().any(|x| x.as_u64() == Some(id)))
    };
    !shards.is_empty()
        && shards
            .iter()
            .all(|s| has(s, "voters") || has(s, "learners"))
}

#[test]
fn a_ds_configured_with_one_mds_node_serves_every_node_and_a_joined_one() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let secret = t.join("secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    let base = free_ports(5);
    let addr = |i: u16| -> SocketAddr { format!("127.0.0.1:{}", base + i).parse().unwrap() };
    let all: Vec<String> = (0..3).map(|i| format!("{}={}", i + 1, addr(i))).collect();
    let mut mds: Vec<Proc> = Vec::new();
    for i in 0..3u16 {
        let p = Proc::server(t, &format!("mds{}", i + 1));
        mds_config(
            &p,
            addr(i),
            &secret,
            &format!("node_id = {}\nmetadata_nodes = {all:?}\n", i + 1),
        );
        mds.push(p);
    }
    // The data server names node 1 only.
    let mut ds = Proc::server(t, "ds");
    std::fs::write(
        ds.config(),
        format!(
            "data = {data:?}\nlisten = \"{at}\"\nroles = [\"ds\"]\n[cluster]\n\
             secret_file = {secret:?}\nmds = \"{node1}\"\n",
            data = ds.dir.join("data"),
            at = addr(4),
            node1 = addr(0),
        ),
    )
    .unwrap();
    let started = Instant::now();
    for p in &mut mds {
        p.start();
    }
    ds.start();
    for (i, p) in mds.iter().enumerate() {
        wait_listening(addr(i as u16), p);
    }
    wait_listening(addr(4), &ds);
    for (i, p) in mds.iter().enumerate() {
        until_status(
            t,
            p,
            &format!("the data server up at node {}", i + 1),
            Duration::from_secs(60),
            ds_up,
        );
    }
    eprintln!(
        "the data server up at all three nodes {:?} after the start",
        started.elapsed()
    );

    // Node 4 joins through node 2; nobody tells the DS.
    let mut n4 = Proc::server(t, "mds4");
    mds_config(&n4, addr(3), &secret, "");
    n4.args = vec![
        "server".into(),
        "join".into(),
        "--token".into(),
        SECRET.into(),
        "--seed".into(),
        addr(1).to_string(),
        "--config".into(),
        n4.config().to_string_lossy().into(),
    ];
    let joined = Instant::now();
    n4.start();
    wait_listening(addr(3), &n4);
    until_status(
        t,
        &n4,
        "the data server up at the joined node 4",
        Duration::from_secs(120),
        ds_up,
    );
    eprintln!(
        "the data server up at node 4 {:?} after its start",
        joined.elapsed()
    );
    until_status(
        t,
        &mds[0],
        "node 4 a member of every shard",
        // About a second; a placement round held up by a stale plan took over 60 s
        // (`MembershipError::StalePlan`).
        Duration::from_secs(45),
        |v| member_everywhere(v, 4),
    );

    // A file written through node 4 goes to the data server through a layout.
    let rt = rt();
    let data = random_bytes(300_000, 41);
    let start = Instant::now();
    let stats = loop {
        match rt.block_on(write_file(addr(3), "/through-node-4", &data)) {
            Ok(s) => break s,
            Err(e) => {
                assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "write through node 4: {e}"
                );
                std::thread::sleep(Duration::from_millis(300));
            }
        }
    };
    eprintln!("pNFS through node 4: {stats:?}");
    assert!(stats.layoutgets >= 1, "{stats:?}");
    assert!(stats.ds_write_bytes >= data.len() as u64, "{stats:?}");
    assert_eq!(stats.mds_write_bytes, 0, "{stats:?}");

    // Node 3 is drained: once it has stopped, no node lists it and the DS lets it go.
    let o = admin(t, &mds[1], &["node", "drain", "3"]);
    assert!(o.ok(), "drain of node 3: {} {}", o.text(), o.stderr);
    assert!(
        mds[2].exited(Duration::from_secs(30)).is_some(),
        "node 3 still runs after its drain"
    );
    let start = Instant::now();
    let gone = format!("mds={}", addr(2));
    loop {
        let log = ds.log_text();
        if log
            .lines()
            .any(|l| l.contains("no longer heartbeating it") && l.contains(&gone))
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the DS still heartbeats the drained node 3:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    eprintln!(
        "the DS let the drained node go {:?} after the drain",
        start.elapsed()
    );
}
