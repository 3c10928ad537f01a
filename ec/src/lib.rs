//! Erasure coding for data at rest (issue 13): Reed-Solomon stripes of k data + m parity shards
//! whose data shards are laid out exactly as a Linux client reads a striped flexfiles layout,
//! so that a stock client reads encoded files directly from the k data-shard servers.
//!
//! - [`geometry`]: k, m, the shard unit, the 4+2 / 2+1 presets, file offset ↔ (stripe, shard,
//!   offset in shard), the sparse offsets a data server is sent.
//! - [`codec`]: encode a stripe, rebuild any ≤ m lost shards (reed-solomon-simd).
//! - [`sums`]: blake3 of each shard; dropping corrupt shards before a rebuild.
//! - [`kernel`]: the Linux client's striping arithmetic, restated for the tests.
//! - [`pattern`]: deterministic test bytes (the XOR probe, the tests, ec-bench).
//!
//! It depends on no other crate of the workspace: the MDS (records, queues) and the data
//! servers (encode, repair, degraded reads) will both build on it. docs/EC.md has the design.
#![forbid(unsafe_code)]

pub mod codec;
pub mod geometry;
pub mod kernel;
pub mod pattern;
pub mod sums;

pub use codec::{CodecError, Decoder, Encoder, Stripe};
pub use geometry::{Geometry, GeometryError, Location, MapError, Piece};
pub use sums::{shard_sum, ShardSum};
