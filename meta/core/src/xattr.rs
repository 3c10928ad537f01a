//! Extended attributes (RFC 8276: the `user.*` namespace, which is all NFSv4.2 carries): the
//! values a file keeps, the limits on them, and Linux's rules for who may read and change them.
//!
//! A file's attributes are one value of the state (`StateStore::xattrs`), rewritten whole on
//! each change: they are small by rule (`TOTAL_MAX`), so one record per file keeps a change
//! one write and a removed file's attributes one deletion.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::FsError;
use crate::object::{FileKind, Inode};
use crate::perm::{self, Cred, MAY_WRITE, S_ISVTX};

/// Name → value, names without the `user.` prefix (as RFC 8276 carries them).
pub type Xattrs = BTreeMap<Vec<u8>, Vec<u8>>;

/// Longest name, in bytes: Linux's XATTR_NAME_MAX less nothing (the wire name has no prefix,
/// and 255 is what `setfattr` can send once "user." is taken off).
pub const NAME_MAX: usize = 255;
/// Largest value: Linux's XATTR_SIZE_MAX, the most `setxattr(2)` passes; past it
/// NFS4ERR_XATTR2BIG (E2BIG).
pub const VALUE_MAX: usize = 65_536;
/// Most bytes of names and values one file keeps. Metadata lives in every replica's memory,
/// so a file may not grow without bound: twice the largest value leaves room for one maximal
/// value beside others (XFS allows more; ext4 allows one 4 KiB block). Past it, NFS4ERR_NOSPC
/// (ENOSPC, as ext4 answers a full xattr block).
pub const TOTAL_MAX: usize = 2 * VALUE_MAX;
/// Most bytes `listxattr(2)` of the file may need ("user." + name + NUL per name): Linux's
/// XATTR_LIST_MAX, so a listing always fits the largest buffer a program can pass.
pub const LIST_MAX: usize = 65_536;

/// What SETXATTR does about an existing name (RFC 8276 setxattr_option4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum How {
    /// Create or replace.
    Either,
    /// Only create: `Exists` if the name is there (XATTR_CREATE).
    Create,
    /// Only replace: `NoXattr` if it is not (XATTR_REPLACE).
    Replace,
}

/// Checks a name: not empty, no NUL, at most `NAME_MAX` bytes.
pub fn check_name(name: &[u8]) -> Result<(), FsError> {
    if name.is_empty() || name.contains(&0) {
        return Err(FsError::Invalid);
    }
    if name.len() > NAME_MAX {
        return Err(FsError::NameTooLong);
    }
    Ok(())
}

/// The bytes `listxattr(2)` takes for these names.
fn list_bytes(x: &Xattrs) -> usize {
    x.keys().map(|n| "user.".len() + n.len() + 1).sum()
}

fn total_bytes(x: &Xattrs) -> usize {
    x.iter().map(|(n, v)| n.len() + v.len()).sum()
}

/// Sets `name` to `value` in `x` as `how` says, within the limits.
pub fn set(x: &mut Xattrs, name: &[u8], value: &[u8], how: How) -> Result<(), FsError> {
    check_name(name)?;
    if value.len() > VALUE_MAX {
        return Err(FsError::XattrTooBig);
    }
    match (how, x.contains_key(name)) {
        (How::Create, true) => return Err(FsError::Exists),
        (How::Replace, false) => return Err(FsError::NoXattr),
        _ => {}
    }
    // The limits are checked on the attributes as they would be, before anything changes.
    let (total, list) = match x.get(name) {
        Some(v) => (total_bytes(x) - v.len() + value.len(), list_bytes(x)),
        None => (
            total_bytes(x) + name.len() + value.len(),
            list_bytes(x) + "user.".len() + name.len() + 1,
        ),
    };
    if total > TOTAL_MAX || list > LIST_MAX {
        return Err(FsError::NoSpace);
    }
    x.insert(name.to_vec(), value.to_vec());
    Ok(())
}

/// Removes `name` from `x`: `NoXattr` if it is not there.
pub fn remove(x: &mut Xattrs, name: &[u8]) -> Result<(), FsError> {
    check_name(name)?;
    x.remove(name).map(|_| ()).ok_or(FsError::NoXattr)
}

