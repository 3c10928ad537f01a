//! Flash full (issue 45 item 6, D6) against a real S3 server (moto, a child process, behind
//! our fault proxy) and a real `cfs server` with an 8 MiB flash (`flash_capacity_mib`):
//! past 95 % a COMMIT is answered only once the file is in the bucket, and the node drops back
//! under its watermarks by evicting; with the store black-holed and flash full a write is
//! refused with NFS4ERR_NOSPC, nothing acknowledged before is lost, and once the store is
//! back writes go through again. On a cluster (two data servers with 8 MiB each), the same
//! for a LAYOUTCOMMIT of writes through layouts, through an MDS node leading the file's shard
//! or not.
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use client::{Client, ClientConfig, Error as ClientError};
use proto::nfs4::{Nfsstat4, StableHow4};
use tier::testing::proxy::Fault;

use crate::common::ec::wait_for;
use crate::common::{cfs, free_port, Server, SERIAL};
use crate::tier_cache::{
    bucket, create_and_write, data, from_bucket, put, rt, s3, tier_toml, try_put,
};
use crate::tier_evict::{
    cluster_tier, flash_used, on_flash, read_back, same, tier_cluster, tier_status,
};

const FLASH_MIB: u64 = 8;
const MIB: usize = 1 << 20;

/// A server with an 8 MiB flash uploading through `endpoint`, files uploaded `upload_after`
/// seconds after their last change, and an admin listener on `admin`.
fn config(dir: &Path, endpoint: &str, upload_after: u64, admin: SocketAddr) -> String {
    format!(
        "data = {:?}\n{}flash_capacity_mib = {FLASH_MIB}\n[admin]\nlisten = \"{admin}\"\n",
        dir.join("data"),
        tier_toml(endpoint).replace(
            "upload_after_seconds = 1\n",
            &format!("upload_after_seconds = {upload_after}\n")
        ),
    )
}

fn admin_addr() -> SocketAddr {
    format!("127.0.0.1:{}", free_port())
        .parse()
        .expect("address")
}

