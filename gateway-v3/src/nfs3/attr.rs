//! GETATTR, SETATTR, ACCESS, READLINK.
use super::{all_attrs, getattr_op, writable, Req};
use crate::attrs::{fattr3, sattr, wcc, ATTRS};
use client::CompoundBuilder;
use proto::nfs3::*;
use proto::nfs4::*;

pub async fn getattr(q: &Req<'_>, a: Getattr3Args) -> Getattr3Res {
    let r = async {
        let o = q.obj(&a.object).await?;
        let res = q
            .run(
                &o,
                CompoundBuilder::new().putfh(&o.fh).op(getattr_op(ATTRS)),
            )
            .await?;
        let at = all_attrs(&res).pop().ok_or(Nfsstat3::Serverfault)?;
        Ok::<_, Nfsstat3>(fattr3(&q.fix(&o.fh, at)))
    }
    .await;
    match r {
        Ok(obj_attributes) => Getattr3Res::Ok(Getattr3ResOk { obj_attributes }),
        Err(e) => Getattr3Res::Fail(e.code(), ()),
    }
}

/// SETATTR as the caller (the MDS checks chown, chmod, utimes and truncate permissions inside
/// the change). The guard is a VERIFY of ctime in the same COMPOUND. A size change first
/// commits and closes the gateway's own open of the file, so data it still holds for the
/// layout cannot land after the truncation.
pub async fn setattr(q: &Req<'_>, a: Setattr3Args) -> Setattr3Res {
    let mut pre = None;
    let r = async {
        let o = q.obj(&a.object).await?;
        writable(&o)?;
        if a.new_attributes.size.is_some() {
            if let Some(e) = q.s.opens.take(&o.fh) {
                q.s.close_now(vec![e]).await;
            }
        }
        let before = q
            .run(
                &o,
                CompoundBuilder::new().putfh(&o.fh).op(getattr_op(ATTRS)),
            )
            .await?;
        pre = all_attrs(&before).pop();
        let mut b = CompoundBuilder::new().putfh(&o.fh);
        if let Some(t) = a.guard {
            b = b.op(NfsArgop4::Verify(VerifyArgs {
                obj_attributes: FileAttrs {
                    time_metadata: Some(Nfstime4 {
                        seconds: i64::from(t.seconds),
                        nseconds: t.nseconds,
                    }),
                    ..Default::default()
                }
                .encode_all(),
            }));
        }
        let b = b
            .op(NfsArgop4::Setattr(SetattrArgs {
                stateid: Stateid4::ANONYMOUS,
                obj_attributes: sattr(&a.new_attributes).encode_all(),
            }))
            .op(getattr_op(ATTRS));
        match o.c.compound(b).await {
            Ok(res) => Ok(all_attrs(&res).pop()),
            Err(client::Error::Nfs {
                status: Nfsstat4::NotSame,
                ..
            }) => Err(Nfsstat3::NotSync),
            Err(e) => Err(q.fail(&o, e).await),
        }
    }
    .await;
    match r {
        Ok(after) => Setattr3Res::Ok(Setattr3ResBody {
            obj_wcc: wcc(pre.as_ref(), after.as_ref()),
        }),
        Err(e) => Setattr3Res::Fail(
            e.code(),
            Setattr3ResBody {
                obj_wcc: wcc(pre.as_ref(), None),
            },
        ),
    }
}

/// ACCESS is NFSv4 ACCESS as the caller (the bits are the same); a read-only export takes
/// away the changing ones, as knfsd does.
pub async fn access(q: &Req<'_>, a: Access3Args) -> Access3Res {
    let r = async {
        let o = q.obj(&a.object).await?;
        let res = q
            .run(
                &o,
                CompoundBuilder::new()
                    .putfh(&o.fh)
                    .op(getattr_op(ATTRS))
                    .op(NfsArgop4::Access(AccessArgs {
                        access: a.access & 0x3f,
                    })),
            )
            .await?;
        let at = all_attrs(&res).pop().map(|x| q.fix(&o.fh, x));
        let mut granted = res
            .iter()
            .find_map(|r| match r {
                NfsResop4::Access(AccessRes::Ok(ok)) => Some(ok.access),
                _ => None,
            })
            .ok_or(Nfsstat3::Serverfault)?;
        if o.rule.read_only {
            granted &= !(ACCESS3_MODIFY | ACCESS3_EXTEND | ACCESS3_DELETE);
        }
        Ok::<_, Nfsstat3>(Access3ResOk {
            obj_attributes: at.as_ref().map(fattr3),
            access: granted & a.access,
        })
    }
    .await;
    match r {
        Ok(ok) => Access3Res::Ok(ok),
        Err(e) => Access3Res::Fail(e.code(), Default::default()),
    }
}

pub async fn readlink(q: &Req<'_>, a: Readlink3Args) -> Readlink3Res {
    let r = async {
        let o = q.obj(&a.symlink).await?;
        let res = q
            .run(
                &o,
                CompoundBuilder::new()
                    .putfh(&o.fh)
                    .op(getattr_op(ATTRS))
                    .op(NfsArgop4::Readlink),
            )
            .await?;
        let at = all_attrs(&res).pop();
        let data = res
            .iter()
            .find_map(|r| match r {
                NfsResop4::Readlink(ReadlinkRes::Ok(ok)) => Some(ok.link.clone()),
                _ => None,
            })
            .ok_or(Nfsstat3::Serverfault)?;
        Ok::<_, Nfsstat3>(Readlink3ResOk {
            symlink_attributes: at.as_ref().map(fattr3),
            data,
        })
    }
    .await;
    match r {
        Ok(ok) => Readlink3Res::Ok(ok),
        // READLINK of a non-symlink is INVAL in v3 (knfsd).
        Err(Nfsstat3::Badtype) => Readlink3Res::Fail(Nfsstat3::Inval.code(), Default::default()),
        Err(e) => Readlink3Res::Fail(e.code(), Default::default()),
    }
}
