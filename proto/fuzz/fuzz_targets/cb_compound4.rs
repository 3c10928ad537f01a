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
