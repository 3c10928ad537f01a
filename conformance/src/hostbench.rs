//! `hostbench`: host-side load (the project's own Rust NFSv4.1 client, `client/examples/load.rs`;
//! with `--v3`, the NFSv3 generator `gateway-v3/examples/load3.rs` against ganesha's v3 and the
//! cfs gateway) against ganesha and cfs in the same run. Rounds are interleaved, the order
//! reversed every other round (ganesha, cfs, cfs, ganesha, ...), every server freshly started
//! (fresh state directory) per round and stopped after it, so slow drift of the machine hits
//! both alike. Prints a Markdown table: each server's value per round
//! and, per other server, the range of its per-round ratio to the first server.
//!
//! Everything runs on host loopback; the load generator shares the CPUs with the server.

use crate::error::{Error, IoContext, Result};
use crate::metrics_cost::{self, Admin, Counts};
use crate::paths;
use crate::procs;
use crate::server::{self, Running, ServerSpec};
use serde::Serialize;
use serde_json::Value;
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

#[derive(clap::Args, Clone, Debug)]
pub struct HostBenchArgs {
    /// ganesha | cfs | cfs-nometrics (cfs with CFS_METRICS=off, to measure what the metrics
    /// cost) | cfs-b (the cfs binary in CFS_B_BIN: an A/B of two builds of cfs, e.g. two
    /// profiles) (repeatable, in this order within every round; ratios are against the first)
    #[arg(long, default_values = ["ganesha", "cfs"])]
    pub server: Vec<String>,
    /// seconds per timed phase (sequential write, 4 KiB random read, 4 KiB random write,
    /// create); sequential read, stat and unlink go over what those produced
    #[arg(long, default_value_t = 8)]
    pub seconds: u64,
    /// rounds; each round runs every server once, freshly started
    #[arg(long, default_value_t = 2)]
    pub rounds: u32,
    /// parallel tasks of the create/stat/unlink phases
    #[arg(long, default_value_t = 16)]
    pub tasks: u32,
    /// outstanding 1 MiB reads/writes of the sequential phases
    #[arg(long, default_value_t = 8)]
    pub depth: u32,
    /// write every raw JSON line of the load generator plus the summary here
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// NFSv3: servers `ganesha` (its v3, with rpcbind) and `cfs-gateway` (the embedded default's
    /// gateway), driven by `gateway-v3/examples/load3` inside a private network namespace
    #[arg(long)]
    pub v3: bool,
}

/// Which way is better for a measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    Higher,
    Lower,
}

/// One number derived from the load generator's lines of one run.
pub struct Measure {
    pub key: &'static str,
    pub title: &'static str,
    pub better: Better,
    pub get: fn(&[Value]) -> Option<f64>,
}

/// Field `name` of the line of bench `bench`.
fn field(lines: &[Value], bench: &str, name: &str) -> Option<f64> {
    lines
        .iter()
        .find(|l| l.get("bench").and_then(Value::as_str) == Some(bench))?
        .get(name)?
        .as_f64()
}

/// Server CPU seconds of `bench` per unit of `amount_field` (scaled by `per`); None when the
/// load generator could not read the server's CPU time or nothing was moved.
fn cpu_per(lines: &[Value], bench: &str, amount_field: &str, per: f64) -> Option<f64> {
    let cpu = field(lines, bench, "server_cpu_s")?;
    let amount = field(lines, bench, amount_field)?;
    (amount > 0.0).then(|| cpu / (amount / per))
}

/// The server's voluntary context switches (all its threads) per operation of `bench`.
fn vcsw_per_op(lines: &[Value], bench: &str) -> Option<f64> {
    let n = field(lines, bench, "server_vcsw")?;
    let ops = field(lines, bench, "ops")?;
    (ops > 0.0).then(|| n / ops)
}

const GIB: f64 = (1u64 << 30) as f64;

