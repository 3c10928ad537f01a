//! One log for all of a node's shards, and one fdatasync per batch across them.
//!
//! Every shard is a Raft group with a log of its own, but a node writes them all into one
//! sequence of segment files (`storage::wal`, the same record format and preallocated
//! segments the single command log used), through one writer thread. An `append` returns as
//! soon as its entries are in memory (`ShardLog`) and queued; the writer takes everything
//! queued, writes it with one `write`, makes it durable with one fdatasync, and only then tells
//! each shard (`LogFlushed`). N shards appending at once cost one small sequential write and
//! one fdatasync, as TiKV's raft-engine does: 8 shards appending at once made 1,600 appends
//! durable with 330 fdatasyncs (`tests::one_fdatasync_covers_many_shards`).
//!
//! Records (postcard `Rec`): a batch of one shard's entries, a vote, the committed id, a
//! truncation or a purge, and at the head of every segment the votes, committed ids and purge
//! points of every shard (`Rec::Heads`), so a segment older than that holds nothing but entries
//! and can be deleted once every shard has purged its entries in it. An entry's commands are
//! in the record as the proposer encoded them (`Rec::Entries`, the bytes of its `Proposal`);
//! records of builds before that (`Rec::OldEntries`) are still read.
//!
//! A committed id needs no fdatasync of its own and no write of its own either: `save_committed`
//! only notes it, and the writer appends the ids noted when it woke to the next batch it writes
//! anyway, after that batch's entries (so a committed id never lands before the entries it
//! names). Writing each one as it came cost the writer thread a wake-up and a `write` per
//! entry, as many as the entries themselves. Lost in a crash, an id is only a hint: recovery
//! applies up to an older one, and the group's next commit brings the rest.
//!
//! Recovery replays the records in order: what a truncation cut or a purge dropped stays cut.
//! A torn tail (kill -9 mid-write) is cut off by `Wal::open`; everything before it that an
//! fdatasync covered is there.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tracing::{debug, error, info, warn};

use super::entry::{Entry, LogId, Vote};
use super::legacy::OldEntry;
use super::space::SpaceGuard;
use crate::storage::wal::{encode_record, remove_before, Wal};
use meta_core::{FsError, ShardId};

/// The log's segment files live in this directory under the namespace directory.
pub const LOG_DIR: &str = "raft";
/// A segment is closed and the next started beyond this size.
const SEGMENT_BYTES: u64 = 64 << 20;
/// Most records taken into one write (bounds the wait of the first one).
const MAX_BATCH: usize = 4096;
/// Entries go into records of about this many bytes (records are at most 1 MiB; an entry, a
/// batch of commands, is far smaller: `namespace::MAX_BATCH_BYTES`).
const RECORD_BYTES: usize = 256 << 10;
/// Shards per `Heads` record.
const HEADS_PER_RECORD: usize = 1024;

/// What a shard's log holds between the last purge and the end.
#[derive(Default)]
pub(crate) struct ShardMem {
    pub vote: Option<Vote>,
    pub committed: Option<LogId>,
    pub purged: Option<LogId>,
    pub entries: BTreeMap<u64, Entry>,
}

impl ShardMem {
    pub fn last_log_id(&self) -> Option<LogId> {
        self.entries
            .values()
            .next_back()
            .map(|e| e.log_id)
            .or(self.purged)
    }
}

/// A shard's vote, committed id and purge point.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Head {
    pub(crate) shard: u16,
    pub(crate) vote: Option<Vote>,
    pub(crate) committed: Option<LogId>,
    pub(crate) purged: Option<LogId>,
}

#[derive(Serialize, Deserialize)]
pub(crate) enum Rec {
    /// Entries as builds before encode-once wrote them (commands decoded, `storage::legacy`):
    /// read, never written.
    OldEntries {
        shard: u16,
        entries: Vec<OldEntry>,
    },
    Vote {
        shard: u16,
        vote: Vote,
    },
    Committed {
        shard: u16,
        id: Option<LogId>,
    },
    /// Entries from `since` on are gone.
    Truncate {
        shard: u16,
        since: u64,
    },
    /// Entries up to `upto` are gone.
    Purge {
        shard: u16,
        upto: LogId,
    },
    Heads(Vec<Head>),
    /// A batch of one shard's entries, each entry's commands as the proposer encoded them
    /// (`Proposal`), copied into the record as they are.
    Entries {
        shard: u16,
        entries: Vec<Entry>,
    },
}

