//! Reduce records in the namespace (`meta_core::reducing`): a finish as large as the bounds
//! allow goes through the Raft log, the records (under way, finished, retired with the inode
//! gone) survive a restart from the checkpoint and the log replayed, and the reads the passes
//! use answer as recorded. (A snapshot carrying them: `raft::machine`'s tests.)

use meta_core::reduce_index::SegmentId;
use meta_core::reducing::{RecipePart, ReduceStatus, MAX_RECIPE_LEN, MAX_REDUCE_SEGMENTS};

use super::*;

const SIZE: u64 = 1 << 20;

/// `n` distinct segment ids.
fn segments(n: usize) -> Vec<SegmentId> {
    (0..n)
        .map(|i| {
            let mut id = [0xa5; 32];
            id[..8].copy_from_slice(&(i as u64).to_le_bytes());
            SegmentId(id)
        })
        .collect()
}

async fn mirrored(ns: &Namespace, name: &str) -> u64 {
    let f = mk(ns, ROOT_INO, name, FileKind::Regular).await;
    for cmd in [
        Command::Write {
            ino: f,
            end_offset: SIZE,
            time: t(3),
            writes: 1,
        },
        Command::SetMirrors {
            ino: f,
            chunk: 0,
            mirrors: vec![11, 12],
        },
        Command::BeginReduce { ino: f, time: t(4) },
    ] {
        ns.execute(cmd).await.unwrap();
    }
    f
}

fn epoch(ns: &Namespace, ino: u64) -> u64 {
    ns.file_reduce(ino).unwrap().expect("a reduce record").epoch
}

fn finish(ino: u64, epoch: u64, recipe: usize, segs: usize) -> Command {
    Command::FinishReduce {
        ino,
        epoch,
        len: SIZE,
        recipe: vec![0x3c; recipe],
        segments: segments(segs),
    }
}

#[test]
fn reduce_records_survive_a_restart_and_the_log_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let (files, want) = {
        let ns = open(&rt, dir.path());
        let files = rt.block_on(async {
            // Under way; finished at the bounds; finished, then removed and forgotten.
            let a = mirrored(&ns, "a").await;
            let b = mirrored(&ns, "b").await;
            let e = epoch(&ns, b);
            ns.execute(finish(b, e, MAX_RECIPE_LEN, MAX_REDUCE_SEGMENTS))
                .await
                .unwrap();
            let c = mirrored(&ns, "c").await;
            let e = epoch(&ns, c);
            ns.execute(finish(c, e, 100, 3)).await.unwrap();
            let unlink = Command::Unlink {
                parent: ROOT_INO,
                name: b"c".to_vec(),
                child: c,
                time: t(6),
            };
            ns.execute(unlink).await.unwrap();
            ns.execute(Command::Forget { ino: c }).await.unwrap();
            [a, b, c]
        });
        let want: Vec<_> = files
            .iter()
            .map(|f| ns.file_reduce(*f).unwrap().unwrap())
            .collect();
        assert_eq!(want[0].reducing_since(), Some(t(4)));
        let d = want[1].reduced().unwrap().parts()[0];
        assert_eq!(
            (d.recipe.len(), d.segments.len()),
            (MAX_RECIPE_LEN, MAX_REDUCE_SEGMENTS)
        );
        assert!(want[1].is_reduced() && want[2].retired);
        // The log replayed gives each shard's records again.
        for shard in (0..ns.shard_count()).map(ShardId) {
            let mut replayed = MemState::default();
            for (_, bytes) in ns.log_entries(shard, 0).unwrap() {
                let _ = step_on(shard, &mut replayed, &Command::decode(&bytes).unwrap());
            }
            let here = ns.snapshot().unwrap().shard_dump(shard).unwrap().reduces;
            assert_eq!(replayed.reduces, here, "{shard}");
        }
        (files, want)
    };
    let ns = open(&rt, dir.path());
    let [a, b, c] = files;
    for (f, w) in files.iter().zip(&want) {
        assert_eq!(ns.file_reduce(*f).unwrap().as_ref(), Some(w), "{f}");
    }
    assert!(ns.getattr(c).is_err(), "the record outlives the inode");
    assert!(ns.chunks(b).unwrap().is_empty());
    let clean: Vec<u64> = ns
        .reduces_to_clean()
        .unwrap()
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    let mut expect = vec![a, b, c];
    expect.sort_unstable();
    assert_eq!(clean, expect, "under way, copies to trim, retired");
    rt.block_on(async {
        assert_eq!(
            ns.reduce_status(a, want[0].epoch).await,
            Ok(ReduceStatus::UnderWay)
        );
        assert_eq!(
            ns.reduce_status(b, want[1].epoch).await,
            Ok(ReduceStatus::Finished)
        );
        assert_eq!(
            ns.reduce_status(c, want[2].epoch).await,
            Ok(ReduceStatus::Gone)
        );
        // The cleanup pass's commands, after the restart.
        let ec = want[2].epoch;
        ns.execute(Command::ReferrersDropped { ino: c, epoch: ec })
            .await
            .unwrap();
        ns.execute(Command::ReduceCopiesTrimmed { ino: c, epoch: ec })
            .await
            .unwrap();
    });
    assert_eq!(ns.file_reduce(c).unwrap(), None);
}

