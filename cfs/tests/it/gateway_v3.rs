//! The NFSv3 gateway against real `cfs server` processes: every procedure and its v3 errors,
//! handles that survive a gateway restart and are the same on two gateways, a kill -9 of the
//! gateway in the middle of unstable writes (the verifier changes, the resend keeps every
//! byte), export rules applied at the gateway, and NLM locks that conflict with each other
//! and with an NFSv4.1 client's.
use crate::common;

use common::v3::*;
use common::{free_port, Server, BIN};
use proto::nfs3::*;
use proto::nlm::*;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The embedded default (MDS + gateway in one process) with the gateway on a free port.
fn single(dir: &Path, extra: &str) -> (Server, SocketAddr) {
    let gw: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let s = Server::start(
        dir,
        Some(&format!(
            "{extra}\n[gateway]\nlisten = \"{gw}\"\nrpcbind = \"off\"\n"
        )),
    );
    (s, gw)
}

/// A gateway-only process (`roles = ["gateway-v3"]`) in front of `mds`.
struct Gw {
    child: Option<Child>,
    addr: SocketAddr,
    conf: std::path::PathBuf,
    dir: std::path::PathBuf,
    n: u32,
}

impl Gw {
    fn start(dir: &Path, name: &str, mds: SocketAddr, exports: &str) -> Gw {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let conf = dir.join(format!("{name}.toml"));
        std::fs::write(
            &conf,
            format!("roles = [\"gateway-v3\"]\n{exports}\n[gateway]\nlisten = \"{addr}\"\nmds = \"{mds}\"\nrpcbind = \"off\"\n"),
        )
        .unwrap();
        let mut g = Gw {
            child: None,
            addr,
            conf,
            dir: dir.to_path_buf(),
            n: 0,
        };
        g.restart();
        g
    }

