//! Servers under test: nfs-ganesha (started here, optionally misconfigured on purpose), the cfs
//! workspace binary, or an already running server on host loopback.

use crate::error::{Error, IoContext, Result};
use crate::paths;
use crate::procs;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerSpec {
    /// ganesha with a read-write export (the baseline)
    Ganesha,
    /// deliberately broken: the export is read-only
    GaneshaRo,
    /// deliberately restricted: root is squashed to nobody (chown and root-owned state break)
    GaneshaRootSquash,
    Cfs,
    External {
        port: u16,
    },
}

impl ServerSpec {
    pub fn parse(s: &str) -> Result<ServerSpec> {
        Ok(match s {
            "ganesha" => ServerSpec::Ganesha,
            "ganesha-ro" => ServerSpec::GaneshaRo,
            "ganesha-rootsquash" => ServerSpec::GaneshaRootSquash,
            "cfs" => ServerSpec::Cfs,
            other => {
                let addr: SocketAddr = other.parse().map_err(|_| {
                    Error::Usage(format!(
                        "--server {other}: expected ganesha, ganesha-ro, ganesha-rootsquash, cfs or 127.0.0.1:PORT"
                    ))
                })?;
                // qemu user networking maps the guest's 10.0.2.2 to host 127.0.0.1 only
                if addr.ip() != std::net::IpAddr::V4(Ipv4Addr::LOCALHOST) {
                    return Err(Error::Usage(format!(
                        "--server {other}: only 127.0.0.1 is reachable from the guest (as 10.0.2.2)"
                    )));
                }
                ServerSpec::External { port: addr.port() }
            }
        })
    }

    pub fn label(&self) -> String {
        match self {
            ServerSpec::Ganesha => "ganesha".into(),
            ServerSpec::GaneshaRo => "ganesha-ro".into(),
            ServerSpec::GaneshaRootSquash => "ganesha-rootsquash".into(),
            ServerSpec::Cfs => "cfs".into(),
            ServerSpec::External { port } => format!("127.0.0.1:{port}"),
        }
    }

    pub fn is_ganesha(&self) -> bool {
        matches!(
            self,
            ServerSpec::Ganesha | ServerSpec::GaneshaRo | ServerSpec::GaneshaRootSquash
        )
    }

    /// Versions this server is configured (or promised) to offer; a mount failure on one of
    /// them is a failure, on any other it is reported as "not offered".
    pub fn promised(&self, vers: &str) -> bool {
        match self {
            s if s.is_ganesha() => true,
            ServerSpec::Cfs => matches!(vers, "4.1" | "4.2"),
            _ => false,
        }
    }

    /// ganesha needs rpcbind for v3, which only a private network namespace gives us safely.
    pub fn wants_netns(&self) -> bool {
        self.is_ganesha()
    }
}

pub struct Running {
    pub spec: ServerSpec,
    pub port: u16,
    /// v3 MOUNT port (ganesha only)
    pub mnt_port: Option<u16>,
    pub export_v4: String,
    pub export_v3: String,
    pub version: String,
    child: Option<Child>,
    rpcbind: Option<Child>,
    state_dir: Option<PathBuf>,
    pub log: Option<PathBuf>,
}

impl Running {
    pub fn export_for(&self, vers: &str) -> &str {
        if vers == "3" {
            &self.export_v3
        } else {
            &self.export_v4
        }
    }

    pub fn stop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            procs::stop(c, Duration::from_secs(10));
        }
        if let Some(c) = self.rpcbind.as_mut() {
            procs::stop(c, Duration::from_secs(5));
        }
        self.child = None;
        self.rpcbind = None;
        if let Some(d) = self.state_dir.take() {
            if std::env::var_os("CFS_CONFORMANCE_KEEP").is_none() {
                let _ = std::fs::remove_dir_all(d);
            }
        }
    }

    /// Still alive? (a server that died mid-run explains every later failure)
    pub fn alive(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => true,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").ctx(|| "bind a free loopback port".into())?;
    Ok(l.local_addr().ctx(|| "local_addr".into())?.port())
}

