//! The self-describing object format: what a bucket holds.
//!
//! An object found in a bucket with nothing else (the metadata that named it lost, `cfs repair
//! --from-s3`) says what it is and proves it is intact: a fixed header naming the file, the
//! segment and byte range, the generation and the payload's length and blake3, then the
//! payload. The header carries its own blake3 too, so a flipped bit in the naming fields is
//! caught before the payload is even read.
//!
//! ```text
//! off  size  field (little-endian)
//!   0     8  magic "cfs-tier"
//!   8     2  version (1)
//!  10     2  header_len: bytes from 0 to the end of the header hash (128 in v1; at most 4096;
//!            a later version may add fields before the hash, covered by it)
//!  12     1  kind: 1 data segment, 2 metadata
//!  13     3  zero
//!  16     8  ino (a metadata object: the shard's)
//!  24     8  segment
//!  32     8  range start: the file offset of the payload's first byte
//!  40     8  range length: the file bytes the payload stands for
//!  48     8  generation
//!  56     8  payload_len
//!  64    32  blake3(payload)
//!  96    32  blake3(bytes 0 .. header_len-32)
//! 128     …  payload, exactly payload_len bytes
//! ```

use bytes::{Bytes, BytesMut};

use crate::keys::ObjectId;

const MAGIC: &[u8; 8] = b"cfs-tier";
/// The format this code writes.
pub const VERSION: u16 = 1;
/// The header length of version 1.
pub const HEADER_LEN: usize = 128;
/// No header is longer, whatever its length field says: bounds what a reader trusts.
pub const MAX_HEADER_LEN: usize = 4096;
const HASH: usize = 32;

/// The payload size a data object is packed to (segments of ~2 MB are gathered until it).
///
/// Measured with `examples/s3bench.rs` against moto on 127.0.0.1, one request at a time, on a
/// loaded 2-core machine: PUT ran 130/110/99/97 MiB/s for 4/16/32/64 MiB objects, GET
/// 234/328/293/323 MiB/s; tier (encode, verify) at 0.83-0.95 of the plain SDK's rate at every
/// size. moto's rate is its own per-byte cost, flat from 16 MiB, so it argues for no size; S3
/// does: a request costs 10-30 ms before the first byte and is billed per request, so on one
/// stream at ~100 MB/s (S3's usual per-connection rate) a 64 MiB object loses under 5 % to it,
/// a 4 MiB one about 40 %. Larger buys little more and costs memory (`max_in_flight` × size
/// buffered) and resent bytes on a retry. So the seed's 64 MiB stands.
pub const DATA_OBJECT_SIZE: usize = 64 << 20;

/// What an object holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// A segment of a file's data.
    Data = 1,
    /// Metadata: a shard checkpoint or log tail.
    Metadata = 2,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Kind> {
        match v {
            1 => Some(Kind::Data),
            2 => Some(Kind::Metadata),
            _ => None,
        }
    }
}

/// The decoded, verified header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub id: ObjectId,
    /// File offset of the payload's first byte.
    pub range_start: u64,
    /// File bytes the payload stands for (the payload length until payloads are compressed).
    pub range_len: u64,
    pub payload_len: u64,
    pub payload_blake3: [u8; 32],
}

/// A decoded object whose header and payload both verified.
#[derive(Clone, Debug)]
pub struct Object {
    pub header: Header,
    pub payload: Bytes,
}

/// Why bytes are not a valid object.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("object truncated: {have} bytes, the {part} needs {need}")]
    Truncated {
        part: &'static str,
        need: u64,
        have: u64,
    },
    #[error("not a cfs object (bad magic)")]
    BadMagic,
    #[error("object format version {0} (this build reads {VERSION})")]
    UnsupportedVersion(u16),
    #[error("header length {0} out of bounds")]
    BadHeaderLen(u16),
    #[error("unknown object kind {0}")]
    BadKind(u8),
    #[error("reserved header bytes are not zero")]
    Reserved,
    #[error("header checksum mismatch")]
    HeaderChecksum,
    #[error("byte range start {start} + length {len} overflows")]
    BadRange { start: u64, len: u64 },
    #[error("payload is {actual} bytes, header says {header}")]
    PayloadLength { header: u64, actual: u64 },
    #[error("payload checksum mismatch")]
    PayloadChecksum,
    #[error("object holds {found:?}, expected {expected:?}")]
    NotThisObject { expected: ObjectId, found: ObjectId },
}

