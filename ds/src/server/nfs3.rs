//! The NFSv3 program as a loosely coupled flexfiles DS serves it: NULL, GETATTR, SETATTR (size),
//! READ, WRITE, COMMIT; everything else NFS3ERR_NOTSUPP. One function per procedure.
//!
//! The file handle is the only authority: it is a capability minted by the MDS (see
//! `layout::capability`), checked for authenticity, fence and range before anything is touched.
//! AUTH_SYS credentials are whatever the layout told the client to send and prove nothing.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use layout::Cap;
use proto::nfs3::*;
use proto::rpc::{accepted_reply, AcceptStat, Auth, Call, CallHandler, Connection};
use proto::xdr::{Opaque, Reader, Writer};

use super::objects::ObjState;
use super::Shared;
use crate::DsError;

/// Largest READ served; larger requests get a short read (RFC 1813 allows it).
pub const MAX_READ: u32 = 1 << 20;

pub(crate) struct Nfs3Service {
    pub(crate) shared: Arc<Shared>,
}

impl CallHandler for Nfs3Service {
    async fn handle(&self, _conn: Connection, call: Call) -> Option<Writer> {
        let stat = |s| Some(accepted_reply(call.xid, &Auth::None, s));
        if call.prog == proto::shard::CFS_SHARD_PROGRAM {
            return super::shards::service::handle(&self.shared, call).await;
        }
        if call.prog != NFS3_PROGRAM {
            return stat(AcceptStat::ProgUnavail);
        }
        if call.vers != NFS_V3 {
            return stat(AcceptStat::ProgMismatch {
                low: NFS_V3,
                high: NFS_V3,
            });
        }
        let mut r = Reader::new(call.args());
        let args = match Nfs3Args::decode(call.proc_, &mut r) {
            Ok(Some(a)) => a,
            Ok(None) => return stat(AcceptStat::ProcUnavail),
            Err(e) => {
                tracing::debug!(xid = call.xid, proc_ = call.proc_, "undecodable args: {e}");
                return stat(AcceptStat::GarbageArgs);
            }
        };
        let s = &self.shared;
        let t0 = metrics::start();
        let shard = |fh: &NfsFh3| layout::is_shard_handle(fh.data.as_bytes());
        let rofs = |fh: &NfsFh3| super::shards::reads::refuse_write(s, fh).code();
        let reduced = |fh: &NfsFh3| layout::is_reduced_handle(fh.data.as_bytes());
        let rofs_reduced = |fh: &NfsFh3| super::reduced::refuse_write(s, fh).code();
        let res = match args {
            Nfs3Args::Null => Nfs3Res::Null,
            // Erasure-coded shards (issue 13): read-only handles of their own kind.
            Nfs3Args::Read(a) if shard(&a.file) => {
                Nfs3Res::Read(super::shards::reads::read(s, a).await)
            }
            Nfs3Args::Getattr(a) if shard(&a.object) => {
                Nfs3Res::Getattr(super::shards::reads::getattr(s, a).await)
            }
            Nfs3Args::Write(a) if shard(&a.file) => {
                Nfs3Res::Write(Write3Res::Fail(rofs(&a.file), Default::default()))
            }
            Nfs3Args::Setattr(a) if shard(&a.object) => {
                Nfs3Res::Setattr(Setattr3Res::Fail(rofs(&a.object), Default::default()))
            }
            Nfs3Args::Commit(a) if shard(&a.file) => {
                Nfs3Res::Commit(Commit3Res::Fail(rofs(&a.file), Default::default()))
            }
            // Data-reduced files (issue 46): read-only, assembled here.
            Nfs3Args::Read(a) if reduced(&a.file) => {
                Nfs3Res::Read(super::reduced::read(s, a).await)
            }
            Nfs3Args::Getattr(a) if reduced(&a.object) => {
                Nfs3Res::Getattr(super::reduced::getattr(s, a).await)
            }
            Nfs3Args::Write(a) if reduced(&a.file) => {
                Nfs3Res::Write(Write3Res::Fail(rofs_reduced(&a.file), Default::default()))
            }
            Nfs3Args::Setattr(a) if reduced(&a.object) => Nfs3Res::Setattr(Setattr3Res::Fail(
                rofs_reduced(&a.object),
                Default::default(),
            )),
            Nfs3Args::Commit(a) if reduced(&a.file) => {
                Nfs3Res::Commit(Commit3Res::Fail(rofs_reduced(&a.file), Default::default()))
            }
            Nfs3Args::Getattr(a) => Nfs3Res::Getattr(getattr(s, a).await),
            Nfs3Args::Setattr(a) => Nfs3Res::Setattr(setattr(s, a).await),
            Nfs3Args::Read(a) => Nfs3Res::Read(read(s, a).await),
            Nfs3Args::Write(a) => Nfs3Res::Write(write(s, a).await),
            Nfs3Args::Commit(a) => Nfs3Res::Commit(commit(s, a).await),
            other => unsupported(&other),
        };
        metrics::ds::OPS.done(call.proc_, t0, status3(&res));
        let mut w = accepted_reply(call.xid, &Auth::None, AcceptStat::Success);
        res.encode(&mut w);
        Some(w)
    }
}