pub const MEASURES: [Measure; 14] = [
    Measure {
        key: "seq_write_mib_s",
        title: "seq write MiB/s",
        better: Better::Higher,
        get: |l| field(l, "seq_write", "mib_per_s"),
    },
    Measure {
        key: "seq_read_mib_s",
        title: "seq read MiB/s",
        better: Better::Higher,
        get: |l| field(l, "seq_read", "mib_per_s"),
    },
    Measure {
        key: "rand_read_per_s",
        title: "4 KiB random read/s",
        better: Better::Higher,
        get: |l| field(l, "rand_read", "ops_per_s"),
    },
    Measure {
        key: "rand_write_per_s",
        title: "4 KiB random write/s",
        better: Better::Higher,
        get: |l| field(l, "rand_write", "ops_per_s"),
    },
    Measure {
        key: "create_per_s",
        title: "create/s",
        better: Better::Higher,
        get: |l| field(l, "create", "ops_per_s"),
    },
    Measure {
        key: "stat_per_s",
        title: "stat/s",
        better: Better::Higher,
        get: |l| field(l, "stat", "ops_per_s"),
    },
    Measure {
        key: "unlink_per_s",
        title: "unlink/s",
        better: Better::Higher,
        get: |l| field(l, "unlink", "ops_per_s"),
    },
    Measure {
        key: "cpu_s_per_gib_written",
        title: "server CPU s per GiB written",
        better: Better::Lower,
        get: |l| cpu_per(l, "seq_write", "bytes", GIB),
    },
    Measure {
        key: "cpu_s_per_gib_read",
        title: "server CPU s per GiB read",
        better: Better::Lower,
        get: |l| cpu_per(l, "seq_read", "bytes", GIB),
    },
    Measure {
        key: "cpu_us_per_rand_read",
        title: "server CPU µs per 4 KiB read",
        better: Better::Lower,
        // seconds per op × 10⁶
        get: |l| cpu_per(l, "rand_read", "ops", 1.0).map(|s| s * 1e6),
    },
    Measure {
        key: "vcsw_per_rand_read",
        title: "server voluntary switches per 4 KiB read",
        better: Better::Lower,
        // issue 47: each is a wake-up or a hand-off between threads
        get: |l| vcsw_per_op(l, "rand_read"),
    },
    Measure {
        key: "cpu_us_per_rand_write",
        title: "server CPU µs per 4 KiB write",
        better: Better::Lower,
        get: |l| cpu_per(l, "rand_write", "ops", 1.0).map(|s| s * 1e6),
    },
    Measure {
        key: "cpu_ms_per_create",
        title: "server CPU ms per create",
        better: Better::Lower,
        // seconds per op × 1000
        get: |l| cpu_per(l, "create", "ops", 1.0).map(|s| s * 1000.0),
    },
    Measure {
        key: "cpu_ms_per_unlink",
        title: "server CPU ms per unlink",
        better: Better::Lower,
        get: |l| cpu_per(l, "unlink", "ops", 1.0).map(|s| s * 1000.0),
    },
];

/// One server in one round.
#[derive(Clone, Debug, Serialize)]
pub struct RunResult {
    pub server: String,
    pub round: u32,
    pub version: String,
    pub pid: Option<u32>,
    pub wall_s: f64,
    /// the load generator's JSON lines, as printed
    pub lines: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// cfs: the server's hook counters moved between one load line and the one before (the
    /// start for the first), scraped from its /metrics; one entry per line
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hook_deltas: Vec<Option<Counts>>,
    /// cfs: why its /metrics could not be scraped
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hook_error: Option<String>,
}

/// One row of the summary: a measure, every server's per-round values, and the ratio range of
/// each further server against the first.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub key: &'static str,
    pub title: &'static str,
    pub better: Better,
    /// (server, value per round; None where the round failed or the number is unavailable)
    pub values: Vec<(String, Vec<Option<f64>>)>,
    /// (server, [min, max] of its per-round ratio to the first server)
    pub ratios: Vec<(String, Option<[f64; 2]>)>,
}

/// Min and max of other[r] / base[r] over the rounds where both exist (and base is not 0).
/// Rounds are matched pairwise: round r of one server ran right next to round r of the other.
pub fn ratio_range(base: &[Option<f64>], other: &[Option<f64>]) -> Option<[f64; 2]> {
    base.iter()
        .zip(other)
        .filter_map(|(b, o)| match (b, o) {
            (Some(b), Some(o)) if *b > 0.0 && b.is_finite() && o.is_finite() => Some(o / b),
            _ => None,
        })
        .fold(None, |acc, r| match acc {
            None => Some([r, r]),
            Some([lo, hi]) => Some([lo.min(r), hi.max(r)]),
        })
}

