//! `NfsState`: the one owner of the NFS state this node keeps, its own clients' (`StateManager`)
//! and the cross-node half (`remote`), with the few node facts that state needs (the namespace,
//! the data servers, how handles are made, the lease and grace). The functions of this folder
//! take it, never the whole server, so the state sits below the NFS protocol that uses it.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use meta::namespace::Namespace;

use super::remote::{delegations::RemoteDelegations, locking::ClusterLocks, shares::RemoteShares};
use super::StateManager;
use crate::dataservers::Cluster;
use crate::fh::Handles;

pub struct NfsState {
    /// The replicated namespace (a handle: shared with the server).
    pub ns: Namespace,
    /// This node's clients, sessions, opens, locks, delegations and layouts.
    pub state: StateManager,
    /// How handles are made, for callbacks about a file (`recall`).
    pub handles: Arc<Handles>,
    /// The data servers, when file data lives on them (layouts to recall, files to fence).
    pub cluster: Option<Arc<Cluster>>,
    /// This node's id in a metadata cluster (0: the one-node service): whose client records
    /// it keeps (`Command::ClientRecords`).
    pub node: u8,
    pub lease_seconds: u32,
    /// Whether sole writers get write delegations (`ServerConfig::write_delegations`).
    pub write_delegations: bool,
    /// How long clients may reclaim after a restart or a takeover.
    pub grace: Duration,
    /// The client addresses this node answers on now (its own, and those it took over;
    /// `remote::addresses`), for `cfs admin status`.
    pub serving: std::sync::Mutex<Vec<SocketAddr>>,
    /// Byte-range locks across MDS nodes: requests in flight, and the arbiter's views of the
    /// files of the shards this node leads.
    pub locks: ClusterLocks,
    /// Where other MDS nodes may have delegated files, and this node's operations that
    /// conflict with a new delegation.
    pub remote_delegs: RemoteDelegations,
    /// Other MDS nodes' deny bits on files, and this node's opens in flight.
    pub remote_shares: RemoteShares,
    /// Serialises callbacks (each back channel has one slot).
    pub callback_lock: tokio::sync::Mutex<()>,
    /// The LAYOUTCOMMITs being carried out, which a CLOSE of their file waits for.
    pub commits: Arc<super::commits::CommitsInFlight>,
    /// Changes this node answered DELAY: their retries run as the same client requests.
    pub delayed: super::delayed::DelayedRequests,
    /// The gate content changes pass, shut while a snapshot is cut (`quiesce`).
    pub quiesce: super::quiesce::Quiescer,
}

impl NfsState {
    /// The data servers, when file data lives on them.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.as_ref()
    }

    /// Whether this node grants write delegations (`ServerConfig::write_delegations`). With
    /// data servers, a holder's writes through its layout reach the MDS's size only at its
    /// LAYOUTCOMMIT, which Linux need not send before DELEGRETURN: a returned one settles
    /// first (`settle`).
    pub fn grants_write_delegations(&self) -> bool {
        self.write_delegations
    }
}
