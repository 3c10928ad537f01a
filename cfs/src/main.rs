//! `cfs`: the one ClaudeFS binary.
mod config;
mod files;

use clap::{Parser, Subcommand};
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
    },
    #[command(flatten)]
    Files(files::FileCmd),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CFS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
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
            } => run_server(config, data, listen).await,
            Cmd::Files(cmd) => files::run(cmd).await.map_err(Into::into),
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

async fn run_server(
    config: Option<PathBuf>,
    data: Option<PathBuf>,
    listen: Option<String>,
) -> Result<(), Box<dyn std::error::Error>> {
    let file = config::load(config.as_deref())?;
    let listen = listen
        .or(file.listen.clone())
        .unwrap_or_else(|| config::DEFAULT_LISTEN.to_string());
    let cfg = mds::ServerConfig {
        data_dir: data
            .or(file.data.clone())
            .unwrap_or_else(|| PathBuf::from(config::DEFAULT_DATA)),
        listen: config::parse_listen(&listen)?,
        exports: config::build_exports(&file.exports)?,
        lease_seconds: file.lease_seconds.unwrap_or(mds::DEFAULT_LEASE_SECONDS),
        grace_seconds: file.grace_seconds,
    };
    let server = mds::Server::start(cfg).await?;
    tracing::info!("serving NFSv4.1/4.2 on {}", server.local_addr());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    server.shutdown().await;
    Ok(())
}
