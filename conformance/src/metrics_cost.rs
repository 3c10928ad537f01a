//! What the metrics cost cfs, two ways, in one `hostbench` run:
//!
//! 1. Attribution (deterministic, robust to a shared host's noise): the server's own counters,
//!    scraped from its `/metrics` at the end of every load phase, say how many hook sequences
//!    the phase caused (NFSv4 ops, COMPOUNDs, data-server ops, log fsyncs); `metrics`'
//!    `hook_cost` example times each sequence in a loop; their product over the server CPU the
//!    phase took (utime + stime of the server process) is the metrics' share of server CPU.
//! 2. The direct A/B (`--server cfs-nometrics --server cfs`): server CPU per op with and
//!    without metrics, round by round, summarized as the median of the paired ratios with a
//!    bootstrap interval (`paired`).
use crate::error::{Error, Result};
use crate::procs;
use crate::server::Running;
use serde::Serialize;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The admin listener of a cfs server hostbench started (with `--admin-listen 127.0.0.1:0`).
#[derive(Clone, Debug)]
pub struct Admin {
    pub addr: SocketAddr,
    pub token: String,
}

/// Where the server's admin listener is (it writes `admin.addr` into its data directory when
/// bound to port 0) and its token (`cfs admin token`, derived from the data directory's
/// `admin.secret`).
pub fn admin_of(srv: &Running, cfs: &Path) -> Result<Admin> {
    let dir = srv
        .state_dir()
        .ok_or_else(|| Error::Server("no state directory".into()))?;
    let data = dir.join("data");
    let addr_file = data.join("admin.addr");
    let deadline = Instant::now() + Duration::from_secs(10);
    let addr = loop {
        if let Some(a) = std::fs::read_to_string(&addr_file)
            .ok()
            .and_then(|t| t.trim().parse::<SocketAddr>().ok())
        {
            break a;
        }
        if Instant::now() > deadline {
            return Err(Error::Server(format!("no admin address in {addr_file:?}")));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let conf = dir.join("admin-token.toml");
    let text = format!("data = {:?}\n", data.display().to_string());
    std::fs::write(&conf, text).map_err(|e| Error::Server(format!("write {conf:?}: {e}")))?;
    let token = procs::run(
        Command::new(cfs)
            .args(["admin", "token", "--admin"])
            .arg(addr.to_string())
            .arg("--config")
            .arg(&conf),
    )?
    .trim()
    .to_string();
    Ok(Admin { addr, token })
}

/// Totals of the server's hook counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Counts {
    pub v4_ops: f64,
    pub compounds: f64,
    pub ds_ops: f64,
    pub log_fsyncs: f64,
}

impl Counts {
    pub fn minus(&self, o: &Counts) -> Counts {
        Counts {
            v4_ops: self.v4_ops - o.v4_ops,
            compounds: self.compounds - o.compounds,
            ds_ops: self.ds_ops - o.ds_ops,
            log_fsyncs: self.log_fsyncs - o.log_fsyncs,
        }
    }

    /// Nanoseconds these hook sequences take at `c`'s cost each.
    pub fn ns(&self, c: &Costs) -> f64 {
        self.v4_ops * c.v4_op_ns
            + self.compounds * c.compound_ns
            + self.ds_ops * c.ds_op_ns
            + self.log_fsyncs * c.log_fsync_ns
    }
}

/// The hook counters in a Prometheus text page (histograms by their `_count`, summed over
/// labels).
pub fn parse_counts(page: &str) -> Counts {
    let mut c = Counts::default();
    for line in page.lines() {
        let Some(v) = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.trim().parse::<f64>().ok())
        else {
            continue;
        };
        let name = line.split(['{', ' ']).next().unwrap_or("");
        match name {
            "cfs_nfs4_operation_duration_seconds_count" => c.v4_ops += v,
            "cfs_nfs4_compounds_total" => c.compounds += v,
            "cfs_ds_operation_duration_seconds_count" => c.ds_ops += v,
            "cfs_mds_log_fsync_duration_seconds_count" => c.log_fsyncs += v,
            _ => {}
        }
    }
    c
}

/// GET /metrics (HTTP/1.1, one connection per scrape, bounded in time).
pub fn scrape(a: &Admin) -> Option<Counts> {
    scrape_page(a).map(|p| parse_counts(&p))
}

/// The sum of a metric's samples over its label sets in a Prometheus text page; None when the
/// page has no sample of it (a server that does not export it).
pub fn sample_sum(page: &str, metric: &str) -> Option<f64> {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(metric))
        .filter_map(|l| l.rsplit(' ').next()?.trim().parse::<f64>().ok())
        .fold(None, |sum, v| Some(sum.unwrap_or(0.0) + v))
}

