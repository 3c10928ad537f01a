//! `cfs server join`: a new MDS node joins a running metadata service through a seed
//! (`mds::admin::join`), and keeps what it was told in its data directory, so a restart comes
//! back as the same node without asking again. A drained node leaves a marker there, so it
//! never serves again from that directory.
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use mds::config::NodeAddr;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The joined node's membership, in its data directory.
const MEMBER_FILE: &str = "mds-member.json";
/// Written when the node is drained; its presence refuses a start.
const DRAINED_FILE: &str = "mds-drained";

#[derive(Debug, Error)]
pub enum JoinError {
    #[error("join through {seed}: {source}")]
    Join {
        seed: SocketAddr,
        source: mds::admin::MembershipError,
    },
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error(
        "this MDS node was drained from the metadata service ({when}); the data directory {dir} \
         is no longer part of it. To bring the machine back, join again with an empty data \
         directory (`cfs server join`)"
    )]
    Drained { dir: PathBuf, when: String },
    #[error("the seed answered node addresses that do not parse: {0}")]
    Garbled(String),
}

/// What a joined node keeps.
#[derive(Debug, Serialize, Deserialize)]
struct Joined {
    node_id: u64,
    /// Every node as the seed knew them at the join (the shards' memberships, in the node's
    /// log, are the truth afterwards; these only let it start talking).
    nodes: BTreeMap<u64, SocketAddr>,
    shards: u16,
}

fn file_err(path: &Path, e: impl std::fmt::Display) -> JoinError {
    JoinError::File {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Refuses to start a node that was drained.
pub fn refuse_drained(data: &Path) -> Result<(), JoinError> {
    let path = data.join(DRAINED_FILE);
    match std::fs::read_to_string(&path) {
        Ok(when) => Err(JoinError::Drained {
            dir: data.to_path_buf(),
            when: when.trim().to_string(),
        }),
        Err(_) => Ok(()),
    }
}

/// Marks the data directory drained (see `refuse_drained`).
pub fn mark_drained(data: &Path, node: u64) -> Result<(), JoinError> {
    let path = data.join(DRAINED_FILE);
    let when = format!(
        "node {node} drained at {} (seconds since 1970)",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    );
    write_synced(&path, when.as_bytes())
}

/// The membership this data directory joined with, if it did.
pub fn resume(
    data: &Path,
    secret: &layout::ClusterSecret,
) -> Result<Option<mds::config::Members>, JoinError> {
    let path = data.join(MEMBER_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(file_err(&path, e)),
    };
    let j: Joined = serde_json::from_str(&text).map_err(|e| file_err(&path, e))?;
    Ok(Some(mds::config::Members {
        me: j.node_id,
        nodes: j.nodes,
        secret: secret.clone(),
        joined: Some(j.shards),
        replace_after: None,
        domains: BTreeMap::new(),
    }))
}

/// Asks `seed` to take this node (its membership entry `me`: NFS address, client address and
/// failure domain) in, and keeps the answer.
pub async fn join(
    data: &Path,
    secret: &layout::ClusterSecret,
    seed: SocketAddr,
    me: NodeAddr,
) -> Result<mds::config::Members, JoinError> {
    let reply = mds::admin::join(secret, seed, me)
        .await
        .map_err(|source| JoinError::Join { seed, source })?;
    let nodes = reply
        .nodes
        .iter()
        .map(|(id, a)| NodeAddr::parse(a).map(|a| (*id, a.peer)))
        .collect::<Option<BTreeMap<u64, SocketAddr>>>()
        .ok_or_else(|| JoinError::Garbled(format!("{:?}", reply.nodes)))?;
    let j = Joined {
        node_id: reply.id,
        nodes,
        shards: reply.shards,
    };
    std::fs::create_dir_all(data).map_err(|e| file_err(data, e))?;
    let text = serde_json::to_string_pretty(&j).map_err(|e| file_err(data, e))?;
    write_synced(&data.join(MEMBER_FILE), text.as_bytes())?;
    tracing::info!(
        node = j.node_id,
        %seed,
        shards = j.shards,
        "joined the metadata service; every shard takes it in as a learner, then moves voter roles onto it"
    );
    Ok(mds::config::Members {
        me: j.node_id,
        nodes: j.nodes,
        secret: secret.clone(),
        joined: Some(j.shards),
        replace_after: None,
        domains: BTreeMap::new(),
    })
}

/// Written whole or not at all: a temporary file, fsynced, renamed over.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), JoinError> {
    let tmp = path.with_extension("tmp");
    let f = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut f, bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok::<_, std::io::Error>(())
    })();
    f.map_err(|e| file_err(path, e))
}
