//! The flexfiles layout driver: data I/O straight to the data servers, as the Linux client
//! does it. LAYOUTGET and GETDEVICEINFO from the MDS; NFSv3 WRITE to every mirror, READ from
//! one with failover; COMMIT on every DS written; LAYOUTCOMMIT so the MDS learns the size;
//! LAYOUTERROR and LAYOUTRETURN when a DS fails; and the MDS itself for any range without a
//! usable layout.
//!
//! Durability: DS writes are UNSTABLE and their data is kept (as the kernel keeps dirty pages)
//! until a COMMIT on every DS that took it returned the verifier of the WRITE. Whatever a
//! failed DS, a changed verifier or a returned layout leaves uncertain is written again through
//! a fresh layout with FILE_SYNC, so a COMMIT (or CLOSE) reports success only for bytes stable
//! on every mirror that accepted them. Kept data is bounded: past [`COMMIT_EVERY`] bytes the
//! writer that crosses the mark commits.
//!
//! Recalls (CB_LAYOUTRECALL): the segments a recall names stop serving new I/O at once, the
//! I/O in flight through them finishes, what was written through them is committed and
//! LAYOUTCOMMITted, and they go back with LAYOUTRETURN (`recall`); the next I/O asks for a
//! fresh layout, waiting out DELAY and LAYOUTTRYLATER.
//!
//! The driver is per client (device cache, DS connections, counters, the open files a recall
//! may name); layouts are per open file ([`FileLayouts`] in `OpenFile`).
mod devices;
mod dsconn;
mod layouts;
mod read;
mod recall;
mod report;
mod write;

use crate::client::{Client, Inner};
use crate::compound::{last_attrs, CompoundBuilder};
use crate::error::{Error, Result};
use crate::io::OpenFile;
use devices::Devices;
use layouts::{DsTarget, InUse, Segment, SegmentCache};
use proto::nfs4::*;
use proto::xdr::Xdr;
pub(crate) use recall::layout_recalled;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

/// Kept (unstable, uncommitted) bytes per file before a COMMIT is forced.
pub const COMMIT_EVERY: u64 = 64 << 20;
/// How long a write keeps asking for a layout without a failed DS before it goes through the
/// MDS. The MDS drops a DS from layouts after a few missed heartbeats.
const DS_FAILOVER_WINDOW: Duration = Duration::from_secs(20);
/// NFS4ERR_LAYOUTTRYLATER answers waited out before the I/O goes through the MDS.
const LAYOUT_TRYLATER_RETRIES: u32 = 5;
/// After LAYOUTUNAVAILABLE for reads, how long this open reads through the MDS without a
/// LAYOUTGET before each I/O: Linux's `PNFS_LAYOUTGET_RETRY_TIMEOUT` (120 s). Measured on a
/// data-reduced file (`conformance reducebench`): one refused LAYOUTGET per 1 MiB READ.
const NO_LAYOUT_RETRY: Duration = Duration::from_secs(120);

