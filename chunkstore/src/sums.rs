//! Block checksums: the blake3 hash of each block, computed several blocks at a time.
//!
//! blake3 hashes the 1 KiB chunks of one input in parallel SIMD lanes, but a 4 KiB block has
//! only four chunks, so `blake3::hash` fills half of AVX2's eight lanes (a quarter of AVX-512's)
//! and the tree above them runs one node at a time. Verifying a 1 MiB READ is 256 such hashes
//! and was half the server's CPU. Here the lanes take chunk `k` of eight different blocks at
//! once, then the parent nodes of all of them together. The results are plain
//! `blake3::hash(block)` values (a chunk's counter is its index inside its own block), checked
//! against `blake3::hash` once per process before use, with `blake3::hash` as the fallback.
//!
//! `blake3::platform` is the crate's own SIMD dispatch; it is public but marked unstable, which
//! is why the self-check exists: a changed meaning disables this path instead of corrupting sums.
use std::sync::OnceLock;

use blake3::platform::Platform;
use blake3::IncrementCounter;

use crate::geometry::SUM_LEN;

pub(crate) type Sum = [u8; SUM_LEN];

/// The only block size batched: the default, and the one whose lanes `blake3::hash` leaves
/// idle (blocks of 8 KiB and up already fill AVX2).
const BATCH_BLOCK: usize = 4096;
const CHUNK: usize = blake3::CHUNK_LEN;
const CHUNKS: usize = BATCH_BLOCK / CHUNK;
/// Blocks hashed together; `hash_many` feeds them to the SIMD lanes in groups of its width.
const GROUP: usize = 16;

// Flags and IV of the BLAKE3 specification (section 2.1 and 2.2).
const CHUNK_START: u8 = 1;
const CHUNK_END: u8 = 2;
const PARENT: u8 = 4;
const ROOT: u8 = 8;
const IV: [u32; 8] = [
    0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19,
];

/// `blake3::hash` of each `bs`-byte block of `data` (whose length is a multiple of `bs`),
/// appended to `out`.
pub(crate) fn block_sums(data: &[u8], bs: usize, out: &mut Vec<Sum>) {
    out.reserve(data.len() / bs);
    if bs == BATCH_BLOCK {
        if let Some(p) = batch_platform() {
            let mut groups = data.chunks_exact(GROUP * bs);
            for g in &mut groups {
                batch(p, g, out);
            }
            let rest = groups.remainder();
            if rest.len() >= 2 * bs {
                batch(p, rest, out);
                return;
            }
            out.extend(rest.chunks_exact(bs).map(one));
            return;
        }
    }
    out.extend(data.chunks_exact(bs).map(one));
}

pub(crate) fn one(block: &[u8]) -> Sum {
    *blake3::hash(block).as_bytes()
}

/// The platform to batch on, once it has been seen to give the same sums as `blake3::hash`.
fn batch_platform() -> Option<Platform> {
    static CHECKED: OnceLock<Option<Platform>> = OnceLock::new();
    *CHECKED.get_or_init(|| {
        let p = Platform::detect();
        // Enough blocks for a full group and a remainder, with distinct contents.
        let n = GROUP + 3;
        let data: Vec<u8> = (0..n * BATCH_BLOCK)
            .map(|i| (i as u32).wrapping_mul(2_654_435_761).rotate_left(7) as u8)
            .collect();
        let mut got = Vec::new();
        for g in data.chunks(GROUP * BATCH_BLOCK) {
            batch(p, g, &mut got);
        }
        let want: Vec<Sum> = data.chunks_exact(BATCH_BLOCK).map(one).collect();
        if got == want {
            Some(p)
        } else {
            tracing::warn!(
                "batched blake3 disagrees with blake3::hash; hashing one block at a time"
            );
            None
        }
    })
}

/// Sums of up to `GROUP` 4 KiB blocks.
fn batch(p: Platform, blocks: &[u8], out: &mut Vec<Sum>) {
    let n = blocks.len() / BATCH_BLOCK;
    debug_assert!(n <= GROUP && blocks.len() == n * BATCH_BLOCK);
    let empty: &[u8; CHUNK] = &[0; CHUNK];
    // Chaining values of every chunk, block-major: the two children of a parent node sit next
    // to each other, so a parent's 64-byte input is a plain slice.
    let mut cvs = [0u8; GROUP * CHUNKS * 32];
    let mut lane_out = [0u8; GROUP * 32];
    for k in 0..CHUNKS {
        let mut inputs = [empty; GROUP];
        for (j, input) in inputs.iter_mut().enumerate().take(n) {
            let at = j * BATCH_BLOCK + k * CHUNK;
            if let Some(c) = blocks.get(at..at + CHUNK).and_then(|s| s.first_chunk()) {
                *input = c;
            }
        }
        p.hash_many(
            &inputs[..n],
            &IV,
            k as u64,
            IncrementCounter::No,
            0,
            CHUNK_START,
            CHUNK_END,
            &mut lane_out[..n * 32],
        );
        for j in 0..n {
            let at = (j * CHUNKS + k) * 32;
            cvs[at..at + 32].copy_from_slice(&lane_out[j * 32..j * 32 + 32]);
        }
    }
    // Up the tree: each level halves the nodes per block; the last one is the root.
    let mut width = CHUNKS;
    let mut next = [0u8; GROUP * CHUNKS / 2 * 32];
    while width > 1 {
        let half = width / 2;
        let flags = if half == 1 { PARENT | ROOT } else { PARENT };
        let empty: &[u8; 64] = &[0; 64];
        let mut inputs = [empty; GROUP * CHUNKS / 2];
        for (i, input) in inputs.iter_mut().enumerate().take(n * half) {
            if let Some(c) = cvs.get(i * 64..i * 64 + 64).and_then(|s| s.first_chunk()) {
                *input = c;
            }
        }
        p.hash_many(
            &inputs[..n * half],
            &IV,
            0,
            IncrementCounter::No,
            flags,
            0,
            0,
            &mut next[..n * half * 32],
        );
        cvs[..n * half * 32].copy_from_slice(&next[..n * half * 32]);
        width = half;
    }
    out.extend(cvs[..n * 32].chunks_exact(32).map(|c| {
        let mut s = [0u8; SUM_LEN];
        s.copy_from_slice(c);
        s
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 10) as u8)
            .collect()
    }

    #[test]
    fn same_as_blake3_hash_for_every_count_and_block_size() {
        assert!(batch_platform().is_some(), "self-check failed");
        for bs in [4096usize, 8192, 16384] {
            for n in 0..(2 * GROUP + 3) {
                let d = data(n * bs, n as u8);
                let mut got = Vec::new();
                block_sums(&d, bs, &mut got);
                let want: Vec<Sum> = d.chunks_exact(bs).map(one).collect();
                assert_eq!(got, want, "bs {bs} n {n}");
            }
        }
    }

    /// `cargo test --release -p chunkstore sums::tests::speed -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn speed() {
        let d = data(64 << 20, 1);
        for (name, batched) in [("one at a time", false), ("batched", true)] {
            let t = std::time::Instant::now();
            let mut out = Vec::new();
            for _ in 0..4 {
                out.clear();
                if batched {
                    block_sums(&d, 4096, &mut out);
                } else {
                    out.extend(d.chunks_exact(4096).map(one));
                }
            }
            let gib = 4.0 * d.len() as f64 / (1u64 << 30) as f64;
            println!("{name}: {:.2} GiB/s", gib / t.elapsed().as_secs_f64());
        }
    }
}
