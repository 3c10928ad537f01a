//! The fore-channel slot table (RFC 8881 §2.10.6): one request per slot at a time, each slot
//! with its own sequence id. A semaphore counts free slots so callers queue instead of spin.
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug, Default, Clone, Copy)]
struct SlotState {
    /// Sequence id of the last request the server processed on this slot.
    seqid: u32,
    busy: bool,
    /// A request on it got no reply: we cannot know whether the server saw it, so the slot
    /// is never used again in this session (rather than risk SEQ_MISORDERED or a false retry).
    lost: bool,
}

#[derive(Debug)]
pub struct SlotTable {
    free: Arc<Semaphore>,
    slots: Mutex<Vec<SlotState>>,
}

/// A slot held for one request. Dropped without `done`, the slot is retired.
#[derive(Debug)]
pub struct SlotGuard<'a> {
    table: &'a SlotTable,
    pub slot: u32,
    pub seqid: u32,
    pub highest: u32,
    permit: Option<OwnedSemaphorePermit>,
    finished: bool,
}

impl SlotTable {
    pub fn new(n: u32) -> Self {
        let n = n.max(1);
        SlotTable {
            free: Arc::new(Semaphore::new(n as usize)),
            slots: Mutex::new(vec![SlotState::default(); n as usize]),
        }
    }

    pub fn len(&self) -> usize {
        self.slots.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// Sequence id last used on `slot`.
    pub fn seqid(&self, slot: usize) -> u32 {
        self.slots
            .lock()
            .ok()
            .and_then(|g| g.get(slot).map(|s| s.seqid))
            .unwrap_or(0)
    }

    pub async fn acquire(&self) -> SlotGuard<'_> {
        // The semaphore is never closed, so acquire only fails if it were; fall back to a
        // permit-less guard in that impossible case rather than panic.
        let permit = self.free.clone().acquire_owned().await.ok();
        let mut g = match self.slots.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let highest = g.len().saturating_sub(1) as u32;
        let idx = g.iter().position(|s| !s.busy && !s.lost).unwrap_or(0);
        g[idx].busy = true;
        let seqid = g[idx].seqid.wrapping_add(1);
        SlotGuard {
            table: self,
            slot: idx as u32,
            seqid,
            highest,
            permit,
            finished: false,
        }
    }
}

impl SlotGuard<'_> {
    /// The server answered. `processed`: its SEQUENCE succeeded, so the slot's sequence id
    /// advances; otherwise (e.g. NFS4ERR_BADSESSION) it stays.
    pub fn done(mut self, processed: bool) {
        self.finished = true;
        if let Ok(mut g) = self.table.slots.lock() {
            if let Some(s) = g.get_mut(self.slot as usize) {
                s.busy = false;
                if processed {
                    s.seqid = self.seqid;
                }
            }
        }
    }
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if let Ok(mut g) = self.table.slots.lock() {
            if let Some(s) = g.get_mut(self.slot as usize) {
                s.busy = false;
                s.lost = true;
            }
            // Keep at least one slot usable: with every slot lost the session is useless
            // anyway, and the next call will surface the real error.
            if g.iter().all(|s| s.lost) {
                for s in g.iter_mut() {
                    s.lost = false;
                }
                return;
            }
        }
        if let Some(p) = self.permit.take() {
            p.forget();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slots_are_distinct_and_seqids_advance() {
        let t = SlotTable::new(2);
        let a = t.acquire().await;
        let b = t.acquire().await;
        assert_ne!(a.slot, b.slot);
        assert_eq!((a.seqid, b.seqid), (1, 1));
        a.done(true);
        b.done(false);
        let a = t.acquire().await;
        assert_eq!((a.slot, a.seqid), (0, 2));
        let b = t.acquire().await;
        assert_eq!((b.slot, b.seqid), (1, 1));
    }
}
