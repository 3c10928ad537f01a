//! Export confinement and the pseudo file system (RFC 8881 §7): a client reaches only what the
//! exports its address may use contain, forged handles are refused, and each object is served
//! under the rules of its own export.
use crate::common;
use common::*;
use mds::config::{AddrRange, Export};
use mds::{Server, ServerConfig};
use proto::nfs4::attr::{Bitmap, FileAttrs, FATTR4_FILEID, FATTR4_MODE, FATTR4_OWNER};
use proto::nfs4::*;
use proto::rpc::Connection;
use proto::xdr::Opaque;
use std::path::Path;
use std::time::Duration;

/// A client with a session, numbering its SEQUENCEs.
struct Client {
    c: Connection,
    sid: Sessionid4,
    seq: u32,
}

impl Client {
    async fn new(s: &Server) -> Client {
        let c = connect(s).await;
        let sid = session(&c).await;
        Client { c, sid, seq: 0 }
    }

    async fn run(&mut self, ops: Vec<NfsArgop4>) -> Compound4Res {
        self.seq += 1;
        compound(&self.c, 1, [vec![seq(self.sid, self.seq)], ops].concat()).await
    }
}

fn lookup(name: &str) -> NfsArgop4 {
    NfsArgop4::Lookup(LookupArgs {
        objname: Opaque::from(name),
    })
}

fn putfh(fh: &NfsFh4) -> NfsArgop4 {
    NfsArgop4::Putfh(PutfhArgs { object: fh.clone() })
}

fn getattr(bits: &[u32]) -> NfsArgop4 {
    NfsArgop4::Getattr(GetattrArgs {
        attr_request: Bitmap::from_bits(bits).to_vec(),
    })
}

fn readdir() -> NfsArgop4 {
    NfsArgop4::Readdir(ReaddirArgs {
        cookie: 0,
        cookieverf: [0; 8],
        dircount: 4096,
        maxcount: 16384,
        attr_request: Bitmap::from_bits(&[FATTR4_FILEID]).to_vec(),
    })
}

fn setattr_mode(mode: u32) -> NfsArgop4 {
    NfsArgop4::Setattr(SetattrArgs {
        stateid: Stateid4::default(),
        obj_attributes: FileAttrs {
            mode: Some(mode),
            ..Default::default()
        }
        .encode_all(),
    })
}

fn open_read(name: &str) -> NfsArgop4 {
    NfsArgop4::Open(OpenArgs {
        seqid: 0,
        share_access: 1,
        share_deny: 0,
        owner: StateOwner4 {
            clientid: 0,
            owner: Opaque::from("reader"),
        },
        openhow: Openflag4::NoCreate,
        claim: OpenClaim4::Null(Opaque::from(name)),
    })
}

fn mode(m: u32) -> Fattr4 {
    FileAttrs {
        mode: Some(m),
        ..Default::default()
    }
    .encode_all()
}

fn mkdir_mode(name: &str, m: u32) -> NfsArgop4 {
    NfsArgop4::Create(CreateArgs {
        objtype: Createtype4::Dir,
        objname: Opaque::from(name),
        createattrs: mode(m),
    })
}

fn fh_at(r: &Compound4Res, at: usize) -> NfsFh4 {
    match &r.resarray[at] {
        NfsResop4::Getfh(GetfhRes::Ok(g)) => g.object.clone(),
        _ => panic!("no handle at {at}: {r:?}"),
    }
}

fn attrs_at(r: &Compound4Res, at: usize) -> FileAttrs {
    match &r.resarray[at] {
        NfsResop4::Getattr(GetattrRes::Ok(g)) => FileAttrs::decode(&g.obj_attributes).unwrap(),
        _ => panic!("no attributes at {at}: {r:?}"),
    }
}

fn names(r: &Compound4Res, at: usize) -> Vec<String> {
    match &r.resarray[at] {
        NfsResop4::Readdir(ReaddirRes::Ok(d)) => d
            .reply
            .entries
            .iter()
            .map(|e| String::from_utf8(e.name.as_bytes().to_vec()).unwrap())
            .collect(),
        _ => panic!("no listing at {at}: {r:?}"),
    }
}

/// The status of operation `at` (0 for success).
fn status_at(r: &Compound4Res, at: usize) -> Option<u32> {
    r.resarray.get(at).map(|x| x.status())
}