/// The record's bytes, in a buffer of exactly their size.
pub(crate) fn encode(rec: &Rec) -> Result<Vec<u8>, FsError> {
    let err = |e: postcard::Error| FsError::Io(format!("encode log record: {e}"));
    let size = postcard::experimental::serialized_size(rec).map_err(err)?;
    postcard::to_extend(rec, Vec::with_capacity(size)).map_err(err)
}

/// `rec` as this build replays it: old entries get their commands encoded.
fn current(rec: Rec) -> Result<Rec, FsError> {
    Ok(match rec {
        Rec::OldEntries { shard, entries } => Rec::Entries {
            shard,
            entries: entries
                .into_iter()
                .map(super::legacy::upgrade)
                .collect::<Result<_, _>>()?,
        },
        other => other,
    })
}

/// Told whether appended entries are durable (openraft's `LogFlushed`, wrapped).
pub(crate) type OnFlushed = Box<dyn FnOnce(std::io::Result<()>) + Send>;

/// What to do once a queued record is durable.
enum Done {
    Nothing,
    Flushed(OnFlushed),
    Reply(oneshot::Sender<Result<(), FsError>>),
}

enum Op {
    Write {
        bytes: Vec<u8>,
        done: Done,
        shard: u16,
        kind: Kind,
    },
    Stop,
}

/// What a record changes, for the writer's own view of the segments and heads.
enum Kind {
    Entries { last: u64 },
    Vote(Vote),
    Purge(LogId),
    Other,
}

/// Counters of the log: batches written and fdatasyncs.
#[derive(Debug, Default)]
pub struct LogStats {
    pub batches: AtomicU64,
    pub syncs: AtomicU64,
    pub records: AtomicU64,
}

pub(crate) struct Engine {
    shards: HashMap<u16, Mutex<ShardMem>>,
    /// Committed ids noted since the writer last took them, the newest per shard.
    committed: Mutex<BTreeMap<u16, Option<LogId>>>,
    tx: Mutex<Option<Sender<Op>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    pub stats: Arc<LogStats>,
    /// Set when a write or fdatasync failed: what was acknowledged may not be on disk, so every
    /// later write fails too until a restart recovers from the log.
    poisoned: Mutex<Option<String>>,
    /// Milliseconds each fdatasync is held back (tests: a slow disk on one node).
    #[cfg(test)]
    sync_delay_ms: AtomicU64,
}

/// The node's log. Cheap to clone.
#[derive(Clone)]
pub struct LogEngine {
    inner: Arc<Engine>,
}

impl LogEngine {
    /// Opens the log in `dir` for `shards`, recovering what each shard's log held.
    pub fn open(
        dir: &Path,
        shards: &[ShardId],
        space: Option<Arc<dyn SpaceGuard>>,
    ) -> Result<LogEngine, FsError> {
        Self::open_sized(dir, shards, space, SEGMENT_BYTES)
    }

