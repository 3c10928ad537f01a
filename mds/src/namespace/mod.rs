//! The namespace: a deterministic state machine over commands, kept in redb behind a durable,
//! group-committed command log.
//!
//! Life of a mutation: the proposer (the NFS op handler) builds a `Command` carrying everything
//! that varies (time from `Time::now()`, and the objects its lookups found), and calls
//! `execute`; `apply` allocates inode numbers in the shard's counter (`shard`). A single writer thread takes all queued commands as one batch: each is applied
//! through a staging buffer (a failed command leaves nothing behind), the batch is appended to
//! the command log (`wal`) and made durable with one fdatasync, and only then published to the
//! in-memory state that every read uses. Reads (`getattr`, `lookup`, `readdir`, `Snapshot`) see
//! every command whose `execute`/`execute_lazy` has returned.
//!
//! Checkpoints: every ≤ 5 s (or when idle) a background thread writes the net changes since the
//! last checkpoint, and the commands for the `log` table, into redb in one durable transaction,
//! then deletes the log segments it covers. Opening loads the last checkpoint into memory and
//! replays the log after it. The whole namespace lives in memory (about 200 bytes per file plus
//! its names), the price of serving metadata at memory speed.
//!
//! Unlinked files: a regular file whose last link goes (unlink, or replaced by rename) stays as
//! an orphan with nlink 0 and is reported as `Effect::Orphaned` to the `EffectSink`; `getattr`
//! still works on it so open files keep working. The server issues `Command::Forget { ino }` once
//! no client has it open (and removes the file's data); after a restart `orphans()` lists the
//! ones to forget. Non-regular objects cannot be open and are deleted at once
//! (`Effect::Freed`).
//!
//! Later, openraft replaces the local log: `Command` is serde + postcard, `apply` is pure, and
//! every command names the objects (and so the shards) it touches (`Command::keys`).

mod apply;
mod error;
pub mod perm;
pub mod shard;
mod state;
mod store;
mod types;
mod unstable;
mod wal;
mod writer;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Instant;

use redb::{Database, Durability, ReadableTable};
use tokio::sync::oneshot;
use tracing::info;

pub use apply::apply;
pub use error::FsError;
pub use shard::{Key, ShardId};
pub use state::{Dump, MemState, StateStore};
pub use store::Snapshot;
pub use types::{
    check_name, Command, CreateHow, DirChange, DirEntry, Effect, FileKind, Inode, Outcome, SetTime,
    StatFs, Time, FIRST_COOKIE, NAME_MAX, ROOT_INO,
};
pub use wal::WAL_PREFIX;
pub use writer::{Stats, StatsSnapshot};

use state::Changes;
use store::{create_tables, RedbState, APPLIED, BOOT_COUNT, LOG, META, NODE};
use wal::Wal;
use writer::{apply_to_redb, Checkpointer, Request, Writer};

/// File name of the database inside the namespace directory.
pub const DB_FILE: &str = "namespace.redb";

/// Tunables of `Namespace::open_with`.
#[derive(Clone, Debug)]
pub struct Options {
    /// Log entries kept behind the applied index. The state tables are the snapshot, so the log
    /// is only needed for replication catch-up (later) and for tests that replay it.
    pub log_keep: u64,
    /// redb quick-repair: checkpoints also save the allocator state (2-phase commit), so
    /// reopening after a crash skips redb's repair walk of the whole database. Checkpoints are
    /// rare (the command log carries durability), so their extra cost hardly shows.
    pub quick_repair: bool,
    /// Reserved space for the log and checkpoints when the file system fills (`mds::space`);
    /// without it, a full file system fails commands with `FsError::NoSpace`.
    pub space: Option<Arc<dyn SpaceGuard>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            log_keep: 100_000,
            quick_repair: true,
            space: None,
        }
    }
}

/// Whoever carries out the effects of applied commands (`Effect`): the MDS, on the node that
/// leads the shard. Called on the namespace's writer thread with each batch's effects, in
/// order, before the batch's commands are answered: it must not block (queue the work).
pub trait EffectSink: Send + Sync {
    fn effects(&self, effects: &[Effect]);
}

/// The sink, once one is set; effects of commands applied before that (log replay at open)
/// are found again from the state (`Snapshot::orphans`).
#[derive(Default)]
pub(crate) struct EffectSlot(std::sync::OnceLock<Arc<dyn EffectSink>>);

impl EffectSlot {
    fn deliver(&self, effects: &[Effect]) {
        if let Some(sink) = self.0.get() {
            sink.effects(effects);
        }
    }
}

