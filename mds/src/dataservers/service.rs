//! The cluster control program on the MDS's port: DS heartbeats, DS reports of bad copies, and
//! the operator's status query.
use std::sync::atomic::Ordering;

use proto::cluster::*;
use proto::rpc::{accepted_reply, AcceptStat, Auth, Call};
use proto::xdr::{Writer, Xdr};

use layout::uaddr::{netid_for, to_uaddr};
use layout::DsId;
use proto::nfs4::basic::Netaddr4;
use proto::xdr::Opaque;

use super::registry::Refused;
use super::Cluster;
use meta::namespace::Namespace;

/// Answers one call of the cluster program; `None` in `cluster` means this MDS runs alone, and
/// the program is then unavailable. `ns` gives the metadata nodes a heartbeat reply lists.
pub fn handle(cluster: Option<&Cluster>, ns: &Namespace, call: &Call) -> Writer {
    let Some(cluster) = cluster else {
        return accepted_reply(call.xid, &Auth::None, AcceptStat::ProgUnavail);
    };
    if call.vers != CFS_CLUSTER_V1 {
        return accepted_reply(
            call.xid,
            &Auth::None,
            AcceptStat::ProgMismatch {
                low: CFS_CLUSTER_V1,
                high: CFS_CLUSTER_V1,
            },
        );
    }
    let res: Vec<u8> = match call.proc_ {
        CLUSTERPROC_NULL => Vec::new(),
        CLUSTERPROC_HEARTBEAT => match HeartbeatArgs::from_xdr(call.args()) {
            Ok(a) => heartbeat(cluster, ns, &a).to_xdr(),
            Err(_) => return accepted_reply(call.xid, &Auth::None, AcceptStat::GarbageArgs),
        },
        // A data server assembling a reduced file's reads asks for its recipe.
        CLUSTERPROC_RECIPE => return super::reduced_reads::recipe(cluster, ns, call),
        CLUSTERPROC_RECIPE_PART => return super::reduced_reads::recipe_part(cluster, ns, call),
        CLUSTERPROC_STATUS => match StatusArgs::from_xdr(call.args()) {
            Ok(a) if !cluster.cfg.secret.status_authentic(&a) => refuse(CLUSTER_ERR_AUTH),
            Ok(a) if !layout::secret::fresh(a.timestamp_ms, layout::secret::now_ms()) => {
                refuse(CLUSTER_ERR_CLOCK)
            }
            Ok(_) => StatusRes::Ok(status(cluster, ns)).to_xdr(),
            // No arguments (an older `cfs admin status`): the caller has not shown the secret.
            Err(_) => refuse(CLUSTER_ERR_AUTH),
        },
        _ => return accepted_reply(call.xid, &Auth::None, AcceptStat::ProcUnavail),
    };
    let mut w = accepted_reply(call.xid, &Auth::None, AcceptStat::Success);
    w.buf.extend_from_slice(&res);
    w
}

/// A DS reports copies that failed verification there. Each named file stops counting that DS
/// as a mirror (durably) and is queued for repair; the reply lists what could not be acted on
/// yet, for the DS to report again.
pub async fn bad_chunks(cluster: &Cluster, ns: &Namespace, call: &Call) -> Writer {
    let res = match BadChunksArgs::from_xdr(call.args()) {
        Err(_) => return accepted_reply(call.xid, &Auth::None, AcceptStat::GarbageArgs),
        Ok(a) if !cluster.cfg.secret.bad_chunks_authentic(&a) => {
            tracing::warn!(ds = %DsId(a.ds_id), "bad chunk report refused: wrong MAC");
            BadChunksRes::Err(CLUSTER_ERR_AUTH)
        }
        Ok(a) if !layout::secret::fresh(a.timestamp_ms, layout::secret::now_ms()) => {
            BadChunksRes::Err(CLUSTER_ERR_CLOCK)
        }
        Ok(a) => {
            let ds = DsId(a.ds_id);
            let mut later = Vec::new();
            let mut done = std::collections::BTreeSet::new();
            for b in &a.chunks {
                // Repair is per file: one entry of a file decides for all its chunks.
                if !done.insert(b.file) {
                    continue;
                }
                match cluster.bad_copy(ns, b.file, ds, b.chunk).await {
                    Ok(true) => {}
                    Ok(false) => later.push(*b),
                    Err(e) => {
                        tracing::warn!(
                            ino = b.file,
                            ds = %ds,
                            "cannot act on a bad copy yet: {e:?}"
                        );
                        later.push(*b);
                    }
                }
            }
            // Entries of a file deferred above are deferred together.
            let deferred: std::collections::BTreeSet<u64> = later.iter().map(|b| b.file).collect();
            let later = a
                .chunks
                .iter()
                .filter(|b| deferred.contains(&b.file))
                .copied()
                .collect();
            BadChunksRes::Ok(later)
        }
    };
    let mut w = accepted_reply(call.xid, &Auth::None, AcceptStat::Success);
    w.buf.extend_from_slice(&res.to_xdr());
    w
}

