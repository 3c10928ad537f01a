//! Erasure coding in normal operation (issue 13), on real processes: `cfs cluster up` with three
//! data servers (2+1) and `--encode-after 1`. A file written through the MDS and left alone is
//! encoded by the MDS's encoder (the data servers move the bytes), its mirror copies are then
//! deleted, and it reads back the same through the MDS and through the READ layout the MDS now
//! hands out (an assembling data server, or striped for a Linux 6.18+ client), also with a data
//! server kill -9'd. A write or a truncation brings it back to mirrors first (the shards are
//! dropped); removing an encoded file deletes its shards; an MDS killed mid-encode loses
//! nothing.
use crate::common;

use std::time::{Duration, Instant};

use client::SetAttrs;
use common::cluster::Cluster;
use common::ec::{data_status, read_file, wait_for, write_file, write_open};
use common::random_bytes;
use proto::nfs4::*;

// Clusters of four processes on a machine that may have two cores: one at a time.
use common::SERIAL;

const DS_ROLES: [&str; 3] = ["ds1", "ds2", "ds3"];

/// Lines of the log file `log` that report `what` of file `ino` (`what ino=INO ...`).
fn log_count(log: &std::path::Path, what: &str, ino: u64) -> usize {
    let field = format!("ino={ino} ");
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(what) && l.contains(&field))
        .count()
}

/// Shard headers each data server holds (`shards/<object id>` in its data directory).
fn shard_headers(cl: &Cluster) -> Vec<usize> {
    common::ec::shard_counts(cl, DS_ROLES.len())
}

/// Bytes of file data the data servers' chunk stores hold.
fn stored_bytes(cl: &Cluster) -> u64 {
    common::ec::stored_bytes(cl, DS_ROLES.len())
}

/// A READ layout of `f`, by hand over `c`'s session.
fn layoutget(cl: &Cluster, c: &client::Client, f: &client::OpenFile) -> FfLayout4 {
    common::cluster::layoutget(cl, c, f, Layoutiomode4::Read).1
}

/// Every byte of the file through one data server of its READ layout, as a client that holds
/// the layout reads it; the handles are checked to be shard handles that grant no writing.
fn read_through_layout(cl: &Cluster, path: &str, len: usize) -> Vec<u8> {
    let c = cl.client(false);
    let f = cl
        .rt
        .block_on(c.open_path(path, OPEN4_SHARE_ACCESS_READ, None))
        .expect("open for reading");
    let ff = layoutget(cl, &c, &f);
    assert_eq!(ff.ffl_mirrors.len(), 2, "two assembling data servers");
    let mut last = None;
    for m in &ff.ffl_mirrors {
        assert_eq!(m.ffm_data_servers.len(), 1);
        let ds = &m.ffm_data_servers[0];
        let fh = ds.ffds_fh_vers[0].0.as_bytes().to_vec();
        assert!(
            layout::is_shard_handle(&fh),
            "an encoded file's layout names shards"
        );
        let id = layout::DsId::from_device_id(&ds.ffds_deviceid)
            .expect("device id")
            .0;
        let addr = cl.ds_addr(id);
        let got = cl.rt.block_on(async {
            let d = proto::nfs3_client::Nfs3Client::connect(&[addr], Duration::from_secs(2), 0, 0)
                .await?;
            let mut out = Vec::new();
            while out.len() < len {
                let r = d.read(&fh, out.len() as u64, 1 << 20).await?;
                out.extend_from_slice(&r.data);
                if r.eof || r.data.is_empty() {
                    break;
                }
            }
            d.close();
            Ok::<_, proto::nfs3_client::Nfs3ClientError>(out)
        });
        match got {
            Ok(d) => {
                last = Some(d);
                break;
            }
            // A mirror whose server is down: the client goes to the next, as Linux does.
            Err(e) => eprintln!("layout mirror on {addr} failed: {e}"),
        }
    }
    cl.rt.block_on(c.close(&f)).expect("close");
    let _ = cl.rt.block_on(c.shutdown());
    last.expect("a mirror of the layout served the file")
}

