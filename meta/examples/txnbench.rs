//! What a cross-shard transaction costs (issue 12): mkdir, file create and rename between two
//! directories on a one-shard namespace (every command on one shard: the baseline) and on a
//! 256-shard one (a new directory goes to a shard of its own, so mkdir and a rename between
//! directories are two-phase commits), in one run, one node, 16 tasks at once. Prints rates,
//! mean latency and the ratio to the baseline. Then what reads pay for waiting on transactions'
//! locks (`lookup_settled`, `getattr_settled`): stat and lookup loops plain and settled, and
//! settled lookups in directories that renames are moving files between.
//!
//!     cargo run --release -p meta --example txnbench [-- SECONDS_PER_PHASE]

use std::sync::Arc;
use std::time::{Duration, Instant};

use meta::namespace::{
    settle, Command, CreateHow, FileKind, FsError, Namespace, Options, Time, ROOT_INO,
};

const TASKS: usize = 16;

fn create(parent: u64, name: String, kind: FileKind) -> Command {
    Command::Create {
        parent,
        name: name.into_bytes(),
        kind,
        mode: 0o755,
        uid: 0,
        gid: 0,
        time: Time::now(),
        how: CreateHow::Guarded,
    }
}

/// Runs `op(task, i)` from `TASKS` tasks for `secs` (a task stops early when its `op` finds
/// nothing to do: false); (operations per second, mean latency).
async fn phase<F, Fut>(secs: f64, op: F) -> (f64, Duration)
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let (mut n, mut busy) = (0usize, Duration::ZERO);
            while Instant::now() < end {
                let s = Instant::now();
                if !op(t, n).await {
                    break;
                }
                busy += s.elapsed();
                n += 1;
            }
            (n, busy)
        }));
    }
    let (mut n, mut busy) = (0usize, Duration::ZERO);
    for t in tasks {
        let (a, b) = t.await.expect("task");
        n += a;
        busy += b;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    (rate, busy / u32::try_from(n.max(1)).unwrap_or(u32::MAX))
}

