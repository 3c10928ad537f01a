//! What builds before "encode once" (docs/plans/node-core.md, step 2) wrote into the log and
//! sent as AppendEntries: entries holding their commands decoded (`Proposal { cmds }`). A node
//! of this build still reads such log records (`log::Rec::Entries`) and still answers such
//! AppendEntries (`PEERPROC_APPEND`), and sends them to a node that answers the new procedure
//! with PROC_UNAVAIL (`raft::network`), so a log written before the change replays and a
//! rolling restart replicates throughout.
//!
//! The types mirror the old ones field for field: their encodings are the old ones, pinned in
//! `raft::encodings` (`Rec::Entries`, `AppendEntries`).

use serde::{Deserialize, Serialize};

use openraft::raft::AppendEntriesRequest;
use openraft::EntryPayload;

use super::entry::{Cfg, Entry, Proposal, Reply, ShardDump, Tagged};
use meta_core::FsError;

/// An entry's commands as builds before encode-once held them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OldProposal {
    pub cmds: Vec<Tagged>,
}

openraft::declare_raft_types!(
    /// The old entries' configuration: only ever encoded and decoded, never run.
    pub OldCfg:
        D = OldProposal,
        R = Reply,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<OldCfg>,
        SnapshotData = ShardDump,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type OldEntry = openraft::Entry<OldCfg>;

/// An old entry as this build holds it: its commands encoded once, here.
pub fn upgrade(e: OldEntry) -> Result<Entry, FsError> {
    let payload = match e.payload {
        EntryPayload::Blank => EntryPayload::Blank,
        EntryPayload::Normal(p) => EntryPayload::Normal(Proposal::encode(&p.cmds)?),
        EntryPayload::Membership(m) => EntryPayload::Membership(m),
    };
    Ok(Entry {
        log_id: e.log_id,
        payload,
    })
}

/// This build's entry as an old node wants it.
pub fn downgrade(e: &Entry) -> Result<OldEntry, FsError> {
    let payload = match &e.payload {
        EntryPayload::Blank => EntryPayload::Blank,
        EntryPayload::Normal(p) => EntryPayload::Normal(OldProposal { cmds: p.decode()? }),
        EntryPayload::Membership(m) => EntryPayload::Membership(m.clone()),
    };
    Ok(OldEntry {
        log_id: e.log_id,
        payload,
    })
}

/// An AppendEntries from an old node, as this build's.
pub fn upgrade_append(
    r: AppendEntriesRequest<OldCfg>,
) -> Result<AppendEntriesRequest<Cfg>, FsError> {
    Ok(AppendEntriesRequest {
        vote: r.vote,
        prev_log_id: r.prev_log_id,
        entries: r
            .entries
            .into_iter()
            .map(upgrade)
            .collect::<Result<_, _>>()?,
        leader_commit: r.leader_commit,
    })
}

/// This build's AppendEntries as an old node reads it.
pub fn downgrade_append(
    r: &AppendEntriesRequest<Cfg>,
) -> Result<AppendEntriesRequest<OldCfg>, FsError> {
    Ok(AppendEntriesRequest {
        vote: r.vote,
        prev_log_id: r.prev_log_id,
        entries: r.entries.iter().map(downgrade).collect::<Result<_, _>>()?,
        leader_commit: r.leader_commit,
    })
}
