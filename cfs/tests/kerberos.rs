//! Kerberos end to end: a throwaway MIT realm (krb5kdc on loopback), `cfs server` processes
//! with a service keytab, and `cfs` file commands authenticating from a user's ticket cache.
mod common;
#[path = "../../krb/tests/common/kdc.rs"]
mod kdc;

use common::{cfs_env, Out, Server};
use kdc::{Kdc, REALM};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

struct Realm {
    _kdc: Kdc,
    keytab: PathBuf,
    /// alice maps to root (0:0), bob to 1234:1234: ticket caches.
    alice: PathBuf,
    bob: PathBuf,
}

/// One realm for the whole binary. Its variables go into this process's environment once, so
/// every `cfs` process the tests start inherits them.
fn realm() -> &'static Realm {
    static R: OnceLock<Realm> = OnceLock::new();
    R.get_or_init(|| {
        let kdc = kdc::realm_for_tests(&["alice", "bob"]);
        Realm {
            keytab: kdc.path("server.keytab"),
            alice: kdc.path("alice.cc"),
            bob: kdc.path("bob.cc"),
            _kdc: kdc,
        }
    })
}

/// `[kerberos]` with alice mapped to root and bob to 1234 (neither is a local user here),
/// then the exports.
fn config(exports: &str) -> String {
    let r = realm();
    format!(
        "[kerberos]\nkeytab = \"{}\"\n[kerberos.principals]\n\"alice@{REALM}\" = \"0:0\"\n\
         \"bob@{REALM}\" = \"1234:1234\"\n{exports}",
        r.keytab.display()
    )
}

fn bob(dir: &Path, addr: &str, cmd: &str, sec: &str, args: &[&str]) -> Out {
    let cc = format!("FILE:{}", realm().bob.display());
    as_with(dir, addr, cmd, sec, args, &cc)
}

/// `cfs CMD --server ADDR --sec SEC ARGS...` as alice (her ticket cache).
fn alice(dir: &Path, addr: &str, cmd: &str, sec: &str, args: &[&str]) -> Out {
    let cc = format!("FILE:{}", realm().alice.display());
    as_with(dir, addr, cmd, sec, args, &cc)
}

fn as_with(dir: &Path, addr: &str, cmd: &str, sec: &str, args: &[&str], cc: &str) -> Out {
    let mut a = vec![
        cmd,
        "--server",
        addr,
        "--sec",
        sec,
        "--sec-host",
        "localhost",
    ];
    a.extend_from_slice(args);
    cfs_env(dir, &a, &[("KRB5CCNAME", cc)])
}

fn ok(o: &Out, what: &str) {
    assert!(o.ok(), "{what}: exit {:?}\n{}", o.code, o.stderr);
}

#[test]
fn each_flavor_writes_and_reads_back_as_the_mapped_user() {
    let t = tempfile::tempdir().unwrap();
    let s = Server::start(
        t.path(),
        Some(&config(
            "[[export]]\npath = \"/\"\nsec = [\"krb5p\", \"krb5i\", \"krb5\", \"sys\"]\n",
        )),
    );
    let addr = s.server_arg();
    let body = common::random_bytes(3 << 20, 15);
    let local = t.path().join("in.bin");
    std::fs::write(&local, &body).unwrap();
    let local = local.to_str().unwrap();
    for sec in ["krb5", "krb5i", "krb5p"] {
        let name = format!("/{sec}.bin");
        ok(&alice(t.path(), &addr, "put", sec, &[local, &name]), "put");
        let back = t.path().join(format!("{sec}.out"));
        ok(
            &alice(
                t.path(),
                &addr,
                "get",
                sec,
                &[&name, back.to_str().unwrap()],
            ),
            "get",
        );
        assert!(std::fs::read(&back).unwrap() == body, "{sec}: bytes differ");
        // bob is uid 1234: he may read the file but not write in root's directory.
        let st = bob(t.path(), &addr, "stat", sec, &[&name]);
        ok(&st, "stat");
        let o = bob(
            t.path(),
            &addr,
            "put",
            sec,
            &[local, &format!("/bob-{sec}")],
        );
        assert!(
            o.stderr.contains("NFS4ERR_ACCESS"),
            "{sec}: bob runs as 1234, not root: {}",
            o.stderr
        );
    }
}

