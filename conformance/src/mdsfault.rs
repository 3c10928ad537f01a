//! Host side of `mds-fault` and `mds-leader-fault` (cfs-cluster-mds3): while the guest runs a
//! workload of writes, creates, renames and removes, the host kill -9s an MDS node:
//!   - `mds-fault`: the node serving the client address the guest mounted; a live node takes
//!     the address over and the guest's client reclaims its state there;
//!   - `mds-leader-fault`: the leader of shard 0 (every file of the guest lives there), the
//!     guest having mounted the client address of another node, so its node forwards to a new
//!     leader after the election.
//!
//! Steps, at the guest's rendezvous: running -> find the victim (`cfs admin status --json` of
//! each node: the client addresses it serves, the shard leaders) -> kill -9 -> "killed" -> the
//! time until the mounted address answers again -> the guest's workload done -> restart the
//! victim from its config -> "restarted-port:PORT" (the guest mounts the restarted node at once
//! and looks up every name, made on whichever shard, while it catches up) -> wait until its
//! replica of shard 0 has applied what the leader has -> "restarted" -> the guest verifies
//! every file after dropping its caches.

use crate::hostops::{Host, Stop};
use crate::server::{admin_listen, toml_string, Running};
use serde_json::Value;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How long the victim's restart may take to catch up (replay its log, receive what it missed).
const CATCH_UP_WAIT: Duration = Duration::from_secs(90);
/// How long the mounted address may stay dark after the kill.
const TAKEOVER_WAIT: Duration = Duration::from_secs(30);

/// One MDS node of the cluster, from its own config.
struct Node {
    role: String,
    id: u64,
    /// its admin listener (`cfs admin status --admin`)
    admin: String,
    /// its own NFS listener (not a client address, which moves on a takeover)
    listen: SocketAddr,
}

fn nodes(srv: &Running) -> Result<Vec<Node>, String> {
    let dir = srv.cluster_dir().ok_or("not a cfs-cluster")?;
    let mut out = Vec::new();
    for id in 1..=u64::from(crate::server::CLUSTER_MDS) {
        let role = format!("mds{id}");
        let conf = dir.join(format!("{role}.toml"));
        let toml = std::fs::read_to_string(&conf).map_err(|e| format!("read {conf:?}: {e}"))?;
        let admin = admin_listen(&toml).ok_or(format!("no [admin] listen in {conf:?}"))?;
        let listen = toml_string(&toml, "listen")
            .and_then(|l| l.parse().ok())
            .ok_or(format!("no listen address in {conf:?}"))?;
        out.push(Node {
            role,
            id,
            admin,
            listen,
        });
    }
    Ok(out)
}

/// `mds-leader-fault`: the guest mounts the client address of a node that does not lead shard
/// 0, so the kill of the leader is not the kill of its server. None: mount the default.
pub fn mount_port(srv: &Running) -> Option<u16> {
    let ns = nodes(srv).ok()?;
    let read = || -> Vec<Value> {
        ns.iter()
            .filter_map(|n| srv.status_json(&n.admin).ok())
            .collect()
    };
    // The node restarted by the previous case may still unsettle shard 0's leadership: wait
    // (bounded) until the same leader has been seen for four seconds.
    let mut status = read();
    let mut leader = status.iter().find_map(shard0_leader);
    let mut since = Instant::now();
    let t0 = Instant::now();
    while since.elapsed() < Duration::from_secs(4) && t0.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(250));
        status = read();
        let now = status.iter().find_map(shard0_leader);
        if now != leader || now.is_none() {
            leader = now;
            since = Instant::now();
        }
    }
    let leader = leader?;
    // A client address some other node serves (takeovers in earlier cases may have moved them).
    status
        .iter()
        .filter(|v| v["mds"]["metadata"]["node"].as_u64() != Some(leader))
        .find_map(|v| {
            v["mds"]["metadata"]["serving"]
                .as_array()?
                .first()?
                .as_str()?
                .parse::<SocketAddr>()
                .ok()
        })
        .map(|a| a.port())
}

/// Shard 0's entry in a node's status.
fn shard0(v: &Value) -> Option<&Value> {
    v["mds"]["metadata"]["shards"]
        .as_array()?
        .iter()
        .find(|s| s["shard"].as_u64() == Some(0))
}

fn shard0_leader(v: &Value) -> Option<u64> {
    shard0(v)?["leader"].as_u64()
}

fn serves(v: &Value, addr: SocketAddr) -> bool {
    v["mds"]["metadata"]["serving"]
        .as_array()
        .is_some_and(|l| l.iter().any(|a| a.as_str() == Some(&addr.to_string())))
}

fn shard0_applied(v: &Value) -> Option<u64> {
    shard0(v)?["applied"].as_u64()
}

