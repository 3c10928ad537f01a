//! The RPCSEC_GSS layer against a real MIT KDC: a throwaway realm, a service keytab for the
//! server and a ticket for the user, the layer in front of a handler that reports what it was
//! given, and the client side in the same process over loopback TCP.
mod common;

use common::kdc::{Kdc, REALM};
use krb::{Acceptor, AcceptorConfig, GssClient, GssLayer, Target};
use proto::rpc::gss::GssService;
use proto::rpc::{
    accepted_reply, AcceptStat, Auth, AuthStat, Call, CallHandler, Connection, ConnectionLimits,
    RejectCalls, ReplyStatus, RpcError,
};
use proto::xdr::{Reader, Writer};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::net::TcpListener;

const PROG: u32 = 0x2000_0099;
const T: Duration = Duration::from_secs(10);

struct Realm {
    _kdc: Kdc,
}

/// One realm per test binary; its variables are set before any GSS-API call (MIT reads them
/// lazily), and every test calls this first.
fn realm() -> &'static Realm {
    static R: OnceLock<Realm> = OnceLock::new();
    R.get_or_init(|| {
        let kdc = common::kdc::realm_for_tests(&["alice"]);
        krb::use_keytab(&kdc.path("server.keytab"));
        std::env::set_var(
            "KRB5CCNAME",
            format!("FILE:{}", kdc.path("alice.cc").display()),
        );
        Realm { _kdc: kdc }
    })
}

/// Answers with what it was handed: the caller's uid, principal and service, then the args.
#[derive(Default)]
struct Report {
    calls: AtomicUsize,
}

impl CallHandler for Report {
    async fn handle(&self, _c: Connection, call: Call) -> Option<Writer> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut w = accepted_reply(call.xid, &Auth::None, AcceptStat::Success);
        match &call.gss {
            Some(g) => {
                w.u32(g.uid);
                w.opaque(g.principal.as_bytes());
                w.u32(g.service as u32);
            }
            None => {
                w.u32(u32::MAX);
                w.opaque(b"");
                w.u32(0);
            }
        }
        w.opaque(call.args());
        Some(w)
    }
}

struct Server {
    addr: std::net::SocketAddr,
    handler: Arc<Report>,
    acceptor: Arc<Acceptor>,
}

async fn server(cfg: AcceptorConfig) -> Server {
    realm();
    let acceptor = Acceptor::new(cfg).expect("acceptor from the test keytab");
    let handler = Arc::new(Report::default());
    let layer = Arc::new(GssLayer::new(handler.clone(), acceptor.clone()));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let _ = Connection::spawn(s, layer.clone(), ConnectionLimits::default());
        }
    });
    Server {
        addr,
        handler,
        acceptor,
    }
}

fn alice_is_1234() -> AcceptorConfig {
    let mut cfg = AcceptorConfig::default();
    cfg.identity.map.insert(
        format!("alice@{REALM}"),
        Target::Ids {
            uid: 1234,
            gid: 1234,
            gids: vec![],
        },
    );
    cfg
}

async fn connect(addr: std::net::SocketAddr) -> Connection {
    Connection::connect(addr, Arc::new(RejectCalls), ConnectionLimits::default())
        .await
        .unwrap()
}

fn parse(body: &[u8]) -> (u32, String, u32, Vec<u8>) {
    let mut r = Reader::new(body);
    let uid = r.u32().unwrap();
    let p = String::from_utf8(r.opaque(1024).unwrap().to_vec()).unwrap();
    let svc = r.u32().unwrap();
    let args = r.opaque(1 << 20).unwrap().to_vec();
    (uid, p, svc, args)
}

/// Bytes from the xid through the credential of a call message (without record mark).
fn header_len(msg: &[u8]) -> usize {
    let cred_len = u32::from_be_bytes(msg[28..32].try_into().unwrap()) as usize;
    32 + cred_len.div_ceil(4) * 4
}

fn args(text: &[u8]) -> Vec<u8> {
    let mut w = Writer::new();
    w.opaque(text);
    w.buf
}