    /// `open`, starting a new segment beyond `segment_bytes`.
    pub(crate) fn open_sized(
        dir: &Path,
        shards: &[ShardId],
        space: Option<Arc<dyn SpaceGuard>>,
        segment_bytes: u64,
    ) -> Result<LogEngine, FsError> {
        let dir = dir.join(LOG_DIR);
        std::fs::create_dir_all(&dir)?;
        let (wal, segments) = Wal::open_segments(&dir)?;
        let mut mem: HashMap<u16, ShardMem> =
            shards.iter().map(|s| (s.0, ShardMem::default())).collect();
        // Per segment, the last entry index each shard has in it: a segment goes once every
        // shard has purged past its entries there.
        let mut seg_entries: BTreeMap<u64, HashMap<u16, u64>> = BTreeMap::new();
        let mut n = 0usize;
        let mut next_seq = 1;
        for (seq, records) in segments {
            let last = seg_entries.entry(seq).or_default();
            for (index, bytes) in records {
                let rec: Rec = postcard::from_bytes(&bytes)
                    .map_err(|e| FsError::Corrupt(format!("raft log record {index}: {e}")))?;
                let rec = current(rec)?;
                if let Rec::Entries { shard, entries } = &rec {
                    if let Some(e) = entries.last() {
                        let v = last.entry(*shard).or_default();
                        *v = (*v).max(e.log_id.index);
                    }
                }
                replay(&mut mem, rec);
                n += 1;
                next_seq = index + 1;
            }
        }
        seg_entries.entry(wal.segment()).or_default();
        info!(
            records = n,
            shards = shards.len(),
            segments = seg_entries.len(),
            "raft log open"
        );
        let heads = mem
            .iter()
            .map(|(s, m)| {
                (
                    *s,
                    Head {
                        shard: *s,
                        vote: m.vote,
                        committed: m.committed,
                        purged: m.purged,
                    },
                )
            })
            .collect();
        let stats = Arc::new(LogStats::default());
        let (tx, rx) = std::sync::mpsc::channel();
        let writer = Writer {
            wal,
            dir: dir.clone(),
            heads,
            segments: seg_entries,
            stats: stats.clone(),
            space,
            poisoned: None,
            next_seq,
            segment_bytes,
        };
        let inner = Arc::new(Engine {
            shards: mem.into_iter().map(|(s, m)| (s, Mutex::new(m))).collect(),
            committed: Mutex::new(BTreeMap::new()),
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(None),
            stats,
            poisoned: Mutex::new(None),
            #[cfg(test)]
            sync_delay_ms: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&inner);
        let th = std::thread::Builder::new()
            .name("cfs-raft-log".into())
            .spawn(move || writer.run(rx, weak))?;
        if let Ok(mut t) = inner.thread.lock() {
            *t = Some(th);
        }
        Ok(LogEngine { inner })
    }

    /// The log of `shard` (one of those it was opened for).
    pub(crate) fn shard(&self, shard: ShardId) -> Result<ShardLog, FsError> {
        if !self.inner.shards.contains_key(&shard.0) {
            return Err(FsError::Io(format!("no log for shard {shard}")));
        }
        Ok(ShardLog {
            engine: self.inner.clone(),
            shard: shard.0,
        })
    }

    pub fn stats(&self) -> &LogStats {
        &self.inner.stats
    }

    /// Holds every later fdatasync back by `delay` (tests).
    #[cfg(test)]
    pub(crate) fn delay_syncs(&self, delay: std::time::Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.inner.sync_delay_ms.store(ms, Ordering::Relaxed);
    }

    /// Stops the writer after everything queued is written and synced.
    pub fn stop(&self) {
        if let Ok(mut tx) = self.inner.tx.lock() {
            if let Some(tx) = tx.take() {
                let _ = tx.send(Op::Stop);
            }
        }
        if let Ok(mut th) = self.inner.thread.lock() {
            if let Some(h) = th.take() {
                let _ = h.join();
            }
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Ok(mut tx) = self.tx.lock() {
            if let Some(tx) = tx.take() {
                let _ = tx.send(Op::Stop);
            }
        }
    }
}

fn replay(mem: &mut HashMap<u16, ShardMem>, rec: Rec) {
    match rec {
        // Made `Entries` by `current` before.
        Rec::OldEntries { .. } => {}
        Rec::Entries { shard, entries } => {
            if let Some(m) = mem.get_mut(&shard) {
                for e in entries {
                    // A later append at an index replaces what a lost truncation left.
                    m.entries.split_off(&e.log_id.index);
                    m.entries.insert(e.log_id.index, e);
                }
            }
        }
        Rec::Vote { shard, vote } => {
            if let Some(m) = mem.get_mut(&shard) {
                m.vote = Some(vote);
            }
        }
        Rec::Committed { shard, id } => {
            if let Some(m) = mem.get_mut(&shard) {
                m.committed = id;
            }
        }
        Rec::Truncate { shard, since } => {
            if let Some(m) = mem.get_mut(&shard) {
                m.entries.split_off(&since);
            }
        }
        Rec::Purge { shard, upto } => {
            if let Some(m) = mem.get_mut(&shard) {
                purge_mem(m, upto);
            }
        }
        Rec::Heads(heads) => {
            for h in heads {
                if let Some(m) = mem.get_mut(&h.shard) {
                    m.vote = h.vote.or(m.vote);
                    m.committed = h.committed.or(m.committed);
                    if let Some(p) = h.purged {
                        purge_mem(m, p);
                    }
                }
            }
        }
    }
}

fn purge_mem(m: &mut ShardMem, upto: LogId) {
    if m.purged.is_some_and(|p| p.index >= upto.index) {
        return;
    }
    m.entries = m.entries.split_off(&(upto.index + 1));
    m.purged = Some(upto);
}

/// The writer thread's state.
struct Writer {
    wal: Wal,
    dir: PathBuf,
    heads: HashMap<u16, Head>,
    /// Segment number → the last entry index each shard wrote into it.
    segments: BTreeMap<u64, HashMap<u16, u64>>,
    stats: Arc<LogStats>,
    space: Option<Arc<dyn SpaceGuard>>,
    poisoned: Option<String>,
    /// The sequence number the next record gets (records run on across segments).
    next_seq: u64,
    segment_bytes: u64,
}

impl Writer {
    fn run(mut self, rx: Receiver<Op>, engine: std::sync::Weak<Engine>) {
        loop {
            let Ok(first) = rx.recv() else { break };
            // Taken before the queue is drained: every entry a noted id names was queued
            // before the id was noted, so it is in this batch or an earlier one.
            let committed = take_committed(&engine);
            let mut batch = Vec::with_capacity(16);
            let mut stop = false;
            match first {
                Op::Stop => stop = true,
                w => batch.push(w),
            }
            let mut drained = stop;
            while !stop && batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(Op::Stop) => stop = true,
                    Ok(w) => batch.push(w),
                    Err(_) => {
                        drained = true;
                        break;
                    }
                }
            }
            if drained || stop {
                self.write_batch(batch, committed, &engine);
            } else {
                // Cut at MAX_BATCH: an entry a noted id names may still be queued, so the ids
                // wait for a batch that drains the queue (unless newer ones came meanwhile).
                self.write_batch(batch, BTreeMap::new(), &engine);
                put_back_committed(&engine, committed);
            }
            if stop {
                break;
            }
        }
        // What was noted after the last batch: the queue is empty now.
        let rest = take_committed(&engine);
        if !rest.is_empty() && self.poisoned.is_none() {
            self.write_batch(Vec::new(), rest, &engine);
        }
        if self.poisoned.is_none() {
            if let Err(e) = self.wal.sync() {
                error!(error = %e, "raft log: final sync failed");
            }
        }
        debug!("raft log writer stopped");
    }

