//! Snapshot state in storage (`docs/plans/snapshots.md` steps 2 and 6): a shard's cuts,
//! pre-images and files' data images survive a reopen (its checkpoint, then its log
//! replayed), a kill -9 at any moment, and a Raft install; each shard's state equals its log
//! replayed; and dumps without snapshot state are the bytes they always were.
//!
//! The snapshots here are taken shard by shard through `Namespace::execute` (freeze every
//! shard, cut every shard, thaw every shard): the cross-shard protocol is step 3's. Views are
//! meta-core's reads at a cut (`meta_core::snap::view`) over a replica's state. Data images
//! are made as the gate will make them (step 6, not built): `SnapKeep` before a change to a
//! file's bytes, `SnapKept` once its links are made, and `SnapImageMirrors` when a copy moves.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader};
use std::process::{Command as Proc, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use meta_core::object::DirEntry;
use meta_core::snap::{inode_at, readdir_at, xattrs_at, ImageForm, Images, SnapId, ViewError};
use meta_core::xattr::How;

use super::*;

// ---- Snapshots and views ----

/// Freezes, cuts and thaws every shard for `snap`: a whole snapshot, taken in the one moment
/// between the last freeze and the first cut (nothing else runs here then).
async fn snapshot_all(ns: &Namespace, snap: SnapId) {
    let shards: Vec<ShardId> = (0..ns.shard_count()).map(ShardId).collect();
    // Now, not a test's made-up time: a freeze older than `FREEZE_STALE` looks like a dead
    // coordinator's to the snapshot recovery, which ends it (no registry record names it).
    let time = Time::now();
    for shard in &shards {
        let shard = *shard;
        ns.execute(Command::SnapFreeze { shard, snap, time })
            .await
            .unwrap_or_else(|e| panic!("freeze {shard} for {snap}: {e:?}"));
    }
    for shard in &shards {
        let shard = *shard;
        ns.execute(Command::SnapCut { shard, snap, time })
            .await
            .unwrap_or_else(|e| panic!("cut {shard} for {snap}: {e:?}"));
    }
    for shard in &shards {
        let shard = *shard;
        ns.execute(Command::SnapThaw { shard, snap })
            .await
            .unwrap_or_else(|e| panic!("thaw {shard} for {snap}: {e:?}"));
    }
}

/// Everything one shard's state shows at one cut: each inode, each directory's listing
/// (read in pages of three, so paging by cookie is exercised) and each set of attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Views {
    pub(super) inodes: BTreeMap<u64, Inode>,
    listings: BTreeMap<u64, Vec<DirEntry>>,
    xattrs: BTreeMap<u64, meta_core::Xattrs>,
}

pub(super) fn views(st: &MemState, snap: SnapId) -> Result<Views, ViewError> {
    let inos: BTreeSet<u64> = (st.inodes.keys())
        .chain(st.pre_inodes.keys())
        .chain(st.xattrs.keys())
        .chain(st.pre_xattrs.keys())
        .copied()
        .collect();
    let mut v = Views {
        inodes: BTreeMap::new(),
        listings: BTreeMap::new(),
        xattrs: BTreeMap::new(),
    };
    for ino in inos {
        if let Some(x) = xattrs_at(st, snap, ino)? {
            v.xattrs.insert(ino, x);
        }
        let Some(i) = inode_at(st, snap, ino)? else {
            continue;
        };
        if i.kind.is_dir() {
            let mut all = Vec::new();
            let mut after = 0;
            loop {
                let (page, eof) = readdir_at(st, snap, ino, after, 3)?;
                after = page.last().map_or(after, |e| e.cookie);
                all.extend(page);
                if eof {
                    break;
                }
            }
            v.listings.insert(ino, all);
        }
        v.inodes.insert(ino, i);
    }
    Ok(v)
}

/// Every shard's views at each of its live cuts, by (shard, snap).
pub(super) type AllViews = BTreeMap<(u16, SnapId), Views>;

pub(super) fn all_views(ns: &Namespace) -> AllViews {
    let snap = ns.snapshot().unwrap();
    let mut out = AllViews::new();
    for s in 0..ns.shard_count() {
        snap.with(ShardId(s), |st| {
            for (id, c) in &st.snaps.cuts {
                if !c.retired {
                    out.insert((s, *id), views(st, *id).unwrap());
                }
            }
        })
        .unwrap();
    }
    out
}

/// Every shard's whole state (live tables, cuts and pre-images), less the records of
/// transactions, which go in the background in their own time.
fn dumps(ns: &Namespace) -> Vec<meta_core::Dump> {
    let snap = ns.snapshot().unwrap();
    (0..ns.shard_count())
        .map(|s| {
            let mut d = snap.shard_dump(ShardId(s)).unwrap();
            d.txns.clear();
            d
        })
        .collect()
}

/// Runs steps `from..from + n` of the scenario in `d` through `ns`.
async fn run_steps(ns: &Namespace, d: u64, from: u64, n: u64, inos: &mut BTreeMap<u64, u64>) {
    for seq in from..from + n {
        let out = ns.execute(op(d, seq, inos)).await.unwrap();
        if let Some(i) = out.inode.filter(|_| out.created) {
            inos.insert(seq, i.ino);
        }
    }
}

/// A regular file `name` in the root, placed on data servers 7 and 9: the file the image
/// steps change.
async fn placed_file(ns: &Namespace, name: &str) -> u64 {
    let ino = mk(ns, ROOT_INO, name, FileKind::Regular).await;
    let place = Command::SetMirrors {
        ino,
        chunk: 0,
        mirrors: vec![7, 9],
    };
    ns.execute(place).await.unwrap();
    ino
}

