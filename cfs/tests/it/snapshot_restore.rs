//! `cfs admin snapshot restore` on real processes (issue 48, plan step 11): `cfs cluster up`
//! with three MDS nodes and three data servers. A tree written, snapshotted, changed; restored
//! to a new path and then in place through the CLI: the bytes, the hard link and the symlink
//! come back, the restored files' objects on the data servers are hard links of the
//! snapshot's image chunk files (shared, not copied), and a write to a restored file leaves
//! the snapshot's bytes as they were. On one node, a restore killed part way (a crash point)
//! is finished by running it again, to a new path and in place.
use crate::common;

use common::cluster::Cluster;
use common::ec::{read_file_with, write_open};
use common::{cfs, random_bytes};
use proto::nfs4::*;

use common::SERIAL;

/// How many of object `id`'s chunk files, over the data servers, have another link.
fn shared_chunks(cl: &Cluster, id: u64) -> (usize, usize) {
    use std::os::unix::fs::MetadataExt;
    let (mut all, mut shared) = (0, 0);
    for role in ["ds1", "ds2", "ds3"] {
        let dir = cl
            .ds_dir(role)
            .join("chunks")
            .join("objects")
            .join(format!("{:02x}", id & 0xff))
            .join(format!("{id:016x}"));
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_file() {
                all += 1;
                if m.nlink() > 1 {
                    shared += 1;
                }
            }
        }
    }
    (all, shared)
}

fn admin(cl: &Cluster, args: &[&str]) -> String {
    let mut all = vec!["admin", "snapshot"];
    all.extend_from_slice(args);
    let toml = cl.mds_toml();
    all.extend_from_slice(&["--config", &toml]);
    let o = cfs(&cl.dir, &all);
    assert!(o.ok(), "cfs {all:?}: {}{}", o.text(), o.stderr);
    o.text()
}

#[test]
fn a_restore_shares_the_snapshots_chunks_on_the_data_servers() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let t = tempfile::tempdir().expect("tempdir");
    let cl = Cluster::start_nodes(t.path(), 3, 3, &["--shards", "4"]);
    let node = |n: u16| std::net::SocketAddr::new(cl.addr.ip(), cl.addr.port() + n - 1);
    let c = cl.client_at(node(2), false);
    let root = cl.rt.block_on(c.lookup_path("/")).expect("root");
    let t_dir = cl
        .rt
        .block_on(c.mkdir(&root, "t", 0o755))
        .expect("mkdir /t");
    let old_a = random_bytes(5 * (1 << 20) + 77, 0x7e51);
    let old_b = random_bytes(300_000, 0x7e52);
    for (p, data) in [("/t/a", &old_a), ("/t/b", &old_b)] {
        let (f, _) = write_open(&cl, &c, p, data);
        cl.rt.block_on(c.close(&f)).expect("close");
    }
    let a_fh = cl.rt.block_on(c.lookup_path("/t/a")).expect("/t/a");
    cl.rt.block_on(c.link(&a_fh, &t_dir, "a2")).expect("link");
    cl.rt
        .block_on(c.symlink(&t_dir, "l", "a"))
        .expect("symlink");

    admin(&cl, &["create", "/t", "--name", "s1"]);
    // Changed after the cut: /t/a overwritten in part, /t/b removed.
    let f = cl
        .rt
        .block_on(c.open_path("/t/a", OPEN4_SHARE_ACCESS_BOTH, None))
        .expect("open /t/a");
    cl.rt
        .block_on(c.write_all(&f, 0, b"changed after the cut", StableHow4::FileSync4))
        .expect("write");
    cl.rt.block_on(c.close(&f)).expect("close");
    cl.rt.block_on(c.remove(&t_dir, "b")).expect("remove /t/b");

    let out = admin(&cl, &["restore", "s1", "--to", "/back"]);
    assert!(
        out.contains("restored to /back")
            && out.contains("2 files")
            && out.contains("1 hard links"),
        "{out}"
    );
    let reader = || cl.client_at(node(1), false);
    assert_eq!(read_file_with(&cl, reader(), "/back/a", old_a.len()), old_a);
    assert_eq!(read_file_with(&cl, reader(), "/back/b", old_b.len()), old_b);
    let st = |p: &str| {
        let fh = cl.rt.block_on(c.lookup_path(p)).expect(p);
        cl.rt.block_on(c.getattr(&fh)).expect("getattr")
    };
    assert_eq!(
        st("/back/a").fileid,
        st("/back/a2").fileid,
        "one file, two names"
    );
    assert_eq!(st("/back/a").nlink, 2);
    let l = cl.rt.block_on(c.lookup_path("/back/l")).expect("/back/l");
    assert_eq!(cl.rt.block_on(c.readlink(&l)).expect("readlink"), "a");
    // Shared on the data servers: every chunk file of the restored files is a link.
    for p in ["/back/a", "/back/b"] {
        let (all, shared) = shared_chunks(&cl, st(p).fileid);
        assert!(
            all >= 2 && shared == all,
            "{p}: {shared} of {all} chunk files shared"
        );
    }

    // A write to the restored file unshares only itself.
    let f = cl
        .rt
        .block_on(c.open_path("/back/a", OPEN4_SHARE_ACCESS_BOTH, None))
        .expect("open /back/a");
    cl.rt
        .block_on(c.write_all(
            &f,
            1 << 20,
            b"restored, then changed",
            StableHow4::FileSync4,
        ))
        .expect("write");
    cl.rt.block_on(c.close(&f)).expect("close");
    assert_eq!(
        read_file_with(&cl, reader(), "/t/.snapshot/s1/a", old_a.len()),
        old_a,
        "the snapshot's bytes stay"
    );

    // In place: /t is the snapshot's tree again, what it held moved aside.
    let out = admin(&cl, &["restore", "s1"]);
    assert!(
        out.contains("restored to /t") && out.contains(".cfs-replaced-"),
        "{out}"
    );
    assert_eq!(read_file_with(&cl, reader(), "/t/a", old_a.len()), old_a);
    assert_eq!(read_file_with(&cl, reader(), "/t/b", old_b.len()), old_b);
    let names: Vec<String> = cl
        .rt
        .block_on(c.readdir(&t_dir))
        .expect("readdir /t")
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert!(
        names.iter().any(|n| n.starts_with(".cfs-replaced-")),
        "{names:?}"
    );
    let aside = names
        .iter()
        .find(|n| n.starts_with(".cfs-replaced-"))
        .cloned()
        .unwrap_or_default();
    let mut changed = old_a.clone();
    changed[..21].copy_from_slice(b"changed after the cut");
    assert_eq!(
        read_file_with(&cl, reader(), &format!("/t/{aside}/a"), old_a.len()),
        changed,
        "what /t held is kept"
    );
}

