//! The bytes of what the shards' Raft groups write and send, pinned (as the state machine's
//! own values are in `namespace::tests::encodings`): log records and entries, what a forwarded
//! command is answered, snapshots, checkpoint records, and the bodies of the peer procedures
//! about membership, leadership and snapshots. A node of one build reads what a node of
//! another wrote, on its disk or from the network, so these never change; new variants and
//! fields go at the end, and then this list grows.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use openraft::{
    BasicNode, CommittedLeaderId, EntryPayload, LogId, Membership, StoredMembership, Vote,
};

use meta_core::testing::check;
use meta_core::{apply, Command, FileKind, FsError, MemState, Outcome, ShardId, Time};

use super::handover::{HandOverError, Lead, LeadReply};
use super::members::{Change, ChangeRequest, JoinReply, JoinRequest, MembershipError};
use super::network::SnapshotPiece;
use super::node_addr::NodeAddr;
use crate::storage::entry::{Cfg, Entry, Proposal, Reply, ShardDump, Tagged};
use crate::storage::legacy::{self, OldCfg, OldEntry, OldProposal};
use crate::storage::log::{encode, Head, Rec};
use crate::storage::shard::{Applied, ShardCore};
use meta_core::sessions::Tag;
use openraft::raft::AppendEntriesRequest;

fn enc<T: serde::Serialize>(v: &T) -> Vec<u8> {
    postcard::to_stdvec(v).expect("encodes")
}

const T: Time = Time::new(1_700_000_123, 456_789);

fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 2), index)
}

fn membership() -> Membership<u64, BasicNode> {
    let voters = BTreeSet::from([1, 2, 3]);
    let nodes: BTreeMap<u64, BasicNode> = (1..=4)
        .map(|i| (i, BasicNode::new(format!("127.0.0.{i}:2049 domain=r{i}"))))
        .collect();
    Membership::new(vec![voters], nodes)
}

fn tagged() -> Tagged {
    Tagged {
        tag: Tag {
            origin: 2,
            life: 7,
            seq: 100,
            waits_from: 98,
        },
        cmd: Command::Create {
            parent: 1,
            name: b"f".to_vec(),
            kind: FileKind::Regular,
            mode: 0o644,
            uid: 1,
            gid: 1,
            time: T,
            how: meta_core::CreateHow::Guarded,
        },
    }
}

fn entries() -> Vec<Entry> {
    vec![
        Entry {
            log_id: log_id(3, 10),
            payload: EntryPayload::Blank,
        },
        Entry {
            log_id: log_id(3, 11),
            payload: EntryPayload::Normal(Proposal::encode(&[tagged()]).expect("encodes")),
        },
        Entry {
            log_id: log_id(3, 12),
            payload: EntryPayload::Membership(membership()),
        },
    ]
}

/// `entries` as builds before encode-once held them.
fn old_entries() -> Vec<OldEntry> {
    vec![
        OldEntry {
            log_id: log_id(3, 10),
            payload: EntryPayload::Blank,
        },
        OldEntry {
            log_id: log_id(3, 11),
            payload: EntryPayload::Normal(OldProposal {
                cmds: vec![tagged()],
            }),
        },
        OldEntry {
            log_id: log_id(3, 12),
            payload: EntryPayload::Membership(membership()),
        },
    ]
}

fn append_request<C: openraft::RaftTypeConfig<NodeId = u64>>(
    entries: Vec<C::Entry>,
) -> AppendEntriesRequest<C> {
    AppendEntriesRequest {
        vote: Vote::new_committed(3, 2),
        prev_log_id: Some(log_id(3, 9)),
        entries,
        leader_commit: Some(log_id(3, 9)),
    }
}

fn applied() -> Applied {
    Applied {
        log_id: Some(log_id(3, 12)),
        membership: StoredMembership::new(Some(log_id(3, 12)), membership()),
    }
}

/// A shard's snapshot: a small namespace made by `apply`, dumped as a snapshot is.
fn dump() -> Vec<u8> {
    dump_of(small_namespace())
}

