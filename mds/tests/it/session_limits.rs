//! Session limits and client/session rules of RFC 8881 (§2.10.6.4, §18.36, §18.37, §18.50)
//! against a real server on loopback: each case gets the error the RFC names, and an operation
//! refused for its size has no effect.
use crate::common;
use common::*;
use proto::nfs4::*;
use proto::rpc::Connection;
use proto::xdr::Opaque;

fn attrs(request: u32, response: u32, cached: u32, ops: u32, slots: u32) -> ChannelAttrs4 {
    ChannelAttrs4 {
        ca_headerpadsize: 0,
        ca_maxrequestsize: request,
        ca_maxresponsesize: response,
        ca_maxresponsesize_cached: cached,
        ca_maxoperations: ops,
        ca_maxrequests: slots,
        ca_rdma_ird: vec![],
    }
}

fn big() -> ChannelAttrs4 {
    attrs(1 << 20, 1 << 20, 4096, 16, 4)
}

async fn exchange_id(c: &Connection, owner: &str) -> ExchangeIdResOk {
    let r = compound(
        c,
        1,
        vec![NfsArgop4::ExchangeId(ExchangeIdArgs {
            eia_clientowner: ClientOwner4 {
                co_verifier: [5; 8],
                co_ownerid: Opaque::from(owner),
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
    x.clone()
}

/// CREATE_SESSION with the given flags and channel attributes: the result or the error.
async fn create_session(
    c: &Connection,
    x: &ExchangeIdResOk,
    flags: u32,
    fore: ChannelAttrs4,
    back: ChannelAttrs4,
) -> Result<CreateSessionResOk, u32> {
    let r = compound(
        c,
        1,
        vec![NfsArgop4::CreateSession(CreateSessionArgs {
            csa_clientid: x.eir_clientid,
            csa_sequence: x.eir_sequenceid,
            csa_flags: flags,
            csa_fore_chan_attrs: fore,
            csa_back_chan_attrs: back,
            csa_cb_program: 0x4000_0000,
            csa_sec_parms: vec![CallbackSecParms4::AuthNone],
        })],
    )
    .await;
    match &r.resarray[0] {
        NfsResop4::CreateSession(CreateSessionRes::Ok(s)) => Ok(s.clone()),
        other => Err(other.status()),
    }
}

fn seq_on(sid: Sessionid4, slot: u32, seqid: u32, cachethis: bool) -> NfsArgop4 {
    NfsArgop4::Sequence(SequenceArgs {
        sa_sessionid: sid,
        sa_sequenceid: seqid,
        sa_slotid: slot,
        sa_highest_slotid: slot,
        sa_cachethis: cachethis,
    })
}

fn read(sid: Stateid4, count: u32) -> NfsArgop4 {
    NfsArgop4::Read(ReadArgs {
        stateid: sid,
        offset: 0,
        count,
    })
}

fn readdir(maxcount: u32) -> NfsArgop4 {
    NfsArgop4::Readdir(ReaddirArgs {
        cookie: 0,
        cookieverf: [0; 8],
        dircount: maxcount,
        maxcount,
        attr_request: vec![],
    })
}

/// Creates `name` holding `len` bytes on a session whose requests may be large; returns the
/// open stateid and the file handle.
async fn file_with(
    c: &Connection,
    sid: Sessionid4,
    seqid: u32,
    name: &str,
    len: usize,
) -> Stateid4 {
    let r = compound(
        c,
        1,
        vec![
            seq(sid, seqid),
            NfsArgop4::Putrootfh,
            open_create(name, "writer", Fattr4::default()),
        ],
    )
    .await;
    let NfsResop4::Open(OpenRes::Ok(o)) = &r.resarray[2] else {
        panic!("{r:?}")
    };
    let r = compound(
        c,
        1,
        vec![
            seq(sid, seqid + 1),
            NfsArgop4::Putrootfh,
            NfsArgop4::Lookup(LookupArgs {
                objname: Opaque::from(name),
            }),
            NfsArgop4::Write(WriteArgs {
                stateid: o.stateid,
                offset: 0,
                stable: StableHow4::FileSync4,
                data: Opaque(vec![7; len]),
            }),
        ],
    )
    .await;
    assert_eq!(r.status, 0, "{r:?}");
    o.stateid
}

fn lookup(name: &str) -> NfsArgop4 {
    NfsArgop4::Lookup(LookupArgs {
        objname: Opaque::from(name),
    })
}

#[tokio::test]
async fn request_larger_than_the_negotiated_size_is_req_too_big() {
    let (s, _d) = server().await;
    let c = connect(&s).await;
    let x = exchange_id(&c, "small-requests").await;
    let cs = create_session(&c, &x, 0, attrs(2048, 1 << 20, 4096, 16, 4), big())
        .await
        .unwrap();
    assert_eq!(cs.csr_fore_chan_attrs.ca_maxrequestsize, 2048);
    let sid = cs.csr_sessionid;
    let write = |len: usize| {
        vec![
            seq(sid, 1),
            NfsArgop4::Putrootfh,
            NfsArgop4::Write(WriteArgs {
                stateid: Stateid4::ANONYMOUS,
                offset: 0,
                stable: StableHow4::FileSync4,
                data: Opaque(vec![1; len]),
            }),
        ]
    };
    let r = compound(&c, 1, write(4000)).await;
    assert_eq!(r.status, Nfsstat4::ReqTooBig.code(), "{r:?}");
    assert_eq!(r.resarray.len(), 1, "refused at SEQUENCE: {r:?}");
    // The refused request did not use up the slot's seqid.
    let r = compound(&c, 1, vec![seq(sid, 1), NfsArgop4::Putrootfh]).await;
    assert_eq!(r.status, 0, "{r:?}");
}

#[tokio::test]
async fn read_and_readdir_that_cannot_fit_the_reply_are_rep_too_big() {
    let (s, _d) = server().await;
    let c = connect(&s).await;
    let sid = session(&c).await;
    file_with(&c, sid, 1, "eight-k", 8192).await;
    let x = exchange_id(&c, "small-replies").await;
    let cs = create_session(&c, &x, 0, attrs(1 << 20, 4096, 4096, 16, 4), big())
        .await
        .unwrap();
    assert_eq!(cs.csr_fore_chan_attrs.ca_maxresponsesize, 4096);
    let small = cs.csr_sessionid;
    // Another client's open stateid is no good here: READ with the anonymous stateid.
    let r = compound(
        &c,
        1,
        vec![
            seq(small, 1),
            NfsArgop4::Putrootfh,
            lookup("eight-k"),
            read(Stateid4::ANONYMOUS, 8192),
        ],
    )
    .await;
    assert_eq!(r.status, Nfsstat4::RepTooBig.code(), "{r:?}");
    let r = compound(
        &c,
        1,
        vec![
            seq(small, 2),
            NfsArgop4::Putrootfh,
            lookup("eight-k"),
            read(Stateid4::ANONYMOUS, 2048),
        ],
    )
    .await;
    assert_eq!(r.status, 0, "a READ that fits is served: {r:?}");
    let r = compound(
        &c,
        1,
        vec![seq(small, 3), NfsArgop4::Putrootfh, readdir(64 << 10)],
    )
    .await;
    assert_eq!(r.status, Nfsstat4::RepTooBig.code(), "{r:?}");
    let r = compound(
        &c,
        1,
        vec![seq(small, 4), NfsArgop4::Putrootfh, readdir(2048)],
    )
    .await;
    assert_eq!(r.status, 0, "{r:?}");
}

#[tokio::test]
async fn only_replies_the_client_asked_for_are_cached_and_only_if_they_fit() {
    let (s, _d) = server().await;
    let c = connect(&s).await;
    let sid = session(&c).await;
    file_with(&c, sid, 1, "six-k", 6000).await;
    let x = exchange_id(&c, "caching").await;
    let cs = create_session(&c, &x, 0, attrs(1 << 20, 1 << 20, 4096, 16, 4), big())
        .await
        .unwrap();
    assert_eq!(cs.csr_fore_chan_attrs.ca_maxresponsesize_cached, 4096);
    let s2 = cs.csr_sessionid;
    let get = |slot, seqid, cachethis, count| {
        vec![
            seq_on(s2, slot, seqid, cachethis),
            NfsArgop4::Putrootfh,
            lookup("six-k"),
            read(Stateid4::ANONYMOUS, count),
        ]
    };
    // Too big to cache, and the client wants it cached: refused before it runs.
    let r = compound(&c, 1, get(0, 1, true, 6000)).await;
    assert_eq!(r.status, Nfsstat4::RepTooBigToCache.code(), "{r:?}");
    // The same without sa_cachethis is served...
    let r = compound(&c, 1, get(0, 2, false, 6000)).await;
    assert_eq!(r.status, 0, "{r:?}");
    // ...and not kept: its retransmission gets RETRY_UNCACHED_REP.
    let r = compound(&c, 1, get(0, 2, false, 6000)).await;
    assert_eq!(r.status, Nfsstat4::RetryUncachedRep.code(), "{r:?}");
    // A small reply the client asked to cache is replayed whole.
    let r = compound(&c, 1, get(1, 1, true, 100)).await;
    assert_eq!(r.status, 0, "{r:?}");
    let again = compound(&c, 1, get(1, 1, true, 100)).await;
    assert_eq!(again, r);
}

/// GETATTR of every attribute (what a conformance suite asks for): its result, with the root's
/// file handle, owners and times, takes some 400 bytes.
fn getattr_all() -> NfsArgop4 {
    let bits: Vec<u32> = (0..=FATTR4_XATTR_SUPPORT).collect();
    NfsArgop4::Getattr(GetattrArgs {
        attr_request: Bitmap::from_bits(&bits).to_vec(),
    })
}

fn getattr_small() -> NfsArgop4 {
    NfsArgop4::Getattr(GetattrArgs {
        attr_request: Bitmap::from_bits(&[FATTR4_TYPE, FATTR4_SIZE]).to_vec(),
    })
}

/// Bytes of the reply on the wire: the RPC reply header with AUTH_NONE (24) and the COMPOUND.
fn wire_len(r: &Compound4Res) -> usize {
    24 + proto::xdr::Xdr::to_xdr(r).len()
}

/// RFC 8881 §2.10.6.4 for any operation, not only READ and READDIR: a GETATTR whose reply
/// cannot fit `ca_maxresponsesize` is NFS4ERR_REP_TOO_BIG, counted with the results before it.
#[tokio::test]
async fn getattr_that_cannot_fit_the_reply_is_rep_too_big() {
    let (s, _d) = server().await;
    let c = connect(&s).await;
    let x = exchange_id(&c, "small-getattr").await;
    let cs = create_session(&c, &x, 0, attrs(1 << 20, 300, 300, 16, 4), big())
        .await
        .unwrap();
    assert_eq!(cs.csr_fore_chan_attrs.ca_maxresponsesize, 300);
    let small = cs.csr_sessionid;
    let r = compound(
        &c,
        1,
        vec![seq(small, 1), NfsArgop4::Putrootfh, getattr_all()],
    )
    .await;
    assert_eq!(r.status, Nfsstat4::RepTooBig.code(), "{r:?}");
    assert_eq!(r.resarray.len(), 3, "{r:?}");
    assert!(wire_len(&r) <= 300, "the refusal fits: {}", wire_len(&r));
    // A GETATTR that fits is served, and its reply is within the session's size.
    let r = compound(
        &c,
        1,
        vec![seq(small, 2), NfsArgop4::Putrootfh, getattr_small()],
    )
    .await;
    assert_eq!(r.status, 0, "{r:?}");
    assert!(wire_len(&r) <= 300, "{}", wire_len(&r));

    // Each fits alone, two do not: the bound is of the whole reply so far.
    let x = exchange_id(&c, "two-getattrs").await;
    let cs = create_session(&c, &x, 0, attrs(1 << 20, 1024, 1024, 16, 4), big())
        .await
        .unwrap();
    let mid = cs.csr_sessionid;
    let r = compound(
        &c,
        1,
        vec![seq(mid, 1), NfsArgop4::Putrootfh, getattr_all()],
    )
    .await;
    assert_eq!(r.status, 0, "{r:?}");
    assert!(wire_len(&r) <= 1024, "{}", wire_len(&r));
    let r = compound(
        &c,
        1,
        vec![
            seq(mid, 2),
            NfsArgop4::Putrootfh,
            getattr_all(),
            getattr_all(),
        ],
    )
    .await;
    assert_eq!(r.status, Nfsstat4::RepTooBig.code(), "{r:?}");
    assert_eq!(r.resarray.len(), 4, "the first GETATTR ran: {r:?}");
    assert_eq!(r.resarray[2].status(), 0, "{r:?}");
}

/// With sa_cachethis, a reply larger than `ca_maxresponsesize_cached` is refused with
/// NFS4ERR_REP_TOO_BIG_TO_CACHE before the operation runs, whatever the operation; the same
/// request without sa_cachethis is served.
#[tokio::test]
async fn getattr_too_big_to_cache_is_refused_when_the_client_wants_it_cached() {
    let (s, _d) = server().await;
    let c = connect(&s).await;
    let x = exchange_id(&c, "small-cache").await;
    let cs = create_session(&c, &x, 0, attrs(1 << 20, 1 << 20, 300, 16, 4), big())
        .await
        .unwrap();
    assert_eq!(cs.csr_fore_chan_attrs.ca_maxresponsesize_cached, 300);
    let sid = cs.csr_sessionid;
    let r = compound(
        &c,
        1,
        vec![seq_on(sid, 0, 1, true), NfsArgop4::Putrootfh, getattr_all()],
    )
    .await;
    assert_eq!(r.status, Nfsstat4::RepTooBigToCache.code(), "{r:?}");
    let r = compound(
        &c,
        1,
        vec![
            seq_on(sid, 0, 2, false),
            NfsArgop4::Putrootfh,
            getattr_all(),
        ],
    )
    .await;
    assert_eq!(r.status, 0, "{r:?}");
    assert!(wire_len(&r) > 300, "{}", wire_len(&r));
    // A small one the client wants cached is, and is replayed whole.
    let small = || {
        vec![
            seq_on(sid, 1, 1, true),
            NfsArgop4::Putrootfh,
            getattr_small(),
        ]
    };
    let r = compound(&c, 1, small()).await;
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(compound(&c, 1, small()).await, r);
}

#[tokio::test]
async fn create_session_refuses_unknown_flags_and_a_back_channel_too_small_for_cb_recall() {
    let (s, _d) = server().await;
    let c = connect(&s).await;
    let x = exchange_id(&c, "flags").await;
    assert_eq!(
        create_session(&c, &x, 0x100, big(), big())
            .await
            .unwrap_err(),
        Nfsstat4::Inval.code()
    );
    // A CB_RECALL request (RPC header, credential, CB_SEQUENCE, stateid, handle) needs more
    // than 256 bytes; its reply more than 64; and it takes two operations.
    for back in [
        attrs(256, 4096, 0, 2, 1),
        attrs(4096, 64, 0, 2, 1),
        attrs(4096, 4096, 0, 1, 1),
    ] {
        assert_eq!(
            create_session(
                &c,
                &x,
                CREATE_SESSION4_FLAG_CONN_BACK_CHAN,
                big(),
                back.clone()
            )
            .await
            .unwrap_err(),
            Nfsstat4::Toosmall.code(),
            "{back:?}"
        );
    }
    // None of the refusals used up the sequence id: a good request still works.
    create_session(&c, &x, 0, big(), attrs(4096, 4096, 0, 2, 1))
        .await
        .unwrap();
}

#[tokio::test]
async fn sessionless_operations_must_stand_alone_and_are_refused_before_they_run() {
    let (s, _d) = server().await;
    let c = connect(&s).await;
    let x = exchange_id(&c, "lonely").await;
    let r = compound(
        &c,
        1,
        vec![
            NfsArgop4::DestroyClientid(DestroyClientidArgs {
                dca_clientid: x.eir_clientid,
            }),
            NfsArgop4::Putrootfh,
        ],
    )
    .await;
    assert_eq!(r.status, Nfsstat4::NotOnlyOp.code(), "{r:?}");
    assert_eq!(r.resarray.len(), 1, "{r:?}");
    assert_eq!(r.resarray[0].status(), Nfsstat4::NotOnlyOp.code());
    // The client is still there: destroying it alone works.
    let r = compound(
        &c,
        1,
        vec![NfsArgop4::DestroyClientid(DestroyClientidArgs {
            dca_clientid: x.eir_clientid,
        })],
    )
    .await;
    assert_eq!(r.status, 0, "{r:?}");
}

#[tokio::test]
async fn destroy_session_needs_a_connection_bound_to_the_session() {
    let (s, _d) = server().await;
    let c = connect(&s).await;
    let sid = session(&c).await;
    let other = connect(&s).await;
    let destroy = || {
        vec![NfsArgop4::DestroySession(DestroySessionArgs {
            dsa_sessionid: sid,
        })]
    };
    let r = compound(&other, 1, destroy()).await;
    assert_eq!(r.status, Nfsstat4::ConnNotBoundToSession.code(), "{r:?}");
    // The session is intact.
    let r = compound(&c, 1, vec![seq(sid, 1), NfsArgop4::Putrootfh]).await;
    assert_eq!(r.status, 0, "{r:?}");
    // A SEQUENCE on the other connection binds it (the client uses it for the session).
    let r = compound(&other, 1, vec![seq(sid, 2)]).await;
    assert_eq!(r.status, 0, "{r:?}");
    let r = compound(&other, 1, destroy()).await;
    assert_eq!(r.status, 0, "{r:?}");
    let r = compound(&c, 1, vec![seq(sid, 3)]).await;
    assert_eq!(r.status, Nfsstat4::Badsession.code(), "{r:?}");
}

/// RFC 8881 §18.51.3 (and knfsd's nfsd4_open): a client that has not sent RECLAIM_COMPLETE
/// gets NFS4ERR_GRACE for a new OPEN, grace period or not.
#[tokio::test]
async fn open_before_reclaim_complete_gets_grace() {
    let (s, _d) = server().await;
    let c = connect(&s).await;
    let (sid, _, _, _) = establish(&c, "no-rc-yet", 0, vec![CallbackSecParms4::AuthNone], 1).await;
    let open = || open_create("early", "o", Fattr4::default());
    let r = compound(&c, 1, vec![seq(sid, 1), NfsArgop4::Putrootfh, open()]).await;
    assert_eq!(r.status, Nfsstat4::Grace.code(), "{r:?}");
    let r = compound(
        &c,
        1,
        vec![
            seq(sid, 2),
            NfsArgop4::ReclaimComplete(ReclaimCompleteArgs { rca_one_fs: false }),
            NfsArgop4::Putrootfh,
            open(),
        ],
    )
    .await;
    assert_eq!(r.status, 0, "{r:?}");
}