#[tokio::test]
async fn each_service_carries_the_arguments_and_names_the_caller() {
    let s = server(alice_is_1234()).await;
    let conn = connect(s.addr).await;
    for svc in [GssService::None, GssService::Integrity, GssService::Privacy] {
        let c = GssClient::new("nfs", "localhost", svc);
        let body = c
            .call(&conn, PROG, 1, 1, &args(b"the arguments"), T)
            .await
            .unwrap_or_else(|e| panic!("{svc:?}: {e}"));
        let (uid, principal, service, seen) = parse(&body);
        assert_eq!(uid, 1234, "{svc:?}");
        assert_eq!(principal, format!("alice@{REALM}"));
        assert_eq!(service, svc as u32);
        assert_eq!(
            seen,
            args(b"the arguments"),
            "the handler sees them in the clear"
        );
    }
    assert_eq!(s.acceptor.counters.bad_mic.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_forged_call_is_refused_and_never_reaches_the_handler() {
    let s = server(alice_is_1234()).await;
    let conn = connect(s.addr).await;
    let c = GssClient::new("nfs", "localhost", GssService::Integrity);
    c.call(&conn, PROG, 1, 1, &args(b"warm up"), T)
        .await
        .unwrap();
    let before = s.handler.calls.load(Ordering::SeqCst);

    // Another procedure than the one signed: the header's MIC no longer matches.
    let (xid, mut w, _) = c.prepare(&conn, PROG, 1, 1, &args(b"x"), T).await.unwrap();
    w.buf[4 + 20..4 + 24].copy_from_slice(&7u32.to_be_bytes());
    let r = conn.call_raw(xid, w, T).await.unwrap();
    assert_eq!(
        r.status,
        ReplyStatus::AuthError(AuthStat::GssCredProblem as u32)
    );

    // The MIC itself altered.
    let (xid, mut w, _) = c.prepare(&conn, PROG, 1, 1, &args(b"x"), T).await.unwrap();
    let verf_at = 4 + header_len(&w.buf[4..]);
    w.buf[verf_at + 8 + 5] ^= 0x40;
    let r = conn.call_raw(xid, w, T).await.unwrap();
    assert_eq!(
        r.status,
        ReplyStatus::AuthError(AuthStat::GssCredProblem as u32)
    );

    // A valid header with arguments altered under krb5i: GARBAGE_ARGS.
    let (xid, mut w, _) = c
        .prepare(&conn, PROG, 1, 1, &args(b"pay alice"), T)
        .await
        .unwrap();
    let at = w
        .buf
        .windows(9)
        .position(|x| x == b"pay alice")
        .expect("krb5i arguments travel in the clear");
    w.buf[at] = b'P';
    let r = conn.call_raw(xid, w, T).await.unwrap();
    assert_eq!(r.status, ReplyStatus::Accepted(AcceptStat::GarbageArgs));

    // An RPCSEC_GSS call with an AUTH_NONE verifier (no MIC at all).
    let (xid, w, _) = c.prepare(&conn, PROG, 1, 1, &args(b"x"), T).await.unwrap();
    let hdr_end = 4 + header_len(&w.buf[4..]);
    let mut call = Writer::from_parts(w.buf[..hdr_end].to_vec(), Vec::new());
    Auth::None.encode(&mut call);
    let r = conn.call_raw(xid, call, T).await.unwrap();
    assert_eq!(r.status, ReplyStatus::AuthError(AuthStat::BadVerf as u32));

    assert_eq!(
        s.handler.calls.load(Ordering::SeqCst),
        before,
        "no forged call reached the handler"
    );
    assert!(s.acceptor.counters.bad_mic.load(Ordering::SeqCst) >= 1);
}

#[tokio::test]
async fn a_replayed_call_is_dropped_without_a_reply() {
    let s = server(alice_is_1234()).await;
    let conn = connect(s.addr).await;
    let c = GssClient::new("nfs", "localhost", GssService::None);
    let (xid, w, ticket) = c
        .prepare(&conn, PROG, 1, 1, &args(b"once"), T)
        .await
        .unwrap();
    let copy = Writer::from_parts(w.buf.clone(), Vec::new());
    let r = conn.call_raw(xid, w, T).await.unwrap();
    c.finish(&ticket, &r).unwrap();
    // The same bytes again, as an attacker on the path would send them.
    let again = conn.call_raw(xid, copy, Duration::from_secs(2)).await;
    assert!(matches!(again, Err(RpcError::Timeout)), "{again:?}");
    assert_eq!(s.handler.calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        s.acceptor.counters.replays_dropped.load(Ordering::SeqCst),
        1
    );
    // The context goes on working.
    c.call(&conn, PROG, 1, 1, &args(b"twice"), T).await.unwrap();
}

#[tokio::test]
async fn krb5p_hides_arguments_and_results_on_the_wire_and_krb5_does_not() {
    let s = server(alice_is_1234()).await;
    let conn = connect(s.addr).await;
    let marker = b"MARKER-a7d1e0c3-secret-bytes";
    for (svc, visible) in [(GssService::None, true), (GssService::Privacy, false)] {
        let c = GssClient::new("nfs", "localhost", svc);
        let (xid, w, ticket) = c
            .prepare(&conn, PROG, 1, 1, &args(marker), T)
            .await
            .unwrap();
        let on_wire = w.copy_from(0);
        let has = |b: &[u8]| b.windows(marker.len()).any(|x| x == marker);
        assert_eq!(has(&on_wire), visible, "{svc:?} call");
        let r = conn.call_raw(xid, w, T).await.unwrap();
        assert_eq!(has(r.body()), visible, "{svc:?} reply");
        let (_, _, _, seen) = parse(&c.finish(&ticket, &r).unwrap());
        assert_eq!(seen, args(marker));
    }
}

/// Far more calls in flight on one context than Linux has slots: none may be dropped as
/// "outside the window" (ntirpc's window of 32 hung Linux clients this way).
#[tokio::test]
async fn hundreds_of_concurrent_calls_on_one_context_are_all_served() {
    let s = server(alice_is_1234()).await;
    let conn = connect(s.addr).await;
    let c = Arc::new(GssClient::new("nfs", "localhost", GssService::Integrity));
    c.call(&conn, PROG, 1, 1, &args(b"first"), T).await.unwrap();
    let tasks: Vec<_> = (0..400)
        .map(|i| {
            let (c, conn) = (c.clone(), conn.clone());
            tokio::spawn(async move {
                c.call(&conn, PROG, 1, 1, &args(format!("call {i}").as_bytes()), T)
                    .await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().expect("every call answered");
    }
    assert_eq!(
        s.acceptor.counters.replays_dropped.load(Ordering::SeqCst),
        0
    );
    assert_eq!(s.handler.calls.load(Ordering::SeqCst), 401);
}

#[tokio::test]
async fn contexts_are_bounded_and_expire_and_clients_recover() {
    let mut cfg = alice_is_1234();
    cfg.max_contexts = 2;
    cfg.max_lifetime = Duration::from_secs(2);
    let s = server(cfg).await;
    let conn = connect(s.addr).await;
    let clients: Vec<_> = (0..3)
        .map(|_| GssClient::new("nfs", "localhost", GssService::None))
        .collect();
    for c in &clients {
        c.call(&conn, PROG, 1, 1, &args(b"hi"), T).await.unwrap();
    }
    assert_eq!(s.acceptor.contexts(), 2, "at most max_contexts are kept");
    // The first client's context was the least recently used: the server forgot it, says so,
    // and the client makes a new one.
    clients[0]
        .call(&conn, PROG, 1, 1, &args(b"again"), T)
        .await
        .unwrap();
    assert_eq!(s.acceptor.counters.contexts_made.load(Ordering::SeqCst), 4);
    assert!(s.acceptor.counters.unknown_context.load(Ordering::SeqCst) >= 1);
    tokio::time::sleep(Duration::from_millis(2200)).await;
    clients[0]
        .call(&conn, PROG, 1, 1, &args(b"later"), T)
        .await
        .unwrap();
    assert_eq!(
        s.acceptor.counters.contexts_made.load(Ordering::SeqCst),
        5,
        "an expired context is refused and made again"
    );
    // DESTROY removes it.
    let before = s.acceptor.contexts();
    clients[0].destroy(&conn, PROG, 1, T).await;
    assert_eq!(s.acceptor.contexts(), before - 1);
}

#[tokio::test]
async fn a_principal_without_an_identity_gets_no_context() {
    let mut cfg = AcceptorConfig::default();
    cfg.identity.fallback = None;
    let s = server(cfg).await;
    let conn = connect(s.addr).await;
    let c = GssClient::new("nfs", "localhost", GssService::None);
    let e = c
        .call(&conn, PROG, 1, 1, &args(b"hi"), T)
        .await
        .unwrap_err();
    assert!(matches!(e, krb::GssClientError::Refused { .. }), "{e}");
    assert_eq!(s.handler.calls.load(Ordering::SeqCst), 0);
    assert_eq!(s.acceptor.contexts(), 0);
}

#[tokio::test]
async fn other_flavors_pass_through_untouched() {
    let s = server(alice_is_1234()).await;
    let conn = connect(s.addr).await;
    let r = conn
        .call(PROG, 1, 1, &Auth::None, &args(b"plain"), T)
        .await
        .unwrap();
    let (uid, _, _, seen) = parse(r.body());
    assert_eq!(uid, u32::MAX, "no GSS caller on an AUTH_NONE call");
    assert_eq!(seen, args(b"plain"));
}
