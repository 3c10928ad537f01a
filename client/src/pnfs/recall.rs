//! CB_LAYOUTRECALL (RFC 8881 §12.5.5, §20.3), as Linux answers it (`initiate_file_draining`,
//! `pnfs_mark_matching_lsegs_return`): a client holding a matching layout answers NFS4_OK, stops
//! using the recalled range, lets the I/O in flight through it finish, commits what it wrote
//! through it, and sends LAYOUTRETURN with the layout stateid the recall carried.
//! NFS4ERR_NOMATCHING_LAYOUT is for a client that holds no layout there.
//!
//! The answer is given at once, from the back channel's handler (`layout_recalled`): the
//! recalled segments leave the file's cache under its state mutex, so no I/O starts through
//! them after it (`layouts` module comment), and a task of its own (`give_back`) does the
//! rest: the server's recall waits for the callback's reply, not for the return.
//!
//! Why it matters here: a snapshot's data quiesce (`mds::state::quiesce`) recalls every RW
//! layout and fences the files whose layouts are not back within 1 s. Answering
//! NOMATCHING_LAYOUT while writing on through the cached copy (what this client did) cost every
//! snapshot create 1 s of waiting and a fence (3.2 s measured with one writer, against 0.1 s
//! with the Linux client, which returns).
//!
//! Sequencing (RFC 8881 §12.5.5.2.1): the recall carries the layout stateid one seqid on; we
//! take it as ours, so the LAYOUTRETURN presents the seqid the server expects. A LAYOUTGET whose
//! reply crosses the recall has a seqid no newer than the recall's and is dropped on arrival
//! (`FileState::barrier`); no LAYOUTGET is sent while a return is pending (`FileState::recalls`).
//! Linux answers NFS4ERR_DELAY when the recall's seqid is more than one ahead of its own (a
//! LAYOUTGET reply still on the way); we answer NFS4_OK and let the barrier drop that reply:
//! our MDS does not send a recall again after DELAY, and would fence the file.
use super::report::{self, DsFault};
use super::{add, Driver, FileShared};
use crate::client::{Client, Inner};
use crate::compound::CompoundBuilder;
use proto::nfs4::*;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// How long a recall waits for the I/O in flight through the recalled segments. One DS call
/// waits out NFS3ERR_JUKEBOX for ~4.5 s at most (`write::JUKEBOX_RETRIES`); a call still running
/// after this is abandoned: its bytes, if it books any, are written again through a fresh
/// layout at the next COMMIT (their segment is gone by then).
const DRAIN_WAIT: Duration = Duration::from_secs(5);
/// How long a recall waits for a COMMIT round of the file already running before it returns
/// without committing itself. A round that rewrites waits for a new layout, which waits for
/// this return: without the bound the two would wait on each other. What stays uncommitted is
/// written again through a fresh layout by that round.
const COMMIT_WAIT: Duration = Duration::from_millis(500);
/// How long a LAYOUTGET waits for a pending return before it goes ahead anyway: past the
/// return's own bounds, with room for its COMPOUNDs.
pub(super) const RETURN_BOUND: Duration = Duration::from_secs(15);

/// What one CB_LAYOUTRECALL names.
#[derive(Debug, Clone)]
enum Recall {
    File {
        iomode: Layoutiomode4,
        offset: u64,
        length: u64,
        stateid: Stateid4,
    },
    /// LAYOUTRECALL4_FSID or _ALL: every layout of the client. A client mounts one export,
    /// and the MDS serves one file system, so the two are the same here (the MDS's
    /// `layout_return_all` says so from its side).
    Bulk { iomode: Layoutiomode4, fsid: bool },
}

impl Recall {
    fn iomode(&self) -> Layoutiomode4 {
        match self {
            Recall::File { iomode, .. } | Recall::Bulk { iomode, .. } => *iomode,
        }
    }

    fn range(&self) -> (u64, u64) {
        match self {
            Recall::File { offset, length, .. } => (*offset, *length),
            Recall::Bulk { .. } => (0, u64::MAX),
        }
    }
}

/// The back channel's answer to a CB_LAYOUTRECALL of the client `weak` (module comment).
pub(crate) fn layout_recalled(weak: &Weak<Inner>, a: &CbLayoutrecallArgs) -> Nfsstat4 {
    let Some(inner) = weak.upgrade() else {
        return Nfsstat4::NomatchingLayout;
    };
    let c = Client { inner, auth: None };
    match super::existing_driver(&c) {
        Some(d) => d.recall(c, a),
        None => Nfsstat4::NomatchingLayout,
    }
}