async fn run(shards: u16, secs: f64) -> Vec<(&'static str, f64, Duration)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let ns = Namespace::open_with(
        dir.path(),
        Options {
            shards,
            spread_directories: Some(true),
            ..Options::default()
        },
    )
    .await
    .expect("open");
    let mut out = Vec::new();
    let n = ns.clone();
    let (r, l) = phase(secs, move |t, i| {
        let n = n.clone();
        async move {
            n.execute(create(ROOT_INO, format!("d{t}-{i}"), FileKind::Directory))
                .await
                .expect("mkdir");
            true
        }
    })
    .await;
    out.push(("mkdir", r, l));
    // Two directories per task, then files made in the first and renamed into the second.
    let mut pairs = Vec::new();
    for t in 0..TASKS {
        let mk = |name: String| create(ROOT_INO, name, FileKind::Directory);
        let a = ns.execute(mk(format!("a{t}"))).await.expect("a").inode;
        let b = ns.execute(mk(format!("b{t}"))).await.expect("b").inode;
        pairs.push((a.expect("a").ino, b.expect("b").ino));
    }
    let pairs = Arc::new(pairs);
    let (n, p) = (ns.clone(), pairs.clone());
    let (r, l) = phase(secs, move |t, i| {
        let (n, p) = (n.clone(), p.clone());
        async move {
            n.execute(create(p[t].0, format!("f{i}"), FileKind::Regular))
                .await
                .expect("create");
            true
        }
    })
    .await;
    out.push(("create", r, l));
    // One task's stat loop, alternating plain and settled rounds so that other load on the
    // machine falls on both alike: ns per stat.
    let ino = pairs[0].0;
    let (mut plain, mut settled) = (Duration::ZERO, Duration::ZERO);
    const ROUND: u32 = 200_000;
    for _ in 0..5 {
        let s = Instant::now();
        for _ in 0..ROUND {
            std::hint::black_box(ns.getattr(ino).expect("stat"));
        }
        plain += s.elapsed();
        let s = Instant::now();
        for _ in 0..ROUND {
            let r = settle(|| ns.getattr_settled(ino), |e| *e == FsError::Busy).await;
            std::hint::black_box(r.expect("stat"));
        }
        settled += s.elapsed();
    }
    println!(
        "{shards} shards, one task's stat loop: plain {:.0} ns, settled {:.0} ns",
        plain.as_secs_f64() * 1e9 / f64::from(5 * ROUND),
        settled.as_secs_f64() * 1e9 / f64::from(5 * ROUND)
    );
    // Reads with nothing locked: plain and settled (one more lock-table look-up each).
    for (name, settled) in [("stat plain", false), ("stat settled", true)] {
        let (n, p) = (ns.clone(), pairs.clone());
        let (r, l) = phase(secs, move |t, _| {
            let (n, p) = (n.clone(), p.clone());
            async move {
                let ino = p[t].0;
                let r = if settled {
                    settle(|| n.getattr_settled(ino), |e| *e == FsError::Busy).await
                } else {
                    n.getattr(ino)
                };
                r.expect("stat");
                true
            }
        })
        .await;
        out.push((name, r, l));
    }
    for (name, settled) in [("lookup plain", false), ("lookup settled", true)] {
        let (n, p) = (ns.clone(), pairs.clone());
        let (r, l) = phase(secs, move |t, i| {
            let (n, p) = (n.clone(), p.clone());
            async move {
                let (dir, name) = (p[t].0, format!("f{}", i % 64));
                let r = if settled {
                    settle(
                        || n.lookup_settled(dir, name.as_bytes()),
                        |e| *e == FsError::Busy,
                    )
                    .await
                } else {
                    n.lookup(dir, name.as_bytes())
                };
                r.expect("lookup");
                true
            }
        })
        .await;
        out.push((name, r, l));
    }
    // Settled lookups, from one more task, of the names the renames below move: how long a
    // reader waits for a transaction (mean, and the longest in the last row).
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (n, p, stop) = (ns.clone(), pairs.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut count, mut total, mut longest) = (0u32, Duration::ZERO, Duration::ZERO);
            let mut gave_up = 0u32;
            let mut i = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (a, b) = p[i % TASKS];
                let name = format!("f{}", i / TASKS % 64);
                let s = Instant::now();
                let busy = |e: &FsError| *e == FsError::Busy;
                for dir in [a, b] {
                    let r = settle(|| n.lookup_settled(dir, name.as_bytes()), busy).await;
                    gave_up += u32::from(r == Err(FsError::Busy));
                }
                let took = s.elapsed() / 2;
                total += took;
                longest = longest.max(took);
                count += 1;
                i += 1;
                tokio::task::yield_now().await;
            }
            (count, total / count.max(1), longest, gave_up)
        })
    };
    let (n, p) = (ns.clone(), pairs.clone());
    let (r, l) = phase(secs, move |t, i| {
        let (n, p) = (n.clone(), p.clone());
        async move {
            let (a, b) = p[t];
            let Ok(src) = n.lookup(a, format!("f{i}").as_bytes()) else {
                return false;
            };
            let cmd = Command::Rename {
                src_parent: a,
                src_name: format!("f{i}").into_bytes(),
                src: src.ino,
                dst_parent: b,
                dst_name: format!("g{i}").into_bytes(),
                dst: None,
                time: Time::now(),
            };
            n.execute(cmd).await.expect("rename");
            true
        }
    })
    .await;
    out.push(("rename across dirs (and a reader)", r, l));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (count, mean, longest, gave_up) = reader.await.expect("reader");
    out.push((
        "settled lookup during renames",
        f64::from(count) / secs,
        mean,
    ));
    out.push(("  longest of those", 0.0, longest));
    // Rate column: lookups that still found the name locked after READ_WAIT (DELAY).
    out.push(("  gave up (DELAY)", f64::from(gave_up), Duration::ZERO));
    out
}

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "txnbench: one node, {TASKS} tasks, {secs} s per phase; baseline 1 shard (all single-shard), \
         256 shards (mkdir and renames between directories are cross-shard transactions)"
    );
    println!(
        "| phase | 1 shard /s | 256 shards /s | ratio | 1 shard mean | 256 shards mean | ratio |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let base = rt.block_on(run(1, secs));
    let spread = rt.block_on(run(256, secs));
    for ((name, r1, l1), (_, r2, l2)) in base.into_iter().zip(spread) {
        println!(
            "| {name} | {r1:.0} | {r2:.0} | {:.2}× | {:.0} µs | {:.0} µs | {:.2}× |",
            r2 / r1,
            l1.as_secs_f64() * 1e6,
            l2.as_secs_f64() * 1e6,
            l2.as_secs_f64() / l1.as_secs_f64()
        );
    }
}
