//! Cross-shard transactions: what a crash at each step of the coordinator leaves, and that
//! recovery settles it with no dangling entry, no lost file and no lock left.

use std::time::{Duration, Instant};

use super::*;
use crate::namespace::coordinator::Step;

/// A namespace of 8 shards whose recovery settles a transaction 300 ms after it stalled.
fn open_quick(rt: &tokio::runtime::Runtime, dir: &std::path::Path) -> Namespace {
    let opts = Options {
        shards: 8,
        txn_stale: Duration::from_millis(300),
        spread_directories: Some(true),
        ..Options::default()
    };
    rt.block_on(Namespace::open_with(dir, opts))
        .expect("open namespace")
}

/// Two directories under the root on two shards other than each other's.
async fn two_dirs(ns: &Namespace) -> (u64, u64) {
    let a = mk(ns, ROOT_INO, "a", FileKind::Directory).await;
    for n in 0..64 {
        let b = mk(ns, ROOT_INO, &format!("b{n}"), FileKind::Directory).await;
        if ShardId::of_ino(b) != ShardId::of_ino(a) {
            return (a, b);
        }
    }
    panic!("no two directories on two shards");
}

fn rename(src_parent: u64, src: u64, dst_parent: u64) -> Command {
    Command::Rename {
        src_parent,
        src_name: b"f".to_vec(),
        src,
        dst_parent,
        dst_name: b"g".to_vec(),
        dst: None,
        time: Time::now(),
    }
}

/// Prepared records or locks anywhere, and decisions other than aborts.
fn unsettled(ns: &Namespace) -> usize {
    let d = ns.snapshot().unwrap().dump().unwrap();
    d.txns
        .values()
        .filter(|e| {
            e.prepared.is_some()
                || matches!(
                    e.decision,
                    Some(crate::namespace::txn::Decision::Commit { .. })
                )
        })
        .count()
}

/// What a client's lookups of a/f and b/g answer right now (`lookup_settled`).
fn settled_names(ns: &Namespace, a: u64, b: u64) -> (Result<u64, FsError>, Result<u64, FsError>) {
    (
        ns.lookup_settled(a, b"f").map(|i| i.ino),
        ns.lookup_settled(b, b"g").map(|i| i.ino),
    )
}

/// While a rename's transaction is stopped at `stop`, a client's lookup of either name waits
/// (`Busy`) rather than answer from half the shards, and never sees the file under both names;
/// once recovery has settled it, the waiting lookups answer `(at_a, at_b)`.
async fn reads_wait_for(
    ns: &Namespace,
    stop: Step,
    (a, b, f): (u64, u64, u64),
    settled: (Result<u64, FsError>, Result<u64, FsError>),
) {
    let (at_a, at_b) = settled_names(ns, a, b);
    assert!(
        at_a == Err(FsError::Busy) || at_b == Err(FsError::Busy),
        "{stop:?}: neither lookup waits: {at_a:?} {at_b:?}"
    );
    if stop == Step::CommittedOne {
        // b's part (the new name) is committed, a's (the removal) not: plain reads see the
        // file under both names, a client's lookup in a waits.
        assert_eq!(ns.lookup(a, b"f").map(|i| i.ino), Ok(f));
        assert_eq!(ns.lookup(b, b"g").map(|i| i.ino), Ok(f));
        assert_eq!((at_a, at_b), (Err(FsError::Busy), Ok(f)));
        assert_eq!(ns.getattr_settled(a), Err(FsError::Busy));
    }
    // Waiting lookups, as the NFS handlers make them (`settle`, up to READ_WAIT each, and
    // again while recovery has not run): Busy or the settled answer, never both names.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let busy = |e: &FsError| *e == FsError::Busy;
        let at_a =
            crate::namespace::settle(|| ns.lookup_settled(a, b"f").map(|i| i.ino), busy).await;
        let at_b =
            crate::namespace::settle(|| ns.lookup_settled(b, b"g").map(|i| i.ino), busy).await;
        assert!(
            !(at_a.is_ok() && at_b.is_ok()),
            "{stop:?}: the file under both names: {at_a:?} {at_b:?}"
        );
        if at_a != Err(FsError::Busy) && at_b != Err(FsError::Busy) {
            assert_eq!((at_a, at_b), settled, "{stop:?}");
            break;
        }
        assert!(Instant::now() < deadline, "{stop:?}: reads still wait");
    }
}

