//! The JSON the API answers, built from the running servers. Ids are 16 hex digits, as
//! everywhere else; times are Unix seconds; sizes bytes.
use serde_json::{json, Value};

use super::{unix, Admin};

/// The cluster as the MDS sees it, in the shape `cfs admin status --json` printed before the
/// HTTP API (so scripts keep working).
pub fn cluster_status(c: mds::admin::DataServers) -> Value {
    let mut v = crate::admin::to_json(&c.status);
    // A DS being drained shows what is left on it, and "drained" once nothing is.
    let drains = c.draining;
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

/// The other MDS nodes' metadata lags (`crate::admin::metadata_lags`).
pub type Lags = [(u64, Result<Option<mds::admin::MetadataLag>, String>)];

pub fn status(a: &Admin, lags: &Lags) -> Value {
    let src = &a.sources;
    let mut roles = Vec::new();
    let mds = src.mds.as_ref().map(|m| {
        roles.push("mds");
        let c = m.state_counts();
        let ns = m.namespace_stats();
        let b = src.ns_base;
        let cluster = m.data_servers();
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
                "files": m.usage().map(|s| s.files).unwrap_or(0),
                "bytes": m.usage().map(|s| s.bytes).unwrap_or(0),
            },
        });
        v["metadata"] = metadata_status(m.metadata(), &src.client_addresses);
        // Trees removed by `cfs admin rmtree` whose contents are still going: the detached
        // directories and the entries they hold (a subdirectory not reached yet counts once).
        let removing = m.removing_trees();
        v["removing_trees"] = json!({
            "directories": removing.directories,
            "entries": removing.entries,
        });
        v["metadata"]["serving"] = serving(m);
        if let Some((t, bucket, mode)) = m.tier() {
            v["tier"] = tier_status(&t, &bucket, mode);
            let here = metrics::tier::metadata_lag().map(|seconds| mds::admin::MetadataLag {
                node: v["metadata"]["node"].as_u64().unwrap_or(0),
                seconds,
                shard: metrics::tier::metadata_lag_shard().map_or(0, u32::from),
            });
            metadata_lag(&mut v["tier"], here, lags);
        }
        if let Some(c) = cluster {
            let degraded = c.degraded_files;
            let cs = cluster_status(c);
            v["degraded_files"] = json!(degraded);
            if let Some(r) = m.redundancy() {
                v["data"] = json!({
                    "mirrored_files": r.mirrored_files,
                    "mirrored_bytes": r.mirrored_bytes,
                    "mirrored_raw_bytes": r.mirrored_raw,
                    "encoded_files": r.encoded_files,
                    "encoded_bytes": r.encoded_bytes,
                    "encoded_raw_bytes": r.encoded_raw,
                    "degraded_encoded_bytes": r.degraded_bytes,
                    "reduced_files": r.reduced_files,
                    "reduced_bytes": r.reduced_bytes,
                    "segment_unique_bytes": r.segment_unique_bytes,
                    "segment_stored_bytes": r.segment_stored_bytes,
                    "segment_raw_bytes": r.segment_raw,
                    "repairing_files": degraded,
                    "raw_per_byte": r.raw_per_byte(),
                });
            }
            if let Some(u) = m.export_usage() {
                v["usage"] = usage_status(&u);
            }
            if let Some((sealing, key)) = m.encryption() {
                v["encryption"] = json!({ "sealing": sealing, "data_key_tag": key });
            }
            v["through_mds"] = cs["mds"].clone();
            v["draining"] = cs["draining"].clone();
        }
        v
    });
    let data_servers = src
        .mds
        .as_ref()
        .and_then(|m| m.data_servers())
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

/// One export's (or all exports') usage: files and bytes at each step of reduction.
fn usage_json(u: &mds::admin::Usage) -> Value {
    json!({
        "files": u.files,
        "logical_bytes": u.logical,
        "after_dedup_bytes": u.after_dedup,
        "after_compression_bytes": u.after_compression,
        "raw_bytes": u.raw,
    })
}

/// Usage per export as the last pass found it (`mds::admin::Admin::export_usage`): each
/// export, and all of them together (a chunk shared by several exports counted once).
pub fn usage_status(r: &mds::admin::UsageReport) -> Value {
    let age = std::time::SystemTime::now()
        .duration_since(r.finished)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    json!({
        "as_of": unix(r.finished),
        "age_seconds": age,
        "pass_seconds": r.took.as_secs_f64(),
        // The most the pass held shards' read locks at once (one step).
        "longest_step_seconds": r.longest_step.as_secs_f64(),
        "complete": r.complete,
        "exports": r.exports.iter().map(|e| {
            let mut v = usage_json(&e.usage);
            v["path"] = json!(e.path);
            v
        }).collect::<Vec<_>>(),
        "all_exports": usage_json(&r.total),
    })
}

