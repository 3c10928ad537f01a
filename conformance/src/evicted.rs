//! Host side of the `evicted` scenario (cfs-cluster-s3: `/` pinned to the bucket). Steps, at
//! the guest's rendezvous:
//!
//! 1. `written`: the guest's files are closed. The host waits until every one has left the data
//!    servers: no shard of it, and every mirror chunk file of it empty
//!    (`chunks/objects/<id & 0xff>/<id>/`), which the evictor does only after the record says
//!    the bucket holds it. Then it posts `evicted`.
//! 2. `read`: the guest read every file after a remount. The MDS must have read at least as
//!    many bytes from the bucket (`cfs admin status`: `bucket_read_bytes`) as the files hold:
//!    the reads came from S3, not from flash. Then `counted`.
//!
//! And the forced evictions of posix, integrity and pnfs on that kind ([`forced`]).
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::encoded::{data_dirs, parse_files, GuestFile};
use crate::hostops::{Host, Stop};
use crate::rendezvous::Seen;
use crate::server::Running;

const EVICT_WAIT: Duration = Duration::from_secs(120);

/// Bytes of `id`'s mirror chunk files on a data server, and whether it holds a shard of it.
fn held(data: &Path, id: u64) -> u64 {
    let mirrors: u64 = std::fs::read_dir(crate::encoded::mirror_dir(data, id))
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    let shards = crate::encoded::look(
        &[(String::new(), data.to_path_buf())],
        &[GuestFile {
            name: String::new(),
            ino: id,
            size: 0,
        }],
    );
    mirrors + shards.iter().map(|s| s.shards.len() as u64).sum::<u64>()
}

/// The tier section of `cfs admin status --json`.
fn tier_status(srv: &Running) -> Result<serde_json::Value, String> {
    crate::hostops::admin_status(srv).map(|v| v["mds"]["tier"].clone())
}

fn bucket_read_bytes(h: &mut Host, srv: &Running) -> Result<u64, Stop> {
    match tier_status(srv) {
        Ok(t) => Ok(t["bucket_read_bytes"].as_u64().unwrap_or(0)),
        Err(e) => Err(h.fail(format!("the tier's status: {e}"))),
    }
}

pub(crate) fn host(h: &mut Host, srv: &Running) -> Result<(), Stop> {
    let dirs: Vec<(String, PathBuf)> = match data_dirs(srv, &h.roles) {
        Ok(d) => d,
        Err(e) => return Err(h.fail(format!("the data servers' directories: {e}"))),
    };
    h.await_guest("written")?;
    let posted = h.ctx.rdv.posted_with("files:").unwrap_or_default();
    let Some(files) = parse_files(&posted) else {
        return Err(h.fail(format!("the guest posted no file list (got '{posted}')")));
    };
    let t0 = Instant::now();
    loop {
        let left: Vec<String> = files
            .iter()
            .filter(|f| dirs.iter().any(|(_, d)| held(d, f.ino) > 0))
            .map(|f| format!("{} (ino {})", f.name, f.ino))
            .collect();
        if left.is_empty() {
            break;
        }
        if t0.elapsed() > EVICT_WAIT {
            return Err(h.fail(format!(
                "still on the data servers after {} s: {}",
                EVICT_WAIT.as_secs(),
                left.join(", ")
            )));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    h.info(format!(
        "every file left the data servers {:.1} s after the guest closed them",
        t0.elapsed().as_secs_f64()
    ));
    let before = bucket_read_bytes(h, srv)?;
    h.ctx.rdv.post("evicted");
    h.await_guest("read")?;
    let after = bucket_read_bytes(h, srv)?;
    let want: u64 = files.iter().map(|f| f.size).sum();
    h.info(format!(
        "the MDS read {} bytes from the bucket during the guest's reads of {want} bytes",
        after - before
    ));
    if after - before < want {
        h.problem(format!(
            "only {} bytes came from the bucket for {want} bytes read: the reads did not all \
             come from S3",
            after - before
        ));
    }
    h.ctx.rdv.post("counted");
    Ok(())
}

/// Bytes of file data on a data server: every mirror chunk file under `chunks/objects` (an
/// evicted file's are emptied or gone).
fn flash_bytes(data: &Path) -> u64 {
    fn walk(p: &Path) -> u64 {
        let Ok(rd) = std::fs::read_dir(p) else {
            return 0;
        };
        rd.filter_map(Result::ok)
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => walk(&e.path()),
                Ok(m) => m.len(),
                Err(_) => 0,
            })
            .sum()
    }
    walk(&data.join("chunks").join("objects"))
}

