//! Linux's permission rules over the wire, as users other than root (issue 19), and the OPEN
//! and attribute answers that go with them.
use crate::common;
use common::*;
use proto::nfs4::attr::{Bitmap, FileAttrs, FATTR4_MODE, FATTR4_XATTR_SUPPORT};
use proto::nfs4::state::{OPEN4_RESULT_PRESERVE_UNLINKED, OPEN4_SHARE_ACCESS_WANT_NO_DELEG};
use proto::nfs4::*;
use proto::rpc::{Auth, AuthSys, Connection};
use proto::xdr::Opaque;

const ERR_PERM: u32 = 1;

fn user(uid: u32, gid: u32, gids: &[u32]) -> Auth {
    Auth::Sys(AuthSys {
        stamp: 1,
        machine: b"test".to_vec(),
        uid,
        gid,
        gids: gids.to_vec(),
    })
}

fn lookup(name: &str) -> NfsArgop4 {
    NfsArgop4::Lookup(LookupArgs {
        objname: Opaque::from(name),
    })
}

fn setattr(attrs: FileAttrs) -> NfsArgop4 {
    NfsArgop4::Setattr(SetattrArgs {
        stateid: Stateid4::default(),
        obj_attributes: attrs.encode_all(),
    })
}

fn owner(uid: u32, gid: u32) -> FileAttrs {
    FileAttrs {
        owner: Some(Opaque::from(uid.to_string().as_str())),
        owner_group: Some(Opaque::from(gid.to_string().as_str())),
        ..Default::default()
    }
}

fn getattr(bits: &[u32]) -> NfsArgop4 {
    NfsArgop4::Getattr(GetattrArgs {
        attr_request: Bitmap::from_bits(bits).to_vec(),
    })
}

fn attrs_at(r: &Compound4Res, at: usize) -> FileAttrs {
    let NfsResop4::Getattr(GetattrRes::Ok(g)) = &r.resarray[at] else {
        panic!("{r:?}")
    };
    FileAttrs::decode(&g.obj_attributes).unwrap()
}

/// Root makes /tmp (01777) and /tmp/f owned by 1001:1001 with `mode`.
async fn shared_file(c: &Connection, sid: Sessionid4, mode: u32) {
    let mut tmp = mkdir("tmp");
    if let NfsArgop4::Create(a) = &mut tmp {
        a.createattrs = FileAttrs {
            mode: Some(0o1777),
            ..Default::default()
        }
        .encode_all();
    }
    let f = FileAttrs {
        mode: Some(mode),
        ..owner(1001, 1001)
    };
    let r = compound(
        c,
        1,
        vec![
            seq(sid, 1),
            NfsArgop4::Putrootfh,
            tmp,
            open_create("f", "root", f.encode_all()),
        ],
    )
    .await;
    assert_eq!(r.status, 0, "{r:?}");
}

#[tokio::test]
async fn chown_to_the_current_values_needs_ownership() {
    let (s, _d) = server().await;
    let c = connect(&s).await;
    let sid = session(&c).await;
    shared_file(&c, sid, 0o644).await;
    let path = || vec![NfsArgop4::Putrootfh, lookup("tmp"), lookup("f")];
    let other = user(1002, 1002, &[1001]);
    let r = compound_as(
        &c,
        &other,
        [vec![seq(sid, 2)], path(), vec![setattr(owner(1001, 1001))]].concat(),
    )
    .await;
    assert_eq!(
        r.status, ERR_PERM,
        "non-owner chown to the same values: {r:?}"
    );
    let me = user(1001, 1001, &[]);
    let r = compound_as(
        &c,
        &me,
        [vec![seq(sid, 3)], path(), vec![setattr(owner(1001, 1001))]].concat(),
    )
    .await;
    assert_eq!(r.status, 0, "the owner's no-op chown: {r:?}");
}

#[tokio::test]
async fn a_create_with_an_owner_the_caller_may_not_set_leaves_nothing_behind() {
    let (s, _d) = server().await;
    let c = connect(&s).await;
    let sid = session(&c).await;
    shared_file(&c, sid, 0o644).await;
    let me = user(1001, 1001, &[]);
    let r = compound_as(
        &c,
        &me,
        vec![
            seq(sid, 2),
            NfsArgop4::Putrootfh,
            lookup("tmp"),
            open_create("given-away", "me", owner(0, 0).encode_all()),
        ],
    )
    .await;
    assert_eq!(r.status, ERR_PERM, "{r:?}");
    let r = compound(
        &c,
        1,
        vec![
            seq(sid, 3),
            NfsArgop4::Putrootfh,
            lookup("tmp"),
            lookup("given-away"),
        ],
    )
    .await;
    assert_eq!(
        r.status, 2,
        "the refused create must not leave the file: {r:?}"
    );
}

