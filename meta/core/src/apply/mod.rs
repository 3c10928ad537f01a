//! The state machine: `apply` is a pure, deterministic function of (state, command). Everything
//! that varies between runs (time, inode numbers, fs id) arrives inside the command.

mod coding;
mod reduce_index;
mod reducing;
mod snap;
mod snap_image;
mod snap_registry;
mod tiering;
mod txn;
mod xattr;

use crate::command::{check_name, Command, CreateHow};
use crate::error::FsError;
use crate::object::{DirChange, Effect, FileKind, Inode, Outcome, SetTime, Time, ROOT_INO};
use crate::perm::{self, Cred};
use crate::shard::ShardId;
use crate::snap::Preserving;
use crate::state::{meta, StateStore};

/// Size reported for directories; clients only use it for display.
const DIR_SIZE: u64 = 4096;
/// Longest chain of parents followed when checking a directory rename for loops; a longer chain
/// can only come from corrupt state, so it is an error rather than an endless walk.
const MAX_DEPTH: usize = 1 << 16;

/// Applies one command. On error the caller discards whatever the store buffered (see `Staged`).
pub fn apply<S: StateStore + ?Sized>(s: &mut S, cmd: &Command) -> Result<Outcome, FsError> {
    match cmd {
        Command::As { cred, cmd } if !matches!(**cmd, Command::As { .. }) => {
            apply_as(s, cmd, Some(cred))
        }
        Command::As { .. } => Err(FsError::Invalid),
        // At most once per request is the state machine's to see to (`raft::machine`); a
        // transaction's coordinator computes the command itself.
        Command::Request { cmd, .. } if !matches!(**cmd, Command::Request { .. }) => apply(s, cmd),
        Command::Request { .. } => Err(FsError::Invalid),
        other => apply_as(s, other, None),
    }
}

/// Applies `cmd` as shard `shard`'s state machine does: first the snapshot phase's guard
/// (`snap::guard`: a frozen shard refuses changes); then an ordinary command through
/// `txn::Guarded` (objects of other shards are `Elsewhere`, locked ones `Busy`), the steps of
/// a cross-shard transaction as they are, both over `Preserving` (changes keep pre-images for
/// the latest cut, a transaction's commit too); and a snapshot step as it is.
pub fn apply_on_shard<S: StateStore + ?Sized>(
    shard: ShardId,
    s: &mut S,
    cmd: &Command,
) -> Result<Outcome, FsError> {
    let snaps = s.shard_snaps()?;
    snap::guard(&*s, &snaps, cmd)?;
    if let Some(to) = cmd.snap_step() {
        if to != shard {
            return Err(FsError::Invalid);
        }
        return apply(s, cmd);
    }
    let mut s = Preserving::new(s, &snaps);
    if cmd.is_txn_step() {
        apply(&mut s, cmd)
    } else {
        apply(
            &mut txn::Guarded {
                shard,
                inner: &mut s,
            },
            cmd,
        )
    }
}

