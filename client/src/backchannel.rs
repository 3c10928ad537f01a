//! The client's side of the back channel: the server sends CB_NULL and CB_COMPOUND over our
//! own connection. We ask for no delegations, so most callbacks need only an honest answer; a
//! CB_RECALL (a delegation granted anyway) is handed to a recall hook that returns it, and a
//! CB_LAYOUTRECALL to the layout driver (`pnfs::recall`), which says whether it holds a
//! matching layout and, if so, returns it from a task of its own.
use proto::nfs4::*;
use proto::rpc::{accepted_reply, AcceptStat, Auth, Call, CallHandler, Connection};
use proto::xdr::{Reader, Writer, Xdr};
use std::sync::{Arc, Mutex};

type RecallHook = Arc<dyn Fn(Stateid4, NfsFh4) + Send + Sync>;
/// Answers a CB_LAYOUTRECALL at once (it must not wait for the return it starts).
type LayoutRecallHook = Arc<dyn Fn(&CbLayoutrecallArgs) -> Nfsstat4 + Send + Sync>;

#[derive(Default)]
pub struct Backchannel {
    on_recall: Mutex<Option<RecallHook>>,
    on_layout_recall: Mutex<Option<LayoutRecallHook>>,
}

impl Backchannel {
    pub fn set_recall_hook(&self, f: RecallHook) {
        if let Ok(mut g) = self.on_recall.lock() {
            *g = Some(f);
        }
    }

    pub fn set_layout_recall_hook(&self, f: LayoutRecallHook) {
        if let Ok(mut g) = self.on_layout_recall.lock() {
            *g = Some(f);
        }
    }

    /// With no driver to ask, nothing is held: NOMATCHING_LAYOUT is then the truth.
    fn layout_recall(&self, a: &CbLayoutrecallArgs) -> Nfsstat4 {
        let hook = self.on_layout_recall.lock().ok().and_then(|g| g.clone());
        match hook {
            Some(h) => h(a),
            None => Nfsstat4::NomatchingLayout,
        }
    }

    fn recall(&self, stateid: Stateid4, fh: NfsFh4) {
        let hook = self.on_recall.lock().ok().and_then(|g| g.clone());
        if let Some(h) = hook {
            h(stateid, fh);
        }
    }

    fn cb_compound(&self, args: CbCompound4Args) -> CbCompound4Res {
        let mut resarray = Vec::with_capacity(args.argarray.len());
        let mut status = 0;
        for op in args.argarray {
            let res = match op {
                NfsCbArgop4::Sequence(a) => {
                    NfsCbResop4::Sequence(CbSequenceRes::Ok(CbSequenceResOk {
                        csr_sessionid: a.csa_sessionid,
                        csr_sequenceid: a.csa_sequenceid,
                        csr_slotid: a.csa_slotid,
                        // We offered one back-channel slot.
                        csr_highest_slotid: 0,
                        csr_target_highest_slotid: 0,
                    }))
                }
                NfsCbArgop4::Recall(a) => {
                    tracing::debug!(stateid = ?a.stateid, "CB_RECALL");
                    self.recall(a.stateid, a.fh);
                    NfsCbResop4::Recall(StatusRes::ok())
                }
                NfsCbArgop4::Getattr(_) => {
                    // Only a write-delegation holder has attributes the server lacks.
                    NfsCbResop4::Getattr(CbGetattrRes::error(Nfsstat4::Badhandle))
                }
                NfsCbArgop4::Layoutrecall(a) => {
                    let status = self.layout_recall(&a);
                    tracing::debug!(recall = ?a.clora_recall, ?status, "CB_LAYOUTRECALL");
                    NfsCbResop4::Layoutrecall(StatusRes::err(status))
                }
                NfsCbArgop4::RecallAny(_) => NfsCbResop4::RecallAny(StatusRes::ok()),
                NfsCbArgop4::RecallSlot(_) => NfsCbResop4::RecallSlot(StatusRes::ok()),
                NfsCbArgop4::Notify(_) => NfsCbResop4::Notify(StatusRes::ok()),
                NfsCbArgop4::NotifyLock(_) => NfsCbResop4::NotifyLock(StatusRes::ok()),
                NfsCbArgop4::NotifyDeviceid(_) => NfsCbResop4::NotifyDeviceid(StatusRes::ok()),
                NfsCbArgop4::WantsCancelled(_) => NfsCbResop4::WantsCancelled(StatusRes::ok()),
                NfsCbArgop4::RecallableObjAvail(_) => {
                    NfsCbResop4::RecallableObjAvail(StatusRes::ok())
                }
                NfsCbArgop4::PushDeleg(_) => {
                    NfsCbResop4::PushDeleg(StatusRes::err(Nfsstat4::RejectDeleg))
                }
                NfsCbArgop4::Offload(_) => NfsCbResop4::Offload(StatusRes::ok()),
                NfsCbArgop4::Illegal | NfsCbArgop4::Unknown(_) => {
                    NfsCbResop4::Illegal(StatusRes::err(Nfsstat4::OpIllegal))
                }
            };
            status = res.status();
            resarray.push(res);
            if status != 0 {
                break;
            }
        }
        CbCompound4Res {
            status,
            tag: args.tag,
            resarray,
        }
    }
}