/// `dump`'s namespace after snapshot 1 was cut and the directory's mode changed: the dump
/// ends with the snapshot state (a cut and the directory's pre-image), after every other
/// trailing part.
fn dump_with_snaps() -> Vec<u8> {
    let mut s = small_namespace();
    let shard = ShardId(0);
    let d = s.dirents[&(1, b"d".to_vec())].0;
    for cmd in [
        Command::SnapFreeze {
            shard,
            snap: 1,
            time: T,
        },
        Command::SnapCut {
            shard,
            snap: 1,
            time: T,
        },
        Command::SetAttr {
            ino: d,
            mode: Some(0o700),
            uid: None,
            gid: None,
            size: None,
            atime: None,
            mtime: None,
            time: T,
        },
    ] {
        meta_core::apply_on_shard(shard, &mut s, &cmd).expect("applies");
    }
    assert!(!s.pre_inodes.is_empty());
    dump_of(s)
}

/// `dump`'s namespace with a snapshot in the registry (begun, not yet frozen): the dump
/// ends with an empty snapshot state and then the registry, after every other trailing part.
fn dump_with_registry() -> Vec<u8> {
    let mut s = small_namespace();
    let begin = Command::SnapBegin {
        name: b"daily".to_vec(),
        root: 1,
        retain_secs: 3600,
        time: T,
    };
    meta_core::apply_on_shard(ShardId(0), &mut s, &begin).expect("applies");
    assert_eq!(s.registry.len(), 1);
    dump_of(s)
}

/// `dump`'s namespace with a file placed on DS 3 and 4, snapshot 1 cut, and the file's data
/// image at it (`SnapKeep`: a mirrored image, `linking`, its object the shard's next number):
/// the dump ends with an empty registry and segments' tier state, then the images.
fn dump_with_images() -> Vec<u8> {
    let mut s = small_namespace();
    let shard = ShardId(0);
    let out = apply(
        &mut s,
        &Command::Create {
            parent: 1,
            name: b"f".to_vec(),
            kind: FileKind::Regular,
            mode: 0o644,
            uid: 0,
            gid: 0,
            time: T,
            how: meta_core::CreateHow::Guarded,
        },
    )
    .expect("create");
    let ino = out.inode.expect("made").ino;
    for cmd in [
        Command::SetMirrors {
            ino,
            chunk: 0,
            mirrors: vec![3, 4],
        },
        Command::SnapFreeze {
            shard,
            snap: 1,
            time: T,
        },
        Command::SnapCut {
            shard,
            snap: 1,
            time: T,
        },
        Command::SnapKeep { ino, time: T },
    ] {
        meta_core::apply_on_shard(shard, &mut s, &cmd).expect("applies");
    }
    assert_eq!(s.images[&ino].len(), 1);
    dump_of(s)
}

fn small_namespace() -> MemState {
    let mut s = MemState::default();
    apply(&mut s, &Command::InitRoot { fs_id: 42, time: T }).expect("root");
    let out = apply(
        &mut s,
        &Command::Create {
            parent: 1,
            name: b"d".to_vec(),
            kind: FileKind::Directory,
            mode: 0o755,
            uid: 0,
            gid: 0,
            time: T,
            how: meta_core::CreateHow::Guarded,
        },
    )
    .expect("mkdir");
    let ino = out.inode.expect("made").ino;
    apply(
        &mut s,
        &Command::SetMirrors {
            ino,
            chunk: 0,
            mirrors: vec![],
        },
    )
    .ok();
    s
}

fn dump_of(s: MemState) -> Vec<u8> {
    let core = ShardCore::new(
        ShardId(0),
        s,
        applied(),
        Arc::new(crate::storage::shard::EffectSlot::default()),
        Arc::new(crate::storage::shard::Stats::default()),
    );
    let (_, d) = core.dump().expect("dumps");
    d.bytes
}

