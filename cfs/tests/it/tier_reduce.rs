//! Reduced files in the object-store tier (issue 46 with issue 45), on real processes: one MDS
//! node, three data servers (2+1), `--reduce on`, a bucket on moto. The bucket holds a reduced
//! file as its segments, each once however many files share it, so it holds the reduced
//! bytes, not the logical ones; evicted, the files' segments leave the data servers (a segment
//! shared with a file on flash stays until that file goes: the sweep then drops it), and every
//! file still reads back byte-exact, from the bucket (counted in `bucket_read_bytes`), through
//! a kill -9 of the MDS too; a segment no file refers to any more is deleted from the bucket
//! as from flash; a file pinned to flash again and read has its segments written back.
use crate::common::ec::{data_status, read_file, shard_counts, wait_for, write_file};
use crate::common::{random_bytes, BIN, SERIAL};
use crate::tier_cache::{keys_under, rt, s3};
use crate::tier_evict::{cluster_tier, tier_cluster};

fn n(v: &serde_json::Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or(0)
}

/// Text zstd shrinks several times over but dedup finds little in: lines of words drawn
/// from a small vocabulary.
fn text(len: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "segment", "bucket", "flash", "chunk", "reduce", "tier", "evict", "shard", "recipe",
        "object", "server", "metadata", "file", "bytes", "read", "write",
    ];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(len + 64);
    let mut line = 0u64;
    while out.len() < len {
        line += 1;
        out.extend_from_slice(format!("{line:08} ").as_bytes());
        for _ in 0..8 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend_from_slice(WORDS[(x % WORDS.len() as u64) as usize].as_bytes());
            out.push(b' ');
        }
        out.push(b'\n');
    }
    out.truncate(len);
    out
}

/// The bucket's data objects: (count, payload bytes) of segments' (keys named by a
/// segment's shard set, top bit set) and of files' pieces. Metadata objects are left out.
fn bucket_split(rt: &tokio::runtime::Runtime, store: &tier::Store) -> ((usize, u64), (usize, u64)) {
    let keys = tier::KeySpace::new("cfs").expect("prefix");
    rt.block_on(async {
        let (mut seg, mut piece) = ((0, 0), (0, 0));
        for key in keys_under(store, "cfs").await {
            let id = keys.parse(&key).expect("every key is one cfs makes");
            if id.kind != tier::Kind::Data {
                continue;
            }
            let Ok(bytes) = store.get(&key).await else {
                continue; // deleted between the listing and the GET
            };
            let obj = tier::object::decode(bytes, None)
                .and_then(|o| o.verify_id(&id))
                .expect("every object verifies and is the one its key names");
            let at = if id.ino >> 63 == 1 {
                &mut seg
            } else {
                &mut piece
            };
            at.0 += 1;
            at.1 += obj.payload.len() as u64;
        }
        (seg, piece)
    })
}

