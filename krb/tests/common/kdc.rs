//! A throwaway Kerberos realm: Debian's MIT krb5-kdc (`krb5kdc`, `kdb5_util`, `kadmin.local`)
//! running from a temporary directory on a loopback port, with principals and keytabs made on
//! demand. Starts in well under a second; the KDC is killed (by its PID) on drop.
//!
//! Shared by the krb crate's tests and cfs's (`#[path]`-included), so there is one copy.
#![allow(dead_code)]
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const REALM: &str = "CFS.TEST";

pub struct Kdc {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Child,
}

fn run(cmd: &mut Command) {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| {
        panic!("{cmd:?}: {e} (apt-get install krb5-kdc krb5-admin-server krb5-user)")
    });
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A free port below the ephemeral range (32768-60999), so the KDC never takes a port some
/// other test's connection was handed.
fn free_low_port() -> u16 {
    let base = 20000 + (std::process::id() % 5000) as u16 * 2;
    for i in 0..2000u16 {
        let p = 20000 + (base - 20000 + i * 7) % 12000;
        let tcp = TcpListener::bind(("127.0.0.1", p));
        let udp = std::net::UdpSocket::bind(("127.0.0.1", p));
        if tcp.is_ok() && udp.is_ok() {
            return p;
        }
    }
    panic!("no free port for the KDC");
}

impl Kdc {
    pub fn start() -> Kdc {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        for attempt in 0..5 {
            let port = free_low_port();
            std::fs::write(
                d.join("krb5.conf"),
                format!(
                    "[libdefaults]\n default_realm = {REALM}\n dns_lookup_kdc = false\n \
                     dns_lookup_realm = false\n dns_canonicalize_hostname = false\n rdns = false\n \
                     udp_preference_limit = 1\n\
                     [realms]\n {REALM} = {{\n  kdc = 127.0.0.1:{port}\n }}\n\
                     [domain_realm]\n localhost = {REALM}\n"
                ),
            )
            .unwrap();
            std::fs::write(
                d.join("kdc.conf"),
                format!(
                    "[kdcdefaults]\n kdc_listen = 127.0.0.1:{port}\n kdc_tcp_listen = 127.0.0.1:{port}\n\
                     [realms]\n {REALM} = {{\n  database_name = {db}\n  \
                     key_stash_file = {stash}\n  acl_file = {acl}\n  \
                     supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal\n \
                     max_life = 10h\n }}\n[logging]\n kdc = FILE:{log}\n",
                    db = d.join("principal").display(),
                    stash = d.join("stash").display(),
                    acl = d.join("kadm5.acl").display(),
                    log = d.join("kdc.log").display(),
                ),
            )
            .unwrap();
            std::fs::write(d.join("kadm5.acl"), "").unwrap();
            if !d.join("principal").exists() {
                run(Command::new("kdb5_util")
                    .args(["create", "-s", "-P", "cfs-test-master", "-r", REALM])
                    .envs(env_of(d)));
            }
            let mut child = Command::new("krb5kdc")
                .args(["-n", "-r", REALM])
                .envs(env_of(d))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("krb5kdc (apt-get install krb5-kdc)");
            let t = Instant::now();
            let mut up = false;
            while t.elapsed() < Duration::from_secs(10) {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    up = true;
                    break;
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if up {
                watchdog(child.id());
                return Kdc { dir, port, child };
            }
            eprintln!("KDC on port {port} did not start (attempt {attempt})");
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("the KDC did not start");
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The variables a process needs to use this realm (the server's keytab and a client's
    /// ticket cache are added per process).
    pub fn env(&self) -> Vec<(String, String)> {
        env_of(self.dir.path())
    }

    fn kadmin(&self, query: &str) {
        run(Command::new("kadmin.local")
            .args(["-r", REALM, "-q", query])
            .envs(self.env()));
    }

    /// Makes `principal` (without realm) with a random key, exported to `keytab`.
    pub fn add_with_keytab(&self, principal: &str, keytab: &Path) {
        self.kadmin(&format!("addprinc -randkey {principal}@{REALM}"));
        self.kadmin(&format!(
            "ktadd -k {} {principal}@{REALM}",
            keytab.display()
        ));
    }

    /// Makes a user principal and puts a ticket for it in `ccache` (from a keytab, as kinit
    /// would from a password).
    pub fn user_with_ticket(&self, user: &str, ccache: &Path) {
        let kt = self.path(&format!("{user}.keytab"));
        self.add_with_keytab(user, &kt);
        self.kinit(user, &kt, ccache);
    }

    pub fn kinit(&self, user: &str, keytab: &Path, ccache: &Path) {
        run(Command::new("kinit")
            .arg("-k")
            .arg("-t")
            .arg(keytab)
            .arg("-c")
            .arg(format!("FILE:{}", ccache.display()))
            .arg(format!("{user}@{REALM}"))
            .envs(self.env()));
    }
}

/// A realm with `nfs/localhost` in `server.keytab` and a ticket cache `<user>.cc` for each of
/// `users`, its variables set in this process's environment, which the processes a test
/// starts inherit (MIT reads them lazily: call this before any GSS-API use).
pub fn realm_for_tests(users: &[&str]) -> Kdc {
    let kdc = Kdc::start();
    kdc.add_with_keytab("nfs/localhost", &kdc.path("server.keytab"));
    for u in users {
        kdc.user_with_ticket(u, &kdc.path(&format!("{u}.cc")));
    }
    for (k, v) in kdc.env() {
        std::env::set_var(k, v);
    }
    kdc
}

/// Kills the KDC (by its PID) once this test process is gone, even if it never runs `Drop`
/// (a KDC kept in a `static` for all the tests of a binary).
fn watchdog(kdc: u32) {
    let me = std::process::id();
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "while kill -0 {me} 2>/dev/null; do sleep 1; done; kill {kdc} 2>/dev/null"
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

fn env_of(d: &Path) -> Vec<(String, String)> {
    vec![
        (
            "KRB5_CONFIG".into(),
            d.join("krb5.conf").display().to_string(),
        ),
        (
            "KRB5_KDC_PROFILE".into(),
            d.join("kdc.conf").display().to_string(),
        ),
        // The acceptor's replay cache, kept out of /var/tmp and apart from other runs.
        ("KRB5RCACHEDIR".into(), d.display().to_string()),
    ]
}

impl Drop for Kdc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
