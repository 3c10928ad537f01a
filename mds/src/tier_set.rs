//! The object-store tier's settings and the node's handle on the store (`Tier`): what
//! `[tier]` configures and what the uploader and deleter (`tiering/`) share. Kept apart from
//! them so the node and its configuration hold a `Tier` without importing the loops, which
//! work on the node.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::NfsError;
use chunkstore::room::{FullSince, Room, Taken, WalkMark};

use tier::{Header, KeySpace, ObjectId, Store, TierConfig, TierError};

/// Uploads run at once (each holds one object in memory while it is sent).
pub(crate) const UPLOADS_AT_ONCE: usize = 2;
/// Files taken per uploader pass.
pub(crate) const FILES_PER_PASS: usize = 64;
/// How often the uploader and the deleter look for work.
pub(crate) const PASS_EVERY: Duration = Duration::from_secs(1);

/// Which files go to the bucket (`[tier] mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TierMode {
    /// Every file, once quiet: flash is a cache of the bucket.
    Cache,
    /// Only files unused for `tier_after`: the rest is on flash only (as safe as its
    /// mirrors or erasure coding make it).
    Tiered,
}

impl TierMode {
    pub fn name(self) -> &'static str {
        match self {
            TierMode::Cache => "cache",
            TierMode::Tiered => "tiered",
        }
    }
}

/// What `[tier]` configures.
#[derive(Clone, Debug)]
pub struct TierSettings {
    pub store: TierConfig,
    pub mode: TierMode,
    /// In tiered mode, a file neither changed nor used (`Tier::touch`) this long is uploaded.
    pub tier_after: Duration,
    /// The bucket's key prefix this cluster owns (`tier::KeySpace`).
    pub root: String,
    /// A file unchanged this long (and open for writing nowhere here) is uploaded.
    pub upload_after: Duration,
    /// Objects that stopped counting are deleted this long after: longer than any PUT may
    /// last, so an upload still under way on a node cut off from the others is never raced.
    pub delete_grace: Duration,
    /// File bytes per object.
    pub object_size: u64,
    /// Eviction starts when flash is fuller than `evict_high` percent and stops under
    /// `evict_low` (issue 45: 80 and 60).
    pub evict_high: u8,
    pub evict_low: u8,
    /// Past this percent flash is nearly full: writes are acknowledged only once their file is
    /// in the bucket (`tiering::through`; issue 45: 95).
    pub write_through: u8,
    /// The flash space eviction manages, if not the whole file system under the data (a
    /// disk shared with other data, or a test): then the data's own bytes count against it.
    pub flash_capacity: Option<u64>,
}

impl TierSettings {
    pub const DEFAULT_ROOT: &'static str = "cfs";
    pub const DEFAULT_UPLOAD_AFTER: Duration = Duration::from_secs(5);
    pub const DEFAULT_TIER_AFTER: Duration = Duration::from_secs(86_400);
    pub const DEFAULT_DELETE_GRACE: Duration = Duration::from_secs(600);
    pub const DEFAULT_EVICT_HIGH: u8 = 80;
    pub const DEFAULT_EVICT_LOW: u8 = 60;
    pub const DEFAULT_WRITE_THROUGH: u8 = 95;

    /// Defaults for everything but the store.
    pub fn new(store: TierConfig) -> Self {
        TierSettings {
            store,
            mode: TierMode::Cache,
            tier_after: Self::DEFAULT_TIER_AFTER,
            root: Self::DEFAULT_ROOT.into(),
            upload_after: Self::DEFAULT_UPLOAD_AFTER,
            delete_grace: Self::DEFAULT_DELETE_GRACE,
            object_size: tier::object::DATA_OBJECT_SIZE as u64,
            evict_high: Self::DEFAULT_EVICT_HIGH,
            evict_low: Self::DEFAULT_EVICT_LOW,
            write_through: Self::DEFAULT_WRITE_THROUGH,
            flash_capacity: None,
        }
    }

    /// The longest one PUT of an object may take, retries and backoff included.
    pub fn longest_put(&self) -> Duration {
        let r = &self.store.retry;
        let attempt = self.store.attempt_timeout(self.object_size) + self.store.connect_timeout;
        let backoff: Duration = (1..r.max_attempts).map(|n| r.ceiling(n)).sum();
        attempt * r.max_attempts + backoff
    }

