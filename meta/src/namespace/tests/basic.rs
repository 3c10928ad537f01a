use super::*;

#[test]
fn fresh_store_has_root_and_counts_boots() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let (fs_id, boots) = {
        let ns = open(&rt, dir.path());
        let root = ns.getattr(ROOT_INO).unwrap();
        assert_eq!(root.kind, FileKind::Directory);
        assert_eq!(
            (root.mode, root.uid, root.gid, root.nlink, root.parent),
            (0o755, 0, 0, 2, ROOT_INO)
        );
        assert_ne!(ns.fs_id(), 0);
        (ns.fs_id(), ns.boot_count())
    };
    let ns = open(&rt, dir.path());
    assert_eq!(ns.fs_id(), fs_id);
    assert_eq!(ns.boot_count(), boots + 1);
    assert_eq!(ns.statfs().unwrap().files, 1);
}

#[test]
fn create_lookup_readdir_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    {
        let ns = open(&rt, dir.path());
        rt.block_on(async {
            let d = mk(&ns, ROOT_INO, "d", FileKind::Directory).await;
            for i in 0..10 {
                let out = ns
                    .execute(create(d, &format!("f{i}"), FileKind::Regular))
                    .await
                    .unwrap();
                assert!(out.created);
                let dc = out.dir.unwrap();
                assert!(dc.after > dc.before);
            }
            let w = ns.lookup(d, b"f3").unwrap();
            let out = ns
                .execute(Command::Write {
                    ino: w.ino,
                    end_offset: 4096,
                    time: t(100),
                    writes: 1,
                })
                .await
                .unwrap();
            assert_eq!(out.inode.unwrap().size, 4096);
        });
    }
    let ns = open(&rt, dir.path());
    let d = ns.lookup(ROOT_INO, b"d").unwrap();
    assert_eq!(d.parent, ROOT_INO);
    assert_eq!(ns.getattr(ROOT_INO).unwrap().nlink, 3);
    let (ents, eof) = ns.readdir(d.ino, 0, 100).unwrap();
    assert!(eof);
    assert_eq!(ents.len(), 10);
    assert!(ents.iter().all(|e| e.cookie >= FIRST_COOKIE));
    assert_eq!(ns.resolve(b"/d/f3").unwrap().size, 4096);
    assert_eq!(
        ns.statfs().unwrap(),
        StatFs {
            files: 12,
            bytes: 4096
        }
    );
    // New inode numbers never collide with applied ones after a restart.
    let next = rt.block_on(mk(&ns, ROOT_INO, "after-restart", FileKind::Regular));
    assert!(next > ents.iter().map(|e| e.ino).max().unwrap());
    // Paging with a cookie.
    let (p1, eof1) = ns.readdir(d.ino, 0, 4).unwrap();
    assert!(!eof1);
    let (p2, _) = ns.readdir(d.ino, p1[3].cookie, 100).unwrap();
    assert_eq!(p1.len() + p2.len(), 10);
    assert_eq!(ns.readdir(d.ino, 1_000_000, 10), Err(FsError::Invalid));
}

#[test]
fn create_modes() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let ns = open(&rt, dir.path());
    rt.block_on(async {
        let mut c = create(ROOT_INO, "x", FileKind::Regular);
        if let Command::Create { how, .. } = &mut c {
            *how = CreateHow::Exclusive([7; 8]);
        }
        let first = ns.execute(c.clone()).await.unwrap();
        assert!(first.created);
        let ino = first.inode.unwrap().ino;
        // Retransmission with the same verifier succeeds without creating.
        let again = ns.execute(c.clone()).await.unwrap();
        assert!(!again.created);
        assert_eq!(again.inode.unwrap().ino, ino);
        if let Command::Create { how, .. } = &mut c {
            *how = CreateHow::Exclusive([8; 8]);
        }
        assert_eq!(ns.execute(c.clone()).await, Err(FsError::Exists));
        if let Command::Create { how, .. } = &mut c {
            *how = CreateHow::Unchecked;
        }
        assert!(!ns.execute(c.clone()).await.unwrap().created);
        if let Command::Create { how, .. } = &mut c {
            *how = CreateHow::Guarded;
        }
        assert_eq!(ns.execute(c).await, Err(FsError::Exists));
        for bad in [&b""[..], b"a/b", b"a\0b", &[b'x'; 256]] {
            let mut c = create(ROOT_INO, "y", FileKind::Regular);
            if let Command::Create { name, .. } = &mut c {
                *name = bad.to_vec();
            }
            let e = ns.execute(c).await.unwrap_err();
            assert!(
                matches!(e, FsError::Invalid | FsError::NameTooLong),
                "{e:?}"
            );
        }
        // A failed command leaves nothing behind.
        assert_eq!(ns.readdir(ROOT_INO, 0, 10).unwrap().0.len(), 1);
        let e = ns
            .execute(create(ino, "under-a-file", FileKind::Regular))
            .await;
        assert_eq!(e, Err(FsError::NotDir));
        let e = ns.execute(create(999_999, "z", FileKind::Regular)).await;
        assert_eq!(e, Err(FsError::Stale(999_999)));
    });
}