/// `cmd` as `cred` (permission checked, see `perm`), or as the server itself (`None`).
fn apply_as<S: StateStore + ?Sized>(
    s: &mut S,
    cmd: &Command,
    cred: Option<&Cred>,
) -> Result<Outcome, FsError> {
    match cmd {
        Command::As { .. } | Command::Request { .. } => Err(FsError::Invalid),
        Command::InitRoot { fs_id, time } => init_root(s, *fs_id, *time),
        Command::Create { parent, .. } => create_in(s, ShardId::of_ino(*parent), cmd, cred),
        Command::Place { shard, cmd } => create_in(s, *shard, cmd, cred),
        Command::Link {
            ino,
            parent,
            name,
            time,
        } => link(s, *ino, *parent, name, *time, cred),
        Command::Unlink {
            parent,
            name,
            child,
            time,
        } => remove(s, *parent, name, *child, *time, Which::File, cred),
        Command::Rmdir {
            parent,
            name,
            child,
            time,
        } => remove(s, *parent, name, *child, *time, Which::Dir, cred),
        Command::Remove {
            parent,
            name,
            child,
            time,
        } => remove(s, *parent, name, *child, *time, Which::Any, cred),
        // An administrator's removal of a whole tree, never made on a client's behalf.
        Command::Detach { .. } if cred.is_some() => Err(FsError::Invalid),
        Command::Detach {
            parent,
            name,
            child,
            time,
        } => detach(s, *parent, name, *child, *time),
        Command::Rename {
            src_parent,
            src_name,
            src,
            dst_parent,
            dst_name,
            dst,
            time,
        } => {
            let from = (*src_parent, &src_name[..], *src);
            let to = (*dst_parent, &dst_name[..], *dst);
            rename(s, from, to, *time, cred)
        }
        Command::SetAttr {
            ino,
            mode,
            uid,
            gid,
            size,
            atime,
            mtime,
            time,
        } => {
            let a = AttrChange {
                mode: *mode,
                uid: *uid,
                gid: *gid,
                size: *size,
            };
            setattr(s, *ino, a, *atime, *mtime, *time, cred)
        }
        Command::Write {
            ino,
            end_offset,
            time,
            writes,
        } => write(s, *ino, *end_offset, Some(*time), *writes, cred),
        Command::WriteKeepingTimes {
            ino,
            end_offset,
            writes,
        } => write(s, *ino, *end_offset, None, *writes, cred),
        Command::Forget { ino } => forget(s, *ino),
        Command::SetMirrors {
            ino,
            chunk,
            mirrors,
        } => set_mirrors(s, *ino, *chunk, mirrors),
        Command::ReplaceMirrors {
            ino,
            chunk,
            expect,
            mirrors,
        } => {
            let now = s.chunks(*ino)?.into_iter().find(|(c, _)| c == chunk);
            if now.map(|(_, m)| m).unwrap_or_default() != *expect {
                return Err(FsError::Changed);
            }
            set_mirrors(s, *ino, *chunk, mirrors)
        }
        Command::Noop => Ok(Outcome::default()),
        Command::ForgetOrphans { inos } => forget_orphans(s, inos),
        // An administrator's decision, never made on a client's behalf.
        Command::SetDrain { .. } if cred.is_some() => Err(FsError::Invalid),
        Command::SetDrain { ds, draining } => set_drain(s, *ds, *draining),
        Command::SetDataKey { .. } if cred.is_some() => Err(FsError::Invalid),
        Command::SetDataKey { wrapped, expect } => set_data_key(s, wrapped, expect.as_deref()),
        // The MDS nodes' own records of their clients.
        Command::ClientRecords { .. } | Command::TakeOverClients { .. } if cred.is_some() => {
            Err(FsError::Invalid)
        }
        Command::ClientRecords { node, add, remove } => {
            for o in remove {
                s.put_client(*node, o, false)?;
            }
            for o in add {
                s.put_client(*node, o, true)?;
            }
            Ok(Outcome::default())
        }
        Command::TakeOverClients { from, to } => {
            for o in s.clients_of(*from)? {
                s.put_client(*from, &o, false)?;
                s.put_client(*to, &o, true)?;
            }
            Ok(Outcome::default())
        }
        // The encoder's and repairer's records: the server's own, never a client's.
        Command::BeginEncode { .. }
        | Command::FinishEncode { .. }
        | Command::AbortEncode { .. }
        | Command::ShardBad { .. }
        | Command::ShardMoved { .. }
        | Command::CopiesTrimmed { .. }
        | Command::ShardsDropped { .. }
        | Command::TierBegin { .. }
        | Command::TierDone { .. }
        | Command::TierAbort { .. }
        | Command::TierDoom { .. }
        | Command::TierDeleted { .. }
        | Command::TierEvict { .. }
        | Command::TierWant { .. }
        | Command::TierRestored { .. }
        | Command::AddReferrer { .. }
        | Command::DropReferrer { .. }
        | Command::ForgetSegment { .. }
        | Command::SegmentMoved { .. }
        | Command::SegmentTier { .. }
        | Command::BeginReduce { .. }
        | Command::FinishReduce { .. }
        | Command::AbortReduce { .. }
        | Command::ReduceCopiesTrimmed { .. }
        | Command::ReferrersDropped { .. }
        | Command::SnapKeep { .. }
        | Command::SnapKept { .. }
        | Command::SnapImageMirrors { .. }
        | Command::ReducePart { .. }
        | Command::SnapKeepLocal { .. }
        | Command::SnapImageGone { .. }
        | Command::SnapAdopt { .. }
        | Command::SnapImageArchived { .. }
        | Command::SnapImageFlashFreed { .. }
            if cred.is_some() =>
        {
            Err(FsError::Invalid)
        }
        // The snapshot protocol's steps: the server's own.
        _ if cmd.snap_step().is_some() && cred.is_some() => Err(FsError::Invalid),
        Command::SnapFreeze { snap, time, .. } => snap::freeze(s, *snap, *time),
        Command::SnapCut { snap, time, .. } => snap::cut(s, *snap, *time),
        Command::SnapThaw { snap, .. } => snap::thaw(s, *snap),
        Command::SnapAbort { snap, .. } => snap::abort(s, *snap),
        Command::SnapRetire { snap, .. } => snap::retire(s, *snap),
        Command::SnapMerge { snap, max, .. } => snap::merge(s, *snap, *max),
        Command::SnapForget { snap, .. } => snap::forget(s, *snap),
        Command::SnapBegin {
            name,
            root,
            retain_secs,
            time,
        } => snap_registry::begin(s, name, *root, *retain_secs, *time),
        Command::SnapDecide { snap, time } => snap_registry::decide(s, *snap, *time),
        Command::SnapResolve { snap, time } => snap_registry::resolve(s, *snap, *time),
        Command::SnapReady { snap, time } => snap_registry::ready(s, *snap, *time),
        Command::SnapDelete { snap, time } => snap_registry::delete(s, *snap, *time),
        Command::SnapForgetRecord { snap } => snap_registry::forget_record(s, *snap),
        Command::SnapKeep { ino, time } => snap_image::keep(s, *ino, *time, false),
        Command::SnapKeepLocal { ino, time } => snap_image::keep(s, *ino, *time, true),
        Command::SnapImageGone { ino, snap } => snap_image::gone(s, *ino, *snap),
        Command::SnapAdopt { ino, time, local } => snap_image::adopt(s, *ino, *time, *local),
        Command::SnapImageArchived { ino, snap, copy } => {
            snap_image::archived(s, *ino, *snap, copy)
        }
        Command::SnapImageFlashFreed { ino, snap } => snap_image::flash_freed(s, *ino, *snap),
        Command::SnapKept { ino, snap } => snap_image::kept(s, *ino, *snap),
        Command::SnapImageMirrors {
            ino,
            snap,
            expect,
            mirrors,
        } => snap_image::image_mirrors(s, *ino, *snap, expect, mirrors),
        Command::BeginEncode {
            ino,
            first,
            end,
            k,
            m,
            unit_shift,
            placement,
            time,
        } => coding::begin(
            s,
            *ino,
            *first,
            *end,
            (*k, *m, *unit_shift),
            placement,
            *time,
        ),
        Command::FinishEncode { ino, epoch, done } => coding::finish(s, *ino, *epoch, done),
        Command::AbortEncode { ino, epoch } => coding::abort(s, *ino, *epoch),
        Command::ShardBad {
            ino,
            epoch,
            group,
            shard,
        } => coding::shard_bad(s, *ino, *epoch, *group, *shard),
        Command::ShardMoved {
            ino,
            epoch,
            shard,
            ds,
        } => coding::shard_moved(s, *ino, *epoch, *shard, *ds),
        Command::CopiesTrimmed { ino, epoch } => coding::copies_trimmed(s, *ino, *epoch),
        Command::ShardsDropped { ino, epoch } => coding::shards_dropped(s, *ino, *epoch),
        Command::TierBegin {
            ino,
            change,
            pieces,
            time,
            by,
        } => tiering::begin(s, *ino, (*change, *pieces), *time, *by),
        Command::TierDone {
            ino,
            gen,
            pieces,
            time,
        } => tiering::done(s, *ino, *gen, pieces, *time),
        Command::TierAbort { ino, gen, time } => tiering::abort(s, *ino, *gen, *time),
        Command::TierDoom { ino, time } => tiering::doom(s, *ino, *time),
        Command::TierDeleted { ino, gen } => tiering::deleted(s, *ino, *gen),
        Command::TierEvict { ino, gen, change } => tiering::evict(s, *ino, *gen, *change),
        Command::TierWant { ino } => tiering::want(s, *ino),
        Command::TierRestored { ino, gen } => tiering::restored(s, *ino, *gen),
        Command::AddReferrer {
            shard,
            segment,
            stored,
            referrer,
        } => reduce_index::add_referrer(s, *shard, segment, stored.as_ref(), *referrer),
        Command::DropReferrer {
            shard,
            segment,
            referrer,
        } => reduce_index::drop_referrer(s, *shard, segment, *referrer),
        Command::ForgetSegment { shard, segment } => {
            reduce_index::forget_segment(s, *shard, segment)
        }
        Command::SegmentMoved {
            shard,
            segment,
            index,
            from,
            to,
        } => reduce_index::segment_moved(s, *shard, segment, *index, *from, *to),
        Command::SegmentTier {
            shard,
            segment,
            step,
        } => reduce_index::segment_tier(s, *shard, segment, step),
        Command::BeginReduce { ino, time } => reducing::begin(s, *ino, *time),
        Command::FinishReduce {
            ino,
            epoch,
            len,
            recipe,
            segments,
        } => reducing::finish(s, *ino, *epoch, *len, recipe, segments),
        Command::AbortReduce { ino, epoch } => reducing::abort(s, *ino, *epoch),
        Command::ReduceCopiesTrimmed { ino, epoch } => reducing::copies_trimmed(s, *ino, *epoch),
        Command::ReferrersDropped { ino, epoch } => reducing::referrers_dropped(s, *ino, *epoch),
        Command::ReducePart {
            ino,
            epoch,
            part,
            last,
        } => reducing::part(s, *ino, *epoch, part, *last),
        // The steps of cross-shard transactions: the server's own.
        _ if cmd.is_txn_step() && cred.is_some() => Err(FsError::Invalid),
        Command::TxnLock {
            txn,
            coord,
            keys,
            time,
        } => txn::lock(s, *txn, *coord, keys, *time),
        Command::TxnDecide { txn, parts, time } => txn::decide(s, *txn, parts, *time),
        Command::TxnResolve { txn, time } => txn::resolve(s, *txn, *time),
        Command::TxnCommit { txn, part } => txn::commit(s, *txn, part),
        Command::TxnAbort { txn } => txn::abort(s, *txn),
        Command::TxnForget { txn } => txn::forget(s, *txn),
        Command::SetXattr {
            ino,
            name,
            value,
            how,
            time,
        } => xattr::set(s, *ino, name, value, *how, *time, cred),
        Command::RemoveXattr { ino, name, time } => xattr::remove(s, *ino, name, *time, cred),
    }
}

