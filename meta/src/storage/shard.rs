//! A shard's state on this node, shared by its state machine (`raft::machine`, which applies
//! committed entries to it), the readers and the checkpointer: the live in-memory state, what
//! was applied last, and what a checkpoint has not written yet. Also the way the effects of
//! applied commands leave the shard (`EffectSlot`) and the node's counters.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, RwLock};

use meta_core::state::{Changes, MemState};
use meta_core::{Effect, ShardId};
use serde::{Deserialize, Serialize};

use super::entry::LogId;
use super::entry::Membership;

/// Whoever carries out the effects of applied commands (`Effect`): the MDS, on the node that
/// leads the shard. Called from a shard's state machine with each batch's effects, in order,
/// before the batch's commands are answered: it must not block (queue the work).
pub trait EffectSink: Send + Sync {
    fn effects(&self, effects: &[Effect]);
}

/// The sink, once one is set; effects of commands applied before that (log replay at open)
/// are found again from the state (`Snapshot::orphans`).
#[derive(Default)]
pub(crate) struct EffectSlot(
    pub(crate) std::sync::OnceLock<Arc<dyn EffectSink>>,
    /// Wakes the reclaimer of orphan directories (`rmtree`) when one is detached here.
    pub(crate) tokio::sync::Notify,
);

impl EffectSlot {
    pub(crate) fn deliver(&self, effects: &[Effect]) {
        if effects.iter().any(|e| matches!(e, Effect::Detached(_))) {
            self.1.notify_one();
        }
        if let Some(sink) = self.0.get() {
            sink.effects(effects);
        }
    }
}

/// Counters of the namespace.
#[derive(Debug, Default)]
pub struct Stats {
    /// Commands applied (a failed command counts: it was replicated and applied as a failure).
    pub commands: AtomicU64,
    /// Checkpoints written.
    pub checkpoints: AtomicU64,
}

/// Where a shard's state machine is: what it applied last, and with which membership.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Applied {
    pub log_id: Option<LogId>,
    pub membership: Membership,
}

/// Where the shard's state machine is, and what a checkpoint has not written yet. Changed
/// together with the state (under its write lock), so a checkpoint that takes it under the
/// read lock writes exactly the state it names.
#[derive(Default)]
pub(crate) struct Pending {
    pub applied: Applied,
    pub changes: Changes,
    /// A snapshot replaced the whole shard: the checkpoint rewrites it from the state.
    pub replaced: bool,
    /// Something was applied since the last checkpoint took the changes.
    pub dirty: bool,
}

/// A shard's state, shared by its state machine, the readers and the checkpointer.
pub(crate) struct ShardCore {
    pub id: ShardId,
    pub live: RwLock<MemState>,
    pub pending: Mutex<Pending>,
    /// Whether this node leads the shard: only the leader carries out effects.
    pub leader: AtomicBool,
    pub effects: Arc<EffectSlot>,
    pub stats: Arc<Stats>,
}
