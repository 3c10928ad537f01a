//! Benchmark (not a test) of reads of an erasure-coded file from real data servers
//! (issue 13, docs/EC.md "Measurements (data servers)"): `cfs cluster up --ds 6` on loopback,
//! a file written through the MDS and encoded 4+2 (1 MiB unit) by the data server holding a
//! mirror copy, then sequential reads of the whole file, 1 MiB READs, in the same run:
//!
//! - `direct`: k readers in parallel, data shard i from its server through a `direct` handle
//!   (what a striped-layout client does): the baseline;
//! - `assembled`: one reader through an `assembled` handle on one data server, 4 READs in
//!   flight (what a client that cannot stripe does);
//! - `degraded direct`: after kill -9 of data shard 0's server, shard 0 through a `rebuild`
//!   handle on a parity server, the others direct;
//! - `degraded assembled`: the assembled read with that server gone.
//!
//! Each figure is the median of `ROUNDS` reads; ratios are to `direct` of the same run.
//! Run: `cargo run --release -p cfs --example ec_reads [MiB]` (needs `target/release/cfs`).

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use client::{Client, ClientConfig, CreateMode, SetAttrs, StableHow4};
use layout::{ClusterSecret, DsId, FileId, ShardCap, ShardKind};
use proto::nfs3_client::Nfs3Client;
use proto::nfs4::OPEN4_SHARE_ACCESS_BOTH;
use proto::shard::{EncodeArgs, ShardClient, ShardServer, SHARD_ERR_NOENT};
use support::{cfs_bin, free_block, status, stop};

mod support;

const ROUNDS: usize = 5;
const UNIT_SHIFT: u32 = 20;
const EPOCH: u64 = 1;
const READ: u32 = 1 << 20;

struct Run {
    file: u64,
    len: u64,
    placement: Vec<ShardServer>,
    key: layout::CapKey,
}

impl Run {
    fn fh(&self, kind: ShardKind, on: usize) -> Vec<u8> {
        ShardCap {
            file: FileId(self.file),
            kind,
            k: 4,
            m: 2,
            unit_shift: UNIT_SHIFT as u8,
            epoch: EPOCH,
            placement: layout::placement_id(&self.placement),
            key_id: 0,
        }
        .mint(&self.key, DsId(self.placement[on].ds_id))
        .expect("handle")
        .to_vec()
    }
}

async fn nfs(addr: &str) -> Nfs3Client {
    Nfs3Client::connect(&[addr.parse().expect("addr")], Duration::from_secs(2), 0, 0)
        .await
        .expect("connect")
}

/// Reads units `u ≡ i (mod 4)` of the file through `fh` on `addr`; bytes read.
async fn read_shard(addr: String, fh: Vec<u8>, i: u64, len: u64) -> u64 {
    let n = nfs(&addr).await;
    let mut total = 0;
    let mut u = i;
    while u << UNIT_SHIFT < len {
        let r = n.read(&fh, u << UNIT_SHIFT, READ).await.expect("READ");
        total += r.data.len() as u64;
        u += 4;
    }
    n.close();
    total
}

/// Striped read: data shard i through `fhs[i]` on `addrs[i]`, all four at once.
async fn striped(run: &Run, handles: &[(String, Vec<u8>)]) -> f64 {
    let t = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for (i, (addr, fh)) in handles.iter().enumerate() {
        set.spawn(read_shard(addr.clone(), fh.clone(), i as u64, run.len));
    }
    let mut total = 0;
    while let Some(r) = set.join_next().await {
        total += r.expect("reader");
    }
    assert_eq!(total, run.len, "striped read came back short");
    total as f64 / t.elapsed().as_secs_f64() / (1 << 20) as f64
}

/// Whole-file read through one assembled handle, 4 READs in flight.
async fn assembled(run: &Run, on: usize) -> f64 {
    let fh = run.fh(ShardKind::Assembled, on);
    let n = Arc::new(nfs(&run.placement[on].addr).await);
    let t = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for lane in 0..4u64 {
        let (n, fh, len) = (n.clone(), fh.clone(), run.len);
        set.spawn(async move {
            let mut total = 0u64;
            let mut off = lane * u64::from(READ);
            while off < len {
                total += n.read(&fh, off, READ).await.expect("READ").data.len() as u64;
                off += 4 * u64::from(READ);
            }
            total
        });
    }
    let mut total = 0;
    while let Some(r) = set.join_next().await {
        total += r.expect("reader");
    }
    n.close();
    assert_eq!(total, run.len, "assembled read came back short");
    total as f64 / t.elapsed().as_secs_f64() / (1 << 20) as f64
}

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

async fn measure<F, Fut>(what: &str, base: Option<f64>, mut f: F) -> f64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = f64>,
{
    let mut v = Vec::new();
    for _ in 0..ROUNDS {
        v.push(f().await);
    }
    let (med, lo, hi) = median(v);
    let ratio = base.map_or(String::from("1.00 (baseline)"), |b| {
        format!("{:.2}", med / b)
    });
    println!("{what:<22} {med:8.0} MiB/s ({lo:.0}..{hi:.0})   x direct {ratio}");
    med
}

