//! `cfs admin ...` over the admin HTTP API: where the listener is and the token come from the
//! server's config file (`[admin] listen`, `[cluster] secret_file` or, on a single node, the
//! data directory's `admin.secret`), or from flags.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde_json::Value;

use crate::config;
use crate::http_client;

mod snapshots;
pub use snapshots::{path_segment, snapshot_table};

/// How `cfs admin` finds the admin listener and proves it may ask.
#[derive(Args, Debug, Clone, Default)]
pub struct AdminTarget {
    /// The server's config file: its `[admin] listen` and secret are used.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Admin listener address, HOST:PORT (overrides the config's `[admin] listen`).
    #[arg(long)]
    pub admin: Option<String>,
    /// File with the cluster secret the token derives from (overrides the config's).
    #[arg(long)]
    pub cluster_secret_file: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum AdminCliError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Http(#[from] http_client::HttpError),
    #[error("no admin listener known: give --admin HOST:PORT, or --config with an [admin] section (add `[admin]` and `listen = \"127.0.0.1:3049\"` to the server's config and restart it)")]
    NoAdmin,
    #[error("no token: give --config (its [cluster] secret_file, or the data directory's admin.secret) or --cluster-secret-file")]
    NoToken,
    #[error("{0}")]
    Api(String),
    #[error("the admin listener answered {0} with something that is not JSON")]
    NotJson(u16),
}

pub struct Target {
    pub addr: SocketAddr,
    pub token: String,
}

/// The admin address (if one is configured) and the token.
pub fn resolve(t: &AdminTarget) -> Result<Option<Target>, AdminCliError> {
    let file = config::load(t.config.as_deref())?;
    let data = file
        .data
        .clone()
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_DATA));
    let addr = match (&t.admin, &file.admin) {
        (Some(a), _) => Some(config::parse_listen(a)?),
        (None, Some(a)) => {
            let a =
                config::parse_listen(a.listen.as_deref().unwrap_or(config::DEFAULT_ADMIN_LISTEN))?;
            if a.port() == 0 {
                // Bound to any free port: the server wrote down which.
                let f = data.join("admin.addr");
                let text = std::fs::read_to_string(&f).map_err(|e| config::ConfigError::Read {
                    path: f.clone(),
                    source: e,
                })?;
                Some(config::parse_listen(text.trim())?)
            } else {
                Some(a)
            }
        }
        (None, None) => None,
    };
    let Some(addr) = addr else { return Ok(None) };
    let secret_file = t
        .cluster_secret_file
        .clone()
        .or_else(|| file.cluster.as_ref().and_then(|c| c.secret_file.clone()));
    let secret = match secret_file {
        Some(p) => config::load_secret(&p)?,
        None if t.config.is_some() => {
            crate::serve::local_admin_secret(&data, false).map_err(|_| AdminCliError::NoToken)?
        }
        None => return Err(AdminCliError::NoToken),
    };
    Ok(Some(Target {
        addr,
        token: secret.admin_token(),
    }))
}

pub fn require(t: &AdminTarget) -> Result<Target, AdminCliError> {
    resolve(t)?.ok_or(AdminCliError::NoAdmin)
}

/// One API call; an error status becomes the API's own sentence.
pub async fn call(tg: &Target, method: &str, path: &str) -> Result<Value, AdminCliError> {
    call_with(tg, method, path, None).await
}

