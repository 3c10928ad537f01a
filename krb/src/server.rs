//! The server side: `GssLayer` wraps any `proto::rpc::CallHandler` and speaks RPCSEC_GSS in
//! front of it. Calls of other flavors pass through untouched (the handler decides whether
//! AUTH_SYS is acceptable where they land); RPCSEC_GSS calls are verified, unwrapped and
//! handed on with `Call::gss` set, and their replies signed (and for krb5i/krb5p protected)
//! on the way out. So the MDS, the data servers and any later RPC server get the same code.
//!
//! What every RPCSEC_GSS DATA call goes through, in this order (RFC 2203 §5.3.3):
//! 1. the context named by the credential's handle must exist and be within its lifetime,
//!    else AUTH_ERROR RPCSEC_GSS_CREDPROBLEM (the client makes a new context);
//! 2. the verifier must be a MIC, under that context, of the header from the xid through the
//!    credential, else RPCSEC_GSS_CREDPROBLEM: a call whose MIC was never checked is how a Go
//!    NFS server once let clients through unauthenticated, so there is no path around it;
//! 3. the sequence number must be new and within the window, else the call is dropped with
//!    no reply (a replay, or a retransmission the client has already re-signed);
//! 4. krb5i: the arguments' MIC must verify and carry the same sequence number; krb5p: the
//!    arguments must unwrap, sealed, with the same sequence number; else GARBAGE_ARGS.
use crate::contexts::{Context, Contexts, Established};
use crate::identity::IdentityConfig;
use crate::window::WINDOW;
use crate::KrbError;
use libgssapi::context::{SecurityContext, ServerCtx};
use libgssapi::credential::{Cred, CredUsage};
use libgssapi::oid::{OidSet, GSS_MECH_KRB5};
use proto::rpc::gss::{
    decode_init_arg, decode_integ, decode_priv, split_seq, GssCaller, GssCred, GssInitRes, GssProc,
    GssService, MAXSEQ,
};
use proto::rpc::{
    accepted_reply, denied_auth_reply, AcceptStat, Auth, AuthStat, Call, CallHandler, Connection,
    RPCSEC_GSS,
};
use proto::xdr::Writer;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// GSS major status for a context that needs another round trip.
const GSS_S_CONTINUE_NEEDED: u32 = 1;
/// GSS major status "failure", for a context refused after it was made (no identity).
const GSS_S_FAILURE: u32 = 13 << 16;

#[derive(Debug, Clone)]
pub struct AcceptorConfig {
    /// Contexts kept at once; past it the least recently used is dropped (its client gets
    /// RPCSEC_GSS_CREDPROBLEM on its next call and makes a new one). About 2 KiB each.
    pub max_contexts: usize,
    /// Contexts being established (multi-round-trip mechanisms), same rule.
    pub max_pending: usize,
    /// A context lives as long as the client's ticket, at most this.
    pub max_lifetime: Duration,
    /// Largest protected body (wrapped arguments or results) handled.
    pub max_body: usize,
    pub identity: IdentityConfig,
    /// The acceptor principal (e.g. `nfs/server.example.com@REALM`); None accepts any
    /// principal in the keytab.
    pub principal: Option<String>,
}

impl Default for AcceptorConfig {
    fn default() -> Self {
        AcceptorConfig {
            max_contexts: 4096,
            max_pending: 256,
            max_lifetime: Duration::from_secs(24 * 3600),
            max_body: (1 << 20) + (64 << 10),
            identity: IdentityConfig::default(),
            principal: None,
        }
    }
}

/// What happened to RPCSEC_GSS calls, for tests and operators.
#[derive(Debug, Default)]
pub struct Counters {
    pub contexts_made: AtomicU64,
    pub contexts_refused: AtomicU64,
    pub calls_verified: AtomicU64,
    /// Header MIC did not verify (forged or tampered call).
    pub bad_mic: AtomicU64,
    /// Sequence number seen before or below the window: dropped without a reply.
    pub replays_dropped: AtomicU64,
    /// Unknown or expired context handle.
    pub unknown_context: AtomicU64,
    /// Arguments whose integrity or privacy body did not verify.
    pub bad_body: AtomicU64,
}

/// The shared acceptor state: keytab credentials, contexts, identity rules. One per process
/// is enough (contexts are not tied to a connection or a port).
pub struct Acceptor {
    cfg: AcceptorConfig,
    cred: Option<Cred>,
    contexts: Contexts,
    pub counters: Counters,
}

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acceptor")
            .field("principal", &self.cfg.principal)
            .finish()
    }
}

