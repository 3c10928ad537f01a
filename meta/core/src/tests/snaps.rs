//! Snapshots in the state machine (`snap`, `apply::snap`): the view at every cut is the state
//! as it was at the cut, whatever changes come after and whichever other snapshots are
//! deleted and merged, in any order; changes keep pre-images only through commands that
//! succeed; and a frozen shard refuses changes and decisions, but not commits.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;
use crate::object::DirEntry;
use crate::snap::{entry_at, inode_at, readdir_at, xattrs_at, PreKey, SnapId, ViewError};
use crate::state::Staged;
use crate::txn::{Decision, TxnId, TxnPart};
use crate::xattr::How;

const SHARD: ShardId = ShardId(0);

fn on(s: &mut MemState, cmd: &Command) -> Result<Outcome, FsError> {
    step_on(SHARD, s, cmd)
}

fn ok(s: &mut MemState, cmd: &Command) -> Outcome {
    on(s, cmd).unwrap_or_else(|e| panic!("{cmd:?}: {e:?}"))
}

fn freeze(snap: SnapId) -> Command {
    Command::SnapFreeze {
        shard: SHARD,
        snap,
        time: t(100),
    }
}

fn cut(snap: SnapId) -> Command {
    Command::SnapCut {
        shard: SHARD,
        snap,
        time: t(101),
    }
}

fn thaw(snap: SnapId) -> Command {
    Command::SnapThaw { shard: SHARD, snap }
}

fn retire(snap: SnapId) -> Command {
    Command::SnapRetire { shard: SHARD, snap }
}

fn merge(snap: SnapId, max: u32) -> Command {
    Command::SnapMerge {
        shard: SHARD,
        snap,
        max,
    }
}

fn forget(snap: SnapId) -> Command {
    Command::SnapForget { shard: SHARD, snap }
}

/// Freeze, cut and thaw: a whole snapshot of the one shard.
fn snapshot(s: &mut MemState, snap: SnapId) {
    for cmd in [freeze(snap), cut(snap), thaw(snap)] {
        ok(s, &cmd);
    }
}

fn set_mode(ino: u64, mode: u32, n: i64) -> Command {
    Command::SetAttr {
        ino,
        mode: Some(mode),
        uid: None,
        gid: None,
        size: None,
        atime: None,
        mtime: None,
        time: t(n),
    }
}

fn lock(txn: TxnId, keys: Vec<Key>) -> Command {
    Command::TxnLock {
        txn,
        coord: SHARD,
        keys,
        time: t(10),
    }
}

fn decide(txn: TxnId, parts: Vec<TxnPart>) -> Command {
    Command::TxnDecide {
        txn,
        parts,
        time: t(11),
    }
}

/// What the live listing of `dir` in `s` gives after `after`, whole.
fn listing(s: &MemState, dir: u64, after: u64) -> Vec<DirEntry> {
    let start = after.max(FIRST_COOKIE - 1) + 1;
    s.dirindex
        .range((dir, start)..=(dir, u64::MAX))
        .map(|((_, cookie), name)| DirEntry {
            name: name.clone(),
            ino: s.dirents[&(dir, name.clone())].0,
            cookie: *cookie,
        })
        .collect()
}

// ---- The oracle: every view at a cut equals a copy of the whole state taken at the cut ----

