//! Registration with rpcbind (portmapper v2 SET/UNSET), so that `mount -t nfs -o vers=3
//! host:/ /mnt` finds NFS, MOUNT and NLM without port options. Each mapping is unset first:
//! a previous instance killed with -9 left its own behind, and rpcbind refuses to SET over an
//! existing one.
use proto::nfs3::{MOUNT_PROGRAM, MOUNT_V3, NFS3_PROGRAM, NFS_V3};
use proto::portmap::*;
use proto::rpc::{
    AcceptStat, Auth, Connection, ConnectionLimits, RejectCalls, ReplyStatus, RpcError,
};
use proto::xdr::{Reader, Xdr};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// What the gateway serves on its one port.
pub const PROGRAMS: &[(u32, u32)] = &[
    (NFS3_PROGRAM, NFS_V3),
    (MOUNT_PROGRAM, MOUNT_V3),
    (crate::nlm::NLM_PROGRAM, crate::nlm::NLM_V4),
    (crate::nsm::SM_PROGRAM, crate::nsm::SM_V1),
];

const TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum PortmapError {
    #[error("cannot reach rpcbind: {0}")]
    Connect(std::io::Error),
    #[error("rpc: {0}")]
    Rpc(#[from] RpcError),
    #[error("rpcbind refused the mapping of program {0} version {1}")]
    Refused(u32, u32),
    #[error("program {0} version {1} is registered to port {2}, where a server answers")]
    Taken(u32, u32, u32),
    #[error("bad reply: {0}")]
    Reply(String),
}

async fn call(conn: &Connection, proc_: u32, m: Mapping) -> Result<bool, PortmapError> {
    let reply = conn
        .call(
            PMAP_PROGRAM,
            PMAP_V2,
            proc_,
            &Auth::None,
            &m.to_xdr(),
            TIMEOUT,
        )
        .await?;
    if reply.status != ReplyStatus::Accepted(AcceptStat::Success) {
        return Err(PortmapError::Reply(format!("{:?}", reply.status)));
    }
    bool::decode(&mut Reader::new(reply.body())).map_err(|e| PortmapError::Reply(e.to_string()))
}

async fn connect(rpcbind: SocketAddr) -> Result<Connection, PortmapError> {
    let c = tokio::time::timeout(
        TIMEOUT,
        Connection::connect(rpcbind, Arc::new(RejectCalls), ConnectionLimits::default()),
    )
    .await
    .map_err(|_| PortmapError::Connect(std::io::ErrorKind::TimedOut.into()))?
    .map_err(PortmapError::Connect)?;
    Ok(c)
}

fn mapping(prog: u32, vers: u32, port: u16) -> Mapping {
    Mapping {
        prog,
        vers,
        prot: IPPROTO_TCP,
        port: u32::from(port),
    }
}

/// Maps every program the gateway serves to `port` (TCP). A mapping to another port that
/// something still answers on (knfsd, another gateway) is left alone and the registration
/// refused: taking over a live server's programs would cut its clients off.
pub async fn register(rpcbind: SocketAddr, port: u16) -> Result<(), PortmapError> {
    let c = connect(rpcbind).await?;
    for &(prog, vers) in PROGRAMS {
        let have = getport_on(&c, prog, vers).await?;
        if have != 0 && have != u32::from(port) {
            let there = SocketAddr::new(rpcbind.ip(), have as u16);
            let live = tokio::time::timeout(TIMEOUT, tokio::net::TcpStream::connect(there))
                .await
                .is_ok_and(|r| r.is_ok());
            if live {
                c.close();
                return Err(PortmapError::Taken(prog, vers, have));
            }
        }
        call(&c, PMAPPROC_UNSET, mapping(prog, vers, port)).await?;
        if !call(&c, PMAPPROC_SET, mapping(prog, vers, port)).await? {
            c.close();
            return Err(PortmapError::Refused(prog, vers));
        }
    }
    c.close();
    Ok(())
}

pub async fn unregister(rpcbind: SocketAddr, port: u16) -> Result<(), PortmapError> {
    let c = connect(rpcbind).await?;
    for &(prog, vers) in PROGRAMS {
        call(&c, PMAPPROC_UNSET, mapping(prog, vers, port)).await?;
    }
    c.close();
    Ok(())
}

async fn getport_on(c: &Connection, prog: u32, vers: u32) -> Result<u32, PortmapError> {
    let reply = c
        .call(
            PMAP_PROGRAM,
            PMAP_V2,
            PMAPPROC_GETPORT,
            &Auth::None,
            &mapping(prog, vers, 0).to_xdr(),
            TIMEOUT,
        )
        .await?;
    u32::decode(&mut Reader::new(reply.body())).map_err(|e| PortmapError::Reply(e.to_string()))
}

/// The port rpcbind has for `prog`/`vers` over TCP (0: none).
pub async fn getport(rpcbind: SocketAddr, prog: u32, vers: u32) -> Result<u32, PortmapError> {
    let c = connect(rpcbind).await?;
    let r = getport_on(&c, prog, vers).await;
    c.close();
    r
}
