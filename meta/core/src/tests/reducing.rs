//! The reduce record (`reducing`): a file moves from mirrored to reduced only through the
//! reduce begun at that epoch on a file unchanged since, goes back to mirrors (its record
//! retired, its segments kept) when its mirrors are set again, keeps its record through its
//! removal until its referrers are dropped, and never sits beside an encoding or an eviction
//! that would read or drop the same bytes; and after random sequences the record says of
//! every epoch what the reclaim pass may rely on.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::perm::Cred;
use crate::reduce_index::SegmentId;
use crate::reducing::{
    RecipePart, ReduceState, ReduceStatus, MAX_RECIPE_LEN, MAX_REDUCE_PARTS, MAX_REDUCE_SEGMENTS,
};
use crate::tiering::FileTier;

const SIZE: u64 = 3 << 20;
const MIRRORS: [u64; 2] = [11, 12];

fn write(ino: u64, end_offset: u64) -> Command {
    Command::Write {
        ino,
        end_offset,
        time: t(3),
        writes: 1,
    }
}

fn set_mirrors(ino: u64, mirrors: &[u64]) -> Command {
    Command::SetMirrors {
        ino,
        chunk: 0,
        mirrors: mirrors.to_vec(),
    }
}

/// A mirrored file of `SIZE` bytes on `MIRRORS`.
fn mirrored_file(s: &mut MemState, name: &str) -> u64 {
    let f = made(s, create(ROOT_INO, name, FileKind::Regular));
    ok(s, &write(f, SIZE));
    ok(s, &set_mirrors(f, &MIRRORS));
    f
}

fn seg(n: u8) -> SegmentId {
    SegmentId([n; 32])
}

fn begin(ino: u64) -> Command {
    Command::BeginReduce { ino, time: t(5) }
}

fn finish(ino: u64, epoch: u64) -> Command {
    Command::FinishReduce {
        ino,
        epoch,
        len: SIZE,
        recipe: b"recipe".to_vec(),
        segments: vec![seg(2), seg(1), seg(2)],
    }
}

/// Part `n` of three equal parts of a `SIZE` file (the third is the last).
fn third(ino: u64, epoch: u64, n: u64, segments: Vec<SegmentId>) -> Command {
    part(ino, epoch, n * (SIZE / 3), SIZE / 3, n == 2, segments)
}

fn part(
    ino: u64,
    epoch: u64,
    offset: u64,
    len: u64,
    last: bool,
    segments: Vec<SegmentId>,
) -> Command {
    Command::ReducePart {
        ino,
        epoch,
        part: RecipePart {
            offset,
            len,
            recipe: format!("recipe@{offset}").into_bytes(),
            segments,
        },
        last,
    }
}

fn abort(ino: u64, epoch: u64) -> Command {
    Command::AbortReduce { ino, epoch }
}

fn dropped(ino: u64, epoch: u64) -> Command {
    Command::ReferrersDropped { ino, epoch }
}

fn trimmed(ino: u64, epoch: u64) -> Command {
    Command::ReduceCopiesTrimmed { ino, epoch }
}

/// Applied as the file's shard applies it (guarded).
fn on(s: &mut MemState, cmd: &Command) -> Result<Outcome, FsError> {
    let [shard] = cmd.shards()[..] else {
        panic!("{cmd:?} names one shard");
    };
    step_on(shard, s, cmd)
}

fn ok(s: &mut MemState, cmd: &Command) -> Outcome {
    on(s, cmd).unwrap_or_else(|e| panic!("{cmd:?}: {e:?}"))
}

/// Begins a reduce of `ino`; its epoch.
fn begun(s: &mut MemState, ino: u64) -> u64 {
    ok(s, &begin(ino));
    s.reduces[&ino].epoch
}

fn unlink(name: &str, child: u64) -> Command {
    Command::Unlink {
        parent: ROOT_INO,
        name: name.into(),
        child,
        time: t(7),
    }
}

/// An encode of the whole file as one group, 2+1.
fn begin_encode(ino: u64) -> Command {
    Command::BeginEncode {
        ino,
        first: 0,
        end: 1,
        k: 2,
        m: 1,
        unit_shift: 20,
        placement: vec![21, 22, 23],
        time: t(6),
    }
}

fn unavailable(r: Result<Outcome, FsError>) -> bool {
    matches!(r, Err(FsError::Unavailable(_)))
}

