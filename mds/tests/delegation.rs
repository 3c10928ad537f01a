//! Read delegations with a real back channel: granted to a read-only opener, recalled with
//! CB_RECALL when another client opens the file for writing (which waits with NFS4ERR_DELAY),
//! and the writer gets through once the holder returns it.
mod common;
use common::*;
use proto::nfs4::*;
use proto::rpc::Connection;
use proto::xdr::Opaque;
use tokio::sync::mpsc;

fn open_args(owner: &str, access: u32, create: bool) -> NfsArgop4 {
    NfsArgop4::Open(OpenArgs {
        seqid: 0,
        share_access: access,
        share_deny: 0,
        owner: StateOwner4 {
            clientid: 0,
            owner: Opaque::from(owner),
        },
        openhow: if create {
            Openflag4::Create(Createhow4::Unchecked(Fattr4::default()))
        } else {
            Openflag4::NoCreate
        },
        claim: OpenClaim4::Null(Opaque::from("shared")),
    })
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
    let (sa, _) = session_with_back_channel(&a, "holder").await;
    let b = connect(&s).await;
    let (sb, _) = session_with_back_channel(&b, b_name).await;

    // A creates the file read-write, closes, then opens it read-only: a read delegation.
    let r = compound(
        &a,
        1,
        vec![seq(sa, 2), NfsArgop4::Putrootfh, open_args("a", 3, true)],
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
