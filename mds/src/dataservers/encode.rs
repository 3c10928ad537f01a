//! Erasure coding at rest (issue 13, docs/EC.md): the MDS's side. A file that has not changed
//! for `ClusterConfig::encode_after`, and that nobody may write without asking (no open for
//! writing, no RW layout, no write delegation), is Reed-Solomon coded by a data server that
//! holds a mirror copy (the shard program's ENCODE: the bytes go data server to data server,
//! never through the MDS); only once the record says so do the mirrors stop counting, and only
//! then are their copies deleted. A write to an encoded file first copies it back to mirrors
//! (`unencode`), so a client never holds an RW layout that names a shard.
//!
//! The work is derived from the records (`Namespace::encodable`, `codes_to_clean`), so a crash
//! anywhere leaves the next pass something to finish: an encode left under way is given up
//! (its mirrors were still authoritative), redundant mirror copies are deleted, and the shards
//! of an encoding that no longer counts are dropped before its record goes.
//!
//! One file at a time is claimed (`Claim`): while the encoder, the un-encoder or repair works on
//! it, writes to it wait (NFS4ERR_DELAY), as during repair.
use std::time::Duration;

use layout::{DsId, FileId, Rights, ShardCap, ShardKind};
use proto::shard::{EncodeArgs, ShardClient, ShardServer};

pub use super::jobs::geometry_for;
use super::placement::{FILE_RECORD, MIRRORS};
use super::reduce::{ReduceOutcome, ReducePolicy, MIN_REDUCED_SIZE};
use super::Cluster;
use crate::error::{NfsError, NfsResult};
use meta::namespace::{Command, Encoded, FileCode, Namespace, Time};

/// log2 of the shard unit: 1 MiB (docs/EC.md "Choice of the shard unit").
pub const UNIT_SHIFT: u8 = 20;
/// File bytes per encode job (the data servers take at most 1 GiB per ENCODE).
pub(crate) const SPAN: u64 = 1 << 30;
/// Files the encoder remembers leaving as they are (`left_as_is`).
const LEFT_AS_IS: usize = 1 << 16;
/// Files encoded per pass: a pass also cleans up, and must come round again soon.
const FILES_PER_PASS: usize = 4;
const SHARD_CONNECT: Duration = Duration::from_secs(2);
/// One ENCODE covers up to `SPAN` bytes: ~10 s at the 100 MiB/s measured on this machine.
const ENCODE_CALL: Duration = Duration::from_secs(120);
/// Bytes the MDS moves per call when it copies an encoded file back to mirrors.
const COPY_IO: u32 = 1 << 20;

/// The smallest file worth coding with k+m at `unit`: parity must cost less than the second
/// mirror copy it replaces (m units of parity for a file of one stripe or less).
pub fn min_encoded_size(m: u8) -> u64 {
    u64::from(m) * (1u64 << UNIT_SHIFT) + 1
}

impl Cluster {
    /// Where the shards of `code` live, as the data servers record it (id and address of each).
    pub(crate) fn shard_servers(&self, placement: &[u64]) -> NfsResult<Vec<ShardServer>> {
        placement
            .iter()
            .map(|d| {
                let addr = self
                    .registry
                    .listen_addr(DsId(*d))
                    .ok_or(NfsError::LayoutUnavailable)?;
                Ok(ShardServer {
                    ds_id: *d,
                    addr: addr.to_string(),
                })
            })
            .collect()
    }

    pub(crate) async fn shard_client(&self, ds: DsId, call: Duration) -> NfsResult<ShardClient> {
        let addr = self
            .registry
            .listen_addr(ds)
            .ok_or(NfsError::LayoutUnavailable)?;
        ShardClient::connect(addr, SHARD_CONNECT, call)
            .await
            .map_err(|e| {
                tracing::warn!(ds = %ds, "cannot reach data server's shard program: {e}");
                NfsError::Io
            })
    }

    /// A shard handle of `code` for `ds` (which must hold a shard of it).
    pub(crate) fn shard_handle(
        &self,
        ino: u64,
        code: &FileCode,
        kind: ShardKind,
        ds: DsId,
    ) -> NfsResult<[u8; layout::SHARD_CAP_LEN]> {
        let placement = layout::placement_id(&self.shard_servers(&code.placement)?);
        ShardCap {
            file: FileId(ino),
            kind,
            k: code.k,
            m: code.m,
            unit_shift: code.unit_shift,
            epoch: code.epoch,
            placement,
            key_id: 0,
        }
        .mint(&self.cap_key, ds)
        .ok_or(NfsError::ServerFault)
    }

