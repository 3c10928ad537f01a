//! Chunk store behaviour against a plain byte-vector model.

use chunkstore::{ChunkStore, Config, DsError, SeekWhat, Segment};
use proptest::prelude::*;

/// Small chunks so that tests cross chunk boundaries often.
const SMALL: Config = Config {
    chunk_size: 64 << 10,
    block_size: 4096,
};

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

fn open_small() -> (tempfile::TempDir, ChunkStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = ChunkStore::open_with(dir.path(), SMALL).unwrap();
    (dir, s)
}

#[test]
fn round_trip_across_chunks_and_reopen() {
    let (dir, s) = open_small();
    let b = s.blocking();
    let data = pattern(1, 300_000);
    b.write(7, 12_345, &data, false).unwrap();
    b.commit(7).unwrap();
    let size = 12_345 + data.len() as u64;
    let (got, eof) = b.read(7, 12_345, data.len() as u64, size).unwrap();
    assert!(eof);
    assert_eq!(got, data);
    // Head of the file was never written: zeros.
    let (head, eof) = b.read(7, 0, 12_345, size).unwrap();
    assert!(!eof);
    assert!(head.iter().all(|x| *x == 0));
    // Short read at EOF.
    let (tail, eof) = b.read(7, size - 10, 100, size).unwrap();
    assert_eq!((tail.len(), eof), (10, true));
    assert_eq!(b.read(7, size, 100, size).unwrap(), (Vec::new(), true));
    drop(s);
    let s = ChunkStore::open(dir.path()).unwrap(); // keeps the geometry it was made with
    assert_eq!(s.blocking().config(), SMALL);
    assert_eq!(
        s.blocking()
            .read(7, 12_345, data.len() as u64, size)
            .unwrap()
            .0,
        data
    );
}

#[test]
fn read_into_appends_to_a_recycled_buffer() {
    let (_d, s) = open_small();
    let b = s.blocking();
    let data = pattern(2, 200_000);
    b.write(3, 5000, &data, false).unwrap();
    let size = 5000 + data.len() as u64;
    // A dirty recycled buffer: its old contents must not leak into holes or the tail.
    let mut buf = vec![0xee; 150_000];
    buf.truncate(4);
    let (got, eof) = b.read_into(3, 100, size, size, buf).unwrap();
    assert!(eof);
    assert_eq!(&got[..4], &[0xee; 4]);
    assert!(got[4..4 + 4900].iter().all(|x| *x == 0));
    assert_eq!(&got[4 + 4900..], &data[..]);
}

#[test]
fn sparse_reads_and_size_beyond_data() {
    let (_d, s) = open_small();
    let b = s.blocking();
    b.write(1, 1 << 20, b"hello", true).unwrap();
    let (got, _) = b.read(1, (1 << 20) - 3, 10, 2 << 20).unwrap();
    assert_eq!(&got, b"\0\0\0hello\0\0");
    let (got, eof) = b.read(1, 5 << 20, 10, 6 << 20).unwrap();
    assert_eq!((got, eof), (vec![0; 10], false));
    assert_eq!(b.read(99, 0, 10, 5).unwrap(), (vec![0; 5], true));
}

#[test]
fn truncate_shrink_then_grow_reads_zeros() {
    let (_d, s) = open_small();
    let b = s.blocking();
    let data = pattern(2, 200_000);
    b.write(3, 0, &data, true).unwrap();
    b.truncate(3, 70_001).unwrap();
    let (got, _) = b.read(3, 0, 200_000, 200_000).unwrap();
    assert_eq!(&got[..70_001], &data[..70_001]);
    assert!(
        got[70_001..].iter().all(|x| *x == 0),
        "old data came back after truncate"
    );
    assert_eq!(b.seek(3, 72 << 10, SeekWhat::Data, 200_000).unwrap(), None);
    b.truncate(3, 0).unwrap();
    assert!(b.read(3, 0, 1000, 1000).unwrap().0.iter().all(|x| *x == 0));
}