impl Acceptor {
    /// Checks the keytab now (the default one, `KRB5_KTNAME` or krb5.conf's
    /// `default_keytab_name`, see `crate::use_keytab`), so a server without usable keys stops
    /// at start with one line instead of refusing every client later.
    pub fn new(cfg: AcceptorConfig) -> Result<Arc<Acceptor>, KrbError> {
        let mechs = OidSet::singleton(GSS_MECH_KRB5).map_err(KrbError::gss("krb5 mechanism"))?;
        let name = match &cfg.principal {
            Some(p) => Some(crate::name::principal(p)?),
            None => None,
        };
        let cred = Cred::acquire(name.as_ref(), None, CredUsage::Accept, Some(&mechs))
            .map_err(KrbError::gss("acceptor credentials from the keytab"))?;
        Ok(Arc::new(Acceptor {
            contexts: Contexts::new(cfg.max_contexts, cfg.max_pending),
            cred: Some(cred),
            cfg,
            counters: Counters::default(),
        }))
    }

    pub fn contexts(&self) -> usize {
        self.contexts.len()
    }

    async fn init(&self, call: &Call, cred: &GssCred) -> Writer {
        if call.proc_ != 0 {
            return denied_auth_reply(call.xid, AuthStat::BadCred);
        }
        let token = match decode_init_arg(call.args()) {
            Ok(t) => t.to_vec(),
            Err(_) => return accepted_reply(call.xid, &Auth::None, AcceptStat::GarbageArgs),
        };
        let (handle, ctx) = match cred.proc_ {
            GssProc::Init => (
                crate::contexts::new_handle(),
                ServerCtx::new(self.cred.clone()),
            ),
            _ => match self.contexts.take_pending(&cred.handle) {
                Some(p) => p,
                None => return denied_auth_reply(call.xid, AuthStat::GssCredProblem),
            },
        };
        // Accepting reads the keytab and replay cache: off the async workers.
        let stepped = tokio::task::spawn_blocking(move || {
            let mut ctx = ctx;
            let r = ctx.step(&token, None);
            (ctx, r)
        })
        .await;
        let Ok((ctx, stepped)) = stepped else {
            return accepted_reply(call.xid, &Auth::None, AcceptStat::SystemErr);
        };
        let mut res = GssInitRes::default();
        match stepped {
            Err(e) => {
                tracing::info!(peer_xid = call.xid, "RPCSEC_GSS context refused: {e}");
                self.counters
                    .contexts_refused
                    .fetch_add(1, Ordering::Relaxed);
                res.major = e.major.bits();
                res.minor = e.minor;
                init_reply(call.xid, &Auth::None, &res)
            }
            Ok(out) if !ctx.is_complete() => {
                res.handle = handle.to_vec();
                res.major = GSS_S_CONTINUE_NEEDED;
                res.token = out.map(|b| b.to_vec()).unwrap_or_default();
                self.contexts.put_pending(handle, ctx);
                init_reply(call.xid, &Auth::None, &res)
            }
            Ok(out) => {
                res.token = out.map(|b| b.to_vec()).unwrap_or_default();
                let made = Established::new(ctx, &self.cfg);
                match made {
                    Ok(est) => {
                        let verf = match est.mic_of_u32(WINDOW) {
                            Ok(v) => v,
                            Err(_) => {
                                return accepted_reply(call.xid, &Auth::None, AcceptStat::SystemErr)
                            }
                        };
                        tracing::debug!(
                            principal = %est.caller.principal,
                            uid = est.caller.uid,
                            "RPCSEC_GSS context made"
                        );
                        self.contexts.insert(handle, est);
                        self.counters.contexts_made.fetch_add(1, Ordering::Relaxed);
                        res.handle = handle.to_vec();
                        res.seq_window = WINDOW;
                        init_reply(call.xid, &verf, &res)
                    }
                    Err(e) => {
                        tracing::info!("RPCSEC_GSS context refused: {e}");
                        self.counters
                            .contexts_refused
                            .fetch_add(1, Ordering::Relaxed);
                        res.major = GSS_S_FAILURE;
                        res.token.clear();
                        init_reply(call.xid, &Auth::None, &res)
                    }
                }
            }
        }
    }

