//! Directory operations: READDIR, CREATE (non-regular objects), REMOVE, RENAME, LINK, READLINK.
use super::fh::check_name;
use crate::error::{NfsError, NfsResult};
use crate::nfs::attrs;
use crate::nfs::ctx::Ctx;
use crate::state::recall::recall_and_wait;
use meta::namespace::perm::{self, DEFAULT_ID};
use meta::namespace::{Command, CreateHow, DirChange, FileKind, FsError, Inode, Snapshot, Time};
use proto::nfs4::attr::{Bitmap, FATTR4_RDATTR_ERROR};
use proto::nfs4::basic::{ChangeInfo4, Fattr4};
use proto::nfs4::fileops::*;
use proto::xdr::{Opaque, Xdr};

pub fn cinfo(c: Option<DirChange>, dir: &Inode) -> ChangeInfo4 {
    match c {
        Some(c) => ChangeInfo4 {
            atomic: true,
            before: c.before,
            after: c.after,
        },
        None => ChangeInfo4 {
            atomic: true,
            before: dir.change,
            after: dir.change,
        },
    }
}

/// Early permission checks, on the state as this operation sees it: a refusal answers before
/// anything else happens (another client's delegation recalled, say). `apply` checks the same
/// rules again inside the command, which is what makes them hold.
fn precheck_create(ctx: &Ctx<'_>, dir: &Inode, name: &[u8]) -> NfsResult<()> {
    ctx.writable()?;
    if named(ctx, dir.ino, name).is_none() {
        perm::may_create(&ctx.user, dir)?;
    }
    Ok(())
}

fn precheck_delete(ctx: &Ctx<'_>, dir: &Inode, name: &[u8]) -> NfsResult<()> {
    ctx.writable()?;
    if let Ok(victim) = ctx.mds.ns.lookup(dir.ino, name) {
        perm::may_delete(&ctx.user, dir, &victim)?;
    }
    Ok(())
}

/// The file behind `name` in `dir`, if any: removing or replacing the name changes it, so
/// other clients' delegations on it must go first. Read from the directory's shard alone
/// (current: `compound::read_barrier`); the file's own shard may be behind on this node.
fn named(ctx: &Ctx<'_>, dir: u64, name: &[u8]) -> Option<u64> {
    ctx.mds.ns.snapshot().ok()?.entry(dir, name).ok().flatten()
}

/// A listing as settled: while a cross-shard transaction holds the directory's entries, waits
/// (`Ctx::read`), then DELAY. Entries' attributes come from the shards their objects live on,
/// each current (`Ctx::read`).
pub async fn readdir(ctx: &mut Ctx<'_>, a: &ReaddirArgs) -> ReaddirRes {
    let r = async {
        let dir = ctx.cur_dir()?;
        ctx.require(&dir, 4)?;
        ctx.read(|c, snap| list(c, snap, dir.ino, a))
            .await
            .and_then(|listed| listed)
    }
    .await;
    match r {
        Ok(r) => ReaddirRes::Ok(r),
        Err(e) => ReaddirRes::error(e.code()),
    }
}

