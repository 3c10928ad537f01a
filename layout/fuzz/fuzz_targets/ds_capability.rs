//! The DS capability parser (what a data server does with the NFSv3 file handle a client
//! sends): never panics, accepts only what was minted with the key for this DS, refuses a
//! fenced one as STALE, and every I/O check of an accepted handle stays inside its grant.
//! The first byte picks the check.
#![no_main]
use layout::Rights;
use layout::{
    peek, peek_reduced, verify, verify_fenced, verify_reduced_fenced, Cap, CapError, CapKey,
    ChunkGeometry, DsId, FileId, ReducedCap,
};
use libfuzzer_sys::fuzz_target;

const DS: DsId = DsId(7);

fn u64_at(b: &[u8], i: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[i..i + 8]);
    u64::from_be_bytes(a)
}

fuzz_target!(|data: &[u8]| {
    let key = CapKey::new([0x3c; 32]);
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    match sel % 4 {
        // A reduced-read handle (`reducedcap`) from arbitrary bytes: nothing verifies without
        // the MAC, and what peeks must re-mint to itself once verified.
        2 => {
            let peeked = peek_reduced(rest);
            if let Ok(cap) = verify_reduced_fenced(rest, &key, DS, 0) {
                assert_eq!(peeked, Ok(cap));
                assert_eq!(&cap.mint(&key, DS)[..], rest, "accepted bytes re-mint");
            }
        }
        // Minted reduced-read handles: each verifies at its own generation, is STALE past it,
        // and any one-byte change is refused.
        3 => {
            let mut f = [0u8; 27];
            let n = rest.len().min(27);
            f[..n].copy_from_slice(&rest[..n]);
            let cap = ReducedCap {
                file: FileId(u64_at(&f, 0)),
                generation: u64_at(&f, 8),
                epoch: u64_at(&f, 16),
                key_id: f[24],
            };
            let h = cap.mint(&key, DS);
            assert_eq!(verify_reduced_fenced(&h, &key, DS, cap.generation), Ok(cap));
            if cap.generation < u64::MAX {
                assert!(matches!(
                    verify_reduced_fenced(&h, &key, DS, cap.generation + 1),
                    Err(CapError::Stale { .. })
                ));
            }
            assert_eq!(
                verify_reduced_fenced(&h, &key, DsId(8), 0),
                Err(CapError::Forged)
            );
            let i = usize::from(f[25]) % h.len();
            let mut bad = h;
            bad[i] ^= f[26] | 1;
            assert!(
                verify_reduced_fenced(&bad, &key, DS, 0).is_err(),
                "one changed byte is refused"
            );
        }
        // Arbitrary bytes: peek may read claims, but without the MAC nothing verifies, and
        // what verifies (never, short of a blake3 collision) must re-mint to itself.
        0 => {
            let peeked = peek(rest);
            for fence in [0, u64::MAX] {
                match verify_fenced(rest, &key, DS, fence) {
                    Ok(cap) => {
                        assert_eq!(peeked, Ok(cap));
                        assert_eq!(&cap.mint(&key, DS)[..], rest, "accepted bytes re-mint");
                    }
                    Err(e) => assert!(peeked.is_err() || e != CapError::Malformed),
                }
            }
        }
        // Minted handles with fields from the input: each verifies to itself at its own
        // generation, is STALE past it, worthless at another DS and under another key, and any
        // one-byte change is refused; I/O checks never pass outside the granted range.
        _ => {
            let mut f = [0u8; 48];
            let n = rest.len().min(48);
            f[..n].copy_from_slice(&rest[..n]);
            let cap = Cap {
                file: FileId(u64_at(&f, 0)),
                first_chunk: u64_at(&f, 8),
                chunk_count: u32::from_be_bytes([f[16], f[17], f[18], f[19]]).max(1),
                rights: if f[20] & 1 == 0 {
                    Rights::Read
                } else {
                    Rights::ReadWrite
                },
                generation: u64_at(&f, 21),
                key_id: f[29],
            };
            let h = cap.mint(&key, DS);
            assert_eq!(verify(&h, &key, DS, cap.generation), Ok(cap));
            assert_eq!(verify_fenced(&h, &key, DS, 0), Ok(cap));
            if cap.generation < u64::MAX {
                assert!(matches!(
                    verify(&h, &key, DS, cap.generation + 1),
                    Err(CapError::Stale { .. })
                ));
            }
            assert_eq!(verify(&h, &key, DsId(8), 0), Err(CapError::Forged));
            assert_eq!(
                verify(&h, &CapKey::new([0x3d; 32]), DS, 0),
                Err(CapError::Forged)
            );
            let i = usize::from(f[30]) % h.len();
            let mut bad = h;
            bad[i] ^= f[31] | 1;
            assert!(
                verify(&bad, &key, DS, 0).is_err(),
                "one changed byte is refused"
            );

            let chunk = 4096 * (1 + u64::from(f[32] % 64));
            if let Ok(g) = ChunkGeometry::new(chunk) {
                let offset = u64_at(&f, 33);
                let len = u64::from(u32::from_be_bytes([f[41], f[42], f[43], f[44]]));
                let write = f[45] & 1 == 1;
                if cap.check(&g, write, offset, len).is_ok() && len > 0 {
                    let r = cap.range(&g);
                    assert!(offset >= r.offset && offset + len <= r.end());
                    assert!(!write || cap.rights == Rights::ReadWrite);
                }
            }
        }
    }
});
