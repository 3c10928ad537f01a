//! FSSTAT, FSINFO, PATHCONF: the MDS's real numbers (space and files from its statvfs, name
//! and link limits), and the gateway's transfer sizes.
use super::{all_attrs, getattr_op, Req};
use crate::attrs::{fattr3, ATTRS};
use client::CompoundBuilder;
use proto::nfs3::*;
use proto::nfs4::*;

async fn attrs(q: &Req<'_>, fh: &NfsFh3, extra: &[u32]) -> Result<FileAttrs, Nfsstat3> {
    let o = q.obj(fh).await?;
    let bits: Vec<u32> = ATTRS.iter().chain(extra).copied().collect();
    let res = q
        .run(
            &o,
            CompoundBuilder::new().putfh(&o.fh).op(getattr_op(&bits)),
        )
        .await?;
    all_attrs(&res).pop().ok_or(Nfsstat3::Serverfault)
}

pub async fn fsstat(q: &Req<'_>, a: Fsstat3Args) -> Fsstat3Res {
    let extra = [
        FATTR4_SPACE_AVAIL,
        FATTR4_SPACE_FREE,
        FATTR4_SPACE_TOTAL,
        FATTR4_FILES_AVAIL,
        FATTR4_FILES_FREE,
        FATTR4_FILES_TOTAL,
    ];
    match attrs(q, &a.fsroot, &extra).await {
        Ok(at) => Fsstat3Res::Ok(Fsstat3ResOk {
            obj_attributes: Some(fattr3(&at)),
            tbytes: at.space_total.unwrap_or(0),
            fbytes: at.space_free.unwrap_or(0),
            abytes: at.space_avail.unwrap_or(0),
            tfiles: at.files_total.unwrap_or(0),
            ffiles: at.files_free.unwrap_or(0),
            afiles: at.files_avail.unwrap_or(0),
            invarsec: 0,
        }),
        Err(e) => Fsstat3Res::Fail(e.code(), Default::default()),
    }
}

pub async fn fsinfo(q: &Req<'_>, a: Fsinfo3Args) -> Fsinfo3Res {
    let extra = [FATTR4_MAXFILESIZE, FATTR4_MAXREAD, FATTR4_MAXWRITE];
    match attrs(q, &a.fsroot, &extra).await {
        Ok(at) => {
            let cap = |v: Option<u64>| {
                v.map(|v| v.min(u64::from(crate::MAX_IO)) as u32)
                    .unwrap_or(crate::MAX_IO)
                    .max(4096)
            };
            let (rt, wt) = (cap(at.maxread), cap(at.maxwrite));
            Fsinfo3Res::Ok(Fsinfo3ResOk {
                obj_attributes: Some(fattr3(&at)),
                rtmax: rt,
                rtpref: rt,
                rtmult: 4096,
                wtmax: wt,
                wtpref: wt,
                wtmult: 4096,
                dtpref: 64 * 1024,
                maxfilesize: at.maxfilesize.unwrap_or(i64::MAX as u64),
                time_delta: Nfstime3 {
                    seconds: 0,
                    nseconds: 1,
                },
                properties: FSF3_LINK | FSF3_SYMLINK | FSF3_HOMOGENEOUS | FSF3_CANSETTIME,
            })
        }
        Err(e) => Fsinfo3Res::Fail(e.code(), Default::default()),
    }
}

pub async fn pathconf(q: &Req<'_>, a: Pathconf3Args) -> Pathconf3Res {
    let extra = [
        FATTR4_MAXLINK,
        FATTR4_MAXNAME,
        FATTR4_NO_TRUNC,
        FATTR4_CHOWN_RESTRICTED,
        FATTR4_CASE_INSENSITIVE,
        FATTR4_CASE_PRESERVING,
    ];
    match attrs(q, &a.object, &extra).await {
        Ok(at) => Pathconf3Res::Ok(Pathconf3ResOk {
            obj_attributes: Some(fattr3(&at)),
            linkmax: at.maxlink.unwrap_or(u32::MAX),
            name_max: at.maxname.unwrap_or(255),
            no_trunc: at.no_trunc.unwrap_or(true),
            chown_restricted: at.chown_restricted.unwrap_or(true),
            case_insensitive: at.case_insensitive.unwrap_or(false),
            case_preserving: at.case_preserving.unwrap_or(true),
        }),
        Err(e) => Pathconf3Res::Fail(e.code(), Default::default()),
    }
}
