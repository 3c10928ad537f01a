//! pNFS through the Rust client against a real cluster: `cfs cluster up --ds 3` (one MDS and
//! three data servers, separate processes on 127.0.0.1). Data must go to the data servers,
//! mirrored; a data server killed with SIGKILL during an upload or before a read must cost
//! time, never bytes.
//!
//! Until the binary has `cluster up`, every test here says so and passes without running.
use crate::common;

use client::transfer::{self, TransferOptions};
use client::{Client, ClientConfig, CreateMode, SetAttrs, StableHow4};
use common::cluster::{signal, Cluster};
use common::{cfs, digest, random_bytes, BIN};
use proto::cluster::StatusResOk;
use proto::nfs4::{OPEN4_SHARE_ACCESS_BOTH, OPEN4_SHARE_ACCESS_READ};
use proto::xdr::Xdr;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;

// Clusters are four processes each and the machine may have two cores: one test at a time.
use common::SERIAL;

fn require_cluster_command() {
    let ok = Command::new(BIN)
        .args(["cluster", "up", "--help"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "this cfs has no `cluster up`");
}

/// Writes `data` to `path` with the library (pNFS as configured), then closes (which
/// commits, LAYOUTCOMMITs and returns the layouts).
async fn upload(c: &Client, path: &str, src: &mut dyn Read) -> client::Result<u64> {
    let f = Arc::new(
        c.open_path(
            path,
            OPEN4_SHARE_ACCESS_BOTH,
            Some(CreateMode::Unchecked(SetAttrs {
                mode: Some(0o644),
                size: Some(0),
                ..Default::default()
            })),
        )
        .await?,
    );
    let opt = TransferOptions {
        stable: StableHow4::Unstable4,
        ..TransferOptions::default()
    };
    let r = transfer::upload(c, f.clone(), src, opt).await;
    let closed = c.close(&f).await;
    let n = r?;
    closed?;
    Ok(n)
}

async fn download(c: &Client, path: &str) -> client::Result<Vec<u8>> {
    let f = Arc::new(c.open_path(path, OPEN4_SHARE_ACCESS_READ, None).await?);
    let mut out = Vec::new();
    let r = transfer::download(c, f.clone(), &mut out, TransferOptions::default()).await;
    let closed = c.close(&f).await;
    r?;
    closed?;
    Ok(out)
}

fn mib_s(bytes: usize, t: Duration) -> f64 {
    bytes as f64 / MIB as f64 / t.as_secs_f64()
}

#[test]
fn put_get_go_to_the_data_servers_mirrored() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    require_cluster_command();
    let t = tempfile::tempdir().expect("tempdir");
    let cl = Cluster::start(t.path());
    let before = cl.status().expect("status");
    let data = random_bytes(40 * MIB, 0x9e37);
    let local = t.path().join("in.bin");
    std::fs::write(&local, &data).expect("write local");

    // The CLI (pNFS on by default).
    let s = cl.addr.to_string();
    let t0 = Instant::now();
    let o = cfs(
        t.path(),
        &["put", "--server", &s, local.to_str().unwrap(), "/f40"],
    );
    assert!(o.ok(), "put: {}\n{}", o.stderr, cl.log_tail());
    let put_t = t0.elapsed();
    let back = t.path().join("back.bin");
    let t0 = Instant::now();
    let o = cfs(
        t.path(),
        &["get", "--server", &s, "/f40", back.to_str().unwrap()],
    );
    assert!(o.ok(), "get: {}", o.stderr);
    let get_t = t0.elapsed();
    let got = std::fs::read(&back).expect("read back");
    assert_eq!(got.len(), data.len());
    assert!(
        digest(&got) == digest(&data),
        "cfs get returned other bytes"
    );

    // Both mirrors of every byte went to data servers; the MDS wrote (almost) nothing itself.
    let want = 2 * data.len() as u64;
    let (w, r, st) = cl.ds_bytes(
        want + before
            .data_servers
            .iter()
            .map(|d| d.counters.write_bytes)
            .sum::<u64>(),
        data.len() as u64,
    );
    eprintln!(
        "DS write {w} read {r}; MDS write {} read {}\n{}",
        st.mds_write_bytes,
        st.mds_read_bytes,
        cl.admin_status()
    );
    assert!(
        w >= want,
        "DSs wrote {w} bytes, want >= {want} (two mirrors)"
    );
    assert!(
        st.mds_write_bytes - before.mds_write_bytes < MIB as u64,
        "the MDS wrote {} bytes itself",
        st.mds_write_bytes - before.mds_write_bytes
    );
    assert!(r >= data.len() as u64, "DSs read {r} bytes");

    // The library: pNFS counters, and the same bytes through the MDS (pnfs off).
    let c = cl.client(true);
    let t0 = Instant::now();
    let n = cl
        .rt
        .block_on(upload(&c, "/lib40", &mut std::io::Cursor::new(&data)))
        .expect("upload via pNFS");
    let lib_put = t0.elapsed();
    assert_eq!(n, data.len() as u64);
    let t0 = Instant::now();
    let got = cl.rt.block_on(download(&c, "/lib40")).expect("pNFS read");
    let lib_get = t0.elapsed();
    assert!(digest(&got) == digest(&data));
    let ps = c.pnfs_stats().expect("pNFS in use");
    eprintln!("pNFS client stats: {ps:?}");
    assert!(ps.ds_write_bytes >= want, "{ps:?}");
    assert_eq!(ps.mds_write_bytes, 0, "{ps:?}");
    assert!(ps.ds_read_bytes >= data.len() as u64, "{ps:?}");

    let m = cl.client(false);
    let t0 = Instant::now();
    let got = cl.rt.block_on(download(&m, "/f40")).expect("read via MDS");
    let mds_get = t0.elapsed();
    assert!(
        digest(&got) == digest(&data),
        "MDS read returned other bytes"
    );
    assert!(m.pnfs_stats().is_none());
    let t0 = Instant::now();
    cl.rt
        .block_on(upload(&m, "/mds40", &mut std::io::Cursor::new(&data)))
        .expect("upload via MDS");
    let mds_put = t0.elapsed();
    let got = cl.rt.block_on(download(&c, "/mds40")).expect("pNFS read");
    assert!(
        digest(&got) == digest(&data),
        "MDS-written file read via pNFS"
    );
    let bytes = data.len();
    eprintln!(
        "MiB/s: cli put {:.0} get {:.0}; library pNFS put {:.0} get {:.0}; through the MDS put {:.0} get {:.0}",
        mib_s(bytes, put_t),
        mib_s(bytes, get_t),
        mib_s(bytes, lib_put),
        mib_s(bytes, lib_get),
        mib_s(bytes, mds_put),
        mib_s(bytes, mds_get)
    );
    let _ = cl.rt.block_on(c.shutdown());
    let _ = cl.rt.block_on(m.shutdown());
}

