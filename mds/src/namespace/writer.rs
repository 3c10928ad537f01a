//! Group commit: one thread owns the write side of the namespace. It drains whatever requests
//! are queued, applies them in order against the in-memory state, appends them to the command
//! log (`wal`) and, if any of them asked for durability, makes the log durable with one
//! fdatasync; only then does it publish the batch to readers and answer. N concurrent commands
//! cost one small sequential write instead of N.
//!
//! The log is the durable copy; the state lives in memory (`MemState`, behind a lock readers
//! share). Every so often the writer hands the changes gathered since the last checkpoint to the
//! checkpoint thread, which writes them into redb in one durable transaction and then deletes the
//! log segments they came from. Recovery is the last checkpoint plus the log (see
//! `Namespace::open_with`).
//!
//! Why not redb per batch: a redb commit per batch, even non-durable, cost ~300-400 µs of CPU
//! here (page copies, allocation, checksums of ~35 pages), which made the single writer thread
//! the bottleneck of create and unlink; applying a command in memory costs microseconds.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redb::{Database, Durability, ReadableTable};
use tokio::sync::oneshot;
use tracing::{debug, error, warn};

use super::apply::apply;
use super::error::FsError;
use super::state::{Changes, MemState, Staged, StateStore};
use super::store::{RedbState, APPLIED, LOG};
use super::types::{Command, Effect, Outcome};
use super::wal::{encode_record, remove_before, Records, Wal};
use super::{EffectSlot, SpaceGuard};

/// Most requests taken into one batch; bounds the latency of the first one in the batch.
const MAX_BATCH: usize = 4096;
/// With nothing queued for this long, the writer syncs the log and checkpoints what it has.
const IDLE: Duration = Duration::from_millis(250);
/// Under steady load, checkpoint at least this often, so recovery replays at most this much.
/// Longer intervals write less in all (a page changed by many commands goes out once), but each
/// checkpoint's burst of writes slows the log's fdatasync while it lasts.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(5);
/// Commands since the last checkpoint that force one (bounds the memory of the pending set).
const CHECKPOINT_COMMANDS: usize = 100_000;
/// Attempts of one checkpoint before it is handed back to the writer to be retried later.
const CHECKPOINT_ATTEMPTS: u32 = 3;

pub(crate) type Reply = oneshot::Sender<Result<Outcome, FsError>>;

pub(crate) enum Request {
    Execute {
        cmd: Command,
        durable: bool,
        reply: Reply,
    },
    Sync {
        reply: oneshot::Sender<Result<(), FsError>>,
    },
    /// Write everything applied so far into redb now (tests, and tools reading the `log` table).
    Checkpoint {
        reply: oneshot::Sender<Result<(), FsError>>,
    },
}

/// Counters that show group commit at work.
#[derive(Debug, Default)]
pub struct Stats {
    /// Commands that reached the writer (applied or rejected).
    pub commands: AtomicU64,
    /// Batches applied.
    pub transactions: AtomicU64,
    /// Batches made durable for a request that asked for it (one fdatasync of the log each).
    pub durable_commits: AtomicU64,
    /// Durable redb checkpoints written.
    pub checkpoints: AtomicU64,
}

/// A snapshot of `Stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub commands: u64,
    pub transactions: u64,
    pub durable_commits: u64,
    pub checkpoints: u64,
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            commands: self.commands.load(Ordering::Relaxed),
            transactions: self.transactions.load(Ordering::Relaxed),
            durable_commits: self.durable_commits.load(Ordering::Relaxed),
            checkpoints: self.checkpoints.load(Ordering::Relaxed),
        }
    }
}

/// What one checkpoint writes: the net changes of commands `(.., applied]` since the previous
/// one, and those commands for the `log` table.
pub(crate) struct Checkpoint {
    changes: Changes,
    log: Records,
    applied: u64,
    /// Log segments numbered below this hold nothing newer than `applied`.
    segments_before: u64,
}

