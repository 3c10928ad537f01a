//! Usage per export (issue 46, item 5): what `cfs admin status`, `/metrics` and the console
//! show of each export's files as logical bytes, bytes after dedup, after compression, and raw
//! bytes on the data servers (`tally::Usage` defines each; docs/OPERATIONS.md, "Usage per
//! export").
//!
//! Why a background walk. A file's export is the export whose tree holds it, and nothing in
//! the namespace says which: inodes keep no path, exports are configuration (they may change
//! between starts), and a rename moves a whole tree at once. Counters kept by `apply` would need
//! the export of every file in every command, and a rename between directories would move a
//! tree's totals. So a pass walks each export's tree from its root over this node's replicas,
//! reads each regular file's size and form (mirrored, erasure-coded, reduced, evicted) and,
//! for a reduced one, its recipe, and tallies (`tally`); then it reads the sizes of each
//! segment the recipes name. The report of the last complete pass is what the admin API
//! shows, with its age.
//!
//! Cost, and why it slows no request. Each step is one snapshot (the read locks of the shards
//! it reads, which `apply` waits for) over one READDIR page of `PAGE` entries and their
//! records, or over `PAGE` segments' sizes; the recipes are copied out and decoded after the
//! snapshot is dropped. After each step the pass sleeps `DUTY - 1` times as long as the step
//! worked, so it takes at most 1/`DUTY` of a core, and a pass starts `EVERY` (or as long as
//! the last one took, if longer) after the last ended. Measured (release, a 2-core machine
//! shared with two builds, `usage::tests`): a step of 256 files holds the locks ~0.17 ms, and
//! a pass over 604 entries takes 13 ms, nearly all of it the pacing's sleeps
//! (`longest_step_seconds` in the status says it for a running cluster: 55 µs in
//! `cfs/tests/it/export_usage.rs`).
//! Memory: the tally keeps a bitmap per segment referred to (`MAX_SEGMENTS` at most), the walk
//! the directories still to read (`MAX_DIRS`) and the inodes with several names seen
//! (`MAX_LINKED`); past a bound the report says it is incomplete.
//!
//! Each MDS node walks its own replicas, as `Admin::redundancy` reads them: a node without
//! a replica of some shard (more nodes than voters per shard) cannot read the directories and
//! segments there, and says its report is incomplete. Files reachable from no export (orphans
//! still open, trees being removed) count in no export.

pub mod tally;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use meta::namespace::reduce_index::SegmentId;
use meta::namespace::{FileKind, FsError, Namespace, Snapshot};

use crate::dataservers::segment_raw_bytes;
pub use tally::Usage;
use tally::{SegmentSizes, Tally};

/// Entries (or segments) one step reads under one snapshot.
const PAGE: usize = 256;
/// The pass works at most one part in `DUTY` of the time.
const DUTY: u32 = 20;
/// The least time between two passes.
const EVERY: Duration = Duration::from_secs(5);
/// Before the first pass: the node's shards settle after a start.
const FIRST: Duration = Duration::from_secs(2);
/// Segments the tally tracks: ~150 bytes each, so ~150 MiB at the bound, for 2 TiB of
/// distinct reduced data at 2 MiB a segment (the index itself holds ~3 KiB a segment).
const MAX_SEGMENTS: usize = 1 << 20;
/// Directories waiting to be read (8 bytes each).
const MAX_DIRS: usize = 1 << 22;
/// Inodes with several names remembered per export, so each counts once.
const MAX_LINKED: usize = 1 << 20;

/// One export's usage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportUsage {
    /// The export's path, as configured.
    pub path: String,
    pub usage: Usage,
}

/// What the last pass found.
#[derive(Clone, Debug)]
pub struct UsageReport {
    /// Each export, in the configuration's order.
    pub exports: Vec<ExportUsage>,
    /// All exports together: a chunk several exports refer to counts once.
    pub total: Usage,
    /// When the pass ended, and how long it took.
    pub finished: SystemTime,
    pub took: Duration,
    /// The longest step: the most the pass held shards' read locks (and worked) at once.
    pub longest_step: Duration,
    /// Every directory and segment was read: false when a bound was reached, a shard is
    /// not on this node, or records changed under the walk in a way it could not follow.
    pub complete: bool,
}

