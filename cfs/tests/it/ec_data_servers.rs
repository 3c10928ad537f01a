//! The data-server half of erasure coding (issue 13), on real processes: `cfs cluster up` with
//! six (4+2) or three (2+1) data servers. A file written to one data server through its layout
//! (a mirror copy) is encoded by that data server onto k+m servers (the encode job, driven the
//! way the MDS will drive it: a signed shard-program call), then read back through shard
//! handles as a striped-layout client would: `direct` at the kernel's sparse offsets,
//! `rebuild` and `assembled` after kill -9 of m servers; a flipped byte in a shard on disk is
//! never served; a wiped server's shard is repaired and its sum checked.
use crate::common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use client::{CreateMode, SetAttrs};
use common::cluster::{ds_write, rw_layout, signal, Cluster};
use common::random_bytes;
use layout::{ClusterSecret, DsId, FileId, ShardCap, ShardKind};
use proto::nfs3::Nfsstat3;
use proto::nfs3_client::Nfs3Client;
use proto::nfs4::OPEN4_SHARE_ACCESS_BOTH;
use proto::shard::*;

const EPOCH: u64 = 7;

// Clusters of four to seven processes on a machine that may have two cores: one at a time.
use common::SERIAL;

/// A data server this test restarted: SIGKILL and reaped on drop, by PID.
struct Restarted(std::process::Child);

impl Drop for Restarted {
    fn drop(&mut self) {
        signal(self.0.id(), "-KILL");
        let _ = self.0.wait();
    }
}

fn secret(cl: &Cluster) -> ClusterSecret {
    let text = std::fs::read_to_string(cl.dir.join("cluster").join("secret")).expect("secret");
    ClusterSecret::from_passphrase(&text).expect("secret")
}

/// Every data server, in role order (ds1, ds2, ...), as a placement entry.
fn servers(cl: &Cluster) -> Vec<ShardServer> {
    let st = cl.status().expect("status");
    let mut v: Vec<(String, ShardServer)> = st
        .data_servers
        .iter()
        .map(|d| {
            (
                cl.role_of(d.ds_id),
                ShardServer {
                    ds_id: d.ds_id,
                    addr: cl.ds_addr(d.ds_id).to_string(),
                },
            )
        })
        .collect();
    v.sort_by_key(|(role, _)| role[2..].parse::<u32>().unwrap_or(0));
    v.into_iter().map(|(_, s)| s).collect()
}

/// Writes `data` to a new file through its RW layout (both mirrors, FILE_SYNC); returns its
/// file id and the first mirror's (DS id, address): a data server holding all the bytes.
fn mirrored_file(cl: &Cluster, path: &str, data: &[u8]) -> (u64, ShardServer) {
    let c = cl.client(false);
    let f = cl
        .rt
        .block_on(c.open_path(
            path,
            OPEN4_SHARE_ACCESS_BOTH,
            Some(CreateMode::Unchecked(SetAttrs {
                mode: Some(0o644),
                size: Some(0),
                ..Default::default()
            })),
        ))
        .expect("open");
    let (_, mirrors) = rw_layout(cl, &c, &f);
    for m in &mirrors {
        for (i, piece) in data.chunks(1 << 20).enumerate() {
            cl.rt
                .block_on(ds_write(m.addr, &m.fh, (i as u64) << 20, piece))
                .expect("write through the layout");
        }
    }
    let file = layout::peek(&mirrors[0].fh).expect("handle").file.0;
    let _ = cl.rt.block_on(c.shutdown());
    (
        file,
        ShardServer {
            ds_id: mirrors[0].ds_id,
            addr: mirrors[0].addr.to_string(),
        },
    )
}

async fn shard_client(addr: &str) -> ShardClient {
    ShardClient::connect(
        addr.parse().expect("addr"),
        Duration::from_secs(2),
        Duration::from_secs(60),
    )
    .await
    .expect("connect to the shard program")
}

/// The dense shards the encoder must produce (as stored: a data shard holds only file bytes,
/// a parity shard as much as the longest data shard), computed here with `ec` alone.
fn expected_shards(data: &[u8], g: &ec::Geometry) -> Vec<Vec<u8>> {
    let mut enc = ec::Encoder::new(*g).expect("encoder");
    let mut out = vec![Vec::new(); g.width() as usize];
    let unit = g.unit() as usize;
    for stripe in data.chunks(g.stripe_data() as usize) {
        let st = enc.encode(stripe).expect("encode");
        for (i, shard) in st.shards.iter().enumerate() {
            let len = if i < g.k() as usize {
                stripe.len().saturating_sub(i * unit).min(unit)
            } else {
                stripe.len().min(unit)
            };
            out[i].extend_from_slice(&shard[..len]);
        }
    }
    out
}

