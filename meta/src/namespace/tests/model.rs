//! Rules of link/unlink/rename and cookie stability, checked three ways: targeted cases on the
//! in-memory model, invariants after every step of random command sequences, and the redb-backed
//! namespace agreeing with the model step by step.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;

fn ok(s: &mut MemState, cmd: Command) -> Outcome {
    step(s, &cmd).unwrap_or_else(|e| panic!("{cmd:?}: {e:?}"))
}

/// A rename of `sp/sn` to `dp/dn` as a proposer would build it: naming what the names hold now.
fn rename(s: &MemState, sp: u64, sn: &str, dp: u64, dn: &str) -> Command {
    let dst = child(s, dp, dn);
    Command::Rename {
        src_parent: sp,
        src_name: sn.into(),
        src: child(s, sp, sn),
        dst_parent: dp,
        dst_name: dn.into(),
        dst: (dst != 0).then_some(dst),
        time: t(1000),
    }
}

/// Builds the rename against `s` and applies it.
fn mv(s: &mut MemState, sp: u64, sn: &str, dp: u64, dn: &str) -> Result<Outcome, FsError> {
    let cmd = rename(s, sp, sn, dp, dn);
    step(s, &cmd)
}

fn ino_of(s: &MemState, dir: u64, name: &str) -> Option<u64> {
    s.dirents
        .get(&(dir, name.as_bytes().to_vec()))
        .map(|(i, _)| *i)
}

/// Checks every structural invariant of the state; returns a description of the first breach.
fn check_invariants(s: &MemState) -> Result<(), String> {
    let mut links: BTreeMap<u64, u32> = BTreeMap::new();
    let mut subdirs: BTreeMap<u64, u32> = BTreeMap::new();
    let mut dir_parent: BTreeMap<u64, u64> = BTreeMap::new();
    let mut cookies: BTreeSet<(u64, u64)> = BTreeSet::new();
    for ((dir, name), (ino, cookie)) in &s.dirents {
        let d = s
            .inodes
            .get(dir)
            .ok_or(format!("entry in missing dir {dir}"))?;
        if !d.kind.is_dir() {
            return Err(format!("entry {name:?} in non-dir {dir}"));
        }
        let i = s
            .inodes
            .get(ino)
            .ok_or(format!("entry {name:?} -> missing {ino}"))?;
        if *cookie < FIRST_COOKIE || *cookie >= s.cookies.get(dir).copied().unwrap_or(FIRST_COOKIE)
        {
            return Err(format!("cookie {cookie} out of range in {dir}"));
        }
        if !cookies.insert((*dir, *cookie)) {
            return Err(format!("cookie {cookie} used twice in {dir}"));
        }
        *links.entry(*ino).or_default() += 1;
        if i.kind.is_dir() {
            *subdirs.entry(*dir).or_default() += 1;
            if dir_parent.insert(*ino, *dir).is_some() {
                return Err(format!("dir {ino} has two names"));
            }
        }
    }
    let mut bytes = 0;
    for (ino, i) in &s.inodes {
        if i.kind.is_dir() {
            let want = 2 + subdirs.get(ino).copied().unwrap_or(0);
            if i.nlink != want {
                return Err(format!("dir {ino} nlink {} want {want}", i.nlink));
            }
            if *ino != ROOT_INO && dir_parent.get(ino) != Some(&i.parent) {
                return Err(format!("dir {ino} parent field {} wrong", i.parent));
            }
            // Every directory reaches the root.
            let mut cur = *ino;
            for _ in 0..=s.inodes.len() {
                if cur == ROOT_INO {
                    break;
                }
                cur = dir_parent
                    .get(&cur)
                    .copied()
                    .ok_or(format!("dir {ino} detached"))?;
            }
            if cur != ROOT_INO {
                return Err(format!("dir {ino} in a cycle"));
            }
        } else {
            let n = links.get(ino).copied().unwrap_or(0);
            if i.nlink != n {
                return Err(format!("ino {ino} nlink {} but {n} entries", i.nlink));
            }
            let orphan = s.orphans.contains_key(ino);
            if orphan != (n == 0) || (n == 0 && i.kind != FileKind::Regular) {
                return Err(format!("ino {ino} orphan flag {orphan} with {n} links"));
            }
        }
        if i.kind == FileKind::Regular {
            bytes += i.size;
        }
    }
    if s.meta.get(state::meta::FILES).copied() != Some(s.inodes.len() as u64) {
        return Err("files counter".into());
    }
    if s.meta.get(state::meta::BYTES).copied().unwrap_or(0) != bytes {
        return Err("bytes counter".into());
    }
    Ok(())
}

