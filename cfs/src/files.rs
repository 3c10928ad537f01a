//! The file commands: `cfs ls/put/get/cat/mkdir/rm/stat` over the client library.
use clap::{Args, Subcommand};
use client::transfer::{self, TransferOptions};
use client::{
    Client, ClientConfig, CreateMode, DirEntry, Error, FileType, Nfsstat4, SetAttrs, Stat,
};
use proto::nfs4::{OPEN4_SHARE_ACCESS_READ, OPEN4_SHARE_ACCESS_WRITE};
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// Where the file commands find the server.
#[derive(Args, Debug, Clone)]
pub struct Remote {
    /// NFS server address.
    #[arg(long, default_value = "127.0.0.1:2049")]
    server: String,
    /// Path of the export in the server's namespace (e.g. /export on a ganesha pseudo-fs).
    #[arg(long, default_value = "/")]
    export: String,
    /// Security flavor: sys (AUTH_SYS as the calling user) or krb5, krb5i, krb5p (Kerberos,
    /// with a ticket from the ticket cache: kinit first).
    #[arg(long, default_value = "sys")]
    sec: String,
    /// Host name in the server's principal (nfs/HOST@REALM); default: the host of --server.
    #[arg(long)]
    sec_host: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum FileCmd {
    /// List a directory (paths are inside the export).
    #[command(
        after_help = "Examples:\n  cfs ls /data\n  cfs ls -l /data/run1\n  cfs ls --server 10.0.0.1:2049 --export /projects /"
    )]
    Ls {
        #[command(flatten)]
        remote: Remote,
        /// Long format: type, mode, links, owner, group, size, mtime.
        #[arg(short = 'l')]
        long: bool,
        #[arg(default_value = "/")]
        path: String,
    },
    /// Copy a local file to the server.
    #[command(
        after_help = "Examples:\n  cfs put ./results.bin /data/run1/results.bin\n  cfs put ./results.bin /data/run1/        into the directory\n  cfs put --sync ./db.img /vm/db.img       FILE_SYNC every write\n\nA progress line shows on a terminal for files of 8 MiB or more."
    )]
    Put {
        #[command(flatten)]
        remote: Remote,
        /// FILE_SYNC every write instead of UNSTABLE writes and one COMMIT.
        #[arg(long)]
        sync: bool,
        /// WRITEs in flight.
        #[arg(long, default_value_t = 8)]
        depth: usize,
        local: PathBuf,
        remote_path: String,
    },
    /// Copy a file from the server ("-" writes to stdout).
    #[command(
        after_help = "Examples:\n  cfs get /data/run1/results.bin ./copy.bin\n  cfs get /data/run1/results.bin - | sha256sum"
    )]
    Get {
        #[command(flatten)]
        remote: Remote,
        /// READs in flight.
        #[arg(long, default_value_t = 8)]
        depth: usize,
        remote_path: String,
        local: PathBuf,
    },
    /// Print files to stdout.
    #[command(after_help = "Example:\n  cfs cat /data/run1/notes.txt")]
    Cat {
        #[command(flatten)]
        remote: Remote,
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Make directories.
    #[command(after_help = "Examples:\n  cfs mkdir /data\n  cfs mkdir -p /data/run1/logs")]
    Mkdir {
        #[command(flatten)]
        remote: Remote,
        /// Make parents as needed; no error if the directory exists.
        #[arg(short = 'p')]
        parents: bool,
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Remove files (and, with -r, directories and their contents).
    #[command(after_help = "Examples:\n  cfs rm /data/run1/notes.txt\n  cfs rm -r /data")]
    Rm {
        #[command(flatten)]
        remote: Remote,
        #[arg(short = 'r', short_alias = 'R')]
        recursive: bool,
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Rename or move a file or directory (one RENAME: atomic, within the file system). A
    /// TO that names an existing directory receives FROM under its own name.
    #[command(
        after_help = "Examples:\n  cfs mv /data/run1/notes.txt /data/run1/notes.old\n  cfs mv /data/run1 /archive/"
    )]
    Mv {
        #[command(flatten)]
        remote: Remote,
        from: String,
        to: String,
    },
    /// Show a file's attributes.
    #[command(after_help = "Example:\n  cfs stat /data/run1/results.bin")]
    Stat {
        #[command(flatten)]
        remote: Remote,
        #[arg(required = true)]
        paths: Vec<String>,
    },
}