struct Coded {
    file: u64,
    g: ec::Geometry,
    placement: Vec<ShardServer>,
    data: Vec<u8>,
    sums: Vec<[u8; 32]>,
    secret: ClusterSecret,
}

impl Coded {
    fn handle(&self, kind: ShardKind, on: &ShardServer) -> Vec<u8> {
        ShardCap {
            file: FileId(self.file),
            kind,
            k: self.g.k() as u8,
            m: self.g.m() as u8,
            unit_shift: self.g.unit().trailing_zeros() as u8,
            epoch: EPOCH,
            placement: layout::placement_id(&self.placement),
            key_id: 0,
        }
        .mint(&self.secret.cap_key(), DsId(on.ds_id))
        .expect("valid shard handle")
        .to_vec()
    }

    fn shard_ref(&self, index: u32) -> ShardRef {
        ShardRef {
            file: self.file,
            epoch: EPOCH,
            index,
            k: self.g.k(),
            m: self.g.m(),
            unit_shift: self.g.unit().trailing_zeros(),
        }
    }
}

/// Runs the encode job on `source` and checks the sums against `ec`'s own.
fn encode(cl: &Cluster, data: Vec<u8>, g: ec::Geometry, placement: Vec<ShardServer>) -> Coded {
    let path = format!("/ec-{}-{}", g.k(), g.m());
    let (file, source) = mirrored_file(cl, &path, &data);
    let secret = secret(cl);
    let args = secret.sign_shard(EncodeArgs {
        to: source.ds_id,
        file,
        epoch: EPOCH,
        k: g.k(),
        m: g.m(),
        unit_shift: g.unit().trailing_zeros(),
        offset: 0,
        len: data.len() as u64,
        file_len: data.len() as u64,
        placement: placement.clone(),
        mac: [0; 32],
    });
    // A call signed for another data server is refused by this one.
    let wrong = secret.sign_shard(EncodeArgs {
        to: source.ds_id ^ 1,
        ..args.clone()
    });
    let sums = cl.rt.block_on(async {
        let c = shard_client(&source.addr).await;
        let refused = c.encode(&wrong).await.expect_err("misaddressed ENCODE");
        assert_eq!(refused.code(), Some(SHARD_ERR_AUTH));
        let mut forged = args.clone();
        forged.mac[0] ^= 1;
        let refused = c.encode(&forged).await.expect_err("forged ENCODE");
        assert_eq!(refused.code(), Some(SHARD_ERR_AUTH));
        c.encode(&args).await.expect("encode job")
    });
    let want: Vec<[u8; 32]> = expected_shards(&data, &g)
        .iter()
        .map(|s| ec::sums::shard_sum(s))
        .collect();
    assert_eq!(sums, want, "shard sums differ from the codec's");
    Coded {
        file,
        g,
        placement,
        data,
        sums,
        secret,
    }
}

async fn nfs(addr: &str) -> Nfs3Client {
    let a: SocketAddr = addr.parse().expect("addr");
    Nfs3Client::connect(&[a], Duration::from_secs(2), 0, 0)
        .await
        .expect("NFSv3 connect")
}

fn status_of(e: proto::nfs3_client::Nfs3ClientError) -> Option<Nfsstat3> {
    e.status()
}

/// Reads through every data shard's `direct` handle at the kernel's sparse offsets (unit u
/// from server u % k, whole units and an unaligned piece) and compares with the file.
fn check_direct(cl: &Cluster, c: &Coded, skip: &[u32]) {
    let unit = c.g.unit();
    let units = (c.data.len() as u64).div_ceil(unit);
    cl.rt.block_on(async {
        for i in (0..c.g.k()).filter(|i| !skip.contains(i)) {
            let on = &c.placement[i as usize];
            let fh = c.handle(ShardKind::Direct(i as u8), on);
            let n = nfs(&on.addr).await;
            for u in (0..units).filter(|u| u % u64::from(c.g.k()) == u64::from(i)) {
                let off = u * unit;
                let end = (off + unit).min(c.data.len() as u64);
                // a larger count than the unit: the data server stops at the unit's end
                let r = n.read(&fh, off, 1 << 20).await.expect("direct READ");
                assert!(
                    r.data == c.data[off as usize..end as usize],
                    "shard {i} unit {u}: {} bytes differ",
                    r.data.len()
                );
                let mid = off + 4096 + 17;
                if mid < end {
                    let r = n.read(&fh, mid, 5000).await.expect("direct READ");
                    let want = &c.data[mid as usize..(mid + 5000).min(end) as usize];
                    assert!(r.data == want, "shard {i}: unaligned read differs");
                }
            }
            // An offset of another shard is the layout's or the client's mistake.
            let other = (u64::from(i) + 1) % u64::from(c.g.k()) * unit;
            let e = n
                .read(&fh, other, 4096)
                .await
                .expect_err("other shard's offset");
            assert_eq!(status_of(e), Some(Nfsstat3::Inval));
            // Never a write on a shard handle.
            let e = n
                .write(&fh, off_of(i, unit), b"x", proto::nfs3::StableHow::FileSync)
                .await
                .expect_err("WRITE on a shard handle");
            assert_eq!(status_of(e), Some(Nfsstat3::Rofs));
            n.close();
        }
    });
}

