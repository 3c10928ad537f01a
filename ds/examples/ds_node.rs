//! Runs one data server, for tests that need it in its own process (to `kill -9` it).
//!
//! `ds_node --data-dir DIR --mds ADDR --secret PASSPHRASE [--listen ADDR] [--advertise ADDR]...
//!  [--failure-domain NAME]`
//!
//! Prints `listening <addr> id <hex id>` on stdout once it serves, then runs until SIGINT or
//! SIGTERM (clean shutdown) or SIGKILL (the point of it). Logs go to stderr (RUST_LOG).

use std::net::SocketAddr;
use std::path::PathBuf;

use ds::{DsConfig, DsServer};
use layout::ClusterSecret;

fn usage(msg: &str) -> ! {
    eprintln!("ds_node: {msg}");
    eprintln!(
        "usage: ds_node --data-dir DIR --mds ADDR --secret PASSPHRASE [--listen ADDR] \
         [--advertise ADDR]... [--failure-domain NAME]"
    );
    std::process::exit(2)
}

fn addr(v: &str) -> SocketAddr {
    v.parse()
        .unwrap_or_else(|e| usage(&format!("bad address {v:?}: {e}")))
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let mut data_dir = None;
    let mut mds = None;
    let mut secret = None;
    let mut listen: SocketAddr = "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!());
    let mut advertise = Vec::new();
    let mut failure_domain = String::new();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut val = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--data-dir" => data_dir = Some(PathBuf::from(val())),
            "--mds" => mds = Some(addr(&val())),
            "--secret" => {
                secret = Some(
                    ClusterSecret::from_passphrase(&val())
                        .unwrap_or_else(|e| usage(&e.to_string())),
                )
            }
            "--listen" => listen = addr(&val()),
            "--advertise" => advertise.push(addr(&val())),
            "--failure-domain" => failure_domain = val(),
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    let cfg = DsConfig {
        data_dir: data_dir.unwrap_or_else(|| usage("--data-dir is required")),
        listen,
        advertise,
        mds: vec![mds.unwrap_or_else(|| usage("--mds is required"))],
        secret: secret.unwrap_or_else(|| usage("--secret is required")),
        failure_domain,
        connections: Default::default(),
        scrub: Default::default(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| usage(&format!("no runtime: {e}")));
    rt.block_on(async move {
        let ds = match DsServer::start(cfg).await {
            Ok(ds) => ds,
            Err(e) => {
                eprintln!("ds_node: {e}");
                std::process::exit(1);
            }
        };
        println!("listening {} id {:016x}", ds.local_addr(), ds.id().0);
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .unwrap_or_else(|e| usage(&format!("no signal handler: {e}")));
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        ds.shutdown().await;
    });
}
