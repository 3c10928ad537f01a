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
//!   8     2  version (3 if sealed, else 2; 1 is read too)
//!  10     2  header_len: bytes from 0 to the end of the header hash (128 in v1, 136 + 32·n
//!            in v2, 168 + 32·n sealed; at most 4096)
//!  12     1  kind: 1 data segment, 2 metadata
//!  13     1  flags (v3; zero before): bit 0 sealed, the others zero
//!  14     2  zero
//!  16     8  ino (a metadata object: the shard's)
//!  24     8  segment
//!  32     8  range start: the file offset of the payload's first byte
//!  40     8  range length: the file bytes the payload stands for
//!  48     8  generation
//!  56     8  payload_len
//!  64    32  blake3(payload); sealed: keyed(3 ‖ nonce ‖ payload)
//!            v1 only:
//!  96    32  blake3(bytes 0 .. 96)
//! 128     …  payload, exactly payload_len bytes
//!            v2 (and a v3 with no flags):
//!  96     4  block_shift: the payload is checked in blocks of 2^block_shift bytes
//! 100     4  n: the number of blocks, ceil(payload_len / 2^block_shift)
//! 104  32·n  blake3 of each block, in order
//!   …    32  blake3(bytes 0 .. header_len-32)
//!   …     …  payload
//!            v3 sealed (`seal.rs`; keyed(x) is BLAKE3 keyed with the MAC key):
//!  96     4  block_shift
//! 100     4  n
//! 104    24  nonce: random (the OS's), one per object
//! 128     8  key tag: names the key it is sealed under (`SealKey::tag`)
//! 136  32·n  keyed(2 ‖ nonce ‖ i as u64 ‖ block i), block i of the payload as stored
//!   …    32  keyed(1 ‖ bytes 0 .. header_len-32)
//!   …     …  payload: the plaintext XORed with XChaCha20(cipher key, nonce), same length
//! ```
//!
//! **Why blocks (v2).** A read of a file whose bytes left flash fetches just the range it needs
//! with a ranged GET: the whole payload's blake3 cannot check a part of it, each block's can.
//! Blocks are 1 MiB (an NFS READ is at most that), larger only where an object would need more
//! than [`MAX_BLOCKS`] of them; the header stays under 4 KiB, one small GET.
//!
//! **Sealed (v3, issue 46: the bucket holds only ciphertext).** Given a [`SealKey`], `encode`
//! enciphers the payload with a stream cipher (length-preserving, so the blocks and ranged
//! reads stay as they are, and a range deciphers alone from its offset) and makes every sum
//! over the ciphertext with a keyed hash (encrypt-then-MAC): the header's own, the payload's
//! and each block's. So whoever can write to the bucket but has no key cannot change, swap or
//! cut a block or a header field unnoticed, and the header shows no hash of the plaintext.
//! A plaintext object is still written as version 2, which it is byte for byte, so a build
//! from before sealing reads it (a rolling upgrade).
//!
//! **Which key reads what.** A sealed object needs the key it was sealed under: with none, the
//! read fails with [`FormatError::Sealed`]; with another, [`FormatError::WrongKey`] (both tags
//! named). A plaintext object reads with or without a key, so objects uploaded before
//! encryption was turned on stay readable. The flip side: a reader with a key does not insist
//! on a sealed object, so a bucket writer could put a plaintext object, sums and all, in place
//! of a sealed one; whoever records an upload must record that it was sealed
//! ([`Header::sealing`]) and refuse a plaintext header in its place.

use bytes::{Bytes, BytesMut};

use crate::keys::ObjectId;
use crate::seal::{self, Hex, SealKey, MAX_SEALED_PAYLOAD, NONCE_LEN, TAG_LEN};