/// Encodes `payload` as the object `id`, standing for file bytes `range_start ..
/// range_start + range_len`.
pub fn encode(id: &ObjectId, range_start: u64, range_len: u64, payload: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(HEADER_LEN + payload.len());
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&VERSION.to_le_bytes());
    buf.extend_from_slice(&(HEADER_LEN as u16).to_le_bytes());
    buf.extend_from_slice(&[id.kind as u8, 0, 0, 0]);
    for v in [
        id.ino,
        id.segment,
        range_start,
        range_len,
        id.generation,
        payload.len() as u64,
    ] {
        buf.extend_from_slice(&v.to_le_bytes());
    }
    buf.extend_from_slice(blake3::hash(payload).as_bytes());
    let header_hash = blake3::hash(&buf);
    buf.extend_from_slice(header_hash.as_bytes());
    debug_assert_eq!(buf.len(), HEADER_LEN);
    buf.extend_from_slice(payload);
    buf.freeze()
}

/// Reads and verifies a header from the start of `bytes` (the whole object or just its first
/// [`MAX_HEADER_LEN`] bytes); returns it and its length.
pub fn decode_header(bytes: &[u8]) -> Result<(Header, usize), FormatError> {
    let truncated = |need: usize| FormatError::Truncated {
        part: "header",
        need: need as u64,
        have: bytes.len() as u64,
    };
    let fixed = bytes
        .get(..HEADER_LEN)
        .ok_or_else(|| truncated(HEADER_LEN))?;
    if &fixed[..8] != MAGIC {
        return Err(FormatError::BadMagic);
    }
    let version = u16::from_le_bytes([fixed[8], fixed[9]]);
    if version != VERSION {
        return Err(FormatError::UnsupportedVersion(version));
    }
    let header_len = u16::from_le_bytes([fixed[10], fixed[11]]);
    let len = usize::from(header_len);
    if !(HEADER_LEN..=MAX_HEADER_LEN).contains(&len) {
        return Err(FormatError::BadHeaderLen(header_len));
    }
    let header = bytes.get(..len).ok_or_else(|| truncated(len))?;
    let (covered, stored) = header.split_at(len - HASH);
    if blake3::hash(covered).as_bytes() != stored {
        return Err(FormatError::HeaderChecksum);
    }
    // The checksum matched: what follows reads fields a writer put there.
    let kind = Kind::from_u8(fixed[12]).ok_or(FormatError::BadKind(fixed[12]))?;
    if fixed[13..16] != [0, 0, 0] {
        return Err(FormatError::Reserved);
    }
    let u64_at = |off: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&fixed[off..off + 8]);
        u64::from_le_bytes(b)
    };
    let (range_start, range_len) = (u64_at(32), u64_at(40));
    if range_start.checked_add(range_len).is_none() {
        return Err(FormatError::BadRange {
            start: range_start,
            len: range_len,
        });
    }
    let mut payload_blake3 = [0u8; 32];
    payload_blake3.copy_from_slice(&fixed[64..96]);
    let h = Header {
        id: ObjectId {
            kind,
            ino: u64_at(16),
            segment: u64_at(24),
            generation: u64_at(48),
        },
        range_start,
        range_len,
        payload_len: u64_at(56),
        payload_blake3,
    };
    Ok((h, len))
}

/// Decodes and verifies a whole object: header, then the payload's length and blake3.
pub fn decode(bytes: Bytes) -> Result<Object, FormatError> {
    let (header, len) = decode_header(&bytes)?;
    let actual = (bytes.len() - len) as u64;
    if actual < header.payload_len {
        return Err(FormatError::Truncated {
            part: "payload",
            need: len as u64 + header.payload_len,
            have: bytes.len() as u64,
        });
    }
    if actual != header.payload_len {
        return Err(FormatError::PayloadLength {
            header: header.payload_len,
            actual,
        });
    }
    let payload = bytes.slice(len..);
    if blake3::hash(&payload).as_bytes() != &header.payload_blake3 {
        return Err(FormatError::PayloadChecksum);
    }
    Ok(Object { header, payload })
}

