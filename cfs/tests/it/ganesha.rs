//! The client library and the file commands against nfs-ganesha (skipped when ganesha.nfsd
//! is not installed): the library must not depend on cfs's particular answers.
use crate::common;
use client::{Client, ClientConfig, CreateMode, LockKind, Nfsstat4, SetAttrs, StableHow4};
use common::*;
use proto::nfs4::{OPEN4_SHARE_ACCESS_BOTH, OPEN4_SHARE_ACCESS_READ};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Ganesha {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Ganesha {
    fn drop(&mut self) {
        // SIGTERM first so ganesha can tidy up; SIGKILL if it does not go.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_ganesha(dir: &Path) -> Option<Ganesha> {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("ganesha.nfsd").exists()))
        .unwrap_or(false);
    if !found {
        eprintln!("ganesha.nfsd not installed: skipped");
        return None;
    }
    let export = dir.join("export");
    let recov = dir.join("recov");
    std::fs::create_dir_all(&export).unwrap();
    std::fs::create_dir_all(&recov).unwrap();
    let port = free_port();
    let mnt = free_port();
    let conf = format!(
        r#"NFS_CORE_PARAM {{
  Bind_addr = 127.0.0.1; NFS_Port = {port}; MNT_Port = {mnt};
  Enable_NLM = false; Enable_RQUOTA = false; Enable_UDP = false;
  Protocols = 4; Dbus_Name_Prefix = cfstest{port};
}}
NFS_KRB5 {{ Active_krb5 = false; }}
NFSv4 {{
  Graceless = true; Lease_Lifetime = 10; Only_Numeric_Owners = true;
  RecoveryRoot = {recov}; Minor_Versions = 1, 2;
}}
EXPORT {{
  Export_Id = 1; Path = {export}; Pseudo = /export; Access_Type = RW;
  Squash = No_Root_Squash; SecType = sys; Protocols = 4; Transports = TCP;
  FSAL {{ Name = VFS; }}
}}
LOG {{ Default_Log_Level = EVENT; }}
"#,
        recov = recov.display(),
        export = export.display()
    );
    let conf_path = dir.join("ganesha.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let mut child = Command::new("ganesha.nfsd")
        .arg("-F")
        .arg("-f")
        .arg(&conf_path)
        .arg("-L")
        .arg(dir.join("ganesha.log"))
        .arg("-p")
        .arg(dir.join("ganesha.pid"))
        .args(["-N", "NIV_EVENT"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ganesha.nfsd");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if let Ok(Some(st)) = child.try_wait() {
            panic!("ganesha exited early ({st}); see {}", dir.display());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ganesha did not start listening");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(Ganesha { child, addr })
}

#[test]
fn file_commands_and_library_work_against_ganesha() {
    let t = tempfile::tempdir().unwrap();
    let Some(g) = start_ganesha(t.path()) else {
        return;
    };
    let s = g.addr.to_string();
    let base = ["--server", s.as_str(), "--export", "/export"];
    let run = |args: &[&str]| {
        let mut a: Vec<&str> = vec![args[0]];
        a.extend(base);
        a.extend(&args[1..]);
        cfs(t.path(), &a)
    };

    let data = random_bytes((8 << 20) + 777, 42);
    let local = t.path().join("in.bin");
    std::fs::write(&local, &data).unwrap();
    let l = local.to_str().unwrap();
    let o = run(&["mkdir", "-p", "/a/b"]);
    assert!(o.ok(), "{}", o.stderr);
    let o = run(&["put", l, "/a/b/f.bin"]);
    assert!(o.ok(), "{}", o.stderr);
    let o = run(&["put", "--sync", l, "/a/g.bin"]);
    assert!(o.ok(), "{}", o.stderr);
    for p in ["/a/b/f.bin", "/a/g.bin"] {
        let o = run(&["get", p, "-"]);
        assert!(o.ok(), "{}", o.stderr);
        assert_eq!(digest(&o.stdout), digest(&data), "{p}");
    }
    let o = run(&["ls", "/a"]);
    assert_eq!(o.text(), "b\ng.bin\n");
    let o = run(&["stat", "/a/g.bin"]);
    assert!(
        o.text().contains(&format!("Size: {}", data.len())),
        "{}",
        o.text()
    );
    let o = run(&["ls", "/nope"]);
    assert_eq!(
        o.stderr.trim_end(),
        "cfs: /nope: No such file or directory (NFS4ERR_NOENT)"
    );
    let o = run(&["rm", "-r", "/a"]);
    assert!(o.ok(), "{}", o.stderr);
    assert_eq!(run(&["ls", "/"]).text(), "");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(60), async {
            let mut cfg = ClientConfig::new(g.addr);
            cfg.export = "/export".into();
            let c = Client::connect(cfg.clone()).await.unwrap();
            let root = c.root().clone();
            let d = c.mkdir(&root, "lib", 0o755).await.unwrap();
            // Cookies across several READDIR replies.
            for i in 0..300 {
                c.mkdir(&d, &format!("entry-with-a-longish-name-{i:04}"), 0o755)
                    .await
                    .unwrap();
            }
            assert_eq!(c.readdir(&d).await.unwrap().len(), 300);
            let v = CreateMode::Exclusive(*b"verifier", SetAttrs::default());
            let f = c
                .open(&d, "x", OPEN4_SHARE_ACCESS_BOTH, Some(v.clone()))
                .await
                .unwrap();
            let again = c
                .open(&d, "x", OPEN4_SHARE_ACCESS_BOTH, Some(v))
                .await
                .unwrap();
            assert_eq!(f.fh, again.fh);
            c.close(&again).await.unwrap();
            let w = c
                .write(&f, 0, b"ganesha", StableHow4::Unstable4)
                .await
                .unwrap();
            assert_eq!(c.commit(&f.fh, 0, 0).await.unwrap(), w.verifier);
            c.link(&f.fh, &d, "hard").await.unwrap();
            c.rename(&d, "hard", &root, "moved").await.unwrap();
            let sl = c.symlink(&d, "sym", "x").await.unwrap();
            assert_eq!(c.readlink(&sl).await.unwrap(), "x");
            c.setattr(&f.fh, &SetAttrs::mode(0o600), None)
                .await
                .unwrap();
            assert_eq!(c.getattr(&f.fh).await.unwrap().mode, 0o600);

            // A second client: its own owner (a clone of `cfg` would be the same client).
            let mut cfg2 = ClientConfig::new(g.addr);
            cfg2.export = cfg.export.clone();
            let c2 = Client::connect(cfg2).await.unwrap();
            let f2 = c2
                .open(&d, "x", OPEN4_SHARE_ACCESS_READ, None)
                .await
                .unwrap();
            c.lock(&f, LockKind::Write, 0, 10, false).await.unwrap();
            let e = c2.lock(&f2, LockKind::Read, 5, 1, false).await.unwrap_err();
            assert_eq!(e.status(), Some(Nfsstat4::Denied));
            c.unlock(&f, LockKind::Write, 0, 10).await.unwrap();
            c2.lock(&f2, LockKind::Read, 5, 1, false).await.unwrap();
            let (data, _) = c2.read(&f2, 0, 100).await.unwrap();
            assert_eq!(data, b"ganesha");
            c2.close(&f2).await.unwrap();
            c.close(&f).await.unwrap();
            c2.shutdown().await.unwrap();
            c.shutdown().await.unwrap();
        })
        .await
        .expect("timed out")
    });
}
