//! Chunk store throughput, against plain file I/O measured in the same run.
//!
//! `cargo run --release -p chunkstore --example chunkbench [MiB] [rounds] [dir]`
//!
//! Disks of shared machines are noisy, so every target runs `rounds` times, interleaved, and the
//! best figure of each column is printed.
//!
//! For several chunk/block geometries: sequential 1 MiB writes (unstable then one commit, and
//! stable = fdatasync per write), sequential 1 MiB reads (page cache hot, and cold when
//! /proc/sys/vm/drop_caches is writable), and random 4 KiB overwrites (the read-modify-write cost
//! of the block size). The "raw" line does the same I/O on one plain file with no checksums.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;

use chunkstore::{ChunkStore, Config};

const MIB: u64 = 1 << 20;

fn pattern(len: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn drop_caches() -> bool {
    // SAFETY: sync(2) has no preconditions.
    unsafe { libc::sync() };
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

struct Row {
    write_unstable: f64,
    write_stable: f64,
    read_hot: f64,
    read_cold: Option<f64>,
    rand4k_iops: f64,
}

trait Target {
    fn write(&self, off: u64, data: &[u8], stable: bool);
    fn commit(&self);
    fn read(&self, off: u64, len: u64, size: u64) -> Vec<u8>;
}

struct Store(ChunkStore);
impl Target for Store {
    fn write(&self, off: u64, data: &[u8], stable: bool) {
        self.0
            .blocking()
            .write(1, off, data, stable)
            .expect("write");
    }
    fn commit(&self) {
        self.0.blocking().commit(1).expect("commit");
    }
    fn read(&self, off: u64, len: u64, size: u64) -> Vec<u8> {
        self.0.blocking().read(1, off, len, size).expect("read").0
    }
}

struct Raw(File);
impl Target for Raw {
    fn write(&self, off: u64, data: &[u8], stable: bool) {
        self.0.write_all_at(data, off).expect("write");
        if stable {
            self.0.sync_data().expect("sync");
        }
    }
    fn commit(&self) {
        self.0.sync_data().expect("sync");
    }
    fn read(&self, off: u64, len: u64, _size: u64) -> Vec<u8> {
        let mut b = vec![0u8; len as usize];
        self.0.read_exact_at(&mut b, off).expect("read");
        b
    }
}

fn run(t: &dyn Target, total: u64, stable_total: u64) -> Row {
    let buf = pattern(MIB as usize);
    let n = total / MIB;
    let t0 = Instant::now();
    for i in 0..n {
        t.write(i * MIB, &buf, false);
    }
    t.commit();
    let write_unstable = total as f64 / MIB as f64 / t0.elapsed().as_secs_f64();

    let t0 = Instant::now();
    for i in 0..stable_total / MIB {
        t.write(i * MIB, &buf, true);
    }
    let write_stable = stable_total as f64 / MIB as f64 / t0.elapsed().as_secs_f64();

    let t0 = Instant::now();
    for i in 0..n {
        let d = t.read(i * MIB, MIB, total);
        assert_eq!(d.len() as u64, MIB);
    }
    let read_hot = total as f64 / MIB as f64 / t0.elapsed().as_secs_f64();

    let read_cold = if drop_caches() {
        let t0 = Instant::now();
        for i in 0..n {
            t.read(i * MIB, MIB, total);
        }
        Some(total as f64 / MIB as f64 / t0.elapsed().as_secs_f64())
    } else {
        None
    };

    let small = pattern(4096);
    let ops = 20_000u64;
    let mut x = 12345u64;
    let t0 = Instant::now();
    for _ in 0..ops {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let off = ((x >> 20) % (total / 4096)) * 4096;
        t.write(off, &small, false);
    }
    t.commit();
    let rand4k_iops = ops as f64 / t0.elapsed().as_secs_f64();
    Row {
        write_unstable,
        write_stable,
        read_hot,
        read_cold,
        rand4k_iops,
    }
}

fn print(name: &str, r: &Row, base: Option<&Row>) {
    let ratio = |v: f64, b: Option<f64>| match b {
        Some(b) => format!("{v:8.0} ({:4.2}x)", v / b),
        None => format!("{v:8.0}        "),
    };
    println!(
        "{name:<22} {} {} {} {} {}",
        ratio(r.write_unstable, base.map(|b| b.write_unstable)),
        ratio(r.write_stable, base.map(|b| b.write_stable)),
        ratio(r.read_hot, base.map(|b| b.read_hot)),
        match r.read_cold {
            Some(c) => ratio(c, base.and_then(|b| b.read_cold)),
            None => format!("{:>15}", "n/a"),
        },
        ratio(r.rand4k_iops, base.map(|b| b.rand4k_iops)),
    );
}

fn best(rows: &[Row]) -> Row {
    let max = |f: &dyn Fn(&Row) -> f64| rows.iter().map(f).fold(0.0, f64::max);
    Row {
        write_unstable: max(&|r| r.write_unstable),
        write_stable: max(&|r| r.write_stable),
        read_hot: max(&|r| r.read_hot),
        read_cold: rows.iter().filter_map(|r| r.read_cold).reduce(f64::max),
        rand4k_iops: max(&|r| r.rand4k_iops),
    }
}

/// blake3 throughput on blocks of `bs` bytes: the CPU cost of verifying reads.
fn hash_rate(bs: usize) -> f64 {
    let buf = pattern(64 * MIB as usize);
    let t0 = Instant::now();
    let mut acc = 0u8;
    for _ in 0..4 {
        for b in buf.chunks(bs) {
            acc ^= blake3::hash(b).as_bytes()[0];
        }
    }
    std::hint::black_box(acc);
    (4 * 64) as f64 / t0.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let total_mib: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(256);
    let rounds: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3);
    let total = total_mib * MIB;
    let stable_total = (total / 4).max(MIB);
    let tmp;
    let base_dir: &Path = match args.get(3) {
        Some(p) => Path::new(p),
        None => {
            tmp = tempfile::tempdir().expect("tempdir");
            tmp.path()
        }
    };
    println!(
        "chunkbench: {total_mib} MiB sequential 1 MiB I/O, {} MiB stable, 20000 random 4 KiB writes, best of {rounds}",
        stable_total / MIB
    );
    println!(
        "blake3 single thread: {:.0} MiB/s on 4 KiB blocks, {:.0} MiB/s on 64 KiB blocks",
        hash_rate(4096),
        hash_rate(64 << 10)
    );
    println!(
        "{:<22} {:>15} {:>15} {:>15} {:>15} {:>15}",
        "MiB/s (ratio to raw)",
        "write+commit",
        "write stable",
        "read hot",
        "read cold",
        "rand 4K IOPS"
    );
    let geometries = [
        (MIB, 4096),
        (4 * MIB, 4096),
        (8 * MIB, 4096),
        (16 * MIB, 4096),
        (4 * MIB, 64 << 10),
    ];
    let mut raw_rows = Vec::new();
    let mut rows: Vec<Vec<Row>> = geometries.iter().map(|_| Vec::new()).collect();
    for _ in 0..rounds {
        let raw_path = base_dir.join("raw");
        let raw = Raw(OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&raw_path)
            .expect("raw file"));
        raw_rows.push(run(&raw, total, stable_total));
        drop(raw);
        let _ = std::fs::remove_file(&raw_path);
        for (g, &(cs, bs)) in geometries.iter().enumerate() {
            let dir = base_dir.join(format!("store-{cs}-{bs}"));
            let store = ChunkStore::open_with(
                &dir,
                Config {
                    chunk_size: cs,
                    block_size: bs,
                },
            )
            .expect("open");
            rows[g].push(run(&Store(store), total, stable_total));
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    let base = best(&raw_rows);
    print("raw file", &base, None);
    for (g, &(cs, bs)) in geometries.iter().enumerate() {
        let name = format!("chunk {}M block {}K", cs / MIB, bs / 1024);
        print(&name, &best(&rows[g]), Some(&base));
    }
}
