//! The portmapper (rpcbind) protocol, version 2 (RFC 1833 §3): what a server needs to
//! register its programs (PMAPPROC_SET / PMAPPROC_UNSET) and a client to find them
//! (PMAPPROC_GETPORT). rpcbind answers version 2 on port 111 beside versions 3 and 4.
use crate::Xdr;

pub const PMAP_PROGRAM: u32 = 100000;
pub const PMAP_V2: u32 = 2;
pub const PMAP_PORT: u16 = 111;

pub const PMAPPROC_NULL: u32 = 0;
pub const PMAPPROC_SET: u32 = 1;
pub const PMAPPROC_UNSET: u32 = 2;
pub const PMAPPROC_GETPORT: u32 = 3;

pub const IPPROTO_TCP: u32 = 6;
pub const IPPROTO_UDP: u32 = 17;

/// `mapping`: the argument of SET, UNSET and GETPORT (SET/UNSET/GETPORT answer a bool, or
/// GETPORT an unsigned port, 0 when unregistered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct Mapping {
    pub prog: u32,
    pub vers: u32,
    pub prot: u32,
    pub port: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xdr::Xdr as _;

    #[test]
    fn mapping_is_four_words() {
        let m = Mapping {
            prog: 100003,
            vers: 3,
            prot: IPPROTO_TCP,
            port: 20048,
        };
        let b = m.to_xdr();
        assert_eq!(b.len(), 16);
        assert_eq!(&b[..4], &100003u32.to_be_bytes());
        assert_eq!(Mapping::from_xdr(&b).unwrap(), m);
        assert!(Mapping::from_xdr(&b[..15]).is_err());
    }
}
