//! Usage per export (issue 46, item 5) on real processes: `cfs cluster up` with three data
//! servers (2+1), `--encode-after 1 --reduce on`, and two exports. `/x` holds two copies of
//! the same random bytes; `/y` the workspace's source text and a third copy of those bytes.
//! Once every file is reduced, `cfs admin status` and `/metrics` must say: in `/x`, logical
//! bytes twice those after dedup; in `/y`, text that compresses (after compression below
//! after dedup); the random bytes shared by both exports counted in each and once in all;
//! raw bytes the stored ones with parity, as the data servers' disks hold them.
use crate::common;

use common::cluster::Cluster;
use common::ec::{data_status, wait_for, write_file};
use common::random_bytes;
use serde_json::Value;

// Clusters of four processes on a machine that may have two cores: one at a time.
use common::SERIAL;

const DS_ROLES: usize = 3;

/// `mds` of `cfs admin status --json`.
fn mds_status(cl: &Cluster) -> Value {
    let out = std::process::Command::new(common::BIN)
        .args(["admin", "status", "--json", "--config"])
        .arg(cl.mds_toml())
        .output()
        .expect("cfs admin status");
    serde_json::from_slice::<Value>(&out.stdout).map_or(Value::Null, |v| v["mds"].clone())
}

use crate::data_reduction::n;

