//! Unlinked files whose data is to go, and the effects of applied commands that lead there.
//!
//! The reaper removes the data of unlinked files nobody has open, then forgets them (those found
//! at start only after the grace period: OPEN promises `OPEN4_RESULT_PRESERVE_UNLINKED`), and a
//! removal that fails (a DS down) leaves the orphan, retried with backoff (`reap_later`). Side
//! effects of applied commands (`namespace::Effect`) reach this crate through the `EffectSink`
//! (`carry_out_effects`), never through the operation that proposed the command. An orphan a
//! snapshot saw linked keeps its bytes as that snapshot's image (`SnapAdopt`): it is forgotten
//! without its data removed (`snap_data::before_reaping`). Orphans are gathered for
//! `ORPHAN_GATHER` (50 ms) into one `forget_orphans`: one task's unlink took 450-510 µs
//! before, 370-380 µs after (one node).
use std::sync::Arc;
use std::time::Duration;

use meta::namespace;

use crate::dataservers::snap_data::Reaping;
use crate::node::Mds;
use crate::state::remote::in_use;

impl Mds {
    /// Deletes the data of unlinked files nobody has open any more.
    ///
    /// Neither step needs to be durable before the reply that unlinked the file, so both run
    /// in the background (the reaper): first the data, then one FORGET_ORPHANS for the batch. A
    /// crash in between leaves an orphan whose data is already gone, which the next start
    /// forgets; the other order could leave data nothing refers to.
    pub async fn forget_orphan(self: &Arc<Self>, ino: u64) {
        self.forget_orphans(vec![ino]).await;
    }

    /// `forget_orphan` for many files at once: the other MDS nodes are asked about all of them
    /// in one call each. Asked once per file, a run of unlinks cost two peer calls per unlink,
    /// one at a time, on the connections that also carry the Raft traffic
    /// (docs/METADATA-BENCH.md, "Unlinks").
    pub async fn forget_orphans(self: &Arc<Self>, mut inos: Vec<u64>) {
        inos.retain(|&ino| {
            let open = self.nfs.state.file_in_use(ino);
            if open {
                tracing::debug!(ino, "unlinked file still open: kept until its last close");
            }
            !open
        });
        if inos.is_empty() {
            return;
        }
        // Open through another MDS node (or reclaimable there): that node's last close reaps
        // it. A node that did not answer may have it open: asked again later.
        if self.ns.peers().is_some() {
            let (free, elsewhere): (Vec<u64>, Vec<u64>) =
                match in_use::elsewhere(&self.ns, &inos).await {
                    Some(used) => {
                        let mut used = used.into_iter();
                        inos.into_iter().partition(|_| !used.next().unwrap_or(true))
                    }
                    None => (Vec::new(), inos),
                };
            if !elsewhere.is_empty() {
                tracing::debug!(
                    files = elsewhere.len(),
                    "unlinked files open (or reclaimable) through another node"
                );
                tokio::spawn(reap_later(Arc::downgrade(self), elsewhere));
            }
            inos = free;
        }
        let tx = self.reaper.get_or_init(|| {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            tokio::spawn(reap(Arc::downgrade(self), rx));
            tx
        });
        for ino in inos {
            tracing::debug!(ino, "unlinked file goes to the reaper");
            self.nfs.state.forget_file(ino);
            if tx.send(ino).is_err() {
                tracing::warn!(ino, "orphan reaper gone; the next start forgets the file");
            }
        }
    }
}

/// Most orphans handled in one round.
const REAP_BATCH: usize = 256;
/// First wait before removing an orphan's data again (a data server was down); it doubles up
/// to `REAP_RETRY_MAX`.
const REAP_RETRY: Duration = Duration::from_secs(2);
const REAP_RETRY_MAX: Duration = Duration::from_secs(300);

/// Removes the data of orphans, a batch at a time, then forgets them. Ends with the server.
///
/// The orphan in the namespace is the durable record that its data must go: it is forgotten
/// only once every data server holding some confirmed the removal. What failed is tried again
/// later (and, after a crash, at the next start), so a data server that was down loses its
/// copy when it is back.
async fn reap(mds: std::sync::Weak<Mds>, mut rx: tokio::sync::mpsc::UnboundedReceiver<u64>) {
    let mut batch = Vec::with_capacity(REAP_BATCH);
    while rx.recv_many(&mut batch, REAP_BATCH).await > 0 {
        let Some(mds) = mds.upgrade() else { break };
        let todo = std::mem::replace(&mut batch, Vec::with_capacity(REAP_BATCH));
        let (inos, failed) = reap_once(&mds, todo, true).await;
        if !failed.is_empty() {
            tokio::spawn(reap_later(Arc::downgrade(&mds), failed));
        }
        forget(&mds, inos).await;
    }
}

/// Removes the data of `todo`, but of those a snapshot keeps (`Data::before_reaping`);
/// returns the orphans done and those to try again.
async fn reap_once(mds: &Mds, todo: Vec<u64>, loud: bool) -> (Vec<u64>, Vec<u64>) {
    let mut done = Vec::new();
    let mut failed = Vec::new();
    let mut remove = Vec::with_capacity(todo.len());
    for ino in todo {
        match mds.data.before_reaping(ino).await {
            Ok(Reaping::Remove) => remove.push(ino),
            Ok(Reaping::Adopted) => done.push(ino),
            Ok(Reaping::Kept) => {
                tracing::debug!(ino, "orphan kept whole while a snapshot needs its bytes");
                failed.push(ino);
            }
            Err(e) => {
                if loud {
                    tracing::warn!(ino, "cannot tell whether a snapshot keeps an orphan: {e}");
                }
                failed.push(ino);
            }
        }
    }
    for (ino, r) in mds.data.remove_data_many(remove).await {
        match r {
            Ok(()) => done.push(ino),
            Err(e) => {
                if loud {
                    tracing::warn!(ino, "cannot remove data of orphan yet, will retry: {e}");
                }
                failed.push(ino);
            }
        }
    }
    (done, failed)
}

