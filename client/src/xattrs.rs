//! Extended attributes (RFC 8276): GETXATTR, SETXATTR, LISTXATTRS, REMOVEXATTR. Names are
//! the wire's, without the `user.` prefix Linux programs put in front.
use crate::client::Client;
use crate::compound::{find, CompoundBuilder};
use crate::error::Result;
use proto::nfs4::*;
use proto::xdr::Opaque;

/// LISTXATTRS reply size asked for: Linux's XATTR_LIST_MAX, the most names one file has.
const LIST_MAXCOUNT: u32 = 64 * 1024;
/// Most LISTXATTRS calls for one listing: a server that never says eof is not followed
/// forever.
const LIST_CALLS: usize = 1024;

impl Client {
    /// The value of extended attribute `name` of `fh` (NFS4ERR_NOXATTR if it has none).
    pub async fn getxattr(&self, fh: &NfsFh4, name: &[u8]) -> Result<Vec<u8>> {
        let res = self
            .compound(
                CompoundBuilder::new()
                    .putfh(fh)
                    .op(NfsArgop4::Getxattr(GetxattrArgs {
                        gxa_name: Opaque::from(name),
                    })),
            )
            .await?;
        find(&res, "GETXATTR", |r| match r {
            NfsResop4::Getxattr(GetxattrRes::Ok(ok)) => Some(ok.gxr_value.as_bytes().to_vec()),
            _ => None,
        })
    }

    /// Sets `name` of `fh` to `value`; `how` creates, replaces, or either.
    pub async fn setxattr(
        &self,
        fh: &NfsFh4,
        name: &[u8],
        value: &[u8],
        how: SetxattrOption4,
    ) -> Result<()> {
        self.compound(
            CompoundBuilder::new()
                .putfh(fh)
                .op(NfsArgop4::Setxattr(SetxattrArgs {
                    sxa_option: how,
                    sxa_key: Opaque::from(name),
                    sxa_value: Opaque::from(value),
                })),
        )
        .await
        .map(|_| ())
    }

    /// Every extended attribute name of `fh`, following the server's cookies to the end.
    pub async fn listxattrs(&self, fh: &NfsFh4) -> Result<Vec<Vec<u8>>> {
        let mut names = Vec::new();
        let mut cookie = 0;
        for _ in 0..LIST_CALLS {
            let res = self
                .compound(CompoundBuilder::new().putfh(fh).op(NfsArgop4::Listxattrs(
                    ListxattrsArgs {
                        lxa_cookie: cookie,
                        lxa_maxcount: LIST_MAXCOUNT,
                    },
                )))
                .await?;
            let ok = find(&res, "LISTXATTRS", |r| match r {
                NfsResop4::Listxattrs(ListxattrsRes::Ok(ok)) => Some(ok.clone()),
                _ => None,
            })?;
            names.extend(ok.lxr_names.iter().map(|n| n.as_bytes().to_vec()));
            if ok.lxr_eof {
                return Ok(names);
            }
            cookie = ok.lxr_cookie;
        }
        Err(crate::error::Error::Protocol(
            "LISTXATTRS never reached the end".into(),
        ))
    }

    /// Removes extended attribute `name` of `fh` (NFS4ERR_NOXATTR if it has none).
    pub async fn removexattr(&self, fh: &NfsFh4, name: &[u8]) -> Result<()> {
        self.compound(CompoundBuilder::new().putfh(fh).op(NfsArgop4::Removexattr(
            RemovexattrArgs {
                rxa_name: Opaque::from(name),
            },
        )))
        .await
        .map(|_| ())
    }
}