/// What the namespace asks of whoever keeps space for metadata (`mds::space::Space`).
pub trait SpaceGuard: Send + Sync + std::fmt::Debug {
    /// A metadata write met ENOSPC: free reserved space; false when none is left.
    fn release(&self) -> bool;
    /// Whether a checkpoint may write now, freeing reserved space if that makes room. redb
    /// cannot go on after a failed write without being reopened, so it must not meet ENOSPC.
    fn room_for_checkpoint(&self) -> bool;
}

struct Inner {
    /// The checkpoints (the state as of the last one, and the `log` table).
    db: Arc<Database>,
    /// The state every read sees: all applied commands.
    live: Arc<RwLock<MemState>>,
    tx: Mutex<Option<Sender<Request>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    effects: Arc<EffectSlot>,
    unstable: unstable::Unstable,
    fs_id: u64,
    boot_count: u64,
    stats: Arc<Stats>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel stops the writer after it has made everything durable; joining it
        // means the database file is free for the next open when the last handle is gone.
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        if let Ok(mut th) = self.thread.lock() {
            if let Some(h) = th.take() {
                let _ = h.join();
            }
        }
    }
}

/// Handle to an open namespace. Cheap to clone; all clones share one database and writer.
#[derive(Clone)]
pub struct Namespace {
    inner: Arc<Inner>,
}

