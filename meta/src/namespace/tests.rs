//! Tests of the namespace: rules of each command, the redb store against the in-memory model,
//! group commit, and recovery after kill -9.

mod basic;
mod coding;
mod crash;
mod cross_shard;
mod group;
mod model;
mod reduce_index;
mod reducing;
mod replicated;
mod rmtree;
mod snap_create;
mod snap_delete;
mod snaps;

use super::*;

pub(super) use meta_core::testing::*;

/// Creates `name` in `parent` through the namespace and returns the new inode's number.
pub(super) async fn mk(ns: &Namespace, parent: u64, name: &str, kind: FileKind) -> u64 {
    let out = ns.execute(create(parent, name, kind)).await.unwrap();
    out.inode.expect("created inode").ino
}

/// Each shard's state is its log replayed from the start (which the log must still hold):
/// what a reopen brought back, from its checkpoint and then the log after it, is what the
/// commands made, snapshot state included.
pub(super) fn each_shard_is_its_log(ns: &Namespace) {
    let snap = ns.snapshot().unwrap();
    for s in 0..ns.shard_count() {
        let shard = ShardId(s);
        let mut replay = MemState::default();
        for (_, bytes) in ns.log_entries(shard, 0).unwrap() {
            let _ = step_on(shard, &mut replay, &Command::decode(&bytes).unwrap());
        }
        assert_eq!(snap.shard_dump(shard).unwrap(), replay.dump(), "{shard}");
    }
}

/// Shards of the file systems the tests make: more than one, so reads and checkpoints go
/// through the per-shard paths, and few, so each open is quick.
pub(super) const TEST_SHARDS: u16 = 4;

/// Opens the namespace in `dir` on `rt`, where its shards' Raft groups run.
pub(super) fn open(rt: &tokio::runtime::Runtime, dir: &std::path::Path) -> Namespace {
    open_shards(rt, dir, TEST_SHARDS)
}

/// `open` with `shards` shards (one: no directory is placed elsewhere, so inode numbers are
/// the model's).
pub(super) fn open_shards(
    rt: &tokio::runtime::Runtime,
    dir: &std::path::Path,
    shards: u16,
) -> Namespace {
    let opts = Options {
        shards,
        // Directories spread over the shards on one node too, so the tests run cross-shard
        // transactions.
        spread_directories: Some(true),
        ..Options::default()
    };
    open_opts(rt, dir, opts)
}

/// Opens the namespace in `dir` with `opts`.
pub(super) fn open_opts(
    rt: &tokio::runtime::Runtime,
    dir: &std::path::Path,
    opts: Options,
) -> Namespace {
    // A test reopens right after dropping its last handle, but a background task on another
    // worker may still hold a clone for a moment, and with it the store's lock (a restarted
    // process never meets this): wait for that, for a bounded time, and only for that.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match rt.block_on(Namespace::open_with(dir, opts.clone())) {
            Ok(ns) => return ns,
            Err(e) if e.to_string().contains("already open") => {
                assert!(std::time::Instant::now() < deadline, "open namespace: {e}");
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("open namespace: {e}"),
        }
    }
}

pub(super) fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime")
}
