//! How a shard's Raft group reaches its other replicas: openraft's messages, postcard-encoded,
//! in calls of the MDS peer program (`proto::peer`) on the other node's NFS port, MACed with
//! the cluster secret. One connection per peer node carries every shard's messages (calls are
//! multiplexed by xid), so 256 groups heartbeating cost a few hundred small calls a second on
//! one socket, not 256 sockets.
//!
//! AppendEntries go as `PEERPROC_APPEND2`: each entry's commands as the proposer encoded them,
//! copied into the body as they are. A node of an older build answers that PROC_UNAVAIL and is
//! sent `PEERPROC_APPEND` (commands decoded, `storage::legacy`) for `OLD_APPEND_RECHECK`, then
//! asked again, so a rolling restart replicates throughout.
//!
//! A one-node cluster has no peers: every group's only voter is this node, and openraft never
//! asks for a connection.
//!
//! Snapshots travel in `SNAPSHOT_PIECE` (512 KiB) pieces. A node that stops answering is logged
//! once at warn and again when it answers; the retries in between only at debug, and `cfs`'s
//! default log filter drops openraft's per-retry replication warnings.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{
    Fatal, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, ReplicationClosed,
    StreamingError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, OptionalSend, Snapshot, SnapshotMeta, Vote};
use proto::peer::*;
use proto::rpc::{Auth, Connection, ConnectionLimits, RejectCalls};
use proto::xdr::{Opaque, Xdr};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::storage::entry::Cfg;
use crate::storage::legacy;
use meta_core::ShardId;

/// Snapshot bytes per call: half the body limit leaves room for the piece's header.
pub const SNAPSHOT_PIECE: usize = 512 << 10;
/// Largest snapshot a node accepts from a peer (a shard's whole state; about 200 bytes a file,
/// so 2 M files in one shard).
pub const MAX_SNAPSHOT: u64 = 1 << 30;
/// How long a connection attempt to a peer may take before it counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A node that answered `PEERPROC_APPEND2` with PROC_UNAVAIL (a build before it) is sent
/// `PEERPROC_APPEND` for this long, then asked again: a rolling restart may have upgraded it.
const OLD_APPEND_RECHECK: Duration = Duration::from_secs(60);

/// The MDS nodes of the cluster and how to reach them, as this node starts: the config's list,
/// or what the seed answered a join (`raft::members`). Once the shards' memberships are known
/// they are the truth, and `Peers`' address book follows them (`members::follow`).
#[derive(Clone, Debug)]
pub struct Members {
    /// This node's id.
    pub me: u64,
    /// Every node's id and NFS address, this node's included.
    pub nodes: BTreeMap<u64, SocketAddr>,
    pub secret: layout::ClusterSecret,
    /// `Some(shard count)`: this node joined a running service of that many shards (`cfs
    /// server join`). It never initializes a shard nor makes the root; every shard's
    /// membership and state come from its leader.
    pub joined: Option<u16>,
    /// A node down this long hands its voter roles to live learners (`raft::placement`);
    /// `None`: never.
    pub replace_after: Option<std::time::Duration>,
    /// The configured nodes' failure domains (`[cluster] metadata_domains`), by id: written
    /// into the memberships a new service starts with, and the planner's fallback for a node
    /// whose membership entry names none (`members::domains_of`).
    pub domains: BTreeMap<u64, String>,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PeerError {
    #[error("node {0} is not a member of the cluster")]
    Unknown(u64),
    #[error("node {node}: {reason}")]
    Unreachable { node: u64, reason: String },
    #[error("node {node} refused the call (code {code})")]
    Refused { node: u64, code: u32 },
    #[error("node {node}: undecodable reply: {reason}")]
    Garbled { node: u64, reason: String },
    /// Its build does not have the procedure (PROC_UNAVAIL): an older node.
    #[error("node {node} does not serve peer procedure {proc_}")]
    NoProc { node: u64, proc_: u32 },
}

/// One node's connection, shared by every shard's calls to it.
type Slot = Arc<tokio::sync::Mutex<Option<(SocketAddr, Connection)>>>;

/// Connections to the other MDS nodes: one slot per node, so a connect to a node that is down
/// never holds up calls to the others. The address book changes as nodes join and are drained
/// (`set_nodes`); a node's slot is made on its first call.
pub struct Peers {
    /// This node and the secret; `nodes` is the list it started with (see `nodes()`).
    pub members: Members,
    book: std::sync::RwLock<BTreeMap<u64, SocketAddr>>,
    /// The client addresses the memberships name (`node_addr`), by node.
    clients: std::sync::RwLock<BTreeMap<u64, SocketAddr>>,
    conns: std::sync::Mutex<HashMap<u64, Slot>>,
    /// Per node: since when it has not answered (`None` while it does). An outage is logged
    /// once at warn and its end at info; the calls that fail in between only at debug: every
    /// shard's replication retries twice a second, which logged megabytes a minute.
    outages: std::sync::Mutex<HashMap<u64, Option<Instant>>>,
    /// Per node: when it last answered a call (even if only to refuse).
    answered: std::sync::Mutex<HashMap<u64, Instant>>,
    /// Per node: when it last refused `PEERPROC_APPEND2` (see `OLD_APPEND_RECHECK`).
    old_append: std::sync::Mutex<HashMap<u64, Instant>>,
    /// Tests: this node sends AppendEntries as a build before `PEERPROC_APPEND2` did.
    #[cfg(test)]
    only_old_append: std::sync::atomic::AtomicBool,
    nonce: AtomicU64,
}

impl Peers {
    pub fn new(members: Members) -> Arc<Peers> {
        Arc::new(Peers {
            nonce: AtomicU64::new(layout::secret::now_ms() << 16),
            book: std::sync::RwLock::new(members.nodes.clone()),
            clients: Default::default(),
            members,
            conns: Default::default(),
            outages: Default::default(),
            answered: Default::default(),
            old_append: Default::default(),
            #[cfg(test)]
            only_old_append: Default::default(),
        })
    }

