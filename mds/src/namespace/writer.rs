//! Group commit: one thread owns the write side of the database. It drains whatever requests are
//! queued, applies them in order inside one redb write transaction, and commits once, so N
//! concurrent commands cost one fsync instead of N.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redb::{Database, Durability, ReadableTable};
use tokio::sync::oneshot;
use tracing::{debug, error};

use super::apply::apply;
use super::error::FsError;
use super::state::{Staged, StateStore};
use super::store::{RedbState, APPLIED, LOG};
use super::types::{Command, Outcome};

/// Most requests taken into one transaction; bounds the latency of the first one in the batch.
const MAX_BATCH: usize = 4096;
/// After this long with applied-but-not-durable commands and nothing else to do, make them durable
/// anyway, so that lazy commands reach the disk even if nobody asks.
const IDLE_SYNC: Duration = Duration::from_millis(500);
/// Non-durable commits in a row before one is made durable regardless: redb frees pages only at
/// durable commits, so the file would otherwise grow without bound under a stream of lazy writes.
const MAX_LAZY_COMMITS: u32 = 256;

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
}

/// Counters that show group commit at work.
#[derive(Debug, Default)]
pub struct Stats {
    /// Commands that reached the writer (applied or rejected).
    pub commands: AtomicU64,
    /// Write transactions committed.
    pub transactions: AtomicU64,
    /// Of those, the ones committed durably (each is one redb fsync round).
    pub durable_commits: AtomicU64,
}

/// A snapshot of `Stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub commands: u64,
    pub transactions: u64,
    pub durable_commits: u64,
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            commands: self.commands.load(Ordering::Relaxed),
            transactions: self.transactions.load(Ordering::Relaxed),
            durable_commits: self.durable_commits.load(Ordering::Relaxed),
        }
    }
}

pub(crate) struct Writer {
    pub db: Arc<Database>,
    pub stats: Arc<Stats>,
    /// Log entries kept behind the applied index (the state tables are the snapshot).
    pub log_keep: u64,
    pub quick_repair: bool,
}

enum Pending {
    Exec(Reply, Box<Result<Outcome, FsError>>),
    Sync(oneshot::Sender<Result<(), FsError>>),
}

impl Writer {
    pub(crate) fn run(self, rx: Receiver<Request>) {
        let mut lazy_commits: u32 = 0;
        let mut dirty_since: Option<Instant> = None;
        loop {
            let first = match dirty_since {
                Some(t) => match rx.recv_timeout(IDLE_SYNC.saturating_sub(t.elapsed())) {
                    Ok(r) => r,
                    Err(RecvTimeoutError::Timeout) => {
                        if self.commit_batch(Vec::new(), true).is_ok() {
                            dirty_since = None;
                            lazy_commits = 0;
                        }
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match rx.recv() {
                    Ok(r) => r,
                    Err(_) => break,
                },
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            let wants_durable = batch.iter().any(|r| match r {
                Request::Execute { durable, .. } => *durable,
                Request::Sync { .. } => true,
            });
            let durable = wants_durable || lazy_commits >= MAX_LAZY_COMMITS;
            if self.commit_batch(batch, durable).is_ok() {
                if durable {
                    lazy_commits = 0;
                    dirty_since = None;
                } else {
                    lazy_commits += 1;
                    dirty_since.get_or_insert_with(Instant::now);
                }
            }
        }
        if dirty_since.is_some() {
            let _ = self.commit_batch(Vec::new(), true);
        }
        debug!("namespace writer stopped");
    }

    /// Applies `batch` in one transaction and answers every request after the commit. A storage
    /// error fails the whole batch (nothing of it is visible); an `apply` error fails only its
    /// command.
    fn commit_batch(&self, batch: Vec<Request>, durable: bool) -> Result<(), ()> {
        let n = batch.len();
        match self.try_commit(batch, durable) {
            Ok(pending) => {
                for p in pending {
                    match p {
                        Pending::Exec(reply, r) => {
                            let _ = reply.send(*r);
                        }
                        Pending::Sync(reply) => {
                            let _ = reply.send(Ok(()));
                        }
                    }
                }
                Ok(())
            }
            Err((e, pending)) => {
                error!(error = %e, commands = n, "namespace commit failed");
                for p in pending {
                    match p {
                        Pending::Exec(reply, _) => {
                            let _ = reply.send(Err(e.clone()));
                        }
                        Pending::Sync(reply) => {
                            let _ = reply.send(Err(e.clone()));
                        }
                    }
                }
                Err(())
            }
        }
    }

    fn try_commit(
        &self,
        batch: Vec<Request>,
        durable: bool,
    ) -> Result<Vec<Pending>, (FsError, Vec<Pending>)> {
        let mut pending = Vec::with_capacity(batch.len());
        let mut txn = match self.db.begin_write() {
            Ok(t) => t,
            Err(e) => {
                let pending = batch.into_iter().map(into_failed).collect();
                return Err((e.into(), pending));
            }
        };
        if durable {
            txn.set_durability(Durability::Immediate);
            txn.set_quick_repair(self.quick_repair);
        } else {
            txn.set_durability(Durability::None);
        }
        let mut it = batch.into_iter();
        let r = (|| -> Result<(), FsError> {
            let mut state = RedbState::open(&txn)?;
            let mut log = txn.open_table(LOG)?;
            let mut applied = state.meta(APPLIED)?;
            for req in it.by_ref() {
                match req {
                    Request::Sync { reply } => pending.push(Pending::Sync(reply)),
                    Request::Execute { cmd, reply, .. } => {
                        self.stats.commands.fetch_add(1, Ordering::Relaxed);
                        let r = apply_one(&mut state, &mut log, &mut applied, &cmd);
                        match r {
                            Err(e @ (FsError::Io(_) | FsError::Corrupt(_))) => {
                                pending.push(Pending::Exec(reply, Box::new(Err(e.clone()))));
                                return Err(e);
                            }
                            r => pending.push(Pending::Exec(reply, Box::new(r))),
                        }
                    }
                }
            }
            state.set_meta(APPLIED, applied)?;
            let keep_from = applied.saturating_sub(self.log_keep);
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
            drop(log);
            drop(state);
            Ok(())
        })();
        if let Err(e) = r {
            pending.extend(it.map(into_failed));
            return Err((e, pending));
        }
        if let Err(e) = txn.commit() {
            return Err((e.into(), pending));
        }
        self.stats.transactions.fetch_add(1, Ordering::Relaxed);
        if durable {
            self.stats.durable_commits.fetch_add(1, Ordering::Relaxed);
        }
        Ok(pending)
    }
}

fn into_failed(r: Request) -> Pending {
    match r {
        Request::Execute { reply, .. } => Pending::Exec(reply, Box::new(Err(FsError::Closed))),
        Request::Sync { reply } => Pending::Sync(reply),
    }
}

/// Applies one command through a staging buffer and, if it succeeds, writes its changes and its
/// log entry. Storage errors are returned as `Io`/`Corrupt` so the caller can abort the batch.
pub(crate) fn apply_one(
    state: &mut RedbState<'_>,
    log: &mut redb::Table<'_, u64, &'static [u8]>,
    applied: &mut u64,
    cmd: &Command,
) -> Result<Outcome, FsError> {
    let bytes = cmd.encode()?;
    let mut staged = Staged::new(&*state);
    let out = apply(&mut staged, cmd)?;
    let changes = staged.into_changes();
    changes.flush_into(state)?;
    *applied += 1;
    log.insert(*applied, bytes.as_slice())?;
    Ok(out)
}
