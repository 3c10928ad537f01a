//! NFSv3 on reduced-read handles (`layout::reducedcap`, issue 46): this data server assembles
//! a data-reduced file's reads, so its bytes never pass through the MDS.
//!
//! A READ: the handle is verified against the file's fence (as a mirrored file's); the file's
//! recipe and where its segments are come from the MDS (the cluster program's RECIPE_PART,
//! MACed both ways, answered only for a file reduced at the handle's epoch: the part of the
//! recipe holding the offset read, the whole file for a file reduced in one recipe) and are
//! kept in a small cache keyed by (file, epoch, part); the segments the range needs are fetched from their shards'
//! servers (here if held; a shard that cannot be read is rebuilt from the others, as an
//! assembled read of an encoded file does); then `reduce::Plan` (the code the MDS reads with)
//! cuts each chunk from its segment, decompresses it and checks it against its keyed id. A
//! chunk that fails answers NFS3ERR_IO, never bytes: the client reads through the MDS instead.
//!
//! Memory is bounded: `ASSEMBLIES` reads assemble at once, each from at most `GROUP_SEGMENTS`
//! segments at a time (~2 MiB each), beside a cache of `SEGMENT_CACHE` segments and
//! `RECIPE_CACHE` recipes (each at most `proto::cluster::MAX_RECIPE`).
//!
//! A fetch that fails drops the file's cached recipe: a segment moved by repair is found
//! where the MDS now says on the next READ (the client retries through a new layout).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use layout::ReducedCap;
use proto::cluster::{
    RecipePartArgs, RecipePartRes, RecipeSegment, CFS_CLUSTER_PROGRAM, CFS_CLUSTER_V1,
    CLUSTERPROC_RECIPE_PART, CLUSTER_ERR_NOT_REDUCED, MAX_RECIPE,
};
use proto::nfs3::*;
use proto::rpc::{Auth, Connection, ConnectionLimits, RejectCalls};
use proto::shard::ShardRef;
use proto::xdr::{Opaque, Xdr};
use reduce::{DedupKey, Params, Plan, Recipe, SegmentId};

use super::shards::stripes::{read_any, rebuild_unit, stripe_shard_len};
use super::Shared;

/// Reads assembled at once, and segments each holds at a time: 4 × 4 × ~2 MiB.
const ASSEMBLIES: usize = 4;
const GROUP_SEGMENTS: usize = 4;
/// Segments kept (as stored, ~2 MiB each): consecutive READs of a file (1 MiB each, two per
/// segment, several in flight) need the same segment.
const SEGMENT_CACHE: usize = 8;
/// Recipes kept.
const RECIPE_CACHE: usize = 16;
/// One RECIPE call; the reply is at most `MAX_RECIPE` plus the segments' list.
const RECIPE_CALL: Duration = Duration::from_secs(10);
const RECIPE_RECORD: usize = MAX_RECIPE + (2 << 20);
/// Largest READ served, as for file handles.
const MAX_READ: u64 = super::nfs3::MAX_READ as u64;

/// A part of a reduced file's recipe (the whole file for a file in one recipe) and where its
/// segments are.
struct Known {
    /// The file's length, and where the part begins in it.
    len: u64,
    offset: u64,
    plan: Plan,
    segments: HashMap<SegmentId, RecipeSegment>,
}

impl Known {
    /// Whether the part holds byte `offset` of the file.
    fn holds(&self, offset: u64) -> bool {
        offset >= self.offset && offset - self.offset < self.plan.len()
    }
}

/// A reduced file's reduce, `(ino, epoch)`; a segment's shard set, `(file, epoch)`.
type Key = (u64, u64);
/// A small cache, oldest first.
type Kept<T> = Mutex<Vec<(Key, Arc<T>)>>;

/// This data server's recipes (parts of them, several per reduce) and segments of reduced
/// files, and its turns (bounded).
pub(crate) struct ReducedReads {
    recipes: Kept<Known>,
    segments: Kept<Vec<u8>>,
    turns: tokio::sync::Semaphore,
    /// One fetch of a segment at a time (by its shard set's first byte), so READs in flight
    /// that need one segment fetch it once.
    fetches: [tokio::sync::Mutex<()>; 16],
}

