//! Writes to every mirror of a layout, COMMITs on every DS written, and the rewrite of what a
//! failure left uncertain.
use super::layouts::{DsTarget, Segment};
use super::report::{self, DsFault};
use super::{add, Driver, FileShared, Grant, Kept, COMMIT_EVERY, DS_FAILOVER_WINDOW};
use crate::client::Client;
use crate::error::{Error, Result};
use crate::io::{OpenFile, WriteResult};
use proto::nfs3::StableHow;
use proto::nfs3_client::{Nfs3ClientError, WriteReply};
use proto::nfs4::*;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// NFS3ERR_JUKEBOX answers waited out on one DS call before it counts as failed.
const JUKEBOX_RETRIES: u32 = 8;

fn stable3(s: StableHow4) -> StableHow {
    match s {
        StableHow4::Unstable4 => StableHow::Unstable,
        StableHow4::DataSync4 => StableHow::DataSync,
        StableHow4::FileSync4 => StableHow::FileSync,
    }
}

fn stable4(s: StableHow) -> StableHow4 {
    match s {
        StableHow::Unstable => StableHow4::Unstable4,
        StableHow::DataSync => StableHow4::DataSync4,
        StableHow::FileSync => StableHow4::FileSync4,
    }
}

/// Runs `op` again while the DS answers JUKEBOX, with a growing pause.
pub(super) async fn busy_retry<T, F, Fut>(mut op: F) -> Result<T, Nfs3ClientError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Nfs3ClientError>>,
{
    let mut pause = Duration::from_millis(50);
    let mut n = 0;
    loop {
        match op().await {
            Err(e) if report::classify(&e) == DsFault::Busy && n < JUKEBOX_RETRIES => {
                n += 1;
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            r => return r,
        }
    }
}

pub(super) type Failures = Vec<(DsTarget, Nfs3ClientError)>;

impl Driver {
    /// One WRITE (possibly short: at most to the end of the layout segment and the DS's wsize).
    /// After it, commits if this file keeps too much unstable data.
    pub(crate) async fn write(
        &self,
        c: &Client,
        f: &OpenFile,
        offset: u64,
        data: &[u8],
        stable: StableHow4,
    ) -> Result<WriteResult> {
        let r = self.write_once(c, f, offset, data, stable).await?;
        let kept = f.pnfs.with(|st| st.kept_bytes);
        if kept >= COMMIT_EVERY {
            // One writer commits; others go on unless far behind, then they wait for it.
            let guard = match f.pnfs.commit_lock.try_lock() {
                Ok(g) => Some(g),
                Err(_) if kept >= 4 * COMMIT_EVERY => Some(f.pnfs.commit_lock.lock().await),
                Err(_) => None,
            };
            if let Some(_g) = guard {
                self.commit_kept(c, f).await?;
            }
        }
        Ok(r)
    }

    /// One WRITE through a layout, trying new layouts while DSs fail, then through the MDS.
    async fn write_once(
        &self,
        c: &Client,
        f: &OpenFile,
        offset: u64,
        data: &[u8],
        stable: StableHow4,
    ) -> Result<WriteResult> {
        if data.is_empty() {
            return self.mds_write(c, f, offset, data).await;
        }
        let started = Instant::now();
        let mut pause = Duration::from_millis(250);
        // DSs that answered NOSPC: a new layout still naming one means the MDS had nowhere
        // else to put the file, and the MDS's own WRITE gives the answer at once (NOSPC, or
        // the bytes written elsewhere) instead of retrying for the whole failover window.
        let mut full: Vec<Deviceid4> = Vec::new();
        loop {
            let seg = match self
                .segment(c, f, Layoutiomode4::Rw, offset, data.len() as u64)
                .await?
            {
                Grant::Segment(s) => s,
                Grant::ThroughMds => return self.mds_write(c, f, offset, data).await,
            };
            // The use of the segment ends before any return of it: a recall waits for it.
            let targets = match seg.targets(offset) {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!("{e}; writing through the MDS");
                    self.return_segment(c, f, &seg.release(), Vec::new()).await;
                    return self.mds_write(c, f, offset, data).await;
                }
            };
            if targets.iter().any(|t| full.contains(&t.device)) {
                tracing::warn!(offset, "data server out of space; writing through the MDS");
                self.return_segment(c, f, &seg.release(), Vec::new()).await;
                return self.mds_write(c, f, offset, data).await;
            }
            let wsize = targets
                .iter()
                .map(|t| self.devices.io_sizes(&t.device).1 as u64)
                .min()
                .unwrap_or(1 << 20);
            let len = (data.len() as u64).min(seg.end() - offset).min(wsize) as usize;
            let payload = Arc::new(data[..len].to_vec());
            match self
                .write_mirrors(c, &targets, offset, payload.clone(), stable3(stable))
                .await
            {
                Ok(replies) => return Ok(self.written(f, &seg, offset, payload, replies)),
                Err(failures) => {
                    let seg = seg.release();
                    self.fail_segment(c, f, &seg, &failures, OP_WRITE).await;
                    full.extend(
                        failures
                            .iter()
                            .filter(|(_, e)| report::nfs4_status(e) == Nfsstat4::Nospc)
                            .map(|(t, _)| t.device),
                    );
                    if started.elapsed() >= DS_FAILOVER_WINDOW {
                        tracing::warn!(
                            offset,
                            "data servers keep failing; writing through the MDS"
                        );
                        return self.mds_write(c, f, offset, data).await;
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// The same WRITE to every mirror at once; succeeds only if every mirror took it.
    async fn write_mirrors(
        &self,
        c: &Client,
        targets: &[DsTarget],
        offset: u64,
        data: Arc<Vec<u8>>,
        how: StableHow,
    ) -> std::result::Result<Vec<(DsTarget, WriteReply)>, Failures> {
        let mut set = tokio::task::JoinSet::new();
        let mut failures = Vec::new();
        for (i, t) in targets.iter().enumerate() {
            let conn = match self.devices.conn(c, t).await {
                Ok(conn) => conn,
                Err(e) => {
                    failures.push((t.clone(), into_ds(e)));
                    continue;
                }
            };
            let (t, data) = (t.clone(), data.clone());
            set.spawn(async move {
                let r = busy_retry(|| conn.write(&t.fh, offset, &data, how)).await;
                (i, t, r)
            });
        }
        let mut ok = Vec::new();
        while let Some(j) = set.join_next().await {
            match j {
                Ok((i, t, Ok(rep))) => {
                    add(&self.stats.ds_write_bytes, u64::from(rep.count));
                    ok.push((i, t, rep));
                }
                Ok((_, t, Err(e))) => failures.push((t, e)),
                Err(e) => tracing::warn!("DS write task: {e}"),
            }
        }
        if !failures.is_empty() || ok.len() != targets.len() {
            add(&self.stats.ds_errors, failures.len() as u64);
            return Err(failures);
        }
        ok.sort_by_key(|(i, _, _)| *i);
        Ok(ok.into_iter().map(|(_, t, r)| (t, r)).collect())
    }

    /// Books a write every mirror took: what the caller is told, and what is kept until
    /// committed.
    fn written(
        &self,
        f: &OpenFile,
        seg: &Arc<Segment>,
        offset: u64,
        data: Arc<Vec<u8>>,
        replies: Vec<(DsTarget, WriteReply)>,
    ) -> WriteResult {
        // A mirror that wrote less than the others: the least is what all of them hold.
        let count = replies
            .iter()
            .map(|(_, r)| r.count)
            .min()
            .unwrap_or(0)
            .min(data.len() as u32);
        let weakest = replies
            .iter()
            .map(|(_, r)| stable4(r.committed))
            .min()
            .unwrap_or(StableHow4::Unstable4);
        let verifier = replies.first().map(|(_, r)| r.verf).unwrap_or_default();
        let end = offset + u64::from(count);
        f.pnfs.with(|st| {
            st.written = Some(match st.written {
                Some((lo, hi)) => (lo.min(offset), hi.max(end)),
                None => (offset, end),
            });
            st.high_water = st.high_water.max(end);
            if weakest != StableHow4::FileSync4 && count > 0 {
                let seq = st.next_seq;
                st.next_seq += 1;
                st.kept_bytes += u64::from(count);
                st.kept.push(Kept {
                    seq,
                    segment: seg.clone(),
                    offset,
                    data,
                    len: count as usize,
                    verfs: replies.iter().map(|(t, r)| (t.clone(), r.verf)).collect(),
                });
            }
        });
        WriteResult {
            count,
            committed: weakest,
            verifier,
        }
    }

    /// A segment whose DSs failed: drop broken connections, LAYOUTERROR and LAYOUTRETURN with
    /// the errors. Its kept writes are rewritten at the next COMMIT.
    pub(super) async fn fail_segment(
        &self,
        c: &Client,
        f: &OpenFile,
        seg: &Segment,
        failures: &[(DsTarget, Nfs3ClientError)],
        opnum: u32,
    ) {
        let mut errors = Vec::new();
        for (t, e) in failures {
            tracing::warn!(offset = seg.offset, "data server failed: {e}");
            if report::classify(e) == DsFault::Unreachable {
                self.devices.forget(t);
            }
            errors.push(report::device_error(
                t.device,
                report::nfs4_status(e),
                opnum,
            ));
        }
        self.return_segment(c, f, seg, errors).await;
    }

    /// FILE_SYNC WRITE through the MDS (which proxies it to the DSs): nothing to commit, and no
    /// verifier to track across servers.
    async fn mds_write(
        &self,
        c: &Client,
        f: &OpenFile,
        offset: u64,
        data: &[u8],
    ) -> Result<WriteResult> {
        let r = c.mds_write(f, offset, data, StableHow4::FileSync4).await?;
        add(&self.stats.mds_write_bytes, u64::from(r.count));
        Ok(r)
    }

    /// Everything written through `f` made stable on every DS, then LAYOUTCOMMIT.
    pub(crate) async fn commit(&self, c: &Client, f: &OpenFile) -> Result<()> {
        {
            let _g = f.pnfs.commit_lock.lock().await;
            self.commit_kept(c, f).await?;
        }
        self.layoutcommit(c, f).await
    }

    /// COMMIT on every DS holding kept writes; writes whose DSs cannot vouch for them (failed,
    /// verifier changed, segment returned) are written again with FILE_SYNC. The caller holds
    /// the commit lock.
    async fn commit_kept(&self, c: &Client, f: &OpenFile) -> Result<()> {
        let batch = f.pnfs.with(|st| {
            st.kept_bytes = 0;
            std::mem::take(&mut st.kept)
        });
        if batch.is_empty() {
            return Ok(());
        }
        let (mut redo, failed) = self.commit_in_place(c, &f.pnfs, batch).await;
        for (seg, failures) in failed {
            self.fail_segment(c, f, &seg, &failures, OP_COMMIT).await;
        }
        // In the order they were first written, so overlapping writes end as they did.
        redo.sort_by_key(|k| k.seq);
        for k in redo {
            let mut done = 0;
            while done < k.len {
                let r = self
                    .write_once(
                        c,
                        f,
                        k.offset + done as u64,
                        &k.data[done..k.len],
                        StableHow4::FileSync4,
                    )
                    .await?;
                if r.count == 0 {
                    return Err(Error::Protocol("rewrite wrote nothing".into()));
                }
                if r.committed != StableHow4::FileSync4 {
                    return Err(Error::Protocol(
                        "FILE_SYNC rewrite came back unstable".into(),
                    ));
                }
                add(&self.stats.rewrite_bytes, u64::from(r.count));
                done += r.count as usize;
            }
        }
        Ok(())
    }

    /// COMMIT of `batch` on the DSs it went to, through the segments still held (cached, or
    /// recalled and not yet returned). Returns what no COMMIT vouched for (a segment gone, a
    /// verifier changed, a DS failed), to be written again, and the segments whose DSs failed
    /// with the failures. The caller holds the commit lock.
    pub(super) async fn commit_in_place(
        &self,
        c: &Client,
        fl: &FileShared,
        batch: Vec<Kept>,
    ) -> (Vec<Kept>, Vec<(Arc<Segment>, Failures)>) {
        let mut by_segment: HashMap<u64, Vec<Kept>> = HashMap::new();
        for k in batch {
            by_segment.entry(k.segment.id).or_default().push(k);
        }
        let mut redo: Vec<Kept> = Vec::new();
        let mut failed = Vec::new();
        for (seg_id, group) in by_segment {
            if !fl.with(|st| st.holds(seg_id)) {
                redo.extend(group);
                continue;
            }
            let mut targets: Vec<DsTarget> = Vec::new();
            for k in &group {
                for (t, _) in &k.verfs {
                    if !targets.contains(t) {
                        targets.push(t.clone());
                    }
                }
            }
            match self.commit_targets(c, &targets).await {
                Ok(verfs) => {
                    for k in group {
                        let kept = k
                            .verfs
                            .iter()
                            .all(|(t, v)| verfs.get(t).is_some_and(|cv| cv == v));
                        if !kept {
                            tracing::warn!(offset = k.offset, "DS write verifier changed");
                            redo.push(k);
                        }
                    }
                }
                Err(failures) => {
                    failed.push((group[0].segment.clone(), failures));
                    redo.extend(group);
                }
            }
        }
        (redo, failed)
    }

    /// COMMIT of the whole object on each target at once; the verifier of each.
    async fn commit_targets(
        &self,
        c: &Client,
        targets: &[DsTarget],
    ) -> std::result::Result<HashMap<DsTarget, [u8; 8]>, Failures> {
        let mut set = tokio::task::JoinSet::new();
        let mut failures = Vec::new();
        for t in targets {
            let conn = match self.devices.conn(c, t).await {
                Ok(conn) => conn,
                Err(e) => {
                    failures.push((t.clone(), into_ds(e)));
                    continue;
                }
            };
            let t = t.clone();
            set.spawn(async move {
                let r = busy_retry(|| conn.commit(&t.fh, 0, 0)).await;
                (t, r)
            });
        }
        let mut out = HashMap::new();
        while let Some(j) = set.join_next().await {
            match j {
                Ok((t, Ok(v))) => {
                    add(&self.stats.ds_commits, 1);
                    out.insert(t, v);
                }
                Ok((t, Err(e))) => failures.push((t, e)),
                Err(e) => tracing::warn!("DS commit task: {e}"),
            }
        }
        if !failures.is_empty() || out.len() != targets.len() {
            add(&self.stats.ds_errors, failures.len() as u64);
            return Err(failures);
        }
        Ok(out)
    }
}

/// A connect that failed for a reason other than the DS itself (GETDEVICEINFO refused, bad
/// device address) still means this DS cannot be used: report it as unreachable.
pub(super) fn into_ds(e: super::PnfsError) -> Nfs3ClientError {
    match e {
        super::PnfsError::Ds(e) => e,
        super::PnfsError::HeldDown => Nfs3ClientError::Connect(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "data server failed moments ago",
        )),
        other => Nfs3ClientError::Connect(std::io::Error::other(other.to_string())),
    }
}
