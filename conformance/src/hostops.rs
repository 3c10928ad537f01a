//! Host-side steps of the cfs-cluster scenarios `pnfs-fault` and `pnfs-cross`. The guest and the
//! host step through the rendezvous (guest: `post`/`await` in lib.sh; host: `Rendezvous::post`
//! and `wait`), so a data server dies, a file is put or fetched at the exact point the guest
//! script is at. Every wait is bounded; a host failure posts "abort" so the guest stops waiting.

use crate::error::{Error, IoContext, Result};
use crate::evidence::MIRRORS;
use crate::paths;
use crate::procs;
use crate::rendezvous::{Rendezvous, Seen};
use crate::server::{ClusterStatus, Running};
use serde::Serialize;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Which host script a scenario has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// kill -9 a data server holding the file midway through the kernel's write, restart it later
    Fault,
    /// the same bytes through the kernel client and the Rust client (`cfs put` / `cfs get`)
    Cross,
    /// kill -9 the cluster's NFSv3 gateway while a v3 guest writes through it, restart it
    GatewayFault,
    /// wait until the guest's files are erasure-coded, then count where their reads went
    /// (`encoded.rs`)
    Encoded,
    /// wait until the guest's files are data-reduced, then count where their reads went
    /// (`reduced.rs`)
    Reduced,
    /// wait until the guest's files left the data servers for the bucket, then count the bytes
    /// read from the bucket around the guest's reads (`evicted.rs`)
    Evicted,
    /// cfs-cluster-s3: at each `evict_all` of the guest (posix, integrity, pnfs) wait until
    /// no file's bytes are left on the data servers, so the reads after it come from the
    /// bucket; count the bytes they read there (`evicted.rs` `forced`)
    Evict,
    /// kill -9 the MDS node serving the guest's mount during its workload (`mdsfault.rs`)
    MdsFault,
    /// kill -9 the leader of the guest's shard, another node than the one it mounted
    MdsLeaderFault,
    /// read the MDS nodes' /metrics while two guests write and read one another's files: a
    /// write delegation granted, held, asked about (CB_GETATTR), recalled (`wdeleg.rs`)
    WriteDeleg,
    /// kill -9 and start again a single-node cfs between the guest's writing and its reading
    /// back (`restart.rs`); on other kinds the step says so and does nothing
    Restart,
    /// take a snapshot of `/` with `cfs admin snapshot create` once the guest wrote its tree,
    /// delete it once the guest compared `.snapshot/NAME` (`snapshot.rs`)
    Snapshot,
}

/// `cfs admin status --json` of a cfs-cluster's MDS (its config names the admin listener).
pub(crate) fn admin_status(srv: &Running) -> std::result::Result<serde_json::Value, String> {
    let conf = srv
        .cluster_dir()
        .ok_or("not a cfs-cluster")?
        .join("mds.toml");
    let bin = crate::server::cfs_binary().map_err(|e| e.to_string())?;
    let out = std::process::Command::new(bin)
        .args(["admin", "status", "--json", "--config"])
        .arg(&conf)
        .output()
        .map_err(|e| format!("cfs admin status: {e}"))?;
    serde_json::from_slice(&out.stdout).map_err(|e| format!("cfs admin status --json: {e}"))
}

impl Kind {
    /// The server kind whose nodes the host steps act on.
    pub fn needs(self) -> crate::server::ServerSpec {
        match self {
            Kind::Fault | Kind::Cross => crate::server::ServerSpec::CfsCluster,
            Kind::GatewayFault => crate::server::ServerSpec::CfsClusterGateway,
            Kind::Encoded => crate::server::ServerSpec::CfsClusterEc(6),
            Kind::Reduced => crate::server::ServerSpec::CfsClusterReduce { sealed: true },
            Kind::Evicted | Kind::Evict => crate::server::ServerSpec::CfsClusterS3,
            Kind::MdsFault | Kind::MdsLeaderFault => crate::server::ServerSpec::CfsMetaCluster,
            Kind::WriteDeleg | Kind::Restart => crate::server::ServerSpec::Cfs,
            Kind::Snapshot => crate::server::ServerSpec::CfsMetaCluster,
        }
    }

