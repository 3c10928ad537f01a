//! NSM, the status monitor's side a server needs: SM_NOTIFY from a client host that restarted
//! releases the NLM locks it held (its processes are gone), SM_STAT answers this gateway's
//! state number. The gateway monitors no one (see `nlm`: locks do not survive its restart).
use crate::Shared;
use proto::nlm::*;
use proto::rpc::{accepted_reply, AcceptStat, Auth, Call};
use proto::xdr::{Reader, Writer, Xdr};
use std::net::IpAddr;
use std::sync::Arc;

pub use proto::nlm::{SM_PROGRAM, SM_V1};

pub struct Monitor {
    /// NSM state: odd while up, a new value every start.
    pub state: i32,
}

impl Monitor {
    pub fn new(boot: u64) -> Monitor {
        Monitor {
            state: ((boot as u32) | 1) as i32 & i32::MAX,
        }
    }
}

pub async fn dispatch(s: &Arc<Shared>, peer: IpAddr, call: &Call) -> Option<Writer> {
    let mut r = Reader::new(call.args());
    let mut w = accepted_reply(call.xid, &Auth::None, AcceptStat::Success);
    match call.proc_ {
        SMPROC_NULL => {}
        SMPROC_STAT => {
            if SmName::decode(&mut r).is_err() {
                return Some(accepted_reply(
                    call.xid,
                    &Auth::None,
                    AcceptStat::GarbageArgs,
                ));
            }
            SmStatRes {
                res_stat: 0,
                state: s.nsm.state,
            }
            .encode(&mut w);
        }
        SMPROC_NOTIFY => match StatChge::decode(&mut r) {
            Ok(n) => {
                tracing::info!(%peer, host = %String::from_utf8_lossy(n.mon_name.as_bytes()), "SM_NOTIFY");
                crate::nlm::free_host(s, n.mon_name.as_bytes()).await;
            }
            Err(_) => {
                return Some(accepted_reply(
                    call.xid,
                    &Auth::None,
                    AcceptStat::GarbageArgs,
                ))
            }
        },
        _ => {
            return Some(accepted_reply(
                call.xid,
                &Auth::None,
                AcceptStat::ProcUnavail,
            ))
        }
    }
    Some(w)
}
