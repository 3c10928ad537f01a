//! OPEN, CLOSE, OPEN_DOWNGRADE, DELEGRETURN, GET_DIR_DELEGATION.
use super::dir::{cinfo, create_entry};
use super::fh::check_name;
use crate::error::{NfsError, NfsResult};
use crate::nfs::attrs;
use crate::nfs::ctx::Ctx;
use crate::state::{Returned, StateId};
use meta::namespace::{CreateHow, FileKind, FsError, Inode};
use proto::nfs4::basic::{Fattr4, Nfsace4};
use proto::nfs4::state::*;

pub async fn open(ctx: &mut Ctx<'_>, a: &OpenArgs) -> OpenRes {
    match open_inner(ctx, a).await {
        Ok(r) => OpenRes::Ok(r),
        Err(e) => OpenRes::error(e.code()),
    }
}

/// The file an OPEN names, and whether this OPEN created it.
struct Target {
    file: Inode,
    dir: Option<Inode>,
    dir_change: Option<meta::namespace::DirChange>,
    created: bool,
    attrset: Vec<u32>,
}

async fn open_inner(ctx: &mut Ctx<'_>, a: &OpenArgs) -> NfsResult<OpenResOk> {
    let clientid = ctx.clientid()?;
    let access = a.share_access & 3;
    let deny = a.share_deny;
    if access == 0 || deny > 3 {
        return Err(NfsError::Inval);
    }
    let reclaim = matches!(a.claim, OpenClaim4::Previous(_));
    let by_delegation = matches!(
        a.claim,
        OpenClaim4::DelegCurFh(_) | OpenClaim4::DelegateCur(_)
    );
    if reclaim {
        ctx.mds.nfs.state.check_reclaim(clientid)?;
    } else if !ctx.mds.nfs.state.reclaim_completed(clientid)
        || (!by_delegation && ctx.mds.nfs.state.in_grace())
    {
        // RFC 8881 §18.51.3: a client that has not sent RECLAIM_COMPLETE may not take new
        // state yet, in a grace period or not (knfsd's nfsd4_open answers the same).
        return Err(NfsError::Grace);
    }
    let t = match &a.claim {
        OpenClaim4::Null(name) => open_by_name(ctx, a, check_name(name)?.to_vec()).await?,
        OpenClaim4::Fh | OpenClaim4::Previous(_) => {
            if matches!(a.openhow, Openflag4::Create(_)) {
                return Err(NfsError::Inval);
            }
            let file = ctx.cur()?;
            // An unlinked file nobody has open is gone, though the reaper may not have
            // forgotten it yet (it runs after the REMOVE's reply): its handle is stale, as
            // knfsd's is once the inode is freed. A client that opens a cached name by
            // handle (Linux's CLAIM_FH) then looks the name up again and gets ENOENT.
            // Reclaims are exempt: after a restart no open is known until reclaimed.
            if matches!(a.claim, OpenClaim4::Fh)
                && file.nlink == 0
                && !ctx.mds.nfs.state.file_in_use(file.ino)
            {
                return Err(NfsError::Stale);
            }
            Target {
                file,
                dir: None,
                dir_change: None,
                created: false,
                attrset: Vec::new(),
            }
        }
        // The holder of a delegation being recalled turns its local opens into real ones.
        OpenClaim4::DelegCurFh(sid) => {
            let file = ctx.cur()?;
            ctx.mds
                .nfs
                .state
                .check_delegation(&ctx.stateid(sid)?, file.ino, clientid)?;
            Target {
                file,
                dir: None,
                dir_change: None,
                created: false,
                attrset: Vec::new(),
            }
        }
        OpenClaim4::DelegateCur(c) => {
            let dir = ctx.cur_dir()?;
            let name = check_name(&c.file)?;
            let file = ctx.read(|_, s| s.lookup_settled(dir.ino, name)).await?;
            ctx.mds.nfs.state.check_delegation(
                &ctx.stateid(&c.delegate_stateid)?,
                file.ino,
                clientid,
            )?;
            Target {
                file,
                dir: Some(dir),
                dir_change: None,
                created: false,
                attrset: Vec::new(),
            }
        }
        OpenClaim4::DelegatePrev(_) | OpenClaim4::DelegPrevFh => return Err(NfsError::NotSupp),
    };
    match t.file.kind {
        FileKind::Regular => {}
        FileKind::Directory => return Err(NfsError::IsDir),
        FileKind::Symlink { .. } => return Err(NfsError::Symlink),
        _ => return Err(NfsError::WrongType),
    }
    if access & OPEN4_SHARE_ACCESS_WRITE_BIT != 0 {
        ctx.writable()?;
    }
    // The creator may use the file in any way it asked for, whatever mode it gave it.
    if !t.created && !reclaim {
        let mut want = 0;
        if access & 1 != 0 {
            want |= 4;
        }
        if access & 2 != 0 {
            want |= 2;
        }
        // A read-only open of a file one may only execute is how exec(2) reads it (knfsd
        // allows the same).
        let exec_read = want == 4 && ctx.may(&t.file, 1);
        if !(ctx.may(&t.file, want) || exec_read) {
            return Err(NfsError::Access);
        }
    }
    // Held until the open is in the state, where other MDS nodes' notes see it: no node
    // delegates the file meanwhile. A writer recalls every other client's delegation, a
    // reader only their write delegations (whose holders may cache changes it must see).
    let busy = if access & OPEN4_SHARE_ACCESS_WRITE_BIT != 0 {
        crate::state::recall::recall_and_wait(&ctx.mds.nfs, &[t.file.ino], Some(clientid)).await?
    } else {
        crate::state::recall::recall_writers_and_wait(&ctx.mds.nfs, t.file.ino, Some(clientid))
            .await?
    };
    // Held until this open is in the state: another node's deny open waits until then, and
    // this one does not start while another node's open denies it (`remote_shares`).
    let share = crate::state::remote::shares::begin_open(
        &ctx.mds.nfs,
        t.file.ino,
        access,
        deny,
        clientid,
        reclaim,
    )
    .await?;
    let opened =
        ctx.mds
            .nfs
            .state
            .open(clientid, a.owner.owner.as_bytes(), t.file.ino, access, deny)?;
    drop(share);
    // In the state now: this open's own delegation below must not meet it as a conflict.
    drop(busy);
    let kind = delegation_kind(ctx, a, clientid)
        .filter(|write| !*write || write_delegable(ctx, t.file.ino, t.file.mode));
    let delegation = match kind {
        Some(write) => {
            let (mds, ino, change) = (ctx.mds, t.file.ino, t.file.change);
            crate::state::remote::delegations::grant(&mds.nfs, ino, clientid, write, || {
                if write {
                    mds.nfs.state.grant_write_delegation(clientid, ino, change)
                } else {
                    mds.nfs.state.grant_read_delegation(clientid, ino)
                }
            })
            .await
            .map(|d| (d, write))
        }
        None => None,
    };
    // RFC 9754 §5: a delegation granted to an OPEN that asked for delegated timestamps
    // leaves the file's times to its holder.
    let times = delegation.is_some_and(|(d, _)| {
        wants_times(a)
            && ctx
                .mds
                .nfs
                .state
                .delegate_times(&d, crate::state::DelegatedTimes::of(&t.file))
    });
    if times {
        tracing::debug!(clientid, ino = t.file.ino, "delegated timestamps");
    }
    ctx.cfh = Some(t.file.ino);
    ctx.cur_sid = Some(opened);
    let dir_ref = t.dir.as_ref().unwrap_or(&t.file);
    Ok(OpenResOk {
        stateid: opened,
        cinfo: cinfo(t.dir_change, dir_ref),
        // PRESERVE_UNLINKED: an unlinked open file stays until its last close (see
        // `Mds::forget_orphan`), and through a restart's grace period. Linux then removes
        // instead of renaming to .nfsXXXX, and the open file reports nlink 0, as locally.
        rflags: OPEN4_RESULT_LOCKTYPE_POSIX | OPEN4_RESULT_PRESERVE_UNLINKED,
        attrset: t.attrset,
        delegation: match delegation {
            Some((d, false)) => read_delegation(d, times),
            Some((d, true)) => write_delegation(d, times, space_limit(ctx)),
            // RFC 8881 §18.16.3: a client that said it wants none hears why it got none.
            None if a.share_access & OPEN4_SHARE_ACCESS_WANT_DELEG_MASK
                == OPEN4_SHARE_ACCESS_WANT_NO_DELEG =>
            {
                OpenDelegation4::NoneExt(OpenNoneDelegation4::Why(WND4_NOT_WANTED))
            }
            None => OpenDelegation4::None,
        },
    })
}

