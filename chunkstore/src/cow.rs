//! Copy-on-write of chunk files shared by hard links (snapshot images, `link_object`).
//!
//! A chunk file with more than one link belongs to several objects, so it is never changed in
//! place: a change first makes a private copy next to it (`<chunk>.cow`), syncs it and renames
//! it over the chunk's name. A crash leaves either the shared file (the temporary is junk that
//! the next copy truncates, or `remove` deletes with the directory) or the private copy; both
//! are whole, checksummed chunk files. Names with a '.' are not chunk numbers, so listings
//! (`paths::list_chunks`) never see the temporary.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Bytes moved per pread/pwrite of the copy fallback.
const COPY_STEP: usize = 1 << 20;

pub(crate) fn temp_path(chunk: &Path) -> PathBuf {
    let mut s = chunk.as_os_str().to_owned();
    s.push(".cow");
    PathBuf::from(s)
}

/// Writes a private copy of `src` to `tmp` (truncating any leftover of an earlier crash) and
/// makes it durable. Tries a reflink first (O(1) on XFS and btrfs); elsewhere copies the header
/// and the data extents, leaving holes as holes so a sparse chunk stays sparse. Returns the copy,
/// open read-write, and whether it was a reflink.
pub(crate) fn private_copy(src: &File, tmp: &Path) -> std::io::Result<(File, bool)> {
    let dst = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp)?;
    let reflinked = reflink(src, &dst)?;
    if !reflinked {
        copy_sparse(src, &dst)?;
    }
    dst.sync_all()?;
    Ok((dst, reflinked))
}

/// `ioctl(FICLONE)`: `Ok(false)` where the file system cannot share extents (ext4, tmpfs).
fn reflink(src: &File, dst: &File) -> std::io::Result<bool> {
    // SAFETY: an ioctl on two descriptors we own; FICLONE takes the source fd by value and
    // passes no memory.
    let r = unsafe { libc::ioctl(dst.as_raw_fd(), libc::FICLONE, src.as_raw_fd()) };
    if r == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EOPNOTSUPP) | Some(libc::EXDEV) | Some(libc::EINVAL) | Some(libc::ENOTTY) => {
            Ok(false)
        }
        _ => Err(e),
    }
}

/// `lseek(SEEK_DATA / SEEK_HOLE)` from `off`: `None` past the last data (ENXIO).
fn seek(f: &File, off: u64, whence: libc::c_int) -> std::io::Result<Option<u64>> {
    // SAFETY: lseek on a descriptor we own; every read and write here is positional, so the
    // shared file offset it moves is unused.
    let r = unsafe { libc::lseek(f.as_raw_fd(), off as libc::off_t, whence) };
    if r >= 0 {
        return Ok(Some(r as u64));
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENXIO) => Ok(None),
        _ => Err(e),
    }
}

/// Copies the data extents of `src` (everything, when the file system cannot tell holes) and
/// gives `dst` the same length.
fn copy_sparse(src: &File, dst: &File) -> std::io::Result<()> {
    let len = src.metadata()?.len();
    let mut buf = vec![0u8; COPY_STEP];
    // Header and data alike: the sum slots of blocks never written are holes too (64 KiB of
    // them in a 4 MiB chunk), and the copy keeps them so.
    let mut ranges = Vec::new();
    let mut pos = 0;
    while pos < len {
        let start = match seek(src, pos, libc::SEEK_DATA) {
            Ok(Some(s)) => s,
            Ok(None) => break,
            // No SEEK_DATA on this file system: copy the rest as data.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => pos,
            Err(e) => return Err(e),
        };
        let end = match seek(src, start, libc::SEEK_HOLE) {
            Ok(Some(e)) => e.min(len),
            Ok(None) => len,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => len,
            Err(e) => return Err(e),
        };
        if start >= len {
            break;
        }
        ranges.push((start, end));
        pos = end.max(start + 1);
    }
    for (mut at, end) in ranges {
        while at < end {
            let n = (end - at).min(COPY_STEP as u64) as usize;
            let got = src.read_at(&mut buf[..n], at)?;
            if got == 0 {
                break; // shortened under us: cannot happen under the chunk lock
            }
            dst.write_all_at(&buf[..got], at)?;
            at += got as u64;
        }
    }
    dst.set_len(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::{Config, Geometry};
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn the_copy_has_the_same_bytes_and_keeps_holes() {
        let dir = tempfile::tempdir().unwrap();
        let g = Geometry::new(Config::default());
        let src_path = dir.path().join("0");
        let src = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&src_path)
            .unwrap();
        src.write_all_at(b"header", 0).unwrap();
        src.write_all_at(&[7u8; 8192], g.data_start + 4096).unwrap();
        // 3 MiB of hole, then data up to the end.
        src.write_all_at(&[9u8; 4096], g.data_start + (3 << 20))
            .unwrap();
        let (copy, _) = private_copy(&src, &temp_path(&src_path)).unwrap();
        assert_eq!(
            std::fs::read(&src_path).unwrap(),
            std::fs::read(temp_path(&src_path)).unwrap()
        );
        let (a, b) = (src.metadata().unwrap(), copy.metadata().unwrap());
        assert_eq!(a.len(), b.len());
        assert!(
            b.blocks() <= a.blocks() + 8,
            "hole filled: {} blocks, source {}",
            b.blocks(),
            a.blocks()
        );
    }
}
