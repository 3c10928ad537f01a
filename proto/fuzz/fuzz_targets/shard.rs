//! The shard program (`proto::shard`): what a data server decodes from the MDS and from other
//! data servers before it checks the MAC (PUT, SEAL, GET, ENCODE, REPAIR, PLACE, DROP, LINK,
//! OBJSTAT), and the replies a data server or the MDS decodes. Decoding arbitrary bytes never panics and
//! whatever decodes round-trips. The first byte picks the type.
#![no_main]
use libfuzzer_sys::fuzz_target;
use proto::shard::*;
use proto::xdr::Xdr;

fn round_trip<T: Xdr + PartialEq + std::fmt::Debug>(bytes: &[u8]) {
    if let Ok(v) = T::from_xdr(bytes) {
        let again = v.to_xdr();
        assert_eq!(T::from_xdr(&again).as_ref(), Ok(&v));
    }
}

/// An argument type as the data server handles it: decoded, then its MAC input built.
fn signed<T: Signed + PartialEq + std::fmt::Debug>(bytes: &[u8]) {
    round_trip::<T>(bytes);
    if let Ok(a) = T::from_xdr(bytes) {
        let _ = mac_input(T::PROC, &a);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    match sel % 14 {
        0 => signed::<PutArgs>(rest),
        1 => signed::<SealArgs>(rest),
        2 => signed::<GetArgs>(rest),
        3 => signed::<EncodeArgs>(rest),
        4 => signed::<RepairArgs>(rest),
        5 => signed::<PlaceArgs>(rest),
        6 => round_trip::<ShardRes>(rest),
        7 => round_trip::<GetRes>(rest),
        8 => round_trip::<EncodeRes>(rest),
        9 => signed::<DropArgs>(rest),
        10 => signed::<LinkArgs>(rest),
        11 => signed::<ObjStatArgs>(rest),
        12 => round_trip::<ObjStatRes>(rest),
        _ => round_trip::<RepairRes>(rest),
    }
});
