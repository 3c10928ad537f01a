//! Shared helpers for tests that talk to a real server on loopback.
#![allow(dead_code)]
use mds::config::Export;
use mds::{Server, ServerConfig};
use proto::nfs4::*;
use proto::rpc::{Auth, AuthSys, Connection, ConnectionLimits, RejectCalls};
use proto::xdr::{Opaque, Xdr};
use std::sync::Arc;
use std::time::Duration;

pub const T: Duration = Duration::from_secs(10);

pub async fn server() -> (Server, tempfile::TempDir) {
    server_with(Export::new("/").unwrap()).await
}

pub async fn server_with(export: Export) -> (Server, tempfile::TempDir) {
    server_with_limits(export, Default::default()).await
}

/// A server with its own connection bounds (all test clients share one source address).
pub async fn server_with_limits(
    export: Export,
    connections: proto::rpc::ServeLimits,
) -> (Server, tempfile::TempDir) {
    server_config(export, connections, 30).await
}

/// A server whose lease is `lease_seconds` (5 at least, as the server enforces).
pub async fn server_with_lease(lease_seconds: u32) -> (Server, tempfile::TempDir) {
    server_config(Export::new("/").unwrap(), Default::default(), lease_seconds).await
}

async fn server_config(
    export: Export,
    connections: proto::rpc::ServeLimits,
    lease_seconds: u32,
) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ServerConfig {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        exports: vec![export],
        lease_seconds,
        write_delegations: true,
        grace_seconds: None,
        cluster: None,
        connections,
        members: None,
        client_addresses: Default::default(),
        tier: None,
    };
    (Server::start(cfg).await.unwrap(), dir)
}