    /// How long a file must have been left alone before it is uploaded: unchanged for
    /// `upload_after`, and in tiered mode unused for `tier_after` too.
    pub fn quiet_for(&self) -> Duration {
        match self.mode {
            TierMode::Cache => self.upload_after,
            TierMode::Tiered => self.upload_after.max(self.tier_after),
        }
    }

    /// Checks what would make the tier unsafe or useless.
    pub fn validate(&self) -> Result<(), TierError> {
        self.store.validate()?;
        if KeySpace::new(&self.root).is_none() {
            return Err(TierError::Config(format!(
                "prefix {:?}: use path segments of letters, digits, '.', '_' and '-'",
                self.root
            )));
        }
        if !(1 << 20..=1 << 30).contains(&self.object_size) {
            return Err(TierError::Config(format!(
                "object size {} must be between 1 MiB and 1 GiB",
                self.object_size
            )));
        }
        if !(self.evict_low < self.evict_high && self.evict_high <= 99) {
            return Err(TierError::Config(format!(
                "evict_low_percent ({}) must be below evict_high_percent ({}), which must be \
                 at most 99",
                self.evict_low, self.evict_high
            )));
        }
        if !(self.evict_high < self.write_through && self.write_through <= 99) {
            return Err(TierError::Config(format!(
                "write_through_percent ({}) must be above evict_high_percent ({}) and at most \
                 99: write-through is what holds writers back when eviction cannot keep up",
                self.write_through, self.evict_high
            )));
        }
        if self.flash_capacity == Some(0) {
            return Err(TierError::Config(
                "flash_capacity_mib must be above 0".into(),
            ));
        }
        if self.delete_grace <= self.longest_put() {
            return Err(TierError::Config(format!(
                "delete_grace_seconds ({}) must exceed the longest a PUT may take with its \
                 retries ({} s), or an object could be deleted before its upload ends",
                self.delete_grace.as_secs(),
                self.longest_put().as_secs() + 1
            )));
        }
        Ok(())
    }
}

/// `[encryption]` is configured and the data key not unwrapped yet (seconds after a start).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the cluster's data key is not unwrapped yet")]
pub struct KeyNotReady;

/// The tier of one MDS node: the store and what this node is uploading now.
pub struct Tier {
    store: Store,
    keys: KeySpace,
    pub settings: TierSettings,
    /// Files this node is uploading now (their records' uploads under way are not stale).
    running: Mutex<HashSet<u64>>,
    /// This node's instance (`instance`), recorded with each upload it begins.
    pub(crate) me: u64,
    /// Headers of objects read lately (reads of evicted files): (ino, piece, gen) → the
    /// header and its length. Bounded: emptied when full.
    heads: Mutex<Heads>,
    /// Tiered mode: when this node last saw each file used (`touch`).
    touched: Mutex<HashMap<u64, i64>>,
    /// Flash as writes see it: full or not, write-through or not (`tiering::through`).
    pub flash: FlashState,
    /// Files acknowledged through the bucket lately: the evictor takes them first. Bounded
    /// like `touched` (emptied when full: they are then evicted in the usual order).
    through: Mutex<HashSet<u64>>,
    /// Wakes the evictor before its period (a write-through upload made room to free).
    pub(crate) evict_now: tokio::sync::Notify,
    /// Files whose acknowledgement was refused with DELAY: the first and the last refusal of
    /// those in a row (`tiering::through`). Bounded like `through`.
    delayed: Mutex<HashMap<u64, (std::time::Instant, std::time::Instant)>>,
    /// Evicted files a request on this node waits to change: restored before those only read
    /// (`tiering::restore`). Bounded like `through` (past it, a waiting writer waits its turn).
    to_change: Mutex<HashSet<u64>>,
    /// `[encryption]` configured: nothing goes to the bucket before `seal` is set.
    sealing: bool,
    /// The key data objects are sealed with, derived from the cluster's data key once it is
    /// known (`dataservers::data_key`).
    seal: std::sync::OnceLock<tier::SealKey>,
}

