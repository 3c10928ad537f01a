//! Read delegations with a real back channel: granted to a read-only opener, recalled with
//! CB_RECALL when another client opens the file for writing (which waits with NFS4ERR_DELAY),
//! and the writer gets through once the holder returns it; revoked (DELEG_REVOKED) when the
//! holder keeps it a lease past the recall, and no wait at all for a holder whose lease ran
//! out; recalls go with BACKCHANNEL_CTL's credential, and again on a holder's new session.
use crate::common;
use common::*;
use proto::nfs4::*;
use proto::rpc::{Auth, Connection};
use proto::xdr::Opaque;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

fn open_args(owner: &str, access: u32, create: bool) -> NfsArgop4 {
    let how = if create {
        Openflag4::Create(Createhow4::Unchecked(Fattr4::default()))
    } else {
        Openflag4::NoCreate
    };
    open_op(owner, access, how, OpenClaim4::Null(Opaque::from("shared")))
}

/// A server; client A (with a back channel recording recalls) holding a read delegation on
/// "shared"; client B with a session. Returns the delegation and A's recall feed.
struct Setup {
    _server: (mds::Server, tempfile::TempDir),
    a: Connection,
    sa: Sessionid4,
    b: Connection,
    sb: Sessionid4,
    deleg: Stateid4,
    recalls: mpsc::UnboundedReceiver<Recall>,
}

async fn holder_with_read_delegation(b_name: &str) -> Setup {
    let (s, d) = server().await;
    let (a, recalls) = connect_holder(&s).await;
    delegated((s, d), a, recalls, b_name).await
}

/// `holder_with_read_delegation` on server `s`, the holder on connection `a`.
async fn delegated(
    (s, d): (mds::Server, tempfile::TempDir),
    a: Connection,
    recalls: mpsc::UnboundedReceiver<Recall>,
    b_name: &str,
) -> Setup {
    let (sa, _) = session_with_back_channel(&a, "holder").await;
    let b = connect(&s).await;
    let (sb, _) = session_with_back_channel(&b, b_name).await;

    // A creates the file read-write (wanting no write delegation), closes, then opens it
    // read-only: a read delegation.
    let r = compound(
        &a,
        1,
        vec![
            seq(sa, 2),
            NfsArgop4::Putrootfh,
            open_args("a", 3 | OPEN4_SHARE_ACCESS_WANT_NO_DELEG, true),
        ],
    )
    .await;
    let NfsResop4::Open(OpenRes::Ok(o)) = &r.resarray[2] else {
        panic!("{r:?}")
    };
    let r = compound(
        &a,
        1,
        vec![
            seq(sa, 3),
            NfsArgop4::Putrootfh,
            lookup_shared(),
            NfsArgop4::Close(CloseArgs {
                seqid: 0,
                open_stateid: o.stateid,
            }),
        ],
    )
    .await;
    assert_eq!(r.status, 0, "{r:?}");
    let r = compound(
        &a,
        1,
        vec![seq(sa, 4), NfsArgop4::Putrootfh, open_args("a", 1, false)],
    )
    .await;
    let NfsResop4::Open(OpenRes::Ok(o)) = &r.resarray[2] else {
        panic!("{r:?}")
    };
    let OpenDelegation4::Read(deleg) = &o.delegation else {
        panic!("no read delegation: {o:?}")
    };
    Setup {
        _server: (s, d),
        a,
        sa,
        b,
        sb,
        deleg: deleg.stateid,
        recalls,
    }
}

fn lookup_shared() -> NfsArgop4 {
    NfsArgop4::Lookup(LookupArgs {
        objname: Opaque::from("shared"),
    })
}

/// A gives the delegation back (on its sequence id `n`).
async fn delegreturn(t: &Setup, n: u32) {
    let r = compound(
        &t.a,
        1,
        vec![
            seq(t.sa, n),
            NfsArgop4::Putrootfh,
            lookup_shared(),
            NfsArgop4::Delegreturn(DelegreturnArgs {
                deleg_stateid: t.deleg,
            }),
        ],
    )
    .await;
    assert_eq!(r.status, 0, "{r:?}");
}