impl Driver {
    /// Marks what the recall names and starts its return; NFS4_OK if anything matched.
    fn recall(self: &Arc<Self>, c: Client, a: &CbLayoutrecallArgs) -> Nfsstat4 {
        if a.clora_type != LAYOUT4_FLEX_FILES {
            return Nfsstat4::NomatchingLayout;
        }
        let (recall, fh) = match &a.clora_recall {
            Layoutrecall4::File(r) => (
                Recall::File {
                    iomode: a.clora_iomode,
                    offset: r.lor_offset,
                    length: r.lor_length,
                    stateid: r.lor_stateid,
                },
                Some(&r.lor_fh),
            ),
            Layoutrecall4::Fsid(_) => (
                Recall::Bulk {
                    iomode: a.clora_iomode,
                    fsid: true,
                },
                None,
            ),
            Layoutrecall4::All => (
                Recall::Bulk {
                    iomode: a.clora_iomode,
                    fsid: false,
                },
                None,
            ),
        };
        let files: Vec<(NfsFh4, Arc<FileShared>)> = {
            let v = match self.files.lock() {
                Ok(v) => v,
                Err(p) => p.into_inner(),
            };
            v.iter()
                .filter(|(h, _)| fh.is_none_or(|fh| fh == h))
                .filter_map(|(h, w)| Some((h.clone(), w.upgrade()?)))
                .collect()
        };
        let matched: Vec<_> = files
            .into_iter()
            .filter(|(_, fl)| fl.with(|st| st.mark_recalled(&recall)))
            .collect();
        if matched.is_empty() {
            return Nfsstat4::NomatchingLayout;
        }
        add(&self.stats.layoutrecalls, matched.len() as u64);
        tracing::debug!(
            files = matched.len(),
            ?recall,
            "layout recalled: returning it"
        );
        tokio::spawn(self.clone().give_back(c, matched, recall));
        Nfsstat4::Ok
    }

    /// Everything after the answer: drain, commit, LAYOUTCOMMIT, LAYOUTRETURN.
    async fn give_back(
        self: Arc<Self>,
        c: Client,
        files: Vec<(NfsFh4, Arc<FileShared>)>,
        recall: Recall,
    ) {
        let started = Instant::now();
        let mut errors = Vec::new();
        for (fh, fl) in &files {
            errors.extend(self.settle(&c, fh, fl).await);
        }
        match &recall {
            Recall::File { .. } => {
                for (fh, fl) in &files {
                    self.return_file(&c, fh, fl, &recall, std::mem::take(&mut errors))
                        .await;
                }
            }
            Recall::Bulk { iomode, fsid } => self.return_bulk(&c, &files, *iomode, *fsid).await,
        }
        for (_, fl) in &files {
            fl.with(|st| {
                st.recalls = st.recalls.saturating_sub(1);
                if st.recalls == 0 {
                    st.barrier = None;
                }
            });
            fl.returned.notify_waiters();
        }
        tracing::debug!(
            ms = started.elapsed().as_millis() as u64,
            "recalled layout returned"
        );
    }

    /// Waits for the I/O through `fl`'s recalled segments, commits what it wrote through them
    /// and LAYOUTCOMMITs if nothing it wrote is left uncommitted. Returns the DS failures the
    /// COMMIT met, for the LAYOUTRETURN's body.
    async fn settle(&self, c: &Client, fh: &NfsFh4, fl: &FileShared) -> Vec<DeviceError4> {
        let segs = fl.with(|st| st.returning.clone());
        let deadline = Instant::now() + DRAIN_WAIT;
        for s in &segs {
            if !s.drained(deadline).await {
                tracing::warn!(
                    offset = s.offset,
                    "I/O through a recalled layout still runs; returning it anyway"
                );
            }
        }
        let mut errors = Vec::new();
        let Ok(_g) = tokio::time::timeout(COMMIT_WAIT, fl.commit_lock.lock()).await else {
            tracing::debug!("a COMMIT round is running; the recall returns without committing");
            return errors;
        };
        let batch = fl.with(|st| {
            st.kept_bytes = 0;
            std::mem::take(&mut st.kept)
        });
        let (left, failed) = self.commit_in_place(c, fl, batch).await;
        for (_, failures) in failed {
            for (t, e) in failures {
                tracing::warn!("data server failed a COMMIT before a layout return: {e}");
                if report::classify(&e) == DsFault::Unreachable {
                    self.devices.forget(&t);
                }
                errors.push(report::device_error(
                    t.device,
                    report::nfs4_status(&e),
                    OP_COMMIT,
                ));
            }
        }
        // What no COMMIT vouched for is written again by the next COMMIT or CLOSE of the
        // open (its segment is gone by then); until then the MDS must not learn a size that
        // counts it.
        let sid = fl.with(|st| {
            st.kept_bytes += left.iter().map(|k| k.len as u64).sum::<u64>();
            st.kept.extend(left);
            st.kept.sort_by_key(|k| k.seq);
            st.stateid.filter(|_| st.kept.is_empty())
        });
        if let Some(sid) = sid {
            if let Err(e) = self.send_layoutcommit(c, fh, fl, sid).await {
                tracing::debug!("LAYOUTCOMMIT before a layout return: {e}");
            }
        }
        errors
    }