impl Namespace {
    /// Opens (creating if needed) the namespace stored in `dir`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Namespace, FsError> {
        Self::open_with(dir, Options::default())
    }

    pub fn open_with(dir: impl AsRef<Path>, opts: Options) -> Result<Namespace, FsError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir)?;
        let path = dir.join(DB_FILE);
        let db = Arc::new(Database::create(&path)?);
        let (mut wal, records) = Wal::open(dir)?;
        // One durable transaction: tables, the commands the log holds beyond the last
        // checkpoint, boot count, and the root on a fresh store (logged as an ordinary command so
        // a replica replaying the log gets the same root).
        let boot_count = {
            let mut txn = db.begin_write()?;
            txn.set_durability(Durability::Immediate);
            txn.set_quick_repair(opts.quick_repair);
            create_tables(&txn)?;
            replay(&txn, &records)?;
            let n = {
                let mut node = txn.open_table(NODE)?;
                let mut meta = txn.open_table(META)?;
                // Stores made before the node table kept the count with the state machine's.
                let old = meta.remove(BOOT_COUNT)?.map(|v| v.value());
                let last = node.get(BOOT_COUNT)?.map(|v| v.value()).or(old);
                let n = last.unwrap_or(0) + 1;
                node.insert(BOOT_COUNT, n)?;
                n
            };
            {
                let mut state = RedbState::open(&txn)?;
                if state.inode(ROOT_INO)?.is_none() {
                    let mut log = txn.open_table(LOG)?;
                    let mut applied = state.meta(APPLIED)?;
                    let cmd = Command::InitRoot {
                        fs_id: new_fs_id(&path),
                        time: Time::now(),
                    };
                    apply_to_redb(&mut state, &mut log, &mut applied, &cmd)?;
                    state.set_meta(APPLIED, applied)?;
                }
            }
            txn.commit()?;
            n
        };
        // Everything the log held is in the checkpoint now.
        let fresh = wal.rotate()?;
        wal::remove_before(dir, fresh)?;
        let state = store::load_state(&db.begin_read()?)?;
        let applied = state.meta(APPLIED)?;
        let fs_id = state.meta(state::meta::FS_ID)?;
        let live = Arc::new(RwLock::new(state));
        let stats = Arc::new(Stats::default());
        let effects = Arc::new(EffectSlot::default());
        let (ck_tx, ck_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let checkpointer = Checkpointer {
            db: db.clone(),
            dir: dir.to_path_buf(),
            stats: stats.clone(),
            log_keep: opts.log_keep,
            quick_repair: opts.quick_repair,
            space: opts.space.clone(),
        };
        let ck_thread = std::thread::Builder::new()
            .name("cfs-ns-checkpoint".into())
            .spawn(move || checkpointer.run(ck_rx, done_tx))?;
        let writer = Writer {
            live: live.clone(),
            stats: stats.clone(),
            wal,
            applied,
            pending: Changes::default(),
            pending_log: Vec::new(),
            last_checkpoint: Instant::now(),
            checkpoints: ck_tx,
            checkpoint_done: done_rx,
            checkpointer: Some(ck_thread),
            checkpoint_in_flight: false,
            poisoned: None,
            space: opts.space,
            effects: effects.clone(),
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("cfs-ns-writer".into())
            .spawn(move || writer.run(rx))?;
        info!(path = %path.display(), fs_id, boot_count, applied, "namespace open");
        Ok(Namespace {
            inner: Arc::new(Inner {
                db,
                live,
                tx: Mutex::new(Some(tx)),
                thread: Mutex::new(Some(thread)),
                effects,
                unstable: unstable::Unstable::default(),
                fs_id,
                boot_count,
                stats,
            }),
        })
    }

    fn send(
        &self,
        cmd: Command,
        durable: bool,
    ) -> Result<oneshot::Receiver<Result<Outcome, FsError>>, FsError> {
        let (reply, rx) = oneshot::channel();
        self.request(Request::Execute {
            cmd,
            durable,
            reply,
        })?;
        Ok(rx)
    }

    fn request(&self, r: Request) -> Result<(), FsError> {
        let tx = self.inner.tx.lock().map_err(|_| FsError::Closed)?;
        tx.as_ref()
            .ok_or(FsError::Closed)?
            .send(r)
            .map_err(|_| FsError::Closed)
    }

    /// Appends, applies and makes `cmd` durable; returns once it survives a crash.
    pub async fn execute(&self, cmd: Command) -> Result<Outcome, FsError> {
        self.record_noted_before(&cmd)?;
        self.send(cmd, true)?.await.map_err(|_| FsError::Closed)?
    }

    /// Appends and applies `cmd`, returning before it is durable (it is visible to reads at once).
    /// `sync` later makes it durable; a crash before that loses it, and later commands with it.
    pub async fn execute_lazy(&self, cmd: Command) -> Result<Outcome, FsError> {
        self.record_noted_before(&cmd)?;
        self.send(cmd, false)?.await.map_err(|_| FsError::Closed)?
    }

    /// Queues the commands recording the noted writes (`unstable`) of every inode `cmd` names,
    /// ahead of it: the writer takes requests in order, so `cmd` applies to a file whose size
    /// and times include them, and its own durability covers them.
    fn record_noted_before(&self, cmd: &Command) -> Result<(), FsError> {
        if self.inner.unstable.is_empty() {
            return Ok(());
        }
        for key in cmd.keys() {
            if let Key::Inode(ino) = key {
                if let Some(w) = self.inner.unstable.take(ino) {
                    // A file removed meanwhile fails this alone; nothing else depends on it.
                    drop(self.send(w, false)?);
                }
            }
        }
        Ok(())
    }

    /// Notes an UNSTABLE write of `ino` ending at `end` (see `unstable`): reads see it at once,
    /// the log records it with the file's next durable command (`record_writes`).
    pub fn note_write(&self, ino: u64, end: u64, time: Time, cred: Option<perm::Cred>, kills: u32) {
        if let Some(oldest) = self.inner.unstable.note(ino, end, time, cred, kills) {
            // Room for one more file: the oldest file's writes go to the log now, not durably
            // (they were not promised to be).
            if let Ok(rx) = self.send(oldest, false) {
                drop(rx);
            }
        }
    }

    /// Records the noted writes of `ino` durably (COMMIT, CLOSE). Returns the file as they left
    /// it, or `None` when nothing was noted.
    pub async fn record_writes(&self, ino: u64) -> Result<Option<Outcome>, FsError> {
        match self.inner.unstable.take(ino) {
            Some(cmd) => Ok(Some(self.execute(cmd).await?)),
            None => Ok(None),
        }
    }

    /// Records every file's noted writes and waits until everything applied is durable
    /// (shutdown).
    pub async fn record_all_and_sync(&self) -> Result<(), FsError> {
        for cmd in self.inner.unstable.take_all() {
            // A file removed meanwhile fails alone.
            let _ = self.send(cmd, false)?.await;
        }
        self.sync().await
    }

    /// Waits until every command applied so far is durable.
    pub async fn sync(&self) -> Result<(), FsError> {
        let (reply, rx) = oneshot::channel();
        self.request(Request::Sync { reply })?;
        rx.await.map_err(|_| FsError::Closed)?
    }

    /// Writes everything applied so far into the redb checkpoint and waits for it (the log
    /// already makes it durable; this is for readers of the `log` table, and tests).
    pub async fn checkpoint(&self) -> Result<(), FsError> {
        let (reply, rx) = oneshot::channel();
        self.request(Request::Checkpoint { reply })?;
        rx.await.map_err(|_| FsError::Closed)?
    }

    /// Sets who carries out the effects of commands applied from now on (once; later calls
    /// are ignored).
    pub fn set_effect_sink(&self, sink: Arc<dyn EffectSink>) {
        let _ = self.inner.effects.0.set(sink);
    }

    /// A consistent read-only view including every command that has returned.
    pub fn snapshot(&self) -> Result<Snapshot<'_>, FsError> {
        let st = self
            .inner
            .live
            .read()
            .map_err(|_| FsError::Io("namespace state lock poisoned".into()))?;
        Ok(Snapshot::new(
            st,
            &self.inner.unstable,
            self.inner.boot_count,
        ))
    }

    /// The `log` table's entries `(index, command bytes)` from `from` on, oldest first: every
    /// command up to the last checkpoint, within `Options::log_keep`.
    pub fn log_entries(&self, from: u64) -> Result<Vec<(u64, Vec<u8>)>, FsError> {
        store::log_entries(&self.inner.db.begin_read()?, from)
    }

    pub fn getattr(&self, ino: u64) -> Result<Inode, FsError> {
        self.snapshot()?.getattr(ino)
    }

    pub fn lookup(&self, dir: u64, name: &[u8]) -> Result<Inode, FsError> {
        self.snapshot()?.lookup(dir, name)
    }

    /// See `Snapshot::readdir`.
    pub fn readdir(
        &self,
        dir: u64,
        after_cookie: u64,
        max_entries: usize,
    ) -> Result<(Vec<DirEntry>, bool), FsError> {
        self.snapshot()?.readdir(dir, after_cookie, max_entries)
    }

    pub fn resolve(&self, path: &[u8]) -> Result<Inode, FsError> {
        self.snapshot()?.resolve(path)
    }

    pub fn statfs(&self) -> Result<StatFs, FsError> {
        self.snapshot()?.statfs()
    }

    /// Where chunk `chunk` of `ino` lives, if recorded.
    pub fn chunk(&self, ino: u64, chunk: u64) -> Result<Option<Vec<u64>>, FsError> {
        self.snapshot()?.chunk(ino, chunk)
    }

    /// Where each recorded chunk of `ino` lives.
    pub fn chunks(&self, ino: u64) -> Result<Vec<(u64, Vec<u64>)>, FsError> {
        self.snapshot()?.chunks(ino)
    }

    /// See `Snapshot::under_mirrored`.
    pub fn under_mirrored(&self, mirrors: usize) -> Result<Vec<u64>, FsError> {
        Ok(self.snapshot()?.under_mirrored(mirrors))
    }

    pub fn orphans(&self) -> Result<Vec<u64>, FsError> {
        self.snapshot()?.orphans()
    }

    /// Random at creation, then fixed: the NFS fsid of this file system.
    pub fn fs_id(&self) -> u64 {
        self.inner.fs_id
    }

    /// 1 on the first open of this store, +1 on each open since: for write verifiers and the
    /// server-owner epoch.
    pub fn boot_count(&self) -> u64 {
        self.inner.boot_count
    }

    /// Group-commit counters since this open.
    pub fn stats(&self) -> StatsSnapshot {
        self.inner.stats.snapshot()
    }
}

