//! `cfs admin status`: what the MDS knows of its data servers, and where bytes went.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use proto::cluster::*;
use proto::rpc::{Auth, Connection, ConnectionLimits, RejectCalls, RpcError};
use proto::xdr::{Xdr, XdrError};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum AdminError {
    #[error("cannot reach the MDS at {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("status call failed: {0} (is {1} a cfs MDS in cluster mode?)")]
    Rpc(RpcError, SocketAddr),
    #[error("undecodable status reply: {0}")]
    Xdr(#[from] XdrError),
    #[error("the MDS refused the status call ({})", refusal(*.0))]
    Refused(u32),
}

/// Asks the MDS at `addr` for its status, signed with the cluster secret.
pub async fn status(
    addr: SocketAddr,
    secret: &layout::ClusterSecret,
) -> Result<StatusResOk, AdminError> {
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id()) << 32;
    let args = secret.status_args(nonce).to_xdr();
    let conn = Connection::connect(addr, Arc::new(RejectCalls), ConnectionLimits::default())
        .await
        .map_err(|source| AdminError::Connect { addr, source })?;
    let reply = conn
        .call(
            CFS_CLUSTER_PROGRAM,
            CFS_CLUSTER_V1,
            CLUSTERPROC_STATUS,
            &Auth::None,
            &args,
            Duration::from_secs(10),
        )
        .await
        .map_err(|e| AdminError::Rpc(e, addr))?;
    conn.close();
    match StatusRes::from_xdr(reply.body())? {
        StatusRes::Ok(s) => Ok(s),
        StatusRes::Err(c) => Err(AdminError::Refused(c)),
    }
}

/// How long `cfs admin status` waits for another MDS node's answer: a node that is down has
/// had its shards led elsewhere within seconds, so its silence costs the figure nothing.
const PEER_STATUS_WAIT: Duration = Duration::from_secs(2);

/// Each of `nodes`' metadata lag (the shards it leads), asked with STATUS, all at once:
/// (node, its answer, or why there is none), by node. `None` inside: it ships no metadata.
pub async fn metadata_lags(
    nodes: Vec<(u64, SocketAddr)>,
    secret: &layout::ClusterSecret,
) -> Vec<(u64, Result<Option<MetadataLag>, String>)> {
    let mut set = tokio::task::JoinSet::new();
    for (id, addr) in nodes {
        let secret = secret.clone();
        set.spawn(async move {
            let r = match tokio::time::timeout(PEER_STATUS_WAIT, status(addr, &secret)).await {
                Ok(Ok(s)) => Ok(s.metadata_lag),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer from {addr} within {PEER_STATUS_WAIT:?}")),
            };
            (id, r)
        });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(r) = r {
            out.push(r);
        }
    }
    out.sort_by_key(|(id, _)| *id);
    out
}

fn refusal(code: u32) -> &'static str {
    match code {
        CLUSTER_ERR_AUTH => "wrong cluster secret",
        CLUSTER_ERR_CLOCK => "clocks too far apart",
        _ => "unknown reason",
    }
}

fn addr_str(na: &proto::nfs4::basic::Netaddr4) -> String {
    let a = String::from_utf8_lossy(&na.na_r_addr.0).to_string();
    layout::uaddr::from_uaddr(&a)
        .map(|s| s.to_string())
        .unwrap_or(a)
}

fn state_str(s: u32) -> &'static str {
    match s {
        DS_STATE_UP => "up",
        DS_STATE_DOWN => "down",
        DS_STATE_DRAINING => "draining",
        _ => "?",
    }
}