#[test]
fn a_finished_reduce_replaces_the_mirrors_and_lists_their_copies() {
    let mut s = init();
    let f = mirrored_file(&mut s, "f");
    let e = begun(&mut s, f);
    let r = &s.reduces[&f];
    assert_eq!(r.reducing_since(), Some(t(5)));
    assert!(!r.is_reduced() && !r.retired);
    // Until it finishes the mirrors count.
    assert_eq!(s.chunks(f).unwrap(), vec![(0, MIRRORS.to_vec())]);
    assert_eq!(s.reduce_status(f, e), ReduceStatus::UnderWay);
    // One at a time.
    assert!(unavailable(on(&mut s, &begin(f))));

    ok(&mut s, &finish(f, e));
    let r = s.file_reduce(f).unwrap().clone();
    assert!(r.is_reduced());
    let d = r.reduced().unwrap();
    assert_eq!((d.len(), d.parts()[0].recipe), (SIZE, &b"recipe"[..]));
    assert_eq!(
        d.segments(),
        vec![seg(1), seg(2)],
        "each segment once, in order"
    );
    assert_eq!(r.stale_copies, MIRRORS.to_vec());
    assert!(
        s.chunks(f).unwrap().is_empty(),
        "the mirrors no longer count"
    );
    assert_eq!(s.reduce_status(f, e), ReduceStatus::Finished);
    assert_eq!(s.reduce_status(f, e + 1), ReduceStatus::Gone);
    assert_eq!(s.reduces_to_clean(), vec![(f, r.clone())]);
    // Sent again, the finish finds no reduce under way.
    assert_eq!(on(&mut s, &finish(f, e)), Err(FsError::Changed));

    ok(&mut s, &trimmed(f, e));
    assert!(s.reduces[&f].stale_copies.is_empty() && s.reduces[&f].is_reduced());
    assert!(s.reduces_to_clean().is_empty());
    ok(&mut s, &trimmed(f, e));
    // A reduced file is mirrored no more: nothing to reduce again.
    assert_eq!(on(&mut s, &begin(f)), Err(FsError::Invalid));
}

#[test]
fn reduces_take_epochs_from_the_counter_encodes_use() {
    let mut s = init();
    let f = mirrored_file(&mut s, "f");
    let g = mirrored_file(&mut s, "g");
    let e = begun(&mut s, f);
    let encode = begin_encode(g);
    ok(&mut s, &encode);
    assert_eq!(s.stripes[&g].epoch, e + 1);
    ok(&mut s, &abort(f, e));
    assert_eq!(
        begun(&mut s, f),
        e + 2,
        "an epoch is never handed out twice"
    );
}

#[test]
fn an_abort_drops_only_the_reduce_under_way() {
    let mut s = init();
    let f = mirrored_file(&mut s, "f");
    let e = begun(&mut s, f);
    ok(&mut s, &abort(f, e));
    assert_eq!(s.file_reduce(f), None);
    assert_eq!(s.chunks(f).unwrap(), vec![(0, MIRRORS.to_vec())]);
    assert_eq!(s.reduce_status(f, e), ReduceStatus::Gone);
    // Idempotent, and the finish of what was given up is refused.
    ok(&mut s, &abort(f, e));
    assert_eq!(on(&mut s, &finish(f, e)), Err(FsError::Changed));

    // A later reduce is not given up by the earlier one's abort; a finished one is not given
    // up at all (its referrers are live).
    let e2 = begun(&mut s, f);
    ok(&mut s, &abort(f, e));
    assert_eq!(s.reduce_status(f, e2), ReduceStatus::UnderWay);
    ok(&mut s, &finish(f, e2));
    assert_eq!(on(&mut s, &abort(f, e2)), Err(FsError::Changed));
    assert_eq!(s.reduce_status(f, e2), ReduceStatus::Finished);
}

#[test]
fn a_finish_at_another_epoch_or_after_a_change_is_refused() {
    let mut s = init();
    let f = mirrored_file(&mut s, "f");
    let e = begun(&mut s, f);
    assert_eq!(on(&mut s, &finish(f, e + 1)), Err(FsError::Changed));
    assert_eq!(on(&mut s, &finish(f, e - 1)), Err(FsError::Changed));
    // Another length than the file's.
    let short = Command::FinishReduce {
        ino: f,
        epoch: e,
        len: SIZE - 1,
        recipe: b"r".to_vec(),
        segments: vec![seg(1)],
    };
    assert_eq!(on(&mut s, &short), Err(FsError::Changed));
    // A write recorded onto the same mirrors (no `SetMirrors`): the change attribute moved.
    ok(&mut s, &write(f, 10));
    assert_eq!(s.inodes[&f].size, SIZE);
    assert_eq!(on(&mut s, &finish(f, e)), Err(FsError::Changed));
    assert_eq!(s.reduce_status(f, e), ReduceStatus::UnderWay);
    assert_eq!(
        s.chunks(f).unwrap().len(),
        1,
        "a refused finish leaves the mirrors"
    );

    // A write placed anew (its mirrors set) drops the reduce under way at once.
    ok(&mut s, &abort(f, e));
    let e = begun(&mut s, f);
    ok(&mut s, &set_mirrors(f, &[13, 14]));
    assert_eq!(s.file_reduce(f), None);
    assert_eq!(s.reduce_status(f, e), ReduceStatus::Gone);
    assert_eq!(on(&mut s, &finish(f, e)), Err(FsError::Changed));
}

