//! The cross-shard snapshot create (`namespace::snaps`, `docs/plans/snapshots.md` step 3): a
//! snapshot taken while tasks create, rename and link across shards is the namespace at one
//! instant inside the create's call; a create stopped at each of its steps (as if its node
//! died) becomes, after a restart, a whole snapshot or none; and a dead coordinator's freeze
//! ends within two seconds.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use meta_core::snap::{inode_at, readdir_at, SnapId, SnapState};

use super::*;
use crate::namespace::snaps::SnapStep;

/// What a directory holds at a snapshot (or now): name → (ino, size, nlink) of each entry.
type Listing = BTreeMap<Vec<u8>, (u64, u64, u32)>;

/// `dir`'s listing at `snap`, each entry's inode read on its own shard.
pub(super) fn listing_at(ns: &Namespace, snap: SnapId, dir: u64) -> Listing {
    let view = ns.snapshot().unwrap();
    let mut entries = Vec::new();
    let mut after = 0;
    loop {
        let (page, eof) = view
            .with(ShardId::of_ino(dir), |st| {
                readdir_at(st, snap, dir, after, 7)
            })
            .unwrap()
            .unwrap_or_else(|e| panic!("listing of {dir} at {snap}: {e:?}"));
        after = page.last().map_or(after, |e| e.cookie);
        entries.extend(page);
        if eof {
            break;
        }
    }
    let mut out = Listing::new();
    for e in entries {
        let i = view
            .with(ShardId::of_ino(e.ino), |st| inode_at(st, snap, e.ino))
            .unwrap()
            .unwrap_or_else(|err| panic!("inode {} at {snap}: {err:?}", e.ino))
            .unwrap_or_else(|| panic!("entry {:?} names inode {} absent at {snap}", e.name, e.ino));
        out.insert(e.name, (e.ino, i.size, i.nlink));
    }
    out
}

/// `dir`'s listing now.
pub(super) fn listing_now(ns: &Namespace, dir: u64) -> Listing {
    let (entries, _) = ns.snapshot().unwrap().readdir(dir, 0, 100_000).unwrap();
    entries
        .into_iter()
        .map(|e| {
            let i = ns.getattr(e.ino).unwrap();
            (e.name, (e.ino, i.size, i.nlink))
        })
        .collect()
}

/// Makes directory `name` in the root on another shard than `not` (spread directories land
/// on a shard chosen by a hash of the name: a few tries find one).
pub(super) async fn mkdir_off(ns: &Namespace, name: &str, not: Option<ShardId>) -> u64 {
    for n in 0..64 {
        let d = mk(ns, ROOT_INO, &format!("{name}.{n}"), FileKind::Directory).await;
        if Some(ShardId::of_ino(d)) != not {
            return d;
        }
    }
    panic!("no directory off {not:?}");
}

// ---- Concurrent creates, renames and links: one instant ----

/// One worker's territory: two directories on different shards, so its renames and links
/// between them are cross-shard transactions. Workers touch only their own, so their
/// operations commute, and the namespace after any set of per-worker prefixes is the same
/// in any order.
struct Territory {
    a: u64,
    b: u64,
}

/// What a worker's two directories hold: (A's listing, B's listing).
type Pair = (Listing, Listing);

/// Operation `k` of a worker, and what its directories hold after it (`model`: before it;
/// `files`: each cycle's file). A cycle of six: create A/f, write it, rename it to B
/// (cross-shard), link it as B/l (cross-shard: the inode lives on A's shard), rename B/f to
/// A/m (cross-shard), unlink B/l (cross-shard). Every step leaves a state no other prefix
/// leaves, so a view names its prefix, and half a rename or link matches none.
fn worker_op(t: &Territory, k: u64, files: &mut BTreeMap<u64, u64>, model: &mut Pair) -> Command {
    let i = k / 6;
    let name = |p: &str| format!("{p}{i}").into_bytes();
    let time = super::t(k as i64);
    let (a, b) = (&mut model.0, &mut model.1);
    match k % 6 {
        0 => create(t.a, &format!("f{i}"), FileKind::Regular),
        1 => {
            let ino = files[&i];
            a.get_mut(&name("f")).unwrap().1 = k + 1;
            Command::Write {
                ino,
                end_offset: k + 1,
                time,
                writes: 1,
            }
        }
        2 => {
            let v = a.remove(&name("f")).unwrap();
            b.insert(name("f"), v);
            Command::Rename {
                src_parent: t.a,
                src_name: name("f"),
                src: files[&i],
                dst_parent: t.b,
                dst_name: name("f"),
                dst: None,
                time,
            }
        }
        3 => {
            let v = b.get_mut(&name("f")).unwrap();
            v.2 = 2;
            let v = *v;
            b.insert(name("l"), v);
            Command::Link {
                ino: files[&i],
                parent: t.b,
                name: name("l"),
                time,
            }
        }
        4 => {
            let v = b.remove(&name("f")).unwrap();
            a.insert(name("m"), v);
            Command::Rename {
                src_parent: t.b,
                src_name: name("f"),
                src: files[&i],
                dst_parent: t.a,
                dst_name: name("m"),
                dst: None,
                time,
            }
        }
        _ => {
            b.remove(&name("l"));
            a.get_mut(&name("m")).unwrap().2 = 1;
            Command::Remove {
                parent: t.b,
                name: name("l"),
                child: files[&i],
                time,
            }
        }
    }
}

