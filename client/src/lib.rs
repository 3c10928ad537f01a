//! A Rust NFSv4.1 client: one TCP connection, one session with a multi-slot fore channel (so
//! several compounds are in flight at once), a back channel that answers the server's
//! callbacks, lease renewal when idle, and typed helpers for the file operations that the file
//! commands, the FUSE client and the NFSv3 gateway need.
//!
//! ```no_run
//! # async fn f() -> Result<(), client::Error> {
//! let c = client::Client::connect(client::ClientConfig::new("127.0.0.1:2049".parse().unwrap())).await?;
//! let fh = c.lookup_path("/dir/file").await?;
//! let st = c.getattr(&fh).await?;
//! # let _ = st; Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod attrs;
mod backchannel;
mod caller;
mod client;
mod compound;
mod config;
mod error;
mod fileops;
mod io;
mod lease;
mod locks;
mod path;
mod pnfs;
mod session;
mod slots;
pub mod transfer;
mod xattrs;

pub use attrs::{DirEntry, FileType, SetAttrs, Stat, STAT_ATTRS};
pub use caller::as_caller;
pub use client::Client;
pub use compound::CompoundBuilder;
pub use config::ClientConfig;
pub use error::{op_name, status_name, Error, Result};
pub use io::{CreateMode, OpenFile, WriteResult};
pub use locks::LockKind;
pub use path::split_path;
pub use pnfs::PnfsStats;
/// The wire layer, for callers that build their own COMPOUNDs.
pub use proto;
/// Wire types callers need in signatures (file handles, stateids, statuses, verifiers).
pub use proto::nfs4::{NfsFh4, Nfsstat4, Nfstime4, Settime4, StableHow4, Stateid4, Verifier4};
