//! The bytes of what the state machine keeps and replicates, pinned: commands, results and
//! errors travel between nodes and sit in every node's log, records sit in redb and in
//! snapshots, all in postcard, which numbers fields and variants by their order and knows no
//! names. A value here must encode to the same bytes in every later build (new variants and
//! fields go at the end, and then this list grows): a node of one build reads what a node of
//! the other wrote. Moving a type between modules or crates changes nothing here; reordering
//! or retyping a field does.

use super::*;
use crate::coding::{Encoded, Encoding, GroupCode};
use crate::perm::Cred;
use crate::reduce_index::{
    ChunkId, ChunkSlot, Referrer, Segment, SegmentBucket, SegmentId, SegmentState, SegmentTierStep,
    StoredSegment,
};
use crate::reducing::{FileReduce, RecipePart, ReduceState, Reduced};
use crate::sessions::{Seen, Sessions, Tag};
use crate::snap::{
    Cut, DataImage, Freeze, ImageForm, Images, Pre, ShardSnaps, SnapRecord, SnapState, Versions,
};
use crate::testing::check;
use crate::txn::{Decision, Prepared, TxnEntry, TxnPart};

fn enc<T: serde::Serialize>(v: &T) -> Vec<u8> {
    postcard::to_stdvec(v).expect("encodes")
}

const T: Time = Time::new(1_700_000_123, 456_789);

fn inode(kind: FileKind) -> Inode {
    Inode {
        ino: ShardId(3).ino(77),
        kind,
        mode: 0o4755,
        nlink: 2,
        uid: 1000,
        gid: 100,
        size: 1 << 33,
        atime: T,
        mtime: Time::new(-5, 1),
        ctime: Time::new(7, 999_999_999),
        crtime: Time::new(0, 0),
        change: 42,
        parent: ROOT_INO,
        create_verifier: Some([1, 2, 3, 4, 5, 6, 7, 8]),
    }
}

fn outcome() -> Outcome {
    Outcome {
        inode: Some(inode(FileKind::Regular)),
        created: true,
        dir: Some(DirChange {
            ino: ROOT_INO,
            before: 5,
            after: 6,
        }),
        dst_dir: None,
        effects: vec![Effect::Orphaned(9), Effect::Freed(10), Effect::Detached(11)],
    }
}

fn request() -> ClientRequest {
    ClientRequest {
        session: [7; 16],
        slot: 3,
        seqid: 99,
        op: 2,
    }
}

fn part() -> TxnPart {
    TxnPart {
        shard: ShardId(2),
        inodes: vec![(5, Some(inode(FileKind::Directory))), (6, None)],
        dirents: vec![(1, b"a".to_vec(), Some((5, 3))), (1, b"b".to_vec(), None)],
        cookies: vec![(1, Some(4)), (2, None)],
        meta: vec![("next_ino".into(), -1)],
        orphans: vec![(6, true)],
        chunks: vec![(6, 0, Some(vec![11, 12])), (6, 1, None)],
        stripes: vec![(6, Some(file_code())), (7, None)],
    }
}

fn file_code() -> FileCode {
    FileCode {
        epoch: 3,
        k: 4,
        m: 2,
        unit_shift: 20,
        placement: vec![11, 12, 13, 14, 15, 16],
        groups: [(
            0,
            GroupCode {
                len: 16 << 20,
                sums: vec![[0xab; 32]; 2],
                bad: 0b10,
            },
        )]
        .into_iter()
        .collect(),
        encoding: Some(Encoding {
            first: 1,
            end: 4,
            since: T,
        }),
        stale_copies: vec![12],
        retired: false,
    }
}

