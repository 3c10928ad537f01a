//! The data server's disk path on io_uring against today's, measured in one run (issue 13).
//!
//! `cargo run --release -p chunkstore --example uringbench [MiB] [rounds] [dir|-] [only]`
//!
//! `dir` must be on the real disk (not tmpfs); by default (or `-`) a temp dir under /var/tmp.
//! `only`: run just the patterns whose name contains it (e.g. `hot`).
//!
//! **today**: every READ/WRITE the data server serves is `ChunkStore::{read, write_owned}`,
//! which runs on tokio's blocking pool (`spawn_blocking`) and does std pread/pwrite: per read,
//! two preads of checksums (`cur`, `pend`) and one of the data, then blake3 of every 4 KiB
//! block; per write, the block sums, then pwrite of `pend`, of the data, of `cur`, and
//! fdatasync when stable.
//!
//! **today+pool**: the same, reading into recycled buffers (`ChunkStore::read_into`, as the
//! MDS's own READs do through `proto::bufpool`): how much of a difference is buffer allocation.
//!
//! The io_uring paths do the same I/O on chunk files of the same format with the same
//! checksums (`chunkstore::block_checksums`); their reads verify what the store wrote and the
//! store verifies what they wrote, so a wrong offset fails the run instead of flattering it:
//! - **ring/thread**: still on the blocking pool, but each blocking thread has its own ring and
//!   hands a request's I/Os to the kernel in one `io_uring_enter` (a write as a linked chain
//!   pend -> data -> cur -> fdatasync).
//! - **ring shared**: one ring thread for the store, no blocking pool: async callers queue
//!   their I/Os to it (woken through an eventfd), it submits everything queued in one
//!   `io_uring_enter` and hands completions back; checksums are computed on the caller's tokio
//!   worker. This is the design that batches across requests.
//! - **ring fixed**: ring shared with registered buffers (`READ_FIXED`/`WRITE_FIXED`): the
//!   kernel does not map the user pages per I/O. Generous to it: a read is verified in the
//!   registered buffer and not copied out (a server would hand the buffer to the reply), while
//!   a write pays the copy into one (the data arrives in a network buffer).
//!
//! Patterns, each at 1, 4 and 16 requests in flight (tokio tasks on a 2-worker runtime, as the
//! data server runs): 1 MiB sequential reads, page cache hot and cold (the object's chunk files
//! dropped from the cache with `posix_fadvise(DONTNEED)`, which touches no one else's cache);
//! 1 MiB sequential stable writes (FILE_SYNC: written and fdatasynced before the reply) to a
//! fresh object; 64 KiB and 4 KiB random reads, hot. Rounds run every variant of a pattern
//! back to back, in an order rotated per round, so a ratio compares the same moment of a
//! shared machine; the table shows medians over rounds, and CPU time (user + system, all
//! threads, io_uring's kernel workers included) per MiB or per op.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use chunkstore::{block_checksums, ChunkStore, Config};
use io_uring::{opcode, squeue, types, IoUring};

const MIB: u64 = 1 << 20;
const CS: u64 = 4 << 20;
const BS: u64 = 4096;
const BLOCKS: u64 = CS / BS;
const SUM: u64 = 32;
// The chunk file format (chunkstore/src/geometry.rs): a 64-byte preamble, `cur` sums, `pend`
// sums, data from the next page boundary.
const PREAMBLE: u64 = 64;
const DATA_START: u64 = (PREAMBLE + 2 * BLOCKS * SUM).div_ceil(4096) * 4096;
const FIXED_BUFS: usize = 32;

