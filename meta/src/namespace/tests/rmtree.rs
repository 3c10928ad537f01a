//! Lazy removal of a tree (`Command::Detach`, the reclaimer in `namespace::rmtree`): the name
//! goes at once, the contents are reclaimed in the background across shards and restarts,
//! and afterwards nothing is left of the tree: no inode, no byte, no transaction, no entry.

use std::time::{Duration, Instant};

use super::*;

/// 8 shards, directories spread over them, transactions recovered quickly; `reclaim`: whether
/// the reclaimer runs.
fn open_spread(rt: &tokio::runtime::Runtime, dir: &std::path::Path, reclaim: bool) -> Namespace {
    let opts = Options {
        shards: 8,
        txn_stale: Duration::from_millis(300),
        spread_directories: Some(true),
        reclaim_trees: reclaim,
        ..Options::default()
    };
    rt.block_on(Namespace::open_with(dir, opts))
        .expect("open namespace")
}

async fn write(ns: &Namespace, ino: u64, bytes: u64) {
    ns.execute(Command::Write {
        ino,
        end_offset: bytes,
        time: Time::now(),
        writes: 1,
    })
    .await
    .unwrap();
}

/// What the tree holds, to check it is all gone later.
struct Tree {
    root: u64,
    dirs: Vec<u64>,
    files: Vec<u64>,
}

/// /t: 4 levels of directories, 3 subdirectories and `per_dir` files (of 100 bytes) in each
/// of the first levels, a symlink, and a hard link to /keep (which must survive).
async fn make_tree(ns: &Namespace, per_dir: usize, keep: u64) -> Tree {
    let root = mk(ns, ROOT_INO, "t", FileKind::Directory).await;
    let mut tree = Tree {
        root,
        dirs: vec![root],
        files: Vec::new(),
    };
    let mut level = vec![root];
    for depth in 0..3 {
        let mut next = Vec::new();
        for &d in &level {
            for f in 0..per_dir {
                let ino = mk(ns, d, &format!("f{f}"), FileKind::Regular).await;
                write(ns, ino, 100).await;
                tree.files.push(ino);
            }
            for s in 0..3 {
                let sub = mk(ns, d, &format!("d{depth}.{s}"), FileKind::Directory).await;
                tree.dirs.push(sub);
                next.push(sub);
            }
        }
        level = next;
    }
    // The deepest level: a file each.
    for &d in &level {
        let ino = mk(ns, d, "leaf", FileKind::Regular).await;
        tree.files.push(ino);
    }
    let sl = ns
        .execute(Command::Create {
            parent: root,
            name: b"sl".to_vec(),
            kind: FileKind::Symlink {
                target: b"/keep".to_vec(),
            },
            mode: 0o777,
            uid: 0,
            gid: 0,
            time: Time::now(),
            how: CreateHow::Guarded,
        })
        .await
        .unwrap();
    tree.files.push(sl.inode.unwrap().ino);
    ns.execute(Command::Link {
        ino: keep,
        parent: tree.dirs[1],
        name: b"hard".to_vec(),
        time: Time::now(),
    })
    .await
    .unwrap();
    tree
}

