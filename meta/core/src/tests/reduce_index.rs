//! The data-reduction index (`reduce_index`): referrer sets make every add and drop
//! idempotent, the drop that empties a set makes the segment `Dying` in the same apply, a
//! `Dying` segment takes no referrer and is found by no lookup, only a `Dying` one is
//! forgotten; and after random sequences (with steps sent twice) no `Live` segment has an
//! empty set, no `Dying` one a referrer, and the chunk map is exactly the `Live` records'.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;
use crate::reduce_index::{
    ChunkId, ChunkLoc, IndexStats, Referrer, SegmentBucket, SegmentId, SegmentShards, SegmentState,
    SegmentTierStep, StoredSegment,
};

/// Shards of the file system in these tests.
const SHARDS: u16 = 4;

/// A segment id routed to shard `shard` of `SHARDS`, told apart by `n`.
fn seg_on(shard: u16, n: u8) -> SegmentId {
    let mut id = [n; 32];
    id[..8].copy_from_slice(&u64::from(shard).to_le_bytes());
    let id = SegmentId(id);
    assert_eq!(ShardId::of_segment(&id, SHARDS), ShardId(shard));
    id
}

fn chunk(n: u8) -> ChunkId {
    ChunkId([n; 32])
}

fn raw_len(c: u8) -> u32 {
    1000 + u32::from(c)
}

/// A segment holding chunks `chunks`, in that order.
fn stored(chunks: &[u8]) -> StoredSegment {
    StoredSegment {
        chunks: chunks.iter().map(|c| (chunk(*c), raw_len(*c))).collect(),
        placement: vec![11, 12, 13, 14, 15, 16],
        stored_len: 4096 * chunks.len() as u64,
    }
}

fn r(ino: u64, epoch: u64) -> Referrer {
    Referrer { ino, epoch }
}

fn add(segment: SegmentId, stored: Option<StoredSegment>, referrer: Referrer) -> Command {
    Command::AddReferrer {
        shard: ShardId::of_segment(&segment, SHARDS),
        segment,
        stored,
        referrer,
    }
}

fn drop_ref(segment: SegmentId, referrer: Referrer) -> Command {
    Command::DropReferrer {
        shard: ShardId::of_segment(&segment, SHARDS),
        segment,
        referrer,
    }
}

fn forget(segment: SegmentId) -> Command {
    Command::ForgetSegment {
        shard: ShardId::of_segment(&segment, SHARDS),
        segment,
    }
}

/// Applies `cmd` as the shard it names applies it (guarded: another shard's segment is
/// `Elsewhere`).
fn on(s: &mut MemState, cmd: &Command) -> Result<Outcome, FsError> {
    let [shard] = cmd.shards()[..] else {
        panic!("{cmd:?} names one shard");
    };
    step_on(shard, s, cmd)
}

fn ok(s: &mut MemState, cmd: &Command) -> Outcome {
    on(s, cmd).unwrap_or_else(|e| panic!("{cmd:?}: {e:?}"))
}

fn refs(s: &MemState, id: &SegmentId) -> Vec<Referrer> {
    s.segment_referrers(id, None, usize::MAX)
}

fn state(s: &MemState, id: &SegmentId) -> Option<SegmentState> {
    s.segments.get(id).map(|g| g.state)
}