pub fn host(h: &mut Host, srv: &mut Running, leader_variant: bool) -> Result<(), Stop> {
    let ns = nodes(srv).map_err(|e| h.fail(format!("the cluster's MDS nodes: {e}")))?;
    h.await_guest("running")?;
    let mounted = match h.ctx.rdv.posted_with("mounted:") {
        Some(m) => m.trim_start_matches("mounted:").parse::<u16>().ok(),
        None => None,
    };
    let Some(mounted) = mounted.map(|p| SocketAddr::from(([127, 0, 0, 1], p))) else {
        return Err(h.fail("the guest did not post the port it mounted".into()));
    };
    let status: Vec<(usize, Value)> = ns
        .iter()
        .enumerate()
        .filter_map(|(i, n)| srv.status_json(&n.admin).ok().map(|v| (i, v)))
        .collect();
    let holder = status
        .iter()
        .find(|(_, v)| serves(v, mounted))
        .map(|(i, _)| *i);
    let leader = status.iter().find_map(|(_, v)| shard0_leader(v));
    let Some(holder) = holder else {
        return Err(h.fail(format!("no MDS node says it serves {mounted}")));
    };
    let victim = if leader_variant {
        let Some(l) = leader.and_then(|l| ns.iter().position(|n| n.id == l)) else {
            return Err(h.fail("shard 0 has no leader".into()));
        };
        if l == holder {
            return Err(h.fail(format!(
                "shard 0's leader ({}) serves the mounted address {mounted}: the case needs them apart",
                ns[l].role
            )));
        }
        l
    } else {
        holder
    };
    h.info(format!(
        "guest mounted {mounted}, served by {}; shard 0 led by node {}; victim {}",
        ns[holder].role,
        leader.map_or("none".into(), |l| l.to_string()),
        ns[victim].role
    ));
    // Let the workload's next operations be in flight.
    std::thread::sleep(Duration::from_millis(700));
    let role = ns[victim].role.clone();
    // From the signal on (`kill_node` returns once the process is gone, which takes a while).
    let killed_at = Instant::now();
    let pid = srv
        .kill_node(&role)
        .map_err(|e| h.fail(format!("kill -9 {role}: {e}")))?;
    h.info(format!(
        "kill -9 {role} (pid {pid}) during the guest's workload"
    ));
    h.ctx.rdv.post("killed");
    let result = after_kill(h, srv, &ns, victim, mounted, killed_at);
    if result.is_err() {
        // whatever happened: the next case gets every node back
        let _ = srv.restart_node(&role);
    }
    result
}

fn after_kill(
    h: &mut Host,
    srv: &mut Running,
    ns: &[Node],
    victim: usize,
    mounted: SocketAddr,
    killed_at: Instant,
) -> Result<(), Stop> {
    // The mounted address answers again: at once if its node lives, after the takeover if not.
    loop {
        if TcpStream::connect_timeout(&mounted, Duration::from_millis(200)).is_ok() {
            break;
        }
        if killed_at.elapsed() > TAKEOVER_WAIT {
            return Err(h.fail(format!(
                "{mounted} does not answer {} s after the kill",
                TAKEOVER_WAIT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    h.info(format!(
        "{mounted} answers again {:.2} s after the kill",
        killed_at.elapsed().as_secs_f64()
    ));
    h.await_guest("workload-done")?;
    let role = &ns[victim].role;
    let pid = srv
        .restart_node(role)
        .map_err(|e| h.fail(format!("restart {role}: {e}")))?;
    let t0 = Instant::now();
    // At once, before it has caught up: the guest mounts the restarted node itself and looks
    // up the names made on other shards while it was down (issue 50: a node catching up
    // answered STALE for them).
    h.ctx
        .rdv
        .post(&format!("restarted-port:{}", ns[victim].listen.port()));
    // Caught up: the restarted replica of shard 0 has applied what a live leader has applied.
    let mut last = String::new();
    loop {
        let mine = srv
            .status_json(&ns[victim].admin)
            .ok()
            .and_then(|v| shard0_applied(&v));
        let theirs = ns
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != victim)
            .filter_map(|(_, n)| srv.status_json(&n.admin).ok())
            .filter_map(|v| shard0_applied(&v))
            .max();
        if let (Some(m), Some(t)) = (mine, theirs) {
            if m >= t {
                h.info(format!(
                    "restarted {role} (pid {pid}) caught up on shard 0 (applied {m} >= {t}) in {:.1} s",
                    t0.elapsed().as_secs_f64()
                ));
                break;
            }
            last = format!("applied {m}, the others {t}");
        }
        if t0.elapsed() > CATCH_UP_WAIT {
            return Err(h.fail(format!(
                "restarted {role} did not catch up within {} s ({last})",
                CATCH_UP_WAIT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    h.ctx.rdv.post("restarted");
    h.await_guest("done")?;
    Ok(())
}
