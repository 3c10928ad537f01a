//! NLM v4 (the Network Lock Manager of NFSv3, X/Open XNFS and RFC 1813 appendix II) and the
//! NSM status monitor's SM_NOTIFY: the wire types a server needs.
use crate::xdr::{Opaque, Reader, Writer, Xdr, XdrError};
use crate::Xdr;

pub const NLM_PROGRAM: u32 = 100021;
pub const NLM_V4: u32 = 4;
/// `LM_MAXSTRLEN`, `MAXNETOBJ_SZ`.
pub const LM_MAXSTRLEN: usize = 1024;
pub const MAXNETOBJ_SZ: usize = 1024;

pub const NLMPROC4_NULL: u32 = 0;
pub const NLMPROC4_TEST: u32 = 1;
pub const NLMPROC4_LOCK: u32 = 2;
pub const NLMPROC4_CANCEL: u32 = 3;
pub const NLMPROC4_UNLOCK: u32 = 4;
pub const NLMPROC4_GRANTED: u32 = 5;
pub const NLMPROC4_NM_LOCK: u32 = 22;
pub const NLMPROC4_FREE_ALL: u32 = 23;

/// `nlm4_stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Xdr)]
pub enum Nlm4Stats {
    Granted = 0,
    Denied = 1,
    DeniedNolocks = 2,
    Blocked = 3,
    DeniedGracePeriod = 4,
    Deadlck = 5,
    Rofs = 6,
    StaleFh = 7,
    Fbig = 8,
    Failed = 9,
}

/// `netobj`.
pub type Netobj = Opaque;

/// `nlm4_lock`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Xdr)]
pub struct Nlm4Lock {
    #[xdr(max = LM_MAXSTRLEN)]
    pub caller_name: Opaque,
    #[xdr(max = MAXNETOBJ_SZ)]
    pub fh: Netobj,
    #[xdr(max = MAXNETOBJ_SZ)]
    pub oh: Netobj,
    pub svid: i32,
    pub l_offset: u64,
    pub l_len: u64,
}

/// `nlm4_holder`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Xdr)]
pub struct Nlm4Holder {
    pub exclusive: bool,
    pub svid: i32,
    #[xdr(max = MAXNETOBJ_SZ)]
    pub oh: Netobj,
    pub l_offset: u64,
    pub l_len: u64,
}

/// `nlm4_testargs` (also the GRANTED callback's argument).
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct Nlm4TestArgs {
    #[xdr(max = MAXNETOBJ_SZ)]
    pub cookie: Netobj,
    pub exclusive: bool,
    pub alock: Nlm4Lock,
}

/// `nlm4_lockargs`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct Nlm4LockArgs {
    #[xdr(max = MAXNETOBJ_SZ)]
    pub cookie: Netobj,
    pub block: bool,
    pub exclusive: bool,
    pub alock: Nlm4Lock,
    pub reclaim: bool,
    pub state: i32,
}

/// `nlm4_cancargs`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct Nlm4CancArgs {
    #[xdr(max = MAXNETOBJ_SZ)]
    pub cookie: Netobj,
    pub block: bool,
    pub exclusive: bool,
    pub alock: Nlm4Lock,
}

/// `nlm4_unlockargs`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct Nlm4UnlockArgs {
    #[xdr(max = MAXNETOBJ_SZ)]
    pub cookie: Netobj,
    pub alock: Nlm4Lock,
}

/// `nlm4_notify` (FREE_ALL).
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct Nlm4Notify {
    #[xdr(max = LM_MAXSTRLEN)]
    pub name: Opaque,
    pub state: i32,
}

/// `nlm4_testrply`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub enum Nlm4TestRply {
    #[xdr(case = 1)]
    Denied(Nlm4Holder),
    #[xdr(default)]
    Other(u32),
}

/// `nlm4_testres`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct Nlm4TestRes {
    #[xdr(max = MAXNETOBJ_SZ)]
    pub cookie: Netobj,
    pub stat: Nlm4TestRply,
}

/// `nlm4_res`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct Nlm4Res {
    #[xdr(max = MAXNETOBJ_SZ)]
    pub cookie: Netobj,
    pub stat: Nlm4Stats,
}

/// The arguments of an NLM v4 call a server answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NlmArgs {
    Null,
    Test(Nlm4TestArgs),
    Lock(Nlm4LockArgs),
    Cancel(Nlm4CancArgs),
    Unlock(Nlm4UnlockArgs),
    /// NM_LOCK: LOCK from a client that runs no status monitor.
    NmLock(Nlm4LockArgs),
    FreeAll(Nlm4Notify),
}

