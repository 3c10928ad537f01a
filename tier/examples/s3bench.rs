//! PUT and GET throughput of whole objects through `tier` (object encode + `Store::put`, and
//! `Store::get` + verifying decode) against plain aws-sdk-s3 calls on the same client and
//! server, in one run, one request at a time, alternating, for several object sizes.
//!
//! ```text
//! cargo run --release -p tier --example s3bench [MiB ...]      (default: 4 16 64)
//! ```
//!
//! Then, in memory on one core: blake3 of 64 MiB, and encode and verifying decode of a 64 MiB
//! object, plain and sealed.
//!
//! Starts moto (as the tests do) unless `S3BENCH_ENDPOINT` names a store; then the bucket is
//! `S3BENCH_BUCKET` (default `cfs-bench`, created if missing) and credentials come from the
//! AWS environment variables.

use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use tier::testing::moto;
use tier::{object, Credentials, KeySpace, Kind, ObjectId, Store, TierConfig};

/// Bytes moved per size and path: enough requests to average over, bounded for 64 MiB.
const TOTAL: usize = 512 << 20;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse::<usize>().map(|m| m << 20))
        .collect::<Result<_, _>>()?;
    let sizes = if sizes.is_empty() {
        vec![4 << 20, 16 << 20, 64 << 20]
    } else {
        sizes
    };
    let (_moto, store) = connect().await?;
    let bucket = store.config().bucket.clone();
    let _ = store.sdk().create_bucket().bucket(&bucket).send().await;
    let keys = KeySpace::new("bench").ok_or("key root")?;

    println!("size_mib op  tier_mib_s plain_mib_s tier/plain  (requests each)");
    for size in sizes {
        let n = (TOTAL / size).clamp(2, 64);
        let payload = Bytes::from((0..size).map(|i| (i * 31 % 251) as u8).collect::<Vec<u8>>());
        let ids: Vec<ObjectId> = (0..n as u64)
            .map(|segment| ObjectId {
                kind: Kind::Data,
                ino: 1 << 48 | 42,
                segment,
                generation: 1,
            })
            .collect();

        // Request by request, tier then plain, so drift in the server (or in the load on the
        // machine) hits both alike. Tier: encode (blake3 + copy) and the bounded, retried put;
        // then the whole object and a verifying decode. Plain: the SDK alone, the payload as
        // is, no header, no checks.
        let plain = |i: usize| format!("bench/plain/{i}");
        let (mut tier_put, mut plain_put) = (Duration::ZERO, Duration::ZERO);
        for (i, id) in ids.iter().enumerate() {
            let t = Instant::now();
            let obj = object::encode(id, id.segment * size as u64, size as u64, &payload, None);
            store.put(&keys.key(id), obj).await?;
            tier_put += t.elapsed();
            let t = Instant::now();
            store
                .sdk()
                .put_object()
                .bucket(&bucket)
                .key(plain(i))
                .content_length(size as i64)
                .body(ByteStream::from(payload.clone()))
                .send()
                .await?;
            plain_put += t.elapsed();
        }
        let (mut tier_get, mut plain_get) = (Duration::ZERO, Duration::ZERO);
        for (i, id) in ids.iter().enumerate() {
            let t = Instant::now();
            let obj = object::decode(store.get(&keys.key(id)).await?, None)?.verify_id(id)?;
            tier_get += t.elapsed();
            assert_eq!(obj.payload.len(), size);
            let t = Instant::now();
            let out = store
                .sdk()
                .get_object()
                .bucket(&bucket)
                .key(plain(i))
                .send()
                .await?;
            let got = out.body.collect().await?.into_bytes();
            plain_get += t.elapsed();
            assert_eq!(got.len(), size);
        }
        for (i, id) in ids.iter().enumerate() {
            store.delete(&keys.key(id)).await?;
            store
                .sdk()
                .delete_object()
                .bucket(&bucket)
                .key(plain(i))
                .send()
                .await?;
        }
        let [tier_put, plain_put, tier_get, plain_get] =
            [tier_put, plain_put, tier_get, plain_get].map(|t| rate(size * n, t));

        let mib = size >> 20;
        for (op, a, b) in [("PUT", tier_put, plain_put), ("GET", tier_get, plain_get)] {
            println!("{mib:8} {op} {a:11.1} {b:11.1} {:10.2}  ({n})", a / b);
        }
    }
    // What the object format costs on its own: blake3 of 64 MiB, one core.
    let big = vec![7u8; 64 << 20];
    let t = Instant::now();
    let h = blake3::hash(&big);
    println!(
        "blake3 of 64 MiB: {:.1} ms ({:.0} MiB/s) {}",
        t.elapsed().as_secs_f64() * 1e3,
        rate(big.len(), t.elapsed()),
        &h.to_hex()[..8]
    );
    // What sealing costs on its own: encode and a verifying decode of 64 MiB, plain and
    // sealed (XChaCha20 and keyed blake3), one core, best of three.
    let key = tier::SealKey::from_data_key(&[1; 32]);
    let id = ObjectId {
        kind: Kind::Data,
        ino: 1,
        segment: 0,
        generation: 1,
    };
    for (name, seal) in [("plain", None), ("sealed", Some(&key))] {
        let (mut enc, mut dec) = (Duration::MAX, Duration::MAX);
        for _ in 0..3 {
            let t = Instant::now();
            let obj = object::encode(&id, 0, big.len() as u64, &big, seal);
            enc = enc.min(t.elapsed());
            let t = Instant::now();
            let back = object::decode(obj, seal)?;
            dec = dec.min(t.elapsed());
            assert_eq!(back.payload.len(), big.len());
        }
        println!(
            "64 MiB {name:6}: encode {:6.0} MiB/s, decode {:6.0} MiB/s",
            rate(big.len(), enc),
            rate(big.len(), dec)
        );
    }
    Ok(())
}

fn rate(bytes: usize, took: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / took.as_secs_f64()
}

async fn connect() -> Result<(Option<moto::Moto>, Store), Box<dyn std::error::Error>> {
    let bucket = std::env::var("S3BENCH_BUCKET").unwrap_or_else(|_| "cfs-bench".into());
    if let Ok(endpoint) = std::env::var("S3BENCH_ENDPOINT") {
        return Ok((None, Store::new(TierConfig::new(endpoint, bucket))?));
    }
    let m = tokio::task::spawn_blocking(|| moto::Moto::start(24600)).await?;
    let mut c = TierConfig::new(m.endpoint(), bucket);
    c.credentials = Some(Credentials {
        access_key_id: "bench".into(),
        secret_access_key: "bench".into(),
        session_token: None,
    });
    Ok((Some(m), Store::new(c)?))
}
