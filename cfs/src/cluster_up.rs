//! `cfs cluster up`: M MDS nodes and N data servers on loopback ports, each its own `cfs server`
//! process with its own data directory and config file, stopped together on SIGINT/SIGTERM.
//! With `--mds 1` (the default) the MDS is `mds`; with three or more, `mds1`..`mdsM` form a
//! multi-node metadata service (every shard a Raft group over them) and every data server
//! heartbeats to each of them.
//! The config files stay in the directory, so any one node can be restarted by hand with
//! `cfs server --config DIR/dsI.toml` (fault tests do exactly that).
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use thiserror::Error;

#[derive(Args, Debug)]
pub struct UpArgs {
    /// Number of MDS nodes: 1, or 3 and more (a metadata service that survives the loss of
    /// any one node). MDS node j listens on port + j - 1, data servers after them.
    #[arg(long, default_value_t = 1)]
    mds: u16,
    /// Number of data servers.
    #[arg(long, default_value_t = 3)]
    ds: u16,
    /// Directory for configs, secret, data and the pid list.
    #[arg(long, default_value = "./cfs-cluster")]
    dir: PathBuf,
    /// Port of the (first) MDS; data server i listens on port + MDS nodes - 1 + i.
    #[arg(long, default_value_t = 2049)]
    port: u16,
    /// Hosts clients reach the data servers at, in preference order (a qemu guest reaches the
    /// host's loopback as 10.0.2.2). Default: 127.0.0.1.
    #[arg(long = "advertise-host")]
    advertise_host: Vec<String>,
    /// With three or more MDS nodes: node j's client address is 127.0.0.1:(this + j - 1), an
    /// address that moves to a live node when its node dies (clients mount it). Default:
    /// --port + 100; 0: none (clients mount the nodes' own addresses).
    #[arg(long)]
    client_port: Option<u16>,
    /// Bytes per chunk (placement unit and layout segment size).
    #[arg(long)]
    chunk_size: Option<u64>,
    /// Metadata shards of the new file system (fixed at creation; an existing one keeps its
    /// count). Default 256, at most 32767 (`meta_core::shard::MAX_SHARDS`). Passed to every
    /// MDS node as CFS_SHARDS.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=32767))]
    shards: Option<u16>,
    /// MDS lease (and grace) seconds.
    #[arg(long)]
    lease_seconds: Option<u32>,
    /// Seconds a file stays unchanged before it is erasure-coded (0: never; default 3600).
    #[arg(long)]
    encode_after: Option<u64>,
    /// Data reduction of files due for erasure coding: off, on or auto (default off).
    #[arg(long)]
    reduce: Option<String>,
    /// MiB of file one part of a reduce covers at most (default 320); a file larger is
    /// reduced in parts. Small values are for tests.
    #[arg(long)]
    reduce_part_mib: Option<u64>,
    /// Seconds a data server may be down before it is declared lost and its data rebuilt on
    /// the others (0: never; default 600).
    #[arg(long)]
    lost_after: Option<u64>,
    /// Seconds between the data servers' scrub passes (0: never; default a week).
    #[arg(long)]
    scrub_every: Option<u64>,
    /// Admin HTTP port of the (first) MDS (metrics, console, API); the other nodes get the
    /// next ports in the order of their NFS ports. Default: 1000 above --port when that stays
    /// below 32768, else any free port (0).
    #[arg(long)]
    admin_port: Option<u16>,
    /// Also run an NFSv3 gateway node (`gw`, role gateway-v3, a client of the MDS) on this
    /// port.
    #[arg(long)]
    gateway_port: Option<u16>,
    /// The rpcbind the gateway registers with ("HOST:PORT" or "off", the default).
    #[arg(long, default_value = "off")]
    rpcbind: String,
    /// Data servers also serve a libfabric endpoint of this provider (tcp, sockets, ...).
    #[arg(long)]
    fabric: Option<String>,
    /// TOML appended to the MDS's config, e.g. `[kerberos]` and `[[export]]` sections, and to
    /// the gateway node's (`--gateway-port`: same exports, same keytab); the data servers need
    /// neither (krb5i/krb5p callers get no layouts, see docs/OPERATIONS.md, Kerberos).
    #[arg(long)]
    mds_extra_config: Option<PathBuf>,
    /// An S3-compatible bucket behind the cluster's flash, in cache mode: every file is copied
    /// there once quiet. `http(s)://HOST:PORT/BUCKET`; credentials from AWS_ACCESS_KEY_ID and
    /// AWS_SECRET_ACCESS_KEY (every node inherits this command's environment). Further
    /// `[tier]` settings go in --mds-extra-config instead.
    #[arg(long)]
    s3: Option<String>,
    /// Grant no write delegations (`write_delegations = false` in the MDS nodes' config):
    /// the baseline of what they change (`conformance bench --server cfs-cluster-nowdeleg`).
    #[arg(long)]
    no_write_delegations: bool,
    /// Seal data at rest: makes DIR/kek (32 random bytes as hex, owner-only) once and gives
    /// it to every MDS node as `[encryption] key_file`. Needs --reduce on or auto.
    #[arg(long)]
    encrypt: bool,
}

