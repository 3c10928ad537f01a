//! Deterministic bytes with no repeats or zero runs (xorshift64), for the XOR probe, the tests
//! and ec-bench: a pattern that repeated with the shard size could make unlike shards equal and
//! hide a bug.

/// `len` bytes from seed `seed` (any seed; zero is made odd).
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
