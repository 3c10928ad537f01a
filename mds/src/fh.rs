//! NFSv4 file handles. Persistent (they survive restarts, fh_expire_type 0), because inode
//! numbers are never reused and the key that authenticates them is kept in the data directory.
//!
//! Wire format (40 bytes), big-endian:
//!
//! | bytes | field |
//! |---|---|
//! | 0..4 | magic "cfs2" |
//! | 4..12 | file system instance (created once, with the data directory) |
//! | 12..16 | export id ([`crate::export::Export::id`]; 0 for a pseudo-file-system directory) |
//! | 16..24 | inode |
//! | 24..40 | keyed blake3 over bytes 0..24, truncated to 128 bits |
//!
//! An object inside a snapshot (issue 48, `docs/plans/snapshots.md` §4.1) has a 48-byte
//! handle: magic "cfsS", the same fields at the same places (so the v3 gateway's export check
//! reads bytes 12..16 of either), the snapshot id at 24..32 (`SNAPSHOT_DIR` = u64::MAX names
//! the `.snapshot` directory of the inode, a snapshot root), and the MAC over bytes 0..32 at
//! 32..48. Both fit NFSv3's 64 bytes. The snapshot's cut is replicated state and the key is
//! the file system's, so these handles survive restarts and failovers like the others; a
//! deleted snapshot makes them stale (`nfs::ops::snap`).
//!
//! Why a MAC: a handle that only named an inode let any client build one for an object outside
//! the export it may use (or for the real root) and PUTFH it. Parent pointers cannot stand in
//! for a subtree check, because a regular file has none (it may have several names). So the
//! server only accepts handles it minted, and each names the export it was minted in: PUTFH
//! then checks that export against the ones the client's address may use. Handles of earlier
//! builds ("cfs1") are answered NFS4ERR_STALE: clients must remount after the upgrade.
use std::io::{Read, Write};
use std::path::Path;

const MAGIC: [u8; 4] = *b"cfs2";
const SNAP_MAGIC: [u8; 4] = *b"cfsS";
const OLD_MAGIC: [u8; 4] = *b"cfs1";
const BODY_LEN: usize = 24;
const SNAP_BODY_LEN: usize = 32;
const MAC_LEN: usize = 16;
pub const FH_LEN: usize = BODY_LEN + MAC_LEN;
/// The length of a handle of an object inside a snapshot.
pub const SNAP_FH_LEN: usize = SNAP_BODY_LEN + MAC_LEN;
/// The snapshot field of the handle of a snapshot root's `.snapshot` directory.
pub const SNAPSHOT_DIR: u64 = u64::MAX;
/// Domain separation: the key is used for nothing else, but say what is being authenticated.
const CONTEXT: &[u8] = b"cfs nfs4 file handle v2";
/// The key's file in the data directory.
pub const KEY_FILE: &str = "fh.key";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileHandle {
    /// Identifies the file system instance (created once, with the data directory).
    pub fs_id: u64,
    /// The export the handle was handed out in (0: the pseudo file system).
    pub export: u32,
    pub ino: u64,
    /// Inside snapshot `snap` (`SNAPSHOT_DIR`: the `.snapshot` directory of `ino`); `None`:
    /// the live file system.
    pub snap: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FhError {
    /// Not one we minted: wrong length or magic, or the MAC does not verify (NFS4ERR_BADHANDLE).
    Bad,
    /// From another file system instance or an earlier handle format (NFS4ERR_STALE).
    Stale,
}

/// The per-file-system secret handles are authenticated with.
#[derive(Clone)]
pub struct FhKey([u8; 32]);

impl std::fmt::Debug for FhKey {
    /// Never print the bytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FhKey(..)")
    }
}

impl FhKey {
    pub fn new(bytes: [u8; 32]) -> FhKey {
        FhKey(bytes)
    }