/// Failures of the driver's own work; they never reach the caller (the I/O then goes through
/// the MDS) except as `Error::Protocol`.
#[derive(Debug, thiserror::Error)]
pub enum PnfsError {
    #[error("unusable layout: {0}")]
    BadLayout(String),
    #[error("unusable device: {0}")]
    BadDevice(String),
    #[error("data server: {0}")]
    Ds(#[from] proto::nfs3_client::Nfs3ClientError),
    /// The DS failed moments ago and is left alone for a while.
    #[error("data server failed recently; not tried")]
    HeldDown,
    #[error(transparent)]
    Mds(#[from] Error),
}

/// Where bytes went, since the client connected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PnfsStats {
    pub layoutgets: u64,
    pub layoutreturns: u64,
    /// CB_LAYOUTRECALLs answered NFS4_OK (a matching layout was held, and is returned).
    pub layoutrecalls: u64,
    pub layouterrors: u64,
    pub layoutcommits: u64,
    pub getdeviceinfos: u64,
    /// Payload bytes written to DSs, summed over mirrors (a mirrored MiB counts twice).
    pub ds_write_bytes: u64,
    pub ds_read_bytes: u64,
    pub ds_commits: u64,
    /// DS calls that failed (any reason, including a failed connect).
    pub ds_errors: u64,
    /// Bytes written again (FILE_SYNC, through a new layout) after a DS failure or a changed
    /// verifier.
    pub rewrite_bytes: u64,
    /// Bytes that went through the MDS because no usable layout was there.
    pub mds_write_bytes: u64,
    pub mds_read_bytes: u64,
}

#[derive(Default)]
struct Counters {
    layoutgets: AtomicU64,
    layoutreturns: AtomicU64,
    layoutrecalls: AtomicU64,
    layouterrors: AtomicU64,
    layoutcommits: AtomicU64,
    ds_write_bytes: AtomicU64,
    ds_read_bytes: AtomicU64,
    ds_commits: AtomicU64,
    ds_errors: AtomicU64,
    rewrite_bytes: AtomicU64,
    mds_write_bytes: AtomicU64,
    mds_read_bytes: AtomicU64,
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    fn snapshot(&self) -> PnfsStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        PnfsStats {
            layoutgets: g(&self.layoutgets),
            layoutreturns: g(&self.layoutreturns),
            layoutrecalls: g(&self.layoutrecalls),
            layouterrors: g(&self.layouterrors),
            layoutcommits: g(&self.layoutcommits),
            getdeviceinfos: 0,
            ds_write_bytes: g(&self.ds_write_bytes),
            ds_read_bytes: g(&self.ds_read_bytes),
            ds_commits: g(&self.ds_commits),
            ds_errors: g(&self.ds_errors),
            rewrite_bytes: g(&self.rewrite_bytes),
            mds_write_bytes: g(&self.mds_write_bytes),
            mds_read_bytes: g(&self.mds_read_bytes),
        }
    }
}

/// The per-client half of the driver.
pub(crate) struct Driver {
    devices: Devices,
    stats: Counters,
    next_segment: AtomicU64,
    /// `layout_blksize`: the server's chunk size; LAYOUTGET asks for whole ones.
    blksize: u64,
    /// The open files that asked for a layout, by handle: what a CB_LAYOUTRECALL can name.
    /// Weak, so a dropped `OpenFile` leaves (pruned at the next registration).
    files: Mutex<Vec<(NfsFh4, Weak<FileShared>)>>,
}

/// Unstable data written to DSs and not yet committed: what is written again if any DS it
/// went to cannot vouch for it.
#[derive(Debug)]
struct Kept {
    seq: u64,
    /// The segment it went through; if that is no longer held, the write is done again.
    segment: Arc<Segment>,
    offset: u64,
    data: Arc<Vec<u8>>,
    len: usize,
    /// The verifier each mirror's WRITE returned.
    verfs: Vec<(DsTarget, [u8; 8])>,
}

#[derive(Debug, Default)]
struct FileState {
    segments: SegmentCache,
    /// The layout stateid; None until the first LAYOUTGET and after a return of everything.
    stateid: Option<Stateid4>,
    kept: Vec<Kept>,
    kept_bytes: u64,
    next_seq: u64,
    /// [lowest offset, end) written to DSs since the last LAYOUTCOMMIT.
    written: Option<(u64, u64)>,
    /// Highest end of any DS write through this open (for sizes of short DS reads).
    high_water: u64,
    /// The server answered LAYOUTUNAVAILABLE for READ layouts (an evicted or data-reduced
    /// file): reads go through the MDS without asking again until then.
    no_read_layout_until: Option<std::time::Instant>,
    /// Segments a recall took out of `segments`: no new I/O goes through them, and they are
    /// still held (drained, committed through) until the recall's LAYOUTRETURN.
    returning: Vec<Arc<Segment>>,
    /// Recalls answered NFS4_OK and not yet returned. No LAYOUTGET is sent meanwhile (RFC
    /// 8881 §12.5.5.2.1; Linux waits on `NFS_LAYOUT_RETURN`): a grant would move the layout
    /// stateid past the one the return presents.
    recalls: u32,
    /// The stateid of the latest recall still being returned: a LAYOUTGET reply with its
    /// `other` and a seqid no newer was granted before the recall, and is recalled with it.
    barrier: Option<Stateid4>,
    /// A LAYOUTGET is on the wire: a recall may name a layout whose grant we have not seen.
    getting: bool,
}

impl FileState {
    /// A cached segment for I/O at `offset`, counted as in use (`layouts` module comment).
    fn lookup(&self, offset: u64, iomode: Layoutiomode4) -> Option<InUse> {
        self.segments.lookup(offset, iomode).map(|s| s.begin_use())
    }

