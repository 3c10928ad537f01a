//! Crash and delay points for tests. A crash point named NAME aborts the process there, as a
//! kill -9 at that moment would (nothing flushed, nothing answered), when it is armed:
//! `CFS_FAILPOINT=NAME`, or a line NAME in the file `CFS_FAILPOINT_FILE` names (read at every
//! point, so a test can arm and disarm it while the process runs). A delay point NAME holds
//! the thread that reaches it for MS milliseconds when armed as `NAME=MS` (a slow disk, say).
//! Without either variable a point costs one atomic load.

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

/// The lines armed now (the variable's value, or the file's lines), if any.
fn armed_lines() -> Option<Vec<String>> {
    match armed() {
        None => None,
        Some(Armed::Name(n)) => Some(vec![n.clone()]),
        Some(Armed::File(p)) => std::fs::read_to_string(p)
            .ok()
            .map(|s| s.lines().map(|l| l.trim().to_string()).collect()),
    }
}

/// Aborts the process if the crash point `name` is armed.
pub fn hit(name: &str) {
    let fire = armed_lines().is_some_and(|lines| lines.iter().any(|l| l == name));
    if fire {
        eprintln!("cfs: failpoint {name}: aborting");
        std::process::abort();
    }
}

/// Holds the calling thread for as long as the delay point `name` is armed for (`NAME=MS`).
/// For points on dedicated threads only (a tokio worker must not sleep).
pub fn delay(name: &str) {
    if let Some(ms) = armed_lines().and_then(|lines| delay_of(&lines, name)) {
        std::thread::sleep(std::time::Duration::from_millis(ms.min(60_000)));
    }
}

/// The milliseconds `lines` arm delay point `name` for, if any.
fn delay_of(lines: &[String], name: &str) -> Option<u64> {
    lines
        .iter()
        .find_map(|l| {
            let (n, ms) = l.split_once('=')?;
            (n.trim() == name).then(|| ms.trim().parse::<u64>().ok())?
        })
        .filter(|ms| *ms > 0)
}

#[cfg(test)]
mod tests {
    use super::delay_of;

    #[test]
    fn a_delay_line_is_read_as_name_equals_milliseconds() {
        let lines = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(delay_of(&lines(&["log-sync=150"]), "log-sync"), Some(150));
        assert_eq!(
            delay_of(&lines(&["x", "log-sync = 7"]), "log-sync"),
            Some(7)
        );
        assert_eq!(delay_of(&lines(&["log-sync"]), "log-sync"), None);
        assert_eq!(delay_of(&lines(&["other=5"]), "log-sync"), None);
        assert_eq!(delay_of(&lines(&["log-sync=x"]), "log-sync"), None);
        assert_eq!(delay_of(&lines(&["log-sync=0"]), "log-sync"), None);
    }
}