/// A one-node server whose crash points `fp` arms, with an admin listener.
fn one_node(dir: &std::path::Path, fp: &std::path::Path) -> common::Server {
    let config = format!(
        "data = {:?}\n[admin]\nlisten = \"127.0.0.1:0\"\n",
        dir.join("data").to_string_lossy()
    );
    let fp = fp.to_string_lossy().into_owned();
    common::Server::start_env(dir, Some(&config), &[("CFS_FAILPOINT_FILE", fp.as_str())])
}

/// A restore killed part way (crash point `snap-restore-file`: the server aborts as a kill -9
/// would once the first file is whole) is finished by running the same command again: to a
/// new path, which does not exist until the tree is whole; in place, where the directory
/// keeps its own entries until the re-run. Both end with the snapshot's tree, hard link and
/// symlink included, each file once, and nothing of the cut-short run left in sight.
#[test]
fn a_restore_killed_part_way_is_finished_by_running_it_again() {
    use crate::tier_cache::{put, rt};
    use crate::tier_evict::read_back;
    let dir = tempfile::tempdir().expect("tempdir");
    let fp = dir.path().join("failpoint");
    std::fs::write(&fp, "").expect("failpoint file");
    let mut srv = one_node(dir.path(), &fp);
    let cfg = dir.path().join("cfs.toml").to_string_lossy().into_owned();
    let restore = |args: &[&str]| {
        let mut all = vec!["admin", "snapshot", "restore"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--config", &cfg]);
        cfs(dir.path(), &all)
    };
    let rt = rt();
    let c = rt
        .block_on(client::Client::connect(client::ClientConfig::new(srv.addr)))
        .expect("connect");
    let root = rt.block_on(c.lookup_path("/")).expect("root");
    let t = rt.block_on(c.mkdir(&root, "t", 0o755)).expect("mkdir /t");
    rt.block_on(c.mkdir(&t, "sub", 0o700))
        .expect("mkdir /t/sub");
    let old_a = random_bytes(3 * (1 << 20) + 5, 0x7e61);
    let old_b = random_bytes(300_000, 0x7e62);
    let old_c = random_bytes((1 << 20) + 9, 0x7e63);
    for (p, d) in [("/t/a", &old_a), ("/t/b", &old_b), ("/t/sub/c", &old_c)] {
        put(&rt, srv.addr, p, d);
    }
    let a_fh = rt.block_on(c.lookup_path("/t/a")).expect("/t/a");
    rt.block_on(c.link(&a_fh, &t, "a2")).expect("link");
    rt.block_on(c.symlink(&t, "l", "a")).expect("symlink");
    let _ = rt.block_on(c.shutdown());
    let o = cfs(
        dir.path(),
        &[
            "admin", "snapshot", "create", "/t", "--name", "s1", "--config", &cfg,
        ],
    );
    assert!(o.ok(), "{}", o.stderr);
    let new_a = random_bytes(1000, 0x7e64);
    put(&rt, srv.addr, "/t/a", &new_a);
    put(&rt, srv.addr, "/t/b", b"b after the cut");

    let exited = |srv: &mut common::Server| {
        srv.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))))
    };
    let killed_part_way = |srv: &mut common::Server, args: &[&str]| {
        std::fs::write(&fp, "snap-restore-file\n").expect("arm");
        let o = restore(args);
        assert!(!o.ok(), "the restore was not cut short: {}", o.text());
        common::ec::wait_for(30, "the server killed at snap-restore-file", || exited(srv));
        std::fs::write(&fp, "").expect("disarm");
        srv.child = None;
        srv.restart();
    };
    // The same address across restarts.
    let addr = srv.addr;
    let names = |path: &str| -> Vec<String> {
        let c = rt
            .block_on(client::Client::connect(client::ClientConfig::new(addr)))
            .expect("connect");
        let fh = rt.block_on(c.lookup_path(path)).expect(path);
        let mut n: Vec<String> = rt
            .block_on(c.readdir(&fh))
            .expect("readdir")
            .into_iter()
            .map(|e| e.name)
            .collect();
        n.sort();
        let _ = rt.block_on(c.shutdown());
        n
    };
    let check_tree = |srv: &common::Server, at: &str| {
        assert!(
            read_back(&rt, srv, &format!("{at}/a"), old_a.len()) == old_a,
            "{at}/a"
        );
        assert!(
            read_back(&rt, srv, &format!("{at}/b"), old_b.len()) == old_b,
            "{at}/b"
        );
        assert!(
            read_back(&rt, srv, &format!("{at}/sub/c"), old_c.len()) == old_c,
            "{at}/sub/c"
        );
        let c = rt
            .block_on(client::Client::connect(client::ClientConfig::new(srv.addr)))
            .expect("connect");
        let st = |p: String| {
            let fh = rt.block_on(c.lookup_path(&p)).expect("lookup");
            rt.block_on(c.getattr(&fh)).expect("getattr")
        };
        let (a, a2) = (st(format!("{at}/a")), st(format!("{at}/a2")));
        assert!(
            a.fileid == a2.fileid && a.nlink == 2,
            "{at}: one file, two names"
        );
        let l = rt.block_on(c.lookup_path(&format!("{at}/l"))).expect("l");
        assert_eq!(rt.block_on(c.readlink(&l)).expect("readlink"), "a");
        let _ = rt.block_on(c.shutdown());
    };

    // To a new path: cut short, the path is not there; run again, the tree is.
    killed_part_way(&mut srv, &["s1", "--to", "/back"]);
    assert!(
        !names("/").contains(&"back".to_string()),
        "a restore cut short shows no half tree: {:?}",
        names("/")
    );
    let o = restore(&["s1", "--to", "/back"]);
    assert!(o.ok(), "{}{}", o.text(), o.stderr);
    check_tree(&srv, "/back");
    assert_eq!(names("/back"), ["a", "a2", "b", "l", "sub"]);
    assert!(
        names("/").iter().all(|n| !n.starts_with(".cfs-restore")),
        "{:?}",
        names("/")
    );

    // In place: cut short, /t still holds what it held; run again, the snapshot's tree.
    killed_part_way(&mut srv, &["s1"]);
    assert!(
        read_back(&rt, &srv, "/t/a", new_a.len()) == new_a,
        "/t untouched"
    );
    let o = restore(&["s1"]);
    assert!(o.ok(), "{}{}", o.text(), o.stderr);
    check_tree(&srv, "/t");
    let left = names("/t");
    let replaced: Vec<&String> = left
        .iter()
        .filter(|n| n.starts_with(".cfs-replaced-"))
        .collect();
    assert_eq!(replaced.len(), 1, "{left:?}");
    assert_eq!(left.len(), 6, "the tree and the replaced entries: {left:?}");
    let aside = format!("/t/{}/a", replaced[0]);
    assert!(
        read_back(&rt, &srv, &aside, new_a.len()) == new_a,
        "what /t held is kept aside"
    );
    drop(srv);
}
