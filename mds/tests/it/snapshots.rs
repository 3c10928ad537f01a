//! Snapshots over NFS (issue 48, `docs/plans/snapshots.md` §4, plan step 8) against a real
//! server: a snapshot root's `.snapshot` is not listed but is found by LOOKUP; below it the
//! tree reads as it was at the cut after the live tree changed (attributes, names, symlinks,
//! extended attributes, an empty data image's zeros), with its own fsid; every change on a
//! snapshot's handle, current or saved, answers NFS4ERR_ROFS; opens inside a snapshot meet
//! neither the live file's share reservations nor get delegations; handles survive a restart
//! and are stale once the snapshot is deleted. Snapshots are made and deleted through the
//! namespace (no admin route yet).
use crate::common;
use common::*;
use mds::Server;
use proto::nfs4::attr::*;
use proto::nfs4::*;
use proto::rpc::Connection;
use proto::xdr::Opaque;
use std::time::{Duration, Instant};

const NOENT: u32 = 2;
const EXIST: u32 = 17;
const ROFS: u32 = 30;
const STALE: u32 = 70;
const NOTSUPP: u32 = 10004;
const LAYOUTUNAVAILABLE: u32 = 10059;

/// A session on one connection (NFSv4.2, for the xattr operations).
struct S {
    c: Connection,
    sid: Sessionid4,
    seq: u32,
}

impl S {
    async fn new(server: &Server, owner: &str) -> S {
        let c = connect(server).await;
        let (sid, _, _) =
            new_session_minor(&c, owner, 0, vec![CallbackSecParms4::AuthNone], 2).await;
        S { c, sid, seq: 0 }
    }

    async fn run(&mut self, ops: Vec<NfsArgop4>) -> Compound4Res {
        self.seq += 1;
        let mut all = vec![seq(self.sid, self.seq)];
        all.extend(ops);
        compound(&self.c, 2, all).await
    }

    async fn ok(&mut self, ops: Vec<NfsArgop4>) -> Vec<NfsResop4> {
        let r = self.run(ops).await;
        assert_eq!(r.status, 0, "{r:?}");
        r.resarray
    }

    async fn attrs(&mut self, mut ops: Vec<NfsArgop4>, bits: &[u32]) -> FileAttrs {
        ops.push(getattr(bits));
        let r = self.ok(ops).await;
        let Some(NfsResop4::Getattr(GetattrRes::Ok(g))) = r.last() else {
            panic!("{r:?}")
        };
        FileAttrs::decode(&g.obj_attributes).unwrap()
    }

    async fn fh(&mut self, mut ops: Vec<NfsArgop4>) -> NfsFh4 {
        ops.push(NfsArgop4::Getfh);
        let r = self.ok(ops).await;
        let Some(NfsResop4::Getfh(GetfhRes::Ok(g))) = r.last() else {
            panic!("{r:?}")
        };
        g.object.clone()
    }

    async fn names(&mut self, mut ops: Vec<NfsArgop4>) -> Vec<String> {
        ops.push(NfsArgop4::Readdir(ReaddirArgs {
            cookie: 0,
            cookieverf: [0; 8],
            dircount: 4096,
            maxcount: 32768,
            attr_request: Bitmap::from_bits(&[FATTR4_FILEID, FATTR4_FSID, FATTR4_FILEHANDLE])
                .to_vec(),
        }));
        let r = self.ok(ops).await;
        let Some(NfsResop4::Readdir(ReaddirRes::Ok(d))) = r.last() else {
            panic!("{r:?}")
        };
        assert!(d.reply.eof);
        let mut n: Vec<String> = (d.reply.entries.iter())
            .map(|e| String::from_utf8(e.name.as_bytes().to_vec()).unwrap())
            .collect();
        n.sort();
        n
    }

    /// Creates (or truncates) `dir/name` holding `data`.
    async fn write_file(&mut self, dir: &[&str], name: &str, data: &[u8]) {
        // The OPEN's stateid is the current one for the WRITE and the CLOSE.
        let cur = Stateid4 {
            seqid: 1,
            other: [0; 12],
        };
        let mut ops = at(dir);
        ops.push(open_create(name, "writer", Fattr4::default()));
        ops.push(NfsArgop4::Write(WriteArgs {
            stateid: cur,
            offset: 0,
            stable: StableHow4::FileSync4,
            data: Opaque(data.to_vec()),
        }));
        ops.push(NfsArgop4::Close(CloseArgs {
            seqid: 0,
            open_stateid: cur,
        }));
        self.ok(ops).await;
    }

    async fn setxattr(&mut self, path: &[&str], key: &str, value: &[u8]) {
        let mut ops = at(path);
        ops.push(NfsArgop4::Setxattr(SetxattrArgs {
            sxa_option: SetxattrOption4::Either,
            sxa_key: Opaque::from(key),
            sxa_value: Opaque(value.to_vec()),
        }));
        self.ok(ops).await;
    }
}

/// PUTROOTFH, then a LOOKUP per name.
fn at(path: &[&str]) -> Vec<NfsArgop4> {
    let mut ops = vec![NfsArgop4::Putrootfh];
    ops.extend(path.iter().map(|n| lookup(n)));
    ops
}

fn lookup(name: &str) -> NfsArgop4 {
    NfsArgop4::Lookup(LookupArgs {
        objname: Opaque::from(name),
    })
}

