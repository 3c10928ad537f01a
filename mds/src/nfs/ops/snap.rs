//! Snapshots over NFS (issue 48, `docs/plans/snapshots.md` §4): a snapshot root's
//! `.snapshot` directory and the tree below each of its snapshots, read-only, read at the
//! snapshot's cut.
//!
//! - **Where a handle stands** (`SnapPos`, the handle's snapshot field): `Dir`, the
//!   `.snapshot` directory of a directory D that some `Ready` snapshot is rooted at; or
//!   `In(S)`, an object as it was at snapshot S's cut. LOOKUP `.snapshot` in D enters `Dir`
//!   (the name is not listed by READDIR, NetApp's way; NOENT, or D's real entry of that name,
//!   where no snapshot is rooted); LOOKUP NAME there enters `In(S)` at D; LOOKUPP goes back up
//!   the same way, from S's root to `Dir`, and from `Dir` to the live D.
//! - **Refused before any handler** (`refusal`, from `ops::dispatch` and from the compound
//!   runner, which sends WRITE around `dispatch`): every operation the table marks
//!   `CHANGES_FS` on a snapshot's handle, current or saved, answers NFS4ERR_ROFS; OPEN only
//!   with write access or a create, LAYOUTGET only for RW. COPY and CLONE out of a snapshot
//!   into the live file system answer NOTSUPP (the MDS does not read a snapshot for them yet;
//!   Linux copies through the client instead).
//! - **Everything else on a snapshot's handle is here** (`dispatch`): the reads over
//!   `meta`'s views at S (`Snapshot::inode_at`, `lookup_at`, `readdir_at`, `xattrs_at`),
//!   checked against the inode at S; operations this does not serve answer NOTSUPP rather
//!   than reach a live handler, which would read the live inode of the same number.
//! - **fsid and fileid** (§4.5): inside S the fsid's minor is S, so Linux mounts each
//!   snapshot as its own file system (`st_dev` differs; `find`, `du` and `cp -a` do not mix
//!   it with the live tree) and a fileid is the inode number (hard links stay one); the
//!   `.snapshot` directory has the live fsid and fileid `D | 1 << 63`.
//! - **READ** through the MDS (no layouts inside snapshots: LAYOUTGET answers
//!   LAYOUTUNAVAILABLE), by the file's data image at S (`read_at`).
//! - **Opens** (§4.4): NFS state is keyed by inode number, so an open inside a snapshot is
//!   keyed by a number of its own (`StateKeys`), never the live file's: it meets neither the
//!   live file's share reservations nor its delegations, and no delegation is granted inside
//!   a snapshot. Byte-range locks inside snapshots are not served yet (NOTSUPP).
use super::fh::{check_name, flavors};
use super::{error_result, status, table};
use crate::error::{NfsError, NfsResult};
use crate::nfs::attrs;
use crate::nfs::ctx::{Ctx, SnapPos};
use meta::namespace::snap::{ImageForm, Registry, SnapId, SnapState};
use meta::namespace::xattr;
use meta::namespace::{FileKind, FsError, Inode, Snapshot, ROOT_INO};
use proto::nfs4::attr::{Bitmap, FATTR4_FILEHANDLE};
use proto::nfs4::basic::{
    ChangeInfo4, Fattr4, Fsid4, ACCESS4_EXECUTE, ACCESS4_LOOKUP, ACCESS4_READ, ACCESS4_XALIST,
    ACCESS4_XAREAD,
};
use proto::nfs4::compound::{NfsArgop4 as A, NfsResop4 as R};
use proto::nfs4::fileops::*;
use proto::nfs4::pnfs::Layoutiomode4;
use proto::nfs4::state::*;
use proto::nfs4::v42::*;
use proto::xdr::Opaque;

/// The name of a snapshot root's snapshot directory.
pub const SNAPSHOT_NAME: &[u8] = b".snapshot";

/// The fileid of D's `.snapshot` is `D | SNAPDIR_FILEID`: unique because inode numbers stay
/// below 2^63 (`meta_core::shard::MAX_SHARDS`).
const SNAPDIR_FILEID: u64 = 1 << 63;

/// `OPEN4_SHARE_ACCESS_WRITE`.
const ACCESS_WRITE: u32 = 2;

/// Why `op` is refused outright on a snapshot's handle, before any handler (the module
/// comment): `None` when it is not, or no handle is inside a snapshot.
pub fn refusal(ctx: &Ctx<'_>, op: &A) -> Option<NfsError> {
    let (cur, saved) = (ctx.in_snapshot(), ctx.saved_in_snapshot());
    if !cur && !saved {
        return None;
    }
    let info = table::info(op.opnum());
    if !info.has(table::CHANGES_FS) {
        return None;
    }
    let rofs = match op {
        A::Open(a) => {
            cur && (a.share_access & ACCESS_WRITE != 0 || matches!(a.openhow, Openflag4::Create(_)))
        }
        A::Layoutget(a) => cur && a.loga_iomode != Layoutiomode4::Read,
        // Out of a snapshot into the live file system: only the live file changes.
        A::Copy(_) | A::Clone(_) if !cur => return Some(NfsError::NotSupp),
        _ if info.owner == table::Owner::SavedAndCurrent => true,
        _ => cur,
    };
    rofs.then_some(NfsError::Rofs)
}

