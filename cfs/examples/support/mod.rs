//! What the benchmark examples share (not an example itself: Cargo takes only
//! `examples/*.rs` and `examples/*/main.rs`): free loopback ports, the cluster's STATUS, and
//! stopping it.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use layout::ClusterSecret;
use proto::cluster::{StatusRes, CFS_CLUSTER_PROGRAM, CFS_CLUSTER_V1, CLUSTERPROC_STATUS};
use proto::rpc::{Auth, Connection, ConnectionLimits, RejectCalls};
use proto::xdr::Xdr;

/// The first of `n` free consecutive ports at or above `from` (spread by the process id, so
/// two benchmarks started together do not race for one).
pub fn free_block(n: u16, from: u16) -> u16 {
    let start = (std::process::id() % 400) as u16 * 16;
    (0..400u16)
        .map(|i| from + (start + i * 16) % 6400)
        .find(|&p| (0..n).all(|i| TcpListener::bind(("127.0.0.1", p + i)).is_ok()))
        .expect("free ports")
}

/// The MDS's STATUS over the cluster control program, if it answers.
pub async fn status(
    addr: SocketAddr,
    secret: &ClusterSecret,
) -> Option<proto::cluster::StatusResOk> {
    let s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let limits = ConnectionLimits {
        max_record: 4 << 20,
        max_in_flight: 1,
    };
    let conn = Connection::spawn(s, Arc::new(RejectCalls), limits).ok()?;
    let r = conn
        .call(
            CFS_CLUSTER_PROGRAM,
            CFS_CLUSTER_V1,
            CLUSTERPROC_STATUS,
            &Auth::None,
            &secret.status_args(1).to_xdr(),
            Duration::from_secs(5),
        )
        .await
        .ok()?;
    conn.close();
    match StatusRes::from_xdr(r.body()).ok()? {
        StatusRes::Ok(ok) => Some(ok),
        StatusRes::Err(_) => None,
    }
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
