//! DS file handles as capabilities.
//!
//! A DS keeps no per-client or per-layout state: everything it needs to decide whether to serve
//! an I/O is in the handle the client presents, and the MDS vouches for it with a keyed blake3
//! MAC under a key shared by the MDS and its DSs. The MAC also covers the DS's own id (not
//! carried in the handle), so a handle minted for one DS is worthless at another. Fencing a
//! client is bumping the file's layout generation: every handle minted before it turns stale
//! at once, with nothing to revoke one by one.
//!
//! Wire format (63 bytes, fits NFSv3's 64-byte `nfs_fh3`), big-endian:
//!
//! | bytes | field |
//! |---|---|
//! | 0 | version (1) |
//! | 1 | rights: 1 READ, 2 RW |
//! | 2 | key id (lets DSs accept the old key during a rotation) |
//! | 3..11 | file id |
//! | 11..19 | first chunk |
//! | 19..23 | chunk count |
//! | 23..31 | layout generation |
//! | 31..63 | MAC over bytes 0..31 and the DS id |

use proto::nfs3::Nfsstat3;
use thiserror::Error;

use crate::dsmap::DsId;
use crate::geometry::{ByteRange, ChunkGeometry};
use crate::FileId;

pub const CAP_VERSION: u8 = 1;
pub const CAP_LEN: usize = 63;
const BODY_LEN: usize = 31;
const MAC_LEN: usize = 32;
/// Domain separation: the same key must never produce a valid MAC for anything else.
const CAP_CONTEXT: &[u8] = b"cfs ds capability v1";

/// The secret shared by the MDS and its DSs.
#[derive(Clone, PartialEq, Eq)]
pub struct CapKey([u8; 32]);

impl CapKey {
    pub fn new(bytes: [u8; 32]) -> Self {
        CapKey(bytes)
    }

    /// The key bytes, for the other MACs keyed the same way (`shardcap`).
    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses the 64 hex digits a key is written as in configuration.
    pub fn from_hex(s: &str) -> Result<Self, CapKeyError> {
        blake3::Hash::from_hex(s.trim())
            .map(|h| CapKey(*h.as_bytes()))
            .map_err(|_| CapKeyError)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("a DS capability key is 64 hex digits")]
pub struct CapKeyError;

impl std::fmt::Debug for CapKey {
    /// Keys end up in configs and structs that get logged; never print the bytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CapKey(..)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rights {
    Read,
    ReadWrite,
}

impl Rights {
    fn code(self) -> u8 {
        match self {
            Rights::Read => 1,
            Rights::ReadWrite => 2,
        }
    }

    fn from_code(c: u8) -> Option<Self> {
        match c {
            1 => Some(Rights::Read),
            2 => Some(Rights::ReadWrite),
            _ => None,
        }
    }
}

/// Which MDS node minted a generation: its top byte. Each MDS node fences the handles it
/// hands out on its own (its clients, its leases, its restarts), so a DS keeps one fence
/// state per node and finds the right one from the handle alone. Node 0 is a one-node
/// metadata service; multi-node ids are 1..=255 (`MAX_METADATA_NODE`).
pub fn generation_node(generation: u64) -> u8 {
    (generation >> 56) as u8
}

/// The highest MDS node id a generation can carry.
pub const MAX_METADATA_NODE: u64 = 255;

/// The generation floor of MDS node `node` in its boot `boot`: node in the top byte, boot
/// in the next three, fences counted in the low 32 bits (a restart raises the floor past every
/// generation the previous instance handed out).
pub fn generation_base(node: u8, boot: u64) -> u64 {
    (u64::from(node) << 56) | ((boot & 0x00ff_ffff) << 32)
}

/// What a handle grants: `rights` on chunks `[first_chunk, first_chunk + chunk_count)` of `file`
/// while the file's layout generation is still `generation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cap {
    pub file: FileId,
    pub first_chunk: u64,
    pub chunk_count: u32,
    pub rights: Rights,
    pub generation: u64,
    pub key_id: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum CapError {
    /// Not something we could have minted (wrong length, version, rights or empty range).
    #[error("malformed DS file handle")]
    Malformed,
    /// Well formed but the MAC does not match: forged, corrupted, or minted for another DS.
    #[error("DS file handle fails authentication")]
    Forged,
    /// Authentic but fenced: the file's layout generation has moved on.
    #[error("DS file handle is from layout generation {handle}, file is at {current}")]
    Stale { handle: u64, current: u64 },
    /// Authentic but newer than this DS has heard of: the DS lags the MDS and should refresh
    /// the file's generation, then retry.
    #[error("DS file handle is from layout generation {handle}, DS only knows {current}")]
    FromTheFuture { handle: u64, current: u64 },
    /// Authentic and current, but the I/O is outside what it grants.
    #[error("DS file handle does not grant this I/O")]
    Denied,
}

impl CapError {
    /// The NFSv3 status a DS replies with. Forged handles get ACCES, as a fenced loosely coupled
    /// DS would (RFC 8435 §2.2), so the client reports it with LAYOUTERROR and asks the MDS for a
    /// fresh layout; stale ones get STALE; a lagging DS asks the client to retry.
    pub fn nfsstat3(&self) -> Nfsstat3 {
        match self {
            CapError::Malformed => Nfsstat3::Badhandle,
            CapError::Forged | CapError::Denied => Nfsstat3::Acces,
            CapError::Stale { .. } => Nfsstat3::Stale,
            CapError::FromTheFuture { .. } => Nfsstat3::Jukebox,
        }
    }

