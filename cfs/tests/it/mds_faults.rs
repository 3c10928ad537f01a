//! The metadata service under faults (issue 12): three MDS nodes and three data servers, each
//! MDS node in a network namespace of its own and the data servers in a fourth, all on a bridge
//! the test process reaches too. Concurrent clients, each bound to one MDS node, put, remove,
//! overwrite, read and stat a small set of files while the test cuts a random node off from
//! the others (silently, both ways: its clients still reach it) and kills -9 a random node and
//! restarts it. Every operation's invocation, completion and result go to a history, which
//! `common::history` checks: no acknowledged write lost, no stale read, no write through the
//! minority.
//!
//! Random choices come from a seed printed first; `CFS_FAULT_SEED=N` replays its schedule (the
//! interleaving of the clients is the machine's).
use crate::common;
use client::{Client, ClientConfig, CreateMode, SetAttrs, StableHow4};
use common::history::{self, Cut, History, Kind, Op, Outcome, Problem, Value};
use common::netns::Netns;
use common::{random_bytes, KillOnDrop, BIN};
use proto::nfs4::{Nfsstat4, OPEN4_SHARE_ACCESS_BOTH, OPEN4_SHARE_ACCESS_READ};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MDS: usize = 3;
/// Data servers, all in the namespace after the MDS nodes'.
const DS: usize = 3;
const DS_NS: usize = MDS;
/// Clients that write and read, each with a file of its own.
const CLIENTS: usize = 6;
/// Clients that only read, one per node: a node cut off keeps being asked while the writers'
/// calls through it hang.
const READERS: usize = MDS;
/// Shared names `k0`.. that every client writes and reads.
const SHARED: usize = 6;
/// A put of version N writes PUT_BASE + N bytes, so a file's size names its version too.
const PUT_BASE: u64 = 300;
/// Each client overwrites its own file `o<client>` in place, this long.
const OWNED_LEN: usize = 4096;
const HEADER: usize = 14;
const MDS_PORT: u16 = 2049;
const DS_PORT: u16 = 2050;
/// One operation (all its calls) gives up after this: outcome unknown.
const OP_LIMIT: Duration = Duration::from_secs(6);
const SHARDS: &str = "4";

/// xorshift64*: the fault schedule and each client's choices, from the seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo))
    }
}

/// The bytes of version `id`: a header naming it, then bytes only it has.
fn content(id: u64, len: usize) -> Vec<u8> {
    let mut v = format!("v{id:012}|").into_bytes();
    v.extend(random_bytes(len - HEADER, id));
    v
}

fn owned(key: &str) -> bool {
    key.starts_with('o')
}

fn len_of(key: &str, id: u64) -> usize {
    if owned(key) {
        OWNED_LEN
    } else {
        (PUT_BASE + id) as usize
    }
}

/// The version whose bytes these are, or garbage.
fn decode(key: &str, bytes: &[u8]) -> Value {
    let id = bytes
        .get(1..HEADER - 1)
        .and_then(|h| std::str::from_utf8(h).ok())
        .and_then(|h| h.parse::<u64>().ok());
    match id {
        Some(id) if bytes == content(id, len_of(key, id)).as_slice() => Value::Version(id),
        _ => Value::Garbage(format!(
            "{} bytes starting {:?}",
            bytes.len(),
            String::from_utf8_lossy(&bytes[..bytes.len().min(HEADER)])
        )),
    }
}

/// A `cfs server` in a namespace; killed -9 by PID on drop.
pub(crate) struct Proc {
    name: String,
    ns: usize,
    config: PathBuf,
    dir: PathBuf,
    child: Option<KillOnDrop>,
    starts: u32,
}

impl Proc {
    pub(crate) fn start(&mut self, net: &Netns) {
        self.starts += 1;
        let log =
            std::fs::File::create(self.dir.join(format!("{}-{}.log", self.name, self.starts)))
                .expect("log");
        let child = net
            .command(self.ns, BIN)
            .args(["server", "--config"])
            .arg(&self.config)
            .env("CFS_SHARDS", SHARDS)
            .env("CFS_LOG", "info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn cfs server in its namespace");
        self.child = Some(KillOnDrop(child));
    }

