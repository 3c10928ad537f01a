//! The NFSv3 gateway: serves NFSv3 (RFC 1813), MOUNT v3, NLM v4 and NSM to hosts that cannot
//! speak NFSv4.1, as an NFSv4.1 client of the cluster (`client::Client`): metadata through
//! one session to the MDS, data straight to the data servers through flexfiles layouts.
//!
//! - [`nfs3`]: the NFSv3 program, one function per procedure, grouped by area.
//! - [`mount`]: MOUNT v3 (export rules decide who may mount what).
//! - [`nlm`]: NLM v4 byte-range locks mapped to NFSv4 LOCK through the session, so v3 and
//!   v4.1 clients' locks conflict; [`nsm`]: the reboot notifications NLM clients rely on.
//! - [`fh`]: v3 handles are the MDS's handles, byte for byte.
//! - [`opens`]: the NFSv4 opens v3 I/O runs under (bounded, closed when idle).
//! - [`verifier`]: the write verifier, which changes whenever unstable data may be lost.
//! - [`portmap`]: registration with the host's rpcbind, so `mount -o vers=3` needs no ports.
//!
//! Why not the `nfsserve` crate: see the README's gateway section. In short, its file system
//! trait gets no caller credentials, makes handles that go stale on every restart, has no
//! LINK, MKNOD, COMMIT or write stability, and no NLM; the project's `proto` already had every
//! NFSv3 and MOUNT wire type, fuzzed, and the RPC server with connection limits.
#![forbid(unsafe_code)]

pub mod attrs;
pub mod creds;
pub mod error;
pub mod exports;
pub mod fh;
pub mod mount;
pub mod nfs3;
pub mod nlm;
pub mod nsm;
pub mod opens;
pub mod portmap;
pub mod upstream;
pub mod verifier;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use proto::nfs3::{MOUNT_PROGRAM, MOUNT_V3, NFS3_PROGRAM, NFS_V3};
use proto::rpc::{
    accepted_reply, denied_auth_reply, AcceptStat, Auth, AuthStat, Call, CallHandler, ConnTable,
    Connection, ConnectionLimits, ServeLimits,
};
use proto::xdr::Writer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use error::GatewayError;
pub use exports::{ExportRule, Exports};

/// Largest RPC record accepted: a 1 MiB WRITE plus headers.
pub const MAX_RECORD: usize = (1 << 20) + (64 << 10);
/// Calls served at once per connection.
pub const MAX_IN_FLIGHT: usize = 32;
/// The largest READ/WRITE offered to v3 clients (FSINFO rtmax/wtmax).
pub const MAX_IO: u32 = 1 << 20;
/// The port knfsd's mountd uses (IANA "mountd"); the gateway serves MOUNT and NFS on it.
pub const DEFAULT_PORT: u16 = 20048;

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Where v3 clients connect (NFS, MOUNT, NLM and NSM share the port).
    pub listen: SocketAddr,
    /// The MDS.
    pub mds: SocketAddr,
    pub exports: Vec<ExportRule>,
    pub connections: ServeLimits,
    /// The rpcbind to register with (`127.0.0.1:111` on a host); None: no registration.
    pub rpcbind: Option<SocketAddr>,
    /// The NFSv4 client owner: the same on every start of this gateway, so the MDS drops
    /// the previous instance's state when it comes back.
    pub owner: Vec<u8>,
    /// NFSv4 opens held for v3 I/O at once.
    pub max_open_files: usize,
    /// An open unused this long is closed (so close-to-open readers elsewhere see sizes).
    pub open_idle: Duration,
    /// NLM locks held at once (all clients); more are refused with NLM4_DENIED_NOLOCKS.
    pub max_locks: usize,
    /// RPCSEC_GSS (krb5, krb5i, krb5p) for v3 clients: `krb::GssLayer` in front of every
    /// program, as on the MDS. None: such calls get AUTH_TOOWEAK.
    pub gss: Option<Arc<krb::Acceptor>>,
}

impl GatewayConfig {
    pub fn new(listen: SocketAddr, mds: SocketAddr, exports: Vec<ExportRule>) -> GatewayConfig {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        GatewayConfig {
            listen,
            mds,
            exports,
            connections: ServeLimits::default(),
            rpcbind: None,
            owner: format!("cfs-gateway-v3 {host} {listen}").into_bytes(),
            max_open_files: 1024,
            open_idle: Duration::from_secs(30),
            max_locks: 65536,
            gss: None,
        }
    }
}