    /// True for handles that could not have come from the MDS with this key.
    pub fn is_bad(&self) -> bool {
        matches!(self, CapError::Malformed | CapError::Forged)
    }
}

impl Cap {
    fn body(&self) -> [u8; BODY_LEN] {
        let mut b = [0u8; BODY_LEN];
        b[0] = CAP_VERSION;
        b[1] = self.rights.code();
        b[2] = self.key_id;
        b[3..11].copy_from_slice(&self.file.0.to_be_bytes());
        b[11..19].copy_from_slice(&self.first_chunk.to_be_bytes());
        b[19..23].copy_from_slice(&self.chunk_count.to_be_bytes());
        b[23..31].copy_from_slice(&self.generation.to_be_bytes());
        b
    }

    /// The handle to put in `ffds_fh_vers` for `ds`.
    pub fn mint(&self, key: &CapKey, ds: DsId) -> [u8; CAP_LEN] {
        let body = self.body();
        let mut out = [0u8; CAP_LEN];
        out[..BODY_LEN].copy_from_slice(&body);
        out[BODY_LEN..].copy_from_slice(mac(key, &body, ds).as_bytes());
        out
    }

    /// The file bytes this capability covers.
    pub fn range(&self, geometry: &ChunkGeometry) -> ByteRange {
        geometry.chunks_range(self.first_chunk, u64::from(self.chunk_count))
    }

    /// Checks one I/O against the grant. DSs see file offsets (flexfiles sends them unchanged),
    /// so the range check is on file bytes; a zero-length I/O (COMMIT of everything, GETATTR)
    /// only needs a valid handle.
    pub fn check(
        &self,
        geometry: &ChunkGeometry,
        write: bool,
        offset: u64,
        len: u64,
    ) -> Result<(), CapError> {
        if write && self.rights != Rights::ReadWrite {
            return Err(CapError::Denied);
        }
        if len == 0 {
            return Ok(());
        }
        let end = offset.checked_add(len).ok_or(CapError::Denied)?;
        let r = self.range(geometry);
        if offset >= r.offset && end <= r.end() {
            Ok(())
        } else {
            Err(CapError::Denied)
        }
    }
}

fn mac(key: &CapKey, body: &[u8; BODY_LEN], ds: DsId) -> blake3::Hash {
    let mut h = blake3::Hasher::new_keyed(&key.0);
    h.update(CAP_CONTEXT);
    h.update(body);
    h.update(&ds.0.to_be_bytes());
    h.finalize()
}

/// Reads a handle's claims without authenticating them, so a DS can find which key and which
/// file's generation to verify against. Nothing returned here may be trusted until [`verify`]
/// accepts the handle.
pub fn peek(handle: &[u8]) -> Result<Cap, CapError> {
    let b: &[u8; CAP_LEN] = handle.try_into().map_err(|_| CapError::Malformed)?;
    if b[0] != CAP_VERSION {
        return Err(CapError::Malformed);
    }
    let rights = Rights::from_code(b[1]).ok_or(CapError::Malformed)?;
    let u64_at = |i: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[i..i + 8]);
        u64::from_be_bytes(a)
    };
    let chunk_count = u32::from_be_bytes([b[19], b[20], b[21], b[22]]);
    if chunk_count == 0 {
        return Err(CapError::Malformed);
    }
    Ok(Cap {
        file: FileId(u64_at(3)),
        first_chunk: u64_at(11),
        chunk_count,
        rights,
        generation: u64_at(23),
        key_id: b[2],
    })
}

