//! What `cfs admin snapshot` prints.

use serde_json::Value;

/// `cfs admin snapshot list` as a table (`GET /api/v1/snapshots`).
pub fn snapshot_table(v: &Value) -> String {
    let rows = v["snapshots"].as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        return "no snapshots (cfs admin snapshot create PATH --name NAME takes one)\n".into();
    }
    let mut out = format!(
        "{:>5}  {:<24} {:<10} {:<20} {}\n",
        "ID", "NAME", "STATE", "TAKEN (UTC)", "SHOWN AT"
    );
    for r in rows {
        let name = r["name"].as_str().unwrap_or("?");
        let shown = match r["path"].as_str() {
            Some(p) => format!("{}/.snapshot/{name}", p.trim_end_matches('/')),
            None => format!("(directory {} not found)", r["root"]),
        };
        out.push_str(&format!(
            "{:>5}  {:<24} {:<10} {:<20} {}\n",
            r["id"],
            name,
            r["state"].as_str().unwrap_or("?"),
            utc(r["created"].as_i64().unwrap_or(0)),
            shown
        ));
    }
    out
}

/// Seconds since the epoch as `YYYY-MM-DD HH:MM:SS` (UTC), without a date crate: the civil
/// calendar from days (Howard Hinnant's `civil_from_days`).
fn utc(secs: i64) -> String {
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
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// `name` as one URL path segment: unreserved bytes as they are, every other byte %XX (a
/// snapshot name may hold spaces, '%', '?' or non-ASCII).
pub fn path_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_segments() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_795_939_200), "2026-11-29 08:00:00");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(path_segment("a b/%é"), "a%20b%2F%25%C3%A9");
        assert_eq!(path_segment("weekly-1.x_~"), "weekly-1.x_~");
    }
}