async fn settle(ns: &Namespace) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while unsettled(ns) > 0 {
        assert!(Instant::now() < deadline, "transactions not settled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// After a crash at `stop`, recovery ends the rename of a/f to b/g done (`done`) or not.
fn crash_at(stop: Step, done: bool) {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let ns = open_quick(&rt, dir.path());
    rt.block_on(async {
        let (a, b) = two_dirs(&ns).await;
        let f = mk(&ns, a, "f", FileKind::Regular).await;
        assert_eq!(ShardId::of_ino(f), ShardId::of_ino(a));
        ns.txn_attempt(&rename(a, f, b), Some(stop)).await.unwrap();
        assert!(unsettled(&ns) > 0, "{stop:?} left nothing to recover");
        let after = if done {
            (Err(FsError::NotFound), Ok(f))
        } else {
            (Ok(f), Err(FsError::NotFound))
        };
        reads_wait_for(&ns, stop, (a, b, f), after).await;
        // A create in either directory waits for the locks (Busy, retried), then succeeds.
        mk(&ns, a, "after", FileKind::Regular).await;
        mk(&ns, b, "after", FileKind::Regular).await;
        settle(&ns).await;
        let at_a = ns.lookup(a, b"f").map(|i| i.ino);
        let at_b = ns.lookup(b, b"g").map(|i| i.ino);
        if done {
            assert_eq!((at_a, at_b), (Err(FsError::NotFound), Ok(f)), "{stop:?}");
        } else {
            assert_eq!((at_a, at_b), (Ok(f), Err(FsError::NotFound)), "{stop:?}");
        }
        assert_eq!(ns.getattr(f).unwrap().nlink, 1);
        assert!(ns.orphans().unwrap().is_empty());
        // The file moves the rest of the way as an ordinary transaction.
        let (from, to) = if done { (b, a) } else { (a, b) };
        let name: &[u8] = if done { b"g" } else { b"f" };
        let back = Command::Rename {
            src_parent: from,
            src_name: name.to_vec(),
            src: f,
            dst_parent: to,
            dst_name: b"h".to_vec(),
            dst: None,
            time: Time::now(),
        };
        ns.execute(back).await.unwrap();
        assert_eq!(ns.lookup(to, b"h").unwrap().ino, f);
        settle(&ns).await;
    });
    // And the same after a restart: what recovery wrote is durable.
    drop(ns);
    let ns = open_quick(&rt, dir.path());
    assert_eq!(unsettled(&ns), 0);
}

#[test]
fn a_coordinator_dead_after_its_locks_is_rolled_back() {
    crash_at(Step::Locked, false);
}

#[test]
fn a_coordinator_dead_after_its_decision_is_carried_out() {
    crash_at(Step::Decided, true);
}

#[test]
fn a_coordinator_dead_after_one_commit_is_carried_out() {
    crash_at(Step::CommittedOne, true);
}

#[test]
fn a_restart_in_the_middle_recovers_from_the_durable_records() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let ns = open_quick(&rt, dir.path());
    let (a, b, f) = rt.block_on(async {
        let (a, b) = two_dirs(&ns).await;
        let f = mk(&ns, a, "f", FileKind::Regular).await;
        ns.txn_attempt(&rename(a, f, b), Some(Step::Decided))
            .await
            .unwrap();
        (a, b, f)
    });
    drop(ns);
    let ns = open_quick(&rt, dir.path());
    rt.block_on(settle(&ns));
    assert!(ns.lookup(a, b"f").is_err());
    assert_eq!(ns.lookup(b, b"g").unwrap().ino, f);
}

#[test]
fn a_directory_on_another_shard_keeps_posix_rules() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let ns = open_quick(&rt, dir.path());
    rt.block_on(async {
        let (a, b) = two_dirs(&ns).await;
        // a/sub lives on a shard of its own; its parent counts it.
        let sub = mk(&ns, a, "sub", FileKind::Directory).await;
        assert_eq!(ns.getattr(a).unwrap().nlink, 3);
        assert_eq!(ns.getattr(sub).unwrap().parent, a);
        mk(&ns, sub, "x", FileKind::Regular).await;
        // Not empty: rmdir refuses, across shards as within one.
        let rmdir = |parent, child| Command::Rmdir {
            parent,
            name: b"sub".to_vec(),
            child,
            time: Time::now(),
        };
        assert_eq!(ns.execute(rmdir(a, sub)).await, Err(FsError::NotEmpty));
        // Moving a directory under itself is refused, however many shards the walk crosses.
        let deep = mk(&ns, sub, "deep", FileKind::Directory).await;
        let into_itself = Command::Rename {
            src_parent: ROOT_INO,
            src_name: b"a".to_vec(),
            src: a,
            dst_parent: deep,
            dst_name: b"a".to_vec(),
            dst: None,
            time: Time::now(),
        };
        assert_eq!(ns.execute(into_itself).await, Err(FsError::Invalid));
        // A hard link across shards, then both names removed: the file goes when the last does.
        let x = ns.lookup(sub, b"x").unwrap().ino;
        let link = Command::Link {
            ino: x,
            parent: b,
            name: b"lx".to_vec(),
            time: Time::now(),
        };
        ns.execute(link).await.unwrap();
        assert_eq!(ns.getattr(x).unwrap().nlink, 2);
        let unlink = |parent, name: &[u8]| Command::Unlink {
            parent,
            name: name.to_vec(),
            child: x,
            time: Time::now(),
        };
        ns.execute(unlink(b, b"lx")).await.unwrap();
        let out = ns.execute(unlink(sub, b"x")).await.unwrap();
        assert_eq!(out.inode.unwrap().nlink, 0);
        assert_eq!(ns.orphans().unwrap(), vec![x]);
        // Emptied, the directory goes, and its parent's count with it.
        let deep_rm = Command::Rmdir {
            parent: sub,
            name: b"deep".to_vec(),
            child: deep,
            time: Time::now(),
        };
        ns.execute(deep_rm).await.unwrap();
        ns.execute(rmdir(a, sub)).await.unwrap();
        assert_eq!(ns.getattr(a).unwrap().nlink, 2);
        assert!(matches!(ns.getattr(sub), Err(FsError::Stale(_))));
        settle(&ns).await;
    });
}

