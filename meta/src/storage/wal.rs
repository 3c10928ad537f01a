//! Log files: records appended to preallocated segment files and made durable with fdatasync.
//! The node's Raft log (`crate::storage::log`) writes every shard's records through it.
//!
//! Why: a durable redb commit rewrites a few dozen B-tree pages scattered over the file, and the
//! fsync that follows cost ~4.5 ms on this VM; appending a batch of encoded commands to one file
//! and fdatasync-ing it costs ~0.1 ms. So acknowledged commands are made durable here, redb
//! commits are non-durable (visible to readers, reverted by a crash), and every so often a
//! durable redb commit (a checkpoint) makes the log's contents redundant and it is emptied.
//!
//! Recovery: redb reopens at its last checkpoint, whose `applied` index says where the log takes
//! over; the records after it are applied again, in order. A record is
//! `len: u32 | index: u64 | command | check: 8 bytes of blake3(index | command)`, all little
//! endian. Appends are sequential, so only the tail can be torn (kill -9 mid-write, power loss
//! before fdatasync); reading stops at the first record that is short, fails its check, or does
//! not carry the next index, and the file is cut there.
//!
//! Segments are preallocated (`fallocate`) and written in place: an fdatasync after an append
//! that grows the file must also write the inode for the new size, one more synchronous write
//! per commit; inside preallocated space it need not (measured here: ~150 -> ~120 µs per
//! fdatasync). Preallocated space reads as zeros, and a record never starts with a zero length,
//! so a zero tail is the clean end of a segment. A segment is cut to its records before the
//! next one starts.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use meta_core::error::FsError;

/// Segment files of a log are `WAL_PREFIX<seq>` in its directory.
pub const WAL_PREFIX: &str = "namespace.wal.";

/// Larger than any record the writers produce (a batch of at most 256 commands, or the heads of
/// 1024 shards); a length beyond it can only be a torn or foreign record.
pub(crate) const MAX_RECORD: usize = 1 << 20;
const HEADER: usize = 4 + 8;
const CHECK: usize = 8;
/// Space a segment is grown by at a time (~200k commands of a small-file load).
const PREALLOC: u64 = 16 << 20;

fn check(index: u64, cmd: &[u8]) -> [u8; CHECK] {
    let mut h = blake3::Hasher::new();
    h.update(&index.to_le_bytes());
    h.update(cmd);
    let mut c = [0u8; CHECK];
    c.copy_from_slice(&h.finalize().as_bytes()[..CHECK]);
    c
}

/// Encodes one record onto `buf`.
pub(crate) fn encode_record(buf: &mut Vec<u8>, index: u64, cmd: &[u8]) -> Result<(), FsError> {
    if cmd.len() > MAX_RECORD {
        return Err(FsError::Io(format!("command of {} bytes", cmd.len())));
    }
    buf.extend_from_slice(&(cmd.len() as u32).to_le_bytes());
    buf.extend_from_slice(&index.to_le_bytes());
    buf.extend_from_slice(cmd);
    buf.extend_from_slice(&check(index, cmd));
    Ok(())
}

/// The valid records at the start of `bytes` whose indices run on from `first` (if given), and
/// the length they occupy.
pub(crate) fn decode_records(bytes: &[u8], mut first: Option<u64>) -> (Records, usize) {
    let mut out = Vec::new();
    let mut at = 0usize;
    while bytes.len() - at >= HEADER {
        let mut len4 = [0u8; 4];
        len4.copy_from_slice(&bytes[at..at + 4]);
        let len = u32::from_le_bytes(len4) as usize;
        if len > MAX_RECORD || bytes.len() - at < HEADER + len + CHECK {
            break;
        }
        let mut idx8 = [0u8; 8];
        idx8.copy_from_slice(&bytes[at + 4..at + HEADER]);
        let index = u64::from_le_bytes(idx8);
        let cmd = &bytes[at + HEADER..at + HEADER + len];
        if bytes[at + HEADER + len..at + HEADER + len + CHECK] != check(index, cmd) {
            break;
        }
        if first.is_some_and(|f| f != index) {
            break;
        }
        first = Some(index + 1);
        out.push((index, cmd.to_vec()));
        at += HEADER + len + CHECK;
    }
    (out, at)
}

