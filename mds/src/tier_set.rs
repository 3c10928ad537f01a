//! The object-store tier's settings and the node's handle on the store (`Tier`): what
//! `[tier]` configures and what the uploader and deleter (`tiering/`) share. Kept apart from
//! them so the node and its configuration hold a `Tier` without importing the loops, which
//! work on the node.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
}

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
    pub fn new(settings: TierSettings, me: u64) -> Result<Tier, TierError> {
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
        })
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
    ) -> Result<Arc<(Header, usize)>, TierError> {
        let k = (ino, piece, gen);
        if let Some(h) = self.heads().get(&k) {
            return Ok(h.clone());
        }
        let h = Arc::new(
            self.store
                .header(&self.key(ino, piece, gen), &Self::id(ino, piece, gen), sum)
                .await?,
        );
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

    /// Whether this node is uploading `ino` now.
    pub fn is_running(&self, ino: u64) -> bool {
        self.running().contains(&ino)
    }
}
