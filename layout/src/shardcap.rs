//! DS file handles for erasure-coded shards (issue 13, docs/EC.md "Data-server interface").
//!
//! A shard handle is a capability like [`crate::capability::Cap`], minted by the MDS with the
//! same key and verified by the data server it names, but it grants only READs of one file's
//! erasure-coded bytes at one redundancy epoch. Kinds:
//!
//! - `Direct(i)`: the DS holds data shard `i`; a READ at file offset `o` is served from dense
//!   offset `Geometry::dense_offset(i, o)` of the shard object (the kernel's sparse view).
//! - `Rebuild(i)`: the DS does *not* hold shard `i`; it fetches the same dense range of k other
//!   shards from their data servers and decodes.
//! - `Assembled`: a whole-file view at file offsets; the DS cuts each READ with
//!   `Geometry::pieces` and fetches or rebuilds each piece.
//!
//! Never a WRITE right: the rights byte must be READ, anything else is malformed, and the DS
//! answers every write-like procedure on a shard handle with NFS3ERR_ROFS.
//!
//! **Where the other shards are.** A rebuild or assembled read needs the k+m data servers of
//! the file's shards and their addresses. A list of DS ids would not fit: NFSv3 handles are at
//! most 64 bytes (`NFS3_FHSIZE`; flexfiles DSs speak NFSv3), and six 8-byte ids plus a 32-byte
//! MAC already take 80. So the handle carries a 64-bit *placement id*, the first 8 bytes of the
//! blake3 of the ordered (DS id, address) list, and the DS resolves it through the placement
//! record it keeps next to every shard it holds (written by the encode or repair job, replaced
//! by the MDS with the shard program's PLACE when a shard moves). A handle whose placement id
//! the DS does not have answers NFS3ERR_STALE, so the client asks the MDS for a fresh layout:
//! a handle can never make a DS read from servers the MDS did not name. The record is local
//! because a rebuild/assembled DS is always one that holds a shard of the file (docs/EC.md).
//!
//! Wire format (64 bytes = `NFS3_FHSIZE`), big-endian:
//!
//! | bytes | field |
//! |---|---|
//! | 0 | version (2: a shard handle; 1 is [`crate::capability`]'s) |
//! | 1 | rights: 1 READ (the only value accepted) |
//! | 2 | key id |
//! | 3..11 | file id |
//! | 11 | kind: 1 direct, 2 rebuild, 3 assembled |
//! | 12 | shard index (0 for assembled) |
//! | 13, 14 | k, m |
//! | 15 | log2 of the shard unit |
//! | 16..24 | epoch of the redundancy record |
//! | 24..32 | placement id |
//! | 32..64 | MAC over bytes 0..32 and the DS id |
//!
//! There is no layout generation: shard handles grant no writes, so there is nothing to fence;
//! the epoch names the shard objects (their ids derive from it), so a handle from an earlier
//! epoch finds nothing and answers STALE.

use crate::capability::{CapError, CapKey};
use crate::dsmap::DsId;
use crate::FileId;
use proto::shard::ShardServer;

pub const SHARD_CAP_VERSION: u8 = 2;
pub const SHARD_CAP_LEN: usize = 64;
const BODY_LEN: usize = 32;
/// Domain separation from the v1 capability's MAC.
const SHARD_CAP_CONTEXT: &[u8] = b"cfs ds shard capability v1";
/// Smallest and largest log2 of a shard unit (4 KiB .. 64 MiB, `ec::geometry`'s bounds).
pub const MIN_UNIT_SHIFT: u8 = 12;
pub const MAX_UNIT_SHIFT: u8 = 26;
/// At most this many data or parity shards (`ec::geometry::MAX_SHARDS`).
pub const MAX_SHARDS: u8 = 32;

/// What a shard handle lets its holder read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShardKind {
    /// Data shard `i`, held by this DS, at file offsets.
    Direct(u8),
    /// Data shard `i`, rebuilt by this DS from k others.
    Rebuild(u8),
    /// The whole file at file offsets.
    Assembled,
}

impl ShardKind {
    fn code(self) -> (u8, u8) {
        match self {
            ShardKind::Direct(i) => (1, i),
            ShardKind::Rebuild(i) => (2, i),
            ShardKind::Assembled => (3, 0),
        }
    }

    fn from_code(kind: u8, i: u8) -> Option<Self> {
        match kind {
            1 => Some(ShardKind::Direct(i)),
            2 => Some(ShardKind::Rebuild(i)),
            3 if i == 0 => Some(ShardKind::Assembled),
            _ => None,
        }
    }
}

/// The claims of a shard handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShardCap {
    pub file: FileId,
    pub kind: ShardKind,
    pub k: u8,
    pub m: u8,
    pub unit_shift: u8,
    pub epoch: u64,
    pub placement: u64,
    pub key_id: u8,
}

