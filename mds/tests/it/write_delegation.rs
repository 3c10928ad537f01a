//! Write delegations with a real back channel: granted to a sole writer that can be called
//! back (and not while another client has the file open); another client's open for reading
//! recalls it (NFS4ERR_DELAY until it comes back); another client's GETATTR asks the holder
//! with CB_GETATTR and goes on without a recall when the holder changed nothing, but recalls
//! it when the holder has changes the server has not seen; returned while its holder was
//! writing and still has the file open, it keeps others waiting until the holder's CLOSE; a
//! holder reclaims it after a restart; and `write_delegations: false` grants none.
use crate::common;
use common::*;
use mds::Server;
use proto::nfs4::*;
use proto::xdr::Opaque;
use std::time::Duration;

fn named(owner: &str, access: u32, create: bool) -> NfsArgop4 {
    let how = if create {
        Openflag4::Create(Createhow4::Unchecked(Fattr4::default()))
    } else {
        Openflag4::NoCreate
    };
    open_op(owner, access, how, OpenClaim4::Null(Opaque::from("f")))
}

fn getattr_size_change() -> NfsArgop4 {
    NfsArgop4::Getattr(GetattrArgs {
        attr_request: vec![(1 << 3) | (1 << 4)],
    })
}

/// (change, size) from a GETATTR of exactly those two.
fn change_size(r: &NfsResop4) -> (u64, u64) {
    let NfsResop4::Getattr(GetattrRes::Ok(g)) = r else {
        panic!("{r:?}")
    };
    let v = &g.obj_attributes.attr_vals.0;
    (
        u64::from_be_bytes(v[0..8].try_into().unwrap()),
        u64::from_be_bytes(v[8..16].try_into().unwrap()),
    )
}

/// The holder's side: it created "f" for reading and writing as open-owner "w".
type Writer = Opened;

async fn create_alone(s: &Server, name: &str) -> Writer {
    open_alone(s, name, "w", 3).await
}

/// The write delegation that came with the holder's open, if one did.
fn write_deleg(w: &Writer) -> Option<Stateid4> {
    match &w.delegation {
        OpenDelegation4::Write(d) => {
            assert!(!d.recall);
            Some(d.stateid)
        }
        _ => None,
    }
}

async fn next(w: &mut Writer) -> Option<Recall> {
    tokio::time::timeout(Duration::from_secs(5), w.recalls.recv())
        .await
        .ok()
        .flatten()
}

/// The holder's WRITE (FILE_SYNC) of `data` at `offset` under `stateid`, as its `n`th call.
async fn write_under(
    w: &Writer,
    n: u32,
    stateid: Stateid4,
    offset: u64,
    data: Vec<u8>,
) -> Compound4Res {
    compound(
        &w.c,
        1,
        vec![
            seq(w.sid, n),
            NfsArgop4::Putfh(PutfhArgs {
                object: w.fh.clone(),
            }),
            NfsArgop4::Write(WriteArgs {
                stateid,
                offset,
                stable: StableHow4::FileSync4,
                data: data.into(),
            }),
        ],
    )
    .await
}

async fn delegreturn(w: &Writer, n: u32) {
    let r = compound(
        &w.c,
        1,
        vec![
            seq(w.sid, n),
            NfsArgop4::Putfh(PutfhArgs {
                object: w.fh.clone(),
            }),
            NfsArgop4::Delegreturn(DelegreturnArgs {
                deleg_stateid: write_deleg(w).unwrap(),
            }),
        ],
    )
    .await;
    assert_eq!(r.status, 0, "{r:?}");
}

