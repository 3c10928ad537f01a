//! `cfs`: the one ClaudeFS binary.
mod admin_cli;
mod admin_http;
mod alloc_count;
mod cluster_up;
mod files;
mod gateway;
mod mds_join;
mod mount;
mod progress;
mod repair;
mod serve;

// Modules of the library (`lib.rs`), kept reachable as `crate::…` from the rest.
use cfs::{admin, config, http_client, kerberos, timefmt};
use clap::{CommandFactory, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "cfs",
    version,
    about = "ClaudeFS: a scale-out POSIX file system served over NFSv4.1/pNFS",
    after_help = "Examples:
  cfs server                                   one node: data in ./cfs-data, NFS on 127.0.0.1:2049
  cfs cluster up --ds 3                        1 MDS + 3 data servers on loopback
  sudo mount -t nfs4 -o vers=4.2 127.0.0.1:/ /mnt
  cfs put ./big.iso /isos/   cfs ls -l /isos   cfs admin status --config cfs-cluster/mds.toml

Environment: CFS_LOG (log filter, e.g. CFS_LOG=debug), CFS_METRICS=off (no metrics).
Exit status: 0 on success, 1 on any error (the message says what to do)."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a server. With no flags: a one-node cluster, data in ./cfs-data, NFS on 127.0.0.1:2049.
    #[command(after_help = "Examples:
  cfs server                                          one node, ./cfs-data, 127.0.0.1:2049
  cfs server --data /srv/cfs --listen 0.0.0.0:2049
  cfs server --config /etc/cfs/cfs.toml               flags override the file
  cfs server --config /etc/cfs/cfs.toml --check-config    validate only, touch nothing
  cfs server --role ds --mds 10.0.0.1:2049 --cluster-secret-file /etc/cfs/secret --listen 0.0.0.0:2050

Everything is checked before anything is created or bound: the config, the data directory,
the ports; the export paths when the file system is open. A commented example config is
dist/cfs.toml in the source tree.")]
    Server {
        #[command(subcommand)]
        action: Option<Box<ServerAction>>,
        /// TOML configuration file (flags override it).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Data directory (created if missing).
        #[arg(long)]
        data: Option<PathBuf>,
        /// NFS listen address, HOST:PORT.
        #[arg(long)]
        listen: Option<String>,
        /// Admin HTTP listen address (metrics, console, API); overrides `[admin] listen`.
        #[arg(long)]
        admin_listen: Option<String>,
        /// Check the configuration, data directory and ports, print a summary and exit.
        #[arg(long)]
        check_config: bool,
        #[command(flatten)]
        cluster: ClusterFlags,
    },
    /// Run a local cluster on loopback: M metadata nodes (1, or 3 and more) and N data servers.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Watch and run a cluster: status, busiest clients and files, clients, actions.
    #[command(subcommand)]
    Admin(AdminCmd),
    /// Rebuild a lost site from the object store: the namespace and every file's records into
    /// empty MDS data directories, from the metadata the cluster shipped to the bucket
    /// (`[tier]`); every regular file's bytes stay in the bucket until they are used.
    #[command(after_help = "Examples:
  AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... cfs repair --from-s3 http://10.0.0.9:9000/cfs-bucket --data /srv/cfs
  cfs repair --from-s3 s3://my-bucket --endpoint https://s3.eu-west-1.amazonaws.com --prefix site-a --data ./cfs-data
  cfs repair --from-s3 http://10.0.0.9:9000/cfs-bucket --cluster ./cfs-cluster   # every MDS node of a `cfs cluster up` layout

GETs only (no LIST): the shards' roots have well-known keys; every object is verified before use.
The shards' checkpoints are of different moments: cross-shard operations under way are finished
or undone, entries naming what their shard's checkpoint lacks are removed, inodes no entry names
go into /lost+found. It prints what it rebuilt, what that check did, and the acknowledged-data
loss window: metadata newer than the last checkpoint shipped, and files whose bytes had not
reached the bucket (listed). Then start the server, or every node of the cluster (data servers
empty), with the same [tier]; Raft groups start afresh on the rebuilt state.")]
    Repair(repair::RepairArgs),
    /// Print the manual page (roff) generated from this help.
    #[command(after_help = "Example:\n  cfs man > cfs.1 && man ./cfs.1")]
    Man,
    #[command(flatten)]
    Files(files::FileCmd),
    /// Mount the file system with FUSE (metadata to the MDS, data straight to the data
    /// servers); returns once mounted.
    Mount(mount::MountArgs),
    /// Unmount a `cfs mount`.
    Umount(mount::UmountArgs),
}

