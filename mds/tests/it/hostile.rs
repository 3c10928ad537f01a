//! Hostile and malformed input against a real server on loopback: every case gets the RFC's
//! error (or a closed connection), and the server keeps serving everyone else.
use crate::common;
use common::*;
use proto::nfs4::*;
use proto::rpc::{Auth, Connection};
use proto::xdr::{Opaque, Xdr};
use tokio::io::AsyncWriteExt;

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
        // Cached only because the client asks for it (sa_cachethis).
        argarray: vec![seq_cached(sid, 3), NfsArgop4::Putrootfh],
    }
    .to_xdr();
    body[11] = 3; // three operations announced, two present
    body.extend_from_slice(&OP_LOOKUP.to_be_bytes());
    body.extend_from_slice(&1000u32.to_be_bytes()); // a name length with no name behind it
    let r = raw_compound(&c, &body).await;
    assert_eq!(r.status, Nfsstat4::Badxdr.code());
    assert_eq!(r.resarray.len(), 3);
    // A replayed slot returns the cached reply, and a skipped seqid is misordered.
    let r = compound(&c, 1, vec![seq_cached(sid, 3)]).await;
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
