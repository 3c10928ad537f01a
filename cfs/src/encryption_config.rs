//! `[encryption]`: the operator's key-encryption key, which wraps the cluster's data key
//! (the MDS's `dataservers/data_key.rs`). Read and checked before anything starts.
//!
//! ```toml
//! [encryption]
//! key_file = "/etc/cfs/kek"               # 32 raw bytes or 64 hex digits
//! previous_key_file = "/etc/cfs/kek.old"  # only while rotating to key_file
//! ```
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct EncryptionFileConfig {
    pub key_file: Option<PathBuf>,
    pub previous_key_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum EncryptionConfigError {
    #[error("[encryption] needs key_file: a file of 32 random bytes (or 64 hex digits), e.g. `head -c 32 /dev/urandom > kek; chmod 600 kek`")]
    NoKeyFile,
    #[error("[encryption] cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("[encryption] {path}: {source}")]
    Bad {
        path: PathBuf,
        source: reduce::KeyFileError,
    },
    #[error("[encryption] previous_key_file is the same key as key_file: rotation needs the old key there")]
    SameKey,
    #[error("[encryption] seals the segments data reduction makes: set [cluster] reduce = \"on\" or \"auto\" (it is \"off\")")]
    ReduceOff,
    #[error("[encryption] seals what the data servers store: it needs a cluster ([cluster] secret_file); a server without data servers keeps its data unencrypted")]
    NoCluster,
}

fn read(path: &Path) -> Result<reduce::Kek, EncryptionConfigError> {
    let bytes = std::fs::read(path).map_err(|source| EncryptionConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(path) {
            if m.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    "the key file can be read by others than its owner (chmod 600 it)"
                );
            }
        }
    }
    reduce::Kek::parse_key_file(&bytes).map_err(|source| EncryptionConfigError::Bad {
        path: path.to_path_buf(),
        source,
    })
}

/// The KEKs `[encryption]` names, read and checked; `reduce` must not be off.
pub fn key_files(
    c: &EncryptionFileConfig,
    reduce: mds::config::ReducePolicy,
) -> Result<mds::config::KeyFiles, EncryptionConfigError> {
    let path = c.key_file.clone().ok_or(EncryptionConfigError::NoKeyFile)?;
    let kek = read(&path)?;
    let previous = c.previous_key_file.as_deref().map(read).transpose()?;
    if previous.as_ref().is_some_and(|p| p.tag() == kek.tag()) {
        return Err(EncryptionConfigError::SameKey);
    }
    if reduce == mds::config::ReducePolicy::Off {
        return Err(EncryptionConfigError::ReduceOff);
    }
    Ok(mds::config::KeyFiles {
        path,
        kek,
        previous,
    })
}
