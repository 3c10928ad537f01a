//! The client library's typed operations against a real `cfs server`.
use crate::common;
use client::{Client, ClientConfig, CreateMode, Error, LockKind, Nfsstat4, SetAttrs, StableHow4};
use common::*;
use proto::nfs4::{OPEN4_SHARE_ACCESS_BOTH, OPEN4_SHARE_ACCESS_READ};
use std::time::Duration;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn connect(srv: &Server) -> Client {
    Client::connect(ClientConfig::new(srv.addr)).await.unwrap()
}

fn status(e: Error) -> Nfsstat4 {
    e.status()
        .unwrap_or_else(|| panic!("not an NFS error: {e}"))
}

#[test]
fn namespace_operations() {
    let t = tempfile::tempdir().unwrap();
    let srv = Server::start(t.path(), None);
    rt().block_on(async {
        tokio::time::timeout(Duration::from_secs(60), async {
            let c = connect(&srv).await;
            assert!(c.slots() > 1, "one slot only");
            assert!(c.has_back_channel());
            let root = c.root().clone();
            let d = c.mkdir(&root, "d", 0o750).await.unwrap();
            assert_eq!(c.getattr(&d).await.unwrap().mode, 0o750);
            assert_eq!(
                status(c.mkdir(&root, "d", 0o755).await.unwrap_err()),
                Nfsstat4::Exist
            );

            // GUARDED refuses an existing name; UNCHECKED opens it.
            let create = || CreateMode::Guarded(SetAttrs::mode(0o600));
            let f = c
                .open(&d, "f", OPEN4_SHARE_ACCESS_BOTH, Some(create()))
                .await
                .unwrap();
            assert_eq!(f.stat.mode, 0o600);
            let e = c
                .open(&d, "f", OPEN4_SHARE_ACCESS_BOTH, Some(create()))
                .await
                .unwrap_err();
            assert_eq!(status(e), Nfsstat4::Exist);
            let w = c
                .write(&f, 0, b"hello world", StableHow4::Unstable4)
                .await
                .unwrap();
            assert_eq!(w.count, 11);
            assert_eq!(c.commit(&f.fh, 0, 0).await.unwrap(), w.verifier);
            let (data, eof) = c.read(&f, 6, 100).await.unwrap();
            assert_eq!((data.as_slice(), eof), (&b"world"[..], true));
            c.setattr(
                &f.fh,
                &SetAttrs {
                    size: Some(5),
                    ..Default::default()
                },
                Some(f.stateid),
            )
            .await
            .unwrap();
            assert_eq!(c.getattr(&f.fh).await.unwrap().size, 5);
            c.close(&f).await.unwrap();

            // EXCLUSIVE4_1: the same verifier is an idempotent retry, another is EXIST.
            let v = *b"verifier";
            let x = CreateMode::Exclusive(v, SetAttrs::default());
            let f1 = c
                .open(&d, "x", OPEN4_SHARE_ACCESS_BOTH, Some(x.clone()))
                .await
                .unwrap();
            let f2 = c
                .open(&d, "x", OPEN4_SHARE_ACCESS_BOTH, Some(x))
                .await
                .unwrap();
            assert_eq!(f1.fh, f2.fh);
            let other = CreateMode::Exclusive(*b"another!", SetAttrs::default());
            let e = c
                .open(&d, "x", OPEN4_SHARE_ACCESS_BOTH, Some(other))
                .await
                .unwrap_err();
            assert_eq!(status(e), Nfsstat4::Exist);
            c.close(&f1).await.unwrap();
            c.close(&f2).await.unwrap();

            // rename, link, symlink, remove.
            let e2 = c.mkdir(&root, "e", 0o755).await.unwrap();
            c.rename(&d, "f", &e2, "g").await.unwrap();
            assert_eq!(
                status(c.lookup(&d, "f").await.unwrap_err()),
                Nfsstat4::Noent
            );
            let g = c.lookup_path("/e/g").await.unwrap();
            c.link(&g, &d, "hard").await.unwrap();
            assert_eq!(c.getattr(&g).await.unwrap().nlink, 2);
            let l = c.symlink(&d, "sym", "../e/g").await.unwrap();
            assert_eq!(c.readlink(&l).await.unwrap(), "../e/g");
            let names: Vec<String> = c
                .readdir(&d)
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.name)
                .collect();
            let mut sorted = names.clone();
            sorted.sort();
            assert_eq!(sorted, ["hard", "sym", "x"]);
            assert_eq!(
                status(c.remove(&root, "d").await.unwrap_err()),
                Nfsstat4::Notempty
            );
            for n in ["hard", "sym", "x"] {
                c.remove(&d, n).await.unwrap();
            }
            c.remove(&root, "d").await.unwrap();
            c.shutdown().await.unwrap();
        })
        .await
        .expect("timed out");
    });
}