/// Values of `servers` (in order, one entry per round) from the runs.
pub fn summarize(servers: &[String], rounds: u32, runs: &[RunResult]) -> Vec<Row> {
    MEASURES
        .iter()
        .map(|m| {
            let values: Vec<(String, Vec<Option<f64>>)> = servers
                .iter()
                .map(|s| {
                    let per_round = (1..=rounds)
                        .map(|r| {
                            runs.iter()
                                .find(|x| &x.server == s && x.round == r)
                                .and_then(|x| (m.get)(&x.lines))
                        })
                        .collect();
                    (s.clone(), per_round)
                })
                .collect();
            let ratios = match values.split_first() {
                Some(((_, base), rest)) => rest
                    .iter()
                    .map(|(s, v)| (s.clone(), ratio_range(base, v)))
                    .collect(),
                None => Vec::new(),
            };
            Row {
                key: m.key,
                title: m.title,
                better: m.better,
                values,
                ratios,
            }
        })
        .collect()
}

/// Three significant digits or so, no exponent: 1234, 123, 12.3, 1.23, 0.123, 0.0123.
pub fn fmt_value(v: Option<f64>) -> String {
    let Some(v) = v.filter(|v| v.is_finite()) else {
        return "n/a".into();
    };
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else if a >= 0.1 || a == 0.0 {
        format!("{v:.3}")
    } else {
        format!("{v:.4}")
    }
}

/// "0.84–0.87×", or "0.85×" when every round gave the same (two-decimal) ratio.
pub fn fmt_ratio(r: Option<[f64; 2]>) -> String {
    match r {
        None => "n/a".into(),
        Some([lo, hi]) => {
            let (a, b) = (format!("{lo:.2}"), format!("{hi:.2}"));
            if a == b {
                format!("{a}×")
            } else {
                format!("{a}–{b}×")
            }
        }
    }
}

/// The summary as a Markdown table: one row per measure, a column per server (rounds separated
/// by " / "), and a ratio column per further server.
pub fn markdown(rows: &[Row], rounds: u32) -> String {
    let Some(first) = rows.first() else {
        return String::new();
    };
    let round_hint = if rounds > 1 {
        format!(
            " ({})",
            (1..=rounds)
                .map(|r| format!("r{r}"))
                .collect::<Vec<_>>()
                .join(" / ")
        )
    } else {
        String::new()
    };
    let base = first.values.first().map(|(s, _)| s.as_str()).unwrap_or("");
    let mut head = vec!["measure".to_string()];
    head.extend(first.values.iter().map(|(s, _)| format!("{s}{round_hint}")));
    head.extend(first.ratios.iter().map(|(s, _)| format!("{s}/{base}")));
    let mut out = format!("| {} |\n", head.join(" | "));
    out.push_str(&format!(
        "|---|{}\n",
        "---:|".repeat(head.len().saturating_sub(1))
    ));
    for row in rows {
        let arrow = match row.better {
            Better::Higher => "↑",
            Better::Lower => "↓",
        };
        let mut cells = vec![format!("{} {arrow}", row.title)];
        cells.extend(row.values.iter().map(|(_, v)| {
            v.iter()
                .map(|x| fmt_value(*x))
                .collect::<Vec<_>>()
                .join(" / ")
        }));
        cells.extend(row.ratios.iter().map(|(_, r)| fmt_ratio(*r)));
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out
}

/// The cfs binary for benchmarking: CFS_BIN, else target/release/cfs, else (with a warning) the
/// newest build. Returns the path and whether it is a debug build.
pub(crate) fn pick_cfs_binary() -> Result<(PathBuf, bool)> {
    if std::env::var_os("CFS_BIN").is_none() {
        let rel = paths::target_dir().join("release").join("cfs");
        if rel.is_file() {
            return Ok((std::fs::canonicalize(&rel).unwrap_or(rel), false));
        }
    }
    let b = server::cfs_binary()?;
    let b = std::fs::canonicalize(&b).unwrap_or(b);
    let debug = b
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|n| n == "debug");
    Ok((b, debug))
}

/// LOAD_BIN, else target/release/examples/load (load3 for v3).
pub(crate) fn load_binary(v3: bool) -> Result<PathBuf> {
    let b = match std::env::var_os("LOAD_BIN") {
        Some(b) => PathBuf::from(b),
        None => paths::target_dir()
            .join("release")
            .join("examples")
            .join(if v3 { "load3" } else { "load" }),
    };
    if b.is_file() {
        Ok(std::fs::canonicalize(&b).unwrap_or(b))
    } else {
        Err(Error::Usage(format!(
            "the load generator was not found at {b:?}; build it with `cargo build --release -p cfs -p client --example load` (v3: `-p gateway-v3 --example load3`) (or set LOAD_BIN)"
        )))
    }
}

/// Private copies of the binaries, so a rebuild during the run cannot mix builds across rounds;
/// removed on drop.
pub(crate) struct Pinned(pub(crate) Vec<PathBuf>);

