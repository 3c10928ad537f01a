//! `[snapshots]` in the config file: how long a snapshot taken by hand is kept, and the
//! schedules (`mds::admin::snapshot_policy` carries them out on the node leading shard 0).
//!
//! ```toml
//! [snapshots]
//! retain_days = 7                 # snapshots taken by hand (default 7)
//! [[snapshots.schedule]]
//! path = "/projects"
//! every = "daily"                 # hourly, daily, weekly, or "90s", "15m", "6h", "2d"
//! keep = 7                        # the newest 7 stay
//! name = "nightly"                # names: nightly-2026-12-01_0000 (default: `every`)
//! ```
use std::time::Duration;

use mds::admin::{Schedule, SnapshotPolicy};
use serde::Deserialize;

/// What is wrong with `[snapshots]` (`ConfigError::Snapshots` says where).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SnapshotConfigError(pub String);

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct SnapshotsFileConfig {
    pub retain_days: Option<u64>,
    #[serde(default)]
    pub schedule: Vec<ScheduleFileConfig>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct ScheduleFileConfig {
    pub path: String,
    pub every: String,
    pub keep: usize,
    pub name: Option<String>,
}

/// Most schedules: each costs a list of the registry per pass.
const MAX_SCHEDULES: usize = 64;
/// Most snapshots one schedule keeps (every kept snapshot costs metadata, see the plan).
const MAX_KEEP: usize = 1000;

/// `every` as a period: a word, or a number with a unit (s, m, h, d).
fn period(every: &str) -> Option<Duration> {
    let secs = match every {
        "hourly" => 3600,
        "daily" => 86_400,
        "weekly" => 7 * 86_400,
        _ => {
            let (n, unit) = every.split_at(every.len().checked_sub(1)?);
            let n: u64 = n.parse().ok()?;
            let mult = match unit {
                "s" => 1,
                "m" => 60,
                "h" => 3600,
                "d" => 86_400,
                _ => return None,
            };
            n.checked_mul(mult)?
        }
    };
    (secs > 0).then(|| Duration::from_secs(secs))
}

/// The checked policy.
pub fn policy(c: &SnapshotsFileConfig) -> Result<SnapshotPolicy, SnapshotConfigError> {
    let bad = |s: String| Err(SnapshotConfigError(s));
    let retain_days = c.retain_days.unwrap_or(7);
    if retain_days == 0 {
        return bad("retain_days = 0 would delete every snapshot at once: use 1 or more".into());
    }
    if c.schedule.len() > MAX_SCHEDULES {
        return bad(format!("at most {MAX_SCHEDULES} [[snapshots.schedule]]"));
    }
    let mut schedules: Vec<Schedule> = Vec::new();
    for s in &c.schedule {
        let Some(every) = period(&s.every) else {
            return bad(format!(
                "schedule of {}: every = {:?}: use hourly, daily, weekly, or a number with s, m, h or d (\"15m\")",
                s.path, s.every
            ));
        };
        if !s.path.starts_with('/') {
            return bad(format!(
                "schedule path {:?}: give the path inside the file system, e.g. \"/projects\"",
                s.path
            ));
        }
        if s.keep == 0 || s.keep > MAX_KEEP {
            return bad(format!(
                "schedule of {}: keep = {}: 1 to {MAX_KEEP}",
                s.path, s.keep
            ));
        }
        let prefix = s.name.clone().unwrap_or_else(|| s.every.clone());
        if prefix.is_empty() || prefix.len() > 200 || prefix.contains(['/', '\0']) {
            return bad(format!(
                "schedule of {}: name {prefix:?}: 1 to 200 bytes, no '/'",
                s.path
            ));
        }
        if schedules.iter().any(|o| o.prefix == prefix) {
            return bad(format!(
                "two schedules name their snapshots {prefix:?}: give one a `name = ...`"
            ));
        }
        schedules.push(Schedule {
            path: s.path.clone(),
            prefix,
            every,
            keep: s.keep,
        });
    }
    Ok(SnapshotPolicy {
        retain: Duration::from_secs(retain_days.saturating_mul(86_400)),
        schedules,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(every: &str, keep: usize, name: Option<&str>) -> SnapshotsFileConfig {
        SnapshotsFileConfig {
            retain_days: None,
            schedule: vec![ScheduleFileConfig {
                path: "/p".into(),
                every: every.into(),
                keep,
                name: name.map(str::to_string),
            }],
        }
    }

    #[test]
    fn periods_names_and_refusals() {
        let p = policy(&one("daily", 7, None)).unwrap();
        assert_eq!(p.retain, Duration::from_secs(7 * 86_400));
        assert_eq!(p.schedules[0].every, Duration::from_secs(86_400));
        assert_eq!(p.schedules[0].prefix, "daily");
        assert_eq!(
            policy(&one("90s", 1, Some("q"))).unwrap().schedules[0]
                .every
                .as_secs(),
            90
        );
        assert_eq!(
            policy(&one("6h", 1, None)).unwrap().schedules[0]
                .every
                .as_secs(),
            21_600
        );
        for (every, keep, name) in [
            ("often", 1, None),
            ("0s", 1, None),
            ("5", 1, None),
            ("daily", 0, None),
            ("daily", 1001, None),
            ("daily", 1, Some("a/b")),
        ] {
            assert!(
                policy(&one(every, keep, name)).is_err(),
                "{every} {keep} {name:?}"
            );
        }
        let mut two = one("daily", 1, None);
        two.schedule.push(two.schedule[0].clone());
        assert!(policy(&two).unwrap_err().0.contains("give one a `name"));
        let zero = SnapshotsFileConfig {
            retain_days: Some(0),
            schedule: vec![],
        };
        assert!(policy(&zero).is_err());
    }
}
