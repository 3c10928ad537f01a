//! moto's S3 server as a child process on 127.0.0.1, killed by PID when dropped.
//!
//! `moto_server` comes from PyPI (`pip install 'moto[server]'`; scripts/setup.sh installs it
//! into a venv under the user's cache when none is on the PATH); `MOTO_SERVER` names another
//! executable. Each test asks for its own port from a small range below 32768 (the kernel's
//! ephemeral ports start above), taking the next one if the first is busy.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running moto server.
pub struct Moto {
    child: Child,
    pub addr: SocketAddr,
}

impl Moto {
    /// Starts moto on the first free port of `port..port + 8` and waits until it answers
    /// HTTP (30 s at most: importing moto takes a few seconds on a busy machine).
    pub fn start(port: u16) -> Moto {
        let exe = executable();
        for p in port..port + 8 {
            let addr: SocketAddr = ([127, 0, 0, 1], p).into();
            if TcpListener::bind(addr).is_err() {
                continue;
            }
            let child = Command::new(&exe)
                .args(["-H", "127.0.0.1", "-p", &p.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot run {exe} ({e}): run scripts/setup.sh, or set MOTO_SERVER")
                });
            let mut moto = Moto { child, addr };
            if moto.wait_ready(Duration::from_secs(30)) {
                return moto;
            }
            // Dropping `moto` kills it; another process took the port first, try the next.
        }
        panic!(
            "moto_server did not start on any port of {port}..{}",
            port + 8
        );
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn wait_ready(&mut self, limit: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if answers(self.addr) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

/// `MOTO_SERVER`, else `moto_server` on the PATH, else the venv scripts/setup.sh makes.
fn executable() -> String {
    if let Ok(exe) = std::env::var("MOTO_SERVER") {
        return exe;
    }
    let on_path = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("moto_server").is_file()));
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cache")));
    match cache.map(|c| c.join("cfs/moto/bin/moto_server")) {
        Some(venv) if !on_path && venv.is_file() => venv.display().to_string(),
        _ => "moto_server".into(),
    }
}

fn answers(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut head = [0u8; 5];
    s.write_all(b"GET /moto-api/ HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .is_ok()
        && s.read_exact(&mut head).is_ok()
        && &head == b"HTTP/"
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
