//! ds: the data side. For now the chunk store, used in-process by the single-node server; later
//! also the data-server protocol, mirroring, erasure coding and tiering.

mod chunk;
mod error;
mod geometry;
mod paths;
mod store;

pub use error::DsError;
pub use geometry::Config;
pub use store::{ChunkStore, ChunkStoreSync, SeekWhat, Segment};
