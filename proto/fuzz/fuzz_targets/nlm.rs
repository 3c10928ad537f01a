//! NLM v4 and NSM arguments, NLM results and portmapper mappings from arbitrary bytes (the
//! decoders the NFSv3 gateway exposes beside NFSv3 and MOUNT; first byte picks the
//! procedure): decoding never panics and whatever decodes round-trips.
#![no_main]
use libfuzzer_sys::fuzz_target;
use proto::nlm::*;
use proto::portmap::Mapping;
use proto::xdr::{Reader, Writer, Xdr};

fn rt<T: Xdr + PartialEq + std::fmt::Debug>(b: &[u8]) {
    if let Ok(v) = T::decode(&mut Reader::new(b)) {
        assert_eq!(T::from_xdr(&v.to_xdr()).ok(), Some(v));
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let p = u32::from(sel % 25);
    if let Ok(Some(a)) = NlmArgs::decode(p, &mut Reader::new(rest)) {
        let mut w = Writer::new();
        a.encode(&mut w);
        assert_eq!(NlmArgs::decode(p, &mut Reader::new(&w.buf)), Ok(Some(a)));
    }
    rt::<Nlm4Res>(rest);
    rt::<Nlm4TestRes>(rest);
    rt::<StatChge>(rest);
    rt::<SmName>(rest);
    rt::<SmStatRes>(rest);
    rt::<Mapping>(rest);
});