/// A server on `dir` (lease 5 s, this grace period), as the tests that restart one need. The
/// previous instance in this process lets go of the directory once its connections are
/// closed: retried until it has.
pub async fn start_on(
    dir: &std::path::Path,
    grace_seconds: u32,
    write_delegations: bool,
) -> Server {
    let mut tries = 0;
    loop {
        let r = Server::start(ServerConfig {
            data_dir: dir.to_path_buf(),
            listen: "127.0.0.1:0".parse().unwrap(),
            exports: vec![Export::new("/").unwrap()],
            lease_seconds: 5,
            write_delegations,
            grace_seconds: Some(grace_seconds),
            cluster: None,
            connections: Default::default(),
            members: None,
            client_addresses: Default::default(),
            tier: None,
        })
        .await;
        match r {
            Ok(s) => return s,
            Err(_) if tries < 100 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
}

pub fn root() -> Auth {
    Auth::Sys(AuthSys {
        stamp: 1,
        machine: b"test".to_vec(),
        uid: 0,
        gid: 0,
        gids: vec![],
    })
}

/// AUTH_SYS of user `uid` (group `uid`, no other groups): a caller other than root.
pub fn user(uid: u32) -> Auth {
    Auth::Sys(AuthSys {
        stamp: 1,
        machine: b"test".to_vec(),
        uid,
        gid: uid,
        gids: vec![],
    })
}

pub async fn compound(c: &Connection, minor: u32, ops: Vec<NfsArgop4>) -> Compound4Res {
    let args = Compound4Args {
        tag: Opaque::default(),
        minorversion: minor,
        argarray: ops,
    };
    raw_compound(c, &args.to_xdr()).await
}

pub async fn raw_compound(c: &Connection, body: &[u8]) -> Compound4Res {
    raw_compound_as(c, &root(), body).await
}

/// A v4.1 COMPOUND sent with credential `cred` (another user than root).
pub async fn compound_as(c: &Connection, cred: &Auth, ops: Vec<NfsArgop4>) -> Compound4Res {
    let args = Compound4Args {
        tag: Opaque::default(),
        minorversion: 1,
        argarray: ops,
    };
    raw_compound_as(c, cred, &args.to_xdr()).await
}

pub async fn raw_compound_as(c: &Connection, cred: &Auth, body: &[u8]) -> Compound4Res {
    let r = c
        .call(NFS4_PROGRAM, NFS_V4, NFSPROC4_COMPOUND, cred, body, T)
        .await
        .unwrap();
    Compound4Res::from_xdr(r.body()).unwrap()
}

/// A client with a session (no back channel); returns the session id.
pub async fn session(c: &Connection) -> Sessionid4 {
    new_session(c, "hostile-test", 0, vec![CallbackSecParms4::AuthNone])
        .await
        .0
}

/// EXCHANGE_ID + CREATE_SESSION for `owner`; returns (session, client id, csr_flags).
pub async fn new_session(
    c: &Connection,
    owner: &str,
    flags: u32,
    sec: Vec<CallbackSecParms4>,
) -> (Sessionid4, u64, u32) {
    new_session_minor(c, owner, flags, sec, 1).await
}

/// `new_session` in COMPOUNDs of minor version `minor` (1 or 2). Like every client, it then
/// sends RECLAIM_COMPLETE (RFC 8881 §18.51.3: no OPEN before it), on the session's last slot
/// so that the tests' own requests start at sequence id 1 of slot 0; a client that sent it
/// already (a second session) is told COMPLETE_ALREADY.
pub async fn new_session_minor(
    c: &Connection,
    owner: &str,
    flags: u32,
    sec: Vec<CallbackSecParms4>,
    minor: u32,
) -> (Sessionid4, u64, u32) {
    let (sid, clientid, csr_flags, slots) = establish(c, owner, flags, sec, minor).await;
    if slots > 1 {
        let r = compound(
            c,
            minor,
            vec![
                NfsArgop4::Sequence(SequenceArgs {
                    sa_sessionid: sid,
                    sa_sequenceid: 1,
                    sa_slotid: slots - 1,
                    sa_highest_slotid: slots - 1,
                    sa_cachethis: false,
                }),
                NfsArgop4::ReclaimComplete(ReclaimCompleteArgs { rca_one_fs: false }),
            ],
        )
        .await;
        assert!(
            r.status == 0 || r.status == Nfsstat4::CompleteAlready.code(),
            "{r:?}"
        );
    }
    (sid, clientid, csr_flags)
}

/// EXCHANGE_ID + CREATE_SESSION and nothing else; returns (session, client id, csr_flags,
/// slots granted).
pub async fn establish(
    c: &Connection,
    owner: &str,
    flags: u32,
    sec: Vec<CallbackSecParms4>,
    minor: u32,
) -> (Sessionid4, u64, u32, u32) {
    let r = compound(
        c,
        minor,
        vec![NfsArgop4::ExchangeId(ExchangeIdArgs {
            eia_clientowner: ClientOwner4 {
                co_verifier: [2; 8],
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
        minor,
        vec![NfsArgop4::CreateSession(CreateSessionArgs {
            csa_clientid: x.eir_clientid,
            csa_sequence: x.eir_sequenceid,
            csa_flags: flags,
            csa_fore_chan_attrs: attrs.clone(),
            csa_back_chan_attrs: attrs,
            csa_cb_program: 0x4000_0000,
            csa_sec_parms: sec,
        })],
    )
    .await;
    let NfsResop4::CreateSession(CreateSessionRes::Ok(s)) = &r.resarray[0] else {
        panic!("{r:?}")
    };
    (
        s.csr_sessionid,
        x.eir_clientid,
        s.csr_flags,
        s.csr_fore_chan_attrs.ca_maxrequests,
    )
}

/// CREATE of a directory with default attributes.
pub fn mkdir(name: &str) -> NfsArgop4 {
    NfsArgop4::Create(CreateArgs {
        objtype: Createtype4::Dir,
        objname: Opaque::from(name),
        createattrs: Fattr4::default(),
    })
}

/// OPEN for reading and writing of `name` (created UNCHECKED with `attrs`) by open owner
/// `owner`, wanting no delegation (a sole writer would get a write delegation, which other
/// clients' access then recalls; the tests of delegations ask for them themselves).
pub fn open_create(name: &str, owner: &str, attrs: Fattr4) -> NfsArgop4 {
    NfsArgop4::Open(OpenArgs {
        seqid: 0,
        share_access: 3 | OPEN4_SHARE_ACCESS_WANT_NO_DELEG,
        share_deny: 0,
        owner: StateOwner4 {
            clientid: 0,
            owner: Opaque::from(owner),
        },
        openhow: Openflag4::Create(Createhow4::Unchecked(attrs)),
        claim: OpenClaim4::Null(Opaque::from(name)),
    })
}

/// OPEN by open owner `owner` with share `access` (want flags included), deny none.
pub fn open_op(owner: &str, access: u32, how: Openflag4, claim: OpenClaim4) -> NfsArgop4 {
    NfsArgop4::Open(OpenArgs {
        seqid: 0,
        share_access: access,
        share_deny: 0,
        owner: StateOwner4 {
            clientid: 0,
            owner: Opaque::from(owner),
        },
        openhow: how,
        claim,
    })
}

pub fn seq(sid: Sessionid4, seqid: u32) -> NfsArgop4 {
    NfsArgop4::Sequence(SequenceArgs {
        sa_sessionid: sid,
        sa_sequenceid: seqid,
        sa_slotid: 0,
        sa_highest_slotid: 0,
        sa_cachethis: false,
    })
}

/// `seq` with sa_cachethis: the server keeps the reply for a retransmission.
pub fn seq_cached(sid: Sessionid4, seqid: u32) -> NfsArgop4 {
    NfsArgop4::Sequence(SequenceArgs {
        sa_sessionid: sid,
        sa_sequenceid: seqid,
        sa_slotid: 0,
        sa_highest_slotid: 0,
        sa_cachethis: true,
    })
}

pub async fn connect(s: &Server) -> Connection {
    Connection::connect(
        s.local_addr(),
        Arc::new(RejectCalls),
        ConnectionLimits::default(),
    )
    .await
    .unwrap()
}

/// A client that asked for a back channel on its connection; returns (session, client id).
pub async fn session_with_back_channel(c: &Connection, owner: &str) -> (Sessionid4, u64) {
    session_with_back_channel_minor(c, owner, 1).await
}

/// `session_with_back_channel` in COMPOUNDs of minor version `minor` (1 or 2).
pub async fn session_with_back_channel_minor(
    c: &Connection,
    owner: &str,
    minor: u32,
) -> (Sessionid4, u64) {
    let sec = vec![CallbackSecParms4::AuthSys(AuthsysParms {
        stamp: 1,
        machinename: Opaque::from("test"),
        uid: 0,
        gid: 0,
        gids: vec![],
    })];
    let (sid, clientid, flags) =
        new_session_minor(c, owner, CREATE_SESSION4_FLAG_CONN_BACK_CHAN, sec, minor).await;
    assert_ne!(
        flags & CREATE_SESSION4_FLAG_CONN_BACK_CHAN,
        0,
        "back channel refused"
    );
    // The callers' requests start at sequence id 2.
    let r = compound(c, minor, vec![seq(sid, 1)]).await;
    assert_eq!(r.status, 0, "{r:?}");
    (sid, clientid)
}

/// What a test client's back channel was asked to give back.
#[derive(Debug, Clone, PartialEq)]
pub enum Recall {
    Delegation(Stateid4),
    Layout(LayoutrecallFile4),
    /// A CB_GETATTR of this file (answered with `Holder::attrs`).
    Getattr(NfsFh4),
}

/// A client connection whose back channel records recalls (see `Holder`).
pub async fn connect_holder(
    s: &Server,
) -> (Connection, tokio::sync::mpsc::UnboundedReceiver<Recall>) {
    connect_holder_minor(s, 1).await
}

/// `connect_holder` for a client whose session is of minor version `minor`.
pub async fn connect_holder_minor(
    s: &Server,
    minor: u32,
) -> (Connection, tokio::sync::mpsc::UnboundedReceiver<Recall>) {
    let (c, rx, _) = connect_holder_answering(s, minor).await;
    (c, rx)
}

/// What a test holder's CB_GETATTR answers: (change, size); None: no reply at all.
pub type CbAttrs = Arc<std::sync::Mutex<Option<(u64, u64)>>>;

/// `connect_holder_minor` whose CB_GETATTR answers come from the returned `CbAttrs`.
pub async fn connect_holder_answering(
    s: &Server,
    minor: u32,
) -> (
    Connection,
    tokio::sync::mpsc::UnboundedReceiver<Recall>,
    CbAttrs,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let attrs = CbAttrs::default();
    let c = Connection::connect(
        s.local_addr(),
        Arc::new(Holder {
            recalls: tx,
            minor,
            creds: None,
            attrs: attrs.clone(),
        }),
        ConnectionLimits::default(),
    )
    .await
    .unwrap();
    (c, rx, attrs)
}

/// `connect_holder` whose back channel also reports the RPC credential of every callback.
pub async fn connect_holder_with_creds(
    s: &Server,
) -> (
    Connection,
    tokio::sync::mpsc::UnboundedReceiver<Recall>,
    tokio::sync::mpsc::UnboundedReceiver<Auth>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (ctx, crx) = tokio::sync::mpsc::unbounded_channel();
    let c = Connection::connect(
        s.local_addr(),
        Arc::new(Holder {
            recalls: tx,
            minor: 1,
            creds: Some(ctx),
            attrs: Arc::default(),
        }),
        ConnectionLimits::default(),
    )
    .await
    .unwrap();
    (c, rx, crx)
}

/// A test client's callback service: records CB_RECALL and CB_LAYOUTRECALL and acknowledges
/// them; any other callback gets no reply. Like Linux, it refuses a CB_COMPOUND whose minor
/// version is not its session's with NFS4ERR_BADSESSION.
pub struct Holder {
    pub recalls: tokio::sync::mpsc::UnboundedSender<Recall>,
    pub minor: u32,
    /// Where the credential of each callback goes, if anywhere.
    pub creds: Option<tokio::sync::mpsc::UnboundedSender<Auth>>,
    /// What CB_GETATTR answers.
    pub attrs: CbAttrs,
}

impl proto::rpc::CallHandler for Holder {
    async fn handle(&self, _c: Connection, call: proto::rpc::Call) -> Option<proto::xdr::Writer> {
        if let Some(tx) = &self.creds {
            let _ = tx.send(call.cred.clone());
        }
        let args = CbCompound4Args::from_xdr(call.args()).ok()?;
        if args.minorversion != self.minor {
            let bad = Nfsstat4::Badsession.code();
            return Some(cb_reply(
                call.xid,
                bad,
                vec![NfsCbResop4::Sequence(CbSequenceRes::Err(bad))],
            ));
        }
        let mut res = Vec::new();
        for op in &args.argarray {
            match op {
                NfsCbArgop4::Sequence(s) => {
                    res.push(NfsCbResop4::Sequence(CbSequenceRes::Ok(CbSequenceResOk {
                        csr_sessionid: s.csa_sessionid,
                        csr_sequenceid: s.csa_sequenceid,
                        csr_slotid: s.csa_slotid,
                        csr_highest_slotid: 0,
                        csr_target_highest_slotid: 0,
                    })))
                }
                NfsCbArgop4::Recall(r) => {
                    let _ = self.recalls.send(Recall::Delegation(r.stateid));
                    res.push(NfsCbResop4::Recall(fileops::StatusRes::ok()));
                }
                NfsCbArgop4::Getattr(g) => {
                    let _ = self.recalls.send(Recall::Getattr(g.fh.clone()));
                    let (change, size) = (*self.attrs.lock().unwrap())?;
                    // A holder of delegated timestamps is asked for them too (RFC 9754 §5):
                    // it answers with the times it keeps, as Linux does.
                    let asked = attr::Bitmap::from_words(&g.attr_request);
                    let kept = Nfstime4 {
                        seconds: 1,
                        nseconds: 0,
                    };
                    let answer = FileAttrs {
                        change: Some(change),
                        size: Some(size),
                        time_deleg_access: Some(kept),
                        time_deleg_modify: Some(kept),
                        ..Default::default()
                    };
                    let mut wanted =
                        attr::Bitmap::from_bits(&[attr::FATTR4_CHANGE, attr::FATTR4_SIZE]);
                    for bit in [
                        attr::FATTR4_TIME_DELEG_ACCESS,
                        attr::FATTR4_TIME_DELEG_MODIFY,
                    ] {
                        if asked.get(bit) {
                            wanted.set(bit);
                        }
                    }
                    res.push(NfsCbResop4::Getattr(CbGetattrRes::Ok(CbGetattrResOk {
                        obj_attributes: answer.encode(&wanted),
                    })));
                }
                NfsCbArgop4::Layoutrecall(r) => {
                    if let Layoutrecall4::File(f) = &r.clora_recall {
                        let _ = self.recalls.send(Recall::Layout(f.clone()));
                    }
                    res.push(NfsCbResop4::Layoutrecall(fileops::StatusRes::ok()));
                }
                _ => return None,
            }
        }
        Some(cb_reply(call.xid, 0, res))
    }
}

fn cb_reply(xid: u32, status: u32, resarray: Vec<NfsCbResop4>) -> proto::xdr::Writer {
    let mut w = proto::rpc::accepted_reply(xid, &Auth::None, proto::rpc::AcceptStat::Success);
    CbCompound4Res {
        status,
        tag: Opaque::default(),
        resarray,
    }
    .encode(&mut w);
    w
}

/// A data-server heartbeat for `ds_id` listening on `listen`, MACed with the cluster secret
/// derived from `passphrase`: how tests register data servers that exist only as addresses.
pub async fn heartbeat(
    mds: &Connection,
    passphrase: &str,
    ds_id: u64,
    listen: std::net::SocketAddr,
) {
    use proto::cluster::*;
    let secret = layout::ClusterSecret::from_passphrase(passphrase).unwrap();
    let mut a = HeartbeatArgs {
        ds_id,
        instance: 1,
        timestamp_ms: layout::secret::now_ms(),
        listen: proto::nfs4::basic::Netaddr4 {
            na_r_netid: Opaque::from("tcp"),
            na_r_addr: Opaque::from(layout::uaddr::to_uaddr(&listen).as_str()),
        },
        advertised: vec![],
        failure_domain: String::new(),
        capacity_bytes: 1 << 30,
        used_bytes: 0,
        avail_bytes: 1 << 30,
        fs_id: 0,
        counters: DsCounters::default(),
        fence_seq: 0,
        mac: [0; 32],
    };
    a.mac = secret.heartbeat_mac(&a);
    let r = mds
        .call(
            CFS_CLUSTER_PROGRAM,
            CFS_CLUSTER_V1,
            CLUSTERPROC_HEARTBEAT,
            &Auth::None,
            &a.to_xdr(),
            T,
        )
        .await
        .unwrap();
    let HeartbeatRes::Ok(ok) = HeartbeatRes::from_xdr(r.body()).unwrap() else {
        panic!("heartbeat refused");
    };
    // The answer is MACed for this very heartbeat (a DS uses nothing in it otherwise), and a
    // one-node service lists no metadata nodes (the DS has its address already).
    assert!(secret.heartbeat_reply_authentic(&a.mac, &ok));
    assert!(ok.mds_nodes.is_empty(), "{:?}", ok.mds_nodes);
}

/// A client with a back channel that answers recalls (`connect_holder_answering`) and created
/// a file in the root, opened as `owner` with `access`: what came back.
pub struct Opened {
    pub c: Connection,
    pub sid: Sessionid4,
    pub recalls: tokio::sync::mpsc::UnboundedReceiver<Recall>,
    pub attrs: CbAttrs,
    pub delegation: OpenDelegation4,
    pub open: Stateid4,
    pub fh: NfsFh4,
    /// The file's change attribute right after the open.
    pub change: u64,
}

/// Creates `name` in the root alone (a client of its own, with a back channel) and opens it
/// as open-owner `owner` with `access` (delegation wants included).
pub async fn open_alone(s: &Server, name: &str, owner: &str, access: u32) -> Opened {
    let (c, recalls, attrs) = connect_holder_answering(s, 1).await;
    let (sid, _) = session_with_back_channel(&c, &format!("holder-{name}")).await;
    let r = compound(
        &c,
        1,
        vec![
            seq(sid, 2),
            NfsArgop4::Putrootfh,
            open_op(
                owner,
                access,
                Openflag4::Create(Createhow4::Unchecked(Fattr4::default())),
                OpenClaim4::Null(Opaque::from(name)),
            ),
            NfsArgop4::Getfh,
            NfsArgop4::Getattr(GetattrArgs {
                attr_request: vec![1 << proto::nfs4::attr::FATTR4_CHANGE],
            }),
        ],
    )
    .await;
    assert_eq!(r.status, 0, "{r:?}");
    let (
        NfsResop4::Open(OpenRes::Ok(o)),
        NfsResop4::Getfh(GetfhRes::Ok(fh)),
        NfsResop4::Getattr(GetattrRes::Ok(g)),
    ) = (&r.resarray[2], &r.resarray[3], &r.resarray[4])
    else {
        panic!("{r:?}")
    };
    let change = g.obj_attributes.attr_vals.0[..8]
        .try_into()
        .expect("change");
    Opened {
        c,
        sid,
        recalls,
        attrs,
        delegation: o.delegation.clone(),
        open: o.stateid,
        fh: fh.object.clone(),
        change: u64::from_be_bytes(change),
    }
}
