//! The chunk store: object data in fixed-size chunk files with a blake3 checksum per block,
//! verified on every read. A crate of its own because two roles use it: the data server (`ds`)
//! and the single-node MDS, which keeps file data in-process; neither may import the other.

mod chunk;
mod cow;
mod error;
mod geometry;
mod paths;
pub mod room;
mod store;
mod sums;

pub use error::DsError;
pub use geometry::Config;
pub use store::{ChunkStore, ChunkStoreSync, ObjectStat, SeekWhat, Segment};

/// The store's block checksum: `blake3::hash` of each `block_size`-byte block of `data` (a whole
/// number of blocks), appended to `out`, computed as reads and writes do it (several 4 KiB blocks
/// per SIMD pass). Public for programs that read or write chunk files themselves (the io_uring
/// benchmark, `examples/uringbench.rs`).
pub fn block_checksums(data: &[u8], block_size: usize, out: &mut Vec<[u8; 32]>) {
    sums::block_sums(data, block_size, out)
}