#[test]
fn unlink_keeps_orphan_until_forget() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let ns = open(&rt, dir.path());
    rt.block_on(async {
        let f = mk(&ns, ROOT_INO, "f", FileKind::Regular).await;
        ns.execute(Command::Link {
            ino: f,
            parent: ROOT_INO,
            name: b"g".to_vec(),
            time: t(5),
        })
        .await
        .unwrap();
        ns.execute(Command::Write {
            ino: f,
            end_offset: 10,
            time: t(6),
            writes: 1,
        })
        .await
        .unwrap();
        let out = ns
            .execute(Command::Unlink {
                parent: ROOT_INO,
                name: b"f".to_vec(),
                child: f,
                time: t(7),
            })
            .await
            .unwrap();
        assert_eq!(out.effects, vec![]);
        assert_eq!(out.inode.unwrap().nlink, 1);
        let out = ns
            .execute(Command::Remove {
                parent: ROOT_INO,
                name: b"g".to_vec(),
                child: f,
                time: t(8),
            })
            .await
            .unwrap();
        assert_eq!(out.effects, vec![Effect::Orphaned(f)]);
        assert_eq!(ns.getattr(f).unwrap().nlink, 0);
        assert_eq!(ns.orphans().unwrap(), vec![f]);
        assert_eq!(
            ns.statfs().unwrap(),
            StatFs {
                files: 2,
                bytes: 10
            }
        );
        // Still writable while open.
        ns.execute(Command::Write {
            ino: f,
            end_offset: 20,
            time: t(9),
            writes: 1,
        })
        .await
        .unwrap();
        let out = ns.execute(Command::Forget { ino: f }).await.unwrap();
        assert_eq!(out.effects, vec![Effect::Freed(f)]);
        assert_eq!(ns.getattr(f), Err(FsError::Stale(f)));
        assert!(ns.orphans().unwrap().is_empty());
        assert_eq!(ns.statfs().unwrap(), StatFs { files: 1, bytes: 0 });
    });
}

/// The reaper's batch: orphans go, a file that still has a link and an inode that is already
/// gone are skipped without failing the others.
#[test]
fn forget_orphans_skips_what_is_not_an_orphan() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let ns = open(&rt, dir.path());
    rt.block_on(async {
        let a = mk(&ns, ROOT_INO, "a", FileKind::Regular).await;
        let b = mk(&ns, ROOT_INO, "b", FileKind::Regular).await;
        let kept = mk(&ns, ROOT_INO, "kept", FileKind::Regular).await;
        for (name, child) in [("a", a), ("b", b)] {
            ns.execute(Command::Remove {
                parent: ROOT_INO,
                name: name.as_bytes().to_vec(),
                child,
                time: t(3),
            })
            .await
            .unwrap();
        }
        ns.execute(Command::Forget { ino: b }).await.unwrap();
        assert_eq!(ns.orphans().unwrap(), vec![a]);
        assert_eq!(ns.statfs().unwrap().files, 3);
        ns.execute(Command::ForgetOrphans {
            inos: vec![kept, a, b, 999_999],
        })
        .await
        .unwrap();
        assert_eq!(ns.getattr(a), Err(FsError::Stale(a)));
        assert!(ns.orphans().unwrap().is_empty());
        assert_eq!(ns.getattr(kept).unwrap().nlink, 1);
        assert_eq!(ns.statfs().unwrap().files, 2);
    });
    // Replayed from the log after a restart, the same command leaves the same state.
    drop(ns);
    let ns = open(&rt, dir.path());
    assert_eq!(ns.statfs().unwrap().files, 2);
    assert!(ns.orphans().unwrap().is_empty());
}