/// EXIST for a name `.snapshot` made in a live directory that is a snapshot root (CREATE,
/// OPEN with a create, RENAME or LINK to it): there the name is the snapshot directory's,
/// which a real entry would hide from LOOKUP. Read from this node's replica of the registry
/// without a barrier: a snapshot made through another node an instant ago may be missed, and
/// the entry is then shadowed by `.snapshot` until renamed (nothing is lost).
pub fn shadowing(ctx: &Ctx<'_>, op: &A) -> Option<NfsError> {
    let name = match op {
        A::Create(a) => &a.objname,
        A::Open(a) => match (&a.openhow, &a.claim) {
            (Openflag4::Create(_), OpenClaim4::Null(n)) => n,
            _ => return None,
        },
        A::Rename(a) => &a.newname,
        A::Link(a) => &a.newname,
        _ => return None,
    };
    if name.as_bytes() != SNAPSHOT_NAME || ctx.in_snapshot() {
        return None;
    }
    let dir = ctx.cfh?;
    let rooted = ctx
        .mds
        .ns
        .snapshot()
        .and_then(|s| s.snaps_rooted_at(dir))
        .is_ok_and(|r| !r.is_empty());
    rooted.then_some(NfsError::Exist)
}

/// Runs `op` on a current handle inside a snapshot; `None` for the operations the live
/// handlers serve as they are (those that only move handles, and the session's).
pub async fn dispatch(ctx: &mut Ctx<'_>, op: &A) -> Option<R> {
    if !ctx.in_snapshot() {
        // Only the saved handle is: the operations that read it were refused above.
        return None;
    }
    Some(match op {
        A::Putfh(_) | A::Putrootfh | A::Putpubfh | A::Getfh | A::Savefh | A::Restorefh => {
            return None
        }
        A::Lookup(a) => R::Lookup(status(lookup(ctx, a).await)),
        A::Lookupp => R::Lookupp(status(lookupp(ctx).await)),
        A::Getattr(a) => R::Getattr(match getattr(ctx, a).await {
            Ok(r) => GetattrRes::Ok(r),
            Err(e) => GetattrRes::error(e.code()),
        }),
        A::Verify(a) => R::Verify(status(verify(ctx, &a.obj_attributes, true).await)),
        A::Nverify(a) => R::Nverify(status(verify(ctx, &a.obj_attributes, false).await)),
        A::Access(a) => R::Access(match access(ctx, a).await {
            Ok(r) => AccessRes::Ok(r),
            Err(e) => AccessRes::error(e.code()),
        }),
        A::Readdir(a) => R::Readdir(match readdir(ctx, a).await {
            Ok(r) => ReaddirRes::Ok(r),
            Err(e) => ReaddirRes::error(e.code()),
        }),
        A::Readlink => R::Readlink(match readlink(ctx).await {
            Ok(r) => ReadlinkRes::Ok(r),
            Err(e) => ReadlinkRes::error(e.code()),
        }),
        A::Getxattr(a) => R::Getxattr(match getxattr(ctx, a).await {
            Ok(r) => GetxattrRes::Ok(r),
            Err(e) => GetxattrRes::error(e.code()),
        }),
        A::Listxattrs(a) => R::Listxattrs(match listxattrs(ctx, a).await {
            Ok(r) => ListxattrsRes::Ok(r),
            Err(e) => ListxattrsRes::error(e.code()),
        }),
        A::Secinfo(a) => R::Secinfo(secinfo(ctx, Some(a)).await),
        A::SecinfoNoName(_) => R::Secinfo(secinfo(ctx, None).await),
        A::Open(a) => R::Open(match Box::pin(open(ctx, a)).await {
            Ok(r) => OpenRes::Ok(r),
            Err(e) => OpenRes::error(e.code()),
        }),
        A::Close(a) => R::Close(match close(ctx, a) {
            Ok(()) => {
                ctx.cur_sid = None;
                CloseRes::Ok(crate::state::StateId::INVALID)
            }
            Err(e) => CloseRes::error(e.code()),
        }),
        A::OpenDowngrade(a) => R::OpenDowngrade(match open_downgrade(ctx, a) {
            Ok(s) => {
                ctx.cur_sid = Some(s);
                OpenDowngradeRes::Ok(OpenDowngradeResOk { open_stateid: s })
            }
            Err(e) => OpenDowngradeRes::error(e.code()),
        }),
        A::Read(a) => R::Read(
            match Box::pin(read(ctx, &a.stateid, a.offset, a.count)).await {
                Ok((data, eof)) => ReadRes::Ok(ReadResOk {
                    eof,
                    data: Opaque(data),
                }),
                Err(e) => ReadRes::error(e.code()),
            },
        ),
        A::ReadPlus(a) => R::ReadPlus(
            match Box::pin(read(ctx, &a.rpa_stateid, a.rpa_offset, a.rpa_count)).await {
                Ok((data, eof)) => ReadPlusRes::Ok(ReadPlusResOk {
                    rpr_eof: eof,
                    rpr_contents: if data.is_empty() {
                        Vec::new()
                    } else {
                        vec![ReadPlusContent::Data(Data4 {
                            d_offset: a.rpa_offset,
                            d_data: Opaque(data),
                        })]
                    },
                }),
                Err(e) => ReadPlusRes::error(e.code()),
            },
        ),
        A::Seek(a) => R::Seek(match seek(ctx, a).await {
            Ok(r) => SeekRes::Ok(r),
            Err(e) => SeekRes::error(e.code()),
        }),
        // Snapshot reads go through the MDS (`read_at`); a RW layout was refused above.
        A::Layoutget(_) => error_result(op, NfsError::LayoutUnavailable),
        // None is granted inside a snapshot.
        A::Delegreturn(_) => error_result(op, NfsError::BadStateId),
        A::GetDirDelegation(_) => R::GetDirDelegation(GetDirDelegationRes::Ok(
            GetDirDelegationResNonFatal::Unavail(false),
        )),
        _ if matches!(
            table::info(op.opnum()).owner,
            table::Owner::None | table::Owner::Session
        ) =>
        {
            return None
        }
        // Byte-range locks, LAYOUTRETURN, IO_ADVISE... on a snapshot's files: not served, and
        // never by a live handler.
        _ => error_result(op, NfsError::NotSupp),
    })
}

