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
