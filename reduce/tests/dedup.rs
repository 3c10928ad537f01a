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

#[test]
fn a_dedup_hit_on_other_bytes_is_a_collision_not_a_reference() {
    use reduce::chunk::chunks;
    use reduce::{reduce_verified, ChunkLoc, ReduceError};
    let p = params();
    let a = random_bytes(13, 1 << 20);
    let b = random_bytes(14, 1 << 20);
    let mut store = Store::default();
    let ra = reduce(&a, &p, &store.index).expect("reduce a");
    store.absorb(&ra);
    // An index entry claiming B's first chunk is stored where A's first chunk is (what a
    // keyed-BLAKE3 collision, or a corrupted index row, would look like).
    let first_b = chunks(&b, &p.chunk, p.dedup_key.chunker_seed())
        .next()
        .expect("a chunk");
    let b_id = p.dedup_key.chunk_id(&b[first_b.clone()]);
    let a_loc = store.index[&ra.recipe.chunks[0].id];
    assert_ne!(a_loc.raw_len as usize, first_b.len(), "pick other seeds");
    let mut lying = store.index.clone();
    lying.insert(b_id, a_loc);
    // Lengths differ: caught by the index's raw length alone.
    assert!(matches!(
        reduce(&b, &p, &lying),
        Err(ReduceError::Collision(id)) if id == b_id
    ));
    // Same length too: only reading the stored chunk tells them apart.
    lying.insert(
        b_id,
        ChunkLoc {
            raw_len: first_b.len() as u32,
            ..a_loc
        },
    );
    assert!(matches!(
        reduce_verified(&b, &p, &lying, &store.segments),
        Err(ReduceError::Collision(id)) if id == b_id
    ));
    // The honest index passes the same check, and B reads back.
    let rb = reduce_verified(&b, &p, &store.index, &store.segments).expect("verified");
    store.absorb(&rb);
    assert!(assemble(&rb.recipe, &p, &store.segments).expect("assemble") == b);
    let again = reduce_verified(&b, &p, &store.index, &store.segments).expect("verified");
    assert_eq!(again.stats.new_chunks, 0);
}
