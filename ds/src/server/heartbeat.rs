//! Registration and renewal with the MDS: one HEARTBEAT call per interval over a kept-open
//! connection, reconnecting with backoff when the MDS is down or restarts. The replies are the
//! only source of the chunk size, the generation floor and the fences.
//!
//! With several MDS nodes the DS heartbeats to each: every node hands out layouts for its own
//! clients, so every node must know which DSs are alive, and each node's fences (told apart by
//! the node id in its generations) reach the DS from that node. Which nodes those are follows
//! the replies (`mds_nodes`): `run` starts a loop for a node a reply lists and stops the loop of
//! a learnt node no answering node lists any more.
//!
//! Every reply is checked before anything in it is used: its MAC (`heartbeat_reply_mac`) is
//! keyed by the cluster secret and binds the heartbeat it answers, so neither a forged reply
//! nor a replayed one can move fences, the generation floor or the list of nodes to trust.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use layout::secret::now_ms;
use layout::uaddr::{from_uaddr, netid_for, to_uaddr};
use layout::ChunkGeometry;
use proto::cluster::*;
use proto::nfs4::basic::Netaddr4;
use proto::rpc::{Auth, Connection, ConnectionLimits, RejectCalls};
use proto::xdr::{Opaque, Xdr};
use tokio::sync::watch;

use super::fences::Fences;
use super::Shared;

/// Interval before the MDS has told us its own.
const FIRST_INTERVAL: Duration = Duration::from_millis(1000);
const MIN_INTERVAL: Duration = Duration::from_millis(20);
const MAX_INTERVAL: Duration = Duration::from_secs(60);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Walking the store for its usage is not free: the figure may be this old, and is measured
/// again no sooner than `USAGE_WALK_SHARE` walks' time after the last (at least
/// `USAGE_MIN_AGE`), so a small store's figure follows its writes and evictions within seconds
/// (the tier's evictor works from it) while a big one's walk takes a tenth of the time at most.
const USAGE_MAX_AGE: Duration = Duration::from_secs(30);
const USAGE_MIN_AGE: Duration = Duration::from_secs(2);
const USAGE_WALK_SHARE: u32 = 10;
/// How often the set of nodes is looked at again without news (a node's list going stale).
const RECHECK: Duration = Duration::from_secs(1);

fn netaddr(a: &SocketAddr) -> Netaddr4 {
    Netaddr4 {
        na_r_netid: Opaque::from(netid_for(a)),
        na_r_addr: Opaque::from(to_uaddr(a).as_str()),
    }
}

/// Total size of the file system holding `dir`, and what a non-root writer may still use of
/// it; zeros when it cannot be asked.
pub(crate) fn fs_space(dir: &std::path::Path) -> (u64, u64) {
    let (capacity, avail, _) = fs_stat(dir);
    (capacity, avail)
}

/// `fs_space` and the file system's id (f_fsid: the same for every directory on one file
/// system, so data servers sharing a disk can be told apart from ones that do not).
pub(crate) fn fs_stat(dir: &std::path::Path) -> (u64, u64, u64) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return (0, 0, 0);
    };
    // SAFETY: statvfs only writes into the zeroed struct we pass; `c` is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return (0, 0, 0);
    }
    let bs = st.f_frsize as u64;
    (
        (st.f_blocks as u64).saturating_mul(bs),
        (st.f_bavail as u64).saturating_mul(bs),
        st.f_fsid as u64,
    )
}

struct Usage {
    capacity: u64,
    used: u64,
    /// Measured at every heartbeat (one statvfs), so the MDS stops placing files here within
    /// a second of it filling up.
    avail: u64,
    fs_id: u64,
    at: Option<Instant>,
    /// How long the last walk took.
    walk: Duration,
}

