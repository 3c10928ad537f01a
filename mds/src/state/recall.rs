//! Delegation recalls: an operation that conflicts with another client's delegation (on the
//! file it changes, or on the directory whose entries it changes) sends CB_RECALL over that
//! client's back channel, waits briefly for the return, and otherwise answers NFS4ERR_DELAY;
//! the client retries once the holder has returned the delegation (or lost it, a lease after
//! the recall).
//!
//! Layout recalls (CB_LAYOUTRECALL) are advisory on our side: a layout that must go (the file
//! was truncated by someone else, a DS it points at is down) is recalled, and the operation
//! that caused it does not wait; the holder returns it, or finds out from the DS.
//!
//! With several MDS nodes a recall also goes through every node that noted a delegation on the
//! object (`remote_delegations`), and the change holds `Busy` there while it runs; a node delegates
//! only after every other node noted it, and the note and `Busy` are taken under one lock, so one
//! of them sees the other (lock order: the `RemoteDelegations` table before the `StateManager`).
use crate::error::{NfsError, NfsResult};
use crate::state::remote::delegations::Busy;
use crate::state::StateId;
use crate::state::{Access, NfsState};
use proto::nfs4::attr::{
    Bitmap, FileAttrs, FATTR4_CHANGE, FATTR4_SIZE, FATTR4_TIME_DELEG_ACCESS,
    FATTR4_TIME_DELEG_MODIFY,
};
use proto::nfs4::basic::{NfsFh4, CB_COMPOUND};
use proto::nfs4::callback::{
    CbCompound4Args, CbCompound4Res, CbGetattrArgs, CbGetattrRes, CbLayoutrecallArgs, CbRecallArgs,
    CbSequenceArgs, Layoutrecall4, LayoutrecallFile4, NfsCbArgop4, NfsCbResop4,
};
use proto::nfs4::pnfs::{Layoutiomode4, LAYOUT4_FLEX_FILES};
use proto::xdr::{Opaque, Xdr};
use std::sync::Arc;
use std::time::Duration;

const CB_VERSION: u32 = 1;
const CB_TIMEOUT: Duration = Duration::from_secs(15);

/// How long an operation that had to recall delegations waits for them to come back before
/// it answers NFS4ERR_DELAY. Linux retries a DELAY no sooner than 100 ms later, while a holder
/// usually returns within a couple of round trips; knfsd waits 30 ms for the same reason.
const RETURN_WAIT: Duration = Duration::from_millis(30);

/// Ok when no other client holds a delegation on any of `inos` (files whose data or names
/// change, directories whose entries change). Otherwise recalls them, waits up to
/// `RETURN_WAIT` for their return, and says "retry" if they are still out. With several MDS
/// nodes, the delegations other nodes handed out are recalled there too
/// (`remote_delegations`); the returned `Busy` keeps them from handing out new ones until the
/// caller has made its change, so it must live as long as the operation.
pub async fn recall_and_wait(
    nfs: &Arc<NfsState>,
    inos: &[u64],
    clientid: Option<u64>,
) -> NfsResult<Busy> {
    recall_for(nfs, inos, clientid, Access::Change).await
}

/// `recall_and_wait` for an operation that reads `ino` (an open for reading, READ outside any
/// open): only other clients' write delegations stand in its way.
pub async fn recall_writers_and_wait(
    nfs: &Arc<NfsState>,
    ino: u64,
    clientid: Option<u64>,
) -> NfsResult<Busy> {
    // No node of this service grants write delegations (they share the data servers, and
    // `grants_write_delegations` with them): a reader has nothing to recall or register.
    if !nfs.grants_write_delegations() {
        return Ok(Busy::none());
    }
    recall_for(nfs, &[ino], clientid, Access::Read).await
}

async fn recall_for(
    nfs: &Arc<NfsState>,
    inos: &[u64],
    clientid: Option<u64>,
    access: Access,
) -> NfsResult<Busy> {
    let (busy, elsewhere) =
        crate::state::remote::delegations::begin_conflict(nfs, inos, clientid, access);
    // Every ino is looked at (no short cut), so all the recalls go out at once.
    let outstanding = || {
        inos.iter().fold(false, |out, &ino| {
            recall_conflicts(nfs, ino, clientid, access) | out
        })
    };
    // The common case, nothing delegated, costs one look and no waiter registration.
    let here = outstanding();
    if !here && elsewhere.is_empty() {
        return Ok(busy);
    }
    let there =
        crate::state::remote::delegations::recall_elsewhere(nfs, elsewhere, clientid, access);
    let (there, here) = tokio::join!(there, async {
        if here {
            wait_for_returns(nfs, outstanding).await
        } else {
            Ok(())
        }
    });
    there?;
    here?;
    Ok(busy)
}