/// Where snapshot `k`'s image of the placed file ends up (`image_steps`): on 7 and 11 for the
/// third, 7 and 9 for the others.
fn image_mirrors(k: u64) -> Vec<u64> {
    if k == 3 {
        vec![7, 11]
    } else {
        vec![7, 9]
    }
}

/// What the gate does to `ino` after the `k`th snapshot `snap` (step 6's gate, by hand): an
/// image at the new cut, then a change to the file's bytes; for an odd `k` its links are
/// recorded made (an even one stays `linking`, as a gate that died would leave it); the
/// third's copy on DS 9 moves to DS 11. `say` is told each step once it returned.
async fn image_steps(ns: &Namespace, ino: u64, snap: SnapId, k: u64, say: impl Fn(&str)) {
    let out = ns
        .execute(Command::SnapKeep {
            ino,
            time: t(1000 + k as i64),
        })
        .await
        .unwrap();
    assert!(out.created, "an image of {ino} at {snap}");
    say("image");
    let write = Command::Write {
        ino,
        end_offset: 1000 * k,
        time: t(1000 + k as i64),
        writes: 1,
    };
    ns.execute(write).await.unwrap();
    if k % 2 == 1 {
        ns.execute(Command::SnapKept { ino, snap }).await.unwrap();
        say("kept");
    }
    if k == 3 {
        let moved = Command::SnapImageMirrors {
            ino,
            snap,
            expect: vec![7, 9],
            mirrors: image_mirrors(k),
        };
        ns.execute(moved).await.unwrap();
        say("moved");
    }
}

/// Checks `ino`'s images against what `image_steps` made after the snapshots `made` (`snap →
/// k`), of which those in `kept` and `moved` had their links recorded and their copy moved;
/// with `exact`, every step of each ran (else the last may have run further than told).
fn check_images(
    images: &Images,
    made: &BTreeMap<SnapId, u64>,
    kept: &[SnapId],
    moved: &[SnapId],
    exact: bool,
) {
    let mut objects = BTreeSet::new();
    for (snap, k) in made {
        let img = images
            .get(snap)
            .unwrap_or_else(|| panic!("the image at {snap} is lost"));
        let ImageForm::Mirrored {
            object,
            mirrors,
            linking,
        } = &img.form
        else {
            panic!("the image at {snap} is not mirrored: {img:?}");
        };
        assert!(objects.insert(*object), "two images share object {object}");
        assert_eq!(img.made, t(1000 + *k as i64), "the image at {snap}");
        if kept.contains(snap) || (exact && k % 2 == 1) {
            assert!(!linking, "the image at {snap} was recorded linked");
        }
        if k % 2 == 0 {
            assert!(linking, "the image at {snap} was never recorded linked");
        }
        if moved.contains(snap) || (exact && *k == 3) {
            assert_eq!(mirrors, &image_mirrors(*k), "the image at {snap} moved");
        } else if *k != 3 {
            assert_eq!(mirrors, &image_mirrors(*k), "the image at {snap}");
        }
    }
    if exact {
        assert_eq!(
            images.len(),
            made.len(),
            "no image but those made: {images:?}"
        );
    }
}

// ---- A task's steps, known to the parent and the child alike ----

/// Step `seq` of the scenario in directory `dir` (`inos`: what each create made): a
/// repeating pattern of create, write, set an attribute, rename, create, remove, so every
/// kind of pre-image (inode, entry, attributes) is made after each cut.
fn op(dir: u64, seq: u64, inos: &BTreeMap<u64, u64>) -> Command {
    let name = |p: &str, i: u64| format!("{p}{i}").into_bytes();
    let time = t(seq as i64);
    match seq % 6 {
        0 => create(dir, &format!("f{seq}"), FileKind::Regular),
        1 => Command::Write {
            ino: inos[&(seq - 1)],
            end_offset: seq,
            time,
            writes: 1,
        },
        2 => Command::SetXattr {
            ino: inos[&(seq - 2)],
            name: b"user.v".to_vec(),
            value: seq.to_le_bytes().to_vec(),
            how: How::Either,
            time,
        },
        3 => Command::Rename {
            src_parent: dir,
            src_name: name("f", seq - 3),
            src: inos[&(seq - 3)],
            dst_parent: dir,
            dst_name: name("r", seq - 3),
            dst: None,
            time,
        },
        4 => create(dir, &format!("g{seq}"), FileKind::Regular),
        _ => Command::Remove {
            parent: dir,
            name: name("g", seq - 1),
            child: inos[&(seq - 1)],
            time,
        },
    }
}

/// What the directory holds after steps `0..n`: name → (size, the attribute's value).
type Tree = BTreeMap<Vec<u8>, (u64, Option<Vec<u8>>)>;

fn expected(n: u64) -> Tree {
    let mut m = Tree::new();
    for seq in 0..n {
        let f = format!("f{}", seq - seq % 6).into_bytes();
        match seq % 6 {
            0 => {
                m.insert(f, (0, None));
            }
            1 => m.get_mut(&f).unwrap().0 = seq,
            2 => m.get_mut(&f).unwrap().1 = Some(seq.to_le_bytes().to_vec()),
            3 => {
                let v = m.remove(&f).unwrap();
                m.insert(format!("r{}", seq - 3).into_bytes(), v);
            }
            4 => {
                m.insert(format!("g{seq}").into_bytes(), (0, None));
            }
            _ => {
                m.remove(format!("g{}", seq - 1).as_bytes());
            }
        }
    }
    m
}