/// Every command is durable when `execute` returns: applied means committed means in the log
/// and fdatasynced, so each of a run of commands made one at a time costs one fdatasync.
#[test]
fn each_command_is_durable_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let ns = open(&rt, dir.path());
    rt.block_on(async {
        let f = mk(&ns, ROOT_INO, "f", FileKind::Regular).await;
        let before = ns.stats();
        for i in 1..=50u64 {
            ns.execute(Command::Write {
                ino: f,
                end_offset: i * 100,
                time: t(i as i64),
                writes: 1,
            })
            .await
            .unwrap();
            assert_eq!(ns.getattr(f).unwrap().size, i * 100);
        }
        let after = ns.stats();
        assert_eq!(after.commands - before.commands, 50);
        assert!(
            after.durable_commits - before.durable_commits >= 50,
            "each command waited for its fdatasync"
        );
    });
    drop(ns);
    let ns = open(&rt, dir.path());
    assert_eq!(ns.resolve(b"f").unwrap().size, 5000);
}

/// UNSTABLE writes: reads see them at once, the log gets nothing per WRITE, and one command
/// records them all, ahead of the next command about the file or when the data is committed.
#[test]
fn unstable_writes_are_seen_at_once_and_recorded_by_one_command() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let ns = open(&rt, dir.path());
    let f = rt.block_on(async {
        let f = mk(&ns, ROOT_INO, "f", FileKind::Regular).await;
        let g = mk(&ns, ROOT_INO, "g", FileKind::Regular).await;
        let before = ns.stats();
        let change = ns.getattr(f).unwrap().change;
        for i in 1..=50u64 {
            ns.note_write(f, i * 100, t(i as i64), None, 0);
            let now = ns.getattr(f).unwrap();
            assert_eq!((now.size, now.change), (i * 100, change + i));
        }
        ns.note_write(g, 7, t(1), None, 0);
        assert_eq!(
            ns.stats().commands,
            before.commands,
            "nothing logged per WRITE"
        );
        // A command about the file applies to it with its writes.
        let out = ns
            .execute(Command::SetAttr {
                ino: f,
                mode: Some(0o600),
                uid: None,
                gid: None,
                size: None,
                atime: None,
                mtime: None,
                time: t(60),
            })
            .await
            .unwrap();
        let i = out.inode.unwrap();
        assert_eq!(i.size, 5000);
        assert!(i.change > change + 50, "change never goes back");
        assert_eq!(ns.stats().commands, before.commands + 2);
        // COMMIT's path: one durable command for g's writes; nothing left to record for f.
        assert!(ns.record_writes(g).await.unwrap().is_some());
        assert!(ns.record_writes(f).await.unwrap().is_none());
        f
    });
    drop(ns);
    let ns = open(&rt, dir.path());
    assert_eq!(ns.getattr(f).unwrap().size, 5000);
    assert_eq!(ns.resolve(b"g").unwrap().size, 7);
}

#[test]
fn setattr_rules() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let ns = open(&rt, dir.path());
    rt.block_on(async {
        let f = mk(&ns, ROOT_INO, "f", FileKind::Regular).await;
        let s = |ino, mode, size, atime| Command::SetAttr {
            ino,
            mode,
            uid: Some(5),
            gid: None,
            size,
            atime,
            mtime: None,
            time: t(50),
        };
        let before = ns.getattr(f).unwrap();
        let out = ns
            .execute(s(f, Some(0o4711), Some(123), Some(SetTime::At(t(3)))))
            .await
            .unwrap();
        let i = out.inode.unwrap();
        assert_eq!((i.mode, i.uid, i.gid, i.size), (0o4711, 5, 1000, 123));
        assert_eq!((i.atime, i.mtime, i.ctime), (t(3), t(50), t(50)));
        assert!(i.change > before.change);
        assert_eq!(
            ns.execute(s(f, Some(0o10000), None, None)).await,
            Err(FsError::Invalid)
        );
        assert_eq!(
            ns.execute(s(ROOT_INO, None, Some(0), None)).await,
            Err(FsError::IsDir)
        );
        assert_eq!(ns.statfs().unwrap().bytes, 123);
    });
}