    fn kill9(&mut self) {
        // KillOnDrop sends SIGKILL to the PID it started and reaps it.
        self.child = None;
    }
}

pub(crate) fn mds_addr(net: &Netns, i: usize) -> SocketAddr {
    SocketAddr::from((net.addr(i), MDS_PORT))
}

/// Config files for the MDS nodes and data servers, and the processes (not started).
pub(crate) fn configure(net: &Netns, dir: &Path) -> (Vec<Proc>, Vec<Proc>) {
    let secret = dir.join("secret");
    std::fs::write(&secret, "mds fault test secret 7\n").expect("secret");
    let peers: Vec<String> = (0..MDS)
        .map(|i| format!("{}={}", i + 1, mds_addr(net, i)))
        .collect();
    let mds_list: Vec<String> = (0..MDS).map(|i| mds_addr(net, i).to_string()).collect();
    let mut mds = Vec::new();
    for i in 0..MDS {
        let name = format!("mds{}", i + 1);
        let config = dir.join(format!("{name}.toml"));
        let text = format!(
            "data = {data:?}\nlisten = \"{listen}\"\nroles = [\"mds\"]\nlease_seconds = 5\n\
             grace_seconds = 5\n[admin]\nlisten = \"127.0.0.1:0\"\n[cluster]\n\
             secret_file = {secret:?}\nnode_id = {id}\nmetadata_nodes = {peers:?}\n\
             [[export]]\npath = \"/\"\n",
            data = dir.join(&name),
            listen = mds_addr(net, i),
            id = i + 1,
        );
        std::fs::write(&config, text).expect("config");
        mds.push(Proc {
            name,
            ns: i,
            config,
            dir: dir.to_path_buf(),
            child: None,
            starts: 0,
        });
    }
    let mut ds = Vec::new();
    for j in 1..=DS {
        let name = format!("ds{j}");
        let config = dir.join(format!("{name}.toml"));
        let at = SocketAddr::from((net.addr(DS_NS), DS_PORT + j as u16));
        let text = format!(
            "data = {data:?}\nlisten = \"{at}\"\nroles = [\"ds\"]\n[admin]\n\
             listen = \"127.0.0.1:0\"\n[cluster]\nsecret_file = {secret:?}\nmds = \"{mds}\"\n\
             advertise = [\"{at}\"]\n",
            data = dir.join(&name),
            mds = mds_list.join(","),
        );
        std::fs::write(&config, text).expect("config");
        ds.push(Proc {
            name,
            ns: DS_NS,
            config,
            dir: dir.to_path_buf(),
            child: None,
            starts: 0,
        });
    }
    (mds, ds)
}

pub(crate) fn client_config(addr: SocketAddr, pnfs: bool) -> ClientConfig {
    let mut cfg = ClientConfig::new(addr);
    cfg.pnfs = pnfs;
    cfg.timeout = Duration::from_secs(4);
    // A restarted node's grace period is an error to record, not something to wait out.
    cfg.retry_grace = false;
    cfg
}

/// A client bound to one MDS node, with the handle of /d.
struct Conn {
    c: Client,
    dir: client::NfsFh4,
}

async fn connect(addr: SocketAddr, pnfs: bool) -> Option<Conn> {
    let fut = async {
        let c = Client::connect(client_config(addr, pnfs)).await.ok()?;
        let dir = c.lookup_path("/d").await.ok()?;
        Some(Conn { c, dir })
    };
    tokio::time::timeout(Duration::from_secs(4), fut)
        .await
        .ok()
        .flatten()
}

struct Worker {
    id: usize,
    node: usize,
    addr: SocketAddr,
    pnfs: bool,
    reader: bool,
    hist: Arc<History>,
    versions: Arc<AtomicU64>,
    rng: Rng,
}

