//! The coordinator of cross-shard transactions and their recovery (the protocol is described
//! in `txn`).
//!
//! A node's own transactions that need the same objects take turns before they lock (`local_turn`),
//! so they do not collide at the shards and back off.
//!
//! Cost (`meta/examples/txnbench.rs`: one node, 16 tasks, 256 spread shards against one shard,
//! 2026-11-25): creates in a directory 0.84×, a rename between directories 0.12× (6.3 ms against
//! 0.74 ms), mkdir in one parent 0.03× (867/s against 27,160/s: each transaction holds the parent's
//! entries and inode while it commits on two shards, so mkdirs in one directory go one at a time).
//! Not yet: locks per name, with the parent's count and times as deltas, which would let them run
//! side by side.
//!
//! Tests: `tests::model::sharded_matches_model` (8 shards against the one-store model, random
//! operations: the same answers and tree up to inode numbers, no transaction left),
//! `tests::cross_shard` (a coordinator stopped after its locks, its decision and its first commit;
//! a restart in the middle; rmdir, loop check and hard links across shards), and with real
//! processes `cfs/tests/it/metadata_cluster.rs`
//! `a_cross_shard_rename_survives_a_kill9_of_each_participant_at_each_step` (crash points of
//! `crate::failpoint`, armed through `CFS_FAILPOINT_FILE`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::txn::{self, Decision, Prepared, TxnId, TxnPart};
use super::txn_store::TxnStore;
use super::{apply, Command, FsError, Key, Namespace, Outcome, ShardId, Time};

/// How long an operation keeps trying while what it needs is locked by other transactions.
const BUSY_WAIT: Duration = Duration::from_secs(10);
/// Locking rounds of one attempt (each adds the keys `apply` found it needed).
const MAX_ROUNDS: usize = 64;
/// How long this node's replica of a shard may take to show a lock its leader confirmed.
const LOCAL_WAIT: Duration = Duration::from_secs(5);
/// Between two passes of the recovery task.
pub(super) const RECOVER_EVERY: Duration = Duration::from_secs(1);

/// The points of a transaction where a crash is tested: the process-level failpoints
/// (`crate::failpoint`, named `txn-locked`, `txn-decided`, `txn-committed-one`) and, in the
/// namespace's own tests, an attempt that stops there as if its node had died.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Step {
    Locked,
    Decided,
    CommittedOne,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::Locked => "txn-locked",
            Step::Decided => "txn-decided",
            Step::CommittedOne => "txn-committed-one",
        }
    }
}

impl Namespace {
    /// A new transaction id: this node, its life, a sequence number (`txn::TxnId`).
    fn new_txn(&self) -> TxnId {
        let seq = self.inner.txn_seq.fetch_add(1, Ordering::Relaxed);
        (u128::from(self.inner.node & 0xffff) << 112)
            | (u128::from(self.inner.boot_count & ((1 << 48) - 1)) << 64)
            | u128::from(seq)
    }

