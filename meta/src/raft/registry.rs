//! Who answers the peer procedures that replication does not own. The peer service
//! (`service`) answers Raft's own calls itself (append, vote, snapshot, read index, membership,
//! hand-over, join, drained) and hands every other known procedure to the handler registered
//! for it: the namespace registers `PEERPROC_PROPOSE`, the NFS server its state calls (locks,
//! delegations, holds, share reservations, files in use). So this crate routes numbers and
//! never learns what an open or a lock is.
//!
//! A procedure with no handler yet (the NFS server registers its own once it has started)
//! answers `PEER_ERR_CLOSED`: the caller tries again later, as it does for a node that is
//! still starting. Handlers hold weak references to their owners: the registry lives as long
//! as the node's groups, and a strong one would keep a closed namespace open.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use meta_core::ShardId;

/// One peer call that reached its handler: checked already (the cluster's MAC, a fresh clock,
/// addressed to this node by a node it knows, about a shard it holds).
#[derive(Debug, Clone)]
pub struct PeerCall {
    pub proc_: u32,
    pub from: u64,
    pub shard: ShardId,
    pub body: Vec<u8>,
}

/// A handler's answer: the reply body, or a `proto::peer` error code.
pub type PeerAnswer<'a> = Pin<Box<dyn Future<Output = Result<Vec<u8>, u32>> + Send + 'a>>;

/// Answers the calls of the procedures it is registered for.
pub trait PeerProc: Send + Sync {
    fn answer(&self, call: PeerCall) -> PeerAnswer<'_>;
}

/// The handlers, by procedure number.
#[derive(Default)]
pub struct PeerProcs {
    by_proc: RwLock<HashMap<u32, Arc<dyn PeerProc>>>,
}

impl PeerProcs {
    /// `handler` answers `proc_` from now on (in place of any earlier one).
    pub fn register(&self, proc_: u32, handler: Arc<dyn PeerProc>) {
        let mut m = self.by_proc.write().unwrap_or_else(|e| e.into_inner());
        m.insert(proc_, handler);
    }

    pub(crate) fn get(&self, proc_: u32) -> Option<Arc<dyn PeerProc>> {
        let m = self.by_proc.read().unwrap_or_else(|e| e.into_inner());
        m.get(&proc_).cloned()
    }
}
