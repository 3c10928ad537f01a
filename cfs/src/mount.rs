//! `cfs mount` and `cfs umount`: the FUSE client (crate `fuse-client`). `cfs mount` returns
//! once the file system is mounted, leaving a daemon (this binary again, `--foreground`, in a
//! process group of its own) that serves it until it is unmounted.
use clap::Args;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use thiserror::Error;

#[derive(Args, Debug, Clone)]
pub struct MountArgs {
    /// NFS server (the MDS) address.
    #[arg(long, default_value = "127.0.0.1:2049")]
    server: String,
    /// Directory of the server's namespace to mount.
    #[arg(long, default_value = "/")]
    path: String,
    /// Stay in the foreground (the daemon itself).
    #[arg(long)]
    foreground: bool,
    /// FUSE writeback cache: faster small writes for a file only this client uses; a
    /// file another client changes may keep its old size here (no close-to-open).
    #[arg(long)]
    writeback_cache: bool,
    /// Largest read and write the kernel sends (bytes).
    #[arg(long, default_value_t = 1 << 20)]
    max_io: u32,
    /// libfabric provider (tcp, sockets, verbs, ...): data-server I/O with RMA where the data
    /// servers offer it, TCP otherwise.
    #[arg(long)]
    fabric: Option<String>,
    /// Log file of the daemon (default: none).
    #[arg(long)]
    log: Option<PathBuf>,
    /// Where to mount.
    mountpoint: PathBuf,
}

#[derive(Args, Debug, Clone)]
pub struct UmountArgs {
    mountpoint: PathBuf,
}

#[derive(Debug, Error)]
pub enum MountError {
    #[error("bad server address {0:?} (expected HOST:PORT)")]
    BadServer(String),
    #[error(transparent)]
    Fuse(#[from] fuse_client::MountError),
    #[error("cannot start the mount daemon: {0}")]
    Spawn(std::io::Error),
    #[error("{0}")]
    Daemon(String),
    #[error("cannot unmount {path}: {why}")]
    Umount { path: PathBuf, why: String },
}

fn server(s: &str) -> Result<SocketAddr, MountError> {
    s.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| MountError::BadServer(s.to_string()))
}

/// The line the daemon prints on its stdout once mounted.
const READY: &str = "cfs-mount-ready";

pub fn mount(a: MountArgs) -> Result<(), MountError> {
    let addr = server(&a.server)?;
    if !a.foreground {
        return daemonize(&a);
    }
    let opts = fuse_client::Options {
        writeback_cache: a.writeback_cache,
        max_io: a.max_io,
        ..Default::default()
    };
    let args = fuse_client::MountArgs {
        server: addr,
        path: a.path.clone(),
        mountpoint: a.mountpoint.clone(),
        opts,
        fabric: a.fabric.clone(),
    };
    let r = fuse_client::mount(args, || {
        let mut out = std::io::stdout();
        let _ = writeln!(out, "{READY}");
        let _ = out.flush();
    });
    if let Err(e) = &r {
        // The parent shows this line to the user.
        println!("error: {e}");
    }
    r.map_err(Into::into)
}

/// Runs this binary again as the daemon and waits for it to say it mounted (or why not).
fn daemonize(a: &MountArgs) -> Result<(), MountError> {
    let exe = std::env::current_exe().map_err(MountError::Spawn)?;
    let mut cmd = Command::new(exe);
    cmd.arg("mount")
        .arg("--foreground")
        .arg("--server")
        .arg(&a.server)
        .arg("--path")
        .arg(&a.path)
        .arg("--max-io")
        .arg(a.max_io.to_string());
    if a.writeback_cache {
        cmd.arg("--writeback-cache");
    }
    if let Some(p) = &a.fabric {
        cmd.arg("--fabric").arg(p);
    }
    cmd.arg(&a.mountpoint);
    let stderr = match &a.log {
        Some(p) => Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(MountError::Spawn)?,
        ),
        None => Stdio::null(),
    };
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        // Its own process group: a Ctrl-C at the terminal that ran `cfs mount` must not
        // take the mount down with it.
        .process_group(0)
        .spawn()
        .map_err(MountError::Spawn)?;
    let Some(out) = child.stdout.take() else {
        return Err(MountError::Daemon("no pipe to the mount daemon".into()));
    };
    let mut line = String::new();
    let _ = BufReader::new(out).read_line(&mut line);
    if line.trim() == READY {
        return Ok(());
    }
    let _ = child.wait();
    let why = line.trim().strip_prefix("error: ").unwrap_or(line.trim());
    Err(MountError::Daemon(if why.is_empty() {
        "the mount daemon exited without mounting".into()
    } else {
        why.to_string()
    }))
}

/// `fusermount3 -u`, or umount(8) where that is missing.
pub fn umount(a: UmountArgs) -> Result<(), MountError> {
    let mut why = String::new();
    for (prog, args) in [("fusermount3", vec!["-u"]), ("umount", vec![])] {
        match Command::new(prog).args(&args).arg(&a.mountpoint).output() {
            Ok(o) if o.status.success() => return Ok(()),
            Ok(o) => why = String::from_utf8_lossy(&o.stderr).trim().to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => why = e.to_string(),
        }
    }
    Err(MountError::Umount {
        path: a.mountpoint,
        why,
    })
}