#[derive(Clone, Debug)]
enum Op {
    Create {
        dir: u8,
        name: u8,
        kind: u8,
    },
    Link {
        file: u8,
        dir: u8,
        name: u8,
    },
    Remove {
        dir: u8,
        name: u8,
    },
    Rename {
        sd: u8,
        sn: u8,
        dd: u8,
        dn: u8,
    },
    SetMode {
        ino: u8,
        mode: u16,
    },
    Write {
        ino: u8,
        end: u16,
    },
    SetXattr {
        ino: u8,
        name: u8,
        value: u8,
    },
    RemoveXattr {
        ino: u8,
        name: u8,
    },
    /// `ForgetOrphans` of every orphan: inodes and their attributes go for good.
    ForgetOrphans,
    /// A new snapshot (freeze, cut, thaw).
    Cut,
    /// Deletion of a live snapshot, the `which`-th.
    Retire {
        which: u8,
    },
    /// A merge step of the `which`-th retired snapshot.
    Merge {
        which: u8,
        max: u8,
    },
    /// `SnapForget` of the `which`-th retired snapshot (refused while it has pre-images).
    Forget {
        which: u8,
    },
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (any::<u8>(), 0..3u8, 0..3u8).prop_map(|(dir, name, kind)| Op::Create { dir, name, kind }),
        2 => (any::<u8>(), any::<u8>(), 0..3u8).prop_map(|(file, dir, name)| Op::Link { file, dir, name }),
        3 => (any::<u8>(), 0..3u8).prop_map(|(dir, name)| Op::Remove { dir, name }),
        3 => (any::<u8>(), 0..3u8, any::<u8>(), 0..3u8)
            .prop_map(|(sd, sn, dd, dn)| Op::Rename { sd, sn, dd, dn }),
        2 => (any::<u8>(), any::<u16>()).prop_map(|(ino, mode)| Op::SetMode { ino, mode }),
        2 => (any::<u8>(), any::<u16>()).prop_map(|(ino, end)| Op::Write { ino, end }),
        2 => (any::<u8>(), 0..2u8, any::<u8>())
            .prop_map(|(ino, name, value)| Op::SetXattr { ino, name, value }),
        1 => (any::<u8>(), 0..2u8).prop_map(|(ino, name)| Op::RemoveXattr { ino, name }),
        1 => Just(Op::ForgetOrphans),
        2 => Just(Op::Cut),
        2 => any::<u8>().prop_map(|which| Op::Retire { which }),
        3 => (any::<u8>(), any::<u8>()).prop_map(|(which, max)| Op::Merge { which, max }),
        1 => any::<u8>().prop_map(|which| Op::Forget { which }),
    ]
}

const NAMES: [&str; 3] = ["a", "b", "c"];

fn pick<T: Copy>(from: &[T], i: u8) -> Option<T> {
    (!from.is_empty()).then(|| from[usize::from(i) % from.len()])
}

fn dirs(s: &MemState) -> Vec<u64> {
    (s.inodes.values())
        .filter(|i| i.kind.is_dir())
        .map(|i| i.ino)
        .collect()
}

/// The namespace command `op` stands for in state `s` (`None`: a snapshot step, or nothing
/// to pick from).
fn namespace_cmd(s: &MemState, op: &Op, n: i64) -> Option<Command> {
    let dirs = dirs(s);
    let inos: Vec<u64> = s.inodes.keys().copied().collect();
    let name = |k: u8| NAMES[usize::from(k) % NAMES.len()].as_bytes().to_vec();
    Some(match *op {
        Op::Create { dir, name: k, kind } => {
            let kind = match kind {
                0 => FileKind::Regular,
                1 => FileKind::Directory,
                _ => FileKind::Symlink {
                    target: vec![b'x'; usize::from(k) + 1],
                },
            };
            Command::Create {
                parent: pick(&dirs, dir)?,
                name: name(k),
                mode: if kind.is_dir() { 0o755 } else { 0o644 },
                kind,
                uid: 1000,
                gid: 1000,
                time: t(n),
                how: CreateHow::Guarded,
            }
        }
        Op::Link { file, dir, name: k } => Command::Link {
            ino: pick(&inos, file)?,
            parent: pick(&dirs, dir)?,
            name: name(k),
            time: t(n),
        },
        Op::Remove { dir, name: k } => {
            let parent = pick(&dirs, dir)?;
            Command::Remove {
                parent,
                child: s.dirents.get(&(parent, name(k))).map_or(0, |e| e.0),
                name: name(k),
                time: t(n),
            }
        }
        Op::Rename { sd, sn, dd, dn } => {
            let (src_parent, dst_parent) = (pick(&dirs, sd)?, pick(&dirs, dd)?);
            let at = |d: u64, k: u8| s.dirents.get(&(d, name(k))).map(|e| e.0);
            Command::Rename {
                src_parent,
                src_name: name(sn),
                src: at(src_parent, sn).unwrap_or(0),
                dst_parent,
                dst_name: name(dn),
                dst: at(dst_parent, dn),
                time: t(n),
            }
        }
        Op::SetMode { ino, mode } => set_mode(pick(&inos, ino)?, u32::from(mode) & 0o777, n),
        Op::Write { ino, end } => Command::Write {
            ino: pick(&inos, ino)?,
            end_offset: u64::from(end),
            time: t(n),
            writes: 1,
        },
        Op::SetXattr {
            ino,
            name: k,
            value,
        } => Command::SetXattr {
            ino: pick(&inos, ino)?,
            name: format!("user.{k}").into_bytes(),
            value: vec![value],
            how: How::Either,
            time: t(n),
        },
        Op::RemoveXattr { ino, name: k } => Command::RemoveXattr {
            ino: pick(&inos, ino)?,
            name: format!("user.{k}").into_bytes(),
            time: t(n),
        },
        Op::ForgetOrphans => Command::ForgetOrphans {
            inos: s.orphans.keys().copied().collect(),
        },
        Op::Cut | Op::Retire { .. } | Op::Merge { .. } | Op::Forget { .. } => return None,
    })
}

