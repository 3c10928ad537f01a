//! Write-behind: a FUSE WRITE is answered once its bytes are copied and queued, and goes to
//! the data servers (or the MDS) while the application writes on, as the kernel NFS client
//! answers write(2) from its page cache. Without it each write(2) waits a FUSE round trip plus
//! a data-server round trip, one at a time. A failure is kept and returned by the next write,
//! fsync or close (`close(2)` returns it, as NFS does), never lost.
//!
//! Bounded: at most [`BUDGET_KIB`] KiB in flight per open file; overlapping writes go out in
//! the order they came (a later one waits for the earlier), and reads of a range wait for the
//! writes in flight over it.
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// 64 MiB per open file: enough to keep several 1 MiB writes on every mirror in flight.
pub const BUDGET_KIB: u32 = 64 * 1024;

#[derive(Default)]
struct State {
    inflight: Vec<(u64, u64, u64)>,
    next: u64,
    error: Option<i32>,
}

pub struct WriteBehind {
    budget: Arc<Semaphore>,
    state: Mutex<State>,
    changed: Notify,
}

/// A write admitted and in flight; give it back with [`WriteBehind::finish`].
pub struct Ticket {
    id: u64,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Default for WriteBehind {
    fn default() -> Self {
        WriteBehind {
            budget: Arc::new(Semaphore::new(BUDGET_KIB as usize)),
            state: Mutex::new(State::default()),
            changed: Notify::new(),
        }
    }
}

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

impl WriteBehind {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for room in the budget and for earlier writes over the same bytes.
    pub async fn admit(&self, offset: u64, len: usize) -> Ticket {
        let kib = (len.div_ceil(1024) as u32).clamp(1, BUDGET_KIB);
        // The semaphore is never closed, so this is always Some.
        let permit = self.budget.clone().acquire_many_owned(kib).await.ok();
        let range = (offset, offset.saturating_add(len as u64));
        loop {
            let n = self.changed.notified();
            tokio::pin!(n);
            n.as_mut().enable();
            {
                let mut s = self.lock();
                if !s.inflight.iter().any(|&(_, a, b)| overlaps((a, b), range)) {
                    let id = s.next;
                    s.next += 1;
                    s.inflight.push((id, range.0, range.1));
                    return Ticket {
                        id,
                        _permit: permit,
                    };
                }
            }
            n.await;
        }
    }

    /// The write is done; `Err(errno)` is kept for the next write, fsync or close.
    pub fn finish(&self, t: Ticket, r: Result<(), i32>) {
        {
            let mut s = self.lock();
            s.inflight.retain(|&(id, _, _)| id != t.id);
            if let Err(e) = r {
                s.error.get_or_insert(e);
            }
        }
        drop(t);
        self.changed.notify_waiters();
    }

    /// Waits until no write is in flight over `[offset, offset+len)` (everything: len u64::MAX).
    pub async fn settle(&self, offset: u64, len: u64) {
        let range = (offset, offset.saturating_add(len));
        loop {
            let n = self.changed.notified();
            tokio::pin!(n);
            n.as_mut().enable();
            if !self
                .lock()
                .inflight
                .iter()
                .any(|&(_, a, b)| overlaps((a, b), range))
            {
                return;
            }
            n.await;
        }
    }

    /// The first failure since the last call, if any.
    pub fn take_error(&self) -> Option<i32> {
        self.lock().error.take()
    }

    pub fn peek_error(&self) -> Option<i32> {
        self.lock().error
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn overlapping_writes_wait_for_each_other_and_errors_are_kept() {
        let wb = Arc::new(WriteBehind::default());
        let a = wb.admit(0, 4096).await;
        let b = wb.admit(4096, 4096).await; // adjacent: no wait
        let wb2 = wb.clone();
        let waiter = tokio::spawn(async move { wb2.admit(100, 10).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "an overlapping write waits");
        wb.finish(a, Err(libc::EIO));
        let c = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("admitted after the earlier write finished")
            .expect("task");
        wb.finish(b, Ok(()));
        wb.finish(c, Ok(()));
        tokio::time::timeout(Duration::from_secs(5), wb.settle(0, u64::MAX))
            .await
            .expect("settles");
        assert_eq!(wb.take_error(), Some(libc::EIO));
        assert_eq!(wb.take_error(), None);
    }
}
