//! Repair: a file that lost a mirror (its DS went down while the file was written) gets a new
//! one. Writes to the file wait (DELAY) while it is copied, and its earlier DS handles are
//! fenced first, so no write can reach the survivor behind the copy's back; then the survivor's
//! bytes are copied to a DS the file is not on, made durable, and the new mirror recorded.
use std::time::Duration;

use layout::{DsId, FileId, Rights};
use proto::nfs3::StableHow;

use super::placement::MIRRORS;
use super::Cluster;
use crate::error::{NfsError, NfsResult};
use crate::namespace::{Command, Namespace};

const COPY_IO: u32 = 1 << 20;

impl Cluster {
    /// Files known to have fewer mirrors than they should.
    pub fn degraded(&self) -> Vec<u64> {
        let g = self.degraded.lock().unwrap_or_else(|e| e.into_inner());
        g.iter().copied().collect()
    }

    pub(crate) fn mark_degraded(&self, ino: u64) {
        self.degraded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(ino);
    }

    pub(crate) fn is_repairing(&self, ino: u64) -> bool {
        self.repairing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&ino)
    }

    fn set_repairing(&self, ino: u64, on: bool) {
        let mut g = self.repairing.lock().unwrap_or_else(|e| e.into_inner());
        if on {
            g.insert(ino);
        } else {
            g.remove(&ino);
        }
    }

    /// Gives `ino` back its missing mirror if a DS is available; true when it is whole again
    /// (or gone). Runs one file at a time, from the MDS's health task.
    pub async fn repair(&self, ns: &Namespace, ino: u64) -> NfsResult<bool> {
        let Some(rec) = ns.chunk(ino, 0)? else {
            return Ok(true);
        };
        let live: Vec<DsId> = rec
            .iter()
            .map(|d| DsId(*d))
            .filter(|d| self.registry.is_up(*d))
            .collect();
        if live.len() >= MIRRORS || (live.len() == rec.len() && rec.len() >= MIRRORS) {
            return Ok(true);
        }
        let Some(src) = live.first().copied() else {
            return Ok(false);
        };
        let map = self.registry.placement_map();
        let Some(dst) = layout::placement::rank(&map, FileId(ino), 0)
            .into_iter()
            .find(|d| !rec.contains(&d.0) && self.registry.is_up(*d))
        else {
            return Ok(false);
        };
        self.set_repairing(ino, true);
        let r = self.copy_to_new_mirror(ns, ino, src, dst, &live).await;
        self.set_repairing(ino, false);
        r.map(|()| true)
    }

    async fn copy_to_new_mirror(
        &self,
        ns: &Namespace,
        ino: u64,
        src: DsId,
        dst: DsId,
        live: &[DsId],
    ) -> NfsResult<()> {
        // Stale every handle out there, and give the DSs a heartbeat or two to hear of it.
        self.fence(ino);
        tokio::time::sleep(self.cfg.heartbeat * 2 + Duration::from_millis(200)).await;
        let from = self.conn(src).await?;
        let to = self.conn(dst).await?;
        let src_fh = self.handle(ino, src, Rights::Read);
        let dst_fh = self.handle(ino, dst, Rights::ReadWrite);
        let io = |e: proto::nfs3_client::Nfs3ClientError| {
            tracing::warn!(ino, "repair I/O failed: {e}");
            NfsError::Io
        };
        let size = from.getattr(&src_fh).await.map_err(io)?.size;
        // Whatever the new DS may hold of this file from an earlier life goes first.
        to.set_size(&dst_fh, 0).await.map_err(io)?;
        let mut off = 0u64;
        while off < size {
            let want = (size - off).min(u64::from(COPY_IO)) as u32;
            let r = from.read(&src_fh, off, want).await.map_err(io)?;
            if r.data.is_empty() {
                break;
            }
            to.write(&dst_fh, off, &r.data, StableHow::Unstable)
                .await
                .map_err(io)?;
            off += r.data.len() as u64;
        }
        // The size too: a file ending in a hole must end there on the new mirror as well.
        to.set_size(&dst_fh, size).await.map_err(io)?;
        to.commit(&dst_fh, 0, 0).await.map_err(io)?;
        let mut mirrors: Vec<u64> = live.iter().map(|d| d.0).collect();
        mirrors.push(dst.0);
        ns.execute(Command::SetMirrors {
            ino,
            chunk: 0,
            mirrors,
        })
        .await?;
        self.degraded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ino);
        tracing::info!(
            ino,
            from = src.0,
            to = dst.0,
            bytes = size,
            "file re-mirrored"
        );
        Ok(())
    }
}
