//! `tier::Store` against a real S3 server (moto, a child process) and a fault proxy of ours in
//! front of it. Every test has a deadline and stops by itself; moto is killed when it ends.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tier::object::{self, FormatError};
use tier::testing::moto::Moto;
use tier::testing::proxy::{Fault, FaultProxy};
use tier::{
    Credentials, KeySpace, Kind, ObjectId, RetryPolicy, SealKey, Store, TierConfig, TierError,
};

const BUCKET: &str = "cfs-test";

fn config(endpoint: String) -> TierConfig {
    let mut c = TierConfig::new(endpoint, BUCKET);
    c.credentials = Some(Credentials {
        access_key_id: "testing".into(),
        secret_access_key: "testing".into(),
        session_token: None,
    });
    c.region = Some("us-east-1".into());
    c.request_timeout = Duration::from_secs(5);
    c.retry = RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(100),
    };
    c
}

/// moto on `port`, the test bucket made, and a store talking to it directly.
async fn moto_with_bucket(port: u16) -> (Moto, Store) {
    let moto = tokio::task::spawn_blocking(move || Moto::start(port))
        .await
        .expect("moto starts");
    let store = Store::new(config(moto.endpoint())).expect("store");
    store
        .sdk()
        .create_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .expect("create bucket");
    (moto, store)
}

/// moto with the bucket, the fault proxy in front, and a store (configured by `tweak`) that
/// talks through the proxy.
async fn behind_proxy(port: u16, tweak: impl FnOnce(&mut TierConfig)) -> (Moto, FaultProxy, Store) {
    let (moto, _direct) = moto_with_bucket(port).await;
    let proxy = FaultProxy::start(moto.addr).await;
    let mut c = config(proxy.endpoint());
    tweak(&mut c);
    let store = Store::new(c).expect("store");
    (moto, proxy, store)
}

/// Runs a test with a deadline, so a hang fails instead of stalling the suite.
fn bounded(limit: Duration, test: impl Future<Output = ()>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        tokio::time::timeout(limit, test)
            .await
            .expect("test deadline");
    });
}

fn id(segment: u64) -> ObjectId {
    ObjectId {
        kind: Kind::Data,
        ino: 0x0001_0000_0000_0007,
        segment,
        generation: 1,
    }
}

#[test]
fn put_get_range_delete_round_trip() {
    bounded(Duration::from_secs(60), async {
        let (_moto, store) = moto_with_bucket(24510).await;
        let keys = KeySpace::new("c1").expect("root");
        let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let key = keys.key(&id(0));
        let obj = object::encode(&id(0), 0, payload.len() as u64, &payload, None);
        store.put(&key, obj.clone()).await.expect("put");

        let back = store.get(&key).await.expect("get");
        assert_eq!(back, obj);
        let decoded = object::decode(back, None)
            .expect("verifies")
            .verify_id(&id(0))
            .expect("same id");
        assert_eq!(&decoded.payload[..], &payload[..]);
        // The key alone says what to expect of the object.
        assert_eq!(keys.parse(&key), Some(id(0)));

        // A header read alone, a range inside, a range running past the end.
        let head = store
            .get_range(&key, 0..object::MAX_HEADER_LEN as u64)
            .await
            .expect("header range");
        let (h, _) = object::decode_header(&head, None).expect("header verifies");
        assert_eq!(h.payload_len, payload.len() as u64);

        // The verified read an evicted file's READ makes: the header (checked against the id
        // and the recorded sum), then only the blocks a range falls in.
        let sum = *blake3::hash(&payload).as_bytes();
        let (h, hl) = store
            .header(&key, &id(0), &sum, None)
            .await
            .expect("header");
        let part = store
            .read_payload(&key, &h, hl, 123_456, 654_321, None)
            .await
            .expect("verified range");
        assert_eq!(&part[..], &payload[123_456..654_321]);
        let past = store
            .read_payload(&key, &h, hl, 999_000, 2_000_000, None)
            .await
            .expect("range past the end");
        assert_eq!(&past[..], &payload[999_000..]);
        assert!(matches!(
            store.header(&key, &id(1), &sum, None).await,
            Err(TierError::Format(object::FormatError::NotThisObject { .. }))
        ));
        assert!(matches!(
            store.header(&key, &id(0), &[0; 32], None).await,
            Err(TierError::Format(object::FormatError::PayloadChecksum))
        ));
        let mid = store.get_range(&key, 1000..5000).await.expect("range");
        assert_eq!(&mid[..], &obj[1000..5000]);
        let n = obj.len() as u64;
        let tail = store.get_range(&key, n - 10..n + 100).await.expect("tail");
        assert_eq!(&tail[..], &obj[obj.len() - 10..]);
        assert!(store.get_range(&key, 7..7).await.expect("empty").is_empty());

        store.delete(&key).await.expect("delete");
        assert!(matches!(
            store.get(&key).await,
            Err(TierError::NotFound { .. })
        ));
    });
}