/// The last report, shared by the pass and the admin API.
#[derive(Default)]
pub struct UsageCell(Mutex<Option<Arc<UsageReport>>>);

impl UsageCell {
    /// The last complete pass's report; `None` before the first one ends.
    pub fn get(&self) -> Option<Arc<UsageReport>> {
        self.0.lock().ok().and_then(|r| r.clone())
    }

    fn set(&self, r: UsageReport) {
        if let Ok(mut cell) = self.0.lock() {
            *cell = Some(Arc::new(r));
        }
    }
}

/// Runs passes over `exports` (their paths) for ever, each report into `cell`.
pub async fn run(ns: Namespace, exports: Vec<String>, cell: Arc<UsageCell>) {
    tokio::time::sleep(FIRST).await;
    loop {
        let r = pass(&ns, &exports).await;
        let took = r.took;
        tracing::debug!(
            took_ms = took.as_millis() as u64,
            longest_step_us = r.longest_step.as_micros() as u64,
            complete = r.complete,
            "usage pass"
        );
        cell.set(r);
        tokio::time::sleep(took.max(EVERY)).await;
    }
}

/// Sleeps so that the work since `started` is one part in `DUTY`; notes the step's work in
/// `longest`.
async fn pace(started: Instant, longest: &mut Duration) {
    let worked = started.elapsed();
    *longest = (*longest).max(worked);
    tokio::time::sleep(worked * (DUTY - 1)).await;
}

/// What one entry of a directory is, for the tally.
enum Found {
    Dir(u64),
    /// A file not reduced: its size and the bytes the data servers hold for it.
    Plain {
        size: u64,
        raw: u64,
    },
    /// A reduced file: its size and its recipes (one per part).
    Reduced {
        size: u64,
        recipes: Vec<Vec<u8>>,
    },
}

/// Recipe bytes one page copies out of the snapshot: a file reduced in parts may have up to
/// 32 MiB of recipe (`meta_core::reducing::MAX_REDUCE_PARTS`), so a page stops early at this
/// (after at least one entry) rather than hold `PAGE` of them.
const PAGE_RECIPE_BYTES: usize = 64 << 20;

/// One page of `dir` after `cookie`, under one snapshot: what each entry is, the cookie to
/// go on from (`None`: the directory is done), and whether an entry could not be read.
/// `linked`: inodes with several names met in this export so far.
#[allow(clippy::type_complexity)]
fn read_page(
    ns: &Namespace,
    dir: u64,
    cookie: u64,
    linked: &mut HashSet<u64>,
) -> Result<(Vec<Found>, Option<u64>, bool), FsError> {
    let snap = ns.snapshot()?;
    let (entries, eof) = snap.readdir(dir, cookie, PAGE)?;
    let mut next = entries.last().map(|e| e.cookie).filter(|_| !eof);
    let mut out = Vec::with_capacity(entries.len());
    let mut missed = false;
    let mut recipe_bytes = 0usize;
    // The cookie of the last entry looked at: the page goes on after it.
    let mut done = cookie;
    for e in &entries {
        if recipe_bytes >= PAGE_RECIPE_BYTES {
            next = Some(done);
            break;
        }
        done = e.cookie;
        let Ok(i) = snap.getattr(e.ino) else {
            // Gone since the READDIR, or on a shard this node has no replica of.
            missed = true;
            continue;
        };
        match i.kind {
            FileKind::Directory => out.push(Found::Dir(i.ino)),
            FileKind::Regular => {
                if i.nlink > 1 {
                    if linked.contains(&i.ino) {
                        continue;
                    }
                    if linked.len() < MAX_LINKED {
                        linked.insert(i.ino);
                    } else {
                        missed = true;
                    }
                }
                match file(&snap, i.ino, i.size) {
                    Ok(f) => {
                        if let Found::Reduced { recipes, .. } = &f {
                            recipe_bytes += recipes.iter().map(Vec::len).sum::<usize>();
                        }
                        out.push(f)
                    }
                    Err(_) => missed = true,
                }
            }
            _ => {}
        }
    }
    Ok((out, next, missed))
}

