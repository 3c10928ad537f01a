//! The cluster control program: how data servers join an MDS and stay known to it, and how an
//! operator asks the MDS what it knows. ONC RPC on the MDS's NFS port, so there is one port to
//! open per node; a program number from the "defined by user" range of RFC 5531.
//!
//! A DS registers by sending its first HEARTBEAT; later ones renew it and carry its usage and
//! counters. Each heartbeat is authenticated with a keyed MAC (the key is derived from the
//! cluster secret every node is configured with), and carries a wall-clock timestamp the MDS
//! checks, so a captured heartbeat cannot be replayed later to resurrect a dead DS.
use crate::nfs4::basic::Netaddr4;
use crate::Xdr;

pub const CFS_CLUSTER_PROGRAM: u32 = 0x2043_4653;
pub const CFS_CLUSTER_V1: u32 = 1;

pub const CLUSTERPROC_NULL: u32 = 0;
/// DS → MDS: register or renew. Args [`HeartbeatArgs`], result [`HeartbeatRes`].
pub const CLUSTERPROC_HEARTBEAT: u32 = 1;
/// Admin → MDS: the DS table and counters. Args [`StatusArgs`] (authenticated with the
/// cluster secret), result [`StatusRes`].
pub const CLUSTERPROC_STATUS: u32 = 2;
/// DS → MDS: copies of files that failed their checksums on this DS. Args [`BadChunksArgs`],
/// result [`BadChunksRes`]. The MDS answers once it has durably stopped counting the DS as a
/// mirror of each file (and queued the copy for repair), so the DS repeats a report until
/// answered.
pub const CLUSTERPROC_BAD_CHUNKS: u32 = 3;
/// DS → MDS: shards of erasure-coded files that failed their checksums on this DS (a read or
/// scrub hit a bad block). Args [`BadShardsArgs`], result [`BadShardsRes`]; answered once the
/// MDS has durably marked each shard for repair (or it no longer counts), so the DS repeats a
/// report until answered.
pub const CLUSTERPROC_BAD_SHARDS: u32 = 4;
/// DS → MDS: the recipe of a data-reduced file and where its segments are, for a DS that
/// assembles the file's reads (a reduced-read handle, `layout::reducedcap`). Args
/// [`RecipeArgs`], result [`RecipeRes`], MACed both ways as HEARTBEAT is: the reply binds the
/// request's MAC. The MDS answers only for a file reduced at the epoch asked, whose segments
/// are all on flash.
pub const CLUSTERPROC_RECIPE: u32 = 5;
/// DS → MDS: RECIPE for one part of a data-reduced file, the part holding `offset` (a file
/// too large for one recipe is reduced in parts, `meta_core::reducing`; a file in one recipe
/// has one part, the whole file). Args [`RecipePartArgs`], result [`RecipePartRes`], MACed
/// both ways as RECIPE is, under keys of their own. RECIPE stays answered for files in one
/// recipe (a data server of the release before asks it).
pub const CLUSTERPROC_RECIPE_PART: u32 = 6;

/// Largest recipe a RECIPE reply carries (`reduce::recipe`: 44 bytes a chunk, so ~95,000
/// chunks, ~3 GiB of file at the 32 KiB average); a larger file is read through the MDS.
pub const MAX_RECIPE: usize = 4 << 20;
/// Most segments a RECIPE reply names; a file in more is read through the MDS.
pub const MAX_RECIPE_SEGMENTS: usize = 4096;
/// Error of RECIPE: the file is not reduced at that epoch (retired, re-reduced), or not all
/// on flash: the DS answers STALE and the client asks for a new layout.
pub const CLUSTER_ERR_NOT_REDUCED: u32 = 4;
/// Error of RECIPE: this node cannot answer now (a segment's server unknown, replica behind):
/// the DS tries another node, or has the client retry.
pub const CLUSTER_ERR_LATER: u32 = 5;

