//! Who may do what: Linux's own permission rules, point by point, over the namespace's inodes.
//!
//! Every path that changes the namespace on behalf of a user comes here: the NFSv4 operations
//! check early (so nothing is done that a refusal would have to undo, like cutting data before a
//! SETATTR that fails), and `apply` checks again inside the command (`Command::As`), against the
//! state the change is made to. The second check is the one that counts: it is atomic with the
//! change, the same on every replica, and no race between a check and an act can get past it.
//!
//! Each function names the Linux function it mirrors (fs/namei.c, fs/attr.c, fs/inode.c). Root
//! (uid 0 after the export's squashing) holds every capability, as an unsquashed root does over
//! knfsd: CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_CHOWN and CAP_FSETID.

use serde::{Deserialize, Serialize};

use super::error::FsError;
use super::object::{FileKind, Inode, SetTime};

pub const S_ISUID: u32 = 0o4000;
pub const S_ISGID: u32 = 0o2000;
pub const S_ISVTX: u32 = 0o1000;
const S_IXGRP: u32 = 0o010;

/// In a `Command::As` create: no owner (or group) asked for, so `init_owner` decides; the
/// value chown(2) takes for "leave it".
pub const DEFAULT_ID: u32 = u32::MAX;

pub const MAY_EXEC: u32 = 1;
pub const MAY_WRITE: u32 = 2;
pub const MAY_READ: u32 = 4;

/// The identity a change is made as: the caller's uid, primary gid and supplementary groups
/// (AUTH_SYS carries at most 16), after the export's squashing.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Cred {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

impl Cred {
    pub fn root() -> Self {
        Cred {
            uid: 0,
            gid: 0,
            groups: Vec::new(),
        }
    }

    /// Root holds every capability (see the module comment).
    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    /// `in_group_p`: the primary group or a supplementary one.
    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }
}

/// `generic_permission` / `acl_permission_check`: the owner's bits for the owner, the group's
/// for a member, the others' for the rest (the first class that matches decides, even when a
/// later one would grant more). Root may read and write anything, and execute anything that
/// is a directory or has an execute bit for someone.
pub fn permission(c: &Cred, i: &Inode, want: u32) -> bool {
    if c.is_root() {
        return want & MAY_EXEC == 0 || i.kind.is_dir() || i.mode & 0o111 != 0;
    }
    let bits = if c.uid == i.uid {
        (i.mode >> 6) & 7
    } else if c.in_group(i.gid) {
        (i.mode >> 3) & 7
    } else {
        i.mode & 7
    };
    bits & want == want
}

/// `permission` as a result: EACCES when refused.
pub fn require(c: &Cred, i: &Inode, want: u32) -> Result<(), FsError> {
    if permission(c, i, want) {
        Ok(())
    } else {
        Err(FsError::Access)
    }
}

/// `inode_owner_or_capable`: the owner, or CAP_FOWNER.
pub fn owner_or_capable(c: &Cred, i: &Inode) -> bool {
    c.is_root() || c.uid == i.uid
}

/// `in_group_or_capable`: a member of `gid`, or CAP_FSETID.
pub fn in_group_or_capable(c: &Cred, gid: u32) -> bool {
    c.is_root() || c.in_group(gid)
}

/// `may_create`: adding a name to `dir` needs write and search permission on it.
pub fn may_create(c: &Cred, dir: &Inode) -> Result<(), FsError> {
    require(c, dir, MAY_WRITE | MAY_EXEC)
}

/// `check_sticky`: in a sticky directory only the owner of the entry, the owner of the
/// directory or CAP_FOWNER may remove or replace an entry. True when refused.
pub fn check_sticky(c: &Cred, dir: &Inode, victim: &Inode) -> bool {
    dir.mode & S_ISVTX != 0 && !c.is_root() && c.uid != victim.uid && c.uid != dir.uid
}

/// `may_delete`: removing `victim` from `dir` needs write and search permission on `dir`
/// (EACCES), and passing the sticky rule (EPERM, not EACCES: Linux's answer).
pub fn may_delete(c: &Cred, dir: &Inode, victim: &Inode) -> Result<(), FsError> {
    require(c, dir, MAY_WRITE | MAY_EXEC)?;
    if check_sticky(c, dir, victim) {
        return Err(FsError::Perm);
    }
    Ok(())
}