/// A regular file's form: reduced (its recipes), erasure-coded (its shards' bytes), evicted
/// (none on the data servers: the bucket holds it), else mirrored (a copy per mirror).
fn file(snap: &Snapshot<'_>, ino: u64, size: u64) -> Result<Found, FsError> {
    if let Some(r) = snap.file_reduce(ino)?.filter(|r| r.is_reduced()) {
        if let Some(d) = r.reduced() {
            return Ok(Found::Reduced {
                size,
                recipes: d.parts().iter().map(|p| p.recipe.to_vec()).collect(),
            });
        }
    }
    if let Some(c) = snap.stripes(ino)?.filter(|c| c.is_encoded()) {
        return Ok(Found::Plain {
            size,
            raw: c.stored_bytes(),
        });
    }
    if snap.tier(ino)?.is_some_and(|t| t.evicted) {
        return Ok(Found::Plain { size, raw: 0 });
    }
    let mirrors = snap.chunk(ino, 0)?.map_or(0, |m| m.len() as u64);
    Ok(Found::Plain {
        size,
        raw: size * mirrors,
    })
}

/// Adds what a page found to the tally; directories to `dirs`. False if a recipe did not
/// decode (the file is counted at its size, with no raw bytes).
fn tally_page(t: &mut Tally, e: usize, found: Vec<Found>, dirs: &mut Vec<u64>) -> bool {
    let mut ok = true;
    for f in found {
        match f {
            Found::Dir(d) if dirs.len() < MAX_DIRS => dirs.push(d),
            Found::Dir(_) => ok = false,
            Found::Plain { size, raw } => t.plain(e, size, raw),
            Found::Reduced { size, recipes } => match recipes
                .iter()
                .map(|r| reduce::Recipe::decode(r))
                .collect::<Result<Vec<_>, _>>()
            {
                Ok(parts) => t.reduced(
                    e,
                    size,
                    parts
                        .iter()
                        .flat_map(|r| r.chunks.iter())
                        .map(|c| (SegmentId(c.segment.0), c.index, c.raw_len)),
                ),
                Err(err) => {
                    tracing::warn!(%err, "usage: a recipe does not decode");
                    t.plain(e, size, 0);
                    ok = false;
                }
            },
        }
    }
    ok
}

/// The sizes of up to `PAGE` segments under one snapshot; false if one has no record here.
fn read_sizes(
    ns: &Namespace,
    ids: &[SegmentId],
    into: &mut HashMap<SegmentId, SegmentSizes>,
) -> Result<bool, FsError> {
    let snap = ns.snapshot()?;
    let mut all = true;
    for id in ids {
        match snap.segment_sizes(ns.segment_shard(id), id) {
            Ok(Some((raw, stored, width))) => {
                let on_disk = segment_raw_bytes(width, stored).unwrap_or(stored);
                into.insert(
                    *id,
                    SegmentSizes {
                        raw,
                        stored,
                        on_disk,
                    },
                );
            }
            Ok(None) | Err(_) => all = false,
        }
    }
    Ok(all)
}