const MAGIC: &[u8; 8] = b"cfs-tier";
/// The newest format, which this code writes for a sealed object (a plaintext one is
/// [`PLAIN_VERSION`]); 1 to this are read.
pub const VERSION: u16 = 3;
/// The format a plaintext object is written in: version 3 with no flags is its layout, and a
/// build from before version 3 reads it.
pub const PLAIN_VERSION: u16 = 2;
/// The header length of version 1; in version 2 the fixed fields before the block sums.
pub const HEADER_LEN: usize = 128;
/// Version 2's fixed part: the fields, the block shift and count (the sums and hash follow).
const FIXED_V2: usize = 104;
/// A sealed header's fixed part: version 2's, the nonce and the key tag.
const FIXED_SEALED: usize = FIXED_V2 + NONCE_LEN + TAG_LEN;
/// Version 3's flag: the payload is sealed.
const FLAG_SEALED: u8 = 1;
/// The smallest block: an NFS READ's largest size.
pub const MIN_BLOCK_SHIFT: u32 = 20;
/// Most block sums a header holds (so it fits in [`MAX_HEADER_LEN`]).
pub const MAX_BLOCKS: usize = (MAX_HEADER_LEN - FIXED_V2 - 32) / 32;
/// Most block sums a sealed header holds (its nonce and tag take room).
const MAX_SEALED_BLOCKS: usize = (MAX_HEADER_LEN - FIXED_SEALED - 32) / 32;
const _: () = assert!(FIXED_SEALED + 32 * MAX_SEALED_BLOCKS + HASH <= MAX_HEADER_LEN);
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

/// What a sealed object's header says of its sealing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sealing {
    /// The cipher's nonce for this object.
    pub nonce: [u8; NONCE_LEN],
    /// The tag of the key it is sealed under ([`SealKey::tag`]).
    pub key_tag: [u8; TAG_LEN],
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
    /// The payload's blake3; in a sealed object the keyed sum of its ciphertext, which says
    /// nothing of the plaintext.
    pub payload_blake3: [u8; 32],
    /// Version 2: the payload's blocks are `1 << block_shift` bytes, each with its blake3
    /// here (keyed, in a sealed object); a version 1 header has none (only the whole payload
    /// verifies).
    pub block_shift: u32,
    pub block_sums: Vec<[u8; 32]>,
    /// A sealed object's nonce and key tag; `None` for plaintext.
    pub sealing: Option<Sealing>,
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

    /// Checks `bytes`, the payload's bytes (as stored) from offset `at` (a block boundary) to
    /// a block boundary or the payload's end, against the block sums. A sealed object's need
    /// its key as `seal`.
    pub fn verify_blocks(
        &self,
        at: u64,
        bytes: &[u8],
        seal: Option<&SealKey>,
    ) -> Result<(), FormatError> {
        let key = self.key(seal)?;
        let b = 1u64 << self.block_shift;
        if !at.is_multiple_of(b) {
            return Err(FormatError::PayloadChecksum);
        }
        let first = at / b;
        for (i, chunk) in bytes.chunks(b as usize).enumerate() {
            let index = first + i as u64;
            let whole = chunk.len() as u64 == b
                || at + (i as u64) * b + chunk.len() as u64 == self.payload_len;
            let sum = match key {
                Some((k, nonce)) => k.block_sum(&nonce, index, chunk),
                None => blake3::hash(chunk),
            };
            let stored = usize::try_from(index)
                .ok()
                .and_then(|i| self.block_sums.get(i));
            if !whole || !stored.is_some_and(|s| sum == *s) {
                return Err(FormatError::PayloadChecksum);
            }
        }
        Ok(())
    }

    /// Turns `buf`, payload bytes as stored from offset `at` (any offset), into the
    /// plaintext in place: deciphers a sealed object's (`seal` its key), leaves a plaintext
    /// object's as they are. Verify first ([`Header::verify_blocks`]): this checks nothing.
    pub fn decipher(
        &self,
        at: u64,
        buf: &mut [u8],
        seal: Option<&SealKey>,
    ) -> Result<(), FormatError> {
        let Some((k, nonce)) = self.key(seal)? else {
            return Ok(());
        };
        if at.saturating_add(buf.len() as u64) > self.payload_len {
            return Err(FormatError::BadRange {
                start: at,
                len: buf.len() as u64,
            });
        }
        k.apply(&nonce, at, buf)
    }

    /// The key and nonce a sealed object's sums and cipher need, `None` for a plaintext
    /// object (read with or without a key); a sealed one needs `seal`, the key it names.
    fn key<'k>(
        &self,
        seal: Option<&'k SealKey>,
    ) -> Result<Option<(&'k SealKey, [u8; NONCE_LEN])>, FormatError> {
        let Some(s) = &self.sealing else {
            return Ok(None);
        };
        let k = seal.ok_or(FormatError::Sealed)?;
        k.check_tag(s.key_tag)?;
        Ok(Some((k, s.nonce)))
    }
}

/// The block size for a payload of `len` bytes: 1 MiB, or larger where that would need more
/// than `max` sums.
fn block_shift_for(len: u64, max: usize) -> u32 {
    let mut shift = MIN_BLOCK_SHIFT;
    while len.div_ceil(1u64 << shift) > max as u64 {
        shift += 1;
    }
    shift
}

