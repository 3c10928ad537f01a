//! The object-store tier in cache mode (issue 45) against a real S3 server: moto, a child
//! process, behind our fault proxy (`tier::testing`), and real `cfs` processes. The bucket is
//! inspected the way `cfs repair --from-s3` will: objects are read and verified from their own
//! headers, and a file is put back together from them, byte for byte.
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use client::{Client, ClientConfig};
use proto::nfs4::{StableHow4, OPEN4_SHARE_ACCESS_BOTH};
use tier::testing::moto::Moto;
use tier::testing::proxy::{Fault, FaultProxy};
use tier::{Credentials, Store, TierConfig};

use crate::common::cluster::Cluster;
use crate::common::ec::{create_empty, wait_for};
use crate::common::{free_port, free_ports, Server, SERIAL};

pub(crate) const BUCKET: &str = "cfs-tier";
const PREFIX: &str = "site";
/// `delete_grace_seconds` in these tests: just above the longest a 1 MiB PUT may take with
/// the settings of `tier_toml` (3 attempts of 2.25 s + 1 s connect, plus backoff: ~10 s).
const GRACE: u64 = 12;

pub(crate) fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// moto with the bucket, a proxy in front (on a port below the ephemeral range), and a store
/// talking to moto directly, for the test's own look at the bucket.
pub(crate) fn s3(rt: &tokio::runtime::Runtime) -> (Moto, FaultProxy, Store) {
    let moto = Moto::start(free_ports(8));
    let mut c = TierConfig::new(moto.endpoint(), BUCKET);
    c.credentials = Some(Credentials {
        access_key_id: "testing".into(),
        secret_access_key: "testing".into(),
        session_token: None,
    });
    c.region = Some("us-east-1".into());
    let store = Store::new(c).expect("store");
    rt.block_on(store.sdk().create_bucket().bucket(BUCKET).send())
        .expect("create bucket");
    let proxy = rt.block_on(FaultProxy::start_at(moto.addr, free_port()));
    (moto, proxy, store)
}

/// `[tier]` for a server uploading through `endpoint`: 1 MiB objects (so a few MiB make
/// several), uploads a second after the last change, short timeouts.
pub(crate) fn tier_toml(endpoint: &str) -> String {
    format!(
        "[tier]\ns3 = \"{endpoint}/{BUCKET}\"\nprefix = \"{PREFIX}\"\n\
         access_key_id = \"testing\"\nsecret_access_key = \"testing\"\n\
         upload_after_seconds = 1\ndelete_grace_seconds = {GRACE}\nobject_mib = 1\n\
         request_timeout_seconds = 2\nconnect_timeout_seconds = 1\nmax_attempts = 3\n"
    )
}

/// `tier_toml` with the data directory `dir/data` and an admin listener: `data` too, so
/// `cfs admin` finds the admin secret from this file.
pub(crate) fn admin_toml(dir: &std::path::Path, endpoint: &str) -> String {
    format!(
        "data = {:?}\n{}[admin]\nlisten = \"127.0.0.1:{}\"\n",
        dir.join("data"),
        tier_toml(endpoint),
        crate::common::free_port()
    )
}

/// Every object under the tests' prefix, verified from its own header: (ino, generation,
/// piece) → (file offset, bytes).
pub(crate) fn bucket(
    rt: &tokio::runtime::Runtime,
    store: &Store,
) -> BTreeMap<(u64, u64, u64), (u64, Vec<u8>)> {
    bucket_at(rt, store, PREFIX)
}

/// `ino`'s bytes as its newest complete generation in the bucket holds them.
pub(crate) fn from_bucket(
    objects: &BTreeMap<(u64, u64, u64), (u64, Vec<u8>)>,
    ino: u64,
    size: usize,
) -> Option<Vec<u8>> {
    let mut gens: Vec<u64> = objects.keys().filter(|k| k.0 == ino).map(|k| k.1).collect();
    gens.sort_unstable();
    gens.dedup();
    gens.into_iter().rev().find_map(|g| {
        let mut out = Vec::new();
        for ((_, _, _), (start, bytes)) in objects.range((ino, g, 0)..=(ino, g, u64::MAX)) {
            if *start != out.len() as u64 {
                return None;
            }
            out.extend_from_slice(bytes);
        }
        (out.len() == size).then_some(out)
    })
}