impl Pinned {
    pub(crate) fn copy(&mut self, src: &Path, name: &str) -> Result<PathBuf> {
        let d = paths::cache_dir().join("bin");
        std::fs::create_dir_all(&d).ctx(|| format!("create {d:?}"))?;
        sweep_stale_copies(&d, name);
        let dst = d.join(format!("{name}-hostbench-{}", std::process::id()));
        std::fs::copy(src, &dst).ctx(|| format!("copy {src:?} to {dst:?}"))?;
        self.0.push(dst.clone());
        Ok(dst)
    }
}

/// Copies `NAME-hostbench-PID` left by a hostbench that was interrupted (PID no longer running).
fn sweep_stale_copies(dir: &Path, name: &str) {
    let prefix = format!("{name}-hostbench-");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let file = e.file_name();
        let pid = file
            .to_str()
            .and_then(|f| f.strip_prefix(&prefix))
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

struct Setup {
    load: PathBuf,
    cfs: Option<PathBuf>,
    /// `cfs-b`'s binary (CFS_B_BIN)
    cfs_b: Option<PathBuf>,
    seconds: u64,
    tasks: u32,
    depth: u32,
    v3: bool,
}

/// cfs servers get an admin listener on a free port, scraped at the end of every load phase
/// (`metrics_cost`); with and without metrics alike, so both pay for the scrapes.
pub(crate) const CFS_ADMIN: [&str; 2] = server::ADMIN_ANY_PORT;

fn start(name: &str, s: &Setup) -> Result<Running> {
    match name {
        "ganesha" => server::start(&ServerSpec::Ganesha, s.v3),
        "cfs-gateway" => match &s.cfs {
            Some(b) => server::start_cfs_gateway_with(b, true),
            None => Err(Error::Server("no cfs binary".into())),
        },
        "cfs" => match &s.cfs {
            Some(b) => server::start_cfs_with_args(b, &CFS_ADMIN),
            None => Err(Error::Server("no cfs binary".into())),
        },
        "cfs-b" => match &s.cfs_b {
            Some(b) => server::start_cfs_with_args(b, &CFS_ADMIN),
            None => Err(Error::Server("no CFS_B_BIN".into())),
        },
        "cfs-nometrics" => match &s.cfs {
            Some(b) => {
                // The server inherits the environment: its metrics hooks become no-ops.
                std::env::set_var("CFS_METRICS", "off");
                let r = server::start_cfs_with_args(b, &CFS_ADMIN);
                std::env::remove_var("CFS_METRICS");
                r
            }
            None => Err(Error::Server("no cfs binary".into())),
        },
        other => Err(Error::Usage(format!("hostbench cannot start {other}"))),
    }
}

/// Bound on one load run: seven phases of `seconds` each, with slack for the untimed ones.
fn load_limit(seconds: u64) -> Duration {
    Duration::from_secs(seconds.saturating_mul(7).saturating_add(60))
}

/// What one load run gave: its JSON lines, the hook counts per line (with `admin`), an error.
type LoadOutcome = (Vec<Value>, Vec<Option<Counts>>, Option<String>);

/// Run the load generator against `srv`; its JSON lines, or an error with whatever it printed.
/// With `admin`, the server's hook counters are scraped before the load and as each line
/// arrives (the load prints a line when its phase ends).
fn run_load(srv: &Running, label: &str, s: &Setup, admin: Option<Admin>) -> LoadOutcome {
    let mut cmd = Command::new(&s.load);
    cmd.arg("--server")
        .arg(format!("127.0.0.1:{}", srv.port))
        .arg("--export")
        .arg(if s.v3 { &srv.export_v3 } else { &srv.export_v4 });
    if let (true, Some(m)) = (s.v3, srv.mnt_port) {
        cmd.arg("--mount-port").arg(m.to_string());
    }
    cmd.arg("--seconds")
        .arg(s.seconds.to_string())
        .arg("--depth")
        .arg(s.depth.to_string())
        .arg("--tasks")
        .arg(s.tasks.to_string())
        .arg("--label")
        .arg(label);
    if let Some(pid) = srv.pid() {
        cmd.arg("--server-pid").arg(pid.to_string());
    }
    let shown = format!("{cmd:?}");
    let mut child = match cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return (Vec::new(), Vec::new(), Some(format!("spawn {shown}: {e}"))),
    };
    let reader = |p: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut p) = p {
                let _ = p.read_to_string(&mut s);
            }
            s
        })
    };
    let mut last = admin.as_ref().and_then(metrics_cost::scrape);
    let stdout = child.stdout.take();
    let out = std::thread::spawn(move || {
        let (mut text, mut deltas) = (String::new(), Vec::new());
        let Some(p) = stdout else {
            return (text, deltas);
        };
        for line in std::io::BufReader::new(p).lines() {
            let Ok(line) = line else { break };
            if line.trim_start().starts_with('{') {
                if let Some(a) = &admin {
                    let now = metrics_cost::scrape(a);
                    deltas.push(match (now, last) {
                        (Some(n), Some(l)) => Some(n.minus(&l)),
                        _ => None,
                    });
                    last = now.or(last);
                }
            }
            text.push_str(&line);
            text.push('\n');
        }
        (text, deltas)
    });
    let err = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let limit = load_limit(s.seconds);
    let t0 = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Ok(st),
            Ok(None) if t0.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!("killed after {} s", limit.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!("wait: {e}"));
            }
        }
    };
    let (out, deltas) = out.join().unwrap_or_default();
    let err = err.join().unwrap_or_default();
    // Lines and deltas stay paired: a line that is not JSON drops its delta too.
    let (lines, deltas): (Vec<Value>, Vec<Option<Counts>>) = out
        .lines()
        .filter(|l| l.trim_start().starts_with('{'))
        .zip(deltas.into_iter().map(Some).chain(std::iter::repeat(None)))
        .filter_map(|(l, d)| Some((serde_json::from_str(l).ok()?, d.flatten())))
        .unzip();
    let error = match status {
        Ok(st) if st.success() => None,
        Ok(st) => Some(format!("load exited {st}: {}", procs::tail(&err, 5))),
        Err(e) => Some(format!("load {e}: {}", procs::tail(&err, 5))),
    };
    (lines, deltas, error)
}