/// A decoded object whose header and payload both verified; the payload is plaintext.
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
    #[error("object format version {0} (this build reads 1 to {VERSION})")]
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
    /// A sealed object read with no key.
    #[error("object is encrypted; the cluster's data key is needed")]
    Sealed,
    /// A sealed object read with a key other than the one it names.
    #[error(
        "object is encrypted under the data key tagged {}, not this cluster's ({})",
        Hex(.found),
        Hex(.ours)
    )]
    WrongKey {
        found: [u8; TAG_LEN],
        ours: [u8; TAG_LEN],
    },
    #[error("sealed payload of {0} bytes is past the cipher's range")]
    SealedTooLarge(u64),
}

/// Encodes `payload` as the object `id`, standing for file bytes `range_start ..
/// range_start + range_len`: sealed under `seal` if given (version 3), else plaintext
/// (version 2).
pub fn encode(
    id: &ObjectId,
    range_start: u64,
    range_len: u64,
    payload: &[u8],
    seal: Option<&SealKey>,
) -> Bytes {
    let sealed = seal.map(|k| (k, seal::nonce()));
    let (fixed, max_blocks) = match sealed {
        Some(_) => (FIXED_SEALED, MAX_SEALED_BLOCKS),
        None => (FIXED_V2, MAX_BLOCKS),
    };
    let shift = block_shift_for(payload.len() as u64, max_blocks);
    let n = payload.len().div_ceil(1usize << shift);
    let header_len = fixed + 32 * n + HASH;
    // The payload is copied in first so it is enciphered in place, then the header (whose
    // sums are over the bytes as stored) is written in front of it: one copy of the payload.
    let mut buf = BytesMut::with_capacity(header_len + payload.len());
    buf.resize(header_len, 0);
    buf.extend_from_slice(payload);
    let (head, body) = buf.split_at_mut(header_len);
    if let Some((k, nonce)) = &sealed {
        if k.apply(nonce, 0, body).is_err() {
            // Past the cipher's range (128 GiB, no object comes near): no plaintext goes
            // out, and every reader refuses the header's length (`SealedTooLarge`).
            body.fill(0);
        }
    }
    let mut h = Vec::with_capacity(header_len);
    h.extend_from_slice(MAGIC);
    let (version, flags) = match sealed {
        Some(_) => (VERSION, FLAG_SEALED),
        None => (PLAIN_VERSION, 0),
    };
    h.extend_from_slice(&version.to_le_bytes());
    h.extend_from_slice(&(header_len as u16).to_le_bytes());
    h.extend_from_slice(&[id.kind as u8, flags, 0, 0]);
    for v in [
        id.ino,
        id.segment,
        range_start,
        range_len,
        id.generation,
        payload.len() as u64,
    ] {
        h.extend_from_slice(&v.to_le_bytes());
    }
    match &sealed {
        Some((k, nonce)) => h.extend_from_slice(k.payload_sum(nonce, body).as_bytes()),
        None => h.extend_from_slice(blake3::hash(body).as_bytes()),
    }
    h.extend_from_slice(&shift.to_le_bytes());
    h.extend_from_slice(&(n as u32).to_le_bytes());
    if let Some((k, nonce)) = &sealed {
        h.extend_from_slice(nonce);
        h.extend_from_slice(&k.tag());
    }
    for (i, b) in body.chunks(1usize << shift).enumerate() {
        match &sealed {
            Some((k, nonce)) => h.extend_from_slice(k.block_sum(nonce, i as u64, b).as_bytes()),
            None => h.extend_from_slice(blake3::hash(b).as_bytes()),
        }
    }
    let header_hash = match &sealed {
        Some((k, _)) => k.header_sum(&h),
        None => blake3::hash(&h),
    };
    h.extend_from_slice(header_hash.as_bytes());
    debug_assert_eq!(h.len(), header_len);
    head.copy_from_slice(&h);
    buf.freeze()
}

