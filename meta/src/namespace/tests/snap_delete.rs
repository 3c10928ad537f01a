//! Deleting snapshots (`namespace::snap_delete`, `docs/plans/snapshots.md` step 4): the
//! snapshots that remain show what they showed, whatever the order of the deletions, with
//! changes between them and restarts in the middle of a merge; a deleted snapshot leaves no
//! pre-image, cut or record behind; a delete racing a create. And two gaps of step 3's: creates
//! at the same moment are each whole, and a create on three replicas.

use std::time::{Duration, Instant};

use meta_core::snap::{SnapId, SnapState};
use meta_core::xattr::How;

use super::replicated::{three_open, until};
use super::snap_create::{mkdir_off, settled};
use super::snaps::{all_views, AllViews};
use super::*;

/// A small deterministic generator (xorshift64*), seeded per run and printed, so a failure
/// can be replayed by setting `CFS_TEST_SEED`.
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let seed = std::env::var("CFS_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        eprintln!("CFS_TEST_SEED={seed}");
        Rng(seed | 1)
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n.max(1)
    }
}

/// The files the churn made and has not removed: (directory, name, inode).
type Files = Vec<(u64, Vec<u8>, u64)>;

static NAMES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// `n` random changes in `dirs` (spread over shards): creates, renames (across shards when
/// the directories differ), unlinks, attribute changes, writes and extended attributes.
async fn churn(ns: &Namespace, dirs: &[u64], files: &mut Files, rng: &mut Rng, n: usize) {
    for _ in 0..n {
        // Names unique in every test's namespace: a counter of the whole test process.
        let k = NAMES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let time = t(k as i64);
        let pick = rng.below(6);
        if files.is_empty() || pick == 0 {
            let d = dirs[rng.below(dirs.len())];
            let name = format!("f{k}");
            let ino = mk(ns, d, &name, FileKind::Regular).await;
            files.push((d, name.into_bytes(), ino));
            continue;
        }
        let i = rng.below(files.len());
        let (d, name, ino) = files[i].clone();
        let cmd = match pick {
            1 => {
                let to = dirs[rng.below(dirs.len())];
                let new = format!("r{k}").into_bytes();
                files[i] = (to, new.clone(), ino);
                Command::Rename {
                    src_parent: d,
                    src_name: name,
                    src: ino,
                    dst_parent: to,
                    dst_name: new,
                    dst: None,
                    time,
                }
            }
            2 => {
                files.swap_remove(i);
                Command::Remove {
                    parent: d,
                    name,
                    child: ino,
                    time,
                }
            }
            3 => Command::SetAttr {
                ino,
                mode: Some(0o600 | (k as u32 & 0o77)),
                uid: None,
                gid: None,
                size: Some(k % 4096),
                atime: None,
                mtime: None,
                time,
            },
            4 => Command::SetXattr {
                ino,
                name: b"user.k".to_vec(),
                value: k.to_le_bytes().to_vec(),
                how: How::Either,
                time,
            },
            _ => Command::Write {
                ino,
                end_offset: k % 100_000,
                time,
                writes: 1,
            },
        };
        ns.execute(cmd.clone())
            .await
            .unwrap_or_else(|e| panic!("{cmd:?}: {e:?}"));
    }
}

/// `views` without those of snapshot `gone`.
fn without(views: &AllViews, gone: &[SnapId]) -> AllViews {
    (views.iter())
        .filter(|((_, s), _)| !gone.contains(s))
        .map(|(k, v)| (*k, v.clone()))
        .collect()
}

/// `got` equals `want`, else a panic naming the first view that differs (not all of them:
/// a view is long).
#[track_caller]
fn same(got: &AllViews, want: &AllViews, what: &str) {
    if got == want {
        return;
    }
    let keys: std::collections::BTreeSet<_> = got.keys().chain(want.keys()).collect();
    for k in keys {
        let (g, w) = (got.get(k), want.get(k));
        if g != w {
            panic!("{what}: (shard, snapshot) {k:?} shows\n{g:?}\nnot\n{w:?}");
        }
    }
}

