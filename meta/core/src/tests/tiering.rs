//! The tier's records in the state machine (`tiering`): an upload counts only for the file as
//! it was read, every object it may have written stays accounted for until deleted, and the
//! record outlives its file until then.

use super::*;
use crate::tiering::TierPiece;

fn begin(ino: u64, change: u64, pieces: u64) -> Command {
    Command::TierBegin {
        ino,
        change,
        pieces,
        time: t(10),
        by: 7,
    }
}

fn done(ino: u64, gen: u64, n: u64) -> Command {
    Command::TierDone {
        ino,
        gen,
        pieces: (0..n)
            .map(|i| TierPiece {
                len: 100 + i,
                sum: [i as u8; 32],
            })
            .collect(),
        time: t(20),
    }
}

fn write(ino: u64) -> Command {
    Command::Write {
        ino,
        end_offset: 4096,
        time: t(15),
        writes: 1,
    }
}

fn gen_of(s: &MemState, ino: u64) -> u64 {
    s.tier[&ino].upload.expect("an upload under way").gen
}

#[test]
fn an_upload_of_an_unchanged_file_counts_and_replaces_the_copy_before_it() {
    let mut s = init();
    let f = made(&mut s, create(ROOT_INO, "f", FileKind::Regular));
    step(&mut s, &write(f)).unwrap();
    let change = s.inodes[&f].change;
    step(&mut s, &begin(f, change, 2)).unwrap();
    let g1 = gen_of(&s, f);
    assert_eq!(s.tier[&f].upload.unwrap().by, 7);
    // One upload at a time.
    assert!(matches!(
        step(&mut s, &begin(f, change, 2)),
        Err(FsError::Unavailable(_))
    ));
    // A piece count that is not the one begun is refused.
    assert_eq!(step(&mut s, &done(f, g1, 1)), Err(FsError::Invalid));
    step(&mut s, &done(f, g1, 2)).unwrap();
    let t1 = &s.tier[&f];
    assert!(t1.is_current(change) && t1.upload.is_none() && t1.doomed.is_empty());
    assert_eq!(t1.copy.as_ref().unwrap().bytes(), 201);

    // Written again: the copy is stale; the next upload's copy dooms the first one's objects.
    step(&mut s, &write(f)).unwrap();
    let change2 = s.inodes[&f].change;
    assert!(!s.tier[&f].is_current(change2));
    step(&mut s, &begin(f, change2, 1)).unwrap();
    let g2 = gen_of(&s, f);
    assert_ne!(g1, g2, "a generation is never reused");
    step(&mut s, &done(f, g2, 1)).unwrap();
    let t2 = &s.tier[&f];
    assert_eq!(t2.copy.as_ref().unwrap().gen, g2);
    assert_eq!(t2.doomed.len(), 1);
    assert_eq!((t2.doomed[0].gen, t2.doomed[0].pieces), (g1, 2));
    assert_eq!(t2.doomed[0].since, t(20));
}

#[test]
fn an_upload_that_raced_a_write_is_doomed_not_counted() {
    let mut s = init();
    let f = made(&mut s, create(ROOT_INO, "f", FileKind::Regular));
    let change = s.inodes[&f].change;
    step(&mut s, &begin(f, change, 3)).unwrap();
    let g = gen_of(&s, f);
    step(&mut s, &write(f)).unwrap();
    // The command succeeds (its record must change) but the copy does not count.
    step(&mut s, &done(f, g, 3)).unwrap();
    let rec = &s.tier[&f];
    assert!(rec.copy.is_none() && rec.upload.is_none());
    assert_eq!((rec.doomed[0].gen, rec.doomed[0].pieces), (g, 3));
    // A begin for a change that is not the file's is refused.
    assert_eq!(step(&mut s, &begin(f, change, 1)), Err(FsError::Changed));
}