const OPEN4_SHARE_ACCESS_WRITE_BIT: u32 = 2;

/// Whether a file of this mode may be write-delegated. Not an erasure-coded one: its stripes
/// are written only through us (and the encoder leaves a file alone while one is out). Not a
/// set-id one: a write by another user must clear its set-id bits, which the server does when
/// the write reaches it (a WRITE, a LAYOUTCOMMIT), while a holder reports the mode from its
/// cache (Linux drops its own "mode changed" mark under a delegation). `attr::setattr`
/// recalls the holder's own delegation when its SETATTR makes a file set-id.
pub(super) fn write_delegable(ctx: &Ctx<'_>, ino: u64, mode: u32) -> bool {
    let nfs = &ctx.mds.nfs;
    if mode & super::attr::SET_ID_BITS != 0 {
        return false;
    }
    !nfs.ns
        .stripes(ino)
        .is_ok_and(|c| c.is_some_and(|c| c.is_encoded()))
        && !nfs
            .ns
            .file_reduce(ino)
            .is_ok_and(|r| r.is_some_and(|r| r.is_reduced()))
}

fn read_delegation(stateid: StateId, times: bool) -> OpenDelegation4 {
    let d = OpenReadDelegation4 {
        stateid,
        recall: false,
        permissions: no_ace(),
    };
    if times {
        OpenDelegation4::ReadAttrsDeleg(d)
    } else {
        OpenDelegation4::Read(d)
    }
}

