//! The key that seals data objects at rest (issue 46, item 4: the bucket holds only
//! ciphertext), and the cipher and MACs a sealed object is made with (the layout is
//! `object.rs`'s).
//!
//! From the cluster's 32-byte data key, [`SealKey`] derives (BLAKE3's `derive_key`, one context
//! per purpose) a cipher key, a MAC key and a key tag; the data key itself never keys anything
//! here, so a key used for one purpose says nothing about the others.
//!
//! - **Cipher: XChaCha20**, a stream cipher, keyed by the cipher key and a random 24-byte nonce
//!   per object (the header holds it). A stream cipher is length-preserving and seekable, so a
//!   ranged read deciphers just the bytes it fetched, from any offset. 24 random bytes never
//!   repeat in practice (2^96 objects for even odds), so no nonce is reused under one key.
//! - **MAC: keyed BLAKE3** (encrypt-then-MAC) over the ciphertext: the header's own hash, the
//!   whole payload's sum and each block's sum. Without the key nobody can make a sum match, so
//!   whoever can write to the bucket cannot alter, swap or truncate a block or a header field
//!   unnoticed, and the header shows no plaintext's hash (an unkeyed hash of the plaintext
//!   would confirm a guess of a file's contents).
//! - **Tag**: 8 derived bytes naming the key, not secret (a PRF output in a context of its
//!   own: it tells nothing of the cipher or MAC keys); a reader holding another key says so
//!   instead of reporting a checksum failure.
//!
//! Each MAC input starts with a role byte, so a sum made for one role (header, block, whole
//! payload) can never pass for another. Sums are compared as `blake3::Hash`, whose equality
//! is constant-time: how long a refusal takes says nothing of how close a forgery came.

use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use chacha20::XChaCha20;

use crate::object::FormatError;

/// The nonce a sealed object's header carries.
pub const NONCE_LEN: usize = 24;
/// The key tag a sealed object's header carries.
pub const TAG_LEN: usize = 8;

/// The largest sealed payload: XChaCha20 counts 64-byte blocks in 32 bits (256 GiB); half of
/// that, far above any object (64 MiB), is what a reader believes a header about.
pub const MAX_SEALED_PAYLOAD: u64 = 1 << 37;

const CIPHER_CONTEXT: &str = "cfs tier 2026-12-01 sealed object cipher key";
const MAC_CONTEXT: &str = "cfs tier 2026-12-01 sealed object MAC key";
const TAG_CONTEXT: &str = "cfs tier 2026-12-01 sealed object key tag";

/// MAC roles: the first byte of every keyed hash's input.
const ROLE_HEADER: u8 = 1;
const ROLE_BLOCK: u8 = 2;
const ROLE_PAYLOAD: u8 = 3;

/// The keys derived from the cluster's data key for sealing objects.
#[derive(Clone)]
pub struct SealKey {
    cipher: [u8; 32],
    mac: [u8; 32],
    tag: [u8; TAG_LEN],
}

impl SealKey {
    /// The sealing keys of the cluster whose data key is `data_key`.
    pub fn from_data_key(data_key: &[u8; 32]) -> SealKey {
        let full_tag = blake3::derive_key(TAG_CONTEXT, data_key);
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full_tag[..TAG_LEN]);
        SealKey {
            cipher: blake3::derive_key(CIPHER_CONTEXT, data_key),
            mac: blake3::derive_key(MAC_CONTEXT, data_key),
            tag,
        }
    }

    /// Names the key (not secret): a sealed object's header carries it.
    pub fn tag(&self) -> [u8; TAG_LEN] {
        self.tag
    }

    /// Refuses an object sealed under the key tagged `found` if that is not this key.
    pub(crate) fn check_tag(&self, found: [u8; TAG_LEN]) -> Result<(), FormatError> {
        if found == self.tag {
            Ok(())
        } else {
            Err(FormatError::WrongKey {
                found,
                ours: self.tag,
            })
        }
    }

    /// XORs `buf`, the payload's bytes from offset `at`, with the keystream of `nonce`: seals
    /// plaintext, opens ciphertext. Nothing is changed if the range is past the cipher's.
    pub(crate) fn apply(
        &self,
        nonce: &[u8; NONCE_LEN],
        at: u64,
        buf: &mut [u8],
    ) -> Result<(), FormatError> {
        let len = buf.len() as u64;
        let past = || FormatError::BadRange { start: at, len };
        if at.saturating_add(len) > MAX_SEALED_PAYLOAD {
            return Err(past());
        }
        let mut c = XChaCha20::new(&self.cipher.into(), nonce.into());
        c.try_seek(at).map_err(|_| past())?;
        c.try_apply_keystream(buf).map_err(|_| past())
    }

    /// The keyed hash of a sealed header's bytes before the hash.
    pub(crate) fn header_sum(&self, covered: &[u8]) -> blake3::Hash {
        let mut h = blake3::Hasher::new_keyed(&self.mac);
        h.update(&[ROLE_HEADER]);
        h.update(covered);
        h.finalize()
    }

    /// The keyed hash of block `index` (ciphertext) of the object with `nonce`.
    ///
    /// Binding the nonce and the index makes a sum a statement about one position of one
    /// object: "these are the bytes the writer put at block `index` of this object". A sum
    /// then vouches for nothing anywhere else: not for the same bytes at another index (a
    /// reader whose offset arithmetic went wrong, or a store answering a ranged GET with
    /// another range, is caught rather than served), nor in another object were a table ever
    /// spliced from two headers. The block is then also deciphered at the position its sum
    /// proved. Unbound, a sum would prove only "some writer under this key wrote these bytes".
    pub(crate) fn block_sum(
        &self,
        nonce: &[u8; NONCE_LEN],
        index: u64,
        block: &[u8],
    ) -> blake3::Hash {
        let mut h = blake3::Hasher::new_keyed(&self.mac);
        h.update(&[ROLE_BLOCK]);
        h.update(nonce);
        h.update(&index.to_le_bytes());
        h.update(block);
        h.finalize()
    }

    /// The keyed hash of a sealed object's whole payload (ciphertext).
    pub(crate) fn payload_sum(&self, nonce: &[u8; NONCE_LEN], payload: &[u8]) -> blake3::Hash {
        let mut h = blake3::Hasher::new_keyed(&self.mac);
        h.update(&[ROLE_PAYLOAD]);
        h.update(nonce);
        h.update(payload);
        h.finalize()
    }
}

