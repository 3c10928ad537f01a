//! Extended attributes (RFC 8276, issue 44) over the wire against a real server: the flags
//! and their errors, the limits, Linux's permission rules as another user, what ACCESS says,
//! the change attribute, LISTXATTRS's cookies and sizes, and the attributes after a restart.
use crate::common;
use common::*;
use mds::config::Export;
use mds::{Server, ServerConfig};
use proto::nfs4::attr::{Bitmap, FileAttrs, FATTR4_CHANGE};
use proto::nfs4::*;
use proto::rpc::{Auth, Connection};
use proto::xdr::Opaque;

const NOXATTR: u32 = 10095;
const XATTR2BIG: u32 = 10096;
const EXIST: u32 = 17;
const ACCESS: u32 = 13;
const NOSPC: u32 = 28;
const TOOSMALL: u32 = 10005;
const BADCOOKIE: u32 = 10003;

/// A session on one connection, numbering its own requests.
struct S {
    c: Connection,
    sid: Sessionid4,
    seq: u32,
}

impl S {
    async fn new(server: &Server) -> S {
        let c = connect(server).await;
        let sid = session(&c).await;
        S { c, sid, seq: 0 }
    }

    /// `ops` on `path` (names from the root), as `cred`; the whole reply.
    async fn on(&mut self, cred: &Auth, path: &[&str], ops: Vec<NfsArgop4>) -> Compound4Res {
        self.seq += 1;
        let mut all = vec![seq(self.sid, self.seq), NfsArgop4::Putrootfh];
        all.extend(path.iter().map(|n| {
            NfsArgop4::Lookup(LookupArgs {
                objname: Opaque::from(*n),
            })
        }));
        all.extend(ops);
        compound_as_minor(&self.c, cred, 2, all).await
    }

    /// One xattr operation on `path` as root: its status and result.
    async fn op(&mut self, path: &[&str], op: NfsArgop4) -> (u32, NfsResop4) {
        self.op_as(&root(), path, op).await
    }

    async fn op_as(&mut self, cred: &Auth, path: &[&str], op: NfsArgop4) -> (u32, NfsResop4) {
        let n = path.len() + 2;
        let r = self.on(cred, path, vec![op]).await;
        let res = r
            .resarray
            .get(n)
            .cloned()
            .unwrap_or_else(|| panic!("{r:?}"));
        (r.status, res)
    }

    async fn change(&mut self, path: &[&str]) -> u64 {
        let r = self
            .on(
                &root(),
                path,
                vec![NfsArgop4::Getattr(GetattrArgs {
                    attr_request: Bitmap::from_bits(&[FATTR4_CHANGE]).to_vec(),
                })],
            )
            .await;
        let Some(NfsResop4::Getattr(GetattrRes::Ok(g))) = r.resarray.last() else {
            panic!("{r:?}")
        };
        FileAttrs::decode(&g.obj_attributes)
            .unwrap()
            .change
            .unwrap()
    }
}

async fn compound_as_minor(
    c: &Connection,
    cred: &Auth,
    minor: u32,
    ops: Vec<NfsArgop4>,
) -> Compound4Res {
    use proto::xdr::Xdr;
    let args = Compound4Args {
        tag: Opaque::default(),
        minorversion: minor,
        argarray: ops,
    };
    raw_compound_as(c, cred, &args.to_xdr()).await
}

fn set(name: &str, value: &[u8], how: SetxattrOption4) -> NfsArgop4 {
    NfsArgop4::Setxattr(SetxattrArgs {
        sxa_option: how,
        sxa_key: Opaque::from(name),
        sxa_value: Opaque::from(value),
    })
}

fn get(name: &str) -> NfsArgop4 {
    NfsArgop4::Getxattr(GetxattrArgs {
        gxa_name: Opaque::from(name),
    })
}

fn remove(name: &str) -> NfsArgop4 {
    NfsArgop4::Removexattr(RemovexattrArgs {
        rxa_name: Opaque::from(name),
    })
}

fn list(cookie: u64, maxcount: u32) -> NfsArgop4 {
    NfsArgop4::Listxattrs(ListxattrsArgs {
        lxa_cookie: cookie,
        lxa_maxcount: maxcount,
    })
}

fn value(r: &NfsResop4) -> Vec<u8> {
    match r {
        NfsResop4::Getxattr(GetxattrRes::Ok(ok)) => ok.gxr_value.as_bytes().to_vec(),
        other => panic!("{other:?}"),
    }
}

