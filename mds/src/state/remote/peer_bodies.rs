//! The postcard bodies of the peer procedures about NFS state, calls and answers, by kind:
//! one place that decodes each as the server does, for the fuzz target `peer_bodies` and the
//! tests. The bodies arrive only after the call's MAC under the cluster secret was checked,
//! but a decoder must still never panic nor allocate without bound on any bytes.
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::dataservers::holds::{HoldAnswer, HoldCall};
use crate::state::quiesce::{QuiesceAnswer, QuiesceCall};
use crate::state::remote::delegations::{DelegAnswer, DelegCall};
use crate::state::remote::locking::{HeldQuery, LockAnswer, LockCall, WireRange};
use crate::state::remote::shares::{ShareAnswer, ShareCall};

/// How many kinds `reencode` knows.
pub const KINDS: u8 = 14;

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
        11 => twice::<ShareAnswer>(body),
        12 => twice::<QuiesceCall>(body),
        _ => twice::<QuiesceAnswer>(body),
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
    /// The bodies other MDS nodes send about NFS state, and the file handles clients hold,
    /// pinned to the bytes an earlier build wrote (`meta_core::testing::check`): a node of one build
    /// answers a node of another, and a client keeps its handles across an upgrade.
    #[test]
    fn what_nodes_send_about_nfs_state_encodes_as_pinned() {
        use crate::dataservers::holds::{HoldAnswer, HoldCall};
        use crate::state::remote::locking::LockOp;
        let enc = |v: &dyn erased::Enc| v.bytes();
        let range = WireRange {
            client: 0x1122_3344_5566_7788,
            owner: b"lock owner".to_vec(),
            start: 10,
            end: u64::MAX,
            write: true,
        };
        let mut now: Vec<(&str, Vec<u8>)> = vec![
            (
                "LockCall",
                enc(&LockCall {
                    ino: 5,
                    range: range.clone(),
                    op: LockOp::Lock,
                    reclaim: true,
                }),
            ),
            (
                "LockCall/Test",
                enc(&LockCall {
                    ino: 5,
                    range: range.clone(),
                    op: LockOp::Test,
                    reclaim: false,
                }),
            ),
            (
                "LockCall/Unlock",
                enc(&LockCall {
                    ino: 5,
                    range: range.clone(),
                    op: LockOp::Unlock,
                    reclaim: false,
                }),
            ),
            ("LockAnswer::Granted", enc(&LockAnswer::Granted)),
            (
                "LockAnswer::Denied",
                enc(&LockAnswer::Denied(range.clone())),
            ),
            ("LockAnswer::Grace", enc(&LockAnswer::Grace)),
            (
                "LockAnswer::NotLeader",
                enc(&LockAnswer::NotLeader(Some(3))),
            ),
            (
                "HeldQuery",
                enc(&HeldQuery {
                    ino: 5,
                    probe: Some(range.clone()),
                }),
            ),
            ("Vec<WireRange>", enc(&vec![range.clone()])),
            (
                "DelegCall::Note",
                enc(&DelegCall::Note {
                    ino: 5,
                    grant: 6,
                    holder: 7,
                }),
            ),
            (
                "DelegCall::Recall",
                enc(&DelegCall::Recall {
                    ino: 5,
                    except: Some(7),
                }),
            ),
            (
                "DelegCall::Held",
                enc(&DelegCall::Held { inos: vec![5, 6] }),
            ),
            (
                "DelegCall::Gone",
                enc(&DelegCall::Gone {
                    node: 2,
                    ago_ms: 1500,
                }),
            ),
            ("DelegAnswer::Noted", enc(&DelegAnswer::Noted(true))),
            (
                "DelegAnswer::Recalled",
                enc(&DelegAnswer::Recalled {
                    outstanding: false,
                    as_of: 9,
                }),
            ),
            (
                "DelegAnswer::Held",
                enc(&DelegAnswer::Held {
                    held: vec![6],
                    as_of: 9,
                }),
            ),
            ("DelegAnswer::Done", enc(&DelegAnswer::Done)),
            (
                "HoldCall::Hold",
                enc(&HoldCall::Hold {
                    ino: 5,
                    ttl_ms: 60_000,
                    fence: true,
                }),
            ),
            ("HoldCall::Release", enc(&HoldCall::Release { ino: 5 })),
            ("HoldAnswer::Held", enc(&HoldAnswer::Held { in_use: true })),
            ("HoldAnswer::Refused", enc(&HoldAnswer::Refused)),
            ("HoldAnswer::Released", enc(&HoldAnswer::Released)),
            ("InUse/question", enc(&vec![5u64, 1 << 50])),
            ("InUse/answer", enc(&vec![true, false])),
            (
                "ShareCall::Note",
                enc(&ShareCall::Note {
                    ino: 5,
                    access: 3,
                    deny: 1,
                    number: 4,
                    holder: 7,
                }),
            ),
            (
                "ShareCall::Denies",
                enc(&ShareCall::Denies {
                    files: vec![(5, 2)],
                }),
            ),
            ("ShareAnswer::Noted", enc(&ShareAnswer::Noted)),
            (
                "ShareAnswer::Refused",
                enc(&ShareAnswer::Refused { busy: true }),
            ),
            (
                "ShareAnswer::Denies",
                enc(&ShareAnswer::Denies {
                    deny: vec![0, 2],
                    as_of: 4,
                }),
            ),
        ];
        let key = crate::fh::FhKey::new([0x42; 32]);
        let fh = crate::fh::FileHandle {
            fs_id: 0x0123_4567_89ab_cdef,
            export: 2,
            ino: 77,
            snap: None,
        };
        now.extend([
            (
                "QuiesceCall::Hold",
                enc(&QuiesceCall::Hold {
                    tag: 7,
                    ttl_ms: 10_000,
                }),
            ),
            (
                "QuiesceCall::Release",
                enc(&QuiesceCall::Release { tag: 7 }),
            ),
            ("QuiesceAnswer::Held", enc(&QuiesceAnswer::Held)),
            ("QuiesceAnswer::Busy", enc(&QuiesceAnswer::Busy)),
            ("QuiesceAnswer::InFlight", enc(&QuiesceAnswer::InFlight)),
            ("QuiesceAnswer::Released", enc(&QuiesceAnswer::Released)),
        ]);
        now.push(("FileHandle", fh.encode(&key)));
        meta_core::testing::check(&now, GOLDEN);
    }

    mod erased {
        pub trait Enc {
            fn bytes(&self) -> Vec<u8>;
        }
        impl<T: serde::Serialize> Enc for T {
            fn bytes(&self) -> Vec<u8> {
                postcard::to_stdvec(self).expect("encodes")
            }
        }
    }

    /// Captured from the build before the MDS was split into `meta` and `mds` (issue 42); the
    /// quiesce bodies from their first build (issue 48).
    #[rustfmt::skip]
    const GOLDEN: &[(&str, &str)] = &[
        ("LockCall", "0588ef99abc5e88c91110a6c6f636b206f776e65720affffffffffffffffff01010001"),
        ("LockCall/Test", "0588ef99abc5e88c91110a6c6f636b206f776e65720affffffffffffffffff01010100"),
        ("LockCall/Unlock", "0588ef99abc5e88c91110a6c6f636b206f776e65720affffffffffffffffff01010200"),
        ("LockAnswer::Granted", "00"),
        ("LockAnswer::Denied", "0188ef99abc5e88c91110a6c6f636b206f776e65720affffffffffffffffff0101"),
        ("LockAnswer::Grace", "02"),
        ("LockAnswer::NotLeader", "030103"),
        ("HeldQuery", "050188ef99abc5e88c91110a6c6f636b206f776e65720affffffffffffffffff0101"),
        ("Vec<WireRange>", "0188ef99abc5e88c91110a6c6f636b206f776e65720affffffffffffffffff0101"),
        ("DelegCall::Note", "00050607"),
        ("DelegCall::Recall", "01050107"),
        ("DelegCall::Held", "02020506"),
        ("DelegCall::Gone", "0302dc0b"),
        ("DelegAnswer::Noted", "0001"),
        ("DelegAnswer::Recalled", "010009"),
        ("DelegAnswer::Held", "02010609"),
        ("DelegAnswer::Done", "03"),
        ("HoldCall::Hold", "0005e0d40301"),
        ("HoldCall::Release", "0105"),
        ("HoldAnswer::Held", "0001"),
        ("HoldAnswer::Refused", "01"),
        ("HoldAnswer::Released", "02"),
        ("InUse/question", "02058080808080808002"),
        ("InUse/answer", "020100"),
        ("ShareCall::Note", "000503010407"),
        ("ShareCall::Denies", "01010502"),
        ("ShareAnswer::Noted", "00"),
        ("ShareAnswer::Refused", "0101"),
        ("ShareAnswer::Denies", "0202000204"),
        ("QuiesceCall::Hold", "0007904e"),
        ("QuiesceCall::Release", "0107"),
        ("QuiesceAnswer::Held", "00"),
        ("QuiesceAnswer::Busy", "01"),
        ("QuiesceAnswer::InFlight", "02"),
        ("QuiesceAnswer::Released", "03"),
        ("FileHandle", "636673320123456789abcdef00000002000000000000004dde4f1ca0a1a510f8f3929bf141062b73"),
    ];
}