/// `call` with a JSON body.
pub async fn call_with(
    tg: &Target,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, AdminCliError> {
    call_waiting(tg, method, path, body, Duration::from_secs(10)).await
}

/// `call_with` of a request that answers when its work is done (a restore), waiting `wait`.
pub async fn call_waiting(
    tg: &Target,
    method: &str,
    path: &str,
    body: Option<&Value>,
    wait: Duration,
) -> Result<Value, AdminCliError> {
    let body = body.map(Value::to_string);
    let r = http_client::request(
        tg.addr,
        method,
        path,
        Some(&tg.token),
        body.as_deref(),
        wait,
    )
    .await?;
    let v: Value = serde_json::from_slice(&r.body).map_err(|_| AdminCliError::NotJson(r.status))?;
    if r.status >= 400 {
        let msg = v["error"].as_str().unwrap_or("request failed");
        return Err(AdminCliError::Api(format!("{} ({})", msg, r.status)));
    }
    Ok(v)
}

fn human(b: u64) -> String {
    crate::admin::human(b)
}

/// Usage per export (`mds.usage` of the status): a row per export and one for all of them.
fn usage_table(u: &serde_json::Map<String, Value>) -> String {
    let exports = u.get("exports").and_then(Value::as_array);
    let width = exports
        .into_iter()
        .flatten()
        .filter_map(|e| e["path"].as_str())
        .map(str::len)
        .chain([13])
        .max()
        .unwrap_or(13)
        .min(40);
    let row = |name: &str, e: &Value| {
        let n = |k: &str| e[k].as_u64().unwrap_or(0);
        format!(
            "       {name:<width$} {:>8} {:>11} {:>11} {:>11} {:>11}\n",
            n("files"),
            human(n("logical_bytes")),
            human(n("after_dedup_bytes")),
            human(n("after_compression_bytes")),
            human(n("raw_bytes")),
        )
    };
    let mut out = format!(
        "     usage by export (as of {} s ago{}; a chunk in several exports counts in each, once in all):\n       {:<width$} {:>8} {:>11} {:>11} {:>11} {:>11}\n",
        u.get("age_seconds").and_then(Value::as_u64).unwrap_or(0),
        if u.get("complete").and_then(Value::as_bool) == Some(false) {
            ", incomplete"
        } else {
            ""
        },
        "export",
        "files",
        "logical",
        "dedup",
        "compressed",
        "raw",
    );
    for e in exports.into_iter().flatten() {
        out.push_str(&row(e["path"].as_str().unwrap_or("?"), e));
    }
    if let Some(all) = u.get("all_exports") {
        out.push_str(&row("(all exports)", all));
    }
    out
}

pub fn status_table(v: &Value) -> String {
    let mut out = String::new();
    if let Some(m) = v["mds"].as_object() {
        out.push_str(&format!(
            "MDS {}: {} clients ({} courtesy), {} sessions, {} opens, {} locks, {} delegations, {} layouts{}\n",
            m["listen"].as_str().unwrap_or("?"),
            m["clients"], m["courtesy_clients"], m["sessions"], m["opens"], m["locks"],
            m["delegations"], m["layouts"],
            if m["in_grace"].as_bool() == Some(true) { "; IN GRACE" } else { "" },
        ));
        out.push_str(&format!(
            "     {} NFSv4 operations; file data through the MDS: read {}, written {}\n",
            m["nfs4_operations"],
            human(m["read_bytes"].as_u64().unwrap_or(0)),
            human(m["write_bytes"].as_u64().unwrap_or(0)),
        ));
        if let Some(t) = m.get("through_mds") {
            out.push_str(&format!(
                "     pNFS: {} layouts granted, {} recalled; {} files short of a mirror; I/O the MDS did on data servers: read {}, wrote {}\n",
                t["layouts_granted"], t["layouts_recalled"], m["degraded_files"],
                human(t["read_bytes"].as_u64().unwrap_or(0)),
                human(t["write_bytes"].as_u64().unwrap_or(0)),
            ));
        }
    }
    if let Some(d) = v["mds"]["data"].as_object() {
        let n = |k: &str| d.get(k).and_then(Value::as_u64).unwrap_or(0);
        out.push_str(&format!(
            "     data: {} in {} files mirrored ({} raw), {} in {} files erasure-coded ({} raw, {} degraded); {:.2} raw bytes per byte\n",
            human(n("mirrored_bytes")),
            n("mirrored_files"),
            human(n("mirrored_raw_bytes")),
            human(n("encoded_bytes")),
            n("encoded_files"),
            human(n("encoded_raw_bytes")),
            human(n("degraded_encoded_bytes")),
            d.get("raw_per_byte").and_then(Value::as_f64).unwrap_or(0.0),
        ));
        if n("reduced_files") > 0 || n("segment_raw_bytes") > 0 {
            out.push_str(&format!(
                "     reduced: {} in {} files; {} after dedup, {} after compression, {} raw in segments\n",
                human(n("reduced_bytes")),
                n("reduced_files"),
                human(n("segment_unique_bytes")),
                human(n("segment_stored_bytes")),
                human(n("segment_raw_bytes")),
            ));
        }
    }
    if let Some(u) = v["mds"]["usage"].as_object() {
        out.push_str(&usage_table(u));
    }
    if let Some(e) = v["mds"]["encryption"].as_object() {
        let sealing = e.get("sealing").and_then(Value::as_bool).unwrap_or(false);
        out.push_str(
            &match (sealing, e.get("data_key_tag").and_then(Value::as_str)) {
                (false, _) => "     encryption at rest: off\n".to_string(),
                (true, Some(tag)) => format!(
                "     encryption at rest: on (segments and bucket objects sealed; data key {tag})\n"
            ),
                (true, None) => "     encryption at rest: on, data key not unwrapped yet\n".into(),
            },
        );
    }
    if let Some(t) = v["mds"]["tier"].as_object() {
        let n = |k: &str| t.get(k).and_then(Value::as_u64).unwrap_or(0);
        out.push_str(&format!(
            "     tier ({} mode, {}): {} in {} files in the bucket ({} in {} files evicted from flash); {} in {} files queued, upload lag {} s; metadata lag {} s (every shard); {} S3 errors\n",
            t.get("mode").and_then(Value::as_str).unwrap_or("?"),
            t.get("bucket").and_then(Value::as_str).unwrap_or("?"),
            human(n("in_bucket_bytes")),
            n("in_bucket_files"),
            human(n("evicted_bytes")),
            n("evicted_files"),
            human(n("queued_bytes")),
            n("queued_files"),
            n("upload_lag_seconds"),
            n("metadata_lag_seconds"),
            n("s3_errors"),
        ));
        if let Some(w) = t.get("metadata_lag_worst").and_then(Value::as_object) {
            out.push_str(&format!(
                "     metadata lag: the worst is shard {}'s, led by MDS node {}\n",
                w.get("shard").and_then(Value::as_u64).unwrap_or(0),
                w.get("node").and_then(Value::as_u64).unwrap_or(0),
            ));
        }
        for u in t
            .get("metadata_lag_unanswered")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            out.push_str(&format!(
                "     metadata lag: MDS node {} did not say its own ({}); its shards count once led elsewhere\n",
                u["node"],
                u["error"].as_str().unwrap_or("?"),
            ));
        }
        if t.get("mode").and_then(Value::as_str) == Some("tiered") {
            out.push_str(&format!(
                "     {} in {} files changed or used lately, on flash only (tiered mode)\n",
                human(n("flash_only_bytes")),
                n("flash_only_files"),
            ));
        }
        if t.get("write_through").and_then(Value::as_bool) == Some(true) {
            out.push_str(&format!(
                "     ALERT: flash full: write-through ({} % used): writes are acknowledged once in the bucket\n",
                n("flash_used_percent"),
            ));
        }
        if let Some(s) = t.get("s3_failing_seconds").and_then(Value::as_u64) {
            out.push_str(&format!(
                "     ALERT: the object store has failed every request for {s} s (uploads wait; evicted files cannot be read)
"
            ));
        }
    }
    if let Some(md) = v["mds"]["metadata"].as_object() {
        out.push_str(&metadata_lines(md));
    }
    let removing = &v["mds"]["removing_trees"];
    if removing["directories"].as_u64().unwrap_or(0) > 0 {
        out.push_str(&format!(
            "     removing trees (cfs admin rmtree): {} directories detached, {} entries in them left\n",
            removing["directories"], removing["entries"],
        ));
    }
    if let Some(dss) = v["data_servers"].as_array().filter(|a| !a.is_empty()) {
        out.push_str(&crate::admin::ds_table_json(dss));
    }
    for d in v["mds"]["draining"].as_array().into_iter().flatten() {
        let id = d["id"].as_str().unwrap_or("?");
        out.push_str(&match d["files_left"].as_u64() {
            Some(0) => {
                format!("drain of {id}: drained, no file is placed on it: it can be stopped\n")
            }
            Some(n) => format!("drain of {id}: {n} files and segments left to move\n"),
            None => format!("drain of {id}: counting its files\n"),
        });
    }
    if let Some(d) = v["ds"].as_object() {
        out.push_str(&format!(
            "DS {} on {}: {}; free {} of {}; read {} in {} ops, wrote {} in {} ops, {} commits, {} refused\n",
            d["id"].as_str().unwrap_or("?"),
            d["listen"].as_str().unwrap_or("?"),
            if d["registered"].as_bool() == Some(true) { "registered" } else { "not registered with the MDS yet" },
            human(d["avail_bytes"].as_u64().unwrap_or(0)),
            human(d["capacity_bytes"].as_u64().unwrap_or(0)),
            human(d["read_bytes"].as_u64().unwrap_or(0)), d["read_ops"],
            human(d["write_bytes"].as_u64().unwrap_or(0)), d["write_ops"],
            d["commit_ops"], d["refused_ops"],
        ));
    }
    out.push_str(&format!(
        "cfs {}, up {}, counters since {}\n",
        v["version"].as_str().unwrap_or("?"),
        crate::timefmt::duration(v["uptime_seconds"].as_u64().unwrap_or(0)),
        crate::timefmt::local(v["counters_since"].as_f64().unwrap_or(0.0) as i64),
    ));
    out
}