/// Writes checkpoints into redb, one at a time, off the writer's path.
pub(crate) struct Checkpointer {
    pub db: Arc<Database>,
    pub dir: PathBuf,
    pub stats: Arc<Stats>,
    /// Log entries kept behind the applied index in the `log` table.
    pub log_keep: u64,
    pub quick_repair: bool,
    pub space: Option<Arc<dyn SpaceGuard>>,
}

impl Checkpointer {
    /// Runs until `rx` closes; each checkpoint's result goes back on `done` (the checkpoint
    /// itself when it failed, so the writer can fold it into the next one).
    pub(crate) fn run(self, rx: Receiver<Checkpoint>, done: Sender<Result<(), Box<Checkpoint>>>) {
        for ck in rx {
            let r = self.write_retrying(ck);
            if done.send(r).is_err() {
                break;
            }
        }
        debug!("namespace checkpointer stopped");
    }

    fn write_retrying(&self, ck: Checkpoint) -> Result<(), Box<Checkpoint>> {
        // A redb write that fails for space leaves the database unusable until it is reopened
        // (`StorageError::PreviousIo`): without room, the checkpoint waits and the log keeps
        // everything meanwhile.
        if self
            .space
            .as_ref()
            .is_some_and(|s| !s.room_for_checkpoint())
        {
            warn!(
                applied = ck.applied,
                "namespace checkpoint postponed: file system full"
            );
            return Err(Box::new(ck));
        }
        for attempt in 1..=CHECKPOINT_ATTEMPTS {
            let t0 = Instant::now();
            match self.write(&ck) {
                Ok(()) => {
                    debug!(
                        commands = ck.log.len(),
                        applied = ck.applied,
                        ms = t0.elapsed().as_millis() as u64,
                        "namespace checkpoint written"
                    );
                    self.stats.checkpoints.fetch_add(1, Ordering::Relaxed);
                    metrics::mds::CHECKPOINT.observe(t0.elapsed());
                    // The segments only cost replay time if they stay.
                    if let Err(e) = remove_before(&self.dir, ck.segments_before) {
                        warn!(error = %e, "namespace log segments not removed");
                    }
                    return Ok(());
                }
                Err(e) => {
                    error!(error = %e, attempt, applied = ck.applied, "namespace checkpoint failed");
                    std::thread::sleep(Duration::from_millis(100 * u64::from(attempt)));
                }
            }
        }
        Err(Box::new(ck))
    }

    pub(crate) fn write(&self, ck: &Checkpoint) -> Result<(), FsError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate);
        txn.set_quick_repair(self.quick_repair);
        {
            let mut state = RedbState::open(&txn)?;
            ck.changes.flush_into(&mut state)?;
            state.set_meta(APPLIED, ck.applied)?;
            let mut log = txn.open_table(LOG)?;
            for (index, bytes) in &ck.log {
                log.insert(*index, bytes.as_slice())?;
            }
            let keep_from = ck.applied.saturating_sub(self.log_keep);
            loop {
                let first = match log.first()? {
                    Some((k, _)) => k.value(),
                    None => break,
                };
                if first >= keep_from {
                    break;
                }
                log.remove(first)?;
            }
        }
        txn.commit()?;
        Ok(())
    }
}

pub(crate) struct Writer {
    pub live: Arc<RwLock<MemState>>,
    pub stats: Arc<Stats>,
    pub wal: Wal,
    /// Index of the last applied command.
    pub applied: u64,
    /// Changes and commands since the last checkpoint handed off.
    pub pending: Changes,
    pub pending_log: Records,
    pub last_checkpoint: Instant,
    pub checkpoints: Sender<Checkpoint>,
    pub checkpoint_done: Receiver<Result<(), Box<Checkpoint>>>,
    pub checkpointer: Option<JoinHandle<()>>,
    pub checkpoint_in_flight: bool,
    /// Set when the log may not hold what was acknowledged (a failed fdatasync, or a failed
    /// batch whose records could not be cut from the log): from then on every request fails
    /// with it, and a restart recovers from the last checkpoint and the log.
    pub poisoned: Option<FsError>,
    pub space: Option<Arc<dyn SpaceGuard>>,
    /// Where the effects of applied commands go (`Namespace::set_effect_sink`).
    pub effects: Arc<EffectSlot>,
}