    fn restart(&mut self) {
        self.n += 1;
        let log = std::fs::File::create(self.dir.join(format!("gw-{}.log", self.n))).unwrap();
        let mut child = Command::new(BIN)
            .arg("server")
            .arg("--config")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn gateway");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_err()
        {
            if let Ok(Some(st)) = child.try_wait() {
                panic!("gateway exited ({st}); see {}", self.dir.display());
            }
            assert!(Instant::now() < deadline, "gateway did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Gw {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn status<T: std::fmt::Debug>(r: Result<T, u32>) -> u32 {
    match r {
        Ok(_) => 0,
        Err(e) => e,
    }
}

#[test]
fn every_procedure_answers_as_rfc_1813_says() {
    let dir = tempfile::tempdir().unwrap();
    let (_s, gw) = single(dir.path(), "");
    rt().block_on(async {
        let c = V3::connect(gw).await;
        let root = c.root("/").await;
        assert_eq!(c.getattr(&root).await.unwrap().ftype, Ftype3::Dir);
        // MOUNT of a path that is not there, and NULL.
        assert!(matches!(c.mnt("/nope").await, Mountres3::Err(2)));
        assert!(matches!(c.nfs(Nfs3Args::Null).await, Nfs3Res::Null));

        // CREATE: the directory's wcc on both sides, GUARDED refuses an existing name.
        let ok = c
            .create(
                &root,
                "f",
                Createhow3::Guarded(Sattr3 {
                    mode: Some(0o640),
                    ..Default::default()
                }),
            )
            .await
            .unwrap();
        let before = ok.dir_wcc.before.expect("pre-op attributes");
        let after = ok.dir_wcc.after.expect("post-op attributes");
        assert!(after.mtime >= before.mtime && after.nlink >= 2);
        assert_eq!(ok.obj_attributes.unwrap().mode, 0o640);
        let f = ok.obj.unwrap();
        assert_eq!(
            status(
                c.create(&root, "f", Createhow3::Guarded(Sattr3::default()))
                    .await
            ),
            Nfsstat3::Exist.code()
        );

        // EXCLUSIVE: a retransmission (same verifier) succeeds with the same file, another
        // verifier gets EXIST.
        let x1 = c
            .create(&root, "x", Createhow3::Exclusive([7; 8]))
            .await
            .unwrap();
        let x2 = c
            .create(&root, "x", Createhow3::Exclusive([7; 8]))
            .await
            .unwrap();
        assert_eq!(x1.obj, x2.obj);
        assert_eq!(
            status(c.create(&root, "x", Createhow3::Exclusive([8; 8])).await),
            Nfsstat3::Exist.code()
        );

        // WRITE UNSTABLE then COMMIT: same verifier; FILE_SYNC is stable at once.
        let w = c
            .write(&f, 0, b"hello world", StableHow::Unstable)
            .await
            .unwrap();
        assert_eq!(w.count, 11);
        assert_eq!(w.file_wcc.after.unwrap().size, 11);
        let v = c.commit(&f).await.unwrap();
        assert_eq!(v, w.verf, "no restart: the COMMIT verifier is the WRITE's");
        let w2 = c.write(&f, 11, b"!", StableHow::FileSync).await.unwrap();
        assert_eq!(w2.committed, StableHow::FileSync);
        assert_eq!(c.read_all(&f).await, b"hello world!");
        let (d, eof) = c.read(&f, 6, 100).await.unwrap();
        assert_eq!((d.as_slice(), eof), (b"world!".as_slice(), true));

        // SETATTR: size, and a guard that does not match is NOT_SYNC.
        let set = |guard| {
            Nfs3Args::Setattr(Setattr3Args {
                object: f.clone(),
                new_attributes: Sattr3 {
                    size: Some(5),
                    ..Default::default()
                },
                guard,
            })
        };
        match c
            .nfs(set(Some(Nfstime3 {
                seconds: 1,
                nseconds: 1,
            })))
            .await
        {
            Nfs3Res::Setattr(Setattr3Res::Fail(e, _)) => assert_eq!(e, Nfsstat3::NotSync.code()),
            o => panic!("{o:?}"),
        }
        let ctime = c.getattr(&f).await.unwrap().ctime;
        match c.nfs(set(Some(ctime))).await {
            Nfs3Res::Setattr(Setattr3Res::Ok(b)) => assert_eq!(b.obj_wcc.after.unwrap().size, 5),
            o => panic!("{o:?}"),
        }
        assert_eq!(c.read_all(&f).await, b"hello");

        // MKDIR, SYMLINK + READLINK, MKNOD (fifo; a regular file is BADTYPE), LINK.
        let mk = c
            .nfs(Nfs3Args::Mkdir(Mkdir3Args {
                r#where: dirop(&root, "d"),
                attributes: Sattr3 {
                    mode: Some(0o755),
                    ..Default::default()
                },
            }))
            .await;
        let d = match mk {
            Nfs3Res::Mkdir(Create3Res::Ok(ok)) => ok.obj.unwrap(),
            o => panic!("{o:?}"),
        };
        match c
            .nfs(Nfs3Args::Mkdir(Mkdir3Args {
                r#where: dirop(&root, "d"),
                attributes: Sattr3::default(),
            }))
            .await
        {
            Nfs3Res::Mkdir(Create3Res::Fail(e, _)) => assert_eq!(e, Nfsstat3::Exist.code()),
            o => panic!("{o:?}"),
        }
        let sl = match c
            .nfs(Nfs3Args::Symlink(Symlink3Args {
                r#where: dirop(&d, "ln"),
                symlink: Symlinkdata3 {
                    symlink_attributes: Sattr3::default(),
                    symlink_data: name("../f"),
                },
            }))
            .await
        {
            Nfs3Res::Symlink(Create3Res::Ok(ok)) => ok.obj.unwrap(),
            o => panic!("{o:?}"),
        };
        match c
            .nfs(Nfs3Args::Readlink(Readlink3Args {
                symlink: sl.clone(),
            }))
            .await
        {
            Nfs3Res::Readlink(Readlink3Res::Ok(ok)) => assert_eq!(ok.data, name("../f")),
            o => panic!("{o:?}"),
        }
        match c
            .nfs(Nfs3Args::Readlink(Readlink3Args { symlink: f.clone() }))
            .await
        {
            Nfs3Res::Readlink(Readlink3Res::Fail(e, _)) => assert_eq!(e, Nfsstat3::Inval.code()),
            o => panic!("{o:?}"),
        }
        match c
            .nfs(Nfs3Args::Mknod(Mknod3Args {
                r#where: dirop(&d, "p"),
                what: Mknoddata3::Fifo(Sattr3 {
                    mode: Some(0o600),
                    ..Default::default()
                }),
            }))
            .await
        {
            Nfs3Res::Mknod(Create3Res::Ok(ok)) => {
                assert_eq!(ok.obj_attributes.unwrap().ftype, Ftype3::Fifo)
            }
            o => panic!("{o:?}"),
        }
        match c
            .nfs(Nfs3Args::Mknod(Mknod3Args {
                r#where: dirop(&d, "r"),
                what: Mknoddata3::Other(1),
            }))
            .await
        {
            Nfs3Res::Mknod(Create3Res::Fail(e, _)) => assert_eq!(e, Nfsstat3::Badtype.code()),
            o => panic!("{o:?}"),
        }
        match c
            .nfs(Nfs3Args::Link(Link3Args {
                file: f.clone(),
                link: dirop(&d, "hard"),
            }))
            .await
        {
            Nfs3Res::Link(Link3Res::Ok(b)) => {
                assert_eq!(b.file_attributes.unwrap().nlink, 2);
                assert!(b.linkdir_wcc.before.is_some() && b.linkdir_wcc.after.is_some());
            }
            o => panic!("{o:?}"),
        }
        assert_eq!(
            c.lookup(&d, "hard").await.unwrap(),
            f,
            "one file, one handle"
        );

        // REMOVE of a directory is ISDIR, RMDIR of a file NOTDIR, of a full directory
        // NOTEMPTY, of nothing NOENT.
        let rm = |dir: &NfsFh3, n: &str, rmdir: bool| {
            let a = Remove3Args {
                object: dirop(dir, n),
            };
            if rmdir {
                Nfs3Args::Rmdir(a)
            } else {
                Nfs3Args::Remove(a)
            }
        };
        for (dir, n, rmdir, want) in [
            (&root, "d", false, Nfsstat3::Isdir),
            (&root, "f", true, Nfsstat3::Notdir),
            (&root, "d", true, Nfsstat3::Notempty),
            (&root, "none", false, Nfsstat3::Noent),
        ] {
            match c.nfs(rm(dir, n, rmdir)).await {
                Nfs3Res::Remove(r) | Nfs3Res::Rmdir(r) => {
                    assert_eq!(r.status(), want.code(), "{n} rmdir={rmdir}")
                }
                o => panic!("{o:?}"),
            }
        }

        // RENAME over an existing file; LOOKUP "." and "..".
        match c
            .nfs(Nfs3Args::Rename(Rename3Args {
                from: dirop(&root, "x"),
                to: dirop(&d, "hard"),
            }))
            .await
        {
            Nfs3Res::Rename(Rename3Res::Ok(b)) => {
                assert!(b.fromdir_wcc.after.is_some() && b.todir_wcc.after.is_some())
            }
            o => panic!("{o:?}"),
        }
        assert_eq!(c.lookup(&d, "hard").await.unwrap(), x1.obj.unwrap());
        assert_eq!(status(c.lookup(&root, "x").await), Nfsstat3::Noent.code());
        assert_eq!(c.lookup(&d, "..").await.unwrap(), root);
        assert_eq!(
            c.lookup(&root, "..").await.unwrap(),
            root,
            "never above the export"
        );
        assert_eq!(c.lookup(&d, ".").await.unwrap(), d);
        assert_eq!(c.getattr(&f).await.unwrap().nlink, 1);

        // READ of a directory is ISDIR (or INVAL), WRITE too.
        assert!(c.read(&d, 0, 10).await.is_err());

        // FSSTAT, FSINFO, PATHCONF: real sizes.
        match c
            .nfs(Nfs3Args::Fsstat(Fsroot3Args {
                fsroot: root.clone(),
            }))
            .await
        {
            Nfs3Res::Fsstat(Fsstat3Res::Ok(s)) => {
                assert!(s.tbytes > 0 && s.fbytes <= s.tbytes && s.abytes <= s.fbytes);
                assert!(s.tfiles > 0);
            }
            o => panic!("{o:?}"),
        }
        match c
            .nfs(Nfs3Args::Fsinfo(Fsroot3Args {
                fsroot: root.clone(),
            }))
            .await
        {
            Nfs3Res::Fsinfo(Fsinfo3Res::Ok(i)) => {
                assert_eq!((i.rtmax, i.wtmax), (1 << 20, 1 << 20));
                assert!(i.maxfilesize > 1 << 40);
                assert_eq!(
                    i.properties & (FSF3_LINK | FSF3_SYMLINK),
                    FSF3_LINK | FSF3_SYMLINK
                );
            }
            o => panic!("{o:?}"),
        }
        match c
            .nfs(Nfs3Args::Pathconf(Pathconf3Args {
                object: root.clone(),
            }))
            .await
        {
            Nfs3Res::Pathconf(Pathconf3Res::Ok(p)) => {
                assert_eq!((p.name_max, p.no_trunc), (255, true))
            }
            o => panic!("{o:?}"),
        }

        // ACCESS as a user who may only read.
        let mut u = V3::connect(gw).await;
        u.as_user(1000, 1000);
        match u
            .nfs(Nfs3Args::Access(Access3Args {
                object: f.clone(),
                access: 0x3f,
            }))
            .await
        {
            Nfs3Res::Access(Access3Res::Ok(ok)) => assert_eq!(
                ok.access & (ACCESS3_READ | ACCESS3_MODIFY),
                0,
                "mode 640, other user"
            ),
            o => panic!("{o:?}"),
        }
        assert_eq!(status(u.read(&f, 0, 5).await), Nfsstat3::Acces.code());
        assert_eq!(
            status(u.write(&f, 0, b"x", StableHow::FileSync).await),
            Nfsstat3::Acces.code()
        );
        // Its own file stays writable to it whatever the mode (knfsd's owner override). Root's
        // directory is 0755: the user may not create there, until it is 0777.
        assert_eq!(
            status(
                u.create(&root, "mine", Createhow3::Unchecked(Sattr3::default()))
                    .await
            ),
            Nfsstat3::Acces.code()
        );
        match c
            .nfs(Nfs3Args::Setattr(Setattr3Args {
                object: root.clone(),
                new_attributes: Sattr3 {
                    mode: Some(0o777),
                    ..Default::default()
                },
                guard: None,
            }))
            .await
        {
            Nfs3Res::Setattr(r) => assert_eq!(r.status(), 0),
            o => panic!("{o:?}"),
        }
        let mine = u
            .create(
                &root,
                "mine",
                Createhow3::Unchecked(Sattr3 {
                    mode: Some(0o444),
                    ..Default::default()
                }),
            )
            .await
            .unwrap();
        let mine_fh = mine.obj.unwrap();
        assert_eq!(
            mine.obj_attributes.unwrap().uid,
            1000,
            "created as the caller"
        );
        u.write(&mine_fh, 0, b"ok", StableHow::FileSync)
            .await
            .unwrap();

        // A forged handle is BADHANDLE, one altered in its MAC STALE or BADHANDLE.
        assert_eq!(
            status(c.getattr(&NfsFh3::from(vec![1; 16])).await),
            Nfsstat3::Badhandle.code()
        );
        let mut bad = f.clone();
        bad.data.0[39] ^= 1;
        assert_eq!(status(c.getattr(&bad).await), Nfsstat3::Badhandle.code());
    });
}

#[test]
fn readdirplus_pages_with_stable_cookies_and_the_handles_lookup_gives() {
    let dir = tempfile::tempdir().unwrap();
    let (_s, gw) = single(dir.path(), "");
    rt().block_on(async {
        let c = V3::connect(gw).await;
        let root = c.root("/").await;
        let d = match c
            .nfs(Nfs3Args::Mkdir(Mkdir3Args {
                r#where: dirop(&root, "big"),
                attributes: Sattr3::default(),
            }))
            .await
        {
            Nfs3Res::Mkdir(Create3Res::Ok(ok)) => ok.obj.unwrap(),
            o => panic!("{o:?}"),
        };
        let n = 300;
        for i in 0..n {
            c.new_file(&d, &format!("file-{i:04}")).await;
        }
        // Small pages: many round trips, each resumed from the last cookie.
        let mut seen = std::collections::BTreeMap::new();
        let (mut cookie, mut verf, mut pages) = (0u64, [0u8; 8], 0);
        loop {
            let r = c
                .nfs(Nfs3Args::Readdirplus(Readdirplus3Args {
                    dir: d.clone(),
                    cookie,
                    cookieverf: verf,
                    dircount: 1024,
                    maxcount: 4096,
                }))
                .await;
            let ok = match r {
                Nfs3Res::Readdirplus(Readdirplus3Res::Ok(ok)) => ok,
                o => panic!("{o:?}"),
            };
            pages += 1;
            verf = ok.cookieverf;
            for e in &ok.reply.entries {
                let nm = String::from_utf8(e.name.0.clone()).unwrap();
                assert!(
                    seen.insert(nm.clone(), (e.fileid, e.name_handle.clone()))
                        .is_none(),
                    "{nm} listed twice"
                );
                cookie = e.cookie;
                // Removing entries already listed must not disturb the rest of the listing.
                if nm == "file-0010" {
                    match c
                        .nfs(Nfs3Args::Remove(Remove3Args {
                            object: dirop(&d, "file-0005"),
                        }))
                        .await
                    {
                        Nfs3Res::Remove(r) => assert_eq!(r.status(), 0),
                        o => panic!("{o:?}"),
                    }
                }
            }
            if ok.reply.eof {
                break;
            }
            assert!(!ok.reply.entries.is_empty());
        }
        assert!(pages > 5, "pages: {pages}");
        assert_eq!(seen.len(), n + 2, "every file once, and . and ..");
        assert!(seen.contains_key(".") && seen.contains_key(".."));
        for i in [0, 150, 299] {
            let nm = format!("file-{i:04}");
            let (fileid, fh) = seen[&nm].clone();
            let fh = fh.expect("READDIRPLUS hands out handles");
            assert_eq!(fh, c.lookup(&d, &nm).await.unwrap());
            assert_eq!(c.getattr(&fh).await.unwrap().fileid, fileid);
        }
        // Plain READDIR with a page too small for one entry is TOOSMALL.
        match c
            .nfs(Nfs3Args::Readdir(Readdir3Args {
                dir: d.clone(),
                cookie: 0,
                cookieverf: [0; 8],
                count: 64,
            }))
            .await
        {
            Nfs3Res::Readdir(r) => assert_eq!(r.status(), Nfsstat3::Toosmall.code()),
            o => panic!("{o:?}"),
        }
    });
}

#[test]
fn handles_are_the_same_on_two_gateways_and_survive_a_gateway_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mds = Server::start(dir.path(), Some("roles = [\"mds\"]\n"));
    let mut a = Gw::start(dir.path(), "a", mds.addr, "");
    let b = Gw::start(dir.path(), "b", mds.addr, "");
    rt().block_on(async {
        let ca = V3::connect(a.addr).await;
        let cb = V3::connect(b.addr).await;
        let ra = ca.root("/").await;
        assert_eq!(ra, cb.root("/").await);
        let f = ca.new_file(&ra, "shared").await;
        ca.write(&f, 0, b"from a", StableHow::FileSync)
            .await
            .unwrap();
        assert_eq!(cb.lookup(&ra, "shared").await.unwrap(), f);
        assert_eq!(cb.read_all(&f).await, b"from a");
        a.kill9();
        a.restart();
        let ca = V3::connect(a.addr).await;
        // No MOUNT again: the old handle is still good.
        assert_eq!(ca.read_all(&f).await, b"from a");
        assert_eq!(ca.lookup(&ra, "shared").await.unwrap(), f);
    });
}

#[test]
fn a_gateway_killed_mid_write_changes_its_verifier_and_the_resend_keeps_every_byte() {
    let dir = tempfile::tempdir().unwrap();
    let mds = Server::start(dir.path(), Some("roles = [\"mds\"]\n"));
    let mut g = Gw::start(dir.path(), "gw", mds.addr, "");
    let data: Vec<u8> = (0..(6u32 << 20))
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let chunk = 1 << 20;
    rt().block_on(async {
        let c = V3::connect(g.addr).await;
        let root = c.root("/").await;
        let f = c.new_file(&root, "big").await;
        // What a v3 client does: UNSTABLE writes, kept until a COMMIT with their verifier.
        let mut verfs = Vec::new();
        for (i, part) in data.chunks(chunk).enumerate() {
            let w = c
                .write(&f, (i * chunk) as u64, part, StableHow::Unstable)
                .await
                .unwrap();
            assert_eq!(w.committed, StableHow::Unstable);
            verfs.push(w.verf);
        }
        g.kill9();
        g.restart();
        let c = V3::connect(g.addr).await;
        let v = c.commit(&f).await.unwrap();
        assert!(
            verfs.iter().all(|w| *w != v),
            "the verifier changed with the restart"
        );
        // So the client sends everything again, and this time the COMMIT vouches for it.
        let mut again = Vec::new();
        for (i, part) in data.chunks(chunk).enumerate() {
            again.push(
                c.write(&f, (i * chunk) as u64, part, StableHow::Unstable)
                    .await
                    .unwrap()
                    .verf,
            );
        }
        let v2 = c.commit(&f).await.unwrap();
        assert!(again.iter().all(|w| *w == v2));
        assert_eq!(c.read_all(&f).await, data);
    });
}

#[test]
fn export_rules_apply_at_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let exports = "[[export]]\npath = \"/rw\"\nclients = [\"127.0.0.1/32\"]\nroot_squash = true\n[[export]]\npath = \"/ro\"\naccess = \"ro\"\n";
    // The exports' directories first, while "/" is exported; then the MDS restarts with the
    // two exports only.
    let mut mds = Server::start(dir.path(), Some("roles = [\"mds\"]\n"));
    for d in ["/rw", "/ro"] {
        let out = common::cfs(dir.path(), &["mkdir", "--server", &mds.server_arg(), d]);
        assert!(out.ok(), "{}", out.stderr);
    }
    let out = common::cfs(
        dir.path(),
        &[
            "put",
            "--server",
            &mds.server_arg(),
            "/etc/hostname",
            "/ro/file",
        ],
    );
    assert!(out.ok(), "{}", out.stderr);
    rt().block_on(async {
        let v4 = client::Client::connect(client::ClientConfig::new(mds.addr))
            .await
            .unwrap();
        let fh = v4.lookup_path("/rw").await.unwrap();
        v4.setattr(&fh, &client::SetAttrs::mode(0o777), None)
            .await
            .unwrap();
        v4.shutdown().await.unwrap();
    });
    mds.kill();
    std::fs::write(
        dir.path().join("cfs.toml"),
        format!("roles = [\"mds\"]\n{exports}"),
    )
    .unwrap();
    mds.restart();
    let g = Gw::start(dir.path(), "gw", mds.addr, exports);
    rt().block_on(async {
        let c = V3::connect(g.addr).await;
        assert!(
            matches!(c.mnt("/").await, Mountres3::Err(2)),
            "no export holds /"
        );
        let rw = c.root("/rw").await;
        // Root is squashed: what it creates belongs to nobody.
        let ok = c
            .create(&rw, "r", Createhow3::Unchecked(Sattr3::default()))
            .await
            .unwrap();
        assert_eq!(ok.obj_attributes.unwrap().uid, 65534);
        let ro = c.root("/ro").await;
        assert_eq!(
            status(
                c.create(&ro, "x", Createhow3::Unchecked(Sattr3::default()))
                    .await
            ),
            Nfsstat3::Rofs.code()
        );
        // Another address may not use /rw: no MOUNT, and its handles are stale there.
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let other = V3::from_stream(s.connect(g.addr).await.unwrap()).await;
        assert!(matches!(other.mnt("/rw").await, Mountres3::Err(13)));
        assert_eq!(status(other.getattr(&rw).await), Nfsstat3::Stale.code());
        assert!(
            other.getattr(&ro).await.is_ok(),
            "/ro is open to any address"
        );
    });
}

#[test]
fn nlm_locks_conflict_with_each_other_and_with_nfs41_locks() {
    let dir = tempfile::tempdir().unwrap();
    let (s, gw) = single(dir.path(), "");
    rt().block_on(async {
        let c = V3::connect(gw).await;
        let root = c.root("/").await;
        let f = c.new_file(&root, "locked").await;
        let a = nlm_lock("hosta", 1, &f, 0, 10);
        let b = nlm_lock("hostb", 2, &f, 5, 10);
        assert_eq!(c.nlm_lock(&a, true, false).await, Nlm4Stats::Granted);
        assert_eq!(c.nlm_lock(&b, true, false).await, Nlm4Stats::Denied);
        assert_eq!(c.nlm_lock(&b, true, true).await, Nlm4Stats::Blocked);
        match c.nlm_test(&b, true).await {
            Nlm4TestRply::Denied(h) => {
                assert_eq!((h.svid, h.exclusive, h.l_offset, h.l_len), (1, true, 0, 10))
            }
            o => panic!("{o:?}"),
        }
        // Shared locks share.
        let a2 = nlm_lock("hosta", 1, &f, 100, 0);
        let b2 = nlm_lock("hostb", 2, &f, 200, 5);
        assert_eq!(c.nlm_lock(&a2, false, false).await, Nlm4Stats::Granted);
        assert_eq!(c.nlm_lock(&b2, false, false).await, Nlm4Stats::Granted);

        // An NFSv4.1 client on the same file conflicts both ways.
        let v4 = client::Client::connect(client::ClientConfig::new(s.addr))
            .await
            .unwrap();
        let of = v4
            .open_path("/locked", proto::nfs4::OPEN4_SHARE_ACCESS_BOTH, None)
            .await
            .unwrap();
        let e = v4
            .lock(&of, client::LockKind::Write, 0, 1, false)
            .await
            .unwrap_err();
        assert!(e.is_status(proto::nfs4::Nfsstat4::Denied), "{e}");
        v4.lock(&of, client::LockKind::Write, 50, 10, false)
            .await
            .unwrap();
        assert_eq!(
            c.nlm_lock(&nlm_lock("hostb", 2, &f, 55, 1), false, false)
                .await,
            Nlm4Stats::Denied
        );
        match c.nlm_test(&nlm_lock("hostb", 2, &f, 55, 1), false).await {
            Nlm4TestRply::Denied(h) => assert_eq!((h.l_offset, h.l_len), (50, 10)),
            o => panic!("{o:?}"),
        }

        // Released: the waiter's next try gets it.
        assert_eq!(c.nlm_unlock(&a).await, Nlm4Stats::Granted);
        assert_eq!(c.nlm_lock(&b, true, true).await, Nlm4Stats::Granted);
        // A host that restarted (SM_NOTIFY through NSM) loses its locks.
        let notify = NlmArgs::FreeAll(Nlm4Notify {
            name: name("hostb"),
            state: 3,
        });
        c.nlm(notify).await;
        v4.lock(&of, client::LockKind::Write, 0, 20, false)
            .await
            .unwrap();
        v4.close(&of).await.unwrap();
    });
}

/// Snapshots through the gateway (issue 48, plan §4.6): a v3 client finds `.snapshot` by
/// LOOKUP in the root (the gateway passes the 48-byte snapshot handles through), the
/// snapshot's file reads the bytes from before a later overwrite, on a fsid of its own (each
/// snapshot a v3 mount point) with the live file's fileid, and every change inside the
/// snapshot answers NFS3ERR_ROFS; the live tree still takes them.
#[test]
fn a_snapshot_through_the_gateway_reads_its_old_bytes_and_refuses_changes() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let (_s, gw) = single(dir, &common::admin_config(dir, ""));
    let rt = rt();
    let c = rt.block_on(V3::connect(gw));
    let root = rt.block_on(c.root("/"));
    let (f, sub) = rt.block_on(async {
        let f = c.new_file(&root, "f").await;
        c.write(&f, 0, b"the old bytes", StableHow::FileSync)
            .await
            .unwrap();
        let sub = match c
            .nfs(Nfs3Args::Mkdir(Mkdir3Args {
                r#where: dirop(&root, "sub"),
                attributes: Sattr3::default(),
            }))
            .await
        {
            Nfs3Res::Mkdir(Create3Res::Ok(ok)) => ok.obj.unwrap(),
            o => panic!("{o:?}"),
        };
        (f, sub)
    });
    // No snapshot yet: `.snapshot` is a name like any other.
    assert_eq!(
        rt.block_on(c.lookup(&root, ".snapshot")),
        Err(Nfsstat3::Noent.code())
    );
    common::snapshot_root(dir, "s1");