fn getattr(bits: &[u32]) -> NfsArgop4 {
    NfsArgop4::Getattr(GetattrArgs {
        attr_request: Bitmap::from_bits(bits).to_vec(),
    })
}

fn putfh(fh: &NfsFh4) -> NfsArgop4 {
    NfsArgop4::Putfh(PutfhArgs { object: fh.clone() })
}

fn symlink(name: &str, target: &str) -> NfsArgop4 {
    NfsArgop4::Create(CreateArgs {
        objtype: Createtype4::Lnk(Opaque::from(target)),
        objname: Opaque::from(name),
        createattrs: Fattr4::default(),
    })
}

fn set_mode(mode: u32) -> NfsArgop4 {
    let a = FileAttrs {
        mode: Some(mode),
        ..Default::default()
    };
    NfsArgop4::Setattr(SetattrArgs {
        stateid: Stateid4::ANONYMOUS,
        obj_attributes: a.encode(&Bitmap::from_bits(&[FATTR4_MODE])),
    })
}

fn remove(name: &str) -> NfsArgop4 {
    NfsArgop4::Remove(RemoveArgs {
        target: Opaque::from(name),
    })
}

fn read(stateid: Stateid4, count: u32) -> NfsArgop4 {
    NfsArgop4::Read(ReadArgs {
        stateid,
        offset: 0,
        count,
    })
}

fn read_data(r: &[NfsResop4]) -> Vec<u8> {
    let Some(NfsResop4::Read(ReadRes::Ok(d))) = r.last() else {
        panic!("{r:?}")
    };
    d.data.as_bytes().to_vec()
}

fn status_of(r: &Compound4Res) -> u32 {
    r.resarray.last().map_or(u32::MAX, |x| x.status())
}

/// The live tree the tests snapshot: `/d` with a file `f` ("old bytes", mode 0644, xattr
/// k=v1), a symlink `l` → `target1`, a file `e` ("12345") and `sub/g`.
async fn make_tree(s: &mut S) -> u64 {
    let mut ops = at(&[]);
    ops.push(mkdir("d"));
    s.ok(ops).await;
    s.write_file(&["d"], "f", b"old bytes").await;
    let mut ops = at(&["d", "f"]);
    ops.push(set_mode(0o644));
    s.ok(ops).await;
    s.setxattr(&["d", "f"], "k", b"v1").await;
    let mut ops = at(&["d"]);
    ops.push(symlink("l", "target1"));
    s.ok(ops).await;
    s.write_file(&["d"], "e", b"12345").await;
    let mut ops = at(&["d"]);
    ops.push(mkdir("sub"));
    s.ok(ops).await;
    s.write_file(&["d", "sub"], "g", b"g").await;
    s.attrs(at(&["d"]), &[FATTR4_FILEID]).await.fileid.unwrap()
}

/// Changes everything `make_tree` made (but `f`'s bytes: the data gate that keeps a
/// snapshot's bytes is not built yet).
async fn change_tree(s: &mut S) {
    let mut ops = at(&["d", "f"]);
    ops.push(set_mode(0o600));
    s.ok(ops).await;
    s.setxattr(&["d", "f"], "k", b"v2").await;
    s.setxattr(&["d", "f"], "k2", b"new").await;
    let mut ops = at(&["d"]);
    ops.push(remove("l"));
    ops.push(symlink("l", "target2"));
    s.ok(ops).await;
    let mut ops = at(&["d", "sub"]);
    ops.push(remove("g"));
    s.ok(ops).await;
    s.write_file(&["d"], "f2", b"born after").await;
}