/// Another node's change (by client `except`, whose own delegation stays) conflicts with
/// this node's delegations on `ino` (with its write delegations only, for a read): recalls
/// them and waits as `recall_and_wait` does; whether any is still out.
pub async fn recall_here(
    nfs: &Arc<NfsState>,
    ino: u64,
    except: Option<u64>,
    access: Access,
) -> bool {
    let outstanding = || recall_conflicts(nfs, ino, except, access);
    outstanding() && wait_for_returns(nfs, outstanding).await.is_err()
}

/// Waits up to `RETURN_WAIT` until `outstanding` says no delegation is out any more.
pub(super) async fn wait_for_returns(
    nfs: &NfsState,
    outstanding: impl Fn() -> bool,
) -> NfsResult<()> {
    let deadline = tokio::time::Instant::now() + RETURN_WAIT;
    loop {
        // Registered before looking again, so a DELEGRETURN between the look and the wait
        // still wakes us.
        let returned = nfs.state.returned.notified();
        tokio::pin!(returned);
        returned.as_mut().enable();
        if !outstanding() {
            return Ok(());
        }
        if tokio::time::timeout_at(deadline, returned).await.is_err() {
            return Err(NfsError::Delay);
        }
    }
}

/// Sends CB_RECALL for the delegations other clients hold on `ino` that have not been
/// recalled yet; true if any (recalled now or before) is still out.
fn recall_conflicts(nfs: &Arc<NfsState>, ino: u64, clientid: Option<u64>, access: Access) -> bool {
    let conflicts = nfs
        .state
        .delegation_conflicts(ino, clientid.unwrap_or(0), access);
    for c in conflicts.iter().filter(|c| c.needs_recall) {
        tokio::spawn(send_recall(nfs.clone(), c.clientid, c.stateid, ino));
    }
    !conflicts.is_empty()
}

fn file_fh(nfs: &NfsState, ino: u64) -> NfsFh4 {
    nfs.handles.handle_of(ino)
}

async fn send_recall(nfs: Arc<NfsState>, clientid: u64, sid: StateId, ino: u64) {
    tracing::debug!(clientid, ino, "recalling a delegation");
    let op = NfsCbArgop4::Recall(CbRecallArgs {
        stateid: sid,
        truncate: false,
        fh: file_fh(&nfs, ino),
    });
    if callback(&nfs, clientid, ino, op, "CB_RECALL").await {
        nfs.state.recall_acked(&sid);
    }
}

/// `clientid` has a new back channel (a new session, BIND_CONN_TO_SESSION, BACKCHANNEL_CTL):
/// the recalls it has not answered go out again on it, as knfsd requeues a callback whose
/// channel failed. Without this, a holder whose connection dropped just before a recall would
/// never hear of it, and the other client would wait a lease for the revocation.
pub fn resend_recalls(nfs: &Arc<NfsState>, clientid: u64) {
    for (sid, ino) in nfs.state.unanswered_recalls(clientid) {
        tokio::spawn(send_recall(nfs.clone(), clientid, sid, ino));
    }
}

/// Recalls every layout on `ino` except those of `except` (the client whose operation made
/// them stale has its own reply to go by).
pub fn recall_layouts(nfs: &Arc<NfsState>, ino: u64, except: Option<u64>) {
    for (clientid, _) in nfs.state.layout_holders(ino) {
        if Some(clientid) == except {
            continue;
        }
        tokio::spawn(send_layout_recall(nfs.clone(), clientid, ino));
    }
}

/// Recalls the layouts that point at a DS that went down: their holders would only find out
/// from failed I/O, and new layouts leave the DS out.
pub fn recall_layouts_on_ds(nfs: &Arc<NfsState>, ds: layout::DsId) {
    if nfs.cluster().is_none() {
        return;
    }
    for (ino, clientid) in nfs.state.layout_files() {
        let on_ds = nfs
            .ns
            .chunks(ino)
            .map(|cs| cs.iter().any(|(_, m)| m.contains(&ds.0)))
            .unwrap_or(false)
            // An encoded file's layout names its shards' servers: a new one routes around it.
            || nfs
                .ns
                .stripes(ino)
                .is_ok_and(|c| c.is_some_and(|c| c.is_encoded() && c.placement.contains(&ds.0)));
        if on_ds {
            tokio::spawn(send_layout_recall(nfs.clone(), clientid, ino));
        }
    }
}