#[derive(Subcommand)]
enum ServerAction {
    /// Start a new MDS node that joins a running multi-node metadata service: the seed (any
    /// of its nodes) gives it an id and the nodes, every shard takes it in as a learner and
    /// lets it catch up, and voter roles move onto it until it votes in its share of the
    /// shards, three voters each (`cfs admin status` shows it "joining", then "member" with
    /// the shards it votes in). Its membership is kept in the data directory: run the same
    /// command to restart it. Data servers learn it from their heartbeat replies, so it hands out
    /// layouts without any data server's config naming it.
    #[command(after_help = "Examples:
  cfs server join --token-file /etc/cfs/secret --seed 10.0.0.1:2049 --listen 10.0.0.4:2049 --data /srv/cfs
  cfs server join --token-file secret --seed 127.0.0.1:2049 --config mds4.toml

The token is the cluster secret (the text of [cluster] secret_file): the node needs it to
talk to the others, and it never crosses the wire (the join call is MACed with it).")]
    Join {
        /// The cluster secret.
        #[arg(long, required_unless_present = "token_file")]
        token: Option<String>,
        /// A file holding the cluster secret (kept out of the process list).
        #[arg(long, conflicts_with = "token")]
        token_file: Option<PathBuf>,
        /// A node of the running metadata service, HOST:PORT (its NFS address).
        #[arg(long)]
        seed: String,
        /// TOML configuration file (flags override it; no node_id or metadata_nodes).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Data directory (created if missing).
        #[arg(long)]
        data: Option<PathBuf>,
        /// NFS listen address, HOST:PORT: the other nodes reach this node there.
        #[arg(long)]
        listen: Option<String>,
        /// Admin HTTP listen address.
        #[arg(long)]
        admin_listen: Option<String>,
        /// The address clients mount, HOST:PORT, which a live node takes over when this one
        /// dies (`[cluster] client_address`); fixed at the join.
        #[arg(long)]
        client_address: Option<String>,
        #[command(flatten)]
        cluster: ClusterFlags,
    },
}

/// Cluster settings of `cfs server` (flags override the config file's `[cluster]`).
#[derive(clap::Args, Debug, Default)]
pub struct ClusterFlags {
    /// Roles to run: mds, ds, or both (repeat or comma-separate). Default: mds.
    #[arg(long = "role")]
    pub roles: Vec<String>,
    /// File with the cluster secret shared by the MDS and its data servers.
    #[arg(long)]
    pub cluster_secret_file: Option<PathBuf>,
    /// ds role: the MDS node(s) to register with ("HOST:PORT[,HOST:PORT...]"); the rest of
    /// a multi-node metadata service is learnt from the heartbeat replies.
    #[arg(long)]
    pub mds: Option<String>,
    /// ds role: address to serve the data path on (needed when mds runs in the same process).
    #[arg(long)]
    pub ds_listen: Option<String>,
    /// ds role: address clients are told (repeat for several, preferred first).
    #[arg(long)]
    pub advertise: Vec<String>,
    /// Failure domain (host, rack): a data server's mirrors go to different domains; a node
    /// joining a metadata service (`server join`) carries it in its membership entry, and a
    /// shard's voters go to different domains.
    #[arg(long)]
    pub failure_domain: Option<String>,
    /// gateway-v3 role: where NFSv3 clients connect (default: the NFS listen host, port 20048).
    #[arg(long)]
    pub gateway_listen: Option<String>,
    /// gateway-v3 role: the rpcbind to register with ("HOST:PORT" or "off"; default
    /// 127.0.0.1:111).
    #[arg(long)]
    pub rpcbind: Option<String>,
    /// ds role: also serve the data path on a libfabric endpoint of this provider (tcp,
    /// sockets, verbs, ...), with RMA for the bytes.
    #[arg(long)]
    pub fabric: Option<String>,
}