#[test]
fn a_user_without_a_ticket_gets_permission_denied() {
    let t = tempfile::tempdir().unwrap();
    let s = Server::start(
        t.path(),
        Some(&config("[[export]]\npath = \"/\"\nsec = [\"krb5\"]\n")),
    );
    let addr = s.server_arg();
    let empty = format!("FILE:{}", t.path().join("no-such-cache").display());
    let o = as_with(t.path(), &addr, "ls", "krb5", &["/"], &empty);
    assert!(!o.ok());
    assert!(
        o.stderr.contains("Permission denied"),
        "stderr: {}",
        o.stderr
    );
    // And sys is refused by this krb5-only export.
    let o = alice(t.path(), &addr, "ls", "sys", &["/"]);
    assert!(!o.ok(), "{}", o.text());
    ok(
        &alice(t.path(), &addr, "ls", "krb5", &["/"]),
        "with a ticket",
    );
}

#[test]
fn a_krb5p_only_export_refuses_sys_and_krb5() {
    let t = tempfile::tempdir().unwrap();
    // The export directories exist first (made through a "/" export, as root over AUTH_SYS).
    let mut s = Server::start(t.path(), Some("[[export]]\npath = \"/\"\n"));
    let addr = s.server_arg();
    ok(
        &alice(t.path(), &addr, "mkdir", "sys", &["/open", "/secret"]),
        "mkdir",
    );
    s.kill();
    std::fs::write(
        s.config.as_ref().unwrap(),
        config(
            "[[export]]\npath = \"/open\"\nsec = [\"sys\", \"krb5\"]\n\
             [[export]]\npath = \"/secret\"\nsec = [\"krb5p\"]\n",
        ),
    )
    .unwrap();
    s.restart();
    let secret = |sec: &str, cmd: &str, args: &[&str]| {
        let mut a = vec!["--export", "/secret"];
        a.extend_from_slice(args);
        alice(t.path(), &addr, cmd, sec, &a)
    };
    ok(&secret("krb5p", "mkdir", &["/d"]), "krb5p mkdir");
    for sec in ["sys", "krb5", "krb5i"] {
        let o = secret(sec, "ls", &["/"]);
        assert!(!o.ok(), "{sec} listed a krb5p-only export: {}", o.text());
        assert!(o.stderr.contains("WRONGSEC"), "{sec}: {}", o.stderr);
        let o = secret(sec, "mkdir", &["/e"]);
        assert!(!o.ok(), "{sec} made a directory in a krb5p-only export");
    }
    let ls = secret("krb5p", "ls", &["/"]);
    ok(&ls, "krb5p ls");
    assert_eq!(ls.text().trim(), "d", "nothing but krb5p's own directory");
    // The other export still takes sys.
    ok(
        &alice(
            t.path(),
            &addr,
            "mkdir",
            "sys",
            &["--export", "/open", "/x"],
        ),
        "sys on the sys export",
    );
}

/// A TCP proxy that records every byte in both directions.
struct Recorder {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<u8>>>,
    _rt: tokio::runtime::Runtime,
}