/// Most addresses a DS may advertise.
pub const MAX_NETADDRS: usize = 8;
/// Most fences one heartbeat reply carries; the rest follow on the next one.
pub const MAX_FENCES: usize = 1024;
/// Most DSs one status reply lists.
pub const MAX_DS: usize = 4096;
/// Most bad chunks one report carries; the rest follow in the next.
pub const MAX_BAD_CHUNKS: usize = 256;
/// Most metadata nodes one heartbeat reply lists: node ids are 1..=255
/// (`layout::capability::MAX_METADATA_NODE`, the top byte of a layout generation).
pub const MAX_MDS_NODES: usize = 255;

/// Status codes of this program.
pub const CLUSTER_OK: u32 = 0;
/// The MAC does not verify: wrong cluster secret.
pub const CLUSTER_ERR_AUTH: u32 = 1;
/// The timestamp is too far from the MDS's clock (replay, or clocks apart).
pub const CLUSTER_ERR_CLOCK: u32 = 2;
/// The arguments make no sense (no address, bad address).
pub const CLUSTER_ERR_INVAL: u32 = 3;

/// I/O a DS has served since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Xdr)]
pub struct DsCounters {
    pub read_ops: u64,
    pub read_bytes: u64,
    pub write_ops: u64,
    pub write_bytes: u64,
    pub commit_ops: u64,
    /// Requests refused for a bad, forged or stale handle.
    pub refused_ops: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct HeartbeatArgs {
    pub ds_id: u64,
    /// Changes every time the DS process starts.
    pub instance: u64,
    /// Milliseconds since the Unix epoch when sent.
    pub timestamp_ms: u64,
    /// Where the MDS itself reaches the DS (its listening address), as a universal address.
    pub listen: Netaddr4,
    /// What clients are told, in preference order.
    #[xdr(max = MAX_NETADDRS)]
    pub advertised: Vec<Netaddr4>,
    #[xdr(max = 255)]
    pub failure_domain: String,
    pub capacity_bytes: u64,
    pub used_bytes: u64,
    /// Free space on the DS's file system now (what a non-root writer may use): placement
    /// skips a DS without room.
    pub avail_bytes: u64,
    /// The file system holding the DS's data (statvfs's f_fsid): data servers that share a
    /// disk report the same id, so its free space is counted once.
    pub fs_id: u64,
    pub counters: DsCounters,
    /// The highest fence sequence number the DS has applied (0 after it starts).
    pub fence_seq: u64,
    /// Keyed blake3 over the XDR of all the fields above.
    pub mac: [u8; 32],
}

/// An operator's status request. Admin information (data-server addresses, capacity, traffic)
/// is only for holders of the cluster secret: the MAC proves the caller has it, and the
/// timestamp keeps a captured request from being replayed later.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct StatusArgs {
    /// Milliseconds since the Unix epoch when sent.
    pub timestamp_ms: u64,
    /// Random per request, so two requests in the same millisecond differ.
    pub nonce: u64,
    /// Keyed blake3 over the XDR of the fields above.
    pub mac: [u8; 32],
}

impl StatusArgs {
    /// The bytes the MAC covers: the XDR of every field but the MAC itself.
    pub fn mac_input(&self) -> Vec<u8> {
        let mut copy = self.clone();
        copy.mac = [0; 32];
        crate::xdr::Xdr::to_xdr(&copy)
    }
}

/// Handles of `file` minted before layout generation `generation` are no longer good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct Fence {
    pub file: u64,
    pub generation: u64,
}

/// A node of the metadata service, as an MDS tells a data server: its id and the address the
/// DS heartbeats to (the node's NFS address, which also serves this program).
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct MdsNode {
    pub id: u32,
    pub addr: Netaddr4,
}

#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct HeartbeatResOk {
    /// How often the MDS wants to hear from the DS.
    pub interval_ms: u32,
    /// The chunk size of the layouts the MDS hands out (capability ranges are in chunks).
    pub chunk_size: u64,
    /// Every file's generation is at least this (it rises when the MDS restarts).
    pub min_generation: u64,
    /// Fences with sequence numbers above the DS's `fence_seq`, oldest first.
    #[xdr(max = MAX_FENCES)]
    pub fences: Vec<Fence>,
    /// The sequence number of the last fence in `fences` (or the DS's own if none).
    pub fence_seq: u64,
    /// Every node of the metadata service as the answering node knows it now (itself
    /// included), so a DS configured with some of them finds the rest and the ones that join
    /// later; empty from a node that runs alone (it knows no other).
    #[xdr(max = MAX_MDS_NODES)]
    pub mds_nodes: Vec<MdsNode>,
    /// The object-store tier's hold on the DS's flash; `None` without `[tier]`.
    pub flash: Option<FlashLimit>,
    /// Keyed blake3 over the request's MAC and the XDR of all the fields above: the reply
    /// comes from a holder of the cluster secret and answers this very request.
    pub mac: [u8; 32],
}

