//! Host-side load generator: sequential write/read throughput with N outstanding 1 MiB
//! operations, 4 KiB random reads and writes over the file those wrote with K parallel tasks
//! (per-operation costs, such as the metrics hooks', show most there), and small-file
//! create/stat/unlink rates with K parallel tasks, each with its per-operation latency (mean,
//! median, p99). Prints one JSON object per measurement.
//!
//! cargo run --release -p client --example load -- --server 127.0.0.1:2049 [--export /]
//!     [--seconds 10] [--depth 8] [--tasks 16] [--server-pid PID] [--label NAME] [--pnfs on|off]
//!     [--phases all|data|meta] [--fabric PROVIDER] [--dir-per-task]
//!
//! The small-file tasks share one directory unless `--dir-per-task` gives each its own (as
//! mdtest's `-u`): on cfs each new directory goes to a shard of its own, so the tasks' changes
//! go to several Raft groups at once.
//!
//! With `--pnfs on` (the default) data goes straight to the data servers when the server offers
//! flexfiles layouts; each sequential result then says where the bytes went.
use client::transfer::{self, TransferOptions};
use client::{Client, ClientConfig, CreateMode, SetAttrs, StableHow4};
use proto::nfs4::{OPEN4_SHARE_ACCESS_BOTH, OPEN4_SHARE_ACCESS_READ};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Opts {
    server: String,
    export: String,
    seconds: u64,
    depth: usize,
    tasks: usize,
    server_pid: Option<u32>,
    label: String,
    pnfs: bool,
    /// Run the sequential I/O phases.
    data: bool,
    /// Run the small-file phases.
    meta: bool,
    /// libfabric provider for data-server I/O (RMA) where the data servers offer it.
    fabric: Option<String>,
    /// Each small-file task works in a directory of its own.
    dir_per_task: bool,
}