/// Every view at every live snapshot against the copy taken at its cut, over every key the
/// copy, the live state or a pre-image knows; listings paged from cookies `paging` picks.
fn check_views(
    s: &MemState,
    copies: &BTreeMap<SnapId, MemState>,
    paging: &[(u8, u8)],
) -> Result<(), TestCaseError> {
    let mut page = paging.iter().cycle();
    for (snap, was) in copies {
        let snap = *snap;
        let inos: BTreeSet<u64> = (was.inodes.keys())
            .chain(s.inodes.keys())
            .chain(s.pre_inodes.keys())
            .chain(was.xattrs.keys())
            .chain(s.pre_xattrs.keys())
            .copied()
            .collect();
        for ino in &inos {
            let got = inode_at(s, snap, *ino);
            prop_assert_eq!(
                got,
                Ok(was.inodes.get(ino).cloned()),
                "inode {} at {}",
                ino,
                snap
            );
            let got = xattrs_at(s, snap, *ino);
            prop_assert_eq!(
                got,
                Ok(was.xattrs.get(ino).cloned()),
                "xattrs {} at {}",
                ino,
                snap
            );
        }
        let names: BTreeSet<&(u64, Vec<u8>)> = (was.dirents.keys())
            .chain(s.dirents.keys())
            .chain(s.pre_dirents.keys())
            .collect();
        for (dir, name) in names {
            let got = entry_at(s, snap, *dir, name);
            let want = was.dirents.get(&(*dir, name.clone())).copied();
            prop_assert_eq!(got, Ok(want), "{}/{:?} at {}", dir, name, snap);
        }
        for dir in dirs(was).into_iter().chain(dirs(s)) {
            let cookies: Vec<u64> = listing(was, dir, 0).iter().map(|e| e.cookie).collect();
            let &(from, size) = page.next().unwrap_or(&(0, 0));
            let after = if from == 0 {
                0
            } else {
                pick(&cookies, from).unwrap_or(0)
            };
            let size = 1 + usize::from(size % 4);
            let mut got = Vec::new();
            let mut at = after;
            loop {
                let (entries, eof) = readdir_at(s, snap, dir, at, size).expect("cut");
                prop_assert!(entries.len() <= size);
                prop_assert!(
                    eof || entries.len() == size,
                    "a short page must be the last"
                );
                at = entries.last().map_or(at, |e| e.cookie);
                got.extend(entries);
                if eof {
                    break;
                }
            }
            prop_assert_eq!(
                got,
                listing(was, dir, after),
                "dir {} at {} after {}",
                dir,
                snap,
                after
            );
        }
    }
    Ok(())
}

/// The derived indexes of pre-images are what a rebuild from the pre-images makes, and no
/// pre-image is kept where no one can read it: at no cut, or for a key (an entry: its
/// directory) born after its cut.
fn check_indexes(s: &MemState) -> Result<(), TestCaseError> {
    let mut rebuilt = s.clone();
    rebuilt.index_pre_images();
    prop_assert_eq!(&rebuilt.pre_dirindex, &s.pre_dirindex);
    prop_assert_eq!(&rebuilt.pre_by_snap, &s.pre_by_snap);
    for (snap, key) in &s.pre_by_snap {
        let owner = match key {
            PreKey::Inode(i) | PreKey::Xattrs(i) => *i,
            PreKey::Entry(d, _) => *d,
        };
        let born = s.snaps.cuts.get(snap).is_some_and(|c| c.born_before(owner));
        prop_assert!(born, "{:?} kept at {}", key, snap);
    }
    Ok(())
}