/// Log records `(index, encoded command)`, in index order.
pub(crate) type Records = Vec<(u64, Vec<u8>)>;

pub(crate) struct Wal {
    dir: PathBuf,
    file: File,
    seq: u64,
    /// Bytes of valid records in the current segment.
    len: u64,
    /// Of those, the bytes an fdatasync has covered.
    synced: u64,
    /// The segment file's size: `len` plus preallocated zeros.
    allocated: u64,
    /// False once the file system said it cannot preallocate: appends then grow the file, and
    /// no append pays for a failing `fallocate` again.
    preallocates: bool,
}

/// Grows `file` from `from` to `to` bytes of allocated zeros.
fn preallocate(file: &File, from: u64, to: u64) -> std::io::Result<()> {
    let range = |n: u64| {
        libc::off_t::try_from(n).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))
    };
    let (off, len) = (range(from)?, range(to.saturating_sub(from))?);
    // SAFETY: a plain system call on a descriptor this `File` owns.
    if unsafe { libc::fallocate(file.as_raw_fd(), 0, off, len) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// True if `bytes` holds nothing but zeros (preallocated space, never written).
fn all_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0)
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{WAL_PREFIX}{seq}"))
}

/// The segments in `dir` with their paths, ascending.
pub(crate) fn segment_files(dir: &Path) -> Result<Vec<(u64, PathBuf)>, FsError> {
    Ok(segments(dir)?
        .into_iter()
        .map(|s| (s, segment_path(dir, s)))
        .collect())
}

/// The segment numbers present in `dir`, ascending.
fn segments(dir: &Path) -> Result<Vec<u64>, FsError> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let name = e?.file_name();
        if let Some(seq) = name
            .to_str()
            .and_then(|n| n.strip_prefix(WAL_PREFIX))
            .and_then(|n| n.parse::<u64>().ok())
        {
            out.push(seq);
        }
    }
    out.sort_unstable();
    Ok(out)
}

fn sync_dir(dir: &Path) -> Result<(), FsError> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// Tests: a stalled disk at a moment the test chooses. While a directory is held, every
/// fdatasync of a log under it waits until it is let go, and the test can see that one waits.
/// An order is then proven by events (what happened while the flush was held), not by how long
/// a delayed flush took, which a slow machine outlasts.
#[cfg(test)]
pub(crate) mod held {
    use std::path::{Path, PathBuf};
    use std::sync::{Condvar, Mutex, MutexGuard};

    struct State {
        held: Vec<PathBuf>,
        /// Log directories with a sync waiting, once per waiting sync.
        waiting: Vec<PathBuf>,
    }

    static STATE: Mutex<State> = Mutex::new(State {
        held: Vec::new(),
        waiting: Vec::new(),
    });
    static CHANGED: Condvar = Condvar::new();

    fn state() -> MutexGuard<'static, State> {
        STATE.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Holds the syncs of every log under `dir`.
    pub(crate) fn hold(dir: &Path) {
        state().held.push(dir.to_path_buf());
    }

    /// Lets the syncs under `dir` go.
    pub(crate) fn release(dir: &Path) {
        state().held.retain(|d| d != dir);
        CHANGED.notify_all();
    }

    /// How many syncs of logs under `dir` are waiting.
    pub(crate) fn waiting(dir: &Path) -> usize {
        state()
            .waiting
            .iter()
            .filter(|d| d.starts_with(dir))
            .count()
    }