#[test]
fn rename_rules() {
    let mut s = init();
    let d = made(&mut s, create(ROOT_INO, "d", FileKind::Directory));
    let sub = made(&mut s, create(d, "sub", FileKind::Directory));
    let deep = made(&mut s, create(sub, "deep", FileKind::Directory));
    let f = made(&mut s, create(ROOT_INO, "f", FileKind::Regular));
    let g = made(&mut s, create(ROOT_INO, "g", FileKind::Regular));
    let empty = made(&mut s, create(ROOT_INO, "empty", FileKind::Directory));
    made(&mut s, create(deep, "x", FileKind::Regular));

    // A directory into its own subtree, or onto itself as parent.
    assert_eq!(mv(&mut s, ROOT_INO, "d", deep, "d2"), Err(FsError::Invalid));
    assert_eq!(mv(&mut s, ROOT_INO, "d", d, "d2"), Err(FsError::Invalid));
    // Kind mismatches.
    assert_eq!(
        mv(&mut s, ROOT_INO, "f", ROOT_INO, "empty"),
        Err(FsError::IsDir)
    );
    assert_eq!(
        mv(&mut s, ROOT_INO, "empty", ROOT_INO, "f"),
        Err(FsError::NotDir)
    );
    // Directory over a non-empty directory.
    assert_eq!(
        mv(&mut s, ROOT_INO, "empty", d, "sub"),
        Err(FsError::NotEmpty)
    );
    assert_eq!(
        mv(&mut s, ROOT_INO, "nope", ROOT_INO, "x"),
        Err(FsError::NotFound)
    );
    check_invariants(&s).unwrap();

    // A rename built before the names changed is refused, and changes nothing.
    let stale = rename(&s, ROOT_INO, "f", ROOT_INO, "g");
    let snapshot = s.dump();
    let mut wrong_src = stale.clone();
    if let Command::Rename { src, .. } = &mut wrong_src {
        assert_eq!(*src, f);
        *src = g;
    }
    assert_eq!(step(&mut s, &wrong_src), Err(FsError::Changed));
    let mut wrong_dst = stale.clone();
    if let Command::Rename { dst, .. } = &mut wrong_dst {
        assert_eq!(*dst, Some(g));
        *dst = None;
    }
    assert_eq!(step(&mut s, &wrong_dst), Err(FsError::Changed));
    assert_eq!(s.dump(), snapshot);

    // File over file: atomic replacement, the victim is orphaned.
    let before = s.dirents[&(ROOT_INO, b"g".to_vec())].1;
    let out = step(&mut s, &stale).unwrap();
    assert_eq!(out.effects, vec![Effect::Orphaned(g)]);
    assert_eq!(ino_of(&s, ROOT_INO, "g"), Some(f));
    assert_eq!(ino_of(&s, ROOT_INO, "f"), None);
    assert!(
        s.dirents[&(ROOT_INO, b"g".to_vec())].1 > before,
        "a new entry gets a new cookie"
    );
    // Directory over an empty directory, across parents.
    let out = mv(&mut s, sub, "deep", ROOT_INO, "empty").unwrap();
    assert_eq!(out.effects, vec![Effect::Freed(empty)]);
    assert_eq!(s.inodes[&deep].parent, ROOT_INO);
    assert_eq!(s.inodes[&sub].nlink, 2);
    let dc = out.dir.unwrap();
    let ddc = out.dst_dir.unwrap();
    assert!(dc.after > dc.before && ddc.after > ddc.before);
    check_invariants(&s).unwrap();

    // Two names of one file: nothing happens.
    ok(
        &mut s,
        Command::Link {
            ino: f,
            parent: d,
            name: b"h".to_vec(),
            time: t(5),
        },
    );
    let snapshot = s.dump();
    let out = mv(&mut s, ROOT_INO, "g", d, "h").unwrap();
    assert_eq!(out.dir.unwrap().before, out.dir.unwrap().after);
    assert_eq!(s.dump(), snapshot);
    check_invariants(&s).unwrap();
}