async fn send_layout_recall(nfs: Arc<NfsState>, clientid: u64, ino: u64) {
    layout_recall(&nfs, clientid, ino).await;
}

/// What the holder answered a CB_LAYOUTRECALL of its layout on `ino`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutRecalled {
    /// It will return the layout once its I/O through it is done.
    Returning,
    /// It holds none (NFS4ERR_NOMATCHING_LAYOUT): no I/O through one is in flight.
    NoneHeld,
    /// No answer, another refusal, or no layout here to recall.
    Unknown,
}

/// Recalls `clientid`'s layout on `ino` and says what it answered.
pub async fn layout_recall(nfs: &Arc<NfsState>, clientid: u64, ino: u64) -> LayoutRecalled {
    // The recall carries the layout stateid one seqid on, as knfsd does, so the client can
    // order it against LAYOUTGET replies still in flight.
    let Some(sid) = nfs.state.layout_recall_stateid(clientid, ino) else {
        return LayoutRecalled::Unknown;
    };
    if let Some(c) = nfs.cluster() {
        crate::dataservers::MdsIoStats::add(&c.stats.layouts_recalled, 1);
    }
    let op = NfsCbArgop4::Layoutrecall(CbLayoutrecallArgs {
        clora_type: LAYOUT4_FLEX_FILES,
        clora_iomode: Layoutiomode4::Any,
        clora_changed: true,
        clora_recall: Layoutrecall4::File(LayoutrecallFile4 {
            lor_fh: file_fh(nfs, ino),
            lor_offset: 0,
            lor_length: u64::MAX,
            lor_stateid: sid,
        }),
    });
    match callback_any(nfs, clientid, ino, op, "CB_LAYOUTRECALL").await {
        Some(r) if r.status == 0 => LayoutRecalled::Returning,
        Some(r) if r.status == proto::nfs4::Nfsstat4::NomatchingLayout as u32 => {
            LayoutRecalled::NoneHeld
        }
        _ => LayoutRecalled::Unknown,
    }
}

/// How long a GETATTR waits for the CB_GETATTR answer of a write delegation's holder before
/// it recalls the delegation instead (knfsd waits 30 ms; a guest's back channel under load
/// takes longer, and a recall costs the holder its cache).
const CB_GETATTR_WAIT: Duration = Duration::from_millis(100);

/// What a write delegation's holder says of the file: whether it has changed it, as far as
/// the server has not seen (RFC 8881 §10.4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Its size and change attribute are as the server has them: the server's attributes
    /// are the file's.
    Unchanged,
    /// It has changes the server has not seen, or did not answer in time.
    Changed,
}

/// Asks the holder of the write delegation `sid` on `ino` (granted when the file's change
/// attribute was `change`, now of size `size` here) with CB_GETATTR whether it has changed
/// the file. A holder that keeps the file's times (`times`, RFC 9754 §5) is asked for them
/// too, as RFC 9754 requires; they do not change the answer: the holder reports them at
/// DELEGRETURN (SETATTR), and a holder with changes is recalled anyway. The callback runs to
/// its end in its own task (the back channel's sequence must not skip a number), the caller
/// waits `CB_GETATTR_WAIT` for it.
pub async fn ask_writer(
    nfs: &Arc<NfsState>,
    holder: u64,
    ino: u64,
    change: u64,
    size: u64,
    times: bool,
) -> Written {
    nfs.state
        .cb_getattrs
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let op = NfsCbArgop4::Getattr(CbGetattrArgs {
        fh: file_fh(nfs, ino),
        attr_request: cb_getattr_request(times).to_vec(),
    });
    let call = tokio::spawn({
        let nfs = nfs.clone();
        async move { callback_reply(&nfs, holder, ino, op, "CB_GETATTR").await }
    });
    let Ok(Ok(Some(reply))) = tokio::time::timeout(CB_GETATTR_WAIT, call).await else {
        return Written::Changed;
    };
    match reply
        .resarray
        .last()
        .and_then(|r| cb_getattr_answer(r, times))
    {
        Some((c, s)) if c == change && s == size => Written::Unchanged,
        _ => Written::Changed,
    }
}

/// What CB_GETATTR asks for: the change attribute and size, and a times delegation's
/// holder its times (knfsd's `encode_cb_getattr4args` asks the same).
fn cb_getattr_request(times: bool) -> Bitmap {
    let mut b = Bitmap::from_bits(&[FATTR4_CHANGE, FATTR4_SIZE]);
    if times {
        b.set(FATTR4_TIME_DELEG_ACCESS);
        b.set(FATTR4_TIME_DELEG_MODIFY);
    }
    b
}

