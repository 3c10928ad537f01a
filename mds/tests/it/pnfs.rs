//! pNFS on a real MDS in cluster mode, with data servers that exist only as registrations (the
//! test sends their heartbeats): CB_LAYOUTRECALL when another client truncates a file under a
//! layout, and a data server a client reports unreachable being probed and marked down at once
//! (well before its heartbeats would time out).
use crate::common;
use common::*;
use mds::config::ClusterConfig;
use mds::{Server, ServerConfig};
use proto::cluster::*;
use proto::nfs4::*;
use proto::rpc::{Auth, Connection, ConnectionLimits, RejectCalls};
use proto::xdr::{Opaque, Xdr};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SECRET: &str = "a cluster secret for the pnfs tests";

/// A loopback address nothing listens on.
fn dead_addr() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A data server registration under this file's cluster secret.
async fn register(mds: &Connection, ds_id: u64, listen: std::net::SocketAddr) {
    heartbeat(mds, SECRET, ds_id, listen).await
}

/// An MDS in cluster mode on loopback.
async fn cluster_server(dir: &std::path::Path) -> Server {
    let secret = layout::ClusterSecret::from_passphrase(SECRET).unwrap();
    Server::start(ServerConfig {
        data_dir: dir.to_path_buf(),
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
    .unwrap()
}

async fn ds_state(mds: &Connection, ds_id: u64) -> u32 {
    let r = mds
        .call(
            CFS_CLUSTER_PROGRAM,
            CFS_CLUSTER_V1,
            CLUSTERPROC_STATUS,
            &Auth::None,
            &layout::ClusterSecret::from_passphrase(SECRET)
                .unwrap()
                .status_args(1)
                .to_xdr(),
            T,
        )
        .await
        .unwrap();
    let proto::cluster::StatusRes::Ok(s) = proto::cluster::StatusRes::from_xdr(r.body()).unwrap()
    else {
        panic!("status refused")
    };
    s.data_servers
        .iter()
        .find(|d| d.ds_id == ds_id)
        .expect("registered DS")
        .state
}

#[tokio::test]
async fn truncate_recalls_layouts_and_an_unreachable_ds_is_probed_down() {
    let dir = tempfile::tempdir().unwrap();
    let s = cluster_server(dir.path()).await;
    let admin = Connection::connect(
        s.local_addr(),
        Arc::new(RejectCalls),
        ConnectionLimits::default(),
    )
    .await
    .unwrap();
    let (ds1, ds2) = (dead_addr(), dead_addr());
    register(&admin, 11, ds1).await;
    register(&admin, 12, ds2).await;

    let (a, mut recalls) = connect_holder(&s).await;
    let (sa, _) = session_with_back_channel(&a, "layout-holder").await;
    let open = NfsArgop4::Open(OpenArgs {
        seqid: 0,
        // No write delegation: B's truncation below would recall it first.
        share_access: 3 | OPEN4_SHARE_ACCESS_WANT_NO_DELEG,
        share_deny: 0,
        owner: StateOwner4 {
            clientid: 0,
            owner: Opaque::from("a"),
        },
        openhow: Openflag4::Create(Createhow4::Unchecked(Fattr4::default())),
        claim: OpenClaim4::Null(Opaque::from("f")),
    });
    let r = compound(&a, 1, vec![seq(sa, 2), NfsArgop4::Putrootfh, open]).await;
    let NfsResop4::Open(OpenRes::Ok(o)) = &r.resarray[2] else {
        panic!("{r:?}")
    };
    // A READ layout: the empty file gets no placement record, so truncating it touches no DS
    // (ours are addresses nobody listens on).
    let layoutget = |stateid: Stateid4| {
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
    };
    let r = compound(
        &a,
        1,
        vec![
            seq(sa, 3),
            NfsArgop4::Putrootfh,
            NfsArgop4::Lookup(LookupArgs {
                objname: Opaque::from("f"),
            }),
            layoutget(o.stateid),
        ],
    )
    .await;
    let NfsResop4::Layoutget(LayoutgetRes::Ok(l)) = &r.resarray[3] else {
        panic!("{r:?}")
    };
    let ff = FfLayout4::from_xdr(l.logr_layout[0].lo_content.loc_body.as_bytes()).unwrap();
    let device = ff.ffl_mirrors[0].ffm_data_servers[0].ffds_deviceid;

    // B truncates the file: A's layout is recalled, with its layout stateid moved on.
    let b = connect(&s).await;
    let sb = session(&b).await;
    let size = FileAttrs {
        size: Some(4096),
        ..Default::default()
    };
    let r = compound(
        &b,
        1,
        vec![
            seq(sb, 1),
            NfsArgop4::Putrootfh,
            NfsArgop4::Lookup(LookupArgs {
                objname: Opaque::from("f"),
            }),
            NfsArgop4::Setattr(SetattrArgs {
                stateid: Stateid4::ANONYMOUS,
                obj_attributes: size.encode_all(),
            }),
        ],
    )
    .await;
    assert_eq!(r.status, 0, "{r:?}");
    let rec = tokio::time::timeout(T, recalls.recv())
        .await
        .expect("no CB_LAYOUTRECALL")
        .unwrap();
    let Recall::Layout(rec) = rec else {
        panic!("expected CB_LAYOUTRECALL, got {rec:?}");
    };
    assert_eq!(rec.lor_stateid.other, l.logr_stateid.other);
    assert!(rec.lor_stateid.seqid > l.logr_stateid.seqid);
    assert_eq!((rec.lor_offset, rec.lor_length), (0, u64::MAX));

    // A reports the layout's DS unreachable: the MDS probes it, finds nothing listening, and
    // marks it down at once; its heartbeat (just sent) would keep it up for 4 s more.
    let ds_id = layout::DsId::from_device_id(&device).unwrap().0;
    register(&admin, ds_id, if ds_id == 11 { ds1 } else { ds2 }).await;
    let sent = Instant::now();
    let r = compound(
        &a,
        1,
        vec![
            seq(sa, 4),
            NfsArgop4::Putrootfh,
            NfsArgop4::Lookup(LookupArgs {
                objname: Opaque::from("f"),
            }),
            NfsArgop4::Layouterror(LayouterrorArgs {
                lea_offset: 0,
                lea_length: u64::MAX,
                lea_stateid: l.logr_stateid,
                lea_errors: vec![DeviceError4 {
                    de_deviceid: device,
                    de_status: Nfsstat4::Nxio.code(),
                    de_opnum: OP_WRITE,
                }],
            }),
        ],
    )
    .await;
    assert_eq!(r.status, 0, "{r:?}");
    while ds_state(&admin, ds_id).await != DS_STATE_DOWN {
        assert!(
            sent.elapsed() < Duration::from_secs(3),
            "the reported DS was not probed down before its heartbeats ran out"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.shutdown().await;
}

/// A READ layout must not move a file's size or mtime: LAYOUTCOMMIT needs a read-write layout
/// (BADLAYOUT otherwise), as a WRITE would need an open for writing.
#[tokio::test]
async fn layoutcommit_under_a_read_layout_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = cluster_server(dir.path()).await;
    let a = connect(&s).await;
    register(&a, 21, dead_addr()).await;
    register(&a, 22, dead_addr()).await;
    let sa = session(&a).await;
    let lookup = || {
        NfsArgop4::Lookup(LookupArgs {
            objname: Opaque::from("f"),
        })
    };
    let r = compound(
        &a,
        1,
        vec![
            seq(sa, 1),
            NfsArgop4::Putrootfh,
            open_create("f", "reader", Fattr4::default()),
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
            seq(sa, 2),
            NfsArgop4::Putrootfh,
            lookup(),
            NfsArgop4::Layoutget(LayoutgetArgs {
                loga_signal_layout_avail: false,
                loga_layout_type: LAYOUT4_FLEX_FILES,
                loga_iomode: Layoutiomode4::Read,
                loga_offset: 0,
                loga_length: u64::MAX,
                loga_minlength: 0,
                loga_stateid: o.stateid,
                loga_maxcount: 1 << 16,
            }),
        ],
    )
    .await;
    let NfsResop4::Layoutget(LayoutgetRes::Ok(l)) = &r.resarray[3] else {
        panic!("{r:?}")
    };
    let commit = NfsArgop4::Layoutcommit(LayoutcommitArgs {
        loca_offset: 0,
        loca_length: u64::MAX,
        loca_reclaim: false,
        loca_stateid: l.logr_stateid,
        loca_last_write_offset: Newoffset4::Offset((1 << 40) - 1),
        loca_time_modify: Newtime4::Unchanged,
        loca_layoutupdate: Layoutupdate4 {
            lou_type: LAYOUT4_FLEX_FILES,
            lou_body: Opaque::default(),
        },
    });
    let r = compound(
        &a,
        1,
        vec![seq(sa, 3), NfsArgop4::Putrootfh, lookup(), commit],
    )
    .await;
    assert_eq!(r.status, 10050, "LAYOUTCOMMIT under a READ layout: {r:?}");
    let r = compound(
        &a,
        1,
        vec![
            seq(sa, 4),
            NfsArgop4::Putrootfh,
            lookup(),
            NfsArgop4::Getattr(GetattrArgs {
                attr_request: proto::nfs4::attr::Bitmap::from_bits(&[
                    proto::nfs4::attr::FATTR4_SIZE,
                ])
                .to_vec(),
            }),
        ],
    )
    .await;
    let NfsResop4::Getattr(GetattrRes::Ok(g)) = &r.resarray[3] else {
        panic!("{r:?}")
    };
    let attrs = proto::nfs4::attr::FileAttrs::decode(&g.obj_attributes).unwrap();
    assert_eq!(attrs.size, Some(0));
}

/// Where clients write through layouts, a write delegation asks its holder to flush at close
/// (a space limit of 0), so Linux commits and sends LAYOUTCOMMIT before close returns. With
/// the flush only started, Linux 6.1 took a late LAYOUTCOMMIT reply's size (the earlier
/// commit's end) as the file's after a newer write to the data servers had completed, and
/// `echo one > f; echo two >> f; cat f` read "one" (conformance posix, cfs-cluster, 4.1).
/// The single-node server keeps its bounded limit
/// (`write_delegation::a_sole_writer_gets_one_and_a_reader_recalls_it`).
#[tokio::test]
async fn a_write_delegation_over_layouts_flushes_at_close() {
    let dir = tempfile::tempdir().unwrap();
    let s = cluster_server(dir.path()).await;
    let a = connect(&s).await;
    register(&a, 21, dead_addr()).await;
    register(&a, 22, dead_addr()).await;
    let w = open_alone(&s, "f", "w", 3).await;
    let OpenDelegation4::Write(d) = &w.delegation else {
        panic!("no write delegation: {:?}", w.delegation)
    };
    assert_eq!(d.space_limit, NfsSpaceLimit4::Size(0));
}
