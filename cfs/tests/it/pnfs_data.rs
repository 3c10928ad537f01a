//! What the MDS does to the bytes on the data servers (issue 11, items 4, 15 and 20), against
//! a real cluster (`cfs cluster up --ds 3`) driven by hand where a layout holder's exact
//! messages matter: a truncation a later LAYOUTCOMMIT must not undo, a removed file whose old
//! handles must be refused and whose chunk files must go (also across a data server that was
//! down and an MDS killed with SIGKILL), and ALLOCATE, DEALLOCATE, CLONE and COPY giving the
//! bytes and sizes a single node gives.
use crate::common;

use client::{Client, ClientConfig, CreateMode, SetAttrs, StableHow4};
use common::cluster::{ds_write, rw_layout, signal, Cluster, Mirror};
use common::{digest, random_bytes};
use proto::nfs3::Nfsstat3;
use proto::nfs4::*;
use std::time::{Duration, Instant};

// Clusters are four processes each and the machine may have two cores: one test at a time.
use common::SERIAL;

/// OPEN's create-or-truncate (UNCHECKED with size 0), as `open(O_CREAT|O_TRUNC)`.
fn create() -> Option<CreateMode> {
    Some(CreateMode::Unchecked(SetAttrs {
        mode: Some(0o644),
        size: Some(0),
        ..Default::default()
    }))
}

/// The whole file as a fresh client reads it (through layouts when `pnfs`), and its size.
fn read_back(cl: &Cluster, pnfs: bool, path: &str) -> (u64, Vec<u8>) {
    let r = cl.client(pnfs);
    let out = cl.rt.block_on(async {
        let f = r.open_path(path, OPEN4_SHARE_ACCESS_READ, None).await?;
        let size = f.stat.size;
        let (data, _) = r.read_full(&f, 0, size as u32).await?;
        r.close(&f).await?;
        client::Result::Ok((size, data))
    });
    let _ = cl.rt.block_on(r.shutdown());
    out.unwrap_or_else(|e: client::Error| panic!("read {path} back (pnfs {pnfs}): {e}"))
}

fn layoutcommit(fh: &NfsFh4, stateid: Stateid4, last_write_offset: u64) -> Vec<NfsArgop4> {
    vec![
        NfsArgop4::Putfh(PutfhArgs { object: fh.clone() }),
        NfsArgop4::Layoutcommit(LayoutcommitArgs {
            loca_offset: 0,
            loca_length: u64::MAX,
            loca_reclaim: false,
            loca_stateid: stateid,
            loca_last_write_offset: Newoffset4::Offset(last_write_offset),
            loca_time_modify: Newtime4::Unchanged,
            loca_layoutupdate: Layoutupdate4 {
                lou_type: LAYOUT4_FLEX_FILES,
                lou_body: proto::xdr::Opaque::default(),
            },
        }),
    ]
}

/// FILE_SYNC WRITEs of `data` at `offset` to every mirror, 1 MiB each (the DS's largest call).
fn write_mirrors(cl: &Cluster, mirrors: &[Mirror], offset: u64, data: &[u8]) {
    for m in mirrors {
        for (i, piece) in data.chunks(1 << 20).enumerate() {
            let at = offset + (i as u64) * (1 << 20);
            cl.rt
                .block_on(ds_write(m.addr, &m.fh, at, piece))
                .unwrap_or_else(|e| panic!("write through the layout to DS {}: {e}", m.ds_id));
        }
    }
}

