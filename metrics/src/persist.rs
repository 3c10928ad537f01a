//! Counters carried across a clean restart. A clean shutdown writes every counter and
//! histogram to a file in the data directory; the next start adds them back and removes the
//! file at once. After a crash there is no file, and counting starts from zero: a true reset,
//! which Prometheus's `rate()` and `increase()` handle. Restoring a total saved some time
//! before the crash instead would make the counter step *back* by what was lost, which
//! Prometheus takes for a reset and turns into a spike of the whole total. So a counter either
//! goes on exactly or restarts at zero, and `counters_since` (written with the totals) says
//! since when the totals run.
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use crate::{Counter, Histogram, OpTable, BUCKETS};

fn counters() -> [(&'static str, &'static Counter); 5] {
    use crate::mds::*;
    [
        ("mds.compounds", &COMPOUNDS),
        ("mds.rpc_received_bytes", &RPC_RECEIVED_BYTES),
        ("mds.rpc_sent_bytes", &RPC_SENT_BYTES),
        ("mds.read_bytes", &READ_BYTES),
        ("mds.write_bytes", &WRITE_BYTES),
    ]
}

fn histograms() -> [(&'static str, &'static Histogram); 2] {
    use crate::mds::*;
    [
        ("mds.log_fsync", &LOG_FSYNC),
        ("mds.checkpoint", &CHECKPOINT),
    ]
}

fn hist_pairs(key: &str, h: &Histogram, out: &mut Vec<(String, u64)>) {
    let (b, sum) = h.snapshot();
    for (i, n) in b.iter().enumerate().filter(|(_, n)| **n != 0) {
        out.push((format!("{key}.b{i}"), *n));
    }
    if sum != 0 {
        out.push((format!("{key}.sum"), sum));
    }
}

fn table_pairs<const N: usize>(key: &str, t: &OpTable<N>, out: &mut Vec<(String, u64)>) {
    for i in 0..N {
        hist_pairs(&format!("{key}.{i}"), t.histogram(i), out);
        let e = t.errors(i).get();
        if e != 0 {
            out.push((format!("{key}.{i}.err"), e));
        }
    }
}

/// Every counter and histogram of the process, as (key, value); zeros left out.
pub fn snapshot() -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for (k, c) in counters() {
        if c.get() != 0 {
            out.push((k.to_string(), c.get()));
        }
    }
    for (k, h) in histograms() {
        hist_pairs(k, h, &mut out);
    }
    table_pairs("mds.op", &crate::mds::OPS, &mut out);
    table_pairs("ds.op", &crate::ds::OPS, &mut out);
    out
}

fn restore_hist(key: &str, h: &Histogram, m: &HashMap<String, u64>) {
    let mut b = [0u64; BUCKETS];
    for (i, v) in b.iter_mut().enumerate() {
        *v = m.get(&format!("{key}.b{i}")).copied().unwrap_or(0);
    }
    h.restore(&b, m.get(&format!("{key}.sum")).copied().unwrap_or(0));
}

fn restore_table<const N: usize>(key: &str, t: &OpTable<N>, m: &HashMap<String, u64>) {
    for i in 0..N {
        restore_hist(&format!("{key}.{i}"), t.histogram(i), m);
        if let Some(e) = m.get(&format!("{key}.{i}.err")) {
            t.errors(i).restore(*e);
        }
    }
}

/// Adds saved totals to the statics. Keys it does not know are left for the caller (a data
/// server's own counters, `counters_since`).
pub fn restore(m: &HashMap<String, u64>) {
    for (k, c) in counters() {
        if let Some(v) = m.get(k) {
            c.restore(*v);
        }
    }
    for (k, h) in histograms() {
        restore_hist(k, h, m);
    }
    restore_table("mds.op", &crate::mds::OPS, m);
    restore_table("ds.op", &crate::ds::OPS, m);
}

/// Writes `pairs` to `path` durably (temporary file, fsync, rename, fsync of the directory).
pub fn save(path: &Path, pairs: &[(String, u64)]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        let mut text = String::from("# cfs counters, written at a clean shutdown\n");
        for (k, v) in pairs {
            text.push_str(&format!("{k} {v}\n"));
        }
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Reads the totals a clean shutdown saved and removes the file, so that a crash from now on
/// restarts the counters at zero. `None` when there is none (first start, or after a crash).
pub fn take(path: &Path) -> std::io::Result<Option<HashMap<String, u64>>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let m = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect();
    std::fs::remove_file(path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(Some(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_totals_come_back_once() {
        let dir = std::env::temp_dir().join(format!("cfs-metrics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("counters");
        let pairs = vec![
            ("mds.op.25.b3".to_string(), 5),
            ("mds.op.25.sum".to_string(), 700_000),
            ("ds.read_bytes".to_string(), 9),
        ];
        save(&path, &pairs).unwrap();
        let m = take(&path).unwrap().unwrap();
        assert_eq!(m.get("ds.read_bytes"), Some(&9));
        assert_eq!(
            take(&path).unwrap(),
            None,
            "taken once: a crash now starts from zero"
        );
        let before = crate::mds::OPS.histogram(25).count();
        restore(&m);
        assert_eq!(crate::mds::OPS.histogram(25).count(), before + 5);
        assert!(snapshot().iter().any(|(k, _)| k == "mds.op.25.b3"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
