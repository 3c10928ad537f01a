//! Benchmark of the reduction pipeline (not a test): `cargo run -p reduce --release
//! --example bench`. Single-threaded throughout, so every rate is per core.
//!
//! Prints: the speed of each stage alone (chunking, keyed hashing, compression of text and
//! of random data with and without the pretest, decompression, sealing); the chunk-size
//! comparison behind `ChunkParams::DEFAULT`; and the reduction ratio on three data sets
//! (random, a source tree in several edited versions, VM-like images) against zstd -3 of
//! each file and against whole-file dedup, with reduce/assemble rates.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Instant;

use rand::{rngs::StdRng, Rng, RngCore, SeedableRng};
use reduce::chunk::chunks;

// The tests' data helpers (random bytes, the workspace's sources).
#[path = "../tests/common/mod.rs"]
mod common;
use common::{random_bytes, rs_files};
use reduce::compress::{CompressParams, Compressor, Decompressor, Stored};
use reduce::{assemble, reduce, ChunkParams, DataKey, DedupKey, Params, SegmentId};

const MIB: f64 = (1u64 << 20) as f64;
const GIB: f64 = (1u64 << 30) as f64;

/// Seconds `f` takes (best of `runs`).
fn secs(runs: usize, mut f: impl FnMut()) -> f64 {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn tree_files_per_version() -> usize {
    let mut paths = Vec::new();
    rs_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join(".."),
        &mut paths,
    );
    paths.iter().filter(|p| std::fs::read(p).is_ok()).count()
}

/// The workspace's *.rs files as a tree in several versions (like snapshots or copies of a
/// repository): version 0 as is; each later version edits ~15% of the files (a line
/// inserted at a random place) and keeps the rest. Stops at `min_len` bytes.
fn source_tree(min_len: usize) -> Vec<Vec<u8>> {
    let mut paths = Vec::new();
    rs_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join(".."),
        &mut paths,
    );
    paths.sort();
    let mut current: Vec<Vec<u8>> = paths.iter().filter_map(|p| std::fs::read(p).ok()).collect();
    let mut rng = StdRng::seed_from_u64(42);
    let mut files = Vec::new();
    let mut total = 0;
    let mut version = 0;
    while total < min_len {
        if version > 0 {
            for f in current.iter_mut() {
                if rng.gen_bool(0.15) && !f.is_empty() {
                    let at = rng.gen_range(0..f.len());
                    let line = format!("\n// edited in version {version}\n");
                    f.splice(at..at, line.into_bytes());
                }
            }
        }
        for f in &current {
            total += f.len();
            files.push(f.clone());
            if total >= min_len {
                break;
            }
        }
        version += 1;
    }
    files
}

/// A 64 MiB "VM image": 4 KiB blocks that are zeros (free space), text (system files),
/// random (compressed packages, encrypted blobs) or one of a few repeated blocks (page
/// tables, filesystem metadata), in runs; then copies with scattered 4 KiB writes, and one
/// exact clone.
fn vm_images() -> Vec<Vec<u8>> {
    let text = source_tree(8 << 20).concat();
    let mut rng = StdRng::seed_from_u64(7);
    let blocks = 64 << 8; // 64 MiB of 4 KiB
    let mut base = Vec::with_capacity(blocks * 4096);
    let repeated: Vec<Vec<u8>> = (0..4).map(|i| random_bytes(1000 + i, 4096)).collect();
    while base.len() < blocks * 4096 {
        let run = rng.gen_range(1..64) * 4096;
        match rng.gen_range(0..10) {
            0..=2 => base.resize(base.len() + run, 0),
            3..=5 => {
                let at = rng.gen_range(0..text.len() - run);
                base.extend_from_slice(&text[at..at + run]);
            }
            6..=8 => {
                let mut r = vec![0u8; run];
                rng.fill_bytes(&mut r);
                base.extend_from_slice(&r);
            }
            _ => {
                for _ in 0..run / 4096 {
                    base.extend_from_slice(&repeated[rng.gen_range(0..4)]);
                }
            }
        }
    }
    base.truncate(blocks * 4096);
    let mut images = vec![base.clone()];
    for copy in 0..6 {
        let mut img = base.clone();
        for _ in 0..200 {
            let b = rng.gen_range(0..blocks) * 4096;
            rng.fill_bytes(&mut img[b..b + 4096]);
        }
        // A few bytes inserted too: a file grown inside the image (copy 0 and 1 only).
        if copy < 2 {
            let at = rng.gen_range(0..img.len());
            img.splice(at..at, b"grown".iter().copied());
        }
        images.push(img);
    }
    images.push(base);
    images
}