/// The metadata service: nodes, and each shard's Raft group as this node sees it.
fn metadata_status(
    md: mds::admin::MetadataStatus,
    configured: &std::collections::BTreeMap<u64, std::net::SocketAddr>,
) -> Value {
    let nodes: Vec<Value> = match md.nodes {
        Some(nodes) => nodes
            .into_iter()
            .map(|n| {
                // The memberships' client address over the configured one.
                let client = n.client_address.or_else(|| configured.get(&n.id).copied());
                json!({
                    "id": n.id,
                    "address": n.address,
                    "domain": n.domain,
                    "state": n.state,
                    "voter_of": n.voter_of,
                    "up": n.up,
                    "down_seconds": n.down_for.map(|d| d.as_secs()),
                    "client_address": client.map(|a| a.to_string()),
                    "client_address_held_by": client.and(n.held_by),
                })
            })
            .collect(),
        None => {
            vec![
                json!({ "id": md.node, "state": "member", "voter_of": md.shard_count, "up": true }),
            ]
        }
    };
    let shards: Vec<Value> = md
        .shards
        .into_iter()
        .map(|v| {
            let s = v.status;
            json!({
                "voters": v.voters,
                "learners": v.learners,
                "shard": s.shard,
                "leader": s.leader,
                "term": s.term,
                "last_log": s.last_log,
                "applied": s.applied,
                "follower_lag": s.lag.iter().map(|(n, l)| (n.to_string(), json!(l))).collect::<serde_json::Map<_, _>>(),
            })
        })
        .collect();
    json!({ "node": md.node, "nodes": nodes, "shards": shards })
}

/// The client addresses this MDS node answers on (its own, and those it took over).
pub fn serving(m: &mds::admin::Admin) -> Value {
    let list: Vec<String> = m.serving().iter().map(|a| a.to_string()).collect();
    json!(list)
}

pub fn clients(m: &mds::admin::Admin) -> Value {
    let list: Vec<Value> = m
        .clients()
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
pub fn top(n: usize, m: &mds::admin::Admin, paths: &super::paths::Paths) -> Value {
    let v = metrics::mds::TOP.view(n);
    let inos: Vec<u64> = v.files.iter().map(|r| r.id).collect();
    let named = paths.of(m, &inos);
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

/// The metadata lag of the whole cluster: the worst of this node's (`here`, the shards it
/// leads) and every other node's, with where it is. A node that did not answer is listed: a
/// down node's shards are led elsewhere within seconds, whose lag then counts.
fn metadata_lag(t: &mut Value, here: Option<mds::admin::MetadataLag>, lags: &Lags) {
    let answers = here.into_iter().chain(
        lags.iter()
            .filter_map(|(_, r)| r.as_ref().ok().copied().flatten()),
    );
    let worst = answers.max_by_key(|l| (l.seconds, std::cmp::Reverse(l.node)));
    let unanswered: Vec<Value> = lags
        .iter()
        .filter_map(|(id, r)| r.as_ref().err().map(|e| json!({ "node": id, "error": e })))
        .collect();
    t["metadata_lag_seconds"] = json!(worst.map(|l| l.seconds));
    t["metadata_lag_here_seconds"] = json!(here.map(|l| l.seconds));
    t["metadata_lag_worst"] = match worst.filter(|l| l.seconds > 0) {
        Some(l) => json!({ "node": l.node, "shard": l.shard }),
        None => Value::Null,
    };
    t["metadata_lag_nodes"] = json!(lags.len() + usize::from(here.is_some()) - unanswered.len());
    t["metadata_lag_unanswered"] = json!(unanswered);
}

/// `[tier]`: what the bucket holds of the files, what is still to upload (the queue), and the
/// upload lag: how long ago the oldest file still to upload last changed, which is the
/// acknowledged data a lost site would lose.
fn tier_status(t: &mds::admin::TierUsage, bucket: &str, mode: &str) -> serde_json::Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let lag = if t.pending_files == 0 {
        0
    } else {
        (now - t.oldest_pending_secs).max(0)
    };
    json!({
        "bucket": bucket,
        "mode": mode,
        "in_bucket_files": t.current_files,
        "in_bucket_bytes": t.current_bytes,
        "queued_files": t.pending_files,
        "queued_bytes": t.pending_bytes,
        // Tiered mode: changed or used lately, so kept on flash only (no part of the lag).
        "flash_only_files": t.flash_only_files,
        "flash_only_bytes": t.flash_only_bytes,
        "uploading": t.uploading,
        "object_sets_to_delete": t.doomed_sets,
        "upload_lag_seconds": lag,
        // The metadata lags (`metadata_lag` fills them in): with the upload lag, the
        // acknowledged data a lost site loses.
        "metadata_checkpoints": metrics::tier::METADATA_CHECKPOINTS.get(),
        "metadata_shipped_bytes": metrics::tier::METADATA_BYTES.get(),
        "uploaded_bytes": metrics::tier::UPLOADED_BYTES.get(),
        "evicted_files": t.evicted_files,
        "evicted_bytes": t.evicted_bytes,
        "evicted_by_this_node_bytes": metrics::tier::EVICTED_BYTES.get(),
        "eviction_passes": metrics::tier::EVICTION_PASSES.get(),
        "evicting_seconds": metrics::tier::EVICTING_MICROS.get() as f64 / 1e6,
        "bucket_read_bytes": metrics::tier::BUCKET_READ_BYTES.get(),
        "restored_bytes": metrics::tier::RESTORED_BYTES.get(),
        "s3_errors": metrics::tier::S3_ERRORS.get(),
        // Seconds every request has failed for (null while the store answers): the console's
        // alert, and `cfs admin status`'s.
        "s3_failing_seconds": metrics::tier::failing_for(),
        // Flash past `write_through_percent` where it is fullest: writes are acknowledged once
        // in the bucket (an alert; docs/CONFIGURATION.md).
        "write_through": metrics::tier::write_through(),
        "flash_used_percent": metrics::tier::flash_percent(),
        // Past `evict_high_percent` once and not yet under `evict_low_percent`: being emptied.
        "flash_draining_places": metrics::tier::flash_draining(),
        "write_through_acks": metrics::tier::WRITE_THROUGH_ACKS.get(),
        "full_refusals": metrics::tier::FULL_REFUSALS.get(),
    })
}