fn names(r: &NfsResop4) -> (Vec<String>, u64, bool) {
    match r {
        NfsResop4::Listxattrs(ListxattrsRes::Ok(ok)) => (
            ok.lxr_names
                .iter()
                .map(|n| String::from_utf8_lossy(n.as_bytes()).into_owned())
                .collect(),
            ok.lxr_cookie,
            ok.lxr_eof,
        ),
        other => panic!("{other:?}"),
    }
}

/// Makes /f (mode 0644, root's) with an OPEN and a CLOSE-less compound.
async fn make_file(s: &mut S, name: &str) {
    let attrs = FileAttrs {
        mode: Some(0o644),
        ..Default::default()
    }
    .encode_all();
    let r = s
        .on(&root(), &[], vec![open_create(name, "o", attrs)])
        .await;
    assert_eq!(r.status, 0, "{r:?}");
}

#[tokio::test]
async fn set_get_list_remove_follow_rfc_8276() {
    let (server, _d) = server().await;
    let mut s = S::new(&server).await;
    make_file(&mut s, "f").await;
    let f = &["f"][..];
    let (st, _) = s.op(f, get("color")).await;
    assert_eq!(st, NOXATTR, "nothing set yet");
    let before = s.change(f).await;
    let (st, r) = s
        .op(f, set("color", b"blue", SetxattrOption4::Create))
        .await;
    assert_eq!(st, 0, "{r:?}");
    let NfsResop4::Setxattr(SetxattrRes::Ok(ok)) = r else {
        panic!("{r:?}")
    };
    let after = s.change(f).await;
    assert!(
        after > before,
        "the change attribute moves: {before} -> {after}"
    );
    assert_eq!((ok.sxr_info.before, ok.sxr_info.after), (before, after));
    assert_eq!(value(&s.op(f, get("color")).await.1), b"blue");
    let (st, _) = s.op(f, set("color", b"red", SetxattrOption4::Create)).await;
    assert_eq!(st, EXIST, "create over an existing name");
    let (st, _) = s
        .op(f, set("shape", b"round", SetxattrOption4::Replace))
        .await;
    assert_eq!(st, NOXATTR, "replace of a missing name");
    let (st, _) = s
        .op(f, set("color", b"red", SetxattrOption4::Replace))
        .await;
    assert_eq!(st, 0);
    let (st, _) = s.op(f, set("empty", b"", SetxattrOption4::Either)).await;
    assert_eq!(st, 0);
    assert_eq!(value(&s.op(f, get("color")).await.1), b"red");
    assert_eq!(value(&s.op(f, get("empty")).await.1), b"");
    let (st, r) = s.op(f, list(0, 4096)).await;
    assert_eq!(st, 0);
    assert_eq!(names(&r), (vec!["color".into(), "empty".into()], 2, true));
    // A listing in pieces: room for one name at a time, resumed at the cookie.
    let (_, r) = s.op(f, list(0, 16 + 12)).await;
    assert_eq!(names(&r), (vec!["color".into()], 1, false));
    let (_, r) = s.op(f, list(1, 16 + 12)).await;
    assert_eq!(names(&r), (vec!["empty".into()], 2, true));
    assert_eq!(s.op(f, list(0, 16 + 4)).await.0, TOOSMALL);
    assert_eq!(s.op(f, list(3, 4096)).await.0, BADCOOKIE);
    let (st, r) = s.op(f, remove("color")).await;
    assert_eq!(st, 0, "{r:?}");
    assert_eq!(s.op(f, get("color")).await.0, NOXATTR);
    assert_eq!(s.op(f, remove("color")).await.0, NOXATTR);
    // A directory has them too.
    let r = s.on(&root(), &[], vec![mkdir("d")]).await;
    assert_eq!(r.status, 0);
    assert_eq!(
        s.op(&["d"], set("pin", b"hot", SetxattrOption4::Either))
            .await
            .0,
        0
    );
    assert_eq!(value(&s.op(&["d"], get("pin")).await.1), b"hot");
    server.shutdown().await;
}