    /// Reads `dir/fh.key`, creating it (32 random bytes, mode 0600, durable before use) on
    /// the first start. Losing the file makes every handle clients hold stale.
    pub fn load_or_create(dir: &Path) -> std::io::Result<FhKey> {
        let path = dir.join(KEY_FILE);
        match std::fs::read(&path) {
            Ok(b) => {
                let bytes: [u8; 32] = b.as_slice().try_into().map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{} is not a 32-byte key", path.display()),
                    )
                })?;
                return Ok(FhKey(bytes));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut bytes = [0u8; 32];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
        let tmp = dir.join(format!("{KEY_FILE}.tmp"));
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()?;
        Ok(FhKey(bytes))
    }

    fn mac(&self, body: &[u8]) -> [u8; MAC_LEN] {
        let mut h = blake3::Hasher::new_keyed(&self.0);
        h.update(CONTEXT);
        h.update(body);
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&h.finalize().as_bytes()[..MAC_LEN]);
        out
    }
}

impl FileHandle {
    pub fn encode(&self, key: &FhKey) -> Vec<u8> {
        let mut v = Vec::with_capacity(SNAP_FH_LEN);
        v.extend_from_slice(match self.snap {
            None => &MAGIC,
            Some(_) => &SNAP_MAGIC,
        });
        v.extend_from_slice(&self.fs_id.to_be_bytes());
        v.extend_from_slice(&self.export.to_be_bytes());
        v.extend_from_slice(&self.ino.to_be_bytes());
        if let Some(s) = self.snap {
            v.extend_from_slice(&s.to_be_bytes());
        }
        let mac = key.mac(&v);
        v.extend_from_slice(&mac);
        v
    }

    /// Parses and authenticates a handle a client sent, of either format. Bounded work
    /// whatever `b` is: two length checks, one MAC over at most 32 bytes.
    pub fn decode(b: &[u8], fs_id: u64, key: &FhKey) -> Result<FileHandle, FhError> {
        if b.len() == 20 && b[..4] == OLD_MAGIC {
            return Err(FhError::Stale);
        }
        let body = match (b.len(), b.get(..4)) {
            (FH_LEN, Some(m)) if m == MAGIC => BODY_LEN,
            (SNAP_FH_LEN, Some(m)) if m == SNAP_MAGIC => SNAP_BODY_LEN,
            _ => return Err(FhError::Bad),
        };
        let got_fs = u64::from_be_bytes(field(&b[4..12]));
        if got_fs != fs_id {
            // Another instance's handle (the data directory was recreated): not forged, gone.
            return Err(FhError::Stale);
        }
        let want = key.mac(&b[..body]);
        // Constant-time comparison: a timing oracle would let a client forge byte by byte.
        let diff = want
            .iter()
            .zip(&b[body..])
            .fold(0u8, |acc, (x, y)| acc | (x ^ y));
        if diff != 0 {
            return Err(FhError::Bad);
        }
        Ok(FileHandle {
            fs_id,
            export: u32::from_be_bytes(field(&b[12..16])),
            ino: u64::from_be_bytes(field(&b[16..24])),
            snap: (body == SNAP_BODY_LEN).then(|| u64::from_be_bytes(field(&b[24..32]))),
        })
    }
}

/// A fixed-size field of a slice whose length was checked by the caller.
fn field<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[..N]);
    a
}

tokio::task_local! {
    /// The export id handles encoded by the running operation carry (GETATTR's and READDIR's
    /// `filehandle` attribute): the export of the current file handle, set by `ops::dispatch`.
    static ENCODING_EXPORT: u32;
}

/// Runs `f` with `export` as the export of the handles it encodes.
pub async fn encoding_in<F: std::future::Future>(export: u32, f: F) -> F::Output {
    ENCODING_EXPORT.scope(export, f).await
}

/// Runs `f` with `export` as the export of the handles it encodes (synchronous code).
pub fn encoding_in_sync<R>(export: u32, f: impl FnOnce() -> R) -> R {
    ENCODING_EXPORT.sync_scope(export, f)
}

