//! The client side of RPCSEC_GSS, for the Rust client library: one context per server, made
//! from the caller's ticket cache (`KRB5CCNAME` or the default) on first use and again when
//! the server says it no longer knows it; every call signed (and for krb5i/krb5p its
//! arguments protected), every reply's verifier and results checked.
use crate::contexts::is_sealed;
use libgssapi::context::{ClientCtx, CtxFlags, SecurityContext};
use libgssapi::oid::GSS_MECH_KRB5;
use proto::rpc::gss::{
    decode_integ, decode_priv, split_seq, GssCred, GssInitRes, GssProc, GssService, MAXSEQ,
};
use proto::rpc::{
    encode_call, AcceptStat, Auth, AuthStat, Connection, Reply, ReplyStatus, RpcError, RPCSEC_GSS,
};
use proto::xdr::Writer;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum GssClientError {
    #[error("GSS-API: {0}")]
    Gss(String),
    #[error("rpc: {0}")]
    Rpc(#[from] RpcError),
    #[error("the server refused the context (GSS major {major:#x}, minor {minor})")]
    Refused { major: u32, minor: u32 },
    #[error("the server's verifier does not verify")]
    BadVerifier,
    #[error("the server's protected results do not verify")]
    BadResults,
    #[error("call not accepted: {0:?}")]
    NotAccepted(ReplyStatus),
}

fn gss_err(what: &str) -> impl Fn(libgssapi::error::Error) -> GssClientError + '_ {
    move |e| GssClientError::Gss(format!("{what}: {e}"))
}

struct Ctx {
    gss: Mutex<ClientCtx>,
    handle: Vec<u8>,
    next_seq: AtomicU32,
}

impl Ctx {
    fn with<T>(
        &self,
        f: impl FnOnce(&mut ClientCtx) -> Result<T, libgssapi::error::Error>,
    ) -> Result<T, GssClientError> {
        let mut g = self
            .gss
            .lock()
            .map_err(|_| GssClientError::Gss("poisoned".into()))?;
        f(&mut g).map_err(gss_err("context"))
    }
}

/// What `finish` needs to check a reply to a call `prepare` built.
pub struct Ticket {
    pub seq: u32,
    ctx: Arc<Ctx>,
}

pub struct GssClient {
    service_name: String,
    host: String,
    service: GssService,
    ctx: tokio::sync::Mutex<Option<Arc<Ctx>>>,
}

impl std::fmt::Debug for GssClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "GssClient({}@{}, {:?})",
            self.service_name, self.host, self.service
        )
    }
}

impl GssClient {
    /// Calls to the server whose principal is `service/host` (`nfs/host`, as Linux names an
    /// NFS server), with `service` protection.
    pub fn new(service_name: &str, host: &str, service: GssService) -> GssClient {
        GssClient {
            service_name: service_name.to_string(),
            host: host.to_string(),
            service,
            ctx: tokio::sync::Mutex::new(None),
        }
    }

    pub fn service(&self) -> GssService {
        self.service
    }

    async fn context(
        &self,
        conn: &Connection,
        prog: u32,
        vers: u32,
        timeout: Duration,
    ) -> Result<Arc<Ctx>, GssClientError> {
        let mut g = self.ctx.lock().await;
        if let Some(c) = g.as_ref() {
            if c.next_seq.load(Ordering::Relaxed) < MAXSEQ / 2 {
                return Ok(c.clone());
            }
        }
        let c = Arc::new(self.establish(conn, prog, vers, timeout).await?);
        *g = Some(c.clone());
        Ok(c)
    }

    async fn forget(&self, stale: &Arc<Ctx>) {
        let mut g = self.ctx.lock().await;
        if g.as_ref().is_some_and(|c| Arc::ptr_eq(c, stale)) {
            *g = None;
        }
    }