#[derive(Debug, Error)]
pub enum FilesError {
    #[error("{path}: {}", describe(.source))]
    Remote { path: String, source: Error },
    #[error("{path}: {source}")]
    Local {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot connect to {server}: {}", describe(.source))]
    Connect { server: String, source: Error },
    #[error("bad server address {0:?} (expected HOST:PORT)")]
    BadServer(String),
    #[error("unknown security flavor {0:?} (expected sys, krb5, krb5i or krb5p)")]
    BadSec(String),
}

/// "No such file or directory (NFS4ERR_NOENT)": the errno text users know, then the status.
fn describe(e: &Error) -> String {
    let Some(s) = e.status() else {
        return match e {
            Error::Connect { source, .. } => source.to_string(),
            // No ticket, a refused or failed context, or a flavor the server refuses: what
            // the kernel client reports as EACCES.
            Error::Gss(g) => format!("Permission denied (kerberos: {g})"),
            Error::Rpc(proto::rpc::RpcError::NotAccepted(proto::rpc::ReplyStatus::AuthError(
                code,
            ))) => format!("Permission denied (RPC auth_stat {code})"),
            e => e.to_string(),
        };
    };
    let text = match s {
        Nfsstat4::Noent => "No such file or directory",
        Nfsstat4::Exist => "File exists",
        Nfsstat4::Notdir => "Not a directory",
        Nfsstat4::Isdir => "Is a directory",
        Nfsstat4::Notempty => "Directory not empty",
        Nfsstat4::Access => "Permission denied",
        Nfsstat4::Perm => "Operation not permitted",
        Nfsstat4::Nametoolong => "File name too long",
        Nfsstat4::Rofs => "Read-only file system",
        Nfsstat4::Nospc => "No space left on device",
        Nfsstat4::Dquot => "Disk quota exceeded",
        Nfsstat4::Fbig => "File too large",
        Nfsstat4::Inval | Nfsstat4::Badname | Nfsstat4::Badchar => "Invalid argument",
        Nfsstat4::Stale | Nfsstat4::Fhexpired => "Stale file handle",
        Nfsstat4::Io => "Input/output error",
        Nfsstat4::Xdev => "Invalid cross-device link",
        Nfsstat4::Mlink => "Too many links",
        Nfsstat4::Symlink => "Is a symbolic link",
        Nfsstat4::Wrongsec => "Operation not permitted (security flavor)",
        Nfsstat4::Locked | Nfsstat4::Denied => "Resource temporarily unavailable",
        _ => return client::status_name(s),
    };
    format!("{text} ({})", client::status_name(s))
}

fn remote_err(path: &str) -> impl FnOnce(Error) -> FilesError + '_ {
    move |source| FilesError::Remote {
        path: path.to_string(),
        source,
    }
}

fn local_err(path: &Path) -> impl FnOnce(std::io::Error) -> FilesError + '_ {
    move |source| FilesError::Local {
        path: path.to_path_buf(),
        source,
    }
}

/// The Kerberos side of `--sec`: None for sys.
fn gss_client(r: &Remote) -> Result<Option<Arc<krb::GssClient>>, FilesError> {
    use proto::rpc::gss::GssService;
    let service = match r.sec.as_str() {
        "sys" => return Ok(None),
        "krb5" => GssService::None,
        "krb5i" => GssService::Integrity,
        "krb5p" => GssService::Privacy,
        other => return Err(FilesError::BadSec(other.to_string())),
    };
    let host = match &r.sec_host {
        Some(h) => h.clone(),
        None => r
            .server
            .rsplit_once(':')
            .map_or(r.server.as_str(), |(h, _)| h)
            .trim_matches(['[', ']'])
            .to_string(),
    };
    Ok(Some(Arc::new(krb::GssClient::new("nfs", &host, service))))
}

async fn connect(r: &Remote) -> Result<Client, FilesError> {
    use std::net::ToSocketAddrs;
    let addr = r
        .server
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| FilesError::BadServer(r.server.clone()))?;
    let mut cfg = ClientConfig::new(addr);
    cfg.export = r.export.clone();
    cfg.gss = gss_client(r)?;
    let conn_err = |source| FilesError::Connect {
        server: r.server.clone(),
        source,
    };
    match tokio::time::timeout(Duration::from_secs(20), Client::connect(cfg)).await {
        Ok(r) => r.map_err(conn_err),
        Err(_) => Err(conn_err(Error::Rpc(proto::rpc::RpcError::Timeout))),
    }
}