    /// Writes `batch`, then `committed` (each shard's newest noted id), with one `write`, and
    /// syncs if a queued record asked for it.
    fn write_batch(
        &mut self,
        batch: Vec<Op>,
        committed: BTreeMap<u16, Option<LogId>>,
        engine: &std::sync::Weak<Engine>,
    ) {
        if batch.is_empty() && committed.is_empty() {
            return;
        }
        if let Some(p) = &self.poisoned {
            let e = FsError::Io(p.clone());
            for op in batch {
                fail(op, &e);
            }
            return;
        }
        let mut buf = Vec::new();
        let mut durable = false;
        let mut first_seq = self.next_seq;
        for op in &batch {
            if let Op::Write { bytes, done, .. } = op {
                // Sizes are checked when queued, so this cannot fail; a record left out would
                // leave a gap that recovery takes for the end of the log.
                if let Err(e) = encode_record(&mut buf, first_seq, bytes) {
                    error!(error = %e, "raft log: record not encodable");
                    for op in batch {
                        fail(op, &e);
                    }
                    return;
                }
                first_seq += 1;
                durable |= !matches!(done, Done::Nothing);
            }
        }
        for (&shard, &id) in &committed {
            let encoded = encode(&Rec::Committed { shard, id })
                .and_then(|b| encode_record(&mut buf, first_seq, &b));
            if let Err(e) = encoded {
                // Only a hint is lost (see the module's comment); the entries go on.
                error!(error = %e, "raft log: committed id not encodable");
                continue;
            }
            first_seq += 1;
        }
        let len = self.wal.len();
        let mut r = self.wal.append(&buf);
        if matches!(r, Err(FsError::NoSpace)) {
            // Cut the partial batch, take space from the reserve (a REMOVE must get through to
            // free space) and try once more.
            if self.wal.cut_to(len).is_ok() && self.space.as_ref().is_some_and(|s| s.release()) {
                r = self.wal.append(&buf);
            }
        }
        #[cfg(test)]
        if let Some(ms) = engine
            .upgrade()
            .map(|e| e.sync_delay_ms.load(Ordering::Relaxed))
        {
            if durable && ms > 0 {
                std::thread::sleep(std::time::Duration::from_millis(ms));
            }
        }
        if durable {
            // A slow disk, for the fault tests (`CFS_FAILPOINT_FILE`).
            crate::failpoint::delay("log-sync");
        }
        let r = r.and_then(|()| if durable { self.wal.sync() } else { Ok(()) });
        if let Err(e) = r {
            // Raft cannot take back what it appended, so a log that failed a write is unusable
            // until a restart recovers from what is on disk.
            let msg = format!("raft log unusable: {e}");
            error!("{msg}");
            self.poisoned = Some(msg.clone());
            if let Some(eng) = engine.upgrade() {
                if let Ok(mut p) = eng.poisoned.lock() {
                    *p = Some(msg);
                }
            }
            let e = FsError::Io(format!("raft log: {e}"));
            for op in batch {
                fail(op, &e);
            }
            return;
        }
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        if durable {
            self.stats.syncs.fetch_add(1, Ordering::Relaxed);
        }
        self.stats
            .records
            .fetch_add((batch.len() + committed.len()) as u64, Ordering::Relaxed);
        for (shard, id) in committed {
            self.head(shard).committed = id;
        }
        self.next_seq = first_seq;
        let seg = self.wal.segment();
        let mut purged = false;
        for op in batch {
            let Op::Write {
                done, shard, kind, ..
            } = op
            else {
                continue;
            };
            match kind {
                Kind::Entries { last } => {
                    let v = self
                        .segments
                        .entry(seg)
                        .or_default()
                        .entry(shard)
                        .or_default();
                    *v = (*v).max(last);
                }
                Kind::Vote(v) => self.head(shard).vote = Some(v),
                Kind::Purge(p) => {
                    self.head(shard).purged = Some(p);
                    purged = true;
                }
                Kind::Other => {}
            }
            match done {
                Done::Nothing => {}
                Done::Flushed(cb) => cb(Ok(())),
                Done::Reply(tx) => {
                    let _ = tx.send(Ok(()));
                }
            }
        }
        if self.wal.len() >= self.segment_bytes {
            self.rotate();
        }
        if purged {
            self.drop_purged_segments();
        }
    }

