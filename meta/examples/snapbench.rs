//! What snapshots cost the metadata (issue 48, `docs/plans/snapshots.md` step 14), on one
//! node, in one run:
//!
//! 1. `create_snapshot` latency with 1k, 100k and 1M files in the tree (expected flat: a cut
//!    records each shard's inode counter and copies nothing): the median and the longest of
//!    `REPS` creates at each size, each followed by its `delete_snapshot` and by the wait
//!    until the deletion has merged away (the record gone); ratios to the smallest tree. Each
//!    size is a namespace of its own, all open at once, and the creates take turns between
//!    them, so other load on the machine falls on every size alike. A create is seven rounds
//!    of Raft commits one after another (begin, freeze every shard, decide, cut the first
//!    shard, cut the others, ready, thaw every shard) and a read barrier on every shard: with
//!    256 shards about 1,000 Raft operations, so mostly CPU (2026-12-02: ~30 ms with 256
//!    shards, ~2.4 ms with 16, at every size; `docs/PERFORMANCE.md`) and 9-13 fdatasyncs of
//!    the log. The process's CPU time per create is printed with its latency, with the log's
//!    fdatasyncs per create and the disk's fdatasync, probed before each round
//!    (`fsync_probe`). A tree is `PER_DIR` files to a directory, filled by `FILL_TASKS`
//!    tasks; how long each fill took is printed.
//! 2. Metadata throughput, `TASKS` tasks each in a directory of its own: create, stat
//!    (`lookup`), rename within the directory and unlink, on three namespaces filled alike
//!    that hold 0, 1 and 10 snapshots of the files the workload renames and unlinks (each
//!    such file is touched once: untouched since the cuts), so the first change of each key
//!    after the latest cut writes a copy-on-write pre-image. `--rounds` rounds; in each, every
//!    phase runs on every namespace in turn (the order rotating), followed by the checkpoint
//!    that writes its changes (counted in the "with checkpoint" ratios), so other load on the
//!    machine falls on all three alike. Ratios are per round, against the namespace holding
//!    none: their median and range. The process's CPU time per operation is printed too: the
//!    disk of this shared VM swings (fdatasync 0.2-4 ms) and moves the rates far more.
//! 3. Memory: live heap (a counting allocator) and RSS (`/proc/self/status`) per file; the
//!    heap per snapshot held (`work` says how); and per pre-image (the same `KEPT` renames
//!    on each namespace of part 2).
//!
//! The namespace's snapshot calls are used directly: the MDS's data quiesce (P0,
//! `mds::state::quiesce`: a gate shut on every MDS node, RW layouts recalled) is not part of
//! this bench. The namespaces are 256 shards (`--shards`) with directories spread over them,
//! as a cluster places them, so a create freezes, cuts and thaws every shard.
//!
//!     cargo run --release -p meta --example snapbench [-- --max-files N] [--secs S] [--rounds R] [--shards N]

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use meta::namespace::{Command, CreateHow, FileKind, Namespace, Options, Time, ROOT_INO};

/// Files to a directory in the tree of part 1.
const PER_DIR: usize = 1000;
/// Tasks filling a tree: many commands queued per shard make big log entries.
const FILL_TASKS: usize = 64;
/// Creates (each with its delete) per tree size.
const REPS: usize = 7;
/// Tasks of the workload of part 2, each in its own directory.
const TASKS: usize = 16;
/// Files in each workload directory before the snapshots: the renames take them from the
/// front, the unlinks from the back, each file once, over every round.
const WORK_FILES: usize = 16_000;
/// The last files of each workload directory: stat'ed in part 2, renamed in part 3.
const KEPT: usize = 1000;
/// Snapshots held by the namespaces of part 2.
const HELD: [usize; 3] = [0, 1, 10];
/// Snapshots taken and deleted on a namespace of part 2 before those it holds (`work`).
const WARM_UP: usize = 12;
/// Keeps a held snapshot for the whole run.
const RETAIN_SECS: u64 = 86_400;

/// The system allocator, counting the bytes live: the memory a structure holds, which RSS
/// hides once the allocator keeps freed pages for reuse.
struct Counting;

static LIVE: AtomicI64 = AtomicI64::new(0);