impl Usage {
    async fn refresh(&mut self, s: &Shared) {
        (self.capacity, self.avail, self.fs_id) = fs_stat(&s.cfg.data_dir);
        let age = if s.flash.take_shrunk() {
            USAGE_MIN_AGE
        } else {
            (self.walk * USAGE_WALK_SHARE).clamp(USAGE_MIN_AGE, USAGE_MAX_AGE)
        };
        if self.at.is_some_and(|t| t.elapsed() < age) {
            return;
        }
        let began = Instant::now();
        let mark = s.flash.walk_starts();
        let dir = s.cfg.data_dir.clone();
        let store = s.objects.store().clone();
        let r =
            tokio::task::spawn_blocking(move || (fs_space(&dir), store.blocking().usage())).await;
        if let Ok(((cap, avail), used)) = r {
            (self.capacity, self.avail) = (cap, avail);
            match used {
                Ok(u) => {
                    self.used = u;
                    s.flash.measured(u, mark);
                }
                Err(e) => tracing::warn!("cannot measure chunk store usage: {e}"),
            }
        }
        self.at = Some(Instant::now());
        self.walk = began.elapsed();
    }
}

/// `node`: the MDS node this connection reached, once a reply has named it.
fn args(s: &Shared, usage: &Usage, node: Option<u8>) -> HeartbeatArgs {
    let mut a = HeartbeatArgs {
        ds_id: s.id.0,
        instance: s.instance,
        timestamp_ms: now_ms(),
        listen: netaddr(&s.local),
        advertised: {
            let mut v: Vec<Netaddr4> = s.advertised().iter().map(netaddr).collect();
            // The fabric endpoint last: a client that cannot use it (the kernel's) takes
            // the TCP addresses and skips a netid it does not know.
            if let Some((netid, at)) = s.fabric_addr() {
                v.push(Netaddr4 {
                    na_r_netid: Opaque::from(netid.as_str()),
                    na_r_addr: Opaque::from(to_uaddr(&at).as_str()),
                });
            }
            v.truncate(MAX_NETADDRS);
            v
        },
        failure_domain: s.cfg.failure_domain.chars().take(255).collect(),
        capacity_bytes: usage.capacity,
        used_bytes: usage.used,
        avail_bytes: usage.avail,
        fs_id: usage.fs_id,
        counters: s.counters.snapshot(),
        // Before the first reply: 0, so the node sends every fence it keeps.
        fence_seq: node
            .and_then(|n| s.cluster().fences.get(&n).map(|f| f.seq()))
            .unwrap_or(0),
        mac: [0; 32],
    };
    a.mac = s.cfg.secret.heartbeat_mac(&a);
    a
}

/// Applies a reply from the MDS node this task talks to (`node`, learnt from the reply's
/// generations); returns when to send the next heartbeat.
fn apply(s: &Shared, ok: &HeartbeatResOk, node: &mut Option<u8>) -> Duration {
    let geometry = match ChunkGeometry::new(ok.chunk_size) {
        Ok(g) => g,
        Err(e) => {
            tracing::error!(
                chunk_size = ok.chunk_size,
                "MDS sent an unusable chunk size: {e}"
            );
            return FIRST_INTERVAL;
        }
    };
    let several = s.mds.targets().len() > 1;
    let mut c = s.cluster.write().unwrap_or_else(|p| p.into_inner());
    if several && c.geometry.is_some_and(|g| g != geometry) {
        // Every node of one metadata service has the same chunk size; a mismatch is a
        // configuration error, and mixing geometries would serve the wrong bytes. (One MDS
        // restarted with another chunk size is simply followed, as before.)
        tracing::error!(
            chunk_size = ok.chunk_size,
            "an MDS node sent a different chunk size than another: ignoring its reply"
        );
        return FIRST_INTERVAL;
    }
    c.geometry = Some(geometry);
    s.flash.set(ok.flash);
    let n = layout::generation_node(ok.min_generation);
    if let Some(old) = node.replace(n).filter(|old| *old != n) {
        // The node behind this address now has another id: its fences are no one's now.
        // (Keeps the map at most one entry per heartbeated address.)
        tracing::warn!(old, new = n, "the MDS at this address changed its node id");
        c.fences.remove(&old);
    }
    c.fences
        .entry(n)
        .or_insert_with(|| Fences::new(super::fences::MAX_FENCES))
        .apply(ok.min_generation, &ok.fences, ok.fence_seq);
    // A full batch of fences means more are waiting: ask again at once.
    if ok.fences.len() >= MAX_FENCES {
        return Duration::ZERO;
    }
    Duration::from_millis(u64::from(ok.interval_ms)).clamp(MIN_INTERVAL, MAX_INTERVAL)
}