    pub(super) fn wait(log: &Path) {
        let mut s = state();
        if !s.held.iter().any(|d| log.starts_with(d)) {
            return;
        }
        s.waiting.push(log.to_path_buf());
        while s.held.iter().any(|d| log.starts_with(d)) {
            s = CHANGED.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        if let Some(i) = s.waiting.iter().position(|d| d == log) {
            s.waiting.swap_remove(i);
        }
    }
}

impl Wal {
    /// Opens the log in `dir` and returns it with the records its segments hold, in order. A
    /// torn tail of the last segment is cut off; anything else out of order is `Corrupt`.
    #[cfg(test)]
    pub(crate) fn open(dir: &Path) -> Result<(Wal, Records), FsError> {
        let (wal, segs) = Self::open_segments(dir)?;
        Ok((wal, segs.into_iter().flat_map(|(_, r)| r).collect()))
    }

    /// `open`, with the records of each segment apart: `(segment number, its records)`.
    pub(crate) fn open_segments(dir: &Path) -> Result<(Wal, Vec<(u64, Records)>), FsError> {
        let seqs = segments(dir)?;
        let mut last_index: Option<u64> = None;
        let mut by_segment = Vec::with_capacity(seqs.len());
        // Where the records of the last segment end.
        let mut len = 0;
        for (i, seq) in seqs.iter().enumerate() {
            let path = segment_path(dir, *seq);
            let bytes = std::fs::read(&path)?;
            let next = last_index.map(|idx| idx + 1);
            let (recs, valid) = decode_records(&bytes, next);
            if valid < bytes.len() && !all_zero(&bytes[valid..]) {
                if i + 1 < seqs.len() {
                    // Segments are synced before the next one starts: only the last can be torn.
                    return Err(FsError::Corrupt(format!(
                        "namespace log {} is damaged at byte {valid} of {}",
                        path.display(),
                        bytes.len()
                    )));
                }
                tracing::warn!(
                    path = %path.display(),
                    kept = valid,
                    cut = bytes.len() - valid,
                    "namespace log: torn tail cut off"
                );
                let f = OpenOptions::new().write(true).open(&path)?;
                f.set_len(valid as u64)?;
                f.sync_all()?;
            }
            last_index = recs.last().map(|(idx, _)| *idx).or(last_index);
            by_segment.push((*seq, recs));
            len = valid as u64;
        }
        let seq = seqs.last().copied().unwrap_or(1);
        let path = segment_path(dir, seq);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let allocated = file.metadata()?.len();
        if seqs.is_empty() {
            sync_dir(dir)?;
        }
        let mut wal = Wal {
            dir: dir.to_path_buf(),
            file,
            seq,
            len,
            synced: len,
            allocated,
            preallocates: true,
        };
        wal.grow(0)?;
        Ok((wal, by_segment))
    }

    /// Makes sure `extra` bytes past the records fit in preallocated space, growing the segment
    /// by `PREALLOC` when they do not. The new size is synced, so commits inside it stay
    /// data-only.
    fn grow(&mut self, extra: u64) -> Result<(), FsError> {
        // At least one byte of room, so a segment that is exactly full grows before its next use.
        if !self.preallocates || self.len + extra.max(1) <= self.allocated {
            return Ok(());
        }
        let to = self.len + extra.max(PREALLOC);
        match preallocate(&self.file, self.allocated, to) {
            Ok(()) => {
                self.file.sync_all()?;
                self.allocated = to;
            }
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => self.preallocates = false,
            // Out of space, say: the append that follows reports it if it matters.
            Err(e) => tracing::debug!(error = %e, "namespace log: no preallocation"),
        }
        Ok(())
    }

    /// Appends encoded records (see `encode_record`); they reach the disk at the next `sync`.
    /// After an error part of them may be in the file: the caller cuts back with `cut_to`.
    pub(crate) fn append(&mut self, records: &[u8]) -> Result<(), FsError> {
        if records.is_empty() {
            return Ok(());
        }
        self.grow(records.len() as u64)?;
        let r = self.file.write_all_at(records, self.len);
        // Counted even on error: whatever part was written must be cut off by `cut_to`.
        self.len += records.len() as u64;
        self.allocated = self.allocated.max(self.len);
        Ok(r?)
    }

