//! NFSv4 opens the gateway holds for v3 I/O. NFSv3 has no OPEN, but an NFSv4 READ or WRITE
//! needs a stateid, and a pNFS layout needs an open: the gateway opens a file (as itself, for
//! reading and writing when it may) on the first v3 READ, WRITE or CREATE and keeps it while
//! it is used, closing it after `idle` without I/O or when more than `max` are open (the least
//! recently used first). A close commits what the layout driver holds and returns the layouts.
use client::{Client, OpenFile};
use proto::nfs4::{NfsFh4, OPEN4_SHARE_ACCESS_BOTH, OPEN4_SHARE_ACCESS_READ};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Entry {
    pub file: Arc<OpenFile>,
    pub writable: bool,
    /// The end of what was written through this open and not yet LAYOUTCOMMITted (pNFS):
    /// GETATTR shows at least this size, as a local file system shows its dirty pages.
    pub pending_end: AtomicU64,
    /// Bytes written UNSTABLE through a layout since this open's last commit: what the layout
    /// driver keeps in memory for a rewrite (counted in `Opens::unstable`).
    pub unstable: AtomicU64,
    last_used: Mutex<Instant>,
    /// The session the open belongs to.
    pub generation: u64,
}

impl Entry {
    fn touch(&self) {
        if let Ok(mut t) = self.last_used.lock() {
            *t = Instant::now();
        }
    }
    fn idle_for(&self) -> Duration {
        self.last_used
            .lock()
            .map(|t| t.elapsed())
            .unwrap_or_default()
    }
    pub fn note_write(&self, end: u64) {
        self.pending_end.fetch_max(end, Ordering::SeqCst);
    }
}

pub struct Opens {
    map: Mutex<HashMap<Vec<u8>, Arc<Entry>>>,
    pub max: usize,
    pub idle: Duration,
    /// Unstable bytes kept by the layout driver, all opens together.
    unstable: AtomicU64,
}

/// Past this many unstable bytes kept for all opens together, a writer commits its file before
/// its reply: each open's are bounded by the driver (`client::pnfs::COMMIT_EVERY`, 64 MiB),
/// but 1,024 opens of 64 MiB each would be 64 GiB of memory.
pub const UNSTABLE_BUDGET: u64 = 256 << 20;

/// What became of closing an entry (the caller changes the verifier on failure).
pub type CloseResult = Result<(), client::Error>;

impl Opens {
    pub fn new(max: usize, idle: Duration) -> Opens {
        Opens {
            map: Mutex::new(HashMap::new()),
            max: max.max(1),
            idle,
            unstable: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, Arc<Entry>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Books `n` unstable bytes written through `e`; true when all opens together keep more
    /// than `UNSTABLE_BUDGET` (the writer then commits).
    pub fn add_unstable(&self, e: &Entry, n: u64) -> bool {
        e.unstable.fetch_add(n, Ordering::SeqCst);
        self.unstable.fetch_add(n, Ordering::SeqCst) + n > UNSTABLE_BUDGET
    }

    /// `e`'s unstable bytes are committed (or gone with it).
    pub fn committed(&self, e: &Entry) {
        let n = e.unstable.swap(0, Ordering::SeqCst);
        let _ = self
            .unstable
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                Some(t.saturating_sub(n))
            });
    }

    pub fn unstable_bytes(&self) -> u64 {
        self.unstable.load(Ordering::SeqCst)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The open of `fh`, if held.
    pub fn peek(&self, fh: &NfsFh4) -> Option<Arc<Entry>> {
        self.lock().get(fh.as_bytes()).cloned()
    }

    /// The open of `fh` for `write` (or reading), opening it with `c` (the gateway's own
    /// credential) if needed. Entries displaced (over `max`, or a read-only open replaced by a
    /// read-write one) are returned for the caller to close.
    pub async fn get(
        &self,
        c: &Client,
        generation: u64,
        fh: &NfsFh4,
        write: bool,
    ) -> Result<(Arc<Entry>, Vec<Arc<Entry>>), client::Error> {
        if let Some(e) = self.peek(fh) {
            if e.generation == generation && (e.writable || !write) {
                e.touch();
                return Ok((e, Vec::new()));
            }
        }
        // Read-write when the MDS allows it, so one open serves both; else read-only.
        let (file, writable) = match c.open_fh(fh, OPEN4_SHARE_ACCESS_BOTH).await {
            Ok(f) => (f, true),
            Err(e) if write => return Err(e),
            Err(e) if e.status().is_some() => {
                (c.open_fh(fh, OPEN4_SHARE_ACCESS_READ).await?, false)
            }
            Err(e) => return Err(e),
        };
        Ok(self.insert(file, writable, generation))
    }

    /// Keeps an open made elsewhere (v3 CREATE opens as it creates).
    pub fn insert(
        &self,
        file: OpenFile,
        writable: bool,
        generation: u64,
    ) -> (Arc<Entry>, Vec<Arc<Entry>>) {
        let key = file.fh.as_bytes().to_vec();
        let e = Arc::new(Entry {
            file: Arc::new(file),
            writable,
            pending_end: AtomicU64::new(0),
            unstable: AtomicU64::new(0),
            last_used: Mutex::new(Instant::now()),
            generation,
        });
        let mut out = Vec::new();
        let mut m = self.lock();
        if let Some(old) = m.insert(key, e.clone()) {
            // A racing opener, or a read-only open replaced: keep what it knew pending.
            e.note_write(old.pending_end.load(Ordering::SeqCst));
            out.push(old);
        }
        while m.len() > self.max {
            let victim = m
                .iter()
                .filter(|(_, v)| !Arc::ptr_eq(v, &e))
                .max_by_key(|(_, v)| v.idle_for())
                .map(|(k, _)| k.clone());
            match victim.and_then(|k| m.remove(&k)) {
                Some(v) => out.push(v),
                None => break,
            }
        }
        (e, out)
    }

    /// Entries idle past `idle`, or all of them; removed from the table for the caller to
    /// close.
    pub fn take_idle(&self, all: bool) -> Vec<Arc<Entry>> {
        let mut m = self.lock();
        let keys: Vec<Vec<u8>> = m
            .iter()
            .filter(|(_, v)| all || v.idle_for() >= self.idle)
            .map(|(k, _)| k.clone())
            .collect();
        keys.iter().filter_map(|k| m.remove(k)).collect()
    }

    /// Puts back an entry taken for closing that must stay open (NLM locks hang on it),
    /// unless another open of the file took its place meanwhile.
    pub fn keep(&self, e: Arc<Entry>) {
        e.touch();
        self.lock()
            .entry(e.file.fh.as_bytes().to_vec())
            .or_insert(e);
    }

    /// Removes the entry of `fh` (to close it before a truncation, or after a failure).
    pub fn take(&self, fh: &NfsFh4) -> Option<Arc<Entry>> {
        self.lock().remove(fh.as_bytes())
    }
}

/// Closes an entry: commits and LAYOUTCOMMITs what the layout driver holds, returns its
/// layouts, CLOSEs.
pub async fn close(c: &Client, e: &Entry) -> CloseResult {
    c.close(&e.file).await
}
