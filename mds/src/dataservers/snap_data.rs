//! Snapshots' data images, the MDS's side (docs/plans/snapshots.md §3.3, §3.6): the gate
//! before a file's bytes change, the pass that finishes images a dead gate left half linked,
//! and the pass that deletes images no snapshot reads any more.
//!
//! **The gate** (`before_change`, here for data servers and `Data::before_change` for the
//! single node's own store): a change to a file's bytes first asks this replica whether the
//! file needs an image (`Namespace::gate_look`: a look at the file's shard and one at shard
//! 0's registry). Mostly it does not, and the change goes on. Otherwise the gate claims the file on every MDS node (writers
//! wait, `holds`), proposes `SnapKeep` (the image is recorded `linking`, its object X taken
//! from the shard's counter), links the file's object to X on every mirror
//! (`SHARDPROC_LINK`: hard links of the chunk files, which the data servers never change in
//! place again), and records `SnapKept`. Only then does the change go on. A change sees
//! "no image needed and none linking" only after `SnapKept` applied, so no byte changes
//! before every link is made. An erasure-coded or reduced file is copied back to mirrors
//! first (as the change itself would do), so its image is a mirrored one too; an evicted
//! file's change waits until it is back on flash (`Data::before_change`), which makes it
//! mirrored again. `SnapKeep` refuses the other forms, so no image ever names shards,
//! segments or a bucket copy that a later write would drop.
//!
//! Every path that changes a file's bytes needs a `Changing`, which only the gate makes (and
//! `Changing::preserving`, for the restorer, whose writes put back the bytes the file had).
//!
//! **Re-link** (`relink_pass`, on each shard's leader): an image still `linking` means a gate
//! died (kill -9) between `SnapKeep` and `SnapKept`; writes to that file stay refused by
//! every gate until the links are made, so the pass links again (idempotent) and records
//! `SnapKept`.
//!
//! **Removal** (`before_reaping`, asked by the reaper, `crate::orphans`): an orphan a live
//! snapshot saw linked keeps its bytes as that snapshot's image (`SnapAdopt`: the file's own
//! object becomes the image's, so nothing is copied), and the reaper forgets it without
//! deleting them; reclaim deletes them with the snapshot.
//!
//! **Reclaim** (`reclaim`, run by `Data::snapshot_passes`): an image no live cut reads any
//! more (`snap::image_serves`: its snapshots were deleted) has its object removed on each
//! mirror, then `SnapImageGone`.
//! Both facts are derived from replicated state, so a crash anywhere only repeats work.
use std::time::Duration;

use layout::{DsId, Rights};
use meta::namespace::{Command, FsError, Namespace, ShardId};
use meta_core::snap::{ImageForm, SnapId};
use meta_core::Time;
use proto::shard::{LinkArgs, ObjStat, ObjStatArgs};

use super::Cluster;
use crate::error::{NfsError, NfsResult};

/// A LINK is O(chunks) hard links and one directory sync: 256 links per GiB of file.
const LINK_CALL: Duration = Duration::from_secs(60);
/// An OBJSTAT is O(chunks) `stat`s.
const OBJSTAT_CALL: Duration = Duration::from_secs(30);
/// Images one pass finishes or reclaims per shard (the next pass takes the rest).
const PASS_MAX: usize = 256;
/// How often the passes run on a node.
pub(crate) const PASS_EVERY: Duration = Duration::from_secs(2);

/// Leave to change file `ino`'s bytes: the snapshot gate let the change through (every image
/// the file needed is made and linked). Only `before_change` (here and in `Data`) makes one,
/// and every call that changes a file's bytes takes one, so a new path that changes bytes
/// cannot be written without passing the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Changing {
    ino: u64,
}

impl Changing {
    pub fn ino(&self) -> u64 {
        self.ino
    }

    /// For a write that puts back the bytes the file already has (the restorer copies an
    /// evicted file's bytes from the bucket back to flash): its content does not change, so
    /// no snapshot needs an image first.
    pub(crate) fn preserving(ino: u64) -> Changing {
        Changing { ino }
    }

