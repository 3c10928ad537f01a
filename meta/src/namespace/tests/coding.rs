//! The erasure-coding record (`coding`): a file moves from mirrored to encoded only through a
//! finished encode that covers it exactly, goes back to mirrors when its mirrors are set again,
//! nothing on a data server is forgotten before it is deleted, and the record survives a
//! restart.

use super::*;

const PLACE: [u64; 6] = [11, 12, 13, 14, 15, 16];
const GROUP: u64 = 16 << 20;

/// A mirrored file of `groups` whole groups.
fn mirrored_file(s: &mut MemState, name: &str, groups: u64) -> u64 {
    let f = made(s, create(ROOT_INO, name, FileKind::Regular));
    let w = Command::Write {
        ino: f,
        end_offset: groups * GROUP,
        time: t(3),
        writes: 1,
    };
    step(s, &w).unwrap();
    let m = Command::SetMirrors {
        ino: f,
        chunk: 0,
        mirrors: vec![11, 12],
    };
    step(s, &m).unwrap();
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
            len: GROUP,
            sums: vec![[*g as u8; 32]; 6],
        })
        .collect()
}

fn finish(ino: u64, epoch: u64, groups: &[u64]) -> Command {
    Command::FinishEncode {
        ino,
        epoch,
        done: done(groups),
    }
}

fn epoch(s: &MemState, ino: u64) -> u64 {
    s.stripes[&ino].epoch
}

#[test]
fn a_file_is_encoded_only_by_an_encode_that_covers_it_exactly() {
    let mut s = init();
    let f = mirrored_file(&mut s, "f", 2);
    // Whole files only; geometry and placement are checked; a file never placed has nothing.
    assert_eq!(step(&mut s, &begin(f, 1, 2)), Err(FsError::Invalid));
    let mut bad = begin(f, 0, 2);
    if let Command::BeginEncode { placement, .. } = &mut bad {
        placement[1] = 11;
    }
    assert_eq!(step(&mut s, &bad), Err(FsError::Invalid));
    let empty = made(&mut s, create(ROOT_INO, "empty", FileKind::Regular));
    assert_eq!(step(&mut s, &begin(empty, 0, 1)), Err(FsError::Invalid));
    step(&mut s, &begin(f, 0, 2)).unwrap();
    let e = epoch(&s, f);
    assert!(e >= 1);
    // While encoding, the mirrors are still the record of the data, and no second encode.
    assert_eq!(s.chunks(f).unwrap(), vec![(0, vec![11, 12])]);
    assert!(!s.stripes[&f].is_encoded());
    assert!(matches!(
        step(&mut s, &begin(f, 0, 2)),
        Err(FsError::Unavailable(_))
    ));
    // Another epoch, a group missing, outside the range or twice, too few sums, or lengths
    // that do not add up to the file's size: refused.
    assert_eq!(
        step(&mut s, &finish(f, e + 1, &[0, 1])),
        Err(FsError::Invalid)
    );
    assert_eq!(step(&mut s, &finish(f, e, &[0])), Err(FsError::Invalid));
    assert_eq!(step(&mut s, &finish(f, e, &[0, 2])), Err(FsError::Invalid));
    assert_eq!(step(&mut s, &finish(f, e, &[0, 0])), Err(FsError::Invalid));
    let mut short = done(&[0, 1]);
    short[1].sums.pop();
    let cmd = Command::FinishEncode {
        ino: f,
        epoch: e,
        done: short,
    };
    assert_eq!(step(&mut s, &cmd), Err(FsError::Invalid));
    let mut long = done(&[0, 1]);
    long[1].len += 1;
    let cmd = Command::FinishEncode {
        ino: f,
        epoch: e,
        done: long,
    };
    assert_eq!(step(&mut s, &cmd), Err(FsError::Invalid));
    step(&mut s, &finish(f, e, &[0, 1])).unwrap();
    let code = &s.stripes[&f];
    assert!(code.is_encoded());
    assert_eq!(code.file_len(), 2 * GROUP);
    assert!(code.encoding.is_none());
    assert!(
        s.chunks(f).unwrap().is_empty(),
        "the mirrors no longer count"
    );
    assert_eq!(
        code.stale_copies,
        vec![11, 12],
        "but their copies are to delete"
    );
    // 32 MiB as 4+2 with 1 MiB units: 1.5x.
    assert_eq!(code.stored_bytes(), 48 << 20);
    assert_eq!(
        step(
            &mut s,
            &Command::CopiesTrimmed {
                ino: f,
                epoch: e + 1
            }
        ),
        Err(FsError::Invalid)
    );
    step(&mut s, &Command::CopiesTrimmed { ino: f, epoch: e }).unwrap();
    assert!(s.stripes[&f].stale_copies.is_empty());
    assert!(s.stripes[&f].is_encoded());
}

