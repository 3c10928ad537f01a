//! I/O the MDS sends to data servers itself: READ and WRITE from clients that do not use a
//! layout (or fell back after a DS error), COMMIT of what it wrote, and truncation and removal
//! of file data. Handles are minted here exactly as in layouts, so a DS cannot tell the MDS
//! from any other client and needs no second way in.
use std::collections::BTreeSet;

use bytes::Bytes;
use layout::{Cap, DsId, FileId, Rights};
use proto::nfs3::{Nfsstat3, StableHow};
use proto::nfs3_client::Nfs3ClientError;

use super::snap_data::Changing;
use super::Cluster;
use crate::error::{NfsError, NfsResult};
use meta::namespace::Namespace;

impl Cluster {
    /// A handle for `ino` on `ds` (covering the whole file, as layouts do).
    pub fn handle(&self, ino: u64, ds: DsId, rights: Rights) -> Vec<u8> {
        Cap {
            file: FileId(ino),
            first_chunk: 0,
            chunk_count: u32::MAX,
            rights,
            generation: self.generation(ino),
            key_id: 0,
        }
        .mint(&self.cap_key, ds)
        .to_vec()
    }

    /// Reads `[offset, offset + len)` of a file of `size` bytes; holes read as zeros.
    pub async fn read(
        &self,
        ns: &Namespace,
        ino: u64,
        offset: u64,
        len: u64,
        size: u64,
    ) -> NfsResult<(Vec<u8>, bool)> {
        let end = offset.saturating_add(len).min(size);
        if offset >= end {
            return Ok((Vec::new(), true));
        }
        if let Some(red) = self.reduced(ns, ino)? {
            let mut d = self
                .read_reduced(ns, ino, red, offset, end - offset)
                .await?;
            d.resize((end - offset) as usize, 0);
            self.count(&self.stats.read_ops, &self.stats.read_bytes, d.len() as u64);
            return Ok((d, end >= size));
        }
        if let Some(code) = ns.stripes(ino)?.filter(|c| c.is_encoded()) {
            let mut d = self.read_encoded(ino, &code, offset, end - offset).await?;
            d.resize((end - offset) as usize, 0);
            self.count(&self.stats.read_ops, &self.stats.read_bytes, d.len() as u64);
            return Ok((d, end >= size));
        }
        // Placement is looked up again for each span: a mirror dropped meanwhile is skipped.
        self.read_mirrored(ino, offset, end, size, || {
            self.mirrors_for_read(ns, ino)
                .map_err(|e| self.no_layout_to_io(e))
        })
        .await
    }

    /// Reads `[offset, offset + len)` of object `object` on `mirrors` (any that answers), an
    /// object of `size` bytes: a snapshot's data image, whose chunks the file's object shares
    /// by hard links (`docs/plans/snapshots.md` §3.3, `ImageForm::Mirrored`). Its handles are
    /// minted for the object as for a file, under the object's own fence generation.
    pub async fn read_object(
        &self,
        object: u64,
        mirrors: &[u64],
        offset: u64,
        len: u64,
        size: u64,
    ) -> NfsResult<(Vec<u8>, bool)> {
        let end = offset.saturating_add(len).min(size);
        if offset >= end {
            return Ok((Vec::new(), true));
        }
        let mirrors: Vec<DsId> = mirrors.iter().map(|d| DsId(*d)).collect();
        self.read_mirrored(object, offset, end, size, || Ok(mirrors.clone()))
            .await
    }

    /// `[offset, end)` of object `file` of `size` bytes, span by span, each from the first of
    /// `mirrors()` that answers; holes and a short object read as zeros.
    async fn read_mirrored(
        &self,
        file: u64,
        offset: u64,
        end: u64,
        size: u64,
        mirrors: impl Fn() -> NfsResult<Vec<DsId>>,
    ) -> NfsResult<(Vec<u8>, bool)> {
        let mut out = Vec::with_capacity((end - offset) as usize);
        for span in self.geometry.spans(offset, end - offset) {
            let mut got = None;
            for ds in mirrors()? {
                match self.read_span(file, ds, span.file_offset, span.len).await {
                    Ok(d) => {
                        got = Some(d);
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(file, ds = %ds, "read from data server failed: {e:?}")
                    }
                }
            }
            let mut d = got.ok_or(NfsError::Io)?;
            d.resize(span.len as usize, 0);
            out.extend_from_slice(&d);
        }
        self.count(
            &self.stats.read_ops,
            &self.stats.read_bytes,
            out.len() as u64,
        );
        Ok((out, end >= size))
    }