/// `name`'s value on the `/metrics` of the server at `addr`.
fn metric(dir: &Path, config: &Path, addr: SocketAddr, name: &str) -> Option<f64> {
    let o = cfs(
        dir,
        &["admin", "token", "--config", config.to_str().unwrap()],
    );
    assert!(o.ok(), "{}", o.stderr);
    let token = o.text().trim().to_string();
    let r = rt()
        .block_on(crate::http_client::request(
            addr,
            "GET",
            "/metrics",
            Some(&token),
            None,
            Duration::from_secs(10),
        ))
        .expect("/metrics");
    r.text()
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// `bytes` as a percent of the flash.
fn mib_percent(bytes: u64) -> u64 {
    bytes * 100 / (FLASH_MIB << 20)
}

#[test]
fn past_95_percent_a_commit_returns_once_the_file_is_in_the_bucket_and_eviction_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let (_moto, proxy, store) = s3(&rt);
    // Nothing is uploaded before write-through (an hour's quiet time): what fills flash is
    // only on flash, as behind a writer faster than the bucket.
    let admin = admin_addr();
    let srv = Server::start(
        dir.path(),
        Some(&config(dir.path(), &proxy.endpoint(), 3600, admin)),
    );
    let cfg = srv.config.clone().expect("config");
    let data_dir = dir.path().join("data");

    let held: Vec<(String, Vec<u8>)> = (0..7)
        .map(|i| (format!("/held{i}"), data(MIB, 80 + i as u8)))
        .collect();
    let late = data(3 * MIB / 4, 90);
    // One client writes 7 MiB (87 %) and keeps the files open for writing: neither uploaded
    // nor evictable.
    let (a, open) = rt.block_on(async {
        let a = Client::connect(ClientConfig::new(srv.addr))
            .await
            .expect("connect");
        let mut open = Vec::new();
        for (p, d) in &held {
            let (f, written) = create_and_write(&a, p, d, StableHow4::FileSync4).await;
            written.expect("a write under 95 %");
            open.push(f);
        }
        (a, open)
    });
    // The evictor's measure (every 2 s) sees them.
    wait_for(10, "flash measured at 87 %", || {
        tier_status(&cfg)["flash_used_percent"].as_u64() >= Some(85)
    });
    assert_eq!(
        tier_status(&cfg)["write_through"].as_bool(),
        Some(false),
        "87 % is under the write-through mark"
    );
    // Another writes 0.75 MiB more (97 %) unstably, then commits, with a store that takes a
    // second per request: the COMMIT waits for the upload.
    let (b, f, ino) = rt.block_on(async {
        let b = Client::connect(ClientConfig::new(srv.addr))
            .await
            .expect("connect");
        let (f, written) = create_and_write(&b, "/late", &late, StableHow4::Unstable4).await;
        written.expect("unstable write");
        let ino = b.getattr(&f.fh).await.expect("getattr").fileid;
        (b, f, ino)
    });
    proxy.set_delay(Duration::from_secs(1));
    let t = Instant::now();
    rt.block_on(b.commit(&f.fh, 0, 0))
        .expect("COMMIT in write-through");
    let commit_took = t.elapsed();
    proxy.set_delay(Duration::ZERO);
    // The acknowledgement came with the file in the bucket, byte-exact.
    assert_eq!(
        from_bucket(&bucket(&rt, &store), ino, late.len()).as_deref(),
        Some(&late[..]),
        "/late in the bucket when its COMMIT was answered"
    );
    let status_then = tier_status(&cfg);
    let metric_then = metric(dir.path(), &cfg, admin, "cfs_tier_write_through");
    rt.block_on(async {
        b.close(&f).await.expect("close");
        let _ = b.shutdown().await;
    });
    // What was acknowledged through the bucket leaves flash first, while the held files (open,
    // not uploaded) keep flash past the high watermark: still write-through.
    wait_for(20, "/late evicted", || !on_flash(&data_dir, ino));
    assert_eq!(
        tier_status(&cfg)["write_through"].as_bool(),
        Some(true),
        "87 % after /late left: write-through goes on until under 80 %"
    );
    rt.block_on(async {
        for f in &open {
            a.close(f).await.expect("close");
        }
        let _ = a.shutdown().await;
    });
    eprintln!(
        "write-through COMMIT took {commit_took:?} (store delay 1 s); status {status_then}; \
         metric {metric_then:?}"
    );
    assert!(
        commit_took >= Duration::from_secs(1),
        "the COMMIT waited for the upload (1 s per request): {commit_took:?}"
    );
    assert_eq!(status_then["write_through"].as_bool(), Some(true));
    assert!(status_then["flash_used_percent"].as_u64() > Some(95));
    assert!(status_then["write_through_acks"].as_u64() >= Some(1));
    assert_eq!(metric_then, Some(1.0), "cfs_tier_write_through on /metrics");
    let shown = cfs(
        dir.path(),
        &["admin", "status", "--config", cfg.to_str().unwrap()],
    );
    assert!(
        shown.text().contains("ALERT: flash full: write-through"),
        "{}",
        shown.text()
    );

    // Closed, the held files go to the bucket at once (write-through waits for no quiet time)
    // and leave flash until it is under the high watermark, where write-through ends.
    let took = wait_for(40, "flash under 80 % and write-through over", || {
        mib_percent(flash_used(&data_dir)) <= 80
            && tier_status(&cfg)["write_through"].as_bool() == Some(false)
    });
    let t = tier_status(&cfg);
    eprintln!(
        "back under the watermarks after {took:?}: {} bytes; status {t}",
        flash_used(&data_dir)
    );
    assert!(t["evicted_files"].as_u64() >= Some(2), "{t}");
    assert_eq!(
        metric(dir.path(), &cfg, admin, "cfs_tier_write_through"),
        Some(0.0)
    );
    // Every byte reads back, from flash or the bucket.
    for (p, d) in &held {
        same(p, &read_back(&rt, &srv, p, d.len()), d);
    }
    same("/late", &read_back(&rt, &srv, "/late", late.len()), &late);
}

