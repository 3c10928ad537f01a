//! `cfs repair --from-s3`: a lost site's namespace rebuilt into an empty data directory from
//! the metadata in the object store (`mds::admin::repair_from_s3`), every regular file's bytes left in
//! the bucket (evicted), so a server started on it reads them from there and refills flash as
//! they are used. GETs only: the roots have well-known keys.
use std::path::PathBuf;
use std::time::Instant;

use mds::config::TierConfig;

#[derive(clap::Args, Debug)]
pub struct RepairArgs {
    /// The bucket: http://HOST:PORT/BUCKET (path-style, as `[tier] s3`), or s3://BUCKET with
    /// the endpoint from `--endpoint` or AWS_ENDPOINT_URL. Credentials and region from the
    /// usual AWS environment variables.
    #[arg(long = "from-s3")]
    pub from_s3: String,
    /// The empty data directory to rebuild into (the `--data` of the server started on it).
    #[arg(long)]
    pub data: PathBuf,
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

pub async fn run(a: RepairArgs) -> Result<(), Box<dyn std::error::Error>> {
    let config = store_of(&a)?;
    let started = Instant::now();
    let meta_dir = a.data.join("meta");
    let r = mds::admin::repair_from_s3(config, &a.prefix, &meta_dir)
        .await
        .map_err(RepairError::from)?;
    let took = started.elapsed();
    let when = |s: i64| cfs::timefmt::full(s, 0);
    println!(
        "rebuilt {} into {}: {} shards ({} never shipped, empty), {} inodes ({} directories), {} KiB of checkpoints, in {:.1} s",
        a.from_s3,
        a.data.display(),
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
    println!(
        "start the server on {} (with the same [tier]); the object store's metadata of this cluster now goes on as incarnation {}",
        a.data.display(),
        r.incarnation
    );
    Ok(())
}
