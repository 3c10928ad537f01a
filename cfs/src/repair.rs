//! `cfs repair --from-s3`: a lost site's namespace rebuilt into empty data directories from
//! the metadata in the object store (`mds::admin::repair_from_s3`), every regular file's bytes left in
//! the bucket (evicted), so a server started on it reads them from there and refills flash as
//! they are used. GETs only: the roots have well-known keys.
//!
//! `--data DIR` rebuilds one MDS node's directory: a single node's, a one-MDS cluster's, or one
//! node of several on its own machine (rebuilt before any starts, every node gets the same state).
//! `--cluster DIR` rebuilds every MDS node's directory of a `cfs cluster up --dir DIR` layout
//! at once, after which the same `cfs cluster up` command brings the cluster back.
use std::path::{Path, PathBuf};
use std::time::Instant;

use mds::config::TierConfig;

#[derive(clap::Args, Debug)]
pub struct RepairArgs {
    /// The bucket: http://HOST:PORT/BUCKET (path-style, as `[tier] s3`), or s3://BUCKET with
    /// the endpoint from `--endpoint` or AWS_ENDPOINT_URL. Credentials and region from the
    /// usual AWS environment variables.
    #[arg(long = "from-s3")]
    pub from_s3: String,
    /// The empty data directory of the MDS node to rebuild (the `--data` of the server started
    /// on it): a single node's, a one-MDS cluster's, or each node's of several in turn before
    /// any starts (every node gets the same state).
    #[arg(long, required_unless_present = "cluster", conflicts_with = "cluster")]
    pub data: Option<PathBuf>,
    /// A `cfs cluster up --dir` directory whose nodes' directories were lost: rebuilds every
    /// MDS node's (DIR/mds, or DIR/mds1..mdsM) at once; start the cluster again with the same
    /// `cfs cluster up` command (its data servers start empty).
    #[arg(long)]
    pub cluster: Option<PathBuf>,
    /// With --cluster: its MDS nodes (`cfs cluster up --mds`). Default: as many as DIR holds
    /// configs of (mds1.toml, mds2.toml, ...), else 1.
    #[arg(long, requires = "cluster")]
    pub mds: Option<u16>,
    /// The key prefix the cluster used (`[tier] prefix`).
    #[arg(long, default_value = "cfs")]
    pub prefix: String,
    /// The endpoint of an s3://BUCKET, e.g. https://s3.eu-west-1.amazonaws.com.
    #[arg(long)]
    pub endpoint: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Meta(#[from] mds::admin::MetaStoreError),
}

fn store_of(a: &RepairArgs) -> Result<TierConfig, RepairError> {
    let (endpoint, bucket) = match a.from_s3.strip_prefix("s3://") {
        Some(b) => {
            let b = b.trim_end_matches('/');
            let endpoint = a
                .endpoint
                .clone()
                .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
                .ok_or_else(|| {
                    RepairError::Usage(
                        "s3://BUCKET needs --endpoint (or AWS_ENDPOINT_URL); or give http://HOST:PORT/BUCKET".into(),
                    )
                })?;
            if b.is_empty() || b.contains('/') {
                return Err(RepairError::Usage(format!(
                    "--from-s3 {}: expected s3://BUCKET",
                    a.from_s3
                )));
            }
            (endpoint, b.to_string())
        }
        None => cfs::tier_config::split_s3_url(&a.from_s3)
            .map_err(|e| RepairError::Usage(e.to_string()))?,
    };
    Ok(TierConfig::new(endpoint, bucket))
}

/// How many MDS nodes the configs in a `cfs cluster up` directory are of, if it holds any.
fn configured_mds(dir: &Path) -> Option<u16> {
    if dir.join("mds1.toml").exists() {
        (1u16..)
            .take_while(|j| dir.join(format!("mds{j}.toml")).exists())
            .last()
    } else {
        dir.join("mds.toml").exists().then_some(1)
    }
}

/// The MDS nodes' data directories of the `cfs cluster up` layout in `dir`.
fn cluster_nodes(dir: &Path, mds: Option<u16>) -> Result<Vec<PathBuf>, RepairError> {
    let configured = configured_mds(dir);
    let n = match (mds, configured) {
        (Some(n), Some(c)) if n != c => {
            return Err(RepairError::Usage(format!(
                "--mds {n}: {} holds the configs of {c} MDS node{}",
                dir.display(),
                if c == 1 { "" } else { "s" }
            )))
        }
        (Some(n), _) => n,
        (None, c) => c.unwrap_or(1),
    };
    if n == 0 || n == 2 {
        return Err(RepairError::Usage(format!(
            "--mds {n}: a metadata service has 1 node, or 3 and more"
        )));
    }
    Ok((1..=n)
        .map(|j| dir.join(crate::cluster_up::mds_name(n, j)))
        .collect())
}

/// The data servers' directories in a `cfs cluster up` layout that still hold something.
fn data_servers_left(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut left: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_prefix("ds")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                && e.path().is_dir()
                && std::fs::read_dir(e.path()).is_ok_and(|mut d| d.next().is_some())
        })
        .map(|e| e.path())
        .collect();
    left.sort();
    left
}