/// The status of a result, for `metrics`.
fn status3(r: &Nfs3Res) -> u32 {
    match r {
        Nfs3Res::Null => 0,
        Nfs3Res::Getattr(x) => x.status(),
        Nfs3Res::Setattr(x) => x.status(),
        Nfs3Res::Read(x) => x.status(),
        Nfs3Res::Write(x) => x.status(),
        Nfs3Res::Commit(x) => x.status(),
        _ => Nfsstat3::Notsupp.code(),
    }
}

/// NFS3ERR_NOTSUPP with the failure body each procedure's result union expects.
fn unsupported(args: &Nfs3Args) -> Nfs3Res {
    let e = Nfsstat3::Notsupp.code();
    match args {
        Nfs3Args::Null => Nfs3Res::Null,
        Nfs3Args::Getattr(_) => Nfs3Res::Getattr(Getattr3Res::Fail(e, ())),
        Nfs3Args::Setattr(_) => Nfs3Res::Setattr(Setattr3Res::Fail(e, Default::default())),
        Nfs3Args::Lookup(_) => Nfs3Res::Lookup(Lookup3Res::Fail(e, Default::default())),
        Nfs3Args::Access(_) => Nfs3Res::Access(Access3Res::Fail(e, Default::default())),
        Nfs3Args::Readlink(_) => Nfs3Res::Readlink(Readlink3Res::Fail(e, Default::default())),
        Nfs3Args::Read(_) => Nfs3Res::Read(Read3Res::Fail(e, Default::default())),
        Nfs3Args::Write(_) => Nfs3Res::Write(Write3Res::Fail(e, Default::default())),
        Nfs3Args::Create(_) => Nfs3Res::Create(Create3Res::Fail(e, Default::default())),
        Nfs3Args::Mkdir(_) => Nfs3Res::Mkdir(Mkdir3Res::Fail(e, Default::default())),
        Nfs3Args::Symlink(_) => Nfs3Res::Symlink(Symlink3Res::Fail(e, Default::default())),
        Nfs3Args::Mknod(_) => Nfs3Res::Mknod(Mknod3Res::Fail(e, Default::default())),
        Nfs3Args::Remove(_) => Nfs3Res::Remove(Remove3Res::Fail(e, Default::default())),
        Nfs3Args::Rmdir(_) => Nfs3Res::Rmdir(Rmdir3Res::Fail(e, Default::default())),
        Nfs3Args::Rename(_) => Nfs3Res::Rename(Rename3Res::Fail(e, Default::default())),
        Nfs3Args::Link(_) => Nfs3Res::Link(Link3Res::Fail(e, Default::default())),
        Nfs3Args::Readdir(_) => Nfs3Res::Readdir(Readdir3Res::Fail(e, Default::default())),
        Nfs3Args::Readdirplus(_) => {
            Nfs3Res::Readdirplus(Readdirplus3Res::Fail(e, Default::default()))
        }
        Nfs3Args::Fsstat(_) => Nfs3Res::Fsstat(Fsstat3Res::Fail(e, Default::default())),
        Nfs3Args::Fsinfo(_) => Nfs3Res::Fsinfo(Fsinfo3Res::Fail(e, Default::default())),
        Nfs3Args::Pathconf(_) => Nfs3Res::Pathconf(Pathconf3Res::Fail(e, Default::default())),
        Nfs3Args::Commit(_) => Nfs3Res::Commit(Commit3Res::Fail(e, Default::default())),
    }
}