/// Retries removals that failed, backing off, until they succeed or the server ends.
async fn reap_later(mds: std::sync::Weak<Mds>, mut todo: Vec<u64>) {
    let mut wait = REAP_RETRY;
    while !todo.is_empty() {
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(REAP_RETRY_MAX);
        let Some(m) = mds.upgrade() else { return };
        // Still orphans? A file reopened by handle in the meantime is someone else's again.
        if let Ok(orphans) = m.ns.orphans() {
            let orphans: std::collections::HashSet<u64> = orphans.into_iter().collect();
            todo.retain(|i| orphans.contains(i));
        }
        // Open here or through another node: that holder's last close reaps it. Unknown (a
        // node did not answer): asked again next round.
        todo.retain(|i| !m.nfs.state.file_in_use(*i));
        let (free, unknown) = match in_use::elsewhere(&m.ns, &todo).await {
            Some(used) => (
                todo.iter()
                    .zip(used)
                    .filter(|(_, u)| !u)
                    .map(|(i, _)| *i)
                    .collect(),
                Vec::new(),
            ),
            None => (Vec::new(), std::mem::take(&mut todo)),
        };
        let (done, failed) = reap_once(&m, free, false).await;
        if !failed.is_empty() {
            tracing::warn!(
                orphans = failed.len(),
                "orphan data still not removed, will retry"
            );
        }
        todo = failed;
        todo.extend(unknown);
        forget(&m, done).await;
    }
}

/// Forgets orphans whose data is gone: one command per shard they live in.
async fn forget(mds: &Mds, inos: Vec<u64>) {
    let mut by_shard: std::collections::BTreeMap<namespace::ShardId, Vec<u64>> = Default::default();
    for ino in inos {
        by_shard
            .entry(namespace::ShardId::of_ino(ino))
            .or_default()
            .push(ino);
    }
    for (shard, inos) in by_shard {
        let n = inos.len();
        if let Err(e) = mds
            .ns
            .execute(namespace::Command::ForgetOrphans { inos })
            .await
        {
            tracing::warn!(%shard, orphans = n, "cannot forget orphans: {e}");
        }
    }
}

/// Hands the effects of applied commands from the namespace's writer thread to
/// `carry_out_effects`, without blocking it.
pub(crate) struct QueuedEffects(
    pub(crate) tokio::sync::mpsc::UnboundedSender<Vec<namespace::Effect>>,
);

impl namespace::EffectSink for QueuedEffects {
    fn effects(&self, effects: &[namespace::Effect]) {
        // Gone only when the server is: the next start finds the orphans in the state.
        let _ = self.0.send(effects.to_vec());
    }
}

/// Most batches of effects `carry_out_effects` takes at once.
const EFFECT_BATCHES: usize = 256;
/// How long unlinked files are gathered before they go to `forget_orphans` together.
///
/// Each batch costs a `ForgetOrphans` log command on the file's shard (and, with several MDS
/// nodes, one in-use question to each peer). Handed over one unlink at a time, that command
/// took the shard's proposer between a lone client's REMOVEs, so each REMOVE waited for the
/// previous one's forget to be made durable before its own: a sequential `rm` paid two
/// fdatasyncs per file. Gathered, a run of unlinks shares one. An orphan has no name left, so
/// nothing a client sees waits for this.
const ORPHAN_GATHER: Duration = Duration::from_millis(50);
/// Most orphans gathered into one `forget_orphans`.
const ORPHAN_BATCH: usize = 1024;

/// Carries out what applied commands left to do: an unlinked file's data goes once nobody has
/// it open (`forget_orphans`, for the orphans of `ORPHAN_GATHER` at once); an object deleted
/// outright takes its delegations and other state with it at once (a client cannot return a
/// delegation on a directory that no longer exists, and one left in the table would keep its
/// DESTROY_CLIENTID busy).
pub(crate) async fn carry_out_effects(
    mds: std::sync::Weak<Mds>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Vec<namespace::Effect>>,
) {
    let mut batches = Vec::with_capacity(EFFECT_BATCHES);
    while rx.recv_many(&mut batches, EFFECT_BATCHES).await > 0 {
        let Some(mds) = mds.upgrade() else { return };
        let mut orphans = Vec::new();
        sort_effects(&mds, &mut batches, &mut orphans);
        if orphans.is_empty() {
            continue;
        }
        let until = tokio::time::Instant::now() + ORPHAN_GATHER;
        while orphans.len() < ORPHAN_BATCH {
            let more = tokio::time::timeout_at(until, rx.recv_many(&mut batches, EFFECT_BATCHES));
            match more.await {
                Ok(n) if n > 0 => sort_effects(&mds, &mut batches, &mut orphans),
                _ => break,
            }
        }
        mds.forget_orphans(orphans).await;
    }
}

/// Carries out `batches`' effects that need no gathering, and moves its orphans to `orphans`.
fn sort_effects(mds: &Mds, batches: &mut Vec<Vec<namespace::Effect>>, orphans: &mut Vec<u64>) {
    for e in batches.drain(..).flatten() {
        match e {
            namespace::Effect::Orphaned(ino) => orphans.push(ino),
            namespace::Effect::Freed(ino) => mds.nfs.state.forget_file(ino),
            // The namespace's own reclaimer empties it (`namespace::rmtree`).
            namespace::Effect::Detached(_) => {}
        }
    }
}
