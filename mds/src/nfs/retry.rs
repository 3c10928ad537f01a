//! Changes a client sends again after DELAY, GRACE or BADSESSION run as the requests they
//! first were (`state::delayed` says why): which operations of a COMPOUND are such changes,
//! their fingerprints, and what the compound runner keeps and looks up around each.
//!
//! An operation's fingerprint is a hash of the COMPOUND's operations up to it, SEQUENCE left
//! out: what the client sends again is the same COMPOUND under another sequence id or session,
//! and the operations before it (PUTFH, SAVEFH, ...) say which files it acts on, without
//! running them.
use crate::error::NfsError;
use crate::nfs::ctx::Ctx;
use crate::nfs::ops::table;
use crate::node::Mds;
use crate::state::delayed;
use meta::namespace::ClientRequest;
use proto::nfs4::compound::NfsArgop4;
use proto::nfs4::session::SequenceArgs;
use proto::xdr::{Writer, Xdr};

/// What the fingerprints' encoding buffer starts with: PUTFH, OPEN by name, REMOVE and
/// CLOSE fit (a handle is at most 128 bytes, a name 255).
const FINGERPRINT_BUFFER: usize = 512;

/// For each operation, its fingerprint if it is a change (`table::MODIFIES`) other than
/// WRITE (which is idempotent); empty when the COMPOUND has no such change, so that reads
/// cost nothing.
pub fn fingerprints(ops: &[NfsArgop4]) -> Vec<Option<u64>> {
    let change = |op: &NfsArgop4| {
        table::info(op.opnum()).has(table::MODIFIES) && !matches!(op, NfsArgop4::Write(_))
    };
    // Only the operations up to the last change are hashed (not the GETATTRs after it).
    let Some(last) = ops.iter().skip(1).rposition(change).map(|p| p + 1) else {
        return Vec::new();
    };
    let mut h = blake3::Hasher::new();
    let mut out = vec![None; ops.len()];
    // One buffer for every operation's encoding: a fresh one each (`to_xdr`) grew from empty,
    // ~15 allocations per create (METADATA-BENCH run 17). Hashed the same bytes as before.
    let mut w = Writer::with_capacity(FINGERPRINT_BUFFER);
    for (i, op) in ops.iter().enumerate().take(last + 1).skip(1) {
        match op {
            // Its data says nothing about the changes after it, and is large.
            NfsArgop4::Write(_) => h.update(&op.opnum().to_be_bytes()),
            op => {
                w.buf.clear();
                op.encode(&mut w);
                h.update(&w.buf)
            }
        };
        out[i] = change(op).then(|| {
            let mut first = [0u8; 8];
            first.copy_from_slice(&h.finalize().as_bytes()[..8]);
            u64::from_be_bytes(first)
        });
    }
    out
}

/// The request the running operation (`fp`, its fingerprint; `op`, its name) was sent as
/// before, if it is a change sent again after DELAY, GRACE or BADSESSION.
pub fn retry_of(ctx: &Ctx<'_>, fp: Option<u64>, op: &str) -> Option<ClientRequest> {
    let (fp, session) = (fp?, ctx.session?);
    if !ctx.mds.nfs.delayed.any() {
        return None;
    }
    let first = ctx.mds.nfs.delayed.take(delayed::client_of(&session), fp)?;
    tracing::info!(
        op,
        slot = first.slot,
        seqid = first.seqid,
        "a change sent again after DELAY, GRACE or BADSESSION: runs as its first request"
    );
    Some(first)
}

/// After the operation `fp` answered `status`: kept as the request it is (`Ctx::request`) if
/// the answer ends the request and the client will send it again, as DELAY and GRACE do.
pub fn keep_if_sent_again(ctx: &Ctx<'_>, fp: Option<u64>, status: u32) {
    if status != NfsError::Delay.code() && status != NfsError::Grace.code() {
        return;
    }
    if let (Some(fp), Some(session), Some(req)) = (fp, ctx.session, ctx.request()) {
        ctx.mds
            .nfs
            .delayed
            .record(delayed::client_of(&session), fp, req);
    }
}

/// A COMPOUND whose SEQUENCE `seq` named a session this node does not have (BADSESSION): its
/// changes are kept as the requests they were on that session, for when the client sends
/// them again on a new one.
pub fn keep_refused(mds: &Mds, seq: &SequenceArgs, fps: &[Option<u64>]) {
    let client = delayed::client_of(&seq.sa_sessionid);
    for (i, fp) in fps.iter().enumerate() {
        if let (Some(fp), Ok(op)) = (fp, u16::try_from(i)) {
            let req = ClientRequest {
                session: seq.sa_sessionid,
                slot: seq.sa_slotid,
                seqid: seq.sa_sequenceid,
                op,
            };
            mds.nfs.delayed.record(client, *fp, req);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::nfs4::basic::NfsFh4;
    use proto::nfs4::fileops::{PutfhArgs, RenameArgs};

    fn sequence(seqid: u32) -> NfsArgop4 {
        NfsArgop4::Sequence(proto::nfs4::session::SequenceArgs {
            sa_sessionid: [1; 16],
            sa_sequenceid: seqid,
            sa_slotid: 0,
            sa_highest_slotid: 0,
            sa_cachethis: true,
        })
    }

    fn putfh(b: u8) -> NfsArgop4 {
        NfsArgop4::Putfh(PutfhArgs {
            object: NfsFh4(vec![b; 8].into()),
        })
    }

    fn rename(from: &str, to: &str) -> NfsArgop4 {
        NfsArgop4::Rename(RenameArgs {
            oldname: from.as_bytes().to_vec().into(),
            newname: to.as_bytes().to_vec().into(),
        })
    }

    fn renaming(seqid: u32, src: u8, dst: u8, from: &str, to: &str) -> Vec<NfsArgop4> {
        vec![
            sequence(seqid),
            putfh(src),
            NfsArgop4::Savefh,
            putfh(dst),
            rename(from, to),
        ]
    }

    #[test]
    fn a_compound_sent_again_under_another_sequence_id_has_the_same_fingerprints() {
        let a = fingerprints(&renaming(1, 1, 2, "f7", "g7"));
        assert_eq!(a.len(), 5);
        assert!(a[..4].iter().all(Option::is_none), "{a:?}");
        assert!(a[4].is_some());
        assert_eq!(a, fingerprints(&renaming(2, 1, 2, "f7", "g7")));
        // Other names, or other directories: another change.
        assert_ne!(a, fingerprints(&renaming(1, 1, 2, "f8", "g7")));
        assert_ne!(a, fingerprints(&renaming(1, 2, 1, "f7", "g7")));
    }

    #[test]
    fn what_follows_the_change_is_not_part_of_it() {
        let mut plain = renaming(1, 1, 2, "f7", "g7");
        let a = fingerprints(&plain);
        plain.push(NfsArgop4::Getfh);
        let b = fingerprints(&plain);
        assert_eq!(b.len(), 6);
        assert_eq!(b[..5], a[..]);
        assert_eq!(b[5], None);
    }

    #[test]
    fn a_compound_without_changes_costs_nothing() {
        let reads = vec![sequence(1), putfh(1), NfsArgop4::Getfh];
        assert!(fingerprints(&reads).is_empty());
    }
}