/// What the first server (exporting "/") handed out, for the tests to use or forge from.
struct Tree {
    root: NfsFh4,
    root_ino: u64,
    a: NfsFh4,
    secret: NfsFh4,
    secret_file: NfsFh4,
}

/// Builds /a (0777) with /a/f (0600), /b/c (0777) with /b/c/g (0600), /secret with
/// /secret/s, all owned by root, in a server exporting "/"; then stops it.
async fn build_tree(dir: &Path) -> Tree {
    let s = start(dir, vec![Export::new("/").unwrap()]).await;
    let mut c = Client::new(&s).await;
    let ok = |r: &Compound4Res| assert_eq!(r.status, 0, "{r:?}");
    let r = c
        .run(vec![
            NfsArgop4::Putrootfh,
            mkdir_mode("a", 0o777),
            open_create("f", "o", mode(0o600)),
        ])
        .await;
    ok(&r);
    let r = c
        .run(vec![
            NfsArgop4::Putrootfh,
            mkdir_mode("b", 0o755),
            mkdir_mode("c", 0o777),
            open_create("g", "o", mode(0o600)),
        ])
        .await;
    ok(&r);
    let r = c
        .run(vec![
            NfsArgop4::Putrootfh,
            mkdir_mode("secret", 0o755),
            open_create("s", "o", mode(0o644)),
        ])
        .await;
    ok(&r);
    let r = c
        .run(vec![
            NfsArgop4::Putrootfh,
            NfsArgop4::Getfh,
            getattr(&[FATTR4_FILEID]),
            lookup("a"),
            NfsArgop4::Getfh,
            NfsArgop4::Putrootfh,
            lookup("secret"),
            NfsArgop4::Getfh,
            lookup("s"),
            NfsArgop4::Getfh,
        ])
        .await;
    ok(&r);
    let tree = Tree {
        root: fh_at(&r, 2),
        root_ino: attrs_at(&r, 3).fileid.unwrap(),
        a: fh_at(&r, 5),
        secret: fh_at(&r, 8),
        secret_file: fh_at(&r, 10),
    };
    // Let go of everything that holds the server's state, so the next one can open it.
    let r = compound(
        &c.c,
        1,
        vec![NfsArgop4::DestroySession(DestroySessionArgs {
            dsa_sessionid: c.sid,
        })],
    )
    .await;
    assert_eq!(r.status, 0, "{r:?}");
    c.c.close();
    s.shutdown().await;
    tree
}

/// Starts a server on `dir`; retries while the previous one's connections let go of it.
async fn start(dir: &Path, exports: Vec<Export>) -> Server {
    for _ in 0..100 {
        let cfg = ServerConfig {
            data_dir: dir.to_path_buf(),
            listen: "127.0.0.1:0".parse().unwrap(),
            exports: exports.clone(),
            lease_seconds: 30,
            write_delegations: true,
            grace_seconds: Some(0),
            cluster: None,
            connections: Default::default(),
            members: None,
            client_addresses: Default::default(),
            tier: None,
        };
        match Server::start(cfg).await {
            Ok(s) => return s,
            Err(e) => {
                eprintln!("restart: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await
            }
        }
    }
    panic!("server did not restart on {}", dir.display());
}

/// `fh` with the 8 bytes of inode `from` replaced by inode `to`: how a client forges a
/// handle when handles are (fs id, inode).
fn forge(fh: &NfsFh4, from: u64, to: u64) -> NfsFh4 {
    let mut b = fh.0.as_bytes().to_vec();
    let at = b
        .windows(8)
        .position(|w| w == from.to_be_bytes())
        .expect("the handle carries its inode number");
    b[at..at + 8].copy_from_slice(&to.to_be_bytes());
    NfsFh4(Opaque(b))
}

#[tokio::test]
async fn forged_and_foreign_handles_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let tree = build_tree(d.path()).await;
    let s = start(d.path(), vec![Export::new("/a").unwrap()]).await;
    let mut c = Client::new(&s).await;
    // A legitimate handle inside the export, and its inode number. (Builds before the pseudo
    // file system served the export's root as PUTROOTFH: this test also runs there, to show
    // the forged handle got through.)
    let mut r = c
        .run(vec![
            NfsArgop4::Putrootfh,
            lookup("a"),
            NfsArgop4::Getfh,
            getattr(&[FATTR4_FILEID]),
        ])
        .await;
    if r.status != 0 {
        r = c
            .run(vec![
                NfsArgop4::Putrootfh,
                NfsArgop4::Putrootfh,
                NfsArgop4::Getfh,
                getattr(&[FATTR4_FILEID]),
            ])
            .await;
    }
    assert_eq!(r.status, 0, "{r:?}");
    let a_fh = fh_at(&r, 3);
    let a_ino = attrs_at(&r, 4).fileid.unwrap();
    // Forged: the export's handle pointing at the real root instead.
    let forged = forge(&a_fh, a_ino, tree.root_ino);
    for op in [getattr(&[FATTR4_MODE]), readdir(), setattr_mode(0o777)] {
        let r = c.run(vec![putfh(&forged), op]).await;
        assert_eq!(status_at(&r, 1), Some(Nfsstat4::Badhandle.code()), "{r:?}");
        assert_eq!(r.resarray.len(), 2, "nothing ran after the PUTFH: {r:?}");
    }
    // Handles minted while "/" was exported name an export this client may no longer use.
    for fh in [&tree.root, &tree.secret, &tree.secret_file] {
        let r = c.run(vec![putfh(fh), getattr(&[FATTR4_MODE])]).await;
        assert_eq!(status_at(&r, 1), Some(Nfsstat4::Stale.code()), "{r:?}");
    }
    // The export's own handle from before the restart still works: handles are persistent.
    let r = c.run(vec![putfh(&a_fh), getattr(&[FATTR4_MODE])]).await;
    assert_eq!(r.status, 0, "{r:?}");
    // A handle the "/" export handed out for /a names "/", not "/a": refused too.
    let r = c.run(vec![putfh(&tree.a), getattr(&[FATTR4_MODE])]).await;
    assert_eq!(status_at(&r, 1), Some(Nfsstat4::Stale.code()), "{r:?}");
}