/// The live tables only: what a state without snapshots would hold.
fn live(s: &MemState) -> Dump {
    let mut d = s.dump();
    d.snaps = Default::default();
    d.pre_inodes.clear();
    d.pre_dirents.clear();
    d.pre_xattrs.clear();
    d
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    /// Random namespace changes with random cuts, the whole state copied at each cut: after
    /// every later step, the views at every live snapshot are the copy, also as other
    /// snapshots are deleted and merged in random order and batch sizes. Every command
    /// answers and changes the live tables as it does with no snapshot at all. Deleting every
    /// snapshot in the end leaves no pre-image; the log replayed gives the same state.
    #[test]
    fn views_at_every_cut_are_the_state_copied_at_the_cut(
        ops in proptest::collection::vec(arb_op(), 1..70),
        paging in proptest::collection::vec((any::<u8>(), any::<u8>()), 1..16),
        end in proptest::collection::vec(any::<u8>(), 1..16),
    ) {
        let mut s = init();
        let mut plain = init();
        let mut copies: BTreeMap<SnapId, MemState> = BTreeMap::new();
        let mut retired: Vec<SnapId> = Vec::new();
        let mut next: SnapId = 1;
        let mut log: Vec<Command> = Vec::new();
        for (n, op) in ops.iter().enumerate() {
            let n = i64::try_from(n).expect("small") + 2;
            match *op {
                Op::Cut => {
                    for cmd in [freeze(next), cut(next), thaw(next)] {
                        prop_assert_eq!(on(&mut s, &cmd), Ok(Outcome::default()));
                        log.push(cmd);
                    }
                    copies.insert(next, s.clone());
                    next += 1;
                }
                Op::Retire { which } => {
                    let live: Vec<SnapId> = copies.keys().copied().collect();
                    let Some(snap) = pick(&live, which) else { continue };
                    let cmd = retire(snap);
                    prop_assert_eq!(on(&mut s, &cmd), Ok(Outcome::default()));
                    log.push(cmd);
                    copies.remove(&snap);
                    retired.push(snap);
                    prop_assert_eq!(inode_at(&s, snap, ROOT_INO), Err(ViewError::Retired(snap)));
                }
                Op::Merge { which, max } => {
                    let Some(snap) = pick(&retired, which) else { continue };
                    let cmd = merge(snap, 1 + u32::from(max % 4));
                    prop_assert_eq!(on(&mut s, &cmd), Ok(Outcome::default()));
                    log.push(cmd);
                }
                Op::Forget { which } => {
                    let Some(snap) = pick(&retired, which) else { continue };
                    let left = s.pre_by_snap.iter().any(|(at, _)| *at == snap);
                    let cmd = forget(snap);
                    let got = on(&mut s, &cmd);
                    log.push(cmd);
                    if left {
                        prop_assert_eq!(got, Err(FsError::NotEmpty));
                    } else {
                        prop_assert_eq!(got, Ok(Outcome::default()));
                        retired.retain(|r| *r != snap);
                        prop_assert_eq!(inode_at(&s, snap, ROOT_INO), Err(ViewError::NotCut(snap)));
                    }
                }
                _ => {
                    let Some(cmd) = namespace_cmd(&s, op, n) else { continue };
                    let got = on(&mut s, &cmd);
                    prop_assert_eq!(&got, &on(&mut plain, &cmd), "{:?}", cmd);
                    prop_assert_eq!(live(&s), live(&plain), "{:?}", cmd);
                    log.push(cmd);
                }
            }
            if s.snaps.cuts.is_empty() {
                prop_assert!(s.pre_by_snap.is_empty(), "pre-images with no cut");
            }
            check_views(&s, &copies, &paging)?;
            check_indexes(&s)?;
        }
        // Every snapshot but one deleted and merged in random order and batches, the one left
        // checked after each step; then that one too, which leaves nothing kept.
        let live: Vec<SnapId> = copies.keys().copied().collect();
        let keep = pick(&live, end[0]);
        for snap in live.into_iter().filter(|l| Some(*l) != keep) {
            ok(&mut s, &retire(snap));
            log.push(retire(snap));
            copies.remove(&snap);
            retired.push(snap);
        }
        for (i, c) in (0..).zip(end.iter().cycle()) {
            let Some(snap) = pick(&retired, *c) else { break };
            prop_assert!(i < 100_000, "merges do not end");
            let cmd = if s.pre_by_snap.iter().any(|(at, _)| *at == snap) {
                merge(snap, 1 + u32::from(c % 3))
            } else {
                retired.retain(|r| *r != snap);
                forget(snap)
            };
            ok(&mut s, &cmd);
            log.push(cmd);
            check_views(&s, &copies, &paging)?;
        }
        check_indexes(&s)?;
        if let Some(snap) = keep {
            for cmd in [retire(snap), merge(snap, u32::MAX), forget(snap)] {
                ok(&mut s, &cmd);
                log.push(cmd);
            }
        }
        prop_assert!(s.snaps.cuts.is_empty());
        prop_assert!(s.pre_inodes.is_empty() && s.pre_dirents.is_empty());
        prop_assert!(s.pre_xattrs.is_empty() && s.pre_by_snap.is_empty());
        prop_assert!(s.pre_dirindex.is_empty());
        let mut replayed = init();
        for cmd in &log {
            let _ = on(&mut replayed, cmd);
        }
        prop_assert_eq!(replayed.dump(), s.dump());
    }
}

