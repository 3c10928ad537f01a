//! The erasure-coding record (`coding`): a group moves from mirrored to encoded only through a
//! finished encode, goes back to mirrored when written, and the record survives a restart.

use super::*;

const PLACE: [u64; 6] = [11, 12, 13, 14, 15, 16];

fn file_with_groups(s: &mut MemState, name: &str, groups: u64) -> u64 {
    let f = made(s, create(ROOT_INO, name, FileKind::Regular));
    for g in 0..groups {
        step(
            s,
            &Command::SetMirrors {
                ino: f,
                chunk: g,
                mirrors: vec![11, 12],
            },
        )
        .unwrap();
    }
    f
}

fn begin(ino: u64, first: u64, end: u64) -> Command {
    Command::BeginEncode {
        ino,
        first,
        end,
        k: 4,
        m: 2,
        unit_shift: 20,
        placement: PLACE.to_vec(),
        time: t(5),
    }
}

fn done(groups: &[u64]) -> Vec<Encoded> {
    groups
        .iter()
        .map(|g| Encoded {
            group: *g,
            len: 16 << 20,
            sums: vec![[*g as u8; 32]; 6],
        })
        .collect()
}

fn epoch(s: &MemState, ino: u64) -> u64 {
    s.stripes[&ino].epoch
}

#[test]
fn a_group_is_encoded_only_once_its_encode_finished() {
    let mut s = init();
    let f = file_with_groups(&mut s, "f", 3);
    // Only mirrored groups can be encoded; geometry and placement are checked.
    assert_eq!(step(&mut s, &begin(f, 2, 4)), Err(FsError::Invalid));
    let mut bad = begin(f, 0, 2);
    if let Command::BeginEncode { placement, .. } = &mut bad {
        placement[1] = 11;
    }
    assert_eq!(step(&mut s, &bad), Err(FsError::Invalid));
    step(&mut s, &begin(f, 0, 2)).unwrap();
    let e = epoch(&s, f);
    assert!(e >= 1);
    // While encoding, the mirrors are still the record of the data, and no second encode.
    assert_eq!(s.chunks(f).unwrap().len(), 3);
    assert!(matches!(
        step(&mut s, &begin(f, 2, 3)),
        Err(FsError::Unavailable(_))
    ));
    // A result for another epoch, a group outside the range, or too few sums is refused.
    let finish = |epoch, groups: &[u64]| Command::FinishEncode {
        ino: f,
        epoch,
        done: done(groups),
    };
    assert_eq!(step(&mut s, &finish(e + 1, &[0])), Err(FsError::Invalid));
    assert_eq!(step(&mut s, &finish(e, &[2])), Err(FsError::Invalid));
    let mut short = done(&[0]);
    short[0].sums.pop();
    let cmd = Command::FinishEncode {
        ino: f,
        epoch: e,
        done: short,
    };
    assert_eq!(step(&mut s, &cmd), Err(FsError::Invalid));
    step(&mut s, &finish(e, &[0, 1])).unwrap();
    let code = &s.stripes[&f];
    assert_eq!(code.groups.keys().copied().collect::<Vec<_>>(), vec![0, 1]);
    assert!(code.encoding.is_none());
    assert_eq!(s.chunks(f).unwrap(), vec![(2, vec![11, 12])]);
    // 32 MiB as 4+2 with 1 MiB units: 1.5x.
    assert_eq!(code.stored_bytes(), 48 << 20);
    // The next encode of the file keeps its epoch, geometry and placement.
    step(&mut s, &begin(f, 2, 3)).unwrap();
    assert_eq!(epoch(&s, f), e);
    step(&mut s, &Command::AbortEncode { ino: f, epoch: e }).unwrap();
    assert_eq!(
        s.chunks(f).unwrap().len(),
        1,
        "an aborted encode leaves mirrors"
    );
    assert_eq!(s.stripes[&f].groups.len(), 2);
}

