//! The one error type of the library. An NFS failure names the operation that failed and the
//! status, so callers can match on `Error::Nfs { status: Nfsstat4::Noent, .. }`.
use proto::nfs4::*;
use proto::rpc::RpcError;
use proto::xdr::XdrError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    /// An operation of a COMPOUND returned a status other than NFS4_OK.
    #[error("{} failed: {}", op_name(*.op), status_name(*.status))]
    Nfs { op: u32, status: Nfsstat4 },
    /// A status code outside RFC 8881/7862/8276.
    #[error("{} failed with unknown status {code}", op_name(*.op))]
    UnknownStatus { op: u32, code: u32 },
    #[error("rpc: {0}")]
    Rpc(#[from] RpcError),
    /// Kerberos (RPCSEC_GSS): no ticket, a server without the service key, a refused
    /// context, or a reply whose protection does not verify.
    #[error("kerberos: {0}")]
    Gss(#[from] krb::GssClientError),
    #[error("cannot decode reply: {0}")]
    Xdr(#[from] XdrError),
    #[error("bad attributes in reply: {0}")]
    Attr(#[from] AttrError),
    /// The server answered something the protocol does not allow (wrong op order, short reply).
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("bad path {0:?}")]
    BadPath(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A COMMIT's verifier differs from the WRITEs' it covers: the server restarted and the
    /// unstable data may be lost; the caller must write it again.
    #[error("write verifier changed (server restarted): data must be rewritten")]
    VerifierChanged,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The NFS status, if this is an NFS-level failure.
    pub fn status(&self) -> Option<Nfsstat4> {
        match self {
            Error::Nfs { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn is_status(&self, s: Nfsstat4) -> bool {
        self.status() == Some(s)
    }

    pub(crate) fn from_code(op: u32, code: u32) -> Error {
        match Nfsstat4::from_code(code) {
            Some(status) => Error::Nfs { op, status },
            None => Error::UnknownStatus { op, code },
        }
    }

    /// True when the session or client ID is gone (server restart, lease expiry): the caller
    /// must recover (`Client::recover`) before going on.
    pub fn needs_recovery(&self) -> bool {
        matches!(
            self.status(),
            Some(
                Nfsstat4::Badsession
                    | Nfsstat4::Deadsession
                    | Nfsstat4::StaleClientid
                    | Nfsstat4::Expired
                    | Nfsstat4::StaleStateid
            )
        ) || matches!(self, Error::Rpc(RpcError::Closed | RpcError::Io(_)))
    }
}

/// `NFS4ERR_NOENT` style name of a status (derived from the variant name).
pub fn status_name(s: Nfsstat4) -> String {
    if s == Nfsstat4::Ok {
        return "NFS4_OK".into();
    }
    let dbg = format!("{s:?}");
    let mut out = String::from("NFS4ERR_");
    for (i, c) in dbg.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// The name of an operation number, for messages.
pub fn op_name(op: u32) -> String {
    let n = match op {
        OP_ACCESS => "ACCESS",
        OP_CLOSE => "CLOSE",
        OP_COMMIT => "COMMIT",
        OP_CREATE => "CREATE",
        OP_DELEGRETURN => "DELEGRETURN",
        OP_GETATTR => "GETATTR",
        OP_GETFH => "GETFH",
        OP_LINK => "LINK",
        OP_LOCK => "LOCK",
        OP_LOCKT => "LOCKT",
        OP_LOCKU => "LOCKU",
        OP_LOOKUP => "LOOKUP",
        OP_LOOKUPP => "LOOKUPP",
        OP_OPEN => "OPEN",
        OP_PUTFH => "PUTFH",
        OP_PUTROOTFH => "PUTROOTFH",
        OP_READ => "READ",
        OP_READDIR => "READDIR",
        OP_READLINK => "READLINK",
        OP_REMOVE => "REMOVE",
        OP_RENAME => "RENAME",
        OP_RESTOREFH => "RESTOREFH",
        OP_SAVEFH => "SAVEFH",
        OP_SETATTR => "SETATTR",
        OP_WRITE => "WRITE",
        OP_EXCHANGE_ID => "EXCHANGE_ID",
        OP_CREATE_SESSION => "CREATE_SESSION",
        OP_DESTROY_SESSION => "DESTROY_SESSION",
        OP_DESTROY_CLIENTID => "DESTROY_CLIENTID",
        OP_SEQUENCE => "SEQUENCE",
        OP_RECLAIM_COMPLETE => "RECLAIM_COMPLETE",
        OP_FREE_STATEID => "FREE_STATEID",
        OP_TEST_STATEID => "TEST_STATEID",
        _ => return format!("op {op}"),
    };
    n.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rfc_spelling() {
        assert_eq!(status_name(Nfsstat4::Noent), "NFS4ERR_NOENT");
        assert_eq!(status_name(Nfsstat4::BadStateid), "NFS4ERR_BAD_STATEID");
        assert_eq!(
            status_name(Nfsstat4::StaleClientid),
            "NFS4ERR_STALE_CLIENTID"
        );
        assert_eq!(status_name(Nfsstat4::Notempty), "NFS4ERR_NOTEMPTY");
        let e = Error::from_code(OP_LOOKUP, 2);
        assert_eq!(e.to_string(), "LOOKUP failed: NFS4ERR_NOENT");
    }
}
