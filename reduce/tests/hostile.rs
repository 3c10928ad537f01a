//! Decoders refuse damaged or hostile input with an error, never a panic; a chunk whose
//! bytes do not hash to its id is refused.

mod common;

use common::{params, random_bytes, refuses_every_truncation_and_flip, source_corpus};
use rand::{rngs::StdRng, Rng, SeedableRng};
use reduce::segment::{SegmentError, SegmentWriter};
use reduce::{reduce, Recipe, RecipeError, Segment};
use std::collections::HashMap;

/// A small valid segment with compressed and raw chunks (small so that every truncation
/// and every header/index bit can be tried).
fn small_segment() -> Vec<u8> {
    let p = params();
    let mut w = SegmentWriter::new(1 << 20);
    let mut c = reduce::compress::Compressor::new(p.compress).expect("ctx");
    let text = source_corpus(3000);
    for raw in [&text[..3000], &random_bytes(5, 700)[..], &[9u8; 1]] {
        let s = c.compress(raw).expect("c");
        w.push(
            p.dedup_key.chunk_id(raw),
            raw.len() as u32,
            s.bytes(),
            s.is_compressed(),
        )
        .expect("push");
    }
    let (_, bytes) = w.finish().expect("segment");
    let seg = Segment::decode(&bytes).expect("valid");
    assert!(seg.entries()[0].compressed && !seg.entries()[1].compressed);
    bytes
}

fn small_recipe() -> Vec<u8> {
    let r = reduce(&random_bytes(6, 300 << 10), &params(), &HashMap::new()).expect("reduce");
    assert!(r.recipe.chunks.len() >= 2);
    r.recipe.encode().expect("encode")
}

fn reseal(bytes: &mut [u8]) {
    let n = bytes.len() - 32;
    let sum = *blake3::hash(&bytes[..n]).as_bytes();
    bytes[n..].copy_from_slice(&sum);
}

/// `bytes` with `with` written at `at` and the checksum recomputed, as an attacker (or a
/// buggy writer) could.
fn patched(bytes: &[u8], at: usize, with: &[u8]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    b[at..at + with.len()].copy_from_slice(with);
    reseal(&mut b);
    b
}

#[test]
fn every_truncation_and_bit_flip_of_a_segment_is_an_error() {
    refuses_every_truncation_and_flip(&small_segment(), |b| Segment::decode(b).is_ok());
}

#[test]
fn every_truncation_and_bit_flip_of_a_recipe_is_an_error() {
    refuses_every_truncation_and_flip(&small_recipe(), |b| Recipe::decode(b).is_ok());
}

#[test]
fn a_valid_checksum_does_not_make_a_bad_structure_valid() {
    let seg = small_segment();
    // Mutate a header or index byte, then recompute the checksum as an attacker could:
    // the structure checks still refuse it, or it decodes to something whose chunks are
    // verified on read. Either way, no panic.
    let index_end = 24 + 3 * 48;
    let mut rng = StdRng::seed_from_u64(1);
    let key = params().dedup_key;
    for _ in 0..20_000 {
        let mut b = seg.clone();
        for _ in 0..rng.gen_range(1..4) {
            let at = rng.gen_range(0..b.len() - 32);
            b[at] = if at < index_end && rng.gen_bool(0.5) {
                rng.gen()
            } else {
                b[at] ^ (1 << rng.gen_range(0..8))
            };
        }
        reseal(&mut b);
        if let Ok(s) = Segment::decode(&b) {
            for i in 0..s.len() as u32 {
                let _ = s.get(i, &key);
            }
        }
    }
    // Specific hostile headers.
    assert!(matches!(
        Segment::decode(&patched(&seg, 12, &u32::MAX.to_le_bytes())),
        Err(SegmentError::BadCount(_))
    ));
    assert!(matches!(
        Segment::decode(&patched(&seg, 16, &u64::MAX.to_le_bytes())),
        Err(SegmentError::LengthMismatch { .. })
    ));
}

#[test]
fn an_altered_chunk_is_refused_by_its_hash() {
    let key = params().dedup_key;
    // Corruption below a recomputed checksum: raw chunk 1, one byte changed.
    let seg = small_segment();
    let s = Segment::decode(&seg).expect("valid");
    let e = s.entries()[1];
    let at = 24 + 3 * 48 + e.offset as usize + 10;
    let mut b = seg.clone();
    b[at] ^= 0x40;
    reseal(&mut b);
    let bad = Segment::decode(&b).expect("structure is fine");
    assert!(matches!(
        bad.get(1, &key),
        Err(SegmentError::HashMismatch { index: 1 })
    ));
    assert!(bad.get(0, &key).is_ok() && bad.get(2, &key).is_ok());
    // A compressed chunk altered: refused by decompression or by hash.
    let e0 = s.entries()[0];
    let mut c = seg.clone();
    c[24 + 3 * 48 + e0.offset as usize + e0.stored_len as usize / 2] ^= 0x01;
    reseal(&mut c);
    let bad = Segment::decode(&c).expect("structure is fine");
    assert!(bad.get(0, &key).is_err());
    // A writer handed the wrong id (a bug, or a collision): detected on read.
    let mut w = SegmentWriter::new(1 << 20);
    w.push(key.chunk_id(b"one"), 3, b"two", false)
        .expect("push");
    let (_, bytes) = w.finish().expect("seg");
    let s = Segment::decode(&bytes).expect("decode");
    assert!(matches!(
        s.get(0, &key),
        Err(SegmentError::HashMismatch { .. })
    ));
    // The wrong dedup key also fails verification.
    let s = Segment::decode(&seg).expect("valid");
    let other = reduce::DedupKey::from_bytes([1; 32]);
    assert!(s.get(2, &other).is_err());
}

#[test]
fn recipe_structure_is_checked_under_a_valid_checksum() {
    let rec = small_recipe();
    // logical_len no longer matches the chunks.
    assert!(matches!(
        Recipe::decode(&patched(&rec, 24, &[rec[24] ^ 1])),
        Err(RecipeError::LogicalLen { .. })
    ));
    assert!(matches!(
        Recipe::decode(&patched(&rec, 16, &u32::MAX.to_le_bytes())),
        Err(RecipeError::BadCount { .. })
    ));
}

#[test]
fn assembly_refuses_a_wrong_or_missing_segment() {
    let p = params();
    let data = random_bytes(7, 1 << 20);
    let r = reduce(&data, &p, &HashMap::new()).expect("reduce");
    let mut store: HashMap<_, _> = r
        .new_segments
        .iter()
        .map(|s| (s.id, s.bytes.clone()))
        .collect();
    assert!(reduce::assemble(&r.recipe, &p, &HashMap::new()).is_err());
    // Put another segment's bytes under this name.
    let other = reduce(&random_bytes(8, 1000), &p, &HashMap::new()).expect("reduce");
    let id = r.new_segments[0].id;
    store.insert(id, other.new_segments[0].bytes.clone());
    assert!(matches!(
        reduce::assemble(&r.recipe, &p, &store),
        Err(reduce::AssembleError::WrongSegment { .. })
    ));
}
