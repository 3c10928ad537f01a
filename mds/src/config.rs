//! What a server is started with (`Server::start`).
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::dataservers;
use crate::export::Export;
use meta::raft;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub exports: Vec<Export>,
    pub lease_seconds: u32,
    /// Defaults to the lease time.
    pub grace_seconds: Option<u32>,
    /// With data servers: file data lives on them, and clients get pNFS layouts. Without: the
    /// single-node default, data in the MDS's own chunk store.
    pub cluster: Option<dataservers::ClusterConfig>,
    /// Bounds on the NFS port's connections.
    pub connections: proto::rpc::ServeLimits,
    /// The MDS nodes of a multi-node metadata cluster (`raft::network::Members`); `None`
    /// for one MDS.
    pub members: Option<raft::network::Members>,
    /// With `members`: each node's client address, which a surviving node takes over when
    /// its node dies (`addresses`). Empty: clients use the nodes' own addresses only.
    pub client_addresses: std::collections::BTreeMap<u64, SocketAddr>,
}