/// The metadata service in a few lines: nodes with the shards each leads, shards without a
/// leader, and followers behind (only what needs a look; `--json` has every shard).
fn metadata_lines(md: &serde_json::Map<String, Value>) -> String {
    let shards = md["shards"].as_array().cloned().unwrap_or_default();
    let nodes = md["nodes"].as_array().cloned().unwrap_or_default();
    let me = md["node"].as_u64().unwrap_or(0);
    let mut out = String::new();
    let mut led = Vec::new();
    for n in &nodes {
        let id = n["id"].as_u64().unwrap_or(0);
        let count = shards
            .iter()
            .filter(|s| s["leader"].as_u64() == Some(id))
            .count();
        let at = n["address"]
            .as_str()
            .map(|a| format!(" {a}"))
            .unwrap_or_default();
        let this = if id == me { " (this node)" } else { "" };
        let state = match n["state"].as_str() {
            None | Some("member") => String::new(),
            Some(st) => format!(" [{st}]"),
        };
        let votes = n["voter_of"].as_u64().unwrap_or(0);
        led.push(format!(
            "node {id}{at}{this}{state} leads {count}, votes in {votes}"
        ));
    }
    let max_term = shards
        .iter()
        .filter_map(|s| s["term"].as_u64())
        .max()
        .unwrap_or(0);
    out.push_str(&format!(
        "metadata: {} node{}, {} shards (highest term {max_term}): {}\n",
        nodes.len(),
        if nodes.len() == 1 { "" } else { "s" },
        shards.len(),
        led.join("; ")
    ));
    let serving: Vec<&str> = md
        .get("serving")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str())
        .collect();
    if !serving.is_empty() {
        out.push_str(&format!(
            "     this node serves client addresses {}\n",
            serving.join(", ")
        ));
    }
    // Membership per shard, when a shard does not hold every node (a join or a drain under
    // way) or when not every node votes everywhere (more nodes than a shard's voters): the
    // shards grouped by their voters and learners.
    let all: Vec<u64> = nodes.iter().filter_map(|n| n["id"].as_u64()).collect();
    let mut groups: std::collections::BTreeMap<(String, String), Vec<String>> = Default::default();
    for s in &shards {
        let ids = |k: &str| -> Vec<u64> {
            s[k].as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_u64())
                .collect()
        };
        let (voters, learners) = (ids("voters"), ids("learners"));
        if voters == all && learners.is_empty() {
            continue;
        }
        let list = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
        groups
            .entry((list(&voters), list(&learners)))
            .or_default()
            .push(s["shard"].to_string());
    }
    for ((voters, learners), list) in &groups {
        // 256 shards over a few nodes: a group can hold dozens; name a few and count the rest.
        let named = match list.len() {
            0..=8 => list.join(","),
            n => format!("{} and {} more", list[..6].join(","), n - 6),
        };
        out.push_str(&format!(
            "     shards {named}: voters {voters}{}\n",
            if learners.is_empty() {
                String::new()
            } else {
                format!(", learners {learners}")
            }
        ));
    }
    let leaderless: Vec<String> = shards
        .iter()
        .filter(|s| s["leader"].is_null())
        .map(|s| s["shard"].to_string())
        .collect();
    if !leaderless.is_empty() {
        out.push_str(&format!(
            "     shards without a leader (electing; writes to them wait): {}\n",
            leaderless.join(", ")
        ));
    }
    let mut behind: Vec<(u64, u64, u64)> = Vec::new();
    for s in &shards {
        for (n, lag) in s["follower_lag"].as_object().into_iter().flatten() {
            let lag = lag.as_u64().unwrap_or(0);
            if lag > 0 {
                behind.push((
                    s["shard"].as_u64().unwrap_or(0),
                    n.parse().unwrap_or(0),
                    lag,
                ));
            }
        }
    }
    if let Some(worst) = behind.iter().max_by_key(|b| b.2) {
        out.push_str(&format!(
            "     commit lag: {} follower logs behind this node's leaders, worst node {} by {} entries on shard {}\n",
            behind.len(),
            worst.1,
            worst.2,
            worst.0
        ));
    } else if nodes.len() > 1 {
        out.push_str("     commit lag: every follower of this node's leaders is caught up\n");
    }
    out
}