#[tokio::test]
async fn write_open_recalls_a_read_delegation() {
    let mut t = holder_with_read_delegation("writer").await;
    let (a, sa, b, sb) = (t.a.clone(), t.sa, t.b.clone(), t.sb);

    // B wants to write: told to wait, and A is called back for exactly that delegation.
    let r = compound(
        &b,
        1,
        vec![seq(sb, 2), NfsArgop4::Putrootfh, open_args("b", 2, false)],
    )
    .await;
    assert_eq!(r.status, Nfsstat4::Delay.code(), "{r:?}");
    let recalled = tokio::time::timeout(T, t.recalls.recv())
        .await
        .expect("no CB_RECALL")
        .unwrap();
    assert_eq!(recalled, Recall::Delegation(t.deleg));
    // Still waiting until A returns it.
    let r = compound(
        &b,
        1,
        vec![seq(sb, 3), NfsArgop4::Putrootfh, open_args("b", 2, false)],
    )
    .await;
    assert_eq!(r.status, Nfsstat4::Delay.code());
    delegreturn(&t, 5).await;
    let r = compound(
        &b,
        1,
        vec![seq(sb, 4), NfsArgop4::Putrootfh, open_args("b", 2, false)],
    )
    .await;
    assert_eq!(r.status, 0, "{r:?}");
    // And nobody gets a read delegation while B has it open for writing.
    let r = compound(
        &a,
        1,
        vec![seq(sa, 6), NfsArgop4::Putrootfh, open_args("a2", 1, false)],
    )
    .await;
    let NfsResop4::Open(OpenRes::Ok(o)) = &r.resarray[2] else {
        panic!("{r:?}")
    };
    assert_eq!(o.delegation, OpenDelegation4::None);
}

#[tokio::test]
async fn remove_by_another_client_recalls_the_delegation_first() {
    let mut t = holder_with_read_delegation("remover").await;
    let (b, sb) = (t.b.clone(), t.sb);
    // Linux trusts a delegated file's cached name without asking the server, so B's REMOVE
    // must wait until A gives the delegation back.
    let remove = NfsArgop4::Remove(RemoveArgs {
        target: Opaque::from("shared"),
    });
    let r = compound(
        &b,
        1,
        vec![seq(sb, 2), NfsArgop4::Putrootfh, remove.clone()],
    )
    .await;
    assert_eq!(r.status, Nfsstat4::Delay.code(), "{r:?}");
    let recalled = tokio::time::timeout(T, t.recalls.recv())
        .await
        .expect("no CB_RECALL")
        .unwrap();
    assert_eq!(recalled, Recall::Delegation(t.deleg));
    delegreturn(&t, 5).await;
    let r = compound(&b, 1, vec![seq(sb, 3), NfsArgop4::Putrootfh, remove]).await;
    assert_eq!(r.status, 0, "{r:?}");
}

/// B's OPEN for writing on its sequence id `n`: its status.
async fn writer_open(t: &Setup, n: u32) -> u32 {
    let r = compound(
        &t.b,
        1,
        vec![seq(t.sb, n), NfsArgop4::Putrootfh, open_args("b", 2, false)],
    )
    .await;
    r.status
}

async fn next_recall(t: &mut Setup, wait: Duration) -> Option<Recall> {
    tokio::time::timeout(wait, t.recalls.recv())
        .await
        .ok()
        .flatten()
}

#[tokio::test]
async fn a_holder_whose_lease_ran_out_does_not_hold_up_a_writer() {
    let (s, d) = server_with_lease(5).await;
    let (a, recalls) = connect_holder(&s).await;
    let t = delegated((s, d), a, recalls, "writer").await;
    // The holder falls silent for more than its lease: a courtesy client, expired by the
    // first conflict instead of being recalled and waited for.
    tokio::time::sleep(Duration::from_millis(6500)).await;
    assert_eq!(writer_open(&t, 2).await, 0, "waiting for a silent holder");
}