/// The status as JSON (one object), for scripts and tests.
pub fn to_json(s: &StatusResOk) -> serde_json::Value {
    serde_json::json!({
        "mds": {
            "read_ops": s.mds_read_ops, "read_bytes": s.mds_read_bytes,
            "write_ops": s.mds_write_ops, "write_bytes": s.mds_write_bytes,
            "layouts_granted": s.layouts_granted, "layouts_recalled": s.layouts_recalled,
        },
        "data_servers": s.data_servers.iter().map(|d| serde_json::json!({
            "id": format!("{:016x}", d.ds_id),
            "state": state_str(d.state),
            "listen": addr_str(&d.listen),
            "advertised": d.advertised.iter().map(addr_str).collect::<Vec<_>>(),
            "failure_domain": d.failure_domain,
            "silent_ms": d.silent_ms,
            "capacity_bytes": d.capacity_bytes, "used_bytes": d.used_bytes,
            "avail_bytes": d.avail_bytes, "has_room": d.has_room,
            "fs_id": format!("{:016x}", d.fs_id),
            "read_ops": d.counters.read_ops, "read_bytes": d.counters.read_bytes,
            "write_ops": d.counters.write_ops, "write_bytes": d.counters.write_bytes,
            "commit_ops": d.counters.commit_ops, "refused_ops": d.counters.refused_ops,
        })).collect::<Vec<_>>(),
    })
}

/// The status as a table for people.
pub fn to_table(s: &StatusResOk) -> String {
    let mut out = format!(
        "MDS: {} layouts granted; through the MDS: read {} in {} ops, wrote {} in {} ops\n",
        s.layouts_granted,
        human(s.mds_read_bytes),
        s.mds_read_ops,
        human(s.mds_write_bytes),
        s.mds_write_ops
    );
    out.push_str(&ds_header(5));
    for d in &s.data_servers {
        out.push_str(&format!(
            "{:<16} {:<5} {:<21} {:>6}s {:>10} {:>10} {:>9} {:>10} {:>9} {:>8} {:>8}\n",
            format!("{:016x}", d.ds_id),
            state_str(d.state),
            addr_str(&d.listen),
            d.silent_ms / 1000,
            if d.has_room {
                human(d.avail_bytes)
            } else {
                format!("full {}", human(d.avail_bytes))
            },
            human(d.counters.read_bytes),
            d.counters.read_ops,
            human(d.counters.write_bytes),
            d.counters.write_ops,
            d.counters.commit_ops,
            d.counters.refused_ops
        ));
    }
    out
}

pub fn human(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The header line of both data-server tables (`state` columns wide for their state names).
fn ds_header(state: usize) -> String {
    format!(
        "{:<16} {:<state$} {:<21} {:>7} {:>10} {:>10} {:>9} {:>10} {:>9} {:>8} {:>8}\n",
        "DS",
        "STATE",
        "LISTEN",
        "SILENT",
        "FREE",
        "READ",
        "READ_OPS",
        "WRITTEN",
        "WRITE_OPS",
        "COMMITS",
        "REFUSED"
    )
}

/// The data-server table of `cfs admin status`, from the API's JSON (`data_servers`).
pub fn ds_table_json(dss: &[serde_json::Value]) -> String {
    let mut out = ds_header(8);
    let n = |d: &serde_json::Value, k: &str| d[k].as_u64().unwrap_or(0);
    for d in dss {
        out.push_str(&format!(
            "{:<16} {:<8} {:<21} {:>6}s {:>10} {:>10} {:>9} {:>10} {:>9} {:>8} {:>8}\n",
            d["id"].as_str().unwrap_or("?"),
            d["state"].as_str().unwrap_or("?"),
            d["listen"].as_str().unwrap_or("?"),
            n(d, "silent_ms") / 1000,
            if d["has_room"].as_bool() == Some(false) {
                format!("full {}", human(n(d, "avail_bytes")))
            } else {
                human(n(d, "avail_bytes"))
            },
            human(n(d, "read_bytes")),
            n(d, "read_ops"),
            human(n(d, "write_bytes")),
            n(d, "write_ops"),
            n(d, "commit_ops"),
            n(d, "refused_ops"),
        ));
    }
    out
}
