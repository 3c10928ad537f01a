//! Checkpoints: every local shard's applied changes written into redb in one durable
//! transaction, every few seconds, when idle, or when a snapshot needs one.
//!
//! The Raft log makes every acknowledged command durable; a checkpoint makes the state as of an
//! applied log id durable, which is what lets a shard's log be purged up to it (a snapshot is a
//! checkpoint: `ShardMachine::build_snapshot`), and what a restart loads before the log replays
//! the rest. Why redb only every few seconds: a durable redb commit rewrites the B-tree pages a
//! batch touched, and its fsync cost ~4.5 ms here against ~0.1 ms for appending to the log.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use redb::{Database, Durability};
use tokio::sync::oneshot;
use tracing::{debug, error, warn};

use super::shard::Stats;
use super::shard::{Applied, ShardCore};
use super::space::SpaceGuard;
use crate::storage::store::{self, Db, RedbState};
use meta_core::state::Changes;
use meta_core::FsError;

/// Under steady load, a checkpoint at least this often, so a restart replays at most this much
/// of the log.
const EVERY: Duration = Duration::from_secs(5);

enum Req {
    Now(oneshot::Sender<Result<(), FsError>>),
    Stop,
}

/// Asks the checkpointer for a checkpoint. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Checkpoints {
    tx: Arc<Mutex<Option<Sender<Req>>>>,
}

impl Checkpoints {
    /// Writes a checkpoint of everything applied so far and waits until it is durable.
    pub async fn now(&self) -> Result<(), FsError> {
        let (reply, rx) = oneshot::channel();
        {
            let tx = self
                .tx
                .lock()
                .map_err(|_| FsError::Io("checkpoint queue lock poisoned".into()))?;
            tx.as_ref()
                .ok_or(FsError::Closed)?
                .send(Req::Now(reply))
                .map_err(|_| FsError::Closed)?;
        }
        rx.await.map_err(|_| FsError::Closed)?
    }

    /// Writes a last checkpoint and stops the thread.
    pub fn stop(&self, thread: &Mutex<Option<JoinHandle<()>>>) {
        if let Ok(mut tx) = self.tx.lock() {
            if let Some(tx) = tx.take() {
                let _ = tx.send(Req::Stop);
            }
        }
        if let Ok(mut t) = thread.lock() {
            if let Some(h) = t.take() {
                let _ = h.join();
            }
        }
    }
}

pub(crate) struct Checkpointer {
    pub db: Arc<Database>,
    pub shards: Vec<Arc<ShardCore>>,
    pub stats: Arc<Stats>,
    pub quick_repair: bool,
    pub space: Option<Arc<dyn SpaceGuard>>,
}

/// What one checkpoint takes from a shard.
struct Taken {
    core: Arc<ShardCore>,
    applied: Applied,
    changes: Changes,
    /// The whole state, when a snapshot replaced the shard.
    whole: Option<meta_core::MemState>,
    /// The shard's table of recent results (`raft::sessions`), encoded: small (what its
    /// proposers wait for), so written whole.
    sessions: Vec<u8>,
}

impl Checkpointer {
    /// Starts the thread; returns the handle to ask it for checkpoints.
    pub fn start(self) -> Result<(Checkpoints, JoinHandle<()>), FsError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let th = std::thread::Builder::new()
            .name("cfs-checkpoint".into())
            .spawn(move || self.run(rx))?;
        Ok((
            Checkpoints {
                tx: Arc::new(Mutex::new(Some(tx))),
            },
            th,
        ))
    }

    fn run(self, rx: Receiver<Req>) {
        loop {
            let mut waiting = Vec::new();
            let mut stop = false;
            match rx.recv_timeout(EVERY) {
                Ok(Req::Now(r)) => waiting.push(r),
                Ok(Req::Stop) | Err(RecvTimeoutError::Disconnected) => stop = true,
                Err(RecvTimeoutError::Timeout) => {}
            }
            // Every request queued meanwhile is answered by this one checkpoint.
            while let Ok(r) = rx.try_recv() {
                match r {
                    Req::Now(r) => waiting.push(r),
                    Req::Stop => stop = true,
                }
            }
            let r = self.checkpoint();
            for w in waiting {
                let _ = w.send(r.clone());
            }
            if stop {
                break;
            }
        }
        debug!("checkpointer stopped");
    }

    /// One checkpoint of every shard with something new; on failure the changes go back to
    /// their shards, to be written with the next one.
    fn checkpoint(&self) -> Result<(), FsError> {
        if self
            .space
            .as_ref()
            .is_some_and(|s| !s.room_for_checkpoint())
        {
            // redb cannot go on after a failed write without being reopened: without room,
            // wait; the log keeps everything meanwhile.
            warn!("checkpoint postponed: file system full");
            return Err(FsError::NoSpace);
        }
        let taken = self.take();
        if taken.is_empty() {
            return Ok(());
        }
        let t0 = std::time::Instant::now();
        let r = self.write(&taken);
        match &r {
            Ok(()) => {
                self.stats.checkpoints.fetch_add(1, Ordering::Relaxed);
                metrics::mds::CHECKPOINT.observe(t0.elapsed());
                debug!(shards = taken.len(), "checkpoint written");
            }
            Err(e) => {
                error!(error = %e, "checkpoint failed; its changes wait for the next one");
                for t in taken {
                    give_back(t);
                }
            }
        }
        r
    }

    fn take(&self) -> Vec<Taken> {
        let mut out = Vec::new();
        for core in &self.shards {
            // The state's read lock holds off `apply`, so the applied id names exactly the
            // changes taken (see `machine::Pending`).
            let Ok(live) = core.live.read() else { continue };
            let Ok(mut p) = core.pending.lock() else {
                continue;
            };
            if !p.dirty {
                continue;
            }
            let sessions = match live.sessions.encode() {
                Ok(b) => b,
                Err(e) => {
                    error!(shard = %core.id, error = %e, "checkpoint skips a shard");
                    continue;
                }
            };
            let whole = p.replaced.then(|| live.clone());
            out.push(Taken {
                core: core.clone(),
                applied: p.applied.clone(),
                changes: std::mem::take(&mut p.changes),
                whole,
                sessions,
            });
            p.replaced = false;
            p.dirty = false;
        }
        out
    }

    fn write(&self, taken: &[Taken]) -> Result<(), FsError> {
        let mut txn = self.db.begin_write().db()?;
        txn.set_durability(Durability::Immediate);
        txn.set_quick_repair(self.quick_repair);
        for t in taken {
            let shard = t.core.id;
            match &t.whole {
                Some(state) => {
                    store::delete_shard(&txn, shard)?;
                    let mut st = RedbState::open(&txn, shard)?;
                    store::write_whole(&mut st, state)?;
                }
                None => {
                    let mut st = RedbState::open(&txn, shard)?;
                    t.changes.flush_into(&mut st)?;
                }
            }
            let applied = postcard::to_stdvec(&t.applied)
                .map_err(|e| FsError::Io(format!("encode applied of {shard}: {e}")))?;
            store::set_applied(&txn, shard, &applied)?;
            store::set_sessions(&txn, shard, &t.sessions)?;
        }
        txn.commit().db()?;
        Ok(())
    }
}

/// Puts changes a failed checkpoint took back in front of what was applied since.
fn give_back(t: Taken) {
    let Ok(_live) = t.core.live.read() else {
        return;
    };
    let Ok(mut p) = t.core.pending.lock() else {
        return;
    };
    let mut changes = t.changes;
    changes.merge(std::mem::take(&mut p.changes));
    p.changes = changes;
    p.replaced |= t.whole.is_some();
    p.dirty = true;
}
