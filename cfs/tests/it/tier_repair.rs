//! Issue 45, test (f): a site lost whole, rebuilt from the bucket. A server in cache mode
//! (moto, a real S3 server) holds a tree; once `cfs admin status` says the bucket holds all of
//! it (no file queued, upload and metadata lag 0), the server is killed (-9) and its data
//! directory wiped; `cfs repair --from-s3` rebuilds it from the bucket alone, and the server
//! started on it serves every file byte-exact (from the bucket, then flash again), with the
//! owners, modes, times and symlink target it had.
use std::time::{Duration, Instant};

use client::{Client, ClientConfig, SetAttrs, Stat};
use proto::nfs4::{Nfstime4, Settime4, OPEN4_SHARE_ACCESS_READ};

use crate::common::ec::wait_for;
use crate::common::{cfs_env, Server};
use crate::tier_cache::{admin_toml, data, put, rt, s3, BUCKET};
use crate::tier_evict::tier_status;

/// The tree: (path, bytes) of each regular file.
fn files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("/small", data(1000, 11)),
        ("/a/multi", data(2_500_000, 12)),
        ("/a/b/mid", data(70_000, 13)),
        ("/a/b/c/big", data(3_300_000, 14)),
        ("/empty", Vec::new()),
    ]
}

const DIRS: [&str; 3] = ["/a", "/a/b", "/a/b/c"];
const LINK: (&str, &str) = ("/a/link", "b/mid");

/// (path, mode, owner, group, mtime seconds) set on the tree.
const ATTRS: [(&str, u32, &str, &str, i64); 6] = [
    ("/small", 0o600, "1001", "2001", 1_600_000_000),
    ("/a/multi", 0o640, "1002", "2002", 1_600_000_100),
    ("/a/b/mid", 0o444, "1003", "2003", 1_600_000_200),
    ("/a/b/c/big", 0o755, "1004", "2004", 1_600_000_300),
    ("/a/b", 0o750, "1005", "2005", 1_600_000_400),
    ("/empty", 0o604, "1006", "2006", 1_600_000_500),
];

fn client(rt: &tokio::runtime::Runtime, srv: &Server) -> Client {
    rt.block_on(Client::connect(ClientConfig::new(srv.addr)))
        .expect("connect")
}

fn stat(rt: &tokio::runtime::Runtime, c: &Client, path: &str) -> Stat {
    rt.block_on(c.stat_path(path)).expect("stat").1
}

fn read_all(rt: &tokio::runtime::Runtime, c: &Client, path: &str, len: usize) -> Vec<u8> {
    rt.block_on(async {
        let f = c
            .open_path(path, OPEN4_SHARE_ACCESS_READ, None)
            .await
            .expect("open");
        let mut out = Vec::new();
        while out.len() < len + 1 {
            let (d, eof) = c.read(&f, out.len() as u64, 1 << 20).await.expect("read");
            out.extend_from_slice(&d);
            if eof || d.is_empty() {
                break;
            }
        }
        c.close(&f).await.expect("close");
        out
    })
}

/// What is compared before and after: kind, size, mode, owners, mtime.
fn attrs(s: &Stat) -> String {
    format!(
        "{:?} size {} mode {:o} {}:{} mtime {}.{}",
        s.ftype, s.size, s.mode, s.owner, s.group, s.mtime.seconds, s.mtime.nseconds
    )
}

