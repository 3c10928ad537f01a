//! Space kept for metadata, so a full disk is an answer (NFS4ERR_NOSPC to the writes that need
//! space) and not an outage.
//!
//! Every change a client makes, a REMOVE included, is an append to the command log; a new
//! client's CREATE_SESSION rewrites the client list (`state::ClientDb`); checkpoints grow redb,
//! which cannot recover from a failed write without a restart (`StorageError::PreviousIo`).
//! Before this, file data could take the last byte, and from then on nobody could even mount
//! to delete something (CREATE_SESSION got SERVERFAULT).
//!
//! Two layers, after ext4's:
//! - **A floor for data** (ext4's reserved blocks, which a non-root writer, and so knfsd writing
//!   for a client, cannot use): a data write is refused with NFS4ERR_NOSPC when it would leave
//!   less than `floor` bytes free. Metadata may use the space below the floor.
//! - **A reserve file** (`meta/reserve`, allocated at start; ext4 keeps `s_resv_clusters` for
//!   the metadata of writes already accepted). It covers a disk filled by someone else: when a
//!   metadata write meets ENOSPC, or free space drops under `meta_low`, the reserve gives back
//!   space, and it is allocated again once space returns. While it is short, data writes need
//!   that much more room, so data never takes what the reserve gave up.
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{NfsError, NfsResult};
use meta::namespace::SpaceGuard;

/// The reserve file inside the metadata directory.
pub const RESERVE_FILE: &str = "reserve";

/// Upper bounds of the floor and the reserve file; on a small file system each is an eighth of
/// it. 32 MiB holds a command log segment (16 MiB preallocated) and redb's growth for a
/// checkpoint several times over.
const FLOOR_MAX: u64 = 32 << 20;
const RESERVE_MAX: u64 = 32 << 20;
/// Free space metadata keeps at hand while the reserve can supply it (a checkpoint's growth).
const META_LOW_MAX: u64 = 8 << 20;
/// The reserve gives back and takes space in steps of this.
const STEP: u64 = 1 << 20;

/// Free and total bytes of the file system holding `dir` (as a non-root user sees them).
pub fn statvfs(dir: &Path) -> std::io::Result<(u64, u64)> {
    let p = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: statvfs only writes into the zeroed struct we pass; `p` is NUL-terminated.
    let mut v: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::statvfs(p.as_ptr(), &mut v) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let bs = v.f_frsize as u64;
    Ok((
        (v.f_bavail as u64).saturating_mul(bs),
        (v.f_blocks as u64).saturating_mul(bs),
    ))
}

#[derive(Debug)]
pub struct Space {
    /// Where file data and metadata live (one file system).
    dir: PathBuf,
    reserve_path: PathBuf,
    /// Data writes leave at least this much free.
    floor: u64,
    /// The size the reserve file should have.
    reserve_target: u64,
    meta_low: u64,
    /// The reserve file's allocated size now.
    reserve_now: Mutex<u64>,
}

/// Allocates `[from, to)` of `f`: fallocate, or written zeros where the file system has no
/// fallocate (either way the blocks are taken, unlike a sparse `set_len`).
fn allocate(f: &std::fs::File, from: u64, to: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let (off, len) = (
        libc::off_t::try_from(from).map_err(|_| std::io::ErrorKind::InvalidInput)?,
        libc::off_t::try_from(to - from).map_err(|_| std::io::ErrorKind::InvalidInput)?,
    );
    // SAFETY: a plain system call on a descriptor `f` owns.
    if unsafe { libc::fallocate(f.as_raw_fd(), 0, off, len) } == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::EOPNOTSUPP) {
        return Err(e);
    }
    let zeros = vec![0u8; STEP as usize];
    let mut at = from;
    while at < to {
        let n = (to - at).min(STEP) as usize;
        f.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    f.sync_data()
}