impl CallHandler for Backchannel {
    async fn handle(&self, _conn: Connection, call: Call) -> Option<Writer> {
        if call.prog != NFS4_CALLBACK {
            return Some(accepted_reply(
                call.xid,
                &Auth::None,
                AcceptStat::ProgUnavail,
            ));
        }
        if call.vers != NFS_CB {
            return Some(accepted_reply(
                call.xid,
                &Auth::None,
                AcceptStat::ProgMismatch {
                    low: NFS_CB,
                    high: NFS_CB,
                },
            ));
        }
        match call.proc_ {
            CB_NULL => Some(accepted_reply(call.xid, &Auth::None, AcceptStat::Success)),
            CB_COMPOUND => {
                let mut r = Reader::new(call.args());
                let Ok(args) = CbCompound4Args::decode(&mut r) else {
                    return Some(accepted_reply(
                        call.xid,
                        &Auth::None,
                        AcceptStat::GarbageArgs,
                    ));
                };
                let res = self.cb_compound(args);
                let mut w = accepted_reply(call.xid, &Auth::None, AcceptStat::Success);
                res.encode(&mut w);
                Some(w)
            }
            _ => Some(accepted_reply(
                call.xid,
                &Auth::None,
                AcceptStat::ProcUnavail,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn sequence_then_recall_is_answered_and_hooked() {
        let b = Backchannel::default();
        let n = Arc::new(AtomicU32::new(0));
        let n2 = n.clone();
        b.set_recall_hook(Arc::new(move |_, _| {
            n2.fetch_add(1, Ordering::SeqCst);
        }));
        let args = CbCompound4Args {
            tag: Default::default(),
            minorversion: 1,
            callback_ident: 0,
            argarray: vec![
                NfsCbArgop4::Sequence(CbSequenceArgs {
                    csa_sessionid: [7; 16],
                    csa_sequenceid: 3,
                    csa_slotid: 0,
                    csa_highest_slotid: 0,
                    csa_cachethis: false,
                    csa_referring_call_lists: vec![],
                }),
                NfsCbArgop4::Recall(CbRecallArgs {
                    stateid: Stateid4::default(),
                    truncate: false,
                    fh: NfsFh4::from(vec![1, 2]),
                }),
            ],
        };
        let res = b.cb_compound(args);
        assert_eq!(res.status, 0);
        assert_eq!(res.resarray.len(), 2);
        assert_eq!(n.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_layout_recall_is_answered_by_the_driver_or_nomatching_without_one() {
        let recall = || CbCompound4Args {
            tag: Default::default(),
            minorversion: 1,
            callback_ident: 0,
            argarray: vec![NfsCbArgop4::Layoutrecall(CbLayoutrecallArgs {
                clora_type: LAYOUT4_FLEX_FILES,
                clora_iomode: Layoutiomode4::Any,
                clora_changed: true,
                clora_recall: Layoutrecall4::All,
            })],
        };
        let b = Backchannel::default();
        let res = b.cb_compound(recall());
        assert_eq!(res.status, Nfsstat4::NomatchingLayout.code());
        b.set_layout_recall_hook(Arc::new(|a| {
            assert_eq!(a.clora_recall, Layoutrecall4::All);
            Nfsstat4::Ok
        }));
        let res = b.cb_compound(recall());
        assert_eq!(res.status, 0);
        assert_eq!(res.resarray.len(), 1);
    }
}