    /// Whether node `to` refused `PEERPROC_APPEND2` lately, so gets `PEERPROC_APPEND`.
    fn speaks_old_append(&self, to: u64) -> bool {
        #[cfg(test)]
        if self.only_old_append.load(Ordering::Relaxed) {
            return true;
        }
        let mut old = self.old_append.lock().unwrap_or_else(|e| e.into_inner());
        match old.get(&to) {
            Some(at) if at.elapsed() < OLD_APPEND_RECHECK => true,
            Some(_) => {
                old.remove(&to);
                false
            }
            None => false,
        }
    }

    fn note_old_append(&self, to: u64) {
        let mut old = self.old_append.lock().unwrap_or_else(|e| e.into_inner());
        if old.insert(to, Instant::now()).is_none() {
            tracing::info!(
                node = to,
                "MDS node answers only the old AppendEntries (an older build): sending it those"
            );
        }
    }

    /// Tests: this node sends only `PEERPROC_APPEND`, as a build before `PEERPROC_APPEND2`.
    #[cfg(test)]
    pub(crate) fn send_only_old_append(&self) {
        self.only_old_append.store(true, Ordering::Relaxed);
    }

    /// Whether this node sends node `to` the old AppendEntries (tests).
    #[cfg(test)]
    pub(crate) fn sends_old_append_to(&self, to: u64) -> bool {
        self.speaks_old_append(to)
    }

    pub fn me(&self) -> u64 {
        self.members.me
    }

    /// Every MDS node this node knows now (itself included), and its NFS address.
    pub fn nodes(&self) -> BTreeMap<u64, SocketAddr> {
        self.book.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether node `id` is in the address book (a member, or one joining).
    pub fn knows(&self, id: u64) -> bool {
        self.book
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&id)
    }

    /// Replaces the address book (from the shards' memberships); whether it changed.
    pub fn set_nodes(&self, nodes: BTreeMap<u64, SocketAddr>) -> bool {
        let mut book = self.book.write().unwrap_or_else(|e| e.into_inner());
        if *book == nodes {
            return false;
        }
        *book = nodes;
        true
    }