/// The rename checks of `vfs_rename` after the lookups: the source may be deleted from its
/// directory; the target may be replaced, or else created; and a directory that changes parent
/// must itself be writable, since its ".." entry is rewritten.
pub fn may_rename(
    c: &Cred,
    src_dir: &Inode,
    source: &Inode,
    dst_dir: &Inode,
    target: Option<&Inode>,
) -> Result<(), FsError> {
    may_delete(c, src_dir, source)?;
    match target {
        Some(t) => may_delete(c, dst_dir, t)?,
        None => may_create(c, dst_dir)?,
    }
    if source.kind.is_dir() && src_dir.ino != dst_dir.ino {
        require(c, source, MAY_WRITE)?;
    }
    Ok(())
}

/// `inode_init_owner` with `mode_strip_sgid`: a new object belongs to the caller; in a
/// set-group-ID directory it takes the directory's group, and a new directory there keeps the
/// set-group-ID bit; a new group-executable file there loses the bit unless the caller is in
/// the directory's group. Returns (uid, gid, mode).
pub fn init_owner(c: &Cred, dir: &Inode, kind: &FileKind, mode: u32) -> (u32, u32, u32) {
    if dir.mode & S_ISGID == 0 {
        return (c.uid, c.gid, mode);
    }
    let mode = if kind.is_dir() {
        mode | S_ISGID
    } else if mode & (S_ISGID | S_IXGRP) == (S_ISGID | S_IXGRP) && !in_group_or_capable(c, dir.gid)
    {
        mode & !S_ISGID
    } else {
        mode
    };
    (c.uid, dir.gid, mode)
}

/// `chown_ok`: without CAP_CHOWN only the owner may "change" the owner, and only to itself.
pub fn chown_ok(c: &Cred, i: &Inode, uid: u32) -> bool {
    c.is_root() || (c.uid == i.uid && uid == i.uid)
}

/// `chgrp_ok`: without CAP_CHOWN only the owner may change the group, to the current group or
/// to one it belongs to.
pub fn chgrp_ok(c: &Cred, i: &Inode, gid: u32) -> bool {
    c.is_root() || (c.uid == i.uid && (gid == i.gid || c.in_group(gid)))
}

/// `setattr_should_drop_sgid`: a set-group-ID file loses the bit when it is group-executable,
/// or when the caller is neither in its group nor CAP_FSETID.
pub fn should_drop_sgid(c: &Cred, i: &Inode) -> bool {
    i.mode & S_ISGID != 0 && (i.mode & S_IXGRP != 0 || !in_group_or_capable(c, i.gid))
}

/// `should_remove_suid` / `file_remove_privs`: the set-id bits a write, a truncation or a
/// space change by `c` clears from regular file `i` (none for CAP_FSETID).
pub fn write_kills(c: &Cred, i: &Inode) -> u32 {
    if c.is_root() || i.kind != FileKind::Regular {
        return 0;
    }
    let mut kill = i.mode & S_ISUID;
    if should_drop_sgid(c, i) {
        kill |= S_ISGID;
    }
    kill
}

/// An attribute change as `setattr_prepare` sees it: absent fields stay as they are; `times`
/// says whether a time is set to an explicit value (owner only) or to now (writers too).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttrRequest {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub explicit_time: bool,
    pub time_now: bool,
}

impl AttrRequest {
    pub fn new(
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<SetTime>,
        mtime: Option<SetTime>,
    ) -> Self {
        let at = |t: Option<SetTime>| matches!(t, Some(SetTime::At(_)));
        AttrRequest {
            mode,
            uid,
            gid,
            size,
            explicit_time: at(atime) || at(mtime),
            time_now: atime == Some(SetTime::Now) || mtime == Some(SetTime::Now),
        }
    }
}

