//! The `gateway-v3` role: the NFSv3 gateway (`gateway-v3` crate) with this process's export
//! rules, in front of this process's MDS or the one `[gateway] mds` names.
use crate::config::{self, ConfigError, FileConfig, Roles};
use crate::ClusterFlags;
use gateway_v3::{ExportRule, Gateway, GatewayConfig};
use std::net::SocketAddr;
use std::sync::Arc;

/// The MDS a gateway without an MDS beside it is a client of.
pub fn mds_addr(flags: &ClusterFlags, file: &FileConfig) -> Result<SocketAddr, ConfigError> {
    let gw = file.gateway.clone().unwrap_or_default();
    match flags.mds.as_ref().or(gw.mds.as_ref()) {
        Some(m) => config::parse_listen(m),
        None => Err(ConfigError::NoMdsForGateway),
    }
}

/// The export rules of the config (the same `[[export]]` sections the MDS reads, so ids and
/// rules match).
pub fn rules(file: &FileConfig) -> Result<Vec<ExportRule>, ConfigError> {
    let exports = config::build_exports(&file.exports)?;
    Ok(exports
        .into_iter()
        .zip(
            file.exports
                .iter()
                .map(|c| c.clients.clone())
                .chain(std::iter::repeat(None)),
        )
        .map(|(e, clients)| {
            let e = Arc::new(e);
            let check = e.clone();
            ExportRule {
                path: e.path.clone(),
                id: e.id,
                admits: Arc::new(move |ip| check.admits(ip)),
                clients: clients.unwrap_or_else(|| vec!["*".into()]),
                read_only: e.read_only,
                root_squash: e.root_squash,
                anon_uid: e.anon_uid,
                anon_gid: e.anon_gid,
                sec: e.sec.iter().map(|f| flavor(*f)).collect(),
            }
        })
        .collect())
}

/// An export flavor as the gateway lists it (MOUNT's `auth_flavors` numbers).
fn flavor(f: mds::config::SecFlavor) -> u32 {
    use mds::config::SecFlavor;
    match f {
        SecFlavor::Sys => proto::rpc::AUTH_SYS,
        SecFlavor::Krb5 => krb::PSEUDO_KRB5,
        SecFlavor::Krb5i => krb::PSEUDO_KRB5I,
        SecFlavor::Krb5p => krb::PSEUDO_KRB5P,
    }
}

/// Starts the gateway. The embedded default's gateway (no roles named) steps aside with a
/// warning when its port is taken, so a second server on the same host still starts.
pub async fn start(
    flags: &ClusterFlags,
    file: &FileConfig,
    roles: Roles,
    nfs_listen: SocketAddr,
    mds: SocketAddr,
    connections: proto::rpc::ServeLimits,
) -> Result<Option<Gateway>, Box<dyn std::error::Error>> {
    let gw = file.gateway.clone().unwrap_or_default();
    let listen = match flags.gateway_listen.as_ref().or(gw.listen.as_ref()) {
        Some(l) => config::parse_listen(l)?,
        None => SocketAddr::new(nfs_listen.ip(), gateway_v3::DEFAULT_PORT),
    };
    let mut cfg = GatewayConfig::new(listen, mds, rules(file)?);
    cfg.connections = connections;
    cfg.rpcbind = match flags
        .rpcbind
        .as_ref()
        .or(gw.rpcbind.as_ref())
        .map(|s| s.as_str())
    {
        Some("off") | Some("") => None,
        Some(a) => Some(config::parse_listen(a)?),
        None => Some(SocketAddr::from((
            [127, 0, 0, 1],
            proto::portmap::PMAP_PORT,
        ))),
    };
    if let Some(n) = gw.open_files {
        cfg.max_open_files = n.max(1);
    }
    if let Some(n) = gw.max_locks {
        cfg.max_locks = n.max(1);
    }
    // RPCSEC_GSS for v3 clients on the same terms as the MDS's (`[kerberos]`, or an export
    // that lists a krb5 flavor). Its own acceptor when the MDS runs beside it: contexts are
    // per port anyway, as Linux makes one per server address and program.
    cfg.gss = crate::kerberos::acceptor(file)?;
    match Gateway::start(cfg).await {
        Ok(g) => {
            tracing::info!(mds = %mds, "serving NFSv3 (MOUNT, NLM) on {}", g.local_addr());
            Ok(Some(g))
        }
        Err(e) if roles.default => {
            tracing::warn!(
                "NFSv3 gateway not started: {e} (set [gateway] listen, or --gateway-listen)"
            );
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}