#[test]
fn punch_hole_reads_zeros_and_seeks_as_hole() {
    let (_d, s) = open_small();
    let b = s.blocking();
    let size = 200_000u64;
    let data = pattern(3, size as usize);
    b.write(4, 0, &data, true).unwrap();
    b.deallocate(4, 10_000, 100_000).unwrap();
    let (got, _) = b.read(4, 0, size, size).unwrap();
    assert_eq!(&got[..10_000], &data[..10_000]);
    assert!(got[10_000..110_000].iter().all(|x| *x == 0));
    assert_eq!(&got[110_000..], &data[110_000..]);
    // Whole blocks inside the punched range are holes: 12288 is the first block fully inside.
    assert_eq!(b.seek(4, 0, SeekWhat::Hole, size).unwrap(), Some(12_288));
    assert_eq!(
        b.seek(4, 12_288, SeekWhat::Data, size).unwrap(),
        Some(106_496)
    );
    assert_eq!(
        b.seek(4, 150_000, SeekWhat::Hole, size).unwrap(),
        Some(size)
    );
    assert_eq!(b.seek(4, size, SeekWhat::Data, size).unwrap(), None);
    let (segs, eof) = b.segments(4, 0, size, size).unwrap();
    assert!(eof);
    assert_eq!(segs.len(), 3);
    assert!(matches!(&segs[1], Segment::Hole { offset: 12_288, len } if *len == 106_496 - 12_288));
    let mut rebuilt = Vec::new();
    for seg in segs {
        match seg {
            Segment::Data { data, .. } => rebuilt.extend(data),
            Segment::Hole { len, .. } => rebuilt.extend(std::iter::repeat_n(0, len as usize)),
        }
    }
    assert_eq!(rebuilt, got);
}

#[test]
fn flipped_byte_is_corrupt_not_data() {
    let (dir, s) = open_small();
    let b = s.blocking();
    let data = pattern(4, 100_000);
    b.write(0x1234, 0, &data, true).unwrap();
    // Second chunk file of object 0x1234; data starts after the header page(s).
    let path = dir.path().join("objects/34/0000000000001234/1");
    let mut bytes = std::fs::read(&path).unwrap();
    let len = bytes.len();
    bytes[len - 100] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    drop(s);
    let s = ChunkStore::open(dir.path()).unwrap();
    let e = s.blocking().read(0x1234, 0, 100_000, 100_000).unwrap_err();
    assert!(
        matches!(
            e,
            DsError::Corrupt {
                id: 0x1234,
                chunk: 1,
                ..
            }
        ),
        "{e:?}"
    );
    // The first chunk is untouched and still reads.
    assert_eq!(
        s.blocking().read(0x1234, 0, 65_536, 100_000).unwrap().0,
        &data[..65_536]
    );
}