/// A worker's record: what its directories held after each prefix (`states[p]`: after `p`
/// operations), and when each operation began and returned.
struct Ran {
    states: Vec<Pair>,
    spans: Vec<(Instant, Instant)>,
}

async fn worker(ns: Namespace, t: Territory, ops: u64) -> (Territory, Ran) {
    let mut files = BTreeMap::new();
    let mut model: Pair = Default::default();
    let mut ran = Ran {
        states: vec![model.clone()],
        spans: Vec::new(),
    };
    for k in 0..ops {
        let cmd = worker_op(&t, k, &mut files, &mut model);
        let began = Instant::now();
        let out = ns
            .execute(cmd.clone())
            .await
            .unwrap_or_else(|e| panic!("{cmd:?}: {e:?}"));
        ran.spans.push((began, Instant::now()));
        if k % 6 == 0 {
            let ino = out.inode.expect("created").ino;
            files.insert(k / 6, ino);
            model
                .0
                .insert(format!("f{}", k / 6).into_bytes(), (ino, 0, 1));
        }
        ran.states.push(model.clone());
    }
    (t, ran)
}

#[test]
fn sharded_cut_is_a_prefix() {
    const WORKERS: usize = 8;
    const OPS: u64 = 72;
    const SNAPS: usize = 5;
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let ns = open_shards(&rt, dir.path(), 8);
    rt.block_on(async {
        let mut territories = Vec::new();
        for w in 0..WORKERS {
            let a = mkdir_off(&ns, &format!("a{w}"), None).await;
            let b = mkdir_off(&ns, &format!("b{w}"), Some(ShardId::of_ino(a))).await;
            territories.push(Territory { a, b });
        }
        let tasks: Vec<_> = (territories.into_iter())
            .map(|t| tokio::spawn(worker(ns.clone(), t, OPS)))
            .collect();
        // Snapshots while the workers run, each with the interval of its call.
        let mut taken: Vec<(SnapId, Instant, Instant)> = Vec::new();
        for n in 0..SNAPS {
            tokio::time::sleep(Duration::from_millis(20 + 15 * n as u64)).await;
            let began = Instant::now();
            let snap = ns
                .create_snapshot(format!("s{n}").as_bytes(), ROOT_INO, 3600)
                .await
                .unwrap();
            taken.push((snap, began, Instant::now()));
        }
        let mut ran = Vec::new();
        for t in tasks {
            ran.push(t.await.unwrap());
        }
        // The workers' last state is the live one.
        for (t, r) in &ran {
            let now = (listing_now(&ns, t.a), listing_now(&ns, t.b));
            assert_eq!(&now, r.states.last().unwrap());
        }
        let mut inside = 0;
        for (snap, began, returned) in taken {
            // The prefix each worker's directories show at the snapshot.
            let mut prefixes = Vec::new();
            for (w, (t, r)) in ran.iter().enumerate() {
                let seen = (listing_at(&ns, snap, t.a), listing_at(&ns, snap, t.b));
                let p = (r.states.iter())
                    .position(|s| *s == seen)
                    .unwrap_or_else(|| {
                        panic!(
                            "snapshot {snap}: worker {w}'s directories match no prefix: {seen:?}"
                        )
                    });
                prefixes.push(p);
            }
            eprintln!(
                "snapshot {snap}: create took {:?}; the workers' prefixes {prefixes:?}",
                returned - began
            );
            // One instant T inside the call: every operation in began before T, every one
            // out returned after it. So: the latest start of one in, and the call's start,
            // come before the earliest return of one out, and the call's return.
            let mut latest_in = began;
            let mut earliest_out = returned;
            for ((_, r), p) in ran.iter().zip(&prefixes) {
                if let Some(b) = r.spans[..*p].iter().map(|s| s.0).max() {
                    latest_in = latest_in.max(b);
                }
                if let Some(e) = r.spans[*p..].iter().map(|s| s.1).min() {
                    earliest_out = earliest_out.min(e);
                }
            }
            assert!(
                latest_in <= earliest_out,
                "snapshot {snap} ({prefixes:?}) is no instant of its call: an operation in \
                 began {:?} after one out returned",
                latest_in - earliest_out
            );
            inside += prefixes
                .iter()
                .filter(|p| **p > 0 && (**p as u64) < OPS)
                .count();
        }
        // The snapshots fell among the operations, not all before or after them.
        assert!(inside > 0, "no snapshot was taken while the workers ran");
        let listed = ns.list_snapshots().await.unwrap();
        assert_eq!(listed.len(), SNAPS);
        assert!((listed.iter()).all(|(_, r)| matches!(r.state, SnapState::Ready { .. })));
    });
    // No shard is left frozen or unthawed, and nothing of a transaction is left behind.
    let view = ns.snapshot().unwrap();
    view.each(|st| {
        assert!(st.snaps.freeze.is_none());
        assert!(!st.snaps.unthawed());
        assert!(st.txns.values().all(|e| e.prepared.is_none()));
    })
    .unwrap();
}