#[test]
fn misses_are_typed_and_refusals_are_not_retried() {
    bounded(Duration::from_secs(60), async {
        let (moto, store) = moto_with_bucket(24520).await;
        match store.get("no/such/key").await {
            Err(TierError::NotFound { key }) => assert_eq!(key, "no/such/key"),
            other => panic!("expected NotFound, got {other:?}"),
        }
        assert!(matches!(
            store.get_range("no/such/key", 0..10).await,
            Err(TierError::NotFound { .. })
        ));
        // Deleting what is not there is not an error (S3 answers 204).
        store.delete("no/such/key").await.expect("delete of a miss");

        // A missing bucket is a 404 too, but not a missing key: refused, asked once.
        let proxy = FaultProxy::start(moto.addr).await;
        let mut c = config(proxy.endpoint());
        c.bucket = "no-such-bucket".into();
        let other = Store::new(c).expect("store");
        match other.get("k").await {
            Err(TierError::Refused { status, code, .. }) => {
                assert_eq!((status, code.as_str()), (404, "NoSuchBucket"))
            }
            r => panic!("expected Refused, got {r:?}"),
        }
        assert_eq!(proxy.requests(), 1, "a 4xx is not retried");
    });
}

#[test]
fn a_flipped_byte_in_the_store_is_detected() {
    bounded(Duration::from_secs(60), async {
        let (_moto, store) = moto_with_bucket(24530).await;
        let payload = vec![0x5au8; 200_000];
        let mut bad = object::encode(&id(1), 0, 200_000, &payload, None).to_vec();
        bad[150_000] ^= 0x10;
        store.put("flipped", Bytes::from(bad)).await.expect("put");
        let back = store.get("flipped").await.expect("get");
        assert!(matches!(
            object::decode(back, None),
            Err(FormatError::PayloadChecksum)
        ));
        // In the header, the header's own checksum catches it.
        let mut bad = object::encode(&id(1), 0, 10, &payload[..10], None).to_vec();
        bad[20] ^= 1;
        store
            .put("flipped-head", Bytes::from(bad))
            .await
            .expect("put");
        let back = store.get("flipped-head").await.expect("get");
        assert!(matches!(
            object::decode(back, None),
            Err(FormatError::HeaderChecksum)
        ));
    });
}

#[test]
fn at_most_max_in_flight_requests_reach_the_store() {
    bounded(Duration::from_secs(90), async {
        let (_moto, proxy, store) = behind_proxy(24540, |c| c.max_in_flight = 4).await;
        let store = Arc::new(store);
        // Each request held 100 ms in the proxy, so the 32 overlap as much as they are let.
        proxy.set_delay(Duration::from_millis(100));
        let mut puts = tokio::task::JoinSet::new();
        for i in 0..32u32 {
            let store = store.clone();
            puts.spawn(async move {
                let body = Bytes::from(vec![i as u8; 64 << 10]);
                store.put(&format!("bound/{i}"), body).await
            });
        }
        while let Some(r) = puts.join_next().await {
            r.expect("task").expect("put");
        }
        assert_eq!(proxy.requests(), 32);
        let max = proxy.max_in_flight();
        assert!(max <= 4, "{max} requests in flight with a bound of 4");
        assert!(
            max >= 3,
            "only {max} in flight: the bound was never reached"
        );
    });
}

#[test]
fn slow_down_answers_are_retried_with_backoff_then_reported() {
    bounded(Duration::from_secs(60), async {
        let (_moto, proxy, store) = behind_proxy(24550, |_| {}).await;
        let body = Bytes::from(vec![1u8; 100_000]);

        proxy.fail_next(3, Fault::SlowDown);
        store
            .put("slow", body.clone())
            .await
            .expect("put after three 503s");
        assert_eq!(proxy.requests(), 4);
        proxy.fail_next(2, Fault::SlowDown);
        assert_eq!(store.get("slow").await.expect("get after two 503s"), body);
        assert_eq!(proxy.requests(), 7);

        // More 503s than attempts: a typed error naming the throttling, after 4 attempts.
        proxy.fail_all(Fault::SlowDown);
        match store.delete("slow").await {
            Err(TierError::Unavailable {
                status,
                code,
                attempts,
                ..
            }) => assert_eq!((status, code.as_str(), attempts), (503, "SlowDown", 4)),
            r => panic!("expected Unavailable, got {r:?}"),
        }
        assert_eq!(proxy.requests(), 11);
    });
}

