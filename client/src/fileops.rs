//! Namespace operations: lookup, getattr, readdir, mkdir, symlink, readlink, remove, rename,
//! link, setattr.
use crate::attrs::{DirEntry, SetAttrs, Stat, STAT_ATTRS};
use crate::client::{component, Client};
use crate::compound::{find, last_attrs, last_fh, CompoundBuilder};
use crate::error::{Error, Result};
use crate::path::split_parent;
use proto::nfs4::*;
use proto::xdr::Opaque;

/// READDIR reply size asked for: big enough for hundreds of entries, small enough for any
/// server's response limit.
const READDIR_MAXCOUNT: u32 = 64 * 1024;

impl Client {
    /// The file handle of `path` (inside the export).
    pub async fn lookup_path(&self, path: &str) -> Result<NfsFh4> {
        let res = self.walk(path, CompoundBuilder::new().getfh()).await?;
        last_fh(&res)
    }

    /// File handle and attributes of `path`.
    pub async fn stat_path(&self, path: &str) -> Result<(NfsFh4, Stat)> {
        let res = self
            .walk(path, CompoundBuilder::new().getfh().getattr(STAT_ATTRS))
            .await?;
        Ok((last_fh(&res)?, Stat::from(&last_attrs(&res)?)))
    }

    /// The parent directory's handle and the last component of `path`.
    pub async fn lookup_parent<'p>(&self, path: &'p str) -> Result<(NfsFh4, &'p str)> {
        let Some((dir, name)) = split_parent(path)? else {
            return Err(Error::BadPath(path.to_string()));
        };
        let res = self
            .walk(&dir.join("/"), CompoundBuilder::new().getfh())
            .await?;
        Ok((last_fh(&res)?, name))
    }

    pub async fn lookup(&self, dir: &NfsFh4, name: &str) -> Result<NfsFh4> {
        let res = self
            .compound(CompoundBuilder::new().putfh(dir).lookup(name).getfh())
            .await?;
        last_fh(&res)
    }

    pub async fn getattr(&self, fh: &NfsFh4) -> Result<Stat> {
        let res = self
            .compound(CompoundBuilder::new().putfh(fh).getattr(STAT_ATTRS))
            .await?;
        Ok(Stat::from(&last_attrs(&res)?))
    }

    /// Raw GETATTR for any set of attributes.
    pub async fn getattr_raw(&self, fh: &NfsFh4, bits: &[u32]) -> Result<FileAttrs> {
        let res = self
            .compound(CompoundBuilder::new().putfh(fh).getattr(bits))
            .await?;
        last_attrs(&res)
    }

    /// The whole directory, following cookies until EOF.
    pub async fn readdir(&self, dir: &NfsFh4) -> Result<Vec<DirEntry>> {
        let mut out = Vec::new();
        let mut cookie = 0;
        let mut verf = [0u8; 8];
        loop {
            let res =
                self.compound(CompoundBuilder::new().putfh(dir).op(NfsArgop4::Readdir(
                    ReaddirArgs {
                        cookie,
                        cookieverf: verf,
                        dircount: READDIR_MAXCOUNT / 4,
                        maxcount: READDIR_MAXCOUNT,
                        attr_request: Bitmap::from_bits(STAT_ATTRS).to_vec(),
                    },
                )))
                .await?;
            let ok = find(&res, "READDIR", |r| match r {
                NfsResop4::Readdir(ReaddirRes::Ok(ok)) => Some(ok.clone()),
                _ => None,
            })?;
            verf = ok.cookieverf;
            let n = ok.reply.entries.len();
            for e in ok.reply.entries {
                cookie = e.cookie;
                out.push(DirEntry {
                    name: String::from_utf8_lossy(e.name.as_bytes()).into_owned(),
                    cookie: e.cookie,
                    stat: Stat::from_fattr(&e.attrs)?,
                });
            }
            if ok.reply.eof {
                return Ok(out);
            }
            if n == 0 {
                return Err(Error::Protocol(
                    "READDIR returned no entries and no EOF".into(),
                ));
            }
        }
    }

    async fn create_obj(
        &self,
        dir: &NfsFh4,
        name: &str,
        objtype: Createtype4,
        attrs: &SetAttrs,
    ) -> Result<NfsFh4> {
        let res = self
            .compound(
                CompoundBuilder::new()
                    .putfh(dir)
                    .op(NfsArgop4::Create(CreateArgs {
                        objtype,
                        objname: component(name),
                        createattrs: attrs.to_fattr(),
                    }))
                    .getfh(),
            )
            .await?;
        last_fh(&res)
    }

    pub async fn mkdir(&self, dir: &NfsFh4, name: &str, mode: u32) -> Result<NfsFh4> {
        self.create_obj(dir, name, Createtype4::Dir, &SetAttrs::mode(mode))
            .await
    }

    pub async fn symlink(&self, dir: &NfsFh4, name: &str, target: &str) -> Result<NfsFh4> {
        self.create_obj(
            dir,
            name,
            Createtype4::Lnk(Opaque::from(target)),
            &SetAttrs::mode(0o777),
        )
        .await
    }

    pub async fn readlink(&self, fh: &NfsFh4) -> Result<String> {
        let res = self
            .compound(CompoundBuilder::new().putfh(fh).op(NfsArgop4::Readlink))
            .await?;
        find(&res, "READLINK", |r| match r {
            NfsResop4::Readlink(ReadlinkRes::Ok(ok)) => {
                Some(String::from_utf8_lossy(ok.link.as_bytes()).into_owned())
            }
            _ => None,
        })
    }

    /// Removes `name` from `dir` (a file, or an empty directory).
    pub async fn remove(&self, dir: &NfsFh4, name: &str) -> Result<()> {
        self.compound(
            CompoundBuilder::new()
                .putfh(dir)
                .op(NfsArgop4::Remove(RemoveArgs {
                    target: component(name),
                })),
        )
        .await
        .map(|_| ())
    }

    pub async fn rename(
        &self,
        from_dir: &NfsFh4,
        from: &str,
        to_dir: &NfsFh4,
        to: &str,
    ) -> Result<()> {
        self.compound(
            CompoundBuilder::new()
                .putfh(from_dir)
                .savefh()
                .putfh(to_dir)
                .op(NfsArgop4::Rename(RenameArgs {
                    oldname: component(from),
                    newname: component(to),
                })),
        )
        .await
        .map(|_| ())
    }

    /// A hard link to `file` named `name` in `dir`.
    pub async fn link(&self, file: &NfsFh4, dir: &NfsFh4, name: &str) -> Result<()> {
        self.compound(
            CompoundBuilder::new()
                .putfh(file)
                .savefh()
                .putfh(dir)
                .op(NfsArgop4::Link(LinkArgs {
                    newname: component(name),
                })),
        )
        .await
        .map(|_| ())
    }

    /// SETATTR; `stateid` is needed to change the size of a file open with share reservations
    /// (the anonymous stateid is used when `None`). Returns the attributes set.
    pub async fn setattr(
        &self,
        fh: &NfsFh4,
        attrs: &SetAttrs,
        stateid: Option<Stateid4>,
    ) -> Result<Bitmap> {
        let res = self
            .compound(
                CompoundBuilder::new()
                    .putfh(fh)
                    .op(NfsArgop4::Setattr(SetattrArgs {
                        stateid: stateid.unwrap_or(Stateid4::ANONYMOUS),
                        obj_attributes: attrs.to_fattr(),
                    })),
            )
            .await?;
        find(&res, "SETATTR", |r| match r {
            NfsResop4::Setattr(s) => Some(Bitmap::from_words(&s.attrsset)),
            _ => None,
        })
    }
}
