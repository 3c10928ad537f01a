//! READ, WRITE, COMMIT, through the NFSv4 open the gateway keeps for the file: with pNFS the
//! bytes go to and from the data servers (the layout driver mirrors writes and fails over
//! reads), otherwise through the MDS.
//!
//! Permission is checked here, as knfsd checks it for v3 (`attrs::may_io`: the owner may
//! always read and write), because the open is the gateway's own. The WRITE itself goes with
//! the caller's credential, so the MDS clears set-id bits for an unprivileged writer.
use super::{all_attrs, getattr_op, writable, Obj, Req};
use crate::attrs::{fattr3, may_io, wcc, ATTRS, MAY_READ, MAY_WRITE};
use crate::opens::Entry;
use client::CompoundBuilder;
use proto::nfs3::*;
use proto::nfs4::*;
use std::sync::atomic::Ordering;
use std::sync::Arc;

async fn attrs_as_caller(q: &Req<'_>, o: &Obj<'_>) -> Result<FileAttrs, Nfsstat3> {
    let res = q
        .run(o, CompoundBuilder::new().putfh(&o.fh).op(getattr_op(ATTRS)))
        .await?;
    all_attrs(&res)
        .pop()
        .map(|a| q.fix(&o.fh, a))
        .ok_or(Nfsstat3::Serverfault)
}

/// The open for I/O on `o`; a directory, symlink or device is refused as knfsd refuses it.
async fn open_for(q: &Req<'_>, o: &Obj<'_>, write: bool) -> Result<Arc<Entry>, Nfsstat3> {
    match q.s.opens.get(&o.gw, o.gen, &o.fh, write).await {
        Ok((e, displaced)) => {
            q.s.close_later(displaced);
            Ok(e)
        }
        Err(e) => match q.fail(o, e).await {
            Nfsstat3::Badtype | Nfsstat3::Notdir => Err(Nfsstat3::Inval),
            s => Err(s),
        },
    }
}

pub async fn read(q: &Req<'_>, a: Read3Args) -> Read3Res {
    let r = async {
        let o = q.obj(&a.file).await?;
        let e = open_for(q, &o, false).await?;
        let count = a.count.min(crate::MAX_IO);
        let (data, at) = tokio::join!(o.gw.read(&e.file, a.offset, count), attrs_as_caller(q, &o));
        let at = at?;
        if !may_io(&o.cred, &at, MAY_READ) {
            return Err(Nfsstat3::Acces);
        }
        let (data, eof) = match data {
            Ok(d) => d,
            Err(err) => return Err(q.fail(&o, err).await),
        };
        let size = at.size.unwrap_or(0);
        let eof = eof || a.offset.saturating_add(data.len() as u64) >= size;
        Ok::<_, Nfsstat3>(Read3ResOk {
            file_attributes: Some(fattr3(&at)),
            count: data.len() as u32,
            eof,
            data: proto::xdr::Opaque(data),
        })
    }
    .await;
    match r {
        Ok(ok) => Read3Res::Ok(ok),
        Err(e) => Read3Res::Fail(e.code(), Default::default()),
    }
}

fn stable4(s: StableHow) -> StableHow4 {
    match s {
        StableHow::Unstable => StableHow4::Unstable4,
        StableHow::DataSync => StableHow4::DataSync4,
        StableHow::FileSync => StableHow4::FileSync4,
    }
}

fn stable3(s: StableHow4) -> StableHow {
    match s {
        StableHow4::Unstable4 => StableHow::Unstable,
        StableHow4::DataSync4 => StableHow::DataSync,
        StableHow4::FileSync4 => StableHow::FileSync,
    }
}

/// Commits what the open holds: through the layout driver (data servers, then LAYOUTCOMMIT)
/// or a COMMIT at the MDS, whose verifier must match the one its WRITEs had. Afterwards the
/// MDS knows the size, so the pending mark is cleared unless a write raced the commit.
///
/// As the caller: a LAYOUTCOMMIT by an unprivileged user clears the file's set-id bits, as
/// its WRITE through the MDS would (with pNFS that is the MDS's only sight of the write). A
/// caller the MDS refuses (a reader committing another user's writes) is done as the gateway.
async fn commit_open(q: &Req<'_>, o: &Obj<'_>, e: &Entry) -> Result<(), Nfsstat3> {
    let pending = e.pending_end.load(Ordering::SeqCst);
    let r = match o.c.commit_file(&e.file).await {
        Err(err) if err.is_status(Nfsstat4::Access) || err.is_status(Nfsstat4::Perm) => {
            o.gw.commit_file(&e.file).await
        }
        r => r,
    };
    match r {
        Ok(Some(v)) => q.s.verf.saw_mds(v),
        Ok(None) => {}
        Err(err) => {
            if !err.needs_recovery() {
                q.s.verf.bump("a commit failed");
            }
            return Err(q.fail(o, err).await);
        }
    }
    let _ = e
        .pending_end
        .compare_exchange(pending, 0, Ordering::SeqCst, Ordering::SeqCst);
    q.s.opens.committed(e);
    Ok(())
}