fn cur_off(b: u64) -> u64 {
    PREAMBLE + b * SUM
}
fn pend_off(b: u64) -> u64 {
    PREAMBLE + (BLOCKS + b) * SUM
}
fn preamble() -> [u8; PREAMBLE as usize] {
    let mut p = [0u8; PREAMBLE as usize];
    p[..8].copy_from_slice(b"CFSCHNK1");
    p[8..16].copy_from_slice(&CS.to_le_bytes());
    p[16..24].copy_from_slice(&BS.to_le_bytes());
    p
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// User + system CPU seconds of the whole process so far.
fn cpu_secs() -> f64 {
    // SAFETY: getrusage writes one rusage into memory we own.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF covers every thread of the process.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

fn chunk_path(root: &Path, id: u64, c: u64) -> PathBuf {
    root.join("objects")
        .join(format!("{:02x}", id & 0xff))
        .join(format!("{id:016x}"))
        .join(format!("{c:x}"))
}

/// Drops the object's chunk files from the page cache (written back first).
fn evict(root: &Path, id: u64, size: u64) {
    for c in 0..size.div_ceil(CS) {
        if let Ok(f) = File::open(chunk_path(root, id, c)) {
            f.sync_all().expect("sync");
            // SAFETY: a plain syscall on a descriptor we own.
            unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        }
    }
}

/// Checks data against the `cur | pend` sums read with it, as `chunk::read_blocks` does (the
/// benchmark's objects have no holes, so a zero sum is an error here).
fn verify(data: &[u8], sums: &[u8]) {
    let n = data.len() / BS as usize;
    let mut h = Vec::with_capacity(n);
    block_checksums(data, BS as usize, &mut h);
    let (cur, pend) = sums.split_at(n * SUM as usize);
    for (i, s) in h.iter().enumerate() {
        let r = i * SUM as usize..(i + 1) * SUM as usize;
        assert!(
            s[..] == cur[r.clone()] || s[..] == pend[r],
            "checksum mismatch in block {i}: the io_uring path read the wrong bytes"
        );
    }
}

fn sums_bytes(data: &[u8]) -> Vec<u8> {
    let mut h = Vec::with_capacity(data.len() / BS as usize);
    block_checksums(data, BS as usize, &mut h);
    h.concat()
}

/// Where a request lands: chunk file, first block, block count.
fn place(off: u64, len: u64) -> (u64, u64, u64) {
    let c = off / CS;
    let in_off = off % CS;
    assert!(in_off.is_multiple_of(BS) && len.is_multiple_of(BS) && in_off + len <= CS);
    (c, in_off / BS, len / BS)
}

/// Chunk files opened (and created, preamble written) by the io_uring paths.
struct Files {
    root: PathBuf,
    open: Mutex<HashMap<(u64, u64), Arc<File>>>,
}

impl Files {
    /// The chunk file; a new one is made durable with its directories before it is used, as the
    /// store's stable writes do (the bench's writes are all stable).
    fn get(&self, id: u64, c: u64) -> Arc<File> {
        if let Some(f) = self.open.lock().unwrap().get(&(id, c)) {
            return f.clone();
        }
        let path = chunk_path(&self.root, id, c);
        let f = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(_) => {
                let dir = path.parent().unwrap();
                std::fs::create_dir_all(dir).unwrap();
                let f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&path)
                    .unwrap();
                f.write_all_at(&preamble(), 0).unwrap();
                File::open(dir).unwrap().sync_all().unwrap();
                f
            }
        };
        let f = Arc::new(f);
        self.open.lock().unwrap().insert((id, c), f.clone());
        f
    }
}

fn read_sqes(fd: i32, b0: u64, n: u64, sums: *mut u8, data: *mut u8) -> [squeue::Entry; 3] {
    let fd = types::Fd(fd);
    let sl = (n * SUM) as u32;
    [
        opcode::Read::new(fd, sums, sl).offset(cur_off(b0)).build(),
        // SAFETY (of the pointer arithmetic): `sums` is 2 * n * SUM bytes long.
        opcode::Read::new(fd, unsafe { sums.add(sl as usize) }, sl)
            .offset(pend_off(b0))
            .build(),
        opcode::Read::new(fd, data, (n * BS) as u32)
            .offset(DATA_START + b0 * BS)
            .build(),
    ]
}

/// The buffers of one read of `n` blocks: `cur | pend` sums, and the data.
struct ReadBufs {
    sums: Vec<u8>,
    data: Vec<u8>,
    len: usize,
}

impl ReadBufs {
    /// The buffers and the entries that fill them.
    fn new(fd: i32, b0: u64, n: u64) -> (ReadBufs, [squeue::Entry; 3]) {
        let mut b = ReadBufs {
            sums: vec![0u8; (2 * n * SUM) as usize],
            data: Vec::with_capacity((n * BS) as usize),
            len: (n * BS) as usize,
        };
        let data = b.data.spare_capacity_mut().as_mut_ptr().cast();
        let sq = read_sqes(fd, b0, n, b.sums.as_mut_ptr(), data);
        (b, sq)
    }

