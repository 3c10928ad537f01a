//! Snapshots across shards (issue 48; `docs/plans/snapshots.md` §2.3-2.4): the protocol that
//! cuts every shard at one instant (`create_snapshot`), the registry's listing, and the
//! recovery that finishes or undoes a create whose coordinator died (`recover_snaps`). It
//! mirrors the cross-shard transactions' `coordinator`: a record on shard 0 is the decision,
//! and every step is idempotent, so a coordinator and a recovery may both send it.
//!
//! The steps (P0, the data quiesce across MDS nodes, is the caller's:
//! `create_snapshot_while`, `mds::state::quiesce`):
//!
//! - P1 `SnapBegin` on shard 0: the id, the record `Pending`;
//! - P2 `SnapFreeze` on every shard, in parallel: ordinary changes and `TxnLock` answer `Busy`
//!   (their proposers retry), `TxnDecide` `Aborted` (the coordinator releases and retries);
//! - P3 the drain: every transaction decided before its coordinating shard froze is committed
//!   everywhere (`TxnCommit` passes a freeze), so none is half in;
//! - P4 `SnapDecide` on shard 0, the commit point (refused after `FREEZE_MAX`);
//! - P5 `SnapCut` on every shard: its counter recorded, its freeze ended, copy-on-write on;
//! - P6 `SnapReady` on shard 0;
//! - P7 `SnapThaw` on every shard: decisions are allowed again.
//!
//! Why one instant: every command in the snapshot was applied on its shard before that
//! shard's freeze, so before the last freeze, `T_F`; every command left out was applied after
//! its shard's cut, so after `T_F` (the cuts follow the decision, which follows every freeze).
//! `T_F` lies inside the create's call. A transaction's point is its decision: before its
//! coordinating shard's freeze it is drained, so wholly in; between that freeze and the thaw
//! it is refused (and retried as a new one); after the thaw it is after every cut, wholly out.
//!
//! Recovery, every `SNAP_RECOVER_EVERY` on the shards this node leads: a freeze older than
//! `FREEZE_STALE` asks shard 0 (`SnapResolve`: abort unless decided) and then cuts the shard
//! (decided) or ends its freeze (aborted); a cut not thawed after `FREEZE_STALE` is thawed
//! once every shard shows the cut (after `SnapReady`). Shard 0's leader aborts `Pending`
//! records that no freeze names any more, and forgets aborted ones after a day. So a
//! coordinator's death stalls writes for at most `FREEZE_STALE + SNAP_RECOVER_EVERY`
//! (1.25 s), plus an election if the shard's leader died with it.
//!
//! Tests: `tests::snaps` (`sharded_cut_is_a_prefix`, `halted_at_each_step_is_whole_or_none`,
//! `a_dead_coordinators_freeze_ends_within_two_seconds`).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use meta_core::snap::registry::{later_than, ABORTED_KEEP};
use meta_core::snap::{Registry, SnapId, SnapRecord, SnapState, FREEZE_MAX};

use super::txn::{Decision, TxnId, TxnPart};
use super::{Command, FsError, Namespace, ShardId, Time};

/// How old a freeze, or a cut not thawed, gets before recovery takes it over from its
/// coordinator. A create's freeze normally lasts a few Raft commits: well under this.
pub const FREEZE_STALE: Duration = Duration::from_secs(1);
/// Between two passes of the snapshot recovery: each pass only reads each led shard's
/// snapshot state in memory unless something is stale, so a short period costs nothing and
/// keeps a dead coordinator's write stall near `FREEZE_STALE`.
pub(super) const SNAP_RECOVER_EVERY: Duration = Duration::from_millis(250);
/// How long `create_snapshot` keeps trying while another create holds a shard or its attempt
/// was aborted (`Busy`, `Aborted`).
const CREATE_WAIT: Duration = Duration::from_secs(10);

/// The points of a create where a crash is tested: the process-level failpoints
/// (`crate::failpoint`, `snap-frozen`, ...) and, in the namespace's own tests, an attempt that
/// stops there as if its node had died (`coordinator::Step`'s pattern).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SnapStep {
    /// Every shard frozen (P2).
    Frozen,
    /// The decided transactions drained (P3).
    Drained,
    /// The decision recorded (P4).
    Decided,
    /// The first shard cut (P5).
    CutOne,
    /// The record ready, no shard thawed (P6).
    Ready,
}