fn generations(objects: &BTreeMap<(u64, u64, u64), (u64, Vec<u8>)>, ino: u64) -> Vec<u64> {
    let mut g: Vec<u64> = objects.keys().filter(|k| k.0 == ino).map(|k| k.1).collect();
    g.dedup();
    g
}

/// Writes `data` to `path` (FILE_SYNC, so acknowledged means durable) and closes it; its
/// inode number.
pub(crate) fn put(rt: &tokio::runtime::Runtime, addr: SocketAddr, path: &str, data: &[u8]) -> u64 {
    try_put(rt, addr, path, data).expect("write")
}

/// `put`, with the WRITEs' error if any (the file is created and closed either way).
pub(crate) fn try_put(
    rt: &tokio::runtime::Runtime,
    addr: SocketAddr,
    path: &str,
    data: &[u8],
) -> Result<u64, client::Error> {
    rt.block_on(async {
        let c = Client::connect(ClientConfig::new(addr))
            .await
            .expect("connect");
        let (f, written) = create_and_write(&c, path, data, StableHow4::FileSync4).await;
        let ino = c.getattr(&f.fh).await.expect("getattr").fileid;
        c.close(&f).await.expect("close");
        let _ = c.shutdown().await;
        written.map(|()| ino)
    })
}

/// Creates `path` (empty) through `c` and writes `data` to it: the file, open for reading and
/// writing, and the WRITEs' outcome.
pub(crate) async fn create_and_write(
    c: &Client,
    path: &str,
    data: &[u8],
    stable: StableHow4,
) -> (client::OpenFile, Result<(), client::Error>) {
    let f = c
        .open_path(path, OPEN4_SHARE_ACCESS_BOTH, create_empty())
        .await
        .expect("open");
    let written = c.write_all(&f, 0, data, stable).await.map(|_| ());
    (f, written)
}

fn remove(rt: &tokio::runtime::Runtime, addr: SocketAddr, path: &str) {
    rt.block_on(async {
        let c = Client::connect(ClientConfig::new(addr))
            .await
            .expect("connect");
        let (dir, name) = c.lookup_parent(path).await.expect("parent");
        c.remove(&dir, name).await.expect("remove");
        let _ = c.shutdown().await;
    })
}

pub(crate) fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 12) as u8)
        .collect()
}

#[test]
fn every_acknowledged_byte_reaches_the_bucket_and_survives_a_kill_9_during_its_upload() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let (_moto, proxy, store) = s3(&rt);
    let mut srv = Server::start(dir.path(), Some(&tier_toml(&proxy.endpoint())));

    let files = [
        ("/small", data(1000, 1)),
        ("/multi", data(2_500_000, 2)),
        ("/empty", Vec::new()),
    ];
    let inos: Vec<u64> = files
        .iter()
        .map(|(p, d)| put(&rt, srv.addr, p, d))
        .collect();
    let lag = wait_for(30, "the files byte-exact in the bucket", || {
        let b = bucket(&rt, &store);
        files.iter().zip(&inos).all(|((_, d), ino)| {
            d.is_empty() || from_bucket(&b, *ino, d.len()).as_deref() == Some(&d[..])
        })
    });
    eprintln!("upload lag, three files (1 s quiet delay included): {lag:?}");
    let b = bucket(&rt, &store);
    assert_eq!(
        b.keys().filter(|k| k.0 == inos[1]).count(),
        3,
        "2.5 MB in 1 MiB objects"
    );
    assert!(
        !b.keys().any(|k| k.0 == inos[2]),
        "an empty file needs no object"
    );

    // A slow store: the upload of a 12 MiB file takes seconds; kill -9 midway.
    proxy.set_delay(Duration::from_millis(400));
    let big = data(12 << 20, 3);
    let big_ino = put(&rt, srv.addr, "/big", &big);
    wait_for(30, "a few of the big file's objects", || {
        bucket(&rt, &store)
            .keys()
            .filter(|k| k.0 == big_ino)
            .count()
            >= 2
    });
    srv.kill();
    let before = bucket(&rt, &store);
    assert!(
        from_bucket(&before, big_ino, big.len()).is_none(),
        "killed before the upload finished"
    );
    proxy.set_delay(Duration::ZERO);
    srv.restart();
    // The restarted node gives its earlier boot's upload up and sends the file again.
    wait_for(
        40,
        "the big file whole in the bucket after the restart",
        || from_bucket(&bucket(&rt, &store), big_ino, big.len()).as_deref() == Some(&big[..]),
    );
    // The abandoned generation's objects go after the grace delay; one generation is left.
    wait_for(
        GRACE + 30,
        "only the counted generation of the big file left",
        || generations(&bucket(&rt, &store), big_ino).len() == 1,
    );
    let b = bucket(&rt, &store);
    for ((_, d), ino) in files.iter().zip(&inos) {
        if !d.is_empty() {
            assert_eq!(from_bucket(&b, *ino, d.len()).as_deref(), Some(&d[..]));
        }
    }
}