fn parse() -> Result<Opts, String> {
    let mut o = Opts {
        server: "127.0.0.1:2049".into(),
        export: "/".into(),
        seconds: 10,
        depth: 8,
        tasks: 16,
        server_pid: None,
        label: String::new(),
        pnfs: true,
        data: true,
        meta: true,
        fabric: None,
        dir_per_task: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        let num = |v: String| v.parse::<u64>().map_err(|e| format!("{v}: {e}"));
        match a.as_str() {
            "--server" => o.server = val()?,
            "--export" => o.export = val()?,
            "--seconds" => o.seconds = num(val()?)?.max(1),
            "--depth" => o.depth = num(val()?)?.max(1) as usize,
            "--tasks" => o.tasks = num(val()?)?.max(1) as usize,
            "--server-pid" => o.server_pid = Some(num(val()?)? as u32),
            "--label" => o.label = val()?,
            "--fabric" => o.fabric = Some(val()?),
            "--dir-per-task" => o.dir_per_task = true,
            "--pnfs" => {
                o.pnfs = match val()?.as_str() {
                    "on" => true,
                    "off" => false,
                    v => return Err(format!("--pnfs takes on or off, not {v}")),
                }
            }
            "--phases" => {
                (o.data, o.meta) = match val()?.as_str() {
                    "all" => (true, true),
                    "data" => (true, false),
                    "meta" => (false, true),
                    v => return Err(format!("--phases takes all, data or meta, not {v}")),
                }
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(o)
}

/// utime + stime of a process, in seconds (Linux /proc; 100 ticks per second).
fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{}/stat", pid?)).ok()?;
    let after = s.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// Voluntary context switches of every live thread of a process (Linux /proc): each is a
/// wake-up, a hand-off between threads or a wait (issue 47). Threads that ended are not counted.
fn voluntary_switches(pid: Option<u32>) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{}/task", pid?)).ok()?;
    let mut n = 0;
    for t in tasks.flatten() {
        let Ok(status) = std::fs::read_to_string(t.path().join("status")) else {
            continue;
        };
        n += status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    Some(n)
}

struct Report<'a> {
    o: &'a Opts,
    /// pNFS counters when the measurement started, to report its own share.
    pnfs0: Option<client::PnfsStats>,
    client: Option<&'a Client>,
    cpu0: Option<f64>,
    vcsw0: Option<u64>,
    t0: Instant,
}

impl<'a> Report<'a> {
    fn start(o: &'a Opts) -> Self {
        Report {
            o,
            pnfs0: None,
            client: None,
            cpu0: cpu_seconds(o.server_pid),
            vcsw0: voluntary_switches(o.server_pid),
            t0: Instant::now(),
        }
    }
    /// Also report where this measurement's bytes went (DSs or MDS).
    fn with_pnfs(mut self, c: &'a Client) -> Self {
        self.pnfs0 = c.pnfs_stats();
        self.client = Some(c);
        self
    }
    fn finish(self, bench: &str, extra: &str) {
        let secs = self.t0.elapsed().as_secs_f64();
        let now = self.client.and_then(|c| c.pnfs_stats());
        let pnfs = match now {
            Some(b) => {
                let a = self.pnfs0.unwrap_or_default();
                format!(
                    ",\"pnfs\":\"{}\",\"pnfs_active\":true,\"ds_write_bytes\":{},\"ds_read_bytes\":{},\"mds_write_bytes\":{},\"mds_read_bytes\":{},\"layoutgets\":{},\"rewrite_bytes\":{}",
                    on_off(self.o.pnfs),
                    b.ds_write_bytes - a.ds_write_bytes,
                    b.ds_read_bytes - a.ds_read_bytes,
                    b.mds_write_bytes - a.mds_write_bytes,
                    b.mds_read_bytes - a.mds_read_bytes,
                    b.layoutgets - a.layoutgets,
                    b.rewrite_bytes - a.rewrite_bytes,
                )
            }
            None => format!(
                ",\"pnfs\":\"{}\",\"pnfs_active\":false",
                on_off(self.o.pnfs)
            ),
        };
        let cpu = match (self.cpu0, cpu_seconds(self.o.server_pid)) {
            (Some(a), Some(b)) => format!(",\"server_cpu_s\":{:.3}", b - a),
            _ => String::new(),
        };
        let vcsw = match (self.vcsw0, voluntary_switches(self.o.server_pid)) {
            (Some(a), Some(b)) => format!(",\"server_vcsw\":{}", b.saturating_sub(a)),
            _ => String::new(),
        };
        println!(
            "{{\"bench\":\"{bench}\",\"label\":\"{}\",\"server\":\"{}\",\"seconds\":{secs:.3}{extra}{pnfs}{cpu}{vcsw}}}",
            label(self.o), self.o.server
        );
    }
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

/// The label as given, with the pNFS setting appended so runs with and without it can be told
/// apart in the output.
fn label(o: &Opts) -> String {
    let p = format!("pnfs-{}", on_off(o.pnfs));
    if o.label.is_empty() {
        p
    } else {
        format!("{},{p}", o.label)
    }
}

type BoxErr = Box<dyn std::error::Error + Send + Sync>;

async fn sequential(c: &Client, o: &Opts, dir: &client::NfsFh4) -> Result<(), BoxErr> {
    let chunk = (1usize << 20).min(c.max_write() as usize);
    let f = Arc::new(
        c.open(
            dir,
            "seq.bin",
            OPEN4_SHARE_ACCESS_BOTH,
            Some(CreateMode::Unchecked(SetAttrs {
                mode: Some(0o644),
                size: Some(0),
                ..Default::default()
            })),
        )
        .await?,
    );
    // Write for the time given, N chunks in flight, then COMMIT (counted in the time).
    let stop = Instant::now() + Duration::from_secs(o.seconds);
    let r = Report::start(o).with_pnfs(c);
    let data = Arc::new(vec![0x5au8; chunk]);
    let mut inflight = std::collections::VecDeque::new();
    let mut off = 0u64;
    while Instant::now() < stop {
        let (c2, f2, d2, at) = (c.clone(), f.clone(), data.clone(), off);
        inflight.push_back(tokio::spawn(async move {
            c2.write_all(&f2, at, &d2, StableHow4::Unstable4).await
        }));
        off += chunk as u64;
        if inflight.len() >= o.depth {
            if let Some(h) = inflight.pop_front() {
                h.await??;
            }
        }
    }
    while let Some(h) = inflight.pop_front() {
        h.await??;
    }
    // Through the MDS: COMMIT; with pNFS: COMMIT on every DS written, then LAYOUTCOMMIT.
    c.commit_file(&f).await?;
    let mib = off as f64 / (1 << 20) as f64;
    let secs = r.t0.elapsed().as_secs_f64();
    r.finish(
        "seq_write",
        &format!(
            ",\"bytes\":{off},\"mib_per_s\":{:.1},\"depth\":{},\"io_size\":{chunk}",
            mib / secs,
            o.depth
        ),
    );
    c.close(&f).await?;

    let f = Arc::new(
        c.open(dir, "seq.bin", OPEN4_SHARE_ACCESS_READ, None)
            .await?,
    );
    let r = Report::start(o).with_pnfs(c);
    let opt = TransferOptions {
        chunk,
        depth: o.depth,
        stable: StableHow4::Unstable4,
    };
    let n = transfer::download(c, f.clone(), &mut std::io::sink(), opt).await?;
    let secs = r.t0.elapsed().as_secs_f64();
    r.finish(
        "seq_read",
        &format!(
            ",\"bytes\":{n},\"mib_per_s\":{:.1},\"depth\":{},\"io_size\":{chunk}",
            n as f64 / (1 << 20) as f64 / secs,
            o.depth
        ),
    );
    c.close(&f).await?;
    small_io(c, o, dir, n, false).await?;
    small_io(c, o, dir, n, true).await?;
    c.remove(dir, "seq.bin").await?;
    Ok(())
}

/// Bytes per operation of the random-I/O phases.
const SMALL_IO: usize = 4096;

/// K tasks doing 4 KiB reads (or UNSTABLE writes, then one COMMIT) at random aligned offsets
/// within the first `size` bytes of seq.bin, for the time given.
async fn small_io(
    c: &Client,
    o: &Opts,
    dir: &client::NfsFh4,
    size: u64,
    write: bool,
) -> Result<(), BoxErr> {
    let blocks = size / SMALL_IO as u64;
    if blocks == 0 {
        return Ok(());
    }
    let access = if write {
        OPEN4_SHARE_ACCESS_BOTH
    } else {
        OPEN4_SHARE_ACCESS_READ
    };
    let f = Arc::new(c.open(dir, "seq.bin", access, None).await?);
    let stop = Instant::now() + Duration::from_secs(o.seconds);
    let count = Arc::new(AtomicU64::new(0));
    let r = Report::start(o).with_pnfs(c);
    let mut tasks = Vec::new();
    for t in 0..o.tasks {
        let (c, f, count) = (c.clone(), f.clone(), count.clone());
        tasks.push(tokio::spawn(async move {
            // xorshift64*, seeded per task: offsets need no quality beyond "not sequential".
            let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (t as u64 + 1);
            let data = vec![0xa5u8; SMALL_IO];
            while Instant::now() < stop {
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                let off = (x.wrapping_mul(0x2545_f491_4f6c_dd1d) % blocks) * SMALL_IO as u64;
                if write {
                    c.write_all(&f, off, &data, StableHow4::Unstable4).await?;
                } else {
                    c.read(&f, off, SMALL_IO as u32).await?;
                }
                count.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<(), client::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    if write {
        c.commit_file(&f).await?;
    }
    let ops = count.load(Ordering::Relaxed);
    let secs = r.t0.elapsed().as_secs_f64();
    r.finish(
        if write { "rand_write" } else { "rand_read" },
        &format!(
            ",\"ops\":{ops},\"ops_per_s\":{:.1},\"tasks\":{},\"io_size\":{SMALL_IO}",
            ops as f64 / secs,
            o.tasks
        ),
    );
    c.close(&f).await?;
    Ok(())
}

/// `,"lat_mean_us":..,"lat_p50_us":..,"lat_p99_us":..` of one phase's per-operation
/// latencies (a create is OPEN + CLOSE, a stat LOOKUP + GETATTR, an unlink REMOVE); empty
/// when nothing was measured.
fn latency(lat: &mut [Duration]) -> String {
    if lat.is_empty() {
        return String::new();
    }
    lat.sort_unstable();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let mean = lat.iter().map(|d| us(*d)).sum::<f64>() / lat.len() as f64;
    // nearest rank: the smallest value with at least p of the samples at or below it
    let rank = |p: f64| us(lat[((p * lat.len() as f64).ceil() as usize).clamp(1, lat.len()) - 1]);
    format!(
        ",\"lat_mean_us\":{mean:.0},\"lat_p50_us\":{:.0},\"lat_p99_us\":{:.0}",
        rank(0.50),
        rank(0.99)
    )
}

async fn small_files(c: &Client, o: &Opts, dir: &client::NfsFh4) -> Result<(), BoxErr> {
    // Task t's directory: `dir`, or its own `dir/t{t}` (made before the timed phases).
    let mut dirs = Vec::with_capacity(o.tasks);
    for t in 0..o.tasks {
        dirs.push(match o.dir_per_task {
            true => c.mkdir(dir, &format!("t{t}"), 0o755).await?,
            false => dir.clone(),
        });
    }
    let stop_flag = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    // create: OPEN(GUARDED) + CLOSE per file, K tasks, for the time given.
    let r = Report::start(o);
    let mut tasks = Vec::new();
    for (t, dir) in dirs.iter().enumerate() {
        let (c, dir, stop, count) = (c.clone(), dir.clone(), stop_flag.clone(), count.clone());
        tasks.push(tokio::spawn(async move {
            let mut names = Vec::new();
            let mut lat = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let name = format!("t{t}-{i}");
                i += 1;
                let t0 = Instant::now();
                let f = c
                    .open(
                        &dir,
                        &name,
                        OPEN4_SHARE_ACCESS_BOTH,
                        Some(CreateMode::Guarded(SetAttrs::mode(0o644))),
                    )
                    .await?;
                c.close(&f).await?;
                lat.push(t0.elapsed());
                names.push(name);
                count.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, client::Error>((names, lat))
        }));
    }
    tokio::time::sleep(Duration::from_secs(o.seconds)).await;
    stop_flag.store(true, Ordering::Relaxed);
    let mut per_task = Vec::new();
    let mut lat = Vec::new();
    for t in tasks {
        let (names, l) = t.await??;
        per_task.push(names);
        lat.extend(l);
    }
    let n = count.load(Ordering::Relaxed);
    let secs = r.t0.elapsed().as_secs_f64();
    r.finish(
        "create",
        &format!(
            ",\"ops\":{n},\"ops_per_s\":{:.1},\"tasks\":{}{}",
            n as f64 / secs,
            o.tasks,
            latency(&mut lat)
        ),
    );

    // stat: LOOKUP + GETATTR of every file created, K tasks.
    let per_task = Arc::new(per_task);
    let r = Report::start(o);
    let mut tasks = Vec::new();
    for (t, dir) in dirs.iter().enumerate() {
        let (c, dir, names) = (c.clone(), dir.clone(), per_task.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(names[t].len());
            for name in &names[t] {
                let t0 = Instant::now();
                let fh = c.lookup(&dir, name).await?;
                c.getattr(&fh).await?;
                lat.push(t0.elapsed());
            }
            Ok::<_, client::Error>(lat)
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    let secs = r.t0.elapsed().as_secs_f64();
    r.finish(
        "stat",
        &format!(
            ",\"ops\":{n},\"ops_per_s\":{:.1},\"tasks\":{}{}",
            n as f64 / secs,
            o.tasks,
            latency(&mut lat)
        ),
    );

    // unlink: REMOVE of every file, K tasks.
    let r = Report::start(o);
    let mut tasks = Vec::new();
    for (t, dir) in dirs.iter().enumerate() {
        let (c, dir, names) = (c.clone(), dir.clone(), per_task.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(names[t].len());
            for name in &names[t] {
                let t0 = Instant::now();
                c.remove(&dir, name).await?;
                lat.push(t0.elapsed());
            }
            Ok::<_, client::Error>(lat)
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    let secs = r.t0.elapsed().as_secs_f64();
    r.finish(
        "unlink",
        &format!(
            ",\"ops\":{n},\"ops_per_s\":{:.1},\"tasks\":{}{}",
            n as f64 / secs,
            o.tasks,
            latency(&mut lat)
        ),
    );
    if o.dir_per_task {
        for t in 0..o.tasks {
            c.remove(dir, &format!("t{t}")).await?;
        }
    }
    Ok(())
}

async fn run(o: Opts) -> Result<(), BoxErr> {
    use std::net::ToSocketAddrs;
    let addr = o
        .server
        .to_socket_addrs()?
        .next()
        .ok_or("server address does not resolve")?;
    let mut cfg = ClientConfig::new(addr);
    cfg.export = o.export.clone();
    cfg.slots = 64;
    cfg.pnfs = o.pnfs;
    cfg.fabric = o.fabric.clone();
    let c = Client::connect(cfg).await?;
    let name = format!("cfs-load-{}", std::process::id());
    let dir = c.mkdir(c.root(), &name, 0o755).await?;
    let r = async {
        if o.data {
            sequential(&c, &o, &dir).await?;
        }
        if o.meta {
            small_files(&c, &o, &dir).await?;
        }
        Ok(())
    }
    .await;
    let _ = c.remove(c.root(), &name).await;
    let _ = c.shutdown().await;
    r
}

fn main() -> std::process::ExitCode {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("load: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("load: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(o)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("load: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