#[derive(Subcommand)]
enum ClusterCmd {
    /// Start M metadata nodes (`--mds`, default 1; 3 or more survive the loss of a node) and N
    /// data servers (`--ds`), each its own process, and keep them running until Ctrl-C or
    /// SIGTERM.
    #[command(after_help = "Examples:
  cfs cluster up --ds 3                               MDS :2049, data servers :2050-2052, admin :3049
  cfs cluster up --mds 3 --ds 6                       MDS nodes :2049-2051 (clients mount :2149-2151), data servers :2052-2057
  cfs cluster up --mds 3 --ds 6 --encode-after 60     files left alone a minute become RS 4+2
  cfs cluster up --ds 3 --port 12049                  prints the mount command with port=12049
  cfs cluster up --ds 3 --advertise-host 10.0.2.2 --advertise-host 127.0.0.1   for qemu guests too")]
    Up(cluster_up::UpArgs),
}

#[derive(Subcommand)]
enum AdminCmd {
    /// The cluster at a glance: MDS state counts, data servers, counters.
    #[command(after_help = "Examples:
  cfs admin status --config cfs-cluster/mds.toml
  cfs admin status --admin 127.0.0.1:3049 --cluster-secret-file /etc/cfs/secret --json
  cfs admin status --server 127.0.0.1:2049 --config mds.toml    (no [admin]: asks over the cluster RPC)")]
    Status {
        /// MDS NFS address, for asking over the cluster RPC when there is no admin listener.
        #[arg(long)]
        server: Option<String>,
        #[command(flatten)]
        target: admin_cli::AdminTarget,
    },
    /// The busiest clients and files, redrawn until Ctrl-C.
    #[command(after_help = "Examples:
  cfs admin top --config cfs-cluster/mds.toml
  cfs admin top --config mds.toml --count 1 --json")]
    Top {
        #[command(flatten)]
        target: admin_cli::AdminTarget,
        /// Seconds between refreshes.
        #[arg(long, default_value_t = 2)]
        interval: u64,
        /// Stop after this many refreshes (default: until Ctrl-C).
        #[arg(long)]
        count: Option<u64>,
        /// Rows per table.
        #[arg(short = 'n', default_value_t = 10)]
        rows: usize,
    },
    /// NFS clients and what they hold (sessions, opens, locks, delegations, layouts).
    #[command(after_help = "Example:\n  cfs admin clients --config cfs-cluster/mds.toml")]
    Clients {
        #[command(flatten)]
        target: admin_cli::AdminTarget,
    },
    /// Remove a directory and everything under it, lazily: the name is gone when the command
    /// returns, and the contents are removed in the background by the MDS (files' data as
    /// after an unlink; a file open somewhere stays until its last close). `cfs admin status`
    /// shows what is left. PATH is the path inside the file system (as exports' paths are).
    /// Refused for /, an export's root or a directory holding one, a path that does not exist
    /// and anything that is not a directory. The admin token is root's authority: no
    /// permission is checked under PATH.
    #[command(after_help = "Examples:
  cfs admin rmtree /scratch/run-1742 --config cfs-cluster/mds.toml
  cfs admin rmtree /scratch/run-1742 --config mds.toml --json
  cfs admin status --config mds.toml    shows \"removing trees: ... entries in them left\"")]
    Rmtree {
        /// Directory to remove, e.g. /scratch/run-1742.
        path: String,
        #[command(flatten)]
        target: admin_cli::AdminTarget,
    },
    /// The object-store tier.
    #[command(subcommand)]
    Tier(TierCmd),
    /// Snapshots: read-only views of the file system at one instant.
    #[command(subcommand)]
    Snapshot(SnapshotCmd),
    /// Act on a data server.
    #[command(subcommand)]
    Node(NodeCmd),
    /// Act on a client.
    #[command(subcommand)]
    Client(ClientCmd),
    /// Print the admin token (for Prometheus's credentials file or the console).
    #[command(after_help = "Examples:
  cfs admin token --config cfs-cluster/mds.toml > /etc/prometheus/cfs.token
  xdg-open \"http://127.0.0.1:3049/#token=$(cfs admin token --config cfs-cluster/mds.toml)\"")]
    Token {
        #[command(flatten)]
        target: admin_cli::AdminTarget,
    },
}

