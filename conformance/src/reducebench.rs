//! `reducebench`: what data reduction at rest (issue 46) costs a reader, one command, one run.
//!
//! One cluster, `cfs cluster up --ds 3 --encode-after 2 --reduce on` (the helpers ecbench
//! uses, ports below 32768), and the project's own Rust client (`client`):
//!
//! 1. `/r` and `/copy` (the same `--mib` MiB of random bytes) are written by one client that
//!    keeps both OPEN (OPEN4_SHARE_ACCESS_BOTH) while `/r` is read: a file open for writing is
//!    never reduced, so these reads are of the same bytes on their mirrors. (a) a pNFS client
//!    (straight from the data servers), (b) a client without pNFS (the MDS reads the data
//!    servers for it).
//! 2. Both files are closed; the host polls `cfs admin status --json` (bounded) until
//!    `reduced_files` is 2 and `mirrored_files` 0, and prints the reduction's numbers (logical,
//!    after dedup, after compression, raw in segments) and the time it took.
//! 3. The same reads of the reduced `/r`: (c) the pNFS client (its layout names one data
//!    server, which assembles the file from segments: `ds/src/server/reduced.rs`), (d) the
//!    client without pNFS (the MDS assembles it, `reduced_io.rs`). (c) against (d) is a
//!    reduced file read through a data server against through the MDS; (c) against (a), the
//!    cost of reduction to a pNFS reader.
//!
//! Every read is of the whole file, 1 MiB READs, `--depth` in flight (lane i reads MiB i,
//! i + depth, ...; ec_reads' assembled read), each a fresh OPEN of its own; every byte is
//! compared with what was written. Best of `--rounds` per measurement. Prints a Markdown table
//! (MiB/s, where the bytes came from) and the reduced/unreduced ratio per client kind. A wrong
//! byte, a short read or a file that does not reduce makes the exit status non-zero; speeds
//! are only printed.

use crate::error::{Error, IoContext, Result};
use crate::procs;
use crate::server::{self, ClusterStatus, Running};
use client::proto::nfs4::{OPEN4_SHARE_ACCESS_BOTH, OPEN4_SHARE_ACCESS_READ};
use client::{Client, ClientConfig, CreateMode, OpenFile, PnfsStats, SetAttrs, StableHow4};
use std::io::Read;
use std::net::SocketAddr;
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args, Clone, Debug)]
pub struct ReduceBenchArgs {
    /// size of `/r` (and of its copy `/copy`) in MiB
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u64).range(1..=2048))]
    pub mib: u64,
    /// timed whole-file reads per measurement (the best is the figure)
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub rounds: u32,
    /// 1 MiB READs in flight during a read
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub depth: u32,
}

const FILE: &str = "/r";
const COPY: &str = "/copy";
const READ: u64 = 1 << 20;
const MIB: f64 = (1u64 << 20) as f64;
/// How long the two files may take to be reduced after their close: `--encode-after 2`, the
/// encoder's passes, chunking, compressing and writing 2 × 128 MiB on a machine that may be
/// shared with builds. Larger `--mib` get a second more per MiB.
const REDUCE_WAIT_S: u64 = 180;
/// One whole-file read (or write) at the slowest pace worth measuring.
const IO_WAIT: Duration = Duration::from_secs(600);

/// The client kinds the reads are made with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Pnfs,
    NoPnfs,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Pnfs => "pNFS client",
            Kind::NoPnfs => "client without pNFS",
        }
    }
}

/// One measurement: `rounds` whole-file reads by one client kind of `/r` in one state.
#[derive(Clone, Debug)]
struct Measured {
    label: &'static str,
    kind: Kind,
    state: &'static str,
    /// MiB/s of each round
    runs: Vec<f64>,
    /// the reading client's own counters per read (pNFS clients): LAYOUTGETs, MiB from the
    /// data servers, MiB through the MDS
    client: Option<(f64, f64, f64)>,
    /// cluster counters per read: MiB the MDS answered READs with, MiB the data servers served
    cluster: Option<(f64, f64)>,
    /// wrong bytes, a short read: what the reads got wrong (empty: every byte right)
    wrong: Vec<String>,
}

