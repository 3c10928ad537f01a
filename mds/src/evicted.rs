//! Files whose bytes left flash for the bucket (issue 45, eviction; the record is
//! `meta_core::FileTier::evicted`): their reads, served from the bucket, and the holds that
//! keep the evictor off a file a request is using.
//!
//! **Reads.** A READ of an evicted file fetches just the bytes it asks for: one small GET for
//! the object's header (cached; checked against the id and the payload sum the record holds),
//! then a ranged GET of the 1 MiB blocks the range falls in, each checked against its blake3
//! from that header (`tier::object`), so a wrong or damaged byte is an error, never an answer.
//! The read also asks for the file back (`TierWant`): its shard's leader copies it to flash in
//! the background (`tiering/restore.rs`), and reads go to flash again once that is recorded.
//!
//! **Holds.** Every request that reads or changes a file's bytes holds the file on this node
//! while it does (`Holds::hold`); the evictor marks a file only while nobody holds it
//! (`Holds::evicting`), and a hold asked for meanwhile waits for the mark to go. So a WRITE
//! either finishes (data on flash and its size noted, which moves the change attribute the
//! evictor's `TierEvict` must match) before the evictor looks, or starts after the record says
//! evicted and waits for the file to come back. A count, not a lock: one request may hold a
//! file twice (COPY within a file) without deadlock.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use meta_core::TierCopy;
use tier::TierError;

use crate::error::{NfsError, NfsResult};
use crate::tier_set::Tier;

/// The evictor's mark in the hold table.
const EVICTING: i64 = -1;

/// Which files requests on this node are using, and which one the evictor is taking.
#[derive(Default)]
pub struct Holds {
    map: Mutex<HashMap<u64, i64>>,
    freed: tokio::sync::Notify,
}

/// A request's hold on a file's bytes; released when dropped.
pub struct DataHold {
    holds: Arc<Holds>,
    ino: u64,
}

/// The evictor's mark on a file; removed when dropped.
pub struct EvictMark {
    holds: Arc<Holds>,
    ino: u64,
}

impl Holds {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<u64, i64>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Holds `ino`, waiting while the evictor has it marked.
    pub async fn hold(self: &Arc<Self>, ino: u64) -> DataHold {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            {
                let mut m = self.map();
                let n = m.entry(ino).or_insert(0);
                if *n != EVICTING {
                    *n += 1;
                    return DataHold {
                        holds: self.clone(),
                        ino,
                    };
                }
            }
            freed.await;
        }
    }

    /// Marks `ino` for eviction if no request holds it now.
    pub fn evicting(self: &Arc<Self>, ino: u64) -> Option<EvictMark> {
        let mut m = self.map();
        let n = m.entry(ino).or_insert(0);
        if *n != 0 {
            return None;
        }
        *n = EVICTING;
        Some(EvictMark {
            holds: self.clone(),
            ino,
        })
    }
}

impl Drop for DataHold {
    fn drop(&mut self) {
        let mut m = self.holds.map();
        if let Some(n) = m.get_mut(&self.ino) {
            *n -= 1;
            if *n <= 0 {
                m.remove(&self.ino);
            }
        }
    }
}

impl Drop for EvictMark {
    fn drop(&mut self) {
        self.holds.map().remove(&self.ino);
        self.holds.freed.notify_waiters();
    }
}

/// An object store's failure as a client sees it: a store that may come back is a DELAY
/// (the client retries; a hard mount waits, as for a server that is down); a wrong object
/// is an I/O error.
pub fn store_error(ino: u64, e: &TierError) -> NfsError {
    metrics::tier::request_failed();
    tracing::warn!(ino, "reading an evicted file from the object store: {e}");
    if e.is_transient() {
        NfsError::Delay
    } else {
        NfsError::Io
    }
}

/// Bytes `[offset, offset + len)` of the evicted file `ino` of `size` bytes, from its copy:
/// as `Data::read_data` answers (short at the end of file, with eof).
pub async fn read(
    tier: &Tier,
    ino: u64,
    copy: &TierCopy,
    offset: u64,
    len: u64,
    size: u64,
) -> NfsResult<(Vec<u8>, bool)> {
    let end = offset.saturating_add(len).min(size);
    let mut out = Vec::with_capacity(usize::try_from(end.saturating_sub(offset)).unwrap_or(0));
    // Just started, the data key not unwrapped yet: seconds, the client retries.
    let seal = tier.seal().map_err(|_| NfsError::Delay)?;
    let mut start = 0u64;
    for (i, p) in copy.pieces.iter().enumerate() {
        let (lo, hi) = (start, start + p.len);
        start = hi;
        if hi <= offset || lo >= end {
            continue;
        }
        let from = offset.max(lo) - lo;
        let to = end.min(hi) - lo;
        let h = tier
            .header(ino, i as u64, copy.gen, &p.sum, seal)
            .await
            .map_err(|e| store_error(ino, &e))?;
        let started = Instant::now();
        let bytes = tier
            .store()
            .read_payload(
                &tier.key(ino, i as u64, copy.gen),
                &h.0,
                h.1,
                from,
                to,
                seal,
            )
            .await
            .map_err(|e| store_error(ino, &e))?;
        metrics::tier::GET.observe(started.elapsed());
        metrics::tier::request_ok();
        out.extend_from_slice(&bytes);
    }
    // Past the copy's bytes (the file grew while evicted: not yet possible, a change brings
    // it back first) a file reads as zeros, as a hole does.
    let want = usize::try_from(end.saturating_sub(offset)).unwrap_or(0);
    out.resize(want, 0);
    metrics::tier::BUCKET_READS.inc();
    metrics::tier::BUCKET_READ_BYTES.add(out.len() as u64);
    let eof = offset + out.len() as u64 >= size;
    Ok((out, eof))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_evictor_marks_only_a_file_nobody_holds_and_holders_wait_for_the_mark() {
        let h = Arc::new(Holds::default());
        let a = h.hold(1).await;
        let b = h.hold(1).await;
        assert!(h.evicting(1).is_none(), "held twice");
        drop(a);
        assert!(h.evicting(1).is_none(), "still held once");
        drop(b);
        let mark = h.evicting(1).expect("nobody holds it");
        assert!(h.evicting(1).is_none(), "marked already");
        // Another file is free meanwhile.
        drop(h.hold(2).await);
        let waiter = {
            let h = h.clone();
            tokio::spawn(async move { h.hold(1).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(
            !waiter.is_finished(),
            "a hold waits while the file is marked"
        );
        drop(mark);
        let held = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("the hold is granted once the mark goes")
            .expect("task");
        assert!(h.evicting(1).is_none());
        drop(held);
        assert!(h.map().is_empty(), "nothing left behind");
    }
}