    /// Whether a kept write's segment is still ours to COMMIT through: cached, or recalled
    /// and not yet returned.
    fn holds(&self, segment: u64) -> bool {
        self.segments.contains(segment) || self.returning.iter().any(|s| s.id == segment)
    }
}

/// `a` is a later seqid than `b` (RFC 8881 §9.1.3.1: compared with wraparound, as Linux's
/// `pnfs_seqid_is_newer`).
fn seqid_newer(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// The per-open-file half of the driver, kept in `OpenFile`. Shared with the driver's
/// recall index, which holds it weakly.
#[derive(Default)]
pub(crate) struct FileLayouts(Arc<FileShared>);

#[derive(Default)]
pub(crate) struct FileShared {
    driver: OnceLock<Option<Arc<Driver>>>,
    state: Mutex<FileState>,
    /// LAYOUTGET and LAYOUTRETURN of a file go one at a time: layout stateid seqids then
    /// advance in order, and the I/Os that all need a chunk's layout share one LAYOUTGET.
    /// Never held across a pause: a recall's LAYOUTRETURN must not wait out a LAYOUTGET's
    /// DELAYs (the snapshot quiesce answers those while it waits for the return).
    layout_lock: tokio::sync::Mutex<()>,
    /// One COMMIT round at a time per file. Taken before `layout_lock` where both are.
    commit_lock: tokio::sync::Mutex<()>,
    /// Woken when a recall's return is done: the LAYOUTGETs held back by it go on.
    returned: tokio::sync::Notify,
    /// Whether the driver's recall index knows this file.
    registered: AtomicBool,
}

impl std::ops::Deref for FileLayouts {
    type Target = FileShared;
    fn deref(&self) -> &FileShared {
        &self.0
    }
}

impl std::fmt::Debug for FileLayouts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.state.lock();
        match st {
            Ok(s) => write!(
                f,
                "FileLayouts({} segments, {} kept bytes)",
                s.segments.len(),
                s.kept_bytes
            ),
            Err(_) => write!(f, "FileLayouts(poisoned)"),
        }
    }
}

impl FileShared {
    fn with<T>(&self, f: impl FnOnce(&mut FileState) -> T) -> T {
        match self.state.lock() {
            Ok(mut g) => f(&mut g),
            Err(p) => f(&mut p.into_inner()),
        }
    }
}

type DriverSlot = Arc<tokio::sync::OnceCell<Option<Arc<Driver>>>>;

/// Drivers by client. The client struct is not ours to extend, so its driver is found by the
/// address of its shared state; entries of dropped clients are pruned on each lookup.
static DRIVERS: Mutex<Vec<(Weak<Inner>, DriverSlot)>> = Mutex::new(Vec::new());

fn slot(c: &Client) -> DriverSlot {
    let mut v = match DRIVERS.lock() {
        Ok(v) => v,
        Err(p) => p.into_inner(),
    };
    // A dropped client's DS connections go with it.
    v.retain(|(w, s)| {
        let alive = w.strong_count() > 0;
        if !alive {
            if let Some(Some(d)) = s.get() {
                d.devices.close_all();
            }
        }
        alive
    });
    let me = Arc::as_ptr(&c.inner);
    if let Some((_, s)) = v.iter().find(|(w, _)| std::ptr::eq(w.as_ptr(), me)) {
        return s.clone();
    }
    let s = DriverSlot::default();
    v.push((Arc::downgrade(&c.inner), s.clone()));
    s
}

/// The client's driver if it has one already (none is made: a client that never did pNFS
/// I/O holds no layout).
fn existing_driver(c: &Client) -> Option<Arc<Driver>> {
    let v = match DRIVERS.lock() {
        Ok(v) => v,
        Err(p) => p.into_inner(),
    };
    let me = Arc::as_ptr(&c.inner);
    v.iter()
        .find(|(w, _)| std::ptr::eq(w.as_ptr(), me))
        .and_then(|(_, s)| s.get().cloned().flatten())
}

/// The client's driver, when pNFS is configured and the server offers flexfiles layouts
/// (asked once per client: `fs_layout_types` of the export root).
async fn client_driver(c: &Client) -> Option<Arc<Driver>> {
    if !c.config().pnfs {
        return None;
    }
    slot(c).get_or_init(|| detect(c)).await.clone()
}