impl Measured {
    fn best(&self) -> Option<f64> {
        self.runs.iter().copied().reduce(f64::max)
    }
}

fn bench_err(what: impl std::fmt::Display) -> Error {
    Error::Server(format!("reducebench: {what}"))
}

/// A client library result in the crate's error type.
fn nfs<T>(r: client::Result<T>, what: &str) -> Result<T> {
    r.map_err(|e| bench_err(format!("{what}: {e}")))
}

/// A future bounded by `limit`.
async fn bounded<T>(
    limit: Duration,
    what: &str,
    f: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(limit, f).await {
        Ok(r) => r,
        Err(_) => Err(bench_err(format!(
            "{what}: not done within {} s",
            limit.as_secs()
        ))),
    }
}

fn random_bytes(len: usize) -> Result<Vec<u8>> {
    let mut v = vec![0u8; len];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut v))
        .ctx(|| "read /dev/urandom".to_string())?;
    Ok(v)
}

async fn connect(mds: SocketAddr, pnfs: bool) -> Result<Client> {
    let mut cfg = ClientConfig::new(mds);
    cfg.pnfs = pnfs;
    nfs(Client::connect(cfg).await, "connect")
}

/// Creates `path` with `data` through `c` (FILE_SYNC, then COMMIT/LAYOUTCOMMIT so the MDS
/// knows the size) and returns it still open for reading and writing.
async fn write_open(c: &Client, path: &str, data: &[u8]) -> Result<OpenFile> {
    let create = Some(CreateMode::Unchecked(SetAttrs {
        mode: Some(0o644),
        size: Some(0),
        ..Default::default()
    }));
    let f = nfs(
        c.open_path(path, OPEN4_SHARE_ACCESS_BOTH, create).await,
        &format!("OPEN {path}"),
    )?;
    nfs(
        c.write_all(&f, 0, data, StableHow4::FileSync4).await,
        &format!("WRITE {path}"),
    )?;
    nfs(c.commit_file(&f).await, &format!("COMMIT {path}"))?;
    Ok(f)
}

/// Offset of the first byte where `got` differs from `want` (a length difference counts).
fn first_difference(got: &[u8], want: &[u8]) -> Option<usize> {
    if got == want {
        return None;
    }
    Some(
        got.iter()
            .zip(want)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(want.len())),
    )
}

/// One whole-file read of `path` through `c`: OPEN, `depth` lanes of 1 MiB READs (timed),
/// CLOSE. Returns MiB/s and what was wrong (nothing: every byte as written).
async fn read_once(
    c: &Client,
    path: &str,
    want: &Arc<Vec<u8>>,
    depth: u32,
) -> Result<(f64, Vec<String>)> {
    let f = Arc::new(nfs(
        c.open_path(path, OPEN4_SHARE_ACCESS_READ, None).await,
        &format!("OPEN {path} for reading"),
    )?);
    let len = want.len() as u64;
    let mut wrong = Vec::new();
    if f.stat.size != len {
        wrong.push(format!(
            "{path}: size {} after OPEN, {len} written",
            f.stat.size
        ));
    }
    let t = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for lane in 0..u64::from(depth) {
        let (c, f, want) = (c.clone(), f.clone(), want.clone());
        set.spawn(async move {
            let mut got = 0u64;
            let mut bad: Option<u64> = None;
            let mut off = lane * READ;
            while off < len {
                let n = READ.min(len - off);
                let (data, _) = c.read_full(&f, off, n as u32).await?;
                let (lo, hi) = (off as usize, (off + n) as usize);
                if let Some(at) = first_difference(&data, &want[lo..hi]) {
                    bad.get_or_insert(off + at as u64);
                }
                got += data.len() as u64;
                off += u64::from(depth) * READ;
            }
            Ok::<_, client::Error>((got, bad))
        });
    }
    let mut total = 0u64;
    let mut first_bad: Option<u64> = None;
    while let Some(r) = set.join_next().await {
        let (got, bad) = match r {
            Ok(r) => nfs(r, &format!("READ {path}"))?,
            Err(e) => return Err(bench_err(format!("a reader of {path}: {e}"))),
        };
        total += got;
        if let Some(b) = bad {
            first_bad = Some(first_bad.map_or(b, |x| x.min(b)));
        }
    }
    let secs = t.elapsed().as_secs_f64();
    // Nothing past the end either.
    let (tail, eof) = nfs(c.read(&f, len, READ as u32).await, "READ at EOF")?;
    nfs(c.close(&f).await, &format!("CLOSE {path}"))?;
    if total != len {
        wrong.push(format!("{path}: read {total} bytes of {len}"));
    }
    if let Some(b) = first_bad {
        wrong.push(format!("{path}: wrong bytes from offset {b} on"));
    }
    if !tail.is_empty() || !eof {
        wrong.push(format!(
            "{path}: READ at the end gave {} bytes, eof {eof}",
            tail.len()
        ));
    }
    Ok((total as f64 / MIB / secs.max(1e-9), wrong))
}

