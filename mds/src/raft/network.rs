//! How a shard's Raft group reaches its other replicas.
//!
//! A one-node cluster has no other replicas: every group's only voter is this node, so openraft
//! never asks for a connection. Multi-node replication sends these messages over the cluster
//! RPC program (not yet: issue 12); until then a connection to another node reports it
//! unreachable, which is what it is.

use openraft::error::{
    Fatal, NetworkError, RPCError, RaftError, ReplicationClosed, StreamingError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, OptionalSend, Snapshot, Vote};

use super::types::Cfg;

/// Connections to the other replicas of the node's shards.
#[derive(Clone, Default)]
pub struct Network;

/// A connection to node `target`.
pub struct Peer {
    target: u64,
}

impl RaftNetworkFactory<Cfg> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, _node: &BasicNode) -> Self::Network {
        Peer { target }
    }
}

fn unreachable(target: u64) -> Unreachable {
    Unreachable::new(&std::io::Error::other(format!(
        "node {target}: replication between MDS nodes is not built yet"
    )))
}

impl RaftNetwork<Cfg> for Peer {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<Cfg>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        Err(RPCError::Unreachable(unreachable(self.target)))
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        Err(RPCError::Unreachable(unreachable(self.target)))
    }

    async fn full_snapshot(
        &mut self,
        _vote: Vote<u64>,
        _snapshot: Snapshot<Cfg>,
        _cancel: impl std::future::Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<u64>, StreamingError<Cfg, Fatal<u64>>> {
        Err(StreamingError::Network(NetworkError::new(
            &std::io::Error::other(format!(
                "node {}: replication between MDS nodes is not built yet",
                self.target
            )),
        )))
    }
}