/// What this server hands out file handles with: its file system id, the key that
/// authenticates them, and the export each recently opened file was opened in. One per node,
/// shared by the operation handlers and the callbacks (`state::recall`).
#[derive(Debug)]
pub struct Handles {
    pub fs_id: u64,
    /// Authenticates the file handles this server hands out.
    pub key: FhKey,
    /// The export each recently opened file was opened in (callbacks carry its handle).
    pub recent: RecentExports,
    /// The export of a handle made outside an operation for a file `recent` forgot.
    default_export: u32,
}

impl Handles {
    pub fn new(fs_id: u64, key: FhKey, default_export: u32) -> Handles {
        Handles {
            fs_id,
            key,
            recent: RecentExports::default(),
            default_export,
        }
    }

    /// The handle of `ino` in `export`.
    pub fn handle(&self, export: u32, ino: u64) -> proto::nfs4::basic::NfsFh4 {
        self.handle_at(export, ino, None)
    }

    /// The handle of `ino` in `export`, inside snapshot `snap` if given (`FileHandle::snap`).
    pub fn handle_at(
        &self,
        export: u32,
        ino: u64,
        snap: Option<u64>,
    ) -> proto::nfs4::basic::NfsFh4 {
        let fh = FileHandle {
            fs_id: self.fs_id,
            export,
            ino,
            snap,
        };
        proto::nfs4::basic::NfsFh4(proto::xdr::Opaque(fh.encode(&self.key)))
    }

    /// The handle of `ino` as the running operation hands it out; outside an operation (a
    /// callback), in the export `ino` was last handed out in as far as `recent` remembers,
    /// else the first export (the only one, in the usual single-export setup).
    pub fn handle_of(&self, ino: u64) -> proto::nfs4::basic::NfsFh4 {
        let export = ENCODING_EXPORT
            .try_with(|e| *e)
            .ok()
            .or_else(|| self.recent.get(ino))
            .unwrap_or(self.default_export);
        self.handle(export, ino)
    }
}

/// Which export a client opened a file in, for the handle a callback about it carries (the
/// client finds the file by comparing handle bytes). Bounded: the oldest entries go first.
#[derive(Debug, Default)]
pub struct RecentExports {
    inner: std::sync::Mutex<RecentInner>,
}

#[derive(Debug, Default)]
struct RecentInner {
    map: std::collections::HashMap<u64, u32>,
    order: std::collections::VecDeque<u64>,
}

/// Enough for every file with delegations or layouts out on a busy server; 1.5 MiB at most.
const RECENT_MAX: usize = 65536;

