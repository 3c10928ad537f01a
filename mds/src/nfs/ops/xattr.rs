//! Extended attributes (RFC 8276): GETXATTR, SETXATTR, LISTXATTRS, REMOVEXATTR over the
//! per-file attributes the metadata state machine keeps (`meta::namespace::xattr`), so they
//! are replicated, checkpointed and answered by every MDS node like the rest of the
//! namespace. Names arrive without the `user.` prefix (the only namespace NFS carries).
use super::dir::cinfo;
use crate::error::{NfsError, NfsResult};
use crate::nfs::ctx::Ctx;
use crate::state::recall::recall_and_wait;
use meta::namespace::perm::{MAY_READ, MAY_WRITE};
use meta::namespace::xattr::{self, How};
use meta::namespace::{Command, Inode, Time};
use proto::nfs4::basic::ChangeInfo4;
use proto::nfs4::v42::*;
use proto::xdr::Opaque;

/// The current file, which the caller may read (`MAY_READ`) or change (`MAY_WRITE`) the
/// attributes of (`xattr::permission`: Linux's rules). An attribute name is checked here
/// too, so a bad one is refused before anything else.
fn target(ctx: &Ctx<'_>, name: Option<&Opaque>, want: u32) -> NfsResult<Inode> {
    if let Some(n) = name {
        xattr::check_name(n.as_bytes())?;
    }
    let i = ctx.cur()?;
    if want & MAY_WRITE != 0 {
        ctx.writable()?;
    }
    xattr::permission(&ctx.user, &i, want)?;
    Ok(i)
}

pub async fn getxattr(ctx: &mut Ctx<'_>, a: &GetxattrArgs) -> GetxattrRes {
    let r = (|| {
        let i = target(ctx, Some(&a.gxa_name), MAY_READ)?;
        let mut x = ctx.mds.ns.xattrs(i.ino)?;
        let value = x.remove(a.gxa_name.as_bytes()).ok_or(NfsError::NoXattr)?;
        Ok::<_, NfsError>(GetxattrResOk {
            gxr_value: value.into(),
        })
    })();
    match r {
        Ok(r) => GetxattrRes::Ok(r),
        Err(e) => GetxattrRes::error(e.code()),
    }
}

pub async fn setxattr(ctx: &mut Ctx<'_>, a: &SetxattrArgs) -> SetxattrRes {
    let how = match a.sxa_option {
        SetxattrOption4::Either => How::Either,
        SetxattrOption4::Create => How::Create,
        SetxattrOption4::Replace => How::Replace,
    };
    let name = a.sxa_key.as_bytes().to_vec();
    let value = a.sxa_value.as_bytes().to_vec();
    let r = change(ctx, &a.sxa_key, |ino, time| Command::SetXattr {
        ino,
        name,
        value,
        how,
        time,
    })
    .await;
    match r {
        Ok(c) => SetxattrRes::Ok(SetxattrResOk { sxr_info: c }),
        Err(e) => SetxattrRes::error(e.code()),
    }
}

pub async fn removexattr(ctx: &mut Ctx<'_>, a: &RemovexattrArgs) -> RemovexattrRes {
    let name = a.rxa_name.as_bytes().to_vec();
    let r = change(ctx, &a.rxa_name, |ino, time| Command::RemoveXattr {
        ino,
        name,
        time,
    })
    .await;
    match r {
        Ok(c) => RemovexattrRes::Ok(RemovexattrResOk { rxr_info: c }),
        Err(e) => RemovexattrRes::error(e.code()),
    }
}

/// Runs the change `cmd` builds as the caller, after other clients' delegations of the file
/// are back (the change moves its ctime and change attribute, which a delegation holder
/// would otherwise answer from its cache, as knfsd's vfs_setxattr breaks them).
async fn change(
    ctx: &Ctx<'_>,
    name: &Opaque,
    cmd: impl FnOnce(u64, Time) -> Command,
) -> NfsResult<ChangeInfo4> {
    let i = target(ctx, Some(name), MAY_WRITE)?;
    let _busy = recall_and_wait(&ctx.mds.nfs, &[i.ino], ctx.clientid).await?;
    let out = ctx.execute_as(cmd(i.ino, Time::now())).await?;
    Ok(cinfo(out.dir, &i))
}

