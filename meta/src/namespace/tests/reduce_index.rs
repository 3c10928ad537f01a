//! The data-reduction index in the namespace (`meta_core::reduce_index`): its commands reach
//! their segment's shard and no other, and what they recorded survives a kill -9 (the log
//! replayed at open) and a restart from the checkpoint, with the reads the reducer and the
//! freeing passes use answering as before. (A snapshot sent to a replica that missed the
//! commands: `tests::replicated`.)

use std::collections::BTreeSet;
use std::io::Read;
use std::process::{Command as Proc, Stdio};

use meta_core::reduce_index::{
    ChunkId, IndexStats, Referrer, Segment, SegmentId, SegmentState, StoredSegment,
};

use super::*;

const CHILD_ENV: &str = "CFS_NS_INDEX_CHILD";

/// Segment `n`: its first 8 bytes are `n`, so segments 1 to 8 fall on every shard of 4.
pub(super) fn seg(n: u8) -> SegmentId {
    let mut id = [0x5a; 32];
    id[..8].copy_from_slice(&u64::from(n).to_le_bytes());
    SegmentId(id)
}

/// Segment `n` as stored: chunks `n` and `n + 100`.
pub(super) fn stored(n: u8) -> StoredSegment {
    StoredSegment {
        chunks: vec![
            (ChunkId([n; 32]), 1000),
            (ChunkId([n.wrapping_add(100); 32]), 2000),
        ],
        placement: vec![11, 12, 13],
        stored_len: 2500,
    }
}

fn referrer(ino: u64) -> Referrer {
    Referrer { ino, epoch: 1 }
}

/// What the tests record, in order, in a file system of `shards` shards: segments 1 to 8 made
/// with two referrers each; 3 and 6 lose both (`Dying`), 6 is forgotten, and a new referrer
/// of 3 is refused. The same every time, so a test knows what a killed child did.
pub(super) fn commands(shards: u16) -> Vec<Command> {
    let shard = |n| ShardId::of_segment(&seg(n), shards);
    let add = |n: u8, stored: Option<StoredSegment>, ino| Command::AddReferrer {
        shard: shard(n),
        segment: seg(n),
        stored,
        referrer: referrer(ino),
    };
    let drop = |n: u8, ino| Command::DropReferrer {
        shard: shard(n),
        segment: seg(n),
        referrer: referrer(ino),
    };
    let mut v = Vec::new();
    for n in 1..=8u8 {
        v.push(add(n, Some(stored(n)), 100));
        v.push(add(n, None, 200 + u64::from(n)));
    }
    for n in [3u8, 6] {
        v.push(drop(n, 100));
        v.push(drop(n, 200 + u64::from(n)));
    }
    v.push(add(3, None, 300));
    v.push(Command::ForgetSegment {
        shard: shard(6),
        segment: seg(6),
    });
    v
}

type Index = BTreeMap<
    ShardId,
    (
        BTreeMap<SegmentId, Segment>,
        BTreeSet<(SegmentId, Referrer)>,
    ),
>;

/// Each shard's index and each command's answer as `commands` leave them, applied to a
/// model of each shard.
pub(super) fn model(shards: u16) -> (Index, Vec<Result<Outcome, FsError>>) {
    let mut states: BTreeMap<ShardId, MemState> = BTreeMap::new();
    let mut answers = Vec::new();
    for cmd in commands(shards) {
        let shard = cmd.shards()[0];
        answers.push(step_on(shard, states.entry(shard).or_default(), &cmd));
    }
    let index = (0..shards)
        .map(|s| {
            let st = states.remove(&ShardId(s)).unwrap_or_default();
            (ShardId(s), (st.segments, st.referrers))
        })
        .collect();
    (index, answers)
}

/// Each local shard's index as `ns` has it.
pub(super) fn index_of(ns: &Namespace) -> Index {
    let snap = ns.snapshot().unwrap();
    (0..ns.shard_count())
        .map(|s| {
            let d = snap.shard_dump(ShardId(s)).unwrap();
            (ShardId(s), (d.segments, d.referrers))
        })
        .collect()
}

