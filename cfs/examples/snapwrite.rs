//! Benchmark (not a test) of the first write to a chunk after a snapshot against a normal write
//! (issue 48, docs/PERFORMANCE.md "First write after a snapshot"): `cfs cluster up` (one MDS,
//! three data servers, every file mirrored on two) on loopback, two files of `--mib` MiB written
//! through pNFS layouts (FILE_SYNC), then per round three phases, each one open of the first
//! file with one 4 KiB FILE_SYNC WRITE into each of its chunks, in chunk order:
//!
//! - `normal`: no snapshot holds the file: the baseline;
//! - `after the snapshot`: `cfs admin snapshot create /` first. The open's first write asks for
//!   an RW layout, and that LAYOUTGET passes the MDS's gate (`snap_data::before_change`:
//!   `SnapKeep`, a LINK on each mirror that hard-links every chunk file of the file into an
//!   image object, `SnapKept`); each write then lands in a chunk file with two links, which
//!   the data server copies whole first (`chunkstore` `unshare`: copy, fsync, rename, fsync
//!   of the directory), on both mirrors at once;
//! - `again`: the same writes a third time: the chunks are the file's alone again.
//!
//! The first write of each open also carries its LAYOUTGET, so it is reported on its own, and
//! the gate's is set against the `normal` open's. The gate alone is measured on a second file
//! of the same size that is never written: in each phase one RW LAYOUTGET of it (sent by hand,
//! then LAYOUTRETURNed), which after the snapshot is that file's gate and nothing else (its
//! chunks stay shared, none is copied). The raw bytes the data servers hold (the
//! STATUS's `used_bytes`, summed) are read before the snapshot, after its first write, after
//! its last one and after the snapshot is deleted: only the chunks written are copied.
//! The snapshot is deleted (and its image reclaimed) before the next round.
//!
//! Ratios are to the `normal` median of the same run (every round's writes pooled).
//! Run: `cargo build --release -p cfs && cargo run --release -p cfs --example snapwrite --
//! [--mib N] [--rounds R] [--chunk-size BYTES]` (default 256 MiB, 3 rounds, the cluster's
//! default chunk size; about 80 s here once built, 35 s of it waiting for the raw bytes to
//! settle after the files are written).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use client::{Client, ClientConfig, CompoundBuilder, CreateMode, OpenFile, SetAttrs, StableHow4};
use layout::ClusterSecret;
use proto::nfs4::{
    FfLayoutreturn4, LayoutgetArgs, LayoutgetRes, Layoutiomode4, Layoutreturn4, LayoutreturnArgs,
    LayoutreturnFile4, NfsArgop4, NfsResop4, LAYOUT4_FLEX_FILES, OPEN4_SHARE_ACCESS_BOTH,
};
use proto::xdr::{Opaque, Xdr};
use support::{cfs_bin, free_block, status, stop};

mod support;

/// Bytes of each measured WRITE.
const WRITE: usize = 4096;
/// The longest one NFS call or admin command may take before the benchmark gives up.
const CALL: Duration = Duration::from_secs(60);
/// The longest the raw bytes may take to show a change (a data server measures its store
/// every 2 to 30 s, then heartbeats it).
const SETTLE: Duration = Duration::from_secs(90);
const PATH: &str = "/snapwrite";
/// The second file, whose RW LAYOUTGETs time the gate without a write.
const PROBE: &str = "/snapwrite-gate";

struct Args {
    mib: u64,
    rounds: usize,
    chunk_size: u64,
}

fn args() -> Args {
    let mut a = Args {
        mib: 256,
        rounds: 3,
        chunk_size: layout::geometry::DEFAULT_CHUNK_SIZE,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().and_then(|v| v.parse::<u64>().ok());
        match (flag.as_str(), value) {
            ("--mib", Some(v)) if v > 0 => a.mib = v,
            ("--rounds", Some(v)) if v > 0 => a.rounds = v as usize,
            ("--chunk-size", Some(v)) if v >= WRITE as u64 => a.chunk_size = v,
            _ => {
                eprintln!(
                    "usage: snapwrite [--mib N] [--rounds R] [--chunk-size BYTES]  (bad: {flag})"
                );
                std::process::exit(2);
            }
        }
    }
    a
}