/// An MDS node's id (1 to 3 decimal digits) rather than a data server's (16 hex digits).
pub fn is_mds_node_id(id: &str) -> bool {
    (1..=3).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_digit())
}

/// Follows the drain of data server `id` (16 hex digits) until it is drained, printing the
/// files left each time the count changes (on stderr: stdout keeps the result).
pub async fn wait_drained(tg: &Target, id: &str) -> Result<(), AdminCliError> {
    let mut last = None;
    loop {
        let v = call(tg, "GET", "/api/v1/status").await?;
        let Some(d) = v["mds"]["draining"]
            .as_array()
            .and_then(|a| a.iter().find(|d| d["id"] == id))
        else {
            return Err(AdminCliError::Api(format!(
                "data server {id} is not being drained (any more): `cfs admin status` shows it"
            )));
        };
        let left = d["files_left"].as_u64();
        if left != last {
            match left {
                Some(0) => eprintln!("data server {id}: drained, it can be stopped"),
                Some(n) => eprintln!("data server {id}: {n} files and segments left to move"),
                None => eprintln!("data server {id}: counting its files"),
            }
            last = left;
        }
        if left == Some(0) {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

pub fn clients_table(v: &Value) -> String {
    let mut out = format!(
        "{:<16} {:<11} {:<15} {:>4} {:>5} {:>5} {:>5} {:>7} {:>6}  {}\n",
        "CLIENT", "STATE", "ADDRESS", "SESS", "OPENS", "LOCKS", "DELEG", "LAYOUTS", "IDLE", "OWNER"
    );
    for c in v["clients"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:<16} {:<11} {:<15} {:>4} {:>5} {:>5} {:>5} {:>7} {:>5}s  {}\n",
            c["id"].as_str().unwrap_or("?"),
            c["state"].as_str().unwrap_or("?"),
            c["address"].as_str().unwrap_or("-"),
            c["sessions"],
            c["opens"],
            c["locks"],
            c["delegations"],
            c["layouts"],
            c["since_renewal_seconds"],
            c["owner"].as_str().unwrap_or(""),
        ));
    }
    out
}

