//! The NFSv4 file-handle parser (what PUTFH does with the bytes a client sends): never panics,
//! accepts only what was minted with the key, and what it accepts re-encodes to the same bytes.
//! The first byte picks the check.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mds::fh::{FhError, FhKey, FileHandle, FH_LEN};

const FS_ID: u64 = 0x0123_4567_89ab_cdef;

fuzz_target!(|data: &[u8]| {
    let key = FhKey::new([0x5a; 32]);
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    match sel % 2 {
        // Arbitrary bytes: a MAC the fuzzer cannot compute, so nothing of FH_LEN decodes.
        0 => {
            if let Ok(fh) = FileHandle::decode(rest, FS_ID, &key) {
                assert_eq!(fh.encode(&key), rest, "accepted bytes re-encode to themselves");
            }
        }
        // Minted handles with fields from the input: each decodes to itself, and any change
        // to one byte of it is refused.
        _ => {
            let mut f = [0u8; 20];
            let n = rest.len().min(20);
            f[..n].copy_from_slice(&rest[..n]);
            let fh = FileHandle {
                fs_id: FS_ID,
                export: u32::from_be_bytes([f[0], f[1], f[2], f[3]]),
                ino: u64::from_be_bytes([f[4], f[5], f[6], f[7], f[8], f[9], f[10], f[11]]),
            };
            let b = fh.encode(&key);
            assert_eq!(b.len(), FH_LEN);
            assert_eq!(FileHandle::decode(&b, FS_ID, &key), Ok(fh));
            let at = usize::from(f[12]) % FH_LEN;
            let mut bad = b.clone();
            bad[at] ^= f[13] | 1;
            assert!(matches!(
                FileHandle::decode(&bad, FS_ID, &key),
                Err(FhError::Bad | FhError::Stale)
            ));
        }
    }
});