fn write_delegation(stateid: StateId, times: bool, space_limit: u64) -> OpenDelegation4 {
    let d = OpenWriteDelegation4 {
        stateid,
        recall: false,
        space_limit: NfsSpaceLimit4::Size(space_limit),
        permissions: no_ace(),
    };
    if times {
        OpenDelegation4::WriteAttrsDeleg(d)
    } else {
        OpenDelegation4::Write(d)
    }
}

/// Whether a delegation this OPEN gets is to leave the file's times to its holder: it asked
/// (OPEN4_SHARE_ACCESS_WANT_DELEG_TIMESTAMPS), or it reclaims such a delegation.
fn wants_times(a: &OpenArgs) -> bool {
    a.share_access & OPEN4_SHARE_ACCESS_WANT_DELEG_TIMESTAMPS != 0
        || matches!(
            a.claim,
            OpenClaim4::Previous(
                OpenDelegationType4::ReadAttrsDeleg | OpenDelegationType4::WriteAttrsDeleg
            )
        )
}

/// How much a write delegation's holder may keep unwritten past a close (RFC 8881 §10.4.1's
/// space limit; Linux flushes on close once it has more dirty pages than this, and only
/// starts the flush below it). knfsd offers no limit; a bounded one keeps what a crashed
/// client could lose after a successful close, and what an ENOSPC at its later flush would
/// hide from the application, to 64 MiB. (Nothing is reserved for it: the data servers'
/// space is shared.)
const WRITE_DELEGATION_SPACE_LIMIT: u64 = 64 << 20;

/// The space limit of a write delegation this server grants: none to keep past a close
/// (Linux then flushes, commits and LAYOUTCOMMITs before close returns, as without a
/// delegation) where clients write through layouts. A close that only starts the flush lets
/// Linux (seen with 6.1) apply a late LAYOUTCOMMIT reply to its inode after a newer write
/// to the data servers completed: writes there carry no MDS attributes to order it by, and
/// `nfs_post_op_update_inode_force_wcc` takes the reply's size (the earlier commit's end) as
/// the file's, so `echo one > f; echo two >> f; cat f` read "one" until the next commit.
/// Seen in CI (conformance posix, cfs-cluster, bookworm 4.1) and about once in 300 such
/// appends on a loaded host here.
fn space_limit(ctx: &Ctx<'_>) -> u64 {
    if ctx.mds.cluster().is_some() {
        0
    } else {
        WRITE_DELEGATION_SPACE_LIMIT
    }
}