/// What one attempt at an operation came to.
struct Done {
    kind: Kind,
    outcome: Outcome,
    mutated: bool,
    error: Option<String>,
}

fn err_text(e: &client::Error) -> Option<String> {
    Some(e.to_string())
}

impl Worker {
    fn op(&self, key: &str, what: &'static str, inv: Duration, d: Done) {
        self.hist.push(Op {
            client: self.id,
            node: self.node,
            key: key.to_string(),
            what,
            kind: d.kind,
            outcome: d.outcome,
            mutated: d.mutated,
            inv,
            cmp: self.hist.now(),
            error: d.error,
        });
    }

    /// A new version of `key` made aside and renamed over it: readers see all of it or none.
    async fn put(&self, c: &Conn, key: &str, v: u64) -> Done {
        let w = Value::Version(v);
        let fail = |e: &client::Error, mutated| Done {
            kind: Kind::Write(w.clone()),
            outcome: Outcome::Fail,
            mutated,
            error: err_text(e),
        };
        let tmp = format!("t{}-{v}", self.id);
        let create = CreateMode::Unchecked(SetAttrs {
            mode: Some(0o644),
            size: Some(0),
            ..Default::default()
        });
        let f = match c
            .c
            .open(&c.dir, &tmp, OPEN4_SHARE_ACCESS_BOTH, Some(create))
            .await
        {
            Ok(f) => f,
            Err(e) => return fail(&e, false),
        };
        let data = content(v, len_of(key, v));
        if let Err(e) = c.c.write_all(&f, 0, &data, StableHow4::FileSync4).await {
            return fail(&e, true);
        }
        if let Err(e) = c.c.commit_file(&f).await {
            return fail(&e, true);
        }
        if let Err(e) = c.c.close(&f).await {
            return fail(&e, true);
        }
        // The commit point: sent, so any failure from here leaves the outcome unknown.
        match c.c.rename(&c.dir, &tmp, &c.dir, key).await {
            Ok(()) => Done {
                kind: Kind::Write(w),
                outcome: Outcome::Ok,
                mutated: true,
                error: None,
            },
            Err(e) => Done {
                kind: Kind::Write(w),
                outcome: Outcome::Unknown,
                mutated: true,
                error: err_text(&e),
            },
        }
    }

    async fn remove(&self, c: &Conn, key: &str) -> Done {
        let (outcome, error) = match c.c.remove(&c.dir, key).await {
            Ok(()) => (Outcome::Ok, None),
            // NOENT may answer a retry of a remove that was applied: unknown, not failed.
            Err(e) => (Outcome::Unknown, err_text(&e)),
        };
        Done {
            kind: Kind::Write(Value::Absent),
            outcome,
            mutated: outcome == Outcome::Ok,
            error,
        }
    }

    /// In place: this client's own file, whole, stable, committed.
    async fn overwrite(&self, c: &Conn, key: &str, v: u64) -> Done {
        let w = Value::Version(v);
        let f = match c.c.open(&c.dir, key, OPEN4_SHARE_ACCESS_BOTH, None).await {
            Ok(f) => f,
            Err(e) => {
                return Done {
                    kind: Kind::Write(w),
                    outcome: Outcome::Fail,
                    mutated: false,
                    error: err_text(&e),
                }
            }
        };
        let data = content(v, OWNED_LEN);
        let r = async {
            c.c.write_all(&f, 0, &data, StableHow4::FileSync4).await?;
            c.c.commit_file(&f).await
        }
        .await;
        let _ = c.c.close(&f).await;
        match r {
            Ok(_) => Done {
                kind: Kind::Write(w),
                outcome: Outcome::Ok,
                mutated: true,
                error: None,
            },
            Err(e) => Done {
                kind: Kind::Write(w),
                outcome: Outcome::Unknown,
                mutated: false,
                error: err_text(&e),
            },
        }
    }

