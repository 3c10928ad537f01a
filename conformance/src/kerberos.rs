//! `run --sec krb5|krb5i|krb5p`: a throwaway MIT realm on the host (Debian's krb5kdc on a
//! loopback port below 32768, which guests reach as 10.0.2.2), a keytab and `[kerberos]` config
//! for the cfs server (`nfs/cfshost`), and for each guest a root overlay: rpc.gssd with its
//! libraries and the kernel's GSS modules (`host/krb-overlay.sh`), krb5.conf, a keytab with
//! `nfs/<guest name>` (root's operations use it, as on a real client), /etc/hosts naming
//! 10.0.2.2 `cfshost`. The server maps the guests' machine principals to root, so the
//! scenarios, which run as root, see the same permissions as with sys.
use crate::error::{Error, IoContext, Result};
use crate::paths;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub const REALM: &str = "CFS.TEST";
/// The name guests give the server (its principal is nfs/cfshost).
pub const SERVER_HOST: &str = "cfshost";
/// The guest users scenarios switch to (`cfshelper as UID GID GROUPS`, posix.sh): each gets
/// a principal `u<UID>`, a ticket cache the guest's rpc.gssd finds (/tmp/krb5cc_UID), and the
/// same ids and groups on the server.
const USERS: [(u32, u32, &str); 2] = [(1001, 1001, ""), (1002, 1002, "2000")];

pub struct Realm {
    /// the mounts' flavor now: `bench --sec sys --sec krb5 ...` switches it between plans
    flavor: Mutex<String>,
    /// the server being started has an NFSv3 gateway (`set_gateway_hop`)
    gateway_hop: std::sync::atomic::AtomicBool,
    dir: PathBuf,
    kdc: Mutex<Option<Child>>,
}

static ACTIVE: OnceLock<Realm> = OnceLock::new();

/// ganesha's share of the realm (`Realm::ganesha_setup`).
pub struct GaneshaKrb {
    pub block: String,
    pub idmap_conf: PathBuf,
}

/// The realm of this run, if `--sec` asked for Kerberos (and the flavor now is not sys).
pub fn active() -> Option<&'static Realm> {
    ACTIVE.get().filter(|r| r.flavor() != "sys")
}

