//! The shard program: what the MDS and the data servers send a data server about
//! erasure-coded shards (issue 13, docs/EC.md "Data-server interface"), on the data server's
//! NFSv3 port (one listener, one connection limit, one firewall rule).
//!
//! A program of its own rather than NFSv3 with shard handles: parity shards have no file
//! offsets, so a rebuild needs dense ranges of every shard, data and parity alike, and the
//! encode and repair jobs are commands with results (shard sums) NFSv3 cannot carry. Every
//! call carries `to` (the receiving DS's id) and a keyed blake3 MAC under a key derived from
//! the cluster secret (`layout::ClusterSecret::shard_mac`), so only the MDS and the data
//! servers can make one, and a call made for one DS is refused by every other. There is no
//! timestamp: every call is idempotent (PUT writes the same bytes at the same place of an
//! epoch's immutable shard, SEAL re-checks them, GET/ENCODE/REPAIR/PLACE redo the same work),
//! so a replay costs work, never data.
//!
//! Procedures: NULL, PUT (dense bytes of a shard; durable once SEAL succeeds), SEAL (commit a
//! shard, check a range's blake3 and record the shard as servable), GET (dense bytes of a sealed shard), ENCODE (the encode
//! job, run by a DS holding a mirror copy), REPAIR (rebuild one shard here from k others),
//! PLACE (replace the placement record of a file's epoch, after a shard moved), DROP (delete a
//! file's shards of one epoch: the file was removed, written again, or its encode gave up).
//!
//! Two procedures are about a file's own object (its mirror copy), not shards, and are here for
//! the same MAC and port: LINK (share every chunk of one object with another by hard links, a
//! snapshot's data image, docs/plans/snapshots.md §3.2) and OBJSTAT (an object's chunks and
//! bytes, and how many of them are shared that way).

use crate::rpc::{Auth, Connection, ConnectionLimits, RejectCalls, RpcError};
use crate::xdr::{Opaque, Xdr, XdrError};
use crate::Xdr;
use std::net::SocketAddr;
use std::time::Duration;
use thiserror::Error;

pub const CFS_SHARD_PROGRAM: u32 = 0x2043_4655;
pub const CFS_SHARD_V1: u32 = 1;

pub const SHARDPROC_NULL: u32 = 0;
/// Dense bytes of a shard, written unstable: SEAL makes them durable before it answers.
pub const SHARDPROC_PUT: u32 = 1;
pub const SHARDPROC_SEAL: u32 = 2;
pub const SHARDPROC_GET: u32 = 3;
pub const SHARDPROC_ENCODE: u32 = 4;
pub const SHARDPROC_REPAIR: u32 = 5;
pub const SHARDPROC_PLACE: u32 = 6;
/// Deletes every shard of (file, epoch) held by the receiving DS, sealed or not.
pub const SHARDPROC_DROP: u32 = 7;
/// Makes object `to_file` share every chunk of object `from_file` (hard links, no data copied;
/// the store copies a shared chunk before changing it), with `from_file`'s size. Idempotent
/// while `from_file` is unchanged (the MDS holds the file for the whole link): chunks
/// `to_file` already has are kept.
pub const SHARDPROC_LINK: u32 = 8;
/// An object's chunks and allocated bytes, and how many of them it shares with another object.
pub const SHARDPROC_OBJSTAT: u32 = 9;

/// Largest PUT payload or GET reply: the DS's RPC record limit is 1 MiB + 64 KiB.
pub const MAX_SHARD_IO: usize = 1 << 20;
/// Most shards in one stripe (k + m, each at most 32: `ec::geometry::MAX_SHARDS`).
pub const MAX_STRIPE_SHARDS: usize = 64;
/// Longest address of a data server in a placement ("ip:port", v6 included).
pub const MAX_ADDR: usize = 64;

