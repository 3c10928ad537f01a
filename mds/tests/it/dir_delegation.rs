//! Directory delegations (RFC 8881 §18.39): granted to a client with a back channel, kept
//! through the holder's own changes, and recalled (the changer waiting with NFS4ERR_DELAY)
//! before any other client changes the directory's entries.
use crate::common;
use common::*;
use proto::nfs4::*;
use proto::rpc::Connection;
use proto::xdr::Opaque;
use std::time::Duration;

fn get_dir_delegation() -> NfsArgop4 {
    NfsArgop4::GetDirDelegation(GetDirDelegationArgs {
        gdda_signal_deleg_avail: false,
        gdda_notification_types: Vec::new(),
        gdda_child_attr_delay: Nfstime4::default(),
        gdda_dir_attr_delay: Nfstime4::default(),
        gdda_child_attributes: Vec::new(),
        gdda_dir_attributes: Vec::new(),
    })
}

/// GET_DIR_DELEGATION on the root: the stateid if granted, None if declined.
async fn ask(c: &Connection, s: Sessionid4, n: u32) -> Option<Stateid4> {
    let r = compound(
        c,
        1,
        vec![seq(s, n), NfsArgop4::Putrootfh, get_dir_delegation()],
    )
    .await;
    granted(&r.resarray[2])
}

/// The stateid of a granted GET_DIR_DELEGATION result, None if declined (GDD4_UNAVAIL, with
/// no promise of a later signal); anything else fails the test.
fn granted(r: &NfsResop4) -> Option<Stateid4> {
    match r {
        NfsResop4::GetDirDelegation(GetDirDelegationRes::Ok(GetDirDelegationResNonFatal::Ok(
            ok,
        ))) => {
            assert!(ok.gddr_notification.iter().all(|w| *w == 0), "{ok:?}");
            Some(ok.gddr_stateid)
        }
        NfsResop4::GetDirDelegation(GetDirDelegationRes::Ok(
            GetDirDelegationResNonFatal::Unavail(false),
        )) => None,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn another_clients_change_waits_for_the_directory_delegation() {
    let (s, _d) = server().await;
    let (a, mut recalls) = connect_holder(&s).await;
    let (sa, _) = session_with_back_channel(&a, "holder").await;
    let b = connect(&s).await;
    let (sb, _) = session_with_back_channel(&b, "changer").await;

    let deleg = ask(&a, sa, 2).await.expect("no directory delegation");
    assert_eq!(
        ask(&a, sa, 3).await,
        None,
        "a second one for the same holder"
    );

    // The holder's own change keeps its delegation: it knows what it did.
    let r = compound(
        &a,
        1,
        vec![
            seq(sa, 4),
            NfsArgop4::Putrootfh,
            open_create("mine", "a", Fattr4::default()),
        ],
    )
    .await;
    assert_eq!(r.status, 0, "{r:?}");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), recalls.recv())
            .await
            .is_err(),
        "the holder's own create recalled its delegation"
    );

    // Anyone else's create waits, and the holder is called back for exactly that delegation.
    let r = compound(
        &b,
        1,
        vec![
            seq(sb, 2),
            NfsArgop4::Putrootfh,
            open_create("theirs", "b", Fattr4::default()),
        ],
    )
    .await;
    assert_eq!(r.status, Nfsstat4::Delay.code(), "{r:?}");
    let recalled = tokio::time::timeout(T, recalls.recv())
        .await
        .expect("no CB_RECALL")
        .unwrap();
    assert_eq!(recalled, Recall::Delegation(deleg));
    // Other kinds of change wait too, without a second callback; and while the recall is
    // under way nobody gets a new delegation on the directory.
    let r = compound(&b, 1, vec![seq(sb, 3), NfsArgop4::Putrootfh, mkdir("sub")]).await;
    assert_eq!(r.status, Nfsstat4::Delay.code(), "{r:?}");
    // So do renaming in it, linking into it and changing its attributes.
    let others = [
        vec![
            NfsArgop4::Putrootfh,
            NfsArgop4::Savefh,
            NfsArgop4::Rename(RenameArgs {
                oldname: Opaque::from("mine"),
                newname: Opaque::from("moved"),
            }),
        ],
        vec![
            NfsArgop4::Putrootfh,
            NfsArgop4::Lookup(LookupArgs {
                objname: Opaque::from("mine"),
            }),
            NfsArgop4::Savefh,
            NfsArgop4::Putrootfh,
            NfsArgop4::Link(LinkArgs {
                newname: Opaque::from("linked"),
            }),
        ],
        vec![
            NfsArgop4::Putrootfh,
            NfsArgop4::Setattr(SetattrArgs {
                stateid: Stateid4::default(),
                obj_attributes: Fattr4::default(),
            }),
        ],
    ];
    for (n, ops) in (4..).zip(others) {
        let r = compound(&b, 1, [vec![seq(sb, n)], ops].concat()).await;
        assert_eq!(r.status, Nfsstat4::Delay.code(), "{r:?}");
    }
    assert_eq!(ask(&b, sb, 7).await, None);

    let r = compound(
        &a,
        1,
        vec![
            seq(sa, 5),
            NfsArgop4::Putrootfh,
            NfsArgop4::Delegreturn(DelegreturnArgs {
                deleg_stateid: deleg,
            }),
        ],
    )
    .await;
    assert_eq!(r.status, 0, "{r:?}");
    let r = compound(
        &b,
        1,
        vec![
            seq(sb, 8),
            NfsArgop4::Putrootfh,
            open_create("theirs", "b", Fattr4::default()),
        ],
    )
    .await;
    assert_eq!(r.status, 0, "{r:?}");
    assert!(recalls.try_recv().is_err(), "a recall for nothing");

    // A directory just recalled is not delegated again for a while: a reader and a writer
    // taking turns would otherwise pay a recall, and the writer a DELAY, on every turn.
    assert_eq!(
        ask(&b, sb, 9).await,
        None,
        "delegated again right after a recall"
    );

    // Removing a name is a change too: B holds a delegation on "sub", A's REMOVE there waits.
    let r = compound(
        &a,
        1,
        vec![
            seq(sa, 6),
            NfsArgop4::Putrootfh,
            mkdir("sub"),
            open_create("x", "a", Fattr4::default()),
        ],
    )
    .await;
    assert_eq!(r.status, 0, "{r:?}");
    let r = compound(
        &b,
        1,
        vec![
            seq(sb, 10),
            NfsArgop4::Putrootfh,
            NfsArgop4::Lookup(LookupArgs {
                objname: Opaque::from("sub"),
            }),
            get_dir_delegation(),
        ],
    )
    .await;
    assert!(granted(&r.resarray[3]).is_some(), "{r:?}");
    let r = compound(
        &a,
        1,
        vec![
            seq(sa, 7),
            NfsArgop4::Putrootfh,
            NfsArgop4::Lookup(LookupArgs {
                objname: Opaque::from("sub"),
            }),
            NfsArgop4::Remove(RemoveArgs {
                target: Opaque::from("x"),
            }),
        ],
    )
    .await;
    assert_eq!(r.status, Nfsstat4::Delay.code(), "{r:?}");
}