#[test]
fn a_removed_files_objects_stay_accounted_for_until_deleted() {
    let mut s = init();
    let f = made(&mut s, create(ROOT_INO, "f", FileKind::Regular));
    let change = s.inodes[&f].change;
    step(&mut s, &begin(f, change, 1)).unwrap();
    let g1 = gen_of(&s, f);
    step(&mut s, &done(f, g1, 1)).unwrap();
    step(&mut s, &write(f)).unwrap();
    let change2 = s.inodes[&f].change;
    step(&mut s, &begin(f, change2, 2)).unwrap();
    let g2 = gen_of(&s, f);
    // Not while the inode is there (an orphan may be open and read).
    assert_eq!(
        step(
            &mut s,
            &Command::TierDoom {
                ino: f,
                time: t(30)
            }
        ),
        Err(FsError::Invalid)
    );
    step(
        &mut s,
        &Command::Unlink {
            parent: ROOT_INO,
            name: b"f".to_vec(),
            child: f,
            time: t(25),
        },
    )
    .unwrap();
    step(&mut s, &Command::Forget { ino: f }).unwrap();
    assert!(!s.inodes.contains_key(&f));
    assert!(s.tier.contains_key(&f), "the record outlives its file");
    // The upload under way ends against a file that is gone: doomed.
    step(&mut s, &done(f, g2, 2)).unwrap();
    assert!(s.tier[&f].upload.is_none());
    step(
        &mut s,
        &Command::TierDoom {
            ino: f,
            time: t(30),
        },
    )
    .unwrap();
    let mut doomed: Vec<(u64, u64)> = s.tier[&f]
        .doomed
        .iter()
        .map(|d| (d.gen, d.pieces))
        .collect();
    doomed.sort_unstable();
    assert_eq!(doomed, vec![(g1, 1), (g2, 2)]);
    step(&mut s, &Command::TierDeleted { ino: f, gen: g1 }).unwrap();
    assert!(s.tier.contains_key(&f));
    step(&mut s, &Command::TierDeleted { ino: f, gen: g2 }).unwrap();
    assert!(
        !s.tier.contains_key(&f),
        "the record goes with its last objects"
    );
}

#[test]
fn an_abandoned_upload_is_doomed_and_only_the_server_may_send_tier_commands() {
    let mut s = init();
    let f = made(&mut s, create(ROOT_INO, "f", FileKind::Regular));
    let change = s.inodes[&f].change;
    step(&mut s, &begin(f, change, 4)).unwrap();
    let g = gen_of(&s, f);
    // An abort of another generation is not this upload's.
    assert!(step(
        &mut s,
        &Command::TierAbort {
            ino: f,
            gen: g + 1,
            time: t(12)
        }
    )
    .is_err());
    step(
        &mut s,
        &Command::TierAbort {
            ino: f,
            gen: g,
            time: t(12),
        },
    )
    .unwrap();
    let rec = &s.tier[&f];
    assert!(rec.upload.is_none());
    let d = rec.doomed[0];
    assert_eq!((d.gen, d.pieces, d.since), (g, 4, t(12)));
    let as_client = Command::As {
        cred: crate::perm::Cred::root(),
        cmd: Box::new(Command::TierDeleted { ino: f, gen: g }),
    };
    assert_eq!(step(&mut s, &as_client), Err(FsError::Invalid));
}

fn chmod(ino: u64) -> Command {
    Command::SetAttr {
        ino,
        mode: Some(0o600),
        uid: None,
        gid: None,
        size: None,
        atime: None,
        mtime: None,
        time: t(30),
    }
}