fn one_run(name: &str, round: u32, s: &Setup) -> RunResult {
    let t0 = Instant::now();
    // dirty pages of the previous run are not this one's to write back
    let _ = procs::run(&mut Command::new("sync"));
    let mut r = RunResult {
        server: name.to_owned(),
        round,
        version: String::new(),
        pid: None,
        wall_s: 0.0,
        lines: Vec::new(),
        error: None,
        hook_deltas: Vec::new(),
        hook_error: None,
    };
    match start(name, s) {
        Err(e) => r.error = Some(format!("start: {e}")),
        Ok(mut srv) => {
            r.version = srv.version.clone();
            r.pid = srv.pid();
            let bin = if name == "cfs-b" { &s.cfs_b } else { &s.cfs };
            let admin = match (name, bin) {
                ("cfs" | "cfs-nometrics" | "cfs-b", Some(b)) => {
                    match metrics_cost::admin_of(&srv, b) {
                        Ok(a) => Some(a),
                        Err(e) => {
                            r.hook_error = Some(format!("admin listener: {e}"));
                            None
                        }
                    }
                }
                _ => None,
            };
            let (lines, deltas, error) = run_load(&srv, &format!("{name}-r{round}"), s, admin);
            if name == "cfs" && r.hook_error.is_none() && deltas.iter().any(Option::is_none) {
                r.hook_error = Some("a /metrics scrape failed".into());
            }
            r.lines = lines;
            r.hook_deltas = if name == "cfs" { deltas } else { Vec::new() };
            r.error = error;
            if !srv.alive() {
                let log = srv
                    .log
                    .as_deref()
                    .and_then(|l| std::fs::read_to_string(l).ok())
                    .unwrap_or_default();
                let died = format!("server died; log tail:\n{}", procs::tail(&log, 10));
                r.error = Some(match r.error.take() {
                    Some(e) => format!("{e}; {died}"),
                    None => died,
                });
            }
            srv.stop();
        }
    }
    r.wall_s = t0.elapsed().as_secs_f64();
    r
}

fn progress(r: &RunResult, rounds: u32) -> String {
    let parts: Vec<String> = MEASURES[..7]
        .iter()
        .map(|m| format!("{} {}", m.title, fmt_value((m.get)(&r.lines))))
        .collect();
    let pnfs = r
        .lines
        .iter()
        .any(|l| l.get("pnfs_active").and_then(Value::as_bool) == Some(true));
    format!(
        "[round {}/{rounds}] {} ({}, pid {}): {}{} ({:.0} s){}",
        r.round,
        r.server,
        r.version,
        r.pid.map(|p| p.to_string()).unwrap_or_else(|| "?".into()),
        parts.join(", "),
        if pnfs { ", pNFS layouts used" } else { "" },
        r.wall_s,
        r.error
            .as_deref()
            .map(|e| format!("\n  ERROR: {e}"))
            .unwrap_or_default()
    )
}