    /// Checks that this leave is for `ino` (a caller passing one file's leave for another is
    /// a bug that would skip the gate).
    pub(crate) fn check(&self, ino: u64) -> NfsResult<()> {
        if self.ino == ino {
            Ok(())
        } else {
            tracing::error!(
                ino,
                leave = self.ino,
                "a change of a file's bytes with another file's gate"
            );
            Err(NfsError::ServerFault)
        }
    }
}

/// Where a server keeps file bytes, for the image steps that touch them.
pub(crate) enum Store<'a> {
    Cluster(&'a Cluster),
    Local(&'a chunkstore::ChunkStore),
}

impl Store<'_> {
    fn keep(&self, ino: u64) -> Command {
        let time = Time::now();
        match self {
            Store::Cluster(_) => Command::SnapKeep { ino, time },
            Store::Local(_) => Command::SnapKeepLocal { ino, time },
        }
    }

    /// Links `ino`'s object to `object` on `mirrors` (none: the own store). Returns the
    /// mirrors that linked; an error if none did.
    async fn link(&self, ino: u64, object: u64, mirrors: &[u64]) -> NfsResult<Vec<u64>> {
        match self {
            Store::Local(s) => {
                s.link_object(ino, object).await?;
                Ok(Vec::new())
            }
            Store::Cluster(c) => {
                let mut linked = Vec::new();
                let mut first_err = None;
                for ds in mirrors {
                    if c.written_off(DsId(*ds)) {
                        continue;
                    }
                    match c.link_object_on(DsId(*ds), ino, object).await {
                        Ok(()) => linked.push(*ds),
                        Err(e) => {
                            first_err.get_or_insert(e);
                        }
                    }
                }
                if linked.is_empty() {
                    return Err(first_err.unwrap_or(NfsError::Io));
                }
                Ok(linked)
            }
        }
    }

    /// Deletes image object `object` from `mirrors` (none: the own store).
    pub(crate) async fn remove(&self, object: u64, mirrors: &[u64]) -> NfsResult<()> {
        match self {
            Store::Local(s) => {
                for (_, r) in s.remove_many(vec![object]).await? {
                    r?;
                }
                Ok(())
            }
            Store::Cluster(c) => {
                let mut first_err = None;
                for ds in mirrors.iter().filter(|d| !c.written_off(DsId(**d))) {
                    if let Err(e) = c.set_size_on(object, DsId(*ds), 0).await {
                        tracing::debug!(object, ds, "removing an image object: {e:?}");
                        first_err.get_or_insert(e);
                    }
                }
                first_err.map_or(Ok(()), Err)
            }
        }
    }
}

/// The gate's first look, with one barrier when this replica may not have the latest cut.
async fn look(ns: &Namespace, ino: u64) -> NfsResult<meta::namespace::GateLook> {
    let l = ns.gate_look(ino)?;
    if !l.lagging {
        return Ok(l);
    }
    // A snapshot was decided that this replica of the file's shard has not cut yet: ask the
    // leader how far the shard is, then look again (the cut may still be on its way: P0's
    // quiesce, when built, holds writes across it).
    ns.barrier(ShardId::of_ino(ino))
        .await
        .map_err(|_| NfsError::Delay)?;
    Ok(ns.gate_look(ino)?)
}

/// Whether `SnapKeep` can image the file as it is now (mirrored or without data): not
/// erasure-coded, reduced or evicted.
fn imageable(ns: &Namespace, ino: u64) -> NfsResult<bool> {
    let encoded = ns.stripes(ino)?.is_some_and(|c| c.is_encoded());
    let reduced = ns.reduced_extent(ino)?.is_some();
    let evicted = ns.tier(ino)?.is_some_and(|t| t.evicted);
    Ok(!(encoded || reduced || evicted))
}