/// `Create` (alone or as `Place`'s) with its new inode numbered in `shard`.
fn create_in<S: StateStore + ?Sized>(
    s: &mut S,
    shard: ShardId,
    cmd: &Command,
    cred: Option<&Cred>,
) -> Result<Outcome, FsError> {
    let Command::Create {
        parent,
        name,
        kind,
        mode,
        uid,
        gid,
        time,
        how,
    } = cmd
    else {
        return Err(FsError::Invalid);
    };
    let new = NewInode {
        kind,
        mode: *mode,
        uid: *uid,
        gid: *gid,
    };
    create(s, shard, *parent, name, new, *time, *how, cred)
}

struct NewInode<'a> {
    kind: &'a FileKind,
    mode: u32,
    uid: u32,
    gid: u32,
}

struct AttrChange {
    mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
    size: Option<u64>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Which {
    File,
    Dir,
    Any,
}

fn get<S: StateStore + ?Sized>(s: &S, ino: u64) -> Result<Inode, FsError> {
    s.inode(ino)?.ok_or(FsError::Stale(ino))
}

fn get_dir<S: StateStore + ?Sized>(s: &S, ino: u64) -> Result<Inode, FsError> {
    let i = get(s, ino)?;
    if !i.kind.is_dir() {
        return Err(FsError::NotDir);
    }
    Ok(i)
}

/// A directory that may get a new name: not an orphan directory (`Command::Detach`), which
/// only the reclaimer empties. ENOENT, as Linux answers a create in a removed directory
/// (`IS_DEADDIR`).
fn get_live_dir<S: StateStore + ?Sized>(s: &S, ino: u64) -> Result<Inode, FsError> {
    let d = get_dir(s, ino)?;
    if d.nlink == 0 {
        return Err(FsError::NotFound);
    }
    Ok(d)
}

fn check_mode(mode: u32) -> Result<(), FsError> {
    if mode & !0o7777 != 0 {
        return Err(FsError::Invalid);
    }
    Ok(())
}

fn bump(i: &mut Inode, time: Time) {
    i.ctime = time;
    i.change += 1;
}

/// A directory's contents changed: mtime, ctime and change move.
fn touch_dir(d: &mut Inode, time: Time) {
    d.mtime = time;
    bump(d, time);
}

/// Adds `delta` to a counter of the shard `ino` lives on.
fn add_meta<S: StateStore + ?Sized>(
    s: &mut S,
    ino: u64,
    key: &'static str,
    delta: i128,
) -> Result<(), FsError> {
    s.add_meta(ShardId::of_ino(ino), key, delta)
}

/// Bytes of a regular file that count toward usage.
fn data_bytes(i: &Inode) -> i128 {
    match i.kind {
        FileKind::Regular => i128::from(i.size),
        _ => 0,
    }
}

fn add_entry<S: StateStore + ?Sized>(
    s: &mut S,
    dir: u64,
    name: &[u8],
    ino: u64,
) -> Result<(), FsError> {
    let cookie = s.next_cookie(dir)?;
    let next = cookie.checked_add(1).ok_or(FsError::Invalid)?;
    s.put_dirent(dir, name, ino, cookie)?;
    s.set_next_cookie(dir, Some(next))
}

fn dir_change(before: &Inode, after: &Inode) -> DirChange {
    DirChange {
        ino: after.ino,
        before: before.change,
        after: after.change,
    }
}

fn init_root<S: StateStore + ?Sized>(
    s: &mut S,
    fs_id: u64,
    time: Time,
) -> Result<Outcome, FsError> {
    if s.inode(ROOT_INO)?.is_some() {
        return Err(FsError::Exists);
    }
    let root = Inode {
        ino: ROOT_INO,
        kind: FileKind::Directory,
        mode: 0o755,
        nlink: 2,
        uid: 0,
        gid: 0,
        size: DIR_SIZE,
        atime: time,
        mtime: time,
        ctime: time,
        crtime: time,
        change: 1,
        parent: ROOT_INO,
        create_verifier: None,
    };
    s.put_inode(&root)?;
    s.set_meta(meta::FS_ID, fs_id)?;
    s.set_meta(meta::NEXT_INO, ROOT_INO + 1)?;
    s.set_meta(meta::FILES, 1)?;
    Ok(Outcome {
        inode: Some(root),
        created: true,
        ..Outcome::default()
    })
}

/// A create numbers its new inode in `shard`'s counter: the parent's, or the shard a new
/// directory is placed on (`Command::Place`).
#[allow(clippy::too_many_arguments)]
fn create<S: StateStore + ?Sized>(
    s: &mut S,
    shard: ShardId,
    parent: u64,
    name: &[u8],
    new: NewInode<'_>,
    time: Time,
    how: CreateHow,
    cred: Option<&Cred>,
) -> Result<Outcome, FsError> {
    check_name(name)?;
    check_mode(new.mode)?;
    let p0 = get_live_dir(s, parent)?;
    if let Some(c) = cred {
        // The lookup of the name needs search permission; EEXIST then wins over EACCES, as
        // in Linux's `filename_create` and `lookup_open`.
        perm::require(c, &p0, perm::MAY_EXEC)?;
    }
    if let Some((existing, _)) = s.dirent(parent, name)? {
        let e = get(s, existing)?;
        if !how.reuses(&e, new.kind) {
            return Err(FsError::Exists);
        }
        let dc = dir_change(&p0, &p0);
        return Ok(Outcome {
            inode: Some(e),
            created: false,
            dir: Some(dc),
            ..Outcome::default()
        });
    }
    // The owner, group and mode Linux gives the caller's new object; an owner or group the
    // command names instead must be one the caller could give it (chown/chgrp rules, as the
    // owner of the new object), checked before anything is written.
    let (mut uid, mut gid, mut mode) = (new.uid, new.gid, new.mode);
    if let Some(c) = cred {
        perm::may_create(c, &p0)?;
        let (duid, dgid, dmode) = perm::init_owner(c, &p0, new.kind, new.mode);
        let as_made = Inode {
            uid: duid,
            gid: dgid,
            mode: dmode,
            kind: new.kind.clone(),
            ..p0.clone()
        };
        let want_uid = if new.uid == perm::DEFAULT_ID {
            duid
        } else {
            new.uid
        };
        let want_gid = if new.gid == perm::DEFAULT_ID {
            dgid
        } else {
            new.gid
        };
        if !perm::chown_ok(c, &as_made, want_uid) || !perm::chgrp_ok(c, &as_made, want_gid) {
            return Err(FsError::Perm);
        }
        (uid, gid, mode) = (want_uid, want_gid, dmode);
        if gid != dgid && !perm::in_group_or_capable(c, gid) {
            mode &= !perm::S_ISGID;
        }
    }
    let create_verifier = match how {
        CreateHow::Exclusive(v) if *new.kind == FileKind::Regular => Some(v),
        CreateHow::Exclusive(_) => return Err(FsError::Invalid),
        _ => None,
    };
    let (nlink, size, iparent) = match new.kind {
        FileKind::Directory => (2, DIR_SIZE, parent),
        FileKind::Symlink { target } => {
            if target.is_empty() {
                return Err(FsError::Invalid);
            }
            (1, target.len() as u64, 0)
        }
        _ => (1, 0, 0),
    };
    let ino = s.alloc_ino(shard)?;
    let inode = Inode {
        ino,
        kind: new.kind.clone(),
        mode,
        nlink,
        uid,
        gid,
        size,
        atime: time,
        mtime: time,
        ctime: time,
        crtime: time,
        change: 1,
        parent: iparent,
        create_verifier,
    };
    let mut p = p0.clone();
    if inode.kind.is_dir() {
        p.nlink = p.nlink.checked_add(1).ok_or(FsError::Invalid)?;
    }
    touch_dir(&mut p, time);
    add_entry(s, parent, name, inode.ino)?;
    s.put_inode(&inode)?;
    s.put_inode(&p)?;
    add_meta(s, inode.ino, meta::FILES, 1)?;
    let dc = dir_change(&p0, &p);
    Ok(Outcome {
        inode: Some(inode),
        created: true,
        dir: Some(dc),
        ..Outcome::default()
    })
}

fn link<S: StateStore + ?Sized>(
    s: &mut S,
    ino: u64,
    parent: u64,
    name: &[u8],
    time: Time,
    cred: Option<&Cred>,
) -> Result<Outcome, FsError> {
    check_name(name)?;
    let mut i = get(s, ino)?;
    if i.kind.is_dir() {
        return Err(FsError::IsDir);
    }
    if i.nlink == 0 {
        // An orphan cannot come back to life through a new name (as with POSIX link(2)).
        return Err(FsError::NotFound);
    }
    let p0 = get_live_dir(s, parent)?;
    if let Some(c) = cred {
        perm::require(c, &p0, perm::MAY_EXEC)?;
    }
    if s.dirent(parent, name)?.is_some() {
        return Err(FsError::Exists);
    }
    if let Some(c) = cred {
        perm::may_create(c, &p0)?;
    }
    i.nlink = i.nlink.checked_add(1).ok_or(FsError::Invalid)?;
    bump(&mut i, time);
    let mut p = p0.clone();
    touch_dir(&mut p, time);
    add_entry(s, parent, name, ino)?;
    s.put_inode(&i)?;
    s.put_inode(&p)?;
    Ok(Outcome {
        inode: Some(i),
        dir: Some(dir_change(&p0, &p)),
        ..Outcome::default()
    })
}

/// Takes one link away from a non-directory that has just lost an entry. Regular files at nlink 0
/// become orphans (kept until `Forget`); other kinds are deleted.
fn drop_link<S: StateStore + ?Sized>(
    s: &mut S,
    mut i: Inode,
    time: Time,
    out: &mut Outcome,
) -> Result<Inode, FsError> {
    i.nlink = i.nlink.saturating_sub(1);
    bump(&mut i, time);
    if i.nlink > 0 {
        s.put_inode(&i)?;
    } else if i.kind == FileKind::Regular {
        s.put_inode(&i)?;
        s.set_orphan(i.ino, true)?;
        out.effects.push(Effect::Orphaned(i.ino));
    } else {
        s.del_inode(i.ino)?;
        s.put_xattrs(i.ino, None)?;
        add_meta(s, i.ino, meta::FILES, -1)?;
        out.effects.push(Effect::Freed(i.ino));
    }
    Ok(i)
}

/// Deletes an (already verified empty) directory inode whose entry has been removed from `parent`.
fn drop_dir<S: StateStore + ?Sized>(
    s: &mut S,
    mut d: Inode,
    parent: &mut Inode,
    out: &mut Outcome,
) -> Result<Inode, FsError> {
    s.del_inode(d.ino)?;
    s.put_xattrs(d.ino, None)?;
    s.set_next_cookie(d.ino, None)?;
    add_meta(s, d.ino, meta::FILES, -1)?;
    parent.nlink = parent.nlink.saturating_sub(1);
    d.nlink = 0;
    out.effects.push(Effect::Freed(d.ino));
    Ok(d)
}

fn is_empty_dir<S: StateStore + ?Sized>(s: &S, dir: u64) -> Result<bool, FsError> {
    Ok(!s.dir_has_entry(dir, &|_| false)?)
}

fn remove<S: StateStore + ?Sized>(
    s: &mut S,
    parent: u64,
    name: &[u8],
    expect: u64,
    time: Time,
    which: Which,
    cred: Option<&Cred>,
) -> Result<Outcome, FsError> {
    check_name(name)?;
    let p0 = get_dir(s, parent)?;
    if let Some(c) = cred {
        perm::require(c, &p0, perm::MAY_EXEC)?;
    }
    let (ino, _) = s.dirent(parent, name)?.ok_or(FsError::NotFound)?;
    if ino != expect {
        return Err(FsError::Changed);
    }
    let child = get(s, ino)?;
    if let Some(c) = cred {
        perm::may_delete(c, &p0, &child)?;
    }
    let mut out = Outcome::default();
    let mut p = p0.clone();
    let after = if child.kind.is_dir() {
        if which == Which::File {
            return Err(FsError::IsDir);
        }
        if !is_empty_dir(s, ino)? {
            return Err(FsError::NotEmpty);
        }
        s.del_dirent(parent, name)?;
        drop_dir(s, child, &mut p, &mut out)?
    } else {
        if which == Which::Dir {
            return Err(FsError::NotDir);
        }
        s.del_dirent(parent, name)?;
        drop_link(s, child, time, &mut out)?
    };
    touch_dir(&mut p, time);
    s.put_inode(&p)?;
    out.inode = Some(after);
    out.dir = Some(dir_change(&p0, &p));
    Ok(out)
}

/// A rename's source or target: the directory, the name, and the object the proposer found
/// there (the target may be free).
type RenameEnd<'a, T> = (u64, &'a [u8], T);

