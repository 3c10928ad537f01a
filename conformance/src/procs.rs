//! Small process helpers: run a command and capture its output, signal a PID we started.

use crate::error::{Error, IoContext, Result};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Run to completion; Err with the tail of stderr when it exits non-zero.
pub fn run(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .ctx(|| format!("spawn {shown}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(Error::Command {
            cmd: shown,
            status: out.status.to_string(),
            detail: tail(&err, 15),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Run with inherited stdout/stderr so long steps (apt, downloads) show progress.
pub fn run_visible(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .ctx(|| format!("spawn {shown}"))?;
    if !status.success() {
        return Err(Error::Command {
            cmd: shown,
            status: status.to_string(),
            detail: "see output above".into(),
        });
    }
    Ok(())
}

pub fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

pub fn signal(pid: u32, sig: &str) {
    // Only ever called with PIDs this harness spawned; failure means it is already gone.
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// SIGTERM, wait up to `grace`, then SIGKILL; always reaps.
pub fn stop(child: &mut Child, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    signal(child.id(), "TERM");
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

pub fn have(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Signal a whole process group we created with `process_group(0)` (its id is the leader's PID).
pub fn signal_group(pgid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg("--")
        .arg(format!("-{pgid}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}
