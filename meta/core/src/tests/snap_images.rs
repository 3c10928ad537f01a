//! Data images in the state machine (`snap::image`, `apply::snap_image`): `SnapKeep` makes an
//! image only when a live cut saw the file and no image serves that cut yet, numbers a
//! mirrored image's object from the shard's counter, and leaves no trace when it fails;
//! `SnapKept` and `SnapImageMirrors` change only the image they name; `SnapAdopt` makes a
//! removed file's own object the image of the cut that last saw it linked.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::perm::Cred;
use crate::reducing::{FileReduce, ReduceState, Reduced};
use crate::snap::{needs_image, DataImage, ImageForm, SnapId};
use crate::state::meta;
use crate::tiering::FileTier;
use crate::txn::TxnId;

const SHARD: ShardId = ShardId(0);

fn on(s: &mut MemState, cmd: &Command) -> Result<Outcome, FsError> {
    step_on(SHARD, s, cmd)
}

fn ok(s: &mut MemState, cmd: &Command) -> Outcome {
    on(s, cmd).unwrap_or_else(|e| panic!("{cmd:?}: {e:?}"))
}

/// Freeze, cut and thaw: a whole snapshot of the one shard.
fn snapshot(s: &mut MemState, snap: SnapId) {
    for cmd in [
        Command::SnapFreeze {
            shard: SHARD,
            snap,
            time: t(100),
        },
        Command::SnapCut {
            shard: SHARD,
            snap,
            time: t(101),
        },
        Command::SnapThaw { shard: SHARD, snap },
    ] {
        ok(s, &cmd);
    }
}

fn keep(ino: u64) -> Command {
    Command::SnapKeep { ino, time: t(50) }
}

fn kept(ino: u64, snap: SnapId) -> Command {
    Command::SnapKept { ino, snap }
}

fn moved(ino: u64, snap: SnapId, expect: &[u64], mirrors: &[u64]) -> Command {
    Command::SnapImageMirrors {
        ino,
        snap,
        expect: expect.to_vec(),
        mirrors: mirrors.to_vec(),
    }
}

/// A regular file `name` in the root, placed on data servers 7 and 9 unless `placed` is false.
fn file(s: &mut MemState, name: &str, placed: bool) -> u64 {
    let ino = made(s, create(ROOT_INO, name, FileKind::Regular));
    if placed {
        ok(
            s,
            &Command::SetMirrors {
                ino,
                chunk: 0,
                mirrors: vec![7, 9],
            },
        );
    }
    ino
}

fn unlink(s: &mut MemState, name: &str) {
    let child = child(s, ROOT_INO, name);
    ok(
        s,
        &Command::Unlink {
            parent: ROOT_INO,
            name: name.as_bytes().to_vec(),
            child,
            time: t(20),
        },
    );
}

fn next_ino(s: &MemState) -> u64 {
    s.meta.get(meta::NEXT_INO).copied().unwrap_or(0)
}

fn snaps_of(s: &MemState, ino: u64) -> Vec<SnapId> {
    s.images
        .get(&ino)
        .map(|v| v.keys().copied().collect())
        .unwrap_or_default()
}

