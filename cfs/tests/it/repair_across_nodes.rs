//! Maintenance of a file's data with several MDS nodes (issue 12): each node hands out its own
//! layouts and fences only its own handles, so a job on a file must reach every node. Here a
//! pNFS client of node 2 keeps appending to a file while one of its mirrors goes: its data
//! server is killed (repair) or drained (a drain move). Node 1, the leader of the file's
//! shard, copies the file to the third data server, and node 2 must fence and recall its
//! client's layout for the copy (`mds::dataservers::holds`). Then the other old mirror is killed
//! too: the new mirror alone must hold every byte the client was told is committed.
use crate::common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use client::StableHow4;
use common::cluster::Cluster;
use common::ec::{create_empty, wait_for};
use common::{cfs, random_bytes, BIN, SERIAL};
use proto::nfs4::{OPEN4_SHARE_ACCESS_BOTH, OPEN4_SHARE_ACCESS_READ};

const MIB: usize = 1 << 20;
/// One append of the writer, and how long it may run at most.
const PIECE: usize = 256 << 10;
const MAX_PIECES: u64 = 1000;

/// The bytes of piece `i` of the file (at offset `i * PIECE`).
fn piece(i: u64) -> Vec<u8> {
    random_bytes(PIECE, 0x5e00 + i)
}

