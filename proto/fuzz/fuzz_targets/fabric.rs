//! The fabric data path's messages from arbitrary bytes: decoding never panics, respects its
//! bounds, and whatever decodes round-trips.
#![no_main]
use libfuzzer_sys::fuzz_target;
use proto::fabric::{FabricCall, FabricReply, MAX_BODY, MAX_FABRIC_ADDR};
use proto::xdr::Xdr;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = FabricCall::from_xdr(data) {
        assert!(c.args.0.len() <= MAX_BODY && c.reply_to.0.len() <= MAX_FABRIC_ADDR);
        assert_eq!(FabricCall::from_xdr(&c.to_xdr()), Ok(c));
    }
    if let Ok(r) = FabricReply::from_xdr(data) {
        assert!(r.res.0.len() <= MAX_BODY);
        assert_eq!(FabricReply::from_xdr(&r.to_xdr()), Ok(r));
    }
});