/// Switches the flavor later servers and mounts use (the realm stays up).
pub fn set_flavor(flavor: &str) {
    if let Some(r) = ACTIVE.get() {
        if let Ok(mut f) = r.flavor.lock() {
            *f = flavor.to_string();
        }
    }
}

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .ctx(|| format!("{cmd:?} (apt-get install krb5-kdc krb5-admin-server)"))?;
    if !out.status.success() {
        return Err(Error::Server(format!(
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}

fn free_low_port() -> Result<u16> {
    let base = 21000 + (std::process::id() % 4000) as u16;
    for i in 0..500u16 {
        let p = base + i * 3 % 8000;
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok()
        {
            return Ok(p);
        }
    }
    Err(Error::Server("no free port below 32768 for the KDC".into()))
}

/// Starts the realm for `flavor` (krb5, krb5i or krb5p); once per process.
pub fn start(flavor: &str) -> Result<&'static Realm> {
    if !["krb5", "krb5i", "krb5p"].contains(&flavor) {
        return Err(Error::Usage(format!(
            "--sec {flavor}: expected sys, krb5, krb5i or krb5p"
        )));
    }
    let dir = paths::cache_dir()
        .join("runs")
        .join(format!("realm-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).ctx(|| format!("create {dir:?}"))?;
    let port = free_low_port()?;
    let conf = |kdc: &str| {
        format!(
            "[libdefaults]\n default_realm = {REALM}\n dns_lookup_kdc = false\n \
             dns_lookup_realm = false\n dns_canonicalize_hostname = false\n rdns = false\n \
             udp_preference_limit = 1\n[realms]\n {REALM} = {{\n  kdc = {kdc}:{port}\n }}\n\
             [domain_realm]\n {SERVER_HOST} = {REALM}\n"
        )
    };
    std::fs::write(dir.join("krb5.conf"), conf("127.0.0.1")).ctx(|| "krb5.conf".into())?;
    std::fs::write(dir.join("guest-krb5.conf"), conf("10.0.2.2")).ctx(|| "krb5.conf".into())?;
    std::fs::write(
        dir.join("kdc.conf"),
        format!(
            "[kdcdefaults]\n kdc_listen = 127.0.0.1:{port}\n kdc_tcp_listen = 127.0.0.1:{port}\n\
             [realms]\n {REALM} = {{\n  database_name = {d}/principal\n  key_stash_file = {d}/stash\n  \
             acl_file = {d}/kadm5.acl\n  supported_enctypes = aes256-cts-hmac-sha1-96:normal \
             aes128-cts-hmac-sha1-96:normal\n }}\n[logging]\n kdc = FILE:{d}/kdc.log\n",
            d = dir.display()
        ),
    )
    .ctx(|| "kdc.conf".into())?;
    std::fs::write(dir.join("kadm5.acl"), "").ctx(|| "kadm5.acl".into())?;
    let realm = Realm {
        flavor: Mutex::new(flavor.to_string()),
        gateway_hop: std::sync::atomic::AtomicBool::new(false),
        dir,
        kdc: Mutex::new(None),
    };
    run(Command::new("kdb5_util")
        .args(["create", "-s", "-P", "cfs-conformance", "-r", REALM])
        .envs(realm.env()))?;
    let child = Command::new("krb5kdc")
        .args(["-n", "-r", REALM])
        .envs(realm.env())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ctx(|| "krb5kdc (apt-get install krb5-kdc)".into())?;
    *realm
        .kdc
        .lock()
        .map_err(|_| Error::Server("poisoned".into()))? = Some(child);
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if t.elapsed() > Duration::from_secs(10) {
            realm.stop();
            return Err(Error::Server("the KDC did not start".into()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    realm.add(&format!("nfs/{SERVER_HOST}"), &realm.server_keytab())?;
    let cc = realm.dir.join("users").join("krb").join("cc");
    std::fs::create_dir_all(&cc).ctx(|| format!("create {cc:?}"))?;
    for (uid, _, _) in USERS {
        let kt = realm.dir.join(format!("u{uid}.keytab"));
        realm.add(&format!("u{uid}"), &kt)?;
        run(Command::new("kinit")
            .arg("-k")
            .arg("-t")
            .arg(&kt)
            .arg("-c")
            .arg(format!(
                "FILE:{}",
                cc.join(format!("krb5cc_{uid}")).display()
            ))
            .arg(format!("u{uid}@{REALM}"))
            .envs(realm.env()))?;
    }
    let _ = ACTIVE.set(realm);
    set_flavor(flavor);
    active().ok_or_else(|| Error::Server("realm".into()))
}

impl Realm {
    pub fn flavor(&self) -> String {
        self.flavor
            .lock()
            .map_or_else(|p| p.into_inner().clone(), |f| f.clone())
    }

    /// Variables for the KDC tools and for the cfs server process.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "KRB5_CONFIG".into(),
                self.dir.join("krb5.conf").display().to_string(),
            ),
            (
                "KRB5_KDC_PROFILE".into(),
                self.dir.join("kdc.conf").display().to_string(),
            ),
            ("KRB5RCACHEDIR".into(), self.dir.display().to_string()),
        ]
    }

    pub fn server_keytab(&self) -> PathBuf {
        self.dir.join("server.keytab")
    }

    fn add(&self, principal: &str, keytab: &Path) -> Result<()> {
        let kadmin = |q: String| {
            run(Command::new("kadmin.local")
                .args(["-r", REALM, "-q", &q])
                .envs(self.env()))
        };
        kadmin(format!("addprinc -randkey {principal}@{REALM}"))?;
        kadmin(format!("ktadd -k {} {principal}@{REALM}", keytab.display()))
    }

    /// Whether the next `server_config` is for a server with an NFSv3 gateway: its export
    /// then also takes AUTH_SYS from the gateway's address, 127.0.0.1 (the gateway forwards
    /// each v3 caller's mapped ids over AUTH_SYS: docs/OPERATIONS.md, "NFSv3 for legacy hosts"). Guests reach the
    /// host through qemu's user network, so they come from 127.0.0.1 too: with the gateway
    /// kinds the MDS cannot tell a guest's v4 sys call from the gateway's; the v3 side, which
    /// is what these kinds test, enforces the flavor itself.
    pub fn set_gateway_hop(&self, on: bool) {
        self.gateway_hop
            .store(on, std::sync::atomic::Ordering::SeqCst);
    }

    /// The cfs server's config: the keytab, machine principals as root, one export that
    /// allows only this run's flavor (and the gateway's hop, see `set_gateway_hop`). The
    /// gateway reads the same sections: the same keytab, mapping and flavor for v3 clients.
    pub fn server_config(&self) -> String {
        self.config_text(self.gateway_hop.load(std::sync::atomic::Ordering::SeqCst))
    }

    /// `server_config` for a server with an NFSv3 gateway.
    pub fn gateway_config(&self) -> String {
        self.config_text(true)
    }

    fn config_text(&self, gateway_hop: bool) -> String {
        let users: String = USERS
            .iter()
            .map(|(u, g, gs)| {
                let gs = if gs.is_empty() {
                    String::new()
                } else {
                    format!(":{gs}")
                };
                format!("\"u{u}@{REALM}\" = \"{u}:{g}{gs}\"\n")
            })
            .collect();
        format!(
            "[kerberos]\nkeytab = \"{}\"\nmachine = \"root\"\n[kerberos.principals]\n{users}\
             [[export]]\npath = \"/\"\nsec = [\"{}\"]\n{}",
            self.server_keytab().display(),
            self.flavor(),
            if gateway_hop {
                "gateways = [\"127.0.0.1/32\"]\n"
            } else {
                ""
            }
        )
    }

    /// nfs-ganesha as the baseline with this flavor: its NFS_KRB5 block (the same keytab and
    /// principal as cfs) and an idmapd.conf. ganesha maps `nfs/<host>` principals to root by
    /// itself and users through libnfsidmap (`u1001@CFS.TEST` -> getpwnam("u1001")), so the
    /// scenario users are added to this mount namespace's /etc/passwd and /etc/group (bind
    /// mounts of copies with lines added: the host's files are not touched; only runs inside
    /// the harness's private namespace get here).
    pub fn ganesha_setup(&self, dir: &Path) -> Result<GaneshaKrb> {
        let add = |etc: &str, extra: String| -> Result<()> {
            // In the realm's directory, which lives as long as this process and its namespace
            // (a server's state directory goes with the server): once per namespace, so a
            // second server start neither stacks mounts nor loses the file under one.
            let copy = self
                .dir
                .join(format!("ns-{}", etc.trim_start_matches("/etc/")));
            if !copy.exists() {
                let orig = std::fs::read_to_string(etc).ctx(|| etc.into())?;
                std::fs::write(&copy, format!("{orig}{extra}")).ctx(|| format!("{copy:?}"))?;
                run(Command::new("mount").arg("--bind").arg(&copy).arg(etc))?;
            }
            Ok(())
        };
        let mut pw = String::new();
        let mut gr = String::new();
        for (u, g, gs) in USERS {
            pw.push_str(&format!("u{u}:x:{u}:{g}::/tmp:/bin/sh\n"));
            gr.push_str(&format!("g{g}:x:{g}:\n"));
            for extra in gs.split(',').filter(|x| !x.is_empty()) {
                gr.push_str(&format!("g{extra}:x:{extra}:u{u}\n"));
            }
        }
        add("/etc/passwd", pw)?;
        add("/etc/group", gr)?;
        let idmap_conf = dir.join("idmapd.conf");
        std::fs::write(
            &idmap_conf,
            format!(
                "[General]\nDomain = localdomain\nLocal-Realms = {REALM}\n\
                 [Translation]\nMethod = nsswitch\n"
            ),
        )
        .ctx(|| "idmapd.conf".into())?;
        Ok(GaneshaKrb {
            block: format!(
                "NFS_KRB5 {{\n  PrincipalName = \"nfs@{SERVER_HOST}\";\n  KeytabPath = {};\n  \
                 Active_krb5 = true;\n}}",
                self.server_keytab().display()
            ),
            idmap_conf,
        })
    }

    pub fn mount_option(&self) -> String {
        format!("sec={}", self.flavor())
    }

    /// Root overlays for a guest named `guest` on kernel `kver`.
    pub fn guest_overlay(&self, kver: &str, guest: &str) -> Result<Vec<PathBuf>> {
        let common = paths::cache_dir().join("krb-overlay").join(kver);
        let st = Command::new(paths::host_script("krb-overlay.sh"))
            .arg(kver)
            .arg(&common)
            .env("CFS_CONFORMANCE_CACHE", paths::cache_dir())
            .stdin(Stdio::null())
            .status()
            .ctx(|| "krb-overlay.sh".into())?;
        if !st.success() {
            return Err(Error::Server(format!("krb-overlay.sh {kver} failed")));
        }
        let own = self.dir.join(format!("guest-{guest}"));
        let etc = own.join("etc");
        if !etc.join("krb5.keytab").exists() {
            std::fs::create_dir_all(&etc).ctx(|| format!("create {etc:?}"))?;
            std::fs::copy(self.dir.join("guest-krb5.conf"), etc.join("krb5.conf"))
                .ctx(|| "krb5.conf".into())?;
            let files = [
                (
                    "hosts",
                    format!("127.0.0.1 localhost\n10.0.2.2 {SERVER_HOST}\n10.0.2.15 {guest}\n"),
                ),
                (
                    "nsswitch.conf",
                    "hosts: files\npasswd: files\ngroup: files\n".into(),
                ),
                // rpc.gssd looks the user up before it reads the user's ticket cache.
                (
                    "passwd",
                    USERS
                        .iter()
                        .fold("root:x:0:0:root:/root:/bin/sh\n".into(), |t, (u, g, _)| {
                            format!("{t}u{u}:x:{u}:{g}::/tmp:/bin/sh\n")
                        }),
                ),
                (
                    "group",
                    USERS
                        .iter()
                        .fold("root:x:0:\n".into(), |t: String, (_, g, _)| {
                            format!("{t}g{g}:x:{g}:\n")
                        }),
                ),
            ];
            for (name, text) in files {
                std::fs::write(etc.join(name), text).ctx(|| name.into())?;
            }
            self.add(&format!("nfs/{guest}"), &etc.join("krb5.keytab"))?;
        }
        Ok(vec![common, self.dir.join("users"), own])
    }

    /// Stops the KDC (by its PID) and removes the realm's files (CFS_CONFORMANCE_KEEP=1
    /// keeps them).
    pub fn stop(&self) {
        if let Ok(mut k) = self.kdc.lock() {
            if let Some(mut c) = k.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if std::env::var_os("CFS_CONFORMANCE_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Stops this run's KDC, if any.
pub fn stop() {
    if let Some(r) = ACTIVE.get() {
        r.stop();
    }
}
