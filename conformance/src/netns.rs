//! ganesha's NFSv3 needs rpcbind, and a host-wide rpcbind (port 111) is not ours to start or
//! touch. So runs against ganesha re-execute this program inside a private network + mount
//! namespace: its own loopback, its own /run, its own rpcbind; qemu's user-mode networking then
//! reaches that namespace's loopback. Everything in it ends when the run ends.

use crate::error::{Error, IoContext, Result};
use crate::procs;
use std::process::Command;

const MARK: &str = "CFS_CONFORMANCE_IN_NETNS";

pub fn inside() -> bool {
    std::env::var_os(MARK).is_some()
}

/// Run this same command line inside fresh namespaces; returns its exit code.
pub fn reexec() -> Result<i32> {
    let exe = std::env::current_exe().ctx(|| "current_exe".into())?;
    let status = Command::new("unshare")
        .args(["--net", "--mount", "--propagation", "private", "--"])
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env(MARK, "1")
        .status()
        .ctx(|| "spawn unshare (needs root)".into())?;
    status
        .code()
        .ok_or_else(|| Error::Server(format!("namespaced run ended by a signal: {status}")))
}

/// First thing inside the namespaces.
pub fn prepare() -> Result<()> {
    // Once per namespace: `ci` runs two plans in it (the second, Kerberos, after the first).
    static DONE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    if DONE.get().is_some() {
        return Ok(());
    }
    let _ = DONE.set(());
    procs::run(Command::new("ip").args(["link", "set", "lo", "up"]))?;
    // glibc's AI_ADDRCONFIG treats a namespace whose only IPv4 address is 127.0.0.1 as having
    // no IPv4, and ganesha then cannot resolve its Bind_addr; a second loopback address fixes it.
    procs::run(Command::new("ip").args(["addr", "add", "127.0.0.2/8", "dev", "lo"]))?;
    procs::run(Command::new("mount").args(["-t", "tmpfs", "tmpfs", "/run"]))?;
    for d in ["/run/rpcbind", "/run/ganesha"] {
        std::fs::create_dir_all(d).ctx(|| format!("create {d}"))?;
    }
    Ok(())
}
