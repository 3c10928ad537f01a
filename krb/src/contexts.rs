//! Established contexts (bounded in number and lifetime) and what is done under one: MICs,
//! unwrapping, and protecting replies.
use crate::server::AcceptorConfig;
use crate::window::SeqWindow;
use crate::KrbError;
use libgssapi::context::{SecurityContext, ServerCtx};
use proto::rpc::gss::GssService;
use proto::rpc::{Auth, RPCSEC_GSS};
use proto::xdr::Writer;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub type Handle = [u8; 16];

pub fn new_handle() -> Handle {
    rand::random()
}

/// A logical clock for least-recently-used order: a wall clock in ms ties when a context is
/// made and used within one millisecond (loopback KDC), and then eviction picks at random.
fn tick() -> u64 {
    static CLOCK: AtomicU64 = AtomicU64::new(0);
    CLOCK.fetch_add(1, Ordering::Relaxed)
}

/// Who a context authenticated, mapped to local ids once, when it was made.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Arc<str>,
    pub uid: u32,
    pub gid: u32,
    pub gids: Arc<[u32]>,
}

/// An established context.
pub struct Context {
    /// MIT's contexts may not be used from two threads at once.
    gss: Mutex<ServerCtx>,
    window: Mutex<SeqWindow>,
    pub caller: Caller,
    expires: Instant,
    last_used: AtomicU64,
}

/// A context made and mapped, not yet in the table.
pub type Established = Context;

/// Whether a GSS status carries only supplementary information (a token seen before or out
/// of order, by the mechanism's own replay detection when the client asked for it): the
/// token itself verified, and RPCSEC_GSS does its own replay detection with `SeqWindow`.
fn only_supplementary(e: &libgssapi::error::Error) -> bool {
    e.major.bits() & 0xffff_0000 == 0
}

