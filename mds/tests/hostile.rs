//! Hostile and malformed input against a real server on loopback: every case gets the RFC's
//! error (or a closed connection), and the server keeps serving everyone else.
use mds::export::Export;
use mds::{Server, ServerConfig};
use proto::nfs4::*;
use proto::rpc::{Auth, AuthSys, Connection, ConnectionLimits, RejectCalls};
use proto::xdr::{Opaque, Xdr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

const T: Duration = Duration::from_secs(10);

async fn server() -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ServerConfig {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        exports: vec![Export::new("/").unwrap()],
        lease_seconds: 30,
        grace_seconds: None,
    };
    (Server::start(cfg).await.unwrap(), dir)
}

fn root() -> Auth {
    Auth::Sys(AuthSys {
        stamp: 1,
        machine: b"test".to_vec(),
        uid: 0,
        gid: 0,
        gids: vec![],
    })
}

async fn compound(c: &Connection, minor: u32, ops: Vec<NfsArgop4>) -> Compound4Res {
    let args = Compound4Args {
        tag: Opaque::default(),
        minorversion: minor,
        argarray: ops,
    };
    raw_compound(c, &args.to_xdr()).await
}

async fn raw_compound(c: &Connection, body: &[u8]) -> Compound4Res {
    let r = c
        .call(NFS4_PROGRAM, NFS_V4, NFSPROC4_COMPOUND, &root(), body, T)
        .await
        .unwrap();
    Compound4Res::from_xdr(r.body()).unwrap()
}

/// A client with a session; returns the session id.
async fn session(c: &Connection) -> Sessionid4 {
    let r = compound(
        c,
        1,
        vec![NfsArgop4::ExchangeId(ExchangeIdArgs {
            eia_clientowner: ClientOwner4 {
                co_verifier: [1; 8],
                co_ownerid: Opaque::from("hostile-test"),
            },
            eia_flags: 0,
            eia_state_protect: StateProtect4A::None,
            eia_client_impl_id: vec![],
        })],
    )
    .await;
    let NfsResop4::ExchangeId(ExchangeIdRes::Ok(x)) = &r.resarray[0] else {
        panic!("{r:?}")
    };
    let attrs = ChannelAttrs4 {
        ca_headerpadsize: 0,
        ca_maxrequestsize: 1 << 20,
        ca_maxresponsesize: 1 << 20,
        ca_maxresponsesize_cached: 4096,
        ca_maxoperations: 16,
        ca_maxrequests: 4,
        ca_rdma_ird: vec![],
    };
    let r = compound(
        c,
        1,
        vec![NfsArgop4::CreateSession(CreateSessionArgs {
            csa_clientid: x.eir_clientid,
            csa_sequence: x.eir_sequenceid,
            csa_flags: 0,
            csa_fore_chan_attrs: attrs.clone(),
            csa_back_chan_attrs: attrs,
            csa_cb_program: 0x4000_0000,
            csa_sec_parms: vec![CallbackSecParms4::AuthNone],
        })],
    )
    .await;
    let NfsResop4::CreateSession(CreateSessionRes::Ok(s)) = &r.resarray[0] else {
        panic!("{r:?}")
    };
    s.csr_sessionid
}

fn seq(sid: Sessionid4, seqid: u32) -> NfsArgop4 {
    NfsArgop4::Sequence(SequenceArgs {
        sa_sessionid: sid,
        sa_sequenceid: seqid,
        sa_slotid: 0,
        sa_highest_slotid: 0,
        sa_cachethis: false,
    })
}

async fn connect(s: &Server) -> Connection {
    Connection::connect(
        s.local_addr(),
        Arc::new(RejectCalls),
        ConnectionLimits::default(),
    )
    .await
    .unwrap()
}

async fn lookup_status(c: &Connection, sid: Sessionid4, seqid: u32, name: &[u8]) -> u32 {
    let r = compound(
        c,
        1,
        vec![
            seq(sid, seqid),
            NfsArgop4::Putrootfh,
            NfsArgop4::Lookup(LookupArgs {
                objname: Opaque(name.to_vec()),
            }),
        ],
    )
    .await;
    assert_eq!(r.resarray.len(), 3, "{r:?}");
    r.status
}

