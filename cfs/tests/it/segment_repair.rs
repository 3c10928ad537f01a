//! Repair of data reduction's segment shards (issue 46, `mds::dataservers::segment_repair`),
//! on real processes: `cfs cluster up` with four data servers, the fourth stopped while the
//! file is reduced, so every segment is a 2+1 stripe over ds1..ds3.
//!
//! - A flipped byte in a segment shard on ds2's disk is found by its scrub, reported, and
//!   rebuilt in place by the MDS: the byte on disk is right again.
//! - With ds4 back, draining ds1 rebuilds each segment's shard there on ds4 and deletes the
//!   one on ds1. Then ds1 and ds3 are killed. Every segment keeps two of its three shards (ds2's
//!   rebuilt one, ds4's moved one), and the file reads back byte-exact. Without the move, a
//!   segment would have one shard left and the read would fail. It reads back too after an
//!   MDS restart, which leaves the MDS no address for ds3 (the shards read one by one).
use crate::common;

use common::cluster::Cluster;
use common::ec::{chunk_file, data_status, read_file, shard_counts, wait_for, write_file};
use common::{cfs, random_bytes, KillOnDrop, SERIAL};

fn mds_log(cl: &Cluster) -> String {
    std::fs::read_to_string(cl.dir.join("cluster").join("mds.log")).unwrap_or_default()
}

/// The object ids of the shards `role` holds (its `shards/` headers are named by them).
fn shard_objects(cl: &Cluster, role: &str) -> Vec<u64> {
    let mut v: Vec<u64> = std::fs::read_dir(cl.ds_dir(role).join("shards"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| u64::from_str_radix(e.file_name().to_str()?, 16).ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort_unstable();
    v
}

fn byte_at(path: &std::path::Path, at: u64) -> u8 {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path).expect("open chunk file");
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).expect("read");
    b[0]
}

/// `role`'s state in the MDS's table ("up", "down", "draining", "drained").
fn ds_state(cl: &Cluster, id: &str) -> String {
    let o = cfs(
        &cl.dir,
        &["admin", "status", "--json", "--config", &cl.mds_toml()],
    );
    let v: serde_json::Value = serde_json::from_str(o.text().trim()).unwrap_or_default();
    v["data_servers"]
        .as_array()
        .and_then(|a| a.iter().find(|d| d["id"] == id))
        .and_then(|d| d["state"].as_str())
        .unwrap_or("")
        .to_string()
}

#[test]
fn a_bad_segment_shard_is_rebuilt_in_place_and_a_drained_server_keeps_none() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let t = tempfile::tempdir().expect("tempdir");
    let cl = Cluster::start_sized(
        t.path(),
        4,
        &[
            "--encode-after",
            "1",
            "--reduce",
            "on",
            "--scrub-every",
            "3",
        ],
    );
    let ids: Vec<(String, String)> = cl
        .status()
        .expect("status")
        .data_servers
        .iter()
        .map(|d| (cl.role_of(d.ds_id), format!("{:016x}", d.ds_id)))
        .collect();
    let id_of = |role: &str| {
        ids.iter()
            .find(|(r, _)| r == role)
            .map(|(_, i)| i.clone())
            .expect("role in the table")
    };
    let ds4 = id_of("ds4");
    cl.kill9("ds4");
    wait_for(30, "ds4 seen down", || ds_state(&cl, &ds4) == "down");

    // Random bytes: stored as they are, two segments of 2+1 over ds1..ds3.
    let data = random_bytes((3 << 20) + 777, 0x46e1);
    let ino = write_file(&cl, "/f", &data);
    wait_for(120, "the file reduced", || {
        data_status(&cl)["reduced_files"].as_u64() == Some(1)
    });
    wait_for(30, "its mirror copies deleted", || {
        cl.chunk_files(ino).iter().all(|(_, n)| *n == 0)
    });
    let segments = shard_counts(&cl, 3)[0];
    assert!(segments >= 1, "no segment shard on ds1");
    assert_eq!(
        shard_counts(&cl, 4),
        vec![segments, segments, segments, 0],
        "every segment on ds1..ds3"
    );

    // A flipped byte in one of ds2's segment shards: found by its scrub, rebuilt in place.
    let obj = shard_objects(&cl, "ds2")[0];
    let (path, start) = chunk_file(&cl, "ds2", obj);
    let at = start + 100;
    let good = byte_at(&path, at);
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open shard chunk file");
        f.write_all_at(&[good ^ 0x08], at).expect("flip");
        f.sync_all().expect("sync");
    }
    wait_for(60, "the bad segment shard rebuilt in place", || {
        mds_log(&cl).contains("bad segment shard rebuilt in place")
    });
    assert_eq!(byte_at(&path, at), good, "the byte on disk is right again");
    assert!(
        mds_log(&cl).contains("segment shard failed verification on a data server"),
        "the repair came from no report"
    );

    // ds4 back; ds1 drained: its shards move to ds4, the one server no segment is on.
    let _ds4 = KillOnDrop(cl.restart("ds4"));
    let ds1 = id_of("ds1");
    let o = cfs(
        &cl.dir,
        &["admin", "node", "drain", &ds1, "--config", &cl.mds_toml()],
    );
    assert!(o.ok(), "{}{}", o.text(), o.stderr);
    wait_for(120, "ds1 drained", || ds_state(&cl, &ds1) == "drained");
    assert_eq!(
        shard_counts(&cl, 4),
        vec![0, segments, segments, segments],
        "ds1's segment shards moved to ds4"
    );
    assert!(
        mds_log(&cl).contains("segment shard rebuilt on another data server"),
        "{}",
        cl.log_tail()
    );

    // Two servers gone: each segment has ds2's and ds4's shards, two of three.
    cl.kill9("ds1");
    cl.kill9("ds3");
    let ds3 = id_of("ds3");
    wait_for(30, "ds3 seen down", || ds_state(&cl, &ds3) == "down");
    assert!(
        read_file(&cl, "/f", data.len()) == data,
        "the file does not read back from the rebuilt and the moved shards"
    );

    // An MDS restarted while ds3 is dead has no address for it, so no data server can be
    // handed the whole placement to assemble a segment: the MDS reads the shards one by one
    // and decodes them itself.
    cl.kill9("mds");
    let _mds = cl.restart_mds();
    let ds2 = id_of("ds2");
    wait_for(30, "ds2 and ds4 registered again", || {
        ds_state(&cl, &ds2) == "up" && ds_state(&cl, &ds4) == "up"
    });
    assert!(
        read_file(&cl, "/f", data.len()) == data,
        "the file does not read back through an MDS that never heard of ds3"
    );
}