// ---- The guards of the cut ----

#[test]
fn a_frozen_shard_refuses_changes_and_locks_with_busy_and_changes_nothing() {
    let mut s = init();
    let f = made(&mut s, create(ROOT_INO, "f", FileKind::Regular));
    ok(&mut s, &freeze(1));
    let before = s.dump();
    let request = Command::Request {
        req: ClientRequest {
            session: [1; 16],
            slot: 0,
            seqid: 1,
            op: 0,
        },
        at: t(3),
        cmd: Box::new(set_mode(f, 0o600, 3)),
        answer: None,
    };
    for cmd in [
        create(ROOT_INO, "g", FileKind::Regular),
        set_mode(f, 0o600, 3),
        request,
        lock(1, vec![Key::Inode(f)]),
        Command::SetDrain {
            ds: 7,
            draining: true,
        },
    ] {
        assert_eq!(on(&mut s, &cmd), Err(FsError::Busy), "{cmd:?}");
    }
    // Another snapshot waits its turn; the same freeze again changes nothing.
    assert_eq!(on(&mut s, &freeze(2)), Err(FsError::Busy));
    ok(&mut s, &freeze(1));
    ok(&mut s, &Command::Noop);
    assert_eq!(s.dump(), before);
    // Cut: changes flow again, and keep the view at the cut.
    ok(&mut s, &cut(1));
    assert_eq!(s.snaps.freeze, None);
    ok(&mut s, &set_mode(f, 0o600, 4));
    assert_eq!(s.inodes[&f].mode, 0o600);
    assert_eq!(inode_at(&s, 1, f).unwrap().map(|i| i.mode), Some(0o644));
}

#[test]
fn decisions_abort_from_the_freeze_to_the_thaw_and_commits_pass() {
    let mut s = init();
    let f = made(&mut s, create(ROOT_INO, "f", FileKind::Regular));
    let g = made(&mut s, create(ROOT_INO, "g", FileKind::Regular));
    // 1: locked, undecided at the freeze. 2: decided before it, not yet committed.
    // 3: locked, to be released during the freeze.
    ok(&mut s, &lock(1, vec![Key::Inode(f)]));
    ok(&mut s, &lock(2, vec![Key::Entries(ROOT_INO)]));
    let part = TxnPart {
        shard: SHARD,
        dirents: vec![(ROOT_INO, b"h".to_vec(), Some((f, 40)))],
        ..TxnPart::default()
    };
    ok(&mut s, &decide(2, vec![part.clone()]));
    ok(&mut s, &lock(3, vec![Key::Inode(g)]));

    ok(&mut s, &freeze(1));
    assert_eq!(on(&mut s, &decide(1, Vec::new())), Err(FsError::Aborted));
    // Refused, so nothing recorded: the coordinator's release takes the lock away.
    assert_eq!(s.txns[&1].decision, None);
    assert!(s.txns[&1].prepared.is_some());
    // A decision made before the freeze answers as before, and its commit is drained.
    ok(&mut s, &decide(2, vec![part.clone()]));
    ok(&mut s, &Command::TxnCommit { txn: 2, part });
    assert_eq!(s.dirents[&(ROOT_INO, b"h".to_vec())], (f, 40));
    ok(&mut s, &Command::TxnAbort { txn: 3 });
    assert_eq!(s.locks.get(&Key::Inode(g)), None);
    assert_eq!(
        on(&mut s, &lock(4, vec![Key::Inode(g)])),
        Err(FsError::Busy)
    );

    // Cut, not thawed: locks are taken again, decisions still abort.
    ok(&mut s, &cut(1));
    ok(&mut s, &lock(4, vec![Key::Inode(g)]));
    assert_eq!(on(&mut s, &decide(1, Vec::new())), Err(FsError::Aborted));
    assert_eq!(on(&mut s, &decide(4, Vec::new())), Err(FsError::Aborted));

    ok(&mut s, &thaw(1));
    ok(&mut s, &decide(4, Vec::new()));
    assert!(matches!(s.txns[&4].decision, Some(Decision::Commit { .. })));
}