/// Flash as the write path sees it (issue 45 item 6; the policy is `tiering::through`'s): how
/// full it is where it is fullest, as the evictor last measured it, which places are in
/// write-through, and since when no write found room. On this node's own store, the room
/// writes are admitted against (`chunkstore::room`: the last walk plus every write it may not
/// have seen, each charged the most disk it may add, `Data::flash_charge`).
///
/// **Per place.** A place is this node's own store (0) or a data server. Each is in
/// write-through on its own marks, and an acknowledgement waits only when a place holding its
/// file is (`write_through_at`): a file's bytes fill only its mirrors' flash, so holding the
/// writer of a file placed on data servers with room would slow it and free nothing where it
/// is short (the evictor too takes only files that free room there). A data server admits its
/// writes against the capacity its heartbeat replies carry (`dataservers::flash`).
#[derive(Debug, Default)]
pub struct FlashState {
    /// Bytes used where it is fullest, as last measured (what metrics show).
    used: AtomicU64,
    /// This node's own store; no capacity where writes are not counted here (data servers).
    room: Room,
    /// Whether any place is in write-through (`places` not empty).
    through: AtomicBool,
    /// The places in write-through.
    places: Mutex<BTreeSet<u64>>,
    /// The places the evictor empties: measured past `evict_high` once, until measured at
    /// `evict_low` or under. Without it a pass that stopped short (files busy, or its estimate
    /// of the bytes freed too high) left a place between the watermarks for good.
    draining: Mutex<BTreeSet<u64>>,
    /// Since when no write found room.
    full_since: FullSince,
}

impl FlashState {
    /// Called before the walk that `measured` is given.
    pub(crate) fn walk_starts(&self) -> WalkMark {
        self.room.walk_starts()
    }

    /// The evictor's measure, from a walk begun at `mark`: (place, used, may use) for each
    /// place (`Data::flash_usage`). A place goes into write-through past `write_through`
    /// percent and out of it once back under `evict_high`, where eviction alone keeps up; a
    /// place no longer measured (a data server down or drained) is out. `count_writes`: this
    /// node writes the place itself (one node's own store), so `admit` counts against it.
    /// Returns whether any place is in write-through, when that changed.
    pub(crate) fn measured(
        &self,
        usage: &[(u64, u64, u64)],
        s: &TierSettings,
        count_writes: bool,
        mark: WalkMark,
    ) -> Option<bool> {
        let &(_, used, cap) = usage
            .iter()
            .max_by_key(|(_, used, cap)| u128::from(*used) * 1000 / u128::from((*cap).max(1)))?;
        self.used.store(used, Ordering::Relaxed);
        self.room.measured(used, mark);
        self.room.set_capacity(if count_writes { cap } else { 0 });
        // Each set on its own marks: in past the first, out once at or under the second.
        marks(&mut self.places(), usage, s.write_through, s.evict_high);
        marks(&mut self.draining(), usage, s.evict_high, s.evict_low);
        let n = self.draining().len() as u64;
        let was = self.through.load(Ordering::Relaxed);
        let now = !self.places().is_empty();
        self.through.store(now, Ordering::Relaxed);
        metrics::tier::set_flash(percent(used, cap), now);
        metrics::tier::set_draining(n);
        (now != was).then_some(now)
    }

    /// The places to empty down to `evict_low` (see `draining`).
    pub(crate) fn draining_places(&self) -> BTreeSet<u64> {
        self.draining().clone()
    }

    fn draining(&self) -> std::sync::MutexGuard<'_, BTreeSet<u64>> {
        self.draining.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether an acknowledgement of a file whose bytes are at `places` waits for the bucket.
    pub(crate) fn write_through_at(&self, mut places: impl Iterator<Item = u64>) -> bool {
        if !self.write_through() {
            return false;
        }
        let through = self.places();
        places.any(|p| through.contains(&p))
    }

    fn places(&self) -> std::sync::MutexGuard<'_, BTreeSet<u64>> {
        self.places.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes room for a write that may add `charge` bytes of disk if it fits (held until the
    /// returned value is dropped, once the write has ended): else the answer for a full flash
    /// (`full`). Crossing `write_through` percent starts write-through at once.
    pub(crate) fn admit(&self, charge: u64, s: &TierSettings) -> Result<Taken<'_>, NfsError> {
        let Some(took) = self.room.take(charge) else {
            return Err(self.full(s));
        };
        let cap = self.room.capacity();
        if cap > 0 {
            let pct = percent(self.room.used(), cap);
            if pct > u64::from(s.write_through) && !self.through.swap(true, Ordering::Relaxed) {
                // Counted writes are to this node's own store: place 0.
                self.places().insert(0);
                tracing::warn!(
                    percent = pct,
                    "flash full: write-through (writes are acknowledged once in the bucket)"
                );
            }
            metrics::tier::set_flash(pct, self.through.load(Ordering::Relaxed));
        }
        self.full_since.fit();
        Ok(took)
    }