/// LOOKUP `.snapshot` in live directory `dir`: enters its snapshot directory if some `Ready`
/// snapshot is rooted there (true); false otherwise, and the name is looked up as any other.
pub async fn enter_snapshot_dir(ctx: &mut Ctx<'_>, dir: u64) -> NfsResult<bool> {
    let rooted = ctx
        .read(|_, s| Ok(!s.snaps_rooted_at(dir)?.is_empty()))
        .await?;
    if rooted {
        let exp = ctx.cexp;
        ctx.set_cur_at(dir, exp, Some(SnapPos::Dir));
    }
    Ok(rooted)
}

/// Whether a handle of `ino` at `pos` names something that exists: PUTFH's check (STALE
/// otherwise, or DELAY while this node cannot tell).
pub async fn check_handle(ctx: &mut Ctx<'_>, ino: u64, pos: SnapPos) -> NfsResult<()> {
    let r = match pos {
        SnapPos::Dir => {
            ctx.read(|_, s| {
                let d = s.getattr_settled(ino)?;
                match d.kind.is_dir() && !s.snaps_rooted_at(ino)?.is_empty() {
                    true => Ok(()),
                    false => Err(FsError::Stale(ino)),
                }
            })
            .await
        }
        SnapPos::In(snap) => ctx.read(|_, s| ready(s, snap, ino)?.map(|_| ())).await,
    };
    r.map_err(|e| match e {
        NfsError::Delay => NfsError::Delay,
        _ => NfsError::Stale,
    })
}

/// Inode `ino` at `snap`, if the registry shows the snapshot `Ready` (`Busy` while it is
/// decided but not every shard is cut on this node, `Stale` otherwise). The outer error is
/// the namespace's, for `Ctx::read`.
fn ready(s: &Snapshot<'_>, snap: SnapId, ino: u64) -> Result<Result<Inode, FsError>, FsError> {
    match s.snap_record(snap)?.map(|r| r.state) {
        Some(SnapState::Ready { .. }) => Ok(s.inode_at(snap, ino)),
        Some(SnapState::Decided { .. }) => Err(FsError::Busy),
        _ => Err(FsError::Stale(ino)),
    }
}

/// What the current handle names, as the handlers see it.
struct Obj {
    /// The handle's inode number (for `Dir`, the snapshot root D).
    ino: u64,
    pos: SnapPos,
    /// The inode at S; for `Dir`, a read-only directory made from D's live inode
    /// (`snapshot_dir`).
    inode: Inode,
    /// For `Dir`, the snapshots it lists.
    snaps: Registry,
}

async fn cur(ctx: &mut Ctx<'_>) -> NfsResult<Obj> {
    let ino = ctx.fh()?;
    let pos = ctx.csnap.ok_or(NfsError::ServerFault)?;
    match pos {
        SnapPos::Dir => {
            let (d, snaps) = ctx
                .read(|_, s| Ok((s.getattr_settled(ino)?, s.snaps_rooted_at(ino)?)))
                .await?;
            // The last of D's snapshots deleted: the directory is gone with it.
            if snaps.is_empty() {
                return Err(NfsError::Stale);
            }
            Ok(Obj {
                ino,
                pos,
                inode: snapshot_dir(&d, &snaps),
                snaps,
            })
        }
        SnapPos::In(snap) => {
            let inode = ctx.read(|_, s| ready(s, snap, ino)).await??;
            Ok(Obj {
                ino,
                pos,
                inode,
                snaps: Registry::new(),
            })
        }
    }
}