/// How many pre-images each shard holds at `snap`, summed.
fn pre_images_at(ns: &Namespace, snap: SnapId) -> usize {
    let mut n = 0;
    ns.snapshot()
        .unwrap()
        .each(|st| n += (st.pre_by_snap.iter()).filter(|(s, _)| *s == snap).count())
        .unwrap();
    n
}

/// No trace of `snap` is left on any shard of `ns`'s replicas: no cut, no pre-image (in the
/// stored lists themselves, not only their index), no record.
fn no_trace(ns: &Namespace, snap: SnapId) {
    assert!(
        !ns.snapshots().unwrap().contains_key(&snap),
        "{snap}'s record"
    );
    ns.snapshot()
        .unwrap()
        .each(|st| {
            assert!(!st.snaps.cuts.contains_key(&snap), "{snap}'s cut");
            assert!(st.pre_inodes.values().all(|v| !v.contains_key(&snap)));
            assert!(st.pre_dirents.values().all(|v| !v.contains_key(&snap)));
            assert!(st.pre_xattrs.values().all(|v| !v.contains_key(&snap)));
            assert!(st.pre_dirindex.keys().all(|(_, _, s)| *s != snap));
            assert!(st.pre_by_snap.iter().all(|(s, _)| *s != snap));
        })
        .unwrap();
}