pub const SHARD_OK: u32 = 0;
/// Wrong MAC, or not addressed to this DS.
pub const SHARD_ERR_AUTH: u32 = 1;
/// Arguments out of bounds (geometry, ranges, placement).
pub const SHARD_ERR_INVAL: u32 = 2;
/// The shard (or the source object) is not here, or not sealed.
pub const SHARD_ERR_NOENT: u32 = 3;
/// A stored block failed its checksum, or a disk error.
pub const SHARD_ERR_IO: u32 = 4;
/// A sum did not match: SEAL's bytes, or REPAIR's rebuilt shard.
pub const SHARD_ERR_SUM: u32 = 5;
/// Not enough shards reachable to rebuild (more than m lost).
pub const SHARD_ERR_LOST: u32 = 6;
/// Writing a shard to another data server failed.
pub const SHARD_ERR_PEER: u32 = 7;

/// One shard: file, epoch, index and the stripe geometry (k, m, log2 unit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Xdr)]
pub struct ShardRef {
    pub file: u64,
    pub epoch: u64,
    pub index: u32,
    pub k: u32,
    pub m: u32,
    pub unit_shift: u32,
}

/// Where shard `i` of a placement lives: the i-th entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Xdr)]
pub struct ShardServer {
    pub ds_id: u64,
    /// "ip:port" of the data server's listener.
    #[xdr(max = MAX_ADDR)]
    pub addr: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct PutArgs {
    pub to: u64,
    pub shard: ShardRef,
    /// Dense offset in the shard.
    pub offset: u64,
    #[xdr(max = MAX_SHARD_IO)]
    pub data: Opaque,
    pub mac: [u8; 32],
}

#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct SealArgs {
    pub to: u64,
    pub shard: ShardRef,
    /// File bytes the encoding covers so far (the end of the last encoded group).
    pub file_len: u64,
    /// Dense range of this shard the sum covers.
    pub offset: u64,
    pub len: u64,
    pub sum: [u8; 32],
    #[xdr(max = MAX_STRIPE_SHARDS)]
    pub placement: Vec<ShardServer>,
    pub mac: [u8; 32],
}

#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct GetArgs {
    pub to: u64,
    pub shard: ShardRef,
    pub offset: u64,
    pub count: u32,
    pub mac: [u8; 32],
}

/// The encode job: encode file bytes `[offset, offset + len)` (offset a multiple of k · unit)
/// of `file`, which the receiving DS holds as a mirror copy (object id = file id), into
/// shards `placement[0..k+m]` of `epoch`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct EncodeArgs {
    pub to: u64,
    pub file: u64,
    pub epoch: u64,
    pub k: u32,
    pub m: u32,
    pub unit_shift: u32,
    pub offset: u64,
    pub len: u64,
    /// File bytes the encoding covers after this job (`offset + len` for the last group).
    pub file_len: u64,
    #[xdr(max = MAX_STRIPE_SHARDS)]
    pub placement: Vec<ShardServer>,
    pub mac: [u8; 32],
}

/// The repair job: rebuild shard `shard.index` for file bytes `[offset, offset + len)` on the
/// receiving DS (which must be `placement[shard.index]`) from k others, check its blake3 against
/// `expected`, store and seal it.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct RepairArgs {
    pub to: u64,
    pub shard: ShardRef,
    pub offset: u64,
    pub len: u64,
    pub file_len: u64,
    pub expected: [u8; 32],
    #[xdr(max = MAX_STRIPE_SHARDS)]
    pub placement: Vec<ShardServer>,
    pub mac: [u8; 32],
}

/// Replaces the placement record of (file, epoch) on the receiving DS.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct PlaceArgs {
    pub to: u64,
    pub file: u64,
    pub epoch: u64,
    #[xdr(max = MAX_STRIPE_SHARDS)]
    pub placement: Vec<ShardServer>,
    pub mac: [u8; 32],
}

/// Deletes the shards of (file, epoch) on the receiving DS, durably; shards of other epochs
/// stay. Succeeds when there were none (a repeated DROP).
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct DropArgs {
    pub to: u64,
    pub file: u64,
    pub epoch: u64,
    pub mac: [u8; 32],
}

/// LINK: `to_file` gets every chunk of `from_file` as of now (see `SHARDPROC_LINK`). Both are
/// file objects (ids below 2^63, never a shard object), and different.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct LinkArgs {
    pub to: u64,
    pub from_file: u64,
    pub to_file: u64,
    pub mac: [u8; 32],
}

