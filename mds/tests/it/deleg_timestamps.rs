//! RFC 9754 as Linux uses it: the `open_arguments` attribute says what OPEN takes (Linux asks
//! for delegated timestamps only of a server that lists them there); an OPEN that asks for
//! them gets a `*_ATTRS_DELEG` delegation; its holder, and nobody else, reports the file's
//! times with SETATTR of `time_deleg_modify` under that delegation, and the server keeps the
//! reported time (not its own clock's); CB_GETATTR asks such a holder for its times, and an
//! answer that carries them is still read for its change attribute and size.
use crate::common;
use common::*;
use proto::nfs4::*;
use proto::xdr::Opaque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const WANT_TIMESTAMPS: u32 = OPEN4_SHARE_ACCESS_WANT_DELEG_TIMESTAMPS;

fn getattr(bits: &[u32]) -> NfsArgop4 {
    NfsArgop4::Getattr(GetattrArgs {
        attr_request: Bitmap::from_bits(bits).to_vec(),
    })
}

fn attrs_of(r: &NfsResop4) -> FileAttrs {
    let NfsResop4::Getattr(GetattrRes::Ok(g)) = r else {
        panic!("{r:?}")
    };
    FileAttrs::decode(&g.obj_attributes).unwrap()
}

fn putfh(fh: &NfsFh4) -> NfsArgop4 {
    NfsArgop4::Putfh(PutfhArgs { object: fh.clone() })
}

fn now() -> Nfstime4 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    Nfstime4 {
        seconds: d.as_secs() as i64,
        nseconds: d.subsec_nanos(),
    }
}

fn setattr_modify(stateid: Stateid4, t: Nfstime4) -> NfsArgop4 {
    NfsArgop4::Setattr(SetattrArgs {
        stateid,
        obj_attributes: FileAttrs {
            time_deleg_modify: Some(t),
            ..Default::default()
        }
        .encode_all(),
    })
}

fn write_attrs_deleg(h: &Opened) -> Stateid4 {
    match &h.delegation {
        OpenDelegation4::WriteAttrsDeleg(w) => w.stateid,
        d => panic!("no write delegation with delegated times: {d:?}"),
    }
}

#[tokio::test]
async fn open_arguments_lists_what_open_takes() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_on(dir.path(), 5, true).await;
    let c = connect(&s).await;
    let (sid, _, _) = new_session(&c, "args", 0, vec![CallbackSecParms4::AuthNone]).await;
    let r = compound(
        &c,
        1,
        vec![
            seq(sid, 1),
            NfsArgop4::Putrootfh,
            getattr(&[FATTR4_SUPPORTED_ATTRS, FATTR4_OPEN_ARGUMENTS]),
        ],
    )
    .await;
    assert_eq!(r.status, 0, "{r:?}");
    let a = attrs_of(&r.resarray[2]);
    let supported = a.supported_attrs.unwrap();
    for bit in [
        FATTR4_TIME_DELEG_ACCESS,
        FATTR4_TIME_DELEG_MODIFY,
        FATTR4_OPEN_ARGUMENTS,
    ] {
        assert!(supported.get(bit), "attribute {bit} not in supported_attrs");
    }
    let oa = a.open_arguments.expect("no open_arguments");
    // READ, WRITE, BOTH.
    assert_eq!(oa.oa_share_access, vec![0b1110]);
    // NONE, READ, WRITE, BOTH.
    assert_eq!(oa.oa_share_deny, vec![0b1111]);
    // ANY_DELEG, NO_DELEG, CANCEL and DELEG_TIMESTAMPS; not OPEN_XOR_DELEGATION, nor the
    // signal and push wants.
    assert_eq!(
        oa.oa_share_access_want,
        vec![(1 << 3) | (1 << 4) | (1 << 5) | (1 << 20)]
    );
    // NULL, PREVIOUS, DELEGATE_CUR, FH, DELEG_CUR_FH; not the DELEG_PREV pair (NOTSUPP).
    assert_eq!(oa.oa_open_claim, vec![0b11_0111]);
    // UNCHECKED4, GUARDED4, EXCLUSIVE4, EXCLUSIVE4_1.
    assert_eq!(oa.oa_create_mode, vec![0b1111]);
    // A GETATTR of the holder's times leaves them out rather than invent them.
    let r = compound(
        &c,
        1,
        vec![
            seq(sid, 2),
            NfsArgop4::Putrootfh,
            getattr(&[FATTR4_TIME_DELEG_ACCESS, FATTR4_TIME_DELEG_MODIFY]),
        ],
    )
    .await;
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(attrs_of(&r.resarray[2]), FileAttrs::default());
}

#[tokio::test]
async fn an_open_asking_for_timestamps_gets_an_attrs_delegation() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_on(dir.path(), 5, true).await;
    let w = open_alone(&s, "w", "o", 3 | WANT_TIMESTAMPS).await;
    write_attrs_deleg(&w);
    let r = open_alone(&s, "r", "o", 1 | WANT_TIMESTAMPS).await;
    assert!(
        matches!(r.delegation, OpenDelegation4::ReadAttrsDeleg(_)),
        "{:?}",
        r.delegation
    );
    // Without the want, the plain kinds, as before.
    let plain = open_alone(&s, "p", "o", 3).await;
    assert!(
        matches!(plain.delegation, OpenDelegation4::Write(_)),
        "{:?}",
        plain.delegation
    );
}