#[test]
fn a_write_to_a_reduced_file_retires_its_record_with_its_segments() {
    let mut s = init();
    let f = mirrored_file(&mut s, "f");
    let e = begun(&mut s, f);
    ok(&mut s, &finish(f, e));
    // Written: the MDS copies it back to mirrors first and records them.
    ok(&mut s, &set_mirrors(f, &[13, 14]));
    let r = s.reduces[&f].clone();
    assert!(r.retired && !r.is_reduced());
    assert_eq!(r.epoch, e);
    assert_eq!(r.reduced().unwrap().segments(), vec![seg(1), seg(2)]);
    assert!(
        r.reduced().unwrap().parts()[0].recipe.is_empty(),
        "nothing reads it any more"
    );
    assert!(r.stale_copies.is_empty(), "the new mirrors' business");
    assert_eq!(s.reduce_status(f, e), ReduceStatus::Gone);
    assert_eq!(s.reduces_to_clean(), vec![(f, r.clone())]);
    // Written again: nothing more changes.
    ok(&mut s, &set_mirrors(f, &[15, 16]));
    assert_eq!(s.reduces[&f], r);
    // Not reduced again, nor aborted, until the referrers are dropped.
    assert!(unavailable(on(&mut s, &begin(f))));
    ok(&mut s, &abort(f, e));
    assert_eq!(s.reduces[&f], r);
    ok(&mut s, &dropped(f, e));
    assert_eq!(s.file_reduce(f), None);
    ok(&mut s, &dropped(f, e));
    let e2 = begun(&mut s, f);
    assert!(e2 > e);
}

#[test]
fn a_removed_file_keeps_its_record_until_its_referrers_and_copies_are_gone() {
    let mut s = init();
    let f = mirrored_file(&mut s, "f");
    let e = begun(&mut s, f);
    ok(&mut s, &finish(f, e));
    ok(&mut s, &unlink("f", f));
    // An orphan may still be open and read: still reduced.
    assert_eq!(s.reduce_status(f, e), ReduceStatus::Finished);
    ok(&mut s, &Command::Forget { ino: f });
    assert!(!s.inodes.contains_key(&f));
    let r = s.reduces[&f].clone();
    assert!(r.retired);
    assert_eq!(r.reduced().unwrap().segments(), vec![seg(1), seg(2)]);
    assert_eq!(
        r.stale_copies,
        MIRRORS.to_vec(),
        "no placement row names them now"
    );
    assert_eq!(s.reduce_status(f, e), ReduceStatus::Gone);
    assert_eq!(s.reduces_to_clean(), vec![(f, r)]);
    // The referrers first: the copies still hold the record.
    ok(&mut s, &dropped(f, e));
    let r = s.reduces[&f].clone();
    assert!(r.reduced().unwrap().segments().is_empty());
    assert_eq!(s.reduces_to_clean(), vec![(f, r)]);
    ok(&mut s, &trimmed(f, e));
    assert_eq!(s.file_reduce(f), None);

    // The other order, and a reduce under way at the removal leaves nothing.
    let g = mirrored_file(&mut s, "g");
    let e = begun(&mut s, g);
    ok(&mut s, &finish(g, e));
    let h = mirrored_file(&mut s, "h");
    let eh = begun(&mut s, h);
    for (name, ino) in [("g", g), ("h", h)] {
        ok(&mut s, &unlink(name, ino));
    }
    ok(&mut s, &Command::ForgetOrphans { inos: vec![g, h] });
    assert_eq!(s.file_reduce(h), None);
    assert_eq!(s.reduce_status(h, eh), ReduceStatus::Gone);
    ok(&mut s, &trimmed(g, e));
    assert!(s.reduces.contains_key(&g));
    ok(&mut s, &dropped(g, e));
    assert_eq!(s.file_reduce(g), None);
}