// SAFETY: every call is passed to `System` unchanged; the counter is only arithmetic on the
// sizes the caller's layouts give.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc` is `System.alloc`'s.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: `ptr` came from `System` with this layout (every allocation goes there).
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: as `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        // SAFETY: `ptr` came from `System` with this layout; the caller's contract holds.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// (live heap, RSS) in bytes (RSS 0 if unknown).
fn memory() -> (i64, i64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss = (status.lines())
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        .map_or(0, |kb| kb * 1024);
    (LIVE.load(Ordering::Relaxed), rss)
}

/// CPU time this process has used (user and system, every thread).
fn cpu() -> Duration {
    // SAFETY: `getrusage` writes only into the zeroed struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid `rusage` for the call to fill.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// Growth of (heap, RSS) since `before`.
fn grown(before: (i64, i64)) -> (i64, i64) {
    let now = memory();
    (now.0 - before.0, now.1 - before.1)
}

fn mib(bytes: i64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

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

async fn open(dir: &std::path::Path, shards: u16) -> Namespace {
    Namespace::open_with(
        dir,
        Options {
            shards,
            spread_directories: Some(true),
            ..Options::default()
        },
    )
    .await
    .expect("open")
}

/// The median of 20 writes of 4 KiB each made durable by fdatasync, in a file in `dir`:
/// what one commit of the namespace's log costs on this disk at the moment.
fn fsync_probe(dir: &std::path::Path) -> Duration {
    let path = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&path).expect("probe file");
    let mut took: Vec<Duration> = (0..20)
        .map(|_| {
            let s = Instant::now();
            f.write_all(&[7u8; 4096]).expect("probe write");
            f.sync_data().expect("probe fdatasync");
            s.elapsed()
        })
        .collect();
    let _ = std::fs::remove_file(path);
    took.sort();
    took[took.len() / 2]
}

/// Makes directories `{prefix}{j}` in `parent` for `j` in `range`, `FILL_TASKS` at once.
async fn mkdirs(
    ns: &Namespace,
    parent: u64,
    prefix: &str,
    range: std::ops::Range<usize>,
) -> Vec<u64> {
    let mut out = Vec::new();
    let all: Vec<usize> = range.collect();
    for chunk in all.chunks(FILL_TASKS) {
        let made = futures::future::join_all(
            chunk
                .iter()
                .map(|j| ns.execute(create(parent, format!("{prefix}{j}"), FileKind::Directory))),
        )
        .await;
        for m in made {
            out.push(m.expect("mkdir").inode.expect("inode").ino);
        }
    }
    out
}

/// Creates files `f{i % per_dir}` in `dirs[i / per_dir]` for `i` in `range`, `FILL_TASKS`
/// tasks at once, each taking the next `i`.
async fn fill(ns: &Namespace, dirs: &Arc<Vec<u64>>, per_dir: usize, range: std::ops::Range<usize>) {
    let next = Arc::new(AtomicUsize::new(range.start));
    let mut running = Vec::new();
    for _ in 0..FILL_TASKS {
        let (ns, dirs, next, end) = (ns.clone(), dirs.clone(), next.clone(), range.end);
        running.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    return;
                }
                let (dir, name) = (dirs[i / per_dir], format!("f{}", i % per_dir));
                ns.execute(create(dir, name, FileKind::Regular))
                    .await
                    .expect("create");
            }
        }));
    }
    for t in running {
        t.await.expect("fill task");
    }
}

/// Median and longest of `v`.
fn median_max(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[v.len() - 1])
}

/// A row of part 1.
struct SizeRow {
    files: usize,
    create: (Duration, Duration),
    /// The process's CPU time during one create (median).
    cpu: Duration,
    /// The log's fdatasyncs during one create (median).
    syncs: u64,
    delete: Duration,
    merged: Duration,
}

/// A tree of part 1: its namespace, the directory it is under, and each create's figures.
struct Tree {
    files: usize,
    ns: Namespace,
    top: u64,
    creates: Vec<Duration>,
    cpus: Vec<Duration>,
    syncs: Vec<u64>,
    deletes: Vec<Duration>,
    merged: Vec<Duration>,
    _dir: tempfile::TempDir,
}

/// A namespace holding a tree of `files` files, `PER_DIR` to a directory.
async fn tree(shards: u16, files: usize) -> Tree {
    let dir = tempfile::tempdir().expect("tempdir");
    let ns = open(dir.path(), shards).await;
    let top = (ns
        .execute(create(ROOT_INO, "tree".into(), FileKind::Directory))
        .await)
        .expect("tree")
        .inode
        .expect("inode")
        .ino;
    let before = memory();
    let start = Instant::now();
    let dirs = Arc::new(mkdirs(&ns, top, "d", 0..files.div_ceil(PER_DIR)).await);
    fill(&ns, &dirs, PER_DIR, 0..files).await;
    let filled = start.elapsed();
    let s = Instant::now();
    ns.checkpoint().await.expect("checkpoint");
    let checkpointed = s.elapsed();
    let (heap, rss) = grown(before);
    println!(
        "tree of {files} files in {} directories: filled in {:.1} s ({:.0}/s), then a \
         checkpoint in {:.2} s; heap +{:.0} MiB ({:.0} B per file), RSS +{:.0} MiB",
        dirs.len(),
        filled.as_secs_f64(),
        files as f64 / filled.as_secs_f64(),
        checkpointed.as_secs_f64(),
        mib(heap),
        heap as f64 / files as f64,
        mib(rss),
    );
    Tree {
        files,
        ns,
        top,
        creates: Vec::new(),
        cpus: Vec::new(),
        syncs: Vec::new(),
        deletes: Vec::new(),
        merged: Vec::new(),
        _dir: dir,
    }
}

/// One create on `t`, its delete, and the wait until the deletion has merged away.
async fn create_and_delete(t: &mut Tree, k: usize) {
    let name = format!("s{k}");
    let (synced, cpu0) = (t.ns.stats().durable_commits, cpu());
    let s = Instant::now();
    let snap = (t
        .ns
        .create_snapshot(name.as_bytes(), t.top, RETAIN_SECS)
        .await)
        .expect("create snapshot");
    t.creates.push(s.elapsed());
    t.cpus.push(cpu() - cpu0);
    t.syncs.push(t.ns.stats().durable_commits - synced);
    let s = Instant::now();
    (t.ns.delete_snapshot(name.as_bytes()).await).expect("delete snapshot");
    t.deletes.push(s.elapsed());
    // The merge pass (every 250 ms) retires and forgets the cut on every shard, then the
    // record: wait for it, so the next create meets no deletion under way.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let listed = t.ns.list_snapshots().await.expect("list");
        if !listed.iter().any(|(id, _)| *id == snap) {
            break;
        }
        assert!(Instant::now() < deadline, "snapshot {snap} not merged away");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    t.merged.push(s.elapsed());
}

/// Part 1: create latency against the size of the tree, one namespace per size, the creates
/// taking turns between them (the first of each round the next one), so other load on the
/// machine falls on every size alike. Also the disk's fdatasync, probed before each round
/// (median).
async fn create_latency(shards: u16, max_files: usize) -> (Vec<SizeRow>, Duration) {
    let mut sizes: Vec<usize> = [1_000, 100_000, 1_000_000]
        .into_iter()
        .filter(|n| *n <= max_files)
        .collect();
    if sizes.last() != Some(&max_files) && max_files < 1_000_000 {
        sizes.push(max_files);
    }
    let mut trees = Vec::new();
    for size in sizes {
        trees.push(tree(shards, size).await);
    }
    let mut probes = Vec::new();
    for k in 0..REPS {
        probes.push(fsync_probe(trees[0]._dir.path()));
        for j in 0..trees.len() {
            let which = (k + j) % trees.len();
            create_and_delete(&mut trees[which], k).await;
        }
    }
    let mut rows = Vec::new();
    for t in trees {
        let each: Vec<String> = t.creates.iter().map(|d| format!("{:.1}", ms(*d))).collect();
        println!("  {} files, creates: {} ms", t.files, each.join(", "));
        let mut syncs = t.syncs.clone();
        syncs.sort_unstable();
        rows.push(SizeRow {
            files: t.files,
            create: median_max(t.creates),
            cpu: median_max(t.cpus).0,
            syncs: syncs[syncs.len() / 2],
            delete: median_max(t.deletes).0,
            merged: median_max(t.merged).0,
        });
        t.ns.close().await;
    }
    (rows, median_max(probes).0)
}

/// A namespace of part 2: `TASKS` directories of `WORK_FILES` files, `held` snapshots.
struct Work {
    ns: Namespace,
    dirs: Arc<Vec<u64>>,
    /// Per task, the files not yet renamed or unlinked: `f{lo}` to `f{hi - 1}` (renames take
    /// from the front, unlinks from the back).
    lo: Arc<Vec<AtomicUsize>>,
    hi: Arc<Vec<AtomicUsize>>,
    held: usize,
    _dir: tempfile::TempDir,
}

/// Opens and fills a namespace of part 2 and takes its `held` snapshots, printing the heap
/// each one holds.
async fn work(shards: u16, held: usize) -> Work {
    let dir = tempfile::tempdir().expect("tempdir");
    let ns = open(dir.path(), shards).await;
    let dirs = Arc::new(mkdirs(&ns, ROOT_INO, "w", 0..TASKS).await);
    fill(&ns, &dirs, WORK_FILES, 0..TASKS * WORK_FILES).await;
    ns.checkpoint().await.expect("checkpoint");
    if held > 0 {
        // What the snapshots themselves hold: the heap growth over taking them, each end
        // measured with the logs compacted (a create adds entries to every shard's log).
        // The first ten or so creates on a namespace also grow buffers and caches that stay
        // after their snapshots are deleted (the log's, redb's: about 7 MiB with 256
        // shards), so `WARM_UP` snapshots are taken and deleted first.
        let settled = || async {
            ns.checkpoint().await.expect("checkpoint");
            ns.compact(0).await.expect("compact");
            memory().0
        };
        take_snapshots(&ns, "warm", WARM_UP).await;
        for k in 0..WARM_UP {
            (ns.delete_snapshot(format!("warm{k}").as_bytes()).await).expect("delete snapshot");
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        while !ns.list_snapshots().await.expect("list").is_empty() {
            assert!(Instant::now() < deadline, "snapshots not merged away");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let before = settled().await;
        let took = take_snapshots(&ns, "h", held).await;
        let after = settled().await;
        println!(
            "{held} snapshot(s) of {} files taken, {:.1} ms each (median); heap per snapshot \
             held {:+.1} KiB",
            TASKS * WORK_FILES,
            ms(median_max(took).0),
            (after - before) as f64 / 1024.0 / held as f64,
        );
    }
    let cursors = |v: usize| Arc::new((0..TASKS).map(|_| AtomicUsize::new(v)).collect());
    Work {
        ns,
        dirs,
        lo: cursors(0),
        hi: cursors(WORK_FILES - KEPT),
        held,
        _dir: dir,
    }
}

/// Takes snapshots `{prefix}0` to `{prefix}{n - 1}` of the whole namespace; how long each took.
async fn take_snapshots(ns: &Namespace, prefix: &str, n: usize) -> Vec<Duration> {
    let mut took = Vec::new();
    for k in 0..n {
        let s = Instant::now();
        (ns.create_snapshot(format!("{prefix}{k}").as_bytes(), ROOT_INO, RETAIN_SECS)
            .await)
            .expect("create snapshot");
        took.push(s.elapsed());
    }
    took
}

/// The workload's operations.
#[derive(Clone, Copy)]
enum Op {
    Create,
    Stat,
    Rename,
    Unlink,
}

const OPS: [(&str, Op); 4] = [
    ("create", Op::Create),
    ("stat (lookup)", Op::Stat),
    ("rename in a dir", Op::Rename),
    ("unlink", Op::Unlink),
];

/// One operation of task `t` (its `i`th in this phase of `round`) on `w`; false when the
/// task has no file left to do it to.
async fn one(w: &Work, op: Op, round: usize, t: usize, i: usize) -> bool {
    let (n, dir) = (&w.ns, w.dirs[t]);
    match op {
        Op::Create => {
            n.execute(create(dir, format!("n{round}-{i}"), FileKind::Regular))
                .await
                .expect("create");
        }
        Op::Stat => {
            let name = format!("f{}", WORK_FILES - KEPT + i % KEPT);
            std::hint::black_box(n.lookup(dir, name.as_bytes()).expect("stat"));
        }
        Op::Rename => {
            let j = w.lo[t].load(Ordering::Relaxed);
            if j >= w.hi[t].load(Ordering::Relaxed) {
                return false;
            }
            w.lo[t].store(j + 1, Ordering::Relaxed);
            let name = format!("f{j}");
            let src = n.lookup(dir, name.as_bytes()).expect("file to rename").ino;
            let cmd = Command::Rename {
                src_parent: dir,
                src_name: name.into_bytes(),
                src,
                dst_parent: dir,
                dst_name: format!("r{j}").into_bytes(),
                dst: None,
                time: Time::now(),
            };
            n.execute(cmd).await.expect("rename");
        }
        Op::Unlink => {
            let j = w.hi[t].load(Ordering::Relaxed);
            if j <= w.lo[t].load(Ordering::Relaxed) {
                return false;
            }
            w.hi[t].store(j - 1, Ordering::Relaxed);
            let name = format!("f{}", j - 1);
            let child = n.lookup(dir, name.as_bytes()).expect("file to unlink").ino;
            let cmd = Command::Remove {
                parent: dir,
                name: name.into_bytes(),
                child,
                time: Time::now(),
            };
            n.execute(cmd).await.expect("unlink");
        }
    }
    true
}

/// One phase's figures.
#[derive(Clone, Copy, Default)]
struct Rate {
    /// Operations per second.
    rate: f64,
    /// The same over the phase and the checkpoint after it.
    with_checkpoint: f64,
    mean: Duration,
    /// The process's CPU time per operation, the checkpoint's included: what the disk's
    /// swings (fdatasync 0.3-4 ms on this shared VM) hardly touch.
    cpu: Duration,
}

/// Runs `op` from `TASKS` tasks on `w` for `secs` (a task stops early when it has no file
/// left), then `w`'s checkpoint.
async fn phase(w: &Arc<Work>, op: Op, round: usize, secs: f64) -> Rate {
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let cpu0 = cpu();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let w = w.clone();
        tasks.push(tokio::spawn(async move {
            let (mut n, mut busy) = (0usize, Duration::ZERO);
            while Instant::now() < end {
                let s = Instant::now();
                if !one(&w, op, round, t, n).await {
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
    let ran = start.elapsed().as_secs_f64();
    // The checkpoint that writes the phase's changes (pre-images too) into redb: run now, so
    // it does not spill into the next namespace's phase, and counted.
    let s = Instant::now();
    w.ns.checkpoint().await.expect("checkpoint");
    let checkpoint = s.elapsed().as_secs_f64();
    let per = |d: Duration| d / u32::try_from(n.max(1)).unwrap_or(u32::MAX);
    Rate {
        rate: n as f64 / ran,
        with_checkpoint: n as f64 / (ran + checkpoint),
        mean: per(busy),
        cpu: per(cpu() - cpu0),
    }
}

/// Part 2: `rounds` rounds of every operation's phase on every namespace in turn, the first
/// namespace of each round the next one. `[op][round][namespace]`.
async fn throughput(works: &[Arc<Work>], secs: f64, rounds: usize) -> Vec<Vec<Vec<Rate>>> {
    let mut out: Vec<Vec<Vec<Rate>>> = vec![Vec::new(); OPS.len()];
    for round in 0..rounds {
        for ((_, op), by_round) in OPS.iter().zip(out.iter_mut()) {
            let mut row = vec![Rate::default(); works.len()];
            for k in 0..works.len() {
                let which = (round + k) % works.len();
                row[which] = phase(&works[which], *op, round, secs).await;
            }
            by_round.push(row);
        }
    }
    out
}

/// Pre-images `ns` holds: versions of inodes, of directory entries and of xattrs.
fn pre_images(ns: &Namespace) -> usize {
    let d = ns.snapshot().and_then(|s| s.dump()).expect("dump");
    let inodes: usize = d.pre_inodes.values().map(|v| v.len()).sum();
    let entries: usize = d.pre_dirents.values().map(|v| v.len()).sum();
    let xattrs: usize = d.pre_xattrs.values().map(|v| v.len()).sum();
    inodes + entries + xattrs
}

/// Part 3: renames the `KEPT` last files of every workload directory (`TASKS` at once), then
/// checkpoints; (heap and RSS growth, pre-images made, time taken, the checkpoint's, CPU
/// per rename with the checkpoint).
async fn kept_renames(w: &Arc<Work>) -> ((i64, i64), usize, Duration, Duration, Duration) {
    let pre0 = pre_images(&w.ns);
    let before = memory();
    let cpu0 = cpu();
    let s = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let w = w.clone();
        tasks.push(tokio::spawn(async move {
            let dir = w.dirs[t];
            for i in WORK_FILES - KEPT..WORK_FILES {
                let name = format!("f{i}");
                let src = w.ns.lookup(dir, name.as_bytes()).expect("kept file").ino;
                let cmd = Command::Rename {
                    src_parent: dir,
                    src_name: name.into_bytes(),
                    src,
                    dst_parent: dir,
                    dst_name: format!("k{i}").into_bytes(),
                    dst: None,
                    time: Time::now(),
                };
                w.ns.execute(cmd).await.expect("rename");
            }
        }));
    }
    for t in tasks {
        t.await.expect("rename task");
    }
    let took = s.elapsed();
    let s = Instant::now();
    w.ns.checkpoint().await.expect("checkpoint");
    let checkpoint = s.elapsed();
    let per_rename = (cpu() - cpu0) / u32::try_from(TASKS * KEPT).unwrap_or(u32::MAX);
    let mem = grown(before);
    (mem, pre_images(&w.ns) - pre0, took, checkpoint, per_rename)
}

/// Median and range of `v`, as "m (lo–hi)".
fn spread(mut v: Vec<f64>, fmt: impl Fn(f64) -> String) -> String {
    v.sort_by(f64::total_cmp);
    match v.as_slice() {
        [] => String::new(),
        [one] => fmt(*one),
        all => format!(
            "{} ({}–{})",
            fmt(all[all.len() / 2]),
            fmt(all[0]),
            fmt(all[all.len() - 1])
        ),
    }
}

fn main() {
    let (mut max_files, mut secs, mut rounds, mut shards) =
        (1_000_000usize, 3.0f64, 3usize, 256u16);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--max-files", Some(v)) => max_files = v.parse().expect("--max-files N"),
            ("--secs", Some(v)) => secs = v.parse().expect("--secs S"),
            ("--rounds", Some(v)) => rounds = v.parse().expect("--rounds R"),
            ("--shards", Some(v)) => shards = v.parse().expect("--shards N"),
            _ => panic!("usage: snapbench [--max-files N] [--secs S] [--rounds R] [--shards N]"),
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "snapbench: one node, {shards} shards (directories spread), {} CPUs",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    println!(
        "\n1. snapshot create latency against the tree's size ({REPS} creates each, each then \
         deleted)"
    );
    let (rows, fsync) = rt.block_on(create_latency(shards, max_files));
    println!(
        "| files | create median | create max | × smallest tree | CPU per create | × smallest \
         tree | log fdatasyncs per create | delete | merged away |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let base = rows.first().map_or((1.0, 1.0), |r| {
        (r.create.0.as_secs_f64(), r.cpu.as_secs_f64())
    });
    for r in &rows {
        println!(
            "| {} | {:.1} ms | {:.1} ms | {:.2}× | {:.1} ms | {:.2}× | {} | {:.1} ms | {:.0} ms |",
            r.files,
            ms(r.create.0),
            ms(r.create.1),
            r.create.0.as_secs_f64() / base.0,
            ms(r.cpu),
            r.cpu.as_secs_f64() / base.1,
            r.syncs,
            ms(r.delete),
            ms(r.merged)
        );
    }
    println!(
        "a 4 KiB write and fdatasync on this disk meanwhile: {:.2} ms (median)",
        ms(fsync)
    );

    println!(
        "\n2. metadata throughput, {TASKS} tasks, {rounds} rounds of {secs} s phases, {} files \
         per namespace, holding {HELD:?} snapshots",
        TASKS * WORK_FILES
    );
    let works: Vec<Arc<Work>> = HELD
        .iter()
        .map(|h| Arc::new(rt.block_on(work(shards, *h))))
        .collect();
    let table = rt.block_on(throughput(&works, secs, rounds));
    // Each figure is the median over the rounds, and its range; a ratio is taken within each
    // round (the namespaces' phases ran back to back), then its median and range.
    let heads = |f: &dyn Fn(usize) -> String, from: usize| -> String {
        HELD[from..]
            .iter()
            .map(|h| f(*h))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    println!(
        "| op | {} | {} | {} |",
        heads(&|h| format!("{h} held /s"), 0),
        heads(&|h| format!("{h} / 0"), 1),
        heads(&|h| format!("{h} / 0 with checkpoint"), 1),
    );
    println!("|---|{}", "---:|".repeat(HELD.len() * 3 - 2));
    let mut cpu_rows = Vec::new();
    for ((name, _), by_round) in OPS.iter().zip(&table) {
        let each = |k: usize, f: &dyn Fn(&Rate) -> f64, fmt: &dyn Fn(f64) -> String| {
            spread(by_round.iter().map(|row| f(&row[k])).collect(), fmt)
        };
        let ratio = |k: usize, f: &dyn Fn(&Rate) -> f64| {
            let v = by_round.iter().map(|row| f(&row[k]) / f(&row[0])).collect();
            spread(v, |v| format!("{v:.2}×"))
        };
        let cols = |from: usize, f: &dyn Fn(usize) -> String| -> String {
            (from..HELD.len()).map(f).collect::<Vec<_>>().join(" | ")
        };
        println!(
            "| {name} | {} | {} | {} |",
            cols(0, &|k| each(k, &|r| r.rate, &|v| format!("{v:.0}"))),
            cols(1, &|k| ratio(k, &|r| r.rate)),
            cols(1, &|k| ratio(k, &|r| r.with_checkpoint)),
        );
        let micros = |d: Duration| d.as_secs_f64() * 1e6;
        cpu_rows.push(format!(
            "| {name} | {} | {} | {} |",
            cols(0, &|k| each(k, &|r| micros(r.cpu), &|v| format!(
                "{v:.0} µs"
            ))),
            cols(1, &|k| ratio(k, &|r| micros(r.cpu))),
            cols(0, &|k| each(k, &|r| micros(r.mean), &|v| format!(
                "{v:.0} µs"
            ))),
        ));
    }
    println!("\nCPU per operation (the process's, its checkpoint's included) and mean latency:");
    println!(
        "| op | {} | {} | {} |",
        heads(&|h| format!("CPU, {h} held"), 0),
        heads(&|h| format!("{h} / 0"), 1),
        heads(&|h| format!("latency, {h} held"), 0),
    );
    println!("|---|{}", "---:|".repeat(HELD.len() * 3 - 1));
    for r in cpu_rows {
        println!("{r}");
    }

    println!(
        "\n3. {} renames of files in the snapshots (untouched since), on each namespace in turn",
        TASKS * KEPT
    );
    println!(
        "| holding | took | × holding none | then a checkpoint | CPU per rename | × holding none \
         | pre-images made | heap | heap per pre-image (beyond holding none) | RSS |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut base = None;
    for w in &works {
        let ((heap, rss), pre, took, cp, cpu) = rt.block_on(kept_renames(w));
        let (b, bc, bh) = *base.get_or_insert((took.as_secs_f64(), cpu.as_secs_f64(), heap));
        let per = if pre > 0 {
            format!("{:.0} B", (heap - bh) as f64 / pre as f64)
        } else {
            "-".into()
        };
        println!(
            "| {} | {:.0} ms | {:.2}× | {:.0} ms | {:.0} µs | {:.2}× | {pre} | {:+.1} MiB | {per} \
             | {:+.1} MiB |",
            w.held,
            ms(took),
            took.as_secs_f64() / b,
            ms(cp),
            cpu.as_secs_f64() * 1e6,
            cpu.as_secs_f64() / bc,
            mib(heap),
            mib(rss)
        );
    }
}
