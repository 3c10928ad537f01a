//! The MDS peer program: what one metadata server sends another on its NFS port. Raft's
//! messages between the replicas of a shard (append, vote, snapshot chunks) and a command
//! forwarded to its shard's leader. The Raft payloads are the replicas' own business (postcard
//! of openraft's types, opaque here); what this layer fixes is who may send them: every call
//! carries a MAC under a key derived from the cluster secret, and a timestamp that keeps a
//! captured call from being replayed later.

use crate::Xdr;

pub const CFS_PEER_PROGRAM: u32 = 0x2043_4654;
pub const CFS_PEER_V1: u32 = 1;

pub const PEERPROC_NULL: u32 = 0;
/// Raft AppendEntries of one shard.
pub const PEERPROC_APPEND: u32 = 1;
/// Raft RequestVote of one shard.
pub const PEERPROC_VOTE: u32 = 2;
/// A piece of a shard's snapshot, for a replica too far behind for the log.
pub const PEERPROC_SNAPSHOT: u32 = 3;
/// Namespace commands for the shard's leader to replicate and apply.
pub const PEERPROC_PROPOSE: u32 = 4;
/// Which of these files (postcard `Vec<u64>`, at most `MAX_IN_USE` inode numbers) this node's
/// clients have open, or may still reclaim (postcard `Vec<bool>`): an unlinked file's data goes
/// only when no node answers yes.
pub const PEERPROC_IN_USE: u32 = 5;
/// A follower's read barrier (ReadIndex): the shard's leader confirms it still leads and
/// answers the log index the follower must have applied before it reads (postcard
/// `Result<Option<u64>, String>`; empty body).
pub const PEERPROC_READ_INDEX: u32 = 6;
/// Byte-range locks across nodes, to the leader of the file's shard, the lock arbiter
/// (postcard `mds::state::remote::locking::LockCall`, answer `LockAnswer`): may this node's client take (or
/// test) this lock, or this node's client released it.
pub const PEERPROC_LOCK: u32 = 7;
/// From the lock arbiter: which locks this node's clients hold on a file, in-flight requests
/// included (postcard `mds::state::remote::locking::HeldQuery`, answer a list of ranges).
pub const PEERPROC_LOCKS_HELD: u32 = 8;
/// Most locks one PEERPROC_LOCKS_HELD answer lists.
pub const MAX_LOCKS_HELD: usize = 4096;
/// Read delegations across nodes (postcard `mds::state::remote::delegations::DelegCall`, answer
/// `DelegAnswer`): "I am about to delegate this file", "recall yours on this file", "which of
/// these do you still delegate", "a dead node's delegations are gone".
pub const PEERPROC_DELEG: u32 = 9;
/// A maintenance job's hold on a file (postcard `mds::dataservers::holds::HoldCall`, answer
/// `HoldAnswer`): "fence and recall your handles and layouts of this file, and keep writers
/// and jobs off it until I release it or the hold runs out", or "released".
pub const PEERPROC_HOLD: u32 = 10;
/// Share reservations across nodes (postcard `mds::state::remote::shares::ShareCall`, answer
/// `ShareAnswer`): "I am about to open this file denying these", "what do you still deny on
/// these files".
pub const PEERPROC_SHARE: u32 = 11;
/// A snapshot's data quiesce (postcard `mds::state::quiesce::QuiesceCall`, answer
/// `QuiesceAnswer`): "let no write in, recall and fence your RW layouts, until I release you
/// or the hold runs out", or "released".
pub const PEERPROC_SNAP_QUIESCE: u32 = 12;
/// The highest procedure about NFS state (the server's range check).
pub const PEERPROC_LAST_STATE: u32 = PEERPROC_SNAP_QUIESCE;
/// Most files one PEERPROC_DELEG or PEERPROC_SHARE question names.
pub const MAX_DELEG_FILES: usize = 4096;
/// A new MDS node asks to join (`cfs server join`): postcard `JoinRequest` in, `JoinReply`
/// out. The only call accepted from a node not in the address book (`from` 0, `to` 0): its MAC
/// under the cluster secret is the proof that it may join. A node that does not lead shard 0
/// passes it on to the one that does.
pub const PEERPROC_JOIN: u32 = 16;
/// A membership change of one shard (postcard `Change`: promote a node to voter, or remove
/// it), carried out by the shard's leader; another node passes it on to the leader it knows.
pub const PEERPROC_MEMBERSHIP: u32 = 17;
/// "You were drained": sent to a node removed from every shard, so it stops serving.
pub const PEERPROC_DRAINED: u32 = 18;
/// A shard's leadership moves to another of its voters (postcard `mds::raft::handover::Lead`:
/// to the leader, hand it over; from the leader to the voter, campaign now).
pub const PEERPROC_LEAD: u32 = 19;
/// The highest membership procedure (the server's range check).
pub const PEERPROC_LAST_MEMBERSHIP: u32 = PEERPROC_LEAD;
/// Raft AppendEntries of one shard, each entry's commands as the proposer encoded them (a
/// byte string; `PEERPROC_APPEND` carries them decoded). A node of a build without it answers
/// PROC_UNAVAIL, and the sender falls back on `PEERPROC_APPEND` to that node.
pub const PEERPROC_APPEND2: u32 = 20;
/// Most files one PEERPROC_IN_USE asks about.
pub const MAX_IN_USE: usize = 4096;

/// Largest body of one call or reply. The sender keeps under it (at most 8 log entries of at
/// most 96 KiB of commands per AppendEntries; snapshots in pieces of 512 KiB), and it fits the
/// MDS's RPC record limit (1 MiB + 64 KiB).
pub const MAX_PEER_BODY: usize = 1 << 20;

pub const PEER_OK: u32 = 0;
/// Wrong MAC: the sender does not have this cluster's secret.
pub const PEER_ERR_AUTH: u32 = 1;
/// The timestamp is too far from the receiver's clock (replay, or clocks apart).
pub const PEER_ERR_CLOCK: u32 = 2;
/// Not addressed to this node, or a shard this node does not have.
pub const PEER_ERR_WRONG_NODE: u32 = 3;
/// The body does not decode.
pub const PEER_ERR_INVAL: u32 = 4;
/// This node is shutting down.
pub const PEER_ERR_CLOSED: u32 = 5;

#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct PeerArgs {
    /// Milliseconds since the Unix epoch when sent.
    pub timestamp_ms: u64,
    /// Random per call, so two calls in the same millisecond differ.
    pub nonce: u64,
    /// Sending node's id.
    pub from: u64,
    /// Receiving node's id: a call for another node (a stale address) is refused.
    pub to: u64,
    pub shard: u32,
    #[xdr(max = MAX_PEER_BODY)]
    pub body: crate::xdr::Opaque,
    /// Keyed blake3 over the XDR of every field above.
    pub mac: [u8; 32],
}

impl PeerArgs {
    /// The bytes the MAC covers: the XDR of every field but the MAC itself.
    pub fn mac_input(&self) -> Vec<u8> {
        let mut w = crate::xdr::Writer::new();
        use crate::xdr::Xdr;
        self.timestamp_ms.encode(&mut w);
        self.nonce.encode(&mut w);
        self.from.encode(&mut w);
        self.to.encode(&mut w);
        self.shard.encode(&mut w);
        self.body.encode(&mut w);
        w.into_inner()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub enum PeerRes {
    #[xdr(case = PEER_OK)]
    Ok(#[xdr(max = MAX_PEER_BODY)] crate::xdr::Opaque),
    #[xdr(default)]
    Err(u32),
}