#[test]
fn a_commit_keeps_pre_images_and_a_failed_one_keeps_none() {
    let mut s = init();
    let f = made(&mut s, create(ROOT_INO, "f", FileKind::Regular));
    let was = s.inodes[&f].clone();
    snapshot(&mut s, 1);
    ok(
        &mut s,
        &lock(7, vec![Key::Inode(f), Key::Entries(ROOT_INO)]),
    );
    let mut changed = was.clone();
    changed.mode = 0o600;
    // Writes the inode and the entry, then fails on a counter no shard has.
    let bad = TxnPart {
        shard: SHARD,
        inodes: vec![(f, Some(changed.clone()))],
        dirents: vec![(ROOT_INO, b"f".to_vec(), None)],
        meta: vec![("no such counter".into(), 1)],
        ..TxnPart::default()
    };
    let bad = Command::TxnCommit { txn: 7, part: bad };
    // The failing command did keep pre-images, in its own buffer...
    let mut staged = Staged::new(&s);
    assert!(matches!(
        apply_on_shard(SHARD, &mut staged, &bad),
        Err(FsError::Corrupt(_))
    ));
    let thrown = staged.into_changes();
    assert!(thrown.pre_inodes.contains_key(&f));
    assert!(thrown.pre_dirents.contains_key(&(ROOT_INO, b"f".to_vec())));
    // ...which goes with the rest of it.
    assert!(matches!(on(&mut s, &bad), Err(FsError::Corrupt(_))));
    assert!(s.pre_inodes.is_empty() && s.pre_dirents.is_empty());
    assert!(s.pre_by_snap.is_empty() && s.pre_dirindex.is_empty());

    let good = TxnPart {
        shard: SHARD,
        inodes: vec![(f, Some(changed))],
        dirents: vec![(ROOT_INO, b"f".to_vec(), None)],
        ..TxnPart::default()
    };
    ok(&mut s, &Command::TxnCommit { txn: 7, part: good });
    assert_eq!(s.inodes[&f].mode, 0o600);
    assert_eq!(inode_at(&s, 1, f), Ok(Some(was)));
    let cookie = FIRST_COOKIE;
    assert_eq!(entry_at(&s, 1, ROOT_INO, b"f"), Ok(Some((f, cookie))));
    assert_eq!(s.dirents.get(&(ROOT_INO, b"f".to_vec())), None);
    let (list, eof) = readdir_at(&s, 1, ROOT_INO, 0, 10).unwrap();
    assert!(eof);
    assert_eq!(
        list,
        vec![DirEntry {
            name: b"f".to_vec(),
            ino: f,
            cookie
        }]
    );
}