    /// Whether the host steps can act on `spec`'s nodes: `needs()`, and for the data-server
    /// scenarios the 3-MDS cluster too (its data servers are found by name in the cluster's
    /// own configs, `Running::ds_roles`, not by port arithmetic).
    /// The server kinds `runs_on` accepts, for a "not offered" reason.
    pub fn kinds(self) -> String {
        match self {
            Kind::Fault | Kind::Cross => "cfs-cluster or cfs-cluster-mds3".into(),
            Kind::GatewayFault
            | Kind::MdsFault
            | Kind::MdsLeaderFault
            | Kind::Evicted
            | Kind::Evict => self.needs().label(),
            Kind::Encoded => "cfs-cluster-ec3 or cfs-cluster-ec6".into(),
            Kind::Reduced => "cfs-cluster-reduce or cfs-cluster-reduce-plain".into(),
            Kind::WriteDeleg => {
                "cfs, cfs-nowdeleg, cfs-cluster, cfs-cluster-nowdeleg or cfs-cluster-mds3".into()
            }
            Kind::Restart => "any".into(),
            Kind::Snapshot => {
                "cfs, cfs-nowdeleg, cfs-cluster, cfs-cluster-nowdeleg or cfs-cluster-mds3".into()
            }
        }
    }

    pub fn runs_on(self, spec: &crate::server::ServerSpec) -> bool {
        use crate::server::ServerSpec;
        *spec == self.needs()
            || self == Kind::Restart
            || matches!(
                (self, spec),
                (Kind::Fault | Kind::Cross, ServerSpec::CfsMetaCluster)
                    | (Kind::Encoded, ServerSpec::CfsClusterEc(_))
                    | (Kind::Reduced, ServerSpec::CfsClusterReduce { .. })
                    | (
                        Kind::WriteDeleg,
                        ServerSpec::CfsNoWriteDeleg
                            | ServerSpec::CfsCluster
                            | ServerSpec::CfsClusterNoWriteDeleg
                            | ServerSpec::CfsMetaCluster
                    )
                    | (
                        Kind::Snapshot,
                        ServerSpec::Cfs
                            | ServerSpec::CfsNoWriteDeleg
                            | ServerSpec::CfsCluster
                            | ServerSpec::CfsClusterNoWriteDeleg
                    )
            )
    }
}

/// The scenarios whose read-backs come from the bucket on cfs-cluster-s3 (issue 45: posix,
/// integrity and pnfs pass on a cache-mode cluster whose flash gave everything up first).
pub const EVICT_FIRST: [&str; 3] = ["posix", "integrity", "pnfs"];

/// The host steps of scenario `s` on `spec`: its own, else on cfs-cluster-s3 the forced
/// evictions of `EVICT_FIRST`'s.
pub fn host_for(s: &crate::scenario::Scenario, spec: &crate::server::ServerSpec) -> Option<Kind> {
    s.host.or_else(|| {
        (*spec == Kind::Evict.needs() && EVICT_FIRST.contains(&s.name)).then_some(Kind::Evict)
    })
}

/// What the host did, for the report (`host_ops` in the JSON; its lines join the case output).
#[derive(Clone, Debug, Default, Serialize)]
pub struct HostReport {
    /// INFO lines, in order
    pub steps: Vec<String>,
    /// FAIL lines (the case fails if any)
    pub failures: Vec<String>,
    /// pnfs-fault: the data server killed ("ds2 (id ..., 127.0.0.1:P+2, pid N)")
    #[serde(skip_serializing_if = "Option::is_none")]
    pub killed_ds: Option<String>,
    /// cluster counters at each step (absolute values as `cfs admin status` reports them)
    pub counters: Vec<Snapshot>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Snapshot {
    pub at: String,
    pub mds_read_bytes: u64,
    pub mds_write_bytes: u64,
    pub layouts_granted: u64,
    /// (role, state, read_bytes, write_bytes)
    pub data_servers: Vec<(String, String, u64, u64)>,
}

impl Snapshot {
    fn of(at: &str, s: &ClusterStatus, roles: &Roles) -> Snapshot {
        let mut data_servers: Vec<_> = s
            .data_servers
            .iter()
            .map(|d| {
                (
                    role_of(&d.listen, roles).unwrap_or_else(|| d.id.clone()),
                    d.state.clone(),
                    d.read_bytes,
                    d.write_bytes,
                )
            })
            .collect();
        data_servers.sort();
        Snapshot {
            at: at.into(),
            mds_read_bytes: s.mds.read_bytes,
            mds_write_bytes: s.mds.write_bytes,
            layouts_granted: s.mds.layouts_granted,
            data_servers,
        }
    }

