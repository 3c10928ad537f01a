//! A metadata node that is behind the others must never answer wrong (issue 50). Directories
//! are spread over the shards, so a directory's entry often names an object of another shard;
//! a node catching up (restarted on its disk, cut off and healed, or with a slow disk) may have
//! one shard's replica current and another's not. It may make the client wait (DELAY), never
//! answer STALE or NOENT for a name that exists, nor show a name that is gone.
//!
//! `names_on_other_shards_read_through_a_lagging_node`: three MDS nodes, each in a network
//! namespace of its own. One writer makes, renames and removes directories and files in
//! directories spread over the shards, through the two nodes that are not lagging, while a
//! checker looks the names up, stats, opens and lists them, and GETATTRs handles it was given,
//! through the lagging node. Each round picks the lagging node and how it lags: kill -9 and a
//! restart, a cut from its peers that heals, or log fdatasyncs held back (`CFS_FAILPOINT_FILE`
//! `log-sync=MS`, a slow disk). Every operation's invocation and completion go to a history; a
//! check may return any value a write in flight could have left, and nothing else.
//! `CFS_LAG_CHECKS=N` sets how many answered checks to run (default 150; issue 50 was resolved
//! on 1,000), `CFS_FAULT_SEED=N` replays a schedule.
//!
//! `a_restarted_node_finds_names_made_on_other_shards_while_it_was_down`: the CI failure the
//! issue starts from, made certain. Node L is killed; through W, a survivor that does not lead
//! shard 0, directories are made in the root (entries on shard 0, led by R; inodes on shards W
//! leads); L is restarted cut off from W alone, so it catches shard 0 up from R but not W's
//! shards, and is asked about every name; the cut heals after a few seconds. Every lookup must
//! answer the directory (DELAY meanwhile), never STALE: 3a73d1a answered STALE for each name on
//! W's shards. `CFS_LAG_LOOKUPS=N` (default 80; the issue was resolved on 1,000).
use crate::common;
use client::{Client, ClientConfig, CreateMode, FileType, NfsFh4, SetAttrs};
use common::netns::Netns;
use common::{KillOnDrop, BIN};
use proto::nfs4::{Nfsstat4, OPEN4_SHARE_ACCESS_BOTH, OPEN4_SHARE_ACCESS_READ};
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MDS: usize = 3;
/// Enough shards that the directories spread over every node's.
const SHARDS: &str = "8";
/// Directories /t/d0.. that hold the names, made through every node in turn.
const DIRS: usize = 6;
/// Names n0.. per directory.
const NAMES: usize = 5;
const PORT: u16 = 2049;
/// One operation (all its calls) gives up after this: its outcome is unknown.
const OP_LIMIT: Duration = Duration::from_secs(8);
/// A check gives up after this (the client waits out DELAY meanwhile), and the checker starts
/// over on a new connection: the node is down or cut off.
const CHECK_LIMIT: Duration = Duration::from_secs(3);

/// xorshift64*: the schedule and the writer's choices, from the seed.
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

fn env_count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// What a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Absent,
    File,
    Dir,
}

impl Kind {
    fn of(t: FileType) -> Kind {
        match t {
            FileType::Directory => Kind::Dir,
            _ => Kind::File,
        }
    }
}

/// One change the writer made to a name (a rename is two: the source gone, the target made).
#[derive(Debug, Clone)]
struct Write {
    name: (usize, usize),
    to: Kind,
    inv: Duration,
    cmp: Duration,
    /// Acknowledged; otherwise its outcome is unknown (it may have happened, at any time).
    ok: bool,
    /// A REMOVE: the name's object goes with it (a rename's source keeps its object).
    removal: bool,
}

/// One object the writer made, by the handle it was given.
#[derive(Debug, Clone)]
struct Object {
    fh: NfsFh4,
    /// When the create that made it was acknowledged.
    made: Duration,
    /// When a removal of it was sent, and whether it was acknowledged (and when).
    removed: Option<(Duration, Option<Duration>)>,
    /// What the writer did with it, for the report of a wrong answer.
    story: Vec<String>,
}

/// What the checker saw.
#[derive(Debug, Clone)]
enum Seen {
    /// A name's kind (Absent: NOENT).
    Name((usize, usize), Kind),
    /// A directory's listing: every name of it that appeared, with its kind.
    Listing(usize, Vec<(usize, Kind)>),
    /// A handle's GETATTR: true when answered, false when STALE.
    Handle(usize, bool),
    /// STALE for a name that was found: its object went between the LOOKUP and a later
    /// operation of the COMPOUND, which only a removal at that time explains.
    NameStale((usize, usize), String),
    /// An answer no current replica gives (an I/O error, a bad listing).
    Wrong(String),
}

#[derive(Debug, Clone)]
struct Check {
    what: &'static str,
    seen: Seen,
    inv: Duration,
    cmp: Duration,
    lagging: usize,
    /// The round's lag, and whether it had ended (the node catching up) when the check began.
    lag: &'static str,
    after: bool,
}

