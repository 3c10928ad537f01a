//! Byte-exact round trips through reduce → recipe encoding → assemble.

mod common;

use common::{params, random_bytes, source_corpus, Store};
use reduce::chunk::chunks;
use reduce::{assemble, reduce, ChunkParams, Params, Recipe};

fn round_trip(data: &[u8], p: &Params) -> reduce::Stats {
    let mut store = Store::default();
    let r = reduce(data, p, &store.index).expect("reduce");
    store.absorb(&r);
    // The recipe survives its own encoding.
    let enc = r.recipe.encode().expect("encode");
    let recipe = Recipe::decode(&enc).expect("decode");
    assert_eq!(recipe, r.recipe);
    assert_eq!(recipe.logical_len(), data.len() as u64);
    let back = assemble(&recipe, p, &store.segments).expect("assemble");
    assert!(back == data, "round trip differs for {} bytes", data.len());
    assert_eq!(r.stats.logical, data.len() as u64);
    r.stats
}

#[test]
fn random_text_zeros_empty_and_one_byte() {
    let p = params();
    round_trip(&random_bytes(1, 3 << 20), &p);
    round_trip(&source_corpus(3 << 20), &p);
    let z = round_trip(&vec![0u8; 5 << 20], &p);
    // Zeros: every full-size chunk is the same chunk, stored once.
    assert!(z.new_chunks <= 2, "{z:?}");
    let e = round_trip(&[], &p);
    assert_eq!((e.chunks, e.segments, e.stored), (0, 0, 0));
    let one = round_trip(&[42], &p);
    assert_eq!((one.chunks, one.segments), (1, 1));
}

#[test]
fn sizes_around_the_chunk_and_segment_bounds() {
    let p = params();
    let (min, max) = (p.chunk.min() as usize, p.chunk.max() as usize);
    let base = random_bytes(2, 4 * max + 1);
    for n in [
        1,
        min - 1,
        min,
        min + 1,
        max - 1,
        max,
        max + 1,
        2 * max,
        2 * max + 1,
        4 * max + 1,
    ] {
        round_trip(&base[..n], &p);
    }
    // A small segment target: many segments, chunks that alone exceed the target.
    let mut small = params();
    small.segment_target = 100 << 10;
    let s = round_trip(&base, &small);
    assert!(s.segments >= 5, "{s:?}");
}

#[test]
fn encrypted_round_trip() {
    let mut p = params();
    p.data_key = Some(reduce::DataKey::generate().expect("rng"));
    round_trip(&random_bytes(3, 3 << 20), &p);
    round_trip(&source_corpus(1 << 20), &p);
}

#[test]
fn chunks_cover_the_input_within_bounds() {
    let data = random_bytes(4, 8 << 20);
    let cp = ChunkParams::DEFAULT;
    let ranges: Vec<_> = chunks(&data, &cp, 99).collect();
    let mut at = 0;
    for (i, r) in ranges.iter().enumerate() {
        assert_eq!(r.start, at);
        assert!(r.len() <= cp.max() as usize);
        if i + 1 < ranges.len() {
            assert!(r.len() >= cp.min() as usize);
        }
        at = r.end;
    }
    assert_eq!(at, data.len());
    let avg = data.len() / ranges.len();
    assert!(
        avg > cp.min() as usize && avg < cp.max() as usize,
        "mean chunk {avg}"
    );
}

#[test]
fn chunk_params_are_checked_not_asserted() {
    assert!(ChunkParams::new(16 << 10, 64 << 10, 256 << 10).is_ok());
    for (a, b, c) in [
        (0, 64 << 10, 256 << 10),
        (64 << 10, 16 << 10, 256 << 10),
        (16 << 10, 64 << 10, 64 << 10),
        (16 << 10, 64 << 10, 16 << 20),
        (16 << 10, 8 << 20, 9 << 20),
    ] {
        assert!(ChunkParams::new(a, b, c).is_err(), "{a} {b} {c}");
    }
}