fn off_of(i: u32, unit: u64) -> u64 {
    u64::from(i) * unit
}

/// The whole file through an `assembled` handle on `on`, 1 MiB READs.
fn read_assembled(cl: &Cluster, c: &Coded, on: &ShardServer) -> Vec<u8> {
    let fh = c.handle(ShardKind::Assembled, on);
    cl.rt.block_on(async {
        let n = nfs(&on.addr).await;
        let mut out = Vec::new();
        loop {
            let r = n
                .read(&fh, out.len() as u64, 1 << 20)
                .await
                .expect("assembled READ");
            out.extend_from_slice(&r.data);
            if r.eof || r.data.is_empty() {
                break;
            }
        }
        n.close();
        out
    })
}

/// Data shard `i`'s file bytes through a `rebuild(i)` handle on `on`, at the kernel's offsets.
fn check_rebuild(cl: &Cluster, c: &Coded, i: u32, on: &ShardServer) {
    let unit = c.g.unit();
    let units = (c.data.len() as u64).div_ceil(unit);
    let fh = c.handle(ShardKind::Rebuild(i as u8), on);
    cl.rt.block_on(async {
        let n = nfs(&on.addr).await;
        for u in (0..units).filter(|u| u % u64::from(c.g.k()) == u64::from(i)) {
            let off = u * unit;
            let end = (off + unit).min(c.data.len() as u64);
            let r = n.read(&fh, off, 1 << 20).await.expect("rebuild READ");
            assert!(
                r.data == c.data[off as usize..end as usize],
                "rebuilt shard {i} unit {u} differs"
            );
        }
        n.close();
    });
}

/// The first chunk file of shard `index`'s object on the data server holding it, and where
/// block `block`'s data starts in it.
fn shard_chunk_file(cl: &Cluster, c: &Coded, index: u32, block: u64) -> (std::path::PathBuf, u64) {
    let ds = &c.placement[index as usize];
    let id = ds::shard_object_id(c.file, EPOCH, index);
    let (path, data_start) = common::ec::chunk_file(cl, &cl.role_of(ds.ds_id), id);
    (path, data_start + block * 4096)
}

fn repair(cl: &Cluster, c: &Coded, index: u32) -> Result<[u8; 32], ShardCallError> {
    let on = &c.placement[index as usize];
    let args = c.secret.sign_shard(RepairArgs {
        to: on.ds_id,
        shard: c.shard_ref(index),
        offset: 0,
        len: c.data.len() as u64,
        file_len: c.data.len() as u64,
        expected: c.sums[index as usize],
        placement: c.placement.clone(),
        mac: [0; 32],
    });
    cl.rt
        .block_on(async { shard_client(&on.addr).await.repair(&args).await })
}

