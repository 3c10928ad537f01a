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
//!   8     2  version (2; 1 is read too)
//!  10     2  header_len: bytes from 0 to the end of the header hash (128 in v1, 136 + 32·n
//!            in v2; at most 4096)
//!  12     1  kind: 1 data segment, 2 metadata
//!  13     3  zero
//!  16     8  ino (a metadata object: the shard's)
//!  24     8  segment
//!  32     8  range start: the file offset of the payload's first byte
//!  40     8  range length: the file bytes the payload stands for
//!  48     8  generation
//!  56     8  payload_len
//!  64    32  blake3(payload)
//!            v1 only:
//!  96    32  blake3(bytes 0 .. 96)
//! 128     …  payload, exactly payload_len bytes
//!            v2:
//!  96     4  block_shift: the payload is checked in blocks of 2^block_shift bytes
//! 100     4  n: the number of blocks, ceil(payload_len / 2^block_shift)
//! 104  32·n  blake3 of each block, in order
//!   …    32  blake3(bytes 0 .. header_len-32)
//!   …     …  payload
//! ```
//!
//! **Why blocks (v2).** A read of a file whose bytes left flash fetches just the range it needs
//! with a ranged GET: the whole payload's blake3 cannot check a part of it, each block's can.
//! Blocks are 1 MiB (an NFS READ is at most that), larger only where an object would need more
//! than [`MAX_BLOCKS`] of them; the header stays under 4 KiB, one small GET.

use bytes::{Bytes, BytesMut};

use crate::keys::ObjectId;

const MAGIC: &[u8; 8] = b"cfs-tier";
/// The format this code writes.
pub const VERSION: u16 = 2;
/// The header length of version 1; in version 2 the fixed fields before the block sums.
pub const HEADER_LEN: usize = 128;
/// Version 2's fixed part: the fields, the block shift and count (the sums and hash follow).
const FIXED_V2: usize = 104;
/// The smallest block: an NFS READ's largest size.
pub const MIN_BLOCK_SHIFT: u32 = 20;
/// Most block sums a header holds (so it fits in [`MAX_HEADER_LEN`]).
pub const MAX_BLOCKS: usize = (MAX_HEADER_LEN - FIXED_V2 - 32) / 32;
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
    /// Version 2: the payload's blocks are `1 << block_shift` bytes, each with its blake3
    /// here; a version 1 header has none (only the whole payload verifies).
    pub block_shift: u32,
    pub block_sums: Vec<[u8; 32]>,
}

impl Header {
    /// Payload bytes `[start, end)` rounded out to whole blocks, or `None` if the object has
    /// no block sums (version 1) or the range is not inside the payload.
    pub fn blocks_for(&self, start: u64, end: u64) -> Option<std::ops::Range<u64>> {
        if self.block_sums.is_empty() || start >= end || end > self.payload_len {
            return None;
        }
        let b = 1u64 << self.block_shift;
        Some((start / b) * b..end.div_ceil(b).saturating_mul(b).min(self.payload_len))
    }

    /// Checks `bytes`, the payload's bytes from offset `at` (a block boundary) to a block
    /// boundary or the payload's end, against the block sums.
    pub fn verify_blocks(&self, at: u64, bytes: &[u8]) -> Result<(), FormatError> {
        let b = 1u64 << self.block_shift;
        if !at.is_multiple_of(b) {
            return Err(FormatError::PayloadChecksum);
        }
        let first = (at / b) as usize;
        for (i, chunk) in bytes.chunks(b as usize).enumerate() {
            let whole = chunk.len() as u64 == b
                || at + (i as u64) * b + chunk.len() as u64 == self.payload_len;
            let sum = self.block_sums.get(first + i);
            if !whole || sum != Some(blake3::hash(chunk).as_bytes()) {
                return Err(FormatError::PayloadChecksum);
            }
        }
        Ok(())
    }
}

/// The block size for a payload of `len` bytes: 1 MiB, or larger where that would need more
/// than [`MAX_BLOCKS`] sums.
fn block_shift_for(len: u64) -> u32 {
    let mut shift = MIN_BLOCK_SHIFT;
    while len.div_ceil(1u64 << shift) > MAX_BLOCKS as u64 {
        shift += 1;
    }
    shift
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
    #[error("block table does not match the payload")]
    BadBlocks,
    #[error("object holds {found:?}, expected {expected:?}")]
    NotThisObject { expected: ObjectId, found: ObjectId },
}

/// Encodes `payload` as the object `id`, standing for file bytes `range_start ..
/// range_start + range_len`.
pub fn encode(id: &ObjectId, range_start: u64, range_len: u64, payload: &[u8]) -> Bytes {
    let shift = block_shift_for(payload.len() as u64);
    let blocks: Vec<&[u8]> = payload.chunks(1usize << shift).collect();
    let header_len = FIXED_V2 + 32 * blocks.len() + HASH;
    let mut buf = BytesMut::with_capacity(header_len + payload.len());
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&VERSION.to_le_bytes());
    buf.extend_from_slice(&(header_len as u16).to_le_bytes());
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
    buf.extend_from_slice(&shift.to_le_bytes());
    buf.extend_from_slice(&(blocks.len() as u32).to_le_bytes());
    for b in &blocks {
        buf.extend_from_slice(blake3::hash(b).as_bytes());
    }
    let header_hash = blake3::hash(&buf);
    buf.extend_from_slice(header_hash.as_bytes());
    debug_assert_eq!(buf.len(), header_len);
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
    if !(1..=VERSION).contains(&version) {
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
    let payload_len = u64_at(56);
    let (block_shift, block_sums) = if version == 1 {
        (0, Vec::new())
    } else {
        block_table(header, payload_len)?
    };
    let h = Header {
        id: ObjectId {
            kind,
            ino: u64_at(16),
            segment: u64_at(24),
            generation: u64_at(48),
        },
        range_start,
        range_len,
        payload_len,
        payload_blake3,
        block_shift,
        block_sums,
    };
    Ok((h, len))
}

