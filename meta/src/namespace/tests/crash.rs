//! kill -9 at a random moment: every acknowledged command survives, every command is all or
//! nothing, and state equals a replay of the log.
//!
//! The parent test re-runs this test binary as a child (selected by an environment variable);
//! the child executes commands from several tasks and prints `ack <task> <seq>` after each one
//! is acknowledged durable. The parent kills it with SIGKILL, reopens, and checks.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command as Proc, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;

const CHILD_ENV: &str = "CFS_NS_CRASH_CHILD";
const TASKS: u64 = 6;
/// The child stops on its own after this long, in case nobody kills it.
const CHILD_LIMIT: Duration = Duration::from_secs(20);

fn dir_name(round: u64, task: u64) -> String {
    format!("r{round}t{task}")
}

/// The command for step `seq` of a task: a repeating pattern of create, write, create, rename.
/// `inos` holds what each earlier create made.
fn op(dir: u64, seq: u64, inos: &BTreeMap<u64, u64>) -> Command {
    let f = |i: u64| format!("f{i}").into_bytes();
    match seq % 4 {
        0 | 2 => Command::Create {
            parent: dir,
            name: f(seq),
            kind: FileKind::Regular,
            mode: 0o644,
            uid: 0,
            gid: 0,
            time: t(seq as i64),
            how: CreateHow::Guarded,
        },
        1 => Command::Write {
            ino: inos[&(seq - 1)],
            end_offset: seq,
            time: t(seq as i64),
            writes: 1,
        },
        _ => Command::Rename {
            src_parent: dir,
            src_name: f(seq - 3),
            src: inos[&(seq - 3)],
            dst_parent: dir,
            dst_name: format!("r{}", seq - 3).into_bytes(),
            dst: None,
            time: t(seq as i64),
        },
    }
}

/// What a task's directory holds after steps `0..n`: name → size.
fn expected(n: u64) -> BTreeMap<Vec<u8>, u64> {
    let mut m = BTreeMap::new();
    for seq in 0..n {
        match seq % 4 {
            0 | 2 => {
                m.insert(format!("f{seq}").into_bytes(), 0);
            }
            1 => {
                m.insert(format!("f{}", seq - 1).into_bytes(), seq);
            }
            _ => {
                let v = m
                    .remove(format!("f{}", seq - 3).as_bytes())
                    .unwrap_or_default();
                m.insert(format!("r{}", seq - 3).into_bytes(), v);
            }
        }
    }
    m
}