pub async fn run(cmd: FileCmd) -> Result<(), FilesError> {
    let remote = match &cmd {
        FileCmd::Ls { remote, .. }
        | FileCmd::Put { remote, .. }
        | FileCmd::Get { remote, .. }
        | FileCmd::Cat { remote, .. }
        | FileCmd::Mkdir { remote, .. }
        | FileCmd::Rm { remote, .. }
        | FileCmd::Mv { remote, .. }
        | FileCmd::Stat { remote, .. } => remote.clone(),
    };
    let c = connect(&remote).await?;
    let r = match cmd {
        FileCmd::Ls { long, path, .. } => ls(&c, &path, long).await,
        FileCmd::Put {
            sync,
            depth,
            local,
            remote_path,
            ..
        } => put(&c, &local, &remote_path, sync, depth).await,
        FileCmd::Get {
            depth,
            remote_path,
            local,
            ..
        } => get(&c, &remote_path, &local, depth).await,
        FileCmd::Cat { paths, .. } => cat(&c, &paths).await,
        FileCmd::Mkdir { parents, paths, .. } => mkdir(&c, &paths, parents).await,
        FileCmd::Rm {
            recursive, paths, ..
        } => rm(&c, &paths, recursive).await,
        FileCmd::Mv { from, to, .. } => mv(&c, &from, &to).await,
        FileCmd::Stat { paths, .. } => stat(&c, &paths).await,
    };
    // Leave no client state behind on the server; a failure here changes nothing for the user.
    if let Err(e) = c.shutdown().await {
        tracing::debug!("shutdown: {e}");
    }
    r
}

fn mode_string(st: &Stat) -> String {
    let mut s = String::with_capacity(10);
    s.push(st.ftype.letter());
    for (i, ch) in ['r', 'w', 'x', 'r', 'w', 'x', 'r', 'w', 'x']
        .iter()
        .enumerate()
    {
        let bit = 0o400 >> i;
        s.push(if st.mode & bit != 0 { *ch } else { '-' });
    }
    s
}

fn long_line(name: &str, st: &Stat) -> String {
    format!(
        "{} {:>3} {:>8} {:>8} {:>12} {} {}",
        mode_string(st),
        st.nlink,
        st.owner,
        st.group,
        st.size,
        crate::timefmt::ls(st.mtime.seconds),
        name
    )
}

async fn ls(c: &Client, path: &str, long: bool) -> Result<(), FilesError> {
    let (fh, st) = c.stat_path(path).await.map_err(remote_err(path))?;
    let mut out = std::io::stdout().lock();
    if !st.is_dir() {
        let name = path.rsplit('/').find(|s| !s.is_empty()).unwrap_or(path);
        let line = if long {
            long_line(name, &st)
        } else {
            name.to_string()
        };
        return writeln!(out, "{line}").map_err(local_err(Path::new("<stdout>")));
    }
    let mut entries: Vec<DirEntry> = c.readdir(&fh).await.map_err(remote_err(path))?;
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    for e in entries {
        let line = if long {
            long_line(&e.name, &e.stat)
        } else {
            e.name
        };
        writeln!(out, "{line}").map_err(local_err(Path::new("<stdout>")))?;
    }
    Ok(())
}

/// The remote path a local file is copied to: into `remote` if it names a directory.
async fn put_target(c: &Client, local: &Path, remote: &str) -> Result<String, FilesError> {
    let base = local
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if remote.ends_with('/') {
        return Ok(format!("{remote}{base}"));
    }
    match c.stat_path(remote).await {
        Ok((_, st)) if st.is_dir() => Ok(format!("{}/{base}", remote.trim_end_matches('/'))),
        _ => Ok(remote.to_string()),
    }
}

