//! `SetXattr` and `RemoveXattr`: a file's extended attributes change as one value, and the
//! file's ctime and change attribute move with them, as Linux's setxattr and removexattr do.

use super::{bump, dir_change, get};
use crate::error::FsError;
use crate::object::{Outcome, Time};
use crate::perm::{Cred, MAY_WRITE};
use crate::state::StateStore;
use crate::tiering::{Pin, PIN_XATTR};
use crate::xattr::{self, How};

pub(super) fn set<S: StateStore + ?Sized>(
    s: &mut S,
    ino: u64,
    name: &[u8],
    value: &[u8],
    how: How,
    time: Time,
    cred: Option<&Cred>,
) -> Result<Outcome, FsError> {
    // A tier pin is one of its three values (EINVAL otherwise, as for a bad attribute).
    if name == PIN_XATTR && Pin::parse(value).is_none() {
        return Err(FsError::Invalid);
    }
    // So is a reduce policy.
    if name == crate::reducing::REDUCE_XATTR && !crate::reducing::is_reduce_policy(value) {
        return Err(FsError::Invalid);
    }
    change(s, ino, time, cred, |x| xattr::set(x, name, value, how))
}

pub(super) fn remove<S: StateStore + ?Sized>(
    s: &mut S,
    ino: u64,
    name: &[u8],
    time: Time,
    cred: Option<&Cred>,
) -> Result<Outcome, FsError> {
    change(s, ino, time, cred, |x| xattr::remove(x, name))
}

/// Checks the caller may change `ino`'s attributes, changes them with `f`, and records the
/// change. `Outcome::dir` carries the change attribute before and after (SETXATTR's and
/// REMOVEXATTR's change_info4).
fn change<S: StateStore + ?Sized>(
    s: &mut S,
    ino: u64,
    time: Time,
    cred: Option<&Cred>,
    f: impl FnOnce(&mut xattr::Xattrs) -> Result<(), FsError>,
) -> Result<Outcome, FsError> {
    let before = get(s, ino)?;
    match cred {
        Some(c) => xattr::permission(c, &before, MAY_WRITE)?,
        // The server's own change still only goes where attributes can be.
        None => xattr::permission(&Cred::root(), &before, MAY_WRITE)?,
    }
    let mut x = s.xattrs(ino)?.unwrap_or_default();
    f(&mut x)?;
    s.put_xattrs(ino, Some(&x))?;
    let mut after = before.clone();
    bump(&mut after, time);
    s.put_inode(&after)?;
    Ok(Outcome {
        dir: Some(dir_change(&before, &after)),
        inode: Some(after),
        ..Outcome::default()
    })
}
