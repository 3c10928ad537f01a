//! Snapshots' data images on real processes (issue 48, plan step 6): `cfs cluster up` with three
//! MDS nodes and three data servers. A snapshot taken with `cfs admin snapshot create`, then
//! changes to its files through a pNFS layout (the client writes to the data servers) and
//! through the MDS (WRITE, SETATTR size): each file's image object on the data servers still
//! holds the bytes from before, read straight from the data servers' chunk stores, and a file
//! removed after the snapshot keeps its own. Deleting the snapshot removes the image objects.
//! Reads of the snapshot through NFS (`.snapshot`) are tested where they are served.
use crate::common;

use std::collections::BTreeSet;

use client::SetAttrs;
use common::cluster::Cluster;
use common::ec::{wait_for, write_open};
use common::{cfs, random_bytes};
use proto::nfs4::*;

// Clusters of six processes on a machine that may have two cores: one at a time.
use common::SERIAL;

const DS_ROLES: [&str; 3] = ["ds1", "ds2", "ds3"];

/// Every object id with a directory in `role`'s chunk store.
fn objects(cl: &Cluster, role: &str) -> BTreeSet<u64> {
    let mut out = BTreeSet::new();
    let top = cl.ds_dir(role).join("chunks").join("objects");
    for d in std::fs::read_dir(top).into_iter().flatten().flatten() {
        for o in std::fs::read_dir(d.path()).into_iter().flatten().flatten() {
            if let Some(id) = o
                .file_name()
                .to_str()
                .and_then(|n| u64::from_str_radix(n, 16).ok())
            {
                out.insert(id);
            }
        }
    }
    out
}

/// Objects holding at least one chunk file, on any data server.
fn objects_with_chunks(cl: &Cluster) -> BTreeSet<u64> {
    let mut all = BTreeSet::new();
    for role in DS_ROLES {
        all.extend(objects(cl, role));
    }
    all.into_iter()
        .filter(|id| cl.chunk_files(*id).iter().any(|(_, n)| *n > 0))
        .collect()
}

/// The first `len` bytes of object `id` as each data server holding it stores them (read
/// with the chunk store's own code, which checks every block's sum); a copy that does not
/// read is left out.
fn object_bytes(cl: &Cluster, id: u64, len: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (role, n) in cl.chunk_files(id) {
        if n == 0 {
            continue;
        }
        let store =
            chunkstore::ChunkStore::open(cl.ds_dir(&role).join("chunks")).expect("a chunk store");
        // An object that does not read back (a shard's, shorter than `len`) is no copy.
        if let Ok((b, _)) = store.blocking().read(id, 0, len as u64, len as u64) {
            out.push(b);
        }
    }
    out
}

fn snapshot(cl: &Cluster, args: &[&str]) {
    let mut all = vec!["admin", "snapshot"];
    all.extend_from_slice(args);
    let toml = cl.mds_toml();
    all.extend_from_slice(&["--config", &toml]);
    let o = cfs(&cl.dir, &all);
    assert!(o.ok(), "cfs {all:?}: {}{}", o.text(), o.stderr);
}

/// Writes `data` at `offset` of existing file `path` through client `c` (FILE_SYNC), between
/// an open and a close.
fn write_at(cl: &Cluster, c: &client::Client, path: &str, offset: u64, data: &[u8]) {
    let f = cl
        .rt
        .block_on(c.open_path(path, OPEN4_SHARE_ACCESS_BOTH, None))
        .unwrap_or_else(|e| panic!("open {path}: {e}"));
    cl.rt
        .block_on(c.write_all(&f, offset, data, StableHow4::FileSync4))
        .unwrap_or_else(|e| panic!("write {path}: {e}"));
    cl.rt.block_on(c.close(&f)).expect("close");
}

