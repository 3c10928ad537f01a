//! Current/saved file handle operations and name lookup: PUTFH, PUTROOTFH, PUTPUBFH, GETFH,
//! SAVEFH, RESTOREFH, LOOKUP, LOOKUPP, SECINFO, SECINFO_NO_NAME.
use crate::error::{NfsError, NfsResult};
use crate::export::{self, Export, SecFlavor, PSEUDO_ID};
use crate::fh::{FhError, FileHandle};
use crate::nfs::ctx::{Ctx, SnapPos};
use meta::namespace::{FileKind, Inode, ROOT_INO};
use proto::nfs4::basic::AUTH_SYS;
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

impl<'a> Ctx<'a> {
    /// The root directory of the current file handle's export.
    pub fn root(&self) -> NfsResult<u64> {
        if self.export.path == "/" {
            return Ok(ROOT_INO);
        }
        Ok(self.mds.ns.resolve(self.export.path.as_bytes())?.ino)
    }

    /// Makes `ino` in export `exp` the current file handle, and that export's rules the
    /// request's. The current stateid is cleared by the compound runner once the operation
    /// succeeds, for the operations whose table entry says so (`table::CLEARS_STATEID`).
    pub fn set_cur(&mut self, ino: u64, exp: u32) {
        self.set_cur_at(ino, exp, None);
    }

    /// `set_cur`, inside a snapshot at `pos` (`None`: the live file system).
    pub fn set_cur_at(&mut self, ino: u64, exp: u32, pos: Option<SnapPos>) {
        self.cfh = Some(ino);
        self.cexp = exp;
        self.csnap = pos;
        self.enter(exp);
    }

    fn enter(&mut self, exp: u32) {
        let mds: &'a std::sync::Arc<crate::node::Mds> = self.mds;
        let e = if exp == PSEUDO_ID {
            &mds.pseudo
        } else {
            // Ids were checked when the handle was accepted; an unknown one gets no rights.
            mds.exports
                .iter()
                .find(|e| e.id == exp)
                .unwrap_or(&mds.pseudo)
        };
        self.export = e;
        self.user = self.cred.user(e);
    }

    /// Whether the current file handle is a directory of the pseudo file system.
    pub fn in_pseudo(&self) -> bool {
        self.cfh.is_some() && self.cexp == PSEUDO_ID
    }