#[test]
fn a_given_up_encode_leaves_mirrors_and_its_shards_to_drop() {
    let mut s = init();
    let f = mirrored_file(&mut s, "f", 1);
    step(&mut s, &begin(f, 0, 1)).unwrap();
    let e = epoch(&s, f);
    step(&mut s, &Command::AbortEncode { ino: f, epoch: e }).unwrap();
    assert_eq!(s.chunks(f).unwrap(), vec![(0, vec![11, 12])]);
    assert!(s.stripes[&f].retired);
    assert_eq!(step(&mut s, &finish(f, e, &[0])), Err(FsError::Invalid));
    // No new encode before the old shards are gone.
    assert!(matches!(
        step(&mut s, &begin(f, 0, 1)),
        Err(FsError::Unavailable(_))
    ));
    step(&mut s, &Command::ShardsDropped { ino: f, epoch: e }).unwrap();
    assert!(!s.stripes.contains_key(&f));
    step(&mut s, &begin(f, 0, 1)).unwrap();
    assert!(epoch(&s, f) > e);
}

#[test]
fn a_file_whose_mirrors_are_set_again_is_no_longer_encoded_and_gets_a_new_epoch() {
    let mut s = init();
    let f = mirrored_file(&mut s, "f", 2);
    step(&mut s, &begin(f, 0, 2)).unwrap();
    let e = epoch(&s, f);
    step(&mut s, &finish(f, e, &[0, 1])).unwrap();
    // A finished encode's shards can only be dropped once the encoding is retired.
    assert_eq!(
        step(&mut s, &Command::ShardsDropped { ino: f, epoch: e }),
        Err(FsError::Invalid)
    );
    let m = Command::SetMirrors {
        ino: f,
        chunk: 0,
        mirrors: vec![13, 14],
    };
    step(&mut s, &m).unwrap();
    let code = &s.stripes[&f];
    assert!(code.retired && !code.is_encoded());
    assert!(
        code.stale_copies.is_empty(),
        "the new mirrors are no copies to delete"
    );
    // Mirrors set during an encode retire it too: its result is refused.
    step(&mut s, &Command::ShardsDropped { ino: f, epoch: e }).unwrap();
    step(&mut s, &begin(f, 0, 2)).unwrap();
    let e2 = epoch(&s, f);
    assert!(
        e2 > e,
        "shards of the old epoch are never taken for new ones"
    );
    step(&mut s, &m).unwrap();
    assert_eq!(step(&mut s, &finish(f, e2, &[0, 1])), Err(FsError::Invalid));
    // Another file gets its own epoch.
    step(&mut s, &Command::ShardsDropped { ino: f, epoch: e2 }).unwrap();
    let g = mirrored_file(&mut s, "g", 1);
    step(&mut s, &begin(g, 0, 1)).unwrap();
    assert_ne!(epoch(&s, g), e2);
}

#[test]
fn bad_shards_are_recorded_until_a_repair_moves_them() {
    let mut s = init();
    let f = mirrored_file(&mut s, "f", 2);
    step(&mut s, &begin(f, 0, 2)).unwrap();
    let e = epoch(&s, f);
    step(&mut s, &finish(f, e, &[0, 1])).unwrap();
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
    let f = mirrored_file(&mut s, "f", 1);
    for cmd in [
        begin(f, 0, 1),
        Command::CopiesTrimmed { ino: f, epoch: 1 },
        Command::ShardsDropped { ino: f, epoch: 1 },
    ] {
        let as_user = Command::As {
            cred: perm::Cred {
                uid: 0,
                gid: 0,
                groups: vec![],
            },
            cmd: Box::new(cmd),
        };
        assert_eq!(step(&mut s, &as_user), Err(FsError::Invalid));
    }
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
    // The orphan keeps the record: its shards are removed with its data, before `Forget`.
    assert!(s.stripes.contains_key(&f));
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
            ns.execute(Command::Write {
                ino: f,
                end_offset: GROUP,
                time: t(3),
                writes: 1,
            })
            .await
            .unwrap();
            ns.execute(Command::SetMirrors {
                ino: f,
                chunk: 0,
                mirrors: vec![11, 12],
            })
            .await
            .unwrap();
            ns.execute(begin(f, 0, 1)).await.unwrap();
            let e = ns.stripes(f).unwrap().unwrap().epoch;
            ns.execute(finish(f, e, &[0])).await.unwrap();
            (f, ns.stripes(f).unwrap().unwrap())
        })
    };
    let ns = open(&rt, dir.path());
    assert_eq!(ns.stripes(f).unwrap(), Some(want));
    assert!(ns.chunks(f).unwrap().is_empty());
}
