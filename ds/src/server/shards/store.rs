//! Shard objects on this data server: a shard is a chunk-store object of its own, id derived
//! from (file, epoch, shard index), holding the DENSE shard (stripe after stripe, one unit
//! each). The chunk store keeps a blake3 per 4 KiB block as for any object, so a corrupt
//! block is never served: a read that touches it fails with `DsError::Corrupt`.
//!
//! Next to each shard, a header (`shards/<object id>`, XDR, written temp-fsync-rename-fsync):
//! the shard's identity and geometry, the file bytes the encoding covers, how much of the
//! dense shard has been sealed (its bytes checked against the sender's blake3 after they were
//! stored), and the placement of the file's k+m shards at this epoch. A shard without a
//! header, or bytes past its sealed end, are never served: a crash in the middle of an encode
//! leaves nothing readable.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use proto::shard::{ShardRef, ShardServer, MAX_STRIPE_SHARDS};
use proto::xdr::Xdr;

/// Check word of a header file ("cfs_shd1").
const HEADER_MAGIC: u64 = 0x6366_735f_7368_6431;
/// Headers kept in memory; past this the cache starts over (a reload is one small read).
const MAX_CACHED: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, proto::Xdr)]
pub(crate) struct ShardHeader {
    pub magic: u64,
    pub shard: ShardRef,
    /// File bytes the encoding covers (the end of the last sealed group).
    pub file_len: u64,
    /// Dense bytes of the shard checked and sealed, from 0.
    pub sealed_end: u64,
    #[xdr(max = MAX_STRIPE_SHARDS)]
    pub placement: Vec<ShardServer>,
}

impl ShardHeader {
    /// The dense bytes of this shard that may be served.
    pub(crate) fn servable_len(&self, g: &ec::Geometry) -> u64 {
        let stored = if self.shard.index < g.k() {
            g.data_shard_len(self.file_len, self.shard.index)
                .unwrap_or(0)
        } else {
            g.parity_shard_len(self.file_len)
        };
        stored.min(self.sealed_end)
    }
}

/// The geometry a shard reference names, if it is one `ec` accepts and the index is in it.
pub(crate) fn geometry(r: &ShardRef) -> Option<ec::Geometry> {
    if !(12..=26).contains(&r.unit_shift) {
        return None;
    }
    let g = ec::Geometry::new(r.k, r.m, 1u64 << r.unit_shift).ok()?;
    (r.index < g.width()).then_some(g)
}

/// The chunk-store object id of shard `index` of `file` at `epoch`. The top bit is set so it
/// can never be a file's own object (inode numbers stay below 2^63).
pub fn object_id(file: u64, epoch: u64, index: u32) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(b"cfs shard object v1");
    h.update(&file.to_be_bytes());
    h.update(&epoch.to_be_bytes());
    h.update(&index.to_be_bytes());
    let b = h.finalize();
    let mut a = [0u8; 8];
    a.copy_from_slice(&b.as_bytes()[..8]);
    u64::from_be_bytes(a) | (1 << 63)
}

pub(crate) struct ShardStore {
    dir: PathBuf,
    cache: Mutex<HashMap<u64, ShardHeader>>,
    /// Serialises header updates (SEAL, PLACE, REPAIR): read-modify-write of one file.
    write: tokio::sync::Mutex<()>,
}

impl ShardStore {
    pub(crate) fn open(data_dir: &Path) -> std::io::Result<ShardStore> {
        let dir = data_dir.join("shards");
        std::fs::create_dir_all(&dir)?;
        Ok(ShardStore {
            dir,
            cache: Mutex::new(HashMap::new()),
            write: tokio::sync::Mutex::new(()),
        })
    }