/// One read of the listing and every entry's attributes: a consistent view, and no read
/// transaction per entry. The outer error is the namespace's (`Ctx::read` reads again or
/// waits on it), the inner one the client's answer.
fn list(
    ctx: &Ctx<'_>,
    snap: &Snapshot<'_>,
    dir: u64,
    a: &ReaddirArgs,
) -> Result<NfsResult<ReaddirResOk>, FsError> {
    // Cookies are stable for the life of an entry, so the verifier carries no meaning; like
    // knfsd we return zeros and accept whatever the client sends back.
    let want = Bitmap::from_words(&a.attr_request);
    // Reply overhead: status, verifier, eof, end-of-list marker and some slack.
    let budget = (a.maxcount.min(crate::limits::MAX_IO) as usize).saturating_sub(64);
    let mut used = 0usize;
    let mut entries = Vec::new();
    let mut after = if a.cookie < 3 { 0 } else { a.cookie };
    let mut eof = false;
    snap.settled(meta::namespace::Key::Entries(dir))?;
    'outer: loop {
        let (batch, done) = match snap.readdir(dir, after, 256) {
            Err(FsError::Invalid) => return Ok(Err(NfsError::BadCookie)),
            other => other?,
        };
        for e in batch {
            let attrs = match snap.getattr(e.ino) {
                Ok(i) => attrs::encode(ctx.mds, &i, &want),
                Err(_) if want.get(FATTR4_RDATTR_ERROR) => {
                    // Removed between listing and reading: say so in the entry.
                    let mut b = Bitmap::new();
                    b.set(FATTR4_RDATTR_ERROR);
                    Fattr4 {
                        attrmask: b.to_vec(),
                        attr_vals: Opaque(NfsError::NoEnt.code().to_xdr()),
                    }
                }
                Err(_) => continue,
            };
            let cost = 4
                + 8
                + 4
                + e.name.len().div_ceil(4) * 4
                + 4
                + attrs.attrmask.len() * 4
                + 4
                + attrs.attr_vals.len();
            if used + cost > budget {
                if entries.is_empty() {
                    return Ok(Err(NfsError::TooSmall));
                }
                break 'outer;
            }
            used += cost;
            after = e.cookie;
            entries.push(Entry4 {
                cookie: e.cookie,
                name: Opaque(e.name),
                attrs,
            });
        }
        if done {
            eof = true;
            break;
        }
    }
    Ok(Ok(ReaddirResOk {
        cookieverf: [0; 8],
        reply: Dirlist4 { entries, eof },
    }))
}

pub async fn create(ctx: &mut Ctx<'_>, a: &CreateArgs) -> CreateRes {
    match create_inner(ctx, a).await {
        Ok(r) => CreateRes::Ok(r),
        Err(e) => CreateRes::error(e.code()),
    }
}

/// Creates `name` in `dir` with a fresh inode number, as the caller: owned by it, with the
/// group and mode `perm::init_owner` gives (set-group-ID directories), unless `set` asks for
/// an owner or group the caller may give (checked inside the command, before anything exists).
pub async fn create_entry(
    ctx: &Ctx<'_>,
    dir: &Inode,
    name: Vec<u8>,
    kind: FileKind,
    mode: u32,
    how: CreateHow,
    set: &attrs::SetAttrs,
) -> NfsResult<meta::namespace::Outcome> {
    let out = ctx
        .execute_as(Command::Create {
            parent: dir.ino,
            name,
            kind,
            mode: mode & 0o7777,
            uid: set.uid.unwrap_or(DEFAULT_ID),
            gid: set.gid.unwrap_or(DEFAULT_ID),
            time: Time::now(),
            how,
        })
        .await?;
    inherit_placement(ctx, dir, &out).await
}

/// What a new file or directory takes from its directory: the tier pin (`user.cfs.tier`) and
/// the reduce policy (`user.cfs.reduce`).
const INHERITED: [&[u8]; 2] = [meta_core::PIN_XATTR, meta_core::REDUCE_XATTR];