    /// Cuts the current segment back to `len` (an earlier `len()`), forgetting records of a
    /// batch that could not be committed. What follows must read as zeros again, so the cut
    /// drops the preallocated space too; the next append grows it back.
    pub(crate) fn cut_to(&mut self, len: u64) -> Result<(), FsError> {
        self.file.set_len(len)?;
        self.len = len;
        self.allocated = len;
        self.synced = self.synced.min(len);
        Ok(())
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// The number of the segment records are appended to.
    pub(crate) fn segment(&self) -> u64 {
        self.seq
    }

    pub(crate) fn unsynced(&self) -> bool {
        self.synced < self.len
    }

    /// Makes every appended record durable.
    pub(crate) fn sync(&mut self) -> Result<(), FsError> {
        if self.unsynced() {
            #[cfg(test)]
            held::wait(&self.dir);
            let t0 = metrics::start();
            self.file.sync_data()?;
            metrics::mds::LOG_FSYNC.observe_since(t0);
            self.synced = self.len;
        }
        Ok(())
    }

    /// Syncs the current segment and starts the next; returns the new segment's number. Records
    /// before it can be dropped (`remove_before`) once a checkpoint holds them.
    pub(crate) fn rotate(&mut self) -> Result<u64, FsError> {
        if self.allocated > self.len {
            self.file.set_len(self.len)?;
            self.allocated = self.len;
        }
        self.file.sync_all()?;
        self.synced = self.len;
        let seq = self.seq + 1;
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(segment_path(&self.dir, seq))?;
        sync_dir(&self.dir)?;
        self.file = file;
        self.seq = seq;
        self.len = 0;
        self.synced = 0;
        self.allocated = 0;
        self.grow(0)?;
        Ok(seq)
    }
}

/// Deletes the segments numbered below `seq`, whose records a durable checkpoint holds.
pub(crate) fn remove_before(dir: &Path, seq: u64) -> Result<(), FsError> {
    let mut any = false;
    for s in segments(dir)?.into_iter().filter(|s| *s < seq) {
        std::fs::remove_file(segment_path(dir, s))?;
        any = true;
    }
    if any {
        sync_dir(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(first: u64, n: u64) -> Vec<u8> {
        let mut b = Vec::new();
        for i in first..first + n {
            encode_record(&mut b, i, format!("cmd{i}").as_bytes()).unwrap();
        }
        b
    }

    /// Appends record `index` ("again"), syncs, closes and opens the log again.
    fn append_again_and_reopen(mut wal: Wal, dir: &Path, index: u64) -> (Wal, Records) {
        let mut more = Vec::new();
        encode_record(&mut more, index, b"again").unwrap();
        wal.append(&more).unwrap();
        wal.sync().unwrap();
        drop(wal);
        Wal::open(dir).unwrap()
    }

    #[test]
    fn records_round_trip() {
        let b = log(7, 5);
        let (r, used) = decode_records(&b, None);
        assert_eq!(used, b.len());
        assert_eq!(r.len(), 5);
        assert_eq!(r[0], (7, b"cmd7".to_vec()));
        assert_eq!(r[4], (11, b"cmd11".to_vec()));
    }

    #[test]
    fn torn_or_corrupt_tail_is_dropped() {
        let b = log(1, 3);
        let one = decode_records(&b, None).0.len();
        assert_eq!(one, 3);
        for cut in 1..b.len() {
            let (r, used) = decode_records(&b[..cut], None);
            assert!(r.len() < 3);
            assert!(used <= cut);
        }
        let mut bad = b.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(decode_records(&bad, None).0.len(), 2);
        let mut bad = b.clone();
        bad[HEADER + 1] ^= 0x40;
        assert_eq!(decode_records(&bad, None).0.len(), 0);
    }

    #[test]
    fn a_gap_in_indices_ends_the_log() {
        let mut b = log(1, 2);
        b.extend(log(4, 2));
        let (r, used) = decode_records(&b, None);
        assert_eq!(r.len(), 2);
        assert_eq!(used, log(1, 2).len());
        assert!(decode_records(&log(5, 1), Some(4)).0.is_empty());
    }

    #[test]
    fn open_cuts_a_torn_tail_and_appends_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let full = log(1, 3);
        std::fs::write(segment_path(dir.path(), 1), &full[..full.len() - 3]).unwrap();
        let (wal, recs) = Wal::open(dir.path()).unwrap();
        assert_eq!(recs.len(), 2);
        let (wal, recs) = append_again_and_reopen(wal, dir.path(), 3);
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[2], (3, b"again".to_vec()));
        assert!(!wal.unsynced());
    }

    #[test]
    fn segments_chain_and_old_ones_go() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, recs) = Wal::open(dir.path()).unwrap();
        assert!(recs.is_empty());
        wal.append(&log(1, 2)).unwrap();
        let s2 = wal.rotate().unwrap();
        wal.append(&log(3, 2)).unwrap();
        wal.sync().unwrap();
        drop(wal);
        let (mut wal, recs) = Wal::open(dir.path()).unwrap();
        assert_eq!(
            recs.iter().map(|r| r.0).collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
        remove_before(dir.path(), s2).unwrap();
        let s3 = wal.rotate().unwrap();
        drop(wal);
        let (_, recs) = Wal::open(dir.path()).unwrap();
        assert_eq!(recs.iter().map(|r| r.0).collect::<Vec<_>>(), vec![3, 4]);
        assert_eq!(segments(dir.path()).unwrap(), vec![s2, s3]);
        // A torn segment followed by another is damage, not a tail.
        let first = segment_path(dir.path(), s2);
        let b = std::fs::read(&first).unwrap();
        std::fs::write(&first, &b[..b.len() - 1]).unwrap();
        assert!(matches!(Wal::open(dir.path()), Err(FsError::Corrupt(_))));
    }

