//! Servers under test: nfs-ganesha (started here, optionally misconfigured on purpose), the cfs
//! workspace binary, or an already running server on host loopback.

use crate::error::{Error, IoContext, Result};
use crate::paths;
use crate::procs;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerSpec {
    /// ganesha with a read-write export (the baseline)
    Ganesha,
    /// deliberately broken: the export is read-only
    GaneshaRo,
    /// deliberately restricted: root is squashed to nobody (chown and root-owned state break)
    GaneshaRootSquash,
    Cfs,
    /// `cfs server` with `write_delegations = false` at the top of its config: the baseline of
    /// the write-delegation benchmark (`bench --server cfs-nowdeleg --server cfs --scenario
    /// smallfiles`), and the control case of `wdeleg` (no write delegation may be granted)
    CfsNoWriteDeleg,
    /// `cfs cluster up --ds 3`: one MDS and three data servers, pNFS flexfiles layouts
    CfsCluster,
    /// `cfs-cluster` with `--no-write-delegations`: the baseline of the write-delegation
    /// benchmark with data servers (`bench --server cfs-cluster-nowdeleg --server cfs-cluster
    /// --scenario smallfiles`), and a control case of `wdeleg`
    CfsClusterNoWriteDeleg,
    /// `cfs cluster up --mds 3 --ds 3`: three MDS nodes (every metadata shard a Raft group
    /// over them) and three data servers; guests mount the first MDS node
    CfsMetaCluster,
    /// the embedded default (`cfs server`: MDS and NFSv3 gateway in one process), in a private
    /// network namespace with its own rpcbind: v3 mounts find the gateway through rpcbind
    CfsGateway,
    /// `cfs cluster up --ds 3 --gateway-port Q`: the cluster and a gateway node of its own
    /// (v3 through the gateway, its data to the data servers through layouts), rpcbind too
    CfsClusterGateway,
    /// `cfs cluster up --ds N --encode-after 2` (`cfs-cluster-ec3`: 2+1 on three data
    /// servers; `cfs-cluster-ec6`: 4+2 on six): files left alone for 2 s are erasure-coded
    CfsClusterEc(u16),
    /// `cfs cluster up --ds 3 --encode-after 2 --reduce on`: files left alone for 2 s are
    /// data-reduced (deduplicated, compressed, stored as shared 2+1 segments; issue 46).
    /// `cfs-cluster-reduce` is `sealed` (`--encrypt`: segments under the cluster's data key,
    /// which only the MDS holds, so reads go through the MDS, which assembles them);
    /// `cfs-cluster-reduce-plain` is not, and a read layout sends the kernel to a data server
    /// that assembles them.
    CfsClusterReduce {
        sealed: bool,
    },
    /// `cfs cluster up --ds 3 --s3 URL` against moto's S3 server, with `/` pinned to the
    /// bucket (`cfs admin tier pin / s3`): every file the guest makes is evicted from the data
    /// servers as soon as the bucket holds it, so reads come from S3 and writes wait for the
    /// file's restore (issue 45)
    CfsClusterS3,
    External {
        port: u16,
    },
}

impl ServerSpec {
    pub fn parse(s: &str) -> Result<ServerSpec> {
        Ok(match s {
            "ganesha" => ServerSpec::Ganesha,
            "ganesha-ro" => ServerSpec::GaneshaRo,
            "ganesha-rootsquash" => ServerSpec::GaneshaRootSquash,
            "cfs" => ServerSpec::Cfs,
            "cfs-nowdeleg" => ServerSpec::CfsNoWriteDeleg,
            "cfs-cluster" => ServerSpec::CfsCluster,
            "cfs-cluster-nowdeleg" => ServerSpec::CfsClusterNoWriteDeleg,
            "cfs-cluster-mds3" => ServerSpec::CfsMetaCluster,
            "cfs-gateway" => ServerSpec::CfsGateway,
            "cfs-cluster-gateway" => ServerSpec::CfsClusterGateway,
            "cfs-cluster-ec3" => ServerSpec::CfsClusterEc(3),
            "cfs-cluster-ec6" => ServerSpec::CfsClusterEc(6),
            "cfs-cluster-reduce" => ServerSpec::CfsClusterReduce { sealed: true },
            "cfs-cluster-reduce-plain" => ServerSpec::CfsClusterReduce { sealed: false },
            "cfs-cluster-s3" => ServerSpec::CfsClusterS3,
            other => {
                let addr: SocketAddr = other.parse().map_err(|_| {
                    Error::Usage(format!(
                        "--server {other}: expected ganesha, ganesha-ro, ganesha-rootsquash, cfs, cfs-nowdeleg, cfs-cluster, cfs-cluster-nowdeleg, cfs-cluster-mds3, cfs-gateway, cfs-cluster-gateway, cfs-cluster-ec3, cfs-cluster-ec6, cfs-cluster-reduce, cfs-cluster-reduce-plain, cfs-cluster-s3 or 127.0.0.1:PORT"
                    ))
                })?;
                // qemu user networking maps the guest's 10.0.2.2 to host 127.0.0.1 only
                if addr.ip() != std::net::IpAddr::V4(Ipv4Addr::LOCALHOST) {
                    return Err(Error::Usage(format!(
                        "--server {other}: only 127.0.0.1 is reachable from the guest (as 10.0.2.2)"
                    )));
                }
                ServerSpec::External { port: addr.port() }
            }
        })
    }

    pub fn label(&self) -> String {
        match self {
            ServerSpec::Ganesha => "ganesha".into(),
            ServerSpec::GaneshaRo => "ganesha-ro".into(),
            ServerSpec::GaneshaRootSquash => "ganesha-rootsquash".into(),
            ServerSpec::Cfs => "cfs".into(),
            ServerSpec::CfsNoWriteDeleg => "cfs-nowdeleg".into(),
            ServerSpec::CfsCluster => "cfs-cluster".into(),
            ServerSpec::CfsClusterNoWriteDeleg => "cfs-cluster-nowdeleg".into(),
            ServerSpec::CfsMetaCluster => "cfs-cluster-mds3".into(),
            ServerSpec::CfsGateway => "cfs-gateway".into(),
            ServerSpec::CfsClusterGateway => "cfs-cluster-gateway".into(),
            ServerSpec::CfsClusterEc(n) => format!("cfs-cluster-ec{n}"),
            ServerSpec::CfsClusterReduce { sealed: true } => "cfs-cluster-reduce".into(),
            ServerSpec::CfsClusterReduce { sealed: false } => "cfs-cluster-reduce-plain".into(),
            ServerSpec::CfsClusterS3 => "cfs-cluster-s3".into(),
            ServerSpec::External { port } => format!("127.0.0.1:{port}"),
        }
    }

    pub fn is_ganesha(&self) -> bool {
        matches!(
            self,
            ServerSpec::Ganesha | ServerSpec::GaneshaRo | ServerSpec::GaneshaRootSquash
        )
    }