/// The directory `dir` as one shard's state shows it at `snap`.
fn tree_at(st: &MemState, snap: SnapId, dir: u64) -> Result<Tree, ViewError> {
    let (ents, eof) = readdir_at(st, snap, dir, 0, 100_000)?;
    assert!(eof);
    let mut m = Tree::new();
    for e in ents {
        // A directory's files live on its shard.
        let i = inode_at(st, snap, e.ino)?.expect("an entry's inode at the cut");
        let x = xattrs_at(st, snap, e.ino)?.and_then(|x| x.get(&b"user.v"[..]).cloned());
        m.insert(e.name, (i.size, x));
    }
    Ok(m)
}

/// The directory `dir` as it is now.
fn tree_now(ns: &Namespace, dir: u64) -> Tree {
    let (ents, _) = ns.readdir(dir, 0, 100_000).unwrap();
    ents.into_iter()
        .map(|e| {
            let size = ns.getattr(e.ino).unwrap().size;
            let x = ns.xattrs(e.ino).unwrap().get(&b"user.v"[..]).cloned();
            (e.name, (size, x))
        })
        .collect()
}

// ---- The child: runs the scenario, acknowledging each step and each snapshot ----

const CHILD_ENV: &str = "CFS_NS_SNAP_CHILD";
/// The child stops on its own after this long, in case nobody kills it.
const CHILD_LIMIT: Duration = Duration::from_secs(30);
/// A snapshot after every this many steps.
const EVERY: u64 = 12;
/// In a round that runs to the end: its steps, the one after which the child checkpoints,
/// and the snapshot it then retires and half merges.
const STEPS: u64 = 60;
const CHECKPOINT_AFTER: u64 = 30;
const RETIRE: u64 = 2;

/// Snapshot `k` (from 1) of round `round`: ids grow across rounds, as shard 0's counter does
/// (and a round may take thousands of snapshots).
fn snap_id(round: u64, k: u64) -> SnapId {
    (round << 32) + k
}

/// Ends what a killed round left half done (step 3's recovery, in the small): a freeze is
/// given up, a cut not thawed is thawed. Without it a shard left frozen answers `Busy`.
async fn settle(ns: &Namespace) {
    let mut todo = Vec::new();
    {
        let snap = ns.snapshot().unwrap();
        for s in 0..ns.shard_count() {
            let shard = ShardId(s);
            snap.with(shard, |st| {
                if let Some(f) = st.snaps.freeze {
                    todo.push(Command::SnapAbort {
                        shard,
                        snap: f.snap,
                    });
                }
                for (snap, c) in &st.snaps.cuts {
                    if !c.thawed && !c.retired {
                        todo.push(Command::SnapThaw { shard, snap: *snap });
                    }
                }
            })
            .unwrap();
        }
    }
    for cmd in todo {
        ns.execute(cmd).await.unwrap();
    }
}

/// The child: round `round` of the scenario in directory `d<round>`, printing `ack <seq>`
/// after each step returns (durable), `cut <snap> <steps>` after each whole snapshot, then
/// the image steps of file `img<round>` at it (`image_steps`: `image <snap>`, `kept <snap>`,
/// `moved <snap>`), and `retired <snap>` after the retirement; with `whole`, it stops after
/// `STEPS` steps and prints `done`. Either way it then waits to be killed.
#[test]
fn snap_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return; // Only does something when started by a parent below.
    };
    let mut parts = spec.splitn(3, ':');
    let whole = parts.next() == Some("whole");
    let round: u64 = parts.next().unwrap().parse().unwrap();
    let dir = std::path::PathBuf::from(parts.next().unwrap());
    let rt = rt();
    let ns = open(&rt, &dir);
    let started = Instant::now();
    rt.block_on(async {
        settle(&ns).await;
        let d = mk(&ns, ROOT_INO, &format!("d{round}"), FileKind::Directory).await;
        let img = placed_file(&ns, &format!("img{round}")).await;
        let mut inos = BTreeMap::new();
        for seq in 0.. {
            if (whole && seq == STEPS) || started.elapsed() > CHILD_LIMIT {
                break;
            }
            run_steps(&ns, d, seq, 1, &mut inos).await;
            println!("ack {seq}");
            let n = seq + 1;
            if n % EVERY == 0 {
                let k = n / EVERY;
                let snap = snap_id(round, k);
                snapshot_all(&ns, snap).await;
                println!("cut {snap} {n}");
                image_steps(&ns, img, snap, k, |what| println!("{what} {snap}")).await;
            }
            if n == CHECKPOINT_AFTER {
                ns.checkpoint().await.expect("checkpoint");
            }
            if n == RETIRE * EVERY * 2 {
                // The snapshot goes, half merged: a retired cut with pre-images left.
                let snap = snap_id(round, RETIRE);
                for s in 0..ns.shard_count() {
                    let shard = ShardId(s);
                    ns.execute(Command::SnapRetire { shard, snap })
                        .await
                        .unwrap();
                    ns.execute(Command::SnapMerge {
                        shard,
                        snap,
                        max: 2,
                    })
                    .await
                    .unwrap();
                }
                println!("retired {snap}");
            }
        }
        println!("done");
    });
    std::thread::sleep(CHILD_LIMIT);
}

/// What a child printed.
#[derive(Default)]
struct Heard {
    acked: u64,
    /// snap → the steps made before it.
    cuts: BTreeMap<SnapId, u64>,
    retired: Vec<SnapId>,
    /// The image steps told: snap → its k, then the snapshots whose links were recorded and
    /// whose copy moved.
    images: BTreeMap<SnapId, u64>,
    kept: Vec<SnapId>,
    moved: Vec<SnapId>,
    done: bool,
}

