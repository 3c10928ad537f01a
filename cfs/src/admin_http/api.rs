//! The JSON the API answers, built from the running servers. Ids are 16 hex digits, as
//! everywhere else; times are Unix seconds; sizes bytes.
use std::sync::atomic::Ordering;

use serde_json::{json, Value};

use super::{unix, Admin};

/// The cluster as the MDS sees it, in the shape `cfs admin status --json` printed before the
/// HTTP API (so scripts keep working).
pub fn cluster_status(c: &mds::dataservers::Cluster) -> Value {
    let s = &c.stats;
    let st = proto::cluster::StatusResOk {
        mds_read_ops: s.read_ops.load(Ordering::Relaxed),
        mds_read_bytes: s.read_bytes.load(Ordering::Relaxed),
        mds_write_ops: s.write_ops.load(Ordering::Relaxed),
        mds_write_bytes: s.write_bytes.load(Ordering::Relaxed),
        layouts_granted: s.layouts_granted.load(Ordering::Relaxed),
        layouts_recalled: s.layouts_recalled.load(Ordering::Relaxed),
        data_servers: c.registry.status(),
    };
    let mut v = crate::admin::to_json(&st);
    // A DS being drained shows what is left on it, and "drained" once nothing is.
    let drains = c.registry.draining();
    if let Some(dss) = v["data_servers"].as_array_mut() {
        for d in dss {
            let id = d["id"]
                .as_str()
                .and_then(|s| u64::from_str_radix(s, 16).ok());
            if let Some((_, left)) = drains.iter().find(|(ds, _)| Some(ds.0) == id) {
                d["files_left"] = json!(left);
                if *left == Some(0) && d["state"] == "draining" {
                    d["state"] = json!("drained");
                }
            }
        }
    }
    v["draining"] = drains
        .iter()
        .map(|(ds, left)| {
            json!({
                "id": ds.to_string(),
                "files_left": left,
                "state": if *left == Some(0) { "drained" } else { "draining" },
            })
        })
        .collect();
    v
}

pub fn status(a: &Admin) -> Value {
    let src = &a.sources;
    let mut roles = Vec::new();
    let mds = src.mds.as_ref().map(|m| {
        roles.push("mds");
        let c = m.nfs.state.counts();
        let ns = m.ns.stats();
        let b = src.ns_base;
        let cluster = m.cluster();
        let mut v = json!({
            "listen": src.mds_listen.map(|l| l.to_string()),
            "pnfs": cluster.is_some(),
            "clients": c.clients,
            "courtesy_clients": c.courtesy,
            "sessions": c.sessions,
            "opens": c.opens,
            "locks": c.locks,
            "delegations": c.delegations,
            "layouts": c.layouts,
            "in_grace": c.in_grace,
            "nfs4_operations": metrics::mds::OPS.total(),
            "compounds": metrics::mds::COMPOUNDS.get(),
            "read_bytes": metrics::mds::READ_BYTES.get(),
            "write_bytes": metrics::mds::WRITE_BYTES.get(),
            "namespace": {
                "commands": b.commands + ns.commands,
                "batches": b.transactions + ns.transactions,
                "durable_commits": b.durable_commits + ns.durable_commits,
                "checkpoints": b.checkpoints + ns.checkpoints,
                // Inodes in use and bytes of regular files, orphans included: what a removal
                // gives back once reclaimed.
                "files": m.ns.statfs().map(|s| s.files).unwrap_or(0),
                "bytes": m.ns.statfs().map(|s| s.bytes).unwrap_or(0),
            },
        });
        v["metadata"] = metadata_status(&m.ns, &src.client_addresses);
        // Trees removed by `cfs admin rmtree` whose contents are still going: the detached
        // directories and the entries they hold (a subdirectory not reached yet counts once).
        let detached = m.ns.detached().unwrap_or_default();
        v["removing_trees"] = json!({
            "directories": detached.len(),
            "entries": detached.iter().map(|(_, n)| n).sum::<u64>(),
        });
        v["metadata"]["serving"] = serving(m);
        if let Some(c) = cluster {
            let cs = cluster_status(c);
            v["degraded_files"] = json!(c.degraded_files());
            if let Ok(r) = m.ns.redundancy(|d| c.registry.is_up(layout::DsId(d))) {
                v["data"] = json!({
                    "mirrored_files": r.mirrored_files,
                    "mirrored_bytes": r.mirrored_bytes,
                    "mirrored_raw_bytes": r.mirrored_raw,
                    "encoded_files": r.encoded_files,
                    "encoded_bytes": r.encoded_bytes,
                    "encoded_raw_bytes": r.encoded_raw,
                    "degraded_encoded_bytes": r.degraded_bytes,
                    "repairing_files": c.degraded_files(),
                    "raw_per_byte": r.raw_per_byte(),
                });
            }
            v["through_mds"] = cs["mds"].clone();
            v["draining"] = cs["draining"].clone();
        }
        v
    });
    let data_servers = src
        .mds
        .as_ref()
        .and_then(|m| m.cluster())
        .map(|c| cluster_status(c)["data_servers"].clone())
        .unwrap_or_else(|| json!([]));
    let ds = src.ds.as_ref().map(|d| {
        roles.push("ds");
        let c = d.counters();
        let (capacity, avail) = d.space();
        json!({
            "id": d.id().to_string(),
            "listen": d.local_addr().to_string(),
            "registered": d.registered(),
            "capacity_bytes": capacity,
            "avail_bytes": avail,
            "read_ops": c.read_ops, "read_bytes": c.read_bytes,
            "write_ops": c.write_ops, "write_bytes": c.write_bytes,
            "commit_ops": c.commit_ops, "refused_ops": c.refused_ops,
        })
    });
    let now = std::time::SystemTime::now();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "roles": roles,
        "started": unix(src.started),
        "uptime_seconds": now.duration_since(src.started).map(|d| d.as_secs()).unwrap_or(0),
        "counters_since": unix(src.counters_since),
        "mds": mds,
        "data_servers": data_servers,
        "ds": ds,
        "totals": a.sample(),
    })
}

