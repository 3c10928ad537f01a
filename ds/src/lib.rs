//! ds: the data side. The chunk store (used in-process by the single-node server too) and the
//! data-server role serving it over NFSv3 (`server`); later mirroring, erasure coding and tiering.

mod chunk;
mod error;
mod geometry;
mod paths;
pub mod server;
mod store;

pub use error::DsError;
pub use geometry::Config;
pub use server::{DsConfig, DsServer, DsServerError};
pub use store::{ChunkStore, ChunkStoreSync, SeekWhat, Segment};