/// State every connection and task shares.
pub struct Shared {
    pub exports: Exports,
    pub up: upstream::Upstream,
    pub verf: verifier::WriteVerf,
    pub opens: opens::Opens,
    pub locks: nlm::LockTable,
    pub nsm: nsm::Monitor,
    pub local: SocketAddr,
    pub roots: std::sync::Mutex<std::collections::HashMap<u32, proto::nfs4::NfsFh4>>,
}

impl Shared {
    /// The session was lost: its opens (and the uncommitted data the layout driver held with
    /// them) are gone; clients must resend unstable writes.
    pub fn session_lost(&self) {
        let dropped = self.opens.take_idle(true);
        for e in &dropped {
            self.opens.committed(e);
        }
        self.locks.forget_all();
        self.verf.bump(&format!(
            "upstream session lost with {} opens",
            dropped.len()
        ));
    }

    /// Closes entries the cache let go of, in the background.
    pub fn close_later(self: &Arc<Self>, entries: Vec<Arc<opens::Entry>>) {
        if entries.is_empty() {
            return;
        }
        let s = self.clone();
        tokio::spawn(async move { s.close_now(entries).await });
    }

    pub async fn close_now(&self, entries: Vec<Arc<opens::Entry>>) {
        let Some(c) = self.up.current().await else {
            return;
        };
        let gen = self.up.generation();
        // Opens of a lost session went with it.
        for e in entries.into_iter().filter(|e| e.generation == gen) {
            // Locks held through NLM keep their open (back in the table, idle again later).
            if self.locks.holds(&e.file.fh) {
                self.opens.keep(e);
                continue;
            }
            let r = opens::close(&c, &e).await;
            self.opens.committed(&e);
            if let Err(err) = r {
                tracing::warn!("closing an idle open: {err}");
                if e.pending_end.load(std::sync::atomic::Ordering::SeqCst) > 0
                    || matches!(
                        err,
                        client::Error::Protocol(_) | client::Error::VerifierChanged
                    )
                {
                    self.verf.bump("a close could not commit what it held");
                }
            }
        }
    }
}

/// A running gateway.
pub struct Gateway {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    conns: Arc<ConnTable>,
    rpcbind: Option<SocketAddr>,
}

