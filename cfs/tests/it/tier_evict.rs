//! Eviction (issue 45, item 4) against a real S3 server (moto, a child process) and a real
//! `cfs server`: with flash past its high watermark, files whose bytes are in the bucket leave
//! flash until it is under the low one; every evicted file still reads back byte-exact (from
//! the bucket, then from flash once it is back), a write to one waits until it is back and
//! loses nothing, and all of it survives kill -9.
use std::path::Path;

use client::{Client, ClientConfig};
use proto::nfs4::{StableHow4, OPEN4_SHARE_ACCESS_BOTH, OPEN4_SHARE_ACCESS_READ};

use crate::common::ec::wait_for;
use crate::common::{free_port, Server, BIN, SERIAL};
use crate::tier_cache::{bucket, data, from_bucket, put, rt, s3, tier_toml};

/// The flash eviction manages in this test, and its watermarks' defaults (80 %, 60 %).
const FLASH_MIB: u64 = 8;

/// Bytes the chunk store under `data` takes on disk (allocated blocks, as the evictor counts).
pub(crate) fn flash_used(data: &Path) -> u64 {
    disk_bytes(&data.join("chunks"))
}

/// Allocated bytes of every file under `p`.
pub(crate) fn disk_bytes(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_bytes(&e.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

/// `cfs admin status --json`'s tier section, asked of the server `config` names.
pub(crate) fn tier_status(config: &Path) -> serde_json::Value {
    admin_status(config)["mds"]["tier"].clone()
}

/// `cfs admin status --json`, asked of the server `config` names.
pub(crate) fn admin_status(config: &Path) -> serde_json::Value {
    let out = std::process::Command::new(BIN)
        .args(["admin", "status", "--json", "--config"])
        .arg(config)
        .output()
        .expect("cfs admin status");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "status JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

pub(crate) fn read_back(
    rt: &tokio::runtime::Runtime,
    srv: &Server,
    path: &str,
    len: usize,
) -> Vec<u8> {
    rt.block_on(async {
        let c = Client::connect(ClientConfig::new(srv.addr))
            .await
            .expect("connect");
        let f = c
            .open_path(path, OPEN4_SHARE_ACCESS_READ, None)
            .await
            .expect("open");
        let mut out = Vec::new();
        while out.len() < len {
            let (d, eof) = c.read(&f, out.len() as u64, 1 << 20).await.expect("read");
            out.extend_from_slice(&d);
            if eof || d.is_empty() {
                break;
            }
        }
        // A read across two objects' boundary, alone.
        if len > (1 << 20) + 100 {
            let (d, _) = c.read(&f, (1 << 20) - 100, 300).await.expect("read");
            same(path, &d, &out[(1 << 20) - 100..(1 << 20) + 200]);
        }
        c.close(&f).await.expect("close");
        let _ = c.shutdown().await;
        out
    })
}

#[test]
fn past_the_high_watermark_files_leave_flash_and_still_read_back_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let (_moto, proxy, store) = s3(&rt);
    // `data` too, so `cfs admin` finds the admin secret from this file.
    let config = format!(
        "data = {:?}\n{}flash_capacity_mib = {FLASH_MIB}\n[admin]\nlisten = \"127.0.0.1:{}\"\n",
        dir.path().join("data"),
        tier_toml(&proxy.endpoint()),
        free_port()
    );
    let mut srv = Server::start(dir.path(), Some(&config));
    let cfg = srv.config.clone().expect("config");
    let data_dir = dir.path().join("data");

    // 7 MB on an 8 MiB flash: past 80 % as soon as it is written, and under the 95 % where
    // writes would be held until in the bucket (write-through, `tier_full.rs`).
    let mut files: Vec<(String, Vec<u8>)> = (0..4)
        .map(|i| (format!("/f{i}"), data(1_000_000, 40 + i as u8)))
        .collect();
    files.push(("/big".into(), data(3_000_000, 50)));
    let inos: Vec<u64> = files
        .iter()
        .map(|(p, d)| put(&rt, srv.addr, p, d))
        .collect();
    let full = flash_used(&data_dir);
    assert!(
        full * 100 > FLASH_MIB * (1 << 20) * 80,
        "the test fills flash past 80 %: {full} bytes"
    );
    let low = FLASH_MIB * (1 << 20) * 60 / 100;
    let took = wait_for(60, "flash under the low watermark", || {
        flash_used(&data_dir) <= low
    });
    let gone = inos.iter().filter(|i| !on_flash(&data_dir, **i)).count();
    let after = flash_used(&data_dir);
    let t = tier_status(&cfg);
    eprintln!(
        "eviction: {full} → {after} bytes of {} in {took:?}; status {t}",
        FLASH_MIB << 20
    );
    assert!(gone >= 1, "files whose chunks left flash");
    assert_eq!(t["evicted_files"].as_u64(), Some(gone as u64), "{t}");
    // Nothing is evicted that the bucket does not hold exactly.
    let b = bucket(&rt, &store);
    for ((p, d), ino) in files.iter().zip(&inos) {
        assert!(
            from_bucket(&b, *ino, d.len()).as_deref() == Some(&d[..]),
            "{p} in the bucket"
        );
    }

    // Every file reads back byte-exact: the evicted ones from the bucket.
    for (p, d) in &files {
        same(p, &read_back(&rt, &srv, p, d.len()), d);
    }
    let t = tier_status(&cfg);
    assert!(t["bucket_read_bytes"].as_u64() > Some(0), "{t}");
    // Read, they are wanted back on flash: the restorer copies them.
    wait_for(30, "a read file restored to flash", || {
        tier_status(&cfg)["restored_bytes"].as_u64() > Some(0)
    });

    // A write into the middle of a file that is evicted waits until it is back, then lands
    // among its old bytes: nothing of either is lost.
    let mut victim = 0;
    wait_for(60, "a file evicted again", || {
        match inos.iter().position(|i| !on_flash(&data_dir, *i)) {
            Some(v) => {
                victim = v;
                true
            }
            None => false,
        }
    });
    let (path, old) = &files[victim];
    let patch = data(5000, 99);
    rt.block_on(async {
        let c = Client::connect(ClientConfig::new(srv.addr))
            .await
            .expect("connect");
        let f = c
            .open_path(path, OPEN4_SHARE_ACCESS_BOTH, None)
            .await
            .expect("open");
        c.write_all(&f, 777_000, &patch, StableHow4::FileSync4)
            .await
            .expect("write to an evicted file");
        c.close(&f).await.expect("close");
        let _ = c.shutdown().await;
    });
    let mut want = old.clone();
    want[777_000..782_000].copy_from_slice(&patch);
    files[victim].1 = want;

    // kill -9: what was evicted stays readable, what was written stays written.
    srv.kill();
    srv.restart();
    for (p, d) in &files {
        same(
            &format!("{p} after kill -9"),
            &read_back(&rt, &srv, p, d.len()),
            d,
        );
    }
}

/// Asserts `got` is `want`, naming the first difference (not printing megabytes).
pub(crate) fn same(what: &str, got: &[u8], want: &[u8]) {
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        let n = got.iter().zip(want).filter(|(a, b)| a != b).count();
        let last = got.iter().zip(want).rposition(|(a, b)| a != b).unwrap_or(i);
        let zeros = got[i..=last].iter().filter(|b| **b == 0).count();
        let end = (i + 8).min(got.len()).min(want.len());
        panic!(
            "{what}: byte {i} differs (of {} read, {} expected): {n} bytes differ up to byte \
             {last}, {zeros} of those read in that span zero; read {:?}, expected {:?}",
            got.len(),
            want.len(),
            &got[i..end],
            &want[i..end],
        );
    }
    assert_eq!(got.len(), want.len(), "{what}: length");
}

/// Whether flash holds any chunk of `ino` (the chunk store's layout: `chunkstore::paths`).
pub(crate) fn on_flash(data: &Path, ino: u64) -> bool {
    let d = data
        .join("chunks/objects")
        .join(format!("{:02x}", ino & 0xff))
        .join(format!("{ino:016x}"));
    std::fs::read_dir(d).is_ok_and(|mut r| r.next().is_some())
}

#[test]
fn pins_keep_a_tree_on_flash_or_send_it_to_the_bucket_and_new_files_take_their_directorys() {
    use proto::nfs4::SetxattrOption4;
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let (_moto, proxy, _store) = s3(&rt);
    // 4 MiB of flash: 5 MB written is past 80 %, 3 MB pinned to flash is under it.
    let config = format!("{}flash_capacity_mib = 4\n", tier_toml(&proxy.endpoint()));
    let srv = Server::start(dir.path(), Some(&config));
    let data_dir = dir.path().join("data");
    rt.block_on(async {
        let c = Client::connect(ClientConfig::new(srv.addr))
            .await
            .expect("connect");
        for (d, pin) in [("hot", "flash"), ("cold", "s3")] {
            let fh = c.mkdir(c.root(), d, 0o755).await.expect("mkdir");
            c.setxattr(&fh, b"cfs.tier", pin.as_bytes(), SetxattrOption4::Either)
                .await
                .expect("pin");
        }
        // Not a pin: refused (EINVAL), and nothing set.
        let bad = c
            .setxattr(c.root(), b"cfs.tier", b"tape", SetxattrOption4::Either)
            .await;
        assert!(bad.is_err(), "a pin that is not flash, s3 or auto");
        assert!(c.getxattr(c.root(), b"cfs.tier").await.is_err());
        let _ = c.shutdown().await;
    });
    let mut files: Vec<(String, Vec<u8>)> = (0..3)
        .map(|i| (format!("/hot/h{i}"), data(1_000_000, 60 + i as u8)))
        .collect();
    files.push(("/cold/c0".into(), data(1_000_000, 70)));
    files.push(("/plain".into(), data(1_000_000, 71)));
    let inos: Vec<u64> = files
        .iter()
        .map(|(p, d)| put(&rt, srv.addr, p, d))
        .collect();
    // New files took their directory's pin.
    rt.block_on(async {
        let c = Client::connect(ClientConfig::new(srv.addr))
            .await
            .expect("connect");
        for (p, want) in [("/hot/h0", &b"flash"[..]), ("/cold/c0", b"s3")] {
            let fh = c.lookup_path(p).await.expect("lookup");
            assert_eq!(
                c.getxattr(&fh, b"cfs.tier").await.expect("pin"),
                want,
                "{p}"
            );
        }
        let _ = c.shutdown().await;
    });
    let (cold, plain) = (inos[3], inos[4]);
    let took = wait_for(60, "the s3-pinned and the unpinned file evicted", || {
        !on_flash(&data_dir, cold) && !on_flash(&data_dir, plain)
    });
    eprintln!("pinned evictions after {took:?}");
    std::thread::sleep(std::time::Duration::from_secs(3));
    for ino in &inos[..3] {
        assert!(
            on_flash(&data_dir, *ino),
            "a file pinned to flash stays there"
        );
    }
    // Read from the bucket, byte-exact; pinned to the bucket, it does not come back.
    for (p, d) in &files {
        same(p, &read_back(&rt, &srv, p, d.len()), d);
    }
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(
        !on_flash(&data_dir, cold),
        "read, an s3-pinned file stays in the bucket"
    );
}

/// Bytes a data server's directory takes on disk (allocated blocks: its chunk store and its
/// shards).
fn ds_used(cl: &crate::common::cluster::Cluster, i: usize) -> u64 {
    let d = cl.ds_dir(&format!("ds{i}"));
    disk_bytes(&d.join("chunks").join("objects")) + disk_bytes(&d.join("shards"))
}

pub(crate) fn cluster_tier(cl: &crate::common::cluster::Cluster) -> serde_json::Value {
    tier_status(Path::new(&cl.mds_toml()))
}

/// `cfs cluster up` of `mds` MDS nodes and `ds` data servers with `--s3` at `proxy`'s bucket
/// (moto's test credentials), `extra` as the MDS nodes' `[tier]` additions, and `args` more.
pub(crate) fn tier_cluster(
    dir: &Path,
    proxy: &tier::testing::proxy::FaultProxy,
    (mds, ds): (usize, usize),
    extra: &str,
    args: &[&str],
) -> crate::common::cluster::Cluster {
    let url = format!("{}/{}", proxy.endpoint(), crate::tier_cache::BUCKET);
    let path = dir.join("tier-extra.toml");
    std::fs::write(&path, extra).expect("extra config");
    let path = path.to_string_lossy().into_owned();
    let mut all = vec!["--s3", &url, "--mds-extra-config", &path];
    all.extend_from_slice(args);
    crate::common::cluster::Cluster::start_nodes_env(
        dir,
        mds,
        ds,
        &all,
        &[
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
        ],
    )
}

/// One MDS node and three data servers with `FLASH_MIB` of flash each, uploading 1 MiB
/// objects a second after a change and erasure-coding files a second after their last.
fn encoding_tier_cluster(
    dir: &Path,
    proxy: &tier::testing::proxy::FaultProxy,
) -> crate::common::cluster::Cluster {
    tier_cluster(
        dir,
        proxy,
        (1, 3),
        &format!("upload_after_seconds = 1\nobject_mib = 1\nflash_capacity_mib = {FLASH_MIB}\n"),
        &["--encode-after", "1"],
    )
}

#[test]
fn on_data_servers_mirrored_and_erasure_coded_files_leave_flash_and_come_back_for_a_write() {
    use crate::common::ec::{data_status, read_file, read_file_with, write_open};
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let (_moto, proxy, store) = s3(&rt);
    let cl = encoding_tier_cluster(dir.path(), &proxy);
    let write = |path: &str, d: &[u8]| {
        let c = cl.client(true);
        let (f, ino) = write_open(&cl, &c, path, d);
        cl.rt.block_on(c.close(&f)).expect("close");
        let _ = cl.rt.block_on(c.shutdown());
        ino
    };

    // An erasure-coded file (2+1 on three data servers), then pinned to the bucket: its
    // shards go, and a write brings it back as fresh mirrors.
    let enc = data(4_000_000, 61);
    let enc_ino = write("/enc", &enc);
    wait_for(60, "the file erasure-coded", || {
        data_status(&cl)["encoded_files"] == 1
    });
    // Pinned by the operator (`cfs admin tier pin`), as `setfattr` from a client would.
    let pin = |path: &str, pin: &str| {
        std::process::Command::new(BIN)
            .args([
                "admin",
                "tier",
                "pin",
                path,
                pin,
                "--config",
                &cl.mds_toml(),
            ])
            .output()
            .expect("cfs admin tier pin")
    };
    let bad = pin("/enc", "tape");
    assert!(
        !bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("not a pin"),
        "{bad:?}"
    );
    assert!(!pin("/nowhere", "s3").status.success());
    let ok = pin("/enc", "s3");
    assert!(ok.status.success(), "{ok:?}");
    let took = wait_for(60, "the pinned, encoded file evicted", || {
        cluster_tier(&cl)["evicted_files"] == 1
    });
    eprintln!("encoded file evicted {took:?} after its pin");
    wait_for(30, "its shards dropped", || {
        crate::common::ec::shard_counts(&cl, 3) == vec![0, 0, 0]
    });
    same(
        "/enc from the bucket",
        &read_file(&cl, "/enc", enc.len()),
        &enc,
    );

    // Mirrored files (each under the encoder's minimum) until every data server has been past
    // 80 % of its 8 MiB: files leave until it is under 60 %. Each data server admits writes
    // up to its capacity and no further (past it they wait for eviction), and files land
    // unevenly, so its use is looked at after every file, and its highest is what counts.
    let cap = FLASH_MIB << 20;
    let mut full = vec![0u64; 3];
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut inos: Vec<u64> = Vec::new();
    while files.len() < 40 && full.iter().any(|u| u * 100 <= cap * 80) {
        let i = files.len();
        let (p, d) = (format!("/m{i}"), data(1_000_000, 70 + i as u8));
        inos.push(write(&p, &d));
        files.push((p, d));
        for (i, most) in full.iter_mut().enumerate() {
            let used = ds_used(&cl, i + 1);
            assert!(
                used <= cap,
                "ds{} holds {used} bytes, past its flash",
                i + 1
            );
            *most = (*most).max(used);
        }
    }
    assert!(
        full.iter().all(|u| u * 100 > cap * 80),
        "the test fills every data server past 80 %: {full:?}"
    );
    // A data server measured past the high watermark is emptied until under the low one; one
    // that was past it only between two of its measures may have been brought back under
    // it by the others' evictions (files are on two of the three), and is left there.
    let mut seen = (Vec::new(), serde_json::Value::Null);
    let emptied = |seen: &mut (Vec<u64>, serde_json::Value)| {
        *seen = (
            (1..=3).map(|i| ds_used(&cl, i)).collect(),
            cluster_tier(&cl),
        );
        seen.0.iter().all(|u| u * 100 <= cap * 80)
            && seen.0.iter().any(|u| u * 100 <= cap * 60)
            && seen.1["flash_draining_places"] == 0
    };
    let started = std::time::Instant::now();
    while !emptied(&mut seen) {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(90),
            "the data servers emptied under the low watermark within 90 s: {:?} of {cap}; {}",
            seen.0,
            seen.1
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let took = started.elapsed();
    let after: Vec<u64> = (1..=3).map(|i| ds_used(&cl, i)).collect();
    let t = cluster_tier(&cl);
    eprintln!("eviction on data servers: {full:?} → {after:?} bytes of {cap} in {took:?}; {t}");
    assert!(t["evicted_files"].as_u64() > Some(1), "{t}");
    // Nothing left flash that the bucket does not hold exactly.
    let b = crate::tier_cache::bucket_at(&rt, &store, "cfs");
    for ((p, d), ino) in files.iter().zip(&inos) {
        assert!(
            from_bucket(&b, *ino, d.len()).as_deref() == Some(&d[..]),
            "{p} in the bucket"
        );
    }
    assert!(from_bucket(&b, enc_ino, enc.len()).as_deref() == Some(&enc[..]));
    // Every file reads back byte-exact, evicted or not; through a pNFS client too (its
    // LAYOUTGET answers LAYOUTTRYLATER, and it reads through the MDS).
    for (p, d) in &files {
        same(p, &read_file(&cl, p, d.len()), d);
    }
    same(
        "/m0 through a pNFS client",
        &read_file_with(&cl, cl.client(true), "/m0", files[0].1.len()),
        &files[0].1,
    );
    let t = cluster_tier(&cl);
    assert!(t["bucket_read_bytes"].as_u64() > Some(0), "{t}");

    // A write into the evicted, once encoded file waits until it is back on fresh mirrors.
    let patch = data(5000, 99);
    {
        let c = cl.client(false);
        let f = cl
            .rt
            .block_on(c.open_path("/enc", OPEN4_SHARE_ACCESS_BOTH, None))
            .expect("open");
        cl.rt
            .block_on(c.write_all(&f, 1_234_567, &patch, StableHow4::FileSync4))
            .expect("write to an evicted file");
        cl.rt.block_on(c.close(&f)).expect("close");
        let _ = cl.rt.block_on(c.shutdown());
    }
    let mut want = enc.clone();
    want[1_234_567..1_234_567 + patch.len()].copy_from_slice(&patch);
    same(
        "/enc written after its restore",
        &read_file(&cl, "/enc", want.len()),
        &want,
    );
}

/// Shards take room on a data server's flash as mirrors do: an encode that would take one past
/// its capacity waits, the file staying mirrored and readable, and flash is never past it.
#[test]
fn on_data_servers_an_encode_that_does_not_fit_in_flash_waits() {
    use crate::common::ec::{data_status, read_file, write_open};
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let (_moto, proxy, _store) = s3(&rt);
    let cl = encoding_tier_cluster(dir.path(), &proxy);
    // 6 MB mirrored on two of the three data servers (72 % of their 8 MiB): its 2+1 shards
    // would add 3 MB on each, 9 MB. The MDS begins no encode whose shards do not fit by the
    // data servers' last measures, and one begun before they measured the mirrors is refused
    // shard by shard at their capacity (seen here: 98 % at most, then the shards dropped).
    let big = data(6_000_000, 17);
    let c = cl.client(true);
    let (f, _) = write_open(&cl, &c, "/big", &big);
    cl.rt.block_on(c.close(&f)).expect("close");
    let _ = cl.rt.block_on(c.shutdown());
    let cap = FLASH_MIB << 20;
    let started = std::time::Instant::now();
    let mut most = [0u64; 3];
    while started.elapsed() < std::time::Duration::from_secs(12) {
        for (i, m) in most.iter_mut().enumerate() {
            let used = ds_used(&cl, i + 1);
            assert!(
                used <= cap,
                "ds{} holds {used} bytes, past its flash",
                i + 1
            );
            *m = (*m).max(used);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    eprintln!("most used on each data server over 12 s: {most:?} of {cap}");
    assert_eq!(
        most.iter().filter(|u| **u >= 6_000_000).count(),
        2,
        "two mirrors of /big: {most:?}"
    );
    let st = data_status(&cl);
    assert_eq!(st["encoded_files"], 0, "an encode past the flash: {st}");
    same("/big, mirrored", &read_file(&cl, "/big", big.len()), &big);
}
