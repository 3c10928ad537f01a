//! Group commit: concurrent commands share transactions and fsyncs.

use std::sync::Arc;
use std::time::Instant;

use super::*;

#[test]
fn concurrent_creates_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let ns = open(&rt, dir.path());
    const TASKS: u64 = 64;
    const PER_TASK: u64 = 8;

    // One at a time: every command is its own durable commit.
    let base = ns.stats();
    let t0 = Instant::now();
    rt.block_on(async {
        for i in 0..PER_TASK * 4 {
            mk(&ns, ROOT_INO, &format!("seq{i}"), FileKind::Regular).await;
        }
    });
    let seq_time = t0.elapsed();
    let seq = ns.stats();
    assert_eq!(seq.commands - base.commands, PER_TASK * 4);
    // Each waited for its own fdatasync (Raft's bookkeeping records ride along, unsynced).
    assert_eq!(seq.durable_commits - base.durable_commits, PER_TASK * 4);

    // Many at once.
    let t0 = Instant::now();
    rt.block_on(async {
        let barrier = Arc::new(tokio::sync::Barrier::new(TASKS as usize));
        let mut handles = Vec::new();
        for task in 0..TASKS {
            let ns = ns.clone();
            let barrier = barrier.clone();
            handles.push(tokio::spawn(async move {
                barrier.wait().await;
                for i in 0..PER_TASK {
                    let name = format!("t{task}-{i}");
                    let ino = mk(&ns, ROOT_INO, &name, FileKind::Regular).await;
                    // Read-your-writes from another task's point of view is covered by execute
                    // returning after commit.
                    assert_eq!(ns.lookup(ROOT_INO, name.as_bytes()).unwrap().ino, ino);
                }
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
    });
    let conc_time = t0.elapsed();
    let end = ns.stats();
    let commands = end.commands - seq.commands;
    let fsyncs = end.durable_commits - seq.durable_commits;
    let txns = end.transactions - seq.transactions;
    println!(
        "group commit: {commands} concurrent creates in {txns} transactions / {fsyncs} durable commits \
         ({:.1} commands per fsync); {:.0} creates/s concurrent vs {:.0}/s one at a time",
        commands as f64 / fsyncs as f64,
        commands as f64 / conc_time.as_secs_f64(),
        (PER_TASK * 4) as f64 / seq_time.as_secs_f64(),
    );
    assert_eq!(commands, TASKS * PER_TASK);
    // 64 writers each waiting on its own command: while one fsync runs the others queue up, so
    // batches hold many commands. A quarter is far below what batching gives, and far above 1.
    assert!(
        fsyncs * 4 <= commands,
        "{fsyncs} fsyncs for {commands} commands: no batching"
    );
    let (ents, eof) = ns.readdir(ROOT_INO, 0, 10_000).unwrap();
    assert!(eof);
    assert_eq!(ents.len() as u64, commands + PER_TASK * 4);
}

#[test]
fn failed_command_in_a_batch_leaves_the_others_alone() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let ns = open(&rt, dir.path());
    rt.block_on(async {
        let mut handles = Vec::new();
        for i in 0..100u64 {
            let ns = ns.clone();
            handles.push(tokio::spawn(async move {
                // Every third command collides on one name; exactly one of those wins.
                let name = if i % 3 == 0 {
                    "same".to_string()
                } else {
                    format!("n{i}")
                };
                ns.execute(create(ROOT_INO, &name, FileKind::Regular)).await
            }));
        }
        let mut exists = 0;
        for h in handles {
            match h.await.unwrap() {
                Ok(_) => {}
                Err(FsError::Exists) => exists += 1,
                Err(e) => panic!("{e:?}"),
            }
        }
        assert_eq!(exists, 33);
    });
    let snap = ns.snapshot().unwrap();
    assert_eq!(snap.readdir(ROOT_INO, 0, 1000).unwrap().0.len(), 67);
    drop(snap);
    // Failed commands are replicated too (each replica applies them to the same refusal):
    // root + 100 in the log, and replaying it gives the state.
    let log = ns.log_entries(ShardId(0), 0).unwrap();
    assert_eq!(log.len(), 101);
    let mut r = MemState::default();
    for (_, bytes) in log {
        let _ = step(&mut r, &Command::decode(&bytes).unwrap());
    }
    assert_eq!(r.dump(), ns.snapshot().unwrap().dump().unwrap());
}
