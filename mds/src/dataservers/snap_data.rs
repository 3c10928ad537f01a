//! Snapshots' data images of mirrored files, the MDS's side (docs/plans/snapshots.md §3.3).
//! Built so far: the calls to a data server's shard program that make and measure an image,
//! LINK (object X shares every chunk of the file's object, `ds` `server::images`) and OBJSTAT
//! (how much of an object is shared). The gate that calls them before a file's bytes change
//! (`before_change`), the replicated image records and the pass that finishes and reclaims
//! images are not built yet (the plan's step 6): until then nothing here is called.
#![allow(dead_code)]

use std::time::Duration;

use layout::DsId;
use proto::shard::{LinkArgs, ObjStat, ObjStatArgs};

use super::Cluster;
use crate::error::{NfsError, NfsResult};

/// A LINK is O(chunks) hard links and one directory sync: 256 links per GiB of file.
const LINK_CALL: Duration = Duration::from_secs(60);
/// An OBJSTAT is O(chunks) `stat`s.
const OBJSTAT_CALL: Duration = Duration::from_secs(30);

impl Cluster {
    /// LINK on data server `ds`: its object `to_file` shares every chunk of `from_file` and
    /// takes its size, durably on return. Idempotent while `from_file` does not change (the
    /// caller holds the file), so a claimer that died part way is finished by linking again.
    pub(crate) async fn link_object_on(
        &self,
        ds: DsId,
        from_file: u64,
        to_file: u64,
    ) -> NfsResult<()> {
        let c = self.shard_client(ds, LINK_CALL).await?;
        let r = c
            .link(&self.cfg.secret.sign_shard(LinkArgs {
                to: ds.0,
                from_file,
                to_file,
                mac: [0; 32],
            }))
            .await;
        c.close();
        r.map_err(|e| {
            tracing::warn!(%ds, from_file, to_file, "shard LINK failed: {e}");
            NfsError::Io
        })
    }

    /// OBJSTAT on data server `ds`: object `file`'s size, chunks and bytes there, and how many
    /// of them it shares with another object (an image, or the file an image was made from).
    pub(crate) async fn object_stat_on(&self, ds: DsId, file: u64) -> NfsResult<ObjStat> {
        let c = self.shard_client(ds, OBJSTAT_CALL).await?;
        let r = c
            .obj_stat(&self.cfg.secret.sign_shard(ObjStatArgs {
                to: ds.0,
                file,
                mac: [0; 32],
            }))
            .await;
        c.close();
        r.map_err(|e| {
            tracing::warn!(%ds, file, "shard OBJSTAT failed: {e}");
            NfsError::Io
        })
    }
}