/// A DS reports shards of encoded files that failed verification there: each is marked bad in
/// its record (durably) and rebuilt in place by the repair task; the reply lists what could
/// not be recorded yet. A segment's shard is queued for rebuild in place instead, and listed
/// until it is rebuilt (`segment_repair`).
pub async fn bad_shards(cluster: &Cluster, ns: &Namespace, call: &Call) -> Writer {
    let res = match BadShardsArgs::from_xdr(call.args()) {
        Err(_) => return accepted_reply(call.xid, &Auth::None, AcceptStat::GarbageArgs),
        Ok(a) if !cluster.cfg.secret.bad_shards_authentic(&a) => {
            tracing::warn!(ds = %DsId(a.ds_id), "bad shard report refused: wrong MAC");
            BadShardsRes::Err(CLUSTER_ERR_AUTH)
        }
        Ok(a) if !layout::secret::fresh(a.timestamp_ms, layout::secret::now_ms()) => {
            BadShardsRes::Err(CLUSTER_ERR_CLOCK)
        }
        Ok(a) => {
            let ds = DsId(a.ds_id);
            let mut later = Vec::new();
            for b in &a.shards {
                let Ok(index) = u8::try_from(b.index) else {
                    continue;
                };
                if super::segments::is_segment_file(b.file) {
                    // Rebuilt in place from a queue of this node's; until then the data
                    // server's durable mark is the record, so the answer is "later".
                    match cluster.bad_segment_shard(ns, b.file, b.epoch, index, ds) {
                        Ok(true) => {}
                        Ok(false) => later.push(*b),
                        Err(e) => {
                            tracing::warn!(file = b.file, ds = %ds, "cannot look up a bad segment shard yet: {e:?}");
                            later.push(*b);
                        }
                    }
                } else if let Err(e) = cluster.bad_shard(ns, b.file, b.epoch, index, ds).await {
                    tracing::warn!(ino = b.file, ds = %ds, "cannot record a bad shard yet: {e:?}");
                    later.push(*b);
                }
            }
            BadShardsRes::Ok(later)
        }
    };
    let mut w = accepted_reply(call.xid, &Auth::None, AcceptStat::Success);
    w.buf.extend_from_slice(&res.to_xdr());
    w
}

/// The metadata nodes a data server should heartbeat to, as this node knows them: the address
/// book that follows the shards' memberships (`Peers::nodes`), so a node that joined is in it
/// and a drained one is not. A node without peers runs alone and lists nobody: the DS has its
/// address already.
fn mds_nodes(ns: &Namespace) -> Vec<MdsNode> {
    let Some(peers) = ns.peers() else {
        return Vec::new();
    };
    peers
        .nodes()
        .into_iter()
        .filter_map(|(id, addr)| {
            Some(MdsNode {
                id: u32::try_from(id).ok()?,
                addr: Netaddr4 {
                    na_r_netid: Opaque::from(netid_for(&addr)),
                    na_r_addr: Opaque::from(to_uaddr(&addr).as_str()),
                },
            })
        })
        .take(MAX_MDS_NODES)
        .collect()
}

fn heartbeat(cluster: &Cluster, ns: &Namespace, a: &HeartbeatArgs) -> HeartbeatRes {
    let checked = if !cluster.cfg.secret.heartbeat_authentic(a) {
        Err(Refused::Auth)
    } else if !layout::secret::fresh(a.timestamp_ms, layout::secret::now_ms()) {
        Err(Refused::Clock)
    } else {
        cluster.registry.heartbeat(a)
    };
    match checked {
        Ok(first) => {
            // A DS new to this MDS instance gets every fence from the start: the sequence
            // number it reports may belong to an earlier instance.
            let applied = if first { 0 } else { a.fence_seq };
            let log = cluster.fences.lock().unwrap_or_else(|e| e.into_inner());
            let (fences, fence_seq) = log.since(applied);
            let mut ok = HeartbeatResOk {
                interval_ms: cluster.cfg.heartbeat.as_millis() as u32,
                chunk_size: cluster.geometry.chunk_size(),
                min_generation: log.base(),
                fences,
                fence_seq,
                mds_nodes: mds_nodes(ns),
                flash: cluster.flash_limit(),
                mac: [0; 32],
            };
            ok.mac = cluster.cfg.secret.heartbeat_reply_mac(&a.mac, &ok);
            HeartbeatRes::Ok(ok)
        }
        Err(r) => {
            tracing::warn!(ds = %DsId(a.ds_id), reason = ?r, "heartbeat refused");
            HeartbeatRes::Err(r.code())
        }
    }
}

/// Admin information is for holders of the cluster secret only.
fn refuse(code: u32) -> Vec<u8> {
    tracing::warn!(code, "status request refused");
    StatusRes::Err(code).to_xdr()
}

/// What STATUS answers, and what the admin API shows of the data servers (`crate::admin`).
pub(crate) fn status(cluster: &Cluster, ns: &Namespace) -> StatusResOk {
    let s = &cluster.stats;
    let metadata_lag = metrics::tier::metadata_lag().map(|seconds| MetadataLag {
        node: ns.node_id(),
        seconds,
        shard: metrics::tier::metadata_lag_shard().map_or(0, u32::from),
    });
    StatusResOk {
        mds_read_ops: s.read_ops.load(Ordering::Relaxed),
        mds_read_bytes: s.read_bytes.load(Ordering::Relaxed),
        mds_write_ops: s.write_ops.load(Ordering::Relaxed),
        mds_write_bytes: s.write_bytes.load(Ordering::Relaxed),
        layouts_granted: s.layouts_granted.load(Ordering::Relaxed),
        layouts_recalled: s.layouts_recalled.load(Ordering::Relaxed),
        data_servers: cluster.registry.status(),
        metadata_lag,
    }
}
