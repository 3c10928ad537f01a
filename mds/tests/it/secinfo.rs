//! Per-export security flavors seen from an AUTH_SYS client (the RPCSEC_GSS side, with a real
//! KDC, is in `cfs/tests/kerberos.rs`): SECINFO announces the export's flavors in its order,
//! and a flavor the export does not allow gets NFS4ERR_WRONGSEC where RFC 8881 §2.6.3.1 puts it.
use crate::common;
use common::*;
use mds::config::{Export, SecFlavor};
use proto::nfs4::basic::RpcGssSvc;
use proto::nfs4::fileops::{RpcsecGssInfo, Secinfo4, SecinfoNoNameArgs, SecinfoStyle4};
use proto::nfs4::*;

fn secinfo_no_name() -> NfsArgop4 {
    NfsArgop4::SecinfoNoName(SecinfoNoNameArgs {
        style: SecinfoStyle4::CurrentFh,
    })
}

fn gss(service: RpcGssSvc) -> Secinfo4 {
    Secinfo4::RpcsecGss(RpcsecGssInfo {
        oid: krb::KRB5_OID.to_vec().into(),
        qop: 0,
        service,
    })
}

#[tokio::test]
async fn secinfo_lists_the_exports_flavors_in_its_order() {
    let mut e = Export::new("/").unwrap();
    e.sec = vec![
        SecFlavor::Krb5p,
        SecFlavor::Krb5i,
        SecFlavor::Krb5,
        SecFlavor::Sys,
    ];
    let (s, _d) = server_with(e).await;
    let c = connect(&s).await;
    let sid = session(&c).await;
    let r = compound(
        &c,
        1,
        vec![seq(sid, 1), NfsArgop4::Putrootfh, secinfo_no_name()],
    )
    .await;
    assert_eq!(r.status, 0, "{r:?}");
    let Some(NfsResop4::SecinfoNoName(SecinfoRes::Ok(list))) = r.resarray.last() else {
        panic!("{r:?}");
    };
    assert_eq!(
        list.0,
        vec![
            gss(RpcGssSvc::Privacy),
            gss(RpcGssSvc::Integrity),
            gss(RpcGssSvc::None),
            Secinfo4::Flavor(proto::nfs4::basic::AUTH_SYS),
        ]
    );
}

#[tokio::test]
async fn sys_on_a_krb5p_only_export_gets_wrongsec_but_may_ask_secinfo() {
    let mut e = Export::new("/").unwrap();
    e.sec = vec![SecFlavor::Krb5p];
    let (s, _d) = server_with(e).await;
    let c = connect(&s).await;
    // The session and client-ID operations use no file handle: sys may set them up (Linux
    // sends them with its machine credential, whatever the export wants).
    let sid = session(&c).await;
    // PUTROOTFH whose result GETATTR would use: refused on the PUTROOTFH.
    let r = compound(
        &c,
        1,
        vec![seq(sid, 1), NfsArgop4::Putrootfh, NfsArgop4::Getfh],
    )
    .await;
    assert_eq!(r.status, Nfsstat4::Wrongsec.code(), "{r:?}");
    assert_eq!(r.resarray.len(), 2, "the PUTROOTFH is the one refused");
    // Followed by SECINFO_NO_NAME it stands, and the answer says krb5p.
    let r = compound(
        &c,
        1,
        vec![seq(sid, 2), NfsArgop4::Putrootfh, secinfo_no_name()],
    )
    .await;
    assert_eq!(r.status, 0, "{r:?}");
    let Some(NfsResop4::SecinfoNoName(SecinfoRes::Ok(list))) = r.resarray.last() else {
        panic!("{r:?}");
    };
    assert_eq!(list.0, vec![gss(RpcGssSvc::Privacy)]);
    // A PUTROOTFH nothing uses is not refused (RFC 8881 §2.6.3.1.1.6).
    let r = compound(&c, 1, vec![seq(sid, 3), NfsArgop4::Putrootfh]).await;
    assert_eq!(r.status, 0, "{r:?}");
    // Nothing changes: a create is refused before it runs.
    let r = compound(&c, 1, vec![seq(sid, 4), NfsArgop4::Putrootfh, mkdir("d")]).await;
    assert_eq!(r.status, Nfsstat4::Wrongsec.code(), "{r:?}");
}