/// Host side of the forced evictions (`hostops::Kind::Evict`): posix, integrity and pnfs call
/// lib.sh's `evict_all` before reading back. At each `evictN` the guest has unmounted (no
/// open, delegation or layout keeps a file on flash, no page is cached); the host waits until
/// no file is queued or uploading and the data servers hold no byte of any file (`/` is
/// pinned to the bucket: each file leaves flash once the bucket holds it), then posts
/// `evictedN`. Once the guest is done: the bytes the MDS read from the bucket since the first
/// eviction, which must not be none.
pub(crate) fn forced(h: &mut Host, srv: &Running) -> Result<(), Stop> {
    let dirs: Vec<(String, PathBuf)> = match data_dirs(srv, &h.roles) {
        Ok(d) => d,
        Err(e) => return Err(h.fail(format!("the data servers' directories: {e}"))),
    };
    let mut first: Option<(u64, u64)> = None;
    let mut evictions = 0;
    for n in 1.. {
        match h.ctx.rdv.wait(&format!("evict{n}"), h.ctx.step_timeout) {
            Seen::Posted => {}
            // The guest exited (or failed): no more evictions.
            Seen::Aborted => break,
            Seen::TimedOut => {
                return Err(h.fail(format!(
                    "the guest neither asked for eviction {n} nor ended within {} s",
                    h.ctx.step_timeout.as_secs()
                )))
            }
        }
        let t0 = Instant::now();
        let t = loop {
            let t = match tier_status(srv) {
                Ok(t) => t,
                Err(e) => return Err(h.fail(format!("the tier's status: {e}"))),
            };
            let flash: u64 = dirs.iter().map(|(_, d)| flash_bytes(d)).sum();
            if t["queued_files"] == 0 && t["uploading"] == 0 && flash == 0 {
                break t;
            }
            if t0.elapsed() > EVICT_WAIT {
                return Err(h.fail(format!(
                    "eviction {n}: after {} s the data servers still hold {flash} bytes of \
                     files ({} files queued for upload, {} uploading)",
                    EVICT_WAIT.as_secs(),
                    t["queued_files"],
                    t["uploading"]
                )));
            }
            std::thread::sleep(Duration::from_millis(250));
        };
        let counters = (
            t["bucket_read_bytes"].as_u64().unwrap_or(0),
            t["restored_bytes"].as_u64().unwrap_or(0),
        );
        first.get_or_insert(counters);
        evictions = n;
        h.info(format!(
            "eviction {n}: no file left on the data servers {:.1} s after the guest asked \
             ({} files, {} bytes in the bucket only)",
            t0.elapsed().as_secs_f64(),
            t["evicted_files"],
            t["evicted_bytes"]
        ));
        h.ctx.rdv.post(&format!("evicted{n}"));
    }
    let Some((read0, restored0)) = first else {
        h.info("the guest ended before its first eviction".into());
        return Ok(());
    };
    let t = match tier_status(srv) {
        Ok(t) => t,
        Err(e) => return Err(h.fail(format!("the tier's status: {e}"))),
    };
    let read = t["bucket_read_bytes"]
        .as_u64()
        .unwrap_or(0)
        .saturating_sub(read0);
    let restored = t["restored_bytes"]
        .as_u64()
        .unwrap_or(0)
        .saturating_sub(restored0);
    h.info(format!(
        "after {evictions} forced evictions the MDS read {read} bytes from the bucket for the \
         guest's reads (and restored {restored} bytes to flash)"
    ));
    if read == 0 {
        h.problem(format!(
            "no byte came from the bucket after {evictions} forced evictions: the reads did \
             not come from S3"
        ));
    }
    Ok(())
}