/// What a DS uses: it does not track every file's generation, only fences (the generation
/// below which a file's handles are no longer good), so any authentic handle at or above the
/// fence is served.
pub fn verify_fenced(handle: &[u8], key: &CapKey, ds: DsId, fence: u64) -> Result<Cap, CapError> {
    let cap = peek(handle)?;
    let current = cap.generation.max(fence);
    verify(handle, key, ds, current)
}

/// Authenticates a handle presented to DS `ds`, then checks it against the file's current
/// layout generation. The MAC is checked before the generation so a forgery is always reported
/// as such and learns nothing about generations.
pub fn verify(
    handle: &[u8],
    key: &CapKey,
    ds: DsId,
    current_generation: u64,
) -> Result<Cap, CapError> {
    let cap = peek(handle)?;
    let mut body = [0u8; BODY_LEN];
    body.copy_from_slice(&handle[..BODY_LEN]);
    let mut presented = [0u8; MAC_LEN];
    presented.copy_from_slice(&handle[BODY_LEN..]);
    // blake3::Hash's PartialEq is constant time, which is why we compare Hashes, not slices.
    if mac(key, &body, ds) != blake3::Hash::from_bytes(presented) {
        return Err(CapError::Forged);
    }
    if cap.generation < current_generation {
        return Err(CapError::Stale {
            handle: cap.generation,
            current: current_generation,
        });
    }
    if cap.generation > current_generation {
        return Err(CapError::FromTheFuture {
            handle: cap.generation,
            current: current_generation,
        });
    }
    Ok(cap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> CapKey {
        CapKey::new(*b"0123456789abcdef0123456789abcdef")
    }

    fn cap() -> Cap {
        Cap {
            file: FileId(0x1122_3344_5566_7788),
            first_chunk: 5,
            chunk_count: 1,
            rights: Rights::ReadWrite,
            generation: 3,
            key_id: 0,
        }
    }

    #[test]
    fn key_from_hex() {
        let hex = "30313233343536373839616263646566".repeat(2);
        assert_eq!(CapKey::from_hex(&format!(" {hex}\n")), Ok(key()));
        assert_eq!(CapKey::from_hex(&hex[1..]), Err(CapKeyError));
        assert_eq!(CapKey::from_hex(&hex.replace('3', "g")), Err(CapKeyError));
        assert_eq!(format!("{:?}", key()), "CapKey(..)");
    }

    #[test]
    fn round_trip_fits_nfsv3() {
        let h = cap().mint(&key(), DsId(2));
        assert!(h.len() <= proto::nfs3::NFS3_FHSIZE);
        assert_eq!(verify(&h, &key(), DsId(2), 3), Ok(cap()));
        assert_eq!(peek(&h), Ok(cap()));
        let r = Cap {
            rights: Rights::Read,
            key_id: 9,
            ..cap()
        };
        assert_eq!(verify(&r.mint(&key(), DsId(2)), &key(), DsId(2), 3), Ok(r));
    }

    #[test]
    fn every_single_bit_flip_is_rejected_as_bad() {
        let h = cap().mint(&key(), DsId(2));
        for bit in 0..CAP_LEN * 8 {
            let mut f = h;
            f[bit / 8] ^= 1 << (bit % 8);
            let e = verify(&f, &key(), DsId(2), 3).unwrap_err();
            assert!(e.is_bad(), "bit {bit}: {e:?}");
        }
    }

    #[test]
    fn generation_bump_fences() {
        let h = cap().mint(&key(), DsId(2));
        let e = verify(&h, &key(), DsId(2), 4).unwrap_err();
        assert_eq!(
            e,
            CapError::Stale {
                handle: 3,
                current: 4
            }
        );
        assert_eq!(e.nfsstat3(), Nfsstat3::Stale);
        let e = verify(&h, &key(), DsId(2), 2).unwrap_err();
        assert_eq!(
            e,
            CapError::FromTheFuture {
                handle: 3,
                current: 2
            }
        );
        assert_eq!(e.nfsstat3(), Nfsstat3::Jukebox);
    }

    #[test]
    fn wrong_ds_and_wrong_key_are_forgeries() {
        let h = cap().mint(&key(), DsId(2));
        assert_eq!(verify(&h, &key(), DsId(3), 3), Err(CapError::Forged));
        let other = CapKey::new([7; 32]);
        assert_eq!(verify(&h, &other, DsId(2), 3), Err(CapError::Forged));
        assert_eq!(CapError::Forged.nfsstat3(), Nfsstat3::Acces);
        // Even a stale generation reports a forgery first.
        assert_eq!(verify(&h, &other, DsId(2), 99), Err(CapError::Forged));
    }

    #[test]
    fn malformed_handles() {
        let h = cap().mint(&key(), DsId(2));
        for bad in [&h[..62], &[][..], &[0u8; 64][..], &[9u8; 63][..]] {
            assert_eq!(verify(bad, &key(), DsId(2), 3), Err(CapError::Malformed));
        }
        assert_eq!(CapError::Malformed.nfsstat3(), Nfsstat3::Badhandle);
        let empty = Cap {
            chunk_count: 0,
            ..cap()
        }
        .mint(&key(), DsId(2));
        assert_eq!(verify(&empty, &key(), DsId(2), 3), Err(CapError::Malformed));
    }

    #[test]
    fn checks_rights_and_range() {
        let g = ChunkGeometry::default();
        let c = cap();
        let start = 5 * g.chunk_size();
        assert_eq!(c.check(&g, true, start, g.chunk_size()), Ok(()));
        assert_eq!(c.check(&g, true, start - 1, 2), Err(CapError::Denied));
        assert_eq!(
            c.check(&g, false, start + g.chunk_size(), 1),
            Err(CapError::Denied)
        );
        assert_eq!(c.check(&g, false, u64::MAX, 2), Err(CapError::Denied));
        assert_eq!(c.check(&g, true, 0, 0), Ok(()));
        let r = Cap {
            rights: Rights::Read,
            ..c
        };
        assert_eq!(r.check(&g, true, start, 1), Err(CapError::Denied));
        assert_eq!(r.check(&g, false, start, 1), Ok(()));
        assert_eq!(CapError::Denied.nfsstat3(), Nfsstat3::Acces);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_verify_or_panic(
            h in proptest::collection::vec(any::<u8>(), 0..130),
            ds in any::<u64>(),
            gen in any::<u64>(),
        ) {
            prop_assert!(verify(&h, &key(), DsId(ds), gen).unwrap_err().is_bad());
            let _ = peek(&h);
        }

        #[test]
        fn tampered_handles_never_verify(
            file in any::<u64>(),
            first in any::<u64>(),
            count in 1u32..,
            gen in any::<u64>(),
            ds in any::<u64>(),
            at in 0usize..CAP_LEN,
            xor in 1u8..,
        ) {
            let c = Cap { file: FileId(file), first_chunk: first, chunk_count: count,
                          rights: Rights::Read, generation: gen, key_id: 1 };
            let mut h = c.mint(&key(), DsId(ds));
            prop_assert_eq!(verify(&h, &key(), DsId(ds), gen), Ok(c));
            h[at] ^= xor;
            prop_assert!(verify(&h, &key(), DsId(ds), gen).unwrap_err().is_bad());
        }

        #[test]
        fn range_check_never_panics(
            first in any::<u64>(),
            count in 1u32..,
            offset in any::<u64>(),
            len in any::<u64>(),
            write in any::<bool>(),
        ) {
            let c = Cap { first_chunk: first, chunk_count: count, ..cap() };
            let _ = c.check(&ChunkGeometry::default(), write, offset, len);
        }
    }
}

#[cfg(test)]
mod fence_tests {
    use super::*;

    #[test]
    fn fenced_verify_serves_at_or_above_the_fence_only() {
        let key = CapKey::new([9; 32]);
        let ds = DsId(3);
        let cap = |generation| Cap {
            file: FileId(5),
            first_chunk: 0,
            chunk_count: 1,
            rights: Rights::ReadWrite,
            generation,
            key_id: 0,
        };
        let h = cap(10).mint(&key, ds);
        assert!(verify_fenced(&h, &key, ds, 0).is_ok());
        assert!(verify_fenced(&h, &key, ds, 10).is_ok());
        assert!(matches!(
            verify_fenced(&h, &key, ds, 11),
            Err(CapError::Stale { .. })
        ));
        assert_eq!(verify_fenced(&h, &key, DsId(4), 0), Err(CapError::Forged));
        let mut forged = h;
        forged[23..31].copy_from_slice(&20u64.to_be_bytes());
        assert_eq!(verify_fenced(&forged, &key, ds, 11), Err(CapError::Forged));
    }
}
