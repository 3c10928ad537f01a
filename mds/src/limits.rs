//! The server's sizes and times that several layers agree on: the protocol handlers size
//! replies and sessions by them, the state code sizes the sessions it adopts, the data path
//! cuts I/O by them. A leaf, so nothing below the handlers reaches up to them for a number.

/// The lease a client gets unless configured otherwise (`ServerConfig::lease_seconds`).
pub const DEFAULT_LEASE_SECONDS: u32 = 30;
/// Largest READ/WRITE payload and the session's request/response sizes are derived from it.
pub const MAX_IO: u32 = 1 << 20;
/// The largest request or reply a session allows (CREATE_SESSION's channel attributes):
/// `MAX_IO` of data and room for the COMPOUND around it.
pub const MAX_MSG: u32 = MAX_IO + (16 << 10);
/// The largest RPC record the NFS port reads: `MAX_IO` and room for the call around it.
pub const MAX_RECORD: usize = (MAX_IO as usize) + (64 << 10);
/// The largest reply cache per slot any session gets.
pub const MAX_RESPONSE_CACHED: u32 = 64 << 10;
/// Bytes a COMPOUND reply takes before the results after SEQUENCE: RPC reply header (24),
/// status, tag length, result count, and SEQUENCE's result (48), with room for a short tag.
pub const REPLY_HEAD: u64 = 128;
/// Bytes of the smallest result: the operation's number and status (`ops::table`).
pub const REPLY_PER_OP: u64 = 8;
/// The longest symbolic link target CREATE accepts, and so the longest READLINK answers.
pub const SYMLINK_MAX: u32 = 4096;
/// The largest extended attribute value (RFC 8276) the server stores, and so the largest
/// GETXATTR answers: Linux's XATTR_SIZE_MAX, what knfsd allows (the state machine's limit,
/// `xattr::VALUE_MAX`; 64 KiB fits a u32).
pub const XATTR_VALUE_MAX: u32 = meta::namespace::xattr::VALUE_MAX as u32;