#[tokio::test]
async fn snapshot_dir_is_hidden_found_by_lookup_and_shows_the_tree_as_it_was() {
    let (server, _dir) = server().await;
    let mut s = S::new(&server, "snap-reader").await;
    let d = make_tree(&mut s).await;
    // No snapshot rooted at d: `.snapshot` is no name there.
    let mut ops = at(&["d"]);
    ops.push(lookup(".snapshot"));
    assert_eq!(status_of(&s.run(ops).await), NOENT);
    let ns = server.namespace();
    let id = ns.create_snapshot(b"s1", d, 3600).await.unwrap();
    let live = s
        .attrs(at(&["d", "f"]), &[FATTR4_FILEID, FATTR4_FSID])
        .await;
    change_tree(&mut s).await;

    // Hidden from the live listing, found by name, and not to be made there.
    assert_eq!(s.names(at(&["d"])).await, ["e", "f", "f2", "l", "sub"]);
    let mut ops = at(&["d"]);
    ops.push(mkdir(".snapshot"));
    assert_eq!(status_of(&s.run(ops).await), EXIST);
    let mut ops = at(&["d"]);
    ops.push(open_create(".snapshot", "w", Fattr4::default()));
    assert_eq!(status_of(&s.run(ops).await), EXIST);
    let mut ops = at(&["d"]);
    ops.extend([
        NfsArgop4::Savefh,
        NfsArgop4::Rename(RenameArgs {
            oldname: Opaque::from("e"),
            newname: Opaque::from(".snapshot"),
        }),
    ]);
    assert_eq!(status_of(&s.run(ops).await), EXIST);
    // Elsewhere it is a name as any other.
    let mut ops = at(&["d", "sub"]);
    ops.push(mkdir(".snapshot"));
    s.ok(ops).await;
    let snapdir = &["d", ".snapshot"][..];
    assert_eq!(s.names(at(snapdir)).await, ["s1"]);
    let sd = s
        .attrs(at(snapdir), &[FATTR4_FILEID, FATTR4_FSID, FATTR4_TYPE])
        .await;
    assert_eq!(sd.fileid, Some(d | 1 << 63));
    assert_eq!(
        sd.fsid, live.fsid,
        "the .snapshot directory is in the live fsid"
    );

    // Below it, the tree as it was.
    let root = &["d", ".snapshot", "s1"][..];
    assert_eq!(s.names(at(root)).await, ["e", "f", "l", "sub"]);
    assert_eq!(s.names(at(&["d", ".snapshot", "s1", "sub"])).await, ["g"]);
    assert_eq!(s.names(at(&["d", "sub"])).await, [".snapshot"]);
    let f = &["d", ".snapshot", "s1", "f"][..];
    let fa = s
        .attrs(
            at(f),
            &[FATTR4_MODE, FATTR4_SIZE, FATTR4_FILEID, FATTR4_FSID],
        )
        .await;
    assert_eq!(fa.mode, Some(0o644));
    assert_eq!(fa.size, Some(9));
    assert_eq!(fa.fileid, live.fileid, "a fileid is the inode number");
    let fsid = fa.fsid.unwrap();
    assert_eq!(fsid.minor, id, "each snapshot is its own file system");
    assert_eq!(fsid.major, live.fsid.unwrap().major);
    let mut ops = at(&["d", ".snapshot", "s1", "l"]);
    ops.push(NfsArgop4::Readlink);
    let r = s.ok(ops).await;
    let Some(NfsResop4::Readlink(ReadlinkRes::Ok(l))) = r.last() else {
        panic!("{r:?}")
    };
    assert_eq!(l.link.as_bytes(), b"target1");
    let mut ops = at(f);
    ops.push(NfsArgop4::Getxattr(GetxattrArgs {
        gxa_name: Opaque::from("k"),
    }));
    let r = s.ok(ops).await;
    let Some(NfsResop4::Getxattr(GetxattrRes::Ok(x))) = r.last() else {
        panic!("{r:?}")
    };
    assert_eq!(x.gxr_value.as_bytes(), b"v1");
    let mut ops = at(f);
    ops.push(NfsArgop4::Listxattrs(ListxattrsArgs {
        lxa_cookie: 0,
        lxa_maxcount: 4096,
    }));
    let r = s.ok(ops).await;
    let Some(NfsResop4::Listxattrs(ListxattrsRes::Ok(x))) = r.last() else {
        panic!("{r:?}")
    };
    assert_eq!(x.lxr_names.len(), 1, "{x:?}");
    // A name made after the cut is not there.
    let mut ops = at(root);
    ops.push(lookup("f2"));
    assert_eq!(status_of(&s.run(ops).await), NOENT);

    // ACCESS never grants a change.
    let mut ops = at(f);
    ops.push(NfsArgop4::Access(AccessArgs {
        access: ACCESS4_READ | ACCESS4_MODIFY | ACCESS4_EXTEND,
    }));
    let r = s.ok(ops).await;
    let Some(NfsResop4::Access(AccessRes::Ok(a))) = r.last() else {
        panic!("{r:?}")
    };
    assert_eq!(a.access, ACCESS4_READ);

    // Bytes of a file with no data image are the live file's (unchanged since the cut).
    let mut ops = at(&["d", ".snapshot", "s1", "e"]);
    ops.push(read(Stateid4::ANONYMOUS, 100));
    assert_eq!(read_data(&s.ok(ops).await), b"12345");
    // No layouts inside snapshots.
    let mut ops = at(&["d", ".snapshot", "s1", "e"]);
    ops.push(NfsArgop4::Layoutget(LayoutgetArgs {
        loga_signal_layout_avail: false,
        loga_layout_type: LAYOUT4_FLEX_FILES,
        loga_iomode: Layoutiomode4::Read,
        loga_offset: 0,
        loga_length: u64::MAX,
        loga_minlength: 0,
        loga_stateid: Stateid4::ANONYMOUS,
        loga_maxcount: 1 << 16,
    }));
    assert_eq!(status_of(&s.run(ops).await), LAYOUTUNAVAILABLE);

    // LOOKUPP: from the snapshot's root to `.snapshot`, then to the live directory.
    let mut ops = at(&["d", ".snapshot", "s1", "sub"]);
    ops.extend([NfsArgop4::Lookupp, NfsArgop4::Lookupp]);
    let up = s.attrs(ops.clone(), &[FATTR4_FILEID]).await;
    assert_eq!(up.fileid, Some(d | 1 << 63));
    ops.push(NfsArgop4::Lookupp);
    let up = s.attrs(ops, &[FATTR4_FILEID, FATTR4_FSID]).await;
    assert_eq!(up.fileid, Some(d));
    assert_eq!(up.fsid, live.fsid);

    // A handle from GETFH and from READDIR's filehandle attribute lead to the same object.
    let fh = s.fh(at(f)).await;
    assert_eq!(fh.0.as_bytes().len(), 48);
    assert_eq!(&fh.0.as_bytes()[..4], b"cfsS");
    let again = s.attrs(vec![putfh(&fh)], &[FATTR4_MODE]).await;
    assert_eq!(again.mode, Some(0o644));
}