#[tokio::test]
async fn limits_and_permissions_are_enforced() {
    let (server, _d) = server().await;
    let mut s = S::new(&server).await;
    make_file(&mut s, "f").await;
    let f = &["f"][..];
    let big = vec![7u8; 65_536];
    assert_eq!(
        s.op(f, set("big", &big, SetxattrOption4::Either)).await.0,
        0
    );
    assert_eq!(value(&s.op(f, get("big")).await.1), big);
    let over = vec![7u8; 65_537];
    assert_eq!(
        s.op(f, set("big2", &over, SetxattrOption4::Either)).await.0,
        XATTR2BIG
    );
    assert_eq!(
        s.op(f, set("big2", &big[..65_000], SetxattrOption4::Either))
            .await
            .0,
        0
    );
    // Past the per-file total (128 KiB of names and values).
    assert_eq!(
        s.op(f, set("big3", &big[..2_000], SetxattrOption4::Either))
            .await
            .0,
        NOSPC
    );
    // Another user reads a readable file's attributes but may not change them.
    let other = user(1000);
    let (st, r) = s.op_as(&other, f, get("big2")).await;
    assert_eq!((st, value(&r).len()), (0, 65_000));
    assert_eq!(
        s.op_as(&other, f, set("x", b"1", SetxattrOption4::Either))
            .await
            .0,
        ACCESS
    );
    assert_eq!(s.op_as(&other, f, remove("big")).await.0, ACCESS);
    // ACCESS says so before the client tries (the Linux client asks first).
    const XA: u32 = ACCESS4_XAREAD | ACCESS4_XAWRITE | ACCESS4_XALIST;
    let access = |r: &NfsResop4| match r {
        NfsResop4::Access(AccessRes::Ok(ok)) => (ok.supported, ok.access),
        other => panic!("{other:?}"),
    };
    let (_, r) = s
        .op_as(&other, f, NfsArgop4::Access(AccessArgs { access: XA }))
        .await;
    assert_eq!(access(&r), (XA, ACCESS4_XAREAD | ACCESS4_XALIST));
    let (_, r) = s.op(f, NfsArgop4::Access(AccessArgs { access: XA })).await;
    assert_eq!(access(&r), (XA, XA));
    server.shutdown().await;
}

#[tokio::test]
async fn xattrs_survive_a_restart_and_go_with_their_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = || ServerConfig {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        exports: vec![Export::new("/").unwrap()],
        lease_seconds: 30,
        write_delegations: true,
        grace_seconds: None,
        cluster: None,
        connections: Default::default(),
        members: None,
        client_addresses: Default::default(),
        tier: None,
    };
    let server = Server::start(cfg()).await.unwrap();
    let mut s = S::new(&server).await;
    make_file(&mut s, "f").await;
    make_file(&mut s, "g").await;
    assert_eq!(s.on(&root(), &[], vec![mkdir("d")]).await.status, 0);
    assert_eq!(
        s.op(&["f"], set("a", b"1", SetxattrOption4::Either))
            .await
            .0,
        0
    );
    assert_eq!(
        s.op(&["d"], set("b", b"2", SetxattrOption4::Either))
            .await
            .0,
        0
    );
    assert_eq!(
        s.op(&["g"], set("c", b"3", SetxattrOption4::Either))
            .await
            .0,
        0
    );
    // Removed and made again under the same name: a new file, without the old attributes.
    let r = s
        .on(
            &root(),
            &[],
            vec![NfsArgop4::Remove(RemoveArgs {
                target: Opaque::from("g"),
            })],
        )
        .await;
    assert_eq!(r.status, 0, "{r:?}");
    make_file(&mut s, "g").await;
    let (_, r) = s.op(&["g"], list(0, 4096)).await;
    assert_eq!(names(&r), (Vec::new(), 0, true));
    s.c.close();
    server.shutdown().await;

    // What was acknowledged is on disk: the restarted server answers with it. (The first
    // instance lets go of its namespace once its connections' tasks end: retried until then.)
    let mut tries = 0;
    let server = loop {
        match Server::start(cfg()).await {
            Ok(s) => break s,
            Err(e) => {
                tries += 1;
                assert!(tries < 100, "restart: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    };
    let mut s = S::new(&server).await;
    assert_eq!(value(&s.op(&["f"], get("a")).await.1), b"1");
    assert_eq!(value(&s.op(&["d"], get("b")).await.1), b"2");
    let (_, r) = s.op(&["g"], list(0, 4096)).await;
    assert_eq!(names(&r), (Vec::new(), 0, true));
    s.c.close();
    server.shutdown().await;
}