/// Sleeps unless told to stop; false means stop.
async fn pause(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    if *stop.borrow() {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = stop.changed() => false,
    }
}

/// What the log has said about the MDS, so state changes are logged once, not every beat.
#[derive(PartialEq, Eq, Clone, Copy)]
enum Link {
    Unknown,
    Up,
    Down,
}

/// The metadata nodes a reply lists, as (id, address); entries that make no sense (id 0 or
/// above 255, an address that does not parse) are left out.
fn listed(ok: &HeartbeatResOk) -> Vec<(u8, SocketAddr)> {
    ok.mds_nodes
        .iter()
        .filter_map(|n| {
            let id = u8::try_from(n.id).ok().filter(|id| *id != 0)?;
            let addr = std::str::from_utf8(n.addr.na_r_addr.as_bytes()).ok()?;
            match from_uaddr(addr) {
                Ok(a) => Some((id, a)),
                Err(e) => {
                    tracing::debug!(id, addr, "unusable metadata node address: {e}");
                    None
                }
            }
        })
        .collect()
}

/// Heartbeats to every MDS node it knows of (`Shared::mds`) until told to stop: one loop per
/// node, started when a reply first lists the node, stopped when no answering node lists it.
pub(crate) async fn run(s: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let usage = Arc::new(tokio::sync::Mutex::new(Usage {
        capacity: 0,
        used: 0,
        avail: 0,
        fs_id: 0,
        at: None,
        walk: Duration::ZERO,
    }));
    // Per node address: the sender that stops its loop, and the loop's task.
    let mut loops: HashMap<SocketAddr, (watch::Sender<bool>, tokio::task::Id)> = HashMap::new();
    let mut tasks: tokio::task::JoinSet<SocketAddr> = tokio::task::JoinSet::new();
    let mut addr_of: HashMap<tokio::task::Id, SocketAddr> = HashMap::new();
    loop {
        let want = s.mds.targets();
        loops.retain(|mds, (tx, _)| {
            let keep = want.contains(mds);
            if !keep {
                tracing::info!(%mds, "no metadata node lists this node any more: \
                    no longer heartbeating it");
                let _ = tx.send(true);
            }
            keep
        });
        for mds in want {
            if loops.contains_key(&mds) {
                continue;
            }
            if !s.cfg.mds.contains(&mds) {
                tracing::info!(%mds, "a metadata node lists a node new to this data server: \
                    heartbeating it");
            }
            let (tx, rx) = watch::channel(false);
            let (s, usage) = (s.clone(), usage.clone());
            let task = tasks.spawn(async move {
                run_one(s, rx, mds, usage).await;
                mds
            });
            loops.insert(mds, (tx, task.id()));
            addr_of.insert(task.id(), mds);
        }
        tokio::select! {
            _ = stop.changed() => break,
            _ = s.mds.changed() => {}
            _ = tokio::time::sleep(RECHECK) => {}
            Some(ended) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                let id = match &ended {
                    Ok((id, _)) => *id,
                    Err(e) => e.id(),
                };
                let Some(mds) = addr_of.remove(&id) else { continue };
                if let Err(e) = ended {
                    // A bug, not a state of the node: start it again on the next turn if it
                    // is still wanted, rather than never heartbeat it again.
                    tracing::error!(%mds, "the heartbeat loop failed: {e}");
                    if loops.get(&mds).is_some_and(|(_, t)| *t == id) {
                        loops.remove(&mds);
                    }
                }
                stopped(&s, mds, &loops);
            }
        }
    }
    for (tx, _) in loops.values() {
        let _ = tx.send(true);
    }
    while tasks.join_next().await.is_some() {}
}

/// The loop for `mds` ended (the node is no longer listed): what it heard stops counting,
/// and unless another address answers as the same node (or the node is back meanwhile), that
/// node's fences go: they would only judge handles of a node that is gone (its handles then
/// get JUKEBOX, as any node's not heard from), and the map stays one entry per heartbeated
/// node.
fn stopped<T>(s: &Shared, mds: SocketAddr, loops: &HashMap<SocketAddr, T>) {
    if loops.contains_key(&mds) {
        return;
    }
    if let Some(node) = s.mds.forget(mds) {
        let mut c = s.cluster.write().unwrap_or_else(|p| p.into_inner());
        c.fences.remove(&node);
    }
}