fn part(ino: u64, epoch: u64, offset: u64, len: u64, last: bool, recipe: usize) -> Command {
    Command::ReducePart {
        ino,
        epoch,
        part: RecipePart {
            offset,
            len,
            recipe: vec![offset as u8; recipe],
            segments: segments(MAX_REDUCE_SEGMENTS),
        },
        last,
    }
}

/// Parts as large as the bounds allow go through the Raft log one by one; a reduce in parts
/// under way and one finished survive a restart, and the part reads answer each part.
#[test]
fn reduces_in_parts_go_through_the_log_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let third = SIZE / 3;
    let (files, want) = {
        let ns = open(&rt, dir.path());
        let files = rt.block_on(async {
            let a = mirrored(&ns, "a").await;
            let e = epoch(&ns, a);
            ns.execute(part(a, e, 0, third, false, MAX_RECIPE_LEN))
                .await
                .unwrap();
            let b = mirrored(&ns, "b").await;
            let e = epoch(&ns, b);
            for (n, last) in [(0, false), (1, false), (2, true)] {
                let len = if last { SIZE - 2 * third } else { third };
                ns.execute(part(b, e, n * third, len, last, MAX_RECIPE_LEN))
                    .await
                    .unwrap();
            }
            [a, b]
        });
        let want: Vec<_> = files
            .iter()
            .map(|f| ns.file_reduce(*f).unwrap().unwrap())
            .collect();
        (files, want)
    };
    let ns = open(&rt, dir.path());
    let [a, b] = files;
    for (f, w) in files.iter().zip(&want) {
        assert_eq!(ns.file_reduce(*f).unwrap().as_ref(), Some(w), "{f}");
    }
    assert_eq!(want[0].parts_so_far().len(), 1);
    assert!(want[0].reducing_since().is_some() && want[1].is_reduced());
    assert_eq!(ns.reduced_extent(b).unwrap(), Some((want[1].epoch, SIZE)));
    let p = ns
        .reduced_part(b, want[1].epoch, third + 1)
        .unwrap()
        .expect("the middle part");
    assert_eq!((p.offset, p.len, p.parts), (third, third, 3));
    assert_eq!(p.recipe, vec![third as u8; MAX_RECIPE_LEN]);
    assert_eq!(ns.reduced_part(b, want[1].epoch + 1, 0).unwrap(), None);
    assert_eq!(ns.reduced_part(b, want[1].epoch, SIZE).unwrap(), None);
    assert_eq!(
        ns.reduced_part(a, want[0].epoch, 0).unwrap(),
        None,
        "under way"
    );
    let (segs, most) = ns
        .reduced_segments(b, want[1].epoch)
        .unwrap()
        .expect("segments");
    assert_eq!(
        (segs.len(), most),
        (MAX_REDUCE_SEGMENTS, MAX_REDUCE_SEGMENTS)
    );
    rt.block_on(async {
        assert_eq!(
            ns.reduce_status(a, want[0].epoch).await,
            Ok(ReduceStatus::UnderWay)
        );
        assert_eq!(
            ns.reduce_status(b, want[1].epoch).await,
            Ok(ReduceStatus::Finished)
        );
    });
}