impl SnapStep {
    #[cfg(test)]
    pub(super) const ALL: [SnapStep; 5] = [
        SnapStep::Frozen,
        SnapStep::Drained,
        SnapStep::Decided,
        SnapStep::CutOne,
        SnapStep::Ready,
    ];

    fn name(self) -> &'static str {
        match self {
            SnapStep::Frozen => "snap-frozen",
            SnapStep::Drained => "snap-drained",
            SnapStep::Decided => "snap-decided",
            SnapStep::CutOne => "snap-cut-one",
            SnapStep::Ready => "snap-ready",
        }
    }

    /// Whether a create stopped here is decided: recovery makes it whole, not none.
    #[cfg(test)]
    pub(super) fn decided(self) -> bool {
        !matches!(self, SnapStep::Frozen | SnapStep::Drained)
    }
}

impl Namespace {
    /// Takes snapshot `name` of the whole namespace, shown at the directory `root`, kept
    /// `retain_secs`: the namespace as it was at one instant during this call (the module
    /// comment). Returns its id once every shard is cut. Tries again while another create
    /// holds a shard, or a shard is without a leader for a moment (up to `CREATE_WAIT`). `Exists` if a snapshot that was not aborted has
    /// the name; `NotDir` if `root` is not a directory. An error after the decision leaves a
    /// whole snapshot that recovery finishes (`list_snapshots` shows it).
    pub async fn create_snapshot(
        &self,
        name: &[u8],
        root: u64,
        retain_secs: u64,
    ) -> Result<SnapId, FsError> {
        self.create_snapshot_while(name, root, retain_secs, &|| true)
            .await
    }