#[derive(Default)]
struct History {
    writes: Mutex<Vec<Write>>,
    objects: Mutex<Vec<Object>>,
    checks: Mutex<Vec<Check>>,
}

/// The kinds a read of `name` over `[inv, cmp]` may see: what the last acknowledged change
/// before `inv` left, and what any change not known to have failed that was sent before
/// `cmp` and not acknowledged before `inv` may have left.
fn allowed(writes: &[Write], name: (usize, usize), inv: Duration, cmp: Duration) -> Vec<Kind> {
    let mine: Vec<&Write> = writes.iter().filter(|w| w.name == name).collect();
    let base = mine
        .iter()
        .rposition(|w| w.ok && w.cmp < inv)
        .map_or(0, |i| i + 1);
    let mut out = vec![if base == 0 {
        Kind::Absent
    } else {
        mine[base - 1].to
    }];
    // Unknown outcomes before the base may still land after it (a resend): keep them too.
    for w in mine.iter().filter(|w| !w.ok && w.inv < cmp) {
        out.push(w.to);
    }
    for w in mine[base..].iter().filter(|w| w.inv < cmp) {
        out.push(w.to);
    }
    out.sort_by_key(|k| *k as u8);
    out.dedup();
    out
}

/// Every check's answer against the writes: what a current replica could not have answered.
fn violations(h: &History) -> Vec<String> {
    let writes = h.writes.lock().unwrap().clone();
    let objects = h.objects.lock().unwrap().clone();
    let mut out = Vec::new();
    for c in h.checks.lock().unwrap().iter() {
        let at = format!(
            "{} through node {} at {:.3}..{:.3}s",
            c.what,
            c.lagging + 1,
            c.inv.as_secs_f64(),
            c.cmp.as_secs_f64()
        );
        match &c.seen {
            Seen::Wrong(e) => out.push(format!("{at}: {e}")),
            Seen::NameStale(n, e) => {
                // The object went: removed under this name, or renamed away and removed under
                // its new one, while the check ran (a stock client's VFS looks the path up
                // again on ESTALE, and then finds the name gone).
                let during = |w: &&Write| w.inv < c.cmp && (!w.ok || w.cmp > c.inv);
                let left = writes
                    .iter()
                    .filter(during)
                    .any(|w| w.name == *n && w.to == Kind::Absent);
                let removed = writes.iter().filter(during).any(|w| w.removal);
                if !(left && removed) {
                    let near: Vec<String> = writes
                        .iter()
                        .filter(|w| w.inv + Duration::from_secs(1) > c.inv && w.inv < c.cmp)
                        .map(|w| format!("{w:?}"))
                        .collect();
                    out.push(format!(
                        "{at}: /t/d{}/n{} {e}; writes from a second before: {}",
                        n.0,
                        n.1,
                        near.join(", ")
                    ));
                }
            }
            Seen::Name(n, k) => {
                let ok = allowed(&writes, *n, c.inv, c.cmp);
                if !ok.contains(k) {
                    out.push(format!(
                        "{at}: /t/d{}/n{} seen {k:?}, may be {ok:?}",
                        n.0, n.1
                    ));
                }
            }
            Seen::Listing(d, seen) => {
                for j in 0..NAMES {
                    let k = seen
                        .iter()
                        .find(|(n, _)| *n == j)
                        .map_or(Kind::Absent, |(_, k)| *k);
                    let ok = allowed(&writes, (*d, j), c.inv, c.cmp);
                    if !ok.contains(&k) {
                        out.push(format!("{at}: /t/d{d} lists n{j} as {k:?}, may be {ok:?}"));
                    }
                }
            }
            // A removed file's handle may answer a while longer (its inode is forgotten in a
            // batch, as knfsd's lingers until evicted): only a live one answering STALE is wrong.
            Seen::Handle(o, answered) => {
                let obj = &objects[*o];
                let must_exist =
                    obj.made < c.inv && obj.removed.is_none_or(|(sent, _)| sent > c.cmp);
                if must_exist && !answered {
                    out.push(format!(
                        "{at}: handle of object {o} {} (made {:.3}s, removed {:?}; {})",
                        if *answered { "answered" } else { "STALE" },
                        obj.made.as_secs_f64(),
                        obj.removed,
                        obj.story.join(", ")
                    ));
                }
            }
        }
    }
    out
}

/// A `cfs server` in a namespace; killed -9 by PID on drop.
struct Node {
    i: usize,
    config: PathBuf,
    dir: PathBuf,
    child: Option<KillOnDrop>,
    starts: u32,
}

impl Node {
    fn failpoint(&self) -> PathBuf {
        self.dir.join(format!("failpoint-{}", self.i + 1))
    }