/// The file as a Linux 6.18+ client reads it: a client whose implementation id says so gets a
/// striped layout (mirror 0: each data shard's server, `direct`; mirror 1: `rebuild` handles on
/// other servers; stripe unit = the shard unit) and reads unit `u` from data server
/// `u % k` of mirror 0 at the file's own offset, falling to mirror 1 at the same offset when
/// that fails (fs/nfs/flexfilelayout, docs/EC.md).
fn read_striped(cl: &Cluster, path: &str, len: usize, k: usize) -> Vec<u8> {
    let mut cfg = client::ClientConfig::new(cl.addr);
    cfg.pnfs = false;
    cfg.implementation = (
        "kernel.org".into(),
        "Linux 6.18.3+deb14-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.18.3-1 x86_64".into(),
    );
    let c = cl
        .rt
        .block_on(client::Client::connect(cfg))
        .expect("connect");
    let f = cl
        .rt
        .block_on(c.open_path(path, OPEN4_SHARE_ACCESS_READ, None))
        .expect("open for reading");
    let ff = layoutget(cl, &c, &f);
    let unit = 1usize << 20;
    assert_eq!(ff.ffl_stripe_unit, unit as u64);
    assert_eq!(ff.ffl_mirrors.len(), 2);
    let dss: Vec<Vec<(std::net::SocketAddr, Vec<u8>)>> = ff
        .ffl_mirrors
        .iter()
        .map(|m| {
            assert_eq!(m.ffm_data_servers.len(), k, "k data servers per mirror");
            m.ffm_data_servers
                .iter()
                .map(|ds| {
                    let id = layout::DsId::from_device_id(&ds.ffds_deviceid)
                        .expect("device id")
                        .0;
                    let fh = ds.ffds_fh_vers[0].0.as_bytes().to_vec();
                    assert!(layout::is_shard_handle(&fh));
                    (cl.ds_addr(id), fh)
                })
                .collect()
        })
        .collect();
    let out = cl.rt.block_on(async {
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let off = out.len();
            let want = (len - off).min(unit - off % unit);
            let stripe = (off / unit) % k;
            let mut got = None;
            for mirror in &dss {
                let (addr, fh) = &mirror[stripe];
                let Ok(d) =
                    proto::nfs3_client::Nfs3Client::connect(&[*addr], Duration::from_secs(2), 0, 0)
                        .await
                else {
                    continue;
                };
                let r = d.read(fh, off as u64, want as u32).await;
                d.close();
                if let Ok(r) = r {
                    if r.data.len() == want {
                        got = Some(r.data);
                        break;
                    }
                }
            }
            out.extend_from_slice(&got.expect("a mirror served the unit"));
        }
        out
    });
    cl.rt.block_on(c.close(&f)).expect("close");
    let _ = cl.rt.block_on(c.shutdown());
    out
}

