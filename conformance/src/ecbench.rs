//! `ecbench`: issue 13's benchmark, one command, one run (docs/EC.md "Benchmark (one run)").
//!
//! 1. The codec: `ec-bench` (encode and rebuild GiB/s per core for 4+2 and 2+1 against
//!    reed-solomon-simd's published figures and its own configuration measured in the same run);
//!    its table is printed as it comes.
//! 2. The Rust client: `cfs/examples/ec_reads` (its own cluster of 6 data servers, a file
//!    encoded 4+2, sequential reads striped over the k data-shard servers, through one
//!    assembling server, and both again with a data shard's server kill -9'd).
//! 3. The kernel: `cfs cluster up --ds 6 --encode-after 2` with two exports, `/auto` (ec_reads
//!    = "auto": striped for Linux 6.18+) and `/assembled` (ec_reads = "assembled"); one file of
//!    `--mib` MiB put into each from the host, both waited for until encoded; then a guest
//!    (sid, and bookworm with `--kernel all`) reads them with dd after drop_caches, several
//!    rounds, with the kernel's read-ahead and with 15 MiB (`--ra`); the host reads the
//!    cluster's counters around every read (which data servers served the bytes, and that the
//!    MDS served none). Then one data server holding a data shard of both files is kill -9'd
//!    and the guest reads again (degraded); it is restarted before the next kernel.
//!
//! Prints one Markdown table: MiB/s (median, min..max of the rounds) and the ratio to the
//! healthy striped read of the same client in the same run. Bounded: every wait has a limit,
//! the guest has a timeout, and only processes this run started are stopped (by PID).

use crate::encoded::{self, GuestFile};
use crate::error::{Error, IoContext, Result};
use crate::guest::{self, GuestJob, GuestRun};
use crate::paths;
use crate::procs;
use crate::rendezvous::{Rendezvous, Seen};
use crate::server::{self, ClusterStatus, Running};
use crate::setup::{self, KernelKind};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

#[derive(clap::Args, Clone, Debug)]
pub struct EcBenchArgs {
    /// size of the file the kernels read (the Rust client's file too)
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(16..=4096))]
    pub mib: u64,
    /// timed reads per variant (median and min..max are printed)
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub rounds: u32,
    /// guest kernels: sid (stripes), bookworm (assembled only) or all
    #[arg(long, default_value = "all")]
    pub kernel: String,
    /// read-ahead of the guest's mounts in KiB, comma-separated; 0 = the kernel's default
    #[arg(long, default_value = "0,15360")]
    pub ra: String,
    /// leave out the codec part (ec-bench)
    #[arg(long)]
    pub no_codec: bool,
    /// leave out the Rust-client part (ec_reads)
    #[arg(long)]
    pub no_rust: bool,
}

/// Exports of the kernel part: (path, ec_reads).
const EXPORT_AUTO: &str = "/auto";
const EXPORT_ASSEMBLED: &str = "/assembled";
const FILE: &str = "big";
/// The code of a 6-data-server cluster (docs/EC.md).
const K: u32 = 4;
const M: u32 = 2;
/// Encoding 2 × 1 GiB at ~100 MiB/s on this machine, plus the encoder's delay and scan.
const ENCODE_WAIT: Duration = Duration::from_secs(300);
/// A kill -9'd data server is down for the MDS after its heartbeats stop (a few seconds).
const DOWN_WAIT: Duration = Duration::from_secs(60);

/// One timed read (or other step) of the guest's plan.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    Read {
        label: String,
        mount: &'static str,
        ra_kb: u32,
    },
    Verify(&'static str),
    Kill,
}

impl Step {
    fn word(&self) -> String {
        match self {
            Step::Read {
                label,
                mount,
                ra_kb,
            } => format!("{label}:{mount}:{ra_kb}"),
            Step::Verify(m) => format!("verify:{m}"),
            Step::Kill => "kill".into(),
        }
    }
}

