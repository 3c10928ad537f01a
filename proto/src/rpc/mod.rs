//! ONC RPC (RFC 5531) over TCP: record marking, call and reply messages, auth flavors, and a
//! connection that carries calls in both directions (the NFSv4.1 back channel shares the
//! client's connection, so a server must also be able to call and a client to answer).
//!
//! Header parsing uses the `onc-rpc` crate; this module adds what it stops short of:
//! multi-fragment records, bounded reads, and zero-copy reply building.
mod admission;
mod auth;
mod connection;
pub mod gss;
mod limits;
mod message;
mod record;

pub use admission::{serve, ConnTable};
pub use auth::{Auth, AuthSys, AUTH_NONE, AUTH_SYS, RPCSEC_GSS};
pub use connection::{Arrival, CallHandler, Connection, ConnectionLimits, RejectCalls};
pub use limits::{RecordBudget, ServeLimits, RESERVED_FDS, SMALL_RECORD};
pub use message::{
    accepted_reply, denied_auth_reply, encode_call, parse_message, rpc_mismatch_reply, AcceptStat,
    AuthStat, Call, Incoming, Reply, ReplyStatus,
};
pub use record::{read_record, write_record, RECORD_HEADER_LEN};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum RpcError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("record of {len} bytes exceeds limit {max}")]
    RecordTooLarge { len: usize, max: usize },
    #[error("malformed RPC message: {0}")]
    Malformed(String),
    #[error("connection closed")]
    Closed,
    #[error("call timed out")]
    Timeout,
    #[error("call was not accepted: {0:?}")]
    NotAccepted(ReplyStatus),
}