#[test]
fn referrers_of_a_reduce_that_counts_are_not_declared_dropped() {
    let mut s = init();
    let f = mirrored_file(&mut s, "f");
    let e = begun(&mut s, f);
    assert_eq!(on(&mut s, &dropped(f, e)), Err(FsError::Invalid));
    ok(&mut s, &finish(f, e));
    assert_eq!(on(&mut s, &dropped(f, e)), Err(FsError::Invalid));
    assert!(s.reduces[&f].is_reduced());
    // Of an epoch that left nothing: done already.
    ok(&mut s, &dropped(f, e + 7));
    ok(&mut s, &trimmed(f, e + 7));
    assert_eq!(s.reduces[&f].stale_copies, MIRRORS.to_vec());
}

#[test]
fn only_a_mirrored_regular_file_on_flash_is_reduced() {
    let mut s = init();
    assert_eq!(
        on(&mut s, &begin(ShardId(0).ino(999))),
        Err(FsError::Stale(ShardId(0).ino(999)))
    );
    let d = made(&mut s, create(ROOT_INO, "d", FileKind::Directory));
    assert_eq!(on(&mut s, &begin(d)), Err(FsError::WrongKind));
    // Nothing written: no mirrors.
    let empty = made(&mut s, create(ROOT_INO, "empty", FileKind::Regular));
    assert_eq!(on(&mut s, &begin(empty)), Err(FsError::Invalid));

    // Encoding under way, then encoded.
    let f = mirrored_file(&mut s, "f");
    let encode = begin_encode(f);
    ok(&mut s, &encode);
    assert!(unavailable(on(&mut s, &begin(f))));
    let epoch = s.stripes[&f].epoch;
    let done = Command::FinishEncode {
        ino: f,
        epoch,
        done: vec![crate::Encoded {
            group: 0,
            len: SIZE,
            sums: vec![[1; 32]; 3],
        }],
    };
    ok(&mut s, &done);
    assert_eq!(on(&mut s, &begin(f)), Err(FsError::Invalid));
    assert!(s.file_reduce(f).is_none());

    // Evicted to the tier: its mirrors hold nothing.
    let g = mirrored_file(&mut s, "g");
    let evicted = FileTier {
        evicted: true,
        ..FileTier::default()
    };
    s.tier.insert(g, evicted);
    assert_eq!(on(&mut s, &begin(g)), Err(FsError::Changed));

    // An orphan is reaped, not reduced.
    let h = mirrored_file(&mut s, "h");
    ok(&mut s, &unlink("h", h));
    assert_eq!(on(&mut s, &begin(h)), Err(FsError::Stale(h)));
    let epoch = s.meta(crate::state::meta::NEXT_EPOCH).unwrap();
    assert_eq!(epoch, s.stripes[&f].epoch + 1, "no refusal took an epoch");
}

#[test]
fn no_encode_or_eviction_of_a_file_a_reduce_reads_or_replaced() {
    let mut s = init();
    let f = mirrored_file(&mut s, "f");
    let encode = begin_encode(f);
    let change = s.inodes[&f].change;
    let copy = crate::tiering::TierCopy {
        gen: 1,
        change,
        pieces: Vec::new(),
        at: t(2),
    };
    s.tier.insert(
        f,
        FileTier {
            copy: Some(copy),
            ..FileTier::default()
        },
    );
    let evict = Command::TierEvict {
        ino: f,
        gen: 1,
        change,
    };
    let e = begun(&mut s, f);
    // Under way: the reduce reads the mirrors.
    assert!(unavailable(on(&mut s, &encode)));
    assert_eq!(on(&mut s, &evict), Err(FsError::Changed));
    ok(&mut s, &finish(f, e));
    // Reduced, its mirror copies still to trim: nothing else would name them.
    assert!(on(&mut s, &encode).is_err());
    assert_eq!(on(&mut s, &evict), Err(FsError::Changed));
    assert!(!s.stripes.contains_key(&f) && !s.tier[&f].evicted);
    ok(&mut s, &trimmed(f, e));
    // A copy of pieces (uploaded before the reduce) is sent again as segments first.
    let piece = crate::tiering::TierPiece {
        len: 1,
        sum: [0; 32],
    };
    if let Some(c) = s.tier.get_mut(&f).and_then(|t| t.copy.as_mut()) {
        c.pieces = vec![piece];
    }
    assert_eq!(on(&mut s, &evict), Err(FsError::Changed));
    // Its copy is its segments (no pieces): evicted; its segments go on their own records.
    if let Some(c) = s.tier.get_mut(&f).and_then(|t| t.copy.as_mut()) {
        c.pieces.clear();
    }
    ok(&mut s, &evict);
    assert!(s.tier[&f].evicted);
    ok(&mut s, &Command::TierRestored { ino: f, gen: 1 });
    // Written again (mirrored, the record retired): its copy of segments no longer holds it
    // (the bytes may be the same, the change attribute too); the encode may go ahead.
    ok(&mut s, &set_mirrors(f, &MIRRORS));
    assert!(s.tier.get(&f).is_none_or(|t| t.copy.is_none()));
    assert_eq!(on(&mut s, &evict), Err(FsError::Changed));
    ok(&mut s, &encode);
}