    fn head(&mut self, shard: u16) -> &mut Head {
        self.heads.entry(shard).or_insert_with(|| Head {
            shard,
            ..Head::default()
        })
    }
}

/// The committed ids noted since the last call.
fn take_committed(engine: &std::sync::Weak<Engine>) -> BTreeMap<u16, Option<LogId>> {
    engine
        .upgrade()
        .and_then(|e| e.committed.lock().ok().map(|mut c| std::mem::take(&mut *c)))
        .unwrap_or_default()
}

/// Returns ids taken but not written, unless a newer one for the shard was noted meanwhile.
fn put_back_committed(engine: &std::sync::Weak<Engine>, ids: BTreeMap<u16, Option<LogId>>) {
    if let Some(e) = engine.upgrade() {
        if let Ok(mut c) = e.committed.lock() {
            for (shard, id) in ids {
                c.entry(shard).or_insert(id);
            }
        }
    }
}

/// Fails a queued request whose record did not reach the disk.
fn fail(op: Op, e: &FsError) {
    if let Op::Write { done, .. } = op {
        match done {
            Done::Nothing => {}
            Done::Flushed(cb) => cb(Err(std::io::Error::other(e.to_string()))),
            Done::Reply(tx) => {
                let _ = tx.send(Err(e.clone()));
            }
        }
    }
}

/// One shard's handle on the node's log: `RaftLogStorage` for its Raft group.
#[derive(Clone)]
pub(crate) struct ShardLog {
    pub(crate) engine: Arc<Engine>,
    pub(crate) shard: u16,
}