impl RecentExports {
    /// Only needed with more than one export: callers skip it otherwise.
    pub fn note(&self, ino: u64, export: u32) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if g.map.insert(ino, export).is_none() {
            g.order.push_back(ino);
            if g.order.len() > RECENT_MAX {
                if let Some(old) = g.order.pop_front() {
                    g.map.remove(&old);
                }
            }
        }
    }

    pub fn get(&self, ino: u64) -> Option<u32> {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.map.get(&ino).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_rejections() {
        let key = FhKey::new([7; 32]);
        let fh = FileHandle {
            fs_id: 7,
            export: 3,
            ino: 42,
            snap: None,
        };
        assert_eq!(fh.encode(&key).len(), FH_LEN);
        assert_eq!(FileHandle::decode(&fh.encode(&key), 7, &key), Ok(fh));
        assert_eq!(
            FileHandle::decode(&fh.encode(&key), 8, &key),
            Err(FhError::Stale)
        );
        assert_eq!(FileHandle::decode(b"junk", 7, &key), Err(FhError::Bad));
        let mut b = fh.encode(&key);
        b[0] = b'x';
        assert_eq!(FileHandle::decode(&b, 7, &key), Err(FhError::Bad));
        // Another inode or export with the old MAC: forged.
        for at in [13, 23, 39] {
            let mut b = fh.encode(&key);
            b[at] ^= 1;
            assert_eq!(FileHandle::decode(&b, 7, &key), Err(FhError::Bad), "{at}");
        }
        // Another key: forged.
        let other = FhKey::new([8; 32]);
        assert_eq!(
            FileHandle::decode(&fh.encode(&other), 7, &key),
            Err(FhError::Bad)
        );
        // A handle of the previous format is stale, not bad.
        let mut old = b"cfs1".to_vec();
        old.extend_from_slice(&7u64.to_be_bytes());
        old.extend_from_slice(&42u64.to_be_bytes());
        assert_eq!(FileHandle::decode(&old, 7, &key), Err(FhError::Stale));
    }

    /// The snapshot format: 48 bytes, the export where the live format has it, the snapshot
    /// id after the inode; every single bit flip is refused, and so is a live handle's body
    /// with a snapshot's magic, or the other way round.
    #[test]
    fn snapshot_handles_roundtrip_and_every_bit_flip_is_refused() {
        let key = FhKey::new([9; 32]);
        for snap in [1, 77, SNAPSHOT_DIR] {
            let fh = FileHandle {
                fs_id: 5,
                export: 0x0102_0304,
                ino: 0x0003_0000_0000_0011,
                snap: Some(snap),
            };
            let b = fh.encode(&key);
            assert_eq!(b.len(), SNAP_FH_LEN);
            assert_eq!(&b[..4], b"cfsS");
            assert_eq!(
                &b[12..16],
                &[1, 2, 3, 4],
                "the export where the gateway reads it"
            );
            assert_eq!(&b[24..32], &snap.to_be_bytes());
            assert_eq!(FileHandle::decode(&b, 5, &key), Ok(fh));
            assert_eq!(FileHandle::decode(&b, 6, &key), Err(FhError::Stale));
            for bit in 0..b.len() * 8 {
                let mut bad = b.clone();
                bad[bit / 8] ^= 1 << (bit % 8);
                let got = FileHandle::decode(&bad, 5, &key);
                // A flip in the fs id reads as another instance's handle; all else is forged.
                let want = if (32..96).contains(&bit) {
                    Err(FhError::Stale)
                } else {
                    Err(FhError::Bad)
                };
                assert_eq!(got, want, "bit {bit}");
            }
            // Cut short, or one byte longer: not a handle.
            assert_eq!(FileHandle::decode(&b[..47], 5, &key), Err(FhError::Bad));
            let mut long = b.clone();
            long.push(0);
            assert_eq!(FileHandle::decode(&long, 5, &key), Err(FhError::Bad));
            // The live body under the snapshot magic (and the reverse) does not verify.
            let live = FileHandle { snap: None, ..fh }.encode(&key);
            let mut swapped = live.clone();
            swapped[..4].copy_from_slice(b"cfsS");
            assert_eq!(FileHandle::decode(&swapped, 5, &key), Err(FhError::Bad));
            let mut swapped = b.clone();
            swapped[..4].copy_from_slice(b"cfs2");
            assert_eq!(FileHandle::decode(&swapped, 5, &key), Err(FhError::Bad));
        }
        // A live handle: every bit flip refused too.
        let live = FileHandle {
            fs_id: 5,
            export: 1,
            ino: 99,
            snap: None,
        }
        .encode(&key);
        for bit in 0..live.len() * 8 {
            let mut bad = live.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(FileHandle::decode(&bad, 5, &key).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn key_persists() {
        let d = tempfile::tempdir().unwrap();
        let a = FhKey::load_or_create(d.path()).unwrap();
        let b = FhKey::load_or_create(d.path()).unwrap();
        assert_eq!(a.0, b.0);
        std::fs::write(d.path().join(KEY_FILE), b"short").unwrap();
        assert!(FhKey::load_or_create(d.path()).is_err());
    }
}