/// OBJSTAT of the file object `file` (below 2^63).
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct ObjStatArgs {
    pub to: u64,
    pub file: u64,
    pub mac: [u8; 32],
}

/// One object on one data server. An object never written answers all zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Xdr)]
pub struct ObjStat {
    /// Its size as this data server knows it (the high-water mark of its writes, or the size
    /// SETATTR set).
    pub size: u64,
    /// Chunk files holding anything.
    pub chunks: u64,
    /// Bytes of disk those chunk files occupy (allocated blocks, headers included).
    pub bytes: u64,
    /// Of those, the chunk files with more than one link (shared with another object)...
    pub shared_chunks: u64,
    /// ...and their bytes of disk, counted in full here and in every object sharing them.
    pub shared_bytes: u64,
}

/// PUT, SEAL, PLACE, DROP, LINK.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub enum ShardRes {
    #[xdr(case = SHARD_OK)]
    Ok,
    #[xdr(default)]
    Err(u32),
}

#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub enum GetRes {
    #[xdr(case = SHARD_OK)]
    Ok(#[xdr(max = MAX_SHARD_IO)] Opaque),
    #[xdr(default)]
    Err(u32),
}

/// The blake3 of each shard's dense bytes of the encoded range, shard 0 first.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub enum EncodeRes {
    #[xdr(case = SHARD_OK)]
    Ok(#[xdr(max = MAX_STRIPE_SHARDS)] Vec<[u8; 32]>),
    #[xdr(default)]
    Err(u32),
}

/// The rebuilt shard range's blake3 (equal to the expected one).
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub enum RepairRes {
    #[xdr(case = SHARD_OK)]
    Ok([u8; 32]),
    #[xdr(default)]
    Err(u32),
}

#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub enum ObjStatRes {
    #[xdr(case = SHARD_OK)]
    Ok(ObjStat),
    #[xdr(default)]
    Err(u32),
}

/// The bytes a shard call's MAC covers: the procedure number, then the XDR of every field but
/// the MAC (which is last in every argument type, so it is the XDR minus its last 32 bytes).
pub fn mac_input<T: Xdr>(proc_: u32, args: &T) -> Vec<u8> {
    let mut x = proc_.to_be_bytes().to_vec();
    let body = args.to_xdr();
    x.extend_from_slice(&body[..body.len().saturating_sub(32)]);
    x
}

/// An argument type of the shard program: it has a MAC to fill in and check.
pub trait Signed: Xdr {
    const PROC: u32;
    fn mac_mut(&mut self) -> &mut [u8; 32];
    fn mac(&self) -> [u8; 32];
    fn to(&self) -> u64;
}

macro_rules! signed {
    ($t:ty, $p:expr) => {
        impl Signed for $t {
            const PROC: u32 = $p;
            fn mac_mut(&mut self) -> &mut [u8; 32] {
                &mut self.mac
            }
            fn mac(&self) -> [u8; 32] {
                self.mac
            }
            fn to(&self) -> u64 {
                self.to
            }
        }
    };
}
signed!(PutArgs, SHARDPROC_PUT);
signed!(SealArgs, SHARDPROC_SEAL);
signed!(GetArgs, SHARDPROC_GET);
signed!(EncodeArgs, SHARDPROC_ENCODE);
signed!(RepairArgs, SHARDPROC_REPAIR);
signed!(PlaceArgs, SHARDPROC_PLACE);
signed!(DropArgs, SHARDPROC_DROP);
signed!(LinkArgs, SHARDPROC_LINK);
signed!(ObjStatArgs, SHARDPROC_OBJSTAT);

