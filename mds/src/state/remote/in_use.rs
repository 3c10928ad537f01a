//! Which files NFS clients hold open across MDS nodes: this node's answer to another node's
//! `PEERPROC_IN_USE`, and the question asked of every other node before an unlinked file's
//! data goes. A node that does not answer may have the file open, so nobody can then say it
//! is free: the file is kept and asked about again later.

use std::sync::{Arc, Weak};
use std::time::Duration;

use meta::namespace::{Namespace, ShardId};
use meta::raft::registry::{PeerAnswer, PeerCall, PeerProc};
use proto::peer::{MAX_IN_USE, PEERPROC_IN_USE, PEER_ERR_CLOSED, PEER_ERR_INVAL};

use crate::state::NfsState;

/// How long another node may take to say which files its clients hold open.
const IN_USE_WAIT: Duration = Duration::from_secs(3);

/// This node's answer to `PEERPROC_IN_USE`: its clients' opens, and every file while its
/// clients may still reclaim (they reopen unlinked files by handle).
pub(crate) struct InUseHere(pub Weak<NfsState>);

impl PeerProc for InUseHere {
    fn answer(&self, call: PeerCall) -> PeerAnswer<'_> {
        Box::pin(async move {
            let Some(m) = self.0.upgrade() else {
                return Err(PEER_ERR_CLOSED);
            };
            let inos = match postcard::from_bytes::<Vec<u64>>(&call.body) {
                Ok(v) if v.len() <= MAX_IN_USE => v,
                _ => return Err(PEER_ERR_INVAL),
            };
            let reclaiming = m.state.reclaims_open();
            let used: Vec<bool> = inos
                .iter()
                .map(|&i| reclaiming || m.state.file_in_use(i))
                .collect();
            postcard::to_stdvec(&used).map_err(|_| PEER_ERR_INVAL)
        })
    }
}

/// Registers this node's answer with the peer service.
pub(crate) fn answer_here(nfs: &Arc<NfsState>) {
    nfs.ns
        .groups()
        .peer_procs()
        .register(PEERPROC_IN_USE, Arc::new(InUseHere(Arc::downgrade(nfs))));
}

/// Which of `inos` another MDS node's clients hold open (or may reclaim). `None` when a node
/// did not answer: then nobody can say a file is free. One node: nobody else.
pub(crate) async fn elsewhere(ns: &Namespace, inos: &[u64]) -> Option<Vec<bool>> {
    let mut all = vec![false; inos.len()];
    let Some(peers) = ns.peers() else {
        return Some(all);
    };
    for (k, part) in inos.chunks(MAX_IN_USE).enumerate() {
        let body = postcard::to_stdvec(&part.to_vec()).ok()?;
        let first = k * MAX_IN_USE;
        for &node in peers.nodes().keys().filter(|n| **n != peers.me()) {
            let reply = peers
                .call(node, PEERPROC_IN_USE, ShardId(0), body.clone(), IN_USE_WAIT)
                .await;
            let used: Vec<bool> = match reply {
                Ok(b) => postcard::from_bytes(&b).ok()?,
                Err(e) => {
                    tracing::debug!(node, "cannot ask which files are open there: {e}");
                    return None;
                }
            };
            if used.len() != part.len() {
                return None;
            }
            for (i, u) in used.into_iter().enumerate() {
                all[first + i] |= u;
            }
        }
    }
    Some(all)
}
