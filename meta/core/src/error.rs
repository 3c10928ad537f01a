//! Errors of the namespace, shaped so the protocol layer can map each one to one NFS4ERR_* code.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Why a command or a read failed.
///
/// Validation errors (everything but `Io`, `Corrupt` and `Closed`) are deterministic results of
/// `apply`: the same command on the same state fails the same way on every replica.
#[derive(Debug, Error, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FsError {
    #[error("no such file or directory")]
    NotFound,
    #[error("file exists")]
    Exists,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("directory not empty")]
    NotEmpty,
    #[error("invalid argument")]
    Invalid,
    #[error("name too long")]
    NameTooLong,
    /// The inode number does not (or no longer) exist: a stale file handle.
    #[error("stale inode {0}")]
    Stale(u64),
    /// The caller may not do this (EPERM): not the owner, or the sticky rule.
    #[error("operation not permitted")]
    Perm,
    /// The mode bits refuse the caller (EACCES).
    #[error("permission denied")]
    Access,
    /// The kind of the object does not allow the operation (e.g. SETATTR size on a symlink).
    #[error("operation not supported on this kind of object")]
    WrongKind,
    #[error("i/o error: {0}")]
    Io(String),
    /// The file system is full (ENOSPC) and no reserved space is left: NFS4ERR_NOSPC.
    #[error("no space left on the metadata file system")]
    NoSpace,
    /// Something read from disk does not decode: never papered over.
    #[error("corrupt metadata: {0}")]
    Corrupt(String),
    /// A name no longer refers to the object the command was built for (another change came
    /// between the proposer's lookup and the command): the proposer looks again and retries.
    #[error("the name changed under the command")]
    Changed,
    /// The namespace's writer is gone (it hit a storage error or the process is shutting down).
    #[error("namespace closed")]
    Closed,
    /// The shard has no leader this node can reach (an election is on, or too few nodes are
    /// up): the client is to try again (NFS4ERR_DELAY).
    #[error("metadata unavailable: {0}")]
    Unavailable(String),
    /// An object the command reads or changes is locked by a cross-shard operation under way
    /// (`txn`): the proposer tries again shortly, then the client (NFS4ERR_DELAY).
    #[error("locked by a cross-shard operation under way")]
    Busy,
    /// The command reaches an object of another shard: the proposer runs it as a cross-shard
    /// transaction. Never an answer to a client.
    #[error("the command reaches another shard")]
    Elsewhere,
    /// A cross-shard transaction was given up (a participant's recovery decided so first).
    #[error("cross-shard operation aborted")]
    Aborted,
    /// A transaction's `apply` read a key it has not locked yet: the coordinator locks it and
    /// runs `apply` again. Never an answer to a client.
    #[error("needs {0:?} locked")]
    NeedLock(super::shard::Key),
    /// The client request a transaction's step carries was carried out before (its answer):
    /// the coordinator gives its attempt up and answers with it. Never an answer to a client.
    #[error("the request was answered before")]
    Answered(Box<super::object::Outcome>),
    // Last: errors travel between nodes (postcard numbers variants in order), so new ones go
    // at the end.
    /// An entry of `dir` names inode `ino`, which this node's replica of the inode's shard does
    /// not have: that replica is behind the directory's (a node catching up after a restart or
    /// a partition), or, on replicas known to be current, the namespace is corrupt. Readers that
    /// pass every shard's read barrier tell the two apart (`compound::Ctx::read`).
    #[error("an entry of directory {dir} names inode {ino}, which this replica does not have")]
    Dangling { dir: u64, ino: u64 },
    /// The file has no extended attribute of that name (ENODATA; NFS4ERR_NOXATTR).
    #[error("no such extended attribute")]
    NoXattr,
    /// An extended attribute's value is larger than the server keeps (`xattr::VALUE_MAX`):
    /// E2BIG, NFS4ERR_XATTR2BIG.
    #[error("extended attribute value too large")]
    XattrTooBig,
}

impl From<std::io::Error> for FsError {
    fn from(e: std::io::Error) -> Self {
        if e.raw_os_error() == Some(libc::ENOSPC) {
            return FsError::NoSpace;
        }
        FsError::Io(e.to_string())
    }
}