/// One open's writes: the first (with its LAYOUTGET) and the others, in ms.
struct Phase {
    first: f64,
    rest: Vec<f64>,
    total: f64,
}

#[derive(Default)]
struct Samples {
    normal: Vec<Phase>,
    snap: Vec<Phase>,
    again: Vec<Phase>,
    /// The second file's RW LAYOUTGET (ms): no snapshot; its first after the snapshot (the
    /// gate); once its image is made.
    lg_normal: Vec<f64>,
    lg_gate: Vec<f64>,
    lg_again: Vec<f64>,
    creates: Vec<f64>,
    /// Per round: raw bytes before the snapshot, after its first write, after its last,
    /// after the third pass, after the delete; and how long the reclaim took.
    raw: Vec<[u64; 5]>,
    reclaim: Vec<f64>,
}

struct Bench {
    bin: PathBuf,
    dir: PathBuf,
    mds: SocketAddr,
    secret: ClusterSecret,
    client: Client,
    len: u64,
    chunk_size: u64,
}

impl Bench {
    fn chunks(&self) -> u64 {
        self.len.div_ceil(self.chunk_size)
    }

    /// Bytes the data servers hold, summed (each measures its chunk store by a walk that
    /// counts a hard-linked chunk file once).
    async fn raw(&self) -> u64 {
        status(self.mds, &self.secret)
            .await
            .map(|s| s.data_servers.iter().map(|d| d.used_bytes).sum())
            .unwrap_or(0)
    }