#[test]
fn a_finish_beyond_the_bounds_is_invalid() {
    let mut s = init();
    let f = mirrored_file(&mut s, "f");
    let e = begun(&mut s, f);
    let fin = |len, recipe: Vec<u8>, segments: Vec<SegmentId>| Command::FinishReduce {
        ino: f,
        epoch: e,
        len,
        recipe,
        segments,
    };
    let segs = |n: usize| -> Vec<SegmentId> {
        (0..n)
            .map(|i| {
                let mut id = [0u8; 32];
                id[..8].copy_from_slice(&(i as u64).to_le_bytes());
                SegmentId(id)
            })
            .collect()
    };
    for bad in [
        fin(SIZE, vec![7; MAX_RECIPE_LEN + 1], segs(1)),
        fin(SIZE, Vec::new(), segs(1)),
        fin(SIZE, vec![7; 10], segs(MAX_REDUCE_SEGMENTS + 1)),
        fin(SIZE, vec![7; 10], Vec::new()),
        fin(0, vec![7; 10], segs(1)),
    ] {
        assert_eq!(on(&mut s, &bad), Err(FsError::Invalid));
    }
    // At the bounds: recorded.
    ok(
        &mut s,
        &fin(SIZE, vec![7; MAX_RECIPE_LEN], segs(MAX_REDUCE_SEGMENTS)),
    );
    let d = s.reduces[&f].reduced().unwrap().parts()[0];
    assert_eq!(
        (d.recipe.len(), d.segments.len()),
        (MAX_RECIPE_LEN, MAX_REDUCE_SEGMENTS)
    );
}

#[test]
fn reduce_commands_go_to_the_files_shard_and_are_the_servers_own() {
    let mut s = init();
    let f = mirrored_file(&mut s, "f");
    for cmd in [
        begin(f),
        finish(f, 1),
        abort(f, 1),
        trimmed(f, 1),
        dropped(f, 1),
        third(f, 1, 0, vec![seg(1)]),
    ] {
        assert_eq!(cmd.keys(), vec![Key::Inode(f)], "{cmd:?}");
        let other = ShardId(ShardId::of_ino(f).0 + 1);
        assert_eq!(step_on(other, &mut s, &cmd), Err(FsError::Elsewhere));
        let as_root = Command::As {
            cred: Cred::root(),
            cmd: Box::new(cmd),
        };
        assert_eq!(on(&mut s, &as_root), Err(FsError::Invalid));
    }
    assert!(s.reduces.is_empty());
}

#[test]
fn parts_in_order_make_a_reduced_file_of_them_all() {
    let mut s = init();
    let f = mirrored_file(&mut s, "f");
    let e = begun(&mut s, f);
    ok(&mut s, &third(f, e, 0, vec![seg(2), seg(1)]));
    let r = s.reduces[&f].clone();
    // Under way: the mirrors count, the reclaim pass must wait.
    assert!(!r.is_reduced() && r.reduced().is_none());
    assert_eq!(r.reducing_since(), Some(t(5)));
    assert_eq!(r.parts_so_far().len(), 1);
    assert_eq!(r.parts_so_far()[0].segments, vec![seg(1), seg(2)]);
    assert_eq!(s.reduce_status(f, e), ReduceStatus::UnderWay);
    assert_eq!(s.chunks(f).unwrap(), vec![(0, MIRRORS.to_vec())]);
    // A one-recipe finish does not end a reduce in parts.
    assert_eq!(on(&mut s, &finish(f, e)), Err(FsError::Changed));
    ok(&mut s, &third(f, e, 1, vec![seg(2), seg(3)]));
    ok(&mut s, &third(f, e, 2, vec![seg(4)]));
    let r = s.reduces[&f].clone();
    assert!(r.is_reduced());
    let d = r.reduced().unwrap();
    assert_eq!((d.len(), d.part_count()), (SIZE, 3));
    let parts = d.parts();
    assert_eq!(
        parts.iter().map(|p| (p.offset, p.len)).collect::<Vec<_>>(),
        vec![
            (0, SIZE / 3),
            (SIZE / 3, SIZE / 3),
            (2 * SIZE / 3, SIZE / 3)
        ]
    );
    assert_eq!(parts[1].recipe, format!("recipe@{}", SIZE / 3).as_bytes());
    assert_eq!(d.segments(), vec![seg(1), seg(2), seg(3), seg(4)]);
    assert_eq!(d.part_at(SIZE / 3 + 5).map(|p| p.offset), Some(SIZE / 3));
    assert_eq!(d.part_at(SIZE / 3 - 1).map(|p| p.offset), Some(0));
    assert_eq!(d.part_at(SIZE - 1).map(|p| p.offset), Some(2 * SIZE / 3));
    assert_eq!(d.part_at(SIZE), None);
    assert_eq!(r.stale_copies, MIRRORS.to_vec());
    assert!(
        s.chunks(f).unwrap().is_empty(),
        "the mirrors no longer count"
    );
    assert_eq!(s.reduce_status(f, e), ReduceStatus::Finished);
    // The passes get the record without its recipes (mirror copies to trim here).
    let [(i, clean)] = &s.reduces_to_clean()[..] else {
        panic!("one record to clean");
    };
    assert_eq!(*i, f);
    let d = clean.reduced().unwrap();
    assert_eq!(d.segments(), vec![seg(1), seg(2), seg(3), seg(4)]);
    assert!(d.parts().iter().all(|p| p.recipe.is_empty()) && d.len() == SIZE);
    assert_eq!(clean.stale_copies, r.stale_copies);
    // Sent again, nothing is under way.
    assert_eq!(
        on(&mut s, &third(f, e, 2, vec![seg(4)])),
        Err(FsError::Changed)
    );
    assert_eq!(on(&mut s, &abort(f, e)), Err(FsError::Changed));
    ok(&mut s, &trimmed(f, e));
    assert!(s.reduces[&f].is_reduced() && s.reduces_to_clean().is_empty());
}