/// Decides whether the handle allows this I/O. Refusals touch nothing and are counted.
pub(crate) fn authorize(
    s: &Shared,
    fh: &NfsFh3,
    write: bool,
    offset: u64,
    len: u64,
) -> Result<Cap, Nfsstat3> {
    // Until the MDS has answered, the DS knows neither the chunk size handles are expressed in
    // nor which generations are fenced: the client must wait and retry.
    let Some(geometry) = s.geometry() else {
        return Err(Nfsstat3::Jukebox);
    };
    let refuse = |e: layout::CapError| {
        s.counters.refused();
        tracing::debug!(write, offset, len, "refused: {e}");
        e.nfsstat3()
    };
    let claimed = layout::peek(fh.data.as_bytes()).map_err(refuse)?;
    // The MDS node that minted the handle has not answered a heartbeat yet: its fences are
    // unknown, so wait (as before the first heartbeat of all).
    let Some(fence) = s.fence_for(claimed.file.0, claimed.generation) else {
        return Err(Nfsstat3::Jukebox);
    };
    let cap = layout::verify_fenced(fh.data.as_bytes(), &s.cap_key, s.id, fence).map_err(refuse)?;
    if cap.generation > fence {
        s.learn_generation(cap.file.0, cap.generation);
    }
    if let Err(e) = cap.check(&geometry, write, offset, len) {
        tracing::debug!(
            file = cap.file.0,
            first_chunk = cap.first_chunk,
            chunks = cap.chunk_count,
            rights = ?cap.rights,
            "handle does not cover the I/O"
        );
        return Err(refuse(e));
    }
    Ok(cap)
}

fn status_of(e: &DsError) -> Nfsstat3 {
    let st = match e.raw_os_error() {
        Some(libc::ENOSPC) => Nfsstat3::Nospc,
        Some(libc::EDQUOT) => Nfsstat3::Dquot,
        Some(libc::EFBIG) => Nfsstat3::Fbig,
        _ => Nfsstat3::Io,
    };
    tracing::warn!("storage error, replying {st:?}: {e}");
    st
}

/// `status_of`, after recording a chunk that failed verification (durably, before the reader
/// hears back) so that the MDS learns of it and has the copy rewritten from a good mirror.
async fn storage_failure(s: &Shared, e: &DsError) -> Nfsstat3 {
    if let DsError::Corrupt { id, chunk, .. } = e {
        if let Err(err) = s.bad.mark(*id, *chunk).await {
            tracing::error!(file = id, chunk, "cannot record a bad chunk: {err}");
        }
    }
    if e.raw_os_error() == Some(libc::ENOSPC) {
        tracing::warn!("storage error: {e}");
        return s.flash.fs_full();
    }
    status_of(e)
}

fn nfstime(t: SystemTime) -> Nfstime3 {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    Nfstime3 {
        seconds: d.as_secs() as u32,
        nseconds: d.subsec_nanos(),
    }
}

fn fattr(s: &Shared, file: u64, st: &ObjState) -> Fattr3 {
    let t = nfstime(st.mtime);
    Fattr3 {
        ftype: Ftype3::Reg,
        mode: 0o644,
        nlink: 1,
        uid: 0,
        gid: 0,
        size: st.hwm,
        used: st.disk_end,
        rdev: Specdata3::default(),
        fsid: s.id.0,
        fileid: file,
        atime: t,
        mtime: t,
        ctime: t,
    }
}

fn wcc_after(s: &Shared, file: u64, st: &ObjState) -> WccData {
    WccData {
        before: None,
        after: Some(fattr(s, file, st)),
    }
}

async fn getattr(s: &Shared, a: Getattr3Args) -> Getattr3Res {
    let cap = match authorize(s, &a.object, false, 0, 0) {
        Ok(c) => c,
        Err(e) => return Getattr3Res::Fail(e.code(), ()),
    };
    match s.objects.state(cap.file.0).await {
        Ok(st) => Getattr3Res::Ok(Getattr3ResOk {
            obj_attributes: fattr(s, cap.file.0, &st),
        }),
        Err(e) => Getattr3Res::Fail(status_of(&e).code(), ()),
    }
}