#[test]
fn what_the_raft_groups_write_and_send_encodes_as_pinned() {
    let mut now: Vec<(&str, Vec<u8>)> = Vec::new();
    let rec = |r: &Rec| encode(r).expect("encodes");
    now.push((
        "Rec::OldEntries",
        rec(&Rec::OldEntries {
            shard: 5,
            entries: old_entries(),
        }),
    ));
    now.push((
        "Rec::Vote",
        rec(&Rec::Vote {
            shard: 5,
            vote: Vote::new_committed(3, 2),
        }),
    ));
    now.push((
        "Rec::Committed",
        rec(&Rec::Committed {
            shard: 5,
            id: Some(log_id(3, 11)),
        }),
    ));
    now.push((
        "Rec::Truncate",
        rec(&Rec::Truncate {
            shard: 5,
            since: 12,
        }),
    ));
    now.push((
        "Rec::Purge",
        rec(&Rec::Purge {
            shard: 5,
            upto: log_id(2, 9),
        }),
    ));
    now.push((
        "Rec::Heads",
        rec(&Rec::Heads(vec![Head {
            shard: 5,
            vote: Some(Vote::new(4, 1)),
            committed: Some(log_id(3, 11)),
            purged: None,
        }])),
    ));
    now.push(("Tagged", enc(&tagged())));
    now.push((
        "Reply",
        enc(&Reply(vec![Ok(Outcome::default()), Err(FsError::Exists)])),
    ));
    now.push((
        "Proposed::Applied",
        enc(&crate::namespace::Proposed::Applied {
            index: 11,
            result: Err(FsError::NotFound),
        }),
    ));
    now.push((
        "Proposed::NotLeader",
        enc(&crate::namespace::Proposed::NotLeader(Some(3))),
    ));
    now.push((
        "Proposed::Failed",
        enc(&crate::namespace::Proposed::Failed(FsError::Closed)),
    ));
    now.push(("Applied", enc(&applied())));
    now.push(("ShardDump/bytes", dump()));
    now.push(("ShardDump", enc(&ShardDump { bytes: vec![1, 2] })));
    now.push((
        "SnapshotPiece",
        enc(&SnapshotPiece {
            id: "s5-3-12".into(),
            offset: 0,
            total: 3,
            data: vec![9, 9, 9],
            done: Some((
                Vote::new_committed(3, 2),
                openraft::SnapshotMeta {
                    last_log_id: Some(log_id(3, 12)),
                    last_membership: applied().membership,
                    snapshot_id: "s5-3-12".into(),
                },
            )),
        }),
    ));
    now.push((
        "JoinRequest",
        enc(&JoinRequest {
            addr: "127.0.0.9:2049".into(),
        }),
    ));
    now.push((
        "JoinReply",
        enc(&JoinReply {
            id: 4,
            nodes: vec![(1, "127.0.0.1:2049".into()), (4, "127.0.0.9:2049".into())],
            shards: 16,
        }),
    ));
    now.push((
        "ChangeRequest/Remove",
        enc(&ChangeRequest {
            change: Change::Remove { id: 3 },
            forwarded: false,
        }),
    ));
    now.push((
        "ChangeRequest/Place",
        enc(&ChangeRequest {
            change: Change::Place {
                voters: BTreeSet::from([1, 2, 4]),
                nodes: vec![(4, "127.0.0.9:2049".into())],
            },
            forwarded: true,
        }),
    ));
    for (i, e) in [
        MembershipError::BadToken,
        MembershipError::Peer("p".into()),
        MembershipError::Solo,
        MembershipError::NotMember(3),
        MembershipError::LastNode(3),
        MembershipError::NoMajority {
            id: 3,
            up: 1,
            left: 2,
        },
        MembershipError::NoLeader(5),
        MembershipError::NoIds,
        MembershipError::BadAddress("x".into()),
        MembershipError::Raft {
            shard: 5,
            reason: "r".into(),
        },
        MembershipError::StalePlan(5),
    ]
    .into_iter()
    .enumerate()
    {
        now.push((MEMBERSHIP_ERRORS[i], enc(&Err::<JoinReply, _>(e))));
    }
    now.push(("Lead::HandOver", enc(&Lead::HandOver { to: 2, term: 3 })));
    now.push((
        "Lead::Campaign",
        enc(&Lead::Campaign {
            from: 1,
            term: 3,
            last: Some(log_id(3, 12)),
        }),
    ));
    let e = |e: HandOverError| -> LeadReply { Err(e) };
    for (i, r) in [
        Ok(17),
        e(HandOverError::Solo),
        e(HandOverError::NotLeader {
            shard: 5,
            node: 1,
            term: 3,
        }),
        e(HandOverError::TooNew { shard: 5 }),
        e(HandOverError::NotVoter { shard: 5, node: 4 }),
        e(HandOverError::LeaderNotVoter { shard: 5 }),
        e(HandOverError::TooManyVoters {
            shard: 5,
            voters: 4,
            max: 3,
        }),
        e(HandOverError::Changing { shard: 5 }),
        e(HandOverError::Busy { shard: 5 }),
        e(HandOverError::Behind {
            shard: 5,
            node: 2,
            at: Some(1),
            last: None,
        }),
        e(HandOverError::NotElected {
            shard: 5,
            node: 2,
            leader: Some(1),
        }),
        e(HandOverError::Raft {
            shard: 5,
            reason: "r".into(),
        }),
        e(HandOverError::Peer("p".into())),
    ]
    .into_iter()
    .enumerate()
    {
        now.push((LEAD_REPLIES[i], enc(&r)));
    }
    let entry = NodeAddr::new(
        "127.0.0.1:2049".parse().expect("addr"),
        Some("127.0.1.1:2049".parse().expect("addr")),
    )
    .with_domain(Some("rack-1".into()))
    .to_string();
    now.push(("NodeAddr", entry.into_bytes()));
    now.push(("ShardDump/bytes+snaps", dump_with_snaps()));
    now.push(("ShardDump/bytes+registry", dump_with_registry()));
    now.push((
        "Proposal",
        enc(&Proposal::encode(&[tagged()]).expect("encodes")),
    ));
    now.push((
        "Rec::Entries",
        rec(&Rec::Entries {
            shard: 5,
            entries: entries(),
        }),
    ));
    now.push((
        "AppendEntries/PEERPROC_APPEND2",
        enc(&append_request::<Cfg>(entries())),
    ));
    now.push((
        "AppendEntries/PEERPROC_APPEND",
        enc(&append_request::<OldCfg>(old_entries())),
    ));
    now.push(("ShardDump/bytes+images", dump_with_images()));
    check(&now, GOLDEN);
}