    rt.block_on(async {
        c.write(&f, 0, b"NEW", StableHow::FileSync).await.unwrap();
        let snaps = c
            .lookup(&root, ".snapshot")
            .await
            .expect("LOOKUP .snapshot");
        let s1 = c.lookup(&snaps, "s1").await.expect("LOOKUP s1");
        let sf = c.lookup(&s1, "f").await.expect("LOOKUP f in s1");
        assert_eq!(sf.data.len(), 48, "a snapshot handle");
        assert_eq!(c.read_all(&sf).await, b"the old bytes");
        assert_eq!(c.read_all(&f).await, b"NEW old bytes");
        let (live, old) = (c.getattr(&f).await.unwrap(), c.getattr(&sf).await.unwrap());
        assert_eq!(old.size, 13);
        assert_eq!(old.fileid, live.fileid, "one file, one fileid");
        assert_ne!(
            old.fsid, live.fsid,
            "a snapshot is a file system of its own"
        );
        let ssub = c.lookup(&s1, "sub").await.expect("LOOKUP sub in s1");

        let rofs = Nfsstat3::Rofs.code();
        let changes = [
            (
                "WRITE",
                Nfs3Args::Write(Write3Args {
                    file: sf.clone(),
                    offset: 0,
                    count: 1,
                    stable: StableHow::FileSync,
                    data: proto::xdr::Opaque(b"x".to_vec()),
                }),
            ),
            (
                "SETATTR",
                Nfs3Args::Setattr(Setattr3Args {
                    object: sf.clone(),
                    new_attributes: Sattr3 {
                        size: Some(1),
                        ..Default::default()
                    },
                    guard: None,
                }),
            ),
            (
                "CREATE",
                Nfs3Args::Create(Create3Args {
                    r#where: dirop(&s1, "g"),
                    how: Createhow3::Unchecked(Sattr3::default()),
                }),
            ),
            (
                "MKDIR",
                Nfs3Args::Mkdir(Mkdir3Args {
                    r#where: dirop(&s1, "d"),
                    attributes: Sattr3::default(),
                }),
            ),
            (
                "SYMLINK",
                Nfs3Args::Symlink(Symlink3Args {
                    r#where: dirop(&s1, "l"),
                    symlink: Symlinkdata3 {
                        symlink_attributes: Sattr3::default(),
                        symlink_data: name("f"),
                    },
                }),
            ),
            (
                "REMOVE",
                Nfs3Args::Remove(Remove3Args {
                    object: dirop(&s1, "f"),
                }),
            ),
            (
                "RMDIR",
                Nfs3Args::Rmdir(Remove3Args {
                    object: dirop(&s1, "sub"),
                }),
            ),
            (
                "RENAME",
                Nfs3Args::Rename(Rename3Args {
                    from: dirop(&s1, "f"),
                    to: dirop(&ssub, "f2"),
                }),
            ),
            (
                "LINK",
                Nfs3Args::Link(Link3Args {
                    file: sf.clone(),
                    link: dirop(&s1, "hard"),
                }),
            ),
            (
                "COMMIT",
                Nfs3Args::Commit(Commit3Args {
                    file: sf.clone(),
                    offset: 0,
                    count: 0,
                }),
            ),
        ];
        for (what, args) in changes {
            let got = c.nfs(args).await.status();
            assert_eq!(got, rofs, "{what} inside the snapshot");
        }
        assert_eq!(c.read_all(&sf).await, b"the old bytes", "unchanged");
        assert_eq!(c.lookup(&s1, "g").await, Err(Nfsstat3::Noent.code()));
        // The live tree still changes.
        c.new_file(&sub, "g").await;
        assert_eq!(c.lookup(&ssub, "g").await, Err(Nfsstat3::Noent.code()));
    });
}