#[test]
fn usage_per_export_counts_dedup_compression_and_raw_bytes() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let t = tempfile::tempdir().expect("tempdir");
    let cl = Cluster::start_sized(
        t.path(),
        DS_ROLES,
        &["--encode-after", "1", "--reduce", "on"],
    );
    let data = random_bytes(3 << 20, 0x4605);
    let text = crate::data_reduction::source_text(2 << 20);
    let (r, tx) = (data.len() as u64, text.len() as u64);
    {
        let c = cl.client(false);
        let root = cl.rt.block_on(c.lookup_path("/")).expect("root");
        for d in ["x", "y"] {
            cl.rt.block_on(c.mkdir(&root, d, 0o755)).expect("mkdir");
        }
        let _ = cl.rt.block_on(c.shutdown());
    }
    let inos = [
        write_file(&cl, "/x/one", &data),
        write_file(&cl, "/x/two", &data),
        write_file(&cl, "/y/text", &text),
        write_file(&cl, "/y/three", &data),
    ];
    wait_for(60, "the four files reduced", || {
        n(&data_status(&cl), "reduced_files") == 4
    });
    // The mirror copies gone: the data servers hold the segments' shards only.
    wait_for(30, "the mirror copies deleted", || {
        inos.iter()
            .all(|i| cl.chunk_files(*i).iter().all(|(_, n)| *n == 0))
    });

    // Two exports, and no "/" (an export must exist when the MDS starts).
    cl.kill9("mds");
    let mut toml = std::fs::read_to_string(cl.mds_toml()).expect("mds.toml");
    toml.push_str("\n[[export]]\npath = \"/x\"\n\n[[export]]\npath = \"/y\"\n");
    std::fs::write(cl.mds_toml(), toml).expect("write mds.toml");
    let _mds = cl.restart_mds();
    let mut m = Value::Null;
    wait_for(30, "a usage pass over both exports", || {
        m = mds_status(&cl);
        m["usage"]["exports"]
            .as_array()
            .is_some_and(|a| a.len() == 2)
    });
    let u = &m["usage"];
    eprintln!("{}", serde_json::to_string_pretty(u).unwrap_or_default());
    assert_eq!(u["complete"], true, "{u}");
    let x = &u["exports"][0];
    let y = &u["exports"][1];
    let all = &u["all_exports"];
    assert_eq!(
        (x["path"].as_str(), y["path"].as_str()),
        (Some("/x"), Some("/y"))
    );

    // /x: two copies, the room of one.
    assert_eq!(n(x, "files"), 2);
    assert_eq!(n(x, "logical_bytes"), 2 * r);
    assert_eq!(n(x, "after_dedup_bytes"), r, "random chunks never repeat");
    // Random bytes do not compress: stored as they are, plus the segments' headers and
    // chunk tables (48 bytes a chunk of ~32 KiB).
    let xc = n(x, "after_compression_bytes");
    assert!(xc >= r && xc < r + r / 100, "{xc}");
    // Raw: 2+1, parity a unit per segment: 1.5 times, up to 2 for a short last segment.
    let xr = n(x, "raw_bytes");
    assert!(xr * 2 >= xc * 3 && xr <= xc * 2, "raw {xr} for {xc} stored");

    // /y: the text and a third copy, nothing deduplicated within the export.
    assert_eq!(n(y, "files"), 2);
    assert_eq!(n(y, "logical_bytes"), tx + r);
    assert_eq!(n(y, "after_dedup_bytes"), tx + r);
    let yc = n(y, "after_compression_bytes");
    assert!(yc < n(y, "after_dedup_bytes"), "the text compresses: {yc}");
    assert!(
        yc < r + tx / 2,
        "source text compresses at least 2:1 with zstd: {yc}"
    );
    let yr = n(y, "raw_bytes");
    assert!(yr * 2 >= yc * 3 && yr <= yc * 2, "raw {yr} for {yc} stored");

    // All exports: the random bytes both share count once.
    assert_eq!(n(all, "files"), 4);
    assert_eq!(n(all, "logical_bytes"), 3 * r + tx);
    assert_eq!(n(all, "after_dedup_bytes"), r + tx);
    // /y's files refer to every chunk of every segment (the text's, and all of the random
    // bytes'): all exports together are /y, where a sum of the two would count /x again.
    assert_eq!(n(all, "after_compression_bytes"), yc);
    assert_eq!(n(all, "raw_bytes"), yr);
    // Every live segment is /y's: the cluster-wide figures count the same shards.
    let d = &m["data"];
    assert_eq!(n(d, "segment_stored_bytes"), yc);
    assert_eq!(n(d, "segment_raw_bytes"), yr);
    // The raw bytes are the shards the data servers' disks hold: each shard's chunk file
    // adds the chunk store's checksum table and block rounding (68 KiB a file of at most a
    // 16 MiB chunk, measured), and nothing else is there.
    let disk = common::ec::stored_bytes(&cl, DS_ROLES);
    let shard_files = common::ec::shard_counts(&cl, DS_ROLES)
        .iter()
        .sum::<usize>() as u64;
    let ar = n(all, "raw_bytes");
    eprintln!("raw bytes counted {ar}, on the data servers' disks {disk} in {shard_files} shards");
    assert!(
        ar <= disk && disk <= ar + shard_files * (72 << 10),
        "{ar} counted, {disk} on disk"
    );

    // The human table has a row per export and one for all of them.
    let o = common::cfs(t.path(), &["admin", "status", "--config", &cl.mds_toml()]);
    assert!(o.ok(), "{}", o.stderr);
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.contains("usage by export"), "{table}");
    for row in ["/x ", "/y ", "(all exports)"] {
        assert!(
            table.lines().any(|l| l.trim_start().starts_with(row)),
            "no {row:?} row: {table}"
        );
    }

    // /metrics: the same numbers, one series per export and stage.
    let text = cl.metrics_text();
    let sample = |series: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {series} in /metrics"))
    };
    // The pass runs again meanwhile; nothing changed, so it finds the same.
    for (e, v) in [("/x", x), ("/y", y)] {
        for (stage, key) in [
            ("logical", "logical_bytes"),
            ("after_dedup", "after_dedup_bytes"),
            ("after_compression", "after_compression_bytes"),
            ("raw", "raw_bytes"),
        ] {
            assert_eq!(
                sample(&format!(
                    "cfs_cluster_export_bytes{{export=\"{e}\",stage=\"{stage}\"}}"
                )),
                n(v, key) as f64,
                "{e} {stage}"
            );
        }
        assert_eq!(
            sample(&format!("cfs_cluster_export_files{{export=\"{e}\"}}")),
            n(v, "files") as f64
        );
    }
    assert_eq!(
        sample("cfs_cluster_exports_bytes{stage=\"after_dedup\"}"),
        (r + tx) as f64
    );
    assert_eq!(sample("cfs_cluster_export_usage_complete"), 1.0);
}
