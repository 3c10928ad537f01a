//! Courteous lease expiry (issue 11, items 9 and 18): a client whose lease ran out keeps its
//! state until another client's request conflicts with it, is expired then at once (not two
//! leases later), and an unlinked file only it had open is reaped when its lease runs out.
//! The servers here have a 5 s lease, the shortest the server accepts.
use crate::common;
use common::*;
use proto::nfs4::*;
use proto::rpc::Connection;
use proto::xdr::Opaque;
use std::path::Path;
use std::time::{Duration, Instant};

const LEASE: u32 = 5;

/// Past one lease of silence, short of two (when clients were expired before courtesy).
const ONE_LEASE_AND_A_BIT: Duration = Duration::from_millis(6500);

/// A client with file `name` open read-write (created if need be) by open owner `owner`.
async fn open_file(c: &Connection, sid: Sessionid4, seqid: u32, name: &str) -> Stateid4 {
    let r = compound(
        c,
        1,
        vec![
            seq(sid, seqid),
            NfsArgop4::Putrootfh,
            open_create(name, "owner", Fattr4::default()),
        ],
    )
    .await;
    let NfsResop4::Open(OpenRes::Ok(o)) = &r.resarray[2] else {
        panic!("{r:?}")
    };
    o.stateid
}

fn lookup(name: &str) -> NfsArgop4 {
    NfsArgop4::Lookup(LookupArgs {
        objname: Opaque::from(name),
    })
}

/// A write lock on [offset, offset + length) by a new lock owner `owner` under `open`.
fn lock_new(open: Stateid4, owner: &str, offset: u64, length: u64) -> NfsArgop4 {
    NfsArgop4::Lock(LockArgs {
        locktype: NfsLockType4::WriteLt,
        reclaim: false,
        offset,
        length,
        locker: Locker4::NewLockOwner(OpenToLockOwner4 {
            open_seqid: 0,
            open_stateid: open,
            lock_seqid: 0,
            lock_owner: StateOwner4 {
                clientid: 0,
                owner: Opaque::from(owner),
            },
        }),
    })
}

/// Client "lapsing" holds a write lock on [0, 100) of "f"; client "other" has "f" open too.
/// Returns (lapsing's connection, session, open and lock stateids; other's connection,
/// session, open stateid).
async fn lock_holder_and_other(
    s: &mds::Server,
) -> (
    (Connection, Sessionid4, Stateid4, Stateid4),
    (Connection, Sessionid4, Stateid4),
) {
    let a = connect(s).await;
    let (sa, _, _) = new_session(&a, "lapsing", 0, vec![CallbackSecParms4::AuthNone]).await;
    let oa = open_file(&a, sa, 1, "f").await;
    let r = compound(
        &a,
        1,
        vec![
            seq(sa, 2),
            NfsArgop4::Putrootfh,
            lookup("f"),
            lock_new(oa, "la", 0, 100),
        ],
    )
    .await;
    let NfsResop4::Lock(LockRes::Ok(l)) = &r.resarray[3] else {
        panic!("{r:?}")
    };
    let b = connect(s).await;
    let (sb, _, _) = new_session(&b, "other", 0, vec![CallbackSecParms4::AuthNone]).await;
    let ob = open_file(&b, sb, 1, "f").await;
    ((a, sa, oa, l.lock_stateid), (b, sb, ob))
}

