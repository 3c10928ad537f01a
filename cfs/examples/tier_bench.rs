//! Benchmark (not a test) of the object-store tier (issue 45, "Benchmark, same run"): moto's
//! S3 server (a child process, as the tests start it) and `cfs cluster up --ds 3 --s3` in cache
//! mode on loopback, then, in one run:
//!
//! - **upload**: `FILES` files of `MIB` MiB written through a pNFS client, one object each
//!   (`object_mib = MIB`); MiB/s of their bytes reaching the bucket, from `cfs admin status`'s
//!   `uploaded_bytes` over the status samples with an upload under way, against moto's own PUT rate
//!   from a plain client (`tier::Store::put` of same-size objects, as many, 2 in flight like
//!   the uploader; measured before and after the cluster's uploads, the mean is the baseline);
//! - **eviction**: half the files pinned to the bucket (`cfs admin tier pin PATH s3`, which
//!   evicts on demand); file bytes leaving flash per second of the evictor's work
//!   (`evicted_by_this_node_bytes / evicting_seconds`), and the wall time from the pins to the
//!   last file evicted (the pin's change is uploaded first, and the evictor runs every 2 s);
//! - **read**: a whole file read by a fresh pNFS client, 1 MiB READs 4 in flight: time to
//!   first byte (OPEN done, first 1 MiB READ answered) and MiB/s, of an evicted file (served
//!   from the bucket through the MDS; an `s3`-pinned file stays evicted when read) against a
//!   file on flash (through layouts from the data servers: what a stock client does), and a
//!   flash file through the MDS (no layouts: the same path as the evicted read, minus S3);
//! - **metadata lag**: `CREATORS` clients creating empty files (OPEN with create, CLOSE) for
//!   `CREATE_FOR`; the metadata shipper's lag (`metadata_lag_seconds`: since when a shard has
//!   changes the bucket does not hold, whole seconds) sampled meanwhile, its median and worst,
//!   and the time from the last create to lag 0. Its baseline is the same figure with no load
//!   (sampled for as long before the load starts).
//!
//! Figures are medians of `ROUNDS` reads; ratios are to the baseline of the same run.
//! Run: `cargo build --release -p cfs && cargo run --release -p cfs --example tier_bench
//! [FILES] [MIB]` (default 16 × 8 MiB; about a minute here). Needs `moto_server`
//! (scripts/setup.sh) or `MOTO_SERVER`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use client::{Client, ClientConfig, CreateMode, SetAttrs, StableHow4};
use layout::ClusterSecret;
use proto::nfs4::{OPEN4_SHARE_ACCESS_BOTH, OPEN4_SHARE_ACCESS_READ};
use support::{cfs_bin, free_block, status, stop};
use tier::testing::moto::Moto;
use tier::{Credentials, Store, TierConfig};

mod support;

const BUCKET: &str = "cfs-bench";
const ROUNDS: usize = 3;
/// PUTs in flight in the baseline: the uploader's `UPLOADS_AT_ONCE`.
const PUTS_AT_ONCE: usize = 2;
const READ: u32 = 1 << 20;
/// The longest any phase may take before the benchmark gives up.
const PHASE: Duration = Duration::from_secs(90);
/// The create load of the metadata-lag phase: clients, and how long they create.
const CREATORS: usize = 4;
const CREATE_FOR: Duration = Duration::from_secs(20);
/// Files one creator makes at most (bounds the load whatever the machine's speed).
const CREATES_EACH: usize = 20_000;

fn mib_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64().max(1e-9)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Bench {
    bin: PathBuf,
    dir: PathBuf,
    mds: SocketAddr,
    store: Store,
    files: usize,
    size: u64,
}

impl Bench {
    fn mds_toml(&self) -> PathBuf {
        self.dir.join("cluster").join("mds.toml")
    }

    /// `cfs admin status --json`'s tier section.
    fn tier(&self) -> serde_json::Value {
        let out = Command::new(&self.bin)
            .args(["admin", "status", "--json", "--config"])
            .arg(self.mds_toml())
            .stderr(Stdio::null())
            .output()
            .expect("cfs admin status");
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .map(|v| v["mds"]["tier"].clone())
            .unwrap_or(serde_json::Value::Null)
    }