// ---- A create stopped at each step ----

/// The state of `snap`'s record once it is settled (ready or aborted) and no shard is
/// frozen or waits for its thaw; `Err` with what is seen before.
fn is_settled(ns: &Namespace, snap: SnapId) -> Result<SnapState, String> {
    let mut busy = false;
    ns.snapshot()
        .unwrap()
        .each(|st| busy |= st.snaps.freeze.is_some() || st.snaps.unthawed())
        .unwrap();
    let state = ns.snapshots().unwrap().get(&snap).map(|r| r.state);
    match state {
        Some(s @ (SnapState::Ready { .. } | SnapState::Aborted { .. })) if !busy => Ok(s),
        _ => Err(format!("{state:?}, a shard busy: {busy}")),
    }
}

/// Waits (up to 10 s) for `is_settled`.
pub(super) async fn settled(ns: &Namespace, snap: SnapId) -> SnapState {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match is_settled(ns, snap) {
            Ok(s) => return s,
            Err(seen) => assert!(Instant::now() < deadline, "snapshot {snap}: {seen}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn halted_at_each_step_is_whole_or_none() {
    let rt = rt();
    for step in SnapStep::ALL {
        let dir = tempfile::tempdir().unwrap();
        let ns = open_shards(&rt, dir.path(), 8);
        let (d, e, before, snap) = rt.block_on(async {
            let d = mkdir_off(&ns, "d", None).await;
            let e = mkdir_off(&ns, "e", Some(ShardId::of_ino(d))).await;
            for n in 0..6 {
                mk(&ns, d, &format!("f{n}"), FileKind::Regular).await;
            }
            let f0 = ns.lookup(d, b"f0").unwrap().ino;
            ns.execute(Command::Link {
                ino: f0,
                parent: e,
                name: b"l0".to_vec(),
                time: t(2),
            })
            .await
            .unwrap();
            let before = (listing_now(&ns, d), listing_now(&ns, e));
            let snap = ns
                .snap_attempt(b"s", ROOT_INO, 3600, &|| true, Some(step))
                .await
                .unwrap_or_else(|e| panic!("{step:?}: {e:?}"));
            (d, e, before, snap)
        });
        // The node dies here; another opens the same store.
        drop(ns);
        let ns = open_shards(&rt, dir.path(), 8);
        let state = rt.block_on(settled(&ns, snap));
        let view = ns.snapshot().unwrap();
        if step.decided() {
            assert!(
                matches!(state, SnapState::Ready { .. }),
                "{step:?}: {state:?}"
            );
            view.each(|st| assert!(st.snaps.cuts.contains_key(&snap), "{step:?}"))
                .unwrap();
        } else {
            assert!(
                matches!(state, SnapState::Aborted { .. }),
                "{step:?}: {state:?}"
            );
            view.each(|st| assert!(st.snaps.cuts.is_empty(), "{step:?}"))
                .unwrap();
        }
        drop(view);
        rt.block_on(async {
            // Changes flow again, across shards too, and a decided snapshot keeps the tree
            // it cut.
            let f1 = ns.lookup(d, b"f1").unwrap().ino;
            let mv = Command::Rename {
                src_parent: d,
                src_name: b"f1".to_vec(),
                src: f1,
                dst_parent: e,
                dst_name: b"g1".to_vec(),
                dst: None,
                time: t(3),
            };
            ns.execute(mv).await.unwrap();
            mk(&ns, d, "late", FileKind::Regular).await;
            if step.decided() {
                let seen = (listing_at(&ns, snap, d), listing_at(&ns, snap, e));
                assert_eq!(seen, before, "{step:?}");
            }
            // The name is free again after an abort, taken after a snapshot.
            let again = ns.create_snapshot(b"s", ROOT_INO, 3600).await;
            if step.decided() {
                assert_eq!(again, Err(FsError::Exists), "{step:?}");
            } else {
                let again = again.unwrap();
                assert!(again > snap);
                assert_eq!(listing_at(&ns, again, d), listing_now(&ns, d));
            }
        });
        // The rename's decision is forgotten in the background: compared with the log once
        // it is, not while its `TxnForget` is between the log and the state.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut txns = 0;
            ns.snapshot()
                .unwrap()
                .each(|st| txns += st.txns.len())
                .unwrap();
            if txns == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{step:?}: transactions left behind"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        each_shard_is_its_log(&ns);
    }
}

#[test]
fn a_lapsed_data_quiesce_gives_the_snapshot_up_before_the_decision() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let ns = open_shards(&rt, dir.path(), 4);
    rt.block_on(async {
        let d = mkdir_off(&ns, "d", None).await;
        let lapsed = ns
            .create_snapshot_while(b"s", ROOT_INO, 3600, &|| false)
            .await;
        assert!(matches!(lapsed, Err(FsError::Unavailable(_))), "{lapsed:?}");
        let (id, rec) = ns
            .list_snapshots()
            .await
            .unwrap()
            .into_iter()
            .next_back()
            .expect("the attempt's record");
        assert!(matches!(rec.state, SnapState::Aborted { .. }), "{rec:?}");
        ns.snapshot()
            .unwrap()
            .each(|st| assert!(st.snaps.cuts.is_empty() && st.snaps.freeze.is_none()))
            .unwrap();
        // Changes flow, and the name is free for a create whose quiesce holds.
        mk(&ns, d, "after", FileKind::Regular).await;
        let s = ns
            .create_snapshot_while(b"s", ROOT_INO, 3600, &|| true)
            .await
            .unwrap();
        assert!(s > id);
    });
}

// ---- A dead coordinator's freeze ----

#[test]
fn a_dead_coordinators_freeze_ends_within_two_seconds() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let ns = open_shards(&rt, dir.path(), 8);
    rt.block_on(async {
        let d = mkdir_off(&ns, "d", None).await;
        let e = mkdir_off(&ns, "e", Some(ShardId::of_ino(d))).await;
        for (n, step) in [SnapStep::Frozen, SnapStep::Drained, SnapStep::Decided]
            .into_iter()
            .enumerate()
        {
            let name = format!("s{n}");
            let snap = ns
                .snap_attempt(name.as_bytes(), ROOT_INO, 3600, &|| true, Some(step))
                .await
                .unwrap();
            // Its coordinator is gone: a create in a frozen directory waits for recovery.
            let halted = Instant::now();
            let f = mk(&ns, d, &format!("f{n}"), FileKind::Regular).await;
            let waited = halted.elapsed();
            eprintln!("{step:?}: a change waited {waited:?} for the dead coordinator's freeze");
            assert!(
                waited < Duration::from_secs(2),
                "{step:?}: a change waited {waited:?} for a dead coordinator's freeze"
            );
            // Enough that the wait was the freeze's, not nothing.
            assert!(waited > Duration::from_millis(500), "{step:?}: {waited:?}");
            // And the snapshot is whole or none, as decided.
            let state = settled(&ns, snap).await;
            assert_eq!(step.decided(), matches!(state, SnapState::Ready { .. }));
            if step.decided() {
                assert!(!listing_at(&ns, snap, d).contains_key(format!("f{n}").as_bytes()));
            }
            // A cross-shard change goes through once the thaw is recovered.
            let mv = Command::Rename {
                src_parent: d,
                src_name: format!("f{n}").into_bytes(),
                src: f,
                dst_parent: e,
                dst_name: format!("g{n}").into_bytes(),
                dst: None,
                time: t(5),
            };
            ns.execute(mv).await.unwrap();
        }
    });
}