/// Waits (up to 10 s) until snapshot `snap`'s record is gone: every shard merged it away.
async fn gone(ns: &Namespace, snap: SnapId) -> Duration {
    let start = Instant::now();
    while ns.snapshots().unwrap().contains_key(&snap) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "snapshot {snap} not merged away: {:?}",
            ns.snapshots().unwrap().get(&snap)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

fn opts(merge: bool) -> Options {
    Options {
        shards: TEST_SHARDS,
        spread_directories: Some(true),
        merge_snapshots: merge,
        ..Options::default()
    }
}

/// Three directories on three shards, and the root: the churn's ground.
async fn ground(ns: &Namespace) -> Vec<u64> {
    let a = mkdir_off(ns, "a", None).await;
    let b = mkdir_off(ns, "b", Some(ShardId::of_ino(a))).await;
    let mut c = mkdir_off(ns, "c", Some(ShardId::of_ino(a))).await;
    for n in 0..16 {
        if ShardId::of_ino(c) != ShardId::of_ino(b) {
            break;
        }
        c = mkdir_off(ns, &format!("c{n}"), Some(ShardId::of_ino(a))).await;
    }
    vec![ROOT_INO, a, b, c]
}

#[test]
fn deletions_in_random_order_leave_the_other_snapshots_as_they_were() {
    const SNAPS: usize = 6;
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::seeded();
    let mut ns = open_opts(&rt, dir.path(), opts(true));
    let (dirs, mut files, ids) = rt.block_on(async {
        let dirs = ground(&ns).await;
        let mut files = Files::new();
        churn(&ns, &dirs, &mut files, &mut rng, 30).await;
        let mut ids = Vec::new();
        for n in 0..SNAPS {
            let id = ns
                .create_snapshot(format!("s{n}").as_bytes(), ROOT_INO, 3600)
                .await
                .unwrap();
            ids.push(id);
            churn(&ns, &dirs, &mut files, &mut rng, 25).await;
        }
        (dirs, files, ids)
    });
    let before = all_views(&ns);
    assert_eq!(before.len(), SNAPS * usize::from(TEST_SHARDS));
    let held: Vec<usize> = ids.iter().map(|s| pre_images_at(&ns, *s)).collect();
    eprintln!("pre-images per snapshot before the deletions: {held:?}");
    assert!(held.iter().all(|n| *n > 0), "{held:?}");

    // A random order, but for the second round the two newest left: with live cuts below
    // them, the newer's versions merge past the older's.
    let mut order = ids.clone();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i + 1));
    }
    order[1..].sort_by(|a, b| b.cmp(a));
    let (top, others) = order[1..].split_at_mut(2);
    for i in (1..others.len()).rev() {
        others.swap(i, rng.below(i + 1));
    }
    top.swap(0, rng.below(2));
    eprintln!("deletion order {order:?}");
    // In four rounds: one alone; two at once, stopped halfway through their merges by a
    // restart; one alone, then a restart; the last two at once. Two at once merge while the
    // other is retired and not yet merged: the case a merge must not move a version past.
    let name = |snap: SnapId| format!("s{}", ids.iter().position(|s| *s == snap).unwrap());
    let mut deleted = Vec::new();
    let mut rest = order.as_slice();
    for (round, n) in [1, 2, 1, 2].into_iter().enumerate() {
        let (now, later) = rest.split_at(n);
        rest = later;
        if round == 1 {
            // Marked, both retired on half the shards, then merged in part (two keys a step;
            // on one shard the newer first, which merges past the older one's versions), then
            // the node gone.
            drop(ns);
            ns = open_opts(&rt, dir.path(), opts(false));
            rt.block_on(async {
                for snap in now {
                    assert_eq!(ns.delete_snapshot(name(*snap).as_bytes()).await, Ok(*snap));
                }
                for s in 0..TEST_SHARDS / 2 {
                    let shard = ShardId(s);
                    let mut these = now.to_vec();
                    these.sort_by(|a, b| b.cmp(a));
                    if s % 2 == 1 {
                        these.reverse();
                    }
                    for snap in &these {
                        let step = Command::SnapRetire { shard, snap: *snap };
                        ns.execute(step).await.unwrap();
                    }
                    for (k, snap) in these.into_iter().enumerate() {
                        // Shard 0 merges the newer one whole first, the others two keys a
                        // step.
                        let (steps, max) = if s == 0 && k == 0 {
                            (1, 1 << 20)
                        } else {
                            (2, 2)
                        };
                        for _ in 0..steps {
                            let step = Command::SnapMerge { shard, snap, max };
                            ns.execute(step).await.unwrap();
                        }
                    }
                }
            });
            deleted.extend_from_slice(now);
            // Half merged, the others show what they showed.
            same(
                &without(&all_views(&ns), &deleted),
                &without(&before, &deleted),
                "half merged",
            );
            drop(ns);
            ns = open_opts(&rt, dir.path(), opts(true));
        } else {
            rt.block_on(async {
                for snap in now {
                    assert_eq!(ns.delete_snapshot(name(*snap).as_bytes()).await, Ok(*snap));
                }
            });
            deleted.extend_from_slice(now);
        }
        for snap in now {
            let took = rt.block_on(gone(&ns, *snap));
            eprintln!("snapshot {snap} merged away in {took:?}");
            no_trace(&ns, *snap);
            // Deleting it again: gone.
            assert_eq!(
                rt.block_on(ns.delete_snapshot(name(*snap).as_bytes())),
                Err(FsError::NotFound)
            );
        }
        same(
            &without(&all_views(&ns), &deleted),
            &without(&before, &deleted),
            "after the deletion",
        );
        // Changes after the deletion go to the live snapshots' pre-images, not the gone one's.
        rt.block_on(churn(&ns, &dirs, &mut files, &mut rng, 10));
        same(
            &without(&all_views(&ns), &deleted),
            &without(&before, &deleted),
            "after changes that followed",
        );
        if round == 2 {
            // A restart after a whole deletion.
            drop(ns);
            ns = open_opts(&rt, dir.path(), opts(true));
            same(
                &without(&all_views(&ns), &deleted),
                &without(&before, &deleted),
                "after a restart",
            );
        }
    }
    // Nothing is left of any snapshot: no leak.
    assert!(ns.snapshots().unwrap().is_empty());
    ns.snapshot()
        .unwrap()
        .each(|st| {
            assert!(st.snaps.cuts.is_empty() && st.snaps.freeze.is_none());
            assert!(st.pre_inodes.is_empty() && st.pre_dirents.is_empty());
            assert!(st.pre_xattrs.is_empty() && st.pre_dirindex.is_empty());
            assert!(st.pre_by_snap.is_empty());
        })
        .unwrap();
    // The name is free again.
    rt.block_on(async {
        let again = ns.create_snapshot(b"s0", ROOT_INO, 3600).await.unwrap();
        assert!(again > *ids.iter().max().unwrap());
    });
    each_shard_is_its_log(&ns);
}

