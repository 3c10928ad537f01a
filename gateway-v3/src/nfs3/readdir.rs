//! READDIR and READDIRPLUS over NFSv4 READDIR. Cookies are the MDS's cookies (stable: an
//! entry's cookie does not change while it exists, so a listing resumed after changes neither
//! repeats nor skips the entries that stayed), and the cookie verifier is the MDS's. "." and
//! ".." come first with the cookies 1 and 2, which NFSv4 reserves (the MDS's start at 3).
use super::{all_attrs, getattr_op, last_fh, Obj, Req};
use crate::attrs::{attrs_and_fh, fattr3, ATTRS};
use crate::fh::to_v3;
use client::CompoundBuilder;
use proto::nfs3::*;
use proto::nfs4::*;
use proto::xdr::Opaque;

/// Bytes of a READDIR(PLUS)3resok around its entries: status, post_op_attr, verifier, the
/// list's end marker and eof.
const HEADER: usize = 4 + 4 + 84 + 8 + 4 + 4;

fn pad4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// An entry's bytes in a READDIR reply (value-follows, fileid, name, cookie), and what
/// READDIRPLUS adds (attributes and handle).
fn entry_size(name: usize) -> usize {
    4 + 8 + 4 + pad4(name) + 8
}
const PLUS_EXTRA: usize = 4 + 84 + 4 + 4 + 64;

struct Item {
    fileid: u64,
    name: Opaque,
    cookie: u64,
    attrs: Option<FileAttrs>,
    fh: Option<NfsFh4>,
}

struct Listing {
    dir: Option<FileAttrs>,
    verf: [u8; 8],
    items: Vec<Item>,
    eof: bool,
}

/// Up to `maxbytes` of reply (and `dircount` bytes of names for READDIRPLUS) from `cookie`.
async fn list(
    q: &Req<'_>,
    o: &Obj<'_>,
    cookie: u64,
    verf: [u8; 8],
    dircount: usize,
    maxbytes: usize,
    plus: bool,
) -> Result<Listing, Nfsstat3> {
    let per_extra = if plus { PLUS_EXTRA } else { 0 };
    let mut items = Vec::new();
    let mut used = HEADER;
    let mut names = 0usize;
    let v4cookie = if cookie < 3 { 0 } else { cookie };
    let want: Vec<u32> = if plus {
        attrs_and_fh()
    } else {
        vec![FATTR4_FILEID]
    };
    let res = q
        .run(
            o,
            CompoundBuilder::new()
                .putfh(&o.fh)
                .op(getattr_op(ATTRS))
                .op(NfsArgop4::Readdir(ReaddirArgs {
                    cookie: v4cookie,
                    cookieverf: if v4cookie == 0 { [0; 8] } else { verf },
                    dircount: dircount.clamp(512, 1 << 20) as u32,
                    maxcount: maxbytes.clamp(4096, 1 << 20) as u32,
                    attr_request: Bitmap::from_bits(&want).to_vec(),
                })),
        )
        .await
        .map_err(|e| {
            // A cookie the MDS no longer knows, or a verifier it did not give.
            if e == Nfsstat3::Inval {
                Nfsstat3::BadCookie
            } else {
                e
            }
        })?;
    let dir = all_attrs(&res).pop().map(|a| q.fix(&o.fh, a));
    let ok = res
        .into_iter()
        .find_map(|r| match r {
            NfsResop4::Readdir(ReaddirRes::Ok(ok)) => Some(ok),
            _ => None,
        })
        .ok_or(Nfsstat3::Serverfault)?;
    // "." and "..", ahead of the MDS's entries.
    if cookie < 2 {
        let dotdot = if cookie == 0 {
            vec![(".", 1u64, Some((o.fh.clone(), dir.clone())))]
        } else {
            vec![]
        };
        let parent = parent_of(q, o, plus).await;
        for (name, ck, what) in dotdot
            .into_iter()
            .chain(std::iter::once(("..", 2u64, parent)))
        {
            let (fh, at) = match what {
                Some((fh, at)) => (Some(fh), at),
                None => (None, None),
            };
            let sz = entry_size(name.len());
            if used + sz + per_extra > maxbytes || (plus && names + sz > dircount.max(512)) {
                break;
            }
            items.push(Item {
                fileid: at.as_ref().and_then(|a| a.fileid).unwrap_or(0),
                name: Opaque::from(name),
                cookie: ck,
                attrs: if plus { at } else { None },
                fh: if plus { fh } else { None },
            });
            used += entry_size(name.len()) + per_extra;
            names += entry_size(name.len());
        }
    }
    let n = ok.reply.entries.len();
    let dots_cut = cookie < 2 && items.len() < (2 - cookie) as usize;
    let mut taken = 0;
    for e in ok.reply.entries {
        if dots_cut {
            break;
        }
        let sz = entry_size(e.name.as_bytes().len());
        if used + sz + per_extra > maxbytes || (plus && names + sz > dircount.max(512)) {
            break;
        }
        let at = FileAttrs::decode(&e.attrs).ok();
        let fh = at.as_ref().and_then(|a| a.filehandle.clone());
        items.push(Item {
            fileid: at.as_ref().and_then(|a| a.fileid).unwrap_or(0),
            name: e.name,
            cookie: e.cookie,
            fh,
            attrs: at,
        });
        used += sz + per_extra;
        names += sz;
        taken += 1;
    }
    if items.is_empty() {
        return Err(Nfsstat3::Toosmall);
    }
    Ok(Listing {
        dir,
        verf: ok.cookieverf,
        items,
        eof: ok.reply.eof && taken == n && !dots_cut,
    })
}

