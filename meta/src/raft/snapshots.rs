//! Snapshots a leader sends this node, received a piece at a time and bounded in total
//! memory (`network::MAX_SNAPSHOT`), until the whole one can be installed.

use std::collections::HashMap;
use std::sync::Mutex;

use proto::peer::{PEER_ERR_CLOSED, PEER_ERR_INVAL};

use super::network::{SnapshotPiece, MAX_SNAPSHOT};
use meta_core::ShardId;

/// Snapshots being received, a piece at a time, bounded in total.
#[derive(Default)]
pub struct IncomingSnapshots {
    by_shard: Mutex<HashMap<u16, Assembly>>,
}

struct Assembly {
    from: u64,
    id: String,
    /// The size the sender announced: what the memory bound counts.
    total: u64,
    buf: Vec<u8>,
}

type Whole = (
    openraft::Vote<u64>,
    openraft::SnapshotMeta<u64, openraft::BasicNode>,
    Vec<u8>,
);

impl IncomingSnapshots {
    /// Adds a piece; the whole snapshot once its last piece is in. A piece out of order (a
    /// resend after a lost reply, or a new leader's snapshot) restarts at offset 0 or is
    /// refused, so the sender starts over.
    pub(crate) fn take(
        &self,
        from: u64,
        shard: ShardId,
        p: SnapshotPiece,
    ) -> Result<Option<Whole>, u32> {
        let mut all = self.by_shard.lock().unwrap_or_else(|e| e.into_inner());
        if p.total > MAX_SNAPSHOT {
            return Err(PEER_ERR_INVAL);
        }
        if p.offset == 0 {
            // Memory bound: all assemblies together stay under MAX_SNAPSHOT.
            let held: u64 = all
                .iter()
                .filter(|(s, _)| **s != shard.0)
                .map(|(_, a)| a.total)
                .sum();
            if held + p.total > MAX_SNAPSHOT {
                return Err(PEER_ERR_CLOSED);
            }
            all.insert(
                shard.0,
                Assembly {
                    from,
                    id: p.id.clone(),
                    total: p.total,
                    // Grown piece by piece: an announced size is not memory to take up front.
                    buf: Vec::with_capacity(p.data.len()),
                },
            );
        }
        let Some(a) = all.get_mut(&shard.0) else {
            return Err(PEER_ERR_INVAL);
        };
        if a.from != from || a.id != p.id || a.buf.len() as u64 != p.offset {
            all.remove(&shard.0);
            return Err(PEER_ERR_INVAL);
        }
        if a.buf.len() + p.data.len() > p.total as usize {
            all.remove(&shard.0);
            return Err(PEER_ERR_INVAL);
        }
        a.buf.extend_from_slice(&p.data);
        match p.done {
            Some((vote, meta)) if a.buf.len() as u64 == p.total => {
                let bytes = all.remove(&shard.0).map(|a| a.buf).unwrap_or_default();
                Ok(Some((vote, meta, bytes)))
            }
            Some(_) => {
                all.remove(&shard.0);
                Err(PEER_ERR_INVAL)
            }
            None => Ok(None),
        }
    }
}