#[tokio::test]
async fn an_empty_image_reads_as_zeros_to_the_size_at_the_cut() {
    let (server, _dir) = server().await;
    let mut s = S::new(&server, "snap-image").await;
    let d = make_tree(&mut s).await;
    let ns = server.namespace();
    let id = ns.create_snapshot(b"s1", d, 3600).await.unwrap();
    let e = s
        .attrs(at(&["d", "e"]), &[FATTR4_FILEID])
        .await
        .fileid
        .unwrap();
    // What the data gate proposes before a file's bytes change: one node, no data servers,
    // no placement record, so the image is `Empty` (zeros to the size at the cut).
    ns.execute(meta::namespace::Command::SnapKeep {
        ino: e,
        time: meta::namespace::Time::now(),
    })
    .await
    .unwrap();
    let images = ns.images(e).unwrap();
    assert!(
        matches!(
            images.get(&id).map(|i| &i.form),
            Some(meta::namespace::snap::ImageForm::Empty)
        ),
        "{images:?}"
    );
    s.write_file(&["d"], "e", b"a longer live file").await;
    let mut ops = at(&["d", ".snapshot", "s1", "e"]);
    ops.push(read(Stateid4::ANONYMOUS, 100));
    assert_eq!(read_data(&s.ok(ops).await), [0u8; 5]);
}

/// Waits up to 10 s for `done`.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "not within 10 s: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_file_removed_after_the_cut_keeps_its_bytes_there_until_the_snapshot_goes() {
    let (server, dir) = server().await;
    let mut s = S::new(&server, "snap-removed").await;
    let mut ops = at(&[]);
    ops.push(mkdir("d"));
    s.ok(ops).await;
    let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    s.write_file(&["d"], "r", &bytes).await;
    s.write_file(&["d"], "early", b"removed before the cut")
        .await;
    let ino = |a: FileAttrs| a.fileid.unwrap();
    let d = ino(s.attrs(at(&["d"]), &[FATTR4_FILEID]).await);
    let r = ino(s.attrs(at(&["d", "r"]), &[FATTR4_FILEID]).await);
    let early = ino(s.attrs(at(&["d", "early"]), &[FATTR4_FILEID]).await);
    // The single node's own store: one directory per object.
    let object = |i: u64| {
        dir.path()
            .join("chunks/objects")
            .join(format!("{:02x}", i & 0xff))
            .join(format!("{i:016x}"))
    };
    assert!(object(r).exists() && object(early).exists());
    let mut ops = at(&["d"]);
    ops.push(remove("early"));
    s.ok(ops).await;
    let ns = server.namespace();
    let id = ns.create_snapshot(b"s1", d, 3600).await.unwrap();
    let mut ops = at(&["d"]);
    ops.push(remove("r"));
    s.ok(ops).await;

    // Both orphans are forgotten; the one the snapshot saw keeps its bytes, in its own object.
    until("the orphans forgotten", || {
        let o = ns.orphans().unwrap();
        !o.contains(&r) && !o.contains(&early)
    })
    .await;
    assert!(!object(early).exists(), "in no snapshot: its bytes go");
    assert!(object(r).exists());
    let images = ns.images(r).unwrap();
    assert_eq!(
        images.get(&id).map(|i| &i.form),
        Some(&meta::namespace::snap::ImageForm::Mirrored {
            object: r,
            mirrors: Vec::new(),
            linking: false,
        }),
        "{images:?}"
    );
    assert!(ns.images(early).unwrap().is_empty());
    assert_eq!(s.names(at(&["d"])).await, Vec::<String>::new());
    assert_eq!(s.names(at(&["d", ".snapshot", "s1"])).await, ["r"]);
    let mut ops = at(&["d", ".snapshot", "s1", "r"]);
    ops.push(read(Stateid4::ANONYMOUS, 256 * 1024));
    assert!(read_data(&s.ok(ops).await) == bytes, "the bytes at the cut");

    // Deleted, the snapshot takes them with it.
    ns.delete_snapshot(b"s1").await.unwrap();
    until("the image reclaimed", || ns.images(r).unwrap().is_empty()).await;
    assert!(!object(r).exists(), "the object goes with the image");
}

