//! Helpers of the erasure-coding tests (`ec_encode.rs`, `ec_repair.rs`, `ec_data_servers.rs`):
//! whole files through the MDS, the `mds.data` status, and where a shard's bytes are on disk.
use std::path::PathBuf;
use std::time::{Duration, Instant};

use client::{CreateMode, SetAttrs};
use proto::nfs4::*;

use super::cluster::Cluster;

/// Waits until `f` holds, or fails with `what` after `secs`; how long it took.
pub fn wait_for(secs: u64, what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < Duration::from_secs(secs),
            "{what} within {secs} s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("{what}: after {:?}", t.elapsed());
    t.elapsed()
}

/// Shard headers (`shards/<object id>` in each data directory) of `ds1`..`dsN`, counted.
pub fn shard_counts(cl: &Cluster, n: usize) -> Vec<usize> {
    (1..=n)
        .map(|i| {
            std::fs::read_dir(cl.ds_dir(&format!("ds{i}")).join("shards"))
                .map(|d| {
                    d.filter_map(Result::ok)
                        .filter(|e| !e.file_name().to_string_lossy().ends_with(".tmp"))
                        .count()
                })
                .unwrap_or(0)
        })
        .collect()
}

/// Bytes of file data the chunk stores of `ds1`..`dsN` hold (chunk files' sizes, every
/// object, shards included).
pub fn stored_bytes(cl: &Cluster, n: usize) -> u64 {
    fn walk(p: &std::path::Path) -> u64 {
        std::fs::read_dir(p)
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| match e.file_type() {
                        Ok(t) if t.is_dir() => walk(&e.path()),
                        Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
                        Err(_) => 0,
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    (1..=n)
        .map(|i| walk(&cl.ds_dir(&format!("ds{i}")).join("chunks").join("objects")))
        .sum()
}

/// `mds.data` of `cfs admin status --json`: bytes mirrored and encoded, logical and raw.
pub fn data_status(cl: &Cluster) -> serde_json::Value {
    let out = std::process::Command::new(super::BIN)
        .args(["admin", "status", "--json", "--config"])
        .arg(cl.mds_toml())
        .output()
        .expect("cfs admin status");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    v["mds"]["data"].clone()
}

/// OPEN's create mode that makes `path` an empty file (0644), whether it existed or not.
pub fn create_empty() -> Option<CreateMode> {
    Some(CreateMode::Unchecked(SetAttrs {
        mode: Some(0o644),
        size: Some(0),
        ..Default::default()
    }))
}

/// Writes `data` to `path` through the MDS (FILE_SYNC) and closes it; its inode number.
pub fn write_file(cl: &Cluster, path: &str, data: &[u8]) -> u64 {
    let c = cl.client(false);
    let (f, ino) = write_open(cl, &c, path, data);
    cl.rt.block_on(c.close(&f)).expect("close");
    let _ = cl.rt.block_on(c.shutdown());
    ino
}

/// Creates `path` through `c`, writes `data` to it (FILE_SYNC) and leaves it open: the open
/// file and its inode number.
pub fn write_open(
    cl: &Cluster,
    c: &client::Client,
    path: &str,
    data: &[u8],
) -> (client::OpenFile, u64) {
    let f = cl
        .rt
        .block_on(c.open_path(path, OPEN4_SHARE_ACCESS_BOTH, create_empty()))
        .expect("open");
    cl.rt
        .block_on(c.write_all(&f, 0, data, StableHow4::FileSync4))
        .expect("write");
    let ino = cl.rt.block_on(c.getattr(&f.fh)).expect("getattr").fileid;
    (f, ino)
}

/// The whole file through the MDS (which reads an encoded file through an assembling data
/// server); up to one byte past `len`, so a file longer than expected shows.
pub fn read_file(cl: &Cluster, path: &str, len: usize) -> Vec<u8> {
    read_file_with(cl, cl.client(false), path, len)
}

/// `read_file` through client `c` (which it shuts down).
pub fn read_file_with(cl: &Cluster, c: client::Client, path: &str, len: usize) -> Vec<u8> {
    let f = cl
        .rt
        .block_on(c.open_path(path, OPEN4_SHARE_ACCESS_READ, None))
        .expect("open for reading");
    let mut out = Vec::new();
    while out.len() < len + 1 {
        let (d, eof) = cl
            .rt
            .block_on(c.read_full(&f, out.len() as u64, 1 << 20))
            .expect("read");
        out.extend_from_slice(&d);
        if eof || d.is_empty() {
            break;
        }
    }
    cl.rt.block_on(c.close(&f)).expect("close");
    let _ = cl.rt.block_on(c.shutdown());
    out
}

/// Chunk file 0 of object `id` in `role`'s chunk store, and the offset of its first data
/// block (past the preamble: a 64-byte header and two 32-byte sums per block, 4 KiB aligned).
pub fn chunk_file(cl: &Cluster, role: &str, id: u64) -> (PathBuf, u64) {
    let dir = cl.ds_dir(role).join("chunks");
    let conf = std::fs::read_to_string(dir.join("chunkstore.conf")).expect("chunkstore.conf");
    let get = |k: &str| -> u64 {
        conf.lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix('=')?.trim().parse().ok())
            .expect("geometry in chunkstore.conf")
    };
    let (chunk, bs) = (get("chunk_size"), get("block_size"));
    let data_start = (64 + 2 * (chunk / bs) * 32).div_ceil(4096) * 4096;
    let path = dir
        .join("objects")
        .join(format!("{:02x}", id & 0xff))
        .join(format!("{id:016x}"))
        .join("0");
    (path, data_start)
}