/// What the MDS tells a data server of its flash when the object-store tier manages it
/// (issue 45, flash full): the DS admits each write against `capacity` bytes of its data (0:
/// only its file system's space), and answers one that does not fit NFS3ERR_JUKEBOX, the client
/// retrying while the MDS uploads and evicts to make room; NFS3ERR_NOSPC once no write has fit
/// for `nospc_after_seconds` (0: at once, the store failing, so nothing more becomes evictable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct FlashLimit {
    pub capacity: u64,
    pub nospc_after_seconds: u32,
}

impl HeartbeatResOk {
    /// The bytes the MAC covers, after the request's MAC: the XDR of every field but the MAC.
    pub fn mac_input(&self) -> Vec<u8> {
        let mut copy = self.clone();
        copy.mac = [0; 32];
        crate::xdr::Xdr::to_xdr(&copy)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub enum HeartbeatRes {
    #[xdr(case = CLUSTER_OK)]
    Ok(HeartbeatResOk),
    #[xdr(default)]
    Err(u32),
}

pub const DS_STATE_UP: u32 = 0;
pub const DS_STATE_DOWN: u32 = 1;
pub const DS_STATE_DRAINING: u32 = 2;

#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct DsStatus {
    pub ds_id: u64,
    pub state: u32,
    pub listen: Netaddr4,
    #[xdr(max = MAX_NETADDRS)]
    pub advertised: Vec<Netaddr4>,
    #[xdr(max = 255)]
    pub failure_domain: String,
    /// Milliseconds since the last heartbeat.
    pub silent_ms: u64,
    pub capacity_bytes: u64,
    pub used_bytes: u64,
    pub avail_bytes: u64,
    /// False while new files are not placed on it (little free space, or it answered
    /// NOSPC lately).
    pub has_room: bool,
    /// The file system holding its data (`HeartbeatArgs::fs_id`).
    pub fs_id: u64,
    pub counters: DsCounters,
}

#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct StatusResOk {
    /// Reads and writes the MDS served itself (no layout, or fallback).
    pub mds_read_ops: u64,
    pub mds_read_bytes: u64,
    pub mds_write_ops: u64,
    pub mds_write_bytes: u64,
    pub layouts_granted: u64,
    pub layouts_recalled: u64,
    #[xdr(max = MAX_DS)]
    pub data_servers: Vec<DsStatus>,
    /// How far the object store's copy of the metadata is behind the shards the answering
    /// node leads; `None` without `[tier]`. Last, so an older reader that stops before it
    /// still decodes the rest.
    pub metadata_lag: Option<MetadataLag>,
}

/// One MDS node's metadata shipping lag (`mds::tiering::ship`): each node ships the shards it
/// leads, so `cfs admin status` asks every node and shows the worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct MetadataLag {
    /// The answering node's id in the metadata service (0: it runs alone).
    pub node: u64,
    /// Seconds since the oldest change the bucket lacks of a shard it leads; 0: none lacking.
    pub seconds: u64,
    /// That shard (0 when `seconds` is 0).
    pub shard: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub enum StatusRes {
    #[xdr(case = CLUSTER_OK)]
    Ok(StatusResOk),
    #[xdr(default)]
    Err(u32),
}

impl HeartbeatArgs {
    /// The bytes the MAC covers: the XDR of every field but the MAC itself.
    pub fn mac_input(&self) -> Vec<u8> {
        let mut copy = self.clone();
        copy.mac = [0; 32];
        crate::xdr::Xdr::to_xdr(&copy)
    }
}

