//! `metabench`: issue 12's metadata benchmark. Host-side, one run: small-file creates, stats
//! and unlinks (the Rust client's `load --phases meta`, K tasks in one directory, or each in
//! its own with `--dir-per-task`) against
//! ganesha (the baseline; it does not fsync), cfs as one node (every shard a one-replica Raft
//! group, `cfs server`) and cfs as three MDS nodes on loopback (`cfs cluster up --mds 3 --ds 3`:
//! every shard a three-replica group), each cfs kind with 16 and with 256 shards. Per run:
//! throughput and per-operation latency (mean, p99) of each phase; the server processes' CPU,
//! and per MDS node the log fsyncs, commands and NFS operations each phase caused (from its
//! /metrics); RSS of every process after start and after the load; start-up time from spawn to
//! serving clients and to every shard having a leader. Rounds are interleaved (the order
//! reversed every other round) with every server freshly started, as `hostbench` does.
//!
//! Ends with the targets of issue 12 (3-replica create latency at most 2x the 1-replica one;
//! 3-replica throughput at or above ganesha's) and an estimate for three MDS nodes on separate
//! machines, derived from the measured per-node costs.

use crate::error::{Error, IoContext, Result};
use crate::hostbench::{
    fmt_ratio, fmt_value, load_binary, pick_cfs_binary, ratio_range, Pinned, CFS_ADMIN,
};
use crate::metrics_cost::{self, Admin};
use crate::procs;
use crate::server::{self, Running, ServerSpec};
use serde::Serialize;
use serde_json::Value;
use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

#[derive(clap::Args, Clone, Debug)]
pub struct MetaBenchArgs {
    /// seconds of the create phase; stat and unlink go over what it created
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// rounds; each runs every configuration once, freshly started
    #[arg(long, default_value_t = 2)]
    pub rounds: u32,
    /// parallel tasks of the load generator (one client, one session)
    #[arg(long, default_value_t = 16)]
    pub tasks: u32,
    /// each task in a directory of its own (mdtest's -u), not all in one: on cfs each new
    /// directory goes to a shard of its own, so the tasks' changes go to several Raft groups
    #[arg(long)]
    pub dir_per_task: bool,
    /// shard counts each cfs kind is created with (`CFS_SHARDS`, `cluster up --shards`)
    #[arg(long, default_values_t = [16u16, 256])]
    pub shards: Vec<u16>,
    /// also measure `cfs cluster up --mds 1 --ds 3` (cfs-c1r/N: one replica, data servers
    /// beside it, as cfs-3r has them), to tell what the three replicas cost from what the
    /// data servers do
    #[arg(long)]
    pub with_ds_1r: bool,
    /// network round trip between separate machines assumed by the estimate, in µs
    #[arg(long, default_value_t = 100.0)]
    pub rtt_us: f64,
    /// write the raw results and the summary here
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// count every cfs process's heap allocations (`CFS_COUNT_ALLOCS=1`) for the per-node
    /// table's allocations/op; off by default, as counting adds an atomic add per allocation
    /// to the CPU measured
    #[arg(long)]
    pub allocs: bool,
}

/// What is started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Kind {
    Ganesha,
    /// `cfs server`: one node, one replica per shard
    Cfs1,
    /// `cfs cluster up --mds 3 --ds 3`: three replicas per shard
    Cfs3,
    /// `cfs cluster up --mds 1 --ds 3`: one replica, with data servers
    Cfs1Ds,
}

#[derive(Clone, Debug, Serialize)]
struct Config {
    name: String,
    kind: Kind,
    shards: Option<u16>,
}

/// Counters of one MDS node's /metrics.
#[derive(Clone, Copy, Debug, Default, Serialize)]
struct NodeCounts {
    v4_ops: f64,
    commands: f64,
    batches: f64,
    fsyncs: f64,
    fsync_s: f64,
    /// redb checkpoints (every 5 s under load) and the seconds they took
    checkpoints: f64,
    checkpoint_s: f64,
    /// heap allocations (`cfs_process_allocations_total`, counted because the servers are
    /// started with `CFS_COUNT_ALLOCS=1`); None from a build without the counter
    #[serde(skip_serializing_if = "Option::is_none")]
    allocs: Option<f64>,
}

impl NodeCounts {
    fn minus(&self, o: &NodeCounts) -> NodeCounts {
        NodeCounts {
            v4_ops: self.v4_ops - o.v4_ops,
            commands: self.commands - o.commands,
            batches: self.batches - o.batches,
            fsyncs: self.fsyncs - o.fsyncs,
            fsync_s: self.fsync_s - o.fsync_s,
            checkpoints: self.checkpoints - o.checkpoints,
            checkpoint_s: self.checkpoint_s - o.checkpoint_s,
            allocs: self.allocs.zip(o.allocs).map(|(a, b)| a - b),
        }
    }

    fn parse(page: &str) -> NodeCounts {
        let mut c = NodeCounts::default();
        for line in page.lines().filter(|l| !l.starts_with('#')) {
            let Some(v) = line
                .rsplit(' ')
                .next()
                .and_then(|v| v.trim().parse::<f64>().ok())
            else {
                continue;
            };
            match line.split(['{', ' ']).next().unwrap_or("") {
                "cfs_nfs4_operation_duration_seconds_count" => c.v4_ops += v,
                "cfs_mds_log_commands_total" => c.commands += v,
                "cfs_mds_log_batches_total" => c.batches += v,
                "cfs_mds_log_fsync_duration_seconds_count" => c.fsyncs += v,
                "cfs_mds_log_fsync_duration_seconds_sum" => c.fsync_s += v,
                "cfs_mds_checkpoint_duration_seconds_count" => c.checkpoints += v,
                "cfs_mds_checkpoint_duration_seconds_sum" => c.checkpoint_s += v,
                "cfs_process_allocations_total" => c.allocs = Some(c.allocs.unwrap_or(0.0) + v),
                _ => {}
            }
        }
        c
    }
}