#[test]
fn crash_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return; // Only does something when started by the parent below.
    };
    let (round, dir) = spec.split_once(':').expect("round:dir");
    let round: u64 = round.parse().expect("round");
    let rt = rt();
    let ns = open(&rt, std::path::Path::new(dir));
    let out = Arc::new(Mutex::new(std::io::stdout()));
    rt.block_on(async {
        let mut handles = Vec::new();
        for task in 0..TASKS {
            let ns = ns.clone();
            let out = out.clone();
            handles.push(tokio::spawn(async move {
                let name = dir_name(round, task);
                let d = mk(&ns, ROOT_INO, &name, FileKind::Directory).await;
                let mut inos = BTreeMap::new();
                let started = Instant::now();
                let mut unsynced = Vec::new();
                for seq in 0.. {
                    if started.elapsed() > CHILD_LIMIT {
                        break;
                    }
                    let cmd = op(d, seq, &inos);
                    // Task 0 exercises the lazy path: acknowledged only after `sync`.
                    let done = if task == 0 {
                        ns.execute_lazy(cmd).await.expect("lazy")
                    } else {
                        ns.execute(cmd).await.expect("execute")
                    };
                    if seq % 4 == 0 || seq % 4 == 2 {
                        inos.insert(seq, done.inode.expect("created").ino);
                    }
                    unsynced.push(seq);
                    if task == 0 {
                        if unsynced.len() == 4 {
                            ns.sync().await.expect("sync");
                        } else {
                            continue;
                        }
                    }
                    let mut o = out.lock().unwrap();
                    for s in unsynced.drain(..) {
                        writeln!(o, "ack {task} {s}").unwrap();
                    }
                    o.flush().unwrap();
                }
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
    });
}

fn random_u64() -> u64 {
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

#[test]
fn kill9_keeps_every_acknowledged_command() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let exe = std::env::current_exe().unwrap();
    let mut last_boot = 0;
    for round in 0..4u64 {
        let mut child = Proc::new(&exe)
            .args([
                "namespace::tests::crash::crash_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, format!("{round}:{}", dir.path().display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let acks = Arc::new(Mutex::new(BTreeMap::<u64, u64>::new()));
        let reader = {
            let acks = acks.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let mut parts = line.split_whitespace();
                    if parts.next() != Some("ack") {
                        continue;
                    }
                    let task: u64 = parts.next().and_then(|s| s.parse().ok()).unwrap();
                    let seq: u64 = parts.next().and_then(|s| s.parse().ok()).unwrap();
                    let mut a = acks.lock().unwrap();
                    let e = a.entry(task).or_insert(0);
                    *e = (*e).max(seq + 1);
                }
            })
        };
        // Wait until the child is under way, then a random extra while before the kill.
        let deadline = Instant::now() + Duration::from_secs(30);
        while acks.lock().unwrap().values().sum::<u64>() < 20 {
            assert!(Instant::now() < deadline, "child made no progress");
            assert!(child.try_wait().unwrap().is_none(), "child exited early");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(random_u64() % 700));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        let acks = acks.lock().unwrap().clone();

        let ns = open(&rt, dir.path());
        assert!(ns.boot_count() > last_boot);
        last_boot = ns.boot_count();
        // State is exactly the log replayed: nothing half-applied (the child makes fewer
        // entries than a snapshot is taken after, so the log holds all of them).
        // Each shard's state is its own log replayed (a new directory lives on a shard of its
        // own, so the tasks' commands span shards and some are transactions).
        each_shard_is_its_log(&ns);
        let snap = ns.snapshot().unwrap();
        // Every acknowledged step is there, and each directory is exactly some prefix of its
        // task's steps no shorter than what was acknowledged.
        let mut total_acked = 0;
        for task in 0..TASKS {
            let acked = acks.get(&task).copied().unwrap_or(0);
            total_acked += acked;
            let Ok(d) = snap.lookup(ROOT_INO, dir_name(round, task).as_bytes()) else {
                assert_eq!(acked, 0, "task {task} lost its directory");
                continue;
            };
            let (ents, _) = snap.readdir(d.ino, 0, 1_000_000).unwrap();
            let have: BTreeMap<Vec<u8>, u64> = ents
                .iter()
                .map(|e| (e.name.clone(), snap.getattr(e.ino).unwrap().size))
                .collect();
            let matching: BTreeSet<u64> = (acked..acked + 64)
                .filter(|n| expected(*n) == have)
                .collect();
            assert!(
                !matching.is_empty(),
                "round {round} task {task}: acked {acked} steps, directory has {} names and matches no prefix",
                have.len()
            );
        }
        println!("round {round}: {total_acked} acknowledged steps verified after kill -9");
    }
}

const ABORT_ENV: &str = "CFS_NS_ABORT_CHILD";
const ABORT_FILES: u64 = 300;

#[test]
fn abort_child() {
    let Ok(dir) = std::env::var(ABORT_ENV) else {
        return; // Only does something when started by the parent below.
    };
    let rt = rt();
    let ns = open(&rt, std::path::Path::new(&dir));
    rt.block_on(async {
        let mut handles = Vec::new();
        for task in 0..6u64 {
            let ns = ns.clone();
            handles.push(tokio::spawn(async move {
                for i in (task..ABORT_FILES).step_by(6) {
                    ns.execute(create(ROOT_INO, &format!("a{i}"), FileKind::Regular))
                        .await
                        .expect("create");
                }
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
    });
    // Dies at once: no idle checkpoint, no clean shutdown; only the command log has the creates.
    std::process::abort();
}

#[test]
fn acknowledged_commands_survive_in_the_log_alone() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let exe = std::env::current_exe().unwrap();
    let st = Proc::new(&exe)
        .args([
            "namespace::tests::crash::abort_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ABORT_ENV, dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!st.success(), "the child was meant to abort");
    let wal = wal_bytes(dir.path());
    assert!(
        wal > 0,
        "the creates should be in the log, not checkpointed"
    );

    let ns = open(&rt, dir.path());
    let snap = ns.snapshot().unwrap();
    for i in 0..ABORT_FILES {
        snap.lookup(ROOT_INO, format!("a{i}").as_bytes())
            .unwrap_or_else(|e| panic!("a{i} lost: {e}"));
    }
    drop(snap);
    let next = rt.block_on(mk(&ns, ROOT_INO, "next", FileKind::Regular));
    assert!(
        next > ABORT_FILES + 1,
        "inode numbers must not be handed out twice"
    );
}

/// Bytes of records in the node's log segments (not their size: segments are preallocated).
fn wal_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir.join(crate::storage::log::LOG_DIR))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().starts_with(WAL_PREFIX))
        .map(|e| {
            crate::storage::wal::decode_records(&std::fs::read(e.path()).unwrap(), None).1 as u64
        })
        .sum()
}

#[test]
fn changes_are_checkpointed_without_being_asked() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let ns = open(&rt, dir.path());
    rt.block_on(async {
        for i in 0..20 {
            mk(&ns, ROOT_INO, &format!("i{i}"), FileKind::Regular).await;
        }
    });
    assert!(
        wal_bytes(dir.path()) > 0,
        "the creates are in the log first"
    );
    let before = ns.stats().checkpoints;
    // Nobody asks for a checkpoint: the checkpointer writes one within its period.
    let deadline = Instant::now() + Duration::from_secs(10);
    while ns.stats().checkpoints == before {
        assert!(Instant::now() < deadline, "no checkpoint within 10 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}