    fn start(&mut self, net: &Netns) {
        self.starts += 1;
        let log = std::fs::File::create(self.dir.join(format!(
            "mds{}-{}.log",
            self.i + 1,
            self.starts
        )))
        .expect("log");
        let child = net
            .command(self.i, BIN)
            .args(["server", "--config"])
            .arg(&self.config)
            .env("CFS_SHARDS", SHARDS)
            .env("CFS_FAILPOINT_FILE", self.failpoint())
            .env("CFS_LOG", "info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn cfs server in its namespace");
        self.child = Some(KillOnDrop(child));
    }

    fn kill9(&mut self) {
        self.child = None;
    }

    /// Holds this node's log fdatasyncs back by `ms` (0: not at all).
    fn slow_disk(&self, ms: u64) {
        let text = if ms == 0 {
            String::new()
        } else {
            format!("log-sync={ms}\n")
        };
        std::fs::write(self.failpoint(), text).expect("failpoint file");
    }
}

fn addr(net: &Netns, i: usize) -> SocketAddr {
    SocketAddr::from((net.addr(i), PORT))
}

/// Node `i`'s admin listener, on its own address so the test reaches it.
fn admin_addr(net: &Netns, i: usize) -> SocketAddr {
    SocketAddr::from((net.addr(i), PORT + 1000))
}

/// Each shard's leader as node `i` knows it (`cfs admin status --json`), by shard number.
fn leaders(net: &Netns, dir: &Path, i: usize) -> BTreeMap<u64, Option<u64>> {
    let out = std::process::Command::new(BIN)
        .args(["admin", "status", "--json", "--admin"])
        .arg(admin_addr(net, i).to_string())
        .arg("--cluster-secret-file")
        .arg(dir.join("secret"))
        .stdin(Stdio::null())
        .output()
        .expect("cfs admin status");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["mds"]["metadata"]["shards"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| Some((s["shard"].as_u64()?, s["leader"].as_u64())))
                .collect()
        })
        .unwrap_or_default()
}

fn nodes(net: &Netns, dir: &Path) -> Vec<Node> {
    let secret = dir.join("secret");
    std::fs::write(&secret, "lagging node test secret 50\n").expect("secret");
    let peers: Vec<String> = (0..MDS)
        .map(|i| format!("{}={}", i + 1, addr(net, i)))
        .collect();
    (0..MDS)
        .map(|i| {
            let config = dir.join(format!("mds{}.toml", i + 1));
            let text = format!(
                "data = {data:?}\nlisten = \"{listen}\"\nroles = [\"mds\"]\nlease_seconds = 5\n\
                 grace_seconds = 5\n[admin]\nlisten = \"{admin}\"\n[cluster]\n\
                 secret_file = {secret:?}\nnode_id = {id}\nmetadata_nodes = {peers:?}\n\
                 [[export]]\npath = \"/\"\n",
                data = dir.join(format!("mds{}", i + 1)),
                listen = addr(net, i),
                admin = admin_addr(net, i),
                id = i + 1,
            );
            std::fs::write(&config, text).expect("config");
            Node {
                i,
                config,
                dir: dir.to_path_buf(),
                child: None,
                starts: 0,
            }
        })
        .collect()
}

fn client_config(addr: SocketAddr) -> ClientConfig {
    let mut cfg = ClientConfig::new(addr);
    cfg.pnfs = false;
    cfg.timeout = Duration::from_secs(4);
    // A restarted node's grace period holds OPENs back; the Linux client waits it out too.
    cfg.retry_grace = true;
    cfg
}

async fn connect(addr: SocketAddr) -> Option<Client> {
    tokio::time::timeout(Duration::from_secs(4), Client::connect(client_config(addr)))
        .await
        .ok()?
        .ok()
}

