//! What an OPEN that creates costs and does: Linux sends O_TRUNC's size 0 in the create
//! attributes of every `open(O_CREAT|O_TRUNC)`. On a new file that is already true, so the
//! create must stay one durable command; on an existing file it must still truncate.
use crate::common;
use common::*;
use proto::nfs4::attr::{Bitmap, FileAttrs, FATTR4_MODE, FATTR4_SIZE};
use proto::nfs4::*;
use proto::xdr::Opaque;

fn create_attrs(mode: u32, size: u64) -> Fattr4 {
    FileAttrs {
        mode: Some(mode),
        size: Some(size),
        ..Default::default()
    }
    .encode_all()
}

fn getattr() -> NfsArgop4 {
    NfsArgop4::Getattr(GetattrArgs {
        attr_request: Bitmap::from_bits(&[FATTR4_SIZE, FATTR4_MODE]).to_vec(),
    })
}

fn attrs_of(r: &Compound4Res, at: usize) -> FileAttrs {
    let NfsResop4::Getattr(GetattrRes::Ok(g)) = &r.resarray[at] else {
        panic!("{r:?}")
    };
    FileAttrs::decode(&g.obj_attributes).unwrap()
}

/// `open("f", O_CREAT|O_TRUNC, 0600)` as Linux sends it, then GETATTR of what it opened.
async fn truncating_open(
    c: &proto::rpc::Connection,
    sid: Sessionid4,
    seqid: u32,
) -> (OpenResOk, FileAttrs) {
    let r = compound(
        c,
        1,
        vec![
            seq(sid, seqid),
            NfsArgop4::Putrootfh,
            open_create("f", "creator", create_attrs(0o600, 0)),
            getattr(),
        ],
    )
    .await;
    let NfsResop4::Open(OpenRes::Ok(o)) = &r.resarray[2] else {
        panic!("{r:?}")
    };
    (o.clone(), attrs_of(&r, 3))
}

#[tokio::test]
async fn truncating_create_is_one_durable_command_and_truncation_still_works() {
    let (s, _d) = server().await;
    let c = connect(&s).await;
    let sid = session(&c).await;

    let before = s.namespace_stats();
    let (o, a) = truncating_open(&c, sid, 1).await;
    let after = s.namespace_stats();
    assert_eq!(
        after.durable_commits - before.durable_commits,
        1,
        "a create with size 0 must be one fdatasync"
    );
    // Both attributes count as set: the client relies on attrset to skip its own SETATTR.
    let set = Bitmap::from_words(&o.attrset);
    assert!(
        set.contains(FATTR4_MODE) && set.contains(FATTR4_SIZE),
        "{set:?}"
    );
    assert_eq!((a.mode, a.size), (Some(0o600), Some(0)));

    // Give it bytes, then open it again the same way: now size 0 must truncate.
    let r = compound(
        &c,
        1,
        vec![
            seq(sid, 2),
            NfsArgop4::Putrootfh,
            NfsArgop4::Lookup(LookupArgs {
                objname: Opaque::from("f"),
            }),
            NfsArgop4::Write(WriteArgs {
                stateid: o.stateid,
                offset: 0,
                stable: StableHow4::FileSync4,
                data: Opaque(vec![7; 5000]),
            }),
            getattr(),
        ],
    )
    .await;
    assert_eq!(attrs_of(&r, 4).size, Some(5000));
    let (o2, a) = truncating_open(&c, sid, 3).await;
    assert_eq!(
        Bitmap::from_words(&o2.attrset).to_vec(),
        Bitmap::from_bits(&[FATTR4_SIZE]).to_vec()
    );
    assert_eq!(a.size, Some(0));
}