    /// Checks the results of the entries `new` made and verifies the data against the sums.
    fn finish(mut self, res: &[i32]) -> Vec<u8> {
        let sl = self.sums.len() as u64 / 2;
        check(res, &[sl, sl, self.len as u64]);
        // SAFETY: the kernel filled the first `len` bytes of the spare capacity (checked just
        // above), and `new` reserved at least that many.
        unsafe { self.data.set_len(self.len) };
        verify(&self.data, &self.sums);
        self.data
    }
}

/// pend -> data -> cur (-> fdatasync), linked so the kernel runs them in this order, as the
/// two-slot checksum scheme needs.
fn write_sqes(fd: i32, b0: u64, sums: &[u8], data: squeue::Entry) -> Vec<squeue::Entry> {
    let fdt = types::Fd(fd);
    vec![
        opcode::Write::new(fdt, sums.as_ptr(), sums.len() as u32)
            .offset(pend_off(b0))
            .build()
            .flags(squeue::Flags::IO_LINK),
        data.flags(squeue::Flags::IO_LINK),
        opcode::Write::new(fdt, sums.as_ptr(), sums.len() as u32)
            .offset(cur_off(b0))
            .build()
            .flags(squeue::Flags::IO_LINK),
        opcode::Fsync::new(fdt)
            .flags(types::FsyncFlags::DATASYNC)
            .build(),
    ]
}

fn check(res: &[i32], want: &[u64]) {
    for (r, w) in res.iter().zip(want) {
        assert!(*r >= 0, "io_uring op failed: errno {}", -r);
        assert_eq!(*r as u64, *w, "short io_uring transfer");
    }
}

// ---- ring/thread: a ring per blocking-pool thread, one io_uring_enter per request ----

thread_local! {
    static RING: std::cell::RefCell<Option<IoUring>> = const { std::cell::RefCell::new(None) };
}

/// Submits `sqes` on this thread's ring and waits for all of them.
///
/// # Safety
/// Every buffer the entries point at must stay valid until this returns (it waits for all).
unsafe fn run_on_thread_ring(sqes: &[squeue::Entry]) -> Vec<i32> {
    RING.with(|r| {
        let mut r = r.borrow_mut();
        let ring = r.get_or_insert_with(|| IoUring::new(16).expect("io_uring setup"));
        for (i, e) in sqes.iter().enumerate() {
            // SAFETY: the caller keeps the buffers alive until we return, and we return only
            // after every entry has completed.
            unsafe { ring.submission().push(&e.clone().user_data(i as u64)) }.expect("sq full");
        }
        ring.submit_and_wait(sqes.len()).expect("io_uring_enter");
        let mut res = vec![0; sqes.len()];
        let mut got = 0;
        while got < sqes.len() {
            for c in ring.completion() {
                res[c.user_data() as usize] = c.result();
                got += 1;
            }
            if got < sqes.len() {
                ring.submit_and_wait(sqes.len() - got)
                    .expect("io_uring_enter");
            }
        }
        res
    })
}

// ---- ring shared: one ring thread, many requests per io_uring_enter ----

/// A request for the ring thread: its entries, and whatever owns their buffers (returned with
/// the results, so the buffers outlive the I/O even if the caller stopped waiting).
struct Job {
    sqes: Vec<squeue::Entry>,
    keep: Box<dyn std::any::Any + Send>,
    reply: tokio::sync::oneshot::Sender<(Vec<i32>, Box<dyn std::any::Any + Send>)>,
}

struct Shared {
    tx: Mutex<mpsc::Sender<Job>>,
    wake: OwnedFd,
    /// Registered buffers: base pointers, and the free indices.
    fixed: Option<(Vec<usize>, Mutex<Vec<u16>>)>,
    _fixed_mem: Vec<Vec<u8>>,
}

const WAKE: u64 = u64::MAX;

