//! The data servers' libfabric data path: NFSv3 READ, WRITE and COMMIT arguments and results
//! carried in fabric messages, with the file bytes moved by RMA between memory the client
//! registered and the data server's, never through the messages (as RPC-over-RDMA moves
//! bulk data in chunks, RFC 8166, but on a reliable-datagram libfabric endpoint).
//!
//! The data server initiates every RMA: it reads a WRITE's bytes from the client's buffer and
//! writes a READ's into it, then answers. So no client exposes memory to anyone but the data
//! servers it sent a call to, and the data server exposes none.
//!
//! A call is a [`FabricCall`]: the procedure's NFSv3 arguments as they are on the wire (a
//! WRITE's `data` empty; its `count` says how many bytes the data server reads from the
//! buffer), the client's buffer, and the client's fabric address for the answer. The answer is
//! a [`FabricReply`]: the NFSv3 result (a READ's `data` empty; its `count` says how many bytes
//! landed in the buffer).
use crate::xdr::Opaque;
use crate::Xdr;

/// Longest fabric address carried (`FI_NAME_MAX` is 64 in libfabric 1.x).
pub const MAX_FABRIC_ADDR: usize = 64;
/// Longest encoded NFSv3 arguments or result a message carries (a READ/WRITE/COMMIT with a
/// 64-byte handle and post-op attributes takes under 200 bytes).
pub const MAX_BODY: usize = 1024;
/// Receive buffer size on both sides: one message always fits.
pub const MAX_MESSAGE: usize = 2048;

/// Where the client's bytes are: remote address and key of a registered region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Xdr)]
pub struct RmaBuf {
    pub addr: u64,
    pub key: u64,
    pub len: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct FabricCall {
    pub xid: u64,
    /// NFSPROC3_READ, NFSPROC3_WRITE or NFSPROC3_COMMIT.
    pub proc_: u32,
    #[xdr(max = MAX_FABRIC_ADDR)]
    pub reply_to: Opaque,
    pub buf: RmaBuf,
    #[xdr(max = MAX_BODY)]
    pub args: Opaque,
}

#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct FabricReply {
    pub xid: u64,
    /// 0: `res` holds the result; otherwise the call was not run (an `nfsstat3`, e.g. a
    /// procedure the fabric path does not carry, or an RMA that failed).
    pub status: u32,
    #[xdr(max = MAX_BODY)]
    pub res: Opaque,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xdr::Xdr as _;

    #[test]
    fn calls_and_replies_round_trip_and_refuse_oversized_fields() {
        let c = FabricCall {
            xid: 7,
            proc_: crate::nfs3::NFSPROC3_WRITE,
            reply_to: Opaque(vec![2, 0, 1, 2, 127, 0, 0, 1]),
            buf: RmaBuf {
                addr: 0x7f00_0000_1000,
                key: 42,
                len: 1 << 20,
            },
            args: Opaque(vec![0; 100]),
        };
        assert_eq!(FabricCall::from_xdr(&c.to_xdr()).unwrap(), c);
        assert!(c.to_xdr().len() < MAX_MESSAGE);
        let r = FabricReply {
            xid: 7,
            status: 0,
            res: Opaque(vec![1; 40]),
        };
        assert_eq!(FabricReply::from_xdr(&r.to_xdr()).unwrap(), r);
        let big = FabricCall {
            args: Opaque(vec![0; MAX_BODY + 1]),
            ..c.clone()
        };
        assert!(FabricCall::from_xdr(&big.to_xdr()).is_err());
        let long = FabricCall {
            reply_to: Opaque(vec![0; MAX_FABRIC_ADDR + 1]),
            ..c
        };
        assert!(FabricCall::from_xdr(&long.to_xdr()).is_err());
    }
}