#[tokio::test]
async fn no_directory_delegation_without_a_back_channel() {
    let (s, _d) = server().await;
    let c = connect(&s).await;
    let sid = session(&c).await;
    assert_eq!(ask(&c, sid, 1).await, None);
}

/// A v4.2 mount's callbacks must say minor version 2: Linux matches a CB_COMPOUND to its
/// client by session and minor version, and refuses one that says 1 (NFS4ERR_BADSESSION),
/// which left every recall of a v4.2 client unanswered until its lease ran out.
#[tokio::test]
async fn a_v42_holder_is_called_back_in_v42() {
    let (s, _d) = server().await;
    let (a, mut recalls) = connect_holder_minor(&s, 2).await;
    let (sa, _) = session_with_back_channel_minor(&a, "holder42", 2).await;
    let b = connect(&s).await;
    let (sb, _) = session_with_back_channel(&b, "changer").await;
    let r = compound(
        &a,
        2,
        vec![seq(sa, 2), NfsArgop4::Putrootfh, get_dir_delegation()],
    )
    .await;
    let d = granted(&r.resarray[2]).expect("no directory delegation");
    let r = compound(&b, 1, vec![seq(sb, 2), NfsArgop4::Putrootfh, mkdir("sub")]).await;
    assert_eq!(r.status, Nfsstat4::Delay.code(), "{r:?}");
    let recalled = tokio::time::timeout(T, recalls.recv())
        .await
        .expect("the v4.2 holder never accepted a CB_RECALL")
        .unwrap();
    assert_eq!(recalled, Recall::Delegation(d));
}

/// A directory removed while delegated takes the delegation along: the holder cannot return
/// it (its filehandle is stale), and a delegation left behind kept the client's
/// DESTROY_CLIENTID busy (Linux retried it for 10 s at every unmount).
#[tokio::test]
async fn a_removed_directory_takes_its_delegation_along() {
    let (s, _d) = server().await;
    let (a, _recalls) = connect_holder(&s).await;
    let (sa, clientid) = session_with_back_channel(&a, "holder").await;
    let r = compound(
        &a,
        1,
        vec![
            seq(sa, 2),
            NfsArgop4::Putrootfh,
            mkdir("gone"),
            get_dir_delegation(),
        ],
    )
    .await;
    assert!(granted(&r.resarray[3]).is_some(), "{r:?}");
    let r = compound(
        &a,
        1,
        vec![
            seq(sa, 3),
            NfsArgop4::Putrootfh,
            NfsArgop4::Remove(RemoveArgs {
                target: Opaque::from("gone"),
            }),
        ],
    )
    .await;
    assert_eq!(r.status, 0, "{r:?}");
    let r = compound(
        &a,
        1,
        vec![NfsArgop4::DestroySession(DestroySessionArgs {
            dsa_sessionid: sa,
        })],
    )
    .await;
    assert_eq!(r.status, 0, "{r:?}");
    let r = compound(
        &a,
        1,
        vec![NfsArgop4::DestroyClientid(DestroyClientidArgs {
            dca_clientid: clientid,
        })],
    )
    .await;
    assert_eq!(r.status, 0, "DESTROY_CLIENTID: {r:?}");
}