fn golden(name: &str) -> Vec<u8> {
    let (_, h) = GOLDEN.iter().find(|(n, _)| *n == name).expect("pinned");
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).expect("hex"))
        .collect()
}

/// The old AppendEntries body is what builds before encode-once sent: its entries are the
/// bytes of the old log record's entries (pinned before issue 42, when `Proposal` held its
/// commands decoded), between the request's other fields. And an old body and an old record
/// read as this build's, and this build's entries go back to the old form unchanged.
#[test]
fn the_old_forms_are_the_old_bytes_and_convert_both_ways() {
    let old_rec = golden("Rec::OldEntries");
    // Variant 0, shard 5, then the entries.
    assert_eq!(&old_rec[..2], &[0, 5]);
    let mut want = enc(&Vote::<u64>::new_committed(3, 2));
    want.extend(enc(&Some(log_id(3, 9))));
    want.extend(&old_rec[2..]);
    want.extend(enc(&Some(log_id(3, 9))));
    assert_eq!(golden("AppendEntries/PEERPROC_APPEND"), want);

    let old: AppendEntriesRequest<OldCfg> =
        postcard::from_bytes(&golden("AppendEntries/PEERPROC_APPEND")).expect("decodes");
    let new = legacy::upgrade_append(old).expect("upgrades");
    assert_eq!(enc(&new), golden("AppendEntries/PEERPROC_APPEND2"));
    let back = legacy::downgrade_append(&new).expect("downgrades");
    assert_eq!(enc(&back), golden("AppendEntries/PEERPROC_APPEND"));

    let Rec::OldEntries { shard, entries } =
        postcard::from_bytes::<Rec>(&old_rec).expect("decodes")
    else {
        panic!("not the old entries record");
    };
    assert_eq!(shard, 5);
    let entries: Vec<Entry> = entries
        .into_iter()
        .map(legacy::upgrade)
        .collect::<Result<_, _>>()
        .expect("upgrades");
    assert_eq!(entries, self::entries());
    let EntryPayload::Normal(p) = &entries[1].payload else {
        panic!("not a proposal");
    };
    assert_eq!(p.decode().expect("decodes"), vec![tagged()]);
}

const MEMBERSHIP_ERRORS: [&str; 11] = [
    "MembershipError::BadToken",
    "MembershipError::Peer",
    "MembershipError::Solo",
    "MembershipError::NotMember",
    "MembershipError::LastNode",
    "MembershipError::NoMajority",
    "MembershipError::NoLeader",
    "MembershipError::NoIds",
    "MembershipError::BadAddress",
    "MembershipError::Raft",
    "MembershipError::StalePlan",
];

const LEAD_REPLIES: [&str; 13] = [
    "LeadReply::Ok",
    "HandOverError::Solo",
    "HandOverError::NotLeader",
    "HandOverError::TooNew",
    "HandOverError::NotVoter",
    "HandOverError::LeaderNotVoter",
    "HandOverError::TooManyVoters",
    "HandOverError::Changing",
    "HandOverError::Busy",
    "HandOverError::Behind",
    "HandOverError::NotElected",
    "HandOverError::Raft",
    "HandOverError::Peer",
];