#[tokio::test]
async fn a_sole_writer_gets_one_and_a_reader_recalls_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_on(dir.path(), 5, true).await;
    let mut w = create_alone(&s, "f").await;
    let deleg = write_deleg(&w).expect("no write delegation for a sole writer");
    // Without layouts its holder may keep 64 MiB unwritten past a close (`open::space_limit`).
    assert!(
        matches!(&w.delegation, OpenDelegation4::Write(d) if d.space_limit == NfsSpaceLimit4::Size(64 << 20)),
        "{:?}",
        w.delegation
    );
    let counts = s.admin().state_counts();
    assert_eq!(
        (counts.write_delegations, counts.write_delegations_granted),
        (1, 1)
    );

    // Another client opens it for reading: told to wait, the holder is called back.
    let b = connect(&s).await;
    let (sb, _) = session_with_back_channel(&b, "reader").await;
    let read_open = |n| vec![seq(sb, n), NfsArgop4::Putrootfh, named("r", 1, false)];
    let r = compound(&b, 1, read_open(2)).await;
    assert_eq!(r.status, Nfsstat4::Delay.code(), "{r:?}");
    assert_eq!(next(&mut w).await, Some(Recall::Delegation(deleg)));
    let r = compound(&b, 1, read_open(3)).await;
    assert_eq!(r.status, Nfsstat4::Delay.code(), "still out: {r:?}");
    delegreturn(&w, 3).await;
    // Returned with the file still open for writing: what the holder queued at close may
    // not be sent yet (Linux 6.1 returns first), so the reader waits for its CLOSE, or a
    // quiet second (`state::delegations::DRAIN_QUIET`).
    let r = compound(&b, 1, read_open(4)).await;
    assert_eq!(r.status, Nfsstat4::Delay.code(), "draining: {r:?}");
    assert_eq!(s.admin().state_counts().write_delegations, 0);
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let r = compound(&b, 1, read_open(5)).await;
    assert_eq!(r.status, 0, "{r:?}");

    // While the reader has it open, the writer gets none (nor would anyone else).
    reopen_without_write_delegation(&w, 4, "w").await;
}

/// The holder opens "f" again, for reading and writing, as open-owner `owner` in its `n`th
/// call: no write delegation comes with it.
async fn reopen_without_write_delegation(w: &Writer, n: u32, owner: &str) {
    let r = compound(
        &w.c,
        1,
        vec![seq(w.sid, n), NfsArgop4::Putrootfh, named(owner, 3, false)],
    )
    .await;
    let NfsResop4::Open(OpenRes::Ok(o)) = &r.resarray[2] else {
        panic!("{r:?}")
    };
    assert!(!matches!(o.delegation, OpenDelegation4::Write(_)), "{o:?}");
}

#[tokio::test]
async fn another_clients_getattr_asks_the_holder_first() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_on(dir.path(), 5, true).await;
    let mut w = create_alone(&s, "f").await;
    let deleg = write_deleg(&w).expect("no write delegation");
    let b = connect(&s).await;
    let (sb, _) = session_with_back_channel(&b, "stat").await;
    let fh = w.fh.clone();
    let stat = |n| {
        vec![
            seq(sb, n),
            NfsArgop4::Putfh(PutfhArgs { object: fh.clone() }),
            getattr_size_change(),
        ]
    };

    // The holder has changed nothing: the server's attributes, no recall.
    *w.attrs.lock().unwrap() = Some((w.change, 0));
    let r = compound(&b, 1, stat(2)).await;
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(change_size(&r.resarray[2]), (w.change, 0));
    assert_eq!(next(&mut w).await, Some(Recall::Getattr(w.fh.clone())));
    assert_eq!(s.admin().state_counts().cb_getattrs, 1);
    assert_eq!(s.admin().state_counts().write_delegations, 1, "kept");

    // It has written 100 bytes the server has not seen: recalled, DELAY until it is back.
    *w.attrs.lock().unwrap() = Some((w.change + 1, 100));
    let r = compound(&b, 1, stat(3)).await;
    assert_eq!(r.status, Nfsstat4::Delay.code(), "{r:?}");
    assert_eq!(next(&mut w).await, Some(Recall::Getattr(w.fh.clone())));
    assert_eq!(next(&mut w).await, Some(Recall::Delegation(deleg)));
    // The holder writes its bytes, then gives the delegation back.
    let r = write_under(&w, 3, deleg, 0, vec![7u8; 100]).await;
    assert_eq!(r.status, 0, "{r:?}");
    delegreturn(&w, 4).await;
    // It still has the file open and was writing: more of its writes may be on their way
    // under the delegation (as Linux sends them after DELEGRETURN), and they still land ...
    let r = write_under(&w, 5, deleg, 100, vec![8u8; 50]).await;
    assert_eq!(r.status, 0, "a write queued before the DELEGRETURN: {r:?}");
    // ... while the other client waits for them, until the holder closes the file.
    let r = compound(&b, 1, stat(4)).await;
    assert_eq!(r.status, Nfsstat4::Delay.code(), "{r:?}");
    let r = compound(
        &w.c,
        1,
        vec![
            seq(w.sid, 6),
            NfsArgop4::Putfh(PutfhArgs {
                object: w.fh.clone(),
            }),
            NfsArgop4::Close(CloseArgs {
                seqid: 0,
                open_stateid: w.open,
            }),
        ],
    )
    .await;
    assert_eq!(r.status, 0, "{r:?}");
    let r = compound(&b, 1, stat(5)).await;
    assert_eq!(r.status, 0, "{r:?}");
    let (change, size) = change_size(&r.resarray[2]);
    assert_eq!(size, 150);
    assert!(change > w.change);

    // A holder that does not answer CB_GETATTR at all is recalled as well.
    let mut w2 = create_alone(&s, "g").await;
    let _ = write_deleg(&w2).expect("no write delegation the second time");
    let r = compound(
        &b,
        1,
        vec![
            seq(sb, 6),
            NfsArgop4::Putfh(PutfhArgs {
                object: w2.fh.clone(),
            }),
            getattr_size_change(),
        ],
    )
    .await;
    assert!(r.status == 0 || r.status == Nfsstat4::Delay.code(), "{r:?}");
    assert_eq!(next(&mut w2).await, Some(Recall::Getattr(w2.fh.clone())));
}