#[tokio::test]
async fn an_unreturned_delegation_is_revoked_and_its_holder_told_until_it_frees_it() {
    let (s, d) = server_with_lease(5).await;
    let (a, recalls) = connect_holder(&s).await;
    let mut t = delegated((s, d), a, recalls, "writer").await;
    assert_eq!(writer_open(&t, 2).await, Nfsstat4::Delay.code());
    assert_eq!(
        next_recall(&mut t, T).await,
        Some(Recall::Delegation(t.deleg))
    );
    // The holder keeps renewing but never returns the delegation.
    let mut n = 5;
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(6500) {
        let r = compound(&t.a, 1, vec![seq(t.sa, n)]).await;
        assert_eq!(r.status, 0, "{r:?}");
        n += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(writer_open(&t, 3).await, 0);
    let flags = |r: &Compound4Res| match &r.resarray[0] {
        NfsResop4::Sequence(SequenceRes::Ok(s)) => s.sr_status_flags,
        other => panic!("{other:?}"),
    };
    let r = compound(&t.a, 1, vec![seq(t.sa, n)]).await;
    assert_ne!(flags(&r) & SEQ4_STATUS_RECALLABLE_STATE_REVOKED, 0, "{r:?}");
    let r = compound(
        &t.a,
        1,
        vec![
            seq(t.sa, n + 1),
            NfsArgop4::Putrootfh,
            lookup_shared(),
            NfsArgop4::Delegreturn(DelegreturnArgs {
                deleg_stateid: t.deleg,
            }),
        ],
    )
    .await;
    assert_eq!(r.status, Nfsstat4::DelegRevoked.code(), "{r:?}");
    let r = compound(
        &t.a,
        1,
        vec![
            seq(t.sa, n + 2),
            NfsArgop4::TestStateid(TestStateidArgs {
                ts_stateids: vec![t.deleg],
            }),
            NfsArgop4::FreeStateid(FreeStateidArgs {
                fsa_stateid: t.deleg,
            }),
        ],
    )
    .await;
    assert_eq!(r.status, 0, "{r:?}");
    let NfsResop4::TestStateid(TestStateidRes::Ok(ts)) = &r.resarray[1] else {
        panic!("{r:?}")
    };
    assert_eq!(ts.tsr_status_codes, vec![Nfsstat4::DelegRevoked.code()]);
    let r = compound(&t.a, 1, vec![seq(t.sa, n + 3)]).await;
    assert_eq!(flags(&r) & SEQ4_STATUS_RECALLABLE_STATE_REVOKED, 0, "{r:?}");
}

#[tokio::test]
async fn backchannel_ctl_sets_the_credential_of_later_callbacks() {
    let (s, d) = server().await;
    let (a, recalls, mut creds) = connect_holder_with_creds(&s).await;
    let mut t = delegated((s, d), a, recalls, "writer").await;
    let r = compound(
        &t.a,
        1,
        vec![
            seq(t.sa, 5),
            NfsArgop4::BackchannelCtl(BackchannelCtlArgs {
                bca_cb_program: 0x4000_0000,
                bca_sec_parms: vec![CallbackSecParms4::AuthSys(AuthsysParms {
                    stamp: 7,
                    machinename: Opaque::from("renamed"),
                    uid: 4242,
                    gid: 4343,
                    gids: vec![],
                })],
            }),
        ],
    )
    .await;
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(writer_open(&t, 2).await, Nfsstat4::Delay.code());
    assert_eq!(
        next_recall(&mut t, T).await,
        Some(Recall::Delegation(t.deleg))
    );
    let mut last = None;
    while let Ok(c) = creds.try_recv() {
        last = Some(c);
    }
    match last {
        Some(Auth::Sys(c)) => {
            assert_eq!((c.uid, c.gid, c.machine), (4242, 4343, b"renamed".to_vec()))
        }
        other => panic!("recall sent with {other:?}"),
    }
    // No parameters it could use (none here; RPCSEC_GSS alike): refused, as knfsd does.
    let r = compound(
        &t.a,
        1,
        vec![
            seq(t.sa, 6),
            NfsArgop4::BackchannelCtl(BackchannelCtlArgs {
                bca_cb_program: 0x4000_0000,
                bca_sec_parms: vec![],
            }),
        ],
    )
    .await;
    assert_eq!(r.status, Nfsstat4::EncrAlgUnsupp.code(), "{r:?}");
}

#[tokio::test]
async fn an_unanswered_recall_is_sent_again_on_the_holders_new_session() {
    let (s, d) = server().await;
    let (a, recalls) = connect_holder(&s).await;
    let t = delegated((s, d), a, recalls, "writer").await;
    // The holder's connection (its back channel) goes just before the recall.
    t.a.close();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(writer_open(&t, 2).await, Nfsstat4::Delay.code());
    // It comes back on a new connection with a new session for the same client: the recall
    // it missed reaches it there.
    let (a2, mut recalls2) = connect_holder(&t._server.0).await;
    let _ = session_with_back_channel(&a2, "holder").await;
    let got = tokio::time::timeout(Duration::from_secs(5), recalls2.recv())
        .await
        .ok()
        .flatten();
    assert_eq!(got, Some(Recall::Delegation(t.deleg)));
}
