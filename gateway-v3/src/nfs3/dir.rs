//! LOOKUP, CREATE, MKDIR, SYMLINK, MKNOD, REMOVE, RMDIR, RENAME, LINK. Each change runs as the
//! caller, with the directory's attributes before and after in the same COMPOUND (wcc_data).
use super::{all_attrs, component, getattr_op, last_fh, writable, Obj, Req};
use crate::attrs::{fattr3, sattr, wcc, ATTRS};
use crate::fh::to_v3;
use client::{CompoundBuilder, CreateMode, SetAttrs};
use proto::nfs3::*;
use proto::nfs4::*;
use proto::xdr::Opaque;

/// The root of the export `o` is in (LOOKUP ".." there stays at the root: a v3 client never
/// climbs out of what it mounted).
async fn export_root(q: &Req<'_>, o: &Obj<'_>) -> Result<NfsFh4, Nfsstat3> {
    if let Some(fh) =
        q.s.roots
            .lock()
            .ok()
            .and_then(|m| m.get(&o.rule.id).cloned())
    {
        return Ok(fh);
    }
    let mut b = CompoundBuilder::new().putrootfh();
    for c in o.rule.path.split('/').filter(|c| !c.is_empty()) {
        b = b.lookup(c);
    }
    let res = match o.gw.compound(b.getfh()).await {
        Ok(r) => r,
        Err(e) => return Err(q.fail(o, e).await),
    };
    let fh = last_fh(&res).ok_or(Nfsstat3::Serverfault)?;
    if let Ok(mut m) = q.s.roots.lock() {
        m.insert(o.rule.id, fh.clone());
    }
    Ok(fh)
}

pub async fn lookup(q: &Req<'_>, a: Lookup3Args) -> Lookup3Res {
    let r = async {
        let o = q.obj(&a.what.dir).await?;
        let name = a.what.name.as_bytes();
        let step = match name {
            b"." => None,
            b".." => {
                if export_root(q, &o).await? == o.fh {
                    None
                } else {
                    Some(NfsArgop4::Lookupp)
                }
            }
            _ => Some(NfsArgop4::Lookup(LookupArgs {
                objname: component(&a.what.name),
            })),
        };
        let mut b = CompoundBuilder::new().putfh(&o.fh);
        if let Some(s) = step {
            b = b.op(s);
        }
        let b = b
            .getfh()
            .op(getattr_op(ATTRS))
            .putfh(&o.fh)
            .op(getattr_op(ATTRS));
        let res = q.run(&o, b).await?;
        let fh = last_fh(&res).ok_or(Nfsstat3::Serverfault)?;
        let mut at = all_attrs(&res).into_iter();
        let obj = at.next().map(|x| q.fix(&fh, x));
        let dir = at.next();
        Ok::<_, Nfsstat3>(Lookup3ResOk {
            object: to_v3(&fh)?,
            obj_attributes: obj.as_ref().map(fattr3),
            dir_attributes: dir.as_ref().map(fattr3),
        })
    }
    .await;
    match r {
        Ok(ok) => Lookup3Res::Ok(ok),
        Err(e) => Lookup3Res::Fail(e.code(), Default::default()),
    }
}

/// The directory's attributes, for wcc before a change made in another COMPOUND.
async fn dir_attrs(q: &Req<'_>, o: &Obj<'_>) -> Option<FileAttrs> {
    let res =
        o.c.compound(CompoundBuilder::new().putfh(&o.fh).op(getattr_op(ATTRS)))
            .await
            .ok()?;
    all_attrs(&res).pop().map(|a| q.fix(&o.fh, a))
}

fn set_attrs(s: &Sattr3) -> SetAttrs {
    let f = sattr(s);
    SetAttrs {
        mode: f.mode,
        size: f.size,
        owner: f
            .owner
            .map(|o| String::from_utf8_lossy(o.as_bytes()).into_owned()),
        group: f
            .owner_group
            .map(|o| String::from_utf8_lossy(o.as_bytes()).into_owned()),
        atime: f.time_access_set,
        mtime: f.time_modify_set,
    }
}

fn created(
    fh: &NfsFh4,
    obj: Option<&FileAttrs>,
    before: Option<&FileAttrs>,
    after: Option<&FileAttrs>,
) -> Create3Res {
    match to_v3(fh) {
        Ok(h) => Create3Res::Ok(Create3ResOk {
            obj: Some(h),
            obj_attributes: obj.map(fattr3),
            dir_wcc: wcc(before, after),
        }),
        Err(e) => Create3Res::Fail(e.code(), WccResFail::default()),
    }
}