#[test]
fn every_directory_wiped_cfs_repair_from_s3_brings_the_tree_back_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let (moto, proxy, store) = s3(&rt);
    // Flash of 1 GiB, whatever the disk's fullness: the evictor must not take back what the
    // reads bring to flash.
    let config = admin_toml(dir.path(), &proxy.endpoint())
        .replace("[admin]", "flash_capacity_mib = 1024\n[admin]");
    let mut srv = Server::start(dir.path(), Some(&config));
    let cfg = srv.config.clone().expect("config");

    // The tree: directories, files of several sizes, a symlink; owners, modes, times.
    let c = client(&rt, &srv);
    rt.block_on(async {
        for d in DIRS {
            let (parent, name) = c.lookup_parent(d).await.expect("parent");
            c.mkdir(&parent, name, 0o755).await.expect("mkdir");
        }
        let (parent, name) = c.lookup_parent(LINK.0).await.expect("parent");
        c.symlink(&parent, name, LINK.1).await.expect("symlink");
    });
    for (p, d) in files() {
        put(&rt, srv.addr, p, &d);
    }
    rt.block_on(async {
        for (p, mode, owner, group, mtime) in ATTRS {
            let fh = c.lookup_path(p).await.expect("lookup");
            let a = SetAttrs {
                mode: Some(mode),
                owner: Some(owner.into()),
                group: Some(group.into()),
                mtime: Some(Settime4::ClientTime(Nfstime4 {
                    seconds: mtime,
                    nseconds: 7,
                })),
                ..Default::default()
            };
            c.setattr(&fh, &a, None).await.expect("setattr");
        }
    });
    let mut paths: Vec<&str> = files().iter().map(|(p, _)| *p).collect();
    paths.extend(DIRS);
    paths.push(LINK.0);
    let before: Vec<String> = paths.iter().map(|p| attrs(&stat(&rt, &c, p))).collect();
    let _ = rt.block_on(c.shutdown());

    // A small create load (a file every ~100 ms): the metadata lag stays about a second.
    let mut lags = Vec::new();
    for i in 0..30u8 {
        put(&rt, srv.addr, &format!("/load-{i}"), &data(200, i));
        if i % 5 == 4 {
            lags.push(tier_status(&cfg)["metadata_lag_seconds"].as_u64());
        }
    }
    eprintln!("metadata lag under a create load, sampled (s): {lags:?}");
    assert!(
        lags.iter().all(|l| l.is_some_and(|l| l <= 5)),
        "metadata lag bounded under a create load: {lags:?}"
    );

    // Everything in the bucket: no file queued, no upload lag, no metadata lag, twice in a
    // row with the shipper's count unchanged (so no ship was due between the two looks).
    let t0 = Instant::now();
    let mut last = None;
    wait_for(90, "the bucket holding the whole tree", || {
        let t = tier_status(&cfg);
        let settled = t["queued_files"] == 0
            && t["uploading"] == 0
            && t["upload_lag_seconds"] == 0
            && t["metadata_lag_seconds"] == 0;
        let now = Some(t["metadata_checkpoints"].clone());
        let same = settled && last == now;
        last = if settled { now } else { None };
        if !same {
            std::thread::sleep(Duration::from_millis(1000));
        }
        same
    });
    eprintln!("tree and metadata in the bucket after {:?}", t0.elapsed());

    // The site is lost: kill -9, data directory gone.
    srv.kill();
    std::fs::remove_dir_all(dir.path().join("data")).expect("wipe");

    let repaired = Instant::now();
    let url = format!("{}/{BUCKET}", moto.endpoint());
    let data_dir = dir.path().join("data");
    let repair = || {
        cfs_env(
            dir.path(),
            &[
                "repair",
                "--from-s3",
                &url,
                "--prefix",
                "site",
                "--data",
                &data_dir.to_string_lossy(),
            ],
            &[
                ("AWS_ACCESS_KEY_ID", "testing"),
                ("AWS_SECRET_ACCESS_KEY", "testing"),
            ],
        )
    };
    let out = repair();
    let took = repaired.elapsed();
    eprintln!("cfs repair --from-s3 in {took:?}:\n{}", out.text());
    assert!(out.ok(), "cfs repair: {}\n{}", out.stderr, out.text());
    assert!(
        out.text().contains("every file's bytes")
            && out.text().contains("acknowledged-data loss window"),
        "the repair reports nothing lost, and the window: {}",
        out.text()
    );
    // A second repair into the same directory is refused, nothing touched.
    let again = repair();
    assert!(
        !again.ok() && again.stderr.contains("empty data directory"),
        "{}",
        again.stderr
    );

    srv.restart();
    let c = client(&rt, &srv);
    let after: Vec<String> = paths.iter().map(|p| attrs(&stat(&rt, &c, p))).collect();
    for ((p, b), a) in paths.iter().zip(&before).zip(&after) {
        assert_eq!(a, b, "{p}: attributes after the repair");
    }
    let (fh, _) = rt.block_on(c.stat_path(LINK.0)).expect("symlink");
    assert_eq!(rt.block_on(c.readlink(&fh)).expect("readlink"), LINK.1);
    let t = tier_status(&cfg);
    assert!(
        t["evicted_files"].as_u64() >= Some(4),
        "every non-empty file read from the bucket: {t}"
    );
    for (p, d) in files() {
        let got = read_all(&rt, &c, p, d.len());
        assert!(
            got == d,
            "{p}: {} bytes back, {} written",
            got.len(),
            d.len()
        );
    }
    for i in 0..30u8 {
        let p = format!("/load-{i}");
        assert!(read_all(&rt, &c, &p, 200) == data(200, i), "{p}");
    }
    let t = tier_status(&cfg);
    assert!(t["bucket_read_bytes"].as_u64() > Some(0), "{t}");
    // What was read comes back to flash.
    let refilled = wait_for(60, "every file back on flash", || {
        tier_status(&cfg)["evicted_files"] == 0
    });
    eprintln!("flash refilled {refilled:?} after the reads");
    for (p, d) in files() {
        assert!(read_all(&rt, &c, p, d.len()) == d, "{p} from flash");
    }
    let _ = rt.block_on(c.shutdown());
    drop(store);
}
