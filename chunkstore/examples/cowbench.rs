//! The cost of copy-on-write: the first write to a 4 MiB chunk after `link_object` (which
//! copies the chunk, or reflinks it where the file system can) against the same write to a
//! chunk the object owns alone.
//!
//! `cargo run --release -p chunkstore --example cowbench [chunks] [rounds] [dir]`
//!
//! Each round writes `chunks` full 4 MiB chunks, then times one 4 KiB write per chunk (stable,
//! then unstable), links the object to a new image and times the same writes again: those are
//! the first writes after the link, so each copies its chunk. Disks of shared machines are
//! noisy: the best and median per-write times over all rounds are printed, and those of the
//! links themselves (an object of `chunks` × 4 MiB; 16 chunks, 64 MiB, by default).

use std::time::{Duration, Instant};

use chunkstore::{ChunkStore, ChunkStoreSync};

const CHUNK: u64 = 4 << 20;

fn time_writes(s: &ChunkStoreSync, id: u64, chunks: u64, stable: bool, out: &mut Vec<Duration>) {
    let data = vec![0x5au8; 4096];
    for c in 0..chunks {
        let t = Instant::now();
        s.write(id, c * CHUNK + 8192, &data, stable).expect("write");
        if !stable {
            s.commit(id).expect("commit");
        }
        out.push(t.elapsed());
    }
}

fn report(name: &str, v: &mut [Duration]) {
    let what = if name.starts_with("link") {
        "links"
    } else {
        "writes"
    };
    v.sort();
    let best = v.first().copied().unwrap_or_default();
    let med = v.get(v.len() / 2).copied().unwrap_or_default();
    println!(
        "{name:<48} best {:>9.3} ms   median {:>9.3} ms   ({} {what})",
        best.as_secs_f64() * 1e3,
        med.as_secs_f64() * 1e3,
        v.len()
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let chunks: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(16);
    let rounds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let tmp;
    let dir = match args.next() {
        Some(d) => std::path::PathBuf::from(d),
        None => {
            tmp = tempfile::tempdir().expect("tempdir");
            tmp.path().to_path_buf()
        }
    };
    let store = ChunkStore::open(&dir).expect("open");
    let s = store.blocking();
    let fill = vec![0xa5u8; CHUNK as usize];
    let (mut plain_s, mut plain_u, mut cow_s, mut cow_u) = (vec![], vec![], vec![], vec![]);
    let mut links = vec![];
    for r in 0..rounds {
        let id = 10 + r;
        for c in 0..chunks {
            s.write(id, c * CHUNK, &fill, true).expect("fill");
        }
        time_writes(s, id, chunks, true, &mut plain_s);
        time_writes(s, id, chunks, false, &mut plain_u);
        let t = Instant::now();
        s.link_object(id, 1000 + 2 * r).expect("link");
        links.push(t.elapsed());
        time_writes(s, id, chunks, true, &mut cow_s);
        let t = Instant::now();
        s.link_object(id, 1001 + 2 * r).expect("link");
        links.push(t.elapsed());
        time_writes(s, id, chunks, false, &mut cow_u);
    }
    println!("4 KiB writes into full 4 MiB chunks, {chunks} chunks x {rounds} rounds:");
    report("private chunk, stable write", &mut plain_s);
    report("private chunk, unstable write + commit", &mut plain_u);
    report("first write after link (copy), stable", &mut cow_s);
    report("first write after link (copy), unstable+commit", &mut cow_u);
    println!("link_object of a {} MiB object:", chunks * 4);
    report("link (hard links + directory syncs)", &mut links);
}
