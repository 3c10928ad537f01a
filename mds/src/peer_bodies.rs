//! The postcard bodies of the peer procedures about NFS state, calls and answers, by kind:
//! one place that decodes each as the server does, for the fuzz target `peer_bodies` and the
//! tests. The bodies arrive only after the call's MAC under the cluster secret was checked,
//! but a decoder must still never panic nor allocate without bound on any bytes.
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::cluster::holds::{HoldAnswer, HoldCall};
use crate::locking::{HeldQuery, LockAnswer, LockCall, WireRange};
use crate::remote_delegations::{DelegAnswer, DelegCall};
use crate::remote_shares::{ShareAnswer, ShareCall};

/// How many kinds `reencode` knows.
pub const KINDS: u8 = 12;

/// Decodes `body` as kind `kind % KINDS`; if it decodes, encodes it again, decodes that and
/// encodes once more: both encodings, which must be equal (a body means one value).
pub fn reencode(kind: u8, body: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    match kind % KINDS {
        0 => twice::<LockCall>(body),
        1 => twice::<LockAnswer>(body),
        2 => twice::<HeldQuery>(body),
        3 => twice::<Vec<WireRange>>(body),
        4 => twice::<DelegCall>(body),
        5 => twice::<DelegAnswer>(body),
        6 => twice::<HoldCall>(body),
        7 => twice::<HoldAnswer>(body),
        // PEERPROC_IN_USE's question and answer.
        8 => twice::<Vec<u64>>(body),
        9 => twice::<Vec<bool>>(body),
        10 => twice::<ShareCall>(body),
        _ => twice::<ShareAnswer>(body),
    }
}

fn twice<T: Serialize + DeserializeOwned>(body: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let v: T = postcard::from_bytes(body).ok()?;
    let a = postcard::to_stdvec(&v).ok()?;
    let w: T = postcard::from_bytes(&a).ok()?;
    let b = postcard::to_stdvec(&w).ok()?;
    Some((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_bytes_decode_or_are_refused_and_what_decodes_means_one_value(
            kind in 0u8..KINDS,
            body in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            if let Some((a, b)) = reencode(kind, &body) {
                prop_assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn real_bodies_decode() {
        let hold = postcard::to_stdvec(&HoldCall::Hold {
            ino: 7,
            ttl_ms: 60_000,
            fence: true,
        })
        .expect("encode");
        let (a, _) = reencode(6, &hold).expect("a hold decodes");
        assert_eq!(a, hold);
        let deleg = postcard::to_stdvec(&DelegCall::Held {
            inos: vec![1, 2, 3],
        })
        .expect("encode");
        assert_eq!(reencode(4, &deleg).map(|(a, _)| a), Some(deleg));
        // A length far past the bytes that follow: refused, not allocated.
        assert_eq!(reencode(8, &[0xff, 0xff, 0xff, 0xff, 0x0f]), None);
    }
}