    fn line(&self) -> String {
        let ds: Vec<String> = self
            .data_servers
            .iter()
            .map(|(r, st, rd, wr)| format!("{r} {st} r={rd} w={wr}"))
            .collect();
        format!(
            "INFO: host: counters at {}: MDS r={} w={} layouts={}; {}",
            self.at,
            self.mds_read_bytes,
            self.mds_write_bytes,
            self.layouts_granted,
            ds.join(", ")
        )
    }
}

/// (role, listen address) of each data server, as the cluster's own configs name them
/// (`Running::ds_roles`).
pub type Roles = Vec<(String, String)>;

/// The role ("ds2") of the data server listening on `listen`, as `cfs admin status` reports it.
pub fn role_of(listen: &str, roles: &Roles) -> Option<String> {
    let same = |a: &str| match (
        a.parse::<std::net::SocketAddr>(),
        listen.parse::<std::net::SocketAddr>(),
    ) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == listen,
    };
    roles
        .iter()
        .find(|(_, at)| same(at))
        .map(|(r, _)| r.clone())
}

/// The data server whose write_bytes grew most between two readings (it holds the file being
/// written: nothing else writes to the cluster during a case): (role, id, listen, growth).
pub fn pick_victim(
    before: &ClusterStatus,
    now: &ClusterStatus,
    roles: &Roles,
) -> Option<(String, String, String, u64)> {
    now.data_servers
        .iter()
        .filter(|d| d.state == "up")
        .filter_map(|d| {
            let was = before
                .data_servers
                .iter()
                .find(|b| b.id == d.id)
                .map_or(0, |b| b.write_bytes);
            let grew = d.write_bytes.saturating_sub(was);
            let role = role_of(&d.listen, roles)?;
            (grew > 0).then(|| (role, d.id.clone(), d.listen.clone(), grew))
        })
        .max_by_key(|v| (v.3, std::cmp::Reverse(v.0.clone())))
}

/// Offset of the first differing byte of two readers (a length difference counts at the end of
/// the shorter one); None when they are equal.
pub fn first_difference(mut a: impl Read, mut b: impl Read) -> std::io::Result<Option<u64>> {
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let mut off = 0u64;
    loop {
        let na = read_full(&mut a, &mut ba)?;
        let nb = read_full(&mut b, &mut bb)?;
        let n = na.min(nb);
        if let Some(i) = (0..n).find(|&i| ba[i] != bb[i]) {
            return Ok(Some(off + i as u64));
        }
        if na != nb {
            return Ok(Some(off + n as u64));
        }
        if na == 0 {
            return Ok(None);
        }
        off += na as u64;
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut have = 0;
    while have < buf.len() {
        match r.read(&mut buf[have..])? {
            0 => break,
            n => have += n,
        }
    }
    Ok(have)
}

/// What the host script needs to know about the case.
pub struct Ctx<'a> {
    pub rdv: &'a Rendezvous,
    /// the guest's working directory, relative to the export root ("/cfs-conf.NAME.RUN")
    pub wd: String,
    pub size_mib: u64,
    pub seed1: u64,
    pub seed2: u64,
    /// bound on each wait for the guest (its own timeout: a stuck guest ends by then anyway)
    pub step_timeout: Duration,
    /// the guest kernel's release ("6.1.0-56-amd64")
    pub kernel_release: String,
}

pub(crate) struct Host<'a> {
    pub(crate) ctx: &'a Ctx<'a>,
    rep: HostReport,
    /// the data servers by role (`Running::ds_roles`)
    pub(crate) roles: Roles,
}

/// Why a host script stopped early.
pub(crate) enum Stop {
    /// the guest posted abort (its FAIL lines say why) or exited
    Guest,
    /// the host recorded a FAIL line
    Failed,
}

