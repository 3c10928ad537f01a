//! RPCSEC_GSS version 1 (RFC 2203) wire formats: the credential every call carries, the
//! context-creation arguments and results, and the integrity and privacy bodies that replace a
//! call's arguments and a reply's results. The security layer itself (contexts, MICs, the
//! sequence window) lives in the `krb` crate; this module only decodes and encodes.
//!
//! Linux speaks version 1 only (its RPCSEC_GSSv2 code, RFC 5403, is for channel bindings that
//! neither its NFS client nor server use), so version 2 credentials are refused as bad.
use crate::xdr::{Reader, Writer};
use std::sync::Arc;
use thiserror::Error;

pub const RPCSEC_GSS_VERS_1: u32 = 1;
/// Sequence numbers at or above this are refused (RFC 2203 §5.3.3.1: the context must be
/// renewed before).
pub const MAXSEQ: u32 = 0x8000_0000;
/// A credential, as every `opaque_auth`, is at most 400 bytes (RFC 5531 §8.2).
pub const MAX_AUTH_BODY: usize = 400;
/// Context handles this side hands out are 16 bytes; a peer's may be longer, within the
/// credential's bound.
pub const MAX_HANDLE: usize = MAX_AUTH_BODY - 20;
/// Largest context-establishment token accepted: a Kerberos AP-REQ with a large PAC (many
/// group memberships) runs to tens of KiB.
pub const MAX_INIT_TOKEN: usize = 256 << 10;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum GssWireError {
    #[error("malformed RPCSEC_GSS {0}")]
    Malformed(&'static str),
    #[error("RPCSEC_GSS version {0} (only 1 is spoken)")]
    Version(u32),
}

impl From<crate::xdr::XdrError> for GssWireError {
    fn from(_: crate::xdr::XdrError) -> Self {
        GssWireError::Malformed("body")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GssProc {
    Data = 0,
    Init = 1,
    ContinueInit = 2,
    Destroy = 3,
}

/// What protects a call beyond the header's MIC (RFC 2203 §5.3.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GssService {
    /// krb5: authentication only.
    None = 1,
    /// krb5i: arguments and results carry a MIC.
    Integrity = 2,
    /// krb5p: arguments and results are encrypted.
    Privacy = 3,
}

impl GssService {
    pub fn from_u32(v: u32) -> Option<GssService> {
        match v {
            1 => Some(GssService::None),
            2 => Some(GssService::Integrity),
            3 => Some(GssService::Privacy),
            _ => None,
        }
    }
}

/// `rpc_gss_cred_vers_1_t`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GssCred {
    pub proc_: GssProc,
    pub seq_num: u32,
    pub service: GssService,
    pub handle: Vec<u8>,
}

impl GssCred {
    /// Decodes a credential body (the `opaque_auth` body of flavor RPCSEC_GSS); trailing bytes
    /// are refused.
    pub fn decode(body: &[u8]) -> Result<GssCred, GssWireError> {
        if body.len() > MAX_AUTH_BODY {
            return Err(GssWireError::Malformed("credential length"));
        }
        let mut r = Reader::new(body);
        let vers = r.u32()?;
        if vers != RPCSEC_GSS_VERS_1 {
            return Err(GssWireError::Version(vers));
        }
        let proc_ = match r.u32()? {
            0 => GssProc::Data,
            1 => GssProc::Init,
            2 => GssProc::ContinueInit,
            3 => GssProc::Destroy,
            _ => return Err(GssWireError::Malformed("gss_proc")),
        };
        let seq_num = r.u32()?;
        let service = GssService::from_u32(r.u32()?).ok_or(GssWireError::Malformed("service"))?;
        let handle = r.opaque(MAX_HANDLE)?.to_vec();
        if r.remaining() != 0 {
            return Err(GssWireError::Malformed("credential trailer"));
        }
        Ok(GssCred {
            proc_,
            seq_num,
            service,
            handle,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(20 + self.handle.len());
        w.u32(RPCSEC_GSS_VERS_1);
        w.u32(self.proc_ as u32);
        w.u32(self.seq_num);
        w.u32(self.service as u32);
        w.opaque(&self.handle);
        w.buf
    }
}

/// `rpc_gss_init_arg`: the token of an INIT or CONTINUE_INIT call.
pub fn decode_init_arg(args: &[u8]) -> Result<&[u8], GssWireError> {
    let mut r = Reader::new(args);
    let tok = r.opaque(MAX_INIT_TOKEN)?;
    if r.remaining() != 0 {
        return Err(GssWireError::Malformed("init argument trailer"));
    }
    Ok(tok)
}

pub fn encode_init_arg(w: &mut Writer, token: &[u8]) {
    w.opaque(token);
}

/// `rpc_gss_init_res`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GssInitRes {
    pub handle: Vec<u8>,
    pub major: u32,
    pub minor: u32,
    pub seq_window: u32,
    pub token: Vec<u8>,
}

impl GssInitRes {
    pub fn encode(&self, w: &mut Writer) {
        w.opaque(&self.handle);
        w.u32(self.major);
        w.u32(self.minor);
        w.u32(self.seq_window);
        w.opaque(&self.token);
    }

    pub fn decode(body: &[u8]) -> Result<GssInitRes, GssWireError> {
        let mut r = Reader::new(body);
        let handle = r.opaque(MAX_HANDLE)?.to_vec();
        let major = r.u32()?;
        let minor = r.u32()?;
        let seq_window = r.u32()?;
        let token = r.opaque(MAX_INIT_TOKEN)?.to_vec();
        Ok(GssInitRes {
            handle,
            major,
            minor,
            seq_window,
            token,
        })
    }
}

/// `rpc_gss_integ_data`: `databody_integ` (the sequence number, then the arguments or
/// results) and the MIC over it. Both borrow from `body`.
pub fn decode_integ(body: &[u8], max: usize) -> Result<(&[u8], &[u8]), GssWireError> {
    let mut r = Reader::new(body);
    let data = r.opaque(max)?;
    let mic = r.opaque(MAX_AUTH_BODY)?;
    if data.len() < 4 {
        return Err(GssWireError::Malformed(
            "integrity body without sequence number",
        ));
    }
    Ok((data, mic))
}

/// `rpc_gss_priv_data`: the wrap token of the sequence number and the arguments or results.
pub fn decode_priv(body: &[u8], max: usize) -> Result<&[u8], GssWireError> {
    let mut r = Reader::new(body);
    Ok(r.opaque(max)?)
}

/// Splits a `databody_integ` or unwrapped `databody_priv` into its sequence number and the
/// arguments or results after it.
pub fn split_seq(data: &[u8]) -> Result<(u32, &[u8]), GssWireError> {
    match data {
        [a, b, c, d, rest @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), rest)),
        _ => Err(GssWireError::Malformed("body without sequence number")),
    }
}