/// Starts the child for `round` on `dir`; what it prints goes into the returned `Heard`.
fn spawn_child(
    whole: bool,
    round: u64,
    dir: &std::path::Path,
) -> (
    std::process::Child,
    Arc<Mutex<Heard>>,
    std::thread::JoinHandle<()>,
) {
    let exe = std::env::current_exe().unwrap();
    let mode = if whole { "whole" } else { "kill" };
    let mut child = Proc::new(exe)
        .args([
            "namespace::tests::snaps::snap_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, format!("{mode}:{round}:{}", dir.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let heard = Arc::new(Mutex::new(Heard::default()));
    let reader = {
        let heard = heard.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let w: Vec<&str> = line.split_whitespace().collect();
                let mut h = heard.lock().unwrap();
                match w.as_slice() {
                    ["ack", seq] => h.acked = h.acked.max(seq.parse::<u64>().unwrap() + 1),
                    ["cut", snap, n] => {
                        h.cuts.insert(snap.parse().unwrap(), n.parse().unwrap());
                    }
                    ["retired", snap] => h.retired.push(snap.parse().unwrap()),
                    ["image", snap] => {
                        let snap: SnapId = snap.parse().unwrap();
                        h.images.insert(snap, snap & 0xffff_ffff);
                    }
                    ["kept", snap] => h.kept.push(snap.parse().unwrap()),
                    ["moved", snap] => h.moved.push(snap.parse().unwrap()),
                    ["done"] => h.done = true,
                    _ => {}
                }
            }
        })
    };
    (child, heard, reader)
}

/// Waits (bounded) until `what` holds of what the child printed.
fn wait_for(child: &mut std::process::Child, heard: &Mutex<Heard>, what: impl Fn(&Heard) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !what(&heard.lock().unwrap()) {
        assert!(Instant::now() < deadline, "the child made no progress");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the child exited early"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Kills the child (SIGKILL) and returns all it printed.
fn kill(
    mut child: std::process::Child,
    heard: &Mutex<Heard>,
    reader: std::thread::JoinHandle<()>,
) -> Heard {
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap();
    std::mem::take(&mut *heard.lock().unwrap())
}

/// Checks a namespace reopened after the child of `round` was killed: each shard is its log
/// replayed; every acknowledged snapshot is cut on every shard, and shows the directory as
/// it was after the steps made before it; a retired one shows nothing; the directory now is
/// what some run of at least the acknowledged steps made; every image step told is there.
fn check_round(ns: &Namespace, round: u64, heard: &Heard) {
    each_shard_is_its_log(ns);
    let img = ns
        .lookup(ROOT_INO, format!("img{round}").as_bytes())
        .unwrap()
        .ino;
    let images = ns.images(img).unwrap();
    check_images(&images, &heard.images, &heard.kept, &heard.moved, false);
    assert!(
        images.keys().all(|s| heard.cuts.contains_key(s)),
        "an image only at a cut made: {images:?}"
    );
    let d = ns
        .lookup(ROOT_INO, format!("d{round}").as_bytes())
        .unwrap()
        .ino;
    let snap = ns.snapshot().unwrap();
    for (id, n) in &heard.cuts {
        for s in 0..ns.shard_count() {
            let cut = snap.with(ShardId(s), |st| st.snaps.cuts.get(id).copied());
            let cut = cut
                .unwrap()
                .unwrap_or_else(|| panic!("cut {id} lost on shard {s}"));
            assert!(cut.thawed, "cut {id} on shard {s}");
        }
        let shown = snap
            .with(ShardId::of_ino(d), |st| tree_at(st, *id, d))
            .unwrap();
        let retired = Err(ViewError::Retired(*id));
        if heard.retired.contains(id) {
            assert_eq!(shown, retired);
        } else if shown != retired || *id != snap_id(round, RETIRE) {
            // (A kill in the middle of the retirement may have reached the shard.)
            assert_eq!(shown, Ok(expected(*n)), "snapshot {id} after {n} steps");
        }
    }
    drop(snap);
    let now = tree_now(ns, d);
    assert!(
        (heard.acked..heard.acked + 2).any(|n| expected(n) == now),
        "round {round}: {} steps acknowledged, and the directory matches no run of them",
        heard.acked
    );
}

/// Checkpoint plus log replay: a child runs the scenario to the end (snapshots every twelve
/// steps, a checkpoint halfway, a snapshot retired and half merged) and is killed once it
/// has acknowledged all of it, so a reopen takes the checkpoint and replays the log after
/// it. Every view is as it was, and every data image (two in the checkpoint, three in the
/// log after it); so after a clean reopen of that (its last checkpoint).
#[test]
fn views_survive_reopen() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let (mut child, heard, reader) = spawn_child(true, 1, dir.path());
    wait_for(&mut child, &heard, |h| h.done);
    let heard = kill(child, &heard, reader);
    assert_eq!(heard.cuts.len() as u64, STEPS / EVERY);
    assert_eq!(heard.retired, vec![snap_id(1, RETIRE)]);
    assert_eq!(heard.images.len() as u64, STEPS / EVERY);

    let ns = open(&rt, dir.path());
    check_round(&ns, 1, &heard);
    // Every image as made, the retired snapshot's too (images are not merged yet).
    let img = ns.lookup(ROOT_INO, b"img1").unwrap().ino;
    let images = ns.images(img).unwrap();
    check_images(&images, &heard.images, &heard.kept, &heard.moved, true);
    // The gate's reads: the placed file has its image at the latest cut; a file of `d1` that
    // every cut saw and none imaged needs one there; the even snapshots' links are not known
    // made.
    let latest = snap_id(1, STEPS / EVERY);
    let snap = ns.snapshot().unwrap();
    assert_eq!(snap.needs_image(img), Ok(None));
    let d = ns.lookup(ROOT_INO, b"d1").unwrap().ino;
    let r0 = ns.lookup(d, b"r0").unwrap().ino;
    assert_eq!(snap.needs_image(r0), Ok(Some(latest)));
    assert_eq!(
        snap.linking_images(ShardId::of_ino(img), 10),
        Ok(vec![(img, snap_id(1, 2)), (img, snap_id(1, 4))])
    );
    drop(snap);
    let (views, states) = (all_views(&ns), dumps(&ns));
    assert_eq!(views.len(), 4 * usize::from(ns.shard_count()));
    let gone = snap_id(1, RETIRE);
    let retired = states.iter().find(|d| {
        (d.snaps.cuts.get(&gone)).is_some_and(|c| c.retired)
            && (d.pre_inodes.values().any(|v| v.contains_key(&gone))
                || d.pre_dirents.values().any(|v| v.contains_key(&gone))
                || d.pre_xattrs.values().any(|v| v.contains_key(&gone)))
    });
    assert!(
        retired.is_some(),
        "a retired cut with pre-images left to merge"
    );
    drop(ns);
    let ns = open(&rt, dir.path());
    assert_eq!(all_views(&ns), views);
    assert_eq!(dumps(&ns), states);
}

/// kill -9 at a random moment, in each of three rounds on one store: whatever a snapshot's
/// freeze, cut, thaw or retirement had reached, each shard is its log replayed, and every
/// acknowledged snapshot is whole and shows its moment.
#[test]
fn kill9_keeps_cuts_and_pre_images() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    for round in 1..=3u64 {
        let (mut child, heard, reader) = spawn_child(false, round, dir.path());
        wait_for(&mut child, &heard, |h| !h.cuts.is_empty());
        let pause = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
            % 1_500;
        std::thread::sleep(Duration::from_millis(pause));
        let heard = kill(child, &heard, reader);
        let ns = open(&rt, dir.path());
        check_round(&ns, round, &heard);
        for r in 1..round {
            // Earlier rounds' snapshots still show their moments.
            let d = ns.lookup(ROOT_INO, format!("d{r}").as_bytes()).unwrap().ino;
            let k = snap_id(r, 1);
            let shown = ns
                .snapshot()
                .unwrap()
                .with(ShardId::of_ino(d), |st| tree_at(st, k, d))
                .unwrap();
            assert_eq!(shown, Ok(expected(EVERY)), "round {r}'s first snapshot");
        }
        println!(
            "round {round}: {} steps and {} snapshots verified after kill -9",
            heard.acked,
            heard.cuts.len()
        );
    }
}