impl NlmArgs {
    /// `Ok(None)` for a procedure a server does not answer here (the _MSG/_RES pairs,
    /// GRANTED, SHARE): PROC_UNAVAIL.
    pub fn decode(proc_: u32, r: &mut Reader<'_>) -> Result<Option<Self>, XdrError> {
        Ok(Some(match proc_ {
            NLMPROC4_NULL => Self::Null,
            NLMPROC4_TEST => Self::Test(Xdr::decode(r)?),
            NLMPROC4_LOCK => Self::Lock(Xdr::decode(r)?),
            NLMPROC4_CANCEL => Self::Cancel(Xdr::decode(r)?),
            NLMPROC4_UNLOCK => Self::Unlock(Xdr::decode(r)?),
            NLMPROC4_NM_LOCK => Self::NmLock(Xdr::decode(r)?),
            NLMPROC4_FREE_ALL => Self::FreeAll(Xdr::decode(r)?),
            _ => return Ok(None),
        }))
    }

    pub fn encode(&self, w: &mut Writer) {
        match self {
            Self::Null => {}
            Self::Test(a) => a.encode(w),
            Self::Lock(a) | Self::NmLock(a) => a.encode(w),
            Self::Cancel(a) => a.encode(w),
            Self::Unlock(a) => a.encode(w),
            Self::FreeAll(a) => a.encode(w),
        }
    }

    pub fn proc_num(&self) -> u32 {
        match self {
            Self::Null => NLMPROC4_NULL,
            Self::Test(_) => NLMPROC4_TEST,
            Self::Lock(_) => NLMPROC4_LOCK,
            Self::Cancel(_) => NLMPROC4_CANCEL,
            Self::Unlock(_) => NLMPROC4_UNLOCK,
            Self::NmLock(_) => NLMPROC4_NM_LOCK,
            Self::FreeAll(_) => NLMPROC4_FREE_ALL,
        }
    }
}

// ---- NSM (status monitor), program 100024 version 1 ----

pub const SM_PROGRAM: u32 = 100024;
pub const SM_V1: u32 = 1;
pub const SM_MAXSTRLEN: usize = 1024;
pub const SMPROC_NULL: u32 = 0;
pub const SMPROC_STAT: u32 = 1;
pub const SMPROC_NOTIFY: u32 = 6;

/// `stat_chge`: SM_NOTIFY's argument, a host saying it restarted.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct StatChge {
    #[xdr(max = SM_MAXSTRLEN)]
    pub mon_name: Opaque,
    pub state: i32,
}

/// `sm_name`: SM_STAT's argument.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct SmName {
    #[xdr(max = SM_MAXSTRLEN)]
    pub mon_name: Opaque,
}

/// `sm_stat_res`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct SmStatRes {
    /// 0 = STAT_SUCC, 1 = STAT_FAIL.
    pub res_stat: u32,
    pub state: i32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock() -> Nlm4Lock {
        Nlm4Lock {
            caller_name: Opaque::from("guest"),
            fh: Opaque(vec![7; 40]),
            oh: Opaque(vec![1, 2, 3]),
            svid: 42,
            l_offset: 10,
            l_len: 0,
        }
    }

    #[test]
    fn calls_round_trip_and_truncations_fail() {
        let all = [
            NlmArgs::Null,
            NlmArgs::Test(Nlm4TestArgs {
                cookie: Opaque(vec![9]),
                exclusive: true,
                alock: lock(),
            }),
            NlmArgs::Lock(Nlm4LockArgs {
                cookie: Opaque(vec![]),
                block: true,
                exclusive: false,
                alock: lock(),
                reclaim: false,
                state: 3,
            }),
            NlmArgs::Unlock(Nlm4UnlockArgs {
                cookie: Opaque(vec![1; 8]),
                alock: lock(),
            }),
            NlmArgs::FreeAll(Nlm4Notify {
                name: Opaque::from("guest"),
                state: 5,
            }),
        ];
        for a in &all {
            let mut w = Writer::new();
            a.encode(&mut w);
            let d = NlmArgs::decode(a.proc_num(), &mut Reader::new(&w.buf))
                .unwrap()
                .unwrap();
            assert_eq!(&d, a);
            for cut in 0..w.buf.len() {
                let r = NlmArgs::decode(a.proc_num(), &mut Reader::new(&w.buf[..cut]));
                assert!(r.is_err(), "{a:?} cut at {cut}");
            }
        }
        assert_eq!(NlmArgs::decode(7, &mut Reader::new(&[])).unwrap(), None);
        let res = Nlm4TestRes {
            cookie: Opaque(vec![]),
            stat: Nlm4TestRply::Denied(Nlm4Holder {
                exclusive: true,
                svid: 1,
                oh: Opaque(vec![]),
                l_offset: 0,
                l_len: 5,
            }),
        };
        assert_eq!(Nlm4TestRes::from_xdr(&res.to_xdr()).unwrap(), res);
        let granted = Nlm4TestRes {
            cookie: Opaque(vec![]),
            stat: Nlm4TestRply::Other(0),
        };
        assert_eq!(granted.to_xdr().len(), 8);
    }

    #[test]
    fn oversized_names_are_refused() {
        let mut w = Writer::new();
        w.opaque(&[]);
        w.u32(1);
        let mut big = Writer::new();
        big.opaque(&vec![b'a'; LM_MAXSTRLEN + 1]);
        w.buf.extend_from_slice(&big.buf);
        assert!(NlmArgs::decode(NLMPROC4_TEST, &mut Reader::new(&w.buf)).is_err());
    }
}