    /// The client address of every node whose membership entry names one (`node_addr`).
    pub fn client_addresses(&self) -> BTreeMap<u64, SocketAddr> {
        self.clients
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the client addresses (from the shards' memberships).
    pub fn set_client_addresses(&self, clients: BTreeMap<u64, SocketAddr>) {
        *self.clients.write().unwrap_or_else(|e| e.into_inner()) = clients;
    }

    /// Adds node `id` at `addr` unless the book has it.
    pub fn learn(&self, id: u64, addr: SocketAddr) {
        self.book
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id)
            .or_insert(addr);
    }

    fn slot(&self, to: u64) -> Slot {
        self.conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(to)
            .or_default()
            .clone()
    }

    async fn connection(&self, to: u64) -> Result<Connection, PeerError> {
        if to == self.members.me {
            return Err(PeerError::Unknown(to));
        }
        let addr = *self
            .book
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&to)
            .ok_or(PeerError::Unknown(to))?;
        let slot = self.slot(to);
        let mut slot = slot.lock().await;
        if let Some((at, c)) = slot.as_ref() {
            // A node given again under a new address (a drained id given to a new node)
            // gets a new connection.
            if !c.is_closed() && *at == addr {
                return Ok(c.clone());
            }
        }
        let c = connect(to, addr).await?;
        *slot = Some((addr, c.clone()));
        Ok(c)
    }