// ---- Raft: a replica that gets the shards by install ----

/// A node down while one snapshot is deleted and two more are taken, each with a data image
/// of a file, comes back by install (the others purged their logs), and shows every view and
/// image as the others do; its checkpoint of the installs (each shard's rows replaced whole)
/// holds them, and nothing of the deleted snapshot, across its own restart.
#[test]
fn a_raft_install_carries_views() {
    use super::replicated::{open_node, purge_and_reopen_third, three_open, until, Node};
    let rt = rt();
    rt.block_on(async {
        let (mut nodes, members) = three_open().await;
        let ns = |n: &Node| n.ns.clone().expect("node up");
        let (first, second, third) = (ns(&nodes[0]), ns(&nodes[1]), ns(&nodes[2]));
        let d = mk(&first, ROOT_INO, "d", FileKind::Directory).await;
        let img = placed_file(&first, "img").await;
        let mut inos = BTreeMap::new();
        run_steps(&first, d, 0, EVERY, &mut inos).await;
        snapshot_all(&first, 1).await;
        run_steps(&first, d, EVERY, EVERY, &mut inos).await;
        // Node 3 has snapshot 1 and its pre-images, and takes them to its checkpoint as it
        // stops.
        let want = all_views(&first);
        until("node 3 has snapshot 1", Duration::from_secs(10), || {
            all_views(&third) == want
        })
        .await;
        drop(third);
        nodes[2].down().await;
        // Snapshot 1 goes whole while node 3 is down; two more come.
        for s in 0..first.shard_count() {
            let shard = ShardId(s);
            first
                .execute(Command::SnapRetire { shard, snap: 1 })
                .await
                .unwrap();
            loop {
                match first.execute(Command::SnapForget { shard, snap: 1 }).await {
                    Ok(_) => break,
                    Err(FsError::NotEmpty) => {
                        let merge = Command::SnapMerge {
                            shard,
                            snap: 1,
                            max: 5,
                        };
                        first.execute(merge).await.unwrap();
                    }
                    Err(e) => panic!("forget snapshot 1 on {shard}: {e:?}"),
                }
            }
        }
        snapshot_all(&first, 2).await;
        image_steps(&first, img, 2, 2, |_| {}).await;
        run_steps(&first, d, 2 * EVERY, EVERY, &mut inos).await;
        snapshot_all(&first, 3).await;
        image_steps(&first, img, 3, 3, |_| {}).await;
        run_steps(&first, d, 3 * EVERY, EVERY / 2, &mut inos).await;
        let (want, want_states) = (all_views(&first), dumps(&first));
        let of_img = usize::from(ShardId::of_ino(img).0);
        let made = BTreeMap::from([(2, 2), (3, 3)]);
        check_images(&want_states[of_img].images[&img], &made, &[], &[], true);
        assert!(
            want.keys().all(|(_, snap)| *snap != 1),
            "snapshot 1 is gone"
        );
        let of_d = ShardId::of_ino(d);
        assert_eq!(
            first
                .snapshot()
                .unwrap()
                .with(of_d, |st| tree_at(st, 2, d))
                .unwrap(),
            Ok(expected(2 * EVERY))
        );
        until("node 2 has it all", Duration::from_secs(10), || {
            dumps(&second) == want_states
        })
        .await;
        let back = purge_and_reopen_third(&mut nodes, &[&first, &second], &members).await;
        until(
            "the returning node has the views",
            Duration::from_secs(20),
            || all_views(&back) == want && dumps(&back) == want_states,
        )
        .await;
        let by_install = back.inner.shards[&of_d.0].raft.metrics().borrow().snapshot;
        assert!(by_install.is_some(), "{of_d} came by install");
        let img_shard = ShardId::of_ino(img);
        let by_install = back.inner.shards[&img_shard.0]
            .raft
            .metrics()
            .borrow()
            .snapshot;
        assert!(
            by_install.is_some(),
            "{img_shard}, with the images, came by install"
        );
        drop(back);
        nodes[2].down().await;
        // Right after opening, before anything arrives from the others: its checkpoint.
        let again = open_node(nodes[2].dir.path(), members(3)).await;
        assert_eq!(all_views(&again), want, "the installs' checkpoint");
        assert_eq!(dumps(&again), want_states, "nothing of snapshot 1 left");
        assert_eq!(again.images(img).unwrap(), want_states[of_img].images[&img]);
        nodes[2].up(again);
        for n in &mut nodes {
            n.down().await;
        }
    });
}

