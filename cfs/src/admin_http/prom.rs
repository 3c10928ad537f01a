//! `/metrics`: this process's metrics in the Prometheus text format. Names follow Prometheus's
//! conventions (`cfs_` prefix, base units, `_total` counters, `_seconds` histograms); labels
//! are operation names (a fixed set), data-server ids (one per registered data server) and
//! export paths (one per configured export).
//! Gauges are read from the servers' state at scrape time.
use metrics::expo::Exposition;
use metrics::OpTable;

use super::names::{nfs3_proc, nfs4_op};
use super::{unix, Admin};

/// Histograms of the operations seen so far (a label appears with its first operation), and
/// their error counts.
fn op_families<const N: usize>(
    e: &mut Exposition,
    prefix: &str,
    what: &str,
    t: &OpTable<N>,
    name: fn(usize) -> &'static str,
) {
    let seen: Vec<usize> = (0..N).filter(|&i| t.histogram(i).count() != 0).collect();
    let labels: Vec<[(&str, &str); 1]> = seen.iter().map(|&i| [("op", name(i))]).collect();
    let hs: Vec<_> = seen
        .iter()
        .zip(&labels)
        .map(|(&i, l)| (&l[..], t.histogram(i)))
        .collect();
    e.histogram(
        &format!("{prefix}_operation_duration_seconds"),
        &format!("Time to serve one {what}, by operation."),
        &hs,
    );
    let errs: Vec<_> = seen
        .iter()
        .zip(&labels)
        .map(|(&i, l)| (&l[..], t.errors(i).get()))
        .collect();
    e.counter(
        &format!("{prefix}_operation_errors_total"),
        &format!("{what}s that returned an error status, by operation."),
        &errs,
    );
}

/// CPU seconds, resident bytes and open descriptors of this process, from /proc.
fn process(e: &mut Exposition, a: &Admin) {
    e.gauge(
        "process_start_time_seconds",
        "Start time of the process since the Unix epoch.",
        &[(&[], unix(a.sources.started))],
    );
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command name, which is in parentheses and may hold spaces.
        if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
            let f: Vec<&str> = rest.split_whitespace().collect();
            let tck = 100.0; // USER_HZ on Linux
            let num = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
            // utime and stime are fields 14 and 15 of stat(5), 12 and 13 after the name.
            e.counter_f64(
                "process_cpu_seconds_total",
                "User and system CPU time of the process, in seconds.",
                &[(&[], (num(11) + num(12)) / tck)],
            );
            e.gauge(
                "process_resident_memory_bytes",
                "Resident memory of the process.",
                &[(&[], num(21) * 4096.0)],
            );
        }
    }
    if let Some(n) = crate::alloc_count::allocations() {
        e.counter(
            "cfs_process_allocations_total",
            "Heap allocations (alloc and realloc calls) since start; only with CFS_COUNT_ALLOCS=1.",
            &[(&[], n)],
        );
    }
    if let Ok(d) = std::fs::read_dir("/proc/self/fd") {
        e.gauge(
            "process_open_fds",
            "Open file descriptors.",
            &[(&[], d.count() as f64)],
        );
    }
}