/// Sets existing file `path`'s size through client `c` (SETATTR with the open's stateid).
fn truncate(cl: &Cluster, c: &client::Client, path: &str, size: u64) {
    let f = cl
        .rt
        .block_on(c.open_path(path, OPEN4_SHARE_ACCESS_BOTH, None))
        .unwrap_or_else(|e| panic!("open {path}: {e}"));
    let attrs = SetAttrs {
        size: Some(size),
        ..Default::default()
    };
    cl.rt
        .block_on(c.setattr(&f.fh, &attrs, Some(f.stateid)))
        .unwrap_or_else(|e| panic!("truncate {path}: {e}"));
    cl.rt.block_on(c.close(&f)).expect("close");
}

/// A snapshot, then three files changed three ways and one removed: the image objects hold
/// the old bytes (each on every data server it is on), the files the new ones, and the
/// removed file's own object its bytes; the snapshot deleted, the image objects go, the
/// removed file's with them.
#[test]
fn a_snapshots_bytes_survive_overwrite_truncate_and_removal() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let t = tempfile::tempdir().expect("tempdir");
    let cl = Cluster::start_nodes(t.path(), 3, 3, &["--shards", "4"]);
    let node = |n: u16| std::net::SocketAddr::new(cl.addr.ip(), cl.addr.port() + n - 1);

    let old_a = random_bytes(5 * (1 << 20) + 4321, 0x5a11);
    let old_b = random_bytes((1 << 20) + 17, 0x5a21);
    let old_c = random_bytes(3 * (1 << 20), 0x5a31);
    let old_d = random_bytes(2 * (1 << 20) + 99, 0x5a51);
    let mds = cl.client_at(node(2), false);
    let mut inos = BTreeSet::new();
    let mut d = 0;
    for (path, data) in [
        ("/a", &old_a),
        ("/b", &old_b),
        ("/c", &old_c),
        ("/d", &old_d),
    ] {
        let (f, ino) = write_open(&cl, &mds, path, data);
        cl.rt.block_on(mds.close(&f)).expect("close");
        if path == "/d" {
            d = ino;
        } else {
            inos.insert(ino);
        }
    }
    let before = objects_with_chunks(&cl);
    assert!(
        before.iter().all(|o| inos.contains(o) || *o == d),
        "only the files' objects: {before:?}"
    );

    snapshot(&cl, &["create", "/", "--name", "s1"]);

    // /d removed through node 2, beside /e, born after the cut and removed with it: the
    // reaper deletes /e's bytes and keeps /d's, on both mirrors, as the snapshot's image.
    let (f, e) = write_open(&cl, &mds, "/e", &old_b);
    cl.rt.block_on(mds.close(&f)).expect("close /e");
    let root = cl.rt.block_on(mds.lookup_path("/")).expect("root");
    for name in ["e", "d"] {
        cl.rt.block_on(mds.remove(&root, name)).expect("remove");
    }
    wait_for(30, "the bytes of /e, in no snapshot, removed", || {
        cl.chunk_files(e).iter().all(|(_, n)| *n == 0)
    });
    std::thread::sleep(std::time::Duration::from_secs(1));
    let copies = object_bytes(&cl, d, old_d.len());
    assert!(
        copies.len() == 2 && copies.iter().all(|b| *b == old_d),
        "a removed file's bytes stay on both mirrors while a snapshot holds them ({} copies)",
        copies.len()
    );

    // /a through a pNFS layout of node 3 (the client writes to the data servers).
    let pnfs = cl.client_at(node(3), true);
    let patch = random_bytes(1 << 20, 0x5a41);
    write_at(&cl, &pnfs, "/a", 1 << 20, &patch);
    // /b through the MDS (node 2's WRITE), /c cut by SETATTR through node 1.
    write_at(&cl, &mds, "/b", 0, b"overwritten");
    truncate(&cl, &cl.client_at(node(1), false), "/c", 10);

    // Three new objects, one per file, each holding that file's bytes at the snapshot on
    // every data server it is on (two mirrors).
    let images: BTreeSet<u64> = objects_with_chunks(&cl)
        .difference(&inos)
        .copied()
        .filter(|o| *o != d)
        .collect();
    eprintln!("files {inos:?}, image objects {images:?}");
    for x in &images {
        eprintln!("object {x}: chunk files {:?}", cl.chunk_files(*x));
    }
    assert_eq!(
        images.len(),
        3,
        "one image object per changed file: {images:?}"
    );
    let mut matched = BTreeSet::new();
    for x in &images {
        let which = [("/a", &old_a), ("/b", &old_b), ("/c", &old_c)]
            .into_iter()
            .find(|(_, old)| {
                let copies = object_bytes(&cl, *x, old.len());
                copies.len() == 2 && copies.iter().all(|b| b == *old)
            })
            .map(|(p, _)| p);
        let p = which.unwrap_or_else(|| panic!("image object {x} holds no file's old bytes"));
        assert!(matched.insert(p), "two images of {p}");
    }
    // The files have their new bytes.
    let mut want_a = old_a.clone();
    want_a[1 << 20..2 << 20].copy_from_slice(&patch);
    let read = |p: &str, len| common::ec::read_file_with(&cl, cl.client_at(node(1), false), p, len);
    assert_eq!(read("/a", want_a.len()), want_a);
    let mut want_b = old_b.clone();
    want_b[..11].copy_from_slice(b"overwritten");
    assert_eq!(read("/b", want_b.len()), want_b);
    assert_eq!(read("/c", 10), old_c[..10]);

    // Deleted, the snapshot's images go from every data server.
    snapshot(&cl, &["delete", "s1"]);
    wait_for(30, "the image objects removed", || {
        images
            .iter()
            .chain([&d])
            .all(|x| cl.chunk_files(*x).iter().all(|(_, n)| *n == 0))
    });
    assert_eq!(read("/a", want_a.len()), want_a, "the file keeps its bytes");
}