impl Object {
    /// Checks that the object is the one its key (or the metadata) named.
    pub fn verify_id(self, id: &ObjectId) -> Result<Object, FormatError> {
        if self.header.id == *id {
            Ok(self)
        } else {
            Err(FormatError::NotThisObject {
                expected: *id,
                found: self.header.id,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn id() -> ObjectId {
        ObjectId {
            kind: Kind::Data,
            ino: 0x0001_0000_0000_0042,
            segment: 3,
            generation: 9,
        }
    }

    #[test]
    fn round_trip() {
        let payload: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let enc = encode(&id(), 3 << 20, 1000, &payload);
        assert_eq!(enc.len(), HEADER_LEN + 1000);
        let obj = decode(enc.clone())
            .expect("decodes")
            .verify_id(&id())
            .expect("same id");
        assert_eq!(&obj.payload[..], &payload[..]);
        assert_eq!(obj.header.range_start, 3 << 20);
        assert_eq!(obj.header.range_len, 1000);
        let (h, len) = decode_header(&enc[..HEADER_LEN]).expect("header alone");
        assert_eq!((h, len), (obj.header.clone(), HEADER_LEN));
        let other = ObjectId {
            generation: 10,
            ..id()
        };
        assert!(matches!(
            obj.verify_id(&other),
            Err(FormatError::NotThisObject { .. })
        ));
        // An empty payload is an object too.
        let e = decode(encode(&id(), 0, 0, &[])).expect("empty");
        assert!(e.payload.is_empty());
    }

    #[test]
    fn every_flipped_bit_and_every_truncation_is_caught() {
        let payload: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let enc = encode(&id(), 0, 300, &payload);
        for bit in 0..enc.len() * 8 {
            let mut b = enc.to_vec();
            b[bit / 8] ^= 1 << (bit % 8);
            let err = decode(Bytes::from(b)).expect_err("a flipped bit");
            if bit / 8 >= HEADER_LEN {
                assert_eq!(err, FormatError::PayloadChecksum, "bit {bit}");
            }
        }
        for n in 0..enc.len() {
            let err = decode(enc.slice(..n)).expect_err("a truncation");
            assert!(matches!(err, FormatError::Truncated { .. }), "{n}: {err:?}");
        }
        let mut long = enc.to_vec();
        long.push(0);
        assert_eq!(
            decode(Bytes::from(long)).expect_err("trailing byte"),
            FormatError::PayloadLength {
                header: 300,
                actual: 301
            }
        );
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(45);
        let valid = encode(&id(), 0, 64, &[7u8; 64]);
        for round in 0..20_000 {
            let bytes: Vec<u8> = match round % 4 {
                // Pure noise, sometimes with our magic and version in front.
                0 => (0..rng.gen_range(0..600)).map(|_| rng.gen()).collect(),
                1 => {
                    let mut b: Vec<u8> = (0..rng.gen_range(0..600)).map(|_| rng.gen()).collect();
                    let n = b.len().min(10);
                    b[..n].copy_from_slice(&valid[..n]);
                    b
                }
                // A valid object with random bytes overwritten, then cut anywhere.
                _ => {
                    let mut b = valid.to_vec();
                    for _ in 0..rng.gen_range(1..4) {
                        let i = rng.gen_range(0..b.len());
                        b[i] = rng.gen();
                    }
                    b.truncate(rng.gen_range(0..=b.len()));
                    b
                }
            };
            let _ = decode(Bytes::from(bytes.clone()));
            let _ = decode_header(&bytes);
        }
        // A header claiming more than the bound is refused before anything is read past it.
        let mut b = valid.to_vec();
        b[10..12].copy_from_slice(&u16::MAX.to_le_bytes());
        assert_eq!(
            decode(Bytes::from(b)).expect_err("huge header"),
            FormatError::BadHeaderLen(u16::MAX)
        );
    }
}
