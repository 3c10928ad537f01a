//! The namespace as a deterministic state machine: the values it keeps (`object`, `coding`,
//! `tiering`, `reduce_index`, `reducing`, `txn`, `sessions`), the commands that change them
//! (`command`), and `apply`, a pure function of (state, command) over a `state::StateStore`, with Linux's
//! permission rules (`perm`).
//! Everything that varies between runs (time, inode numbers, the file system id) arrives
//! inside the command, so every replica of a shard that applies the same log holds the same
//! state.
//!
//! Architecture invariant: this crate does no I/O, reads no clock inside `apply`, spawns no
//! task and knows nothing of Raft, storage engines or NFS: it depends on serde, postcard,
//! thiserror and libc (for `ENOSPC`) alone; the crate-arrow test (`cfs/tests/it/crate_arrows.rs`)
//! checks that no workspace crate, tokio, openraft or redb is among them.
//! Replication (`meta`) runs it on every replica; the NFS server (`mds`) builds its commands.
#![forbid(unsafe_code)]

pub mod apply;
pub mod coding;
pub mod command;
pub mod error;
pub mod object;
pub mod perm;
pub mod reduce_index;
pub mod reducing;
pub mod sessions;
pub mod shard;
pub mod snap;
pub mod state;
#[doc(hidden)]
pub mod testing;
pub mod tiering;
pub mod txn;
pub mod xattr;

#[cfg(test)]
mod tests;

pub use apply::{apply, apply_on_shard};
pub use coding::{Encoded, FileCode, GroupCode, Redundancy};
pub use command::{check_name, Command, CreateHow};
pub use error::FsError;
pub use object::{
    DirChange, DirEntry, Effect, FileKind, Inode, Outcome, SetTime, StatFs, Time, DRAIN_INO,
    FIRST_COOKIE, NAME_MAX, ROOT_INO,
};
pub use reducing::{
    is_reduce_policy, FileReduce, PartRef, RecipePart, ReduceState, ReduceStatus, Reduced,
    ReducedRef, REDUCE_XATTR,
};
pub use sessions::{ClientRequest, Sessions};
pub use shard::{Key, ShardId};
pub use state::{Dump, MemState, StateStore};
pub use tiering::{
    FileTier, Pin, TierCopy, TierDoomed, TierPiece, TierUpload, TierUsage, PIN_XATTR,
};
pub use xattr::Xattrs;