#[test]
fn a_delete_racing_a_create() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::seeded();
    let ns = open_opts(&rt, dir.path(), opts(true));
    rt.block_on(async {
        let dirs = ground(&ns).await;
        let mut files = Files::new();
        churn(&ns, &dirs, &mut files, &mut rng, 20).await;
        let keep = ns.create_snapshot(b"keep", ROOT_INO, 3600).await.unwrap();
        churn(&ns, &dirs, &mut files, &mut rng, 20).await;
        let old = ns.create_snapshot(b"old", ROOT_INO, 3600).await.unwrap();
        churn(&ns, &dirs, &mut files, &mut rng, 20).await;
        let before = all_views(&ns);

        // A create and the deletion of another, at once; and the deletion of the snapshot
        // being made, sent until the create's record exists: it waits for the snapshot to
        // be ready (`Busy`), then deletes it whole.
        let made = {
            let ns = ns.clone();
            tokio::spawn(async move { ns.create_snapshot(b"new", ROOT_INO, 3600).await })
        };
        let doomed = {
            let ns = ns.clone();
            tokio::spawn(async move { ns.create_snapshot(b"doomed", ROOT_INO, 3600).await })
        };
        let start = Instant::now();
        let deleted_doomed = loop {
            match ns.delete_snapshot(b"doomed").await {
                Err(FsError::NotFound) if start.elapsed() < Duration::from_secs(5) => {
                    tokio::task::yield_now().await;
                }
                other => break other,
            }
        };
        assert_eq!(ns.delete_snapshot(b"old").await, Ok(old));
        let new = made.await.unwrap().unwrap();
        let doomed = doomed.await.unwrap().unwrap();
        assert_eq!(deleted_doomed, Ok(doomed));
        gone(&ns, old).await;
        gone(&ns, doomed).await;
        no_trace(&ns, old);
        no_trace(&ns, doomed);
        // `new` is whole: every shard cut, and it shows the live tree (nothing changed since
        // it was made), as a snapshot made now does.
        assert!(matches!(settled(&ns, new).await, SnapState::Ready { .. }));
        let check = ns.create_snapshot(b"check", ROOT_INO, 3600).await.unwrap();
        let views = all_views(&ns);
        for s in 0..TEST_SHARDS {
            assert_eq!(views.get(&(s, new)), views.get(&(s, check)), "shard {s}");
            assert!(views.contains_key(&(s, new)));
            // And the one kept shows what it showed.
            assert_eq!(views.get(&(s, keep)), before.get(&(s, keep)), "shard {s}");
        }
    });
    each_shard_is_its_log(&ns);
}