#[tokio::test]
async fn a_write_by_another_user_clears_set_id_bits() {
    let (s, _d) = server().await;
    let c = connect(&s).await;
    let sid = session(&c).await;
    shared_file(&c, sid, 0o6777).await;
    let other = user(1002, 1002, &[]);
    let r = compound_as(
        &c,
        &other,
        vec![
            seq(sid, 2),
            NfsArgop4::Putrootfh,
            lookup("tmp"),
            lookup("f"),
            NfsArgop4::Write(WriteArgs {
                stateid: Stateid4::default(),
                offset: 0,
                stable: StableHow4::FileSync4,
                data: Opaque(b"x".to_vec()),
            }),
            getattr(&[FATTR4_MODE]),
        ],
    )
    .await;
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(attrs_at(&r, 5).mode, Some(0o777));
}

#[tokio::test]
async fn open_promises_to_preserve_unlinked_files_and_says_why_no_delegation() {
    let (s, _d) = server().await;
    let c = connect(&s).await;
    let sid = session(&c).await;
    let mut open = open_create("f", "o", Fattr4::default());
    if let NfsArgop4::Open(a) = &mut open {
        a.share_access = 1 | OPEN4_SHARE_ACCESS_WANT_NO_DELEG;
    }
    let r = compound(
        &c,
        1,
        vec![
            seq(sid, 1),
            NfsArgop4::Putrootfh,
            open,
            getattr(&[FATTR4_XATTR_SUPPORT]),
        ],
    )
    .await;
    let NfsResop4::Open(OpenRes::Ok(o)) = &r.resarray[2] else {
        panic!("{r:?}")
    };
    assert_ne!(o.rflags & OPEN4_RESULT_PRESERVE_UNLINKED, 0);
    assert_eq!(
        o.delegation,
        OpenDelegation4::NoneExt(OpenNoneDelegation4::Why(WND4_NOT_WANTED))
    );
    assert_eq!(attrs_at(&r, 3).xattr_support, Some(true));
}

/// OPEN4_CREATE on a name that exists, as Linux's open(O_CREAT) (`lookup_open` checks
/// `may_o_create` only for a negative dentry) and knfsd (`nfsd4_create_file` asks
/// NFSD_MAY_CREATE only when the child is negative): the directory needs search permission
/// only, and the open changes nothing, so it runs no namespace command at all (before, it ran
/// a no-op create, a durable log record, after checks made outside it). An absent name needs
/// write permission on the directory, checked inside the create command.
#[tokio::test]
async fn open_create_of_an_existing_name_needs_no_write_on_the_directory_and_changes_nothing() {
    let (s, _d) = server().await;
    let c = connect(&s).await;
    let sid = session(&c).await;
    let mut dir = mkdir("pub");
    if let NfsArgop4::Create(a) = &mut dir {
        a.createattrs = FileAttrs {
            mode: Some(0o755),
            ..Default::default()
        }
        .encode_all();
    }
    let f = FileAttrs {
        mode: Some(0o666),
        ..Default::default()
    };
    let r = compound(
        &c,
        1,
        vec![
            seq(sid, 1),
            NfsArgop4::Putrootfh,
            dir,
            open_create("f", "root", f.encode_all()),
        ],
    )
    .await;
    assert_eq!(r.status, 0, "{r:?}");
    let me = user(1001, 1001, &[]);
    let in_pub = |n, op| vec![seq(sid, n), NfsArgop4::Putrootfh, lookup("pub"), op];

    let before = s.namespace_stats();
    let r = compound_as(
        &c,
        &me,
        in_pub(2, open_create("f", "me", Fattr4::default())),
    )
    .await;
    assert_eq!(r.status, 0, "UNCHECKED open of an existing file: {r:?}");
    assert_eq!(
        s.namespace_stats().commands,
        before.commands,
        "opening an existing name ran a namespace command"
    );
    let mut guarded = open_create("f", "me", Fattr4::default());
    if let NfsArgop4::Open(a) = &mut guarded {
        a.openhow = Openflag4::Create(Createhow4::Guarded(Fattr4::default()));
    }
    let r = compound_as(&c, &me, in_pub(3, guarded)).await;
    assert_eq!(r.status, Nfsstat4::Exist.code(), "{r:?}");
    // A new name in the same directory: refused, and nothing is left behind.
    let r = compound_as(
        &c,
        &me,
        in_pub(4, open_create("g", "me", Fattr4::default())),
    )
    .await;
    assert_eq!(r.status, Nfsstat4::Access.code(), "{r:?}");
    let r = compound(&c, 1, in_pub(5, lookup("g"))).await;
    assert_eq!(r.status, Nfsstat4::Noent.code(), "{r:?}");
}