#[test]
fn a_quiet_file_is_encoded_read_back_and_copied_to_mirrors_for_a_write() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let t = tempfile::tempdir().expect("tempdir");
    let cl = Cluster::start_sized(t.path(), 3, &["--encode-after", "1"]);
    // Three stripes of 2 MiB and a partial one; and a small file parity would not pay for.
    let data = random_bytes(6 * (1 << 20) + 12345, 0xec13);
    let ino = write_file(&cl, "/big", &data);
    write_file(&cl, "/small", &random_bytes(1000, 1));
    assert_eq!(shard_headers(&cl), vec![0, 0, 0]);
    let before = data_status(&cl);
    assert_eq!(before["encoded_files"], 0);
    assert_eq!(before["mirrored_files"], 2);
    assert_eq!(before["raw_per_byte"], 2.0, "mirrored: {before}");
    let mirrored_on_disk = stored_bytes(&cl);

    wait_for(60, "the file encoded, one shard per data server", || {
        shard_headers(&cl) == vec![1, 1, 1]
    });
    wait_for(30, "the mirror copies deleted", || {
        cl.chunk_files(ino).iter().all(|(_, n)| *n == 0)
    });
    // 2+1: half a copy more, against a whole one mirrored; status and the disks agree.
    let after = data_status(&cl);
    assert_eq!(after["encoded_files"], 1, "{after}");
    assert_eq!(after["encoded_bytes"], data.len() as u64);
    let coded = after["encoded_raw_bytes"].as_u64().expect("raw") as f64 / data.len() as f64;
    assert!(
        (1.45..1.55).contains(&coded),
        "encoded raw per byte {coded}"
    );
    let on_disk = stored_bytes(&cl);
    eprintln!(
        "raw bytes on the data servers: {mirrored_on_disk} mirrored, {on_disk} encoded ({:.3}x)",
        on_disk as f64 / mirrored_on_disk as f64
    );
    // The big file went from 2x to ~1.5x (3/4 of before, 0.753 measured: the small file
    // stays mirrored, and partial blocks round up); nothing deleted would be 1.0, a mirror copy
    // left 1.25.
    assert!(
        on_disk * 10 < mirrored_on_disk * 8,
        "{on_disk} vs {mirrored_on_disk}"
    );
    assert_eq!(
        read_file(&cl, "/big", data.len()),
        data,
        "read through the MDS"
    );
    assert_eq!(read_through_layout(&cl, "/big", data.len()), data);
    assert_eq!(read_striped(&cl, "/big", data.len(), 2), data, "striped");
    assert_eq!(read_file(&cl, "/small", 1000), random_bytes(1000, 1));

    // Any one of three lost: still the same bytes, rebuilt from the other two.
    cl.kill9("ds1");
    assert_eq!(
        read_file(&cl, "/big", data.len()),
        data,
        "degraded, via the MDS"
    );
    assert_eq!(
        read_through_layout(&cl, "/big", data.len()),
        data,
        "degraded"
    );
    assert_eq!(
        read_striped(&cl, "/big", data.len(), 2),
        data,
        "degraded, striped"
    );

    // A write: the file goes back to mirrors on the two servers left, then takes it.
    let c = cl.client(false);
    let f = cl
        .rt
        .block_on(c.open_path("/big", OPEN4_SHARE_ACCESS_BOTH, None))
        .expect("open for writing");
    let patch = random_bytes(4096, 7);
    cl.rt
        .block_on(c.write_all(&f, (1 << 20) + 100, &patch, StableHow4::FileSync4))
        .expect("write to an encoded file");
    cl.rt.block_on(c.close(&f)).expect("close");
    let _ = cl.rt.block_on(c.shutdown());
    let mut want = data.clone();
    want[(1 << 20) + 100..(1 << 20) + 100 + 4096].copy_from_slice(&patch);
    assert_eq!(read_file(&cl, "/big", want.len()), want);
    // Its old shards are dropped where their servers are up.
    assert_eq!(shard_headers(&cl)[1..], [0, 0]);
}

#[test]
fn truncating_or_removing_an_encoded_file_drops_its_shards() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let t = tempfile::tempdir().expect("tempdir");
    let cl = Cluster::start_sized(t.path(), 3, &["--encode-after", "1"]);
    let data = random_bytes(3 << 20, 0xec14);
    write_file(&cl, "/gone", &data);
    write_file(&cl, "/cut", &data);
    wait_for(60, "both files encoded", || {
        shard_headers(&cl) == vec![2, 2, 2]
    });
    // A truncation of an encoded file: back to mirrors first (its shards dropped), then cut;
    // at 100 KiB it stays mirrored.
    let c = cl.client(false);
    let cut = cl.rt.block_on(c.lookup_path("/cut")).expect("lookup");
    let size = SetAttrs {
        size: Some(100 << 10),
        ..Default::default()
    };
    cl.rt
        .block_on(c.setattr(&cut, &size, None))
        .expect("truncate an encoded file");
    assert_eq!(read_file(&cl, "/cut", 100 << 10), data[..100 << 10]);
    wait_for(30, "the cut file's shards dropped", || {
        shard_headers(&cl) == vec![1, 1, 1]
    });
    let root = cl.rt.block_on(c.lookup_path("/")).expect("root");
    cl.rt.block_on(c.remove(&root, "gone")).expect("remove");
    let _ = cl.rt.block_on(c.shutdown());
    wait_for(30, "every shard deleted", || {
        shard_headers(&cl) == vec![0, 0, 0]
    });
}

