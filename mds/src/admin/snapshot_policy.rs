//! What happens to snapshots without anyone typing: scheduled ones are taken at each period's
//! boundary and pruned to the newest `keep`, and any snapshot past its retention is deleted
//! without an object-store tier; with one it is kept, and its unique bytes move to the bucket
//! (`tiering::snap_archive`, `docs/plans/snapshots.md` step 12).
//!
//! Every MDS node runs `run`; only the node that leads shard 0 (where the snapshot registry
//! lives) acts, so a failover moves the work with the registry. Two nodes that both believe
//! they lead for a moment cannot take a period twice: a scheduled snapshot's name is its
//! schedule and its period (`Exists` on the second), and deleting one twice is harmless.

use std::time::Duration;

use meta::namespace::ShardId;

use super::snapshots::{SnapshotError, SnapshotInfo};
use super::Admin;

/// One `[[snapshots.schedule]]`: a snapshot of `path` every `every`, named
/// `{prefix}-{period start, UTC}`, the newest `keep` kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub path: String,
    /// Unique among schedules; the names it takes start with it and a '-'.
    pub prefix: String,
    pub every: Duration,
    pub keep: usize,
}

/// `[snapshots]`: the retention of snapshots taken by hand, and the schedules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotPolicy {
    pub retain: Duration,
    pub schedules: Vec<Schedule>,
}

impl Default for SnapshotPolicy {
    fn default() -> Self {
        SnapshotPolicy {
            retain: Duration::from_secs(super::snapshots::DEFAULT_RETAIN_SECS),
            schedules: Vec::new(),
        }
    }
}

/// The longest pause between two looks: a daily schedule is taken within this of midnight.
const MAX_TICK: Duration = Duration::from_secs(10);

impl Schedule {
    /// The start of the period `now` (seconds since the epoch, UTC) is in: periods are
    /// aligned on the epoch, so an hourly schedule takes :00, a daily one midnight UTC and a
    /// weekly one Thursday midnight (1970-01-01 was a Thursday).
    pub fn period_start(&self, now: i64) -> i64 {
        let p = i64::try_from(self.every.as_secs().max(1)).unwrap_or(i64::MAX);
        now.div_euclid(p) * p
    }

    /// The name of the snapshot of the period starting at `start`.
    pub fn name_at(&self, start: i64) -> String {
        let (date, hms) = utc(start);
        if self.every.as_secs().is_multiple_of(60) {
            format!("{}-{date}_{}", self.prefix, &hms[..4])
        } else {
            format!("{}-{date}_{hms}", self.prefix)
        }
    }

    fn owns(&self, s: &SnapshotInfo) -> bool {
        s.name
            .strip_prefix(&self.prefix)
            .is_some_and(|r| r.starts_with('-'))
    }
}

/// (`YYYY-MM-DD`, `HHMMSS`) of `secs` since the epoch, UTC (Hinnant's `civil_from_days`).
fn utc(secs: i64) -> (String, String) {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        format!("{y:04}-{m:02}-{d:02}"),
        format!("{:02}{:02}{:02}", sod / 3600, sod % 3600 / 60, sod % 60),
    )
}

/// What one pass decided, given the snapshots there are: which to take, which to delete.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// (schedule index, name).
    pub take: Vec<(usize, String)>,
    pub delete: Vec<String>,
    /// Past retention and kept: with a tier, retention moves their unique bytes to the bucket.
    pub kept_for_tier: Vec<String>,
}

/// The pass's decisions at `now`, pure (tested without a server). A scheduled snapshot is
/// taken only for the current period: periods missed while no node led are not made up (a
/// snapshot of now is not one of then).
pub fn plan(policy: &SnapshotPolicy, snaps: &[SnapshotInfo], now: i64, tier: bool) -> Plan {
    let mut out = Plan::default();
    let ready = |s: &&SnapshotInfo| s.state == "ready";
    for (i, sch) in policy.schedules.iter().enumerate() {
        let name = sch.name_at(sch.period_start(now));
        if !snaps.iter().any(|s| s.name == name) {
            out.take.push((i, name));
        }
        let mut mine: Vec<&SnapshotInfo> =
            snaps.iter().filter(ready).filter(|s| sch.owns(s)).collect();
        mine.sort_by_key(|s| (s.created, s.id));
        // The one about to be taken counts: `keep` after this pass, not `keep + 1`.
        let will_have = mine.len() + usize::from(out.take.last().is_some_and(|(j, _)| *j == i));
        let extra = will_have.saturating_sub(sch.keep).min(mine.len());
        out.delete
            .extend(mine[..extra].iter().map(|s| s.name.clone()));
    }
    for s in snaps.iter().filter(ready) {
        let past = meta_core::snap::past_retention(s.created, s.retain_secs, now);
        let scheduled = policy.schedules.iter().any(|sch| sch.owns(s));
        if past && !scheduled && !out.delete.contains(&s.name) {
            if tier {
                out.kept_for_tier.push(s.name.clone());
            } else {
                out.delete.push(s.name.clone());
            }
        }
    }
    out
}

