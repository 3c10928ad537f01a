//! Pure layout logic shared by the MDS (which decides where bytes live and hands out flexfiles
//! layouts) and the DSs (which check the capabilities those layouts carry). Nothing here does I/O
//! or keeps time, so every decision is a deterministic function of its inputs and can be tested
//! exhaustively.
//!
//! - [`dsmap`]: the data-server registry as plain data, with a generation number.
//! - [`placement`]: which DSs hold a chunk (rendezvous hashing, failure domains).
//! - [`geometry`]: chunk size, byte ranges to chunks, layout segment ranges.
//! - [`capability`]: DS file handles as MACed capabilities, and their verification.
//! - [`uaddr`]: RFC 5665 universal addresses.
//! - [`flexfiles`]: the RFC 8435 `ff_layout4` and `ff_device_addr4` bodies.
//! - [`reports`]: what client DS error and I/O reports say about our DSs.
//! - [`secret`]: the cluster secret and the keys derived from it.
//! - [`shardcap`]: DS file handles for erasure-coded shards (direct, rebuild, assembled).
//! - [`reducedcap`]: DS file handles for reads of data-reduced files, assembled by the DS.
#![forbid(unsafe_code)]

pub mod capability;
pub mod dsmap;
pub mod flexfiles;
pub mod geometry;
pub mod placement;
pub mod reducedcap;
pub mod reports;
pub mod secret;
pub mod shardcap;
pub mod uaddr;

pub use capability::{
    generation_base, generation_node, peek, verify, verify_fenced, Cap, CapError, CapKey,
    CapKeyError, Rights,
};
pub use dsmap::{DsId, DsInfo, DsMap, DsMapError, DsState};
pub use flexfiles::{
    build_device_addr, build_layout, build_shard_layout, FfCredentials, FfOptions, LayoutError,
    LayoutGrant,
};
pub use geometry::{ByteRange, ChunkGeometry, ChunkSpan, GeometryError, Segment, SegmentStyle};
pub use placement::{place, place_segment, Placement, PlacementError, Shortfall};
pub use reducedcap::{is_reduced_handle, peek_reduced, verify_reduced_fenced, ReducedCap};
pub use secret::ClusterSecret;
pub use shardcap::{
    is_shard_handle, placement_id, verify_shard, ShardCap, ShardKind, SHARD_CAP_LEN,
};

/// A file as the data path knows it: the MDS inode number. Inode numbers are never reused, so a
/// capability or chunk named by one can never come to mean another file's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileId(pub u64);

impl std::fmt::Display for FileId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "file {}", self.0)
    }
}
