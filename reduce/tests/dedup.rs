//! Dedup across files and under shifted inserts.

mod common;

use common::{params, random_bytes, Store};
use reduce::{assemble, reduce};

#[test]
fn a_second_copy_adds_no_chunks() {
    let p = params();
    let data = random_bytes(10, 64 << 20);
    let mut store = Store::default();
    let a = reduce(&data, &p, &store.index).expect("reduce a");
    store.absorb(&a);
    assert!(a.stats.new_chunks > 500, "{:?}", a.stats);
    // The same bytes under another name: the index is shared.
    let b = reduce(&data, &p, &store.index).expect("reduce b");
    assert_eq!(b.stats.new_chunks, 0, "{:?}", b.stats);
    assert!(b.new_segments.is_empty());
    assert_eq!((b.stats.after_dedup, b.stats.stored), (0, 0));
    assert_eq!(b.recipe, a.recipe);
    store.absorb(&b);
    assert!(assemble(&b.recipe, &p, &store.segments).expect("assemble") == data);
}

#[test]
fn an_insert_near_the_start_keeps_most_chunks_shared() {
    let p = params();
    let data = random_bytes(11, 16 << 20);
    let mut edited = data[..1000].to_vec();
    edited.extend_from_slice(b"inserted!");
    edited.extend_from_slice(&data[1000..]);

    let mut store = Store::default();
    let a = reduce(&data, &p, &store.index).expect("reduce");
    store.absorb(&a);
    let b = reduce(&edited, &p, &store.index).expect("reduce edited");
    let shared = b.stats.chunks - b.stats.new_chunks;
    let frac = shared as f64 / b.stats.chunks as f64;
    eprintln!(
        "insert: {} of {} chunks shared ({:.1}%), {} new bytes",
        shared,
        b.stats.chunks,
        100.0 * frac,
        b.stats.after_dedup
    );
    assert!(frac > 0.9, "only {:.1}% shared", 100.0 * frac);
    // The edit costs a chunk or two, not a file.
    assert!(b.stats.after_dedup <= 2 * u64::from(p.chunk.max()));
    store.absorb(&b);
    assert!(assemble(&b.recipe, &p, &store.segments).expect("assemble") == edited);
}

#[test]
fn another_dedup_key_shares_nothing() {
    let data = random_bytes(12, 4 << 20);
    let mut store = Store::default();
    let a = reduce(&data, &params(), &store.index).expect("reduce");
    store.absorb(&a);
    let mut other = params();
    other.dedup_key = reduce::DedupKey::from_bytes([8; 32]);
    let b = reduce(&data, &other, &store.index).expect("reduce");
    assert_eq!(b.stats.new_chunks, b.stats.chunks);
}