#[tokio::test]
async fn lookupp_at_an_export_root_stays_in_the_pseudo_file_system() {
    let d = tempfile::tempdir().unwrap();
    build_tree(d.path()).await;
    let s = start(d.path(), vec![Export::new("/b/c").unwrap()]).await;
    let mut c = Client::new(&s).await;
    let r = c
        .run(vec![
            NfsArgop4::Putrootfh,
            lookup("b"),
            lookup("c"),
            NfsArgop4::Getfh,
            NfsArgop4::Lookupp,
            readdir(),
            NfsArgop4::Lookupp,
            readdir(),
        ])
        .await;
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(
        names(&r, 6),
        vec!["c"],
        "/b shows only the way to the export"
    );
    assert_eq!(
        names(&r, 8),
        vec!["b"],
        "/ shows only the way to the export"
    );
    // From the export's root, up and sideways: nothing outside is reachable.
    let c_fh = fh_at(&r, 4);
    let r = c
        .run(vec![
            putfh(&c_fh),
            NfsArgop4::Lookupp,
            NfsArgop4::Lookupp,
            lookup("secret"),
        ])
        .await;
    assert_eq!(status_at(&r, 4), Some(Nfsstat4::Noent.code()), "{r:?}");
    let r = c
        .run(vec![
            putfh(&c_fh),
            NfsArgop4::Lookupp,
            NfsArgop4::Lookupp,
            NfsArgop4::Lookupp,
        ])
        .await;
    assert_eq!(status_at(&r, 4), Some(Nfsstat4::Noent.code()), "{r:?}");
    // SECINFO does not confirm names outside either.
    let r = c
        .run(vec![
            NfsArgop4::Putrootfh,
            NfsArgop4::Secinfo(SecinfoArgs {
                name: Opaque::from("secret"),
            }),
        ])
        .await;
    assert_eq!(status_at(&r, 2), Some(Nfsstat4::Noent.code()), "{r:?}");
    // Pseudo directories are read-only, and hold no files to open.
    let r = c.run(vec![NfsArgop4::Putrootfh, mkdir("new")]).await;
    assert_eq!(status_at(&r, 2), Some(Nfsstat4::Rofs.code()), "{r:?}");
    let r = c
        .run(vec![
            NfsArgop4::Putrootfh,
            NfsArgop4::Remove(RemoveArgs {
                target: Opaque::from("b"),
            }),
        ])
        .await;
    assert_eq!(status_at(&r, 2), Some(Nfsstat4::Rofs.code()), "{r:?}");
    let r = c
        .run(vec![NfsArgop4::Putrootfh, lookup("secret"), open_read("s")])
        .await;
    assert_eq!(status_at(&r, 2), Some(Nfsstat4::Noent.code()), "{r:?}");
    let r = c.run(vec![NfsArgop4::Putrootfh, open_read("secret")]).await;
    assert_eq!(status_at(&r, 2), Some(Nfsstat4::Noent.code()), "{r:?}");
}