    /// Room for an evicted file coming back (`tiering::restore`) that may add `charge` bytes
    /// of disk, if it fits. No NFS answer: the reader is served from the bucket meanwhile and
    /// the file is asked for again. Like any cache, a file read comes back in and crowds out
    /// the idlest (the evictor's next pass, past the high watermark).
    pub(crate) fn admit_restore(&self, charge: u64) -> Option<Taken<'_>> {
        self.room.take(charge)
    }

    /// The answer to a write that does not fit. NFS4ERR_NOSPC when nothing will make room
    /// soon: the store has failed every request lately (so nothing more becomes evictable),
    /// or no write has fit for the longest a PUT may take (whatever upload was to free room
    /// has ended one way or the other, and the flash is full of what cannot be evicted:
    /// pinned, open, or not uploadable). Otherwise NFS4ERR_DELAY: the uploader and the
    /// evictor are making room, and the client retries.
    pub(crate) fn full(&self, s: &TierSettings) -> NfsError {
        let coming = match metrics::tier::failing_for() {
            Some(_) => None,
            None => Some(s.longest_put().as_secs()),
        };
        if self.full_since.refuse(coming) {
            metrics::tier::FULL_REFUSALS.inc();
            NfsError::NoSpc
        } else {
            NfsError::Delay
        }
    }

    /// Whether acknowledgements wait for the bucket now.
    pub fn write_through(&self) -> bool {
        self.through.load(Ordering::Relaxed)
    }
}

/// `used` as a percent of `cap` (100 when `cap` is 0 and something is used).
fn percent(used: u64, cap: u64) -> u64 {
    if cap == 0 {
        return if used > 0 { 100 } else { 0 };
    }
    (u128::from(used) * 100 / u128::from(cap)) as u64
}

/// Places past `on` percent of their capacity, and those of `set` still past `off`, become
/// `set`; a place no longer measured leaves it.
/// Compared unrounded: 60.4 % is not at a 60 % mark (and with no capacity, anything used is
/// past every mark).
fn marks(set: &mut BTreeSet<u64>, usage: &[(u64, u64, u64)], on: u8, off: u8) {
    let past =
        |used: u64, cap: u64, mark: u8| u128::from(used) * 100 > u128::from(cap) * u128::from(mark);
    let before = std::mem::take(set);
    for &(at, used, cap) in usage {
        if past(used, cap, on) || (past(used, cap, off) && before.contains(&at)) {
            set.insert(at);
        }
    }
}

/// Longest between two refusals of one acknowledgement's retries: past Linux's longest pause
/// before it sends a request refused with DELAY again (15 s, `NFS4_POLL_RETRY_MAX`).
const RETRY_GAP: Duration = Duration::from_secs(20);

/// Most files a node remembers as acknowledged through the bucket.
const MAX_THROUGH: usize = 1 << 16;

/// Most files whose last use a node remembers (16 bytes each and the map's overhead: ~50 MiB
/// at most). Past it the entries too old to matter go, and if that is not enough, all of
/// them: a busy file may then be uploaded early, which costs a PUT, never data.
const MAX_TOUCHED: usize = 1 << 20;

/// (ino, piece, gen) → an object's verified header and its length.
type Heads = HashMap<(u64, u64, u64), Arc<(Header, usize)>>;

/// Most object headers a node keeps (each up to 4 KiB).
const MAX_HEADS: usize = 4096;

/// A node's instance as uploads record it: its id (0 for the one-node service) and boot count.
pub fn instance(node: u8, boot: u64) -> u64 {
    (u64::from(node) << 48) | (boot & 0xffff_ffff_ffff)
}

/// Whether `by` is an earlier boot of the node whose instance is `me`.
pub(crate) fn earlier_boot(by: u64, me: u64) -> bool {
    by >> 48 == me >> 48 && by != me
}