    fn n(&self, t: &serde_json::Value, k: &str) -> u64 {
        t[k].as_u64().unwrap_or(0)
    }

    /// Waits until `done` holds of the tier status, sampling as fast as the status answers;
    /// the samples (time since `from`, status).
    fn poll(
        &self,
        what: &str,
        from: Instant,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> Vec<(Duration, serde_json::Value)> {
        let mut out = Vec::new();
        loop {
            let t = self.tier();
            let at = from.elapsed();
            let end = done(&t);
            assert!(
                end || at < PHASE,
                "{what}: not done in {PHASE:?}; status {t}"
            );
            out.push((at, t));
            if end {
                return out;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// moto's PUT rate from a plain client: `files` objects of `size` bytes, 2 in flight.
    async fn plain_puts(&self, round: u32) -> f64 {
        let body = Bytes::from(ec::pattern::pattern(self.size as usize, 0x5a));
        let keys: Vec<String> = (0..self.files)
            .map(|i| format!("plain/{round}/{i}"))
            .collect();
        let t = Instant::now();
        // Two lanes, each PUTting every other key in turn.
        let lane = |first: usize| {
            let (keys, body) = (&keys, body.clone());
            async move {
                for k in keys.iter().skip(first).step_by(PUTS_AT_ONCE) {
                    self.store.put(k, body.clone()).await.expect("plain PUT");
                }
            }
        };
        tokio::join!(lane(0), lane(1));
        let rate = mib_s(self.size * self.files as u64, t.elapsed());
        for k in &keys {
            let _ = self.store.delete(k).await;
        }
        rate
    }

    fn client(&self, rt: &tokio::runtime::Runtime, pnfs: bool) -> Client {
        let mut cfg = ClientConfig::new(self.mds);
        cfg.pnfs = pnfs;
        cfg.slots = 64;
        rt.block_on(Client::connect(cfg)).expect("connect")
    }

    fn write(&self, rt: &tokio::runtime::Runtime, path: &str, data: &[u8]) {
        let c = self.client(rt, true);
        rt.block_on(async {
            let create = Some(CreateMode::Unchecked(SetAttrs {
                mode: Some(0o644),
                size: Some(0),
                ..Default::default()
            }));
            let f = c
                .open_path(path, OPEN4_SHARE_ACCESS_BOTH, create)
                .await
                .expect("open");
            c.write_all(&f, 0, data, StableHow4::FileSync4)
                .await
                .expect("write");
            c.close(&f).await.expect("close");
            let _ = c.shutdown().await;
        });
    }

    /// Time to first byte and MiB/s of a whole-file read by a fresh client.
    fn read(&self, rt: &tokio::runtime::Runtime, path: &str, pnfs: bool) -> (Duration, f64) {
        let c = Arc::new(self.client(rt, pnfs));
        let len = self.size;
        rt.block_on(async {
            let f = Arc::new(
                c.open_path(path, OPEN4_SHARE_ACCESS_READ, None)
                    .await
                    .expect("open"),
            );
            let t = Instant::now();
            let (first, _) = c.read_full(&f, 0, READ).await.expect("first READ");
            let ttfb = t.elapsed();
            let mut total = first.len() as u64;
            let mut set = tokio::task::JoinSet::new();
            for lane in 0..4u64 {
                let (c, f) = (c.clone(), f.clone());
                set.spawn(async move {
                    let mut n = 0u64;
                    let mut off = u64::from(READ) * (1 + lane);
                    while off < len {
                        let (d, _) = c.read_full(&f, off, READ).await.expect("READ");
                        n += d.len() as u64;
                        off += 4 * u64::from(READ);
                    }
                    n
                });
            }
            while let Some(n) = set.join_next().await {
                total += n.expect("reader");
            }
            let rate = mib_s(total, t.elapsed());
            assert_eq!(total, len, "{path} read back short");
            c.close(&f).await.expect("close");
            let _ = c.shutdown().await;
            (ttfb, rate)
        })
    }

    /// `CREATORS` clients each creating empty files in a directory of its own (`/cW`, made
    /// here: directories spread over the shards) until `CREATE_FOR` has passed (or
    /// `CREATES_EACH` each); files made.
    fn create_load(&self, rt: &tokio::runtime::Runtime) -> usize {
        let clients: Vec<Client> = (0..CREATORS).map(|_| self.client(rt, false)).collect();
        rt.block_on(async {
            let end = Instant::now() + CREATE_FOR;
            let mut set = tokio::task::JoinSet::new();
            for (w, c) in clients.into_iter().enumerate() {
                set.spawn(async move {
                    let dir = c
                        .mkdir(c.root(), &format!("c{w}"), 0o755)
                        .await
                        .expect("mkdir");
                    let mut made = 0;
                    while made < CREATES_EACH && Instant::now() < end {
                        let create = Some(CreateMode::Unchecked(SetAttrs {
                            mode: Some(0o644),
                            ..Default::default()
                        }));
                        let f = c
                            .open(&dir, &format!("f{made}"), OPEN4_SHARE_ACCESS_BOTH, create)
                            .await
                            .expect("create");
                        c.close(&f).await.expect("close");
                        made += 1;
                    }
                    let _ = c.shutdown().await;
                    made
                });
            }
            let mut total = 0;
            while let Some(n) = set.join_next().await {
                total += n.expect("creator");
            }
            total
        })
    }

    /// `metadata_lag_seconds` every 200 ms while `running` says so.
    fn lag_samples(&self, running: impl Fn() -> bool) -> Vec<f64> {
        let mut v = Vec::new();
        while running() {
            v.push(
                self.tier()["metadata_lag_seconds"]
                    .as_f64()
                    .unwrap_or(f64::NAN),
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        v
    }

    fn pin(&self, path: &str, pin: &str) {
        let out = Command::new(&self.bin)
            .args(["admin", "tier", "pin", path, pin, "--config"])
            .arg(self.mds_toml())
            .output()
            .expect("cfs admin tier pin");
        assert!(out.status.success(), "pin {path}: {out:?}");
    }
}

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u64>());
    let files = args.next().and_then(Result::ok).unwrap_or(16).max(2) as usize;
    let mib = args.next().and_then(Result::ok).unwrap_or(8).clamp(1, 64);
    let bin = cfs_bin();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let tmp = tempfile::tempdir().expect("tempdir");
    // moto below the ephemeral range, as the tests put it.
    let moto = Moto::start(free_block(8, 20000));
    let mut sc = TierConfig::new(moto.endpoint(), BUCKET);
    sc.credentials = Some(Credentials {
        access_key_id: "testing".into(),
        secret_access_key: "testing".into(),
        session_token: None,
    });
    sc.region = Some("us-east-1".into());
    let store = Store::new(sc).expect("store");
    rt.block_on(store.sdk().create_bucket().bucket(BUCKET).send())
        .expect("create bucket");

    let extra = tmp.path().join("tier-extra.toml");
    std::fs::write(
        &extra,
        // Flash of its own size, so the host disk's fullness never evicts (only the pins do).
        format!(
            "upload_after_seconds = 1\nobject_mib = {mib}\nflash_capacity_mib = {}\n",
            (files as u64 * mib * 8).max(1024)
        ),
    )
    .expect("extra config");
    let port = free_block(16, 27000);
    let log = std::fs::File::create(tmp.path().join("cluster.log")).expect("log");
    let mut child = Command::new(&bin)
        .args(["cluster", "up", "--ds", "3", "--dir"])
        .arg(tmp.path().join("cluster"))
        .args(["--port", &port.to_string()])
        .args(["--admin-port", &(port + 8).to_string()])
        .args(["--s3", &format!("{}/{BUCKET}", moto.endpoint())])
        .arg("--mds-extra-config")
        .arg(&extra)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("CFS_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().expect("log")))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("cfs cluster up");
    let b = Bench {
        bin,
        dir: tmp.path().to_path_buf(),
        mds: format!("127.0.0.1:{port}").parse().expect("addr"),
        store,
        files,
        size: mib << 20,
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| bench(&rt, &b)));
    stop(&mut child, tmp.path());
    drop(moto);
    if let Err(e) = result {
        let log = std::fs::read_to_string(tmp.path().join("cluster.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        eprintln!(
            "cluster log, last lines (newest first):\n{}",
            tail.join("\n")
        );
        std::panic::resume_unwind(e);
    }
}

fn wait_up(rt: &tokio::runtime::Runtime, b: &Bench) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text =
            std::fs::read_to_string(b.dir.join("cluster").join("secret")).unwrap_or_default();
        if let Ok(s) = ClusterSecret::from_passphrase(&text) {
            let up = rt.block_on(status(b.mds, &s)).map(|st| {
                st.data_servers
                    .iter()
                    .filter(|d| d.state == proto::cluster::DS_STATE_UP)
                    .count()
            });
            if up == Some(3) && b.mds_toml().exists() {
                return;
            }
        }
        assert!(Instant::now() < deadline, "cluster not up in 60 s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn bench(rt: &tokio::runtime::Runtime, b: &Bench) {
    let total = b.size * b.files as u64;
    let mib = b.size >> 20;
    println!(
        "tier benchmark: moto, 1 MDS + 3 data servers on loopback (cache mode), {} files of {mib} \
         MiB, one object each",
        b.files
    );
    let before = rt.block_on(b.plain_puts(0));
    wait_up(rt, b);

    // Upload: the files written, then polled until all are in the bucket.
    let data = ec::pattern::pattern(b.size as usize, 0xc3);
    let t = Instant::now();
    for i in 0..b.files {
        b.write(rt, &format!("/f{i}"), &data);
    }
    let written = t.elapsed();
    let samples = b.poll("every file in the bucket", t, |s| {
        s["uploaded_bytes"].as_u64() >= Some(total) && s["queued_files"].as_u64() == Some(0)
    });
    // Only the intervals with an upload under way count: files written early are due
    // before the last is written, so the uploader waits for them in between.
    let (mut busy, mut moved) = (Duration::ZERO, 0u64);
    for w in samples.windows(2) {
        let (a, b2) = (&w[0], &w[1]);
        let grew = b
            .n(&b2.1, "uploaded_bytes")
            .saturating_sub(b.n(&a.1, "uploaded_bytes"));
        if b.n(&a.1, "uploading") > 0 || grew > 0 {
            busy += b2.0 - a.0;
            moved += grew;
        }
    }
    let t_last = samples.last().map(|(at, _)| *at).expect("a sample");
    let after = rt.block_on(b.plain_puts(1));
    let plain = (before + after) / 2.0;
    let steady = mib_s(moved, busy);
    println!();
    println!(
        "upload   {:>7.1} MiB/s   x plain PUT {:.2}   {} MiB reaching the bucket over the {:.2} s with \
         an upload under way ({} status samples)",
        steady,
        steady / plain,
        moved >> 20,
        busy.as_secs_f64(),
        samples.len(),
    );
    println!(
        "         {:>7.1} MiB/s   plain PUT of {} objects of {mib} MiB, {PUTS_AT_ONCE} in flight \
         (moto, tier::Store): {before:.1} before, {after:.1} after the cluster's uploads",
        plain, b.files
    );
    println!(
        "         {:>7.1} s        from the last write acknowledged to all in the bucket (the 1 s \
         quiet delay and the uploader's 1 s period included; writing took {:.1} s)",
        (t_last - written).as_secs_f64(),
        written.as_secs_f64()
    );

    // Eviction: the first half pinned to the bucket.
    let half = b.files / 2;
    let s0 = b.tier();
    let (bytes0, secs0) = (
        b.n(&s0, "evicted_by_this_node_bytes"),
        s0["evicting_seconds"].as_f64().unwrap_or(0.0),
    );
    let t = Instant::now();
    for i in 0..half {
        b.pin(&format!("/f{i}"), "s3");
    }
    // The records say evicted as each file goes; the counters once the evictor's pass ends.
    let want = bytes0 + half as u64 * b.size;
    let samples = b.poll("the pinned files evicted", t, |s| {
        s["evicted_files"].as_u64() == Some(half as u64)
            && s["evicted_by_this_node_bytes"].as_u64() >= Some(want)
    });
    let (wall, s1) = samples.last().expect("a sample");
    let bytes = b.n(s1, "evicted_by_this_node_bytes") - bytes0;
    let secs = s1["evicting_seconds"].as_f64().unwrap_or(0.0) - secs0;
    println!(
        "evict    {:>7.1} MiB/s   file bytes leaving flash per second of eviction work ({} MiB in \
         {:.3} s; each file's 2 mirror copies go, so twice that in raw bytes)",
        bytes as f64 / (1 << 20) as f64 / secs.max(1e-9),
        bytes >> 20,
        secs
    );
    println!(
        "         {:>7.1} s        from the pins to the last file evicted (the pin is a change: the \
         file is uploaded again first; the evictor runs every 2 s)",
        wall.as_secs_f64()
    );

    // Reads: evicted (pinned, stays evicted) against flash, each a different file per round.
    let mut cold = (Vec::new(), Vec::new());
    let mut hot = (Vec::new(), Vec::new());
    let mut mds = (Vec::new(), Vec::new());
    for r in 0..ROUNDS {
        let (t, m) = b.read(rt, &format!("/f{}", r % half), true);
        cold.0.push(t.as_secs_f64() * 1e3);
        cold.1.push(m);
        let (t, m) = b.read(rt, &format!("/f{}", half + r % (b.files - half)), true);
        hot.0.push(t.as_secs_f64() * 1e3);
        hot.1.push(m);
        let (t, m) = b.read(rt, &format!("/f{}", half + r % (b.files - half)), false);
        mds.0.push(t.as_secs_f64() * 1e3);
        mds.1.push(m);
    }
    let still = b.n(&b.tier(), "evicted_files");
    assert_eq!(still, half as u64, "the pinned files evicted, no other");
    let (ht, hm) = (median(hot.0), median(hot.1));
    for (what, (t, m)) in [
        ("flash hit, pNFS (baseline)", (ht, hm)),
        ("evicted, from the bucket", (median(cold.0), median(cold.1))),
        ("flash, through the MDS", (median(mds.0), median(mds.1))),
    ] {
        println!(
            "read     {m:>7.1} MiB/s   x flash {:.2}   first byte {t:>7.1} ms   x flash {:.2}   \
             {what}",
            m / hm,
            t / ht
        );
    }
    println!(
        "         (whole {mib} MiB file by a fresh Rust client, 1 MiB READs 4 in flight; first \
         byte: the first 1 MiB READ after OPEN; median of {ROUNDS})"
    );

    metadata_lag(rt, b);
}

/// The metadata shipper's lag with no load (baseline), then under a create load, and how
/// long after the last create the bucket holds everything.
fn metadata_lag(rt: &tokio::runtime::Runtime, b: &Bench) {
    b.poll("metadata lag 0 before the load", Instant::now(), |s| {
        s["metadata_lag_seconds"].as_u64() == Some(0)
    });
    let t = Instant::now();
    let idle = b.lag_samples(|| t.elapsed() < CREATE_FOR);
    let done = std::sync::atomic::AtomicBool::new(false);
    let t = Instant::now();
    let (made, (busy, took)) = std::thread::scope(|s| {
        let sampler =
            s.spawn(|| b.lag_samples(|| !done.load(std::sync::atomic::Ordering::Relaxed)));
        let made = b.create_load(rt);
        let took = t.elapsed();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        (made, (sampler.join().expect("sampler"), took))
    });
    let last = Instant::now();
    b.poll("metadata lag 0 after the load", last, |s| {
        s["metadata_lag_seconds"].as_u64() == Some(0)
    });
    let drained = last.elapsed();
    let worst = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    println!(
        "metadata lag {:>5.1} s median   {:>5.1} s worst   under {CREATORS} clients creating \
         ({made} files, {:.0} creates/s, {} samples)",
        median(busy.clone()),
        worst(&busy),
        made as f64 / took.as_secs_f64(),
        busy.len()
    );
    println!(
        "             {:>5.1} s median   {:>5.1} s worst   with no load (baseline, {} samples); \
         bucket holding every create {:.1} s after the last",
        median(idle.clone()),
        worst(&idle),
        idle.len(),
        drained.as_secs_f64()
    );
}
