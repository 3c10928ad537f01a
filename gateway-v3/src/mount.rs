//! MOUNT v3 (RFC 1813 appendix I): MNT hands out the handle of an export's root (or of a
//! directory below it, as knfsd allows) to an address the export admits; UMNT, UMNTALL and
//! DUMP keep no list (DUMP answers an empty one: the list is advisory and unbounded);
//! EXPORT lists the exports and their address ranges.
//!
//! MNT does not check the caller's flavor: Linux's mount.nfs sends it with AUTH_SYS whatever
//! `sec=` it mounts with, then picks its flavor from the export's list in the reply (and
//! refuses to mount if `sec=` is not in it). The NFS calls that follow are checked.
use crate::creds::Cred;
use crate::Shared;
use client::CompoundBuilder;
use proto::nfs3::*;
use proto::nfs4::*;
use proto::rpc::{accepted_reply, AcceptStat, Auth, Call};
use proto::xdr::{Opaque, Writer};
use std::net::IpAddr;
use std::sync::Arc;

pub async fn dispatch(s: &Arc<Shared>, peer: IpAddr, _cred: Cred, call: &Call) -> Option<Writer> {
    let args = match crate::call_args(call, Mount3Args::decode) {
        Ok(a) => a,
        Err(reply) => return reply,
    };
    let res = match args {
        Mount3Args::Null => Mount3Res::Void(MOUNTPROC3_NULL),
        Mount3Args::Mnt(p) => Mount3Res::Mnt(mnt(s, peer, &p).await),
        Mount3Args::Dump => Mount3Res::Dump(Mountlist::default()),
        Mount3Args::Umnt(_) => Mount3Res::Void(MOUNTPROC3_UMNT),
        Mount3Args::Umntall => Mount3Res::Void(MOUNTPROC3_UMNTALL),
        Mount3Args::Export => Mount3Res::Export(Exports {
            entries: s
                .exports
                .0
                .iter()
                .map(|e| Exportnode {
                    ex_dir: Dirpath(Opaque::from(e.path.as_str())),
                    ex_groups: e
                        .clients
                        .iter()
                        .map(|c| MntName(Opaque::from(c.as_str())))
                        .collect(),
                })
                .collect(),
        }),
    };
    let mut w = accepted_reply(call.xid, &Auth::None, AcceptStat::Success);
    res.encode(&mut w);
    Some(w)
}

fn err(s: Mountstat3) -> Mountres3 {
    Mountres3::Err(s.code())
}

async fn mnt(s: &Arc<Shared>, peer: IpAddr, p: &Dirpath) -> Mountres3 {
    let Ok(path) = std::str::from_utf8(p.0.as_bytes()) else {
        return err(Mountstat3::Noent);
    };
    let Some((rule, rest)) = s.exports.for_mount(path) else {
        return err(Mountstat3::Noent);
    };
    if !(rule.admits)(peer) {
        tracing::info!(%peer, path, "MOUNT refused by the export's rules");
        return err(Mountstat3::Acces);
    }
    let Ok((c, _)) = s.up.get().await else {
        return err(Mountstat3::Serverfault);
    };
    let mut b = CompoundBuilder::new().putrootfh();
    let export_comps: Vec<&str> = rule.path.split('/').filter(|c| !c.is_empty()).collect();
    for comp in &export_comps {
        b = b.lookup(comp);
    }
    b = b.getfh();
    for comp in &rest {
        b = b.lookup(comp);
    }
    let b = b.getfh().op(super::nfs3::getattr_op(&[FATTR4_TYPE]));
    let res = match c.compound(b).await {
        Ok(r) => r,
        Err(e) => {
            return err(match e.status() {
                Some(Nfsstat4::Noent) => Mountstat3::Noent,
                Some(Nfsstat4::Notdir) => Mountstat3::Notdir,
                Some(Nfsstat4::Access | Nfsstat4::Perm) => Mountstat3::Acces,
                Some(Nfsstat4::Nametoolong) => Mountstat3::Nametoolong,
                _ => Mountstat3::Serverfault,
            })
        }
    };
    let fhs: Vec<NfsFh4> = res
        .iter()
        .filter_map(|r| match r {
            NfsResop4::Getfh(GetfhRes::Ok(ok)) => Some(ok.object.clone()),
            _ => None,
        })
        .collect();
    let (Some(root), Some(fh)) = (fhs.first(), fhs.last()) else {
        return err(Mountstat3::Serverfault);
    };
    if let Ok(mut m) = s.roots.lock() {
        m.insert(rule.id, root.clone());
    }
    let is_dir = super::nfs3::all_attrs(&res)
        .pop()
        .is_some_and(|a| a.ftype == Some(NfsFtype4::Dir));
    if !is_dir {
        return err(Mountstat3::Notdir);
    }
    tracing::debug!(%peer, path, "mounted");
    Mountres3::Ok(Mountres3Ok {
        fhandle: Fhandle3(Opaque(fh.as_bytes().to_vec())),
        // The export's flavors in its order: Linux takes the first it supports.
        auth_flavors: rule.sec.clone(),
    })
}