    /// Versions this server is configured (or promised) to offer; a mount failure on one of
    /// them is a failure, on any other it is reported as "not offered".
    pub fn promised(&self, vers: &str) -> bool {
        match self {
            s if s.is_ganesha() => true,
            ServerSpec::Cfs
            | ServerSpec::CfsNoWriteDeleg
            | ServerSpec::CfsCluster
            | ServerSpec::CfsClusterNoWriteDeleg
            | ServerSpec::CfsMetaCluster
            | ServerSpec::CfsClusterEc(_)
            | ServerSpec::CfsClusterReduce { .. }
            | ServerSpec::CfsClusterS3 => {
                matches!(vers, "4.1" | "4.2")
            }
            // v3 through the gateway, v4.1/4.2 from the MDS of the same file system
            ServerSpec::CfsGateway | ServerSpec::CfsClusterGateway => {
                matches!(vers, "3" | "4.1" | "4.2")
            }
            _ => false,
        }
    }

    /// ganesha needs rpcbind for v3, which only a private network namespace gives us safely.
    pub fn wants_netns(&self) -> bool {
        self.is_ganesha() || self.has_gateway()
    }

    /// Serves v3 through the cfs gateway (and v4.1+ from the MDS behind it).
    pub fn has_gateway(&self) -> bool {
        matches!(self, ServerSpec::CfsGateway | ServerSpec::CfsClusterGateway)
    }

    /// Runs the cfs binary (so a missing binary is worth saying up front).
    pub fn is_cfs(&self) -> bool {
        matches!(
            self,
            ServerSpec::Cfs
                | ServerSpec::CfsNoWriteDeleg
                | ServerSpec::CfsCluster
                | ServerSpec::CfsClusterNoWriteDeleg
                | ServerSpec::CfsMetaCluster
                | ServerSpec::CfsGateway
                | ServerSpec::CfsClusterGateway
                | ServerSpec::CfsClusterEc(_)
                | ServerSpec::CfsClusterReduce { .. }
                | ServerSpec::CfsClusterS3
        )
    }
}

pub struct Running {
    pub spec: ServerSpec,
    /// the port guests mount (v3: the gateway's, found through rpcbind when `v3_rpcbind`)
    pub port: u16,
    /// cfs-gateway kinds: the MDS's port, for v4.1/4.2 mounts of the same file system;
    /// cfs-cluster-mds3: MDS node 1's client address (the one that moves to a live node when
    /// its node dies), which guests mount
    pub v4_port: Option<u16>,
    /// v3 mounts name no ports: mount.nfs asks rpcbind (the gateway registered there)
    pub v3_rpcbind: bool,
    /// v3 MOUNT port (ganesha only)
    pub mnt_port: Option<u16>,
    pub export_v4: String,
    pub export_v3: String,
    pub version: String,
    child: Option<Child>,
    rpcbind: Option<Child>,
    state_dir: Option<PathBuf>,
    pub log: Option<PathBuf>,
    /// cfs-cluster: the binary, MDS address and cluster secret file for `cfs admin status`
    /// (signed with the secret), and the pid list `cfs cluster up` writes (a sweep after
    /// stopping it, in case it died without its nodes)
    admin: Option<(PathBuf, String, PathBuf)>,
    node_pids: Option<PathBuf>,
    /// cfs-cluster nodes the harness restarted itself (`pnfs-fault`): (role, process)
    restarted: Vec<(String, Child)>,
    /// Processes the server needs, stopped after it (cfs-cluster-s3: moto)
    helpers: Vec<Child>,
    /// Single-node cfs: the command that started it, which `restart_single` runs again (same
    /// port, data directory, config and log).
    relaunch: Option<Command>,
}

impl Running {
    /// cfs-cluster-mds3: MDS node 2's client address (node j's is node 1's + j - 1), for a
    /// second guest that should reach the file system through another node.
    pub fn second_node_port(&self) -> Option<u16> {
        match (&self.spec, self.v4_port) {
            (ServerSpec::CfsMetaCluster, Some(p)) => p.checked_add(1),
            _ => None,
        }
    }

    pub fn port_for(&self, vers: &str) -> u16 {
        match self.v4_port {
            Some(p) if vers != "3" => p,
            _ => self.port,
        }
    }

    pub fn export_for(&self, vers: &str) -> &str {
        if vers == "3" {
            &self.export_v3
        } else {
            &self.export_v4
        }
    }

    pub fn stop(&mut self) {
        // `cfs cluster up` stops its nodes itself and gives each up to 15 s
        let grace = if matches!(
            self.spec,
            ServerSpec::CfsCluster
                | ServerSpec::CfsClusterNoWriteDeleg
                | ServerSpec::CfsMetaCluster
                | ServerSpec::CfsClusterGateway
                | ServerSpec::CfsClusterEc(_)
                | ServerSpec::CfsClusterReduce { .. }
                | ServerSpec::CfsClusterS3
        ) {
            30
        } else {
            10
        };
        if let Some(c) = self.child.as_mut() {
            procs::stop(c, Duration::from_secs(grace));
        }
        if let Some(c) = self.rpcbind.as_mut() {
            procs::stop(c, Duration::from_secs(5));
        }
        self.child = None;
        self.rpcbind = None;
        if let Some(p) = self.node_pids.take() {
            stop_leftover_nodes(&p);
        }
        for (_, c) in self.restarted.iter_mut() {
            procs::stop(c, Duration::from_secs(15));
        }
        self.restarted.clear();
        for c in self.helpers.iter_mut() {
            procs::stop(c, Duration::from_secs(5));
        }
        self.helpers.clear();
        if let Some(d) = self.state_dir.take() {
            if std::env::var_os("CFS_CONFORMANCE_KEEP").is_none() {
                let _ = std::fs::remove_dir_all(d);
            }
        }
    }

    /// PID of the server process the harness started (None for an external server).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The state directory (kept with CFS_CONFORMANCE_KEEP=1), where server logs are.
    pub fn state_dir(&self) -> Option<&Path> {
        self.state_dir.as_deref()
    }

    /// `cfs admin status --json` of a cfs-cluster (None for other servers).
    pub fn cluster_status(&self) -> Option<Result<ClusterStatus>> {
        let (bin, addr, secret) = self.admin.as_ref()?;
        if self.spec != ServerSpec::CfsMetaCluster {
            return Some(cluster_status(bin, addr, secret));
        }
        // Several MDS nodes: the guest's may be any of them (client addresses move when a
        // node dies), so the MDS counters are every node's summed; the data servers report
        // the same counters to each node, so the first answer's stand.
        let mut sum: Option<ClusterStatus> = None;
        let mut last_err = None;
        for at in self.mds_addresses() {
            match cluster_status(bin, &at, secret) {
                Ok(st) => match sum.as_mut() {
                    None => sum = Some(st),
                    Some(t) => {
                        t.mds.read_bytes += st.mds.read_bytes;
                        t.mds.write_bytes += st.mds.write_bytes;
                        t.mds.read_ops += st.mds.read_ops;
                        t.mds.write_ops += st.mds.write_ops;
                        t.mds.layouts_granted += st.mds.layouts_granted;
                    }
                },
                Err(e) => last_err = Some(e),
            }
        }
        Some(match (sum, last_err) {
            (Some(s), _) => Ok(s),
            (None, Some(e)) => Err(e),
            (None, None) => cluster_status(bin, addr, secret),
        })
    }

