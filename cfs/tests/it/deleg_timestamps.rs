//! Delegated timestamps (RFC 9754) over layouts, against real `cfs` processes: a write
//! delegation's holder writes the data servers through its layout, sends no LAYOUTCOMMIT (as
//! Linux under a write delegation), and reports its modify time with SETATTR of
//! `time_deleg_modify` in its DELEGRETURN compound (as Linux does). The size the data servers
//! hold is recorded after the return (`mds/src/state/stored_size.rs`); the times recorded
//! are the holder's, not the server's clock at that moment, through every MDS node. Its
//! delegation through a node that dies holds readers up as a plain write delegation does.
use crate::common;
use crate::metadata_cluster::delegation_of_open;
use client::Client;
use common::cluster::Cluster;
use proto::nfs4::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// `a` creates `path` (in the root) with a write delegation with delegated timestamps, opens
/// it and writes `data` through its layout, sending no LAYOUTCOMMIT: the delegation's
/// stateid and the open file.
async fn write_under_times_delegation(
    cl: &Cluster,
    a: &Client,
    path: &str,
    data: &[u8],
) -> (Stateid4, client::OpenFile) {
    let create = Openflag4::Create(Createhow4::Unchecked(Fattr4::default()));
    let want = OPEN4_SHARE_ACCESS_BOTH | OPEN4_SHARE_ACCESS_WANT_DELEG_TIMESTAMPS;
    let d = match delegation_of_open(a, &path[1..], want, create).await {
        OpenDelegation4::WriteAttrsDeleg(d) => d.stateid,
        d => panic!(
            "no write delegation with delegated times: {d:?}\n{}",
            cl.log_tail()
        ),
    };
    let f = a
        .open_path(path, OPEN4_SHARE_ACCESS_WRITE, None)
        .await
        .expect("open");
    // None before the client's first I/O decided on pNFS.
    let before = a.pnfs_stats().unwrap_or_default();
    a.write_all(&f, 0, data, StableHow4::FileSync4)
        .await
        .expect("write through the layout");
    let after = a.pnfs_stats().expect("pNFS stats");
    assert!(
        after.ds_write_bytes - before.ds_write_bytes >= data.len() as u64
            && after.layoutcommits == before.layoutcommits,
        "not written through the layout alone: {before:?} then {after:?}"
    );
    (d, f)
}

/// The holder's time for its writes: after its grant (the server keeps only a later one),
/// and, a while before the server records the size, apart from the server's clock then.
async fn holders_time() -> Nfstime4 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    let t = Nfstime4 {
        seconds: i64::try_from(d.as_secs()).expect("seconds"),
        nseconds: d.subsec_nanos(),
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    t
}

/// SETATTR of `time_deleg_modify` = `t` under delegation `d` on `f`, and, if `give_back`,
/// DELEGRETURN in the same compound (Linux's DELEGRETURN of such a delegation), then `more`.
async fn report_times(
    a: &Client,
    f: &client::OpenFile,
    (d, t): (Stateid4, Nfstime4),
    give_back: bool,
    more: Option<NfsArgop4>,
) {
    let mut ops = client::CompoundBuilder::new()
        .putfh(&f.fh)
        .op(NfsArgop4::Setattr(SetattrArgs {
            stateid: d,
            obj_attributes: FileAttrs {
                time_deleg_modify: Some(t),
                ..Default::default()
            }
            .encode_all(),
        }));
    if give_back {
        ops = ops.op(NfsArgop4::Delegreturn(DelegreturnArgs { deleg_stateid: d }));
    }
    if let Some(op) = more {
        ops = ops.op(op);
    }
    a.compound(ops)
        .await
        .expect("SETATTR of the holder's times");
}

/// Asserts that `who`'s stat of `path` shows `size` and the holder's modify time `t` (and
/// the change time it moves with it: `mds/src/nfs/ops/attr.rs::held_times`).
async fn assert_holders(cl: &Cluster, who: (&str, &Client), path: &str, size: usize, t: Nfstime4) {
    let (_, st) = who.1.stat_path(path).await.expect("stat");
    let want = (size as u64, t, t);
    assert_eq!(
        (st.size, st.mtime, st.ctime),
        want,
        "{}: (size, mtime, ctime) of {path}, not the holder's\n{}",
        who.0,
        cl.log_tail()
    );
}

/// One MDS with data servers: the holder reports its modify time and returns the delegation
/// with the file still open; the size is recorded after the return, and the modify time
/// the holder and another client see is the one it reported, not the server's clock then.
#[test]
fn a_returned_write_delegation_keeps_the_modify_time_its_holder_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let cl = Cluster::start_sized(tmp.path(), 3, &[]);
    let a = cl.client(true);
    let b = cl.client(true);
    cl.rt.block_on(async {
        let data = vec![3u8; 3 << 20];
        let (d, f) = write_under_times_delegation(&cl, &a, "/t", &data).await;
        let t = holders_time().await;
        report_times(&a, &f, (d, t), true, None).await;
        assert_holders(&cl, ("the holder", &a), "/t", data.len(), t).await;
        assert_holders(&cl, ("another client", &b), "/t", data.len(), t).await;
        let _ = a.shutdown().await;
        let _ = b.shutdown().await;
    });
}