    /// The raw bytes once `done` holds of them (waited for up to `SETTLE`).
    async fn raw_when(&self, what: &str, done: impl Fn(u64) -> bool) -> u64 {
        let deadline = Instant::now() + SETTLE;
        loop {
            let r = self.raw().await;
            if done(r) {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: raw bytes {r} after {SETTLE:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The raw bytes once every data server has measured its store since the files were
    /// written: at least `floor`, then unchanged for `QUIET`. A data server walks its store
    /// again ten times the last walk's time after it (2 s at least, 30 s at most: `USAGE_*` in
    /// `ds/src/server/heartbeat.rs`), so a walk slowed by the writes can leave a short figure
    /// standing for up to 30 s; once the disk is quiet the walks take milliseconds.
    async fn raw_settled(&self, floor: u64) -> u64 {
        const QUIET: Duration = Duration::from_secs(35);
        let mut last = self
            .raw_when("the files' mirrors counted", |b| b >= floor)
            .await;
        let mut since = Instant::now();
        let deadline = Instant::now() + 4 * QUIET;
        while since.elapsed() < QUIET {
            assert!(
                Instant::now() < deadline,
                "raw bytes still moving after {:?}: {last}",
                4 * QUIET
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
            let r = self.raw().await;
            if r != last {
                (last, since) = (r, Instant::now());
            }
        }
        last
    }

    /// `cfs admin snapshot ARGS --config mds.toml`, bounded; its wall time in ms.
    async fn snapshot(&self, args: &[&str]) -> f64 {
        let toml = self.dir.join("cluster").join("mds.toml");
        let t = Instant::now();
        let child = tokio::process::Command::new(&self.bin)
            .args(["admin", "snapshot"])
            .args(args)
            .arg("--config")
            .arg(&toml)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(CALL, child)
            .await
            .unwrap_or_else(|_| panic!("cfs admin snapshot {args:?}: not done in {CALL:?}"))
            .expect("cfs admin snapshot");
        assert!(
            out.status.success(),
            "cfs admin snapshot {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        ms(t.elapsed())
    }

    async fn open(&self, path: &str) -> OpenFile {
        tokio::time::timeout(
            CALL,
            self.client.open_path(path, OPEN4_SHARE_ACCESS_BOTH, None),
        )
        .await
        .expect("OPEN in time")
        .expect("OPEN")
    }

    async fn close(&self, f: &OpenFile) {
        tokio::time::timeout(CALL, self.client.close(f))
            .await
            .expect("CLOSE in time")
            .expect("CLOSE");
    }

    /// One WRITE of `WRITE` bytes into chunk `c` (half way in), FILE_SYNC; its time in ms.
    async fn write(&self, f: &OpenFile, c: u64, seed: u64) -> f64 {
        let data = ec::pattern::pattern(WRITE, seed);
        let at = c * self.chunk_size + (self.chunk_size / 2) / WRITE as u64 * WRITE as u64;
        let at = at.min(self.len - WRITE as u64);
        let t = Instant::now();
        let r = tokio::time::timeout(CALL, self.client.write(f, at, &data, StableHow4::FileSync4))
            .await
            .expect("WRITE in time")
            .expect("WRITE");
        let took = ms(t.elapsed());
        assert_eq!(r.count as usize, WRITE, "short WRITE at {at}");
        assert_eq!(
            r.committed,
            StableHow4::FileSync4,
            "WRITE at {at} not FILE_SYNC"
        );
        took
    }

    /// Chunks `from..` of an open file, one WRITE each.
    async fn writes(&self, f: &OpenFile, from: u64, seed: u64) -> Vec<f64> {
        let mut v = Vec::new();
        for c in from..self.chunks() {
            v.push(self.write(f, c, seed).await);
        }
        v
    }

    /// One open, a WRITE into each chunk, CLOSE.
    async fn phase(&self, seed: u64) -> Phase {
        let f = self.open(PATH).await;
        let t = Instant::now();
        let first = self.write(&f, 0, seed).await;
        let rest = self.writes(&f, 1, seed).await;
        let total = ms(t.elapsed());
        self.close(&f).await;
        Phase { first, rest, total }
    }

    /// One RW LAYOUTGET of the whole second file, by hand (the layout driver knows nothing of
    /// it), its time in ms; then LAYOUTRETURN and CLOSE. An RW layout lets the client change
    /// the bytes, so the MDS passes the gate before it grants one.
    async fn layoutget(&self) -> f64 {
        let f = self.open(PROBE).await;
        let get = CompoundBuilder::new()
            .putfh(&f.fh)
            .op(NfsArgop4::Layoutget(LayoutgetArgs {
                loga_signal_layout_avail: false,
                loga_layout_type: LAYOUT4_FLEX_FILES,
                loga_iomode: Layoutiomode4::Rw,
                loga_offset: 0,
                loga_length: u64::MAX,
                loga_minlength: 0,
                loga_stateid: f.stateid,
                loga_maxcount: 1 << 16,
            }));
        let t = Instant::now();
        let res = tokio::time::timeout(CALL, self.client.compound(get))
            .await
            .expect("LAYOUTGET in time")
            .expect("LAYOUTGET");
        let took = ms(t.elapsed());
        let Some(ok) = res.into_iter().find_map(|r| match r {
            NfsResop4::Layoutget(LayoutgetRes::Ok(ok)) => Some(ok),
            _ => None,
        }) else {
            panic!("LAYOUTGET of {PROBE}: no layout in the reply");
        };
        let body = FfLayoutreturn4 {
            fflr_ioerr_report: Vec::new(),
            fflr_iostats_report: Vec::new(),
        };
        let ret = CompoundBuilder::new()
            .putfh(&f.fh)
            .op(NfsArgop4::Layoutreturn(LayoutreturnArgs {
                lora_reclaim: false,
                lora_layout_type: LAYOUT4_FLEX_FILES,
                lora_iomode: Layoutiomode4::Rw,
                lora_layoutreturn: Layoutreturn4::File(LayoutreturnFile4 {
                    lrf_offset: 0,
                    lrf_length: u64::MAX,
                    lrf_stateid: ok.logr_stateid,
                    lrf_body: Opaque(body.to_xdr()),
                }),
            }));
        tokio::time::timeout(CALL, self.client.compound(ret))
            .await
            .expect("LAYOUTRETURN in time")
            .expect("LAYOUTRETURN");
        self.close(&f).await;
        took
    }

    /// `before`: the raw bytes with no snapshot (`raw_settled`).
    async fn round(&self, r: usize, before: u64, s: &mut Samples) {
        let seed = r as u64 * 16;
        s.lg_normal.push(self.layoutget().await);
        s.normal.push(self.phase(seed).await);

        let name = format!("r{r}");
        s.creates
            .push(self.snapshot(&["create", "/", "--name", &name]).await);

        let f = self.open(PATH).await;
        let t = Instant::now();
        let first = self.write(&f, 0, seed + 1).await;
        let pause = Instant::now();
        s.lg_gate.push(self.layoutget().await);
        // The gate's LINKs add names, no bytes; the first write's copy of chunk 0 adds one
        // chunk file on each mirror.
        let after_first = self
            .raw_when("chunk 0 copied on both mirrors", |b| {
                b >= before + 2 * self.chunk_size.min(self.len)
            })
            .await;
        // One chunk file on each mirror: what each further copy adds.
        let copy = after_first - before;
        let paused = pause.elapsed();
        let rest = self.writes(&f, 1, seed + 1).await;
        let total = ms(t.elapsed() - paused);
        self.close(&f).await;
        s.snap.push(Phase { first, rest, total });
        let after_all = self
            .raw_when("every chunk copied on both mirrors", |b| {
                b >= before + self.chunks() * copy
            })
            .await;

        s.lg_again.push(self.layoutget().await);
        s.again.push(self.phase(seed + 2).await);
        // Written in place: nothing more is copied (a few refreshes later).
        tokio::time::sleep(Duration::from_secs(5)).await;
        let after_again = self.raw().await;

        self.snapshot(&["delete", &name]).await;
        let t = Instant::now();
        let after_delete = self
            .raw_when("the image reclaimed", |b| b <= before + self.chunk_size / 2)
            .await;
        s.reclaim.push(t.elapsed().as_secs_f64());
        s.raw
            .push([before, after_first, after_all, after_again, after_delete]);
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Median, p90 (nearest rank) and max.
fn dist(v: &[f64]) -> (f64, f64, f64) {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let p90 = ((v.len() * 9).div_ceil(10)).max(1) - 1;
    (v[v.len() / 2], v[p90], v[v.len() - 1])
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

fn report(a: &Args, chunks: u64, s: &Samples) {
    let rest = |p: &[Phase]| p.iter().flat_map(|p| p.rest.clone()).collect::<Vec<f64>>();
    let firsts = |p: &[Phase]| p.iter().map(|p| p.first).collect::<Vec<f64>>();
    let medians = |p: &[Phase]| p.iter().map(|p| dist(&p.rest).0).collect::<Vec<f64>>();
    let totals = |p: &[Phase]| p.iter().map(|p| p.total).collect::<Vec<f64>>();
    let list = |v: &[f64], digits: usize| {
        v.iter()
            .map(|x| format!("{x:.digits$}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (normal, _, _) = dist(&rest(&s.normal));
    let row = |what: &str, v: &[f64], per_round: &[f64], total: Option<Vec<f64>>| {
        let (m, p, x) = dist(v);
        println!(
            "| {what} | {} | {m:.2} | {p:.2} | {x:.2} | {:.2}× | {:.2}× | {:.2}× | {} | {} |",
            v.len(),
            m / normal,
            p / normal,
            x / normal,
            list(per_round, 2),
            total.map_or(String::from("-"), |t| list(&t, 0)),
        );
    };
    println!();
    println!(
        "| phase | n | median ms | p90 ms | max ms | median × normal | p90 × normal | max × normal | per round, ms (median) | phase total per round, ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let phases = [
        (
            "normal: 4 KiB FILE_SYNC into chunks 2.. of an open",
            "first write of a normal open (LAYOUTGET + write)",
            &s.normal,
        ),
        (
            "after the snapshot: first write to its chunk (chunk copied on both mirrors)",
            "first write of the file after the snapshot (LAYOUTGET + gate + chunk 0 copied)",
            &s.snap,
        ),
        (
            "again: the chunks no longer shared",
            "first write of the third open (LAYOUTGET + write)",
            &s.again,
        ),
    ];
    for (label, _, p) in phases {
        row(label, &rest(p), &medians(p), Some(totals(p)));
    }
    for (_, label, p) in phases {
        row(label, &firsts(p), &firsts(p), None);
    }
    row(
        "second file, RW LAYOUTGET, no snapshot",
        &s.lg_normal,
        &s.lg_normal,
        None,
    );
    row(
        "second file, its first RW LAYOUTGET after the snapshot: the gate alone",
        &s.lg_gate,
        &s.lg_gate,
        None,
    );
    row(
        "second file, RW LAYOUTGET once its image is made",
        &s.lg_again,
        &s.lg_again,
        None,
    );
    let (lg, _, _) = dist(&s.lg_normal);
    let (gate, _, _) = dist(&s.lg_gate);
    let (first, _, _) = dist(&firsts(&s.normal));
    let (snap_first, _, _) = dist(&firsts(&s.snap));
    println!();
    println!(
        "the gate (median): {:.1} ms over a plain LAYOUTGET ({gate:.2} against {lg:.2} ms, \
         {:.1}×; SnapKeep, a LINK of {chunks} chunk files on each of 2 mirrors, SnapKept); \
         the file's first write after the snapshot {:.1}× a normal open's first write",
        gate - lg,
        gate / lg,
        snap_first / first,
    );
    println!(
        "snapshot create (the CLI's wall time, process start included): {} ms; image reclaimed \
         {} s after the delete",
        list(&s.creates, 0),
        list(&s.reclaim, 1),
    );
    println!();
    println!(
        "raw bytes on the data servers, MiB (the two files' two mirrors: {:.0}):",
        mib(4 * (a.mib << 20))
    );
    println!("| round | before the snapshot | after its first write | after every chunk written | after the third pass | after the delete | copied per chunk and mirror |");
    println!("|---|---|---|---|---|---|---|");
    for (i, r) in s.raw.iter().enumerate() {
        let per = r[2].saturating_sub(r[0]) as f64 / (2 * chunks) as f64;
        println!(
            "| {} | {:.1} | {:.1} (+{:.1}) | {:.1} (+{:.1}) | {:.1} (+{:.1}) | {:.1} | {:.2} MiB |",
            i + 1,
            mib(r[0]),
            mib(r[1]),
            mib(r[1].saturating_sub(r[0])),
            mib(r[2]),
            mib(r[2].saturating_sub(r[0])),
            mib(r[3]),
            mib(r[3].saturating_sub(r[0])),
            mib(r[4]),
            per / (1 << 20) as f64,
        );
    }
}

/// nproc, kernel, load average and the temp dir's file system type (a chunk copy is a
/// reflink on XFS or btrfs, a read and write of the chunk elsewhere).
fn machine(dir: &Path) -> String {
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    // The file system of the longest mount point above `dir` (/proc/mounts).
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let fs = mounts
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace().skip(1);
            Some((it.next()?, it.next()?))
        })
        .filter(|(at, _)| dir.starts_with(at))
        .max_by_key(|(at, _)| at.len())
        .map_or("?", |(_, fs)| fs);
    format!(
        "nproc {nproc}, kernel {}, load average {}, data on {fs}",
        kernel.trim(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

fn main() {
    let a = args();
    let bin = cfs_bin();
    let dir = tempfile::tempdir().expect("tempdir");
    // MDS and data servers on port.., their admin listeners on port + 8..
    let port = free_block(16, 26000);
    let mut up = Command::new(&bin);
    up.args(["cluster", "up", "--ds", "3", "--dir"])
        .arg(dir.path().join("cluster"))
        .args([
            "--port",
            &port.to_string(),
            "--admin-port",
            &(port + 8).to_string(),
            "--chunk-size",
            &a.chunk_size.to_string(),
        ])
        .env("CFS_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = up.spawn().expect("cfs cluster up");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mds: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(bench(&a, &bin, dir.path(), mds))
    }));
    stop(&mut child, dir.path());
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

async fn bench(a: &Args, bin: &Path, dir: &Path, mds: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let secret = loop {
        let text = std::fs::read_to_string(dir.join("cluster").join("secret")).unwrap_or_default();
        if let Ok(s) = ClusterSecret::from_passphrase(&text) {
            if status(mds, &s).await.is_some_and(|st| {
                st.data_servers
                    .iter()
                    .filter(|d| d.state == proto::cluster::DS_STATE_UP)
                    .count()
                    == 3
            }) {
                break s;
            }
        }
        assert!(Instant::now() < deadline, "cluster not up in 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!("{}", machine(dir));
    let len = a.mib << 20;
    let chunks = len.div_ceil(a.chunk_size);
    println!(
        "1 MDS + 3 data servers (2 mirrors) on loopback; two files of {} MiB, chunk {} KiB ({chunks} \
         chunks), {WRITE} B FILE_SYNC writes through pNFS layouts, {} rounds",
        a.mib,
        a.chunk_size >> 10,
        a.rounds
    );

    let mut cfg = ClientConfig::new(mds);
    cfg.pnfs = true;
    let client = tokio::time::timeout(CALL, Client::connect(cfg))
        .await
        .expect("connect in time")
        .expect("connect");
    let b = Bench {
        bin: bin.to_path_buf(),
        dir: dir.to_path_buf(),
        mds,
        secret,
        client,
        len,
        chunk_size: a.chunk_size,
    };

    let t = Instant::now();
    let data = ec::pattern::pattern(len as usize, 0x5e);
    for path in [PATH, PROBE] {
        let create = Some(CreateMode::Unchecked(SetAttrs {
            mode: Some(0o644),
            size: Some(0),
            ..Default::default()
        }));
        let f = tokio::time::timeout(
            CALL,
            b.client.open_path(path, OPEN4_SHARE_ACCESS_BOTH, create),
        )
        .await
        .expect("create in time")
        .expect("create the file");
        tokio::time::timeout(
            Duration::from_secs(600),
            b.client.write_all(&f, 0, &data, StableHow4::FileSync4),
        )
        .await
        .expect("the file written in 10 min")
        .expect("write the file");
        b.close(&f).await;
    }
    drop(data);
    println!("two files written in {:.1} s", t.elapsed().as_secs_f64());

    // Overwrites allocate nothing: the two files' two mirrors and nothing else, from here to
    // each snapshot.
    let before = b.raw_settled(4 * len).await;
    let mut s = Samples::default();
    for r in 1..=a.rounds {
        let t = Instant::now();
        b.round(r, before, &mut s).await;
        eprintln!("round {r} done in {:.0} s", t.elapsed().as_secs_f64());
    }
    let st = b.client.pnfs_stats().unwrap_or_default();
    let mds_bytes = status(mds, &b.secret)
        .await
        .map_or(0, |s| s.mds_write_bytes);
    println!(
        "pNFS: {} LAYOUTGETs by the layout driver ({} writing opens), {} layouts recalled; {:.1} MiB written to data servers \
         (both mirrors counted), {} bytes through the MDS",
        st.layoutgets,
        2 + 3 * a.rounds,
        st.layoutrecalls,
        mib(st.ds_write_bytes),
        st.mds_write_bytes + mds_bytes,
    );
    report(a, chunks, &s);
    let _ = tokio::time::timeout(Duration::from_secs(10), b.client.shutdown()).await;
}