fn recorder(upstream: SocketAddr) -> Recorder {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let l = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = l.local_addr().unwrap();
    let rec = seen.clone();
    rt.spawn(async move {
        while let Ok((down, _)) = l.accept().await {
            let Ok(up) = tokio::net::TcpStream::connect(upstream).await else {
                continue;
            };
            let (dr, dw) = down.into_split();
            let (ur, uw) = up.into_split();
            tokio::spawn(pump(dr, uw, rec.clone()));
            tokio::spawn(pump(ur, dw, rec.clone()));
        }
    });
    Recorder {
        addr,
        seen,
        _rt: rt,
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    seen: Arc<Mutex<Vec<u8>>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        seen.lock().unwrap().extend_from_slice(&buf[..n]);
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

impl Recorder {
    fn saw(&self, marker: &[u8]) -> bool {
        self.seen
            .lock()
            .unwrap()
            .windows(marker.len())
            .any(|w| w == marker)
    }
    fn bytes(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
    fn clear(&self) {
        self.seen.lock().unwrap().clear();
    }
}

/// Writes a file holding `marker` and reads it back through a recording proxy.
fn put_and_get_marker(dir: &Path, via: &Recorder, sec: &str, marker: &[u8], name: &str) {
    let mut body = common::random_bytes(256 << 10, 7);
    body.extend_from_slice(marker);
    body.extend_from_slice(&common::random_bytes(64 << 10, 8));
    let local = dir.join(format!("{name}.in"));
    std::fs::write(&local, &body).unwrap();
    let addr = via.addr.to_string();
    ok(
        &alice(dir, &addr, "put", sec, &[local.to_str().unwrap(), name]),
        "put",
    );
    let back = dir.join(format!("{name}.out"));
    ok(
        &alice(dir, &addr, "get", sec, &[name, back.to_str().unwrap()]),
        "get",
    );
    assert!(std::fs::read(&back).unwrap() == body, "{sec}: bytes differ");
}

#[test]
fn krb5p_traffic_carries_no_plaintext_of_a_file_and_sys_traffic_does() {
    let t = tempfile::tempdir().unwrap();
    let s = Server::start(
        t.path(),
        Some(&config(
            "[[export]]\npath = \"/\"\nsec = [\"krb5p\", \"sys\"]\n",
        )),
    );
    let proxy = recorder(s.addr);
    let marker = b"CFS-MARKER-0f3a9c51-written-in-the-clear?";
    put_and_get_marker(t.path(), &proxy, "krb5p", marker, "/p.bin");
    assert!(proxy.bytes() > 320 << 10, "the file went through the proxy");
    assert!(
        !proxy.saw(marker),
        "krb5p: the marker crossed the wire readable"
    );
    proxy.clear();
    put_and_get_marker(t.path(), &proxy, "sys", marker, "/s.bin");
    assert!(proxy.saw(marker), "sys: the capture should show the marker");
}

/// With data servers: a krb5p client gets no layout, so nothing it reads or writes travels
/// between it and a data server (their advertised addresses are recording proxies); a sys
/// client's bytes do, readable.
#[test]
fn in_a_cluster_krb5p_sends_no_bytes_to_data_servers_and_sys_does() {
    let t = tempfile::tempdir().unwrap();
    let secret = t.path().join("secret");
    std::fs::write(&secret, "a cluster secret of enough characters").unwrap();
    let mds_dir = t.path().join("mds");
    std::fs::create_dir_all(&mds_dir).unwrap();
    let mds = Server::start(
        &mds_dir,
        Some(&format!(
            "roles = [\"mds\"]\n[cluster]\nsecret_file = \"{}\"\n{}",
            secret.display(),
            config("[[export]]\npath = \"/\"\nsec = [\"krb5p\", \"sys\"]\n")
        )),
    );
    // Each DS listens on a port of its own; clients are told a proxy in front of it.
    let mut dss = Vec::new();
    let mut proxies = Vec::new();
    for i in 0..2 {
        let d = t.path().join(format!("ds{i}"));
        std::fs::create_dir_all(&d).unwrap();
        let port = common::free_port();
        let target: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let proxy = recorder(target);
        let cfgtext = format!(
            "roles = [\"ds\"]\n[cluster]\nsecret_file = \"{}\"\nmds = \"{}\"\nds_listen = \"{}\"\nadvertise = [\"{}\"]\nfailure_domain = \"d{i}\"\n",
            secret.display(),
            mds.addr,
            target,
            proxy.addr,
        );
        dss.push(start_ds(&d, &cfgtext, target));
        proxies.push(proxy);
    }
    wait_for_data_servers(t.path(), &mds, 2);
    let mds_proxy = recorder(mds.addr);
    let marker = b"CFS-MARKER-7b1e22d0-on-a-data-server?";
    put_and_get_marker(t.path(), &mds_proxy, "krb5p", marker, "/p.bin");
    let to_ds: usize = proxies.iter().map(Recorder::bytes).sum();
    assert_eq!(to_ds, 0, "krb5p: client traffic reached a data server");
    assert!(
        !mds_proxy.saw(marker),
        "krb5p: the marker crossed to the MDS readable"
    );
    put_and_get_marker(t.path(), &mds_proxy, "sys", marker, "/s.bin");
    assert!(
        proxies.iter().any(|p| p.saw(marker)),
        "sys: the client wrote to the data servers directly, in the clear"
    );
    drop(dss);
}

/// A `cfs server` in the ds role: `Server::start` passes `--listen`, which a DS-only process
/// does not use, so this waits on the DS port itself.
fn start_ds(dir: &Path, cfgtext: &str, listen: SocketAddr) -> common::KillOnDrop {
    let cfgp = dir.join("ds.toml");
    std::fs::write(&cfgp, cfgtext).unwrap();
    let log = std::fs::File::create(dir.join("ds.log")).unwrap();
    let child = std::process::Command::new(common::BIN)
        .args(["server", "--data"])
        .arg(dir.join("data"))
        .arg("--config")
        .arg(&cfgp)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let guard = common::KillOnDrop(child);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(listen).is_err() {
        assert!(std::time::Instant::now() < deadline, "DS did not listen");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    guard
}

fn wait_for_data_servers(dir: &Path, mds: &Server, n: usize) {
    let cfgp = mds.config.clone().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let server = mds.server_arg();
        let o = common::cfs(
            dir,
            &[
                "admin",
                "status",
                "--server",
                &server,
                "--config",
                cfgp.to_str().unwrap(),
                "--json",
            ],
        );
        if o.ok() && o.text().matches("\"state\":\"up\"").count() >= n {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "data servers not up: {}{}",
            o.text(),
            o.stderr
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