/// A chunk of a file whose copy on the reporting DS failed verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Xdr)]
pub struct BadChunk {
    pub file: u64,
    /// The chunk index in the DS's own chunk store (for the operator; repair is per file).
    pub chunk: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct BadChunksArgs {
    pub ds_id: u64,
    /// Milliseconds since the Unix epoch when sent.
    pub timestamp_ms: u64,
    #[xdr(max = MAX_BAD_CHUNKS)]
    pub chunks: Vec<BadChunk>,
    /// Keyed blake3 over the XDR of the fields above.
    pub mac: [u8; 32],
}

impl BadChunksArgs {
    /// The bytes the MAC covers: the XDR of every field but the MAC itself.
    pub fn mac_input(&self) -> Vec<u8> {
        let mut copy = self.clone();
        copy.mac = [0; 32];
        crate::xdr::Xdr::to_xdr(&copy)
    }
}

/// A shard of an erasure-coded file whose copy on the reporting DS failed verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Xdr)]
pub struct BadShard {
    pub file: u64,
    pub epoch: u64,
    pub index: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct BadShardsArgs {
    pub ds_id: u64,
    /// Milliseconds since the Unix epoch when sent.
    pub timestamp_ms: u64,
    #[xdr(max = MAX_BAD_CHUNKS)]
    pub shards: Vec<BadShard>,
    /// Keyed blake3 over the XDR of the fields above.
    pub mac: [u8; 32],
}

impl BadShardsArgs {
    /// The bytes the MAC covers: the XDR of every field but the MAC itself.
    pub fn mac_input(&self) -> Vec<u8> {
        let mut copy = self.clone();
        copy.mac = [0; 32];
        crate::xdr::Xdr::to_xdr(&copy)
    }
}

/// `Ok(later)`: every shard is taken care of but those in `later`, to report again later.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub enum BadShardsRes {
    #[xdr(case = CLUSTER_OK)]
    Ok(#[xdr(max = MAX_BAD_CHUNKS)] Vec<BadShard>),
    #[xdr(default)]
    Err(u32),
}

/// `Ok(later)`: every chunk of the report is taken care of (recorded, or nothing to do) except
/// those in `later`, which the DS should report again after a while (no good mirror is up to
/// repair them from yet).
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub enum BadChunksRes {
    #[xdr(case = CLUSTER_OK)]
    Ok(#[xdr(max = MAX_BAD_CHUNKS)] Vec<BadChunk>),
    #[xdr(default)]
    Err(u32),
}

#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct RecipeArgs {
    pub ds_id: u64,
    /// Milliseconds since the Unix epoch when sent.
    pub timestamp_ms: u64,
    pub ino: u64,
    /// The reduce epoch the handle names.
    pub epoch: u64,
    /// Keyed blake3 over the XDR of the fields above.
    pub mac: [u8; 32],
}

impl RecipeArgs {
    /// The bytes the MAC covers: the XDR of every field but the MAC itself.
    pub fn mac_input(&self) -> Vec<u8> {
        let mut copy = self.clone();
        copy.mac = [0; 32];
        crate::xdr::Xdr::to_xdr(&copy)
    }
}

/// Where one segment of a recipe is: the shard set `(file, epoch)` of the shard program, one
/// stripe of k + m shards of 2^unit_shift bytes, `stored_len` bytes of segment.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct RecipeSegment {
    pub id: [u8; 32],
    pub file: u64,
    pub epoch: u64,
    pub k: u32,
    pub m: u32,
    pub unit_shift: u32,
    pub stored_len: u64,
    /// Shard i's server, i in 0..k+m.
    #[xdr(max = crate::shard::MAX_STRIPE_SHARDS)]
    pub servers: Vec<crate::shard::ShardServer>,
}

#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct RecipeResOk {
    /// The file's length.
    pub len: u64,
    /// The recipe as `reduce::Recipe::encode` wrote it (self-checking).
    #[xdr(max = MAX_RECIPE)]
    pub recipe: crate::xdr::Opaque,
    #[xdr(max = MAX_RECIPE_SEGMENTS)]
    pub segments: Vec<RecipeSegment>,
    /// Keyed blake3 over the request's MAC and the XDR of the fields above.
    pub mac: [u8; 32],
}