async fn put(
    c: &Client,
    local: &Path,
    remote: &str,
    sync: bool,
    depth: usize,
) -> Result<(), FilesError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(local).map_err(local_err(local))?;
    if meta.is_dir() {
        return Err(FilesError::Local {
            path: local.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::IsADirectory, "Is a directory"),
        });
    }
    let target = put_target(c, local, remote).await?;
    let opt = TransferOptions {
        depth,
        stable: if sync {
            client::StableHow4::FileSync4
        } else {
            client::StableHow4::Unstable4
        },
        ..TransferOptions::default()
    };
    // A server restart between the WRITEs and the COMMIT loses unstable data: send it again.
    let mut attempts = 0;
    loop {
        attempts += 1;
        let mut src = std::fs::File::open(local).map_err(local_err(local))?;
        let create = CreateMode::Unchecked(SetAttrs {
            mode: Some(meta.permissions().mode() & 0o7777),
            size: Some(0),
            ..Default::default()
        });
        let f = c
            .open_path(
                &target,
                OPEN4_SHARE_ACCESS_WRITE | OPEN4_SHARE_ACCESS_READ,
                Some(create),
            )
            .await
            .map_err(remote_err(&target))?;
        let f = Arc::new(f);
        let mut bar = crate::progress::Progress::new(&target, Some(meta.len()));
        let mut counted = crate::progress::CountingReader {
            inner: &mut src,
            progress: &mut bar,
        };
        let r = transfer::upload(c, f.clone(), &mut counted, opt).await;
        bar.finish();
        let closed = c.close(&f).await;
        match r {
            Err(Error::VerifierChanged) if attempts < 3 => {
                tracing::warn!("{target}: server restarted during the copy; writing again");
                continue;
            }
            Err(e) => return Err(remote_err(&target)(e)),
            Ok(n) if n != meta.len() => {
                return Err(FilesError::Local {
                    path: local.to_path_buf(),
                    source: std::io::Error::other(format!(
                        "file changed while copying ({n} of {} bytes)",
                        meta.len()
                    )),
                })
            }
            Ok(_) => return closed.map_err(remote_err(&target)),
        }
    }
}

async fn get(c: &Client, remote: &str, local: &Path, depth: usize) -> Result<(), FilesError> {
    let opt = TransferOptions {
        depth,
        ..TransferOptions::default()
    };
    let f = c
        .open_path(remote, OPEN4_SHARE_ACCESS_READ, None)
        .await
        .map_err(remote_err(remote))?;
    let f = Arc::new(f);
    let r = if local.as_os_str() == "-" {
        let mut out = std::io::stdout().lock();
        transfer::download(c, f.clone(), &mut out, opt).await
    } else {
        let target = if local.is_dir() {
            let name = remote.rsplit('/').find(|s| !s.is_empty()).unwrap_or("file");
            local.join(name)
        } else {
            local.to_path_buf()
        };
        let file = std::fs::File::create(&target).map_err(local_err(&target))?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
        let mut bar = crate::progress::Progress::new(remote, Some(f.stat.size));
        let mut counted = crate::progress::CountingWriter {
            inner: &mut w,
            progress: &mut bar,
        };
        let r = transfer::download(c, f.clone(), &mut counted, opt).await;
        bar.finish();
        if r.is_ok() {
            let file = w
                .into_inner()
                .map_err(|e| local_err(&target)(e.into_error()))?;
            file.sync_all().map_err(local_err(&target))?;
        }
        r
    };
    let closed = c.close(&f).await;
    r.map_err(remote_err(remote))?;
    closed.map_err(remote_err(remote))
}

async fn cat(c: &Client, paths: &[String]) -> Result<(), FilesError> {
    for p in paths {
        get(c, p, Path::new("-"), 8).await?;
    }
    Ok(())
}

async fn mkdir(c: &Client, paths: &[String], parents: bool) -> Result<(), FilesError> {
    for path in paths {
        if !parents {
            let (dir, name) = c.lookup_parent(path).await.map_err(remote_err(path))?;
            c.mkdir(&dir, name, 0o755).await.map_err(remote_err(path))?;
            continue;
        }
        let comps = client::split_path(path).map_err(remote_err(path))?;
        let mut fh = c.root().clone();
        for comp in comps {
            fh = match c.lookup(&fh, comp).await {
                Ok(f) => f,
                Err(e) if e.is_status(Nfsstat4::Noent) => match c.mkdir(&fh, comp, 0o755).await {
                    Ok(f) => f,
                    // Someone else made it in between.
                    Err(e) if e.is_status(Nfsstat4::Exist) => {
                        c.lookup(&fh, comp).await.map_err(remote_err(path))?
                    }
                    Err(e) => return Err(remote_err(path)(e)),
                },
                Err(e) => return Err(remote_err(path)(e)),
            };
        }
        let st = c.getattr(&fh).await.map_err(remote_err(path))?;
        if !st.is_dir() {
            return Err(remote_err(path)(Error::Nfs {
                op: proto::nfs4::OP_CREATE,
                status: Nfsstat4::Exist,
            }));
        }
    }
    Ok(())
}

