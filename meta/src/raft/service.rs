//! The peer program on an MDS (`proto::peer`): Raft messages for this node's replicas of the
//! shards, answered here, and every other procedure (commands forwarded to the shards this
//! node leads, NFS state) handed to the handler registered for it (`registry`). Nothing is
//! decoded past the MAC check: a caller without the cluster secret gets a refusal and costs one
//! keyed hash.

use openraft::raft::{AppendEntriesRequest, VoteRequest};
use openraft::Snapshot;
use proto::peer::*;
use proto::rpc::{accepted_reply, AcceptStat, Auth, Call};
use proto::xdr::{Opaque, Writer, Xdr};
use serde::Serialize;

use super::groups::Groups;
use super::network::SnapshotPiece;
use super::registry::PeerCall;
use crate::storage::entry::Cfg;
use crate::storage::entry::ShardDump;
use crate::storage::legacy::{self, OldCfg};
use meta_core::ShardId;

/// Answers one call of the peer program.
pub async fn handle(groups: &Groups, call: &Call) -> Writer {
    if call.vers != CFS_PEER_V1 {
        return accepted_reply(
            call.xid,
            &Auth::None,
            AcceptStat::ProgMismatch {
                low: CFS_PEER_V1,
                high: CFS_PEER_V1,
            },
        );
    }
    if groups.peers().is_none() {
        // A one-node cluster has no peers to hear from.
        return accepted_reply(call.xid, &Auth::None, AcceptStat::ProgUnavail);
    }
    if call.proc_ > PEERPROC_LAST_STATE
        && !(PEERPROC_JOIN..=PEERPROC_LAST_MEMBERSHIP).contains(&call.proc_)
        && call.proc_ != PEERPROC_APPEND2
    {
        return accepted_reply(call.xid, &Auth::None, AcceptStat::ProcUnavail);
    }
    let res = match PeerArgs::from_xdr(call.args()) {
        Ok(a) => answer(groups, call.proc_, a).await,
        Err(_) => return accepted_reply(call.xid, &Auth::None, AcceptStat::GarbageArgs),
    };
    let mut w = accepted_reply(call.xid, &Auth::None, AcceptStat::Success);
    w.buf.extend_from_slice(&res.to_xdr());
    w
}

fn ok<T: Serialize>(v: &T) -> PeerRes {
    match postcard::to_stdvec(v) {
        Ok(b) if b.len() <= MAX_PEER_BODY => PeerRes::Ok(Opaque(b)),
        _ => PeerRes::Err(PEER_ERR_INVAL),
    }
}

