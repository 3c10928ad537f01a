//! Snap-to-object (issue 48, plan step 12) against a real S3 server (moto) and a real
//! `cfs server` with a tier: a snapshot past its retention has its unique bytes (the image of
//! a file overwritten after the cut, and a removed file's own bytes) moved to the bucket and
//! deleted from flash; it still reads through `.snapshot` (from the bucket) and restores from
//! there byte-exact, also after the site is lost whole and rebuilt with `cfs repair --from-s3`;
//! deleted, its objects leave the bucket.
use std::path::Path;
use std::time::Duration;

use client::{Client, ClientConfig};

use crate::common::ec::wait_for;
use crate::common::{cfs, Server};
use crate::http_client;
use crate::tier_cache::{admin_toml, bucket, data, from_bucket, put, rt, s3, BUCKET};
use crate::tier_evict::read_back;
use crate::tier_repair::{bucket_holds_everything, repair_from_s3};

/// The generation snap-to-object sends an image object's pieces under (`u64::MAX`: out of
/// the reach of files' generations).
const IMAGE_GEN: u64 = u64::MAX;

/// Where the single node's chunk store keeps object `id`.
fn on_flash(data: &Path, id: u64) -> bool {
    data.join("chunks/objects")
        .join(format!("{:02x}", id & 0xff))
        .join(format!("{id:016x}"))
        .exists()
}

/// Snapshot `s` of `/d`, kept 2 s (the API takes seconds; the CLI days), through the admin
/// listener of the server `config` (in `dir/cfs.toml`) describes.
fn snapshot_kept_2s(rt: &tokio::runtime::Runtime, dir: &Path, config: &str) {
    let cfg_s = dir.join("cfs.toml").to_string_lossy().into_owned();
    let o = cfs(dir, &["admin", "token", "--config", &cfg_s]);
    assert!(o.ok(), "{}", o.stderr);
    let token = o.text().trim().to_string();
    // `admin_toml`'s listener: `listen = "127.0.0.1:PORT"` under `[admin]`.
    let admin: std::net::SocketAddr = config
        .split("[admin]")
        .nth(1)
        .and_then(|a| a.split('"').nth(1))
        .expect("the admin listener in the config")
        .parse()
        .expect("admin address");
    let body = r#"{"path": "/d", "name": "s", "retain_secs": 2}"#;
    let r = rt
        .block_on(http_client::request(
            admin,
            "POST",
            "/api/v1/snapshots",
            Some(&token),
            Some(body),
            Duration::from_secs(20),
        ))
        .expect("create");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

fn mkdir_d(rt: &tokio::runtime::Runtime, srv: &Server) {
    rt.block_on(async {
        let c = Client::connect(ClientConfig::new(srv.addr))
            .await
            .expect("connect");
        let root = c.lookup_path("/").await.expect("root");
        c.mkdir(&root, "d", 0o755).await.expect("mkdir /d");
        let _ = c.shutdown().await;
    });
}

/// A server killed after it sent an image's pieces to the bucket and before it recorded them
/// (crash point `snap-archive-sent`), whose snapshot is then deleted before any pass sends the
/// image again: no record names those pieces, and the reclaim of the image deletes them with
/// its flash copy (`snap_archive::delete_strays`).
#[test]
fn pieces_an_archive_cut_short_left_go_when_the_snapshot_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let (_moto, proxy, store) = s3(&rt);
    let config = admin_toml(dir.path(), &proxy.endpoint());
    let fp = dir.path().join("failpoint");
    std::fs::write(&fp, "snap-archive-sent\n").expect("arm");
    let fp_s = fp.to_string_lossy().into_owned();
    let mut srv = Server::start_env(
        dir.path(),
        Some(&config),
        &[("CFS_FAILPOINT_FILE", fp_s.as_str())],
    );
    let cfg_s = srv
        .config
        .clone()
        .expect("config")
        .to_string_lossy()
        .into_owned();
    let data_dir = dir.path().join("data");
    mkdir_d(&rt, &srv);
    let old_a = data(2_500_000, 81);
    let a = put(&rt, srv.addr, "/d/a", &old_a);
    snapshot_kept_2s(&rt, dir.path(), &config);
    put(&rt, srv.addr, "/d/a", &data(1_000, 82));

    // Past its retention the pass sends the image and the server dies before the record.
    let exited = |srv: &mut Server| {
        srv.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))))
    };
    wait_for(90, "the server killed at snap-archive-sent", || {
        exited(&mut srv)
    });
    let strays: Vec<u64> = bucket(&rt, &store)
        .keys()
        .filter(|(i, g, _)| *g == IMAGE_GEN && *i != a)
        .map(|(i, _, _)| *i)
        .collect();
    let x = *strays.first().expect("the image's pieces in the bucket");
    assert!(on_flash(&data_dir, x), "the image is still on flash");

    // Restarted and the snapshot deleted, still armed throughout: a pass that sends the image
    // again (one that began before the delete) kills the server again, which is restarted,
    // so the image's pieces are never recorded.
    let restart = |srv: &mut Server| {
        if exited(srv) {
            srv.child = None;
            srv.restart();
        }
    };
    let mut deleted = false;
    for _ in 0..5 {
        restart(&mut srv);
        let o = cfs(
            dir.path(),
            &["admin", "snapshot", "delete", "s", "--config", &cfg_s],
        );
        if o.ok() {
            deleted = true;
            break;
        }
        wait_for(30, "the server killed again", || exited(&mut srv));
    }
    assert!(deleted, "the snapshot deleted between two passes");
    let took = wait_for(60, "the image's pieces and flash copy deleted", || {
        restart(&mut srv);
        !bucket(&rt, &store)
            .keys()
            .any(|(i, g, _)| *g == IMAGE_GEN && *i == x)
            && !on_flash(&data_dir, x)
    });
    std::fs::write(&fp, "").expect("disarm");
    restart(&mut srv);
    eprintln!("stray pieces of image {x} deleted {took:?} after the snapshot");
    assert!(
        read_back(&rt, &srv, "/d/a", 1_000) == data(1_000, 82),
        "the live file unchanged"
    );
    drop(srv);
}

