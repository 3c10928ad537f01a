//! What a data server is told (`DsConfig`) and what it keeps about itself on disk (its id).

use std::fs;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use layout::{ClusterSecret, DsId};

use super::DsServerError;

/// How to run a data server.
#[derive(Debug, Clone)]
pub struct DsConfig {
    /// Chunks live under `data_dir/chunks`, the DS identity in `data_dir/ds-id`.
    pub data_dir: PathBuf,
    /// Where to serve NFSv3; port 0 picks a free one (tests).
    pub listen: SocketAddr,
    /// What clients are told, in preference order; empty means the actual listening address.
    pub advertise: Vec<SocketAddr>,
    /// The MDS node(s) to start from, at least one: heartbeated always. Every node of a
    /// multi-node metadata service hands out layouts pointing here only while this DS
    /// heartbeats to it; the rest of the service's nodes, and nodes that join it later, are
    /// learnt from the replies (`mds_nodes`), so one node is enough.
    pub mds: Vec<SocketAddr>,
    pub secret: ClusterSecret,
    /// Placement keeps mirrors in different domains; "" puts this DS in a domain of its own.
    pub failure_domain: String,
    /// Bounds on the data path's connections.
    pub connections: proto::rpc::ServeLimits,
    /// When and how fast this DS re-reads everything it holds (`scrub`).
    pub scrub: super::scrub::ScrubConfig,
}

const ID_FILE: &str = "ds-id";

/// Eight bytes from the kernel's random source. Ids and verifiers only need to be unlikely to
/// repeat, but a weak fallback would make two DSs started together collide, so failing to read
/// is an error rather than a silent downgrade.
pub(crate) fn random_u64() -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn fsync_dir(p: &Path) -> std::io::Result<()> {
    fs::File::open(p)?.sync_all()
}

/// The DS id kept in `dir/ds-id`, created on first start. The id names the chunks this DS holds
/// in the MDS's maps, so it must survive restarts and never be half written: temp file, fsync,
/// rename, fsync the directory.
pub(crate) fn load_or_create_id(dir: &Path) -> Result<DsId, DsServerError> {
    let path = dir.join(ID_FILE);
    let bad = |why: String| DsServerError::Identity {
        path: path.clone(),
        why,
    };
    match fs::read_to_string(&path) {
        Ok(text) => {
            let id = u64::from_str_radix(text.trim(), 16)
                .map_err(|e| bad(format!("not a hex DS id: {e}")))?;
            if id == 0 {
                return Err(bad("DS id 0 is reserved".into()));
            }
            Ok(DsId(id))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut id = 0;
            while id == 0 {
                id = random_u64().map_err(|e| bad(format!("no randomness: {e}")))?;
            }
            let tmp = dir.join(format!("{ID_FILE}.tmp"));
            let write = || -> std::io::Result<()> {
                let mut f = fs::File::create(&tmp)?;
                writeln!(f, "{id:016x}")?;
                f.sync_all()?;
                fs::rename(&tmp, &path)?;
                fsync_dir(dir)
            };
            write().map_err(|e| bad(e.to_string()))?;
            tracing::info!(ds_id = format_args!("{id:016x}"), "created DS identity");
            Ok(DsId(id))
        }
        Err(e) => Err(bad(e.to_string())),
    }
}