/// A process of the server under test.
struct Proc {
    name: String,
    pid: u32,
    /// MDS nodes: their admin listener
    admin: Option<Admin>,
}

/// What one process did during one phase.
#[derive(Clone, Debug, Serialize)]
struct NodePhase {
    name: String,
    cpu_s: Option<f64>,
    /// Voluntary context switches of all its threads (issue 47: each is a wake-up, a hand-off
    /// between threads or a wait for the disk).
    #[serde(skip_serializing_if = "Option::is_none")]
    vcsw: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    counts: Option<NodeCounts>,
}

#[derive(Clone, Debug, Serialize)]
struct Phase {
    bench: String,
    ops: f64,
    ops_per_s: f64,
    lat_mean_us: Option<f64>,
    lat_p99_us: Option<f64>,
    nodes: Vec<NodePhase>,
}

#[derive(Clone, Debug, Serialize)]
struct Run {
    config: String,
    round: u32,
    version: String,
    /// spawn to serving: cfs one node, its NFS port listening; a cluster, `cluster up`'s
    /// banner (printed once every MDS node answers a client's EXCHANGE_ID/CREATE_SESSION and
    /// every data server is up); ganesha, its port listening
    serving_s: Option<f64>,
    /// spawn to every shard having a leader (the first MDS node's admin status)
    leaders_s: Option<f64>,
    shards_seen: Option<usize>,
    rss_start_kib: Vec<(String, u64)>,
    rss_end_kib: Vec<(String, u64)>,
    phases: Vec<Phase>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn configs(shards: &[u16], with_ds_1r: bool) -> Vec<Config> {
    let mut v = vec![Config {
        name: "ganesha".into(),
        kind: Kind::Ganesha,
        shards: None,
    }];
    for &n in shards {
        v.push(Config {
            name: format!("cfs-1r/{n}"),
            kind: Kind::Cfs1,
            shards: Some(n),
        });
        if with_ds_1r {
            v.push(Config {
                name: format!("cfs-c1r/{n}"),
                kind: Kind::Cfs1Ds,
                shards: Some(n),
            });
        }
        v.push(Config {
            name: format!("cfs-3r/{n}"),
            kind: Kind::Cfs3,
            shards: Some(n),
        });
    }
    v
}

/// utime + stime of a process in seconds (100 ticks per second), None once it is gone.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// Voluntary context switches of every thread of a process (`/proc/PID/status` counts only
/// the thread it names), None once it is gone. Threads that ended meanwhile drop out, so a
/// phase's difference can only undercount.
fn voluntary_switches(pid: u32) -> Option<u64> {
    let mut total = 0;
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let Ok(s) = std::fs::read_to_string(t.path().join("status")) else {
            continue;
        };
        total += s
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    Some(total)
}

fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// GET `path` from an admin listener (one connection, bounded in time); the body on 200.
fn http_get(a: &Admin, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&a.addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        a.addr, a.token
    )
    .ok()?;
    let mut buf = Vec::new();
    s.take(16 << 20).read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

fn counts(a: &Admin) -> Option<NodeCounts> {
    http_get(a, "/metrics").map(|p| NodeCounts::parse(&p))
}

/// `listen` of the `[admin]` section of a node's config (None: none, or port 0).
fn configured_admin(conf: &str) -> Option<SocketAddr> {
    let after = conf.split("[admin]").nth(1)?;
    let section = after.split("\n[").next()?;
    let v = section
        .lines()
        .filter_map(|l| l.trim().strip_prefix("listen"))
        .filter_map(|r| r.trim_start().strip_prefix('='))
        .map(|v| v.trim().trim_matches('"'))
        .next()?;
    v.parse::<SocketAddr>().ok().filter(|a| a.port() != 0)
}

/// The admin listener of a cluster's node `name`: the address its config names (or, for port
/// 0, the one it wrote into its data directory), the token from `cfs admin token --config
/// NAME.toml`.
fn cluster_admin(bin: &Path, dir: &Path, name: &str) -> Result<Admin> {
    let conf = dir.join(format!("{name}.toml"));
    let text = std::fs::read_to_string(&conf).ctx(|| format!("read {conf:?}"))?;
    let file = dir.join(name).join("admin.addr");
    let deadline = Instant::now() + Duration::from_secs(10);
    let addr = loop {
        if let Some(a) = configured_admin(&text) {
            break a;
        }
        if let Some(a) = std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| t.trim().parse::<SocketAddr>().ok())
        {
            break a;
        }
        if Instant::now() > deadline {
            return Err(Error::Server(format!("no admin address in {file:?}")));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let token = procs::run(
        Command::new(bin)
            .args(["admin", "token", "--config"])
            .arg(dir.join(format!("{name}.toml"))),
    )?
    .trim()
    .to_string();
    Ok(Admin { addr, token })
}

/// The processes of a running server, MDS nodes with their admin listeners.
fn procs_of(c: &Config, srv: &Running, bin: Option<&Path>) -> Result<Vec<Proc>> {
    match c.kind {
        Kind::Ganesha => Ok(srv
            .pid()
            .map(|pid| Proc {
                name: "ganesha".into(),
                pid,
                admin: None,
            })
            .into_iter()
            .collect()),
        Kind::Cfs1 => {
            let bin = bin.ok_or_else(|| Error::Server("no cfs binary".into()))?;
            let pid = srv
                .pid()
                .ok_or_else(|| Error::Server("cfs has no pid".into()))?;
            Ok(vec![Proc {
                name: "mds".into(),
                pid,
                admin: Some(metrics_cost::admin_of(srv, bin)?),
            }])
        }
        Kind::Cfs3 | Kind::Cfs1Ds => {
            let bin = bin.ok_or_else(|| Error::Server("no cfs binary".into()))?;
            let dir = srv
                .cluster_dir()
                .ok_or_else(|| Error::Server("no cluster directory".into()))?;
            let pids = dir.join("pids");
            let text = std::fs::read_to_string(&pids).ctx(|| format!("read {pids:?}"))?;
            let mut v = Vec::new();
            for l in text.lines() {
                let mut w = l.split_whitespace();
                let (Some(name), Some(pid)) = (w.next(), w.next().and_then(|p| p.parse().ok()))
                else {
                    continue;
                };
                let admin = if name.starts_with("mds") {
                    Some(cluster_admin(bin, dir, name)?)
                } else {
                    None
                };
                v.push(Proc {
                    name: name.into(),
                    pid,
                    admin,
                });
            }
            Ok(v)
        }
    }
}

/// (CPU seconds, voluntary context switches, MDS counters) of every process now.
type Sample = Vec<(Option<f64>, Option<u64>, Option<NodeCounts>)>;

fn sample(ps: &[Proc]) -> Sample {
    ps.iter()
        .map(|p| {
            (
                cpu_seconds(p.pid),
                voluntary_switches(p.pid),
                p.admin.as_ref().and_then(counts),
            )
        })
        .collect()
}

/// Polls the first MDS node's status until every shard has a leader (bounded: 180 s).
/// Returns when, from `t0`, and the number of shards it reports.
fn wait_leaders(ps: &[Proc], t0: Instant) -> Result<(f64, usize)> {
    let Some(a) = ps.iter().find_map(|p| p.admin.as_ref()) else {
        return Err(Error::Server("no MDS admin listener".into()));
    };
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut last = String::from("no answer");
    while Instant::now() < deadline {
        if let Some(v) =
            http_get(a, "/api/v1/status").and_then(|b| serde_json::from_str::<Value>(b.trim()).ok())
        {
            let shards = v["mds"]["metadata"]["shards"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let led = shards.iter().filter(|s| s["leader"].is_u64()).count();
            if !shards.is_empty() && led == shards.len() {
                return Ok((t0.elapsed().as_secs_f64(), shards.len()));
            }
            last = format!("{led} of {} shards have a leader", shards.len());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(Error::Server(format!(
        "not every shard had a leader after 180 s ({last})"
    )))
}

struct Setup {
    load: PathBuf,
    cfs: Option<PathBuf>,
    seconds: u64,
    tasks: u32,
    dir_per_task: bool,
    allocs: bool,
}

fn start(c: &Config, s: &Setup) -> Result<Running> {
    let bin = || {
        s.cfs
            .as_deref()
            .ok_or_else(|| Error::Server("no cfs binary".into()))
    };
    // With --allocs every cfs process counts its heap allocations
    // (`cfs_process_allocations_total`, for the per-node table); `cluster up`'s nodes inherit
    // the variable.
    if s.allocs && c.kind != Kind::Ganesha {
        std::env::set_var("CFS_COUNT_ALLOCS", "1");
    } else {
        std::env::remove_var("CFS_COUNT_ALLOCS");
    }
    match c.kind {
        Kind::Ganesha => server::start(&ServerSpec::Ganesha, false),
        Kind::Cfs1 => {
            let b = bin()?;
            // The server inherits the environment: a new file system with this many shards.
            if let Some(n) = c.shards {
                std::env::set_var("CFS_SHARDS", n.to_string());
            }
            let r = server::start_cfs_with_args(b, &CFS_ADMIN);
            std::env::remove_var("CFS_SHARDS");
            r
        }
        Kind::Cfs3 | Kind::Cfs1Ds => {
            let n = c.shards.map(|n| n.to_string());
            let extra: Vec<&str> = match &n {
                Some(n) => vec!["--shards", n],
                None => vec![],
            };
            let mds = if c.kind == Kind::Cfs3 {
                server::CLUSTER_MDS
            } else {
                1
            };
            server::start_cfs_cluster_with(bin()?, mds, None, &extra)
        }
    }
}

/// The load generator against `srv`, sampling every process as each phase's line arrives.
fn run_load(srv: &Running, ps: &[Proc], label: &str, s: &Setup) -> (Vec<Phase>, Option<String>) {
    let mut cmd = Command::new(&s.load);
    cmd.arg("--server")
        .arg(format!("127.0.0.1:{}", srv.port))
        .arg("--export")
        .arg(&srv.export_v4)
        .args(["--phases", "meta", "--pnfs", "off"])
        .arg("--seconds")
        .arg(s.seconds.to_string())
        .arg("--tasks")
        .arg(s.tasks.to_string())
        .args(s.dir_per_task.then_some("--dir-per-task"))
        .arg("--label")
        .arg(label);
    let shown = format!("{cmd:?}");
    let mut child = match cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return (Vec::new(), Some(format!("spawn {shown}: {e}"))),
    };
    let mut err_pipe = child.stderr.take();
    let err = std::thread::spawn(move || {
        let mut t = String::new();
        if let Some(p) = err_pipe.as_mut() {
            let _ = p.read_to_string(&mut t);
        }
        t
    });
    // A stuck load is killed: create phase plus generous time for stat and unlink.
    let limit = Duration::from_secs(s.seconds.saturating_mul(6).saturating_add(90));
    let pid = child.id();
    let watchdog_done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let wd = watchdog_done.clone();
    let watchdog = std::thread::spawn(move || {
        let t0 = Instant::now();
        while !wd.load(std::sync::atomic::Ordering::Relaxed) {
            if t0.elapsed() > limit {
                procs::signal(pid, "KILL");
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    });
    let mut phases = Vec::new();
    let mut last = sample(ps);
    if let Some(out) = child.stdout.take() {
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            let Ok(v) = serde_json::from_str::<Value>(line.trim()) else {
                continue;
            };
            let now = sample(ps);
            let nodes = ps
                .iter()
                .zip(now.iter().zip(&last))
                .map(|(p, ((c1, v1, m1), (c0, v0, m0)))| NodePhase {
                    name: p.name.clone(),
                    cpu_s: c1.zip(*c0).map(|(a, b)| a - b),
                    vcsw: v1.zip(*v0).map(|(a, b)| a.saturating_sub(b) as f64),
                    counts: m1.zip(*m0).map(|(a, b)| a.minus(&b)),
                })
                .collect();
            last = now;
            let f = |k: &str| v.get(k).and_then(Value::as_f64);
            phases.push(Phase {
                bench: v["bench"].as_str().unwrap_or("?").to_owned(),
                ops: f("ops").unwrap_or(0.0),
                ops_per_s: f("ops_per_s").unwrap_or(0.0),
                lat_mean_us: f("lat_mean_us"),
                lat_p99_us: f("lat_p99_us"),
                nodes,
            });
        }
    }
    let status = child.wait();
    watchdog_done.store(true, std::sync::atomic::Ordering::Relaxed);
    let killed = watchdog.join().unwrap_or(false);
    let err = err.join().unwrap_or_default();
    let error = match status {
        _ if killed => Some(format!(
            "load killed after {} s: {}",
            limit.as_secs(),
            procs::tail(&err, 5)
        )),
        Ok(st) if st.success() => None,
        Ok(st) => Some(format!("load exited {st}: {}", procs::tail(&err, 5))),
        Err(e) => Some(format!("wait for load: {e}")),
    };
    (phases, error)
}

fn one_run(c: &Config, round: u32, s: &Setup) -> Run {
    let _ = procs::run(&mut Command::new("sync"));
    let mut r = Run {
        config: c.name.clone(),
        round,
        version: String::new(),
        serving_s: None,
        leaders_s: None,
        shards_seen: None,
        rss_start_kib: Vec::new(),
        rss_end_kib: Vec::new(),
        phases: Vec::new(),
        error: None,
    };
    let t0 = Instant::now();
    let mut srv = match start(c, s) {
        Ok(srv) => srv,
        Err(e) => {
            r.error = Some(format!("start: {e}"));
            return r;
        }
    };
    r.serving_s = Some(t0.elapsed().as_secs_f64());
    r.version = srv.version.clone();
    let ps = match procs_of(c, &srv, s.cfs.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            r.error = Some(format!("processes: {e}"));
            srv.stop();
            return r;
        }
    };
    if c.kind != Kind::Ganesha {
        match wait_leaders(&ps, t0) {
            Ok((t, n)) => {
                r.leaders_s = Some(t);
                r.shards_seen = Some(n);
            }
            Err(e) => r.error = Some(e.to_string()),
        }
    }
    let rss = |ps: &[Proc]| {
        ps.iter()
            .filter_map(|p| Some((p.name.clone(), rss_kib(p.pid)?)))
            .collect::<Vec<_>>()
    };
    r.rss_start_kib = rss(&ps);
    if r.error.is_none() {
        let (phases, error) = run_load(&srv, &ps, &format!("{}-r{round}", c.name), s);
        r.phases = phases;
        r.error = error;
        r.rss_end_kib = rss(&ps);
    }
    if r.error.is_none() {
        // The same phases with one request outstanding: what a change costs by itself, not
        // the queue in front of it (16 tasks keep the servers saturated, so their mean
        // latency is tasks / rate, and a latency ratio there is only the inverse rate ratio).
        let single = Setup {
            load: s.load.clone(),
            cfs: s.cfs.clone(),
            seconds: SINGLE_SECONDS,
            tasks: 1,
            dir_per_task: false,
            allocs: s.allocs,
        };
        let (phases, error) = run_load(&srv, &ps, &format!("{}-r{round}-1task", c.name), &single);
        r.phases.extend(phases.into_iter().map(|mut p| {
            p.bench = format!("{}{SINGLE}", p.bench);
            p
        }));
        r.error = error;
    }
    if !srv.alive() {
        let e = "a server process died during the run".to_string();
        r.error = Some(match r.error.take() {
            Some(x) => format!("{x}; {e}"),
            None => e,
        });
    }
    srv.stop();
    r
}

fn phase<'a>(r: &'a Run, bench: &str) -> Option<&'a Phase> {
    r.phases.iter().find(|p| p.bench == bench)
}

/// Sum over the MDS nodes (names starting with "mds") of `f`.
fn mds_sum(p: &Phase, f: impl Fn(&NodePhase) -> Option<f64>) -> Option<f64> {
    p.nodes
        .iter()
        .filter(|n| n.name.starts_with("mds") || n.name == "ganesha")
        .map(f)
        .sum::<Option<f64>>()
}

/// Largest over the MDS nodes of `f` (the busiest node: the one leading the shard in use).
fn mds_max(p: &Phase, f: impl Fn(&NodePhase) -> Option<f64>) -> Option<f64> {
    p.nodes
        .iter()
        .filter(|n| n.name.starts_with("mds") || n.name == "ganesha")
        .filter_map(f)
        .reduce(f64::max)
}

struct Measure {
    title: &'static str,
    higher: bool,
    get: fn(&Run) -> Option<f64>,
}

fn per_op(r: &Run, bench: &str, f: impl Fn(&Phase) -> Option<f64>) -> Option<f64> {
    let p = phase(r, bench)?;
    (p.ops > 0.0).then(|| f(p).map(|x| x / p.ops)).flatten()
}

const BENCHES: [&str; 3] = ["create", "stat", "unlink"];
/// Suffix of the phases run with one task (`one_run`).
const SINGLE: &str = "@1";
/// Seconds of creates of the one-task run.
const SINGLE_SECONDS: u64 = 2;

fn measures() -> Vec<Measure> {
    vec![
        Measure {
            title: "create/s",
            higher: true,
            get: |r| phase(r, "create").map(|p| p.ops_per_s),
        },
        Measure {
            title: "create mean µs",
            higher: false,
            get: |r| phase(r, "create")?.lat_mean_us,
        },
        Measure {
            title: "create p99 µs",
            higher: false,
            get: |r| phase(r, "create")?.lat_p99_us,
        },
        Measure {
            title: "create mean µs, one task",
            higher: false,
            get: |r| phase(r, "create@1")?.lat_mean_us,
        },
        Measure {
            title: "unlink mean µs, one task",
            higher: false,
            get: |r| phase(r, "unlink@1")?.lat_mean_us,
        },
        Measure {
            title: "stat/s",
            higher: true,
            get: |r| phase(r, "stat").map(|p| p.ops_per_s),
        },
        Measure {
            title: "stat mean µs",
            higher: false,
            get: |r| phase(r, "stat")?.lat_mean_us,
        },
        Measure {
            title: "stat p99 µs",
            higher: false,
            get: |r| phase(r, "stat")?.lat_p99_us,
        },
        Measure {
            title: "unlink/s",
            higher: true,
            get: |r| phase(r, "unlink").map(|p| p.ops_per_s),
        },
        Measure {
            title: "unlink mean µs",
            higher: false,
            get: |r| phase(r, "unlink")?.lat_mean_us,
        },
        Measure {
            title: "unlink p99 µs",
            higher: false,
            get: |r| phase(r, "unlink")?.lat_p99_us,
        },
        Measure {
            title: "server CPU µs per create (all MDS nodes)",
            higher: false,
            get: |r| per_op(r, "create", |p| mds_sum(p, |n| n.cpu_s)).map(|s| s * 1e6),
        },
        Measure {
            title: "server CPU µs per unlink (all MDS nodes)",
            higher: false,
            get: |r| per_op(r, "unlink", |p| mds_sum(p, |n| n.cpu_s)).map(|s| s * 1e6),
        },
        Measure {
            title: "start to serving s",
            higher: false,
            get: |r| r.serving_s,
        },
        Measure {
            title: "start to every shard led s",
            higher: false,
            get: |r| r.leaders_s,
        },
        Measure {
            title: "RSS after start MiB (sum of MDS nodes)",
            higher: false,
            get: |r| rss_sum(&r.rss_start_kib),
        },
        Measure {
            title: "RSS after load MiB (sum of MDS nodes)",
            higher: false,
            get: |r| rss_sum(&r.rss_end_kib),
        },
    ]
}

fn rss_sum(v: &[(String, u64)]) -> Option<f64> {
    let s: u64 = v
        .iter()
        .filter(|(n, _)| n.starts_with("mds") || n == "ganesha")
        .map(|(_, k)| *k)
        .sum();
    (s > 0).then(|| s as f64 / 1024.0)
}

fn values(
    runs: &[Run],
    config: &str,
    rounds: u32,
    get: fn(&Run) -> Option<f64>,
) -> Vec<Option<f64>> {
    (1..=rounds)
        .map(|r| {
            runs.iter()
                .find(|x| x.config == config && x.round == r && x.error.is_none())
                .and_then(get)
        })
        .collect()
}

fn mean(v: &[Option<f64>]) -> Option<f64> {
    let x: Vec<f64> = v.iter().flatten().copied().collect();
    (!x.is_empty()).then(|| x.iter().sum::<f64>() / x.len() as f64)
}

/// The main table: a row per measure, a column per configuration (rounds " / "), then each
/// cfs kind against ganesha and, per shard count, 3 replicas against 1.
fn main_table(cfgs: &[Config], runs: &[Run], rounds: u32, shards: &[u16]) -> String {
    let mut head = vec!["measure".to_string()];
    head.extend(cfgs.iter().map(|c| c.name.clone()));
    let base = "ganesha";
    let others: Vec<&Config> = cfgs.iter().filter(|c| c.kind != Kind::Ganesha).collect();
    head.extend(others.iter().map(|c| format!("{}/{base}", c.name)));
    head.extend(shards.iter().map(|n| format!("3r/1r ({n})")));
    let mut out = format!(
        "| {} |\n|---|{}\n",
        head.join(" | "),
        "---:|".repeat(head.len() - 1)
    );
    for m in measures() {
        let arrow = if m.higher { "↑" } else { "↓" };
        let mut cells = vec![format!("{} {arrow}", m.title)];
        for c in cfgs {
            let v = values(runs, &c.name, rounds, m.get);
            cells.push(
                v.iter()
                    .map(|x| fmt_value(*x))
                    .collect::<Vec<_>>()
                    .join(" / "),
            );
        }
        let g = values(runs, base, rounds, m.get);
        for c in &others {
            let v = values(runs, &c.name, rounds, m.get);
            cells.push(fmt_ratio(ratio_range(&g, &v)));
        }
        for n in shards {
            let one = values(runs, &format!("cfs-1r/{n}"), rounds, m.get);
            let three = values(runs, &format!("cfs-3r/{n}"), rounds, m.get);
            cells.push(fmt_ratio(ratio_range(&one, &three)));
        }
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out
}

/// Per node and phase of each cfs configuration (round means): CPU µs, log fsyncs, log
/// commands and NFS operations per client operation, and the mean fsync time.
fn node_table(cfgs: &[Config], runs: &[Run]) -> String {
    let mut out = String::from(
        "| config | phase | node | CPU µs/op | vol. switches/op | allocations/op | fsyncs/op | log commands/op | NFS ops/op | mean fsync ms | checkpoints in the phase | checkpoint s in the phase |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for c in cfgs.iter().filter(|c| c.kind != Kind::Ganesha) {
        let rs: Vec<&Run> = runs
            .iter()
            .filter(|r| r.config == c.name && r.error.is_none())
            .collect();
        let Some(first) = rs.first() else { continue };
        for b in BENCHES {
            let Some(p0) = phase(first, b) else { continue };
            // data servers take no part in these operations (their CPU stays ~0: in the JSON)
            for (i, n) in p0
                .nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| n.counts.is_some())
            {
                let avg = |f: &dyn Fn(&Phase, &NodePhase) -> Option<f64>| {
                    mean(
                        &rs.iter()
                            .map(|r| {
                                let p = phase(r, b)?;
                                let node = p.nodes.get(i)?;
                                if p.ops > 0.0 {
                                    f(p, node).map(|x| x / p.ops)
                                } else {
                                    None
                                }
                            })
                            .collect::<Vec<_>>(),
                    )
                };
                let cpu = avg(&|_, n| n.cpu_s).map(|s| s * 1e6);
                let csw = avg(&|_, n| n.vcsw);
                let allocs = avg(&|_, n| n.counts.and_then(|c| c.allocs));
                let fs = avg(&|_, n| n.counts.map(|c| c.fsyncs));
                let cmds = avg(&|_, n| n.counts.map(|c| c.commands));
                let ops = avg(&|_, n| n.counts.map(|c| c.v4_ops));
                let fsync_ms = mean(
                    &rs.iter()
                        .map(|r| {
                            let c = phase(r, b)?.nodes.get(i)?.counts?;
                            (c.fsyncs > 0.0).then(|| c.fsync_s / c.fsyncs * 1e3)
                        })
                        .collect::<Vec<_>>(),
                );
                let per_phase = |f: &dyn Fn(&NodeCounts) -> f64| {
                    mean(
                        &rs.iter()
                            .map(|r| phase(r, b)?.nodes.get(i)?.counts.map(|c| f(&c)))
                            .collect::<Vec<_>>(),
                    )
                };
                out.push_str(&format!(
                    "| {} | {b} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                    c.name,
                    n.name,
                    fmt_value(cpu),
                    fmt_value(csw),
                    fmt_value(allocs),
                    fmt_value(fs),
                    fmt_value(cmds),
                    fmt_value(ops),
                    fmt_value(fsync_ms),
                    fmt_value(per_phase(&|c| c.checkpoints)),
                    fmt_value(per_phase(&|c| c.checkpoint_s))
                ));
            }
        }
    }
    out
}

/// RSS of every process after start and after the load (round means, MiB).
fn rss_table(cfgs: &[Config], runs: &[Run]) -> String {
    let mut out = String::from(
        "| config | process | RSS after start MiB | RSS after load MiB |\n|---|---|---:|---:|\n",
    );
    for c in cfgs {
        let rs: Vec<&Run> = runs
            .iter()
            .filter(|r| r.config == c.name && r.error.is_none())
            .collect();
        let Some(first) = rs.first() else { continue };
        for (name, _) in &first.rss_start_kib {
            let m = |f: &dyn Fn(&Run) -> &Vec<(String, u64)>| {
                mean(
                    &rs.iter()
                        .map(|r| {
                            f(r).iter()
                                .find(|(n, _)| n == name)
                                .map(|(_, k)| *k as f64 / 1024.0)
                        })
                        .collect::<Vec<_>>(),
                )
            };
            out.push_str(&format!(
                "| {} | {name} | {} | {} |\n",
                c.name,
                fmt_value(m(&|r| &r.rss_start_kib)),
                fmt_value(m(&|r| &r.rss_end_kib))
            ));
        }
    }
    out
}

/// Issue 12's targets and the separate-machines estimate, from round means.
fn verdicts(runs: &[Run], rounds: u32, shards: &[u16], rtt_us: f64, cpus: usize) -> String {
    let mut out = String::new();
    let get = |cfg: &str, f: fn(&Run) -> Option<f64>| mean(&values(runs, cfg, rounds, f));
    let g = |b: &'static str| -> fn(&Run) -> Option<f64> {
        match b {
            "create" => |r| phase(r, "create").map(|p| p.ops_per_s),
            "stat" => |r| phase(r, "stat").map(|p| p.ops_per_s),
            _ => |r| phase(r, "unlink").map(|p| p.ops_per_s),
        }
    };
    let lat = |b: &'static str| -> fn(&Run) -> Option<f64> {
        match b {
            "create" => |r| phase(r, "create")?.lat_mean_us,
            "stat" => |r| phase(r, "stat")?.lat_mean_us,
            _ => |r| phase(r, "unlink")?.lat_mean_us,
        }
    };
    for n in shards {
        let (one, three) = (format!("cfs-1r/{n}"), format!("cfs-3r/{n}"));
        let single: fn(&Run) -> Option<f64> = |r| phase(r, "create@1")?.lat_mean_us;
        for (how, f) in [
            ("one task (what replication adds)", single),
            ("tasks as above (saturated: tasks / rate)", lat("create")),
        ] {
            let l1 = get(&one, f);
            let l3 = get(&three, f);
            let ratio = l1.zip(l3).map(|(a, b)| b / a);
            out.push_str(&format!(
                "- {n} shards, {how}: 3-replica create mean latency {} µs vs 1-replica {} µs: {}× (target ≤ 2×: {})\n",
                fmt_value(l3),
                fmt_value(l1),
                fmt_value(ratio),
                match ratio {
                    Some(x) if x <= 2.0 => "met",
                    Some(_) => "NOT met",
                    None => "n/a",
                }
            ));
        }
        for b in BENCHES {
            let gv = get("ganesha", g(b));
            let tv = get(&three, g(b));
            let r = gv.zip(tv).map(|(a, b)| b / a);
            out.push_str(&format!(
                "- {n} shards: 3-replica {b}/s {} vs ganesha {}: {}× (target ≥ 1×: {})\n",
                fmt_value(tv),
                fmt_value(gv),
                fmt_value(r),
                match r {
                    Some(x) if x >= 1.0 => "met",
                    Some(_) => "NOT met",
                    None => "n/a",
                }
            ));
        }
    }
    // Separate machines: each MDS node on a machine of its own with this machine's CPUs, the
    // client elsewhere. One directory lives on one shard, so its operations are bound by that
    // shard's leader (the busiest node here); operations spread over many directories (and so
    // over every node's leaders) by the sum of the nodes' CPU per operation.
    let Some(&n) = shards.iter().max() else {
        return out;
    };
    let three = format!("cfs-3r/{n}");
    let one = format!("cfs-1r/{n}");
    out.push_str(&format!(
        "\nEstimate for 3 MDS nodes on separate machines ({n} shards; {cpus} CPUs each, as here; network round trip {rtt_us} µs assumed):\n\n| op | busiest node CPU µs/op | all nodes CPU µs/op | one directory (one leader) ops/s | many directories ops/s | fsyncs/op on the leader | mean fsync ms | est. latency µs (1-replica here + RTT + a follower fsync) |\n|---|---:|---:|---:|---:|---:|---:|---:|\n"
    ));
    for b in BENCHES {
        let rs: Vec<&Run> = runs
            .iter()
            .filter(|r| r.config == three && r.error.is_none())
            .collect();
        let avg = |f: &dyn Fn(&Phase) -> Option<f64>| {
            mean(
                &rs.iter()
                    .map(|r| {
                        let p = phase(r, b)?;
                        (p.ops > 0.0).then(|| f(p).map(|x| x / p.ops)).flatten()
                    })
                    .collect::<Vec<_>>(),
            )
        };
        let busiest = avg(&|p| mds_max(p, |n| n.cpu_s)).map(|s| s * 1e6);
        let all = avg(&|p| mds_sum(p, |n| n.cpu_s)).map(|s| s * 1e6);
        let leader_fsyncs = avg(&|p| mds_max(p, |n| n.counts.map(|c| c.fsyncs)));
        let fsync_ms = mean(
            &rs.iter()
                .map(|r| {
                    let p = phase(r, b)?;
                    let (s, c) = p
                        .nodes
                        .iter()
                        .filter_map(|n| n.counts)
                        .fold((0.0, 0.0), |(s, c), x| (s + x.fsync_s, c + x.fsyncs));
                    (c > 0.0).then(|| s / c * 1e3)
                })
                .collect::<Vec<_>>(),
        );
        let cores = cpus as f64;
        let one_dir = busiest.filter(|x| *x > 0.0).map(|x| cores * 1e6 / x);
        let many = all.filter(|x| *x > 0.0).map(|x| 3.0 * cores * 1e6 / x);
        let l1 = get(&one, lat(b));
        // a read (stat) is answered by the leader alone; a change waits for a follower's
        // append: one round trip and its fsync after the leader's own
        let est = l1.map(|l| {
            if b == "stat" {
                l
            } else {
                l + rtt_us + fsync_ms.unwrap_or(0.0) * 1e3
            }
        });
        out.push_str(&format!(
            "| {b} | {} | {} | {} | {} | {} | {} | {} |\n",
            fmt_value(busiest),
            fmt_value(all),
            fmt_value(one_dir),
            fmt_value(many),
            fmt_value(leader_fsyncs),
            fmt_value(fsync_ms),
            fmt_value(est)
        ));
    }
    out
}