/// Item 20, the exact sequence: 24 KiB through the layout, SETATTR size 0 with no LAYOUTCOMMIT
/// before it, 1 byte through the layout, then the run's only LAYOUTCOMMIT, whose last write
/// offset still counts the 24 KiB (Linux does not reset it when it truncates). A single node
/// answers 1 byte; so must the cluster.
#[test]
fn a_truncation_is_not_undone_by_a_later_layoutcommit() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let t = tempfile::tempdir().expect("tempdir");
    let cl = Cluster::start(t.path());
    let c = cl.client(false);
    let f = cl
        .rt
        .block_on(c.open_path("/t", OPEN4_SHARE_ACCESS_BOTH, create()))
        .expect("open");
    let (lsid, mirrors) = rw_layout(&cl, &c, &f);
    assert_eq!(mirrors.len(), 2, "mirrored layout: {mirrors:?}");
    write_mirrors(&cl, &mirrors, 0, &random_bytes(24576, 20));

    cl.rt
        .block_on(c.setattr(
            &f.fh,
            &SetAttrs {
                size: Some(0),
                ..Default::default()
            },
            Some(f.stateid),
        ))
        .expect("truncate to 0");

    // One byte through the layout the client holds: a truncation does not fence the file, so
    // layouts held across it (another client's cached one, for close-to-open reads) still work.
    write_mirrors(&cl, &mirrors, 0, b"Z");
    cl.rt
        .block_on(c.compound(layoutcommit(&f.fh, lsid, 24575)))
        .expect("LAYOUTCOMMIT");
    cl.rt.block_on(c.close(&f)).expect("close");

    for pnfs in [false, true] {
        let (size, data) = read_back(&cl, pnfs, "/t");
        assert!(
            size == 1 && data == b"Z",
            "the truncation was undone (pnfs {pnfs}): size {size}, {} bytes read, starting {:?}",
            data.len(),
            &data[..data.len().min(8)]
        );
    }
    let _ = cl.rt.block_on(c.shutdown());
}

