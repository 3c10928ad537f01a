//! Where objects and chunks live on disk, and the config file that pins a store's geometry.
//!
//! `dir/objects/<id & 0xff, 2 hex>/<id, 16 hex>/<chunk number, hex>`: one directory per object so
//! removing or truncating an object lists only its own chunks, fanned out over 256 parents so no
//! directory grows huge.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::DsError;
use crate::geometry::Config;

const CONF: &str = "chunkstore.conf";

pub(crate) fn objects_dir(root: &Path) -> PathBuf {
    root.join("objects")
}

pub(crate) fn fanout_dir(root: &Path, id: u64) -> PathBuf {
    objects_dir(root).join(format!("{:02x}", id & 0xff))
}

pub(crate) fn object_dir(root: &Path, id: u64) -> PathBuf {
    fanout_dir(root, id).join(format!("{id:016x}"))
}

pub(crate) fn chunk_path(root: &Path, id: u64, chunk: u64) -> PathBuf {
    object_dir(root, id).join(format!("{chunk:x}"))
}

/// Chunk numbers present for an object (empty if it has no directory).
pub(crate) fn list_chunks(root: &Path, id: u64) -> Result<Vec<u64>, DsError> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(object_dir(root, id)) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e.into()),
    };
    for ent in rd {
        let ent = ent?;
        if let Some(n) = ent
            .file_name()
            .to_str()
            .and_then(|s| u64::from_str_radix(s, 16).ok())
        {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Every object with a directory in the store, in no particular order (scrub walks them).
pub(crate) fn list_objects(root: &Path) -> Result<Vec<u64>, DsError> {
    let mut out = Vec::new();
    let top = match fs::read_dir(objects_dir(root)) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e.into()),
    };
    for fan in top {
        let fan = fan?;
        if !fan.file_type()?.is_dir() {
            continue;
        }
        for ent in fs::read_dir(fan.path())? {
            let ent = ent?;
            if let Some(id) = ent
                .file_name()
                .to_str()
                .and_then(|s| u64::from_str_radix(s, 16).ok())
            {
                out.push(id);
            }
        }
    }
    Ok(out)
}

pub(crate) fn fsync_dir(path: &Path) -> std::io::Result<()> {
    fs::File::open(path)?.sync_all()
}

/// The stored geometry of the store at `root`, writing `want` if the store is new. An existing
/// store keeps the geometry it was created with: its chunk files are laid out by it.
pub(crate) fn load_or_init_config(root: &Path, want: Config) -> Result<Config, DsError> {
    let path = root.join(CONF);
    match fs::read_to_string(&path) {
        Ok(text) => parse_config(&text)
            .ok_or_else(|| DsError::Invalid(format!("unreadable {}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let tmp = root.join(format!("{CONF}.tmp"));
            let mut f = fs::File::create(&tmp)?;
            write!(
                f,
                "chunk_size={}\nblock_size={}\n",
                want.chunk_size, want.block_size
            )?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            fsync_dir(root)?;
            Ok(want)
        }
        Err(e) => Err(e.into()),
    }
}

fn parse_config(text: &str) -> Option<Config> {
    let mut c = Config {
        chunk_size: 0,
        block_size: 0,
    };
    for line in text.lines() {
        let (k, v) = line.split_once('=')?;
        let v: u64 = v.trim().parse().ok()?;
        match k.trim() {
            "chunk_size" => c.chunk_size = v,
            "block_size" => c.block_size = v,
            _ => {}
        }
    }
    c.validate().ok()?;
    Some(c)
}
