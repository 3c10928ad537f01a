//! RPC call and reply messages (RFC 5531 §9). Incoming messages are parsed with `onc-rpc`;
//! outgoing ones are written straight into an XDR `Writer` so the NFS payload that follows the
//! header is never copied.
use super::auth::Auth;
use super::record::RECORD_HEADER_LEN;
use super::RpcError;
use crate::xdr::Writer;
use onc_rpc::{AcceptedStatus, MessageType, RejectedReply, ReplyBody, RpcMessage};

const CALL: u32 = 0;
const REPLY: u32 = 1;
const MSG_ACCEPTED: u32 = 0;
const MSG_DENIED: u32 = 1;
const RPC_VERSION: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptStat {
    Success,
    ProgUnavail,
    ProgMismatch { low: u32, high: u32 },
    ProcUnavail,
    GarbageArgs,
    SystemErr,
}

/// `auth_stat` values a server may deny a call with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthStat {
    BadCred = 1,
    RejectedCred = 2,
    BadVerf = 3,
    RejectedVerf = 4,
    TooWeak = 5,
    /// RPCSEC_GSS (RFC 2203 §5.3.3.3): no credentials for the user, or a context the server
    /// does not know (any more): the client makes a new one.
    GssCredProblem = 13,
    /// RPCSEC_GSS: a problem with the context (its sequence numbers ran out).
    GssCtxProblem = 14,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyStatus {
    Accepted(AcceptStat),
    RpcMismatch { low: u32, high: u32 },
    AuthError(u32),
}

/// A call received on a connection. The record is kept whole; `args()` borrows from it.
#[derive(Debug)]
pub struct Call {
    pub xid: u32,
    pub prog: u32,
    pub vers: u32,
    pub proc_: u32,
    pub cred: Auth,
    pub verf: Auth,
    /// Who the call authenticated as, when an RPCSEC_GSS layer verified it (never set by
    /// parsing: a handler that sees `Some` knows the header's MIC checked).
    pub gss: Option<super::gss::GssCaller>,
    record: Vec<u8>,
    args_at: usize,
}

impl Call {
    pub fn args(&self) -> &[u8] {
        &self.record[self.args_at..]
    }

    /// The header from the xid through the credential: what an RPCSEC_GSS verifier's MIC
    /// covers (RFC 2203 §5.3.1).
    pub fn header_through_cred(&self) -> &[u8] {
        let b = &self.record[RECORD_HEADER_LEN..self.args_at];
        // xid, type, rpcvers, prog, vers, proc, then the credential's flavor and length;
        // parsing already checked all of it lies before the arguments.
        let len = b
            .get(28..32)
            .map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize)
            .unwrap_or(0);
        let end = (32 + len.div_ceil(4) * 4).min(b.len());
        &b[..end]
    }

    /// Replaces the arguments (an RPCSEC_GSS layer puts the unwrapped ones in).
    pub fn set_args(&mut self, args: &[u8]) {
        self.record.truncate(self.args_at);
        self.record.extend_from_slice(args);
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        crate::bufpool::give(std::mem::take(&mut self.record));
    }
}

#[derive(Debug)]
pub struct Reply {
    pub xid: u32,
    pub status: ReplyStatus,
    /// The server's verifier (AUTH_NONE unless accepted with another, e.g. RPCSEC_GSS's MIC).
    pub verf: Auth,
    record: Vec<u8>,
    body_at: usize,
}

impl Reply {
    /// The procedure's results (empty unless the call was accepted with SUCCESS).
    pub fn body(&self) -> &[u8] {
        &self.record[self.body_at..]
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        crate::bufpool::give(std::mem::take(&mut self.record));
    }
}

#[derive(Debug)]
pub enum Incoming {
    Call(Call),
    Reply(Reply),
    /// Unparseable, but the xid could be read: the peer gets GARBAGE_ARGS (or RPC_MISMATCH).
    Garbage {
        xid: u32,
        bad_version: bool,
    },
}

fn offset_in(record: &[u8], part: &[u8]) -> usize {
    part.as_ptr() as usize - record.as_ptr() as usize
}