/// Item 4: a removed file's data-server handles are refused (STALE) and its chunk files are
/// gone from every data server, while the client that held its layout is alive and well.
#[test]
fn a_removed_files_handles_are_stale_and_its_chunks_gone() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let t = tempfile::tempdir().expect("tempdir");
    let cl = Cluster::start(t.path());
    let c = cl.client(false);
    let f = cl
        .rt
        .block_on(c.open_path("/gone", OPEN4_SHARE_ACCESS_BOTH, create()))
        .expect("open");
    let (lsid, mirrors) = rw_layout(&cl, &c, &f);
    let data = random_bytes(1 << 20, 4);
    write_mirrors(&cl, &mirrors, 0, &data);
    cl.rt
        .block_on(c.compound(layoutcommit(&f.fh, lsid, data.len() as u64 - 1)))
        .expect("LAYOUTCOMMIT");
    cl.rt.block_on(c.close(&f)).expect("close");
    let ino = layout::peek(&mirrors[0].fh).expect("handle").file.0;
    let stored: usize = cl.chunk_files(ino).iter().map(|(_, n)| n).sum();
    assert!(
        stored >= 2,
        "chunk files on both mirrors before the removal"
    );

    let root = cl.rt.block_on(c.lookup_path("/")).expect("root");
    cl.rt.block_on(c.remove(&root, "gone")).expect("REMOVE");

    // The layout's handles, still in the client's hands, stop working (the reaper works in
    // the background: a bounded wait), and the late writes tried meanwhile leave nothing.
    let deadline = Instant::now() + Duration::from_secs(20);
    for m in &mirrors {
        loop {
            match cl.rt.block_on(ds_write(m.addr, &m.fh, 0, b"late bytes")) {
                Err(e) if e.status() == Some(Nfsstat3::Stale) => break,
                Ok(()) => {}
                Err(e) => panic!("unexpected DS answer: {e}"),
            }
            assert!(
                Instant::now() < deadline,
                "DS {} still takes writes for a file removed 20 s ago",
                m.ds_id
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = cl.chunk_files(ino);
        if left.iter().all(|(_, n)| *n == 0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "chunk files of the removed file left: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Reads through the old handle are refused too.
    let m = &mirrors[0];
    let r = cl.rt.block_on(async {
        let d = proto::nfs3_client::Nfs3Client::connect(&[m.addr], Duration::from_secs(2), 0, 0)
            .await
            .expect("DS");
        let r = d.read(&m.fh, 0, 4096).await.map(|_| ());
        d.close();
        r
    });
    assert_eq!(r.err().and_then(|e| e.status()), Some(Nfsstat3::Stale));
    let _ = cl.rt.block_on(c.shutdown());
}

/// Item 4, durability: a data server holding the file is down when it is removed, and the MDS
/// is killed with SIGKILL before that server is back. The removal is carried out anyway once
/// both run again: no chunk file of the file is left on any data server.
#[test]
fn a_removal_reclaims_the_data_across_a_down_ds_and_an_mds_kill9() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let t = tempfile::tempdir().expect("tempdir");
    let cl = Cluster::start_with(t.path(), &["--lease-seconds", "5"]);
    let c = cl.client(false);
    let f = cl
        .rt
        .block_on(c.open_path("/k", OPEN4_SHARE_ACCESS_BOTH, create()))
        .expect("open");
    let (lsid, mirrors) = rw_layout(&cl, &c, &f);
    let data = random_bytes(3 << 20, 5);
    write_mirrors(&cl, &mirrors, 0, &data);
    cl.rt
        .block_on(c.compound(layoutcommit(&f.fh, lsid, data.len() as u64 - 1)))
        .expect("LAYOUTCOMMIT");
    cl.rt.block_on(c.close(&f)).expect("close");
    let ino = layout::peek(&mirrors[0].fh).expect("handle").file.0;
    let down = cl.role_of(mirrors[0].ds_id);

    cl.kill9(&down);
    let deadline = Instant::now() + Duration::from_secs(20);
    while cl.status().map(|s| cl.up(&s)) != Some(2) {
        assert!(Instant::now() < deadline, "killed DS not marked down");
        std::thread::sleep(Duration::from_millis(200));
    }
    let root = cl.rt.block_on(c.lookup_path("/")).expect("root");
    cl.rt.block_on(c.remove(&root, "k")).expect("REMOVE");
    let _ = cl.rt.block_on(c.shutdown());
    // The reaper has had its go (the surviving mirror's copy goes); the down one's cannot.
    let deadline = Instant::now() + Duration::from_secs(20);
    while cl
        .chunk_files(ino)
        .iter()
        .any(|(r, n)| *r != down && *n > 0)
    {
        assert!(
            Instant::now() < deadline,
            "surviving mirror's copy not removed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    cl.kill9("mds");
    std::thread::sleep(Duration::from_millis(300));

    let mut ds = cl.start_ds(&down);
    let mut mds = cl.restart_mds();
    let deadline = Instant::now() + Duration::from_secs(60);
    let result = loop {
        let left = cl.chunk_files(ino);
        if left.iter().all(|(_, n)| *n == 0) {
            break Ok(());
        }
        if Instant::now() > deadline {
            break Err(left);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    signal(mds.0.id(), "-KILL");
    signal(ds.id(), "-KILL");
    let _ = (mds.0.wait(), ds.wait());
    if let Err(left) = result {
        panic!("chunk files of the removed file left 60 s after the restart: {left:?}");
    }
}

/// One v4.2 operation sequence on `path`/`path2`; returns both files as a fresh client reads
/// them. Every operation must succeed.
fn v42_sequence(c: &Client, rt: &tokio::runtime::Runtime) -> (Vec<u8>, Vec<u8>) {
    let first = random_bytes((3 << 20) + 100, 42);
    rt.block_on(async {
        let v = c.open_path("/v", OPEN4_SHARE_ACCESS_BOTH, create()).await?;
        let w = c.open_path("/w", OPEN4_SHARE_ACCESS_BOTH, create()).await?;
        c.write_all(&v, 0, &first, StableHow4::FileSync4).await?;
        c.write_all(&w, 0, &random_bytes(5000, 43), StableHow4::FileSync4)
            .await?;
        // Through layouts the MDS learns the sizes from LAYOUTCOMMIT (Linux sends it before
        // these operations too: `nfs_sync_inode`).
        c.commit_file(&v).await?;
        c.commit_file(&w).await?;
        let on_v = |op: NfsArgop4| {
            vec![
                NfsArgop4::Putfh(PutfhArgs {
                    object: v.fh.clone(),
                }),
                op,
            ]
        };
        let v_to_w = |op: NfsArgop4| {
            vec![
                NfsArgop4::Putfh(PutfhArgs {
                    object: v.fh.clone(),
                }),
                NfsArgop4::Savefh,
                NfsArgop4::Putfh(PutfhArgs {
                    object: w.fh.clone(),
                }),
                op,
            ]
        };
        // Past the end: the size grows, the new range reads as zeros.
        c.compound(on_v(NfsArgop4::Allocate(AllocateArgs {
            aa_stateid: v.stateid,
            aa_offset: (3 << 20) + 512 * 1024,
            aa_length: 1 << 20,
        })))
        .await?;
        // A hole across a chunk-store block boundary and into the allocated range's zeros.
        c.compound(on_v(NfsArgop4::Deallocate(DeallocateArgs {
            da_stateid: v.stateid,
            da_offset: 100_001,
            da_length: 2 << 20,
        })))
        .await?;
        // And one reaching past the end: the size stays.
        c.compound(on_v(NfsArgop4::Deallocate(DeallocateArgs {
            da_stateid: v.stateid,
            da_offset: (4 << 20) + 3,
            da_length: 10 << 20,
        })))
        .await?;
        c.compound(v_to_w(NfsArgop4::Clone(CloneArgs {
            cl_src_stateid: v.stateid,
            cl_dst_stateid: w.stateid,
            cl_src_offset: 0,
            cl_dst_offset: 0,
            cl_count: 1 << 20,
        })))
        .await?;
        c.compound(v_to_w(NfsArgop4::Copy(CopyArgs {
            ca_src_stateid: v.stateid,
            ca_dst_stateid: w.stateid,
            ca_src_offset: (2 << 20) + 7,
            ca_dst_offset: (3 << 20) + 3,
            ca_count: 1_500_000,
            ca_consecutive: true,
            ca_synchronous: true,
            ca_source_server: vec![],
        })))
        .await?;
        c.close(&v).await?;
        c.close(&w).await?;
        client::Result::Ok(())
    })
    .unwrap_or_else(|e: client::Error| panic!("v4.2 operation: {e}"));
    let read = |path: &str| {
        rt.block_on(async {
            let f = c.open_path(path, OPEN4_SHARE_ACCESS_READ, None).await?;
            let (d, _) = c.read_full(&f, 0, f.stat.size as u32).await?;
            assert_eq!(d.len() as u64, f.stat.size, "{path}: short read");
            c.close(&f).await?;
            client::Result::Ok(d)
        })
        .unwrap_or_else(|e: client::Error| panic!("read {path}: {e}"))
    };
    (read("/v"), read("/w"))
}

/// Item 15: ALLOCATE, DEALLOCATE, CLONE and COPY work on a cluster and leave the bytes and sizes
/// a single node leaves.
#[test]
fn v42_data_operations_on_a_cluster_match_a_single_node() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let t = tempfile::tempdir().expect("tempdir");
    let sdir = t.path().join("single");
    std::fs::create_dir_all(&sdir).expect("dir");
    let single = common::Server::start(&sdir, None);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let c = rt
        .block_on(Client::connect(ClientConfig::new(single.addr)))
        .expect("connect");
    let (v1, w1) = v42_sequence(&c, &rt);
    let _ = rt.block_on(c.shutdown());
    drop(single);

    let td = tempfile::tempdir().expect("tempdir");
    let cl = Cluster::start(td.path());
    for pnfs in [true, false] {
        let c = cl.client(pnfs);
        let (v2, w2) = v42_sequence(&c, &cl.rt);
        let _ = cl.rt.block_on(c.shutdown());
        assert_eq!(
            (v2.len(), w2.len()),
            (v1.len(), w1.len()),
            "sizes (pnfs {pnfs})"
        );
        assert!(digest(&v2) == digest(&v1), "/v differs (pnfs {pnfs})");
        assert!(digest(&w2) == digest(&w1), "/w differs (pnfs {pnfs})");
        // What a fresh reader sees through the layouts, too.
        assert!(digest(&read_back(&cl, true, "/v").1) == digest(&v1));
        assert!(digest(&read_back(&cl, true, "/w").1) == digest(&w1));
    }
}
