//! `cfs mount`: a FUSE client on the layout protocol. Metadata goes to the MDS over the
//! client library's NFSv4.1 session, with the caller's credential on every request; file
//! data goes straight to the data servers through flexfiles layouts (the library's pNFS
//! driver: UNSTABLE writes to every mirror, COMMIT on each, LAYOUTCOMMIT), with many
//! requests in flight (write-behind, parallel FUSE requests, the session's slots).
//!
//! Consistency is the NFS client's: close-to-open (an open compares the change attribute
//! with the one seen at the last close and drops cached pages and attributes if it moved),
//! attributes and names trusted for [`Options::attr_ttl`] otherwise. Durability too: fsync
//! and close return only once every byte is stable on every mirror.
//!
//! Snapshots show as the server serves them (`DIR/.snapshot/NAME/...`, read-only: every
//! change fails with EROFS); their objects are on a fsid of their own, and so get node ids
//! of their own ([`nodes`]).
//!
//! - [`fs`]: the FUSE operations.
//! - [`nodes`], [`dir`], [`locks`], [`writebehind`], [`creds`], [`attr`], [`errno`].
#![forbid(unsafe_code)]

pub mod attr;
pub mod creds;
pub mod dir;
pub mod errno;
pub mod fs;
pub mod locks;
pub mod nodes;
pub mod writebehind;
pub mod xattr;

pub use fs::{CfsFuse, Fs, Options};

use client::{Client, ClientConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("cannot connect to {server}: {source}")]
    Connect {
        server: SocketAddr,
        source: client::Error,
    },
    #[error("no answer from {0} within 20 s")]
    Timeout(SocketAddr),
    #[error("cannot mount on {path}: {source}")]
    Mount {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("runtime: {0}")]
    Runtime(std::io::Error),
}

/// What to mount where.
#[derive(Debug, Clone)]
pub struct MountArgs {
    pub server: SocketAddr,
    /// Directory of the server's namespace to mount (the export root by default).
    pub path: String,
    pub mountpoint: PathBuf,
    pub opts: Options,
    /// libfabric provider for data-server I/O (see `client::ClientConfig::fabric`).
    pub fabric: Option<String>,
}

/// A connected client with its file system, ready to be mounted.
pub async fn connect(a: &MountArgs) -> Result<Arc<Fs>, MountError> {
    let mut cfg = ClientConfig::new(a.server);
    cfg.export = a.path.clone();
    // More compounds in flight than the file commands need: every FUSE request is one.
    cfg.slots = 64;
    cfg.fabric = a.fabric.clone();
    let err = |source| MountError::Connect {
        server: a.server,
        source,
    };
    let c = tokio::time::timeout(Duration::from_secs(20), Client::connect(cfg))
        .await
        .map_err(|_| MountError::Timeout(a.server))?
        .map_err(err)?;
    let fs = Fs::new(c, a.opts.clone()).await.map_err(err)?;
    Ok(Arc::new(fs))
}

/// The kernel reads ahead 128 KiB on a FUSE mount unless told otherwise (the mount's
/// backing device, `/sys/class/bdi/MAJ:MIN/read_ahead_kb`). Measured here, 1 MDS + 3 DSs,
/// 512 MiB read after a remount: 133-172 MiB/s at 128 KiB, 396-550 MiB/s at 4 MiB.
fn set_readahead(mountpoint: &std::path::Path, kib: u32) {
    use std::os::unix::fs::MetadataExt;
    let Ok(m) = std::fs::metadata(mountpoint) else {
        return;
    };
    let dev = m.dev();
    let path = format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        libc::major(dev),
        libc::minor(dev)
    );
    if let Err(e) = std::fs::write(&path, kib.to_string()) {
        tracing::warn!("cannot set readahead ({path}): {e}");
    }
}

/// Mounts and serves until unmounted (`umount`, `fusermount3 -u`, `cfs umount`, SIGTERM or
/// SIGINT). `ready` is called once the mount is in place. Blocks the calling thread; the
/// requests run on a runtime of its own.
pub fn mount(a: MountArgs, ready: impl FnOnce()) -> Result<(), MountError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("cfs-fuse")
        .build()
        .map_err(MountError::Runtime)?;
    let fs = rt.block_on(async { connect(&a).await })?;
    let mut cfg = fuser::Config::default();
    cfg.mount_options = vec![
        fuser::MountOption::FSName(format!("cfs:{}{}", a.server, a.path)),
        fuser::MountOption::Subtype("cfs".into()),
        // The process dying must not leave a dead mount behind.
        fuser::MountOption::AutoUnmount,
        fuser::MountOption::CUSTOM(format!("max_read={}", a.opts.max_io)),
    ];
    cfg.acl = fuser::SessionACL::All;
    // Two readers of /dev/fuse (one per core here): a request is only parsed and handed to
    // the runtime on these threads.
    cfg.n_threads = Some(2);
    cfg.clone_fd = true;
    let mount_err = |source| MountError::Mount {
        path: a.mountpoint.clone(),
        source,
    };
    let _guard = rt.enter();
    let mut session =
        fuser::Session::new(CfsFuse(fs.clone()), &a.mountpoint, &cfg).map_err(mount_err)?;
    let _ = fs.notifier.set(session.notifier());
    let mut unmounter = session.unmount_callable();
    rt.spawn(async move {
        let stop = async {
            use tokio::signal::unix::{signal, SignalKind};
            match (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) {
                (Ok(mut t), Ok(mut i)) => {
                    tokio::select! { _ = t.recv() => {}, _ = i.recv() => {} }
                }
                _ => std::future::pending::<()>().await,
            }
        };
        stop.await;
        tracing::info!("signal: unmounting");
        if let Err(e) = unmounter.unmount() {
            tracing::warn!("unmount: {e}");
        }
    });
    tracing::info!(mountpoint = %a.mountpoint.display(), pnfs = fs.pnfs(), "mounted");
    // From another thread: the stat it needs is answered by the loop below.
    let (mp, ra) = (a.mountpoint.clone(), a.opts.readahead_kib);
    std::thread::spawn(move || set_readahead(&mp, ra));
    ready();
    let r = session.run().map_err(mount_err);
    // Where the bytes went, for the record (pNFS evidence from the client's side).
    tracing::info!(
        stats = ?fs.c.pnfs_stats(),
        fabric_bytes = fs.c.fabric_bytes(),
        "unmounted"
    );
    // Leave no state behind on the server: opens were closed by the kernel's releases.
    let c = fs.c.clone();
    rt.block_on(async move {
        if let Err(e) = c.shutdown().await {
            tracing::debug!("shutdown: {e}");
        }
    });
    r
}