    /// `create_snapshot` under a data quiesce (P0, the server's: no byte changes on any MDS
    /// node's say-so while it holds): the cut is decided only while `quiesced()` says it
    /// still holds on every node; otherwise the attempt is given up, `Unavailable`.
    pub async fn create_snapshot_while(
        &self,
        name: &[u8],
        root: u64,
        retain_secs: u64,
        quiesced: &(dyn Fn() -> bool + Send + Sync),
    ) -> Result<SnapId, FsError> {
        let deadline = tokio::time::Instant::now() + CREATE_WAIT;
        let mut pause = Duration::from_millis(5);
        loop {
            let made = self
                .snap_attempt(name, root, retain_secs, quiesced, None)
                .await;
            let again = match &made {
                Err(FsError::Busy | FsError::Aborted) => true,
                // A shard without a leader for a moment (an election, a leadership
                // hand-over: CI saw one right after a cluster started) fails a read barrier
                // before the decision. Such an attempt was never begun or was given up, so
                // no record holds the name and a new attempt is safe; one that still does
                // (decided, or not given up) is left to recovery, and the error stands.
                // A lapsed data quiesce does not come back within this call.
                Err(FsError::Unavailable(_)) => quiesced() && !self.name_held(name),
                _ => false,
            };
            match made {
                Err(_) if again && tokio::time::Instant::now() + pause < deadline => {
                    // Jitter, so two creates that keep meeting stop meeting.
                    let jitter =
                        u64::from(self.inner.txn_seq.fetch_add(1, Ordering::Relaxed) as u8);
                    tokio::time::sleep(pause + Duration::from_micros(jitter * 50)).await;
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
                other => return other,
            }
        }
    }

    /// Whether a snapshot record that was not aborted has `name`, in this node's replica.
    fn name_held(&self, name: &[u8]) -> bool {
        self.snapshots().map_or(true, |r| {
            r.values()
                .any(|r| r.name == name && !matches!(r.state, SnapState::Aborted { .. }))
        })
    }

    /// One attempt of `create_snapshot`; `stop` ends it at that step as a crash there would
    /// (tests), answering the id.
    pub(super) async fn snap_attempt(
        &self,
        name: &[u8],
        root: u64,
        retain_secs: u64,
        quiesced: &(dyn Fn() -> bool + Send + Sync),
        stop: Option<SnapStep>,
    ) -> Result<SnapId, FsError> {
        let halt = |step: SnapStep| {
            crate::failpoint::hit(step.name());
            stop == Some(step)
        };
        let root_shard = ShardId::of_ino(root);
        self.barrier(root_shard)
            .await
            .map_err(|e| FsError::Unavailable(e.to_string()))?;
        if !self.getattr(root)?.kind.is_dir() {
            return Err(FsError::NotDir);
        }
        // P0, the data quiesce (`docs/plans/snapshots.md` §3.4), is the caller's, held
        // around this whole call (`create_snapshot_while`); P4 checks it still holds.
        let begin = Command::SnapBegin {
            name: name.to_vec(),
            root,
            retain_secs,
            time: Time::now(),
        };
        self.propose_on(ShardId(0), &begin).await?;
        // `propose_on` answers once this node's replica applied it: the id is read back here.
        let snap = self
            .snapshots()?
            .into_iter()
            .filter(|(_, r)| r.name == name && !matches!(r.state, SnapState::Aborted { .. }))
            .map(|(id, _)| id)
            .next_back()
            .ok_or(FsError::Aborted)?;
        let shards: Vec<ShardId> = (0..self.inner.shard_count).map(ShardId).collect();

        // P2: freeze every shard.
        let time = Time::now();
        let frozen = futures::future::join_all(shards.iter().map(|s| {
            let step = Command::SnapFreeze {
                shard: *s,
                snap,
                time,
            };
            async move { self.propose_on(*s, &step).await }
        }))
        .await;
        if let Some(e) = frozen.into_iter().find_map(Result::err) {
            self.give_up(snap, &shards).await;
            return Err(e);
        }
        if halt(SnapStep::Frozen) {
            return Ok(snap);
        }

        // P3: drain the transactions decided before their coordinating shard froze.
        if let Err(e) = self.drain_decided(&shards).await {
            tracing::info!(snap, "snapshot given up: the drain failed: {e}");
            self.give_up(snap, &shards).await;
            return Err(e);
        }
        if halt(SnapStep::Drained) {
            return Ok(snap);
        }

        // P4: the commit point, only while every node's data quiesce surely holds.
        if !quiesced() {
            tracing::warn!(snap, "snapshot given up: the data quiesce lapsed");
            self.give_up(snap, &shards).await;
            return Err(FsError::Unavailable("the data quiesce lapsed".into()));
        }
        let decide = Command::SnapDecide {
            snap,
            time: Time::now(),
        };
        match self.propose_on(ShardId(0), &decide).await {
            Ok(_) => {}
            Err(FsError::Aborted) => {
                self.give_up(snap, &shards).await;
                return Err(FsError::Aborted);
            }
            // Decided or not: recovery settles it either way.
            Err(e) => return Err(e),
        }
        if halt(SnapStep::Decided) {
            return Ok(snap);
        }

        // P5: cut every shard (the first alone, so a test can stop after it). From here on a
        // failure leaves the rest to recovery: the snapshot is decided, so it will be whole.
        let time = Time::now();
        let cut = |s: ShardId| Command::SnapCut {
            shard: s,
            snap,
            time,
        };
        if let Some((first, rest)) = shards.split_first() {
            self.propose_on(*first, &cut(*first)).await?;
            if halt(SnapStep::CutOne) {
                return Ok(snap);
            }
            let cuts = futures::future::join_all(rest.iter().map(|s| {
                let step = cut(*s);
                async move { self.propose_on(*s, &step).await }
            }))
            .await;
            if let Some(e) = cuts.into_iter().find_map(Result::err) {
                return Err(e);
            }
        }

        // P6, then P7.
        let ready = Command::SnapReady {
            snap,
            time: Time::now(),
        };
        self.propose_on(ShardId(0), &ready).await?;
        if halt(SnapStep::Ready) {
            return Ok(snap);
        }
        let thawed = futures::future::join_all(shards.iter().map(|s| {
            let step = Command::SnapThaw { shard: *s, snap };
            async move { (*s, self.propose_on(*s, &step).await) }
        }))
        .await;
        for (s, r) in thawed {
            if let Err(e) = r {
                // Recovery thaws it after `FREEZE_STALE`; until then its decisions abort.
                tracing::warn!(shard = %s, snap, "thaw failed: {e}");
            }
        }
        Ok(snap)
    }

    /// Gives up snapshot `snap` before its decision: the record is aborted, then every
    /// shard's freeze for it ends. Failures are left to recovery.
    async fn give_up(&self, snap: SnapId, shards: &[ShardId]) {
        let resolve = Command::SnapResolve {
            snap,
            time: Time::now(),
        };
        if let Err(e) = self.propose_on(ShardId(0), &resolve).await {
            tracing::debug!(snap, "snapshot not given up: {e}");
            return;
        }
        // Only an aborted record lets a freeze end: a decided one is cut instead.
        let aborted = self
            .snapshots()
            .ok()
            .and_then(|r| r.get(&snap).map(|r| !r.state.decided()))
            .unwrap_or(true);
        if !aborted {
            return;
        }
        futures::future::join_all(shards.iter().map(|s| {
            let step = Command::SnapAbort { shard: *s, snap };
            async move {
                if let Err(e) = self.propose_on(*s, &step).await {
                    tracing::debug!(shard = %s, snap, "freeze not ended: {e}");
                }
            }
        }))
        .await;
    }

    /// P3: with every shard frozen, commits every part of every transaction whose decision
    /// (Commit) is recorded, on each shard that still holds it prepared. Those decisions were
    /// made before their coordinating shard froze (a frozen shard refuses new ones), so they
    /// belong before the cut, and nothing of them may be left for after it.
    async fn drain_decided(&self, shards: &[ShardId]) -> Result<(), FsError> {
        // Every shard's replica here holds everything applied before its freeze.
        let barriers = futures::future::join_all(shards.iter().map(|s| self.barrier(*s))).await;
        if let Some(e) = barriers.into_iter().find_map(Result::err) {
            return Err(FsError::Unavailable(e.to_string()));
        }
        let mut decided: Vec<(TxnId, Vec<TxnPart>)> = Vec::new();
        for core in self.inner.cores.values() {
            let live = core
                .live
                .read()
                .map_err(|_| FsError::Io("a shard's state lock is poisoned".into()))?;
            for (id, e) in &live.txns {
                if let Some(Decision::Commit { parts, .. }) = &e.decision {
                    decided.push((*id, parts.clone()));
                }
            }
        }
        let mut steps = Vec::new();
        for (id, parts) in decided {
            for part in parts {
                if self.holds_prepared(part.shard, id) {
                    steps.push((part.shard, Command::TxnCommit { txn: id, part }));
                }
            }
        }
        if !steps.is_empty() {
            tracing::info!(
                commits = steps.len(),
                "snapshot drains decided transactions"
            );
        }
        let done = futures::future::join_all(
            (steps.iter()).map(|(s, step)| async move { self.propose_on(*s, step).await }),
        )
        .await;
        match done.into_iter().find_map(Result::err) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Whether this node's replica of `shard` holds transaction `id`'s part prepared.
    fn holds_prepared(&self, shard: ShardId, id: TxnId) -> bool {
        self.inner.cores.get(&shard.0).is_none_or(|c| {
            c.live.read().map_or(true, |l| {
                l.txns.get(&id).is_some_and(|e| e.prepared.is_some())
            })
        })
    }

    /// Shard 0's registry of snapshots as this node's replica holds it.
    pub fn snapshots(&self) -> Result<Registry, FsError> {
        let core = self.inner.cores.get(&0).ok_or(FsError::Invalid)?;
        let live = core
            .live
            .read()
            .map_err(|_| FsError::Io("shard 0's state lock is poisoned".into()))?;
        Ok(live.registry.clone())
    }

    /// Every snapshot record (aborted ones too, for a day), with every create and change
    /// acknowledged before the call.
    pub async fn list_snapshots(&self) -> Result<Vec<(SnapId, SnapRecord)>, FsError> {
        self.barrier_waiting(ShardId(0))
            .await
            .map_err(|e| FsError::Unavailable(e.to_string()))?;
        Ok(self.snapshots()?.into_iter().collect())
    }

    /// Recovers snapshot creates left by a crash (`recover_snaps`), every
    /// `SNAP_RECOVER_EVERY`, on the shards this node leads.
    pub(super) fn start_snap_recovery(&self) {
        let ns = std::sync::Arc::downgrade(&self.inner);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(SNAP_RECOVER_EVERY);
            loop {
                tick.tick().await;
                let Some(inner) = ns.upgrade() else { return };
                Namespace { inner }.recover_snaps().await;
            }
        });
        if let Ok(mut t) = self.inner.leadership.lock() {
            t.push(task);
        }
    }