/// CREATE of a regular file is an NFSv4 OPEN with create, as the caller: UNCHECKED, GUARDED,
/// or EXCLUSIVE (EXCLUSIVE4_1 with the client's verifier, so a retransmitted create succeeds
/// and another client's gets EXIST). The open is kept for the WRITEs that follow.
pub async fn create(q: &Req<'_>, a: Create3Args) -> Create3Res {
    let mut before = None;
    let r = async {
        let o = q.obj(&a.r#where.dir).await?;
        writable(&o)?;
        let name =
            String::from_utf8(a.r#where.name.as_bytes().to_vec()).map_err(|_| Nfsstat3::Inval)?;
        before = dir_attrs(q, &o).await;
        let mode = match &a.how {
            Createhow3::Unchecked(s) => CreateMode::Unchecked(set_attrs(s)),
            Createhow3::Guarded(s) => CreateMode::Guarded(set_attrs(s)),
            Createhow3::Exclusive(v) => CreateMode::Exclusive(*v, SetAttrs::default()),
        };
        let f = match o
            .c
            .open(&o.fh, &name, OPEN4_SHARE_ACCESS_BOTH, Some(mode))
            .await
        {
            Ok(f) => f,
            Err(e) => return Err(q.fail(&o, e).await),
        };
        let fh = f.fh.clone();
        let (_, displaced) = q.s.opens.insert(f, true, o.gen);
        q.s.close_later(displaced);
        let res = q
            .run(
                &o,
                CompoundBuilder::new()
                    .putfh(&fh)
                    .op(getattr_op(ATTRS))
                    .putfh(&o.fh)
                    .op(getattr_op(ATTRS)),
            )
            .await?;
        let mut at = all_attrs(&res).into_iter();
        Ok::<_, Nfsstat3>((fh, at.next(), at.next()))
    }
    .await;
    match r {
        Ok((fh, obj, after)) => created(&fh, obj.as_ref(), before.as_ref(), after.as_ref()),
        Err(e) => Create3Res::Fail(
            e.code(),
            WccResFail {
                wcc: wcc(before.as_ref(), None),
            },
        ),
    }
}

/// MKDIR, SYMLINK, MKNOD: NFSv4 CREATE, with the directory's attributes on either side.
async fn make(
    q: &Req<'_>,
    dir: &NfsFh3,
    name: &Opaque,
    objtype: Createtype4,
    s: &Sattr3,
) -> Create3Res {
    let r = async {
        let o = q.obj(dir).await?;
        writable(&o)?;
        let b = CompoundBuilder::new()
            .putfh(&o.fh)
            .op(getattr_op(ATTRS))
            .op(NfsArgop4::Create(CreateArgs {
                objtype,
                objname: component(name),
                createattrs: sattr(s).encode_all(),
            }))
            .getfh()
            .op(getattr_op(ATTRS))
            .putfh(&o.fh)
            .op(getattr_op(ATTRS));
        let res = q.run(&o, b).await?;
        let fh = last_fh(&res).ok_or(Nfsstat3::Serverfault)?;
        let mut at = all_attrs(&res).into_iter();
        Ok::<_, Nfsstat3>((fh, at.next(), at.next(), at.next()))
    }
    .await;
    match r {
        Ok((fh, before, obj, after)) => created(&fh, obj.as_ref(), before.as_ref(), after.as_ref()),
        Err(e) => Create3Res::Fail(e.code(), WccResFail::default()),
    }
}

pub async fn mkdir(q: &Req<'_>, a: Mkdir3Args) -> Mkdir3Res {
    make(
        q,
        &a.r#where.dir,
        &a.r#where.name,
        Createtype4::Dir,
        &a.attributes,
    )
    .await
}

pub async fn symlink(q: &Req<'_>, a: Symlink3Args) -> Symlink3Res {
    let mut s = a.symlink.symlink_attributes;
    // Symlinks are 0777 whatever the client asks (as Linux makes them).
    s.mode = Some(0o777);
    make(
        q,
        &a.r#where.dir,
        &a.r#where.name,
        Createtype4::Lnk(a.symlink.symlink_data.clone()),
        &s,
    )
    .await
}

pub async fn mknod(q: &Req<'_>, a: Mknod3Args) -> Mknod3Res {
    let spec = |d: &Devicedata3| Specdata4 {
        specdata1: d.spec.specdata1,
        specdata2: d.spec.specdata2,
    };
    let (t, s) = match &a.what {
        Mknoddata3::Chr(d) => (Createtype4::Chr(spec(d)), d.dev_attributes),
        Mknoddata3::Blk(d) => (Createtype4::Blk(spec(d)), d.dev_attributes),
        Mknoddata3::Sock(s) => (Createtype4::Sock, *s),
        Mknoddata3::Fifo(s) => (Createtype4::Fifo, *s),
        Mknoddata3::Other(_) => {
            return Mknod3Res::Fail(Nfsstat3::Badtype.code(), WccResFail::default())
        }
    };
    make(q, &a.r#where.dir, &a.r#where.name, t, &s).await
}

/// REMOVE (files) and RMDIR (directories): the type is checked first, since NFSv4 REMOVE
/// takes both; a directory given to REMOVE is ISDIR, anything else given to RMDIR NOTDIR (as
/// knfsd answers, from `vfs_unlink` and `vfs_rmdir`). An open the gateway holds on a removed
/// file's last name is closed, so its space is reclaimed.
pub async fn remove(q: &Req<'_>, a: Remove3Args, rmdir: bool) -> Remove3Res {
    let mut before = None;
    let r = async {
        let o = q.obj(&a.object.dir).await?;
        writable(&o)?;
        let probe = q
            .run(
                &o,
                CompoundBuilder::new()
                    .putfh(&o.fh)
                    .op(getattr_op(ATTRS))
                    .op(NfsArgop4::Lookup(LookupArgs {
                        objname: component(&a.object.name),
                    }))
                    .getfh()
                    .op(getattr_op(&[FATTR4_TYPE, FATTR4_NUMLINKS])),
            )
            .await;
        let probe = match probe {
            Ok(p) => p,
            Err(e) => {
                before = dir_attrs(q, &o).await;
                return Err(e);
            }
        };
        let mut at = all_attrs(&probe).into_iter();
        before = at.next();
        let target = at.next().ok_or(Nfsstat3::Serverfault)?;
        let is_dir = target.ftype == Some(NfsFtype4::Dir);
        if is_dir && !rmdir {
            return Err(Nfsstat3::Isdir);
        }
        if !is_dir && rmdir {
            return Err(Nfsstat3::Notdir);
        }
        let res = q
            .run(
                &o,
                CompoundBuilder::new()
                    .putfh(&o.fh)
                    .op(NfsArgop4::Remove(RemoveArgs {
                        target: component(&a.object.name),
                    }))
                    .op(getattr_op(ATTRS)),
            )
            .await?;
        if let Some(fh) = last_fh(&probe) {
            if target.numlinks.unwrap_or(1) <= 1 {
                if let Some(e) = q.s.opens.take(&fh) {
                    q.s.close_later(vec![e]);
                }
            }
        }
        Ok::<_, Nfsstat3>(all_attrs(&res).pop())
    }
    .await;
    match r {
        Ok(after) => Remove3Res::Ok(DirWcc {
            dir_wcc: wcc(before.as_ref(), after.as_ref()),
        }),
        Err(e) => Remove3Res::Fail(
            e.code(),
            DirWcc {
                dir_wcc: wcc(before.as_ref(), None),
            },
        ),
    }
}

/// RENAME between two directories of one export (else XDEV, as the MDS answers between
/// exports).
pub async fn rename(q: &Req<'_>, a: Rename3Args) -> Rename3Res {
    let r = async {
        let from = q.obj(&a.from.dir).await?;
        let to = q.obj(&a.to.dir).await?;
        if from.rule.id != to.rule.id {
            return Err(Nfsstat3::Xdev);
        }
        writable(&from)?;
        let b = CompoundBuilder::new()
            .putfh(&from.fh)
            .op(getattr_op(ATTRS))
            .savefh()
            .putfh(&to.fh)
            .op(getattr_op(ATTRS))
            .op(NfsArgop4::Rename(RenameArgs {
                oldname: component(&a.from.name),
                newname: component(&a.to.name),
            }))
            .op(getattr_op(ATTRS))
            .putfh(&from.fh)
            .op(getattr_op(ATTRS));
        let res = q.run(&from, b).await?;
        let mut at = all_attrs(&res).into_iter();
        let (fb, tb, ta, fa) = (at.next(), at.next(), at.next(), at.next());
        Ok::<_, Nfsstat3>(Rename3ResBody {
            fromdir_wcc: wcc(fb.as_ref(), fa.as_ref()),
            todir_wcc: wcc(tb.as_ref(), ta.as_ref()),
        })
    }
    .await;
    match r {
        Ok(b) => Rename3Res::Ok(b),
        Err(e) => Rename3Res::Fail(e.code(), Default::default()),
    }
}

pub async fn link(q: &Req<'_>, a: Link3Args) -> Link3Res {
    let r = async {
        let file = q.obj(&a.file).await?;
        let dir = q.obj(&a.link.dir).await?;
        if file.rule.id != dir.rule.id {
            return Err(Nfsstat3::Xdev);
        }
        writable(&dir)?;
        let b = CompoundBuilder::new()
            .putfh(&file.fh)
            .savefh()
            .putfh(&dir.fh)
            .op(getattr_op(ATTRS))
            .op(NfsArgop4::Link(LinkArgs {
                newname: component(&a.link.name),
            }))
            .op(getattr_op(ATTRS))
            .putfh(&file.fh)
            .op(getattr_op(ATTRS));
        let res = q.run(&dir, b).await?;
        let mut at = all_attrs(&res).into_iter();
        let (db, da, fa) = (at.next(), at.next(), at.next());
        Ok::<_, Nfsstat3>(Link3ResBody {
            file_attributes: fa.map(|x| fattr3(&q.fix(&file.fh, x))),
            linkdir_wcc: wcc(db.as_ref(), da.as_ref()),
        })
    }
    .await;
    match r {
        Ok(b) => Link3Res::Ok(b),
        Err(e) => Link3Res::Fail(e.code(), Default::default()),
    }
}
