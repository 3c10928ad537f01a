//! What the shards' Raft groups replicate and answer, and openraft's type configuration.

use serde::{Deserialize, Serialize};

use meta_core::{FsError, Outcome};

/// A command with its proposer's tag: what a shard's log holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tagged {
    pub tag: meta_core::sessions::Tag,
    pub cmd: meta_core::Command,
}

/// One entry of a shard's log: the namespace commands proposed together (group commit: what
/// queued for the shard while its previous entry was being made durable), applied in order,
/// each on its own (a failed one leaves nothing behind and does not stop the others), each at
/// most once however often its proposer sent it (`sessions`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub cmds: Vec<Tagged>,
}

/// What applying a proposal gave, one result per command: the same on every replica (`apply`
/// is deterministic), so a failed command is as much a result as a successful one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply(pub Vec<Result<Outcome, FsError>>);

/// A shard's whole state machine, as a snapshot sent to a replica that fell behind the log
/// (postcard of `machine::Dump`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardDump {
    pub bytes: Vec<u8>,
}

openraft::declare_raft_types!(
    /// The shards' Raft configuration: node ids are the MDS nodes' ids.
    pub Cfg:
        D = Proposal,
        R = Reply,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<Cfg>,
        SnapshotData = ShardDump,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Entry = openraft::Entry<Cfg>;
pub type LogId = openraft::LogId<u64>;
pub type Vote = openraft::Vote<u64>;
pub type Membership = openraft::StoredMembership<u64, openraft::BasicNode>;
pub type StorageError = openraft::StorageError<u64>;
pub type Raft = openraft::Raft<Cfg>;

/// A log write that failed, as openraft wants it reported.
pub fn log_write_err(e: impl std::fmt::Display) -> StorageError {
    openraft::StorageIOError::write_logs(openraft::AnyError::error(e.to_string())).into()
}

/// A vote that could not be made durable.
pub fn vote_write_err(e: impl std::fmt::Display) -> StorageError {
    openraft::StorageIOError::write_vote(openraft::AnyError::error(e.to_string())).into()
}

/// A state machine that could not be read or written (checkpoint, snapshot).
pub fn machine_err(e: impl std::fmt::Display) -> StorageError {
    openraft::StorageIOError::write_state_machine(openraft::AnyError::error(e.to_string())).into()
}