impl Context {
    pub fn new(ctx: ServerCtx, cfg: &AcceptorConfig) -> Result<Context, KrbError> {
        let name = ctx
            .source_name()
            .map_err(KrbError::gss("the client's name"))?;
        let principal = name.to_string();
        let local = name
            .local_name(None)
            .ok()
            .and_then(|b| String::from_utf8(b.to_vec()).ok());
        let id = cfg
            .identity
            .map(&principal, local.as_deref())
            .ok_or_else(|| KrbError::NoIdentity(principal.clone()))?;
        let life = ctx
            .lifetime()
            .unwrap_or(cfg.max_lifetime)
            .min(cfg.max_lifetime);
        Ok(Context {
            gss: Mutex::new(ctx),
            window: Mutex::new(SeqWindow::new()),
            caller: Caller {
                principal: principal.into(),
                uid: id.uid,
                gid: id.gid,
                gids: id.gids.into(),
            },
            expires: Instant::now() + life,
            last_used: AtomicU64::new(tick()),
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut ServerCtx) -> Result<T, libgssapi::error::Error>,
    ) -> Result<T, KrbError> {
        let mut g = self.gss.lock().map_err(|_| KrbError::Poisoned)?;
        f(&mut g).map_err(KrbError::gss("context operation"))
    }

    pub fn expired(&self) -> bool {
        Instant::now() >= self.expires
    }

    pub fn accept_seq(&self, seq: u32) -> bool {
        self.window
            .lock()
            .map(|mut w| w.accept(seq))
            .unwrap_or(false)
    }

    pub fn verify_mic(&self, msg: &[u8], mic: &[u8]) -> Result<(), KrbError> {
        self.with(|c| match c.verify_mic(msg, mic) {
            Err(e) if only_supplementary(&e) => Ok(()),
            r => r,
        })
    }

    pub fn mic(&self, msg: &[u8]) -> Result<Vec<u8>, KrbError> {
        self.with(|c| c.get_mic(msg).map(|b| b.to_vec()))
    }

    pub fn mic_of_u32(&self, v: u32) -> Result<Auth, KrbError> {
        Ok(Auth::Other {
            flavor: RPCSEC_GSS,
            body: self.mic(&v.to_be_bytes())?,
        })
    }

    /// Unwraps a krb5p body, refusing a token that was not encrypted: a client that asked for
    /// privacy must not be answered for a body anyone on the path could read.
    pub fn unwrap_sealed(&self, tok: &[u8]) -> Result<Vec<u8>, KrbError> {
        if !is_sealed(tok) {
            return Err(KrbError::NotSealed);
        }
        self.with(|c| c.unwrap(tok).map(|b| b.to_vec()))
    }

    pub fn wrap(&self, plain: &[u8]) -> Result<Vec<u8>, KrbError> {
        self.with(|c| c.wrap(true, plain).map(|b| b.to_vec()))
    }

    /// Rewrites a reply a handler built (with an AUTH_NONE verifier, as every handler does):
    /// the verifier becomes the MIC of `seq`; for an accepted, successful reply under krb5i
    /// the results become `rpc_gss_integ_data`, under krb5p `rpc_gss_priv_data`. Denied
    /// replies carry no verifier and pass as they are. Under krb5 READ payloads stay shared.
    pub fn protect_reply(
        &self,
        reply: Writer,
        seq: u32,
        service: GssService,
    ) -> Result<Writer, KrbError> {
        let verf = self.mic(&seq.to_be_bytes())?;
        protect(reply, &verf, seq, service, |data| match service {
            GssService::Integrity => {
                let mic = self.mic(data)?;
                let mut w = Writer::with_capacity(data.len() + mic.len() + 8);
                w.opaque(data);
                w.opaque(&mic);
                Ok(w.buf)
            }
            _ => {
                let tok = self.wrap(data)?;
                let mut w = Writer::with_capacity(tok.len() + 4);
                w.opaque(&tok);
                Ok(w.buf)
            }
        })
    }
}

/// RFC 4121 §4.2.6.2 wrap tokens start 05 04, then a flags byte whose bit 1 is Sealed. The
/// Linux kernel and MIT emit only these (the RFC 1964 formats went with DES and RC4).
pub fn is_sealed(tok: &[u8]) -> bool {
    matches!(tok, [0x05, 0x04, flags, ..] if flags & 0x02 != 0)
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// The rewrite of `protect_reply`, with the body's protection passed in (so it is testable
/// without a context). Offsets are those of `proto::rpc::accepted_reply`'s output: a 4-byte
/// record-mark placeholder, then xid, REPLY, reply_stat.
pub fn protect(
    reply: Writer,
    verf: &[u8],
    seq: u32,
    service: GssService,
    body: impl FnOnce(&[u8]) -> Result<Vec<u8>, KrbError>,
) -> Result<Writer, KrbError> {
    const MSG_ACCEPTED: u32 = 0;
    let (buf, shared) = reply.into_parts();
    if u32_at(&buf, 12) != Some(MSG_ACCEPTED) {
        return Ok(Writer::from_parts(buf, shared));
    }
    let verf_len = u32_at(&buf, 20).ok_or(KrbError::BadReply)? as usize;
    let stat_at = 24 + verf_len.div_ceil(4) * 4;
    let stat = u32_at(&buf, stat_at).ok_or(KrbError::BadReply)?;
    let results_at = stat_at + 4;
    let mut head = Writer::with_capacity(results_at + verf.len() + 16);
    head.buf.extend_from_slice(&buf[..16]);
    Auth::Other {
        flavor: RPCSEC_GSS,
        body: verf.to_vec(),
    }
    .encode(&mut head);
    head.u32(stat);
    if stat != 0 || service == GssService::None {
        // Results (if any) as they are; shared payloads move with the bytes before them.
        let delta = head.buf.len() as isize - results_at as isize;
        head.buf.extend_from_slice(&buf[results_at..]);
        let shared = shared
            .into_iter()
            .map(|(at, b)| ((at as isize + delta) as usize, b))
            .collect();
        return Ok(Writer::from_parts(head.buf, shared));
    }
    let results = Writer::from_parts(buf, shared).copy_from(results_at);
    let mut data = Vec::with_capacity(results.len() + 4);
    data.extend_from_slice(&seq.to_be_bytes());
    data.extend_from_slice(&results);
    let protected = body(&data)?;
    head.buf.extend_from_slice(&protected);
    Ok(head)
}

/// The table of contexts, bounded: past `max` the least recently used goes.
pub struct Contexts {
    max: usize,
    max_pending: usize,
    live: Mutex<HashMap<Handle, Arc<Context>>>,
    /// Contexts still being established, oldest dropped first past `max_pending`.
    pending: Mutex<Vec<(Handle, ServerCtx)>>,
}

impl Contexts {
    pub fn new(max: usize, max_pending: usize) -> Self {
        Contexts {
            max: max.max(1),
            max_pending: max_pending.max(1),
            live: Mutex::new(HashMap::new()),
            pending: Mutex::new(Vec::new()),
        }
    }

    pub fn len(&self) -> usize {
        self.live.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn get(&self, handle: &[u8]) -> Option<Arc<Context>> {
        let h: Handle = handle.try_into().ok()?;
        self.live.lock().ok()?.get(&h).cloned()
    }

    pub fn touch(&self, ctx: &Context) {
        ctx.last_used.store(tick(), Ordering::Relaxed);
    }

    pub fn insert(&self, handle: Handle, ctx: Context) {
        let Ok(mut m) = self.live.lock() else { return };
        // Expired ones first, then the least recently used; a full scan, only when full.
        if m.len() >= self.max {
            m.retain(|_, c| !c.expired());
        }
        while m.len() >= self.max {
            let Some(oldest) = m
                .iter()
                .min_by_key(|(_, c)| c.last_used.load(Ordering::Relaxed))
                .map(|(h, _)| *h)
            else {
                break;
            };
            m.remove(&oldest);
        }
        m.insert(handle, Arc::new(ctx));
    }

    pub fn remove(&self, handle: &[u8]) {
        if let (Ok(h), Ok(mut m)) = (<Handle>::try_from(handle), self.live.lock()) {
            m.remove(&h);
        }
    }

    pub fn put_pending(&self, handle: Handle, ctx: ServerCtx) {
        if let Ok(mut p) = self.pending.lock() {
            if p.len() >= self.max_pending {
                p.remove(0);
            }
            p.push((handle, ctx));
        }
    }

    pub fn take_pending(&self, handle: &[u8]) -> Option<(Handle, ServerCtx)> {
        let mut p = self.pending.lock().ok()?;
        let i = p.iter().position(|(h, _)| h[..] == *handle)?;
        Some(p.remove(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::rpc::{accepted_reply, AcceptStat};

    fn reply_with_payload() -> Writer {
        let mut w = accepted_reply(9, &Auth::None, AcceptStat::Success);
        w.u32(0xabcd);
        w.opaque_shared(bytes::Bytes::from(vec![7u8; 8192]));
        w.u32(0x1234);
        w
    }

    #[test]
    fn krb5_replies_keep_their_payload_and_get_the_verifier() {
        let plain = reply_with_payload();
        let want_results = plain.copy_from(28);
        let w = protect(plain, &[1; 28], 5, GssService::None, |_| unreachable!()).unwrap();
        let all = w.copy_from(0);
        assert_eq!(u32_at(&all, 16), Some(RPCSEC_GSS));
        assert_eq!(u32_at(&all, 20), Some(28));
        assert_eq!(&all[24..52], &[1; 28]);
        assert_eq!(u32_at(&all, 52), Some(0));
        assert_eq!(&all[56..], &want_results[..]);
    }

    #[test]
    fn krb5i_and_krb5p_replies_protect_the_sequence_number_and_results() {
        let plain = reply_with_payload();
        let want_results = plain.copy_from(28);
        let mut seen = Vec::new();
        let w = protect(plain, &[2; 16], 77, GssService::Privacy, |d| {
            seen = d.to_vec();
            Ok(vec![0xee; 8])
        })
        .unwrap();
        assert_eq!(&seen[..4], &77u32.to_be_bytes());
        assert_eq!(&seen[4..], &want_results[..]);
        let all = w.copy_from(0);
        assert_eq!(&all[all.len() - 8..], &[0xee; 8]);
        assert_eq!(all.len(), 24 + 16 + 4 + 8);
    }

    #[test]
    fn denied_and_failed_replies_are_not_wrapped() {
        let d = proto::rpc::denied_auth_reply(3, proto::rpc::AuthStat::TooWeak);
        let before = d.buf.clone();
        let w = protect(d, &[1; 28], 1, GssService::Privacy, |_| unreachable!()).unwrap();
        assert_eq!(w.buf, before);
        let g = accepted_reply(3, &Auth::None, AcceptStat::GarbageArgs);
        let w = protect(g, &[1; 28], 1, GssService::Privacy, |_| unreachable!()).unwrap();
        assert_eq!(u32_at(&w.buf, 52), Some(4));
        assert_eq!(w.buf.len(), 56);
    }

    #[test]
    fn only_sealed_wrap_tokens_pass_for_privacy() {
        assert!(is_sealed(&[0x05, 0x04, 0x02, 0xff]));
        assert!(is_sealed(&[0x05, 0x04, 0x07, 0xff]));
        assert!(!is_sealed(&[0x05, 0x04, 0x01, 0xff]));
        assert!(!is_sealed(&[0x04, 0x04, 0x02]));
        assert!(!is_sealed(&[]));
    }
}