/// The admin listener of every MDS node of a server the harness started: a single node's
/// (started with `server::ADMIN_ANY_PORT`; `admin_of`), or each node's of a cluster, from its
/// config (`cluster/mds.toml`, `cluster/mdsN.toml`: `[admin] listen`, the token from the
/// cluster secret through `cfs admin token --config`). (node, listener) in node order.
pub fn mds_admins(srv: &Running, cfs: &Path) -> Result<Vec<(String, Admin)>> {
    let Some(dir) = srv.cluster_dir() else {
        return Ok(vec![("mds".into(), admin_of(srv, cfs)?)]);
    };
    let mut out = Vec::new();
    for name in crate::server::mds_roles(dir) {
        let conf = dir.join(format!("{name}.toml"));
        let toml =
            std::fs::read_to_string(&conf).map_err(|e| Error::Server(format!("{conf:?}: {e}")))?;
        let listen = crate::server::admin_listen(&toml)
            .ok_or_else(|| Error::Server(format!("no [admin] listen in {conf:?}")))?;
        let addr: SocketAddr = match listen.parse::<SocketAddr>() {
            // bound to any free port: the node wrote down which, in its data directory
            Ok(a) if a.port() == 0 => {
                let data = crate::server::toml_string(&toml, "data")
                    .ok_or_else(|| Error::Server(format!("no data directory in {conf:?}")))?;
                let f = Path::new(&data).join("admin.addr");
                std::fs::read_to_string(&f)
                    .ok()
                    .and_then(|t| t.trim().parse().ok())
                    .ok_or_else(|| Error::Server(format!("no admin address in {f:?}")))?
            }
            Ok(a) => a,
            Err(_) => {
                return Err(Error::Server(format!(
                    "[admin] listen {listen:?} in {conf:?}"
                )))
            }
        };
        let token = procs::run(
            Command::new(cfs)
                .args(["admin", "token", "--config"])
                .arg(&conf),
        )?
        .trim()
        .to_string();
        out.push((name, Admin { addr, token }));
    }
    if out.is_empty() {
        return Err(Error::Server(format!("no MDS node's config in {dir:?}")));
    }
    Ok(out)
}

/// GET /metrics (HTTP/1.1, one connection per scrape, bounded in time): the page.
pub fn scrape_page(a: &Admin) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&a.addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        a.addr, a.token
    )
    .ok()?;
    let mut buf = Vec::new();
    s.take(16 << 20).read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// Nanoseconds per hook sequence, as `metrics`' `hook_cost` example prints them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Costs {
    pub v4_op_ns: f64,
    pub compound_ns: f64,
    pub ds_op_ns: f64,
    pub log_fsync_ns: f64,
}

impl Costs {
    fn from_json(v: &Value) -> Option<Costs> {
        let f = |k: &str| v.get(k)?.as_f64();
        Some(Costs {
            v4_op_ns: f("v4_op_ns")?,
            compound_ns: f("compound_ns")?,
            ds_op_ns: f("ds_op_ns")?,
            log_fsync_ns: f("log_fsync_ns")?,
        })
    }

    /// The larger of each figure: the conservative cost.
    pub fn max(&self, o: &Costs) -> Costs {
        Costs {
            v4_op_ns: self.v4_op_ns.max(o.v4_op_ns),
            compound_ns: self.compound_ns.max(o.compound_ns),
            ds_op_ns: self.ds_op_ns.max(o.ds_op_ns),
            log_fsync_ns: self.log_fsync_ns.max(o.log_fsync_ns),
        }
    }
}

/// HOOK_COST_BIN, else target/release/examples/hook_cost.
pub fn hook_cost_binary() -> Option<PathBuf> {
    let b = match std::env::var_os("HOOK_COST_BIN") {
        Some(b) => PathBuf::from(b),
        None => crate::paths::target_dir()
            .join("release")
            .join("examples")
            .join("hook_cost"),
    };
    b.is_file().then_some(b)
}

/// Runs `hook_cost` once; the larger of its one-thread and all-threads figures.
pub fn run_hook_cost(bin: &Path) -> Result<Costs> {
    let out = procs::run(&mut Command::new(bin))?;
    let v: Value = out
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| Error::Server(format!("{bin:?} printed no JSON: {out}")))?;
    let one = v.get("one_thread").and_then(Costs::from_json);
    let all = v.get("all_threads").and_then(Costs::from_json);
    match (one, all) {
        (Some(a), Some(b)) => Ok(a.max(&b)),
        _ => Err(Error::Server(format!("{bin:?}: unexpected output {out}"))),
    }
}

/// What a load phase's line counts as one "op": ops, or MiB for the sequential phases.
fn units(line: &Value) -> Option<(f64, &'static str)> {
    if let Some(n) = line.get("ops").and_then(Value::as_f64) {
        return Some((n, "op"));
    }
    let b = line.get("bytes").and_then(Value::as_f64)?;
    Some((b / f64::from(1u32 << 20), "MiB"))
}

