//! Paths of files by inode number, for the busiest files. Files keep no parent (hard links
//! give them several), so the MDS walks its namespace from the root within a bound
//! (`mds::admin::Admin::paths`); a file past the bound shows as its inode number. Found paths
//! are kept for `KEEP`, so a console refreshing every 2 s walks at most once per `KEEP` for
//! the same files (a rename shows after that).
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a found path is used without looking again.
const KEEP: Duration = Duration::from_secs(30);
/// Paths kept at most (the busiest-files table asks for up to 100).
const CACHE_MAX: usize = 1_000;

#[derive(Default)]
pub struct Paths {
    cache: Mutex<HashMap<u64, (String, Instant)>>,
}

impl Paths {
    /// A path for each of `want` that could be found (absent: not found within the bound).
    pub fn of(&self, m: &mds::admin::Admin, want: &[u64]) -> HashMap<u64, String> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.retain(|_, (_, at)| at.elapsed() < KEEP);
        let mut out: HashMap<u64, String> = want
            .iter()
            .filter_map(|i| cache.get(i).map(|(p, _)| (*i, p.clone())))
            .collect();
        let missing: HashSet<u64> = want
            .iter()
            .copied()
            .filter(|i| !out.contains_key(i))
            .collect();
        if missing.is_empty() {
            return out;
        }
        let found = m.paths(&missing);
        if cache.len() + found.len() > CACHE_MAX {
            cache.clear();
        }
        for (ino, p) in found {
            cache.insert(ino, (p.clone(), Instant::now()));
            out.insert(ino, p);
        }
        out
    }
}