#[derive(Subcommand)]
enum TierCmd {
    /// Pin PATH to flash (never evicted), to the bucket (s3: evicted as soon as the bucket
    /// holds it, and read from there), or to neither (auto: evicted past the watermark), as
    /// `setfattr -n user.cfs.tier -v PIN PATH` from a client does, with root's authority.
    /// Files and directories created under PATH from then on take its pin; what is there
    /// already keeps its own. PATH is the path inside the file system (as exports' paths are).
    #[command(after_help = "Examples:
  cfs admin tier pin /projects/hot flash --config cfs-cluster/mds.toml
  cfs admin tier pin /archive s3 --config mds.toml")]
    Pin {
        /// File or directory, e.g. /archive.
        path: String,
        /// flash, s3 or auto.
        pin: String,
        #[command(flatten)]
        target: admin_cli::AdminTarget,
    },
}

#[derive(Subcommand)]
enum SnapshotCmd {
    /// Take a snapshot of the file system, shown as PATH/.snapshot/NAME: every change
    /// acknowledged before the command and none begun after it returns, across all metadata
    /// shards, in a time that does not grow with the number of files. PATH is a directory
    /// inside the file system (as exports' paths are); it must not hold an entry named
    /// .snapshot. Kept --retain-days, or `[snapshots] retain_days` (default 7), then
    /// deleted (with an object-store tier it is kept instead, its unique bytes moved from
    /// flash to the bucket).
    #[command(after_help = "Examples:
  cfs admin snapshot create /projects --name weekly --config cfs-cluster/mds.toml
  cfs admin snapshot create / --name before-upgrade --config mds.toml --json")]
    Create {
        /// Directory that shows it, e.g. /projects.
        path: String,
        /// Its name: 1 to 255 bytes, no '/'; unique among snapshots.
        #[arg(long)]
        name: String,
        /// Days to keep it (default: the server's `[snapshots] retain_days`, 7 unless set).
        #[arg(long)]
        retain_days: Option<u64>,
        #[command(flatten)]
        target: admin_cli::AdminTarget,
    },
    /// Every snapshot: name, where it is shown, when it was taken, its state.
    #[command(after_help = "Example:\n  cfs admin snapshot list --config cfs-cluster/mds.toml")]
    List {
        #[command(flatten)]
        target: admin_cli::AdminTarget,
    },
    /// Delete snapshot NAME: it leaves .snapshot at once; what only it kept is reclaimed in
    /// the background.
    #[command(
        after_help = "Example:\n  cfs admin snapshot delete weekly --config cfs-cluster/mds.toml"
    )]
    Delete {
        name: String,
        #[command(flatten)]
        target: admin_cli::AdminTarget,
    },
    /// Put snapshot NAME's tree back as live files, sharing its bytes (no copy where they are
    /// mirrored): in place, under the directory that shows it (what that directory holds now
    /// is moved into its .cfs-replaced-ID, not deleted), or with --to into a new directory.
    /// Modes, owners, times, symlinks, hard links and extended attributes come back. A
    /// restore cut short (a node killed, the connection dropped) is finished by running the
    /// same command again.
    #[command(after_help = "Examples:
  cfs admin snapshot restore weekly --to /projects-weekly --config cfs-cluster/mds.toml
  cfs admin snapshot restore before-upgrade --config mds.toml")]
    Restore {
        name: String,
        /// A new directory to restore into (it must not exist; its parent must).
        #[arg(long)]
        to: Option<String>,
        #[command(flatten)]
        target: admin_cli::AdminTarget,
    },
}

