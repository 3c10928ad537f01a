//! What `cfs admin snapshot` prints.

use serde_json::Value;

/// `cfs admin snapshot list` as a table (`GET /api/v1/snapshots`).
pub fn snapshot_table(v: &Value) -> String {
    let rows = v["snapshots"].as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        return "no snapshots (cfs admin snapshot create PATH --name NAME takes one)\n".into();
    }
    // Not every image counted (too many, a copy that did not answer): at least these.
    let at_least = if v["bytes_exact"].as_bool() == Some(false) {
        "≥"
    } else {
        ""
    };
    let bytes = |r: &Value, k: &str| {
        format!(
            "{at_least}{}",
            crate::admin::human(r[k].as_u64().unwrap_or(0))
        )
    };
    let mut out = format!(
        "{:>5}  {:<24} {:<10} {:<20} {:>10} {:>10} {:<13} {}\n",
        "ID", "NAME", "STATE", "TAKEN", "UNIQUE", "SHARED", "BYTES IN", "SHOWN AT"
    );
    for r in rows {
        let name = r["name"].as_str().unwrap_or("?");
        let shown = match r["path"].as_str() {
            Some(p) => format!("{}/.snapshot/{name}", p.trim_end_matches('/')),
            None => format!("(directory {} not found)", r["root"]),
        };
        out.push_str(&format!(
            "{:>5}  {:<24} {:<10} {:<20} {:>10} {:>10} {:<13} {}\n",
            r["id"],
            name,
            r["state"].as_str().unwrap_or("?"),
            crate::timefmt::local(r["created"].as_i64().unwrap_or(0)),
            bytes(&r, "unique_bytes"),
            bytes(&r, "shared_bytes"),
            r["location"].as_str().unwrap_or("?"),
            shown
        ));
    }
    out
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
    fn names_become_one_path_segment() {
        assert_eq!(path_segment("a b/%é"), "a%20b%2F%25%C3%A9");
        assert_eq!(path_segment("weekly-1.x_~"), "weekly-1.x_~");
    }
}
