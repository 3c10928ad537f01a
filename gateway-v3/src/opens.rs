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
}

/// What became of closing an entry (the caller changes the verifier on failure).
pub type CloseResult = Result<(), client::Error>;

impl Opens {
    pub fn new(max: usize, idle: Duration) -> Opens {
        Opens {
            map: Mutex::new(HashMap::new()),
            max: max.max(1),
            idle,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, Arc<Entry>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn len(&self) -> usize {
        self.lock().len()
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