/// Parses a record produced by `read_record` (synthetic header included).
pub fn parse_message(record: Vec<u8>) -> Result<Incoming, RpcError> {
    let parsed = match RpcMessage::try_from(record.as_slice()) {
        Ok(m) => m,
        Err(e) => {
            let b = &record[RECORD_HEADER_LEN..];
            if let Some(reply) = auth_error_reply(&record) {
                return Ok(Incoming::Reply(reply));
            }
            if b.len() >= 12 && u32::from_be_bytes([b[4], b[5], b[6], b[7]]) == CALL {
                let xid = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                let vers = u32::from_be_bytes([b[8], b[9], b[10], b[11]]);
                return Ok(Incoming::Garbage {
                    xid,
                    bad_version: vers != RPC_VERSION,
                });
            }
            return Err(RpcError::Malformed(e.to_string()));
        }
    };
    let xid = parsed.xid();
    match parsed.message() {
        MessageType::Call(c) => {
            let args_at = offset_in(&record, c.payload());
            let mut call = Call {
                xid,
                prog: c.program(),
                vers: c.program_version(),
                proc_: c.procedure(),
                cred: Auth::from_flavor(c.auth_credentials()),
                verf: Auth::from_flavor(c.auth_verifier()),
                gss: None,
                args_at,
                record: Vec::new(),
            };
            call.record = record;
            Ok(Incoming::Call(call))
        }
        MessageType::Reply(r) => {
            let verf = match r {
                ReplyBody::Accepted(a) => Auth::from_flavor(a.auth_verifier()),
                ReplyBody::Denied(_) => Auth::None,
            };
            let (status, body_at) = match r {
                ReplyBody::Accepted(a) => match a.status() {
                    AcceptedStatus::Success(p) => (
                        ReplyStatus::Accepted(AcceptStat::Success),
                        offset_in(&record, p),
                    ),
                    AcceptedStatus::ProgramUnavailable => {
                        (ReplyStatus::Accepted(AcceptStat::ProgUnavail), record.len())
                    }
                    AcceptedStatus::ProgramMismatch { low, high } => (
                        ReplyStatus::Accepted(AcceptStat::ProgMismatch {
                            low: *low,
                            high: *high,
                        }),
                        record.len(),
                    ),
                    AcceptedStatus::ProcedureUnavailable => {
                        (ReplyStatus::Accepted(AcceptStat::ProcUnavail), record.len())
                    }
                    AcceptedStatus::GarbageArgs => {
                        (ReplyStatus::Accepted(AcceptStat::GarbageArgs), record.len())
                    }
                    AcceptedStatus::SystemError => {
                        (ReplyStatus::Accepted(AcceptStat::SystemErr), record.len())
                    }
                },
                ReplyBody::Denied(RejectedReply::RpcVersionMismatch { low, high }) => (
                    ReplyStatus::RpcMismatch {
                        low: *low,
                        high: *high,
                    },
                    record.len(),
                ),
                ReplyBody::Denied(RejectedReply::AuthError(e)) => {
                    (ReplyStatus::AuthError(auth_error_code(e)), record.len())
                }
            };
            let mut reply = Reply {
                xid,
                status,
                verf,
                body_at,
                record: Vec::new(),
            };
            reply.record = record;
            Ok(Incoming::Reply(reply))
        }
    }
}

/// A denied reply with an `auth_stat` `onc-rpc` does not know (RPCSEC_GSS's CREDPROBLEM and
/// CTXPROBLEM, RFC 2203 §5.3.3.3): the client must see them to make a new context.
fn auth_error_reply(record: &[u8]) -> Option<Reply> {
    let b = record.get(RECORD_HEADER_LEN..)?;
    let word = |i: usize| {
        b.get(i * 4..i * 4 + 4)
            .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
    };
    const AUTH_ERROR: u32 = 1;
    if word(1)? != REPLY || word(2)? != MSG_DENIED || word(3)? != AUTH_ERROR {
        return None;
    }
    let code = word(4)?;
    Some(Reply {
        xid: word(0)?,
        status: ReplyStatus::AuthError(code),
        verf: Auth::None,
        body_at: record.len(),
        record: record.to_vec(),
    })
}

fn auth_error_code(e: &onc_rpc::AuthError) -> u32 {
    use onc_rpc::AuthError as E;
    match e {
        E::Success => 0,
        E::BadCredentials => 1,
        E::RejectedCredentials => 2,
        E::BadVerifier => 3,
        E::RejectedVerifier => 4,
        E::TooWeak => 5,
        E::InvalidResponseVerifier => 6,
        E::Failed => 7,
    }
}

fn reply_start(xid: u32) -> Writer {
    let mut w = Writer::with_capacity(256);
    w.u32(0); // record header, filled in when sent
    w.u32(xid);
    w.u32(REPLY);
    w
}

