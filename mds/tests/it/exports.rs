//! Export rules enforced on a real server: read-only exports refuse changes, root squash maps
//! uid 0 to the anonymous id, and clients outside the address ranges are refused.
use crate::common;
use common::*;
use mds::config::{AddrRange, Export};
use proto::nfs4::*;
use proto::rpc::{ReplyStatus, RpcError};
use proto::xdr::Opaque;

#[tokio::test]
async fn read_only_export_refuses_changes() {
    let mut e = Export::new("/").unwrap();
    e.read_only = true;
    let (s, _d) = server_with(e).await;
    let c = connect(&s).await;
    let sid = session(&c).await;
    let r = compound(&c, 1, vec![seq(sid, 1), NfsArgop4::Putrootfh, mkdir("d")]).await;
    assert_eq!(r.status, Nfsstat4::Rofs.code(), "{r:?}");
    // Reading still works.
    let r = compound(
        &c,
        1,
        vec![seq(sid, 2), NfsArgop4::Putrootfh, NfsArgop4::Getfh],
    )
    .await;
    assert_eq!(r.status, 0);
}

#[tokio::test]
async fn root_squash_maps_root_to_nobody() {
    let mut e = Export::new("/").unwrap();
    e.root_squash = true;
    let (s, _d) = server_with(e).await;
    let c = connect(&s).await;
    let sid = session(&c).await;
    // The root directory belongs to root with mode 0755: squashed root may not create in it.
    let r = compound(&c, 1, vec![seq(sid, 1), NfsArgop4::Putrootfh, mkdir("d")]).await;
    assert_eq!(r.status, Nfsstat4::Access.code(), "{r:?}");
}

#[tokio::test]
async fn clients_outside_the_ranges_are_refused() {
    let mut e = Export::new("/").unwrap();
    e.clients = vec!["10.9.9.0/24".parse::<AddrRange>().unwrap()];
    let (s, _d) = server_with(e).await;
    let c = connect(&s).await;
    let args = Compound4Args {
        tag: Opaque::default(),
        minorversion: 1,
        argarray: vec![NfsArgop4::Putrootfh],
    };
    let err = c
        .call(
            NFS4_PROGRAM,
            NFS_V4,
            NFSPROC4_COMPOUND,
            &root(),
            &proto::xdr::Xdr::to_xdr(&args),
            T,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, RpcError::NotAccepted(ReplyStatus::AuthError(5))),
        "{err:?}"
    );
}

#[tokio::test]
async fn auth_none_runs_as_the_anonymous_id_and_gss_is_refused() {
    let (s, _d) = server().await;
    let c = connect(&s).await;
    let sid = session(&c).await;
    let args = Compound4Args {
        tag: Opaque::default(),
        minorversion: 1,
        argarray: vec![seq(sid, 1), NfsArgop4::Putrootfh, mkdir("d")],
    };
    let body = proto::xdr::Xdr::to_xdr(&args);
    // AUTH_NONE: nobody may not create in root's 0755 directory.
    let r = c
        .call(
            NFS4_PROGRAM,
            NFS_V4,
            NFSPROC4_COMPOUND,
            &proto::rpc::Auth::None,
            &body,
            T,
        )
        .await
        .unwrap();
    let r = <Compound4Res as proto::xdr::Xdr>::from_xdr(r.body()).unwrap();
    assert_eq!(r.status, Nfsstat4::Access.code(), "{r:?}");
    // RPCSEC_GSS is not implemented: refused as too weak rather than half-served.
    let gss = proto::rpc::Auth::Other {
        flavor: proto::rpc::RPCSEC_GSS,
        body: vec![0; 20],
    };
    let err = c
        .call(NFS4_PROGRAM, NFS_V4, NFSPROC4_COMPOUND, &gss, &body, T)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RpcError::NotAccepted(ReplyStatus::AuthError(5))),
        "{err:?}"
    );
}