/// D's `.snapshot` as a directory: D's owner and times, read-only, one link per snapshot
/// (each a directory), a change attribute that moves when a snapshot comes or goes.
fn snapshot_dir(d: &Inode, snaps: &Registry) -> Inode {
    let newest = snaps.keys().next_back().copied().unwrap_or(0);
    Inode {
        ino: d.ino | SNAPDIR_FILEID,
        kind: FileKind::Directory,
        mode: d.mode & 0o555,
        nlink: 2u32.saturating_add(u32::try_from(snaps.len()).unwrap_or(u32::MAX)),
        size: 4096,
        // Ids only grow, so a new snapshot raises it; a deletion changes the count. (A
        // deletion of the newest with a create in between could repeat a value: the record
        // of a deleted snapshot goes only after its merge, a few hundred milliseconds.)
        change: newest.saturating_mul(1 << 16) | (snaps.len() as u64 & 0xFFFF),
        parent: d.ino,
        create_verifier: None,
        ..d.clone()
    }
}

fn require_dir(i: &Inode) -> NfsResult<()> {
    match i.kind {
        FileKind::Directory => Ok(()),
        FileKind::Symlink { .. } => Err(NfsError::Symlink),
        _ => Err(NfsError::NotDir),
    }
}

/// The attributes of `i` as a handle of `ino` at `pos` shows them (the module comment).
fn encode(ctx: &Ctx<'_>, ino: u64, pos: SnapPos, i: &Inode, want: &Bitmap) -> Fattr4 {
    let mds = ctx.mds;
    let used = i.size.div_ceil(4096) * 4096;
    let mut a = attrs::file_attrs(mds, i, want, used);
    a.filehandle = want
        .get(FATTR4_FILEHANDLE)
        .then(|| mds.handles.handle_at(ctx.cexp, ino, Some(pos.field())));
    if let SnapPos::In(snap) = pos {
        a.fsid = Some(Fsid4 {
            major: mds.handles.fs_id,
            minor: snap,
        });
    }
    // No layouts inside snapshots: the client reads through the MDS from the start.
    a.fs_layout_types = a.fs_layout_types.map(|_| Vec::new());
    a.encode(&want.intersection(attrs::supported()))
}

async fn getattr(ctx: &mut Ctx<'_>, a: &GetattrArgs) -> NfsResult<GetattrResOk> {
    let want = Bitmap::from_words(&a.attr_request);
    let o = cur(ctx).await?;
    Ok(GetattrResOk {
        obj_attributes: encode(ctx, o.ino, o.pos, &o.inode, &want),
    })
}

/// VERIFY and NVERIFY against the attributes GETATTR gives here (`attrs::matches`' rules).
async fn verify(ctx: &mut Ctx<'_>, f: &Fattr4, want_same: bool) -> NfsResult<()> {
    use proto::nfs4::attr::*;
    let o = cur(ctx).await?;
    let mask = Bitmap::from_words(&f.attrmask);
    if !mask.is_subset(attrs::supported()) {
        return Err(NfsError::AttrNotSupp);
    }
    if mask.get(FATTR4_RDATTR_ERROR)
        || mask.get(FATTR4_TIME_ACCESS_SET)
        || mask.get(FATTR4_TIME_MODIFY_SET)
        || mask.get(FATTR4_TIME_DELEG_ACCESS)
        || mask.get(FATTR4_TIME_DELEG_MODIFY)
    {
        return Err(NfsError::Inval);
    }
    let mine = encode(ctx, o.ino, o.pos, &o.inode, &mask);
    let same = mine.attrmask == f.attrmask && mine.attr_vals == f.attr_vals;
    match (same, want_same) {
        (true, true) | (false, false) => Ok(()),
        (false, true) => Err(NfsError::NotSame),
        (true, false) => Err(NfsError::Same),
    }
}

/// ACCESS as the inode at S allows, never MODIFY, EXTEND, DELETE or XAWRITE.
async fn access(ctx: &mut Ctx<'_>, a: &AccessArgs) -> NfsResult<AccessResOk> {
    let o = cur(ctx).await?;
    let i = &o.inode;
    let dir = i.kind.is_dir();
    let xattrs = matches!(i.kind, FileKind::Regular | FileKind::Directory);
    let xa = if xattrs {
        ACCESS4_XAREAD | ACCESS4_XALIST
    } else {
        0
    };
    // The bits a live object supports, so a client sees them refused, not unknown.
    let live = crate::nfs::ops::attr::supported_access(i);
    let supported = live & a.access;
    let mut granted = 0;
    if ctx.may(i, 4) {
        granted |= ACCESS4_READ;
    }
    if xattrs && xattr::permission(&ctx.user, i, meta::namespace::perm::MAY_READ).is_ok() {
        granted |= xa;
    }
    if ctx.may(i, 1) {
        granted |= if dir { ACCESS4_LOOKUP } else { ACCESS4_EXECUTE };
    }
    Ok(AccessResOk {
        supported,
        access: granted & supported,
    })
}

