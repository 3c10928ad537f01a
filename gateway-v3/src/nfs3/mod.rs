//! The NFSv3 program: decode, find what the handle names and who acts, run the procedure as
//! NFSv4 COMPOUNDs upstream, encode. One function per procedure:
//! [`attr`] (GETATTR, SETATTR, ACCESS, READLINK), [`dir`] (LOOKUP, CREATE, MKDIR, SYMLINK,
//! MKNOD, REMOVE, RMDIR, RENAME, LINK), [`readdir`] (READDIR, READDIRPLUS), [`io`] (READ,
//! WRITE, COMMIT), [`fs`] (FSSTAT, FSINFO, PATHCONF).
pub mod attr;
pub mod dir;
pub mod fs;
pub mod io;
pub mod readdir;

use crate::creds::Cred;
use crate::error::status_of;
use crate::exports::ExportRule;
use crate::Shared;
use client::{Client, CompoundBuilder};
use proto::nfs3::*;
use proto::nfs4::*;
use proto::rpc::{accepted_reply, AcceptStat, Auth, Call};
use proto::xdr::Writer;
use std::net::IpAddr;
use std::sync::Arc;

/// One v3 call: the gateway, the peer and its credential as sent.
pub struct Req<'a> {
    pub s: &'a Arc<Shared>,
    pub peer: IpAddr,
    pub cred: Cred,
    /// NLM: the export's flavors are not checked. Linux's lockd sends NLM with AUTH_SYS
    /// whatever the mount's flavor, and knfsd lets lock calls through the same way
    /// (NFSD_MAY_BYPASS_GSS); the handle (MACed by the MDS) still has to be a real one.
    pub any_flavor: bool,
}

/// What a handle names, under which rules, and the upstream handle acting for the caller.
pub struct Obj<'a> {
    pub fh: NfsFh4,
    pub rule: &'a ExportRule,
    pub cred: Cred,
    /// The session, with the caller's (squashed) credential.
    pub c: Client,
    /// The session with the gateway's own credential (opens).
    pub gw: Client,
    pub gen: u64,
}

impl<'a> Req<'a> {
    /// Refuses a handle before anything goes upstream: not an MDS handle (BADHANDLE), of an
    /// export not configured here or not open to this client's address (STALE, as the MDS
    /// answers a handle of an export the client may not use).
    pub async fn obj(&self, fh: &NfsFh3) -> Result<Obj<'a>, Nfsstat3> {
        let p = crate::fh::parse(fh)?;
        let rule = self.s.exports.by_id(p.export).ok_or(Nfsstat3::Stale)?;
        if !(rule.admits)(self.peer) {
            return Err(Nfsstat3::Stale);
        }
        // knfsd answers a flavor the export does not list with NFS3ERR_ACCES (its
        // nfserr_wrongsec has no v3 code); NLM is let through (`any_flavor`).
        if !self.any_flavor && !rule.allows(self.cred.flavor) {
            tracing::debug!(peer = %self.peer, flavor = self.cred.flavor, export = rule.path, "flavor not allowed by the export");
            return Err(Nfsstat3::Acces);
        }
        let cred = self.cred.under(rule);
        let (gw, gen) = self.s.up.get().await?;
        Ok(Obj {
            fh: p.v4,
            rule,
            c: gw.with_auth(cred.auth()),
            gw,
            cred,
            gen,
        })
    }

    /// The status for a failure upstream; a lost session is dropped (and the verifier moved)
    /// so the client's retry goes through a new one.
    pub async fn fail(&self, o: &Obj<'_>, e: client::Error) -> Nfsstat3 {
        if self.s.up.failed(o.gen, &e).await {
            self.s.session_lost();
        }
        tracing::debug!("upstream: {e}");
        status_of(&e)
    }

    /// Sends `ops` as the caller.
    pub async fn run(&self, o: &Obj<'_>, ops: CompoundBuilder) -> Result<Vec<NfsResop4>, Nfsstat3> {
        match o.c.compound(ops).await {
            Ok(r) => Ok(r),
            Err(e) => Err(self.fail(o, e).await),
        }
    }

    /// Attributes as v3 clients must see them: a file the gateway is writing through a
    /// layout is at least as long as what it wrote (the MDS learns the size at LAYOUTCOMMIT).
    pub fn fix(&self, fh: &NfsFh4, mut a: FileAttrs) -> FileAttrs {
        if let Some(e) = self.s.opens.peek(fh) {
            let p = e.pending_end.load(std::sync::atomic::Ordering::SeqCst);
            if let Some(sz) = a.size.as_mut() {
                if p > *sz {
                    *sz = p;
                }
            }
        }
        a
    }
}