pub fn top_table(v: &Value) -> String {
    let mut out = format!(
        "busiest over the last {:.0} s\n{:<16} {:<15} {:>10} {:>12}\n",
        v["window_seconds"].as_f64().unwrap_or(0.0),
        "CLIENT",
        "ADDRESS",
        "OPS/S",
        "BYTES/S"
    );
    for c in v["clients"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:<16} {:<15} {:>10.1} {:>10}/s\n",
            c["id"].as_str().unwrap_or("?"),
            c["address"].as_str().unwrap_or("-"),
            c["ops_per_second"].as_f64().unwrap_or(0.0),
            human(c["bytes_per_second"].as_f64().unwrap_or(0.0) as u64),
        ));
    }
    out.push_str(&format!(
        "\n{:<40} {:>10} {:>12}\n",
        "FILE (PATH, OR INODE)", "OPS/S", "BYTES/S"
    ));
    for f in v["files"].as_array().into_iter().flatten() {
        let name = match f["path"].as_str() {
            Some(p) => p.to_string(),
            None => format!("inode {}", f["id"].as_str().unwrap_or("?")),
        };
        out.push_str(&format!(
            "{:<40} {:>10.1} {:>10}/s\n",
            name,
            f["ops_per_second"].as_f64().unwrap_or(0.0),
            human(f["bytes_per_second"].as_f64().unwrap_or(0.0) as u64),
        ));
    }
    out
}

/// `cfs admin top`: the table, redrawn every `interval` until Ctrl-C (or `count` times).
pub async fn top(
    tg: &Target,
    json: bool,
    interval: Duration,
    count: Option<u64>,
    n: usize,
) -> Result<(), AdminCliError> {
    let mut i = 0u64;
    loop {
        let v = call(tg, "GET", &format!("/api/v1/top?n={n}")).await?;
        if json {
            println!("{v}");
        } else {
            // Clear the screen and home the cursor, as top(1) does.
            print!("\x1b[2J\x1b[H{}", top_table(&v));
            use std::io::Write;
            let _ = std::io::stdout().flush();
        }
        i += 1;
        if count.is_some_and(|c| i >= c) {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}