fn rename<S: StateStore + ?Sized>(
    s: &mut S,
    (src_parent, src_name, expect_src): RenameEnd<'_, u64>,
    (dst_parent, dst_name, expect_dst): RenameEnd<'_, Option<u64>>,
    time: Time,
    cred: Option<&Cred>,
) -> Result<Outcome, FsError> {
    check_name(src_name)?;
    check_name(dst_name)?;
    // Nothing moves into or out of a tree being reclaimed: its entries are the reclaimer's.
    let sp0 = get_live_dir(s, src_parent)?;
    let dp0 = get_live_dir(s, dst_parent)?;
    if let Some(c) = cred {
        perm::require(c, &sp0, perm::MAY_EXEC)?;
        perm::require(c, &dp0, perm::MAY_EXEC)?;
    }
    let (src_ino, _) = s.dirent(src_parent, src_name)?.ok_or(FsError::NotFound)?;
    let dst = s.dirent(dst_parent, dst_name)?;
    if src_ino != expect_src || dst.map(|(i, _)| i) != expect_dst {
        return Err(FsError::Changed);
    }
    let src = get(s, src_ino)?;
    if dst.map(|(i, _)| i) == Some(src_ino) {
        // Both names are links to one file: POSIX says rename does nothing.
        return Ok(Outcome {
            inode: Some(src),
            dir: Some(dir_change(&sp0, &sp0)),
            dst_dir: Some(dir_change(&dp0, &dp0)),
            ..Outcome::default()
        });
    }
    if src.kind.is_dir() {
        // Moving a directory under itself would cut the subtree loose.
        let mut cur = dst_parent;
        let mut depth = 0;
        while cur != ROOT_INO {
            if cur == src_ino {
                return Err(FsError::Invalid);
            }
            cur = get(s, cur)?.parent;
            depth += 1;
            if depth > MAX_DEPTH {
                return Err(FsError::Corrupt(format!(
                    "parent chain of {dst_parent} loops"
                )));
            }
        }
    }
    let victim = match dst {
        Some((dino, _)) => {
            let d = get(s, dino)?;
            match (src.kind.is_dir(), d.kind.is_dir()) {
                (true, false) => return Err(FsError::NotDir),
                (false, true) => return Err(FsError::IsDir),
                _ => {}
            }
            Some(d)
        }
        None => None,
    };
    // Permission after the type and loop checks, before ENOTEMPTY: `vfs_rename`'s order.
    if let Some(c) = cred {
        perm::may_rename(c, &sp0, &src, &dp0, victim.as_ref())?;
    }
    if let Some(d) = &victim {
        if d.kind.is_dir() && !is_empty_dir(s, d.ino)? {
            return Err(FsError::NotEmpty);
        }
    }

    let mut out = Outcome::default();
    // Parent inodes are edited in `dirs` (one slot when both are the same directory) and
    // written once at the end.
    let same = src_parent == dst_parent;
    let mut sp = sp0.clone();
    let mut dp = dp0.clone();
    s.del_dirent(src_parent, src_name)?;
    if let Some(d) = victim {
        if d.kind.is_dir() {
            let parent = if same { &mut sp } else { &mut dp };
            drop_dir(s, d, parent, &mut out)?;
        } else {
            drop_link(s, d, time, &mut out)?;
        }
    }
    add_entry(s, dst_parent, dst_name, src_ino)?;
    let mut moved = src;
    if moved.kind.is_dir() && !same {
        sp.nlink = sp.nlink.saturating_sub(1);
        dp.nlink = dp.nlink.checked_add(1).ok_or(FsError::Invalid)?;
        moved.parent = dst_parent;
    }
    bump(&mut moved, time);
    s.put_inode(&moved)?;
    touch_dir(&mut sp, time);
    if same {
        s.put_inode(&sp)?;
        let dc = dir_change(&sp0, &sp);
        out.dir = Some(dc);
        out.dst_dir = Some(dc);
    } else {
        touch_dir(&mut dp, time);
        s.put_inode(&sp)?;
        s.put_inode(&dp)?;
        out.dir = Some(dir_change(&sp0, &sp));
        out.dst_dir = Some(dir_change(&dp0, &dp));
    }
    out.inode = Some(moved);
    Ok(out)
}