    /// One pass of snapshot recovery (the module comment): the registry on shard 0's leader,
    /// then each led shard's stale freeze or unthawed cut, then the merge of deleted
    /// snapshots.
    pub(super) async fn recover_snaps(&self) {
        let now = Time::now();
        let led = |s: u16| {
            self.inner
                .cores
                .get(&s)
                .is_some_and(|c| c.leader.load(Ordering::Acquire))
        };
        if led(0) {
            self.recover_registry(now).await;
        }
        // Whether every shard shows cut `snap`, asked once per pass and snapshot.
        let mut cut_everywhere: BTreeMap<SnapId, bool> = BTreeMap::new();
        for (sid, core) in &self.inner.cores {
            if !core.leader.load(Ordering::Acquire) {
                continue;
            }
            let shard = ShardId(*sid);
            let Ok(st) = core.live.read().map(|l| l.snaps.clone()) else {
                continue;
            };
            if let Some(f) = st.freeze.filter(|f| later_than(f.since, now, FREEZE_STALE)) {
                self.settle_freeze(shard, f.snap, now).await;
            }
            let unthawed = st
                .cuts
                .iter()
                .filter(|(_, c)| !c.thawed && !c.retired && later_than(c.at, now, FREEZE_STALE));
            for (snap, _) in unthawed {
                let everywhere = match cut_everywhere.get(snap) {
                    Some(e) => *e,
                    None => {
                        let e = self.cut_everywhere(*snap).await;
                        cut_everywhere.insert(*snap, e);
                        e
                    }
                };
                if !everywhere {
                    // A shard still frozen for it: that shard's leader cuts it first.
                    continue;
                }
                tracing::info!(%shard, snap, "recovering a snapshot's thaw");
                let ready = Command::SnapReady {
                    snap: *snap,
                    time: now,
                };
                if let Err(e) = self.propose_on(ShardId(0), &ready).await {
                    tracing::debug!(snap, "snapshot not made ready: {e}");
                    continue;
                }
                let thaw = Command::SnapThaw { shard, snap: *snap };
                if let Err(e) = self.propose_on(shard, &thaw).await {
                    tracing::debug!(%shard, snap, "not thawed: {e}");
                }
            }
        }
        // Deleted snapshots merge away (`snap_delete`).
        self.merge_deleted().await;
    }