impl Shared {
    fn start(fixed: bool) -> Arc<Shared> {
        let ring: IoUring = IoUring::new(256).expect("io_uring setup");
        let mut mem: Vec<Vec<u8>> = Vec::new();
        let fixed = if fixed {
            mem = (0..FIXED_BUFS).map(|_| vec![0u8; MIB as usize]).collect();
            let iov: Vec<libc::iovec> = mem
                .iter_mut()
                .map(|b| libc::iovec {
                    iov_base: b.as_mut_ptr().cast(),
                    iov_len: b.len(),
                })
                .collect();
            // SAFETY: the buffers live in `Shared::_fixed_mem`, which outlives the ring thread's
            // use of them (the thread exits when `Shared` drops the sender, after every job).
            unsafe { ring.submitter().register_buffers(&iov) }.expect("register buffers");
            Some((
                mem.iter().map(|b| b.as_ptr() as usize).collect(),
                Mutex::new((0..FIXED_BUFS as u16).collect()),
            ))
        } else {
            None
        };
        // SAFETY: eventfd returns a new descriptor we then own.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        assert!(efd >= 0, "eventfd");
        // SAFETY: `efd` is a fresh descriptor nobody else owns.
        let wake = unsafe { OwnedFd::from_raw_fd(efd) };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || ring_thread(ring, rx, efd));
        Arc::new(Shared {
            tx: Mutex::new(tx),
            wake,
            fixed,
            _fixed_mem: mem,
        })
    }

    async fn submit<K: Send + 'static>(&self, sqes: Vec<squeue::Entry>, keep: K) -> (Vec<i32>, K) {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.tx
            .lock()
            .unwrap()
            .send(Job {
                sqes,
                keep: Box::new(keep),
                reply,
            })
            .expect("ring thread gone");
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live array to our eventfd.
        unsafe { libc::write(self.wake.as_raw_fd(), one.as_ptr().cast(), 8) };
        let (res, keep) = rx.await.expect("ring thread gone");
        (res, *keep.downcast::<K>().expect("same type back"))
    }

    /// A registered buffer's index and address (an address, not a pointer, so futures holding
    /// it stay Send).
    fn take_fixed(&self) -> (u16, usize) {
        let (bases, free) = self.fixed.as_ref().expect("fixed buffers");
        let i = free
            .lock()
            .unwrap()
            .pop()
            .expect("more fixed buffers than requests");
        (i, bases[i as usize])
    }

    fn put_fixed(&self, i: u16) {
        self.fixed.as_ref().unwrap().1.lock().unwrap().push(i);
    }
}

fn ring_thread(mut ring: IoUring, rx: mpsc::Receiver<Job>, efd: i32) {
    struct Slot {
        job: Job,
        res: Vec<i32>,
        left: usize,
    }
    let mut slots: Vec<Option<Slot>> = Vec::new();
    let mut wake_buf = [0u8; 8];
    let arm = |ring: &mut IoUring, buf: &mut [u8; 8]| {
        let e = opcode::Read::new(types::Fd(efd), buf.as_mut_ptr(), 8)
            .build()
            .user_data(WAKE);
        // SAFETY: `wake_buf` lives on this thread's stack for the thread's whole life.
        unsafe { ring.submission().push(&e) }.expect("sq full");
    };
    arm(&mut ring, &mut wake_buf);
    let mut backlog: std::collections::VecDeque<Job> = Default::default();
    let mut closing = false;
    loop {
        // Everything queued goes to the kernel in this one call.
        ring.submit_and_wait(1).expect("io_uring_enter");
        let mut woken = false;
        let done: Vec<(u64, i32)> = ring
            .completion()
            .map(|c| (c.user_data(), c.result()))
            .collect();
        for (ud, r) in done {
            if ud == WAKE {
                woken = true;
                continue;
            }
            let (s, i) = ((ud >> 8) as usize, (ud & 0xff) as usize);
            let slot = slots[s].as_mut().expect("live slot");
            slot.res[i] = r;
            slot.left -= 1;
            if slot.left == 0 {
                let slot = slots[s].take().expect("live slot");
                let _ = slot.job.reply.send((slot.res, slot.job.keep));
            }
        }
        if woken {
            loop {
                match rx.try_recv() {
                    Ok(j) => backlog.push_back(j),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        closing = true;
                        break;
                    }
                }
            }
            if closing && backlog.is_empty() && slots.iter().all(Option::is_none) {
                // Nothing of anyone's is in the kernel any more.
                return;
            }
            arm(&mut ring, &mut wake_buf);
        }
        while let Some(job) = backlog.front() {
            let free = {
                let sq = ring.submission();
                sq.capacity() - sq.len()
            };
            if job.sqes.len() > free {
                break;
            }
            let job = backlog.pop_front().expect("front");
            let s = slots.iter().position(Option::is_none).unwrap_or_else(|| {
                slots.push(None);
                slots.len() - 1
            });
            for (i, e) in job.sqes.iter().enumerate() {
                let e = e.clone().user_data(((s as u64) << 8) | i as u64);
                // SAFETY: the job (and so every buffer its entries point at, held in
                // `job.keep` or in registered memory the caller holds an index to) stays in
                // `slots` until all its completions have arrived.
                unsafe { ring.submission().push(&e) }.expect("sq room checked");
            }
            slots[s] = Some(Slot {
                res: vec![0; job.sqes.len()],
                left: job.sqes.len(),
                job,
            });
        }
    }
}