#[test]
fn the_first_referrer_creates_the_segment_and_its_chunks_are_found() {
    let mut s = init();
    let a = seg_on(1, 0xa0);
    // No record and nothing to make one from: freed meanwhile, as far as the reducer knows.
    assert_eq!(on(&mut s, &add(a, None, r(5, 1))), Err(FsError::Changed));
    // Nothing the reducer could have stored.
    let mut bad = vec![
        stored(&[]),
        stored(&[1, 2, 1]),
        StoredSegment {
            placement: Vec::new(),
            ..stored(&[1])
        },
        StoredSegment {
            stored_len: 0,
            ..stored(&[1])
        },
    ];
    let mut zero = stored(&[1, 2]);
    zero.chunks[1].1 = 0;
    bad.push(zero);
    let mut huge = stored(&[1]);
    huge.chunks = (0..=crate::reduce_index::MAX_SEGMENT_CHUNKS as u32)
        .map(|i| {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&i.to_le_bytes());
            (ChunkId(id), 1)
        })
        .collect();
    bad.push(huge);
    for b in bad {
        assert_eq!(on(&mut s, &add(a, Some(b), r(5, 1))), Err(FsError::Invalid));
    }
    // Inode 0 is no file.
    let c = add(a, Some(stored(&[1, 2, 3])), r(0, 1));
    assert_eq!(on(&mut s, &c), Err(FsError::Invalid));
    assert!(s.segments.is_empty() && s.referrers.is_empty() && s.chunk_index.is_empty());

    let out = ok(&mut s, &add(a, Some(stored(&[1, 2, 3])), r(5, 1)));
    assert!(out.created);
    assert_eq!(state(&s, &a), Some(SegmentState::Live));
    assert_eq!(refs(&s, &a), vec![r(5, 1)]);
    assert_eq!(s.segments[&a].placement, vec![11, 12, 13, 14, 15, 16]);
    let found = s.locate_chunks(&[chunk(3), chunk(9), chunk(1)]);
    let loc = |index, c| ChunkLoc {
        segment: a,
        index,
        raw_len: raw_len(c),
    };
    assert_eq!(found, vec![(chunk(3), loc(2, 3)), (chunk(1), loc(0, 1))]);

    // A second reducer that stored the same segment (same id, same chunks) elsewhere: it
    // refers to the first copy, which the record keeps; the answer says it made nothing.
    let mut copy = stored(&[1, 2, 3]);
    copy.placement = vec![21, 22, 23, 24, 25, 26];
    let out = ok(&mut s, &add(a, Some(copy), r(6, 1)));
    assert!(!out.created);
    assert_eq!(s.segments[&a].placement, vec![11, 12, 13, 14, 15, 16]);
    assert_eq!(
        s.segments[&a].origin,
        r(5, 1),
        "its objects are the first copy's"
    );
    assert_eq!(refs(&s, &a), vec![r(5, 1), r(6, 1)]);
    // Another chunk list under the same id is no copy of it.
    let before = s.dump();
    let other = add(a, Some(stored(&[1, 2, 4])), r(7, 1));
    assert_eq!(on(&mut s, &other), Err(FsError::Invalid));
    assert_eq!(s.dump(), before);
    // A later referrer needs no chunks.
    assert!(!ok(&mut s, &add(a, None, r(7, 2))).created);
    assert_eq!(refs(&s, &a).len(), 3);
}

#[test]
fn adds_and_drops_are_idempotent_when_sent_again() {
    let mut s = init();
    let a = seg_on(0, 0xa1);
    let b = seg_on(2, 0xb1);
    let steps = [
        add(a, Some(stored(&[1, 2])), r(5, 1)),
        add(a, None, r(6, 1)),
        add(b, Some(stored(&[3])), r(5, 1)),
        add(a, None, r(5, 2)),
        drop_ref(a, r(6, 1)),
        drop_ref(b, r(9, 9)),
        drop_ref(a, r(5, 1)),
    ];
    for cmd in &steps {
        ok(&mut s, cmd);
        // A step sent again (its answer lost, or replayed after a crash) changes nothing.
        let once = s.dump();
        let again = on(&mut s, cmd);
        assert!(again.is_ok(), "{cmd:?} again: {again:?}");
        assert_eq!(s.dump(), once, "{cmd:?} counted twice");
    }
    assert_eq!(refs(&s, &a), vec![r(5, 2)]);
    assert_eq!(refs(&s, &b), vec![r(5, 1)]);
    assert_eq!(s.index_stats().referrers, 2, "the count is the sets' size");
    // A drop of a segment with no record is nothing to do, not an error.
    ok(&mut s, &drop_ref(seg_on(3, 0xc1), r(5, 1)));
    // The log replayed from the start gives the same state.
    let mut replayed = init();
    for cmd in &steps {
        ok(&mut replayed, cmd);
    }
    assert_eq!(replayed.dump(), s.dump());
    assert_eq!(replayed.chunk_index, s.chunk_index);
}