async fn run_one(
    s: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    mds: SocketAddr,
    usage: Arc<tokio::sync::Mutex<Usage>>,
) {
    let mut node = None;
    let limits = ConnectionLimits {
        max_record: 1 << 20,
        max_in_flight: 4,
    };
    let mut link = Link::Unknown;
    // Whether the log has said this node's replies do not authenticate.
    let mut forged_said = false;
    let mut backoff = Duration::from_millis(100);
    let mut interval = FIRST_INTERVAL;
    'connect: loop {
        let conn = tokio::select! {
            c = Connection::connect(mds, Arc::new(RejectCalls), limits) => c,
            _ = stop.changed() => return,
        };
        let conn = match conn {
            Ok(c) => c,
            Err(e) => {
                if link != Link::Down {
                    tracing::warn!(%mds, "cannot reach the MDS (will keep trying): {e}");
                    link = Link::Down;
                }
                if !pause(&mut stop, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        loop {
            let (body, sent_mac) = {
                let mut u = usage.lock().await;
                u.refresh(&s).await;
                let a = args(&s, &u, node);
                (a.to_xdr(), a.mac)
            };
            let call = conn.call(
                CFS_CLUSTER_PROGRAM,
                CFS_CLUSTER_V1,
                CLUSTERPROC_HEARTBEAT,
                &Auth::None,
                &body,
                CALL_TIMEOUT,
            );
            let reply = tokio::select! {
                // Stopped (the node is no longer listed, or shutdown): nothing more to apply.
                biased;
                _ = stop.changed() => { conn.close(); return; }
                r = call => r,
            };
            match reply.map(|r| HeartbeatRes::from_xdr(r.body())) {
                Ok(Ok(HeartbeatRes::Ok(ok)))
                    if !s.cfg.secret.heartbeat_reply_authentic(&sent_mac, &ok) =>
                {
                    // Not from a holder of the secret, or not an answer to this heartbeat:
                    // nothing in it is used. Said once, not every beat.
                    if !forged_said {
                        tracing::error!(%mds, "a heartbeat reply does not authenticate \
                            (another cluster's secret, or forged): ignoring its replies");
                        forged_said = true;
                    }
                }
                Ok(Ok(HeartbeatRes::Ok(ok))) => {
                    backoff = Duration::from_millis(100);
                    forged_said = false;
                    interval = apply(&s, &ok, &mut node);
                    if let Some(n) = node {
                        s.mds.heard(mds, n, listed(&ok));
                    }
                    if link != Link::Up {
                        tracing::info!(%mds, ds_id = format_args!("{:016x}", s.id.0),
                            chunk_size = ok.chunk_size, min_generation = ok.min_generation,
                            "registered with the MDS");
                        link = Link::Up;
                    }
                }
                Ok(Ok(HeartbeatRes::Err(code))) => {
                    // A wrong secret is an operator error that will not fix itself, but the
                    // operator may fix the MDS side: say so every time and keep trying.
                    match code {
                        CLUSTER_ERR_AUTH => tracing::error!(%mds,
                            "MDS refused our heartbeat: the cluster secret differs"),
                        CLUSTER_ERR_CLOCK => tracing::error!(%mds,
                            "MDS refused our heartbeat: clocks differ too much"),
                        _ => tracing::error!(%mds, code, "MDS refused our heartbeat"),
                    }
                }
                Ok(Err(e)) => tracing::warn!(%mds, "undecodable heartbeat reply: {e}"),
                Err(e) => {
                    if link == Link::Up {
                        tracing::warn!(%mds, "lost the MDS (will reconnect): {e}");
                    }
                    link = Link::Down;
                    conn.close();
                    if !pause(&mut stop, backoff).await {
                        return;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue 'connect;
                }
            }
            if !pause(&mut stop, interval).await {
                conn.close();
                return;
            }
        }
    }
}
