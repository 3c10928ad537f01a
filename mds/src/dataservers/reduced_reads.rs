//! Reads of data-reduced files through an assembling data server (issue 46): a read layout of
//! a reduced file names one data server with a reduced-read handle (`layout::reducedcap`);
//! that server asks this node for the file's recipe and where its segments are (the cluster
//! program's RECIPE, answered here), fetches the segments' shards from their servers (a
//! missing one rebuilt from parity), and checks every chunk against its id before it answers.
//! The MDS then moves none of the file's bytes (`reduced_io` does for clients without a
//! layout).
//!
//! Not every reduced file gets such a layout; these are read through the MDS
//! (LAYOUTUNAVAILABLE), as all reduced files were before:
//! - with `[encryption]`: the data key is on the MDS nodes only, and shipping it to the data
//!   servers (a wrapped copy per server, a rotation that reaches them) is a change of its own;
//!   until then sealed segments are opened on an MDS node only;
//! - a file with a segment off flash (the S3 tier evicted it): the bucket is the MDS's;
//! - a file whose recipe or segment list is larger than a RECIPE reply carries
//!   (`proto::cluster::MAX_RECIPE`, `MAX_RECIPE_SEGMENTS`: ~3 GiB at the average chunk).
//!
//! A file reduced in parts (`meta_core::reducing`) is answered part by part: the data server
//! asks RECIPE_PART for the part holding the offset it reads, and caches parts. RECIPE is
//! still answered for a file in one recipe (a data server of the release before asks it).
//!
//! Recall: an unreduce fences the file (`reduced_io::unreduce`), so a reader's handle stops
//! verifying; the RECIPE answer is given only for a file reduced at the handle's epoch, so a
//! handle of a retired reduce finds nothing even where a data server missed the fence. A
//! segment moved by repair (`SegmentMoved`) needs no recall: handles name no placement, and a
//! data server whose fetch fails asks for the recipe again.
use layout::DsId;
use meta::namespace::Namespace;
use proto::cluster::{
    RecipeArgs, RecipePartArgs, RecipePartRes, RecipePartResOk, RecipeRes, RecipeResOk,
    RecipeSegment, CLUSTER_ERR_AUTH, CLUSTER_ERR_CLOCK, CLUSTER_ERR_LATER, CLUSTER_ERR_NOT_REDUCED,
    MAX_RECIPE, MAX_RECIPE_SEGMENTS,
};
use proto::rpc::{accepted_reply, AcceptStat, Auth, Call};
use proto::xdr::{Opaque, Writer, Xdr};
use reduce::Plan;

use super::reduced_io::{to_index_segment, ReducedFile};
use super::segments::SegmentPlace;
use super::Cluster;
use crate::error::{NfsError, NfsResult};

/// Bytes a recipe takes per chunk (`reduce::recipe`'s format, without its header).
const RECIPE_CHUNK_BYTES: usize = 44;

impl Cluster {
    /// The data server to assemble the reads of reduced file `ino` (reduce `red`) for a read
    /// layout; `None` when the MDS reads it (see the module comment).
    pub(crate) fn reduced_assembler(
        &self,
        ns: &Namespace,
        ino: u64,
        red: ReducedFile,
    ) -> NfsResult<Option<DsId>> {
        if self.sealing() || self.data_key().is_some() {
            return Ok(None);
        }
        let (_, plan) = self.plan(ns, ino, red, 0)?;
        // Every part's segments on flash, and every part's reply within RECIPE's bounds (a
        // part's recipe is at most `MAX_RECIPE_LEN`, well within `MAX_RECIPE`).
        let segments = if plan.len() == red.len {
            if !fits(&plan) {
                return Ok(None);
            }
            plan.segments().iter().map(to_index_segment).collect()
        } else {
            let (all, most) = ns
                .reduced_segments(ino, red.epoch)?
                .ok_or(NfsError::Delay)?;
            if most > MAX_RECIPE_SEGMENTS {
                return Ok(None);
            }
            all
        };
        let mut holders = std::collections::BTreeSet::new();
        for s in &segments {
            match ns.segment(s)? {
                Some(rec) if rec.on_flash() => holders.extend(rec.placement),
                _ => return Ok(None),
            }
        }
        let mut up: Vec<DsId> = holders
            .into_iter()
            .map(DsId)
            .filter(|d| self.registry.is_up(*d))
            .collect();
        if up.is_empty() {
            return Ok(None);
        }
        // Spread files over the servers that hold their segments, as `assemblers` does for
        // encoded files: each holds some of the shards it will read.
        let r = (ino % up.len() as u64) as usize;
        up.rotate_left(r);
        Ok(up.first().copied())
    }

    /// RECIPE's answer (its MAC left to the caller), or the error code: only for a file in
    /// one recipe.
    fn recipe_answer(&self, ns: &Namespace, ino: u64, epoch: u64) -> Result<RecipeResOk, u32> {
        let p = self.part_answer(ns, ino, epoch, 0)?;
        if p.part_len != p.len {
            return Err(CLUSTER_ERR_NOT_REDUCED);
        }
        Ok(RecipeResOk {
            len: p.len,
            recipe: p.recipe,
            segments: p.segments,
            mac: [0; 32],
        })
    }