#[test]
fn the_last_drop_makes_the_segment_dying_in_the_same_apply() {
    let mut s = init();
    let a = seg_on(1, 0xa2);
    ok(&mut s, &add(a, Some(stored(&[1, 2])), r(5, 1)));
    ok(&mut s, &add(a, None, r(6, 1)));
    ok(&mut s, &drop_ref(a, r(5, 1)));
    assert_eq!(state(&s, &a), Some(SegmentState::Live), "one referrer left");
    assert_eq!(s.locate_chunks(&[chunk(1)]).len(), 1);
    ok(&mut s, &drop_ref(a, r(6, 1)));
    assert_eq!(state(&s, &a), Some(SegmentState::Dying));
    assert!(refs(&s, &a).is_empty());
    assert!(s.locate_chunks(&[chunk(1), chunk(2)]).is_empty());
    assert!(s.chunk_index.is_empty());
    assert_eq!(
        s.dying_segments(ShardId(1)),
        vec![SegmentShards {
            shard: ShardId(1),
            id: a,
            origin: r(5, 1),
            placement: vec![11, 12, 13, 14, 15, 16],
            stored_len: 8192,
            bucket: SegmentBucket::No,
            dropping: Vec::new(),
        }]
    );
    assert_eq!(
        s.index_stats(),
        IndexStats {
            dying_segments: 1,
            dying_bytes: 8192,
            ..IndexStats::default()
        }
    );
    // A drop in a batch with the add before it, as one command after another in one entry:
    // the staged state decides, not the base.
    let b = seg_on(1, 0xb2);
    let mut staged = state::Staged::new(&s);
    crate::apply::apply_on_shard(
        ShardId(1),
        &mut staged,
        &add(b, Some(stored(&[7])), r(5, 1)),
    )
    .unwrap();
    crate::apply::apply_on_shard(ShardId(1), &mut staged, &drop_ref(b, r(5, 1))).unwrap();
    staged.into_changes().flush_into(&mut s).unwrap();
    assert_eq!(state(&s, &b), Some(SegmentState::Dying));
}

#[test]
fn a_dying_segment_takes_no_referrer_and_only_it_is_forgotten() {
    let mut s = init();
    let a = seg_on(2, 0xa3);
    ok(&mut s, &add(a, Some(stored(&[1, 2])), r(5, 1)));
    // Live: not forgotten.
    assert_eq!(on(&mut s, &forget(a)), Err(FsError::Invalid));
    ok(&mut s, &drop_ref(a, r(5, 1)));
    let dying = s.dump();
    // The reducer found it in the index before it died: refused, with or without the chunks,
    // for a new referrer and for the one just dropped alike.
    for cmd in [
        add(a, None, r(6, 1)),
        add(a, None, r(5, 1)),
        add(a, Some(stored(&[1, 2])), r(6, 1)),
    ] {
        assert_eq!(on(&mut s, &cmd), Err(FsError::Changed), "{cmd:?}");
        assert_eq!(s.dump(), dying, "a refused {cmd:?} left something");
    }
    ok(&mut s, &forget(a));
    assert!(s.segments.is_empty());
    // Forgetting again, or a segment never made, is nothing.
    ok(&mut s, &forget(a));
    ok(&mut s, &forget(seg_on(0, 0xc3)));
    // Gone: a referrer without the chunks is refused as for `Dying`; the same segment stored
    // again (its id is its content's) is made anew.
    assert_eq!(on(&mut s, &add(a, None, r(6, 1))), Err(FsError::Changed));
    assert!(ok(&mut s, &add(a, Some(stored(&[1, 2])), r(6, 1))).created);
    assert_eq!(state(&s, &a), Some(SegmentState::Live));
    assert_eq!(
        s.segments[&a].origin,
        r(6, 1),
        "another copy, named apart from the first"
    );
    assert_eq!(s.locate_chunks(&[chunk(2)])[0].1.segment, a);
}

fn moved(segment: SegmentId, index: u8, from: u64, to: u64) -> Command {
    Command::SegmentMoved {
        shard: ShardId::of_segment(&segment, SHARDS),
        segment,
        index,
        from,
        to,
    }
}