fn wait_listening(port: u16, child: &mut Child, log: &Path, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    while Instant::now() < deadline {
        if let Ok(Some(st)) = child.try_wait() {
            let log_text = std::fs::read_to_string(log).unwrap_or_default();
            return Err(Error::Server(format!(
                "{what} exited ({st}) before listening on {port}; {log:?}:\n{}",
                procs::tail(&log_text, 15)
            )));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(Error::Server(format!(
        "{what} did not accept connections on 127.0.0.1:{port} within 30 s; see {log:?}"
    )))
}

fn state_dir(tag: &str) -> Result<PathBuf> {
    let d = paths::cache_dir()
        .join("servers")
        .join(format!("{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).ctx(|| format!("create {d:?}"))?;
    Ok(d)
}

fn log_file(p: &Path) -> Result<(File, File)> {
    let f = File::create(p).ctx(|| format!("create {p:?}"))?;
    let g = f.try_clone().ctx(|| format!("dup {p:?}"))?;
    Ok((f, g))
}

pub fn start(spec: &ServerSpec, in_netns: bool) -> Result<Running> {
    match spec {
        s if s.is_ganesha() => start_ganesha(s, in_netns),
        ServerSpec::Cfs => start_cfs(),
        ServerSpec::External { port } => {
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, *port));
            TcpStream::connect_timeout(&addr, Duration::from_secs(3)).map_err(|e| {
                Error::Server(format!("nothing accepts connections on {addr}: {e}"))
            })?;
            Ok(Running {
                spec: spec.clone(),
                port: *port,
                mnt_port: None,
                export_v4: std::env::var("CFS_CONFORMANCE_EXPORT").unwrap_or_else(|_| "/".into()),
                export_v3: std::env::var("CFS_CONFORMANCE_EXPORT").unwrap_or_else(|_| "/".into()),
                version: "external".into(),
                child: None,
                rpcbind: None,
                state_dir: None,
                log: None,
            })
        }
        _ => Err(Error::Usage(format!("cannot start {}", spec.label()))),
    }
}

fn ganesha_version() -> String {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", "nfs-ganesha"])
        .output()
        .map(|o| format!("nfs-ganesha {}", String::from_utf8_lossy(&o.stdout).trim()))
        .unwrap_or_else(|_| "nfs-ganesha ?".into())
}

fn start_ganesha(spec: &ServerSpec, in_netns: bool) -> Result<Running> {
    if !procs::have("ganesha.nfsd") {
        return Err(Error::Server(
            "ganesha.nfsd not installed; run `cargo run -p conformance -- setup`".into(),
        ));
    }
    let dir = state_dir(&spec.label())?;
    let export = dir.join("export");
    let recov = dir.join("recov");
    for d in [&export, &recov] {
        std::fs::create_dir_all(d).ctx(|| format!("create {d:?}"))?;
    }
    let (access, squash) = match spec {
        ServerSpec::GaneshaRo => ("RO", "No_Root_Squash"),
        ServerSpec::GaneshaRootSquash => ("RW", "Root_Squash"),
        _ => ("RW", "No_Root_Squash"),
    };
    if *spec == ServerSpec::GaneshaRootSquash {
        // squashed root becomes nobody: let it create its working directories like any user could
        procs::run(Command::new("chmod").arg("1777").arg(&export))?;
        procs::run(Command::new("chmod").arg("755").arg(&dir))?;
    }
    // v3 needs ganesha to register with rpcbind (it exits otherwise): only inside our own netns
    let mut rpcbind = None;
    let protocols = if in_netns {
        let mut c = Command::new("rpcbind")
            .arg("-f")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ctx(|| "spawn rpcbind".into())?;
        std::thread::sleep(Duration::from_millis(500));
        if let Ok(Some(st)) = c.try_wait() {
            return Err(Error::Server(format!("rpcbind exited early: {st}")));
        }
        rpcbind = Some(c);
        "3, 4"
    } else {
        "4"
    };
    let port = free_port()?;
    let mnt_port = free_port()?;
    let conf = format!(
        r#"NFS_CORE_PARAM {{
  Bind_addr = 127.0.0.1;
  NFS_Port = {port};
  MNT_Port = {mnt_port};
  Enable_NLM = false;
  Enable_RQUOTA = false;
  Enable_UDP = false;
  Protocols = {protocols};
  Dbus_Name_Prefix = cfsconf{port};
}}
NFS_KRB5 {{ Active_krb5 = false; }}
NFSv4 {{
  Graceless = true;
  Lease_Lifetime = 10;
  Only_Numeric_Owners = true;
  RecoveryRoot = {recov};
  Minor_Versions = 0, 1, 2;
}}
EXPORT {{
  Export_Id = 1;
  Path = {export};
  Pseudo = /export;
  Access_Type = {access};
  Squash = {squash};
  SecType = sys;
  Protocols = {protocols};
  Transports = TCP;
  FSAL {{ Name = VFS; }}
}}
LOG {{ Default_Log_Level = EVENT; }}
"#,
        recov = recov.display(),
        export = export.display(),
    );
    let conf_path = dir.join("ganesha.conf");
    std::fs::write(&conf_path, conf).ctx(|| format!("write {conf_path:?}"))?;
    let log = dir.join("ganesha.log");
    let (o, e) = log_file(&dir.join("stdout"))?;
    let mut child = Command::new("ganesha.nfsd")
        .arg("-F")
        .arg("-f")
        .arg(&conf_path)
        .arg("-L")
        .arg(&log)
        .arg("-p")
        .arg(dir.join("ganesha.pid"))
        .args(["-N", "NIV_EVENT"])
        .stdin(Stdio::null())
        .stdout(o)
        .stderr(e)
        .spawn()
        .ctx(|| "spawn ganesha.nfsd".into())?;
    if let Err(err) = wait_listening(port, &mut child, &log, "ganesha") {
        procs::stop(&mut child, Duration::from_secs(5));
        if let Some(mut r) = rpcbind {
            procs::stop(&mut r, Duration::from_secs(5));
        }
        return Err(err);
    }
    Ok(Running {
        spec: spec.clone(),
        port,
        mnt_port: Some(mnt_port),
        export_v4: "/export".into(),
        export_v3: export.display().to_string(),
        version: ganesha_version(),
        child: Some(child),
        rpcbind,
        state_dir: Some(dir),
        log: Some(log),
    })
}

