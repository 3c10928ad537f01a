//! How a client identifies itself and what it asks the server for.
use proto::rpc::{Auth, AuthSys};
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub server: SocketAddr,
    /// Path of the export inside the server's namespace ("/" for cfs, e.g. "/export" for a
    /// ganesha pseudo-fs); every path the helpers take is relative to it.
    pub export: String,
    /// `co_ownerid`: identifies this client across restarts (the server keys reclaim on it).
    pub owner: Vec<u8>,
    /// `co_verifier`: changes when the client "reboots" (a new instance of the same owner).
    pub verifier: [u8; 8],
    pub auth: Auth,
    /// Kerberos: every call goes as RPCSEC_GSS under this context (made from the caller's
    /// ticket cache) instead of `auth`, which then only fills the callback credential.
    pub gss: Option<std::sync::Arc<krb::GssClient>>,
    /// Fore-channel slots asked for; the server may grant fewer.
    pub slots: u32,
    /// Largest READ/WRITE payload asked for (the server's limits may lower it).
    pub max_io: u32,
    /// Time limit of one RPC.
    pub timeout: Duration,
    /// Send RECLAIM_COMPLETE right after CREATE_SESSION. Turn off to reclaim state first.
    pub reclaim_complete: bool,
    /// Retry operations refused with NFS4ERR_GRACE until the grace period ends (as the Linux
    /// client does). Off: the caller sees the error.
    pub retry_grace: bool,
    /// Ask for a back channel on the connection and answer callbacks.
    pub back_channel: bool,
    /// Use pNFS (flexfiles layouts, data I/O straight to the data servers) when the server
    /// offers it. Off: every READ/WRITE goes to the MDS, which proxies it.
    pub pnfs: bool,
    /// libfabric provider ("tcp", "sockets", "verbs", ...) for data-server I/O with RMA where
    /// a data server offers that provider; None: data servers over TCP only.
    pub fabric: Option<String>,
    /// EXCHANGE_ID's implementation id (domain, name). Servers may choose what to hand out by
    /// it (cfs gives striped layouts of erasure-coded files to Linux 6.18+ only).
    pub implementation: (String, String),
}

impl ClientConfig {
    /// Defaults: export "/", an owner unique to this process, AUTH_SYS as the calling user,
    /// 16 slots, 1 MiB I/O, 30 s per RPC, pNFS when offered.
    pub fn new(server: SocketAddr) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let pid = std::process::id();
        let owner = format!("cfs-client {host} {pid} {nanos:x}").into_bytes();
        ClientConfig {
            server,
            export: "/".into(),
            owner,
            verifier: nanos.to_be_bytes(),
            auth: current_user_auth(&host),
            gss: None,
            slots: 16,
            max_io: 1 << 20,
            timeout: Duration::from_secs(30),
            reclaim_complete: true,
            retry_grace: true,
            back_channel: true,
            pnfs: true,
            fabric: None,
            implementation: (
                "claudefs".into(),
                concat!("cfs client ", env!("CARGO_PKG_VERSION")).into(),
            ),
        }
    }
}

/// AUTH_SYS credentials of this process (from /proc/self, which the process owns), so files
/// are created as the user running the command.
fn current_user_auth(host: &str) -> Auth {
    let (uid, gid) = std::fs::metadata("/proc/self")
        .map(|m| (m.uid(), m.gid()))
        .unwrap_or((0, 0));
    Auth::Sys(AuthSys {
        stamp: 0,
        machine: host.as_bytes().iter().take(255).copied().collect(),
        uid,
        gid,
        gids: Vec::new(),
    })
}