/// The gate for a change of `ino`'s bytes in `store` (module comment). On data servers the
/// file is claimed while its image is made (`Delay` if a job or another node has it); the
/// single node needs no claim: a second writer's gate sees the image `linking` and links
/// again itself before it writes.
pub(crate) async fn before_change(
    ns: &Namespace,
    store: &Store<'_>,
    ino: u64,
) -> NfsResult<Changing> {
    let l = look(ns, ino).await?;
    if l.needs.is_none() && !l.linking {
        return Ok(Changing { ino });
    }
    if !imageable(ns, ino)? {
        match store {
            // Erasure-coded or reduced: the change would bring the file back to mirrors
            // first anyway (`mirrors_for`), so that copy, which changes no byte, comes before
            // the image, and the image is a mirrored one, linked like any other. The shards
            // or segments are dropped as after any write: the image does not need them.
            Store::Cluster(c) => c.back_to_mirrors(ns, ino).await?,
            // Evicted (`Data::before_change` waits for the bytes to come back; a file evicted
            // since that look waits too).
            Store::Local(_) => return Err(NfsError::Delay),
        }
    }
    let _claim = match store {
        Store::Cluster(c) => Some(c.claim(ns, ino).await.ok_or(NfsError::Delay)?),
        Store::Local(_) => None,
    };
    match ns.execute(store.keep(ino)).await {
        Ok(_) => {}
        // The file changed form (encoded, reduced, evicted) since the look: the retry sees it.
        Err(FsError::Invalid) => return Err(NfsError::Delay),
        Err(e) => return Err(e.into()),
    }
    finish_linking(ns, store, ino).await?;
    Ok(Changing { ino })
}

/// Links and records every image of `ino` still `linking`. Idempotent.
async fn finish_linking(ns: &Namespace, store: &Store<'_>, ino: u64) -> NfsResult<()> {
    for (snap, img) in ns.images(ino)? {
        let ImageForm::Mirrored {
            object,
            mirrors,
            linking: true,
        } = img.form
        else {
            continue;
        };
        let linked = store.link(ino, object, &mirrors).await?;
        if let Store::Cluster(_) = store {
            if linked.len() < mirrors.len() {
                // A mirror that could not link (down) holds no image: the image goes on on
                // those that did, as the file goes on without a failed mirror.
                tracing::warn!(
                    ino,
                    snap,
                    ?mirrors,
                    ?linked,
                    "image linked on fewer mirrors"
                );
                match ns
                    .execute(Command::SnapImageMirrors {
                        ino,
                        snap,
                        expect: mirrors.clone(),
                        mirrors: linked,
                    })
                    .await
                {
                    Ok(_) => {}
                    // Moved meanwhile: the next gate or pass links what it names now.
                    Err(FsError::Changed) => return Err(NfsError::Delay),
                    Err(e) => return Err(e.into()),
                }
            }
        }
        meta::failpoint::hit("snap-linked");
        ns.execute(Command::SnapKept { ino, snap }).await?;
        tracing::info!(ino, snap, object, "snapshot image of the file made");
    }
    Ok(())
}

/// What the reaper does with an orphan's bytes (`before_reaping`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reaping {
    /// No snapshot needs them: delete them, then forget the orphan.
    Remove,
    /// They are a snapshot's image now (`SnapAdopt`): forget the orphan, keep the bytes.
    Adopted,
    /// A snapshot needs them and they cannot be adopted yet (an erasure-coded, reduced or
    /// evicted file, the plan's step 7): keep the orphan, bytes and all, and ask again later.
    Kept,
}

/// Before the reaper deletes orphan `ino`'s bytes (module comment). `local`: the server's own
/// store holds them (`SnapAdopt`'s `local`).
///
/// The replica that applied the file's last unlink applied every cut before it, and a cut
/// after it sees the file at nlink 0, so this replica's `needs_image` "no" is final and the
/// common case (no snapshot saw the file) costs one look and no proposal; unless the "no" is
/// because the file is adopted already (another reaper: a restart's beside a last close's),
/// whose bytes stay. Where this node has no replica of the file's shard, `SnapAdopt` asks the
/// leader.
pub(crate) async fn before_reaping(ns: &Namespace, local: bool, ino: u64) -> NfsResult<Reaping> {
    let here = ns
        .snapshot()
        .and_then(|s| Ok((s.needs_image(ino)?, s.images(ino)?)));
    match here {
        Ok((_, images)) if meta_core::snap::adopted(&images, ino) => return Ok(Reaping::Adopted),
        Ok((None, _)) => return Ok(Reaping::Remove),
        _ => {}
    }
    let time = Time::now();
    match ns.execute(Command::SnapAdopt { ino, time, local }).await {
        Ok(o) if o.created => {
            tracing::info!(ino, "removed file kept as a snapshot's image");
            Ok(Reaping::Adopted)
        }
        Ok(_) => Ok(Reaping::Remove),
        Err(FsError::Invalid) => Ok(Reaping::Kept),
        // Forgotten meanwhile (another node's reaper): nothing of it is left to delete here.
        Err(FsError::Stale(_)) => Ok(Reaping::Adopted),
        Err(e) => Err(e.into()),
    }
}