#[tokio::test]
async fn opens_inside_a_snapshot_meet_no_live_share_and_get_no_delegation() {
    let (server, _dir) = server().await;
    let mut s = S::new(&server, "snap-opener").await;
    let d = make_tree(&mut s).await;
    server
        .namespace()
        .create_snapshot(b"s1", d, 3600)
        .await
        .unwrap();
    // Another client opens the live `e` denying readers.
    let mut other = S::new(&server, "live-denier").await;
    let mut ops = at(&["d"]);
    ops.push(NfsArgop4::Open(OpenArgs {
        seqid: 0,
        share_access: 3 | OPEN4_SHARE_ACCESS_WANT_NO_DELEG,
        share_deny: 1,
        owner: StateOwner4 {
            clientid: 0,
            owner: Opaque::from("denier"),
        },
        openhow: Openflag4::NoCreate,
        claim: OpenClaim4::Null(Opaque::from("e")),
    }));
    other.ok(ops).await;
    // A live read open is refused by that reservation...
    let read_open = |name: &str, access: u32| {
        open_op(
            "reader",
            access,
            Openflag4::NoCreate,
            OpenClaim4::Null(Opaque::from(name)),
        )
    };
    let mut ops = at(&["d"]);
    ops.push(read_open("e", 1));
    assert_eq!(status_of(&s.run(ops).await), Nfsstat4::ShareDenied.code());
    // ...a snapshot's is not, gets no delegation even when it asks, reads, and closes.
    let mut ops = at(&["d", ".snapshot", "s1"]);
    ops.push(read_open("e", 1 | OPEN4_SHARE_ACCESS_WANT_READ_DELEG));
    let r = s.ok(ops).await;
    let Some(NfsResop4::Open(OpenRes::Ok(o))) = r.last() else {
        panic!("{r:?}")
    };
    assert!(matches!(o.delegation, OpenDelegation4::None), "{o:?}");
    let mut ops = at(&["d", ".snapshot", "s1", "e"]);
    ops.push(read(o.stateid, 100));
    ops.push(NfsArgop4::Close(CloseArgs {
        seqid: 0,
        open_stateid: o.stateid,
    }));
    let r = s.ok(ops).await;
    let Some(NfsResop4::Read(ReadRes::Ok(data))) = r.iter().rev().nth(1) else {
        panic!("{r:?}")
    };
    assert_eq!(data.data.as_bytes(), b"12345");
    // For writing, or creating, it is a read-only file system.
    let mut ops = at(&["d", ".snapshot", "s1"]);
    ops.push(read_open("e", 3));
    assert_eq!(status_of(&s.run(ops).await), ROFS);
    let mut ops = at(&["d", ".snapshot", "s1"]);
    ops.push(open_create("new", "reader", Fattr4::default()));
    assert_eq!(status_of(&s.run(ops).await), ROFS);
}

