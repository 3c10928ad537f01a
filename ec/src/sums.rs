//! The blake3 of each shard: what the redundancy record keeps per shard, what a data server
//! checks before it serves or sends a shard, and what scrub compares.

/// blake3 of one shard's bytes.
pub type ShardSum = [u8; 32];

/// The blake3 of a shard.
pub fn shard_sum(shard: &[u8]) -> ShardSum {
    *blake3::hash(shard).as_bytes()
}

/// Treats every present shard whose bytes no longer match `sums` as lost (sets it to `None`)
/// and returns the indexes it dropped, in order: a corrupt shard must never be fed to the
/// decoder, which does not detect errors (reed-solomon-simd's README says so).
pub fn drop_corrupt(shards: &mut [Option<Vec<u8>>], sums: &[ShardSum]) -> Vec<usize> {
    let mut dropped = Vec::new();
    for (i, (shard, sum)) in shards.iter_mut().zip(sums).enumerate() {
        if shard.as_deref().is_some_and(|s| shard_sum(s) != *sum) {
            *shard = None;
            dropped.push(i);
        }
    }
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_changed_shard_is_dropped() {
        let mut shards = vec![Some(vec![1u8; 64]), Some(vec![2u8; 64]), None];
        let sums: Vec<_> = [vec![1u8; 64], vec![2u8; 64], vec![3u8; 64]]
            .iter()
            .map(|s| shard_sum(s))
            .collect();
        assert!(drop_corrupt(&mut shards, &sums).is_empty());
        if let Some(s) = shards[1].as_mut() {
            s[63] = 0;
        }
        assert_eq!(drop_corrupt(&mut shards, &sums), vec![1]);
        assert_eq!(shards, vec![Some(vec![1u8; 64]), None, None]);
    }
}
