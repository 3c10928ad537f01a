//! NFSv3 / MOUNT v3 arguments and results from arbitrary bytes (first byte picks the
//! procedure): decoding never panics and whatever decodes round-trips.
#![no_main]
use libfuzzer_sys::fuzz_target;
use proto::nfs3::*;
use proto::xdr::{Reader, Writer};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let p = u32::from(sel % 23);
    if let Ok(Some(a)) = Nfs3Args::decode(p, &mut Reader::new(rest)) {
        let mut w = Writer::new();
        a.encode(&mut w);
        assert_eq!(Nfs3Args::decode(p, &mut Reader::new(&w.buf)), Ok(Some(a)));
    }
    if let Ok(Some(r)) = Nfs3Res::decode(p, &mut Reader::new(rest)) {
        let _ = r.status();
        let mut w = Writer::new();
        r.encode(&mut w);
        assert_eq!(Nfs3Res::decode(p, &mut Reader::new(&w.buf)), Ok(Some(r)));
    }
    let m = u32::from(sel % 7);
    if let Ok(Some(a)) = Mount3Args::decode(m, &mut Reader::new(rest)) {
        let mut w = Writer::new();
        a.encode(&mut w);
        assert_eq!(Mount3Args::decode(m, &mut Reader::new(&w.buf)), Ok(Some(a)));
    }
    if let Ok(Some(r)) = Mount3Res::decode(m, &mut Reader::new(rest)) {
        let mut w = Writer::new();
        r.encode(&mut w);
        assert_eq!(Mount3Res::decode(m, &mut Reader::new(&w.buf)), Ok(Some(r)));
    }
});