/// A snapshot is a checkpoint, and the log behind it goes (but for what is kept for replicas
/// that fell a little behind); the state survives a reopen from the checkpoint alone.
#[test]
fn compaction_purges_the_log_behind_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let ns = open(&rt, dir.path());
    rt.block_on(async {
        for i in 0..50 {
            mk(&ns, ROOT_INO, &format!("f{i}"), FileKind::Regular).await;
        }
    });
    let applied = ns.snapshot().unwrap().applied_index().unwrap();
    assert!(applied >= 51, "root, 50 creates and raft's own entries");
    assert!(ns.log_entries(ShardId(0), 0).unwrap().len() >= 51);
    rt.block_on(ns.compact(0)).unwrap();
    assert!(
        ns.log_entries(ShardId(0), 0).unwrap().is_empty(),
        "keeping nothing behind the snapshot purges every entry"
    );
    assert_eq!(ns.snapshot().unwrap().applied_index().unwrap(), applied);
    drop(ns);
    let ns = open(&rt, dir.path());
    assert_eq!(ns.readdir(ROOT_INO, 0, 100).unwrap().0.len(), 50);
    assert_eq!(ns.statfs().unwrap().files, 51);
}

#[test]
fn chunk_mirrors_are_recorded_survive_reopen_and_go_with_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let f = {
        let ns = open(&rt, dir.path());
        rt.block_on(async {
            let f = mk(&ns, ROOT_INO, "f", FileKind::Regular).await;
            let d = mk(&ns, ROOT_INO, "d", FileKind::Directory).await;
            for (chunk, mirrors) in [(0u64, vec![7u64, 9]), (3, vec![9, 8])] {
                ns.execute(Command::SetMirrors {
                    ino: f,
                    chunk,
                    mirrors,
                })
                .await
                .unwrap();
            }
            // Only regular files have chunks.
            let r = ns
                .execute(Command::SetMirrors {
                    ino: d,
                    chunk: 0,
                    mirrors: vec![1],
                })
                .await;
            assert_eq!(r, Err(FsError::Invalid));
            // A replacement goes in only over the record it was decided from.
            let replace = |expect: Vec<u64>, mirrors: Vec<u64>| Command::ReplaceMirrors {
                ino: f,
                chunk: 3,
                expect,
                mirrors,
            };
            for stale in [vec![], vec![9], vec![8, 9], vec![9, 8, 7]] {
                let r = ns.execute(replace(stale, vec![1])).await;
                assert_eq!(r, Err(FsError::Changed));
            }
            assert_eq!(ns.chunk(f, 3).unwrap(), Some(vec![9, 8]));
            let r = ns.execute(Command::ReplaceMirrors {
                ino: f,
                chunk: 5,
                expect: vec![9],
                mirrors: vec![1],
            });
            assert_eq!(r.await, Err(FsError::Changed), "no record is not [9]");
            // Losing a mirror rewrites the record.
            ns.execute(replace(vec![9, 8], vec![8])).await.unwrap();
            f
        })
    };
    let ns = open(&rt, dir.path());
    assert_eq!(ns.chunks(f).unwrap(), vec![(0, vec![7, 9]), (3, vec![8])]);
    assert_eq!(ns.chunk(f, 3).unwrap(), Some(vec![8]));
    assert_eq!(ns.chunk(f, 1).unwrap(), None);
    rt.block_on(async {
        ns.execute(Command::Remove {
            parent: ROOT_INO,
            name: b"f".to_vec(),
            child: f,
            time: t(8),
        })
        .await
        .unwrap();
        ns.execute(Command::Forget { ino: f }).await.unwrap();
    });
    assert!(ns.chunks(f).unwrap().is_empty());
}

/// The table of recent results (`raft::sessions`) is part of the replicated state: a checkpoint
/// holds it, so a replica restarted from its checkpoint decides about a resent command as its
/// peers do.
#[test]
fn recent_results_are_checkpointed() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let before = {
        let ns = open(&rt, dir.path());
        rt.block_on(async {
            mk(&ns, ROOT_INO, "d", FileKind::Directory).await;
            ns.checkpoint().await.unwrap();
        });
        let s = ns.inner.cores[&0].live.read().unwrap().sessions.clone();
        assert!(s.kept() > 0, "the last command's result is kept");
        s
    };
    let db = redb::Database::create(dir.path().join(DB_FILE)).unwrap();
    let txn = db.begin_read().unwrap();
    let loaded = store::load_shards(&txn, &[ShardId(0)]).unwrap();
    assert_eq!(loaded[&ShardId(0)].0.sessions, before);
}