#[derive(Subcommand)]
enum NodeCmd {
    /// A data server (ID of 16 hex digits): place no new files on it and move its copies (and
    /// its shards of reduction segments) to the others; `cfs admin status` shows the files and
    /// segments left, then "drained" (the data server can then be stopped). The drain
    /// survives a restart of the MDS.
    ///
    /// An MDS node (ID a number of 1 to 3 digits, as `cfs admin status` shows): remove it from
    /// every shard of the metadata service; it stops serving. Refused for the last node, and
    /// when fewer than a majority of the remaining nodes are up.
    #[command(
        after_help = "Examples:\n  cfs admin node drain 3f2a9c0d11e4b5a7 --config cfs-cluster/mds.toml\n  cfs admin node drain 4 --config cfs-cluster/mds1.toml   MDS node 4 leaves the metadata service\n  cfs admin node drain 3f2a9c0d11e4b5a7 --wait --config cfs-cluster/mds.toml   follows it until drained\n  cfs admin node drain 3f2a9c0d11e4b5a7 --cancel --config cfs-cluster/mds.toml   stops the drain"
    )]
    Drain {
        /// Data server id (16 hex digits) or MDS node id (a small number), as `cfs admin
        /// status` shows.
        id: String,
        /// Stay until the data server is drained, printing the files left as they go down.
        #[arg(long, conflicts_with = "cancel")]
        wait: bool,
        /// Stop draining it: new files may be placed on it again (files already moved stay
        /// where they are).
        #[arg(long)]
        cancel: bool,
        #[command(flatten)]
        target: admin_cli::AdminTarget,
    },
}

#[derive(Subcommand)]
enum ClientCmd {
    /// Expire a client now: its opens, locks, delegations and layouts go, and files it wrote
    /// through layouts are fenced. A live client starts over with a new client id.
    #[command(
        after_help = "Example:\n  cfs admin client evict 65f0a1b200000001 --config cfs-cluster/mds.toml"
    )]
    Evict {
        /// Client id (hex, as `cfs admin clients` shows).
        id: String,
        #[command(flatten)]
        target: admin_cli::AdminTarget,
    },
}

/// The log filter without CFS_LOG.
const DEFAULT_LOG: &str =
    "info,openraft=warn,openraft::replication=off,openraft::engine::handler::replication_handler=error";

#[global_allocator]
static ALLOC: alloc_count::Counting = alloc_count::Counting;

fn main() -> ExitCode {
    alloc_count::init_from_env();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CFS_LOG")
                // openraft logs every group's timer and election at info: 256 groups of it
                // would bury the server's own lines. Its replication logs two warnings and an
                // error for every retry to a node that is down (twice a second per shard it
                // leads: 23 MB a minute with 256 shards, measured); the peer network reports
                // the outage once instead (meta's `raft::network`). A storage error there also
                // stops the group, which `openraft::core` and the log itself report.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG)),
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
    if let Cmd::Server {
        config: Some(path), ..
    } = &cli.cmd
    {
        // MIT krb5 takes the keytab from the environment: set before any thread exists.
        if let Ok(file) = config::load(Some(path)) {
            kerberos::set_keytab(&file);
        }
    }
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
                action,
                config,
                data,
                listen,
                admin_listen,
                check_config,
                cluster,
            } => {
                let a = match action.map(|b| *b) {
                    Some(ServerAction::Join {
                        token,
                        token_file,
                        seed,
                        config,
                        data,
                        listen,
                        admin_listen,
                        client_address,
                        cluster,
                    }) => serve::ServerArgs {
                        config,
                        data,
                        listen,
                        admin_listen,
                        flags: cluster,
                        join: Some(serve::JoinArgs {
                            token,
                            token_file,
                            seed,
                            client_address,
                        }),
                    },
                    None => serve::ServerArgs {
                        config,
                        data,
                        listen,
                        admin_listen,
                        flags: cluster,
                        join: None,
                    },
                };
                serve::run(a, check_config).await
            }
            Cmd::Cluster(ClusterCmd::Up(a)) => cluster_up::run(a).await,
            Cmd::Admin(cmd) => admin(cmd).await,
            Cmd::Man => man(),
            Cmd::Repair(a) => repair::run(a).await,
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