#[test]
fn snapshot_steps_refuse_what_the_phase_does_not_allow() {
    let mut s = init();
    let f = made(&mut s, create(ROOT_INO, "f", FileKind::Regular));
    assert_eq!(
        on(&mut s, &cut(1)),
        Err(FsError::Invalid),
        "cut without a freeze"
    );
    assert_eq!(on(&mut s, &freeze(0)), Err(FsError::Invalid));
    assert_eq!(
        on(&mut s, &thaw(1)),
        Err(FsError::Invalid),
        "no cut to thaw"
    );
    // Given up before its cut: the freeze ends, no cut stays.
    ok(&mut s, &freeze(1));
    ok(
        &mut s,
        &Command::SnapAbort {
            shard: SHARD,
            snap: 1,
        },
    );
    assert_eq!(s.snaps, Default::default());
    ok(&mut s, &set_mode(f, 0o600, 3));
    assert!(s.pre_inodes.is_empty());

    snapshot(&mut s, 2);
    assert_eq!(s.snaps.cuts[&2].next_ino, ShardId::local(f) + 1);
    assert_eq!(
        on(&mut s, &freeze(1)),
        Err(FsError::Invalid),
        "older than a cut"
    );
    assert_eq!(
        on(
            &mut s,
            &Command::SnapAbort {
                shard: SHARD,
                snap: 2
            }
        ),
        Err(FsError::Invalid),
        "cut: decided"
    );
    assert_eq!(
        on(&mut s, &merge(2, 10)),
        Err(FsError::Invalid),
        "not retired"
    );
    assert_eq!(on(&mut s, &forget(2)), Err(FsError::Invalid), "not retired");
    // Another shard's step, or one on a client's behalf.
    let other = Command::SnapRetire {
        shard: ShardId(1),
        snap: 2,
    };
    assert_eq!(on(&mut s, &other), Err(FsError::Invalid));
    let as_client = Command::As {
        cred: crate::perm::Cred::root(),
        cmd: Box::new(retire(2)),
    };
    assert_eq!(on(&mut s, &as_client), Err(FsError::Invalid));

    ok(&mut s, &set_mode(f, 0o640, 4));
    ok(&mut s, &retire(2));
    assert_eq!(on(&mut s, &forget(2)), Err(FsError::NotEmpty));
    // A change now, with no live cut, keeps nothing.
    ok(&mut s, &set_mode(f, 0o644, 5));
    assert_eq!(s.pre_inodes[&f].len(), 1);
    ok(&mut s, &merge(2, 10));
    ok(&mut s, &forget(2));
    assert_eq!(s.snaps.cuts.len(), 0);
    assert!(s.pre_inodes.is_empty());
    assert_eq!(inode_at(&s, 2, f), Err(ViewError::NotCut(2)));
}

// ---- Shard 0's registry (`snap::registry`) ----

fn begin(name: &str, n: i64) -> Command {
    Command::SnapBegin {
        name: name.as_bytes().to_vec(),
        root: ROOT_INO,
        retain_secs: 3600,
        time: t(n),
    }
}

fn state_of(s: &MemState, snap: SnapId) -> Option<crate::snap::SnapState> {
    s.registry.get(&snap).map(|r| r.state)
}