    /// cfs-cluster-mds3: every MDS node's own address, from its config (`mdsN.toml`).
    fn mds_addresses(&self) -> Vec<String> {
        let Some(dir) = self.cluster_dir() else {
            return Vec::new();
        };
        (1..=CLUSTER_MDS)
            .filter_map(|j| std::fs::read_to_string(dir.join(format!("mds{j}.toml"))).ok())
            .filter_map(|t| toml_string(&t, "listen"))
            .collect()
    }

    /// cfs-cluster: `cfs admin status --json` from the admin listener at `addr` (MDS nodes
    /// answer for themselves: the client addresses they serve, the shards they lead).
    pub fn status_json(&self, addr: &str) -> Result<serde_json::Value> {
        let (bin, _, secret) = self
            .admin
            .as_ref()
            .ok_or_else(|| Error::Server("not a cfs-cluster".into()))?;
        let out = procs::run(
            Command::new(bin)
                .args(["admin", "status", "--json", "--admin", addr])
                .arg("--cluster-secret-file")
                .arg(secret),
        )?;
        Ok(serde_json::from_str(out.trim())?)
    }

    /// Still alive? (a server that died mid-run explains every later failure)
    pub fn alive(&mut self) -> bool {
        let child = match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => true,
        };
        // cfs-cluster: `cfs cluster up` outlives a node that died, so look at every node
        let restarted: Vec<String> = self
            .restarted
            .iter_mut()
            .filter_map(|(role, c)| matches!(c.try_wait(), Ok(None)).then(|| role.clone()))
            .collect();
        child
            && match self.node_pids.as_deref() {
                Some(p) => gone_nodes(p).iter().all(|n| restarted.contains(n)),
                None => true,
            }
    }

    /// cfs-cluster: the directory with the nodes' configs, logs and `pids`.
    pub fn cluster_dir(&self) -> Option<&Path> {
        self.node_pids.as_deref().and_then(Path::parent)
    }

    /// cfs-cluster: the MDS address for host-side clients and `cfs admin`.
    pub fn admin(&self) -> Option<(&Path, &str)> {
        self.admin
            .as_ref()
            .map(|(b, a, _)| (b.as_path(), a.as_str()))
    }

    /// cfs-cluster kinds: (role, listen address) of every data server, read from the cluster's
    /// own description: the node list `cfs cluster up` writes (`pids`) and each data server's
    /// config (`dsI.toml`, its `listen`), so no assumption about how ports are laid out.
    pub fn ds_roles(&self) -> Result<Vec<(String, String)>> {
        let pids = self
            .node_pids
            .as_deref()
            .ok_or_else(|| Error::Server("not a cfs-cluster".into()))?;
        let dir = pids
            .parent()
            .ok_or_else(|| Error::Server(format!("{pids:?} has no directory")))?;
        let text = std::fs::read_to_string(pids).ctx(|| format!("read {pids:?}"))?;
        let mut roles = Vec::new();
        for name in text.lines().filter_map(|l| l.split_whitespace().next()) {
            let is_ds = name
                .strip_prefix("ds")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if !is_ds {
                continue;
            }
            let conf = dir.join(format!("{name}.toml"));
            let toml = std::fs::read_to_string(&conf).ctx(|| format!("read {conf:?}"))?;
            let listen = toml_string(&toml, "listen")
                .ok_or_else(|| Error::Server(format!("no listen address in {conf:?}")))?;
            roles.push((name.to_owned(), listen));
        }
        if roles.is_empty() {
            return Err(Error::Server(format!("no data server listed in {pids:?}")));
        }
        Ok(roles)
    }

    /// cfs-cluster: SIGKILL the node `role` ("ds2"), whether `cfs cluster up` started it or the
    /// harness restarted it; waits until it is gone. Returns its pid.
    pub fn kill_node(&mut self, role: &str) -> Result<u32> {
        if let Some(i) = self.restarted.iter().position(|(r, _)| r == role) {
            let (_, mut c) = self.restarted.remove(i);
            let pid = c.id();
            let _ = c.kill();
            let _ = c.wait();
            return Ok(pid);
        }
        let pids = self
            .node_pids
            .as_deref()
            .ok_or_else(|| Error::Server("not a cfs-cluster".into()))?;
        let (nodes, ours) = listed_nodes(pids);
        let pid = nodes
            .iter()
            .find(|(n, _)| n == role)
            .map(|&(_, p)| p)
            .ok_or_else(|| Error::Server(format!("{role} not listed in {pids:?}")))?;
        if !ours(pid) {
            return Err(Error::Server(format!(
                "{role} (pid {pid}) is not running with this cluster's state directory"
            )));
        }
        procs::signal(pid, "KILL");
        let deadline = Instant::now() + Duration::from_secs(10);
        while ours(pid) {
            if Instant::now() > deadline {
                return Err(Error::Server(format!(
                    "{role} (pid {pid}) survived SIGKILL"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(pid)
    }

    /// cfs-cluster: start node `role` again from its own config (`cfs server --config
    /// cluster/ROLE.toml`), output appended to cluster/ROLE.restart.log. Returns its pid.
    pub fn restart_node(&mut self, role: &str) -> Result<u32> {
        let (bin, _, _) = self
            .admin
            .clone()
            .ok_or_else(|| Error::Server("not a cfs-cluster".into()))?;
        let dir = self
            .cluster_dir()
            .ok_or_else(|| Error::Server("not a cfs-cluster".into()))?
            .to_path_buf();
        let conf = dir.join(format!("{role}.toml"));
        let log = dir.join(format!("{role}.restart.log"));
        let o = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .ctx(|| format!("open {log:?}"))?;
        let e = o.try_clone().ctx(|| format!("dup {log:?}"))?;
        let child = Command::new(&bin)
            .arg("server")
            .arg("--config")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(o)
            .stderr(e)
            .spawn()
            .ctx(|| format!("spawn {bin:?} server --config {conf:?}"))?;
        let pid = child.id();
        self.restarted.push((role.to_owned(), child));
        Ok(pid)
    }

    /// Single-node cfs: kill -9 of the server, then the same command again (same port, data
    /// directory, config and log), once it accepts connections. Returns its pid.
    pub fn restart_single(&mut self) -> Result<u32> {
        let (Some(cmd), Some(old)) = (self.relaunch.as_mut(), self.child.as_mut()) else {
            return Err(Error::Server(
                "not a single-node cfs the harness started".into(),
            ));
        };
        // Reaped before the new one binds: its listening socket is closed with it.
        let _ = old.kill();
        let _ = old.wait();
        self.child = None;
        let mut child = cmd.spawn().ctx(|| "spawn cfs server again".to_string())?;
        let log = self.log.clone().unwrap_or_default();
        if let Err(err) = wait_listening(self.port, &mut child, &log, "restarted cfs server") {
            procs::stop(&mut child, Duration::from_secs(5));
            return Err(err);
        }
        let pid = child.id();
        self.child = Some(child);
        Ok(pid)
    }
}

/// The MDS nodes `cfs cluster up` listed in `dir/pids`: "mds" alone, or "mds1".."mdsM".
pub fn mds_roles(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("pids")).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| {
            n.strip_prefix("mds")
                .is_some_and(|d| d.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(str::to_owned)
        .collect()
}

/// The `[admin]` section's `listen` of a node's config (the config's own `listen`, first, is
/// its NFS address).
pub fn admin_listen(toml: &str) -> Option<String> {
    toml_string(toml.split_once("[admin]")?.1, "listen")
}

/// The first `key = "value"` of a config `cfs cluster up` wrote (its top-level keys come first).
pub fn toml_string(toml: &str, key: &str) -> Option<String> {
    toml.lines()
        .filter_map(|l| l.trim().strip_prefix(key))
        .filter_map(|r| r.trim_start().strip_prefix('='))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .next()
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A free loopback port in 12000..20000: below the ephemeral range (32768 and up), so no
/// outgoing connection takes it while a crashed server is restarted on it, and apart from the
/// KDC's (21000 and up) and the Rust tests' (21000..32000). Never the same port twice in a run.
pub fn free_port() -> Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 12000;
    const SPAN: u32 = 8000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        (std::process::id() % 80) * 100,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let p = LOW + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN;
        let Ok(p) = u16::try_from(p) else { continue };
        if TcpListener::bind((Ipv4Addr::LOCALHOST, p)).is_ok() {
            return Ok(p);
        }
    }
    Err(Error::Server(
        "no free loopback port in 12000..20000".into(),
    ))
}

fn wait_listening(port: u16, child: &mut Child, log: &Path, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    while Instant::now() < deadline {
        if let Ok(Some(st)) = child.try_wait() {
            let log_text = std::fs::read_to_string(log).unwrap_or_default();
            return Err(Error::Server(format!(
                "{what} exited ({st}) before listening on {port}; {log:?}:\n{}",
                procs::tail(&log_text, 15)
            )));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(Error::Server(format!(
        "{what} did not accept connections on 127.0.0.1:{port} within 30 s; see {log:?}"
    )))
}

fn state_dir(tag: &str) -> Result<PathBuf> {
    let d = paths::cache_dir()
        .join("servers")
        .join(format!("{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).ctx(|| format!("create {d:?}"))?;
    Ok(d)
}

fn log_file(p: &Path) -> Result<(File, File)> {
    let f = File::create(p).ctx(|| format!("create {p:?}"))?;
    let g = f.try_clone().ctx(|| format!("dup {p:?}"))?;
    Ok((f, g))
}

pub fn start(spec: &ServerSpec, in_netns: bool) -> Result<Running> {
    match spec {
        s if s.is_ganesha() => start_ganesha(s, in_netns),
        ServerSpec::Cfs => start_cfs("cfs", ""),
        ServerSpec::CfsNoWriteDeleg => {
            let mut r = start_cfs(&spec.label(), "write_delegations = false\n")?;
            r.spec = ServerSpec::CfsNoWriteDeleg;
            r.version = format!("{}, write_delegations = false", r.version);
            Ok(r)
        }
        ServerSpec::CfsCluster => start_cfs_cluster(1, None),
        ServerSpec::CfsClusterNoWriteDeleg => {
            let mut r =
                start_cfs_cluster_with(&cfs_binary()?, 1, None, &["--no-write-delegations"])?;
            r.spec = ServerSpec::CfsClusterNoWriteDeleg;
            r.version = format!("{}, write_delegations = false", r.version);
            Ok(r)
        }
        ServerSpec::CfsMetaCluster => start_cfs_cluster(CLUSTER_MDS, None),
        ServerSpec::CfsClusterEc(n) => {
            let encode_after = EC_ENCODE_AFTER_S.to_string();
            let mut r = start_cfs_cluster_sized(
                &spec.label(),
                &cfs_binary()?,
                1,
                *n,
                None,
                &["--encode-after", &encode_after],
            )?;
            r.spec = spec.clone();
            r.version = format!("{}, encode after {EC_ENCODE_AFTER_S} s", r.version);
            Ok(r)
        }
        ServerSpec::CfsClusterReduce { sealed } => {
            let encode_after = EC_ENCODE_AFTER_S.to_string();
            let mut args = vec!["--encode-after", &encode_after, "--reduce", "on"];
            // Sealed: the kernel reads what the MDS opened and assembled.
            if *sealed {
                args.push("--encrypt");
            }
            let mut r =
                start_cfs_cluster_sized(&spec.label(), &cfs_binary()?, 1, CLUSTER_DS, None, &args)?;
            r.spec = spec.clone();
            r.version = format!(
                "{}, reduce = on, {}, encode after {EC_ENCODE_AFTER_S} s",
                r.version,
                if *sealed {
                    "encrypted (read through the MDS)"
                } else {
                    "not encrypted (read through a data server)"
                }
            );
            Ok(r)
        }
        ServerSpec::CfsClusterS3 => start_cfs_cluster_s3(),
        ServerSpec::CfsGateway => start_cfs_gateway(in_netns),
        ServerSpec::CfsClusterGateway => {
            let rpcbind = if in_netns {
                Some(spawn_rpcbind()?)
            } else {
                None
            };
            let gw = free_port()?;
            // The MDS's export takes the gateway's AUTH_SYS hop; `cfs cluster up` hands the
            // gateway node the same extra config (keytab, flavor) as the MDS.
            if let Some(realm) = crate::kerberos::active() {
                realm.set_gateway_hop(true);
            }
            let started = start_cfs_cluster(1, Some((gw, rpcbind.is_some())));
            if let Some(realm) = crate::kerberos::active() {
                realm.set_gateway_hop(false);
            }
            let mut r = match started {
                Ok(r) => r,
                Err(e) => {
                    if let Some(mut c) = rpcbind {
                        procs::stop(&mut c, Duration::from_secs(5));
                    }
                    return Err(e);
                }
            };
            r.spec = ServerSpec::CfsClusterGateway;
            r.v4_port = Some(r.port);
            r.port = gw;
            r.mnt_port = Some(gw);
            r.v3_rpcbind = rpcbind.is_some();
            r.rpcbind = rpcbind;
            wait_listening_plain(gw, "the cluster's gateway")?;
            Ok(r)
        }
        ServerSpec::External { port } => {
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, *port));
            TcpStream::connect_timeout(&addr, Duration::from_secs(3)).map_err(|e| {
                Error::Server(format!("nothing accepts connections on {addr}: {e}"))
            })?;
            Ok(Running {
                spec: spec.clone(),
                port: *port,
                mnt_port: None,
                v4_port: None,
                v3_rpcbind: false,
                export_v4: std::env::var("CFS_CONFORMANCE_EXPORT").unwrap_or_else(|_| "/".into()),
                export_v3: std::env::var("CFS_CONFORMANCE_EXPORT").unwrap_or_else(|_| "/".into()),
                version: "external".into(),
                child: None,
                rpcbind: None,
                state_dir: None,
                log: None,
                admin: None,
                node_pids: None,
                restarted: Vec::new(),
                helpers: Vec::new(),
                relaunch: None,
            })
        }
        _ => Err(Error::Usage(format!("cannot start {}", spec.label()))),
    }
}

fn ganesha_version() -> String {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", "nfs-ganesha"])
        .output()
        .map(|o| format!("nfs-ganesha {}", String::from_utf8_lossy(&o.stdout).trim()))
        .unwrap_or_else(|_| "nfs-ganesha ?".into())
}

fn start_ganesha(spec: &ServerSpec, in_netns: bool) -> Result<Running> {
    if !procs::have("ganesha.nfsd") {
        return Err(Error::Server(
            "ganesha.nfsd not installed; run `cargo run -p conformance -- setup`".into(),
        ));
    }
    let dir = state_dir(&spec.label())?;
    let export = dir.join("export");
    let recov = dir.join("recov");
    for d in [&export, &recov] {
        std::fs::create_dir_all(d).ctx(|| format!("create {d:?}"))?;
    }
    let (access, squash) = match spec {
        ServerSpec::GaneshaRo => ("RO", "No_Root_Squash"),
        ServerSpec::GaneshaRootSquash => ("RW", "Root_Squash"),
        _ => ("RW", "No_Root_Squash"),
    };
    if *spec == ServerSpec::GaneshaRootSquash {
        // squashed root becomes nobody: let it create its working directories like any user could
        procs::run(Command::new("chmod").arg("1777").arg(&export))?;
        procs::run(Command::new("chmod").arg("755").arg(&dir))?;
    }
    // Kerberos: the keytab, principals to ids (the namespace's own passwd: see there), before
    // rpcbind starts, so a failure here leaves no process behind
    let krb = match crate::kerberos::active() {
        Some(realm) if in_netns => Some(realm.ganesha_setup(&dir)?),
        Some(_) => {
            return Err(Error::Server(
                "ganesha with Kerberos runs only in the harness's own namespaces".into(),
            ))
        }
        None => None,
    };
    // v3 needs ganesha to register with rpcbind (it exits otherwise): only inside our own netns
    let mut rpcbind = None;
    let protocols = if in_netns {
        rpcbind = Some(spawn_rpcbind()?);
        "3, 4"
    } else {
        "4"
    };
    let port = free_port()?;
    let mnt_port = free_port()?;
    let conf = format!(
        r#"NFS_CORE_PARAM {{
  Bind_addr = 127.0.0.1;
  NFS_Port = {port};
  MNT_Port = {mnt_port};
  Enable_NLM = false;
  Enable_RQUOTA = false;
  Enable_UDP = false;
  Protocols = {protocols};
  Dbus_Name_Prefix = cfsconf{port};
}}
{krb5}
NFSv4 {{
  Graceless = true;{idmap}
  Lease_Lifetime = 10;
  Only_Numeric_Owners = true;
  RecoveryRoot = {recov};
  Minor_Versions = 0, 1, 2;
}}
EXPORT {{
  Export_Id = 1;
  Path = {export};
  Pseudo = /export;
  Access_Type = {access};
  Squash = {squash};
  SecType = {sectype};
  Protocols = {protocols};
  Transports = TCP;
  FSAL {{ Name = VFS; }}
}}
LOG {{ Default_Log_Level = EVENT; }}
"#,
        recov = recov.display(),
        export = export.display(),
        krb5 = krb
            .as_ref()
            .map_or("NFS_KRB5 { Active_krb5 = false; }".into(), |k| k
                .block
                .clone()),
        idmap = krb.as_ref().map_or(String::new(), |k| format!(
            "\n  IdmapConf = {};",
            k.idmap_conf.display()
        )),
        sectype = crate::kerberos::active().map_or("sys".into(), |r| r.flavor()),
    );
    let conf_path = dir.join("ganesha.conf");
    std::fs::write(&conf_path, conf).ctx(|| format!("write {conf_path:?}"))?;
    let log = dir.join("ganesha.log");
    let (o, e) = log_file(&dir.join("stdout"))?;
    let mut cmd = Command::new("ganesha.nfsd");
    if let Some(realm) = crate::kerberos::active() {
        cmd.envs(realm.env());
    }
    let mut child = cmd
        .arg("-F")
        .arg("-f")
        .arg(&conf_path)
        .arg("-L")
        .arg(&log)
        .arg("-p")
        .arg(dir.join("ganesha.pid"))
        .args(["-N", "NIV_EVENT"])
        .stdin(Stdio::null())
        .stdout(o)
        .stderr(e)
        .spawn()
        .ctx(|| "spawn ganesha.nfsd".into())?;
    if let Err(err) = wait_listening(port, &mut child, &log, "ganesha") {
        procs::stop(&mut child, Duration::from_secs(5));
        if let Some(mut r) = rpcbind {
            procs::stop(&mut r, Duration::from_secs(5));
        }
        return Err(err);
    }
    Ok(Running {
        spec: spec.clone(),
        port,
        mnt_port: Some(mnt_port),
        v4_port: None,
        v3_rpcbind: false,
        export_v4: "/export".into(),
        export_v3: export.display().to_string(),
        version: ganesha_version(),
        child: Some(child),
        rpcbind,
        state_dir: Some(dir),
        log: Some(log),
        admin: None,
        node_pids: None,
        restarted: Vec::new(),
        helpers: Vec::new(),
        relaunch: None,
    })
}

/// The namespace's own rpcbind (only ever inside our network namespace: the host's port 111
/// is not ours).
fn spawn_rpcbind() -> Result<Child> {
    let mut c = Command::new("rpcbind")
        .arg("-f")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ctx(|| "spawn rpcbind".into())?;
    std::thread::sleep(Duration::from_millis(500));
    if let Ok(Some(st)) = c.try_wait() {
        return Err(Error::Server(format!("rpcbind exited early: {st}")));
    }
    Ok(c)
}

fn wait_listening_plain(port: u16, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(Error::Server(format!(
        "{what} did not accept connections on 127.0.0.1:{port} within 30 s"
    )))
}

/// The embedded default, MDS and gateway in one `cfs server`; inside the namespace the gateway
/// registers with the namespace's rpcbind, so v3 guests mount without port options.
fn start_cfs_gateway(in_netns: bool) -> Result<Running> {
    start_cfs_gateway_with(&cfs_binary()?, in_netns)
}

/// `start_cfs_gateway` from the binary given (`hostbench --v3` pins one for all its rounds).
pub fn start_cfs_gateway_with(bin: &Path, in_netns: bool) -> Result<Running> {
    let bin = bin.to_path_buf();
    let dir = state_dir("cfs-gateway")?;
    let data = dir.join("data");
    std::fs::create_dir_all(&data).ctx(|| format!("create {data:?}"))?;
    let mut cmd = Command::new(&bin);
    cmd.arg("server");
    // before rpcbind starts, so a failure here leaves no process behind
    if let Some(realm) = crate::kerberos::active() {
        // MDS and gateway read the same [kerberos] and [[export]]: v3 and v4 clients get
        // the run's flavor; the gateway's own hop to the MDS is AUTH_SYS from 127.0.0.1.
        let conf = dir.join("cfs.toml");
        std::fs::write(&conf, realm.gateway_config()).ctx(|| format!("write {conf:?}"))?;
        cmd.arg("--config").arg(conf).envs(realm.env());
    }
    let rpcbind = if in_netns {
        Some(spawn_rpcbind()?)
    } else {
        None
    };
    let port = free_port()?;
    let gw = free_port()?;
    let log = dir.join("cfs.log");
    let (o, e) = log_file(&log)?;
    let mut child = cmd
        .arg("--data")
        .arg(&data)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--gateway-listen")
        .arg(format!("127.0.0.1:{gw}"))
        .arg("--rpcbind")
        .arg(if rpcbind.is_some() {
            "127.0.0.1:111"
        } else {
            "off"
        })
        .stdin(Stdio::null())
        .stdout(o)
        .stderr(e)
        .spawn()
        .ctx(|| format!("spawn {bin:?}"))?;
    let ready = wait_listening(port, &mut child, &log, "cfs server")
        .and_then(|()| wait_listening(gw, &mut child, &log, "cfs server's gateway"));
    if let Err(err) = ready {
        procs::stop(&mut child, Duration::from_secs(5));
        if let Some(mut r) = rpcbind {
            procs::stop(&mut r, Duration::from_secs(5));
        }
        return Err(err);
    }
    Ok(Running {
        spec: ServerSpec::CfsGateway,
        port: gw,
        mnt_port: Some(gw),
        v4_port: Some(port),
        v3_rpcbind: rpcbind.is_some(),
        export_v4: "/".into(),
        export_v3: "/".into(),
        version: format!("{} + NFSv3 gateway", cfs_version(&bin)),
        child: Some(child),
        rpcbind,
        state_dir: Some(dir),
        log: Some(log),
        admin: None,
        node_pids: None,
        restarted: Vec::new(),
        helpers: Vec::new(),
        relaunch: None,
    })
}

/// CFS_BIN, else the newest of target/{release,debug}/cfs.
pub fn cfs_binary() -> Result<PathBuf> {
    if let Some(b) = std::env::var_os("CFS_BIN") {
        let b = PathBuf::from(b);
        return if b.is_file() {
            Ok(b)
        } else {
            Err(Error::NoCfsBinary(b))
        };
    }
    let t = paths::target_dir();
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = ["release", "debug"]
        .iter()
        .map(|p| t.join(p).join("cfs"))
        .filter_map(|p| {
            let m = std::fs::metadata(&p).ok()?.modified().ok()?;
            Some((m, p))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, p)| p)
        .ok_or_else(|| Error::NoCfsBinary(t.join("{debug,release}/cfs")))
}

fn cfs_version(bin: &Path) -> String {
    let version = Command::new(bin)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    if version.is_empty() {
        bin.display().to_string()
    } else {
        version
    }
}

/// Single-node cfs with an admin listener (`wdeleg` reads its /metrics) and `top` (top-level
/// config keys, "" for none) at the head of its config; state under `$CACHE/servers/<tag>-<pid>`.
fn start_cfs(tag: &str, top: &str) -> Result<Running> {
    start_cfs_configured(tag, &cfs_binary()?, &ADMIN_ANY_PORT, top)
}

/// An admin listener on a free port: the server writes the address into its data directory
/// (`metrics_cost::admin_of` finds it there).
pub const ADMIN_ANY_PORT: [&str; 2] = ["--admin-listen", "127.0.0.1:0"];

/// Single-node cfs from the binary given, with more arguments for `cfs server` (hostbench pins
/// one binary for all its rounds and adds `--admin-listen`).
pub fn start_cfs_with_args(bin: &Path, extra: &[&str]) -> Result<Running> {
    start_cfs_configured("cfs", bin, extra, "")
}

/// `start_cfs_with_args`, with `top` at the head of a config file (before the Kerberos
/// sections when a realm is active); no config file when both are empty.
fn start_cfs_configured(tag: &str, bin: &Path, extra: &[&str], top: &str) -> Result<Running> {
    let dir = state_dir(tag)?;
    let data = dir.join("data");
    std::fs::create_dir_all(&data).ctx(|| format!("create {data:?}"))?;
    let port = free_port()?;
    let log = dir.join("cfs.log");
    let (o, e) = log_file(&log)?;
    let mut cmd = Command::new(bin);
    cmd.arg("server")
        .arg("--data")
        .arg(&data)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(o)
        .stderr(e);
    let realm = crate::kerberos::active();
    if !top.is_empty() || realm.is_some() {
        let conf = dir.join("cfs.toml");
        let krb = realm.map(|r| r.server_config()).unwrap_or_default();
        std::fs::write(&conf, format!("{top}{krb}")).ctx(|| format!("write {conf:?}"))?;
        cmd.arg("--config").arg(conf);
    }
    if let Some(realm) = realm {
        cmd.envs(realm.env());
    }
    let mut child = cmd.spawn().ctx(|| format!("spawn {bin:?}"))?;
    if let Err(err) = wait_listening(port, &mut child, &log, "cfs server") {
        procs::stop(&mut child, Duration::from_secs(5));
        return Err(err);
    }
    Ok(Running {
        spec: ServerSpec::Cfs,
        port,
        mnt_port: None,
        v4_port: None,
        v3_rpcbind: false,
        export_v4: "/".into(),
        export_v3: "/".into(),
        version: cfs_version(bin),
        child: Some(child),
        rpcbind: None,
        state_dir: Some(dir),
        log: Some(log),
        admin: None,
        node_pids: None,
        restarted: Vec::new(),
        helpers: Vec::new(),
        relaunch: Some(cmd),
    })
}

/// Data servers `cfs-cluster` starts (two mirrors per layout, one spare).
pub const CLUSTER_DS: u16 = 3;
/// `--encode-after` of the erasure-coding kinds: short, so a scenario sees its files encoded
/// within seconds (and the other checks meet encoded files mid-run).
pub const EC_ENCODE_AFTER_S: u64 = 2;
/// MDS nodes of a cfs-cluster-mds3 (the fewest that survive losing one).
pub const CLUSTER_MDS: u16 = 3;
/// A short lease: a guest that powers off without returning its state must not hold the next
/// case up for the default 90 s.
const CLUSTER_LEASE_S: u32 = 10;

/// CFS_CONFORMANCE_CLUSTER_LEASE=S overrides CLUSTER_LEASE_S (experiments on how state
/// behaves with a longer lease).
fn cluster_lease_s() -> u32 {
    std::env::var("CFS_CONFORMANCE_CLUSTER_LEASE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(CLUSTER_LEASE_S)
}

/// A free port P with P+1..=P+n free too (`cfs cluster up` puts data server i on P+i).
fn free_port_run(n: u16) -> Result<u16> {
    for _ in 0..50 {
        let p = free_port()?;
        if p.checked_add(n).is_none() {
            continue;
        }
        let all_free = (0..=n).all(|i| TcpListener::bind((Ipv4Addr::LOCALHOST, p + i)).is_ok());
        if all_free {
            return Ok(p);
        }
    }
    Err(Error::Server(format!(
        "no run of {} free consecutive loopback ports found",
        n + 1
    )))
}

/// `gateway`: (port, register with the namespace's rpcbind) of a gateway node to run too.
/// `cfs cluster up` with `mds` MDS nodes (1, or CLUSTER_MDS) and CLUSTER_DS data servers.
fn start_cfs_cluster(mds: u16, gateway: Option<(u16, bool)>) -> Result<Running> {
    start_cfs_cluster_with(&cfs_binary()?, mds, gateway, &[])
}

/// `start_cfs_cluster` with a given binary and more arguments for `cfs cluster up`
/// (`metabench`: a pinned binary and `--shards N`).
pub fn start_cfs_cluster_with(
    bin: &Path,
    mds: u16,
    gateway: Option<(u16, bool)>,
    extra: &[&str],
) -> Result<Running> {
    start_cfs_cluster_sized("cfs-cluster", bin, mds, CLUSTER_DS, gateway, extra)
}

/// `start_cfs_cluster_with` with `ds` data servers (the erasure-coding kinds: 3 or 6); its
/// state directory is `$CACHE/servers/<tag>-<pid>` (one per kind, so a kept run keeps every
/// kind's logs).
pub fn start_cfs_cluster_sized(
    tag: &str,
    bin: &Path,
    mds: u16,
    ds: u16,
    gateway: Option<(u16, bool)>,
    extra: &[&str],
) -> Result<Running> {
    let bin = bin.to_path_buf();
    let dir = state_dir(tag)?;
    let cluster_dir = dir.join("cluster");
    let port = free_port_run(mds - 1 + ds)?;
    // A metadata cluster's client addresses: node j's on client_port + j - 1.
    let client_port =
        if mds > 1 {
            let nodes = u32::from(port)..=u32::from(port) + u32::from(mds - 1 + ds);
            let mut found = None;
            for _ in 0..20 {
                let p = free_port_run(mds - 1)?;
                let run = u32::from(p)..=u32::from(p) + u32::from(mds - 1);
                if run.end() < nodes.start() || run.start() > nodes.end() {
                    found = Some(p);
                    break;
                }
            }
            Some(found.ok_or_else(|| {
                Error::Server("no free client ports apart from the nodes'".into())
            })?)
        } else {
            None
        };
    let log = dir.join("cluster-up.log");
    let (o, e) = log_file(&log)?;
    let mut cmd = Command::new(&bin);
    if let Some(realm) = crate::kerberos::active() {
        // The MDS gets the keytab and the one-flavor export; the data servers need neither
        // (krb5i/krb5p callers get no layouts; krb5 callers reach them with AUTH_SYS, as
        // Linux's flexfiles client always does for NFSv3 data servers).
        let conf = dir.join("mds-kerberos.toml");
        std::fs::write(&conf, realm.server_config()).ctx(|| format!("write {conf:?}"))?;
        cmd.envs(realm.env());
        cmd.args(["cluster", "up", "--mds-extra-config"]).arg(conf);
    } else {
        cmd.args(["cluster", "up"]);
    }
    let mut child = cmd
        .args(["--mds", &mds.to_string()])
        .args(["--ds", &ds.to_string(), "--dir"])
        .arg(&cluster_dir)
        .args(["--port", &port.to_string()])
        // the guest reaches host loopback as 10.0.2.2; host-side tools use 127.0.0.1
        .args([
            "--advertise-host",
            "10.0.2.2",
            "--advertise-host",
            "127.0.0.1",
        ])
        .args(["--lease-seconds", &cluster_lease_s().to_string()])
        .args(match client_port {
            Some(p) => vec!["--client-port".to_string(), p.to_string()],
            None => vec![],
        })
        .args(extra)
        .args(match gateway {
            Some((p, rb)) => vec![
                "--gateway-port".to_string(),
                p.to_string(),
                "--rpcbind".to_string(),
                if rb { "127.0.0.1:111" } else { "off" }.to_string(),
            ],
            None => vec![],
        })
        .stdin(Stdio::null())
        .stdout(o)
        .stderr(e)
        .spawn()
        .ctx(|| format!("spawn {bin:?} cluster up"))?;
    let node_pids = cluster_dir.join("pids");
    let addr = format!("127.0.0.1:{port}");
    // `cfs cluster up` writes the secret every node (and `cfs admin status`) uses there.
    let secret = cluster_dir.join("secret");
    let ready = wait_listening(port, &mut child, &log, "cfs cluster up")
        .and_then(|()| wait_cluster_up(&bin, &addr, &secret, ds, &mut child, &log));
    if let Err(err) = ready {
        procs::stop(&mut child, Duration::from_secs(20));
        stop_leftover_nodes(&node_pids);
        return Err(err);
    }
    Ok(Running {
        spec: if mds == 1 {
            ServerSpec::CfsCluster
        } else {
            ServerSpec::CfsMetaCluster
        },
        port,
        mnt_port: None,
        v4_port: client_port,
        v3_rpcbind: false,
        export_v4: "/".into(),
        export_v3: "/".into(),
        version: if mds == 1 {
            format!("{} cluster, {ds} DS", cfs_version(&bin))
        } else {
            format!("{} cluster, {mds} MDS, {ds} DS", cfs_version(&bin))
        },
        child: Some(child),
        rpcbind: None,
        state_dir: Some(dir),
        // the data servers' own logs are cluster/{mds,ds1,..}.log next to it
        log: Some(log),
        admin: Some((bin, addr, secret)),
        node_pids: Some(node_pids),
        restarted: Vec::new(),
        helpers: Vec::new(),
        relaunch: None,
    })
}

/// `cfs-cluster-s3`: moto, the cluster in cache mode against it, and `/` pinned to the bucket.
fn start_cfs_cluster_s3() -> Result<Running> {
    if crate::kerberos::active().is_some() {
        return Err(Error::Usage(
            "cfs-cluster-s3 runs without Kerberos (both want --mds-extra-config)".into(),
        ));
    }
    let dir = state_dir("cfs-s3")?;
    let (mut moto, port) = crate::s3::start(&dir)?;
    let extra = dir.join("tier.toml");
    let started = std::fs::write(&extra, crate::s3::tier_extra())
        .ctx(|| format!("write {extra:?}"))
        .and_then(|()| {
            let url = format!("http://127.0.0.1:{port}/{}", crate::s3::BUCKET);
            let extra = extra.to_string_lossy().into_owned();
            start_cfs_cluster_sized(
                "cfs-cluster-s3",
                &cfs_binary()?,
                1,
                CLUSTER_DS,
                None,
                &["--s3", &url, "--mds-extra-config", &extra],
            )
        });
    let mut r = match started {
        Ok(r) => r,
        Err(e) => {
            procs::stop(&mut moto, Duration::from_secs(5));
            return Err(e);
        }
    };
    r.helpers.push(moto);
    r.spec = ServerSpec::CfsClusterS3;
    r.version = format!("{}, S3 cache mode (moto), / pinned to s3", r.version);
    let (bin, _, secret) = r
        .admin
        .clone()
        .ok_or_else(|| Error::Server("no admin".into()))?;
    let conf = secret.with_file_name("mds.toml");
    let out = Command::new(&bin)
        .args(["admin", "tier", "pin", "/", "s3", "--config"])
        .arg(&conf)
        .output()
        .ctx(|| "cfs admin tier pin / s3".to_string())?;
    if !out.status.success() {
        return Err(Error::Server(format!(
            "cfs admin tier pin / s3: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(r)
}

/// Until `cfs admin status` shows every data server up and `cluster up` says it is up (60 s:
/// heartbeats under load are slow).
fn wait_cluster_up(
    bin: &Path,
    addr: &str,
    secret: &Path,
    ds: u16,
    child: &mut Child,
    log: &Path,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::from("no answer yet");
    while Instant::now() < deadline {
        if let Ok(Some(st)) = child.try_wait() {
            let log_text = std::fs::read_to_string(log).unwrap_or_default();
            return Err(Error::Server(format!(
                "cfs cluster up exited ({st}); {log:?}:\n{}",
                procs::tail(&log_text, 15)
            )));
        }
        match cluster_status(bin, addr, secret) {
            Ok(s) => {
                let up = s.data_servers.iter().filter(|d| d.state == "up").count();
                // `cluster up` prints its banner once every MDS node serves clients (a
                // metadata cluster's root needs a leader for shard 0 first).
                let banner =
                    std::fs::read_to_string(log).is_ok_and(|t| t.contains("cfs cluster up: "));
                if up >= usize::from(ds) && banner {
                    return Ok(());
                }
                last = format!("{up} of {ds} data servers up, banner printed: {banner}");
            }
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Err(Error::Server(format!(
        "cfs cluster on {addr} not ready within 60 s ({last}); see {log:?}"
    )))
}

/// The counters of `cfs admin status --json` the pNFS evidence needs.
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct ClusterStatus {
    pub mds: MdsCounters,
    pub data_servers: Vec<DsCounters>,
}

#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct MdsCounters {
    #[serde(default)]
    pub read_bytes: u64,
    #[serde(default)]
    pub write_bytes: u64,
    #[serde(default)]
    pub read_ops: u64,
    #[serde(default)]
    pub write_ops: u64,
    #[serde(default)]
    pub layouts_granted: u64,
}

#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct DsCounters {
    pub id: String,
    /// 127.0.0.1:P+i for data server i of `cfs cluster up`
    #[serde(default)]
    pub listen: String,
    /// since the MDS last heard from it
    #[serde(default)]
    pub silent_ms: Option<u64>,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub read_bytes: u64,
    #[serde(default)]
    pub write_bytes: u64,
    #[serde(default)]
    pub commit_ops: u64,
    #[serde(default)]
    pub refused_ops: u64,
}

pub fn cluster_status(bin: &Path, addr: &str, secret: &Path) -> Result<ClusterStatus> {
    let out = procs::run(
        Command::new(bin)
            .args(["admin", "status", "--json", "--server"])
            .arg(addr)
            .arg("--cluster-secret-file")
            .arg(secret),
    )?;
    Ok(serde_json::from_str(out.trim())?)
}

/// (name, pid) of each node `cfs cluster up` listed whose process runs with that state directory.
fn listed_nodes(pids_file: &Path) -> (Vec<(String, u32)>, impl Fn(u32) -> bool) {
    let text = std::fs::read_to_string(pids_file).unwrap_or_default();
    let dir = pids_file
        .parent()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    let nodes = text
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?.to_owned(), w.next()?.parse().ok()?))
        })
        .filter(|&(_, p)| p > 1)
        .collect();
    let ours = move |pid: u32| {
        !dir.is_empty()
            && std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&dir))
                .unwrap_or(false)
    };
    (nodes, ours)
}

/// Nodes of a running cluster that are no longer running.
fn gone_nodes(pids_file: &Path) -> Vec<String> {
    let (nodes, ours) = listed_nodes(pids_file);
    nodes
        .into_iter()
        .filter(|&(_, p)| !ours(p))
        .map(|(n, _)| n)
        .collect()
}

/// After `cfs cluster up` has been stopped: any node it listed that still runs (it was killed
/// before stopping them) gets SIGTERM, then SIGKILL. Only PIDs whose command line names this
/// state directory are touched, so a recycled PID is left alone.
fn stop_leftover_nodes(pids_file: &Path) {
    let (nodes, ours) = listed_nodes(pids_file);
    let pids: Vec<u32> = nodes.into_iter().map(|(_, p)| p).collect();
    for sig in ["TERM", "KILL"] {
        let alive: Vec<u32> = pids.iter().copied().filter(|&p| ours(p)).collect();
        if alive.is_empty() {
            return;
        }
        eprintln!("cfs-cluster: node pids {alive:?} outlived `cfs cluster up`; SIG{sig}");
        for p in alive {
            procs::signal(p, sig);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && pids.iter().any(|&p| ours(p)) {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