async fn detect(c: &Client) -> Option<Arc<Driver>> {
    let res = c
        .compound(
            CompoundBuilder::new()
                .putfh(c.root())
                .getattr(&[FATTR4_FS_LAYOUT_TYPES, FATTR4_LAYOUT_BLKSIZE]),
        )
        .await;
    let attrs = match res.and_then(|r| last_attrs(&r)) {
        Ok(a) => a,
        Err(e) => {
            tracing::debug!("no pNFS: fs_layout_types unreadable: {e}");
            return None;
        }
    };
    let types = attrs.fs_layout_types.unwrap_or_default();
    if !types.contains(&LAYOUT4_FLEX_FILES) {
        tracing::debug!(?types, "no pNFS: the server offers no flexfiles layouts");
        return None;
    }
    let blksize = u64::from(attrs.layout_blksize.unwrap_or(0)).max(4096);
    tracing::debug!(blksize, "pNFS flexfiles enabled");
    Some(Arc::new(Driver {
        devices: Devices::default(),
        stats: Counters::default(),
        next_segment: AtomicU64::new(1),
        blksize,
        files: Mutex::new(Vec::new()),
    }))
}

/// The driver for I/O on `f`, decided once per open file.
pub(crate) async fn for_file(c: &Client, f: &OpenFile) -> Option<Arc<Driver>> {
    if let Some(d) = f.pnfs.driver.get() {
        return d.clone();
    }
    let d = client_driver(c).await;
    f.pnfs.driver.get_or_init(|| d).clone()
}

/// The driver `f` used, if any (no detection: a file never read or written needs none).
pub(crate) fn used_by(f: &OpenFile) -> Option<Arc<Driver>> {
    f.pnfs.driver.get().cloned().flatten()
}

impl Client {
    /// Whether data I/O of this client goes to the data servers (pNFS configured and offered
    /// by the server). Asks the server the first time.
    pub async fn pnfs_active(&self) -> bool {
        client_driver(self).await.is_some()
    }

    /// Payload bytes this client moved to and from data servers over its libfabric endpoint
    /// (RMA), 0 when it has none.
    pub fn fabric_bytes(&self) -> u64 {
        slot(self)
            .get()
            .cloned()
            .flatten()
            .map(|d| d.devices.fabric_bytes())
            .unwrap_or(0)
    }

    /// The layout driver's counters; None when pNFS is not in use (or not yet decided).
    pub fn pnfs_stats(&self) -> Option<PnfsStats> {
        if !self.config().pnfs {
            return None;
        }
        slot(self).get().cloned().flatten().map(|d| PnfsStats {
            getdeviceinfos: d.devices.fetches(),
            ..d.stats.snapshot()
        })
    }
}

/// What a LAYOUTGET attempt came to.
enum Grant {
    Segment(InUse),
    /// Do this I/O through the MDS.
    ThroughMds,
}

/// What a LAYOUTGET reply came to.
enum Adopted {
    Segment(InUse),
    /// The reply covers nothing at the offset.
    Nothing,
    /// Granted before a recall that crossed the reply: recalled already, not to be used.
    Recalled,
}

impl Driver {
    fn new_segment_id(&self) -> u64 {
        self.next_segment.fetch_add(1, Ordering::Relaxed)
    }

    /// Puts `f` in the recall index (once per open file).
    fn register(&self, fh: &NfsFh4, fl: &Arc<FileShared>) {
        if fl.registered.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut v = match self.files.lock() {
            Ok(v) => v,
            Err(p) => p.into_inner(),
        };
        v.retain(|(_, w)| w.strong_count() > 0);
        v.push((fh.clone(), Arc::downgrade(fl)));
    }

    /// Waits until no recall of `f`'s layouts is being returned (bounded: the return is, and
    /// a LAYOUTGET after a lost one is at worst answered with a stateid error).
    async fn wait_returned(&self, fl: &FileShared) {
        let deadline = tokio::time::Instant::now() + recall::RETURN_BOUND;
        loop {
            let returned = fl.returned.notified();
            tokio::pin!(returned);
            returned.as_mut().enable();
            if fl.with(|st| st.recalls == 0) {
                return;
            }
            if tokio::time::timeout_at(deadline, returned).await.is_err() {
                tracing::warn!("a recalled layout is still not returned; asking for another");
                return;
            }
        }
    }