#[tokio::test]
async fn a_holder_reclaims_its_write_delegation_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_on(dir.path(), 5, true).await;
    let w = create_alone(&s, "f").await;
    assert!(write_deleg(&w).is_some(), "no write delegation");
    let fh = w.fh.clone();
    w.c.close();
    s.shutdown().await;

    let s = start_on(dir.path(), 5, true).await;
    let (c, _recalls, _attrs) = connect_holder_answering(&s, 1).await;
    // The same client owner and verifier: the restarted server knows it may reclaim.
    let (sid, _, _, _) = establish(
        &c,
        "holder-f",
        CREATE_SESSION4_FLAG_CONN_BACK_CHAN,
        vec![CallbackSecParms4::AuthNone],
        1,
    )
    .await;
    let r = compound(
        &c,
        1,
        vec![
            seq(sid, 1),
            NfsArgop4::Putfh(PutfhArgs { object: fh }),
            open_op(
                "w",
                3,
                Openflag4::NoCreate,
                OpenClaim4::Previous(OpenDelegationType4::Write),
            ),
        ],
    )
    .await;
    assert_eq!(r.status, 0, "{r:?}");
    let NfsResop4::Open(OpenRes::Ok(o)) = &r.resarray[2] else {
        panic!("{r:?}")
    };
    assert!(
        matches!(&o.delegation, OpenDelegation4::Write(w) if !w.recall),
        "{o:?}"
    );
    assert_eq!(s.admin().state_counts().write_delegations, 1);
}

#[tokio::test]
async fn switched_off_no_write_delegation_is_granted() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_on(dir.path(), 5, false).await;
    let w = create_alone(&s, "f").await;
    assert_eq!(write_deleg(&w), None);
    assert_eq!(s.admin().state_counts().write_delegations_granted, 0);
}

/// A write by another user must clear a file's set-id bits, which the server does when the
/// WRITE reaches it while a holder reports the mode from its cache (found by the kernel:
/// "write by another user to a 2777 file clears set-id bits" read 2777 on a single node). So
/// a holder's own SETATTR that makes its file set-id recalls its delegation, and a set-id
/// file is not write-delegated.
#[tokio::test]
async fn a_file_made_set_id_is_not_write_delegated() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_on(dir.path(), 5, true).await;
    let mut w = create_alone(&s, "f").await;
    let deleg = write_deleg(&w).expect("no write delegation for a sole writer");
    let (sid, fh) = (w.sid, w.fh.clone());
    let setgid = |n, stateid| {
        vec![
            seq(sid, n),
            NfsArgop4::Putfh(PutfhArgs { object: fh.clone() }),
            NfsArgop4::Setattr(SetattrArgs {
                stateid,
                obj_attributes: proto::nfs4::attr::FileAttrs {
                    mode: Some(0o2777),
                    ..Default::default()
                }
                .encode_all(),
            }),
        ]
    };
    let r = compound(&w.c, 1, setgid(3, w.open)).await;
    assert_eq!(r.status, Nfsstat4::Delay.code(), "the holder's own: {r:?}");
    assert_eq!(next(&mut w).await, Some(Recall::Delegation(deleg)));
    delegreturn(&w, 4).await;
    // Its returned delegation drains while the file is open for writing: the set-id SETATTR
    // waits for the writes the holder may have queued at close, which would clear the bits
    // if they landed after it.
    let r = compound(&w.c, 1, setgid(5, w.open)).await;
    assert_eq!(r.status, Nfsstat4::Delay.code(), "draining: {r:?}");
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let r = compound(&w.c, 1, setgid(6, w.open)).await;
    assert_eq!(r.status, 0, "{r:?}");

    reopen_without_write_delegation(&w, 7, "w2").await;
    assert_eq!(s.admin().state_counts().write_delegations, 0);
}