fn mds_families(e: &mut Exposition, a: &Admin, m: &mds::admin::Admin) {
    use metrics::mds::*;
    op_families(e, "cfs_nfs4", "NFSv4 operation", &OPS, nfs4_op);
    e.counter(
        "cfs_nfs4_compounds_total",
        "NFSv4 COMPOUND requests served.",
        &[(&[], COMPOUNDS.get())],
    );
    e.counter(
        "cfs_mds_rpc_received_bytes_total",
        "RPC argument bytes received on the NFS port.",
        &[(&[], RPC_RECEIVED_BYTES.get())],
    );
    e.counter(
        "cfs_mds_rpc_sent_bytes_total",
        "RPC reply bytes sent on the NFS port.",
        &[(&[], RPC_SENT_BYTES.get())],
    );
    e.counter(
        "cfs_nfs4_read_bytes_total",
        "File bytes returned by NFSv4 READ and READ_PLUS served by the MDS.",
        &[(&[], READ_BYTES.get())],
    );
    e.counter(
        "cfs_nfs4_write_bytes_total",
        "File bytes carried by NFSv4 WRITE to the MDS.",
        &[(&[], WRITE_BYTES.get())],
    );
    let c = m.state_counts();
    let g = |e: &mut Exposition, name: &str, help: &str, v: usize| {
        e.gauge(name, help, &[(&[], v as f64)]);
    };
    g(
        e,
        "cfs_mds_clients",
        "Confirmed NFSv4 clients (courtesy clients included).",
        c.clients,
    );
    g(
        e,
        "cfs_mds_courtesy_clients",
        "Clients whose lease ran out, state kept until a conflict.",
        c.courtesy,
    );
    g(e, "cfs_mds_sessions", "NFSv4.1 sessions.", c.sessions);
    g(e, "cfs_mds_opens", "Open stateids.", c.opens);
    g(e, "cfs_mds_locks", "Byte-range lock stateids.", c.locks);
    g(
        e,
        "cfs_mds_delegations",
        "Delegations held (file and directory).",
        c.delegations,
    );
    g(
        e,
        "cfs_mds_write_delegations",
        "Write delegations held (of cfs_mds_delegations).",
        c.write_delegations,
    );
    e.counter(
        "cfs_mds_write_delegations_granted_total",
        "Write delegations granted.",
        &[(&[], c.write_delegations_granted)],
    );
    e.counter(
        "cfs_mds_cb_getattr_total",
        "CB_GETATTRs sent to write delegations' holders for another client's GETATTR.",
        &[(&[], c.cb_getattrs)],
    );
    g(
        e,
        "cfs_mds_layouts",
        "Layout stateids (one per client and file).",
        c.layouts,
    );
    g(
        e,
        "cfs_mds_grace",
        "1 while the grace period after a restart lasts.",
        usize::from(c.in_grace),
    );
    e.histogram(
        "cfs_mds_log_fsync_duration_seconds",
        "fdatasync of the metadata log, one per durable batch.",
        &[(&[], &LOG_FSYNC)],
    );
    tier_families(e, m);
    e.histogram(
        "cfs_mds_checkpoint_duration_seconds",
        "Writing one namespace checkpoint into redb.",
        &[(&[], &CHECKPOINT)],
    );
    let ns = m.namespace_stats();
    let b = a.sources.ns_base;
    e.counter(
        "cfs_mds_log_commands_total",
        "Namespace commands applied.",
        &[(&[], b.commands + ns.commands)],
    );
    e.counter(
        "cfs_mds_log_batches_total",
        "Batches of commands appended to the log (group commit).",
        &[(&[], b.transactions + ns.transactions)],
    );
    e.counter(
        "cfs_mds_log_durable_commits_total",
        "Batches made durable (one fdatasync each).",
        &[(&[], b.durable_commits + ns.durable_commits)],
    );
    e.counter(
        "cfs_mds_checkpoints_total",
        "Namespace checkpoints written.",
        &[(&[], b.checkpoints + ns.checkpoints)],
    );
    let Some(cl) = m.data_servers() else { return };
    let st = &cl.status;
    e.counter(
        "cfs_cluster_layouts_granted_total",
        "pNFS layouts granted.",
        &[(&[], st.layouts_granted)],
    );
    e.counter(
        "cfs_cluster_layouts_recalled_total",
        "pNFS layouts recalled.",
        &[(&[], st.layouts_recalled)],
    );
    e.counter(
        "cfs_cluster_mds_io_bytes_total",
        "File bytes the MDS moved to or from data servers itself (clients without a layout).",
        &[
            (&[("direction", "read")], st.mds_read_bytes),
            (&[("direction", "write")], st.mds_write_bytes),
        ],
    );
    e.gauge(
        "cfs_cluster_degraded_files",
        "Files with fewer mirrors than they should have, waiting for repair.",
        &[(&[], cl.degraded_files as f64)],
    );
    if let Some(r) = m.redundancy() {
        data_families(e, &r);
    }
    if let Some(u) = m.export_usage() {
        usage_families(e, &u);
    }
    if let Some((sealing, key)) = m.encryption() {
        // 0 off, 1 on and the data key unwrapped, 2 on and waiting for it (reads DELAY).
        let state = match (sealing, key) {
            (false, _) => 0.0,
            (true, Some(_)) => 1.0,
            (true, None) => 2.0,
        };
        e.gauge(
            "cfs_cluster_encryption_state",
            "Encryption at rest on this MDS node: 0 off, 1 sealing, 2 waiting for the data key.",
            &[(&[], state)],
        );
    }
    // One series per data server being drained (a handful at most).
    let drains: Vec<(String, f64)> = cl
        .draining
        .iter()
        .filter_map(|(d, left)| Some((d.to_string(), (*left)? as f64)))
        .collect();
    e.gauge(
        "cfs_cluster_drain_files_left",
        "Files and reduction segments still placed on a data server being drained (0: drained, it can be stopped).",
        &drains
            .iter()
            .map(|(d, n)| ([("ds", d.as_str())], *n))
            .collect::<Vec<_>>()
            .iter()
            .map(|(l, n)| (&l[..], *n))
            .collect::<Vec<_>>(),
    );
    let dss = &st.data_servers;
    let ids: Vec<String> = dss
        .iter()
        .map(|d| layout::DsId(d.ds_id).to_string())
        .collect();
    let lab: Vec<[(&str, &str); 1]> = ids.iter().map(|i| [("ds", i.as_str())]).collect();
    let per = |f: &dyn Fn(&proto::cluster::DsStatus) -> f64| -> Vec<(&[(&str, &str)], f64)> {
        dss.iter().zip(&lab).map(|(d, l)| (&l[..], f(d))).collect()
    };
    let per_c = |f: &dyn Fn(&proto::cluster::DsStatus) -> u64| -> Vec<(&[(&str, &str)], u64)> {
        dss.iter().zip(&lab).map(|(d, l)| (&l[..], f(d))).collect()
    };
    e.gauge(
        "cfs_cluster_ds_up",
        "1 while the data server heartbeats (0 down, 0.5 draining).",
        &per(&|d| match d.state {
            proto::cluster::DS_STATE_UP => 1.0,
            proto::cluster::DS_STATE_DRAINING => 0.5,
            _ => 0.0,
        }),
    );
    e.gauge(
        "cfs_cluster_ds_has_room",
        "1 while new files may be placed on the data server.",
        &per(&|d| f64::from(u8::from(d.has_room))),
    );
    e.gauge(
        "cfs_cluster_ds_capacity_bytes",
        "Size of the data server's file system.",
        &per(&|d| d.capacity_bytes as f64),
    );
    e.gauge(
        "cfs_cluster_ds_used_bytes",
        "Bytes the data server's chunk store uses.",
        &per(&|d| d.used_bytes as f64),
    );
    e.gauge(
        "cfs_cluster_ds_avail_bytes",
        "Bytes still available on the data server's file system.",
        &per(&|d| d.avail_bytes as f64),
    );
    e.gauge(
        "cfs_cluster_ds_silent_seconds",
        "Time since the data server's last heartbeat.",
        &per(&|d| d.silent_ms as f64 / 1000.0),
    );
    e.counter(
        "cfs_cluster_ds_read_bytes_total",
        "Bytes the data server served (its heartbeats report them).",
        &per_c(&|d| d.counters.read_bytes),
    );
    e.counter(
        "cfs_cluster_ds_write_bytes_total",
        "Bytes written to the data server.",
        &per_c(&|d| d.counters.write_bytes),
    );
    e.counter(
        "cfs_cluster_ds_operations_total",
        "READ, WRITE and COMMIT served by the data server.",
        &per_c(&|d| d.counters.read_ops + d.counters.write_ops + d.counters.commit_ops),
    );
}

