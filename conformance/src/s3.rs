//! The object store behind `cfs-cluster-s3`: moto's S3 server (from PyPI: scripts/setup.sh
//! installs it into a venv under the user's cache when none is on the PATH; `MOTO_SERVER`
//! names another executable), a child process on loopback with one bucket, stopped with the
//! server it serves.
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// The bucket the cluster's tier uses.
pub const BUCKET: &str = "cfs-conformance";

/// Starts moto on a free port with `BUCKET` in it; its log goes to `dir/moto.log`.
pub fn start(dir: &Path) -> Result<(Child, u16)> {
    let exe = executable();
    let port = crate::server::free_port()?;
    let log = std::fs::File::create(dir.join("moto.log"))
        .map_err(|e| Error::Server(format!("moto log: {e}")))?;
    let err = log
        .try_clone()
        .map_err(|e| Error::Server(format!("moto log: {e}")))?;
    let mut child = Command::new(&exe)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(err))
        .spawn()
        .map_err(|e| {
            Error::Server(format!(
                "cannot run {exe} ({e}): run scripts/setup.sh, or set MOTO_SERVER"
            ))
        })?;
    // Importing moto takes a few seconds on a busy machine.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Err(Error::Server(format!(
                "moto_server exited ({st}); see {:?}",
                dir.join("moto.log")
            )));
        }
        match http(
            port,
            &format!("PUT /{BUCKET} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"),
        ) {
            Some(status)
                if status.starts_with("HTTP/1.0 200") || status.starts_with("HTTP/1.1 200") =>
            {
                return Ok((child, port))
            }
            Some(status) if Instant::now() > deadline => {
                crate::procs::stop(&mut child, Duration::from_secs(5));
                return Err(Error::Server(format!("moto refused the bucket: {status}")));
            }
            _ if Instant::now() > deadline => {
                crate::procs::stop(&mut child, Duration::from_secs(5));
                return Err(Error::Server(
                    "moto_server did not answer within 30 s".into(),
                ));
            }
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// The first line of the answer to `request`, if moto answered.
fn http(port: u16, request: &str) -> Option<String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(request.as_bytes()).ok()?;
    let mut head = [0u8; 64];
    let n = s.read(&mut head).ok()?;
    let text = String::from_utf8_lossy(&head[..n]).into_owned();
    Some(text.lines().next().unwrap_or_default().to_string())
}

/// `MOTO_SERVER`, else `moto_server` on the PATH, else the venv scripts/setup.sh makes.
fn executable() -> String {
    if let Ok(exe) = std::env::var("MOTO_SERVER") {
        return exe;
    }
    let on_path = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("moto_server").is_file()));
    let venv = crate::paths::user_cache_dir().map(|c| c.join("cfs/moto/bin/moto_server"));
    match venv {
        Some(v) if !on_path && v.is_file() => v.display().to_string(),
        _ => "moto_server".into(),
    }
}

/// `[tier]` keys the cluster's MDS takes beside `--s3`: moto's credentials, uploads a second
/// after a file's last change.
pub fn tier_extra() -> String {
    "access_key_id = \"testing\"\nsecret_access_key = \"testing\"\nupload_after_seconds = 1\n\
     object_mib = 1\nrequest_timeout_seconds = 5\n"
        .into()
}