/// A reader that runs `hook` once when `at` bytes have been handed out (the upload then has
/// writes in flight and unstable data on every DS).
struct Gate<F: FnMut()> {
    inner: std::io::Cursor<Vec<u8>>,
    at: u64,
    hook: Option<F>,
}

impl<F: FnMut()> Read for Gate<F> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let pos = self.inner.position();
        if pos >= self.at {
            if let Some(mut h) = self.hook.take() {
                h();
            }
        }
        let room = if self.hook.is_some() {
            buf.len().min((self.at - pos) as usize)
        } else {
            buf.len()
        };
        self.inner.read(&mut buf[..room])
    }
}

#[test]
fn upload_survives_a_data_server_killed_midway() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    require_cluster_command();
    let t = tempfile::tempdir().expect("tempdir");
    let cl = Cluster::start(t.path());
    let data = random_bytes(64 * MIB, 0x5eed);
    let c = cl.client(true);
    let killed: Mutex<Option<String>> = Mutex::new(None);
    let mut gate = Gate {
        inner: std::io::Cursor::new(data.clone()),
        at: 24 * MIB as u64,
        hook: Some(|| {
            // The writes before the gate land first (unstable, on both mirrors): the dead DS
            // then surely holds uncommitted data of this upload, if any of its chunks.
            let t = Instant::now();
            while c.pnfs_stats().map_or(0, |s| s.ds_write_bytes) < 48 * MIB as u64
                && t.elapsed() < Duration::from_secs(20)
            {
                std::thread::sleep(Duration::from_millis(1));
            }
            let victim = cl.writing_ds();
            cl.kill9(&victim);
            *killed.lock().unwrap_or_else(|p| p.into_inner()) = Some(victim);
        }),
    };
    let t0 = Instant::now();
    let n = cl
        .rt
        .block_on(upload(&c, "/f64", &mut gate))
        .unwrap_or_else(|e| panic!("upload failed after a DS died: {e}\n{}", cl.log_tail()));
    let took = t0.elapsed();
    assert_eq!(n, data.len() as u64);
    let ps = c.pnfs_stats().expect("pNFS in use");
    eprintln!(
        "upload with ds1 killed at 24 MiB: {:.1} s; {ps:?}\n{}",
        took.as_secs_f64(),
        cl.admin_status()
    );
    // The killed DS was a mirror of this file, so the upload must have met it failing.
    assert!(ps.ds_errors > 0, "the upload never met the dead DS: {ps:?}");
    let victim = killed
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .expect("a DS was killed");

    let r = cl.client(true);
    let got = cl
        .rt
        .block_on(download(&r, "/f64"))
        .expect("read back via pNFS");
    assert_eq!(got.len(), data.len());
    assert!(digest(&got) == digest(&data), "pNFS read-back differs");
    let m = cl.client(false);
    let got = cl
        .rt
        .block_on(download(&m, "/f64"))
        .expect("read back via MDS");
    assert!(digest(&got) == digest(&data), "MDS read-back differs");

    // The DS comes back (with its stale copy): every acknowledged byte still reads back.
    let mut back = cl.restart(&victim);
    let after = cl.client(true);
    let got = cl
        .rt
        .block_on(download(&after, "/f64"))
        .expect("read back via pNFS after the DS returned");
    assert!(
        digest(&got) == digest(&data),
        "read-back after the DS returned differs"
    );
    for x in [c, r, m, after] {
        let _ = cl.rt.block_on(x.shutdown());
    }
    signal(back.id(), "-KILL");
    let _ = back.wait();
}