/// One pass over every export.
pub async fn pass(ns: &Namespace, exports: &[String]) -> UsageReport {
    let began = Instant::now();
    let mut longest = Duration::ZERO;
    let mut t = Tally::new(exports.len(), MAX_SEGMENTS);
    let mut complete = true;
    for (e, path) in exports.iter().enumerate() {
        let root = match ns.resolve(path.as_bytes()) {
            Ok(i) if i.kind.is_dir() => i.ino,
            _ => {
                complete = false;
                continue;
            }
        };
        let mut dirs = vec![root];
        let mut linked = HashSet::new();
        while let Some(dir) = dirs.pop() {
            let mut cookie = 0;
            loop {
                let step = Instant::now();
                let page = read_page(ns, dir, cookie, &mut linked);
                let (found, next) = match page {
                    Ok((found, next, missed)) => {
                        complete &= !missed;
                        (found, next)
                    }
                    Err(_) => {
                        // The directory went, or its shard is not here.
                        complete = false;
                        (Vec::new(), None)
                    }
                };
                complete &= tally_page(&mut t, e, found, &mut dirs);
                pace(step, &mut longest).await;
                match next {
                    Some(c) => cookie = c,
                    None => break,
                }
            }
        }
    }
    let ids = t.segment_ids();
    let mut sizes = HashMap::with_capacity(ids.len());
    for batch in ids.chunks(PAGE) {
        let step = Instant::now();
        complete &= read_sizes(ns, batch, &mut sizes).unwrap_or(false);
        pace(step, &mut longest).await;
    }
    complete &= !t.overflowed;
    let totals = t.finish(&sizes);
    UsageReport {
        exports: exports
            .iter()
            .zip(totals.exports)
            .map(|(p, usage)| ExportUsage {
                path: p.clone(),
                usage,
            })
            .collect(),
        total: totals.total,
        finished: SystemTime::now(),
        took: began.elapsed(),
        longest_step: longest,
        complete,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meta::namespace::{Command, CreateHow, Options, Time, ROOT_INO};

    /// Two exports over a real namespace: subdirectories are walked, a file with two names
    /// counts once, a file in no export counts nowhere, a mirrored file's raw bytes are a
    /// copy per mirror; and what a step of 256 files costs (printed).
    #[test]
    fn a_pass_walks_each_export_and_counts_each_file_once() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let ns = rt
            .block_on(Namespace::open_with(dir.path(), Options::default()))
            .expect("namespace");
        let run = |cmd: Command| rt.block_on(ns.execute(cmd)).expect("command");
        let make = |parent: u64, name: &str, kind: FileKind| {
            run(Command::Create {
                parent,
                name: name.as_bytes().to_vec(),
                kind,
                mode: 0o755,
                uid: 0,
                gid: 0,
                time: Time::now(),
                how: CreateHow::Guarded,
            })
            .inode
            .expect("inode")
            .ino
        };
        let file = |parent: u64, name: &str, size: u64, mirrors: Vec<u64>| {
            let ino = make(parent, name, FileKind::Regular);
            run(Command::Write {
                ino,
                end_offset: size,
                time: Time::now(),
                writes: 1,
            });
            if !mirrors.is_empty() {
                run(Command::SetMirrors {
                    ino,
                    chunk: 0,
                    mirrors,
                });
            }
            ino
        };
        let a = make(ROOT_INO, "a", FileKind::Directory);
        let sub = make(a, "sub", FileKind::Directory);
        let f1 = file(a, "f1", 1000, vec![1, 2]);
        file(sub, "f2", 500, vec![1, 2]);
        run(Command::Link {
            ino: f1,
            parent: sub,
            name: b"f1-again".to_vec(),
            time: Time::now(),
        });
        let b = make(ROOT_INO, "b", FileKind::Directory);
        for i in 0..600 {
            file(b, &format!("f{i}"), 10, Vec::new());
        }
        let c = make(ROOT_INO, "c", FileKind::Directory);
        file(c, "elsewhere", 5000, vec![1, 2]);

        let r = rt.block_on(pass(&ns, &["/a".to_string(), "/b".to_string()]));
        eprintln!(
            "pass over 604 entries: {:?}, longest step (256 entries) {:?}",
            r.took, r.longest_step
        );
        assert!(r.complete);
        assert_eq!(
            r.exports[0].usage,
            Usage {
                files: 2,
                logical: 1500,
                after_dedup: 1500,
                after_compression: 1500,
                raw: 3000,
            }
        );
        assert_eq!(
            (r.exports[1].usage.files, r.exports[1].usage.logical),
            (600, 6000)
        );
        assert_eq!(r.exports[1].usage.raw, 0, "no mirrors recorded");
        assert_eq!((r.total.files, r.total.logical), (602, 7500));
        // An export that is not there: counted as nothing, and the report says so.
        let r = rt.block_on(pass(&ns, &["/missing".to_string()]));
        assert!(!r.complete);
        assert_eq!(r.exports[0].usage, Usage::default());
    }
}