/// Every operation that changes the file system, on a handle inside a snapshot (the current
/// one, or the saved one for those that take two), answers ROFS and changes nothing. The
/// list is `table::CHANGES_FS`'s, which the table's tests pin; WRITE_SAME is there too, but
/// the server does not decode it (it answers OP_ILLEGAL before any file handle matters).
#[tokio::test]
async fn every_changing_operation_answers_rofs_inside_a_snapshot() {
    let (server, _dir) = server().await;
    let mut s = S::new(&server, "snap-writer").await;
    let d = make_tree(&mut s).await;
    server
        .namespace()
        .create_snapshot(b"s1", d, 3600)
        .await
        .unwrap();
    let dir = s.fh(at(&["d", ".snapshot", "s1"])).await;
    let file = s.fh(at(&["d", ".snapshot", "s1", "f"])).await;
    let snapdir = s.fh(at(&["d", ".snapshot"])).await;
    let live_dir = s.fh(at(&["d"])).await;
    let live_file = s.fh(at(&["d", "e"])).await;
    let anon = Stateid4::ANONYMOUS;
    let on = |fh: &NfsFh4, op: NfsArgop4| vec![putfh(fh), op];
    let two = |saved: &NfsFh4, cur: &NfsFh4, op: NfsArgop4| {
        vec![putfh(saved), NfsArgop4::Savefh, putfh(cur), op]
    };
    let rename = || {
        NfsArgop4::Rename(RenameArgs {
            oldname: Opaque::from("f"),
            newname: Opaque::from("f3"),
        })
    };
    let link = || {
        NfsArgop4::Link(LinkArgs {
            newname: Opaque::from("x"),
        })
    };
    let copy = || {
        NfsArgop4::Copy(CopyArgs {
            ca_src_stateid: anon,
            ca_dst_stateid: anon,
            ca_src_offset: 0,
            ca_dst_offset: 0,
            ca_count: 1,
            ca_consecutive: true,
            ca_synchronous: true,
            ca_source_server: Vec::new(),
        })
    };
    let clone = || {
        NfsArgop4::Clone(CloneArgs {
            cl_src_stateid: anon,
            cl_dst_stateid: anon,
            cl_src_offset: 0,
            cl_dst_offset: 0,
            cl_count: 1,
        })
    };
    let cases: Vec<(&str, Vec<NfsArgop4>)> = vec![
        ("SETATTR", on(&file, set_mode(0o777))),
        ("CREATE", on(&dir, mkdir("x"))),
        ("CREATE in .snapshot", on(&snapdir, mkdir("x"))),
        ("REMOVE", on(&dir, remove("f"))),
        ("REMOVE in .snapshot", on(&snapdir, remove("s1"))),
        ("RENAME from a snapshot", two(&dir, &live_dir, rename())),
        ("RENAME into a snapshot", two(&live_dir, &dir, rename())),
        ("LINK of a snapshot's file", two(&file, &live_dir, link())),
        ("LINK into a snapshot", two(&live_file, &dir, link())),
        (
            "OPEN for writing",
            on(
                &dir,
                open_op(
                    "w",
                    2,
                    Openflag4::NoCreate,
                    OpenClaim4::Null(Opaque::from("f")),
                ),
            ),
        ),
        (
            "OPEN to create",
            on(&dir, open_create("x", "w", Fattr4::default())),
        ),
        (
            "WRITE",
            on(
                &file,
                NfsArgop4::Write(WriteArgs {
                    stateid: anon,
                    offset: 0,
                    stable: StableHow4::FileSync4,
                    data: Opaque(b"new".to_vec()),
                }),
            ),
        ),
        (
            "COMMIT",
            on(
                &file,
                NfsArgop4::Commit(CommitArgs {
                    offset: 0,
                    count: 0,
                }),
            ),
        ),
        (
            "LAYOUTGET for RW",
            on(
                &file,
                NfsArgop4::Layoutget(LayoutgetArgs {
                    loga_signal_layout_avail: false,
                    loga_layout_type: LAYOUT4_FLEX_FILES,
                    loga_iomode: Layoutiomode4::Rw,
                    loga_offset: 0,
                    loga_length: u64::MAX,
                    loga_minlength: 0,
                    loga_stateid: anon,
                    loga_maxcount: 1 << 16,
                }),
            ),
        ),
        (
            "LAYOUTCOMMIT",
            on(
                &file,
                NfsArgop4::Layoutcommit(LayoutcommitArgs {
                    loca_offset: 0,
                    loca_length: 1,
                    loca_reclaim: false,
                    loca_stateid: anon,
                    loca_last_write_offset: Newoffset4::Offset(10),
                    loca_time_modify: Newtime4::Unchanged,
                    loca_layoutupdate: Layoutupdate4 {
                        lou_type: LAYOUT4_FLEX_FILES,
                        lou_body: Opaque::default(),
                    },
                }),
            ),
        ),
        (
            "ALLOCATE",
            on(
                &file,
                NfsArgop4::Allocate(AllocateArgs {
                    aa_stateid: anon,
                    aa_offset: 0,
                    aa_length: 100,
                }),
            ),
        ),
        (
            "DEALLOCATE",
            on(
                &file,
                NfsArgop4::Deallocate(DeallocateArgs {
                    da_stateid: anon,
                    da_offset: 0,
                    da_length: 1,
                }),
            ),
        ),
        ("COPY into a snapshot", two(&live_file, &file, copy())),
        ("CLONE into a snapshot", two(&live_file, &file, clone())),
        (
            "SETXATTR",
            on(
                &file,
                NfsArgop4::Setxattr(SetxattrArgs {
                    sxa_option: SetxattrOption4::Either,
                    sxa_key: Opaque::from("k"),
                    sxa_value: Opaque::from("v9"),
                }),
            ),
        ),
        (
            "REMOVEXATTR",
            on(
                &file,
                NfsArgop4::Removexattr(RemovexattrArgs {
                    rxa_name: Opaque::from("k"),
                }),
            ),
        ),
    ];
    let covered: std::collections::BTreeSet<&str> = cases
        .iter()
        .map(|(name, _)| name.split(' ').next().unwrap())
        .collect();
    for op in [
        "COMMIT",
        "CREATE",
        "LINK",
        "OPEN",
        "REMOVE",
        "RENAME",
        "SETATTR",
        "WRITE",
        "LAYOUTCOMMIT",
        "LAYOUTGET",
        "ALLOCATE",
        "COPY",
        "DEALLOCATE",
        "CLONE",
        "SETXATTR",
        "REMOVEXATTR",
    ] {
        assert!(covered.contains(op), "no case for {op}");
    }
    for (name, ops) in cases {
        let r = s.run(ops).await;
        assert_eq!(status_of(&r), ROFS, "{name}: {r:?}");
    }
    // Out of a snapshot into the live tree, COPY and CLONE are the client's to do.
    let r = s.run(two(&file, &live_file, copy())).await;
    assert_eq!(status_of(&r), NOTSUPP, "{r:?}");
    // Nothing changed: the snapshot and the live tree are as they were.
    assert_eq!(s.names(vec![putfh(&dir)]).await, ["e", "f", "l", "sub"]);
    assert_eq!(s.names(at(&["d"])).await, ["e", "f", "l", "sub"]);
    let fa = s
        .attrs(vec![putfh(&file)], &[FATTR4_MODE, FATTR4_SIZE])
        .await;
    assert_eq!((fa.mode, fa.size), (Some(0o644), Some(9)));
    let mut ops = vec![putfh(&file)];
    ops.push(read(anon, 100));
    assert_eq!(read_data(&s.ok(ops).await), b"old bytes");
}