    #[test]
    fn preallocated_segments_are_written_in_place_and_reopen_where_the_records_end() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path()).unwrap();
        wal.append(&log(1, 2)).unwrap();
        wal.sync().unwrap();
        let path = segment_path(dir.path(), wal.seq);
        let size = std::fs::metadata(&path).unwrap().len();
        assert_eq!(wal.len(), log(1, 2).len() as u64);
        assert!(
            size > wal.len(),
            "the segment is preallocated past its records"
        );
        assert_eq!(size, wal.allocated);
        drop(wal);
        let (mut wal, recs) = Wal::open(dir.path()).unwrap();
        assert_eq!(recs.len(), 2);
        wal.append(&log(3, 1)).unwrap();
        wal.sync().unwrap();
        drop(wal);
        let (_, recs) = Wal::open(dir.path()).unwrap();
        assert_eq!(recs.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1, 2, 3]);
    }

    #[test]
    fn a_zero_tail_is_an_end_but_a_torn_record_before_zeros_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        // An earlier segment that kept its preallocated zeros is not damage.
        let mut first = log(1, 2);
        first.extend(vec![0u8; 4096]);
        std::fs::write(segment_path(dir.path(), 1), &first).unwrap();
        // The last one: a record torn mid-write, then zeros.
        let full = log(3, 2);
        let mut last = full[..full.len() - 5].to_vec();
        last.extend(vec![0u8; 4096]);
        std::fs::write(segment_path(dir.path(), 2), &last).unwrap();
        let (wal, recs) = Wal::open(dir.path()).unwrap();
        assert_eq!(recs.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1, 2, 3]);
        // The torn bytes are gone: what is appended now is read back cleanly.
        let (_, recs) = append_again_and_reopen(wal, dir.path(), 4);
        assert_eq!(recs.last(), Some(&(4, b"again".to_vec())));
        assert_eq!(recs.len(), 4);
    }
}
