//! Crash points for tests. A point named NAME aborts the process there, as a kill -9 at that
//! moment would (nothing flushed, nothing answered), when it is armed: `CFS_FAILPOINT=NAME`,
//! or a line NAME in the file `CFS_FAILPOINT_FILE` names (read at every point, so a test can
//! arm it once its setup is done). Without either variable a point costs one atomic load.

use std::sync::OnceLock;

enum Armed {
    Name(String),
    File(std::path::PathBuf),
}

static ARMED: OnceLock<Option<Armed>> = OnceLock::new();

fn armed() -> &'static Option<Armed> {
    ARMED.get_or_init(|| {
        if let Ok(v) = std::env::var("CFS_FAILPOINT") {
            return Some(Armed::Name(v));
        }
        std::env::var_os("CFS_FAILPOINT_FILE").map(|p| Armed::File(p.into()))
    })
}

/// Aborts the process if the crash point `name` is armed.
pub fn hit(name: &str) {
    let fire = match armed() {
        None => false,
        Some(Armed::Name(n)) => n == name,
        Some(Armed::File(p)) => std::fs::read_to_string(p)
            .map(|s| s.lines().any(|l| l.trim() == name))
            .unwrap_or(false),
    };
    if fire {
        eprintln!("cfs: failpoint {name}: aborting");
        std::process::abort();
    }
}