/// A pNFS client of node 3 holds an RW layout of /w (it wrote through it and keeps the file
/// open) while node 1 takes a snapshot, then writes again through the same open. Without the
/// data quiesce its cached layout would put the new bytes straight into the file's object,
/// under the snapshot. With it, node 3 recalls the layout; the client answers NFS4_OK, lets its
/// I/O through the layout finish, LAYOUTCOMMITs and returns it (`client::pnfs::recall`), so the
/// quiesce goes on at once. Measured on a two-core machine, ten runs: node 3's recall-to-return
/// 11-12 ms (its log's "RW layouts recalled ... fenced=0 ms=11"), the whole create 0.03-0.30 s;
/// it took 3.2 s when this client answered NOMATCHING_LAYOUT and kept writing through its copy
/// (node 3 waited its 1 s for the return, then fenced the file and let the fence settle). The
/// client's next write takes a new layout through the gate: an image object keeps the bytes
/// from before the cut on both mirrors, and the file has the new ones.
#[test]
fn a_writer_holding_an_rw_layout_across_create_is_recalled_and_its_later_bytes_are_not_in_the_snapshot(
) {
    let (took, s) = writer_across_create(true);
    eprintln!("snapshot create with another node's client holding an RW layout: {took:?}; {s:?}");
    assert!(s.layoutrecalls >= 1, "the layout was recalled: {s:?}");
    // A fence costs node 3's 1 s wait plus the fence's settling (3.2 s in all); 2 s leaves
    // a loaded machine room and still tells the two apart.
    assert!(
        took < std::time::Duration::from_secs(2),
        "the layout came back, no fence waited for: {took:?}"
    );
}

/// The fence the quiesce falls back on: the same writer, but its session has no back channel,
/// so node 3 cannot recall its layout and fences the file after waiting 1 s for it; the data
/// servers then refuse the client's cached handles, and its retry takes a new layout through
/// the gate. The create took 3.22-3.26 s (five runs; node 3's quiesce 3.20-3.21 s).
#[test]
fn a_writer_whose_layout_cannot_be_recalled_is_fenced_and_its_later_bytes_are_not_in_the_snapshot()
{
    let (took, s) = writer_across_create(false);
    eprintln!("snapshot create with an RW layout that cannot be recalled: {took:?}; {s:?}");
    assert_eq!(s.layoutrecalls, 0, "{s:?}");
    assert!(
        took >= std::time::Duration::from_secs(1),
        "node 3 waited for the return before it fenced: {took:?}"
    );
    assert!(s.ds_errors > 0, "the fenced handles were refused: {s:?}");
}