fn main() {
    let mib: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(64);
    let bin = cfs_bin();
    let dir = tempfile::tempdir().expect("tempdir");
    // MDS and data servers on port.., their admin listeners on port + 8..
    let port = free_block(16, 24000);
    let admin = port + 8;
    let mut child = Command::new(&bin)
        .args(["cluster", "up", "--ds", "6", "--dir"])
        .arg(dir.path().join("cluster"))
        .args([
            "--port",
            &port.to_string(),
            "--admin-port",
            &admin.to_string(),
        ])
        .env("CFS_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cfs cluster up");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mds: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(bench(dir.path(), mds, mib))
    }));
    stop(&mut child, dir.path());
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

async fn bench(dir: &std::path::Path, mds: SocketAddr, mib: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let secret = loop {
        let text = std::fs::read_to_string(dir.join("cluster").join("secret")).unwrap_or_default();
        if let Ok(s) = ClusterSecret::from_passphrase(&text) {
            if status(mds, &s)
                .await
                .is_some_and(|st| st.data_servers.len() == 6)
            {
                break s;
            }
        }
        assert!(Instant::now() < deadline, "cluster not up in 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let st = status(mds, &secret).await.expect("status");
    let mut placement: Vec<ShardServer> = st
        .data_servers
        .iter()
        .map(|d| {
            let ua = String::from_utf8_lossy(&d.listen.na_r_addr.0).to_string();
            ShardServer {
                ds_id: d.ds_id,
                addr: layout::uaddr::from_uaddr(&ua).expect("uaddr").to_string(),
            }
        })
        .collect();
    placement.sort_by(|a, b| a.addr.cmp(&b.addr));

    // The file, written through the MDS (which mirrors it onto two data servers).
    let len = mib << 20;
    let data = ec::pattern::pattern(len as usize, 0xbe);
    let mut cfg = ClientConfig::new(mds);
    cfg.pnfs = true;
    let c = Client::connect(cfg).await.expect("client");
    let create = Some(CreateMode::Unchecked(SetAttrs {
        mode: Some(0o644),
        size: Some(0),
        ..Default::default()
    }));
    let f = c
        .open_path("/ec", OPEN4_SHARE_ACCESS_BOTH, create)
        .await
        .expect("open");
    c.write_all(&f, 0, &data, StableHow4::FileSync4)
        .await
        .expect("write");
    // The data path names a file by its inode number, the fileid attribute.
    let file = c.getattr(&f.fh).await.expect("getattr").fileid;
    c.close(&f).await.expect("close");
    let _ = c.shutdown().await;

    // Encode on whichever data server holds a mirror copy (the others answer NOENT).
    let t = Instant::now();
    let mut sums = None;
    for src in &placement {
        let sc = ShardClient::connect(
            src.addr.parse().expect("addr"),
            Duration::from_secs(2),
            Duration::from_secs(600),
        )
        .await
        .expect("shard program");
        let args = secret.sign_shard(EncodeArgs {
            to: src.ds_id,
            file,
            epoch: EPOCH,
            k: 4,
            m: 2,
            unit_shift: UNIT_SHIFT,
            offset: 0,
            len,
            file_len: len,
            placement: placement.clone(),
            mac: [0; 32],
        });
        match sc.encode(&args).await {
            Ok(s) => {
                sums = Some(s);
                break;
            }
            Err(e) if e.code() == Some(SHARD_ERR_NOENT) => {}
            Err(e) => panic!("encode: {e}"),
        }
    }
    assert!(sums.is_some(), "no data server holds the file");
    let enc = len as f64 / t.elapsed().as_secs_f64() / (1 << 20) as f64;
    println!(
        "4+2, 1 MiB unit, {mib} MiB file, 6 data servers on loopback, {ROUNDS} rounds, median (min..max)"
    );
    println!("encode job             {enc:8.0} MiB/s of file data (one run)");

    let run = Run {
        file,
        len,
        placement,
        key: secret.cap_key(),
    };
    let direct: Vec<(String, Vec<u8>)> = (0..4)
        .map(|i| {
            (
                run.placement[i].addr.clone(),
                run.fh(ShardKind::Direct(i as u8), i),
            )
        })
        .collect();
    let base = measure("direct (k servers)", None, || striped(&run, &direct)).await;
    measure("assembled (1 server)", Some(base), || assembled(&run, 4)).await;

    // kill -9 the server of data shard 0 (found by its address in the pid list).
    let pids = std::fs::read_to_string(dir.join("cluster").join("pids")).unwrap_or_default();
    let port0: u16 = run.placement[0]
        .addr
        .parse::<SocketAddr>()
        .expect("addr")
        .port();
    let mds_port = mds.port();
    let role = format!("ds{}", port0 - mds_port);
    let pid = pids
        .lines()
        .find(|l| l.split_whitespace().next() == Some(role.as_str()))
        .and_then(|l| l.split_whitespace().nth(1))
        .expect("pid of shard 0's server");
    let _ = Command::new("kill").args(["-KILL", pid]).status();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut degraded = direct.clone();
    degraded[0] = (
        run.placement[4].addr.clone(),
        run.fh(ShardKind::Rebuild(0), 4),
    );
    measure("degraded direct", Some(base), || striped(&run, &degraded)).await;
    measure("degraded assembled", Some(base), || assembled(&run, 4)).await;
}