    /// A segment covering `offset` for `iomode`: cached, or from a LAYOUTGET. DELAY and
    /// LAYOUTTRYLATER (a snapshot's quiesce answers them to RW LAYOUTGETs while it lasts) are
    /// waited out with backoff, the layout lock let go meanwhile.
    async fn segment(
        &self,
        c: &Client,
        f: &OpenFile,
        iomode: Layoutiomode4,
        offset: u64,
        length: u64,
    ) -> Result<Grant> {
        let fl = &f.pnfs;
        let refused = |st: &FileState| {
            iomode == Layoutiomode4::Read
                && st
                    .no_read_layout_until
                    .is_some_and(|t| std::time::Instant::now() < t)
        };
        // Whole chunks: the server grants one anyway, and asking for it says what we mean.
        let start = offset - offset % self.blksize;
        let want_end = offset.saturating_add(length.max(1));
        let len = (want_end - start)
            .div_ceil(self.blksize)
            .saturating_mul(self.blksize);
        let mut trylater = 0;
        let mut delay = crate::client::DelayRetry::default();
        let mut stale_retry = false;
        loop {
            if let Some(s) = fl.with(|st| st.lookup(offset, iomode)) {
                return Ok(Grant::Segment(s));
            }
            if fl.with(|st| refused(st)) {
                return Ok(Grant::ThroughMds);
            }
            self.wait_returned(fl).await;
            let g = fl.layout_lock.lock().await;
            // Someone else may have fetched it (or been refused) while we waited, or a recall
            // come in.
            if let Some(s) = fl.with(|st| st.lookup(offset, iomode)) {
                return Ok(Grant::Segment(s));
            }
            if fl.with(|st| refused(st)) {
                return Ok(Grant::ThroughMds);
            }
            if fl.with(|st| st.recalls > 0) {
                drop(g);
                continue;
            }
            self.register(&f.fh, &fl.0);
            let layout_sid = fl.with(|st| {
                st.getting = true;
                st.stateid
            });
            add(&self.stats.layoutgets, 1);
            let r = c
                .compound_no_delay_retry(CompoundBuilder::new().putfh(&f.fh).op(
                    NfsArgop4::Layoutget(LayoutgetArgs {
                        loga_signal_layout_avail: false,
                        loga_layout_type: LAYOUT4_FLEX_FILES,
                        loga_iomode: iomode,
                        loga_offset: start,
                        loga_length: len,
                        loga_minlength: 0,
                        // The open stateid until the server gave us a layout stateid.
                        loga_stateid: layout_sid.unwrap_or(f.stateid),
                        loga_maxcount: 1 << 16,
                    }),
                ))
                .await;
            fl.with(|st| st.getting = false);
            let e = match r {
                Ok(res) => {
                    let ok = res.into_iter().find_map(|r| match r {
                        NfsResop4::Layoutget(LayoutgetRes::Ok(ok)) => Some(ok),
                        _ => None,
                    });
                    let Some(ok) = ok else {
                        return Ok(Grant::ThroughMds);
                    };
                    match self.adopt(f, ok, iomode, offset) {
                        Adopted::Segment(s) => return Ok(Grant::Segment(s)),
                        Adopted::Nothing => return Ok(Grant::ThroughMds),
                        // Its return comes first (it waits for this lock); then ask again.
                        Adopted::Recalled if trylater < LAYOUT_TRYLATER_RETRIES => {
                            trylater += 1;
                            continue;
                        }
                        Adopted::Recalled => return Ok(Grant::ThroughMds),
                    }
                }
                Err(e) => e,
            };
            match e.status() {
                Some(Nfsstat4::Layoutunavailable) => {
                    tracing::debug!(offset, "no layout available: I/O through the MDS");
                    if iomode == Layoutiomode4::Read {
                        fl.with(|st| {
                            st.no_read_layout_until =
                                Some(std::time::Instant::now() + NO_LAYOUT_RETRY)
                        });
                    }
                    return Ok(Grant::ThroughMds);
                }
                Some(Nfsstat4::Delay) if delay.more() => {
                    drop(g);
                    delay.wait().await;
                }
                Some(Nfsstat4::Layouttrylater) if trylater < LAYOUT_TRYLATER_RETRIES => {
                    drop(g);
                    trylater += 1;
                    tokio::time::sleep(Duration::from_millis(100 << trylater)).await;
                }
                // Our layout stateid went stale (all layouts returned or revoked): start
                // over from the open stateid, once.
                Some(
                    Nfsstat4::BadStateid
                    | Nfsstat4::OldStateid
                    | Nfsstat4::StaleStateid
                    | Nfsstat4::Badlayout,
                ) if layout_sid.is_some() && !stale_retry => {
                    stale_retry = true;
                    fl.with(|st| {
                        st.stateid = None;
                        st.segments.clear();
                    });
                }
                _ if e.needs_recovery() => return Err(e),
                _ => {
                    tracing::debug!(offset, "LAYOUTGET: {e}; I/O through the MDS");
                    return Ok(Grant::ThroughMds);
                }
            }
        }
    }

