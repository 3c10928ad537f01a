//! COMPOUND4args / COMPOUND4res from arbitrary bytes: decoding never panics, anything that
//! decodes re-encodes to something that decodes to the same value, and every fattr4 found in
//! the arguments goes through `FileAttrs::decode` (and round-trips if it decodes).
#![no_main]
use libfuzzer_sys::fuzz_target;
use proto::nfs4::*;
use proto::xdr::{Reader, Xdr};

fn check_attrs(f: &Fattr4) {
    if let Ok(a) = FileAttrs::decode(f) {
        let again = a.encode_all();
        assert_eq!(FileAttrs::decode(&again).as_ref(), Ok(&a));
        // Requesting everything that is present gives the same bytes.
        assert_eq!(a.encode(&a.present()), again);
    }
}

fn attrs_of(op: &NfsArgop4) -> Option<&Fattr4> {
    match op {
        NfsArgop4::Setattr(a) => Some(&a.obj_attributes),
        NfsArgop4::Create(a) => Some(&a.createattrs),
        NfsArgop4::Verify(a) => Some(&a.obj_attributes),
        NfsArgop4::Nverify(a) => Some(&a.obj_attributes),
        NfsArgop4::Open(OpenArgs {
            openhow: Openflag4::Create(how),
            ..
        }) => match how {
            Createhow4::Unchecked(f) | Createhow4::Guarded(f) => Some(f),
            Createhow4::Exclusive41(c) => Some(&c.cva_attrs),
            Createhow4::Exclusive(_) => None,
        },
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let partial = Compound4Args::decode_partial(&mut Reader::new(data));
    match Compound4Args::from_xdr(data) {
        Ok(c) => {
            let b = c.to_xdr();
            let d = Compound4Args::from_xdr(&b).expect("re-encoded COMPOUND4args must decode");
            assert_eq!(c, d);
            let p = partial.expect("partial decode agrees with full decode");
            assert!(p.error.is_none());
            assert_eq!(p.argarray, c.argarray);
            for op in &c.argarray {
                let _ = op.opnum();
                if let Some(f) = attrs_of(op) {
                    check_attrs(f);
                }
            }
        }
        Err(_) => {
            if let Ok(p) = partial {
                assert!(p.error.is_some());
                for op in &p.argarray {
                    if let Some(f) = attrs_of(op) {
                        check_attrs(f);
                    }
                }
            }
        }
    }
    if let Ok(r) = Compound4Res::from_xdr(data) {
        let b = r.to_xdr();
        let d = Compound4Res::from_xdr(&b).expect("re-encoded COMPOUND4res must decode");
        assert_eq!(r, d);
        for op in &r.resarray {
            let _ = (op.opnum(), op.status());
            // What a server's attributes decode to, open_arguments among them.
            if let NfsResop4::Getattr(GetattrRes::Ok(g)) = op {
                check_attrs(&g.obj_attributes);
            }
        }
    }
    // The fattr4 decoder on its own.
    if let Ok(f) = Fattr4::from_xdr(data) {
        check_attrs(&f);
    }
});
