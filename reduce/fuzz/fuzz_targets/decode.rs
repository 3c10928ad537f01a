//! The decoders of what a data server or the bucket hands back: a segment, a recipe, a
//! sealed segment and a wrapped key. None may panic on any input; what a decoder accepts
//! must behave (every chunk of an accepted segment either verifies or is a typed error; an
//! accepted recipe survives its own encoding). The first byte picks the decoder.
#![no_main]
use libfuzzer_sys::fuzz_target;
use reduce::{DataKey, DedupKey, Kek, Recipe, Segment, SegmentId, WrappedKey};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let key = DedupKey::from_bytes([7; 32]);
    match sel % 4 {
        0 => {
            if let Ok(seg) = Segment::decode(rest) {
                assert_eq!(seg.as_bytes(), rest);
                for i in 0..seg.len() as u32 {
                    if let Ok(raw) = seg.get(i, &key) {
                        assert_eq!(raw.len(), seg.entries()[i as usize].raw_len as usize);
                        assert_eq!(key.chunk_id(&raw), seg.entries()[i as usize].id);
                    }
                }
            }
        }
        1 => {
            if let Ok(r) = Recipe::decode(rest) {
                let again = Recipe::decode(&r.encode().expect("a decoded recipe encodes"));
                assert_eq!(again.as_ref(), Ok(&r));
            }
        }
        2 => {
            let dk = DataKey::from_bytes([3; 32]);
            let _ = dk.open(&SegmentId([0; 32]), rest);
        }
        _ => {
            if let Ok(w) = WrappedKey::from_bytes(rest) {
                let _ = w.unwrap_key(&Kek::from_bytes([1; 32]));
            }
            let _ = Kek::parse_key_file(rest);
        }
    }
});
