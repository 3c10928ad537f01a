//! pNFS evidence for `cfs-cluster`: the guest's mountstats (what the client says it did) joined
//! with the cluster's own counters before and after the `pnfs` scenario (where the bytes went).
//! Against cfs-cluster the `pnfs` scenario fails unless both say the data went through layouts.

use crate::server::ClusterStatus;
use serde::Serialize;
use std::collections::BTreeMap;

/// MDS read+write bytes allowed during the scenario, as a fraction of the file size.
pub const MDS_MAX_FRACTION: f64 = 0.01;
/// Write mirrors every layout carries (each byte lands on this many data servers).
pub const MIRRORS: u64 = 2;

#[derive(Clone, Debug, Default, Serialize)]
pub struct DsDelta {
    pub id: String,
    pub state: String,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub commit_ops: u64,
    pub refused_ops: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct PnfsEvidence {
    /// bytes the scenario wrote once and read back once
    pub file_bytes: u64,
    /// `pnfs=` of the guest's mountstats
    pub pnfs: Option<String>,
    /// client per-op counts (NFSv4 section of mountstats)
    pub layoutget: u64,
    pub getdeviceinfo: u64,
    pub layoutreturn: u64,
    pub layoutcommit: u64,
    /// server side, deltas over the scenario
    pub layouts_granted: u64,
    pub mds_read_bytes: u64,
    pub mds_write_bytes: u64,
    pub mds_read_ops: u64,
    pub mds_write_ops: u64,
    pub ds_read_bytes: u64,
    pub ds_write_bytes: u64,
    pub ds_commit_ops: u64,
    pub ds_refused_ops: u64,
    pub data_servers: Vec<DsDelta>,
    /// the thresholds applied
    pub mds_max_bytes: u64,
    pub ds_write_min_bytes: u64,
    pub ds_read_min_bytes: u64,
    /// one line per unmet condition (empty = the evidence holds)
    pub failures: Vec<String>,
}

pub fn evaluate(
    file_bytes: u64,
    pnfs: Option<&str>,
    mountstats: &BTreeMap<String, u64>,
    before: &ClusterStatus,
    after: &ClusterStatus,
) -> PnfsEvidence {
    let op = |k: &str| mountstats.get(k).copied().unwrap_or(0);
    let mut e = PnfsEvidence {
        file_bytes,
        pnfs: pnfs.map(str::to_owned),
        layoutget: op("LAYOUTGET"),
        getdeviceinfo: op("GETDEVICEINFO"),
        layoutreturn: op("LAYOUTRETURN"),
        layoutcommit: op("LAYOUTCOMMIT"),
        layouts_granted: after
            .mds
            .layouts_granted
            .saturating_sub(before.mds.layouts_granted),
        mds_read_bytes: after.mds.read_bytes.saturating_sub(before.mds.read_bytes),
        mds_write_bytes: after.mds.write_bytes.saturating_sub(before.mds.write_bytes),
        mds_read_ops: after.mds.read_ops.saturating_sub(before.mds.read_ops),
        mds_write_ops: after.mds.write_ops.saturating_sub(before.mds.write_ops),
        mds_max_bytes: (file_bytes as f64 * MDS_MAX_FRACTION) as u64,
        ds_write_min_bytes: MIRRORS * file_bytes,
        // the scenario drops the page cache before reading back, so every byte is read again
        ds_read_min_bytes: file_bytes,
        ..PnfsEvidence::default()
    };
    for d in &after.data_servers {
        let b = before.data_servers.iter().find(|x| x.id == d.id);
        let sub = |now: u64, then: Option<u64>| now.saturating_sub(then.unwrap_or(0));
        e.data_servers.push(DsDelta {
            id: d.id.clone(),
            state: d.state.clone(),
            read_bytes: sub(d.read_bytes, b.map(|b| b.read_bytes)),
            write_bytes: sub(d.write_bytes, b.map(|b| b.write_bytes)),
            commit_ops: sub(d.commit_ops, b.map(|b| b.commit_ops)),
            refused_ops: sub(d.refused_ops, b.map(|b| b.refused_ops)),
        });
    }
    e.data_servers.sort_by(|a, b| a.id.cmp(&b.id));
    e.ds_read_bytes = e.data_servers.iter().map(|d| d.read_bytes).sum();
    e.ds_write_bytes = e.data_servers.iter().map(|d| d.write_bytes).sum();
    e.ds_commit_ops = e.data_servers.iter().map(|d| d.commit_ops).sum();
    e.ds_refused_ops = e.data_servers.iter().map(|d| d.refused_ops).sum();

    let mut failures = Vec::new();
    let mut fail = |m: String| failures.push(format!("FAIL: pnfs evidence: {m}"));
    if pnfs != Some("LAYOUT_FLEX_FILES") {
        fail(format!(
            "mountstats pnfs: expected 'LAYOUT_FLEX_FILES', got '{}'",
            pnfs.unwrap_or("(none)")
        ));
    }
    // Linux sends its LAYOUTGET inside the OPEN compound (PNFS_LAYOUTGET_ON_OPEN, which the
    // flexfiles driver sets), and mountstats counts that compound as OPEN; a separate LAYOUTGET
    // only appears when an open's layout did not cover the I/O. So a layout was obtained when
    // either the client counted a LAYOUTGET or the MDS granted one during the scenario.
    let layouts = e.layoutget + e.layouts_granted;
    if layouts == 0 {
        fail(
            "no layout obtained: LAYOUTGET = 0 in mountstats and 0 layouts granted by the MDS"
                .into(),
        );
    }
    if e.getdeviceinfo == 0 {
        fail("GETDEVICEINFO: expected > 0, got 0".into());
    }
    let mds = e.mds_read_bytes + e.mds_write_bytes;
    if mds > e.mds_max_bytes {
        fail(format!(
            "MDS read+write bytes: expected <= {} (1% of {}), got {mds} (read {}, write {})",
            e.mds_max_bytes, file_bytes, e.mds_read_bytes, e.mds_write_bytes
        ));
    }
    if e.ds_write_bytes < e.ds_write_min_bytes {
        fail(format!(
            "DS write bytes: expected >= {} ({MIRRORS} mirrors x {file_bytes}), got {} ({})",
            e.ds_write_min_bytes,
            e.ds_write_bytes,
            per_ds(&e, |d| d.write_bytes)
        ));
    }
    if e.ds_read_bytes < e.ds_read_min_bytes {
        fail(format!(
            "DS read bytes: expected >= {} (the file, read after drop_caches), got {} ({})",
            e.ds_read_min_bytes,
            e.ds_read_bytes,
            per_ds(&e, |d| d.read_bytes)
        ));
    }
    e.failures = failures;
    e
}

fn per_ds(e: &PnfsEvidence, f: impl Fn(&DsDelta) -> u64) -> String {
    e.data_servers
        .iter()
        .map(|d| format!("{}={}", &d.id[..d.id.len().min(6)], f(d)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / 1048576.0)
}

impl PnfsEvidence {
    /// One line for the terminal (progress line and table).
    pub fn summary(&self) -> String {
        format!(
            "pnfs={} LAYOUTGET={} layouts_granted={} GETDEVICEINFO={} file={} MDS r+w={} B (max {} B) DS write={} (min {}) DS read={} (min {}) DS commits={} refused={}{}",
            self.pnfs.as_deref().unwrap_or("?"),
            self.layoutget,
            self.layouts_granted,
            self.getdeviceinfo,
            mib(self.file_bytes),
            self.mds_read_bytes + self.mds_write_bytes,
            self.mds_max_bytes,
            mib(self.ds_write_bytes),
            mib(self.ds_write_min_bytes),
            mib(self.ds_read_bytes),
            mib(self.ds_read_min_bytes),
            self.ds_commit_ops,
            self.ds_refused_ops,
            if self.failures.is_empty() {
                " -> holds"
            } else {
                " -> FAILS"
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::{DsCounters, MdsCounters};

    fn status(mds_rw: u64, granted: u64, ds: &[(&str, u64, u64)]) -> ClusterStatus {
        ClusterStatus {
            mds: MdsCounters {
                read_bytes: mds_rw,
                write_bytes: 0,
                layouts_granted: granted,
                ..MdsCounters::default()
            },
            data_servers: ds
                .iter()
                .map(|(id, r, w)| DsCounters {
                    id: (*id).into(),
                    state: "up".into(),
                    read_bytes: *r,
                    write_bytes: *w,
                    ..DsCounters::default()
                })
                .collect(),
        }
    }

    fn ops(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(k, v)| ((*k).into(), *v)).collect()
    }

    const M: u64 = 1 << 20;

    #[test]
    fn layouts_through_two_mirrors_hold() {
        let before = status(100, 1, &[("a", 5, 5), ("b", 0, 0), ("c", 0, 0)]);
        let after = status(
            200,
            4,
            &[("a", 5 + 16 * M, 5 + 16 * M), ("b", 0, 16 * M), ("c", 0, 0)],
        );
        let e = evaluate(
            16 * M,
            Some("LAYOUT_FLEX_FILES"),
            &ops(&[("GETDEVICEINFO", 3), ("OPEN", 2)]),
            &before,
            &after,
        );
        assert!(e.failures.is_empty(), "{:?}", e.failures);
        assert_eq!(e.ds_write_bytes, 32 * M);
        assert_eq!(e.ds_read_bytes, 16 * M);
        assert_eq!(e.mds_read_bytes, 100);
        assert_eq!(e.layouts_granted, 3);
    }

    #[test]
    fn io_through_the_mds_fails() {
        let before = status(0, 0, &[("a", 0, 0), ("b", 0, 0)]);
        let after = status(32 * M, 0, &[("a", 0, 0), ("b", 0, 0)]);
        let e = evaluate(
            16 * M,
            Some("not configured"),
            &ops(&[("READ", 16), ("WRITE", 16)]),
            &before,
            &after,
        );
        let all = e.failures.join("\n");
        for what in [
            "pnfs: expected",
            "no layout obtained",
            "GETDEVICEINFO",
            "MDS read+write",
            "DS write bytes",
            "DS read bytes",
        ] {
            assert!(all.contains(what), "{what} missing in {all}");
        }
    }

    #[test]
    fn one_mirror_only_fails() {
        let before = status(0, 0, &[("a", 0, 0), ("b", 0, 0)]);
        let after = status(0, 2, &[("a", 16 * M, 16 * M), ("b", 0, 0)]);
        let e = evaluate(
            16 * M,
            Some("LAYOUT_FLEX_FILES"),
            &ops(&[("GETDEVICEINFO", 1)]),
            &before,
            &after,
        );
        assert_eq!(e.failures.len(), 1, "{:?}", e.failures);
        assert!(e.failures[0].contains("DS write bytes"));
    }
}