/// One phase of one cfs run: the hooks it caused and the server CPU it took.
#[derive(Clone, Debug, Serialize)]
pub struct PhaseCost {
    pub bench: String,
    pub unit: &'static str,
    pub units: f64,
    pub counts: Counts,
    pub metric_ns_per_unit: f64,
    pub server_cpu_us_per_unit: f64,
    /// metric CPU / server CPU
    pub share: f64,
}

/// Phase costs of one run: `lines` are the load generator's lines, `deltas[i]` the hook counts
/// between line i-1 (or the start) and line i.
pub fn phases(lines: &[Value], deltas: &[Option<Counts>], c: &Costs) -> Vec<PhaseCost> {
    lines
        .iter()
        .zip(deltas)
        .filter_map(|(l, d)| {
            let d = (*d)?;
            let bench = l.get("bench")?.as_str()?.to_string();
            let cpu = l.get("server_cpu_s")?.as_f64()?;
            let (n, unit) = units(l)?;
            (n > 0.0 && cpu > 0.0).then(|| {
                let ns = d.ns(c);
                PhaseCost {
                    bench,
                    unit,
                    units: n,
                    counts: d,
                    metric_ns_per_unit: ns / n,
                    server_cpu_us_per_unit: cpu * 1e6 / n,
                    share: ns / (cpu * 1e9),
                }
            })
        })
        .collect()
}

/// The median of `v` (None if empty).
pub fn median(v: &[f64]) -> Option<f64> {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return None;
    }
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    Some(if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    })
}

/// A 95 % percentile-bootstrap interval of the median of `v` (2000 resamples; a fixed seed,
/// so the same numbers give the same interval).
pub fn bootstrap_median(v: &[f64]) -> Option<[f64; 2]> {
    let v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.len() < 2 {
        return None;
    }
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        // xorshift64*
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let mut meds: Vec<f64> = (0..2000)
        .filter_map(|_| {
            let s: Vec<f64> = (0..v.len())
                .map(|_| v[(next() % v.len() as u64) as usize])
                .collect();
            median(&s)
        })
        .collect();
    meds.sort_by(f64::total_cmp);
    let at = |q: f64| meds[((meds.len() - 1) as f64 * q).round() as usize];
    Some([at(0.025), at(0.975)])
}

/// "1.2 % (0.8–1.9 %)": a median share with its min–max over rounds.
pub fn fmt_share(v: &[f64]) -> String {
    let Some(m) = median(v) else {
        return "n/a".into();
    };
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if v.len() > 1 {
        format!("{:.2} % ({:.2}–{:.2} %)", m * 100.0, lo * 100.0, hi * 100.0)
    } else {
        format!("{:.2} %", m * 100.0)
    }
}