fn wait_shard_program(cl: &Cluster, addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let a: SocketAddr = addr.parse().expect("addr");
    while std::net::TcpStream::connect(a).is_err() {
        assert!(
            Instant::now() < deadline,
            "{addr} not back in 30 s:\n{}",
            cl.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn four_two_direct_rebuild_assembled_corruption_and_repair() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let t = tempfile::tempdir().expect("tempdir");
    let cl = Cluster::start_sized(t.path(), 6, &[]);
    // 256 KiB units: a 1 MiB stripe; 5 stripes and a partial one (the tail reaches shard 2).
    let g = ec::Geometry::four_two(256 << 10).expect("geometry");
    let data = random_bytes(5 * (1 << 20) + 2 * (256 << 10) + 12345, 0xec42);
    let placement = servers(&cl);
    assert_eq!(placement.len(), 6);
    let c = encode(&cl, data, g, placement);

    check_direct(&cl, &c, &[]);
    assert!(read_assembled(&cl, &c, &c.placement[4]) == c.data);

    // A flipped byte in shard 1 on disk: that block is never served...
    let (path, at) = shard_chunk_file(&cl, &c, 1, 2);
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .expect("open shard chunk file");
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, at + 100).expect("read");
        f.write_all_at(&[b[0] ^ 0x40], at + 100).expect("flip");
        f.sync_all().expect("sync");
    }
    let fh = c.handle(ShardKind::Direct(1), &c.placement[1]);
    // dense block 2 of shard 1 is in its first unit: file offset 1 · unit + 2 · 4 KiB
    let off = g.unit() + 2 * 4096;
    let e = cl
        .rt
        .block_on(async { nfs(&c.placement[1].addr).await.read(&fh, off, 4096).await })
        .expect_err("a corrupt block was served");
    assert_eq!(status_of(e), Some(Nfsstat3::Io));
    // ...a rebuild read of the same shard elsewhere gives the right bytes...
    check_rebuild(&cl, &c, 1, &c.placement[5]);
    assert!(read_assembled(&cl, &c, &c.placement[0]) == c.data);
    // ...and a repair rewrites it in place from the others, its sum checked.
    assert_eq!(repair(&cl, &c, 1).expect("repair shard 1"), c.sums[1]);
    check_direct(&cl, &c, &[]);

    // kill -9 two data servers (data shards 0 and 2): reads rebuild.
    let dead = [0u32, 2];
    for i in dead {
        cl.kill9(&cl.role_of(c.placement[i as usize].ds_id));
    }
    check_direct(&cl, &c, &dead);
    for i in dead {
        check_rebuild(&cl, &c, i, &c.placement[4]);
    }
    assert!(read_assembled(&cl, &c, &c.placement[5]) == c.data);
    assert!(read_assembled(&cl, &c, &c.placement[1]) == c.data);

    // One of them comes back wiped: its shard is repaired from the survivors (one is still
    // down: the repair reads the k that are left), its sum checked, and it serves again.
    let role = cl.role_of(c.placement[0].ds_id);
    let dir = cl.ds_dir(&role);
    for sub in ["chunks", "shards", "sizes"] {
        let _ = std::fs::remove_dir_all(dir.join(sub));
    }
    let _restarted = Restarted(cl.start_ds(&role));
    wait_shard_program(&cl, &c.placement[0].addr);
    let fh = c.handle(ShardKind::Direct(0), &c.placement[0]);
    let e = cl
        .rt
        .block_on(async { nfs(&c.placement[0].addr).await.read(&fh, 0, 4096).await })
        .expect_err("a wiped server served a shard");
    assert_eq!(status_of(e), Some(Nfsstat3::Stale));
    // A repair whose expected sum is wrong writes nothing servable.
    let mut wrong = Coded {
        sums: c.sums.clone(),
        secret: c.secret.clone(),
        data: c.data.clone(),
        placement: c.placement.clone(),
        ..c
    };
    wrong.sums[0][0] ^= 1;
    let e = repair(&cl, &wrong, 0).expect_err("a repair with the wrong sum");
    assert_eq!(e.code(), Some(SHARD_ERR_SUM));
    assert_eq!(repair(&cl, &c, 0).expect("repair shard 0"), c.sums[0]);
    check_direct(&cl, &c, &[2]);
    assert!(read_assembled(&cl, &c, &c.placement[0]) == c.data);
}

#[test]
fn two_one_direct_rebuild_and_assembled_after_a_kill9() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let t = tempfile::tempdir().expect("tempdir");
    let cl = Cluster::start_sized(t.path(), 3, &[]);
    // 64 KiB units, 9 stripes and a tail inside shard 0.
    let g = ec::Geometry::two_one(64 << 10).expect("geometry");
    let data = random_bytes(9 * (128 << 10) + 40_000, 0x21);
    let placement = servers(&cl);
    let c = encode(&cl, data, g, placement);
    check_direct(&cl, &c, &[]);
    assert!(read_assembled(&cl, &c, &c.placement[2]) == c.data);

    cl.kill9(&cl.role_of(c.placement[1].ds_id));
    check_direct(&cl, &c, &[1]);
    check_rebuild(&cl, &c, 1, &c.placement[2]);
    check_rebuild(&cl, &c, 1, &c.placement[0]);
    assert!(read_assembled(&cl, &c, &c.placement[0]) == c.data);
    assert!(read_assembled(&cl, &c, &c.placement[2]) == c.data);
    // With two of three gone nothing can be rebuilt: an error, never wrong bytes.
    cl.kill9(&cl.role_of(c.placement[2].ds_id));
    let fh = c.handle(ShardKind::Rebuild(1), &c.placement[0]);
    let e = cl
        .rt
        .block_on(async {
            nfs(&c.placement[0].addr)
                .await
                .read(&fh, g.unit(), 4096)
                .await
        })
        .expect_err("rebuilt from one shard of a 2+1 stripe");
    assert_eq!(status_of(e), Some(Nfsstat3::Io));
}