// ---- Dumps ----

/// The shard's state as `Dump` travels (Raft snapshots, the bucket's checkpoints) round trips
/// with snapshot state; one without any is the bytes earlier builds wrote (pinned, and the
/// same as the dump with snapshot state less its last part), and loads. Data images are one
/// part more, the last, after the (empty) registry and segments' tier state.
#[test]
fn dumps_without_snaps_load() {
    use crate::raft::machine::{decode_state, encode_state};
    let mut s = init();
    let go = |s: &mut MemState, cmd: Command| step_on(ShardId(0), s, &cmd).unwrap();
    let f = made(&mut s, create(ROOT_INO, "f", FileKind::Regular));
    let g = made(&mut s, create(ROOT_INO, "g", FileKind::Regular));
    for cmd in [
        Command::Write {
            ino: f,
            end_offset: 4096,
            time: t(2),
            writes: 1,
        },
        Command::SetMirrors {
            ino: f,
            chunk: 0,
            mirrors: vec![11, 12],
        },
    ] {
        go(&mut s, cmd);
    }
    go(
        &mut s,
        Command::SetXattr {
            ino: f,
            name: b"user.a".to_vec(),
            value: b"1".to_vec(),
            how: How::Create,
            time: t(3),
        },
    );
    let change = s.inodes[&g].change;
    go(
        &mut s,
        Command::TierBegin {
            ino: g,
            change,
            pieces: 1,
            time: t(4),
            by: 9,
        },
    );
    go(
        &mut s,
        Command::AddReferrer {
            shard: ShardId(0),
            segment: meta_core::reduce_index::SegmentId([3; 32]),
            stored: Some(meta_core::reduce_index::StoredSegment {
                chunks: vec![(meta_core::reduce_index::ChunkId([4; 32]), 10)],
                placement: vec![7],
                stored_len: 10,
            }),
            referrer: meta_core::reduce_index::Referrer { ino: f, epoch: 1 },
        },
    );
    go(&mut s, Command::BeginReduce { ino: f, time: t(5) });
    // Every trailing part before the snapshot state is here.
    assert!(!s.xattrs.is_empty() && !s.tier.is_empty());
    assert!(!s.segments.is_empty() && !s.reduces.is_empty());
    let plain = encode_state(&s).unwrap();
    check(&[("Dump/all-but-snaps", plain.clone())], PINNED);
    assert_eq!(decode_state(&plain).unwrap().dump(), s.dump());

    // With a cut and pre-images: one part more, after the bytes above.
    for cmd in [
        Command::SnapFreeze {
            shard: ShardId(0),
            snap: 1,
            time: t(6),
        },
        Command::SnapCut {
            shard: ShardId(0),
            snap: 1,
            time: t(6),
        },
    ] {
        go(&mut s, cmd);
    }
    go(
        &mut s,
        Command::Remove {
            parent: ROOT_INO,
            name: b"f".to_vec(),
            child: f,
            time: t(7),
        },
    );
    assert!(!s.pre_inodes.is_empty() && !s.pre_dirents.is_empty());
    let with = encode_state(&s).unwrap();
    assert!(with.len() > plain.len());
    let back = decode_state(&with).unwrap();
    assert_eq!(back.dump(), s.dump());
    assert_eq!(back.pre_dirindex, s.pre_dirindex, "rebuilt on load");
    assert_eq!(back.pre_by_snap, s.pre_by_snap, "rebuilt on load");
    assert_eq!(views(&back, 1), views(&s, 1));
    assert!(views(&back, 1).unwrap().inodes.contains_key(&f));
    // Without the snapshot state, the bytes are the plain dump's plus the emptied parts'.
    let mut without = s.clone();
    without.snaps = Default::default();
    without.pre_inodes.clear();
    without.pre_dirents.clear();
    without.pre_xattrs.clear();
    without.index_pre_images();
    let bare = encode_state(&without).unwrap();
    assert!(
        with.starts_with(&bare),
        "the snapshot state is one part after the others"
    );
    assert_eq!(decode_state(&bare).unwrap().dump(), without.dump());

    // Images of both forms: f, seen linked by the cut and unlinked since, is placed on 11
    // and 12; g has no data.
    for ino in [f, g] {
        assert!(go(&mut s, Command::SnapKeep { ino, time: t(8) }).created);
    }
    assert!(
        matches!(s.images[&f][&1].form, ImageForm::Mirrored { ref mirrors, linking: true, .. } if *mirrors == [11, 12])
    );
    assert_eq!(s.images[&g][&1].form, ImageForm::Empty);
    let imaged = encode_state(&s).unwrap();
    let back = decode_state(&imaged).unwrap();
    assert_eq!(back.dump(), s.dump());
    assert_eq!(back.images, s.images);
    let mut without = s.clone();
    without.images.clear();
    let bare = encode_state(&without).unwrap();
    assert!(
        imaged.starts_with(&bare) && imaged[bare.len()..].starts_with(&[0, 0]),
        "the images are one part after an empty registry and tier state"
    );
    assert_eq!(decode_state(&bare).unwrap().dump(), without.dump());
}