/// A shard move is recorded only over the record it was decided from: the slot must still
/// name `from`, the segment must be `Live`, and `to` must hold none of its shards; a move
/// sent again after it went in is refused, never applied twice.
#[test]
fn a_segment_shard_moves_only_from_where_the_record_says_it_is() {
    let mut s = init();
    let a = seg_on(1, 0xa4);
    ok(&mut s, &add(a, Some(stored(&[1, 2])), r(5, 1)));
    ok(&mut s, &moved(a, 2, 13, 21));
    assert_eq!(s.segments[&a].placement, vec![11, 12, 21, 14, 15, 16]);
    let before = s.dump();
    for (cmd, want) in [
        // Sent again, or decided from a stale record.
        (moved(a, 2, 13, 22), FsError::Changed),
        // An index past the placement.
        (moved(a, 6, 13, 22), FsError::Changed),
        // Onto a server that holds another of its shards: two shards of one stripe on one
        // server would be lost together.
        (moved(a, 0, 11, 12), FsError::Invalid),
        // A segment never made.
        (moved(seg_on(1, 0xb4), 0, 11, 22), FsError::Changed),
    ] {
        assert_eq!(on(&mut s, &cmd), Err(want), "{cmd:?}");
        assert_eq!(s.dump(), before, "a refused {cmd:?} left something");
    }
    // In place (a bad shard rebuilt where it was): nothing changes.
    ok(&mut s, &moved(a, 2, 21, 21));
    assert_eq!(s.dump(), before);
    // Dying: its shards are being deleted where the record says; a move would hide one.
    ok(&mut s, &drop_ref(a, r(5, 1)));
    assert_eq!(on(&mut s, &moved(a, 0, 11, 22)), Err(FsError::Changed));
    assert_eq!(s.segments[&a].placement[0], 11);
}

fn tier(segment: SegmentId, step: SegmentTierStep) -> Command {
    Command::SegmentTier {
        shard: ShardId::of_segment(&segment, SHARDS),
        segment,
        step,
    }
}