/// One of each command variant, in declaration order.
fn commands() -> Vec<(&'static str, Command)> {
    let create = Command::Create {
        parent: ROOT_INO,
        name: b"file".to_vec(),
        kind: FileKind::Symlink {
            target: b"/x".to_vec(),
        },
        mode: 0o644,
        uid: 1,
        gid: 2,
        time: T,
        how: CreateHow::Exclusive([9; 8]),
    };
    vec![
        ("InitRoot", Command::InitRoot { fs_id: 42, time: T }),
        ("Create", create.clone()),
        (
            "Link",
            Command::Link {
                ino: 5,
                parent: 1,
                name: b"l".to_vec(),
                time: T,
            },
        ),
        (
            "Unlink",
            Command::Unlink {
                parent: 1,
                name: b"u".to_vec(),
                child: 5,
                time: T,
            },
        ),
        (
            "Rmdir",
            Command::Rmdir {
                parent: 1,
                name: b"d".to_vec(),
                child: 6,
                time: T,
            },
        ),
        (
            "Remove",
            Command::Remove {
                parent: 1,
                name: b"r".to_vec(),
                child: 7,
                time: T,
            },
        ),
        (
            "Rename",
            Command::Rename {
                src_parent: 1,
                src_name: b"s".to_vec(),
                src: 8,
                dst_parent: 2,
                dst_name: b"t".to_vec(),
                dst: Some(9),
                time: T,
            },
        ),
        (
            "SetAttr",
            Command::SetAttr {
                ino: 5,
                mode: Some(0o600),
                uid: None,
                gid: Some(7),
                size: Some(100),
                atime: Some(SetTime::Now),
                mtime: Some(SetTime::At(T)),
                time: T,
            },
        ),
        (
            "Write",
            Command::Write {
                ino: 5,
                end_offset: 1 << 40,
                time: T,
                writes: 3,
            },
        ),
        ("Forget", Command::Forget { ino: 5 }),
        (
            "SetMirrors",
            Command::SetMirrors {
                ino: 5,
                chunk: 2,
                mirrors: vec![11, 12],
            },
        ),
        ("Noop", Command::Noop),
        (
            "ForgetOrphans",
            Command::ForgetOrphans {
                inos: vec![5, u64::MAX],
            },
        ),
        (
            "As",
            Command::As {
                cred: Cred {
                    uid: 1000,
                    gid: 100,
                    groups: vec![4, 24],
                },
                cmd: Box::new(create.clone()),
            },
        ),
        (
            "SetDrain",
            Command::SetDrain {
                ds: 0xfeed,
                draining: true,
            },
        ),
        (
            "BeginEncode",
            Command::BeginEncode {
                ino: 5,
                first: 0,
                end: 3,
                k: 4,
                m: 2,
                unit_shift: 20,
                placement: vec![1, 2, 3, 4, 5, 6],
                time: T,
            },
        ),
        (
            "FinishEncode",
            Command::FinishEncode {
                ino: 5,
                epoch: 3,
                done: vec![Encoded {
                    group: 1,
                    len: 77,
                    sums: vec![[0x5a; 32]],
                }],
            },
        ),
        ("AbortEncode", Command::AbortEncode { ino: 5, epoch: 3 }),
        (
            "ShardBad",
            Command::ShardBad {
                ino: 5,
                epoch: 3,
                group: 1,
                shard: 4,
            },
        ),
        (
            "ShardMoved",
            Command::ShardMoved {
                ino: 5,
                epoch: 3,
                shard: 4,
                ds: 17,
            },
        ),
        ("CopiesTrimmed", Command::CopiesTrimmed { ino: 5, epoch: 3 }),
        ("ShardsDropped", Command::ShardsDropped { ino: 5, epoch: 3 }),
        (
            "ClientRecords",
            Command::ClientRecords {
                node: 2,
                add: vec![b"owner".to_vec()],
                remove: vec![b"gone".to_vec(), Vec::new()],
            },
        ),
        (
            "TakeOverClients",
            Command::TakeOverClients { from: 1, to: 3 },
        ),
        (
            "Place",
            Command::Place {
                shard: ShardId(9),
                cmd: Box::new(create.clone()),
            },
        ),
        (
            "TxnLock",
            Command::TxnLock {
                txn: (1u128 << 112) | 77,
                coord: ShardId(1),
                keys: vec![
                    Key::Inode(5),
                    Key::Entries(1),
                    Key::NewInode(ShardId(2)),
                    Key::Clients,
                ],
                time: T,
            },
        ),
        (
            "TxnDecide",
            Command::TxnDecide {
                txn: 77,
                parts: vec![part()],
                time: T,
            },
        ),
        ("TxnResolve", Command::TxnResolve { txn: 77, time: T }),
        (
            "TxnCommit",
            Command::TxnCommit {
                txn: 77,
                part: part(),
            },
        ),
        ("TxnAbort", Command::TxnAbort { txn: 77 }),
        ("TxnForget", Command::TxnForget { txn: u128::MAX }),
        (
            "Request",
            Command::Request {
                req: request(),
                at: T,
                cmd: Box::new(Command::Noop),
                answer: Some(Box::new(outcome())),
            },
        ),
        (
            "Detach",
            Command::Detach {
                parent: 1,
                name: b"tree".to_vec(),
                child: 12,
                time: T,
            },
        ),
        (
            "ReplaceMirrors",
            Command::ReplaceMirrors {
                ino: 5,
                chunk: 0,
                expect: Vec::new(),
                mirrors: vec![11, 12],
            },
        ),
        (
            "SetXattr",
            Command::SetXattr {
                ino: 5,
                name: b"pin".to_vec(),
                value: b"hot".to_vec(),
                how: crate::xattr::How::Replace,
                time: T,
            },
        ),
        (
            "RemoveXattr",
            Command::RemoveXattr {
                ino: 5,
                name: b"pin".to_vec(),
                time: T,
            },
        ),
        (
            "WriteKeepingTimes",
            Command::WriteKeepingTimes {
                ino: 5,
                end_offset: 1 << 40,
                writes: 3,
            },
        ),
        (
            "TierBegin",
            Command::TierBegin {
                ino: 5,
                change: 9,
                pieces: 2,
                time: T,
                by: 1 << 48 | 3,
            },
        ),
        (
            "TierDone",
            Command::TierDone {
                ino: 5,
                gen: 4,
                pieces: vec![crate::tiering::TierPiece {
                    len: 64 << 20,
                    sum: [7; 32],
                }],
                time: T,
            },
        ),
        (
            "TierAbort",
            Command::TierAbort {
                ino: 5,
                gen: 4,
                time: T,
            },
        ),
        ("TierDoom", Command::TierDoom { ino: 5, time: T }),
        ("TierDeleted", Command::TierDeleted { ino: 5, gen: 4 }),
        (
            "TierEvict",
            Command::TierEvict {
                ino: 5,
                gen: 4,
                change: 9,
            },
        ),
        ("TierWant", Command::TierWant { ino: 5 }),
        ("TierRestored", Command::TierRestored { ino: 5, gen: 4 }),
        (
            "AddReferrer",
            Command::AddReferrer {
                shard: ShardId(3),
                segment: SegmentId([0x5e; 32]),
                stored: Some(StoredSegment {
                    chunks: vec![(ChunkId([0xc1; 32]), 32768), (ChunkId([0xc2; 32]), 7)],
                    placement: vec![11, 12, 13],
                    stored_len: 2 << 20,
                }),
                referrer: Referrer { ino: 5, epoch: 4 },
            },
        ),
        (
            "DropReferrer",
            Command::DropReferrer {
                shard: ShardId(3),
                segment: SegmentId([0x5e; 32]),
                referrer: Referrer {
                    ino: u64::MAX,
                    epoch: 1,
                },
            },
        ),
        (
            "ForgetSegment",
            Command::ForgetSegment {
                shard: ShardId(u16::MAX),
                segment: SegmentId([0; 32]),
            },
        ),
        ("BeginReduce", Command::BeginReduce { ino: 5, time: T }),
        (
            "FinishReduce",
            Command::FinishReduce {
                ino: 5,
                epoch: 4,
                len: 1 << 33,
                recipe: b"cfsrdrcp".to_vec(),
                segments: vec![SegmentId([0x5e; 32]), SegmentId([0x5f; 32])],
            },
        ),
        ("AbortReduce", Command::AbortReduce { ino: 5, epoch: 4 }),
        (
            "ReduceCopiesTrimmed",
            Command::ReduceCopiesTrimmed { ino: 5, epoch: 4 },
        ),
        (
            "ReferrersDropped",
            Command::ReferrersDropped {
                ino: u64::MAX,
                epoch: 4,
            },
        ),
        (
            "SetDataKey",
            Command::SetDataKey {
                wrapped: vec![0xab, 0xcd],
                expect: Some(vec![0x01]),
            },
        ),
        (
            "SegmentMoved",
            Command::SegmentMoved {
                shard: ShardId(3),
                segment: SegmentId([0x5e; 32]),
                index: 2,
                from: 11,
                to: u64::MAX,
            },
        ),
        (
            "SnapFreeze",
            Command::SnapFreeze {
                shard: ShardId(3),
                snap: 7,
                time: T,
            },
        ),
        (
            "SnapCut",
            Command::SnapCut {
                shard: ShardId(3),
                snap: 300,
                time: T,
            },
        ),
        (
            "SnapThaw",
            Command::SnapThaw {
                shard: ShardId(u16::MAX),
                snap: 7,
            },
        ),
        (
            "SnapAbort",
            Command::SnapAbort {
                shard: ShardId(0),
                snap: u64::MAX,
            },
        ),
        (
            "SnapRetire",
            Command::SnapRetire {
                shard: ShardId(3),
                snap: 1,
            },
        ),
        (
            "SnapMerge",
            Command::SnapMerge {
                shard: ShardId(3),
                snap: 7,
                max: 4096,
            },
        ),
        (
            "SnapForget",
            Command::SnapForget {
                shard: ShardId(3),
                snap: 8,
            },
        ),
        (
            "SnapBegin",
            Command::SnapBegin {
                name: b"daily".to_vec(),
                root: ShardId(2).ino(9),
                retain_secs: 604_800,
                time: T,
            },
        ),
        ("SnapDecide", Command::SnapDecide { snap: 7, time: T }),
        (
            "SnapResolve",
            Command::SnapResolve {
                snap: u64::MAX,
                time: T,
            },
        ),
        ("SnapReady", Command::SnapReady { snap: 1, time: T }),
        ("SnapDelete", Command::SnapDelete { snap: 300, time: T }),
        ("SnapForgetRecord", Command::SnapForgetRecord { snap: 2 }),
        (
            "SegmentTier",
            Command::SegmentTier {
                shard: ShardId(3),
                segment: SegmentId([0x5e; 32]),
                step: SegmentTierStep::OffFlash {
                    placement: vec![7, 300],
                },
            },
        ),
        (
            "SegmentTier/Warmed",
            Command::SegmentTier {
                shard: ShardId(3),
                segment: SegmentId([0x5e; 32]),
                step: SegmentTierStep::Warmed {
                    placement: vec![7, 300],
                },
            },
        ),
        ("SnapKeep", Command::SnapKeep { ino: 5, time: T }),
        ("SnapKept", Command::SnapKept { ino: 5, snap: 300 }),
        (
            "SnapImageMirrors",
            Command::SnapImageMirrors {
                ino: 5,
                snap: 3,
                expect: vec![11, 12],
                mirrors: vec![11, 300],
            },
        ),
        (
            "ReducePart",
            Command::ReducePart {
                ino: 5,
                epoch: 4,
                part: recipe_part(),
                last: true,
            },
        ),
        ("SnapKeepLocal", Command::SnapKeepLocal { ino: 5, time: T }),
        (
            "SnapImageGone",
            Command::SnapImageGone { ino: 5, snap: 300 },
        ),
        (
            "SnapAdopt",
            Command::SnapAdopt {
                ino: 5,
                time: T,
                local: true,
            },
        ),
        (
            "SnapImageArchived",
            Command::SnapImageArchived {
                ino: 5,
                snap: 300,
                copy: crate::tiering::TierCopy {
                    gen: u64::MAX,
                    change: 0,
                    pieces: vec![crate::tiering::TierPiece {
                        len: 1 << 20,
                        sum: [0x5e; 32],
                    }],
                    at: T,
                },
            },
        ),
        (
            "SnapImageFlashFreed",
            Command::SnapImageFlashFreed { ino: 5, snap: 300 },
        ),
    ]
}