    /// Runs `cmd` (whose objects live on several shards) as a transaction, trying again while
    /// another one holds what it needs.
    pub(super) async fn run_txn(&self, cmd: &Command) -> Result<Outcome, FsError> {
        let deadline = tokio::time::Instant::now() + BUSY_WAIT;
        let mut pause = Duration::from_millis(1);
        loop {
            match self.txn_attempt(cmd, None).await {
                Err(FsError::Busy | FsError::Aborted)
                    if tokio::time::Instant::now() + pause < deadline =>
                {
                    // Jitter, so two transactions that keep meeting stop meeting.
                    let jitter = u64::from(self.inner.txn_seq.load(Ordering::Relaxed) as u8);
                    tokio::time::sleep(pause + Duration::from_micros(jitter * 20)).await;
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                other => return other,
            }
        }
    }

    /// One attempt; `stop` ends it at that step as a crash there would (tests).
    pub(super) async fn txn_attempt(
        &self,
        cmd: &Command,
        stop: Option<Step>,
    ) -> Result<Outcome, FsError> {
        let halt = |step: Step| {
            crate::failpoint::hit(step.name());
            stop == Some(step)
        };
        let id = self.new_txn();
        let mut want: BTreeMap<ShardId, BTreeSet<Key>> = BTreeMap::new();
        for k in cmd.keys() {
            want.entry(k.shard()).or_default().insert(k);
        }
        // Transactions of this node that need the same objects take turns here rather than
        // meet at the shards: a meeting costs both a round of log entries and a backoff.
        let _turn = self.local_turn(want.values().flatten()).await;
        let home = cmd.home().map(ShardId::of_ino);
        let Some(coord) = home
            .filter(|s| want.contains_key(s))
            .or_else(|| want.keys().next().copied())
        else {
            return Err(FsError::Invalid);
        };
        // A client request is carried out once: the coordinating shard keeps its answer with
        // the decision, and an attempt of a request answered before learns it at its first
        // lock there (`FsError::Answered`).
        let req = match cmd {
            Command::Request { req, at, .. } => Some((*req, *at)),
            _ => None,
        };
        let for_request = |step: Command, answer: Option<&Outcome>| match req {
            Some((req, at)) => Command::Request {
                req,
                at,
                cmd: Box::new(step),
                answer: answer.map(|a| Box::new(a.clone())),
            },
            None => step,
        };
        let time = Time::now();
        let mut locked: BTreeSet<Key> = BTreeSet::new();
        let mut touched: BTreeSet<ShardId> = BTreeSet::new();
        let mut reserved: BTreeMap<ShardId, u64> = BTreeMap::new();
        for _ in 0..MAX_ROUNDS {
            let todo: Vec<(ShardId, Vec<Key>)> = want
                .iter()
                .map(|(s, ks)| (*s, ks.difference(&locked).copied().collect::<Vec<_>>()))
                .filter(|(_, ks)| !ks.is_empty())
                .collect();
            let steps = todo.iter().map(|(s, keys)| {
                let step = Command::TxnLock {
                    txn: id,
                    coord,
                    keys: keys.clone(),
                    time,
                };
                let step = if *s == coord {
                    for_request(step, None)
                } else {
                    step
                };
                async move { self.propose_on(*s, &step).await }
            });
            let results = futures::future::join_all(steps).await;
            let mut failed = None;
            for ((s, keys), r) in todo.iter().zip(results) {
                // A step whose answer was lost may have been applied: released with the rest.
                touched.insert(*s);
                match r {
                    Ok(_) => locked.extend(keys.iter().copied()),
                    // The request's first answer (from the coordinating shard) wins over
                    // another shard's refusal: it is what the client gets.
                    Err(e) if !matches!(failed, Some(FsError::Answered(_))) => failed = Some(e),
                    Err(_) => {}
                }
            }
            if let Some(e) = failed {
                self.release(id, &touched).await;
                return match e {
                    FsError::Answered(out) => Ok(*out),
                    e => Err(e),
                };
            }
            for (s, keys) in &todo {
                let p = match self.local_prepared(*s, id, keys).await {
                    Some(p) => p,
                    None => {
                        self.release(id, &touched).await;
                        return Err(FsError::Unavailable(format!(
                            "this node's replica of shard {s} does not show transaction {id:#x}"
                        )));
                    }
                };
                if let Some(ino) = p.reserved {
                    reserved.insert(*s, ino);
                    locked.insert(Key::Inode(ino));
                }
            }
            let computed = {
                let mut store = TxnStore::new(&self.inner.cores, &locked, &reserved);
                apply(&mut store, cmd).map(|out| (out, store.into_parts()))
            };
            let (out, mut parts) = match computed {
                Err(FsError::NeedLock(k)) => {
                    want.entry(k.shard()).or_default().insert(k);
                    continue;
                }
                Err(e) => {
                    self.release(id, &touched).await;
                    return Err(e);
                }
                Ok(v) => v,
            };
            // Shards only read from are released by an empty part, after the others.
            for s in &touched {
                if !parts.iter().any(|p| p.shard == *s) {
                    parts.push(TxnPart {
                        shard: *s,
                        ..TxnPart::default()
                    });
                }
            }
            if halt(Step::Locked) {
                return Ok(out);
            }
            let decide = Command::TxnDecide {
                txn: id,
                parts: parts.clone(),
                time: Time::now(),
            };
            let decide = for_request(decide, Some(&out));
            match self.propose_on(coord, &decide).await {
                Ok(_) => {}
                Err(FsError::Aborted) => {
                    self.release(id, &touched).await;
                    return Err(FsError::Aborted);
                }
                Err(FsError::Answered(first)) => {
                    self.release(id, &touched).await;
                    return Ok(*first);
                }
                // Decided or not: the recovery of its shards settles it either way.
                Err(e) => return Err(e),
            }
            if halt(Step::Decided) {
                return Ok(out);
            }
            let mut all_done = true;
            for (n, part) in parts.into_iter().enumerate() {
                let shard = part.shard;
                let step = Command::TxnCommit { txn: id, part };
                if let Err(e) = self.propose_on(shard, &step).await {
                    // Decided: the coordinating shard's recovery finishes it, so the
                    // decision must stay until then.
                    tracing::warn!(%shard, txn = %format!("{id:#x}"), "commit step failed: {e}");
                    all_done = false;
                }
                if n == 0 && halt(Step::CommittedOne) {
                    return Ok(out);
                }
            }
            if all_done {
                let ns = self.clone();
                tokio::spawn(async move {
                    let _ = ns.propose_on(coord, &Command::TxnForget { txn: id }).await;
                });
            }
            return Ok(out);
        }
        self.release(id, &touched).await;
        Err(FsError::Io(format!(
            "transaction {id:#x} needed more than {MAX_ROUNDS} rounds of locks"
        )))
    }

    /// Waits for this node's turn at `keys` (in key order, so two waiters never hold each
    /// other up); held until the guards drop. New inode numbers are not turns.
    async fn local_turn<'k>(
        &self,
        keys: impl Iterator<Item = &'k Key>,
    ) -> Vec<tokio::sync::OwnedMutexGuard<()>> {
        let keys: BTreeSet<Key> = keys
            .filter(|k| !matches!(k, Key::NewInode(_)))
            .copied()
            .collect();
        let mut guards = Vec::with_capacity(keys.len());
        for k in keys {
            let m = {
                let mut turns = self
                    .inner
                    .txn_turns
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                // Keys nobody waits for go, so the table holds only what is in use.
                turns.retain(|_, m| std::sync::Arc::strong_count(m) > 1);
                turns.entry(k).or_default().clone()
            };
            guards.push(m.lock_owned().await);
        }
        guards
    }