impl Writer {
    pub(crate) fn run(mut self, rx: Receiver<Request>) {
        loop {
            self.collect_checkpoint();
            let first = match rx.recv_timeout(IDLE) {
                Ok(r) => r,
                Err(RecvTimeoutError::Timeout) => {
                    self.idle();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let first = match first {
                Request::Checkpoint { reply } => {
                    let _ = reply.send(self.checkpoint_now());
                    continue;
                }
                r => r,
            };
            let mut batch = vec![first];
            let mut checkpoint = None;
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    // Ends the batch: it covers everything queued before it.
                    Ok(Request::Checkpoint { reply }) => {
                        checkpoint = Some(reply);
                        break;
                    }
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            self.commit_batch(batch);
            if let Some(reply) = checkpoint {
                let _ = reply.send(self.checkpoint_now());
                continue;
            }
            if self.checkpoint_due() {
                self.start_checkpoint();
            }
        }
        self.shutdown();
    }

    /// Waits for the checkpoint under way, then writes one of everything pending and waits for
    /// it too.
    fn checkpoint_now(&mut self) -> Result<(), FsError> {
        if let Some(e) = &self.poisoned {
            return Err(e.clone());
        }
        self.wait_checkpoint();
        self.start_checkpoint();
        if self.checkpoint_in_flight {
            self.wait_checkpoint();
        }
        if self.pending_log.is_empty() {
            Ok(())
        } else {
            Err(FsError::Io("namespace checkpoint failed".into()))
        }
    }

    fn wait_checkpoint(&mut self) {
        if self.checkpoint_in_flight {
            if let Ok(Err(ck)) = self.checkpoint_done.recv() {
                self.take_back(*ck);
            }
            self.checkpoint_in_flight = false;
        }
    }

    fn idle(&mut self) {
        if self.poisoned.is_some() {
            return;
        }
        if let Err(e) = self.wal.sync() {
            self.poison(&e);
            return;
        }
        if !self.pending_log.is_empty() {
            self.start_checkpoint();
        }
    }

    fn checkpoint_due(&self) -> bool {
        !self.pending_log.is_empty()
            && (self.pending_log.len() >= CHECKPOINT_COMMANDS
                || self.last_checkpoint.elapsed() >= CHECKPOINT_EVERY)
    }

    /// Hands what is pending to the checkpoint thread, unless one is still being written.
    fn start_checkpoint(&mut self) {
        if self.checkpoint_in_flight || self.poisoned.is_some() || self.pending_log.is_empty() {
            return;
        }
        // The next segment starts after a synced one, so a torn write can only ever be at the
        // very end of the log.
        if let Err(e) = self.wal.sync() {
            self.poison(&e);
            return;
        }
        let segments_before = match self.wal.rotate() {
            Ok(s) => s,
            Err(e) => {
                // Nothing lost: the records stay in the current segment; try again later.
                error!(error = %e, "namespace log rotation failed");
                return;
            }
        };
        let ck = Checkpoint {
            changes: std::mem::take(&mut self.pending),
            log: std::mem::take(&mut self.pending_log),
            applied: self.applied,
            segments_before,
        };
        self.last_checkpoint = Instant::now();
        match self.checkpoints.send(ck) {
            Ok(()) => self.checkpoint_in_flight = true,
            Err(std::sync::mpsc::SendError(ck)) => self.take_back(ck),
        }
    }

    fn collect_checkpoint(&mut self) {
        if !self.checkpoint_in_flight {
            return;
        }
        match self.checkpoint_done.try_recv() {
            Ok(r) => {
                self.checkpoint_in_flight = false;
                if let Err(ck) = r {
                    self.take_back(*ck);
                }
            }
            Err(TryRecvError::Empty) => {}
            Err(TryRecvError::Disconnected) => self.checkpoint_in_flight = false,
        }
    }

    /// A checkpoint that could not be written goes in front of what came after it; its log
    /// segments were kept, so nothing is lost meanwhile.
    fn take_back(&mut self, ck: Checkpoint) {
        let mut changes = ck.changes;
        changes.merge(std::mem::take(&mut self.pending));
        self.pending = changes;
        let mut log = ck.log;
        log.append(&mut self.pending_log);
        self.pending_log = log;
    }

    /// Makes everything durable in redb before the thread ends, so the next open replays nothing.
    fn shutdown(&mut self) {
        self.wait_checkpoint();
        if self.poisoned.is_none() {
            if let Err(e) = self.wal.sync() {
                error!(error = %e, "namespace log sync at shutdown failed");
            }
            self.start_checkpoint();
            if self.checkpoint_in_flight {
                if let Ok(Err(_)) = self.checkpoint_done.recv() {
                    error!("namespace: final checkpoint failed; the next open replays the log");
                }
            }
        }
        // Closing the channel ends the checkpoint thread.
        let (dead, _) = std::sync::mpsc::channel();
        self.checkpoints = dead;
        if let Some(h) = self.checkpointer.take() {
            let _ = h.join();
        }
        debug!("namespace writer stopped");
    }

    /// Applies `batch`, logs it, makes it as durable as asked, publishes it and answers. An
    /// `apply` error fails only its command; a log error fails the whole batch, which then
    /// leaves no trace.
    fn commit_batch(&mut self, batch: Vec<Request>) {
        if let Some(e) = &self.poisoned {
            let e = e.clone();
            for r in batch {
                fail(r, &e);
            }
            return;
        }
        let durable = batch.iter().any(|r| match r {
            Request::Execute { durable, .. } => *durable,
            Request::Sync { .. } | Request::Checkpoint { .. } => true,
        });
        let mut answers: Vec<(Request, Option<Result<Outcome, FsError>>)> =
            Vec::with_capacity(batch.len());
        let mut records = Vec::new();
        let mut log = Vec::new();
        let mut applied = self.applied;
        if self.live.is_poisoned() {
            let e = FsError::Io("namespace state lock poisoned".into());
            self.poison(&e);
            for r in batch {
                fail(r, &e);
            }
            return;
        }
        let changes = {
            let live = self.live.read().unwrap_or_else(|p| p.into_inner());
            let mut staged = Staged::new(&*live);
            for req in batch {
                let out = match &req {
                    Request::Sync { .. } | Request::Checkpoint { .. } => None,
                    Request::Execute { cmd, .. } => {
                        self.stats.commands.fetch_add(1, Ordering::Relaxed);
                        Some(apply_one(&mut staged, cmd).and_then(|(out, bytes)| {
                            encode_record(&mut records, applied + 1, &bytes)?;
                            applied += 1;
                            log.push((applied, bytes));
                            Ok(out)
                        }))
                    }
                };
                answers.push((req, out));
            }
            staged.into_changes()
        };
        let wal_len = self.wal.len();
        let mut appended = self.wal.append(&records);
        if matches!(appended, Err(FsError::NoSpace)) {
            // The file system is full: cut the partial batch, take space from the reserve
            // (a REMOVE must get through to free space) and try once more.
            if self.wal.cut_to(wal_len).is_ok() && self.space.as_ref().is_some_and(|s| s.release())
            {
                appended = self.wal.append(&records);
            }
        }
        let synced = match appended {
            Ok(()) if durable => self.wal.sync().map_err(|e| (e, true)),
            Ok(()) => Ok(()),
            Err(e) => Err((e, false)),
        };
        if let Err((e, sync_failed)) = synced {
            // Cut the batch off the log; if even that fails (or the sync failed, after which
            // the kernel may have dropped the pages), this process can promise nothing more.
            // A write refused for space wrote nothing that stays once cut: the batch fails
            // (NFS4ERR_NOSPC) and the log goes on.
            let for_space = matches!(e, FsError::NoSpace) && !sync_failed;
            if self.wal.cut_to(wal_len).is_err() || sync_failed || (durable && !for_space) {
                self.poison(&e);
            }
            error!(error = %e, commands = log.len(), "namespace log write failed");
            for (r, _) in answers {
                fail(r, &e);
            }
            return;
        }
        let published = self.live.write().map_err(|_| ()).and_then(|mut st| {
            changes.flush_into(&mut *st).map_err(|_| ())?;
            st.set_meta(APPLIED, applied).map_err(|_| ())
        });
        if published.is_err() {
            let e = FsError::Io("namespace state lock poisoned".into());
            self.poison(&e);
            for (r, _) in answers {
                fail(r, &e);
            }
            return;
        }
        self.applied = applied;
        self.pending.merge(changes);
        self.pending_log.append(&mut log);
        self.stats.transactions.fetch_add(1, Ordering::Relaxed);
        if durable {
            self.stats.durable_commits.fetch_add(1, Ordering::Relaxed);
        }
        // Effects go out before the answers, so whatever a client does after its reply finds
        // them queued behind it.
        let effects: Vec<Effect> = answers
            .iter()
            .filter_map(|(_, out)| out.as_ref()?.as_ref().ok())
            .flat_map(|o| o.effects.iter().copied())
            .collect();
        if !effects.is_empty() {
            self.effects.deliver(&effects);
        }
        for (req, out) in answers {
            match (req, out) {
                (Request::Execute { reply, .. }, Some(out)) => {
                    let _ = reply.send(out);
                }
                (Request::Sync { reply } | Request::Checkpoint { reply }, _) => {
                    let _ = reply.send(Ok(()));
                }
                (Request::Execute { reply, .. }, None) => {
                    let _ = reply.send(Err(FsError::Closed));
                }
            }
        }
    }

    fn poison(&mut self, e: &FsError) {
        error!(error = %e, "namespace writer stops accepting commands until restart");
        self.poisoned = Some(FsError::Io(format!("namespace log unusable: {e}")));
    }
}

fn fail(r: Request, e: &FsError) {
    match r {
        Request::Execute { reply, .. } => {
            let _ = reply.send(Err(e.clone()));
        }
        Request::Sync { reply } | Request::Checkpoint { reply } => {
            let _ = reply.send(Err(e.clone()));
        }
    }
}

/// Applies one command on top of `base` through its own staging buffer, so a failed command
/// leaves nothing behind; returns its outcome and encoding.
pub(crate) fn apply_one<S: StateStore + ?Sized>(
    base: &mut S,
    cmd: &Command,
) -> Result<(Outcome, Vec<u8>), FsError> {
    let bytes = cmd.encode()?;
    let mut staged = Staged::new(&*base);
    let out = apply(&mut staged, cmd)?;
    let changes = staged.into_changes();
    changes.flush_into(base)?;
    Ok((out, bytes))
}

/// Applies one command directly to redb tables and logs it there (open-time work: the root
/// and log replay), advancing `applied`.
pub(crate) fn apply_to_redb(
    state: &mut RedbState<'_>,
    log: &mut redb::Table<'_, u64, &'static [u8]>,
    applied: &mut u64,
    cmd: &Command,
) -> Result<Outcome, FsError> {
    let (out, bytes) = apply_one(state, cmd)?;
    *applied += 1;
    log.insert(*applied, bytes.as_slice())?;
    Ok(out)
}