/// Only the tag: the keys never reach a log.
impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealKey")
            .field("tag", &Hex(&self.tag))
            .finish_non_exhaustive()
    }
}

/// Bytes as lowercase hex (key tags in messages).
pub(crate) struct Hex<'a>(pub &'a [u8]);

impl std::fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl std::fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// A fresh random nonce from the OS.
pub(crate) fn nonce() -> [u8; NONCE_LEN] {
    use rand::RngCore;
    let mut n = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut n);
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_derived_apart_and_debug_shows_only_the_tag() {
        let data = [0x42u8; 32];
        let k = SealKey::from_data_key(&data);
        // No derived key is the data key or another derived key.
        assert_ne!(k.cipher, data);
        assert_ne!(k.mac, data);
        assert_ne!(k.cipher, k.mac);
        assert_ne!(k.tag[..], k.cipher[..TAG_LEN]);
        assert_ne!(k.tag[..], k.mac[..TAG_LEN]);
        // The same data key, the same keys; another, others.
        assert_eq!(SealKey::from_data_key(&data).tag(), k.tag());
        let other = SealKey::from_data_key(&[0x43; 32]);
        assert_ne!(other.tag(), k.tag());
        assert_ne!(other.mac, k.mac);

        let shown = format!("{k:?}");
        assert_eq!(shown, format!("SealKey {{ tag: {}, .. }}", Hex(&k.tag())));
        for secret in [&k.cipher, &k.mac, &data] {
            assert!(!shown.contains(&Hex(&secret[..4]).to_string()), "{shown}");
        }
    }

    #[test]
    fn the_keystream_seeks_and_the_sums_bind_role_nonce_and_index() {
        let k = SealKey::from_data_key(&[1; 32]);
        let n = [9u8; NONCE_LEN];
        let plain: Vec<u8> = (0..10_000u32).map(|i| (i % 253) as u8).collect();
        let mut whole = plain.clone();
        k.apply(&n, 0, &mut whole).expect("seal");
        assert_ne!(whole, plain);
        // Any sub-range deciphers on its own, from its offset.
        for (a, b) in [(0, 1), (63, 65), (64, 128), (1000, 9999), (9999, 10_000)] {
            let mut part = whole[a..b].to_vec();
            k.apply(&n, a as u64, &mut part).expect("open");
            assert_eq!(part, plain[a..b], "{a}..{b}");
        }
        let block = &whole[..4096];
        let s = k.block_sum(&n, 0, block);
        assert_ne!(s, k.block_sum(&n, 1, block));
        assert_ne!(s, k.block_sum(&[8; NONCE_LEN], 0, block));
        assert_ne!(s, k.payload_sum(&n, block));
        assert_ne!(s, SealKey::from_data_key(&[2; 32]).block_sum(&n, 0, block));
        assert_ne!(k.header_sum(block), blake3::hash(block));
        // Past the cipher's range: refused, and nothing changed (never a panic).
        let mut b = [5u8; 16];
        assert!(k.apply(&n, MAX_SEALED_PAYLOAD - 8, &mut b).is_err());
        assert!(k.apply(&n, u64::MAX, &mut b).is_err());
        assert_eq!(b, [5u8; 16]);
    }
}