/// CFS_BIN, else the newest of target/{release,debug}/cfs.
pub fn cfs_binary() -> Result<PathBuf> {
    if let Some(b) = std::env::var_os("CFS_BIN") {
        let b = PathBuf::from(b);
        return if b.is_file() {
            Ok(b)
        } else {
            Err(Error::NoCfsBinary(b))
        };
    }
    let t = paths::target_dir();
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = ["release", "debug"]
        .iter()
        .map(|p| t.join(p).join("cfs"))
        .filter_map(|p| {
            let m = std::fs::metadata(&p).ok()?.modified().ok()?;
            Some((m, p))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, p)| p)
        .ok_or_else(|| Error::NoCfsBinary(t.join("{debug,release}/cfs")))
}

fn start_cfs() -> Result<Running> {
    let bin = cfs_binary()?;
    let dir = state_dir("cfs")?;
    let data = dir.join("data");
    std::fs::create_dir_all(&data).ctx(|| format!("create {data:?}"))?;
    let port = free_port()?;
    let log = dir.join("cfs.log");
    let (o, e) = log_file(&log)?;
    let mut child = Command::new(&bin)
        .arg("server")
        .arg("--data")
        .arg(&data)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(o)
        .stderr(e)
        .spawn()
        .ctx(|| format!("spawn {bin:?}"))?;
    if let Err(err) = wait_listening(port, &mut child, &log, "cfs server") {
        procs::stop(&mut child, Duration::from_secs(5));
        return Err(err);
    }
    let version = Command::new(&bin)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    Ok(Running {
        spec: ServerSpec::Cfs,
        port,
        mnt_port: None,
        export_v4: "/".into(),
        export_v3: "/".into(),
        version: if version.is_empty() {
            bin.display().to_string()
        } else {
            version
        },
        child: Some(child),
        rpcbind: None,
        state_dir: Some(dir),
        log: Some(log),
    })
}
