//! What a failed case leaves behind of the servers' logs.
//!
//! A server's state directory, logs included, is removed when the run ends (unless
//! `CFS_CONFORMANCE_KEEP=1`), and a CI run's report is all anyone gets to see of it. So when a
//! cfs case fails, the lines the servers logged during that case go into the report, and every
//! log file is copied to `$CACHE/failed-logs/<case>/`, the newest [`KEEP_CASES`] cases kept.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Failed cases whose log copies are kept; older copies are removed.
const KEEP_CASES: usize = 12;
/// At most this much of each log file's end is copied.
const COPY_BYTES: u64 = 4 << 20;
/// At most this much of what a log gained during the case is read for the report.
const READ_BYTES: u64 = 256 << 10;
/// The report shows this many of the lines logged during the case (the last ones).
pub const REPORT_LINES: usize = 24;
const LINE_CHARS: usize = 260;

/// Each log file's length when a case began.
#[derive(Debug, Default)]
pub struct Marks(BTreeMap<PathBuf, u64>);

/// The `*.log` files in a server's state directory (two levels: the cluster's are in `cluster/`).
fn logs(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![(dir.to_path_buf(), 0)];
    while let Some((d, depth)) = dirs.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() && depth < 2 => dirs.push((p, depth + 1)),
                Ok(t) if t.is_file() && p.extension().is_some_and(|x| x == "log") => out.push(p),
                _ => {}
            }
        }
    }
    out.sort();
    out
}

pub fn mark(dir: &Path) -> Marks {
    Marks(
        logs(dir)
            .into_iter()
            .filter_map(|p| std::fs::metadata(&p).ok().map(|m| (p, m.len())))
            .collect(),
    )
}

/// The lines the servers logged since `marks` (the last [`REPORT_LINES`]), each led by its
/// file's name; a log file that appeared during the case is read from its start.
pub fn since(dir: &Path, marks: &Marks) -> Vec<String> {
    let mut lines = Vec::new();
    for p in logs(dir) {
        let from = marks.0.get(&p).copied().unwrap_or(0);
        let Ok(mut f) = std::fs::File::open(&p) else {
            continue;
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len <= from {
            continue;
        }
        let start = from.max(len.saturating_sub(READ_BYTES));
        let mut buf = Vec::new();
        if f.seek(SeekFrom::Start(start)).is_err() || f.read_to_end(&mut buf).is_err() {
            continue;
        }
        let name = p.strip_prefix(dir).unwrap_or(&p).display().to_string();
        for l in String::from_utf8_lossy(&buf).lines() {
            if l.trim().is_empty() {
                continue;
            }
            // tracing's lines start with an RFC 3339 time: sorting by it merges the files
            let l: String = l.chars().take(LINE_CHARS).collect();
            lines.push((l.clone(), format!("{name}: {l}")));
        }
    }
    lines.sort_by(|a, b| a.0.cmp(&b.0));
    let skip = lines.len().saturating_sub(REPORT_LINES);
    lines.into_iter().skip(skip).map(|(_, l)| l).collect()
}

/// Copies the state directory's logs (each one's last [`COPY_BYTES`]) to
/// `$CACHE/failed-logs/<case>/` and removes all but the newest [`KEEP_CASES`] such copies.
pub fn save(dir: &Path, case: &str) -> Option<PathBuf> {
    let root = crate::paths::cache_dir().join("failed-logs");
    let to = root.join(case);
    std::fs::create_dir_all(&to).ok()?;
    for p in logs(dir) {
        let rel = p
            .strip_prefix(dir)
            .unwrap_or(&p)
            .to_string_lossy()
            .replace('/', "_");
        let Ok(mut f) = std::fs::File::open(&p) else {
            continue;
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let mut buf = Vec::new();
        if f.seek(SeekFrom::Start(len.saturating_sub(COPY_BYTES)))
            .is_ok()
            && f.read_to_end(&mut buf).is_ok()
        {
            let _ = std::fs::write(to.join(rel), buf);
        }
    }
    prune(&root);
    Some(to)
}

fn prune(root: &Path) {
    let Ok(rd) = std::fs::read_dir(root) else {
        return;
    };
    let mut cases: Vec<(std::time::SystemTime, PathBuf)> = rd
        .flatten()
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    cases.sort();
    let extra = cases.len().saturating_sub(KEEP_CASES);
    for (_, p) in cases.into_iter().take(extra) {
        let _ = std::fs::remove_dir_all(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_reads_what_each_log_gained_merged_by_time() {
        let d = std::env::temp_dir().join(format!("cfs-failure-logs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("cluster")).unwrap();
        std::fs::write(d.join("cluster/mds.log"), "2026-01-01T00:00:01Z old\n").unwrap();
        std::fs::write(d.join("cluster/ds1.log"), "").unwrap();
        let m = mark(&d);
        let add = |p: &str, s: &str| {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(d.join(p))
                .unwrap();
            f.write_all(s.as_bytes()).unwrap();
        };
        add("cluster/mds.log", "2026-01-01T00:00:03Z mds new\n");
        add("cluster/ds1.log", "2026-01-01T00:00:02Z ds1 new\n");
        std::fs::write(
            d.join("cluster/ds1.restart.log"),
            "2026-01-01T00:00:04Z again\n",
        )
        .unwrap();
        std::fs::write(d.join("cluster/notes.txt"), "not a log\n").unwrap();
        let got = since(&d, &m);
        assert_eq!(
            got,
            vec![
                "cluster/ds1.log: 2026-01-01T00:00:02Z ds1 new",
                "cluster/mds.log: 2026-01-01T00:00:03Z mds new",
                "cluster/ds1.restart.log: 2026-01-01T00:00:04Z again",
            ]
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
