//! Operations on directories of the pseudo file system (RFC 8881 §7) that would otherwise see
//! the real directory behind them: READDIR lists only the names that lead to exports this
//! client may use, and OPEN finds nothing. Everything that changes a pseudo directory gets
//! NFS4ERR_ROFS from the pseudo export's read-only rule, like any read-only export.
use crate::error::{NfsError, NfsResult};
use crate::export;
use crate::fh;
use crate::nfs::attrs;
use crate::nfs::ctx::Ctx;
use proto::nfs4::attr::Bitmap;
use proto::nfs4::fileops::{Dirlist4, Entry4, ReaddirArgs, ReaddirRes, ReaddirResOk};
use proto::nfs4::state::{OpenArgs, OpenRes, Openflag4};
use proto::xdr::Opaque;

/// Cookies 0, 1 and 2 are reserved (RFC 8881 §18.23.4): entry `i` has cookie `i + 3`.
const FIRST_COOKIE: u64 = 3;

pub fn readdir(ctx: &mut Ctx<'_>, a: &ReaddirArgs) -> ReaddirRes {
    match readdir_inner(ctx, a) {
        Ok(r) => ReaddirRes::Ok(r),
        Err(e) => ReaddirRes::error(e.code()),
    }
}

fn readdir_inner(ctx: &mut Ctx<'_>, a: &ReaddirArgs) -> NfsResult<ReaddirResOk> {
    let dir = ctx.cur_dir()?;
    let path = ctx.pseudo_path(dir.ino).ok_or(NfsError::Stale)?;
    let names = export::pseudo_entries(ctx.admitted().map(|e| e.path.as_str()), &path);
    let skip = match a.cookie {
        0 => 0,
        c if c < FIRST_COOKIE => return Err(NfsError::BadCookie),
        c => usize::try_from(c - FIRST_COOKIE + 1).map_err(|_| NfsError::BadCookie)?,
    };
    let want = Bitmap::from_words(&a.attr_request);
    let budget = (a.maxcount.min(crate::limits::MAX_IO) as usize).saturating_sub(64);
    let mut used = 0usize;
    let mut entries = Vec::new();
    let mut eof = true;
    for (i, name) in names.iter().enumerate().skip(skip) {
        let child = export::join(&path, name);
        // Entries are export roots or deeper pseudo directories; each handle names which.
        let exp = ctx
            .admitted()
            .find(|e| e.path == child)
            .map_or(export::PSEUDO_ID, |e| e.id);
        let Ok(inode) = ctx.mds.ns.resolve(child.as_bytes()) else {
            // An export whose directory does not exist (yet) is not listed.
            continue;
        };
        let attrs = fh::encoding_in_sync(exp, || attrs::encode(ctx.mds, &inode, &want));
        let cost = 4
            + 8
            + 4
            + name.len().div_ceil(4) * 4
            + 4
            + attrs.attrmask.len() * 4
            + 4
            + attrs.attr_vals.len();
        if used + cost > budget {
            if entries.is_empty() {
                return Err(NfsError::TooSmall);
            }
            eof = false;
            break;
        }
        used += cost;
        entries.push(Entry4 {
            cookie: i as u64 + FIRST_COOKIE,
            name: Opaque(name.clone().into_bytes()),
            attrs,
        });
    }
    Ok(ReaddirResOk {
        cookieverf: [0; 8],
        reply: Dirlist4 { entries, eof },
    })
}

/// Pseudo directories hold no files: creating one is a change (ROFS), anything else finds
/// nothing (the names here are directories, reached with LOOKUP).
pub fn open(a: &OpenArgs) -> OpenRes {
    let e = match a.openhow {
        Openflag4::Create(_) => NfsError::Rofs,
        Openflag4::NoCreate => NfsError::NoEnt,
    };
    OpenRes::error(e.code())
}