pub async fn write(q: &Req<'_>, a: Write3Args) -> Write3Res {
    let mut pre = None;
    let r = async {
        let o = q.obj(&a.file).await?;
        writable(&o)?;
        let e = open_for(q, &o, true).await?;
        let at = attrs_as_caller(q, &o).await?;
        if !may_io(&o.cred, &at, MAY_WRITE) {
            return Err(Nfsstat3::Acces);
        }
        pre = Some(at);
        let n = (a.count as usize).min(a.data.len());
        let data = &a.data.as_bytes()[..n];
        let pnfs = o.gw.pnfs_active().await;
        // As the caller (the MDS then clears set-id bits for an unprivileged writer); an
        // owner writing a file its mode does not let it write was allowed above, as knfsd
        // allows it, so the MDS's refusal is overridden with the gateway's own credential.
        let w = match o.c.write(&e.file, a.offset, data, stable4(a.stable)).await {
            Ok(w) => w,
            Err(err) if err.is_status(Nfsstat4::Access) => {
                match o.gw.write(&e.file, a.offset, data, stable4(a.stable)).await {
                    Ok(w) => w,
                    Err(err) => return Err(q.fail(&o, err).await),
                }
            }
            Err(err) => return Err(q.fail(&o, err).await),
        };
        let end = a.offset.saturating_add(u64::from(w.count));
        let mut committed = w.committed;
        if pnfs {
            e.note_write(end);
            let over = w.committed == StableHow4::Unstable4
                && q.s.opens.add_unstable(&e, u64::from(w.count));
            if over {
                // Too much kept in memory for all open files: this one is made stable now
                // (the reply still says UNSTABLE with the verifier; a COMMIT finds it done).
                commit_open(q, &o, &e).await?;
            }
            if a.stable != StableHow::Unstable {
                // FILE_SYNC promises the size too: the MDS learns it at LAYOUTCOMMIT.
                commit_open(q, &o, &e).await?;
                committed = StableHow4::FileSync4;
            }
        } else {
            q.s.verf.saw_mds(w.verifier);
        }
        let after = attrs_as_caller(q, &o).await.ok();
        Ok::<_, Nfsstat3>((w.count, committed, after))
    }
    .await;
    match r {
        Ok((count, committed, after)) => Write3Res::Ok(Write3ResOk {
            file_wcc: wcc(pre.as_ref(), after.as_ref()),
            count,
            committed: stable3(committed),
            verf: q.s.verf.current(),
        }),
        Err(e) => Write3Res::Fail(
            e.code(),
            WccResFail {
                wcc: wcc(pre.as_ref(), None),
            },
        ),
    }
}

/// COMMIT of the whole file (RFC 1813 lets the server commit more than asked). The reply's
/// verifier is the gateway's: it changed if anything acknowledged since may be gone.
pub async fn commit(q: &Req<'_>, a: Commit3Args) -> Commit3Res {
    let mut pre = None;
    let r = async {
        let o = q.obj(&a.file).await?;
        pre = attrs_as_caller(q, &o).await.ok();
        match q.s.opens.peek(&o.fh).filter(|e| e.generation == o.gen) {
            Some(e) => commit_open(q, &o, &e).await?,
            None => match o.gw.commit(&o.fh, 0, 0).await {
                Ok(v) => q.s.verf.saw_mds(v),
                Err(err) => return Err(q.fail(&o, err).await),
            },
        }
        Ok::<_, Nfsstat3>(attrs_as_caller(q, &o).await.ok())
    }
    .await;
    match r {
        Ok(after) => Commit3Res::Ok(Commit3ResOk {
            file_wcc: wcc(pre.as_ref(), after.as_ref()),
            verf: q.s.verf.current(),
        }),
        Err(e) => Commit3Res::Fail(
            e.code(),
            WccResFail {
                wcc: wcc(pre.as_ref(), None),
            },
        ),
    }
}