fn whole_file_dedup_ratio(files: &[Vec<u8>]) -> f64 {
    let total: usize = files.iter().map(Vec::len).sum();
    let mut seen = HashSet::new();
    let unique: usize = files
        .iter()
        .filter(|f| seen.insert(blake3::hash(f)))
        .map(Vec::len)
        .sum();
    total as f64 / unique.max(1) as f64
}

fn zstd3_per_file_ratio(files: &[Vec<u8>]) -> f64 {
    let total: usize = files.iter().map(Vec::len).sum();
    let z: usize = files
        .iter()
        .map(|f| {
            zstd::bulk::compress(f, 3)
                .map(|c| c.len())
                .unwrap_or(f.len())
        })
        .sum();
    total as f64 / z as f64
}

fn stages(key: &DedupKey) {
    println!("== stages, one core (GiB/s) ==");
    let random = random_bytes(1, 256 << 20);
    let text = source_tree(64 << 20).concat();
    let cp = ChunkParams::DEFAULT;
    let seed = key.chunker_seed();
    let n = random.len() as f64;
    let t = secs(2, || {
        std::hint::black_box(chunks(&random, &cp, seed).count());
    });
    println!(
        "chunking (FastCDC 2020, 8/32/128 KiB)    {:6.2}",
        n / t / GIB
    );
    let ranges: Vec<_> = chunks(&random, &cp, seed).collect();
    let t = secs(2, || {
        for r in &ranges {
            std::hint::black_box(key.chunk_id(&random[r.clone()]));
        }
    });
    println!(
        "hashing (keyed BLAKE3, per chunk)        {:6.2}",
        n / t / GIB
    );

    let text_ranges: Vec<_> = chunks(&text, &cp, seed).collect();
    let mut c = Compressor::new(CompressParams::default()).expect("zstd");
    let mut stored = Vec::new();
    let t = secs(1, || {
        stored = text_ranges
            .iter()
            .map(|r| match c.compress(&text[r.clone()]).expect("zstd") {
                Stored::Compressed(v) => (v, r.len(), true),
                Stored::Raw(b) => (b.to_vec(), r.len(), false),
            })
            .collect();
    });
    let tl = text.len() as f64;
    let out: usize = stored.iter().map(|s| s.0.len()).sum();
    println!(
        "compression, text (zstd 3)               {:6.2}   ratio {:.2}",
        tl / t / GIB,
        tl / out as f64
    );
    let mut d = Decompressor::new().expect("zstd");
    let t = secs(2, || {
        for (s, len, comp) in &stored {
            if *comp {
                std::hint::black_box(d.decompress(s, *len).expect("unzstd"));
            }
        }
    });
    println!(
        "decompression, text                      {:6.2}",
        tl / t / GIB
    );
    let sample = &random[..64 << 20];
    let sample_ranges: Vec<_> = chunks(sample, &cp, seed).collect();
    for pretest in [true, false] {
        let mut c = Compressor::new(CompressParams {
            pretest,
            ..CompressParams::default()
        })
        .expect("zstd");
        let t = secs(2, || {
            for r in &sample_ranges {
                std::hint::black_box(c.compress(&sample[r.clone()]).expect("zstd"));
            }
        });
        println!(
            "compression, random, pretest {:5}       {:6.2}",
            pretest,
            sample.len() as f64 / t / GIB
        );
    }
    let dk = DataKey::from_bytes([3; 32]);
    let id = SegmentId([1; 32]);
    let t = secs(2, || {
        for seg in random.chunks(2 << 20) {
            std::hint::black_box(dk.seal(&id, seg).expect("seal"));
        }
    });
    println!(
        "encryption (ChaCha20-Poly1305, 2 MiB)    {:6.2}",
        n / t / GIB
    );
    let sealed = dk.seal(&id, &random[..2 << 20]).expect("seal");
    let t = secs(2, || {
        for _ in 0..128 {
            std::hint::black_box(dk.open(&id, &sealed).expect("open"));
        }
    });
    println!(
        "decryption                               {:6.2}",
        256.0 * MIB / t / GIB
    );
}