/// knfsd sends an empty ACE too: access is checked at OPEN, not from this.
fn no_ace() -> Nfsace4 {
    Nfsace4 {
        acetype: 0,
        flag: 0,
        access_mask: 0,
        who: proto::xdr::Opaque::default(),
    }
}

/// Which delegation an OPEN asks for and may get, if any: `Some(true)` write, `Some(false)`
/// read (then `grant` still checks the conflicts). A client that can be called back gets a
/// read delegation for a read-only open and a write delegation for an open for writing
/// (`ServerConfig::write_delegations`), unless it said it wants none or only the other kind,
/// or it denies others access. A reclaim (CLAIM_PREVIOUS) gets back what it held: nobody else
/// could take state on the file during the grace period, so the grant only fails if another
/// MDS node gave some out meanwhile; the client then flushes what it cached and goes on with
/// its open alone. Never on an open under a delegation the client holds (it has one).
fn delegation_kind(ctx: &Ctx<'_>, a: &OpenArgs, clientid: u64) -> Option<bool> {
    let nfs = &ctx.mds.nfs;
    nfs.state.back_channel(clientid)?;
    let write_ok = nfs.grants_write_delegations();
    match &a.claim {
        OpenClaim4::Previous(OpenDelegationType4::Read | OpenDelegationType4::ReadAttrsDeleg) => {
            return Some(false)
        }
        OpenClaim4::Previous(OpenDelegationType4::Write | OpenDelegationType4::WriteAttrsDeleg) => {
            return write_ok.then_some(true)
        }
        OpenClaim4::Previous(_)
        | OpenClaim4::DelegCurFh(_)
        | OpenClaim4::DelegateCur(_)
        | OpenClaim4::DelegatePrev(_)
        | OpenClaim4::DelegPrevFh => return None,
        OpenClaim4::Null(_) | OpenClaim4::Fh => {}
    }
    if a.share_deny != 0 {
        return None;
    }
    let write = a.share_access & OPEN4_SHARE_ACCESS_WRITE_BIT != 0;
    match a.share_access & OPEN4_SHARE_ACCESS_WANT_DELEG_MASK {
        OPEN4_SHARE_ACCESS_WANT_NO_DELEG | OPEN4_SHARE_ACCESS_WANT_CANCEL => None,
        OPEN4_SHARE_ACCESS_WANT_READ_DELEG if write => None,
        OPEN4_SHARE_ACCESS_WANT_WRITE_DELEG if !write => None,
        _ if write => write_ok.then_some(true),
        _ => Some(false),
    }
}