async fn answer(groups: &Groups, proc_: u32, a: PeerArgs) -> PeerRes {
    let Some(peers) = groups.peers() else {
        return PeerRes::Err(PEER_ERR_WRONG_NODE);
    };
    let secret = &peers.members.secret;
    if !secret.peer_authentic(&a) {
        tracing::warn!(from = a.from, "peer call refused: wrong MAC");
        return PeerRes::Err(PEER_ERR_AUTH);
    }
    if !layout::secret::fresh(a.timestamp_ms, layout::secret::now_ms()) {
        tracing::warn!(from = a.from, "peer call refused: clocks differ too much");
        return PeerRes::Err(PEER_ERR_CLOCK);
    }
    if proc_ == PEERPROC_JOIN {
        // From a node with no id yet: the MAC was the check.
        return ok(&super::members::answer_join(groups, &a.body.0).await);
    }
    if a.to != peers.me() || !peers.knows(a.from) {
        return PeerRes::Err(PEER_ERR_WRONG_NODE);
    }
    let Ok(shard) = u16::try_from(a.shard).map(ShardId) else {
        return PeerRes::Err(PEER_ERR_WRONG_NODE);
    };
    let Some(raft) = groups.raft_of(shard) else {
        return PeerRes::Err(PEER_ERR_WRONG_NODE);
    };
    let body = &a.body.0;
    match proc_ {
        PEERPROC_NULL => PeerRes::Ok(Opaque::default()),
        PEERPROC_APPEND2 => match postcard::from_bytes::<AppendEntriesRequest<Cfg>>(body) {
            Ok(req) => ok(&raft.append_entries(req).await),
            Err(_) => PeerRes::Err(PEER_ERR_INVAL),
        },
        // From a node of a build before PEERPROC_APPEND2 (a rolling restart): its entries'
        // commands encoded here, as this node's proposer would have.
        PEERPROC_APPEND => match postcard::from_bytes::<AppendEntriesRequest<OldCfg>>(body)
            .ok()
            .and_then(|r| legacy::upgrade_append(r).ok())
        {
            Some(req) => ok(&raft.append_entries(req).await),
            None => PeerRes::Err(PEER_ERR_INVAL),
        },
        PEERPROC_VOTE => match postcard::from_bytes::<VoteRequest<u64>>(body) {
            Ok(req) => ok(&raft.vote(req).await),
            Err(_) => PeerRes::Err(PEER_ERR_INVAL),
        },
        PEERPROC_SNAPSHOT => match postcard::from_bytes::<SnapshotPiece>(body) {
            Ok(piece) => {
                let whole = match groups.incoming_snapshots().take(a.from, shard, piece) {
                    Ok(w) => w,
                    Err(code) => return PeerRes::Err(code),
                };
                let Some((vote, meta, bytes)) = whole else {
                    return ok(&Ok::<_, openraft::error::RaftError<u64>>(None::<()>));
                };
                let snapshot = Snapshot {
                    meta,
                    snapshot: Box::new(ShardDump { bytes }),
                };
                let r = raft
                    .install_full_snapshot(vote, snapshot)
                    .await
                    .map(Some)
                    .map_err(openraft::error::RaftError::<u64>::Fatal);
                ok(&r)
            }
            Err(_) => PeerRes::Err(PEER_ERR_INVAL),
        },
        PEERPROC_READ_INDEX => ok(&super::fresh::read_index(groups, &raft, shard).await),
        PEERPROC_MEMBERSHIP => ok(&super::members::answer_change(groups, shard, body).await),
        PEERPROC_LEAD => ok(&super::handover::answer(groups, shard, body).await),
        PEERPROC_DRAINED => {
            // Only a node still in the address book gets here; a drain's last step.
            tracing::warn!(
                by = a.from,
                "this MDS node was drained from the metadata service"
            );
            groups.mark_drained();
            PeerRes::Ok(Opaque::default())
        }
        // Everything else that is known goes to its registered handler (`registry`).
        _ => match groups.peer_procs().get(proc_) {
            Some(h) => {
                let call = PeerCall {
                    proc_,
                    from: a.from,
                    shard,
                    body: a.body.0,
                };
                match h.answer(call).await {
                    Ok(b) if b.len() <= MAX_PEER_BODY => PeerRes::Ok(Opaque(b)),
                    Ok(_) => PeerRes::Err(PEER_ERR_INVAL),
                    Err(code) => PeerRes::Err(code),
                }
            }
            // Not registered yet (the NFS server registers its own once it has started): the
            // caller tries again, as with a node still starting.
            None => PeerRes::Err(PEER_ERR_CLOSED),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::network::Members;

    fn args(secret: &layout::ClusterSecret, to: u64, ts: u64) -> PeerArgs {
        let mut a = PeerArgs {
            timestamp_ms: ts,
            nonce: 1,
            from: 2,
            to,
            shard: 0,
            body: Opaque(vec![1, 2, 3]),
            mac: [0; 32],
        };
        a.mac = secret.peer_mac(&a);
        a
    }

    /// Only a node with the cluster secret, a fresh timestamp and this node as the addressee
    /// gets past the check; nothing is decoded before it.
    #[test]
    fn peer_calls_need_the_secret_a_fresh_stamp_and_the_right_addressee() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let secret = layout::ClusterSecret::from_passphrase("peer test secret 0123").unwrap();
            let other = layout::ClusterSecret::from_passphrase("another secret 0123456").unwrap();
            let nodes = [
                (1, "127.0.0.1:9".parse().unwrap()),
                (2, "127.0.0.1:10".parse().unwrap()),
            ];
            let opts = crate::namespace::Options {
                shards: 1,
                members: Some(Members {
                    me: 1,
                    nodes: nodes.into_iter().collect(),
                    secret: secret.clone(),
                    joined: None,
                    replace_after: None,
                    domains: Default::default(),
                }),
                ..Default::default()
            };
            let ns = crate::namespace::Namespace::open_with(dir.path(), opts)
                .await
                .unwrap();
            let groups = ns.groups();
            let now = layout::secret::now_ms();
            let code = |r: PeerRes| match r {
                PeerRes::Err(c) => c,
                PeerRes::Ok(_) => PEER_OK,
            };
            assert_eq!(
                code(answer(groups, PEERPROC_NULL, args(&other, 1, now)).await),
                PEER_ERR_AUTH
            );
            let mut forged = args(&secret, 1, now);
            forged.body = Opaque(vec![9]);
            assert_eq!(
                code(answer(groups, PEERPROC_NULL, forged).await),
                PEER_ERR_AUTH
            );
            let old = now - 10 * 60 * 1000;
            assert_eq!(
                code(answer(groups, PEERPROC_NULL, args(&secret, 1, old)).await),
                PEER_ERR_CLOCK
            );
            assert_eq!(
                code(answer(groups, PEERPROC_NULL, args(&secret, 3, now)).await),
                PEER_ERR_WRONG_NODE
            );
            assert_eq!(
                code(answer(groups, PEERPROC_NULL, args(&secret, 1, now)).await),
                PEER_OK
            );
            // A join is accepted from a node with no id yet (from and to 0), but only with the
            // cluster's secret: a wrong token is refused before anything is decoded.
            assert_eq!(
                code(answer(groups, PEERPROC_JOIN, args(&other, 0, now)).await),
                PEER_ERR_AUTH
            );
            // Authentic but undecodable: a protocol error, not a panic.
            assert_eq!(
                code(answer(groups, PEERPROC_APPEND, args(&secret, 1, now)).await),
                PEER_ERR_INVAL
            );
            assert_eq!(
                code(answer(groups, PEERPROC_PROPOSE, args(&secret, 1, now)).await),
                PEER_ERR_INVAL
            );
            ns.close().await;
        });
    }
}