#[test]
fn an_image_is_made_once_per_cut_and_only_for_a_file_a_live_cut_saw() {
    let mut s = init();
    let a = file(&mut s, "a", true);
    let empty = file(&mut s, "empty", false);
    let gone = file(&mut s, "gone", true);
    let late_gone = file(&mut s, "late-gone", true);
    // No cut: nothing to keep.
    assert!(!ok(&mut s, &keep(a)).created);
    assert!(s.images.is_empty());

    unlink(&mut s, "gone"); // an orphan (nlink 0) before any cut
    snapshot(&mut s, 1);
    unlink(&mut s, "late-gone"); // linked at cut 1, an orphan after it
    let born_after = file(&mut s, "b", true);
    assert!(!ok(&mut s, &keep(born_after)).created, "born after the cut");
    assert!(!ok(&mut s, &keep(gone)).created, "an orphan at every cut");

    let before = next_ino(&s);
    let out = ok(&mut s, &keep(a));
    assert!(out.created);
    assert_eq!(out.inode.map(|i| i.ino), Some(a));
    let x = SHARD.ino(before);
    assert_eq!(
        s.images[&a][&1],
        DataImage {
            made: t(50),
            form: ImageForm::Mirrored {
                object: x,
                mirrors: vec![7, 9],
                linking: true,
            },
        }
    );
    // The object's number is the shard's, taken from its counter, and no inode's.
    assert_eq!(next_ino(&s), before + 1);
    assert_eq!(ShardId::of_ino(x), ShardId::of_ino(a));
    assert!(!s.inodes.contains_key(&x));
    // Once per cut: a second gate finds the image.
    assert!(!ok(&mut s, &keep(a)).created);
    assert_eq!(next_ino(&s), before + 1);
    assert_eq!(snaps_of(&s, a), [1]);

    // A file without data gets an empty image; one unlinked after the cut, a mirrored one.
    assert!(ok(&mut s, &keep(empty)).created);
    assert_eq!(s.images[&empty][&1].form, ImageForm::Empty);
    assert!(ok(&mut s, &keep(late_gone)).created);
    assert!(s.images[&late_gone][&1].is_linking());

    // Two more cuts: one image serves both (the bytes did not change between them).
    snapshot(&mut s, 2);
    snapshot(&mut s, 3);
    assert_eq!(needs_image(&s, &s.snaps, a), Ok(Some(3)));
    assert!(ok(&mut s, &keep(a)).created);
    assert_eq!(snaps_of(&s, a), [1, 3]);
    assert_eq!(needs_image(&s, &s.snaps, a), Ok(None));
    // The file born after cut 1 is in cut 3; the orphans are in none after cut 1.
    assert!(ok(&mut s, &keep(born_after)).created);
    assert_eq!(snaps_of(&s, born_after), [3]);
    assert!(!ok(&mut s, &keep(late_gone)).created);
    assert!(!ok(&mut s, &keep(gone)).created);
    assert_eq!(snaps_of(&s, gone), Vec::<SnapId>::new());
    // The images' objects are distinct.
    let objects: std::collections::BTreeSet<u64> = s
        .images
        .values()
        .flat_map(|v| v.values())
        .filter_map(|i| match &i.form {
            ImageForm::Mirrored { object, .. } | ImageForm::InBucket { object, .. } => {
                Some(*object)
            }
            ImageForm::Empty => None,
        })
        .collect();
    assert_eq!(objects.len(), 4);
}

#[test]
fn a_retired_cut_needs_no_image_and_an_older_live_one_is_served_by_a_newer_image() {
    let mut s = init();
    let a = file(&mut s, "a", true);
    let b = file(&mut s, "b", true);
    snapshot(&mut s, 1);
    ok(
        &mut s,
        &Command::SnapRetire {
            shard: SHARD,
            snap: 1,
        },
    );
    assert!(
        !ok(&mut s, &keep(a)).created,
        "the only cut is being deleted"
    );

    snapshot(&mut s, 2);
    snapshot(&mut s, 3);
    assert!(ok(&mut s, &keep(a)).created);
    assert_eq!(snaps_of(&s, a), [3]);
    // Cut 3 retired: the image at 3 still serves cut 2 (no change between them), so the
    // next change needs none.
    ok(
        &mut s,
        &Command::SnapRetire {
            shard: SHARD,
            snap: 3,
        },
    );
    assert!(!ok(&mut s, &keep(a)).created);
    // A file with no image yet gets one at the newest live cut.
    assert!(ok(&mut s, &keep(b)).created);
    assert_eq!(snaps_of(&s, b), [2]);
}

fn gone(ino: u64, snap: SnapId) -> Command {
    Command::SnapImageGone { ino, snap }
}

fn retire(s: &mut MemState, snap: SnapId) {
    ok(s, &Command::SnapRetire { shard: SHARD, snap });
}

fn unserved(s: &MemState) -> Vec<(u64, SnapId)> {
    crate::snap::unserved_images(&s.images, &s.snaps, 64)
        .into_iter()
        .map(|(ino, snap, _)| (ino, snap))
        .collect()
}