impl Default for ReducedReads {
    fn default() -> Self {
        ReducedReads {
            recipes: Mutex::default(),
            segments: Mutex::default(),
            turns: tokio::sync::Semaphore::new(ASSEMBLIES),
            fetches: Default::default(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ReducedReads {
    /// The cached part of reduce `key` holding `offset`.
    fn recipe(&self, key: (u64, u64), offset: u64) -> Option<Arc<Known>> {
        lock(&self.recipes)
            .iter()
            .find(|(k, v)| *k == key && v.holds(offset))
            .map(|(_, v)| v.clone())
    }

    fn keep_recipe(&self, key: (u64, u64), v: Arc<Known>) {
        let mut r = lock(&self.recipes);
        r.retain(|(k, o)| !(*k == key && o.offset == v.offset));
        if r.len() >= RECIPE_CACHE {
            r.remove(0);
        }
        r.push((key, v));
    }

    fn forget_recipe(&self, key: (u64, u64)) {
        lock(&self.recipes).retain(|(k, _)| *k != key);
    }

    fn segment(&self, key: (u64, u64)) -> Option<Arc<Vec<u8>>> {
        lock(&self.segments)
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
    }

    fn keep_segment(&self, key: (u64, u64), v: Arc<Vec<u8>>) {
        let mut s = lock(&self.segments);
        if s.len() >= SEGMENT_CACHE {
            s.remove(0);
        }
        s.push((key, v));
    }

    fn forget_segments(&self, keys: &[(u64, u64)]) {
        lock(&self.segments).retain(|(k, _)| !keys.contains(k));
    }
}

/// Why a reduced read failed, as the NFSv3 status it answers.
fn refuse(s: &Shared, e: layout::CapError) -> Nfsstat3 {
    s.counters.refused();
    tracing::debug!("reduced-read handle refused: {e}");
    e.nfsstat3()
}

/// Authenticates a reduced-read handle against the file's fence here.
fn verify(s: &Shared, fh: &NfsFh3) -> Result<ReducedCap, Nfsstat3> {
    let claimed = layout::peek_reduced(fh.data.as_bytes()).map_err(|e| refuse(s, e))?;
    // The MDS node that minted it has not answered a heartbeat yet: its fences are unknown.
    let Some(fence) = s.fence_for(claimed.file.0, claimed.generation) else {
        return Err(Nfsstat3::Jukebox);
    };
    let cap = layout::verify_reduced_fenced(fh.data.as_bytes(), &s.cap_key, s.id, fence)
        .map_err(|e| refuse(s, e))?;
    if cap.generation > fence {
        s.learn_generation(cap.file.0, cap.generation);
    }
    Ok(cap)
}

/// What a write-like procedure on a reduced-read handle gets: ROFS if the handle is authentic.
pub(crate) fn refuse_write(s: &Shared, fh: &NfsFh3) -> Nfsstat3 {
    super::shards::reads::refuse_verified(s, verify(s, fh))
}

/// One RECIPE call to `mds` over a fresh connection: the reply body.
async fn call_recipe(mds: SocketAddr, args: &[u8]) -> Result<Vec<u8>, String> {
    let limits = ConnectionLimits {
        max_record: RECIPE_RECORD,
        max_in_flight: 1,
    };
    let conn = tokio::time::timeout(
        RECIPE_CALL,
        Connection::connect(mds, Arc::new(RejectCalls), limits),
    )
    .await
    .map_err(|_| "connect timed out".to_string())?
    .map_err(|e| e.to_string())?;
    let r = conn
        .call(
            CFS_CLUSTER_PROGRAM,
            CFS_CLUSTER_V1,
            CLUSTERPROC_RECIPE_PART,
            &Auth::None,
            args,
            RECIPE_CALL,
        )
        .await;
    conn.close();
    Ok(r.map_err(|e| e.to_string())?.body().to_vec())
}

/// The part of the recipe of `cap`'s file at its epoch holding byte `offset`: cached, or
/// from the first MDS node that answers.
async fn known(s: &Shared, cap: &ReducedCap, offset: u64) -> Result<Arc<Known>, Nfsstat3> {
    let key = (cap.file.0, cap.epoch);
    if let Some(k) = s.reduced.recipe(key, offset) {
        return Ok(k);
    }
    let mut a = RecipePartArgs {
        ds_id: s.id.0,
        timestamp_ms: layout::secret::now_ms(),
        ino: cap.file.0,
        epoch: cap.epoch,
        offset,
        mac: [0; 32],
    };
    a.mac = s.cfg.secret.recipe_part_mac(&a);
    let body = a.to_xdr();
    for mds in s.mds.targets() {
        let ok = match call_recipe(mds, &body)
            .await
            .map(|b| RecipePartRes::from_xdr(&b))
        {
            Ok(Ok(RecipePartRes::Ok(ok)))
                if s.cfg.secret.recipe_part_reply_authentic(&a.mac, &ok) =>
            {
                ok
            }
            Ok(Ok(RecipePartRes::Err(CLUSTER_ERR_NOT_REDUCED))) => return Err(Nfsstat3::Stale),
            other => {
                tracing::debug!(%mds, file = cap.file.0, "RECIPE not answered: {other:?}");
                continue;
            }
        };
        let recipe = Recipe::decode(&ok.recipe.0).map_err(|e| {
            tracing::warn!(file = cap.file.0, "recipe from the MDS undecodable: {e}");
            Nfsstat3::Io
        })?;
        let plan = Plan::new(recipe);
        let fits = ok
            .part_offset
            .checked_add(ok.part_len)
            .is_some_and(|e| e <= ok.len);
        if plan.len() != ok.part_len || !fits || plan.is_empty() {
            tracing::warn!(file = cap.file.0, "recipe length is not the part's");
            return Err(Nfsstat3::Io);
        }
        let segments = ok
            .segments
            .into_iter()
            .map(|g| (SegmentId(g.id), g))
            .collect();
        let k = Arc::new(Known {
            len: ok.len,
            offset: ok.part_offset,
            plan,
            segments,
        });
        // Past the end, the MDS answers the last part.
        if !k.holds(offset.min(k.len - 1)) {
            tracing::warn!(
                file = cap.file.0,
                offset,
                "the part answered does not hold the offset asked"
            );
            return Err(Nfsstat3::Io);
        }
        s.reduced.keep_recipe(key, k.clone());
        return Ok(k);
    }
    // No node answered: the client reads through the MDS meanwhile (or retries later).
    Err(Nfsstat3::Io)
}

/// Segment `g`'s stored bytes: its k data shards, each read here or from its server, or
/// rebuilt from the others when that fails.
async fn fetch(s: &Arc<Shared>, g: &RecipeSegment) -> Result<Arc<Vec<u8>>, Nfsstat3> {
    let key = (g.file, g.epoch);
    if let Some(b) = s.reduced.segment(key) {
        return Ok(b);
    }
    let _one = s.reduced.fetches[(g.file >> 56) as usize % 16].lock().await;
    if let Some(b) = s.reduced.segment(key) {
        return Ok(b);
    }
    let geom = ec::Geometry::new(g.k, g.m, 1u64 << g.unit_shift.min(26)).map_err(|e| {
        tracing::warn!(file = g.file, "segment geometry: {e}");
        Nfsstat3::Io
    })?;
    // A segment is at most `MAX_SEGMENT_LEN` whatever geometry the answer names: what this
    // allocates below stays bounded.
    if g.stored_len > geom.stripe_data()
        || g.stored_len > reduce::segment::MAX_SEGMENT_LEN as u64
        || g.servers.len() != geom.width() as usize
    {
        tracing::warn!(file = g.file, "segment does not fit its one stripe");
        return Err(Nfsstat3::Io);
    }
    let base = ShardRef {
        file: g.file,
        epoch: g.epoch,
        index: 0,
        k: g.k,
        m: g.m,
        unit_shift: g.unit_shift,
    };
    let mut set = tokio::task::JoinSet::new();
    for i in 0..geom.k() {
        let len = stripe_shard_len(&geom, g.stored_len, 0, i);
        let (s, servers, stored) = (s.clone(), g.servers.clone(), g.stored_len);
        let r = ShardRef { index: i, ..base };
        set.spawn(async move {
            if len == 0 {
                return (i, Ok(Vec::new()));
            }
            let got = match read_any(&s, &r, &servers, &geom, 0, len).await {
                Ok(d) => Ok(d),
                Err(e) => {
                    tracing::info!(file = r.file, shard = i, "segment read rebuilds: {e}");
                    rebuild_unit(&s, &r, &servers, &geom, stored, 0, i)
                        .await
                        .map(|mut u| {
                            u.truncate(len as usize);
                            u
                        })
                }
            };
            (i, got)
        });
    }
    let mut parts: Vec<Vec<u8>> = vec![Vec::new(); geom.k() as usize];
    while let Some(done) = set.join_next().await {
        match done {
            Ok((i, Ok(d))) => parts[i as usize] = d,
            Ok((i, Err(e))) => {
                tracing::warn!(file = g.file, shard = i, "segment unreadable: {e}");
                return Err(Nfsstat3::Io);
            }
            Err(_) => return Err(Nfsstat3::Io),
        }
    }
    let mut out = Vec::with_capacity(g.stored_len as usize);
    for p in parts {
        out.extend_from_slice(&p);
    }
    if out.len() as u64 != g.stored_len {
        return Err(Nfsstat3::Io);
    }
    let b = Arc::new(out);
    s.reduced.keep_segment(key, b.clone());
    Ok(b)
}

/// Segments fetched for one group, as `reduce` reads them.
struct Fetched(HashMap<SegmentId, Arc<Vec<u8>>>);

impl reduce::SegmentSource for Fetched {
    fn segment(&self, id: &SegmentId) -> Option<std::borrow::Cow<'_, [u8]>> {
        self.0
            .get(id)
            .map(|b| std::borrow::Cow::Borrowed(b.as_slice()))
    }
}

/// `[offset, offset + count)` of the file (of length `len`), assembled here, part after part
/// (`first`: the part holding `offset`).
async fn assemble(
    s: &Arc<Shared>,
    cap: &ReducedCap,
    first: Arc<Known>,
    offset: u64,
    count: u64,
) -> Result<Vec<u8>, Nfsstat3> {
    let end = offset.saturating_add(count).min(first.len);
    let _turn = s.reduced.turns.acquire().await.map_err(|_| Nfsstat3::Io)?;
    let mut out = Vec::new();
    let (mut at, mut k) = (offset, first);
    while at < end {
        if !k.holds(at) {
            k = known(s, cap, at).await?;
        }
        out.extend(assemble_part(s, cap, &k, at - k.offset, end - at).await?);
        at = k.offset + k.plan.len();
    }
    Ok(out)
}

/// `[offset, offset + count)` of part `k` (offsets in the part), assembled here.
async fn assemble_part(
    s: &Arc<Shared>,
    cap: &ReducedCap,
    k: &Arc<Known>,
    offset: u64,
    count: u64,
) -> Result<Vec<u8>, Nfsstat3> {
    let Some(span) = k.plan.span(offset, count) else {
        return Ok(Vec::new());
    };
    let mut params = Params::new(DedupKey::from_bytes(s.cfg.secret.dedup_key()));
    params.data_key = None;
    let mut out = Vec::new();
    for group in k.plan.groups(&span, GROUP_SEGMENTS) {
        let mut source = Fetched(HashMap::new());
        let mut keys = Vec::new();
        for id in &group.segments {
            let g = k.segments.get(id).ok_or_else(|| {
                tracing::warn!(
                    file = cap.file.0,
                    "recipe names a segment the MDS did not place"
                );
                Nfsstat3::Io
            })?;
            keys.push((g.file, g.epoch));
            let fetched = fetch(s, g).await;
            let b = fetched.inspect_err(|_| s.reduced.forget_recipe((cap.file.0, cap.epoch)))?;
            source.0.insert(*id, b);
        }
        let (k2, p) = (k.clone(), params.clone());
        let bytes =
            tokio::task::spawn_blocking(move || k2.plan.assemble(group.chunks, &p, &source))
                .await
                .map_err(|_| Nfsstat3::Io)?;
        match bytes {
            Ok(b) => out.extend_from_slice(&b),
            Err(e) => {
                // Never bytes that fail their ids: drop what was fetched (a later READ fetches
                // again, rebuilding a shard that reads bad) and let the client go elsewhere.
                tracing::warn!(file = cap.file.0, epoch = cap.epoch, "reduced read: {e}");
                s.reduced.forget_segments(&keys);
                s.reduced.forget_recipe((cap.file.0, cap.epoch));
                return Err(Nfsstat3::Io);
            }
        }
    }
    Plan::cut(&span, &out).ok_or(Nfsstat3::Io)
}

fn attrs(s: &Shared, cap: &ReducedCap, len: u64) -> Fattr3 {
    super::shards::reads::read_only_attrs(s, cap.file.0, len, 0)
}

pub(crate) async fn getattr(s: &Arc<Shared>, a: Getattr3Args) -> Getattr3Res {
    let r = async {
        let cap = verify(s, &a.object)?;
        let k = known(s, &cap, 0).await?;
        Ok::<_, Nfsstat3>(attrs(s, &cap, k.len))
    };
    match r.await {
        Ok(obj_attributes) => Getattr3Res::Ok(Getattr3ResOk { obj_attributes }),
        Err(e) => Getattr3Res::Fail(e.code(), ()),
    }
}

pub(crate) async fn read(s: &Arc<Shared>, a: Read3Args) -> Read3Res {
    let r = async {
        let cap = verify(s, &a.file)?;
        let k = known(s, &cap, a.offset).await?;
        if a.offset >= k.len {
            return Ok((cap, k.len, Vec::new()));
        }
        let count = u64::from(a.count).min(MAX_READ);
        let len = k.len;
        let data = assemble(s, &cap, k, a.offset, count).await?;
        Ok::<_, Nfsstat3>((cap, len, data))
    };
    match r.await {
        Ok((cap, len, data)) => {
            s.counters.read(data.len() as u64);
            Read3Res::Ok(Read3ResOk {
                file_attributes: Some(attrs(s, &cap, len)),
                count: data.len() as u32,
                eof: a.offset.saturating_add(data.len() as u64) >= len,
                data: Opaque(data),
            })
        }
        Err(e) => Read3Res::Fail(e.code(), Default::default()),
    }
}