async fn lookup(ctx: &mut Ctx<'_>, a: &LookupArgs) -> NfsResult<()> {
    let o = cur(ctx).await?;
    require_dir(&o.inode)?;
    let name = check_name(&a.objname)?;
    ctx.require(&o.inode, 1)?;
    let exp = ctx.cexp;
    match o.pos {
        SnapPos::Dir => {
            let snap = (o.snaps.iter())
                .find(|(_, r)| r.name == name)
                .map(|(id, _)| *id)
                .ok_or(NfsError::NoEnt)?;
            // The root as it was at the cut (a snapshot of a directory that existed then).
            let root = o.ino;
            ctx.read(|_, s| ready(s, snap, root)).await??;
            ctx.set_cur_at(root, exp, Some(SnapPos::In(snap)));
        }
        SnapPos::In(snap) => {
            let dir = o.ino;
            let found = ctx.read(|_, s| s.lookup_at(snap, dir, name)).await?;
            ctx.set_cur_at(found.ino, exp, Some(SnapPos::In(snap)));
        }
    }
    Ok(())
}

/// From a snapshot's root up to `.snapshot`, from there to the live directory; elsewhere
/// the parent at S.
async fn lookupp(ctx: &mut Ctx<'_>) -> NfsResult<()> {
    let o = cur(ctx).await?;
    require_dir(&o.inode)?;
    let exp = ctx.cexp;
    match o.pos {
        SnapPos::Dir => ctx.set_cur_at(o.ino, exp, None),
        SnapPos::In(snap) => {
            let root = ctx
                .read(|_, s| s.snap_record(snap))
                .await?
                .ok_or(NfsError::Stale)?
                .root;
            if o.ino == root {
                ctx.set_cur_at(root, exp, Some(SnapPos::Dir));
            } else {
                ctx.require(&o.inode, 1)?;
                let up = o.inode.parent;
                if o.ino == ROOT_INO || up == o.ino || up == 0 {
                    return Err(NfsError::NoEnt);
                }
                ctx.set_cur_at(up, exp, Some(SnapPos::In(snap)));
            }
        }
    }
    Ok(())
}

async fn readlink(ctx: &mut Ctx<'_>) -> NfsResult<ReadlinkResOk> {
    match cur(ctx).await?.inode.kind {
        FileKind::Symlink { target } => Ok(ReadlinkResOk {
            link: Opaque(target),
        }),
        _ => Err(NfsError::Inval),
    }
}

async fn getxattr(ctx: &mut Ctx<'_>, a: &GetxattrArgs) -> NfsResult<GetxattrResOk> {
    xattr::check_name(a.gxa_name.as_bytes())?;
    let o = cur(ctx).await?;
    xattr::permission(&ctx.user, &o.inode, meta::namespace::perm::MAY_READ)?;
    let mut x = match o.pos {
        SnapPos::Dir => Default::default(),
        SnapPos::In(snap) => ctx.read(|_, s| s.xattrs_at(snap, o.ino)).await?,
    };
    let value = x.remove(a.gxa_name.as_bytes()).ok_or(NfsError::NoXattr)?;
    Ok(GetxattrResOk {
        gxr_value: value.into(),
    })
}

async fn listxattrs(ctx: &mut Ctx<'_>, a: &ListxattrsArgs) -> NfsResult<ListxattrsResOk> {
    let o = cur(ctx).await?;
    xattr::permission(&ctx.user, &o.inode, meta::namespace::perm::MAY_READ)?;
    let x = match o.pos {
        SnapPos::Dir => Default::default(),
        SnapPos::In(snap) => ctx.read(|_, s| s.xattrs_at(snap, o.ino)).await?,
    };
    super::xattr::list(x.keys().map(|k| k.as_slice()), a.lxa_cookie, a.lxa_maxcount)
}

/// SECINFO (with a name, which must exist here) and SECINFO_NO_NAME: the export's flavors;
/// both consume the current handle (RFC 8881 §2.6.3.1.1.8).
async fn secinfo(ctx: &mut Ctx<'_>, a: Option<&SecinfoArgs>) -> SecinfoRes {
    let r = async {
        if let Some(a) = a {
            let o = cur(ctx).await?;
            require_dir(&o.inode)?;
            let name = check_name(&a.name)?;
            match o.pos {
                SnapPos::Dir => {
                    o.snaps
                        .values()
                        .find(|r| r.name == name)
                        .ok_or(NfsError::NoEnt)?;
                }
                SnapPos::In(snap) => {
                    ctx.read(|_, s| s.lookup_at(snap, o.ino, name)).await?;
                }
            }
        }
        Ok::<_, NfsError>(())
    }
    .await;
    match r {
        Ok(()) => {
            let res = SecinfoRes::Ok(flavors(ctx.export, &ctx.mds.exports));
            ctx.cfh = None;
            res
        }
        Err(e) => SecinfoRes::error(e.code()),
    }
}

