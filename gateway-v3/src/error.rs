//! Errors of the gateway itself, and how an upstream (NFSv4.1) failure is told to an NFSv3
//! client.
use proto::nfs3::Nfsstat3;
use proto::nfs4::Nfsstat4;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum GatewayError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("no randomness for the write verifier: {0}")]
    Random(std::io::Error),
}

/// The NFSv3 status for an NFSv4 one. Most share their number (RFC 7530 kept RFC 1813's);
/// the v4-only ones map to what a v3 client can act on: a transient state (DELAY, GRACE, a
/// session being rebuilt) is JUKEBOX, so the client retries.
pub fn v3_status(s: Nfsstat4) -> Nfsstat3 {
    use Nfsstat4 as S;
    match s {
        S::Ok => Nfsstat3::Ok,
        S::Perm => Nfsstat3::Perm,
        S::Noent => Nfsstat3::Noent,
        S::Io => Nfsstat3::Io,
        S::Nxio => Nfsstat3::Nxio,
        S::Access => Nfsstat3::Acces,
        S::Exist => Nfsstat3::Exist,
        S::Xdev => Nfsstat3::Xdev,
        S::Notdir => Nfsstat3::Notdir,
        S::Isdir => Nfsstat3::Isdir,
        S::Inval => Nfsstat3::Inval,
        S::Fbig => Nfsstat3::Fbig,
        S::Nospc => Nfsstat3::Nospc,
        S::Rofs => Nfsstat3::Rofs,
        S::Mlink => Nfsstat3::Mlink,
        S::Nametoolong => Nfsstat3::Nametoolong,
        S::Notempty => Nfsstat3::Notempty,
        S::Dquot => Nfsstat3::Dquot,
        S::Stale | S::Fhexpired => Nfsstat3::Stale,
        S::Badhandle | S::Nofilehandle => Nfsstat3::Badhandle,
        S::BadCookie | S::NotSame => Nfsstat3::BadCookie,
        S::Notsupp | S::Attrnotsupp | S::LockNotsupp => Nfsstat3::Notsupp,
        S::Toosmall => Nfsstat3::Toosmall,
        S::Badtype | S::WrongType => Nfsstat3::Badtype,
        // A name that is a symlink where a directory was needed.
        S::Symlink => Nfsstat3::Notdir,
        S::Delay | S::Grace | S::Badsession | S::Deadsession | S::StaleClientid | S::Expired => {
            Nfsstat3::Jukebox
        }
        S::Locked | S::Denied | S::ShareDenied => Nfsstat3::Acces,
        _ => Nfsstat3::Serverfault,
    }
}

/// The NFSv3 status for a client-library failure. Transport failures are JUKEBOX: the upstream
/// session is rebuilt and the v3 client's retry then goes through.
pub fn status_of(e: &client::Error) -> Nfsstat3 {
    match e {
        client::Error::Nfs { status, .. } => v3_status(*status),
        client::Error::Rpc(_) | client::Error::Connect { .. } | client::Error::Io(_) => {
            Nfsstat3::Jukebox
        }
        client::Error::VerifierChanged => Nfsstat3::Jukebox,
        _ => Nfsstat3::Serverfault,
    }
}