    /// Steps 1 to 3 of the module comment; `Err` carries the reply (None: drop the call).
    fn verify_header(&self, call: &Call, cred: &GssCred) -> Result<Arc<Context>, Option<Writer>> {
        let Some(ctx) = self.contexts.get(&cred.handle) else {
            self.counters
                .unknown_context
                .fetch_add(1, Ordering::Relaxed);
            return Err(Some(denied_auth_reply(call.xid, AuthStat::GssCredProblem)));
        };
        if cred.seq_num >= MAXSEQ {
            return Err(Some(denied_auth_reply(call.xid, AuthStat::GssCtxProblem)));
        }
        let mic = match &call.verf {
            Auth::Other { flavor, body } if *flavor == RPCSEC_GSS => body,
            _ => return Err(Some(denied_auth_reply(call.xid, AuthStat::BadVerf))),
        };
        if ctx.verify_mic(call.header_through_cred(), mic).is_err() {
            self.counters.bad_mic.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(xid = call.xid, "RPCSEC_GSS header MIC does not verify");
            return Err(Some(denied_auth_reply(call.xid, AuthStat::GssCredProblem)));
        }
        if ctx.expired() {
            self.contexts.remove(&cred.handle);
            self.counters
                .unknown_context
                .fetch_add(1, Ordering::Relaxed);
            return Err(Some(denied_auth_reply(call.xid, AuthStat::GssCredProblem)));
        }
        if !ctx.accept_seq(cred.seq_num) {
            self.counters
                .replays_dropped
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                xid = call.xid,
                seq = cred.seq_num,
                "RPCSEC_GSS replay dropped"
            );
            return Err(None);
        }
        self.contexts.touch(&ctx);
        Ok(ctx)
    }

    /// Step 4: the arguments in the clear, or None if their protection does not verify.
    fn unwrap_args(&self, ctx: &Context, cred: &GssCred, args: &[u8]) -> Option<Vec<u8>> {
        let max = self.cfg.max_body;
        let body = match cred.service {
            GssService::None => return Some(args.to_vec()),
            GssService::Integrity => {
                let (data, mic) = decode_integ(args, max).ok()?;
                ctx.verify_mic(data, mic).ok()?;
                data.to_vec()
            }
            GssService::Privacy => {
                let tok = decode_priv(args, max).ok()?;
                ctx.unwrap_sealed(tok).ok()?
            }
        };
        let (seq, rest) = split_seq(&body).ok()?;
        (seq == cred.seq_num).then(|| rest.to_vec())
    }
}

fn init_reply(xid: u32, verf: &Auth, res: &GssInitRes) -> Writer {
    let mut w = accepted_reply(xid, verf, AcceptStat::Success);
    res.encode(&mut w);
    w
}

/// Puts RPCSEC_GSS in front of `inner`.
pub struct GssLayer<H> {
    inner: Arc<H>,
    acceptor: Arc<Acceptor>,
}

impl<H> GssLayer<H> {
    pub fn new(inner: Arc<H>, acceptor: Arc<Acceptor>) -> Self {
        GssLayer { inner, acceptor }
    }
}

impl<H: CallHandler> CallHandler for GssLayer<H> {
    /// Before verification, as the layer's caller sees it: what the service notes must not
    /// trust the call (the MDS's only check its file handles).
    fn arrived(&self, call: &Call) -> Option<proto::rpc::Arrival> {
        self.inner.arrived(call)
    }

    async fn handle(&self, conn: Connection, mut call: Call) -> Option<Writer> {
        let cred = match &call.cred {
            Auth::Other { flavor, body } if *flavor == RPCSEC_GSS => GssCred::decode(body),
            _ => return self.inner.handle(conn, call).await,
        };
        let acc = &self.acceptor;
        let cred = match cred {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(xid = call.xid, "bad RPCSEC_GSS credential: {e}");
                return Some(denied_auth_reply(call.xid, AuthStat::BadCred));
            }
        };
        match cred.proc_ {
            GssProc::Init | GssProc::ContinueInit => return Some(acc.init(&call, &cred).await),
            GssProc::Data | GssProc::Destroy => {}
        }
        let ctx = match acc.verify_header(&call, &cred) {
            Ok(c) => c,
            Err(reply) => return reply,
        };
        let Some(args) = acc.unwrap_args(&ctx, &cred, call.args()) else {
            acc.counters.bad_body.fetch_add(1, Ordering::Relaxed);
            // RFC 2203 §5.3.3.4.2: GARBAGE_ARGS, under the context's verifier.
            let w = accepted_reply(call.xid, &Auth::None, AcceptStat::GarbageArgs);
            return ctx.protect_reply(w, cred.seq_num, cred.service).ok();
        };
        acc.counters.calls_verified.fetch_add(1, Ordering::Relaxed);
        if cred.proc_ == GssProc::Destroy {
            // Answered under the context, which goes with this call.
            let w = accepted_reply(call.xid, &Auth::None, AcceptStat::Success);
            let reply = ctx.protect_reply(w, cred.seq_num, cred.service).ok();
            acc.contexts.remove(&cred.handle);
            return reply;
        }
        call.set_args(&args);
        call.gss = Some(GssCaller {
            service: cred.service,
            principal: ctx.caller.principal.clone(),
            uid: ctx.caller.uid,
            gid: ctx.caller.gid,
            gids: ctx.caller.gids.clone(),
        });
        let seq = cred.seq_num;
        let reply = self.inner.handle(conn, call).await?;
        match ctx.protect_reply(reply, seq, cred.service) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!("cannot protect an RPCSEC_GSS reply: {e}");
                None
            }
        }
    }
}
