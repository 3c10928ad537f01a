//! `cfs admin snapshot restore` on real processes (issue 48, plan step 11): `cfs cluster up`
//! with three MDS nodes and three data servers. A tree written, snapshotted, changed; restored
//! to a new path and then in place through the CLI: the bytes, the hard link and the symlink
//! come back, the restored files' objects on the data servers are hard links of the
//! snapshot's image chunk files (shared, not copied), and a write to a restored file leaves
//! the snapshot's bytes as they were. Resuming a restore cut short is tested on one node in
//! `mds`'s `snapshots::a_restore_brings_the_tree_back_...`.
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