#[test]
fn clone_keeps_data_and_holes() {
    let (_d, s) = open_small();
    let b = s.blocking();
    let data = pattern(5, 150_000);
    b.write(10, 0, &data, true).unwrap();
    b.deallocate(10, 65_536, 40_960).unwrap();
    b.clone_range(10, 0, 11, 4096, 150_000).unwrap();
    let (a, _) = b.read(10, 0, 150_000, 150_000).unwrap();
    let (c, _) = b.read(11, 4096, 150_000, 154_096).unwrap();
    assert_eq!(a, c);
    assert_eq!(b.seek(11, 0, SeekWhat::Data, 154_096).unwrap(), Some(4096));
    assert_eq!(
        b.seek(11, 4096, SeekWhat::Hole, 154_096).unwrap(),
        Some(4096 + 65_536)
    );
    b.remove(10).unwrap();
    assert!(b.read(10, 0, 10, 10).unwrap().0.iter().all(|x| *x == 0));
    assert!(b.usage().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_to_different_objects() {
    let (_d, s) = open_small();
    let mut tasks = Vec::new();
    for id in 0..16u64 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..20u64 {
                let d = pattern(id * 1000 + i, 10_000);
                s.write(id, i * 10_000, &d, i % 5 == 0).await.unwrap();
            }
            s.commit(id).await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for id in 0..16u64 {
        let (got, eof) = s.read(id, 0, 200_000, 200_000).await.unwrap();
        assert!(eof);
        for i in 0..20u64 {
            let d = pattern(id * 1000 + i, 10_000);
            assert_eq!(
                &got[(i * 10_000) as usize..((i + 1) * 10_000) as usize],
                &d[..]
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_to_one_block_never_see_torn_checksums() {
    let (_d, s) = open_small();
    let mut tasks = Vec::new();
    for w in 0..8u64 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..50u64 {
                // Each writer owns 512 bytes of the same 4 KiB block.
                s.write(1, w * 512, &pattern(w * 100 + i, 512), false)
                    .await
                    .unwrap();
                let (got, _) = s.read(1, 0, 4096, 4096).await.unwrap();
                assert_eq!(
                    &got[(w * 512) as usize..((w + 1) * 512) as usize],
                    &pattern(w * 100 + i, 512)[..]
                );
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[derive(Clone, Debug)]
enum Op {
    Write { off: u64, len: usize, seed: u64 },
    Truncate { size: u64 },
    Punch { off: u64, len: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u64..300_000, 1usize..70_000, any::<u64>()).prop_map(|(off, len, seed)| Op::Write { off, len, seed }),
        1 => (0u64..300_000).prop_map(|size| Op::Truncate { size }),
        1 => (0u64..300_000, 1u64..100_000).prop_map(|(off, len)| Op::Punch { off, len }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn matches_byte_vector_model(ops in proptest::collection::vec(op(), 1..25)) {
        let (_d, s) = open_small();
        let b = s.blocking();
        let mut model: Vec<u8> = Vec::new();
        for op in ops {
            match op {
                Op::Write { off, len, seed } => {
                    let d = pattern(seed, len);
                    b.write(5, off, &d, false).unwrap();
                    let end = off as usize + len;
                    if model.len() < end { model.resize(end, 0); }
                    model[off as usize..end].copy_from_slice(&d);
                }
                Op::Truncate { size } => {
                    b.truncate(5, size).unwrap();
                    model.resize(size as usize, 0);
                }
                Op::Punch { off, len } => {
                    b.deallocate(5, off, len).unwrap();
                    let s0 = (off as usize).min(model.len());
                    let e0 = ((off + len) as usize).min(model.len());
                    model[s0..e0].fill(0);
                }
            }
            let size = model.len() as u64;
            let (got, eof) = b.read(5, 0, size + 10, size).unwrap();
            prop_assert!(eof);
            prop_assert!(got == model, "content differs from model");
            // READ_PLUS agrees with READ, and holes really are zeros.
            let (segs, _) = b.segments(5, 0, size, size).unwrap();
            let mut pos = 0u64;
            for seg in segs {
                match seg {
                    Segment::Data { offset, data } => {
                        prop_assert_eq!(offset, pos);
                        prop_assert!(data[..] == model[offset as usize..offset as usize + data.len()]);
                        pos += data.len() as u64;
                    }
                    Segment::Hole { offset, len } => {
                        prop_assert_eq!(offset, pos);
                        prop_assert!(model[offset as usize..(offset + len) as usize].iter().all(|x| *x == 0));
                        pos += len;
                    }
                }
            }
            prop_assert_eq!(pos, size);
        }
    }
}

#[test]
fn allocate_reserves_space_without_changing_contents() {
    let (_d, s) = open_small();
    let b = s.blocking();
    b.write(8, 0, b"head", true).unwrap();
    let before = b.usage().unwrap();
    b.allocate(8, 0, 200_000).unwrap();
    assert!(b.usage().unwrap() >= before + 150_000, "space not reserved");
    let (got, _) = b.read(8, 0, 200_000, 200_000).unwrap();
    assert_eq!(&got[..4], b"head");
    assert!(got[4..].iter().all(|x| *x == 0));
    // Allocated but unwritten blocks are still holes to SEEK.
    assert_eq!(b.seek(8, 0, SeekWhat::Hole, 200_000).unwrap(), Some(4096));
}

/// What a write adds to the store's disk use is never more than `most_added_by_write` says
/// (a cache counting its writes relies on it), and not far from it for writes of a block or
/// more: stable and unstable, aligned or not, in fresh objects and across chunk boundaries.
#[test]
fn a_write_adds_at_most_what_most_added_by_write_says() {
    for cfg in [SMALL, Config::default()] {
        let dir = tempfile::tempdir().unwrap();
        let s = ChunkStore::open_with(dir.path(), cfg).unwrap();
        let b = s.blocking();
        let writes: [(u64, u64, usize); 6] = [
            (1, 0, 4096),
            (2, 100, 256 << 10),
            (3, 0, 1 << 20),
            (4, (64 << 10) - 10, 20),
            (5, 3 << 20, 2 << 20),
            (1, 8192, 300_000),
        ];
        for (i, (id, off, len)) in writes.into_iter().enumerate() {
            let before = b.usage().unwrap();
            b.write(id, off, &pattern(i as u64, len), i % 2 == 0)
                .unwrap();
            b.commit(id).unwrap();
            let added = b.usage().unwrap() - before;
            let most = b.most_added_by_write(off, len as u64);
            assert!(added <= most, "write {i}: added {added} > {most}");
            assert!(
                most <= added.max(4096) * 2 + (16 << 10),
                "write {i}: {most} charged for {added}"
            );
        }
    }
}

/// The chunk file of object `id` (the store's layout: `objects/<id & 0xff>/<id>/<chunk>`).
fn chunk_path(dir: &std::path::Path, id: u64, c: u64) -> std::path::PathBuf {
    dir.join(format!("objects/{:02x}/{id:016x}/{c:x}", id & 0xff))
}

fn links(dir: &std::path::Path, id: u64, c: u64) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(chunk_path(dir, id, c)).unwrap().nlink()
}

const CH: u64 = 64 << 10;
/// Seven chunks, the last one partial: one for each kind of change `change_every_chunk` makes.
const LINKED: u64 = 6 * CH + 50_000;

/// Every change the store has, each on a chunk of its own so that each must copy a shared
/// chunk itself: a stable write (chunk 0), an unstable write and commit (1), a punched hole
/// (2), a clone destination (3), an allocation (4), a partial truncate (5) and a truncate of a
/// whole chunk (6). `m` follows the expected contents.
fn change_every_chunk(b: &chunkstore::ChunkStoreSync, id: u64, seed: u64, m: &mut Vec<u8>) {
    let put = |m: &mut Vec<u8>, off: u64, d: &[u8]| {
        m[off as usize..off as usize + d.len()].copy_from_slice(d)
    };
    let d = pattern(seed, 5000);
    b.write(id, 1000, &d, true).unwrap();
    put(m, 1000, &d);
    let d = pattern(seed + 1, 20_000);
    b.write(id, CH + 100, &d, false).unwrap();
    b.commit(id).unwrap();
    put(m, CH + 100, &d);
    b.deallocate(id, 2 * CH + 3000, 40_000).unwrap();
    put(m, 2 * CH + 3000, &[0; 40_000]);
    let src = pattern(seed + 2, 30_000);
    b.write(999, 0, &src, true).unwrap();
    b.clone_range(999, 0, id, 3 * CH + 4096, 30_000).unwrap();
    put(m, 3 * CH + 4096, &src);
    b.allocate(id, 4 * CH, CH).unwrap();
    b.truncate(id, 5 * CH + 1000).unwrap();
    m.truncate(5 * CH as usize + 1000);
    m.resize(LINKED as usize, 0);
}

#[test]
fn a_linked_object_keeps_its_bytes_through_write_truncate_deallocate_clone() {
    let (dir, s) = open_small();
    let b = s.blocking();
    let x = pattern(20, LINKED as usize);
    b.write(1, 0, &x, true).unwrap();
    b.link_object(1, 2).unwrap();
    assert_eq!(links(dir.path(), 1, 0), 2, "linked, not copied");
    let read = |id| b.read(id, 0, LINKED, LINKED).unwrap().0;
    assert_eq!(read(2), x);

    // Changing the source leaves the link with the old bytes, and their checksums verify.
    let mut mx = x.clone();
    change_every_chunk(b, 1, 21, &mut mx);
    assert_eq!(read(1), mx);
    assert_eq!(read(2), x, "the linked object lost its bytes");
    for c in 0..7 {
        assert_eq!(links(dir.path(), 2, c), 1, "chunk {c} was changed in place");
    }
    // A holes-only range of the link still reads as a hole, and nothing past its data.
    assert_eq!(b.data_end(2).unwrap(), LINKED.div_ceil(4096) * 4096);

    // The reverse: changing the link leaves the source.
    b.link_object(1, 3).unwrap();
    let mut m3 = mx.clone();
    m3.resize(LINKED as usize, 0);
    change_every_chunk(b, 3, 30, &mut m3);
    assert_eq!(read(3), m3);
    assert_eq!(read(1), mx, "the source lost its bytes");
    assert_eq!(read(2), x);
    // After a reopen (no cached handles) everything still verifies.
    drop(s);
    let s = ChunkStore::open(dir.path()).unwrap();
    let b = s.blocking();
    for (id, want) in [(1, &mx), (2, &x), (3, &m3)] {
        assert_eq!(
            &b.read(id, 0, LINKED, LINKED).unwrap().0,
            want,
            "object {id}"
        );
    }
    // No temporaries left behind in the object directories.
    for id in 1..=3 {
        let dirp = chunk_path(dir.path(), id, 0);
        for e in std::fs::read_dir(dirp.parent().unwrap()).unwrap() {
            let name = e.unwrap().file_name();
            assert!(!name.to_string_lossy().contains('.'), "{name:?} left");
        }
    }
}

#[test]
fn usage_counts_a_shared_chunk_once() {
    let (_d, s) = open_small();
    let b = s.blocking();
    b.write(1, 0, &pattern(40, 4 * CH as usize), true).unwrap();
    let one = b.usage().unwrap();
    assert!(one >= 4 * CH);
    b.link_object(1, 2).unwrap();
    assert_eq!(b.usage().unwrap(), one, "a link doubled the bytes");
    // The first overwrite of a chunk copies that chunk only.
    b.write(1, 0, &pattern(41, 4096), true).unwrap();
    let after_one = b.usage().unwrap();
    assert!(
        after_one >= one + CH && after_one <= one + CH + 3 * 4096,
        "{one} then {after_one}"
    );
    // Overwriting everything: two full copies.
    b.write(1, 0, &pattern(42, 4 * CH as usize), true).unwrap();
    let two = b.usage().unwrap();
    assert!(two.abs_diff(2 * one) <= 4 * 4096, "{one} then {two}");
    // Removing the link gives its bytes back.
    b.remove(2).unwrap();
    assert!(b.usage().unwrap().abs_diff(one) <= 4 * 4096);
}

#[test]
fn link_is_idempotent() {
    let (dir, s) = open_small();
    let b = s.blocking();
    let x = pattern(50, 3 * CH as usize);
    // Unstable: the link makes them durable first.
    b.write(1, 0, &x, false).unwrap();
    b.link_object(1, 2).unwrap();
    let used = b.usage().unwrap();
    b.link_object(1, 2).unwrap();
    assert_eq!(b.usage().unwrap(), used);
    assert_eq!(links(dir.path(), 1, 1), 2);
    // A link that died part way (one name missing) is completed by a retry.
    std::fs::remove_file(chunk_path(dir.path(), 2, 1)).unwrap();
    b.link_object(1, 2).unwrap();
    assert_eq!(links(dir.path(), 1, 1), 2);
    assert_eq!(b.read(2, 0, 3 * CH, 3 * CH).unwrap().0, x);
    // A name the link already has is kept, even once the source changed.
    b.write(1, 0, &pattern(51, 4096), true).unwrap();
    b.link_object(1, 2).unwrap();
    assert_eq!(b.read(2, 0, 3 * CH, 3 * CH).unwrap().0, x);
    assert!(matches!(b.link_object(1, 1), Err(DsError::Invalid(_))));
    // Linking an object with no data makes an empty one.
    b.link_object(77, 78).unwrap();
    assert!(b.read(78, 0, 10, 10).unwrap().0.iter().all(|x| *x == 0));
}

#[test]
fn object_stat_counts_chunks_bytes_and_the_shared_ones() {
    let (_d, s) = open_small();
    let b = s.blocking();
    assert_eq!(b.object_stat(1).unwrap(), chunkstore::ObjectStat::default());
    // Three full chunks and a sparse one (a block at its end).
    b.write(1, 0, &pattern(60, 3 * CH as usize), true).unwrap();
    b.write(1, 4 * CH - 4096, &pattern(61, 4096), true).unwrap();
    let one = b.object_stat(1).unwrap();
    assert_eq!((one.chunks, one.shared_chunks, one.shared_bytes), (4, 0, 0));
    assert!(one.bytes >= 3 * CH + 4096, "{one:?}");
    assert!(
        one.bytes < 4 * CH,
        "the sparse chunk counted whole: {one:?}"
    );
    assert_eq!(one.bytes, b.usage().unwrap());

    b.link_object(1, 2).unwrap();
    let (s1, s2) = (b.object_stat(1).unwrap(), b.object_stat(2).unwrap());
    assert_eq!(s1, s2);
    assert_eq!(
        (s1.chunks, s1.shared_chunks, s1.bytes, s1.shared_bytes),
        (4, 4, one.bytes, one.bytes)
    );
    // The first write to chunk 1 copies it: one chunk each, unshared, on both sides.
    b.write(1, CH + 10, b"x", true).unwrap();
    let (s1, s2) = (b.object_stat(1).unwrap(), b.object_stat(2).unwrap());
    assert_eq!((s1.chunks, s1.shared_chunks), (4, 3));
    assert_eq!((s2.chunks, s2.shared_chunks), (4, 3));
    assert_eq!(s2.bytes - s2.shared_bytes, s1.bytes - s1.shared_bytes);
    // Unique bytes of the two together plus the shared ones once: what `usage` sees.
    assert_eq!(
        s1.bytes + (s2.bytes - s2.shared_bytes),
        b.usage().unwrap(),
        "{s1:?} {s2:?}"
    );
    // Once the source is gone, nothing of the link is shared any more.
    b.remove(1).unwrap();
    let s2 = b.object_stat(2).unwrap();
    assert_eq!((s2.chunks, s2.shared_chunks, s2.shared_bytes), (4, 0, 0));
}

/// The first write to a chunk shared by `link_object` copies the chunk: what a cache charges
/// for a write to an object (`most_added_by_write_to`) covers that copy, where the plain bound
/// does not, and charges nothing more once the chunk is the object's alone.
#[test]
fn a_write_to_a_shared_chunk_is_charged_its_copy() {
    let (_d, s) = open_small();
    let b = s.blocking();
    b.write(1, 0, &pattern(80, 3 * CH as usize), true).unwrap();
    b.link_object(1, 2).unwrap();
    // Across chunks 0 and 1, both shared: both are copied.
    let (off, len) = (CH - 2048, 4096u64);
    let charged = b.most_added_by_write_to(1, off, len);
    let plain = b.most_added_by_write(off, len);
    let before = b.usage().unwrap();
    b.write(1, off, &pattern(81, len as usize), true).unwrap();
    let added = b.usage().unwrap() - before;
    assert!(added > plain, "the copy was not needed: {added} <= {plain}");
    assert!(added <= charged, "added {added} > charged {charged}");
    assert!(charged <= plain + 2 * (CH + 8192), "{charged} for {added}");
    // Now private (cached as such, and on disk): the plain bound again, for either object.
    assert_eq!(b.most_added_by_write_to(1, off, len), plain);
    assert_eq!(b.most_added_by_write_to(2, off, len), plain);
    // Chunk 2 is still shared; an object that does not exist costs what a new one does.
    assert!(b.most_added_by_write_to(2, 2 * CH, 10) > b.most_added_by_write(2 * CH, 10) + CH / 2);
    assert_eq!(
        b.most_added_by_write_to(99, 0, 10),
        b.most_added_by_write(0, 10)
    );
    assert_eq!(
        b.most_added_by_write_to(1, 0, 0),
        b.most_added_by_write(0, 0)
    );
    // A range past what is looked at counts each further chunk as a whole copy.
    let huge = b.most_added_by_write_to(99, 0, 1000 * CH);
    assert!(
        huge >= b.most_added_by_write(0, 1000 * CH) + 900 * CH,
        "{huge}"
    );
}