async fn open_by_name(ctx: &mut Ctx<'_>, a: &OpenArgs, name: Vec<u8>) -> NfsResult<Target> {
    let dir = ctx.cur_dir()?;
    ctx.require(&dir, 1)?;
    let (how, fattr, verf): (CreateHow, Option<&Fattr4>, Option<[u8; 8]>) = match &a.openhow {
        Openflag4::NoCreate => {
            let file = ctx.read(|_, s| s.lookup_settled(dir.ino, &name)).await?;
            return Ok(Target {
                file,
                dir: Some(dir),
                dir_change: None,
                created: false,
                attrset: Vec::new(),
            });
        }
        Openflag4::Create(Createhow4::Unchecked(f)) => (CreateHow::Unchecked, Some(f), None),
        Openflag4::Create(Createhow4::Guarded(f)) => (CreateHow::Guarded, Some(f), None),
        Openflag4::Create(Createhow4::Exclusive(v)) => (CreateHow::Exclusive(*v), None, Some(*v)),
        Openflag4::Create(Createhow4::Exclusive41(c)) => (
            CreateHow::Exclusive(c.cva_verf),
            Some(&c.cva_attrs),
            Some(c.cva_verf),
        ),
    };
    let set = match fattr {
        Some(f) => attrs::decode_settable(f)?,
        None => attrs::SetAttrs::default(),
    };
    // An existing name is opened without a namespace command, as Linux's lookup_open and
    // knfsd's nfsd4_create_file do for a positive dentry: nothing in the directory changes, so
    // it needs search permission only (checked above), not write, and a read-only export is
    // no obstacle. With no command there is no act for a check made here to go stale before.
    // Only an absent name is created, by a command that checks write permission on the
    // directory itself (`perm::may_create` in `apply`), and that opens the file instead if
    // the name appeared meanwhile.
    // A name a cross-shard transaction holds is not absent: wait, then DELAY; nor is one
    // whose file this node's replica of another shard does not have yet (`Ctx::read`).
    let existing = ctx
        .read(|_, s| match s.lookup_settled(dir.ino, &name) {
            Ok(e) => Ok(Some(e)),
            Err(e @ (FsError::Busy | FsError::Dangling { .. })) => Err(e),
            Err(_) => Ok(None),
        })
        .await?;
    let (file, created, dir_change) = match existing {
        Some(e) if how.reuses(&e, &FileKind::Regular) => (e, false, None),
        Some(_) => return Err(NfsError::Exist),
        None => {
            ctx.writable()?;
            ctx.require(&dir, 3)?;
            // Another client's directory delegation may cache this name as absent.
            let _busy = crate::state::recall::recall_and_wait(
                &ctx.mds.nfs,
                &[dir.ino],
                Some(ctx.clientid()?),
            )
            .await?;
            let mode = set.mode.unwrap_or(0o644);
            let out = create_entry(ctx, &dir, name, FileKind::Regular, mode, how, &set).await?;
            (
                out.inode.ok_or(NfsError::ServerFault)?,
                out.created,
                out.dir,
            )
        }
    };
    let mut attrset = Vec::new();
    if created || verf.is_none() {
        // On create: times as asked (mode, owner and group went into the create), but not
        // O_TRUNC's size 0: the new file is empty already, and it would cost a second durable
        // command (a second fdatasync) on every create. On an UNCHECKED open of an existing
        // file only the size applies.
        let rest = if created {
            attrs::SetAttrs {
                size: set.size.filter(|&s| s != 0),
                atime: set.atime,
                mtime: set.mtime,
                ..Default::default()
            }
        } else {
            attrs::SetAttrs {
                size: set.size,
                ..Default::default()
            }
        };
        super::attr::check_setattr_permission(ctx, &file, &rest)?;
        // An existing file's size set by OPEN changes its bytes: inside the snapshot
        // quiesce's gate, as SETATTR is (`state::quiesce`).
        let _entered = if !created && rest.size.is_some() {
            ctx.require(&file, 2)?;
            Some(ctx.mds.nfs.quiesce.enter()?)
        } else {
            None
        };
        super::attr::apply_setattr(ctx, &file, &rest).await?;
        if created {
            attrset = set.mask.to_vec();
        } else if rest.size.is_some() {
            attrset =
                proto::nfs4::attr::Bitmap::from_bits(&[proto::nfs4::attr::FATTR4_SIZE]).to_vec();
        }
    }
    let file = ctx.mds.ns.getattr(file.ino)?;
    Ok(Target {
        file,
        dir: Some(dir),
        dir_change,
        created,
        attrset,
    })
}

pub async fn close(ctx: &mut Ctx<'_>, a: &CloseArgs) -> CloseRes {
    let r = async {
        let ino = ctx.fh()?;
        let sid = ctx.stateid(&a.open_stateid)?;
        // Linux closes after the last WRITE and COMMIT of the open: a write delegation it
        // returned meanwhile has its size recorded first.
        if let Some(c) = ctx.clientid {
            crate::state::settle::after_writes(&ctx.mds.nfs, c, ino).await;
        }
        // Answered well after the LAYOUTCOMMITs in flight on the file: Linux sends the one of
        // what this close flushed without waiting, and takes a reply it processes after the
        // CLOSE's as newer than what it wrote since (`state::commits`).
        use crate::state::commits::{AFTER_COMMIT, CLOSE_WAIT_MAX};
        if ctx.mds.nfs.commits.drained(ino, CLOSE_WAIT_MAX).await {
            tokio::time::sleep(AFTER_COMMIT).await;
        }
        ctx.mds.nfs.state.close(&sid, ino)?;
        // The last close of an unlinked file lets its data go.
        if ctx.mds.is_orphan(ino) {
            ctx.mds.forget_orphan(ino).await;
        }
        Ok::<_, NfsError>(())
    }
    .await;
    match r {
        Ok(()) => {
            ctx.cur_sid = None;
            CloseRes::Ok(StateId::INVALID)
        }
        Err(e) => CloseRes::error(e.code()),
    }
}

