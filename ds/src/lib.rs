//! ds: the data-server role, serving the chunk store (crate `chunkstore`) over NFSv3
//! (`server`); later mirroring, erasure coding and tiering.

pub mod server;

pub use chunkstore::{ChunkStore, ChunkStoreSync, Config, DsError, SeekWhat, Segment};
pub use server::{
    shard_object_id, DsConfig, DsServer, DsServerError, ScrubConfig, ScrubConfigError,
};