#[test]
fn reduced_files_go_to_the_bucket_as_their_segments_and_leave_flash_with_them() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let (_moto, proxy, store) = s3(&rt);
    let started = std::time::Instant::now();
    let cl = tier_cluster(
        dir.path(),
        &proxy,
        (1, 3),
        // As `tier_cache::tier_toml`: requests short enough for a grace delay of 12 s. Flash
        // of its own size, not the disk's (which may be past the high watermark): only the
        // pin evicts.
        "upload_after_seconds = 1\nobject_mib = 1\nrequest_timeout_seconds = 2\n\
         connect_timeout_seconds = 1\nmax_attempts = 3\ndelete_grace_seconds = 12\n\
         flash_capacity_mib = 1024\n",
        &["--encode-after", "1", "--reduce", "on"],
    );
    // Two copies of random bytes (dedup), and a text (compression).
    let random = random_bytes(6 << 20, 0x47);
    let words = text(4 << 20);
    let files = [("/a", &random), ("/b", &random), ("/text", &words)];
    for (p, d) in files {
        write_file(&cl, p, d);
    }
    let logical: u64 = files.iter().map(|(_, d)| d.len() as u64).sum();
    wait_for(90, "the three files reduced", || {
        n(&data_status(&cl), "reduced_files") == 3
    });
    // In the bucket as their segments only: pieces uploaded before a file was reduced are
    // replaced by its segments and deleted.
    let mut last = Default::default();
    wait_for(
        60,
        "the files in the bucket as their segments alone",
        || {
            let t = cluster_tier(&cl);
            last = bucket_split(&rt, &store);
            n(&t, "in_bucket_files") == 3 && n(&t, "queued_files") == 0 && (last.1).0 == 0
        },
    );
    let st = data_status(&cl);
    let stored = n(&st, "segment_stored_bytes");
    let ((segs, seg_bytes), _) = last;
    eprintln!(
        "bucket: {segs} segment objects, {seg_bytes} bytes, for {logical} logical bytes; \
         the index stores {stored}; {st}"
    );
    // Exactly the index's segments, each once: /a and /b share theirs.
    assert_eq!(
        seg_bytes, stored,
        "the bucket holds each stored segment once"
    );
    assert!(
        seg_bytes < random.len() as u64 + words.len() as u64 / 2,
        "reduced, not logical, bytes in the bucket: {seg_bytes} of {logical}"
    );
    let on_flash = shard_counts(&cl, 3);
    assert!(on_flash.iter().all(|c| *c > 0), "{on_flash:?}");

    // /a and /text pinned to the bucket: evicted. /text's segments leave the data servers;
    // those /a shares with /b, which is still on flash, stay.
    let pin = |p: &str| {
        let out = std::process::Command::new(BIN)
            .args(["admin", "tier", "pin", p, "s3", "--config", &cl.mds_toml()])
            .output()
            .expect("cfs admin tier pin");
        assert!(out.status.success(), "{out:?}");
    };
    pin("/a");
    pin("/text");
    wait_for(60, "/a and /text evicted", || {
        n(&cluster_tier(&cl), "evicted_files") == 2
    });
    let mut shared = Vec::new();
    wait_for(30, "/text's segments deleted from flash", || {
        shared = shard_counts(&cl, 3);
        shared.iter().zip(&on_flash).any(|(now, was)| now < was)
    });
    assert!(
        shared.iter().all(|c| *c > 0),
        "the segments /b (on flash) shares stay: {shared:?} of {on_flash:?}"
    );
    // /b removed: only evicted /a refers to the shared segments now. No eviction follows
    // to drop them; the sweep over the segment records does.
    let c = cl.client(false);
    let root = cl.rt.block_on(c.lookup_path("/")).expect("root");
    cl.rt.block_on(c.remove(&root, "b")).expect("remove /b");
    let _ = cl.rt.block_on(c.shutdown());
    wait_for(30, "the shared segments swept from flash", || {
        shard_counts(&cl, 3) == vec![0, 0, 0]
    });
    for (p, d) in [("/a", &random), ("/text", &words)] {
        assert!(read_file(&cl, p, d.len()) == *d, "{p} read from the bucket");
    }
    // The MDS killed and started again (its cache of segments gone): the records say where
    // the segments are, and every read GETs from the bucket.
    cl.kill9("mds");
    let mds = cl.restart_mds();
    let read_before = n(&cluster_tier(&cl), "bucket_read_bytes");
    for (p, d) in [("/a", &random), ("/text", &words)] {
        assert!(
            read_file(&cl, p, d.len()) == *d,
            "{p} after a kill -9 of the MDS"
        );
    }
    let read = n(&cluster_tier(&cl), "bucket_read_bytes") - read_before;
    assert!(
        read >= seg_bytes && read <= 2 * seg_bytes,
        "segment GETs counted in bucket_read_bytes: {read} for {seg_bytes} in the bucket"
    );
    assert_eq!(
        shard_counts(&cl, 3),
        vec![0, 0, 0],
        "reads do not refill flash"
    );

    // The last copy removed: the segments /a and /b shared die, and leave the bucket.
    let c = cl.client(false);
    let root = cl.rt.block_on(c.lookup_path("/")).expect("root");
    cl.rt.block_on(c.remove(&root, "a")).expect("remove /a");
    let _ = cl.rt.block_on(c.shutdown());
    let mut now = Default::default();
    wait_for(60, "the shared segments deleted from the bucket", || {
        now = bucket_split(&rt, &store).0;
        now.1 < words.len() as u64
    });
    assert!(now.0 > 0 && now.0 < segs, "{now:?} of {segs}");
    assert!(read_file(&cl, "/text", words.len()) == words);

    // Pinned to flash and read: the restorer writes its segments back to the data servers.
    let out = std::process::Command::new(BIN)
        .args([
            "admin",
            "tier",
            "pin",
            "/text",
            "flash",
            "--config",
            &cl.mds_toml(),
        ])
        .output()
        .expect("cfs admin tier pin");
    assert!(out.status.success(), "{out:?}");
    assert!(read_file(&cl, "/text", words.len()) == words);
    wait_for(60, "/text back on flash, its segments with it", || {
        n(&cluster_tier(&cl), "evicted_files") == 0 && shard_counts(&cl, 3).iter().all(|c| *c > 0)
    });
    // With the MDS's cache of segments gone, the reads GET nothing (a SIGKILL, as above).
    drop(mds);
    let _mds = cl.restart_mds();
    // Until the data servers are back in its table, a read of a segment the bucket holds
    // goes there rather than fail.
    wait_for(30, "the data servers back in the MDS's table", || {
        cl.status().is_some_and(|st| cl.up(&st) == 3)
    });
    assert!(
        read_file(&cl, "/text", words.len()) == words,
        "/text from flash"
    );
    assert_eq!(
        n(&cluster_tier(&cl), "bucket_read_bytes"),
        0,
        "no GET once back on flash"
    );
    eprintln!("took {:?}", started.elapsed());
}