/// The admin port of the MDS, and of DS i at + i (0: any free port for all).
fn admin_base(a: &UpArgs) -> u16 {
    match a.admin_port {
        Some(p) => p,
        None if u32::from(a.port) + 1000 + u32::from(a.ds) + u32::from(a.mds) < 32768 => {
            a.port + 1000
        }
        None => 0,
    }
}

#[derive(Debug, Error)]
pub enum UpError {
    #[error("--client-port: port {0} is a node's port or below 1024")]
    ClientPort(u16),
    #[error("no MDS node serves client address {0} after 30 s")]
    ClientAddr(SocketAddr),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start {what}: {source}")]
    Spawn {
        what: String,
        source: std::io::Error,
    },
    #[error("{what} exited during startup ({status})")]
    Died {
        what: String,
        status: std::process::ExitStatus,
    },
    #[error("the cluster did not come up within {0:?}: {1}")]
    Timeout(Duration, String),
    #[error("port {0} + {1} nodes does not fit in 65535")]
    Ports(u16, u32),
    #[error("--mds {0}: a metadata service has 1 node, or 3 to 255 (a Raft group needs a majority to survive a loss)")]
    MdsCount(u16),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> UpError + '_ {
    move |source| UpError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write(path: &Path, text: &str) -> Result<(), UpError> {
    std::fs::write(path, text).map_err(io(path))
}

/// A cluster secret: 32 random bytes as hex, created once and kept (owner-only).
fn ensure_secret(path: &Path) -> Result<(), UpError> {
    if path.exists() {
        return Ok(());
    }
    let mut b = [0u8; 32];
    let mut f = std::fs::File::open("/dev/urandom").map_err(io(Path::new("/dev/urandom")))?;
    std::io::Read::read_exact(&mut f, &mut b).map_err(io(Path::new("/dev/urandom")))?;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    write(path, &format!("{hex}\n"))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io(path))
}

fn toml_str(p: &Path) -> String {
    format!("{:?}", p.to_string_lossy())
}

struct Node {
    name: String,
    child: tokio::process::Child,
}

/// The client address of MDS node j (1-based) of a metadata cluster, if there are any.
fn client_addr(a: &UpArgs, j: u16) -> Option<SocketAddr> {
    if a.mds < 3 {
        return None;
    }
    let base = a.client_port.unwrap_or(a.port.saturating_add(100));
    (base != 0).then(|| SocketAddr::from(([127, 0, 0, 1], base.saturating_add(j - 1))))
}

/// The name of MDS node j (1-based) of `count`: `mds` alone, or `mds1`..`mdsM`; its data
/// directory is DIR/name and its config DIR/name.toml (`cfs repair --cluster` finds them so).
pub(crate) fn mds_name(count: u16, j: u16) -> String {
    if count == 1 {
        "mds".to_string()
    } else {
        format!("mds{j}")
    }
}

/// MDS node names and NFS addresses.
fn mds_nodes(a: &UpArgs) -> Vec<(String, SocketAddr)> {
    (1..=a.mds)
        .map(|j| {
            (
                mds_name(a.mds, j),
                SocketAddr::from(([127, 0, 0, 1], a.port + j - 1)),
            )
        })
        .collect()
}