/// The cluster's counters, once two readings a second apart agree (the data servers' reach
/// the MDS with their 1 s heartbeats).
fn settled(srv: &Running) -> Option<ClusterStatus> {
    let status = || srv.cluster_status().and_then(|r| r.ok());
    let total = |c: &ClusterStatus| {
        c.data_servers.iter().map(|d| d.read_bytes).sum::<u64>() + c.mds.read_bytes
    };
    std::thread::sleep(Duration::from_millis(1500));
    let mut last = status()?;
    for _ in 0..5 {
        std::thread::sleep(Duration::from_secs(1));
        let now = status()?;
        let same = total(&now) == total(&last);
        last = now;
        if same {
            break;
        }
    }
    Some(last)
}

fn ds_read(c: &ClusterStatus) -> u64 {
    c.data_servers.iter().map(|d| d.read_bytes).sum()
}

/// `rounds` reads of `/r` by a fresh client of `kind`, with the counters around them.
/// `measure`, its rate printed as it is known.
fn measure_and_say(
    rt: &tokio::runtime::Runtime,
    srv: &Running,
    mds: SocketAddr,
    spec: (&'static str, Kind, &'static str),
    want: &Arc<Vec<u8>>,
    a: &ReduceBenchArgs,
) -> Result<Measured> {
    let m = measure(rt, srv, mds, spec, want, a)?;
    eprintln!(
        "reducebench: {} {}: {}",
        m.label,
        m.kind.name(),
        rate_cell(&m)
    );
    Ok(m)
}

fn measure(
    rt: &tokio::runtime::Runtime,
    srv: &Running,
    mds: SocketAddr,
    (label, kind, state): (&'static str, Kind, &'static str),
    want: &Arc<Vec<u8>>,
    a: &ReduceBenchArgs,
) -> Result<Measured> {
    let c = rt.block_on(bounded(
        Duration::from_secs(60),
        "connect",
        connect(mds, kind == Kind::Pnfs),
    ))?;
    let before = settled(srv);
    let stats0 = c.pnfs_stats().unwrap_or_default();
    let mut m = Measured {
        label,
        kind,
        state,
        runs: Vec::new(),
        client: None,
        cluster: None,
        wrong: Vec::new(),
    };
    let r = (|| -> Result<()> {
        for _ in 0..a.rounds {
            let (rate, wrong) = rt.block_on(bounded(
                IO_WAIT,
                "a whole-file read",
                read_once(&c, FILE, want, a.depth),
            ))?;
            m.runs.push(rate);
            m.wrong.extend(wrong);
        }
        Ok(())
    })();
    let stats1 = c.pnfs_stats();
    let _ = rt.block_on(bounded(Duration::from_secs(30), "shutdown", async {
        nfs(c.shutdown().await, "shutdown")
    }));
    r?;
    let n = f64::from(a.rounds);
    if let Some(s) = stats1 {
        let d = |f: fn(&PnfsStats) -> u64| f(&s).saturating_sub(f(&stats0)) as f64 / n;
        m.client = Some((
            d(|s| s.layoutgets),
            d(|s| s.ds_read_bytes) / MIB,
            d(|s| s.mds_read_bytes) / MIB,
        ));
    }
    if let (Some(b), Some(e)) = (before, settled(srv)) {
        m.cluster = Some((
            e.mds.read_bytes.saturating_sub(b.mds.read_bytes) as f64 / n / MIB,
            ds_read(&e).saturating_sub(ds_read(&b)) as f64 / n / MIB,
        ));
    }
    Ok(m)
}