    /// One span of the file, from one DS: short reads are continued, and an early EOF
    /// (the DS's object ends before the file does) leaves the rest as zeros.
    async fn read_span(&self, ino: u64, ds: DsId, offset: u64, len: u64) -> NfsResult<Vec<u8>> {
        let fh = self.handle(ino, ds, Rights::Read);
        self.read_span_with(ds, &fh, offset, len).await
    }

    /// `read_span` with handle `fh` (a file's capability, or a shard handle).
    pub(crate) async fn read_span_with(
        &self,
        ds: DsId,
        fh: &[u8],
        offset: u64,
        len: u64,
    ) -> NfsResult<Vec<u8>> {
        let c = self.conn(ds).await?;
        let mut out = Vec::with_capacity(len as usize);
        while (out.len() as u64) < len {
            let want = (len - out.len() as u64).min(u64::from(crate::limits::MAX_IO)) as u32;
            let r = match c.read(fh, offset + out.len() as u64, want).await {
                Ok(r) => r,
                Err(e) => {
                    if e.is_transport() {
                        self.ds_failed(ds).await;
                    }
                    return Err(map_err(&e));
                }
            };
            let n = r.data.len();
            out.extend_from_slice(&r.data);
            if r.eof || n == 0 {
                break;
            }
        }
        Ok(out)
    }

    /// Writes to every mirror of each chunk touched. A mirror that fails is dropped from the
    /// chunk's record as long as another took the bytes; one that answers JUKEBOX makes the
    /// write NFS4ERR_DELAY (the bytes some mirrors took are written again by the retry).
    pub async fn write(
        &self,
        ns: &Namespace,
        ino: u64,
        offset: u64,
        data: &[u8],
        stable: bool,
        leave: Changing,
    ) -> NfsResult<()> {
        leave.check(ino)?;
        let how = if stable {
            StableHow::FileSync
        } else {
            StableHow::Unstable
        };
        for span in self.geometry.spans(offset, data.len() as u64) {
            let start = (span.file_offset - offset) as usize;
            let piece = Bytes::copy_from_slice(&data[start..start + span.len as usize]);
            let targets = self
                .mirrors_for(ns, leave)
                .await
                .map_err(|e| self.no_layout_to_io(e))?;
            let mut set = tokio::task::JoinSet::new();
            for ds in targets {
                let c = self.conn(ds).await;
                let fh = self.handle(ino, ds, Rights::ReadWrite);
                let piece = piece.clone();
                let off = span.file_offset;
                set.spawn(async move {
                    let r = match c {
                        Ok(c) => c.write(&fh, off, &piece, how).await.map_err(|e| {
                            let transport = e.is_transport();
                            (map_err(&e), transport)
                        }),
                        Err(e) => Err((e, true)),
                    };
                    (ds, r)
                });
            }
            let mut ok = 0;
            let mut first_err = None;
            let (mut lacking, mut busy) = (Vec::new(), false);
            while let Some(j) = set.join_next().await {
                let Ok((ds, r)) = j else { continue };
                match r {
                    Ok(w) => {
                        ok += 1;
                        if w.committed == StableHow::Unstable {
                            self.dirty
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .entry(ino)
                                .or_default()
                                .insert(ds);
                        }
                    }
                    Err((NfsError::Delay, false)) => {
                        tracing::debug!(ino, ds = %ds, "data server full for now: write waits");
                        busy = true;
                        first_err.get_or_insert(NfsError::Delay);
                    }
                    Err((e, transport)) => {
                        tracing::warn!(ino, ds = %ds, "write to data server failed: {e:?}");
                        if transport {
                            self.ds_failed(ds).await;
                            self.drop_mirror(ns, ino, ds).await;
                        } else {
                            if e == NfsError::NoSpc {
                                self.registry.out_of_space(ds);
                            }
                            lacking.push(ds);
                        }
                        first_err.get_or_insert(e);
                    }
                }
            }
            // A mirror that said wait (its flash full while the tier makes room) is asked again
            // with the whole write, by the caller: dropping it would cost a copy for a moment's
            // wait, and answering done would leave it without these bytes.
            if busy {
                return Err(NfsError::Delay);
            }
            // A mirror that refused (full, or failing) lacks these bytes: the file goes on on
            // the ones that took them.
            if ok > 0 {
                for ds in lacking {
                    self.drop_mirror(ns, ino, ds).await;
                }
            }
            if ok == 0 {
                return Err(first_err.unwrap_or(NfsError::Io));
            }
        }
        self.count(
            &self.stats.write_ops,
            &self.stats.write_bytes,
            data.len() as u64,
        );
        Ok(())
    }

