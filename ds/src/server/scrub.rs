//! Scrub: every `ScrubConfig::every`, a pass re-reads every block of every object this data
//! server holds (mirror copies and erasure-coded shards alike) through the chunk store, which
//! checks each 4 KiB block against its blake3. A block that fails is recorded exactly as a
//! client read that hit it would record it (`BadChunks::mark`, durable): the report task tells
//! the MDS, which has a mirror copy rewritten from a good one, or a shard rebuilt in place from
//! the other shards (docs/EC.md "Scrub"). Reads never serve a bad block, so scrub is what finds
//! damage in data nobody reads.
//!
//! The pass reads at most `bytes_per_second`, so foreground I/O keeps the disk, and on the
//! same blocking pool as client I/O, one piece at a time.
use std::sync::Arc;
use std::time::{Duration, Instant};

use chunkstore::DsError;
use tokio::sync::watch;

use super::Shared;

/// Bytes read per call.
const PIECE: u64 = 1 << 20;
/// A week between passes, as an operator would schedule a RAID scrub; a pass of a 4 TB data
/// server at the default rate takes about a day and a half.
pub const DEFAULT_SCRUB_EVERY: Duration = Duration::from_secs(7 * 24 * 3600);
pub const DEFAULT_SCRUB_MIB_PER_SECOND: u64 = 32;
/// Repair reads k units per unit rebuilt: at 128 MiB/s a 4+2 repair rebuilds 32 MiB/s of
/// shard, about 2 h for a data server holding 256 GiB of shards, leaving most of a 10 GbE link.
pub const DEFAULT_REPAIR_MIB_PER_SECOND: u64 = 128;

/// When and how fast a data server scrubs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScrubConfig {
    /// Time between the starts of two passes (the first starts this long after the server);
    /// `None`: never.
    pub every: Option<Duration>,
    /// Read rate of a pass.
    pub bytes_per_second: u64,
    /// Bytes per second a shard repair here may read from the other shards' servers (k
    /// units per rebuilt unit), so rebuilding a lost server leaves the network and the
    /// survivors' disks to foreground I/O.
    pub repair_bytes_per_second: u64,
}

impl Default for ScrubConfig {
    fn default() -> Self {
        ScrubConfig {
            every: Some(DEFAULT_SCRUB_EVERY),
            bytes_per_second: DEFAULT_SCRUB_MIB_PER_SECOND << 20,
            repair_bytes_per_second: DEFAULT_REPAIR_MIB_PER_SECOND << 20,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScrubConfigError {
    #[error("scrub_mib_per_second must be at least 1 (scrub_every_seconds = 0 turns scrub off)")]
    Rate,
    #[error("repair_mib_per_second must be at least 1")]
    RepairRate,
}

impl ScrubConfig {
    /// From the config file's `scrub_every_seconds` (0: never) and `scrub_mib_per_second`.
    pub fn from_settings(
        every_seconds: Option<u64>,
        mib_per_second: Option<u64>,
        repair_mib_per_second: Option<u64>,
    ) -> Result<Self, ScrubConfigError> {
        let d = Self::default();
        let repair_bytes_per_second = match repair_mib_per_second {
            Some(0) => return Err(ScrubConfigError::RepairRate),
            Some(m) => m.saturating_mul(1 << 20),
            None => d.repair_bytes_per_second,
        };
        let bytes_per_second = match mib_per_second {
            Some(0) => return Err(ScrubConfigError::Rate),
            Some(m) => m.saturating_mul(1 << 20),
            None => d.bytes_per_second,
        };
        let every = match every_seconds {
            Some(0) => None,
            Some(s) => Some(Duration::from_secs(s)),
            None => d.every,
        };
        Ok(ScrubConfig {
            every,
            bytes_per_second,
            repair_bytes_per_second,
        })
    }
}

/// Keeps a background job at or under a byte rate: after each piece, sleeps until the bytes
/// done so far are due at that rate since the job began (no bursts past the rate, and a job
/// that fell behind does not sleep).
pub(crate) struct Pace {
    started: Instant,
    bytes: u64,
    rate: f64,
}

impl Pace {
    pub(crate) fn new(bytes_per_second: u64) -> Pace {
        Pace {
            started: Instant::now(),
            bytes: 0,
            rate: bytes_per_second.max(1) as f64,
        }
    }

    pub(crate) async fn done(&mut self, n: u64) {
        self.bytes += n;
        let due = Duration::from_secs_f64(self.bytes as f64 / self.rate);
        if let Some(wait) = due.checked_sub(self.started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    }
}

/// What one pass found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PassReport {
    pub objects: u64,
    pub bytes: u64,
    pub bad: u64,
}

pub(crate) async fn run(s: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let Some(every) = s.cfg.scrub.every else {
        return;
    };
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let started = Instant::now();
        let r = tokio::select! {
            r = pass(&s) => r,
            _ = stop.changed() => return,
        };
        match r {
            Ok(r) if r.bad > 0 => tracing::warn!(
                objects = r.objects,
                bytes = r.bytes,
                bad = r.bad,
                seconds = started.elapsed().as_secs_f64(),
                "scrub pass found objects failing verification: reported for repair"
            ),
            Ok(r) => tracing::info!(
                objects = r.objects,
                bytes = r.bytes,
                seconds = started.elapsed().as_secs_f64(),
                "scrub pass clean"
            ),
            Err(e) => tracing::warn!("scrub pass stopped: {e}"),
        }
    }
}

/// One pass over every object; a bad block is recorded and the rest of its object skipped
/// (repair rewrites the whole copy or shard).
pub(crate) async fn pass(s: &Shared) -> Result<PassReport, DsError> {
    let store = s.objects.store();
    let mut pace = Pace::new(s.cfg.scrub.bytes_per_second);
    let mut r = PassReport::default();
    for id in store.objects().await? {
        let end = match store.data_end(id).await {
            Ok(e) => e,
            // Removed since the listing.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(e),
        };
        r.objects += 1;
        let mut off = 0;
        while off < end {
            let len = PIECE.min(end - off);
            match store.read(id, off, len, end).await {
                Ok(_) => {}
                Err(DsError::Corrupt { id, chunk, .. }) => {
                    r.bad += 1;
                    if let Err(e) = s.bad.mark(id, chunk).await {
                        tracing::error!(object = id, chunk, "cannot record a bad chunk: {e}");
                    }
                    break;
                }
                // Cut or removed meanwhile: what is gone needs no checking.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => break,
                Err(e) => return Err(e),
            }
            off += len;
            r.bytes += len;
            pace.done(len).await;
        }
    }
    Ok(r)
}