/// Who a call authenticated as: set on a `Call` by the RPCSEC_GSS layer once the call's header
/// MIC (and, for integrity and privacy, its arguments) verified; never taken from the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GssCaller {
    pub service: GssService,
    /// The client's principal as the mechanism names it, e.g. `alice@EXAMPLE.COM` or
    /// `nfs/client.example.com@EXAMPLE.COM`.
    pub principal: Arc<str>,
    /// The local identity the principal maps to.
    pub uid: u32,
    pub gid: u32,
    pub gids: Arc<[u32]>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cred_round_trips_and_refuses_what_it_must() {
        let c = GssCred {
            proc_: GssProc::Data,
            seq_num: 77,
            service: GssService::Privacy,
            handle: vec![1, 2, 3, 4, 5],
        };
        let b = c.encode();
        assert_eq!(GssCred::decode(&b), Ok(c.clone()));
        let mut v2 = b.clone();
        v2[3] = 2;
        assert_eq!(GssCred::decode(&v2), Err(GssWireError::Version(2)));
        let mut trailing = b.clone();
        trailing.extend_from_slice(&[0; 4]);
        assert!(GssCred::decode(&trailing).is_err());
        let mut bad_service = b.clone();
        bad_service[15] = 4;
        assert!(GssCred::decode(&bad_service).is_err());
        assert!(GssCred::decode(&b[..b.len() - 4]).is_err());
    }

    #[test]
    fn init_res_round_trips() {
        let r = GssInitRes {
            handle: vec![9; 16],
            major: 0,
            minor: 0,
            seq_window: 512,
            token: vec![7; 33],
        };
        let mut w = Writer::new();
        r.encode(&mut w);
        assert_eq!(GssInitRes::decode(&w.buf), Ok(r));
    }

    #[test]
    fn integ_body_needs_a_sequence_number() {
        let mut w = Writer::new();
        w.opaque(&[0, 0, 0]);
        w.opaque(&[1; 28]);
        assert!(decode_integ(&w.buf, 1 << 20).is_err());
        let mut w = Writer::new();
        w.opaque(&[0, 0, 0, 5, 9, 9]);
        w.opaque(&[1; 28]);
        let (data, mic) = decode_integ(&w.buf, 1 << 20).unwrap();
        assert_eq!(split_seq(data).unwrap(), (5, &[9u8, 9][..]));
        assert_eq!(mic.len(), 28);
    }
}