#[tokio::test]
async fn the_holder_sets_the_modify_time_it_reports_and_nobody_else_may() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_on(dir.path(), 5, true).await;
    let w = open_alone(&s, "f", "o", 3 | WANT_TIMESTAMPS).await;
    let deleg = write_attrs_deleg(&w);
    let mtime = |r: &NfsResop4| attrs_of(r).time_modify.unwrap();
    let stat = |n| vec![seq(w.sid, n), putfh(&w.fh), getattr(&[FATTR4_TIME_MODIFY])];
    let r = compound(&w.c, 1, stat(3)).await;
    let created = mtime(&r.resarray[2]);

    // Another client, even with the holder's stateid: BAD_STATEID, nothing changes.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let reported = now();
    let b = connect(&s).await;
    let (sb, _, _) = new_session(&b, "other", 0, vec![CallbackSecParms4::AuthNone]).await;
    let r = compound(
        &b,
        1,
        vec![seq(sb, 1), putfh(&w.fh), setattr_modify(deleg, reported)],
    )
    .await;
    assert_eq!(r.status, Nfsstat4::BadStateid.code(), "{r:?}");
    // The holder under its open stateid, or under none: BAD_STATEID too.
    for (n, sid) in [(4, w.open), (5, Stateid4::default())] {
        let r = compound(
            &w.c,
            1,
            vec![seq(w.sid, n), putfh(&w.fh), setattr_modify(sid, reported)],
        )
        .await;
        assert_eq!(r.status, Nfsstat4::BadStateid.code(), "{sid:?}: {r:?}");
    }
    let r = compound(&w.c, 1, stat(6)).await;
    assert_eq!(mtime(&r.resarray[2]), created);

    // The holder under its delegation: the time it reports, to the nanosecond.
    let r = compound(
        &w.c,
        1,
        vec![seq(w.sid, 7), putfh(&w.fh), setattr_modify(deleg, reported)],
    )
    .await;
    assert_eq!(r.status, 0, "{r:?}");
    let NfsResop4::Setattr(set) = &r.resarray[2] else {
        panic!("{r:?}")
    };
    assert_eq!(
        Bitmap::from_words(&set.attrsset),
        Bitmap::from_bits(&[FATTR4_TIME_DELEG_MODIFY])
    );
    let r = compound(&w.c, 1, stat(8)).await;
    assert_eq!(mtime(&r.resarray[2]), reported);

    // One before the grant is ignored; one in the future is now at most.
    let r = compound(
        &w.c,
        1,
        vec![
            seq(w.sid, 9),
            putfh(&w.fh),
            setattr_modify(
                deleg,
                Nfstime4 {
                    seconds: created.seconds - 100,
                    nseconds: 0,
                },
            ),
            getattr(&[FATTR4_TIME_MODIFY]),
        ],
    )
    .await;
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(mtime(&r.resarray[3]), reported, "an earlier time moved it");
    let future = Nfstime4 {
        seconds: reported.seconds + 3600,
        nseconds: 0,
    };
    let r = compound(
        &w.c,
        1,
        vec![
            seq(w.sid, 10),
            putfh(&w.fh),
            setattr_modify(deleg, future),
            getattr(&[FATTR4_TIME_MODIFY]),
        ],
    )
    .await;
    assert_eq!(r.status, 0, "{r:?}");
    let clamped = mtime(&r.resarray[3]);
    assert!(clamped > reported && clamped <= now(), "{clamped:?}");

    // A holder of a plain delegation (it did not ask for timestamps) may not either.
    let p = open_alone(&s, "plain", "o", 3).await;
    let OpenDelegation4::Write(d) = &p.delegation else {
        panic!("{:?}", p.delegation)
    };
    let r = compound(
        &p.c,
        1,
        vec![
            seq(p.sid, 3),
            putfh(&p.fh),
            setattr_modify(d.stateid, now()),
        ],
    )
    .await;
    assert_eq!(r.status, Nfsstat4::BadStateid.code(), "{r:?}");
    // Nor may any client set them at create.
    let r = compound(
        &p.c,
        1,
        vec![
            seq(p.sid, 4),
            NfsArgop4::Putrootfh,
            open_op(
                "o",
                3,
                Openflag4::Create(Createhow4::Unchecked(
                    FileAttrs {
                        time_deleg_modify: Some(now()),
                        ..Default::default()
                    }
                    .encode_all(),
                )),
                OpenClaim4::Null(Opaque::from("g")),
            ),
        ],
    )
    .await;
    assert_eq!(r.status, Nfsstat4::Attrnotsupp.code(), "{r:?}");
}

#[tokio::test]
async fn cb_getattr_asks_for_the_times_and_reads_an_answer_that_has_them() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_on(dir.path(), 5, true).await;
    let mut w = open_alone(&s, "f", "o", 3 | WANT_TIMESTAMPS).await;
    write_attrs_deleg(&w);
    let b = connect(&s).await;
    let (sb, _) = session_with_back_channel(&b, "stat").await;
    // The holder changed nothing; its answer carries its times as well.
    *w.attrs.lock().unwrap() = Some((w.change, 0));
    let r = compound(
        &b,
        1,
        vec![
            seq(sb, 2),
            putfh(&w.fh),
            getattr(&[FATTR4_CHANGE, FATTR4_SIZE]),
        ],
    )
    .await;
    assert_eq!(r.status, 0, "{r:?}");
    let got = tokio::time::timeout(Duration::from_secs(5), w.recalls.recv())
        .await
        .unwrap();
    assert_eq!(got, Some(Recall::Getattr(w.fh.clone())));
    assert_eq!(
        s.admin().state_counts().write_delegations,
        1,
        "not recalled"
    );
}
