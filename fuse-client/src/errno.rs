//! What an application sees for each failure: the errno the Linux NFS client returns for the
//! same NFSv4 status (`nfs4_map_errors` and the generic statuses that share numbers with
//! errno), EIO for everything that is not the application's doing.
use client::{Error, Nfsstat4};
use fuser::Errno;

pub fn errno(e: &Error) -> Errno {
    let Some(s) = e.status() else {
        return Errno::EIO;
    };
    let code = match s {
        Nfsstat4::Perm => libc::EPERM,
        Nfsstat4::Noent => libc::ENOENT,
        Nfsstat4::Nxio => libc::ENXIO,
        Nfsstat4::Access | Nfsstat4::ShareDenied => libc::EACCES,
        Nfsstat4::Exist => libc::EEXIST,
        Nfsstat4::Xdev => libc::EXDEV,
        Nfsstat4::Notdir => libc::ENOTDIR,
        Nfsstat4::Isdir => libc::EISDIR,
        Nfsstat4::Inval | Nfsstat4::Badname | Nfsstat4::Badchar | Nfsstat4::BadRange => {
            libc::EINVAL
        }
        Nfsstat4::WrongType | Nfsstat4::Badtype => libc::EINVAL,
        Nfsstat4::Fbig => libc::EFBIG,
        Nfsstat4::Nospc => libc::ENOSPC,
        Nfsstat4::Rofs => libc::EROFS,
        Nfsstat4::Mlink => libc::EMLINK,
        Nfsstat4::Nametoolong => libc::ENAMETOOLONG,
        Nfsstat4::Notempty => libc::ENOTEMPTY,
        Nfsstat4::Dquot => libc::EDQUOT,
        Nfsstat4::Stale | Nfsstat4::Fhexpired => libc::ESTALE,
        Nfsstat4::Notsupp | Nfsstat4::Attrnotsupp | Nfsstat4::LockNotsupp => libc::EOPNOTSUPP,
        Nfsstat4::Denied | Nfsstat4::Locked => libc::EAGAIN,
        Nfsstat4::Deadlock => libc::EDEADLK,
        Nfsstat4::Symlink => libc::ELOOP,
        Nfsstat4::FileOpen => libc::EBUSY,
        Nfsstat4::Openmode => libc::EBADF,
        Nfsstat4::Noxattr => libc::ENODATA,
        Nfsstat4::Xattr2big => libc::E2BIG,
        _ => libc::EIO,
    };
    Errno::from_i32(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(s: Nfsstat4) -> Error {
        Error::Nfs { op: 0, status: s }
    }

    #[test]
    fn statuses_become_the_errnos_of_the_kernel_client() {
        let e = |s| i32::from(errno(&st(s)));
        assert_eq!(e(Nfsstat4::Noent), libc::ENOENT);
        assert_eq!(e(Nfsstat4::Notempty), libc::ENOTEMPTY);
        assert_eq!(e(Nfsstat4::Exist), libc::EEXIST);
        assert_eq!(e(Nfsstat4::Denied), libc::EAGAIN);
        assert_eq!(e(Nfsstat4::Access), libc::EACCES);
        assert_eq!(e(Nfsstat4::Rofs), libc::EROFS);
        assert_eq!(e(Nfsstat4::Serverfault), libc::EIO);
        let rpc = Error::Protocol("x".into());
        assert_eq!(i32::from(errno(&rpc)), libc::EIO);
    }
}
