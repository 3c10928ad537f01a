//! Real `cfs server` processes for the cluster tests (`mds_membership.rs`, `ds_learns_mds.rs`):
//! start, kill -9, wait for the exit or the port; `cfs admin status --json` through a node's
//! admin listener; a file written with pNFS on.
use crate::common::*;
use client::{Client, ClientConfig, CreateMode, PnfsStats, SetAttrs, StableHow4};
use proto::nfs4::{OPEN4_SHARE_ACCESS_BOTH, OPEN4_SHARE_ACCESS_READ};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Shards of the file systems these tests make (`CFS_SHARDS`), unless a test sets its own.
pub const SHARDS: &str = "8";

pub struct Proc {
    pub name: String,
    pub dir: PathBuf,
    pub args: Vec<String>,
    proc_: Option<KillOnDrop>,
    starts: u32,
    /// `CFS_SHARDS` for it.
    pub shards: &'static str,
}

impl Proc {
    pub fn new(tmp: &Path, name: &str, args: &[&str]) -> Proc {
        let dir = tmp.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        Proc {
            name: name.into(),
            dir,
            args: args.iter().map(|s| s.to_string()).collect(),
            proc_: None,
            starts: 0,
            shards: SHARDS,
        }
    }

    /// `cfs server --config` on its own `config()`.
    pub fn server(tmp: &Path, name: &str) -> Proc {
        let mut p = Proc::new(tmp, name, &[]);
        p.args = vec![
            "server".into(),
            "--config".into(),
            p.config().to_string_lossy().into(),
        ];
        p
    }

    pub fn config(&self) -> PathBuf {
        self.dir.join("cfs.toml")
    }

    pub fn start(&mut self) {
        self.starts += 1;
        let log = std::fs::File::create(self.log(self.starts)).expect("log");
        let child = Command::new(BIN)
            .args(&self.args)
            .env("CFS_SHARDS", self.shards)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn cfs");
        self.proc_ = Some(KillOnDrop(child));
    }

    /// The log of its `n`th start.
    pub fn log(&self, n: u32) -> PathBuf {
        self.dir.join(format!("server-{n}.log"))
    }

    /// The log of its last start.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log(self.starts)).unwrap_or_default()
    }

    pub fn kill9(&mut self) {
        self.proc_ = None;
    }

    /// The exit status once it exited on its own, waiting up to `limit`.
    pub fn exited(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        let p = self.proc_.as_mut()?;
        loop {
            if let Some(st) = p.0.try_wait().expect("wait") {
                return Some(st);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Waits (bounded) until `p` accepts connections at `addr`.
pub fn wait_listening(addr: SocketAddr, p: &Proc) {
    let start = Instant::now();
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{} did not start:\n{}",
            p.name,
            p.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `cfs admin ARGS` against `via`'s admin listener (named in its config).
pub fn admin(tmp: &Path, via: &Proc, args: &[&str]) -> Out {
    let config = via.config().to_string_lossy().into_owned();
    let mut all = vec!["admin"];
    all.extend_from_slice(args);
    all.extend(["--config", config.as_str()]);
    cfs(tmp, &all)
}

fn admin_status(tmp: &Path, via: &Proc) -> Out {
    admin(tmp, via, &["status", "--json"])
}

/// The status through `via`'s admin listener; `None` while it is not up yet.
pub fn try_status(tmp: &Path, via: &Proc) -> Option<serde_json::Value> {
    let o = admin_status(tmp, via);
    if !o.ok() {
        return None;
    }
    serde_json::from_str(o.text().trim()).ok()
}

pub fn status(tmp: &Path, via: &Proc) -> serde_json::Value {
    let o = admin_status(tmp, via);
    assert!(o.ok(), "status via {}: {}", via.name, o.stderr);
    serde_json::from_str(o.text().trim()).expect("status JSON")
}

/// Waits (bounded) until `ok` holds for the status seen through `via`; the last status's
/// metadata and data servers go into the failure message.
pub fn until_status(
    tmp: &Path,
    via: &Proc,
    what: &str,
    limit: Duration,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let v = try_status(tmp, via);
        if let Some(v) = &v {
            if ok(v) {
                eprintln!("{what}: after {:?}", start.elapsed());
                return v.clone();
            }
        }
        assert!(
            start.elapsed() < limit,
            "{what} after {limit:?}: {}",
            v.map_or("no status".to_string(), |v| format!(
                "{} {}",
                v["mds"]["metadata"], v["data_servers"]
            ))
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Writes `path` through `at` with pNFS on; the client's pNFS counters.
pub async fn write_file(at: SocketAddr, path: &str, data: &[u8]) -> client::Result<PnfsStats> {
    let mut cfg = ClientConfig::new(at);
    cfg.pnfs = true;
    let c = Client::connect(cfg).await?;
    let create = Some(CreateMode::Unchecked(SetAttrs {
        mode: Some(0o644),
        size: Some(0),
        ..Default::default()
    }));
    let f = c.open_path(path, OPEN4_SHARE_ACCESS_BOTH, create).await?;
    c.write_all(&f, 0, data, StableHow4::FileSync4).await?;
    c.commit_file(&f).await?;
    c.close(&f).await?;
    let stats = c.pnfs_stats().unwrap_or_default();
    let _ = c.shutdown().await;
    Ok(stats)
}

/// Reads the whole of `path` through `at` with pNFS on.
pub async fn read_file(at: SocketAddr, path: &str) -> client::Result<Vec<u8>> {
    let mut cfg = ClientConfig::new(at);
    cfg.pnfs = true;
    let c = Client::connect(cfg).await?;
    let f = c.open_path(path, OPEN4_SHARE_ACCESS_READ, None).await?;
    let (data, _) = c.read_full(&f, 0, f.stat.size as u32).await?;
    c.close(&f).await?;
    let _ = c.shutdown().await;
    Ok(data)
}