pub fn open_downgrade(ctx: &mut Ctx<'_>, a: &OpenDowngradeArgs) -> OpenDowngradeRes {
    let r = (|| {
        let ino = ctx.fh()?;
        let sid = ctx.stateid(&a.open_stateid)?;
        ctx.mds
            .nfs
            .state
            .open_downgrade(&sid, ino, a.share_access & 3, a.share_deny)
    })();
    match r {
        Ok(s) => {
            ctx.cur_sid = Some(s);
            OpenDowngradeRes::Ok(OpenDowngradeResOk { open_stateid: s })
        }
        Err(e) => OpenDowngradeRes::error(e.code()),
    }
}

pub async fn delegreturn(ctx: &mut Ctx<'_>, a: &DelegreturnArgs) -> NfsResult<()> {
    let ino = ctx.fh()?;
    let sid = ctx.stateid(&a.deleg_stateid)?;
    let nfs = &ctx.mds.nfs;
    match nfs
        .state
        .return_delegation(&sid, ino, nfs.cluster().is_some())?
    {
        Returned::Done => {}
        Returned::Settle { recall_layout } => {
            let clientid = ctx.clientid.ok_or(NfsError::BadStateId)?;
            crate::state::settle::after_return(nfs, clientid, ino, recall_layout).await;
        }
    }
    Ok(())
}

/// Grants a directory delegation (RFC 8881 §18.39) to a client that can be called back.
/// No notifications are offered: a change to the directory by any other client recalls the
/// delegation first (see `recall::recall_and_wait`), so the holder may trust its cached names
/// and the directory's attributes until told otherwise, past the attribute cache timeout that
/// would otherwise send it back to the server. The sid kernel asks after READDIR, REMOVE and
/// RENAME.
pub async fn get_dir_delegation(
    ctx: &mut Ctx<'_>,
    _a: &GetDirDelegationArgs,
) -> GetDirDelegationRes {
    let r = async {
        let dir = ctx.cur_dir()?;
        let clientid = ctx.clientid()?;
        if ctx.mds.nfs.state.back_channel(clientid).is_none() {
            return Ok(None);
        }
        let mds = ctx.mds;
        let granted =
            crate::state::remote::delegations::grant(&mds.nfs, dir.ino, clientid, false, || {
                mds.nfs.state.grant_read_delegation(clientid, dir.ino)
            })
            .await;
        tracing::debug!(
            clientid,
            dir = dir.ino,
            granted = granted.is_some(),
            "GET_DIR_DELEGATION"
        );
        Ok::<_, NfsError>(granted)
    }
    .await;
    match r {
        Ok(Some(stateid)) => {
            GetDirDelegationRes::Ok(GetDirDelegationResNonFatal::Ok(GetDirDelegationResOk {
                // Cookies are stable for the life of an entry: no verifier to hand out.
                gddr_cookieverf: [0; 8],
                gddr_stateid: stateid,
                gddr_notification: Vec::new(),
                gddr_child_attributes: Vec::new(),
                gddr_dir_attributes: Vec::new(),
            }))
        }
        // Declined (no back channel, already held, or a recall of it is under way). We never
        // promise to signal availability later (CB_RECALLABLE_OBJ_AVAIL).
        Ok(None) => GetDirDelegationRes::Ok(GetDirDelegationResNonFatal::Unavail(false)),
        Err(e) => GetDirDelegationRes::error(e.code()),
    }
}