/// Prints at most this many paths of each kind.
const SHOWN: usize = 50;

pub async fn run(a: RepairArgs) -> Result<(), Box<dyn std::error::Error>> {
    let config = store_of(&a)?;
    let nodes = match (&a.data, &a.cluster) {
        (Some(d), _) => vec![d.clone()],
        (None, Some(c)) => cluster_nodes(c, a.mds)?,
        (None, None) => return Err(RepairError::Usage("--data or --cluster".into()).into()),
    };
    let started = Instant::now();
    let meta_dirs: Vec<PathBuf> = nodes.iter().map(|d| d.join("meta")).collect();
    let r = mds::admin::repair_from_s3(config, &a.prefix, &meta_dirs)
        .await
        .map_err(RepairError::from)?;
    let took = started.elapsed();
    let when = |s: i64| cfs::timefmt::full(s, 0);
    let shown: Vec<String> = nodes.iter().map(|d| d.display().to_string()).collect();
    println!(
        "rebuilt {} into {}: {} shards ({} never shipped, empty), {} inodes ({} directories), {} KiB of checkpoints, in {:.1} s",
        a.from_s3,
        shown.join(", "),
        r.shard_count,
        r.unshipped.len(),
        r.inodes,
        r.directories,
        r.checkpoint_bytes / 1024,
        took.as_secs_f64()
    );
    println!(
        "{} regular files ({} bytes) are read from the bucket and come back to flash as they are used",
        r.rebuilt.evicted_files, r.rebuilt.evicted_bytes
    );
    if r.taken_from <= r.taken_to {
        println!(
            "the metadata is the state of {} to {} (each shard's last checkpoint); at its last ship it was at most {:.1} s behind",
            when(r.taken_from),
            when(r.taken_to),
            r.lag_ms as f64 / 1000.0
        );
        println!(
            "acknowledged-data loss window: the metadata lag ({:.1} s at the last ship; changes after {} are not in the bucket), and the file bytes listed below",
            r.lag_ms as f64 / 1000.0,
            when(r.taken_to)
        );
    }
    for ((_, had, held), p) in r.rebuilt.older.iter().zip(&r.older_paths) {
        println!("  older: {p}: changed after its last upload; back as the bucket holds it ({held} of {had} bytes)");
    }
    for ((_, had), p) in r.rebuilt.lost.iter().zip(&r.lost_paths) {
        println!("  lost: {p}: none of its {had} bytes reached the bucket; it is empty");
    }
    if r.rebuilt.older.is_empty() && r.rebuilt.lost.is_empty() {
        println!("every file's bytes as the metadata names them are in the bucket");
    }
    let m = &r.mended;
    if m.txns_committed + m.txns_released > 0 {
        println!(
            "cross-shard operations under way in the checkpoints: {} finished as their coordinating shard had decided, {} undone",
            m.txns_committed, m.txns_released
        );
    }
    if m.is_whole() {
        println!("namespace check: the shards' checkpoints agree: no dangling entry, no orphan");
    } else {
        println!(
            "namespace check: the shards' checkpoints are of different moments: {} dangling entries removed, {} inodes no entry named linked into /lost+found, {} link counts or parents set",
            m.dangling.len(),
            m.found.len(),
            m.links_fixed
        );
    }
    for p in r.dangling_paths.iter().take(SHOWN) {
        println!("  removed: {p}: named what its shard's checkpoint does not hold");
    }
    for p in r.found_paths.iter().take(SHOWN) {
        println!("  found: {p}: no entry named it");
    }
    let more =
        r.dangling_paths.len().saturating_sub(SHOWN) + r.found_paths.len().saturating_sub(SHOWN);
    if more > 0 {
        println!("  ... and {more} more");
    }
    match &a.cluster {
        Some(dir) => {
            for ds in data_servers_left(dir) {
                println!(
                    "note: {} still holds data, which the rebuilt metadata names none of: empty it to free its space",
                    ds.display()
                );
            }
            println!(
                "start the cluster again with the command that made it (cfs cluster up --dir {} --s3 ...): its data servers start empty; the object store's metadata of this cluster now goes on as incarnation {}",
                dir.display(),
                r.incarnation
            );
        }
        None => println!(
            "start the server on {} (with the same [tier]; a cluster's data servers empty); the object store's metadata of this cluster now goes on as incarnation {}",
            shown.join(", "),
            r.incarnation
        ),
    }
    Ok(())
}
