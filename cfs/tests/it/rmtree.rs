//! `cfs admin rmtree` against a real `cfs server`: the name is gone as soon as the command
//! returns, the contents (inodes and file bytes) are reclaimed in the background, and `/`, a
//! file and a missing path are refused with a sentence that says so.
use crate::common;

use client::{Client, ClientConfig, CreateMode, Nfsstat4, SetAttrs, StableHow4};
use common::{cfs, Server};
use proto::nfs4::OPEN4_SHARE_ACCESS_BOTH;
use std::path::Path;
use std::time::{Duration, Instant};

/// Files in the tree, over its directories.
const FILES: usize = 300;

fn status(dir: &Path, config: &str) -> serde_json::Value {
    let o = cfs(dir, &["admin", "status", "--json", "--config", config]);
    assert!(o.ok(), "{}", o.stderr);
    serde_json::from_slice(&o.stdout).expect("status JSON")
}

/// (inodes in use, bytes of files) as the MDS counts them.
fn usage(v: &serde_json::Value) -> (u64, u64) {
    let n = &v["mds"]["namespace"];
    (
        n["files"].as_u64().expect("files"),
        n["bytes"].as_u64().expect("bytes"),
    )
}

#[test]
fn rmtree_removes_the_name_at_once_and_reclaims_the_contents() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let data = dir.join("data");
    let srv = Server::start(
        dir,
        Some(&format!(
            "data = {:?}\n[admin]\nlisten = \"127.0.0.1:0\"\n",
            data.to_string_lossy()
        )),
    );
    let config = dir.join("cfs.toml").to_string_lossy().into_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !data.join("admin.addr").exists() {
        assert!(Instant::now() < deadline, "no admin.addr written");
        std::thread::sleep(Duration::from_millis(50));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let c = rt.block_on(async {
        let c = Client::connect(ClientConfig::new(srv.addr)).await.unwrap();
        let root = c.root().clone();
        // A plain file at the top, for the refusal of a non-directory.
        let f = c
            .open(
                &root,
                "plain",
                OPEN4_SHARE_ACCESS_BOTH,
                Some(CreateMode::Guarded(SetAttrs::mode(0o644))),
            )
            .await
            .unwrap();
        c.close(&f).await.unwrap();
        c
    });
    let before = usage(&status(dir, &config));

    // /t: three levels of directories, FILES files of 1 KiB over them, a symlink.
    let made = Instant::now();
    rt.block_on(async {
        let root = c.root().clone();
        let top = c.mkdir(&root, "t", 0o755).await.unwrap();
        let mut dirs = vec![top.clone()];
        for i in 0..3 {
            let a = c.mkdir(&top, &format!("a{i}"), 0o755).await.unwrap();
            let b = c.mkdir(&a, "b", 0o755).await.unwrap();
            let cc = c.mkdir(&b, "c", 0o755).await.unwrap();
            dirs.extend([a, b, cc]);
        }
        c.symlink(&top, "link", "/plain").await.unwrap();
        for n in 0..FILES {
            let d = &dirs[n % dirs.len()];
            let f = c
                .open(
                    d,
                    &format!("f{n}"),
                    OPEN4_SHARE_ACCESS_BOTH,
                    Some(CreateMode::Guarded(SetAttrs::mode(0o644))),
                )
                .await
                .unwrap();
            c.write(&f, 0, &[7u8; 1024], StableHow4::FileSync4)
                .await
                .unwrap();
            c.close(&f).await.unwrap();
        }
    });
    eprintln!("made {FILES} files in {:?}", made.elapsed());
    let (files, bytes) = usage(&status(dir, &config));
    assert!(files >= before.0 + FILES as u64 + 10, "{files} inodes");
    assert_eq!(bytes, before.1 + FILES as u64 * 1024);

    // Refusals first, with what they refuse.
    for (path, says) in [
        ("/", "refusing to remove /"),
        ("/plain", "is not a directory"),
        ("/nope", "no such file or directory"),
        ("/t/../t", "absolute path"),
    ] {
        let o = cfs(dir, &["admin", "rmtree", path, "--config", &config]);
        assert!(!o.ok(), "rmtree {path} succeeded");
        assert!(o.stderr.contains(says), "rmtree {path}: {}", o.stderr);
    }

    let started = Instant::now();
    let o = cfs(dir, &["admin", "rmtree", "/t", "--config", &config]);
    assert!(o.ok(), "{}", o.stderr);
    let answered = started.elapsed();
    assert!(o.text().contains("/t removed"), "{}", o.text());
    // Gone for clients as soon as the command returned.
    rt.block_on(async {
        let e = c.lookup(c.root(), "t").await.unwrap_err();
        assert_eq!(e.status(), Some(Nfsstat4::Noent));
        let names: Vec<String> = c
            .readdir(c.root())
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, vec!["plain".to_string()]);
    });
    // Once more: it is gone.
    let o = cfs(dir, &["admin", "rmtree", "/t", "--config", &config]);
    assert!(
        o.stderr.contains("no such file or directory"),
        "{}",
        o.stderr
    );

    // The contents go in the background: every inode and byte of the tree comes back.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut emptied = None;
    loop {
        let v = status(dir, &config);
        let now = usage(&v);
        let removing = &v["mds"]["removing_trees"];
        if removing["directories"] == 0 {
            // The namespace's part is done; the files' data follows through the reaper.
            emptied.get_or_insert_with(|| started.elapsed());
        }
        if now == before && removing["directories"] == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not reclaimed: {now:?} against {before:?}, {removing}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "rmtree answered in {answered:?}; the tree of {} entries: no detached directory left \
         {emptied:?} after it began, every inode and byte back after {:?}",
        FILES + 11,
        started.elapsed()
    );
    // The server still serves the rest.
    rt.block_on(async {
        let root = c.root().clone();
        c.lookup(&root, "plain").await.unwrap();
        c.mkdir(&root, "t", 0o755).await.unwrap();
    });
    drop(srv);
}
