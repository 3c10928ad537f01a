//! Shared by the integration tests: a real `cfs server` process on a free loopback port with
//! its own data directory, and a bounded way to run `cfs` commands.
#![allow(dead_code)]
pub mod cluster;
pub mod ec;
pub mod history;
pub mod netns;
pub mod v3;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_cfs");

/// Held by every test that starts a cluster (four to seven processes) or loads a server to
/// bound its latency or memory: one such test at a time in the process, on a machine that may
/// have two cores. They were one at a time when each test file was its own binary (cargo runs
/// those one after another, each file serializing its own); in the one `it` binary, modules
/// run side by side. Tests that start one server need not hold it.
pub static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A free loopback port below the ephemeral range (32768 and up), which outgoing connections
/// never take: a server restarted on it cannot lose it to some client's socket in between.
/// Each test process walks its own stretch of 21000..32000 (by PID), never handing out a port
/// twice, and skips ports in use.
pub fn free_port() -> u16 {
    free_ports(1)
}

/// The first of `n` consecutive free ports (see `free_port`).
pub fn free_ports(n: u16) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 21000;
    const SPAN: u32 = 11000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let n32 = u32::from(n);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        (std::process::id() % 110) * 100,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let at = NEXT.fetch_add(n32, Ordering::SeqCst) % SPAN;
        if at + n32 > SPAN {
            continue;
        }
        let base = LOW + at;
        let all_free = (0..n32).all(|i| {
            u16::try_from(base + i).is_ok_and(|p| TcpListener::bind(("127.0.0.1", p)).is_ok())
        });
        if all_free {
            return u16::try_from(base).expect("below 32000");
        }
    }
    panic!("no {n} consecutive free ports in 21000..32000");
}

/// A `cfs server` we started; killed (SIGKILL) and reaped on drop.
pub struct Server {
    pub child: Option<Child>,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    pub config: Option<PathBuf>,
    starts: u32,
    /// Variables set for the process on top of the test's own (`start_env`).
    env: Vec<(String, String)>,
}

impl Server {
    /// Starts a server with data in `dir/data`; `config` is TOML written to `dir/cfs.toml`.
    pub fn start(dir: &Path, config: Option<&str>) -> Server {
        Server::start_env(dir, config, &[])
    }

    /// `start`, with `env` set for the process (and its restarts).
    pub fn start_env(dir: &Path, config: Option<&str>, env: &[(&str, &str)]) -> Server {
        let config = config.map(|text| {
            let p = dir.join("cfs.toml");
            std::fs::write(&p, text).expect("write config");
            p
        });
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut s = Server {
            child: None,
            addr,
            dir: dir.to_path_buf(),
            config,
            starts: 0,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        s.restart();
        s
    }

    /// (Re)starts the process on the same port and data directory and waits until it accepts
    /// connections.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "server still running");
        self.starts += 1;
        let log = std::fs::File::create(self.dir.join(format!("server-{}.log", self.starts)))
            .expect("server log");
        let mut cmd = Command::new(BIN);
        cmd.arg("server")
            .arg("--data")
            .arg(self.dir.join("data"))
            .arg("--listen")
            .arg(self.addr.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        if let Some(c) = &self.config {
            cmd.arg("--config").arg(c);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        let mut child = cmd.spawn().expect("spawn cfs server");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                break;
            }
            if let Ok(Some(st)) = child.try_wait() {
                panic!("cfs server exited early ({st}); see {}", self.dir.display());
            }
            assert!(
                Instant::now() < deadline,
                "cfs server did not start listening"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
    }

    /// `kill -9` and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn server_arg(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A child process killed (SIGKILL, by its PID) and reaped on drop.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct Out {
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Out {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Config lines for a one-node server in `dir` (data in `dir/data`) with an admin listener on
/// a free port, which `cfs admin --config dir/cfs.toml` then finds (`Server::start` writes the
/// config there); `extra` follows (more sections).
pub fn admin_config(dir: &Path, extra: &str) -> String {
    format!(
        "data = {:?}\n[admin]\nlisten = \"127.0.0.1:0\"\n{extra}",
        dir.join("data").to_string_lossy()
    )
}

/// `cfs admin snapshot create / --name NAME` against the one-node server of `admin_config`,
/// once its admin listener has written down its address.
pub fn snapshot_root(dir: &Path, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !dir.join("data").join("admin.addr").exists() {
        assert!(Instant::now() < deadline, "no admin.addr written");
        std::thread::sleep(Duration::from_millis(50));
    }
    let config = dir.join("cfs.toml").to_string_lossy().into_owned();
    let args = ["admin", "snapshot", "create", "/", "--name", name];
    let o = cfs(dir, &[&args[..], &["--config", &config]].concat());
    assert!(o.ok(), "snapshot create: {}{}", o.text(), o.stderr);
}

/// Runs `cfs ARGS` with a time limit (killed past it); output goes through files so a large
/// `get -` cannot fill a pipe and stall.
pub fn cfs(dir: &Path, args: &[&str]) -> Out {
    cfs_env(dir, args, &[])
}

/// `cfs` with extra environment variables (e.g. a Kerberos ticket cache).
pub fn cfs_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Out {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (po, pe) = (
        dir.join(format!("cmd{n}.out")),
        dir.join(format!("cmd{n}.err")),
    );
    let mut child = Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::fs::File::create(&po).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(&pe).unwrap()))
        .spawn()
        .expect("spawn cfs");
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("cfs {args:?} timed out");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let out = Out {
        code: status.code(),
        stdout: std::fs::read(&po).unwrap_or_default(),
        stderr: std::fs::read_to_string(&pe).unwrap_or_default(),
    };
    let _ = std::fs::remove_file(po);
    let _ = std::fs::remove_file(pe);
    out
}

/// Deterministic pseudo-random bytes (xorshift64*), so failures reproduce.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        v.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    v.truncate(len);
    v
}

pub fn digest(b: &[u8]) -> blake3::Hash {
    blake3::hash(b)
}

/// A tmpfs of `size` mounted on `dir`; unmounted on drop.
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    pub fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(st.success(), "mounting a tmpfs needs root: {st}");
        Tmpfs(dir.to_path_buf())
    }

    pub fn avail(&self) -> u64 {
        let p = std::ffi::CString::new(self.0.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: statvfs writes only into the zeroed struct; `p` is NUL-terminated.
        let mut v: libc::statvfs = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::statvfs(p.as_ptr(), &mut v) }, 0);
        v.f_bavail as u64 * v.f_frsize as u64
    }

    /// Fills the file system with the file `name` until `leave` bytes (or fewer) are free.
    pub fn fill(&self, name: &str, leave: u64) -> PathBuf {
        use std::io::Write;
        let path = self.0.join(name);
        let mut f = std::fs::File::create(&path).unwrap();
        for chunk in [1u64 << 20, 4096, 512, 1] {
            let buf = vec![0x77u8; chunk as usize];
            while self.avail() >= leave + chunk && f.write_all(&buf).is_ok() {}
        }
        if leave == 0 {
            while f.write_all(&[0x77]).is_ok() {}
        }
        let _ = f.sync_all();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A two-thread runtime for a test's async parts (the machine has two cores).
#[allow(dead_code)]
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}
