//! LAYOUTRETURN with an out-of-date layout stateid seqid gets NFS4ERR_OLD_STATEID (issue 11,
//! item 14), on a real MDS in cluster mode whose data servers exist only as registrations.
use crate::common;
use common::*;
use mds::config::ClusterConfig;
use mds::{Server, ServerConfig};
use proto::nfs4::*;
use proto::rpc::{Connection, ConnectionLimits, RejectCalls};
use proto::xdr::Opaque;
use std::sync::Arc;

const SECRET: &str = "a cluster secret for the layout stateid test";

async fn register_ds(mds: &Connection, ds_id: u64) {
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    heartbeat(mds, SECRET, ds_id, listen).await;
}

fn layoutget(stateid: Stateid4) -> NfsArgop4 {
    NfsArgop4::Layoutget(LayoutgetArgs {
        loga_signal_layout_avail: false,
        loga_layout_type: LAYOUT4_FLEX_FILES,
        loga_iomode: Layoutiomode4::Read,
        loga_offset: 0,
        loga_length: u64::MAX,
        loga_minlength: 0,
        loga_stateid: stateid,
        loga_maxcount: 1 << 16,
    })
}

fn layoutreturn(stateid: Stateid4) -> NfsArgop4 {
    NfsArgop4::Layoutreturn(LayoutreturnArgs {
        lora_reclaim: false,
        lora_layout_type: LAYOUT4_FLEX_FILES,
        lora_iomode: Layoutiomode4::Any,
        lora_layoutreturn: Layoutreturn4::File(LayoutreturnFile4 {
            lrf_offset: 0,
            lrf_length: u64::MAX,
            lrf_stateid: stateid,
            lrf_body: Opaque::default(),
        }),
    })
}

fn lookup_f() -> NfsArgop4 {
    NfsArgop4::Lookup(LookupArgs {
        objname: Opaque::from("f"),
    })
}

#[tokio::test]
async fn layoutreturn_with_an_old_layout_stateid_is_old_stateid() {
    let dir = tempfile::tempdir().unwrap();
    let secret = layout::ClusterSecret::from_passphrase(SECRET).unwrap();
    let s = Server::start(ServerConfig {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        exports: vec![mds::config::Export::new("/").unwrap()],
        lease_seconds: 30,
        write_delegations: true,
        grace_seconds: None,
        cluster: Some(ClusterConfig::new(secret)),
        connections: Default::default(),
        members: None,
        client_addresses: Default::default(),
        tier: None,
    })
    .await
    .unwrap();
    let admin = Connection::connect(
        s.local_addr(),
        Arc::new(RejectCalls),
        ConnectionLimits::default(),
    )
    .await
    .unwrap();
    register_ds(&admin, 21).await;
    register_ds(&admin, 22).await;

    let (a, _recalls) = connect_holder(&s).await;
    let (sa, _) = session_with_back_channel(&a, "layout-returner").await;
    let r = compound(
        &a,
        1,
        vec![
            seq(sa, 2),
            NfsArgop4::Putrootfh,
            open_create("f", "a", Fattr4::default()),
        ],
    )
    .await;
    let NfsResop4::Open(OpenRes::Ok(o)) = &r.resarray[2] else {
        panic!("{r:?}")
    };
    let get = |seqid, stateid| {
        vec![
            seq(sa, seqid),
            NfsArgop4::Putrootfh,
            lookup_f(),
            layoutget(stateid),
        ]
    };
    let r = compound(&a, 1, get(3, o.stateid)).await;
    let NfsResop4::Layoutget(LayoutgetRes::Ok(l1)) = &r.resarray[3] else {
        panic!("{r:?}")
    };
    let r = compound(&a, 1, get(4, l1.logr_stateid)).await;
    let NfsResop4::Layoutget(LayoutgetRes::Ok(l2)) = &r.resarray[3] else {
        panic!("{r:?}")
    };
    assert_eq!(l2.logr_stateid.other, l1.logr_stateid.other);
    assert!(l2.logr_stateid.seqid > l1.logr_stateid.seqid);

    // The first grant's stateid is out of date: the return is refused and changes nothing.
    let ret = |seqid, stateid| {
        vec![
            seq(sa, seqid),
            NfsArgop4::Putrootfh,
            lookup_f(),
            layoutreturn(stateid),
        ]
    };
    let r = compound(&a, 1, ret(5, l1.logr_stateid)).await;
    assert_eq!(r.status, Nfsstat4::OldStateid.code(), "{r:?}");
    let r = compound(&a, 1, ret(6, l2.logr_stateid)).await;
    assert_eq!(r.status, 0, "{r:?}");
    s.shutdown().await;
}
