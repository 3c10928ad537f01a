//! Data reduction at rest for cfs (issue 46), as a pure library: no I/O, no network, no
//! replicated state.
//!
//! A file's bytes are cut into content-defined chunks (`chunk`, FastCDC 2020), each named by
//! a keyed BLAKE3 (`hash`); chunks the caller's index already holds are referenced, new ones
//! are zstd-compressed when that saves enough (`compress`) and packed into ~2 MiB
//! self-verifying segments (`segment`), optionally sealed with ChaCha20-Poly1305 under a
//! cluster data key wrapped by the operator's key-encryption key (`crypt`). `pipeline` ties
//! these together: `reduce` turns bytes into a `recipe::Recipe` plus new segments
//! (`reduce_verified` also compares every dedup hit with the stored bytes, so a hash
//! collision is checked, not assumed away), and `assemble` turns a recipe back into bytes,
//! verifying every chunk.
//!
//! Left to wire (other crates, later):
//! - the replicated chunk index, sharded like the namespace: its records and commands are
//!   `meta_core::reduce_index` (referrer sets per segment rather than counts; the wiring
//!   answers `pipeline::ChunkIndex` from its lookups and adds referrers after the new
//!   segments are durable, from `Reduced::new_chunks`);
//! - freeing: a chunk (and a segment, when all its chunks are) is freed only when no
//!   reference is left, decided in replicated state; compaction of partly-dead segments
//!   (recipes name segment and entry, so moving a live chunk means rewriting the recipes
//!   that name it, or resolving chunk ids through the index at read time);
//! - the encoder hook: run `reduce` in the background encoder, hand the new segments to
//!   EC / the S3 tier, store the recipe in the file's metadata, policy `off|auto|on`;
//! - key handling: read `[encryption] key_file`, keep the wrapped data key and the dedup
//!   key in replicated state, refuse to start on `WrongKey`;
//! - stats per export (`pipeline::Stats`) into `cfs admin status` and `/metrics`.
//!
//! Architecture Invariant: this crate depends on no other cfs crate and does no I/O.
#![forbid(unsafe_code)]

pub mod chunk;
pub mod compress;
pub mod crypt;
pub mod hash;
pub mod pipeline;
pub mod ranges;
pub mod recipe;
pub mod segment;
mod wire;

pub use chunk::ChunkParams;
pub use compress::CompressParams;
pub use crypt::{CryptError, DataKey, Kek, KeyFileError, WrappedKey};
pub use hash::{ChunkId, DedupKey};
pub use pipeline::{
    assemble, check_stored, reduce, reduce_verified, AssembleError, ChunkIndex, ChunkLoc,
    NewSegment, Params, ReduceError, Reduced, SegmentSource, Stats,
};
pub use ranges::{Group, Plan, Span};
pub use recipe::{ChunkRef, Recipe, RecipeError};
pub use segment::{Segment, SegmentError, SegmentId, SegmentWriter};
pub use wire::Truncated;
