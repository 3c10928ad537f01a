//! The data server over real sockets on 127.0.0.1: a test-only MDS answers its heartbeats (and
//! pushes fences), `Nfs3Client` does the I/O with handles minted here as the MDS would.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ds::{DsConfig, DsServer};
use layout::{Cap, ClusterSecret, DsId, FileId, Rights};
use proto::cluster::*;
use proto::nfs3::*;
use proto::nfs3_client::Nfs3Client;
use proto::rpc::{
    accepted_reply, AcceptStat, Auth, Call, CallHandler, Connection, ConnectionLimits, RejectCalls,
    ReplyStatus, RpcError,
};
use proto::xdr::{Opaque, Writer, Xdr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const CHUNK: u64 = 16 << 20;
const PASS: &str = "test cluster secret, long enough";
const WAIT: Duration = Duration::from_secs(20);

fn secret() -> ClusterSecret {
    ClusterSecret::from_passphrase(PASS).unwrap()
}

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

// ---- a test-only MDS: answers heartbeats, verifies their MAC, hands out pushed fences ----

#[derive(Default)]
struct MdsState {
    min_generation: u64,
    /// (sequence number, fence), ascending.
    fences: Vec<(u64, Fence)>,
    ok: u64,
    refused: u64,
    last: Option<HeartbeatArgs>,
    /// The metadata nodes the replies list.
    nodes: Vec<MdsNode>,
    /// Replies carry a MAC made with another secret (a forger's).
    forge: bool,
}

struct MdsHandler {
    secret: ClusterSecret,
    state: Arc<Mutex<MdsState>>,
    beats: watch::Sender<u64>,
    /// Calls wait until this is true (an MDS that is not up yet).
    gate: watch::Receiver<bool>,
}

impl CallHandler for MdsHandler {
    async fn handle(&self, _c: Connection, call: Call) -> Option<Writer> {
        if call.prog != CFS_CLUSTER_PROGRAM || call.proc_ != CLUSTERPROC_HEARTBEAT {
            return Some(accepted_reply(
                call.xid,
                &Auth::None,
                AcceptStat::ProgUnavail,
            ));
        }
        let mut gate = self.gate.clone();
        let _ = gate.wait_for(|open| *open).await;
        let Ok(args) = HeartbeatArgs::from_xdr(call.args()) else {
            return Some(accepted_reply(
                call.xid,
                &Auth::None,
                AcceptStat::GarbageArgs,
            ));
        };
        let res = {
            let mut st = self.state.lock().unwrap();
            if !self.secret.heartbeat_authentic(&args) {
                st.refused += 1;
                HeartbeatRes::Err(CLUSTER_ERR_AUTH)
            } else {
                st.ok += 1;
                let fences: Vec<(u64, Fence)> = st
                    .fences
                    .iter()
                    .filter(|(s, _)| *s > args.fence_seq)
                    .take(MAX_FENCES)
                    .copied()
                    .collect();
                let fence_seq = fences.last().map_or(args.fence_seq, |(s, _)| *s);
                let mut ok = HeartbeatResOk {
                    interval_ms: 30,
                    chunk_size: CHUNK,
                    min_generation: st.min_generation,
                    fences: fences.into_iter().map(|(_, f)| f).collect(),
                    fence_seq,
                    mds_nodes: st.nodes.clone(),
                    flash: None,
                    mac: [0; 32],
                };
                let key = if st.forge {
                    ClusterSecret::from_passphrase("a forger's secret, long enough").unwrap()
                } else {
                    self.secret.clone()
                };
                ok.mac = key.heartbeat_reply_mac(&args.mac, &ok);
                st.last = Some(args);
                HeartbeatRes::Ok(ok)
            }
        };
        self.beats.send_modify(|n| *n += 1);
        let mut w = accepted_reply(call.xid, &Auth::None, AcceptStat::Success);
        res.encode(&mut w);
        Some(w)
    }
}

struct FakeMds {
    addr: SocketAddr,
    state: Arc<Mutex<MdsState>>,
    beats: watch::Receiver<u64>,
    gate: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeMds {
    async fn start(secret: ClusterSecret, open: bool) -> FakeMds {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let state = Arc::new(Mutex::new(MdsState::default()));
        let (beats_tx, beats) = watch::channel(0);
        let (gate, gate_rx) = watch::channel(open);
        let h = Arc::new(MdsHandler {
            secret,
            state: state.clone(),
            beats: beats_tx,
            gate: gate_rx,
        });
        let task = tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let _ = Connection::spawn(s, h.clone(), ConnectionLimits::default());
            }
        });
        FakeMds {
            addr,
            state,
            beats,
            gate,
            task,
        }
    }

    /// Waits (bounded) until `cond` holds for the MDS state, re-checking after every heartbeat.
    async fn wait(&self, what: &str, cond: impl Fn(&MdsState) -> bool) {
        let mut beats = self.beats.clone();
        let deadline = Instant::now() + WAIT;
        loop {
            if cond(&self.state.lock().unwrap()) {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                tokio::time::timeout(left, beats.changed()).await.is_ok(),
                "timed out waiting for {what}"
            );
        }
    }

    /// Pushes a fence; returns once the DS has acknowledged applying it (its heartbeat says so).
    async fn fence(&self, file: u64, generation: u64) {
        let seq = {
            let mut st = self.state.lock().unwrap();
            let seq = st.fences.last().map_or(0, |(s, _)| *s) + 1;
            st.fences.push((seq, Fence { file, generation }));
            seq
        };
        self.wait("the DS to apply the fence", |st| {
            st.last.as_ref().is_some_and(|a| a.fence_seq >= seq)
        })
        .await;
    }
}