/// Runs `policy` until the process ends (see the module comment).
pub async fn run(admin: Admin, policy: SnapshotPolicy) {
    let tick = (policy.schedules.iter())
        .map(|s| s.every / 4)
        .fold(MAX_TICK, Duration::min)
        .max(Duration::from_millis(250));
    let mut told_tier = false;
    loop {
        tokio::time::sleep(tick).await;
        let ns = &admin.mds.ns;
        if ns.leader_of(ShardId(0)) != Some(ns.node_id()) {
            continue;
        }
        let snaps = match admin.snapshot_list().await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("snapshot policy: cannot list snapshots yet: {e}");
                continue;
            }
        };
        let now = meta::namespace::Time::now().secs;
        let p = plan(&policy, &snaps, now, admin.mds.tier.is_some());
        for (i, name) in p.take {
            let sch = &policy.schedules[i];
            // Kept one period past the time it leaves the schedule's newest `keep`, so a
            // schedule removed from the config does not keep its snapshots forever.
            let retain = sch
                .every
                .saturating_mul(u32::try_from(sch.keep + 1).unwrap_or(u32::MAX));
            match admin
                .snapshot_create(&sch.path, &name, Some(retain.as_secs()))
                .await
            {
                Ok(id) => {
                    tracing::info!(snap = id, "scheduled snapshot {name} of {} taken", sch.path)
                }
                Err(SnapshotError::Exists(_)) => {}
                Err(e) => tracing::warn!("scheduled snapshot {name} of {}: {e}", sch.path),
            }
        }
        for name in p.delete {
            match admin.snapshot_delete(&name).await {
                Ok(id) => {
                    tracing::info!(snap = id, "snapshot {name} deleted (schedule or retention)")
                }
                Err(SnapshotError::NoSuchSnapshot(_)) => {}
                Err(e) => tracing::warn!("deleting snapshot {name}: {e}"),
            }
        }
        if !p.kept_for_tier.is_empty() && !told_tier {
            told_tier = true;
            tracing::info!(
                "snapshots past their retention are kept, their unique bytes in the object \
                 store (first: {})",
                p.kept_for_tier[0]
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(id: u64, name: &str, created: i64, retain_secs: u64) -> SnapshotInfo {
        SnapshotInfo {
            id,
            name: name.into(),
            path: Some("/p".into()),
            root: 2,
            created,
            retain_secs,
            state: "ready",
            location: "flash",
        }
    }

    fn daily(keep: usize) -> Schedule {
        Schedule {
            path: "/p".into(),
            prefix: "daily".into(),
            every: Duration::from_secs(86_400),
            keep,
        }
    }

    #[test]
    fn periods_and_names_are_utc_and_aligned() {
        let d = daily(3);
        // 2026-12-01 05:06:47 UTC.
        let now = 1_796_101_607;
        assert_eq!(d.period_start(now), 1_796_083_200);
        assert_eq!(d.name_at(d.period_start(now)), "daily-2026-12-01_0000");
        let s = Schedule {
            every: Duration::from_secs(5),
            prefix: "t".into(),
            ..daily(1)
        };
        assert_eq!(s.name_at(s.period_start(now)), "t-2026-12-01_050645");
    }

    #[test]
    fn a_schedule_takes_its_period_once_and_keeps_the_newest() {
        let policy = SnapshotPolicy {
            retain: Duration::from_secs(60),
            schedules: vec![daily(2)],
        };
        let day = 86_400;
        let t0 = 1_796_083_200; // a midnight
                                // Three days' snapshots, and one of another schedule's prefix family ("dailyx").
        let snaps = vec![
            snap(1, "daily-2026-11-28_0000", t0 - 3 * day, 3 * day as u64),
            snap(2, "daily-2026-11-29_0000", t0 - 2 * day, 3 * day as u64),
            snap(3, "daily-2026-11-30_0000", t0 - day, 3 * day as u64),
            snap(4, "dailyx-1", t0 - day, u64::MAX),
        ];
        let p = plan(&policy, &snaps, t0 + 5, false);
        assert_eq!(p.take, vec![(0, "daily-2026-12-01_0000".to_string())]);
        // keep 2 after taking today's: the two oldest go.
        assert_eq!(
            p.delete,
            vec!["daily-2026-11-28_0000", "daily-2026-11-29_0000"]
        );
        // Taken already: nothing to take, and only the oldest beyond 2 goes.
        let mut with_today = snaps.clone();
        with_today.push(snap(5, "daily-2026-12-01_0000", t0 + 1, 3 * day as u64));
        let p = plan(&policy, &with_today, t0 + 9, false);
        assert!(p.take.is_empty());
        assert_eq!(
            p.delete,
            vec!["daily-2026-11-28_0000", "daily-2026-11-29_0000"]
        );
        // A snapshot being deleted is not counted, nor deleted again.
        with_today[0].state = "deleting";
        with_today[1].state = "deleting";
        assert_eq!(plan(&policy, &with_today, t0 + 9, false), Plan::default());
    }

    #[test]
    fn retention_deletes_without_a_tier_and_keeps_with_one() {
        let policy = SnapshotPolicy::default();
        let snaps = vec![snap(1, "old", 1000, 100), snap(2, "young", 1000, 10_000)];
        let p = plan(&policy, &snaps, 1101, false);
        assert_eq!(p.delete, vec!["old"]);
        let p = plan(&policy, &snaps, 1100, false);
        assert!(p.delete.is_empty(), "at exactly its retention it stays");
        let p = plan(&policy, &snaps, 1101, true);
        assert!(p.delete.is_empty());
        assert_eq!(p.kept_for_tier, vec!["old"]);
    }
}
