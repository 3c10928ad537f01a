//! Reclaim records of clients that never come back are dropped after the grace period they
//! missed (issue 11, item 11): the restart after that one has no grace period to wait out.
use crate::common;
use common::*;
use mds::Server;
use proto::nfs4::*;
use std::path::Path;
use std::time::Duration;

/// Starts a server on `dir` (a 2 s grace period).
async fn start(dir: &Path) -> Server {
    start_on(dir, 2, true).await
}

/// A new client's first OPEN after its RECLAIM_COMPLETE (`new_session` sends it; GRACE while
/// the server waits for the previous clients); the client then closes, and destroys its session and client ID, so it leaves no record behind.
async fn open_status(s: &Server, owner: &str, name: &str) -> u32 {
    let c = connect(s).await;
    let (sid, clientid, _) = new_session(&c, owner, 0, vec![CallbackSecParms4::AuthNone]).await;
    let r = compound(
        &c,
        1,
        vec![
            seq(sid, 1),
            NfsArgop4::Putrootfh,
            open_create(name, "o", Fattr4::default()),
        ],
    )
    .await;
    if let Some(NfsResop4::Open(OpenRes::Ok(o))) = r.resarray.get(2) {
        let closed = compound(
            &c,
            1,
            vec![
                seq(sid, 2),
                NfsArgop4::Putrootfh,
                NfsArgop4::Lookup(LookupArgs {
                    objname: proto::xdr::Opaque::from(name),
                }),
                NfsArgop4::Close(CloseArgs {
                    seqid: 0,
                    open_stateid: o.stateid,
                }),
            ],
        )
        .await;
        assert_eq!(closed.status, 0, "{closed:?}");
    }
    let d = compound(
        &c,
        1,
        vec![NfsArgop4::DestroySession(DestroySessionArgs {
            dsa_sessionid: sid,
        })],
    )
    .await;
    assert_eq!(d.status, 0, "{d:?}");
    let d = compound(
        &c,
        1,
        vec![NfsArgop4::DestroyClientid(DestroyClientidArgs {
            dca_clientid: clientid,
        })],
    )
    .await;
    assert_eq!(d.status, 0, "{d:?}");
    c.close();
    r.status
}

#[tokio::test]
async fn a_client_that_missed_a_grace_period_does_not_hold_up_the_next_restart() {
    let dir = tempfile::tempdir().unwrap();
    // A client with confirmed state; then the server goes down, and the client for good.
    let s = start(dir.path()).await;
    let c = connect(&s).await;
    let (sid, _, _) = new_session(&c, "vanished-host", 0, vec![CallbackSecParms4::AuthNone]).await;
    let r = compound(
        &c,
        1,
        vec![
            seq(sid, 1),
            NfsArgop4::Putrootfh,
            open_create("a", "o", Fattr4::default()),
        ],
    )
    .await;
    assert_eq!(r.status, 0, "{r:?}");
    c.close();
    s.shutdown().await;

    // Restart: the client may come back to reclaim, so a newcomer waits...
    let s = start(dir.path()).await;
    assert_eq!(
        open_status(&s, "newcomer-1", "b").await,
        Nfsstat4::Grace.code()
    );
    // ...until the grace period ends without it.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(open_status(&s, "newcomer-2", "c").await, 0);
    s.shutdown().await;

    // The next restart owes the vanished client nothing: no grace period.
    let s = start(dir.path()).await;
    assert_eq!(
        open_status(&s, "newcomer-3", "d").await,
        0,
        "grace period again for a client that missed the last one"
    );
    s.shutdown().await;
}