fn wait_listening(addr: SocketAddr) {
    let t = Instant::now();
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "{addr} not listening"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `f` until it succeeds, for at most a minute.
async fn retry<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let t = Instant::now();
    loop {
        match tokio::time::timeout(OP_LIMIT, f()).await {
            Ok(Ok(v)) => return v,
            Ok(Err(e)) => assert!(t.elapsed() < Duration::from_secs(60), "{what}: {e}"),
            Err(_) => assert!(t.elapsed() < Duration::from_secs(60), "{what}: timed out"),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The writer: through the nodes other than the lagging one, in turn, one change at a time.
struct Writer {
    h: Arc<History>,
    start: Instant,
    rng: Rng,
    /// Per name: the object it refers to now, as far as acknowledged changes say (None: absent
    /// or unknown).
    now: BTreeMap<(usize, usize), (Kind, Option<usize>)>,
    /// Names whose state is not known (a change with an unknown outcome): left alone.
    unsure: std::collections::BTreeSet<(usize, usize)>,
}

impl Writer {
    fn t(&self) -> Duration {
        self.start.elapsed()
    }

    fn kind(&self, n: (usize, usize)) -> Kind {
        self.now.get(&n).map_or(Kind::Absent, |(k, _)| *k)
    }

    /// One random change through `c`, whose handles of /t/dI are `dirs`.
    async fn step(&mut self, c: &Client, dirs: &[NfsFh4]) -> bool {
        let n = (
            self.rng.below(DIRS as u64) as usize,
            self.rng.below(NAMES as u64) as usize,
        );
        if self.unsure.contains(&n) {
            return true;
        }
        let name = format!("n{}", n.1);
        let inv = self.t();
        match self.kind(n) {
            Kind::Absent => {
                let dir = self.rng.below(2) == 0;
                let made = tokio::time::timeout(OP_LIMIT, async {
                    if dir {
                        c.mkdir(&dirs[n.0], &name, 0o755).await
                    } else {
                        let create = CreateMode::Guarded(SetAttrs {
                            mode: Some(0o644),
                            ..Default::default()
                        });
                        let f = c
                            .open(&dirs[n.0], &name, OPEN4_SHARE_ACCESS_BOTH, Some(create))
                            .await?;
                        let fh = f.fh.clone();
                        c.close(&f).await?;
                        Ok(fh)
                    }
                })
                .await;
                let to = if dir { Kind::Dir } else { Kind::File };
                let cmp = self.t();
                match made {
                    Ok(Ok(fh)) => {
                        let obj = {
                            let mut o = self.h.objects.lock().unwrap();
                            o.push(Object {
                                fh,
                                made: cmp,
                                removed: None,
                                story: vec![format!("made as {n:?} at {cmp:.3?}")],
                            });
                            o.len() - 1
                        };
                        self.record(n, to, inv, cmp, true);
                        self.now.insert(n, (to, Some(obj)));
                        true
                    }
                    Ok(Err(e)) => {
                        self.record(n, to, inv, cmp, false);
                        self.unsure.insert(n);
                        // An NFS error came over a working connection; anything else did not.
                        e.status().is_some()
                    }
                    Err(_) => {
                        self.record(n, to, inv, cmp, false);
                        self.unsure.insert(n);
                        false
                    }
                }
            }
            k => {
                let obj = self.now.get(&n).and_then(|(_, o)| *o);
                // A rename to an absent name of another directory (its object stays on the
                // shard it was made on), or a removal.
                let to = (
                    self.rng.below(DIRS as u64) as usize,
                    self.rng.below(NAMES as u64) as usize,
                );
                let rename = self.rng.below(2) == 0
                    && to.0 != n.0
                    && self.kind(to) == Kind::Absent
                    && !self.unsure.contains(&to);
                if !rename {
                    if let Some(o) = obj {
                        self.h.objects.lock().unwrap()[o].removed = Some((inv, None));
                    }
                }
                let r = tokio::time::timeout(OP_LIMIT, async {
                    if rename {
                        c.rename(&dirs[n.0], &name, &dirs[to.0], &format!("n{}", to.1))
                            .await
                    } else {
                        c.remove(&dirs[n.0], &name).await
                    }
                })
                .await;
                let cmp = self.t();
                let ok = matches!(r, Ok(Ok(())));
                if let Some(o) = obj {
                    let what = if rename {
                        format!("renamed {n:?} -> {to:?}")
                    } else {
                        format!("removed as {n:?}")
                    };
                    self.h.objects.lock().unwrap()[o].story.push(format!(
                        "{what} {inv:.3?}..{cmp:.3?} {}",
                        if ok { "ok" } else { "unknown" }
                    ));
                }
                self.record(n, Kind::Absent, inv, cmp, ok);
                if !rename {
                    if let Some(w) = self.h.writes.lock().unwrap().last_mut() {
                        w.removal = true;
                    }
                }
                if rename {
                    self.record(to, k, inv, cmp, ok);
                }
                if ok {
                    self.now.remove(&n);
                    if rename {
                        self.now.insert(to, (k, obj));
                    } else if let Some(o) = obj {
                        self.h.objects.lock().unwrap()[o].removed = Some((inv, Some(cmp)));
                    }
                } else {
                    self.unsure.insert(n);
                    if rename {
                        self.unsure.insert(to);
                        // Settled later under whichever name it has, as an object of its own
                        // (that one's removal is tracked): this record of it may go from now.
                        if let Some(o) = obj {
                            let mut objects = self.h.objects.lock().unwrap();
                            objects[o].removed.get_or_insert((inv, None));
                        }
                    }
                }
                ok || matches!(&r, Ok(Err(e)) if e.status().is_some())
            }
        }
    }

    fn record(&self, name: (usize, usize), to: Kind, inv: Duration, cmp: Duration, ok: bool) {
        self.h.writes.lock().unwrap().push(Write {
            name,
            to,
            inv,
            cmp,
            ok,
            removal: false,
        });
    }
}

/// The answer of a check that failed: wrong, or only not an answer (DELAY, a node that is
/// down or cut off, a timeout), which is allowed.
fn failed(what: &str, e: &client::Error) -> Option<Seen> {
    match e.status() {
        Some(Nfsstat4::Noent) => None,
        Some(Nfsstat4::Delay | Nfsstat4::Grace) | None => None,
        Some(s) => Some(Seen::Wrong(format!("{what}: {s:?} ({e})"))),
    }
}

/// One check through `c`, the lagging node's client; None when it got no answer.
async fn check(
    c: &Client,
    rng: &mut Rng,
    h: &History,
    dirs: &[NfsFh4],
) -> Option<(&'static str, Seen)> {
    let n = (
        rng.below(DIRS as u64) as usize,
        rng.below(NAMES as u64) as usize,
    );
    let path = format!("/t/d{}/n{}", n.0, n.1);
    match rng.below(8) {
        // LOOKUP from the root and GETATTR: what `stat` and `ls -l NAME` do.
        0..=2 => match c.stat_path(&path).await {
            Ok((_, st)) => Some(("stat", Seen::Name(n, Kind::of(st.ftype)))),
            Err(e) if e.is_status(Nfsstat4::Noent) => Some(("stat", Seen::Name(n, Kind::Absent))),
            Err(e) if e.is_status(Nfsstat4::Stale) => {
                Some(("stat", Seen::NameStale(n, e.to_string())))
            }
            Err(e) => failed("stat", &e).map(|s| ("stat", s)),
        },
        // OPEN by name: a file opens, a directory is ISDIR, a missing name NOENT.
        3 => match c
            .open(
                &dirs[n.0],
                &format!("n{}", n.1),
                OPEN4_SHARE_ACCESS_READ,
                None,
            )
            .await
        {
            Ok(f) => {
                let _ = c.close(&f).await;
                Some(("open", Seen::Name(n, Kind::File)))
            }
            Err(e) if e.is_status(Nfsstat4::Noent) => Some(("open", Seen::Name(n, Kind::Absent))),
            Err(e) if e.is_status(Nfsstat4::Isdir) => Some(("open", Seen::Name(n, Kind::Dir))),
            Err(e) if e.is_status(Nfsstat4::Stale) => {
                Some(("open", Seen::NameStale(n, e.to_string())))
            }
            Err(e) => failed("open", &e).map(|s| ("open", s)),
        },
        // READDIR with every entry's attributes, through a handle.
        4 | 5 => match c.readdir(&dirs[n.0]).await {
            Ok(entries) => {
                let mut seen = Vec::new();
                for e in entries {
                    let Some(j) = e.name.strip_prefix('n').and_then(|j| j.parse().ok()) else {
                        return Some(("readdir", Seen::Wrong(format!("entry {:?}", e.name))));
                    };
                    seen.push((j, Kind::of(e.stat.ftype)));
                }
                Some(("readdir", Seen::Listing(n.0, seen)))
            }
            Err(e) => failed("readdir", &e).map(|s| ("readdir", s)),
        },
        // PUTFH and GETATTR of a handle the writer was given through another node.
        _ => {
            let (o, fh) = {
                let objs = h.objects.lock().unwrap();
                if objs.is_empty() {
                    return None;
                }
                // Mostly the newest: those the lagging node is least likely to have.
                let recent = objs.len().min(8) as u64;
                let o = if rng.below(2) == 0 {
                    objs.len() - 1 - rng.below(recent) as usize
                } else {
                    rng.below(objs.len() as u64) as usize
                };
                (o, objs[o].fh.clone())
            };
            match c.getattr(&fh).await {
                Ok(_) => Some(("getattr", Seen::Handle(o, true))),
                Err(e) if e.is_status(Nfsstat4::Stale) => Some(("getattr", Seen::Handle(o, false))),
                Err(e) => failed("getattr", &e).map(|s| ("getattr", s)),
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Lag {
    Restart,
    Cut,
    SlowDisk(u64),
}

#[test]
fn names_on_other_shards_read_through_a_lagging_node() {
    let _serial = common::SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let seed = seed();
    let want_checks = env_count("CFS_LAG_CHECKS", 150);
    eprintln!(
        "lagging_node: seed {seed} (replay with CFS_FAULT_SEED={seed}), {want_checks} checks"
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let net = Netns::new(&format!("cfsl{}", std::process::id()), MDS);
    let mut nodes = nodes(&net, tmp.path());
    for n in nodes.iter_mut() {
        n.start(&net);
    }
    for i in 0..MDS {
        wait_listening(addr(&net, i));
    }
    let addrs: Vec<SocketAddr> = (0..MDS).map(|i| addr(&net, i)).collect();
    let rt = common::rt();
    let h = Arc::new(History::default());
    let start = Instant::now();

    // /t, and /t/d0.. each made through another node: their inodes on shards each node leads.
    rt.block_on(async {
        for (i, at) in std::iter::once(0).chain(0..DIRS).enumerate() {
            let path = if i == 0 {
                "t".to_string()
            } else {
                format!("d{}", i - 1)
            };
            let node = at % MDS;
            retry(&format!("mkdir {path}"), || async {
                let c = connect(addrs[node]).await.ok_or("cannot mount")?;
                let parent = if i == 0 {
                    c.root().clone()
                } else {
                    c.lookup_path("/t").await.map_err(|e| e.to_string())?
                };
                let r = match c.mkdir(&parent, &path, 0o755).await {
                    Ok(_) => Ok(()),
                    Err(e) if e.is_status(Nfsstat4::Exist) => Ok(()),
                    Err(e) => Err(e.to_string()),
                };
                let _ = c.shutdown().await;
                r
            })
            .await;
        }
    });

    let mut rng = Rng::new(seed);
    let mut writer = Writer {
        h: h.clone(),
        start,
        rng: Rng::new(seed ^ 0x5eed),
        now: BTreeMap::new(),
        unsure: Default::default(),
    };
    let answered = Arc::new(AtomicUsize::new(0));
    let deadline = start + Duration::from_secs(60 + 4 * want_checks as u64);
    let mut round = 0;
    let mut lags: BTreeMap<&'static str, usize> = BTreeMap::new();
    // Every kind of lag at least once, in an order the seed picks.
    let first_kind = rng.below(3);
    while answered.load(Ordering::Relaxed) < want_checks || round < 3 {
        if Instant::now() > deadline {
            let n = answered.load(Ordering::Relaxed);
            drop(nodes);
            panic!(
                "only {n} of {want_checks} checks answered in time; logs in {}",
                tmp.keep().display()
            );
        }
        round += 1;
        let lagging = rng.below(MDS as u64) as usize;
        let lag = match (first_kind + round as u64) % 3 {
            0 => Lag::Restart,
            1 => Lag::Cut,
            _ => Lag::SlowDisk(50 + rng.below(250)),
        };
        let lag_name = match lag {
            Lag::Restart => "restart",
            Lag::Cut => "cut",
            Lag::SlowDisk(_) => "slow disk",
        };
        *lags.entry(lag_name).or_default() += 1;
        let lag_over = Arc::new(AtomicBool::new(false));
        let others: Vec<usize> = (0..MDS).filter(|&i| i != lagging).collect();
        eprintln!(
            "lagging_node: {:.1}s round {round}: node {} {lag:?}",
            start.elapsed().as_secs_f64(),
            lagging + 1
        );
        // The lag begins.
        match lag {
            Lag::Restart => nodes[lagging].kill9(),
            Lag::Cut => net.cut(lagging, &others),
            Lag::SlowDisk(ms) => nodes[lagging].slow_disk(ms),
        }
        // Changes through the others while it lags, the checker asking throughout (its
        // answers may all be DELAY or no answer while the node is down or cut off).
        let stop = Arc::new(AtomicBool::new(false));
        let checker = {
            let (h, stop, answered) = (h.clone(), stop.clone(), answered.clone());
            let lag_over = lag_over.clone();
            let at = addrs[lagging];
            let mut rng = Rng::new(seed ^ (round as u64) << 20);
            rt.spawn(async move {
                let mut c: Option<(Client, Vec<NfsFh4>)> = None;
                while !stop.load(Ordering::Relaxed) {
                    let Some((cl, dirs)) = c.as_ref() else {
                        c = async {
                            let cl = connect(at).await?;
                            let mut dirs = Vec::new();
                            for d in 0..DIRS {
                                let fh = tokio::time::timeout(
                                    OP_LIMIT,
                                    cl.lookup_path(&format!("/t/d{d}")),
                                )
                                .await
                                .ok()?
                                .ok()?;
                                dirs.push(fh);
                            }
                            Some((cl, dirs))
                        }
                        .await;
                        if c.is_none() {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        continue;
                    };
                    let inv = start.elapsed();
                    let after = lag_over.load(Ordering::Relaxed);
                    let r = tokio::time::timeout(CHECK_LIMIT, check(cl, &mut rng, &h, dirs)).await;
                    let cmp = start.elapsed();
                    match r {
                        Ok(Some((what, seen))) => {
                            answered.fetch_add(1, Ordering::Relaxed);
                            h.checks.lock().unwrap().push(Check {
                                what,
                                seen,
                                inv,
                                cmp,
                                lagging,
                                lag: lag_name,
                                after,
                            });
                        }
                        Ok(None) => tokio::time::sleep(Duration::from_millis(20)).await,
                        // No answer in time: a new connection.
                        Err(_) => c = None,
                    }
                }
                if let Some((cl, _)) = c {
                    let _ = cl.shutdown().await;
                }
            })
        };
        let writes_for = |w: &mut Writer, rt: &tokio::runtime::Runtime, hold: Duration| {
            rt.block_on(async {
                let t = Instant::now();
                let mut conns: Vec<Option<(Client, Vec<NfsFh4>)>> = vec![None, None];
                let mut k = 0;
                while t.elapsed() < hold {
                    k += 1;
                    let slot = k % 2;
                    if conns[slot].is_none() {
                        let at = addrs[others[slot]];
                        conns[slot] = async {
                            let c = connect(at).await?;
                            let mut dirs = Vec::new();
                            for d in 0..DIRS {
                                dirs.push(
                                    tokio::time::timeout(
                                        OP_LIMIT,
                                        c.lookup_path(&format!("/t/d{d}")),
                                    )
                                    .await
                                    .ok()?
                                    .ok()?,
                                );
                            }
                            Some((c, dirs))
                        }
                        .await;
                    }
                    let Some((c, dirs)) = conns[slot].as_ref() else {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    };
                    if !w.step(c, dirs).await {
                        conns[slot] = None;
                    }
                }
                for (c, _) in conns.into_iter().flatten() {
                    let _ = c.shutdown().await;
                }
            })
        };
        writes_for(&mut writer, &rt, rng.millis(2000, 4000));
        // The lag ends (a slow disk stays slow while it catches up), and the checker keeps
        // asking while the node catches up: where the wrong answers were.
        match lag {
            Lag::Restart => nodes[lagging].start(&net),
            Lag::Cut => net.heal(lagging, &others),
            Lag::SlowDisk(_) => {}
        }
        lag_over.store(true, Ordering::Relaxed);
        writes_for(&mut writer, &rt, rng.millis(4000, 6000));
        if let Lag::SlowDisk(_) = lag {
            nodes[lagging].slow_disk(0);
        }
        stop.store(true, Ordering::Relaxed);
        rt.block_on(async {
            let r = tokio::time::timeout(OP_LIMIT * 2, checker).await;
            assert!(r.is_ok(), "the checker did not stop");
        });
        // Names whose outcome was unknown are settled now, through a node that did not lag.
        rt.block_on(async {
            let c = retry("settle unknown names", || async {
                connect(addrs[others[0]])
                    .await
                    .ok_or("cannot mount".to_string())
            })
            .await;
            for n in std::mem::take(&mut writer.unsure) {
                let inv = writer.t();
                let seen = retry("stat an unsure name", || async {
                    match c.stat_path(&format!("/t/d{}/n{}", n.0, n.1)).await {
                        Ok((fh, st)) => Ok(Some((fh, Kind::of(st.ftype)))),
                        Err(e) if e.is_status(Nfsstat4::Noent) => Ok(None),
                        Err(e) => Err(e.to_string()),
                    }
                })
                .await;
                let cmp = writer.t();
                // What the name is now becomes an acknowledged write: later checks see it.
                match seen {
                    None => {
                        writer.record(n, Kind::Absent, inv, cmp, true);
                        writer.now.remove(&n);
                    }
                    Some((fh, k)) => {
                        let obj = {
                            let mut o = h.objects.lock().unwrap();
                            o.push(Object {
                                fh,
                                made: cmp,
                                removed: None,
                                story: vec![format!("made as {n:?} at {cmp:.3?}")],
                            });
                            o.len() - 1
                        };
                        writer.record(n, k, inv, cmp, true);
                        writer.now.insert(n, (k, Some(obj)));
                    }
                }
            }
            let _ = c.shutdown().await;
        });
        eprintln!(
            "lagging_node: {:.1}s {} checks answered",
            start.elapsed().as_secs_f64(),
            answered.load(Ordering::Relaxed)
        );
    }
    let bad = violations(&h);
    let checks = h.checks.lock().unwrap().clone();
    let stale_in_removal = checks
        .iter()
        .filter(|c| matches!(c.seen, Seen::NameStale(..)))
        .count()
        - bad
            .iter()
            .filter(|b| b.contains("writes from a second before:"))
            .count();
    let mut by: BTreeMap<&str, usize> = BTreeMap::new();
    let mut when: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for c in &checks {
        *by.entry(c.what).or_default() += 1;
        let phase = if c.after { "catching up" } else { "lagging" };
        *when.entry((c.lag, phase)).or_default() += 1;
    }
    let writes = h.writes.lock().unwrap();
    eprintln!(
        "lagging_node: seed {seed}: {round} rounds {lags:?}, {} writes ({} acknowledged), {} checks {by:?} {when:?} ({stale_in_removal} STALE while a removal ran), {} wrong",
        writes.len(),
        writes.iter().filter(|w| w.ok).count(),
        checks.len(),
        bad.len()
    );
    for b in bad.iter().take(30) {
        eprintln!("lagging_node: {b}");
    }
    if !bad.is_empty() {
        for n in nodes.iter_mut() {
            n.kill9();
        }
        let kept = tmp.keep();
        panic!(
            "seed {seed}: {} wrong answers of {} through lagging nodes (first: {}); logs in {}",
            bad.len(),
            checks.len(),
            bad[0],
            kept.display()
        );
    }
    if std::env::var_os("CFS_LAG_KEEP").is_some() {
        for n in nodes.iter_mut() {
            n.kill9();
        }
        eprintln!("lagging_node: logs kept in {}", tmp.keep().display());
    }
    drop(nodes);
    drop(net);
}

/// The CI failure issue 50 starts from, made certain (see the module's doc).
#[test]
fn a_restarted_node_finds_names_made_on_other_shards_while_it_was_down() {
    let _serial = common::SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let want = env_count("CFS_LAG_LOOKUPS", 80);
    const PER_ROUND: usize = 40;
    /// How long the restarted node stays cut off from W.
    const CUT: Duration = Duration::from_secs(3);
    let tmp = tempfile::tempdir().expect("tempdir");
    let net = Netns::new(&format!("cfsr{}", std::process::id()), MDS);
    let mut nodes = nodes(&net, tmp.path());
    for n in nodes.iter_mut() {
        n.start(&net);
    }
    for i in 0..MDS {
        wait_listening(addr(&net, i));
    }
    let rt = common::rt();
    let lagging = 0;
    let (mut asked, mut at_risk, mut rounds) = (0, 0, 0);
    let mut wrong: Vec<String> = Vec::new();
    while asked < want {
        rounds += 1;
        nodes[lagging].kill9();
        // The survivors lead every shard: R leads shard 0, W is the other.
        let t = Instant::now();
        let led = loop {
            let l = leaders(&net, tmp.path(), 1);
            if !l.is_empty()
                && l.values()
                    .all(|v| v.is_some_and(|n| n != lagging as u64 + 1))
            {
                break l;
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "shards without a live leader: {l:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        let r = usize::try_from(led[&0].expect("shard 0's leader") - 1).expect("node");
        let w = (0..MDS)
            .find(|&i| i != lagging && i != r)
            .expect("a third node");
        let w_leads: Vec<u64> = led
            .iter()
            .filter(|(_, l)| **l == Some(w as u64 + 1))
            .map(|(s, _)| *s)
            .collect();
        let made: Vec<(String, u64)> = rt.block_on(async {
            let c = retry("mount W", || async {
                connect(addr(&net, w))
                    .await
                    .ok_or("cannot mount".to_string())
            })
            .await;
            let root = c.root().clone();
            let mut made = Vec::new();
            for k in 0..PER_ROUND {
                let name = format!("r{rounds}-{k}");
                let fh = retry(&format!("mkdir {name} through W"), || async {
                    match c.mkdir(&root, &name, 0o755).await {
                        Ok(fh) => Ok(fh),
                        Err(e) if e.is_status(Nfsstat4::Exist) => c
                            .lookup_path(&format!("/{name}"))
                            .await
                            .map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    }
                })
                .await;
                let fileid = c.getattr(&fh).await.expect("getattr").fileid;
                made.push((name, fileid >> 48));
            }
            let _ = c.shutdown().await;
            made
        });
        let risky = made.iter().filter(|(_, s)| w_leads.contains(s)).count();
        at_risk += risky;
        // Restarted cut off from W alone; the cut heals after CUT.
        let peers = [w];
        net.cut(lagging, &peers);
        nodes[lagging].start(&net);
        // The cut heals after CUT whatever the lookups are doing (a mount that needs W waits
        // for it: shard 0's leadership may move to W meanwhile).
        std::thread::scope(|scope| {
            scope.spawn(|| {
                std::thread::sleep(CUT);
                net.heal(lagging, &peers);
            });
            rt.block_on(async {
                let at = addr(&net, lagging);
                let c = retry("mount the restarted node", || async {
                    connect(at).await.ok_or("cannot mount".to_string())
                })
                .await;
                for (name, shard) in &made {
                    asked += 1;
                    let t = Instant::now();
                    loop {
                        let r =
                            tokio::time::timeout(OP_LIMIT, c.stat_path(&format!("/{name}"))).await;
                        match r {
                            Ok(Ok((_, st))) if st.ftype == FileType::Directory => {}
                            Ok(Ok((_, st))) => wrong.push(format!("/{name}: a {:?}", st.ftype)),
                            // Waiting is allowed: DELAY, or no answer while a barrier waits.
                            Ok(Err(e)) if e.is_status(Nfsstat4::Delay) => {
                                if t.elapsed() < Duration::from_secs(60) {
                                    continue;
                                }
                                wrong.push(format!("/{name}: DELAY for a minute"));
                            }
                            Err(_) if t.elapsed() < Duration::from_secs(60) => continue,
                            Ok(Err(e)) => wrong.push(format!("/{name} (shard {shard}): {e}")),
                            Err(_) => wrong.push(format!("/{name}: no answer for a minute")),
                        }
                        break;
                    }
                }
                let _ = c.shutdown().await;
            });
        });
        eprintln!(
            "lagging_node: round {rounds}: node {} restarted cut off from node {} (which leads \
             shards {w_leads:?}; {risky} of {PER_ROUND} names there); {asked} lookups, {} wrong",
            lagging + 1,
            w + 1,
            wrong.len()
        );
    }
    assert!(
        at_risk > 0,
        "no name was made on a shard the cut-off leader led"
    );
    if !wrong.is_empty() {
        for n in nodes.iter_mut() {
            n.kill9();
        }
        let kept = tmp.keep();
        panic!(
            "{} of {asked} lookups through a restarted node wrong ({at_risk} names on shards it \
             could not reach) over {rounds} restarts: {:?}; logs in {}",
            wrong.len(),
            &wrong[..wrong.len().min(10)],
            kept.display()
        );
    }
    drop(nodes);
    drop(net);
}
