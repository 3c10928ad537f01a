//! DS file handles for reads of data-reduced files (issue 46): a whole-file, read-only view at
//! file offsets that the data server named assembles from the file's segments (it asks the MDS
//! for the file's recipe, fetches the segments' shards, checks every chunk against its id).
//!
//! The handle names the file, the MDS node's layout generation it was minted at (fenced like
//! a mirrored file's handles, [`crate::verify_fenced`]: an unreduce fences the file, so a
//! reader's handle stops verifying before the file's new bytes can differ from the recipe's)
//! and the reduce epoch: the MDS gives the recipe only for a file reduced at that epoch, so a
//! handle of a reduce since retired finds nothing (STALE) even where a fence was missed. It
//! names no segment placement: the data server learns where the segments are with the recipe,
//! so a segment moved by repair needs no new handle.
//!
//! Wire format (64 bytes = `NFS3_FHSIZE`, as shard handles, so one layout builder serves
//! both), big-endian:
//!
//! | bytes | field |
//! |---|---|
//! | 0 | version (3: a reduced-read handle; 1 and 2 are the others) |
//! | 1 | rights: 1 READ (the only value accepted) |
//! | 2 | key id |
//! | 3..11 | file id |
//! | 11..19 | layout generation |
//! | 19..27 | reduce epoch |
//! | 27..32 | zero |
//! | 32..64 | MAC over bytes 0..32 and the DS id |

use crate::capability::{CapError, CapKey};
use crate::dsmap::DsId;
use crate::shardcap::{seal, sealed_by};
use crate::FileId;

pub const REDUCED_CAP_VERSION: u8 = 3;
pub const REDUCED_CAP_LEN: usize = crate::SHARD_CAP_LEN;
const BODY_LEN: usize = 32;
/// Domain separation from the other handles' MACs.
const REDUCED_CAP_CONTEXT: &[u8] = b"cfs ds reduced-read capability v1";

/// The claims of a reduced-read handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReducedCap {
    pub file: FileId,
    pub generation: u64,
    pub epoch: u64,
    pub key_id: u8,
}

impl ReducedCap {
    fn body(&self) -> [u8; BODY_LEN] {
        let mut b = [0u8; BODY_LEN];
        b[0] = REDUCED_CAP_VERSION;
        b[1] = 1;
        b[2] = self.key_id;
        b[3..11].copy_from_slice(&self.file.0.to_be_bytes());
        b[11..19].copy_from_slice(&self.generation.to_be_bytes());
        b[19..27].copy_from_slice(&self.epoch.to_be_bytes());
        b
    }

    /// The handle to put in `ffds_fh_vers` for `ds`.
    pub fn mint(&self, key: &CapKey, ds: DsId) -> [u8; REDUCED_CAP_LEN] {
        seal(key, REDUCED_CAP_CONTEXT, &self.body(), ds)
    }
}

/// Whether `handle` claims to be a reduced-read handle (by length and version): which verifier
/// a DS sends it to. Nothing about it is trusted until [`verify_reduced_fenced`] accepts it.
pub fn is_reduced_handle(handle: &[u8]) -> bool {
    handle.len() == REDUCED_CAP_LEN && handle[0] == REDUCED_CAP_VERSION
}

/// Reads a reduced-read handle's claims without authenticating them (the DS needs the file
/// and generation to find the fence to verify against).
pub fn peek_reduced(handle: &[u8]) -> Result<ReducedCap, CapError> {
    let b: &[u8; REDUCED_CAP_LEN] = handle.try_into().map_err(|_| CapError::Malformed)?;
    if b[0] != REDUCED_CAP_VERSION || b[1] != 1 || b[27..32] != [0; 5] {
        return Err(CapError::Malformed);
    }
    let u64_at = |i: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[i..i + 8]);
        u64::from_be_bytes(a)
    };
    Ok(ReducedCap {
        file: FileId(u64_at(3)),
        generation: u64_at(11),
        epoch: u64_at(19),
        key_id: b[2],
    })
}

/// Authenticates a reduced-read handle presented to DS `ds`, then checks it against the file's
/// fence there, as [`crate::verify_fenced`] does a mirrored file's: any authentic handle at or
/// above the fence is served; the MAC is checked first, so a forgery learns nothing.
pub fn verify_reduced_fenced(
    handle: &[u8],
    key: &CapKey,
    ds: DsId,
    fence: u64,
) -> Result<ReducedCap, CapError> {
    let cap = peek_reduced(handle)?;
    if !sealed_by(handle, key, REDUCED_CAP_CONTEXT, ds) {
        return Err(CapError::Forged);
    }
    if cap.generation < fence {
        return Err(CapError::Stale {
            handle: cap.generation,
            current: fence,
        });
    }
    Ok(cap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> CapKey {
        CapKey::new([9; 32])
    }

    fn cap() -> ReducedCap {
        ReducedCap {
            file: FileId(42),
            generation: (3 << 56) + 5,
            epoch: 7,
            key_id: 0,
        }
    }

    #[test]
    fn round_trips_fits_nfsv3_and_is_bound_to_its_data_server() {
        let h = cap().mint(&key(), DsId(4));
        assert_eq!(h.len(), proto::nfs3::NFS3_FHSIZE);
        assert!(is_reduced_handle(&h));
        assert!(!crate::is_shard_handle(&h));
        assert_eq!(verify_reduced_fenced(&h, &key(), DsId(4), 0), Ok(cap()));
        assert_eq!(
            verify_reduced_fenced(&h, &key(), DsId(5), 0),
            Err(CapError::Forged)
        );
    }

    #[test]
    fn fenced_verify_serves_at_or_above_the_fence_only() {
        let h = cap().mint(&key(), DsId(1));
        let g = cap().generation;
        assert!(verify_reduced_fenced(&h, &key(), DsId(1), g).is_ok());
        assert!(verify_reduced_fenced(&h, &key(), DsId(1), g - 1).is_ok());
        assert_eq!(
            verify_reduced_fenced(&h, &key(), DsId(1), g + 1),
            Err(CapError::Stale {
                handle: g,
                current: g + 1
            })
        );
    }

    #[test]
    fn other_handles_are_malformed_here() {
        let shard = crate::ShardCap {
            file: FileId(42),
            kind: crate::ShardKind::Assembled,
            k: 2,
            m: 1,
            unit_shift: 20,
            epoch: 7,
            placement: 1,
            key_id: 0,
        }
        .mint(&key(), DsId(1))
        .expect("valid");
        assert!(!is_reduced_handle(&shard));
        assert_eq!(
            verify_reduced_fenced(&shard, &key(), DsId(1), 0),
            Err(CapError::Malformed)
        );
    }

    #[test]
    fn every_single_bit_flip_is_rejected_as_bad() {
        let h = cap().mint(&key(), DsId(2));
        for bit in 0..REDUCED_CAP_LEN * 8 {
            let mut f = h;
            f[bit / 8] ^= 1 << (bit % 8);
            let e = verify_reduced_fenced(&f, &key(), DsId(2), 0).unwrap_err();
            assert!(e.is_bad(), "bit {bit}: {e:?}");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_verify_or_panic(
            h in proptest::collection::vec(any::<u8>(), 0..130),
            ds in any::<u64>(),
        ) {
            prop_assert!(verify_reduced_fenced(&h, &key(), DsId(ds), 0).unwrap_err().is_bad());
        }
    }
}
