//! The gateway's reading of v3 file handles (`gateway_v3::fh::parse`): never panics, accepts
//! only 40-byte `cfs2` handles, and what it accepts passes through unchanged (the MDS checks
//! the MAC).
#![no_main]
use gateway_v3::fh;
use libfuzzer_sys::fuzz_target;
use proto::nfs3::NfsFh3;
use proto::xdr::Opaque;

fuzz_target!(|data: &[u8]| {
    let h = NfsFh3 {
        data: Opaque(data.to_vec()),
    };
    if let Ok(p) = fh::parse(&h) {
        assert_eq!(data.len(), fh::V4_LEN);
        assert_eq!(&data[..4], b"cfs2");
        assert_eq!(p.v4.as_bytes(), data);
        assert_eq!(fh::to_v3(&p.v4).ok(), Some(h));
    }
});
