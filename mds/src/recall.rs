//! Delegation recalls: an operation that conflicts with another client's delegation sends
//! CB_RECALL over that client's back channel and answers NFS4ERR_DELAY; the client retries
//! once the holder has returned the delegation (or lost it, a lease after the recall).
use crate::error::{NfsError, NfsResult};
use crate::fh::FileHandle;
use crate::state::StateId;
use crate::Mds;
use proto::nfs4::basic::{NfsFh4, CB_COMPOUND};
use proto::nfs4::callback::{
    CbCompound4Args, CbCompound4Res, CbRecallArgs, CbSequenceArgs, NfsCbArgop4,
};
use proto::xdr::{Opaque, Xdr};
use std::sync::Arc;
use std::time::Duration;

const CB_VERSION: u32 = 1;
const CB_TIMEOUT: Duration = Duration::from_secs(15);

/// Ok when nobody else holds a delegation on `ino`; otherwise recalls and says "retry".
pub fn recall_conflicts(mds: &Arc<Mds>, ino: u64, clientid: Option<u64>) -> NfsResult<()> {
    let conflicts = mds.state.delegation_conflicts(ino, clientid.unwrap_or(0));
    if conflicts.is_empty() {
        return Ok(());
    }
    for c in conflicts.into_iter().filter(|c| c.needs_recall) {
        tokio::spawn(send_recall(mds.clone(), c.clientid, c.stateid, ino));
    }
    Err(NfsError::Delay)
}

async fn send_recall(mds: Arc<Mds>, clientid: u64, sid: StateId, ino: u64) {
    let Some(bc) = mds.state.back_channel(clientid) else {
        tracing::warn!(
            clientid,
            ino,
            "no back channel to recall a delegation; it is revoked after the lease"
        );
        return;
    };
    // One callback at a time: the back channel has a single slot.
    let _one = mds.callback_lock.lock().await;
    let Some(seq) = mds.state.next_cb_seq(&bc.session) else {
        return;
    };
    let args = CbCompound4Args {
        tag: Opaque::default(),
        minorversion: 1,
        callback_ident: 0,
        argarray: vec![
            NfsCbArgop4::Sequence(CbSequenceArgs {
                csa_sessionid: bc.session,
                csa_sequenceid: seq,
                csa_slotid: 0,
                csa_highest_slotid: 0,
                csa_cachethis: false,
                csa_referring_call_lists: Vec::new(),
            }),
            NfsCbArgop4::Recall(CbRecallArgs {
                stateid: sid,
                truncate: false,
                fh: NfsFh4(Opaque(
                    FileHandle {
                        fs_id: mds.fs_id,
                        ino,
                    }
                    .encode(),
                )),
            }),
        ],
    };
    match bc
        .conn
        .call(
            bc.program,
            CB_VERSION,
            CB_COMPOUND,
            &bc.cred,
            &args.to_xdr(),
            CB_TIMEOUT,
        )
        .await
    {
        Ok(reply) => match CbCompound4Res::from_xdr(reply.body()) {
            Ok(r) if r.status == 0 => tracing::debug!(clientid, ino, "delegation recalled"),
            Ok(r) => tracing::info!(clientid, ino, status = r.status, "CB_RECALL refused"),
            Err(e) => tracing::warn!(clientid, ino, "undecodable CB_COMPOUND reply: {e}"),
        },
        Err(e) => tracing::warn!(clientid, ino, "CB_RECALL failed: {e}"),
    }
}