/// Node `n`'s `cfs admin status --json`.
fn status_at(cl: &Cluster, n: usize) -> Option<serde_json::Value> {
    let out = std::process::Command::new(BIN)
        .args(["admin", "status", "--json", "--config"])
        .arg(cl.dir.join("cluster").join(format!("mds{n}.toml")))
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

/// `mds.degraded_files` of node `n`'s status.
fn degraded_at(cl: &Cluster, n: usize) -> Option<u64> {
    status_at(cl, n)?["mds"]["degraded_files"].as_u64()
}

/// The id of the data server of role `role` (`ds1`...).
fn ds_id(cl: &Cluster, role: &str) -> u64 {
    let st = cl.status().expect("status");
    st.data_servers
        .iter()
        .map(|d| d.ds_id)
        .find(|id| cl.role_of(*id) == role)
        .unwrap_or_else(|| panic!("no data server {role}"))
}

/// How the file loses its first mirror.
#[derive(Clone, Copy, Debug)]
enum Loss {
    /// Its data server is killed -9: repair copies the survivor.
    Killed,
    /// Its data server is drained (`cfs admin node drain`): a drain move copies it.
    Drained,
}

#[test]
fn a_file_is_re_mirrored_by_its_shards_leader_while_a_client_of_another_node_writes_it() {
    copied_by_its_shards_leader_while_a_client_of_another_node_writes_it(Loss::Killed);
}

#[test]
fn a_file_is_drained_off_by_its_shards_leader_while_a_client_of_another_node_writes_it() {
    copied_by_its_shards_leader_while_a_client_of_another_node_writes_it(Loss::Drained);
}

fn copied_by_its_shards_leader_while_a_client_of_another_node_writes_it(loss: Loss) {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let t = tempfile::tempdir().expect("tempdir");
    let cl = Cluster::start_nodes(t.path(), 3, 3, &["--shards", "4"]);
    let node = |n: u16| std::net::SocketAddr::new(cl.addr.ip(), cl.addr.port() + n - 1);

    // The file lives in the root's shard, 0, whose leader is node 1; the writer talks to
    // node 2.
    let c = Arc::new(cl.client_at(node(2), true));
    let f = cl
        .rt
        .block_on(c.open_path("/r", OPEN4_SHARE_ACCESS_BOTH, create_empty()))
        .expect("create /r");
    let first: Vec<u8> = (0..16).flat_map(piece).collect();
    cl.rt
        .block_on(async {
            c.write_all(&f, 0, &first, StableHow4::Unstable4).await?;
            c.commit_file(&f).await
        })
        .expect("first 4 MiB");
    assert!(
        c.pnfs_stats().expect("pNFS").ds_write_bytes >= 2 * first.len() as u64,
        "the client wrote to the data servers itself"
    );
    let ino = cl.rt.block_on(c.getattr(&f.fh)).expect("getattr").fileid;
    let holders: Vec<String> = cl
        .chunk_files(ino)
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(r, _)| r)
        .collect();
    assert_eq!(holders.len(), 2, "two mirrors: {holders:?}");
    let third = (1..=3)
        .map(|i| format!("ds{i}"))
        .find(|r| !holders.contains(r))
        .expect("a third data server");

    // The writer appends a piece at a time, each committed; `acked`: pieces committed.
    let acked = Arc::new(AtomicU64::new(16));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = cl.rt.spawn({
        let (c, acked, stop) = (c.clone(), acked.clone(), stop.clone());
        async move {
            let mut i = 16u64;
            while !stop.load(Ordering::SeqCst) && i < MAX_PIECES {
                let off = i * PIECE as u64;
                c.write_all(&f, off, &piece(i), StableHow4::Unstable4)
                    .await?;
                c.commit_file(&f).await?;
                i += 1;
                acked.store(i, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            c.close(&f).await?;
            Ok::<(), client::Error>(())
        }
    });

    // The writer is under way (a few pieces committed) before the fault: an event, not a
    // fixed pause that a slow machine could spend before the writer's first piece.
    wait_for(60, "the writer commits its first pieces", || {
        acked.load(Ordering::SeqCst) >= 20
    });
    let holds = |role: &str| cl.chunk_files(ino).iter().any(|(r, n)| r == role && *n > 0);
    let started = Instant::now();
    match loss {
        Loss::Killed => {
            cl.kill9(&holders[0]);
            wait_for(
                90,
                "node 1 re-mirrors the file to the third data server",
                || {
                    holds(&third)
                        && degraded_at(&cl, 1) == Some(0)
                        && std::fs::read_to_string(cl.dir.join("cluster").join("mds1.log"))
                            .is_ok_and(|l| l.contains(&format!("file re-mirrored ino={ino} ")))
                },
            );
        }
        Loss::Drained => {
            let id = format!("{:016x}", ds_id(&cl, &holders[0]));
            let mds1 = cl.dir.join("cluster").join("mds1.toml");
            let mds1 = mds1.to_string_lossy();
            let o = cfs(&cl.dir, &["admin", "node", "drain", &id, "--config", &mds1]);
            assert!(o.ok(), "drain: {}", o.stderr);
            // Every node counts the drained server's files from the replicated records:
            // node 2, which leads none of the file's shard, says drained too.
            wait_for(90, "the file moved off the drained data server", || {
                holds(&third)
                    && !holds(&holders[0])
                    && status_at(&cl, 2).is_some_and(|v| {
                        v["data_servers"].as_array().is_some_and(|a| {
                            a.iter()
                                .any(|d| d["id"] == id.as_str() && d["state"] == "drained")
                        })
                    })
            });
        }
    }
    eprintln!(
        "{loss:?}: copied {:.1} s after, {} pieces committed",
        started.elapsed().as_secs_f64(),
        acked.load(Ordering::SeqCst)
    );
    // The writer goes on through the new mirrors for a while.
    let at_repair = acked.load(Ordering::SeqCst);
    wait_for(60, "the writer commits more after the repair", || {
        acked.load(Ordering::SeqCst) >= (at_repair + 20).min(MAX_PIECES)
    });
    stop.store(true, Ordering::SeqCst);
    cl.rt
        .block_on(writer)
        .expect("writer task")
        .expect("every write and commit");
    let pieces = acked.load(Ordering::SeqCst);

    // Only the new mirror is left (a drained server holds nothing).
    let survivor = ds_id(&cl, &holders[1]);
    cl.kill9(&holders[1]);
    wait_for(30, "the old survivor marked down", || {
        cl.status().is_some_and(|s| {
            s.data_servers
                .iter()
                .any(|d| d.ds_id == survivor && d.state != proto::cluster::DS_STATE_UP)
        })
    });
    let r = cl.client_at(node(3), false);
    let got = cl
        .rt
        .block_on(async {
            let f = r.open_path("/r", OPEN4_SHARE_ACCESS_READ, None).await?;
            let mut out = Vec::new();
            loop {
                let (d, eof) = r.read_full(&f, out.len() as u64, MIB as u32).await?;
                out.extend_from_slice(&d);
                if eof || d.is_empty() {
                    break;
                }
            }
            r.close(&f).await?;
            Ok::<_, client::Error>(out)
        })
        .expect("read /r through node 3 from the new mirror");
    assert_eq!(got.len() as u64, pieces * PIECE as u64, "length");
    for i in 0..pieces {
        let at = (i as usize) * PIECE;
        assert!(
            got[at..at + PIECE] == piece(i)[..],
            "piece {i} of {pieces} differs on the new mirror"
        );
    }
}