impl Tier {
    pub fn new(settings: TierSettings, me: u64, sealing: bool) -> Result<Tier, TierError> {
        settings.validate()?;
        let keys =
            KeySpace::new(&settings.root).ok_or_else(|| TierError::Config("bad prefix".into()))?;
        Ok(Tier {
            store: Store::new(settings.store.clone())?,
            keys,
            settings,
            running: Mutex::new(HashSet::new()),
            me,
            heads: Mutex::new(HashMap::new()),
            touched: Mutex::new(HashMap::new()),
            flash: FlashState::default(),
            through: Mutex::new(HashSet::new()),
            evict_now: tokio::sync::Notify::new(),
            delayed: Mutex::new(HashMap::new()),
            to_change: Mutex::new(HashSet::new()),
            sealing,
            seal: Default::default(),
        })
    }

    /// Sets the key data objects are sealed with (once; later calls change nothing).
    pub(crate) fn set_seal(&self, data_key: &reduce::DataKey) {
        let _ = self.seal.set(tier::SealKey::from_data_key(
            &data_key.derive("cfs tier seal key v1"),
        ));
    }

    /// The key to seal and open data objects with: `Err` while it is due and not known yet
    /// (just started), so no upload sends plaintext meanwhile and reads wait (DELAY).
    pub(crate) fn seal(&self) -> Result<Option<&tier::SealKey>, KeyNotReady> {
        match (self.sealing, self.seal.get()) {
            (_, Some(k)) => Ok(Some(k)),
            (false, None) => Ok(None),
            (true, None) => Err(KeyNotReady),
        }
    }

    /// The key of piece `piece` of `ino`'s upload of generation `gen`.
    pub fn key(&self, ino: u64, piece: u64, gen: u64) -> String {
        self.keys.key(&Self::id(ino, piece, gen))
    }

