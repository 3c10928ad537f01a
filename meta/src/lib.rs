//! The metadata service's replicated namespace: the state machine of `meta-core` run on every
//! replica of every shard, each shard a Raft group (openraft) over one durable log per node,
//! checkpointed into redb; and the facade the NFS server uses (`namespace::Namespace`).
//!
//! Architecture invariant: nothing here knows NFS (no stateid, no open, no operation table);
//! `mds` builds on this crate, never the reverse (the crate-arrow test checks it).

pub mod failpoint;
pub mod namespace;
pub mod raft;
pub mod storage;