/// The placement id of an ordered list of (DS id, address) of shards 0..k+m.
pub fn placement_id(shards: &[ShardServer]) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(b"cfs shard placement v1");
    h.update(&(shards.len() as u64).to_be_bytes());
    for ShardServer { ds_id, addr } in shards {
        h.update(&ds_id.to_be_bytes());
        h.update(&(addr.len() as u64).to_be_bytes());
        h.update(addr.as_bytes());
    }
    let b = h.finalize();
    let mut a = [0u8; 8];
    a.copy_from_slice(&b.as_bytes()[..8]);
    u64::from_be_bytes(a)
}

impl ShardCap {
    /// The shard unit in bytes.
    pub fn unit(&self) -> u64 {
        1u64 << self.unit_shift
    }

    fn valid(&self) -> bool {
        let width = u32::from(self.k) + u32::from(self.m);
        let shard_ok = match self.kind {
            ShardKind::Direct(i) | ShardKind::Rebuild(i) => i < self.k,
            ShardKind::Assembled => true,
        };
        self.k >= 1
            && self.m >= 1
            && self.k <= MAX_SHARDS
            && self.m <= MAX_SHARDS
            && width <= 2 * u32::from(MAX_SHARDS)
            && (MIN_UNIT_SHIFT..=MAX_UNIT_SHIFT).contains(&self.unit_shift)
            && shard_ok
    }

    fn body(&self) -> [u8; BODY_LEN] {
        let mut b = [0u8; BODY_LEN];
        let (kind, i) = self.kind.code();
        b[0] = SHARD_CAP_VERSION;
        b[1] = 1;
        b[2] = self.key_id;
        b[3..11].copy_from_slice(&self.file.0.to_be_bytes());
        b[11] = kind;
        b[12] = i;
        b[13] = self.k;
        b[14] = self.m;
        b[15] = self.unit_shift;
        b[16..24].copy_from_slice(&self.epoch.to_be_bytes());
        b[24..32].copy_from_slice(&self.placement.to_be_bytes());
        b
    }

    /// The handle to put in `ffds_fh_vers` for `ds`. `None` if the claims are out of bounds
    /// (a shard index past k, a unit outside 4 KiB..64 MiB): the MDS must not mint those.
    pub fn mint(&self, key: &CapKey, ds: DsId) -> Option<[u8; SHARD_CAP_LEN]> {
        if !self.valid() {
            return None;
        }
        Some(seal(key, SHARD_CAP_CONTEXT, &self.body(), ds))
    }
}

/// A 64-byte handle: `body` then its MAC under `context` for `ds` (the form shard and
/// reduced-read handles share).
pub(crate) fn seal(
    key: &CapKey,
    context: &[u8],
    body: &[u8; BODY_LEN],
    ds: DsId,
) -> [u8; SHARD_CAP_LEN] {
    let mut out = [0u8; SHARD_CAP_LEN];
    out[..BODY_LEN].copy_from_slice(body);
    out[BODY_LEN..].copy_from_slice(mac(key, context, body, ds).as_bytes());
    out
}

/// Whether 64-byte `handle` carries its body's MAC under `context` for `ds`.
pub(crate) fn sealed_by(handle: &[u8], key: &CapKey, context: &[u8], ds: DsId) -> bool {
    let (Some(body), Some(presented)) = (
        handle
            .get(..BODY_LEN)
            .and_then(|b| <&[u8; BODY_LEN]>::try_from(b).ok()),
        handle
            .get(BODY_LEN..)
            .and_then(|b| <[u8; 32]>::try_from(b).ok()),
    ) else {
        return false;
    };
    // blake3::Hash's PartialEq is constant time.
    mac(key, context, body, ds) == blake3::Hash::from_bytes(presented)
}

fn mac(key: &CapKey, context: &[u8], body: &[u8; BODY_LEN], ds: DsId) -> blake3::Hash {
    let mut h = blake3::Hasher::new_keyed(key.bytes());
    h.update(context);
    h.update(body);
    h.update(&ds.0.to_be_bytes());
    h.finalize()
}

/// Whether `handle` claims to be a shard handle (by length and version): which verifier a DS
/// sends it to. Nothing about it is trusted until [`verify_shard`] accepts it.
pub fn is_shard_handle(handle: &[u8]) -> bool {
    handle.len() == SHARD_CAP_LEN && handle[0] == SHARD_CAP_VERSION
}

