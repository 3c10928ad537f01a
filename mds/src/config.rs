//! What a caller configures a server with: `ServerConfig` and the types its fields are made
//! of. `cfs` builds these from its config file and flags and hands them to `Server::start`;
//! it reaches nothing else of the server's setup, so the modules these come from stay free to
//! change.
use std::net::SocketAddr;
use std::path::PathBuf;

pub use crate::dataservers::data_key::KeyFiles;
pub use crate::dataservers::reduce::ReducePolicy;
pub use crate::dataservers::ClusterConfig;
pub use crate::export::{check_exports, AddrRange, EcReads, Export, ExportError, SecFlavor};
pub use crate::limits::DEFAULT_LEASE_SECONDS;
pub use crate::tier_set::{TierMode, TierSettings};
pub use meta::raft::network::Members;
pub use meta::raft::node_addr::{valid_domain, NodeAddr, MAX_DOMAIN};
pub use tier::{Credentials as TierCredentials, TierConfig};

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub exports: Vec<Export>,
    pub lease_seconds: u32,
    /// Grant write delegations to sole writers (knfsd does too). Off: read delegations only,
    /// as before (to measure what write delegations buy, or to leave out a client that
    /// misbehaves with them).
    pub write_delegations: bool,
    /// Defaults to the lease time.
    pub grace_seconds: Option<u32>,
    /// With data servers: file data lives on them, and clients get pNFS layouts. Without: the
    /// single-node default, data in the MDS's own chunk store.
    pub cluster: Option<ClusterConfig>,
    /// Bounds on the NFS port's connections.
    pub connections: proto::rpc::ServeLimits,
    /// The MDS nodes of a multi-node metadata cluster (`Members`); `None` for one MDS.
    pub members: Option<Members>,
    /// With `members`: each node's client address, which a surviving node takes over when
    /// its node dies (`addresses`). Empty: clients use the nodes' own addresses only.
    pub client_addresses: std::collections::BTreeMap<u64, SocketAddr>,
    /// `[tier]`: an S3-compatible bucket behind flash, in cache or tiered mode (`tiering`).
    pub tier: Option<TierSettings>,
}