/// The manual page, from the same definitions as `--help`.
fn man() -> Result<(), Box<dyn std::error::Error>> {
    let cmd = Cli::command();
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut out)?;
    // A section per subcommand with its description, options and examples, so the one page
    // holds what every `--help` says.
    fn section(
        out: &mut Vec<u8>,
        path: &str,
        c: &clap::Command,
    ) -> Result<(), Box<dyn std::error::Error>> {
        out.extend_from_slice(format!(".SH \"{}\"\n", path.to_uppercase()).as_bytes());
        let m = clap_mangen::Man::new(c.clone());
        m.render_description_section(out)?;
        if c.get_arguments().any(|a| !a.is_hide_set()) {
            m.render_options_section(out)?;
        }
        if let Some(after) = c.get_after_help() {
            out.extend_from_slice(b".PP\n.nf\n");
            for line in after.to_string().lines() {
                let line = line.replace('\\', "\\\\");
                let line = if line.starts_with('.') || line.starts_with('\'') {
                    format!("\\&{line}")
                } else {
                    line
                };
                out.extend_from_slice(format!("{line}\n").as_bytes());
            }
            out.extend_from_slice(b".fi\n");
        }
        for s in c.get_subcommands().filter(|s| s.get_name() != "help") {
            section(out, &format!("{path} {}", s.get_name()), s)?;
        }
        Ok(())
    }
    for s in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        section(&mut out, &format!("cfs {}", s.get_name()), s)?;
    }
    use std::io::Write;
    std::io::stdout().write_all(&out)?;
    Ok(())
}

async fn admin(cmd: AdminCmd) -> Result<(), Box<dyn std::error::Error>> {
    use admin_cli::{call, require};
    match cmd {
        AdminCmd::Status { server, target } => {
            let Some(tg) = admin_cli::resolve(&target)? else {
                return admin_status_rpc(server, target).await;
            };
            let v = call(&tg, "GET", "/api/v1/status").await?;
            if target.json {
                println!("{v}");
            } else {
                print!("{}", admin_cli::status_table(&v));
            }
        }
        AdminCmd::Top {
            target,
            interval,
            count,
            rows,
        } => {
            let tg = require(&target)?;
            let count = if target.json {
                Some(count.unwrap_or(1))
            } else {
                count
            };
            admin_cli::top(
                &tg,
                target.json,
                std::time::Duration::from_secs(interval.max(1)),
                count,
                rows,
            )
            .await?;
        }
        AdminCmd::Clients { target } => {
            let v = call(&require(&target)?, "GET", "/api/v1/clients").await?;
            if target.json {
                println!("{v}");
            } else {
                print!("{}", admin_cli::clients_table(&v));
            }
        }
        AdminCmd::Node(NodeCmd::Drain {
            id,
            cancel: true,
            target,
            ..
        }) => {
            let tg = require(&target)?;
            let v = call(&tg, "DELETE", &format!("/api/v1/data-servers/{id}/drain")).await?;
            if target.json {
                println!("{v}");
            } else {
                println!(
                    "drain of data server {} cancelled: new files may be placed on it again",
                    v["cancelled"].as_str().unwrap_or(&id)
                );
            }
        }
        AdminCmd::Node(NodeCmd::Drain {
            id,
            target,
            cancel: false,
            ..
        }) if admin_cli::is_mds_node_id(&id) => {
            let tg = require(&target)?;
            let v = call(&tg, "POST", &format!("/api/v1/mds-nodes/{id}/drain")).await?;
            if target.json {
                println!("{v}");
            } else {
                println!(
                    "MDS node {id} drained: removed from every shard; it stops serving, and \
                     `cfs admin status` no longer lists it"
                );
            }
        }
        AdminCmd::Node(NodeCmd::Drain {
            id, wait, target, ..
        }) => {
            let tg = require(&target)?;
            let v = call(&tg, "POST", &format!("/api/v1/data-servers/{id}/drain")).await?;
            if target.json {
                println!("{v}");
            } else {
                println!(
                    "data server {} is draining: {} files to move; `cfs admin status` shows \
                     the progress, and \"drained\" once it can be stopped",
                    v["draining"].as_str().unwrap_or(&id),
                    v["files_left"]
                );
            }
            if wait {
                admin_cli::wait_drained(&tg, v["draining"].as_str().unwrap_or(&id)).await?;
            }
        }
        AdminCmd::Tier(TierCmd::Pin { path, pin, target }) => {
            let body = serde_json::json!({ "path": path, "pin": pin });
            let v =
                admin_cli::call_with(&require(&target)?, "POST", "/api/v1/tier/pin", Some(&body))
                    .await?;
            if target.json {
                println!("{v}");
            } else {
                println!("{path} pinned to {pin}: what is created under it takes the pin");
            }
        }
        AdminCmd::Snapshot(cmd) => admin_snapshot(cmd).await?,
        AdminCmd::Rmtree { path, target } => {
            let body = serde_json::json!({ "path": path });
            let v = admin_cli::call_with(&require(&target)?, "POST", "/api/v1/rmtree", Some(&body))
                .await?;
            if target.json {
                println!("{v}");
            } else {
                println!(
                    "{path} removed: the name is gone; its contents are being reclaimed in the \
                     background (`cfs admin status` shows what is left)"
                );
            }
        }
        AdminCmd::Client(ClientCmd::Evict { id, target }) => {
            let v = call(
                &require(&target)?,
                "POST",
                &format!("/api/v1/clients/{id}/evict"),
            )
            .await?;
            if target.json {
                println!("{v}");
            } else {
                println!("evicted client {}", v["evicted"].as_str().unwrap_or(&id));
            }
        }
        AdminCmd::Token { target } => {
            let tg = admin_cli::resolve(&target)?;
            let token = match tg {
                Some(t) => t.token,
                None => {
                    // No listener configured: the token is still derivable from the secret.
                    let file = config::load(target.config.as_deref())?;
                    let p = target
                        .cluster_secret_file
                        .clone()
                        .or_else(|| file.cluster.and_then(|c| c.secret_file))
                        .ok_or(admin_cli::AdminCliError::NoToken)?;
                    config::load_secret(&p)?.admin_token()
                }
            };
            println!("{token}");
        }
    }
    Ok(())
}

