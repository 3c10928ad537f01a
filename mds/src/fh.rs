//! NFSv4 file handles. Persistent (they survive restarts), because inode numbers are never
//! reused: a handle names (file system instance, inode) and nothing else the client could
//! forge into a different file.
const MAGIC: [u8; 4] = *b"cfs1";
pub const FH_LEN: usize = 4 + 8 + 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileHandle {
    /// Identifies the file system instance (created once, with the data directory).
    pub fs_id: u64,
    pub ino: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FhError {
    /// Not one of ours at all (NFS4ERR_BADHANDLE).
    Bad,
    /// Ours, but from another file system instance (NFS4ERR_STALE).
    Stale,
}

impl FileHandle {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(FH_LEN);
        v.extend_from_slice(&MAGIC);
        v.extend_from_slice(&self.fs_id.to_be_bytes());
        v.extend_from_slice(&self.ino.to_be_bytes());
        v
    }

    pub fn decode(b: &[u8], fs_id: u64) -> Result<FileHandle, FhError> {
        if b.len() != FH_LEN || b[..4] != MAGIC {
            return Err(FhError::Bad);
        }
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[4..12]);
        let got_fs = u64::from_be_bytes(a);
        a.copy_from_slice(&b[12..20]);
        let ino = u64::from_be_bytes(a);
        if got_fs != fs_id {
            return Err(FhError::Stale);
        }
        Ok(FileHandle { fs_id, ino })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_rejections() {
        let fh = FileHandle { fs_id: 7, ino: 42 };
        assert_eq!(FileHandle::decode(&fh.encode(), 7), Ok(fh));
        assert_eq!(FileHandle::decode(&fh.encode(), 8), Err(FhError::Stale));
        assert_eq!(FileHandle::decode(b"junk", 7), Err(FhError::Bad));
        let mut b = fh.encode();
        b[0] = b'x';
        assert_eq!(FileHandle::decode(&b, 7), Err(FhError::Bad));
    }
}
