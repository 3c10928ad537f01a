//! The write verifier v3 clients see. It changes whenever data the gateway acknowledged as
//! UNSTABLE may be gone, so that clients send it again (RFC 1813 §3.3.7): on every gateway
//! start (random), when the MDS's own verifier changes (the MDS restarted and lost its
//! uncommitted data), and when the gateway had to drop uncommitted data it held (an upstream
//! session lost, a close whose commit failed).
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

pub struct WriteVerf {
    boot: u64,
    epoch: AtomicU64,
    /// The MDS verifier last seen on a WRITE or COMMIT through it.
    mds: Mutex<Option<[u8; 8]>>,
}

impl WriteVerf {
    pub fn new(boot: u64) -> WriteVerf {
        WriteVerf {
            boot,
            epoch: AtomicU64::new(0),
            mds: Mutex::new(None),
        }
    }

    pub fn current(&self) -> [u8; 8] {
        let e = self.epoch.load(Ordering::SeqCst);
        (self.boot ^ e.wrapping_mul(0x9e37_79b9_7f4a_7c15)).to_be_bytes()
    }

    /// Uncommitted data may be lost: clients must resend.
    pub fn bump(&self, why: &str) {
        let e = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        tracing::warn!(epoch = e, "write verifier changed: {why}");
    }

    /// Records the MDS's verifier from a WRITE or COMMIT reply; a change means the MDS
    /// restarted since an earlier unstable write.
    pub fn saw_mds(&self, v: [u8; 8]) {
        let changed = {
            let mut g = self.mds.lock().unwrap_or_else(|p| p.into_inner());
            let changed = g.is_some_and(|old| old != v);
            *g = Some(v);
            changed
        };
        if changed {
            self.bump("the MDS's write verifier changed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifier_moves_with_restarts_and_mds_changes_only() {
        let a = WriteVerf::new(1);
        let b = WriteVerf::new(2);
        assert_ne!(a.current(), b.current());
        let v0 = a.current();
        a.saw_mds([1; 8]);
        a.saw_mds([1; 8]);
        assert_eq!(a.current(), v0);
        a.saw_mds([2; 8]);
        assert_ne!(a.current(), v0);
        let v1 = a.current();
        a.bump("test");
        assert_ne!(a.current(), v1);
    }
}