/// The metadata service: nodes, and each shard's Raft group as this node sees it.
fn metadata_status(
    ns: &mds::namespace::Namespace,
    configured: &std::collections::BTreeMap<u64, std::net::SocketAddr>,
) -> Value {
    // Each node's state comes from the shards' memberships (`mds::raft::members`).
    let me = ns.node_id();
    let nodes: Vec<Value> = match ns.peers() {
        Some(p) => {
            let states = mds::raft::members::node_states(ns.groups());
            // Up as this node sees it: it answered this node's last call (or is this node).
            let up = |id: u64| id == me || p.down_since(id).is_none();
            let mut clients = configured.clone();
            clients.extend(p.client_addresses());
            states
                .iter()
                .map(|(id, n)| {
                    let id = *id;
                    let domain =
                        mds::raft::node_addr::NodeAddr::parse(&n.addr).and_then(|a| a.domain);
                    // Who answers on its client address: itself while up, else the live node
                    // with the lowest id (the takeover rule, `mds::state::remote::addresses::taker`).
                    let held_by = if up(id) {
                        Some(id)
                    } else {
                        states.keys().copied().filter(|o| up(*o)).min()
                    };
                    json!({
                        "id": id,
                        "address": n.addr,
                        "domain": domain,
                        "state": n.state,
                        "voter_of": n.votes,
                        "up": up(id),
                        "down_seconds": p.down_since(id).map(|t| t.elapsed().as_secs()),
                        "client_address": clients.get(&id).map(|a| a.to_string()),
                        "client_address_held_by": clients.get(&id).and(held_by),
                    })
                })
                .collect()
        }
        None => {
            vec![json!({ "id": me, "state": "member", "voter_of": ns.shard_count(), "up": true })]
        }
    };
    let members: std::collections::BTreeMap<u16, mds::raft::members::ShardMembers> =
        match ns.peers() {
            Some(_) => mds::raft::members::membership_view(ns.groups())
                .into_iter()
                .map(|m| (m.shard, m))
                .collect(),
            None => Default::default(),
        };
    let shards: Vec<Value> = ns
        .shard_status()
        .into_iter()
        .map(|s| {
            let m = members.get(&s.shard);
            json!({
                "voters": m.map(|m| m.voters.iter().copied().collect::<Vec<u64>>())
                    .unwrap_or_else(|| vec![ns.node_id()]),
                "learners": m.map(|m| m.learners.iter().copied().collect::<Vec<u64>>())
                    .unwrap_or_default(),
                "shard": s.shard,
                "leader": s.leader,
                "term": s.term,
                "last_log": s.last_log,
                "applied": s.applied,
                "follower_lag": s.lag.iter().map(|(n, l)| (n.to_string(), json!(l))).collect::<serde_json::Map<_, _>>(),
            })
        })
        .collect();
    json!({ "node": ns.node_id(), "nodes": nodes, "shards": shards })
}

/// The client addresses this MDS node answers on (its own, and those it took over).
pub fn serving(m: &mds::Mds) -> Value {
    let list: Vec<String> = m
        .nfs
        .serving
        .lock()
        .map(|s| s.iter().map(|a| a.to_string()).collect())
        .unwrap_or_default();
    json!(list)
}

pub fn clients(m: &mds::Mds) -> Value {
    let list: Vec<Value> = m
        .nfs.state
        .client_summaries()
        .into_iter()
        .map(|c| {
            json!({
                "id": format!("{:016x}", c.clientid),
                "owner": c.owner,
                "address": metrics::mds::TOP.peer(c.clientid).map(|a| a.to_string()),
                "principal": c.principal,
                "state": if !c.confirmed { "unconfirmed" } else if c.courtesy { "courtesy" } else { "active" },
                "since_renewal_seconds": c.since_renewal.as_secs(),
                "sessions": c.sessions,
                "opens": c.opens,
                "locks": c.locks,
                "delegations": c.delegations,
                "layouts": c.layouts,
                "open_files": c.files,
            })
        })
        .collect();
    json!({ "clients": list })
}

/// The busiest clients and files; files with their path where `paths` finds one.
pub fn top(n: usize, ns: &mds::namespace::Namespace, paths: &super::paths::Paths) -> Value {
    let v = metrics::mds::TOP.view(n);
    let inos: Vec<u64> = v.files.iter().map(|r| r.id).collect();
    let named = paths.of(ns, &inos);
    let rows = |rows: &[metrics::top::Row], client: bool| -> Vec<Value> {
        rows.iter()
            .map(|r| {
                let mut o = json!({
                    "id": if client { format!("{:016x}", r.id) } else { r.id.to_string() },
                    "ops": r.ops,
                    "bytes": r.bytes,
                    "ops_per_second": r.ops_per_sec,
                    "bytes_per_second": r.bytes_per_sec,
                });
                if client {
                    o["address"] = json!(metrics::mds::TOP.peer(r.id).map(|a| a.to_string()));
                }
                o
            })
            .collect()
    };
    let mut files = rows(&v.files, false);
    for (f, r) in files.iter_mut().zip(&v.files) {
        f["path"] = json!(named.get(&r.id));
    }
    json!({
        "window_seconds": v.seconds,
        "clients": rows(&v.clients, true),
        "files": files,
    })
}
