//! Answers other MDS nodes' maintenance holds (`cluster::holds`, `PEERPROC_HOLD`): the
//! cluster layer keeps the hold and fences the file's handles; this node's NFS state recalls
//! its layouts of the file and says whether one of its clients may write it.
use std::sync::Arc;
use std::time::Duration;

use crate::dataservers::holds::{HoldAnswer, HoldCall};
use crate::state::NfsState;

/// Answers node `from`'s `PEERPROC_HOLD`.
pub fn answer(nfs: &Arc<NfsState>, from: u64, body: &[u8]) -> Result<Vec<u8>, u32> {
    let c: HoldCall = postcard::from_bytes(body).map_err(|_| proto::peer::PEER_ERR_INVAL)?;
    // Without data servers there is nothing to hold (no layouts, no maintenance).
    let Some(cluster) = nfs.cluster() else {
        return Err(proto::peer::PEER_ERR_INVAL);
    };
    let a = match c {
        HoldCall::Hold { ino, ttl_ms, fence } => {
            if cluster.hold_for(from, ino, Duration::from_millis(ttl_ms), fence) {
                if fence {
                    crate::state::recall::recall_layouts(nfs, ino, None);
                }
                HoldAnswer::Held {
                    in_use: nfs.state.file_writable_by_someone(ino),
                }
            } else {
                HoldAnswer::Refused
            }
        }
        HoldCall::Release { ino } => {
            cluster.release_for(from, ino);
            HoldAnswer::Released
        }
    };
    postcard::to_stdvec(&a).map_err(|_| proto::peer::PEER_ERR_INVAL)
}