/// Version 2's block shift and sums, from a header whose own checksum matched.
fn block_table(header: &[u8], payload_len: u64) -> Result<(u32, Vec<[u8; 32]>), FormatError> {
    let u32_at = |off: usize| {
        let mut b = [0u8; 4];
        b.copy_from_slice(&header[off..off + 4]);
        u32::from_le_bytes(b)
    };
    if header.len() < FIXED_V2 + HASH {
        return Err(FormatError::BadHeaderLen(header.len() as u16));
    }
    let (shift, n) = (u32_at(96), u32_at(100) as usize);
    if !(MIN_BLOCK_SHIFT..=40).contains(&shift)
        || n > MAX_BLOCKS
        || header.len() != FIXED_V2 + 32 * n + HASH
        || payload_len.div_ceil(1u64 << shift) != n as u64
    {
        return Err(FormatError::BadBlocks);
    }
    let sums = header[FIXED_V2..FIXED_V2 + 32 * n]
        .chunks(32)
        .map(|c| {
            let mut s = [0u8; 32];
            s.copy_from_slice(c);
            s
        })
        .collect();
    Ok((shift, sums))
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
        let hl = FIXED_V2 + 32 + HASH;
        assert_eq!(enc.len(), hl + 1000);
        let obj = decode(enc.clone())
            .expect("decodes")
            .verify_id(&id())
            .expect("same id");
        assert_eq!(&obj.payload[..], &payload[..]);
        assert_eq!(obj.header.range_start, 3 << 20);
        assert_eq!(obj.header.range_len, 1000);
        let (h, len) = decode_header(&enc[..hl]).expect("header alone");
        assert_eq!((h, len), (obj.header.clone(), hl));
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
        let hl = decode_header(&enc).expect("valid").1;
        for bit in 0..enc.len() * 8 {
            let mut b = enc.to_vec();
            b[bit / 8] ^= 1 << (bit % 8);
            let err = decode(Bytes::from(b)).expect_err("a flipped bit");
            if bit / 8 >= hl {
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

    /// What version 1 wrote: the fixed fields, then the header hash, then the payload.
    fn encode_v1(id: &ObjectId, payload: &[u8]) -> Bytes {
        let v2 = encode(id, 0, payload.len() as u64, payload);
        let mut b = v2[..96].to_vec();
        b[8..10].copy_from_slice(&1u16.to_le_bytes());
        b[10..12].copy_from_slice(&(HEADER_LEN as u16).to_le_bytes());
        let h = blake3::hash(&b);
        b.extend_from_slice(h.as_bytes());
        b.extend_from_slice(payload);
        Bytes::from(b)
    }

    #[test]
    fn blocks_check_a_range_alone_and_version_1_still_reads() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let len = (5 << 20) + 12_345;
        let payload: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        let enc = encode(&id(), 0, len as u64, &payload);
        let (h, hl) = decode_header(&enc[..MAX_HEADER_LEN]).expect("header");
        assert_eq!((h.block_shift, h.block_sums.len()), (20, 6));
        // A read of bytes 1.5 MiB .. 2.5 MiB needs blocks 1 and 2.
        let r = h.blocks_for(3 << 19, 5 << 19).expect("blocks");
        assert_eq!(r, (1 << 20)..(3 << 20));
        let got = &enc[hl + r.start as usize..hl + r.end as usize];
        h.verify_blocks(r.start, got).expect("intact blocks verify");
        // The last, short block.
        let last = h.blocks_for(len as u64 - 1, len as u64).expect("last");
        assert_eq!(last, (5 << 20)..len as u64);
        h.verify_blocks(last.start, &enc[hl + last.start as usize..])
            .expect("last block");
        // A flipped byte, a short read, a block from elsewhere: refused.
        let mut bad = got.to_vec();
        bad[100] ^= 1;
        assert!(h.verify_blocks(r.start, &bad).is_err());
        assert!(h.verify_blocks(r.start, &got[..got.len() - 1]).is_err());
        assert!(h.verify_blocks(0, got).is_err());
        assert!(h.verify_blocks(r.start + 1, got).is_err());
        assert_eq!(h.blocks_for(0, len as u64 + 1), None);

        // A big payload gets bigger blocks, so the header stays bounded.
        assert_eq!(block_shift_for(1 << 30), 24);
        assert!((1u64 << 30).div_ceil(1 << 24) as usize <= MAX_BLOCKS);

        let v1 = encode_v1(&id(), &payload[..1000]);
        let o = decode(v1.clone()).expect("a version 1 object");
        assert!(o.header.block_sums.is_empty());
        assert_eq!(&o.payload[..], &payload[..1000]);
        assert_eq!(o.header.blocks_for(0, 10), None);
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