#[derive(Serialize)]
struct JsonReport<'a> {
    command: Vec<String>,
    seconds: u64,
    rounds: u32,
    tasks: u32,
    host_cpus: usize,
    configs: &'a [Config],
    runs: &'a [Run],
    markdown: &'a str,
}

pub fn metabench(a: &MetaBenchArgs) -> Result<ExitCode> {
    if a.rounds == 0 || a.seconds == 0 || a.shards.is_empty() || a.shards.contains(&0) {
        return Err(Error::Usage(
            "metabench: --rounds, --seconds and every --shards must be at least 1".into(),
        ));
    }
    if !procs::have("ganesha.nfsd") {
        return Err(Error::Server(
            "ganesha.nfsd not installed; run `cargo run -p conformance -- setup`".into(),
        ));
    }
    let mut shards = a.shards.clone();
    shards.dedup();
    let cfgs = configs(&shards, a.with_ds_1r);
    let (cfs_src, debug) = pick_cfs_binary()?;
    if debug {
        eprintln!(
            "WARNING: {} is a debug build: its numbers are not representative",
            cfs_src.display()
        );
    }
    let mut pinned = Pinned(Vec::new());
    let setup = Setup {
        load: pinned.copy(&load_binary(false)?, "load")?,
        cfs: Some(pinned.copy(&cfs_src, "cfs")?),
        seconds: a.seconds,
        tasks: a.tasks.max(1),
        dir_per_task: a.dir_per_task,
        allocs: a.allocs,
    };
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    eprintln!(
        "metabench: {} × {} round(s); {} s of creates, then stat and unlink of every file, {} tasks",
        cfgs.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", "),
        a.rounds,
        a.seconds,
        setup.tasks
    );
    let mut runs = Vec::new();
    for round in 1..=a.rounds {
        let order: Vec<&Config> = if round % 2 == 1 {
            cfgs.iter().collect()
        } else {
            cfgs.iter().rev().collect()
        };
        for c in order {
            let r = one_run(c, round, &setup);
            let line = BENCHES
                .iter()
                .filter_map(|b| phase(&r, b))
                .map(|p| {
                    format!(
                        "{} {}/s (mean {} µs, p99 {} µs)",
                        p.bench,
                        fmt_value(Some(p.ops_per_s)),
                        fmt_value(p.lat_mean_us),
                        fmt_value(p.lat_p99_us)
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            eprintln!(
                "[round {round}/{}] {} ({}): serving {} s, every shard led {} s; {line}{}",
                a.rounds,
                c.name,
                r.version,
                fmt_value(r.serving_s),
                fmt_value(r.leaders_s),
                r.error
                    .as_deref()
                    .map(|e| format!("\n  ERROR: {e}"))
                    .unwrap_or_default()
            );
            runs.push(r);
        }
    }
    let table = main_table(&cfgs, &runs, a.rounds, &shards);
    let nodes = node_table(&cfgs, &runs);
    let rss = rss_table(&cfgs, &runs);
    let verdict = verdicts(&runs, a.rounds, &shards, a.rtt_us, cpus);
    let md = format!(
        "metabench (host loopback; one Rust NFSv4.1 client, {} tasks {}; {} s of creates, then stat and unlink of each file; {} interleaved round(s); {cpus} CPUs shared by the client and every server process; cfs-1r/N = `cfs server`, cfs-3r/N = `cfs cluster up --mds 3 --ds 3`, cfs-c1r/N (with --with-ds-1r) = `cfs cluster up --mds 1 --ds 3`; N shards)\n\n{table}\n↑ higher is better, ↓ lower is better; values per round (r1 / r2 ...); ratios per round, min–max.\n\nPer node and phase (round means; per client operation):\n\n{nodes}\nMemory (round means):\n\n{rss}\nTargets (issue 12), round means:\n\n{verdict}",
        setup.tasks,
        if a.dir_per_task {
            "each in a directory of its own"
        } else {
            "in one directory"
        },
        a.seconds,
        a.rounds
    );
    println!("\n{md}");
    let failed: Vec<&Run> = runs.iter().filter(|r| r.error.is_some()).collect();
    for r in &failed {
        println!(
            "round {} {}: {}",
            r.round,
            r.config,
            r.error.as_deref().unwrap_or("")
        );
    }
    if let Some(path) = &a.json {
        let rep = JsonReport {
            command: std::env::args().collect(),
            seconds: a.seconds,
            rounds: a.rounds,
            tasks: setup.tasks,
            host_cpus: cpus,
            configs: &cfgs,
            runs: &runs,
            markdown: &md,
        };
        if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(d);
        }
        std::fs::write(path, serde_json::to_string_pretty(&rep)?)
            .ctx(|| format!("write {path:?}"))?;
        println!("json: {}", path.display());
    }
    drop(pinned);
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_counts_read_the_log_and_fsync_metrics() {
        let page = "# HELP x\ncfs_mds_log_commands_total 10\ncfs_mds_log_batches_total 4\ncfs_mds_log_fsync_duration_seconds_count 3\ncfs_mds_log_fsync_duration_seconds_sum 0.006\ncfs_nfs4_operation_duration_seconds_count{op=\"OPEN\"} 5\ncfs_nfs4_operation_duration_seconds_count{op=\"CLOSE\"} 5\n";
        let c = NodeCounts::parse(page);
        assert_eq!(
            (c.commands, c.batches, c.fsyncs, c.v4_ops),
            (10.0, 4.0, 3.0, 10.0)
        );
        assert!((c.fsync_s - 0.006).abs() < 1e-12);
        let d = c.minus(&NodeCounts {
            commands: 4.0,
            ..NodeCounts::default()
        });
        assert_eq!(d.commands, 6.0);
        // No allocation counter on the page: none, not zero.
        assert_eq!((c.allocs, d.allocs), (None, None));
        let a = NodeCounts::parse("cfs_process_allocations_total 900\n");
        let b = NodeCounts::parse("cfs_process_allocations_total 100\n");
        assert_eq!(a.minus(&b).allocs, Some(800.0));
    }

    #[test]
    fn the_admin_listener_is_read_from_its_section() {
        let conf = "data = \"/x\"\nlisten = \"127.0.0.1:12000\"\n[admin]\nlisten = \"127.0.0.1:13000\"\n[cluster]\nsecret_file = \"/s\"\n";
        assert_eq!(
            configured_admin(conf),
            Some("127.0.0.1:13000".parse().unwrap())
        );
        assert_eq!(
            configured_admin("listen = \"127.0.0.1:1\"\n[admin]\nlisten = \"127.0.0.1:0\"\n"),
            None
        );
        assert_eq!(configured_admin("listen = \"127.0.0.1:1\"\n"), None);
    }

    #[test]
    fn every_shard_count_has_both_kinds() {
        let c = configs(&[16, 256], false);
        let names: Vec<&str> = c.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "ganesha",
                "cfs-1r/16",
                "cfs-3r/16",
                "cfs-1r/256",
                "cfs-3r/256"
            ]
        );
    }
}