/// `mds.data` of `cfs admin status --json --config <cluster>/mds.toml`.
fn data_status(srv: &Running) -> Result<serde_json::Value> {
    crate::hostops::admin_status(srv)
        .map(|v| v["mds"]["data"].clone())
        .map_err(bench_err)
}

fn n(v: &serde_json::Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or(0)
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / MIB)
}

fn rate_cell(m: &Measured) -> String {
    match m.best() {
        Some(b) => format!(
            "{b:.0} ({})",
            m.runs
                .iter()
                .map(|r| format!("{r:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => "failed".into(),
    }
}

fn table(ms: &[Measured]) -> String {
    let mut out = String::from(
        "| | client | /r | MiB/s best (each read) | client's LAYOUTGETs, MiB from DSs / MDS per read | cluster: MiB the MDS / DSs served per read |\n|---|---|---|---|---|---|\n",
    );
    for m in ms {
        let client = match m.client {
            Some((lg, ds, md)) => format!("{lg:.0}, {ds:.0} / {md:.0}"),
            None => "(no pNFS: all through the MDS)".into(),
        };
        let cluster = m
            .cluster
            .map_or("n/a".into(), |(md, ds)| format!("{md:.0} / {ds:.0}"));
        out.push_str(&format!(
            "| {} | {} | {} | {} | {client} | {cluster} |\n",
            m.label,
            m.kind.name(),
            m.state,
            rate_cell(m)
        ));
    }
    out
}

/// Reduced over unreduced, per client kind.
fn ratios(ms: &[Measured]) -> String {
    let mut out = String::from(
        "| client | unreduced MiB/s | reduced MiB/s | reduced / unreduced |\n|---|---|---|---|\n",
    );
    for kind in [Kind::Pnfs, Kind::NoPnfs] {
        let best = |reduced: bool| {
            ms.iter()
                .find(|m| m.kind == kind && (m.state == STATE_REDUCED) == reduced)
                .and_then(Measured::best)
        };
        let (u, r) = (best(false), best(true));
        let f = |x: Option<f64>| x.map_or("n/a".into(), |x| format!("{x:.0}"));
        let ratio = match (u, r) {
            (Some(u), Some(r)) if u > 0.0 => format!("{:.2}", r / u),
            _ => "n/a".into(),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {ratio} |\n",
            kind.name(),
            f(u),
            f(r)
        ));
    }
    out
}

const STATE_MIRRORED: &str = "mirrored (open for writing)";
const STATE_REDUCED: &str = "reduced";

pub fn reducebench(a: &ReduceBenchArgs) -> Result<ExitCode> {
    let t_start = Instant::now();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let date =
        procs::run(Command::new("date").arg("-u").arg("+%Y-%m-%d %H:%M UTC")).unwrap_or_default();
    println!(
        "# reducebench {} — {} MiB, best of {} reads, {} × 1 MiB READs in flight; load average at start {} ({cores} cores)\n",
        date.trim(),
        a.mib,
        a.rounds,
        a.depth,
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    );
    let bin = server::cfs_binary()?;
    let want = Arc::new(random_bytes(usize::try_from(a.mib << 20).map_err(
        |_| Error::Usage(format!("--mib {}: too large for this machine", a.mib)),
    )?)?);
    let t0 = Instant::now();
    let encode_after = server::EC_ENCODE_AFTER_S.to_string();
    let mut srv = server::start_cfs_cluster_sized(
        "reducebench",
        &bin,
        1,
        server::CLUSTER_DS,
        None,
        &["--encode-after", &encode_after, "--reduce", "on"],
    )?;
    eprintln!(
        "reducebench: cluster up (1 MDS, {} data servers, --encode-after {encode_after} --reduce on) in {:.1} s",
        server::CLUSTER_DS,
        t0.elapsed().as_secs_f64()
    );
    let r = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .ctx(|| "tokio runtime".to_string())
        .and_then(|rt| {
            let r = run(&rt, &srv, a, &want);
            // the clients' tasks end with the runtime, before the cluster goes
            rt.shutdown_timeout(Duration::from_secs(10));
            r
        });
    srv.stop();
    let failures = r?;
    println!(
        "\nwall: {:.0} s in all; {cores} cores (available_parallelism)",
        t_start.elapsed().as_secs_f64()
    );
    if failures.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        for f in &failures {
            println!("FAILED: {f}");
        }
        Ok(ExitCode::FAILURE)
    }
}

/// Steps 1-4 on a running cluster; the failures (wrong bytes, a file that stayed mirrored).
fn run(
    rt: &tokio::runtime::Runtime,
    srv: &Running,
    a: &ReduceBenchArgs,
    want: &Arc<Vec<u8>>,
) -> Result<Vec<String>> {
    let mds: SocketAddr = srv
        .admin()
        .and_then(|(_, addr)| addr.parse().ok())
        .ok_or_else(|| bench_err("no MDS address"))?;
    let mut failures = Vec::new();
    let mut ms = Vec::new();

    // 1. Write both, keep both open for writing.
    let t = Instant::now();
    let (writer, open) = rt.block_on(bounded(IO_WAIT, "writing /r and /copy", async {
        let w = connect(mds, true).await?;
        let r = write_open(&w, FILE, want).await?;
        let c = write_open(&w, COPY, want).await?;
        Ok((w, [r, c]))
    }))?;
    let wrote = t.elapsed().as_secs_f64();
    println!(
        "wrote {FILE} and {COPY} ({} MiB each, random bytes) with a pNFS client in {wrote:.1} s ({:.0} MiB/s); both kept open for writing",
        a.mib,
        2.0 * want.len() as f64 / MIB / wrote.max(1e-9)
    );
    let st = data_status(srv)?;
    println!(
        "status: {} files mirrored ({} logical, {} raw on the data servers), {} reduced\n",
        n(&st, "mirrored_files"),
        mib(n(&st, "mirrored_bytes")),
        mib(n(&st, "mirrored_raw_bytes")),
        n(&st, "reduced_files")
    );
    let unreduced = (|| -> Result<()> {
        for spec in [
            ("(a)", Kind::Pnfs, STATE_MIRRORED),
            ("(b)", Kind::NoPnfs, STATE_MIRRORED),
        ] {
            ms.push(measure_and_say(rt, srv, mds, spec, want, a)?);
        }
        Ok(())
    })();
    // Still mirrored after the reads: the numbers are of the unreduced file.
    let still = data_status(srv)?;
    if n(&still, "reduced_files") != 0 {
        failures.push(format!(
            "{} file(s) reduced while held open for writing",
            n(&still, "reduced_files")
        ));
    }

    // 2. Close both; wait until they are reduced.
    let closed = rt.block_on(bounded(Duration::from_secs(60), "CLOSE", async {
        for f in &open {
            nfs(writer.close(f).await, "CLOSE")?;
        }
        nfs(writer.shutdown().await, "shutdown")
    }));
    unreduced?;
    closed?;
    let limit = Duration::from_secs(REDUCE_WAIT_S + a.mib.saturating_sub(128));
    let t = Instant::now();
    let (st, took) = loop {
        let st = data_status(srv).unwrap_or_default();
        if n(&st, "reduced_files") == 2 && n(&st, "mirrored_files") == 0 {
            break (st, t.elapsed());
        }
        if t.elapsed() > limit {
            failures.push(format!(
                "not reduced within {} s of the close: {st}",
                limit.as_secs()
            ));
            print!("\n{}", table(&ms));
            return Ok(failures);
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let (logical, unique, stored, raw) = (
        n(&st, "reduced_bytes"),
        n(&st, "segment_unique_bytes"),
        n(&st, "segment_stored_bytes"),
        n(&st, "segment_raw_bytes"),
    );
    let of = |x: u64| {
        if logical == 0 {
            String::new()
        } else {
            format!(" ({:.3} of logical)", x as f64 / logical as f64)
        }
    };
    println!(
        "reduced: {} files, {} mirrored, {:.1} s from the close (--encode-after {} s included)",
        n(&st, "reduced_files"),
        n(&st, "mirrored_files"),
        took.as_secs_f64(),
        server::EC_ENCODE_AFTER_S
    );
    println!(
        "  logical {}; after dedup {}{}; after compression {}{}; raw in segments (with parity) {}{}; raw bytes per byte {:.2}\n",
        mib(logical),
        mib(unique),
        of(unique),
        mib(stored),
        of(stored),
        mib(raw),
        of(raw),
        st["raw_per_byte"].as_f64().unwrap_or(0.0)
    );

    // 3. The same reads, reduced.
    for spec in [
        ("(c)", Kind::Pnfs, STATE_REDUCED),
        ("(d)", Kind::NoPnfs, STATE_REDUCED),
    ] {
        ms.push(measure_and_say(rt, srv, mds, spec, want, a)?);
    }
    let after = data_status(srv)?;
    if n(&after, "reduced_files") != 2 {
        failures.push(format!(
            "{} file(s) reduced after the reads, 2 before",
            n(&after, "reduced_files")
        ));
    }

    // 4. The table.
    println!("## Reads of {FILE} ({} MiB)\n", a.mib);
    print!("{}", table(&ms));
    println!();
    print!("{}", ratios(&ms));
    for m in &ms {
        for w in &m.wrong {
            failures.push(format!("{} {} ({}): {w}", m.label, m.kind.name(), m.state));
        }
    }
    if failures.is_empty() {
        println!(
            "\nevery read byte-exact ({} reads of {} MiB)",
            ms.len() as u32 * a.rounds,
            a.mib
        );
    }
    Ok(failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(label: &'static str, kind: Kind, state: &'static str, runs: &[f64]) -> Measured {
        Measured {
            label,
            kind,
            state,
            runs: runs.to_vec(),
            client: None,
            cluster: Some((0.0, 128.0)),
            wrong: Vec::new(),
        }
    }

    #[test]
    fn differences_are_found_where_they_are() {
        assert_eq!(first_difference(b"abc", b"abc"), None);
        assert_eq!(first_difference(b"abd", b"abc"), Some(2));
        assert_eq!(first_difference(b"ab", b"abc"), Some(2));
    }

    #[test]
    fn the_best_read_is_the_figure_and_ratios_are_per_client_kind() {
        let ms = vec![
            m("(a)", Kind::Pnfs, STATE_MIRRORED, &[900.0, 1000.0, 950.0]),
            m("(b)", Kind::NoPnfs, STATE_MIRRORED, &[400.0]),
            m("(c)", Kind::Pnfs, STATE_REDUCED, &[250.0, 200.0]),
            m("(d)", Kind::NoPnfs, STATE_REDUCED, &[]),
        ];
        let t = table(&ms);
        assert!(t.contains(
            "| (a) | pNFS client | mirrored (open for writing) | 1000 (900, 1000, 950) |"
        ));
        assert!(t.contains("| (d) | client without pNFS | reduced | failed |"));
        let r = ratios(&ms);
        assert!(r.contains("| pNFS client | 1000 | 250 | 0.25 |"), "{r}");
        assert!(
            r.contains("| client without pNFS | 400 | n/a | n/a |"),
            "{r}"
        );
    }
}
