//! Encryption at rest (optional): each segment sealed with ChaCha20-Poly1305 under the
//! cluster data key, and the data key kept wrapped by a key-encryption key (KEK) from a file
//! the operator supplies, so data servers' disks and the S3 bucket hold only ciphertext.
//!
//! ChaCha20-Poly1305 rather than AES-256-GCM: constant-time and fast in software on every
//! CPU a data server may run on (no dependence on AES-NI/ARMv8 crypto for safety), with the
//! same 256-bit key, 96-bit nonce and 128-bit tag.
//!
//! Nonces. Each sealed segment gets a fresh 96-bit nonce from the OS CSPRNG. A repeat under
//! one key would be fatal, so the bound is stated: for n segments the chance of any repeat is
//! about n²/2^97; at n = 2^32 segments (8 PiB of 2 MiB segments under one data key) it is
//! 2^-33, the NIST SP 800-38D limit for random nonces. A counter would need replicated,
//! crash-safe state on every sealing node for no better guarantee; random nonces need none.
//! Past that volume the data key (not just the KEK) must be rotated, which this format
//! allows: every envelope names its key by tag.
//!
//! Key tags. Envelopes and wrapped keys carry an 8-byte tag of the key that made them
//! (BLAKE3 derive-key of the key: one-way, reveals nothing usable), so the wrong key is
//! reported as `WrongKey` and told apart from corruption (`Corrupt`), instead of both being
//! an authentication failure, or worse, garbage.
//!
//! Formats (little-endian):
//!
//! ```text
//! sealed segment  "cfsrdenc" (8) | version u16 = 1 | alg u16 = 1 | reserved u32 = 0
//!                 | data key tag (8) | segment id (32) | nonce (12) | ciphertext | tag (16)
//! wrapped key     "cfsrdwdk" (8) | version u16 = 1 | alg u16 = 1 | reserved u32 = 0
//!                 | KEK tag (8) | nonce (12) | ciphertext of the 32-byte data key | tag (16)
//! ```
//!
//! Everything before the ciphertext is the associated data: a changed header, a swapped
//! segment id (an object copied under another name), or a changed tag fails authentication.
//!
//! Key file (`[encryption] key_file`): exactly 32 raw bytes, or 64 hex digits optionally
//! followed by one newline (`\n` or `\r\n`, as editors and `echo` add). Nothing else is
//! accepted, so a truncated or mistyped file is an error at startup, not a different key.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;

use crate::segment::SegmentId;
use crate::wire::{Reader, Truncated};

pub const KEY_LEN: usize = 32;
pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
pub const SEALED_MAGIC: [u8; 8] = *b"cfsrdenc";
pub const WRAPPED_MAGIC: [u8; 8] = *b"cfsrdwdk";
pub const VERSION: u16 = 1;
/// ChaCha20-Poly1305 (RFC 8439).
pub const ALG_CHACHA20POLY1305: u16 = 1;
/// Bytes of a sealed segment before its ciphertext (all associated data).
/// magic, version, alg, reserved, key tag: the start of both envelopes.
const PREFIX_LEN: usize = 8 + 2 + 2 + 4 + 8;
pub const SEALED_HEADER_LEN: usize = PREFIX_LEN + 32 + NONCE_LEN;
const WRAPPED_HEADER_LEN: usize = PREFIX_LEN + NONCE_LEN;
/// Length of a wrapped data key.
pub const WRAPPED_LEN: usize = WRAPPED_HEADER_LEN + KEY_LEN + TAG_LEN;

#[derive(Debug, thiserror::Error)]
pub enum CryptError {
    #[error("wrong key: this was sealed under another key (tag {found:02x?}, ours {ours:02x?})")]
    WrongKey { found: [u8; 8], ours: [u8; 8] },
    #[error("ciphertext or its header was altered (authentication failed)")]
    Corrupt,
    #[error("sealed data truncated")]
    Truncated,
    #[error("not a {0} (bad magic)")]
    BadMagic(&'static str),
    #[error("unsupported version {version} or algorithm {alg}")]
    Unsupported { version: u16, alg: u16 },
    #[error("sealed segment is named {found:?}, expected {expected:?}")]
    WrongSegment {
        found: SegmentId,
        expected: SegmentId,
    },
    #[error("the OS random number generator failed: {0}")]
    Random(#[from] rand::Error),
    #[error("encryption failed")]
    Seal,
}

impl From<Truncated> for CryptError {
    fn from(_: Truncated) -> Self {
        CryptError::Truncated
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFileError {
    #[error(
        "key file is {0} bytes: it must be exactly 32 raw bytes or 64 hex digits \
         (optionally followed by one newline)"
    )]
    Length(usize),
    #[error("key file byte {at} is not a hex digit (64 hex digits expected)")]
    NotHex { at: usize },
    #[error("key file is all zero bytes: refusing an obviously placeholder key")]
    AllZero,
}

fn tag_of(context: &str, key: &[u8; KEY_LEN]) -> [u8; 8] {
    let d = blake3::derive_key(context, key);
    let mut t = [0u8; 8];
    t.copy_from_slice(&d[..8]);
    t
}

fn random<const N: usize>() -> Result<[u8; N], CryptError> {
    let mut b = [0u8; N];
    rand::rngs::OsRng.try_fill_bytes(&mut b)?;
    Ok(b)
}

/// The key-encryption key, from the operator's key file.
#[derive(Clone)]
pub struct Kek([u8; KEY_LEN]);

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Kek(tag {:02x?})", self.tag())
    }
}