impl ShardLog {
    pub(crate) fn mem(&self) -> Result<MutexGuard<'_, ShardMem>, FsError> {
        self.engine
            .shards
            .get(&self.shard)
            .ok_or_else(|| FsError::Io(format!("no log for shard {}", self.shard)))?
            .lock()
            .map_err(|_| FsError::Io("raft log state lock poisoned".into()))
    }

    fn queue(&self, rec: &Rec, done: Done, kind: Kind) -> Result<(), FsError> {
        if let Ok(p) = self.engine.poisoned.lock() {
            if let Some(p) = &*p {
                return Err(FsError::Io(p.clone()));
            }
        }
        let bytes = encode(rec)?;
        if bytes.len() > crate::storage::wal::MAX_RECORD {
            return Err(FsError::Io(format!(
                "raft log record of {} bytes",
                bytes.len()
            )));
        }
        let tx = self
            .engine
            .tx
            .lock()
            .map_err(|_| FsError::Io("raft log queue lock poisoned".into()))?;
        tx.as_ref()
            .ok_or(FsError::Closed)?
            .send(Op::Write {
                bytes,
                done,
                shard: self.shard,
                kind,
            })
            .map_err(|_| FsError::Closed)
    }

    /// Puts `entries` in memory (readable at once) and queues them; `cb` hears when they are
    /// durable. A leader's replication streams read them from memory while this node's flush
    /// is still running (the vendored openraft patch, vendor/README.md), so they must be
    /// there when this returns.
    pub(crate) fn append(&self, entries: Vec<Entry>, cb: OnFlushed) -> Result<(), FsError> {
        let Some(last) = entries.last().map(|e| e.log_id.index) else {
            cb(Ok(()));
            return Ok(());
        };
        {
            let mut m = self.mem()?;
            for e in &entries {
                m.entries.insert(e.log_id.index, e.clone());
            }
        }
        // Cut into records of about RECORD_BYTES; the last carries the callback.
        let mut chunks: Vec<Vec<Entry>> = vec![Vec::new()];
        let mut bytes = 0usize;
        for e in entries {
            let size = postcard::experimental::serialized_size(&e).unwrap_or(RECORD_BYTES);
            if bytes + size > RECORD_BYTES && chunks.last().is_some_and(|c| !c.is_empty()) {
                chunks.push(Vec::new());
                bytes = 0;
            }
            bytes += size;
            if let Some(c) = chunks.last_mut() {
                c.push(e);
            }
        }
        let n = chunks.len();
        let mut cb = Some(cb);
        for (i, chunk) in chunks.into_iter().enumerate() {
            let chunk_last = chunk.last().map(|e| e.log_id.index).unwrap_or(last);
            let rec = Rec::Entries {
                shard: self.shard,
                entries: chunk,
            };
            let done = if i + 1 == n {
                cb.take().map_or(Done::Nothing, Done::Flushed)
            } else {
                Done::Nothing
            };
            self.queue(&rec, done, Kind::Entries { last: chunk_last })?;
        }
        Ok(())
    }

    /// Makes `vote` durable; returns once it is.
    pub(crate) async fn save_vote(&self, vote: Vote) -> Result<(), FsError> {
        let (tx, rx) = oneshot::channel();
        let rec = Rec::Vote {
            shard: self.shard,
            vote,
        };
        self.queue(&rec, Done::Reply(tx), Kind::Vote(vote))?;
        rx.await.map_err(|_| FsError::Closed)??;
        self.mem()?.vote = Some(vote);
        Ok(())
    }

    /// Notes the committed id; the writer writes it with its next batch (module comment).
    pub(crate) fn save_committed(&self, id: Option<LogId>) -> Result<(), FsError> {
        self.mem()?.committed = id;
        self.engine
            .committed
            .lock()
            .map_err(|_| FsError::Io("raft log committed ids lock poisoned".into()))?
            .insert(self.shard, id);
        Ok(())
    }

    pub(crate) fn truncate(&self, since: u64) -> Result<(), FsError> {
        self.mem()?.entries.split_off(&since);
        let rec = Rec::Truncate {
            shard: self.shard,
            since,
        };
        self.queue(&rec, Done::Nothing, Kind::Other)
    }

    pub(crate) fn purge(&self, upto: LogId) -> Result<(), FsError> {
        purge_mem(&mut *self.mem()?, upto);
        let rec = Rec::Purge {
            shard: self.shard,
            upto,
        };
        self.queue(&rec, Done::Nothing, Kind::Purge(upto))
    }
}

impl Writer {
    /// Closes the current segment and starts the next with every shard's heads.
    fn rotate(&mut self) {
        let seq = match self.wal.rotate() {
            Ok(s) => s,
            Err(e) => {
                // Nothing lost: records go on into the current segment; try again later.
                warn!(error = %e, "raft log: segment rotation failed");
                return;
            }
        };
        let heads: Vec<Head> = self.heads.values().cloned().collect();
        let mut buf = Vec::new();
        for chunk in heads.chunks(HEADS_PER_RECORD) {
            match encode(&Rec::Heads(chunk.to_vec())) {
                Ok(b) => {
                    if let Err(e) = encode_record(&mut buf, self.next_seq, &b) {
                        error!(error = %e, "raft log: heads not encodable");
                    }
                    self.next_seq += 1;
                }
                Err(e) => error!(error = %e, "raft log: heads not encodable"),
            }
        }
        if let Err(e) = self.wal.append(&buf).and_then(|()| self.wal.sync()) {
            error!(error = %e, "raft log unusable: heads not written");
            self.poisoned = Some(format!("raft log: {e}"));
        }
        self.segments.entry(seq).or_default();
        debug!(segment = seq, "raft log: new segment");
    }

