//! Extended attributes as a mount shows them: Linux names carry a namespace prefix, NFSv4.2
//! carries only the `user.` one (RFC 8276), so other namespaces are EOPNOTSUPP, as on a
//! kernel NFS mount; and getxattr/listxattr's size rules (0: how many bytes; too small:
//! ERANGE).
use fuser::Errno;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

const USER: &[u8] = b"user.";

/// The wire name of a Linux attribute name: `user.x` → `x`; any other namespace is not
/// carried by NFS.
pub fn wire_name(name: &OsStr) -> Result<&[u8], Errno> {
    match name.as_bytes().strip_prefix(USER) {
        Some(n) if !n.is_empty() => Ok(n),
        Some(_) => Err(Errno::EINVAL),
        None => Err(Errno::EOPNOTSUPP),
    }
}

/// `setxattr(2)`'s flags as SETXATTR's option.
pub fn how(flags: i32) -> Result<client::proto::nfs4::SetxattrOption4, Errno> {
    use client::proto::nfs4::SetxattrOption4 as O;
    match flags & (libc::XATTR_CREATE | libc::XATTR_REPLACE) {
        0 => Ok(O::Either),
        libc::XATTR_CREATE => Ok(O::Create),
        libc::XATTR_REPLACE => Ok(O::Replace),
        _ => Err(Errno::EINVAL),
    }
}

/// `listxattr(2)`'s buffer: each name with its prefix and a NUL.
pub fn list_buffer(names: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for n in names {
        out.extend_from_slice(USER);
        out.extend_from_slice(n);
        out.push(0);
    }
    out
}

/// What getxattr and listxattr answer for a caller's buffer of `size` bytes.
pub enum Sized<'a> {
    /// Only the size was asked for.
    Size(u32),
    Data(&'a [u8]),
}

pub fn fit(data: &[u8], size: u32) -> Result<Sized<'_>, Errno> {
    let len = u32::try_from(data.len()).map_err(|_| Errno::E2BIG)?;
    match size {
        0 => Ok(Sized::Size(len)),
        s if len > s => Err(Errno::ERANGE),
        _ => Ok(Sized::Data(data)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_user_namespace_travels() {
        assert_eq!(
            wire_name(OsStr::new("user.mime_type")).unwrap(),
            b"mime_type"
        );
        assert_eq!(
            wire_name(OsStr::new("security.selinux")).unwrap_err(),
            Errno::EOPNOTSUPP
        );
        assert_eq!(wire_name(OsStr::new("user.")).unwrap_err(), Errno::EINVAL);
        assert_eq!(
            list_buffer(&[b"a".to_vec(), b"bc".to_vec()]),
            b"user.a\0user.bc\0"
        );
        assert!(matches!(fit(b"abc", 0), Ok(Sized::Size(3))));
        assert!(matches!(fit(b"abc", 3), Ok(Sized::Data(b"abc"))));
        assert_eq!(fit(b"abc", 2).err(), Some(Errno::ERANGE));
        assert!(how(libc::XATTR_CREATE | libc::XATTR_REPLACE).is_err());
    }
}
