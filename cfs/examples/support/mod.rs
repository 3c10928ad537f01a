//! What the benchmark examples share (not an example itself: Cargo takes only
//! `examples/*.rs` and `examples/*/main.rs`): free loopback ports, the cluster's STATUS, and
//! stopping it.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use layout::ClusterSecret;

/// The first of `n` free consecutive ports at or above `from` (spread by the process id, so
/// two benchmarks started together do not race for one).
pub fn free_block(n: u16, from: u16) -> u16 {
    let start = (std::process::id() % 400) as u16 * 16;
    (0..400u16)
        .map(|i| from + (start + i * 16) % 6400)
        .find(|&p| (0..n).all(|i| TcpListener::bind(("127.0.0.1", p + i)).is_ok()))
        .expect("free ports")
}

/// The MDS's STATUS over the cluster control program (`cfs admin status`'s call), if it
/// answers within 7 s.
pub async fn status(
    addr: SocketAddr,
    secret: &ClusterSecret,
) -> Option<proto::cluster::StatusResOk> {
    tokio::time::timeout(Duration::from_secs(7), cfs::admin::status(addr, secret))
        .await
        .ok()?
        .ok()
}

/// Stops `cfs cluster up` (`child`, which stops the nodes it started) and then, by PID, any
/// node it left (the `pids` file under `dir/cluster`).
pub fn stop(child: &mut Child, dir: &Path) {
    let pids = std::fs::read_to_string(dir.join("cluster").join("pids")).unwrap_or_default();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    std::thread::sleep(Duration::from_secs(2));
    let _ = child.kill();
    let _ = child.wait();
    for pid in pids.lines().filter_map(|l| l.split_whitespace().nth(1)) {
        let _ = Command::new("kill")
            .args(["-KILL", pid])
            .stderr(Stdio::null())
            .status();
    }
}

/// The `cfs` binary of the same build (the examples live in `target/<profile>/examples`).
pub fn cfs_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("exe");
    let bin = exe
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("cfs"))
        .expect("target dir");
    assert!(
        bin.exists(),
        "build the cfs binary first: cargo build --release -p cfs"
    );
    bin
}