/// The reads the reducer and the freeing passes use, on the state `commands` leave.
fn reads_answer_as_recorded(ns: &Namespace) {
    let c = |n: u8| ChunkId([n; 32]);
    let found = ns.locate_chunks(&[c(3), c(1), c(6), c(108)]).unwrap();
    let at: Vec<(ChunkId, SegmentId, u32)> = found
        .iter()
        .map(|(id, l)| (*id, l.segment, l.index))
        .collect();
    assert_eq!(
        at,
        vec![(c(1), seg(1), 0), (c(108), seg(8), 1)],
        "a dying or forgotten segment's chunks are not found"
    );
    let dying = ns.dying_segments().unwrap();
    assert_eq!(dying.len(), 1);
    assert_eq!(
        (dying[0].id, dying[0].shard),
        (seg(3), ns.segment_shard(&seg(3)))
    );
    assert_eq!(dying[0].placement, vec![11, 12, 13]);
    assert_eq!(dying[0].origin, referrer(100));
    assert_eq!(
        ns.segment_referrers(&seg(1), None, 10).unwrap(),
        vec![referrer(100), referrer(201)]
    );
    assert_eq!(
        ns.segment_referrers(&seg(1), Some(referrer(100)), 10)
            .unwrap(),
        vec![referrer(201)]
    );
    assert_eq!(
        ns.segment(&seg(3)).unwrap().map(|s| s.state),
        Some(SegmentState::Dying)
    );
    assert_eq!(ns.segment(&seg(6)).unwrap(), None);
    assert_eq!(
        ns.index_stats().unwrap(),
        IndexStats {
            live_segments: 6,
            dying_segments: 1,
            chunks: 12,
            referrers: 12,
            raw_bytes: 6 * 3000,
            stored_bytes: 6 * 2500,
            dying_bytes: 2500,
        }
    );
}

#[test]
fn index_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return; // Only does something when started by the test below.
    };
    let rt = rt();
    let ns = open(&rt, std::path::Path::new(&dir));
    let (_, answers) = model(ns.shard_count());
    rt.block_on(async {
        for (i, (cmd, want)) in commands(ns.shard_count())
            .into_iter()
            .zip(answers)
            .enumerate()
        {
            let got = ns.execute(cmd).await;
            if got != want {
                println!("bad {i}: {got:?}, model {want:?}");
            }
            println!("ack {i}");
        }
    });
    // Dies at once: no last checkpoint; what the checkpointer has not written is in the log.
    std::process::abort();
}

/// Killed right after its last index command was acknowledged, a node reopens with every one
/// of them (answered as the model answers them), and again after a clean restart.
#[test]
fn the_index_survives_a_kill_9_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let mut child = Proc::new(std::env::current_exe().unwrap())
        .args([
            "namespace::tests::reduce_index::index_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(
        !child.wait().unwrap().success(),
        "the child was meant to abort"
    );
    assert!(
        !out.contains("bad"),
        "answers differ from the model:\n{out}"
    );
    // (The first ack shares its line with the test harness's name.)
    let acked = |i: usize| out.contains(&format!("ack {i}\n"));
    assert!(
        (0..commands(TEST_SHARDS).len()).all(acked),
        "child output:\n{out}"
    );

    let (want, _) = model(TEST_SHARDS);
    assert!(
        want.values().filter(|(s, _)| !s.is_empty()).count() == usize::from(TEST_SHARDS),
        "the segments fall on every shard"
    );
    let ns = open(&rt, dir.path());
    assert_eq!(index_of(&ns), want, "after kill -9");
    reads_answer_as_recorded(&ns);
    drop(ns);
    let ns = open(&rt, dir.path());
    assert_eq!(index_of(&ns), want, "after a restart from the checkpoint");
    reads_answer_as_recorded(&ns);
}

/// An index command naming another shard than its segment's is refused before it reaches
/// any (the record would sit where no drop finds it); routed right, it lands on that shard
/// alone, and the log replayed gives the same record.
#[test]
fn index_commands_reach_their_segments_shard_only() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let ns = open(&rt, dir.path());
    let s = ns.segment_shard(&seg(5));
    assert_eq!(s, ShardId(1));
    let cmd = |shard| Command::AddReferrer {
        shard,
        segment: seg(5),
        stored: Some(stored(5)),
        referrer: referrer(7),
    };
    rt.block_on(async {
        let wrong = ShardId((s.0 + 1) % TEST_SHARDS);
        assert_eq!(ns.execute(cmd(wrong)).await, Err(FsError::Invalid));
        assert!(index_of(&ns)
            .values()
            .all(|(g, r)| g.is_empty() && r.is_empty()));
        assert!(ns.execute(cmd(s)).await.unwrap().created);
    });
    let index = index_of(&ns);
    for (shard, (segments, referrers)) in &index {
        let here = *shard == s;
        assert_eq!(segments.contains_key(&seg(5)), here, "{shard}");
        assert_eq!(referrers.len(), usize::from(here), "{shard}");
    }
    let mut replayed = MemState::default();
    for (_, bytes) in ns.log_entries(s, 0).unwrap() {
        let _ = step_on(s, &mut replayed, &Command::decode(&bytes).unwrap());
    }
    assert_eq!((replayed.segments, replayed.referrers), index[&s]);
}