    async fn establish(
        &self,
        conn: &Connection,
        prog: u32,
        vers: u32,
        timeout: Duration,
    ) -> Result<Ctx, GssClientError> {
        let target = crate::name::service(&self.service_name, &self.host)
            .map_err(|e| GssClientError::Gss(e.to_string()))?;
        let mut ctx = ClientCtx::new(
            None,
            target,
            CtxFlags::GSS_C_MUTUAL_FLAG,
            Some(GSS_MECH_KRB5),
        );
        let mut server_tok: Option<Vec<u8>> = None;
        let mut handle = Vec::new();
        loop {
            // Getting a service ticket may ask the KDC: off the async workers.
            let (c, stepped) = tokio::task::spawn_blocking(move || {
                let r = ctx
                    .step(server_tok.as_deref(), None)
                    .map(|t| t.map(|b| b.to_vec()));
                (ctx, r)
            })
            .await
            .map_err(|e| GssClientError::Gss(e.to_string()))?;
            ctx = c;
            let Some(tok) = stepped.map_err(gss_err("initiating a context"))? else {
                break;
            };
            let cred = GssCred {
                proc_: if handle.is_empty() {
                    GssProc::Init
                } else {
                    GssProc::ContinueInit
                },
                seq_num: 0,
                service: self.service,
                handle: handle.clone(),
            };
            let auth = Auth::Other {
                flavor: RPCSEC_GSS,
                body: cred.encode(),
            };
            let xid = conn.next_xid();
            let mut w = encode_call(xid, prog, vers, 0, &auth, &Auth::None);
            proto::rpc::gss::encode_init_arg(&mut w, &tok);
            let reply = conn.call_raw(xid, w, timeout).await?;
            accepted(&reply)?;
            let res =
                GssInitRes::decode(reply.body()).map_err(|e| GssClientError::Gss(e.to_string()))?;
            if res.major != 0 && res.major != 1 {
                return Err(GssClientError::Refused {
                    major: res.major,
                    minor: res.minor,
                });
            }
            handle = res.handle;
            if res.major == 0 {
                if !res.token.is_empty() {
                    let t = res.token;
                    let (c, r) = tokio::task::spawn_blocking(move || {
                        let r = ctx.step(Some(&t), None).map(|_| ());
                        (ctx, r)
                    })
                    .await
                    .map_err(|e| GssClientError::Gss(e.to_string()))?;
                    ctx = c;
                    r.map_err(gss_err("completing a context"))?;
                }
                // The server proves it holds the context: a MIC of the window it announces.
                let mic = gss_verf(&reply)?;
                ctx.verify_mic(&res.seq_window.to_be_bytes(), mic)
                    .map_err(|_| GssClientError::BadVerifier)?;
                break;
            }
            server_tok = Some(res.token);
        }
        if !ctx.is_complete() || handle.is_empty() {
            return Err(GssClientError::Gss("context not complete".into()));
        }
        Ok(Ctx {
            gss: Mutex::new(ctx),
            handle,
            next_seq: AtomicU32::new(1),
        })
    }