/// Reads and verifies a header from the start of `bytes` (the whole object or just its first
/// [`MAX_HEADER_LEN`] bytes); returns it and its length. A sealed object's header verifies
/// only under its key, `seal`; a plaintext one with or without a key.
pub fn decode_header(bytes: &[u8], seal: Option<&SealKey>) -> Result<(Header, usize), FormatError> {
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
    // Only version 3 has flags; before, byte 13 is reserved (checked below).
    let flags = if version >= 3 { fixed[13] } else { 0 };
    let sealing = if flags & FLAG_SEALED != 0 {
        // The flag, nonce and tag are read before the checksum (the key checks it): a forged
        // or damaged one can only turn into another refusal.
        let key = seal.ok_or(FormatError::Sealed)?;
        if len < FIXED_SEALED + HASH {
            return Err(FormatError::BadHeaderLen(header_len));
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&header[FIXED_V2..FIXED_V2 + NONCE_LEN]);
        let mut key_tag = [0u8; TAG_LEN];
        key_tag.copy_from_slice(&header[FIXED_V2 + NONCE_LEN..FIXED_SEALED]);
        key.check_tag(key_tag)?;
        if key.header_sum(covered) != *stored {
            return Err(FormatError::HeaderChecksum);
        }
        Some(Sealing { nonce, key_tag })
    } else {
        if blake3::hash(covered).as_bytes() != stored {
            return Err(FormatError::HeaderChecksum);
        }
        None
    };
    // The checksum matched: what follows reads fields a writer put there.
    let kind = Kind::from_u8(fixed[12]).ok_or(FormatError::BadKind(fixed[12]))?;
    if fixed[13] & !(flags & FLAG_SEALED) != 0 || fixed[14..16] != [0, 0] {
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
    if sealing.is_some() && payload_len > MAX_SEALED_PAYLOAD {
        return Err(FormatError::SealedTooLarge(payload_len));
    }
    let (block_shift, block_sums) = match (version, sealing) {
        (1, _) => (0, Vec::new()),
        (_, Some(_)) => block_table(header, payload_len, FIXED_SEALED)?,
        (_, None) => block_table(header, payload_len, FIXED_V2)?,
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
        sealing,
    };
    Ok((h, len))
}

/// The block shift and sums of a header whose own checksum matched, the sums starting at
/// `fixed`.
fn block_table(
    header: &[u8],
    payload_len: u64,
    fixed: usize,
) -> Result<(u32, Vec<[u8; 32]>), FormatError> {
    let u32_at = |off: usize| {
        let mut b = [0u8; 4];
        b.copy_from_slice(&header[off..off + 4]);
        u32::from_le_bytes(b)
    };
    if header.len() < fixed + HASH {
        return Err(FormatError::BadHeaderLen(header.len() as u16));
    }
    let (shift, n) = (u32_at(96), u32_at(100) as usize);
    if !(MIN_BLOCK_SHIFT..=40).contains(&shift)
        || n > MAX_BLOCKS
        || header.len() != fixed + 32 * n + HASH
        || payload_len.div_ceil(1u64 << shift) != n as u64
    {
        return Err(FormatError::BadBlocks);
    }
    let sums = header[fixed..fixed + 32 * n]
        .chunks(32)
        .map(|c| {
            let mut s = [0u8; 32];
            s.copy_from_slice(c);
            s
        })
        .collect();
    Ok((shift, sums))
}

/// Decodes and verifies a whole object: header, then the payload's length and sum; a sealed
/// object's payload (which needs its key, `seal`) comes back deciphered.
pub fn decode(bytes: Bytes, seal: Option<&SealKey>) -> Result<Object, FormatError> {
    let (header, len) = decode_header(&bytes, seal)?;
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
    let Some((k, nonce)) = header.key(seal)? else {
        if blake3::hash(&payload).as_bytes() != &header.payload_blake3 {
            return Err(FormatError::PayloadChecksum);
        }
        return Ok(Object { header, payload });
    };
    if k.payload_sum(&nonce, &payload) != header.payload_blake3 {
        return Err(FormatError::PayloadChecksum);
    }
    let mut plain = payload.to_vec();
    k.apply(&nonce, 0, &mut plain)?;
    Ok(Object {
        header,
        payload: Bytes::from(plain),
    })
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
        let enc = encode(&id(), 3 << 20, 1000, &payload, None);
        let hl = FIXED_V2 + 32 + HASH;
        assert_eq!(enc.len(), hl + 1000);
        let obj = decode(enc.clone(), None)
            .expect("decodes")
            .verify_id(&id())
            .expect("same id");
        assert_eq!(&obj.payload[..], &payload[..]);
        assert_eq!(obj.header.range_start, 3 << 20);
        assert_eq!(obj.header.range_len, 1000);
        let (h, len) = decode_header(&enc[..hl], None).expect("header alone");
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
        let e = decode(encode(&id(), 0, 0, &[], None), None).expect("empty");
        assert!(e.payload.is_empty());
    }

    #[test]
    fn every_flipped_bit_and_every_truncation_is_caught() {
        let payload: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let enc = encode(&id(), 0, 300, &payload, None);
        let hl = decode_header(&enc, None).expect("valid").1;
        for bit in 0..enc.len() * 8 {
            let mut b = enc.to_vec();
            b[bit / 8] ^= 1 << (bit % 8);
            let err = decode(Bytes::from(b), None).expect_err("a flipped bit");
            if bit / 8 >= hl {
                assert_eq!(err, FormatError::PayloadChecksum, "bit {bit}");
            }
        }
        for n in 0..enc.len() {
            let err = decode(enc.slice(..n), None).expect_err("a truncation");
            assert!(matches!(err, FormatError::Truncated { .. }), "{n}: {err:?}");
        }
        let mut long = enc.to_vec();
        long.push(0);
        assert_eq!(
            decode(Bytes::from(long), None).expect_err("trailing byte"),
            FormatError::PayloadLength {
                header: 300,
                actual: 301
            }
        );
    }

    /// What version 1 wrote: the fixed fields, then the header hash, then the payload.
    fn encode_v1(id: &ObjectId, payload: &[u8]) -> Bytes {
        let v2 = encode(id, 0, payload.len() as u64, payload, None);
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
        let enc = encode(&id(), 0, len as u64, &payload, None);
        let (h, hl) = decode_header(&enc[..MAX_HEADER_LEN], None).expect("header");
        assert_eq!((h.block_shift, h.block_sums.len()), (20, 6));
        // A read of bytes 1.5 MiB .. 2.5 MiB needs blocks 1 and 2.
        let r = h.blocks_for(3 << 19, 5 << 19).expect("blocks");
        assert_eq!(r, (1 << 20)..(3 << 20));
        let got = &enc[hl + r.start as usize..hl + r.end as usize];
        h.verify_blocks(r.start, got, None)
            .expect("intact blocks verify");
        // The last, short block.
        let last = h.blocks_for(len as u64 - 1, len as u64).expect("last");
        assert_eq!(last, (5 << 20)..len as u64);
        h.verify_blocks(last.start, &enc[hl + last.start as usize..], None)
            .expect("last block");
        // A flipped byte, a short read, a block from elsewhere: refused.
        let mut bad = got.to_vec();
        bad[100] ^= 1;
        assert!(h.verify_blocks(r.start, &bad, None).is_err());
        assert!(h
            .verify_blocks(r.start, &got[..got.len() - 1], None)
            .is_err());
        assert!(h.verify_blocks(0, got, None).is_err());
        assert!(h.verify_blocks(r.start + 1, got, None).is_err());
        assert_eq!(h.blocks_for(0, len as u64 + 1), None);

        // A big payload gets bigger blocks, so the header stays bounded.
        assert_eq!(block_shift_for(1 << 30, MAX_BLOCKS), 24);
        assert!((1u64 << 30).div_ceil(1 << 24) as usize <= MAX_BLOCKS);

        let v1 = encode_v1(&id(), &payload[..1000]);
        let o = decode(v1.clone(), None).expect("a version 1 object");
        assert!(o.header.block_sums.is_empty());
        assert_eq!(&o.payload[..], &payload[..1000]);
        assert_eq!(o.header.blocks_for(0, 10), None);
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(45);
        let k = key();
        let plain = encode(&id(), 0, 64, &[7u8; 64], None);
        let sealed = encode(&id(), 0, 64, &[7u8; 64], Some(&k));
        for round in 0..20_000 {
            let valid = if round % 8 < 4 { &plain } else { &sealed };
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
            for seal in [None, Some(&k)] {
                let _ = decode(Bytes::from(bytes.clone()), seal);
                if let Ok((h, len)) = decode_header(&bytes, seal) {
                    assert!(len <= bytes.len().min(MAX_HEADER_LEN));
                    let rest = &bytes[len..];
                    let _ = h.verify_blocks(0, rest, seal);
                    let mut buf = rest.to_vec();
                    let _ = h.decipher(0, &mut buf, seal);
                }
            }
        }
        // A header claiming more than the bound is refused before anything is read past it.
        for (valid, seal) in [(&plain, None), (&sealed, Some(&k))] {
            let mut b = valid.to_vec();
            b[10..12].copy_from_slice(&u16::MAX.to_le_bytes());
            assert_eq!(
                decode(Bytes::from(b), seal).expect_err("huge header"),
                FormatError::BadHeaderLen(u16::MAX)
            );
        }
    }

    fn key() -> SealKey {
        SealKey::from_data_key(&[0x11; 32])
    }

    fn random(len: usize, seed: u64) -> Vec<u8> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..len).map(|_| rng.gen()).collect()
    }

    #[test]
    fn a_sealed_object_round_trips_and_any_range_opens_alone() {
        let k = key();
        let len = (3 << 20) + 777;
        let payload = random(len, 1);
        let enc = encode(&id(), 5 << 20, len as u64, &payload, Some(&k));
        let hl = FIXED_SEALED + 32 * 4 + HASH;
        assert_eq!(enc.len(), hl + len, "length-preserving");
        assert_eq!(u16::from_le_bytes([enc[8], enc[9]]), VERSION);
        let obj = decode(enc.clone(), Some(&k))
            .expect("decodes")
            .verify_id(&id())
            .expect("same id");
        assert_eq!(&obj.payload[..], &payload[..]);
        let (h, got_hl) = decode_header(&enc[..MAX_HEADER_LEN], Some(&k)).expect("header alone");
        assert_eq!((h.clone(), got_hl), (obj.header.clone(), hl));
        assert_eq!(h.sealing.map(|s| s.key_tag), Some(k.tag()));
        assert_eq!((h.range_start, h.range_len), (5 << 20, len as u64));

        // Ranges at odd offsets, across block boundaries, the first and last bytes: the blocks
        // verify, then just the range deciphers, from its own offset.
        let m = 1u64 << 20;
        for (a, b) in [
            (0, 1),
            (m - 5, m + 9),
            (m - 1, 3 * m + 1),
            (123_457, 2 * m + 99_999),
            (3 * m + 776, 3 * m + 777),
            (0, len as u64),
        ] {
            let r = h.blocks_for(a, b).expect("blocks");
            let stored = &enc[hl + r.start as usize..hl + r.end as usize];
            h.verify_blocks(r.start, stored, Some(&k))
                .expect("blocks verify");
            let mut part = stored[(a - r.start) as usize..(b - r.start) as usize].to_vec();
            h.decipher(a, &mut part, Some(&k)).expect("deciphers");
            assert_eq!(part, payload[a as usize..b as usize], "{a}..{b}");
        }
        // A range past the payload is refused, not wrapped around.
        let mut past = vec![0u8; 2];
        assert!(h.decipher(len as u64 - 1, &mut past, Some(&k)).is_err());

        // Each object gets its own nonce: the same payload seals to other bytes.
        let again = encode(&id(), 5 << 20, len as u64, &payload, Some(&k));
        assert_ne!(again[hl..], enc[hl..]);
        assert_eq!(decode(again, Some(&k)).expect("again").payload, obj.payload);
        // An empty payload seals too; so does metadata.
        let e = decode(encode(&id(), 0, 0, &[], Some(&k)), Some(&k)).expect("empty");
        assert!(e.payload.is_empty() && e.header.sealing.is_some());
        let meta = ObjectId {
            kind: Kind::Metadata,
            ..id()
        };
        let o = decode(encode(&meta, 0, 3, b"abc", Some(&k)), Some(&k)).expect("metadata");
        assert_eq!((o.header.id, &o.payload[..]), (meta, &b"abc"[..]));
        // A big payload gets bigger blocks within the sealed header's room.
        assert!(
            (1u64 << 30).div_ceil(1 << block_shift_for(1 << 30, MAX_SEALED_BLOCKS))
                <= MAX_SEALED_BLOCKS as u64
        );
    }

    #[test]
    fn a_sealed_object_needs_its_key() {
        let (k, other) = (key(), SealKey::from_data_key(&[0x22; 32]));
        let payload = random((1 << 20) + 10, 2);
        let enc = encode(&id(), 0, payload.len() as u64, &payload, Some(&k));
        let err = decode(enc.clone(), None).expect_err("no key");
        assert_eq!(err, FormatError::Sealed);
        assert_eq!(
            err.to_string(),
            "object is encrypted; the cluster's data key is needed"
        );
        assert_eq!(decode_header(&enc, None), Err(FormatError::Sealed));
        let wrong = FormatError::WrongKey {
            found: k.tag(),
            ours: other.tag(),
        };
        assert_eq!(decode(enc.clone(), Some(&other)).expect_err("wrong"), wrong);
        assert_eq!(decode_header(&enc, Some(&other)), Err(wrong.clone()));
        assert!(wrong.to_string().contains(&Hex(&k.tag()).to_string()));
        assert!(wrong.to_string().contains(&Hex(&other.tag()).to_string()));
        // A header read with the key, then its blocks read without one or with another.
        let (h, hl) = decode_header(&enc, Some(&k)).expect("header");
        let block = &enc[hl..hl + (1 << 20)];
        assert_eq!(h.verify_blocks(0, block, None), Err(FormatError::Sealed));
        assert_eq!(h.verify_blocks(0, block, Some(&other)), Err(wrong.clone()));
        let mut buf = block[..10].to_vec();
        assert_eq!(h.decipher(0, &mut buf, None), Err(FormatError::Sealed));
        assert_eq!(h.decipher(0, &mut buf, Some(&other)), Err(wrong));
        assert_eq!(buf, block[..10], "nothing deciphered under no key");
    }

    #[test]
    fn a_plaintext_object_still_reads_with_a_key_given() {
        // The documented rule: objects uploaded before encryption was turned on stay readable.
        let k = key();
        let payload = random((2 << 20) + 3, 3);
        let v2 = encode(&id(), 0, payload.len() as u64, &payload, None);
        assert_eq!(u16::from_le_bytes([v2[8], v2[9]]), PLAIN_VERSION);
        let o = decode(v2.clone(), Some(&k)).expect("v2 with a key");
        assert_eq!(&o.payload[..], &payload[..]);
        assert_eq!(o.header.sealing, None);
        let (h, hl) = decode_header(&v2, Some(&k)).expect("header with a key");
        h.verify_blocks(1 << 20, &v2[hl + (1 << 20)..hl + (2 << 20)], Some(&k))
            .expect("blocks with a key");
        let mut part = v2[hl + 7..hl + 70].to_vec();
        h.decipher(7, &mut part, Some(&k))
            .expect("nothing to decipher");
        assert_eq!(part, payload[7..70]);
        let v1 = encode_v1(&id(), &payload[..1000]);
        let o = decode(v1, Some(&k)).expect("v1 with a key");
        assert_eq!(&o.payload[..], &payload[..1000]);
        // A version 3 header with no flags is version 2's layout, and reads as one.
        let mut v3 = v2.to_vec();
        v3[8..10].copy_from_slice(&3u16.to_le_bytes());
        let sum = blake3::hash(&v3[..hl - HASH]);
        v3[hl - HASH..hl].copy_from_slice(sum.as_bytes());
        let o3 = decode(Bytes::from(v3.clone()), Some(&k)).expect("plain v3");
        assert_eq!(&o3.payload[..], &payload[..]);
        // Unknown flags are refused.
        v3[13] = 2;
        let sum = blake3::hash(&v3[..hl - HASH]);
        v3[hl - HASH..hl].copy_from_slice(sum.as_bytes());
        assert_eq!(
            decode(Bytes::from(v3), None).expect_err("flag 2"),
            FormatError::Reserved
        );
    }

    /// Every byte of `enc` (a sealed object) flipped: refused by `decode` and, for a payload
    /// byte, by the check of the block it is in.
    fn every_flip_refused(enc: &Bytes, k: &SealKey, positions: impl Iterator<Item = usize>) {
        let (h, hl) = decode_header(enc, Some(k)).expect("valid");
        let b = 1usize << h.block_shift;
        for i in positions {
            let mut bad = enc.to_vec();
            bad[i] ^= 0x01 << (i % 8);
            let bad = Bytes::from(bad);
            let err = decode(bad.clone(), Some(k)).expect_err("a flipped byte");
            if i < hl {
                // Whatever a damaged header turns into, it is an error, never an object.
                assert!(decode_header(&bad, Some(k)).is_err(), "byte {i}");
            } else {
                assert_eq!(err, FormatError::PayloadChecksum, "byte {i}");
                let start = (i - hl) / b * b;
                let end = (start + b).min(enc.len() - hl);
                let r = h.verify_blocks(start as u64, &bad[hl + start..hl + end], Some(k));
                assert_eq!(r, Err(FormatError::PayloadChecksum), "byte {i}");
            }
        }
    }

    #[test]
    fn every_flipped_byte_and_truncation_of_a_sealed_object_is_caught() {
        let k = key();
        // Small: every byte, every cut.
        let small = encode(&id(), 0, 300, &random(300, 4), Some(&k));
        every_flip_refused(&small, &k, 0..small.len());
        for n in 0..small.len() {
            let err = decode(small.slice(..n), Some(&k)).expect_err("a truncation");
            assert!(matches!(err, FormatError::Truncated { .. }), "{n}: {err:?}");
        }
        // Three blocks: every header byte, every byte around each block boundary, the last,
        // and a spread of others.
        let len = (2 << 20) + 100;
        let big = encode(&id(), 0, len as u64, &random(len, 5), Some(&k));
        let hl = decode_header(&big, Some(&k)).expect("valid").1;
        let mut at: Vec<usize> = (0..hl).collect();
        for edge in [0, 1 << 20, 2 << 20] {
            at.extend(hl + edge.max(3) - 3..(hl + edge + 3).min(big.len()));
        }
        at.extend((hl..big.len()).step_by(65_537));
        at.push(big.len() - 1);
        every_flip_refused(&big, &k, at.into_iter());
        // The last block cut short (as a ranged GET cut short would), or dropped whole.
        let (h, _) = decode_header(&big, Some(&k)).expect("valid");
        let tail = &big[hl + (2 << 20)..];
        assert!(h.verify_blocks(2 << 20, &tail[..99], Some(&k)).is_err());
        assert!(matches!(
            decode(big.slice(..hl + (2 << 20)), Some(&k)),
            Err(FormatError::Truncated { .. })
        ));
    }

    #[test]
    fn blocks_and_headers_from_other_sealed_objects_are_refused() {
        let k = key();
        let len = 3 << 20;
        let payload = random(len, 6);
        // The same bytes, sealed twice (as a rewrite of a file would): two nonces.
        let a = encode(&id(), 0, len as u64, &payload, Some(&k));
        let b = encode(&id(), 0, len as u64, &payload, Some(&k));
        let (ha, hl) = decode_header(&a, Some(&k)).expect("a");
        let (hb, _) = decode_header(&b, Some(&k)).expect("b");
        // a's block 1 served for b's block 1, a's header in front of b's payload.
        let a1 = &a[hl + (1 << 20)..hl + (2 << 20)];
        assert!(hb.verify_blocks(1 << 20, a1, Some(&k)).is_err());
        assert!(ha.verify_blocks(1 << 20, a1, Some(&k)).is_ok());
        let mut spliced = a[..hl].to_vec();
        spliced.extend_from_slice(&b[hl..]);
        assert_eq!(
            decode(Bytes::from(spliced), Some(&k)).expect_err("spliced"),
            FormatError::PayloadChecksum
        );
        // a's block 0 served for its block 1, blocks swapped: each sum is for one position.
        let a0 = &a[hl..hl + (1 << 20)];
        assert!(ha.verify_blocks(1 << 20, a0, Some(&k)).is_err());
        let mut swapped = a.to_vec();
        swapped[hl..hl + (2 << 20)].copy_from_slice(&[a1, a0].concat());
        assert!(decode(Bytes::from(swapped), Some(&k)).is_err());
    }

    #[test]
    fn a_sealed_object_shows_no_plaintext() {
        let k = key();
        let marker: Vec<u8> = random(4096, 7);
        let mut payload = random((2 << 20) + 5000, 8);
        // Once inside a block, once across a block boundary.
        for at in [4321, (1 << 20) - 2000] {
            payload[at..at + 4096].copy_from_slice(&marker);
        }
        let windows: std::collections::HashSet<&[u8]> = marker.windows(32).collect();
        let shows = |b: &[u8]| b.windows(32).any(|w| windows.contains(w));
        let plain = encode(&id(), 0, payload.len() as u64, &payload, None);
        assert!(shows(&plain), "the control: a plaintext object shows it");
        let sealed = encode(&id(), 0, payload.len() as u64, &payload, Some(&k));
        assert!(
            !shows(&sealed),
            "a 32-byte window of the marker in the sealed object"
        );
        // Nor does the header hold a hash of the plaintext (or of its blocks, or the marker).
        let (h, hl) = decode_header(&sealed, Some(&k)).expect("valid");
        let head = &sealed[..hl];
        let mut plain_sums = vec![
            *blake3::hash(&payload).as_bytes(),
            *blake3::hash(&marker).as_bytes(),
        ];
        plain_sums.extend(payload.chunks(1 << 20).map(|c| *blake3::hash(c).as_bytes()));
        for s in &plain_sums {
            assert!(!head.windows(32).any(|w| w == s));
        }
        assert!(!plain_sums.contains(&h.payload_blake3));
    }
}