    /// The exports this client's address may use.
    pub fn admitted(&self) -> impl Iterator<Item = &'a Export> {
        let mds: &'a std::sync::Arc<crate::node::Mds> = self.mds;
        let peer = self.conn.peer_addr().ip();
        mds.exports.iter().filter(move |e| e.admits(peer))
    }

    /// The path of pseudo directory `ino` for this client, if it is one: a proper ancestor
    /// of an export it may use. None when it may use an export of "/" (no pseudo file system).
    pub fn pseudo_path(&self, ino: u64) -> Option<String> {
        if self.admitted().any(|e| e.path == "/") {
            return None;
        }
        if ino == ROOT_INO {
            return Some("/".to_string());
        }
        for e in self.admitted() {
            let mut q = export::parent(&e.path);
            while q != "/" {
                if self.mds.ns.resolve(q.as_bytes()).ok().map(|i| i.ino) == Some(ino) {
                    return Some(q.to_string());
                }
                q = export::parent(q);
            }
        }
        None
    }

    /// Where `name` in pseudo directory `dir` leads: an export's root, a deeper pseudo
    /// directory, or nowhere (NOENT: nothing else in the file system is visible from here).
    fn pseudo_child(&self, dir: &str, name: &[u8]) -> NfsResult<(u64, u32)> {
        let name = std::str::from_utf8(name).map_err(|_| NfsError::Inval)?;
        let child = export::join(dir, name);
        let exp = match self.admitted().find(|e| e.path == child) {
            Some(e) => e.id,
            None if self
                .admitted()
                .any(|e| export::strictly_below(&child, &e.path)) =>
            {
                PSEUDO_ID
            }
            None => return Err(NfsError::NoEnt),
        };
        let i = self
            .mds
            .ns
            .resolve(child.as_bytes())
            .map_err(|_| NfsError::NoEnt)?;
        if !i.kind.is_dir() {
            return Err(NfsError::NoEnt);
        }
        Ok((i.ino, exp))
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

pub async fn putfh(ctx: &mut Ctx<'_>, a: &proto::nfs4::fileops::PutfhArgs) -> NfsResult<()> {
    let fh = FileHandle::decode(
        a.object.0.as_bytes(),
        ctx.mds.handles.fs_id,
        &ctx.mds.handles.key,
    )
    .map_err(|e| match e {
        FhError::Bad => NfsError::BadHandle,
        FhError::Stale => NfsError::Stale,
    })?;
    // A handle names the export it was handed out in; this client must (still) be allowed
    // that export, or, for the pseudo file system, the directory must still lead to one.
    let allowed = if fh.export == PSEUDO_ID {
        ctx.pseudo_path(fh.ino).is_some()
    } else {
        ctx.admitted().any(|e| e.id == fh.export)
    };
    if !allowed {
        return Err(NfsError::Stale);
    }
    if let Some(field) = fh.snap {
        // Inside a snapshot: stale once the snapshot is deleted, or if the object did not
        // exist at its cut (`ops::snap`).
        let pos = SnapPos::of_field(field);
        super::snap::check_handle(ctx, fh.ino, pos).await?;
        ctx.set_cur_at(fh.ino, fh.export, Some(pos));
        return Ok(());
    }
    // A handle to a file that is gone is stale, and must say so now, not at the next op. Only
    // a current replica may say so: this node's replica of the file's shard may not have it
    // yet (made through another node a moment ago, seen by a node catching up), so a miss
    // passes that shard's read barrier and looks again. A hit needs no barrier: the
    // operations that read the file pass it themselves.
    if ctx.mds.ns.getattr(fh.ino).is_err() {
        ctx.read(|_, s| s.getattr_settled(fh.ino))
            .await
            .map_err(|e| match e {
                NfsError::Delay => NfsError::Delay,
                _ => NfsError::Stale,
            })?;
    }
    ctx.set_cur(fh.ino, fh.export);
    Ok(())
}

/// The root of the only export of "/" this client may use, else the pseudo file system's root
/// (RFC 8881 §7), whose directories lead to the exports it may use.
pub fn putrootfh(ctx: &mut Ctx<'_>) -> NfsResult<()> {
    let exp = ctx
        .admitted()
        .find(|e| e.path == "/")
        .map_or(PSEUDO_ID, |e| e.id);
    ctx.set_cur(ROOT_INO, exp);
    Ok(())
}

pub fn getfh(ctx: &mut Ctx<'_>) -> GetfhRes {
    match ctx.fh() {
        Ok(ino) => GetfhRes::Ok(GetfhResOk {
            object: ctx
                .mds
                .handles
                .handle_at(ctx.cexp, ino, ctx.csnap.map(SnapPos::field)),
        }),
        Err(e) => GetfhRes::error(e.code()),
    }
}

pub fn savefh(ctx: &mut Ctx<'_>) -> NfsResult<()> {
    ctx.sfh = Some(ctx.fh()?);
    ctx.sexp = ctx.cexp;
    ctx.ssnap = ctx.csnap;
    ctx.saved_sid = ctx.cur_sid;
    Ok(())
}

pub fn restorefh(ctx: &mut Ctx<'_>) -> NfsResult<()> {
    let ino = ctx.sfh.ok_or(NfsError::RestoreFh)?;
    ctx.set_cur_at(ino, ctx.sexp, ctx.ssnap);
    ctx.cur_sid = ctx.saved_sid;
    Ok(())
}

pub async fn lookup(ctx: &mut Ctx<'_>, a: &LookupArgs) -> NfsResult<()> {
    let dir = ctx.cur_dir()?;
    let name = check_name(&a.objname)?;
    if ctx.in_pseudo() {
        let path = ctx.pseudo_path(dir.ino).ok_or(NfsError::Stale)?;
        let (ino, exp) = ctx.pseudo_child(&path, name)?;
        ctx.set_cur(ino, exp);
        return Ok(());
    }
    ctx.require(&dir, 1)?;
    // A snapshot root's `.snapshot` (hidden from READDIR, NetApp's way); a directory that is
    // no snapshot's root looks the name up as any other.
    if name == super::snap::SNAPSHOT_NAME && super::snap::enter_snapshot_dir(ctx, dir.ino).await? {
        return Ok(());
    }
    // Exports do not nest, so whatever is below a directory of an export is in it too.
    // Settled: a name a transaction is moving answers DELAY, never from half its shards; and
    // the child's shard, when it is another, current too (`Ctx::read`).
    let found = ctx.read(|_, s| s.lookup_settled(dir.ino, name)).await?;
    ctx.set_cur(found.ino, ctx.cexp);
    Ok(())
}

/// The parent directory; at an export's root, the pseudo directory above it (never a real
/// directory outside the export); at the top, NOENT.
pub fn lookupp(ctx: &mut Ctx<'_>) -> NfsResult<()> {
    let dir = ctx.cur_dir()?;
    if ctx.in_pseudo() {
        if dir.ino == ROOT_INO {
            return Err(NfsError::NoEnt);
        }
        // A pseudo directory's parent leads to the same exports, so it is one too.
        ctx.set_cur(dir.parent, PSEUDO_ID);
        return Ok(());
    }
    if dir.ino == ctx.root()? {
        if ctx.export.path == "/" {
            return Err(NfsError::NoEnt);
        }
        let up = export::parent(&ctx.export.path);
        let ino = ctx.mds.ns.resolve(up.as_bytes())?.ino;
        ctx.set_cur(ino, PSEUDO_ID);
        return Ok(());
    }
    ctx.require(&dir, 1)?;
    ctx.set_cur(dir.parent, ctx.cexp);
    Ok(())
}

/// The export's flavors in its order (the client takes the first it can use); in the pseudo
/// file system, every flavor some export allows.
pub(super) fn flavors(export: &Export, all: &[Export]) -> SecinfoResOk {
    use proto::nfs4::basic::RpcGssSvc;
    let mut list: Vec<SecFlavor> = Vec::new();
    let sources = if export.id == crate::export::PSEUDO_ID {
        all
    } else {
        std::slice::from_ref(export)
    };
    for f in sources.iter().flat_map(|e| e.sec.iter()) {
        if !list.contains(f) {
            list.push(*f);
        }
    }
    let gss = |service| {
        Secinfo4::RpcsecGss(proto::nfs4::fileops::RpcsecGssInfo {
            oid: krb::KRB5_OID.to_vec().into(),
            qop: 0,
            service,
        })
    };
    SecinfoResOk(
        list.into_iter()
            .map(|f| match f {
                SecFlavor::Sys => Secinfo4::Flavor(AUTH_SYS),
                SecFlavor::Krb5 => gss(RpcGssSvc::None),
                SecFlavor::Krb5i => gss(RpcGssSvc::Integrity),
                SecFlavor::Krb5p => gss(RpcGssSvc::Privacy),
            })
            .collect(),
    )
}

pub async fn secinfo(ctx: &mut Ctx<'_>, a: &SecinfoArgs) -> SecinfoRes {
    let r = async {
        let dir = ctx.cur_dir()?;
        let name = check_name(&a.name)?;
        if ctx.in_pseudo() {
            // Only names that lead to an export exist here; the flavors are the target's.
            let path = ctx.pseudo_path(dir.ino).ok_or(NfsError::Stale)?;
            let (_, exp) = ctx.pseudo_child(&path, name)?;
            let mds = ctx.mds;
            return Ok(mds
                .exports
                .iter()
                .find(|e| e.id == exp)
                .unwrap_or(&mds.pseudo));
        }
        ctx.read(|_, s| s.lookup_settled(dir.ino, name)).await?;
        Ok::<_, NfsError>(ctx.export)
    }
    .await;
    match r {
        Ok(e) => {
            // SECINFO consumes the current file handle (RFC 8881 §2.6.3.1.1.8).
            let res = SecinfoRes::Ok(flavors(e, &ctx.mds.exports));
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
            let top = if ctx.in_pseudo() {
                ROOT_INO
            } else {
                ctx.root()?
            };
            if d.ino == top {
                Err(NfsError::NoEnt)
            } else {
                Ok(())
            }
        }),
    };
    match r {
        Ok(()) => {
            let res = SecinfoRes::Ok(flavors(ctx.export, &ctx.mds.exports));
            ctx.cfh = None;
            res
        }
        Err(e) => SecinfoRes::error(e.code()),
    }
}