/// `cfs admin snapshot create | list | delete | restore`, over `/api/v1/snapshots`.
async fn admin_snapshot(cmd: SnapshotCmd) -> Result<(), Box<dyn std::error::Error>> {
    match cmd {
        SnapshotCmd::Create {
            path,
            name,
            retain_days,
            target,
        } => {
            let mut body = serde_json::json!({ "path": path, "name": name });
            if let Some(d) = retain_days {
                body["retain_secs"] = d.saturating_mul(86_400).into();
            }
            let v = admin_cli::call_with(
                &admin_cli::require(&target)?,
                "POST",
                "/api/v1/snapshots",
                Some(&body),
            )
            .await?;
            if target.json {
                println!("{v}");
            } else {
                println!(
                    "snapshot {name} taken (id {}): read it under {}",
                    v["id"],
                    v["shown_at"].as_str().unwrap_or(&path)
                );
            }
        }
        SnapshotCmd::List { target } => {
            let v = admin_cli::call(
                &admin_cli::require(&target)?,
                "GET",
                "/api/v1/snapshots?fresh=true",
            )
            .await?;
            if target.json {
                println!("{v}");
            } else {
                print!("{}", admin_cli::snapshot_table(&v));
            }
        }
        SnapshotCmd::Delete { name, target } => {
            let at = format!("/api/v1/snapshots/{}", admin_cli::path_segment(&name));
            let v = admin_cli::call(&admin_cli::require(&target)?, "DELETE", &at).await?;
            if target.json {
                println!("{v}");
            } else {
                println!(
                    "snapshot {name} deleted: what only it kept is reclaimed in the background"
                );
            }
        }
        SnapshotCmd::Restore { name, to, target } => {
            let at = format!(
                "/api/v1/snapshots/{}/restore",
                admin_cli::path_segment(&name)
            );
            let body = match &to {
                Some(t) => serde_json::json!({ "to": t }),
                None => serde_json::json!({}),
            };
            // A restore answers when the tree is back: a day covers any tree this serves.
            let wait = std::time::Duration::from_secs(86_400);
            let v = admin_cli::call_waiting(
                &admin_cli::require(&target)?,
                "POST",
                &at,
                Some(&body),
                wait,
            )
            .await?;
            if target.json {
                println!("{v}");
            } else {
                println!(
                    "snapshot {name} restored to {} in {:.2} s: {} files, {} directories, {} others, {} hard links; {} shared, {} copied",
                    v["to"].as_str().unwrap_or("?"),
                    v["secs"].as_f64().unwrap_or(0.0),
                    v["files"],
                    v["dirs"],
                    v["others"],
                    v["links"],
                    admin::human(v["shared_bytes"].as_u64().unwrap_or(0)),
                    admin::human(v["copied_bytes"].as_u64().unwrap_or(0)),
                );
                if let Some(r) = v["replaced"].as_str() {
                    println!(
                        "what {} held before is in {r}: remove it when satisfied",
                        v["to"].as_str().unwrap_or("?")
                    );
                }
            }
        }
    }
    Ok(())
}

