//! Encryption at rest: no plaintext block on "disk", wrong keys are typed errors, rotation
//! rewraps without touching data, nonces never repeat, key files are strict.

mod common;

use common::{params, random_bytes, refuses_every_truncation_and_flip, source_corpus, Store};
use reduce::crypt::{sealed_nonce, CryptError, KeyFileError};
use reduce::{assemble, check_stored, reduce, AssembleError, DataKey, Kek, SegmentId, WrappedKey};
use std::collections::{HashMap, HashSet};

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Random data with a marker block at unaligned places more than a max chunk apart (so
/// chunks holding it are incompressible and stored raw), plus a run of repeats and text.
fn marked_input(marker: &[u8]) -> Vec<u8> {
    let mut data = Vec::new();
    for i in 0..12 {
        data.extend_from_slice(&random_bytes(100 + i, 300_000 + 77 * i as usize));
        data.extend_from_slice(marker);
    }
    for _ in 0..40 {
        data.extend_from_slice(marker);
    }
    data.extend_from_slice(&source_corpus(1 << 20));
    data
}

#[test]
fn a_marker_block_never_appears_in_a_sealed_segment() {
    let marker = random_bytes(99, 4096);
    let data = marked_input(&marker);
    // Control: unsealed, the marker is in the segments (so the search can find it).
    let plain = reduce(&data, &params(), &HashMap::new()).expect("reduce");
    assert!(plain
        .new_segments
        .iter()
        .any(|s| contains(&s.bytes, &marker)));

    let mut p = params();
    p.data_key = Some(DataKey::generate().expect("rng"));
    let mut store = Store::default();
    let r = reduce(&data, &p, &store.index).expect("reduce");
    for s in &r.new_segments {
        assert!(!contains(&s.bytes, &marker), "marker in sealed segment");
        // Nor any 4 KiB-aligned block of the text.
        let text = &data[data.len() - (1 << 20)..];
        for block in text.chunks_exact(4096).step_by(16) {
            assert!(!contains(&s.bytes, block));
        }
    }
    store.absorb(&r);
    assert!(assemble(&r.recipe, &p, &store.segments).expect("assemble") == data);
    // Without the key: a clear error, not garbage.
    let no_key = params();
    assert!(matches!(
        assemble(&r.recipe, &no_key, &store.segments),
        Err(AssembleError::Encrypted(_))
    ));
    // With another data key: WrongKey.
    let mut other = params();
    other.data_key = Some(DataKey::generate().expect("rng"));
    assert!(matches!(
        assemble(&r.recipe, &other, &store.segments),
        Err(AssembleError::Crypt {
            source: CryptError::WrongKey { .. },
            ..
        })
    ));
}

#[test]
fn wrong_kek_rewrap_and_corruption() {
    let kek1 = Kek::parse_key_file(&[0x11; 32]).expect("kek");
    let kek2 = Kek::parse_key_file(&[0x22; 32]).expect("kek");
    let dk = DataKey::generate().expect("rng");
    let wrapped = dk.wrap(&kek1).expect("wrap");
    let stored = WrappedKey::from_bytes(wrapped.as_bytes()).expect("shape");
    assert!(matches!(
        stored.unwrap_key(&kek2),
        Err(CryptError::WrongKey { .. })
    ));

    let id = SegmentId([5; 32]);
    let sealed = dk.seal(&id, b"segment bytes").expect("seal");
    let rotated = stored.rewrap(&kek1, &kek2).expect("rewrap");
    assert!(matches!(
        rotated.unwrap_key(&kek1),
        Err(CryptError::WrongKey { .. })
    ));
    let dk2 = rotated.unwrap_key(&kek2).expect("unwrap");
    assert_eq!(dk2.open(&id, &sealed).expect("open"), b"segment bytes");
    assert!(stored.rewrap(&kek2, &kek1).is_err());

    // A flipped bit anywhere in the wrapped key is an error (WrongKey if in the tag).
    refuses_every_truncation_and_flip(wrapped.as_bytes(), |b| {
        WrappedKey::from_bytes(b)
            .and_then(|w| w.unwrap_key(&kek1))
            .is_ok()
    });
    // Sealed segment: name swapped, bits flipped, truncations.
    assert!(matches!(
        dk.open(&SegmentId([6; 32]), &sealed),
        Err(CryptError::WrongSegment { .. })
    ));
    refuses_every_truncation_and_flip(&sealed, |b| dk.open(&id, b).is_ok());
    let mut ct = sealed.clone();
    let last = ct.len() - 1;
    ct[last] ^= 1;
    assert!(matches!(dk.open(&id, &ct), Err(CryptError::Corrupt)));
}

#[test]
fn ten_thousand_nonces_are_distinct() {
    let dk = DataKey::generate().expect("rng");
    let mut seen = HashSet::new();
    for i in 0..10_000u32 {
        let mut id = [0u8; 32];
        id[..4].copy_from_slice(&i.to_le_bytes());
        let s = dk.seal(&SegmentId(id), &i.to_le_bytes()).expect("seal");
        assert!(
            seen.insert(sealed_nonce(&s).expect("nonce")),
            "repeat at {i}"
        );
    }
    // The same segment sealed twice gets two nonces, so two ciphertexts.
    let a = dk.seal(&SegmentId([0; 32]), b"x").expect("seal");
    let b = dk.seal(&SegmentId([0; 32]), b"x").expect("seal");
    assert_ne!(a, b);
}

#[test]
fn key_files_are_strict() {
    let hex = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";
    let k = Kek::parse_key_file(hex.as_bytes()).expect("hex");
    assert_eq!(
        k.tag(),
        Kek::parse_key_file(format!("{hex}\n").as_bytes())
            .expect("hex+nl")
            .tag()
    );
    assert!(Kek::parse_key_file(format!("{hex}\r\n").as_bytes()).is_ok());
    // The hex digits are the key's bytes, either case.
    let mut want = [0u8; 32];
    for (i, b) in want.iter_mut().enumerate() {
        *b = ((i % 16) * 0x11) as u8;
    }
    assert_eq!(k.tag(), Kek::from_bytes(want).tag());
    // 32 raw bytes are the key as is.
    let mut raw = [0u8; 32];
    raw.copy_from_slice(&random_bytes(31, 32));
    assert_eq!(
        Kek::parse_key_file(&raw).expect("raw").tag(),
        Kek::from_bytes(raw).tag()
    );
    use KeyFileError::*;
    let cases: Vec<(Vec<u8>, KeyFileError)> = vec![
        (vec![], Length(0)),
        (vec![1; 31], Length(31)),
        (vec![1; 33], Length(33)),
        (hex.as_bytes()[..63].to_vec(), Length(63)),
        (format!("{hex}0").into_bytes(), Length(65)),
        (format!("{hex}\n\n").into_bytes(), Length(66)),
        (format!(" {hex}").into_bytes(), Length(65)),
        (
            format!("{} {}", &hex[..31], &hex[32..]).into_bytes(),
            NotHex { at: 31 },
        ),
        (hex.replace('a', "g").into_bytes(), NotHex { at: 20 }),
        (vec![0; 32], AllZero),
        ("0".repeat(64).into_bytes(), AllZero),
        (vec![b'a'; 100], Length(100)),
    ];
    for (input, want) in cases {
        let got = Kek::parse_key_file(&input).map(|_| ()).unwrap_err();
        assert_eq!(got, want, "{:?}", String::from_utf8_lossy(&input));
        // The message says what is expected.
        assert!(!got.to_string().is_empty());
    }
}

#[test]
fn segments_stored_before_encryption_stay_readable_with_a_key() {
    let data = random_bytes(7, 600_000);
    let mut store = Store::default();
    let plain = reduce(&data, &params(), &store.index).expect("reduce");
    store.absorb(&plain);
    let mut p = params();
    p.data_key = Some(DataKey::generate().expect("rng"));
    assert!(assemble(&plain.recipe, &p, &store.segments).expect("assemble") == data);
    // And a new file deduplicated against them is a mix of both: still whole.
    let mut more = data.clone();
    more.extend_from_slice(&random_bytes(8, 300_000));
    let r = reduce(&more, &p, &store.index).expect("reduce");
    store.absorb(&r);
    assert!(assemble(&r.recipe, &p, &store.segments).expect("assemble") == more);
}

/// `check_stored`, what shard repair re-encodes from: a stored segment, sealed or plain,
/// passes under its own name and no other, and a flipped byte anywhere fails it.
#[test]
fn check_stored_accepts_a_segment_only_under_its_name_and_whole() {
    let data = random_bytes(9, 300_000);
    let store = Store::default();
    let mut sealed = params();
    sealed.data_key = Some(DataKey::generate().expect("rng"));
    for p in [params(), sealed] {
        let r = reduce(&data, &p, &store.index).expect("reduce");
        let s = &r.new_segments[0];
        check_stored(&s.id, &p, &s.bytes).expect("whole segment under its name");
        assert!(check_stored(&SegmentId([7; 32]), &p, &s.bytes).is_err());
        for at in [0, s.bytes.len() / 2, s.bytes.len() - 1] {
            let mut b = s.bytes.clone();
            b[at] ^= 0x10;
            assert!(check_stored(&s.id, &p, &b).is_err(), "flip at {at}");
        }
    }
}