impl RecipeResOk {
    /// The bytes the MAC covers (with the request's MAC, see `layout::secret`).
    pub fn mac_input(&self) -> Vec<u8> {
        let mut copy = self.clone();
        copy.mac = [0; 32];
        crate::xdr::Xdr::to_xdr(&copy)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub enum RecipeRes {
    #[xdr(case = CLUSTER_OK)]
    Ok(RecipeResOk),
    #[xdr(default)]
    Err(u32),
}

/// RECIPE_PART's arguments: RECIPE's and the file offset whose part is asked for.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct RecipePartArgs {
    pub ds_id: u64,
    /// Milliseconds since the Unix epoch when sent.
    pub timestamp_ms: u64,
    pub ino: u64,
    /// The reduce epoch the handle names.
    pub epoch: u64,
    /// A byte of the file within the part asked for.
    pub offset: u64,
    /// Keyed blake3 over the XDR of the fields above.
    pub mac: [u8; 32],
}

impl RecipePartArgs {
    /// The bytes the MAC covers: the XDR of every field but the MAC itself.
    pub fn mac_input(&self) -> Vec<u8> {
        let mut copy = self.clone();
        copy.mac = [0; 32];
        crate::xdr::Xdr::to_xdr(&copy)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct RecipePartResOk {
    /// The file's length.
    pub len: u64,
    /// Where the part is in the file, and its length (what its recipe describes).
    pub part_offset: u64,
    pub part_len: u64,
    /// The part's recipe as `reduce::Recipe::encode` wrote it (self-checking).
    #[xdr(max = MAX_RECIPE)]
    pub recipe: crate::xdr::Opaque,
    /// Where the part's segments are.
    #[xdr(max = MAX_RECIPE_SEGMENTS)]
    pub segments: Vec<RecipeSegment>,
    /// Keyed blake3 over the request's MAC and the XDR of the fields above.
    pub mac: [u8; 32],
}

impl RecipePartResOk {
    /// The bytes the MAC covers (with the request's MAC, see `layout::secret`).
    pub fn mac_input(&self) -> Vec<u8> {
        let mut copy = self.clone();
        copy.mac = [0; 32];
        crate::xdr::Xdr::to_xdr(&copy)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub enum RecipePartRes {
    #[xdr(case = CLUSTER_OK)]
    Ok(RecipePartResOk),
    #[xdr(default)]
    Err(u32),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xdr::{Opaque, Xdr};

    fn reply(nodes: usize) -> HeartbeatResOk {
        HeartbeatResOk {
            interval_ms: 1000,
            chunk_size: 1 << 24,
            min_generation: 7 << 56,
            fences: vec![Fence {
                file: 3,
                generation: (7 << 56) + 1,
            }],
            fence_seq: 1,
            mds_nodes: (0..nodes)
                .map(|i| MdsNode {
                    id: i as u32 + 1,
                    addr: Netaddr4 {
                        na_r_netid: Opaque::from("tcp"),
                        na_r_addr: Opaque::from(format!("10.0.0.{}.8.1", i % 250).as_str()),
                    },
                })
                .collect(),
            flash: Some(FlashLimit {
                capacity: 8 << 20,
                nospc_after_seconds: 21,
            }),
            mac: [9; 32],
        }
    }

    #[test]
    fn a_heartbeat_reply_with_every_node_round_trips() {
        let r = HeartbeatRes::Ok(reply(MAX_MDS_NODES));
        assert_eq!(HeartbeatRes::from_xdr(&r.to_xdr()), Ok(r));
    }

    #[test]
    fn a_heartbeat_reply_listing_too_many_nodes_does_not_decode() {
        let r = HeartbeatRes::Ok(reply(MAX_MDS_NODES + 1));
        assert!(HeartbeatRes::from_xdr(&r.to_xdr()).is_err());
    }

    #[test]
    fn the_reply_mac_input_leaves_out_only_the_mac() {
        let r = reply(3);
        let mut other = r.clone();
        other.mac = [1; 32];
        assert_eq!(r.mac_input(), other.mac_input());
        other.mds_nodes.pop();
        assert_ne!(r.mac_input(), other.mac_input());
    }
}