#[test]
fn an_image_goes_only_once_no_live_cut_reads_it_and_never_while_linking() {
    let mut s = init();
    let a = file(&mut s, "a", true);
    snapshot(&mut s, 1);
    assert!(ok(&mut s, &keep(a)).created);
    ok(&mut s, &kept(a, 1));
    snapshot(&mut s, 2);
    snapshot(&mut s, 3);
    assert!(ok(&mut s, &keep(a)).created);
    ok(&mut s, &kept(a, 3));
    assert_eq!(snaps_of(&s, a), [1, 3]);
    assert!(unserved(&s).is_empty());
    assert_eq!(
        on(&mut s, &gone(a, 1)),
        Err(FsError::Invalid),
        "cut 1 reads it"
    );

    retire(&mut s, 1);
    assert_eq!(unserved(&s), [(a, 1)]);
    let before = s.images.clone();
    ok(&mut s, &gone(a, 1));
    assert_eq!(snaps_of(&s, a), [3]);
    ok(&mut s, &gone(a, 1)); // gone already: nothing changes
    assert_ne!(s.images, before);

    // The image at 3 serves cuts 2 and 3; with 3 retired, 2 still reads it.
    retire(&mut s, 3);
    assert!(unserved(&s).is_empty());
    assert_eq!(on(&mut s, &gone(a, 3)), Err(FsError::Invalid));
    retire(&mut s, 2);
    assert_eq!(unserved(&s), [(a, 3)]);
    ok(&mut s, &gone(a, 3));
    assert!(!s.images.contains_key(&a), "no image left, no row");

    // A linking image is never reclaimed: its links may still be being made.
    snapshot(&mut s, 4);
    assert!(ok(&mut s, &keep(a)).created);
    retire(&mut s, 4);
    assert!(unserved(&s).is_empty());
    assert_eq!(on(&mut s, &gone(a, 4)), Err(FsError::Invalid));
    ok(&mut s, &kept(a, 4));
    assert_eq!(unserved(&s), [(a, 4)]);
    // Under a user's credentials: refused.
    let as_user = Command::As {
        cred: Cred::root(),
        cmd: Box::new(gone(a, 4)),
    };
    assert!(on(&mut s, &as_user).is_err());
    ok(&mut s, &gone(a, 4));
}

#[test]
fn keep_local_images_a_file_with_bytes_in_the_servers_own_store() {
    let mut s = init();
    let empty = file(&mut s, "empty", false);
    let full = file(&mut s, "full", false);
    ok(
        &mut s,
        &Command::Write {
            ino: full,
            end_offset: 4096,
            time: t(30),
            writes: 1,
        },
    );
    snapshot(&mut s, 1);
    let x = next_ino(&s);
    for ino in [empty, full] {
        assert!(ok(&mut s, &Command::SnapKeepLocal { ino, time: t(50) }).created);
    }
    assert_eq!(s.images[&empty][&1].form, ImageForm::Empty);
    assert_eq!(
        s.images[&full][&1].form,
        ImageForm::Mirrored {
            object: x,
            mirrors: Vec::new(),
            linking: true,
        }
    );
    // Once made, nothing more until the next cut, as `SnapKeep`.
    assert!(
        !ok(
            &mut s,
            &Command::SnapKeepLocal {
                ino: full,
                time: t(51)
            }
        )
        .created
    );
}

fn adopt(ino: u64, local: bool) -> Command {
    Command::SnapAdopt {
        ino,
        time: t(60),
        local,
    }
}

