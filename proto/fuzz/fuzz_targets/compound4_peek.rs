//! The glance at every COMPOUND the MDS takes as it arrives, before the call is decoded
//! (`nfs4::peek::layoutcommit_fh`): never panics, and a handle it finds is within the input
//! and no longer than NFS4_FHSIZE.
#![no_main]
use libfuzzer_sys::fuzz_target;
use proto::nfs4::peek::layoutcommit_fh;

fuzz_target!(|data: &[u8]| {
    if let Some(fh) = layoutcommit_fh(data) {
        assert!(fh.len() <= 128);
        let (start, end) = (data.as_ptr() as usize, data.as_ptr() as usize + data.len());
        let at = fh.as_ptr() as usize;
        assert!(at >= start && at + fh.len() <= end);
    }
});