#[tokio::test]
async fn a_lapsed_clients_lock_gives_way_at_once_to_a_conflicting_lock() {
    let (s, _d) = server_with_lease(LEASE).await;
    let ((a, sa, _, _), (b, sb, ob)) = lock_holder_and_other(&s).await;
    let lock_b = |seqid, owner: &str| {
        vec![
            seq(sb, seqid),
            NfsArgop4::Putrootfh,
            lookup("f"),
            lock_new(ob, owner, 10, 10),
        ]
    };
    // While the holder renews, its lock stands.
    let r = compound(&b, 1, lock_b(2, "lb")).await;
    assert!(
        matches!(r.resarray[3], NfsResop4::Lock(LockRes::Denied(_))),
        "{r:?}"
    );

    // The holder falls silent for more than a lease (B keeps renewing).
    let t = Instant::now();
    let mut n = 3;
    while t.elapsed() < ONE_LEASE_AND_A_BIT {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let r = compound(&b, 1, vec![seq(sb, n)]).await;
        assert_eq!(r.status, 0, "{r:?}");
        n += 1;
    }
    // B's conflicting lock now expires the courtesy client and is granted: no second lease
    // of waiting.
    let r = compound(&b, 1, lock_b(n, "lb2")).await;
    assert_eq!(
        r.status, 0,
        "still blocked by a client silent for a lease: {r:?}"
    );
    // The holder was expired whole, as knfsd does: its session is gone.
    let r = compound(&a, 1, vec![seq(sa, 3)]).await;
    assert_eq!(r.status, Nfsstat4::Badsession.code(), "{r:?}");
}

#[tokio::test]
async fn a_lapsed_client_that_renews_before_any_conflict_keeps_its_state() {
    let (s, _d) = server_with_lease(LEASE).await;
    let ((a, sa, oa, la), (b, sb, ob)) = lock_holder_and_other(&s).await;
    // Silent for more than two leases (and a sweep), with nobody wanting its lock.
    tokio::time::sleep(Duration::from_secs(2 * u64::from(LEASE) + 4)).await;
    let r = compound(
        &a,
        1,
        vec![
            seq(sa, 3),
            NfsArgop4::TestStateid(TestStateidArgs {
                ts_stateids: vec![oa, la],
            }),
        ],
    )
    .await;
    assert_eq!(r.status, 0, "the courtesy client lost its session: {r:?}");
    let NfsResop4::TestStateid(TestStateidRes::Ok(t)) = &r.resarray[1] else {
        panic!("{r:?}")
    };
    assert_eq!(
        t.tsr_status_codes,
        vec![0, 0],
        "its open and lock must stay"
    );
    // Alive again, its lock stands against B.
    let r = compound(
        &b,
        1,
        vec![
            seq(sb, 2),
            NfsArgop4::Putrootfh,
            lookup("f"),
            lock_new(ob, "lb", 0, 1),
        ],
    )
    .await;
    assert!(
        matches!(r.resarray[3], NfsResop4::Lock(LockRes::Denied(_))),
        "{r:?}"
    );
}

/// Regular files under `dir`, recursively.
fn files_under(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => files_under(&e.path()),
            Ok(t) if t.is_file() => 1,
            _ => 0,
        })
        .sum()
}

#[tokio::test]
async fn an_unlinked_file_held_open_by_a_lapsed_client_is_reaped() {
    let (s, d) = server_with_lease(LEASE).await;
    let chunks = d.path().join("chunks").join("objects");
    let a = connect(&s).await;
    let (sa, _, _) = new_session(&a, "dies", 0, vec![CallbackSecParms4::AuthNone]).await;
    let o = open_file(&a, sa, 1, "doomed").await;
    // It writes, unlinks the file while holding it open (PRESERVE_UNLINKED: the data stays
    // for the open), and dies.
    let r = compound(
        &a,
        1,
        vec![
            seq(sa, 2),
            NfsArgop4::Putrootfh,
            lookup("doomed"),
            NfsArgop4::Write(WriteArgs {
                stateid: o,
                offset: 0,
                stable: StableHow4::FileSync4,
                data: Opaque(vec![9; 64 << 10]),
            }),
            NfsArgop4::Putrootfh,
            NfsArgop4::Remove(RemoveArgs {
                target: Opaque::from("doomed"),
            }),
        ],
    )
    .await;
    assert_eq!(r.status, 0, "{r:?}");
    assert!(files_under(&chunks) > 0, "no data written");
    // After its lease (and the next sweep, half a lease later), the data is gone.
    let t = Instant::now();
    while files_under(&chunks) > 0 {
        assert!(
            t.elapsed() < Duration::from_secs(3 * u64::from(LEASE)),
            "an orphan kept for a dead client: {} files under {chunks:?}",
            files_under(&chunks)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!(
        "orphan reaped {:?} after its holder fell silent",
        t.elapsed()
    );
}