#[test]
fn a_part_with_a_gap_an_overlap_or_out_of_bounds_is_refused() {
    let mut s = init();
    let f = mirrored_file(&mut s, "f");
    let e = begun(&mut s, f);
    let third_len = SIZE / 3;
    for (bad, why) in [
        (part(f, e, 1, third_len, false, vec![seg(1)]), "not from 0"),
        (
            part(f, e, 0, SIZE, false, vec![seg(1)]),
            "not last, yet to the end",
        ),
        (
            part(f, e, 0, third_len, true, vec![seg(1)]),
            "last, short of the end",
        ),
        (part(f, e, 0, SIZE + 1, true, vec![seg(1)]), "past the end"),
        (part(f, e, 0, 0, false, vec![seg(1)]), "empty"),
        (part(f, e, 0, third_len, false, Vec::new()), "no segment"),
        (part(f, e, u64::MAX, 2, false, vec![seg(1)]), "overflows"),
    ] {
        assert_eq!(on(&mut s, &bad), Err(FsError::Invalid), "{why}");
    }
    let mut big = part(f, e, 0, third_len, false, vec![seg(1)]);
    if let Command::ReducePart { part, .. } = &mut big {
        part.recipe = vec![7; MAX_RECIPE_LEN + 1];
    }
    assert_eq!(on(&mut s, &big), Err(FsError::Invalid), "recipe too large");
    ok(&mut s, &third(f, e, 0, vec![seg(1)]));
    let after_first = s.reduces[&f].clone();
    for (bad, why) in [
        (
            part(f, e, third_len - 1, 10, false, vec![seg(1)]),
            "overlap",
        ),
        (part(f, e, third_len + 1, 10, false, vec![seg(1)]), "gap"),
        (third(f, e, 0, vec![seg(1)]), "the same part again"),
    ] {
        assert_eq!(on(&mut s, &bad), Err(FsError::Invalid), "{why}");
    }
    // At another epoch: not this reduce.
    assert_eq!(
        on(&mut s, &third(f, e + 1, 1, vec![seg(1)])),
        Err(FsError::Changed)
    );
    assert_eq!(
        s.reduces[&f], after_first,
        "a refused part leaves the record"
    );
    // No reduce under way at all.
    let g = mirrored_file(&mut s, "g");
    assert_eq!(
        on(&mut s, &third(g, e, 0, vec![seg(1)])),
        Err(FsError::Changed)
    );
}

#[test]
fn parts_stop_at_the_bound() {
    let mut s = init();
    let f = made(&mut s, create(ROOT_INO, "f", FileKind::Regular));
    let size = MAX_REDUCE_PARTS as u64 + 2;
    ok(&mut s, &write(f, size));
    ok(&mut s, &set_mirrors(f, &MIRRORS));
    let e = begun(&mut s, f);
    for n in 0..MAX_REDUCE_PARTS as u64 {
        ok(&mut s, &part(f, e, n, 1, false, vec![seg(1)]));
    }
    let n = MAX_REDUCE_PARTS as u64;
    assert_eq!(
        on(&mut s, &part(f, e, n, size - n, true, vec![seg(1)])),
        Err(FsError::Invalid)
    );
    assert_eq!(s.reduces[&f].parts_so_far().len(), MAX_REDUCE_PARTS);
    // Given up: the record goes, parts and all.
    ok(&mut s, &abort(f, e));
    assert_eq!(s.file_reduce(f), None);
    assert_eq!(s.reduce_status(f, e), ReduceStatus::Gone);
}