/// The guest's steps: `rounds` rounds of healthy reads through both mounts at every
/// read-ahead (the order reversed every other round, so drift hits every variant alike), an
/// md5 of each, the kill, the same reads degraded, md5s again.
fn plan(rounds: u32, ras: &[u32]) -> Vec<Step> {
    let mut variants = Vec::new();
    for &ra in ras {
        variants.push(("auto", "/mnt", ra));
        variants.push(("assembled", "/mnt2", ra));
    }
    let reads = |state: &str, out: &mut Vec<Step>| {
        for r in 0..rounds {
            let mut v = variants.clone();
            if r % 2 == 1 {
                v.reverse();
            }
            for (l, m, ra) in v {
                out.push(Step::Read {
                    label: format!("{state}-{l}"),
                    mount: m,
                    ra_kb: ra,
                });
            }
        }
    };
    let mut p = Vec::new();
    reads("healthy", &mut p);
    p.push(Step::Verify("/mnt"));
    p.push(Step::Verify("/mnt2"));
    p.push(Step::Kill);
    reads("degraded", &mut p);
    p.push(Step::Verify("/mnt"));
    p.push(Step::Verify("/mnt2"));
    p
}

/// One row of the final table.
#[derive(Clone, Debug)]
struct Row {
    client: String,
    read: String,
    /// MiB/s of each round
    values: Vec<f64>,
    /// the baseline's median (the same client's healthy striped read)
    base: Option<f64>,
    /// which data servers served the bytes, MDS bytes
    served: String,
}

fn median(v: &[f64]) -> Option<(f64, f64, f64)> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    Some((s[s.len() / 2], s[0], s[s.len() - 1]))
}

fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| client | read | MiB/s median (min..max) | × healthy striped | served by (MiB per read) |\n|---|---|---|---|---|\n",
    );
    for r in rows {
        let (val, ratio) = match median(&r.values) {
            Some((m, lo, hi)) => (
                format!("{m:.0} ({lo:.0}..{hi:.0})"),
                r.base
                    .filter(|b| *b > 0.0)
                    .map_or("n/a".into(), |b| format!("{:.2}", m / b)),
            ),
            None => ("failed".into(), "n/a".into()),
        };
        out.push_str(&format!(
            "| {} | {} | {val} | {ratio} | {} |\n",
            r.client, r.read, r.served
        ));
    }
    out
}

/// A binary of the workspace's release build, built when missing.
fn built(rel: &str, cargo_args: &[&str]) -> Result<PathBuf> {
    let p = paths::target_dir().join("release").join(rel);
    if !p.is_file() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        eprintln!("ecbench: building {rel}: cargo build --release {cargo_args:?}");
        procs::run_visible(
            Command::new(cargo)
                .args(["build", "--release"])
                .args(cargo_args)
                .current_dir(paths::source_dir().join("..")),
        )?;
    }
    if p.is_file() {
        Ok(p)
    } else {
        Err(Error::Bench(format!("{p:?} missing after the build")))
    }
}

