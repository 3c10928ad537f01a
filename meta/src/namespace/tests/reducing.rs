//! Reduce records in the namespace (`meta_core::reducing`): a finish as large as the bounds
//! allow goes through the Raft log, the records (under way, finished, retired with the inode
//! gone) survive a restart from the checkpoint and the log replayed, and the reads the passes
//! use answer as recorded. (A snapshot carrying them: `raft::machine`'s tests.)

use meta_core::reduce_index::SegmentId;
use meta_core::reducing::{ReduceStatus, MAX_RECIPE_LEN, MAX_REDUCE_SEGMENTS};

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
        let d = want[1].reduced().unwrap();
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
