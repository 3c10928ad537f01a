//! The cluster control program (heartbeats a DS sends the MDS, the replies with their list of
//! metadata nodes, bad-chunk reports, the recipes of reduced files a DS asks for,
//! the status an admin reads), the MDS peer program's calls and replies, and the flexfiles
//! bodies that travel inside opaque fields (layouts and device addresses a client decodes,
//! the ff_layoutreturn4 the MDS decodes): decoding arbitrary
//! bytes never panics and whatever decodes round-trips. The first byte picks the type.
#![no_main]
use libfuzzer_sys::fuzz_target;
use proto::cluster::{
    BadChunksArgs, BadChunksRes, BadShardsArgs, BadShardsRes, HeartbeatArgs, HeartbeatRes,
    RecipeArgs, RecipePartArgs, RecipePartRes, RecipeRes, StatusArgs, StatusRes,
};
use proto::nfs4::{FfDeviceAddr4, FfLayout4, FfLayoutreturn4};
use proto::peer::{PeerArgs, PeerRes};
use proto::xdr::Xdr;

fn round_trip<T: Xdr + PartialEq + std::fmt::Debug>(bytes: &[u8]) {
    if let Ok(v) = T::from_xdr(bytes) {
        let again = v.to_xdr();
        assert_eq!(T::from_xdr(&again).as_ref(), Ok(&v));
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    match sel % 13 {
        0 => {
            round_trip::<HeartbeatArgs>(rest);
            // What the MDS does with one before trusting it.
            if let Ok(a) = HeartbeatArgs::from_xdr(rest) {
                let _ = a.mac_input();
            }
        }
        1 => {
            // An MDS's answer to a heartbeat (chunk size, fences, the metadata nodes), as the
            // DS reads it before checking its MAC.
            round_trip::<HeartbeatRes>(rest);
            if let Ok(HeartbeatRes::Ok(ok)) = HeartbeatRes::from_xdr(rest) {
                let _ = ok.mac_input();
            }
        }
        2 => round_trip::<StatusRes>(rest),
        3 => round_trip::<FfLayout4>(rest),
        4 => round_trip::<FfDeviceAddr4>(rest),
        5 => round_trip::<FfLayoutreturn4>(rest),
        6 => {
            // A DS's bad-chunk report, as the MDS reads it before checking its MAC.
            round_trip::<BadChunksArgs>(rest);
            if let Ok(a) = BadChunksArgs::from_xdr(rest) {
                let _ = a.mac_input();
            }
        }
        7 => round_trip::<BadChunksRes>(rest),
        8 => {
            // A DS's RECIPE or RECIPE_PART call (the MDS reads it before checking its MAC),
            // and the MDS's answer (the DS reads it before checking its MAC against the
            // request's).
            let Some((&form, body)) = rest.split_first() else {
                return;
            };
            match form & 3 {
                0 => {
                    round_trip::<RecipeArgs>(body);
                    if let Ok(a) = RecipeArgs::from_xdr(body) {
                        let _ = a.mac_input();
                    }
                }
                1 => {
                    round_trip::<RecipeRes>(body);
                    if let Ok(RecipeRes::Ok(ok)) = RecipeRes::from_xdr(body) {
                        let _ = ok.mac_input();
                    }
                }
                2 => {
                    round_trip::<RecipePartArgs>(body);
                    if let Ok(a) = RecipePartArgs::from_xdr(body) {
                        let _ = a.mac_input();
                    }
                }
                _ => {
                    round_trip::<RecipePartRes>(body);
                    if let Ok(RecipePartRes::Ok(ok)) = RecipePartRes::from_xdr(body) {
                        let _ = ok.mac_input();
                    }
                }
            }
        }
        9 => {
            // Another MDS's call (Raft, forwarded commands), as read before its MAC is checked.
            round_trip::<PeerArgs>(rest);
            if let Ok(a) = PeerArgs::from_xdr(rest) {
                let _ = a.mac_input();
            }
        }
        10 => round_trip::<PeerRes>(rest),
        11 => {
            // A DS's bad-shard report, as the MDS reads it before checking its MAC.
            round_trip::<BadShardsArgs>(rest);
            if let Ok(a) = BadShardsArgs::from_xdr(rest) {
                let _ = a.mac_input();
            }
        }
        12 => round_trip::<BadShardsRes>(rest),
        _ => {
            // An operator's STATUS request, as the MDS reads it before checking its MAC.
            round_trip::<StatusArgs>(rest);
            if let Ok(a) = StatusArgs::from_xdr(rest) {
                let _ = a.mac_input();
            }
        }
    }
});
