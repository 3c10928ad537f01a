//! Reads from one mirror, the next on failure, then a new layout, then the MDS.
use super::layouts::{DsTarget, Segment};
use super::write::{busy_retry, into_ds};
use super::{add, Driver, Grant, PnfsError};
use crate::client::Client;
use crate::error::Result;
use crate::io::OpenFile;
use proto::nfs3_client::{Nfs3ClientError, ReadReply};
use proto::nfs4::*;

/// Layouts tried for one READ before it goes through the MDS: the first, and one more after
/// returning it with the errors (the MDS may then pick another DS).
const LAYOUT_ATTEMPTS: usize = 2;

impl Driver {
    /// One READ (possibly short: at most to the end of the layout segment and the DS's rsize).
    pub(crate) async fn read(
        &self,
        c: &Client,
        f: &OpenFile,
        offset: u64,
        count: u32,
    ) -> Result<(Vec<u8>, bool)> {
        for _ in 0..LAYOUT_ATTEMPTS {
            let seg = match self
                .segment(c, f, Layoutiomode4::Read, offset, u64::from(count))
                .await?
            {
                Grant::Segment(s) => s,
                Grant::ThroughMds => break,
            };
            // The use of the segment ends once the DS answered: a recall waits for it.
            let targets = match seg.targets(offset) {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!("{e}; reading through the MDS");
                    self.return_segment(c, f, &seg.release(), Vec::new()).await;
                    break;
                }
            };
            let mut failures: Vec<(DsTarget, Nfs3ClientError)> = Vec::new();
            for t in &targets {
                let rsize = self.devices.io_sizes(&t.device).0;
                let len = u64::from(count.min(rsize)).min(seg.end() - offset) as u32;
                let r = match self.devices.conn(c, t).await {
                    Ok(conn) => busy_retry(|| conn.read(&t.fh, offset, len)).await,
                    // Failed and reported moments ago: just try the next mirror.
                    Err(PnfsError::HeldDown) => continue,
                    Err(e) => Err(into_ds(e)),
                };
                match r {
                    Ok(rep) => {
                        let seg = seg.release();
                        add(&self.stats.ds_read_bytes, rep.data.len() as u64);
                        if !failures.is_empty() {
                            // The read is served; still tell the MDS about the DS that failed.
                            let errors: Vec<_> = failures
                                .iter()
                                .map(|(t, e)| {
                                    super::report::device_error(
                                        t.device,
                                        super::report::nfs4_status(e),
                                        OP_READ,
                                    )
                                })
                                .collect();
                            self.report(c, f, &seg, &errors).await;
                        }
                        return self.complete(c, f, &seg, offset, len, rep).await;
                    }
                    Err(e) => {
                        add(&self.stats.ds_errors, 1);
                        tracing::debug!(offset, "DS read failed: {e}; next mirror");
                        failures.push((t.clone(), e));
                    }
                }
            }
            let seg = seg.release();
            self.fail_segment(c, f, &seg, &failures, OP_READ).await;
        }
        let (data, eof) = c.mds_read(f, offset, count).await?;
        add(&self.stats.mds_read_bytes, data.len() as u64);
        Ok((data, eof))
    }

    /// A DS object holds what was written to its chunk; a read past its end (eof) below the
    /// file's size is a hole, which reads as zeros, and EOF is where the file ends, not where
    /// the object does.
    async fn complete(
        &self,
        c: &Client,
        f: &OpenFile,
        seg: &Segment,
        offset: u64,
        len: u32,
        rep: ReadReply,
    ) -> Result<(Vec<u8>, bool)> {
        let mut data = rep.data;
        if !rep.eof {
            return Ok((data, false));
        }
        let size = self.file_size(c, f).await?;
        let want_end = (offset + u64::from(len)).min(size).min(seg.end());
        let have_end = offset + data.len() as u64;
        if have_end < want_end {
            data.resize((want_end - offset) as usize, 0);
        } else if have_end > size {
            // Bytes past the size (a truncate the DS object has not seen) are not file data.
            data.truncate(size.saturating_sub(offset) as usize);
        }
        let eof = offset + data.len() as u64 >= size;
        Ok((data, eof))
    }

    /// The size as the MDS has it, or further if our own DS writes (not yet LAYOUTCOMMITted)
    /// went past it.
    async fn file_size(&self, c: &Client, f: &OpenFile) -> Result<u64> {
        let st = c.getattr(&f.fh).await?;
        Ok(st.size.max(f.pnfs.with(|s| s.high_water)))
    }
}
