//! `cfs`: the one ClaudeFS binary.
mod admin;
mod cluster_up;
mod config;
mod files;
mod mount;

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "cfs",
    version,
    about = "ClaudeFS: a scale-out POSIX file system served over NFSv4.1/pNFS"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a server. With no flags: a one-node cluster, data in ./cfs-data, NFS on 127.0.0.1:2049.
    Server {
        /// TOML configuration file (flags override it).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Data directory.
        #[arg(long)]
        data: Option<PathBuf>,
        /// NFS listen address.
        #[arg(long)]
        listen: Option<String>,
        #[command(flatten)]
        cluster: ClusterFlags,
    },
    /// Run a local cluster: one MDS and N data servers on loopback.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Ask a running MDS about its cluster.
    #[command(subcommand)]
    Admin(AdminCmd),
    #[command(flatten)]
    Files(files::FileCmd),
    /// Mount the file system with FUSE (metadata to the MDS, data straight to the data
    /// servers); returns once mounted.
    Mount(mount::MountArgs),
    /// Unmount a `cfs mount`.
    Umount(mount::UmountArgs),
}

/// Cluster settings of `cfs server` (flags override the config file's `[cluster]`).
#[derive(clap::Args, Debug, Default)]
struct ClusterFlags {
    /// Roles to run: mds, ds, or both (repeat or comma-separate). Default: mds.
    #[arg(long = "role")]
    roles: Vec<String>,
    /// File with the cluster secret shared by the MDS and its data servers.
    #[arg(long)]
    cluster_secret_file: Option<PathBuf>,
    /// ds role: the MDS to register with.
    #[arg(long)]
    mds: Option<String>,
    /// ds role: address to serve the data path on (needed when mds runs in the same process).
    #[arg(long)]
    ds_listen: Option<String>,
    /// ds role: address clients are told (repeat for several, preferred first).
    #[arg(long)]
    advertise: Vec<String>,
    /// ds role: failure domain (host, rack); mirrors go to different domains.
    #[arg(long)]
    failure_domain: Option<String>,
    /// ds role: also serve the data path on a libfabric endpoint of this provider (tcp,
    /// sockets, verbs, ...), with RMA for the bytes.
    #[arg(long)]
    fabric: Option<String>,
}

#[derive(Subcommand)]
enum ClusterCmd {
    /// Start one MDS and N data servers (each its own process) and keep them running until
    /// Ctrl-C or SIGTERM.
    Up(cluster_up::UpArgs),
}

#[derive(Subcommand)]
enum AdminCmd {
    /// Data servers, their state and counters, and I/O served by the MDS itself.
    Status {
        /// MDS address (default: the config's `listen`, else 127.0.0.1:2049).
        #[arg(long)]
        server: Option<String>,
        /// The MDS's config file: its `[cluster] secret_file` signs the request.
        #[arg(long)]
        config: Option<PathBuf>,
        /// File with the cluster secret (overrides the config's).
        #[arg(long)]
        cluster_secret_file: Option<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CFS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: the mount daemon and cluster nodes log to files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    // The FUSE client runs its own runtime (and the mount's event loop on this thread).
    let cli = match cli.cmd {
        Cmd::Mount(a) => return exit(mount::mount(a)),
        Cmd::Umount(a) => return exit(mount::umount(a)),
        cmd => Cli { cmd },
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cfs: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match cli.cmd {
            Cmd::Server {
                config,
                data,
                listen,
                cluster,
            } => run_server(config, data, listen, cluster).await,
            Cmd::Cluster(ClusterCmd::Up(a)) => cluster_up::run(a).await,
            Cmd::Admin(AdminCmd::Status {
                server,
                config,
                cluster_secret_file,
                json,
            }) => admin_status(server, config, cluster_secret_file, json).await,
            Cmd::Files(cmd) => files::run(cmd).await.map_err(Into::into),
            Cmd::Mount(_) | Cmd::Umount(_) => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cfs: {e}");
            ExitCode::FAILURE
        }
    }
}

fn exit(r: Result<(), mount::MountError>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cfs: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The MDS answers STATUS only to holders of the cluster secret, found as the servers find it.
async fn admin_status(
    server: Option<String>,
    config: Option<PathBuf>,
    secret_file: Option<PathBuf>,
    json: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let file = config::load(config.as_deref())?;
    let server = server
        .or(file.listen.clone())
        .unwrap_or_else(|| config::DEFAULT_LISTEN.to_string());
    let addr = config::parse_listen(&server)?;
    let secret_file = secret_file
        .or_else(|| file.cluster.as_ref().and_then(|c| c.secret_file.clone()))
        .ok_or(config::ConfigError::NoSecret)?;
    let secret = config::load_secret(&secret_file)?;
    let s = admin::status(addr, &secret).await?;
    if json {
        println!("{}", admin::to_json(&s));
    } else {
        print!("{}", admin::to_table(&s));
    }
    Ok(())
}

async fn run_server(
    config: Option<PathBuf>,
    data: Option<PathBuf>,
    listen: Option<String>,
    flags: ClusterFlags,
) -> Result<(), Box<dyn std::error::Error>> {
    let file = config::load(config.as_deref())?;
    let roles = if flags.roles.is_empty() {
        config::parse_roles(file.roles.as_deref().unwrap_or(&[]))?
    } else {
        config::parse_roles(&flags.roles)?
    };
    let fc = file.cluster.clone().unwrap_or_default();
    let secret = match flags
        .cluster_secret_file
        .as_ref()
        .or(fc.secret_file.as_ref())
    {
        Some(p) => Some(config::load_secret(p)?),
        None => None,
    };
    let listen = listen
        .or(file.listen.clone())
        .unwrap_or_else(|| config::DEFAULT_LISTEN.to_string());
    let listen = config::parse_listen(&listen)?;
    let data_dir = data
        .or(file.data.clone())
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_DATA));
    let nofile = raise_nofile_limit();
    let listeners = usize::from(roles.mds) + usize::from(roles.ds);
    let connections = file
        .connections
        .clone()
        .unwrap_or_default()
        .limits()?
        .fit_to_fd_limit(nofile, listeners);
    tracing::info!(
        open_files = nofile,
        max_connections = connections.max_connections,
        per_address = connections.max_per_address,
        idle_timeout_s = connections.idle_timeout.as_secs(),
        record_timeout_s = connections.record_timeout.as_secs(),
        record_memory_mib = connections.record_memory >> 20,
        "connection bounds (per listener)"
    );

