//! NFSv4.1 / NFSv4.2 wire types (RFC 8881 §16-§20 / RFC 5662, RFC 7862, RFC 8276) and the
//! pNFS flexfiles layout (RFC 8435). Everything is re-exported here: `use proto::nfs4::*`.
//!
//! - [`basic`]: constants, `nfsstat4`, `stateid4`, `nfstime4`, `fattr4`, file handles
//! - [`attr`]: `FATTR4_*`, [`attr::Bitmap`], [`attr::FileAttrs`]
//! - [`fileops`], [`state`], [`session`], [`pnfs`], [`v42`]: operation arguments/results
//! - [`flexfiles`]: RFC 8435 layout, device, error and statistics bodies
//! - [`compound`]: `COMPOUND4args`/`COMPOUND4res`, `nfs_argop4`/`nfs_resop4`
//! - [`callback`]: the backchannel `CB_COMPOUND`
pub mod attr;
pub mod basic;
pub mod callback;
pub mod compound;
pub mod fileops;
pub mod flexfiles;
pub mod peek;
pub mod pnfs;
pub mod session;
pub mod state;
pub mod v42;

pub use attr::*;
pub use basic::*;
pub use callback::*;
pub use compound::*;
pub use fileops::*;
pub use flexfiles::*;
pub use pnfs::*;
pub use session::*;
pub use state::*;
pub use v42::*;

#[cfg(test)]
mod tests;
