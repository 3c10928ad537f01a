//! Host side of the `reduced` scenario (cfs-cluster-reduce and cfs-cluster-reduce-plain:
//! `--encode-after 2 --reduce on`, with and without `--encrypt`).
//! The guest cannot see the data servers, so the host looks at them and at the MDS: a file is
//! reduced when its mirror copies are gone from every data server with no shard header naming
//! it (it was not erasure-coded instead), and `cfs admin status` counts it reduced. Steps, at
//! the guest's rendezvous:
//!   files written -> wait (bounded) until all four are reduced; the two copies of the same
//!   bytes stored once (the index's unique bytes are less than the files' total by about one
//!   copy) -> the guest remounts and reads them -> the MDS read them (sealed: it assembles
//!   reduced files, no layout is handed out), or the data servers served them (not sealed: a
//!   read layout names one that assembles) -> the guest overwrites a range of one copy -> wait until
//!   it is reduced again -> the guest removes the other copy -> wait until it no longer counts
//!   -> the guest reads the first copy again.

use crate::encoded::{data_dirs, look, parse_files, GuestFile, Seen};
use crate::hostops::{deltas, Host, Stop};
use crate::server::Running;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long the cluster may take to reduce the guest's files: `--encode-after 2` plus the
/// encoder's passes (four files a pass, each fenced for a moment), with room for a machine
/// shared with builds.
const REDUCE_WAIT: Duration = Duration::from_secs(120);

/// `mds.data` of `cfs admin status --json`.
fn data_status(srv: &Running) -> Result<serde_json::Value, String> {
    crate::hostops::admin_status(srv).map(|v| v["mds"]["data"].clone())
}

fn n(v: &serde_json::Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or(0)
}

/// Reduced as far as the data servers show: no mirror copy, no shard naming the file.
fn gone_from_mirrors(s: &Seen) -> bool {
    s.mirror_total() == 0 && s.shards.is_empty()
}

/// Polls until `files` are off their mirrors and the MDS counts `reduced` files, or `limit`
/// passes; the last status and whether it held.
fn wait_reduced(
    dirs: &[(String, PathBuf)],
    srv: &Running,
    files: &[GuestFile],
    reduced: u64,
    limit: Duration,
) -> (Vec<Seen>, serde_json::Value, bool, Duration) {
    let t0 = Instant::now();
    loop {
        let seen = look(dirs, files);
        let st = data_status(srv).unwrap_or_default();
        if seen.iter().all(gone_from_mirrors) && n(&st, "reduced_files") == reduced {
            return (seen, st, true, t0.elapsed());
        }
        if t0.elapsed() > limit {
            return (seen, st, false, t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn describe(files: &[GuestFile], seen: &[Seen]) -> String {
    files
        .iter()
        .zip(seen)
        .map(|(f, s)| format!("{} (ino {}, {} B): {}", f.name, f.ino, f.size, s.describe()))
        .collect::<Vec<_>>()
        .join(" | ")
}

pub(crate) fn host(h: &mut Host, srv: &Running) -> Result<(), Stop> {
    let dirs = match data_dirs(srv, &h.roles) {
        Ok(d) => d,
        Err(e) => return Err(h.fail(format!("the data servers' directories: {e}"))),
    };
    h.await_guest("written")?;
    let posted = h.ctx.rdv.posted_with("files:").unwrap_or_default();
    let Some(files) = parse_files(&posted) else {
        return Err(h.fail(format!("the guest posted no file list (got '{posted}')")));
    };
    let size = |name: &str| files.iter().find(|f| f.name == name).map(|f| f.size);
    let (Some(big), Some(dup)) = (size("big"), size("dup")) else {
        return Err(h.fail(format!(
            "the scenario needs files big and dup, got {files:?}"
        )));
    };
    let total: u64 = files.iter().map(|f| f.size).sum();
    let count = files.len() as u64;
    h.info(format!(
        "waiting up to {} s for {count} files to be reduced",
        REDUCE_WAIT.as_secs()
    ));

    // 1. Every file reduced, its mirror copies gone; the two copies stored once.
    let (seen, st, ok, took) = wait_reduced(&dirs, srv, &files, count, REDUCE_WAIT);
    if !ok {
        return Err(h.fail(format!(
            "not reduced with mirror copies gone within {} s (status {st}): {}",
            REDUCE_WAIT.as_secs(),
            describe(&files, &seen)
        )));
    }
    let unique = n(&st, "segment_unique_bytes");
    let stored = n(&st, "segment_stored_bytes");
    h.info(format!(
        "reduced within {:.1} s: {total} B in {count} files, {unique} B after dedup, {stored} B after compression, {} B raw in segments",
        took.as_secs_f64(),
        n(&st, "segment_raw_bytes")
    ));
    // The second copy adds nothing; the rest is unique (random, or text stored once).
    if unique > total - dup.min(big) + (64 << 10) {
        h.fail(format!(
            "the copy of big was stored again: {unique} B after dedup of {total} B"
        ));
    }
    if stored >= unique {
        h.fail(format!(
            "nothing compressed: {stored} B stored of {unique} B (the text compresses)"
        ));
    }
    let reduced = h.settled(srv, "reduced (before the guest's reads)")?;

    // 2. The guest reads everything after a remount: sealed, through the MDS, which
    // assembles; not sealed, through the data server a read layout names, which assembles.
    h.ctx.rdv.post("reduced");
    h.await_guest("read")?;
    let read = h.settled(srv, "read (every file read back after a remount)")?;
    h.ctx.rdv.post("counted");
    let (mr, _, dr, _) = deltas(&reduced, &read);
    let sealed = !matches!(
        srv.spec,
        crate::server::ServerSpec::CfsClusterReduce { sealed: false }
    );
    h.info(format!(
        "reads of the reduced files: MDS read {mr} B; data servers served {dr} B (to the MDS, or to the guest through reduced-read layouts)"
    ));
    if sealed && mr < total {
        h.fail(format!(
            "the reduced files were not read through the MDS: it read {mr} B of {total} B"
        ));
    }
    if !sealed && (mr >= total / 4 || dr < total) {
        h.fail(format!(
            "the reduced files were not read through the data servers: the MDS read {mr} B and the data servers served {dr} B of {total} B"
        ));
    }

    // 3. A write to one copy: back to mirrors, then reduced again; the other copy unchanged.
    h.await_guest("overwritten")?;
    let (seen, st, ok, took) = wait_reduced(&dirs, srv, &files, count, REDUCE_WAIT);
    if !ok {
        return Err(h.fail(format!(
            "not reduced again within {} s after the overwrite (status {st}): {}",
            REDUCE_WAIT.as_secs(),
            describe(&files, &seen)
        )));
    }
    h.info(format!(
        "big reduced again after the overwrite within {:.1} s",
        took.as_secs_f64()
    ));
    h.ctx.rdv.post("rereduced");

    // 4. The second copy removed: it no longer counts; the first still reads (guest).
    h.await_guest("removed")?;
    let t0 = Instant::now();
    loop {
        let st = data_status(srv).unwrap_or_default();
        if n(&st, "reduced_files") == count - 1 {
            h.info(format!(
                "dup removed: {} files reduced, {} B after dedup, within {:.1} s",
                count - 1,
                n(&st, "segment_unique_bytes"),
                t0.elapsed().as_secs_f64()
            ));
            break;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            return Err(h.fail(format!("dup removed, but after 60 s the status says {st}")));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    h.ctx.rdv.post("swept");
    Ok(())
}