    /// One call; returns the results in the clear. A context the server forgot (restart,
    /// expiry, eviction) is made again once.
    #[allow(clippy::too_many_arguments)]
    pub async fn call(
        &self,
        conn: &Connection,
        prog: u32,
        vers: u32,
        proc_: u32,
        args: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, GssClientError> {
        for attempt in 0..2 {
            let (xid, w, ticket) = self.prepare(conn, prog, vers, proc_, args, timeout).await?;
            let reply = conn.call_raw(xid, w, timeout).await?;
            if let ReplyStatus::AuthError(e) = reply.status {
                if attempt == 0
                    && (e == AuthStat::GssCredProblem as u32 || e == AuthStat::GssCtxProblem as u32)
                {
                    self.forget(&ticket.ctx).await;
                    continue;
                }
            }
            return self.finish(&ticket, &reply);
        }
        Err(GssClientError::NotAccepted(ReplyStatus::AuthError(
            AuthStat::GssCredProblem as u32,
        )))
    }

    /// The first half of `call`: the record to send (with its xid) and the ticket `finish`
    /// checks the reply against. Separate so a caller can send it its own way.
    #[allow(clippy::too_many_arguments)]
    pub async fn prepare(
        &self,
        conn: &Connection,
        prog: u32,
        vers: u32,
        proc_: u32,
        args: &[u8],
        timeout: Duration,
    ) -> Result<(u32, Writer, Ticket), GssClientError> {
        let ctx = self.context(conn, prog, vers, timeout).await?;
        let seq = ctx.next_seq.fetch_add(1, Ordering::Relaxed);
        let xid = conn.next_xid();
        let w = self.encode(&ctx, GssProc::Data, xid, seq, prog, vers, proc_, args)?;
        Ok((xid, w, Ticket { seq, ctx }))
    }

    /// Checks a reply's verifier and returns its results in the clear.
    pub fn finish(&self, ticket: &Ticket, reply: &Reply) -> Result<Vec<u8>, GssClientError> {
        self.decode(&ticket.ctx, ticket.seq, reply)
    }

    /// Builds the call: credential, the header's MIC as verifier, protected arguments.
    #[allow(clippy::too_many_arguments)]
    fn encode(
        &self,
        ctx: &Ctx,
        gss_proc: GssProc,
        xid: u32,
        seq: u32,
        prog: u32,
        vers: u32,
        proc_: u32,
        args: &[u8],
    ) -> Result<Writer, GssClientError> {
        let cred = GssCred {
            proc_: gss_proc,
            seq_num: seq,
            service: self.service,
            handle: ctx.handle.clone(),
        };
        let auth = Auth::Other {
            flavor: RPCSEC_GSS,
            body: cred.encode(),
        };
        let mut w = encode_call(xid, prog, vers, proc_, &auth, &Auth::None);
        // Drop the AUTH_NONE verifier placeholder; the MIC covers what precedes it.
        let hdr_end = w.buf.len() - 8;
        w.buf.truncate(hdr_end);
        let mic = ctx.with(|c| c.get_mic(&w.buf[4..hdr_end]).map(|b| b.to_vec()))?;
        Auth::Other {
            flavor: RPCSEC_GSS,
            body: mic,
        }
        .encode(&mut w);
        let mut data = Vec::with_capacity(args.len() + 4);
        match self.service {
            GssService::None => w.buf.extend_from_slice(args),
            GssService::Integrity => {
                data.extend_from_slice(&seq.to_be_bytes());
                data.extend_from_slice(args);
                let mic = ctx.with(|c| c.get_mic(&data).map(|b| b.to_vec()))?;
                w.opaque(&data);
                w.opaque(&mic);
            }
            GssService::Privacy => {
                data.extend_from_slice(&seq.to_be_bytes());
                data.extend_from_slice(args);
                let tok = ctx.with(|c| c.wrap(true, &data).map(|b| b.to_vec()))?;
                w.opaque(&tok);
            }
        }
        Ok(w)
    }

    fn decode(&self, ctx: &Ctx, seq: u32, reply: &Reply) -> Result<Vec<u8>, GssClientError> {
        accepted(reply)?;
        let mic = gss_verf(reply)?;
        ctx.with(|c| c.verify_mic(&seq.to_be_bytes(), mic))
            .map_err(|_| GssClientError::BadVerifier)?;
        let max = reply.body().len();
        let data = match self.service {
            GssService::None => return Ok(reply.body().to_vec()),
            GssService::Integrity => {
                let (data, mic) =
                    decode_integ(reply.body(), max).map_err(|_| GssClientError::BadResults)?;
                ctx.with(|c| c.verify_mic(data, mic))
                    .map_err(|_| GssClientError::BadResults)?;
                data.to_vec()
            }
            GssService::Privacy => {
                let tok = decode_priv(reply.body(), max).map_err(|_| GssClientError::BadResults)?;
                if !is_sealed(tok) {
                    return Err(GssClientError::BadResults);
                }
                ctx.with(|c| c.unwrap(tok).map(|b| b.to_vec()))
                    .map_err(|_| GssClientError::BadResults)?
            }
        };
        match split_seq(&data) {
            Ok((s, rest)) if s == seq => Ok(rest.to_vec()),
            _ => Err(GssClientError::BadResults),
        }
    }

    /// Tells the server to drop the context (RPCSEC_GSS_DESTROY); best effort.
    pub async fn destroy(&self, conn: &Connection, prog: u32, vers: u32, timeout: Duration) {
        let Some(ctx) = self.ctx.lock().await.take() else {
            return;
        };
        let seq = ctx.next_seq.fetch_add(1, Ordering::Relaxed);
        let xid = conn.next_xid();
        if let Ok(w) = self.encode(&ctx, GssProc::Destroy, xid, seq, prog, vers, 0, &[]) {
            let _ = conn.call_raw(xid, w, timeout).await;
        }
    }
}

fn accepted(reply: &Reply) -> Result<(), GssClientError> {
    match &reply.status {
        ReplyStatus::Accepted(AcceptStat::Success) => Ok(()),
        other => Err(GssClientError::NotAccepted(other.clone())),
    }
}

fn gss_verf(reply: &Reply) -> Result<&[u8], GssClientError> {
    match &reply.verf {
        Auth::Other { flavor, body } if *flavor == RPCSEC_GSS => Ok(body),
        _ => Err(GssClientError::BadVerifier),
    }
}