    /// A file's bytes (OPEN, the point the read takes effect, then READ), or its absence.
    async fn read(c: &Conn, key: &str) -> Option<Value> {
        match c.c.open(&c.dir, key, OPEN4_SHARE_ACCESS_READ, None).await {
            Err(e) if e.is_status(Nfsstat4::Noent) => Some(Value::Absent),
            Err(_) => None,
            Ok(f) => {
                let r = c.c.read_full(&f, 0, 1 << 20).await;
                let _ = c.c.close(&f).await;
                r.ok().map(|(bytes, _)| decode(key, &bytes))
            }
        }
    }

    /// A name's existence and size (LOOKUP and GETATTR).
    async fn stat(c: &Conn, key: &str) -> Option<Value> {
        match c.c.stat_path(&format!("/d/{key}")).await {
            Err(e) if e.is_status(Nfsstat4::Noent) => Some(Value::Absent),
            Err(_) => None,
            Ok((_, st)) if st.size >= PUT_BASE => Some(Value::Version(st.size - PUT_BASE)),
            Ok((_, st)) => Some(Value::Garbage(format!("size {}", st.size))),
        }
    }

    async fn run(mut self, stop: Arc<AtomicBool>) {
        let mut conn: Option<Conn> = None;
        let mine = format!("o{}", self.id);
        while !stop.load(Ordering::Relaxed) {
            let Some(c) = conn.as_ref() else {
                conn = connect(self.addr, self.pnfs).await;
                if conn.is_none() {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                continue;
            };
            let shared = format!("k{}", self.rng.below(SHARED as u64));
            let dice = if self.reader {
                55 + self.rng.below(45)
            } else {
                self.rng.below(100)
            };
            let inv = self.hist.now();
            // Each operation bounded; past the limit its outcome is unknown and the connection
            // is dropped (a reply may still be on its way).
            let mut lost = false;
            match dice {
                0..=54 => {
                    let v = self.versions.fetch_add(1, Ordering::Relaxed);
                    let (key, what) = match dice {
                        0..=29 => (shared.clone(), "put"),
                        30..=39 => (shared.clone(), "remove"),
                        _ => (mine.clone(), "write"),
                    };
                    let fut = async {
                        match what {
                            "put" => self.put(c, &key, v).await,
                            "remove" => self.remove(c, &key).await,
                            _ => self.overwrite(c, &key, v).await,
                        }
                    };
                    let d = match tokio::time::timeout(OP_LIMIT, fut).await {
                        Ok(d) => d,
                        Err(_) => {
                            lost = true;
                            let kind = if what == "remove" {
                                Value::Absent
                            } else {
                                Value::Version(v)
                            };
                            Done {
                                kind: Kind::Write(kind),
                                outcome: Outcome::Unknown,
                                mutated: false,
                                error: Some("timed out".into()),
                            }
                        }
                    };
                    if let Some(e) = &d.error {
                        lost |= !e.contains("failed");
                    }
                    self.op(&key, what, inv, d);
                }
                _ => {
                    let (key, what) = if dice < 65 {
                        (shared, "read")
                    } else if dice < 80 {
                        (format!("o{}", self.rng.below(CLIENTS as u64)), "read")
                    } else {
                        (shared, "stat")
                    };
                    let fut = async {
                        if what == "stat" {
                            Self::stat(c, &key).await
                        } else {
                            Self::read(c, &key).await
                        }
                    };
                    match tokio::time::timeout(OP_LIMIT, fut).await {
                        Ok(Some(v)) => self.op(
                            &key,
                            what,
                            inv,
                            Done {
                                kind: Kind::Read(v),
                                outcome: Outcome::Ok,
                                mutated: false,
                                error: None,
                            },
                        ),
                        Ok(None) => {}
                        Err(_) => lost = true,
                    }
                }
            }
            if lost {
                // A transport failure or a timeout: start over on a new connection.
                conn = None;
            }
            tokio::time::sleep(self.rng.millis(10, 60)).await;
        }
    }
}

/// Waits until `addr` accepts connections.
pub(crate) fn wait_listening(addr: SocketAddr, what: &str) {
    let t = Instant::now();
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "{what} at {addr} not listening after 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits (bounded, 120 s) until each MDS node has acknowledged a write invoked after `after`
/// (history time): a node that does so serves again, with a majority behind its shards.
fn until_writes_served(hist: &History, after: Duration, what: &str) {
    let t = Instant::now();
    loop {
        let served: Vec<bool> = {
            let ops = hist.ops();
            (0..MDS)
                .map(|n| {
                    ops.iter().any(|o| {
                        o.node == n
                            && o.inv > after
                            && o.outcome == Outcome::Ok
                            && matches!(o.kind, Kind::Write(_))
                    })
                })
                .collect()
        };
        if served.iter().all(|s| *s) {
            eprintln!(
                "mds_faults: {:.1}s {what}: every node served a write after {:?}",
                hist.now().as_secs_f64(),
                t.elapsed()
            );
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "{what}: no write acknowledged after {:.1}s through the nodes {:?} (1-based) in \
             120 s",
            after.as_secs_f64(),
            served
                .iter()
                .enumerate()
                .filter(|(_, s)| !**s)
                .map(|(n, _)| n + 1)
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs `f` until it returns Ok, for at most `limit`.
pub(crate) async fn retry<T, F, Fut>(limit: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let t = Instant::now();
    loop {
        match tokio::time::timeout(Duration::from_secs(8), f()).await {
            Ok(Ok(v)) => return v,
            Ok(Err(e)) => assert!(t.elapsed() < limit, "{what}: {e}"),
            Err(_) => assert!(t.elapsed() < limit, "{what}: timed out"),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn seed() -> u64 {
    std::env::var("CFS_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64 % 1_000_000_007)
                .unwrap_or(1)
        })
}

#[test]
fn mds_nodes_under_kill9_and_partitions_lose_no_write_and_serve_no_stale_read() {
    let _serial = common::SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let seed = seed();
    eprintln!("mds_faults: seed {seed} (replay the schedule with CFS_FAULT_SEED={seed})");
    let tmp = tempfile::tempdir().expect("tempdir");
    // Declared before the processes: dropped after them (a namespace goes once empty).
    let net = Netns::new(&format!("cfsf{}", std::process::id()), MDS + 1);
    let (mut mds, mut ds) = configure(&net, tmp.path());
    for p in mds.iter_mut().chain(ds.iter_mut()) {
        p.start(&net);
    }
    for i in 0..MDS {
        wait_listening(mds_addr(&net, i), &format!("mds{}", i + 1));
    }
    let rt = common::rt();
    let hist = Arc::new(History::default());
    let versions = Arc::new(AtomicU64::new(1));
    let addrs: Vec<SocketAddr> = (0..MDS).map(|i| mds_addr(&net, i)).collect();

    // /d, and each client's own file, written once (through its node) before any fault.
    let limit = Duration::from_secs(60);
    rt.block_on(async {
        retry(limit, "mkdir /d", || async {
            let c = Client::connect(client_config(addrs[0], false))
                .await
                .map_err(|e| e.to_string())?;
            let root = c.root().clone();
            let r = match c.mkdir(&root, "d", 0o755).await {
                Ok(_) => Ok(()),
                Err(e) if e.is_status(Nfsstat4::Exist) => Ok(()),
                Err(e) => Err(e.to_string()),
            };
            let _ = c.shutdown().await;
            r
        })
        .await;
        for id in 0..CLIENTS {
            let (node, key) = (id % MDS, format!("o{id}"));
            let v = versions.fetch_add(1, Ordering::Relaxed);
            let inv = hist.now();
            retry(
                limit,
                &format!("create {key} through node {}", node + 1),
                || async {
                    let c = connect(addrs[node], false).await.ok_or("cannot mount")?;
                    let create = CreateMode::Unchecked(SetAttrs {
                        mode: Some(0o644),
                        size: Some(0),
                        ..Default::default()
                    });
                    let r = async {
                        let f =
                            c.c.open(&c.dir, &key, OPEN4_SHARE_ACCESS_BOTH, Some(create))
                                .await?;
                        let data = content(v, OWNED_LEN);
                        c.c.write_all(&f, 0, &data, StableHow4::FileSync4).await?;
                        c.c.commit_file(&f).await?;
                        c.c.close(&f).await
                    }
                    .await;
                    let _ = c.c.shutdown().await;
                    r.map_err(|e| e.to_string())
                },
            )
            .await;
            hist.push(Op {
                client: id,
                node,
                key,
                what: "create",
                kind: Kind::Write(Value::Version(v)),
                outcome: Outcome::Ok,
                mutated: true,
                inv,
                cmp: hist.now(),
                error: None,
            });
        }
    });
    eprintln!("mds_faults: cluster up at {:.1}s", hist.now().as_secs_f64());

    let stop = Arc::new(AtomicBool::new(false));
    let started = hist.now();
    let workers: Vec<_> = (0..CLIENTS + READERS)
        .map(|id| {
            let w = Worker {
                id,
                node: id % MDS,
                addr: addrs[id % MDS],
                // Half the clients write through the MDS, half straight to the data servers.
                pnfs: id >= CLIENTS / 2,
                reader: id >= CLIENTS,
                hist: hist.clone(),
                versions: versions.clone(),
                rng: Rng::new(seed ^ (id as u64 + 1) << 32),
            };
            rt.spawn(w.run(stop.clone()))
        })
        .collect();

    // The faults, one at a time: a cut (the node's side is the minority: it reaches neither
    // the other MDS nodes nor the data servers) or a kill -9 and restart. The first once the
    // workload is under way: every node acknowledged a write of it.
    let mut rng = Rng::new(seed);
    until_writes_served(&hist, started, "the workload under way");
    for step in 0..4 {
        let node = rng.below(MDS as u64) as usize;
        let cut = match step {
            0 => true,
            1 => false,
            _ => rng.below(2) == 0,
        };
        if cut {
            let peers: Vec<usize> = (0..=DS_NS).filter(|&p| p != node).collect();
            net.cut(node, &peers);
            let from = hist.now();
            let hold = rng.millis(5000, 8000);
            eprintln!(
                "mds_faults: {:.1}s cut node {} off for {hold:?}",
                from.as_secs_f64(),
                node + 1
            );
            std::thread::sleep(hold);
            let to = hist.now();
            net.heal(node, &peers);
            hist.cut(Cut { node, from, to });
            // The next fault once this one is over for the cluster, not after a guess of how
            // long it takes to notice: every node (the healed one too, which may have lost
            // its leaderships meanwhile) acknowledged a write sent after the heal.
            until_writes_served(&hist, to, &format!("node {} healed", node + 1));
        } else {
            let hold = rng.millis(3000, 6000);
            eprintln!(
                "mds_faults: {:.1}s kill -9 node {} for {hold:?}",
                hist.now().as_secs_f64(),
                node + 1
            );
            mds[node].kill9();
            std::thread::sleep(hold);
            let back = hist.now();
            mds[node].start(&net);
            // As for a cut: every node, the restarted one too, serves writes again.
            until_writes_served(&hist, back, &format!("node {} restarted", node + 1));
        }
        // Random pacing of the faults (the workload goes on meanwhile).
        std::thread::sleep(rng.millis(2000, 4000));
    }
    // The clients stop once the cluster has served after the last fault and its pacing: the
    // history ends with every node taking writes.
    until_writes_served(&hist, hist.now(), "after the faults");
    eprintln!(
        "mds_faults: {:.1}s faults over, every node served writes again; clients stop",
        hist.now().as_secs_f64()
    );
    stop.store(true, Ordering::Relaxed);
    rt.block_on(async {
        for w in workers {
            let r = tokio::time::timeout(OP_LIMIT * 3, w).await;
            assert!(r.is_ok(), "a client did not stop");
        }
    });

    // Every node up and healed: each must hold every acknowledged write (given a moment to
    // catch up) and agree.
    let keys: Vec<String> = (0..SHARED)
        .map(|k| format!("k{k}"))
        .chain((0..CLIENTS).map(|c| format!("o{c}")))
        .collect();
    let ops = hist.ops();
    let cuts = hist.cuts();
    let t = Instant::now();
    let finals = loop {
        let finals: Vec<Op> = rt.block_on(async {
            let mut out = Vec::new();
            for (node, at) in addrs.iter().enumerate() {
                let Some(c) = connect(*at, false).await else {
                    continue;
                };
                for key in &keys {
                    let inv = hist.now();
                    if let Some(v) = Worker::read(&c, key).await {
                        out.push(Op {
                            client: usize::MAX,
                            node,
                            key: key.clone(),
                            what: "final",
                            kind: Kind::Read(v),
                            outcome: Outcome::Ok,
                            mutated: false,
                            inv,
                            cmp: hist.now(),
                            error: None,
                        });
                    }
                }
                let _ = c.c.shutdown().await;
            }
            out
        });
        let all: Vec<Op> = ops.iter().cloned().chain(finals.iter().cloned()).collect();
        let lost: Vec<_> = history::check(&all, &[])
            .into_iter()
            .filter(|v| v.op.what == "final")
            .collect();
        let complete = finals.len() == keys.len() * MDS;
        if (complete && lost.is_empty()) || t.elapsed() > Duration::from_secs(30) {
            assert!(
                complete,
                "only {} of {} final reads answered",
                finals.len(),
                keys.len() * MDS
            );
            break finals;
        }
        std::thread::sleep(Duration::from_secs(1));
    };

    let all: Vec<Op> = ops.iter().cloned().chain(finals).collect();
    let violations = history::check(&all, &cuts);
    report(&all, &cuts);
    for v in violations.iter().take(40) {
        eprintln!("{v}");
    }
    let count = |p: Problem| violations.iter().filter(|v| v.problem == p).count();
    let summary = format!(
        "seed {seed}: {} lost, {} stale, {} phantom, {} minority writes",
        count(Problem::Lost),
        count(Problem::Stale),
        count(Problem::Phantom),
        count(Problem::MinorityWrite)
    );
    eprintln!("mds_faults: {summary}");
    if !violations.is_empty() {
        for p in mds.iter_mut().chain(ds.iter_mut()) {
            p.kill9();
        }
        let kept = tmp.keep();
        panic!("{summary}; logs kept in {}", kept.display());
    }
    drop(ds);
    drop(mds);
    drop(net);
}

/// What the history holds: operations by kind and outcome, and what the cut nodes answered.
fn report(ops: &[Op], cuts: &[Cut]) {
    let mut by: std::collections::BTreeMap<(&str, String), usize> = Default::default();
    for op in ops {
        *by.entry((op.what, format!("{:?}", op.outcome)))
            .or_default() += 1;
    }
    let line: Vec<String> = by
        .iter()
        .map(|((w, o), n)| format!("{w} {o}: {n}"))
        .collect();
    eprintln!("mds_faults: history: {}", line.join(", "));
    for c in cuts {
        let during = |op: &&Op| op.node == c.node && op.inv > c.from && op.cmp < c.to;
        let reads = ops
            .iter()
            .filter(during)
            .filter(|op| matches!(op.kind, Kind::Read(_)) && op.outcome == Outcome::Ok)
            .count();
        let writes_tried = ops
            .iter()
            .filter(during)
            .filter(|op| matches!(op.kind, Kind::Write(_)))
            .count();
        eprintln!(
            "mds_faults: node {} cut off {:.1}s..{:.1}s: answered {reads} reads; {writes_tried} writes through it finished while cut",
            c.node + 1,
            c.from.as_secs_f64(),
            c.to.as_secs_f64()
        );
    }
}
