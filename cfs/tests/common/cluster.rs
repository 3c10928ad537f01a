//! A real cluster for tests: `cfs cluster up --ds 3` (one MDS and three data servers,
//! separate processes on 127.0.0.1), with the control-program status, kill -9 and restart of a
//! role, and clients of the Rust library.
#![allow(dead_code)]
use super::{cfs, BIN};
use client::{Client, ClientConfig};
use proto::cluster::StatusResOk;
use proto::xdr::Xdr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port P with P..=P+3 free (MDS on P, DS i on P+i).
pub fn free_port_block() -> u16 {
    super::free_ports(4)
}

/// `cfs cluster up` in the foreground; SIGTERM (it stops its children) on drop, then SIGKILL
/// of anything left, by PID.
pub struct Cluster {
    pub child: Option<Child>,
    pub dir: PathBuf,
    pub addr: SocketAddr,
    pub rt: tokio::runtime::Runtime,
    /// Data servers it was started with.
    pub ds: usize,
    /// MDS nodes it was started with.
    pub mds: usize,
    /// The `cfs cluster up` arguments and environment it was started with (`up_again`).
    args: Vec<String>,
    env: Vec<(String, String)>,
}

pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

impl Cluster {
    pub fn start(dir: &Path) -> Cluster {
        Self::start_with(dir, &[])
    }

    /// `extra`: more `cfs cluster up` arguments (e.g. a short lease).
    pub fn start_with(dir: &Path, extra: &[&str]) -> Cluster {
        Self::start_sized(dir, 3, extra)
    }

    /// A cluster of `ds` data servers.
    pub fn start_sized(dir: &Path, ds: usize, extra: &[&str]) -> Cluster {
        Self::start_nodes(dir, 1, ds, extra)
    }

    /// `mds` MDS nodes (1, or 3 and more: `mds1`.. on port P.., `self.addr` the first) and
    /// `ds` data servers.
    pub fn start_nodes(dir: &Path, mds: usize, ds: usize, extra: &[&str]) -> Cluster {
        Self::start_nodes_env(dir, mds, ds, extra, &[])
    }