fn is_nospc(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Nfs {
            status: Nfsstat4::Nospc,
            ..
        }
    )
}

#[test]
fn s3_down_and_flash_full_a_write_gets_nospc_and_nothing_acknowledged_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let (_moto, proxy, store) = s3(&rt);
    let srv = Server::start(
        dir.path(),
        Some(&config(dir.path(), &proxy.endpoint(), 1, admin_addr())),
    );
    let cfg = srv.config.clone().expect("config");
    let data_dir = dir.path().join("data");

    // The store black-holed; the first change's uploads find it so.
    proxy.fail_all(Fault::BlackHole);
    let mut stored: Vec<(String, Vec<u8>, u64)> = Vec::new();
    let first = data(MIB, 1);
    let ino = put(&rt, srv.addr, "/f0", &first);
    stored.push(("/f0".into(), first, ino));
    wait_for(30, "the store shown failing", || {
        tier_status(&cfg)["s3_failing_seconds"].as_u64().is_some()
    });

    // Files of 256 KiB until one does not fit: refused, not delayed, the store being down.
    // (Smaller than the last 5 %, so the flash goes through write-through on its way.)
    let started = Instant::now();
    let mut refused = None;
    for i in 1..48 {
        let (p, d) = (format!("/f{i}"), data(MIB / 4, 1 + i as u8));
        match try_put(&rt, srv.addr, &p, &d) {
            Ok(ino) => stored.push((p, d, ino)),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let refused = refused.expect("12.75 MiB fit in an 8 MiB flash");
    eprintln!(
        "{} files (1 MiB, then 256 KiB each) acknowledged, then {refused} after {:?}",
        stored.len(),
        started.elapsed()
    );
    assert!(is_nospc(&refused), "the write that does not fit: {refused}");
    assert!(
        stored.len() >= 24,
        "only {} files fit in 8 MiB",
        stored.len()
    );
    let t = tier_status(&cfg);
    assert_eq!(t["write_through"].as_bool(), Some(true), "{t}");
    assert!(t["full_refusals"].as_u64() >= Some(1), "{t}");
    assert_eq!(
        t["evicted_files"].as_u64(),
        Some(0),
        "nothing left flash: {t}"
    );
    // Everything acknowledged reads back byte-exact, from flash.
    for (p, d, _) in &stored {
        same(p, &read_back(&rt, &srv, p, d.len()), d);
    }

    // The store back: uploads drain, eviction makes room, and writes go through again.
    proxy.clear();
    let again = data(MIB, 77);
    let mut last = None;
    let took = wait_for(
        50,
        "a write accepted after the store came back",
        || match try_put(&rt, srv.addr, "/again", &again) {
            Ok(_) => true,
            Err(e) => {
                last = Some(e.to_string());
                false
            }
        },
    );
    eprintln!("writes accepted {took:?} after the store returned (last refusal {last:?})");
    let t = tier_status(&cfg);
    assert!(t["evicted_files"].as_u64() >= Some(1), "{t}");
    // Everything acknowledged during the outage reaches the bucket, and reads back
    // byte-exact (the evicted files from there).
    wait_for(
        30,
        "every file acknowledged in the outage in the bucket",
        || {
            let b = bucket(&rt, &store);
            stored
                .iter()
                .all(|(_, d, ino)| from_bucket(&b, *ino, d.len()).as_deref() == Some(&d[..]))
        },
    );
    for (p, d, _) in &stored {
        same(p, &read_back(&rt, &srv, p, d.len()), d);
    }
    same(
        "/again",
        &read_back(&rt, &srv, "/again", again.len()),
        &again,
    );
    // Reads of evicted files bring them back only as far as flash has room.
    let used = flash_used(&data_dir);
    assert!(
        used <= FLASH_MIB << 20,
        "flash holds {used} bytes, past its {FLASH_MIB} MiB"
    );
}

/// `cfs admin status`'s tier section of a cluster's MDS.
/// On a cluster clients write through layouts straight to the data servers: past 95 % of a
/// data server holding the file, its LAYOUTCOMMIT (close, fsync) is answered once the file is
/// in the bucket; with the store black-holed it is answered from flash, and everything reads
/// back.
#[test]
fn on_data_servers_past_95_percent_a_layoutcommit_returns_once_the_file_is_in_the_bucket() {
    use crate::common::ec::{read_file, write_open};
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let (_moto, proxy, store) = s3(&rt);
    // Nothing uploaded before write-through (an hour's quiet time).
    let cl = two_small_data_servers(dir.path(), &proxy, 3600);

    // One client writes 7 MiB (87 % of each data server) through layouts, LAYOUTCOMMITs
    // them under the mark (answered at once), and keeps them open for writing: neither
    // uploaded nor evictable.
    let held: Vec<(String, Vec<u8>)> = (0..7)
        .map(|i| (format!("/held{i}"), data(MIB, 80 + i as u8)))
        .collect();
    let a = cl.client(true);
    let open: Vec<client::OpenFile> = held
        .iter()
        .map(|(p, d)| {
            let (f, _) = write_open(&cl, &a, p, d);
            cl.rt.block_on(a.commit_file(&f)).expect("LAYOUTCOMMIT");
            f
        })
        .collect();
    assert_eq!(
        cluster_tier(&cl)["write_through"].as_bool(),
        Some(false),
        "under the write-through mark"
    );
    // Another writes 0.75 MiB more (97 %) and keeps it open, LAYOUTCOMMIT not sent yet.
    let late = data(3 * MIB / 4, 90);
    let b = cl.client(true);
    let (f, ino) = write_open(&cl, &b, "/late", &late);
    let stats = b.pnfs_stats().expect("pNFS stats");
    assert!(
        stats.ds_write_bytes >= late.len() as u64 && stats.layoutcommits == 0,
        "written through the layout, not committed yet: {stats:?}"
    );
    // The data servers' heartbeats report it: write-through.
    wait_for(60, "write-through from the data servers' use", || {
        cluster_tier(&cl)["write_through"].as_bool() == Some(true)
    });
    let before = cluster_tier(&cl);

    // With a store taking a second per request, the LAYOUTCOMMIT (here: of an fsync) waits
    // for the upload.
    proxy.set_delay(Duration::from_secs(1));
    let t = Instant::now();
    cl.rt
        .block_on(b.commit_file(&f))
        .expect("DS COMMIT and LAYOUTCOMMIT in write-through");
    let held_for = t.elapsed();
    proxy.set_delay(Duration::ZERO);
    // Answered with the file in the bucket, byte-exact.
    assert_eq!(
        from_bucket(
            &crate::tier_cache::bucket_at(&rt, &store, "cfs"),
            ino,
            late.len()
        )
        .as_deref(),
        Some(&late[..]),
        "/late in the bucket when its LAYOUTCOMMIT was answered"
    );
    let stats = b.pnfs_stats().expect("pNFS stats");
    let after = cluster_tier(&cl);
    cl.rt.block_on(b.close(&f)).expect("close");
    let _ = cl.rt.block_on(b.shutdown());
    eprintln!(
        "write-through LAYOUTCOMMIT held {held_for:?} (store delay 1 s); before {before}; \
         after {after}"
    );
    assert!(stats.layoutcommits >= 1, "{stats:?}");
    assert!(
        held_for >= Duration::from_secs(1),
        "the LAYOUTCOMMIT waited for the upload (1 s per request): {held_for:?}"
    );
    assert!(before["flash_used_percent"].as_u64() > Some(95), "{before}");
    assert!(
        after["write_through_acks"].as_u64() > before["write_through_acks"].as_u64(),
        "{before} → {after}"
    );

    // The store black-holed: a file written and closed through its layout is still
    // acknowledged, from flash (its bytes stay there until the bucket has them).
    proxy.fail_all(Fault::BlackHole);
    // Small: the data servers now hold 7.75 MiB and their header pages of 8 MiB, and a write
    // past that would be refused (NOSPC, the store failing: the next test).
    let dark = data(32 << 10, 91);
    let c = cl.client(true);
    let (fd, _) = write_open(&cl, &c, "/dark", &dark);
    let t = Instant::now();
    cl.rt
        .block_on(c.close(&fd))
        .expect("LAYOUTCOMMIT and CLOSE with the store black-holed");
    let dark_took = t.elapsed();
    let stats = c.pnfs_stats().expect("pNFS stats");
    let _ = cl.rt.block_on(c.shutdown());
    let t = cluster_tier(&cl);
    eprintln!("with the store black-holed the close took {dark_took:?}; {stats:?}; {t}");
    assert!(stats.layoutcommits >= 1, "{stats:?}");
    assert!(t["s3_failing_seconds"].as_u64().is_some(), "{t}");
    // What is on flash reads back byte-exact meanwhile.
    same("/dark", &read_file(&cl, "/dark", dark.len()), &dark);
    for (p, d) in &held {
        same(p, &read_file(&cl, p, d.len()), d);
    }

    // The store back: everything reads back, /late (perhaps evicted) too.
    proxy.clear();
    for f in &open {
        cl.rt.block_on(a.close(f)).expect("close");
    }
    let _ = cl.rt.block_on(a.shutdown());
    same("/late", &read_file(&cl, "/late", late.len()), &late);
    for (p, d) in &held {
        same(p, &read_file(&cl, p, d.len()), d);
    }
    same("/dark", &read_file(&cl, "/dark", dark.len()), &dark);
}

/// Three MDS nodes and one metadata shard, so at least two of them do not lead the files: a
/// LAYOUTCOMMIT in write-through through each node returns with the file in the bucket
/// (a node that does not lead the shard uploads it itself, against the replicated record).
#[test]
fn on_three_mds_nodes_a_layoutcommit_through_any_node_returns_once_the_file_is_in_the_bucket() {
    use crate::common::ec::{read_file, write_open};
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let (_moto, proxy, store) = s3(&rt);
    let cl = tier_cluster(
        dir.path(),
        &proxy,
        (3, 2),
        &format!("upload_after_seconds = 3600\nobject_mib = 1\nflash_capacity_mib = {FLASH_MIB}\n"),
        &["--shards", "1"],
    );
    let nodes = cl.client_addresses();
    assert_eq!(nodes.len(), 3);
    let status = |n: usize| tier_status(&cl.dir.join("cluster").join(format!("mds{}.toml", n + 1)));
    // 7.5 MiB (over 95 % with the chunk files' sums) written and kept open: write-through on
    // every node, from the data servers' heartbeats.
    let held: Vec<(String, Vec<u8>)> = (0..15)
        .map(|i| (format!("/held{i}"), data(MIB / 2, 80 + i as u8)))
        .collect();
    let a = cl.client(true);
    let open: Vec<client::OpenFile> = held
        .iter()
        .map(|(p, d)| {
            let (f, _) = write_open(&cl, &a, p, d);
            cl.rt.block_on(a.commit_file(&f)).expect("LAYOUTCOMMIT");
            f
        })
        .collect();
    wait_for(60, "write-through on every MDS node", || {
        (0..3).all(|n| status(n)["write_through"].as_bool() == Some(true))
    });
    let b = crate::tier_cache::bucket_at;
    for (n, at) in nodes.iter().enumerate() {
        let late = data(MIB / 4, 100 + n as u8);
        let path = format!("/late{n}");
        let c = cl.client_at(*at, true);
        let (f, ino) = write_open(&cl, &c, &path, &late);
        proxy.set_delay(Duration::from_secs(1));
        let t = Instant::now();
        cl.rt
            .block_on(c.commit_file(&f))
            .expect("LAYOUTCOMMIT in write-through");
        let held_for = t.elapsed();
        proxy.set_delay(Duration::ZERO);
        let got = from_bucket(&b(&rt, &store, "cfs"), ino, late.len());
        cl.rt.block_on(c.close(&f)).expect("close");
        let _ = cl.rt.block_on(c.shutdown());
        eprintln!("LAYOUTCOMMIT through node {} held {held_for:?}", n + 1);
        assert_eq!(got.as_deref(), Some(&late[..]), "{path} in the bucket");
        assert!(
            held_for >= Duration::from_secs(1),
            "{path}: the LAYOUTCOMMIT through node {} waited for the upload: {held_for:?}",
            n + 1
        );
        same(&path, &read_file(&cl, &path, late.len()), &late);
    }
    for f in &open {
        cl.rt.block_on(a.close(f)).expect("close");
    }
    let _ = cl.rt.block_on(a.shutdown());
}

/// A cluster of one MDS and two data servers behind `proxy` with 8 MiB of flash each (every file
/// mirrored on both, so both fill alike), files uploaded `upload_after` seconds after their
/// last change in 1 MiB objects, PUTs given up within ~10 s when the store is black-holed.
fn two_small_data_servers(
    dir: &Path,
    proxy: &tier::testing::proxy::FaultProxy,
    upload_after: u64,
) -> crate::common::cluster::Cluster {
    tier_cluster(
        dir,
        proxy,
        (1, 2),
        &format!(
            "upload_after_seconds = {upload_after}\nobject_mib = 1\n\
             flash_capacity_mib = {FLASH_MIB}\nrequest_timeout_seconds = 2\n\
             connect_timeout_seconds = 1\nmax_attempts = 3\n"
        ),
        &[],
    )
}

/// Writes `d` to `p` through a layout of client `c` (FILE_SYNC) and closes the file
/// (LAYOUTCOMMIT, CLOSE): acknowledged once this returns Ok; its inode number.
fn try_write_through_layout(
    cl: &crate::common::cluster::Cluster,
    c: &Client,
    p: &str,
    d: &[u8],
) -> Result<u64, ClientError> {
    use crate::common::ec::create_empty;
    let f = cl
        .rt
        .block_on(c.open_path(p, proto::nfs4::OPEN4_SHARE_ACCESS_BOTH, create_empty()))?;
    let written = cl.rt.block_on(c.write_all(&f, 0, d, StableHow4::FileSync4));
    let closed = cl.rt.block_on(c.close(&f));
    written?;
    closed?;
    Ok(cl.rt.block_on(c.getattr(&f.fh))?.fileid)
}

/// On a cluster the data servers hold the bytes, and each admits writes against the flash
/// capacity the MDS gives it in heartbeat replies. With the store black-holed and their flash
/// full, a write through a layout is refused with NOSPC (and through the MDS after it), and
/// nothing acknowledged is lost; with the store back, a write past their capacity waits
/// (JUKEBOX from the data servers, DELAY from the MDS) while uploads and eviction make room,
/// and is taken, with neither data server past its capacity.
#[test]
fn on_data_servers_with_the_store_down_a_full_flash_refuses_and_with_it_back_a_write_waits_for_room(
) {
    use crate::common::ec::read_file;
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let (_moto, proxy, store) = s3(&rt);
    // Files uploaded a second after their last change.
    let cl = two_small_data_servers(dir.path(), &proxy, 1);
    // What each data server's store holds, as its walk counts it.
    // (Roles ds1 and ds2.)
    let ds_used = |i: usize| {
        crate::tier_evict::disk_bytes(&cl.ds_dir(&format!("ds{i}")).join("chunks/objects"))
    };

    proxy.fail_all(Fault::BlackHole);
    let c = cl.client(true);
    let mut stored: Vec<(String, Vec<u8>, u64)> = Vec::new();
    let first = data(MIB, 1);
    let ino = try_write_through_layout(&cl, &c, "/f0", &first).expect("the first file");
    stored.push(("/f0".into(), first, ino));
    wait_for(30, "the store shown failing", || {
        cluster_tier(&cl)["s3_failing_seconds"].as_u64().is_some()
    });
    // The data servers hear it at their next heartbeat (every second).
    std::thread::sleep(Duration::from_secs(3));

    // Files of 512 KiB until one does not fit: refused, the store being down.
    let started = Instant::now();
    let mut refused = None;
    for i in 1..24 {
        let (p, d) = (format!("/f{i}"), data(MIB / 2, 1 + i as u8));
        match try_write_through_layout(&cl, &c, &p, &d) {
            Ok(ino) => stored.push((p, d, ino)),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let refused = refused.expect("12.5 MiB fit on 8 MiB data servers");
    let stats = c.pnfs_stats().expect("pNFS stats");
    eprintln!(
        "{} files (1 MiB, then 512 KiB each) acknowledged, then {refused} after {:?}; data \
         servers use {} and {} bytes; {stats:?}",
        stored.len(),
        started.elapsed(),
        ds_used(1),
        ds_used(2),
    );
    assert!(is_nospc(&refused), "the write that does not fit: {refused}");
    assert!(
        stored.len() >= 11,
        "only {} files fit in 8 MiB",
        stored.len()
    );
    assert!(
        stats.ds_write_bytes >= 5 << 20,
        "written through layouts: {stats:?}"
    );
    for i in 1..=2 {
        assert!(ds_used(i) <= FLASH_MIB << 20, "ds{i} past its capacity");
    }
    let _ = cl.rt.block_on(c.shutdown());
    for (p, d, _) in &stored {
        same(p, &read_file(&cl, p, d.len()), d);
    }

    // The store back, taking 2 s per request: once it answers, a write that does not fit yet
    // waits for room (JUKEBOX from the data servers while the uploads drain and the evictor
    // empties the uploaded files on both) and is taken, with no error.
    proxy.clear();
    proxy.set_delay(Duration::from_secs(2));
    wait_for(60, "the store answering again", || {
        cluster_tier(&cl)["s3_failing_seconds"].as_u64().is_none()
    });
    // The data servers hear it at their next heartbeat.
    std::thread::sleep(Duration::from_secs(3));
    let c = cl.client(true);
    let again = data(2 * MIB, 77);
    let t = Instant::now();
    let ino = try_write_through_layout(&cl, &c, "/again", &again)
        .expect("a write past capacity with the store back waits, then is taken");
    let took = t.elapsed();
    proxy.set_delay(Duration::ZERO);
    let stats = c.pnfs_stats().expect("pNFS stats");
    let _ = cl.rt.block_on(c.shutdown());
    let tier = cluster_tier(&cl);
    eprintln!("with the store back a 2 MiB file was taken in {took:?}; {stats:?}; {tier}");
    assert!(tier["evicted_files"].as_u64() >= Some(1), "{tier}");
    stored.push(("/again".into(), again, ino));
    for i in 1..=2 {
        let used = ds_used(i);
        assert!(
            used <= FLASH_MIB << 20,
            "ds{i} holds {used} bytes, past its capacity"
        );
    }
    // Everything acknowledged reads back byte-exact (the evicted files from the bucket), and
    // reaches the bucket.
    for (p, d, _) in &stored {
        same(p, &read_file(&cl, p, d.len()), d);
    }
    wait_for(60, "every acknowledged file in the bucket", || {
        let b = crate::tier_cache::bucket_at(&rt, &store, "cfs");
        stored
            .iter()
            .all(|(_, d, ino)| from_bucket(&b, *ino, d.len()).as_deref() == Some(&d[..]))
    });
}