    /// LAYOUTRETURN of a file recall's range, with the stateid as the recall left it.
    async fn return_file(
        &self,
        c: &Client,
        fh: &NfsFh4,
        fl: &FileShared,
        recall: &Recall,
        errors: Vec<DeviceError4>,
    ) {
        let (offset, length) = recall.range();
        let iomode = recall.iomode();
        let _g = fl.layout_lock.lock().await;
        let mut tried: Option<Stateid4> = None;
        // Once, and again if another recall moved the seqid while the first was on the wire.
        while let Some(sid) = fl.with(|st| st.stateid).filter(|s| Some(*s) != tried) {
            tried = Some(sid);
            add(&self.stats.layoutreturns, 1);
            let op = report::layoutreturn(offset, length, iomode, sid, errors.clone());
            match c.compound(CompoundBuilder::new().putfh(fh).op(op)).await {
                Ok(res) => {
                    self.after_return_of(fl, &res);
                    break;
                }
                Err(e) if e.is_status(Nfsstat4::OldStateid) => {
                    tracing::debug!("LAYOUTRETURN after a recall: {e}");
                }
                // The server holds no layout of ours there any more.
                Err(e)
                    if matches!(
                        e.status(),
                        Some(
                            Nfsstat4::BadStateid
                                | Nfsstat4::StaleStateid
                                | Nfsstat4::NomatchingLayout
                        )
                    ) =>
                {
                    tracing::debug!("LAYOUTRETURN after a recall: {e}; nothing held there");
                    fl.with(|st| {
                        st.stateid = None;
                        st.segments.clear();
                    });
                    break;
                }
                Err(e) => {
                    tracing::warn!("LAYOUTRETURN after a recall: {e}");
                    break;
                }
            }
        }
        fl.with(|st| {
            // A return of the range returns everything in it, a grant since included.
            st.segments.take_recalled(iomode, offset, length);
            st.returning
                .retain(|s| !s.recalled_by(iomode, offset, length));
        });
    }

    /// LAYOUTRETURN4_FSID or _ALL after a bulk recall; the layout lock of every file is held
    /// so no LAYOUTGET is on the wire across it.
    async fn return_bulk(
        &self,
        c: &Client,
        files: &[(NfsFh4, Arc<FileShared>)],
        iomode: Layoutiomode4,
        fsid: bool,
    ) {
        let mut guards = Vec::with_capacity(files.len());
        for (_, fl) in files {
            guards.push(fl.layout_lock.lock().await);
        }
        add(&self.stats.layoutreturns, 1);
        let op = NfsArgop4::Layoutreturn(LayoutreturnArgs {
            lora_reclaim: false,
            lora_layout_type: LAYOUT4_FLEX_FILES,
            lora_iomode: iomode,
            lora_layoutreturn: if fsid {
                Layoutreturn4::Fsid
            } else {
                Layoutreturn4::All
            },
        });
        // The file system is the current filehandle's; the root's is every file's here.
        if let Err(e) = c
            .compound(CompoundBuilder::new().putfh(c.root()).op(op))
            .await
        {
            tracing::warn!("LAYOUTRETURN after a bulk recall: {e}");
        }
        for (_, fl) in files {
            fl.with(|st| {
                st.segments.take_recalled(iomode, 0, u64::MAX);
                st.returning.retain(|s| !s.recalled_by(iomode, 0, u64::MAX));
                // A bulk return leaves no layout stateid behind once nothing is held.
                if st.segments.len() == 0 && st.returning.is_empty() {
                    st.stateid = None;
                }
            });
        }
        drop(guards);
    }
}