#[test]
fn a_file_removed_during_its_upload_leaves_no_object_and_an_outage_costs_only_lag() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let (_moto, proxy, store) = s3(&rt);
    let srv = Server::start(dir.path(), Some(&admin_toml(dir.path(), &proxy.endpoint())));
    let cfg = srv.config.clone().expect("config");
    let failing = || crate::tier_evict::tier_status(&cfg)["s3_failing_seconds"].clone();

    proxy.set_delay(Duration::from_millis(500));
    let doomed = data(10 << 20, 4);
    let ino = put(&rt, srv.addr, "/doomed", &doomed);
    wait_for(30, "the upload under way", || {
        bucket(&rt, &store).keys().any(|k| k.0 == ino)
    });
    remove(&rt, srv.addr, "/doomed");
    proxy.set_delay(Duration::ZERO);
    let gone = wait_for(GRACE + 40, "no object of the removed file", || {
        !bucket(&rt, &store).keys().any(|k| k.0 == ino)
    });
    eprintln!("objects of a file removed mid-upload gone after {gone:?} (grace {GRACE} s)");

    // The store black-holed: writes go on without an error; the uploads drain after.
    proxy.fail_all(Fault::BlackHole);
    let during: Vec<(String, Vec<u8>)> = (0..6)
        .map(|i| {
            (
                format!("/outage-{i}"),
                data(300_000 + i * 1000, 5 + i as u8),
            )
        })
        .collect();
    let started = Instant::now();
    let inos: Vec<u64> = during
        .iter()
        .map(|(p, d)| put(&rt, srv.addr, p, d))
        .collect();
    std::thread::sleep(Duration::from_secs(15).saturating_sub(started.elapsed()));
    assert!(
        inos.iter()
            .all(|i| !bucket(&rt, &store).keys().any(|k| k.0 == *i)),
        "nothing reaches a black-holed store"
    );
    // An outage is an alert (`cfs admin status`, the console), not a client's error.
    assert!(
        failing().as_u64().is_some(),
        "the store shown failing: {}",
        failing()
    );
    proxy.clear();
    let drained = wait_for(
        60,
        "every file written during the outage in the bucket",
        || {
            let b = bucket(&rt, &store);
            during
                .iter()
                .zip(&inos)
                .all(|((_, d), i)| from_bucket(&b, *i, d.len()).as_deref() == Some(&d[..]))
        },
    );
    eprintln!("uploads drained {drained:?} after a 15 s outage");
    assert!(
        failing().is_null(),
        "the store answering again: {}",
        failing()
    );
}