#[tokio::test]
async fn bad_names_get_the_rfc_errors() {
    let (s, _d) = server().await;
    let c = connect(&s).await;
    let sid = session(&c).await;
    assert_eq!(
        lookup_status(&c, sid, 1, b"\xff\xfe").await,
        Nfsstat4::Inval.code()
    );
    assert_eq!(
        lookup_status(&c, sid, 2, &[b'a'; 256]).await,
        Nfsstat4::Nametoolong.code()
    );
    assert_eq!(
        lookup_status(&c, sid, 3, b".").await,
        Nfsstat4::Badname.code()
    );
    assert_eq!(
        lookup_status(&c, sid, 4, b"..").await,
        Nfsstat4::Badname.code()
    );
    assert_eq!(lookup_status(&c, sid, 5, b"").await, Nfsstat4::Inval.code());
    assert_eq!(
        lookup_status(&c, sid, 6, b"a/b").await,
        Nfsstat4::Badchar.code()
    );
    assert_eq!(
        lookup_status(&c, sid, 7, b"missing").await,
        Nfsstat4::Noent.code()
    );
}

#[tokio::test]
async fn compound_structure_errors() {
    let (s, _d) = server().await;
    let c = connect(&s).await;
    // Minor version 0 is not offered.
    assert_eq!(
        compound(&c, 0, vec![NfsArgop4::Putrootfh]).await.status,
        Nfsstat4::MinorVersMismatch.code()
    );
    // Without SEQUENCE first, ordinary operations are refused.
    assert_eq!(
        compound(&c, 1, vec![NfsArgop4::Putrootfh]).await.status,
        Nfsstat4::OpNotInSession.code()
    );
    let sid = session(&c).await;
    // More operations than the session allows (16 negotiated above).
    let mut ops = vec![seq(sid, 1)];
    ops.extend((0..40).map(|_| NfsArgop4::Putrootfh));
    assert_eq!(
        compound(&c, 1, ops).await.status,
        Nfsstat4::TooManyOps.code()
    );
    // SEQUENCE anywhere but first. (The refused compound above did not use up seqid 1.)
    let r = compound(&c, 1, vec![seq(sid, 1), seq(sid, 1)]).await;
    assert_eq!(r.status, Nfsstat4::SequencePos.code());
    // An unknown operation number: OP_ILLEGAL.
    let r = compound(&c, 1, vec![seq(sid, 2), NfsArgop4::Unknown(9999)]).await;
    assert_eq!(r.status, Nfsstat4::OpIllegal.code());
    // A truncated operation: BADXDR, with the earlier results kept.
    let mut body = Compound4Args {
        tag: Opaque::default(),
        minorversion: 1,
        argarray: vec![seq(sid, 3), NfsArgop4::Putrootfh],
    }
    .to_xdr();
    body[11] = 3; // three operations announced, two present
    body.extend_from_slice(&OP_LOOKUP.to_be_bytes());
    body.extend_from_slice(&1000u32.to_be_bytes()); // a name length with no name behind it
    let r = raw_compound(&c, &body).await;
    assert_eq!(r.status, Nfsstat4::Badxdr.code());
    assert_eq!(r.resarray.len(), 3);
    // A replayed slot returns the cached reply, and a skipped seqid is misordered.
    let r = compound(&c, 1, vec![seq(sid, 3)]).await;
    assert_eq!(r.resarray.len(), 3, "replay must return the original reply");
    assert_eq!(
        compound(&c, 1, vec![seq(sid, 9)]).await.status,
        Nfsstat4::SeqMisordered.code()
    );
}

#[tokio::test]
async fn garbage_and_oversized_records_do_not_stop_the_server() {
    let (s, _d) = server().await;
    // Pure noise.
    let mut g = tokio::net::TcpStream::connect(s.local_addr())
        .await
        .unwrap();
    g.write_all(&[0x80, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8])
        .await
        .unwrap();
    // A record announcing 2 GiB.
    let mut big = tokio::net::TcpStream::connect(s.local_addr())
        .await
        .unwrap();
    big.write_all(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0])
        .await
        .unwrap();
    // A call to a program we do not serve and a wrong NFS version.
    let c = connect(&s).await;
    assert!(c.call(100005, 3, 0, &Auth::None, &[], T).await.is_err());
    assert!(c
        .call(NFS4_PROGRAM, 3, 0, &Auth::None, &[], T)
        .await
        .is_err());
    // Random bytes as COMPOUND arguments: BADXDR, not a crash.
    let r = c
        .call(
            NFS4_PROGRAM,
            NFS_V4,
            NFSPROC4_COMPOUND,
            &root(),
            &[0xde, 0xad, 0xbe],
            T,
        )
        .await
        .unwrap();
    assert_eq!(
        Compound4Res::from_xdr(r.body()).unwrap().status,
        Nfsstat4::Badxdr.code()
    );
    // Someone else is still served.
    let c2 = connect(&s).await;
    let sid = session(&c2).await;
    assert_eq!(
        lookup_status(&c2, sid, 1, b"nothing").await,
        Nfsstat4::Noent.code()
    );
    drop((g, big));
}