/// Dedup of `v2` against `v1` (fraction of v2's bytes in chunks v1 also has) and chunks/s.
fn shared_fraction(v1: &[u8], v2: &[u8], cp: &ChunkParams, key: &DedupKey) -> (f64, usize) {
    let seed = key.chunker_seed();
    let old: HashSet<_> = chunks(v1, cp, seed).map(|r| key.chunk_id(&v1[r])).collect();
    let mut shared = 0;
    let mut n = 0;
    for r in chunks(v2, cp, seed) {
        n += 1;
        if old.contains(&key.chunk_id(&v2[r.clone()])) {
            shared += r.len();
        }
    }
    (shared as f64 / v2.len() as f64, n)
}

fn chunk_sizes(key: &DedupKey, vm: &[Vec<u8>], tree: &[Vec<u8>]) {
    println!("\n== chunk sizes: shared bytes of an edited copy, chunking speed ==");
    let base = random_bytes(2, 64 << 20);
    let mut rng = StdRng::seed_from_u64(3);
    let mut edited = base.clone();
    for _ in 0..16 {
        let at = rng.gen_range(0..edited.len());
        let n = rng.gen_range(1..16);
        edited.splice(at..at, (0..n).map(|_| rng.gen::<u8>()));
        let at = rng.gen_range(0..edited.len() - 16);
        edited.drain(at..at + rng.gen_range(1..16));
    }
    // Two versions of the tree, each as one archive (tar-like), and the versions as files.
    let per_version = tree_files_per_version();
    let tree_v0 = tree[..per_version].concat();
    let tree_v1 = tree[per_version..2 * per_version].concat();
    let archives: Vec<Vec<u8>> = tree.chunks(per_version).map(|v| v.concat()).collect();
    println!(
        "{:>14} {:>22} {:>9} {:>10} {:>9} {:>9} {:>8} {:>8} {:>6}",
        "min/avg/max",
        "random+32 edits",
        "VM copy",
        "src v1/v0",
        "VM set",
        "src tars",
        "red MB/s",
        "read",
        "GiB/s"
    );
    for (min, avg, max) in [(4, 16, 64), (8, 32, 128), (16, 64, 256), (32, 128, 512)] {
        let cp = ChunkParams::new(min << 10, avg << 10, max << 10).expect("params");
        let (f, n) = shared_fraction(&base, &edited, &cp, key);
        let (fv, _) = shared_fraction(&vm[0], &vm[1], &cp, key);
        let (fs, _) = shared_fraction(&tree_v0, &tree_v1, &cp, key);
        let t = secs(2, || {
            std::hint::black_box(chunks(&base, &cp, 9).count());
        });
        let mut p = Params::new(key.clone());
        p.chunk = cp;
        let (vs, vr, vrd) = run_set(vm, &p);
        let (ss, _, _) = run_set(&archives, &p);
        println!(
            "{:>14} {:>13.2}% ({:4} ch) {:>8.2}% {:>9.2}% {:>8.2}x {:>8.2}x {:>8.0} {:>8.0} {:>6.2}",
            format!("{min}/{avg}/{max} KiB"),
            100.0 * f,
            n,
            100.0 * fv,
            100.0 * fs,
            vs.logical as f64 / vs.stored as f64,
            ss.logical as f64 / ss.stored as f64,
            vs.logical as f64 / vr / MIB,
            vs.logical as f64 / vrd / MIB,
            base.len() as f64 / t / GIB
        );
    }
}