/// The bytes of LISTXATTRS4resok around the names: cookie, the array's count, eof.
const LIST_HEAD: usize = 8 + 4 + 4;

/// Names from position `lxa_cookie` (the cookie counts names, in the order they sort) as many
/// as `lxa_maxcount` holds; NFS4ERR_TOOSMALL when not even the first fits, BADCOOKIE for a
/// position past the end.
pub async fn listxattrs(ctx: &mut Ctx<'_>, a: &ListxattrsArgs) -> ListxattrsRes {
    let r = (|| {
        let i = target(ctx, None, MAY_READ)?;
        let x = ctx.mds.ns.xattrs(i.ino)?;
        list(x.keys().map(|k| k.as_slice()), a.lxa_cookie, a.lxa_maxcount)
    })();
    match r {
        Ok(r) => ListxattrsRes::Ok(r),
        Err(e) => ListxattrsRes::error(e.code()),
    }
}

pub(super) fn list<'a>(
    names: impl ExactSizeIterator<Item = &'a [u8]>,
    cookie: u64,
    maxcount: u32,
) -> NfsResult<ListxattrsResOk> {
    let total = names.len() as u64;
    if cookie > total {
        return Err(NfsError::BadCookie);
    }
    let mut room = (maxcount as usize)
        .checked_sub(LIST_HEAD)
        .ok_or(NfsError::TooSmall)?;
    let mut out = Vec::new();
    let skip = usize::try_from(cookie).map_err(|_| NfsError::BadCookie)?;
    for n in names.skip(skip) {
        let need = 4 + n.len().div_ceil(4) * 4;
        if need > room {
            break;
        }
        room -= need;
        out.push(Opaque::from(n));
    }
    let next = cookie + out.len() as u64;
    if out.is_empty() && next < total {
        return Err(NfsError::TooSmall);
    }
    Ok(ListxattrsResOk {
        lxr_cookie: next,
        lxr_eof: next == total,
        lxr_names: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(r: &ListxattrsResOk) -> Vec<&[u8]> {
        r.lxr_names.iter().map(|n| n.as_bytes()).collect()
    }

    #[test]
    fn a_listing_resumes_at_its_cookie_and_fits_maxcount() {
        let all: Vec<&[u8]> = vec![b"a", b"bbbbb", b"c"];
        let r = list(all.iter().copied(), 0, 1000).unwrap();
        assert_eq!((names(&r), r.lxr_cookie, r.lxr_eof), (all.clone(), 3, true));
        // Room for "a" (8 bytes) and not for "bbbbb" (12).
        let r = list(all.iter().copied(), 0, (LIST_HEAD + 8 + 11) as u32).unwrap();
        assert_eq!(
            (names(&r), r.lxr_cookie, r.lxr_eof),
            (vec![&b"a"[..]], 1, false)
        );
        let r = list(all.iter().copied(), 1, 1000).unwrap();
        assert_eq!(names(&r), vec![&b"bbbbb"[..], b"c"]);
        // At the end: nothing, eof.
        let r = list(all.iter().copied(), 3, 1000).unwrap();
        assert!(r.lxr_eof && r.lxr_names.is_empty());
        assert_eq!(list(all.iter().copied(), 4, 1000), Err(NfsError::BadCookie));
        assert_eq!(list(all.iter().copied(), 1, 20), Err(NfsError::TooSmall));
        assert_eq!(list(all.iter().copied(), 0, 3), Err(NfsError::TooSmall));
        // No names: an empty, complete listing.
        let none: Vec<&[u8]> = Vec::new();
        let r = list(none.into_iter(), 0, LIST_HEAD as u32).unwrap();
        assert!(r.lxr_eof && r.lxr_names.is_empty());
    }
}