#[test]
fn adopt_makes_a_removed_files_own_bytes_the_image_of_the_cut_that_saw_it() {
    let mut s = init();
    let a = file(&mut s, "a", true);
    let early = file(&mut s, "early", true);
    let empty = file(&mut s, "empty", false);
    let local = file(&mut s, "local", false);
    ok(
        &mut s,
        &Command::Write {
            ino: local,
            end_offset: 4096,
            time: t(30),
            writes: 1,
        },
    );
    assert_eq!(
        on(&mut s, &adopt(a, false)),
        Err(FsError::Invalid),
        "linked: its bytes may still change, only through the gate"
    );
    unlink(&mut s, "early");
    assert!(!ok(&mut s, &adopt(early, false)).created, "no cut at all");
    snapshot(&mut s, 1);
    assert!(
        !ok(&mut s, &adopt(early, false)).created,
        "an orphan at every cut: in no snapshot"
    );
    for name in ["a", "empty", "local"] {
        unlink(&mut s, name);
    }
    let counter = next_ino(&s);
    assert!(ok(&mut s, &adopt(a, false)).created);
    assert!(ok(&mut s, &adopt(empty, false)).created);
    assert!(ok(&mut s, &adopt(local, true)).created);
    assert_eq!(next_ino(&s), counter, "the file's own object: no new id");
    assert_eq!(
        s.images[&a][&1].form,
        ImageForm::Mirrored {
            object: a,
            mirrors: vec![7, 9],
            linking: false,
        },
        "nothing to link: the object is the file's"
    );
    assert_eq!(s.images[&empty][&1].form, ImageForm::Empty);
    assert_eq!(
        s.images[&local][&1].form,
        ImageForm::Mirrored {
            object: local,
            mirrors: Vec::new(),
            linking: false,
        }
    );
    let images = s.images.clone();
    assert!(
        ok(&mut s, &adopt(a, false)).created,
        "adopted already: kept for a second reaper too"
    );
    assert_eq!(s.images, images, "and nothing changes");

    // The orphans go; their images stay, read by cut 1 until it is retired, then reclaimed.
    ok(
        &mut s,
        &Command::ForgetOrphans {
            inos: vec![a, early, empty, local],
        },
    );
    for ino in [a, early, empty, local] {
        assert_eq!(s.inode(ino), Ok(None), "{ino} forgotten");
    }
    assert_eq!(on(&mut s, &adopt(a, false)), Err(FsError::Stale(a)));
    assert_eq!(snaps_of(&s, a), [1]);
    assert!(unserved(&s).is_empty());
    retire(&mut s, 1);
    assert_eq!(unserved(&s), [(a, 1), (empty, 1), (local, 1)]);

    // Not a client's to send.
    let b = file(&mut s, "b", true);
    snapshot(&mut s, 2);
    unlink(&mut s, "b");
    let as_root = Command::As {
        cred: Cred::root(),
        cmd: Box::new(adopt(b, false)),
    };
    assert_eq!(on(&mut s, &as_root), Err(FsError::Invalid));
    // An erasure-coded, reduced or evicted orphan cannot be adopted yet (plan step 7).
    s.tier.insert(
        b,
        FileTier {
            evicted: true,
            ..FileTier::default()
        },
    );
    let before = s.images.clone();
    assert_eq!(on(&mut s, &adopt(b, false)), Err(FsError::Invalid));
    assert_eq!(s.images, before);
}

#[test]
fn kept_and_image_mirrors_change_only_the_image_they_name() {
    let mut s = init();
    let a = file(&mut s, "a", true);
    let e = file(&mut s, "e", false);
    snapshot(&mut s, 1);
    ok(&mut s, &keep(a));
    ok(&mut s, &keep(e));
    snapshot(&mut s, 2);
    ok(&mut s, &keep(a));
    assert_eq!(s.linking_images(10), [(a, 1), (a, 2)]);
    assert_eq!(s.linking_images(1), [(a, 1)]);

    ok(&mut s, &kept(a, 1));
    assert!(!s.images[&a][&1].is_linking());
    assert!(s.images[&a][&2].is_linking());
    assert_eq!(s.linking_images(10), [(a, 2)]);
    let after = s.images.clone();
    ok(&mut s, &kept(a, 1)); // again: nothing changes
    assert_eq!(s.images, after);
    assert_eq!(on(&mut s, &kept(a, 3)), Err(FsError::NotFound));
    assert_eq!(on(&mut s, &kept(e, 1)), Err(FsError::Invalid));

    // Compare-and-set of the image's copies.
    assert_eq!(
        on(&mut s, &moved(a, 1, &[7, 8], &[7, 11])),
        Err(FsError::Changed)
    );
    assert_eq!(s.images, after);
    ok(&mut s, &moved(a, 1, &[7, 9], &[7, 11]));
    let ImageForm::Mirrored {
        mirrors, linking, ..
    } = &s.images[&a][&1].form
    else {
        panic!("not mirrored");
    };
    assert_eq!((mirrors.as_slice(), *linking), (&[7, 11][..], false));
    assert_eq!(s.images[&a][&2], after[&a][&2], "the other image moved");
    assert_eq!(
        on(&mut s, &moved(a, 1, &[7, 11], &[])),
        Err(FsError::Invalid)
    );
    assert_eq!(on(&mut s, &moved(e, 1, &[], &[7])), Err(FsError::Invalid));
    assert_eq!(
        on(&mut s, &moved(a, 9, &[7, 9], &[7])),
        Err(FsError::NotFound)
    );
}