#[test]
fn read_fails_over_when_a_data_server_is_dead() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    require_cluster_command();
    let t = tempfile::tempdir().expect("tempdir");
    let cl = Cluster::start(t.path());
    let data = random_bytes(40 * MIB + 12345, 0xfa11);
    let c = cl.client(true);
    cl.rt
        .block_on(upload(&c, "/r40", &mut std::io::Cursor::new(&data)))
        .expect("upload");
    let _ = cl.rt.block_on(c.shutdown());

    // A reader that already holds READ layouts (and DS connections) for every chunk when the
    // DS dies: it must notice, report, and read from elsewhere. A fresh reader too.
    let r = cl.client(true);
    let f = Arc::new(
        cl.rt
            .block_on(r.open_path("/r40", OPEN4_SHARE_ACCESS_READ, None))
            .expect("open"),
    );
    for off in (0..data.len()).step_by(16 * MIB) {
        cl.rt
            .block_on(r.read(&f, off as u64, 4096))
            .expect("prefetch read");
    }
    // Kill the DS that served those reads (DS i listens on PORT+i): the held layouts name it.
    let (_, _, st) = cl.ds_bytes(0, 3 * 4096);
    let busiest = st
        .data_servers
        .iter()
        .max_by_key(|d| d.counters.read_ops)
        .expect("a DS");
    let uaddr = String::from_utf8_lossy(busiest.listen.na_r_addr.as_bytes()).into_owned();
    let port = layout::uaddr::from_uaddr(&uaddr).expect("uaddr").port();
    let role = format!("ds{}", port - cl.addr.port());
    // Every chunk has two mirrors on three DSs: whichever dies, each chunk has a survivor.
    cl.kill9(&role);
    let t0 = Instant::now();
    let mut got = Vec::new();
    cl.rt
        .block_on(transfer::download(
            &r,
            f.clone(),
            &mut got,
            TransferOptions::default(),
        ))
        .unwrap_or_else(|e| panic!("read with {role} dead: {e}\n{}", cl.log_tail()));
    let ps = r.pnfs_stats().expect("pNFS in use");
    eprintln!(
        "read with {role} dead: {:.1} s; {ps:?}",
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(got.len(), data.len());
    assert!(digest(&got) == digest(&data), "read with a dead DS differs");
    assert!(ps.ds_errors > 0, "held layouts named the dead DS: {ps:?}");
    cl.rt.block_on(r.close(&f)).expect("close");

    let fresh = cl.client(true);
    let got = cl
        .rt
        .block_on(download(&fresh, "/r40"))
        .expect("fresh read with a DS dead");
    assert!(
        digest(&got) == digest(&data),
        "fresh read with a dead DS differs"
    );
    for x in [r, fresh] {
        let _ = cl.rt.block_on(x.shutdown());
    }
}

#[test]
fn holes_read_as_zeros_through_data_servers() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    require_cluster_command();
    let t = tempfile::tempdir().expect("tempdir");
    let cl = Cluster::start(t.path());
    let c = cl.client(true);
    let a = random_bytes(MIB, 1);
    let b = random_bytes(MIB + 3, 2);
    // 1 MiB at 0, a hole (the rest of chunk 0, all of chunk 1), 1 MiB + 3 at 40 MiB.
    let far = 40 * MIB as u64;
    cl.rt
        .block_on(async {
            let f = c
                .open_path(
                    "/sparse",
                    OPEN4_SHARE_ACCESS_BOTH,
                    Some(CreateMode::Unchecked(SetAttrs::default())),
                )
                .await?;
            c.write_all(&f, 0, &a, StableHow4::Unstable4).await?;
            c.write_all(&f, far, &b, StableHow4::Unstable4).await?;
            c.commit_file(&f).await?;
            c.close(&f).await
        })
        .expect("sparse write");
    let mut want = vec![0u8; far as usize + b.len()];
    want[..MIB].copy_from_slice(&a);
    want[far as usize..].copy_from_slice(&b);
    for pnfs in [true, false] {
        let r = cl.client(pnfs);
        let got = cl.rt.block_on(download(&r, "/sparse")).expect("read");
        eprintln!("pnfs {pnfs}: {:?}", r.pnfs_stats());
        assert_eq!(got.len(), want.len(), "size (pnfs {pnfs})");
        assert!(got == want, "holes must read as zeros (pnfs {pnfs})");
        let _ = cl.rt.block_on(r.shutdown());
    }
    let _ = cl.rt.block_on(c.shutdown());
}

