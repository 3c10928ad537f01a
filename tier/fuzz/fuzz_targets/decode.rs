//! The object decoder: what the bucket hands back (`tier::object`). No input may panic it,
//! with or without a key; what it accepts must behave. The first byte picks the mode:
//!
//! - raw: `decode_header` and `decode` of the bytes as they are, with no key and with a fixed
//!   key; an accepted header's blocks are checked and deciphered over the rest;
//! - damaged: the rest is a payload, encoded plain or sealed under the fixed key, then one
//!   byte (chosen by the input) changed: decoding must refuse it, and the object as written
//!   must decode to the payload (random input cannot forge a keyed sum, so this is how the
//!   sealed paths past the header checks are reached).
#![no_main]
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tier::object::{decode, decode_header, encode, MAX_HEADER_LEN};
use tier::{Kind, ObjectId, SealKey};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let key = SealKey::from_data_key(&[7; 32]);
    if sel % 2 == 0 {
        for seal in [None, Some(&key)] {
            if let Ok((h, len)) = decode_header(rest, seal) {
                assert!(len <= rest.len().min(MAX_HEADER_LEN));
                let body = &rest[len..];
                let _ = h.blocks_for(0, body.len() as u64);
                let _ = h.verify_blocks(0, body, seal);
                let mut buf = body.to_vec();
                let _ = h.decipher(0, &mut buf, seal);
            }
            if let Ok(o) = decode(Bytes::copy_from_slice(rest), seal) {
                assert_eq!(o.payload.len() as u64, o.header.payload_len);
            }
        }
        return;
    }
    let Some((pick, payload)) = rest.split_first_chunk::<4>() else {
        return;
    };
    let id = ObjectId {
        kind: Kind::Data,
        ino: 1 << 48 | 9,
        segment: 2,
        generation: 3,
    };
    let seal = (sel & 2 != 0).then_some(&key);
    let enc = encode(&id, 100, payload.len() as u64, payload, seal);
    let o = decode(enc.clone(), seal).expect("an object as written decodes");
    assert_eq!(&o.payload[..], payload);
    let at = u32::from_le_bytes(*pick) as usize % enc.len();
    let mut bad = enc.to_vec();
    bad[at] ^= sel | 1;
    assert!(decode(Bytes::from(bad), seal).is_err(), "byte {at} changed");
});