impl Host<'_> {
    pub(crate) fn info(&mut self, m: String) {
        eprintln!("  host: {m}");
        self.rep.steps.push(format!("INFO: host: {m}"));
    }

    pub(crate) fn fail(&mut self, m: String) -> Stop {
        eprintln!("  host: FAIL {m}");
        self.rep.failures.push(format!("FAIL: host: {m}"));
        self.ctx.rdv.post("abort");
        Stop::Failed
    }

    /// A FAIL line that does not stop the guests: the host judged one of several
    /// independent facts, and the guests' own checks still say something.
    pub(crate) fn problem(&mut self, m: String) {
        eprintln!("  host: FAIL {m}");
        self.rep.failures.push(format!("FAIL: host: {m}"));
    }

    pub(crate) fn await_guest(&mut self, step: &str) -> std::result::Result<(), Stop> {
        match self.ctx.rdv.wait(step, self.ctx.step_timeout) {
            Seen::Posted => Ok(()),
            Seen::Aborted => Err(Stop::Guest),
            Seen::TimedOut => Err(self.fail(format!(
                "the guest did not reach step '{step}' within {} s (hung?)",
                self.ctx.step_timeout.as_secs()
            ))),
        }
    }

    fn status(&mut self, srv: &Running) -> std::result::Result<ClusterStatus, Stop> {
        match srv.cluster_status() {
            Some(Ok(s)) => Ok(s),
            Some(Err(e)) => Err(self.fail(format!("`cfs admin status --json` failed: {e}"))),
            None => Err(self.fail("not a cfs-cluster".into())),
        }
    }

    /// Counters reach the MDS with 1 s heartbeats: wait, then read until two readings agree.
    pub(crate) fn settled(
        &mut self,
        srv: &Running,
        at: &str,
    ) -> std::result::Result<ClusterStatus, Stop> {
        std::thread::sleep(Duration::from_millis(2500));
        let total = |c: &ClusterStatus| {
            c.data_servers
                .iter()
                .map(|d| d.read_bytes + d.write_bytes)
                .sum::<u64>()
                + c.mds.read_bytes
                + c.mds.write_bytes
        };
        let mut last = self.status(srv)?;
        for _ in 0..5 {
            std::thread::sleep(Duration::from_secs(1));
            let now = self.status(srv)?;
            let same = total(&now) == total(&last);
            last = now;
            if same {
                break;
            }
        }
        self.snapshot(at, &last);
        Ok(last)
    }

    fn snapshot(&mut self, at: &str, s: &ClusterStatus) {
        let snap = Snapshot::of(at, s, &self.roles);
        self.rep.steps.push(snap.line());
        self.rep.counters.push(snap);
    }
}