    /// Takes in a LAYOUTGET reply: its stateid, and every flexfiles layout in it. The caller
    /// holds the layout lock.
    fn adopt(
        &self,
        f: &OpenFile,
        ok: LayoutgetResOk,
        iomode: Layoutiomode4,
        offset: u64,
    ) -> Adopted {
        let mut segs = Vec::new();
        for l in ok.logr_layout {
            if l.lo_content.loc_type != LAYOUT4_FLEX_FILES {
                continue;
            }
            match FfLayout4::from_xdr(l.lo_content.loc_body.as_bytes()) {
                Ok(ff) => segs.push(Arc::new(Segment::new(
                    self.new_segment_id(),
                    l.lo_offset,
                    l.lo_length,
                    l.lo_iomode,
                    ff,
                ))),
                Err(e) => tracing::warn!("undecodable ff_layout4: {e}"),
            }
        }
        let sid = ok.logr_stateid;
        f.pnfs.with(|st| {
            // A recall that crossed this reply may already have moved the seqid further.
            st.stateid = Some(match st.stateid {
                Some(o) if o.other == sid.other && seqid_newer(o.seqid, sid.seqid) => o,
                _ => sid,
            });
            let recalled = st
                .barrier
                .is_some_and(|b| b.other == sid.other && !seqid_newer(sid.seqid, b.seqid));
            if recalled {
                tracing::debug!(offset, "a LAYOUTGET reply crossed a recall of its layout");
                return Adopted::Recalled;
            }
            for s in segs {
                st.segments.insert(s);
            }
            match st.lookup(offset, iomode) {
                Some(s) => Adopted::Segment(s),
                None => {
                    tracing::debug!(offset, "LAYOUTGET granted nothing for the offset");
                    Adopted::Nothing
                }
            }
        })
    }

    /// Reports a DS failure on a segment (LAYOUTERROR). Best effort: the MDS learns of dead
    /// DSs from heartbeats too.
    async fn report(&self, c: &Client, f: &OpenFile, seg: &Segment, errors: &[DeviceError4]) {
        // Once the segment is returned (by another I/O that failed on it), the MDS has heard.
        let (held, sid) = f.pnfs.with(|st| (st.segments.contains(seg.id), st.stateid));
        let (true, Some(sid), false) = (held, sid, errors.is_empty()) else {
            return;
        };
        add(&self.stats.layouterrors, 1);
        let op = report::layouterror(seg.offset, seg.length, sid, errors.to_vec());
        if let Err(e) = c.compound(CompoundBuilder::new().putfh(&f.fh).op(op)).await {
            tracing::debug!("LAYOUTERROR: {e}");
        }
    }