fn setattr<S: StateStore + ?Sized>(
    s: &mut S,
    ino: u64,
    a: AttrChange,
    atime: Option<SetTime>,
    mtime: Option<SetTime>,
    time: Time,
    cred: Option<&Cred>,
) -> Result<Outcome, FsError> {
    let mut i = get(s, ino)?;
    if let Some(m) = a.mode {
        check_mode(m)?;
    }
    let mut mode = a.mode;
    if let Some(c) = cred {
        let req = perm::AttrRequest::new(a.mode, a.uid, a.gid, a.size, atime, mtime);
        mode = perm::setattr_prepare(c, &i, &req)?;
    }
    if let Some(m) = mode {
        i.mode = m;
    }
    if let Some(u) = a.uid {
        i.uid = u;
    }
    if let Some(g) = a.gid {
        i.gid = g;
    }
    let resolve = |t: SetTime| match t {
        SetTime::Now => time,
        SetTime::At(t) => t,
    };
    if let Some(size) = a.size {
        match i.kind {
            FileKind::Regular => {}
            FileKind::Directory => return Err(FsError::IsDir),
            _ => return Err(FsError::WrongKind),
        }
        add_meta(s, ino, meta::BYTES, i128::from(size) - i128::from(i.size))?;
        i.size = size;
        // truncate(2) moves mtime even when the size stays; SETATTR is how NFS clients truncate.
        i.mtime = time;
    }
    if let Some(t) = atime {
        i.atime = resolve(t);
    }
    if let Some(t) = mtime {
        i.mtime = resolve(t);
    }
    bump(&mut i, time);
    s.put_inode(&i)?;
    Ok(Outcome {
        inode: Some(i),
        ..Outcome::default()
    })
}