/// Reduce every file of a set against one shared index, then read each back.
/// Returns (stats, reduce seconds, assemble seconds).
fn run_set(files: &[Vec<u8>], params: &Params) -> (reduce::Stats, f64, f64) {
    let mut index = HashMap::new();
    let mut segments: HashMap<SegmentId, Vec<u8>> = HashMap::new();
    let mut stats = reduce::Stats::default();
    let mut recipes = Vec::new();
    let t = Instant::now();
    for f in files {
        let r = reduce(f, params, &index).expect("reduce");
        for s in r.new_segments {
            segments.insert(s.id, s.bytes);
        }
        index.extend(r.new_chunks);
        stats += r.stats;
        recipes.push(r.recipe);
    }
    let reduce_t = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for (r, f) in recipes.iter().zip(files) {
        let back = assemble(r, params, &segments).expect("assemble");
        assert!(back == *f, "round trip differs");
    }
    (stats, reduce_t, t.elapsed().as_secs_f64())
}

fn data_set(name: &str, files: &[Vec<u8>], params: &Params) {
    let total: usize = files.iter().map(Vec::len).sum();
    let (stats, reduce_t, read_t) = run_set(files, params);
    let l = stats.logical as f64;
    println!(
        "{:<9} {:>7.0} {:>6} {:>10.2} {:>9.2} {:>8.2} {:>9.2} {:>8.2} {:>7.0} {:>7.0}",
        name,
        total as f64 / MIB,
        files.len(),
        whole_file_dedup_ratio(files),
        zstd3_per_file_ratio(files),
        l / stats.after_dedup.max(1) as f64,
        l / stats.after_compression.max(1) as f64,
        l / stats.stored.max(1) as f64,
        l / reduce_t / MIB,
        l / read_t / MIB,
    );
}

fn main() {
    let start = Instant::now();
    let key = DedupKey::from_bytes([7; 32]);
    stages(&key);
    let tree = source_tree(48 << 20);
    let vm = vm_images();
    chunk_sizes(&key, &vm, &tree);

    let mut params = Params::new(key);
    println!(
        "\n== reduction ratio (logical / bytes), defaults: 8/32/128 KiB, zstd 3, 2 MiB segments =="
    );
    println!(
        "{:<9} {:>7} {:>6} {:>10} {:>9} {:>8} {:>9} {:>8} {:>7} {:>7}",
        "data set",
        "MiB",
        "files",
        "whole-file",
        "zstd -3",
        "dedup",
        "+zstd",
        "stored",
        "red MB/s",
        "read"
    );
    let random: Vec<Vec<u8>> = (0..4).map(|i| random_bytes(50 + i, 16 << 20)).collect();
    data_set("random", &random, &params);
    data_set("source", &tree, &params);
    data_set("vm", &vm, &params);
    params.data_key = Some(DataKey::from_bytes([9; 32]));
    data_set("vm+enc", &vm, &params);
    println!(
        "\n(whole-file: dedup of identical files; zstd -3: each file alone, libzstd {}; \
         dedup / +zstd / stored: this pipeline after dedup, after compression, and counting \
         segment headers, indexes and envelopes; red/read: reduce and assemble MiB/s, one core)",
        zstd::zstd_safe::version_string()
    );
    println!("total {:.1} s", start.elapsed().as_secs_f64());
}
