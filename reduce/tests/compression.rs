//! Compression is as good as zstd -3 on the same chunks, and skipped for random data.

mod common;

use common::{params, random_bytes, source_corpus};
use reduce::chunk::chunks;
use reduce::compress::{CompressParams, Compressor, Stored};
use reduce::{reduce, Segment};
use std::collections::HashMap;

#[test]
fn text_compresses_like_zstd_3_per_chunk() {
    let p = params();
    let text = source_corpus(16 << 20);
    let r = reduce(&text, &p, &HashMap::new()).expect("reduce");
    // zstd -3 of the same distinct chunks.
    let mut seen = std::collections::HashSet::new();
    let mut zstd3 = 0u64;
    for range in chunks(&text, &p.chunk, p.dedup_key.chunker_seed()) {
        let c = &text[range];
        if seen.insert(p.dedup_key.chunk_id(c)) {
            zstd3 += zstd::bulk::compress(c, 3).expect("zstd").len() as u64;
        }
    }
    let s = r.stats;
    eprintln!(
        "text: {} logical, {} after dedup, {} compressed (zstd -3 per chunk {}), {} stored",
        s.logical, s.after_dedup, s.after_compression, zstd3, s.stored
    );
    assert!(
        s.after_compression as f64 <= zstd3 as f64 * 1.02,
        "{} > {} + 2%",
        s.after_compression,
        zstd3
    );
    assert!(s.after_compression * 2 < s.after_dedup, "text should halve");
}

#[test]
fn random_data_is_stored_uncompressed() {
    let data = random_bytes(20, 8 << 20);
    let r = reduce(&data, &params(), &HashMap::new()).expect("reduce");
    assert_eq!(r.stats.compressed_chunks, 0);
    assert_eq!(r.stats.after_compression, r.stats.after_dedup);
    for s in &r.new_segments {
        let seg = Segment::decode(&s.bytes).expect("decode");
        assert!(seg.entries().iter().all(|e| !e.compressed));
    }
    // Overhead of the segment format on incompressible data stays under 0.2% (a 48-byte
    // entry per ~40 KiB chunk is 0.12%, plus header and checksum per 2 MiB).
    assert!(r.stats.stored < r.stats.logical + r.stats.logical / 500);
}

#[test]
fn pretest_and_threshold() {
    let mut c = Compressor::new(CompressParams::default()).expect("ctx");
    let random = random_bytes(21, 64 << 10);
    assert!(matches!(c.compress(&random).expect("c"), Stored::Raw(_)));
    let zeros = vec![0u8; 64 << 10];
    assert!(c.compress(&zeros).expect("c").is_compressed());
    // Saves about 1/16: under the 1/8 threshold, kept raw even without the pretest.
    let mut mostly = random_bytes(22, 60 << 10);
    mostly.extend_from_slice(&[0u8; 4 << 10]);
    let mut no_pretest = Compressor::new(CompressParams {
        pretest: false,
        ..CompressParams::default()
    })
    .expect("ctx");
    assert!(matches!(
        no_pretest.compress(&mostly).expect("c"),
        Stored::Raw(_)
    ));
    // Half zeros: saves about half, kept compressed.
    let mut half = random_bytes(23, 32 << 10);
    half.extend_from_slice(&[0u8; 32 << 10]);
    assert!(c.compress(&half).expect("c").is_compressed());
}
