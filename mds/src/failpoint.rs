//! Crash points for tests: `CFS_FAILPOINT=NAME` (any node) or `CFS_FAILPOINT=NODE:NAME` makes
//! the process abort at the point named NAME, as a kill -9 there would: nothing is flushed,
//! nothing answered. Read once; without the variable every point costs one atomic load.

use std::sync::OnceLock;

static POINT: OnceLock<Option<(Option<u64>, String)>> = OnceLock::new();

fn point() -> &'static Option<(Option<u64>, String)> {
    POINT.get_or_init(|| {
        let v = std::env::var("CFS_FAILPOINT").ok()?;
        match v.split_once(':') {
            Some((n, name)) => Some((n.parse().ok(), name.to_string())),
            None => Some((None, v)),
        }
    })
}

/// Aborts the process if the crash point `name` is armed for node `node`.
pub fn hit(node: u64, name: &str) {
    if let Some((at, armed)) = point() {
        if armed == name && at.is_none_or(|n| n == node) {
            eprintln!("cfs: failpoint {name} on node {node}: aborting");
            std::process::abort();
        }
    }
}