/// A new file or directory takes its directory's `INHERITED` attributes. A command each after
/// the create, by the server: a crash in between leaves the new file without them, which only
/// means the cluster's defaults apply to it (flash may evict it past the watermark; the
/// cluster's `reduce`). Its answer is the create's outcome with the inode as the attributes
/// left it (ctime and change moved).
async fn inherit_placement(
    ctx: &Ctx<'_>,
    dir: &Inode,
    out: &meta::namespace::Outcome,
) -> NfsResult<meta::namespace::Outcome> {
    let (true, Some(new)) = (out.created, out.inode.as_ref()) else {
        return Ok(out.clone());
    };
    // Only files have bytes to place, and directories pass attributes on; Linux allows no
    // user.* attribute on a symlink, socket, fifo or device (EPERM), and neither does `apply`.
    if !matches!(new.kind, FileKind::Regular | FileKind::Directory) {
        return Ok(out.clone());
    }
    let Ok(mut attrs) = ctx.mds.ns.xattrs(dir.ino) else {
        return Ok(out.clone());
    };
    let mut out = out.clone();
    for name in INHERITED {
        let Some(value) = attrs.remove(name) else {
            continue;
        };
        let set = ctx
            .mds
            .ns
            .execute(Command::SetXattr {
                ino: new.ino,
                name: name.to_vec(),
                value,
                how: meta_core::xattr::How::Either,
                time: Time::now(),
            })
            .await;
        match set {
            Ok(o) => out.inode = o.inode.or(out.inode),
            Err(e) => tracing::warn!(
                ino = new.ino,
                attr = %String::from_utf8_lossy(name),
                "the new file did not take its directory's attribute: {e}"
            ),
        }
    }
    Ok(out)
}

async fn create_inner(ctx: &mut Ctx<'_>, a: &CreateArgs) -> NfsResult<CreateResOk> {
    let dir = ctx.cur_dir()?;
    let name = check_name(&a.objname)?.to_vec();
    precheck_create(ctx, &dir, &name)?;
    let _busy = recall_and_wait(&ctx.mds.nfs, &[dir.ino], ctx.clientid).await?;
    let kind = match &a.objtype {
        Createtype4::Dir => FileKind::Directory,
        Createtype4::Lnk(t) => {
            if t.is_empty() || t.len() > crate::limits::SYMLINK_MAX as usize {
                return Err(NfsError::Inval);
            }
            FileKind::Symlink {
                target: t.0.clone(),
            }
        }
        Createtype4::Blk(d) => FileKind::BlockDev {
            major: d.specdata1,
            minor: d.specdata2,
        },
        Createtype4::Chr(d) => FileKind::CharDev {
            major: d.specdata1,
            minor: d.specdata2,
        },
        Createtype4::Sock => FileKind::Socket,
        Createtype4::Fifo => FileKind::Fifo,
        Createtype4::Other(_) => return Err(NfsError::BadType),
    };
    if matches!(kind, FileKind::BlockDev { .. } | FileKind::CharDev { .. }) && !ctx.user.is_root() {
        return Err(NfsError::Perm);
    }
    let set = attrs::decode_settable(&a.createattrs)?;
    let default_mode = if kind.is_dir() { 0o755 } else { 0o777 };
    let mode = set.mode.unwrap_or(default_mode);
    let out = create_entry(ctx, &dir, name, kind, mode, CreateHow::Guarded, &set).await?;
    let created = out.inode.ok_or(NfsError::ServerFault)?;
    // Times in the request apply after creation; the caller owns the object by now.
    let times = attrs::SetAttrs {
        atime: set.atime,
        mtime: set.mtime,
        ..Default::default()
    };
    super::attr::apply_setattr(ctx, &created, &times).await?;
    // The current stateid goes with the old handle (`table::CLEARS_STATEID`).
    ctx.cfh = Some(created.ino);
    Ok(CreateResOk {
        cinfo: cinfo(out.dir, &dir),
        attrset: set.mask.to_vec(),
    })
}

pub async fn remove(ctx: &mut Ctx<'_>, a: &RemoveArgs) -> RemoveRes {
    match remove_inner(ctx, a).await {
        Ok(r) => RemoveRes::Ok(r),
        Err(e) => RemoveRes::error(e.code()),
    }
}

async fn remove_inner(ctx: &mut Ctx<'_>, a: &RemoveArgs) -> NfsResult<RemoveResOk> {
    let dir = ctx.cur_dir()?;
    let name = check_name(&a.target)?.to_vec();
    precheck_delete(ctx, &dir, &name)?;
    let out = ctx
        .execute_resolved_as(dir.ino, |ctx| {
            let Some(child) = named(ctx, dir.ino, &name) else {
                // Search permission first, as `apply` would check it.
                ctx.require(&dir, perm::MAY_EXEC)?;
                return Err(NfsError::NoEnt);
            };
            Ok(Command::Remove {
                parent: dir.ino,
                name: name.clone(),
                child,
                time: Time::now(),
            })
        })
        .await?;
    Ok(RemoveResOk {
        cinfo: cinfo(out.dir, &dir),
    })
}