    /// Deletes the oldest segments whose entries every shard has purged; their votes,
    /// committed ids and purge points are in the heads of the segments after them.
    fn drop_purged_segments(&mut self) {
        let current = self.wal.segment();
        let mut upto = None;
        for (seq, last) in &self.segments {
            if *seq >= current {
                break;
            }
            let done = last.iter().all(|(shard, idx)| {
                self.heads
                    .get(shard)
                    .and_then(|h| h.purged)
                    .is_some_and(|p| p.index >= *idx)
            });
            if !done {
                break;
            }
            upto = Some(*seq + 1);
        }
        if let Some(before) = upto {
            match remove_before(&self.dir, before) {
                Ok(()) => {
                    self.segments = self.segments.split_off(&before);
                }
                Err(e) => warn!(error = %e, "raft log: old segments not removed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::entry::{Proposal, Tagged};
    use meta_core::Command;
    use openraft::testing::log_id;
    use openraft::EntryPayload;

    fn tagged(index: u64) -> Tagged {
        Tagged {
            tag: meta_core::sessions::Tag {
                origin: 1,
                life: 1,
                seq: index,
                waits_from: index,
            },
            cmd: Command::Unlink {
                parent: 1,
                name: format!("f{index}").into_bytes(),
                child: 100 + index,
                time: meta_core::Time::new(1_700_000_000, 0),
            },
        }
    }

    fn entry(term: u64, index: u64) -> Entry {
        Entry {
            log_id: log_id(term, 1, index),
            payload: EntryPayload::Normal(Proposal::encode(&[tagged(index)]).unwrap()),
        }
    }

    /// A log written before encode-once (entries in `Rec::OldEntries`, commands decoded)
    /// replays: the old entries come back with their commands, and what this build appends
    /// after them (`Rec::Entries`) too, in one shard's log.
    #[test]
    fn a_log_of_old_entry_records_replays_and_grows() {
        let dir = tempfile::tempdir().unwrap();
        let shards = [ShardId(2)];
        {
            let engine = LogEngine::open(dir.path(), &shards, None).unwrap();
            let log = engine.shard(ShardId(2)).unwrap();
            // What an old build's writer queued: the old record, written as it wrote it.
            let old = Rec::OldEntries {
                shard: 2,
                entries: (1..=3)
                    .map(|i| OldEntry {
                        log_id: log_id(1, 1, i),
                        payload: EntryPayload::Normal(crate::storage::legacy::OldProposal {
                            cmds: vec![tagged(i)],
                        }),
                    })
                    .collect(),
            };
            assert_eq!(encode(&old).unwrap()[0], 0, "the old record's tag");
            let (tx, rx) = std::sync::mpsc::channel();
            log.queue(
                &old,
                Done::Flushed(Box::new(move |r| drop(tx.send(r)))),
                Kind::Entries { last: 3 },
            )
            .unwrap();
            rx.recv().unwrap().unwrap();
            engine.stop();
        }
        {
            let engine = LogEngine::open(dir.path(), &shards, None).unwrap();
            let log = engine.shard(ShardId(2)).unwrap();
            assert_eq!(indexes(&log), vec![1, 2, 3]);
            append_durably(&log, vec![entry(1, 4), entry(1, 5)]);
            engine.stop();
        }
        let engine = LogEngine::open(dir.path(), &shards, None).unwrap();
        let log = engine.shard(ShardId(2)).unwrap();
        assert_eq!(indexes(&log), vec![1, 2, 3, 4, 5]);
        let m = log.mem().unwrap();
        for (i, e) in &m.entries {
            // An old entry comes back as this build would have written it.
            assert_eq!(*e, entry(1, *i));
            let EntryPayload::Normal(p) = &e.payload else {
                panic!("entry {i} is not a proposal");
            };
            assert_eq!(p.decode().unwrap(), vec![tagged(*i)]);
        }
    }

    /// Appends `entries` to `log` and waits until the writer says they are durable.
    fn append_durably(log: &ShardLog, entries: Vec<Entry>) {
        let (tx, rx) = std::sync::mpsc::channel();
        log.append(entries, Box::new(move |r| drop(tx.send(r))))
            .unwrap();
        rx.recv().unwrap().unwrap();
    }

    fn indexes(log: &ShardLog) -> Vec<u64> {
        log.mem().unwrap().entries.keys().copied().collect()
    }

    #[test]
    fn one_fdatasync_covers_many_shards() {
        let dir = tempfile::tempdir().unwrap();
        let shards: Vec<ShardId> = (0..8).map(ShardId).collect();
        let engine = LogEngine::open(dir.path(), &shards, None).unwrap();
        const EACH: u64 = 200;
        let threads: Vec<_> = shards
            .iter()
            .map(|s| {
                let log = engine.shard(*s).unwrap();
                std::thread::spawn(move || {
                    for i in 1..=EACH {
                        append_durably(&log, vec![entry(1, i)]);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let appends = EACH * shards.len() as u64;
        let syncs = engine.stats().syncs.load(Ordering::Relaxed);
        println!("{appends} appends from 8 shards at once: {syncs} fdatasyncs");
        // Eight writers each waiting on its own append: while one fdatasync runs the others
        // queue up behind it, so one covers several shards' appends.
        assert!(
            syncs * 2 <= appends,
            "{syncs} fdatasyncs for {appends} appends"
        );
    }

    #[test]
    fn a_committed_id_rides_with_the_next_batch_and_a_stop_writes_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let shards = [ShardId(0)];
        {
            let engine = LogEngine::open(dir.path(), &shards, None).unwrap();
            let log = engine.shard(ShardId(0)).unwrap();
            append_durably(&log, vec![entry(1, 1)]);
            log.save_committed(Some(log_id(1, 1, 1))).unwrap();
            append_durably(&log, vec![entry(1, 2)]);
            log.save_committed(Some(log_id(1, 1, 2))).unwrap();
            let stats = engine.stats();
            // Two batches, not four: the first id went with the second entry.
            assert_eq!(stats.batches.load(Ordering::Relaxed), 2);
            assert_eq!(stats.records.load(Ordering::Relaxed), 3);
            assert_eq!(stats.syncs.load(Ordering::Relaxed), 2);
            engine.stop();
        }
        let engine = LogEngine::open(dir.path(), &shards, None).unwrap();
        let log = engine.shard(ShardId(0)).unwrap();
        assert_eq!(log.mem().unwrap().committed, Some(log_id(1, 1, 2)));
        assert_eq!(indexes(&log), vec![1, 2]);
    }

    #[test]
    fn a_reopened_log_has_what_each_shard_wrote_truncated_and_purged() {
        let dir = tempfile::tempdir().unwrap();
        let shards = [ShardId(0), ShardId(3)];
        let vote = Vote::new(2, 1);
        {
            let engine = LogEngine::open(dir.path(), &shards, None).unwrap();
            let a = engine.shard(ShardId(0)).unwrap();
            let b = engine.shard(ShardId(3)).unwrap();
            append_durably(&a, (1..=10).map(|i| entry(1, i)).collect());
            append_durably(&b, (1..=4).map(|i| entry(1, i)).collect());
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            rt.block_on(a.save_vote(vote)).unwrap();
            // A new leader's entries replace the tail from 8 on.
            a.truncate(8).unwrap();
            append_durably(&a, vec![entry(2, 8)]);
            a.purge(log_id(1, 1, 3)).unwrap();
            b.save_committed(Some(log_id(1, 1, 4))).unwrap();
            // Unsynced records are synced by the stop.
            engine.stop();
        }
        let engine = LogEngine::open(dir.path(), &shards, None).unwrap();
        let a = engine.shard(ShardId(0)).unwrap();
        let b = engine.shard(ShardId(3)).unwrap();
        assert_eq!(indexes(&a), vec![4, 5, 6, 7, 8]);
        let m = a.mem().unwrap();
        assert_eq!(m.entries[&8].log_id, log_id(2, 1, 8));
        assert_eq!(m.vote, Some(vote));
        assert_eq!(m.purged, Some(log_id(1, 1, 3)));
        assert_eq!(m.last_log_id(), Some(log_id(2, 1, 8)));
        drop(m);
        assert_eq!(indexes(&b), vec![1, 2, 3, 4]);
        assert_eq!(b.mem().unwrap().committed, Some(log_id(1, 1, 4)));
    }

    #[test]
    fn segments_go_once_every_shard_purged_their_entries_and_heads_keep_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let shards = [ShardId(0), ShardId(1)];
        let segments = |d: &Path| {
            crate::storage::wal::segment_files(&d.join(LOG_DIR))
                .unwrap()
                .len()
        };
        let vote = Vote::new(5, 1);
        {
            // Tiny segments: every batch starts a new one.
            let engine = LogEngine::open_sized(dir.path(), &shards, None, 1).unwrap();
            let a = engine.shard(ShardId(0)).unwrap();
            let b = engine.shard(ShardId(1)).unwrap();
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            rt.block_on(b.save_vote(vote)).unwrap();
            for i in 1..=5 {
                append_durably(&a, vec![entry(1, i)]);
            }
            append_durably(&b, vec![entry(1, 1)]);
            let before = segments(dir.path());
            assert!(before >= 6, "{before} segments");
            // Shard 0 purging its entries is not enough while shard 1's entry is in them.
            a.purge(log_id(1, 1, 5)).unwrap();
            append_durably(&a, vec![entry(1, 6)]);
            assert!(segments(dir.path()) >= 2);
            b.purge(log_id(1, 1, 1)).unwrap();
            append_durably(&a, vec![entry(1, 7)]);
            assert!(
                segments(dir.path()) <= 3,
                "old segments stay: {} of {before}",
                segments(dir.path())
            );
            engine.stop();
        }
        // The vote was in a deleted segment; the heads of a later one kept it.
        let engine = LogEngine::open(dir.path(), &shards, None).unwrap();
        let b = engine.shard(ShardId(1)).unwrap();
        assert_eq!(b.mem().unwrap().vote, Some(vote));
        assert!(indexes(&b).is_empty());
        assert_eq!(indexes(&engine.shard(ShardId(0)).unwrap()), vec![6, 7]);
    }
}
