//! The chunk store: object data in fixed-size chunk files with a blake3 checksum per block,
//! verified on every read. A crate of its own because two roles use it: the data server (`ds`)
//! and the single-node MDS, which keeps file data in-process; neither may import the other.

mod chunk;
mod error;
mod geometry;
mod paths;
mod store;
mod sums;

pub use error::DsError;
pub use geometry::Config;
pub use store::{ChunkStore, ChunkStoreSync, SeekWhat, Segment};