    /// The data servers that can serve the whole of an encoded file (`assembled` handles),
    /// preferred first: those holding one of its shards that are up, ranked for the file so
    /// that its readers spread over them.
    pub fn assemblers(&self, ino: u64, code: &FileCode) -> Vec<DsId> {
        let mut up: Vec<DsId> = code
            .placement
            .iter()
            .map(|d| DsId(*d))
            .filter(|d| self.registry.is_up(*d))
            .collect();
        // Rotate by the file, so files' assemblers spread over the shard holders.
        if !up.is_empty() {
            let r = (ino % up.len() as u64) as usize;
            up.rotate_left(r);
        }
        up
    }

    /// One pass of the encoder: finishes what records say is left (a crash), then encodes up
    /// to `FILES_PER_PASS` files that are due. `in_use`: whether someone may write the file
    /// without asking; `recall`: recalls a file's layouts.
    pub async fn encode_pass(
        &self,
        ns: &Namespace,
        in_use: &(dyn Fn(u64) -> bool + Sync),
        recall: &(dyn Fn(u64) + Sync),
    ) {
        // Clean-up runs even with encoding switched off: records from before still name data.
        match ns.codes_to_clean() {
            Ok(codes) => {
                for (ino, code) in codes.into_iter().filter(|(i, _)| ns.leads_file(*i)) {
                    if let Err(e) = self.clean(ns, ino, &code).await {
                        tracing::debug!(ino, "encoding clean-up will be retried: {e:?}");
                    }
                }
            }
            Err(e) => tracing::warn!("cannot scan encoding records: {e:?}"),
        }
        self.clean_reduces(ns).await;
        let Some(after) = self.cfg.encode_after else {
            return;
        };
        if !self.key_ready() {
            // Sealing, and the data key not known yet: nothing is stored in plaintext.
            return;
        }
        let up = self.registry.placement_map().up().count();
        let Some((k, m)) = geometry_for(up) else {
            return;
        };
        let now = Time::now();
        let before = Time::new(
            now.secs
                .saturating_sub(i64::try_from(after.as_secs()).unwrap_or(i64::MAX)),
            now.nsecs,
        );
        // Reduction pays from a block up; parity only past a stripe. The bound is the
        // cluster's: scanning from a block with reduction off would hand every pass the
        // small files first (each left as it is, none encoded) on a file system full of
        // them, for the few a `user.cfs.reduce` of their own would reduce. A file too small
        // for what its own policy does is left as it is. Sealing takes every file: a small
        // one costs a stripe of segment shards, but leaves no plaintext.
        let min = if self.sealing() {
            1
        } else if self.cfg.reduce != ReducePolicy::Off {
            MIN_REDUCED_SIZE
        } else {
            min_encoded_size(m)
        };
        let skip = |ino, change| self.left_as_is(ino, change);
        let due = match ns.encodable(min, before, FILES_PER_PASS * 4, &skip) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!("cannot scan for files to encode: {e:?}");
                return;
            }
        };
        let mut done = 0;
        for ino in due {
            if done >= FILES_PER_PASS {
                break;
            }
            // The file's shard leader encodes it; `in_use` sees this node's clients only,
            // the claim asks the other nodes.
            if !ns.leads_file(ino) || in_use(ino) {
                continue;
            }
            let policy = self.reduce_policy(ns, ino);
            if policy != ReducePolicy::Off {
                match self
                    .reduce_file(ns, ino, policy, before, in_use, recall)
                    .await
                {
                    Ok(ReduceOutcome::Reduced) => {
                        done += 1;
                        continue;
                    }
                    Ok(ReduceOutcome::NotNow) => continue,
                    Ok(ReduceOutcome::Declined) => {}
                    Err(e) => {
                        tracing::warn!(ino, "reduce failed, the file stays mirrored: {e:?}");
                        continue;
                    }
                }
            }
            // Not reduced (its policy is off, or the reducer declined it): encoded as it is
            // if parity pays for it, else left mirrored until it changes (not scanned again
            // meanwhile).
            match ns.getattr(ino) {
                Ok(i) if i.size < min_encoded_size(m) => {
                    self.leave_as_is(ino, i.change);
                    continue;
                }
                Ok(_) => {}
                Err(_) => continue,
            }
            match self
                .encode_file(ns, ino, (k, m), before, in_use, recall)
                .await
            {
                Ok(true) => done += 1,
                Ok(false) => {}
                Err(e) => tracing::warn!(ino, "encode failed, the file stays mirrored: {e:?}"),
            }
        }
    }

    /// Whether `ino` was left mirrored at change `change` (declined by the reducer, too small
    /// for parity): the encoder's scan passes it by until it changes.
    fn left_as_is(&self, ino: u64, change: u64) -> bool {
        self.left_as_is
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&ino)
            == Some(&change)
    }

    fn leave_as_is(&self, ino: u64, change: u64) {
        let mut m = self.left_as_is.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded: past this the scan takes them again (and declines them again).
        if m.len() >= LEFT_AS_IS {
            m.clear();
        }
        m.insert(ino, change);
    }

    /// Finishes what an encoding record still asks for, unless another job has the file.
    async fn clean(&self, ns: &Namespace, ino: u64, code: &FileCode) -> NfsResult<()> {
        let Some(_claim) = self.claim(ns, ino).await else {
            return Ok(());
        };
        self.clean_claimed(ns, ino, code).await
    }

    /// `clean` for a file the caller has claimed.
    async fn clean_claimed(&self, ns: &Namespace, ino: u64, code: &FileCode) -> NfsResult<()> {
        let epoch = code.epoch;
        if code.encoding.is_some() {
            // Passes run one at a time and a claimed file has no other job: one left by a
            // crash. Aborting retires it; the next pass drops its shards.
            ns.execute(Command::AbortEncode { ino, epoch }).await?;
            tracing::info!(ino, epoch, "encode left under way by a restart given up");
            return Ok(());
        }
        if !code.stale_copies.is_empty() {
            self.delete_copies(ino, &code.stale_copies).await?;
            ns.execute(Command::CopiesTrimmed { ino, epoch }).await?;
            tracing::info!(ino, copies = ?code.stale_copies, "mirror copies of an encoded file deleted");
        }
        if code.retired {
            self.drop_shards(ino, code).await?;
            ns.execute(Command::ShardsDropped { ino, epoch }).await?;
            tracing::info!(ino, epoch, "shards of a retired encoding dropped");
        }
        Ok(())
    }

    /// Deletes the shards of `code` on every data server of its placement; fails if one could
    /// not (the others are done anyway: a server that is down must not keep the rest).
    pub(crate) async fn drop_shards(&self, ino: u64, code: &FileCode) -> NfsResult<()> {
        self.drop_shard_set(ino, code.epoch, &code.placement).await
    }

    /// Encodes `ino` with k+m if it is still due; true when it was.
    async fn encode_file(
        &self,
        ns: &Namespace,
        ino: u64,
        (k, m): (u8, u8),
        before: Time,
        in_use: &(dyn Fn(u64) -> bool + Sync),
        recall: &(dyn Fn(u64) + Sync),
    ) -> NfsResult<bool> {
        let Some(claim) = self.claim(ns, ino).await else {
            return Ok(false);
        };
        let Some(rec) = ns.chunk(ino, FILE_RECORD)? else {
            return Ok(false);
        };
        let sources: Vec<DsId> = rec
            .iter()
            .map(|d| DsId(*d))
            .filter(|d| self.registry.is_up(*d))
            .collect();
        if sources.is_empty() || sources.len() < rec.len() {
            // Every recorded copy up: the encode reads one and deletes them all right after.
            return Ok(false);
        }
        let map = self.registry.placement_map();
        let placed = layout::place(&map, FileId(ino), 1, usize::from(k + m))
            .map_err(|_| NfsError::LayoutUnavailable)?;
        if placed.targets.len() != usize::from(k + m) {
            return Ok(false);
        }
        let placement: Vec<u64> = placed.targets.iter().map(|d| d.0).collect();
        // Shards take flash as mirrors do, and the mirrors go only once every shard is in.
        let shard = ns.getattr(ino)?.size.div_ceil(u64::from(k.max(1)));
        if !self.flash_fits(&placement, shard) {
            tracing::debug!(ino, "encode waits: its shards do not fit in flash");
            return Ok(false);
        }
        let servers = self.shard_servers(&placement)?;
        let Some(i) = self
            .fenced_and_quiet(ns, ino, &claim, before, in_use)
            .await?
        else {
            return Ok(false);
        };
        let size = i.size;
        let groups = size.div_ceil(SPAN);
        ns.execute(Command::BeginEncode {
            ino,
            first: 0,
            end: groups,
            k,
            m,
            unit_shift: UNIT_SHIFT,
            placement: placement.clone(),
            time: Time::now(),
        })
        .await?;
        let epoch = ns
            .stripes(ino)?
            .filter(|c| c.encoding.is_some())
            .map(|c| c.epoch)
            .ok_or(NfsError::ServerFault)?;
        tracing::info!(ino, bytes = size, k, m, epoch, "encoding file");
        let encoded = self
            .run_encode(ino, epoch, (k, m), size, &sources, servers)
            .await;
        let done = match encoded {
            Ok(done) => done,
            Err(e) => {
                let _ = ns.execute(Command::AbortEncode { ino, epoch }).await;
                return Err(e);
            }
        };
        if let Err(e) = claim.check() {
            // A writer of another node may have changed the mirrors behind the encode's back.
            let _ = ns.execute(Command::AbortEncode { ino, epoch }).await;
            return Err(e);
        }
        if let Err(e) = ns.execute(Command::FinishEncode { ino, epoch, done }).await {
            // Changed under us (its size moved): the mirrors stay, the shards go.
            let _ = ns.execute(Command::AbortEncode { ino, epoch }).await;
            return Err(e.into());
        }
        tracing::info!(ino, bytes = size, k, m, epoch, "file erasure-coded");
        if !self.mirrors_retired(ino, &claim, recall).await {
            return Ok(true);
        }
        if let Some(code) = ns.stripes(ino)? {
            if let Err(e) = self.clean_claimed(ns, ino, &code).await {
                tracing::debug!(ino, "mirror copies left for the next pass: {e:?}");
            }
        }
        Ok(true)
    }

    /// The ENCODE jobs, group after group (the data servers seal shards in order), each sent to
    /// a data server holding a mirror copy.
    async fn run_encode(
        &self,
        ino: u64,
        epoch: u64,
        (k, m): (u8, u8),
        size: u64,
        sources: &[DsId],
        servers: Vec<ShardServer>,
    ) -> NfsResult<Vec<Encoded>> {
        let mut done = Vec::new();
        let mut offset = 0;
        let mut group = 0;
        while offset < size {
            let len = (size - offset).min(SPAN);
            let mut result = Err(NfsError::Io);
            for src in sources {
                let c = match self.shard_client(*src, ENCODE_CALL).await {
                    Ok(c) => c,
                    Err(e) => {
                        result = Err(e);
                        continue;
                    }
                };
                let r = c
                    .encode(&self.cfg.secret.sign_shard(EncodeArgs {
                        to: src.0,
                        file: ino,
                        epoch,
                        k: u32::from(k),
                        m: u32::from(m),
                        unit_shift: u32::from(UNIT_SHIFT),
                        offset,
                        len,
                        file_len: offset + len,
                        placement: servers.clone(),
                        mac: [0; 32],
                    }))
                    .await;
                c.close();
                match r {
                    Ok(sums) => {
                        result = Ok(sums);
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(ino, ds = %src, offset, "ENCODE failed: {e}");
                        result = Err(NfsError::Io);
                    }
                }
            }
            done.push(Encoded {
                group,
                len,
                sums: result?,
            });
            offset += len;
            group += 1;
        }
        Ok(done)
    }

    /// Brings an encoded file back to mirrors before it is written: its bytes, read from the
    /// shards through an assembling data server, are copied to two new mirrors, the mirrors are
    /// recorded (which retires the encoding), the file's layouts are recalled and its shards
    /// dropped. Returns the new mirrors. The caller must not hold `placing`.
    pub(crate) async fn unencode(
        &self,
        ns: &Namespace,
        ino: u64,
        code: &FileCode,
    ) -> NfsResult<Vec<DsId>> {
        let Some(claim) = self.claim(ns, ino).await else {
            return Err(NfsError::Delay);
        };
        let size = code.file_len();
        let mut copied = None;
        // A target that fails is marked down (`conn`), so the next attempt places around it:
        // a data server that died moments ago may not be counted down yet.
        'attempts: for _ in 0..3 {
            let map = self.registry.placement_map();
            let targets = match layout::place(&map, FileId(ino), FILE_RECORD, MIRRORS) {
                Ok(p) if !p.targets.is_empty() => p.targets,
                _ => return Err(NfsError::NoSpc),
            };
            for src in self.assemblers(ino, code) {
                match self.copy_from_shards(ino, code, src, &targets, size).await {
                    Ok(()) => {
                        copied = Some(targets);
                        break 'attempts;
                    }
                    Err(e) => tracing::warn!(ino, ds = %src, "copy from shards failed: {e:?}"),
                }
                if targets.iter().any(|t| !self.registry.is_up(*t)) {
                    continue 'attempts;
                }
            }
            break;
        }
        let Some(targets) = copied else {
            return Err(NfsError::Io);
        };
        let _g = self.placing.lock().await;
        claim.check()?;
        // An encoded file has no mirror record (`FinishEncode` removes it).
        let mirrors = targets.iter().map(|d| d.0).collect();
        self.replace_mirrors(ns, ino, None, mirrors).await?;
        tracing::info!(ino, bytes = size, mirrors = ?targets, "encoded file copied back to mirrors for a write");
        // Other nodes' readers hold shard layouts: recalled there (the dropped epoch makes
        // their handles stale anyway).
        let _ = claim.refence().await;
        // Readers' shard layouts must not outlive the encoding: the shards go now if they can
        // (a handle of a dropped epoch answers STALE), else at the next encoder pass.
        if let Err(e) = self.drop_shards(ino, code).await {
            tracing::debug!(ino, "shards left for the next pass: {e:?}");
        } else {
            let _ = ns
                .execute(Command::ShardsDropped {
                    ino,
                    epoch: code.epoch,
                })
                .await;
        }
        Ok(targets)
    }

    async fn copy_from_shards(
        &self,
        ino: u64,
        code: &FileCode,
        src: DsId,
        targets: &[DsId],
        size: u64,
    ) -> NfsResult<()> {
        let fh = self.shard_handle(ino, code, ShardKind::Assembled, src)?;
        let from = self.conn(src).await?;
        let io = |e: proto::nfs3_client::Nfs3ClientError| {
            tracing::warn!(ino, "copy from shards: {e}");
            NfsError::Io
        };
        let mut to = Vec::new();
        for t in targets {
            let c = self.conn(*t).await?;
            let h = self.handle(ino, *t, Rights::ReadWrite);
            // Whatever the DS holds of this file from before (a stale copy) goes first.
            c.set_size(&h, 0).await.map_err(io)?;
            to.push((c, h));
        }
        let mut off = 0;
        while off < size {
            let want = (size - off).min(u64::from(COPY_IO)) as u32;
            let r = from.read(&fh, off, want).await.map_err(io)?;
            if r.data.is_empty() {
                return Err(NfsError::Io);
            }
            for (c, h) in &to {
                c.write(h, off, &r.data, proto::nfs3::StableHow::Unstable)
                    .await
                    .map_err(io)?;
            }
            off += r.data.len() as u64;
        }
        for (c, h) in &to {
            c.set_size(h, size).await.map_err(io)?;
            c.commit(h, 0, 0).await.map_err(io)?;
        }
        Ok(())
    }

    /// Reads `[offset, offset + len)` of encoded file `ino` through an assembling data server.
    pub(crate) async fn read_encoded(
        &self,
        ino: u64,
        code: &FileCode,
        offset: u64,
        len: u64,
    ) -> NfsResult<Vec<u8>> {
        let mut last = NfsError::Io;
        for ds in self.assemblers(ino, code) {
            let fh = self.shard_handle(ino, code, ShardKind::Assembled, ds)?;
            match self.read_span_with(ds, &fh, offset, len).await {
                Ok(d) => return Ok(d),
                Err(e) => {
                    tracing::warn!(ino, ds = %ds, "read of an encoded file failed: {e:?}");
                    last = e;
                }
            }
        }
        Err(last)
    }
}