#[test]
fn the_registry_decides_a_snapshot_once_and_aborts_only_an_undecided_one() {
    use crate::snap::{SnapState, FREEZE_MAX};
    let mut s = init();
    ok(&mut s, &begin("a", 10));
    ok(&mut s, &begin("b", 10));
    // Ids from 1, in order; a name is taken while its record is not aborted.
    assert_eq!(s.registry.keys().copied().collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(s.registry[&1].name, b"a");
    assert_eq!(on(&mut s, &begin("a", 11)), Err(FsError::Exists));
    assert_eq!(on(&mut s, &begin("x/y", 11)), Err(FsError::Invalid));
    assert_eq!(on(&mut s, &begin("", 11)), Err(FsError::Invalid));

    // The commit point: once, and a resend (or a recovery's cut) answers as before.
    let decide = |snap, n| Command::SnapDecide { snap, time: t(n) };
    let resolve = |snap, n| Command::SnapResolve { snap, time: t(n) };
    ok(&mut s, &decide(1, 11));
    assert_eq!(state_of(&s, 1), Some(SnapState::Decided { at: t(11) }));
    ok(&mut s, &decide(1, 12));
    ok(&mut s, &resolve(1, 13));
    assert_eq!(state_of(&s, 1), Some(SnapState::Decided { at: t(11) }));
    // A recovery aborts an undecided one; its decision then fails, and its name is free.
    ok(&mut s, &resolve(2, 12));
    assert_eq!(state_of(&s, 2), Some(SnapState::Aborted { at: t(12) }));
    assert_eq!(on(&mut s, &decide(2, 12)), Err(FsError::Aborted));
    assert_eq!(
        on(&mut s, &decide(99, 12)),
        Err(FsError::Aborted),
        "unknown"
    );
    ok(&mut s, &begin("b", 13));
    assert_eq!(s.registry[&3].name, b"b");
    // Too long frozen: refused, and nothing recorded (the coordinator resolves it).
    let late = 13 + i64::try_from(FREEZE_MAX.as_secs()).unwrap() + 1;
    assert_eq!(on(&mut s, &decide(3, late)), Err(FsError::Aborted));
    assert_eq!(state_of(&s, 3), Some(SnapState::Pending { since: t(13) }));

    // Ready only once decided; deleting only once ready.
    let ready = |snap, n| Command::SnapReady { snap, time: t(n) };
    let delete = |snap, n| Command::SnapDelete { snap, time: t(n) };
    assert_eq!(on(&mut s, &ready(3, 14)), Err(FsError::Invalid));
    assert_eq!(on(&mut s, &ready(2, 14)), Err(FsError::Invalid));
    assert_eq!(on(&mut s, &delete(1, 14)), Err(FsError::Busy), "decided");
    assert_eq!(on(&mut s, &delete(3, 14)), Err(FsError::Busy), "pending");
    assert_eq!(on(&mut s, &delete(2, 14)), Err(FsError::Invalid), "aborted");
    assert_eq!(on(&mut s, &delete(9, 14)), Err(FsError::NotFound));
    ok(&mut s, &ready(1, 14));
    ok(&mut s, &ready(1, 15));
    assert_eq!(state_of(&s, 1), Some(SnapState::Ready { at: t(14) }));
    ok(&mut s, &delete(1, 16));
    ok(&mut s, &delete(1, 17));
    assert_eq!(state_of(&s, 1), Some(SnapState::Deleting { at: t(16) }));
    ok(&mut s, &ready(1, 18));
    assert_eq!(state_of(&s, 1), Some(SnapState::Deleting { at: t(16) }));

    // Forgetting: aborted and deleted records only.
    let forget = |snap| Command::SnapForgetRecord { snap };
    assert_eq!(on(&mut s, &forget(3)), Err(FsError::Invalid));
    ok(&mut s, &forget(2));
    ok(&mut s, &forget(1));
    ok(&mut s, &forget(1));
    assert_eq!(s.registry.keys().copied().collect::<Vec<_>>(), vec![3]);
    // Ids are never reused.
    ok(&mut s, &begin("c", 20));
    assert!(s.registry.contains_key(&4));
    assert_eq!(s.meta[crate::state::meta::NEXT_SNAP], 5);
}

#[test]
fn registry_steps_run_on_shard_0_only_in_every_phase_and_never_for_a_client() {
    let mut s = init();
    // Shard 0 frozen for a snapshot: its registry steps still pass (the decision is made
    // while every shard, shard 0 too, is frozen); an ordinary change waits.
    ok(&mut s, &begin("a", 10));
    ok(&mut s, &freeze(1));
    ok(
        &mut s,
        &Command::SnapDecide {
            snap: 1,
            time: t(11),
        },
    );
    assert_eq!(
        on(&mut s, &create(ROOT_INO, "f", FileKind::Regular)),
        Err(FsError::Busy)
    );
    ok(&mut s, &cut(1));
    ok(
        &mut s,
        &Command::SnapReady {
            snap: 1,
            time: t(12),
        },
    );
    // Not on another shard, and never on a client's behalf.
    let elsewhere = step_on(ShardId(1), &mut s, &begin("b", 13));
    assert_eq!(elsewhere, Err(FsError::Invalid));
    let as_client = Command::As {
        cred: crate::perm::Cred::root(),
        cmd: Box::new(begin("b", 13)),
    };
    assert_eq!(on(&mut s, &as_client), Err(FsError::Invalid));
    assert_eq!(s.registry.len(), 1);
    // A failed step leaves nothing behind, counter included.
    let before = s.dump();
    assert_eq!(on(&mut s, &begin("a", 14)), Err(FsError::Exists));
    assert_eq!(s.dump(), before);
}

#[test]
fn the_registry_is_bounded() {
    let mut s = init();
    for i in 0..crate::snap::registry::MAX_SNAPSHOTS {
        ok(&mut s, &begin(&format!("s{i}"), 1));
    }
    assert_eq!(on(&mut s, &begin("one-more", 1)), Err(FsError::NoSpace));
    // An aborted one forgotten makes room.
    ok(
        &mut s,
        &Command::SnapResolve {
            snap: 1,
            time: t(2),
        },
    );
    ok(&mut s, &Command::SnapForgetRecord { snap: 1 });
    ok(&mut s, &begin("one-more", 3));
}