impl Space {
    /// Sizes the floor and reserve for the file system under `dir` and allocates the reserve
    /// file in `meta_dir` (as much of it as fits: a server started on a full disk still
    /// starts).
    pub fn open(dir: &Path, meta_dir: &Path) -> std::io::Result<Space> {
        let (_, total) = statvfs(dir)?;
        let eighth = total / 8;
        let s = Space {
            dir: dir.to_path_buf(),
            reserve_path: meta_dir.join(RESERVE_FILE),
            floor: FLOOR_MAX.min(eighth),
            reserve_target: RESERVE_MAX.min(eighth) / STEP * STEP,
            meta_low: META_LOW_MAX.min(total / 16),
            reserve_now: Mutex::new(0),
        };
        let have = match std::fs::metadata(&s.reserve_path) {
            Ok(m) => m.len().min(s.reserve_target),
            Err(_) => 0,
        };
        *s.lock() = have;
        s.keep();
        Ok(s)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, u64> {
        self.reserve_now.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn avail(&self) -> u64 {
        // A file system that cannot say is treated as having room: refusing every write
        // because statvfs failed would be an outage of its own.
        statvfs(&self.dir).map(|(a, _)| a).unwrap_or(u64::MAX)
    }

    /// Whether a data write of `len` bytes may go ahead: it must leave the floor free, plus
    /// whatever the reserve file has given up (so data never takes that).
    pub fn admit_data(&self, len: u64) -> NfsResult<()> {
        let short = self.reserve_target - *self.lock();
        let need = len.saturating_add(self.floor).saturating_add(short);
        if self.avail() < need {
            // The reserve may be able to grow back first (a removal freed space).
            self.keep();
            let short = self.reserve_target - *self.lock();
            if self.avail() < len.saturating_add(self.floor).saturating_add(short) {
                return Err(NfsError::NoSpc);
            }
        }
        Ok(())
    }

    /// Resizes the reserve file: gives space back while less than `meta_low` is free, and
    /// takes it again from space above the floor.
    pub fn keep(&self) {
        let mut now = self.lock();
        let avail = self.avail();
        let have = *now;
        if avail < self.meta_low && have > 0 {
            let give = (self.meta_low - avail).div_ceil(STEP) * STEP;
            self.resize(&mut now, have.saturating_sub(give));
        } else if have < self.reserve_target && avail > self.floor.saturating_add(STEP) {
            let take = (avail - self.floor).min(self.reserve_target - have) / STEP * STEP;
            if take > 0 {
                self.resize(&mut now, have + take);
            }
        }
    }

    fn resize(&self, now: &mut u64, to: u64) {
        let r = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.reserve_path)
            .and_then(|f| {
                if to < *now {
                    f.set_len(to)
                } else {
                    allocate(&f, *now, to)
                }
            });
        match r {
            Ok(()) => {
                tracing::info!(
                    from_mib = *now >> 20,
                    to_mib = to >> 20,
                    "metadata reserve resized"
                );
                *now = to;
            }
            Err(e) => tracing::warn!(to, "cannot resize the metadata reserve: {e}"),
        }
    }

    /// Gives up to `want` bytes of the reserve back, at least one step; false when it is used up.
    fn give_back(&self, want: u64) -> bool {
        let mut now = self.lock();
        if *now == 0 {
            return false;
        }
        let give = want.max(STEP).div_ceil(STEP) * STEP;
        let before = *now;
        self.resize(&mut now, before.saturating_sub(give));
        *now < before
    }
}

impl SpaceGuard for Space {
    fn release(&self) -> bool {
        tracing::warn!("metadata write met a full file system: using the reserve");
        self.give_back(self.meta_low)
    }

    fn room_for_checkpoint(&self) -> bool {
        let avail = self.avail();
        if avail >= self.meta_low {
            return true;
        }
        self.give_back(self.meta_low - avail);
        self.avail() >= self.meta_low
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_file_is_allocated_and_gives_back_in_steps() {
        let d = tempfile::tempdir().unwrap();
        let s = Space::open(d.path(), d.path()).unwrap();
        let len = std::fs::metadata(d.path().join(RESERVE_FILE))
            .unwrap()
            .len();
        assert_eq!(len, s.reserve_target);
        assert!(s.reserve_target > 0);
        assert!(s.give_back(1));
        let after = std::fs::metadata(d.path().join(RESERVE_FILE))
            .unwrap()
            .len();
        assert_eq!(after, s.reserve_target - STEP);
        // While the reserve is short, data needs that much more room; `keep` takes it back.
        s.keep();
        assert_eq!(*s.lock(), s.reserve_target);
        assert!(s.admit_data(4096).is_ok());
        assert_eq!(s.admit_data(u64::MAX), Err(NfsError::NoSpc));
    }
}
