//! Operations on one chunk file: checksummed block reads and writes, holes, truncation.
//!
//! Each block has two checksum slots, `cur` and `pend`. A write stores the new sums in `pend`,
//! then the data, then the same sums in `cur`. If the process dies part way, every page of the
//! block holds either the old bytes (matching `cur`) or the new ones (matching `pend`), so a block
//! verifies as long as it is one of the two: an interrupted, unacknowledged write never makes the
//! neighbouring acknowledged bytes of its block unreadable. Anything else is corruption.
//! Removing data runs the other way: `pend := cur`, `cur := 0`, drop the data, `pend := 0`.
//! A block is a hole when both slots are zero.
//!
//! Lost checksums: zeroed slots alone would make a written block read as a hole (zeros, no
//! error). But the store never leaves bytes in a block whose slots are both zero: removing data
//! drops it (punch or truncate) before `pend := 0`, and a write puts its sums in `pend` before
//! its data. So the data region is the allocation map: a block with no sums whose bytes are not
//! all zero once held data and lost its checksums, and is corrupt. Checking costs nothing for
//! real holes (`SEEK_DATA` finds them unallocated in the file) and needs no change to the
//! on-disk format, so chunk files written before this check are read the same way. What it
//! cannot see is a block whose sums and data were both zeroed; then zeros are what it reads.

use std::fs::File;
use std::mem::MaybeUninit;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use crate::error::ChunkError;
use crate::geometry::{Geometry, PREAMBLE_LEN, SUM_LEN};

pub(crate) use crate::sums::Sum;
const ZERO: Sum = [0; SUM_LEN];

fn sums_of(blocks: &[u8], bs: usize) -> Vec<Sum> {
    let mut v = Vec::new();
    crate::sums::block_sums(blocks, bs, &mut v);
    v
}

/// Reads as much of `buf` as the file holds at `off`; the rest (past EOF) is zero.
fn read_full_at(f: &File, buf: &mut [u8], off: u64) -> std::io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], off + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf[done..].fill(0);
    Ok(())
}

/// Checks (or on a new file, writes) the preamble. `Ok(false)`: the file has no preamble yet,
/// so it holds nothing (it was created and the process died before the first write finished).
pub(crate) fn check_preamble(f: &File, g: &Geometry, create: bool) -> Result<bool, ChunkError> {
    let mut p = [0u8; PREAMBLE_LEN as usize];
    read_full_at(f, &mut p, 0)?;
    if p == g.preamble() {
        return Ok(true);
    }
    if p.iter().all(|b| *b == 0) {
        // A zero preamble is a file created by a write that died before its first byte, which
        // holds nothing. Anything past the preamble means the header was lost: reading that
        // file as empty would turn its data into zeros.
        if f.metadata()?.len() > PREAMBLE_LEN {
            return Err(ChunkError::Corrupt {
                block: 0,
                detail: "chunk preamble lost (zeroed) but the file holds data".into(),
            });
        }
        if create {
            f.write_all_at(&g.preamble(), 0)?;
            return Ok(true);
        }
        return Ok(false);
    }
    Err(ChunkError::Corrupt {
        block: 0,
        detail: "chunk preamble does not match store geometry".into(),
    })
}

/// `(cur, pend)` sums of blocks `b0..b1`.
pub(crate) fn read_sums(
    f: &File,
    g: &Geometry,
    b0: u64,
    b1: u64,
) -> Result<(Vec<Sum>, Vec<Sum>), ChunkError> {
    let n = (b1 - b0) as usize;
    let mut raw = vec![0u8; n * SUM_LEN];
    let mut out = Vec::with_capacity(2);
    for off in [g.cur_off(b0), g.pend_off(b0)] {
        read_full_at(f, &mut raw, off)?;
        out.push(
            raw.chunks_exact(SUM_LEN)
                .map(|c| {
                    let mut s = ZERO;
                    s.copy_from_slice(c);
                    s
                })
                .collect::<Vec<Sum>>(),
        );
    }
    let pend = out.pop().unwrap_or_default();
    let cur = out.pop().unwrap_or_default();
    Ok((cur, pend))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    Cur,
    Pend,
}