/// How the file system's data is stored (what `cfs admin status` shows under "data"): file
/// bytes and the bytes the data servers hold for them, by form; for data reduction also the
/// bytes after dedup and after compression.
fn data_families(e: &mut Exposition, r: &mds::admin::Redundancy) {
    let by = |m: u64, c: u64, d: u64| {
        [
            (&[("form", "mirrored")][..], m as f64),
            (&[("form", "encoded")][..], c as f64),
            (&[("form", "reduced")][..], d as f64),
        ]
    };
    e.gauge(
        "cfs_cluster_data_files",
        "Regular files by how their bytes are stored.",
        &by(r.mirrored_files, r.encoded_files, r.reduced_files),
    );
    e.gauge(
        "cfs_cluster_data_logical_bytes",
        "File bytes by how they are stored.",
        &by(r.mirrored_bytes, r.encoded_bytes, r.reduced_bytes),
    );
    e.gauge(
        "cfs_cluster_data_raw_bytes",
        "Bytes the data servers hold for them (copies, parity; reduced: the live segments).",
        &by(r.mirrored_raw, r.encoded_raw, r.segment_raw),
    );
    e.gauge(
        "cfs_cluster_reduced_unique_bytes",
        "Data reduction: the live segments' chunk bytes (every reduced file's bytes after dedup).",
        &[(&[], r.segment_unique_bytes as f64)],
    );
    e.gauge(
        "cfs_cluster_reduced_stored_bytes",
        "Data reduction: the live segments' bytes after compression, before parity.",
        &[(&[], r.segment_stored_bytes as f64)],
    );
}