#[test]
fn link_unlink_rmdir_rules() {
    let mut s = init();
    let d = made(&mut s, create(ROOT_INO, "d", FileKind::Directory));
    let f = made(&mut s, create(d, "f", FileKind::Regular));
    let sym = Command::Create {
        parent: ROOT_INO,
        name: b"l".to_vec(),
        kind: FileKind::Symlink {
            target: b"d/f".to_vec(),
        },
        mode: 0o777,
        uid: 0,
        gid: 0,
        time: t(3),
        how: CreateHow::Guarded,
    };
    let sym = ok(&mut s, sym).inode.unwrap();
    assert_eq!(sym.size, 3);
    let link = |ino, parent, name: &str| Command::Link {
        ino,
        parent,
        name: name.into(),
        time: t(9),
    };
    assert_eq!(step(&mut s, &link(d, ROOT_INO, "d2")), Err(FsError::IsDir));
    assert_eq!(step(&mut s, &link(f, ROOT_INO, "d")), Err(FsError::Exists));
    assert_eq!(step(&mut s, &link(f, f, "x")), Err(FsError::NotDir));
    assert_eq!(ok(&mut s, link(f, ROOT_INO, "f2")).inode.unwrap().nlink, 2);
    let rm = |s: &MemState, parent, name: &str| Command::Rmdir {
        parent,
        name: name.into(),
        child: child(s, parent, name),
        time: t(10),
    };
    let un = |s: &MemState, parent, name: &str| Command::Unlink {
        parent,
        name: name.into(),
        child: child(s, parent, name),
        time: t(10),
    };
    let c = rm(&s, ROOT_INO, "d");
    assert_eq!(step(&mut s, &c), Err(FsError::NotEmpty));
    let c = un(&s, ROOT_INO, "d");
    assert_eq!(step(&mut s, &c), Err(FsError::IsDir));
    let c = rm(&s, ROOT_INO, "f2");
    assert_eq!(step(&mut s, &c), Err(FsError::NotDir));
    // A removal built for another object than the name holds now changes nothing.
    let mut c = un(&s, d, "f");
    if let Command::Unlink { child, .. } = &mut c {
        assert_eq!(*child, f);
        *child = d;
    }
    assert_eq!(step(&mut s, &c), Err(FsError::Changed));
    let c = un(&s, d, "f");
    assert_eq!(ok(&mut s, c).effects, vec![]);
    let c = un(&s, ROOT_INO, "l");
    assert_eq!(ok(&mut s, c).effects, vec![Effect::Freed(sym.ino)]);
    let c = rm(&s, ROOT_INO, "d");
    assert_eq!(ok(&mut s, c).effects, vec![Effect::Freed(d)]);
    assert_eq!(s.inodes[&ROOT_INO].nlink, 2);
    let c = un(&s, ROOT_INO, "f2");
    assert_eq!(ok(&mut s, c).effects, vec![Effect::Orphaned(f)]);
    assert_eq!(
        step(&mut s, &link(f, ROOT_INO, "back")),
        Err(FsError::NotFound)
    );
    assert_eq!(
        step(&mut s, &Command::Forget { ino: ROOT_INO }),
        Err(FsError::Invalid)
    );
    ok(&mut s, Command::Forget { ino: f });
    check_invariants(&s).unwrap();
    assert_eq!(s.inodes.len(), 1);
}

/// A command with its targets given as selectors, resolved against the current state by
/// `realize`, so that most commands hit existing objects and the interesting rules (collisions,
/// renames into subtrees, replacing targets) come up often.
#[derive(Clone, Debug)]
enum Op {
    Create {
        dir: u8,
        name: u8,
        kind: u8,
    },
    Link {
        obj: u8,
        dir: u8,
        name: u8,
    },
    Remove {
        dir: u8,
        name: u8,
        how: u8,
    },
    Rename {
        sdir: u8,
        sname: u8,
        ddir: u8,
        dname: u8,
    },
    Write {
        obj: u8,
        end: u16,
    },
    SetAttr {
        obj: u8,
        size: Option<u16>,
    },
    Forget {
        obj: u8,
    },
    /// A command naming an inode that does not exist.
    Stale {
        name: u8,
    },
}

fn arb_op() -> impl Strategy<Value = Op> {
    let x = any::<u8>;
    prop_oneof![
        5 => (x(), x(), x()).prop_map(|(dir, name, kind)| Op::Create { dir, name, kind }),
        2 => (x(), x(), x()).prop_map(|(obj, dir, name)| Op::Link { obj, dir, name }),
        3 => (x(), x(), x()).prop_map(|(dir, name, how)| Op::Remove { dir, name, how }),
        6 => (x(), x(), x(), x()).prop_map(|(sdir, sname, ddir, dname)| Op::Rename { sdir, sname, ddir, dname }),
        1 => (x(), any::<u16>()).prop_map(|(obj, end)| Op::Write { obj, end }),
        1 => (x(), proptest::option::of(any::<u16>())).prop_map(|(obj, size)| Op::SetAttr { obj, size }),
        1 => x().prop_map(|obj| Op::Forget { obj }),
        1 => x().prop_map(|name| Op::Stale { name }),
    ]
}