pub fn run(kind: Kind, srv: &mut Running, ctx: &Ctx) -> HostReport {
    let (roles, why) = match srv.ds_roles() {
        Ok(r) => (r, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    let mut h = Host {
        ctx,
        rep: HostReport::default(),
        roles,
    };
    if let Some(e) = why {
        if !matches!(
            kind,
            Kind::GatewayFault
                | Kind::MdsFault
                | Kind::MdsLeaderFault
                | Kind::WriteDeleg
                | Kind::Restart
                | Kind::Snapshot
        ) {
            let _ = h.fail(format!("the cluster's data servers: {e}"));
            return h.rep;
        }
    }
    let shown: Vec<String> = h.roles.iter().map(|(r, at)| format!("{r} {at}")).collect();
    if !shown.is_empty() {
        h.info(format!(
            "data servers (from the cluster's configs): {}",
            shown.join(", ")
        ));
    }
    match kind {
        Kind::Fault => {
            let mut killed: Option<String> = None;
            let _ = fault(&mut h, srv, &mut killed);
            // whatever happened: the next case gets all data servers back
            if let Some(role) = killed {
                h.info(format!("restarting {role} after an early stop"));
                let _ = restart_and_wait(&mut h, srv, &role);
            }
        }
        Kind::Cross => {
            let _ = cross(&mut h, srv);
        }
        Kind::Encoded => {
            let _ = crate::encoded::host(&mut h, srv);
        }
        Kind::Reduced => {
            let _ = crate::reduced::host(&mut h, srv);
        }
        Kind::Evicted => {
            let _ = crate::evicted::host(&mut h, srv);
        }
        Kind::Evict => {
            let _ = crate::evicted::forced(&mut h, srv);
        }
        Kind::MdsFault | Kind::MdsLeaderFault => {
            let _ = crate::mdsfault::host(&mut h, srv, kind == Kind::MdsLeaderFault);
        }
        Kind::WriteDeleg => {
            let _ = crate::wdeleg::host(&mut h, srv);
        }
        Kind::Restart => {
            let _ = crate::restart::host(&mut h, srv);
        }
        Kind::Snapshot => {
            let mut taken = None;
            let _ = crate::snapshot::host(&mut h, srv, &mut taken);
            // whatever happened: the next case meets no snapshot of `/`
            if taken.is_some() {
                h.info("deleting the snapshot after an early stop".into());
                let _ = crate::snapshot::delete(&mut h, srv, &mut taken);
            }
        }
        Kind::GatewayFault => {
            let mut killed = false;
            let _ = gateway_fault(&mut h, srv, &mut killed);
            if killed {
                h.info("restarting the gateway after an early stop".into());
                let _ = restart_gateway(&mut h, srv);
            }
        }
    }
    h.rep
}

/// While the guest's v3 write runs through the gateway: kill -9 the gateway node, restart it
/// a moment later. The guest's client then meets a gateway with a new write verifier and must
/// send again whatever it had not had committed.
fn gateway_fault(
    h: &mut Host,
    srv: &mut Running,
    killed: &mut bool,
) -> std::result::Result<(), Stop> {
    h.await_guest("writing")?;
    let at_kill = h.status(srv)?;
    h.snapshot("a quarter written, at the kill", &at_kill);
    let pid = match srv.kill_node("gw") {
        Ok(p) => p,
        Err(e) => return Err(h.fail(format!("kill -9 gw: {e}"))),
    };
    *killed = true;
    h.info(format!(
        "kill -9 the gateway (gw, pid {pid}) during the guest's v3 write"
    ));
    std::thread::sleep(Duration::from_secs(2));
    restart_gateway(h, srv)?;
    *killed = false;
    h.ctx.rdv.post("restarted");
    h.await_guest("done")?;
    // Where the bytes went: through the gateway's layouts to the data servers, not the MDS.
    h.settled(srv, "end (written, verified)")?;
    Ok(())
}

fn restart_gateway(h: &mut Host, srv: &mut Running) -> std::result::Result<(), Stop> {
    let pid = match srv.restart_node("gw") {
        Ok(p) => p,
        Err(e) => return Err(h.fail(format!("restart gw: {e}"))),
    };
    let t0 = Instant::now();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], srv.port));
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if t0.elapsed() > Duration::from_secs(30) {
            return Err(h.fail(format!(
                "restarted gw (pid {pid}) does not listen on {addr} after 30 s"
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    h.info(format!(
        "restarted the gateway (pid {pid}, `cfs server --config gw.toml`), listening after {:.1} s",
        t0.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// Kill the data server that grew while the first half was written; restart it after the
/// guest verified the file degraded. `killed` holds the role while it is down.
fn fault(
    h: &mut Host,
    srv: &mut Running,
    killed: &mut Option<String>,
) -> std::result::Result<(), Stop> {
    h.await_guest("start")?;
    let start = h.settled(srv, "start")?;
    h.ctx.rdv.post("baseline");
    h.await_guest("half")?;
    let half = h.settled(srv, "half (first half written and fsynced)")?;
    let Some((role, id, listen, grew)) = pick_victim(&start, &half, &h.roles) else {
        return Err(h.fail(
            "no data server's write_bytes grew while the first half was written: the file is on none of them".into(),
        ));
    };
    let pid = match srv.kill_node(&role) {
        Ok(p) => p,
        Err(e) => return Err(h.fail(format!("kill -9 {role}: {e}"))),
    };
    *killed = Some(role.clone());
    let who = format!("{role} (id {id}, {listen}, pid {pid})");
    h.info(format!(
        "kill -9 {who}: its write_bytes grew by {grew} since the scenario started"
    ));
    h.rep.killed_ds = Some(format!("{who}, write_bytes +{grew} before the kill"));
    h.ctx.rdv.post("killed");
    h.await_guest("verified")?;
    let degraded = h.settled(srv, "degraded (second half written, verified)")?;
    let state = degraded
        .data_servers
        .iter()
        .find(|d| d.id == id)
        .map_or("missing".into(), |d| d.state.clone());
    h.info(format!("MDS sees the killed {role} as '{state}'"));
    restart_and_wait(h, srv, &role)?;
    *killed = None;
    h.settled(srv, "restarted")?;
    h.ctx.rdv.post("restarted");
    h.await_guest("done")?;
    h.settled(srv, "end")?;
    Ok(())
}

fn restart_and_wait(h: &mut Host, srv: &mut Running, role: &str) -> std::result::Result<(), Stop> {
    let pid = match srv.restart_node(role) {
        Ok(p) => p,
        Err(e) => return Err(h.fail(format!("restart {role}: {e}"))),
    };
    let t0 = Instant::now();
    loop {
        let s = h.status(srv)?;
        let up = s.data_servers.iter().filter(|d| d.state == "up").count();
        // the restarted node must have registered again (a fresh heartbeat), not merely be
        // remembered as up
        let fresh = s.data_servers.iter().any(|d| {
            role_of(&d.listen, &h.roles).as_deref() == Some(role)
                && d.state == "up"
                && d.silent_ms.unwrap_or(0) < 2000
        });
        let all = h.roles.len();
        if up >= all && fresh {
            h.info(format!(
                "restarted {role} (pid {pid}, `cfs server --config {role}.toml`): {up} data servers up after {:.1} s",
                t0.elapsed().as_secs_f64()
            ));
            return Ok(());
        }
        if t0.elapsed() > Duration::from_secs(60) {
            return Err(h.fail(format!(
                "restarted {role} (pid {pid}) but only {up} of {all} data servers up after 60 s"
            )));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Run a command with a time bound (the Rust client must not hang the harness).
fn run_bounded(cmd: &mut Command, limit: Duration) -> Result<()> {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .ctx(|| format!("spawn {shown}"))?;
    let t0 = Instant::now();
    loop {
        if let Some(st) = child.try_wait().ctx(|| format!("wait {shown}"))? {
            if st.success() {
                return Ok(());
            }
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            return Err(Error::Command {
                cmd: shown,
                status: st.to_string(),
                detail: procs::tail(&err, 8),
            });
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::Server(format!(
                "{shown} did not finish within {} s",
                limit.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn helper_gen(file: &Path, seed: u64, mib: u64) -> Result<()> {
    let h = paths::cache_dir().join("bin").join("cfshelper");
    procs::run(
        Command::new(&h)
            .arg("gen")
            .arg(file)
            .arg(seed.to_string())
            .arg(mib.to_string()),
    )
    .map(|_| ())
}

fn cross(h: &mut Host, srv: &mut Running) -> std::result::Result<(), Stop> {
    let Some((bin, addr)) = srv.admin().map(|(b, a)| (b.to_path_buf(), a.to_owned())) else {
        return Err(h.fail("not a cfs-cluster".into()));
    };
    let Some(dir) = srv
        .state_dir()
        .map(|d| d.join(format!("cross-{}", h.ctx.seed1)))
    else {
        return Err(h.fail("no state directory".into()));
    };
    let r = cross_in(h, srv, &bin, &addr, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    r
}

fn cross_in(
    h: &mut Host,
    srv: &Running,
    bin: &Path,
    addr: &str,
    dir: &PathBuf,
) -> std::result::Result<(), Stop> {
    let bytes = h.ctx.size_mib << 20;
    let limit = Duration::from_secs(120 + 2 * h.ctx.size_mib);
    if let Err(e) = std::fs::create_dir_all(dir).ctx(|| format!("create {dir:?}")) {
        return Err(h.fail(e.to_string()));
    }
    let (s1, s2) = (h.ctx.seed1, h.ctx.seed2);
    let up = dir.join("up.bin");
    if let Err(e) = helper_gen(&up, s1, h.ctx.size_mib) {
        return Err(h.fail(format!("host cfshelper gen: {e}")));
    }
    h.await_guest("ready")?;
    let before = h.settled(srv, "ready")?;
    let remote_up = format!("{}/from-host", h.ctx.wd);
    let t0 = Instant::now();
    if let Err(e) = run_bounded(
        Command::new(bin)
            .args(["put", "--server", addr])
            .arg(&up)
            .arg(&remote_up),
        limit,
    ) {
        return Err(h.fail(format!("cfs put {remote_up}: {e}")));
    }
    h.info(format!(
        "cfs put {} MiB (seed {s1}) to {remote_up} in {:.1} s",
        h.ctx.size_mib,
        t0.elapsed().as_secs_f64()
    ));
    let after_put = h.settled(srv, "after cfs put")?;
    let (mds_r, mds_w, ds_r, ds_w) = deltas(&before, &after_put);
    if mds_w > bytes / 100 || ds_w < MIRRORS * bytes {
        h.fail(format!(
            "cfs put did not go through the data servers: MDS write {mds_w} B (expected <= {}), DS write {ds_w} B (expected >= {})",
            bytes / 100,
            MIRRORS * bytes
        ));
    }
    let _ = (mds_r, ds_r);
    h.ctx.rdv.post("put-done");
    h.await_guest("guest-written")?;
    let before_get = h.settled(srv, "guest file written")?;
    let down = dir.join("down.bin");
    let remote_down = format!("{}/from-guest", h.ctx.wd);
    let t0 = Instant::now();
    if let Err(e) = run_bounded(
        Command::new(bin)
            .args(["get", "--server", addr])
            .arg(&remote_down)
            .arg(&down),
        limit,
    ) {
        return Err(h.fail(format!("cfs get {remote_down}: {e}")));
    }
    h.info(format!(
        "cfs get {remote_down} in {:.1} s",
        t0.elapsed().as_secs_f64()
    ));
    let want = dir.join("want.bin");
    if let Err(e) = helper_gen(&want, s2, h.ctx.size_mib) {
        return Err(h.fail(format!("host cfshelper gen: {e}")));
    }
    let diff = std::fs::File::open(&down)
        .and_then(|a| std::fs::File::open(&want).map(|b| (a, b)))
        .and_then(|(a, b)| first_difference(a, b));
    let got_len = std::fs::metadata(&down).map(|m| m.len()).unwrap_or(0);
    match diff {
        Ok(None) => h.info(format!(
            "cfs get of the kernel-written file: {got_len} bytes identical to host cfshelper gen (seed {s2})"
        )),
        Ok(Some(off)) => {
            h.fail(format!(
                "cfs get of the kernel-written file differs from host cfshelper gen (seed {s2}) at offset {off} (got {got_len} bytes, expected {bytes})"
            ));
        }
        Err(e) => {
            h.fail(format!("compare {down:?} with {want:?}: {e}"));
        }
    }
    let after_get = h.settled(srv, "after cfs get")?;
    let (mds_r, _, ds_r, _) = deltas(&before_get, &after_get);
    if mds_r > bytes / 100 || ds_r < bytes {
        h.fail(format!(
            "cfs get did not read through the data servers: MDS read {mds_r} B (expected <= {}), DS read {ds_r} B (expected >= {bytes})",
            bytes / 100
        ));
    }
    h.ctx.rdv.post("got");
    Ok(())
}

/// (MDS read, MDS write, Σ DS read, Σ DS write) growth between two readings.
pub(crate) fn deltas(a: &ClusterStatus, b: &ClusterStatus) -> (u64, u64, u64, u64) {
    let sum = |s: &ClusterStatus, f: fn(&crate::server::DsCounters) -> u64| {
        s.data_servers.iter().map(f).sum::<u64>()
    };
    (
        b.mds.read_bytes.saturating_sub(a.mds.read_bytes),
        b.mds.write_bytes.saturating_sub(a.mds.write_bytes),
        sum(b, |d| d.read_bytes).saturating_sub(sum(a, |d| d.read_bytes)),
        sum(b, |d| d.write_bytes).saturating_sub(sum(a, |d| d.write_bytes)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::DsCounters;

    fn ds(id: &str, port: u16, state: &str, w: u64) -> DsCounters {
        DsCounters {
            id: id.into(),
            listen: format!("127.0.0.1:{port}"),
            state: state.into(),
            write_bytes: w,
            ..DsCounters::default()
        }
    }

    fn status(v: Vec<DsCounters>) -> ClusterStatus {
        ClusterStatus {
            data_servers: v,
            ..ClusterStatus::default()
        }
    }

    fn roles() -> Roles {
        // as a 3-MDS cluster names them: data servers after the MDS nodes' ports
        (1..=3)
            .map(|i| (format!("ds{i}"), format!("127.0.0.1:{}", 5002 + i)))
            .collect()
    }

    #[test]
    fn data_server_scenarios_run_on_both_cluster_kinds_only() {
        use crate::server::ServerSpec;
        for k in [Kind::Fault, Kind::Cross] {
            assert!(k.runs_on(&ServerSpec::CfsCluster));
            assert!(k.runs_on(&ServerSpec::CfsMetaCluster));
            assert!(!k.runs_on(&ServerSpec::Cfs));
            assert!(!k.runs_on(&ServerSpec::Ganesha));
            assert!(!k.runs_on(&ServerSpec::CfsClusterGateway));
        }
        // encoded: only the clusters that encode within seconds (cfs-cluster's default is an
        // hour), and the data-server fault scenarios not on those
        for n in [3, 6] {
            assert!(Kind::Encoded.runs_on(&ServerSpec::CfsClusterEc(n)));
            assert!(!Kind::Fault.runs_on(&ServerSpec::CfsClusterEc(n)));
        }
        assert!(!Kind::Encoded.runs_on(&ServerSpec::CfsCluster));
        assert!(!Kind::Encoded.runs_on(&ServerSpec::CfsMetaCluster));
        assert!(Kind::Reduced.runs_on(&ServerSpec::CfsClusterReduce { sealed: true }));
        assert!(Kind::Reduced.runs_on(&ServerSpec::CfsClusterReduce { sealed: false }));
        assert!(!Kind::Reduced.runs_on(&ServerSpec::CfsClusterEc(3)));
        assert!(!Kind::Encoded.runs_on(&ServerSpec::CfsClusterReduce { sealed: true }));
        assert!(Kind::GatewayFault.runs_on(&ServerSpec::CfsClusterGateway));
        assert!(!Kind::GatewayFault.runs_on(&ServerSpec::CfsMetaCluster));
        // evicted: only where a bucket is behind the data servers and everything is pinned to it
        assert!(Kind::Evicted.runs_on(&ServerSpec::CfsClusterS3));
        assert!(!Kind::Evicted.runs_on(&ServerSpec::CfsCluster));
        assert!(!Kind::Fault.runs_on(&ServerSpec::CfsClusterS3));
        // forced evictions before the read-backs: posix, integrity and pnfs on that kind only
        let by_name = |n: &str| {
            crate::scenario::SCENARIOS
                .iter()
                .find(|s| s.name == n)
                .expect("scenario")
        };
        for n in EVICT_FIRST {
            assert_eq!(
                host_for(by_name(n), &ServerSpec::CfsClusterS3),
                Some(Kind::Evict)
            );
            assert_eq!(host_for(by_name(n), &ServerSpec::CfsCluster), None);
        }
        assert_eq!(
            host_for(by_name("evicted"), &ServerSpec::CfsClusterS3),
            Some(Kind::Evicted)
        );
        assert_eq!(
            ServerSpec::parse("cfs-cluster-s3").map(|s| s.label()).ok(),
            Some("cfs-cluster-s3".to_string())
        );
    }

    #[test]
    fn write_delegations_are_judged_where_the_host_reads_every_mds_nodes_metrics() {
        use crate::server::ServerSpec;
        let k = Kind::WriteDeleg;
        for s in [
            ServerSpec::Cfs,
            ServerSpec::CfsNoWriteDeleg,
            ServerSpec::CfsCluster,
            ServerSpec::CfsMetaCluster,
        ] {
            assert!(k.runs_on(&s), "{}", s.label());
        }
        // ganesha has no /metrics; the gateways' v3 has no delegations; an external server's
        // admin listener is not the harness's
        for s in [
            ServerSpec::Ganesha,
            ServerSpec::CfsGateway,
            ServerSpec::CfsClusterGateway,
            ServerSpec::CfsClusterEc(3),
            ServerSpec::External { port: 2049 },
        ] {
            assert!(!k.runs_on(&s), "{}", s.label());
        }
    }

    #[test]
    fn the_restart_step_leaves_xattr_offered_on_every_kind() {
        use crate::server::ServerSpec;
        // It restarts single-node cfs only, and says so elsewhere: `xattr` ran on every kind
        // before it had a host step, and must still.
        for s in [
            ServerSpec::Cfs,
            ServerSpec::CfsCluster,
            ServerSpec::CfsMetaCluster,
            ServerSpec::CfsClusterGateway,
            ServerSpec::CfsClusterEc(3),
            ServerSpec::Ganesha,
            ServerSpec::External { port: 2049 },
        ] {
            assert!(Kind::Restart.runs_on(&s), "{}", s.label());
        }
    }

    #[test]
    fn roles_come_from_the_cluster_configs() {
        let r = roles();
        assert_eq!(role_of("127.0.0.1:5003", &r).as_deref(), Some("ds1"));
        assert_eq!(role_of("127.0.0.1:5005", &r).as_deref(), Some("ds3"));
        // an MDS node's port, or one after the last data server, is no data server
        assert_eq!(role_of("127.0.0.1:5001", &r), None);
        assert_eq!(role_of("127.0.0.1:5006", &r), None);
        assert_eq!(role_of("garbage", &r), None);
    }

    #[test]
    fn the_victim_is_a_server_whose_writes_grew() {
        let before = status(vec![
            ds("a", 5003, "up", 100),
            ds("b", 5004, "up", 0),
            ds("c", 5005, "up", 7),
        ]);
        let now = status(vec![
            ds("a", 5003, "up", 100),
            ds("b", 5004, "up", 50),
            ds("c", 5005, "up", 57),
        ]);
        // equal growth: the lower role, deterministically
        let v = pick_victim(&before, &now, &roles()).expect("a victim");
        assert_eq!((v.0.as_str(), v.1.as_str(), v.3), ("ds2", "b", 50));
        // nothing grew: no victim (the scenario then fails instead of killing a bystander)
        assert!(pick_victim(&now, &now, &roles()).is_none());
        // a server already down is not picked
        let down = status(vec![ds("b", 5004, "down", 500), ds("c", 5005, "up", 58)]);
        let v = pick_victim(&now, &down, &roles()).expect("a victim");
        assert_eq!(v.0, "ds3");
    }

    #[test]
    fn first_difference_finds_offset_and_length_mismatch() {
        let a = vec![7u8; 3 << 20];
        let mut b = a.clone();
        assert_eq!(first_difference(&a[..], &b[..]).expect("io"), None);
        b[(2 << 20) + 5] = 0;
        assert_eq!(
            first_difference(&a[..], &b[..]).expect("io"),
            Some((2 << 20) + 5)
        );
        assert_eq!(first_difference(&a[..], &a[..100]).expect("io"), Some(100));
        assert_eq!(first_difference(&[][..], &[][..]).expect("io"), None);
    }
}
