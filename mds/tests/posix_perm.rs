//! Linux's permission rules over the wire, as users other than root (issue 19), and the OPEN
//! and attribute answers that go with them.
mod common;
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
    assert_eq!(attrs_at(&r, 3).xattr_support, Some(false));
}