fn write<S: StateStore + ?Sized>(
    s: &mut S,
    ino: u64,
    end: u64,
    time: Option<Time>,
    writes: u64,
    cred: Option<&Cred>,
) -> Result<Outcome, FsError> {
    let mut i = get(s, ino)?;
    match i.kind {
        FileKind::Regular => {}
        FileKind::Directory => return Err(FsError::IsDir),
        _ => return Err(FsError::WrongKind),
    }
    // `file_remove_privs`: a write by an unprivileged caller clears the set-id bits.
    if let Some(c) = cred {
        i.mode &= !perm::write_kills(c, &i);
    }
    if end > i.size {
        add_meta(s, ino, meta::BYTES, i128::from(end) - i128::from(i.size))?;
        i.size = end;
    }
    // None: the writer reported the times itself (`Command::WriteKeepingTimes`).
    if let Some(t) = time {
        i.mtime = t;
        i.ctime = t;
    }
    // Clients saw the change attribute move on every WRITE this command records; it must not
    // fall back below what they saw.
    i.change = i.change.saturating_add(writes.max(1));
    s.put_inode(&i)?;
    Ok(Outcome {
        inode: Some(i),
        ..Outcome::default()
    })
}

fn forget<S: StateStore + ?Sized>(s: &mut S, ino: u64) -> Result<Outcome, FsError> {
    let i = get(s, ino)?;
    if i.nlink > 0 {
        return Err(FsError::Invalid);
    }
    if i.kind.is_dir() {
        return forget_dir(s, &i);
    }
    drop_orphan(s, &i)
}