#[derive(Serialize)]
struct JsonReport<'a> {
    command: Vec<String>,
    started_unix: u64,
    seconds: u64,
    rounds: u32,
    tasks: u32,
    depth: u32,
    host_cpus: usize,
    load_bin: String,
    cfs_bin: Option<String>,
    cfs_debug_build: bool,
    runs: &'a [RunResult],
    summary: &'a [Row],
    markdown: &'a str,
    hook_costs: &'a [metrics_cost::Costs],
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics_attribution: Option<&'a str>,
    #[serde(skip_serializing_if = "str::is_empty")]
    paired: &'a str,
}

pub fn hostbench(a: &HostBenchArgs) -> Result<ExitCode> {
    if a.v3 && !crate::netns::inside() {
        // ganesha's v3 registers with rpcbind, which only our own namespace has
        let code = crate::netns::reexec()?;
        return Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)));
    }
    if a.v3 {
        crate::netns::prepare()?;
    }
    let mut servers: Vec<String> = Vec::new();
    let defaults = a.server == ["ganesha", "cfs"];
    for s in &a.server {
        let s = if a.v3 && defaults && s == "cfs" {
            "cfs-gateway"
        } else {
            s.as_str()
        };
        let known = if a.v3 {
            matches!(s, "ganesha" | "cfs-gateway")
        } else {
            matches!(s, "ganesha" | "cfs" | "cfs-nometrics" | "cfs-b")
        };
        if !known {
            return Err(Error::Usage(format!(
                "hostbench --server {s}: expected ganesha, cfs, cfs-nometrics or cfs-b (single node), or with --v3 ganesha or cfs-gateway"
            )));
        }
        let s = &s.to_string();
        if servers.contains(s) {
            return Err(Error::Usage(format!("hostbench --server {s} given twice")));
        }
        servers.push(s.clone());
    }
    if a.rounds == 0 || a.seconds == 0 {
        return Err(Error::Usage(
            "hostbench: --rounds and --seconds must be at least 1".into(),
        ));
    }
    let load_src = load_binary(a.v3)?;
    let mut pinned = Pinned(Vec::new());
    let mut notes = Vec::new();
    let (cfs_src, cfs_debug) = if servers.iter().any(|s| s.starts_with("cfs")) {
        let (b, debug) = pick_cfs_binary()?;
        if debug {
            let w = format!(
                "WARNING: {} is a debug build (dev profile, opt-level 1): its numbers are not representative (build with `cargo build --release -p cfs -p client --example load`)",
                b.display()
            );
            eprintln!("{w}");
            notes.push(w);
        }
        (Some(b), debug)
    } else {
        (None, false)
    };
    if servers.iter().any(|s| s == "ganesha") && !procs::have("ganesha.nfsd") {
        return Err(Error::Server(
            "ganesha.nfsd not installed; run `cargo run -p conformance -- setup`".into(),
        ));
    }
    let setup = Setup {
        load: pinned.copy(&load_src, "load")?,
        cfs: match &cfs_src {
            Some(b) => Some(pinned.copy(b, "cfs")?),
            None => None,
        },
        cfs_b: match std::env::var_os("CFS_B_BIN") {
            Some(b) if servers.iter().any(|s| s == "cfs-b") => {
                Some(pinned.copy(Path::new(&b), "cfs-b")?)
            }
            _ if servers.iter().any(|s| s == "cfs-b") => {
                return Err(Error::Usage(
                    "hostbench --server cfs-b: set CFS_B_BIN to the other cfs binary".into(),
                ))
            }
            _ => None,
        },
        seconds: a.seconds,
        tasks: a.tasks.max(1),
        depth: a.depth.max(1),
        v3: a.v3,
    };
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    eprintln!(
        "hostbench: {} × {} round(s); each run: {} s each of sequential writes, 4 KiB random reads, 4 KiB random writes and creates, plus reading, stat and unlink of what they made (a load run is killed after {} s)",
        servers.join(", "),
        a.rounds,
        a.seconds,
        load_limit(a.seconds).as_secs()
    );
    // What each metrics hook costs, timed before and after the rounds (the worse of the two):
    // for the attribution of the cfs runs' server CPU (`metrics_cost`).
    let hook_bin = if servers.iter().any(|s| s == "cfs") {
        match metrics_cost::hook_cost_binary() {
            Some(b) => Some(pinned.copy(&b, "hook_cost")?),
            None if servers.iter().any(|s| s == "cfs-nometrics") => {
                return Err(Error::Usage(
                    "the metrics cost needs `metrics`' hook_cost; build it with `cargo build --release -p metrics --example hook_cost` (or set HOOK_COST_BIN)".into(),
                ))
            }
            None => {
                notes.push("metrics attribution skipped: target/release/examples/hook_cost is not built (`cargo build --release -p metrics --example hook_cost`)".into());
                None
            }
        }
    } else {
        None
    };
    let mut hook_costs = Vec::new();
    if let Some(b) = &hook_bin {
        hook_costs.push(metrics_cost::run_hook_cost(b)?);
    }
    let mut runs = Vec::new();
    for round in 1..=a.rounds {
        // ABBA: every other round in reverse, so neither server always runs right after the
        // other (a server's stop and the page cache it leaves weigh on the next run).
        let order: Vec<&String> = if round % 2 == 1 {
            servers.iter().collect()
        } else {
            servers.iter().rev().collect()
        };
        for s in order {
            let r = one_run(s, round, &setup);
            eprintln!("{}", progress(&r, a.rounds));
            runs.push(r);
        }
    }
    if let Some(b) = &hook_bin {
        hook_costs.push(metrics_cost::run_hook_cost(b)?);
    }
    let rows = summarize(&servers, a.rounds, &runs);
    let table = markdown(&rows, a.rounds);
    let costs = hook_costs.iter().copied().reduce(|x, y| x.max(&y));
    let attribution = costs.map(|c| {
        let per_run: Vec<Vec<metrics_cost::PhaseCost>> = runs
            .iter()
            .filter(|r| r.server == "cfs" && r.error.is_none())
            .map(|r| metrics_cost::phases(&r.lines, &r.hook_deltas, &c))
            .collect();
        metrics_cost::attribution_markdown(&per_run, &c)
    });
    let paired = if a.rounds >= 3 {
        metrics_cost::paired_markdown(&rows)
    } else {
        String::new()
    };
    let versions: Vec<String> = servers
        .iter()
        .map(|s| {
            let v = runs
                .iter()
                .find(|r| &r.server == s && !r.version.is_empty())
                .map(|r| r.version.as_str())
                .unwrap_or("?");
            format!("{s} = {v}")
        })
        .collect();
    println!(
        "\nhostbench (host loopback, {}; {} s per phase, {} interleaved round(s), {} tasks, depth {}; {cpus} CPUs shared by load and server): {}{}\n",
        if a.v3 {
            "NFSv3 load generator `load3` (gateway-v3/examples)"
        } else {
            "Rust NFSv4.1 client `load`"
        },
        a.seconds,
        a.rounds,
        setup.tasks,
        setup.depth,
        versions.join(", "),
        cfs_src
            .as_deref()
            .map(|b| format!(" ({})", b.display()))
            .unwrap_or_default(),
    );
    print!("{table}");
    println!(
        "\n↑ higher is better, ↓ lower is better; ratio = other/{} per round (rounds ran back to back), min–max over rounds.",
        servers[0]
    );
    if !paired.is_empty() {
        println!("\nPaired ratios, round by round:\n\n{paired}");
    }
    if let Some(t) = &attribution {
        println!(
            "\nMetrics cost by attribution (cfs runs: the hook counts each phase caused, from the server's /metrics, × each hook's cost, over the server CPU of the phase):\n\n{t}"
        );
    }
    for r in runs.iter().filter(|r| r.hook_error.is_some()) {
        println!(
            "round {} {}: no attribution: {}",
            r.round,
            r.server,
            r.hook_error.as_deref().unwrap_or("")
        );
    }
    for n in &notes {
        println!("{n}");
    }
    let failed: Vec<&RunResult> = runs.iter().filter(|r| r.error.is_some()).collect();
    for r in &failed {
        println!(
            "round {} {}: {}",
            r.round,
            r.server,
            r.error.as_deref().unwrap_or("")
        );
    }
    if let Some(path) = &a.json {
        let rep = JsonReport {
            command: std::env::args().collect(),
            started_unix: started,
            seconds: a.seconds,
            rounds: a.rounds,
            tasks: setup.tasks,
            depth: setup.depth,
            host_cpus: cpus,
            load_bin: load_src.display().to_string(),
            cfs_bin: cfs_src.as_deref().map(|b| b.display().to_string()),
            cfs_debug_build: cfs_debug,
            runs: &runs,
            summary: &rows,
            markdown: &table,
            hook_costs: &hook_costs,
            metrics_attribution: attribution.as_deref(),
            paired: &paired,
        };
        if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(d);
        }
        let text = serde_json::to_string_pretty(&rep)?;
        std::fs::write(path, text).ctx(|| format!("write {path:?}"))?;
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

    fn run(server: &str, round: u32, lines: &[&str]) -> RunResult {
        RunResult {
            server: server.into(),
            round,
            version: String::new(),
            pid: None,
            wall_s: 0.0,
            lines: lines
                .iter()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect(),
            error: None,
            hook_deltas: Vec::new(),
            hook_error: None,
        }
    }

    #[test]
    fn ratios_pair_rounds_and_skip_missing() {
        // pairwise: 90/100 and 150/200; min(other)/max(base) would say 0.45
        let r = ratio_range(&[Some(100.0), Some(200.0)], &[Some(90.0), Some(150.0)]);
        assert_eq!(fmt_ratio(r), "0.75–0.90×");
        // a failed round (or a zero baseline) drops out instead of poisoning the range
        let r = ratio_range(
            &[Some(100.0), None, Some(0.0), Some(50.0)],
            &[Some(85.0), Some(1.0), Some(3.0), Some(42.5)],
        );
        assert_eq!(fmt_ratio(r), "0.85×");
        assert_eq!(fmt_ratio(ratio_range(&[None], &[Some(1.0)])), "n/a");
    }

    #[test]
    fn values_keep_three_digits() {
        assert_eq!(fmt_value(Some(1234.56)), "1235");
        assert_eq!(fmt_value(Some(12.345)), "12.3");
        assert_eq!(fmt_value(Some(1.2345)), "1.23");
        assert_eq!(fmt_value(Some(0.2345)), "0.234");
        assert_eq!(fmt_value(Some(0.01234)), "0.0123");
        assert_eq!(fmt_value(None), "n/a");
    }

    #[test]
    fn table_has_rounds_ratios_and_cpu_per_unit() {
        let g = |mib: f64, cpu: f64| {
            format!(
                r#"{{"bench":"seq_write","bytes":{},"mib_per_s":{mib},"server_cpu_s":{cpu}}}"#,
                2u64 << 30
            )
        };
        let create = r#"{"bench":"create","ops":2000,"ops_per_s":250.0,"server_cpu_s":1.5}"#;
        let runs = vec![
            run("ganesha", 1, &[&g(100.0, 4.0), create]),
            run("cfs", 1, &[&g(87.0, 3.0)]),
            run("ganesha", 2, &[&g(200.0, 4.0), create]),
            run("cfs", 2, &[&g(168.0, 2.0)]),
        ];
        let rows = summarize(&["ganesha".into(), "cfs".into()], 2, &runs);
        let t = markdown(&rows, 2);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "| measure | ganesha (r1 / r2) | cfs (r1 / r2) | cfs/ganesha |"
        );
        assert_eq!(lines[1], "|---|---:|---:|---:|");
        assert_eq!(
            lines[2],
            "| seq write MiB/s ↑ | 100 / 200 | 87.0 / 168 | 0.84–0.87× |"
        );
        // 2 GiB written: 4 s of CPU is 2 s/GiB
        assert!(
            t.contains(
                "| server CPU s per GiB written ↓ | 2.00 / 2.00 | 1.50 / 1.00 | 0.50–0.75× |"
            ),
            "{t}"
        );
        // 1.5 s over 2000 creates; cfs has no create line at all
        assert!(
            t.contains("| server CPU ms per create ↓ | 0.750 / 0.750 | n/a / n/a | n/a |"),
            "{t}"
        );
        assert_eq!(lines.len(), 2 + MEASURES.len());
    }

    #[test]
    fn switches_per_read_come_from_the_load_line() {
        let l: Vec<Value> =
            vec![
                serde_json::from_str(r#"{"bench":"rand_read","ops":1000,"server_vcsw":1500}"#)
                    .expect("json"),
            ];
        assert_eq!(vcsw_per_op(&l, "rand_read"), Some(1.5));
        assert_eq!(vcsw_per_op(&l, "create"), None);
    }

    #[test]
    fn one_server_one_round_has_no_ratio_column() {
        let rows = summarize(
            &["cfs".into()],
            1,
            &[run("cfs", 1, &[r#"{"bench":"stat","ops_per_s":5000.0}"#])],
        );
        let t = markdown(&rows, 1);
        assert!(t.starts_with("| measure | cfs |\n|---|---:|\n"), "{t}");
        assert!(t.contains("| stat/s ↑ | 5000 |\n"), "{t}");
    }
}