/// The same, with the LAYOUTCOMMIT Linux sends when the layout is recalled after its
/// DELEGRETURN (with no time: Linux never sends one), here right after the DELEGRETURN: the
/// modify time stays the one the holder reported, not the commit's.
#[test]
fn a_layoutcommit_after_the_return_keeps_the_modify_time_its_holder_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let cl = Cluster::start_sized(tmp.path(), 3, &[]);
    let a = cl.client(true);
    let b = cl.client(true);
    let data = vec![4u8; 3 << 20];
    let (d, f) = cl
        .rt
        .block_on(write_under_times_delegation(&cl, &a, "/c", &data));
    let (layout, _) = common::cluster::layoutget(&cl, &a, &f, Layoutiomode4::Rw);
    cl.rt.block_on(async {
        let t = holders_time().await;
        let commit = NfsArgop4::Layoutcommit(LayoutcommitArgs {
            loca_offset: 0,
            loca_length: data.len() as u64,
            loca_reclaim: false,
            loca_stateid: layout,
            loca_last_write_offset: Newoffset4::Offset(data.len() as u64 - 1),
            loca_time_modify: Newtime4::Unchanged,
            loca_layoutupdate: Layoutupdate4 {
                lou_type: LAYOUT4_FLEX_FILES,
                lou_body: Default::default(),
            },
        });
        report_times(&a, &f, (d, t), true, Some(commit)).await;
        assert_holders(&cl, ("the holder", &a), "/c", data.len(), t).await;
        assert_holders(&cl, ("another client", &b), "/c", data.len(), t).await;
        let _ = a.shutdown().await;
        let _ = b.shutdown().await;
    });
}

/// Three MDS nodes with data servers. A holder through node 1 reports its modify time and
/// returns; a client of node 2 sees the size written and the holder's time. Then a holder
/// through node 1 reports its time without returning, and node 1 is killed -9: a reader
/// through node 3 is held until the holder has reclaimed at the taker, then sees the size
/// it wrote, and a modify time not before the one it reported (its writes after its last
/// report have no time of its own: the server's is taken, `stored_size::Times`).
#[test]
fn delegated_times_through_one_node_are_what_the_others_report_and_survive_its_kill9() {
    let tmp = tempfile::tempdir().unwrap();
    let cl = Cluster::start_nodes(tmp.path(), 3, 3, &[]);
    let clients = cl.client_addresses();
    let node2: SocketAddr = clients[1];
    let a = cl.client_at(clients[0], true);
    let b = cl.client_at(node2, true);
    let data: Vec<u8> = (0..3u32 << 20).map(|i| (i % 251) as u8).collect();
    let reported = cl.rt.block_on(async {
        let (d, f) = write_under_times_delegation(&cl, &a, "/t", &data).await;
        let t = holders_time().await;
        report_times(&a, &f, (d, t), true, None).await;
        assert_holders(&cl, ("a client of node 2", &b), "/t", data.len(), t).await;

        let (d, f) = write_under_times_delegation(&cl, &a, "/k", &data).await;
        let t = holders_time().await;
        report_times(&a, &f, (d, t), false, None).await;
        t
    });
    let readers = cl.client_at(clients[2], true);
    let probe = cl.client_at(clients[2], true);
    cl.kill9("mds1");
    let limit = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect_timeout(&clients[0], Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < limit, "nobody took node 1's address over");
        std::thread::sleep(Duration::from_millis(50));
    }
    cl.rt.block_on(async {
        let held = tokio::time::timeout(Duration::from_secs(3), probe.stat_path("/k")).await;
        assert!(
            !matches!(held, Ok(Ok(_))),
            "a stat got through while the holder, not yet back, held node 1's delegation: {held:?}"
        );
        a.recover()
            .await
            .expect("the holder reconnects to the taker");
        a.reclaim_complete().await.expect("RECLAIM_COMPLETE");
        let (_, st) = tokio::time::timeout(Duration::from_secs(20), readers.stat_path("/k"))
            .await
            .expect("a reader still held up 20 s after the holder reclaimed")
            .expect("stat through node 3");
        assert_eq!(
            st.size,
            data.len() as u64,
            "the size written\n{}",
            cl.log_tail()
        );
        assert!(
            st.mtime >= reported,
            "modify time {:?} before the holder's report {reported:?}",
            st.mtime
        );
        let f = readers
            .open_path("/k", OPEN4_SHARE_ACCESS_READ, None)
            .await
            .expect("open /k through node 3");
        let (back, _) = readers
            .read_full(&f, 0, data.len() as u32)
            .await
            .expect("read /k through node 3");
        assert!(back == data, "other bytes than the holder wrote");
        let _ = readers.shutdown().await;
        let _ = b.shutdown().await;
    });
}