#[test]
fn keep_refuses_what_it_cannot_image_and_leaves_no_trace() {
    let mut s = init();
    let dir = made(&mut s, create(ROOT_INO, "d", FileKind::Directory));
    let evicted = file(&mut s, "evicted", true);
    let reduced = file(&mut s, "reduced", true);
    let a = file(&mut s, "a", true);
    snapshot(&mut s, 1);
    // Forms of step 7, set straight in the state: a keep must not image their stale mirrors.
    s.tier.insert(
        evicted,
        FileTier {
            evicted: true,
            ..FileTier::default()
        },
    );
    s.reduces.insert(
        reduced,
        FileReduce {
            epoch: 4,
            state: ReduceState::Reduced(Reduced {
                len: 10,
                recipe: vec![1],
                segments: vec![],
            }),
            stale_copies: vec![],
            retired: false,
        },
    );
    let before = (next_ino(&s), s.images.clone());
    for ino in [dir, evicted, reduced] {
        assert_eq!(on(&mut s, &keep(ino)), Err(FsError::Invalid), "{ino}");
    }
    // Not a client's to send.
    let as_root = Command::As {
        cred: Cred::root(),
        cmd: Box::new(keep(a)),
    };
    assert_eq!(on(&mut s, &as_root), Err(FsError::Invalid));
    for c in [kept(a, 1), moved(a, 1, &[7, 9], &[7])] {
        let as_root = Command::As {
            cred: Cred::root(),
            cmd: Box::new(c),
        };
        assert_eq!(on(&mut s, &as_root), Err(FsError::Invalid));
    }
    // A frozen shard refuses it (the cut is being made), another shard does not hold it.
    ok(
        &mut s,
        &Command::SnapFreeze {
            shard: SHARD,
            snap: 2,
            time: t(102),
        },
    );
    assert_eq!(on(&mut s, &keep(a)), Err(FsError::Busy));
    ok(
        &mut s,
        &Command::SnapAbort {
            shard: SHARD,
            snap: 2,
        },
    );
    assert_eq!(
        step_on(ShardId(1), &mut s, &keep(a)),
        Err(FsError::Elsewhere)
    );
    // A file a transaction holds is busy for all three.
    let txn: TxnId = 1;
    ok(
        &mut s,
        &Command::TxnLock {
            txn,
            coord: SHARD,
            keys: vec![Key::Inode(a)],
            time: t(10),
        },
    );
    assert_eq!(on(&mut s, &keep(a)), Err(FsError::Busy));
    assert_eq!(
        (next_ino(&s), s.images.clone()),
        before,
        "a refusal left a trace"
    );
    ok(&mut s, &Command::TxnAbort { txn });
    ok(&mut s, &keep(a));
    ok(
        &mut s,
        &Command::TxnLock {
            txn: 2,
            coord: SHARD,
            keys: vec![Key::Inode(a)],
            time: t(10),
        },
    );
    assert_eq!(on(&mut s, &kept(a, 1)), Err(FsError::Busy));
    assert_eq!(on(&mut s, &moved(a, 1, &[7, 9], &[7])), Err(FsError::Busy));
    assert!(s.images[&a][&1].is_linking());
}

/// Replicas agree: the same log applied to two states, one through a staging layer per
/// command and one straight, gives the same images and counter.
#[test]
fn images_are_a_function_of_the_log() {
    let build = |staged: bool| {
        let mut s = init();
        let mut log = Vec::new();
        let a = file(&mut s, "a", true);
        let b = file(&mut s, "b", false);
        snapshot(&mut s, 1);
        log.extend([keep(b), keep(a), kept(a, 1), keep(a)]);
        for cmd in &log {
            if staged {
                ok(&mut s, cmd);
            } else {
                apply_on_shard(SHARD, &mut s, cmd).unwrap();
            }
        }
        snapshot(&mut s, 2);
        for cmd in [keep(a), moved(a, 2, &[7, 9], &[9, 12]), keep(b)] {
            if staged {
                ok(&mut s, &cmd);
            } else {
                apply_on_shard(SHARD, &mut s, &cmd).unwrap();
            }
        }
        (s.images.clone(), next_ino(&s))
    };
    let (one, two) = (build(true), build(false));
    assert_eq!(one, two);
    assert_eq!(one.0.len(), 2);
}

// ---- The gate's model: every snapshot reads the bytes its file had at the cut ----