    /// Stops using a segment and gives it back, so the next LAYOUTGET can be answered with
    /// other DSs. With errors, LAYOUTERROR goes in the same COMPOUND (the MDS hears of the
    /// failure at once, and again in the `ff_layoutreturn4` body). Only the first of the I/Os
    /// that failed on a segment does this; the others find it gone.
    async fn return_segment(
        &self,
        c: &Client,
        f: &OpenFile,
        seg: &Segment,
        errors: Vec<DeviceError4>,
    ) {
        let _g = f.pnfs.layout_lock.lock().await;
        let (held, sid) = f
            .pnfs
            .with(|st| (st.segments.remove(seg.id).is_some(), st.stateid));
        let (true, Some(sid)) = (held, sid) else {
            return;
        };
        add(&self.stats.layoutreturns, 1);
        let ret = report::layoutreturn(seg.offset, seg.length, seg.iomode, sid, errors.clone());
        let mut b = CompoundBuilder::new().putfh(&f.fh);
        if !errors.is_empty() {
            add(&self.stats.layouterrors, 1);
            b = b.op(report::layouterror(seg.offset, seg.length, sid, errors));
        }
        let with_error = b.len() > 1;
        let r = match c.compound(b.op(ret.clone())).await {
            // A server refusing LAYOUTERROR must still get the layout back.
            Err(e) if with_error && !e.needs_recovery() => {
                tracing::debug!("LAYOUTERROR: {e}");
                c.compound(CompoundBuilder::new().putfh(&f.fh).op(ret))
                    .await
            }
            r => r,
        };
        match r {
            Ok(res) => self.after_return_of(&f.pnfs, &res),
            Err(e) => tracing::debug!("LAYOUTRETURN: {e}"),
        }
    }

    /// Takes in a LAYOUTRETURN reply: the stateid left, or none when nothing is.
    fn after_return_of(&self, fl: &FileShared, res: &[NfsResop4]) {
        let sid = res.iter().find_map(|r| match r {
            NfsResop4::Layoutreturn(LayoutreturnRes::Ok(s)) => Some(*s),
            _ => None,
        });
        fl.with(|st| match sid {
            Some(LayoutreturnStateid::Present(s)) => st.stateid = Some(s),
            // Nothing left: the next LAYOUTGET starts again from the open stateid.
            Some(LayoutreturnStateid::Absent) => {
                st.stateid = None;
                st.segments.clear();
            }
            None => {}
        });
    }

    /// LAYOUTCOMMIT of what was written to DSs since the last one: how the MDS learns the new
    /// size and mtime. The DS data must be committed before.
    async fn layoutcommit(&self, c: &Client, f: &OpenFile) -> Result<()> {
        let Some((lo, _)) = f.pnfs.with(|st| st.written) else {
            return Ok(());
        };
        let mut sid = f.pnfs.with(|st| st.stateid);
        if sid.is_none() {
            // Everything was returned after a failure: a LAYOUTCOMMIT needs a layout stateid.
            if let Grant::Segment(_) = self.segment(c, f, Layoutiomode4::Rw, lo, 1).await? {
                sid = f.pnfs.with(|st| st.stateid);
            }
        }
        let Some(sid) = sid else {
            return Err(Error::Protocol(
                "no layout to LAYOUTCOMMIT data written to data servers with".into(),
            ));
        };
        self.send_layoutcommit(c, &f.fh, &f.pnfs, sid).await
    }

    /// The LAYOUTCOMMIT itself, with layout stateid `sid`.
    async fn send_layoutcommit(
        &self,
        c: &Client,
        fh: &NfsFh4,
        fl: &FileShared,
        sid: Stateid4,
    ) -> Result<()> {
        let Some((lo, end)) = fl.with(|st| st.written) else {
            return Ok(());
        };
        add(&self.stats.layoutcommits, 1);
        let op = report::layoutcommit(lo, end - lo, sid, end - 1);
        c.compound(CompoundBuilder::new().putfh(fh).op(op)).await?;
        // Writes that landed meanwhile widened the range; only what we committed is done.
        fl.with(|st| {
            if st.written == Some((lo, end)) {
                st.written = None;
            }
        });
        Ok(())
    }

    /// Before CLOSE: commit what is kept, LAYOUTCOMMIT, and return every layout of the file.
    pub(crate) async fn finish(&self, c: &Client, f: &OpenFile) -> Result<()> {
        let r = self.commit(c, f).await;
        let _g = f.pnfs.layout_lock.lock().await;
        let sid = f.pnfs.with(|st| {
            st.segments.clear();
            st.stateid.take()
        });
        if let Some(sid) = sid {
            add(&self.stats.layoutreturns, 1);
            let op = report::layoutreturn(0, u64::MAX, Layoutiomode4::Any, sid, Vec::new());
            if let Err(e) = c.compound(CompoundBuilder::new().putfh(&f.fh).op(op)).await {
                tracing::debug!("LAYOUTRETURN at close: {e}");
            }
        }
        r
    }
}