fn write_sums(f: &File, g: &Geometry, slot: Slot, b0: u64, sums: &[Sum]) -> std::io::Result<()> {
    let raw: Vec<u8> = sums.iter().flatten().copied().collect();
    let off = match slot {
        Slot::Cur => g.cur_off(b0),
        Slot::Pend => g.pend_off(b0),
    };
    f.write_all_at(&raw, off)
}

/// Whether each block of `b0..b1` has sums (false: a hole, or a block whose sums were lost).
fn sums_map(f: &File, g: &Geometry, b0: u64, b1: u64) -> Result<Vec<bool>, ChunkError> {
    let (cur, pend) = read_sums(f, g, b0, b1)?;
    Ok(cur
        .iter()
        .zip(&pend)
        .map(|(c, p)| *c != ZERO || *p != ZERO)
        .collect())
}

/// Whether each block of `b0..b1` holds data (false: a hole). A block without sums that holds
/// bytes is corrupt (its checksums were lost), not a hole.
pub(crate) fn block_map(f: &File, g: &Geometry, b0: u64, b1: u64) -> Result<Vec<bool>, ChunkError> {
    let map = sums_map(f, g, b0, b1)?;
    let bs = g.block_size as usize;
    let mut i = 0;
    while i < map.len() {
        if map[i] {
            i += 1;
            continue;
        }
        let j = (i..map.len()).find(|&j| map[j]).unwrap_or(map.len());
        let (s, e) = (b0 + i as u64, b0 + j as u64);
        if !unallocated(f, g, s, e)? {
            // Allocated in the file: its bytes must all be zero. Read in bounded pieces.
            let step = (1 << 20) / bs;
            let mut buf = vec![0u8; step.min(j - i) * bs];
            let mut b = s;
            while b < e {
                let n = (step as u64).min(e - b);
                let piece = &mut buf[..n as usize * bs];
                read_full_at(f, piece, g.data_start + b * g.block_size)?;
                if let Some(k) = piece
                    .chunks_exact(bs)
                    .position(|blk| blk.iter().any(|x| *x != 0))
                {
                    return Err(lost_sums(b + k as u64));
                }
                b += n;
            }
        }
        i = j;
    }
    Ok(map)
}

fn lost_sums(block: u64) -> ChunkError {
    ChunkError::Corrupt {
        block,
        detail: "data without a checksum (checksums lost)".into(),
    }
}

/// Whether the file has no data at all for blocks `b0..b1` (a hole in the underlying file, or
/// past its end): then they read as zeros without being read. `false` when unsure.
fn unallocated(f: &File, g: &Geometry, b0: u64, b1: u64) -> std::io::Result<bool> {
    let start = g.data_start + b0 * g.block_size;
    let end = g.data_start + b1 * g.block_size;
    // SAFETY: lseek on a descriptor we own. It moves the shared file offset, which nothing
    // here uses: every read and write is positional (pread/pwrite).
    let r = unsafe { libc::lseek(f.as_raw_fd(), start as libc::off_t, libc::SEEK_DATA) };
    if r >= 0 {
        return Ok(r as u64 >= end);
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        // No data at or after `start`.
        Some(libc::ENXIO) => Ok(true),
        // A file system without SEEK_DATA: read and look.
        Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) => Ok(false),
        _ => Err(e),
    }
}