    /// One call of the peer program to whatever listens at `addr` (a seed this node has no
    /// id for yet, or a node no longer in the address book), on a connection of its own.
    pub async fn call_at(
        secret: &layout::ClusterSecret,
        from: u64,
        (to, addr): (u64, SocketAddr),
        proc_: u32,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, PeerError> {
        let conn = connect(to, addr).await?;
        let args = signed_args(secret, from, to, 0, now_nonce(), body);
        let r = exchange(&conn, to, proc_, &args, timeout).await;
        conn.close();
        r
    }

    /// One call of the peer program to node `to`; the reply's body, or why there is none.
    /// Since when node `id` has not answered this node's calls (`None`: it answered the last
    /// one, or was never called).
    pub fn down_since(&self, id: u64) -> Option<Instant> {
        let all = self.outages.lock().unwrap_or_else(|e| e.into_inner());
        all.get(&id).copied().flatten()
    }

    /// When node `id` last answered one of this node's calls (`None`: never, since start).
    pub fn last_answer(&self, id: u64) -> Option<Instant> {
        let all = self.answered.lock().unwrap_or_else(|e| e.into_inner());
        all.get(&id).copied()
    }

    pub async fn call(
        &self,
        to: u64,
        proc_: u32,
        shard: ShardId,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, PeerError> {
        let r = self.call_once(to, proc_, shard, body, timeout).await;
        self.note_outcome(to, &r);
        r
    }

    /// Logs the start of an outage of node `to` once (warn) and its end (info); the failed
    /// calls in between at debug.
    fn note_outcome(&self, to: u64, r: &Result<Vec<u8>, PeerError>) {
        if matches!(
            r,
            Ok(_)
                | Err(PeerError::Refused { .. }
                    | PeerError::Garbled { .. }
                    | PeerError::NoProc { .. })
        ) {
            self.answered
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(to, Instant::now());
        }
        let mut all = self.outages.lock().unwrap_or_else(|e| e.into_inner());
        let since = all.entry(to).or_default();
        match (r, *since) {
            (Err(e @ PeerError::Unreachable { .. }), None) => {
                *since = Some(Instant::now());
                tracing::warn!(
                    node = to,
                    "MDS node unreachable ({e}); calls to it are retried, logged at debug until it answers"
                );
            }
            (Err(e @ PeerError::Unreachable { .. }), Some(_)) => {
                tracing::debug!(node = to, "MDS node still unreachable: {e}");
            }
            // It answered, even if only to refuse: it is up.
            (_, Some(t)) => {
                *since = None;
                tracing::info!(
                    node = to,
                    after_s = t.elapsed().as_secs(),
                    "MDS node reachable again"
                );
            }
            (_, None) => {}
        }
    }

    async fn call_once(
        &self,
        to: u64,
        proc_: u32,
        shard: ShardId,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, PeerError> {
        let args = signed_args(
            &self.members.secret,
            self.members.me,
            to,
            u32::from(shard.0),
            self.nonce.fetch_add(1, Ordering::Relaxed),
            body,
        );
        let conn = self.connection(to).await?;
        exchange(&conn, to, proc_, &args, timeout).await
    }
}

fn now_nonce() -> u64 {
    layout::secret::now_ms() << 16 ^ u64::from(std::process::id())
}

fn signed_args(
    secret: &layout::ClusterSecret,
    from: u64,
    to: u64,
    shard: u32,
    nonce: u64,
    body: Vec<u8>,
) -> PeerArgs {
    let mut args = PeerArgs {
        timestamp_ms: layout::secret::now_ms(),
        nonce,
        from,
        to,
        shard,
        body: Opaque(body),
        mac: [0; 32],
    };
    args.mac = secret.peer_mac(&args);
    args
}

async fn connect(to: u64, addr: SocketAddr) -> Result<Connection, PeerError> {
    let limits = ConnectionLimits {
        max_record: MAX_PEER_BODY + (64 << 10),
        max_in_flight: 256,
    };
    tokio::time::timeout(
        CONNECT_TIMEOUT,
        Connection::connect(addr, Arc::new(RejectCalls), limits),
    )
    .await
    .map_err(|_| PeerError::Unreachable {
        node: to,
        reason: format!("connect to {addr} timed out"),
    })?
    .map_err(|e| PeerError::Unreachable {
        node: to,
        reason: format!("connect to {addr}: {e}"),
    })
}

async fn exchange(
    conn: &Connection,
    to: u64,
    proc_: u32,
    args: &PeerArgs,
    timeout: Duration,
) -> Result<Vec<u8>, PeerError> {
    let reply = conn
        .call(
            CFS_PEER_PROGRAM,
            CFS_PEER_V1,
            proc_,
            &Auth::None,
            &args.to_xdr(),
            timeout,
        )
        .await;
    match reply {
        Ok(r) => match PeerRes::from_xdr(r.body()) {
            Ok(PeerRes::Ok(b)) => Ok(b.0),
            Ok(PeerRes::Err(code)) => Err(PeerError::Refused { node: to, code }),
            Err(e) => Err(PeerError::Garbled {
                node: to,
                reason: e.to_string(),
            }),
        },
        // An answer, from a build without the procedure: the connection is fine.
        Err(proto::rpc::RpcError::NotAccepted(proto::rpc::ReplyStatus::Accepted(
            proto::rpc::AcceptStat::ProcUnavail,
        ))) => Err(PeerError::NoProc { node: to, proc_ }),
        Err(e) => {
            // A timeout or a broken socket: the next call reconnects.
            conn.close();
            Err(PeerError::Unreachable {
                node: to,
                reason: e.to_string(),
            })
        }
    }
}

/// A piece of a shard's snapshot on its way to a replica (`PEERPROC_SNAPSHOT`). The last
/// piece carries what the receiver needs to install it.
#[derive(Debug, Serialize, Deserialize)]
pub struct SnapshotPiece {
    /// Identifies the snapshot being sent, so pieces of two snapshots never mix.
    pub id: String,
    pub offset: u64,
    pub total: u64,
    pub data: Vec<u8>,
    /// On the last piece only.
    pub done: Option<(Vote<u64>, SnapshotMeta<u64, BasicNode>)>,
}

/// The factory openraft asks for connections to the replicas of one shard.
#[derive(Clone)]
pub struct Network {
    peers: Option<Arc<Peers>>,
    shard: ShardId,
}

impl Network {
    pub fn new(peers: Option<Arc<Peers>>, shard: ShardId) -> Network {
        Network { peers, shard }
    }
}

/// A connection to node `target` for one shard's messages.
pub struct Peer {
    peers: Option<Arc<Peers>>,
    shard: ShardId,
    target: u64,
}

impl RaftNetworkFactory<Cfg> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Self::Network {
        // A node just added to this shard (a join) may not be in the address book yet.
        if let (Some(p), Some(addr)) = (&self.peers, super::node_addr::NodeAddr::parse(&node.addr))
        {
            p.learn(target, addr.peer);
        }
        Peer {
            peers: self.peers.clone(),
            shard: self.shard,
            target,
        }
    }
}

type RpcErr = RPCError<u64, BasicNode, RaftError<u64>>;

fn rpc_err(e: PeerError) -> RpcErr {
    match e {
        PeerError::Unreachable { .. } | PeerError::Unknown(_) => {
            RPCError::Unreachable(Unreachable::new(&e))
        }
        _ => RPCError::Network(NetworkError::new(&e)),
    }
}

/// The peer's `Result<Resp, RaftError>`, from its answer's bytes. (The error is openraft's,
/// as `RaftNetwork` returns it: its size is not ours to choose.)
#[allow(clippy::result_large_err)]
fn decode_answer<Resp: for<'de> Deserialize<'de>>(
    target: u64,
    answer: &[u8],
) -> Result<Resp, RpcErr> {
    let decoded: Result<Resp, RaftError<u64>> =
        postcard::from_bytes(answer).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
    decoded.map_err(|e| RPCError::RemoteError(RemoteError::new(target, e)))
}

impl Peer {
    #[allow(clippy::result_large_err)]
    fn peers(&self) -> Result<&Arc<Peers>, RpcErr> {
        self.peers.as_ref().ok_or_else(|| {
            RPCError::Unreachable(Unreachable::new(&PeerError::Unknown(self.target)))
        })
    }

    /// Sends `req` and decodes the peer's `Result<Resp, RaftError>`.
    async fn exchange<Req: Serialize, Resp: for<'de> Deserialize<'de>>(
        &self,
        proc_: u32,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RpcErr> {
        let peers = self.peers()?;
        let body =
            postcard::to_stdvec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let answer = peers
            .call(self.target, proc_, self.shard, body, option.hard_ttl())
            .await
            .map_err(rpc_err)?;
        decode_answer(self.target, &answer)
    }
}

impl RaftNetwork<Cfg> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<Cfg>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RpcErr> {
        // Entries are batches of at most 128 KiB of commands: when many big ones queue up,
        // openraft resends with fewer.
        let size = postcard::experimental::serialized_size(&rpc).unwrap_or(usize::MAX);
        if size > MAX_PEER_BODY && rpc.entries.len() > 1 {
            let fewer = (rpc.entries.len() as u64 / 2).max(1);
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(fewer),
            ));
        }
        let peers = self.peers()?;
        if !peers.speaks_old_append(self.target) {
            // The entries' commands go as the proposer encoded them, into a buffer of the
            // body's size.
            let body = postcard::to_extend(&rpc, Vec::with_capacity(size))
                .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
            let r = peers
                .call(
                    self.target,
                    PEERPROC_APPEND2,
                    self.shard,
                    body,
                    option.hard_ttl(),
                )
                .await;
            match r {
                Err(PeerError::NoProc { .. }) => peers.note_old_append(self.target),
                r => return decode_answer(self.target, &r.map_err(rpc_err)?),
            }
        }
        // An older node: its AppendEntries, commands decoded (no larger than the new form,
        // which adds a length to each entry's commands).
        let old =
            legacy::downgrade_append(&rpc).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        self.exchange(PEERPROC_APPEND, &old, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RpcErr> {
        self.exchange(PEERPROC_VOTE, &rpc, &option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote<u64>,
        snapshot: Snapshot<Cfg>,
        cancel: impl std::future::Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<u64>, StreamingError<Cfg, Fatal<u64>>> {
        let send = async {
            let bytes = &snapshot.snapshot.bytes;
            let total = bytes.len() as u64;
            let id = snapshot.meta.snapshot_id.clone();
            let mut offset = 0usize;
            loop {
                let end = (offset + SNAPSHOT_PIECE).min(bytes.len());
                let last = end == bytes.len();
                let piece = SnapshotPiece {
                    id: id.clone(),
                    offset: offset as u64,
                    total,
                    data: bytes[offset..end].to_vec(),
                    done: last.then(|| (vote, snapshot.meta.clone())),
                };
                let reply: Option<SnapshotResponse<u64>> = self
                    .exchange(PEERPROC_SNAPSHOT, &piece, &option)
                    .await
                    .map_err(|e| match e {
                        RPCError::Unreachable(u) => StreamingError::Unreachable(u),
                        RPCError::RemoteError(r) => StreamingError::Network(NetworkError::new(&r)),
                        other => StreamingError::Network(NetworkError::new(&other)),
                    })?;
                if last {
                    return reply.ok_or_else(|| {
                        StreamingError::Network(NetworkError::new(&std::io::Error::other(
                            "the last snapshot piece got no answer",
                        )))
                    });
                }
                offset = end;
            }
        };
        tokio::select! {
            r = send => r,
            closed = cancel => Err(StreamingError::Closed(closed)),
        }
    }
}