/// A pNFS client of node 3 (with a back channel or not) writes /w, keeps it open across a
/// snapshot create on node 1, and writes the first MiB again after it: the image holds the
/// bytes from before on both mirrors, the file the new ones, and the later write went to the
/// data servers. Returns how long the create took and the client's layout counters.
fn writer_across_create(back_channel: bool) -> (std::time::Duration, client::PnfsStats) {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let t = tempfile::tempdir().expect("tempdir");
    let cl = Cluster::start_nodes(t.path(), 3, 3, &["--shards", "4"]);
    let node = |n: u16| std::net::SocketAddr::new(cl.addr.ip(), cl.addr.port() + n - 1);
    let old = random_bytes(2 * (1 << 20) + 7, 0x5d11);
    let mut cfg = client::ClientConfig::new(node(3));
    cfg.pnfs = true;
    cfg.slots = 64;
    cfg.back_channel = back_channel;
    let pnfs = cl
        .rt
        .block_on(client::Client::connect(cfg))
        .expect("connect");
    let (f, ino) = write_open(&cl, &pnfs, "/w", &old);
    let before = objects_with_chunks(&cl);
    assert_eq!(before, BTreeSet::from([ino]), "only the file's object");
    let ds_bytes = pnfs.pnfs_stats().expect("pNFS").ds_write_bytes;
    assert!(ds_bytes > 0, "written through a layout");

    let started = std::time::Instant::now();
    snapshot(&cl, &["create", "/", "--name", "s1"]);
    let took = started.elapsed();
    let patch = random_bytes(1 << 20, 0x5d21);
    cl.rt
        .block_on(pnfs.write_all(&f, 0, &patch, StableHow4::FileSync4))
        .expect("write after the cut through the open from before it");
    cl.rt.block_on(pnfs.close(&f)).expect("close /w");
    let stats = pnfs.pnfs_stats().expect("pNFS");
    assert!(
        stats.ds_write_bytes > ds_bytes,
        "the write after the cut went to the data servers: {stats:?}"
    );

    let images: Vec<u64> = objects_with_chunks(&cl)
        .difference(&before)
        .copied()
        .collect();
    assert_eq!(images.len(), 1, "one image object: {images:?}");
    let copies = object_bytes(&cl, images[0], old.len());
    assert!(
        copies.len() == 2 && copies.iter().all(|b| *b == old),
        "the image holds the bytes from before the cut on both mirrors ({} copies)",
        copies.len()
    );
    let mut want = old.clone();
    want[..patch.len()].copy_from_slice(&patch);
    let now = common::ec::read_file_with(&cl, cl.client_at(node(1), false), "/w", want.len());
    assert!(now == want, "the file has the write from after the cut");
    (took, stats)
}