#[tokio::test]
async fn each_export_has_its_own_rules() {
    let d = tempfile::tempdir().unwrap();
    build_tree(d.path()).await;
    let mut a = Export::new("/a").unwrap();
    a.root_squash = true;
    let mut bc = Export::new("/b/c").unwrap();
    bc.read_only = true;
    let s = start(d.path(), vec![a, bc]).await;
    let mut c = Client::new(&s).await;
    let r = c
        .run(vec![
            NfsArgop4::Putrootfh,
            lookup("a"),
            NfsArgop4::Getfh,
            NfsArgop4::Putrootfh,
            lookup("b"),
            lookup("c"),
            NfsArgop4::Getfh,
        ])
        .await;
    assert_eq!(r.status, 0, "{r:?}");
    let (a_fh, c_fh) = (fh_at(&r, 3), fh_at(&r, 7));
    // /a: read-write, root squashed: root may create (the directory is 0777) and the new
    // directory is nobody's, but may not open root's 0600 file.
    let r = c
        .run(vec![putfh(&a_fh), mkdir("made"), getattr(&[FATTR4_OWNER])])
        .await;
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(
        attrs_at(&r, 3).owner.unwrap().as_bytes(),
        b"65534",
        "root is squashed in /a"
    );
    let r = c.run(vec![putfh(&a_fh), open_read("f")]).await;
    assert_eq!(status_at(&r, 2), Some(Nfsstat4::Access.code()), "{r:?}");
    // /b/c: read-only, root not squashed: root reads its 0600 file, but changes nothing.
    let r = c.run(vec![putfh(&c_fh), open_read("g")]).await;
    assert_eq!(r.status, 0, "{r:?}");
    let r = c.run(vec![putfh(&c_fh), mkdir("made")]).await;
    assert_eq!(status_at(&r, 2), Some(Nfsstat4::Rofs.code()), "{r:?}");
    // In one COMPOUND, each op is judged by its own current file handle's export.
    let r = c
        .run(vec![
            putfh(&c_fh),
            lookup("g"),
            putfh(&a_fh),
            mkdir("again"),
        ])
        .await;
    assert_eq!(r.status, 0, "the rw export after the ro one: {r:?}");
    let r = c
        .run(vec![putfh(&a_fh), mkdir("x"), putfh(&c_fh), mkdir("y")])
        .await;
    assert_eq!(status_at(&r, 4), Some(Nfsstat4::Rofs.code()), "{r:?}");
    // RENAME and LINK do not cross exports.
    let r = c
        .run(vec![
            putfh(&c_fh),
            NfsArgop4::Savefh,
            putfh(&a_fh),
            NfsArgop4::Rename(RenameArgs {
                oldname: Opaque::from("g"),
                newname: Opaque::from("g"),
            }),
        ])
        .await;
    assert_eq!(status_at(&r, 4), Some(Nfsstat4::Xdev.code()), "{r:?}");
}

#[tokio::test]
async fn the_pseudo_root_lists_exactly_the_exports_this_client_may_use() {
    let d = tempfile::tempdir().unwrap();
    build_tree(d.path()).await;
    let mut a = Export::new("/a").unwrap();
    a.clients = vec!["127.0.0.0/8".parse::<AddrRange>().unwrap()];
    let bc = Export::new("/b/c").unwrap();
    let mut hidden = Export::new("/secret").unwrap();
    hidden.clients = vec!["10.9.9.0/24".parse::<AddrRange>().unwrap()];
    let s = start(d.path(), vec![a, bc, hidden]).await;
    let mut c = Client::new(&s).await;
    let r = c
        .run(vec![
            NfsArgop4::Putrootfh,
            readdir(),
            lookup("b"),
            readdir(),
        ])
        .await;
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(names(&r, 2), vec!["a", "b"]);
    assert_eq!(names(&r, 4), vec!["c"]);
    // The export this address may not use is neither listed nor reachable.
    let r = c.run(vec![NfsArgop4::Putrootfh, lookup("secret")]).await;
    assert_eq!(status_at(&r, 2), Some(Nfsstat4::Noent.code()), "{r:?}");
}