#[test]
fn only_a_current_copy_is_evicted_and_its_bytes_stay_the_files_until_restored() {
    let mut s = init();
    let f = made(&mut s, create(ROOT_INO, "f", FileKind::Regular));
    step(&mut s, &write(f)).unwrap();
    let change = s.inodes[&f].change;
    let evict = |gen, change| Command::TierEvict {
        ino: f,
        gen,
        change,
    };
    // Nothing in the bucket yet: flash holds the only copy.
    assert_eq!(step(&mut s, &evict(1, change)), Err(FsError::Changed));
    step(&mut s, &begin(f, change, 1)).unwrap();
    let g = gen_of(&s, f);
    // Under way is not confirmed.
    assert_eq!(step(&mut s, &evict(g, change)), Err(FsError::Changed));
    step(&mut s, &done(f, g, 1)).unwrap();
    // A copy of another change, or another generation, is not the file's bytes.
    assert_eq!(step(&mut s, &evict(g, change + 1)), Err(FsError::Changed));
    assert_eq!(step(&mut s, &evict(g + 1, change)), Err(FsError::Changed));
    // Wanting a file that is on flash is nothing.
    step(&mut s, &Command::TierWant { ino: f }).unwrap();
    assert!(!s.tier[&f].wanted);
    step(&mut s, &evict(g, change)).unwrap();
    assert!(s.tier[&f].evicted);
    assert_eq!(step(&mut s, &evict(g, change)), Err(FsError::Changed));

    // A change of attributes only: the copy is still the file's bytes; no upload starts.
    step(&mut s, &chmod(f)).unwrap();
    let change2 = s.inodes[&f].change;
    assert_ne!(change, change2);
    assert!(s.tier[&f].is_current(change2));
    assert_eq!(step(&mut s, &begin(f, change2, 1)), Err(FsError::Changed));

    step(&mut s, &Command::TierWant { ino: f }).unwrap();
    assert!(s.tier[&f].wanted);
    // Restored under another generation: refused.
    assert_eq!(
        step(&mut s, &Command::TierRestored { ino: f, gen: g + 1 }),
        Err(FsError::Changed)
    );
    step(&mut s, &Command::TierRestored { ino: f, gen: g }).unwrap();
    let t = &s.tier[&f];
    assert!(!t.evicted && !t.wanted);
    // On flash again, the copy counts for the file as it is now.
    assert_eq!(t.copy.as_ref().unwrap().change, change2);
    assert!(t.is_current(change2));
    assert_eq!(
        step(&mut s, &Command::TierRestored { ino: f, gen: g }),
        Err(FsError::Changed)
    );
    // Only the server evicts.
    let as_client = Command::As {
        cred: crate::perm::Cred::root(),
        cmd: Box::new(evict(g, change2)),
    };
    assert_eq!(step(&mut s, &as_client), Err(FsError::Invalid));
}

#[test]
fn an_encode_and_an_eviction_of_one_file_never_overlap() {
    let mut s = init();
    let f = made(&mut s, create(ROOT_INO, "f", FileKind::Regular));
    step(&mut s, &write(f)).unwrap();
    step(
        &mut s,
        &Command::SetMirrors {
            ino: f,
            chunk: 0,
            mirrors: vec![1, 2],
        },
    )
    .unwrap();
    let change = s.inodes[&f].change;
    step(&mut s, &begin(f, change, 1)).unwrap();
    let g = gen_of(&s, f);
    step(&mut s, &done(f, g, 1)).unwrap();
    let encode = Command::BeginEncode {
        ino: f,
        first: 0,
        end: 1,
        k: 2,
        m: 1,
        unit_shift: 16,
        placement: vec![1, 2, 3],
        time: t(40),
    };
    let evict = Command::TierEvict {
        ino: f,
        gen: g,
        change,
    };
    // An encode under way reads the mirrors eviction would empty.
    step(&mut s, &encode).unwrap();
    assert_eq!(step(&mut s, &evict), Err(FsError::Changed));
    let epoch = s.stripes[&f].epoch;
    step(&mut s, &Command::AbortEncode { ino: f, epoch }).unwrap();
    step(&mut s, &Command::ShardsDropped { ino: f, epoch }).unwrap();
    // Evicted, the file is not encoded: its mirrors hold nothing to code.
    step(&mut s, &evict).unwrap();
    assert_eq!(step(&mut s, &encode), Err(FsError::Changed));
    assert!(!s.stripes.contains_key(&f));
}