#[test]
fn resets_are_retried() {
    bounded(Duration::from_secs(60), async {
        let (_moto, proxy, store) = behind_proxy(24560, |_| {}).await;
        let body = Bytes::from(vec![2u8; 300_000]);
        proxy.fail_next(2, Fault::Reset);
        store
            .put("reset", body.clone())
            .await
            .expect("put after two resets");
        assert_eq!(proxy.requests(), 3);
        proxy.fail_next(3, Fault::Reset);
        assert_eq!(
            store.get("reset").await.expect("get after three resets"),
            body
        );
        assert_eq!(proxy.requests(), 7);
        proxy.fail_all(Fault::Reset);
        match store.get("reset").await {
            Err(TierError::Connection { attempts, .. }) => assert_eq!(attempts, 4),
            r => panic!("expected Connection, got {r:?}"),
        }
    });
}

#[test]
fn a_black_hole_ends_in_a_typed_timeout_within_the_bound() {
    bounded(Duration::from_secs(60), async {
        let (_moto, proxy, store) = behind_proxy(24570, |c| {
            c.request_timeout = Duration::from_millis(300);
            c.retry.max_attempts = 3;
        })
        .await;
        proxy.fail_all(Fault::BlackHole);
        for (op, r) in [
            ("GET", store.get("hole").await.map(|_| ())),
            ("PUT", store.put("hole", Bytes::from_static(b"x")).await),
        ] {
            match r {
                Err(TierError::Timeout { attempts, .. }) => assert_eq!(attempts, 3, "{op}"),
                r => panic!("{op}: expected Timeout, got {r:?}"),
            }
        }
        // Three attempts of 300 ms and two backoffs of at most 10 and 20 ms each time.
        let start = Instant::now();
        let r = store.delete("hole").await;
        let took = start.elapsed();
        assert!(
            matches!(r, Err(TierError::Timeout { attempts: 3, .. })),
            "{r:?}"
        );
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(3),
            "{took:?}"
        );
        // The hole closes: the same store works again.
        proxy.clear();
        store
            .put("hole", Bytes::from_static(b"x"))
            .await
            .expect("put");
    });
}

/// Random bytes (a fixed seed) with `marker` written at each of `at`.
fn random_with(len: usize, marker: &[u8], at: &[usize]) -> Vec<u8> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(len as u64);
    let mut b: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
    for &a in at {
        b[a..a + marker.len()].copy_from_slice(marker);
    }
    b
}

#[test]
fn the_bucket_holds_only_ciphertext_and_ranges_read_back_as_plaintext() {
    bounded(Duration::from_secs(90), async {
        let (_moto, store) = moto_with_bucket(24580).await;
        let keys = KeySpace::new("c1").expect("root");
        let k = SealKey::from_data_key(&[0x5e; 32]);
        let mut marker = vec![0u8; 4096];
        blake3::Hasher::new()
            .update(b"a known 4 KiB block")
            .finalize_xof()
            .fill(&mut marker);
        let len = (3 << 20) + 4321;
        let m = 1usize << 20;
        let payload = random_with(len, &marker, &[10_000, m - 1000, 3 * m]);
        let key = keys.key(&id(5));
        let obj = object::encode(&id(5), 0, len as u64, &payload, Some(&k));
        store.put(&key, obj).await.expect("put");

        // What the bucket holds: not the marker, nor any 32-byte window of it.
        let raw = store.get(&key).await.expect("get");
        let windows: std::collections::HashSet<&[u8]> = marker.windows(32).collect();
        assert!(
            payload.windows(32).any(|w| windows.contains(w)),
            "the control"
        );
        assert!(!raw.windows(32).any(|w| windows.contains(w)));
        let (h0, _) = object::decode_header(&raw, Some(&k)).expect("header");
        let whole = object::decode(raw, Some(&k)).expect("whole object");
        assert_eq!(&whole.payload[..], &payload[..]);

        // The metadata's sum (what the upload recorded), the header checked against it, then
        // ranges at odd offsets across block boundaries, deciphered from their offsets.
        let sum = h0.payload_blake3;
        let (h, hl) = store
            .header(&key, &id(5), &sum, Some(&k))
            .await
            .expect("header under the key");
        assert!(h.sealing.is_some());
        let m = m as u64;
        for (a, b) in [
            (1, 2),
            (m - 3, m + 5),
            (m - 1000, 2 * m + 4095),
            (123_457, 3 * m + 1),
            (3 * m + 4000, 3 * m + 4321),
            (3 * m + 4000, 9 * m),
        ] {
            let got = store
                .read_payload(&key, &h, hl, a, b, Some(&k))
                .await
                .expect("verified range");
            let b = b.min(len as u64);
            assert_eq!(&got[..], &payload[a as usize..b as usize], "{a}..{b}");
        }

        // No key, another key: typed, and the message says what is missing.
        match store.header(&key, &id(5), &sum, None).await {
            Err(TierError::Format(FormatError::Sealed)) => {}
            r => panic!("expected Sealed, got {r:?}"),
        }
        let other = SealKey::from_data_key(&[0x5f; 32]);
        match store.header(&key, &id(5), &sum, Some(&other)).await {
            Err(TierError::Format(FormatError::WrongKey { found, ours })) => {
                assert_eq!((found, ours), (k.tag(), other.tag()))
            }
            r => panic!("expected WrongKey, got {r:?}"),
        }
        assert!(matches!(
            store.read_payload(&key, &h, hl, 0, 10, None).await,
            Err(TierError::Format(FormatError::Sealed))
        ));
        assert!(matches!(
            store.read_payload(&key, &h, hl, 0, 10, Some(&other)).await,
            Err(TierError::Format(FormatError::WrongKey { .. }))
        ));
    });
}