/// `Detach`: the directory leaves the tree with its contents (see `Command::Detach`).
fn detach<S: StateStore + ?Sized>(
    s: &mut S,
    parent: u64,
    name: &[u8],
    expect: u64,
    time: Time,
) -> Result<Outcome, FsError> {
    check_name(name)?;
    let p0 = get_dir(s, parent)?;
    let (ino, _) = s.dirent(parent, name)?.ok_or(FsError::NotFound)?;
    if ino != expect {
        return Err(FsError::Changed);
    }
    let mut child = get(s, ino)?;
    if !child.kind.is_dir() {
        return Err(FsError::NotDir);
    }
    s.del_dirent(parent, name)?;
    let mut p = p0.clone();
    // Its ".." no longer counts in the parent, as after rmdir.
    p.nlink = p.nlink.saturating_sub(1);
    touch_dir(&mut p, time);
    s.put_inode(&p)?;
    child.nlink = 0;
    bump(&mut child, time);
    s.put_inode(&child)?;
    s.set_orphan(ino, true)?;
    Ok(Outcome {
        inode: Some(child),
        dir: Some(dir_change(&p0, &p)),
        effects: vec![Effect::Detached(ino)],
        ..Outcome::default()
    })
}

/// Deletes orphan directory `d` once the reclaimer has emptied it.
fn forget_dir<S: StateStore + ?Sized>(s: &mut S, d: &Inode) -> Result<Outcome, FsError> {
    if !is_empty_dir(s, d.ino)? {
        return Err(FsError::NotEmpty);
    }
    s.del_inode(d.ino)?;
    s.put_xattrs(d.ino, None)?;
    s.set_next_cookie(d.ino, None)?;
    s.set_orphan(d.ino, false)?;
    add_meta(s, d.ino, meta::FILES, -1)?;
    Ok(Outcome {
        effects: vec![Effect::Freed(d.ino)],
        ..Outcome::default()
    })
}