#[tokio::test]
async fn handles_survive_a_restart_and_are_stale_once_the_snapshot_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_on(dir.path(), 1, false).await;
    let mut s = S::new(&server, "snap-restart").await;
    let d = make_tree(&mut s).await;
    server
        .namespace()
        .create_snapshot(b"s1", d, 3600)
        .await
        .unwrap();
    change_tree(&mut s).await;
    let paths: [&[&str]; 4] = [
        &["d", ".snapshot"],
        &["d", ".snapshot", "s1"],
        &["d", ".snapshot", "s1", "f"],
        &["d", ".snapshot", "s1", "l"],
    ];
    let mut fhs = Vec::new();
    for p in paths {
        fhs.push(s.fh(at(p)).await);
    }
    s.c.close();
    server.shutdown().await;
    let server = start_on(dir.path(), 1, false).await;
    let mut s = S::new(&server, "snap-restart-2").await;
    let f = s
        .attrs(vec![putfh(&fhs[2])], &[FATTR4_MODE, FATTR4_SIZE])
        .await;
    assert_eq!((f.mode, f.size), (Some(0o644), Some(9)));
    assert_eq!(s.names(vec![putfh(&fhs[0])]).await, ["s1"]);
    assert_eq!(s.names(vec![putfh(&fhs[1])]).await, ["e", "f", "l", "sub"]);
    let r = s.ok(vec![putfh(&fhs[3]), NfsArgop4::Readlink]).await;
    let Some(NfsResop4::Readlink(ReadlinkRes::Ok(l))) = r.last() else {
        panic!("{r:?}")
    };
    assert_eq!(l.link.as_bytes(), b"target1");

    // Deleted: every handle into it, and its `.snapshot` (no snapshot is rooted there any
    // more), is stale at once; the name is gone too.
    server.namespace().delete_snapshot(b"s1").await.unwrap();
    for fh in &fhs {
        let r = s.run(vec![putfh(fh), getattr(&[FATTR4_FILEID])]).await;
        assert_eq!(r.status, STALE, "{r:?}");
    }
    let mut ops = at(&["d"]);
    ops.push(lookup(".snapshot"));
    assert_eq!(status_of(&s.run(ops).await), NOENT);
    // The live tree is untouched by all this.
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.namespace().snapshots().unwrap().contains_key(&1) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(s.names(at(&["d"])).await, ["e", "f", "f2", "l", "sub"]);
}

/// The bytes of `path`, read whole (64 KiB per READ: the session's reply size bounds it).
async fn read_all(s: &mut S, path: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut ops = at(path);
        ops.push(NfsArgop4::Read(ReadArgs {
            stateid: Stateid4::ANONYMOUS,
            offset: out.len() as u64,
            count: 65_536,
        }));
        let r = s.ok(ops).await;
        let Some(NfsResop4::Read(ReadRes::Ok(d))) = r.last() else {
            panic!("{r:?}")
        };
        out.extend_from_slice(d.data.as_bytes());
        if d.eof || d.data.as_bytes().is_empty() {
            return out;
        }
    }
}

async fn xattr(s: &mut S, path: &[&str], key: &str) -> Vec<u8> {
    let mut ops = at(path);
    ops.push(NfsArgop4::Getxattr(GetxattrArgs {
        gxa_name: Opaque::from(key),
    }));
    let r = s.ok(ops).await;
    let Some(NfsResop4::Getxattr(GetxattrRes::Ok(x))) = r.last() else {
        panic!("{r:?}")
    };
    x.gxr_value.as_bytes().to_vec()
}

async fn readlink(s: &mut S, path: &[&str]) -> Vec<u8> {
    let mut ops = at(path);
    ops.push(NfsArgop4::Readlink);
    let r = s.ok(ops).await;
    let Some(NfsResop4::Readlink(ReadlinkRes::Ok(l))) = r.last() else {
        panic!("{r:?}")
    };
    l.link.as_bytes().to_vec()
}

/// Links `from` (a path) as `name` in directory `dir`.
async fn hard_link(s: &mut S, from: &[&str], dir: &[&str], name: &str) {
    let mut ops = at(from);
    ops.push(NfsArgop4::Savefh);
    ops.extend(at(dir));
    ops.push(NfsArgop4::Link(LinkArgs {
        newname: Opaque::from(name),
    }));
    s.ok(ops).await;
}

/// What a restore must bring back of `make_tree`'s tree (plus a big file `big` and a hard
/// link `sub/h` of `f`), at `path`.
async fn check_restored(s: &mut S, path: &[&str], big: &[u8], f_mtime: Nfstime4) {
    let p = |rest: &[&'static str]| -> Vec<&str> {
        path.iter().copied().chain(rest.iter().copied()).collect()
    };
    assert_eq!(s.names(at(path)).await, ["big", "e", "f", "l", "sub"]);
    assert_eq!(s.names(at(&p(&["sub"]))).await, ["g", "h"]);
    assert_eq!(read_all(s, &p(&["f"])).await, b"old bytes");
    assert_eq!(read_all(s, &p(&["e"])).await, b"12345");
    assert_eq!(read_all(s, &p(&["sub", "g"])).await, b"g");
    assert!(
        read_all(s, &p(&["big"])).await == big,
        "big's bytes at the cut"
    );
    let fa = s
        .attrs(
            at(&p(&["f"])),
            &[
                FATTR4_MODE,
                FATTR4_FILEID,
                FATTR4_NUMLINKS,
                FATTR4_TIME_MODIFY,
            ],
        )
        .await;
    assert_eq!(fa.mode, Some(0o644));
    assert_eq!(fa.numlinks, Some(2), "f and sub/h");
    assert_eq!(fa.time_modify, Some(f_mtime), "times come back");
    let h = s.attrs(at(&p(&["sub", "h"])), &[FATTR4_FILEID]).await;
    assert_eq!(h.fileid, fa.fileid, "a hard link stays one file");
    assert_eq!(xattr(s, &p(&["f"]), "k").await, b"v1");
    assert_eq!(readlink(s, &p(&["l"])).await, b"target1");
}