/// A segment's flash is dropped only once its object is verified in the bucket, and only
/// over the placement it was decided from; every step sent again changes nothing; a segment
/// with no shard on flash is one no repair or drain finds (`segments_on` looks by placement),
/// and one whose drop is under way takes no shard move.
#[test]
fn a_segments_flash_goes_only_once_the_bucket_holds_it() {
    let mut s = init();
    let a = seg_on(2, 0xa6);
    let all = vec![11, 12, 13, 14, 15, 16];
    ok(&mut s, &add(a, Some(stored(&[1, 2])), r(5, 1)));
    let off = |p: Vec<u64>| tier(a, SegmentTierStep::OffFlash { placement: p });
    let before = s.dump();
    for (cmd, want) in [
        // Not in the bucket, nor even being sent.
        (off(all.clone()), FsError::Changed),
        (tier(a, SegmentTierStep::Held), FsError::Changed),
        // A segment never made.
        (
            tier(seg_on(2, 0xb6), SegmentTierStep::Sending),
            FsError::Changed,
        ),
    ] {
        assert_eq!(on(&mut s, &cmd), Err(want), "{cmd:?}");
        assert_eq!(s.dump(), before, "a refused {cmd:?} left something");
    }
    ok(&mut s, &tier(a, SegmentTierStep::Sending));
    assert_eq!(
        on(&mut s, &off(all.clone())),
        Err(FsError::Changed),
        "sent, not verified"
    );
    ok(&mut s, &tier(a, SegmentTierStep::Held));
    ok(&mut s, &tier(a, SegmentTierStep::Sending));
    ok(&mut s, &tier(a, SegmentTierStep::Held));
    assert_eq!(
        s.segments[&a].bucket,
        SegmentBucket::Held,
        "steps sent again"
    );
    // Decided from a record a shard move changed since.
    ok(&mut s, &moved(a, 0, 11, 21));
    assert_eq!(on(&mut s, &off(all.clone())), Err(FsError::Changed));
    assert_eq!(on(&mut s, &off(Vec::new())), Err(FsError::Invalid));
    let now = vec![21, 12, 13, 14, 15, 16];
    ok(&mut s, &off(now.clone()));
    let seg = &s.segments[&a];
    assert!(!seg.on_flash() && seg.dropping == now);
    assert_eq!(on(&mut s, &off(now.clone())), Err(FsError::Changed), "once");
    assert_eq!(on(&mut s, &moved(a, 0, 21, 22)), Err(FsError::Changed));
    assert!(s
        .live_segments_where(ShardId(2), |_, g| g.placement.contains(&12))
        .is_empty());
    // Still found by dedup: its chunks are read from the bucket.
    assert_eq!(s.locate_chunks(&[chunk(1)]).len(), 1);
    let freed = tier(
        a,
        SegmentTierStep::Freed {
            placement: now.clone(),
        },
    );
    assert_eq!(
        on(&mut s, &tier(a, SegmentTierStep::Freed { placement: all })),
        Err(FsError::Changed)
    );
    ok(&mut s, &freed);
    ok(&mut s, &freed);
    assert!(s.segments[&a].dropping.is_empty());
    // Back to flash: the new shards are ones to delete until `Warmed` adopts them.
    let back = vec![31, 32, 33, 34, 35, 36];
    let warming = tier(
        a,
        SegmentTierStep::Warming {
            placement: back.clone(),
        },
    );
    let warmed = tier(
        a,
        SegmentTierStep::Warmed {
            placement: back.clone(),
        },
    );
    assert_eq!(on(&mut s, &warmed), Err(FsError::Changed), "not begun");
    ok(&mut s, &warming);
    assert!(!s.segments[&a].on_flash() && s.segments[&a].dropping == back);
    assert_eq!(on(&mut s, &warming), Err(FsError::Changed), "once");
    // A crash's unfinished write, finished by the pass: the adoption is refused.
    let freed_back = tier(
        a,
        SegmentTierStep::Freed {
            placement: back.clone(),
        },
    );
    ok(&mut s, &freed_back);
    assert_eq!(on(&mut s, &warmed), Err(FsError::Changed));
    ok(&mut s, &warming);
    ok(&mut s, &warmed);
    ok(&mut s, &warmed);
    let seg = &s.segments[&a];
    assert!(seg.placement == back && seg.dropping.is_empty());
    assert_eq!(
        on(&mut s, &warming),
        Err(FsError::Changed),
        "already on flash"
    );
    assert_eq!(
        on(
            &mut s,
            &tier(
                a,
                SegmentTierStep::Warming {
                    placement: Vec::new()
                }
            )
        ),
        Err(FsError::Invalid)
    );
    // Off flash again, for the dying check below.
    ok(&mut s, &off(back.clone()));
    ok(&mut s, &tier(a, SegmentTierStep::Freed { placement: back }));
    // Dying: its object is the deleting pass's; no upload step takes it back.
    ok(&mut s, &drop_ref(a, r(5, 1)));
    assert_eq!(
        on(&mut s, &tier(a, SegmentTierStep::Held)),
        Err(FsError::Changed)
    );
    assert_eq!(s.dying_segments(ShardId(2))[0].bucket, SegmentBucket::Held);
}

#[test]
fn lookups_ignore_dying_segments_and_find_a_live_copy() {
    let mut s = init();
    // Chunk 2 stored twice, in two segments of one shard (two reducers at once).
    let a = seg_on(3, 0xa4);
    let b = seg_on(3, 0xb4);
    ok(&mut s, &add(a, Some(stored(&[1, 2])), r(5, 1)));
    ok(&mut s, &add(b, Some(stored(&[2, 3])), r(6, 1)));
    let at = |s: &MemState, c| s.locate_chunks(&[chunk(c)]).first().map(|(_, l)| *l);
    assert_eq!(at(&s, 2).map(|l| l.segment), Some(a), "the first by id");
    ok(&mut s, &drop_ref(a, r(5, 1)));
    assert_eq!(at(&s, 1), None);
    assert_eq!(
        at(&s, 2),
        Some(ChunkLoc {
            segment: b,
            index: 0,
            raw_len: raw_len(2)
        })
    );
    ok(&mut s, &drop_ref(b, r(6, 1)));
    assert_eq!(at(&s, 2), None);
    assert_eq!(at(&s, 3), None);
}