    /// Makes what the MDS wrote to DSs for `ino` durable.
    pub async fn commit(&self, ns: &Namespace, ino: u64) -> NfsResult<()> {
        let dirty = self
            .dirty
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ino)
            .unwrap_or_default();
        for ds in dirty {
            let r = match self.conn(ds).await {
                Ok(c) => c
                    .commit(&self.handle(ino, ds, Rights::ReadWrite), 0, 0)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.is_transport()),
                Err(_) => Err(true),
            };
            if r.is_err() {
                // The unstable bytes on that DS are lost. Where another mirror holds them the
                // chunk goes on without it; where it was the only one, the client must resend.
                tracing::warn!(ino, ds = %ds, "commit on data server failed");
                self.ds_failed(ds).await;
                let sole = ns
                    .chunks(ino)?
                    .iter()
                    .any(|(_, m)| m.len() == 1 && m.contains(&ds.0));
                self.drop_mirror(ns, ino, ds).await;
                if sole {
                    return Err(NfsError::Io);
                }
            }
        }
        Ok(())
    }

    /// The DSs that hold some of the file's data (its placement record).
    pub(super) fn holders(&self, ns: &Namespace, ino: u64) -> NfsResult<BTreeSet<DsId>> {
        Ok(ns
            .chunks(ino)?
            .into_iter()
            .flat_map(|(_, m)| m.into_iter().map(DsId))
            .collect())
    }

    /// Sets the size of the file's object on `ds`, with a handle of the file's current
    /// generation (so a DS that had not heard of the latest fence learns it from this call).
    pub(crate) async fn set_size_on(&self, ino: u64, ds: DsId, size: u64) -> NfsResult<()> {
        let c = self.conn(ds).await?;
        c.set_size(&self.handle(ino, ds, Rights::ReadWrite), size)
            .await
            .map_err(|e| map_err(&e))
    }

    /// Cuts (or extends) the file's data on every DS holding some of it to `size` bytes.
    ///
    /// The file is not fenced: other clients keep their layouts (recalled, advisory) and
    /// read the cut data through them, as close-to-open needs (a fence made a reader's cached
    /// layout answer STALE, and Linux failed the application's read). A DS may hold more than
    /// the recorded size (written through a layout and not yet LAYOUTCOMMITted), so any size
    /// may cut; what a later LAYOUTCOMMIT may claim from writes before the cut, the truncating
    /// client's own included, is bounded by what the DSs still hold (`stored_end`). A write
    /// racing the truncation from another client may land on one mirror before the cut and
    /// on the other after it, as two clients' racing writes may land in different orders on
    /// two mirrors: flexfiles leaves mirror ordering of concurrent writers to the clients
    /// (RFC 8435 §5.1), and Linux flushes its own writes before it sends the SETATTR.
    pub async fn truncate(
        &self,
        ns: &Namespace,
        ino: u64,
        size: u64,
        leave: Changing,
    ) -> NfsResult<()> {
        leave.check(ino)?;
        if ns.stripes(ino)?.is_some_and(|c| c.is_encoded()) || self.reduced(ns, ino)?.is_some() {
            // Shards and segments are never cut: the file goes back to mirrors, which are.
            self.mirrors_for(ns, leave).await?;
        }
        let holders = self.holders(ns, ino)?;
        if holders.is_empty() {
            return Ok(());
        }
        let mut failed: BTreeSet<DsId> = BTreeSet::new();
        for ds in holders {
            if let Err(e) = self.set_size_on(ino, ds, size).await {
                tracing::warn!(ino, ds = %ds, "truncate on data server failed: {e:?}");
                failed.insert(ds);
            }
        }
        // A DS that missed the truncation holds bytes past the new end that a later grow must
        // not bring back: it stops being a mirror of this file.
        for ds in failed {
            self.drop_mirror(ns, ino, ds).await;
        }
        Ok(())
    }

    /// Drops an unlinked file's data from every DS holding it, after fencing the file, so a
    /// handle that outlived the file (a layout its client still holds) is refused from then
    /// on instead of writing a chunk file nothing would ever remove. Fails unless every holder
    /// confirmed: the caller keeps the orphan (the durable record of work left) and retries,
    /// so a DS that is down loses its copy when it is back.
    pub async fn remove(&self, ns: &Namespace, ino: u64) -> NfsResult<()> {
        self.dirty
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ino);
        let holders = self.holders(ns, ino)?;
        let code = ns.stripes(ino)?;
        if holders.is_empty() && code.is_none() {
            return Ok(());
        }
        self.fence_quietly(ino);
        let mut first_err = None;
        if let Some(code) = code {
            // Its shards, and mirror copies an encode left, go with it.
            if let Err(e) = self.drop_shards(ino, &code).await {
                first_err.get_or_insert(e);
            }
            for ds in code
                .stale_copies
                .iter()
                .filter(|d| !self.written_off(DsId(**d)))
            {
                if let Err(e) = self.set_size_on(ino, DsId(*ds), 0).await {
                    first_err.get_or_insert(e);
                }
            }
        }
        for ds in holders.into_iter().filter(|d| !self.written_off(*d)) {
            if let Err(e) = self.set_size_on(ino, ds, 0).await {
                tracing::warn!(ino, ds = %ds, "removing data on data server failed: {e:?}");
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// How far the file's data reaches on its DSs (the largest high-water mark of the holders
    /// that answer), or `None` when none does. A LAYOUTCOMMIT's last write offset is the
    /// client's own bookkeeping, which a truncation does not reset (Linux keeps `plh_lwb` from
    /// before it): a size is only taken as far as data is actually stored. The holders are
    /// asked at once: a LAYOUTCOMMIT waits for this, and a CLOSE for the LAYOUTCOMMIT.
    pub async fn stored_end(&self, ns: &Namespace, ino: u64) -> NfsResult<Option<u64>> {
        let holders = self.holders(ns, ino)?;
        let sizes = futures::future::join_all(holders.iter().map(|&ds| async move {
            let r = match self.conn(ds).await {
                Ok(c) => c
                    .getattr(&self.handle(ino, ds, Rights::Read))
                    .await
                    .map_err(|e| map_err(&e)),
                Err(e) => Err(e),
            };
            (ds, r)
        }))
        .await;
        let mut end = None;
        for (ds, r) in sizes {
            match r {
                Ok(a) => end = Some(end.unwrap_or(0).max(a.size)),
                Err(e) => tracing::warn!(ino, ds = %ds, "size from data server: {e:?}"),
            }
        }
        Ok(end)
    }
}

impl Cluster {
    /// Counts one read or write the MDS served itself.
    fn count(
        &self,
        ops: &std::sync::atomic::AtomicU64,
        bytes: &std::sync::atomic::AtomicU64,
        n: u64,
    ) {
        super::MdsIoStats::add(ops, 1);
        super::MdsIoStats::add(bytes, n);
    }

    /// LAYOUTUNAVAILABLE is an answer to LAYOUTGET only; a READ or WRITE the MDS cannot place
    /// (no DS up) waits for DSs (DELAY) or fails.
    fn no_layout_to_io(&self, e: NfsError) -> NfsError {
        match e {
            NfsError::LayoutUnavailable => self.unavailable(&[]),
            e => e,
        }
    }
}

fn map_err(e: &Nfs3ClientError) -> NfsError {
    match e.status() {
        Some(Nfsstat3::Nospc) => NfsError::NoSpc,
        Some(Nfsstat3::Dquot) => NfsError::DQuot,
        Some(Nfsstat3::Jukebox) => NfsError::Delay,
        // Our own handle, fenced between minting and arriving by a truncation or removal that
        // raced this I/O: the client's retry mints a current one (or finds the file gone).
        Some(Nfsstat3::Stale) => NfsError::Delay,
        _ => NfsError::Io,
    }
}