/// `setattr_prepare`, `notify_change` (ATTR_TOUCH) and knfsd's `nfsd_sanitize_attrs`: refuses
/// what the caller may not change (EPERM; EACCES for "now" times without write permission) and
/// returns the mode the object ends up with, which may differ from the one asked for:
/// - chmod drops set-group-ID when the caller is neither in the (new) group nor CAP_FSETID;
/// - chown or chgrp of a non-directory clears set-user-ID, and set-group-ID as
///   `setattr_should_drop_sgid` says (for root too: `chown_common` kills privileges always);
/// - a size change by an unprivileged caller clears them as a write does (`do_truncate`).
///
/// The size's own permission (write access, or an open for writing) depends on the stateid
/// and is the operation's to check.
pub fn setattr_prepare(c: &Cred, i: &Inode, a: &AttrRequest) -> Result<Option<u32>, FsError> {
    if a.uid.is_some_and(|u| !chown_ok(c, i, u)) {
        return Err(FsError::Perm);
    }
    if a.gid.is_some_and(|g| !chgrp_ok(c, i, g)) {
        return Err(FsError::Perm);
    }
    let mut mode = a.mode;
    if let Some(m) = mode.as_mut() {
        if !owner_or_capable(c, i) {
            return Err(FsError::Perm);
        }
        if !in_group_or_capable(c, a.gid.unwrap_or(i.gid)) {
            *m &= !S_ISGID;
        }
    }
    if a.explicit_time && !owner_or_capable(c, i) {
        return Err(FsError::Perm);
    }
    if a.time_now && !owner_or_capable(c, i) {
        require(c, i, MAY_WRITE)?;
    }
    if (a.uid.is_some() || a.gid.is_some()) && !i.kind.is_dir() {
        // `chown_common`: set-user-ID always; set-group-ID as `setattr_should_drop_sgid`
        // judges the object before the change, or, when the same request sets the mode,
        // only if group-executable (knfsd's `nfsd_sanitize_attrs`).
        let cur = mode.unwrap_or(i.mode);
        let mut kill = cur & S_ISUID;
        let drop_sgid = if a.mode.is_some() {
            cur & S_IXGRP != 0
        } else {
            should_drop_sgid(c, i)
        };
        if drop_sgid {
            kill |= S_ISGID;
        }
        if kill != 0 {
            mode = Some(cur & !kill);
        }
    }
    if a.size.is_some() {
        let cur = mode.unwrap_or(i.mode);
        let kill = write_kills(
            c,
            &Inode {
                mode: cur,
                ..i.clone()
            },
        );
        if kill != 0 {
            mode = Some(cur & !kill);
        }
    }
    Ok(mode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Time;

    fn inode(kind: FileKind, mode: u32, uid: u32, gid: u32) -> Inode {
        Inode {
            ino: 10,
            kind,
            mode,
            nlink: 1,
            uid,
            gid,
            size: 0,
            atime: Time::default(),
            mtime: Time::default(),
            ctime: Time::default(),
            crtime: Time::default(),
            change: 1,
            parent: 0,
            create_verifier: None,
        }
    }
    fn file(mode: u32, uid: u32, gid: u32) -> Inode {
        inode(FileKind::Regular, mode, uid, gid)
    }
    fn dir(mode: u32, uid: u32, gid: u32) -> Inode {
        inode(FileKind::Directory, mode, uid, gid)
    }
    fn user(uid: u32, gid: u32, groups: &[u32]) -> Cred {
        Cred {
            uid,
            gid,
            groups: groups.to_vec(),
        }
    }

    #[test]
    fn generic_permission_first_matching_class_decides() {
        let f = file(0o077, 1001, 2000);
        // The owner gets the owner's bits (none), though group and others could read.
        assert!(!permission(&user(1001, 2000, &[]), &f, MAY_READ));
        assert!(permission(&user(1002, 2000, &[]), &f, MAY_READ));
        assert!(permission(
            &user(1003, 3000, &[2000]),
            &f,
            MAY_READ | MAY_WRITE
        ));
        assert!(permission(&user(1004, 3000, &[]), &f, MAY_WRITE));
    }

    #[test]
    fn generic_permission_root_executes_only_what_someone_may() {
        let root = Cred::root();
        assert!(permission(&root, &file(0, 5, 5), MAY_READ | MAY_WRITE));
        assert!(!permission(&root, &file(0o644, 5, 5), MAY_EXEC));
        assert!(permission(&root, &file(0o601, 5, 5), MAY_EXEC));
        assert!(permission(&root, &dir(0, 5, 5), MAY_EXEC));
    }

    #[test]
    fn may_delete_sticky_answers_eperm() {
        let d = dir(0o1777, 0, 0);
        let theirs = file(0o644, 1002, 1002);
        let mine = file(0o644, 1001, 1001);
        let me = user(1001, 1001, &[]);
        assert_eq!(may_delete(&me, &d, &theirs), Err(FsError::Perm));
        assert_eq!(may_delete(&me, &d, &mine), Ok(()));
        // The directory's owner may remove anyone's entry.
        let owned = dir(0o1777, 1001, 1001);
        assert_eq!(may_delete(&me, &owned, &theirs), Ok(()));
        // Without write permission on the directory it is EACCES before the sticky rule.
        assert_eq!(
            may_delete(&me, &dir(0o1755, 0, 0), &mine),
            Err(FsError::Access)
        );
        assert_eq!(may_delete(&Cred::root(), &d, &theirs), Ok(()));
    }

    #[test]
    fn vfs_rename_moving_a_directory_needs_write_on_it() {
        let me = user(1001, 1001, &[]);
        let sticky = dir(0o1777, 0, 0);
        let other = dir(0o777, 0, 0);
        // Someone else's 0755 directory: the sticky rule refuses first (EPERM).
        let theirs = dir(0o755, 1002, 1002);
        assert_eq!(
            may_rename(&me, &sticky, &theirs, &other, None),
            Err(FsError::Perm)
        );
        // In a plain directory, moving it to another parent needs write on it (EACCES) ...
        let plain = Inode {
            ino: 11,
            ..dir(0o777, 0, 0)
        };
        assert_eq!(
            may_rename(&me, &plain, &theirs, &other, None),
            Err(FsError::Access)
        );
        // ... but renaming it within its parent does not.
        assert_eq!(may_rename(&me, &plain, &theirs, &plain, None), Ok(()));
        // A file moves without write permission on itself.
        let f = file(0o444, 1002, 1002);
        assert_eq!(may_rename(&me, &plain, &f, &other, None), Ok(()));
        // Replacing a target in a sticky directory follows the sticky rule for the target.
        let target = file(0o644, 1002, 1002);
        assert_eq!(
            may_rename(&me, &plain, &f, &sticky, Some(&target)),
            Err(FsError::Perm)
        );
    }

    #[test]
    fn chown_ok_needs_ownership_even_for_the_same_values() {
        let f = file(0o644, 1002, 1002);
        let me = user(1001, 1001, &[1002]);
        assert!(!chown_ok(&me, &f, 1002));
        assert!(!chgrp_ok(&me, &f, 1002));
        let a = AttrRequest {
            uid: Some(1002),
            gid: Some(1002),
            ..Default::default()
        };
        assert_eq!(setattr_prepare(&me, &f, &a), Err(FsError::Perm));
        let mine = file(0o644, 1001, 1001);
        assert!(chown_ok(&me, &mine, 1001));
        assert!(!chown_ok(&me, &mine, 1002));
        assert!(chgrp_ok(&me, &mine, 1002));
        assert!(!chgrp_ok(&me, &mine, 3000));
        assert!(chown_ok(&Cred::root(), &f, 7));
    }

    #[test]
    fn setattr_prepare_chmod_drops_sgid_outside_the_group() {
        let me = user(1001, 1001, &[]);
        let f = file(0o644, 1001, 2000);
        let chmod = |mode| AttrRequest {
            mode: Some(mode),
            ..Default::default()
        };
        assert_eq!(setattr_prepare(&me, &f, &chmod(0o2755)), Ok(Some(0o755)));
        let member = user(1001, 1001, &[2000]);
        assert_eq!(
            setattr_prepare(&member, &f, &chmod(0o2755)),
            Ok(Some(0o2755))
        );
        assert_eq!(
            setattr_prepare(&Cred::root(), &f, &chmod(0o2755)),
            Ok(Some(0o2755))
        );
        // Judged against the new group when the same request changes it.
        let both = AttrRequest {
            mode: Some(0o2745),
            gid: Some(1001),
            ..Default::default()
        };
        assert_eq!(setattr_prepare(&me, &f, &both), Ok(Some(0o2745)));
        // With group execute, the chgrp in the same request clears it (nfsd_sanitize_attrs).
        let exec = AttrRequest {
            mode: Some(0o2755),
            ..both
        };
        assert_eq!(setattr_prepare(&me, &f, &exec), Ok(Some(0o755)));
        assert_eq!(
            setattr_prepare(&user(1002, 2000, &[]), &f, &chmod(0o600)),
            Err(FsError::Perm)
        );
    }

    #[test]
    fn setattr_prepare_chown_kills_privileges_of_files_even_for_root() {
        let f = file(0o6755, 1001, 1001);
        let a = AttrRequest {
            uid: Some(1002),
            ..Default::default()
        };
        assert_eq!(setattr_prepare(&Cred::root(), &f, &a), Ok(Some(0o755)));
        // A directory keeps its bits.
        let d = dir(0o2755, 1001, 1001);
        assert_eq!(setattr_prepare(&Cred::root(), &d, &a), Ok(None));
        // Set-group-ID without group execute is kept when the caller is in the group.
        let g = file(0o2745, 1001, 1001);
        let chgrp = AttrRequest {
            gid: Some(2000),
            ..Default::default()
        };
        let member = user(1001, 1001, &[2000]);
        assert_eq!(setattr_prepare(&member, &g, &chgrp), Ok(None));
    }

    #[test]
    fn setattr_prepare_times() {
        let f = file(0o666, 1002, 1002);
        let me = user(1001, 1001, &[]);
        let at = AttrRequest {
            explicit_time: true,
            ..Default::default()
        };
        let now = AttrRequest {
            time_now: true,
            ..Default::default()
        };
        assert_eq!(setattr_prepare(&me, &f, &at), Err(FsError::Perm));
        assert_eq!(setattr_prepare(&me, &f, &now), Ok(None));
        let ro = file(0o644, 1002, 1002);
        assert_eq!(setattr_prepare(&me, &ro, &now), Err(FsError::Access));
    }

    #[test]
    fn should_remove_suid_on_write_and_truncate() {
        let me = user(1001, 1001, &[]);
        assert_eq!(write_kills(&me, &file(0o4777, 0, 0)), S_ISUID);
        assert_eq!(write_kills(&me, &file(0o2777, 0, 0)), S_ISGID);
        assert_eq!(write_kills(&me, &file(0o6777, 0, 0)), S_ISUID | S_ISGID);
        // setattr_should_drop_sgid: without group execute, only for a non-member.
        assert_eq!(write_kills(&me, &file(0o2766, 0, 0)), S_ISGID);
        assert_eq!(write_kills(&user(1001, 0, &[]), &file(0o2766, 0, 0)), 0);
        assert_eq!(write_kills(&Cred::root(), &file(0o6777, 5, 5)), 0);
        let size = AttrRequest {
            size: Some(0),
            ..Default::default()
        };
        let f = file(0o4766, 1001, 1001);
        assert_eq!(setattr_prepare(&me, &f, &size), Ok(Some(0o766)));
    }

    #[test]
    fn inode_init_owner_in_a_setgid_directory() {
        let me = user(1001, 1001, &[]);
        let plain = dir(0o777, 0, 0);
        assert_eq!(
            init_owner(&me, &plain, &FileKind::Regular, 0o644),
            (1001, 1001, 0o644)
        );
        let sgid = dir(0o2777, 0, 2000);
        assert_eq!(
            init_owner(&me, &sgid, &FileKind::Directory, 0o755),
            (1001, 2000, 0o2755)
        );
        // mode_strip_sgid: group-executable set-gid file by a non-member.
        assert_eq!(
            init_owner(&me, &sgid, &FileKind::Regular, 0o2755),
            (1001, 2000, 0o755)
        );
        assert_eq!(
            init_owner(&me, &sgid, &FileKind::Regular, 0o2745),
            (1001, 2000, 0o2745)
        );
        let member = user(1001, 1001, &[2000]);
        assert_eq!(
            init_owner(&member, &sgid, &FileKind::Regular, 0o2755),
            (1001, 2000, 0o2755)
        );
    }
}