/// Runs a program to completion (bounded), printing and returning its stdout.
fn run_bounded(cmd: &mut Command, limit: Duration, what: &str) -> Result<String> {
    let out_path =
        std::env::temp_dir().join(format!("cfs-ecbench-{}-{}.out", std::process::id(), what));
    let out = std::fs::File::create(&out_path).ctx(|| format!("create {out_path:?}"))?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(Stdio::inherit())
        .spawn()
        .ctx(|| format!("spawn {what}"))?;
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().ctx(|| format!("wait {what}"))? {
            break st;
        }
        if t0.elapsed() > limit {
            // ec_reads stops its own cluster on the way out; SIGTERM lets it
            procs::stop(&mut child, Duration::from_secs(20));
            let _ = std::fs::remove_file(&out_path);
            return Err(Error::Bench(format!(
                "{what} took more than {} s",
                limit.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    print!("{text}");
    if !status.success() {
        return Err(Error::Bench(format!("{what} exited {status}")));
    }
    Ok(text)
}

/// ec_reads' lines "direct (k servers)  1402 MiB/s (1229..1651)   x direct 1.00 (baseline)"
/// -> (label, median, min, max).
fn parse_ec_reads(text: &str) -> Vec<(String, f64, f64, f64)> {
    text.lines()
        .filter_map(|l| {
            let (head, rest) = l.split_once(" MiB/s (")?;
            let mut w: Vec<&str> = head.split_whitespace().collect();
            let med: f64 = w.pop()?.parse().ok()?;
            let (range, _) = rest.split_once(')')?;
            let (lo, hi) = range.split_once("..")?;
            Some((w.join(" "), med, lo.parse().ok()?, hi.parse().ok()?))
        })
        .collect()
}

fn rust_rows(text: &str) -> Vec<Row> {
    let parsed = parse_ec_reads(text);
    let base = parsed.first().map(|p| p.1);
    parsed
        .into_iter()
        .map(|(label, med, lo, hi)| Row {
            client: "Rust (ec_reads)".into(),
            read: label,
            // the three figures ec_reads prints stand for its rounds
            values: vec![lo, med, hi],
            base,
            served: String::new(),
        })
        .collect()
}

fn cfs_cli(bin: &Path, args: &[&str]) -> Result<String> {
    procs::run(Command::new(bin).args(args))
}

fn ds_up(st: &ClusterStatus) -> usize {
    st.data_servers.iter().filter(|d| d.state == "up").count()
}

fn status(srv: &Running) -> Result<ClusterStatus> {
    srv.cluster_status()
        .ok_or_else(|| Error::Bench("not a cfs-cluster".into()))?
}

/// Waits until `f` holds for the cluster's status, at most `limit`.
fn wait_status(
    srv: &Running,
    limit: Duration,
    what: &str,
    f: impl Fn(&ClusterStatus) -> bool,
) -> Result<()> {
    let t0 = Instant::now();
    loop {
        if let Ok(st) = status(srv) {
            if f(&st) {
                return Ok(());
            }
        }
        if t0.elapsed() > limit {
            return Err(Error::Bench(format!(
                "{what}: not within {} s",
                limit.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Counters reach the MDS with 1 s heartbeats: read until two readings a second apart agree.
fn settled(srv: &Running) -> Result<ClusterStatus> {
    std::thread::sleep(Duration::from_millis(1500));
    let total = |c: &ClusterStatus| {
        c.data_servers.iter().map(|d| d.read_bytes).sum::<u64>() + c.mds.read_bytes
    };
    let mut last = status(srv)?;
    for _ in 0..5 {
        std::thread::sleep(Duration::from_secs(1));
        let now = status(srv)?;
        let same = total(&now) == total(&last);
        last = now;
        if same {
            break;
        }
    }
    Ok(last)
}

/// "ds1 64, ds2 64 · MDS 0": MiB each data server (and the MDS) read between two snapshots.
fn served(a: &ClusterStatus, b: &ClusterStatus, roles: &[(String, String)]) -> String {
    let mib = |x: u64| (x as f64 / (1 << 20) as f64).round() as u64;
    let mut parts: Vec<(String, u64)> = b
        .data_servers
        .iter()
        .map(|d| {
            let was = a
                .data_servers
                .iter()
                .find(|x| x.id == d.id)
                .map_or(0, |x| x.read_bytes);
            let role = crate::hostops::role_of(&d.listen, &roles.to_vec()).unwrap_or(d.id.clone());
            (role, d.read_bytes.saturating_sub(was))
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    parts.sort();
    let ds: Vec<String> = parts
        .iter()
        .map(|(r, n)| format!("{r} {}", mib(*n)))
        .collect();
    format!(
        "{} · MDS {}",
        if ds.is_empty() {
            "none".into()
        } else {
            ds.join(", ")
        },
        mib(b.mds.read_bytes.saturating_sub(a.mds.read_bytes))
    )
}

/// The kernel part's cluster: started, exports in place, the file in both, encoded.
struct Bench {
    srv: Running,
    roles: Vec<(String, String)>,
    files: Vec<GuestFile>,
    md5: String,
    /// the data server to kill: it holds a data shard of both files
    victim: String,
}

fn prepare(mib: u64) -> Result<Bench> {
    let bin = server::cfs_binary()?;
    let t0 = Instant::now();
    let mut srv = server::start_cfs_cluster_sized(
        "ecbench",
        &bin,
        1,
        6,
        None,
        &["--encode-after", &server::EC_ENCODE_AFTER_S.to_string()],
    )?;
    let addr = srv
        .admin()
        .map(|(_, a)| a.to_owned())
        .ok_or_else(|| Error::Bench("no MDS address".into()))?;
    eprintln!(
        "ecbench: cluster of 6 data servers up in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    // An export must exist when the MDS starts: make the directories under "/", then restart
    // the MDS with the two exports only.
    cfs_cli(
        &bin,
        &["mkdir", "--server", &addr, EXPORT_AUTO, EXPORT_ASSEMBLED],
    )?;
    let dir = srv
        .cluster_dir()
        .ok_or_else(|| Error::Bench("no cluster directory".into()))?
        .to_path_buf();
    srv.kill_node("mds")?;
    let conf = dir.join("mds.toml");
    let mut toml = std::fs::read_to_string(&conf).ctx(|| format!("read {conf:?}"))?;
    toml.push_str(&format!(
        "\n[[export]]\npath = \"{EXPORT_AUTO}\"\nec_reads = \"auto\"\n[[export]]\npath = \"{EXPORT_ASSEMBLED}\"\nec_reads = \"assembled\"\n"
    ));
    std::fs::write(&conf, toml).ctx(|| format!("write {conf:?}"))?;
    srv.restart_node("mds")?;
    wait_status(
        &srv,
        Duration::from_secs(90),
        "the MDS back with 6 data servers up",
        |s| ds_up(s) == 6,
    )?;
    let roles = srv.ds_roles()?;

    // The file: random bytes, the same into both exports.
    let local = paths::cache_dir().join(format!("ecbench-{}.bin", std::process::id()));
    procs::run(
        Command::new("dd")
            .arg("if=/dev/urandom")
            .arg(format!("of={}", local.display()))
            .arg("bs=1M")
            .arg(format!("count={mib}"))
            .arg("status=none"),
    )?;
    let md5 = procs::run(Command::new("md5sum").arg(&local))?
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_owned();
    let mut files = Vec::new();
    let t0 = Instant::now();
    for e in [EXPORT_AUTO, EXPORT_ASSEMBLED] {
        let local_s = local.display().to_string();
        let put = cfs_cli(
            &bin,
            &[
                "put",
                "--server",
                &addr,
                "--export",
                e,
                &local_s,
                &format!("/{FILE}"),
            ],
        );
        if let Err(err) = put {
            let _ = std::fs::remove_file(&local);
            return Err(err);
        }
        let st = cfs_cli(
            &bin,
            &[
                "stat",
                "--server",
                &addr,
                "--export",
                e,
                &format!("/{FILE}"),
            ],
        )?;
        let ino = st
            .lines()
            .find_map(|l| l.trim().strip_prefix("Fileid: "))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| Error::Bench(format!("no Fileid in `cfs stat`: {st}")))?;
        files.push(GuestFile {
            name: e.to_owned(),
            ino,
            size: mib << 20,
        });
    }
    let _ = std::fs::remove_file(&local);
    eprintln!(
        "ecbench: 2 × {mib} MiB put in {:.1} s; waiting for both to be encoded",
        t0.elapsed().as_secs_f64()
    );
    let dirs = encoded::data_dirs(&srv, &roles).map_err(Error::Bench)?;
    let t0 = Instant::now();
    let seen = loop {
        let seen = encoded::look(&dirs, &files);
        let done = seen
            .iter()
            .zip(&files)
            .all(|(s, f)| s.encoded_epoch(K, M, f.size).is_some() && s.mirror_total() == 0);
        if done {
            break seen;
        }
        if t0.elapsed() > ENCODE_WAIT {
            let d: Vec<String> = seen.iter().map(|s| s.describe()).collect();
            return Err(Error::Bench(format!(
                "not encoded within {} s: {}",
                ENCODE_WAIT.as_secs(),
                d.join(" | ")
            )));
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!(
        "ecbench: both encoded {K}+{M} within {:.1} s, mirror copies gone",
        t0.elapsed().as_secs_f64()
    );
    // A server holding a data shard (index < k) of both files, at their encoded epochs.
    let data_holders = |s: &encoded::Seen, f: &GuestFile| -> Vec<String> {
        let e = s.encoded_epoch(K, M, f.size).unwrap_or(0);
        s.shards
            .iter()
            .filter(|(_, h)| h.epoch == e && h.index < K)
            .map(|(r, _)| r.clone())
            .collect()
    };
    let a = data_holders(&seen[0], &files[0]);
    let b = data_holders(&seen[1], &files[1]);
    let victim = a.iter().find(|r| b.contains(r)).cloned().ok_or_else(|| {
        Error::Bench(format!(
            "no server holds a data shard of both ({a:?}, {b:?})"
        ))
    })?;
    Ok(Bench {
        srv,
        roles,
        files,
        md5,
        victim,
    })
}

/// One guest's run of the plan: MiB/s per step and what served each read.
struct KernelResult {
    kernel: String,
    reads: BTreeMap<usize, f64>,
    served: BTreeMap<usize, String>,
    run: Option<GuestRun>,
    failure: Option<String>,
}

fn run_kernel(b: &mut Bench, kind: KernelKind, steps: &[Step], mib: u64) -> Result<KernelResult> {
    let kver = setup::Kernels::load()
        .get(kind)
        .map(str::to_owned)
        .filter(|k| setup::kernel_ready(k))
        .ok_or_else(|| {
            Error::Bench(format!(
                "no {} kernel in the cache: run `cargo run --release -p conformance -- setup`",
                kind.name()
            ))
        })?;
    let rdv = Rendezvous::start()?;
    let words: Vec<String> = steps.iter().map(Step::word).collect();
    let job = GuestJob {
        kver: kver.clone(),
        port: b.srv.port_for("4.2"),
        vers: "4.2".into(),
        export: EXPORT_AUTO.into(),
        mnt_port: None,
        rpcbind: false,
        script: paths::scenario_script("ecbench"),
        env: vec![
            format!("EXPORT2={EXPORT_ASSEMBLED}"),
            format!("PLAN='{}'", words.join(" ")),
            format!("FILE={FILE}"),
            format!("SIZE_MIB={mib}"),
            format!("MD5={}", b.md5),
            format!("RDV_PORT={}", rdv.port),
            format!("GUEST_NAME=ecbench-{}", kind.name()),
            format!(
                "NFS4_UNIQUE_ID=cfs-ecbench-{}-{}",
                std::process::id(),
                kind.name()
            ),
        ],
        // boot, the reads at a TCG guest's pace, and the host's waits between them
        timeout: Duration::from_secs((120 + 40 * steps.len() as u64).min(3600)),
        smp: 2,
        pcap: None,
    };
    eprintln!(
        "ecbench: {} guest ({kver}), {} steps",
        kind.name(),
        steps.len()
    );
    let guest = std::thread::spawn(move || guest::run(&job));
    let mut res = KernelResult {
        kernel: format!("{} {kver}", kind.name()),
        reads: BTreeMap::new(),
        served: BTreeMap::new(),
        run: None,
        failure: None,
    };
    let mut killed = false;
    let host = (|| -> Result<()> {
        let mut before = settled(&b.srv)?;
        for (i, step) in steps.iter().enumerate() {
            let n = i + 1;
            match rdv.wait(&format!("pre-{n}"), Duration::from_secs(600)) {
                Seen::Posted => {}
                other => {
                    return Err(Error::Bench(format!(
                        "the guest never reached step {n} ({other:?})"
                    )))
                }
            }
            if *step == Step::Kill {
                let pid = b.srv.kill_node(&b.victim)?;
                killed = true;
                let listen = b
                    .roles
                    .iter()
                    .find(|(r, _)| *r == b.victim)
                    .map(|(_, l)| l.clone())
                    .unwrap_or_default();
                eprintln!("ecbench: kill -9 {} (pid {pid}, {listen})", b.victim);
                wait_status(
                    &b.srv,
                    DOWN_WAIT,
                    "the killed data server marked down",
                    |s| {
                        s.data_servers
                            .iter()
                            .any(|d| d.listen == listen && d.state != "up")
                    },
                )?;
            }
            rdv.post(&format!("go-{n}"));
            match rdv.wait(&format!("post-{n}"), Duration::from_secs(900)) {
                Seen::Posted => {}
                other => {
                    return Err(Error::Bench(format!(
                        "the guest never finished step {n} ({other:?})"
                    )))
                }
            }
            // after every step (an md5 reads the file too), so each read's counters are its own
            let after = settled(&b.srv)?;
            if matches!(step, Step::Read { .. }) {
                res.served.insert(n, served(&before, &after, &b.roles));
            }
            before = after;
            rdv.post(&format!("done-{n}"));
        }
        Ok(())
    })();
    if let Err(e) = &host {
        res.failure = Some(e.to_string());
        rdv.post("abort");
    }
    match guest.join() {
        Ok(Ok(run)) => {
            for (k, v) in &run.metrics {
                if let Some(n) = k.strip_prefix("read_").and_then(|n| n.parse().ok()) {
                    res.reads.insert(n, *v);
                }
            }
            let fails = run.failures();
            if !fails.is_empty() || run.rc != 0 {
                let why = format!("guest exit {}: {}", run.rc, fails.join("; "));
                res.failure = Some(match res.failure.take() {
                    Some(f) => format!("{f}; {why}"),
                    None => why,
                });
                eprintln!("ecbench: guest console tail:\n{}", run.console_tail);
            }
            res.run = Some(run);
        }
        Ok(Err(e)) => res.failure = Some(format!("guest: {e}")),
        Err(_) => res.failure = Some("guest thread panicked".into()),
    }
    if killed {
        // Back for the next kernel: its shards are on its disk.
        b.srv.restart_node(&b.victim)?;
        wait_status(
            &b.srv,
            Duration::from_secs(90),
            "the killed data server back up",
            |s| ds_up(s) == 6,
        )?;
    }
    Ok(res)
}

/// Baselines per read-ahead (KiB): the median of the healthy read through `/auto`.
type Bases = BTreeMap<u32, f64>;

/// Rows of one kernel's reads: variants in plan order, values over the rounds. Each row's
/// baseline is the healthy read through `/auto` at the same read-ahead (a 6.18+ kernel stripes
/// there): its own, or `given`'s (bookworm's rows against sid's). Returns its own baselines.
fn kernel_rows(r: &KernelResult, steps: &[Step], given: Option<&Bases>) -> (Vec<Row>, Bases) {
    let mut rows: Vec<(u32, Row)> = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        let Step::Read { label, ra_kb, .. } = s else {
            continue;
        };
        let ra = if *ra_kb == 0 {
            "default read-ahead".to_string()
        } else {
            format!("read-ahead {} KiB", ra_kb)
        };
        let name = format!("{}, {ra}", label.replace('-', " "));
        let at = match rows.iter().position(|(_, x)| x.read == name) {
            Some(at) => at,
            None => {
                rows.push((
                    *ra_kb,
                    Row {
                        client: r.kernel.clone(),
                        read: name,
                        values: Vec::new(),
                        base: None,
                        served: String::new(),
                    },
                ));
                rows.len() - 1
            }
        };
        if let Some(v) = r.reads.get(&(i + 1)) {
            rows[at].1.values.push(*v);
        }
        if let Some(sv) = r.served.get(&(i + 1)) {
            rows[at].1.served = sv.clone();
        }
    }
    let own: Bases = rows
        .iter()
        .filter(|(_, x)| x.read.starts_with("healthy auto"))
        .filter_map(|(ra, x)| median(&x.values).map(|m| (*ra, m.0)))
        .collect();
    let bases = given.unwrap_or(&own);
    let rows = rows
        .into_iter()
        .map(|(ra, mut x)| {
            x.base = bases.get(&ra).copied();
            x
        })
        .collect();
    (rows, own)
}

pub fn ecbench(a: &EcBenchArgs) -> Result<ExitCode> {
    let t_start = Instant::now();
    let kernels: Vec<KernelKind> = match a.kernel.as_str() {
        "sid" => vec![KernelKind::Sid],
        "bookworm" => vec![KernelKind::Bookworm],
        "all" => vec![KernelKind::Sid, KernelKind::Bookworm],
        other => {
            return Err(Error::Usage(format!(
                "--kernel {other}: sid, bookworm or all"
            )))
        }
    };
    let ras: Vec<u32> =
        a.ra.split(',')
            .map(|s| s.trim().parse::<u32>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| Error::Usage(format!("--ra {}: KiB numbers, comma-separated", a.ra)))?;
    if ras.is_empty() || ras.iter().any(|r| *r > 1 << 20) {
        return Err(Error::Usage(
            "--ra: 1 to a few values, each at most 1 GiB".into(),
        ));
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let date =
        procs::run(Command::new("date").arg("-u").arg("+%Y-%m-%d %H:%M UTC")).unwrap_or_default();
    println!(
        "# ecbench {} — load average at start {} ({} cores)\n",
        date.trim(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    let mut timings = Vec::new();

    if !a.no_codec {
        let t = Instant::now();
        println!("## Codec (ec-bench)\n");
        let bin = built("ec-bench", &["-p", "ec", "--bin", "ec-bench"])?;
        if let Err(e) = run_bounded(&mut Command::new(bin), Duration::from_secs(600), "ec-bench") {
            failures.push(e.to_string());
        }
        timings.push(format!("codec {:.0} s", t.elapsed().as_secs_f64()));
    }
    if !a.no_rust {
        let t = Instant::now();
        println!("\n## Rust client (ec_reads, {} MiB)\n", a.mib);
        let bin = built("examples/ec_reads", &["-p", "cfs", "--example", "ec_reads"])?;
        match run_bounded(
            Command::new(bin).arg(a.mib.to_string()),
            Duration::from_secs(900),
            "ec_reads",
        ) {
            Ok(text) => rows.extend(rust_rows(&text)),
            Err(e) => failures.push(e.to_string()),
        }
        timings.push(format!("Rust client {:.0} s", t.elapsed().as_secs_f64()));
    }

    let t = Instant::now();
    let steps = plan(a.rounds, &ras);
    println!("\n## Kernel clients ({} MiB file, exports {EXPORT_AUTO} (ec_reads auto) and {EXPORT_ASSEMBLED} (ec_reads assembled))\n", a.mib);
    let mut results = Vec::new();
    match prepare(a.mib) {
        Ok(mut b) => {
            timings.push(format!(
                "cluster, put and encode {:.0} s",
                t.elapsed().as_secs_f64()
            ));
            println!(
                "files: {}; degraded = {} kill -9'd (holds a data shard of both)\n",
                b.files
                    .iter()
                    .map(|f| format!("{}/{FILE} ino {}", f.name, f.ino))
                    .collect::<Vec<_>>()
                    .join(", "),
                b.victim
            );
            for k in &kernels {
                let t = Instant::now();
                match run_kernel(&mut b, *k, &steps, a.mib) {
                    Ok(r) => {
                        if let Some(f) = &r.failure {
                            failures.push(format!("{}: {f}", r.kernel));
                        }
                        if let Some(run) = &r.run {
                            for l in run
                                .output
                                .iter()
                                .filter(|l| l.starts_with("INFO") || l.starts_with("FAIL"))
                            {
                                println!("    {l}");
                            }
                            // the flexfiles driver counts its data-server READs in the
                            // mount's own READ line (guest.rs); the MDS's counter says what
                            // went through the MDS
                            let ops: Vec<String> = run
                                .mountstats
                                .iter()
                                .chain(run.mountstats_other.iter())
                                .filter(|(k, _)| {
                                    k.contains("READ")
                                        || k.contains("LAYOUT")
                                        || k.contains("DEVICE")
                                })
                                .map(|(k, v)| format!("{k} {v}"))
                                .collect();
                            println!(
                                "    {}: pnfs={}, mountstats of /mnt: {}",
                                r.kernel,
                                run.pnfs.as_deref().unwrap_or("?"),
                                ops.join(", ")
                            );
                        }
                        results.push(r);
                    }
                    Err(e) => failures.push(format!("{}: {e}", k.name())),
                }
                timings.push(format!(
                    "{} guest {:.0} s",
                    k.name(),
                    t.elapsed().as_secs_f64()
                ));
            }
            b.srv.stop();
        }
        Err(e) => failures.push(format!("kernel part: {e}")),
    }
    let mut sid_bases: Option<Bases> = None;
    for r in &results {
        let given = if r.kernel.starts_with("bookworm") {
            sid_bases.as_ref()
        } else {
            None
        };
        let (kr, own) = kernel_rows(r, &steps, given);
        if r.kernel.starts_with("sid") {
            sid_bases = Some(own);
        }
        rows.extend(kr);
    }

    println!("\n## Reads (one run; × = ratio to the same client's healthy striped read at the same read-ahead, bookworm's to sid's)\n");
    print!("{}", table(&rows));
    println!(
        "\nwall: {:.0} s in all ({})",
        t_start.elapsed().as_secs_f64(),
        timings.join(", ")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ec_reads_lines_parse() {
        let text = "4+2, 1 MiB unit, 64 MiB file, 6 data servers on loopback, 5 rounds, median (min..max)\n\
encode job                  115 MiB/s of file data (one run)\n\
direct (k servers)         1402 MiB/s (1229..1651)   x direct 1.00 (baseline)\n\
assembled (1 server)        873 MiB/s (595..894)   x direct 0.62\n";
        let p = parse_ec_reads(text);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0], ("direct (k servers)".into(), 1402.0, 1229.0, 1651.0));
        let rows = rust_rows(text);
        assert_eq!(rows[1].base, Some(1402.0));
        assert!(table(&rows).contains("| 873 (595..894) | 0.62 |"));
    }

    #[test]
    fn the_plan_reads_every_variant_each_round_then_kills_once() {
        let p = plan(3, &[0, 15360]);
        let reads = p.iter().filter(|s| matches!(s, Step::Read { .. })).count();
        assert_eq!(reads, 2 * 3 * 4);
        assert_eq!(p.iter().filter(|s| **s == Step::Kill).count(), 1);
        let kill = p.iter().position(|s| *s == Step::Kill).unwrap_or(0);
        assert!(p[..kill].iter().all(|s| match s {
            Step::Read { label, .. } => label.starts_with("healthy-"),
            _ => true,
        }));
        assert_eq!(p[0].word(), "healthy-auto:/mnt:0");
        assert!(
            p.iter().all(|s| !s.word().contains(' ')),
            "plan words are split on spaces"
        );
    }
}