/// Refuses changes on a read-only export.
pub fn writable(o: &Obj<'_>) -> Result<(), Nfsstat3> {
    if o.rule.read_only {
        Err(Nfsstat3::Rofs)
    } else {
        Ok(())
    }
}

/// Every GETATTR result of a reply, in order.
pub fn all_attrs(res: &[NfsResop4]) -> Vec<FileAttrs> {
    res.iter()
        .filter_map(|r| match r {
            NfsResop4::Getattr(GetattrRes::Ok(ok)) => FileAttrs::decode(&ok.obj_attributes).ok(),
            _ => None,
        })
        .collect()
}

/// The last GETFH of a reply.
pub fn last_fh(res: &[NfsResop4]) -> Option<NfsFh4> {
    res.iter().rev().find_map(|r| match r {
        NfsResop4::Getfh(GetfhRes::Ok(ok)) => Some(ok.object.clone()),
        _ => None,
    })
}

pub fn getattr_op(bits: &[u32]) -> NfsArgop4 {
    NfsArgop4::Getattr(GetattrArgs {
        attr_request: Bitmap::from_bits(bits).to_vec(),
    })
}

/// A v3 file name as an NFSv4 component (the MDS checks it: empty, "/", NUL get errors).
pub fn component(name: &proto::xdr::Opaque) -> proto::xdr::Opaque {
    name.clone()
}

pub async fn dispatch(s: &Arc<Shared>, peer: IpAddr, cred: Cred, call: &Call) -> Option<Writer> {
    let args = match crate::call_args(call, Nfs3Args::decode) {
        Ok(a) => a,
        Err(reply) => return reply,
    };
    let q = Req {
        s,
        peer,
        cred,
        any_flavor: false,
    };
    let res = match args {
        Nfs3Args::Null => Nfs3Res::Null,
        Nfs3Args::Getattr(a) => Nfs3Res::Getattr(attr::getattr(&q, a).await),
        Nfs3Args::Setattr(a) => Nfs3Res::Setattr(attr::setattr(&q, a).await),
        Nfs3Args::Lookup(a) => Nfs3Res::Lookup(dir::lookup(&q, a).await),
        Nfs3Args::Access(a) => Nfs3Res::Access(attr::access(&q, a).await),
        Nfs3Args::Readlink(a) => Nfs3Res::Readlink(attr::readlink(&q, a).await),
        Nfs3Args::Read(a) => Nfs3Res::Read(io::read(&q, a).await),
        Nfs3Args::Write(a) => Nfs3Res::Write(io::write(&q, a).await),
        Nfs3Args::Create(a) => Nfs3Res::Create(dir::create(&q, a).await),
        Nfs3Args::Mkdir(a) => Nfs3Res::Mkdir(dir::mkdir(&q, a).await),
        Nfs3Args::Symlink(a) => Nfs3Res::Symlink(dir::symlink(&q, a).await),
        Nfs3Args::Mknod(a) => Nfs3Res::Mknod(dir::mknod(&q, a).await),
        Nfs3Args::Remove(a) => Nfs3Res::Remove(dir::remove(&q, a, false).await),
        Nfs3Args::Rmdir(a) => Nfs3Res::Rmdir(dir::remove(&q, a, true).await),
        Nfs3Args::Rename(a) => Nfs3Res::Rename(dir::rename(&q, a).await),
        Nfs3Args::Link(a) => Nfs3Res::Link(dir::link(&q, a).await),
        Nfs3Args::Readdir(a) => Nfs3Res::Readdir(readdir::readdir(&q, a).await),
        Nfs3Args::Readdirplus(a) => Nfs3Res::Readdirplus(readdir::readdirplus(&q, a).await),
        Nfs3Args::Fsstat(a) => Nfs3Res::Fsstat(fs::fsstat(&q, a).await),
        Nfs3Args::Fsinfo(a) => Nfs3Res::Fsinfo(fs::fsinfo(&q, a).await),
        Nfs3Args::Pathconf(a) => Nfs3Res::Pathconf(fs::pathconf(&q, a).await),
        Nfs3Args::Commit(a) => Nfs3Res::Commit(io::commit(&q, a).await),
    };
    let mut w = accepted_reply(call.xid, &Auth::None, AcceptStat::Success);
    res.encode(&mut w);
    Some(w)
}