    let mut mds_server = None;
    if roles.mds {
        let cluster = match (&secret, roles.ds || fc.chunk_size.is_some()) {
            (Some(s), _) => {
                let mut c = mds::cluster::ClusterConfig::new(s.clone());
                if let Some(cs) = fc.chunk_size {
                    if !cs.is_power_of_two() || !(4096..=1 << 30).contains(&cs) {
                        return Err(config::ConfigError::ChunkSize(cs).into());
                    }
                    c.chunk_size = cs;
                }
                Some(c)
            }
            (None, true) => return Err(config::ConfigError::NoSecret.into()),
            (None, false) => None,
        };
        let clustered = cluster.is_some();
        let cfg = mds::ServerConfig {
            data_dir: data_dir.clone(),
            listen,
            exports: config::build_exports(&file.exports)?,
            lease_seconds: file.lease_seconds.unwrap_or(mds::DEFAULT_LEASE_SECONDS),
            grace_seconds: file.grace_seconds,
            cluster,
            connections,
        };
        let server = mds::Server::start(cfg).await?;
        tracing::info!(
            pnfs = clustered,
            "serving NFSv4.1/4.2 on {}",
            server.local_addr()
        );
        mds_server = Some(server);
    }
    let mut ds_server = None;
    if roles.ds {
        let secret = secret.ok_or(config::ConfigError::NoSecret)?;
        let mds_addr = match flags.mds.as_ref().or(fc.mds.as_ref()) {
            Some(m) => config::parse_listen(m)?,
            None => match &mds_server {
                Some(s) => s.local_addr(),
                None => return Err(config::ConfigError::NoMds.into()),
            },
        };
        let ds_listen = match flags.ds_listen.as_ref().or(fc.ds_listen.as_ref()) {
            Some(l) => config::parse_listen(l)?,
            None if roles.mds => SocketAddr::new(listen.ip(), 0),
            None => listen,
        };
        let advertise = if flags.advertise.is_empty() {
            fc.advertise.clone().unwrap_or_default()
        } else {
            flags.advertise.clone()
        };
        let advertise = advertise
            .iter()
            .map(|a| config::parse_listen(a))
            .collect::<Result<Vec<_>, _>>()?;
        let cfg = ds::DsConfig {
            // Beside an MDS the DS gets a directory of its own.
            data_dir: if roles.mds {
                data_dir.join("ds")
            } else {
                data_dir.clone()
            },
            listen: ds_listen,
            advertise,
            mds: mds_addr,
            secret,
            failure_domain: flags
                .failure_domain
                .clone()
                .or(fc.failure_domain.clone())
                .unwrap_or_default(),
            connections,
        };
        let fabric = match flags.fabric.as_ref().or(fc.fabric.as_ref()) {
            Some(p) => Some((
                p.as_str(),
                match &fc.fabric_listen {
                    Some(l) => config::parse_listen(l)?,
                    None => SocketAddr::new(cfg.listen.ip(), 0),
                },
            )),
            None => None,
        };
        let server = ds::DsServer::start_with_fabric(cfg, fabric).await?;
        tracing::info!(
            ds = format!("{:016x}", server.id().0),
            mds = %mds_addr,
            fabric = ?server.fabric_addr(),
            "serving the flexfiles data path (NFSv3) on {}",
            server.local_addr()
        );
        ds_server = Some(server);
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    if let Some(s) = ds_server {
        s.shutdown().await;
    }
    if let Some(s) = mds_server {
        s.shutdown().await;
    }
    Ok(())
}

/// Raises the soft open-file limit to the hard one and returns the limit in force. Every client
/// connection is a descriptor: under the common default of 1024, 1,100 idle sockets made
/// accept() fail for everyone.
fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        tracing::warn!(
            "cannot read the open-file limit: {}",
            std::io::Error::last_os_error()
        );
        return 1024;
    }
    let was = lim.rlim_cur;
    // An unlimited hard limit still stops at the kernel's nr_open (2^20 by default).
    let want = lim.rlim_max.min(1 << 20);
    if lim.rlim_cur < want {
        let raised = libc::rlimit {
            rlim_cur: want,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = want;
        } else {
            tracing::warn!(
                "cannot raise the open-file limit: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    tracing::info!(was, now = lim.rlim_cur, "open-file limit");
    lim.rlim_cur
}