/// Fills `buf` from the file at `off`: what lies past EOF reads as zeros. `buf` may be
/// uninitialised (a fresh read buffer is never zeroed first: for 1 MiB READs the memset cost
/// as much as the pread).
fn read_full_uninit<'a>(
    f: &File,
    buf: &'a mut [MaybeUninit<u8>],
    off: u64,
) -> std::io::Result<&'a mut [u8]> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: the kernel writes at most `rest.len()` bytes into memory we own exclusively;
        // `MaybeUninit` makes writing into uninitialised memory sound.
        let n = unsafe {
            libc::pread(
                f.as_raw_fd(),
                rest.as_mut_ptr().cast(),
                rest.len(),
                (off + done as u64) as libc::off_t,
            )
        };
        match n {
            0 => break,
            n if n > 0 => done += n as usize,
            _ => {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    buf[done..].fill(MaybeUninit::new(0));
    // SAFETY: every byte is now initialised: `..done` by pread, the rest just above.
    Ok(unsafe { &mut *(buf as *mut [MaybeUninit<u8>] as *mut [u8]) })
}

fn zero_uninit(buf: &mut [MaybeUninit<u8>]) -> &mut [u8] {
    buf.fill(MaybeUninit::new(0));
    // SAFETY: just initialised.
    unsafe { &mut *(buf as *mut [MaybeUninit<u8>] as *mut [u8]) }
}

/// Reads and verifies blocks `b0..b1` into `out` (which must be `(b1 - b0) * block_size` long);
/// on success every byte of `out` is initialised.
fn read_blocks<'a>(
    f: &File,
    g: &Geometry,
    b0: u64,
    b1: u64,
    out: &'a mut [MaybeUninit<u8>],
) -> Result<&'a mut [u8], ChunkError> {
    let bs = g.block_size as usize;
    let (cur, pend) = read_sums(f, g, b0, b1)?;
    // One pread for the whole range unless it is all holes the file has no bytes for.
    if cur.iter().chain(&pend).all(|s| *s == ZERO) && unallocated(f, g, b0, b1)? {
        return Ok(zero_uninit(out));
    }
    let out = read_full_uninit(f, out, g.data_start + b0 * g.block_size)?;
    let hole = |i: usize| cur[i] == ZERO && pend[i] == ZERO;
    // Runs of data blocks are hashed together (see `sums`); holes get a placeholder.
    let n = cur.len();
    let mut hashes = Vec::with_capacity(n);
    let mut i = 0;
    while i < n {
        if hole(i) {
            hashes.push(ZERO);
            i += 1;
            continue;
        }
        let j = (i..n).find(|&j| hole(j)).unwrap_or(n);
        crate::sums::block_sums(&out[i * bs..j * bs], bs, &mut hashes);
        i = j;
    }
    for (i, block) in out.chunks_exact_mut(bs).enumerate() {
        let (c, p) = (cur[i], pend[i]);
        if c == ZERO && p == ZERO {
            if block.iter().any(|b| *b != 0) {
                return Err(lost_sums(b0 + i as u64));
            }
            continue;
        }
        let h = hashes[i];
        if (c != ZERO && h == c) || (p != ZERO && h == p) {
            continue;
        }
        if c == ZERO && block.iter().all(|b| *b == 0) {
            // A first write to this block died before its data reached the file.
            continue;
        }
        return Err(ChunkError::Corrupt {
            block: b0 + i as u64,
            detail: "checksum mismatch".into(),
        });
    }
    Ok(out)
}

/// `read_blocks` into initialised memory.
fn read_blocks_init(
    f: &File,
    g: &Geometry,
    b0: u64,
    b1: u64,
    out: &mut [u8],
) -> Result<(), ChunkError> {
    // SAFETY: viewing initialised bytes as possibly-uninitialised is always sound, and
    // `read_blocks` only ever stores initialised bytes into it.
    let out = unsafe { &mut *(out as *mut [u8] as *mut [MaybeUninit<u8>]) };
    read_blocks(f, g, b0, b1, out).map(|_| ())
}

fn block_span(g: &Geometry, off: u64, len: u64) -> (u64, u64) {
    (off / g.block_size, (off + len).div_ceil(g.block_size))
}

/// Appends the `len` bytes at chunk offset `off`, verified, to `out`. Reads whole blocks into
/// `out`'s spare capacity, so the bytes are copied once, from the page cache.
pub(crate) fn read_append(
    f: &File,
    g: &Geometry,
    off: u64,
    len: usize,
    out: &mut Vec<u8>,
) -> Result<(), ChunkError> {
    if len == 0 {
        return Ok(());
    }
    let (b0, b1) = block_span(g, off, len as u64);
    let start = (off - b0 * g.block_size) as usize;
    let span = ((b1 - b0) * g.block_size) as usize;
    let base = out.len();
    out.reserve(span);
    read_blocks(f, g, b0, b1, &mut out.spare_capacity_mut()[..span])?;
    // SAFETY: `read_blocks` initialised the first `span` bytes of the spare capacity.
    unsafe { out.set_len(base + span) };
    if start != 0 {
        out.copy_within(base + start..base + start + len, base);
    }
    out.truncate(base + len);
    Ok(())
}