/// The change attribute and size in a CB_GETATTR answer: they must be there, and nothing
/// that was not asked for (`cb_getattr_request`); the delegated times may be left out (a
/// holder that has not touched the file may have none to report). Anything else, or values
/// that do not decode, is no answer.
fn cb_getattr_answer(r: &NfsCbResop4, times: bool) -> Option<(u64, u64)> {
    let NfsCbResop4::Getattr(CbGetattrRes::Ok(ok)) = r else {
        return None;
    };
    let mask = Bitmap::from_words(&ok.obj_attributes.attrmask);
    if !mask.is_subset(&cb_getattr_request(times)) {
        return None;
    }
    let a = FileAttrs::decode(&ok.obj_attributes).ok()?;
    Some((a.change?, a.size?))
}

/// Sends one callback operation over `clientid`'s back channel; true if the client answered
/// it with success.
async fn callback(
    nfs: &Arc<NfsState>,
    clientid: u64,
    ino: u64,
    op: NfsCbArgop4,
    what: &'static str,
) -> bool {
    callback_reply(nfs, clientid, ino, op, what).await.is_some()
}

/// `callback`, with the client's answer when it succeeded.
async fn callback_reply(
    nfs: &Arc<NfsState>,
    clientid: u64,
    ino: u64,
    op: NfsCbArgop4,
    what: &'static str,
) -> Option<CbCompound4Res> {
    let r = callback_any(nfs, clientid, ino, op, what).await?;
    if r.status != 0 {
        tracing::info!(clientid, ino, what, status = r.status, "callback refused");
        return None;
    }
    tracing::debug!(clientid, ino, what, "answered");
    Some(r)
}

/// Sends one callback operation over `clientid`'s back channel: the client's answer, whatever
/// its status, or None when none came.
async fn callback_any(
    nfs: &Arc<NfsState>,
    clientid: u64,
    ino: u64,
    op: NfsCbArgop4,
    what: &'static str,
) -> Option<CbCompound4Res> {
    let Some(bc) = nfs.state.back_channel(clientid) else {
        tracing::warn!(
            clientid,
            ino,
            what,
            "no back channel; sent again on the next one, else revoked after the lease"
        );
        return None;
    };
    // One callback at a time: the back channel has a single slot.
    let _one = nfs.callback_lock.lock().await;
    let seq = nfs.state.next_cb_seq(&bc.session)?;
    let args = CbCompound4Args {
        tag: Opaque::default(),
        minorversion: bc.minor,
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
            op,
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
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(clientid, ino, what, "undecodable CB_COMPOUND reply: {e}");
                None
            }
        },
        Err(e) => {
            tracing::warn!(clientid, ino, what, "callback failed: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::nfs4::basic::Nfstime4;
    use proto::nfs4::callback::CbGetattrResOk;

    fn answer(a: &FileAttrs) -> NfsCbResop4 {
        NfsCbResop4::Getattr(CbGetattrRes::Ok(CbGetattrResOk {
            obj_attributes: a.encode_all(),
        }))
    }

    #[test]
    fn a_cb_getattr_answer_is_read_for_change_and_size_with_or_without_the_times() {
        let kept = Some(Nfstime4 {
            seconds: 1,
            nseconds: 2,
        });
        let plain = FileAttrs {
            change: Some(7),
            size: Some(100),
            ..Default::default()
        };
        let with_times = FileAttrs {
            time_deleg_access: kept,
            time_deleg_modify: kept,
            ..plain.clone()
        };
        assert_eq!(cb_getattr_answer(&answer(&plain), false), Some((7, 100)));
        assert_eq!(cb_getattr_answer(&answer(&plain), true), Some((7, 100)));
        assert_eq!(
            cb_getattr_answer(&answer(&with_times), true),
            Some((7, 100))
        );
        // Times not asked for, a missing size, or values that do not fill the mask: no answer.
        assert_eq!(cb_getattr_answer(&answer(&with_times), false), None);
        let no_size = FileAttrs {
            size: None,
            ..with_times.clone()
        };
        assert_eq!(cb_getattr_answer(&answer(&no_size), true), None);
        let mut short = with_times.encode_all();
        short.attr_vals.0.truncate(20);
        let r = NfsCbResop4::Getattr(CbGetattrRes::Ok(CbGetattrResOk {
            obj_attributes: short,
        }));
        assert_eq!(cb_getattr_answer(&r, true), None);
    }
}