#[test]
fn a_write_between_parts_drops_the_reduce() {
    let mut s = init();
    let f = mirrored_file(&mut s, "f");
    let e = begun(&mut s, f);
    ok(&mut s, &third(f, e, 0, vec![seg(1)]));
    // A write onto the same mirrors (no SetMirrors): the next part is refused.
    ok(&mut s, &write(f, 10));
    assert_eq!(
        on(&mut s, &third(f, e, 1, vec![seg(2)])),
        Err(FsError::Changed)
    );
    assert_eq!(s.reduce_status(f, e), ReduceStatus::UnderWay);
    // Its mirrors set again: the reduce under way is gone, its referrers leaks.
    ok(&mut s, &set_mirrors(f, &[13, 14]));
    assert_eq!(s.file_reduce(f), None);
    assert_eq!(s.reduce_status(f, e), ReduceStatus::Gone);
    assert_eq!(
        on(&mut s, &third(f, e, 1, vec![seg(2)])),
        Err(FsError::Changed)
    );
    // A removed file's reduce in parts under way goes with it too.
    let g = mirrored_file(&mut s, "g");
    let e = begun(&mut s, g);
    ok(&mut s, &third(g, e, 0, vec![seg(1)]));
    ok(&mut s, &unlink("g", g));
    ok(&mut s, &Command::Forget { ino: g });
    assert_eq!(s.reduce_status(g, e), ReduceStatus::Gone);
}

#[test]
fn a_retired_reduce_in_parts_keeps_every_parts_segments() {
    let mut s = init();
    let f = mirrored_file(&mut s, "f");
    let e = begun(&mut s, f);
    ok(&mut s, &third(f, e, 0, vec![seg(1), seg(2)]));
    ok(&mut s, &third(f, e, 1, vec![seg(3), seg(2)]));
    ok(&mut s, &third(f, e, 2, vec![seg(5)]));
    ok(&mut s, &set_mirrors(f, &[13, 14]));
    let r = s.reduces[&f].clone();
    assert!(r.retired && !r.is_reduced());
    assert_eq!(s.reduce_status(f, e), ReduceStatus::Gone);
    let d = r.reduced().unwrap();
    assert_eq!(d.segments(), vec![seg(1), seg(2), seg(3), seg(5)]);
    assert_eq!(d.len(), SIZE);
    assert!(
        d.parts().iter().all(|p| p.recipe.is_empty()),
        "no recipe kept"
    );
    assert!(
        matches!(r.state, ReduceState::Reduced(_)),
        "one-recipe form"
    );
    assert_eq!(s.reduces_to_clean(), vec![(f, r.clone())]);
    ok(&mut s, &dropped(f, e));
    assert_eq!(s.file_reduce(f), None);
}

#[test]
fn a_one_recipe_record_reads_as_one_part() {
    // As written before parts existed (pinned in `encodings`).
    let old = crate::reducing::FileReduce {
        epoch: 4,
        state: ReduceState::Reduced(crate::reducing::Reduced {
            len: 1 << 33,
            recipe: b"cfsrdrcp".to_vec(),
            segments: vec![seg(0x5e)],
        }),
        stale_copies: vec![11, 12],
        retired: false,
    };
    let bytes = postcard::to_stdvec(&old).unwrap();
    let back: crate::reducing::FileReduce = postcard::from_bytes(&bytes).unwrap();
    let d = back.reduced().unwrap();
    assert_eq!(d.part_count(), 1);
    let p = d.part_at(5).unwrap();
    assert_eq!((p.offset, p.len, p.recipe), (0, 1 << 33, &b"cfsrdrcp"[..]));
    assert_eq!(d.segments(), vec![seg(0x5e)]);
}

// A property test: random begins, finishes, aborts, writes, re-mirrorings, removals and
// cleanups of two files, some sent twice.

#[derive(Clone, Debug)]
enum Op {
    Begin(usize),
    /// Finish at the file's latest epoch (or an older one).
    Finish(usize, bool),
    Abort(usize, bool),
    Write(usize),
    Mirrors(usize),
    Remove(usize),
    Dropped(usize, bool),
    Trimmed(usize, bool),
    /// Part `n` of three at the file's latest epoch (or an older one).
    Part(usize, bool, u64),
    Again,
}

