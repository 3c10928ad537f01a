//! Errors of the chunk store.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum DsError {
    /// Stored data does not match its checksum (or a chunk header is unreadable). Never returned
    /// as data: the caller maps it to NFS4ERR_IO.
    #[error("corrupt data: object {id} chunk {chunk} block {block}: {detail}")]
    Corrupt {
        id: u64,
        chunk: u64,
        block: u64,
        detail: String,
    },
    /// Arguments that make no sense (ranges overflowing u64, bad configuration).
    #[error("invalid argument: {0}")]
    Invalid(String),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl DsError {
    /// ENOSPC and friends, for NFS4ERR_NOSPC / NFS4ERR_DQUOT.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            DsError::Io(e) => e.raw_os_error(),
            _ => None,
        }
    }
}

/// What a chunk-level operation reports before the store adds the object and chunk numbers.
#[derive(Debug)]
pub(crate) enum ChunkError {
    Corrupt { block: u64, detail: String },
    Io(std::io::Error),
}

impl From<std::io::Error> for ChunkError {
    fn from(e: std::io::Error) -> Self {
        ChunkError::Io(e)
    }
}

impl ChunkError {
    pub(crate) fn at(self, id: u64, chunk: u64) -> DsError {
        match self {
            ChunkError::Corrupt { block, detail } => DsError::Corrupt {
                id,
                chunk,
                block,
                detail,
            },
            ChunkError::Io(e) => DsError::Io(e),
        }
    }
}