fn request(seqid: u32, cmd: Command) -> Command {
    Command::Request {
        req: crate::namespace::ClientRequest {
            session: [7; 16],
            slot: 0,
            seqid,
            op: 2,
        },
        at: Time::now(),
        cmd: Box::new(cmd),
        answer: None,
    }
}

/// A client's rename whose coordinator died at `stop`, sent again (as the client does, to the
/// node that took the address over): once done, its first answer; never "not found".
fn sent_again_after_a_crash_at(stop: Step) {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let ns = open_quick(&rt, dir.path());
    rt.block_on(async {
        let (a, b) = two_dirs(&ns).await;
        let f = mk(&ns, a, "f", FileKind::Regular).await;
        let cmd = request(5, rename(a, f, b));
        let first = ns.txn_attempt(&cmd, Some(stop)).await.unwrap();
        // Locked only: recovery aborts the first attempt and the copy is carried out.
        let again = ns.execute(cmd.clone()).await.unwrap();
        if stop != Step::Locked {
            assert_eq!(again, first, "{stop:?}: the first answer");
        }
        settle(&ns).await;
        assert_eq!(ns.lookup(b, b"g").unwrap().ino, f);
        assert_eq!(ns.lookup(a, b"f"), Err(FsError::NotFound));
        // Once more, after recovery: still the answer given.
        assert_eq!(ns.execute(cmd).await.unwrap(), again);
        // The slot's next request is another request.
        assert_eq!(
            ns.execute(request(6, rename(a, f, b))).await.unwrap_err(),
            FsError::NotFound
        );
    });
}

