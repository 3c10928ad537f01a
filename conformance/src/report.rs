//! Results: one record per scenario × kernel × NFS version × server, a terminal table and JSON.

use crate::error::{IoContext, Result};
use crate::evidence::PnfsEvidence;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Pass,
    Fail,
    /// failed only in ways recorded as a known defect of this (baseline) server
    KnownFail,
    /// the mount was refused for a version the server never promised
    NotOffered,
    /// the harness could not run the case (server would not start, kernel missing, ...)
    Error,
}

impl Status {
    pub fn short(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::KnownFail => "KNOWN",
            Status::NotOffered => "n/o",
            Status::Error => "ERROR",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct CaseResult {
    pub server: String,
    pub server_version: String,
    pub scenario: String,
    pub kernel: String,
    pub kernel_version: String,
    pub vers: String,
    pub status: Status,
    /// why it is not a pass, in one line
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub known_issue: Option<String>,
    pub duration_s: f64,
    /// the guest crashed before the scenario started and was booted once more
    pub retried: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_reason: Option<String>,
    pub metrics: BTreeMap<String, f64>,
    /// NFS per-operation call counts from the guest's /proc/self/mountstats (non-zero only)
    pub mountstats: BTreeMap<String, u64>,
    /// per-op counts of further RPC sections of the mount's mountstats block ("v3:READ")
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub mountstats_other: BTreeMap<String, u64>,
    /// mean round-trip time per op in ms, as the guest client measured it (mountstats)
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub mountstats_rtt_ms: BTreeMap<String, f64>,
    /// `pnfs=` of the mount's mountstats ("LAYOUT_FLEX_FILES", "not configured")
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pnfs: Option<String>,
    /// cfs-cluster `pnfs` scenario: client op counts joined with the cluster's byte counters
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pnfs_evidence: Option<PnfsEvidence>,
    /// cfs-cluster `pnfs-fault` / `pnfs-cross`: what the host did (killed data server, counters)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_ops: Option<crate::hostops::HostReport>,
    /// cfs kinds, a case that did not pass: the server's state directory with its logs
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_logs: Option<String>,
    /// cfs kinds, a case that did not pass: the last lines the servers logged during it
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub server_log_tail: Vec<String>,
    pub checks_passed: usize,
    pub failures: Vec<String>,
    /// full guest output for anything that is not a pass
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub output: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub console_tail: String,
}

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
    pub known_fail: usize,
    pub not_offered: usize,
    pub errors: usize,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub command: Vec<String>,
    pub started_unix: u64,
    pub wall_s: f64,
    pub summary: Summary,
    pub results: Vec<CaseResult>,
}

pub fn summarize(results: &[CaseResult]) -> Summary {
    let mut s = Summary::default();
    for r in results {
        match r.status {
            Status::Pass => s.passed += 1,
            Status::Fail => s.failed += 1,
            Status::KnownFail => s.known_fail += 1,
            Status::NotOffered => s.not_offered += 1,
            Status::Error => s.errors += 1,
        }
    }
    s
}

pub fn write_json(report: &Report, path: &Path) -> Result<()> {
    let text = serde_json::to_string_pretty(report)?;
    std::fs::write(path, text).ctx(|| format!("write {path:?}"))
}

/// One table per server: scenarios down, kernel/version across.
pub fn print_table(results: &[CaseResult]) {
    let mut servers: Vec<&str> = Vec::new();
    for r in results {
        if !servers.contains(&r.server.as_str()) {
            servers.push(&r.server);
        }
    }
    for server in servers {
        let rows: Vec<&CaseResult> = results.iter().filter(|r| r.server == server).collect();
        let mut cols: Vec<(String, String)> = Vec::new();
        let mut scen: Vec<&str> = Vec::new();
        for r in &rows {
            let c = (r.kernel.clone(), r.vers.clone());
            if !cols.contains(&c) {
                cols.push(c);
            }
            if !scen.contains(&r.scenario.as_str()) {
                scen.push(&r.scenario);
            }
        }
        let version = rows
            .first()
            .map(|r| r.server_version.as_str())
            .unwrap_or("");
        println!("\n== server {server} ({version})");
        print!("{:<12}", "scenario");
        for (k, v) in &cols {
            print!(" {:>14}", format!("{k}/v{v}"));
        }
        println!();
        for s in scen {
            print!("{s:<12}");
            for (k, v) in &cols {
                let cell = rows
                    .iter()
                    .find(|r| r.scenario == s && &r.kernel == k && &r.vers == v)
                    .map(|r| {
                        let retry = if r.retried { "*" } else { "" };
                        format!("{}{retry} {:>5.1}s", r.status.short(), r.duration_s)
                    })
                    .unwrap_or_else(|| "-".into());
                print!(" {cell:>14}");
            }
            println!();
        }
        let kv: Vec<String> = rows
            .iter()
            .map(|r| format!("{}={}", r.kernel, r.kernel_version))
            .fold(Vec::new(), |mut acc, s| {
                if !acc.contains(&s) {
                    acc.push(s);
                }
                acc
            });
        println!(
            "kernels: {}   (* = guest crashed during boot and was booted again)",
            kv.join(" ")
        );
    }
    let notable: Vec<&CaseResult> = results
        .iter()
        .filter(|r| r.status != Status::Pass)
        .collect();
    if !notable.is_empty() {
        println!("\nnot passed:");
        for r in notable {
            let why = r
                .known_issue
                .as_deref()
                .or(r.reason.as_deref())
                .unwrap_or("");
            println!(
                "  {} {} {}/v{} {}: {why}",
                r.status.short(),
                r.server,
                r.kernel,
                r.vers,
                r.scenario
            );
            for f in r.failures.iter().take(8) {
                println!("      {f}");
            }
            // a known defect's kernel messages are the defect's, already explained
            let explained = r.status == Status::KnownFail;
            for l in r
                .output
                .iter()
                .filter(|l| !explained && l.starts_with("INFO: dmesg:"))
            {
                println!("      {l}");
            }
            if let Some(d) = &r.server_logs {
                println!("      server logs: {d}");
            }
            for l in &r.server_log_tail {
                println!("        {l}");
            }
        }
    }
    let metrics: Vec<&CaseResult> = results.iter().filter(|r| !r.metrics.is_empty()).collect();
    if !metrics.is_empty() {
        println!("\nnumbers:");
        for r in metrics {
            let m: Vec<String> = r.metrics.iter().map(|(k, v)| format!("{k}={v}")).collect();
            println!(
                "  {} {}/v{} {}: {}",
                r.server,
                r.kernel,
                r.vers,
                r.scenario,
                m.join(" ")
            );
            if r.scenario == "bench" && !r.mountstats_rtt_ms.is_empty() {
                let busy = r.mountstats.iter().filter(|(_, n)| **n >= 100);
                let rtt: Vec<String> = busy
                    .filter_map(|(op, _)| {
                        r.mountstats_rtt_ms
                            .get(op)
                            .map(|ms| format!("{op}={ms:.2}"))
                    })
                    .collect();
                println!("    mean RTT ms (ops >= 100): {}", rtt.join(" "));
            }
        }
    }
    let pnfs: Vec<String> = results
        .iter()
        .filter(|r| r.scenario == "pnfs")
        .map(|r| {
            let g = |k: &str| r.mountstats.get(k).copied().unwrap_or(0);
            let mut l = format!(
                "  {} {}/v{}: pnfs={} LAYOUTGET={} GETDEVICEINFO={} LAYOUTRETURN={} OPEN={} READ={} WRITE={} COMMIT={}",
                r.server,
                r.kernel,
                r.vers,
                r.pnfs.as_deref().unwrap_or("?"),
                g("LAYOUTGET"),
                g("GETDEVICEINFO"),
                g("LAYOUTRETURN"),
                g("OPEN"),
                g("READ"),
                g("WRITE"),
                g("COMMIT")
            );
            if !r.mountstats_other.is_empty() {
                let o: Vec<String> = r
                    .mountstats_other
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                l.push_str(&format!(" [other RPC sections: {}]", o.join(" ")));
            }
            if let Some(e) = &r.pnfs_evidence {
                l.push_str(&format!("\n    INFO: pnfs evidence: {}", e.summary()));
            }
            l
        })
        .collect();
    if !pnfs.is_empty() {
        println!("\npNFS evidence (client op counts in the pnfs scenario; all scenarios' counts are in the JSON):");
        for l in pnfs {
            println!("{l}");
        }
        println!("{PNFS_NOTE}");
    }
    println!("{LEGEND}");
}

/// What the words of the table mean, printed under it (so nobody needs the README to read it).
pub const LEGEND: &str = "\nlegend: PASS the scenario's checks held; FAIL one did not (counted); \
KNOWN a failure matching a documented defect of that server or kernel (conformance/src/known.rs; \
not counted); n/o \"not offered\": the server refused a version or scenario it never promised \
(e.g. NFSv4.0 on cfs, pnfs-fault on a server without data servers; not counted unless the version \
was asked for with --vers); ERROR the harness could not run the case (counted).";

/// Why LAYOUTGET can read 0 beside layouts granted, and what a pnfs PASS means.
pub const PNFS_NOTE: &str = "note: LAYOUTGET=0 beside layouts granted is expected: Linux sends its \
LAYOUTGET inside the OPEN compound (PNFS_LAYOUTGET_ON_OPEN) and mountstats counts that as OPEN, so \
the MDS's layouts_granted is the evidence. pnfs=\"not configured\" means the server offered no layouts: its \
pnfs PASS then only says the file data was right, not that pNFS was used.";