/// Linux's `xattr_permission` for the `user.` namespace, then `inode_permission`: only regular
/// files and directories carry user attributes (others: EPERM to change, "no such attribute"
/// to read), a sticky directory's only for its owner to change, and otherwise the mode bits
/// decide (`want`: `MAY_READ` to get or list, `MAY_WRITE` to set or remove).
pub fn permission(c: &Cred, i: &Inode, want: u32) -> Result<(), FsError> {
    let writes = want & MAY_WRITE != 0;
    match i.kind {
        FileKind::Regular | FileKind::Directory => {}
        _ if writes => return Err(FsError::Perm),
        _ => return Err(FsError::NoXattr),
    }
    if i.kind.is_dir() && i.mode & S_ISVTX != 0 && writes && !perm::owner_or_capable(c, i) {
        return Err(FsError::Perm);
    }
    perm::require(c, i, want)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_follow_rfc_8276() {
        let mut x = Xattrs::new();
        assert_eq!(set(&mut x, b"a", b"1", How::Replace), Err(FsError::NoXattr));
        set(&mut x, b"a", b"1", How::Create).unwrap();
        assert_eq!(set(&mut x, b"a", b"2", How::Create), Err(FsError::Exists));
        set(&mut x, b"a", b"2", How::Replace).unwrap();
        set(&mut x, b"a", b"3", How::Either).unwrap();
        set(&mut x, b"b", b"", How::Either).unwrap();
        assert_eq!(x[&b"a"[..]], b"3");
        assert_eq!(x[&b"b"[..]], b"");
        remove(&mut x, b"a").unwrap();
        assert_eq!(remove(&mut x, b"a"), Err(FsError::NoXattr));
    }

    #[test]
    fn limits_refuse_and_leave_the_attributes_as_they_were() {
        let mut x = Xattrs::new();
        assert_eq!(set(&mut x, b"", b"v", How::Either), Err(FsError::Invalid));
        assert_eq!(
            set(&mut x, &[b'n'; 256], b"v", How::Either),
            Err(FsError::NameTooLong)
        );
        set(&mut x, &[b'n'; 255], b"v", How::Either).unwrap();
        let big = vec![7u8; VALUE_MAX + 1];
        assert_eq!(
            set(&mut x, b"big", &big, How::Either),
            Err(FsError::XattrTooBig)
        );
        set(&mut x, b"big", &big[..VALUE_MAX], How::Either).unwrap();
        set(&mut x, b"big2", &big[..VALUE_MAX - 400], How::Either).unwrap();
        let before = x.clone();
        // The third large value passes the per-file total.
        assert_eq!(
            set(&mut x, b"big3", &big[..1000], How::Either),
            Err(FsError::NoSpace)
        );
        // A replacement that grows past it is refused too, and the old value stays.
        assert_eq!(
            set(&mut x, b"big2", &big[..VALUE_MAX], How::Either),
            Err(FsError::NoSpace)
        );
        assert_eq!(x, before);
        // Many short names: the listing bound.
        let mut y = Xattrs::new();
        let mut n = 0u32;
        let err = loop {
            match set(&mut y, format!("name-{n:08}").as_bytes(), b"", How::Create) {
                Ok(()) => n += 1,
                Err(e) => break e,
            }
        };
        assert_eq!(err, FsError::NoSpace);
        assert_eq!(n as usize, LIST_MAX / ("user.".len() + 13 + 1));
    }

    #[test]
    fn permission_is_linuxs() {
        let file = |mode, uid, kind| Inode {
            ino: 5,
            kind,
            mode,
            nlink: 1,
            uid,
            gid: uid,
            size: 0,
            atime: Default::default(),
            mtime: Default::default(),
            ctime: Default::default(),
            crtime: Default::default(),
            change: 1,
            parent: 0,
            create_verifier: None,
        };
        let user = Cred {
            uid: 1000,
            gid: 1000,
            groups: vec![],
        };
        let reg = file(0o644, 1000, FileKind::Regular);
        assert_eq!(permission(&user, &reg, perm::MAY_WRITE), Ok(()));
        let other = file(0o644, 2000, FileKind::Regular);
        assert_eq!(permission(&user, &other, perm::MAY_READ), Ok(()));
        assert_eq!(
            permission(&user, &other, perm::MAY_WRITE),
            Err(FsError::Access)
        );
        let link = file(
            0o777,
            1000,
            FileKind::Symlink {
                target: b"t".to_vec(),
            },
        );
        assert_eq!(
            permission(&user, &link, perm::MAY_WRITE),
            Err(FsError::Perm)
        );
        assert_eq!(
            permission(&user, &link, perm::MAY_READ),
            Err(FsError::NoXattr)
        );
        let sticky = file(0o1777, 2000, FileKind::Directory);
        assert_eq!(
            permission(&user, &sticky, perm::MAY_WRITE),
            Err(FsError::Perm)
        );
        assert_eq!(permission(&user, &sticky, perm::MAY_READ), Ok(()));
        assert_eq!(permission(&Cred::root(), &sticky, perm::MAY_WRITE), Ok(()));
    }
}