fn arb_op() -> impl Strategy<Value = Op> {
    let f = 0..2usize;
    prop_oneof![
        3 => f.clone().prop_map(Op::Begin),
        3 => (f.clone(), any::<bool>()).prop_map(|(f, b)| Op::Finish(f, b)),
        1 => (f.clone(), any::<bool>()).prop_map(|(f, b)| Op::Abort(f, b)),
        1 => f.clone().prop_map(Op::Write),
        1 => f.clone().prop_map(Op::Mirrors),
        1 => f.clone().prop_map(Op::Remove),
        2 => (f.clone(), any::<bool>()).prop_map(|(f, b)| Op::Dropped(f, b)),
        2 => (f.clone(), any::<bool>()).prop_map(|(f, b)| Op::Trimmed(f, b)),
        3 => (f, any::<bool>(), 0..3u64).prop_map(|(f, b, n)| Op::Part(f, b, n)),
        1 => Just(Op::Again),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// After every step: a file is mirrored or reduced, never both; a retired record still
    /// has segments or copies to account for; a reduce that was `Gone` for its epoch never
    /// comes back (what lets the reclaim pass drop a leaked referrer); every epoch handed out
    /// is new. The log replayed gives the same state.
    #[test]
    fn random_sequences_keep_the_record_and_the_mirrors_apart(
        ops in proptest::collection::vec(arb_op(), 1..60)
    ) {
        let mut s = init();
        let files = [mirrored_file(&mut s, "a"), mirrored_file(&mut s, "b")];
        let names = ["a", "b"];
        let base = s.clone();
        // Every epoch begun, per file, and whether it was seen `Gone`.
        let mut epochs: BTreeMap<(u64, u64), bool> = BTreeMap::new();
        let mut last: Option<Command> = None;
        let mut log = Vec::new();
        for op in &ops {
            let latest = |f: usize| {
                let mine = epochs.keys().filter(|(i, _)| *i == files[f]);
                mine.map(|(_, e)| *e).max().unwrap_or(1)
            };
            let pick = |f: usize, old: bool| latest(f).saturating_sub(u64::from(old));
            let cmd = match *op {
                Op::Begin(f) => begin(files[f]),
                Op::Finish(f, old) => finish(files[f], pick(f, old)),
                Op::Abort(f, old) => abort(files[f], pick(f, old)),
                Op::Write(f) => write(files[f], 1),
                Op::Mirrors(f) => set_mirrors(files[f], &[13, 14]),
                Op::Remove(f) => {
                    if s.inodes.get(&files[f]).is_some_and(|i| i.nlink > 0) {
                        unlink(names[f], files[f])
                    } else {
                        Command::Forget { ino: files[f] }
                    }
                }
                Op::Dropped(f, old) => dropped(files[f], pick(f, old)),
                Op::Trimmed(f, old) => trimmed(files[f], pick(f, old)),
                Op::Part(f, old, n) => third(files[f], pick(f, old), n, vec![seg(n as u8)]),
                Op::Again => match &last {
                    Some(c) => c.clone(),
                    None => continue,
                },
            };
            let before = s.meta(crate::state::meta::NEXT_EPOCH).unwrap();
            let got = on(&mut s, &cmd);
            if let (Command::BeginReduce { ino, .. }, Ok(_)) = (&cmd, &got) {
                let e = s.reduces[ino].epoch;
                prop_assert!(e >= before.max(1), "epoch {} handed out again", e);
                prop_assert!(epochs.insert((*ino, e), false).is_none());
            }
            log.push(cmd.clone());
            last = Some(cmd);
            for (&(ino, e), gone) in epochs.iter_mut() {
                let st = s.reduce_status(ino, e);
                prop_assert!(!(*gone && st != ReduceStatus::Gone), "{} at {} came back", ino, e);
                *gone = st == ReduceStatus::Gone;
            }
            for (ino, r) in &s.reduces {
                let mirrored = !s.chunks(*ino).unwrap().is_empty();
                prop_assert!(!(mirrored && r.is_reduced()), "{} mirrored and reduced", ino);
                if r.retired {
                    let segs = r.reduced().map_or(0, |d| d.segments().len());
                    prop_assert!(segs > 0 || !r.stale_copies.is_empty(), "{:?} left over", r);
                    prop_assert!(matches!(r.state, ReduceState::Reduced(_)));
                }
                if !s.inodes.contains_key(ino) {
                    prop_assert!(r.retired, "a forgotten file's record counts: {:?}", r);
                }
            }
        }
        let mut replayed = base;
        for cmd in &log {
            let _ = on(&mut replayed, cmd);
        }
        prop_assert_eq!(replayed.dump(), s.dump());
    }
}
