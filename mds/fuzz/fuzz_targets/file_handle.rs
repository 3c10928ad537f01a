//! The NFSv4 file-handle parser (what PUTFH does with the bytes a client sends): never panics,
//! accepts only what was minted with the key, and what it accepts re-encodes to the same bytes,
//! in both formats (live "cfs2", 40 bytes; inside a snapshot "cfsS", 48 bytes).
//! The first byte picks the check.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mds::fh::{FhError, FhKey, FileHandle, FH_LEN, SNAP_FH_LEN};

const FS_ID: u64 = 0x0123_4567_89ab_cdef;

fuzz_target!(|data: &[u8]| {
    let key = FhKey::new([0x5a; 32]);
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    match sel % 3 {
        // Arbitrary bytes: a MAC the fuzzer cannot compute, so nothing of either length
        // decodes.
        0 => {
            if let Ok(fh) = FileHandle::decode(rest, FS_ID, &key) {
                assert_eq!(fh.encode(&key), rest, "accepted bytes re-encode to themselves");
            }
        }
        // Minted handles with fields from the input, live or in a snapshot: each decodes to
        // itself, and any change to one byte of it is refused.
        _ => {
            let mut f = [0u8; 24];
            let n = rest.len().min(24);
            f[..n].copy_from_slice(&rest[..n]);
            let word = |at: usize| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&f[at..at + 8]);
                u64::from_be_bytes(b)
            };
            let fh = FileHandle {
                fs_id: FS_ID,
                export: u32::from_be_bytes([f[0], f[1], f[2], f[3]]),
                ino: word(4),
                snap: (sel % 3 == 2).then(|| word(12)),
            };
            let b = fh.encode(&key);
            let len = if fh.snap.is_some() { SNAP_FH_LEN } else { FH_LEN };
            assert_eq!(b.len(), len);
            assert_eq!(FileHandle::decode(&b, FS_ID, &key), Ok(fh));
            let at = usize::from(f[20]) % len;
            let mut bad = b.clone();
            bad[at] ^= f[21] | 1;
            assert!(matches!(
                FileHandle::decode(&bad, FS_ID, &key),
                Err(FhError::Bad | FhError::Stale)
            ));
            // One byte more or less is not a handle of either format.
            assert!(FileHandle::decode(&b[..len - 1], FS_ID, &key).is_err());
        }
    }
});