/// Applies the log's commands that the checkpoint does not hold yet, in order.
fn replay(txn: &redb::WriteTransaction, records: &[(u64, Vec<u8>)]) -> Result<(), FsError> {
    let mut state = RedbState::open(txn)?;
    let mut log = txn.open_table(LOG)?;
    let mut applied = state.meta(APPLIED)?;
    let from = applied;
    for (index, bytes) in records.iter().filter(|(i, _)| *i > from) {
        if *index != applied + 1 {
            return Err(FsError::Corrupt(format!(
                "namespace log resumes at entry {index}, but the checkpoint ends at {applied}"
            )));
        }
        let cmd = Command::decode(bytes)?;
        // `apply` is deterministic: a command that succeeded before succeeds again.
        apply_to_redb(&mut state, &mut log, &mut applied, &cmd).map_err(|e| {
            FsError::Corrupt(format!("namespace log entry {index} does not apply: {e}"))
        })?;
    }
    state.set_meta(APPLIED, applied)?;
    if applied > from {
        info!(from, to = applied, "namespace log replayed");
    }
    Ok(())
}

/// A file system id that differs between file systems created on different hosts or times; it
/// is decided here, outside `apply`, and travels in `InitRoot`.
fn new_fs_id(path: &Path) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(&Time::now().secs.to_le_bytes());
    h.update(&Time::now().nsecs.to_le_bytes());
    h.update(&std::process::id().to_le_bytes());
    h.update(path.as_os_str().as_encoded_bytes());
    let b = h.finalize();
    let mut id = [0u8; 8];
    id.copy_from_slice(&b.as_bytes()[..8]);
    u64::from_le_bytes(id).max(1)
}