// ---- the variants ----

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Variant {
    Today,
    TodayPool,
    RingThread,
    RingShared,
    RingFixed,
}
const VARIANTS: [Variant; 5] = [
    Variant::Today,
    Variant::TodayPool,
    Variant::RingThread,
    Variant::RingShared,
    Variant::RingFixed,
];
fn vname(v: Variant) -> &'static str {
    match v {
        Variant::Today => "today",
        Variant::TodayPool => "today+pool",
        Variant::RingThread => "ring/thread",
        Variant::RingShared => "ring shared",
        Variant::RingFixed => "ring fixed",
    }
}

struct Paths {
    store: ChunkStore,
    /// Recycled read buffers for `today+pool` (as `proto::bufpool` does for the MDS).
    pool: Mutex<Vec<Vec<u8>>>,
    files: Arc<Files>,
    shared: Arc<Shared>,
    fixed: Arc<Shared>,
}

impl Paths {
    /// A verified read of `len` bytes at `off` (within one chunk, block aligned); returns the
    /// bytes it produced.
    async fn read(&self, v: Variant, id: u64, off: u64, len: u64, size: u64) -> u64 {
        let (c, b0, n) = place(off, len);
        match v {
            Variant::Today => {
                let (d, _) = self.store.read(id, off, len, size).await.expect("read");
                d.len() as u64
            }
            Variant::TodayPool => {
                let buf = self.pool.lock().unwrap().pop().unwrap_or_default();
                let (mut d, _) = self
                    .store
                    .read_into(id, off, len, size, buf)
                    .await
                    .expect("read");
                let n = d.len() as u64;
                d.clear();
                self.pool.lock().unwrap().push(d);
                n
            }
            Variant::RingThread => {
                let f = self.files.get(id, c);
                let data = tokio::task::spawn_blocking(move || {
                    let (bufs, sq) = ReadBufs::new(f.as_raw_fd(), b0, n);
                    // SAFETY: `bufs` lives until after the call, which waits.
                    let res = unsafe { run_on_thread_ring(&sq) };
                    bufs.finish(&res)
                })
                .await
                .expect("join");
                // Dropped here, on the async side, as a server drops a sent reply (and as
                // today's path does: a buffer freed on another thread than the one that
                // allocated it costs more than one freed where it was made).
                let data = std::hint::black_box(data);
                data.len() as u64
            }
            Variant::RingShared => {
                let f = self.files.get(id, c);
                let (bufs, sq) = ReadBufs::new(f.as_raw_fd(), b0, n);
                // Heap buffers do not move when their Vecs move into the job.
                let (res, (_f, bufs)) = self.shared.submit(sq.to_vec(), (f, bufs)).await;
                bufs.finish(&res).len() as u64
            }
            Variant::RingFixed => {
                let f = self.files.get(id, c);
                let mut sums = vec![0u8; (2 * n * SUM) as usize];
                let (bi, addr) = self.fixed.take_fixed();
                let ptr = addr as *mut u8;
                let mut sq = read_sqes(f.as_raw_fd(), b0, n, sums.as_mut_ptr(), ptr).to_vec();
                sq[2] = opcode::ReadFixed::new(types::Fd(f.as_raw_fd()), ptr, len as u32, bi)
                    .offset(DATA_START + b0 * BS)
                    .build();
                let (res, (_f, sums)) = self.fixed.submit(sq, (f, sums)).await;
                check(&res, &[n * SUM, n * SUM, len]);
                // SAFETY: registered buffer `bi` is ours until `put_fixed`; the kernel filled
                // its first `len` bytes (checked above) and is done with it.
                let data = unsafe { std::slice::from_raw_parts(addr as *const u8, len as usize) };
                verify(data, &sums);
                self.fixed.put_fixed(bi);
                len
            }
        }
    }