/// A snapshot's handle, as a v3 client holds it, outlives the gateway that gave it: after a
/// kill -9 and restart of a gateway-only process the same 48-byte handle still reads the
/// snapshot's bytes (the handle is the MDS's own, MACed with the file system's key) and still
/// answers NFS3ERR_ROFS to a write.
#[test]
fn a_snapshot_handle_survives_a_gateway_restart() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let mds = Server::start(
        dir,
        Some(&format!(
            "roles = [\"mds\"]\n{}",
            common::admin_config(dir, "")
        )),
    );
    let mut gw = Gw::start(dir, "gw", mds.addr, "");
    let rt = rt();
    let c = rt.block_on(V3::connect(gw.addr));
    let root = rt.block_on(c.root("/"));
    let f = rt.block_on(async {
        let f = c.new_file(&root, "f").await;
        c.write(&f, 0, b"kept", StableHow::FileSync).await.unwrap();
        f
    });
    common::snapshot_root(dir, "s1");
    let sf = rt.block_on(async {
        c.write(&f, 0, b"gone", StableHow::FileSync).await.unwrap();
        let snaps = c.lookup(&root, ".snapshot").await.expect(".snapshot");
        let s1 = c.lookup(&snaps, "s1").await.expect("s1");
        c.lookup(&s1, "f").await.expect("f in s1")
    });
    drop(c);
    gw.kill9();
    gw.restart();
    rt.block_on(async {
        let c = V3::connect(gw.addr).await;
        // No MOUNT, no LOOKUP: the handle from before the restart.
        assert_eq!(c.read_all(&sf).await, b"kept");
        let w = c.write(&sf, 0, b"x", StableHow::FileSync).await;
        assert_eq!(w.map(|_| ()), Err(Nfsstat3::Rofs.code()));
        assert_eq!(c.read_all(&f).await, b"gone");
    });
}