/// A `.snapshot` listing: D's snapshots by name, cookie = id + 2 (ids count from 1; cookies
/// 0 to 2 mean "from the start"), each with its root's attributes at its cut. Inside a
/// snapshot, the directory at S (`Snapshot::readdir_at`).
async fn readdir(ctx: &mut Ctx<'_>, a: &ReaddirArgs) -> NfsResult<ReaddirResOk> {
    let o = cur(ctx).await?;
    require_dir(&o.inode)?;
    ctx.require(&o.inode, 4)?;
    let want = Bitmap::from_words(&a.attr_request);
    // Reply overhead: status, verifier, eof, end-of-list marker and some slack (as
    // `dir::list`).
    let budget = (a.maxcount.min(crate::limits::MAX_IO) as usize).saturating_sub(64);
    let after = if a.cookie < 3 { 0 } else { a.cookie };
    match o.pos {
        SnapPos::Dir => {
            let root = o.ino;
            ctx.read(|c, s| {
                let mut page = Page::new(budget);
                for (id, r) in o.snaps.range(after.saturating_sub(2).saturating_add(1)..) {
                    let i = match s.inode_at(*id, root) {
                        Ok(i) => i,
                        // Deleted meanwhile: not listed.
                        Err(FsError::Stale(_)) => continue,
                        Err(e) => return Err(e),
                    };
                    let attrs = encode(c, root, SnapPos::In(*id), &i, &want);
                    if !page.push(id + 2, r.name.clone(), attrs) {
                        return Ok(page.done(false));
                    }
                }
                Ok(page.done(true))
            })
            .await?
        }
        SnapPos::In(snap) => {
            let dir = o.ino;
            ctx.read(|c, s| {
                let mut page = Page::new(budget);
                let mut after = after;
                loop {
                    let (batch, done) = s.readdir_at(snap, dir, after, 256)?;
                    for e in batch {
                        after = e.cookie;
                        let i = s.inode_at(snap, e.ino)?;
                        let attrs = encode(c, e.ino, SnapPos::In(snap), &i, &want);
                        if !page.push(e.cookie, e.name, attrs) {
                            return Ok(page.done(false));
                        }
                    }
                    if done {
                        return Ok(page.done(true));
                    }
                }
            })
            .await?
        }
    }
}

/// READDIR's entries within the client's `maxcount`, as `dir::list` counts them.
struct Page {
    budget: usize,
    used: usize,
    entries: Vec<Entry4>,
}

impl Page {
    fn new(budget: usize) -> Page {
        Page {
            budget,
            used: 0,
            entries: Vec::new(),
        }
    }

    /// Adds an entry if it fits; false if it does not (the page is full).
    fn push(&mut self, cookie: u64, name: Vec<u8>, attrs: Fattr4) -> bool {
        let cost = 4
            + 8
            + 4
            + name.len().div_ceil(4) * 4
            + 4
            + attrs.attrmask.len() * 4
            + 4
            + attrs.attr_vals.len();
        if self.used + cost > self.budget {
            return false;
        }
        self.used += cost;
        self.entries.push(Entry4 {
            cookie,
            name: Opaque(name),
            attrs,
        });
        true
    }

    /// The page; TOOSMALL when not even one entry fitted and there were more.
    fn done(self, eof: bool) -> NfsResult<ReaddirResOk> {
        if !eof && self.entries.is_empty() {
            return Err(NfsError::TooSmall);
        }
        Ok(ReaddirResOk {
            cookieverf: [0; 8],
            reply: Dirlist4 {
                entries: self.entries,
                eof,
            },
        })
    }
}

/// The regular file the current handle names at S, with S.
async fn file(ctx: &mut Ctx<'_>) -> NfsResult<(Inode, SnapId)> {
    let o = cur(ctx).await?;
    let SnapPos::In(snap) = o.pos else {
        return Err(NfsError::IsDir);
    };
    match o.inode.kind {
        FileKind::Regular => Ok((o.inode, snap)),
        FileKind::Directory => Err(NfsError::IsDir),
        FileKind::Symlink { .. } => Err(NfsError::Symlink),
        _ => Err(NfsError::WrongType),
    }
}

