//! The bodies of the MDS peer procedures about NFS state (locks, delegations, maintenance
//! holds, in-use questions), calls and answers: never a panic, and what decodes encodes to
//! one canonical form. The first byte picks the kind (`mds::state::remote::peer_bodies::reencode`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    if let Some((a, b)) = mds::state::remote::peer_bodies::reencode(kind, body) {
        assert_eq!(a, b, "a decoded body re-encodes the same way twice");
    }
});
