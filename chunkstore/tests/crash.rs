//! kill -9 during writes: acknowledged data (stable writes, and unstable writes followed by a
//! commit) reads back intact, and an interrupted write never makes a block unreadable.
//!
//! The test re-runs its own binary as the writer (selected by an environment variable), which
//! prints `ack <object> <step>` once a step is durable; the parent SIGKILLs it at a random moment,
//! reopens the store and checks every object against what was acknowledged.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chunkstore::{ChunkStore, Config};

const CHILD_ENV: &str = "CFS_DS_CRASH_CHILD";
const CFG: Config = Config {
    chunk_size: 256 << 10,
    block_size: 4096,
};
/// Objects 0..STABLE overwrite overlapping ranges with stable writes; the others append with
/// unstable writes and commit every COMMIT_EVERY steps.
const STABLE: u64 = 3;
const OBJECTS: u64 = 6;
const COMMIT_EVERY: u64 = 3;
const LEN: u64 = 40_000;
const STRIDE: u64 = 25_000; // < LEN: each stable write overlaps the previous one
const WRAP: u64 = 2 << 20; // stable writes wrap around so they also overwrite old data
const CHILD_LIMIT: Duration = Duration::from_secs(20);

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Offset and bytes of step `i` of object `obj`.
fn step(obj: u64, i: u64) -> (u64, Vec<u8>) {
    let off = if obj < STABLE {
        (i * STRIDE) % WRAP
    } else {
        i * LEN
    };
    (off, pattern(obj << 32 | i, LEN as usize))
}

/// Object contents after steps `0..n`.
fn model(obj: u64, n: u64) -> Vec<u8> {
    let mut m = Vec::new();
    for i in 0..n {
        let (off, d) = step(obj, i);
        let end = (off + LEN) as usize;
        if m.len() < end {
            m.resize(end, 0);
        }
        m[off as usize..end].copy_from_slice(&d);
    }
    m
}