/// Empties directory `dir` (named `path` in messages), depth first.
fn remove_tree<'a>(
    c: &'a Client,
    dir: client::NfsFh4,
    path: String,
) -> Pin<Box<dyn Future<Output = Result<(), FilesError>> + Send + 'a>> {
    Box::pin(async move {
        let entries = c.readdir(&dir).await.map_err(remote_err(&path))?;
        for e in entries {
            let child = format!("{}/{}", path.trim_end_matches('/'), e.name);
            if e.stat.ftype == FileType::Directory {
                let fh = c.lookup(&dir, &e.name).await.map_err(remote_err(&child))?;
                remove_tree(c, fh, child.clone()).await?;
            }
            match c.remove(&dir, &e.name).await {
                Ok(()) => {}
                Err(e) if e.is_status(Nfsstat4::Noent) => {}
                Err(e) => return Err(remote_err(&child)(e)),
            }
        }
        Ok(())
    })
}

async fn rm(c: &Client, paths: &[String], recursive: bool) -> Result<(), FilesError> {
    for path in paths {
        let (fh, st) = c.stat_path(path).await.map_err(remote_err(path))?;
        let (dir, name) = c.lookup_parent(path).await.map_err(remote_err(path))?;
        if st.is_dir() {
            if !recursive {
                return Err(remote_err(path)(Error::Nfs {
                    op: proto::nfs4::OP_REMOVE,
                    status: Nfsstat4::Isdir,
                }));
            }
            remove_tree(c, fh, path.clone()).await?;
        }
        c.remove(&dir, name).await.map_err(remote_err(path))?;
    }
    Ok(())
}

/// One RENAME from `from` to `to`; into `to` when it is an existing directory (as mv(1)).
async fn mv(c: &Client, from: &str, to: &str) -> Result<(), FilesError> {
    let (src_dir, src_name) = c.lookup_parent(from).await.map_err(remote_err(from))?;
    let into = match c.stat_path(to).await {
        Ok((fh, st)) if st.is_dir() => Some(fh),
        _ => None,
    };
    let target;
    let (dst_dir, dst_name) = match into {
        Some(fh) => (fh, src_name),
        None => {
            target = to.trim_end_matches('/');
            c.lookup_parent(target).await.map_err(remote_err(to))?
        }
    };
    c.rename(&src_dir, src_name, &dst_dir, dst_name)
        .await
        .map_err(remote_err(from))
}

fn type_name(t: FileType) -> &'static str {
    match t {
        FileType::Regular => "regular file",
        FileType::Directory => "directory",
        FileType::Symlink => "symbolic link",
        FileType::Block => "block device",
        FileType::Char => "character device",
        FileType::Socket => "socket",
        FileType::Fifo => "fifo",
        FileType::Other => "other",
    }
}

async fn stat(c: &Client, paths: &[String]) -> Result<(), FilesError> {
    let mut out = std::io::stdout().lock();
    for path in paths {
        let (_, st) = c.stat_path(path).await.map_err(remote_err(path))?;
        let t = |x: client::Nfstime4| crate::timefmt::full(x.seconds, x.nseconds);
        let text = format!(
            "  File: {path}\n  Type: {}\n  Size: {}\n  Mode: {:04o} ({})\n Links: {}\n Owner: {}\n Group: {}\nFileid: {}\nChange: {}\n  Used: {}\nAccess: {}\nModify: {}\nChange: {}\n",
            type_name(st.ftype),
            st.size,
            st.mode & 0o7777,
            mode_string(&st),
            st.nlink,
            st.owner,
            st.group,
            st.fileid,
            st.change,
            st.space_used,
            t(st.atime),
            t(st.mtime),
            t(st.ctime),
        );
        out.write_all(text.as_bytes())
            .map_err(local_err(Path::new("<stdout>")))?;
    }
    Ok(())
}