#[test]
fn a_snapshot_past_its_retention_moves_its_bytes_to_the_bucket_and_restores_from_there() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let (moto, proxy, store) = s3(&rt);
    let config = admin_toml(dir.path(), &proxy.endpoint());
    let mut srv = Server::start(dir.path(), Some(&config));
    let cfg = srv.config.clone().expect("config");
    let cfg_s = cfg.to_string_lossy().into_owned();
    let admin = |args: &[&str]| {
        let mut all = vec!["admin", "snapshot"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--config", &cfg_s]);
        cfs(dir.path(), &all)
    };
    let data_dir = dir.path().join("data");

    mkdir_d(&rt, &srv);
    let old_a = data(3_000_000, 71);
    let old_b = data(1_500_000, 72);
    let a = put(&rt, srv.addr, "/d/a", &old_a);
    let b = put(&rt, srv.addr, "/d/b", &old_b);

    snapshot_kept_2s(&rt, dir.path(), &config);

    // After the cut: /d/a overwritten (its old bytes become an image object), /d/b removed
    // (its own object becomes the snapshot's).
    let new_a = data(2_000_000, 73);
    put(&rt, srv.addr, "/d/a", &new_a);
    rt.block_on(async {
        let c = Client::connect(ClientConfig::new(srv.addr))
            .await
            .expect("connect");
        let d = c.lookup_path("/d").await.expect("/d");
        c.remove(&d, "b").await.expect("remove /d/b");
        let _ = c.shutdown().await;
    });

    // Past its retention the unique bytes go to the bucket and leave flash.
    let mut image_a = None;
    let took = wait_for(
        90,
        "the snapshot's unique bytes in the bucket, off flash",
        || {
            let objects = bucket(&rt, &store);
            let images: Vec<u64> = objects
                .keys()
                .filter(|(_, g, _)| *g == IMAGE_GEN)
                .map(|(i, _, _)| *i)
                .collect();
            image_a = images.iter().copied().find(|i| {
                *i != a
                    && *i != b
                    && from_bucket(&objects, *i, old_a.len()).as_deref() == Some(&old_a[..])
            });
            let b_there = from_bucket(&objects, b, old_b.len()).as_deref() == Some(&old_b[..]);
            image_a.is_some_and(|x| !on_flash(&data_dir, x)) && b_there && !on_flash(&data_dir, b)
        },
    );
    let x = image_a.expect("an image object of /d/a");
    eprintln!("snap-to-object: image {x} of /d/a and /d/b's own object {b} moved in {took:?}");
    assert!(on_flash(&data_dir, a), "the live file stays");
    let o = admin(&["list"]);
    assert!(o.ok(), "{}", o.stderr);
    assert!(o.text().contains("object store"), "{}", o.text());

    // Read through .snapshot (from the bucket), and restored from there.
    assert!(read_back(&rt, &srv, "/d/.snapshot/s/a", old_a.len()) == old_a);
    assert!(read_back(&rt, &srv, "/d/.snapshot/s/b", old_b.len()) == old_b);
    let o = admin(&["restore", "s", "--to", "/r"]);
    assert!(o.ok(), "{}{}", o.text(), o.stderr);
    assert!(o.text().contains("restored to /r"), "{}", o.text());
    assert!(
        read_back(&rt, &srv, "/r/a", old_a.len()) == old_a,
        "restored byte-exact"
    );
    assert!(
        read_back(&rt, &srv, "/r/b", old_b.len()) == old_b,
        "restored byte-exact"
    );
    assert!(
        read_back(&rt, &srv, "/d/a", new_a.len()) == new_a,
        "the live file unchanged"
    );

    // The site lost whole once the bucket holds everything: `cfs repair --from-s3` brings
    // the snapshot back with the namespace (its record, cuts and images are shard state, which
    // the shipper sends), and it reads and restores from the bucket as before.
    bucket_holds_everything(std::slice::from_ref(&cfg), 0);
    srv.kill();
    std::fs::remove_dir_all(&data_dir).expect("wipe");
    let url = format!("{}/{BUCKET}", moto.endpoint());
    let out = repair_from_s3(dir.path(), &url, &data_dir);
    assert!(out.ok(), "cfs repair: {}\n{}", out.stderr, out.text());
    srv.restart();
    let o = admin(&["list"]);
    assert!(
        o.ok() && o.text().contains(" s "),
        "{}{}",
        o.text(),
        o.stderr
    );
    assert!(
        read_back(&rt, &srv, "/d/.snapshot/s/a", old_a.len()) == old_a,
        "the snapshot reads its bytes from the bucket after the site was rebuilt"
    );
    assert!(read_back(&rt, &srv, "/d/.snapshot/s/b", old_b.len()) == old_b);
    assert!(read_back(&rt, &srv, "/d/a", new_a.len()) == new_a);
    let o = admin(&["restore", "s", "--to", "/r2"]);
    assert!(o.ok(), "{}{}", o.text(), o.stderr);
    assert!(read_back(&rt, &srv, "/r2/a", old_a.len()) == old_a);
    assert!(read_back(&rt, &srv, "/r2/b", old_b.len()) == old_b);

    // Deleted, the snapshot's objects leave the bucket.
    let o = admin(&["delete", "s"]);
    assert!(o.ok(), "{}", o.stderr);
    wait_for(60, "the image objects deleted from the bucket", || {
        !bucket(&rt, &store)
            .keys()
            .any(|(i, g, _)| *g == IMAGE_GEN && (*i == x || *i == b))
    });
    drop(srv);
}
