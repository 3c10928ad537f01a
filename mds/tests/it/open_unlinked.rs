//! OPEN by file handle (CLAIM_FH, what Linux sends for a name it has cached) of an unlinked
//! file: stale once nobody has it open, as with knfsd, whose inode is then freed; still
//! openable while another open keeps it (PRESERVE_UNLINKED).
use crate::common;
use common::*;
use proto::nfs4::*;
use proto::xdr::Opaque;

fn open_fh(owner: &str) -> NfsArgop4 {
    NfsArgop4::Open(OpenArgs {
        seqid: 0,
        share_access: 1,
        share_deny: 0,
        owner: StateOwner4 {
            clientid: 0,
            owner: Opaque::from(owner),
        },
        openhow: Openflag4::NoCreate,
        claim: OpenClaim4::Fh,
    })
}

fn putfh(fh: &NfsFh4) -> NfsArgop4 {
    NfsArgop4::Putfh(PutfhArgs { object: fh.clone() })
}

fn remove(name: &str) -> NfsArgop4 {
    NfsArgop4::Remove(RemoveArgs {
        target: Opaque::from(name),
    })
}

/// Creates `name` open by `owner`; its handle and open stateid.
async fn create(
    c: &proto::rpc::Connection,
    sid: Sessionid4,
    seqid: u32,
    name: &str,
    owner: &str,
) -> (NfsFh4, Stateid4) {
    let r = compound(
        c,
        1,
        vec![
            seq(sid, seqid),
            NfsArgop4::Putrootfh,
            open_create(name, owner, Fattr4::default()),
            NfsArgop4::Getfh,
        ],
    )
    .await;
    let (NfsResop4::Open(OpenRes::Ok(o)), NfsResop4::Getfh(GetfhRes::Ok(g))) =
        (&r.resarray[2], &r.resarray[3])
    else {
        panic!("{r:?}")
    };
    (g.object.clone(), o.stateid)
}

#[tokio::test]
async fn open_by_handle_of_an_unlinked_file_nobody_has_open_is_stale() {
    let (s, _d) = server().await;
    let c = connect(&s).await;
    let sid = session(&c).await;
    let (fh, st) = create(&c, sid, 1, "f", "writer").await;
    let r = compound(
        &c,
        1,
        vec![
            seq(sid, 2),
            putfh(&fh),
            NfsArgop4::Close(CloseArgs {
                seqid: 0,
                open_stateid: st,
            }),
        ],
    )
    .await;
    assert_eq!(r.status, 0, "{r:?}");
    // REMOVE and the OPEN in one compound: the reaper (which runs after the REMOVE) cannot
    // have forgotten the file yet, so only the OPEN's own check can answer STALE.
    let r = compound(
        &c,
        1,
        vec![
            seq(sid, 3),
            NfsArgop4::Putrootfh,
            remove("f"),
            putfh(&fh),
            open_fh("reader"),
        ],
    )
    .await;
    assert!(
        matches!(r.resarray[2], NfsResop4::Remove(RemoveRes::Ok(_))),
        "{r:?}"
    );
    assert_eq!(r.status, Nfsstat4::Stale.code(), "{r:?}");
    assert_eq!(r.resarray.len(), 5, "{r:?}");
}

#[tokio::test]
async fn open_by_handle_of_an_unlinked_file_another_open_keeps_succeeds() {
    let (s, _d) = server().await;
    let c = connect(&s).await;
    let sid = session(&c).await;
    let (fh, _st) = create(&c, sid, 1, "g", "holder").await;
    // The holder keeps it open: the file outlives its name, and a handle still opens it.
    let r = compound(
        &c,
        1,
        vec![
            seq(sid, 2),
            NfsArgop4::Putrootfh,
            remove("g"),
            putfh(&fh),
            open_fh("reader"),
        ],
    )
    .await;
    assert_eq!(r.status, 0, "{r:?}");
    assert!(
        matches!(r.resarray[4], NfsResop4::Open(OpenRes::Ok(_))),
        "{r:?}"
    );
}