/// Reads a shard handle's claims without authenticating them.
pub fn peek_shard(handle: &[u8]) -> Result<ShardCap, CapError> {
    let b: &[u8; SHARD_CAP_LEN] = handle.try_into().map_err(|_| CapError::Malformed)?;
    if b[0] != SHARD_CAP_VERSION || b[1] != 1 {
        return Err(CapError::Malformed);
    }
    let u64_at = |i: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[i..i + 8]);
        u64::from_be_bytes(a)
    };
    let kind = ShardKind::from_code(b[11], b[12]).ok_or(CapError::Malformed)?;
    let cap = ShardCap {
        file: FileId(u64_at(3)),
        kind,
        k: b[13],
        m: b[14],
        unit_shift: b[15],
        epoch: u64_at(16),
        placement: u64_at(24),
        key_id: b[2],
    };
    if !cap.valid() {
        return Err(CapError::Malformed);
    }
    Ok(cap)
}

/// Authenticates a shard handle presented to DS `ds`.
pub fn verify_shard(handle: &[u8], key: &CapKey, ds: DsId) -> Result<ShardCap, CapError> {
    let cap = peek_shard(handle)?;
    if !sealed_by(handle, key, SHARD_CAP_CONTEXT, ds) {
        return Err(CapError::Forged);
    }
    Ok(cap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> CapKey {
        CapKey::new([5; 32])
    }

    fn cap(kind: ShardKind) -> ShardCap {
        ShardCap {
            file: FileId(77),
            kind,
            k: 4,
            m: 2,
            unit_shift: 20,
            epoch: 9,
            placement: 0xdead_beef,
            key_id: 0,
        }
    }

    #[test]
    fn every_kind_round_trips_and_fits_nfsv3() {
        for kind in [
            ShardKind::Direct(3),
            ShardKind::Rebuild(0),
            ShardKind::Assembled,
        ] {
            let h = cap(kind).mint(&key(), DsId(4)).expect("valid");
            assert_eq!(h.len(), proto::nfs3::NFS3_FHSIZE);
            assert!(is_shard_handle(&h));
            assert_eq!(verify_shard(&h, &key(), DsId(4)), Ok(cap(kind)));
            assert_eq!(verify_shard(&h, &key(), DsId(5)), Err(CapError::Forged));
            assert_eq!(cap(kind).unit(), 1 << 20);
        }
    }

    #[test]
    fn out_of_bounds_claims_are_never_minted() {
        for bad in [
            ShardCap {
                kind: ShardKind::Direct(4),
                ..cap(ShardKind::Assembled)
            },
            ShardCap {
                unit_shift: 11,
                ..cap(ShardKind::Assembled)
            },
            ShardCap {
                unit_shift: 27,
                ..cap(ShardKind::Assembled)
            },
            ShardCap {
                m: 0,
                ..cap(ShardKind::Assembled)
            },
        ] {
            assert_eq!(bad.mint(&key(), DsId(1)), None, "{bad:?}");
        }
    }

    #[test]
    fn a_write_right_or_a_v1_handle_is_malformed() {
        let mut h = cap(ShardKind::Direct(1))
            .mint(&key(), DsId(4))
            .expect("valid");
        h[1] = 2;
        assert_eq!(verify_shard(&h, &key(), DsId(4)), Err(CapError::Malformed));
        let v1 = crate::Cap {
            file: FileId(77),
            first_chunk: 0,
            chunk_count: 1,
            rights: crate::Rights::Read,
            generation: 1,
            key_id: 0,
        }
        .mint(&key(), DsId(4));
        assert!(!is_shard_handle(&v1));
        assert_eq!(verify_shard(&v1, &key(), DsId(4)), Err(CapError::Malformed));
    }

    #[test]
    fn every_single_bit_flip_is_rejected_as_bad() {
        let h = cap(ShardKind::Rebuild(2))
            .mint(&key(), DsId(2))
            .expect("valid");
        for bit in 0..SHARD_CAP_LEN * 8 {
            let mut f = h;
            f[bit / 8] ^= 1 << (bit % 8);
            let e = verify_shard(&f, &key(), DsId(2)).unwrap_err();
            assert!(e.is_bad(), "bit {bit}: {e:?}");
        }
    }

    #[test]
    fn placement_id_depends_on_order_and_addresses() {
        let srv = |ds_id, addr: &str| ShardServer {
            ds_id,
            addr: addr.into(),
        };
        let a = vec![srv(1, "127.0.0.1:1"), srv(2, "x")];
        let mut b = a.clone();
        b.swap(0, 1);
        assert_ne!(placement_id(&a), placement_id(&b));
        let mut c = a.clone();
        c[1].addr = "y".into();
        assert_ne!(placement_id(&a), placement_id(&c));
        assert_eq!(placement_id(&a), placement_id(&a.clone()));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_verify_or_panic(
            h in proptest::collection::vec(any::<u8>(), 0..130),
            ds in any::<u64>(),
        ) {
            prop_assert!(verify_shard(&h, &key(), DsId(ds)).unwrap_err().is_bad());
            let _ = peek_shard(&h);
        }
    }
}
