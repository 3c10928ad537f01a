//! `SetXattr` and `RemoveXattr` in the state machine: the change they record, the caller's
//! permission checked inside the command, and a file's attributes going with the file
//! whichever way it goes.

use super::*;
use crate::perm::Cred;
use crate::xattr::How;

fn set(ino: u64, name: &str, value: &str, how: How) -> Command {
    Command::SetXattr {
        ino,
        name: name.into(),
        value: value.into(),
        how,
        time: t(5),
    }
}

fn attrs(s: &MemState, ino: u64) -> Vec<(String, String)> {
    s.xattrs
        .get(&ino)
        .map(|x| {
            x.iter()
                .map(|(n, v)| {
                    (
                        String::from_utf8_lossy(n).into_owned(),
                        String::from_utf8_lossy(v).into_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_change_moves_ctime_and_change_and_reports_both_change_values() {
    let mut s = init();
    let f = made(&mut s, create(ROOT_INO, "f", FileKind::Regular));
    let before = s.inodes[&f].clone();
    let out = step(&mut s, &set(f, "a", "1", How::Create)).unwrap();
    let after = &s.inodes[&f];
    assert_eq!(after.change, before.change + 1);
    assert_eq!(after.ctime, t(5));
    assert_eq!(after.mtime, before.mtime, "data time stays");
    let c = out.dir.expect("change info");
    assert_eq!((c.ino, c.before, c.after), (f, before.change, after.change));
    assert_eq!(attrs(&s, f), [("a".into(), "1".into())]);
    // A refused change leaves no trace.
    let was = s.dump();
    assert_eq!(
        step(&mut s, &set(f, "a", "2", How::Create)),
        Err(FsError::Exists)
    );
    assert_eq!(s.dump(), was);
    let rm = Command::RemoveXattr {
        ino: f,
        name: b"a".to_vec(),
        time: t(6),
    };
    step(&mut s, &rm).unwrap();
    assert!(!s.xattrs.contains_key(&f), "no empty record is kept");
    assert_eq!(step(&mut s, &rm), Err(FsError::NoXattr));
}

#[test]
fn the_callers_permission_is_checked_inside_the_command() {
    let mut s = init();
    let f = made(&mut s, create(ROOT_INO, "f", FileKind::Regular));
    let other = Cred {
        uid: 2000,
        gid: 2000,
        groups: Vec::new(),
    };
    let as_other = |cmd| Command::As {
        cred: other.clone(),
        cmd: Box::new(cmd),
    };
    // 0644, owned by 1000: another user may not write.
    assert_eq!(
        step(&mut s, &as_other(set(f, "a", "1", How::Either))),
        Err(FsError::Access)
    );
    let l = made(
        &mut s,
        create(
            ROOT_INO,
            "l",
            FileKind::Symlink {
                target: b"f".to_vec(),
            },
        ),
    );
    assert_eq!(
        step(&mut s, &set(l, "a", "1", How::Either)),
        Err(FsError::Perm),
        "no user attributes on a symlink, even for the server"
    );
}

#[test]
fn a_files_attributes_go_with_it() {
    let mut s = init();
    let f = made(&mut s, create(ROOT_INO, "f", FileKind::Regular));
    let d = made(&mut s, create(ROOT_INO, "d", FileKind::Directory));
    step(&mut s, &set(f, "a", "1", How::Either)).unwrap();
    step(&mut s, &set(d, "b", "2", How::Either)).unwrap();
    // The last link goes: an orphan keeps them until it is forgotten.
    step(
        &mut s,
        &Command::Remove {
            parent: ROOT_INO,
            name: b"f".to_vec(),
            child: f,
            time: t(7),
        },
    )
    .unwrap();
    assert_eq!(attrs(&s, f).len(), 1);
    step(&mut s, &Command::Forget { ino: f }).unwrap();
    assert!(!s.xattrs.contains_key(&f));
    // A directory's go with rmdir.
    step(
        &mut s,
        &Command::Rmdir {
            parent: ROOT_INO,
            name: b"d".to_vec(),
            child: d,
            time: t(8),
        },
    )
    .unwrap();
    assert!(s.xattrs.is_empty());
}

#[test]
fn a_tier_pin_is_flash_s3_or_auto_and_nothing_else() {
    use crate::tiering::Pin;
    let mut s = init();
    let f = made(&mut s, create(ROOT_INO, "f", FileKind::Regular));
    for (v, pin) in [("flash", Pin::Flash), ("s3", Pin::S3), ("auto", Pin::Auto)] {
        step(&mut s, &set(f, "cfs.tier", v, How::Either)).unwrap();
        assert_eq!(Pin::of(s.xattrs.get(&f)), pin);
    }
    for bad in ["", "FLASH", "tape", "s3 "] {
        assert_eq!(
            step(&mut s, &set(f, "cfs.tier", bad, How::Either)),
            Err(FsError::Invalid),
            "{bad:?}"
        );
    }
    assert_eq!(
        Pin::of(s.xattrs.get(&f)),
        Pin::Auto,
        "a refused value changes nothing"
    );
    // Other names take any value.
    step(&mut s, &set(f, "cfs.tiers", "tape", How::Either)).unwrap();
    assert_eq!(Pin::of(None), Pin::Auto);
}

#[test]
fn the_data_key_is_set_once_and_replaced_only_by_whoever_read_it() {
    let mut s = init();
    let key = |w: &[u8], e: Option<&[u8]>| Command::SetDataKey {
        wrapped: w.to_vec(),
        expect: e.map(<[u8]>::to_vec),
    };
    let stored = |s: &MemState| {
        s.xattrs
            .get(&DRAIN_INO)
            .and_then(|x| x.get(crate::apply::DATA_KEY_ATTR).cloned())
    };
    step(&mut s, &key(b"first", None)).unwrap();
    assert_eq!(stored(&s).as_deref(), Some(&b"first"[..]));
    // A second node making a key of its own at the same time loses: segments may already
    // be sealed under the first.
    assert_eq!(step(&mut s, &key(b"second", None)), Err(FsError::Changed));
    assert_eq!(
        step(&mut s, &key(b"x", Some(b"stale"))),
        Err(FsError::Changed)
    );
    // A rotation names the key it re-wrapped.
    step(&mut s, &key(b"rewrapped", Some(b"first"))).unwrap();
    assert_eq!(stored(&s).as_deref(), Some(&b"rewrapped"[..]));
    // Never on a client's behalf, never empty.
    let as_user = Command::As {
        cred: Cred::root(),
        cmd: Box::new(key(b"y", Some(b"rewrapped"))),
    };
    assert_eq!(step(&mut s, &as_user), Err(FsError::Invalid));
    assert_eq!(
        step(&mut s, &key(b"", Some(b"rewrapped"))),
        Err(FsError::Invalid)
    );
    assert_eq!(stored(&s).as_deref(), Some(&b"rewrapped"[..]));
}

#[test]
fn a_reduce_policy_is_off_on_or_auto_and_nothing_else() {
    let mut s = init();
    let f = made(&mut s, create(ROOT_INO, "f", FileKind::Regular));
    let value = |s: &MemState| {
        s.xattrs
            .get(&f)
            .and_then(|x| x.get(&b"cfs.reduce"[..]).cloned())
    };
    for v in ["off", "on", "auto"] {
        step(&mut s, &set(f, "cfs.reduce", v, How::Either)).unwrap();
        assert_eq!(value(&s).as_deref(), Some(v.as_bytes()));
    }
    for bad in ["", "ON", "always", "auto\n"] {
        assert_eq!(
            step(&mut s, &set(f, "cfs.reduce", bad, How::Either)),
            Err(FsError::Invalid),
            "{bad:?}"
        );
    }
    assert_eq!(
        value(&s).as_deref(),
        Some(&b"auto"[..]),
        "a refused value changes nothing"
    );
}
