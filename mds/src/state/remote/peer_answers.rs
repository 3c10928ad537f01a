//! This node's answers to other MDS nodes' calls about NFS state: byte-range locks
//! (`PEERPROC_LOCK`, `PEERPROC_LOCKS_HELD`), delegations (`PEERPROC_DELEG`), holds, share
//! reservations and snapshots' data quiesce. Registered with the peer service of `meta` at start (`answer_here`), which
//! routes the procedure numbers here without knowing what they mean. It sits above the files
//! it answers for, so they need not know each other: a delegation recall asked by another node
//! runs this node's recalls (`recall::recall_here`), which in turn ask the delegations table.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use meta::raft::registry::{PeerAnswer, PeerCall, PeerProc};

use super::{holds, shares};
use crate::state::locks::Range;
use crate::state::recall::recall_here;
use crate::state::remote::delegations::{self, forget_node, DelegAnswer, DelegCall};
use crate::state::remote::locking::{decide, held_here, HeldQuery, LockCall, WireRange};
use crate::state::{Access, NfsState};

/// Answers other nodes' calls about locks, delegations, holds and share reservations.
pub struct PeerLockCalls(pub Weak<NfsState>);

/// Registers this node's answers to other nodes' NFS-state calls with the peer service.
pub(crate) fn answer_here(nfs: &Arc<NfsState>) {
    let calls: Arc<dyn PeerProc> = Arc::new(PeerLockCalls(Arc::downgrade(nfs)));
    let procs = nfs.ns.groups().peer_procs();
    for p in [
        proto::peer::PEERPROC_LOCK,
        proto::peer::PEERPROC_LOCKS_HELD,
        proto::peer::PEERPROC_DELEG,
        proto::peer::PEERPROC_HOLD,
        proto::peer::PEERPROC_SHARE,
        proto::peer::PEERPROC_SNAP_QUIESCE,
    ] {
        procs.register(p, calls.clone());
    }
}

impl PeerProc for PeerLockCalls {
    fn answer(&self, call: PeerCall) -> PeerAnswer<'_> {
        let PeerCall {
            proc_, from, body, ..
        } = call;
        Box::pin(async move {
            let Some(nfs) = self.0.upgrade() else {
                return Err(proto::peer::PEER_ERR_CLOSED);
            };
            match proc_ {
                proto::peer::PEERPROC_LOCK => {
                    let call: LockCall =
                        postcard::from_bytes(&body).map_err(|_| proto::peer::PEER_ERR_INVAL)?;
                    let a = decide(&nfs, from, call).await;
                    postcard::to_stdvec(&a).map_err(|_| proto::peer::PEER_ERR_INVAL)
                }
                proto::peer::PEERPROC_DELEG => answer_deleg(&nfs, from, &body).await,
                proto::peer::PEERPROC_HOLD => holds::answer(&nfs, from, &body),
                proto::peer::PEERPROC_SHARE => shares::answer(&nfs, from, &body),
                proto::peer::PEERPROC_SNAP_QUIESCE => {
                    crate::state::quiesce::answer(&nfs, from, &body).await
                }
                proto::peer::PEERPROC_LOCKS_HELD => {
                    let q: HeldQuery =
                        postcard::from_bytes(&body).map_err(|_| proto::peer::PEER_ERR_INVAL)?;
                    let probe = q.probe.map(Range::from);
                    let held: Vec<WireRange> = held_here(&nfs, q.ino, probe.as_ref())
                        .iter()
                        .map(WireRange::from)
                        .collect();
                    if held.len() > proto::peer::MAX_LOCKS_HELD {
                        // The arbiter then counts this node as not answering: the file stays
                        // unsure rather than losing a lock.
                        return Err(proto::peer::PEER_ERR_INVAL);
                    }
                    postcard::to_stdvec(&held).map_err(|_| proto::peer::PEER_ERR_INVAL)
                }
                _ => Err(proto::peer::PEER_ERR_INVAL),
            }
        })
    }
}

/// Answers another node's `PEERPROC_DELEG`.
async fn answer_deleg(nfs: &Arc<NfsState>, from: u64, body: &[u8]) -> Result<Vec<u8>, u32> {
    let c: DelegCall = postcard::from_bytes(body).map_err(|_| proto::peer::PEER_ERR_INVAL)?;
    let a = match c {
        DelegCall::Note { ino, grant, holder } => {
            delegations::noted_elsewhere(nfs, from, ino, grant, holder, false)
        }
        DelegCall::NoteWrite { ino, grant, holder } => {
            delegations::noted_elsewhere(nfs, from, ino, grant, holder, true)
        }
        DelegCall::Recall { ino, except } => {
            let as_of = delegations::asked(nfs);
            let outstanding = recall_here(nfs, ino, except, Access::Change).await;
            DelegAnswer::Recalled { outstanding, as_of }
        }
        DelegCall::RecallWriters { ino, except } => {
            let as_of = delegations::asked(nfs);
            let outstanding = recall_here(nfs, ino, except, Access::Read).await;
            DelegAnswer::Recalled { outstanding, as_of }
        }
        DelegCall::Held { inos } => {
            if inos.len() > proto::peer::MAX_DELEG_FILES {
                return Err(proto::peer::PEER_ERR_INVAL);
            }
            delegations::held_here(nfs, &inos)
        }
        DelegCall::Gone { node, ago_ms } => {
            if let (Some(c), Some(at)) = (
                nfs.cluster(),
                Instant::now().checked_sub(Duration::from_millis(ago_ms)),
            ) {
                // Its layouts went with its clients' reclaims too (`cluster::holds`).
                c.note_gone(node, at);
            }
            // A margin for the call's own time in transit: forget a little less, not more.
            let ago = Duration::from_millis(ago_ms).saturating_sub(Duration::from_secs(1));
            if let Some(before) = Instant::now().checked_sub(ago) {
                forget_node(nfs, node, Some(before));
                shares::node_gone(nfs, node, before);
            }
            DelegAnswer::Done
        }
    };
    postcard::to_stdvec(&a).map_err(|_| proto::peer::PEER_ERR_INVAL)
}