fn recipe_part() -> RecipePart {
    RecipePart {
        offset: 1 << 28,
        len: 1 << 20,
        recipe: b"cfsrdrcp".to_vec(),
        segments: vec![SegmentId([0x5e; 32])],
    }
}

const ERROR_NAMES: [&str; 25] = [
    "FsError::NotFound",
    "FsError::Exists",
    "FsError::NotDir",
    "FsError::IsDir",
    "FsError::NotEmpty",
    "FsError::Invalid",
    "FsError::NameTooLong",
    "FsError::Stale",
    "FsError::Perm",
    "FsError::Access",
    "FsError::WrongKind",
    "FsError::Io",
    "FsError::NoSpace",
    "FsError::Corrupt",
    "FsError::Changed",
    "FsError::Closed",
    "FsError::Unavailable",
    "FsError::Busy",
    "FsError::Elsewhere",
    "FsError::Aborted",
    "FsError::NeedLock",
    "FsError::Answered",
    "FsError::Dangling",
    "FsError::NoXattr",
    "FsError::XattrTooBig",
];

/// One of each error variant, in declaration order.
fn errors() -> Vec<FsError> {
    vec![
        FsError::NotFound,
        FsError::Exists,
        FsError::NotDir,
        FsError::IsDir,
        FsError::NotEmpty,
        FsError::Invalid,
        FsError::NameTooLong,
        FsError::Stale(5),
        FsError::Perm,
        FsError::Access,
        FsError::WrongKind,
        FsError::Io("disk".into()),
        FsError::NoSpace,
        FsError::Corrupt("bad".into()),
        FsError::Changed,
        FsError::Closed,
        FsError::Unavailable("no leader".into()),
        FsError::Busy,
        FsError::Elsewhere,
        FsError::Aborted,
        FsError::NeedLock(Key::Entries(3)),
        FsError::Answered(Box::default()),
        FsError::Dangling { dir: 1, ino: 5 },
        FsError::NoXattr,
        FsError::XattrTooBig,
    ]
}