/// `cfs admin status` without an admin listener: the signed STATUS call of the cluster program
/// on the MDS's NFS port, found as the servers find it.
async fn admin_status_rpc(
    server: Option<String>,
    t: admin_cli::AdminTarget,
) -> Result<(), Box<dyn std::error::Error>> {
    let file = config::load(t.config.as_deref())?;
    let server = server
        .or(file.listen.clone())
        .unwrap_or_else(|| config::DEFAULT_LISTEN.to_string());
    let addr = config::parse_listen(&server)?;
    let secret_file = t
        .cluster_secret_file
        .or_else(|| file.cluster.as_ref().and_then(|c| c.secret_file.clone()))
        .ok_or(config::ConfigError::NoSecret)?;
    let secret = config::load_secret(&secret_file)?;
    let s = admin::status(addr, &secret).await?;
    if t.json {
        println!("{}", admin::to_json(&s));
    } else {
        print!("{}", admin::to_table(&s));
    }
    Ok(())
}

/// Raises the soft open-file limit to the hard one and returns the limit in force. Every client
/// connection is a descriptor: under the common default of 1024, 1,100 idle sockets made
/// accept() fail for everyone.
pub fn raise_nofile_limit() -> u64 {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The `cfs ...` lines of every command's examples (`--help`): the words before the
    /// comment column (two or more spaces), or every `cfs ...` piece of a line that holds
    /// several (three spaces apart).
    fn examples(cmd: &clap::Command, out: &mut Vec<String>) {
        if let Some(h) = cmd.get_after_help() {
            for line in h.to_string().lines() {
                for piece in line.trim().split("   ") {
                    let piece = piece.trim();
                    let Some(rest) = piece.strip_prefix("cfs ") else {
                        continue;
                    };
                    // `cfs man > cfs.1 && ...`: the shell's part is not cfs's.
                    let words = rest.split(['>', '|', '&']).next().unwrap_or(rest);
                    let words = words.split("  ").next().unwrap_or(words).trim();
                    out.push(format!("cfs {words}"));
                }
            }
        }
        for sub in cmd.get_subcommands() {
            examples(sub, out);
        }
    }

    /// Every example in the help is a command line cfs accepts (flags renamed or removed
    /// would leave examples that fail).
    #[test]
    fn every_help_example_parses() {
        let mut all = Vec::new();
        examples(&Cli::command(), &mut all);
        assert!(all.len() > 20, "examples found: {all:?}");
        let bad: Vec<String> = all
            .iter()
            .filter_map(|e| {
                let argv = e.split_whitespace().filter(|w| !w.starts_with('('));
                Cli::try_parse_from(argv)
                    .err()
                    .map(|err| format!("{e}: {:?}", err.kind()))
            })
            .collect();
        assert!(bad.is_empty(), "examples cfs refuses:\n{}", bad.join("\n"));
    }
}