/// Usage per export from the last usage pass (`mds::admin::Admin::export_usage`), labelled
/// by export path: one series per configured export, so as many as the configuration has.
fn usage_families(e: &mut Exposition, r: &mds::admin::UsageReport) {
    let stages = |u: &mds::admin::Usage| {
        [
            ("logical", u.logical),
            ("after_dedup", u.after_dedup),
            ("after_compression", u.after_compression),
            ("raw", u.raw),
        ]
    };
    let labels: Vec<[(&str, &str); 2]> = r
        .exports
        .iter()
        .flat_map(|x| stages(&x.usage).map(|(s, _)| [("export", x.path.as_str()), ("stage", s)]))
        .collect();
    let values: Vec<u64> = r
        .exports
        .iter()
        .flat_map(|x| stages(&x.usage).map(|(_, v)| v))
        .collect();
    e.gauge(
        "cfs_cluster_export_bytes",
        "Bytes of each export's files: logical (their sizes), after_dedup (each distinct chunk once), after_compression (as stored), raw (on the data servers, copies and parity included).",
        &labels
            .iter()
            .zip(&values)
            .map(|(l, v)| (&l[..], *v as f64))
            .collect::<Vec<_>>(),
    );
    let all = stages(&r.total);
    let all_labels: Vec<[(&str, &str); 1]> = all.iter().map(|(s, _)| [("stage", *s)]).collect();
    e.gauge(
        "cfs_cluster_exports_bytes",
        "cfs_cluster_export_bytes of all exports together: a chunk several exports refer to counts once.",
        &all_labels
            .iter()
            .zip(&all)
            .map(|(l, (_, v))| (&l[..], *v as f64))
            .collect::<Vec<_>>(),
    );
    let paths: Vec<[(&str, &str); 1]> = r
        .exports
        .iter()
        .map(|x| [("export", x.path.as_str())])
        .collect();
    e.gauge(
        "cfs_cluster_export_files",
        "Regular files in each export (one with several names counts once).",
        &paths
            .iter()
            .zip(&r.exports)
            .map(|(l, x)| (&l[..], x.usage.files as f64))
            .collect::<Vec<_>>(),
    );
    let age = std::time::SystemTime::now()
        .duration_since(r.finished)
        .map_or(0.0, |d| d.as_secs_f64());
    e.gauge(
        "cfs_cluster_export_usage_age_seconds",
        "Since the usage pass that counted the export series ended.",
        &[(&[], age)],
    );
    e.gauge(
        "cfs_cluster_export_usage_complete",
        "1 if that pass read every directory and segment of the exports on this node, 0 if it could not (a bound, a shard elsewhere).",
        &[(&[], f64::from(u8::from(r.complete)))],
    );
}