#[test]
fn a_client_request_sent_again_after_its_coordinator_died_is_done_once() {
    for stop in [Step::Locked, Step::Decided, Step::CommittedOne] {
        sent_again_after_a_crash_at(stop);
    }
}

#[test]
fn a_client_request_on_one_shard_sent_again_gets_its_first_answer() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let ns = open_quick(&rt, dir.path());
    rt.block_on(async {
        let (a, _) = two_dirs(&ns).await;
        let f = mk(&ns, a, "f", FileKind::Regular).await;
        let remove = request(
            9,
            Command::Remove {
                parent: a,
                name: b"f".to_vec(),
                child: f,
                time: Time::now(),
            },
        );
        let first = ns.execute(remove.clone()).await.unwrap();
        assert_eq!(ns.execute(remove.clone()).await.unwrap(), first);
        // Where a client that finds the name gone looks (`Command::home`).
        let crate::namespace::Command::Request { req, .. } = &remove else {
            unreachable!()
        };
        assert_eq!(ns.answered_here(ShardId::of_ino(a), req), Some(first));
        // Without the request, the same command is a new one.
        let Command::Request { cmd, .. } = remove else {
            unreachable!()
        };
        assert_eq!(ns.execute(*cmd).await.unwrap_err(), FsError::NotFound);
    });
}

/// A client's MKDIR whose coordinator died once it had decided, sent again through the node
/// that took the address over, which places the new directory on another shard (it leads
/// others): the first answer, one directory, never "exists".
#[test]
fn a_mkdir_sent_again_through_another_node_is_done_once() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let ns = open_quick(&rt, dir.path());
    rt.block_on(async {
        let (a, _) = two_dirs(&ns).await;
        let home = ShardId::of_ino(a);
        let mut elsewhere = (0..8u16).map(ShardId).filter(|s| *s != home);
        let (first_shard, second_shard) = (elsewhere.next().unwrap(), elsewhere.next().unwrap());
        let mkdir_on = |shard| {
            request(
                11,
                Command::Place {
                    shard,
                    cmd: Box::new(create(a, "d", FileKind::Directory)),
                },
            )
        };
        let first = ns
            .txn_attempt(&mkdir_on(first_shard), Some(Step::Decided))
            .await
            .unwrap();
        let again = ns.execute(mkdir_on(second_shard)).await.unwrap();
        assert_eq!(again, first, "the first answer");
        settle(&ns).await;
        let d = ns.lookup(a, b"d").unwrap().ino;
        assert_eq!(Some(d), first.inode.map(|i| i.ino));
        assert_eq!(ShardId::of_ino(d), first_shard);
        // The slot's next request is another request.
        assert_eq!(
            ns.execute(request(12, create(a, "d", FileKind::Directory)))
                .await
                .unwrap_err(),
            FsError::Exists
        );
    });
}

/// A rename sent again while the transaction its first attempt left (decided, not carried out)
/// still holds the target directory, whose shard comes after the coordinating one: the
/// coordinator's "answered before" wins over the other shard's refusal in the same round.
#[test]
fn a_first_answer_wins_over_a_refusal_in_the_same_round() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let ns = open_quick(&rt, dir.path());
    rt.block_on(async {
        let mut dirs = Vec::new();
        for n in 0..16 {
            dirs.push(mk(&ns, ROOT_INO, &format!("d{n}"), FileKind::Directory).await);
        }
        dirs.sort_by_key(|d| ShardId::of_ino(*d));
        let (a, b) = (dirs[0], dirs[dirs.len() - 1]);
        assert!(
            ShardId::of_ino(a) < ShardId::of_ino(b),
            "directories on two shards"
        );
        let f = mk(&ns, a, "f", FileKind::Regular).await;
        let cmd = request(21, rename(a, f, b));
        let first = ns.txn_attempt(&cmd, Some(Step::Decided)).await.unwrap();
        // Before recovery (300 ms) carries the decision out: the target is still held.
        let again = ns.txn_attempt(&cmd, None).await;
        assert_eq!(again, Ok(first));
    });
}