    pub fn id(ino: u64, piece: u64, gen: u64) -> ObjectId {
        ObjectId {
            kind: tier::Kind::Data,
            ino,
            segment: piece,
            generation: gen,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The keys this cluster owns in the bucket.
    pub fn keys(&self) -> &KeySpace {
        &self.keys
    }

    /// A request waits to change evicted `ino` (see `to_change`).
    pub(crate) fn writer_waits(&self, ino: u64) {
        let mut s = self.to_change_set();
        if s.len() < MAX_THROUGH {
            s.insert(ino);
        }
    }

    /// `ino` is back on flash: no writer waits for it any more.
    pub(crate) fn restored(&self, ino: u64) {
        self.to_change_set().remove(&ino);
    }

    /// The evicted files a writer waits for now.
    pub(crate) fn to_change_now(&self) -> HashSet<u64> {
        self.to_change_set().clone()
    }

    /// Forgets those no longer wanted back (restored by another node, or removed).
    pub(crate) fn to_change_only(&self, wanted: &HashSet<u64>) {
        self.to_change_set().retain(|i| wanted.contains(i));
    }

    fn to_change_set(&self) -> std::sync::MutexGuard<'_, HashSet<u64>> {
        self.to_change.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn running(&self) -> std::sync::MutexGuard<'_, HashSet<u64>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The verified header of piece `piece` of `ino`'s copy `gen`, whose payload's blake3 the
    /// record says is `sum`: from the cache, else one small GET.
    pub async fn header(
        &self,
        ino: u64,
        piece: u64,
        gen: u64,
        sum: &[u8; 32],
        seal: Option<&tier::SealKey>,
    ) -> Result<Arc<(Header, usize)>, TierError> {
        let k = (ino, piece, gen);
        if let Some(h) = self.heads().get(&k) {
            return Ok(h.clone());
        }
        let key = self.key(ino, piece, gen);
        let h = self
            .store
            .header(&key, &Self::id(ino, piece, gen), sum, seal)
            .await?;
        if seal.is_some() && h.0.sealing.is_none() {
            // A plaintext object where the cluster seals: one uploaded before encryption was
            // turned on, or one put there in place of a sealed one with the recorded sum
            // copied into it. Only the first has a payload whose plain blake3 is that sum
            // (a sealed upload's is a keyed MAC), so the whole object is read and checked once
            // (its header is cached after).
            tier::object::decode(self.store.get(&key).await?, seal)?;
        }
        let h = Arc::new(h);
        let mut m = self.heads();
        if m.len() >= MAX_HEADS {
            m.clear();
        }
        m.insert(k, h.clone());
        Ok(h)
    }

    fn heads(&self) -> std::sync::MutexGuard<'_, Heads> {
        self.heads.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tiered mode: a client of this node used `ino` now (an OPEN, READ, WRITE, COMMIT,
    /// LAYOUTGET, LAYOUTCOMMIT or CLOSE of it). Nothing in cache mode, where use does not
    /// matter.
    ///
    /// **Why this and not atime.** Reads through a layout go to the data servers, so the MDS
    /// sees a file's use only as the operations above; recording them in the replicated
    /// inode (atime) would cost a Raft write per read. Kept in memory on the node that saw
    /// them, they are lost with it: after a restart or a change of shard leader a file is
    /// judged by its change time (and by whether a client has it open anywhere) until it is
    /// used again, so it may be uploaded early, never lost.
    pub fn touch(&self, ino: u64) {
        if self.settings.mode != TierMode::Tiered {
            return;
        }
        let now = meta::namespace::Time::now().secs;
        let mut m = self.touched();
        if m.len() >= MAX_TOUCHED && !m.contains_key(&ino) {
            let after = i64::try_from(self.settings.tier_after.as_secs()).unwrap_or(i64::MAX);
            m.retain(|_, at| now.saturating_sub(*at) <= after);
            if m.len() >= MAX_TOUCHED {
                tracing::warn!(
                    files = m.len(),
                    "tiered mode: too many files used lately to remember; forgetting them"
                );
                m.clear();
            }
        }
        m.insert(ino, now);
    }

    /// Tiered mode: the files used after `since`; uses older than that are forgotten (they no
    /// longer keep any file from the bucket).
    pub(crate) fn uses_since(&self, since: i64) -> HashSet<u64> {
        let mut m = self.touched();
        m.retain(|_, at| *at > since);
        m.keys().copied().collect()
    }

    fn touched(&self) -> std::sync::MutexGuard<'_, HashMap<u64, i64>> {
        self.touched.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `ino` was acknowledged through the bucket: the evictor takes it first.
    pub(crate) fn note_through(&self, ino: u64) {
        let mut m = self.through.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= MAX_THROUGH {
            m.clear();
        }
        m.insert(ino);
    }

    /// Whether `ino` was acknowledged through the bucket; forgets it when `evicted`.
    pub(crate) fn was_through(&self, ino: u64, evicted: bool) -> bool {
        let mut m = self.through.lock().unwrap_or_else(|e| e.into_inner());
        if evicted {
            m.remove(&ino)
        } else {
            m.contains(&ino)
        }
    }

    /// `ino`'s acknowledgement is refused with DELAY: how long since the first refusal of
    /// those in a row. A refusal more than `RETRY_GAP` after the last starts a new row (the
    /// client gave up, or a later write is acknowledged), so an old one never shortens it.
    pub(crate) fn delayed(&self, ino: u64) -> Duration {
        let mut m = self.delayed.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= MAX_THROUGH && !m.contains_key(&ino) {
            m.clear();
        }
        let now = std::time::Instant::now();
        let e = m.entry(ino).or_insert((now, now));
        if now.duration_since(e.1) > RETRY_GAP {
            e.0 = now;
        }
        e.1 = now;
        now.duration_since(e.0)
    }

    /// `ino`'s acknowledgement was given: its refusals in a row are over.
    pub(crate) fn released(&self, ino: u64) {
        self.delayed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ino);
    }

    /// Whether this node is uploading `ino` now.
    pub fn is_running(&self, ino: u64) -> bool {
        self.running().contains(&ino)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> TierSettings {
        TierSettings::new(TierConfig::new("http://127.0.0.1:9", "b"))
    }

    #[test]
    fn write_through_starts_past_its_mark_and_ends_under_the_high_watermark() {
        let (f, s) = (FlashState::default(), settings());
        let mib = 1 << 20;
        // Measured at 90 %: not yet; writes counted since take it past 95 % at once.
        assert_eq!(
            f.measured(&[(0, 90 * mib, 100 * mib)], &s, true, f.walk_starts()),
            None
        );
        assert!(!f.write_through());
        assert!(f.admit(4 * mib, &s).is_ok());
        assert!(!f.write_through(), "94 %");
        assert!(f.admit(2 * mib, &s).is_ok());
        assert!(f.write_through(), "96 %");
        assert!(f.write_through_at([0].into_iter()));
        // Between the marks it stays; under the high watermark it ends.
        assert_eq!(
            f.measured(&[(0, 85 * mib, 100 * mib)], &s, true, f.walk_starts()),
            None
        );
        assert!(f.write_through());
        assert_eq!(
            f.measured(&[(0, 80 * mib, 100 * mib)], &s, true, f.walk_starts()),
            Some(false)
        );
        assert!(!f.write_through_at([0].into_iter()));
        // Data servers: each on its own marks, writes not counted here.
        assert_eq!(
            f.measured(&[(1, 10, 100), (2, 97, 100)], &s, false, f.walk_starts()),
            Some(true)
        );
        assert!(f.write_through_at([1, 2].into_iter()));
        assert!(!f.write_through_at([1, 3].into_iter()), "a file with room");
        assert!(
            !f.write_through_at([0].into_iter()),
            "place 0 no longer measured"
        );
        // Between the marks each stays as it was: 2 in, 1 (never in) out.
        assert_eq!(
            f.measured(&[(1, 90, 100), (2, 90, 100)], &s, false, f.walk_starts()),
            None
        );
        assert!(f.write_through_at([2].into_iter()));
        assert!(!f.write_through_at([1].into_iter()));
        assert_eq!(
            f.measured(&[(1, 90, 100), (2, 80, 100)], &s, false, f.walk_starts()),
            Some(false)
        );
        assert!(!f.write_through_at([1, 2].into_iter()));
        assert!(
            f.admit(u64::MAX / 2, &s).is_ok(),
            "no capacity to count against"
        );
    }

    #[test]
    fn a_place_past_the_high_watermark_is_emptied_until_under_the_low_one() {
        let (f, s) = (FlashState::default(), settings());
        let drains = |usage: &[(u64, u64, u64)]| {
            f.measured(usage, &s, false, f.walk_starts());
            f.draining_places().into_iter().collect::<Vec<_>>()
        };
        assert_eq!(drains(&[(1, 70, 100), (2, 80, 100)]), Vec::<u64>::new());
        assert_eq!(drains(&[(1, 81, 100), (2, 80, 100)]), vec![1]);
        // Between the watermarks: 1 goes on, 2 (never past the high one) is left alone.
        assert_eq!(drains(&[(1, 75, 100), (2, 79, 100)]), vec![1]);
        assert_eq!(
            drains(&[(1, 6001, 10_000), (2, 79, 100)]),
            vec![1],
            "60.01 %"
        );
        assert_eq!(drains(&[(1, 60, 100), (2, 79, 100)]), Vec::<u64>::new());
        // A place no longer measured (down, or drained) is out.
        assert_eq!(drains(&[(2, 90, 100)]), vec![2]);
        assert_eq!(drains(&[(1, 70, 100)]), Vec::<u64>::new());
    }

    #[test]
    fn a_write_that_does_not_fit_waits_until_nothing_can_make_room() {
        let (f, s) = (FlashState::default(), settings());
        let mib = 1 << 20;
        f.measured(&[(0, 99 * mib, 100 * mib)], &s, true, f.walk_starts());
        assert!(f.admit(mib, &s).is_ok(), "exactly full fits");
        if metrics::tier::failing_for().is_none() {
            // The store answers: the evictor can make room.
            assert_eq!(f.admit(1, &s).err(), Some(NfsError::Delay));
        }
        // Full for longer than any upload may take: refused.
        f.full_since.started_secs_ago(s.longest_put().as_secs() + 2);
        assert_eq!(f.admit(1, &s).err(), Some(NfsError::NoSpc));
        // A measure with room, and writes fit again.
        f.measured(&[(0, 50 * mib, 100 * mib)], &s, true, f.walk_starts());
        assert!(f.admit(1, &s).is_ok());
        assert!(!f.full_since.running());
    }

    #[test]
    fn a_restore_fits_only_where_a_write_would() {
        let (f, s) = (FlashState::default(), settings());
        f.measured(&[(0, 98, 100)], &s, true, f.walk_starts());
        assert!(f.admit_restore(3).is_none());
        let r = f.admit_restore(2).expect("exactly full fits");
        assert!(f.admit(1, &s).is_err(), "the restore holds its room");
        drop(r);
    }
}