/// Raw space on the data servers (what `cfs admin status` shows, summed): a 64 MiB file on two
/// mirrors, overwritten whole after a snapshot, takes twice its room (the image keeps every
/// old chunk); deleting the snapshot brings it back to once. `CFS_SNAPSHOT_TEST_MIB=1024` for
/// the 1 GiB, by hand.
#[test]
fn raw_space_doubles_after_overwrite_and_returns_after_delete() {
    const MIB: u64 = 1 << 20;
    let mib: usize = std::env::var("CFS_SNAPSHOT_TEST_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let len: usize = mib << 20;
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let t = tempfile::tempdir().expect("tempdir");
    let cl = Cluster::start_nodes(t.path(), 3, 3, &["--shards", "4"]);
    let used = || {
        cl.status()
            .map(|s| s.data_servers.iter().map(|d| d.used_bytes).sum::<u64>())
            .unwrap_or(0)
    };
    let base = used();
    let one_copy = 2 * len as u64; // two mirrors
    let c = cl.client(true);
    let write = |seed| {
        let f = cl
            .rt
            .block_on(c.open_path("/big", OPEN4_SHARE_ACCESS_BOTH, common::ec::create_empty()))
            .expect("open /big");
        let data = random_bytes(len, seed);
        cl.rt
            .block_on(c.write_all(&f, 0, &data, StableHow4::FileSync4))
            .expect("write /big");
        cl.rt.block_on(c.close(&f)).expect("close /big");
    };
    write(0x5b11);
    wait_for(60, "the file's two mirrors counted", || {
        used() >= base + one_copy - MIB
    });
    let once = used();
    snapshot(&cl, &["create", "/", "--name", "s1"]);
    write(0x5b21);
    wait_for(60, "the raw space doubled", || {
        used() >= once + one_copy - MIB
    });
    let twice = used();
    eprintln!("raw space: {base} empty, {once} once, {twice} after the overwrite");
    // The file's room on disk, chunk headers included (1.7 % of its bytes).
    let file_cost = once - base;
    assert!(
        twice <= once + file_cost + 8 * MIB,
        "more than the image's chunks: {twice} from {once}"
    );
    // `snapshot list` says the same: every byte of the image is the snapshot's alone.
    let (unique, shared) = snapshot_bytes(&cl, "s1");
    eprintln!("s1 after the overwrite: {unique} unique, {shared} shared");
    assert!(
        (file_cost - MIB..=file_cost + 8 * MIB).contains(&unique) && shared < MIB,
        "s1: {unique} unique, {shared} shared; the file takes {file_cost} bytes of disk"
    );
    snapshot(&cl, &["delete", "s1"]);
    wait_for(60, "the raw space back to once", || {
        used() <= once + 8 * MIB
    });
    eprintln!("{}", cl.admin_status());

    // A snapshot whose file then changes in one place: its image shares every chunk file
    // but that one's with the file, so deleting it would free one chunk on each mirror.
    snapshot(&cl, &["create", "/", "--name", "s2"]);
    write_at(&cl, &c, "/big", 5 * MIB, b"one chunk changes");
    let (unique, shared) = snapshot_bytes(&cl, "s2");
    eprintln!("s2 after one chunk changed: {unique} unique, {shared} shared");
    assert!(
        unique > 0 && unique <= 16 * MIB,
        "s2's unique bytes: one chunk on each mirror, not {unique}"
    );
    assert!(
        shared + unique >= one_copy - MIB,
        "s2 holds the file's bytes, shared but for one chunk: {shared} shared"
    );
}

/// Snapshot `name`'s unique and shared bytes as `cfs admin snapshot list --json` says them,
/// counted whole (`bytes_exact`).
fn snapshot_bytes(cl: &Cluster, name: &str) -> (u64, u64) {
    let toml = cl.mds_toml();
    let o = cfs(
        &cl.dir,
        &["admin", "snapshot", "list", "--json", "--config", &toml],
    );
    assert!(o.ok(), "snapshot list: {}{}", o.text(), o.stderr);
    let v: serde_json::Value = serde_json::from_str(o.text().trim()).expect("JSON");
    assert_eq!(v["bytes_exact"], true, "{v}");
    let row = v["snapshots"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {v}"));
    let n = |k: &str| row[k].as_u64().unwrap_or_else(|| panic!("{k} in {row}"));
    (n("unique_bytes"), n("shared_bytes"))
}

/// Whether process `pid` has ended (gone, or a zombie its parent has not reaped).
fn ended(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |st| {
        st.rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z'))
    })
}

/// Node 2's gate is killed (failpoint `snap-linked`: every mirror linked, `SnapKept` not yet
/// recorded) while it makes a file's image for a WRITE. The image is left `linking`; once node
/// 2 is back (its holds answer again), the pass on the shard's leader finishes it, the image
/// object holds the bytes from the snapshot, and the file takes writes again.
#[test]
fn kill9_of_the_claimer_while_linking_finishes_the_image() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let t = tempfile::tempdir().expect("tempdir");
    let fp = t.path().join("failpoint");
    let fp_s = fp.to_string_lossy().into_owned();
    let cl = Cluster::start_nodes_env(
        t.path(),
        3,
        3,
        &["--shards", "4"],
        &[("CFS_FAILPOINT_FILE", &fp_s)],
    );
    let node = |n: u16| std::net::SocketAddr::new(cl.addr.ip(), cl.addr.port() + n - 1);
    let old = random_bytes(2 * (1 << 20) + 5, 0x5c11);
    let c1 = cl.client_at(node(1), false);
    let (f, ino) = write_open(&cl, &c1, "/f", &old);
    cl.rt.block_on(c1.close(&f)).expect("close");
    snapshot(&cl, &["create", "/", "--name", "s1"]);

    std::fs::write(&fp, "snap-linked\n").expect("arm");
    let pid2 = cl.pid_of("mds2");
    let c2 = cl.client_at(node(2), false);
    let f2 = cl
        .rt
        .block_on(c2.open_path("/f", OPEN4_SHARE_ACCESS_BOTH, None))
        .expect("open /f at node 2");
    // Answered or not: node 2 dies making the image.
    let _ = cl.rt.block_on(async {
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            c2.write_all(&f2, 0, b"never written", StableHow4::FileSync4),
        )
        .await
    });
    wait_for(20, "node 2 killed at snap-linked", || ended(pid2));
    std::fs::remove_file(&fp).expect("disarm");
    let log2 = t.path().join("mds2-restarted.log");
    let _node2 = common::KillOnDrop(
        std::process::Command::new(common::BIN)
            .args(["server", "--config"])
            .arg(cl.dir.join("cluster").join("mds2.toml"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log2).expect("log"))
            .spawn()
            .expect("restart node 2"),
    );
    let logs = [
        cl.dir.join("cluster").join("mds1.log"),
        cl.dir.join("cluster").join("mds3.log"),
        log2,
    ];
    wait_for(90, "the shard leader's pass finishing the image", || {
        logs.iter().any(|l| {
            std::fs::read_to_string(l)
                .unwrap_or_default()
                .contains(&format!("a half-linked snapshot image finished ino={ino}"))
        })
    });
    let images: Vec<u64> = objects_with_chunks(&cl)
        .into_iter()
        .filter(|o| *o != ino)
        .collect();
    assert_eq!(images.len(), 1, "one image object: {images:?}");
    let copies = object_bytes(&cl, images[0], old.len());
    assert_eq!(copies.len(), 2, "on both mirrors");
    assert!(
        copies.iter().all(|b| *b == old),
        "the image holds the snapshot's bytes"
    );
    // The file takes writes again, and the image keeps its bytes.
    let f = cl
        .rt
        .block_on(c1.open_path("/f", OPEN4_SHARE_ACCESS_BOTH, None))
        .expect("open /f");
    cl.rt
        .block_on(c1.write_all(&f, 0, b"after", StableHow4::FileSync4))
        .expect("write after the image is finished");
    cl.rt.block_on(c1.close(&f)).expect("close");
    let copies = object_bytes(&cl, images[0], old.len());
    assert!(copies.iter().all(|b| *b == old));
    let mut want = old.clone();
    want[..5].copy_from_slice(b"after");
    let got = common::ec::read_file_with(&cl, cl.client_at(node(1), false), "/f", want.len());
    assert_eq!(got, want);
}