#[test]
fn a_changed_sealed_object_is_refused_and_old_plaintext_still_reads() {
    bounded(Duration::from_secs(90), async {
        let (_moto, store) = moto_with_bucket(24590).await;
        let keys = KeySpace::new("c1").expect("root");
        let k = SealKey::from_data_key(&[0x5e; 32]);
        let len = (2 << 20) + 77;
        let payload = random_with(len, &[], &[]);
        let sealed = object::encode(&id(6), 0, len as u64, &payload, Some(&k));
        let (h, hl) = object::decode_header(&sealed, Some(&k)).expect("header");
        let sum = h.payload_blake3;
        let key = keys.key(&id(6));

        // One byte changed in the bucket, in the payload: the block it is in is refused, the
        // others still read; in the header: the header is refused.
        let mut bad = sealed.to_vec();
        bad[hl + (1 << 20) + 12_345] ^= 0x80;
        store.put(&key, Bytes::from(bad)).await.expect("put");
        let (h, hl) = store
            .header(&key, &id(6), &sum, Some(&k))
            .await
            .expect("header intact");
        assert!(matches!(
            store
                .read_payload(&key, &h, hl, (1 << 20) - 1, (1 << 20) + 1, Some(&k))
                .await,
            Err(TierError::Format(FormatError::PayloadChecksum))
        ));
        let first = store
            .read_payload(&key, &h, hl, 5, 1 << 20, Some(&k))
            .await
            .expect("block 0 intact");
        assert_eq!(&first[..], &payload[5..1 << 20]);
        for at in [20, 60, 100, 110, 130, hl - 1] {
            let mut bad = sealed.to_vec();
            bad[at] ^= 1;
            store.put(&key, Bytes::from(bad)).await.expect("put");
            assert!(
                store.header(&key, &id(6), &sum, Some(&k)).await.is_err(),
                "header byte {at}"
            );
        }
        // A sealed object cut short in the bucket.
        store
            .put(&key, sealed.slice(..sealed.len() - 1))
            .await
            .expect("put");
        assert!(store
            .read_payload(&key, &h, hl, len as u64 - 10, len as u64, Some(&k))
            .await
            .is_err());

        // A plaintext (version 2) object, uploaded before encryption was turned on, reads
        // with the key given.
        let plain = object::encode(&id(7), 0, len as u64, &payload, None);
        let pkey = keys.key(&id(7));
        store.put(&pkey, plain).await.expect("put");
        let psum = *blake3::hash(&payload).as_bytes();
        let (ph, phl) = store
            .header(&pkey, &id(7), &psum, Some(&k))
            .await
            .expect("plaintext header with a key");
        assert_eq!(ph.sealing, None);
        let got = store
            .read_payload(&pkey, &ph, phl, 1_000_000, 1_100_000, Some(&k))
            .await
            .expect("plaintext range with a key");
        assert_eq!(&got[..], &payload[1_000_000..1_100_000]);
        let whole = object::decode(store.get(&pkey).await.expect("get"), Some(&k))
            .expect("plaintext whole with a key");
        assert_eq!(&whole.payload[..], &payload[..]);
    });
}