/// Only the size is ours to set (truncate/extend); other attributes belong to the MDS and are
/// ignored.
async fn setattr(s: &Shared, a: Setattr3Args) -> Setattr3Res {
    let cap = match authorize(s, &a.object, true, 0, 0) {
        Ok(c) => c,
        Err(e) => return Setattr3Res::Fail(e.code(), Default::default()),
    };
    let file = cap.file.0;
    let res = match a.new_attributes.size {
        Some(size) => s.objects.set_size(file, size).await,
        None => s.objects.state(file).await,
    };
    if let (Ok(_), Some(size)) = (&res, a.new_attributes.size) {
        s.flash.shrank();
        // Chunks wholly cut off hold nothing bad any more (repair rewrites a copy this way).
        let cs = s.objects.store().blocking().config().chunk_size;
        if let Err(e) = s.bad.forget(file, size.div_ceil(cs)).await {
            tracing::warn!(file, "cannot update the bad chunk records: {e}");
        }
    }
    match res {
        Ok(st) => Setattr3Res::Ok(Setattr3ResBody {
            obj_wcc: wcc_after(s, file, &st),
        }),
        Err(e) => Setattr3Res::Fail(storage_failure(s, &e).await.code(), Default::default()),
    }
}

pub(crate) async fn read(s: &Shared, a: Read3Args) -> Read3Res {
    let count = a.count.min(MAX_READ);
    let cap = match authorize(s, &a.file, false, a.offset, u64::from(count)) {
        Ok(c) => c,
        Err(e) => return Read3Res::Fail(e.code(), Default::default()),
    };
    let file = cap.file.0;
    let res = async {
        let st = s.objects.state(file).await?;
        let (data, _) = s
            .objects
            .store()
            .read(file, a.offset, u64::from(count), st.hwm)
            .await?;
        Ok::<_, DsError>((st, data))
    }
    .await;
    match res {
        Ok((st, data)) => {
            s.counters.read(data.len() as u64);
            Read3Res::Ok(Read3ResOk {
                file_attributes: Some(fattr(s, file, &st)),
                count: data.len() as u32,
                eof: a.offset.saturating_add(data.len() as u64) >= st.hwm,
                data: Opaque(data),
            })
        }
        Err(e) => Read3Res::Fail(storage_failure(s, &e).await.code(), Default::default()),
    }
}

pub(crate) async fn write(s: &Shared, a: Write3Args) -> Write3Res {
    let fail = |st: Nfsstat3| Write3Res::Fail(st.code(), Default::default());
    let count = a.count as usize;
    // The XDR count and the opaque's own length must agree; more data than count is tolerated
    // (the excess is ignored, as RFC 1813 servers do), less is an error.
    if count > a.data.len() {
        return fail(Nfsstat3::Inval);
    }
    let cap = match authorize(s, &a.file, true, a.offset, count as u64) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let file = cap.file.0;
    let _room = match s
        .flash
        .admit(s.objects.store(), file, a.offset, count as u64)
    {
        Ok(r) => r,
        Err(st) => return fail(st),
    };
    let stable = a.stable != StableHow::Unstable;
    let mut data = a.data.0;
    data.truncate(count);
    // Checked again once the write holds the object: a removal or truncation with a newer
    // handle may have arrived since `authorize`, and must not have this write land after it.
    let admit = || {
        s.fence_for(file, cap.generation)
            .is_some_and(|f| cap.generation >= f)
    };
    match s
        .objects
        .write(file, a.offset, data.into(), stable, admit)
        .await
    {
        Ok(None) => {
            s.counters.refused();
            fail(Nfsstat3::Stale)
        }
        Ok(Some(st)) => {
            s.counters.write(count as u64);
            Write3Res::Ok(Write3ResOk {
                file_wcc: wcc_after(s, file, &st),
                count: count as u32,
                // DATA_SYNC is honoured as FILE_SYNC: the store syncs data and metadata together.
                committed: if stable {
                    StableHow::FileSync
                } else {
                    StableHow::Unstable
                },
                verf: s.verifier,
            })
        }
        Err(e) => fail(storage_failure(s, &e).await),
    }
}

pub(crate) async fn commit(s: &Shared, a: Commit3Args) -> Commit3Res {
    let fail = |st: Nfsstat3| Commit3Res::Fail(st.code(), Default::default());
    // The range is not checked: COMMIT changes no data, the store commits whole objects, and
    // Linux sends a commit bucket's range with the handle of whichever layout segment the
    // bucket belongs to, which need not cover it.
    let cap = match authorize(s, &a.file, true, 0, 0) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let file = cap.file.0;
    // The store commits whole objects; committing more than asked is allowed.
    if let Err(e) = s.objects.commit(file).await {
        return fail(status_of(&e));
    }
    s.counters.commit();
    match s.objects.state(file).await {
        Ok(st) => Commit3Res::Ok(Commit3ResOk {
            file_wcc: wcc_after(s, file, &st),
            verf: s.verifier,
        }),
        Err(e) => fail(status_of(&e)),
    }
}