fn ds_families(e: &mut Exposition, d: &ds::DsServer) {
    op_families(
        e,
        "cfs_ds",
        "NFSv3 data-server procedure",
        &metrics::ds::OPS,
        nfs3_proc,
    );
    let c = d.counters();
    e.counter(
        "cfs_ds_read_bytes_total",
        "Bytes READ from this data server.",
        &[(&[], c.read_bytes)],
    );
    e.counter(
        "cfs_ds_write_bytes_total",
        "Bytes WRITTEN to this data server.",
        &[(&[], c.write_bytes)],
    );
    e.counter(
        "cfs_ds_refused_total",
        "I/O refused for a bad, foreign or fenced handle.",
        &[(&[], c.refused_ops)],
    );
    let (cap, avail) = d.space();
    e.gauge(
        "cfs_ds_capacity_bytes",
        "Size of this data server's file system.",
        &[(&[], cap as f64)],
    );
    e.gauge(
        "cfs_ds_avail_bytes",
        "Bytes available on this data server's file system.",
        &[(&[], avail as f64)],
    );
    e.gauge(
        "cfs_ds_registered",
        "1 once the MDS answered a heartbeat.",
        &[(&[], f64::from(u8::from(d.registered())))],
    );
}

pub fn render(a: &Admin) -> String {
    let mut e = Exposition::new();
    e.gauge(
        "cfs_build_info",
        "The cfs version running (always 1).",
        &[(&[("version", env!("CARGO_PKG_VERSION"))], 1.0)],
    );
    e.gauge(
        "cfs_counters_since_timestamp_seconds",
        "Since when the counters run: the first start, or the last start after a crash (a clean restart carries them on).",
        &[(&[], unix(a.sources.counters_since))],
    );
    process(&mut e, a);
    if let Some(m) = &a.sources.mds {
        mds_families(&mut e, a, m);
    }
    if let Some(d) = &a.sources.ds {
        ds_families(&mut e, d);
    }
    e.finish()
}