impl Kek {
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Kek(bytes)
    }

    /// Parse a key file's contents (format in the module doc). Reading the file is the
    /// caller's, so this crate stays free of I/O.
    pub fn parse_key_file(contents: &[u8]) -> Result<Kek, KeyFileError> {
        let key = match contents.len() {
            KEY_LEN => {
                let mut k = [0u8; KEY_LEN];
                k.copy_from_slice(contents);
                k
            }
            64..=66 => {
                let hex = match &contents[64..] {
                    [] | [b'\n'] | [b'\r', b'\n'] => &contents[..64],
                    _ => return Err(KeyFileError::Length(contents.len())),
                };
                let mut k = [0u8; KEY_LEN];
                for (i, pair) in hex.chunks_exact(2).enumerate() {
                    let hi = hex_val(pair[0]).ok_or(KeyFileError::NotHex { at: 2 * i })?;
                    let lo = hex_val(pair[1]).ok_or(KeyFileError::NotHex { at: 2 * i + 1 })?;
                    k[i] = hi << 4 | lo;
                }
                k
            }
            n => return Err(KeyFileError::Length(n)),
        };
        if key == [0; KEY_LEN] {
            return Err(KeyFileError::AllZero);
        }
        Ok(Kek(key))
    }

    /// Identifies the KEK in wrapped keys (one-way).
    pub fn tag(&self) -> [u8; 8] {
        tag_of("cfs reduce 2026-11 KEK tag", &self.0)
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The cluster data key that seals segments. Made once at random, stored only wrapped.
#[derive(Clone)]
pub struct DataKey([u8; KEY_LEN]);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DataKey(tag {:02x?})", self.tag())
    }
}

impl DataKey {
    pub fn generate() -> Result<Self, CryptError> {
        Ok(DataKey(random()?))
    }

    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        DataKey(bytes)
    }

    pub fn tag(&self) -> [u8; 8] {
        tag_of("cfs reduce 2026-11 data key tag", &self.0)
    }

    /// A key for another use of the same secret (the object store's seal key): derived per
    /// `context`, so no key is used for two things and this one never leaves the crate.
    pub fn derive(&self, context: &str) -> [u8; KEY_LEN] {
        blake3::derive_key(context, &self.0)
    }

    /// Wrap this key under `kek` for storage.
    pub fn wrap(&self, kek: &Kek) -> Result<WrappedKey, CryptError> {
        seal_with(&kek.0, &WRAPPED_MAGIC, kek.tag(), &[], &self.0).map(WrappedKey)
    }

    /// Seal a segment for the disk or the bucket. The segment's id is bound into the
    /// associated data, so the ciphertext only opens under that name.
    pub fn seal(&self, id: &SegmentId, segment: &[u8]) -> Result<Vec<u8>, CryptError> {
        seal_with(&self.0, &SEALED_MAGIC, self.tag(), &id.0, segment)
    }

    /// Open a sealed segment that must be named `expected`; returns the plain segment.
    pub fn open(&self, expected: &SegmentId, sealed: &[u8]) -> Result<Vec<u8>, CryptError> {
        let env = Envelope::parse(sealed, &SEALED_MAGIC, "sealed segment", 32, self.tag())?;
        if env.named != expected.0 {
            let mut found = [0u8; 32];
            found.copy_from_slice(env.named);
            return Err(CryptError::WrongSegment {
                found: SegmentId(found),
                expected: *expected,
            });
        }
        env.open(&self.0)
    }
}

