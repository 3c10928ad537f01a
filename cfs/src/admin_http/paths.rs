//! Paths of files by inode number, for the busiest files. Files keep no parent (hard links
//! give them several), so the namespace is walked from the root, breadth first, until every
//! wanted file is named or `VISIT_LIMIT` entries were read; a file past the limit shows as its
//! inode number. Found paths are kept for `KEEP`, so a console refreshing every 2 s walks at
//! most once per `KEEP` for the same files (a rename shows after that).
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mds::namespace::Namespace;

/// Directory entries read per walk at most (a few milliseconds of in-memory lookups).
const VISIT_LIMIT: usize = 20_000;
/// How long a found path is used without looking again.
const KEEP: Duration = Duration::from_secs(30);
/// Entries per READDIR page of the walk.
const PAGE: usize = 1_000;
/// Paths kept at most (the busiest-files table asks for up to 100).
const CACHE_MAX: usize = 1_000;

#[derive(Default)]
pub struct Paths {
    cache: Mutex<HashMap<u64, (String, Instant)>>,
}

impl Paths {
    /// A path for each of `want` that could be found (absent: not found within the bound).
    pub fn of(&self, ns: &Namespace, want: &[u64]) -> HashMap<u64, String> {
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
        // The root has no entry to be found under; its path is known.
        let root = mds::namespace::ROOT_INO;
        let mut found = walk(
            ns,
            &missing.iter().copied().filter(|i| *i != root).collect(),
        );
        if missing.contains(&root) {
            found.insert(root, "/".to_string());
        }
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

/// Breadth first from the root: the first name found for each wanted inode.
fn walk(ns: &Namespace, want: &HashSet<u64>) -> HashMap<u64, String> {
    let root = mds::namespace::ROOT_INO;
    let mut found = HashMap::new();
    let mut dirs = VecDeque::from([(root, String::new())]);
    let mut seen_dirs = HashSet::from([root]);
    let mut visited = 0usize;
    while let Some((dir, path)) = dirs.pop_front() {
        let mut cookie = 0;
        while let Ok((entries, eof)) = ns.readdir(dir, cookie, PAGE) {
            for e in &entries {
                visited += 1;
                let p = format!("{path}/{}", String::from_utf8_lossy(&e.name));
                if want.contains(&e.ino) && !found.contains_key(&e.ino) {
                    found.insert(e.ino, p.clone());
                    if found.len() == want.len() {
                        return found;
                    }
                }
                let is_dir = ns.getattr(e.ino).is_ok_and(|i| i.kind.is_dir());
                if is_dir && seen_dirs.insert(e.ino) {
                    dirs.push_back((e.ino, p));
                }
                if visited >= VISIT_LIMIT {
                    return found;
                }
            }
            match entries.last() {
                Some(last) if !eof => cookie = last.cookie,
                _ => break,
            }
        }
    }
    found
}