#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return; // Only does something when started by the parent below.
    };
    let store = ChunkStore::open_with(&dir, CFG).unwrap();
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let threads: Vec<_> = (0..OBJECTS)
        .map(|obj| {
            let store = store.clone();
            let out = out.clone();
            std::thread::spawn(move || {
                let s = store.blocking();
                let started = Instant::now();
                let mut i = 0;
                while started.elapsed() < CHILD_LIMIT {
                    let (off, d) = step(obj, i);
                    let stable = obj < STABLE;
                    s.write(obj, off, &d, stable).unwrap();
                    let ack = if stable {
                        Some(i)
                    } else if (i + 1) % COMMIT_EVERY == 0 {
                        s.commit(obj).unwrap();
                        Some(i)
                    } else {
                        None
                    };
                    if let Some(i) = ack {
                        let mut o = out.lock().unwrap();
                        writeln!(o, "ack {obj} {i}").unwrap();
                        o.flush().unwrap();
                    }
                    i += 1;
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn kill9_keeps_acknowledged_writes() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    for round in 0..3 {
        // Each round starts over on fresh objects' worth of state: one store dir per round.
        let sub = dir.path().join(format!("round{round}"));
        let mut child = Command::new(&exe)
            .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &sub)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let acks = Arc::new(Mutex::new(BTreeMap::<u64, u64>::new()));
        let reader = {
            let acks = acks.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let p: Vec<&str> = line.split_whitespace().collect();
                    if p.len() == 3 && p[0] == "ack" {
                        let (obj, i): (u64, u64) = (p[1].parse().unwrap(), p[2].parse().unwrap());
                        let mut a = acks.lock().unwrap();
                        let e = a.entry(obj).or_insert(0);
                        *e = (*e).max(i + 1);
                    }
                }
            })
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while acks.lock().unwrap().len() < OBJECTS as usize {
            assert!(Instant::now() < deadline, "writer made no progress");
            assert!(child.try_wait().unwrap().is_none(), "writer exited early");
            std::thread::sleep(Duration::from_millis(5));
        }
        let r = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        std::thread::sleep(Duration::from_millis(r % 500));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        let acks = acks.lock().unwrap().clone();

        let store = ChunkStore::open(&sub).unwrap();
        let s = store.blocking();
        for obj in 0..OBJECTS {
            let acked = acks[&obj];
            // Steps after the acknowledged ones may have landed, fully or in part.
            let in_flight = if obj < STABLE { 1 } else { COMMIT_EVERY };
            let old = model(obj, acked);
            let size = model(obj, acked + in_flight).len().max(old.len()) as u64;
            let (got, _) = s
                .read(obj, 0, size, size)
                .unwrap_or_else(|e| panic!("round {round} object {obj}: {e}"));
            // Each block equals the block after some number of steps between acked and
            // acked + in_flight: never older than acknowledged, never a mix within a page.
            let candidates: Vec<Vec<u8>> = (acked..=acked + in_flight)
                .map(|n| {
                    let mut m = model(obj, n);
                    m.resize(size as usize, 0);
                    m
                })
                .collect();
            for (b, block) in got.chunks(4096).enumerate() {
                let r = b * 4096..b * 4096 + block.len();
                assert!(
                    candidates.iter().any(|c| c[r.clone()] == *block),
                    "round {round} object {obj} block {b}: acknowledged data lost or torn (acked {acked})"
                );
            }
        }
        println!("round {round}: acknowledged steps {acks:?} verified after kill -9");
    }
}

/// kill -9 during copy-on-write: object `COW_SRC` is linked to a new image, then rewritten
/// chunk by chunk with stable writes (each first copies the shared chunk), over and over.
const COW_CHILD_ENV: &str = "CFS_DS_COW_CRASH_CHILD";
const COW_SRC: u64 = 1;
const COW_CHUNKS: u64 = 8;
/// Image `k` (object `COW_IMAGE + k`) is linked before version `k` is written.
const COW_IMAGE: u64 = 1000;

/// Chunk `c` of version `v` of the source.
fn cow_chunk(v: u64, c: u64) -> Vec<u8> {
    pattern(v << 16 | c | 1 << 40, CFG.chunk_size as usize)
}

#[test]
fn cow_crash_child() {
    let Ok(dir) = std::env::var(COW_CHILD_ENV) else {
        return; // Only does something when started by the parent below.
    };
    let store = ChunkStore::open_with(&dir, CFG).unwrap();
    let s = store.blocking();
    let mut out = std::io::stdout();
    for c in 0..COW_CHUNKS {
        s.write(COW_SRC, c * CFG.chunk_size, &cow_chunk(0, c), true)
            .unwrap();
    }
    let started = Instant::now();
    let mut v = 1;
    while started.elapsed() < CHILD_LIMIT {
        s.link_object(COW_SRC, COW_IMAGE + v).unwrap();
        writeln!(out, "link {v}").unwrap();
        for c in 0..COW_CHUNKS {
            s.write(COW_SRC, c * CFG.chunk_size, &cow_chunk(v, c), true)
                .unwrap();
            writeln!(out, "write {v} {c}").unwrap();
        }
        out.flush().unwrap();
        v += 1;
    }
}

#[test]
fn kill9_during_unshare_leaves_old_or_new() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let size = COW_CHUNKS * CFG.chunk_size;
    let cs = CFG.chunk_size as usize;
    for round in 0..3 {
        let sub = dir.path().join(format!("cow{round}"));
        let mut child = Command::new(&exe)
            .args([
                "cow_crash_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(COW_CHILD_ENV, &sub)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // (last image linked, last version acknowledged per chunk)
        let acks = Arc::new(Mutex::new((0u64, [0u64; COW_CHUNKS as usize])));
        let reader = {
            let acks = acks.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let p: Vec<u64> = line
                        .split_whitespace()
                        .skip(1)
                        .filter_map(|x| x.parse().ok())
                        .collect();
                    let mut a = acks.lock().unwrap();
                    match (line.split_whitespace().next(), p.as_slice()) {
                        (Some("link"), [v]) => a.0 = *v,
                        (Some("write"), [v, c]) => a.1[*c as usize] = *v,
                        _ => {}
                    }
                }
            })
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while acks.lock().unwrap().0 < 1 {
            assert!(Instant::now() < deadline, "writer made no progress");
            assert!(child.try_wait().unwrap().is_none(), "writer exited early");
            std::thread::sleep(Duration::from_millis(2));
        }
        let r = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        std::thread::sleep(Duration::from_millis(r % 300));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        let (linked, written) = *acks.lock().unwrap();

        let store = ChunkStore::open(&sub).unwrap();
        let s = store.blocking();
        // Every acknowledged image holds the version before it, whole, and verifies.
        for v in 1..=linked {
            let (got, _) = s
                .read(COW_IMAGE + v, 0, size, size)
                .unwrap_or_else(|e| panic!("round {round} image {v}: {e}"));
            for c in 0..COW_CHUNKS {
                assert!(
                    got[c as usize * cs..(c as usize + 1) * cs] == cow_chunk(v - 1, c)[..],
                    "round {round}: image {v} chunk {c} changed"
                );
            }
        }
        // The source: each block is the acknowledged version or the one in flight.
        let (got, _) = s
            .read(COW_SRC, 0, size, size)
            .unwrap_or_else(|e| panic!("round {round} source: {e}"));
        for c in 0..COW_CHUNKS {
            let a = written[c as usize];
            let (old, new) = (cow_chunk(a, c), cow_chunk(a + 1, c));
            let mine = &got[c as usize * cs..(c as usize + 1) * cs];
            for (b, block) in mine.chunks(4096).enumerate() {
                let r = b * 4096..(b + 1) * 4096;
                assert!(
                    old[r.clone()] == *block || new[r] == *block,
                    "round {round} chunk {c} block {b}: neither version {a} nor {}",
                    a + 1
                );
            }
        }
        // After the crash the store carries on: a change over any leftover temporary copies
        // again and leaves the last image alone.
        s.write(COW_SRC, 0, &cow_chunk(99, 0), true).unwrap();
        let (img, _) = s.read(COW_IMAGE + linked, 0, size, size).unwrap();
        assert!(img[..cs] == cow_chunk(linked - 1, 0)[..]);
        println!("round {round}: {linked} images and chunks at {written:?} verified after kill -9");
    }
}