    /// A stable (FILE_SYNC) write of `data` at `off` (within one chunk, block aligned).
    async fn write(&self, v: Variant, id: u64, off: u64, data: Bytes) {
        let (c, b0, _) = place(off, data.len() as u64);
        let len = data.len() as u64;
        let sl = len / BS * SUM;
        match v {
            Variant::Today | Variant::TodayPool => self
                .store
                .write_owned(id, off, data, true)
                .await
                .expect("write"),
            Variant::RingThread => {
                let files = self.files.clone();
                tokio::task::spawn_blocking(move || {
                    let f = files.get(id, c);
                    let sums = sums_bytes(&data);
                    let d = opcode::Write::new(types::Fd(f.as_raw_fd()), data.as_ptr(), len as u32)
                        .offset(DATA_START + b0 * BS)
                        .build();
                    let sq = write_sqes(f.as_raw_fd(), b0, &sums, d);
                    // SAFETY: `sums` and `data` live until after the call, which waits.
                    let res = unsafe { run_on_thread_ring(&sq) };
                    check(&res, &[sl, len, sl, 0]);
                })
                .await
                .expect("join")
            }
            Variant::RingShared => {
                let f = self.files.get(id, c);
                let sums = sums_bytes(&data);
                let d = opcode::Write::new(types::Fd(f.as_raw_fd()), data.as_ptr(), len as u32)
                    .offset(DATA_START + b0 * BS)
                    .build();
                let sq = write_sqes(f.as_raw_fd(), b0, &sums, d);
                let (res, _) = self.shared.submit(sq, (f, sums, data)).await;
                check(&res, &[sl, len, sl, 0]);
            }
            Variant::RingFixed => {
                let f = self.files.get(id, c);
                let sums = sums_bytes(&data);
                let (bi, addr) = self.fixed.take_fixed();
                // SAFETY: registered buffer `bi` (1 MiB >= len) is ours until `put_fixed`.
                unsafe {
                    std::ptr::copy_nonoverlapping(data.as_ptr(), addr as *mut u8, len as usize)
                };
                let d = opcode::WriteFixed::new(
                    types::Fd(f.as_raw_fd()),
                    addr as *const u8,
                    len as u32,
                    bi,
                )
                .offset(DATA_START + b0 * BS)
                .build();
                let sq = write_sqes(f.as_raw_fd(), b0, &sums, d);
                let (res, _) = self.fixed.submit(sq, (f, sums)).await;
                check(&res, &[sl, len, sl, 0]);
                self.fixed.put_fixed(bi);
            }
        }
    }
}

// ---- patterns ----

#[derive(Clone, Copy, PartialEq, Eq)]
enum Pattern {
    ReadHot1M,
    ReadCold1M,
    WriteStable1M,
    Rand64K,
    Rand4K,
}
const PATTERNS: [Pattern; 5] = [
    Pattern::ReadHot1M,
    Pattern::ReadCold1M,
    Pattern::WriteStable1M,
    Pattern::Rand64K,
    Pattern::Rand4K,
];
fn pname(p: Pattern) -> &'static str {
    match p {
        Pattern::ReadHot1M => "read 1M seq, hot",
        Pattern::ReadCold1M => "read 1M seq, cold",
        Pattern::WriteStable1M => "write 1M seq, stable",
        Pattern::Rand64K => "read 64K random, hot",
        Pattern::Rand4K => "read 4K random, hot",
    }
}

/// The object all reads use, and the first object id writes use.
const READ_OBJ: u64 = 1;

#[derive(Clone, Copy, Default)]
struct Sample {
    mib_s: f64,
    iops: f64,
    cpu_per_mib_ms: f64,
}