#[derive(Clone, Debug)]
enum Op {
    /// Creates file `f` (if it does not exist yet), placed or not.
    Create {
        f: u8,
        placed: bool,
    },
    /// A change of `f`'s bytes through the gate: `SnapKeep`, then the bytes move on.
    Write {
        f: u8,
    },
    Unlink {
        f: u8,
    },
    /// A snapshot of the shard.
    Cut,
    /// Deletes the `nth` live snapshot: retire, merge all, forget.
    Delete {
        nth: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..5u8, any::<bool>()).prop_map(|(f, placed)| Op::Create { f, placed }),
        6 => (0..5u8).prop_map(|f| Op::Write { f }),
        1 => (0..5u8).prop_map(|f| Op::Unlink { f }),
        2 => Just(Op::Cut),
        1 => any::<u8>().prop_map(|nth| Op::Delete { nth }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Files' bytes are modelled as a version that every write moves on, with the gate
    /// (`SnapKeep`) before each write as the MDS will run it. Whatever the order of writes,
    /// unlinks, cuts and deletions of snapshots, each live snapshot of a file it holds reads
    /// (from the smallest image at or above it, else the live file) the version the file
    /// had at the cut; and an image is made only when a write needs it, never twice for one
    /// cut. After each deletion every image no live cut reads is reclaimed
    /// (`SnapImageGone`), and no read misses one.
    #[test]
    fn every_snapshot_reads_the_bytes_of_its_cut(ops in proptest::collection::vec(op(), 1..60)) {
        let mut s = init();
        let mut inos: [Option<u64>; 5] = [None; 5];
        let mut version = [0u64; 5];
        // (file, image snap) → the version it holds; snap → (file → version at the cut).
        let mut held: BTreeMap<(usize, SnapId), u64> = BTreeMap::new();
        let mut at_cut: BTreeMap<SnapId, BTreeMap<usize, u64>> = BTreeMap::new();
        let mut next_snap: SnapId = 1;
        let name = |f: usize| format!("f{f}");
        for op in &ops {
            match *op {
                Op::Create { f, placed } => {
                    let f = f as usize;
                    if inos[f].is_none() {
                        inos[f] = Some(file(&mut s, &name(f), placed));
                    }
                }
                Op::Write { f } => {
                    let f = f as usize;
                    let Some(ino) = inos[f] else { continue };
                    let latest = s.snaps.latest().map(|(snap, _)| snap);
                    let out = ok(&mut s, &keep(ino));
                    if out.created {
                        let snap = latest.expect("an image needs a cut");
                        prop_assert!(held.insert((f, snap), version[f]).is_none(), "twice at {}", snap);
                        // The gate's links made (an `Empty` image has none to record).
                        let _ = on(&mut s, &kept(ino, snap));
                    }
                    version[f] += 1;
                }
                Op::Unlink { f } => {
                    let f = f as usize;
                    if inos[f].is_some() && child(&s, ROOT_INO, &name(f)) != 0 {
                        unlink(&mut s, &name(f));
                    }
                }
                Op::Cut => {
                    snapshot(&mut s, next_snap);
                    let linked = (0..5)
                        .filter(|f| inos[*f].is_some() && child(&s, ROOT_INO, &name(*f)) != 0)
                        .map(|f| (f, version[f]))
                        .collect();
                    at_cut.insert(next_snap, linked);
                    next_snap += 1;
                }
                Op::Delete { nth } => {
                    let live: Vec<SnapId> = at_cut.keys().copied().collect();
                    if live.is_empty() {
                        continue;
                    }
                    let snap = live[nth as usize % live.len()];
                    ok(&mut s, &Command::SnapRetire { shard: SHARD, snap });
                    ok(&mut s, &Command::SnapMerge { shard: SHARD, snap, max: u32::MAX });
                    ok(&mut s, &Command::SnapForget { shard: SHARD, snap });
                    at_cut.remove(&snap);
                    // The reclaim pass: every image no live cut reads goes (and the reads
                    // below must not miss it).
                    for (ino, img, _) in crate::snap::unserved_images(&s.images, &s.snaps, usize::MAX) {
                        ok(&mut s, &gone(ino, img));
                    }
                }
            }
            // After every step: each live snapshot's files read their cut's version.
            for (snap, files) in &at_cut {
                for (f, want) in files {
                    let ino = inos[*f].expect("created");
                    let attrs = crate::snap::inode_at(&s, *snap, ino).expect("live cut");
                    prop_assert!(attrs.is_some_and(|i| i.nlink > 0), "f{} not in {}", f, snap);
                    let read = match s.images.get(&ino).and_then(|v| v.range(snap..).next()) {
                        Some((img, _)) => held[&(*f, *img)],
                        None => version[*f],
                    };
                    prop_assert_eq!(read, *want, "f{} at snapshot {} after {:?}", f, snap, op);
                }
            }
        }
    }
}

/// Snap-to-object's records: a settled mirrored image serving only old cuts is listed to move;
/// `SnapImageArchived` makes it `InBucket` with its flash copies still named until
/// `SnapImageFlashFreed`; it is reclaimed like any image once no live cut reads it.
#[test]
fn an_image_moves_to_the_bucket_once_its_cuts_are_old_and_is_reclaimed_with_them() {
    use crate::snap::images_to_archive;
    use crate::tiering::{TierCopy, TierPiece};
    let mut s = init();
    let a = file(&mut s, "a", true);
    snapshot(&mut s, 1);
    ok(&mut s, &keep(a));
    let copy = TierCopy {
        gen: u64::MAX,
        change: 0,
        pieces: vec![TierPiece {
            len: 4096,
            sum: [7; 32],
        }],
        at: t(70),
    };
    let archived = |snap| Command::SnapImageArchived {
        ino: a,
        snap,
        copy: copy.clone(),
    };
    let freed = |snap| Command::SnapImageFlashFreed { ino: a, snap };
    let list = |s: &MemState, old: &dyn Fn(SnapId) -> bool| {
        images_to_archive(&s.images, &s.snaps, 16, old)
    };
    assert_eq!(list(&s, &|_| true), Vec::new(), "linking: not settled");
    assert_eq!(on(&mut s, &archived(1)), Err(FsError::Invalid));
    ok(&mut s, &kept(a, 1));
    assert_eq!(list(&s, &|_| false), Vec::new(), "its cut is young");
    let ImageForm::Mirrored {
        object, mirrors, ..
    } = s.images[&a][&1].form.clone()
    else {
        panic!("{:?}", s.images[&a])
    };
    assert_eq!(list(&s, &|c| c == 1), vec![(a, 1, object, mirrors.clone())]);
    assert_eq!(
        on(&mut s, &freed(1)),
        Err(FsError::Invalid),
        "not in the bucket"
    );
    assert_eq!(on(&mut s, &archived(2)), Err(FsError::NotFound));
    ok(&mut s, &archived(1));
    let in_bucket = ImageForm::InBucket {
        object,
        copy: copy.clone(),
        flash: Some(mirrors),
    };
    assert_eq!(s.images[&a][&1].form, in_bucket);
    ok(&mut s, &archived(1));
    assert_eq!(
        s.images[&a][&1].form, in_bucket,
        "recorded twice: the first counts"
    );
    assert_eq!(list(&s, &|_| true), Vec::new(), "moved already");
    ok(&mut s, &freed(1));
    ok(&mut s, &freed(1));
    assert_eq!(
        s.images[&a][&1].form,
        ImageForm::InBucket {
            object,
            copy,
            flash: None
        }
    );
    // Read by cut 1: not to be forgotten; retired, it goes like any image.
    assert_eq!(
        on(&mut s, &Command::SnapImageGone { ino: a, snap: 1 }),
        Err(FsError::Invalid)
    );
    retire(&mut s, 1);
    ok(&mut s, &Command::SnapImageGone { ino: a, snap: 1 });
    assert!(snaps_of(&s, a).is_empty());
}

/// What `snapshot list` counts (`snap::image_uses`): every image a live cut reads, with those
/// cuts. An image made at cut 2 of a file both snapshots 1 and 2 saw serves both (their bytes
/// are shared); the next one, at cut 3, serves 3 alone.
#[test]
fn image_uses_name_the_cuts_each_image_serves() {
    use crate::snap::image_uses;
    let mut s = init();
    let a = file(&mut s, "a", true);
    snapshot(&mut s, 1);
    snapshot(&mut s, 2);
    ok(&mut s, &keep(a));
    ok(&mut s, &kept(a, 2));
    snapshot(&mut s, 3);
    ok(&mut s, &keep(a));
    let mut uses = Vec::new();
    image_uses(&s.images, &s.snaps, 16, &mut uses);
    let got: Vec<(u64, SnapId, Vec<SnapId>)> = uses
        .iter()
        .map(|u| (u.ino, u.snap, u.served.clone()))
        .collect();
    assert_eq!(got, vec![(a, 2, vec![1, 2]), (a, 3, vec![3])]);
    let mut one = Vec::new();
    image_uses(&s.images, &s.snaps, 1, &mut one);
    assert_eq!(one.len(), 1, "bounded by max");
}