/// Files the cluster erasure-coded (2+1 over three data servers), then a snapshot, then one
/// written through the MDS, one through a pNFS layout and one cut by SETATTR: the gate copies
/// each back to mirrors (as the change would) before it images it, so `.snapshot` reads the
/// bytes from before, held by an image object on two mirrors, and the files read the new
/// ones. Deleted, the snapshot's image objects go.
#[test]
fn a_change_to_an_encoded_file_keeps_the_snapshots_bytes() {
    quiet_files_changed_after_a_snapshot(&["--encode-after", "1"], "encoded_files");
}

/// As `a_change_to_an_encoded_file_keeps_the_snapshots_bytes`, for files the cluster reduced
/// (deduplicated, compressed, stored as erasure-coded segments).
#[test]
fn a_change_to_a_reduced_file_keeps_the_snapshots_bytes() {
    quiet_files_changed_after_a_snapshot(
        &["--encode-after", "1", "--reduce", "on"],
        "reduced_files",
    );
}

fn quiet_files_changed_after_a_snapshot(args: &[&str], form: &str) {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let t = tempfile::tempdir().expect("tempdir");
    let cl = Cluster::start_sized(t.path(), DS_ROLES.len(), args);
    let old_a = random_bytes(3 * (1 << 20) + 777, 0x5c11);
    let old_b = random_bytes(2 * (1 << 20) + 12, 0x5c21);
    let old_c = random_bytes(4 * (1 << 20), 0x5c31);
    let files = [("/a", &old_a), ("/b", &old_b), ("/c", &old_c)];
    let inos: BTreeSet<u64> = files
        .iter()
        .map(|(p, d)| common::ec::write_file(&cl, p, d))
        .collect();
    let count = |v: &serde_json::Value| v[form].as_u64().unwrap_or(0);
    wait_for(120, form, || count(&common::ec::data_status(&cl)) == 3);
    wait_for(30, "the files' mirror copies deleted", || {
        inos.iter()
            .all(|i| cl.chunk_files(*i).iter().all(|(_, n)| *n == 0))
    });
    let before = objects_with_chunks(&cl);
    snapshot(&cl, &["create", "/", "--name", "s1"]);

    let mds = cl.client(false);
    write_at(&cl, &mds, "/a", 4096, b"written through the MDS");
    let patch = random_bytes(1 << 20, 0x5c41);
    write_at(&cl, &cl.client(true), "/b", 1 << 20, &patch);
    truncate(&cl, &mds, "/c", 10);

    let read = |p: &str, len| common::ec::read_file(&cl, p, len);
    for (p, old) in files {
        assert!(
            read(&format!("/.snapshot/s1{p}"), old.len()) == *old,
            "{p} in the snapshot reads its bytes from before the change ({form})"
        );
    }
    let mut want_a = old_a.clone();
    want_a[4096..4096 + 23].copy_from_slice(b"written through the MDS");
    assert!(read("/a", want_a.len()) == want_a, "/a's new bytes");
    let mut want_b = old_b.clone();
    want_b[1 << 20..2 << 20].copy_from_slice(&patch);
    assert!(read("/b", want_b.len()) == want_b, "/b's new bytes");
    assert_eq!(read("/c", 10), old_c[..10]);

    // One image object per file, holding its old bytes on two mirrors (the files' own
    // objects and any shards or segments a new encode made since are not images).
    let new: BTreeSet<u64> = objects_with_chunks(&cl)
        .difference(&before)
        .copied()
        .filter(|o| !inos.contains(o))
        .collect();
    let mut images = BTreeSet::new();
    for (p, old) in files {
        let x = new
            .iter()
            .copied()
            .find(|x| {
                let copies = object_bytes(&cl, *x, old.len());
                copies.len() == 2 && copies.iter().all(|b| b == old)
            })
            .unwrap_or_else(|| panic!("no image object of {p} among {new:?}"));
        images.insert(x);
    }
    assert_eq!(images.len(), 3, "{images:?}");

    snapshot(&cl, &["delete", "s1"]);
    wait_for(30, "the image objects removed", || {
        images
            .iter()
            .all(|x| cl.chunk_files(*x).iter().all(|(_, n)| *n == 0))
    });
    assert!(
        read("/b", want_b.len()) == want_b,
        "the file keeps its bytes"
    );
}