fn pick<T: Copy>(v: &[T], sel: u8) -> T {
    v[sel as usize % v.len()]
}

/// Names come from a small set so that they collide.
fn nm(sel: u8) -> Vec<u8> {
    vec![b'a' + sel % 3]
}

/// The command `op` selects, built as a proposer would: from what the state holds now. One
/// in four removals and renames is built for what a name held before (a wrong object), which
/// `apply` must refuse without a trace.
fn realize(op: &Op, s: &MemState) -> Command {
    let dirs: Vec<u64> = s
        .inodes
        .values()
        .filter(|i| i.kind.is_dir())
        .map(|i| i.ino)
        .collect();
    let all: Vec<u64> = s.inodes.keys().copied().collect();
    let found = |dir: u64, name: &[u8]| s.dirents.get(&(dir, name.to_vec())).map(|(i, _)| *i);
    match *op {
        Op::Create { dir, name, kind } => {
            let kind = match kind % 8 {
                0..=2 => FileKind::Regular,
                3..=5 => FileKind::Directory,
                6 => FileKind::Symlink {
                    target: b"t".to_vec(),
                },
                _ => FileKind::Fifo,
            };
            let mut c = create(pick(&dirs, dir), "x", kind);
            if let Command::Create { name: n, .. } = &mut c {
                *n = nm(name);
            }
            c
        }
        Op::Link { obj, dir, name } => Command::Link {
            ino: pick(&all, obj),
            parent: pick(&dirs, dir),
            name: nm(name),
            time: t(2),
        },
        Op::Remove { dir, name, how } => {
            let (parent, name, time) = (pick(&dirs, dir), nm(name), t(3));
            let child = match found(parent, &name) {
                Some(c) if how % 4 != 3 => c,
                _ => pick(&all, how),
            };
            match how % 3 {
                0 => Command::Remove {
                    parent,
                    name,
                    child,
                    time,
                },
                1 => Command::Unlink {
                    parent,
                    name,
                    child,
                    time,
                },
                _ => Command::Rmdir {
                    parent,
                    name,
                    child,
                    time,
                },
            }
        }
        Op::Rename {
            sdir,
            sname,
            ddir,
            dname,
        } => {
            let (sp, dp) = (pick(&dirs, sdir), pick(&dirs, ddir));
            let (sn, dn) = (nm(sname), nm(dname));
            let src = found(sp, &sn).unwrap_or_else(|| pick(&all, sname));
            let mut dst = found(dp, &dn);
            if dname % 4 == 3 {
                dst = dst.xor(Some(pick(&all, dname)));
            }
            Command::Rename {
                src_parent: sp,
                src_name: sn,
                src,
                dst_parent: dp,
                dst_name: dn,
                dst,
                time: t(4),
            }
        }
        Op::Write { obj, end } => Command::Write {
            ino: pick(&all, obj),
            end_offset: end.into(),
            time: t(5),
            writes: 1,
        },
        Op::SetAttr { obj, size } => Command::SetAttr {
            ino: pick(&all, obj),
            mode: Some(0o600),
            uid: None,
            gid: None,
            size: size.map(u64::from),
            atime: Some(SetTime::Now),
            mtime: None,
            time: t(6),
        },
        Op::Forget { obj } => Command::Forget {
            ino: pick(&all, obj),
        },
        Op::Stale { name } => Command::Remove {
            parent: 9_999,
            name: nm(name),
            child: 9_998,
            time: t(7),
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Invariants hold after every command; a failed command changes nothing; change attributes
    /// only grow; an entry's cookie stays while the entry stays; cookies are never reused.
    #[test]
    fn invariants_and_cookie_stability(ops in proptest::collection::vec(arb_op(), 1..80)) {
        let mut s = init();
        let mut issued: BTreeSet<(u64, u64)> = BTreeSet::new();
        for op in &ops {
            let cmd = &realize(op, &s);
            let before = s.clone();
            let r = step(&mut s, cmd);
            if r.is_err() {
                prop_assert_eq!(s.dump(), before.dump());
                continue;
            }
            if let Err(e) = check_invariants(&s) {
                return Err(TestCaseError::fail(format!("{e} after {cmd:?}")));
            }
            for (ino, i) in &s.inodes {
                if let Some(old) = before.inodes.get(ino) {
                    prop_assert!(i == old || i.change > old.change, "change did not grow on {}", ino);
                }
            }
            let renamed_to = match cmd {
                Command::Rename { dst_parent, dst_name, .. } => Some((*dst_parent, dst_name.clone())),
                _ => None,
            };
            for (key, (ino, cookie)) in &s.dirents {
                match before.dirents.get(key) {
                    Some((old_ino, old_cookie)) if old_ino == ino && renamed_to.as_ref() != Some(key) => {
                        prop_assert_eq!(cookie, old_cookie, "cookie of {:?} changed", key);
                    }
                    _ => {
                        // A new entry: its cookie has never been seen in this directory.
                        prop_assert!(issued.insert((key.0, *cookie)) || before.dirents.get(key).map(|e| e.1) == Some(*cookie),
                            "cookie {} reused in dir {}", cookie, key.0);
                    }
                }
                issued.insert((key.0, *cookie));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// The redb-backed namespace returns the same results and holds the same state as the model,
    /// and its log replays to the same state; with snapshots cut between the commands (and
    /// the first retired and partly merged), cuts and pre-images included.
    #[test]
    fn redb_matches_model(
        ops in proptest::collection::vec(arb_op(), 1..60),
        cuts in proptest::collection::btree_set(0usize..60, 0..4),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let ns = open_shards(&rt, dir.path(), 1);
        let fs_id = ns.fs_id();
        let mut m = MemState::default();
        apply(&mut m, &Command::InitRoot { fs_id, time: T0 }).unwrap();
        let root = ns.getattr(ROOT_INO).unwrap();
        m.inodes.insert(ROOT_INO, root);
        let mut snaps = 0;
        for (i, op) in ops.iter().enumerate() {
            let mut steps = Vec::new();
            if cuts.contains(&i) {
                snaps += 1;
                steps = snapshot_steps(snaps);
            }
            steps.push(realize(op, &m));
            for cmd in &steps {
                let a = step_on(ShardId(0), &mut m, cmd);
                let b = rt.block_on(ns.execute_lazy(cmd.clone()));
                prop_assert_eq!(&a, &b, "results differ on {:?}", cmd);
            }
        }
        if snaps >= 2 {
            let shard = ShardId(0);
            for cmd in [
                Command::SnapRetire { shard, snap: 1 },
                Command::SnapMerge { shard, snap: 1, max: 3 },
            ] {
                let a = step_on(shard, &mut m, &cmd);
                let b = rt.block_on(ns.execute_lazy(cmd.clone()));
                prop_assert_eq!(&a, &b, "results differ on {:?}", cmd);
            }
        }
        let snap = ns.snapshot().unwrap();
        prop_assert_eq!(snap.dump().unwrap(), m.dump());
        // READDIR lists exactly the entries, in cookie order.
        for (ino, i) in &m.inodes {
            if i.kind.is_dir() {
                let (ents, eof) = snap.readdir(*ino, 0, 1000).unwrap();
                prop_assert!(eof);
                let want: BTreeSet<(Vec<u8>, u64, u64)> = m.dirents.iter()
                    .filter(|((d, _), _)| d == ino)
                    .map(|((_, n), (i, c))| (n.clone(), *i, *c)).collect();
                let got: BTreeSet<_> = ents.iter().map(|e| (e.name.clone(), e.ino, e.cookie)).collect();
                prop_assert_eq!(got, want);
                prop_assert!(ents.windows(2).all(|w| w[0].cookie < w[1].cookie));
            }
        }
        // Replaying the log from scratch gives the same state (failed commands are in it and
        // fail again).
        drop(snap);
        rt.block_on(ns.checkpoint()).unwrap();
        let mut r = MemState::default();
        for (_, bytes) in ns.log_entries(ShardId(0), 0).unwrap() {
            let cmd = Command::decode(&bytes).unwrap();
            let _ = step_on(ShardId(0), &mut r, &cmd);
        }
        prop_assert_eq!(r.dump(), m.dump());
    }
}

/// Freeze, cut and thaw of the one shard for snapshot `snap`.
fn snapshot_steps(snap: u64) -> Vec<Command> {
    let (shard, time) = (ShardId(0), t(snap as i64));
    vec![
        Command::SnapFreeze { shard, snap, time },
        Command::SnapCut { shard, snap, time },
        Command::SnapThaw { shard, snap },
    ]
}

/// `cmd` with every inode number the model knows replaced by the sharded namespace's number
/// for the same object (unknown numbers, the stale ones, stay).
fn renumber(cmd: &Command, map: &BTreeMap<u64, u64>) -> Command {
    let m = |i: &u64| map.get(i).copied().unwrap_or(*i);
    let mut c = cmd.clone();
    match &mut c {
        Command::Create { parent, .. } => *parent = m(parent),
        Command::Link { ino, parent, .. } => {
            *ino = m(ino);
            *parent = m(parent);
        }
        Command::Unlink { parent, child, .. }
        | Command::Rmdir { parent, child, .. }
        | Command::Remove { parent, child, .. } => {
            *parent = m(parent);
            *child = m(child);
        }
        Command::Rename {
            src_parent,
            src,
            dst_parent,
            dst,
            ..
        } => {
            *src_parent = m(src_parent);
            *src = m(src);
            *dst_parent = m(dst_parent);
            *dst = dst.map(|d| m(&d));
        }
        Command::SetAttr { ino, .. } | Command::Write { ino, .. } | Command::Forget { ino } => {
            *ino = m(ino)
        }
        _ => {}
    }
    c
}

/// An inode with the numbers it holds translated by `map` (model → namespace).
fn renumbered(i: &Inode, map: &BTreeMap<u64, u64>) -> Inode {
    let mut i = i.clone();
    i.ino = map.get(&i.ino).copied().unwrap_or(i.ino);
    if i.parent != 0 {
        i.parent = map.get(&i.parent).copied().unwrap_or(i.parent);
    }
    i
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// A namespace whose directories are spread over shards, so that creates in them, renames
    /// and links between them, and removals run as cross-shard transactions, gives the same
    /// answers and ends in the same tree as the one-store model, up to inode numbers; and no
    /// transaction is left behind.
    #[test]
    fn sharded_matches_model(ops in proptest::collection::vec(arb_op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let ns = open_shards(&rt, dir.path(), 8);
        let fs_id = ns.fs_id();
        let mut m = MemState::default();
        apply(&mut m, &Command::InitRoot { fs_id, time: T0 }).unwrap();
        m.inodes.insert(ROOT_INO, ns.getattr(ROOT_INO).unwrap());
        let mut map: BTreeMap<u64, u64> = BTreeMap::from([(ROOT_INO, ROOT_INO)]);
        for op in &ops {
            let cmd = &realize(op, &m);
            let a = step(&mut m, cmd);
            let b = rt.block_on(ns.execute(renumber(cmd, &map)));
            match (&a, &b) {
                (Ok(x), Ok(y)) => {
                    if let (Some(i), Some(j)) = (&x.inode, &y.inode) {
                        if x.created {
                            map.insert(i.ino, j.ino);
                        }
                        prop_assert_eq!(&renumbered(i, &map), j, "inode after {:?}", cmd);
                    }
                    prop_assert_eq!(x.created, y.created);
                    prop_assert_eq!(x.effects.len(), y.effects.len(), "effects of {:?}", cmd);
                }
                (Err(e), Err(f)) => prop_assert_eq!(
                    std::mem::discriminant(e), std::mem::discriminant(f),
                    "{:?} vs {:?} on {:?}", e, f, cmd
                ),
                _ => prop_assert!(false, "model {:?}, sharded {:?} on {:?}", a, b, cmd),
            }
        }
        // The same tree: every entry, and every object's attributes.
        let snap = ns.snapshot().unwrap();
        let d = snap.dump().unwrap();
        let want: BTreeMap<(u64, Vec<u8>), u64> = m.dirents.iter()
            .map(|((dir, n), (i, _))| ((map[dir], n.clone()), map[i])).collect();
        let got: BTreeMap<(u64, Vec<u8>), u64> = d.dirents.iter()
            .map(|((dir, n), (i, _))| ((*dir, n.clone()), *i)).collect();
        prop_assert_eq!(got, want);
        let want: BTreeMap<u64, Inode> = m.inodes.values()
            .map(|i| (map[&i.ino], renumbered(i, &map))).collect();
        prop_assert_eq!(&d.inodes, &want);
        prop_assert_eq!(d.orphans.len(), m.orphans.len());
        drop(snap);
        // Every transaction's records go (the decision's last, in the background).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !ns.snapshot().unwrap().dump().unwrap().txns.is_empty() {
            prop_assert!(std::time::Instant::now() < deadline, "transactions left behind");
            rt.block_on(async { tokio::time::sleep(std::time::Duration::from_millis(10)).await });
        }
    }
}
