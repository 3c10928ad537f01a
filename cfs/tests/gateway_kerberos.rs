//! The NFSv3 gateway with RPCSEC_GSS against a throwaway MIT realm (krb5kdc on loopback) and a
//! real `cfs server` (MDS and gateway in one process): MOUNT announces each export's flavors
//! in its order, a krb5i caller mounts, creates, writes and reads back as the user its
//! principal maps to, and an export that allows only krb5p refuses sys and krb5i calls with
//! NFS3ERR_ACCES (as knfsd) while krb5p gets in; NLM (AUTH_SYS from Linux's lockd whatever
//! the mount's flavor) still locks there.
mod common;
#[path = "../../krb/tests/common/kdc.rs"]
mod kdc;

use common::v3::*;
use common::{free_port, rt, Server};
use kdc::REALM;
use proto::nfs3::*;
use proto::nlm::Nlm4Stats;
use proto::rpc::gss::GssService;
use std::net::SocketAddr;

const KRB5: u32 = krb::PSEUDO_KRB5;
const KRB5I: u32 = krb::PSEUDO_KRB5I;
const KRB5P: u32 = krb::PSEUDO_KRB5P;
const ACCES: u32 = 13;

async fn gss(addr: SocketAddr, svc: GssService) -> V3 {
    let mut c = V3::connect(addr).await;
    c.gss = Some(krb::GssClient::new("nfs", "localhost", svc));
    c
}

fn flavors(m: Mountres3) -> (NfsFh3, Vec<u32>) {
    match m {
        Mountres3::Ok(ok) => (NfsFh3 { data: ok.fhandle.0 }, ok.auth_flavors),
        Mountres3::Err(e) => panic!("MNT refused: {e}"),
    }
}

#[test]
fn krb5i_mounts_and_writes_as_the_mapped_user_and_krb5p_only_refuses_the_others() {
    // One test (one process environment): the realm's variables and alice's ticket cache
    // are this process's, which the GSS-API reads.
    let kdc = kdc::realm_for_tests(&["alice"]);
    std::env::set_var(
        "KRB5CCNAME",
        format!("FILE:{}", kdc.path("alice.cc").display()),
    );
    let t = tempfile::tempdir().unwrap();
    let gw: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let gateway = format!("[gateway]\nlisten = \"{gw}\"\nrpcbind = \"off\"\n");
    // The export directories first, through a sys export, as root.
    let mut s = Server::start(
        t.path(),
        Some(&format!("[[export]]\npath = \"/\"\n{gateway}")),
    );
    let rt = rt();
    rt.block_on(async {
        let c = V3::connect(gw).await;
        let root = c.root("/").await;
        for d in ["k5i", "k5p"] {
            match c
                .nfs(Nfs3Args::Mkdir(Mkdir3Args {
                    r#where: dirop(&root, d),
                    attributes: Sattr3 {
                        mode: Some(0o777),
                        ..Default::default()
                    },
                }))
                .await
            {
                Nfs3Res::Mkdir(Create3Res::Ok(_)) => {}
                other => panic!("MKDIR {d}: {other:?}"),
            }
        }
    });
    s.kill();
    // Both exports take the gateway's own AUTH_SYS hop from loopback (README: the gateway
    // forwards each caller's mapped ids).
    std::fs::write(
        s.config.as_ref().unwrap(),
        format!(
            "[kerberos]\nkeytab = \"{}\"\n[kerberos.principals]\n\"alice@{REALM}\" = \"1234:1234\"\n\
             [[export]]\npath = \"/k5i\"\nsec = [\"krb5i\", \"krb5\"]\ngateways = [\"127.0.0.1/32\"]\n\
             [[export]]\npath = \"/k5p\"\nsec = [\"krb5p\"]\ngateways = [\"127.0.0.1/32\"]\n{gateway}",
            kdc.path("server.keytab").display()
        ),
    )
    .unwrap();
    s.restart();
    rt.block_on(async {
        // krb5i: MOUNT announces the export's order; the file is alice's mapped user's.
        let c = gss(gw, GssService::Integrity).await;
        let (root, fl) = flavors(c.mnt("/k5i").await);
        assert_eq!(fl, vec![KRB5I, KRB5], "flavors in the export's order");
        let f = c.new_file(&root, "f").await;
        let data = b"krb5i through the gateway".repeat(100);
        c.write(&f, 0, &data, StableHow::FileSync)
            .await
            .expect("krb5i WRITE");
        assert_eq!(c.read_all(&f).await, data);
        let a = c.getattr(&f).await.expect("krb5i GETATTR");
        assert_eq!((a.uid, a.gid), (1234, 1234), "owned by alice's mapped ids");

        // A sys caller: MNT answers (Linux mounts with AUTH_SYS and picks from the list),
        // then every NFS call on the krb5p-only export is refused.
        let sysc = V3::connect(gw).await;
        let (p_root, fl) = flavors(sysc.mnt("/k5p").await);
        assert_eq!(fl, vec![KRB5P]);
        assert_eq!(
            sysc.getattr(&p_root).await.unwrap_err(),
            ACCES,
            "sys GETATTR"
        );
        assert_eq!(
            sysc.lookup(&p_root, "x").await.unwrap_err(),
            ACCES,
            "sys LOOKUP"
        );
        // ... and on the krb5i export, which does not list sys either.
        assert_eq!(sysc.getattr(&root).await.unwrap_err(), ACCES);
        assert_eq!(flavors(sysc.mnt("/k5i").await).1, vec![KRB5I, KRB5]);
        // krb5i on the krb5p-only export: refused too.
        assert_eq!(
            c.getattr(&p_root).await.unwrap_err(),
            ACCES,
            "krb5i on krb5p"
        );
        // krb5p gets in, and writes as alice.
        let p = gss(gw, GssService::Privacy).await;
        p.getattr(&p_root).await.expect("krb5p GETATTR");
        let pf = p.new_file(&p_root, "secret").await;
        p.write(&pf, 0, b"sealed", StableHow::FileSync)
            .await
            .expect("krb5p WRITE");
        assert_eq!(p.read_all(&pf).await, b"sealed");
        assert_eq!(p.getattr(&pf).await.unwrap().uid, 1234);
        // The sys caller cannot read it by handle either.
        assert_eq!(sysc.getattr(&pf).await.unwrap_err(), ACCES);
        // NLM is not checked: Linux's lockd sends it with AUTH_SYS on a krb5p mount too
        // (knfsd lets it through the same way); its locks still conflict.
        let l = nlm_lock("krbhost", 7, &pf, 0, 10);
        assert_eq!(sysc.nlm_lock(&l, true, false).await, Nlm4Stats::Granted);
        let other = nlm_lock("otherhost", 8, &pf, 5, 10);
        assert_eq!(sysc.nlm_lock(&other, true, false).await, Nlm4Stats::Denied);
        assert_eq!(sysc.nlm_unlock(&l).await, Nlm4Stats::Granted);
    });
}
