//! `Command::As`: the permission rules hold inside the command, against the state it changes,
//! and a refused command leaves nothing behind.

use super::*;
use crate::perm::{Cred, DEFAULT_ID};

fn user(uid: u32, gid: u32, groups: &[u32]) -> Cred {
    Cred {
        uid,
        gid,
        groups: groups.to_vec(),
    }
}

fn as_(c: &Cred, cmd: Command) -> Command {
    Command::As {
        cred: c.clone(),
        cmd: Box::new(cmd),
    }
}

/// Creates `name`; in a fresh state the creates are numbered 2, 3, ... in order, which the
/// tests rely on (and `step` checks: a later command on a wrong number fails).
fn mk(parent: u64, name: &str, kind: FileKind, mode: u32) -> Command {
    Command::Create {
        parent,
        name: name.into(),
        kind,
        mode,
        uid: DEFAULT_ID,
        gid: DEFAULT_ID,
        time: t(1),
        how: CreateHow::Guarded,
    }
}

fn setattr(ino: u64, mode: Option<u32>, uid: Option<u32>, gid: Option<u32>) -> Command {
    Command::SetAttr {
        ino,
        mode,
        uid,
        gid,
        size: None,
        atime: None,
        mtime: None,
        time: t(2),
    }
}

fn mk_owned(parent: u64, name: &str, uid: u32, gid: u32) -> Command {
    Command::Create {
        parent,
        name: name.into(),
        kind: FileKind::Regular,
        mode: 0o644,
        uid,
        gid,
        time: t(1),
        how: CreateHow::Guarded,
    }
}

fn rename(s: &MemState, sp: u64, sn: &str, dp: u64, dn: &str) -> Command {
    let dst = child(s, dp, dn);
    Command::Rename {
        src_parent: sp,
        src_name: sn.into(),
        src: child(s, sp, sn),
        dst_parent: dp,
        dst_name: dn.into(),
        dst: (dst != 0).then_some(dst),
        time: t(5),
    }
}

/// Root makes a 01777 directory 2 as /tmp is, and `owner` a file 3 in it with `mode`.
fn shared_tmp(owner: &Cred, mode: u32) -> MemState {
    let mut s = init();
    let root = Cred::root();
    step(
        &mut s,
        &as_(&root, mk(ROOT_INO, "tmp", FileKind::Directory, 0o1777)),
    )
    .unwrap();
    step(&mut s, &as_(owner, mk(2, "f", FileKind::Regular, mode))).unwrap();
    s
}

#[test]
fn a_create_takes_the_callers_ids_and_a_setgid_directorys_group() {
    let me = user(1001, 1001, &[]);
    let mut s = init();
    let root = Cred::root();
    let d = mk(ROOT_INO, "g", FileKind::Directory, 0o2777);
    step(&mut s, &as_(&root, d)).unwrap();
    step(&mut s, &as_(&root, setattr(2, None, None, Some(2000)))).unwrap();
    let sub = step(&mut s, &as_(&me, mk(2, "sub", FileKind::Directory, 0o755))).unwrap();
    let sub = sub.inode.unwrap();
    assert_eq!((sub.uid, sub.gid, sub.mode), (1001, 2000, 0o2755));
    let f = step(&mut s, &as_(&me, mk(2, "f", FileKind::Regular, 0o2755))).unwrap();
    let f = f.inode.unwrap();
    assert_eq!((f.uid, f.gid, f.mode), (1001, 2000, 0o755));
}

#[test]
fn a_create_with_an_owner_the_caller_may_not_give_leaves_nothing() {
    let me = user(1001, 1001, &[]);
    let mut s = init();
    let root = Cred::root();
    step(
        &mut s,
        &as_(&root, mk(ROOT_INO, "tmp", FileKind::Directory, 0o777)),
    )
    .unwrap();
    let give = mk_owned(2, "f", 0, DEFAULT_ID);
    assert_eq!(step(&mut s, &as_(&me, give)), Err(FsError::Perm));
    assert!(!s.inodes.contains_key(&3));
    assert!(!s.dirents.contains_key(&(2, b"f".to_vec())));
    // Root may create a file owned by anyone.
    let give = mk_owned(2, "f", 7, 8);
    let f = step(&mut s, &as_(&root, give)).unwrap().inode.unwrap();
    assert_eq!((f.uid, f.gid), (7, 8));
}