#[test]
fn a_cluster_up_with_s3_copies_what_clients_write_through_layouts() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let (_moto, proxy, store) = s3(&rt);
    let url = format!("{}/{BUCKET}", proxy.endpoint());
    let cl = Cluster::start_nodes_env(
        dir.path(),
        1,
        3,
        &["--s3", &url],
        &[
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
        ],
    );
    let written: Vec<(String, Vec<u8>)> = (0..3)
        .map(|i| (format!("/f{i}"), data(1_000_000 * (i + 1), 9 + i as u8)))
        .collect();
    let inos: Vec<u64> = written
        .iter()
        .map(|(p, d)| {
            let c = cl.client(true);
            let (f, ino) = crate::common::ec::write_open(&cl, &c, p, d);
            cl.rt.block_on(c.close(&f)).expect("close");
            let _ = cl.rt.block_on(c.shutdown());
            ino
        })
        .collect();
    // `--s3` keeps the defaults: uploads 5 s after the last change, the cfs prefix.
    let lag = wait_for(
        60,
        "what the clients wrote, byte-exact in the bucket",
        || {
            let b = bucket_at(&rt, &store, "cfs");
            written
                .iter()
                .zip(&inos)
                .all(|((_, d), i)| from_bucket(&b, *i, d.len()).as_deref() == Some(&d[..]))
        },
    );
    eprintln!("cluster upload lag, three files (5 s quiet delay included): {lag:?}");
    // `cfs admin status` shows the tier: every file in the bucket, none queued, no lag.
    wait_for(10, "admin status: nothing queued", || {
        let t = tier_status(&cl);
        t["queued_files"] == 0 && t["upload_lag_seconds"] == 0
    });
    let t = &tier_status(&cl);
    assert_eq!(t["mode"], "cache", "{t}");
    assert!(
        t["bucket"]
            .as_str()
            .is_some_and(|b| b.ends_with(&format!("/{BUCKET}/cfs"))),
        "{t}"
    );
    assert!(t["in_bucket_files"].as_u64() >= Some(3), "{t}");
    let want: u64 = written.iter().map(|(_, d)| d.len() as u64).sum();
    assert!(t["in_bucket_bytes"].as_u64() >= Some(want), "{t}");
}

/// Every object under `prefix`, each verified from its own header and its key checked to be
/// the one its header names.
pub(crate) fn bucket_at(
    rt: &tokio::runtime::Runtime,
    store: &Store,
    prefix: &str,
) -> BTreeMap<(u64, u64, u64), (u64, Vec<u8>)> {
    let keys = tier::KeySpace::new(prefix).expect("prefix");
    rt.block_on(async {
        let mut out = BTreeMap::new();
        for key in keys_under(store, prefix).await {
            let id = keys.parse(&key).expect("every key is one cfs makes");
            let Ok(bytes) = store.get(&key).await else {
                continue; // deleted between the listing and the GET
            };
            let obj = tier::object::decode(bytes, None)
                .and_then(|o| o.verify_id(&id))
                .expect("every object verifies and is the one its key names");
            out.insert(
                (id.ino, id.generation, id.segment),
                (obj.header.range_start, obj.payload.to_vec()),
            );
        }
        out
    })
}

/// Every key in the test bucket under `prefix/`, all pages of the listing (the tests' view
/// of the bucket; cfs itself never lists).
pub(crate) async fn keys_under(store: &Store, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = store
            .sdk()
            .list_objects_v2()
            .bucket(BUCKET)
            .prefix(format!("{prefix}/"))
            .set_continuation_token(token.take())
            .send()
            .await
            .expect("list");
        out.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key())
                .map(String::from),
        );
        match page.next_continuation_token() {
            Some(t) => token = Some(t.to_string()),
            None => return out,
        }
    }
}

/// `cfs admin status --json`'s tier section.
fn tier_status(cl: &Cluster) -> serde_json::Value {
    let out = std::process::Command::new(crate::common::BIN)
        .args(["admin", "status", "--json", "--config"])
        .arg(cl.mds_toml())
        .output()
        .expect("cfs admin status");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    assert!(
        cl.admin_status().contains("tier (cache mode"),
        "the human status shows the tier:\n{}",
        cl.admin_status()
    );
    v["mds"]["tier"].clone()
}