/// kill -9 of the MDS while it encodes a file (its ENCODE job under way, after `BeginEncode`
/// was committed): the file stays whole, mirrored; the restarted MDS gives up the encode left
/// under way, drops what it wrote and encodes the file once, ending with one shard per server
/// and no mirror copy.
#[test]
fn an_mds_killed_while_encoding_leaves_the_file_whole_and_encodes_it_later() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let t = tempfile::tempdir().expect("tempdir");
    let cl = Cluster::start_sized(
        t.path(),
        3,
        &["--encode-after", "1", "--lease-seconds", "5"],
    );
    // ~1.4 s of ENCODE at the ~140 MiB/s measured: the kill lands inside it.
    let data = random_bytes(192 << 20, 0xec15);
    let ino = write_file(&cl, "/f", &data);
    let log = cl.dir.join("cluster").join("mds.log");
    let begun = format!("encoding file ino={ino} ");
    wait_for(60, "the encoder begins the encode", || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains(&begun))
    });
    cl.kill9("mds");
    let before = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !before.contains(&format!("file erasure-coded ino={ino} ")),
        "the encode finished before the kill: the test did not hit it"
    );
    let _mds = cl.restart_mds();
    let restarted_log = cl.dir.join("mds-restarted.log");
    // Once in a loaded CI-like run (2026-11-29) this did not happen in 90 s; what the restarted
    // MDS said is printed if it fails again.
    let t = Instant::now();
    while !(shard_headers(&cl) == vec![1, 1, 1] && cl.chunk_files(ino).iter().all(|(_, n)| *n == 0))
    {
        if t.elapsed() > Duration::from_secs(90) {
            let log = std::fs::read_to_string(&restarted_log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            panic!(
                "the file encoded once, its mirror copies gone, within 90 s: shards {:?}, \
                 chunk files {:?}; the restarted MDS's log, newest first:\n{}",
                shard_headers(&cl),
                cl.chunk_files(ino),
                tail.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let after = std::fs::read_to_string(&restarted_log).unwrap_or_default();
    assert!(
        after.contains("encode left under way by a restart given up")
            && after.contains("shards of a retired encoding dropped"),
        "the restarted MDS did not give up the encode it found under way"
    );
    let st = data_status(&cl);
    assert_eq!(st["encoded_files"], 1, "{st}");
    assert_eq!(st["mirrored_files"], 0, "{st}");
    assert_eq!(read_file(&cl, "/f", data.len()), data);
    assert_eq!(read_striped(&cl, "/f", data.len(), 2), data);
}

/// With three MDS nodes, a file is encoded by the leader of its shard (node 1 leads shard 0,
/// where the root's files live), and every node's writers are kept off it:
/// - a file written and closed through node 2 is encoded, and reads back through node 3;
/// - a file a client of node 3 has open for writing is not encoded, though node 3 does not
///   lead its shard (node 3 tells the encoder when it holds the file for it), and is once
///   that client closes it;
/// - a write through node 3 to an encoded file copies it back to mirrors first, and node 2
///   reads what was written.
#[test]
fn with_three_metadata_nodes_files_are_encoded_by_their_shards_leader_and_kept_from_writers() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let t = tempfile::tempdir().expect("tempdir");
    let cl = Cluster::start_nodes(t.path(), 3, 3, &["--encode-after", "1", "--shards", "4"]);
    let node = |n: u16| std::net::SocketAddr::new(cl.addr.ip(), cl.addr.port() + n - 1);
    let read = |n: u16, path: &str, len: usize| {
        common::ec::read_file_with(&cl, cl.client_at(node(n), false), path, len)
    };

    // Node 3's client keeps /busy open for writing.
    let busy = random_bytes(6 << 20, 0xec16);
    let c3 = cl.client_at(node(3), false);
    let (fb, busy_ino) = write_open(&cl, &c3, "/busy", &busy);
    // /big through node 2, closed.
    let data = random_bytes(6 * (1 << 20) + 4321, 0xec17);
    let c2 = cl.client_at(node(2), false);
    let (f, ino) = write_open(&cl, &c2, "/big", &data);
    cl.rt.block_on(c2.close(&f)).expect("close /big");
    let _ = cl.rt.block_on(c2.shutdown());

    wait_for(60, "/big encoded, one shard per data server", || {
        shard_headers(&cl) == vec![1, 1, 1]
    });
    wait_for(30, "/big's mirror copies deleted", || {
        cl.chunk_files(ino).iter().all(|(_, n)| *n == 0)
    });
    let log = std::fs::read_to_string(cl.dir.join("cluster").join("mds1.log")).unwrap_or_default();
    assert!(
        log.contains(&format!("file erasure-coded ino={ino} ")),
        "node 1 (shard 0's leader) did not encode /big"
    );
    // Several encoder passes: /busy stays mirrored while node 3's client has it open for
    // writing. Passes are counted, not timed (a loaded machine delays them): each pass that
    // tries /busy fences it first and logs so, and only then hears from node 3 that it is in
    // use; passes run one at a time, so 4 more fences mean at least 3 passes that looked at
    // /busy and left it.
    let log1 = cl.dir.join("cluster").join("mds1.log");
    let fenced = || {
        log_count(
            &log1,
            "file fenced: its earlier DS handles are stale",
            busy_ino,
        )
    };
    let before = fenced();
    wait_for(
        120,
        "node 1's encoder trying /busy 4 more times (its fence log lines)",
        || fenced() >= before + 4,
    );
    assert_eq!(
        shard_headers(&cl),
        vec![1, 1, 1],
        "a file open for writing through another node was encoded"
    );
    assert_eq!(read(3, "/big", data.len()), data, "/big through node 3");

    // A write through node 3 brings /big back to mirrors first; node 2 reads it.
    let patch = random_bytes(4096, 0xec18);
    let f = cl
        .rt
        .block_on(c3.open_path("/big", OPEN4_SHARE_ACCESS_BOTH, None))
        .expect("open /big for writing");
    cl.rt
        .block_on(c3.write_all(&f, (2 << 20) + 7, &patch, StableHow4::FileSync4))
        .expect("write to the encoded /big through node 3");
    cl.rt.block_on(c3.close(&f)).expect("close");
    let mut want = data.clone();
    want[(2 << 20) + 7..(2 << 20) + 7 + 4096].copy_from_slice(&patch);
    assert_eq!(read(2, "/big", want.len()), want, "/big through node 2");

    // Closed, /busy is encoded too (and /big again, now quiet).
    cl.rt.block_on(c3.close(&fb)).expect("close /busy");
    let _ = cl.rt.block_on(c3.shutdown());
    wait_for(60, "both files encoded", || {
        shard_headers(&cl) == vec![2, 2, 2]
    });
    assert_eq!(read(2, "/busy", busy.len()), busy);
    assert_eq!(read(3, "/big", want.len()), want);
    // Node 1 encoded /busy too: it was node 3's answer, not node 1's own clients, that had
    // kept it mirrored.
    let log = std::fs::read_to_string(cl.dir.join("cluster").join("mds1.log")).unwrap_or_default();
    assert!(
        log.contains(&format!("file erasure-coded ino={busy_ino} ")),
        "node 1 did not encode /busy"
    );
}