/// Writes `data` at chunk offset `off` (read-modify-write of partial edge blocks).
pub(crate) fn write(f: &File, g: &Geometry, off: u64, data: &[u8]) -> Result<(), ChunkError> {
    if data.is_empty() {
        return Ok(());
    }
    let bs = g.block_size;
    let (b0, b1) = block_span(g, off, data.len() as u64);
    let start = (off - b0 * bs) as usize;
    let aligned = start == 0 && data.len() as u64 == (b1 - b0) * bs;
    let owned;
    let blocks: &[u8] = if aligned {
        data
    } else {
        let mut buf = vec![0u8; ((b1 - b0) * bs) as usize];
        let bsu = bs as usize;
        if start != 0 {
            read_blocks_init(f, g, b0, b0 + 1, &mut buf[..bsu])?;
        }
        let end = start + data.len();
        if !end.is_multiple_of(bsu) && (b1 - 1 > b0 || start == 0) {
            let last = buf.len() - bsu;
            read_blocks_init(f, g, b1 - 1, b1, &mut buf[last..])?;
        }
        buf[start..end].copy_from_slice(data);
        owned = buf;
        &owned
    };
    let sums = sums_of(blocks, bs as usize);
    write_sums(f, g, Slot::Pend, b0, &sums)?;
    f.write_all_at(blocks, g.data_start + b0 * bs)?;
    write_sums(f, g, Slot::Cur, b0, &sums)?;
    Ok(())
}

/// Turns whole blocks `b0..b1` into holes; `drop_data` frees their bytes (punch or truncate).
fn clear_blocks(
    f: &File,
    g: &Geometry,
    b0: u64,
    b1: u64,
    drop_data: impl FnOnce() -> std::io::Result<()>,
) -> Result<(), ChunkError> {
    if b0 >= b1 {
        return drop_data().map_err(Into::into);
    }
    let (cur, pend) = read_sums(f, g, b0, b1)?;
    if cur.iter().chain(&pend).all(|s| *s == ZERO) {
        return drop_data().map_err(Into::into);
    }
    // Until the data is gone, `pend` vouches for it, so a crash in between leaves it readable.
    let keep: Vec<Sum> = cur
        .iter()
        .zip(&pend)
        .map(|(c, p)| if *c != ZERO { *c } else { *p })
        .collect();
    write_sums(f, g, Slot::Pend, b0, &keep)?;
    let zeros = vec![ZERO; (b1 - b0) as usize];
    write_sums(f, g, Slot::Cur, b0, &zeros)?;
    drop_data()?;
    write_sums(f, g, Slot::Pend, b0, &zeros)?;
    Ok(())
}

/// Zeroes the bytes `[off, end)` of one block that is partly kept; a hole stays a hole.
fn zero_partial(f: &File, g: &Geometry, off: u64, end: u64) -> Result<(), ChunkError> {
    if off >= end {
        return Ok(());
    }
    let b = off / g.block_size;
    if !sums_map(f, g, b, b + 1)?[0] {
        return Ok(());
    }
    write(f, g, off, &vec![0u8; (end - off) as usize])
}

fn punch(f: &File, off: u64, len: u64) -> std::io::Result<()> {
    let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    // SAFETY: fallocate on an fd we own; offsets are checked to fit i64 by the caller's bounds
    // (chunk files are at most a few GiB).
    let r = unsafe { libc::fallocate(f.as_raw_fd(), mode, off as libc::off_t, len as libc::off_t) };
    if r == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        // Without punch support the bytes are zeroed instead: a block without sums must hold
        // no bytes, or it reads as one whose checksums were lost.
        Some(libc::EOPNOTSUPP) => {
            let zeros = vec![0u8; (1 << 20).min(len) as usize];
            let mut at = off;
            while at < off + len {
                let n = (zeros.len() as u64).min(off + len - at);
                f.write_all_at(&zeros[..n as usize], at)?;
                at += n;
            }
            Ok(())
        }
        _ => Err(e),
    }
}

/// Reserves space for chunk range `[off, off+len)` without changing its contents.
pub(crate) fn allocate(f: &File, g: &Geometry, off: u64, len: u64) -> std::io::Result<()> {
    // SAFETY: as in `punch`.
    let r = unsafe {
        libc::fallocate(
            f.as_raw_fd(),
            libc::FALLOC_FL_KEEP_SIZE,
            (g.data_start + off) as libc::off_t,
            len as libc::off_t,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EOPNOTSUPP) => Ok(()),
        _ => Err(e),
    }
}