/// Deletes orphan `i` (no links left) with its chunk records and its share of the counters.
fn drop_orphan<S: StateStore + ?Sized>(s: &mut S, i: &Inode) -> Result<Outcome, FsError> {
    let ino = i.ino;
    s.del_inode(ino)?;
    s.set_orphan(ino, false)?;
    for (chunk, _) in s.chunks(ino)? {
        s.put_chunk(ino, chunk, None)?;
    }
    s.put_stripes(ino, None)?;
    // Its segments' referrers are in other shards: the record outlives the inode until a pass
    // has dropped them.
    reducing::forgotten(s, ino)?;
    s.put_xattrs(ino, None)?;
    add_meta(s, ino, meta::FILES, -1)?;
    add_meta(s, ino, meta::BYTES, -data_bytes(i))?;
    Ok(Outcome {
        effects: vec![Effect::Freed(ino)],
        ..Outcome::default()
    })
}

fn forget_orphans<S: StateStore + ?Sized>(s: &mut S, inos: &[u64]) -> Result<Outcome, FsError> {
    let mut out = Outcome::default();
    for &ino in inos {
        match s.inode(ino)? {
            Some(i) if i.nlink == 0 && matches!(i.kind, FileKind::Regular) => {
                out.effects.extend(drop_orphan(s, &i)?.effects);
            }
            _ => {}
        }
    }
    Ok(out)
}

fn set_mirrors<S: StateStore + ?Sized>(
    s: &mut S,
    ino: u64,
    chunk: u64,
    mirrors: &[u64],
) -> Result<Outcome, FsError> {
    let i = get(s, ino)?;
    if !matches!(i.kind, FileKind::Regular) {
        return Err(FsError::Invalid);
    }
    s.put_chunk(ino, chunk, (!mirrors.is_empty()).then_some(mirrors))?;
    // Written again, its mirrors replaced, or its bytes gone: the file is not encoded, nor
    // reduced.
    coding::unencode(s, ino)?;
    reducing::unreduce(s, ino)?;
    Ok(Outcome::default())
}

/// Forgets the file's placement rows (an encode or a reduce finished: the mirrors no longer
/// count) and returns the data servers they named, each once, whose copies are to be deleted.
fn drop_mirrors<S: StateStore + ?Sized>(s: &mut S, ino: u64) -> Result<Vec<u64>, FsError> {
    let mut stale = Vec::new();
    for (chunk, mirrors) in s.chunks(ino)? {
        stale.extend(mirrors);
        s.put_chunk(ino, chunk, None)?;
    }
    stale.sort_unstable();
    stale.dedup();
    Ok(stale)
}

/// The name under which `DRAIN_INO`'s attributes hold the wrapped data key (`SetDataKey`).
pub const DATA_KEY_ATTR: &[u8] = b"cfs.data_key";
/// Longer is no wrapped key (today's are 104 bytes): bounds what a log entry carries.
const MAX_WRAPPED_KEY: usize = 1024;

fn set_data_key<S: StateStore + ?Sized>(
    s: &mut S,
    wrapped: &[u8],
    expect: Option<&[u8]>,
) -> Result<Outcome, FsError> {
    if wrapped.is_empty() || wrapped.len() > MAX_WRAPPED_KEY {
        return Err(FsError::Invalid);
    }
    let mut attrs = s.xattrs(crate::object::DRAIN_INO)?.unwrap_or_default();
    // Compare-and-set: two nodes making the first key at once, or a rotation racing
    // another, cannot overwrite a key segments were already sealed under.
    if attrs.get(DATA_KEY_ATTR).map(Vec::as_slice) != expect {
        return Err(FsError::Changed);
    }
    attrs.insert(DATA_KEY_ATTR.to_vec(), wrapped.to_vec());
    s.put_xattrs(crate::object::DRAIN_INO, Some(&attrs))?;
    Ok(Outcome::default())
}

fn set_drain<S: StateStore + ?Sized>(
    s: &mut S,
    ds: u64,
    draining: bool,
) -> Result<Outcome, FsError> {
    // 0 is no DS id (heartbeats with it are refused).
    if ds == 0 {
        return Err(FsError::Invalid);
    }
    let mark = [ds];
    s.put_chunk(crate::object::DRAIN_INO, ds, draining.then_some(&mark[..]))?;
    Ok(Outcome::default())
}