fn sessions() -> Sessions {
    let mut s = Sessions::default();
    let tag = Tag {
        origin: 2,
        life: 5,
        seq: 10,
        waits_from: 9,
    };
    assert!(matches!(s.check(&tag), Seen::New));
    s.record(&tag, &Ok(outcome()));
    let tag2 = Tag { seq: 11, ..tag };
    s.check(&tag2);
    s.record(&tag2, &Err(FsError::Exists));
    s.answers.record(&request(), T, &outcome());
    s
}

#[test]
fn what_the_state_machine_keeps_and_replicates_encodes_as_pinned() {
    let mut now: Vec<(&str, Vec<u8>)> = Vec::new();
    for (name, c) in commands() {
        now.push((name, enc(&c)));
    }
    for (i, e) in errors().into_iter().enumerate() {
        now.push((ERROR_NAMES[i], enc(&e)));
    }
    for (name, kind) in [
        ("Inode/Regular", FileKind::Regular),
        ("Inode/Directory", FileKind::Directory),
        ("Inode/BlockDev", FileKind::BlockDev { major: 8, minor: 1 }),
        ("Inode/CharDev", FileKind::CharDev { major: 1, minor: 3 }),
        ("Inode/Fifo", FileKind::Fifo),
        ("Inode/Socket", FileKind::Socket),
    ] {
        now.push((name, enc(&inode(kind))));
    }
    now.push(("Outcome", enc(&outcome())));
    now.push((
        "Result<Outcome>",
        enc(&vec![Ok(outcome()), Err(FsError::Busy)]),
    ));
    now.push(("FileCode", enc(&file_code())));
    now.push((
        "TxnEntry/prepared",
        enc(&TxnEntry {
            prepared: Some(Prepared {
                coord: ShardId(1),
                keys: vec![Key::Inode(5)],
                reserved: Some(ShardId(2).ino(9)),
                since: T,
            }),
            decision: None,
        }),
    ));
    now.push((
        "TxnEntry/decided",
        enc(&TxnEntry {
            prepared: None,
            decision: Some(Decision::Commit {
                parts: vec![part()],
                at: T,
            }),
        }),
    ));
    now.push((
        "Decision/Abort",
        enc(&Decision::Abort {
            at: Time::new(1, 2),
        }),
    ));
    now.push((
        "Tag",
        enc(&Tag {
            origin: 1,
            life: 2,
            seq: 3,
            waits_from: 3,
        }),
    ));
    let s = sessions();
    now.push(("Sessions", s.encode().expect("encodes")));
    assert_eq!(
        Sessions::decode(&s.encode().expect("encodes")).expect("decodes"),
        s
    );
    // A file's extended attributes, as the checkpoint's `xattrs` table and a snapshot hold
    // them.
    let x: crate::Xattrs = [
        (b"a".to_vec(), b"1".to_vec()),
        (b"pin".to_vec(), Vec::new()),
    ]
    .into();
    now.push(("Xattrs", enc(&x)));
    // A segment's record in the data-reduction index, as the checkpoint's `segments` table and
    // a snapshot hold it, and the key its commands lock under.
    let seg = Segment {
        chunks: [
            (
                ChunkId([0xc1; 32]),
                ChunkSlot {
                    index: 0,
                    raw_len: 32768,
                },
            ),
            (
                ChunkId([0xc2; 32]),
                ChunkSlot {
                    index: 1,
                    raw_len: 7,
                },
            ),
        ]
        .into(),
        placement: vec![11, 12, 13],
        stored_len: 2 << 20,
        state: SegmentState::Dying,
        origin: Referrer { ino: 5, epoch: 4 },
        bucket: SegmentBucket::Sending,
        dropping: vec![14],
    };
    now.push(("Segment", enc(&seg)));
    // A row written before segments had a tier state (the earlier pinned "Segment" bytes)
    // still loads, as a segment with none; the current form reads back whole.
    let (v1, tier) = seg.split(SegmentId([0xc2; 32]));
    now.push(("SegmentV1", enc(&v1)));
    assert_eq!(tier.map(|t| t.1), Some(SegmentBucket::Sending));
    assert_eq!(
        Segment::decode(&postcard::to_stdvec(&v1).expect("encode")).expect("earlier form"),
        Segment::from_v1(v1.clone())
    );
    assert_eq!(
        Segment::decode(&postcard::to_stdvec(&seg).expect("encode")).expect("current form"),
        seg
    );
    // A current record whose tier state is damaged (a bucket state that does not exist) is
    // an error, not an earlier-form record that lost it.
    let mut bad = postcard::to_stdvec(&seg).expect("encode");
    let at = postcard::to_stdvec(&v1).expect("encode").len();
    bad[at] = 9;
    assert!(Segment::decode(&bad).is_err());
    now.push(("Key::Segments", enc(&Key::Segments(ShardId(3)))));
    // A file's reduce record, under way and finished, as the checkpoint's `reduces` table and
    // a snapshot hold it.
    now.push((
        "FileReduce/reducing",
        enc(&FileReduce {
            epoch: 4,
            state: ReduceState::Reducing {
                since: T,
                change: 9,
            },
            stale_copies: Vec::new(),
            retired: false,
        }),
    ));
    now.push((
        "FileReduce/reduced",
        enc(&FileReduce {
            epoch: 4,
            state: ReduceState::Reduced(Reduced {
                len: 1 << 33,
                recipe: b"cfsrdrcp".to_vec(),
                segments: vec![SegmentId([0x5e; 32])],
            }),
            stale_copies: vec![11, 12],
            retired: true,
        }),
    ));
    // A reduce in parts, under way and finished (issue 46, files past one recipe).
    now.push((
        "FileReduce/reducing-parts",
        enc(&FileReduce {
            epoch: 4,
            state: ReduceState::ReducingParts {
                since: T,
                change: 9,
                parts: vec![recipe_part()],
            },
            stale_copies: Vec::new(),
            retired: false,
        }),
    ));
    now.push((
        "FileReduce/reduced-parts",
        enc(&FileReduce {
            epoch: 4,
            state: ReduceState::ReducedParts {
                len: 1 << 33,
                parts: vec![recipe_part()],
            },
            stale_copies: vec![11],
            retired: false,
        }),
    ));
    // A shard's snapshot state and a key's pre-images, as a snapshot and (from the storage
    // step on) the checkpoint hold them.
    let snaps = ShardSnaps {
        freeze: Some(Freeze {
            snap: 9,
            since: Time::new(1, 2),
        }),
        cuts: [(
            7,
            Cut {
                next_ino: 300,
                at: T,
                thawed: true,
                retired: false,
            },
        )]
        .into(),
    };
    now.push(("ShardSnaps", enc(&snaps)));
    let v: Versions<(u64, u64)> = [(7, Pre::Was((5, 3))), (9, Pre::Absent)].into();
    now.push(("Versions<entry>", enc(&v)));
    // A registry record in each state, as the checkpoint's `snapshots` table and shard 0's
    // snapshot hold it.
    let at = Time::new(1, 2);
    for (name, state) in [
        ("SnapRecord/Pending", SnapState::Pending { since: at }),
        ("SnapRecord/Decided", SnapState::Decided { at }),
        ("SnapRecord/Ready", SnapState::Ready { at }),
        ("SnapRecord/Aborted", SnapState::Aborted { at }),
        ("SnapRecord/Deleting", SnapState::Deleting { at }),
    ] {
        let r = SnapRecord {
            name: b"daily".to_vec(),
            root: 1,
            created: T,
            retain_secs: 604_800,
            state,
        };
        now.push((name, enc(&r)));
    }
    // A file's data images, as a shard's state holds them.
    let images: Images = [
        (
            3,
            DataImage {
                made: T,
                form: ImageForm::Empty,
            },
        ),
        (
            7,
            DataImage {
                made: Time::new(1, 2),
                form: ImageForm::Mirrored {
                    object: ShardId(3).ino(300),
                    mirrors: vec![11, 12],
                    linking: true,
                },
            },
        ),
    ]
    .into();
    now.push(("Images", enc(&images)));
    check(&now, GOLDEN);
}