impl super::FileState {
    /// Whether this file holds what `r` recalls; if so its segments there stop serving I/O
    /// (moved to `returning`) and LAYOUTGETs wait for the return.
    fn mark_recalled(&mut self, r: &Recall) -> bool {
        // What is held is the layout stateid, not only cached segments: the server keeps a
        // layout's state until it is returned (a partial return leaves it), and would fence
        // the file of a holder that answered NOMATCHING_LAYOUT but never returned it.
        let held = match r {
            Recall::File { stateid, .. } => match self.stateid {
                Some(s) => s.other == stateid.other,
                // The first grant's reply may still be on the way.
                None => self.getting,
            },
            Recall::Bulk { .. } => self.stateid.is_some() || self.getting,
        };
        if !held {
            return false;
        }
        if let Recall::File { stateid, .. } = r {
            if self
                .stateid
                .is_none_or(|s| super::seqid_newer(stateid.seqid, s.seqid))
            {
                self.stateid = Some(*stateid);
            }
            self.barrier = Some(match self.barrier {
                Some(b)
                    if b.other == stateid.other && super::seqid_newer(b.seqid, stateid.seqid) =>
                {
                    b
                }
                _ => *stateid,
            });
        }
        let (offset, length) = r.range();
        let taken = self.segments.take_recalled(r.iomode(), offset, length);
        self.returning.extend(taken);
        self.recalls += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::super::layouts::Segment;
    use super::super::FileState;
    use super::*;

    fn seg(id: u64, offset: u64, length: u64, iomode: Layoutiomode4) -> Arc<Segment> {
        Arc::new(Segment::new(
            id,
            offset,
            length,
            iomode,
            FfLayout4 {
                ffl_stripe_unit: 0,
                ffl_mirrors: vec![],
                ffl_flags: 0,
                ffl_stats_collect_hint: 0,
            },
        ))
    }

    const SID: Stateid4 = Stateid4 {
        seqid: 3,
        other: [4; 12],
    };

    fn file_recall(iomode: Layoutiomode4, seqid: u32) -> Recall {
        Recall::File {
            iomode,
            offset: 0,
            length: u64::MAX,
            stateid: Stateid4 { seqid, ..SID },
        }
    }

    #[test]
    fn a_recall_of_a_held_layout_moves_its_segments_out_and_takes_the_seqid() {
        let mut st = FileState {
            stateid: Some(SID),
            ..Default::default()
        };
        st.segments.insert(seg(1, 0, 4 << 20, Layoutiomode4::Rw));
        st.segments
            .insert(seg(2, 4 << 20, 4 << 20, Layoutiomode4::Read));
        assert!(st.mark_recalled(&file_recall(Layoutiomode4::Rw, 4)));
        assert!(
            st.lookup(0, Layoutiomode4::Rw).is_none(),
            "no new I/O through it"
        );
        assert!(
            st.lookup(4 << 20, Layoutiomode4::Read).is_some(),
            "READ not recalled"
        );
        assert_eq!(st.returning.len(), 1);
        assert!(st.holds(1), "still committed through until returned");
        assert_eq!(
            st.stateid.map(|s| s.seqid),
            Some(4),
            "the return presents seqid 4"
        );
        assert_eq!(st.recalls, 1);
        assert_eq!(st.barrier.map(|s| s.seqid), Some(4));
    }

    #[test]
    fn nothing_matches_without_that_layout_stateid() {
        // No layout ever asked for.
        let mut st = FileState::default();
        assert!(!st.mark_recalled(&file_recall(Layoutiomode4::Any, 1)));
        // Another layout stateid (an earlier server instance's).
        let mut st = FileState {
            stateid: Some(Stateid4 {
                other: [5; 12],
                ..SID
            }),
            ..Default::default()
        };
        st.segments.insert(seg(1, 0, 4 << 20, Layoutiomode4::Rw));
        assert!(!st.mark_recalled(&file_recall(Layoutiomode4::Any, 4)));
        assert!(st.lookup(0, Layoutiomode4::Rw).is_some());
        assert_eq!(st.recalls, 0);
        // A LAYOUTGET on the wire: its grant may be what is recalled.
        let mut st = FileState {
            getting: true,
            ..Default::default()
        };
        assert!(st.mark_recalled(&file_recall(Layoutiomode4::Any, 1)));
        assert_eq!(st.stateid, Some(Stateid4 { seqid: 1, ..SID }));
        // A bulk recall matches any file with a layout stateid.
        let mut st = FileState {
            stateid: Some(SID),
            ..Default::default()
        };
        assert!(st.mark_recalled(&Recall::Bulk {
            iomode: Layoutiomode4::Any,
            fsid: false
        }));
    }

    #[test]
    fn an_older_recall_seqid_does_not_move_ours_back() {
        let mut st = FileState {
            stateid: Some(Stateid4 { seqid: 9, ..SID }),
            ..Default::default()
        };
        assert!(st.mark_recalled(&file_recall(Layoutiomode4::Any, 7)));
        assert_eq!(st.stateid.map(|s| s.seqid), Some(9));
        assert!(super::super::seqid_newer(0, u32::MAX), "wraps");
    }

    #[tokio::test]
    async fn a_recall_waits_for_the_io_in_flight_and_no_longer() {
        let s = seg(1, 0, 4 << 20, Layoutiomode4::Rw);
        let io = s.begin_use();
        let short = Instant::now() + Duration::from_millis(30);
        assert!(!s.drained(short).await, "one I/O still runs");
        let t = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(io);
        });
        assert!(s.drained(Instant::now() + Duration::from_secs(5)).await);
        t.await.expect("join");
        let io = s.begin_use();
        let kept = io.release();
        assert!(
            s.drained(Instant::now()).await,
            "released uses do not count"
        );
        assert_eq!(kept.id, 1);
    }
}
