//! Current/saved file handle operations and name lookup: PUTFH, PUTROOTFH, PUTPUBFH, GETFH,
//! SAVEFH, RESTOREFH, LOOKUP, LOOKUPP, SECINFO, SECINFO_NO_NAME.
use crate::compound::Ctx;
use crate::error::{NfsError, NfsResult};
use crate::export::SecFlavor;
use crate::fh::{FhError, FileHandle};
use crate::namespace::{FileKind, Inode, ROOT_INO};
use proto::nfs4::basic::{NfsFh4, AUTH_SYS};
use proto::nfs4::fileops::{
    GetfhRes, GetfhResOk, LookupArgs, Secinfo4, SecinfoArgs, SecinfoNoNameArgs, SecinfoRes,
    SecinfoResOk,
};
use proto::xdr::Opaque;

/// Validates a component name the NFSv4 way (RFC 8881 §14.5).
pub fn check_name(name: &Opaque) -> NfsResult<&[u8]> {
    let b = name.as_bytes();
    if b.is_empty() {
        return Err(NfsError::Inval);
    }
    if b.len() > 255 {
        return Err(NfsError::NameTooLong);
    }
    if std::str::from_utf8(b).is_err() {
        return Err(NfsError::Inval);
    }
    if b == b"." || b == b".." {
        return Err(NfsError::BadName);
    }
    if b.contains(&b'/') || b.contains(&0) {
        return Err(NfsError::BadChar);
    }
    Ok(b)
}

impl Ctx<'_> {
    /// The export's root directory.
    pub fn root(&self) -> NfsResult<u64> {
        if self.export.path == "/" {
            return Ok(ROOT_INO);
        }
        Ok(self.mds.ns.resolve(self.export.path.as_bytes())?.ino)
    }

    pub fn inode(&self, ino: u64) -> NfsResult<Inode> {
        Ok(self.mds.ns.getattr(ino)?)
    }

    pub fn cur(&self) -> NfsResult<Inode> {
        self.inode(self.fh()?)
    }

    /// The current file handle as a directory (NOTDIR, or SYMLINK for a symlink).
    pub fn cur_dir(&self) -> NfsResult<Inode> {
        let i = self.cur()?;
        match i.kind {
            FileKind::Directory => Ok(i),
            FileKind::Symlink { .. } => Err(NfsError::Symlink),
            _ => Err(NfsError::NotDir),
        }
    }
}

pub fn putfh(ctx: &mut Ctx<'_>, a: &proto::nfs4::fileops::PutfhArgs) -> NfsResult<()> {
    let fh = FileHandle::decode(a.object.0.as_bytes(), ctx.mds.fs_id).map_err(|e| match e {
        FhError::Bad => NfsError::BadHandle,
        FhError::Stale => NfsError::Stale,
    })?;
    // A handle to a file that is gone is stale, and must say so now, not at the next op.
    ctx.mds.ns.getattr(fh.ino).map_err(|_| NfsError::Stale)?;
    ctx.cfh = Some(fh.ino);
    ctx.cur_sid = None;
    Ok(())
}

pub fn putrootfh(ctx: &mut Ctx<'_>) -> NfsResult<()> {
    ctx.cfh = Some(ctx.root()?);
    ctx.cur_sid = None;
    Ok(())
}

pub fn getfh(ctx: &mut Ctx<'_>) -> GetfhRes {
    match ctx.fh() {
        Ok(ino) => GetfhRes::Ok(GetfhResOk {
            object: NfsFh4(Opaque(
                FileHandle {
                    fs_id: ctx.mds.fs_id,
                    ino,
                }
                .encode(),
            )),
        }),
        Err(e) => GetfhRes::error(e.code()),
    }
}

pub fn savefh(ctx: &mut Ctx<'_>) -> NfsResult<()> {
    ctx.sfh = Some(ctx.fh()?);
    ctx.saved_sid = ctx.cur_sid;
    Ok(())
}

pub fn restorefh(ctx: &mut Ctx<'_>) -> NfsResult<()> {
    ctx.cfh = Some(ctx.sfh.ok_or(NfsError::RestoreFh)?);
    ctx.cur_sid = ctx.saved_sid;
    Ok(())
}

pub fn lookup(ctx: &mut Ctx<'_>, a: &LookupArgs) -> NfsResult<()> {
    let dir = ctx.cur_dir()?;
    let name = check_name(&a.objname)?;
    ctx.require(&dir, 1)?;
    let found = ctx.mds.ns.lookup(dir.ino, name)?;
    ctx.cfh = Some(found.ino);
    ctx.cur_sid = None;
    Ok(())
}

pub fn lookupp(ctx: &mut Ctx<'_>) -> NfsResult<()> {
    let dir = ctx.cur_dir()?;
    if dir.ino == ctx.root()? {
        return Err(NfsError::NoEnt);
    }
    ctx.require(&dir, 1)?;
    ctx.cfh = Some(dir.parent);
    ctx.cur_sid = None;
    Ok(())
}

fn flavors(ctx: &Ctx<'_>) -> SecinfoResOk {
    SecinfoResOk(
        ctx.export
            .sec
            .iter()
            .filter(|f| matches!(f, SecFlavor::Sys))
            .map(|_| Secinfo4::Flavor(AUTH_SYS))
            .collect(),
    )
}

pub fn secinfo(ctx: &mut Ctx<'_>, a: &SecinfoArgs) -> SecinfoRes {
    let r = (|| {
        let dir = ctx.cur_dir()?;
        let name = check_name(&a.name)?;
        ctx.mds.ns.lookup(dir.ino, name)?;
        Ok::<_, NfsError>(())
    })();
    match r {
        Ok(()) => {
            // SECINFO consumes the current file handle (RFC 8881 §2.6.3.1.1.8).
            let res = SecinfoRes::Ok(flavors(ctx));
            ctx.cfh = None;
            res
        }
        Err(e) => SecinfoRes::error(e.code()),
    }
}

pub fn secinfo_no_name(ctx: &mut Ctx<'_>, a: &SecinfoNoNameArgs) -> SecinfoRes {
    use proto::nfs4::fileops::SecinfoStyle4;
    let r = match a.style {
        SecinfoStyle4::CurrentFh => ctx.fh().map(|_| ()),
        SecinfoStyle4::Parent => ctx.cur_dir().and_then(|d| {
            if d.ino == ctx.root()? {
                Err(NfsError::NoEnt)
            } else {
                Ok(())
            }
        }),
    };
    match r {
        Ok(()) => {
            let res = SecinfoRes::Ok(flavors(ctx));
            ctx.cfh = None;
            res
        }
        Err(e) => SecinfoRes::error(e.code()),
    }
}