#[test]
fn index_commands_go_to_their_segments_shard_and_are_the_servers_own() {
    let mut s = init();
    let a = seg_on(2, 0xa5);
    let cmd = add(a, Some(stored(&[1])), r(5, 1));
    assert_eq!(cmd.shards(), vec![ShardId(2)]);
    assert_eq!(cmd.keys(), vec![Key::Segments(ShardId(2))]);
    assert_eq!(cmd.segment_route(), Some((ShardId(2), &a)));
    // Applied by another shard: not its record.
    assert_eq!(step_on(ShardId(1), &mut s, &cmd), Err(FsError::Elsewhere));
    // Never on a client's behalf, not even root's.
    let as_root = |c: &Command| Command::As {
        cred: perm::Cred {
            uid: 0,
            gid: 0,
            groups: vec![],
        },
        cmd: Box::new(c.clone()),
    };
    assert_eq!(as_root(&cmd).segment_route(), Some((ShardId(2), &a)));
    assert_eq!(on(&mut s, &as_root(&cmd)), Err(FsError::Invalid));
    assert!(s.segments.is_empty());
    ok(&mut s, &cmd);
    for c in [drop_ref(a, r(5, 1)), forget(a), moved(a, 0, 11, 22)] {
        assert_eq!(on(&mut s, &as_root(&c)), Err(FsError::Invalid));
    }
    assert_eq!(refs(&s, &a), vec![r(5, 1)]);
}

/// A staged command's referrers over the base's: the first `max` of the set as it will be.
#[test]
fn staged_referrers_page_over_the_base() {
    let mut s = init();
    let a = seg_on(0, 0xa6);
    ok(&mut s, &add(a, Some(stored(&[1])), r(3, 1)));
    for ino in 4..=7 {
        ok(&mut s, &add(a, None, r(ino, 1)));
    }
    let mut staged = state::Staged::new(&s);
    let sh = ShardId(0);
    staged.put_referrer(sh, &a, r(3, 1), false).unwrap();
    staged.put_referrer(sh, &a, r(4, 1), false).unwrap();
    staged.put_referrer(sh, &a, r(2, 1), true).unwrap();
    staged.put_referrer(sh, &a, r(9, 1), true).unwrap();
    assert_eq!(
        staged.referrers(sh, &a, 3).unwrap(),
        vec![r(2, 1), r(5, 1), r(6, 1)]
    );
    assert_eq!(staged.referrers(sh, &a, 10).unwrap().len(), 5);
    assert!(staged.has_referrer(sh, &a, r(9, 1)).unwrap());
    assert!(!staged.has_referrer(sh, &a, r(3, 1)).unwrap());
    assert!(staged.has_referrer(sh, &a, r(7, 1)).unwrap());
}

/// One step of a random sequence.
#[derive(Clone, Debug)]
enum Op {
    /// `AddReferrer`, with the segment's chunks if `stored`.
    Add {
        seg: u8,
        stored: bool,
        r: u8,
    },
    Drop {
        seg: u8,
        r: u8,
    },
    Forget {
        seg: u8,
    },
    /// The previous step sent again.
    Again,
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..4u8, any::<bool>(), 0..4u8).prop_map(|(seg, stored, r)| Op::Add { seg, stored, r }),
        3 => (0..4u8, 0..4u8).prop_map(|(seg, r)| Op::Drop { seg, r }),
        1 => (0..4u8).prop_map(|seg| Op::Forget { seg }),
        1 => Just(Op::Again),
    ]
}

/// The model's segments: their ids all on shard 1, chunks shared with the next segment's
/// (segment k holds chunks k and k+1), so a chunk is often in two.
fn model_seg(k: u8) -> SegmentId {
    seg_on(1, 0x10 + k)
}

fn model_ref(n: u8) -> Referrer {
    r(100 + u64::from(n % 2), 1 + u64::from(n / 2))
}

fn model_cmd(op: &Op, last: &Option<Command>) -> Option<Command> {
    Some(match *op {
        Op::Add { seg, stored: st, r } => add(
            model_seg(seg),
            st.then(|| stored(&[seg, seg + 1])),
            model_ref(r),
        ),
        Op::Drop { seg, r } => drop_ref(model_seg(seg), model_ref(r)),
        Op::Forget { seg } => forget(model_seg(seg)),
        Op::Again => return last.clone(),
    })
}

type Model = BTreeMap<SegmentId, (SegmentState, BTreeSet<Referrer>)>;