/// Restore (plan step 11) to a new path and in place, on the single node's own store: the
/// tree, its attributes, symlinks, hard links and xattrs come back as the snapshot has them;
/// the files' bytes are shared with the snapshot's images (hard-linked chunk files), and a
/// write to a restored file leaves the snapshot's bytes as they were; a restore cut short is
/// finished by running it again; in place, the root keeps its inode (and its `.snapshot`) and
/// what it held is moved aside, not deleted.
#[tokio::test]
async fn a_restore_brings_the_tree_back_sharing_its_bytes_to_a_new_path_and_in_place() {
    let (server, dir) = server().await;
    let admin = server.admin();
    let mut s = S::new(&server, "snap-restore").await;
    let d = make_tree(&mut s).await;
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    s.write_file(&["d"], "big", &big).await;
    hard_link(&mut s, &["d", "f"], &["d", "sub"], "h").await;
    let f_mtime = s
        .attrs(at(&["d", "f"]), &[FATTR4_TIME_MODIFY])
        .await
        .time_modify
        .unwrap();
    let id = admin.snapshot_create("/d", "s1", None).await.unwrap();
    change_tree(&mut s).await;
    s.write_file(&["d"], "big", b"overwritten").await;
    let mut ops = at(&["d", "sub"]);
    ops.push(remove("h"));
    s.ok(ops).await;

    // A new path: the whole tree, its bytes shared, not copied.
    let r = admin.snapshot_restore("s1", Some("/r")).await.unwrap();
    assert_eq!((r.files, r.dirs, r.others, r.links), (4, 1, 1, 1), "{r:?}");
    assert_eq!(r.shared_bytes, 9 + 5 + 1 + big.len() as u64, "{r:?}");
    assert_eq!(r.copied_bytes, 0);
    check_restored(&mut s, &["r"], &big, f_mtime).await;
    let rbig = s
        .attrs(at(&["r", "big"]), &[FATTR4_FILEID])
        .await
        .fileid
        .unwrap();
    let chunks = dir
        .path()
        .join("chunks/objects")
        .join(format!("{:02x}", rbig & 0xff))
        .join(format!("{rbig:016x}"));
    let mut shared = 0;
    for c in std::fs::read_dir(&chunks).unwrap() {
        use std::os::unix::fs::MetadataExt;
        let m = c.unwrap().metadata().unwrap();
        if m.is_file() && m.nlink() > 1 {
            shared += 1;
        }
    }
    assert!(
        shared > 0,
        "the restored file's chunks are links of the image's"
    );
    // Changing the restored file leaves the snapshot's bytes alone.
    s.write_file(&["r"], "big", b"changed after the restore")
        .await;
    assert!(read_all(&mut s, &["d", ".snapshot", "s1", "big"]).await == big);
    // The path is taken now.
    assert!(matches!(
        admin.snapshot_restore("s1", Some("/r")).await,
        Err(mds::admin::SnapshotError::TargetExists(_))
    ));

    // Cut short: the tree of a run that died part way (here /r, moved back where a restore
    // to /r2 builds, with some of it gone) is finished by running the restore again.
    let staging = format!(".cfs-restore-{id}-{}", {
        let h = blake3::hash(b"r2");
        h.as_bytes()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    });
    s.write_file(&["r"], "big", &big[..1000]).await;
    let mut ops = at(&["r"]);
    ops.extend([remove("l"), remove("e")]);
    s.ok(ops).await;
    let mut ops = at(&[]);
    ops.extend([
        NfsArgop4::Savefh,
        NfsArgop4::Rename(RenameArgs {
            oldname: Opaque::from("r"),
            newname: Opaque::from(staging.as_str()),
        }),
    ]);
    s.ok(ops).await;
    let r2 = admin.snapshot_restore("s1", Some("/r2")).await.unwrap();
    assert_eq!(r2.files, 4, "{r2:?}");
    check_restored(&mut s, &["r2"], &big, f_mtime).await;
    assert!(!s.names(at(&[])).await.contains(&staging));

    // In place: d keeps its inode and its .snapshot; what it held is moved aside.
    s.write_file(&["d"], "new", b"made after the cut").await;
    let r = admin.snapshot_restore("s1", None).await.unwrap();
    assert_eq!(r.to, "/d");
    let aside = format!(".cfs-replaced-{id}");
    assert_eq!(r.replaced.as_deref(), Some(format!("/d/{aside}").as_str()));
    assert_eq!(s.attrs(at(&["d"]), &[FATTR4_FILEID]).await.fileid, Some(d));
    let mut names = s.names(at(&["d"])).await;
    names.retain(|n| *n != aside);
    assert_eq!(names, ["big", "e", "f", "l", "sub"]);
    check_restored(&mut s, &["d", ".snapshot", "s1"], &big, f_mtime).await;
    let mut live = s.names(at(&["d", aside.as_str()])).await;
    live.sort();
    assert_eq!(live, ["big", "e", "f", "f2", "l", "new", "sub"]);
    assert_eq!(
        read_all(&mut s, &["d", aside.as_str(), "new"]).await,
        b"made after the cut"
    );
    assert_eq!(read_all(&mut s, &["d", "f"]).await, b"old bytes");
    assert!(read_all(&mut s, &["d", "big"]).await == big);
    // A second in-place restore would mix into what the first moved aside: refused.
    assert!(matches!(
        admin.snapshot_restore("s1", None).await,
        Err(mds::admin::SnapshotError::TargetExists(_))
    ));
    assert!(matches!(
        admin.snapshot_restore("nope", Some("/x")).await,
        Err(mds::admin::SnapshotError::NoSuchSnapshot(_))
    ));
}