/// OPEN for reading inside a snapshot (write access and creates were refused as ROFS): by
/// name in a directory at S (CLAIM_NULL) or by handle (CLAIM_FH, and CLAIM_PREVIOUS after a
/// restart, which interns the handle's key again). The open is keyed by `StateKeys`, and no
/// delegation is granted.
async fn open(ctx: &mut Ctx<'_>, a: &OpenArgs) -> NfsResult<OpenResOk> {
    let clientid = ctx.clientid()?;
    let access = a.share_access & 3;
    let deny = a.share_deny;
    if access == 0 || deny > 3 {
        return Err(NfsError::Inval);
    }
    let reclaim = matches!(a.claim, OpenClaim4::Previous(_));
    let state = &ctx.mds.nfs.state;
    if reclaim {
        state.check_reclaim(clientid)?;
    } else if !state.reclaim_completed(clientid) || state.in_grace() {
        // As a live OPEN (RFC 8881 §18.51.3).
        return Err(NfsError::Grace);
    }
    let (file, snap, dir_change) = match &a.claim {
        OpenClaim4::Null(name) => {
            let name = check_name(name)?;
            let o = cur(ctx).await?;
            require_dir(&o.inode)?;
            ctx.require(&o.inode, 1)?;
            let SnapPos::In(snap) = o.pos else {
                // A name in `.snapshot` is a snapshot's root, a directory.
                o.snaps
                    .values()
                    .find(|r| r.name == name)
                    .ok_or(NfsError::NoEnt)?;
                return Err(NfsError::IsDir);
            };
            let dir = o.ino;
            let f = ctx.read(|_, s| s.lookup_at(snap, dir, name)).await?;
            (f, snap, o.inode.change)
        }
        OpenClaim4::Fh | OpenClaim4::Previous(_) => {
            let (f, snap) = file(ctx).await?;
            let change = f.change;
            (f, snap, change)
        }
        _ => return Err(NfsError::NotSupp),
    };
    match file.kind {
        FileKind::Regular => {}
        FileKind::Directory => return Err(NfsError::IsDir),
        FileKind::Symlink { .. } => return Err(NfsError::Symlink),
        _ => return Err(NfsError::WrongType),
    }
    // A read-only open of a file one may only execute is how exec(2) reads it.
    if !(reclaim || ctx.may(&file, 4) || ctx.may(&file, 1)) {
        return Err(NfsError::Access);
    }
    let mds = ctx.mds;
    let key = mds
        .snap_keys
        .key(snap, file.ino, |k| mds.nfs.state.file_in_use(k))?;
    let opened = mds
        .nfs
        .state
        .open(clientid, a.owner.owner.as_bytes(), key, access, deny)?;
    let exp = ctx.cexp;
    ctx.set_cur_at(file.ino, exp, Some(SnapPos::In(snap)));
    ctx.cur_sid = Some(opened);
    Ok(OpenResOk {
        stateid: opened,
        cinfo: ChangeInfo4 {
            atomic: true,
            before: dir_change,
            after: dir_change,
        },
        rflags: OPEN4_RESULT_LOCKTYPE_POSIX,
        attrset: Vec::new(),
        delegation: if a.share_access & OPEN4_SHARE_ACCESS_WANT_DELEG_MASK
            == OPEN4_SHARE_ACCESS_WANT_NO_DELEG
        {
            OpenDelegation4::NoneExt(OpenNoneDelegation4::Why(WND4_NOT_WANTED))
        } else {
            OpenDelegation4::None
        },
    })
}

/// The state key of the current handle's file at S, if any open made one.
fn state_key(ctx: &Ctx<'_>) -> NfsResult<u64> {
    let ino = ctx.fh()?;
    let Some(SnapPos::In(snap)) = ctx.csnap else {
        return Err(NfsError::BadStateId);
    };
    ctx.mds.snap_keys.get(snap, ino).ok_or(NfsError::BadStateId)
}

fn close(ctx: &mut Ctx<'_>, a: &CloseArgs) -> NfsResult<()> {
    let key = state_key(ctx)?;
    let sid = ctx.stateid(&a.open_stateid)?;
    ctx.mds.nfs.state.close(&sid, key)
}

fn open_downgrade(ctx: &mut Ctx<'_>, a: &OpenDowngradeArgs) -> NfsResult<crate::state::StateId> {
    let key = state_key(ctx)?;
    let sid = ctx.stateid(&a.open_stateid)?;
    ctx.mds
        .nfs
        .state
        .open_downgrade(&sid, key, a.share_access & 3, a.share_deny)
}

/// READ (and READ_PLUS) at S: under an open made here, or a special stateid with read
/// permission on the file at S.
async fn read(
    ctx: &mut Ctx<'_>,
    sid: &proto::nfs4::basic::Stateid4,
    offset: u64,
    count: u32,
) -> NfsResult<(Vec<u8>, bool)> {
    let (i, snap) = file(ctx).await?;
    let sid = ctx.stateid(sid)?;
    if crate::state::is_special(&sid) {
        ctx.require(&i, 4)?;
    } else {
        let key = state_key(ctx)?;
        ctx.mds.nfs.state.check_io(&sid, key, false)?;
    }
    let count = count.min(crate::limits::MAX_IO);
    read_at(ctx.mds, snap, &i, offset, u64::from(count)).await
}