/// The bytes `dumps_without_snaps_load` pins: a dump as builds before snapshots wrote it.
const PINNED: &[(&str, &str)] = &[(
    "Dump/all-but-snaps",
    "030101ed03020000802080c49fd50c0082c49fd50c0082c49fd50c0080c49fd50c000301000200a40301e807e807802082c49fd50c0084c49fd50c0086c49fd50c0082c49fd50c000300000300a40301e807e8070082c49fd50c0082c49fd50c0082c49fd50c0082c49fd50c0001000002010166020301016703040101050505627974657380200566696c6573030566735f69642a0a6e6578745f65706f636803086e6578745f696e6f0400010200020b0c0000000000000001020106757365722e6101310103000101010188c49fd50c0009000000010303030303030303030303030303030303030303030303030303030303030303010404040404040404040404040404040404040404040404040404040404040404000a01070a0002010103030303030303030303030303030303030303030303030303030303030303030201010202008ac49fd50c00030000",
)];

// ---- A shard holding only snapshot state ----

/// A shard whose every file is gone but whose snapshot still shows them is not blank (its
/// image is shipped to the bucket, and a blank one would not be).
#[test]
fn a_shard_with_only_snapshot_state_is_not_blank() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let ns = open(&rt, dir.path());
    let blank = |ns: &Namespace| {
        (0..ns.shard_count())
            .filter(|s| ns.shard_is_blank(*s))
            .count()
    };
    rt.block_on(async {
        let empty = blank(&ns);
        assert!(empty > 0, "some shard holds nothing");
        snapshot_all(&ns, 1).await;
        assert_eq!(blank(&ns), 0, "every shard holds its cut");
    });
}

// ---- The store's own reads ----