#[derive(Debug, Error)]
pub enum ShardCallError {
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("rpc: {0}")]
    Rpc(#[from] RpcError),
    #[error("undecodable reply: {0}")]
    Xdr(#[from] XdrError),
    /// The data server answered with a `SHARD_ERR_*` code.
    #[error("data server refused: shard error {0}")]
    Refused(u32),
}

impl ShardCallError {
    /// The `SHARD_ERR_*` code, if the server answered one.
    pub fn code(&self) -> Option<u32> {
        match self {
            ShardCallError::Refused(c) => Some(*c),
            _ => None,
        }
    }
}

/// A connection to one data server's shard program. Calls take arguments already signed
/// (`layout::ClusterSecret::sign_shard`).
#[derive(Clone)]
pub struct ShardClient {
    conn: Connection,
    timeout: Duration,
}

impl ShardClient {
    /// Connects within `connect_timeout`; calls then time out after `call_timeout`.
    pub async fn connect(
        addr: SocketAddr,
        connect_timeout: Duration,
        call_timeout: Duration,
    ) -> Result<ShardClient, ShardCallError> {
        let fail = |source| ShardCallError::Connect { addr, source };
        let stream = tokio::time::timeout(connect_timeout, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| fail(std::io::ErrorKind::TimedOut.into()))?
            .map_err(fail)?;
        let _ = stream.set_nodelay(true);
        let limits = ConnectionLimits {
            max_record: MAX_SHARD_IO + (64 << 10),
            max_in_flight: 16,
        };
        let conn =
            Connection::spawn(stream, std::sync::Arc::new(RejectCalls), limits).map_err(fail)?;
        Ok(ShardClient {
            conn,
            timeout: call_timeout,
        })
    }

    pub fn is_closed(&self) -> bool {
        self.conn.is_closed()
    }

    pub fn close(&self) {
        self.conn.close()
    }

    async fn call<A: Signed, R: Xdr>(&self, args: &A) -> Result<R, ShardCallError> {
        let reply = self
            .conn
            .call(
                CFS_SHARD_PROGRAM,
                CFS_SHARD_V1,
                A::PROC,
                &Auth::None,
                &args.to_xdr(),
                self.timeout,
            )
            .await?;
        Ok(R::from_xdr(reply.body())?)
    }

    pub async fn put(&self, a: &PutArgs) -> Result<(), ShardCallError> {
        match self.call::<_, ShardRes>(a).await? {
            ShardRes::Ok => Ok(()),
            ShardRes::Err(c) => Err(ShardCallError::Refused(c)),
        }
    }

    pub async fn seal(&self, a: &SealArgs) -> Result<(), ShardCallError> {
        match self.call::<_, ShardRes>(a).await? {
            ShardRes::Ok => Ok(()),
            ShardRes::Err(c) => Err(ShardCallError::Refused(c)),
        }
    }

    pub async fn get(&self, a: &GetArgs) -> Result<Vec<u8>, ShardCallError> {
        match self.call::<_, GetRes>(a).await? {
            GetRes::Ok(d) => Ok(d.0),
            GetRes::Err(c) => Err(ShardCallError::Refused(c)),
        }
    }

    /// Runs the encode job; the shard sums, shard 0 first.
    pub async fn encode(&self, a: &EncodeArgs) -> Result<Vec<[u8; 32]>, ShardCallError> {
        match self.call::<_, EncodeRes>(a).await? {
            EncodeRes::Ok(s) => Ok(s),
            EncodeRes::Err(c) => Err(ShardCallError::Refused(c)),
        }
    }

    /// Runs the repair job; the rebuilt range's sum.
    pub async fn repair(&self, a: &RepairArgs) -> Result<[u8; 32], ShardCallError> {
        match self.call::<_, RepairRes>(a).await? {
            RepairRes::Ok(s) => Ok(s),
            RepairRes::Err(c) => Err(ShardCallError::Refused(c)),
        }
    }

    pub async fn place(&self, a: &PlaceArgs) -> Result<(), ShardCallError> {
        match self.call::<_, ShardRes>(a).await? {
            ShardRes::Ok => Ok(()),
            ShardRes::Err(c) => Err(ShardCallError::Refused(c)),
        }
    }

    /// DROP: the receiving DS no longer holds any shard of (file, epoch).
    pub async fn drop_shards(&self, a: &DropArgs) -> Result<(), ShardCallError> {
        match self.call::<_, ShardRes>(a).await? {
            ShardRes::Ok => Ok(()),
            ShardRes::Err(c) => Err(ShardCallError::Refused(c)),
        }
    }

    /// LINK: on return `a.to_file` holds every chunk of `a.from_file`, durably.
    pub async fn link(&self, a: &LinkArgs) -> Result<(), ShardCallError> {
        match self.call::<_, ShardRes>(a).await? {
            ShardRes::Ok => Ok(()),
            ShardRes::Err(c) => Err(ShardCallError::Refused(c)),
        }
    }

    pub async fn obj_stat(&self, a: &ObjStatArgs) -> Result<ObjStat, ShardCallError> {
        match self.call::<_, ObjStatRes>(a).await? {
            ObjStatRes::Ok(s) => Ok(s),
            ObjStatRes::Err(c) => Err(ShardCallError::Refused(c)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_round_trip_and_the_mac_is_left_out_of_its_input() {
        let mut a = EncodeArgs {
            to: 3,
            file: 9,
            epoch: 1,
            k: 4,
            m: 2,
            unit_shift: 20,
            offset: 0,
            len: 5,
            file_len: 5,
            placement: vec![ShardServer {
                ds_id: 1,
                addr: "127.0.0.1:2049".into(),
            }],
            mac: [0; 32],
        };
        let before = mac_input(SHARDPROC_ENCODE, &a);
        a.mac = [7; 32];
        assert_eq!(mac_input(SHARDPROC_ENCODE, &a), before);
        assert_ne!(mac_input(SHARDPROC_REPAIR, &a), before);
        assert_eq!(EncodeArgs::from_xdr(&a.to_xdr()), Ok(a.clone()));
        a.len = 6;
        assert_ne!(mac_input(SHARDPROC_ENCODE, &a), before);
        let big = GetRes::Ok(Opaque(vec![0; MAX_SHARD_IO + 1])).to_xdr();
        assert!(GetRes::from_xdr(&big).is_err());
    }

    /// LINK's and OBJSTAT's wire forms are pinned: data servers and MDS nodes of one cluster
    /// may run different builds during an upgrade.
    #[test]
    fn link_and_objstat_encodings_are_pinned_and_their_macs_cover_both_objects() {
        let mut a = LinkArgs {
            to: 2,
            from_file: 0x11,
            to_file: 0x22,
            mac: [0xaa; 32],
        };
        let mut want = Vec::new();
        for v in [2u64, 0x11, 0x22] {
            want.extend_from_slice(&v.to_be_bytes());
        }
        want.extend_from_slice(&[0xaa; 32]);
        assert_eq!(a.to_xdr(), want);
        assert_eq!(LinkArgs::from_xdr(&want), Ok(a.clone()));
        let before = mac_input(SHARDPROC_LINK, &a);
        assert_eq!(&before[..4], &8u32.to_be_bytes());
        // Swapping source and destination is another call, and so is the same body as DROP.
        (a.from_file, a.to_file) = (a.to_file, a.from_file);
        assert_ne!(mac_input(SHARDPROC_LINK, &a), before);
        let d = DropArgs {
            to: 2,
            file: 0x11,
            epoch: 0x22,
            mac: [0; 32],
        };
        assert_ne!(mac_input(SHARDPROC_DROP, &d), before);

        let s = ObjStatArgs {
            to: 1,
            file: 7,
            mac: [0; 32],
        };
        assert_eq!(s.to_xdr().len(), 8 + 8 + 32);
        let r = ObjStatRes::Ok(ObjStat {
            size: 1,
            chunks: 2,
            bytes: 3,
            shared_chunks: 4,
            shared_bytes: 5,
        });
        let mut want = 0u32.to_be_bytes().to_vec();
        for v in 1u64..=5 {
            want.extend_from_slice(&v.to_be_bytes());
        }
        assert_eq!(r.to_xdr(), want);
        assert_eq!(ObjStatRes::from_xdr(&want), Ok(r));
        let e = ObjStatRes::Err(SHARD_ERR_AUTH);
        assert_eq!(e.to_xdr(), [0, 0, 0, 1]);
        assert_eq!(ObjStatRes::from_xdr(&[0, 0, 0, 1]), Ok(e));
    }
}