    /// `start_nodes` with variables added to the environment every node inherits.
    pub fn start_nodes_env(
        dir: &Path,
        mds: usize,
        ds: usize,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Cluster {
        let roles = u16::try_from(ds + mds).expect("a few nodes");
        let port = super::free_ports(roles.max(4));
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let mut args: Vec<String> = vec![
            "cluster".into(),
            "up".into(),
            "--mds".into(),
            mds.to_string(),
            "--ds".into(),
            ds.to_string(),
            "--dir".into(),
            dir.join("cluster").to_string_lossy().into_owned(),
            "--port".into(),
            port.to_string(),
            // The admin listeners (MDS, then each DS) on ports of their own, not port + 1000,
            // which may be another test's.
            "--admin-port".into(),
            super::free_ports(roles.max(4)).to_string(),
        ];
        // With several MDS nodes, their client addresses too (else port + 100 and up).
        if mds > 1 {
            args.push("--client-port".into());
            args.push(super::free_ports(u16::try_from(mds).expect("a few nodes")).to_string());
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .expect("runtime");
        let mut c = Cluster {
            child: None,
            dir: dir.to_path_buf(),
            addr,
            rt,
            ds,
            mds,
            args,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        c.up_again();
        c
    }

    /// Runs `cfs cluster up` (again, once every node of it is gone) with the arguments it was
    /// started with: the same ports, directory and nodes. Returns once every data server is up
    /// and `cluster up` said so.
    pub fn up_again(&mut self) {
        assert!(self.child.is_none(), "cfs cluster up still runs");
        let dir = self.dir.clone();
        let log = std::fs::File::create(dir.join("cluster.log")).expect("log");
        let child = Command::new(BIN)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env(
                "CFS_LOG",
                "info,client=debug,openraft=warn,openraft::replication=off,openraft::engine::handler::replication_handler=error",
            )
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn cfs cluster up");
        self.child = Some(child);
        let ds = self.ds;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = self.status() {
                if self.up(&st) == ds {
                    break;
                }
            }
            if let Some(ch) = self.child.as_mut() {
                if let Ok(Some(st)) = ch.try_wait() {
                    panic!("cfs cluster up exited ({st}):\n{}", self.log_tail());
                }
            }
            assert!(
                Instant::now() < deadline,
                "{ds} data servers not up in 60 s:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        // `cluster up` stops every node if one dies before it has seen them all up itself:
        // wait for its banner before a test kills any.
        while !std::fs::read_to_string(dir.join("cluster.log"))
            .unwrap_or_default()
            .contains("cfs cluster up: ")
        {
            assert!(
                Instant::now() < deadline,
                "cfs cluster up never said it was up:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// kill -9 of `cfs cluster up` and then of every node it started, each by its PID, every
    /// one gone before this returns: the whole site lost at once.
    pub fn kill9_all(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let pids = std::fs::read_to_string(self.dir.join("cluster").join("pids"))
            .expect("DIR/pids written by cfs cluster up");
        for role in pids.lines().filter_map(|l| l.split_whitespace().next()) {
            self.kill9(role);
        }
    }

    pub fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(self.dir.join("cluster.log")).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    pub fn up(&self, st: &StatusResOk) -> usize {
        st.data_servers
            .iter()
            .filter(|d| d.state == proto::cluster::DS_STATE_UP)
            .count()
    }

    /// The MDS's DS table and counters (what `cfs admin status` prints), asked over the
    /// cluster control program.
    pub fn status(&self) -> Option<StatusResOk> {
        self.status_of(self.addr)
    }

    /// `status` of the MDS node at `addr` (`cfs admin status`'s call; bounded, as a node the
    /// test isolated in a namespace may not answer the connect).
    pub fn status_of(&self, addr: SocketAddr) -> Option<StatusResOk> {
        let text = std::fs::read_to_string(self.dir.join("cluster").join("secret")).ok()?;
        let secret = layout::ClusterSecret::from_passphrase(&text).ok()?;
        self.rt.block_on(async move {
            tokio::time::timeout(Duration::from_secs(7), cfs::admin::status(addr, &secret))
                .await
                .ok()?
                .ok()
        })
    }

    /// `cfs admin status` as a user sees it (printed on failure, for the record).
    pub fn admin_status(&self) -> String {
        let o = cfs(
            &self.dir,
            &[
                "admin",
                "status",
                "--server",
                &self.addr.to_string(),
                "--config",
                &self.dir.join("cluster").join("mds.toml").to_string_lossy(),
            ],
        );
        format!("{}{}", o.text(), o.stderr)
    }

    /// Files the MDS knows to be short of a mirror (its repair queue), from `cfs admin status
    /// --json` over the admin listener.
    pub fn degraded_files(&self) -> Option<u64> {
        let out = Command::new(BIN)
            .args(["admin", "status", "--json", "--config"])
            .arg(self.dir.join("cluster").join("mds.toml"))
            .output()
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v["mds"]["degraded_files"].as_u64()
    }

    pub fn pid_of(&self, role: &str) -> u32 {
        let text = std::fs::read_to_string(self.dir.join("cluster").join("pids"))
            .expect("DIR/pids written by cfs cluster up");
        text.lines()
            .find_map(|l| {
                let mut it = l.split_whitespace();
                (it.next() == Some(role)).then(|| it.next()?.parse().ok())?
            })
            .unwrap_or_else(|| panic!("no {role} in pids file:\n{text}"))
    }

    /// The role name (`dsI`) of a DS that has written bytes: a mirror of what was written.
    /// Asks through `cfs admin status --json`, so it works from inside the test's runtime.
    pub fn writing_ds(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = Command::new(BIN)
                .args([
                    "admin",
                    "status",
                    "--json",
                    "--server",
                    &self.addr.to_string(),
                    "--config",
                ])
                .arg(self.dir.join("cluster").join("mds.toml"))
                .output()
                .expect("cfs admin status");
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
            let found = v["data_servers"].as_array().and_then(|a| {
                a.iter()
                    .filter(|d| d["write_bytes"].as_u64().unwrap_or(0) > 0)
                    .find_map(|d| {
                        let listen: SocketAddr = d["listen"].as_str()?.parse().ok()?;
                        Some(self.role_at(listen.port()))
                    })
            });
            if let Some(role) = found {
                return role;
            }
            assert!(Instant::now() < deadline, "no DS reports written bytes");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts a killed DS again from the config `cluster up` left, and waits until the MDS
    /// has all of them up. The process is killed by PID when the test ends.
    pub fn restart(&self, role: &str) -> Child {
        let child = Command::new(BIN)
            .args(["server", "--config"])
            .arg(self.dir.join("cluster").join(format!("{role}.toml")))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("restart DS");
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.status().map(|s| self.up(&s)) != Some(self.ds) {
            assert!(Instant::now() < deadline, "restarted {role} not up in 30 s");
            std::thread::sleep(Duration::from_millis(200));
        }
        child
    }

    /// kill -9 of `role`, returning once it has exited (its sockets closed): a restart on the
    /// same port right after the signal could find the port still held ("is busy"), which is
    /// what made `restart_mds` fail now and then.
    pub fn kill9(&self, role: &str) {
        let pid = self.pid_of(role);
        signal(pid, "-KILL");
        let deadline = Instant::now() + Duration::from_secs(10);
        // Gone, or a zombie whose every thread has exited: the files (its listening socket)
        // are released with the last thread, and the leader turns zombie before the others end.
        let exited = || {
            let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |st| {
                st.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z'))
            });
            let threads = std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count());
            zombie && threads <= 1
        };
        while !exited() {
            assert!(
                Instant::now() < deadline,
                "{role} (pid {pid}) still running 10 s after kill -9"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        eprintln!("killed {role} (pid {pid})");
    }

    /// DS write and read bytes summed over the DS table, once the heartbeats have carried at
    /// least `want_write` written and `want_read` read bytes (counters arrive with
    /// heartbeats, so they lag), or after 20 s.
    pub fn ds_bytes(&self, want_write: u64, want_read: u64) -> (u64, u64, StatusResOk) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let st = self.status().expect("status");
            let w: u64 = st.data_servers.iter().map(|d| d.counters.write_bytes).sum();
            let r: u64 = st.data_servers.iter().map(|d| d.counters.read_bytes).sum();
            if (w >= want_write && r >= want_read) || Instant::now() > deadline {
                return (w, r, st);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    pub fn client(&self, pnfs: bool) -> Client {
        self.client_at(self.addr, pnfs)
    }

    /// A client of the MDS node at `addr`.
    pub fn client_at(&self, addr: SocketAddr, pnfs: bool) -> Client {
        let mut cfg = ClientConfig::new(addr);
        cfg.pnfs = pnfs;
        cfg.slots = 64;
        self.rt.block_on(Client::connect(cfg)).expect("connect")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pids = std::fs::read_to_string(self.dir.join("cluster").join("pids")).ok();
        signal(child.id(), "-TERM");
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if !matches!(child.try_wait(), Ok(Some(_))) {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Whatever it left behind, by the PIDs it recorded: only a process that still runs
        // one of this cluster's configs. What the supervisor stopped, it reaped, and a reaped
        // PID may by now be another test's server.
        let ours = self.dir.join("cluster");
        let ours = ours.as_os_str().as_encoded_bytes();
        for l in pids.iter().flat_map(|t| t.lines()) {
            let Some(pid) = l.split_whitespace().nth(1).and_then(|p| p.parse().ok()) else {
                continue;
            };
            let running_ours = std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.windows(ours.len()).any(|w| w == ours));
            if running_ours {
                signal(pid, "-KILL");
            }
        }
    }
}

impl Cluster {
    /// The data directory of role `dsI`.
    pub fn ds_dir(&self, role: &str) -> PathBuf {
        self.dir.join("cluster").join(role)
    }

    /// Chunk files of object `id` on each DS, by role (`objects/<id & 0xff>/<id>/` in its
    /// chunk store).
    pub fn chunk_files(&self, id: u64) -> Vec<(String, usize)> {
        (1..=3)
            .map(|i| {
                let role = format!("ds{i}");
                let dir = self
                    .ds_dir(&role)
                    .join("chunks")
                    .join("objects")
                    .join(format!("{:02x}", id & 0xff))
                    .join(format!("{id:016x}"));
                let n = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
                (role, n)
            })
            .collect()
    }

    /// Starts the MDS again from the config `cluster up` left (after a kill -9) and waits until
    /// it answers STATUS. The process is the caller's to kill.
    /// Killed when dropped, so a test that fails after (or while waiting here) leaves no
    /// server behind.
    pub fn restart_mds(&self) -> super::KillOnDrop {
        let child = Command::new(BIN)
            .args(["server", "--config"])
            .arg(self.dir.join("cluster").join("mds.toml"))
            // The environment the cluster was started with (the bucket's credentials).
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(self.dir.join("mds-restarted.log")).expect("log"),
            ))
            .spawn()
            .expect("restart MDS");
        let child = super::KillOnDrop(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.status().is_none() {
            assert!(Instant::now() < deadline, "MDS not back in 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        child
    }

    /// Starts role `dsI` again without waiting for anything.
    pub fn start_ds(&self, role: &str) -> Child {
        Command::new(BIN)
            .args(["server", "--config"])
            .arg(self.dir.join("cluster").join(format!("{role}.toml")))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("restart DS")
    }

    /// The MDS's config file, as `cluster up` wrote it.
    /// The (first) MDS node's name: `mds`, or `mds1` of several.
    pub fn first_mds(&self) -> &'static str {
        if self.mds > 1 {
            "mds1"
        } else {
            "mds"
        }
    }

    /// The MDS nodes' client addresses (`client_addresses` in their config, several MDS
    /// nodes only), node 1's first: the addresses that move to a live node at a takeover.
    pub fn client_addresses(&self) -> Vec<SocketAddr> {
        let toml = std::fs::read_to_string(self.mds_toml()).expect("mds1.toml");
        let line = toml
            .lines()
            .find(|l| l.starts_with("client_addresses"))
            .expect("client_addresses in mds1.toml");
        line.split('"')
            .filter_map(|item| item.split_once('=')?.1.parse().ok())
            .collect()
    }

    pub fn mds_toml(&self) -> String {
        self.dir
            .join("cluster")
            .join(format!("{}.toml", self.first_mds()))
            .to_string_lossy()
            .into_owned()
    }

    /// The MDS's admin listener (the config's `[admin] listen`, or where it landed with port 0)
    /// and its token (`cfs admin token`).
    /// MDS node 1's `/metrics` page, through its admin listener with the cluster's token.
    pub fn metrics_text(&self) -> String {
        let (admin, token) = self.admin();
        self.rt
            .block_on(cfs::http_client::request(
                admin,
                "GET",
                "/metrics",
                Some(&token),
                None,
                Duration::from_secs(10),
            ))
            .expect("the admin listener answers")
            .text()
    }

    pub fn admin(&self) -> (SocketAddr, String) {
        let toml = std::fs::read_to_string(self.mds_toml()).expect("mds.toml");
        let listen = toml
            .split("[admin]")
            .nth(1)
            .and_then(|s| s.lines().find_map(|l| l.strip_prefix("listen = ")))
            .expect("mds.toml has [admin] listen")
            .trim_matches('"')
            .to_string();
        let addr = if listen.ends_with(":0") {
            std::fs::read_to_string(
                self.dir
                    .join("cluster")
                    .join(self.first_mds())
                    .join("admin.addr"),
            )
            .expect("the MDS's admin address")
            .trim()
            .parse()
            .expect("admin.addr")
        } else {
            listen.parse().expect("admin address")
        };
        let o = cfs(&self.dir, &["admin", "token", "--config", &self.mds_toml()]);
        assert!(o.ok(), "{}", o.stderr);
        (addr, o.text().trim().to_string())
    }

    /// The role name (`dsI`) of the DS with id `ds_id`, from the MDS's table.
    pub fn role_of(&self, ds_id: u64) -> String {
        let st = self.status().expect("status");
        let d = st
            .data_servers
            .iter()
            .find(|d| d.ds_id == ds_id)
            .expect("DS in the table");
        let ua = String::from_utf8_lossy(&d.listen.na_r_addr.0).to_string();
        let port = layout::uaddr::from_uaddr(&ua).expect("uaddr").port();
        self.role_at(port)
    }

    /// The role of the data server listening on `port`: `cfs cluster up` puts data server i
    /// on port + MDS nodes - 1 + i.
    fn role_at(&self, port: u16) -> String {
        let first = usize::from(self.addr.port()) + self.mds;
        format!("ds{}", (usize::from(port) + 1).saturating_sub(first))
    }

    /// The listening address of the DS with id `ds_id`.
    pub fn ds_addr(&self, ds_id: u64) -> SocketAddr {
        let st = self.status().expect("status");
        let d = st
            .data_servers
            .iter()
            .find(|d| d.ds_id == ds_id)
            .expect("DS in the table");
        let ua = String::from_utf8_lossy(&d.listen.na_r_addr.0).to_string();
        layout::uaddr::from_uaddr(&ua).expect("uaddr")
    }
}

/// One mirror of an RW layout: the DS's id and address and the handle for it.
#[derive(Debug, Clone)]
pub struct Mirror {
    pub ds_id: u64,
    pub addr: SocketAddr,
    pub fh: Vec<u8>,
}

/// LAYOUTGET (whole file, `iomode`) by hand over `c`'s session, for the file open as `f`: the
/// layout stateid and the flexfiles layout.
pub fn layoutget(
    cl: &Cluster,
    c: &Client,
    f: &client::OpenFile,
    iomode: proto::nfs4::Layoutiomode4,
) -> (proto::nfs4::Stateid4, proto::nfs4::FfLayout4) {
    use proto::nfs4::*;
    let ops = vec![
        NfsArgop4::Putfh(PutfhArgs {
            object: f.fh.clone(),
        }),
        NfsArgop4::Layoutget(LayoutgetArgs {
            loga_signal_layout_avail: false,
            loga_layout_type: LAYOUT4_FLEX_FILES,
            loga_iomode: iomode,
            loga_offset: 0,
            loga_length: u64::MAX,
            loga_minlength: 0,
            loga_stateid: f.stateid,
            loga_maxcount: 1 << 16,
        }),
    ];
    let res = cl.rt.block_on(c.compound(ops)).expect("LAYOUTGET");
    let NfsResop4::Layoutget(LayoutgetRes::Ok(ok)) = &res[1] else {
        panic!("LAYOUTGET: {res:?}")
    };
    let ff = FfLayout4::from_xdr(ok.logr_layout[0].lo_content.loc_body.as_bytes()).expect("ff");
    (ok.logr_stateid, ff)
}

/// LAYOUTGET (read-write, whole file) by hand over `c`'s session, for the file open as `f`:
/// the layout stateid and every mirror's handle, so a test can write through the layout as a
/// client would, and keep the handles after the file is gone.
pub fn rw_layout(
    cl: &Cluster,
    c: &Client,
    f: &client::OpenFile,
) -> (proto::nfs4::Stateid4, Vec<Mirror>) {
    let (stateid, ff) = layoutget(cl, c, f, proto::nfs4::Layoutiomode4::Rw);
    let mirrors = ff
        .ffl_mirrors
        .iter()
        .map(|m| {
            let ds = &m.ffm_data_servers[0];
            let ds_id = layout::DsId::from_device_id(&ds.ffds_deviceid)
                .expect("device id")
                .0;
            Mirror {
                ds_id,
                addr: cl.ds_addr(ds_id),
                fh: ds.ffds_fh_vers[0].0.as_bytes().to_vec(),
            }
        })
        .collect();
    (stateid, mirrors)
}

/// An NFSv3 WRITE straight to a data server, as a layout holder sends it.
pub async fn ds_write(
    addr: SocketAddr,
    fh: &[u8],
    offset: u64,
    data: &[u8],
) -> Result<(), proto::nfs3_client::Nfs3ClientError> {
    let c = proto::nfs3_client::Nfs3Client::connect(&[addr], Duration::from_secs(2), 0, 0)
        .await
        .expect("connect to DS");
    let r = c
        .write(fh, offset, data, proto::nfs3::StableHow::FileSync)
        .await
        .map(|_| ());
    c.close();
    r
}