    /// RECIPE_PART's answer (its MAC left to the caller), or the error code: the part of the
    /// file holding `offset`.
    fn part_answer(
        &self,
        ns: &Namespace,
        ino: u64,
        epoch: u64,
        offset: u64,
    ) -> Result<RecipePartResOk, u32> {
        let later = |e: &dyn std::fmt::Debug| {
            tracing::debug!(ino, epoch, "RECIPE not answered now: {e:?}");
            CLUSTER_ERR_LATER
        };
        let red = match self.reduced(ns, ino).map_err(|e| later(&e))? {
            Some(r) if r.epoch == epoch => r,
            _ => return Err(CLUSTER_ERR_NOT_REDUCED),
        };
        if self.sealing() || self.data_key().is_some() {
            return Err(CLUSTER_ERR_NOT_REDUCED);
        }
        // Past the end: the last part (whose answer says the file's length).
        let offset = offset.min(red.len.saturating_sub(1));
        let (start, plan) = self.plan(ns, ino, red, offset).map_err(|e| later(&e))?;
        if !fits(&plan) {
            return Err(CLUSTER_ERR_NOT_REDUCED);
        }
        let mut segments = Vec::new();
        for s in plan.segments() {
            let iid = to_index_segment(&s);
            let rec = match ns.segment(&iid).map_err(|e| later(&e))? {
                Some(rec) if rec.on_flash() => rec,
                _ => return Err(CLUSTER_ERR_NOT_REDUCED),
            };
            let at = SegmentPlace::new(&iid, rec.origin, rec.placement.clone(), rec.stored_len);
            let base = at.shard_ref(0).map_err(|e| later(&e))?;
            segments.push(RecipeSegment {
                id: s.0,
                file: at.file,
                epoch: at.epoch,
                k: base.k,
                m: base.m,
                unit_shift: base.unit_shift,
                stored_len: at.stored_len,
                servers: self.shard_servers(&at.placement).map_err(|e| later(&e))?,
            });
        }
        let recipe = plan.recipe().encode().map_err(|e| {
            tracing::error!(ino, epoch, "recipe not encodable: {e}");
            CLUSTER_ERR_LATER
        })?;
        Ok(RecipePartResOk {
            len: red.len,
            part_offset: start,
            part_len: plan.len(),
            recipe: Opaque(recipe),
            segments,
            mac: [0; 32],
        })
    }
}

/// Whether a RECIPE reply can carry `plan`.
fn fits(plan: &Plan) -> bool {
    plan.recipe().chunks.len() * RECIPE_CHUNK_BYTES + 1024 <= MAX_RECIPE
        && plan.segments().len() <= MAX_RECIPE_SEGMENTS
}

/// A data server asks for the recipe of a reduced file it was handed a read of.
pub fn recipe(cluster: &Cluster, ns: &Namespace, call: &Call) -> Writer {
    let res = match RecipeArgs::from_xdr(call.args()) {
        Err(_) => return accepted_reply(call.xid, &Auth::None, AcceptStat::GarbageArgs),
        Ok(a) if !cluster.cfg.secret.recipe_authentic(&a) => {
            tracing::warn!(ds = %DsId(a.ds_id), "RECIPE refused: wrong MAC");
            RecipeRes::Err(CLUSTER_ERR_AUTH)
        }
        Ok(a) if !layout::secret::fresh(a.timestamp_ms, layout::secret::now_ms()) => {
            RecipeRes::Err(CLUSTER_ERR_CLOCK)
        }
        Ok(a) => match cluster.recipe_answer(ns, a.ino, a.epoch) {
            Ok(mut ok) => {
                ok.mac = cluster.cfg.secret.recipe_reply_mac(&a.mac, &ok);
                RecipeRes::Ok(ok)
            }
            Err(code) => RecipeRes::Err(code),
        },
    };
    let mut w = accepted_reply(call.xid, &Auth::None, AcceptStat::Success);
    w.buf.extend_from_slice(&res.to_xdr());
    w
}

/// A data server asks for the part of a reduced file's recipe holding an offset it reads.
pub fn recipe_part(cluster: &Cluster, ns: &Namespace, call: &Call) -> Writer {
    let res = match RecipePartArgs::from_xdr(call.args()) {
        Err(_) => return accepted_reply(call.xid, &Auth::None, AcceptStat::GarbageArgs),
        Ok(a) if !cluster.cfg.secret.recipe_part_authentic(&a) => {
            tracing::warn!(ds = %DsId(a.ds_id), "RECIPE_PART refused: wrong MAC");
            RecipePartRes::Err(CLUSTER_ERR_AUTH)
        }
        Ok(a) if !layout::secret::fresh(a.timestamp_ms, layout::secret::now_ms()) => {
            RecipePartRes::Err(CLUSTER_ERR_CLOCK)
        }
        Ok(a) => match cluster.part_answer(ns, a.ino, a.epoch, a.offset) {
            Ok(mut ok) => {
                ok.mac = cluster.cfg.secret.recipe_part_reply_mac(&a.mac, &ok);
                RecipePartRes::Ok(ok)
            }
            Err(code) => RecipePartRes::Err(code),
        },
    };
    let mut w = accepted_reply(call.xid, &Auth::None, AcceptStat::Success);
    w.buf.extend_from_slice(&res.to_xdr());
    w
}
