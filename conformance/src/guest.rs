//! Boot one guest through host/run-guest.sh and turn its serial output into structured facts.

use crate::error::{IoContext, Result};
use crate::paths;
use crate::procs;
use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct GuestJob {
    pub kver: String,
    pub port: u16,
    pub vers: String,
    pub export: String,
    pub mnt_port: Option<u16>,
    /// v3: name no ports; mount.nfs asks the server's rpcbind for NFS and MOUNT
    pub rpcbind: bool,
    pub script: PathBuf,
    /// VAR=value words for the guest environment
    pub env: Vec<String>,
    pub timeout: Duration,
    pub smp: u32,
    /// record every frame of the guest's NIC here (the `wire` scenario)
    pub pcap: Option<PathBuf>,
}

/// Exit codes run-guest.sh reserves (anything else is the scenario's own status).
pub const RC_MOUNT_FAILED: i32 = 99;
pub const RC_TIMEOUT: i32 = 124;
pub const RC_NO_EXIT: i32 = 125;

#[derive(Debug, Default, Clone)]
pub struct GuestRun {
    pub rc: i32,
    pub kernel: Option<String>,
    /// the script's own lines (markers and mountstats removed)
    pub output: Vec<String>,
    pub metrics: BTreeMap<String, f64>,
    /// per-op call counts from /proc/self/mountstats (non-zero only): the mount's own RPC
    /// program (NFSv4 for a v4 mount; the flexfiles driver counts its DS READ/WRITE/COMMIT here)
    pub mountstats: BTreeMap<String, u64>,
    /// per-op counts of any further RPC iostats section in the mount's block (another
    /// program/version, e.g. an NFSv3 data-server client), keyed "v3:READ"
    pub mountstats_other: BTreeMap<String, u64>,
    /// per-op (ops, total RTT ms) of the mount's own program: where a benchmark's time went on
    /// the wire, as the client saw it
    pub mountstats_rtt: BTreeMap<String, (u64, u64)>,
    /// the `pnfs=` value of the mount's nfsv4 line ("LAYOUT_FLEX_FILES", "not configured")
    pub pnfs: Option<String>,
    pub mount_error: Option<String>,
    /// the guest got as far as starting the scenario (so a crash is not a boot flake)
    pub script_started: bool,
    pub console_tail: String,
    pub wall: f64,
}

impl GuestRun {
    pub fn failures(&self) -> Vec<&str> {
        self.output
            .iter()
            .filter(|l| l.starts_with("FAIL"))
            .map(String::as_str)
            .collect()
    }
}