fn random_u64() -> std::io::Result<u64> {
    use std::io::Read;
    let mut b = [0u8; 8];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

impl Gateway {
    /// Binds `listen` and serves. The MDS is reached on the first call that needs it.
    pub async fn start(cfg: GatewayConfig) -> Result<Gateway, GatewayError> {
        let listener =
            TcpListener::bind(cfg.listen)
                .await
                .map_err(|source| GatewayError::Listen {
                    addr: cfg.listen,
                    source,
                })?;
        let local = listener
            .local_addr()
            .map_err(|source| GatewayError::Listen {
                addr: cfg.listen,
                source,
            })?;
        let boot = random_u64().map_err(GatewayError::Random)?;
        let mut ccfg = client::ClientConfig::new(cfg.mds);
        ccfg.owner = cfg.owner.clone();
        ccfg.auth = creds::Cred {
            uid: 0,
            gid: 0,
            gids: Vec::new(),
            machine: b"cfs-gateway-v3".to_vec(),
            anonymous: false,
            flavor: proto::rpc::AUTH_SYS,
        }
        .auth();
        ccfg.slots = 64;
        ccfg.max_io = MAX_IO;
        let shared = Arc::new(Shared {
            exports: Exports(cfg.exports.clone()),
            up: upstream::Upstream::new(ccfg),
            verf: verifier::WriteVerf::new(boot),
            opens: opens::Opens::new(cfg.max_open_files, cfg.open_idle),
            locks: nlm::LockTable::new(cfg.max_locks),
            nsm: nsm::Monitor::new(boot),
            local,
            roots: Default::default(),
        });
        let (stop, stop_rx) = watch::channel(false);
        let conns = ConnTable::new(cfg.connections);
        let svc = Arc::new(Service {
            shared: shared.clone(),
        });
        let limits = ConnectionLimits {
            max_record: MAX_RECORD,
            max_in_flight: MAX_IN_FLIGHT,
        };
        let mut rx = stop_rx.clone();
        let stopped = async move {
            let _ = rx.changed().await;
        };
        let accept = match cfg.gss.clone() {
            Some(acc) => tokio::spawn(proto::rpc::serve(
                listener,
                Arc::new(krb::GssLayer::new(svc, acc)),
                limits,
                conns.clone(),
                stopped,
            )),
            None => tokio::spawn(proto::rpc::serve(
                listener,
                svc,
                limits,
                conns.clone(),
                stopped,
            )),
        };
        let janitor = tokio::spawn(janitor(shared.clone(), stop_rx));
        if let Some(rb) = cfg.rpcbind {
            match portmap::register(rb, local.port()).await {
                Ok(()) => {
                    tracing::info!(rpcbind = %rb, port = local.port(), "registered NFSv3, MOUNT v3, NLM v4 and NSM with rpcbind")
                }
                Err(e) => {
                    tracing::warn!(rpcbind = %rb, "not registered with rpcbind ({e}); clients need -o port={0},mountport={0}", local.port())
                }
            }
        }
        tracing::info!(%local, mds = %cfg.mds, "NFSv3 gateway listening");
        Ok(Gateway {
            shared,
            stop,
            tasks: vec![accept, janitor],
            conns,
            rpcbind: cfg.rpcbind,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Stops serving, commits and closes every open, unregisters.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        self.conns.close_all();
        let all = self.shared.opens.take_idle(true);
        self.shared.close_now(all).await;
        self.shared.locks.forget_all();
        if let Some(c) = self.shared.up.current().await {
            let _ = c.shutdown().await;
        }
        if let Some(rb) = self.rpcbind {
            let _ = portmap::unregister(rb, self.shared.local.port()).await;
        }
        tracing::info!("NFSv3 gateway stopped");
    }
}

/// A call's arguments, or the reply that refuses it: PROC_UNAVAIL for a procedure `decode`
/// does not know, GARBAGE_ARGS for arguments that do not decode.
pub(crate) fn call_args<T>(
    call: &Call,
    decode: impl FnOnce(u32, &mut proto::xdr::Reader<'_>) -> Result<Option<T>, proto::xdr::XdrError>,
) -> Result<T, Option<Writer>> {
    let refuse = |s| Err(Some(accepted_reply(call.xid, &Auth::None, s)));
    match decode(call.proc_, &mut proto::xdr::Reader::new(call.args())) {
        Ok(Some(a)) => Ok(a),
        Ok(None) => refuse(AcceptStat::ProcUnavail),
        Err(e) => {
            tracing::debug!(
                xid = call.xid,
                prog = call.prog,
                proc_ = call.proc_,
                "undecodable arguments: {e}"
            );
            refuse(AcceptStat::GarbageArgs)
        }
    }
}

/// Closes opens left idle, every few seconds.
async fn janitor(s: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let tick = (s.opens.idle / 4).clamp(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(tick) => {}
        }
        let idle = s.opens.take_idle(false);
        s.close_now(idle).await;
    }
}

struct Service {
    shared: Arc<Shared>,
}

impl CallHandler for Service {
    async fn handle(&self, conn: Connection, call: Call) -> Option<Writer> {
        let stat = |s| Some(accepted_reply(call.xid, &Auth::None, s));
        let (lo, hi) = match call.prog {
            NFS3_PROGRAM => (NFS_V3, NFS_V3),
            MOUNT_PROGRAM => (MOUNT_V3, MOUNT_V3),
            nlm::NLM_PROGRAM => (nlm::NLM_V4, nlm::NLM_V4),
            nsm::SM_PROGRAM => (nsm::SM_V1, nsm::SM_V1),
            _ => return stat(AcceptStat::ProgUnavail),
        };
        if call.vers < lo || call.vers > hi {
            return stat(AcceptStat::ProgMismatch { low: lo, high: hi });
        }
        let Some(cred) = creds::Cred::from_call(&call) else {
            return Some(denied_auth_reply(call.xid, AuthStat::TooWeak));
        };
        let peer: IpAddr = conn.peer_addr().ip();
        let s = &self.shared;
        match call.prog {
            NFS3_PROGRAM => nfs3::dispatch(s, peer, cred, &call).await,
            MOUNT_PROGRAM => mount::dispatch(s, peer, cred, &call).await,
            nlm::NLM_PROGRAM => nlm::dispatch(s, peer, cred, &call, &conn).await,
            _ => nsm::dispatch(s, peer, &call).await,
        }
    }
}