/// Makes chunk range `[off, off+len)` read as zeros and report as a hole where whole blocks are
/// covered.
pub(crate) fn deallocate(f: &File, g: &Geometry, off: u64, len: u64) -> Result<(), ChunkError> {
    let bs = g.block_size;
    let end = off + len;
    let full0 = off.div_ceil(bs);
    let full1 = end / bs;
    if full0 >= full1 {
        // No whole block covered: at most the tail of one block and the head of the next.
        let mid = (off / bs + 1) * bs;
        zero_partial(f, g, off, end.min(mid))?;
        if end > mid {
            zero_partial(f, g, mid, end)?;
        }
        return Ok(());
    }
    zero_partial(f, g, off, full0 * bs)?;
    zero_partial(f, g, full1 * bs, end)?;
    clear_blocks(f, g, full0, full1, || {
        punch(f, g.data_start + full0 * bs, (full1 - full0) * bs)
    })
}

/// Drops everything at chunk offset `off` and beyond.
pub(crate) fn truncate(f: &File, g: &Geometry, off: u64) -> Result<(), ChunkError> {
    let bs = g.block_size;
    let keep_blocks = off.div_ceil(bs);
    zero_partial(f, g, off, keep_blocks * bs)?;
    clear_blocks(f, g, keep_blocks, g.blocks, || {
        f.set_len(g.data_start + keep_blocks * bs)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::Config;

    fn read(f: &File, g: &Geometry, off: u64, out: &mut [u8]) -> Result<(), ChunkError> {
        let mut v = vec![7u8; 3];
        read_append(f, g, off, out.len(), &mut v)?;
        assert_eq!(&v[..3], &[7, 7, 7], "bytes already in the buffer are kept");
        out.copy_from_slice(&v[3..]);
        Ok(())
    }

    fn setup() -> (tempfile::TempDir, File, Geometry) {
        let dir = tempfile::tempdir().unwrap();
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.path().join("c"))
            .unwrap();
        let g = Geometry::new(Config {
            chunk_size: 64 << 10,
            block_size: 4096,
        });
        assert!(check_preamble(&f, &g, true).unwrap());
        (dir, f, g)
    }

    /// Replays the first steps of `write` and stops where a SIGKILL could have stopped it.
    fn interrupted_write(f: &File, g: &Geometry, b0: u64, data: &[u8], pages_written: usize) {
        let sums = sums_of(data, 4096);
        write_sums(f, g, Slot::Pend, b0, &sums).unwrap();
        let n = pages_written * 4096;
        f.write_all_at(&data[..n], g.data_start + b0 * 4096)
            .unwrap();
    }

    #[test]
    fn write_torn_between_pages_still_verifies() {
        let (_d, f, g) = setup();
        let old = vec![1u8; 4 * 4096];
        write(&f, &g, 0, &old).unwrap();
        let new = vec![2u8; 4 * 4096];
        interrupted_write(&f, &g, 0, &new, 2);
        let mut out = vec![0u8; 4 * 4096];
        read(&f, &g, 0, &mut out).unwrap();
        assert!(out[..8192].iter().all(|b| *b == 2));
        assert!(out[8192..].iter().all(|b| *b == 1));
        // A first write to fresh blocks interrupted the same way: new pages, then holes.
        interrupted_write(&f, &g, 8, &new, 1);
        let mut out = vec![9u8; 4 * 4096];
        read(&f, &g, 8 * 4096, &mut out).unwrap();
        assert!(out[..4096].iter().all(|b| *b == 2));
        assert!(out[4096..].iter().all(|b| *b == 0));
        // And a completed write afterwards is clean.
        write(&f, &g, 0, &new).unwrap();
        read(&f, &g, 0, &mut out).unwrap();
        assert!(out.iter().all(|b| *b == 2));
    }

    #[test]
    fn bytes_matching_neither_slot_are_corrupt() {
        let (_d, f, g) = setup();
        write(&f, &g, 0, &[1u8; 8192]).unwrap();
        f.write_all_at(&[7u8; 100], g.data_start + 4096 + 50)
            .unwrap();
        let mut out = vec![0u8; 8192];
        match read(&f, &g, 0, &mut out) {
            Err(ChunkError::Corrupt { block: 1, .. }) => {}
            other => panic!("{other:?}"),
        }
        // The intact block still reads on its own.
        read(&f, &g, 0, &mut out[..4096]).unwrap();
    }

    #[test]
    fn zeroed_checksum_slots_are_corrupt_not_a_hole() {
        let (_d, f, g) = setup();
        write(&f, &g, 0, &[5u8; 3 * 4096]).unwrap();
        // Both slots of block 1 zeroed, as a bad sector or a stray write would.
        f.write_all_at(&[0u8; SUM_LEN], g.cur_off(1)).unwrap();
        f.write_all_at(&[0u8; SUM_LEN], g.pend_off(1)).unwrap();
        let mut out = vec![0u8; 3 * 4096];
        match read(&f, &g, 0, &mut out) {
            Err(ChunkError::Corrupt { block: 1, .. }) => {}
            other => panic!("read: {other:?}"),
        }
        match read(&f, &g, 4096, &mut out[..4096]) {
            Err(ChunkError::Corrupt { block: 1, .. }) => {}
            other => panic!("read of the block alone: {other:?}"),
        }
        match block_map(&f, &g, 0, 3) {
            Err(ChunkError::Corrupt { block: 1, .. }) => {}
            other => panic!("block map: {other:?}"),
        }
        // Its neighbours and the real holes after them still read.
        read(&f, &g, 0, &mut out[..4096]).unwrap();
        read(&f, &g, 8 * 4096, &mut out).unwrap();
        assert!(out.iter().all(|b| *b == 0));
        assert_eq!(block_map(&f, &g, 3, 16).unwrap(), vec![false; 13]);
        // A full-block rewrite heals it.
        write(&f, &g, 4096, &[6u8; 4096]).unwrap();
        read(&f, &g, 4096, &mut out[..4096]).unwrap();
        assert!(out[..4096].iter().all(|b| *b == 6));
    }

    #[test]
    fn zeroed_preamble_of_a_file_with_data_is_corrupt() {
        let (_d, f, g) = setup();
        write(&f, &g, 0, &[5u8; 4096]).unwrap();
        f.write_all_at(&[0u8; PREAMBLE_LEN as usize], 0).unwrap();
        for create in [false, true] {
            match check_preamble(&f, &g, create) {
                Err(ChunkError::Corrupt { .. }) => {}
                other => panic!("create {create}: {other:?}"),
            }
        }
        // A file cut short before its preamble was written holds nothing.
        f.set_len(0).unwrap();
        assert!(!check_preamble(&f, &g, false).unwrap());
        assert!(check_preamble(&f, &g, true).unwrap());
    }

    #[test]
    fn deallocated_blocks_hold_no_bytes() {
        let (_d, f, g) = setup();
        write(&f, &g, 0, &[4u8; 4 * 4096]).unwrap();
        deallocate(&f, &g, 4096, 2 * 4096).unwrap();
        truncate(&f, &g, 3 * 4096 + 10).unwrap();
        let mut out = vec![9u8; 4 * 4096];
        read(&f, &g, 0, &mut out).unwrap();
        assert!(out[..4096].iter().all(|b| *b == 4));
        assert!(out[4096..3 * 4096].iter().all(|b| *b == 0));
        assert!(out[3 * 4096..3 * 4096 + 10].iter().all(|b| *b == 4));
        assert_eq!(
            block_map(&f, &g, 0, 4).unwrap(),
            vec![true, false, false, true]
        );
    }

    #[test]
    fn interrupted_punch_keeps_old_data_readable() {
        let (_d, f, g) = setup();
        write(&f, &g, 0, &[3u8; 8192]).unwrap();
        // Sums cleared but the data not yet dropped: `pend` still vouches for it.
        let r = clear_blocks(&f, &g, 0, 2, || Err(std::io::Error::other("killed")));
        assert!(r.is_err());
        let mut out = vec![0u8; 8192];
        read(&f, &g, 0, &mut out).unwrap();
        assert!(out.iter().all(|b| *b == 3));
        deallocate(&f, &g, 0, 8192).unwrap();
        read(&f, &g, 0, &mut out).unwrap();
        assert!(out.iter().all(|b| *b == 0));
        assert_eq!(block_map(&f, &g, 0, 2).unwrap(), vec![false, false]);
    }
}