/// Captured from the build before the MDS was split into `meta` and `mds` (issue 42); the
/// extended attributes' commands, errors and table value added with them (issue 44); the
/// data-reduction index's commands, record and key with it (issue 46), and the reduce
/// record's commands and record (issue 46, step 2a); the snapshot steps of a shard, its
/// snapshot state and a key's pre-images (issue 48, step 1); the registry's steps and
/// record (issue 48, step 3); data images' commands and a file's images (issue 48, step 6);
/// a reduce in parts' command and records (issue 46).
#[rustfmt::skip]
const GOLDEN: &[(&str, &str)] = &[
    ("InitRoot", "002af6c59fd50cd5f01b"),
    ("Create", "01010466696c6502022f78a4030102f6c59fd50cd5f01b020909090909090909"),
    ("Link", "020501016cf6c59fd50cd5f01b"),
    ("Unlink", "0301017505f6c59fd50cd5f01b"),
    ("Rmdir", "0401016406f6c59fd50cd5f01b"),
    ("Remove", "0501017207f6c59fd50cd5f01b"),
    ("Rename", "06010173080201740109f6c59fd50cd5f01b"),
    ("SetAttr", "0705018003000107016401000101f6c59fd50cd5f01bf6c59fd50cd5f01b"),
    ("Write", "0805808080808020f6c59fd50cd5f01b03"),
    ("Forget", "0905"),
    ("SetMirrors", "0a0502020b0c"),
    ("Noop", "0b"),
    ("ForgetOrphans", "0c0205ffffffffffffffffff01"),
    ("As", "0de8076402041801010466696c6502022f78a4030102f6c59fd50cd5f01b020909090909090909"),
    ("SetDrain", "0eedfd0301"),
    ("BeginEncode", "0f05000304021406010203040506f6c59fd50cd5f01b"),
    ("FinishEncode", "10050301014d015a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a"),
    ("AbortEncode", "110503"),
    ("ShardBad", "1205030104"),
    ("ShardMoved", "1305030411"),
    ("CopiesTrimmed", "140503"),
    ("ShardsDropped", "150503"),
    ("ClientRecords", "160201056f776e65720204676f6e6500"),
    ("TakeOverClients", "170103"),
    ("Place", "180901010466696c6502022f78a4030102f6c59fd50cd5f01b020909090909090909"),
    ("TxnLock", "19cd80808080808080808080808080808001010400050101020203f6c59fd50cd5f01b"),
    ("TxnDecide", "1a4d0102020501cd8080808080c00101ed1302e807648080808020f6c59fd50cd5f01b09010eff93ebdc0300002a010101020304050607080600020101610105030101620002010104020001086e6578745f696e6f0101060102060001020b0c06010002060103040214060b0c0d0e0f1001008080800802abababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababab02010104f6c59fd50cd5f01b010c000700f6c59fd50cd5f01b"),
    ("TxnResolve", "1b4df6c59fd50cd5f01b"),
    ("TxnCommit", "1c4d02020501cd8080808080c00101ed1302e807648080808020f6c59fd50cd5f01b09010eff93ebdc0300002a010101020304050607080600020101610105030101620002010104020001086e6578745f696e6f0101060102060001020b0c06010002060103040214060b0c0d0e0f1001008080800802abababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababab02010104f6c59fd50cd5f01b010c000700"),
    ("TxnAbort", "1d4d"),
    ("TxnForget", "1effffffffffffffffffffffffffffffffffff03"),
    ("Request", "1f07070707070707070707070707070707036302f6c59fd50cd5f01b0b0101cd8080808080c00100ed1302e807648080808020f6c59fd50cd5f01b09010eff93ebdc0300002a01010102030405060708010101050600030009010a020b"),
    ("Detach", "200104747265650cf6c59fd50cd5f01b"),
    ("ReplaceMirrors", "21050000020b0c"),
    ("SetXattr", "22050370696e03686f7402f6c59fd50cd5f01b"),
    ("RemoveXattr", "23050370696ef6c59fd50cd5f01b"),
    ("WriteKeepingTimes", "240580808080802003"),
    ("TierBegin", "25050902f6c59fd50cd5f01b83808080808040"),
    ("TierDone", "26050401808080200707070707070707070707070707070707070707070707070707070707070707f6c59fd50cd5f01b"),
    ("TierAbort", "270504f6c59fd50cd5f01b"),
    ("TierDoom", "2805f6c59fd50cd5f01b"),
    ("TierDeleted", "290504"),
    ("TierEvict", "2a050409"),
    ("TierWant", "2b05"),
    ("TierRestored", "2c0504"),
    ("AddReferrer", "2d035e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e0102c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1808002c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c207030b0c0d808080010504"),
    ("DropReferrer", "2e035e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5effffffffffffffffff0101"),
    ("ForgetSegment", "2fffff030000000000000000000000000000000000000000000000000000000000000000"),
    ("BeginReduce", "3005f6c59fd50cd5f01b"),
    ("FinishReduce", "3105048080808020086366737264726370025e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f"),
    ("AbortReduce", "320504"),
    ("ReduceCopiesTrimmed", "330504"),
    ("ReferrersDropped", "34ffffffffffffffffff0104"),
    ("SetDataKey", "3502abcd010101"),
    ("SegmentMoved", "36035e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e020bffffffffffffffffff01"),
    ("SnapFreeze", "370307f6c59fd50cd5f01b"),
    ("SnapCut", "3803ac02f6c59fd50cd5f01b"),
    ("SnapThaw", "39ffff0307"),
    ("SnapAbort", "3a00ffffffffffffffffff01"),
    ("SnapRetire", "3b0301"),
    ("SnapMerge", "3c03078020"),
    ("SnapForget", "3d0308"),
    ("SnapBegin", "3e056461696c79898080808080800180f524f6c59fd50cd5f01b"),
    ("SnapDecide", "3f07f6c59fd50cd5f01b"),
    ("SnapResolve", "40ffffffffffffffffff01f6c59fd50cd5f01b"),
    ("SnapReady", "4101f6c59fd50cd5f01b"),
    ("SnapDelete", "42ac02f6c59fd50cd5f01b"),
    ("SnapForgetRecord", "4302"),
    ("SegmentTier", "44035e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e020207ac02"),
    ("SegmentTier/Warmed", "44035e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e050207ac02"),
    ("SnapKeep", "4505f6c59fd50cd5f01b"),
    ("SnapKept", "4605ac02"),
    ("SnapImageMirrors", "470503020b0c020bac02"),
    ("ReducePart", "4805048080808001808040086366737264726370015e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e01"),
    ("SnapKeepLocal", "4905f6c59fd50cd5f01b"),
    ("SnapImageGone", "4a05ac02"),
    ("SnapAdopt", "4b05f6c59fd50cd5f01b01"),
    ("SnapImageArchived", "4c05ac02ffffffffffffffffff0100018080405e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5ef6c59fd50cd5f01b"),
    ("SnapImageFlashFreed", "4d05ac02"),
    ("FsError::NotFound", "00"),
    ("FsError::Exists", "01"),
    ("FsError::NotDir", "02"),
    ("FsError::IsDir", "03"),
    ("FsError::NotEmpty", "04"),
    ("FsError::Invalid", "05"),
    ("FsError::NameTooLong", "06"),
    ("FsError::Stale", "0705"),
    ("FsError::Perm", "08"),
    ("FsError::Access", "09"),
    ("FsError::WrongKind", "0a"),
    ("FsError::Io", "0b046469736b"),
    ("FsError::NoSpace", "0c"),
    ("FsError::Corrupt", "0d03626164"),
    ("FsError::Changed", "0e"),
    ("FsError::Closed", "0f"),
    ("FsError::Unavailable", "10096e6f206c6561646572"),
    ("FsError::Busy", "11"),
    ("FsError::Elsewhere", "12"),
    ("FsError::Aborted", "13"),
    ("FsError::NeedLock", "140103"),
    ("FsError::Answered", "150000000000"),
    ("FsError::Dangling", "160105"),
    ("FsError::NoXattr", "17"),
    ("FsError::XattrTooBig", "18"),
    ("Inode/Regular", "cd8080808080c00100ed1302e807648080808020f6c59fd50cd5f01b09010eff93ebdc0300002a01010102030405060708"),
    ("Inode/Directory", "cd8080808080c00101ed1302e807648080808020f6c59fd50cd5f01b09010eff93ebdc0300002a01010102030405060708"),
    ("Inode/BlockDev", "cd8080808080c001030801ed1302e807648080808020f6c59fd50cd5f01b09010eff93ebdc0300002a01010102030405060708"),
    ("Inode/CharDev", "cd8080808080c001040103ed1302e807648080808020f6c59fd50cd5f01b09010eff93ebdc0300002a01010102030405060708"),
    ("Inode/Fifo", "cd8080808080c00105ed1302e807648080808020f6c59fd50cd5f01b09010eff93ebdc0300002a01010102030405060708"),
    ("Inode/Socket", "cd8080808080c00106ed1302e807648080808020f6c59fd50cd5f01b09010eff93ebdc0300002a01010102030405060708"),
    ("Outcome", "01cd8080808080c00100ed1302e807648080808020f6c59fd50cd5f01b09010eff93ebdc0300002a01010102030405060708010101050600030009010a020b"),
    ("Result<Outcome>", "020001cd8080808080c00100ed1302e807648080808020f6c59fd50cd5f01b09010eff93ebdc0300002a01010102030405060708010101050600030009010a020b0111"),
    ("FileCode", "03040214060b0c0d0e0f1001008080800802abababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababab02010104f6c59fd50cd5f01b010c00"),
    ("TxnEntry/prepared", "0101010005018980808080808001f6c59fd50cd5f01b00"),
    ("TxnEntry/decided", "0001000102020501cd8080808080c00101ed1302e807648080808020f6c59fd50cd5f01b09010eff93ebdc0300002a010101020304050607080600020101610105030101620002010104020001086e6578745f696e6f0101060102060001020b0c06010002060103040214060b0c0d0e0f1001008080800802abababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababab02010104f6c59fd50cd5f01b010c000700f6c59fd50cd5f01b"),
    ("Decision/Abort", "010202"),
    ("Tag", "01020303"),
    ("Sessions", "01020509020a0001cd8080808080c00100ed1302e807648080808020f6c59fd50cd5f01b09010eff93ebdc0300002a01010102030405060708010101050600030009010a020b0b01010107070707070707070707070707070707036301f6c59fd50cd5f01b010201cd8080808080c00100ed1302e807648080808020f6c59fd50cd5f01b09010eff93ebdc0300002a01010102030405060708010101050600030009010a020b0101070707070707070707070707070707070301"),
    ("Xattrs", "02016101310370696e00"),
    ("Segment", "02c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c100808002c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c20107030b0c0d8080800101050401010e"),
    ("SegmentV1", "02c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c100808002c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c20107030b0c0d80808001010504"),
    ("Key::Segments", "0403"),
    ("FileReduce/reducing", "0400f6c59fd50cd5f01b090000"),
    ("FileReduce/reduced", "04018080808020086366737264726370015e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e020b0c01"),
    ("FileReduce/reducing-parts", "0402f6c59fd50cd5f01b09018080808001808040086366737264726370015e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e0000"),
    ("FileReduce/reduced-parts", "04038080808020018080808001808040086366737264726370015e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e010b00"),
    ("ShardSnaps", "010902020107ac02f6c59fd50cd5f01b0100"),
    ("Versions<entry>", "02070105030900"),
    ("SnapRecord/Pending", "056461696c7901f6c59fd50cd5f01b80f524000202"),
    ("SnapRecord/Decided", "056461696c7901f6c59fd50cd5f01b80f524010202"),
    ("SnapRecord/Ready", "056461696c7901f6c59fd50cd5f01b80f524020202"),
    ("SnapRecord/Aborted", "056461696c7901f6c59fd50cd5f01b80f524030202"),
    ("SnapRecord/Deleting", "056461696c7901f6c59fd50cd5f01b80f524040202"),
    ("Images", "0203f6c59fd50cd5f01b0007020201ac8280808080c001020b0c01"),
];