/// An accepted reply; for `Success` the caller appends the procedure's results.
pub fn accepted_reply(xid: u32, verf: &Auth, stat: AcceptStat) -> Writer {
    let mut w = reply_start(xid);
    w.u32(MSG_ACCEPTED);
    verf.encode(&mut w);
    match stat {
        AcceptStat::Success => w.u32(0),
        AcceptStat::ProgUnavail => w.u32(1),
        AcceptStat::ProgMismatch { low, high } => {
            w.u32(2);
            w.u32(low);
            w.u32(high);
        }
        AcceptStat::ProcUnavail => w.u32(3),
        AcceptStat::GarbageArgs => w.u32(4),
        AcceptStat::SystemErr => w.u32(5),
    }
    w
}

pub fn denied_auth_reply(xid: u32, stat: AuthStat) -> Writer {
    let mut w = reply_start(xid);
    w.u32(MSG_DENIED);
    w.u32(1); // AUTH_ERROR
    w.u32(stat as u32);
    w
}

pub fn rpc_mismatch_reply(xid: u32) -> Writer {
    let mut w = reply_start(xid);
    w.u32(MSG_DENIED);
    w.u32(0); // RPC_MISMATCH
    w.u32(RPC_VERSION);
    w.u32(RPC_VERSION);
    w
}

/// Starts a call message; the caller appends the procedure's arguments.
pub fn encode_call(xid: u32, prog: u32, vers: u32, proc_: u32, cred: &Auth, verf: &Auth) -> Writer {
    let mut w = Writer::with_capacity(256);
    w.u32(0);
    w.u32(xid);
    w.u32(CALL);
    w.u32(RPC_VERSION);
    w.u32(prog);
    w.u32(vers);
    w.u32(proc_);
    cred.encode(&mut w);
    verf.encode(&mut w);
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::auth::AuthSys;
    use crate::rpc::record::frame;

    #[test]
    fn call_roundtrip_with_auth_sys() {
        let cred = Auth::Sys(AuthSys {
            stamp: 7,
            machine: b"guest".to_vec(),
            uid: 1000,
            gid: 100,
            gids: vec![4, 5],
        });
        let mut w = encode_call(42, 100003, 4, 1, &cred, &Auth::None);
        w.u32(0xdead_beef);
        frame(&mut w.buf);
        match parse_message(w.buf).unwrap() {
            Incoming::Call(c) => {
                assert_eq!((c.xid, c.prog, c.vers, c.proc_), (42, 100003, 4, 1));
                assert_eq!(c.cred, cred);
                assert_eq!(c.args(), &0xdead_beefu32.to_be_bytes());
            }
            other => panic!("expected call, got {other:?}"),
        }
    }

    #[test]
    fn reply_roundtrip() {
        let mut w = accepted_reply(9, &Auth::None, AcceptStat::Success);
        w.u32(5);
        frame(&mut w.buf);
        match parse_message(w.buf).unwrap() {
            Incoming::Reply(r) => {
                assert_eq!(r.xid, 9);
                assert_eq!(r.status, ReplyStatus::Accepted(AcceptStat::Success));
                assert_eq!(r.body(), &5u32.to_be_bytes());
            }
            other => panic!("expected reply, got {other:?}"),
        }
        let mut w = accepted_reply(
            10,
            &Auth::None,
            AcceptStat::ProgMismatch { low: 4, high: 4 },
        );
        frame(&mut w.buf);
        assert!(matches!(
            parse_message(w.buf).unwrap(),
            Incoming::Reply(Reply {
                status: ReplyStatus::Accepted(AcceptStat::ProgMismatch { low: 4, high: 4 }),
                ..
            })
        ));
    }

    #[test]
    fn rpcsec_gss_auth_errors_reach_the_caller() {
        for stat in [
            AuthStat::GssCredProblem,
            AuthStat::GssCtxProblem,
            AuthStat::TooWeak,
        ] {
            let mut w = denied_auth_reply(5, stat);
            frame(&mut w.buf);
            match parse_message(w.buf).unwrap() {
                Incoming::Reply(r) => {
                    assert_eq!(r.xid, 5);
                    assert_eq!(r.status, ReplyStatus::AuthError(stat as u32));
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn garbage_call_keeps_its_xid() {
        let mut w = Writer::new();
        w.u32(0);
        w.u32(77); // xid
        w.u32(CALL);
        w.u32(3); // wrong RPC version
        frame(&mut w.buf);
        assert!(matches!(
            parse_message(w.buf).unwrap(),
            Incoming::Garbage {
                xid: 77,
                bad_version: true
            }
        ));
        let mut w = Writer::new();
        w.u32(0);
        w.u32(1);
        frame(&mut w.buf);
        assert!(parse_message(w.buf).is_err());
    }
}