/// What the model says `cmd` answers, and the model after it.
fn predict(m: &mut Model, cmd: &Command) -> Result<bool, FsError> {
    match cmd {
        Command::AddReferrer {
            segment,
            stored,
            referrer,
            ..
        } => match m.get_mut(segment) {
            Some((SegmentState::Dying, _)) => Err(FsError::Changed),
            Some((_, set)) => {
                set.insert(*referrer);
                Ok(false)
            }
            None if stored.is_some() => {
                m.insert(*segment, (SegmentState::Live, BTreeSet::from([*referrer])));
                Ok(true)
            }
            None => Err(FsError::Changed),
        },
        Command::DropReferrer {
            segment, referrer, ..
        } => {
            if let Some((st, set)) = m.get_mut(segment) {
                if set.remove(referrer) && set.is_empty() {
                    *st = SegmentState::Dying;
                }
            }
            Ok(false)
        }
        Command::ForgetSegment { segment, .. } => match m.get(segment) {
            Some((SegmentState::Live, _)) => Err(FsError::Invalid),
            _ => {
                m.remove(segment);
                Ok(false)
            }
        },
        other => panic!("not an index command: {other:?}"),
    }
}

/// The invariants of the index on one shard's state, against the model.
fn check(s: &MemState, m: &Model) -> Result<(), TestCaseError> {
    let mut sets: BTreeMap<SegmentId, BTreeSet<Referrer>> = BTreeMap::new();
    for (id, r) in &s.referrers {
        prop_assert!(
            s.segments.contains_key(id),
            "referrer of no segment {:?}",
            id
        );
        sets.entry(*id).or_default().insert(*r);
    }
    for (id, seg) in &s.segments {
        let set = sets.remove(id).unwrap_or_default();
        match seg.state {
            SegmentState::Live => prop_assert!(!set.is_empty(), "{:?} live with no referrer", id),
            SegmentState::Dying => prop_assert!(set.is_empty(), "{:?} dying with referrers", id),
        }
        prop_assert_eq!(m.get(id), Some(&(seg.state, set)));
    }
    prop_assert_eq!(s.segments.len(), m.len());
    // The chunk map is exactly the live records' chunks, and a lookup finds a chunk iff a
    // live segment holds it, there.
    let want: BTreeSet<(ChunkId, SegmentId)> = s
        .segments
        .iter()
        .filter(|(_, g)| g.is_live())
        .flat_map(|(id, g)| g.chunks.keys().map(move |c| (*c, *id)))
        .collect();
    prop_assert_eq!(&s.chunk_index, &want);
    for c in 0..=5u8 {
        let found = s.locate_chunks(&[chunk(c)]);
        let holders: Vec<SegmentId> = want
            .iter()
            .filter(|(x, _)| *x == chunk(c))
            .map(|(_, g)| *g)
            .collect();
        match found.first() {
            Some((_, loc)) => {
                prop_assert!(holders.contains(&loc.segment));
                prop_assert_eq!(s.segments[&loc.segment].chunks[&chunk(c)].index, loc.index);
            }
            None => prop_assert!(holders.is_empty()),
        }
    }
    let st = s.index_stats();
    prop_assert_eq!(st.referrers, s.referrers.len() as u64);
    prop_assert_eq!(st.chunks, want.len() as u64);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Random adds, drops and forgets, some sent twice: every answer is the model's (a set
    /// per segment, nothing more), and after every step no `Live` segment has an empty set,
    /// no `Dying` one a referrer, and lookups see exactly the `Live` segments. The log
    /// replayed from the start ends in the same state.
    #[test]
    fn random_sequences_keep_sets_states_and_lookups_consistent(
        ops in proptest::collection::vec(arb_op(), 1..80)
    ) {
        let mut s = init();
        let mut m = Model::new();
        let mut last: Option<Command> = None;
        let mut log = Vec::new();
        for op in &ops {
            let Some(cmd) = model_cmd(op, &last) else { continue };
            let want = predict(&mut m, &cmd);
            let got = on(&mut s, &cmd).map(|o| o.created);
            prop_assert_eq!(&got, &want, "{:?}", cmd);
            check(&s, &m)?;
            log.push(cmd.clone());
            last = Some(cmd);
        }
        let mut replayed = init();
        for cmd in &log {
            let _ = on(&mut replayed, cmd);
        }
        prop_assert_eq!(replayed.dump(), s.dump());
        prop_assert_eq!(&replayed.chunk_index, &s.chunk_index);
    }
}
