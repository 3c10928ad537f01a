//! NFSv3 file handles: the MDS's NFSv4 handle, byte for byte.
//!
//! Why: the MDS's handle (`mds/src/fh.rs`: `"cfs2" | fs id | export id | inode | MAC`, 40
//! bytes) is already persistent (it survives MDS and gateway restarts), already the same for
//! every client that asks, and already authenticated (a forged or altered one is refused by
//! the MDS with BADHANDLE). Passing it through keeps all three properties for v3 clients, so a
//! v3 client can move between gateways behind one address, and the gateway keeps no table of
//! handles at all (nothing to lose in a crash, nothing to bound). It fits: NFSv3 allows 64.
//!
//! The gateway reads one field itself, the export id (bytes 12..16), to apply the export's
//! rules to the v3 client before anything is sent upstream; the MDS cannot, since it sees the
//! gateway's address, not the v3 client's. An object inside a snapshot has a 48-byte handle,
//! `"cfsS"` with the same fields at the same places and the snapshot id before the MAC
//! (issue 48): passed through the same way. Its fsid's minor is the snapshot, so each
//! snapshot is a v3 mount point of its own, and its changes answer NFS3ERR_ROFS (the MDS's
//! NFS4ERR_ROFS, mapped).
use proto::nfs3::{NfsFh3, Nfsstat3, NFS3_FHSIZE};
use proto::nfs4::NfsFh4;
use proto::xdr::Opaque;

const MAGIC: &[u8; 4] = b"cfs2";
const SNAP_MAGIC: &[u8; 4] = b"cfsS";
/// The MDS handle's length (`mds::fh::FH_LEN`).
pub const V4_LEN: usize = 40;
/// The length of the MDS handle of an object inside a snapshot (`mds::fh::SNAP_FH_LEN`).
pub const V4_SNAP_LEN: usize = 48;

/// The v3 handle for an MDS handle; SERVERFAULT for one that does not fit (never from cfs).
pub fn to_v3(fh: &NfsFh4) -> Result<NfsFh3, Nfsstat3> {
    let b = fh.as_bytes();
    if b.len() > NFS3_FHSIZE {
        return Err(Nfsstat3::Serverfault);
    }
    Ok(NfsFh3 {
        data: Opaque(b.to_vec()),
    })
}

/// What a v3 handle names, or why it is refused before anything goes upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub v4: NfsFh4,
    pub export: u32,
    pub fs_id: u64,
}

/// BADHANDLE for anything that is not an MDS handle of this format (the MDS checks the MAC);
/// STALE for a handle of another format generation (`cfs1`), as the MDS answers it.
pub fn parse(fh: &NfsFh3) -> Result<Parsed, Nfsstat3> {
    let b = fh.data.as_bytes();
    let magic = match b.len() {
        V4_LEN => MAGIC,
        V4_SNAP_LEN => SNAP_MAGIC,
        _ => return Err(Nfsstat3::Badhandle),
    };
    if &b[..4] != magic {
        return Err(if &b[..3] == b"cfs" {
            Nfsstat3::Stale
        } else {
            Nfsstat3::Badhandle
        });
    }
    let mut fs = [0u8; 8];
    fs.copy_from_slice(&b[4..12]);
    let mut ex = [0u8; 4];
    ex.copy_from_slice(&b[12..16]);
    Ok(Parsed {
        v4: NfsFh4(Opaque(b.to_vec())),
        export: u32::from_be_bytes(ex),
        fs_id: u64::from_be_bytes(fs),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(export: u32) -> Vec<u8> {
        let mut b = b"cfs2".to_vec();
        b.extend_from_slice(&7u64.to_be_bytes());
        b.extend_from_slice(&export.to_be_bytes());
        b.extend_from_slice(&42u64.to_be_bytes());
        b.extend_from_slice(&[9u8; 16]);
        b
    }

    #[test]
    fn handles_pass_through_and_name_their_export() {
        let v4 = NfsFh4(Opaque(handle(0xabcd)));
        let v3 = to_v3(&v4).unwrap();
        let p = parse(&v3).unwrap();
        assert_eq!(p.v4, v4);
        assert_eq!(p.export, 0xabcd);
        assert_eq!(p.fs_id, 7);
    }

    #[test]
    fn snapshot_handles_pass_through_too() {
        let mut b = handle(0x0102).to_vec();
        b[..4].copy_from_slice(b"cfsS");
        b.splice(24..24, 5u64.to_be_bytes());
        assert_eq!(b.len(), V4_SNAP_LEN);
        let v4 = NfsFh4(Opaque(b.clone()));
        let p = parse(&to_v3(&v4).unwrap()).unwrap();
        assert_eq!((p.v4, p.export, p.fs_id), (v4, 0x0102, 7));
        // The live magic at the snapshot length, and the reverse, are no handle.
        let mut wrong = b.clone();
        wrong[3] = b'2';
        assert_eq!(parse(&NfsFh3::from(wrong)), Err(Nfsstat3::Stale));
        let mut wrong = handle(1);
        wrong[3] = b'S';
        assert_eq!(parse(&NfsFh3::from(wrong)), Err(Nfsstat3::Stale));
    }

    #[test]
    fn foreign_and_old_handles_are_refused() {
        assert_eq!(parse(&NfsFh3::from(vec![1; 16])), Err(Nfsstat3::Badhandle));
        let mut old = handle(1);
        old[3] = b'1';
        assert_eq!(parse(&NfsFh3::from(old)), Err(Nfsstat3::Stale));
        let mut other = handle(1);
        other[0] = b'x';
        assert_eq!(parse(&NfsFh3::from(other)), Err(Nfsstat3::Badhandle));
        assert_eq!(
            to_v3(&NfsFh4(Opaque(vec![0; 65]))),
            Err(Nfsstat3::Serverfault)
        );
    }
}