#[test]
fn mds_killed_and_restarted_keeps_every_byte_and_serves_again() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    require_cluster_command();
    let t = tempfile::tempdir().expect("tempdir");
    let cl = Cluster::start(t.path());
    let data = random_bytes(24 * MIB + 5, 0x3d5);
    let c = cl.client(true);
    cl.rt
        .block_on(upload(
            &c,
            "/before",
            &mut std::io::Cursor::new(data.clone()),
        ))
        .expect("upload");
    let _ = cl.rt.block_on(c.shutdown());

    // kill -9 the MDS (the data servers keep running) and start it again at once: its first
    // seconds are the ones the data servers need to register again.
    cl.kill9("mds");
    std::thread::sleep(Duration::from_millis(300));
    let mut mds = Command::new(BIN)
        .args(["server", "--config"])
        .arg(t.path().join("cluster").join("mds.toml"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("restart MDS");
    let deadline = Instant::now() + Duration::from_secs(30);
    while cl.status().is_none() {
        assert!(Instant::now() < deadline, "MDS not back in 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Straight away, before every DS has heartbeated: reads wait (DELAY), they do not fail.
    for pnfs in [true, false] {
        let r = cl.client(pnfs);
        let got = cl
            .rt
            .block_on(download(&r, "/before"))
            .unwrap_or_else(|e| panic!("read after MDS restart (pnfs {pnfs}): {e}"));
        assert!(
            digest(&got) == digest(&data),
            "bytes differ after MDS restart (pnfs {pnfs})"
        );
        let _ = cl.rt.block_on(r.shutdown());
    }
    // And new files go to the data servers again, mirrored.
    let w = cl.client(true);
    let more = random_bytes(8 * MIB, 0x3d6);
    cl.rt
        .block_on(upload(
            &w,
            "/after",
            &mut std::io::Cursor::new(more.clone()),
        ))
        .expect("upload after restart");
    let ps = w.pnfs_stats().expect("pNFS in use after restart");
    assert!(
        ps.ds_write_bytes >= 2 * more.len() as u64,
        "writes after the restart must reach both mirrors: {ps:?}"
    );
    let _ = cl.rt.block_on(w.shutdown());
    signal(mds.id(), "-KILL");
    let _ = mds.wait();
}

/// An RW layout's DS handle, and the DS's address, taken by hand (LAYOUTGET over the client
/// library's session) so the test can use it after its holder is gone.
fn raw_layout(cl: &Cluster, c: &Client, f: &client::OpenFile) -> (Vec<u8>, SocketAddr) {
    use proto::nfs4::*;
    let ops = vec![
        NfsArgop4::Putfh(PutfhArgs {
            object: f.fh.clone(),
        }),
        NfsArgop4::Layoutget(LayoutgetArgs {
            loga_signal_layout_avail: false,
            loga_layout_type: LAYOUT4_FLEX_FILES,
            loga_iomode: Layoutiomode4::Rw,
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
    let ds = &ff.ffl_mirrors[0].ffm_data_servers[0];
    let id = layout::DsId::from_device_id(&ds.ffds_deviceid)
        .expect("device id")
        .0;
    let st = cl.status().expect("status");
    let d = st
        .data_servers
        .iter()
        .find(|d| d.ds_id == id)
        .expect("DS of the layout");
    let ua = String::from_utf8_lossy(&d.listen.na_r_addr.0).to_string();
    let addr = layout::uaddr::from_uaddr(&ua).expect("uaddr");
    (ds.ffds_fh_vers[0].0.as_bytes().to_vec(), addr)
}

#[test]
fn a_client_that_loses_its_lease_is_fenced_at_the_data_servers() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    require_cluster_command();
    let t = tempfile::tempdir().expect("tempdir");
    let cl = Cluster::start_with(t.path(), &["--lease-seconds", "5"]);
    // The holder lives on a runtime of its own, so that dropping the runtime silences it
    // (no renewals, no LAYOUTRETURN): a client that died, or was cut off, holding a layout.
    let holder_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let mut cfg = ClientConfig::new(cl.addr);
    cfg.pnfs = false;
    let a = holder_rt.block_on(Client::connect(cfg)).expect("connect");
    let f = holder_rt
        .block_on(a.open_path(
            "/fenced",
            OPEN4_SHARE_ACCESS_BOTH,
            Some(CreateMode::Unchecked(SetAttrs::default())),
        ))
        .expect("open");
    let (fh, ds) = {
        // raw_layout drives the compound on the cluster's runtime; the client's own tasks run
        // on holder_rt.
        raw_layout(&cl, &a, &f)
    };
    let write = |fh: &[u8]| {
        cl.rt.block_on(async {
            let c = proto::nfs3_client::Nfs3Client::connect(&[ds], Duration::from_secs(2), 0, 0)
                .await
                .expect("DS");
            let r = c
                .write(fh, 0, b"late bytes", proto::nfs3::StableHow::FileSync)
                .await;
            c.close();
            r
        })
    };
    write(&fh).expect("the holder's handle works while its lease does");
    drop(a);
    drop(holder_rt);

    // Two leases (10 s) until the MDS gives up on the holder, then a heartbeat to tell the DSs.
    let deadline = Instant::now() + Duration::from_secs(45);
    let refused = loop {
        match write(&fh) {
            Err(e) if e.status() == Some(proto::nfs3::Nfsstat3::Stale) => break e,
            Ok(_) => {}
            Err(e) => panic!("unexpected DS answer: {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "the lost client's handle still writes after 45 s"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!("fenced: {refused}");
    // A live client gets a new layout (new generation) and writes through it.
    let b = cl.client(true);
    let data = random_bytes(3 * MIB, 9);
    cl.rt
        .block_on(upload(
            &b,
            "/fenced",
            &mut std::io::Cursor::new(data.clone()),
        ))
        .expect("upload after fencing");
    let got = cl.rt.block_on(download(&b, "/fenced")).expect("read");
    assert!(digest(&got) == digest(&data));
    assert!(b.pnfs_stats().expect("pNFS").ds_write_bytes >= 2 * data.len() as u64);
    let _ = cl.rt.block_on(b.shutdown());
}

/// The role names (`dsI`) of the DSs that report written bytes.
fn writing_roles(cl: &Cluster) -> Vec<String> {
    let st = cl.status().expect("status");
    st.data_servers
        .iter()
        .filter(|d| d.counters.write_bytes > 0)
        .filter_map(|d| {
            let ua = String::from_utf8_lossy(&d.listen.na_r_addr.0).to_string();
            let port = layout::uaddr::from_uaddr(&ua).ok()?.port();
            Some(format!("ds{}", port.checked_sub(cl.addr.port())?))
        })
        .collect()
}

#[test]
fn a_file_that_lost_a_mirror_is_re_mirrored_and_survives_losing_the_other() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    require_cluster_command();
    let t = tempfile::tempdir().expect("tempdir");
    let cl = Cluster::start(t.path());
    let first = random_bytes(12 * MIB, 0x77);
    let c = cl.client(true);
    cl.rt
        .block_on(upload(&c, "/r", &mut std::io::Cursor::new(first.clone())))
        .expect("upload");
    let _ = cl.ds_bytes(2 * first.len() as u64, 0);
    let mirrors = writing_roles(&cl);
    assert_eq!(mirrors.len(), 2, "two mirrors: {mirrors:?}");
    cl.kill9(&mirrors[0]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while cl.status().map(|s| cl.up(&s)) != Some(2) {
        assert!(Instant::now() < deadline, "killed DS not marked down");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Writing on with one mirror down leaves the file on the survivor alone...
    let second = random_bytes(4 * MIB, 0x78);
    cl.rt
        .block_on(async {
            let f = c.open_path("/r", OPEN4_SHARE_ACCESS_BOTH, None).await?;
            c.write_all(&f, first.len() as u64, &second, StableHow4::Unstable4)
                .await?;
            c.commit_file(&f).await?;
            c.close(&f).await
        })
        .expect("write with a mirror down");
    let mut want = first.clone();
    want.extend_from_slice(&second);
    // ...until repair copies it to the third DS. Wait for the copy to show in its counters.
    let third = (1..=3)
        .map(|i| format!("ds{i}"))
        .find(|r| !mirrors.contains(r))
        .expect("a third DS");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = writing_roles(&cl);
        if now.contains(&third)
            && cl.ds_bytes(0, 0).0 >= (2 * first.len() + 2 * second.len()) as u64
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no re-mirroring to {third} in 60 s:\n{}",
            cl.admin_status()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // The copy is recorded as the file's new mirror once the repair queue is empty (the bytes
    // can show in the counters before the record is durable); then lose the original survivor.
    wait_for_repairs_recorded(&cl, "repair recording the new mirror");
    cl.kill9(&mirrors[1]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while cl.status().map(|s| cl.up(&s)) != Some(1) {
        assert!(Instant::now() < deadline, "second DS not marked down");
        std::thread::sleep(Duration::from_millis(200));
    }
    for pnfs in [true, false] {
        let r = cl.client(pnfs);
        let got = cl
            .rt
            .block_on(download(&r, "/r"))
            .unwrap_or_else(|e| panic!("read from the repaired mirror (pnfs {pnfs}): {e}"));
        assert!(
            digest(&got) == digest(&want),
            "repaired mirror differs (pnfs {pnfs})"
        );
        let _ = cl.rt.block_on(r.shutdown());
    }
    let _ = cl.rt.block_on(c.shutdown());
}

// ---- Data integrity on the data servers (issue 11 items 16, 17, 19) ----

/// The role names (`dsI`) of the DSs that report read bytes, once any does (counters travel
/// with heartbeats).
fn reading_roles(cl: &Cluster) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let st = cl.status().expect("status");
        let roles: Vec<String> = st
            .data_servers
            .iter()
            .filter(|d| d.counters.read_bytes > 0)
            .filter_map(|d| {
                let ua = String::from_utf8_lossy(&d.listen.na_r_addr.0).to_string();
                let port = layout::uaddr::from_uaddr(&ua).ok()?.port();
                Some(format!("ds{}", port.checked_sub(cl.addr.port())?))
            })
            .collect();
        if !roles.is_empty() {
            return roles;
        }
        assert!(Instant::now() < deadline, "no DS reports read bytes");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Where `role` keeps its chunk store.
fn store_dir(cl: &Cluster, role: &str) -> PathBuf {
    cl.dir.join("cluster").join(role).join("chunks")
}

/// The ids of the objects in `role`'s chunk store (`objects/<id & 0xff>/<id, 16 hex>`).
fn ds_objects(cl: &Cluster, role: &str) -> Vec<u64> {
    let mut ids = Vec::new();
    let Ok(fans) = std::fs::read_dir(store_dir(cl, role).join("objects")) else {
        return ids;
    };
    for fan in fans.flatten() {
        for obj in std::fs::read_dir(fan.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Some(id) = obj
                .file_name()
                .to_str()
                .and_then(|n| u64::from_str_radix(n, 16).ok())
            {
                ids.push(id);
            }
        }
    }
    ids
}

/// `role`'s copy of the one file in its store, read and verified by the chunk store itself
/// (a second opener of the directory: reads only).
fn ds_copy(cl: &Cluster, role: &str, len: usize) -> Result<Vec<u8>, String> {
    let ids = ds_objects(cl, role);
    let [id] = ids[..] else {
        return Err(format!("{role} holds objects {ids:?}, not one"));
    };
    let store = ds::ChunkStore::open(store_dir(cl, role)).map_err(|e| e.to_string())?;
    let (bytes, _) = store
        .blocking()
        .read(id, 0, len as u64, len as u64)
        .map_err(|e| e.to_string())?;
    Ok(bytes)
}

/// Chunk file 0 of the one object on `role`, and its store's (chunk size, block size).
fn chunk_file_0(cl: &Cluster, role: &str) -> (PathBuf, u64, u64) {
    let ids = ds_objects(cl, role);
    let [id] = ids[..] else {
        panic!("{role} holds objects {ids:?}, not one")
    };
    let dir = store_dir(cl, role);
    let conf = std::fs::read_to_string(dir.join("chunkstore.conf")).expect("chunkstore.conf");
    let get = |k: &str| -> u64 {
        conf.lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix('=')?.trim().parse().ok())
            .expect("geometry in chunkstore.conf")
    };
    let path = dir
        .join("objects")
        .join(format!("{:02x}", id & 0xff))
        .join(format!("{id:016x}"))
        .join("0");
    (path, get("chunk_size"), get("block_size"))
}

/// Overwrites `bytes.len()` bytes of `path` at `off`, as a bad sector or a stray write would.
fn scribble(path: &Path, off: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open chunk file");
    f.write_all_at(bytes, off).expect("scribble");
    f.sync_all().expect("sync");
}

fn wait_up(cl: &Cluster, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while cl.status().map(|s| cl.up(&s)) != Some(n) {
        assert!(
            Instant::now() < deadline,
            "not {n} DSs up in 20 s:\n{}",
            cl.admin_status()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits up to 60 s for `role`'s copy to verify and equal `want`.
fn wait_for_good_copy(cl: &Cluster, role: &str, want: &[u8], what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = ds_copy(cl, role, want.len());
        if got.as_deref().is_ok_and(|g| digest(g) == digest(want)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {role}'s copy still not good after 60 s ({:?}):\n{}\n{}",
            got.map(|g| g.len()),
            cl.admin_status(),
            cl.log_tail()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Waits up to 60 s for the MDS's repair queue to be empty. A repair writes the copy first
/// and records it as a mirror after (then takes the file off the queue): a copy that verifies
/// on disk is not yet one the MDS would hand out.
fn wait_for_repairs_recorded(cl: &Cluster, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while cl.degraded_files() != Some(0) {
        assert!(
            Instant::now() < deadline,
            "{what}: files still queued for repair after 60 s:\n{}",
            cl.admin_status()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A two-DS cluster holding `path` (`len` random bytes from `seed`), read back once through
/// layouts, and the role of the one mirror that served that read: the copy a test damages.
fn mirrored_file_and_its_reader(
    dir: &Path,
    path: &str,
    len: usize,
    seed: u64,
) -> (Cluster, Vec<u8>, String) {
    let cl = Cluster::start_sized(dir, 2, &[]);
    let data = random_bytes(len, seed);
    let c = cl.client(true);
    cl.rt
        .block_on(upload(&c, path, &mut std::io::Cursor::new(data.clone())))
        .expect("upload");
    let got = cl.rt.block_on(download(&c, path)).expect("download");
    assert!(digest(&got) == digest(&data));
    let _ = cl.rt.block_on(c.shutdown());
    let readers = reading_roles(&cl);
    assert_eq!(readers.len(), 1, "reads come from one mirror: {readers:?}");
    let reader = readers[0].clone();
    (cl, data, reader)
}

#[test]
fn zeroed_checksums_on_one_mirror_read_from_the_other_not_as_zeros() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    require_cluster_command();
    let t = tempfile::tempdir().expect("tempdir");
    let (cl, data, reader) = mirrored_file_and_its_reader(t.path(), "/z", 2 * MIB + 777, 0x16);
    let readers = [reader];
    let (path, chunk, block) = chunk_file_0(&cl, &readers[0]);
    // Both checksum slots of block 5 zeroed (the header layout of `chunkstore::geometry`).
    let n = chunk / block;
    let b = 5;
    scribble(&path, 64 + b * 32, &[0; 32]);
    scribble(&path, 64 + (n + b) * 32, &[0; 32]);

    // `cfs get` (pNFS) returns the file's bytes, never zeros for the damaged block.
    let o = cfs(
        t.path(),
        &["get", "--server", &cl.addr.to_string(), "/z", "-"],
    );
    assert!(o.ok(), "cfs get: {}", o.stderr);
    assert_eq!(o.stdout.len(), data.len());
    let bad = (b * block) as usize..((b + 1) * block) as usize;
    assert!(
        o.stdout[bad.clone()] == data[bad],
        "the block whose checksums were zeroed must come from the other mirror"
    );
    assert!(digest(&o.stdout) == digest(&data), "cfs get: bytes differ");
    // And through the MDS.
    let r = cl.client(false);
    let got = cl
        .rt
        .block_on(download(&r, "/z"))
        .expect("read through the MDS");
    assert!(digest(&got) == digest(&data), "MDS read: bytes differ");
    let _ = cl.rt.block_on(r.shutdown());
}

#[test]
fn a_corrupt_copy_is_rewritten_from_its_mirror() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    require_cluster_command();
    let t = tempfile::tempdir().expect("tempdir");
    let (cl, data, reader) = mirrored_file_and_its_reader(t.path(), "/c", 3 * MIB + 5, 0x17);
    let readers = [reader];
    let bad = readers[0].clone();
    let good = if bad == "ds1" { "ds2" } else { "ds1" };
    let (path, chunk, block) = chunk_file_0(&cl, &bad);
    // Flip bytes in the data of block 3 (data starts page-aligned after the two sum arrays).
    let data_start = (64 + 2 * (chunk / block) * 32).div_ceil(4096) * 4096;
    let at = data_start + 3 * block + 100;
    scribble(&path, at, &[0xa5; 64]);
    assert!(
        ds_copy(&cl, &bad, data.len()).is_err(),
        "the damage verifies"
    );

    // The read is served from the good mirror...
    let r = cl.client(true);
    let got = cl
        .rt
        .block_on(download(&r, "/c"))
        .expect("read with one bad copy");
    assert!(digest(&got) == digest(&data), "bytes differ");
    eprintln!("first read: {:?}", r.pnfs_stats());
    let _ = cl.rt.block_on(r.shutdown());
    // ...and the bad copy is rewritten from it.
    wait_for_good_copy(&cl, &bad, &data, "rewrite of the bad copy");
    let marks = std::fs::read_to_string(cl.dir.join("cluster").join(&bad).join("bad_chunks"))
        .unwrap_or_default();
    assert!(marks.trim().is_empty(), "bad chunk marks left: {marks}");

    // A second read no longer fails over.
    let r = cl.client(true);
    let got = cl.rt.block_on(download(&r, "/c")).expect("second read");
    assert!(digest(&got) == digest(&data));
    let st = r.pnfs_stats().expect("pNFS");
    assert_eq!(st.ds_errors, 0, "second read failed over: {st:?}");
    let _ = cl.rt.block_on(r.shutdown());

    // The rewritten copy is a mirror again: it alone serves the file.
    wait_for_repairs_recorded(&cl, "the rewritten copy recorded as a mirror");
    cl.kill9(good);
    wait_up(&cl, 1);
    for pnfs in [true, false] {
        let r = cl.client(pnfs);
        let got = cl
            .rt
            .block_on(download(&r, "/c"))
            .unwrap_or_else(|e| panic!("read from the rewritten copy (pnfs {pnfs}): {e}"));
        assert!(
            digest(&got) == digest(&data),
            "rewritten copy differs (pnfs {pnfs})"
        );
        let _ = cl.rt.block_on(r.shutdown());
    }
}

#[test]
fn a_file_left_with_one_copy_is_re_mirrored_after_an_mds_restart() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    require_cluster_command();
    let t = tempfile::tempdir().expect("tempdir");
    let cl = Cluster::start_sized(t.path(), 2, &[]);
    cl.kill9("ds2");
    wait_up(&cl, 1);
    // Written while ds2 is down: one copy, on ds1.
    let data = random_bytes(3 * MIB + 3, 0x19);
    let c = cl.client(true);
    cl.rt
        .block_on(upload(
            &c,
            "/single",
            &mut std::io::Cursor::new(data.clone()),
        ))
        .expect("upload with a DS down");
    let _ = cl.rt.block_on(c.shutdown());
    assert!(ds_copy(&cl, "ds1", data.len()).is_ok_and(|g| digest(&g) == digest(&data)));

    // The MDS dies (kill -9) before it repaired anything, and starts again; then ds2 is back.
    cl.kill9("mds");
    std::thread::sleep(Duration::from_millis(300));
    let mut mds = Command::new(BIN)
        .args(["server", "--config"])
        .arg(t.path().join("cluster").join("mds.toml"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("restart MDS");
    let deadline = Instant::now() + Duration::from_secs(30);
    while cl.status().is_none() {
        assert!(Instant::now() < deadline, "MDS not back in 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut ds2 = cl.restart("ds2");

    // The restarted MDS finds the single-copy file in its records and copies it to ds2.
    wait_for_good_copy(&cl, "ds2", &data, "re-mirroring after the MDS restart");
    wait_for_repairs_recorded(&cl, "the copy on ds2 recorded as a mirror");
    cl.kill9("ds1");
    wait_up(&cl, 1);
    for pnfs in [true, false] {
        let r = cl.client(pnfs);
        let got = cl
            .rt
            .block_on(download(&r, "/single"))
            .unwrap_or_else(|e| panic!("read from the new mirror (pnfs {pnfs}): {e}"));
        assert!(
            digest(&got) == digest(&data),
            "new mirror differs (pnfs {pnfs})"
        );
        let _ = cl.rt.block_on(r.shutdown());
    }
    signal(ds2.id(), "-KILL");
    let _ = ds2.wait();
    signal(mds.id(), "-KILL");
    let _ = mds.wait();
}

/// Objects (files) the chunk store under `data_dir` holds.
fn objects_on(data_dir: &Path) -> usize {
    let Ok(fanout) = std::fs::read_dir(data_dir.join("chunks").join("objects")) else {
        return 0;
    };
    fanout
        .flatten()
        .map(|d| std::fs::read_dir(d.path()).map(|e| e.count()).unwrap_or(0))
        .sum()
}

/// The MDS's view of the data server listening on `port`.
fn ds_on_port(st: &StatusResOk, port: u16) -> proto::cluster::DsStatus {
    st.data_servers
        .iter()
        .find(|d| {
            let uaddr = String::from_utf8_lossy(&d.listen.na_r_addr.0).into_owned();
            layout::uaddr::from_uaddr(&uaddr).is_ok_and(|a| a.port() == port)
        })
        .cloned()
        .expect("the data server is in the status")
}

/// A full data server (issue 11 item 8). ds3's data lives on a 64 MiB tmpfs. Filled to the
/// last byte, its heartbeats say so and no new file is placed there. With 3 MiB left (above
/// the point where it counts as full), the first 4 MiB file placed there meets NOSPC: the MDS
/// hears it from the client's LAYOUTERROR/LAYOUTRETURN, drops ds3 from that file's mirrors and
/// places no new file there, so every upload goes on through layouts on the other DSs and none
/// falls back to writing through the MDS. Before, a full DS kept being chosen and each of its
/// uploads retried for ~20 s before going through the MDS.
#[test]
fn a_full_data_server_gets_no_new_files_and_nospc_steers_layouts_elsewhere() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    require_cluster_command();
    let t = tempfile::tempdir().unwrap();
    // Declared first, dropped last: unmounted after the cluster stopped. Placement weighs
    // DSs by capacity in whole GiB (at least 1): on file systems under 1 GiB all weigh the
    // same, so ds3 gets its share of files.
    let fs = common::Tmpfs::mount(&t.path().join("cluster").join("ds3"), "64m");
    let _others =
        ["ds1", "ds2"].map(|d| common::Tmpfs::mount(&t.path().join("cluster").join(d), "256m"));
    let cl = Cluster::start(t.path());
    let ds3_port = cl.addr.port() + 3;
    let c = cl.client(true);
    let content = random_bytes(4 * MIB, 11);
    let wait_for = |what: &str, ok: &dyn Fn(&proto::cluster::DsStatus) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let d = ds_on_port(&cl.status().expect("status"), ds3_port);
            if ok(&d) {
                return;
            }
            assert!(Instant::now() < deadline, "ds3 never {what}: {d:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let put_all = |prefix: &str, n: usize| {
        for i in 0..n {
            let path = format!("/{prefix}{i}");
            cl.rt
                .block_on(upload(&c, &path, &mut &content[..]))
                .unwrap_or_else(|e| panic!("{path}: {e}\n{}", cl.log_tail()));
        }
    };

    // Full to the last byte: the heartbeats say so, and no new file goes there.
    let filler = fs.fill("filler", 0);
    wait_for("reported full", &|d| {
        !d.has_room && d.avail_bytes < MIB as u64
    });
    put_all("a", 6);
    assert_eq!(objects_on(&fs.0), 0, "a file was placed on the full ds3");

    // 3 MiB free: room by its heartbeats, but not for a 4 MiB file.
    std::fs::remove_file(filler).unwrap();
    fs.fill("filler", 3 * MIB as u64);
    wait_for("reported with room", &|d| d.has_room);
    put_all("b", 8);
    let st = cl.status().expect("status");
    let ds3 = ds_on_port(&st, ds3_port);
    assert!(
        !ds3.has_room,
        "no upload met NOSPC on ds3 (8 files, each placed there with p = 2/3): {ds3:?}"
    );
    assert!(
        objects_on(&fs.0) <= 1,
        "after a NOSPC, more files were placed on ds3\n{}",
        cl.admin_status()
    );
    assert_eq!(
        st.mds_write_bytes,
        0,
        "uploads fell back to writing through the MDS\n{}",
        cl.admin_status()
    );

    // Every byte is there (the file that met NOSPC lives on its other mirror).
    for name in (0..6)
        .map(|i| format!("/a{i}"))
        .chain((0..8).map(|i| format!("/b{i}")))
    {
        let back = cl.rt.block_on(download(&c, &name)).expect("download");
        assert_eq!(digest(&back), digest(&content), "{name}");
    }
    drop(cl);
}