#[test]
fn concurrent_io_on_many_slots_and_locks_between_clients() {
    let t = tempfile::tempdir().unwrap();
    let srv = Server::start(t.path(), None);
    rt().block_on(async {
        tokio::time::timeout(Duration::from_secs(60), async {
            let c = connect(&srv).await;
            let root = c.root().clone();
            let f = std::sync::Arc::new(
                c.open(
                    &root,
                    "par",
                    OPEN4_SHARE_ACCESS_BOTH,
                    Some(CreateMode::Unchecked(SetAttrs::mode(0o644))),
                )
                .await
                .unwrap(),
            );
            // 64 writes of 64 KiB issued at once: they queue on the slot table.
            let mut tasks = Vec::new();
            for i in 0..64u64 {
                let (c, f) = (c.clone(), f.clone());
                tasks.push(tokio::spawn(async move {
                    let data = random_bytes(65536, i + 1);
                    c.write_all(&f, i * 65536, &data, StableHow4::Unstable4)
                        .await
                        .unwrap();
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            c.commit(&f.fh, 0, 0).await.unwrap();
            for i in [0u64, 17, 63] {
                let (data, _) = c.read_full(&f, i * 65536, 65536).await.unwrap();
                assert_eq!(data, random_bytes(65536, i + 1));
            }

            let c2 = connect(&srv).await;
            // A read-only OPEN leaves no delegation behind (we decline them): another
            // client's write OPEN must not wait for a recall.
            let r = c2
                .open(&root, "par", OPEN4_SHARE_ACCESS_READ, None)
                .await
                .unwrap();
            c2.close(&r).await.unwrap();
            let w = tokio::time::timeout(
                Duration::from_secs(10),
                c.open(&root, "par", OPEN4_SHARE_ACCESS_BOTH, None),
            )
            .await
            .expect("write OPEN waited on a delegation")
            .unwrap();
            c.close(&w).await.unwrap();

            // A write lock held by one client is denied to another, until unlocked.
            let f2 = c2
                .open(&root, "par", OPEN4_SHARE_ACCESS_READ, None)
                .await
                .unwrap();
            c.lock(&f, LockKind::Write, 0, 100, false).await.unwrap();
            let e = c2
                .lock(&f2, LockKind::Read, 50, 10, false)
                .await
                .unwrap_err();
            assert_eq!(status(e), Nfsstat4::Denied);
            assert!(c2
                .lock_conflicts(&f2.fh, LockKind::Read, 0, 1, b"probe")
                .await
                .unwrap());
            c2.lock(&f2, LockKind::Read, 100, 10, false).await.unwrap();
            c.unlock(&f, LockKind::Write, 0, 100).await.unwrap();
            c2.lock(&f2, LockKind::Read, 50, 10, false).await.unwrap();
            c2.unlock(&f2, LockKind::Read, 0, u64::MAX).await.unwrap();
            c2.close(&f2).await.unwrap();
            c.close(&f).await.unwrap();
            c2.shutdown().await.unwrap();
            c.shutdown().await.unwrap();
        })
        .await
        .expect("timed out");
    });
}

#[test]
fn idle_client_keeps_its_lease() {
    let t = tempfile::tempdir().unwrap();
    let srv = Server::start(t.path(), Some("lease_seconds = 5\ngrace_seconds = 1\n"));
    rt().block_on(async {
        tokio::time::timeout(Duration::from_secs(30), async {
            let c = connect(&srv).await;
            assert_eq!(c.lease(), Duration::from_secs(5));
            let root = c.root().clone();
            let f = c
                .open(
                    &root,
                    "held",
                    OPEN4_SHARE_ACCESS_BOTH,
                    Some(CreateMode::Unchecked(SetAttrs::mode(0o644))),
                )
                .await
                .unwrap();
            // Three leases of silence: only the background SEQUENCEs keep the state alive.
            tokio::time::sleep(c.lease() * 5 / 2).await;
            c.write(&f, 0, b"still mine", StableHow4::FileSync4)
                .await
                .unwrap();
            c.close(&f).await.unwrap();
            c.shutdown().await.unwrap();
        })
        .await
        .expect("timed out");
    });
}
