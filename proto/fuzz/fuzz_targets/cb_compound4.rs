//! CB_COMPOUND4args / CB_COMPOUND4res and the flexfiles bodies from arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use proto::nfs4::*;
use proto::xdr::Xdr;

fn rt<T: Xdr + PartialEq + std::fmt::Debug>(data: &[u8]) {
    if let Ok(v) = T::from_xdr(data) {
        let b = v.to_xdr();
        let d = T::from_xdr(&b).expect("re-encoded value must decode");
        assert_eq!(v, d);
    }
}

fuzz_target!(|data: &[u8]| {
    rt::<CbCompound4Args>(data);
    rt::<CbCompound4Res>(data);
    // A client's CB_GETATTR answer, as the server reads it (change, size and, from a holder
    // of delegated timestamps, its times): decoding never panics, and what decodes
    // re-encodes to itself.
    if let Ok(r) = CbCompound4Res::from_xdr(data) {
        for op in &r.resarray {
            if let NfsCbResop4::Getattr(CbGetattrRes::Ok(ok)) = op {
                if let Ok(a) = FileAttrs::decode(&ok.obj_attributes) {
                    assert_eq!(FileAttrs::decode(&a.encode_all()).as_ref(), Ok(&a));
                }
            }
        }
    }
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    match sel % 6 {
        0 => rt::<FfLayout4>(rest),
        1 => rt::<FfDeviceAddr4>(rest),
        2 => rt::<FfLayoutreturn4>(rest),
        3 => rt::<FfLayoutupdate4>(rest),
        4 => rt::<FfLayouthint4>(rest),
        _ => rt::<Nfsv41FileLayout4>(rest),
    }
});