#[test]
fn a_written_group_goes_back_to_mirrors_and_a_new_encoding_gets_a_new_epoch() {
    let mut s = init();
    let f = file_with_groups(&mut s, "f", 2);
    step(&mut s, &begin(f, 0, 2)).unwrap();
    let e = epoch(&s, f);
    step(
        &mut s,
        &Command::FinishEncode {
            ino: f,
            epoch: e,
            done: done(&[0, 1]),
        },
    )
    .unwrap();
    for g in 0..2 {
        step(
            &mut s,
            &Command::SetMirrors {
                ino: f,
                chunk: g,
                mirrors: vec![13, 14],
            },
        )
        .unwrap();
        assert!(!s.stripes.get(&f).is_some_and(|c| c.groups.contains_key(&g)));
    }
    assert!(!s.stripes.contains_key(&f), "nothing encoded: no record");
    step(&mut s, &begin(f, 0, 1)).unwrap();
    assert!(
        epoch(&s, f) > e,
        "shards of the old epoch are never taken for new ones"
    );
    // Another file gets its own epoch.
    let g = file_with_groups(&mut s, "g", 1);
    step(&mut s, &begin(g, 0, 1)).unwrap();
    assert_ne!(epoch(&s, g), epoch(&s, f));
}

#[test]
fn bad_shards_are_recorded_until_a_repair_moves_them() {
    let mut s = init();
    let f = file_with_groups(&mut s, "f", 2);
    step(&mut s, &begin(f, 0, 2)).unwrap();
    let e = epoch(&s, f);
    let finish = Command::FinishEncode {
        ino: f,
        epoch: e,
        done: done(&[0, 1]),
    };
    step(&mut s, &finish).unwrap();
    let bad = |group, shard| Command::ShardBad {
        ino: f,
        epoch: e,
        group,
        shard,
    };
    step(&mut s, &bad(1, 4)).unwrap();
    step(&mut s, &bad(0, 4)).unwrap();
    assert_eq!(step(&mut s, &bad(0, 6)), Err(FsError::Invalid));
    assert_eq!(step(&mut s, &bad(5, 0)), Err(FsError::Invalid));
    let damaged: Vec<_> = s.stripes[&f].damaged().collect();
    assert_eq!(damaged, vec![(0, 1 << 4), (1, 1 << 4)]);
    let moved = |ds| Command::ShardMoved {
        ino: f,
        epoch: e,
        shard: 4,
        ds,
    };
    // Not onto a server that holds another shard of the file.
    assert_eq!(step(&mut s, &moved(11)), Err(FsError::Invalid));
    step(&mut s, &moved(21)).unwrap();
    assert_eq!(s.stripes[&f].placement[4], 21);
    assert_eq!(s.stripes[&f].damaged().count(), 0);
}

#[test]
fn only_the_server_records_encodings_and_a_freed_file_drops_its_record() {
    let mut s = init();
    let f = file_with_groups(&mut s, "f", 1);
    let as_user = Command::As {
        cred: perm::Cred {
            uid: 0,
            gid: 0,
            groups: vec![],
        },
        cmd: Box::new(begin(f, 0, 1)),
    };
    assert_eq!(step(&mut s, &as_user), Err(FsError::Invalid));
    step(&mut s, &begin(f, 0, 1)).unwrap();
    step(
        &mut s,
        &Command::Unlink {
            parent: ROOT_INO,
            name: b"f".to_vec(),
            child: f,
            time: t(9),
        },
    )
    .unwrap();
    step(&mut s, &Command::Forget { ino: f }).unwrap();
    assert!(s.stripes.is_empty());
}

#[test]
fn the_record_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let (f, want) = {
        let ns = open(&rt, dir.path());
        rt.block_on(async {
            let f = mk(&ns, ROOT_INO, "f", FileKind::Regular).await;
            ns.execute(Command::SetMirrors {
                ino: f,
                chunk: 0,
                mirrors: vec![11, 12],
            })
            .await
            .unwrap();
            ns.execute(begin(f, 0, 1)).await.unwrap();
            let e = ns.stripes(f).unwrap().unwrap().epoch;
            ns.execute(Command::FinishEncode {
                ino: f,
                epoch: e,
                done: done(&[0]),
            })
            .await
            .unwrap();
            (f, ns.stripes(f).unwrap().unwrap())
        })
    };
    let ns = open(&rt, dir.path());
    assert_eq!(ns.stripes(f).unwrap(), Some(want));
    assert!(ns.chunks(f).unwrap().is_empty());
}