/// Captured from the build before the MDS was split into `meta` and `mds` (issue 42); from
/// "Proposal" on, from the build that encodes an entry's commands once (node-core plan step 2;
/// `Rec::OldEntries` is the record builds before it wrote, and "AppendEntries/PEERPROC_APPEND"
/// is made of its bytes: `the_old_forms_are_the_old_bytes_and_convert_both_ways`);
/// "ShardDump/bytes+images" from the build that stores data images (snapshots plan step 6).
#[rustfmt::skip]
const GOLDEN: &[(&str, &str)] = &[
    ("Rec::OldEntries", "00050303020a0003020b0101020764620101016600a4030101f6c59fd50cd5f01b0003020c0201030102030401183132372e302e302e313a3230343920646f6d61696e3d723102183132372e302e302e323a3230343920646f6d61696e3d723203183132372e302e302e333a3230343920646f6d61696e3d723304183132372e302e302e343a3230343920646f6d61696e3d7234"),
    ("Rec::Vote", "0105030201"),
    ("Rec::Committed", "02050103020b"),
    ("Rec::Truncate", "03050c"),
    ("Rec::Purge", "0405020209"),
    ("Rec::Heads", "050105010401000103020b00"),
    ("Tagged", "020764620101016600a4030101f6c59fd50cd5f01b00"),
    ("Reply", "020000000000000101"),
    ("Proposed::Applied", "000b0100"),
    ("Proposed::NotLeader", "010103"),
    ("Proposed::Failed", "020f"),
    ("Applied", "0103020c0103020c01030102030401183132372e302e302e313a3230343920646f6d61696e3d723102183132372e302e302e323a3230343920646f6d61696e3d723203183132372e302e302e333a3230343920646f6d61696e3d723304183132372e302e302e343a3230343920646f6d61696e3d7234"),
    ("ShardDump/bytes", "020101ed030300008020f6c59fd50cd5f01bf6c59fd50cd5f01bf6c59fd50cd5f01bf6c59fd50cd5f01b0201000201ed030200008020f6c59fd50cd5f01bf6c59fd50cd5f01bf6c59fd50cd5f01bf6c59fd50cd5f01b010100010101640203010104030566696c6573020566735f69642a086e6578745f696e6f03000000000000000000"),
    ("ShardDump", "020102"),
    ("SnapshotPiece", "0773352d332d3132000303090909010302010103020c0103020c01030102030401183132372e302e302e313a3230343920646f6d61696e3d723102183132372e302e302e323a3230343920646f6d61696e3d723203183132372e302e302e333a3230343920646f6d61696e3d723304183132372e302e302e343a3230343920646f6d61696e3d72340773352d332d3132"),
    ("JoinRequest", "0e3132372e302e302e393a32303439"),
    ("JoinReply", "0402010e3132372e302e302e313a32303439040e3132372e302e302e393a3230343910"),
    ("ChangeRequest/Remove", "000300"),
    ("ChangeRequest/Place", "010301020401040e3132372e302e302e393a3230343901"),
    ("MembershipError::BadToken", "0100"),
    ("MembershipError::Peer", "01010170"),
    ("MembershipError::Solo", "0102"),
    ("MembershipError::NotMember", "010303"),
    ("MembershipError::LastNode", "010403"),
    ("MembershipError::NoMajority", "0105030102"),
    ("MembershipError::NoLeader", "010605"),
    ("MembershipError::NoIds", "0107"),
    ("MembershipError::BadAddress", "01080178"),
    ("MembershipError::Raft", "0109050172"),
    ("MembershipError::StalePlan", "010a05"),
    ("Lead::HandOver", "000203"),
    ("Lead::Campaign", "0101030103020c"),
    ("LeadReply::Ok", "0011"),
    ("HandOverError::Solo", "0100"),
    ("HandOverError::NotLeader", "0101050103"),
    ("HandOverError::TooNew", "010205"),
    ("HandOverError::NotVoter", "01030504"),
    ("HandOverError::LeaderNotVoter", "010405"),
    ("HandOverError::TooManyVoters", "0105050403"),
    ("HandOverError::Changing", "010605"),
    ("HandOverError::Busy", "010705"),
    ("HandOverError::Behind", "01080502010100"),
    ("HandOverError::NotElected", "010905020101"),
    ("HandOverError::Raft", "010a050172"),
    ("HandOverError::Peer", "010b0170"),
    ("NodeAddr", "3132372e302e302e313a3230343920636c69656e743d3132372e302e312e313a3230343920646f6d61696e3d7261636b2d31"),
    ("ShardDump/bytes+snaps", "020101ed030300008020f6c59fd50cd5f01bf6c59fd50cd5f01bf6c59fd50cd5f01bf6c59fd50cd5f01b0201000201c0030200008020f6c59fd50cd5f01bf6c59fd50cd5f01bf6c59fd50cd5f01bf6c59fd50cd5f01b020100010101640203010104030566696c6573020566735f69642a086e6578745f696e6f03000000000000000000000000000000010103f6c59fd50cd5f01b000001020101010201ed030200008020f6c59fd50cd5f01bf6c59fd50cd5f01bf6c59fd50cd5f01bf6c59fd50cd5f01b0101000000"),
    ("ShardDump/bytes+registry", "020101ed030300008020f6c59fd50cd5f01bf6c59fd50cd5f01bf6c59fd50cd5f01bf6c59fd50cd5f01b0201000201ed030200008020f6c59fd50cd5f01bf6c59fd50cd5f01bf6c59fd50cd5f01bf6c59fd50cd5f01b010100010101640203010104040566696c6573020566735f69642a086e6578745f696e6f03096e6578745f736e617002000000000000000000000000000000000000000101056461696c7901f6c59fd50cd5f01b901c00f6c59fd50cd5f01b"),
    ("Proposal", "1701020764620101016600a4030101f6c59fd50cd5f01b00"),
    ("Rec::Entries", "06050303020a0003020b011701020764620101016600a4030101f6c59fd50cd5f01b0003020c0201030102030401183132372e302e302e313a3230343920646f6d61696e3d723102183132372e302e302e323a3230343920646f6d61696e3d723203183132372e302e302e333a3230343920646f6d61696e3d723304183132372e302e302e343a3230343920646f6d61696e3d7234"),
    ("AppendEntries/PEERPROC_APPEND2", "030201010302090303020a0003020b011701020764620101016600a4030101f6c59fd50cd5f01b0003020c0201030102030401183132372e302e302e313a3230343920646f6d61696e3d723102183132372e302e302e323a3230343920646f6d61696e3d723203183132372e302e302e333a3230343920646f6d61696e3d723304183132372e302e302e343a3230343920646f6d61696e3d723401030209"),
    ("AppendEntries/PEERPROC_APPEND", "030201010302090303020a0003020b0101020764620101016600a4030101f6c59fd50cd5f01b0003020c0201030102030401183132372e302e302e313a3230343920646f6d61696e3d723102183132372e302e302e323a3230343920646f6d61696e3d723203183132372e302e302e333a3230343920646f6d61696e3d723304183132372e302e302e343a3230343920646f6d61696e3d723401030209"),
    ("ShardDump/bytes+images", "030101ed030300008020f6c59fd50cd5f01bf6c59fd50cd5f01bf6c59fd50cd5f01bf6c59fd50cd5f01b0301000201ed030200008020f6c59fd50cd5f01bf6c59fd50cd5f01bf6c59fd50cd5f01bf6c59fd50cd5f01b0101000300a40301000000f6c59fd50cd5f01bf6c59fd50cd5f01bf6c59fd50cd5f01bf6c59fd50cd5f01b0100000201016402030101660304010105030566696c6573030566735f69642a086e6578745f696e6f050001030002030400000000000000000000000000010104f6c59fd50cd5f01b0000000000000001030101f6c59fd50cd5f01b010402030401"),
];

/// The proposer joins commands each encoded on its own (`TaggedRef`, by the caller, without a
/// copy of the command) into an entry: the same bytes `Proposal::encode` writes of them, for
/// counts whose length prefix takes one and two bytes, and none.
#[test]
fn a_proposal_joined_from_commands_encoded_alone_is_the_proposal_of_them() {
    use crate::storage::entry::TaggedRef;
    for n in [0usize, 1, 2, 127, 128, 300] {
        let cmds: Vec<Tagged> = (0..n)
            .map(|i| {
                let mut t = tagged();
                t.tag.seq = i as u64;
                t
            })
            .collect();
        let parts: Vec<bytes::Bytes> = cmds
            .iter()
            .map(|t| {
                let part = TaggedRef {
                    tag: t.tag,
                    cmd: &t.cmd,
                }
                .encode()
                .expect("encodes");
                assert_eq!(part[..], enc(t)[..], "a TaggedRef encodes as its Tagged");
                part
            })
            .collect();
        let joined = Proposal::concat(&parts).expect("joins");
        assert_eq!(
            joined,
            Proposal::encode(&cmds).expect("encodes"),
            "{n} commands"
        );
        assert_eq!(joined.decode().expect("decodes"), cmds, "{n} commands");
    }
}