impl Drop for FakeMds {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---- helpers ----

fn config(dir: &Path, mds: SocketAddr, secret: ClusterSecret) -> DsConfig {
    DsConfig {
        data_dir: dir.to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        advertise: vec![],
        mds: vec![mds],
        secret,
        failure_domain: "rack-a".into(),
        connections: Default::default(),
        scrub: Default::default(),
    }
}

async fn registered(ds: &DsServer) {
    let deadline = Instant::now() + WAIT;
    while !ds.registered() {
        assert!(Instant::now() < deadline, "DS never registered");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn client(addr: SocketAddr) -> Nfs3Client {
    Nfs3Client::connect(&[addr], Duration::from_secs(5), 1000, 1000)
        .await
        .unwrap()
}

fn handle(
    ds: DsId,
    file: u64,
    first_chunk: u64,
    chunks: u32,
    rights: Rights,
    generation: u64,
) -> Vec<u8> {
    Cap {
        file: FileId(file),
        first_chunk,
        chunk_count: chunks,
        rights,
        generation,
        key_id: 0,
    }
    .mint(&secret().cap_key(), ds)
    .to_vec()
}

fn rw(ds: &DsServer, file: u64) -> Vec<u8> {
    handle(ds.id(), file, 0, 8, Rights::ReadWrite, 1)
}

fn status<T: std::fmt::Debug>(r: Result<T, proto::nfs3_client::Nfs3ClientError>) -> Nfsstat3 {
    match r {
        Ok(v) => panic!("expected an error status, got {v:?}"),
        Err(e) => e
            .status()
            .unwrap_or_else(|| panic!("expected an NFS status, got {e}")),
    }
}

/// One registered DS with its MDS, in a temp dir.
struct Rig {
    _dir: tempfile::TempDir,
    mds: FakeMds,
    ds: DsServer,
    c: Nfs3Client,
}

async fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let mds = FakeMds::start(secret(), true).await;
    let ds = DsServer::start(config(dir.path(), mds.addr, secret()))
        .await
        .unwrap();
    registered(&ds).await;
    let c = client(ds.local_addr()).await;
    Rig {
        _dir: dir,
        mds,
        ds,
        c,
    }
}

// ---- tests ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn io_is_jukebox_until_the_mds_answers() {
    let dir = tempfile::tempdir().unwrap();
    let mds = FakeMds::start(secret(), false).await;
    let ds = DsServer::start(config(dir.path(), mds.addr, secret()))
        .await
        .unwrap();
    let c = client(ds.local_addr()).await;
    let fh = rw(&ds, 7);
    c.null().await.unwrap();
    assert_eq!(status(c.getattr(&fh).await), Nfsstat3::Jukebox);
    assert_eq!(status(c.read(&fh, 0, 10).await), Nfsstat3::Jukebox);
    assert_eq!(
        status(c.write(&fh, 0, b"x", StableHow::FileSync).await),
        Nfsstat3::Jukebox
    );
    assert_eq!(status(c.commit(&fh, 0, 0).await), Nfsstat3::Jukebox);
    assert_eq!(status(c.set_size(&fh, 5).await), Nfsstat3::Jukebox);
    // Even garbage handles: nothing can be judged before the MDS has spoken.
    assert_eq!(status(c.getattr(&[1, 2, 3]).await), Nfsstat3::Jukebox);
    assert!(!ds.registered());
    assert_eq!(ds.counters(), DsCounters::default());
    // The MDS comes up: the DS registers and serves.
    mds.gate.send(true).unwrap();
    registered(&ds).await;
    c.write(&fh, 0, b"hello", StableHow::FileSync)
        .await
        .unwrap();
    assert_eq!(c.getattr(&fh).await.unwrap().size, 5);
    ds.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sparse_object_round_trip_in_chunk_3() {
    let r = rig().await;
    let fh = handle(r.ds.id(), 42, 3, 1, Rights::ReadWrite, 1);
    let off = 3 * CHUNK + 12_345;
    let data = pattern(1, 100_000);
    let w =
        r.c.write(&fh, off, &data, StableHow::FileSync)
            .await
            .unwrap();
    assert_eq!(w.count, data.len() as u32);
    assert_eq!(w.committed, StableHow::FileSync);
    let hwm = off + data.len() as u64;

    let got = r.c.read(&fh, off, data.len() as u32).await.unwrap();
    assert_eq!(got.data, data);
    assert!(got.eof, "a read ending at the hwm is at EOF");
    // From the start of chunk 3: zeros, then the data; not at EOF.
    let got = r.c.read(&fh, 3 * CHUNK, 20_000).await.unwrap();
    assert!(got.data[..12_345].iter().all(|b| *b == 0));
    assert_eq!(&got.data[12_345..], &data[..20_000 - 12_345]);
    assert!(!got.eof);
    // Across the hwm: short, EOF.
    let got = r.c.read(&fh, hwm - 10, 1000).await.unwrap();
    assert_eq!(got.data, &data[data.len() - 10..]);
    assert!(got.eof);
    // Past the hwm (still inside the granted chunk): empty, EOF.
    let got = r.c.read(&fh, hwm + 5000, 1000).await.unwrap();
    assert!(got.data.is_empty() && got.eof);

    let a = r.c.getattr(&fh).await.unwrap();
    assert_eq!(a.size, hwm);
    assert_eq!(a.fileid, 42);
    assert_eq!(a.ftype, Ftype3::Reg);
    assert_eq!(a.mode, 0o644);
    assert_eq!(a.nlink, 1);
    assert!(a.used >= data.len() as u64);

    // A handle for chunk 0 of the same file sees zeros in its range (EOF is the hwm, which is
    // in chunk 3), and the chunk-3 handle cannot read chunk 0.
    let fh0 = handle(r.ds.id(), 42, 0, 1, Rights::Read, 1);
    let got = r.c.read(&fh0, 0, 4096).await.unwrap();
    assert_eq!(got.data, vec![0u8; 4096]);
    assert!(!got.eof);
    assert_eq!(status(r.c.read(&fh, 0, 4096).await), Nfsstat3::Acces);
    r.ds.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unstable_commit_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mds = FakeMds::start(secret(), true).await;
    let ds = DsServer::start(config(dir.path(), mds.addr, secret()))
        .await
        .unwrap();
    registered(&ds).await;
    let id = ds.id();
    let c = client(ds.local_addr()).await;
    let fh = rw(&ds, 9);
    let a = pattern(2, 300_000);
    let b = pattern(3, 7777);
    let w1 = c.write(&fh, 0, &a, StableHow::Unstable).await.unwrap();
    assert_eq!(w1.committed, StableHow::Unstable);
    let w2 = c
        .write(&fh, 1 << 20, &b, StableHow::Unstable)
        .await
        .unwrap();
    assert_eq!(w1.verf, w2.verf);
    let v = c.commit(&fh, 0, 0).await.unwrap();
    assert_eq!(v, w1.verf, "same verifier: nothing was lost");
    ds.shutdown().await;

    let ds = DsServer::start(config(dir.path(), mds.addr, secret()))
        .await
        .unwrap();
    assert_eq!(ds.id(), id, "identity kept in data_dir/ds-id");
    registered(&ds).await;
    let c = client(ds.local_addr()).await;
    let fh = rw(&ds, 9);
    assert_eq!(c.read(&fh, 0, a.len() as u32).await.unwrap().data, a);
    let got = c.read(&fh, 1 << 20, 10_000).await.unwrap();
    assert_eq!(got.data, b);
    assert!(got.eof);
    assert_eq!(
        c.getattr(&fh).await.unwrap().size,
        (1 << 20) + b.len() as u64
    );
    // A restart changes the verifier, so clients know to resend uncommitted writes.
    let w = c.write(&fh, 0, b"x", StableHow::Unstable).await.unwrap();
    assert_ne!(w.verf, v);
    ds.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setattr_truncates_extends_and_removes() {
    let r = rig().await;
    let fh = rw(&r.ds, 11);
    r.c.write(&fh, 0, &pattern(4, 50_000), StableHow::FileSync)
        .await
        .unwrap();
    r.c.set_size(&fh, 10_001).await.unwrap();
    assert_eq!(r.c.getattr(&fh).await.unwrap().size, 10_001);
    let got = r.c.read(&fh, 0, 60_000).await.unwrap();
    assert_eq!(got.data, &pattern(4, 50_000)[..10_001]);
    assert!(got.eof);
    // Extending reads back zeros.
    r.c.set_size(&fh, 3 * CHUNK).await.unwrap();
    assert_eq!(r.c.getattr(&fh).await.unwrap().size, 3 * CHUNK);
    let got = r.c.read(&fh, 10_000, 100).await.unwrap();
    assert_eq!(got.data[0], pattern(4, 50_000)[10_000]);
    assert!(got.data[1..].iter().all(|b| *b == 0));
    r.c.set_size(&fh, 0).await.unwrap();
    assert_eq!(r.c.getattr(&fh).await.unwrap().size, 0);
    let got = r.c.read(&fh, 0, 100).await.unwrap();
    assert!(got.data.is_empty() && got.eof);
    // Needs a RW handle.
    let ro = handle(r.ds.id(), 11, 0, 8, Rights::Read, 1);
    assert_eq!(status(r.c.set_size(&ro, 5).await), Nfsstat3::Acces);
    r.ds.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_handles_are_refused_and_touch_nothing() {
    let r = rig().await;
    let id = r.ds.id();
    let good = handle(id, 5, 0, 1, Rights::ReadWrite, 1);
    let mut forged = good.clone();
    forged[40] ^= 1;
    let other_ds = handle(DsId(id.0 ^ 1), 5, 0, 1, Rights::ReadWrite, 1);
    let ro = handle(id, 5, 0, 1, Rights::Read, 1);
    let mut refused = 0;
    let mut expect = |got: Nfsstat3, want: Nfsstat3| {
        assert_eq!(got, want);
        refused += 1;
    };
    let sync = StableHow::FileSync;
    expect(
        status(r.c.write(&forged, 0, b"evil", sync).await),
        Nfsstat3::Acces,
    );
    expect(status(r.c.read(&forged, 0, 4).await), Nfsstat3::Acces);
    expect(status(r.c.getattr(&forged).await), Nfsstat3::Acces);
    expect(
        status(r.c.write(&other_ds, 0, b"evil", sync).await),
        Nfsstat3::Acces,
    );
    expect(
        status(r.c.write(&ro, 0, b"evil", sync).await),
        Nfsstat3::Acces,
    );
    expect(status(r.c.commit(&ro, 0, 0).await), Nfsstat3::Acces);
    expect(status(r.c.set_size(&ro, 100).await), Nfsstat3::Acces);
    // The handle grants chunk 0 only.
    expect(
        status(r.c.write(&good, CHUNK, b"evil", sync).await),
        Nfsstat3::Acces,
    );
    expect(
        status(r.c.write(&good, CHUNK - 2, b"evil", sync).await),
        Nfsstat3::Acces,
    );
    expect(status(r.c.read(&good, CHUNK, 1).await), Nfsstat3::Acces);
    expect(
        status(r.c.write(&good, u64::MAX - 1, b"evil", sync).await),
        Nfsstat3::Acces,
    );
    expect(status(r.c.getattr(&good[..30]).await), Nfsstat3::Badhandle);
    expect(status(r.c.getattr(&[]).await), Nfsstat3::Badhandle);
    // Nothing was written by any of that.
    let a = r.c.getattr(&ro).await.unwrap();
    assert_eq!(a.size, 0);
    assert_eq!(a.used, 0);
    let got = r.c.read(&ro, 0, 100).await.unwrap();
    assert!(got.data.is_empty() && got.eof);
    let c = r.ds.counters();
    assert_eq!(c.refused_ops, refused);
    assert_eq!((c.write_ops, c.write_bytes, c.commit_ops), (0, 0, 0));
    // The read-only handle reads fine, and the good one writes at the very end of its chunk.
    r.c.write(&good, CHUNK - 4, b"ok!!", sync).await.unwrap();
    assert_eq!(r.c.read(&ro, CHUNK - 4, 4).await.unwrap().data, b"ok!!");
    r.ds.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fenced_handles_are_stale() {
    let r = rig().await;
    let id = r.ds.id();
    let gen1 = handle(id, 77, 0, 1, Rights::ReadWrite, 1);
    let gen2 = handle(id, 77, 0, 1, Rights::ReadWrite, 2);
    let other = handle(id, 78, 0, 1, Rights::ReadWrite, 1);
    r.c.write(&gen1, 0, b"before", StableHow::FileSync)
        .await
        .unwrap();
    r.mds.fence(77, 2).await;
    assert_eq!(
        status(r.c.write(&gen1, 0, b"after!", StableHow::FileSync).await),
        Nfsstat3::Stale
    );
    assert_eq!(status(r.c.read(&gen1, 0, 6).await), Nfsstat3::Stale);
    assert_eq!(r.c.read(&gen2, 0, 6).await.unwrap().data, b"before");
    // Other files are not affected...
    r.c.write(&other, 0, b"x", StableHow::FileSync)
        .await
        .unwrap();
    // ...until the floor rises past them.
    r.mds.state.lock().unwrap().min_generation = 5;
    let n = *r.mds.beats.borrow();
    r.mds.wait("two more heartbeats", |st| st.ok >= n + 2).await;
    assert_eq!(status(r.c.getattr(&other).await), Nfsstat3::Stale);
    assert_eq!(status(r.c.getattr(&gen2).await), Nfsstat3::Stale);
    let gen5 = handle(id, 78, 0, 1, Rights::Read, 5);
    assert_eq!(r.c.getattr(&gen5).await.unwrap().size, 1);
    assert_eq!(r.ds.counters().refused_ops, 4);
    r.ds.shutdown().await;
}

/// A verified handle of a newer generation fences the older ones at once, without waiting for
/// a heartbeat: the MDS truncates or removes a file with a freshly fenced handle, and no write
/// through an older layout may land after that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_handle_fences_the_older_ones_at_once() {
    let r = rig().await;
    let id = r.ds.id();
    let gen1 = handle(id, 79, 0, 1, Rights::ReadWrite, 1);
    let gen2 = handle(id, 79, 0, 1, Rights::ReadWrite, 2);
    r.c.write(&gen1, 0, b"before", StableHow::FileSync)
        .await
        .unwrap();
    r.c.set_size(&gen2, 0).await.unwrap();
    assert_eq!(
        status(r.c.write(&gen1, 0, b"late", StableHow::FileSync).await),
        Nfsstat3::Stale
    );
    assert_eq!(status(r.c.read(&gen1, 0, 4).await), Nfsstat3::Stale);
    assert_eq!(r.c.getattr(&gen2).await.unwrap().size, 0);
    r.ds.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_is_refused_and_io_stays_jukebox() {
    let dir = tempfile::tempdir().unwrap();
    let mds = FakeMds::start(secret(), true).await;
    let wrong = ClusterSecret::from_passphrase("some other cluster's secret").unwrap();
    let ds = DsServer::start(config(dir.path(), mds.addr, wrong))
        .await
        .unwrap();
    mds.wait("two refused heartbeats", |st| st.refused >= 2)
        .await;
    assert_eq!(mds.state.lock().unwrap().ok, 0);
    assert!(!ds.registered());
    let c = client(ds.local_addr()).await;
    let fh = rw(&ds, 1);
    assert_eq!(status(c.getattr(&fh).await), Nfsstat3::Jukebox);
    assert_eq!(
        status(c.write(&fh, 0, b"x", StableHow::FileSync).await),
        Nfsstat3::Jukebox
    );
    ds.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_describes_the_ds() {
    let r = rig().await;
    r.mds.wait("a heartbeat", |st| st.last.is_some()).await;
    let a = r.mds.state.lock().unwrap().last.clone().unwrap();
    assert_eq!(a.ds_id, r.ds.id().0);
    let addr = r.ds.local_addr();
    let uaddr = format!("127.0.0.1.{}.{}", addr.port() >> 8, addr.port() & 0xff);
    assert_eq!(a.listen.na_r_netid, Opaque::from("tcp"));
    assert_eq!(a.listen.na_r_addr, Opaque::from(uaddr.as_str()));
    assert_eq!(a.advertised, vec![a.listen.clone()]);
    assert_eq!(a.failure_domain, "rack-a");
    assert!(a.capacity_bytes > 0);
    r.ds.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_add_up_and_reach_the_mds() {
    let r = rig().await;
    let fh = rw(&r.ds, 3);
    for i in 0..5u64 {
        r.c.write(&fh, i * 1000, &pattern(i, 1000), StableHow::Unstable)
            .await
            .unwrap();
    }
    r.c.commit(&fh, 0, 0).await.unwrap();
    for i in 0..3u64 {
        r.c.read(&fh, i * 2000, 2000).await.unwrap();
    }
    r.c.read(&fh, 4500, 2000).await.unwrap(); // short: 500 bytes
    let _ =
        r.c.read(&handle(r.ds.id(), 3, 9, 1, Rights::Read, 1), 0, 1)
            .await;
    let want = DsCounters {
        read_ops: 4,
        read_bytes: 5500,
        write_ops: 5,
        write_bytes: 5000,
        commit_ops: 1,
        refused_ops: 1,
    };
    assert_eq!(r.ds.counters(), want);
    r.mds
        .wait("the counters in a heartbeat", |st| {
            st.last.as_ref().is_some_and(|a| a.counters == want)
        })
        .await;
    r.ds.shutdown().await;
}

/// Sends one raw call and returns the reply status and body.
async fn raw_call(
    addr: SocketAddr,
    prog: u32,
    vers: u32,
    proc_: u32,
    args: &[u8],
) -> Result<Vec<u8>, ReplyStatus> {
    let conn = Connection::connect(addr, Arc::new(RejectCalls), ConnectionLimits::default())
        .await
        .unwrap();
    let r = conn
        .call(
            prog,
            vers,
            proc_,
            &Auth::None,
            args,
            Duration::from_secs(10),
        )
        .await;
    conn.close();
    match r {
        Ok(reply) => Ok(reply.body().to_vec()),
        Err(RpcError::NotAccepted(s)) => Err(s),
        Err(e) => panic!("call failed: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_errors_are_answered_and_garbage_closes_only_its_connection() {
    let r = rig().await;
    let addr = r.ds.local_addr();
    let acc = |s| Err(ReplyStatus::Accepted(s));
    assert_eq!(
        raw_call(addr, 100005, 3, 0, &[]).await,
        acc(AcceptStat::ProgUnavail)
    );
    assert_eq!(
        raw_call(addr, NFS3_PROGRAM, 4, 0, &[]).await,
        acc(AcceptStat::ProgMismatch { low: 3, high: 3 })
    );
    assert_eq!(
        raw_call(addr, NFS3_PROGRAM, 3, 99, &[]).await,
        acc(AcceptStat::ProcUnavail)
    );
    // READ args cut short.
    assert_eq!(
        raw_call(addr, NFS3_PROGRAM, 3, NFSPROC3_READ, &[0, 0, 0, 63, 1, 2]).await,
        acc(AcceptStat::GarbageArgs)
    );
    // A directory operation: NOTSUPP with the failure body LOOKUP3res defines.
    let args = Lookup3Args {
        what: Diropargs3 {
            dir: NfsFh3::from(rw(&r.ds, 1)),
            name: Opaque::from("x"),
        },
    };
    let body = raw_call(addr, NFS3_PROGRAM, 3, NFSPROC3_LOOKUP, &args.to_xdr())
        .await
        .unwrap();
    assert_eq!(
        Lookup3Res::from_xdr(&body).unwrap(),
        Lookup3Res::Fail(Nfsstat3::Notsupp.code(), Lookup3ResFail::default())
    );
    let body = raw_call(
        addr,
        NFS3_PROGRAM,
        3,
        NFSPROC3_RENAME,
        &Rename3Args {
            from: args.what.clone(),
            to: args.what.clone(),
        }
        .to_xdr(),
    )
    .await
    .unwrap();
    assert_eq!(
        Rename3Res::from_xdr(&body).unwrap().status(),
        Nfsstat3::Notsupp.code()
    );

    // Noise, and a record header announcing 1 GiB: each connection is closed...
    for junk in [
        vec![0x80, 0, 0, 8, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4],
        vec![0xc0, 0, 0, 0, 1, 2, 3, 4],
        pattern(9, 5000),
    ] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&junk).await.unwrap();
        let mut buf = vec![0u8; 1024];
        let closed = tokio::time::timeout(WAIT, async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "connection left open after garbage");
    }
    // ...and the server still serves everyone else.
    let fh = rw(&r.ds, 1);
    r.c.write(&fh, 0, b"alive", StableHow::FileSync)
        .await
        .unwrap();
    let c2 = client(addr).await;
    assert_eq!(c2.read(&fh, 0, 5).await.unwrap().data, b"alive");
    r.ds.shutdown().await;
}

// ---- kill -9 of a DS in its own process ----

fn ds_node_binary() -> PathBuf {
    // target/<profile>/deps/ds_server-<hash> → target/<profile>/examples/ds_node
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = profile_dir.join("examples").join("ds_node");
    if !bin.exists() {
        // `cargo test -p ds` builds examples; `--tests` (scripts/test.sh builds this one beside
        // it) or a filtered run (`--test ds_server`) may not have.
        let mut cmd = std::process::Command::new(env!("CARGO"));
        cmd.args(["build", "-p", "ds", "--example", "ds_node"]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        assert!(cmd.status().unwrap().success(), "building ds_node failed");
    }
    bin
}

struct Node {
    child: std::process::Child,
    addr: SocketAddr,
    id: DsId,
}

impl Drop for Node {
    /// A failing test must not leave a DS running.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: signalling our own, still unreaped child by its pid.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGKILL) };
            let _ = self.child.wait();
        }
    }
}

fn spawn_node(bin: &Path, dir: &Path, mds: SocketAddr) -> Node {
    use std::io::BufRead;
    let mut child = std::process::Command::new(bin)
        .args(["--data-dir", dir.to_str().unwrap()])
        .args(["--mds", &mds.to_string()])
        .args(["--secret", PASS])
        .args(["--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    // "listening <addr> id <hex>"
    let parts: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(parts.len(), 4, "unexpected ds_node output {line:?}");
    Node {
        child,
        addr: parts[1].parse().unwrap(),
        id: DsId(u64::from_str_radix(parts[3], 16).unwrap()),
    }
}

fn kill9(child: &mut std::process::Child) {
    // SAFETY: signalling our own child by its pid.
    let r = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
    assert_eq!(r, 0);
    child.wait().unwrap();
}

async fn node_client(n: &Node, mds: &FakeMds) -> Nfs3Client {
    let c = client(n.addr).await;
    // Registered once I/O stops being JUKEBOX.
    let fh = handle(n.id, 1, 0, 1, Rights::Read, 1);
    let deadline = Instant::now() + WAIT;
    loop {
        match c.getattr(&fh).await {
            Ok(_) => break,
            Err(e) if e.status() == Some(Nfsstat3::Jukebox) => {
                assert!(Instant::now() < deadline, "ds_node never registered");
                let mut b = mds.beats.clone();
                let _ = tokio::time::timeout(Duration::from_millis(200), b.changed()).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let bin = ds_node_binary();
    let dir = tempfile::tempdir().unwrap();
    let mds = FakeMds::start(secret(), true).await;
    let mut n = spawn_node(&bin, dir.path(), mds.addr);
    let c = node_client(&n, &mds).await;
    let fh = |id: DsId, file: u64| handle(id, file, 0, 4, Rights::ReadWrite, 1);

    // File 1: FILE_SYNC writes with an unaligned end. File 2: UNSTABLE + COMMIT, sparse, into
    // chunk 2. File 3: truncated by SETATTR to an unaligned size. File 4: extended by SETATTR.
    let mut model: Vec<(u64, u64, Vec<u8>)> = Vec::new(); // (file, offset, bytes)
    for i in 0..8u64 {
        let d = pattern(10 + i, 200_000 + i as usize);
        let off = i * 210_000;
        c.write(&fh(n.id, 1), off, &d, StableHow::FileSync)
            .await
            .unwrap();
        model.push((1, off, d));
    }
    let sparse = [
        (0u64, 65_536usize),
        (2 * CHUNK + 4096, 1 << 20),
        (2 * CHUNK + 5_000_000, 333),
    ];
    for (k, (off, len)) in sparse.iter().enumerate() {
        let d = pattern(100 + k as u64, *len);
        c.write(&fh(n.id, 2), *off, &d, StableHow::Unstable)
            .await
            .unwrap();
        model.push((2, *off, d));
    }
    c.commit(&fh(n.id, 2), 0, 0).await.unwrap();
    c.write(&fh(n.id, 3), 0, &pattern(7, 100_000), StableHow::FileSync)
        .await
        .unwrap();
    c.set_size(&fh(n.id, 3), 54_321).await.unwrap();
    model.push((3, 0, pattern(7, 100_000)[..54_321].to_vec()));
    c.write(&fh(n.id, 4), 0, b"tiny", StableHow::FileSync)
        .await
        .unwrap();
    c.set_size(&fh(n.id, 4), 3 * CHUNK + 1).await.unwrap();
    model.push((4, 0, b"tiny".to_vec()));
    // Unacknowledged-durability noise in flight: unstable, never committed.
    c.write(&fh(n.id, 5), 0, &pattern(5, 4096), StableHow::Unstable)
        .await
        .unwrap();

    let sizes = [
        (1u64, 7 * 210_000 + 200_007),
        (2, 2 * CHUNK + 5_000_333),
        (3, 54_321),
        (4, 3 * CHUNK + 1),
    ];
    let id = n.id;
    kill9(&mut n.child);

    let mut n = spawn_node(&bin, dir.path(), mds.addr);
    assert_eq!(n.id, id, "same identity after kill -9");
    let c = node_client(&n, &mds).await;
    for (file, off, d) in &model {
        let mut pos = 0usize;
        while pos < d.len() {
            let want = (d.len() - pos).min(1 << 20);
            let got = c
                .read(&fh(id, *file), off + pos as u64, want as u32)
                .await
                .unwrap();
            assert_eq!(got.data.len(), want, "file {file} at {}", off + pos as u64);
            assert!(
                got.data == d[pos..pos + want],
                "file {file} bytes at {}",
                off + pos as u64
            );
            pos += want;
        }
    }
    for (file, size) in sizes {
        let a = c.getattr(&fh(id, file)).await.unwrap();
        assert_eq!(a.size, size, "file {file} size after kill -9");
        let tail = c.read(&fh(id, file), size - 1, 100).await.unwrap();
        assert_eq!(tail.data.len(), 1);
        assert!(tail.eof);
    }
    // Shut the second one down cleanly (SIGTERM).
    // SAFETY: signalling our own child by its pid.
    unsafe { libc::kill(n.child.id() as libc::pid_t, libc::SIGTERM) };
    assert!(n.child.wait().unwrap().success());
}

/// Rough throughput of 1 MiB writes through Nfs3Client (not a test of speed: it prints).
/// `cargo test --release -p ds --test ds_server -- --ignored --nocapture throughput`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn throughput() {
    let r = rig().await;
    let data = pattern(1, 1 << 20);
    let total = 256u64;
    for (name, how) in [
        ("FILE_SYNC", StableHow::FileSync),
        ("UNSTABLE+COMMIT", StableHow::Unstable),
    ] {
        let file = 1000 + how as u64;
        let fh = handle(r.ds.id(), file, 0, 64, Rights::ReadWrite, 1);
        let t = Instant::now();
        // 8 in flight, as a client with a window would.
        let mut set = tokio::task::JoinSet::new();
        for i in 0..total {
            let (c, fh, d) = (r.c.clone(), fh.clone(), data.clone());
            set.spawn(async move { c.write(&fh, i << 20, &d, how).await.unwrap() });
            if set.len() >= 8 {
                set.join_next().await.unwrap().unwrap();
            }
        }
        while let Some(x) = set.join_next().await {
            x.unwrap();
        }
        if how == StableHow::Unstable {
            r.c.commit(&fh, 0, 0).await.unwrap();
        }
        let s = t.elapsed().as_secs_f64();
        println!(
            "{name}: {total} MiB in {s:.2} s = {:.0} MiB/s",
            total as f64 / s
        );
        let t = Instant::now();
        for i in 0..total {
            r.c.read(&fh, i << 20, 1 << 20).await.unwrap();
        }
        let s = t.elapsed().as_secs_f64();
        println!(
            "READ (sequential, 1 in flight): {:.0} MiB/s",
            total as f64 / s
        );
    }
    r.ds.shutdown().await;
}

/// With several MDS nodes the DS heartbeats to each and keeps each node's fences apart (the
/// node id is a generation's top byte): one node fencing a file or raising its floor leaves
/// the handles another node minted for the same file good, and a handle from a node that has
/// not answered yet waits (JUKEBOX) rather than being judged against someone else's fences.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_mds_node_fences_only_its_own_handles() {
    let dir = tempfile::tempdir().unwrap();
    let node = |n: u8, g: u64| layout::generation_base(n, 0) + g;
    let a = FakeMds::start(secret(), true).await;
    let b = FakeMds::start(secret(), true).await;
    let late = FakeMds::start(secret(), false).await;
    a.state.lock().unwrap().min_generation = node(1, 0);
    b.state.lock().unwrap().min_generation = node(2, 0);
    late.state.lock().unwrap().min_generation = node(3, 0);
    let mut cfg = config(dir.path(), a.addr, secret());
    cfg.mds = vec![a.addr, b.addr, late.addr];
    let ds = DsServer::start(cfg).await.unwrap();
    a.wait("a heartbeat at node 1", |st| st.ok >= 1).await;
    b.wait("a heartbeat at node 2", |st| st.ok >= 1).await;
    let c = client(ds.local_addr()).await;
    let id = ds.id();
    let from_a = handle(id, 90, 0, 1, Rights::ReadWrite, node(1, 1));
    let from_b = handle(id, 90, 0, 1, Rights::ReadWrite, node(2, 1));
    let from_late = handle(id, 90, 0, 1, Rights::ReadWrite, node(3, 1));
    c.write(&from_a, 0, b"one", StableHow::FileSync)
        .await
        .unwrap();
    c.write(&from_b, 0, b"two", StableHow::FileSync)
        .await
        .unwrap();
    assert_eq!(
        status(c.write(&from_late, 0, b"x", StableHow::FileSync).await),
        Nfsstat3::Jukebox,
        "node 3 has not answered: its fences are unknown"
    );
    // Node 1 fences file 90: its handle goes stale, node 2's stays good.
    a.fence(90, node(1, 2)).await;
    assert_eq!(
        status(c.write(&from_a, 0, b"late", StableHow::FileSync).await),
        Nfsstat3::Stale
    );
    c.write(&from_b, 0, b"still", StableHow::FileSync)
        .await
        .unwrap();
    // Node 2 restarts (a higher floor): only its own handles die.
    b.state.lock().unwrap().min_generation = layout::generation_base(2, 1);
    let n = *b.beats.borrow();
    b.wait("two more heartbeats at node 2", |st| st.ok >= n + 2)
        .await;
    assert_eq!(status(c.read(&from_b, 0, 5).await), Nfsstat3::Stale);
    let a2 = handle(id, 90, 0, 1, Rights::Read, node(1, 2));
    assert_eq!(c.read(&a2, 0, 5).await.unwrap().data, b"still");
    // Node 3 comes up: its handles are served.
    late.gate.send(true).unwrap();
    late.wait("a heartbeat at node 3", |st| st.ok >= 1).await;
    let deadline = Instant::now() + WAIT;
    loop {
        match c.read(&from_late, 0, 5).await {
            Ok(r) => {
                assert_eq!(r.data, b"still");
                break;
            }
            Err(e) => {
                assert_eq!(e.status(), Some(Nfsstat3::Jukebox), "{e}");
                assert!(Instant::now() < deadline, "node 3's handle never served");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    ds.shutdown().await;
}

fn listed(id: u32, addr: SocketAddr) -> MdsNode {
    MdsNode {
        id,
        addr: proto::nfs4::basic::Netaddr4 {
            na_r_netid: Opaque::from("tcp"),
            na_r_addr: Opaque::from(layout::uaddr::to_uaddr(&addr).as_str()),
        },
    }
}

/// Waits (bounded) until `m` has had no heartbeat while `other` had ten.
async fn silent(m: &FakeMds, other: &FakeMds, what: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let before = m.state.lock().unwrap().ok;
        let n = other.state.lock().unwrap().ok;
        other
            .wait("ten heartbeats at the other node", |st| st.ok >= n + 10)
            .await;
        if m.state.lock().unwrap().ok == before {
            return;
        }
        assert!(Instant::now() < deadline, "{what}");
    }
}

/// A DS configured with one MDS node heartbeats to every node that node lists (a node that
/// joined the service later included), and stops heartbeating a listed node once no answering
/// node lists it (drained); the configured node is never dropped, even when it lists nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ds_heartbeats_the_nodes_its_mds_lists_and_drops_a_drained_one() {
    let dir = tempfile::tempdir().unwrap();
    let a = FakeMds::start(secret(), true).await;
    let b = FakeMds::start(secret(), true).await;
    let joiner = FakeMds::start(secret(), true).await;
    a.state.lock().unwrap().min_generation = layout::generation_base(1, 0);
    b.state.lock().unwrap().min_generation = layout::generation_base(2, 0);
    joiner.state.lock().unwrap().min_generation = layout::generation_base(3, 0);
    let two = vec![listed(1, a.addr), listed(2, b.addr)];
    a.state.lock().unwrap().nodes = two.clone();
    b.state.lock().unwrap().nodes = two.clone();
    let ds = DsServer::start(config(dir.path(), a.addr, secret()))
        .await
        .unwrap();
    b.wait("a heartbeat at the listed node", |st| st.ok >= 1)
        .await;
    assert_eq!(
        joiner.state.lock().unwrap().ok,
        0,
        "heartbeats an unlisted node"
    );

    // A node joins: the nodes list it, the DS finds it.
    let three = vec![listed(1, a.addr), listed(2, b.addr), listed(3, joiner.addr)];
    b.state.lock().unwrap().nodes = three.clone();
    joiner.state.lock().unwrap().nodes = three;
    joiner
        .wait("a heartbeat at the joined node", |st| st.ok >= 1)
        .await;
    // Its handles are served (its fences are known).
    let c = client(ds.local_addr()).await;
    let h = handle(
        ds.id(),
        7,
        0,
        1,
        Rights::ReadWrite,
        layout::generation_base(3, 0) + 1,
    );
    // (JUKEBOX until the DS has applied the node's first reply, which the fake counts as sent.)
    let deadline = Instant::now() + WAIT;
    while let Err(e) = c.write(&h, 0, b"three", StableHow::FileSync).await {
        assert_eq!(e.status(), Some(Nfsstat3::Jukebox), "{e}");
        assert!(
            Instant::now() < deadline,
            "the joined node's handle never served"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Node 2 is drained: no node lists it (it lists only the others before it stops).
    let left = vec![listed(1, a.addr), listed(3, joiner.addr)];
    for m in [&a, &b, &joiner] {
        m.state.lock().unwrap().nodes = left.clone();
    }
    silent(&b, &a, "the drained node is still heartbeated").await;
    assert!(joiner.state.lock().unwrap().ok >= 1);
    // The configured node stays, even when every list leaves it out.
    let only3 = vec![listed(3, joiner.addr)];
    a.state.lock().unwrap().nodes = only3.clone();
    joiner.state.lock().unwrap().nodes = only3;
    let n = a.state.lock().unwrap().ok;
    a.wait("heartbeats at the configured node go on", |st| {
        st.ok >= n + 5
    })
    .await;
    ds.shutdown().await;
}

/// A reply whose MAC does not verify (not made with the cluster secret) is not used at all:
/// no chunk size, no fences, and no node it lists is heartbeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_heartbeat_reply_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let a = FakeMds::start(secret(), true).await;
    let elsewhere = FakeMds::start(secret(), true).await;
    {
        let mut st = a.state.lock().unwrap();
        st.forge = true;
        st.nodes = vec![listed(1, a.addr), listed(2, elsewhere.addr)];
    }
    let ds = DsServer::start(config(dir.path(), a.addr, secret()))
        .await
        .unwrap();
    // Unauthenticated replies are retried at the first interval (1 s).
    a.wait("three heartbeats", |st| st.ok >= 3).await;
    assert!(!ds.registered(), "a forged reply registered the DS");
    assert_eq!(elsewhere.state.lock().unwrap().ok, 0);
    // The same replies made with the secret: taken.
    a.state.lock().unwrap().forge = false;
    registered(&ds).await;
    elsewhere
        .wait("a heartbeat at the listed node", |st| st.ok >= 1)
        .await;
    ds.shutdown().await;
}

// ---- LINK and OBJSTAT: a snapshot's data image (docs/plans/snapshots.md §3.2) ----

async fn shard_client(ds: &DsServer) -> proto::shard::ShardClient {
    proto::shard::ShardClient::connect(ds.local_addr(), WAIT, WAIT)
        .await
        .unwrap()
}

fn link_args(ds: &DsServer, from: u64, to: u64) -> proto::shard::LinkArgs {
    secret().sign_shard(proto::shard::LinkArgs {
        to: ds.id().0,
        from_file: from,
        to_file: to,
        mac: [0; 32],
    })
}

async fn obj_stat(
    sc: &proto::shard::ShardClient,
    ds: &DsServer,
    file: u64,
) -> proto::shard::ObjStat {
    sc.obj_stat(&secret().sign_shard(proto::shard::ObjStatArgs {
        to: ds.id().0,
        file,
        mac: [0; 32],
    }))
    .await
    .unwrap()
}

/// Reads `len` bytes of object `file` through NFSv3, 1 MiB at a time.
async fn read_all(c: &Nfs3Client, fh: &[u8], len: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while (out.len() as u64) < len {
        let n = (len - out.len() as u64).min(1 << 20) as u32;
        let got = c.read(fh, out.len() as u64, n).await.unwrap();
        assert!(!got.data.is_empty(), "short read at {}", out.len());
        out.extend_from_slice(&got.data);
    }
    out
}

/// 4 MiB chunk files (the store's default) × 3, and a last block written in part, so the size
/// LINK copies is not a multiple of a block.
const IMAGE_LEN: u64 = 3 * (4 << 20) + 5000;

async fn write_image_source(c: &Nfs3Client, fh: &[u8], seed: u64) -> Vec<u8> {
    let data = pattern(seed, IMAGE_LEN as usize);
    for (i, piece) in data.chunks(1 << 20).enumerate() {
        c.write(fh, (i as u64) << 20, piece, StableHow::Unstable)
            .await
            .unwrap();
    }
    // Left unstable on purpose: LINK makes the source's writes durable before it links.
    data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linked_object_keeps_the_old_bytes_and_objstat_shows_the_sharing() {
    let dir = tempfile::tempdir().unwrap();
    let mds = FakeMds::start(secret(), true).await;
    let ds = DsServer::start(config(dir.path(), mds.addr, secret()))
        .await
        .unwrap();
    registered(&ds).await;
    let c = client(ds.local_addr()).await;
    let sc = shard_client(&ds).await;
    let (src, img) = (10, 20);
    let old = write_image_source(&c, &rw(&ds, src), 70).await;

    assert_eq!(obj_stat(&sc, &ds, img).await, Default::default());
    let before = obj_stat(&sc, &ds, src).await;
    assert_eq!(
        (before.size, before.chunks, before.shared_chunks),
        (IMAGE_LEN, 4, 0)
    );
    let t = Instant::now();
    sc.link(&link_args(&ds, src, img)).await.unwrap();
    println!("LINK of a {IMAGE_LEN}-byte object: {:?}", t.elapsed());
    let (s, i) = (obj_stat(&sc, &ds, src).await, obj_stat(&sc, &ds, img).await);
    assert_eq!(s, i, "both name the same chunk files");
    assert_eq!((s.chunks, s.shared_chunks, s.shared_bytes), (4, 4, s.bytes));
    assert_eq!(s.bytes, before.bytes, "linked, not copied");
    assert_eq!(i.size, IMAGE_LEN, "the image has the source's exact size");

    // Write into chunks 0 and 2 of the source: those are copied, 1 and 3 stay shared.
    let mut new = old.clone();
    for at in [100u64, (8 << 20) + 4096] {
        let d = pattern(at, 10_000);
        c.write(&rw(&ds, src), at, &d, StableHow::FileSync)
            .await
            .unwrap();
        new[at as usize..at as usize + d.len()].copy_from_slice(&d);
    }
    assert_eq!(read_all(&c, &rw(&ds, img), IMAGE_LEN).await, old);
    assert_eq!(read_all(&c, &rw(&ds, src), IMAGE_LEN).await, new);
    let (s, i) = (obj_stat(&sc, &ds, src).await, obj_stat(&sc, &ds, img).await);
    assert_eq!((s.chunks, s.shared_chunks), (4, 2));
    assert_eq!((i.chunks, i.shared_chunks), (4, 2));
    assert_eq!(s.shared_bytes, i.shared_bytes);
    // Truncating the source to nothing only unlinks: the image is whole and now alone.
    c.set_size(&rw(&ds, src), 0).await.unwrap();
    let i = obj_stat(&sc, &ds, img).await;
    assert_eq!((i.size, i.chunks, i.shared_chunks), (IMAGE_LEN, 4, 0));
    ds.shutdown().await;

    // After a restart the image keeps its bytes and its exact size (its size record).
    let ds = DsServer::start(config(dir.path(), mds.addr, secret()))
        .await
        .unwrap();
    registered(&ds).await;
    let c = client(ds.local_addr()).await;
    let fh = rw(&ds, img);
    assert_eq!(c.getattr(&fh).await.unwrap().size, IMAGE_LEN);
    assert_eq!(read_all(&c, &fh, IMAGE_LEN).await, old);
    ds.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_with_a_bad_mac_is_refused_and_changes_nothing() {
    let r = rig().await;
    let sc = shard_client(&r.ds).await;
    let (src, img) = (10, 20);
    let old = write_image_source(&r.c, &rw(&r.ds, src), 71).await;
    r.c.commit(&rw(&r.ds, src), 0, 0).await.unwrap();
    let before = obj_stat(&sc, &r.ds, src).await;
    let other = ClusterSecret::from_passphrase("some other cluster's secret").unwrap();
    let mut flipped = link_args(&r.ds, src, img);
    flipped.mac[5] ^= 1;
    let mut moved = link_args(&r.ds, src, img);
    moved.to_file = img + 1; // signed for another destination
    let refused = [
        flipped,
        moved,
        // For another data server.
        secret().sign_shard(proto::shard::LinkArgs {
            to: r.ds.id().0 + 1,
            ..link_args(&r.ds, src, img)
        }),
        // Another cluster's.
        other.sign_shard(link_args(&r.ds, src, img)),
    ];
    for a in &refused {
        let e = sc.link(a).await.unwrap_err();
        assert_eq!(e.code(), Some(proto::shard::SHARD_ERR_AUTH), "{a:?}");
    }
    // Authentic but naming a shard object, or the same object twice.
    for (from, to) in [(src, img | 1 << 63), (1 << 63, img), (src, src)] {
        let e = sc.link(&link_args(&r.ds, from, to)).await.unwrap_err();
        assert_eq!(e.code(), Some(proto::shard::SHARD_ERR_INVAL));
    }
    // OBJSTAT is authenticated too.
    let e = sc
        .obj_stat(&other.sign_shard(proto::shard::ObjStatArgs {
            to: r.ds.id().0,
            file: src,
            mac: [0; 32],
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(proto::shard::SHARD_ERR_AUTH));

    // Nothing was linked: the source shares no chunk, the destinations do not exist.
    assert_eq!(obj_stat(&sc, &r.ds, src).await, before);
    for id in [img, img + 1] {
        assert_eq!(obj_stat(&sc, &r.ds, id).await, Default::default());
        let objects = r._dir.path().join("chunks/objects");
        let d = objects.join(format!("{:02x}/{id:016x}", id & 0xff));
        assert!(!d.exists(), "{} made", d.display());
    }
    assert_eq!(read_all(&r.c, &rw(&r.ds, src), IMAGE_LEN).await, old);
    r.ds.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_twice_is_idempotent() {
    let r = rig().await;
    let sc = shard_client(&r.ds).await;
    let (src, img) = (10, 20);
    let old = write_image_source(&r.c, &rw(&r.ds, src), 72).await;
    sc.link(&link_args(&r.ds, src, img)).await.unwrap();
    let once = (
        obj_stat(&sc, &r.ds, src).await,
        obj_stat(&sc, &r.ds, img).await,
    );
    sc.link(&link_args(&r.ds, src, img)).await.unwrap();
    let twice = (
        obj_stat(&sc, &r.ds, src).await,
        obj_stat(&sc, &r.ds, img).await,
    );
    assert_eq!(once, twice);
    assert_eq!(read_all(&r.c, &rw(&r.ds, img), IMAGE_LEN).await, old);
    // The same call replayed byte for byte (there is no timestamp) does no harm either.
    let a = link_args(&r.ds, src, img);
    sc.link(&a).await.unwrap();
    sc.link(&a).await.unwrap();
    assert_eq!(
        (
            obj_stat(&sc, &r.ds, src).await,
            obj_stat(&sc, &r.ds, img).await
        ),
        once
    );
    assert_eq!(read_all(&r.c, &rw(&r.ds, img), IMAGE_LEN).await, old);
    r.ds.shutdown().await;
}