type Parent = Option<(NfsFh4, Option<FileAttrs>)>;

/// "..": the parent's handle and attributes; the directory itself at its export's root.
async fn parent_of(q: &Req<'_>, o: &Obj<'_>, plus: bool) -> Parent {
    let bits: &[u32] = if plus { ATTRS } else { &[FATTR4_FILEID] };
    let root =
        q.s.roots
            .lock()
            .ok()
            .and_then(|m| m.get(&o.rule.id).cloned());
    let at_root = root.as_ref() == Some(&o.fh);
    let mut b = CompoundBuilder::new().putfh(&o.fh);
    if !at_root {
        b = b.op(NfsArgop4::Lookupp);
    }
    let res = o.c.compound(b.getfh().op(getattr_op(bits))).await.ok()?;
    let fh = last_fh(&res)?;
    let at = all_attrs(&res).pop();
    Some((fh, at))
}

pub async fn readdir(q: &Req<'_>, a: Readdir3Args) -> Readdir3Res {
    let r = async {
        let o = q.obj(&a.dir).await?;
        let count = a.count as usize;
        list(q, &o, a.cookie, a.cookieverf, count, count, false).await
    }
    .await;
    match r {
        Ok(l) => Readdir3Res::Ok(Readdir3ResOk {
            dir_attributes: l.dir.as_ref().map(fattr3),
            cookieverf: l.verf,
            reply: Dirlist3 {
                entries: l
                    .items
                    .into_iter()
                    .map(|i| Entry3 {
                        fileid: i.fileid,
                        name: i.name,
                        cookie: i.cookie,
                    })
                    .collect(),
                eof: l.eof,
            },
        }),
        Err(e) => Readdir3Res::Fail(e.code(), Default::default()),
    }
}

pub async fn readdirplus(q: &Req<'_>, a: Readdirplus3Args) -> Readdirplus3Res {
    let r = async {
        let o = q.obj(&a.dir).await?;
        let l = list(
            q,
            &o,
            a.cookie,
            a.cookieverf,
            a.dircount as usize,
            a.maxcount as usize,
            true,
        )
        .await?;
        Ok::<_, Nfsstat3>((o.fh.clone(), l))
    }
    .await;
    match r {
        Ok((_, l)) => Readdirplus3Res::Ok(Readdirplus3ResOk {
            dir_attributes: l.dir.as_ref().map(fattr3),
            cookieverf: l.verf,
            reply: Dirlistplus3 {
                entries: l
                    .items
                    .into_iter()
                    .map(|i| Entryplus3 {
                        fileid: i.fileid,
                        name: i.name,
                        cookie: i.cookie,
                        name_attributes: i.attrs.map(|at| match &i.fh {
                            Some(fh) => fattr3(&q.fix(fh, at)),
                            None => fattr3(&at),
                        }),
                        name_handle: i.fh.as_ref().and_then(|fh| to_v3(fh).ok()),
                    })
                    .collect(),
                eof: l.eof,
            },
        }),
        Err(e) => Readdirplus3Res::Fail(e.code(), Default::default()),
    }
}