/// `magic | version | alg | reserved | key tag | named | nonce | ciphertext | tag`, where
/// everything before the ciphertext is associated data; `named` is the segment id for a
/// sealed segment and empty for a wrapped key.
fn seal_with(
    key: &[u8; KEY_LEN],
    magic: &[u8; 8],
    key_tag: [u8; 8],
    named: &[u8],
    msg: &[u8],
) -> Result<Vec<u8>, CryptError> {
    let nonce: [u8; NONCE_LEN] = random()?;
    let mut out = Vec::with_capacity(PREFIX_LEN + named.len() + NONCE_LEN + msg.len() + TAG_LEN);
    out.extend_from_slice(magic);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&ALG_CHACHA20POLY1305.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&key_tag);
    out.extend_from_slice(named);
    out.extend_from_slice(&nonce);
    let ct = ChaCha20Poly1305::new(Key::from_slice(key))
        .encrypt(Nonce::from_slice(&nonce), Payload { msg, aad: &out })
        .map_err(|_| CryptError::Seal)?;
    out.extend_from_slice(&ct);
    Ok(out)
}

/// A parsed envelope (of `seal_with`'s layout), its key already matched by tag.
struct Envelope<'a> {
    header: &'a [u8],
    named: &'a [u8],
    nonce: [u8; NONCE_LEN],
    ciphertext: &'a [u8],
}

impl<'a> Envelope<'a> {
    fn parse(
        bytes: &'a [u8],
        magic: &[u8; 8],
        what: &'static str,
        named_len: usize,
        our_tag: [u8; 8],
    ) -> Result<Envelope<'a>, CryptError> {
        let mut r = Reader::new(bytes);
        let header = r.take(PREFIX_LEN + named_len + NONCE_LEN)?;
        let mut h = Reader::new(header);
        if h.array::<8>()? != *magic {
            return Err(CryptError::BadMagic(what));
        }
        check_version(h.u16()?, h.u16()?, h.u32()?)?;
        let found = h.array::<8>()?;
        if found != our_tag {
            return Err(CryptError::WrongKey {
                found,
                ours: our_tag,
            });
        }
        let named = h.take(named_len)?;
        let nonce = h.array::<NONCE_LEN>()?;
        let ciphertext = r.rest();
        if ciphertext.len() < TAG_LEN {
            return Err(CryptError::Truncated);
        }
        Ok(Envelope {
            header,
            named,
            nonce,
            ciphertext,
        })
    }

    fn open(&self, key: &[u8; KEY_LEN]) -> Result<Vec<u8>, CryptError> {
        ChaCha20Poly1305::new(Key::from_slice(key))
            .decrypt(
                Nonce::from_slice(&self.nonce),
                Payload {
                    msg: self.ciphertext,
                    aad: self.header,
                },
            )
            .map_err(|_| CryptError::Corrupt)
    }
}

fn check_version(version: u16, alg: u16, reserved: u32) -> Result<(), CryptError> {
    if version != VERSION || alg != ALG_CHACHA20POLY1305 || reserved != 0 {
        return Err(CryptError::Unsupported { version, alg });
    }
    Ok(())
}

/// The nonce a sealed segment carries (for audits and tests).
pub fn sealed_nonce(sealed: &[u8]) -> Option<[u8; NONCE_LEN]> {
    let mut n = [0u8; NONCE_LEN];
    n.copy_from_slice(sealed.get(SEALED_HEADER_LEN - NONCE_LEN..SEALED_HEADER_LEN)?);
    Some(n)
}

/// A data key wrapped by a KEK: what the cluster stores (in replicated state).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedKey(Vec<u8>);

impl WrappedKey {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Accepts only something shaped like a wrapped key; authenticity is checked by `unwrap`.
    pub fn from_bytes(bytes: &[u8]) -> Result<WrappedKey, CryptError> {
        if bytes.len() != WRAPPED_LEN {
            return Err(CryptError::Truncated);
        }
        if bytes[..8] != WRAPPED_MAGIC {
            return Err(CryptError::BadMagic("wrapped key"));
        }
        Ok(WrappedKey(bytes.to_vec()))
    }

    /// The data key, if `kek` is the one that wrapped it.
    pub fn unwrap_key(&self, kek: &Kek) -> Result<DataKey, CryptError> {
        let env = Envelope::parse(&self.0, &WRAPPED_MAGIC, "wrapped key", 0, kek.tag())?;
        let pt = env.open(&kek.0)?;
        if pt.len() != KEY_LEN {
            return Err(CryptError::Corrupt);
        }
        let mut k = [0u8; KEY_LEN];
        k.copy_from_slice(&pt);
        Ok(DataKey(k))
    }

    /// Key rotation: the same data key, wrapped under `new`. No segment is touched.
    pub fn rewrap(&self, old: &Kek, new: &Kek) -> Result<WrappedKey, CryptError> {
        self.unwrap_key(old)?.wrap(new)
    }
}