/// `[offset, offset + len)` of file `i` as it was at `snap` (`i` is the inode at S: its size
/// bounds the read). The bytes are those of the file's data image at the smallest cut at or
/// above S (`meta_core::snap::image`), or the live file's when it has none, i.e. its bytes
/// did not change since S.
pub async fn read_at(
    mds: &std::sync::Arc<crate::node::Mds>,
    snap: SnapId,
    i: &Inode,
    offset: u64,
    len: u64,
) -> NfsResult<(Vec<u8>, bool)> {
    let images = mds.ns.images(i.ino)?;
    let image = images.range(snap..).next().map(|(_, im)| &im.form);
    match image {
        // A mirrored image whose links are not all known to be made: the gate holds the
        // file unchanged until they are, so the live bytes are still the image's.
        None | Some(ImageForm::Mirrored { linking: true, .. }) => {
            mds.data.read_data(i.ino, offset, len, i.size).await
        }
        Some(ImageForm::Empty) => {
            let end = offset.saturating_add(len).min(i.size);
            let n = end.saturating_sub(offset);
            Ok((vec![0; n as usize], offset.saturating_add(n) >= i.size))
        }
        Some(ImageForm::Mirrored {
            object, mirrors, ..
        }) => {
            mds.data
                .read_image(*object, mirrors, offset, len, i.size)
                .await
        }
        // Moved to the object store past its retention (`tiering::snap_archive`): read from
        // there, checked against the sums its record holds, as an evicted file is.
        Some(ImageForm::InBucket { object, copy, .. }) => match &mds.tier {
            Some(t) => crate::evicted::read(t, *object, copy, offset, len, i.size).await,
            None => {
                tracing::warn!(
                    ino = i.ino,
                    object,
                    "a snapshot image is in the object store, and this server has no [tier]"
                );
                Err(NfsError::Io)
            }
        },
        // The plan's other forms (erasure-coded, reduced, evicted; step 7) do not exist yet.
        // When they are added to `ImageForm` this match stops compiling until each is read
        // here; until then an image of a form this cannot read must answer NFS4ERR_IO, never
        // the live bytes.
    }
}

/// SEEK at S: the file is data up to its size at S (holes are not told apart yet).
async fn seek(ctx: &mut Ctx<'_>, a: &SeekArgs) -> NfsResult<SeekResOk> {
    let (i, _) = file(ctx).await?;
    if a.sa_offset >= i.size {
        return Err(NfsError::Nxio);
    }
    Ok(match a.sa_what {
        NFS4_CONTENT_DATA => SeekResOk {
            sr_eof: false,
            sr_offset: a.sa_offset,
        },
        _ => SeekResOk {
            sr_eof: true,
            sr_offset: i.size,
        },
    })
}

/// The numbers NFS state inside snapshots is keyed by (§4.4): state is keyed by inode
/// number, and an open of a snapshot's file must meet neither the live file's share
/// reservations nor its delegations, nor another snapshot's opens of the same inode. So
/// `(snap, ino)` gets a number of this node's own, `STATE_BASE | n`, in the range of shard
/// 0xFFFF, which no file system has an inode in (`meta_core::shard::MAX_SHARDS` is below
/// it). State is memory, as
/// these are: a restart's reclaim interns the handle again. Bounded: when full, numbers no
/// open uses any more are forgotten.
#[derive(Debug, Default)]
pub struct StateKeys {
    inner: std::sync::Mutex<KeysInner>,
}

#[derive(Debug, Default)]
struct KeysInner {
    by_pos: std::collections::HashMap<(SnapId, u64), u64>,
    next: u64,
}

/// Where state keys start: shard 0xFFFF's first inode number.
pub const STATE_BASE: u64 = 0xFFFF << 48;

/// Most state keys kept (~48 MiB at most), more than the opens a node holds.
const KEYS_MAX: usize = 1 << 20;

impl StateKeys {
    /// The key of `ino` at `snap`, made on first use; `in_use(key)`: whether an open still
    /// uses a key (those are kept when the table is full). RESOURCE when every key is in use.
    pub fn key(&self, snap: SnapId, ino: u64, in_use: impl Fn(u64) -> bool) -> NfsResult<u64> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(k) = g.by_pos.get(&(snap, ino)) {
            return Ok(*k);
        }
        if g.by_pos.len() >= KEYS_MAX {
            g.by_pos.retain(|_, k| in_use(*k));
            if g.by_pos.len() >= KEYS_MAX {
                return Err(NfsError::Resource);
            }
        }
        g.next += 1;
        let k = STATE_BASE | (g.next & ((1 << 48) - 1));
        g.by_pos.insert((snap, ino), k);
        Ok(k)
    }

    /// The key of `ino` at `snap`, if one was made.
    pub fn get(&self, snap: SnapId, ino: u64) -> Option<u64> {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.by_pos.get(&(snap, ino)).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_keys_are_per_snapshot_and_inode_in_shard_ffff_and_bounded_by_use() {
        let k = StateKeys::default();
        let a = k.key(1, 42, |_| true).unwrap();
        assert_eq!(k.key(1, 42, |_| true).unwrap(), a);
        let b = k.key(2, 42, |_| true).unwrap();
        assert_ne!(a, b, "two snapshots of one file");
        assert_ne!(a, 42, "never the live file's number");
        assert_eq!(a >> 48, 0xFFFF);
        assert_eq!(k.get(2, 42), Some(b));
        assert_eq!(k.get(3, 42), None);
    }
}
