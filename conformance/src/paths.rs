//! Where things live: the sources shipped in the repository (scripts, scenarios) and the cache
//! outside it (kernels, initramfs, apt lists, server state, reports of guest runs).

use std::path::PathBuf;

/// The conformance/ directory of the checkout; CFS_CONFORMANCE_DIR overrides it for a relocated copy.
pub fn source_dir() -> PathBuf {
    match std::env::var_os("CFS_CONFORMANCE_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")),
    }
}

pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CFS_CONFORMANCE_CACHE") {
        return PathBuf::from(d);
    }
    user_cache_dir()
        .unwrap_or_else(|| PathBuf::from("/tmp"))
        .join("cfs-conformance")
}

/// `XDG_CACHE_HOME`, else `~/.cache` (where scripts/setup.sh keeps moto's venv too).
pub fn user_cache_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
}

pub fn host_script(name: &str) -> PathBuf {
    source_dir().join("host").join(name)
}

pub fn scenario_script(name: &str) -> PathBuf {
    // Two scenarios, one script: they differ only in which node the host kills.
    let name = if name == "mds-leader-fault" {
        "mds-fault"
    } else {
        name
    };
    source_dir().join("scenarios").join(format!("{name}.sh"))
}

/// The workspace target directory, where `cargo build -p cfs` puts the server binary.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d),
        None => source_dir().join("..").join("target"),
    }
}