/// Waits until no orphan directory is left, then forgets the orphaned files as the MDS's
/// reaper does once their data is gone (the namespace has no data path).
async fn reclaimed(ns: &Namespace, within: Duration) -> Duration {
    let start = Instant::now();
    while !ns.detached().unwrap().is_empty() {
        assert!(
            start.elapsed() < within,
            "still detached: {:?}",
            ns.detached()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = start.elapsed();
    let orphans = ns.orphans().unwrap();
    if !orphans.is_empty() {
        ns.execute(Command::ForgetOrphans { inos: orphans })
            .await
            .unwrap();
    }
    // A transaction's last step (`TxnForget`) is sent in the background.
    while !ns.snapshot().unwrap().dump().unwrap().txns.is_empty() {
        assert!(start.elapsed() < within, "transactions left");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    took
}

/// Nothing of `tree` is left, no entry points at a missing inode, no transaction is open,
/// and the counters are `before`'s again.
fn nothing_left(ns: &Namespace, tree: &Tree, before: StatFs) {
    let d = ns.snapshot().unwrap().dump().unwrap();
    for ino in tree.dirs.iter().chain(&tree.files) {
        assert!(
            !d.inodes.contains_key(ino),
            "inode {ino} of the tree is left"
        );
    }
    for ((dir, name), (ino, _)) in &d.dirents {
        assert!(
            d.inodes.contains_key(dir),
            "entries of a missing directory {dir}"
        );
        assert!(
            d.inodes.contains_key(ino),
            "{dir}/{} names a missing inode {ino}",
            String::from_utf8_lossy(name)
        );
    }
    for dir in d.cookies.keys() {
        assert!(
            d.inodes.contains_key(dir),
            "a cookie counter of a missing directory {dir}"
        );
    }
    assert!(d.orphans.is_empty(), "orphans left: {:?}", d.orphans);
    assert!(d.txns.is_empty(), "transactions left: {:?}", d.txns.keys());
    assert_eq!(ns.statfs().unwrap(), before);
    assert_eq!(d.inodes.len() as u64, before.files);
}

#[test]
fn a_detached_tree_is_gone_at_once_and_reclaimed_across_shards() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let ns = open_spread(&rt, dir.path(), true);
    rt.block_on(async {
        let keep = mk(&ns, ROOT_INO, "keep", FileKind::Regular).await;
        write(&ns, keep, 7).await;
        let before = ns.statfs().unwrap();
        let root_nlink = ns.getattr(ROOT_INO).unwrap().nlink;
        let tree = make_tree(&ns, 5, keep).await;
        // Some of its directories live on other shards than their parents.
        let shards: std::collections::BTreeSet<ShardId> =
            tree.dirs.iter().map(|d| ShardId::of_ino(*d)).collect();
        assert!(
            shards.len() > 2,
            "the tree's directories on {shards:?} only"
        );
        assert!(ns.statfs().unwrap().files > before.files + 100);

        let out = ns.detach(ROOT_INO, b"t", tree.root).await.unwrap();
        assert_eq!(out.inode.unwrap().nlink, 0);
        // The name is gone at once, for a client's lookup too; the root counts one link less.
        assert_eq!(ns.lookup(ROOT_INO, b"t"), Err(FsError::NotFound));
        assert_eq!(ns.lookup_settled(ROOT_INO, b"t"), Err(FsError::NotFound));
        assert_eq!(ns.getattr(ROOT_INO).unwrap().nlink, root_nlink);
        let took = reclaimed(&ns, Duration::from_secs(60)).await;
        eprintln!(
            "reclaimed {} directories and {} files in {took:?}",
            tree.dirs.len(),
            tree.files.len()
        );
        // The hard link's other name keeps the file.
        let k = ns.lookup(ROOT_INO, b"keep").unwrap();
        assert_eq!((k.ino, k.nlink, k.size), (keep, 1, 7));
        nothing_left(&ns, &tree, before);
    });
}

#[test]
fn only_a_directory_is_detached_and_only_by_the_server() {
    let mut s = init();
    let d = made(&mut s, create(ROOT_INO, "t", FileKind::Directory));
    let f = made(&mut s, create(d, "f", FileKind::Regular));
    let detach = |parent, name: &str, child| Command::Detach {
        parent,
        name: name.as_bytes().to_vec(),
        child,
        time: t(5),
    };
    let before = s.dump();
    assert_eq!(step(&mut s, &detach(d, "f", f)), Err(FsError::NotDir));
    assert_eq!(
        step(&mut s, &detach(ROOT_INO, "x", d)),
        Err(FsError::NotFound)
    );
    assert_eq!(
        step(&mut s, &detach(ROOT_INO, "t", f)),
        Err(FsError::Changed)
    );
    let as_root = Command::As {
        cred: crate::namespace::perm::Cred::root(),
        cmd: Box::new(detach(ROOT_INO, "t", d)),
    };
    assert_eq!(step(&mut s, &as_root), Err(FsError::Invalid));
    assert_eq!(s.dump(), before, "a refused detach leaves nothing behind");

    let out = step(&mut s, &detach(ROOT_INO, "t", d)).unwrap();
    assert_eq!(out.effects, vec![Effect::Detached(d)]);
    assert_eq!(child(&s, ROOT_INO, "t"), 0);
    assert_eq!(s.inodes[&ROOT_INO].nlink, 2);
    assert_eq!(s.inodes[&d].nlink, 0);
    // A detached directory gets no new names, gives none away, and goes only once empty.
    assert_eq!(
        step(&mut s, &create(d, "new", FileKind::Regular)),
        Err(FsError::NotFound)
    );
    let out_of = Command::Rename {
        src_parent: d,
        src_name: b"f".to_vec(),
        src: f,
        dst_parent: ROOT_INO,
        dst_name: b"saved".to_vec(),
        dst: None,
        time: t(6),
    };
    assert_eq!(step(&mut s, &out_of), Err(FsError::NotFound));
    assert_eq!(
        step(&mut s, &Command::Forget { ino: d }),
        Err(FsError::NotEmpty)
    );
    // The reaper's batch leaves directories alone.
    step(&mut s, &Command::ForgetOrphans { inos: vec![d] }).unwrap();
    assert!(s.inodes.contains_key(&d));
    let unlink = Command::Unlink {
        parent: d,
        name: b"f".to_vec(),
        child: f,
        time: t(7),
    };
    step(&mut s, &unlink).unwrap();
    let out = step(&mut s, &Command::Forget { ino: d }).unwrap();
    assert_eq!(out.effects, vec![Effect::Freed(d)]);
    step(&mut s, &Command::ForgetOrphans { inos: vec![f] }).unwrap();
    assert_eq!(s.dump().inodes.len(), 1);
    assert_eq!(s.meta[state::meta::FILES], 1);
    assert!(s.orphans.is_empty() && !s.cookies.contains_key(&d));
}

/// Each pass starts where the last one stopped: entries whose steps keep failing (inodes on a
/// shard without a quorum) do not take every pass's budget, so the rest still goes.
#[test]
fn a_pass_starts_where_the_last_one_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let ns = open_spread(&rt, dir.path(), false);
    rt.block_on(async {
        let t = mk(&ns, ROOT_INO, "t", FileKind::Directory).await;
        let all = crate::namespace::rmtree::BATCH + 44;
        let creates = (0..all).map(|i| {
            let ns = &ns;
            async move { mk(ns, t, &format!("f{i}"), FileKind::Regular).await }
        });
        futures::future::join_all(creates).await;
        ns.detach(ROOT_INO, b"t", t).await.unwrap();
        // Two passes' work, neither carried out: as if every step of the first had failed.
        let names =
            |work: Vec<crate::namespace::rmtree::Work>| -> std::collections::BTreeSet<Vec<u8>> {
                work.into_iter()
                    .flat_map(|w| w.entries.into_iter().map(|e| e.0))
                    .collect()
            };
        let first = names(ns.reclaim_work());
        let second = names(ns.reclaim_work());
        assert_eq!(first.len(), crate::namespace::rmtree::BATCH);
        assert_eq!(second.len(), crate::namespace::rmtree::BATCH);
        assert_eq!(
            first.union(&second).count(),
            all,
            "the second pass did not get to the entries the first left"
        );
    });
}

#[test]
fn a_restart_in_the_middle_of_a_removal_finishes_it() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    // The reclaimer stopped: the removal is left after one batch, as a kill -9 would leave it.
    let ns = open_spread(&rt, dir.path(), false);
    let (tree, before) = rt.block_on(async {
        let keep = mk(&ns, ROOT_INO, "keep", FileKind::Regular).await;
        let before = ns.statfs().unwrap();
        // More entries than one batch takes.
        let tree = make_tree(&ns, 30, keep).await;
        ns.detach(ROOT_INO, b"t", tree.root).await.unwrap();
        assert!(ns.reclaim_pass().await > 0);
        let left: u64 = ns.detached().unwrap().iter().map(|(_, n)| n).sum();
        assert!(left > 0, "one batch did it all");
        // A transaction's last step (`TxnForget`) runs in the background and holds the
        // namespace open meanwhile.
        let start = Instant::now();
        while !ns.snapshot().unwrap().dump().unwrap().txns.is_empty() {
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "transactions left"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (tree, before)
    });
    drop(ns);
    let ns = open_spread(&rt, dir.path(), true);
    rt.block_on(async {
        assert_eq!(ns.lookup(ROOT_INO, b"t"), Err(FsError::NotFound));
        reclaimed(&ns, Duration::from_secs(60)).await;
        nothing_left(&ns, &tree, before);
    });
    // And durable: a second restart finds nothing to do.
    drop(ns);
    let ns = open_spread(&rt, dir.path(), false);
    assert!(ns.detached().unwrap().is_empty());
    nothing_left(&ns, &tree, ns.statfs().unwrap());
}

/// How fast a large tree goes (run by hand: `cargo test --release -p mds --lib
/// reclaim_rate -- --ignored --nocapture`): `DIRS` directories of `PER_DIR` files each, on one
/// node with 8 shards.
#[test]
#[ignore]
fn reclaim_rate() {
    const DIRS: usize = 40;
    const PER_DIR: usize = 1000;
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let ns = open_spread(&rt, dir.path(), true);
    rt.block_on(async {
        let before = ns.statfs().unwrap();
        let top = mk(&ns, ROOT_INO, "t", FileKind::Directory).await;
        let made = Instant::now();
        for d in 0..DIRS {
            let sub = mk(&ns, top, &format!("d{d}"), FileKind::Directory).await;
            // Concurrently, as many clients would: the creates share log entries.
            for chunk in (0..PER_DIR).collect::<Vec<_>>().chunks(256) {
                let creates = chunk.iter().map(|f| {
                    let ns = ns.clone();
                    async move { mk(&ns, sub, &format!("f{f}"), FileKind::Regular).await }
                });
                futures::future::join_all(creates).await;
            }
        }
        let entries = DIRS * (PER_DIR + 1) + 1;
        eprintln!("made {entries} entries in {:?}", made.elapsed());
        // A client's creates meanwhile (the tree's directories are spread over every shard,
        // so some share the probe's): how long each waits behind the reclaimer's batches.
        let probe_dir = mk(&ns, ROOT_INO, "probe", FileKind::Directory).await;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let probe = {
            let (ns, stop) = (ns.clone(), stop.clone());
            tokio::spawn(async move {
                let mut waits = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let at = Instant::now();
                    let name = format!("p{}", waits.len());
                    let ino = mk(&ns, probe_dir, &name, FileKind::Regular).await;
                    waits.push(at.elapsed());
                    let rm = Command::Unlink {
                        parent: probe_dir,
                        name: name.into_bytes(),
                        child: ino,
                        time: Time::now(),
                    };
                    ns.execute(rm).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                waits
            })
        };
        ns.detach(ROOT_INO, b"t", top).await.unwrap();
        let took = reclaimed(&ns, Duration::from_secs(600)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut waits = probe.await.unwrap();
        waits.sort();
        eprintln!(
            "reclaimed {entries} entries in {took:?} ({:.0} entries/s); a client's create \
             meanwhile: median {:?}, worst {:?} over {}",
            entries as f64 / took.as_secs_f64(),
            waits[waits.len() / 2],
            waits[waits.len() - 1],
            waits.len()
        );
        let orphans = ns.orphans().unwrap();
        if !orphans.is_empty() {
            ns.execute(Command::ForgetOrphans { inos: orphans })
                .await
                .unwrap();
        }
        let after = ns.statfs().unwrap();
        // The probe's directory is left.
        assert_eq!((after.files - 1, after.bytes), (before.files, before.bytes));
    });
}