impl Cluster {
    /// Brings erasure-coded or reduced file `ino` back to mirrors, which changes none of its
    /// bytes: the gate's step before it images the file. Any other form that is not mirrored
    /// (evicted, or changed since the look): `Delay`, and the retry looks again.
    async fn back_to_mirrors(&self, ns: &Namespace, ino: u64) -> NfsResult<()> {
        if let Some(code) = ns.stripes(ino)?.filter(|c| c.is_encoded()) {
            self.unencode(ns, ino, &code).await?;
        } else if let Some(red) = self.reduced(ns, ino)? {
            self.unreduce(ns, ino, red).await?;
        } else {
            return Err(NfsError::Delay);
        }
        tracing::info!(ino, "file back on mirrors for a snapshot's image");
        Ok(())
    }

    /// The gate before `ino`'s bytes change on data servers (module comment). `Delay` while
    /// another job holds the file or a node cannot be asked.
    pub async fn before_change(&self, ns: &Namespace, ino: u64) -> NfsResult<Changing> {
        before_change(ns, &Store::Cluster(self), ino).await
    }

    /// Finishes the images a gate left `linking` on the shards this node leads.
    pub(crate) async fn relink_pass(&self, ns: &Namespace) {
        for shard in led_shards(ns) {
            let Ok(todo) = ns
                .snapshot()
                .and_then(|s| s.linking_images(shard, PASS_MAX))
            else {
                continue;
            };
            let mut inos: Vec<u64> = todo.into_iter().map(|(i, _)| i).collect();
            inos.dedup();
            for ino in inos {
                let Some(_claim) = self.claim(ns, ino).await else {
                    continue;
                };
                match finish_linking(ns, &Store::Cluster(self), ino).await {
                    Ok(()) => tracing::info!(ino, "a half-linked snapshot image finished"),
                    Err(e) => tracing::debug!(ino, "image left linking for the next pass: {e:?}"),
                }
            }
        }
    }

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
    pub async fn object_stat_on(&self, ds: DsId, file: u64) -> NfsResult<ObjStat> {
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

    /// A read handle of image object `object` on `ds` (for tests and tools that read an
    /// image's bytes straight from a data server).
    pub fn image_handle(&self, object: u64, ds: DsId) -> Vec<u8> {
        self.handle(object, ds, Rights::Read)
    }
}

/// The shards this node leads.
pub(crate) fn led_shards(ns: &Namespace) -> Vec<ShardId> {
    let me = ns.node_id();
    ns.leaders()
        .into_iter()
        .filter(|(_, l)| *l == Some(me))
        .map(|(s, _)| ShardId(s))
        .collect()
}

/// The reclaim pass over `store` (module comment). `sweep(object)` runs after a mirrored
/// image's object is removed and before the image is forgotten: with a tier, it deletes the
/// pieces a snap-to-object cut short left in the bucket (`tiering::snap_archive`), which
/// nothing else would find once the record is gone.
pub(crate) async fn reclaim<F, Fut>(ns: &Namespace, store: &Store<'_>, sweep: &F)
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = NfsResult<()>>,
{
    for shard in led_shards(ns) {
        let Ok(todo) = ns
            .snapshot()
            .and_then(|s| s.unserved_images(shard, PASS_MAX))
        else {
            continue;
        };
        for (ino, snap, form) in todo {
            if let Err(e) = reclaim_one(ns, store, sweep, ino, snap, &form).await {
                tracing::debug!(ino, snap, "image reclaim left for the next pass: {e:?}");
            }
        }
    }
}

async fn reclaim_one<F, Fut>(
    ns: &Namespace,
    store: &Store<'_>,
    sweep: &F,
    ino: u64,
    snap: SnapId,
    form: &ImageForm,
) -> NfsResult<()>
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = NfsResult<()>>,
{
    match form {
        ImageForm::Mirrored {
            object, mirrors, ..
        } => {
            store.remove(*object, mirrors).await?;
            sweep(*object).await?;
        }
        ImageForm::Empty => {}
        // Its objects are in the bucket: the tier's pass deletes them and the record
        // (`tiering::snap_archive`).
        ImageForm::InBucket { .. } => return Ok(()),
    }
    meta::failpoint::hit("snap-image-removed");
    ns.execute(Command::SnapImageGone { ino, snap }).await?;
    tracing::info!(
        ino,
        snap,
        "snapshot image no snapshot reads any more: deleted"
    );
    Ok(())
}

/// The re-link pass for the single node's own store (`Data`): no claims there, a gate
/// meeting a `linking` image links again itself.
pub(crate) async fn relink_local(ns: &Namespace, store: &chunkstore::ChunkStore) {
    for shard in led_shards(ns) {
        let Ok(todo) = ns
            .snapshot()
            .and_then(|s| s.linking_images(shard, PASS_MAX))
        else {
            continue;
        };
        let mut inos: Vec<u64> = todo.into_iter().map(|(i, _)| i).collect();
        inos.dedup();
        for ino in inos {
            if let Err(e) = finish_linking(ns, &Store::Local(store), ino).await {
                tracing::debug!(ino, "image left linking for the next pass: {e:?}");
            }
        }
    }
}

/// How restore gave a new file the bytes a snapshot file had (`share`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shared {
    /// The new file's object is hard links of the image's chunk files, on the image's mirrors
    /// (or in the single node's own store): no byte copied; a later write to either file
    /// unshares the chunk it touches (the data servers never change a linked chunk in place).
    Linked,
    /// The file had no bytes anywhere at the snapshot: it reads as zeros up to its size.
    Empty,
    /// The bytes are in a form that cannot be linked (erasure-coded, reduced or evicted, and
    /// no image was made of them): the caller copies them.
    Copy,
}

/// Gives new file `new` the bytes file `old` had at snapshot `snap`, by sharing its data image
/// (`restore`, `docs/plans/snapshots.md` step 11). A file with no image at or above `snap`
/// still has its bytes from then as its live bytes: the gate makes it one first (a snapshot
/// `snap` is live, so it needs one), which freezes them and is what is linked; the image is
/// reclaimed with the snapshot like any other. Idempotent: linking again keeps the chunk
/// files there are, so a restore that died part way is finished by running it again.
pub(crate) async fn share(
    ns: &Namespace,
    store: &Store<'_>,
    snap: SnapId,
    old: u64,
    new: u64,
) -> NfsResult<Shared> {
    let mut gated = false;
    loop {
        let images = ns.images(old)?;
        match images.range(snap..).next().map(|(_, im)| im.form.clone()) {
            Some(ImageForm::Empty) => return Ok(Shared::Empty),
            // A gate died between its record and its links: the relink pass finishes it.
            Some(ImageForm::Mirrored { linking: true, .. }) => return Err(NfsError::Delay),
            Some(ImageForm::Mirrored {
                object, mirrors, ..
            }) => {
                let linked = store.link(object, new, &mirrors).await?;
                if let Store::Cluster(c) = store {
                    c.record_shared(ns, new, linked).await?;
                }
                return Ok(Shared::Linked);
            }
            // In the object store (snap-to-object): read back from there.
            Some(ImageForm::InBucket { .. }) => return Ok(Shared::Copy),
            None if gated || !imageable(ns, old)? => return Ok(Shared::Copy),
            None => {
                before_change(ns, store, old).await?;
                gated = true;
            }
        }
    }
}

impl Cluster {
    /// Records `linked` (the data servers that linked a new file's object) as the file's
    /// placement, unless it is that already (a restore run again); one mirror short is left
    /// to repair, as for a file that lost one.
    async fn record_shared(&self, ns: &Namespace, ino: u64, linked: Vec<u64>) -> NfsResult<()> {
        let _g = self.placing.lock().await;
        let cur = ns.chunk(ino, super::placement::FILE_RECORD)?;
        if cur.as_deref() != Some(&linked[..]) {
            match self
                .replace_mirrors(ns, ino, cur.as_deref(), linked.clone())
                .await
            {
                Ok(()) => {}
                Err(FsError::Changed) => return Err(NfsError::Delay),
                Err(e) => return Err(e.into()),
            }
        }
        if linked.len() < super::placement::MIRRORS {
            self.mark_degraded(ino);
        }
        Ok(())
    }
}