#[test]
fn creates_at_the_same_moment_are_each_whole() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::seeded();
    let ns = open_opts(&rt, dir.path(), opts(true));
    rt.block_on(async {
        let dirs = ground(&ns).await;
        let mut files = Files::new();
        churn(&ns, &dirs, &mut files, &mut rng, 20).await;
        // Three creates at once meet each other's freezes (`Busy`): each gives up and tries
        // again under a new id, so the registry also holds aborted records.
        let tasks: Vec<_> = ["x", "y", "z"]
            .into_iter()
            .map(|n| {
                let ns = ns.clone();
                tokio::spawn(async move { ns.create_snapshot(n.as_bytes(), ROOT_INO, 3600).await })
            })
            .collect();
        let mut made = Vec::new();
        for t in tasks {
            made.push(t.await.unwrap().unwrap());
        }
        // The same name twice at once: one is made, the other refused.
        let twice: Vec<_> = (0..2)
            .map(|_| {
                let ns = ns.clone();
                tokio::spawn(async move { ns.create_snapshot(b"w", ROOT_INO, 3600).await })
            })
            .collect();
        let mut answers = Vec::new();
        for t in twice {
            answers.push(t.await.unwrap());
        }
        let w: Vec<SnapId> = answers
            .iter()
            .filter_map(|a| a.as_ref().ok())
            .copied()
            .collect();
        assert_eq!(w.len(), 1, "{answers:?}");
        assert!(answers.contains(&Err(FsError::Exists)), "{answers:?}");
        made.push(w[0]);
        for snap in &made {
            assert!(matches!(settled(&ns, *snap).await, SnapState::Ready { .. }));
        }
        let records = ns.list_snapshots().await.unwrap();
        let aborted: Vec<SnapId> = (records.iter())
            .filter(|(_, r)| matches!(r.state, SnapState::Aborted { .. }))
            .map(|(id, _)| *id)
            .collect();
        eprintln!("made {made:?}, aborted on the way {aborted:?}");
        assert_eq!(records.len(), made.len() + aborted.len());
        // Each made one cut on every shard, each aborted one on none; none left frozen; and
        // all four show the same tree (nothing changed between them).
        ns.snapshot()
            .unwrap()
            .each(|st| {
                assert!(st.snaps.freeze.is_none() && !st.snaps.unthawed());
                assert!(made.iter().all(|s| st.snaps.cuts.contains_key(s)));
                assert!(aborted.iter().all(|s| !st.snaps.cuts.contains_key(s)));
            })
            .unwrap();
        let views = all_views(&ns);
        for s in 0..TEST_SHARDS {
            for snap in &made[1..] {
                assert_eq!(
                    views.get(&(s, made[0])),
                    views.get(&(s, *snap)),
                    "shard {s}"
                );
            }
        }
    });
}

#[test]
fn a_snapshot_on_three_replicas_is_cut_and_merged_on_each() {
    let rt = rt();
    rt.block_on(async {
        let (mut nodes, _members) = three_open().await;
        let all: Vec<Namespace> = nodes.iter().map(|n| n.ns.clone().unwrap()).collect();
        let d = mk(&all[0], ROOT_INO, "d", FileKind::Directory).await;
        let f = mk(&all[1], d, "f", FileKind::Regular).await;
        let snap = all[2].create_snapshot(b"s", ROOT_INO, 3600).await.unwrap();
        // Changes after it, from another node: pre-images on the file's and the directory's
        // shards.
        all[0]
            .execute(Command::Write {
                ino: f,
                end_offset: 100,
                time: t(9),
                writes: 1,
            })
            .await
            .unwrap();
        mk(&all[1], d, "g", FileKind::Regular).await;
        // Every replica cut every shard and shows the same snapshot.
        let shards = all[0].shard_count();
        until("every replica cut", Duration::from_secs(10), || {
            all.iter().all(|ns| {
                let mut cut = true;
                ns.snapshot()
                    .unwrap()
                    .each(|st| cut &= st.snaps.cuts.get(&snap).is_some_and(|c| c.thawed))
                    .unwrap();
                cut && pre_images_at(ns, snap) >= 3
            })
        })
        .await;
        let views = all_views(&all[0]);
        assert_eq!(views.len(), usize::from(shards));
        until(
            "every replica's views alike",
            Duration::from_secs(10),
            || all[1..].iter().all(|ns| all_views(ns) == views),
        )
        .await;
        let at = views[&(ShardId::of_ino(f).0, snap)].inodes[&f].size;
        assert_eq!(at, 0);
        // Deleted at one node, merged by each shard's leader wherever it runs, and gone from
        // every replica.
        assert_eq!(all[1].delete_snapshot(b"s").await, Ok(snap));
        until("merged everywhere", Duration::from_secs(10), || {
            all.iter().all(|ns| {
                let mut clean = !ns.snapshots().unwrap().contains_key(&snap);
                ns.snapshot()
                    .unwrap()
                    .each(|st| clean &= st.snaps.cuts.is_empty() && st.pre_by_snap.is_empty())
                    .unwrap();
                clean
            })
        })
        .await;
        for n in &mut nodes {
            n.down().await;
        }
    });
}
