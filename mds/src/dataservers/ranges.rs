//! DEALLOCATE, COPY and CLONE on data servers: the MDS moves the bytes itself with the READs
//! and WRITEs of `remote`, a bounded step at a time, so a cluster gives the bytes and sizes a
//! single node gives. The NFSv3 data path has no hole punching, reservation or server-side
//! copy, so a punched range holds written zeros (it reads the same, but its space stays in use)
//! and a copy costs its bytes twice over the network. Not yet: those operations on the data
//! servers themselves, once the single node runs the same data backend (STYLE.md, "one data
//! backend for both").
use super::snap_data::Changing;
use super::Cluster;
use crate::error::{NfsError, NfsResult};
use meta::namespace::Namespace;

/// Bytes read or written per step (one buffer of this size is live at a time).
const STEP: u64 = crate::limits::MAX_IO as u64;

impl Cluster {
    /// Zeroes `[offset, offset + len)` of a file of `size` bytes (nothing past the size: as on
    /// a single node, a punch neither grows the file nor stores anything beyond its end).
    pub async fn zero_range(
        &self,
        ns: &Namespace,
        ino: u64,
        offset: u64,
        len: u64,
        size: u64,
        leave: Changing,
    ) -> NfsResult<()> {
        let end = offset.checked_add(len).ok_or(NfsError::Inval)?.min(size);
        if offset >= end {
            return Ok(());
        }
        let zeros = vec![0u8; STEP.min(end - offset) as usize];
        let mut at = offset;
        while at < end {
            let n = STEP.min(end - at) as usize;
            self.write(ns, ino, at, &zeros[..n], false, leave).await?;
            at += n as u64;
        }
        Ok(())
    }

    /// Copies `count` bytes at `src_off` of `src` (of `src_size` bytes; holes read as zeros)
    /// to `dst_off` of `dst`. Overlapping ranges of one file are copied as `memmove` would.
    #[allow(clippy::too_many_arguments)]
    pub async fn copy_range(
        &self,
        ns: &Namespace,
        src: u64,
        src_off: u64,
        src_size: u64,
        dst: u64,
        dst_off: u64,
        count: u64,
        leave: Changing,
    ) -> NfsResult<()> {
        src_off.checked_add(count).ok_or(NfsError::Inval)?;
        dst_off.checked_add(count).ok_or(NfsError::Inval)?;
        let steps = count.div_ceil(STEP);
        // Copying to a higher offset of the same file front to back would read bytes this copy
        // has already overwritten: go back to front then.
        let backwards = src == dst && dst_off > src_off;
        for k in 0..steps {
            let k = if backwards { steps - 1 - k } else { k };
            let at = k * STEP;
            let n = STEP.min(count - at);
            let (mut data, _) = self.read(ns, src, src_off + at, n, src_size).await?;
            // Past the source's end (CLONE checks, COPY clamps; a racing truncation may still
            // get here) the copy holds zeros, as a read of the range would.
            data.resize(n as usize, 0);
            self.write(ns, dst, dst_off + at, &data, false, leave)
                .await?;
        }
        Ok(())
    }
}