pub async fn run(a: UpArgs) -> Result<(), Box<dyn std::error::Error>> {
    if a.mds == 0 || a.mds == 2 || u64::from(a.mds) > layout::capability::MAX_METADATA_NODE {
        return Err(UpError::MdsCount(a.mds).into());
    }
    let nodes_n = u32::from(a.mds) + u32::from(a.ds);
    if u32::from(a.port) + nodes_n > 65535 {
        return Err(UpError::Ports(a.port, nodes_n).into());
    }
    if let Some(s3) = &a.s3 {
        cfs::tier_config::split_s3_url(s3)?;
    }
    std::fs::create_dir_all(&a.dir).map_err(io(&a.dir))?;
    let dir = std::fs::canonicalize(&a.dir).map_err(io(&a.dir))?;
    let secret = dir.join("secret");
    ensure_secret(&secret)?;
    // The key-encryption key: made the way the secret is (it is the operator's file, which
    // the nodes read and never record).
    let kek = dir.join("kek");
    if a.encrypt {
        ensure_secret(&kek)?;
    }
    let mds = mds_nodes(&a);
    let mds_addr = mds[0].1;
    let clients: Vec<SocketAddr> = (1..=a.mds).filter_map(|j| client_addr(&a, j)).collect();
    let taken = |p: u16| p >= a.port && u32::from(p) < u32::from(a.port) + nodes_n;
    if let Some(c) = clients.iter().find(|c| taken(c.port()) || c.port() < 1024) {
        return Err(UpError::ClientPort(c.port()).into());
    }
    let mds_list: Vec<String> = mds.iter().map(|(_, at)| at.to_string()).collect();
    // The first DS port: after every MDS node's.
    let ds_base = a.port + a.mds - 1;
    let hosts = if a.advertise_host.is_empty() {
        vec!["127.0.0.1".to_string()]
    } else {
        a.advertise_host.clone()
    };

    let admin = admin_base(&a);
    let extra = match &a.mds_extra_config {
        Some(extra) => {
            let text = std::fs::read_to_string(extra).map_err(io(extra))?;
            Some(format!("# from {}\n{text}\n", extra.display()))
        }
        None => None,
    };
    let mut configs = Vec::new();
    for (j, (name, at)) in mds.iter().enumerate() {
        let mut toml = format!(
            "data = {}\nlisten = \"{at}\"\nroles = [\"mds\"]\n",
            toml_str(&dir.join(name))
        );
        if let Some(l) = a.lease_seconds {
            toml.push_str(&format!("lease_seconds = {l}\ngrace_seconds = {l}\n"));
        }
        if a.no_write_delegations {
            toml.push_str("write_delegations = false\n");
        }
        let node_admin = if admin == 0 { 0 } else { admin + j as u16 };
        toml.push_str(&format!("[admin]\nlisten = \"127.0.0.1:{node_admin}\"\n"));
        toml.push_str(&format!("[cluster]\nsecret_file = {}\n", toml_str(&secret)));
        if let Some(c) = a.chunk_size {
            toml.push_str(&format!("chunk_size = {c}\n"));
        }
        if let Some(e) = a.encode_after {
            toml.push_str(&format!("encode_after_seconds = {e}\n"));
        }
        if let Some(l) = a.lost_after {
            toml.push_str(&format!("lost_after_seconds = {l}\n"));
        }
        if let Some(r) = &a.reduce {
            // Checked here, so a typo stops `cluster up` rather than every node it starts.
            let _: mds::config::ReducePolicy = r.parse()?;
            toml.push_str(&format!("reduce = \"{r}\"\n"));
        }
        if let Some(p) = a.reduce_part_mib {
            toml.push_str(&format!("reduce_part_mib = {p}\n"));
        }
        if a.mds > 1 {
            let list: Vec<String> = mds
                .iter()
                .enumerate()
                .map(|(k, (_, at))| format!("\"{}={at}\"", k + 1))
                .collect();
            toml.push_str(&format!(
                "node_id = {}\nmetadata_nodes = [{}]\n",
                j + 1,
                list.join(", ")
            ));
            if !clients.is_empty() {
                let list: Vec<String> = clients
                    .iter()
                    .enumerate()
                    .map(|(k, at)| format!("\"{}={at}\"", k + 1))
                    .collect();
                toml.push_str(&format!("client_addresses = [{}]\n", list.join(", ")));
            }
        }
        if a.encrypt {
            toml.push_str(&format!("[encryption]\nkey_file = {}\n", toml_str(&kek)));
        }
        if let Some(s3) = &a.s3 {
            toml.push_str(&format!("[tier]\ns3 = {s3:?}\n"));
        }
        if let Some(extra) = &extra {
            toml.push_str(extra);
        }
        configs.push((name.clone(), dir.join(format!("{name}.toml")), toml));
    }
    for i in 1..=a.ds {
        let port = ds_base + i;
        let advertise: Vec<String> = hosts.iter().map(|h| format!("\"{h}:{port}\"")).collect();
        let ds_admin = if admin == 0 { 0 } else { admin + a.mds - 1 + i };
        let toml = format!(
            "data = {}\nlisten = \"127.0.0.1:{port}\"\nroles = [\"ds\"]\n[admin]\nlisten = \"127.0.0.1:{ds_admin}\"\n[cluster]\nsecret_file = {}\nmds = \"{}\"\nadvertise = [{}]\n",
            toml_str(&dir.join(format!("ds{i}"))),
            toml_str(&secret),
            mds_list.join(","),
            advertise.join(", ")
        );
        let toml = match &a.fabric {
            Some(p) => format!("{toml}fabric = {}\n", toml_str(Path::new(p))),
            None => toml,
        };
        let toml = match a.scrub_every {
            Some(s) => format!("{toml}scrub_every_seconds = {s}\n"),
            None => toml,
        };
        configs.push((format!("ds{i}"), dir.join(format!("ds{i}.toml")), toml));
    }
    if let Some(gp) = a.gateway_port {
        // No data of its own: the directory only holds what a node may log there.
        let toml = format!(
            "data = {}\nroles = [\"gateway-v3\"]\n[gateway]\nlisten = \"127.0.0.1:{gp}\"\nmds = \"{mds_addr}\"\nrpcbind = \"{}\"\n",
            toml_str(&dir.join("gw")),
            a.rpcbind
        );
        // The gateway applies the MDS's export rules to its v3 clients (ids must match) and
        // answers RPCSEC_GSS with the same [kerberos] section: the MDS's extra config too.
        let toml = format!("{toml}{}", extra.as_deref().unwrap_or(""));
        configs.push(("gw".to_string(), dir.join("gw.toml"), toml));
    }
    let exe = std::env::current_exe().map_err(|source| UpError::Spawn {
        what: "cfs".into(),
        source,
    })?;
    let mut nodes = Vec::new();
    let mut pids = String::new();
    for (name, path, text) in &configs {
        write(path, text)?;
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).map_err(io(&log))?;
        let mut cmd = tokio::process::Command::new(&exe);
        if let (Some(n), true) = (a.shards, mds.iter().any(|(m, _)| m == name)) {
            cmd.env("CFS_SHARDS", n.to_string());
        }
        let child = cmd
            .arg("server")
            .arg("--config")
            .arg(path)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(out)
            .spawn()
            .map_err(|source| UpError::Spawn {
                what: name.clone(),
                source,
            })?;
        pids.push_str(&format!("{name} {}\n", child.id().unwrap_or(0)));
        nodes.push(Node {
            name: name.clone(),
            child,
        });
    }
    write(&dir.join("pids"), &pids)?;

    let cluster_secret = crate::config::load_secret(&secret)?;
    for (_, at) in &mds {
        // Every MDS node must see every DS: each hands out layouts.
        let ready = wait_ready(*at, &cluster_secret, usize::from(a.ds), &mut nodes).await;
        if let Err(e) = ready {
            stop(&mut nodes).await;
            return Err(e.into());
        }
    }
    for at in &clients {
        // Each node binds its client address within a moment of serving.
        let t0 = Instant::now();
        while tokio::net::TcpStream::connect(at).await.is_err() {
            if t0.elapsed() > Duration::from_secs(30) {
                stop(&mut nodes).await;
                return Err(UpError::ClientAddr(*at).into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let mds_desc = if a.mds == 1 {
        format!("MDS on {mds_addr}")
    } else if clients.is_empty() {
        format!("{} MDS nodes on {}", a.mds, mds_list.join(", "))
    } else {
        let shown: Vec<String> = clients.iter().map(|c| c.to_string()).collect();
        format!(
            "{} MDS nodes on {} (client addresses {}: a dead node's moves to a live one)",
            a.mds,
            mds_list.join(", "),
            shown.join(", ")
        )
    };
    println!(
        "cfs cluster up: {mds_desc}, {} data servers on 127.0.0.1:{}..{} (advertised as {}), files in {}",
        a.ds,
        ds_base + 1,
        ds_base + a.ds,
        hosts.join(", "),
        dir.display()
    );
    // Clients mount node 1's client address when there is one.
    let mount_addr = clients.first().copied().unwrap_or(mds_addr);
    // Linux's mount.nfs4 assumes 2049: any other port must be named.
    let port_opt = if mount_addr.port() == 2049 {
        String::new()
    } else {
        format!(",port={}", mount_addr.port())
    };
    println!(
        "mount:   mount -t nfs4 -o vers=4.2{port_opt} {}:/ /mnt",
        mount_addr.ip()
    );
    if let Some(gp) = a.gateway_port {
        println!(
            "NFSv3:   mount -t nfs -o vers=3,port={gp},mountport={gp} 127.0.0.1:/ /mnt (gateway)"
        );
    }
    let first = &mds[0].0;
    println!(
        "status:  cfs admin status --config {}",
        dir.join(format!("{first}.toml")).display()
    );
    let admin_addr = if admin == 0 {
        std::fs::read_to_string(dir.join(first).join("admin.addr"))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "?".into())
    } else {
        format!("127.0.0.1:{admin}")
    };
    println!(
        "console: http://{admin_addr}/#token={}",
        cluster_secret.admin_token()
    );
    println!(
        "metrics: http://{admin_addr}/metrics (MDS), the other nodes on the next ports; token: cfs admin token --config {}",
        dir.join(format!("{first}.toml")).display()
    );
    println!("stop:    Ctrl-C");

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    stop(&mut nodes).await;
    Ok(())
}

async fn wait_ready(
    mds: SocketAddr,
    secret: &layout::ClusterSecret,
    want: usize,
    nodes: &mut [Node],
) -> Result<(), UpError> {
    // A multi-node metadata service first elects a leader for every shard.
    let limit = Duration::from_secs(45);
    let start = Instant::now();
    let mut last = String::from("no answer yet");
    while start.elapsed() < limit {
        for n in nodes.iter_mut() {
            if let Ok(Some(status)) = n.child.try_wait() {
                return Err(UpError::Died {
                    what: n.name.clone(),
                    status,
                });
            }
        }
        match crate::admin::status(mds, secret).await {
            Ok(s) => {
                let up = s
                    .data_servers
                    .iter()
                    .filter(|d| d.state == proto::cluster::DS_STATE_UP)
                    .count();
                if up >= want {
                    // The control program answers before a metadata cluster has made its
                    // root (that needs a leader for shard 0): up means a client can mount.
                    // (WRONGSEC proves it too: a Kerberos-only export found the root and
                    // refused this AUTH_SYS probe.)
                    match client::Client::connect(client::ClientConfig::new(mds)).await {
                        Ok(c) => {
                            let _ = c.shutdown().await;
                            return Ok(());
                        }
                        Err(e) if e.status() == Some(proto::nfs4::Nfsstat4::Wrongsec) => {
                            return Ok(())
                        }
                        Err(e) => last = format!("{mds} does not serve clients yet: {e}"),
                    }
                } else {
                    last = format!("{up} of {want} data servers up");
                }
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(UpError::Timeout(limit, last))
}

/// SIGTERM to every node still running (each syncs and exits), SIGKILL after 15 s.
async fn stop(nodes: &mut [Node]) {
    for n in nodes.iter() {
        if let Some(pid) = n.child.id() {
            // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
            }
        }
    }
    for n in nodes.iter_mut() {
        match tokio::time::timeout(Duration::from_secs(15), n.child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                tracing::warn!(node = %n.name, "did not stop on SIGTERM; killing it");
                let _ = n.child.kill().await;
            }
        }
    }
}