/// Commands applied straight over the redb tables (`RedbState`: every read the copy-on-write
/// and the merge make goes to them) answer as over the state in memory, and leave what it
/// holds: the same cuts, pre-images, registry and data images when loaded, the same keys at
/// each cut. The images' rows go with `delete_shard` and come back with `write_whole`.
#[test]
fn the_store_applies_snapshot_steps_as_memory_does() {
    use crate::storage::store::{self, RedbState};
    use meta_core::state::Staged;
    const S0: ShardId = ShardId(0);
    let dir = tempfile::tempdir().unwrap();
    let db = redb::Database::create(dir.path().join("t.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    store::create_tables(&txn).unwrap();
    let mut m = MemState::default();
    {
        let mut st = RedbState::open(&txn, S0).unwrap();
        let mut both = |cmd: Command| {
            let want = step_on(S0, &mut m, &cmd);
            let mut staged = Staged::new(&st);
            let got = meta_core::apply_on_shard(S0, &mut staged, &cmd);
            if got.is_ok() {
                staged.into_changes().flush_into(&mut st).unwrap();
            }
            assert_eq!(got, want, "{cmd:?}");
            got
        };
        both(Command::InitRoot {
            fs_id: 7,
            time: t(1),
        })
        .unwrap();
        let snapshot = |both: &mut dyn FnMut(Command) -> Result<Outcome, FsError>, snap| {
            let time = t(snap as i64);
            both(Command::SnapFreeze {
                shard: S0,
                snap,
                time,
            })
            .unwrap();
            both(Command::SnapCut {
                shard: S0,
                snap,
                time,
            })
            .unwrap();
            both(Command::SnapThaw { shard: S0, snap }).unwrap();
        };
        let d = both(create(ROOT_INO, "d", FileKind::Directory))
            .unwrap()
            .inode
            .unwrap()
            .ino;
        let file = |both: &mut dyn FnMut(Command) -> Result<Outcome, FsError>, name| {
            let out = both(create(ROOT_INO, name, FileKind::Regular)).unwrap();
            out.inode.unwrap().ino
        };
        let img = file(&mut both, "img");
        both(Command::SetMirrors {
            ino: img,
            chunk: 0,
            mirrors: vec![7, 9],
        })
        .unwrap();
        let empty = file(&mut both, "empty");
        let keep = |ino| Command::SnapKeep { ino, time: t(60) };
        let kept = |ino, snap| Command::SnapKept { ino, snap };
        let moved = |ino, snap, expect: &[u64], mirrors: &[u64]| Command::SnapImageMirrors {
            ino,
            snap,
            expect: expect.to_vec(),
            mirrors: mirrors.to_vec(),
        };
        let write = |ino, end_offset| Command::Write {
            ino,
            end_offset,
            time: t(61),
            writes: 1,
        };
        let mut inos = BTreeMap::new();
        let mut steps = |both: &mut dyn FnMut(Command) -> Result<Outcome, FsError>, from, n| {
            for seq in from..from + n {
                let out = both(op(d, seq, &inos)).unwrap();
                if let Some(i) = out.inode.filter(|_| out.created) {
                    inos.insert(seq, i.ino);
                }
            }
        };
        steps(&mut both, 0, 8);
        snapshot(&mut both, 1);
        // Images at 1: the placed file's (once: a second keep makes none), the empty one's.
        assert!(both(keep(img)).unwrap().created);
        assert!(!both(keep(img)).unwrap().created);
        assert!(both(keep(empty)).unwrap().created);
        both(write(img, 4096)).unwrap();
        steps(&mut both, 8, 8);
        snapshot(&mut both, 2);
        // An image at 2; 1's links recorded (twice: nothing changes); 2's copy on 9 moves to
        // 11; and the refusals.
        assert!(both(keep(img)).unwrap().created);
        both(kept(img, 1)).unwrap();
        both(kept(img, 1)).unwrap();
        assert_eq!(both(kept(empty, 1)), Err(FsError::Invalid));
        assert_eq!(both(kept(img, 3)), Err(FsError::NotFound));
        assert_eq!(
            both(moved(img, 2, &[7, 8], &[7, 11])),
            Err(FsError::Changed)
        );
        assert_eq!(both(moved(img, 2, &[7, 9], &[])), Err(FsError::Invalid));
        assert_eq!(both(moved(empty, 1, &[], &[7])), Err(FsError::Invalid));
        both(moved(img, 2, &[7, 9], &[7, 11])).unwrap();
        both(write(img, 8192)).unwrap();
        steps(&mut both, 16, 8);
        snapshot(&mut both, 3);
        steps(&mut both, 24, 4);
        // Snapshot 2 goes, merged two keys at a time (the store lists its keys at 2).
        both(Command::SnapRetire { shard: S0, snap: 2 }).unwrap();
        let forget = Command::SnapForget { shard: S0, snap: 2 };
        let mut merges = 0;
        while both(forget.clone()) == Err(FsError::NotEmpty) {
            let merge = Command::SnapMerge {
                shard: S0,
                snap: 2,
                max: 2,
            };
            both(merge).unwrap();
            merges += 1;
        }
        assert!(merges > 2, "several merges: {merges}");
        steps(&mut both, 28, 6);
        // Shard 0's registry, through the store's table as through memory: records begun,
        // decided, made ready and deleted; aborted and forgotten; aborted and kept.
        let begin = |name: &str, n: i64| Command::SnapBegin {
            name: name.as_bytes().to_vec(),
            root: ROOT_INO,
            retain_secs: 60,
            time: t(n),
        };
        for (n, name) in ["a", "b", "c", "d"].into_iter().enumerate() {
            both(begin(name, 40 + n as i64)).unwrap();
        }
        assert_eq!(both(begin("a", 45)), Err(FsError::Exists));
        both(Command::SnapDecide {
            snap: 1,
            time: t(41),
        })
        .unwrap();
        both(Command::SnapReady {
            snap: 1,
            time: t(45),
        })
        .unwrap();
        both(Command::SnapDelete {
            snap: 1,
            time: t(46),
        })
        .unwrap();
        both(Command::SnapResolve {
            snap: 2,
            time: t(46),
        })
        .unwrap();
        both(Command::SnapForgetRecord { snap: 2 }).unwrap();
        both(Command::SnapResolve {
            snap: 3,
            time: t(46),
        })
        .unwrap();
        both(Command::SnapDecide {
            snap: 4,
            time: t(44),
        })
        .unwrap();
        assert_eq!(
            both(begin("b", 47)).map(|_| ()),
            Ok(()),
            "b's record is gone"
        );
        assert_eq!(st.snap_records().unwrap(), m.snap_records().unwrap());
        for ino in [img, empty, d] {
            assert_eq!(st.images(ino), m.images(ino), "{ino}'s images");
        }
        for snap in [1, 3] {
            for max in [1, 3, 1000] {
                assert_eq!(st.pre_keys_at(snap, max), m.pre_keys_at(snap, max));
            }
        }
        assert!(m.pre_keys_at(1, 1000).unwrap().len() > 3);
    }
    txn.commit().unwrap();
    let loaded = store::load_shards(&db.begin_read().unwrap(), &[S0]).unwrap();
    let (back, _) = &loaded[&S0];
    assert_eq!(back.dump(), m.dump());
    assert_eq!(back.pre_dirindex, m.pre_dirindex);
    assert_eq!(back.pre_by_snap, m.pre_by_snap);
    assert!(!m.pre_inodes.is_empty() && !m.pre_dirents.is_empty() && !m.pre_xattrs.is_empty());
    assert_eq!(m.snaps.cuts.keys().collect::<Vec<_>>(), [&1, &3]);
    assert_eq!(m.registry.keys().collect::<Vec<_>>(), [&1, &3, &4, &5]);
    let (img, empty) = (
        m.dirents[&(ROOT_INO, b"img".to_vec())].0,
        m.dirents[&(ROOT_INO, b"empty".to_vec())].0,
    );
    assert_eq!(m.images.keys().collect::<Vec<_>>(), [&img, &empty]);
    assert_eq!(m.images[&img].keys().collect::<Vec<_>>(), [&1, &2]);
    assert_eq!(m.linking_images(10), [(img, 2)]);

    // A shard's rows deleted (as before an install is written) hold no image, and written
    // whole again they are the state's.
    let load = || {
        store::load_shards(&db.begin_read().unwrap(), &[S0]).unwrap()[&S0]
            .0
            .clone()
    };
    let txn = db.begin_write().unwrap();
    store::delete_shard(&txn, S0).unwrap();
    txn.commit().unwrap();
    let gone = load();
    assert!(
        gone.images.is_empty() && gone.inodes.is_empty(),
        "{:?}",
        gone.images
    );
    let txn = db.begin_write().unwrap();
    store::write_whole(&mut RedbState::open(&txn, S0).unwrap(), &m).unwrap();
    txn.commit().unwrap();
    assert_eq!(load().dump(), m.dump());
}