pub fn run(job: &GuestJob) -> Result<GuestRun> {
    let runs = paths::cache_dir().join("runs");
    std::fs::create_dir_all(&runs).ctx(|| format!("create {runs:?}"))?;
    let dir = runs.join(format!(
        "g-{}-{}",
        std::process::id(),
        RUN_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).ctx(|| format!("create {dir:?}"))?;
    let stderr_path = dir.join("stderr.log");
    let stderr = std::fs::File::create(&stderr_path).ctx(|| format!("create {stderr_path:?}"))?;
    let mut cmd = Command::new(paths::host_script("run-guest.sh"));
    cmd.arg(&job.kver)
        .arg(if job.rpcbind {
            "rpcbind".to_string()
        } else {
            job.port.to_string()
        })
        .arg(&job.vers)
        .arg(&job.script)
        .arg(&dir)
        .env("CFS_CONFORMANCE_CACHE", paths::cache_dir())
        .env("EXPORT", &job.export)
        .env("TIMEOUT", job.timeout.as_secs().to_string())
        .env("SMP", job.smp.to_string())
        .env("GUEST_ENV", job.env.join("\n"))
        .stdin(Stdio::null())
        // the guest's output is read from out.log; a pipe nobody drains could block the run
        .stdout(Stdio::null())
        .stderr(stderr)
        // own process group, so a stuck run can be ended together with its qemu
        .process_group(0);
    if let Some(p) = &job.pcap {
        cmd.env("PCAP", p);
    }
    if job.rpcbind {
        cmd.env("MNTPORT", "rpcbind");
    } else if let Some(p) = job.mnt_port {
        cmd.env("MNTPORT", p.to_string());
    }
    if let Some(realm) = crate::kerberos::active() {
        // The guest's name as /init sets it (the last assignment wins, as in its env file).
        let name = job
            .env
            .iter()
            .rev()
            .find_map(|e| e.strip_prefix("GUEST_NAME="))
            .unwrap_or("cfsguest");
        let overlay = realm.guest_overlay(&job.kver, name)?;
        let dirs: Vec<String> = overlay.iter().map(|d| d.display().to_string()).collect();
        cmd.env("GUEST_OVERLAY", dirs.join(" "))
            .env("MNTOPTS", realm.mount_option());
    }
    let t0 = Instant::now();
    let mut child = cmd.spawn().ctx(|| "spawn run-guest.sh".into())?;
    // run-guest.sh bounds qemu with `timeout`; this is the backstop if the script itself hangs
    let deadline = t0 + job.timeout + Duration::from_secs(60);
    let mut booted = false;
    let status = loop {
        if let Some(st) = child.try_wait().ctx(|| "wait run-guest.sh".into())? {
            break st;
        }
        if Instant::now() > deadline {
            procs::signal_group(child.id(), "KILL");
            break child.wait().ctx(|| "reap run-guest.sh".into())?;
        }
        if !booted && t0.elapsed() > BOOT_DEADLINE {
            booted = reached_init(&dir.join("out.log"));
            if !booted {
                // Ended here, it counts as a boot crash and is booted again (runner::boot)
                // instead of holding the run until the case's timeout.
                use std::io::Write;
                let _ = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&stderr_path)
                    .and_then(|mut f| {
                        writeln!(
                            f,
                            "HARNESS: the guest's init did not start within {} s: the kernel \
                             hung while booting; stopped",
                            BOOT_DEADLINE.as_secs()
                        )
                    });
                procs::signal_group(child.id(), "KILL");
                break child.wait().ctx(|| "reap run-guest.sh".into())?;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let wall = t0.elapsed().as_secs_f64();
    let out = std::fs::read(dir.join("out.log")).unwrap_or_default();
    let console = std::fs::read(dir.join("console.log")).unwrap_or_default();
    let mut run = parse(&String::from_utf8_lossy(&out));
    run.rc = status.code().unwrap_or(RC_NO_EXIT);
    run.wall = wall;
    let harness_err = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    run.console_tail = procs::tail(
        &format!("{}{harness_err}", String::from_utf8_lossy(&console)).replace('\r', ""),
        30,
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(run)
}

static RUN_SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A guest's init writes `@@KERNEL@@` first thing, ~5-10 s after qemu starts under TCG here
/// (longer on a loaded machine). The bookworm kernel has been seen to stall in RCU while
/// booting (2026-11-30: `rcu_preempt kthread starved`, no panic, no init), which held a CI
/// case until its timeout of several minutes.
const BOOT_DEADLINE: Duration = Duration::from_secs(120);

/// Whether the guest's init has started (its first line is in `out`).
fn reached_init(out: &Path) -> bool {
    std::fs::read(out).is_ok_and(|b| b.windows(10).any(|w| w == b"@@KERNEL@@"))
}

pub fn parse(text: &str) -> GuestRun {
    let mut run = GuestRun::default();
    let mut in_stats = false;
    let mut in_ops = false;
    // the first "p/v: PROG/VERS" of the block is the mount's own; ops under a later, different
    // one go to mountstats_other
    let mut main_pv: Option<String> = None;
    let mut other_pv: Option<String> = None;
    for raw in text.lines() {
        let line = raw.trim_end_matches('\r');
        if let Some(k) = line.strip_prefix("@@KERNEL@@ ") {
            run.kernel = Some(k.trim().to_owned());
        } else if line.starts_with("@@SCRIPT_START@@") {
            run.script_started = true;
        } else if let Some(m) = line.strip_prefix("@@MOUNT_FAILED@@") {
            run.mount_error = Some(m.trim().to_owned());
        } else if line.starts_with("@@MOUNTSTATS_BEGIN@@") {
            in_stats = true;
        } else if line.starts_with("@@MOUNTSTATS_END@@") {
            in_stats = false;
            in_ops = false;
        } else if line.starts_with("@@GUEST_EXIT@@") {
        } else if in_stats {
            let t = line.trim();
            if let Some(pv) = t.split("p/v: ").nth(1) {
                let pv = pv.split_whitespace().next().unwrap_or("").to_owned();
                in_ops = false;
                match &main_pv {
                    None => main_pv = Some(pv),
                    Some(m) if *m == pv => other_pv = None,
                    Some(_) => other_pv = Some(pv),
                }
            } else if t.starts_with("per-op statistics") {
                in_ops = true;
            } else if t.starts_with("device ") {
                in_ops = false;
                main_pv = None;
                other_pv = None;
            } else if let Some(v) = t
                .starts_with("nfsv4:")
                .then(|| t.split("pnfs=").nth(1))
                .flatten()
            {
                run.pnfs = Some(v.split(',').next().unwrap_or("").trim().to_owned());
            } else if in_ops {
                if let Some((op, rest)) = t.split_once(':') {
                    let n = rest
                        .split_whitespace()
                        .next()
                        .and_then(|n| n.parse::<u64>().ok());
                    if let Some(n) = n.filter(|n| *n > 0) {
                        let op = op.trim();
                        // ops trans timeouts bytes_sent bytes_recv queue_ms rtt_ms execute_ms
                        let rtt = rest
                            .split_whitespace()
                            .nth(6)
                            .and_then(|v| v.parse::<u64>().ok())
                            .unwrap_or(0);
                        match &other_pv {
                            None => {
                                *run.mountstats.entry(op.to_owned()).or_insert(0) += n;
                                let e = run.mountstats_rtt.entry(op.to_owned()).or_insert((0, 0));
                                e.0 += n;
                                e.1 += rtt;
                            }
                            Some(pv) => {
                                let v = pv.rsplit('/').next().unwrap_or(pv);
                                *run.mountstats_other
                                    .entry(format!("v{v}:{op}"))
                                    .or_insert(0) += n;
                            }
                        }
                    }
                }
            }
        } else if let Some(m) = line.strip_prefix("@@METRIC@@ ") {
            let mut w = m.split_whitespace();
            if let (Some(k), Some(v)) = (w.next(), w.next().and_then(|v| v.parse::<f64>().ok())) {
                run.metrics.insert(k.to_owned(), v);
            }
        } else {
            run.output.push(line.to_owned());
        }
    }
    run
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_markers_metrics_and_mountstats() {
        let text = "@@KERNEL@@ 6.1.0-56-amd64\n@@SCRIPT_START@@\nPASS: a\nFAIL: b: expected 'x', got 'y'\n\
@@METRIC@@ write_mib_s 12.5 MiB/s\n@@MOUNTSTATS_BEGIN@@\ndevice 10.0.2.2:/ mounted on /mnt with fstype nfs4\n\
\tper-op statistics\n\t        NULL: 1 1 0 44 24 46 10 59 0\n\t        READ: 0 0 0 0 0 0 0 0 0\n\t   LAYOUTGET: 7 7 0 1 1 1 1 1 0\n\
@@MOUNTSTATS_END@@\n@@GUEST_EXIT@@ 1\n";
        let r = parse(text);
        assert_eq!(r.kernel.as_deref(), Some("6.1.0-56-amd64"));
        assert!(r.script_started);
        assert_eq!(r.failures(), vec!["FAIL: b: expected 'x', got 'y'"]);
        assert_eq!(r.metrics.get("write_mib_s"), Some(&12.5));
        assert_eq!(r.mountstats.get("LAYOUTGET"), Some(&7));
        assert_eq!(r.mountstats.get("NULL"), Some(&1));
        assert_eq!(r.mountstats_rtt.get("NULL"), Some(&(1, 10)));
        assert!(!r.mountstats.contains_key("READ"));
        assert_eq!(r.output.len(), 2);
    }

    #[test]
    fn parses_pnfs_and_a_second_rpc_program() {
        let text = "@@SCRIPT_START@@\n@@MOUNTSTATS_BEGIN@@\ndevice 10.0.2.2:/ mounted on /mnt with fstype nfs4 statvers=1.1\n\
\tnfsv4:\tbm0=0xfcffafff,sessions,pnfs=LAYOUT_FLEX_FILES,lease_time=10\n\
\tRPC iostats version: 1.1  p/v: 100003/4 (nfs)\n\tper-op statistics\n\t        READ: 16 16 0 1 1 1 1 1 0\n\
\tGETDEVICEINFO: 3 3 0 1 1 1 1 1 0\n\tRPC iostats version: 1.1  p/v: 100003/3 (nfs)\n\tper-op statistics\n\
\t        READ: 5 5 0 1 1 1 1 1 0\n@@MOUNTSTATS_END@@\n@@GUEST_EXIT@@ 0\n";
        let r = parse(text);
        assert_eq!(r.pnfs.as_deref(), Some("LAYOUT_FLEX_FILES"));
        assert_eq!(r.mountstats.get("READ"), Some(&16));
        assert_eq!(r.mountstats.get("GETDEVICEINFO"), Some(&3));
        assert_eq!(r.mountstats_other.get("v3:READ"), Some(&5));
    }

    #[test]
    fn init_counts_as_started_only_once_its_first_line_is_out() {
        let d = std::env::temp_dir().join(format!("cfs-reached-init-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let out = d.join("out.log");
        assert!(!reached_init(&out), "no file yet");
        std::fs::write(&out, "").unwrap();
        assert!(!reached_init(&out), "qemu started, nothing from the guest");
        std::fs::write(&out, "[  290.7] rcu: rcu_preempt kthread starved\n").unwrap();
        assert!(!reached_init(&out));
        std::fs::write(&out, "@@KERNEL@@ 6.1.0-56-amd64\n").unwrap();
        assert!(reached_init(&out));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn parses_mount_failure() {
        let r = parse("@@KERNEL@@ 7.2\n@@MOUNT_FAILED@@ mount: mounting 10.0.2.2:/ on /mnt failed: Protocol not supported\n@@GUEST_EXIT@@ 99\n");
        assert!(r
            .mount_error
            .as_deref()
            .is_some_and(|e| e.contains("Protocol not supported")));
        assert!(!r.script_started);
    }
}