#[test]
fn a_create_in_a_directory_without_write_permission_is_eacces_but_eexist_wins() {
    let me = user(1001, 1001, &[]);
    let mut s = init();
    let root = Cred::root();
    step(
        &mut s,
        &as_(&root, mk(ROOT_INO, "ro", FileKind::Directory, 0o755)),
    )
    .unwrap();
    step(&mut s, &as_(&root, mk(2, "x", FileKind::Regular, 0o644))).unwrap();
    let c = mk(2, "y", FileKind::Regular, 0o644);
    assert_eq!(step(&mut s, &as_(&me, c)), Err(FsError::Access));
    let c = mk(2, "x", FileKind::Regular, 0o644);
    assert_eq!(step(&mut s, &as_(&me, c)), Err(FsError::Exists));
}

#[test]
fn chown_to_the_same_values_by_a_non_owner_is_eperm() {
    let owner = user(1002, 1002, &[]);
    let mut s = shared_tmp(&owner, 0o644);
    let other = user(1001, 1001, &[1002]);
    let same = setattr(3, None, Some(1002), Some(1002));
    assert_eq!(step(&mut s, &as_(&other, same.clone())), Err(FsError::Perm));
    assert!(step(&mut s, &as_(&owner, same)).is_ok());
}

#[test]
fn chmod_setgid_by_an_owner_outside_the_group_is_silently_dropped() {
    let owner = user(1001, 1001, &[]);
    let mut s = shared_tmp(&owner, 0o644);
    step(
        &mut s,
        &as_(&Cred::root(), setattr(3, None, None, Some(2000))),
    )
    .unwrap();
    let chmod = setattr(3, Some(0o2755), None, None);
    let f = step(&mut s, &as_(&owner, chmod)).unwrap().inode.unwrap();
    assert_eq!(f.mode, 0o755);
}

#[test]
fn a_write_by_an_unprivileged_caller_clears_set_id_bits() {
    let owner = user(1001, 1001, &[]);
    for (mode, after) in [
        (0o4777, 0o777),
        (0o2777, 0o777),
        (0o6777, 0o777),
        (0o2767, 0o2767),
    ] {
        let mut s = shared_tmp(&owner, mode);
        // The owner is in the file's group: a set-gid file without group execute keeps it.
        let w = Command::Write {
            ino: 3,
            end_offset: 1,
            time: t(3),
            writes: 1,
        };
        let f = step(&mut s, &as_(&owner, w.clone()))
            .unwrap()
            .inode
            .unwrap();
        assert_eq!(f.mode, after, "mode {mode:o}");
        // Root keeps them (CAP_FSETID), and so does the server's own command.
        let mut s = shared_tmp(&owner, mode);
        let f = step(&mut s, &as_(&Cred::root(), w.clone()))
            .unwrap()
            .inode
            .unwrap();
        assert_eq!(f.mode, mode);
        let f = step(&mut s, &w).unwrap().inode.unwrap();
        assert_eq!(f.mode, mode);
    }
}

#[test]
fn moving_a_directory_to_another_parent_needs_write_on_it() {
    let mut s = init();
    let root = Cred::root();
    let me = user(1001, 1001, &[]);
    let them = user(1002, 1002, &[]);
    step(
        &mut s,
        &as_(&root, mk(ROOT_INO, "a", FileKind::Directory, 0o777)),
    )
    .unwrap();
    step(
        &mut s,
        &as_(&root, mk(ROOT_INO, "b", FileKind::Directory, 0o777)),
    )
    .unwrap();
    step(&mut s, &as_(&them, mk(2, "d", FileKind::Directory, 0o755))).unwrap();
    let across = rename(&s, 2, "d", 3, "d");
    assert_eq!(step(&mut s, &as_(&me, across)), Err(FsError::Access));
    let within = rename(&s, 2, "d", 2, "e");
    assert!(step(&mut s, &as_(&me, within)).is_ok());
    let across = rename(&s, 2, "e", 3, "d");
    assert!(step(&mut s, &as_(&them, across)).is_ok());
}

#[test]
fn sticky_directory_removal_is_eperm_inside_the_command() {
    let owner = user(1002, 1002, &[]);
    let mut s = shared_tmp(&owner, 0o666);
    let me = user(1001, 1001, &[]);
    let rm = Command::Remove {
        parent: 2,
        name: "f".into(),
        child: 3,
        time: t(4),
    };
    assert_eq!(step(&mut s, &as_(&me, rm.clone())), Err(FsError::Perm));
    assert!(step(&mut s, &as_(&owner, rm)).is_ok());
}

#[test]
fn nested_as_is_refused() {
    let mut s = init();
    let inner = as_(&Cred::root(), Command::Noop);
    assert_eq!(
        step(&mut s, &as_(&Cred::root(), inner)),
        Err(FsError::Invalid)
    );
}