    fn path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id:016x}"))
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<u64, ShardHeader>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The header of shard object `id`, if this DS holds it.
    pub(crate) async fn header(&self, id: u64) -> std::io::Result<Option<ShardHeader>> {
        if let Some(h) = self.cache().get(&id) {
            return Ok(Some(h.clone()));
        }
        let bytes = match tokio::fs::read(self.path(id)).await {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let h = ShardHeader::from_xdr(&bytes)
            .ok()
            .filter(|h| h.magic == HEADER_MAGIC)
            .ok_or_else(|| std::io::Error::other(format!("shard header {id:016x} is damaged")))?;
        let mut c = self.cache();
        if c.len() >= MAX_CACHED {
            c.clear();
        }
        c.insert(id, h.clone());
        Ok(Some(h))
    }

    /// Header of shard `index` of (file, epoch), if held here and of the same geometry.
    pub(crate) async fn held(&self, r: &ShardRef) -> std::io::Result<Option<ShardHeader>> {
        let h = self.header(object_id(r.file, r.epoch, r.index)).await?;
        Ok(h.filter(|h| {
            (h.shard.k, h.shard.m, h.shard.unit_shift) == (r.k, r.m, r.unit_shift)
                && h.shard.index == r.index
        }))
    }

    /// Every shard of (file, epoch) held here, with the geometry of `r` (index ignored).
    pub(crate) async fn all_held(&self, r: &ShardRef) -> std::io::Result<Vec<ShardHeader>> {
        let mut out = Vec::new();
        for index in 0..r.k + r.m {
            if let Some(h) = self.held(&ShardRef { index, ..*r }).await? {
                out.push(h);
            }
        }
        Ok(out)
    }

    /// Records a sealed range: `[offset, offset + len)` of the dense shard has been checked.
    /// Ranges are sealed in order (group after group); one that leaves a gap is refused.
    pub(crate) async fn seal(
        &self,
        r: &ShardRef,
        file_len: u64,
        offset: u64,
        len: u64,
        placement: Vec<ShardServer>,
    ) -> std::io::Result<bool> {
        let _w = self.write.lock().await;
        let id = object_id(r.file, r.epoch, r.index);
        let mut h = self.header(id).await?.unwrap_or(ShardHeader {
            magic: HEADER_MAGIC,
            shard: *r,
            file_len: 0,
            sealed_end: 0,
            placement: Vec::new(),
        });
        if h.shard != *r || offset > h.sealed_end {
            return Ok(false);
        }
        h.sealed_end = h.sealed_end.max(offset.saturating_add(len));
        h.file_len = h.file_len.max(file_len);
        h.placement = placement;
        self.save(id, h).await?;
        Ok(true)
    }

    /// Replaces the placement of every shard of (file, epoch) held here; how many there were.
    pub(crate) async fn place(
        &self,
        file: u64,
        epoch: u64,
        placement: Vec<ShardServer>,
    ) -> std::io::Result<usize> {
        let _w = self.write.lock().await;
        let mut n = 0;
        for index in 0..placement.len() as u32 {
            let id = object_id(file, epoch, index);
            if let Some(mut h) = self.header(id).await? {
                h.placement = placement.clone();
                self.save(id, h).await?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Forgets the header of every shard of (file, epoch) here, durably: from then on none is
    /// served. The caller deletes the objects' bytes after. The ids that had a header or may
    /// hold bytes (every index a stripe can have: an aborted encode leaves unsealed PUTs).
    pub(crate) async fn forget_epoch(&self, file: u64, epoch: u64) -> std::io::Result<Vec<u64>> {
        let _w = self.write.lock().await;
        let ids: Vec<u64> = (0..MAX_STRIPE_SHARDS as u32)
            .map(|i| object_id(file, epoch, i))
            .collect();
        let mut gone = false;
        for id in &ids {
            self.cache().remove(id);
            match tokio::fs::remove_file(self.path(*id)).await {
                Ok(()) => gone = true,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        if gone {
            let dir = self.dir.clone();
            tokio::task::spawn_blocking(move || std::fs::File::open(&dir)?.sync_all())
                .await
                .map_err(std::io::Error::other)??;
        }
        Ok(ids)
    }

    async fn save(&self, id: u64, h: ShardHeader) -> std::io::Result<()> {
        let path = self.path(id);
        let tmp = self.dir.join(format!("{id:016x}.tmp"));
        let dir = self.dir.clone();
        let bytes = h.to_xdr();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(&dir)?.sync_all()
        })
        .await
        .map_err(std::io::Error::other)??;
        let mut c = self.cache();
        if c.len() >= MAX_CACHED {
            c.clear();
        }
        c.insert(id, h);
        Ok(())
    }
}