    /// Gives up transaction `id` before any decision: its locks go (a failure is left to the
    /// shards' recovery).
    async fn release(&self, id: TxnId, shards: &BTreeSet<ShardId>) {
        for s in shards {
            if let Err(e) = self.propose_on(*s, &Command::TxnAbort { txn: id }).await {
                tracing::debug!(shard = %s, "release of transaction {id:#x}: {e}");
            }
        }
    }

    /// This node's replica's record of `id` on `shard` once it holds `keys` (a replica a
    /// little behind its leader is waited for).
    async fn local_prepared(&self, shard: ShardId, id: TxnId, keys: &[Key]) -> Option<Prepared> {
        let core = self.inner.cores.get(&shard.0)?;
        let deadline = tokio::time::Instant::now() + LOCAL_WAIT;
        loop {
            let p = core
                .live
                .read()
                .ok()?
                .txns
                .get(&id)
                .and_then(|e| e.prepared.clone());
            if let Some(p) = p {
                let held = |k: &Key| matches!(k, Key::NewInode(_)) || p.keys.contains(k);
                if keys.iter().all(held) {
                    return Some(p);
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// One pass of transaction recovery over the shards this node leads: prepared parts left
    /// too long ask their coordinating shard and follow its decision; commit decisions left
    /// too long are carried out; old abort decisions go.
    pub(super) async fn recover_txns(&self) {
        let now = Time::now();
        for (sid, core) in &self.inner.cores {
            if !core.leader.load(Ordering::Acquire) {
                continue;
            }
            let shard = ShardId(*sid);
            let entries: Vec<(TxnId, txn::TxnEntry)> = match core.live.read() {
                Ok(st) if !st.txns.is_empty() => {
                    st.txns.iter().map(|(i, e)| (*i, e.clone())).collect()
                }
                _ => continue,
            };
            for (id, e) in entries {
                match &e.decision {
                    Some(Decision::Commit { parts, at })
                        if txn::older_than(*at, now, self.inner.txn_stale) =>
                    {
                        self.finish(shard, id, parts).await;
                        continue;
                    }
                    Some(Decision::Abort { at }) if txn::older_than(*at, now, txn::ABORT_KEEP) => {
                        let _ = self
                            .propose_on(shard, &Command::TxnForget { txn: id })
                            .await;
                        continue;
                    }
                    Some(_) => continue,
                    None => {}
                }
                let Some(p) = &e.prepared else { continue };
                if !txn::older_than(p.since, now, self.inner.txn_stale) {
                    continue;
                }
                tracing::info!(%shard, coord = %p.coord, "recovering transaction {id:#x}");
                let ask = Command::TxnResolve { txn: id, time: now };
                if let Err(err) = self.propose_on(p.coord, &ask).await {
                    tracing::debug!("transaction {id:#x}: coordinating shard: {err}");
                    continue;
                }
                let decision = self
                    .inner
                    .cores
                    .get(&p.coord.0)
                    .and_then(|c| c.live.read().ok()?.txns.get(&id)?.decision.clone());
                let step = match decision {
                    Some(Decision::Commit { parts, .. }) => {
                        match parts.into_iter().find(|part| part.shard == shard) {
                            Some(part) => Command::TxnCommit { txn: id, part },
                            None => {
                                tracing::error!(%shard, "transaction {id:#x} decided without this shard's part");
                                continue;
                            }
                        }
                    }
                    Some(Decision::Abort { .. }) => Command::TxnAbort { txn: id },
                    None => {
                        tracing::debug!("transaction {id:#x}: decision not here yet");
                        continue;
                    }
                };
                if let Err(err) = self.propose_on(shard, &step).await {
                    tracing::debug!("transaction {id:#x}: {err}");
                }
            }
        }
    }

    /// Carries out a commit decision on every shard (each step a no-op where done), then
    /// forgets it.
    async fn finish(&self, coord: ShardId, id: TxnId, parts: &[TxnPart]) {
        tracing::info!(%coord, "finishing transaction {id:#x}");
        for part in parts {
            let step = Command::TxnCommit {
                txn: id,
                part: part.clone(),
            };
            if let Err(e) = self.propose_on(part.shard, &step).await {
                tracing::debug!("transaction {id:#x} on {}: {e}", part.shard);
                return;
            }
        }
        let _ = self
            .propose_on(coord, &Command::TxnForget { txn: id })
            .await;
    }
}