struct Sizes {
    /// The object the reads use.
    read: u64,
    /// Bytes of hot sequential reads per pass (the object, over and over).
    hot: u64,
    write: u64,
    rand_ops: u64,
}

async fn pass(
    paths: &Arc<Paths>,
    root: &Path,
    p: Pattern,
    v: Variant,
    depth: usize,
    sz: &Sizes,
    next_obj: &AtomicU64,
) -> Sample {
    let (len, ops, id) = match p {
        Pattern::ReadHot1M => (MIB, sz.hot / MIB, READ_OBJ),
        Pattern::ReadCold1M => (MIB, sz.read / MIB, READ_OBJ),
        Pattern::WriteStable1M => (
            MIB,
            sz.write / MIB,
            next_obj.fetch_add(1, Ordering::Relaxed),
        ),
        Pattern::Rand64K => (64 << 10, sz.rand_ops / 2, READ_OBJ),
        Pattern::Rand4K => (4096, sz.rand_ops, READ_OBJ),
    };
    if p == Pattern::ReadCold1M {
        evict(root, READ_OBJ, sz.read);
    }
    if p == Pattern::ReadHot1M || p == Pattern::Rand64K || p == Pattern::Rand4K {
        // Warm, so every variant starts from the same cache state.
        for off in (0..sz.read).step_by(MIB as usize) {
            paths
                .read(Variant::Today, READ_OBJ, off, MIB, sz.read)
                .await;
        }
    }
    let data = Bytes::from(pattern(MIB as usize, id));
    let counter = Arc::new(AtomicU64::new(0));
    let cpu0 = cpu_secs();
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..depth {
        let (paths, counter, data) = (paths.clone(), counter.clone(), data.clone());
        let size = sz.read;
        tasks.push(tokio::spawn(async move {
            let mut x = 0x2545_F491_4F6C_DD1Du64 ^ (t as u64 + 1);
            loop {
                let i = counter.fetch_add(1, Ordering::Relaxed);
                if i >= ops {
                    break;
                }
                match p {
                    Pattern::WriteStable1M => paths.write(v, id, i * MIB, data.clone()).await,
                    Pattern::ReadHot1M | Pattern::ReadCold1M => {
                        let off = (i * MIB) % size;
                        let got = paths.read(v, id, off, MIB, size).await;
                        assert_eq!(got, MIB);
                    }
                    Pattern::Rand64K | Pattern::Rand4K => {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let off = (x % (size / len)) * len;
                        let got = paths.read(v, id, off, len, size).await;
                        assert_eq!(got, len);
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu0;
    let mib = (ops * len) as f64 / MIB as f64;
    if p == Pattern::WriteStable1M {
        // What an io_uring path wrote must read back through the store, checksums and all.
        let (back, _) = paths
            .store
            .read(id, 0, ops * MIB, ops * MIB)
            .await
            .expect("store reads back what was written");
        assert!(back.chunks(MIB as usize).all(|c| c == &data[..]));
        paths.store.remove(id).await.expect("remove");
        paths
            .files
            .open
            .lock()
            .unwrap()
            .retain(|(i, _), _| *i != id);
    }
    Sample {
        mib_s: mib / secs,
        iops: ops as f64 / secs,
        cpu_per_mib_ms: cpu * 1e3 / mib,
    }
}

/// A table's header line: the title, the depth column, and one column per variant (the first,
/// the baseline, `first` wide; the others `rest`).
fn header(title: &str, first: usize, rest: usize) {
    let mut head = format!("{title:<22} {:>3} {:>first$}", "qd", vname(VARIANTS[0]));
    for v in &VARIANTS[1..] {
        head += &format!(" {:>rest$}", vname(*v));
    }
    println!("{head}");
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let read_mib: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(256);
    let rounds: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    let tmp;
    let only = args.get(4).cloned().unwrap_or_default();
    let root: PathBuf = match args.get(3).filter(|p| *p != "-") {
        Some(p) => PathBuf::from(p),
        None => {
            tmp = tempfile::tempdir_in("/var/tmp").expect("tempdir");
            tmp.path().join("store")
        }
    };
    // Passes of a few tenths of a second each on this machine: long enough to see past a
    // scheduler hiccup, short enough that rounds interleave often.
    let sz = Sizes {
        read: read_mib * MIB,
        hot: 4 * read_mib * MIB,
        write: (read_mib / 4).max(8) * MIB,
        rand_ops: 20_000,
    };
    // io_uring first: if the sandbox blocks it, that is the finding.
    if let Err(e) = IoUring::new(8) {
        println!(
            "io_uring_setup failed: {e} (errno {:?}); nothing to compare",
            e.raw_os_error()
        );
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let store = ChunkStore::open_with(
            &root,
            Config {
                chunk_size: CS,
                block_size: BS,
            },
        )
        .expect("open store");
        let blob = Bytes::from(pattern(sz.read as usize, 7));
        for off in (0..sz.read).step_by(MIB as usize) {
            store
                .write_owned(
                    READ_OBJ,
                    off,
                    blob.slice(off as usize..(off + MIB) as usize),
                    false,
                )
                .await
                .expect("setup write");
        }
        store.commit(READ_OBJ).await.expect("setup commit");
        let paths = Arc::new(Paths {
            store,
            pool: Mutex::new(Vec::new()),
            files: Arc::new(Files {
                root: root.clone(),
                open: Mutex::new(HashMap::new()),
            }),
            shared: Shared::start(false),
            fixed: Shared::start(true),
        });
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        println!(
            "uringbench: {} MiB object ({} MiB hot, once cold), {} MiB of stable writes, {} \
             random reads (4K; half as many 64K), {rounds} rounds, median; {} cores, loadavg {}",
            sz.read / MIB,
            sz.hot / MIB,
            sz.write / MIB,
            sz.rand_ops,
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            load.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        );
        let depths = [1usize, 4, 16];
        let next_obj = AtomicU64::new(1000);
        // samples[pattern][depth][variant][round]
        let mut samples =
            vec![vec![vec![Vec::<Sample>::new(); VARIANTS.len()]; depths.len()]; PATTERNS.len()];
        for round in 0..rounds {
            for (pi, &p) in PATTERNS.iter().enumerate() {
                if !pname(p).contains(only.as_str()) {
                    continue;
                }
                for (di, &d) in depths.iter().enumerate() {
                    for k in 0..VARIANTS.len() {
                        let vi = (k + round) % VARIANTS.len();
                        let s = pass(&paths, &root, p, VARIANTS[vi], d, &sz, &next_obj).await;
                        samples[pi][di][vi].push(s);
                    }
                }
            }
            eprintln!("round {} of {rounds} done", round + 1);
        }
        header("MiB/s IOPS (ratio)", 16, 24);
        let mut cpu_lines = Vec::new();
        for (pi, &p) in PATTERNS.iter().enumerate() {
            for (di, &d) in depths.iter().enumerate() {
                let base = &samples[pi][di][0];
                if base.is_empty() {
                    continue;
                }
                let mut line = format!(
                    "{:<22} {:>3} {:>7.0} {:>8.0}",
                    pname(p),
                    d,
                    median(base.iter().map(|s| s.mib_s).collect()),
                    median(base.iter().map(|s| s.iops).collect())
                );
                let mut cpu = format!(
                    "{:<22} {:>3} {:>8.2}",
                    pname(p),
                    d,
                    median(base.iter().map(|s| s.cpu_per_mib_ms).collect())
                );
                for s in &samples[pi][di][1..] {
                    let ratio =
                        median(s.iter().zip(base).map(|(a, b)| a.mib_s / b.mib_s).collect());
                    line += &format!(
                        " {:>7.0} {:>8.0} ({:4.2}x)",
                        median(s.iter().map(|s| s.mib_s).collect()),
                        median(s.iter().map(|s| s.iops).collect()),
                        ratio
                    );
                    let cr = median(
                        s.iter()
                            .zip(base)
                            .map(|(a, b)| a.cpu_per_mib_ms / b.cpu_per_mib_ms)
                            .collect(),
                    );
                    cpu += &format!(
                        " {:>8.2} ({:4.2}x)",
                        median(s.iter().map(|s| s.cpu_per_mib_ms).collect()),
                        cr
                    );
                }
                println!("{line}");
                cpu_lines.push(cpu);
            }
        }
        println!();
        header("CPU ms per MiB (ratio)", 8, 16);
        for l in cpu_lines {
            println!("{l}");
        }
    });
}