/// The attribution table: per phase, medians over the runs given.
pub fn attribution_markdown(runs: &[Vec<PhaseCost>], c: &Costs) -> String {
    let mut order: Vec<String> = Vec::new();
    for p in runs.iter().flatten() {
        if !order.contains(&p.bench) {
            order.push(p.bench.clone());
        }
    }
    let mut out = format!(
        "hook cost (ns, `metrics` hook_cost, worse of 1 and all threads): NFSv4 op {:.0}, COMPOUND {:.0}, data-server op {:.0}, log fsync {:.0}\n\n",
        c.v4_op_ns, c.compound_ns, c.ds_op_ns, c.log_fsync_ns
    );
    out.push_str("| phase | unit | NFSv4 ops | COMPOUNDs | DS ops | log fsyncs | metric ns/unit | server CPU µs/unit | metrics share of server CPU (median, min–max) |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
    let mut worst: Option<f64> = None;
    for b in &order {
        let ps: Vec<&PhaseCost> = runs.iter().flatten().filter(|p| &p.bench == b).collect();
        let per = |f: fn(&PhaseCost) -> f64| median(&ps.iter().map(|p| f(p)).collect::<Vec<_>>());
        let shares: Vec<f64> = ps.iter().map(|p| p.share).collect();
        if let Some(m) = median(&shares) {
            worst = Some(worst.map_or(m, |w| w.max(m)));
        }
        let f = |v: Option<f64>| crate::hostbench::fmt_value(v);
        out.push_str(&format!(
            "| {b} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            ps.first().map_or("op", |p| p.unit),
            f(per(|p| p.counts.v4_ops / p.units)),
            f(per(|p| p.counts.compounds / p.units)),
            f(per(|p| p.counts.ds_ops / p.units)),
            f(per(|p| p.counts.log_fsyncs / p.units)),
            f(per(|p| p.metric_ns_per_unit)),
            f(per(|p| p.server_cpu_us_per_unit)),
            fmt_share(&shares),
        ));
    }
    if let Some(w) = worst {
        out.push_str(&format!(
            "\nmetrics cost at most {:.2} % of server CPU (the worst phase's median){}\n",
            w * 100.0,
            if w < 0.03 {
                ": under the 3 % budget"
            } else {
                ": OVER the 3 % budget"
            }
        ));
    }
    out
}

/// Paired-ratio lines for the A/B: per measure, the median of other/base over rounds, its
/// bootstrap interval and min–max.
pub fn paired_markdown(rows: &[crate::hostbench::Row]) -> String {
    let mut out = String::new();
    for row in rows {
        let Some(((base_name, base), rest)) = row.values.split_first() else {
            continue;
        };
        for (name, other) in rest {
            let r: Vec<f64> = base
                .iter()
                .zip(other)
                .filter_map(|(b, o)| match (b, o) {
                    (Some(b), Some(o)) if *b > 0.0 && o.is_finite() => Some(o / b),
                    _ => None,
                })
                .collect();
            let Some(m) = median(&r) else { continue };
            let ci = bootstrap_median(&r)
                .map(|[a, b]| format!(", 95 % bootstrap {a:.3}–{b:.3}"))
                .unwrap_or_default();
            let lo = r.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = r.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            out.push_str(&format!(
                "| {} | {name}/{base_name} | {m:.3}{ci} | {lo:.3}–{hi:.3} | {} |\n",
                row.title,
                r.len()
            ));
        }
    }
    if out.is_empty() {
        return out;
    }
    format!("| measure | ratio | median of paired ratios | min–max | rounds |\n|---|---|---:|---:|---:|\n{out}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_sum_histogram_counts_over_labels() {
        let page = "# TYPE cfs_nfs4_operation_duration_seconds histogram\n\
            cfs_nfs4_operation_duration_seconds_bucket{op=\"READ\",le=\"+Inf\"} 7\n\
            cfs_nfs4_operation_duration_seconds_count{op=\"READ\"} 7\n\
            cfs_nfs4_operation_duration_seconds_count{op=\"SEQUENCE\"} 9\n\
            cfs_nfs4_compounds_total 9\n\
            cfs_ds_operation_duration_seconds_count{op=\"WRITE\"} 3\n\
            cfs_mds_log_fsync_duration_seconds_count 2\n\
            cfs_mds_log_fsync_duration_seconds_sum 0.5\n";
        let c = parse_counts(page);
        assert_eq!(
            c,
            Counts {
                v4_ops: 16.0,
                compounds: 9.0,
                ds_ops: 3.0,
                log_fsyncs: 2.0
            }
        );
    }

    #[test]
    fn phase_share_is_hook_ns_over_server_cpu() {
        let lines: Vec<Value> = [
            r#"{"bench":"rand_read","ops":1000,"server_cpu_s":0.02}"#,
            r#"{"bench":"seq_write","bytes":2097152,"server_cpu_s":0.001}"#,
            r#"{"bench":"stat","ops":10}"#,
        ]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
        let d = Counts {
            v4_ops: 3000.0,
            compounds: 1000.0,
            ds_ops: 0.0,
            log_fsyncs: 0.0,
        };
        let c = Costs {
            v4_op_ns: 100.0,
            compound_ns: 10.0,
            ds_op_ns: 50.0,
            log_fsync_ns: 50.0,
        };
        let p = phases(&lines, &[Some(d), Some(d), Some(d)], &c);
        // the stat line has no server CPU: no share
        assert_eq!(p.len(), 2);
        // 1000 reads: 3 ops × 100 + 10 = 310 ns each, over 20 µs of server CPU each
        assert_eq!(p[0].metric_ns_per_unit, 310.0);
        assert!((p[0].server_cpu_us_per_unit - 20.0).abs() < 1e-9);
        assert!((p[0].share - 0.0155).abs() < 1e-12);
        assert_eq!((p[1].unit, p[1].units), ("MiB", 2.0));
        let t = attribution_markdown(&[p], &c);
        assert!(
            t.contains("| rand_read | op | 3.00 | 1.00 | 0.000 | 0.000 | 310 | 20.0 | 1.55 % |"),
            "{t}"
        );
        // seq_write: 310 µs of hooks over 1 ms of CPU is the worst phase
        assert!(t.contains("at most 31.00 %") && t.contains("OVER"), "{t}");
    }

    #[test]
    fn median_and_bootstrap_bracket_the_data() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        let v = [1.0, 1.01, 0.99, 1.02, 0.98, 1.0, 1.03];
        let [lo, hi] = bootstrap_median(&v).unwrap();
        assert!(
            lo <= 1.0 && hi >= 1.0 && lo >= 0.98 && hi <= 1.03,
            "{lo} {hi}"
        );
        assert_eq!(bootstrap_median(&[1.0]), None);
    }
}