/// The object-store tier (`[tier]`): the queue and lag from the records, the rest counted.
fn tier_families(e: &mut Exposition, m: &mds::admin::Admin) {
    use metrics::tier::*;
    let Some((t, _, _)) = m.tier() else {
        return;
    };
    let now = unix(std::time::SystemTime::now());
    let lag = if t.pending_files == 0 {
        0.0
    } else {
        (now - t.oldest_pending_secs as f64).max(0.0)
    };
    e.gauge(
        "cfs_tier_bytes",
        "File bytes in the bucket as they are now (in_bucket), still to upload (queued), kept on flash only (flash_only, tiered mode).",
        &[
            (&[("state", "in_bucket")], t.current_bytes as f64),
            (&[("state", "queued")], t.pending_bytes as f64),
            (&[("state", "evicted")], t.evicted_bytes as f64),
            (&[("state", "flash_only")], t.flash_only_bytes as f64),
        ],
    );
    e.gauge(
        "cfs_tier_files",
        "Files in the bucket as they are now (in_bucket), still to upload (queued), kept on flash only (flash_only, tiered mode).",
        &[
            (&[("state", "in_bucket")], t.current_files as f64),
            (&[("state", "queued")], t.pending_files as f64),
            (&[("state", "flash_only")], t.flash_only_files as f64),
        ],
    );
    e.gauge(
        "cfs_tier_upload_lag_seconds",
        "Since the oldest file still to upload last changed: the acknowledged data a lost site would lose.",
        &[(&[], lag)],
    );
    e.gauge(
        "cfs_tier_metadata_lag_seconds",
        "Since the oldest shard this node leads has had changes the bucket does not hold (0: it holds all).",
        &[(&[], metadata_lag().unwrap_or(0) as f64)],
    );
    e.counter(
        "cfs_tier_metadata_bytes_total",
        "Bytes of shard checkpoints this node put in the bucket.",
        &[(&[], METADATA_BYTES.get())],
    );
    e.counter(
        "cfs_tier_uploaded_bytes_total",
        "File bytes this node put in the bucket.",
        &[(&[], UPLOADED_BYTES.get())],
    );
    e.counter(
        "cfs_tier_deleted_objects_total",
        "Objects deleted from the bucket after their grace delay.",
        &[(&[], DELETED_OBJECTS.get())],
    );
    e.counter(
        "cfs_tier_s3_errors_total",
        "Requests to the object store that failed after their retries.",
        &[(&[], S3_ERRORS.get())],
    );
    e.gauge(
        "cfs_tier_s3_failing_seconds",
        "Seconds every request to the object store has failed for (0 while it answers).",
        &[(&[], failing_for().unwrap_or(0) as f64)],
    );
    e.gauge(
        "cfs_tier_write_through",
        "1 while flash is past write_through_percent: writes are acknowledged once in the bucket.",
        &[(&[], f64::from(u8::from(write_through())))],
    );
    e.gauge(
        "cfs_tier_flash_used_percent",
        "Percent of flash used where it is fullest (the evictor's measure and the writes since).",
        &[(&[], flash_percent() as f64)],
    );
    e.gauge(
        "cfs_tier_flash_draining",
        "Places (data servers) past the high watermark once, emptied until under the low one.",
        &[(&[], flash_draining() as f64)],
    );
    e.counter(
        "cfs_tier_write_through_acks_total",
        "Acknowledgements (COMMIT, stable WRITE) held until their file was in the bucket.",
        &[(&[], WRITE_THROUGH_ACKS.get())],
    );
    e.counter(
        "cfs_tier_full_refusals_total",
        "Writes refused with NFS4ERR_NOSPC: flash full and nothing could free it (the store failing).",
        &[(&[], FULL_REFUSALS.get())],
    );
    e.counter(
        "cfs_tier_uploads_failed_total",
        "Uploads given up (the store failing, or the file changing underneath).",
        &[(&[], UPLOADS_FAILED.get())],
    );
    e.counter(
        "cfs_tier_evicted_bytes_total",
        "File bytes this node evicted from flash (their bytes stay in the bucket).",
        &[(&[], EVICTED_BYTES.get())],
    );
    e.counter(
        "cfs_tier_eviction_passes_total",
        "Evictor passes that evicted files (flash past the high watermark).",
        &[(&[], EVICTION_PASSES.get())],
    );
    e.counter_f64(
        "cfs_tier_evicting_seconds_total",
        "Seconds this node spent evicting files (with the bytes: how fast flash empties).",
        &[(&[], EVICTING_MICROS.get() as f64 / 1e6)],
    );
    e.counter(
        "cfs_tier_bucket_read_bytes_total",
        "Bytes read from the bucket to serve reads: evicted files, and reduced files' segments.",
        &[(&[], BUCKET_READ_BYTES.get())],
    );
    e.counter(
        "cfs_tier_restored_bytes_total",
        "File bytes of evicted files brought back to flash.",
        &[(&[], RESTORED_BYTES.get())],
    );
    e.histogram(
        "cfs_tier_get_duration_seconds",
        "One ranged GET for a read of an evicted file, retries included.",
        &[(&[], &GET)],
    );
    e.histogram(
        "cfs_tier_put_duration_seconds",
        "One PUT of an object, retries included.",
        &[(&[], &PUT)],
    );
}