pub async fn rename(ctx: &mut Ctx<'_>, a: &RenameArgs) -> RenameRes {
    match rename_inner(ctx, a).await {
        Ok(r) => RenameRes::Ok(r),
        Err(e) => RenameRes::error(e.code()),
    }
}

async fn rename_inner(ctx: &mut Ctx<'_>, a: &RenameArgs) -> NfsResult<RenameResOk> {
    let src_ino = ctx.sfh.ok_or(NfsError::NoFileHandle)?;
    let src = ctx.inode(src_ino)?;
    if !src.kind.is_dir() {
        return Err(NfsError::NotDir);
    }
    let dst = ctx.cur_dir()?;
    let old = check_name(&a.oldname)?.to_vec();
    let new = check_name(&a.newname)?.to_vec();
    ctx.writable()?;
    let replaced = named(ctx, dst.ino, &new);
    if let Ok(source) = ctx.mds.ns.lookup(src.ino, &old) {
        let target = replaced.and_then(|t| ctx.inode(t).ok());
        perm::may_rename(&ctx.user, &src, &source, &dst, target.as_ref())?;
    }
    let out = ctx
        .execute_resolved_as(src.ino, |ctx| {
            let Some(source) = named(ctx, src.ino, &old) else {
                ctx.require(&src, perm::MAY_EXEC)?;
                ctx.require(&dst, perm::MAY_EXEC)?;
                return Err(NfsError::NoEnt);
            };
            Ok(Command::Rename {
                src_parent: src.ino,
                src_name: old.clone(),
                src: source,
                dst_parent: dst.ino,
                dst_name: new.clone(),
                dst: named(ctx, dst.ino, &new),
                time: Time::now(),
            })
        })
        .await?;
    let source_cinfo = cinfo(out.dir, &src);
    let target_cinfo = if src.ino == dst.ino {
        source_cinfo
    } else {
        cinfo(out.dst_dir, &dst)
    };
    Ok(RenameResOk {
        source_cinfo,
        target_cinfo,
    })
}

pub async fn link(ctx: &mut Ctx<'_>, a: &LinkArgs) -> LinkRes {
    match link_inner(ctx, a).await {
        Ok(r) => LinkRes::Ok(r),
        Err(e) => LinkRes::error(e.code()),
    }
}

async fn link_inner(ctx: &mut Ctx<'_>, a: &LinkArgs) -> NfsResult<LinkResOk> {
    let src = ctx.inode(ctx.sfh.ok_or(NfsError::NoFileHandle)?)?;
    let dir = ctx.cur_dir()?;
    if src.kind.is_dir() {
        return Err(NfsError::IsDir);
    }
    let name = check_name(&a.newname)?.to_vec();
    precheck_create(ctx, &dir, &name)?;
    let _busy = recall_and_wait(&ctx.mds.nfs, &[dir.ino], ctx.clientid).await?;
    let out = ctx
        .execute_as(Command::Link {
            ino: src.ino,
            parent: dir.ino,
            name,
            time: Time::now(),
        })
        .await?;
    Ok(LinkResOk {
        cinfo: cinfo(out.dir, &dir),
    })
}

pub fn readlink(ctx: &mut Ctx<'_>) -> ReadlinkRes {
    match ctx.cur() {
        Ok(Inode {
            kind: FileKind::Symlink { target },
            ..
        }) => ReadlinkRes::Ok(ReadlinkResOk {
            link: Opaque(target),
        }),
        Ok(_) => ReadlinkRes::error(NfsError::Inval.code()),
        Err(e) => ReadlinkRes::error(e.code()),
    }
}