    /// A freeze of `shard` for `snap` left too long: shard 0 settles the snapshot (abort
    /// unless decided), and the shard follows: cut if decided, its freeze ended if not.
    async fn settle_freeze(&self, shard: ShardId, snap: SnapId, now: Time) {
        tracing::info!(%shard, snap, "recovering a snapshot's freeze");
        let ask = Command::SnapResolve { snap, time: now };
        if let Err(e) = self.propose_on(ShardId(0), &ask).await {
            tracing::debug!(snap, "snapshot not resolved: {e}");
            return;
        }
        let state = match self.snapshots() {
            Ok(r) => r.get(&snap).map(|r| r.state),
            Err(e) => {
                tracing::debug!(snap, "registry: {e}");
                return;
            }
        };
        let step = match state {
            Some(s) if s.decided() => Command::SnapCut {
                shard,
                snap,
                time: now,
            },
            // Aborted, or gone: no shard is cut for it.
            Some(SnapState::Aborted { .. }) | None => Command::SnapAbort { shard, snap },
            Some(_) => return,
        };
        if let Err(e) = self.propose_on(shard, &step).await {
            tracing::debug!(%shard, snap, "freeze not settled: {e}");
        }
    }

    /// Whether every shard's replica here, brought up to date, has cut `snap`.
    async fn cut_everywhere(&self, snap: SnapId) -> bool {
        for (sid, core) in &self.inner.cores {
            if self.barrier(ShardId(*sid)).await.is_err() {
                return false;
            }
            let cut = core
                .live
                .read()
                .is_ok_and(|l| l.snaps.cuts.contains_key(&snap));
            if !cut {
                return false;
            }
        }
        true
    }

    /// Shard 0's leader's part: a `Pending` record past any freeze's life (its coordinator
    /// died before freezing, or every freeze was settled) is aborted; a decided one whose
    /// shards are all cut is made ready; an aborted one goes after `ABORTED_KEEP`.
    async fn recover_registry(&self, now: Time) {
        let Ok(records) = self.snapshots() else {
            return;
        };
        for (snap, r) in records {
            let step = match r.state {
                SnapState::Pending { since }
                    if later_than(since, now, FREEZE_MAX + FREEZE_STALE) =>
                {
                    Command::SnapResolve { snap, time: now }
                }
                SnapState::Decided { at }
                    if later_than(at, now, FREEZE_STALE) && self.cut_everywhere(snap).await =>
                {
                    Command::SnapReady { snap, time: now }
                }
                SnapState::Aborted { at } if later_than(at, now, ABORTED_KEEP) => {
                    Command::SnapForgetRecord { snap }
                }
                _ => continue,
            };
            tracing::info!(snap, "recovering a snapshot record: {step:?}");
            if let Err(e) = self.propose_on(ShardId(0), &step).await {
                tracing::debug!(snap, "snapshot record: {e}");
            }
        }
    }
}
